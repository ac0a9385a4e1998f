"""The tables and pictures of fid.py's and classify.py's results, from their JSON alone (numpy and
matplotlib, no TensorFlow), so that compare.py can write and merge reports without a run folder.

    fid_table(result)            the paper's Table 4: a row per run and reference, a column per class
    classify_table(result)       paper 004's Table 1: a row per training set, then per-class recall
    paired_against_best(rows, train_counts)  generated rows against the best row without them
    fid_picture(result, counts, path), plot_per_class_recall(result, path), class_picture(...)
"""
from __future__ import annotations

import textwrap

import numpy as np

from metrics import NEIGHBOURS, describe_check
from runs import atomic_write

GENERATED = "generated"
RECONSTRUCTED = "Rec. samples (Autoencoder)"
REAL_TRAIN = "Real samples (Train)"
"""fid.py's row names (the paper's Table 4): a run's generated images, its autoencoder's
reconstructions of the training images, the training images themselves."""
REFERENCE = "balanced (real)"
"""classify.py's row that fills every class up with real images the imbalance rule left out."""

MEASURES = {  # key: (table title, format, what it says)
    "fid": ("FID", ".2f", "Frechet distance to the test images of the class (lower is better)"),
    "kid": ("KID", ".4f", "kernel inception distance to them, unbiased (lower is better)"),
    "precision": ("Precision", ".2f", f"share of the images inside the test images' {NEIGHBOURS}-NN manifold "
                                      "(realism, higher is better)"),
    "recall": ("Recall", ".2f", f"share of the test images inside the images' {NEIGHBOURS}-NN manifold "
                                "(variety, higher is better)"),
    "density": ("Density", ".2f", f"test-image {NEIGHBOURS}-NN balls holding an image, on average, over "
                                  f"{NEIGHBOURS} (about 1 when distributed like the test images)"),
    "coverage": ("Coverage", ".2f", f"share of the test images whose {NEIGHBOURS}-NN ball holds an image "
                                    "(higher is better)"),
    "memorised": ("Memorised", ".2f", "share of the images nearer to a training image of their class than a "
                                      "typical training image is to its nearest neighbour (copies 1; new "
                                      "images like the real ones about 0.5)"),
    "copy_ratio": ("NN ratio", ".2f", "median of that distance over the typical one (copies 0; new images "
                                      "like the real ones about 1)"),
}
METRICS = [("accuracy", "Accuracy"), ("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"),
           ("top_k", "Top-{k}"), ("acsa", "ACSA"), ("g_mean", "G-mean")]


def _value(value, fmt):
    return "n/a" if value is None else format(value, fmt)


