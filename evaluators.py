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
  against chance; the check travels with the judge and is recorded beside it. `judge` keeps
  judges in a cache, so that everything that judges the same data with the same seed shares one.
* `class_scores`: the in-training evaluation's per-class KID and recognition of a generator.
* Feature extraction for fid.py and the notebooks: `inception_extractor` (ImageNet InceptionV3) and
  `classifier_extractor` (a judge's "features" layer), `extract_features` batch by batch, and the
  cache of real-image features (`cached_real_features`).
* `feature_network`: a judge kept as a file for fid.py's and compare.py's classifier features,
  with its check and its data beside it (`<name>.json`), named by `weights_hash`: numbers from two
  networks are in two feature spaces and are never compared.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from metrics import chance_check
from datasets import balanced_order, keras_home
from runs import UsageError, atomic_write, generated_batches, load_model, save_json

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                         f"inception_v3/{INCEPTION_WEIGHTS_FILE}")
INCEPTION_WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
"""MD5 of the official file, as Keras checks it when it downloads the weights itself."""
INCEPTION_SIZE = 299
RANDOM_INCEPTION_SIZE = 75
"""The input of InceptionV3 with random weights (its smallest): their features compare nothing (smoke
runs, tests of the plumbing), so they need not pay for 299x299, about 16 times the work."""
INCEPTION_DIMS = 2048
CACHE_FORMAT = 1
DEFAULT_BATCH_SIZE = 20
"""Images per extraction batch. InceptionV3 at 299x299 holds about 17 MB of activations per image;
on the 2-core CPU 20 images per batch extract as fast as 50 and need 500 MB less
(benchmarks/RESULTS.md)."""
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
    steps = judge_steps(len(x), epochs, batch_size, min_steps)
    order = balanced_order(y, data.num_classes, steps * batch_size, seed)
    batches = make_tf_dataset(x, y, batch_size, shuffle=False, order=order)
    shift = keras.layers.RandomTranslation(JUDGE_SHIFT, JUDGE_SHIFT, fill_mode="nearest", seed=seed)
    batches = batches.map(lambda images, labels: (shift(images, training=True), labels))
    model.fit(batches, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
    predicted = np.argmax(predict(model, x_check), axis=1) if len(x_check) else np.zeros(0, np.int64)
    check = chance_check(y_check, predicted, data.num_classes, list(data.class_names), seed=seed)
    check.update(steps=steps, batch_size=batch_size, trained_on=len(x))
    return model, check


def judge_steps(images, epochs, batch_size=JUDGE_BATCH, min_steps=JUDGE_MIN_STEPS):
    """The batches train_judge trains for: `epochs` passes over `images`, at least `min_steps`."""
    return max(min_steps, epochs * math.ceil(images / batch_size))


def judge_cache_dir():
    """Where judges are kept between runs: ~/.cache/bagan-gp/judges (or under $XDG_CACHE_HOME)."""
    return default_cache_dir().parent / "judges"


def judge_key(data, seed, epochs, batch_size, min_steps):
    """The name of a judge in the cache: SHA-256 over all that train_judge's result depends on: the
    images and labels it trains and is checked on, the class names, its seed, batches, batch size and
    precision, Keras's version and the source of the functions that build and train it (a change to
    them names new judges)."""
    import inspect
    import keras
    split = judge_split(data, seed)
    steps = judge_steps(len(split[0]), epochs, batch_size, min_steps)
    digest = hashlib.sha256()
    for array in split:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    settings = dict(classes=[str(name) for name in data.class_names], seed=int(seed), steps=int(steps),
                    batch_size=int(batch_size), shift=JUDGE_SHIFT, learning_rate=LEARNING_RATE,
                    policy=keras.config.dtype_policy().name, keras=keras.__version__,
                    code=[inspect.getsource(f) for f in (build_cnn, balanced_order, judge_split, judge_steps,
                                                         train_judge, chance_check)])
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:40]


