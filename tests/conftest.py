"""What every test shares: the same seeding, quiet TensorFlow, and real tiny training runs."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def seeded(monkeypatch):
    """Every test starts from the same seed of Python, NumPy and Keras, with TensorFlow's C++ logs quiet."""
    import keras

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    keras.utils.set_random_seed(1234)


@pytest.fixture
def op_determinism():
    """Deterministic TensorFlow kernels for one test, switched off again afterwards."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # no public "disable" in TF 2.21

    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


def _train_run(path, epochs=1, steps=1, *flags):
    import bagan_train
    code = bagan_train.main(["--dataset", "digits", "--image-size", "32", "--batch-size", "16",
                             "--epochs", str(epochs), "--ae-epochs", "1", "--steps-per-epoch", str(steps),
                             "--out", str(path), "--verbose", "0", *flags])
    assert code == 0
    return path


@pytest.fixture(scope="session")
def train_run():
    """train_run(path, epochs=1, steps=1, *flags): a real digits run folder at 32x32 in seconds
    (batch 16, 1 autoencoder epoch, `steps` GAN steps per epoch), made by bagan_train.main."""
    return _train_run


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, train_run):
    """The README's smoke run, made once and shared (tests that change a run folder copy it first):
    BAGAN-GP v3 on digits, 1 autoencoder epoch, 2 GAN epochs of 2 steps."""
    return train_run(tmp_path_factory.mktemp("smoke") / "digits-run", 2, 2)
