"""In-training evaluation (--eval-every) and the best generator: what is logged, which epoch is kept,
that it leaves the training numbers alone, and that the commands after training use it."""

from __future__ import annotations

import csv
import json
import math
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

import bagan_train
import fid
import generate
import tables
import metrics
from runs import BEST_FILE, BEST_GENERATOR_FILE, EVAL_CLASSIFIER_FILE, Run, UsageError

CLASSES = [str(c) for c in range(10)]
LOSSES = ("d_loss", "g_loss", "gp", "d_real", "d_fake", "d_wrong")


def gan_rows(run):
    with open(run / "history.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["phase"] == "gan"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, train_run):
    """A run evaluated every epoch (2 epochs of 2 steps) and the same run without evaluation (digits
    evaluate every 5 epochs: never). Its generator starts from the autoencoder (--latent class), so
    that its images are recognised as their class above chance and a best generator can be kept."""
    flags = ("--latent", "class", "--ae-epochs", "3")
    plain = train_run(tmp_path_factory.mktemp("best") / "plain", 2, 2, *flags)
    assert json.loads((plain / "config.json").read_text())["eval_every"] > 2
    return train_run(tmp_path_factory.mktemp("best") / "evaluated", 2, 2, *flags, "--eval-every", "1"), plain


def test_every_evaluation_is_logged_per_class(evaluated):
    run, _ = evaluated
    rows = gan_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        kid = [float(row[f"kid/{c}"]) for c in CLASSES]
        recognised = [float(row[f"recognised/{c}"]) for c in CLASSES]
        assert all(math.isfinite(v) for v in kid) and all(0 <= v <= 1 for v in recognised)
        assert float(row["kid_worst"]) == pytest.approx(max(kid))
        assert float(row["eval_seconds"]) > 0
    with Image.open(run / "losses.png") as picture:  # two more panels: KID and recognition per class
        assert picture.height > 500
    events = b"".join(p.read_bytes() for p in (run / "tensorboard").rglob("events.out.tfevents.*"))
    assert b"kid_worst" in events and b"recognised/9" in events


def test_the_best_generator_is_the_epoch_of_the_lowest_worst_class_kid(evaluated):
    run, _ = evaluated
    rows = gan_rows(run)
    worst = [float(r["kid_worst"]) for r in rows]
    best = json.loads((run / BEST_FILE).read_text())
    assert best["epoch"] == int(np.argmin(worst)) + 1
    assert best["kid_worst"] == pytest.approx(min(worst))
    assert best["kid"] == pytest.approx({c: float(rows[best["epoch"] - 1][f"kid/{c}"]) for c in CLASSES})
    assert (run / EVAL_CLASSIFIER_FILE).is_file()
    best_generator = keras.models.load_model(run / BEST_GENERATOR_FILE)  # safe mode
    z = np.random.default_rng(0).standard_normal((4, 128)).astype("float32")
    assert best_generator([z, np.arange(4, dtype="int32")]).shape == (4, 32, 32, 1)


def test_the_evaluation_leaves_the_training_numbers_alone(evaluated):
    """The classifier trains at the first evaluation, after the GAN's first epoch, and sets the global
    seeds; the GAN draws from its own seed generator and the evaluation from NumPy, so the GAN's
    losses are those of the run without evaluation."""
    run, plain = evaluated
    assert not (plain / BEST_FILE).exists() and not (plain / EVAL_CLASSIFIER_FILE).exists()
    for a, b in zip(gan_rows(run), gan_rows(plain)):
        for key in LOSSES:
            assert float(a[key]) == float(b[key]), key
    assert "kid_worst" not in gan_rows(plain)[0]


def test_the_classifier_trains_at_the_first_evaluation_and_its_time_counts_once(evaluated, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(evaluated[0], run)
    trained = json.loads((run / "eval_classifier.json").read_text())["seconds"]
    first, second = gan_rows(run)
    assert float(first["eval_classifier_seconds"]) >= trained > 0  # trained at the end of the first epoch
    assert float(first["seconds"]) > float(first["eval_classifier_seconds"]) and not second["eval_classifier_seconds"]
    rows = Run.open(run).history()
    epochs = sum(float(r["seconds"]) for r in rows) - float(first["eval_classifier_seconds"])
    assert Run.open(run).training_seconds() == round(epochs + trained, 1)


def test_commands_use_the_best_generator_and_say_so(evaluated, tmp_path, capsys):
    run, plain = evaluated
    best = json.loads((run / BEST_FILE).read_text())
    assert generate.main([str(run), "--per-class", "1", "--to", str(tmp_path / "a"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["generator"].startswith(f"best (epoch {best['epoch']} of 2")
    assert generate.main([str(run), "--per-class", "1", "--to", str(tmp_path / "b"), "--json",
                          "--generator", "last"]) == 0
    assert json.loads(capsys.readouterr().out)["generator"] == "last (epoch 2)"
    assert Run.open(plain).generator_choice()[1] == "last (epoch 2)"
    with pytest.raises(UsageError, match="has no generator_best.keras"):
        Run.open(plain).generator_choice("best")
    assert generate.main([str(plain), "--to", str(tmp_path / "c"), "--generator", "best"]) == 2
    assert "has no generator_best.keras" in capsys.readouterr().err
    args = fid.parse_args([str(run), "--weights", "random", "--per-class", "4", "--real-per-class", "4",
                           "--out", str(tmp_path / "pictures"), "--cache-dir", str(tmp_path / "cache")])
    with pytest.warns(metrics.SingularCovarianceWarning):
        result = fid.score(args)
    assert result["rows"][0]["generator"].startswith("best (epoch")
    assert "Generator of evaluated: best (epoch" in tables.fid_table(result)


def tiny_generator_run(folder, **config):
    """A run folder of 2 classes holding a real (untrained) 8x8 generator.keras, and `config`."""
    z, label = keras.Input((4,)), keras.Input((), dtype="int32")
    mixed = keras.layers.Concatenate()([z, keras.layers.Embedding(2, 4)(label)])
    image = keras.layers.Reshape((8, 8, 1))(keras.layers.Dense(64, activation="tanh")(mixed))
    folder.mkdir()
    keras.Model([z, label], image).save(folder / "generator.keras")
    (folder / "config.json").write_text(json.dumps(dict(dataset="digits", image_size=8, class_names=["a", "b"],
                                                        epochs=3, **config)))
    return folder


def test_a_run_without_a_best_generator_says_why_the_last_is_used(tmp_path, capsys):
    """No generator_best.keras and no --generator: one line on stderr names the run, says why (evaluation
    off, too few epochs, the evaluator refused with its reason) and that the last generator is used."""
    refused = "it gives a for every held-out image"
    cases = dict(off=(dict(eval_every=0), None, "in-training evaluation was off"),
                 few=(dict(eval_every=5), None, "fewer than --eval-every 5"),
                 refused=(dict(eval_every=1), dict(check=dict(trusted=False, reason=refused)),
                          f"the evaluator was not trusted: {refused}"),
                 refused_top=(dict(eval_every=1), dict(trusted=False, reason="too few images"),
                              "the evaluator was not trusted: too few images"),
                 unknown=(dict(eval_every=1), None, "above chance in every class"))
    for name, (config, judge, why) in cases.items():
        folder = tiny_generator_run(tmp_path / name, **config)
        if judge:
            (folder / EVAL_CLASSIFIER_FILE.replace(".keras", ".json")).write_text(json.dumps(judge))
        run = Run.open(folder)
        assert run.generator_choice()[1] == "last (epoch 3)"
        run.generator_choice()  # once per run
        err = capsys.readouterr().err
        assert err.startswith(f"{folder}: no best generator (generator_best.keras): ") and why in err
        assert err.endswith("; the last generator (generator.keras) is used\n"), err
        assert err.count("\n") == 1, err
    run = Run.open(tmp_path / "off")
    run.generator_choice("last")  # asked for: nothing to say
    assert capsys.readouterr().err == ""
    assert generate.main([str(tmp_path / "off"), "--per-class", "2", "--to", str(tmp_path / "images")]) == 0
    err = capsys.readouterr().err
    assert err.count("no best generator") == 1 and "evaluation was off" in err and "is used" in err
    assert len(list((tmp_path / "images" / "b").glob("*.png"))) == 2


def test_resume_keeps_the_classifier_and_the_best_so_far(evaluated, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(evaluated[0], run)
    classifier = (run / EVAL_CLASSIFIER_FILE).stat().st_mtime_ns
    before = json.loads((run / BEST_FILE).read_text())
    assert bagan_train.main(["--resume", str(run), "--epochs", "3", "--verbose", "0"]) == 0
    assert (run / EVAL_CLASSIFIER_FILE).stat().st_mtime_ns == classifier
    worst = [float(r["kid_worst"]) for r in gan_rows(run)]
    after = json.loads((run / BEST_FILE).read_text())
    assert after["kid_worst"] == pytest.approx(min(worst)) and after["epoch"] == int(np.argmin(worst)) + 1
    assert (after == before) == (worst[2] >= before["kid_worst"])