def judge(data, seed=0, epochs=5, batch_size=JUDGE_BATCH, min_steps=JUDGE_MIN_STEPS, cache_dir=None):
    """train_judge's (model, check) and whether it came from the judge cache (`judge_cache_dir`): the
    same data, seed and settings give the same judge, trained once per machine, so that the runs and
    commands that judge the same data share one judge and its training time. Processes that need
    the same judge at once wait for the first (a lock file beside it); a cached file that cannot be
    read is trained again, and where the cache folder cannot be written the judge trains uncached.
    Without POSIX file locks (Windows) processes do not wait for each other: each may train it."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    folder = Path(cache_dir or judge_cache_dir())
    key = judge_key(data, seed, epochs, batch_size, min_steps)
    path, meta_path = folder / f"{key}.keras", folder / f"{key}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f"{key}.lock", "w")
    except OSError as e:
        print(f"[judge] the judge cache {folder} cannot be written ({e.strerror}): training the judge uncached",
              file=sys.stderr, flush=True)
        return (*train_judge(data, seed, epochs, batch_size, min_steps), False)
    with lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file() and meta_path.is_file():
            try:
                return load_model(path), json.loads(meta_path.read_text())["check"], True
            except (UsageError, ValueError, KeyError):
                pass
        model, check = train_judge(data, seed, epochs, batch_size, min_steps)
        atomic_write(path, model.save)
        save_json(meta_path, dict(check=check))
        return model, check, False


def class_features(classifier, x, y, num_classes, per_class):
    """Per class c, `classifier`'s 'features' layer of the first `per_class` images of x[y == c]
    (uint8): class_scores' real_features."""
    import keras
    from datasets import to_model_range
    features = keras.Model(classifier.inputs, classifier.get_layer("features").output)
    return [features.predict(to_model_range(x[y == c][:per_class]), batch_size=64, verbose=0)
            for c in range(num_classes)]


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


