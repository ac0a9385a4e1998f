"""Tests of datasets.py on small fixtures in the real on-disk formats."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]

import datasets
from datasets import DatasetError, load_dataset
from _fixtures import (
    cifar_records, make_cells, make_fashion_like, make_image_folder, png_bytes,
    write_cifar_bin, write_cifar_py, write_idx,
)

TABLE1_A = [4231, 4165, 4199, 4211, 4185, 4217, 4189, 4241, 4175, 4187]
TABLE1_B = [4166, 73, 139, 210, 287, 370, 422, 487, 545, 651]
CELL_COUNTS = {"red blood cell": 7000, "ring": 365, "schizont": 133, "trophozoite": 1109}


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Hide the Keras cache, the Debian package and the Keras download."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(datasets, "DEBIAN_DATASET_ROOTS", ())

    def offline(test=False):
        raise OSError("no network")

    monkeypatch.setattr(datasets, "_keras_fashion_mnist", offline)


def check_arrays(ds, size, channels):
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.uint8 and x.shape[1:] == (size, size, channels)
    for y in (ds.y_train, ds.y_test):
        assert y.dtype == np.int64
    assert ds.channels == channels
    assert len(ds.train_counts()) == len(ds.test_counts()) == ds.num_classes


# ---------------------------------------------------------------- digits


def test_digits_balanced_real_data():
    ds = load_dataset("digits", image_size=16)
    check_arrays(ds, 16, 1)
    assert ds.class_names == [str(c) for c in range(10)]
    assert len(ds.y_train) == 1257 and len(ds.y_test) == 540
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    total = np.add(ds.train_counts(), ds.test_counts())
    assert total.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_imbalanced_follows_rule():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    n = np.bincount(bunch.target)
    expected = [n[0]] + [math.ceil(n[c] * c / 20) for c in range(1, 10)]
    assert expected == [178, 10, 18, 28, 37, 46, 55, 63, 70, 81]

    ds = load_dataset("digits", image_size=8, imbalanced=True)
    check_arrays(ds, 8, 1)
    assert np.add(ds.train_counts(), ds.test_counts()).tolist() == expected
    originals = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    for c in range(1, 10):
        first = {originals[i].tobytes() for i in np.flatnonzero(bunch.target == c)[: expected[c]]}
        kept = [x[..., 0].tobytes() for x, y in zip(ds.x_train, ds.y_train) if y == c]
        assert kept and all(k in first for k in kept)


# ---------------------------------------------------------------- Fashion-MNIST


def test_fashion_protocol_on_fixture(tmp_path, no_system_fashion):
    x, y = make_fashion_like(tmp_path / "fm")
    ds = load_dataset("fashion_mnist", data_dir=tmp_path / "fm", image_size=8)
    check_arrays(ds, 8, 1)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    _, _, y_tr, y_te = train_test_split(x, y, test_size=0.3, shuffle=True, random_state=42)
    assert ds.train_counts() == np.bincount(y_tr, minlength=10).tolist()
    assert ds.test_counts() == np.bincount(y_te, minlength=10).tolist()
    assert np.array_equal(ds.y_train, y_tr)


def test_fashion_imbalanced_keeps_first_100c(tmp_path, no_system_fashion):
    _, y = make_fashion_like(tmp_path / "fm")
    ds = load_dataset("fashion_mnist", data_dir=tmp_path / "fm", image_size=8, imbalanced=True)
    totals = np.add(ds.train_counts(), ds.test_counts()).tolist()
    assert totals == [950] + [100 * c for c in range(1, 10)]
    assert sum(ds.train_counts()) == 5450 - math.ceil(0.3 * 5450)
    grouped = np.concatenate([np.flatnonzero(y == c)[: 950 if c == 0 else 100 * c] for c in range(10)])
    _, _, y_tr, _ = train_test_split(grouped, y[grouped], test_size=0.3, shuffle=True, random_state=42)
    assert np.array_equal(ds.y_train, y_tr)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert np.all(x[y > 0] == 255), "an image past the first 100*c of its class was kept"


def test_fashion_uncompressed_and_search_order(tmp_path, monkeypatch, no_system_fashion):
    make_fashion_like(tmp_path / "plain", per_class=3, gz=False)
    cache = tmp_path / "keras_home" / "datasets" / "fashion-mnist"
    make_fashion_like(cache, per_class=5)
    assert len(load_dataset("fashion_mnist", data_dir=tmp_path / "plain", image_size=8).y_train) == 21
    assert len(load_dataset("fashion_mnist", image_size=8).y_train) == 35
    debian = tmp_path / "usr_share"
    make_fashion_like(debian / "fashion-mnist", per_class=4)
    monkeypatch.setattr(datasets, "DEBIAN_DATASET_ROOTS", (debian,))
    assert len(load_dataset("fashion_mnist", data_dir=tmp_path / "nowhere", image_size=8).y_train) == 35
    for p in cache.iterdir():
        p.unlink()
    assert len(load_dataset("fashion_mnist", image_size=8).y_train) == 28


def test_fashion_keras_fallback(monkeypatch, no_system_fashion):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    monkeypatch.setattr(datasets, "_keras_fashion_mnist", lambda test=False: (x, np.arange(50) % 10))
    ds = load_dataset("fashion_mnist", image_size=8)
    assert len(ds.y_train) == 35 and ds.x_train.shape[1:] == (8, 8, 1)


def test_fashion_missing_says_what_to_download(tmp_path, no_system_fashion):
    target = tmp_path / "empty"
    target.mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset("fashion_mnist", data_dir=target)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "fashion-mnist" in msg and str(target) in msg
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated_data", "truncated_gzip", "bad_magic"])
def test_fashion_bad_idx_names_file(tmp_path, no_system_fashion, damage):
    folder = tmp_path / "fm"
    make_fashion_like(folder, per_class=10)
    images = folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if damage == "truncated_data":
        images.write_bytes(gzip.compress(raw[:-7]))
    elif damage == "truncated_gzip":
        images.write_bytes(images.read_bytes()[:-20])
    else:
        images.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + raw[4:]))
    before = images.read_bytes()
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion_mnist", data_dir=folder)
    assert images.read_bytes() == before


def test_idx_reader_shape_and_mismatched_labels(tmp_path, no_system_fashion):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    assert np.array_equal(datasets.read_idx(write_idx(tmp_path / "a.gz", arr)), arr)
    folder = tmp_path / "fm"
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((4, 4, 4), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match="do not match"):
        load_dataset("fashion_mnist", data_dir=folder)


def _real_fashion_dir():
    for folder in datasets.fashion_mnist_dirs():
        if all(datasets._find_idx(folder, stem) for stem in datasets.FASHION_FILES):
            return folder
    return None


@pytest.mark.skipif(_real_fashion_dir() is None, reason="real Fashion-MNIST files not on this machine "
                    "(install the Debian package dataset-fashion-mnist or fill the Keras cache)")
def test_fashion_real_counts_match_paper_table1():
    ds = load_dataset("fashion_mnist", image_size=8)
    assert ds.train_counts() == TABLE1_A
    assert sum(ds.test_counts()) == 18000
    ds = load_dataset("fashion_mnist", image_size=8, imbalanced=True)
    assert ds.train_counts() == TABLE1_B


# ---------------------------------------------------------------- CIFAR-10


def test_cifar_binary_layout_and_protocol(tmp_path, monkeypatch):
    x, y = cifar_records()
    write_cifar_bin(tmp_path / "cifar-10-batches-bin", x, y)
    ds = load_dataset("cifar10", data_dir=tmp_path, image_size=32)
    check_arrays(ds, 32, 3)
    assert ds.class_names == datasets.CIFAR10_CLASSES
    _, _, y_tr, _ = train_test_split(x, y, test_size=0.3, shuffle=True, random_state=42)
    assert np.array_equal(ds.y_train, y_tr)
    ramp = np.arange(32) * 8
    assert np.all(ds.x_train[..., 1] == ramp[:, None]) and np.all(ds.x_train[..., 2] == ramp[None, :])

    monkeypatch.setattr(datasets, "IMBALANCE_STEP", 2)
    ds = load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-bin", image_size=8, imbalanced=True)
    check_arrays(ds, 8, 3)
    assert np.add(ds.train_counts(), ds.test_counts()).tolist() == [20] + [2 * c for c in range(1, 10)]
    assert np.all(ds.x_train[ds.y_train > 0][..., 0] == 255)


def test_cifar_truncated_binary_names_file(tmp_path):
    x, y = cifar_records()
    folder = write_cifar_bin(tmp_path / "cifar-10-batches-bin", x, y)
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="data_batch_3.bin"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_pickles_need_published_md5(tmp_path, monkeypatch):
    x, y = cifar_records()
    folder = write_cifar_py(tmp_path / "cifar-10-batches-py", x, y)
    with pytest.raises(DatasetError, match="MD5") as err:
        load_dataset("cifar10", data_dir=tmp_path, image_size=32)
    assert "data_batch_1" in str(err.value) and "binary" in str(err.value)

    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(datasets, "CIFAR10_PY_MD5", sums)
    ds = load_dataset("cifar10", data_dir=tmp_path, image_size=32)
    write_cifar_bin(tmp_path / "bin" / "cifar-10-batches-bin", x, y)
    ref = load_dataset("cifar10", data_dir=tmp_path / "bin", image_size=32)
    assert np.array_equal(ds.x_train, ref.x_train) and np.array_equal(ds.y_train, ref.y_train)


def test_cifar_class_folders_use_official_order(tmp_path):
    spec = {name: [("RGB", (5, 7), "PNG")] * 3 for name in reversed(datasets.CIFAR10_CLASSES)}
    make_image_folder(tmp_path / "c", spec)
    ds = load_dataset("cifar10", data_dir=tmp_path / "c", image_size=8)
    check_arrays(ds, 8, 3)
    assert ds.class_names == datasets.CIFAR10_CLASSES
    assert sum(ds.train_counts()) == 21


def test_cifar_missing_says_where(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", data_dir=tmp_path / "none")
    assert "cifar-10-binary.tar.gz" in str(err.value) and str(tmp_path / "none") in str(err.value)


# ---------------------------------------------------------------- cells


@pytest.fixture(scope="module")
def cells_dir(tmp_path_factory):
    return make_cells(tmp_path_factory.mktemp("cells") / "train", CELL_COUNTS)


def test_cells_exact_split(cells_dir):
    ds = load_dataset("cells", data_dir=cells_dir.parent, image_size=8)
    check_arrays(ds, 8, 3)
    assert ds.class_names == ["red blood cell", "ring", "schizont", "trophozoite"]
    assert ds.train_counts() == [5600, 292, 106, 887]
    assert ds.test_counts() == [1400, 73, 27, 222]
    same = load_dataset("cells", data_dir=cells_dir, image_size=8, imbalanced=True)
    assert np.array_equal(same.y_train, ds.y_train)


def test_cells_labels_are_normalised_and_checked(tmp_path):
    folder = make_cells(tmp_path / "c", {"  Ring \n": 3, "RED BLOOD CELL": 3})
    ds = load_dataset("cells", data_dir=folder, image_size=8)
    assert np.add(ds.train_counts(), ds.test_counts()).tolist() == [3, 3, 0, 0]
    bad = folder / "0_00001.txt"
    bad.write_text("gametocyte")
    with pytest.raises(DatasetError, match="0_00001.txt"):
        load_dataset("cells", data_dir=folder, image_size=8)
    bad.unlink()
    with pytest.raises(DatasetError, match="0_00001.txt"):
        load_dataset("cells", data_dir=folder, image_size=8)


def test_cells_missing_folder_says_what_to_download(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("cells", data_dir=tmp_path / "cells")
    assert datasets.CELLS_URL in str(err.value) and str(tmp_path / "cells") in str(err.value)
    assert not (tmp_path / "cells").exists()


# ---------------------------------------------------------------- image folders


def test_folder_mixed_modes_and_sizes(tmp_path):
    spec = {
        "b_cat": [("L", (9, 5), "PNG"), ("RGBA", (12, 12), "PNG"), ("P", (7, 7), "PNG")] * 2,
        "a_dog": [("RGB", (20, 10), "JPEG"), ("L", (4, 4), "BMP"), ("1", (6, 6), "PNG")] * 2,
    }
    make_image_folder(tmp_path / "pets", spec)
    (tmp_path / "pets" / "a_dog" / "notes.txt").write_text("not an image")
    ds = load_dataset(str(tmp_path / "pets"), image_size=8)
    check_arrays(ds, 8, 3)
    assert ds.class_names == ["a_dog", "b_cat"] and ds.name == "pets"
    assert np.add(ds.train_counts(), ds.test_counts()).tolist() == [6, 6] and len(ds.y_test) == 3


def test_folder_all_grayscale_gives_one_channel(tmp_path):
    spec = {"x": [("L", (5, 5), "PNG")] * 5, "y": [("1", (9, 3), "PNG"), ("LA", (4, 4), "PNG")] * 3}
    make_image_folder(tmp_path / "g", spec)
    ds = load_dataset(str(tmp_path / "g"), image_size=10, imbalanced=True)
    check_arrays(ds, 10, 1)
    assert ds.train_counts() == [4, 4] and ds.test_counts() == [1, 2]


def test_a_folder_mixing_grayscale_with_colour_or_8_with_16_bit_says_so_and_records_it(tmp_path, capsys):
    """One line on stderr each: how many images of each kind and what became of them; Dataset.mixed
    (and config.json through TrainConfig.record) keeps the counts. A folder of one kind says nothing."""
    from bagan_train import TrainConfig
    make_image_folder(tmp_path / "colour", {"a": [("RGB", (6, 6), "PNG")] * 3 + [("L", (6, 6), "PNG")] * 2,
                                            "b": [("L", (6, 6), "JPEG")] * 4})
    ds = load_dataset(str(tmp_path / "colour"), image_size=8)
    assert ds.channels == 3 and ds.mixed == {"channels": {"grayscale": 6, "colour": 3}}
    assert capsys.readouterr().err == ("[datasets] 6 grayscale images were made RGB (the gray copied to red, green "
                                       "and blue) because 3 images are colour\n")
    assert TrainConfig.create(dataset=str(tmp_path / "colour"), image_size=32).record(ds)["mixed"] == ds.mixed

    folder = make_image_folder(tmp_path / "depth", {"a": [("L", (6, 6), "PNG")] * 2 + [("I;16", (6, 6), "PNG")] * 3,
                                                    "b": [("L", (6, 6), "PNG")] * 2 + [("I;16", (6, 6), "PNG")] * 3})
    save16(folder / "a" / "bright.png", gradient16(high=4000))  # 16x16: its range kept at image size 16
    ds = load_dataset(str(folder), image_size=16)
    assert ds.channels == 1 and ds.mixed == {"depth": {"8-bit": 4, "16-bit": 7}}
    assert ds.intensity == dict(rule="range", low=0.0, high=4000.0, images=7)
    assert capsys.readouterr().err == ("[datasets] 4 8-bit images kept as they are, 7 16-bit images scaled linearly "
                                       "from the dataset range 0..4000 to 0..255\n")

    make_image_folder(tmp_path / "plain", {"a": [("L", (6, 6), "PNG")] * 3, "b": [("L", (6, 6), "PNG")] * 3})
    assert load_dataset(str(tmp_path / "plain"), image_size=8).mixed is None
    assert capsys.readouterr().err == ""


def test_folder_errors(tmp_path):
    make_image_folder(tmp_path / "one", {"only": [("L", (4, 4), "PNG")] * 3})
    with pytest.raises(DatasetError, match="at least 2 classes"):
        load_dataset(str(tmp_path / "one"))
    make_image_folder(tmp_path / "empty", {"a": [("L", (4, 4), "PNG")] * 3, "b": []})
    with pytest.raises(DatasetError, match="contains no"):
        load_dataset(str(tmp_path / "empty"))
    make_image_folder(tmp_path / "single", {"a": [("L", (4, 4), "PNG")] * 3, "b": [("L", (4, 4), "PNG")]})
    with pytest.raises(DatasetError, match="only one image"):
        load_dataset(str(tmp_path / "single"))
    make_image_folder(tmp_path / "tiny", {"a": [("L", (4, 4), "PNG")] * 2, "b": [("L", (4, 4), "PNG")] * 2})
    tiny = load_dataset(str(tmp_path / "tiny"), image_size=8)
    assert tiny.train_counts() == [1, 1] and tiny.test_counts() == [1, 1]
    with pytest.raises(DatasetError, match="10 class subfolders"):
        load_dataset("cifar10", data_dir=tmp_path / "tiny")
    with pytest.raises(DatasetError, match="Unknown dataset"):
        load_dataset(str(tmp_path / "missing"))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_folder_unreadable_image_names_file(tmp_path, damage):
    make_image_folder(tmp_path / "f", {"a": [("RGB", (16, 16), "PNG")] * 3, "b": [("RGB", (16, 16), "PNG")] * 3})
    path = tmp_path / "f" / "b" / "img1.png"
    full = png_bytes("RGB", (64, 64), 7)
    path.write_bytes(full[: len(full) // 2] if damage == "truncated" else b"not a png at all")
    with pytest.raises(DatasetError, match="img1.png"):
        load_dataset(str(tmp_path / "f"), image_size=8)
    assert path.stat().st_size in (len(full) // 2, 16)


@pytest.mark.parametrize("limit", [100, 300])
def test_decompression_bomb_is_refused(tmp_path, monkeypatch, limit):
    make_image_folder(tmp_path / "f", {"a": [("L", (20, 20), "PNG")] * 2, "b": [("L", (4, 4), "PNG")] * 2})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DatasetError, match="img0.png.*too large"):
        load_dataset(str(tmp_path / "f"), image_size=8)


def test_image_size_below_8_is_refused():
    for size in (7, 0, -3):
        with pytest.raises(DatasetError, match="at least 8"):
            load_dataset("digits", image_size=size)
    with pytest.raises(DatasetError, match="integer"):
        load_dataset("digits", image_size=8.5)


# ---------------------------------------------------------------- tensors


def test_resize_keeps_channels_and_dtype():
    x = np.full((5, 6, 6, 3), 77, np.uint8)
    for c in (1, 2, 3):
        out = datasets.resize_images(x[..., :c].copy(), 13)
        assert out.shape == (5, 13, 13, c) and out.dtype == np.uint8 and np.all(out == 77)
    gradient = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))[None, ..., None]
    small = datasets.resize_images(gradient, 8)
    assert small.shape == (1, 8, 8, 1) and np.all(np.diff(small[0, 0, :, 0].astype(int)) > 0)
    assert datasets.resize_images(x, 6) is x


def test_model_range_round_trip():
    import tensorflow as tf

    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    y = datasets.to_model_range(x)
    assert y.dtype == tf.float32
    arr = y.numpy()
    assert arr.min() == -1.0 and arr.max() == 1.0
    assert np.array_equal(datasets.to_uint8(y), x)
    assert np.array_equal(datasets.to_uint8(arr), x)
    assert datasets.to_uint8(np.array([-3.0, 2.0, 0.0, -0.999])).tolist() == [0, 255, 128, 0]


def test_make_tf_dataset_batches():
    import tensorflow as tf

    y = np.arange(10, dtype=np.int64) % 3
    x = np.broadcast_to((y * 100).astype(np.uint8)[:, None, None, None], (10, 8, 8, 1)).copy()
    ds = datasets.make_tf_dataset(x, y, batch_size=4, seed=1)
    batches = list(ds)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    images, labels = batches[0]
    assert images.dtype == tf.float32 and labels.dtype == tf.int32 and images.shape[1:] == (8, 8, 1)
    for images, labels in batches:
        assert np.allclose(images.numpy()[:, 0, 0, 0], labels.numpy() * 100 / 127.5 - 1)
    order = np.concatenate([b[1].numpy() for b in batches])
    assert sorted(order.tolist()) == sorted(y.tolist())
    again = np.concatenate([b[1].numpy() for b in datasets.make_tf_dataset(x, y, 4, seed=1)])
    assert np.array_equal(order, again)

    fixed = datasets.make_tf_dataset(x, y, 4, shuffle=False, drop_remainder=True)
    assert [b[1].numpy().tolist() for b in fixed] == [[0, 1, 2, 0], [1, 2, 0, 1]]
    assert fixed.element_spec[0].shape == (4, 8, 8, 1)  # full batches keep a static size for tracing
    endless = datasets.make_tf_dataset(x, y, 4, drop_remainder=True, repeat=True)
    assert len(list(endless.take(7))) == 7


def test_balanced_real_batches_draw_every_class_alike_and_resume_where_they_were():
    """--real-batches balanced: each epoch as many images as the split, the classes drawn uniformly;
    epoch e depends on (seed, e) alone, so a resumed run sees the batches an uninterrupted one does."""
    y = np.repeat(np.arange(3), [90, 8, 2])
    x = np.broadcast_to((y * 100).astype(np.uint8)[:, None, None, None], (100, 4, 4, 1)).copy()

    def labels(first_epoch, epochs, balanced_classes=3):
        ds = datasets.make_tf_dataset(x, y, 10, seed=5, drop_remainder=True, repeat=True, first_epoch=first_epoch,
                                      steps_per_epoch=10, balanced_classes=balanced_classes)
        batches = list(ds.take(10 * epochs))
        for images, batch_labels in batches:  # each image travels with its own label
            assert np.allclose(images.numpy()[:, 0, 0, 0], batch_labels.numpy() * 100 / 127.5 - 1)
        return np.concatenate([b[1].numpy() for b in batches])

    drawn = labels(0, 6)
    counts = np.bincount(drawn, minlength=3)
    assert len(drawn) == 600 and counts.min() > 150 and counts.max() < 250, counts
    assert np.array_equal(labels(4, 2), drawn[400:])
    as_the_data = np.bincount(labels(0, 6, None), minlength=3)
    assert as_the_data.tolist() == [540, 48, 12]


# ---------------------------------------------------------------- CLI


def test_cli_json(capsys):
    assert datasets.main(["--dataset", "digits", "--image-size", "8", "--json", "--imbalanced"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["class_names"] == [str(c) for c in range(10)] and out["image_shape"] == [8, 8, 1]
    assert np.add(out["train_counts"], out["test_counts"]).tolist() == [178, 10, 18, 28, 37, 46, 55, 63, 70, 81]


def test_cli_shows_the_image_size_training_would_use(capsys):
    import bagan_train
    assert datasets.main(["--dataset", "digits", "--json"]) == 0
    shape = json.loads(capsys.readouterr().out)["image_shape"]
    size = bagan_train.TrainConfig.create(dataset="digits").image_size
    assert shape == [size, size, 1] == [32, 32, 1]


def test_cli_table(capsys):
    assert datasets.main(["--dataset", "digits", "--image-size", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["class", "train", "test"] and lines[-2].split() == ["total", "1257", "540"]


def test_cli_error_exits_2_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(REPO / "datasets.py"), "--dataset", "cells", "--data-dir", str(tmp_path / "x")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert datasets.CELLS_URL in proc.stderr
    proc = subprocess.run(cmd[:2] + ["--dataset", "digits", "--image-size", "4", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "at least 8" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- balanced test sets


def test_fashion_balanced_test_set_is_the_official_t10k(tmp_path, no_system_fashion):
    rng = np.random.default_rng(5)
    y = rng.permutation(np.repeat(np.arange(10), 30)).astype(np.uint8)
    x = rng.integers(0, 256, (300, 8, 8), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y)
    images, labels, description = datasets.balanced_test_set("fashion_mnist", tmp_path, image_size=8)
    assert "t10k" in description and np.bincount(labels).tolist() == [30] * 10
    np.testing.assert_array_equal(images[..., 0], x)
    # An image the model trained on is never a test image.
    images, labels, _ = datasets.balanced_test_set("fashion_mnist", tmp_path, image_size=8, exclude=x[:3, ..., None])
    assert len(images) == 297


def test_cifar_balanced_test_set_is_the_test_batch(tmp_path):
    x, y = cifar_records()
    folder = write_cifar_bin(tmp_path / "cifar-10-batches-bin", x, y)
    planes = x[:20].transpose(0, 3, 1, 2).reshape(20, -1)
    (folder / "test_batch.bin").write_bytes(np.concatenate([y[:20, None], planes], axis=1).astype(np.uint8).tobytes())
    images, labels, description = datasets.balanced_test_set("cifar10", tmp_path, image_size=32)
    assert "test batch" in description
    np.testing.assert_array_equal(images, x[:20])
    np.testing.assert_array_equal(labels, y[:20])


# ---------------------------------------------------------------- medical formats


def gradient16(width=16, height=16, low=0, high=4100):
    """A 16-bit image whose values run from low (left) to high (right): 12-bit data in a 16-bit PNG."""
    row = np.linspace(low, high, width)
    return np.rint(np.tile(row, (height, 1))).astype(np.uint16)


def save16(path, array, fmt="PNG"):
    Image.fromarray(array).save(path, format=fmt)  # mode I;16


def two_class_folder(root, save, per_class=3):
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            save(root / name, i)
    return root


def test_16bit_png_keeps_its_contrast_by_the_datasets_range(tmp_path, capsys):
    """12-bit values in 16-bit PNGs came back as 0..15 (a >> 8); now the dataset's range maps to 0..255."""
    folder = two_class_folder(tmp_path / "ct", lambda d, i: save16(d / f"{i}.png", gradient16(high=4100 - 100 * i)))
    ds = load_dataset(str(folder), image_size=16)
    images = np.concatenate([ds.x_train, ds.x_test])
    assert ds.channels == 1 and images.min() == 0 and images.max() == 255
    assert ds.intensity == dict(rule="range", low=0.0, high=4100.0, images=6)
    assert capsys.readouterr().err.count("[datasets]") == 1  # said once, with the numbers
    windowed = load_dataset(str(folder), image_size=16, window=(1000, 3000))
    assert windowed.intensity["rule"] == "window"
    column = np.concatenate([windowed.x_train, windowed.x_test])[..., 0].mean(axis=(0, 1))
    assert column[:3].max() == 0 and column[-3:].min() == 255  # clipped outside the window


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_16bit_and_float_tiff(tmp_path, mode):
    def save(d, i):
        array = gradient16(high=2000).astype(np.float32 if mode == "F" else np.uint16)
        Image.fromarray(array, mode=mode if mode == "F" else None).save(d / f"{i}.tif", format="TIFF")
    ds = load_dataset(str(two_class_folder(tmp_path / "tiff", save)), image_size=16)
    images = np.concatenate([ds.x_train, ds.x_test])
    assert images.max() == 255 and images.min() == 0 and ds.intensity["high"] == 2000.0


