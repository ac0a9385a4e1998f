"""Per-class FID, KID, precision, recall, density, coverage and memorisation of runs (the paper's Table 4).

    python fid.py train_results/<run> [more runs] [--no-baselines] [--per-class 1000] [--json]
    python fid.py train_results/<run> --features classifier      # domains far from ImageNet
    python fid.py train_results/<run> --weights random           # smoke runs: not comparable

For every class c, images G(z, c) of each run's generator are compared with the real test images
of class c in a feature space:

* ``inception`` (default): the 2048-d average-pooled output of Keras' InceptionV3 with ImageNet
  weights. Images in [-1, 1] (InceptionV3's own input range) are tiled to three channels and
  resized to 299x299 bilinearly inside the graph. Keras' weights are a port of the original ones,
  so the values are comparable between runs scored here, not to FIDs published elsewhere.
* ``classifier``: the penultimate layer of a small CNN trained on the dataset's real training
  split, saved as ``fid_classifier.keras`` in the (first) run folder.

The Frechet distance between the Gaussians N(mu1, S1) and N(mu2, S2) fitted to two feature sets
(Heusel et al. 2017) is

    FID = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2),

computed in float64 with tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), the symmetric
square root taken from an eigen-decomposition. The kernel inception distance (Binkowski et al.
2018) is the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3.

In the same feature space, per class: precision and recall (Kynkaanniemi et al. 2019) and density
and coverage (Naeem et al. 2020) on k = 5 nearest-neighbour balls, against the test images; and
memorisation against the class's training images: each generated image's distance to its nearest
training image over a typical training image's distance to its nearest other one (the median,
leave one out), reported as the share below 1 ("Memorised") and the median ("NN ratio"). The
"Real samples (Train)" row is the training images themselves, so it must come out fully memorised
(1.00, NN ratio 0.00), which checks the measure on every table. nearest_neighbours.png shows, for
the three smallest classes, the generated images nearest to the training set beside their nearest
training images.

Real-image features are cached per dataset, split, class, feature extractor, image size and
protocol (``~/.cache/bagan-gp/fid`` or ``--cache-dir``), so scoring many checkpoints against the
same test set extracts the real features once.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from datasets import add_dataset_arguments, check_dataset_arguments  # noqa: E402
from evaluators import (DEFAULT_BATCH_SIZE, data_key, INCEPTION_WEIGHTS_FILE, RANDOM_INCEPTION_SIZE,  # noqa: E402
                        FeatureExtractor, cached_real_features, classifier_extractor, default_cache_dir,
                        extract_features, inception_extractor, inception_weights_path, reconstructed_batches)
from metrics import (NEIGHBOURS, FeatureSet, SingularCovarianceWarning, copy_ratios,  # noqa: E402
                     density_coverage, memorisation, minimum_images, precision_recall)
from runs import GENERATORS, Run, UsageError, atomic_write, generated_batches, load_model  # noqa: E402
from tables import GENERATED, MEASURES, REAL_TRAIN, RECONSTRUCTED, fid_table  # noqa: E402

CLASSIFIER_FILE = "fid_classifier.keras"

DEFAULT_PER_CLASS = 1000
NEIGHBOUR_PICTURE_CLASSES = 3
NEIGHBOUR_PICTURE_IMAGES = 8
NEIGHBOUR_PICTURE = "nearest_neighbours.png"



def feature_network_for(args, runs, data, key):
    """(path, its JSON) of the classifier features: --features PATH as given (refused, in one line,
    when its JSON names other data), or fid_classifier.keras in the first run folder, trained when
    missing (evaluators.feature_network)."""
    from evaluators import feature_network, read_feature_meta
    refuse = not args.keep_untrusted
    if args.features == "classifier":
        path = runs[0].file(CLASSIFIER_FILE)
        return path, feature_network(path, data, data_key(key), key["seed"], refuse,
                                     say=lambda message: print(f"[fid] {message}", file=sys.stderr, flush=True))
    path = Path(args.features)
    meta = read_feature_meta(path)
    if meta and meta.get("dataset") != data_key(key):
        raise UsageError(f"the feature network {path} was trained on other data ({json.dumps(meta.get('dataset'))}),"
                         f" not on {json.dumps(data_key(key))}")
    if meta and refuse and not meta["check"]["trusted"]:
        raise UsageError(f"the feature network {path} cannot tell the classes apart: {meta['check']['reason']}")
    return path, meta


# ---------------------------------------------------------------------------------------------
# Runs and the table


def load_run(run_dir):
    """A run folder (its generators are checked by Run.generator_choice)."""
    return Run.open(run_dir)


def dataset_key(run, args):
    """Dataset, data folder, protocol, image size and split seed of a run, flags overriding."""
    from datasets import DATASET_NAMES
    config = run.config
    name = args.dataset or config["dataset"]
    if name not in DATASET_NAMES and os.path.isdir(name):
        name = os.path.abspath(name)
    data_dir = args.data_dir if args.data_dir is not None else config.get("data_dir")
    return dict(
        dataset=name,
        data_dir=os.path.abspath(data_dir) if data_dir else None,
        imbalanced=bool(config.get("imbalanced", False) if args.imbalanced is None else args.imbalanced),
        image_size=int(args.image_size or config["image_size"]),
        seed=int(config["split_seed"] if args.split_seed is None else args.split_seed),
        resize=args.resize or config["resize"],
        window=list(args.window) if args.window else config.get("window"),
    )


def _first_per_class(x, y, label, limit):
    images = x[y == label]
    return images[:limit] if limit else images


def _nan_to_none(values):
    return [None if v is None or not math.isfinite(v) else v for v in values]


@dataclass
class Scoring:
    """What one table shares: the dataset, the feature extractor, the cache and the batch size."""

    data: object
    key: dict
    extractor: FeatureExtractor
    cache_dir: Path
    batch_size: int
    real_per_class: int | None
    cache_hits: int = 0

    def real(self, split, c) -> FeatureSet:
        """Features of the real images of class c in a split (first `real_per_class` of them), cached."""
        x, y = (self.data.x_test, self.data.y_test) if split == "test" else (self.data.x_train, self.data.y_train)
        name = self.data.class_names[c]
        features, hit = cached_real_features(
            _first_per_class(x, y, c, self.real_per_class), dict(self.key, split=split, label=c, class_name=name),
            self.extractor, self.cache_dir, self.batch_size, f"{split} images of class {name}")
        self.cache_hits += hit
        return FeatureSet(features)

    def features(self, batches, total, label) -> FeatureSet:
        return FeatureSet(extract_features(batches, self.extractor, total, label))




def _row(name, kind, reference, train, feature_sets, comparable, run=None):
    """One row: per class, the distances and manifold measures against the class's test images
    (`reference`) and the memorisation measures against its training images (`train`)."""
    pairs = {
        ("precision", "recall"): [precision_recall(r.features, f.features) for r, f in zip(reference, feature_sets)],
        ("density", "coverage"): [density_coverage(r.features, f.features) for r, f in zip(reference, feature_sets)],
        ("memorised", "copy_ratio"): [memorisation(t.features, f.features) for t, f in zip(train, feature_sets)],
    }
    row = dict(name=name, type=kind, run=run.name if run else None, run_dir=str(run.path) if run else None,
               counts=[len(f.features) for f in feature_sets],
               fid=_nan_to_none([ref.fid(f) for ref, f in zip(reference, feature_sets)]),
               kid=_nan_to_none([ref.kid(f) for ref, f in zip(reference, feature_sets)]),
               comparable=comparable)
    for (first, second), values in pairs.items():
        row[first], row[second] = (_nan_to_none(list(column)) for column in zip(*values))
    return row


def smallest_classes(data, count=NEIGHBOUR_PICTURE_CLASSES):
    """The `count` classes with the fewest training images, fewest first."""
    return [int(c) for c in np.argsort(data.train_counts(), kind="stable")[:count]]


def plot_nearest_neighbours(path, title, pairs):
    """nearest_neighbours.png: per class, a row of generated images (the ones nearest to the
    training set first) above a row of their nearest training images, each pair with its ratio.

    pairs: [(class name, training count, generated uint8 (n, H, W, C), nearest training uint8, ratios)].
    """
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is
    columns = max(len(p[2]) for p in pairs)
    fig = Figure(figsize=(1.1 * columns + 1.4, 2.7 * len(pairs) + 0.8), layout="constrained")
    fig.suptitle(f"{title}\nabove each pair: its distance over a typical training image's distance\n"
                 "to its own nearest neighbour (0 = a copy, about 1 = a new image)", fontsize="medium")
    for panel, (name, count, generated, nearest, ratios) in zip(fig.subfigures(len(pairs), 1, squeeze=False)[:, 0],
                                                                pairs):
        panel.suptitle(f"class {name} ({count} training images)", fontsize="medium", fontweight="bold")
        axes = panel.subplots(2, columns, squeeze=False)
        for col in range(columns):
            for row, images in enumerate((generated, nearest)):
                ax = axes[row, col]
                ax.set_xticks([])
                ax.set_yticks([])
                if col >= len(images):
                    ax.axis("off")
                    continue
                image = images[col]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
                if row == 0:
                    ax.set_title(f"{ratios[col]:.2f}", fontsize="small")
        axes[0, 0].set_ylabel("generated", fontsize="small")
        axes[1, 0].set_ylabel("nearest\ntraining", fontsize="small")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def _runs_and_dataset(args):
    runs = [load_run(d) for d in args.run_dirs]
    for run in runs:
        run.generator_choice(args.generator, say=False)  # a missing best generator is refused before any work
    keys = [dataset_key(r, args) for r in runs]
    if any(k != keys[0] for k in keys[1:]):
        raise UsageError("the runs use different datasets, protocols, image sizes or split seeds "
                         f"({', '.join(sorted({json.dumps(k, sort_keys=True) for k in keys}))}); "
                         "score them separately or override with --dataset/--image-size/--imbalanced/--split-seed")
    own_size = all(r.config["image_size"] == keys[0]["image_size"] for r in runs)
    if args.baselines and not own_size:
        raise UsageError("--baselines needs the real images at the run's own image size (the autoencoder's input)")
    if args.baselines and all(r.autoencoder is None for r in runs):
        raise UsageError("--baselines needs a bagan_gp or bagan run: the other models have no autoencoder")
    if args.baselines is None:  # the default: every reference row that can be made
        args.reconstructions = own_size
    else:
        args.reconstructions = args.baselines
    return runs, keys[0]


def score(args) -> dict:
    """The whole table as a JSON-able dict (see ``parse_args`` for the flags)."""
    from datasets import load_dataset
    runs, key = _runs_and_dataset(args)
    weights = inception_weights_path(args.weights) if args.features == "inception" else None
    data = load_dataset(key["dataset"], data_dir=key["data_dir"], image_size=key["image_size"],
                        imbalanced=key["imbalanced"], seed=key["seed"], resize=key["resize"], window=key["window"])
    for run in runs:
        if list(run.config["class_names"]) != list(data.class_names):
            raise UsageError(f"{run.path} was trained on classes {run.config['class_names']}, "
                             f"but the dataset has {data.class_names}")
    judge = None
    if args.features != "inception":
        model_path, meta = feature_network_for(args, runs, data, key)
        judge = (meta or {}).get("check")
        extractor = classifier_extractor(model_path, meta)
    else:
        extractor = inception_extractor(weights, seed=args.seed)
    scoring = Scoring(data, key, extractor, Path(args.cache_dir or default_cache_dir()),
                      args.batch_size, args.real_per_class)
    classes, names, bs = range(data.num_classes), data.class_names, args.batch_size
    reference = [scoring.real("test", c) for c in classes]
    train = [scoring.real("train", c) for c in classes]
    smallest = smallest_classes(data)
    rows, pictures = [], {}
    for run in runs:
        path, described = run.generator_choice(args.generator)
        generator = load_model(path)
        kept = {c: [] for c in smallest}
        generated = [scoring.features(_keeping(generated_batches(generator, c, args.per_class, bs, args.seed),
                                               kept.get(c)),
                                      args.per_class, f"{run.name} class {names[c]}") for c in classes]
        rows.append(dict(_row(run.name, GENERATED, reference, train, generated, extractor.comparable, run),
                         generator=described))
        path = Path(args.out) / f"nearest_neighbours-{run.name}.png" if args.out else run.file(NEIGHBOUR_PICTURE)
        path.parent.mkdir(parents=True, exist_ok=True)
        neighbour_picture(path, run.name, data, scoring, train, generated, kept)
        pictures[run.name] = str(path)
    if args.baselines is not False:
        with_autoencoder = [run for run in runs if run.autoencoder is not None and args.reconstructions]
        for run in with_autoencoder:
            autoencoder = run.load_autoencoder()
            train_images = [_first_per_class(data.x_train, data.y_train, c, args.real_per_class) for c in classes]
            reconstructed = [scoring.features(reconstructed_batches(autoencoder, train_images[c], c, bs),
                                              len(train_images[c]), f"{run.name} reconstructions of class {names[c]}")
                             for c in classes]
            name = RECONSTRUCTED if len(with_autoencoder) == 1 else f"{RECONSTRUCTED} {run.name}"
            rows.append(_row(name, "reconstructed", reference, train, reconstructed, extractor.comparable, run))
        rows.append(_row(REAL_TRAIN, "real_train", reference, train, train, extractor.comparable))

    return dict(
        dataset=key["dataset"], data_dir=key["data_dir"], imbalanced=key["imbalanced"],
        image_size=key["image_size"], split_seed=key["seed"],
        features="inception" if args.features == "inception" else "classifier", feature_space=extractor.description,
        feature_hash=extractor.hash, feature_dims=extractor.dims,
        comparable=extractor.comparable,
        note=("not comparable: random feature weights, for tests and smoke runs only" if not extractor.comparable
              else f"UNRELIABLE, every number: the feature classifier cannot tell the classes apart ({judge['reason']})"
              if judge and not judge["trusted"] else None),
        generated_per_class=args.per_class, noise_seed=args.seed, reference="test",
        classes=[dict(name=n, reference_count=len(r.features),
                      too_few=[m for m in MEASURES if len(r.features) < minimum_images(m, extractor.dims)])
                 for n, r in zip(names, reference)],
        minimum_images={m: minimum_images(m, extractor.dims) for m in MEASURES}, judge=judge,
        train_counts=[len(t.features) for t in train], neighbours=NEIGHBOURS,
        rows=rows, pictures=pictures, cached_real_sets=scoring.cache_hits, cache_dir=str(scoring.cache_dir),
    )


def _keeping(batches, store):
    """The batches, each also appended to `store` as uint8 images (None: kept nowhere)."""
    from datasets import to_uint8
    for batch in batches:
        if store is not None:
            store.append(to_uint8(batch))
        yield batch


def neighbour_picture(path, run_name, data, scoring, train, generated, kept):
    """nearest_neighbours.png of one run: for each of the smallest classes, the generated images
    nearest to the training set beside their nearest training images."""
    pairs = []
    for c, batches in kept.items():
        images = np.concatenate(batches)
        ratios, nearest = copy_ratios(train[c].features, generated[c].features)
        order = np.argsort(ratios, kind="stable")[:NEIGHBOUR_PICTURE_IMAGES]
        train_images = _first_per_class(data.x_train, data.y_train, c, scoring.real_per_class)
        pairs.append((data.class_names[c], len(train_images), images[order], train_images[nearest[order]],
                      ratios[order]))
    plot_nearest_neighbours(path, f"{run_name}: generated images nearest to the training images",
                            pairs)


def parse_args(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(
        description="Per-class FID and KID of BAGAN-GP runs against the real test images (paper Table 4).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders written by bagan_train.py")
    add_dataset_arguments(p, "the run's")
    p.add_argument("--split-seed", type=int, help="train/test split seed (default: the run's seed)")
    p.add_argument("--generator", choices=GENERATORS,
                   help="each run's best generator (generator_best.keras) or its last (default: best when a run "
                        "has one, else last)")
    p.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS,
                   help=f"generated images per class (default {DEFAULT_PER_CLASS})")
    p.add_argument("--real-per-class", type=int, default=None,
                   help="use only the first N real images of each class (default: all; for smoke runs)")
    p.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=None,
                   help=f"the reference rows '{RECONSTRUCTED}' (runs with an autoencoder) and '{REAL_TRAIN}', "
                        "the scale every number is read on (default: on, each where it can be made; --baselines "
                        "refuses runs that cannot give both)")
    p.add_argument("--features", default="inception", metavar="inception|classifier|PATH",
                   help="InceptionV3 (ImageNet) features; a CNN trained on the dataset's training split (kept "
                        f"as {CLASSIFIER_FILE} in the first run folder); or such a network's .keras file, e.g. "
                        "one committed under results/, to score in its feature space (named by its weights' hash)")
    p.add_argument("--keep-untrusted", action="store_true",
                   help="score even with a feature classifier that cannot tell the classes apart (every number "
                        "is then marked UNRELIABLE)")
    p.add_argument("--weights", metavar="PATH|random",
                   help=f"InceptionV3 weights file (default: $KERAS_HOME/models/{INCEPTION_WEIGHTS_FILE}); "
                        f"'random': untrained, at {RANDOM_INCEPTION_SIZE}x{RANDOM_INCEPTION_SIZE}, not comparable")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator noise (and of random weights)")
    p.add_argument("--cache-dir", help=f"real-feature cache (default {default_cache_dir()})")
    p.add_argument("--out", metavar="FOLDER", help=f"where {NEIGHBOUR_PICTURE} goes, one per run "
                                                   "(default: each run's folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    for flag in ("per_class", "real_per_class"):
        value = getattr(args, flag)
        if value is not None and value < 2:
            p.error(f"--{flag.replace('_', '-')} must be at least 2")
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    if args.weights and args.features != "inception":
        p.error("--weights applies to --features inception")
    if args.features not in ("inception", "classifier") and not os.path.isfile(args.features):
        p.error(f"--features {args.features}: not inception, classifier or a .keras file")
    return args


def main(argv=None):
    args = parse_args(argv)
    from datasets import DatasetError
    try:
        check_dataset_arguments(args)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SingularCovarianceWarning)
            result = score(args)
    except (UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    singular = sum(issubclass(w.category, SingularCovarianceWarning) for w in caught)
    messages = sorted({str(w.message) for w in caught if not issubclass(w.category, SingularCovarianceWarning)})
    if singular:
        messages.insert(0, f"{singular} feature sets have no more samples than the {result['feature_dims']} "
                           "feature dimensions: their covariances are singular; the FID stays finite but is "
                           "biased upward (compare only equal sample counts)")
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)
    result["warnings"] = messages
    print(json.dumps(result) if args.json else fid_table(result))
    return 0


if __name__ == "__main__":
    from console import tensorflow_quiet
    with tensorflow_quiet():
        sys.exit(main())
