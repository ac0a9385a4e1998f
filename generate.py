"""Generate images of every class with a run's generator, as PNG files in class folders.

    python generate.py train_results/<run> --per-class 500 --to generated/
    python generate.py train_results/<run> --per-class 50 --to generated/ --classes 1 3 --seed 7
    python generate.py train_results/<run> --per-class 500 --to generated/ --generator last
    python generate.py train_results/<run> --per-class 500 --to generated/ --units data

The folder it writes (<to>/<class name>/generated_NNNNN.png) is itself a dataset of class folders:
`python bagan_train.py --dataset generated/` or `datasets.load_dataset("generated/")` read it. The
noise of class c comes from NumPy's default_rng([seed, c]), as in fid.py and classify.py, so the same
seed gives the same images. The generator is the run's best (generator_best.keras, kept by the
in-training evaluation) when it has one, else the last; --generator chooses, and the output says.

--units model (the default) writes what the generator makes: image_size x image_size, 8-bit. --units
data writes images to add to the training data itself, in its own units: at the files' original
width x height (config.json's original_size: the most common size when they had several) with the
squaring of --resize undone as far as it can be (stretch: resized back; pad: resized to the padded
square, then its centre cropped; crop: resized to the cropped square only, as the cut-off sides are
lost), and with the intensity rule of high-bit data inverted (config.json's intensity: value = low +
v/255 * (high - low), as 16-bit PNG); 8-bit data stays 8-bit, DICOM-windowed data is written 8-bit
(a window has no inverse). Runs made before config.json recorded original_size are refused.

--select confidence|novel keeps only images that the judge (evaluators.judge, trained on the
run's real training images) gives their class with probability at least --select-threshold, or that
are no nearer to a training image than fid.py's memorisation threshold (evaluators.select_generated),
drawing more until --per-class are kept or ten times that are drawn; the output gives, per class,
the images kept and dropped.
"""
import json
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from runs import CONFIG_FILE, GENERATORS, Run, UsageError, generated_batches, load_model, save_png  # noqa: E402

UNITS = ("model", "data")
HIGH_BIT_RULES = ("range", "window")  # datasets._load_images: linear low..high -> 0..255, invertible


def class_folder(to, name):
    return os.path.join(to, str(name).replace(os.sep, "-"))


def data_units(run):
    """How --units data writes this run's images: dict(width, height, resize, low, high, described),
    low and high None for 8-bit output. UsageError (one line) when config.json lacks the record."""
    config = run.config
    if "original_size" not in config:
        raise UsageError(f"--units data needs the original image size, and {run.file(CONFIG_FILE)} has no "
                         "original_size record (the run predates it): use --units model")
    size = config["original_size"]
    if not size:
        raise UsageError(f"--units data needs the original image size, which {config['dataset']} runs do not "
                         "record (image folders and cells do): use --units model")
    width, height, resize, s = int(size["width"]), int(size["height"]), config["resize"], config["image_size"]
    side = max(width, height) if resize == "pad" else min(width, height)
    if resize == "stretch" or width == height:
        geometry = f"resized from {s}x{s}"
    elif resize == "pad":
        geometry = f"the padding undone: resized to {side}x{side}, the centre cropped"
    else:
        geometry = f"resized to the cropped square {side}x{side}: the cut-off sides cannot be restored"
        width = height = side
    several = (f"; the most common of the data's {size['sizes']} sizes, {size['width']}x{size['height']} "
               f"({size['images']} of {size['of']} images)" if size.get("sizes", 1) > 1 else "")
    intensity = config.get("intensity") or {}
    rule, low, high = intensity.get("rule"), None, None
    if rule in HIGH_BIT_RULES and config.get("channels") == 1:
        low, high = float(intensity["low"]), float(intensity["high"])
        depth = f"16-bit PNG, intensity rule {rule!r} inverted: value = {low:g} + v/255 * ({high:g} - {low:g})"
    elif rule in HIGH_BIT_RULES:
        depth = (f"8-bit PNG: the data mixed colour with high-bit images, and no 16-bit colour PNG is "
                 f"written (rule {rule!r} not inverted)")
    elif rule == "dicom window":
        depth = "8-bit PNG: the data was DICOM seen through its windows, which have no inverse"
    else:
        depth = "8-bit PNG, as the data was"
    return dict(width=width, height=height, resize=resize, low=low, high=high,
                described=f"{width}x{height} pixels ({geometry}{several}), {depth}")


