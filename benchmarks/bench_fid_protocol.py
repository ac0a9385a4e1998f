"""Per-class FID cost: the original BAGAN-GP approach against fid.py scoring a second checkpoint.

    python benchmarks/bench_fid_protocol.py [--per-class 1000] [--real-per-class 1000] [--label 0]
                                            [--image-size 64] [--repeats 3] [--batch-size N] [--json]

One class of balanced Fashion-MNIST at 64x64: `--per-class` generated images against the first
`--real-per-class` test images of class `--label` (datasets.load_dataset's test split). The
generator is the project's (build_generator of an untrained embedding and decoder, saved as a run
folder): what it draws does not matter for speed. InceptionV3 runs with random weights (the
ImageNet file is not needed: timing and memory do not depend on the weight values).

Every measurement is its own subprocess, so its peak resident set (ru_maxrss) is its own:

* ``original``: the approach of the original BAGAN-GP code, written the straightforward way:
  both sets converted to float64, each image resized to 299x299x3 in a Python loop
  (nearest neighbour, scipy.ndimage.zoom, order 0), the whole set predicted at once by
  InceptionV3(include_top=False, pooling='avg'), mean and covariance of both sets on every call
  and scipy.linalg.sqrtm of the general 2048x2048 product.
* ``project``: fid.py's own pieces as ``fid.score`` uses them for one class of a run: the real
  features from the cache (``Scoring.real``), the generated images through fid.py's batched
  extractor (resize inside the graph), ``FeatureSet.fid`` (symmetric eigen-decomposition) and
  ``FeatureSet.kid`` (fid.py scores both). A first ``project`` call fills an empty cache (the
  first checkpoint, timed and reported on its own); the timed calls are the second checkpoint,
  with the cache filled.

Each subprocess reports its setup (imports, dataset, networks, one warm-up batch of the feature
network) apart from the per-class work, which is what is repeated for every class and
checkpoint. The two protocols alternate so that load from other processes hits both; the
numbers are medians over `--repeats`.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

TARGET_RATIO = 0.4
TARGET_PEAK_MB = 1536
LATENT_DIM = 128


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# Workers (one per subprocess)


def make_run(run_dir, image_size):
    """A run folder fid.py accepts: config.json and the project's (untrained) generator."""
    import keras
    from autoencoder import build_decoder, build_embedding
    from bagan_gp import build_generator
    from datasets import FASHION_CLASSES
    keras.utils.set_random_seed(0)
    generator = build_generator(build_embedding(len(FASHION_CLASSES), LATENT_DIM),
                                build_decoder((image_size, image_size, 1), LATENT_DIM))
    os.makedirs(run_dir, exist_ok=True)
    generator.save(os.path.join(run_dir, "generator.keras"))
    config = dict(dataset="fashion_mnist", image_size=image_size, imbalanced=False, seed=42,
                  class_names=FASHION_CLASSES, latent_dim=LATENT_DIM, variant="v3")
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f)
    return dict(run_dir=run_dir)