def write_dicom(path, pixels, slope=1.0, intercept=0.0, window=None, photometric="MONOCHROME2", frames=1):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "CT", photometric, 1
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(pixels, np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    pixels = np.tile(np.arange(16, dtype=np.uint16) * 100, (16, 1))  # raw 0..1500
    # HU = 2 * raw - 1000: -1000..2000; window centre 0, width 1000 -> -500..500 maps to 0..255
    folder = two_class_folder(tmp_path / "dcm", lambda d, i: write_dicom(
        d / f"{i}.dcm", pixels, slope=2.0, intercept=-1000.0, window=(0, 1000),
        photometric="MONOCHROME1" if d.name == "b" else "MONOCHROME2"))
    ds = load_dataset(str(folder), image_size=16)
    assert ds.intensity["rule"] == "dicom window"
    hu = 2.0 * pixels[0] - 1000.0
    expected = np.rint(np.clip((hu + 500.0) / 1000.0, 0, 1) * 255)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for image, label in zip(x, y):
            row = image[8, :, 0].astype(float)
            np.testing.assert_allclose(row, 255 - expected if label == 1 else expected, atol=1)  # b: MONOCHROME1


def test_dicom_without_window_uses_the_datasets_range_and_multiframe_is_refused(tmp_path):
    pixels = np.tile(np.arange(16, dtype=np.uint16) * 10, (16, 1))
    folder = two_class_folder(tmp_path / "dcm", lambda d, i: write_dicom(d / f"{i}.dcm", pixels, intercept=-20.0))
    ds = load_dataset(str(folder), image_size=16)
    assert ds.intensity == dict(rule="range", low=-20.0, high=130.0, images=6)
    write_dicom(folder / "a" / "cine.dcm", np.stack([pixels, pixels]), frames=2)
    with pytest.raises(DatasetError, match=r"cine\.dcm has 2 frames"):
        load_dataset(str(folder), image_size=16)


@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
def test_non_square_images_are_padded_by_default(tmp_path, resize):
    """A 16x8 (wide) image with a white 8x8 square in the middle on grey."""
    def save(d, i):
        image = np.full((8, 16), 100, np.uint8)
        image[:, 4:12] = 255
        Image.fromarray(image).save(d / f"{i}.png")
    folder = two_class_folder(tmp_path / "wide", save)
    ds = load_dataset(str(folder), image_size=16, **({} if resize == "pad" else {"resize": resize}))
    image = ds.x_train[0, ..., 0].astype(int)
    if resize == "pad":  # grey bands above and below, the square stays square
        assert (image[:3] == 100).all() and (image[-3:] == 100).all() and (image[6:10, 6:10] == 255).all()
        assert (image[6:10, :3] == 100).all()
    elif resize == "crop":  # the middle 8x8: all white
        assert (image == 255).all()
    else:  # stretched: the white band fills the middle half of every row
        assert (image[:, 6:10] == 255).all() and (image[:, :2] == 100).all()