def unsquare(channel, width, height, resize):
    """One float channel of a square image back to the shape it had before datasets._square: resized
    to width x height (stretch), or to the padded square and its centre cropped (pad, the offsets of
    _square), or to the cropped square (crop: width == height given)."""
    from PIL import Image
    im = Image.fromarray(np.ascontiguousarray(channel, np.float32))
    if resize == "stretch" or width == height or resize == "crop":
        return np.asarray(im.resize((width, height), Image.BILINEAR))
    side = max(width, height)
    square = np.asarray(im.resize((side, side), Image.BILINEAR))
    left, top = (side - width) // 2, (side - height) // 2
    return square[top:top + height, left:left + width]


def invert_intensity(values, low, high):
    """Inverse of datasets._load_images' rule: 8-bit scale values v (0..255) -> low + v/255 * (high - low),
    rounded and clipped to uint16."""
    return np.clip(np.rint(low + np.asarray(values, np.float64) / 255.0 * (high - low)), 0, 65535).astype(np.uint16)


def to_data_units(images, units):
    """Generator images in [-1, 1] (N, S, S, C) as `units` (data_units) says: a list of uint8 (H, W, C)
    arrays, or uint16 (H, W, 1) arrays where an intensity rule is inverted."""
    if hasattr(images, "numpy"):
        images = images.numpy()
    values = np.clip((np.asarray(images, np.float32) + 1.0) * 127.5, 0, 255)
    out = []
    for image in values:
        image = np.stack([unsquare(image[..., c], units["width"], units["height"], units["resize"])
                          for c in range(image.shape[-1])], axis=-1)
        out.append(np.clip(np.rint(image), 0, 255).astype(np.uint8) if units["low"] is None
                   else invert_intensity(image, units["low"], units["high"]))
    return out


def selection(run, generator, per_class, classes, seed, rules, threshold):
    """{class index: uint8 images} kept by evaluators.select_generated, judged by a judge trained on
    the run's training split, and the per-class counts."""
    from datasets import load_dataset
    from evaluators import judge, select_generated
    c = run.config
    data = load_dataset(c["dataset"], c.get("data_dir"), c["image_size"], c.get("imbalanced", False), c["split_seed"],
                        c["resize"], c.get("window"))
    print(f"--select: the judge of the {len(data.x_train)} real training images (trained, or the judge cache's)",
          file=sys.stderr, flush=True)
    judged_by, _, _ = judge(data, seed)
    quota = [per_class if not classes or name in classes else 0 for name in c["class_names"]]
    images, labels, stats = select_generated(generator, judged_by, data.x_train, data.y_train, quota, seed, rules,
                                             threshold)
    return {k: images[labels == k] for k in range(len(quota))}, stats


def generate(run, per_class, to, classes=None, seed=0, which=None, units="model", select=(), threshold=None):
    """per_class images of each class (all, or the names in `classes`) into to/<class name>/, by
    the run's `which` generator ("best", "last", None: best when there is one), in the model's or
    the data's `units` (UNITS). The class folders must be new or empty (main replaces them with
    --overwrite)."""
    from datasets import to_uint8
    convert = to_uint8
    if units == "data":
        target = data_units(run)
        convert = lambda batch: to_data_units(batch, target)  # noqa: E731
    path, described = run.generator_choice(which)
    print(f"generator: {described}", file=sys.stderr, flush=True)
    if units == "data":
        print(f"data units: {target['described']}", file=sys.stderr, flush=True)
    generator = load_model(path)
    written, stats = {}, None
    if select:
        from evaluators import SELECT_THRESHOLD
        selected, stats = selection(run, generator, per_class, classes, seed, tuple(select), threshold or SELECT_THRESHOLD)
    for c, name in enumerate(run.config["class_names"]):
        if classes and name not in classes:
            continue
        folder = class_folder(to, name)
        os.makedirs(folder, exist_ok=True)
        done = 0
        batches = ([selected[c].astype(np.float32) / 127.5 - 1.0] if select else
                   generated_batches(generator, c, per_class, seed=seed))
        for batch in batches:
            for image in convert(batch):
                save_png(os.path.join(folder, f"generated_{done:05d}.png"), image)
                done += 1
        written[name] = done
        kept = f" (kept {done} of {stats[c]['drawn']} drawn)" if stats else ""
        print(f"{name}: {done} images -> {folder}{kept}", file=sys.stderr, flush=True)
    return written, described, stats


