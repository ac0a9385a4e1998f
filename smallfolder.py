"""A synthetic small folder like a microscope's crops of a rare-cell set, for trying the defaults
where the benchmarks' thousands of images hide what breaks: 16-bit grayscale PNG files of 70x90
pixels (width x height), one subfolder per class, a few hundred images with classes of under ten.

    python smallfolder.py data/small-cells                      # 300, 30, 15 and 8 images
    python smallfolder.py data/small-cells --counts 200 20 9 6 --seed 1

Every image is a cell on a noisy background with uneven illumination, at a random position, size
and orientation, in 12-bit values (0..4095, as many microscope cameras write) stored in 16 bits:

* ``healthy``: a smooth round cell;
* ``ring``: a cell holding a thin dark ring (a ring-stage parasite);
* ``schizont``: a cell holding a cluster of 5-9 dark dots;
* ``trophozoite``: a cell holding one large irregular dark blob.

The classes differ by what is inside the cell, as malaria stages do, so a classifier has to look
at the inside; the outline, the brightness and the background vary within every class.
"""
import sys
from pathlib import Path

import numpy as np

CLASSES = ("healthy", "ring", "schizont", "trophozoite")
DEFAULT_COUNTS = (300, 30, 15, 8)
WIDTH, HEIGHT = 70, 90
MAX_VALUE = 4095


def _disc(xx, yy, cx, cy, rx, ry, angle):
    """1 inside the rotated ellipse, 0 outside, with a one-pixel soft edge."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    r = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    return np.clip((1.0 - r) * min(rx, ry), 0.0, 1.0)


def cell_image(kind, rng, width=WIDTH, height=HEIGHT):
    """One uint16 image (height, width) of class `kind` (an index of CLASSES)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    gx, gy = rng.uniform(-1, 1, 2)
    background = 900 + 250 * (gx * (xx / width - 0.5) + gy * (yy / height - 0.5))
    cx, cy = width / 2 + rng.uniform(-8, 8), height / 2 + rng.uniform(-10, 10)
    rx, ry = rng.uniform(20, 26), rng.uniform(20, 26)
    angle = rng.uniform(0, np.pi)
    cell = _disc(xx, yy, cx, cy, rx, ry, angle)
    brightness = rng.uniform(2200, 3000)
    image = background + (brightness - background) * cell
    stain = np.zeros_like(image)
    r = min(rx, ry)
    if kind == 1:
        px, py = cx + rng.uniform(-0.3, 0.3) * r, cy + rng.uniform(-0.3, 0.3) * r
        outer = rng.uniform(0.35, 0.45) * r
        stain = _disc(xx, yy, px, py, outer, outer, 0) - _disc(xx, yy, px, py, outer - 3.5, outer - 3.5, 0)
    elif kind == 2:
        for _ in range(rng.integers(5, 10)):
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.45) * r
            dot = rng.uniform(2.6, 3.4)
            stain = np.maximum(stain, _disc(xx, yy, cx + d * np.cos(a), cy + d * np.sin(a), dot, dot, 0))
    elif kind == 3:
        px, py = cx + rng.uniform(-0.25, 0.25) * r, cy + rng.uniform(-0.25, 0.25) * r
        for _ in range(4):
            ox, oy = rng.uniform(-0.15, 0.15, 2) * r
            size = rng.uniform(0.2, 0.3) * r
            stain = np.maximum(stain, _disc(xx, yy, px + ox, py + oy, size, size * rng.uniform(0.6, 1.0),
                                            rng.uniform(0, np.pi)))
    image = image - rng.uniform(0.55, 0.7) * brightness * np.clip(stain, 0, 1) * cell
    image += rng.normal(0, 60, image.shape)
    return np.clip(np.rint(image), 0, MAX_VALUE).astype(np.uint16)


def make_small_folder(folder, counts=DEFAULT_COUNTS, seed=0, width=WIDTH, height=HEIGHT):
    """Writes CLASSES[c]/NNN.png (16-bit grayscale) for counts[c] images of each class; returns the folder."""
    from PIL import Image
    if len(counts) > len(CLASSES):
        raise ValueError(f"at most {len(CLASSES)} classes, got {len(counts)} counts")
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for kind, n in enumerate(counts):
        sub = folder / CLASSES[kind]
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(cell_image(kind, rng, width, height)).save(sub / f"{i:03d}.png")
    return folder


def main(argv=None):
    from console import ArgumentParser
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="where to write the class subfolders (must not hold them yet)")
    parser.add_argument("--counts", type=int, nargs="+", default=list(DEFAULT_COUNTS),
                        help=f"images per class, in the order {', '.join(CLASSES)} (default: "
                             f"{' '.join(map(str, DEFAULT_COUNTS))})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.counts) or not 2 <= len(args.counts) <= len(CLASSES):
        parser.error(f"--counts needs 2 to {len(CLASSES)} positive numbers, got {args.counts}")
    taken = [name for name in CLASSES[:len(args.counts)] if (Path(args.folder) / name).exists()]
    if taken:
        parser.error(f"{Path(args.folder) / taken[0]} exists already: give a new folder")
    make_small_folder(args.folder, args.counts, args.seed)
    print(f"{args.folder}: {sum(args.counts)} 16-bit images of {WIDTH}x{HEIGHT} in {len(args.counts)} classes "
          f"({', '.join(f'{CLASSES[c]} {n}' for c, n in enumerate(args.counts))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
