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
import functools
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from datasets import add_dataset_arguments, check_dataset_arguments  # noqa: E402
from metrics import (NEIGHBOURS, SingularCovarianceWarning, copy_ratios, density_coverage,  # noqa: E402
                     feature_statistics, kernel_inception_distance, memorisation, minimum_images, precision_recall,
                     psd_sqrt, trace_sqrt_product)
from runs import GENERATORS, Run, UsageError, atomic_write, generated_batches, load_model  # noqa: E402
from evaluators import (INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_MD5,  # noqa: E402
                        inception_weights_path)
from tables import GENERATED, MEASURES, REAL_TRAIN, RECONSTRUCTED, fid_table  # noqa: E402

INCEPTION_SIZE = 299
INCEPTION_DIMS = 2048

CLASSIFIER_FILE = "fid_classifier.keras"
CLASSIFIER_META = "fid_classifier.json"
CLASSIFIER_EPOCHS = 10

CACHE_FORMAT = 1
DEFAULT_PER_CLASS = 1000
DEFAULT_BATCH_SIZE = 20
"""Images per extraction batch. InceptionV3 at 299x299 holds about 17 MB of activations per image;
on the 2-core CPU 20 images per batch extract as fast as 50 and need 500 MB less
(benchmarks/RESULTS.md)."""
NEIGHBOUR_PICTURE_CLASSES = 3
NEIGHBOUR_PICTURE_IMAGES = 8
NEIGHBOUR_PICTURE = "nearest_neighbours.png"



@dataclass
class FeatureSet:
    """Features of one image set and their Gaussian statistics, for FID and KID against others.

    FID between feature sets takes the same trace as :func:`frechet_distance`, in whichever of two
    equal forms is cheaper: with sqrt(S1) S2 sqrt(S1) (d x d, sqrt(S1) kept per reference set), or,
    when a set has n <= d samples so that S = F^T F with the n x d matrix F of its centred samples
    over sqrt(n - 1), with F S' F^T (n x n), which has the same nonzero eigenvalues.
    """

    features: np.ndarray

    @property
    def n(self):
        return len(self.features)

    @functools.cached_property
    def stats(self):
        return feature_statistics(self.features)

    @functools.cached_property
    def sigma_sqrt(self):
        return psd_sqrt(self.stats[1])

    @functools.cached_property
    def factor(self):
        f = np.asarray(self.features, np.float64)
        return (f - f.mean(axis=0)) / math.sqrt(max(self.n - 1, 1))

    def _trace_sqrt_product(self, other):
        small, large = (other, self) if other.n <= self.n else (self, other)
        if small.n <= self.features.shape[1]:
            m = small.factor @ large.stats[1] @ small.factor.T
            return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
        return trace_sqrt_product(self.sigma_sqrt, other.stats[1])

    def fid(self, other: "FeatureSet") -> float:
        """FID between this (reference) set and `other`."""
        (mu1, sigma1), (mu2, sigma2) = self.stats, other.stats
        diff = mu1 - mu2
        value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * self._trace_sqrt_product(other)
        return max(float(value), 0.0)

    def kid(self, other: "FeatureSet") -> float:
        """KID between this set and `other`; NaN when a set has fewer than 2 samples."""
        if min(self.n, other.n) < 2:
            return math.nan
        return kernel_inception_distance(self.features, other.features)


# ---------------------------------------------------------------------------------------------
# Feature extraction, batch by batch


class Progress:
    """Images done and images/s on stderr: one updating line on a terminal, else every 10 s."""

    def __init__(self, label, total=None, stream=None):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.start = self.last = time.perf_counter()

    def _line(self):
        seconds = time.perf_counter() - self.start
        of = f"/{self.total}" if self.total else ""
        rate = self.done / seconds if seconds > 0 else 0.0
        return f"[fid] {self.label}: {self.done}{of} images, {seconds:.1f} s, {rate:.1f} img/s"

    def update(self, n):
        self.done += n
        now = time.perf_counter()
        if self.tty:
            print(f"\r{self._line()}", end="", file=self.stream, flush=True)
        elif now - self.last >= 10:
            print(self._line(), file=self.stream, flush=True)
            self.last = now

    def close(self):
        print(f"\r{self._line()}" if self.tty else self._line(), file=self.stream, flush=True)


