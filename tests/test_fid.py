"""Tests of fid.py: the distances against closed forms and a reference, the cache, the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

import fid
import evaluators
import metrics

COMMON = ["--weights", "random", "--per-class", "8", "--real-per-class", "8", "--batch-size", "8"]


def reference_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The published formula (TTUR, pytorch-fid): scipy's sqrtm of S1 S2, an eps offset if it fails."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def direct_kid(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, pair by pair."""
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def gaussian_features(rng, n, d, shift=0.0):
    """n samples of a correlated d-dimensional Gaussian (well conditioned)."""
    mixing = np.eye(d) + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mixing + shift


def stats(features):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.SingularCovarianceWarning)
        return metrics.feature_statistics(features)


# ---------------------------------------------------------------------------------------------
# Frechet distance


def test_identical_statistics_give_zero():
    mu, sigma = stats(gaussian_features(np.random.default_rng(0), 200, 16))
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9 * np.trace(sigma))


def test_mean_shift_only_gives_squared_distance():
    rng = np.random.default_rng(1)
    mu, sigma = stats(gaussian_features(rng, 200, 16))
    delta = rng.standard_normal(16)
    assert metrics.frechet_distance(mu, sigma, mu + delta, sigma) == pytest.approx(delta @ delta, rel=1e-9)


def test_diagonal_covariances_match_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    s1, s2 = rng.uniform(0.1, 3.0, 32), rng.uniform(0.1, 3.0, 32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_agrees_with_sqrtm_reference(seed):
    rng = np.random.default_rng(seed)
    mu1, sigma1 = stats(gaussian_features(rng, 400, 64))
    mu2, sigma2 = stats(gaussian_features(rng, 400, 64, shift=0.2) * 1.3)
    value = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert isinstance(value, float)
    assert value == pytest.approx(reference_fid(mu1, sigma1, mu2, sigma2), rel=1e-6)


def test_singular_covariance_is_finite_and_warns():
    rng = np.random.default_rng(6)
    with pytest.warns(metrics.SingularCovarianceWarning, match="10 samples of 32-d"):
        mu1, sigma1 = metrics.feature_statistics(gaussian_features(rng, 10, 32))
    mu2, sigma2 = stats(gaussian_features(rng, 12, 32, shift=0.5))
    assert np.linalg.matrix_rank(sigma1) < 32
    value = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert np.isfinite(value) and value > 0
    assert metrics.frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0.0, abs=1e-9 * np.trace(sigma1))


def test_no_warning_with_more_samples_than_dimensions():
    with warnings.catch_warnings():
        warnings.simplefilter("error", metrics.SingularCovarianceWarning)
        metrics.feature_statistics(np.random.default_rng(7).standard_normal((33, 32)))


@pytest.mark.parametrize("n1, n2", [(10, 12), (12, 10), (50, 8), (80, 100)])
def test_feature_sets_take_the_same_trace(n1, n2):
    """FeatureSet's n x n form of the trace equals frechet_distance on the same statistics."""
    rng = np.random.default_rng(n1 * 1000 + n2)
    a, b = gaussian_features(rng, n1, 40), gaussian_features(rng, n2, 40, shift=0.3)
    expected = metrics.frechet_distance(*stats(a), *stats(b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.SingularCovarianceWarning)
        assert metrics.FeatureSet(a).fid(metrics.FeatureSet(b)) == pytest.approx(expected, rel=1e-7)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---------------------------------------------------------------------------------------------
# Kernel inception distance


def test_kid_matches_direct_computation():
    rng = np.random.default_rng(8)
    x, y = gaussian_features(rng, 15, 6), gaussian_features(rng, 12, 6, shift=0.4)
    assert metrics.kernel_inception_distance(x, y) == pytest.approx(direct_kid(x, y), rel=1e-10)


def test_kid_near_zero_for_same_distribution_and_positive_when_shifted():
    rng = np.random.default_rng(9)
    x, y = np.split(gaussian_features(rng, 800, 16), 2)
    same = metrics.kernel_inception_distance(x, y)
    shifted = metrics.kernel_inception_distance(x, y + 0.5)
    assert shifted > 0.1
    assert abs(same) < 0.02 * shifted


def test_kid_subsets_average_the_subset_estimates():
    rng = np.random.default_rng(10)
    x, y = gaussian_features(rng, 30, 5), gaussian_features(rng, 25, 5, shift=0.3)
    draw = np.random.default_rng(0)
    expected = np.mean([direct_kid(x[draw.choice(30, 10, replace=False)], y[draw.choice(25, 10, replace=False)])
                        for _ in range(4)])
    assert metrics.kernel_inception_distance(x, y, subsets=4, subset_size=10, seed=0) == pytest.approx(expected, rel=1e-10)


def test_kid_needs_two_samples():
    with pytest.raises(ValueError):
        metrics.kernel_inception_distance(np.ones((1, 4)), np.ones((5, 4)))


# ---------------------------------------------------------------------------------------------
# Features and the cache


@pytest.fixture(scope="module")
def tiny_model():
    import keras
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(6),
    ])


