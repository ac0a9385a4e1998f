"""The papers' other models (--model): BAGAN, cDRAGAN, conditional WGAN-GP, CGAN and AC-GAN.

Each trains a few real steps on digits and writes a run folder that fid.py scores; the pieces that
differ from BAGAN-GP (BAGAN's class-conditional latent and K+1 softmax, AC-GAN's batch proportions,
the Wasserstein terms) are checked against hand computations.
"""

from __future__ import annotations

import csv
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import bagan_train
import fid
import generate
import metrics  # noqa: F401  (the warning filter names it)
from autoencoder import build_decoder, build_embedding, build_encoder
from bagan_gp import (ACGAN, BAGAN, BAGANGP, MODELS, CDRAGAN, build_acgan_discriminator, build_bagan_discriminator,
                      build_class_conditional_latent, build_critic, build_generator,
                      class_conditional_statistics, registered, wasserstein)
from bagan_train import TrainConfig

npy = keras.ops.convert_to_numpy
SHAPE = (32, 32, 1)
LATENT = 8
OTHER_MODELS = ["bagan", "cdragan", "wgan_gp", "cgan", "acgan"]
GAN_KEYS = {"d_loss", "g_loss", "d_real", "d_fake"}
AIDS = ["--ema-decay", "0.9", "--diffaugment", "translation,cutout,color"]
WITH_AIDS = ("bagan", "acgan")  # EMA and DiffAugment on the two models whose critics differ from BAGAN-GP's


@pytest.fixture(scope="module")
def runs(tmp_path_factory, train_run):
    """One tiny digits run folder per model: 2 epochs of 2 generator steps at 32x32 (BAGAN and
    AC-GAN with the generator's moving average and DiffAugment)."""
    root = tmp_path_factory.mktemp("models")
    return {m: train_run(root / m, 2, 2, "--model", m, *(AIDS if m in WITH_AIDS else [])) for m in OTHER_MODELS}


