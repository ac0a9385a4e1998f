"""Dataset loading for BAGAN-GP: uint8 images, labels and the paper's splits.

Every loader returns a :class:`Dataset` of uint8 images ``(N, S, S, C)`` and
int64 labels, already resized to ``image_size`` and split into train/test.
Nothing is ever downloaded or written, except by the optional Keras fallback
for Fashion-MNIST.

Datasets and protocols
----------------------
``digits``
    scikit-learn's bundled 8x8 digits (values 0..16 scaled to 0..255), one
    channel, classes "0".."9". Split 70/30, stratified, ``random_state=seed``.
    Imbalanced (see :data:`DIGITS_IMBALANCE`): class 0 is kept whole and
    class ``c`` keeps its first ``ceil(n_c * c / 20)`` images, applied before
    the split and grouped class by class, as for Fashion-MNIST.
``fashion_mnist`` / ``cifar10``
    The paper's protocol on the official *training* images only (60,000 /
    50,000); the official test set is not used. Balanced:
    ``train_test_split(x, y, test_size=0.3, shuffle=True, random_state=seed)``
    (not stratified) on the images in file order. Imbalanced: class 0 whole,
    class ``c`` keeps its first ``100 * c`` images (file order); the kept
    images are concatenated class by class (0, 1, ..., 9) and then split the
    same way. With ``seed=42`` this reproduces the Fashion-MNIST training
    counts of the paper's Table 1 exactly; CIFAR-10 (Table 2) uses the same
    rule.
``cells``
    The malaria cell images: ``<name>.png`` with a ``<name>.txt`` label
    ("red blood cell", "ring", "schizont", "trophozoite"). Split 80/20,
    stratified, ``random_state=seed``.
any folder path
    One subfolder per class (sorted names), PNG/JPEG/BMP/TIFF/DICOM of any
    size and mode; grayscale if every image is grayscale, else RGB. Split
    80/20, stratified. A non-square image is padded to a square with its
    border's colour (``resize="pad"``, so cells and lesions keep their
    shape), or its centre cropped, or stretched. High-bit images (16-bit
    PNG/TIFF, float TIFF, DICOM) become 8-bit by one rule for the whole
    dataset: linearly from its value range, or from a given ``window``;
    DICOM applies its rescale slope and intercept, its own window centre and
    width when it has them, inverts MONOCHROME1 and refuses multi-frame
    files. ``Dataset.intensity`` (and config.json) records the rule,
    ``Dataset.original_size`` the files' most common (width, height), and
    ``Dataset.mixed`` a set that mixes grayscale with colour images, or 8-bit
    with high-bit ones (the console says so too).

``imbalanced`` changes nothing for ``cells`` and for folders: they are used
as they are (the cell set is already imbalanced).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import math
import os
import pickle
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASET_NAMES = ("digits", "fashion_mnist", "cifar10", "cells")

REPO_DIR = Path(__file__).resolve().parent
MIN_IMAGE_SIZE = 8
# Sizes the networks are built for (autoencoder.py); kept here so flags are checked before Keras loads.
MODEL_IMAGE_SIZES = (32, 64, 128)
PAPER_IMAGE_SIZE = 64  # Sec. 4
TRAINING_IMAGE_SIZES = {"digits": 32}
"""Where training's size differs from the paper's unless told (bagan_train.py's table reads both)."""


def default_image_size(name):
    """The image size a run on dataset `name` has unless --image-size says otherwise."""
    return TRAINING_IMAGE_SIZES.get(name, PAPER_IMAGE_SIZE)

IMBALANCE_STEP = 100
"""Fashion-MNIST / CIFAR-10 imbalance: class c keeps its first IMBALANCE_STEP * c images."""

DIGITS_IMBALANCE = 20
"""Digits imbalance: class c keeps its first ceil(n_c * c / DIGITS_IMBALANCE) images (class 0 whole)."""

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
FASHION_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_REPO = "https://github.com/zalandoresearch/fashion-mnist"
DEBIAN_DATASET_ROOTS = (Path("/usr/share/datasets"), Path("/usr/share"))

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_PY_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
"""Published MD5 of each python training batch (as listed with the dataset and by torchvision)."""

CELL_CLASSES = ["red blood cell", "ring", "schizont", "trophozoite"]
CELLS_URL = "https://storage.googleapis.com/exam-deep-learning/train.zip"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "F")
"""Pillow modes of 16-bit, 32-bit and float images: scaled to 8 bits by one rule per dataset."""
RESIZE_MODES = ("pad", "crop", "stretch")
"""How a non-square image becomes square: padded with its border's colour (the default: cells and
lesions keep their shape), its centre cropped, or stretched."""


