"""compare.py on a tiny imbalanced digits comparison: every file of the report, the same tables as
fid.py and classify.py alone, a finished run reused and an interrupted one resumed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import classify
import compare
import fid
import tables
import metrics  # noqa: F401  (the warning filter names it)

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_finished_run_is_reused_and_an_interrupted_one_resumed(compared):
    code, out, stamp = compared
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert [(m["spec"], m["status"]) for m in report["models"]] == [("bagan_gp", "reused"), ("cgan", "trained")]
    assert (out / "runs" / "bagan_gp" / "generator.keras").stat().st_mtime_ns == stamp  # not trained twice
    history = [r["epoch"] for r in compare.Run.open(out / "runs" / "cgan").history() if r["phase"] == "gan"]
    assert history == ["1", "2"]  # epoch 1 from before the interruption, epoch 2 resumed
    assert all(m["seconds"] > 0 for m in report["models"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::metrics.SingularCovarianceWarning")  # 8 images per class
def test_the_tables_are_those_of_fid_and_classify_alone(compared, tmp_path):
    _, out, _ = compared
    report = json.loads((out / "report.json").read_text())
    runs = [str(out / "runs" / name) for name in ("bagan_gp", "cgan")]
    alone = fid.score(fid.parse_args([*runs, "--features", str(out / report["feature_file"]), "--per-class", "8",
                                      "--real-per-class", "8", "--baselines", "--out", str(tmp_path)]))
    assert alone["feature_hash"] == report["fid"]["feature_hash"]
    assert [row["name"] for row in alone["rows"]] == [row["name"] for row in report["fid"]["rows"]]
    for mine, theirs in zip(report["fid"]["rows"], alone["rows"]):
        for key in tables.MEASURES:
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


@pytest.mark.slow
def test_the_report_says_at_its_top_when_the_feature_classifier_cannot_tell_the_classes_apart(compared):
    _, out, _ = compared
    report = json.loads((out / "report.json").read_text())
    judge = report["fid"]["judge"]
    assert judge["trusted"] and "Feature classifier's check: held-out recall" in compare.markdown(report)
    report["fid"]["judge"] = dict(judge, trusted=False, reason="it gives 0 for every held-out image")
    report["best_on_minority"] = compare.best_on_minority(report)
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


def test_training_seeds_share_one_split_and_name_their_run_folders(tmp_path):
    args = compare.parse_args([*FLAGS, "--models", "bagan_gp", "cgan:seed=7", "bagan_gp:variant=v1",
                               "--train-seeds", "3", "--out", str(tmp_path / "report")])
    planned = compare.plan(args)
    assert [(run_dir.name, model, seed) for _, model, seed, _, run_dir in planned] == [
        ("bagan_gp", "bagan_gp", 42), ("bagan_gp-seed-43", "bagan_gp", 43), ("bagan_gp-seed-44", "bagan_gp", 44),
        ("cgan-seed-7", "cgan", 7),
        ("bagan_gp-variant-v1", "bagan_gp:variant=v1", 42), ("bagan_gp-variant-v1_seed-43", "bagan_gp:variant=v1", 43),
        ("bagan_gp-variant-v1_seed-44", "bagan_gp:variant=v1", 44)]
    assert {config.split_seed for *_, config, _ in planned} == {42}
    assert [config.seed for *_, config, _ in planned] == [42, 43, 44, 7, 42, 43, 44]


@pytest.mark.slow
def test_the_report_names_no_path_of_the_machine_that_made_it(compared):
    _, out, _ = compared
    text = (out / "report.json").read_text() + (out / "report.md").read_text()
    assert str(out) not in text and str(out.parent) not in text and "/tmp" not in text
    report = json.loads((out / "report.json").read_text())
    assert len(report["fid"]["feature_hash"]) == 16 and report["fid"]["feature_hash"] in (out / "report.md").read_text()
    assert (out / report["feature_file"]).is_file() and report["fid"]["pictures"]["cgan"].startswith("pictures/")


@pytest.fixture(scope="module")
def merged(compared, tmp_path_factory):
    """A second call (cgan at training seed 43, in the first call's feature space), moved to another
    folder without its run folders, merged with the first; and one call over all three runs, which
    reuses the two calls' runs and classifier scores."""
    import shutil
    _, first, _ = compared
    report = json.loads((first / "report.json").read_text())
    base = tmp_path_factory.mktemp("merge")
    second = base / "second"
    features = str(first / report["feature_file"])
    assert compare.main([*FLAGS, *SCORING, "--models", "cgan:seed=43", "--features", features,
                         "--out", str(second)]) == 0
    both = base / "both"
    for folder in (first, second):
        shutil.copytree(folder / "runs", both / "runs", dirs_exist_ok=True)
        shutil.copytree(folder / "classify", both / "classify", dirs_exist_ok=True)
    assert compare.main([*FLAGS, *SCORING, "--models", "bagan_gp", "cgan", "cgan:seed=43", "--features", features,
                         "--out", str(both)]) == 0
    moved = base / "elsewhere" / "second"
    shutil.copytree(second, moved, ignore=shutil.ignore_patterns("runs", "classify"))
    shutil.rmtree(second)
    assert compare.main(["merge", "--out", str(base / "merged"), str(first), str(moved)]) == 0
    return base / "merged", both


@pytest.mark.slow
def test_a_merge_gives_the_tables_of_one_call_over_both(merged):
    out, both = merged
    mine, one = (json.loads((folder / "report.json").read_text()) for folder in (out, both))
    assert [row["name"] for row in mine["fid"]["rows"]] == [row["name"] for row in one["fid"]["rows"]]
    for a, b in zip(mine["fid"]["rows"], one["fid"]["rows"]):
        for key in tables.MEASURES:
            np.testing.assert_allclose(np.array(a[key], float), np.array(b[key], float), rtol=1e-5, err_msg=a["name"])
    assert [(r["name"], r["mean"]) for r in mine["classify"]["rows"]] == [(r["name"], r["mean"])
                                                                        for r in one["classify"]["rows"]]
    assert mine["best_on_minority"] == one["best_on_minority"]
    assert {name: (m["seeds"], m["runs"], m["recall"]) for name, m in mine["by_model"].items()} == {
        name: (m["seeds"], m["runs"], m["recall"]) for name, m in one["by_model"].items()}
    assert mine["by_model"]["cgan"]["seeds"] == [42, 43] and mine["by_model"]["cgan"]["recall"]["sd"] is not None
    start = "## Per-class measures"
    assert (out / "report.md").read_text().split(start)[1] == (both / "report.md").read_text().split(start)[1]
    assert len(list((out / "classes").glob("*.png"))) == 10
    assert (out / "pictures" / "nearest_neighbours-cgan-seed-43.png").is_file()


@pytest.mark.slow
def test_a_merge_refuses_reports_that_cannot_share_a_table(compared, merged, tmp_path, capsys):
    import shutil
    _, first, _ = compared
    out, _ = merged
    for change, needle in ((lambda r: r["fid"].update(feature_hash="0" * 16), "feature space"),
                           (lambda r: r.update(image_size=64), "data")):
        other = shutil.copytree(first, tmp_path / needle.replace(" ", "-"), ignore=shutil.ignore_patterns("runs"))
        report = json.loads((other / "report.json").read_text())
        report["models"] = [dict(m, run=m["run"] + "-other") for m in report["models"]]
        change(report)
        (other / "report.json").write_text(json.dumps(report))
        assert compare.main(["merge", "--out", str(tmp_path / "no"), str(first), str(other)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and f"differ in {needle}" in lines[0], lines
    assert compare.main(["merge", "--out", str(tmp_path / "no"), str(first), str(out)]) == 2
    assert "is in both" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_the_feature_hash_is_stable_across_a_save_and_load(tmp_path):
    import keras
    from evaluators import build_cnn, weights_hash
    model = build_cnn((32, 32, 1), 3)
    model.save(tmp_path / "features.keras")
    loaded = keras.saving.load_model(tmp_path / "features.keras")
    assert weights_hash(loaded) == weights_hash(model) and len(weights_hash(model)) == 16
    loaded.weights[-1].assign(loaded.weights[-1] + 1e-6)
    assert weights_hash(loaded) != weights_hash(model)


def _row(name, kind, minority_recalls):
    """A classify.py row whose per-seed recall is 1.0 on class 0 and the given value on class 1."""
    return dict(name=name, kind=kind, per_seed=[dict(seed=s, per_class_recall=[1.0, r])
                                                for s, r in enumerate(minority_recalls)])


def test_generated_rows_are_paired_against_the_best_row_without_generated_images():
    """The best classic row (never the reference, which uses images a researcher lacks) is the baseline;
    the difference is paired seed by seed with a 95% t interval: differences 0.1, 0.2, 0.3 give
    0.2 +- t(0.975, 2) * 0.1 / sqrt(3)."""
    rows = [_row("balanced (real)", "reference", [0.99, 0.99, 0.99]), _row("none", "none", [0.4, 0.4, 0.4]),
            _row("affine", "affine", [0.5, 0.5, 0.5]), _row("run", "generator", [0.6, 0.7, 0.8]),
            _row("late", "generator", [0.9])]
    paired = tables.paired_against_best(rows, train_counts=[100, 10])
    assert paired["best"] == "affine"
    run, late = paired["rows"]
    half = 4.302652729911275 * 0.1 / 3 ** 0.5
    assert run["seeds"] == [0, 1, 2] and run["difference"] == pytest.approx(0.2)
    assert (run["low"], run["high"]) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert late == dict(name="late", seeds=[0], difference=pytest.approx(0.4), low=None, high=None)
    assert tables.paired_against_best(rows[:3], train_counts=[100, 10]) is None
    lines = tables.paired_lines(paired)
    assert "minus that of affine" in lines[0] and "run: +0.200 [" in lines[1] and "one seed" in lines[2]