def original(args):
    """The original approach for one class, written as the original code does it."""
    start = time.perf_counter()
    import numpy as np
    import scipy.linalg
    import scipy.ndimage
    import keras
    import evaluators
    from datasets import load_dataset

    data = load_dataset("fashion_mnist", image_size=args.image_size)
    model = keras.applications.InceptionV3(include_top=False, pooling="avg", input_shape=(299, 299, 3),
                                           weights=None)
    evaluators._randomize(model, 0)  # the same random weights as fid.py's --weights random
    generator = keras.models.load_model(os.path.join(args.run, "generator.keras"))
    model.predict(np.zeros((2, 299, 299, 3)), verbose=0)  # warm-up: trace the predict function
    setup_s = time.perf_counter() - start
    rss_setup = peak_rss_mb()

    def scale_images(images, new_shape):
        images_list = []
        for image in images:  # nearest neighbour, one image at a time
            images_list.append(scipy.ndimage.zoom(
                image, [n / o for n, o in zip(new_shape, image.shape)], order=0))
        return np.asarray(images_list)

    def calculate_fid(model, images1, images2):
        act1 = model.predict(images1, verbose=0)
        act2 = model.predict(images2, verbose=0)
        mu1, sigma1 = act1.mean(axis=0), np.cov(act1, rowvar=False)
        mu2, sigma2 = act2.mean(axis=0), np.cov(act2, rowvar=False)
        ssdiff = np.sum((mu1 - mu2) ** 2.0)
        t = time.perf_counter()
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
        times["sqrtm_s"] = time.perf_counter() - t
        if np.iscomplexobj(covmean):
            covmean = covmean.real
        return float(ssdiff + np.trace(sigma1 + sigma2 - 2.0 * covmean))

    times = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng([0, args.label])
    z = rng.standard_normal((args.per_class, LATENT_DIM)).astype(np.float32)
    fake = generator.predict([z, np.full(args.per_class, args.label, np.int32)], verbose=0)
    real = data.x_test[data.y_test == args.label][:args.real_per_class]
    real = real.astype("float64") / 127.5 - 1.0
    fake = fake.astype("float64")
    t1 = time.perf_counter()
    real = scale_images(real, (299, 299, 3))
    fake = scale_images(fake, (299, 299, 3))
    t2 = time.perf_counter()
    value = calculate_fid(model, real, fake)
    per_class_s = time.perf_counter() - t0
    return dict(protocol="original", setup_s=setup_s, per_class_s=per_class_s,
                generate_s=t1 - t0, resize_s=t2 - t1,
                features_and_fid_s=per_class_s - (t2 - t0), sqrtm_s=times["sqrtm_s"],
                fid=value, real_images=len(real), generated_images=len(fake),
                rss_after_setup_mb=rss_setup, peak_rss_mb=peak_rss_mb())


def project(args):
    """fid.py's path for one class of a run: the same pieces, in the same order, as fid.score's FID
    (fid.score also extracts the class's training images, once, for the memorisation measures)."""
    start = time.perf_counter()
    import numpy as np
    from pathlib import Path
    import evaluators
    import fid
    import metrics
    from datasets import load_dataset
    from runs import generated_batches

    score_args = fid.parse_args([args.run, "--weights", "random", "--per-class", str(args.per_class),
                                 "--real-per-class", str(args.real_per_class), "--batch-size",
                                 str(args.batch_size), "--cache-dir", args.cache_dir])
    scored, key = fid._runs_and_dataset(score_args)
    data = load_dataset(key["dataset"], data_dir=key["data_dir"], image_size=key["image_size"],
                        imbalanced=key["imbalanced"], seed=key["seed"], resize=key["resize"], window=key["window"])
    extractor = evaluators.inception_extractor(None, seed=score_args.seed)
    scoring = fid.Scoring(data, key, extractor, Path(score_args.cache_dir), score_args.batch_size,
                          score_args.real_per_class)
    generator = scored[0].load_generator()
    extractor(np.zeros((score_args.batch_size, *data.x_test.shape[1:]), np.float32))  # warm-up: trace
    setup_s = time.perf_counter() - start
    rss_setup = peak_rss_mb()

    c, bs = args.label, score_args.batch_size
    t0 = time.perf_counter()
    reference = scoring.real("test", c)
    t1 = time.perf_counter()
    generated = scoring.features(generated_batches(generator, c, score_args.per_class, bs, score_args.seed),
                                 score_args.per_class, f"class {data.class_names[c]}")
    t2 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.SingularCovarianceWarning)
        value = reference.fid(generated)
    t3 = time.perf_counter()
    kid = reference.kid(generated)
    per_class_s = time.perf_counter() - t0
    return dict(protocol="project", setup_s=setup_s, per_class_s=per_class_s,
                real_features_s=t1 - t0, cache_hit=bool(scoring.cache_hits),
                generate_and_extract_s=t2 - t1, fid_s=t3 - t2, kid_s=t0 + per_class_s - t3,
                fid=value, kid=kid, real_images=reference.n, generated_images=generated.n,
                rss_after_setup_mb=rss_setup, peak_rss_mb=peak_rss_mb())