def data_key(config):
    """The data a run or a feature network was trained on, with no path of this machine: a dataset
    name or the folder's name, protocol, image size, split seed, resize and window, from a
    config.json (or any mapping with those keys; `seed` stands for the split seed where there is no
    `split_seed`)."""
    return dict(dataset=os.path.basename(os.path.normpath(config["dataset"])),
                imbalanced=bool(config.get("imbalanced")), image_size=int(config["image_size"]),
                split_seed=int(config["split_seed"] if "split_seed" in config else config["seed"]),
                resize=config["resize"], window=config.get("window"))


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
        say(f"the feature network of {len(data.x_train)} real training images -> {path}")
        start = time.perf_counter()
        model, check, cached = judge(data, seed, FEATURE_EPOCHS)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, model.save)
        meta = dict(hash=weights_hash(model), dataset=dataset_key, epochs=FEATURE_EPOCHS, check=check)
        atomic_write(feature_meta_path(path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
        how = "from the judge cache" if cached else "trained"
        say(f"feature network {meta['hash']} {how} in {time.perf_counter() - start:.1f} s; {describe_check(check)}")
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


# ---------------------------------------------------------------------------------------------
# Feature extraction, batch by batch, and the cache of real-image features




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
    """InceptionV3 average-pool features of the images resized to 299x299; ImageNet weights from
    `weights_path`, else random ones at RANDOM_INCEPTION_SIZE."""
    import keras
    import tensorflow as tf
    size = INCEPTION_SIZE if weights_path else RANDOM_INCEPTION_SIZE
    try:
        base = keras.applications.InceptionV3(
            include_top=False, pooling="avg", input_shape=(size, size, 3),
            weights=str(weights_path) if weights_path else None)
    except Exception as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UsageError(f"cannot load InceptionV3 weights from {weights_path}: {reason}") from None

    def features(images):
        x = tf.image.resize(_rgb(tf.cast(images, tf.float32)), (size, size), method="bilinear")
        return base(x, training=False)

    name = f"InceptionV3 avg pool ({INCEPTION_DIMS}-d)"
    if weights_path is None:
        _randomize(base, seed)
        return FeatureExtractor(tf.function(features, reduce_retracing=True),
                                f"inception_v3/random-{seed}/{size}px/keras-{keras.__version__}",
                                f"{name}, random weights (seed {seed}) at {size}x{size}",
                                INCEPTION_DIMS, comparable=False)
    sha256, md5 = _file_digests(weights_path)
    origin = "official Keras ImageNet weights" if md5 == INCEPTION_WEIGHTS_MD5 else \
        f"weights from {weights_path} (not the official Keras file)"
    return FeatureExtractor(tf.function(features, reduce_retracing=True),
                            f"inception_v3/sha256-{sha256}/keras-{keras.__version__}",
                            f"{name}, {origin}", INCEPTION_DIMS, hash=sha256[:16])


# ---------------------------------------------------------------------------------------------
# Classifier features


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
# Selecting generated images


SELECT_RULES = ("confidence", "novel")
SELECT_THRESHOLD = 0.9
SELECT_DRAW_CAP = 10
"""select_generated draws at most this many images per image it must keep, then stops short."""


def select_generated(generator, selector, x_real, y_real, quota, seed=0, rules=("confidence",),
                     threshold=SELECT_THRESHOLD, cap=SELECT_DRAW_CAP, batch_size=PREDICT_BATCH):
    """Generated images of each class c, `quota[c]` of them kept by `rules`, drawing (noise of
    runs.generated_batches) until the quota is met or cap * quota[c] are drawn:

    * confidence (HistoGAN's selection, Xue et al. 2021): `selector`, a CNN trained on the real
      training images only, gives the image's class a softmax probability of at least `threshold`;
    * novel: the image is no nearer to a training image of its class than a typical training image
      is to its nearest neighbour, in the selector's "features" layer (metrics.copy_ratios below 1
      is fid.py's memorisation).

    Returns (uint8 images, labels, stats): stats per class real, drawn, kept, dropped, acceptance."""
    import keras
    from datasets import resize_images, to_model_range, to_uint8
    from metrics import copy_ratios, softmax
    both = keras.Model(selector.inputs, [selector.get_layer("features").output, selector.outputs[0]])
    size = selector.input_shape[1]
    images, labels, stats = [], [], []
    for c, want in enumerate(int(q) for q in quota):
        real = x_real[y_real == c]
        train_features = np.asarray(predict(both, real)[0], np.float32) if "novel" in rules and len(real) else None
        kept, drawn = [], 0
        step = min(batch_size, max(2 * want, 32))  # the noise does not depend on it (runs.generated_batches)
        for batch in generated_batches(generator, c, cap * want, step, seed) if want else ():
            batch = resize_images(to_uint8(batch), size)
            features, logits = (np.asarray(v, np.float32) for v in both(to_model_range(batch), training=False))
            keep = np.ones(len(batch), bool)
            if "confidence" in rules:
                keep &= softmax(logits)[:, c] >= threshold
            if train_features is not None and len(train_features) >= 2:
                keep &= copy_ratios(train_features, features)[0] >= 1.0
            hits = np.flatnonzero(keep)
            short = want - sum(len(k) for k in kept)
            if len(hits) >= short:  # the quota is met at the short-th kept image: what follows is not drawn
                kept.append(batch[hits[:short]])
                drawn += int(hits[short - 1]) + 1
                break
            kept.append(batch[hits])
            drawn += len(batch)
        kept = np.concatenate(kept) if kept else np.zeros((0, *x_real.shape[1:]), np.uint8)
        images.append(kept)
        labels.append(np.full(len(kept), c, np.int64))
        stats.append(dict(real=int(len(real)), drawn=drawn, kept=int(len(kept)), dropped=drawn - int(len(kept)),
                          acceptance=len(kept) / drawn if drawn else None))
    return np.concatenate(images), np.concatenate(labels), stats