class DatasetError(ValueError):
    """Bad or missing dataset input; the message says what to fix."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/test images (uint8, NHWC) and int64 labels of one dataset. `intensity`: how its
    high-bit images (16-bit, float, DICOM) became 8-bit, or None when it has none. `original_size`:
    the image files' size before squaring and resizing (see :func:`_original_size`), or None where
    the loader does not record it (only image folders and cells do). `mixed`: how many images of
    each kind a set of files mixes, or None when it mixes none: "channels" {"grayscale": n,
    "colour": m} (the grayscale images were made RGB), "depth" {"8-bit": n, "16-bit": m, ...} (the
    8-bit images kept as they are, the others scaled by the `intensity` rule)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    channels: int
    name: str
    intensity: dict | None = None
    original_size: dict | None = None
    mixed: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_counts(self) -> list[int]:
        return np.bincount(self.y_train, minlength=self.num_classes).tolist()

    def test_counts(self) -> list[int]:
        return np.bincount(self.y_test, minlength=self.num_classes).tolist()


# ---------------------------------------------------------------- tensors


def to_model_range(images):
    """uint8 images (numpy or tensor) -> float32 tensor in [-1, 1]."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
    """Images in [-1, 1] (numpy or tensor) -> numpy uint8, clipped and rounded."""
    if hasattr(images, "numpy"):
        images = images.numpy()
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


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


