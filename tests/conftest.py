"""Shared fixtures of the model and training tests (test_networks, test_bagan_gp, test_train)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def quiet_seeded_keras(request, monkeypatch):
    """Quiet TensorFlow's C++ logs and seed Python, NumPy and Keras before every model/training test.

    Only the tests that use Keras are seeded (importing Keras in every test would slow the
    dataset tests down for nothing).
    """
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    keras_modules = ("test_networks", "test_bagan_gp", "test_train", "test_models", "test_distribute")
    if request.module.__name__.rsplit(".", 1)[-1] in keras_modules:
        import keras

        keras.utils.set_random_seed(1234)
    yield


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


def train_tiny_run(path, epochs=1, steps=1, *flags):
    """A real digits run folder at 32x32 in seconds (1 autoencoder epoch, `steps` GAN steps per epoch)."""
    import bagan_train
    code = bagan_train.main(["--dataset", "digits", "--image-size", "32", "--batch-size", "16",
                             "--epochs", str(epochs), "--ae-epochs", "1", "--steps-per-epoch", str(steps),
                             "--out", str(path), "--verbose", "0", *flags])
    assert code == 0
    return path
