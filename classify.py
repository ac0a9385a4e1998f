"""Does rebalancing help the classifier? The protocol of papers 003 and 004 as one command.

    python classify.py --dataset digits --imbalanced --augment none --augment affine --augment train_results/<run>
    python classify.py --dataset fashion_mnist --imbalanced --image-size 32 --augment none --classifier cnn_svm
    python classify.py ... --seeds 3 --json

Every ``--augment`` value is one training set, one row of the table:

``none``
    the training split as it is;
``weights``
    the training split as it is, with a class-weighted loss: class c weighs n_max / n_c;
``oversample``
    every class smaller than the largest is filled up with random duplicates of its own images
    (each image used equally often, to within one);
``online``
    the same duplicates, and random affine transforms (those of ``affine``) of every training
    image, drawn again at every epoch (Keras preprocessing layers in the input pipeline);
``affine
    every class smaller than the largest is filled up to the largest count with affine copies of
    its own images, each image used equally often (Keras preprocessing layers, :data:`AFFINE`):
    a rotation of up to 18 degrees either way, a shift of up to 10% of the height and of the
    width, a zoom in or out of up to 10%, and a horizontal flip with probability 1/2 unless
    ``--no-affine-flip`` (paper 003 flips; a flipped digit is mostly no digit);
``RUN_DIR``
    every such class is filled up with images G(z, c) of the run's generator (z ~ N(0, I), seeded),
    converted to uint8 like the real images. The run must have been trained on the same dataset,
    protocol and split seed, so that its generator never saw a test image. ``--synthetic-ratio R``
    adds at most R generated images per real image of a class (default: fill to the largest);
``online+RUN_DIR``
    the generated images of RUN_DIR added, then ``online``'s transforms applied to real and
    generated images alike at every epoch (classes still short of the largest after the generated
    images, with ``--synthetic-ratio``, are filled up with duplicates, as in ``online``);
``oversample+RUN_DIR``
    the generated images of RUN_DIR added (with ``--synthetic-ratio R``, at most R per real image),
    then classes still short of the largest filled up with duplicates, as in ``oversample``: generated
    images and duplicates mixed in a measured amount.

``--select confidence`` and ``--select novel`` keep only some generated images
(evaluators.select_generated), judged by ``selection_classifier``: a CNN trained on the fit part of
the training split of each seed, so never on a validation or test image.

With ``--imbalanced`` on digits, Fashion-MNIST or CIFAR-10 a first row, ``balanced (real)``, fills
every class up with *real* images: images of the dataset that the imbalance rule left out, in
neither split. It is the balanced training set of the protocol without any test image. (The
balanced protocol's own training split cannot serve: it holds many of the imbalanced test images,
96 of 176 on digits; the output gives the number.)

For each seed s in 0..N-1 and each row:

1. ``floor(val_share * n_c)`` real training images of each class c, drawn with s, are held out for
   early stopping; they are the same for every row and never augmented;
2. the rest is rebalanced as the row says, with draws seeded by s;
3. the CNN of paper 003 is trained with Keras seeded by s: three blocks of a 3x3 convolution (32,
   64, 128 filters, ReLU), 2x2 max pooling and dropout 0.25, then a 128-unit ReLU dense layer
   ("features"), dropout 0.5 and a dense layer of one logit per class; Adam(1e-3), batch 64,
   cross-entropy, at most ``--epochs`` epochs, early stopping on the validation loss (patience 5)
   keeping the best epoch's weights;
4. ``cnn_svm`` (paper 004, after Niu and Suen): the trained CNN's "features" activations of the
   training images, standardised, train an RBF SVM (scikit-learn SVC, C=1, gamma="scale") that
   takes the place of the output layer;
5. the classifier is scored on a test set no model trained on. By default (``--test-set
   balanced``) for digits, Fashion-MNIST and CIFAR-10 it is balanced over the classes, as paper
   004 leaves its test set unchanged: the official test files of Fashion-MNIST (t10k) and CIFAR-10
   (test_batch), and for digits the images outside the training split, as many per class as the
   scarcest class has (``datasets.balanced_test_set``). The imbalanced hold-out would mostly measure
   the majority class (58% of Fashion-MNIST B's hold-out is class 0). Cells and class folders, which
   have no such set, keep the stratified hold-out (``--test-set holdout``, also available for the
   others); every table and ``--json`` name the test set and its per-class counts.

Metrics (scikit-learn): accuracy, macro precision, recall and F1, top-k accuracy (k = 2 below 100
classes, else 5, left out when k is not below the number of classes; scored on the CNN's softmax
or the SVM's one-vs-rest decision values), per-class recall, ACSA (the mean per-class recall) and
G-mean (the geometric mean of the per-class recalls, 0 when one of them is 0); ACSA and G-mean are
taken over the classes that have test images. Each is given as the mean and the sample standard
deviation over the seeds.

Each (row, seed) score is saved under ``<out>/scores/`` as soon as it is made, with everything it
depends on (the flags, the test set, the SHA-256 of the run's generator file); a later
call with the same ``--out`` reuses it instead of training that classifier again, so an interrupted
call, or one with a row added, trains only what is missing.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from datasets import (BALANCED_TEST_SETS, DatasetError, add_dataset_arguments, balanced_test_set,  # noqa: E402
                      check_dataset_arguments, default_image_size)
from evaluators import (LEARNING_RATE, SELECT_DRAW_CAP, SELECT_RULES, SELECT_THRESHOLD, build_cnn,  # noqa: E402
                        predict, select_generated)
from runs import GENERATORS, RESULTS_DIR, Run, UsageError, generated_batches, load_model, save_json  # noqa: E402
from metrics import softmax  # noqa: E402
from tables import METRICS, REFERENCE, classify_table, minority_recall, plot_per_class_recall, ratio_label  # noqa: E402

AFFINE = dict(rotation=0.05, translation=0.1, zoom=0.1)
"""Keras factors: rotation as a fraction of a full turn (0.05 = 18 degrees), shift and zoom as fractions of the size."""
DEFAULT_EPOCHS = 30
PATIENCE = 5
BATCH_SIZE = 64
VAL_SHARE = 0.1
AUGMENT_BATCH = 256
PREDICT_BATCH = 256

BALANCED_PROTOCOLS = ("digits", "fashion_mnist", "cifar10")
CLASSIC = ("none", "weights", "oversample", "affine", "online")
"""The remedies without generated images, as --augment values."""
STACKED = {"online+": "online", "oversample+": "oversample"}
"""--augment prefixes that stack a run's generated images on a classic remedy: PREFIX + RUN_DIR."""
CLASSIFIERS = {
    "cnn": "CNN of paper 003 (3 conv + max-pool blocks, dense output)",
    "cnn_svm": "CNN-SVM of paper 004 (the CNN's 128-d hidden features into an RBF SVM)",
}
RATIO_CANDIDATES = (0.5, 1.0, 3.0, None)
"""--synthetic-ratio auto's candidates (None: fill up to the largest class), chosen per seed by the
validation split's mean minority recall."""
SELECTOR_EPOCHS = 10
"""Epochs of the selection classifier (--select): the CNN on the fit part of the training split only,
class-weighted, no early stopping (the validation images stay unseen)."""
SCORES_DIR = "scores"
"""Under --out: one JSON file per (training set, seed) classifier, reused by a later call with the same inputs."""


