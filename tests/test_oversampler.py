"""The imbalanced-learn style oversampler (oversampler.py) on real digits and real tiny trainings."""

from __future__ import annotations

import copy
import functools
import json
from collections import Counter

import numpy as np
import pytest
from imblearn.pipeline import make_pipeline
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

import bagan_train
from datasets import load_dataset
from oversampler import BAGANGPOversampler, ImageFormat, TrainingError, _resize_back

COUNTS = {0: 30, 1: 16, 2: 8, 3: 4}
"""Images kept per digit: an imbalanced set of 58 images."""
NAMES = np.array(["zero", "one", "two", "three"])
# 4 autoencoder epochs: after 1 (4 steps), the original networks' decoder gave the same grey everywhere.
TINY = {"image_size": 32, "epochs": 1, "ae_epochs": 4, "batch_size": 16, "steps_per_epoch": 1, "verbose": 0}


def first_per_class(y):
    return np.concatenate([np.flatnonzero(y == c)[:n] for c, n in COUNTS.items()])


@functools.cache
def _digits_train_split():
    return load_dataset("digits", image_size=8)


def digits_uint8():
    """(58, 8, 8) uint8 digit images and int labels 0..3, from the repo's digits loader (fresh copies)."""
    data = _digits_train_split()
    idx = first_per_class(data.y_train)
    return data.x_train[idx, ..., 0], data.y_train[idx]


def digits_flat_float():
    """(58, 64) float64 rows in [0, 1] (scikit-learn's 0..16 values / 16) and string labels."""
    bunch = load_digits()
    idx = first_per_class(bunch.target)
    return bunch.data[idx] / 16.0, NAMES[bunch.target[idx]]


def with_strategy(sampler, strategy):
    """A shallow copy of a fitted sampler with another sampling_strategy (the fixture stays as it is)."""
    return copy.copy(sampler).set_params(sampling_strategy=strategy)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny training on (N, 8, 8) uint8 digits: the sampler, its inputs and fit_resample's output."""
    X, y = digits_uint8()
    X_before = X.copy()
    run_dir = tmp_path_factory.mktemp("oversampler") / "run"
    sampler = BAGANGPOversampler(random_state=0, run_dir=run_dir, **TINY)
    X_res, y_res = sampler.fit_resample(X, y)
    return {"sampler": sampler, "X": X, "y": y, "X_before": X_before, "X_res": X_res, "y_res": y_res,
            "run_dir": run_dir}


@pytest.fixture(scope="module")
def pipeline():
    """One tiny training inside an imbalanced-learn Pipeline on flattened float digits with string labels."""
    X, y = digits_flat_float()
    pipe = make_pipeline(BAGANGPOversampler(random_state=0, image_shape=(8, 8), **TINY),
                         LogisticRegression(max_iter=1000))
    pipe.fit(X, y)
    return {"pipe": pipe, "sampler": pipe.steps[0][1], "X": X, "y": y}


# ---------------------------------------------------------------------------------------------
# fit_resample and the sampling strategies


def test_fit_resample_balances_every_class_to_the_majority(fitted):
    assert Counter(fitted["y_res"].tolist()) == {0: 30, 1: 30, 2: 30, 3: 30}
    assert fitted["X_res"].shape == (120, 8, 8)
    assert fitted["sampler"].sampling_strategy_ == {1: 14, 2: 22, 3: 26}


def test_originals_come_first_untouched_and_generated_follow_in_class_order(fitted):
    X, y, X_res, y_res = fitted["X"], fitted["y"], fitted["X_res"], fitted["y_res"]
    assert X.tobytes() == fitted["X_before"].tobytes()
    assert X_res[:len(X)].tobytes() == X.tobytes()
    np.testing.assert_array_equal(y_res[:len(y)], y)
    np.testing.assert_array_equal(y_res[len(y):], np.repeat([1, 2, 3], [14, 22, 26]))
    assert y_res.dtype == y.dtype


def test_uint8_two_dimensional_images_come_back_as_uint8_two_dimensional_images(fitted):
    X_new, _ = fitted["sampler"].sample(5)
    assert X_new.dtype == np.uint8 and X_new.shape == (20, 8, 8)
    assert fitted["X_res"].dtype == np.uint8
    assert len(np.unique(X_new)) > 2, "generated images are not constant"