def make_tf_dataset(x, y, batch_size, shuffle=True, seed=None, drop_remainder=False,
                    repeat=False, first_epoch=0, steps_per_epoch=None, order=None, balanced_classes=None):
    """Batches of (float32 images in [-1, 1], int32 labels) from uint8 arrays.

    The uint8 array stays in memory once, as the numpy array given: each batch is gathered from it
    by index (``tf.numpy_function``) and converted to float inside ``map``. (A tensor of the images
    captured by ``map`` would be copied on conversion, and again into tf.data's serialised graph:
    three copies at the peak, 0.5 GB for balanced Fashion-MNIST at 64x64.)
    One pass (``repeat=False``) has a known length and reshuffles on every iteration. An endless
    stream (``repeat=True``) orders epoch ``e`` by ``(seed, e)`` alone, so a run resumed at
    ``first_epoch`` sees the same batches as an uninterrupted one; its batches never straddle two
    epochs, and ``steps_per_epoch`` keeps only the first batches of each epoch. ``order``: one pass
    over these indices of ``x`` instead (e.g. balanced_order's), batched as they are.
    ``balanced_classes`` (the number of classes; with ``repeat``): each epoch's ``len(x)`` images are
    drawn by `balanced_order` from ``(seed, e)`` instead, every class alike, so a small class's few
    images recur in every epoch.
    """
    import tensorflow as tf

    if len(x) != len(y):
        raise DatasetError(f"x has {len(x)} images but y has {len(y)} labels.")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    images = np.ascontiguousarray(x, dtype=np.uint8)
    labels = tf.convert_to_tensor(np.asarray(y, dtype=np.int32))

    def gather(idx):
        batch = tf.numpy_function(lambda i: images[i], [idx], tf.uint8, stateful=False)
        batch.set_shape(idx.shape.concatenate(images.shape[1:]))  # a static batch size stays static
        return to_model_range(batch), tf.gather(labels, idx)

    classes = np.asarray(y)

    def epoch_batches(epoch):
        order = tf.range(len(x), dtype=tf.int64)
        if balanced_classes:
            order = tf.numpy_function(lambda e: balanced_order(classes, balanced_classes, len(x), [seed, int(e)]),
                                      [epoch], tf.int64, stateful=False)
            order.set_shape([len(x)])
        elif shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([np.int64(seed), epoch]))
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        return batches.take(steps_per_epoch) if steps_per_epoch else batches

    if order is not None:
        ds = tf.data.Dataset.from_tensor_slices(np.asarray(order, np.int64)).batch(batch_size, drop_remainder)
    elif repeat:
        ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_batches)
    else:
        ds = tf.data.Dataset.range(len(x))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def resize_images(x_uint8: np.ndarray, image_size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 NHWC images, keeping channels.

    Images are resized one by one with Pillow into a preallocated uint8
    array, so memory stays near the size of the result.
    """
    from PIL import Image

    x = np.asarray(x_uint8)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DatasetError("resize_images expects uint8 images of shape (N, H, W, C).")
    if x.shape[1:3] == (image_size, image_size):
        return x
    size = (image_size, image_size)
    out = np.empty((len(x), image_size, image_size, x.shape[-1]), np.uint8)
    for i, img in enumerate(x):
        if img.shape[-1] == 3:
            out[i] = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
        else:
            for c in range(img.shape[-1]):
                out[i, ..., c] = np.asarray(Image.fromarray(img[..., c]).resize(size, Image.BILINEAR))
    return out


# ---------------------------------------------------------------- splits


def _check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise DatasetError(f"image_size must be an integer, got {image_size!r}.")
    if image_size < MIN_IMAGE_SIZE:
        raise DatasetError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}.")
    return int(image_size)


def _keep_first_per_class(y: np.ndarray, keep: list[int]) -> np.ndarray:
    """Indices of the first keep[c] images of each class c, grouped by class."""
    return np.concatenate([np.flatnonzero(y == c)[:k] for c, k in enumerate(keep)])


def _split(x, y, test_size, seed, stratify_names=None):
    """Hold out ``test_size`` of the images with scikit-learn's train_test_split.

    The split is stratified by class when ``stratify_names`` (the class names)
    is given; a small set then holds out at least one image per class, since a
    stratified test split cannot be smaller than the number of classes.
    """
    from sklearn.model_selection import train_test_split

    stratify = stratify_names is not None
    if stratify:
        counts = np.bincount(y, minlength=len(stratify_names))
        for name, n in zip(stratify_names, counts):
            if n == 1:
                raise DatasetError(f"Class {name!r} has only one image; a stratified split needs at least 2.")
        if math.ceil(test_size * len(y)) < len(stratify_names):
            test_size = len(stratify_names)
    try:
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=test_size, shuffle=True, random_state=seed,
            stratify=y if stratify else None,
        )
    except ValueError as e:
        raise DatasetError(f"Cannot split {len(y)} images into train and test: {e}") from None
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


def _paper_protocol(x, y, imbalanced, seed):
    """Fashion-MNIST / CIFAR-10 protocol of the paper (see module docstring)."""
    if imbalanced:
        idx = _keep_first_per_class(y, [len(y) if c == 0 else IMBALANCE_STEP * c for c in range(10)])
        x, y = x[idx], y[idx]
    return _split(x, y, 0.3, seed)


def _finish(name, class_names, parts, image_size) -> Dataset:
    x_tr, y_tr, x_te, y_te = parts
    x_tr = resize_images(x_tr, image_size)
    x_te = resize_images(x_te, image_size)
    return Dataset(x_tr, y_tr, x_te, y_te, list(class_names), int(x_tr.shape[-1]), name)


# ---------------------------------------------------------------- digits


def load_digits_dataset(image_size=64, imbalanced=False, seed=42) -> Dataset:
    """scikit-learn's bundled digits, 70/30 stratified split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    if imbalanced:
        n = np.bincount(y, minlength=10)
        keep = [n[0]] + [math.ceil(n[c] * c / DIGITS_IMBALANCE) for c in range(1, 10)]
        idx = _keep_first_per_class(y, keep)
        x, y = x[idx], y[idx]
    names = [str(c) for c in range(10)]
    return _finish("digits", names, _split(x, y, 0.3, seed, names), image_size)


# ---------------------------------------------------------------- Fashion-MNIST


def read_idx(path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip or plain) into a numpy array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"Cannot read IDX file {path}: {e}.") from None
    if len(data) < 4:
        raise DatasetError(f"IDX file {path} is truncated (no header).")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim == 0:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number).")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"IDX file {path} is truncated (incomplete header).")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise DatasetError(
            f"IDX file {path} is truncated or corrupt: header says {expected} bytes "
            f"of data, found {len(data) - header}."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def keras_home() -> Path:
    """Keras' own folder ($KERAS_HOME, else ~/.keras): datasets/ and models/ (weights) below it."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def fashion_mnist_dirs(data_dir=None) -> list[Path]:
    """Folders searched for the Fashion-MNIST IDX files, in order."""
    dirs = [Path(data_dir)] if data_dir else []
    dirs.append(keras_home() / "datasets" / "fashion-mnist")
    for root in DEBIAN_DATASET_ROOTS:
        if root.is_dir():
            dirs.extend(sorted(p for p in root.glob("*fashion*mnist*") if p.is_dir()))
    return dirs


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _keras_fashion_mnist(test=False):
    """Last resort: Keras' own loader (downloads when online; progress goes to stderr)."""
    import keras

    with contextlib.redirect_stdout(sys.stderr):
        train, test_set = keras.datasets.fashion_mnist.load_data()
    return test_set if test else train