# ---------------------------------------------------------------------------------------------
# Metrics


def classification_metrics(y_true, y_pred, scores, num_classes, top_k=None) -> dict:
    """Accuracy, macro precision/recall/F1, top-k accuracy, per-class recall, ACSA and G-mean.

    ``scores`` (N, num_classes) rank the classes for top-k; per-class recall is None for a class
    without test images, and ACSA and G-mean are taken over the others. ``predicted_counts``: test
    images predicted as each class (one nonzero count: the classifier predicts one class only).
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, top_k_accuracy_score
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.arange(num_classes)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0)
    _, per_class, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    present = per_class[support > 0]
    g_mean = float(np.exp(np.mean(np.log(present)))) if present.size and present.min() > 0 else 0.0
    top = None
    if top_k:
        top = float(top_k_accuracy_score(y_true, np.asarray(scores), k=top_k, labels=labels))
    return dict(
        accuracy=float(accuracy_score(y_true, y_pred)), precision=float(precision), recall=float(recall),
        f1=float(f1), top_k=top, acsa=float(present.mean()) if present.size else None, g_mean=g_mean,
        per_class_recall=[float(r) if n else None for r, n in zip(per_class, support)],
        predicted_counts=np.bincount(y_pred.astype(np.int64), minlength=num_classes).tolist(),
    )


def default_top_k(num_classes):
    """k of the top-k accuracy: 2 (paper 003's Fashion-MNIST), 5 from 100 classes; None if trivial."""
    k = 5 if num_classes >= 100 else 2
    return k if k < num_classes else None


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def summarize(per_seed) -> tuple[dict, dict]:
    """Mean and sample standard deviation (None for one seed) of every metric over the seeds."""
    mean, std = {}, {}
    for key, _ in METRICS:
        mean[key], std[key] = _mean_std([m[key] for m in per_seed])
    pairs = [_mean_std(column) for column in zip(*(m["per_class_recall"] for m in per_seed))]
    mean["per_class_recall"] = [p[0] for p in pairs]
    std["per_class_recall"] = [p[1] for p in pairs]
    return mean, std


# ---------------------------------------------------------------------------------------------
# Validation share and rebalancing (uint8 images in, uint8 images out)


def missing_counts(y, num_classes) -> np.ndarray:
    """Images each class lacks to match the largest class."""
    counts = np.bincount(np.asarray(y, np.int64), minlength=num_classes)
    return counts.max() - counts


def split_validation(y, share, seed, num_classes):
    """(fit indices, validation indices): floor(share * n_c) images of each class c, drawn with seed."""
    rng = np.random.default_rng([seed, 0])
    fit, val = [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = int(math.floor(share * len(idx)))
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))


def _no_images(x):
    return np.zeros((0,) + x.shape[1:], np.uint8), np.zeros(0, np.int64)


def affine_pipeline(seed, flip=True):
    """The affine transformations as Keras preprocessing layers (fill: nearest edge pixel)."""
    import keras
    from keras import layers
    steps = [
        layers.RandomRotation(AFFINE["rotation"], fill_mode="nearest", seed=seed),
        layers.RandomTranslation(AFFINE["translation"], AFFINE["translation"], fill_mode="nearest", seed=seed + 1),
        layers.RandomZoom(AFFINE["zoom"], fill_mode="nearest", seed=seed + 2),
    ]
    if flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 3))
    return keras.Sequential(steps, name="affine")