def counting_extractor(model, identity="tiny"):
    """The tiny model as a FeatureExtractor; its `images` attribute counts the images it saw."""
    return evaluators.FeatureExtractor(lambda images: model(images, training=False), identity, "tiny model", 6)


def test_features_path_matches_direct_model_outputs(tiny_model):
    from datasets import to_model_range
    rng = np.random.default_rng(11)
    real = rng.integers(0, 256, (10, 12, 12, 1), dtype=np.uint8)
    fake = rng.integers(0, 200, (9, 12, 12, 1), dtype=np.uint8)
    extractor = counting_extractor(tiny_model)
    f_real = evaluators.extract_features(evaluators.real_batches(real, 3), extractor, quiet=True)
    f_fake = evaluators.extract_features(evaluators.real_batches(fake, 4), extractor, quiet=True)
    direct_real = tiny_model.predict(to_model_range(real), verbose=0)
    direct_fake = tiny_model.predict(to_model_range(fake), verbose=0)
    np.testing.assert_allclose(f_real, direct_real, rtol=1e-5, atol=1e-6)
    assert extractor.images == 19
    expected = reference_fid(*stats(direct_real), *stats(direct_fake))
    assert metrics.FeatureSet(f_real).fid(metrics.FeatureSet(f_fake)) == pytest.approx(expected, rel=1e-4)
    assert metrics.FeatureSet(f_real).kid(metrics.FeatureSet(f_fake)) == pytest.approx(
        direct_kid(direct_real.astype(np.float64), direct_fake.astype(np.float64)), rel=1e-4)


def test_real_features_are_cached_and_keyed(tiny_model, tmp_path):
    rng = np.random.default_rng(12)
    images = rng.integers(0, 256, (7, 12, 12, 1), dtype=np.uint8)
    key = dict(dataset="digits", imbalanced=False, image_size=12, seed=42, split="test", label=0)
    extractor = counting_extractor(tiny_model)

    first, hit = evaluators.cached_real_features(images, key, extractor, tmp_path, 4, quiet=True)
    assert not hit and extractor.images == 7
    again, hit = evaluators.cached_real_features(images, key, extractor, tmp_path, 4, quiet=True)
    assert hit and extractor.images == 7
    np.testing.assert_array_equal(first, again)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []

    for changed in (dict(key, label=1), dict(key, image_size=16), dict(key, imbalanced=True)):
        before = extractor.images
        _, hit = evaluators.cached_real_features(images, changed, extractor, tmp_path, 4, quiet=True)
        assert not hit and extractor.images == before + 7
    _, hit = evaluators.cached_real_features(images[:6], key, extractor, tmp_path, 4, quiet=True)
    assert not hit
    _, hit = evaluators.cached_real_features(images, key, counting_extractor(tiny_model, "other"), tmp_path, 4, quiet=True)
    assert not hit
    assert len(list(tmp_path.glob("*.npz"))) == 6


