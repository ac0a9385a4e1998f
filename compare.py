"""Which model for my data? The papers' comparison as one command: train several models on one
dataset, at one or more training seeds, score them all class by class, and write a report; merge
reports made in other calls or on other machines into one.

    python compare.py --dataset digits --imbalanced --out reports/digits-imbalanced
    python compare.py --dataset fashion_mnist --imbalanced --image-size 32 --train-seeds 3 --out reports/fmnist-b
    python compare.py --dataset digits --imbalanced --models bagan_gp cgan --epochs 3 --ae-epochs 2 \\
        --seeds 1 --classifier-epochs 2 --fid-per-class 50 --out reports/smoke       # a few minutes
    python compare.py merge --out reports/all reports/fmnist-b reports/fmnist-b-gpu

Each --models entry is a --model of bagan_train.py, with its own settings if it needs them:
NAME[:setting=value,...], e.g. bagan_gp:variant=v1 or bagan_gp:latent=paper. The other training
flags apply to every model. Each entry trains into <out>/runs/<entry> at --seed, and with
--train-seeds N also at the N - 1 seeds after it, into <out>/runs/<entry>_seed-<s> (an entry may
name its own seed instead: bagan_gp:seed=43); every training seed trains on the same split
(--split-seed, default --seed). A finished run is reused and an unfinished one resumed, so a killed
comparison continues where it stopped, and nothing trains twice; --runs adds run folders trained
elsewhere on the same data. Then every run is scored by the two command lines, as they would be
alone:

1. fid.py's table (the paper's Table 4, with the autoencoder and real-training-image baselines):
   per class FID, KID, precision, recall, density, coverage and memorisation, in InceptionV3's
   features when its ImageNet weights are on this machine, else in a feature network trained on
   the real training split, kept as <out>/features/<data>.keras and named by the hash of its
   weights (--features PATH scores in a network made before, e.g. one committed under results/);
2. classify.py's protocol: a classifier trained on the training split as it is, with affine
   copies, and rebalanced by each run's generator, scored per class over --seeds on a test set no
   model trained on. Each classifier's score is kept under <out>/classify/scores/, so a call
   resumed, or repeated with a model added, trains only the classifiers it has not trained yet.

<out>/report.md and report.json hold the tables, each model's training time, the mean and spread
over training seeds, and which model is best on the minority classes; pictures:
classes/<n>-<class>.png (minority classes first: a row of real training images, then a row of each
run's images, kept in samples.npz), fid.png (per-class FID of every row) and recall.png (per-class
test recall of every training set). The report names no path of the machine that made it, so
`compare.py merge` can combine reports from anywhere into one with the same tables and pictures,
retraining nothing; it refuses reports of different data, feature spaces or classifier protocols.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from datasets import MODEL_IMAGE_SIZES, DatasetError, add_dataset_arguments, check_dataset_arguments  # noqa: E402
from runs import CONFIG_FILE, GENERATOR_FILE, Run, UsageError, atomic_write, generated_batches, save_json  # noqa: E402
from evaluators import data_key  # noqa: E402
from metrics import describe_check  # noqa: E402
from tables import (MEASURES, RECONSTRUCTED, class_picture, classify_table, fid_picture,  # noqa: E402
                    minority_classes, plot_per_class_recall)

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = ("bagan_gp:latent=class,g_learning_rate=2e-5", "bagan_gp:latent=paper", "bagan_gp:variant=v1",
                  "bagan_gp:variant=v2", "bagan", "cdragan", "wgan_gp", "cgan", "acgan")
"""BAGAN-GP v3 in both generator starts (the class form with the generator learning rate it was measured
with, benchmarks/RESULTS.md), v1, v2, and every baseline of the papers."""
PICTURE_IMAGES = 8
SAMPLES_FILE = "samples.npz"
"""PICTURE_IMAGES real training images and generated images (noise seed 0) per class and run: the
class pictures, remade by a merge without the run folders."""
REAL_ROW = "real (training)"


# ---------------------------------------------------------------------------------------------
# The models to compare


def parse_spec(spec):
    """'NAME[:setting=value,...]' -> (model, {setting: value}), values typed as TrainConfig's flags."""
    import dataclasses
    from bagan_train import TrainConfig
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    name, _, rest = spec.partition(":")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, equals, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or key not in fields or key in ("model", "dataset", "data_dir", "imbalanced", "image_size",
                                                      "split_seed"):
            raise UsageError(f"--models {spec}: {item!r} is not setting=value of a training setting")
        kind = fields[key].metadata.get("type", str)
        try:
            settings[key] = kind(value) if fields[key].metadata.get("action") != "store_true" else value == "true"
        except ValueError:
            raise UsageError(f"--models {spec}: {key} takes a {kind.__name__}, got {value!r}") from None
    return name, settings