def read_fashion_mnist(data_dir=None, test=False):
    """The 60,000 Fashion-MNIST training images (N, 28, 28, 1) and labels, or with `test` the
    10,000 official test images (t10k)."""
    files = FASHION_TEST_FILES if test else FASHION_FILES
    for folder in fashion_mnist_dirs(data_dir):
        images, labels = (_find_idx(folder, stem) for stem in files)
        if images and labels:
            x, y = read_idx(images), read_idx(labels)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise DatasetError(
                    f"{images} and {labels} do not match: {x.shape} images, {y.shape} labels."
                )
            return x[..., None], _check_labels(y, 10, labels)
    try:
        x, y = _keras_fashion_mnist(test)
    except Exception:
        target = Path(data_dir) if data_dir else keras_home() / "datasets" / "fashion-mnist"
        raise DatasetError(
            f"Fashion-MNIST not found: download {FASHION_URL}{files[0]}.gz and "
            f"{FASHION_URL}{files[1]}.gz (links in {FASHION_REPO}) into {target}."
        ) from None
    return np.asarray(x, np.uint8)[..., None], np.asarray(y, np.int64)


def _check_labels(y, num_classes, source) -> np.ndarray:
    y = np.asarray(y).astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetError(f"{source} has labels outside 0..{num_classes - 1}.")
    return y


def load_fashion_mnist(data_dir=None, image_size=64, imbalanced=False, seed=42) -> Dataset:
    """Fashion-MNIST training images with the paper's 70/30 protocol."""
    x, y = read_fashion_mnist(data_dir)
    parts = _paper_protocol(x, y, imbalanced, seed)
    return _finish("fashion_mnist", FASHION_CLASSES, parts, image_size)


# ---------------------------------------------------------------- CIFAR-10


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def _read_cifar_bin(folder: Path, batches=CIFAR10_TRAIN_BATCHES):
    record = 1 + 3072
    xs, ys = [], []
    for batch in batches:
        path = folder / f"{batch}.bin"
        if not path.is_file():
            raise DatasetError(f"{path} is missing; extract {CIFAR10_BINARY_URL} again.")
        raw = np.fromfile(path, np.uint8)
        if raw.size == 0 or raw.size % record:
            raise DatasetError(f"{path} is truncated or corrupt: its size is not a multiple of {record} bytes.")
        raw = raw.reshape(-1, record)
        ys.append(_check_labels(raw[:, 0], 10, path))
        xs.append(raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.concatenate(xs), np.concatenate(ys)


def _read_cifar_py(folder: Path, batches=CIFAR10_TRAIN_BATCHES):
    paths = [folder / batch for batch in batches]
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"{path} is missing; extract the CIFAR-10 archive again.")
        if _md5(path) != CIFAR10_PY_MD5.get(path.name):
            raise DatasetError(
                f"Refusing to unpickle {path}: its MD5 does not match the published checksum "
                f"and unpickling can run code; use the binary version {CIFAR10_BINARY_URL} instead."
            )
    xs, ys = [], []
    for path in paths:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
        labels = batch.get(b"labels", batch.get("labels")) if isinstance(batch, dict) else None
        data = np.asarray(data, np.uint8) if data is not None else None
        if data is None or labels is None or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise DatasetError(f"{path} is not a CIFAR-10 batch (expected 'data' N x 3072 and 'labels').")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(_check_labels(labels, 10, path))
    return np.concatenate(xs), np.concatenate(ys)


def read_cifar10(data_dir=None, image_size=32, test=False):
    """CIFAR-10 training images, labels and class names (with `test`, the official test batch).

    Official batches give the 50,000 images at 32x32; a class-subfolder
    folder is read at ``image_size`` (class names in CIFAR-10 order when
    they are the official ones, else sorted); it has no test batch.
    """
    roots = [Path(data_dir)] if data_dir else [
        REPO_DIR / "data" / "cifar10", keras_home() / "datasets",
    ]
    batches = ("test_batch",) if test else CIFAR10_TRAIN_BATCHES
    for root in roots:
        for folder in (root, root / "cifar-10-batches-bin"):
            if (folder / "data_batch_1.bin").is_file():
                return (*_read_cifar_bin(folder, batches), CIFAR10_CLASSES)
        for folder in (root, root / "cifar-10-batches-py"):
            if (folder / "data_batch_1").is_file():
                return (*_read_cifar_py(folder, batches), CIFAR10_CLASSES)
    if test:
        raise DatasetError("CIFAR-10's official test batch was not found (class folders have none); "
                           "use the hold-out test split")
    if data_dir and Path(data_dir).is_dir() and _class_dirs(Path(data_dir)):
        found = len(_class_dirs(Path(data_dir)))
        if found != 10:
            raise DatasetError(f"A CIFAR-10 class folder needs 10 class subfolders; {data_dir} has {found}.")
        x, y, names, _ = _read_image_folder(Path(data_dir), image_size)
        if sorted(names) == sorted(CIFAR10_CLASSES):
            y = np.array([CIFAR10_CLASSES.index(n) for n in names])[y]
            names = CIFAR10_CLASSES
        return x, y, names
    where = Path(data_dir) if data_dir else REPO_DIR / "data" / "cifar10"
    raise DatasetError(
        f"CIFAR-10 not found: download {CIFAR10_BINARY_URL} and extract it into {where} "
        f"(so that {where / 'cifar-10-batches-bin' / 'data_batch_1.bin'} exists)."
    )