def test_corrupt_cache_file_is_recomputed(tiny_model, tmp_path):
    images = np.zeros((3, 12, 12, 1), np.uint8)
    key = dict(split="test", label=0)
    extractor = counting_extractor(tiny_model)
    evaluators.cached_real_features(images, key, extractor, tmp_path, 4, quiet=True)
    path = next(tmp_path.glob("*.npz"))
    path.write_bytes(b"not an npz file")
    features, hit = evaluators.cached_real_features(images, key, extractor, tmp_path, 4, quiet=True)
    assert not hit and features.shape == (3, 6)
    assert evaluators.cached_real_features(images, key, extractor, tmp_path, 4, quiet=True)[1]


# ---------------------------------------------------------------------------------------------
# Precision, recall, density, coverage and memorisation against cases with known answers


def blob(n, seed, d=8, shift=0.0):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_identical_sets_have_full_precision_recall_and_coverage():
    x = blob(300, 0)
    assert metrics.precision_recall(x, x) == (1.0, 1.0)
    density, coverage = metrics.density_coverage(x, x)
    assert coverage == 1.0 and density >= 1.0  # every point in its own ball, and in its neighbours'


def test_disjoint_shifted_sets_score_near_zero():
    real, fake = blob(300, 0), blob(300, 1, shift=20.0)
    assert metrics.precision_recall(real, fake) == (0.0, 0.0)
    assert metrics.density_coverage(real, fake) == (0.0, 0.0)


def test_a_generator_covering_half_the_real_manifold_has_recall_near_one_half():
    real = blob(2000, 0, d=2)
    half = blob(4000, 1, d=2)
    half = half[half[:, 0] > 0][:1000]
    precision, recall = metrics.precision_recall(real, half)
    assert precision > 0.95
    assert 0.45 < recall < 0.6  # a little over 0.5: the balls reach over the cut
    same = blob(1000, 2, d=2)
    assert metrics.precision_recall(real, same)[1] > 0.95
    density, coverage = metrics.density_coverage(real, half)
    assert 0.45 < coverage < 0.6 and density > 0.8


def test_density_and_coverage_of_a_fresh_sample_are_near_one():
    density, coverage = metrics.density_coverage(blob(1000, 0), blob(1000, 1))
    assert 0.85 < density < 1.15 and coverage > 0.9


def test_copies_and_near_copies_are_memorised_fresh_draws_are_not():
    train = blob(200, 0)
    typical = np.median(metrics.nearest_neighbours(train, train, leave_one_out=True)[0])
    assert metrics.memorisation(train, train) == (1.0, pytest.approx(0.0, abs=1e-6))
    near = train[:100] + np.random.default_rng(1).standard_normal((100, 8)) * 0.02 * typical / np.sqrt(8)
    memorised, ratio = metrics.memorisation(train, near)
    assert memorised == 1.0 and ratio < 0.1
    memorised, ratio = metrics.memorisation(train, blob(1000, 2))  # held-out draws of the same distribution
    assert 0.3 < memorised < 0.7 and 0.8 < ratio < 1.25


def test_classes_with_fewer_images_than_k():
    real, fake = blob(3, 0), blob(3, 1)
    assert all(np.isfinite(v) for v in metrics.precision_recall(real, fake) + metrics.density_coverage(real, fake))
    np.testing.assert_allclose(metrics.knn_radii(real, 5), metrics.knn_radii(real, 2))  # k capped at n - 1
    assert all(np.isnan(v) for v in metrics.precision_recall(blob(1, 0), fake))
    assert all(np.isnan(v) for v in metrics.memorisation(blob(1, 0), fake))


