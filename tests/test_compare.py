"""compare.py on a tiny imbalanced digits comparison: every file of the report, the same tables as
fid.py and classify.py alone, a finished run reused and an interrupted one resumed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import classify
import compare
import fid

FLAGS = ["--dataset", "digits", "--imbalanced", "--image-size", "32", "--batch-size", "16", "--ae-epochs", "1",
         "--steps-per-epoch", "2", "--epochs", "2"]
SCORING = ["--fid-per-class", "8", "--real-per-class", "8", "--seeds", "1", "--classifier-epochs", "1"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory, train_run):
    """bagan_gp already finished (2 epochs) and cgan interrupted after 1 of 2 epochs, then compare.py."""
    out = tmp_path_factory.mktemp("compare") / "report"
    finished = train_run(out / "runs" / "bagan_gp", 2, 2, "--imbalanced")
    stamp = (finished / "generator.keras").stat().st_mtime_ns
    train_run(out / "runs" / "cgan", 1, 2, "--imbalanced", "--model", "cgan")
    code = compare.main([*FLAGS, *SCORING, "--models", "bagan_gp", "cgan", "--out", str(out), "--json"])
    return code, out, stamp


def test_the_report_has_every_file(compared):
    code, out, _ = compared
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    for name in ("report.md", "fid.png", "recall.png", "pictures/nearest_neighbours-bagan_gp.png",
                 "pictures/nearest_neighbours-cgan.png"):
        assert (out / name).stat().st_size > 0, name
    assert len(report["pictures"]["classes"]) == 10
    assert report["pictures"]["classes"][0].startswith("classes/01-1")  # the smallest class first
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in report["pictures"]["classes"])
    assert report["features"] == "classifier"  # no ImageNet weights here, and the report says so
    scores = sorted(p.name for p in (out / "classify" / classify.SCORES_DIR).glob("*.json"))
    assert len(scores) == len(report["classify"]["rows"]) == 5, scores  # kept for a resumed or extended call
    assert report["train_counts"] == [124, 7, 13, 20, 26, 32, 38, 44, 49, 57]
    best = report["best_on_minority"]
    assert best["classes"] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert {best["by"]["fid"], best["by"]["kid"], best["by"]["recall"]} <= {"bagan_gp", "cgan"}
    markdown = (out / "report.md").read_text()
    for text in ("## Training", "**FID**", "**Memorised**", "Test set (balanced)", "![per-class FID](fid.png)",
                 "classes/01-1.png", f"lowest mean FID **{best['by']['fid']}**"):
        assert text in markdown, text


def test_a_finished_run_is_reused_and_an_interrupted_one_resumed(compared):
    code, out, stamp = compared
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert [(m["spec"], m["status"]) for m in report["models"]] == [("bagan_gp", "reused"), ("cgan", "trained")]
    assert (out / "runs" / "bagan_gp" / "generator.keras").stat().st_mtime_ns == stamp  # not trained twice
    history = [r["epoch"] for r in compare.Run.open(out / "runs" / "cgan").history() if r["phase"] == "gan"]
    assert history == ["1", "2"]  # epoch 1 from before the interruption, epoch 2 resumed
    assert all(m["seconds"] > 0 for m in report["models"])


@pytest.mark.filterwarnings("ignore::fid.SingularCovarianceWarning")  # 8 images per class
def test_the_tables_are_those_of_fid_and_classify_alone(compared, tmp_path):
    _, out, _ = compared
    report = json.loads((out / "report.json").read_text())
    runs = [str(out / "runs" / name) for name in ("bagan_gp", "cgan")]
    alone = fid.score(fid.parse_args([*runs, "--features", "classifier", "--per-class", "8", "--real-per-class", "8",
                                      "--baselines", "--out", str(tmp_path)]))
    assert [row["name"] for row in alone["rows"]] == [row["name"] for row in report["fid"]["rows"]]
    for mine, theirs in zip(report["fid"]["rows"], alone["rows"]):
        for key in fid.MEASURES:
            np.testing.assert_allclose(np.array(mine[key], float), np.array(theirs[key], float), rtol=1e-6,
                                       err_msg=f"{mine['name']} {key}")
    args = classify.parse_args(["--dataset", "digits", "--imbalanced", "--image-size", "32", "--seeds", "1",
                                "--epochs", "1", "--augment", "none", "--augment", "affine", "--augment", runs[0],
                                "--augment", runs[1], "--out", str(tmp_path / "classify")])
    data, rows, pool, key, top_k = classify.prepare(args)
    result = classify.run_protocol(args, data, rows, pool, key, top_k)
    assert [r["name"] for r in result["rows"]] == [r["name"] for r in report["classify"]["rows"]]
    assert result["test_counts"] == report["classify"]["test_counts"]
    for mine, theirs in zip(report["classify"]["rows"], result["rows"]):
        assert mine["train_counts"] == theirs["train_counts"]
        assert mine["mean"]["accuracy"] == pytest.approx(theirs["mean"]["accuracy"], abs=0.02), mine["name"]


def test_the_report_says_at_its_top_when_the_feature_classifier_cannot_tell_the_classes_apart(compared):
    _, out, _ = compared
    report = json.loads((out / "report.json").read_text())
    judge = report["fid"]["judge"]
    assert judge["trusted"] and "Feature classifier's check: held-out recall" in compare.markdown(report)
    report["fid"]["judge"] = dict(judge, trusted=False, reason="it gives 0 for every held-out image")
    report["best_on_minority"] = compare.best_on_minority(report["fid"], report["classify"],
                                                          [compare.Run.open(m["run_dir"]) for m in report["models"]],
                                                          report["train_counts"])
    assert report["best_on_minority"]["by"]["fid"] is None and report["best_on_minority"]["by"]["kid"] is None
    top = compare.markdown(report).split("## Training")[0]
    assert "every FID, KID, precision" in top and "it gives 0 for every held-out image" in top


@pytest.mark.parametrize("models, needle", [
    (["no_such_model"], "unknown model 'no_such_model'"),
    (["bagan_gp:variant=v9"], "variant must be one of v1, v2, v3"),
    (["cgan:variant=v1"], "--variant does not apply to --model cgan"),
    (["bagan_gp:colour=red"], "'colour=red' is not setting=value"),
    (["cgan", "cgan"], "given twice"),
])
def test_bad_models_exit_2_with_one_line_before_any_work(models, needle, tmp_path, capsys):
    out = tmp_path / "report"
    assert compare.main([*FLAGS, "--models", *models, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert not out.exists()