def load_cifar10(data_dir=None, image_size=64, imbalanced=False, seed=42) -> Dataset:
    """CIFAR-10 training images with the paper's 70/30 protocol."""
    x, y, names = read_cifar10(data_dir, image_size)
    return _finish("cifar10", names, _paper_protocol(x, y, imbalanced, seed), image_size)


# ---------------------------------------------------------------- image files


def _square(im, resize):
    """A square version of a Pillow image: padded with the median colour of its border, its centre
    cropped, or unchanged (stretched later by the resize)."""
    from PIL import Image
    width, height = im.size
    if resize == "stretch" or width == height:
        return im
    side = min(width, height) if resize == "crop" else max(width, height)
    if resize == "crop":
        left, top = (width - side) // 2, (height - side) // 2
        return im.crop((left, top, left + side, top + side))
    pixels = np.asarray(im)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = np.median(border, axis=0)
    fill = float(colour) if im.mode == "F" else tuple(int(v) for v in np.atleast_1d(np.rint(colour)))
    canvas = Image.new(im.mode, (side, side), fill if im.mode == "F" or len(fill) > 1 else fill[0])
    canvas.paste(im, ((side - width) // 2, (side - height) // 2))
    return canvas


def _dicom(path: Path):
    """A DICOM file's pixels: (8-bit values through the file's window, True) when it has a window
    centre and width, else (modality values: pixel * slope + intercept, False). MONOCHROME1 is
    inverted; a multi-frame file is refused."""
    import pydicom
    ds = pydicom.dcmread(path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DatasetError(f"{path} has {frames} frames: one image per file is needed (split the series)")
    values = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1) \
        + float(getattr(ds, "RescaleIntercept", 0) or 0)
    windowed = "WindowCenter" in ds and "WindowWidth" in ds
    if windowed:
        first = [v[0] if isinstance(v, pydicom.multival.MultiValue) else v for v in (ds.WindowCenter, ds.WindowWidth)]
        centre, width = (float(v) for v in first)
        values = np.clip((values - (centre - width / 2)) / max(width, 1e-6), 0, 1) * 255.0
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        values = (255.0 - values) if windowed else (values.max() + values.min() - values)
    return values, windowed


def _depth(mode):
    """The bit depth of a Pillow mode, as the console and Dataset.mixed name it."""
    return "16-bit" if mode.startswith("I;16") else {"I": "32-bit", "F": "float"}.get(mode, "8-bit")


def _open_image(path: Path, image_size: int, resize="pad", sizes=None, depths=None):
    """One image file at ``image_size`` x ``image_size``: (uint8 RGB array, grayscale?) for 8-bit
    images and windowed DICOM, or (float32 2-D array, None) for high-bit ones, still to be scaled.
    The file's own (width, height) is appended to the list `sizes`, and its depth ("8-bit",
    "16-bit", "32-bit", "float", "DICOM", "windowed DICOM") to the list `depths`, when one is given."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.suffix.lower() == ".dcm":
            values, windowed = _dicom(path)
            if sizes is not None:
                sizes.append((values.shape[1], values.shape[0]))
            if depths is not None:
                depths.append("windowed DICOM" if windowed else "DICOM")
            im = Image.fromarray(values.astype(np.float32), mode="F")
            if windowed:
                return _resized(im, image_size, resize, to_rgb=False), True
            return np.asarray(_square(im, resize).resize((image_size, image_size), Image.BILINEAR)), None
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                if sizes is not None:
                    sizes.append(im.size)
                if depths is not None:
                    depths.append(_depth(im.mode))
                if im.mode in HIGH_BIT_MODES:
                    im = Image.fromarray(np.asarray(im, np.float32), mode="F")
                    return np.asarray(_square(im, resize).resize((image_size, image_size), Image.BILINEAR)), None
                return _resized(im, image_size, resize), im.mode in GRAYSCALE_MODES
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(
            f"Image {path} is too large to decode safely (over Pillow's {Image.MAX_IMAGE_PIXELS} pixel limit)."
        ) from None
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, AttributeError) as e:
        raise DatasetError(f"Cannot read image {path}: {e}.") from None


def _resized(im, image_size, resize, to_rgb=True):
    """An 8-bit (or 0..255 float) Pillow image squared, resized and as a uint8 RGB array."""
    from PIL import Image
    square = _square(im.convert("RGB") if to_rgb else im, resize).resize((image_size, image_size), Image.BILINEAR)
    pixels = np.clip(np.rint(np.asarray(square, np.float32)), 0, 255).astype(np.uint8)
    return pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=-1)


def _load_images(paths, image_size, resize="pad", window=None, sizes=None, mixed=None):
    """Images of ``paths`` as uint8 (N, S, S, C), one channel if all are grayscale, and the rule
    that brought high-bit images to 8 bits (None without any): every high-bit image of the set is
    scaled linearly from one range, the `window` (low, high) when given, else the lowest and
    highest value over all of them (after resizing); DICOM files with a window centre and width use
    their own. The files' own (width, height) are appended to the list `sizes` when one is given;
    a set that mixes grayscale with colour, or 8-bit with high-bit images, says so on stderr and
    in the dict `mixed` when one is given (Dataset.mixed)."""
    x = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    all_gray, high_bit, dicom_windows, colour, depths = True, {}, 0, 0, []
    for i, path in enumerate(paths):
        pixels, gray = _open_image(path, image_size, resize, sizes, depths)
        if gray is None:
            high_bit[i] = pixels
        else:
            x[i] = pixels
            all_gray &= gray
            colour += not gray
            dicom_windows += path.suffix.lower() == ".dcm"
    if colour and colour < len(paths):
        gray = len(paths) - colour
        print(f"[datasets] {gray} grayscale image{'s were' if gray > 1 else ' was'} made RGB (the gray copied to "
              f"red, green and blue) because {colour} image{'s are' if colour > 1 else ' is'} colour",
              file=sys.stderr)
        if mixed is not None:
            mixed["channels"] = dict(grayscale=gray, colour=colour)
    intensity = dict(rule="dicom window", images=dicom_windows) if dicom_windows else None
    if high_bit:
        values = np.stack(list(high_bit.values()))
        low, high = window if window else (float(values.min()), float(values.max()))
        scaled = np.clip((values - low) / max(high - low, 1e-12), 0, 1) * 255.0
        x[list(high_bit)] = np.rint(scaled).astype(np.uint8)[..., None]
        intensity = dict(rule="window" if window else "range", low=float(low), high=float(high), images=len(high_bit))
        said = f"{len(high_bit)} high-bit images"
        kept = {kind: depths.count(kind) for kind in ("8-bit", "windowed DICOM") if kind in depths}
        if kept:  # 8-bit and high-bit images in one set
            kinds = {kind: depths.count(kind) for kind in ("16-bit", "32-bit", "float", "DICOM") if kind in depths}
            said = (" and ".join(f"{n} {kind}" for kind, n in kept.items()) + " images kept as they are, "
                    + " and ".join(f"{n} {kind}" for kind, n in kinds.items()) + " images")
            if mixed is not None:
                mixed["depth"] = {**kept, **kinds}
        print(f"[datasets] {said} scaled linearly from "
              f"{'the window' if window else 'the dataset range'} {low:g}..{high:g} to 0..255", file=sys.stderr)
    x = np.ascontiguousarray(x[..., :1]) if all_gray and len(paths) else x
    return x, intensity


def _original_size(sizes):
    """The record of the files' original (width, height) pairs: the most common size (the first
    seen among equally common ones), how many images had it, of how many, and how many distinct
    sizes there were; None without images."""
    from collections import Counter
    if not sizes:
        return None
    counts = Counter((int(w), int(h)) for w, h in sizes)
    (width, height), n = counts.most_common(1)[0]
    return dict(width=width, height=height, images=n, of=len(sizes), sizes=len(counts))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_image_folder(folder: Path, image_size: int, resize="pad", window=None, sizes=None, mixed=None):
    """Images, labels, class names and intensity rule of a folder with one subfolder per class."""
    classes = _class_dirs(folder)
    if len(classes) < 2:
        raise DatasetError(
            f"{folder} must hold one subfolder per class and at least 2 classes; found {len(classes)}."
        )
    paths, labels = [], []
    for c, sub in enumerate(classes):
        files = _image_files(sub)
        if not files:
            raise DatasetError(f"Class folder {sub} contains no PNG/JPEG/BMP/TIFF/DICOM images.")
        paths += files
        labels += [c] * len(files)
    x, intensity = _load_images(paths, image_size, resize, window, sizes, mixed)
    return x, np.asarray(labels, np.int64), [p.name for p in classes], intensity


def load_image_folder(folder, image_size=64, seed=42, resize="pad", window=None) -> Dataset:
    """Any folder of class subfolders, 80/20 stratified split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"Dataset folder {folder} does not exist.")
    sizes, mixed = [], {}
    x, y, names, intensity = _read_image_folder(folder, image_size, resize, window, sizes, mixed)
    parts = _split(x, y, 0.2, seed, names)
    return Dataset(*parts, names, int(x.shape[-1]), folder.name, intensity, _original_size(sizes), mixed or None)


