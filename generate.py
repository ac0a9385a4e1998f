"""Generate images of every class with a run's generator, as PNG files in class folders.

    python generate.py train_results/<run> --per-class 500 --to generated/
    python generate.py train_results/<run> --per-class 50 --to generated/ --classes 1 3 --seed 7
    python generate.py train_results/<run> --per-class 500 --to generated/ --generator last

The folder it writes (<to>/<class name>/generated_NNNNN.png) is itself a dataset of class folders:
`python bagan_train.py --dataset generated/` or `datasets.load_dataset("generated/")` read it. The
noise of class c comes from NumPy's default_rng([seed, c]), as in fid.py and classify.py, so the same
seed gives the same images. The generator is the run's best (generator_best.keras, kept by the
in-training evaluation) when it has one, else the last; --generator chooses, and the output says.
"""
import argparse
import json
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from runs import GENERATORS, Run, UsageError, generated_batches, load_model, save_png  # noqa: E402


def class_folder(to, name):
    return os.path.join(to, str(name).replace(os.sep, "-"))


def generate(run, per_class, to, classes=None, seed=0, which=None):
    """per_class images of each class (all, or the names in `classes`) into to/<class name>/, by
    the run's `which` generator ("best", "last", None: best when there is one). The class folders
    must be new or empty (main replaces them with --overwrite)."""
    from datasets import to_uint8
    path, described = run.generator_choice(which)
    print(f"generator: {described}", file=sys.stderr, flush=True)
    generator = load_model(path)
    written = {}
    for c, name in enumerate(run.config["class_names"]):
        if classes and name not in classes:
            continue
        folder = class_folder(to, name)
        os.makedirs(folder, exist_ok=True)
        done = 0
        for batch in generated_batches(generator, c, per_class, seed=seed):
            for image in to_uint8(batch):
                save_png(os.path.join(folder, f"generated_{done:05d}.png"), image)
                done += 1
        written[name] = done
        print(f"{name}: {done} images -> {folder}", file=sys.stderr, flush=True)
    return written, described


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Write per-class images of a run's generator as PNG class folders.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    p.add_argument("--generator", choices=GENERATORS,
                   help="the best epoch's (generator_best.keras) or the last one (default: best when the run has one)")
    p.add_argument("--to", required=True, metavar="FOLDER", help="output folder; one subfolder per class")
    p.add_argument("--per-class", type=int, default=100, help="images per class (default 100)")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="only these classes (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the class folders of --to that already hold files (refused otherwise)")
    p.add_argument("--json", action="store_true", help="print {folder, per_class: {class: count}} as JSON")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.per_class < 1:
            raise UsageError("--per-class must be at least 1")
        run = Run.open(args.run_dir)
        run.generator_choice(args.generator)
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
        written, described = generate(run, args.per_class, args.to, args.classes, args.seed, args.generator)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(dict(folder=args.to, per_class=written, generator=described)) if args.json
          else f"{sum(written.values())} images in {len(written)} class folders: {args.to} ({described} generator)")
    return 0


if __name__ == "__main__":
    from console import tensorflow_quiet
    with tensorflow_quiet():
        sys.exit(main())
