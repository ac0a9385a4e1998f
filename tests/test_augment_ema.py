"""Training with few images: DiffAugment's transforms (augment.py) and the generator's
exponential moving average (--ema-decay). Under tf.distribute and across a resume: test_distribute.py."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import bagan_train
from augment import TRANSFORMS, color, cutout, diff_augment, parse_policy, translation
from datasets import load_dataset, to_model_range
from runs import UsageError

ALL = ("translation", "cutout", "color")


def draws(seed=0):
    """A `uniform(shape)` for the transforms: NumPy's U[0, 1) from a fixed seed."""
    rng = np.random.default_rng(seed)
    return lambda shape: tf.constant(rng.random(tuple(int(s) for s in shape)), tf.float32)


def constant(value):
    return lambda shape: tf.fill(tuple(int(s) for s in shape), tf.constant(value, tf.float32))


@pytest.fixture(scope="module")
def images():
    """Eight real 32x32 digits in [-1, 1], and the same as 3-channel images."""
    x = load_dataset("digits", image_size=32).x_train[:8]
    gray = to_model_range(x)
    return {1: gray, 3: tf.concat([gray, -gray, gray * 0.5], axis=-1)}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_a_transform_keeps_shape_dtype_and_range_and_passes_gradients(images, name, channels):
    x = tf.Variable(images[channels])
    weights = tf.constant(np.random.default_rng(1).standard_normal(x.shape), tf.float32)
    with tf.GradientTape() as tape:
        y = TRANSFORMS[name](x, draws())
        loss = tf.reduce_sum(y * weights)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(tf.reduce_min(y)) >= -1.0 and float(tf.reduce_max(y)) <= 1.0
    grad = tape.gradient(loss, x)
    assert grad is not None and np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).sum() > 0
    assert not np.allclose(y.numpy(), x.numpy())  # it does something
    per_image = np.abs(y.numpy() - x.numpy()).sum(axis=(1, 2, 3))
    assert len({round(v, 3) for v in per_image}) > 1  # each image its own draw


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_a_transform_works_in_bfloat16(images, name):
    y = TRANSFORMS[name](tf.cast(images[3], tf.bfloat16), draws())
    assert y.dtype == tf.bfloat16 and y.shape == images[3].shape


def test_translation_moves_the_image_by_whole_pixels_and_fills_with_zero(images):
    x = images[1].numpy()
    # u = 0.75 with a largest shift of 4 (32 / 8): floor(0.75 * 9) - 4 = 2 pixels down and 2 right
    y = translation(images[1], constant(0.75)).numpy()
    expected = np.zeros_like(x)
    expected[:, 2:, 2:] = x[:, :-2, :-2]
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_allclose(translation(images[1], constant(4.5 / 9)).numpy(), x, atol=1e-6)  # shift 0


def test_cutout_zeroes_one_square_of_half_the_side(images):
    y = cutout(images[1] * 0 + 1.0, draws()).numpy()[..., 0]
    for image in y:
        rows, cols = np.nonzero(image == 0)
        assert rows.max() - rows.min() + 1 <= 16 and cols.max() - cols.min() + 1 <= 16
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a rectangle
    # A window centred inside the image covers the whole 16 x 16 square.
    centred = cutout(images[1] * 0 + 1.0, constant(0.5)).numpy()[0, ..., 0]
    assert (centred == 0).sum() == 16 * 16


def test_color_at_the_middle_draw_is_the_identity_and_otherwise_moves_brightness(images):
    np.testing.assert_allclose(color(images[3], constant(0.5)).numpy(), images[3].numpy(), atol=1e-6)
    brighter = color(images[1], constant(0.9)).numpy()  # +0.4 brightness, 1.8 saturation (one channel: none)
    assert brighter.mean() > images[1].numpy().mean()


