"""Which model for my data? The papers' comparison as one command: train several models on one
dataset, score them all class by class, and write a report.

    python compare.py --dataset digits --imbalanced --out reports/digits-imbalanced
    python compare.py --dataset fashion_mnist --imbalanced --image-size 32 --out reports/fashion-mnist-b
    python compare.py --dataset digits --imbalanced --models bagan_gp cgan --epochs 3 --ae-epochs 2 \\
        --seeds 1 --classifier-epochs 2 --fid-per-class 50 --out reports/smoke       # a few minutes

Each --models entry is a --model of bagan_train.py, with its own settings if it needs them:
NAME[:setting=value,...], e.g. bagan_gp:variant=v1 or bagan_gp:latent=paper. The other training
flags apply to every model. Each entry trains into <out>/runs/<entry>: a finished run is reused and
an unfinished one resumed, so a killed comparison continues where it stopped, and nothing trains
twice; --runs adds run folders trained elsewhere on the same data. Then every run is scored:

1. fid.py's table (the paper's Table 4, with the autoencoder and real-training-image baselines):
   per class FID, KID, precision, recall, density, coverage and memorisation, in InceptionV3's
   features when its ImageNet weights are on this machine, else in a classifier of the real
   training split (--features; the report says which);
2. classify.py's protocol: a classifier trained on the training split as it is, with affine
   copies, and rebalanced by each run's generator, scored per class over --seeds on a test set no
   model trained on. Each classifier's score is kept under <out>/classify/scores/, so a call
   resumed, or repeated with a model added, trains only the classifiers it has not trained yet.

<out>/report.md and report.json hold the tables, each model's training time and which model is
best on the minority classes; pictures: classes/<n>-<class>.png (minority classes first: a row of
real training images, then a row of each model's images), fid.png (per-class FID of every row)
and recall.png (per-class test recall of every training set).
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from datasets import MODEL_IMAGE_SIZES, DatasetError, add_dataset_arguments, check_dataset_arguments  # noqa: E402
from runs import CONFIG_FILE, GENERATOR_FILE, Run, UsageError, atomic_write, generated_batches, save_json  # noqa: E402

DEFAULT_MODELS = ("bagan_gp:latent=class,g_learning_rate=2e-5", "bagan_gp:latent=paper", "bagan_gp:variant=v1",
                  "bagan_gp:variant=v2", "bagan", "cdragan", "wgan_gp", "cgan", "acgan")
"""BAGAN-GP v3 in both generator starts (the class form with the generator learning rate it was measured
with, benchmarks/RESULTS.md), v1, v2, and every baseline of the papers."""
PICTURE_IMAGES = 8


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
        if not equals or key not in fields or key in ("model", "dataset", "data_dir", "imbalanced", "image_size"):
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


def plan(args):
    """Every model's (entry, TrainConfig, run folder), checked before any work: a new run's
    settings, or an existing run folder's with the changes --resume allows."""
    import dataclasses
    from bagan_train import TrainConfig
    common = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    common["imbalanced"] = bool(args.imbalanced)
    planned = []
    for spec in args.models:
        model, settings = parse_spec(spec)
        run_dir = Path(args.out) / "runs" / label(spec)
        if any(run_dir == other for _, _, other in planned):
            raise UsageError(f"--models {spec} is given twice")
        if (run_dir / CONFIG_FILE).is_file():
            config = TrainConfig.resume(run_dir, **dict(common, model=model, **settings))
        else:
            config = TrainConfig.create(**dict(common, model=model, **settings))
        planned.append((spec, config, run_dir))
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
    import keras
    from bagan_train import train
    from callbacks import NonFiniteLoss
    import contextlib
    statuses, trained_seconds, started = {}, [], time.time()
    todo = []
    for spec, config, run_dir in planned:
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
# Scoring


def feature_space(choice):
    """'inception' when ImageNet's InceptionV3 weights are on this machine (or asked for), else 'classifier'."""
    import fid
    if choice != "auto":
        return choice
    try:
        fid.inception_weights_path()
        return "inception"
    except UsageError:
        return "classifier"


