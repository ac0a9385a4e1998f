"""Builders of small datasets in the real on-disk formats, for the tests."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def kept_marker_images(labels: np.ndarray, step: int, size: int, channels: int = 1) -> np.ndarray:
    """Constant images: 255 when the image is among the first step*c of its class c (or c == 0), else 0.

    A constant image stays constant after resizing, so the marker survives loading.
    """
    labels = np.asarray(labels, np.int64)
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    kept = (labels == 0) | (rank < step * labels)
    x = np.where(kept, 255, 0).astype(np.uint8)
    return np.broadcast_to(x[:, None, None, None], (len(labels), size, size, channels)).copy()


def make_fashion_like(folder: Path, per_class: int = 950, size: int = 4, gz: bool = True, seed: int = 0):
    """Fashion-MNIST-style IDX training files: 10 classes interleaved in random order."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
    x = kept_marker_images(y, 100, size)[..., 0]
    ext = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", x)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", y)
    return x, y


def cifar_records(per_batch: int = 40, seed: int = 0):
    """Labels and (N, 32, 32, 3) images for five CIFAR-10 batches.

    Red is the kept marker of :func:`kept_marker_images` for a step of 2,
    green is 8 * row and blue is 8 * column, so the pixel layout is checkable.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(10), 5 * per_batch // 10)).astype(np.uint8)
    x = kept_marker_images(y, 2, 32, 3)
    ramp = np.arange(32, dtype=np.uint8) * 8
    x[..., 1] = ramp[:, None]
    x[..., 2] = ramp[None, :]
    return x, y


def write_cifar_bin(folder: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """data_batch_1..5.bin: records of one label byte and 3072 bytes of CHW planes."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (xb, yb) in enumerate(zip(np.array_split(x, 5), np.array_split(y, 5)), start=1):
        planes = xb.transpose(0, 3, 1, 2).reshape(len(xb), -1)
        records = np.concatenate([yb[:, None].astype(np.uint8), planes], axis=1)
        (folder / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    return folder


def write_cifar_py(folder: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """data_batch_1..5 pickles laid out like the official python version."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (xb, yb) in enumerate(zip(np.array_split(x, 5), np.array_split(y, 5)), start=1):
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [int(v) for v in yb],
            b"data": xb.transpose(0, 3, 1, 2).reshape(len(xb), -1),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(len(xb))],
        }
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def png_bytes(mode: str = "RGB", size=(2, 2), value: int = 128) -> bytes:
    """A small PNG image of one colour as bytes."""
    im = Image.new(mode, size, value if mode in ("L", "P") else (value,) * len(mode))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_cells(folder: Path, counts: dict[str, int]) -> Path:
    """<name>.png + <name>.txt pairs, one pair per cell, labels written as in the archive."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (label, n) in enumerate(counts.items()):
        data = png_bytes("RGB", (3, 3), 40 + 50 * k)
        for i in range(n):
            (folder / f"{k}_{i:05d}.png").write_bytes(data)
            (folder / f"{k}_{i:05d}.txt").write_text(label + "\n")
    return folder


def make_image_folder(folder: Path, spec: dict[str, list[tuple[str, tuple[int, int], str]]]) -> Path:
    """Class subfolders of images: spec maps class -> [(mode, (w, h), format), ...]."""
    for name, images in spec.items():
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        for i, (mode, size, fmt) in enumerate(images):
            im = Image.new(mode, size)
            if mode == "P":
                im.putpalette([v for c in range(256) for v in (c, 255 - c, 0)])
            im.save(sub / f"img{i}.{fmt.lower()}", format=fmt)
    return folder