def _cells_folder(data_dir) -> Path:
    folder = Path(data_dir) if data_dir else REPO_DIR / "data" / "cells"
    if not folder.is_dir():
        raise DatasetError(
            f"Cell images not found: download {CELLS_URL} and unzip it into {folder} "
            f"(the folder holding train/ or the <name>.png and <name>.txt files)."
        )
    if not any(folder.glob("*.png")) and (folder / "train").is_dir():
        folder = folder / "train"
    return folder


def load_cells(data_dir=None, image_size=64, seed=42, resize="pad") -> Dataset:
    """The malaria cell images (png + txt label), 80/20 stratified split."""
    folder = _cells_folder(data_dir)
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise DatasetError(f"No .png cell images in {folder}; unzip {CELLS_URL} there.")
    labels = []
    for path in paths:
        txt = path.with_suffix(".txt")
        try:
            text = txt.read_text(encoding="utf-8").strip().lower()
        except (OSError, UnicodeDecodeError):
            raise DatasetError(f"Label file {txt} for {path.name} is missing or unreadable.") from None
        if text not in CELL_CLASSES:
            raise DatasetError(f"Label file {txt} says {text!r}, not one of {CELL_CLASSES}.")
        labels.append(CELL_CLASSES.index(text))
    y = np.asarray(labels, np.int64)
    if len(np.unique(y)) < 2:
        raise DatasetError(f"{folder} holds only one class of cells; at least 2 are needed.")
    sizes = []
    x, _ = _load_images(paths, image_size, resize, sizes=sizes)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return Dataset(*_split(x, y, 0.2, seed, CELL_CLASSES), list(CELL_CLASSES), 3, "cells",
                   original_size=_original_size(sizes))


