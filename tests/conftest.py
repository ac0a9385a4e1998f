"""What every test shares: the same seeding, quiet TensorFlow, and real tiny training runs."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs a worker per core (pytest-xdist): each worker's TensorFlow, OpenMP and BLAS take
    # their share of the cores instead of all of them, so that no thread waits on a descheduled one.
    # Set before TensorFlow starts; the subprocesses and notebook kernels of a test inherit it (the
    # multi-replica runs of test_distribute.py take the inter-op threads back). Inter-op threads too:
    # one intra-op thread beside several inter-op ones gave round-off differences between a resumed
    # and an uninterrupted run that the resume tests rightly refuse.
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, _share)

import pytest  # noqa: E402

# `make test` hands each pytest-xdist worker a whole test file at a time (--dist loadfile), in collection
# order (--no-loadscope-reorder: xdist's own order, by number of tests, put the two longest files last).
# The files that hold the long trainings go first, longest first, so that the workers finish together
# instead of one running a long file alone at the end. Seconds per file, two workers on two cores, quiet:
# 206, 192, 103, 94, 94, 90, 63, 60, 57, 46, 41, 38 in this order; the rest keep their order after them.
LONGEST_FIRST = ("test_compare.py", "test_distribute.py", "test_train.py", "test_classify.py", "test_trust.py",
                 "test_best.py", "test_oversampler.py", "test_models.py", "test_fid.py", "test_generate_units.py",
                 "test_notebooks.py", "test_bagan_gp.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def cache_home(tmp_path_factory):
    """One cache folder ($XDG_CACHE_HOME) for the session, shared by pytest-xdist's workers and the
    processes the tests start: a judge of the same data and seed trains once (evaluators.judge), and
    nothing is written to the user's own ~/.cache."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "cache"
    folder.mkdir(exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(folder)
    return folder


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