def rebalance_with_affine(x, y, seed, num_classes=None, flip=True, batch_size=AUGMENT_BATCH):
    """Affine copies of each class's own images until every class matches the largest.

    Returns the added uint8 images and their labels. The originals of a class are used equally
    often (to within one), in an order drawn with ``seed``; the transformations are seeded too.
    """
    num_classes = num_classes or int(y.max()) + 1
    need = missing_counts(y, num_classes)
    rng = np.random.default_rng([seed, 1])
    sources, labels = [], []
    for c in range(num_classes):
        if need[c] == 0:
            continue
        idx = np.flatnonzero(y == c)
        if len(idx) == 0:
            raise UsageError(f"class {c} has no training image to transform")
        sources.append(np.resize(rng.permutation(idx), need[c]))
        labels.append(np.full(need[c], c, np.int64))
    if not sources:
        return _no_images(x)
    sources = np.concatenate(sources)
    pipeline = affine_pipeline(1000 * seed + 17, flip)
    out = np.empty((len(sources),) + x.shape[1:], np.uint8)
    for start in range(0, len(sources), batch_size):
        batch = x[sources[start:start + batch_size]].astype(np.float32)
        moved = np.asarray(pipeline(batch, training=True))
        out[start:start + len(batch)] = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return out, np.concatenate(labels)


def rebalance_with_duplicates(x, y, seed, num_classes=None):
    """Random duplicates of each class's own images until every class matches the largest: the
    originals of a class used equally often (to within one), in an order drawn with ``seed``."""
    num_classes = num_classes or int(y.max()) + 1
    need = missing_counts(y, num_classes)
    rng = np.random.default_rng([seed, 4])
    chosen = [np.resize(rng.permutation(np.flatnonzero(y == c)), need[c]) for c in range(num_classes)
              if need[c] and np.any(y == c)]
    chosen = np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, np.int64)
    return x[chosen], y[chosen].astype(np.int64)


def class_weights(y, num_classes):
    """{c: n_max / n_c} for every class with training images (the ``weights`` row's loss)."""
    counts = np.bincount(y, minlength=num_classes)
    return {c: float(counts.max() / n) for c, n in enumerate(counts) if n}


def synthetic_counts(y, num_classes, ratio=None):
    """Generated images per class: up to the largest class, and at most ``ratio`` per real image."""
    need = missing_counts(y, num_classes)
    if ratio is None:
        return need
    return np.minimum(need, np.floor(ratio * np.bincount(y, minlength=num_classes)).astype(np.int64))


def rebalance_with_generator(x, y, generator, seed, num_classes=None, batch_size=AUGMENT_BATCH, ratio=None):
    """Images G(z, c) for each class c smaller than the largest, until every class matches it
    (or, with ``ratio``, at most ``ratio`` per real image of the class).

    Returns the added uint8 images (resized to the real ones when the generator's size differs)
    and their labels; the noise of class c is drawn from ``default_rng([seed, c])`` (runs.generated_batches).
    """
    from datasets import resize_images, to_uint8
    num_classes = num_classes or int(y.max()) + 1
    need = synthetic_counts(y, num_classes, ratio)
    images, labels = [], []
    for c in np.flatnonzero(need):
        for batch in generated_batches(generator, int(c), int(need[c]), batch_size, seed):
            images.append(resize_images(to_uint8(batch), x.shape[1]))
        labels.append(np.full(need[c], c, np.int64))
    if not images:
        return _no_images(x)
    return np.concatenate(images), np.concatenate(labels)


def _hashes(images):
    return {image.tobytes() for image in images}


@dataclass
class RealPool:
    """Real images in neither split of the protocol, for the balanced reference row."""

    x: np.ndarray
    y: np.ndarray
    test_in_balanced_train: int


def real_pool(data, balanced) -> RealPool:
    """The images of the balanced protocol ``balanced`` that are in neither split of ``data``.

    Images are compared by content, so a duplicate of a training or test image is left out too.
    Also counts the test images of ``data`` that the balanced training split holds.
    """
    seen = _hashes(data.x_train) | _hashes(data.x_test)
    x = np.concatenate([balanced.x_train, balanced.x_test])
    y = np.concatenate([balanced.y_train, balanced.y_test])
    keep = np.array([image.tobytes() not in seen for image in x], bool)
    test = _hashes(data.x_test)
    overlap = sum(image.tobytes() in test for image in balanced.x_train)
    return RealPool(x[keep], y[keep], int(overlap))


def rebalance_with_real(y, pool: RealPool, seed, num_classes):
    """Real images of the pool, drawn with ``seed``, for each class until it matches the largest
    (or the pool of that class runs out)."""
    need = missing_counts(y, num_classes)
    rng = np.random.default_rng([seed, 2])
    chosen = [rng.permutation(np.flatnonzero(pool.y == c))[:need[c]] for c in range(num_classes)]
    chosen = np.concatenate(chosen).astype(np.int64)
    return pool.x[chosen], pool.y[chosen]


# ---------------------------------------------------------------------------------------------
# The classifiers