def test_policies_are_checked_and_applied_in_order(images):
    assert parse_policy("translation, cutout,color") == parse_policy("translation+cutout+color") == ALL
    assert parse_policy(None) == parse_policy("") == parse_policy("none") == ()
    with pytest.raises(ValueError, match="'rotate'"):
        parse_policy("translation,rotate")
    with pytest.raises(ValueError, match="twice"):
        parse_policy("color,color")
    a = diff_augment(images[1], ("translation", "cutout"), draws(3))
    same = draws(3)
    np.testing.assert_array_equal(a.numpy(), cutout(translation(images[1], same), same).numpy())
    assert not np.allclose(a.numpy(), diff_augment(images[1], ("cutout", "translation"), draws(3)).numpy())
    assert diff_augment(images[1], (), draws()) is images[1]


@pytest.mark.parametrize("settings, culprit", [
    (dict(diffaugment="translation,flip"), "'flip'"),
    (dict(ema_decay=1.0), "--ema-decay"),
    (dict(ema_decay=-0.1), "--ema-decay"),
])
def test_bad_settings_are_refused_naming_them(settings, culprit):
    with pytest.raises(UsageError, match=culprit):
        bagan_train.TrainConfig.create(**settings)


def test_the_policy_is_recorded_in_one_spelling():
    config = bagan_train.TrainConfig.create(diffaugment=" color, translation ")
    assert config.diffaugment == "color,translation"
    assert bagan_train.TrainConfig.create(diffaugment="none").diffaugment is None


# ---------------------------------------------------------------------------------------------
# The model


@pytest.fixture(scope="module")
def digits32():
    return load_dataset("digits", image_size=32)


def small_model(data, **settings):
    import keras
    config = bagan_train.TrainConfig.create(dataset="digits", model="cdragan", batch_size=8, latent_dim=16,
                                            train_ratio=1, **settings)
    model = config.model_class.build(data, None, **config.model_settings())
    model.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
    return model


def batches(data, count):
    x = to_model_range(data.x_train[:8 * count])
    return tf.data.Dataset.from_tensor_slices((x, data.y_train[:8 * count].astype("int32"))).batch(8)


def test_the_average_follows_the_hand_computed_ema_with_its_warm_up(digits32):
    import keras
    decay, steps = 0.3, 4
    model = small_model(digits32, ema_decay=decay)
    start = [v.numpy().copy() for v in model.generator.variables]
    for average, weight in zip(model.generator_average, start):
        np.testing.assert_array_equal(average.numpy(), weight)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(([v.numpy().copy() for v in model.generator.variables],
                         [a.numpy().copy() for a in model.generator_average]))

    model.fit(batches(digits32, steps), epochs=1, callbacks=[Record()], shuffle=False, verbose=0)
    assert len(seen) == steps
    expected = start
    for t, (weights, averages) in enumerate(seen, start=1):
        d = min(decay, (1 + t) / (10 + t))  # 0.18, 0.25, then 0.3
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
        for a, e in zip(averages, expected):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    moving = [i for i, v in enumerate(model.generator.variables) if "moving" in v.path]
    assert moving, "batch normalisation's statistics are among the averaged variables"
    raw, averaged = seen[-1]
    assert max(np.abs(a - w).max() for a, w in zip(averaged, raw)) > 1e-4  # the average is not the weights
    sampler = model.sampling_generator()
    assert sampler is not model.generator
    for a, w in zip(averaged, sampler.get_weights()):
        np.testing.assert_array_equal(a, w)


def test_without_the_flags_the_generator_samples_and_nothing_is_averaged(digits32):
    model = small_model(digits32)
    assert model.sampling_generator() is model.generator
    assert model.generator_average == [] and model.diffaugment == ()


def test_a_gradient_reaches_the_generator_through_the_augmentation(digits32):
    model = small_model(digits32, diffaugment="translation,cutout,color")
    labels = tf.constant(digits32.y_train[:8].astype("int32"))
    with tf.GradientTape() as tape:
        loss = model.generator_loss(labels)
    grads = tape.gradient(loss, model.generator.trainable_weights)
    assert all(g is not None for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0
    images = to_model_range(digits32.x_train[:8])
    seen = model.augment(images)
    assert not np.allclose(seen.numpy(), images.numpy())  # the critic sees augmented images