# ---------------------------------------------------------------- balanced test sets


BALANCED_TEST_SETS = ("digits", "fashion_mnist", "cifar10")


def balanced_test_set(name, data_dir=None, image_size=64, seed=42, exclude=()):
    """A test set balanced over the classes, holding no image of `exclude` (compared by content).

    fashion_mnist and cifar10: the official test files (t10k, test_batch), 1000 images per class,
    which the paper's protocols never train on. digits: of the 1797 images, those not in
    `exclude` (the training split a model saw), the same number of each class: as many as the class
    with the fewest such images has, drawn with ``default_rng([seed, 3])``.
    Returns (x, y, description).
    """
    image_size = _check_image_size(image_size)
    if name == "fashion_mnist":
        x, y = read_fashion_mnist(data_dir, test=True)
        description = "the official Fashion-MNIST test files (t10k)"
    elif name == "cifar10":
        x, y, _ = read_cifar10(data_dir, test=True)
        description = "the official CIFAR-10 test batch"
    elif name == "digits":
        from sklearn.datasets import load_digits
        bunch = load_digits()
        x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        y = bunch.target.astype(np.int64)
        description = "digits not in the training split, as many of each class as the scarcest class has"
    else:
        raise DatasetError(f"{name} has no balanced test set; its test split is the stratified hold-out")
    x = resize_images(x, image_size)
    seen = {image.tobytes() for image in np.asarray(exclude)}
    keep = np.array([image.tobytes() not in seen for image in x], bool)
    x, y = x[keep], y[keep]
    if name == "digits":
        n = np.bincount(y, minlength=10).min()
        rng = np.random.default_rng([seed, 3])
        idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in range(10)]))
        x, y = x[idx], y[idx]
    return x, y, description


# ---------------------------------------------------------------- entry point


def load_dataset(name, data_dir=None, image_size=64, imbalanced=False, seed=42, resize="pad", window=None) -> Dataset:
    """Load a dataset by name (see DATASET_NAMES) or from a folder path. `resize` (RESIZE_MODES)
    squares non-square images (cells, folders); `window` (low, high) scales a folder's high-bit
    images instead of its own value range."""
    image_size = _check_image_size(image_size)
    if resize not in RESIZE_MODES:
        raise DatasetError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if name == "digits":
        return load_digits_dataset(image_size, imbalanced, seed)
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir, image_size, imbalanced, seed)
    if name == "cifar10":
        return load_cifar10(data_dir, image_size, imbalanced, seed)
    if name == "cells":
        return load_cells(data_dir, image_size, seed, resize)
    if Path(name).is_dir():
        return load_image_folder(name, image_size, seed, resize, window)
    raise DatasetError(f"Unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)} or an existing folder path.")