# ---------------------------------------------------------------------------------------------
# The parent: one subprocess per measurement


def worker(args, mode, extra=()):
    argv = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--run", args.run,
            "--per-class", str(args.per_class), "--real-per-class", str(args.real_per_class),
            "--label", str(args.label), "--image-size", str(args.image_size),
            "--batch-size", str(args.batch_size), *extra]
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, cwd=REPO)
    if proc.returncode:
        raise SystemExit(f"worker {mode} failed with exit status {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    print(f"[bench] {mode}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in result.items() if k != "protocol"),
          file=sys.stderr, flush=True)
    return result


def median(results, key):
    return statistics.median(r[key] for r in results)


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=1000, help="generated images")
    p.add_argument("--real-per-class", type=int, default=1000, help="real test images of the class")
    p.add_argument("--label", type=int, default=0, help="the class")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, help="fid.py's extraction batch (default: evaluators.DEFAULT_BATCH_SIZE)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=["original", "project"], help="time one protocol only")
    p.add_argument("--json", action="store_true")
    p.add_argument("--worker", choices=["make_run", "original", "project"], help=argparse.SUPPRESS)
    p.add_argument("--run", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.batch_size is None:
        import evaluators
        args.batch_size = evaluators.DEFAULT_BATCH_SIZE
    if args.worker:
        import contextlib
        with contextlib.redirect_stdout(sys.stderr):
            if args.worker == "make_run":
                result = make_run(args.run, args.image_size)
            else:
                result = (original if args.worker == "original" else project)(args)
        print(json.dumps(result))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        args.run = os.path.join(tmp, "run")
        cache = ["--cache-dir", os.path.join(tmp, "cache")]
        worker(args, "make_run")
        first = worker(args, "project", cache) if args.only != "original" else None
        originals, projects = [], []
        for _ in range(args.repeats):
            if args.only != "project":
                originals.append(worker(args, "original"))
            if args.only != "original":
                projects.append(worker(args, "project", cache))
                if not projects[-1]["cache_hit"]:
                    raise SystemExit("the second project call did not find the real features in the cache")

    result = dict(
        dataset="fashion_mnist (balanced, test split)", image_size=args.image_size, label=args.label,
        generated_images=args.per_class, real_images=args.real_per_class, repeats=args.repeats,
        features="InceptionV3 avg pool, random weights", batch_size=args.batch_size,
        load_average=os.getloadavg(),
    )
    for name, runs in (("original", originals), ("project", projects)):
        if runs:
            keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            result[name] = {k: median(runs, k) for k in keys}
            result[name]["runs_per_class_s"] = [r["per_class_s"] for r in runs]
    if first:
        result["project_first_checkpoint"] = first
    if originals and projects:
        a, b = result["original"], result["project"]
        result["ratio_per_class"] = b["per_class_s"] / a["per_class_s"]
        result["ratio_process"] = b["process_s"] / a["process_s"]
        result["target_ratio_met"] = result["ratio_per_class"] <= TARGET_RATIO
    if projects:
        result["target_peak_met"] = result["project"]["peak_rss_mb"] < TARGET_PEAK_MB
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"one class ({args.per_class} generated, {args.real_per_class} real) at {args.image_size}x"
          f"{args.image_size}, medians of {args.repeats}; load average {result['load_average']}")
    for name in ("original", "project"):
        if name in result:
            r = result[name]
            print(f"{name:>9}: per class {r['per_class_s']:.1f} s, setup {r['setup_s']:.1f} s, "
                  f"process {r['process_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    if first:
        print(f"first checkpoint (empty cache): per class {first['per_class_s']:.1f} s, "
              f"peak RSS {first['peak_rss_mb']:.0f} MB")
    if "ratio_per_class" in result:
        print(f"project / original per class: {result['ratio_per_class']:.3f} (target <= {TARGET_RATIO}); "
              f"whole process: {result['ratio_process']:.3f}")
    if projects:
        print(f"project peak RSS below {TARGET_PEAK_MB} MB: {result['target_peak_met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