def parse_args(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description="Write per-class images of a run's generator as PNG class folders.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    p.add_argument("--generator", choices=GENERATORS,
                   help="the best epoch's (generator_best.keras) or the last one (default: best when the run has one)")
    p.add_argument("--to", required=True, metavar="FOLDER", help="output folder; one subfolder per class")
    p.add_argument("--per-class", type=int, default=100, help="images per class (default 100)")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="only these classes (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--units", choices=UNITS, default="model",
                   help="model (default): PNGs as the generator makes them, image-size x image-size, 8-bit. "
                        "data: in the training data's own units, to add to it: the files' original width x height "
                        "(the most common size if they had several), the --resize squaring undone (stretch: "
                        "resized back; pad: resized to the padded square and its centre cropped; crop: resized "
                        "to the cropped square only, the cut-off sides cannot be restored), and high-bit data's "
                        "intensity rule inverted as 16-bit PNG (value = low + v/255*(high-low)); 8-bit data stays "
                        "8-bit, DICOM-windowed data is written 8-bit (no inverse). Needs a run of an image folder "
                        "or cells whose config.json records original_size")
    p.add_argument("--select", action="append", choices=("confidence", "novel"),
                   help="keep only images the judge of the run's training images gives their class with probability "
                        "at least --select-threshold (confidence), or that are no nearer to a training image than "
                        "fid.py's memorisation threshold (novel); may be given twice")
    p.add_argument("--select-threshold", type=float, help="--select confidence's probability (default 0.9)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the class folders of --to that already hold files (refused otherwise)")
    p.add_argument("--json", action="store_true", help="print {folder, per_class: {class: count}} as JSON")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.per_class < 1:
            raise UsageError("--per-class must be at least 1")
        if args.select_threshold is not None and not 0 < args.select_threshold < 1:
            raise UsageError(f"--select-threshold must be between 0 and 1, got {args.select_threshold}")
        run = Run.open(args.run_dir)
        run.generator_choice(args.generator, say=False)
        if args.units == "data":
            data_units(run)  # refuses a run without the records, before any work
        folders = [class_folder(args.to, name) for name in run.config["class_names"]
                   if not args.classes or name in args.classes]
        used = [f for f in folders if os.path.isdir(f) and os.listdir(f)]
        if used and not args.overwrite:
            raise UsageError(f"{used[0]} already holds files: give an empty --to, or --overwrite to replace "
                             "its class folders")
        for folder in used:
            shutil.rmtree(folder)
        unknown = sorted(set(args.classes or ()) - set(map(str, run.config["class_names"])))
        if unknown:
            raise UsageError(f"no class {unknown[0]!r} in {run.path}: its classes are "
                             f"{', '.join(map(str, run.config['class_names']))}")
        written, described, stats = generate(run, args.per_class, args.to, args.classes, args.seed, args.generator,
                                             args.units, args.select or (), args.select_threshold)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    extra = dict(units="data") if args.units == "data" else {}
    if stats:
        names = run.config["class_names"]
        extra["selection"] = {names[c]: s for c, s in enumerate(stats) if s["drawn"]}
    print(json.dumps(dict(folder=args.to, per_class=written, generator=described, **extra)) if args.json
          else f"{sum(written.values())} images in {len(written)} class folders: {args.to} ({described} generator)")
    return 0


if __name__ == "__main__":
    from console import tensorflow_quiet
    with tensorflow_quiet():
        sys.exit(main())
