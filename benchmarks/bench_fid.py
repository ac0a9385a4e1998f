"""Speed of fid.py: feature extraction throughput and a 10-class table, first call vs cached call.

    python benchmarks/bench_fid.py [--run RUN_DIR] [--image-size 32] [--weights random|PATH]
                                   [--per-class 20] [--images 64] [--batch-size 50] [--json]

Without --run a tiny digits run is trained first (about 20 s, not timed). The first table call
extracts the real test features into an empty cache; the second finds them there and only
generates and extracts the images of the run.
"""
import contextlib
import json
import os
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import evaluators  # noqa: E402
import fid  # noqa: E402
import metrics  # noqa: E402


def tiny_run(folder, image_size):
    """A digits run with one GAN step: enough to have a generator and an autoencoder."""
    import bagan_train
    path = os.path.join(folder, "digits-run")
    with contextlib.redirect_stdout(sys.stderr):
        code = bagan_train.main(["--dataset", "digits", "--image-size", str(image_size), "--batch-size", "16",
                                 "--epochs", "1", "--ae-epochs", "1", "--steps-per-epoch", "1",
                                 "--out", path, "--verbose", "0"])
    if code:
        raise SystemExit(f"training the tiny run failed (exit {code})")
    return path


def extraction_rate(extractor, image_size, images, batch_size):
    """Images per second of feature extraction on real digits, after one warm-up batch."""
    from datasets import load_dataset
    x = load_dataset("digits", image_size=image_size).x_test[:images]
    evaluators.extract_features(evaluators.real_batches(x[:batch_size], batch_size), extractor, quiet=True)
    start = time.perf_counter()
    evaluators.extract_features(evaluators.real_batches(x, batch_size), extractor, quiet=True)
    return len(x) / (time.perf_counter() - start), len(x)


def timed_table(argv):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.SingularCovarianceWarning)
        result = fid.score(fid.parse_args(argv))
    return time.perf_counter() - start, result


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a digits run folder (default: train a tiny one)")
    p.add_argument("--image-size", type=int, default=32, help="image size of the tiny run")
    p.add_argument("--weights", default="random", help="InceptionV3 weights file, or 'random'")
    p.add_argument("--per-class", type=int, default=20, help="generated images per class in the table")
    p.add_argument("--real-per-class", type=int, help="real images per class (default: all test images)")
    p.add_argument("--images", type=int, default=64, help="images for the throughput measurement")
    p.add_argument("--batch-size", type=int, default=evaluators.DEFAULT_BATCH_SIZE)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or tiny_run(tmp, args.image_size)
        image_size = fid.load_run(run).config["image_size"]
        extractor = evaluators.inception_extractor(evaluators.inception_weights_path(args.weights))
        rate, n = extraction_rate(extractor, image_size, args.images, args.batch_size)

        table = [run, "--weights", args.weights, "--per-class", str(args.per_class),
                 "--batch-size", str(args.batch_size), "--cache-dir", os.path.join(tmp, "cache")]
        if args.real_per_class:
            table += ["--real-per-class", str(args.real_per_class)]
        first, result = timed_table(table)
        cached, again = timed_table(table)

    real = sum(c["reference_count"] for c in result["classes"])
    generated = args.per_class * len(result["classes"])
    numbers = dict(
        features=extractor.description, image_size=image_size, batch_size=args.batch_size,
        extraction_images=n, extraction_images_per_s=round(rate, 2),
        classes=len(result["classes"]), generated_images=generated, real_images=real,
        table_first_s=round(first, 2), table_cached_s=round(cached, 2),
        cached_real_sets_first=result["cached_real_sets"],
        cached_real_sets_second=again["cached_real_sets"],
        same_fid=result["rows"][0]["fid"] == again["rows"][0]["fid"],
    )
    if args.json:
        print(json.dumps(numbers))
        return 0
    print(f"features: {numbers['features']}")
    print(f"feature extraction: {rate:.1f} images/s ({n} digits at {image_size}x{image_size}, batch {args.batch_size})")
    print(f"{numbers['classes']}-class table, first call:  {first:.1f} s ({generated} generated + {real} real images)")
    print(f"{numbers['classes']}-class table, cached call: {cached:.1f} s ({generated} generated images, "
          f"{again['cached_real_sets']} real feature sets from the cache)")
    print(f"same FID values on both calls: {numbers['same_fid']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