def score_fid(args, runs, features, out):
    """fid.py's table of the runs, as fid.score returns it, with its warnings."""
    import fid
    argv = [str(run.path) for run in runs] + ["--features", features, "--per-class", str(args.fid_per_class),
                                              "--out", str(out / "pictures")]
    if any(run.autoencoder for run in runs):
        argv.append("--baselines")
    if args.real_per_class:
        argv += ["--real-per-class", str(args.real_per_class)]
    fargs = fid.parse_args(argv)
    fargs.keep_untrusted = True  # the report says so at its top instead of having no report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fid.score(fargs)
    result["warnings"] = sorted({str(w.message) for w in caught if issubclass(w.category, fid.SingularCovarianceWarning)})[:1]
    return result


def classify_arguments(args, runs, out):
    """classify.py's flags for the protocol of these runs: none, affine, and each run's generator."""
    import classify
    argv = ["--dataset", args.dataset, "--image-size", str(runs[0].config["image_size"]),
            "--split-seed", str(runs[0].config["seed"]), "--seeds", str(args.seeds),
            "--epochs", str(args.classifier_epochs), "--classifier", args.classifier, "--out", str(out / "classify"),
            "--augment", "none", "--augment", "affine"]
    for run in runs:
        argv += ["--augment", str(run.path)]
    if args.imbalanced:
        argv.append("--imbalanced")
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return classify.parse_args(argv)


def score_classifiers(args, runs, out):
    """classify.py's protocol: none, affine, and each run's generator."""
    import classify
    cargs = classify_arguments(args, runs, out)
    data, rows, pool, key, top_k = classify.prepare(cargs)
    return classify.run_protocol(cargs, data, rows, pool, key, top_k, scores_dir=Path(cargs.out) / classify.SCORES_DIR)


# ---------------------------------------------------------------------------------------------
# The report


def minority_classes(train_counts):
    """Classes with fewer training images than half the largest class's."""
    return [c for c, n in enumerate(train_counts) if n < 0.5 * max(train_counts)]


def trusted_features(fid_result):
    """False when fid.py's feature classifier failed its check on held-out images (its numbers mean nothing)."""
    return not fid_result.get("judge") or fid_result["judge"]["trusted"]


def best_on_minority(fid_result, classify_result, runs, train_counts):
    """Which run is best on the minority classes (all classes when none is) by mean FID, mean KID
    and mean classifier recall."""
    names = {run.name for run in runs}
    classes = minority_classes(train_counts) or list(range(len(train_counts)))
    rows = [row for row in fid_result["rows"] if row["name"] in names] if trusted_features(fid_result) else []
    best = {}
    for key, better in (("fid", min), ("kid", min)):
        scored = {row["name"]: np.mean([row[key][c] for c in classes if row[key][c] is not None]) for row in rows}
        best[key] = better(scored, key=scored.get) if scored else None
    recall = {row["name"]: float(np.mean([row["mean"]["per_class_recall"][c] for c in classes
                                          if row["mean"]["per_class_recall"][c] is not None]))
              for row in classify_result["rows"]}
    generated = {name: value for name, value in recall.items() if name in names}
    best["recall"] = max(generated, key=generated.get)
    best["recall_beats_affine"] = generated[best["recall"]] > recall["affine"]
    return dict(classes=classes, by=best, mean_recall=recall)


def class_pictures(runs, data, out):
    """classes/<n>-<class>.png for every class, minority classes first: real training images, then
    each run's generated images (seed 0), labelled."""
    from matplotlib.figure import Figure
    from datasets import to_uint8
    folder = out / "classes"
    folder.mkdir(parents=True, exist_ok=True)
    counts = data.train_counts()
    order = sorted(range(data.num_classes), key=lambda c: (counts[c] >= 0.5 * max(counts), counts[c]))
    generators = [(run.name, run.load_generator()) for run in runs]
    paths = []
    for rank, c in enumerate(order, start=1):
        rows = [("real (training)", data.x_train[data.y_train == c][:PICTURE_IMAGES])]
        rows += [(name, to_uint8(next(generated_batches(generator, c, PICTURE_IMAGES, seed=0))))
                 for name, generator in generators]
        fig = Figure(figsize=(1.0 * PICTURE_IMAGES + 2.6, 1.05 * len(rows) + 0.7), layout="constrained")
        axes = fig.subplots(len(rows), PICTURE_IMAGES, squeeze=False)
        for r, (name, images) in enumerate(rows):
            for col in range(PICTURE_IMAGES):
                ax = axes[r, col]
                ax.set_xticks([])
                ax.set_yticks([])
                if col < len(images):
                    image = images[col]
                    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
                else:
                    ax.axis("off")
            axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize="small")
        minority = " (minority)" if counts[c] < 0.5 * max(counts) else ""
        fig.suptitle(f"class {data.class_names[c]}{minority}: {counts[c]} training images", fontweight="bold")
        path = folder / f"{rank:02d}-{str(data.class_names[c]).replace(os.sep, '-').replace(' ', '_')}.png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=70))
        paths.append(path)
    return paths