def add_dataset_arguments(parser, defaults):
    """--dataset, --data-dir, --imbalanced/--no-imbalanced and --image-size, the flags every script
    shares. Unset, they are None and the script fills them in (training's table, a run's
    config.json); `defaults` says how in the help, one text or one per flag. Check them with
    check_dataset_arguments."""
    said = defaults if isinstance(defaults, dict) else dict.fromkeys(("dataset", "imbalanced", "image_size"), defaults)
    group = parser.add_argument_group("dataset")
    group.add_argument("--dataset", help=f"{', '.join(DATASET_NAMES)} or a folder of class subfolders "
                                         f"(default: {said['dataset']})")
    group.add_argument("--data-dir", help="where the dataset's files are (default: searched, see docs/training.md#datasets)")
    group.add_argument("--imbalanced", action=argparse.BooleanOptionalAction,
                       help=f"the paper's imbalanced protocol of digits, fashion_mnist, cifar10 "
                            f"(default: {said['imbalanced']})")
    group.add_argument("--image-size", type=int, help=f"images are resized to S x S (default: {said['image_size']})")
    group.add_argument("--resize", choices=RESIZE_MODES,
                       help="how a non-square image becomes square: pad (with its border's colour, the default: "
                            "cells and lesions keep their shape), crop (its centre) or stretch")
    group.add_argument("--window", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help="16-bit, float and DICOM images without a window: scale LOW..HIGH to 0..255 "
                            "(default: the dataset's own value range)")
    return group


IMBALANCED_PROTOCOLS = ("digits", "fashion_mnist", "cifar10")


def check_dataset_arguments(args, image_sizes=None):
    """DatasetError naming the flag when --dataset names no dataset or folder, --data-dir does not
    exist, --imbalanced is given for a dataset without the paper's imbalanced protocol, or
    --image-size is out of range (not one of `image_sizes`, when given)."""
    if args.dataset is not None and args.dataset not in DATASET_NAMES and not Path(args.dataset).is_dir():
        if os.sep in args.dataset or args.dataset.startswith("."):
            raise DatasetError(f"dataset folder {args.dataset} not found")
        raise DatasetError(f"unknown dataset {args.dataset!r}: use one of {', '.join(DATASET_NAMES)} "
                           "or a folder of class subfolders")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        fetch = {"cells": f"unzip {CELLS_URL} there", "cifar10": f"extract {CIFAR10_BINARY_URL} there",
                 "fashion_mnist": f"put the files of {FASHION_URL} there"}.get(args.dataset or "digits")
        raise DatasetError(f"--data-dir {args.data_dir} does not exist" + (f": {fetch}" if fetch else ""))
    if args.imbalanced and (args.dataset or "digits") not in IMBALANCED_PROTOCOLS:
        raise DatasetError(f"--imbalanced applies to {', '.join(IMBALANCED_PROTOCOLS[:-1])} and "
                           f"{IMBALANCED_PROTOCOLS[-1]} (the paper's protocols); cells and class folders are "
                           "used as they are")
    if args.image_size is not None:
        if image_sizes and args.image_size not in image_sizes:
            raise DatasetError(f"image size {args.image_size} is not supported: use one of "
                               f"{', '.join(map(str, image_sizes))}")
        _check_image_size(args.image_size)


def main(argv=None) -> int:
    from console import ArgumentParser
    parser = ArgumentParser(description="Show the per-class split of a dataset.")
    add_dataset_arguments(parser, dict(dataset="digits", imbalanced="no",
                                       image_size="the size training uses: digits 32, others 64"))
    parser.add_argument("--seed", type=int, default=42, help="the split's seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        check_dataset_arguments(args)
        name = args.dataset or "digits"
        ds = load_dataset(name, args.data_dir, args.image_size or default_image_size(name), bool(args.imbalanced),
                          args.seed, args.resize or "pad", args.window)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    train, test = ds.train_counts(), ds.test_counts()
    if args.json:
        print(json.dumps({
            "class_names": ds.class_names, "train_counts": train, "test_counts": test,
            "image_shape": list(ds.x_train.shape[1:]),
        }))
        return 0
    width = max(len("class"), *(len(n) for n in ds.class_names))
    print(f"{'class':<{width}}  {'train':>7}  {'test':>7}")
    for n, a, b in zip(ds.class_names, train, test):
        print(f"{n:<{width}}  {a:>7}  {b:>7}")
    print(f"{'total':<{width}}  {sum(train):>7}  {sum(test):>7}")
    print(f"image shape: {tuple(ds.x_train.shape[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