def label(spec):
    """The run folder name of a --models entry: bagan_gp:variant=v1 -> bagan_gp-variant-v1."""
    return spec.replace(":", "-").replace("=", "-").replace(",", "_")


def model_of(spec):
    """The model of an entry, its training seed left out: the row that means and spreads group by."""
    name, _, rest = spec.partition(":")
    settings = [item for item in filter(None, rest.split(",")) if not re.fullmatch(r"\s*seed\s*=.*", item)]
    return name + (":" + ",".join(settings) if settings else "")


def with_seed(spec, seed):
    return spec + ("," if ":" in spec else ":") + f"seed={seed}"


def plan(args):
    """Every (entry, model, training seed, TrainConfig, run folder), checked before any work: a new
    run's settings, or an existing run folder's with the changes --resume allows."""
    import dataclasses
    from bagan_train import TrainConfig
    common = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    common["imbalanced"] = bool(args.imbalanced)
    base = args.seed if args.seed is not None else TrainConfig.seed
    common["split_seed"] = args.split_seed if args.split_seed is not None else base
    planned = []
    for given in args.models:
        model, settings = parse_spec(given)
        seeds = [settings["seed"]] if "seed" in settings else [base + i for i in range(args.train_seeds)]
        for seed in seeds:
            spec = given if "seed" in settings or seed == base else with_seed(given, seed)
            run_dir = Path(args.out) / "runs" / label(spec)
            if any(run_dir == other[-1] for other in planned):
                raise UsageError(f"--models {given} is given twice")
            values = dict(common, model=model, **dict(settings, seed=seed))
            if (run_dir / CONFIG_FILE).is_file():
                config = TrainConfig.resume(run_dir, **values)
            else:
                config = TrainConfig.create(**values)
            planned.append((spec, model_of(given), seed, config, run_dir))
    return planned


def finished(run_dir, epochs):
    """Whether a run folder holds a finished run of `epochs` GAN epochs, or of the epochs its
    config.json records where the data fixed them (bagan_train.TrainConfig.fit_budget)."""
    if not (run_dir / GENERATOR_FILE).is_file():
        return False
    run = Run.open(run_dir)
    done = [int(row["epoch"]) for row in run.history() if row["phase"] == "gan"]
    if (run.config.get("budget") or {}).get("changed", {}).get("epochs"):
        epochs = run.config["epochs"]
    return bool(done) and max(done) >= epochs


def train_all(planned, say):
    """Train (or resume) every planned run that is not finished; returns {spec: status dict}."""
    import contextlib

    import keras
    from bagan_train import train
    from callbacks import NonFiniteLoss
    statuses, trained_seconds, started = {}, [], time.time()
    todo = []
    for spec, _, _, config, run_dir in planned:
        if finished(run_dir, config.epochs):
            statuses[spec] = dict(status="reused")
            say(f"{spec}: finished run in {run_dir}, reused")
        else:
            todo.append((spec, config, run_dir))
    for i, (spec, config, run_dir) in enumerate(todo, start=1):
        left = ""
        if trained_seconds:
            left = f", about {np.mean(trained_seconds) * (len(todo) - i + 1) / 60:.0f} min left"
        say(f"training {i}/{len(todo)}: {spec} ({config.epochs} epochs) into {run_dir}; "
            f"{(time.time() - started) / 60:.0f} min so far{left}")
        keras.backend.clear_session()
        model_started = time.time()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # --json's stdout stays one object
                train(config, run_dir, verbose=0)
            statuses[spec] = dict(status="trained")
        except NonFiniteLoss as e:
            statuses[spec] = dict(status="failed", reason=str(e))
            say(f"{spec}: {e}")
        trained_seconds.append(time.time() - model_started)
    return statuses