@dataclass
class FeatureExtractor:
    """Images in [-1, 1] (N, H, W, C) -> float32 features (N, dims).

    ``identity`` names the features exactly (it goes into cache keys); ``description`` is what the
    output says; ``comparable`` is False for features that mean nothing (random weights).
    """

    fn: Callable
    identity: str
    description: str
    dims: int
    comparable: bool = True
    hash: str | None = None
    """The feature space's name: evaluators.weights_hash of a classifier, the weights file's SHA-256 of
    InceptionV3 (16 hex digits); None for random weights."""
    images: int = field(default=0, init=False)

    def __call__(self, images) -> np.ndarray:
        out = np.asarray(self.fn(images), np.float32)
        self.images += len(out)
        return out.reshape(len(out), -1)


def extract_features(batches: Iterable, extractor: FeatureExtractor, total=None, label="images", quiet=False):
    """Features of every image of `batches` (an iterable of image batches in [-1, 1])."""
    progress = None if quiet else Progress(label, total)
    parts = []
    for batch in batches:
        parts.append(extractor(batch))
        if progress:
            progress.update(len(parts[-1]))
    if progress:
        progress.close()
    return np.concatenate(parts) if parts else np.zeros((0, extractor.dims), np.float32)


def real_batches(images_uint8, batch_size):
    """uint8 images -> float32 batches in [-1, 1]."""
    from datasets import to_model_range
    for start in range(0, len(images_uint8), batch_size):
        yield to_model_range(images_uint8[start:start + batch_size])


def reconstructed_batches(autoencoder, images_uint8, label, batch_size):
    """A runs.Autoencoder's reconstructions of uint8 images of one class."""
    for batch in real_batches(images_uint8, batch_size):
        yield autoencoder.reconstruct(batch, np.full(len(batch), label, np.int32))


def _rgb(images):
    import tensorflow as tf
    channels = images.shape[-1]
    if channels == 3:
        return images
    if channels == 1:
        return tf.tile(images, [1, 1, 1, 3])
    raise UsageError(f"images with {channels} channels: only 1 (grayscale) or 3 (RGB) are supported")