def test_nearest_neighbours_leave_one_out_and_chunks_agree_with_brute_force():
    a, b = blob(2500, 0), blob(40, 1)
    brute = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    distances, indices = metrics.nearest_neighbours(a, b)
    np.testing.assert_allclose(distances, brute.min(1), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(indices, brute.argmin(1))
    self_brute = np.sqrt(((b[:, None, :] - b[None, :, :]) ** 2).sum(-1)) + np.diag(np.full(40, np.inf))
    np.testing.assert_allclose(metrics.nearest_neighbours(b, b, leave_one_out=True)[0], self_brute.min(1), atol=1e-9)
    np.testing.assert_allclose(metrics.knn_radii(b, 3), np.sort(self_brute, axis=1)[:, 2], atol=1e-9)


# ---------------------------------------------------------------------------------------------
# A tiny trained run and the command line


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fid-cache")


def test_generated_batches_do_not_depend_on_batch_size(smoke_run):
    import keras
    from runs import generated_batches
    generator = keras.models.load_model(smoke_run / "generator.keras")
    a = np.concatenate([np.asarray(b) for b in generated_batches(generator, 3, 7, 3, seed=1)])
    b = np.concatenate([np.asarray(b) for b in generated_batches(generator, 3, 7, 7, seed=1)])
    c = np.concatenate([np.asarray(b) for b in generated_batches(generator, 4, 7, 7, seed=1)])
    assert a.shape == (7, 32, 32, 1)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c)


