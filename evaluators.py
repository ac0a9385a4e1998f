"""The one CNN the project trains to judge or classify images, and the judge's proof on held-out
real images before anything trusts it.

* `build_cnn`: paper 003's simple CNN (three 3x3 convolution blocks of 32, 64 and 128 filters with
  max pooling and dropout 0.25, a 128-unit "features" layer, dropout 0.5, one logit per class).
  classify.py trains it as the classifier under test; its "features" layer feeds paper 004's SVM.
* `train_judge`: the same CNN trained on real training images to judge generated ones (the
  in-training evaluation of bagan_train.py, fid.py's classifier features). Small classes count:
  every batch draws its classes uniformly (then an image of the class, each class's images cycled
  in a shuffled order), so a class of six images is seen as often as one of three hundred, each
  image shifted at random (`JUDGE_SHIFT`), and it trains for at least `JUDGE_MIN_STEPS` batches
  however small the set. It is then checked on the
  held-out (test) images (metrics.chance_check): per-class recall, ACSA, and a permutation test
  against chance; the check travels with the judge and is recorded beside it.
* `class_scores`: the in-training evaluation's per-class KID and recognition of a generator.
* `feature_network`: a judge kept as a file for fid.py's and compare.py's classifier features,
  with its check and its data beside it (`<name>.json`), named by `weights_hash`: numbers from two
  networks are in two feature spaces and are never compared.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from metrics import chance_check
from datasets import keras_home
from runs import UsageError, atomic_write, generated_batches

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                         f"inception_v3/{INCEPTION_WEIGHTS_FILE}")
INCEPTION_WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
"""MD5 of the official file, as Keras checks it when it downloads the weights itself."""
FEATURE_DIMS = 128
FEATURE_EPOCHS = 10
"""Passes over the training split of a feature network (at least JUDGE_MIN_STEPS batches)."""
LEARNING_RATE = 1e-3
JUDGE_BATCH = 64
JUDGE_MIN_STEPS = 400
"""Batches a judge trains for at least: a few hundred images would otherwise get a few dozen steps,
too few to learn more than the class prior (a judge trained 25 steps on 282 images gave one class
for every image)."""
PREDICT_BATCH = 256
JUDGE_SHIFT = 0.1
"""The judge's training images are shifted by up to this share of their height and width (a fresh
draw every batch, edges repeated): a class of a few dozen images is otherwise learnt by heart, and
its held-out images go to the largest class (on smallfolder.py's folder at 32x32: held-out recall of
the 30-image class 0.17-0.83 without, 1.0 with, over two seeds each). No class of any data set here
changes when shifted, unlike a flip of a digit."""


def build_cnn(image_shape, num_classes):
    """Paper 003's simple CNN; its penultimate layer "features" feeds the SVM of paper 004 and is
    the feature space of the judge."""
    import keras
    from keras import layers
    image = keras.Input(image_shape, name="image")
    x = image
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    features = layers.Dense(FEATURE_DIMS, activation="relu", name="features")(layers.Flatten()(x))
    logits = layers.Dense(num_classes, name="logits")(layers.Dropout(0.5)(features))
    model = keras.Model(image, logits, name="classifier")
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def balanced_order(y, num_classes, n, seed):
    """`n` indices into `y` whose classes are drawn uniformly (over the classes that have images),
    each class's images taken in a shuffled order that is reshuffled when used up."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in range(num_classes)]
    present = [c for c in range(num_classes) if len(members[c])]
    classes = rng.choice(present, size=n)
    order = np.empty(n, np.int64)
    for c in present:
        slots = np.flatnonzero(classes == c)
        cycles = -(-len(slots) // len(members[c]))
        order[slots] = np.concatenate([rng.permutation(members[c]) for _ in range(cycles)])[:len(slots)]
    return order


def predict(model, x, batch_size=PREDICT_BATCH):
    """Outputs of a Keras model for uint8 images, batch by batch."""
    from datasets import make_tf_dataset
    return model.predict(make_tf_dataset(x, np.zeros(len(x), np.int64), batch_size, shuffle=False), verbose=0)


HOLD_OUT = 0.2
"""Share of each class a judge holds out for its check when the data has no test split of its own."""


def judge_split(data, seed=0):
    """(x_fit, y_fit, x_check, y_check): the training and test splits of `data`; or, where the test
    split is the training split itself (the oversampler's data), that split with `HOLD_OUT` of each
    class's images (at least one of a class of two or more) held out for the check."""
    if data.x_test is not data.x_train:
        return data.x_train, data.y_train, data.x_test, data.y_test
    rng = np.random.default_rng(seed)
    held = np.zeros(len(data.y_train), bool)
    for c in range(data.num_classes):
        members = rng.permutation(np.flatnonzero(data.y_train == c))
        if len(members) >= 2:
            held[members[:max(1, int(HOLD_OUT * len(members)))]] = True
    return data.x_train[~held], data.y_train[~held], data.x_train[held], data.y_train[held]


def train_judge(data, seed=0, epochs=5, batch_size=JUDGE_BATCH, min_steps=JUDGE_MIN_STEPS):
    """The judge of a datasets.Dataset: the CNN trained on its training split with class-balanced
    batches for max(min_steps, epochs passes over the split) batches, then checked on held-out
    real images (`judge_split`) by metrics.chance_check. Returns (model, check);
    check["trusted"] says whether its verdicts mean anything."""
    import keras
    from datasets import make_tf_dataset
    x, y, x_check, y_check = judge_split(data, seed)
    keras.utils.set_random_seed(seed)
    model = build_cnn(x.shape[1:], data.num_classes)
    steps = max(min_steps, epochs * math.ceil(len(x) / batch_size))
    order = balanced_order(y, data.num_classes, steps * batch_size, seed)
    batches = make_tf_dataset(x, y, batch_size, shuffle=False, order=order)
    shift = keras.layers.RandomTranslation(JUDGE_SHIFT, JUDGE_SHIFT, fill_mode="nearest", seed=seed)
    batches = batches.map(lambda images, labels: (shift(images, training=True), labels))
    model.fit(batches, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
    predicted = np.argmax(predict(model, x_check), axis=1) if len(x_check) else np.zeros(0, np.int64)
    check = chance_check(y_check, predicted, data.num_classes, list(data.class_names), seed=seed)
    check.update(steps=steps, batch_size=batch_size, trained_on=len(x))
    return model, check


def class_scores(generator, classifier, real_features, per_class, seed=0, batch_size=64):
    """Per class c: the KID of `per_class` images G(z, c) (noise of runs.generated_batches) against
    `real_features[c]`, and the share of them `classifier` assigns to c, both in the classifier's
    'features' layer. The quick in-domain check of training (callbacks.BestGenerator); batches of
    64, as the classifier's training: larger ones raise a training run's peak memory."""
    import keras
    from metrics import kernel_inception_distance
    model = keras.Model(classifier.inputs, [classifier.get_layer("features").output, classifier.outputs[0]])
    kid, recognised = [], []
    for c, real in enumerate(real_features):
        # Each batch straight through the classifier: no predict function traced for a model made per call.
        scored = [model(images, training=False) for images in generated_batches(generator, c, per_class, batch_size,
                                                                                  seed)]
        features, logits = (np.concatenate([np.asarray(s[i], np.float32) for s in scored]) for i in (0, 1))
        kid.append(kernel_inception_distance(real, features) if len(real) > 1 else math.nan)
        recognised.append(float(np.mean(np.argmax(logits, axis=1) == c)))
    return kid, recognised


def weights_hash(model):
    """The first 16 hex digits of SHA-256 over every weight's shape and float32 values, in order: the
    name of a feature space, the same after a save and a load (unlike the bytes of the .keras file)."""
    import keras
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight), np.float32)
        digest.update(repr(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def feature_meta_path(path):
    """The JSON beside a feature network: its hash, the data it was trained on and its check."""
    return Path(path).with_suffix(".json")


def read_feature_meta(path):
    """A feature network's JSON (None when there is none or it cannot be read)."""
    try:
        return json.loads(feature_meta_path(path).read_text())
    except (OSError, ValueError):
        return None


def feature_network(path, data, dataset_key, seed=0, refuse=True, say=None):
    """The judge at `path` (.keras) for the data of `dataset_key`, trained now (train_judge,
    FEATURE_EPOCHS) unless a checked one of the same data is there; returns its JSON (hash,
    dataset, check). UsageError, in one line, when it cannot tell the classes apart on held-out
    images and `refuse`: its features would mean nothing."""
    from metrics import describe_check
    path = Path(path)
    meta = read_feature_meta(path) if path.is_file() else None
    if meta is None or meta.get("dataset") != dataset_key or "check" not in meta or "hash" not in meta:
        say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        say(f"training the feature network on {len(data.x_train)} real training images -> {path}")
        start = time.perf_counter()
        model, check = train_judge(data, seed, FEATURE_EPOCHS)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, model.save)
        meta = dict(hash=weights_hash(model), dataset=dataset_key, epochs=FEATURE_EPOCHS, check=check)
        atomic_write(feature_meta_path(path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
        say(f"feature network {meta['hash']} trained in {time.perf_counter() - start:.1f} s; {describe_check(check)}")
    if refuse and not meta["check"]["trusted"]:
        raise UsageError(f"the feature network {path.name} cannot tell the classes apart: "
                         f"{meta['check']['reason']}; its FID, KID and manifold measures would mean nothing "
                         "(use --features inception, or more images per class)")
    return meta


def inception_weights_path(weights=None):
    """The ImageNet weights file to use: --weights PATH, else the Keras cache; None for 'random'."""
    if weights == "random":
        return None
    get = f"download {INCEPTION_WEIGHTS_URL}"
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UsageError(f"weights file {path} does not exist: {get} and pass its path to --weights")
        return path
    path = keras_home() / "models" / INCEPTION_WEIGHTS_FILE
    if not path.is_file():
        raise UsageError(f"InceptionV3 ImageNet weights not found: {get} and save it as {path} "
                         "(or pass --weights PATH; --weights random only for smoke runs, not comparable)")
    return path