def online_transforms(batches, seed, flip=True):
    """`batches` with affine_pipeline's random transforms applied, drawn again at every epoch."""
    pipeline = affine_pipeline(1000 * seed + 29, flip)

    def transform(images, labels):
        return pipeline(images, training=True), labels
    return batches.map(transform)


def train_cnn(x, y, x_val, y_val, num_classes, seed, epochs=DEFAULT_EPOCHS, patience=PATIENCE,
              batch_size=BATCH_SIZE, class_weight=None, online=False, flip=True, progress=None):
    """Train the CNN on uint8 images; early stopping on the validation loss when there is one.
    `class_weight`: {class: weight} of the loss; `online`: random affine transforms of every
    training batch at every epoch (online_transforms); `progress`: a label, to print a line per
    epoch with an estimate of the time left (on stderr: stdout holds the table or the JSON).

    Returns the model (best epoch's weights) and dict(epochs=trained, best_epoch=kept, 1-based).
    """
    import keras
    from callbacks import EpochProgress
    from datasets import make_tf_dataset
    keras.utils.set_random_seed(seed)
    model = build_cnn(x.shape[1:], num_classes)
    shown = [EpochProgress(progress, epochs, early_stopping=len(x_val) > 0, stream=sys.stderr)] if progress else []
    train = make_tf_dataset(x, y, batch_size, shuffle=True, seed=seed)
    if online:
        train = online_transforms(train, seed, flip)
    if len(x_val) == 0:
        history = model.fit(train, epochs=epochs, callbacks=shown, shuffle=False, verbose=0, class_weight=class_weight)
        trained = len(history.history["loss"])
        return model, dict(epochs=trained, best_epoch=trained)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    history = model.fit(train, validation_data=make_tf_dataset(x_val, y_val, PREDICT_BATCH, shuffle=False),
                        epochs=epochs, callbacks=[stop, *shown], shuffle=False, verbose=0, class_weight=class_weight)
    return model, dict(epochs=len(history.history["loss"]), best_epoch=int(stop.best_epoch) + 1)


def feature_model(cnn):
    import keras
    return keras.Model(cnn.inputs, cnn.get_layer("features").output, name="features")