def _randomize(model, seed):
    """Deterministic He-normal kernels from numpy (random-weight features for tests only)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.endswith("kernel"):
            fan_in = int(np.prod(w.shape[:-1]))
            w.assign((rng.standard_normal(tuple(w.shape)) * np.sqrt(2.0 / fan_in)).astype(np.float32))


def _file_digests(path):
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def inception_extractor(weights_path=None, seed=0) -> FeatureExtractor:
    """InceptionV3 average-pool features; ImageNet weights from `weights_path`, random if None."""
    import keras
    import tensorflow as tf
    try:
        base = keras.applications.InceptionV3(
            include_top=False, pooling="avg", input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
            weights=str(weights_path) if weights_path else None)
    except Exception as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UsageError(f"cannot load InceptionV3 weights from {weights_path}: {reason}") from None

    def features(images):
        x = tf.image.resize(_rgb(tf.cast(images, tf.float32)), (INCEPTION_SIZE, INCEPTION_SIZE), method="bilinear")
        return base(x, training=False)

    name = f"InceptionV3 avg pool ({INCEPTION_DIMS}-d)"
    if weights_path is None:
        _randomize(base, seed)
        return FeatureExtractor(tf.function(features, reduce_retracing=True),
                                f"inception_v3/random-{seed}/keras-{keras.__version__}",
                                f"{name}, random weights (seed {seed})",
                                INCEPTION_DIMS, comparable=False)
    sha256, md5 = _file_digests(weights_path)
    origin = "official Keras ImageNet weights" if md5 == INCEPTION_WEIGHTS_MD5 else \
        f"weights from {weights_path} (not the official Keras file)"
    return FeatureExtractor(tf.function(features, reduce_retracing=True),
                            f"inception_v3/sha256-{sha256}/keras-{keras.__version__}",
                            f"{name}, {origin}", INCEPTION_DIMS, hash=sha256[:16])


# ---------------------------------------------------------------------------------------------
# Classifier features


def space_key(key):
    """The data a feature network was trained on, with no path of this machine: a network made here
    scores runs of the same data anywhere."""
    return dict(dataset=os.path.basename(os.path.normpath(key["dataset"])), imbalanced=key["imbalanced"],
                image_size=key["image_size"], split_seed=key["seed"], resize=key["resize"], window=key["window"])


def feature_network_for(args, runs, data, key):
    """(path, its JSON) of the classifier features: --features PATH as given (refused, in one line,
    when its JSON names other data), or fid_classifier.keras in the first run folder, trained when
    missing (evaluators.feature_network)."""
    from evaluators import feature_network, read_feature_meta
    refuse = not args.keep_untrusted
    if args.features == "classifier":
        path = runs[0].file(CLASSIFIER_FILE)
        return path, feature_network(path, data, space_key(key), key["seed"], refuse,
                                     say=lambda message: print(f"[fid] {message}", file=sys.stderr, flush=True))
    path = Path(args.features)
    meta = read_feature_meta(path)
    if meta and meta.get("dataset") != space_key(key):
        raise UsageError(f"the feature network {path} was trained on other data ({json.dumps(meta.get('dataset'))}),"
                         f" not on {json.dumps(space_key(key))}")
    if meta and refuse and not meta["check"]["trusted"]:
        raise UsageError(f"the feature network {path} cannot tell the classes apart: {meta['check']['reason']}")
    return path, meta


def classifier_extractor(model_path, meta=None) -> FeatureExtractor:
    """Features of the 'features' layer of a saved classifier; images resized to its input. Named by
    its weights' hash (evaluators.weights_hash)."""
    import keras
    import tensorflow as tf
    from evaluators import weights_hash
    model = load_model(model_path)
    features_model = keras.Model(model.inputs, model.get_layer("features").output)
    size, channels = model.input_shape[1:3], model.input_shape[3]
    dims = features_model.output_shape[-1]

    def features(images):
        x = tf.cast(images, tf.float32)
        if x.shape[-1] != channels:
            x = tf.reduce_mean(x, axis=-1, keepdims=True) if channels == 1 else _rgb(x)
        if tuple(x.shape[1:3]) != tuple(size):
            x = tf.image.resize(x, size, method="bilinear")
        return features_model(x, training=False)

    weights = weights_hash(model)
    check = (meta or {}).get("check")
    accuracy = f", held-out mean per-class recall {check['acsa']:.1%} (chance {check['chance']:.1%})" if check else ""
    return FeatureExtractor(tf.function(features, reduce_retracing=True), f"classifier/weights-{weights}",
                            f"classifier penultimate layer ({dims}-d), weights {weights} ({Path(model_path).name})"
                            f"{accuracy}", dims, hash=weights)


# ---------------------------------------------------------------------------------------------
# Cache of real-image features


def default_cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bagan-gp" / "fid"


def cache_file(cache_dir, key):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir) / f"{digest[:40]}.npz"


def cached_real_features(images_uint8, key, extractor, cache_dir, batch_size=DEFAULT_BATCH_SIZE,
                         label="real images", quiet=False):
    """Features of real uint8 images, from the cache when the same key was extracted before.

    The key given (dataset, split, class, image size, protocol ...) is completed with the
    extractor's identity and a hash of the images themselves; returns (features, cache hit).
    """
    images_uint8 = np.ascontiguousarray(images_uint8, np.uint8)
    key = dict(key, format=CACHE_FORMAT, extractor=extractor.identity, count=len(images_uint8),
               shape=list(images_uint8.shape[1:]),
               images_sha256=hashlib.sha256(images_uint8.tobytes()).hexdigest())
    path = cache_file(cache_dir, key) if cache_dir else None
    if path and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                if json.loads(str(stored["key"])) == key:
                    return stored["features"], True
        except (OSError, ValueError, KeyError):
            pass
    features = extract_features(real_batches(images_uint8, batch_size), extractor,
                                len(images_uint8), label, quiet)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, features=features, key=np.array(json.dumps(key, sort_keys=True)))
        atomic_write(path, write)
    return features, False


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
                        "'random': untrained, not comparable")
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