def gan_rows(run):
    with open(run / "history.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["phase"] == "gan"]


@pytest.mark.parametrize("model", OTHER_MODELS)
def test_each_model_trains_with_finite_losses_and_a_complete_run_folder(model, runs):
    run = runs[model]
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == model
    assert config["train_ratio"] == MODELS[model].default_train_ratio
    rows = gan_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        values = {k: float(v) for k, v in row.items() if k in GAN_KEYS | {"gp", "d_class"} and v != ""}
        assert GAN_KEYS <= set(values), values
        assert all(math.isfinite(v) for v in values.values()), values
    for name in ("generator.keras", "critic.keras", "losses.png", "progress.gif", "samples/epoch_002.png",
                 "checkpoints/epoch_002.npz"):
        assert (run / name).is_file(), name
    assert (run / "generator_raw.keras").is_file() == (model in WITH_AIDS)
    assert (config["ema_decay"], config["diffaugment"]) == ((0.9, "translation,cutout,color") if model in WITH_AIDS
                                                            else (0.0, None))
    has_autoencoder = config["autoencoder"] is not None
    assert (run / "encoder.keras").is_file() == has_autoencoder == (model == "bagan")
    with open(run / "history.csv") as f:  # the header is the model's own loss parts (and each epoch's seconds)
        header = f.readline().strip().split(",")
    assert "seconds" in header
    assert [h for h in header if h != "seconds"] == ["phase", "epoch"] + (["loss", "val_loss"] if has_autoencoder else []) + [
        p for p in ("d_loss", "g_loss", "gp", "d_real", "d_fake", "d_wrong", "d_class")
        if p in {"bagan": GAN_KEYS, "cdragan": GAN_KEYS | {"gp", "d_wrong"}, "wgan_gp": GAN_KEYS | {"gp", "d_wrong"},
                 "cgan": GAN_KEYS | {"d_wrong"}, "acgan": GAN_KEYS | {"d_class"}}[model]]
    generator = keras.models.load_model(run / "generator.keras")
    images = npy(generator([np.zeros((3, config["latent_dim"]), "float32"), np.array([0, 4, 9], "int32")]))
    assert images.shape == (3, 32, 32, 1) and np.abs(images).max() <= 1.0


def test_model_specific_losses_are_logged(runs):
    assert all(float(r["gp"]) > 0 for r in gan_rows(runs["wgan_gp"]))
    assert all(float(r["gp"]) > 0 for r in gan_rows(runs["cdragan"]))
    assert all("gp" not in r for r in gan_rows(runs["cgan"]))  # CGAN has no penalty to log
    assert all(float(r["d_class"]) > 0 for r in gan_rows(runs["acgan"]))


@pytest.mark.filterwarnings("ignore::metrics.SingularCovarianceWarning")  # 4 images per class
def test_every_model_run_folder_is_scored_by_fid(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    args = fid.parse_args([str(runs[m]) for m in OTHER_MODELS] +
                          ["--weights", "random", "--per-class", "4", "--real-per-class", "4", "--baselines"])
    result = fid.score(args)
    names = [row["name"] for row in result["rows"]]
    assert names[:len(OTHER_MODELS)] == [runs[m].name for m in OTHER_MODELS]
    # Only the BAGAN run has an autoencoder: one reconstruction row, then the real training images.
    assert names[len(OTHER_MODELS):] == [fid.RECONSTRUCTED, fid.REAL_TRAIN]
    for row in result["rows"][:len(OTHER_MODELS)]:
        assert row["counts"] == [4] * 10
        assert all(v is not None and math.isfinite(v) for v in row["fid"])


def test_fid_baselines_of_runs_without_autoencoder_fail_before_any_work(runs, capsys):
    assert fid.main([str(runs["cgan"]), "--weights", "random", "--baselines"]) == 2
    assert "no autoencoder" in capsys.readouterr().err


def test_generate_writes_images_of_every_model(runs, tmp_path):
    out = tmp_path / "generated"
    assert generate.main([str(runs["acgan"]), "--per-class", "2", "--to", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [str(c) for c in range(10)]
    assert all(len(list(d.iterdir())) == 2 for d in out.iterdir())


def test_resume_of_a_model_without_autoencoder(runs, tmp_path, train_run):
    run = train_run(tmp_path / "acgan", 1, 2, "--model", "acgan", "--alternate")
    assert bagan_train.main(["--resume", str(run), "--epochs", "3", "--verbose", "0"]) == 0
    assert [r["epoch"] for r in gan_rows(run)] == ["1", "2", "3"]
    assert not (run / "encoder.keras").exists()


# ---------------------------------------------------------------- BAGAN


def test_class_conditional_latent_reproduces_mean_and_covariance():
    """BAGAN's sampler: z ~ N(0, I) through the class's mean and covariance root."""
    rng = np.random.default_rng(0)
    true_means = rng.normal(0, 3, (3, LATENT))
    mixing = rng.normal(0, 1, (3, LATENT, LATENT))
    latents = np.concatenate([true_means[c] + rng.normal(0, 1, (400, LATENT)) @ mixing[c] for c in range(3)])
    labels = np.repeat(np.arange(3), 400)
    means, covariances = class_conditional_statistics(latents, labels, 3)
    for c in range(3):
        np.testing.assert_allclose(means[c], latents[labels == c].mean(0), atol=1e-10)
        np.testing.assert_allclose(covariances[c], np.cov(latents[labels == c], rowvar=False, bias=True), atol=1e-10)
    sampler = build_class_conditional_latent(means, covariances)
    n = 40000
    for c in range(3):
        z = rng.standard_normal((n, LATENT)).astype("float32")
        out = npy(sampler([z, np.full(n, c, "int32")])).astype(np.float64)
        scale = np.sqrt(np.diag(covariances[c]))
        assert np.all(np.abs(out.mean(0) - means[c]) < 5 * scale / np.sqrt(n))
        np.testing.assert_allclose(np.cov(out, rowvar=False), covariances[c], atol=0.04 * scale.max() ** 2)


def test_class_conditional_latent_handles_classes_with_fewer_images_than_dimensions():
    """A singular covariance (3 images in 8 dimensions): samples stay in the images' affine span."""
    rng = np.random.default_rng(1)
    latents = rng.normal(0, 1, (3, LATENT))
    means, covariances = class_conditional_statistics(latents, np.zeros(3, int), 1)
    out = npy(build_class_conditional_latent(means, covariances)(
        [rng.standard_normal((5000, LATENT)).astype("float32"), np.zeros(5000, "int32")])).astype(np.float64)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.cov(out, rowvar=False), covariances[0], atol=0.05)
    directions = latents[1:] - latents[0]
    residual = (out - latents[0]) - (out - latents[0]) @ np.linalg.pinv(directions) @ directions
    assert np.abs(residual).max() < 1e-3


def bagan_with_biased_fake_logit(num_classes=4, batch=8):
    """A BAGAN whose discriminator says "class index K" with logit 20 whatever the image."""
    encoder = build_encoder(SHAPE, LATENT)
    critic = build_bagan_discriminator(encoder, num_classes)
    head = critic.get_layer("class_logits")
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.r_[np.zeros(num_classes), 20.0].astype("float32")])
    generator = build_generator(build_embedding(num_classes, LATENT), build_decoder(SHAPE, LATENT))
    model = BAGAN(generator, critic, num_classes, latent_dim=LATENT, train_ratio=1, seed=3)
    images = np.random.default_rng(0).uniform(-1, 1, (batch,) + SHAPE).astype("float32")
    return model, critic, tf.constant(images), tf.constant(np.arange(batch) % num_classes, tf.int32)


def test_bagan_discriminator_has_k_plus_one_outputs_with_fake_last():
    model, critic, images, labels = bagan_with_biased_fake_logit()
    assert critic.output_shape == (None, 5)
    assert model.fake_class == 4
    fakes, fake_labels = model.sample_fakes(labels)
    assert fakes.shape[0] == 2  # ceil(8 / 4): "fake" as frequent as one class
    total, parts = model.critic_loss(images, labels, fakes, fake_labels)
    softmax_ce_real = 20.0 + math.log(1 + 4 * math.exp(-20.0))  # -log softmax(target 0 of [0,0,0,0,20])
    assert float(parts["d_fake"]) == pytest.approx(math.log(1 + 4 * math.exp(-20.0)), abs=1e-6)
    assert float(parts["d_real"]) == pytest.approx(softmax_ce_real, rel=1e-5)
    assert float(total) == pytest.approx((8 * softmax_ce_real + 2 * float(parts["d_fake"])) / 10, rel=1e-5)
    # The generator wants its fakes classified as their class, not as "fake".
    assert float(model.generator_loss(labels)) == pytest.approx(softmax_ce_real, rel=1e-5)


def test_bagan_discriminator_starts_from_the_encoder():
    encoder = build_encoder(SHAPE, LATENT)
    critic = build_bagan_discriminator(encoder, 3, dropout=0.3)
    copied = [layer for layer in critic.layers if layer.weights and layer.name != "class_logits"]
    assert [layer.name for layer in copied] == [layer.name for layer in encoder.layers if layer.weights]
    for layer in copied:
        for a, b in zip(layer.get_weights(), encoder.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
        assert layer is not encoder.get_layer(layer.name)  # a copy: the GAN does not change the saved encoder
    dropouts = [layer for layer in critic.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == 3 and all(layer.rate == 0.3 for layer in dropouts)  # after each convolution
    images = np.random.default_rng(0).uniform(-1, 1, (4,) + SHAPE).astype("float32")
    latent = keras.Model(critic.inputs, critic.get_layer(encoder.layers[-1].name).output)  # the encoder's output
    np.testing.assert_allclose(npy(latent(images, training=False)), npy(encoder(images)), atol=1e-5)


def test_bagan_has_the_original_codes_settings():
    """IBM/BAGAN's balancing_gan.py: Adam(5e-5, 0.5, Keras' beta_2), MSE autoencoder, Dropout(0.3); each a flag."""
    config = TrainConfig.create(model="bagan")
    assert (config.learning_rate, config.g_learning_rate, config.beta_1, config.beta_2, config.ae_loss,
            config.dropout, config.train_ratio) == (5e-5, 5e-5, 0.5, 0.999, "mse", 0.3, 1)
    config = TrainConfig.create(model="bagan", learning_rate=2e-4, ae_loss="mae", dropout=0.0)
    assert (config.learning_rate, config.ae_loss, config.dropout) == (2e-4, "mae", 0.0)
    assert (TrainConfig.create().learning_rate, TrainConfig.create().ae_loss) == (2e-4, "mae")


# ---------------------------------------------------------------- AC-GAN


def acgan(real_fraction=0.5, alternate=False, num_classes=3):
    generator = build_generator(build_embedding(num_classes, LATENT), build_decoder(SHAPE, LATENT))
    return ACGAN(generator, build_acgan_discriminator(SHAPE, num_classes), num_classes, latent_dim=LATENT,
                 train_ratio=1, real_fraction=real_fraction, alternate=alternate, seed=2)


@pytest.mark.parametrize("fraction, fakes", [(0.5, 12), (0.25, 36), (0.75, 4)])
def test_acgan_discriminator_batch_proportion(fraction, fakes):
    model = acgan(fraction)
    labels = tf.constant([0, 1, 2] * 4, tf.int32)
    images, fake_labels = model.sample_fakes(labels)
    assert images.shape[0] == fake_labels.shape[0] == fakes
    assert 12 / (12 + fakes) == pytest.approx(fraction)
    assert set(npy(fake_labels).tolist()) <= {0, 1, 2}


def test_acgan_v3_alternates_every_third_epoch():
    model = acgan(0.75, alternate=True)
    fractions = []
    for epoch in range(7):
        model.begin_epoch(epoch)
        fractions.append(float(npy(model.real_fraction)))
    assert fractions == [0.75, 0.75, 0.5, 0.75, 0.75, 0.5, 0.75]
    steady = acgan(0.25)
    steady.begin_epoch(2)
    assert float(npy(steady.real_fraction)) == 0.25


def test_acgan_critic_loss_matches_hand_computation():
    model = acgan()
    rng = np.random.default_rng(4)
    real = tf.constant(rng.uniform(-1, 1, (6,) + SHAPE).astype("float32"))
    labels = tf.constant([0, 1, 2, 0, 1, 2], tf.int32)
    fakes, fake_labels = model.sample_fakes(labels)
    total, parts = model.critic_loss(real, labels, fakes, fake_labels)
    source, classes = (npy(t).astype(np.float64) for t in model.critic(tf.concat([real, fakes], 0)))
    targets = np.r_[np.ones(6), np.zeros(6)]
    source_ce = np.logaddexp(0, source[:, 0]) - targets * source[:, 0]
    all_labels = np.r_[npy(labels), npy(fake_labels)]
    log_softmax = classes - np.log(np.exp(classes).sum(1, keepdims=True))
    class_ce = -log_softmax[np.arange(12), all_labels].mean()
    assert float(parts["d_real"]) == pytest.approx(source_ce[:6].mean(), rel=1e-5)
    assert float(parts["d_fake"]) == pytest.approx(source_ce[6:].mean(), rel=1e-5)
    assert float(parts["d_class"]) == pytest.approx(class_ce, rel=1e-5)
    assert float(total) == pytest.approx(source_ce.mean() + class_ce, rel=1e-5)


# ---------------------------------------------------------------- conditional WGAN-GP


def test_wasserstein_terms_of_eq_8_and_9():
    """Critic: E[D(fake)] - E[D(real)] + lambda GP; generator: -E[D(fake)]."""
    num_classes = 3
    generator = build_generator(build_embedding(num_classes, LATENT), build_decoder(SHAPE, LATENT))
    critic = build_critic(SHAPE, num_classes)
    model = BAGANGP(generator, critic, num_classes, latent_dim=LATENT, gp_weight=10.0, balanced_labels=False,
                    wrong_label_term=False, adversarial_loss=wasserstein, seed=6)
    rng = np.random.default_rng(5)
    real = tf.constant(rng.uniform(-1, 1, (6,) + SHAPE).astype("float32"))
    labels = tf.constant([0, 1, 2, 2, 1, 0], tf.int32)
    fakes, fake_labels = model.sample_fakes(labels)
    np.testing.assert_array_equal(npy(fake_labels), npy(labels))  # real labels for the fakes (cWGAN-GP)
    total, parts = model.critic_loss(real, labels, fakes, fake_labels)
    d_real = npy(critic([real, labels])).mean()
    d_fake = npy(critic([fakes, labels])).mean()
    assert float(parts["d_real"]) == pytest.approx(-d_real, rel=1e-4, abs=1e-6)
    assert float(parts["d_fake"]) == pytest.approx(d_fake, rel=1e-4, abs=1e-6)
    assert float(parts["d_wrong"]) == 0.0
    assert float(total) == pytest.approx(d_fake - d_real, rel=1e-4, abs=1e-5)  # train_step adds 10 * GP
    assert float(wasserstein(tf.constant([[1.0], [3.0]]), 1.0)) == -2.0


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize("flags, needle", [
    (["--model", "cgan", "--variant", "v2"], "--variant"),
    (["--model", "cdragan", "--critic-init", "encoder"], "--critic-init"),
    (["--model", "acgan", "--gp-weight", "5"], "--gp-weight"),
    (["--model", "wgan_gp", "--real-fraction", "0.25"], "--real-fraction"),
    (["--model", "bagan", "--alternate"], "--alternate"),
    (["--model", "cgan", "--dropout", "0.3"], "--dropout"),
    (["--model", "acgan", "--real-fraction", "1.5"], "between 0 and 1"),
])
def test_flags_that_do_not_apply_to_the_model_exit_2(flags, needle, tmp_path, capsys):
    out = tmp_path / "run"
    assert bagan_train.main(["--epochs", "1", "--out", str(out), "--verbose", "0"] + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists()


def test_model_defaults_in_the_config():
    def from_flags(*argv):
        args = bagan_train.parse_args(list(argv))
        return TrainConfig.create(**{name: getattr(args, name) for name in TrainConfig.__dataclass_fields__})
    config = from_flags("--model", "acgan", "--alternate")
    assert (config.train_ratio, config.gp_weight, config.real_fraction, config.variant) == (1, 0.0, 0.75, None)
    config = from_flags("--model", "wgan_gp", "--train-ratio", "3")
    assert (config.train_ratio, config.gp_weight) == (3, 10.0)
    assert from_flags().variant == "v3"
    assert from_flags("--model", "acgan", "--real-fraction", "0.25").real_fraction == 0.25


# ---------------------------------------------------------------- the registry


def test_each_model_describes_itself():
    assert list(MODELS) == ["bagan_gp", "bagan", "cdragan", "wgan_gp", "cgan", "acgan"]
    assert {name: (m.default_train_ratio, m.uses_gradient_penalty) for name, m in MODELS.items()} == {
        "bagan_gp": (5, True), "bagan": (1, False), "cdragan": (5, True), "wgan_gp": (5, True),
        "cgan": (1, False), "acgan": (1, False)}
    assert all(MODELS[name].model_name == name and MODELS[name].title for name in MODELS)


def test_a_new_baseline_is_one_class(tmp_path, monkeypatch, train_run):
    """A model written as one registered class trains from the command line into a full run folder."""
    import bagan_gp
    monkeypatch.setattr(bagan_gp, "MODELS", dict(MODELS))  # the registry as it was, after the test

    @registered
    class RealLabelsWithWrongTerm(CDRAGAN):
        """cDRAGAN plus Eq. 14's wrong-label term, three critic steps: a made-up baseline."""

        model_name = "test_baseline"
        title = "test baseline"
        default_train_ratio = 3
        wrong_label_term = True

    run = train_run(tmp_path / "run", 1, 2, "--model", "test_baseline")
    config = json.loads((run / "config.json").read_text())
    assert (config["model"], config["train_ratio"], config["autoencoder"]) == ("test_baseline", 3, None)
    rows = gan_rows(run)
    assert float(rows[0]["d_wrong"]) > 0 and float(rows[0]["gp"]) > 0
    for name in ("generator.keras", "critic.keras", "losses.png", "progress.gif", "checkpoints/epoch_001.npz"):
        assert (run / name).is_file(), name
