"""The generator's start (--latent class, --g-learning-rate): it begins as the autoencoder ends."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

from autoencoder import build_decoder, build_embedding, build_encoder
from bagan_gp import class_conditional_statistics, encode
from bagan_train import TrainConfig
from datasets import load_dataset
from runs import Autoencoder, UsageError

npy = keras.ops.convert_to_numpy
LATENT = 16


@pytest.fixture(scope="module")
def digits32():
    return load_dataset("digits", image_size=32)


@pytest.fixture(scope="module")
def class_latent_gan(digits32):
    """BAGAN-GP v3 with --latent class on untrained networks (what matters is the wiring), and its autoencoder."""
    keras.utils.set_random_seed(3)
    shape = digits32.x_train.shape[1:]
    pretrained = Autoencoder(build_encoder(shape, LATENT), build_embedding(10, LATENT), build_decoder(shape, LATENT),
                             supervised=True)
    config = TrainConfig.create(latent="class", latent_dim=LATENT, batch_size=32)
    return config.model_class.build(digits32, pretrained, **config.model_settings()), pretrained


def test_latent_is_v3s_choice_and_bagan_gps_only():
    for settings, needle in ((dict(latent="paper", variant="v1"), "--latent paper does not apply to --model "
                                                                   "bagan_gp v1 (it has class)"),
                             (dict(latent="class", model="cgan"), "--latent does not apply to --model cgan"),
                             (dict(latent="mean"), "latent must be one of paper, class")):
        with pytest.raises(UsageError, match=re.escape(needle)):
            TrainConfig.create(**settings)
    assert TrainConfig.create().latent == "paper"
    assert TrainConfig.create(model="bagan").latent is None
    assert TrainConfig.create(variant="v2").latent == TrainConfig.create(variant="v1", latent="class").latent == "class"


def test_at_step_0_the_class_mean_gives_the_autoencoders_image(class_latent_gan, digits32):
    """G(0, c) = decoder(embedding(mean_c, c)): the generator starts where the autoencoder ends."""
    model, pretrained = class_latent_gan
    latents = encode(pretrained.encoder, digits32.x_train, 64)
    means, _ = class_conditional_statistics(latents, digits32.y_train, 10)
    labels = np.arange(10, dtype=np.int32)
    generated = npy(model.generator([np.zeros((10, LATENT), np.float32), labels], training=False))
    expected = npy(pretrained.decoder(pretrained.embedding([means.astype(np.float32), labels]), training=False))
    np.testing.assert_allclose(generated, expected, atol=1e-5)


def test_the_generator_draws_each_class_latent_from_its_gaussian(class_latent_gan, digits32):
    """The labeled latent in front of the embedding has the mean and covariance of the class's encoded images."""
    model, pretrained = class_latent_gan
    latent = model.generator.get_layer("class_conditional_latent")
    assert not latent.trainable_weights  # fixed, as BAGAN's; the embedding after it trains
    latents = encode(pretrained.encoder, digits32.x_train, 64)
    means, covariances = class_conditional_statistics(latents, digits32.y_train, 10)
    rng = np.random.default_rng(0)
    for c in (0, 7):
        drawn = npy(latent([rng.standard_normal((20000, LATENT)).astype(np.float32), np.full(20000, c, np.int32)]))
        scale = np.sqrt(np.diag(covariances[c])).max()
        np.testing.assert_allclose(drawn.mean(0), means[c], atol=0.05 * scale)
        np.testing.assert_allclose(np.cov(drawn, rowvar=False), covariances[c], atol=0.05 * scale**2)


def test_the_generator_with_class_latent_saves_and_loads_in_safe_mode(class_latent_gan, tmp_path):
    model, _ = class_latent_gan
    model.generator.save(tmp_path / "generator.keras")
    loaded = keras.models.load_model(tmp_path / "generator.keras")
    z = np.random.default_rng(1).standard_normal((6, LATENT)).astype(np.float32)
    labels = np.array([0, 1, 2, 7, 8, 9], np.int32)
    np.testing.assert_array_equal(npy(loaded([z, labels], training=False)),
                                  npy(model.generator([z, labels], training=False)))


def test_the_generator_learns_at_its_own_rate(tmp_path, train_run):
    """--g-learning-rate 0: the critic trains, the generator's trainable weights stay the autoencoder's."""
    run = train_run(tmp_path / "run", 1, 2, "--g-learning-rate", "0")
    generator = keras.models.load_model(run / "generator.keras")
    decoder = keras.models.load_model(run / "decoder.keras")
    embedding = keras.models.load_model(run / "embedding.keras")
    for saved, trained in zip(decoder.trainable_weights + embedding.trainable_weights,
                              generator.get_layer("decoder").trainable_weights
                              + generator.get_layer("embedding").trainable_weights):
        np.testing.assert_array_equal(npy(saved), npy(trained))
    assert json.loads((run / "config.json").read_text())["g_learning_rate"] == 0.0


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_v1_and_v2_start_from_bagans_initialisation(variant, digits32):
    """v1/v2: the unsupervised decoder fed each class's Gaussian of the encoder's latents, no embedding,
    so G(0, c) = decoder(mean_c)."""
    keras.utils.set_random_seed(4)
    shape = digits32.x_train.shape[1:]
    pretrained = Autoencoder(build_encoder(shape, LATENT), build_embedding(10, LATENT), build_decoder(shape, LATENT),
                             supervised=False)
    config = TrainConfig.create(variant=variant, latent_dim=LATENT, batch_size=32)
    assert config.autoencoder == "unsupervised"
    model = config.model_class.build(digits32, pretrained, **config.model_settings())
    names = [layer.name for layer in model.generator.layers]
    assert "class_conditional_latent" in names and "embedding" not in names
    means, _ = class_conditional_statistics(encode(pretrained.encoder, digits32.x_train, 64), digits32.y_train, 10)
    labels = np.arange(10, dtype=np.int32)
    np.testing.assert_allclose(npy(model.generator([np.zeros((10, LATENT), np.float32), labels], training=False)),
                               npy(pretrained.decoder(means.astype(np.float32), training=False)), atol=1e-5)