@pytest.mark.parametrize("strategy, expected", [
    ("auto", {0: 30, 1: 30, 2: 30, 3: 30}),
    ("not majority", {0: 30, 1: 30, 2: 30, 3: 30}),
    ("all", {0: 30, 1: 30, 2: 30, 3: 30}),
    ("minority", {0: 30, 1: 16, 2: 8, 3: 30}),
    ("not minority", {0: 30, 1: 30, 2: 30, 3: 4}),
    ({1: 20, 3: 9}, {0: 30, 1: 20, 2: 8, 3: 9}),
    ({0: 30, 2: 8}, {0: 30, 1: 16, 2: 8, 3: 4}),
    (lambda y: {2: 10, 3: 4 + int((y == 3).sum())}, {0: 30, 1: 16, 2: 10, 3: 8}),
], ids=["auto", "not-majority", "all", "minority", "not-minority", "dict", "dict-no-change", "callable"])
def test_class_counts_after_resampling_equal_the_strategy(fitted, strategy, expected):
    X, y = fitted["X"], fitted["y"]
    X_res, y_res = with_strategy(fitted["sampler"], strategy).resample(X, y)
    assert Counter(y_res.tolist()) == expected
    assert len(X_res) == len(y_res) and X_res[:len(X)].tobytes() == X.tobytes()


def test_resample_with_the_same_random_state_repeats_fit_resample(fitted):
    X_res, y_res = fitted["sampler"].resample(fitted["X"], fitted["y"])
    np.testing.assert_array_equal(X_res, fitted["X_res"])
    np.testing.assert_array_equal(y_res, fitted["y_res"])


def test_sample_is_reproducible_for_a_random_state(fitted):
    sampler = fitted["sampler"]
    X_a, y_a = sampler.sample(4)
    X_b, _ = sampler.sample(4)
    np.testing.assert_array_equal(X_a, X_b)
    np.testing.assert_array_equal(y_a, np.repeat([0, 1, 2, 3], 4))
    X_other, _ = sampler.sample(4, random_state=1)
    assert not np.array_equal(X_a, X_other)


def test_sample_a_dict_of_counts(fitted):
    X_new, y_new = fitted["sampler"].sample({3: 5, 1: 2})
    np.testing.assert_array_equal(y_new, [1, 1, 3, 3, 3, 3, 3])
    assert X_new.shape == (7, 8, 8)
    X_none, y_none = fitted["sampler"].sample(0)
    assert X_none.shape == (0, 8, 8) and X_none.dtype == np.uint8 and len(y_none) == 0