def fid_picture(fid_result, train_counts, path):
    """fid.png: per-class FID, a bar per row of fid.py's table, minority classes shaded; a log scale
    when the FIDs span more than two decades, so that a collapsed model does not flatten the others."""
    from matplotlib.figure import Figure

    from classify import bar_colour
    names = [c["name"] for c in fid_result["classes"]]
    rows = fid_result["rows"]
    minority = minority_classes(train_counts)
    fig = Figure(figsize=(min(16.0, max(8.0, 0.12 * len(names) * len(rows) + 3)), 5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(rows)
    for c in minority:
        ax.axvspan(c - 0.45, c + 0.45, color="#fde2e2", zorder=0)
    for i, row in enumerate(rows):
        ax.bar(np.arange(len(names)) - 0.4 + width * (i + 0.5), [np.nan if v is None else v for v in row["fid"]],
               width, label=row["name"], zorder=2, color=bar_colour(i))
    ax.set_xticks(range(len(names)), [f"{n}{'*' if c in minority else ''}\n({t})"
                                      for c, (n, t) in enumerate(zip(names, train_counts))])
    values = [v for row in rows for v in row["fid"] if v is not None and v > 0]
    if values and max(values) > 100 * min(values):
        ax.set_yscale("log")
    ax.set_ylabel("FID (lower is better)" + (", log scale" if ax.get_yscale() == "log" else ""))
    ax.set_xlabel("class (training images); * minority")
    ax.set_title(textwrap.fill(f"per-class FID in {fid_result['feature_space']}", 80), fontsize="medium")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def markdown(report):
    """report.md: the settings, the training, fid.py's and classify.py's tables, the pictures."""
    import classify
    import fid
    f, k = report["fid"], report["classify"]
    lines = [f"# {report['dataset']}{' (imbalanced)' if report['imbalanced'] else ''}: which model?", "",
             f"Image size {report['image_size']}x{report['image_size']}, split seed {report['split_seed']}; "
             f"training images per class: {', '.join(map(str, report['train_counts']))}.", ""]
    if not trusted_features(f):
        lines += [f"> **Warning: every FID, KID, precision, recall, density, coverage and memorisation number of "
                  f"this report is meaningless.** The feature classifier cannot tell the classes apart: "
                  f"{f['judge']['reason']}. No model is named best by FID or KID.", ""]
    elif f.get("judge"):
        lines += [f"Feature classifier's check: {fid.describe_check(f['judge'])}.", ""]
    lines += [
             "## Training", "", "| model | run folder | status | training time (s) | generator scored |",
             "| --- | --- | --- | --- | --- |"]
    generators = {row["name"]: row.get("generator", "") for row in f["rows"]}
    for m in report["models"]:
        lines.append(f"| `{m['spec']}` | {m['run']} | {m['status']} | {m.get('seconds', '')} | "
                     f"{generators.get(m['run'], '')} |")
    best = report["best_on_minority"]
    names = [c["name"] for c in f["classes"]]
    lines += ["", "## Best on the minority classes", "",
              f"Over classes {', '.join(names[c] for c in best['classes'])}: lowest mean FID "
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
    for key, (title, fmt, meaning) in fid.MEASURES.items():
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
              classify.format_table(k), "```", "", "![per-class recall](recall.png)", "",
              "## The images, class by class (minority classes first)", ""]
    lines += [f"![{p.stem}](classes/{p.name})" for p in map(Path, report["pictures"]["classes"])]
    lines += ["", "Nearest training images of the smallest classes (fid.py): "
              + ", ".join(f"[{name}](pictures/{Path(path).name})" for name, path in f["pictures"].items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    from bagan_train import add_training_arguments, model_option_names
    from console import ArgumentParser
    p = ArgumentParser(description="Train several models on one dataset, score them all per class "
                                   "(fid.py, classify.py) and write a report.")
    add_dataset_arguments(p, dict(dataset="digits", imbalanced="no", image_size="64; digits 32"))
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME[:setting=value,...]",
                   help=f"the models (default: {' '.join(DEFAULT_MODELS)}); a setting of one entry, e.g. "
                        "bagan_gp:ema_decay=0.999,diffaugment=translation+cutout")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR", help="more run folders, trained elsewhere")
    p.add_argument("--out", required=True, help="the report folder (its runs/ holds the models' run folders)")
    add_training_arguments(p, exclude=["model", *model_option_names()])  # a model's own: in its --models entry
    scoring = p.add_argument_group("scoring")
    scoring.add_argument("--features", choices=["auto", "inception", "classifier"], default="auto",
                         help="fid.py's feature space; auto: InceptionV3 when its ImageNet weights are here")
    scoring.add_argument("--fid-per-class", type=int, default=1000, help="generated images per class for fid.py")
    scoring.add_argument("--real-per-class", type=int, help="fid.py: only the first N real images per class (smoke runs)")
    scoring.add_argument("--seeds", type=int, default=3, help="classify.py: train with seeds 0..N-1")
    scoring.add_argument("--classifier", choices=["cnn", "cnn_svm"], default="cnn", help="classify.py's classifier")
    scoring.add_argument("--classifier-epochs", type=int, default=30, help="classify.py's --epochs")
    p.add_argument("--json", action="store_true", help="print report.json's object")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)

    def say(message):
        print(f"[compare] {message}", file=sys.stderr, flush=True)
    try:
        check_dataset_arguments(args, MODEL_IMAGE_SIZES)
        for flag, value, low in (("--seeds", args.seeds, 1), ("--classifier-epochs", args.classifier_epochs, 1),
                                 ("--fid-per-class", args.fid_per_class, 2)):
            if value < low:
                raise UsageError(f"{flag} must be at least {low}, got {value}")
        planned = plan(args)
        extra = [Run.open(run_dir, require=(GENERATOR_FILE,)) for run_dir in args.runs]
        features = feature_space(args.features)
    except (UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    statuses = train_all(planned, say)
    runs = [Run.open(run_dir) for spec, _, run_dir in planned if statuses[spec]["status"] != "failed"] + extra
    try:
        say(f"fid.py on {len(runs)} runs ({features} features)")
        fid_result = score_fid(args, runs, features, out)
        say(f"classify.py: none, affine and {len(runs)} generators x {args.seeds} seeds")
        classify_result = score_classifiers(args, runs, out)
    except (UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import classify
    from datasets import load_dataset
    c = runs[0].config
    data = load_dataset(c["dataset"], c.get("data_dir"), c["image_size"], c.get("imbalanced", False), c["seed"],
                        c["resize"], c.get("window"))
    fid_picture(fid_result, c["train_counts"], out / "fid.png")
    classify.plot_per_class_recall(classify_result, out / "recall.png")
    class_paths = class_pictures(runs, data, out)
    models = [dict(spec=spec, run=run_dir.name, run_dir=str(run_dir), **statuses[spec],
                   **({"seconds": Run.open(run_dir).training_seconds()} if statuses[spec]["status"] != "failed" else {}))
              for spec, _, run_dir in planned]
    models += [dict(spec=run.name, run=run.name, run_dir=str(run.path), status="given", seconds=run.training_seconds())
               for run in extra]
    report = dict(dataset=c["dataset"], imbalanced=bool(c.get("imbalanced")), image_size=c["image_size"],
                  split_seed=c["seed"], train_counts=c["train_counts"], models=models, features=features,
                  fid=fid_result, classify=classify_result,
                  best_on_minority=best_on_minority(fid_result, classify_result, runs, c["train_counts"]),
                  pictures=dict(fid="fid.png", recall="recall.png", classes=[str(p.relative_to(out)) for p in class_paths]),
                  seconds=round(time.time() - started, 1))
    save_json(out / "report.json", report)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(markdown(report)))
    say(f"report: {out / 'report.md'} ({report['seconds'] / 60:.0f} min)")
    print(json.dumps(report) if args.json else f"{out / 'report.md'}: best on the minority classes by FID "
          f"{report['best_on_minority']['by']['fid']}, by KID {report['best_on_minority']['by']['kid']}, "
          f"by classifier recall {report['best_on_minority']['by']['recall']}")
    return 0


if __name__ == "__main__":
    from console import tensorflow_quiet
    with tensorflow_quiet():
        sys.exit(main())