# ---------------------------------------------------------------------------------------------
# Scoring: fid.py and classify.py, run as their own command lines


def command(script, argv, say):
    """`python script argv --json` beside this file, its progress on this console; its JSON object."""
    say(f"{script} {' '.join(argv[:3])}{' ...' if len(argv) > 3 else ''}")
    proc = subprocess.run([sys.executable, str(HERE / script), *argv, "--json"], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise UsageError(f"{script} stopped (exit {proc.returncode}); its error is above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def feature_space(args, runs, out, say):
    """fid.py's --features: inception when ImageNet's InceptionV3 weights are on this machine (or
    asked for); a network given by path; else <out>/features/<data>.keras, trained now when missing."""
    from evaluators import inception_weights_path
    choice = args.features
    if choice == "auto":
        try:
            inception_weights_path()
            choice = "inception"
        except UsageError:
            choice = "classifier"
    if choice == "inception":
        return choice
    if choice != "classifier":  # a network made before: kept with the report, which names it
        from evaluators import feature_meta_path
        path = out / "features" / Path(choice).name
        if Path(choice).resolve() != path.resolve():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(choice, path)
            if feature_meta_path(choice).is_file():
                shutil.copyfile(feature_meta_path(choice), feature_meta_path(path))
        return str(path)
    from datasets import load_dataset
    from evaluators import feature_network
    key, c = data_key(runs[0].config), runs[0].config
    data = load_dataset(c["dataset"], c.get("data_dir"), c["image_size"], key["imbalanced"], key["split_seed"],
                        c["resize"], c.get("window"))
    path = out / "features" / f"{key['dataset']}-{'imbalanced' if key['imbalanced'] else 'balanced'}-" \
                              f"{key['image_size']}-split{key['split_seed']}.keras"
    feature_network(path, data, key, key["split_seed"], refuse=False, say=lambda m: say(f"features: {m}"))
    return str(path)


def score_fid(args, runs, features, out, say):
    """fid.py's table of the runs (its --json object), with its warnings."""
    argv = [str(run.path) for run in runs] + ["--features", features, "--per-class", str(args.fid_per_class),
                                              "--out", str(out / "pictures"), "--keep-untrusted"]
    if any(run.autoencoder for run in runs):
        argv.append("--baselines")
    if args.real_per_class:
        argv += ["--real-per-class", str(args.real_per_class)]
    return command("fid.py", argv, say)


def score_classifiers(args, runs, out, say):
    """classify.py's protocol (its --json object): none, affine, and each run's generator."""
    argv = ["--dataset", args.dataset, "--image-size", str(runs[0].config["image_size"]),
            "--split-seed", str(runs[0].config["split_seed"]), "--seeds", str(args.seeds),
            "--epochs", str(args.classifier_epochs), "--classifier", args.classifier, "--out", str(out / "classify"),
            "--augment", "none", "--augment", "affine"]
    for run in runs:
        argv += ["--augment", str(run.path)]
    if args.imbalanced:
        argv.append("--imbalanced")
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return command("classify.py", argv, say)


def samples(runs, data):
    """{row name: uint8 (classes, PICTURE_IMAGES, H, W, C)}: real training images, then each run's
    generated images (noise seed 0)."""
    from datasets import to_uint8
    real = [data.x_train[data.y_train == c][:PICTURE_IMAGES] for c in range(data.num_classes)]
    shape = (PICTURE_IMAGES, *data.x_train.shape[1:])
    rows = {REAL_ROW: np.stack([np.concatenate([r, np.zeros((PICTURE_IMAGES - len(r), *shape[1:]), np.uint8)])
                                for r in real])}
    for run in runs:
        generator = run.load_generator()
        rows[run.name] = np.stack([to_uint8(next(generated_batches(generator, c, PICTURE_IMAGES, seed=0)))
                                   for c in range(data.num_classes)])
    return rows


def portable(value, out, runs):
    """`value` (report JSON) with no path of this machine: paths under `out` made relative to it, a
    run folder's path replaced by its name, the data's folder by its name."""
    if isinstance(value, dict):
        return {k: portable(v, out, runs) for k, v in value.items()
                if k not in ("run_dir", "data_dir", "cache_dir", "out_dir")}
    if isinstance(value, list):
        return [portable(v, out, runs) for v in value]
    if isinstance(value, str):
        for run in sorted(runs, key=lambda r: -len(str(r.path))):
            value = value.replace(str(run.path.resolve()), run.name).replace(str(run.path), run.name)
        for base in (str(out.resolve()) + os.sep, str(out) + os.sep):
            value = value.replace(base, "")
    return value


# ---------------------------------------------------------------------------------------------
# The report


def trusted_features(fid_result):
    """False when fid.py's feature classifier failed its check on held-out images (its numbers mean nothing)."""
    return not fid_result.get("judge") or fid_result["judge"]["trusted"]


def _spread(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return dict(mean=None, sd=None, values=[])
    return dict(mean=float(np.mean(values)), sd=float(np.std(values, ddof=1)) if len(values) > 1 else None,
                values=[float(v) for v in values])


def by_model(report):
    """Per model (entries grouped over training seeds): mean minority-class FID, KID and classifier
    recall of each training seed's run, and their mean and sample standard deviation."""
    f, k = report["fid"], report["classify"]
    classes = minority_classes(report["train_counts"]) or list(range(len(report["train_counts"])))
    fid_rows = {row["name"]: row for row in f["rows"]}
    recall_rows = {row["name"]: row for row in k["rows"]}

    def minority_mean(values):
        kept = [values[c] for c in classes if values[c] is not None]
        return float(np.mean(kept)) if kept else None

    groups = {}
    for m in report["models"]:
        if m["status"] == "failed":
            continue
        group = groups.setdefault(m.get("model", m["spec"]), dict(seeds=[], runs=[], fid=[], kid=[], recall=[],
                                                                  seconds=[]))
        group["seeds"].append(m.get("seed"))
        group["runs"].append(m["run"])
        group["seconds"].append(m.get("seconds"))
        row = fid_rows.get(m["run"])
        for key in ("fid", "kid"):
            group[key].append(minority_mean(row[key]) if row and trusted_features(f) else None)
        recall = recall_rows.get(m["run"])
        group["recall"].append(minority_mean(recall["mean"]["per_class_recall"]) if recall else None)
    return {name: dict(seeds=g["seeds"], runs=g["runs"], seconds=_spread(g["seconds"]),
                       **{key: _spread(g[key]) for key in ("fid", "kid", "recall")}) for name, g in groups.items()}


def best_on_minority(report):
    """Which model is best on the minority classes (all classes when none is), by the mean over its
    training seeds of the mean minority FID, KID and classifier recall."""
    models = by_model(report)
    classes = minority_classes(report["train_counts"]) or list(range(len(report["train_counts"])))
    best = {}
    for key, better in (("fid", min), ("kid", min), ("recall", max)):
        scored = {name: m[key]["mean"] for name, m in models.items() if m[key]["mean"] is not None}
        best[key] = better(scored, key=scored.get) if scored else None
    recall = {row["name"]: float(np.mean([row["mean"]["per_class_recall"][c] for c in classes
                                          if row["mean"]["per_class_recall"][c] is not None]))
              for row in report["classify"]["rows"]}
    best["recall_beats_affine"] = best["recall"] is not None and models[best["recall"]]["recall"]["mean"] > recall[
        "affine"]
    return dict(classes=classes, by=best, mean_recall=recall)


def write_pictures(report, rows, out):
    """fid.png, recall.png and classes/<n>-<class>.png (minority classes first) of a report and its samples."""
    fid_picture(report["fid"], report["train_counts"], out / "fid.png")
    plot_per_class_recall(report["classify"], out / "recall.png")
    counts, names = report["train_counts"], [c["name"] for c in report["fid"]["classes"]]
    minority = minority_classes(counts)
    order = sorted(range(len(counts)), key=lambda c: (c not in minority, counts[c]))
    folder = out / "classes"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rank, c in enumerate(order, start=1):
        path = folder / f"{rank:02d}-{str(names[c]).replace(os.sep, '-').replace(' ', '_')}.png"
        real = rows[REAL_ROW][c][:counts[c]]
        class_picture([(REAL_ROW, real)] + [(name, images[c]) for name, images in rows.items() if name != REAL_ROW],
                      f"class {names[c]}{' (minority)' if c in minority else ''}: {counts[c]} training images", path)
        paths.append(str(path.relative_to(out)))
    return paths


def write_report(report, rows, out):
    """Every file of a report folder from the report's JSON and its samples: the pictures,
    samples.npz, report.json and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    report["by_model"] = by_model(report)
    report["best_on_minority"] = best_on_minority(report)
    report["pictures"] = dict(fid="fid.png", recall="recall.png", classes=write_pictures(report, rows, out))

    def write_samples(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **rows)
    atomic_write(out / SAMPLES_FILE, write_samples)
    save_json(out / "report.json", report)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(markdown(report)))


def _pm(spread, fmt):
    if spread["mean"] is None:
        return "n/a"
    return format(spread["mean"], fmt) + ("" if spread["sd"] is None else f" ± {format(spread['sd'], fmt)}")


def markdown(report):
    """report.md: the settings, the training, the means over training seeds, fid.py's and
    classify.py's tables, the pictures."""
    f, k = report["fid"], report["classify"]
    lines = [f"# {report['dataset']}{' (imbalanced)' if report['imbalanced'] else ''}: which model?", "",
             f"Image size {report['image_size']}x{report['image_size']}, split seed {report['split_seed']}; "
             f"training images per class: {', '.join(map(str, report['train_counts']))}.", "",
             f"Feature space: {f['feature_space']} (hash `{f.get('feature_hash')}`).", ""]
    if not trusted_features(f):
        lines += [f"> **Warning: every FID, KID, precision, recall, density, coverage and memorisation number of "
                  f"this report is meaningless.** The feature classifier cannot tell the classes apart: "
                  f"{f['judge']['reason']}. No model is named best by FID or KID.", ""]
    elif f.get("judge"):
        lines += [f"Feature classifier's check: {describe_check(f['judge'])}.", ""]
    lines += ["## Training", "", "| model | training seed | run folder | status | training time (s) | generator scored |",
              "| --- | --- | --- | --- | --- | --- |"]
    generators = {row["name"]: row.get("generator", "") for row in f["rows"]}
    for m in report["models"]:
        lines.append(f"| `{m['spec']}` | {m.get('seed', '')} | {m['run']} | {m['status']} | {m.get('seconds', '')} | "
                     f"{generators.get(m['run'], '')} |")
    best = report["best_on_minority"]
    names = [c["name"] for c in f["classes"]]
    lines += ["", "## Over training seeds", "",
              f"Per model, each training seed's mean over the minority classes ({', '.join(names[c] for c in best['classes'])}), "
              "then the mean ± sample standard deviation over the seeds (report.json `by_model` keeps every value).", "",
              "| model | training seeds | minority FID | minority KID | minority classifier recall | training time (s) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, m in report["by_model"].items():
        lines.append(f"| `{name}` | {', '.join(map(str, m['seeds']))} | {_pm(m['fid'], '.2f')} | {_pm(m['kid'], '.4f')} "
                     f"| {_pm(m['recall'], '.3f')} | {_pm(m['seconds'], '.0f')} |")
    lines += ["", "Classifier recall without generated images: " + ", ".join(
        f"{name} {value:.3f}" for name, value in best["mean_recall"].items() if name not in report["by_model"]
        and name not in {m["run"] for m in report["models"]}) + ".", "",
              "## Best on the minority classes", "",
              f"By the means over training seeds: lowest mean FID "
              f"**{best['by']['fid'] or 'none (meaningless features)'}**, lowest mean KID "
              f"**{best['by']['kid'] or 'none (meaningless features)'}**, highest mean classifier "
              f"recall **{best['by']['recall']}**"
              + ("" if best["by"]["recall_beats_affine"] else " (no generator beat the affine augmentation there)")
              + ".", "",
              f"## Per-class measures ({f['feature_space']})", "",
              f"{f['generated_per_class']} generated images per class against the test images of the class "
              "(count in the header); memorisation against its training images.", ""]
    header = [f"{c['name']} ({c['reference_count']})" for c in f["classes"]]
    too_few = [set(c.get("too_few", ())) for c in f["classes"]]
    for key, (title, fmt, meaning) in MEASURES.items():
        lines += [f"**{title}**: {meaning}", "", "| row | " + " | ".join(header) + " |",
                  "| --- |" + " --- |" * len(header)]
        lines += [f"| {row['name']} | " + " | ".join(("n/a" if v is None else format(v, fmt))
                                                    + ("\\*" if key in short else "")
                                                    for v, short in zip(row[key], too_few)) + " |"
                  for row in f["rows"]]
        lines.append("")
    if any(too_few):
        need = f["minimum_images"]
        lines += [f"\\*: from fewer test images of the class than the measure needs (FID {need['fid']}, the feature "
                  f"dimensions + 1; precision, recall, density and coverage {need['precision']}, 10 times the "
                  f"neighbours; KID {need['kid']}): unreliable (metrics.minimum_images).", ""]
    lines += ["![per-class FID](fid.png)", "", "## Does it help a classifier?", "", "```",
              classify_table(k), "```", "", "![per-class recall](recall.png)", "",
              "## The images, class by class (minority classes first)", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in report["pictures"]["classes"]]
    lines += ["", "Nearest training images of the smallest classes (fid.py): "
              + ", ".join(f"[{name}]({path})" for name, path in f["pictures"].items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Merge


MUST_AGREE = {
    "data": lambda r: [r["dataset"], r["imbalanced"], r["image_size"], r["split_seed"], r["train_counts"]],
    "feature space": lambda r: [r["fid"]["feature_hash"], r["fid"]["generated_per_class"], r["fid"]["noise_seed"],
                                [c["reference_count"] for c in r["fid"]["classes"]]],
    "classifier protocol": lambda r: [r["classify"][k] for k in ("classifier", "seeds", "test_set", "test_counts",
                                                                   "epochs", "validation_counts")
                                      if k in r["classify"]],
}
"""What two reports must share to be merged, by what the refusal names."""


def read_report(folder):
    """(report.json, samples) of a report folder; UsageError naming what is missing."""
    folder = Path(folder)
    if (folder / "report.json").is_file() and not (folder / SAMPLES_FILE).is_file():
        raise UsageError(f"{folder} was written before reports kept {SAMPLES_FILE} and their feature space's hash: "
                         "it cannot be merged (score its runs again with compare.py)")
    try:
        report = json.loads((folder / "report.json").read_text())
        with np.load(folder / SAMPLES_FILE) as stored:
            rows = {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder} is not a compare.py report folder with {SAMPLES_FILE}: {e}") from None
    return report, rows


def merge(folders, out):
    """One report of the reports in `folders`, as one call over all their runs would write it
    (the reference rows and the classifiers without generated images from the first); refuses, in
    one line, reports that differ in data, feature space or classifier protocol, or share a run."""
    import copy
    reports = [read_report(folder) for folder in folders]
    first, rows = copy.deepcopy(reports[0][0]), dict(reports[0][1])
    for folder, (report, _) in zip(folders[1:], reports[1:]):
        for what, key in MUST_AGREE.items():
            if key(report) != key(first):
                raise UsageError(f"{folder} and {folders[0]} differ in {what} ({key(report)} against {key(first)}): "
                                 "their numbers cannot share a table")
    seen = {m["run"]: folders[0] for m in first["models"]}
    for folder, (report, samples_) in zip(folders[1:], reports[1:]):
        for m in report["models"]:
            if m["run"] in seen:
                raise UsageError(f"run {m['run']} is in both {seen[m['run']]} and {folder}: rename one run folder")
            seen[m["run"]] = folder
        runs = {m["run"] for m in report["models"]}
        first["models"] += report["models"]
        first["fid"]["rows"] = ([r for r in first["fid"]["rows"] if r["type"] != "real_train"]
                                + [r for r in report["fid"]["rows"] if r["type"] != "real_train"]
                                + [r for r in first["fid"]["rows"] if r["type"] == "real_train"])
        first["fid"]["pictures"].update(report["fid"]["pictures"])
        first["classify"]["rows"] += [r for r in report["classify"]["rows"] if r["name"] in runs]
        rows.update({name: images for name, images in samples_.items() if name != REAL_ROW})
    first["fid"]["rows"].sort(key=lambda r: (r["type"] != "generated", r["type"] == "real_train"))
    reconstructed = [r for r in first["fid"]["rows"] if r["type"] == "reconstructed"]
    for row in reconstructed if len(reconstructed) > 1 else ():
        row["name"] = f"{RECONSTRUCTED} {row['run']}"  # as fid.py names them when it scores several autoencoders
    first["merged_from"] = [os.path.basename(os.path.normpath(str(folder))) for folder in folders]
    first["seconds"] = round(sum(report.get("seconds", 0) for report, _ in reports), 1)
    for folder, (report, _) in zip(folders, reports):
        for name, path in report["fid"]["pictures"].items():
            (out / Path(path).parent).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(folder) / path, out / path)
        for stored in Path(folder, "features").glob("*") if Path(folder, "features").is_dir() else ():
            (out / "features").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stored, out / "features" / stored.name)
    write_report(first, rows, out)
    return first


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    from bagan_train import add_training_arguments, model_option_names
    from console import ArgumentParser
    p = ArgumentParser(description="Train several models on one dataset, score them all per class "
                                   "(fid.py, classify.py) and write a report; `compare.py merge --help`: "
                                   "combine reports.")
    add_dataset_arguments(p, dict(dataset="digits", imbalanced="no", image_size="64; digits 32"))
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME[:setting=value,...]",
                   help=f"the models (default: {' '.join(DEFAULT_MODELS)}); a setting of one entry, e.g. "
                        "bagan_gp:ema_decay=0.999,diffaugment=translation+cutout")
    p.add_argument("--train-seeds", type=int, default=1,
                   help="train each entry at --seed and the N - 1 seeds after it, on one split (default 1)")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR", help="more run folders, trained elsewhere")
    p.add_argument("--out", required=True, help="the report folder (its runs/ holds the models' run folders)")
    add_training_arguments(p, exclude=["model", *model_option_names()])  # a model's own: in its --models entry
    scoring = p.add_argument_group("scoring")
    scoring.add_argument("--features", default="auto", metavar="auto|inception|classifier|PATH",
                         help="fid.py's feature space; auto: InceptionV3 when its ImageNet weights are here, else "
                              "classifier: a network trained on the training split, kept in <out>/features/; "
                              "PATH: such a network made before (.keras), to score in its feature space")
    scoring.add_argument("--fid-per-class", type=int, default=1000, help="generated images per class for fid.py")
    scoring.add_argument("--real-per-class", type=int, help="fid.py: only the first N real images per class (smoke runs)")
    scoring.add_argument("--seeds", type=int, default=3, help="classify.py: train with seeds 0..N-1")
    scoring.add_argument("--classifier", choices=["cnn", "cnn_svm"], default="cnn", help="classify.py's classifier")
    scoring.add_argument("--classifier-epochs", type=int, default=30, help="classify.py's --epochs")
    p.add_argument("--json", action="store_true", help="print report.json's object")
    return p.parse_args(argv)


def parse_merge_args(argv):
    from console import ArgumentParser
    p = ArgumentParser(prog="compare.py merge",
                       description="Merge compare.py reports made in several calls or on several machines into one "
                                   "report with the same tables and pictures, retraining nothing.")
    p.add_argument("reports", nargs="+", metavar="REPORT_DIR", help="report folders (report.json, samples.npz, pictures)")
    p.add_argument("--out", required=True, help="the merged report's folder")
    p.add_argument("--json", action="store_true", help="print report.json's object")
    return p.parse_args(argv)


def summary(report, out):
    best = report["best_on_minority"]["by"]
    return (f"{out / 'report.md'}: best on the minority classes by FID {best['fid']}, by KID {best['kid']}, "
            f"by classifier recall {best['recall']}")


def main_merge(argv):
    args = parse_merge_args(argv)
    out = Path(args.out)
    try:
        if any(out.resolve() == Path(folder).resolve() for folder in args.reports):
            raise UsageError(f"--out {out} is one of the reports: merge into a new folder")
        report = merge([Path(folder) for folder in args.reports], out)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else summary(report, out))
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return main_merge(argv[1:])
    args = parse_args(argv)
    out = Path(args.out)

    def say(message):
        print(f"[compare] {message}", file=sys.stderr, flush=True)
    try:
        check_dataset_arguments(args, MODEL_IMAGE_SIZES)
        for flag, value, low in (("--seeds", args.seeds, 1), ("--classifier-epochs", args.classifier_epochs, 1),
                                 ("--fid-per-class", args.fid_per_class, 2), ("--train-seeds", args.train_seeds, 1)):
            if value < low:
                raise UsageError(f"{flag} must be at least {low}, got {value}")
        if args.features not in ("auto", "inception", "classifier") and not os.path.isfile(args.features):
            raise UsageError(f"--features {args.features}: not auto, inception, classifier or a .keras file")
        planned = plan(args)
        extra = [Run.open(run_dir, require=(GENERATOR_FILE,)) for run_dir in args.runs]
    except (UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    statuses = train_all(planned, say)
    runs = [Run.open(run_dir) for spec, _, _, _, run_dir in planned if statuses[spec]["status"] != "failed"] + extra
    try:
        features = feature_space(args, runs, out, say)
        fid_result = score_fid(args, runs, features, out, say)
        classify_result = score_classifiers(args, runs, out, say)
    except (UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from datasets import load_dataset
    c = runs[0].config
    data = load_dataset(c["dataset"], c.get("data_dir"), c["image_size"], c.get("imbalanced", False), c["split_seed"],
                        c["resize"], c.get("window"))
    models = [dict(spec=spec, model=model, seed=seed, run=run_dir.name, **statuses[spec],
                   **({"seconds": Run.open(run_dir).training_seconds()} if statuses[spec]["status"] != "failed" else {}))
              for spec, model, seed, _, run_dir in planned]
    models += [dict(spec=run.name, model=run.name, seed=run.config.get("seed"), run=run.name, status="given",
                    seconds=run.training_seconds()) for run in extra]
    key = data_key(c)
    report = dict(key, train_counts=c["train_counts"], models=models,
                  features="inception" if features == "inception" else "classifier",
                  feature_file=None if features == "inception" else os.path.relpath(features, out),
                  fid=fid_result, classify=classify_result, seconds=round(time.time() - started, 1))
    report = portable(report, out, runs)
    write_report(report, samples(runs, data), out)
    say(f"report: {out / 'report.md'} ({report['seconds'] / 60:.0f} min)")
    print(json.dumps(report) if args.json else summary(report, out))
    return 0


if __name__ == "__main__":
    from console import tensorflow_quiet
    with tensorflow_quiet():
        sys.exit(main())