def test_the_run_folder_is_a_bagan_train_run_of_the_arrays(fitted):
    run_dir = fitted["run_dir"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "arrays"
    assert config["class_names"] == ["0", "1", "2", "3"]
    assert config["train_counts"] == config["test_counts"] == [30, 16, 8, 4]
    assert config["image_size"] == 32 and config["seed"] == 0 and config["epochs"] == 1
    assert (run_dir / "generator.keras").is_file()


def test_training_settings_are_train_configs():
    """Every training keyword of the sampler is a TrainConfig setting, passed under its own name."""
    import inspect
    from oversampler import TRAIN_SETTINGS
    assert set(TRAIN_SETTINGS) <= set(bagan_train.TrainConfig.__dataclass_fields__)
    assert set(TRAIN_SETTINGS) <= set(inspect.signature(BAGANGPOversampler).parameters)
    config = BAGANGPOversampler(model="wgan_gp", train_ratio=3, random_state=5)._run_config()
    assert (config.model, config.train_ratio, config.seed, config.dataset) == ("wgan_gp", 3, 5, "arrays")
    config = BAGANGPOversampler(ema_decay=0.99, diffaugment="cutout,color", real_batches="balanced")._run_config()
    assert (config.ema_decay, config.diffaugment, config.real_batches) == (0.99, "cutout,color", "balanced")
    with pytest.raises(ValueError, match="'blur'"):
        BAGANGPOversampler(diffaugment="blur")._run_config()


# ---------------------------------------------------------------------------------------------
# save / load


def test_save_load_gives_the_same_samples(fitted, tmp_path):
    sampler = with_strategy(fitted["sampler"], {1: 20, 3: 9})
    sampler.save(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["generator.keras", "oversampler.json"]
    loaded = BAGANGPOversampler.load(tmp_path / "saved")
    assert loaded.get_params()["sampling_strategy"] == {1: 20, 3: 9}
    assert {k: v for k, v in loaded.get_params().items() if k != "run_dir"} == \
        {k: v for k, v in sampler.get_params().items() if k != "run_dir"}
    np.testing.assert_array_equal(loaded.classes_, sampler.classes_)
    for random_state in (0, 7):
        for a, b in zip(loaded.sample(3, random_state=random_state), sampler.sample(3, random_state=random_state)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(loaded.resample(fitted["X"], fitted["y"]), sampler.resample(fitted["X"], fitted["y"])):
        np.testing.assert_array_equal(a, b)


def test_select_keeps_only_judged_images_says_how_many_and_survives_save_and_load(tmp_path):
    X, y = digits_uint8()
    sampler = BAGANGPOversampler(random_state=0, select="novel", **TINY)
    X_res, y_res = sampler.fit_resample(X, y)
    new = y_res[len(y):]
    assert sampler.selection_ and all(s["drawn"] == s["kept"] + s["dropped"] for s in sampler.selection_.values())
    assert {label: int(np.sum(new == label)) for label in sampler.selection_} == {
        label: s["kept"] for label, s in sampler.selection_.items()}
    sampler.save(tmp_path / "saved")
    loaded = BAGANGPOversampler.load(tmp_path / "saved")
    again = loaded.sample(3, random_state=1)[1]
    assert len(again) == sum(s["kept"] for s in loaded.selection_.values())
    with pytest.raises(ValueError, match="select_threshold must be between 0 and 1"):
        BAGANGPOversampler(select="confidence", select_threshold=2, **TINY).fit(X, y)
    with pytest.raises(ValueError, match="select must be None"):
        BAGANGPOversampler(select="copies", **TINY).fit(X, y)


def test_load_refuses_a_folder_that_is_not_a_saved_sampler(tmp_path):
    with pytest.raises(ValueError, match="not a saved BAGANGPOversampler"):
        BAGANGPOversampler.load(tmp_path)


# ---------------------------------------------------------------------------------------------
# imbalanced-learn Pipeline, flattened float images, string labels


def test_pipeline_with_a_classifier_fits_and_predicts(pipeline):
    pipe, X = pipeline["pipe"], pipeline["X"]
    predictions = pipe.predict(X)
    assert predictions.shape == (len(X),) and set(predictions) <= set(NAMES)
    assert sorted(pipe[-1].classes_) == sorted(NAMES)
    assert pipeline["sampler"].sampling_strategy_ == {"one": 14, "three": 26, "two": 22}
    assert pipeline["sampler"].n_features_in_ == 64


def test_float_images_in_zero_one_come_back_as_float_in_zero_one(pipeline):
    sampler, X, y = pipeline["sampler"], pipeline["X"], pipeline["y"]
    X_res, y_res = sampler.resample(X, y)
    assert X_res.dtype == np.float64 and X_res.shape == (120, 64)
    assert X_res[:len(X)].tobytes() == X.tobytes()
    generated = X_res[len(X):]
    assert 0.0 <= generated.min() and generated.max() <= 1.0
    np.testing.assert_allclose(generated * 255, np.rint(generated * 255), atol=1e-9)
    assert Counter(y_res.tolist()) == {name: 30 for name in NAMES}
    assert y_res.dtype.kind == "U"


# ---------------------------------------------------------------------------------------------
# Image formats and resizing (no training)


@pytest.mark.parametrize("X, value_range, expected", [
    (np.array([[[0, 255]]], np.uint8), None, (0.0, 255.0)),
    (np.array([[[0.0, 0.5]]], np.float32), None, (0.0, 1.0)),
    (np.array([[[-0.5, 1.0]]]), None, (-1.0, 1.0)),
    (np.array([[[0.0, 200.0]]]), None, (0.0, 255.0)),
    (np.array([[[0.0, 16.0]]]), (0, 16), (0.0, 16.0)),
], ids=["uint8", "zero-one", "minus-one-one", "zero-255", "given"])
def test_value_range_is_detected_or_given(X, value_range, expected):
    assert ImageFormat.detect(X, value_range=value_range).value_range == expected


@pytest.mark.parametrize("dtype, value_range", [(np.uint8, (0, 255)), (np.float32, (0, 1)),
                                                (np.float64, (-1, 1)), (np.float32, (0, 255))])
def test_formats_round_trip_through_uint8(dtype, value_range):
    rng = np.random.default_rng(0)
    low, high = value_range
    X = (low + rng.random((3, 6, 10, 3)) * (high - low)).astype(dtype)
    image_format = ImageFormat.detect(X, value_range=value_range)
    images = image_format.to_uint8(X)
    assert images.dtype == np.uint8 and images.shape == (3, 6, 10, 3)
    back = image_format.from_uint8(images)
    assert back.dtype == X.dtype and back.shape == X.shape
    np.testing.assert_allclose(back, X, atol=(high - low) / 255)
    extremes = image_format.from_uint8(np.array([0, 255], np.uint8).reshape(2, 1, 1, 1).repeat(3, -1)
                                       .repeat(6, 1).repeat(10, 2))
    assert extremes.min() == low and extremes.max() == high


def test_flat_rows_with_an_image_shape():
    X = np.zeros((4, 48), np.float32)
    image_format = ImageFormat.detect(X, image_shape=(4, 4, 3))
    assert (image_format.layout, image_format.image_shape) == ("flat", (4, 4, 3))
    assert image_format.to_uint8(X).shape == (4, 4, 4, 3)
    assert image_format.from_uint8(np.zeros((2, 4, 4, 3), np.uint8)).shape == (2, 48)


def test_resize_back_to_a_non_square_shape():
    images = np.full((2, 32, 32, 3), 77, np.uint8)
    out = _resize_back(images, 6, 10)
    assert out.shape == (2, 6, 10, 3) and (out == 77).all()
    assert _resize_back(images[..., :1], 8, 8).shape == (2, 8, 8, 1)


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors, nothing trained


def _mismatched(X, y):
    return X, y[:-1]


def _one_class(X, y):
    return X[y == 0], y[y == 0]


BAD_INPUTS = [
    ("lengths", {}, _mismatched, "58 images but y has 57 labels"),
    ("one-class", {}, _one_class, "only one class"),
    ("float-labels", {}, lambda X, y: (X, y.astype(float)), "integers or strings"),
    ("bool-labels", {}, lambda X, y: (X, y > 1), "integers or strings"),
    ("mixed-labels", {}, lambda X, y: (X, np.array([1, "a"] * 29, dtype=object)), "integers or strings"),
    ("2-d-labels", {}, lambda X, y: (X, y[:, None]), "1-D"),
    ("dict-fewer", {"sampling_strategy": {0: 10}}, None, "greater or equal to the original number"),
    ("dict-unknown-class", {"sampling_strategy": {7: 40}}, None, "not present in the data"),
    ("bad-strategy", {"sampling_strategy": "majority"}, None, "sampling_strategy"),
    ("rank-1", {}, lambda X, y: (X.reshape(-1), y), "images must be"),
    ("rank-5", {}, lambda X, y: (X[:, None, :, :, None], y), "images must be"),
    ("flat-without-shape", {}, lambda X, y: (X.reshape(len(X), -1), y), "pass image_shape"),
    ("flat-wrong-shape", {"image_shape": (8, 7)}, lambda X, y: (X.reshape(len(X), -1), y), "56 values"),
    ("two-channels", {}, lambda X, y: (np.stack([X, X], -1), y), "1 or 3 channels"),
    ("strings-as-images", {}, lambda X, y: (X.astype(str), y), "numeric"),
    ("nan", {}, lambda X, y: (np.where(X > 250, np.nan, X / 255.0), y), "NaN"),
    ("unknown-range", {}, lambda X, y: (X * 10.0, y), "value_range"),
    ("outside-value-range", {"value_range": (0, 16)}, None, "outside value_range"),
    ("bad-variant", {"variant": "v4"}, None, "bad training setting: variant must be one of v1, v2, v3, got 'v4'"),
    ("variant-of-cgan", {"model": "cgan", "variant": "v2"}, None, "--variant does not apply to --model cgan"),
    ("bad-generator", {"generator": "first"}, None, "generator must be None, 'best' or 'last'"),
    ("best-without-evaluation", {"generator": "best", "eval_every": 0}, None, "needs the in-training evaluation"),
    ("bad-image-size", {"image_size": 48}, None, "image size 48 is not supported"),
    ("zero-epochs", {"epochs": 0}, None, "epochs must be at least 1"),
    ("batch-too-large", {"batch_size": 64}, None, "batch_size 64 is larger than the 58 images"),
    ("negative-random-state", {"random_state": -1}, None, "random_state"),
]


@pytest.fixture
def no_training(monkeypatch):
    """bagan_train.train fails the test if it is called."""
    def train(*args, **kwargs):
        raise AssertionError("bagan_train.train was called")
    monkeypatch.setattr(bagan_train, "train", train)


@pytest.mark.parametrize("settings, corrupt, message", [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
@pytest.mark.parametrize("method", ["fit_resample", "fit"])
def test_bad_input_raises_before_training(tmp_path, no_training, method, settings, corrupt, message):
    X, y = digits_uint8()
    if corrupt:
        X, y = corrupt(X, y)
    sampler = BAGANGPOversampler(run_dir=tmp_path / "run", **{**TINY, **settings})
    with pytest.raises(ValueError, match=message):
        getattr(sampler, method)(X, y)
    assert not (tmp_path / "run").exists()
    assert not hasattr(sampler, "generator_")


def test_a_run_dir_holding_a_run_is_refused(tmp_path, no_training):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a run"):
        BAGANGPOversampler(run_dir=tmp_path, **TINY).fit_resample(*digits_uint8())
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_non_finite_loss_raises_a_training_error(tmp_path):
    X, y = digits_uint8()
    sampler = BAGANGPOversampler(random_state=0, run_dir=tmp_path / "run", learning_rate=1e35,
                                 **{**TINY, "ae_epochs": 0})
    with pytest.raises(TrainingError, match="non-finite loss at generator step"):
        sampler.fit(X, y)
    assert not hasattr(sampler, "generator_")
    assert not (tmp_path / "run" / "generator.keras").exists()


def test_resample_and_sample_check_their_input(fitted):
    sampler, X, y = fitted["sampler"], fitted["X"], fitted["y"]
    with pytest.raises(ValueError, match=r"fitted on uint8 images of shape \(8, 8\)"):
        sampler.resample(X[..., None], y)
    with pytest.raises(ValueError, match="got float64"):
        sampler.resample(X / 255.0, y)
    with pytest.raises(ValueError, match=r"labels \[7\] were not among the fitted classes"):
        sampler.resample(X, np.where(y == 3, 7, y))
    with pytest.raises(ValueError, match="not among the fitted classes"):
        sampler.sample({9: 2})
    with pytest.raises(ValueError, match="non-negative integer"):
        sampler.sample(-1)


def test_an_unfitted_sampler_cannot_sample_or_save(tmp_path):
    sampler = BAGANGPOversampler()
    with pytest.raises(NotFittedError):
        sampler.sample(2)
    with pytest.raises(NotFittedError):
        sampler.resample(*digits_uint8())
    with pytest.raises(NotFittedError):
        sampler.save(tmp_path / "saved")


def test_it_is_a_scikit_learn_estimator_and_an_imbalanced_learn_sampler():
    sampler = BAGANGPOversampler(sampling_strategy="minority", random_state=3, epochs=2, variant="v2")
    twin = clone(sampler)
    assert twin.get_params() == sampler.get_params()
    assert twin.get_params()["variant"] == "v2"
    assert sampler._estimator_type == "sampler" and sampler._sampling_type == "over-sampling"
