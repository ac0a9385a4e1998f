"""Shapes, wiring and persistence of the networks (autoencoder.py and bagan_gp.py builders)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from autoencoder import (build_decoder, build_embedding, build_encoder, build_supervised_autoencoder,
                         build_unsupervised_autoencoder, encoder_filters, num_stages)
from bagan_gp import build_critic, build_generator

NUM_CLASSES = 10
LATENT = 128
npy = keras.ops.convert_to_numpy
SHAPES = [(32, 32, 1), (64, 64, 3)]


def _images(rng, n, shape):
    return rng.uniform(-1.0, 1.0, (n,) + tuple(shape)).astype("float32")


def _labels(n, k=NUM_CLASSES):
    return (np.arange(n) % k).astype("int32")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}px{s[2]}ch")
def test_every_network_has_the_documented_shapes(shape):
    rng = np.random.default_rng(0)
    n = 4
    x, y = _images(rng, n, shape), _labels(n)
    stages = {32: 3, 64: 4}[shape[0]]
    assert num_stages(shape[0]) == stages

    encoder = build_encoder(shape, LATENT)
    decoder = build_decoder(shape, LATENT)
    embedding = build_embedding(NUM_CLASSES, LATENT)
    generator = build_generator(embedding, decoder)
    critic = build_critic(shape, NUM_CLASSES)
    supervised = build_supervised_autoencoder(encoder, embedding, decoder)
    unsupervised = build_unsupervised_autoencoder(encoder, decoder)

    assert encoder.output_shape == (None, LATENT)
    assert decoder.output_shape == (None,) + shape
    assert embedding.output_shape == (None, LATENT)
    assert generator.output_shape == (None,) + shape
    assert critic.output_shape == (None, 1)
    assert supervised.output_shape == (None,) + shape
    assert unsupervised.output_shape == (None,) + shape
    # One stride-2 convolution per stage, from the image down to 4x4.
    downs = [layer for layer in encoder.layers if layer.name.startswith("down_") and not layer.name.endswith("_act")]
    assert [layer.filters for layer in downs] == encoder_filters(shape[0])
    assert len(downs) == stages
    assert encoder.get_layer(f"down_{stages}").output.shape[1:3] == (4, 4)

    latent = npy(encoder(x, training=False))
    assert latent.shape == (n, LATENT) and np.all(np.isfinite(latent))
    # Scale the last layer up so that its pre-activation lies far outside [-1, 1]: tanh keeps the
    # image in [-1, 1] and saturates at both ends.
    to_image = decoder.get_layer("to_image")
    kernel, bias = to_image.get_weights()
    to_image.set_weights([kernel * 1e4, bias])
    images = npy(decoder(rng.normal(size=(n, LATENT)).astype("float32"), training=False))
    assert images.shape == (n,) + shape
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.999 and images.max() > 0.999
    to_image.set_weights([kernel, bias])

    assert npy(generator([latent, y], training=False)).shape == (n,) + shape
    assert npy(critic([x, y], training=False)).shape == (n, 1)
    assert npy(supervised([x, y], training=False)).shape == (n,) + shape
    assert npy(unsupervised(x, training=False)).shape == (n,) + shape


def test_embedding_multiplies_latent_by_the_label_row():
    rng = np.random.default_rng(1)
    embedding = build_embedding(NUM_CLASSES, LATENT)
    table = embedding.get_layer("label_embedding").get_weights()[0]
    assert table.shape == (NUM_CLASSES, LATENT)
    latent = rng.normal(size=(20, LATENT)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, 20).astype("int32")
    out = npy(embedding([latent, labels]))
    np.testing.assert_allclose(out, latent * table[labels], rtol=1e-6, atol=1e-7)
    # Not the same row for every label: the label matters.
    other = npy(embedding([latent, (labels + 1) % NUM_CLASSES]))
    assert not np.allclose(out, other)


def test_generator_is_decoder_of_labeled_latent():
    rng = np.random.default_rng(2)
    shape = (32, 32, 1)
    embedding, decoder = build_embedding(NUM_CLASSES, LATENT), build_decoder(shape, LATENT)
    generator = build_generator(embedding, decoder)
    z = rng.normal(size=(6, LATENT)).astype("float32")
    y = _labels(6)
    expected = decoder(embedding([z, y]), training=False)
    np.testing.assert_allclose(npy(generator([z, y], training=False)), npy(expected), atol=1e-6)
    # The generator shares (not copies) the autoencoder's weights.
    assert {id(w) for w in decoder.weights} <= {id(w) for w in generator.weights}
    assert {id(w) for w in embedding.weights} <= {id(w) for w in generator.weights}


def test_128_pixel_networks_build():
    shape = (128, 128, 3)
    assert num_stages(128) == 5
    encoder = build_encoder(shape, LATENT)
    decoder = build_decoder(shape, LATENT)
    generator = build_generator(build_embedding(NUM_CLASSES, LATENT), decoder)
    critic = build_critic(shape, NUM_CLASSES, encoder=encoder)
    assert encoder.output_shape == (None, LATENT)
    assert decoder.output_shape == (None,) + shape
    assert generator.output_shape == (None,) + shape
    assert critic.output_shape == (None, 1)


@pytest.mark.parametrize("size", [48, 16, 256])
def test_unsupported_image_size_raises_value_error(size):
    shape = (size, size, 1)
    with pytest.raises(ValueError, match=str(size)):
        build_encoder(shape, LATENT)
    with pytest.raises(ValueError, match=str(size)):
        build_decoder(shape, LATENT)
    with pytest.raises(ValueError, match=str(size)):
        build_critic(shape, NUM_CLASSES)


def _down_convs(model):
    return {layer.name: layer for layer in model._flatten_layers()
            if layer.name.startswith("down_") and not layer.name.endswith("_act")}


def test_critic_initialised_from_encoder_copies_its_convolutions():
    shape = (32, 32, 1)
    encoder = build_encoder(shape, LATENT)
    rng = np.random.default_rng(3)
    # Make the encoder's weights unlike any fresh initialisation (e.g. non-zero biases).
    encoder.set_weights([rng.normal(size=w.shape).astype("float32") for w in encoder.get_weights()])

    critic = build_critic(shape, NUM_CLASSES, encoder=encoder)
    fresh = build_critic(shape, NUM_CLASSES)
    convs = _down_convs(critic)
    assert sorted(convs) == [f"down_{i}" for i in range(1, num_stages(32) + 1)]
    for name, layer in convs.items():
        for mine, theirs in zip(layer.get_weights(), encoder.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
        for mine, theirs in zip(_down_convs(fresh)[name].get_weights(), encoder.get_layer(name).get_weights()):
            assert not np.array_equal(mine, theirs)
    # A copy, not shared variables: training the critic must not move the encoder.
    encoder_ids = {id(w) for w in encoder.weights}
    assert not encoder_ids & {id(w) for w in critic.weights}


def test_generator_keras_round_trip_gives_identical_outputs(tmp_path):
    shape = (32, 32, 1)
    generator = build_generator(build_embedding(NUM_CLASSES, LATENT), build_decoder(shape, LATENT))
    rng = np.random.default_rng(4)
    # Random weights everywhere, including batch-norm moving statistics (variance > 0), so that a
    # loader that left any variable at its initial value would be caught in inference mode.
    new = []
    for w in generator.weights:
        value = rng.normal(0, 0.2, w.shape).astype("float32")
        if "variance" in w.path:
            value = np.abs(value) + 0.5
        new.append(value)
    generator.set_weights(new)

    z = rng.normal(size=(12, LATENT)).astype("float32")
    y = _labels(12)
    before = npy(generator([z, y], training=False))

    path = tmp_path / "generator.keras"
    generator.save(path)
    loaded = keras.models.load_model(path)  # safe mode (the default)
    after = npy(loaded([z, y], training=False))
    assert loaded.output_shape == (None,) + shape
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    for a, b in zip(generator.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The comparison is sensitive: another label gives other images.
    assert not np.allclose(npy(loaded([z, (y + 1) % NUM_CLASSES], training=False)), before, atol=1e-3)


# ---------------------------------------------------------------- --networks original


def test_the_original_codes_networks_have_its_widths_and_details():
    """improved_bagan_gp.py at 64x64: encoder 64-128-128-256 + Dense + LeakyReLU; decoder Dense
    without batch norm, then 128-128-64; critic head Embedding(512) ... Dense(512) -> Dense(1);
    convolutions from N(0, 0.02)."""
    import bagan_train
    from autoencoder import DEFAULT_NETWORKS, NETWORKS, decoder_filters
    shape = (64, 64, 1)
    encoder, decoder = build_encoder(shape, LATENT, "original"), build_decoder(shape, LATENT, "original")
    critic = build_critic(shape, NUM_CLASSES, networks="original")
    assert [l.filters for l in encoder.layers if isinstance(l, keras.layers.Conv2D)] == [64, 128, 128, 256]
    assert encoder.layers[-1].name == "latent_act" and isinstance(encoder.layers[-1], keras.layers.LeakyReLU)
    assert [l.filters for l in decoder.layers if isinstance(l, keras.layers.Conv2DTranspose)] == [128, 128, 64, 1]
    assert decoder_filters(32, "original") == [128, 128]
    norms = [l.name for l in decoder.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert norms == ["up_1_bn", "up_2_bn", "up_3_bn"]  # none after the Dense
    head = critic.get_layer("critic_head")
    assert head.get_layer("label_embedding").output_dim == 512 and head.get_layer("joint_dense").units == 512
    assert critic.output_shape == (None, 1)
    kernel = npy(encoder.get_layer("down_2").kernel)
    assert 0.015 < kernel.std() < 0.025 and abs(kernel.mean()) < 0.002
    project = build_encoder(shape, LATENT, "project")
    assert "project_bn" in [l.name for l in build_decoder(shape, LATENT, "project").layers]
    assert [l.filters for l in project.layers if isinstance(l, keras.layers.Conv2D)] == [64, 128, 256, 512]
    field = {f.name: f for f in bagan_train.dataclasses.fields(bagan_train.TrainConfig)}["networks"]
    assert set(field.metadata["choices"]) == set(NETWORKS)
    assert field.default == DEFAULT_NETWORKS == "original"  # the flag's default is the builders'
    assert [l.filters for l in build_encoder(shape, LATENT).layers if isinstance(l, keras.layers.Conv2D)] == [
        64, 128, 128, 256]


def test_project_networks_train_from_the_command_line_and_bagan_copies_their_encoder(tmp_path, train_run):
    """BAGAN-GP v3 with the critic from the encoder on the project's networks (every other run of the
    tests has the default, the original's): config.json records them, the saved networks are the
    project's; BAGAN's discriminator of a project encoder copies it."""
    import json
    from bagan_gp import build_bagan_discriminator
    run = train_run(tmp_path / "v3", 1, 1, "--networks", "project", "--critic-init", "encoder", "--precision", "float32")
    assert json.loads((run / "config.json").read_text())["networks"] == "project"
    critic = keras.models.load_model(run / "critic.keras")
    encoder = keras.models.load_model(run / "encoder.keras")
    assert "joint_dense" not in [l.name for l in critic.get_layer("critic_head").layers]
    assert [l.filters for l in encoder.layers if isinstance(l, keras.layers.Conv2D)] == [64, 128, 256]
    discriminator = build_bagan_discriminator(encoder, NUM_CLASSES, networks="project")
    x = _images(np.random.default_rng(0), 3, (32, 32, 1))
    features = keras.Model(discriminator.inputs, discriminator.get_layer("latent").output)
    np.testing.assert_allclose(npy(features(x)), npy(encoder(x)), rtol=1e-5, atol=1e-6)