def fid_table(result) -> str:
    """fid.py's table, the paper's Table 4 layout: a row per run (and baseline), a column per class with its count."""
    header = [f"{c['name']} ({c['reference_count']} samples)" for c in result["classes"]]
    mark = "" if result["comparable"] else " [not comparable]"
    names = [row["name"] + mark for row in result["rows"]]
    protocol = "imbalanced" if result["imbalanced"] else "balanced"
    lines = [
        f"Dataset: {result['dataset']} ({protocol}, {result['image_size']}x{result['image_size']}, "
        f"split seed {result['split_seed']})",
        f"Features: {result['feature_space']}",
        f"Generated: {result['generated_per_class']} images per class per run (noise seed "
        f"{result['noise_seed']}); reference: the test images of each class (count in the header)",
    ]
    if result["note"]:
        lines.append(f"NOTE: {result['note']}")
    if result.get("judge"):
        lines.append(f"Feature classifier's check: {describe_check(result['judge'])}")
    too_few = [set(c.get("too_few", ())) for c in result["classes"]]
    for key, (metric, fmt, _) in MEASURES.items():
        table = [[metric, *header]] + [[n, *(_value(v, fmt) + ("*" if key in short else "")
                                             for v, short in zip(row[key], too_few))]
                                       for n, row in zip(names, result["rows"])]
        widths = [max(len(r[i]) for r in table) for i in range(len(header) + 1)]
        lines.append("")
        for r in table:
            lines.append("  ".join([r[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(r[1:], widths[1:])]))
    lines.append("")
    if any(too_few):
        need = result["minimum_images"]
        lines.append(f"*: computed from fewer test images of the class than the measure needs, unreliable: FID needs "
                     f"{need['fid']} (the feature dimensions + 1, for a covariance of full rank), precision, recall, "
                     f"density and coverage {need['precision']} (10 k, so that a {NEIGHBOURS}-NN ball spans at most a "
                     f"tenth of the images), KID {need['kid']} (metrics.KID_MIN_IMAGES); memorisation is measured "
                     "against the training images")
    lines += [f"{title}: {meaning}" for title, _, meaning in MEASURES.values()]
    lines.append("The training images of each class, for Memorised and NN ratio: "
                 + ", ".join(f"{c['name']}: {n}" for c, n in zip(result["classes"], result["train_counts"])))
    lines += [f"Generator of {row['name']}: {row['generator']}" for row in result["rows"] if row.get("generator")]
    lines += [f"Nearest training images of the smallest classes, {name}: {path}" for name, path in result["pictures"].items()]
    for row in result["rows"]:
        if row["type"] == "reconstructed":
            lines.append(f"{row['name']}: the run's autoencoder reconstructions of the training images of each class")
        elif row["type"] == "real_train":
            counts = ", ".join(f"{c['name']}: {n}" for c, n in zip(result["classes"], row["counts"]))
            lines.append(f"{row['name']}: the training images of each class ({counts})")
    return "\n".join(lines)


def _cell(mean, std, fmt=".3f"):
    if mean is None:
        return "n/a"
    return f"{mean:{fmt}}" if std is None else f"{mean:{fmt}} ± {std:{fmt}}"


def _format_grid(table):
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join([r[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(r[1:], widths[1:])]) for r in table]


ACSA_G_MEAN = ("ACSA: the mean of the per-class recalls; G-mean: their geometric mean, 0 when any class is "
               "never recognised.")
ONE_CLASS_MARK = "*"


def one_class_seeds(row) -> dict:
    """{class index: [seeds]} of the seeds whose classifier predicted that one class for every test
    image (from predicted_counts; empty for scores saved before they were kept)."""
    found = {}
    for scored in row["per_seed"]:
        counts = scored.get("predicted_counts")
        if counts and sum(1 for n in counts if n) == 1:
            found.setdefault(next(c for c, n in enumerate(counts) if n), []).append(scored["seed"])
    return found


def classify_table(result) -> str:
    """classify.py's table, paper 004's Table 1 layout (a row per training set) with what ACSA and G-mean are and a
    footnote on rows whose classifier predicts one class only, then the per-class recall."""
    protocol = "imbalanced" if result["imbalanced"] else "balanced"
    size = result["image_size"]
    seeds = result["seeds"]
    train, test = result["train_counts"], result["test_counts"]
    spread = "mean ± sample standard deviation" if len(seeds) > 1 else "one seed"
    lines = [
        f"Dataset: {result['dataset']} ({protocol} protocol, {size}x{size}, split seed {result['split_seed']})",
        f"Classifier: {result['classifier_description']}",
        f"Training split: {sum(train)} images ({', '.join(map(str, train))}); "
        f"{sum(result['validation_counts'])} real ones held out for early stopping",
        f"Test set ({result['test_set']}): {result['test_set_description']}, {sum(test)} images "
        f"({', '.join(map(str, test))})",
        f"Seeds: {', '.join(map(str, seeds))} ({spread})",
        "",
    ]
    names = [(key, label.format(k=result["top_k"])) for key, label in METRICS
             if key != "top_k" or result["top_k"]]
    table = [["Training set", "Images", *(label for _, label in names)]]
    notes = []
    for row in result["rows"]:
        one_class = one_class_seeds(row)
        table.append([row["name"] + (f" {ONE_CLASS_MARK}" if one_class else ""), str(row["train_images"]),
                      *(_cell(row["mean"][key], row["std"][key]) for key, _ in names)])
        for c, found in one_class.items():
            which = f"seed {found[0]}" if len(found) == 1 else f"seeds {', '.join(map(str, found))}"
            notes.append(f"{ONE_CLASS_MARK} {row['name']}: predicts only class {result['class_names'][c]} for every "
                         f"test image" + (f" ({which} of {len(seeds)})" if len(seeds) > 1 else ""))
    lines += _format_grid(table)
    lines += [ACSA_G_MEAN, *notes]
    lines += ["", "Per-class recall (mean over the seeds); test images per class in brackets"]
    table = [["Training set", *(f"{n} ({t})" for n, t in zip(result["class_names"], test))]]
    for row in result["rows"]:
        table.append([row["name"], *(_cell(v, None, ".2f") for v in row["mean"]["per_class_recall"])])
    lines += _format_grid(table)
    lines += [f"Generator of {row['name']}: {row['generator']}" for row in result["rows"] if row.get("generator")]
    for row in result["rows"]:
        chosen = [(scored["seed"], scored["chosen"]) for scored in row.get("per_seed", ()) if scored.get("chosen")]
        if chosen:
            lines += ["", f"--synthetic-ratio auto for {row['name']}, chosen on the validation split by its mean "
                          "minority recall:"]
            lines += [f"  seed {seed}: {ratio_label(pick['ratio'])} (" + ", ".join(
                f"{ratio_label(c['ratio'])} {c['validation_minority_recall']:.3f}" for c in pick["candidates"]) + ")"
                for seed, pick in chosen]
        if row.get("selection"):
            rule = " and ".join(result.get("select") or [])
            threshold = result.get("select_threshold")
            lines += ["", f"Generated images of {row['name']} kept by --select {rule}"
                      + (f" (threshold {threshold})" if "confidence" in rule else "")
                      + ", summed over the seeds: class: real, kept, dropped, acceptance"]
            for c, name in enumerate(result["class_names"]):
                per_seed = [s["classes"][c] for s in row["selection"]]
                drawn, kept = sum(s["drawn"] for s in per_seed), sum(s["kept"] for s in per_seed)
                if drawn:
                    lines.append(f"  {name}: {per_seed[0]['real']}, {kept}, {drawn - kept}, {kept / drawn:.2f}")
    paired = paired_lines(paired_against_best(result["rows"], train))
    lines += [""] + paired if paired else []
    if result["reference"]:
        ref = result["reference"]
        lines += ["", f"The '{REFERENCE}' row fills every class up with real images that the imbalance rule left out "
                      f"({ref['pool_images']} available); the balanced protocol's own training split holds "
                      f"{ref['test_images_in_balanced_training_split']} of the test images, so it is not used."]
    return "\n".join(lines)


def ratio_label(value):
    """A --synthetic-ratio value as the tables write it (None: fill)."""
    return "fill" if value is None else f"{value:g}"


def bar_colour(i):
    """The colour of the i-th row of a bar chart: matplotlib's tab20, its ten hues first, then their
    light shades, so that up to 20 rows never share one."""
    from matplotlib import colormaps
    return colormaps["tab20"]((2 * i) % 20 + (2 * i) // 20 % 2)


def plot_per_class_recall(result, path):
    """per_class_recall.png: classes on the x axis, one bar per training set (error bar: std)."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is
    names = result["class_names"]
    rows = result["rows"]
    seeds = len(result["seeds"])
    width = 0.8 / len(rows)
    fig = Figure(figsize=(max(6.0, 0.6 * len(names) * (1 + 0.3 * min(len(rows), 4))), 4))
    ax = fig.subplots()
    positions = np.arange(len(names))
    for i, row in enumerate(rows):
        mean = [np.nan if v is None else v for v in row["mean"]["per_class_recall"]]
        std = [0.0 if v is None else v for v in row["std"]["per_class_recall"]]
        ax.bar(positions + (i - (len(rows) - 1) / 2) * width, mean, width, yerr=std if seeds > 1 else None,
               capsize=2, label=row["name"], color=bar_colour(i))
    ax.set_xticks(positions, [f"{n}\n({t})" for n, t in zip(names, result["test_counts"])])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test recall")
    ax.set_xlabel("class (test images)")
    protocol = "imbalanced" if result["imbalanced"] else "balanced"
    spread = f"mean and std over {seeds} seeds" if seeds > 1 else "one seed"
    ax.set_title(f"{result['dataset']} ({protocol}), {result['classifier']}: per-class test recall ({spread})")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))


def minority_classes(train_counts):
    """Classes with fewer training images than half the largest class's."""
    return [c for c, n in enumerate(train_counts) if n < 0.5 * max(train_counts)]


def minority_recall(metrics_, train_counts):
    """Mean recall over the classes with fewer training images than half the largest's (those with
    images to score), or over all classes when none is smaller."""
    classes = [c for c in minority_classes(train_counts) if metrics_["per_class_recall"][c] is not None]
    values = [metrics_["per_class_recall"][c] for c in classes] or [v for v in metrics_["per_class_recall"]
                                                                   if v is not None]
    return float(np.mean(values))


def paired_against_best(rows, train_counts):
    """Each generated row against the best row without generated images (the highest mean minority
    recall; the reference row, which uses real images a researcher does not have, is not a
    candidate): the difference in mean minority recall paired over the seeds both trained, with a
    95% Student t interval (none for one seed). None when there is nothing to compare.

    {"best": name, "rows": [{"name", "seeds", "difference", "low", "high"}]}"""
    from scipy import stats
    by_seed = {row["name"]: {s["seed"]: minority_recall(s, train_counts) for s in row["per_seed"]} for row in rows}
    classic = [row["name"] for row in rows if row.get("kind") not in ("generator", "reference")]
    generated = [row["name"] for row in rows if row.get("kind") == "generator"]
    if not classic or not generated:
        return None
    best = max(classic, key=lambda name: np.mean(list(by_seed[name].values())))
    found = []
    for name in generated:
        seeds = sorted(set(by_seed[name]) & set(by_seed[best]))
        if not seeds:
            continue
        d = np.array([by_seed[name][s] - by_seed[best][s] for s in seeds])
        low = high = None
        if len(d) > 1:
            half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
            low, high = float(d.mean()) - half, float(d.mean()) + half
        found.append(dict(name=name, seeds=seeds, difference=float(d.mean()), low=low, high=high))
    return dict(best=best, rows=found)


def paired_lines(paired) -> list[str]:
    """paired_against_best's result as lines of text."""
    if not paired or not paired["rows"]:
        return []
    lines = [f"Mean minority recall of each generated row minus that of {paired['best']} (the best row without "
             "generated images), paired over seeds, 95% t interval:"]
    for p in paired["rows"]:
        interval = (f"[{p['low']:+.3f}, {p['high']:+.3f}]" if p["low"] is not None else "no interval (one seed)")
        lines.append(f"  {p['name']}: {p['difference']:+.3f} {interval}, seeds {', '.join(map(str, p['seeds']))}")
    return lines


def fid_picture(fid_result, train_counts, path):
    """fid.png: per-class FID, a bar per row of fid.py's table, minority classes shaded; a log scale
    when the FIDs span more than two decades, so that a collapsed model does not flatten the others."""
    from matplotlib.figure import Figure
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


def class_picture(rows, title, path, images_per_row=8):
    """One class's picture: a labelled row of images (uint8 (n, H, W, C)) per (name, images)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(1.0 * images_per_row + 2.6, 1.05 * len(rows) + 0.7), layout="constrained")
    axes = fig.subplots(len(rows), images_per_row, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for col in range(images_per_row):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(images):
                image = images[col]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize="small")
    fig.suptitle(title, fontweight="bold")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=70))