def test_cli_prints_a_row_per_run_and_a_column_per_class(smoke_run, cache_dir, tmp_path, capsys):
    second = tmp_path / "second-run"
    shutil.copytree(smoke_run, second)
    pictures = tmp_path / "pictures"
    assert fid.main([str(smoke_run), str(second), *COMMON, "--cache-dir", str(cache_dir), "--out", str(pictures)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("FID"))
    assert [f"{c} (8 samples)" in header for c in range(10)] == [True] * 10
    assert "8 images per class" in out
    assert "not comparable" in out
    for section in ("FID", "KID", "Precision", "Recall", "Density", "Coverage", "Memorised", "NN ratio"):
        lines = out.split(f"\n{section} ")[1].splitlines()
        rows = lines[1:3]
        assert rows[0].startswith("digits-run [not comparable]")
        assert rows[1].startswith("second-run [not comparable]")
        assert all(len(row.split()) == 3 + 10 for row in rows)
    assert sorted(p.name for p in pictures.iterdir()) == ["nearest_neighbours-digits-run.png",
                                                          "nearest_neighbours-second-run.png"]
    assert not (second / fid.NEIGHBOUR_PICTURE).exists()


def test_cli_json_with_baselines(smoke_run, cache_dir, tmp_path):
    """A real subprocess: stdout is one JSON object, progress and warnings are on stderr."""
    proc = subprocess.run([sys.executable, str(REPO / "fid.py"), str(smoke_run), *COMMON, "--baselines",
                           "--json", "--cache-dir", str(cache_dir), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [row["name"] for row in result["rows"]] == ["digits-run", fid.RECONSTRUCTED, fid.REAL_TRAIN]
    assert result["comparable"] is False and "not comparable" in result["note"]
    assert result["generated_per_class"] == 8
    assert [c["reference_count"] for c in result["classes"]] == [8] * 10
    for row in result["rows"]:
        assert row["comparable"] is False
        assert row["counts"] == [8] * 10
        assert all(np.isfinite(row["fid"])) and all(v >= 0 for v in row["fid"])
        assert all(np.isfinite(row["kid"]))
        for key in ("precision", "recall", "coverage", "memorised"):
            assert all(0 <= v <= 1 for v in row[key]), (row["name"], key)
        assert all(v >= 0 for key in ("density", "copy_ratio") for v in row[key])
    real_train = result["rows"][-1]
    assert real_train["memorised"] == [1.0] * 10 and max(real_train["copy_ratio"]) < 1e-3  # checks the measure
    assert result["pictures"] == {"digits-run": str(tmp_path / "nearest_neighbours-digits-run.png")}
    with Image.open(result["pictures"]["digits-run"]) as picture:
        assert picture.format == "PNG" and picture.width > 300
    assert "[fid]" in proc.stderr and "singular" in proc.stderr


def test_cli_features_classifier(smoke_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    monkeypatch.setattr(evaluators, "FEATURE_EPOCHS", 1)
    argv = [str(run), "--features", "classifier", "--per-class", "8", "--real-per-class", "8",
            "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert fid.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["features"] == "classifier" and result["comparable"] is True
    assert "classifier penultimate layer (128-d)" in result["feature_space"]
    assert (run / fid.CLASSIFIER_FILE).is_file()
    stamp = (run / fid.CLASSIFIER_FILE).stat().st_mtime_ns
    assert fid.main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert (run / fid.CLASSIFIER_FILE).stat().st_mtime_ns == stamp
    assert again["cached_real_sets"] == 20  # the test and the training images of 10 classes
    assert again["rows"][0]["fid"] == result["rows"][0]["fid"]


def test_missing_weights_stop_with_the_url(smoke_run, tmp_path):
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "empty"))
    proc = subprocess.run([sys.executable, str(REPO / "fid.py"), str(smoke_run)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and proc.stdout == ""
    assert evaluators.INCEPTION_WEIGHTS_URL in lines[0]
    assert str(tmp_path / "empty" / "models" / evaluators.INCEPTION_WEIGHTS_FILE) in lines[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_weights_file_in_keras_home_is_loaded(tmp_path, monkeypatch):
    """A weights file in the official (legacy HDF5) layout, found where Keras caches it."""
    import h5py
    import keras
    import tensorflow as tf
    from keras.src.legacy.saving import legacy_h5_format
    model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                           input_shape=(evaluators.INCEPTION_SIZE, evaluators.INCEPTION_SIZE, 3))
    evaluators._randomize(model, 5)
    path = tmp_path / "keras" / "models" / evaluators.INCEPTION_WEIGHTS_FILE
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert evaluators.inception_weights_path() == path
    extractor = evaluators.inception_extractor(path)
    assert extractor.comparable and "not the official Keras file" in extractor.description
    images = np.random.default_rng(13).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    direct = model(tf.image.resize(np.repeat(images, 3, axis=-1), (299, 299)), training=False)
    np.testing.assert_allclose(extractor(images), direct, rtol=1e-5, atol=1e-6)


def test_random_weights_take_inceptions_smallest_input():
    """Random weights compare nothing, so they run at 75x75 (1/16 of the work) and say so; their
    cached features are keyed apart from any other size."""
    extractor = evaluators.inception_extractor(None)
    assert not extractor.comparable and "at 75x75" in extractor.description and "/75px/" in extractor.identity
    images = np.random.default_rng(3).uniform(-1, 1, (2, 28, 36, 1)).astype(np.float32)
    assert extractor(images).shape == (2, evaluators.INCEPTION_DIMS)


def test_unreadable_weights_file_exits_2(smoke_run, tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an HDF5 file")
    assert fid.main([str(smoke_run), "--weights", str(bad), "--per-class", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot load InceptionV3 weights from {bad}")


def test_missing_weights_file_given(smoke_run, tmp_path, capsys):
    assert fid.main([str(smoke_run), "--weights", str(tmp_path / "nope.h5")]) == 2
    err = capsys.readouterr().err
    assert "nope.h5 does not exist" in err and evaluators.INCEPTION_WEIGHTS_URL in err


@pytest.mark.parametrize("remove", [None, "config.json", "generator.keras"])
def test_bad_run_folder_exits_2(smoke_run, tmp_path, capsys, remove):
    if remove is None:
        target = tmp_path / "missing"
    else:
        target = tmp_path / "run"
        target.mkdir()
        for name in ("config.json", "generator.keras"):
            if name != remove:
                shutil.copy(smoke_run / name, target / name)
    assert fid.main([str(target), "--weights", "random"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert (remove or "does not exist") in err[0]