def fit_svm(features, y, seed):
    """Standardised features into an RBF SVM (one-vs-rest decision values for top-k)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    svm = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, gamma="scale",
                                              decision_function_shape="ovr", random_state=seed))
    return svm.fit(features, y)


def train_and_score(x, y, x_val, y_val, x_test, y_test, num_classes, classifier="cnn", seed=0,
                    epochs=DEFAULT_EPOCHS, patience=PATIENCE, batch_size=BATCH_SIZE, top_k=None,
                    class_weight=None, online=False, flip=True, progress=None, validation=False) -> dict:
    """Train one classifier on uint8 images and return its test metrics and training facts
    (`progress`: train_cnn's); with `validation`, also the validation split's per-class recall
    (`validation_per_class_recall`), scored by the same classifier."""
    start = time.perf_counter()
    cnn, info = train_cnn(x, y, x_val, y_val, num_classes, seed, epochs, patience, batch_size, class_weight,
                          online, flip, progress)
    svm = fit_svm(predict(feature_model(cnn), x), y, seed) if classifier == "cnn_svm" else None

    def predictions(images):
        if svm is None:
            scores = softmax(predict(cnn, images))
            return scores.argmax(axis=1), scores
        features = predict(feature_model(cnn), images)
        decisions = svm.decision_function(features)
        return svm.predict(features), np.stack([-decisions, decisions], axis=1) if decisions.ndim == 1 else decisions

    if svm is not None:
        info["cnn_accuracy"] = float(np.mean(softmax(predict(cnn, x_test)).argmax(axis=1) == y_test))
    metrics = classification_metrics(y_test, *predictions(x_test), num_classes, top_k)
    if validation:
        info["validation_per_class_recall"] = classification_metrics(
            y_val, *predictions(x_val), num_classes)["per_class_recall"]
    return dict(metrics, **info, seconds=round(time.perf_counter() - start, 1))


# ---------------------------------------------------------------------------------------------
# The plan: training sets, dataset and checks (all before any training)


@dataclass
class Row:
    """One training set of the table."""

    name: str
    kind: str  # "reference", one of CLASSIC, or "generator"
    run: Run | None = None
    online: bool = False  # online's transforms at every epoch (online, online+RUN_DIR)
    fill: bool = False  # duplicates where the generated images leave a class short (STACKED rows)
    selection: list = field(default_factory=list)  # per seed: select_generated's per-class stats
    generator: object = None
    described: str | None = None  # which of the run's generators, as runs.Run.generator_choice says
    generator_path: str | None = None
    per_seed: list = field(default_factory=list)
    counts: list | None = None


def _same_dataset(a, b):
    from datasets import DATASET_NAMES
    if a in DATASET_NAMES or b in DATASET_NAMES:
        return a == b
    return os.path.abspath(a) == os.path.abspath(b)


def _rows_from_flags(values):
    rows, names = [], set()
    for value in values or ["none"]:
        prefix = next((p for p in STACKED if value.startswith(p)), "")
        target = value[len(prefix):]
        if value in CLASSIC:
            row = Row(value, value, online=value == "online")
        elif prefix and target in CLASSIC:
            raise UsageError(f"--augment {value}: {prefix} takes a run folder, e.g. {prefix}train_results/<run>")
        else:
            run = Run.open(target)
            row = Row(prefix + run.name, "generator", run, online=STACKED.get(prefix) == "online",
                      fill=bool(prefix))
        if row.name in names:
            row.name = value
        if row.name in names:
            raise UsageError(f"--augment {value} is given twice")
        names.add(row.name)
        rows.append(row)
    return rows


def _check_numbers(args):
    for flag, low in (("seeds", 1), ("epochs", 1), ("patience", 0), ("batch_size", 1)):
        if getattr(args, flag) < low:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least {low}, got {getattr(args, flag)}")
    if not 0 <= args.val_share < 1:
        raise UsageError(f"--val-share must be in [0, 1), got {args.val_share}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    if args.synthetic_ratio not in (None, "auto"):
        try:
            args.synthetic_ratio = float(args.synthetic_ratio)
        except ValueError:
            raise UsageError(f"--synthetic-ratio takes a number or auto, got {args.synthetic_ratio!r}") from None
        if not args.synthetic_ratio > 0:
            raise UsageError(f"--synthetic-ratio must be above 0, got {args.synthetic_ratio:g}")
    if args.synthetic_ratio == "auto" and not args.val_share:
        raise UsageError("--synthetic-ratio auto chooses on the validation split: --val-share must be above 0")
    if not 0 < args.select_threshold < 1:
        raise UsageError(f"--select-threshold must be between 0 and 1, got {args.select_threshold}")
    if args.select and not any(v not in CLASSIC for v in args.augment or []):
        raise UsageError("--select chooses among a run's generated images: add --augment RUN_DIR")


def _protocol(args, runs):
    """Dataset name, data folder, image size, split seed, resize and window: flags first, then the runs'."""
    dataset = args.dataset or (runs[0].config["dataset"] if runs else None)
    if not dataset:
        raise UsageError("--dataset is needed when no RUN_DIR is given")
    sizes = sorted({int(r.config["image_size"]) for r in runs})
    if args.image_size is None and len(sizes) > 1:
        raise UsageError(f"the runs generate different image sizes ({', '.join(map(str, sizes))}); "
                         "choose one with --image-size")
    image_size = args.image_size or (sizes[0] if sizes else default_image_size(dataset))
    split_seed = args.split_seed if args.split_seed is not None else \
        int(runs[0].config["split_seed"]) if runs else 42
    data_dir = args.data_dir if args.data_dir is not None else (runs[0].config.get("data_dir") if runs else None)
    for run in runs:
        config = run.config
        if not _same_dataset(config["dataset"], dataset):
            raise UsageError(f"{run.path} was trained on {config['dataset']!r}, not on {dataset!r}")
        if dataset in BALANCED_PROTOCOLS and bool(config.get("imbalanced")) != args.imbalanced:
            want = "with" if config.get("imbalanced") else "without"
            raise UsageError(f"{run.path} was trained on the {'imbalanced' if config.get('imbalanced') else 'balanced'}"
                             f" protocol: run {want} --imbalanced (another protocol's test split may hold its"
                             " training images)")
        if int(config["split_seed"]) != split_seed:
            raise UsageError(f"{run.path} was trained on the split of seed {config['split_seed']}, not "
                             f"{split_seed}: its generator may have seen test images (see --split-seed)")
    resize = args.resize or (runs[0].config["resize"] if runs else "pad")
    window = list(args.window) if args.window else (runs[0].config.get("window") if runs else None)
    return dataset, data_dir, image_size, split_seed, resize, window


def prepare(args):
    """Load and check everything: rows, runs' generators, the dataset and the reference pool."""
    from datasets import load_dataset
    _check_numbers(args)
    rows = _rows_from_flags(args.augment)
    runs = [row.run for row in rows if row.run]
    dataset, data_dir, image_size, split_seed, resize, window = _protocol(args, runs)
    data = load_dataset(dataset, data_dir=data_dir, image_size=image_size, imbalanced=args.imbalanced,
                        seed=split_seed, resize=resize, window=window)
    test_set = args.test_set or ("balanced" if dataset in BALANCED_TEST_SETS else "holdout")
    if test_set == "balanced":
        x_test, y_test, described = balanced_test_set(dataset, data_dir, image_size, split_seed, exclude=data.x_train)
        data = replace(data, x_test=x_test, y_test=y_test)
    else:
        described = (f"the stratified hold-out of the {'imbalanced' if args.imbalanced else 'given'} protocol"
                     + ("" if dataset in BALANCED_TEST_SETS else f" ({dataset} has no balanced test set)"))
    for row in rows:
        if row.run is None:
            continue
        if list(row.run.config["class_names"]) != list(data.class_names):
            raise UsageError(f"{row.run.path} was trained on classes {row.run.config['class_names']}, "
                             f"but the dataset has {data.class_names}")
        path, row.described = row.run.generator_choice(args.generator)
        row.generator_path = str(path)
        row.generator = load_model(path)
        channels = row.generator.outputs[0].shape[-1]
        if channels != data.channels:
            raise UsageError(f"{row.run.path} generates {channels}-channel images, the dataset has {data.channels}")
    pool = None
    if args.reference and args.imbalanced and dataset in BALANCED_PROTOCOLS:
        balanced = load_dataset(dataset, data_dir=data_dir, image_size=image_size, imbalanced=False,
                                seed=split_seed, resize=resize, window=window)
        pool = real_pool(data, balanced)
        rows.insert(0, Row(REFERENCE, "reference"))
    top_k = args.top_k if args.top_k is not None else default_top_k(data.num_classes)
    if top_k is not None and top_k >= data.num_classes:
        top_k = None
    key = dict(dataset=dataset, data_dir=data_dir, imbalanced=args.imbalanced, image_size=image_size,
               split_seed=split_seed, test_set=test_set, test_set_description=described)
    return data, rows, pool, key, top_k


# ---------------------------------------------------------------------------------------------
# The protocol


def selection_classifier(x, y, num_classes, seed):
    """The CNN --select judges generated images with: trained on `x` (the fit part of the training
    split, never a validation or test image), class-weighted, SELECTOR_EPOCHS epochs."""
    model, _ = train_cnn(x, y, x[:0], y[:0], num_classes, seed, SELECTOR_EPOCHS, class_weight=class_weights(y, num_classes))
    return model


def added_images(row, x, y, seed, num_classes, pool, flip, ratio=None, selector=None, rules=(),
                 threshold=SELECT_THRESHOLD):
    """(images, labels, selection) a row adds to the (fit part of the) training split; with `rules`, a
    generator row's images are kept by evaluators.select_generated and `selection` holds its per-class
    counts (else None). `selector`: a function giving the selection classifier."""
    if row.kind == "affine":
        return *rebalance_with_affine(x, y, seed, num_classes, flip), None
    if row.kind in ("oversample", "online"):
        return *rebalance_with_duplicates(x, y, seed, num_classes), None
    if row.kind == "generator":
        selection = None
        if rules:
            x_add, y_add, stats = select_generated(row.generator, selector(), x, y,
                                                   synthetic_counts(y, num_classes, ratio), seed, rules, threshold)
            selection = dict(seed=seed, selector_images=len(y), classes=stats)
        else:
            x_add, y_add = rebalance_with_generator(x, y, row.generator, seed, num_classes, ratio=ratio)
        if row.fill:  # still short of the largest class (with a ratio): duplicates, as oversample's
            x_more, y_more = rebalance_with_duplicates(np.concatenate([x, x_add]), np.concatenate([y, y_add]),
                                                       seed, num_classes)
            x_add, y_add = np.concatenate([x_add, x_more]), np.concatenate([y_add, y_more])
        return x_add, y_add, selection
    if row.kind == "reference":
        return *rebalance_with_real(y, pool, seed, num_classes), None
    return *_no_images(x), None


def score_inputs(args, key, top_k, row, seed) -> dict:
    """Everything one (row, seed) classifier depends on: its score is reused only when all of it is the same."""
    generator = None
    if row.generator_path:  # by content: a run folder copied or moved keeps its scores
        with open(row.generator_path, "rb") as f:
            generator = dict(sha256=hashlib.file_digest(f, "sha256").hexdigest(), bytes=os.path.getsize(row.generator_path))
    return dict(key, classifier=args.classifier, epochs=args.epochs, patience=args.patience,
                batch_size=args.batch_size, val_share=args.val_share, affine_flip=args.affine_flip, top_k=top_k,
                learning_rate=LEARNING_RATE, row=row.name, kind=row.kind, generator=generator, seed=seed,
                **({"synthetic_ratio": args.synthetic_ratio} if row.kind == "generator" and args.synthetic_ratio
                   else {}),
                **({"ratio_candidates": RATIO_CANDIDATES} if row.kind == "generator" and args.synthetic_ratio == "auto"
                   else {}),
                **({"select": sorted(args.select), "select_threshold": args.select_threshold,
                    "select_cap": SELECT_DRAW_CAP, "selector_epochs": SELECTOR_EPOCHS}
                   if row.kind == "generator" and args.select else {}))


def score_path(scores_dir, inputs) -> Path:
    """<scores_dir>/seed<s>-<row>-<hash of the inputs>.json"""
    digest = hashlib.sha1(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in inputs["row"])
    return Path(scores_dir) / f"seed{inputs['seed']}-{name}-{digest}.json"


def load_score(scores_dir, inputs):
    """A (row, seed) score saved by an earlier call with the same inputs, or None."""
    if scores_dir is None:
        return None
    path = score_path(scores_dir, inputs)
    if not path.exists():
        return None
    with open(path) as f:
        saved = json.load(f)
    return saved if saved.get("inputs") == inputs else None


def row_label(args, row, validation=False):
    """The row's name in progress lines, with its ratio where it has one (every auto candidate has)."""
    ratio = row.kind == "generator" and (validation or args.synthetic_ratio is not None)
    return row.name + (f", ratio {ratio_label(args.synthetic_ratio)}" if ratio else "")


def train_row(args, data, row, seed, split, pool, selector, top_k, validation=False):
    """The row's training set for `seed` at args.synthetic_ratio (the fit part of `split` plus
    added_images), its classifier trained and scored: (per-class counts, scores, selection or None)."""
    fit, val = split
    c = data.num_classes
    x_fit, y_fit = data.x_train[fit], data.y_train[fit]
    x_add, y_add, selection = added_images(row, x_fit, y_fit, seed, c, pool, args.affine_flip, args.synthetic_ratio,
                                           selector, tuple(args.select or ()), args.select_threshold)
    x, y = np.concatenate([x_fit, x_add]), np.concatenate([y_fit, y_add])
    name = row_label(args, row, validation)
    scored = train_and_score(x, y, data.x_train[val], data.y_train[val], data.x_test, data.y_test, c,
                             args.classifier, seed, args.epochs, args.patience, args.batch_size, top_k,
                             class_weights(y, c) if row.kind == "weights" else None, row.online, args.affine_flip,
                             f"classify seed {seed}, {name}", validation)
    print(f"[classify] seed {seed}, {name}: {len(y)} training images ({len(y_add)} added), {scored['epochs']} "
          f"epochs (best {scored['best_epoch']}), test accuracy {scored['accuracy']:.3f}, {scored['seconds']} s",
          file=sys.stderr, flush=True)
    return np.bincount(y, minlength=c).tolist(), scored, selection


def scored_row(args, data, row, seed, split, pool, selector, key, top_k, scores_dir, validation=False):
    """train_row's (counts, scores, selection) at args.synthetic_ratio, reused from scores_dir when an
    earlier call saved them with the same inputs (score_inputs; with `validation`, only with the
    validation split's recall), else made and saved there."""
    inputs = score_inputs(args, key, top_k, row, seed)
    saved = load_score(scores_dir, inputs)
    if saved is not None and (not validation or "validation_per_class_recall" in saved["scored"]):
        print(f"[classify] seed {seed}, {row_label(args, row, validation)}: test accuracy "
              f"{saved['scored']['accuracy']:.3f}, reused from "
              f"{score_path(scores_dir, inputs)}", file=sys.stderr, flush=True)
        return saved["counts"], saved["scored"], saved.get("selection")
    counts, scored, selection = train_row(args, data, row, seed, split, pool, selector, top_k, validation)
    if scores_dir is not None:
        save_json(score_path(scores_dir, inputs), dict(inputs=inputs, counts=counts, scored=scored,
                                                       selection=selection))
    return counts, scored, selection


def auto_ratio(args, data, row, seed, split, pool, selector, key, top_k, scores_dir):
    """--synthetic-ratio auto: the row at each of RATIO_CANDIDATES (the very classifier of
    `--synthetic-ratio R`, kept in scores_dir as that row's score), chosen by the validation split's
    mean minority recall (the smaller ratio on a tie): the chosen classifier's scores are the row's,
    with every candidate's validation score. The choice never looks at the test set."""
    fit_counts = np.bincount(data.y_train[split[0]], minlength=data.num_classes)
    tried = []
    for ratio in RATIO_CANDIDATES:
        counts, scored, selection = scored_row(argparse.Namespace(**{**vars(args), "synthetic_ratio": ratio}), data,
                                               row, seed, split, pool, selector, key, top_k, scores_dir, True)
        recall = minority_recall(dict(per_class_recall=scored["validation_per_class_recall"]), fit_counts)
        tried.append((dict(ratio=ratio, validation_minority_recall=recall), counts, scored, selection))
        print(f"[classify] seed {seed}, {row.name}: ratio {ratio_label(ratio)}, validation minority recall "
              f"{recall:.3f}", file=sys.stderr, flush=True)
    best = max(tried, key=lambda t: t[0]["validation_minority_recall"])
    chosen = dict(ratio=best[0]["ratio"], candidates=[t[0] for t in tried])
    print(f"[classify] seed {seed}, {row.name}: ratio {ratio_label(chosen['ratio'])} chosen", file=sys.stderr,
          flush=True)
    return best[1], dict(best[2], chosen=chosen), best[3]


def run_protocol(args, data, rows, pool, key, top_k, scores_dir=None) -> dict:
    """Train and score every row for every seed; the whole result as a JSON-able dict.

    With scores_dir, each (row, seed) score is saved there as it is made, and one saved by an earlier
    call with the same inputs (score_inputs) is reused, so an interrupted call continues where it stopped."""
    started = time.perf_counter()
    c = data.num_classes
    seeds = list(range(args.seeds))
    if scores_dir is not None:
        Path(scores_dir).mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        split = split_validation(data.y_train, args.val_share, seed, c)
        x_fit, y_fit = data.x_train[split[0]], data.y_train[split[0]]
        selector = functools.cache(functools.partial(selection_classifier, x_fit, y_fit, c, seed))  # when first needed
        for row in rows:
            score = auto_ratio if row.kind == "generator" and args.synthetic_ratio == "auto" else scored_row
            row.counts, scored, selection = score(args, data, row, seed, split, pool, selector, key, top_k,
                                                  scores_dir)
            row.per_seed.append(dict(seed=seed, **scored))
            row.selection += [selection] if selection else []
    val_counts = np.bincount(data.y_train[split_validation(data.y_train, args.val_share, 0, c)[1]],
                             minlength=c).tolist()
    result_rows = []
    for row in rows:
        mean, std = summarize(row.per_seed)
        result_rows.append(dict(
            name=row.name, kind=row.kind, run_dir=str(row.run.path) if row.run else None, generator=row.described,
            train_counts=row.counts, train_images=int(sum(row.counts)), mean=mean, std=std,
            per_seed=row.per_seed, **({"selection": row.selection} if row.selection else {})))
    reference = None
    if pool is not None:
        reference = dict(pool_images=len(pool.y), pool_counts=np.bincount(pool.y, minlength=c).tolist(),
                         test_images_in_balanced_training_split=pool.test_in_balanced_train)
    return dict(
        **key, classifier=args.classifier, classifier_description=CLASSIFIERS[args.classifier],
        synthetic_ratio=args.synthetic_ratio, select=sorted(args.select) if args.select else None,
        select_threshold=args.select_threshold if args.select else None, seeds=seeds, epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
        learning_rate=LEARNING_RATE, val_share=args.val_share, validation_counts=val_counts, top_k=top_k,
        affine=dict(AFFINE, horizontal_flip=args.affine_flip),
        class_names=list(data.class_names), train_counts=data.train_counts(), test_counts=data.test_counts(),
        reference=reference, rows=result_rows, seconds=round(time.perf_counter() - started, 1),
    )


# ---------------------------------------------------------------------------------------------
# Output


def default_out_dir(dataset):
    name = os.path.basename(os.path.normpath(dataset))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(RESULTS_DIR, f"classify-{name}-{stamp}")


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(
        description="Train a classifier on the (rebalanced) training split and score it on the test split "
                    "(papers 003 and 004): one table row per --augment.")
    add_dataset_arguments(p, dict(dataset="the runs'", imbalanced="no",
                                  image_size="the runs', else 32 for digits and 64 otherwise"))
    p.add_argument("--augment", action="append",
                   metavar="|".join([*CLASSIC, "RUN_DIR", *(prefix + "RUN_DIR" for prefix in STACKED)]),
                   help="a training set, one row each; may be repeated (default: none): the split as it is, "
                        "with a class-weighted loss, with random duplicates, with affine copies, with duplicates "
                        "and random transforms at every epoch; a run's generated images, alone, with online's "
                        "transforms, or with duplicates where they leave a class short (oversample+)")
    p.add_argument("--select", action="append", choices=SELECT_RULES,
                   help="keep only generated images that a CNN trained on the real training images (never the "
                        "validation or test images) gives their class with probability at least --select-threshold "
                        "(confidence), or that are no nearer to a training image than fid.py's memorisation "
                        f"threshold (novel); more are drawn until the quota is met or {SELECT_DRAW_CAP}x it is "
                        "drawn; may be given twice")
    p.add_argument("--select-threshold", type=float, default=SELECT_THRESHOLD,
                   help=f"--select confidence's probability (default {SELECT_THRESHOLD})")
    p.add_argument("--synthetic-ratio", metavar="R|auto",
                   help="at most R generated images per real image of a class (default: fill every class up to "
                        "the largest, as papers 003 and 004 do); auto: per seed, the best of 0.5, 1, 3 and fill by "
                        "the validation split's mean minority recall (never the test set), said in the output")
    p.add_argument("--generator", choices=GENERATORS,
                   help="each run's best generator (generator_best.keras) or its last (default: best when a run "
                        "has one, else last)")
    p.add_argument("--test-set", choices=["balanced", "holdout"],
                   help="balanced: a test set no model trained on, every class alike (Fashion-MNIST's t10k, "
                        "CIFAR-10's test batch, digits outside the training split; the default for them); "
                        "holdout: the protocol's stratified hold-out (the default for cells and class folders)")
    p.add_argument("--classifier", choices=sorted(CLASSIFIERS), default="cnn",
                   help="the CNN of paper 003 or the CNN-SVM of paper 004")
    p.add_argument("--seeds", type=int, default=3, help="train with seeds 0..N-1")
    p.add_argument("--split-seed", type=int, help="train/test split seed (default: the run's seed, else 42)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="most CNN epochs")
    p.add_argument("--patience", type=int, default=PATIENCE, help="early stopping patience in epochs")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--val-share", type=float, default=VAL_SHARE,
                   help="share of each class held out for early stopping (0: no early stopping)")
    p.add_argument("--top-k", type=int, help="k of the top-k accuracy (default 2, or 5 from 100 classes)")
    p.add_argument("--affine-flip", action=argparse.BooleanOptionalAction, default=True,
                   help="random horizontal flips in the affine augmentation")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help=f"add the '{REFERENCE}' row when the dataset has a balanced protocol")
    p.add_argument("--out", help="output folder (default train_results/classify-<dataset>-<time>); a later call "
                                 "with the same --out reuses every classifier already trained there with the same "
                                 f"settings (<out>/{SCORES_DIR}/)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    args.imbalanced = bool(args.imbalanced)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        check_dataset_arguments(args)
        data, rows, pool, key, top_k = prepare(args)
    except (UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or default_out_dir(key["dataset"]))
    out.mkdir(parents=True, exist_ok=True)
    print(f"[classify] {len(rows)} training sets x {args.seeds} seed(s), {args.classifier}; results in {out}",
          file=sys.stderr, flush=True)
    result = run_protocol(args, data, rows, pool, key, top_k, scores_dir=out / SCORES_DIR)
    result["out_dir"] = str(out)
    save_json(out / "results.json", result)
    plot_per_class_recall(result, out / "per_class_recall.png")
    print(json.dumps(result) if args.json else classify_table(result))
    return 0


if __name__ == "__main__":
    from console import tensorflow_quiet
    with tensorflow_quiet():
        sys.exit(main())
