"""Tests of classify.py: metrics against scikit-learn, rebalancing, the CNN-SVM path, the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, precision_recall_fscore_support,
                             recall_score, top_k_accuracy_score)

REPO = Path(__file__).resolve().parents[1]

import classify
import evaluators
import tables
import datasets
from datasets import load_dataset, to_uint8

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


# ---------------------------------------------------------------------------------------------
# Metrics


def test_metrics_of_a_hand_counted_example():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0]
    m = classify.classification_metrics(y_true, y_pred, np.eye(3)[y_pred], 3, top_k=None)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["per_class_recall"] == pytest.approx([0.75, 0.5, 0.75])
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["acsa"] == pytest.approx(2 / 3)
    assert m["g_mean"] == pytest.approx((0.75 * 0.5 * 0.75) ** (1 / 3))
    assert m["top_k"] is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 6, 300)
    scores = rng.random((300, 6)) + 0.6 * np.eye(6)[y_true]
    y_pred = scores.argmax(axis=1)
    m = classify.classification_metrics(y_true, y_pred, scores, 6, top_k=2)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    per_class = recall_score(y_true, y_pred, average=None)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["precision"] == pytest.approx(precision)
    assert m["recall"] == pytest.approx(recall)
    assert m["f1"] == pytest.approx(f1)
    assert m["top_k"] == pytest.approx(top_k_accuracy_score(y_true, scores, k=2))
    assert m["per_class_recall"] == pytest.approx(per_class.tolist())
    assert m["acsa"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["g_mean"] == pytest.approx(scipy.stats.gmean(per_class))
    assert 0 < m["accuracy"] < m["top_k"] < 1


def test_a_class_never_recognised_gives_g_mean_zero():
    y_true, y_pred = [0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 2, 1]
    m = classify.classification_metrics(y_true, y_pred, np.eye(3)[y_pred], 3)
    assert m["per_class_recall"] == [1.0, 0.0, 0.5]
    assert m["g_mean"] == 0.0
    assert m["acsa"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0)[0])


def test_top_k_ranks_the_scores():
    scores = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    y_true = [0, 1, 2, 0]
    m = classify.classification_metrics(y_true, scores.argmax(axis=1), scores, 3, top_k=2)
    assert m["top_k"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.25)


def test_class_without_test_images_is_left_out_of_acsa_and_g_mean():
    m = classify.classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], np.eye(3)[[0, 1, 1, 1]], 3)
    assert m["per_class_recall"] == [0.5, 1.0, None]
    assert m["acsa"] == pytest.approx(0.75)
    assert m["g_mean"] == pytest.approx(np.sqrt(0.5))


def test_table_says_what_acsa_and_g_mean_are_and_flags_a_one_class_classifier():
    """A classifier that predicts the majority class for every test image gets a marker and a
    footnote naming the class (and the seed); the line under the table says what ACSA and G-mean are."""
    y_true = np.array([0] * 6 + [1] * 3 + [2] * 3)
    predictions = {"none": [np.zeros(12, int), y_true],  # seed 0: the majority class only
                   "affine": [np.where(np.arange(12) % 4 == 3, 1, y_true)] * 2}
    rows = []
    for name, per_seed in predictions.items():
        scored = [dict(seed=s, **classify.classification_metrics(y_true, y, np.eye(3)[y], 3))
                  for s, y in enumerate(per_seed)]
        mean, std = classify.summarize(scored)
        rows.append(dict(name=name, train_images=30, mean=mean, std=std, per_seed=scored, generator=None))
    result = dict(dataset="folder", imbalanced=False, image_size=32, split_seed=42, seeds=[0, 1],
                  classifier_description="a CNN", train_counts=[20, 6, 4], validation_counts=[2, 1, 1],
                  test_set="holdout", test_set_description="the hold-out", test_counts=[6, 3, 3], top_k=2,
                  class_names=["healthy", "ring", "schizont"], reference=None, rows=rows)
    lines = tables.classify_table(result).splitlines()
    assert any(line.startswith("none *") for line in lines)
    assert not any(line.startswith("affine *") for line in lines)
    assert "* none: predicts only class healthy for every test image (seed 0 of 2)" in lines
    assert ("ACSA: the mean of the per-class recalls; G-mean: their geometric mean, 0 when any class is never "
            "recognised.") in lines
    assert sum("predicts only" in line for line in lines) == 1


def test_default_top_k():
    assert classify.default_top_k(10) == 2
    assert classify.default_top_k(100) == 5
    assert classify.default_top_k(2) is None


def test_summary_is_mean_and_sample_std():
    def seed_metrics(value, recalls):
        return dict({key: value for key, _ in tables.METRICS}, per_class_recall=recalls)
    mean, std = classify.summarize([seed_metrics(0.5, [0.0, 1.0]), seed_metrics(0.7, [0.5, None])])
    assert mean["accuracy"] == pytest.approx(0.6)
    assert std["accuracy"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert mean["per_class_recall"] == pytest.approx([0.25, 1.0])
    assert std["per_class_recall"][1] is None
    mean, std = classify.summarize([seed_metrics(0.5, [0.0, 1.0])])
    assert mean["f1"] == 0.5 and std["f1"] is None


# ---------------------------------------------------------------------------------------------
# Validation share and rebalancing


def test_missing_counts():
    assert classify.missing_counts(np.array([0, 0, 0, 1, 2, 2]), 4).tolist() == [0, 2, 1, 3]


def test_validation_share_per_class_and_seeded():
    y = np.repeat(np.arange(4), [40, 7, 13, 25])
    fit, val = classify.split_validation(y, 0.1, seed=0, num_classes=4)
    assert np.bincount(y[val], minlength=4).tolist() == [4, 0, 1, 2]
    assert sorted(np.concatenate([fit, val]).tolist()) == list(range(len(y)))
    again = classify.split_validation(y, 0.1, seed=0, num_classes=4)
    other = classify.split_validation(y, 0.1, seed=1, num_classes=4)
    np.testing.assert_array_equal(val, again[1])
    assert not np.array_equal(val, other[1])


def test_affine_copies_each_class_from_its_own_images_equally_often():
    """Constant images stay constant under the transformations, so each copy names its original."""
    counts = [20, 5, 1, 12]
    y = np.repeat(np.arange(4), counts)
    x = np.broadcast_to((np.arange(len(y)) * 6).astype(np.uint8)[:, None, None, None], (len(y), 12, 12, 1)).copy()
    x_add, y_add = classify.rebalance_with_affine(x, y, seed=0, num_classes=4)
    assert x_add.dtype == np.uint8 and x_add.shape[1:] == x.shape[1:]
    assert np.bincount(np.concatenate([y, y_add]), minlength=4).tolist() == [20] * 4
    assert np.bincount(y_add, minlength=4).tolist() == [0, 15, 19, 8]
    flat = x_add.reshape(len(x_add), -1)
    assert (flat.min(axis=1) == flat.max(axis=1)).all()
    source = flat[:, 0] // 6
    np.testing.assert_array_equal(y[source], y_add)
    for c in range(1, 4):
        uses = np.bincount(source[y_add == c], minlength=len(y))[y == c]
        assert uses.max() - uses.min() <= 1


def test_affine_on_digits_transforms_and_is_seeded():
    data = load_dataset("digits", image_size=32, imbalanced=True)
    x_add, y_add = classify.rebalance_with_affine(data.x_train, data.y_train, seed=0, num_classes=10)
    counts = np.bincount(np.concatenate([data.y_train, y_add]), minlength=10)
    assert counts.tolist() == [max(data.train_counts())] * 10
    assert not (y_add == 0).any()
    originals = {image.tobytes() for image in data.x_train}
    assert sum(image.tobytes() in originals for image in x_add) < len(x_add) // 10
    again = classify.rebalance_with_affine(data.x_train, data.y_train, seed=0, num_classes=10)
    other = classify.rebalance_with_affine(data.x_train, data.y_train, seed=1, num_classes=10)
    np.testing.assert_array_equal(x_add, again[0])
    assert not np.array_equal(x_add, other[0])


def test_affine_flip_is_optional():
    names = [type(layer).__name__ for layer in classify.affine_pipeline(0, flip=True).layers]
    assert names == ["RandomRotation", "RandomTranslation", "RandomZoom", "RandomFlip"]
    assert "RandomFlip" not in [type(layer).__name__ for layer in classify.affine_pipeline(0, flip=False).layers]


def test_real_reference_pool_holds_no_image_of_either_split():
    data = load_dataset("digits", image_size=32, imbalanced=True)
    balanced = load_dataset("digits", image_size=32)
    pool = classify.real_pool(data, balanced)
    used = {image.tobytes() for image in np.concatenate([data.x_train, data.x_test])}
    assert not any(image.tobytes() in used for image in pool.x)
    assert 0 < len(pool.y) <= 1797 - len(data.y_train) - len(data.y_test)
    assert pool.test_in_balanced_train > len(data.y_test) // 2
    x_add, y_add = classify.rebalance_with_real(data.y_train, pool, seed=0, num_classes=10)
    assert np.bincount(np.concatenate([data.y_train, y_add]), minlength=10).tolist() == [124] * 10
    assert len({image.tobytes() for image in x_add}) == len(x_add)


# ---------------------------------------------------------------------------------------------
# A tiny BAGAN-GP run on imbalanced digits


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, train_run):
    return train_run(tmp_path_factory.mktemp("classify") / "digits-imbalanced-run", 1, 1, "--imbalanced")


def test_generator_fills_exactly_the_minority_classes(tiny_run):
    import keras
    data = load_dataset("digits", image_size=32, imbalanced=True)
    generator = keras.models.load_model(tiny_run / "generator.keras")
    x_add, y_add = classify.rebalance_with_generator(data.x_train, data.y_train, generator, seed=3, num_classes=10)
    counts = np.bincount(data.y_train, minlength=10)
    assert np.bincount(y_add, minlength=10).tolist() == (counts.max() - counts).tolist()
    assert not (y_add == 0).any()
    assert x_add.dtype == np.uint8 and x_add.shape[1:] == (32, 32, 1)
    latent_dim = generator.inputs[0].shape[-1]
    for c in (1, 9):
        n = counts.max() - counts[c]
        z = np.random.default_rng([3, c]).standard_normal((n, latent_dim)).astype(np.float32)
        expected = to_uint8(generator([z, np.full(n, c, np.int32)], training=False))
        np.testing.assert_allclose(x_add[y_add == c].astype(int), expected.astype(int), atol=1)
    other, _ = classify.rebalance_with_generator(data.x_train, data.y_train, generator, seed=4, num_classes=10)
    assert not np.array_equal(x_add, other)
    small = data.x_train[:, ::2, ::2]
    resized, _ = classify.rebalance_with_generator(small, data.y_train, generator, seed=3, num_classes=10)
    assert resized.shape == (len(y_add), 16, 16, 1)


def test_cnn_svm_runs_end_to_end():
    data = load_dataset("digits", image_size=16)
    x, y = data.x_train[:300], data.y_train[:300]
    fit, val = classify.split_validation(y, 0.1, 0, 10)
    result = classify.train_and_score(x[fit], y[fit], x[val], y[val], data.x_test[:200], data.y_test[:200], 10,
                                      classifier="cnn_svm", seed=0, epochs=3, top_k=2)
    assert 1 <= result["best_epoch"] <= result["epochs"] <= 3
    assert 0.3 < result["accuracy"] <= result["top_k"] <= 1
    assert 0 <= result["cnn_accuracy"] <= 1
    assert len(result["per_class_recall"]) == 10
    recalls = [r for r in result["per_class_recall"] if r is not None]
    assert result["acsa"] == pytest.approx(np.mean(recalls))


def test_cnn_has_the_papers_layers():
    model = evaluators.build_cnn((32, 32, 1), 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 3 and kinds.count("MaxPooling2D") == 3
    assert kinds[-1] == "Dense" and model.output_shape == (None, 10)
    assert model.get_layer("features").output.shape[-1] == evaluators.FEATURE_DIMS
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-3)


# ---------------------------------------------------------------------------------------------
# The command line


def test_each_remedy_row_has_its_training_set():
    """weights adds nothing (and weighs n_max / n_c), oversample and online add duplicates of each
    class's own images up to the largest class, each original used equally often; the same seed
    gives the same set."""
    data = load_dataset("digits", image_size=32, imbalanced=True)
    x, y = data.x_train, data.y_train
    counts = np.bincount(y, minlength=10)
    for kind in ("none", "weights"):
        assert len(classify.added_images(classify.Row(kind, kind), x, y, 0, 10, None, True)[1]) == 0
    assert classify.class_weights(y, 10) == {c: counts.max() / n for c, n in enumerate(counts)}
    for kind in ("oversample", "online"):
        x_add, y_add, selection = classify.added_images(classify.Row(kind, kind), x, y, 5, 10, None, True)
        assert selection is None
        assert np.bincount(y_add, minlength=10).tolist() == (counts.max() - counts).tolist()
        for c in (1, 5):
            originals = {image.tobytes(): 0 for image in x[y == c]}
            for image in x_add[y_add == c]:
                originals[image.tobytes()] += 1  # a KeyError: not a duplicate of its own class
            uses = list(originals.values())
            assert max(uses) - min(uses) <= 1, uses
        again = classify.added_images(classify.Row(kind, kind), x, y, 5, 10, None, True)[0]
        other = classify.added_images(classify.Row(kind, kind), x, y, 6, 10, None, True)[0]
        assert np.array_equal(again, x_add) and not np.array_equal(other, x_add)


def test_the_synthetic_ratio_caps_the_generated_images_and_stacked_rows_fill_the_rest(tiny_run):
    from runs import load_model
    data = load_dataset("digits", image_size=32, imbalanced=True)
    x, y = data.x_train, data.y_train
    counts = np.bincount(y, minlength=10)
    row = classify.Row("run", "generator", generator=load_model(tiny_run / "generator.keras"))
    _, y_add, _ = classify.added_images(row, x, y, 0, 10, None, True, ratio=0.5)
    assert np.bincount(y_add, minlength=10).tolist() == np.minimum(counts.max() - counts, counts // 2).tolist()
    row.fill = True
    x_add, y_add, _ = classify.added_images(row, x, y, 0, 10, None, True, ratio=0.5)
    assert np.bincount(y_add, minlength=10).tolist() == (counts.max() - counts).tolist()
    generated = len(y_add) - int(np.sum(np.maximum(counts.max() - counts - counts // 2, 0)))
    assert generated == int(np.sum(np.minimum(counts.max() - counts, counts // 2)))


def test_a_prefix_stacks_a_run_on_online_or_on_oversample(tiny_run):
    rows = classify._rows_from_flags([str(tiny_run), f"online+{tiny_run}", f"oversample+{tiny_run}"])
    assert [(r.name, r.kind, r.online, r.fill) for r in rows] == [
        (tiny_run.name, "generator", False, False), (f"online+{tiny_run.name}", "generator", True, True),
        (f"oversample+{tiny_run.name}", "generator", False, True)]


def test_online_transforms_are_drawn_again_at_every_epoch():
    from datasets import make_tf_dataset
    x = (np.arange(8 * 16 * 16) % 251).reshape(8, 16, 16, 1).astype(np.uint8)
    plain = make_tf_dataset(x, np.zeros(8, int), 8, shuffle=False)
    batches = classify.online_transforms(plain, seed=0)
    first, second = (np.asarray(next(iter(batches))[0]) for _ in range(2))
    assert not np.allclose(first, second) and not np.allclose(first, np.asarray(next(iter(plain))[0]))


def test_the_remedy_rows_train_and_report_their_counts(tiny_run, tmp_path, capsys):
    assert classify.main(["--dataset", "digits", "--imbalanced", "--no-reference", "--seeds", "1", "--epochs", "1",
                          "--augment", "weights", "--augment", "oversample", "--augment", "online", "--augment",
                          f"online+{tiny_run}", "--augment", f"oversample+{tiny_run}", "--synthetic-ratio", "2",
                          "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in result["rows"]}
    counts = result["train_counts"]
    assert list(rows) == ["weights", "oversample", "online", f"online+{tiny_run.name}", f"oversample+{tiny_run.name}"]
    assert result["synthetic_ratio"] == 2.0
    assert sum(rows["weights"]["train_counts"]) < sum(counts)  # the fit part: validation images held out
    for name in ("oversample", "online", f"online+{tiny_run.name}", f"oversample+{tiny_run.name}"):
        assert len(set(rows[name]["train_counts"])) == 1, name  # every class as large as the largest


def test_every_kept_image_satisfies_its_selection_rule(tiny_run):
    """select_generated keeps an image only when the selector gives its class at least the threshold
    (confidence) and it is no nearer to a training image than the typical neighbour distance (novel);
    it draws until the quota or the cap, and the same seed keeps the same images."""
    import keras
    import evaluators
    from metrics import copy_ratios
    from runs import load_model
    data = load_dataset("digits", image_size=32, imbalanced=True)
    x, y = data.x_train, data.y_train
    selector = classify.selection_classifier(x, y, 10, seed=0)
    generator = load_model(tiny_run / "generator.keras")
    quota = np.array([0, 5, 5, 0, 0, 0, 0, 0, 0, 3])
    threshold = 0.1  # the tiny run's images: some above, some below
    kept, labels, stats = evaluators.select_generated(generator, selector, x, y, quota, seed=1,
                                                      rules=("confidence", "novel"), threshold=threshold)
    both = keras.Model(selector.inputs, [selector.get_layer("features").output, selector.outputs[0]])
    for c in (1, 2, 9):
        mine = kept[labels == c]
        assert stats[c]["kept"] == len(mine) <= quota[c] and stats[c]["real"] == int(np.sum(y == c))
        assert stats[c]["drawn"] == stats[c]["kept"] + stats[c]["dropped"] <= evaluators.SELECT_DRAW_CAP * quota[c]
        assert len(mine) == quota[c] or stats[c]["drawn"] == evaluators.SELECT_DRAW_CAP * quota[c]
        if len(mine):
            features, logits = (np.asarray(v) for v in evaluators.predict(both, mine))
            probability = np.exp(logits - logits.max(axis=1, keepdims=True))
            probability /= probability.sum(axis=1, keepdims=True)
            assert (probability[:, c] >= threshold - 1e-4).all()
            train = np.asarray(evaluators.predict(both, x[y == c])[0])
            assert (copy_ratios(train, features)[0] >= 1.0 - 1e-4).all()
    assert stats[0]["drawn"] == 0 and not (labels == 0).any()
    assert len(kept) > 0 and sum(s["dropped"] for s in stats) > 0  # the rules kept some and dropped some
    again, _, _ = evaluators.select_generated(generator, selector, x, y, quota, seed=1, rules=("confidence", "novel"),
                                             threshold=threshold)
    assert np.array_equal(again, kept)


def test_selected_rows_report_what_was_kept_and_the_selector_never_sees_validation_images(tiny_run, tmp_path,
                                                                                          capsys):
    assert classify.main(["--dataset", "digits", "--imbalanced", "--no-reference", "--seeds", "1", "--epochs", "1",
                          "--augment", str(tiny_run), "--select", "confidence", "--select-threshold", "0.3",
                          "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["rows"][0]
    fit_images = sum(result["train_counts"]) - sum(result["validation_counts"])
    assert row["selection"][0]["selector_images"] == fit_images
    classes = row["selection"][0]["classes"]
    added = np.array(row["train_counts"]) - (np.array(result["train_counts"]) - np.array(result["validation_counts"]))
    assert [s["kept"] for s in classes] == added.tolist()
    assert "kept by --select confidence (threshold 0.3)" in tables.classify_table(result)


def test_the_ratio_auto_chooses_on_the_validation_split_and_says_so(tiny_run, tmp_path, capsys):
    assert classify.main(["--dataset", "digits", "--imbalanced", "--no-reference", "--seeds", "1", "--epochs", "1",
                          "--augment", str(tiny_run), "--synthetic-ratio", "auto", "--out", str(tmp_path),
                          "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    chosen = result["rows"][0]["per_seed"][0]["chosen"]
    tried = {c["ratio"]: c["validation_minority_recall"] for c in chosen["candidates"]}
    assert list(tried) == list(classify.RATIO_CANDIDATES)
    assert tried[chosen["ratio"]] == max(tried.values())
    fit = np.array(result["train_counts"]) - np.array(result["validation_counts"])
    expected = fit + classify.synthetic_counts(np.repeat(np.arange(10), fit), 10, chosen["ratio"])
    assert result["rows"][0]["train_counts"] == expected.tolist()
    assert "--synthetic-ratio auto for" in tables.classify_table(result)
    # each candidate is trained once, kept as the score of --synthetic-ratio R, and the chosen one is the row's
    assert len(list((tmp_path / classify.SCORES_DIR).glob("seed0-*.json"))) == len(classify.RATIO_CANDIDATES)
    ratio = "fill" if chosen["ratio"] is None else str(chosen["ratio"])
    argv = ["--dataset", "digits", "--imbalanced", "--no-reference", "--seeds", "1", "--epochs", "1", "--augment",
            str(tiny_run), "--out", str(tmp_path), "--json"] + (["--synthetic-ratio", ratio] if ratio != "fill" else [])
    assert classify.main(argv) == 0
    captured = capsys.readouterr()
    assert "reused from" in captured.err and "training images" not in captured.err
    fixed = json.loads(captured.out)["rows"][0]["per_seed"][0]
    auto = result["rows"][0]["per_seed"][0]
    assert {k: v for k, v in auto.items() if k != "chosen"} == fixed


@pytest.fixture(scope="module")
def cli_run(tiny_run, tmp_path_factory):
    """python classify.py --json on imbalanced digits: none, affine, the tiny run, 1 seed, 1 epoch."""
    out = tmp_path_factory.mktemp("classify-out") / "results"
    proc = subprocess.run(
        [sys.executable, str(REPO / "classify.py"), "--dataset", "digits", "--imbalanced", "--augment", "none",
         "--augment", "affine", "--augment", str(tiny_run), "--seeds", "1", "--epochs", "1", "--out", str(out),
         "--json"], capture_output=True, text=True, cwd=REPO, timeout=600, env=ENV)
    return proc, out


def test_cli_json_has_a_row_per_training_set(cli_run, tiny_run):
    proc, out = cli_run
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [row["name"] for row in result["rows"]] == [tables.REFERENCE, "none", "affine", tiny_run.name]
    assert [row["kind"] for row in result["rows"]] == ["reference", "none", "affine", "generator"]
    assert result["imbalanced"] is True and result["image_size"] == 32 and result["seeds"] == [0]
    assert result["test_counts"] == [54] * 10  # balanced: digits outside the training split
    assert result["test_set"] == "balanced" and "not in the training split" in result["test_set_description"]
    fit = (np.array(result["train_counts"]) - np.array(result["validation_counts"])).tolist()
    rows = {row["name"]: row for row in result["rows"]}
    assert rows["none"]["train_counts"] == fit
    for name in (tables.REFERENCE, "affine", tiny_run.name):
        assert rows[name]["train_counts"] == [max(fit)] * 10
    for row in result["rows"]:
        assert len(row["per_seed"]) == 1 and row["per_seed"][0]["epochs"] == 1
        assert 0 <= row["mean"]["accuracy"] <= row["mean"]["top_k"] <= 1
        assert row["std"]["accuracy"] is None
        assert len(row["mean"]["per_class_recall"]) == 10
    assert result["reference"]["test_images_in_balanced_training_split"] > 0
    assert json.loads((out / "results.json").read_text()) == result
    assert (out / "per_class_recall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[classify] seed 0" in proc.stderr
    assert "[classify seed 0, affine] epoch 1/1 in " in proc.stderr  # progress on stderr: stdout stays the JSON


def test_table_has_paper_columns_and_a_row_per_training_set(cli_run, tiny_run):
    proc, _ = cli_run
    table = tables.classify_table(json.loads(proc.stdout))
    header = next(line for line in table.splitlines() if line.startswith("Training set"))
    for column in ("Accuracy", "Precision", "Recall", "F1", "Top-2", "ACSA", "G-mean"):
        assert column in header
    for name in (tables.REFERENCE, "none", "affine", tiny_run.name):
        assert sum(line.startswith(name) for line in table.splitlines()) == 2
    assert "Test set (balanced): digits not in the training split" in table


def test_a_second_call_with_the_same_out_trains_only_what_changed(cli_run, tiny_run, tmp_path, capsys):
    """Each (row, seed) score is kept under <out>/scores, keyed by the generator's content: a run folder
    copied elsewhere keeps its scores, a changed generator retrains its row only."""
    from runs import load_model
    proc, out = cli_run
    first = json.loads(proc.stdout)
    saved = sorted((out / classify.SCORES_DIR).glob("seed0-*.json"))
    assert len(saved) == len(first["rows"]) == 4
    copied = shutil.copytree(tiny_run, tmp_path / tiny_run.name)
    argv = ["--dataset", "digits", "--imbalanced", "--augment", "none", "--augment", "affine", "--augment",
            str(copied), "--seeds", "1", "--epochs", "1", "--out", str(out), "--json"]
    assert classify.main(argv) == 0
    assert sum("reused from" in line for line in capsys.readouterr().err.splitlines()) == 4
    for path in copied.glob("generator*.keras"):
        generator = load_model(path)
        generator.weights[0].assign(generator.weights[0] + 0.01)
        generator.save(path)
    assert classify.main(argv) == 0
    captured = capsys.readouterr()
    second = json.loads(captured.out)
    reused = [line for line in captured.err.splitlines() if "reused from" in line]
    assert len(reused) == 3 and not any(tiny_run.name in line for line in reused), reused
    for a, b in zip(first["rows"][:3], second["rows"][:3]):
        assert a["per_seed"] == b["per_seed"] and a["train_counts"] == b["train_counts"], a["name"]
    assert len(list((out / classify.SCORES_DIR).glob("seed0-*.json"))) == 5  # the new generator's score beside the old
    args = classify.parse_args(["--dataset", "digits", "--epochs", "2"])
    row = classify.Row("none", "none")
    inputs = classify.score_inputs(args, dict(dataset="digits"), 2, row, 0)
    assert classify.score_path(out, inputs) != classify.score_path(out, dict(inputs, epochs=1))
    assert classify.load_score(out / classify.SCORES_DIR, inputs) is None


BAD = {
    "unknown-dataset": (["--dataset", "no_such_dataset"], "no_such_dataset"),
    "no-dataset": (["--augment", "none"], "--dataset"),
    "missing-run": (["--dataset", "digits", "--augment", "{tmp}/missing"], "does not exist"),
    "twice": (["--dataset", "digits", "--augment", "none", "--augment", "none"], "twice"),
    "seeds-0": (["--dataset", "digits", "--seeds", "0"], "--seeds"),
    "ratio-0": (["--dataset", "digits", "--synthetic-ratio", "0"], "--synthetic-ratio must be above 0"),
    "ratio-negative": (["--dataset", "digits", "--synthetic-ratio", "-1"], "--synthetic-ratio must be above 0"),
    "ratio-word": (["--dataset", "digits", "--synthetic-ratio", "most"], "a number or auto"),
    "auto-without-validation": (["--dataset", "digits", "--synthetic-ratio", "auto", "--val-share", "0"],
                                "--val-share must be above 0"),
    "online-of-a-remedy": (["--dataset", "digits", "--augment", "online+affine"], "takes a run folder"),
    "online-of-nothing": (["--dataset", "digits", "--augment", "online+{tmp}/missing"], "does not exist"),
    "oversample-of-a-remedy": (["--dataset", "digits", "--augment", "oversample+weights"], "takes a run folder"),
    "threshold-1": (["--dataset", "digits", "--select", "confidence", "--select-threshold", "1"], "between 0 and 1"),
    "threshold-0": (["--dataset", "digits", "--select", "confidence", "--select-threshold", "0"], "between 0 and 1"),
    "select-without-run": (["--dataset", "digits", "--augment", "affine", "--select", "novel"], "add --augment RUN_DIR"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys):
    flags, needle = BAD[case]
    out = tmp_path / "out"
    assert classify.main([f.format(tmp=tmp_path) for f in flags] + ["--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert not out.exists()


def test_run_of_another_protocol_exits_2(tiny_run, tmp_path, capsys):
    assert classify.main(["--dataset", "digits", "--augment", str(tiny_run), "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--imbalanced" in lines[0]
    assert classify.main(["--dataset", "digits", "--imbalanced", "--split-seed", "1", "--augment", str(tiny_run),
                          "--out", str(tmp_path / "o")]) == 2
    assert "split of seed 42" in capsys.readouterr().err


def test_missing_run_folder_on_the_real_command_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "classify.py"), "--dataset", "digits", "--augment",
                           str(tmp_path / "missing")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, env=ENV)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "does not exist" in lines[0]
    assert proc.stdout == "" and not (tmp_path / "train_results").exists()


def test_the_balanced_test_set_holds_no_training_image_and_the_holdout_stays_an_option(tiny_run, tmp_path, capsys):
    data = load_dataset("digits", image_size=32, imbalanced=True)
    x, y, _ = datasets.balanced_test_set("digits", image_size=32, exclude=data.x_train)
    assert np.bincount(y, minlength=10).tolist() == [54] * 10
    assert not {image.tobytes() for image in x} & {image.tobytes() for image in data.x_train}
    again, _, _ = datasets.balanced_test_set("digits", image_size=32, exclude=data.x_train)
    np.testing.assert_array_equal(again, x)
    assert classify.main(["--dataset", "digits", "--imbalanced", "--augment", "none", "--seeds", "1", "--epochs", "1",
                          "--test-set", "holdout", "--no-reference", "--out", str(tmp_path / "o"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_counts"] == [54, 3, 5, 8, 11, 14, 17, 19, 21, 24] and result["test_set"] == "holdout"
    with pytest.raises(datasets.DatasetError, match="cells has no balanced test set"):
        datasets.balanced_test_set("cells")
