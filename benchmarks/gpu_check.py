"""The check a session lent a GPU runs first: a short Fashion-MNIST B run with the defaults, its step
time against the CPU's, and its run folder.

    make gpu-check                                  # = python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --out /tmp/gpu-check --steps 30 --json
    python benchmarks/gpu_check.py --allow-cpu --dataset digits --steps 2    # the check itself, on a CPU

Trains `bagan_train.py --dataset fashion_mnist --imbalanced` (64x64, batch 128, the paper's
settings, `--precision auto`) for 2 GAN epochs of `--steps` generator steps after 1 autoencoder
epoch, into FOLDER/run. The second epoch's seconds per generator step (the first holds the graph's
tracing) are set against the CPU figure of benchmarks/RESULTS.md (`CPU_SECONDS_PER_STEP`). The run
folder must hold config.json with the chosen precision, history.csv, the networks, a sample grid
per epoch and a checkpoint, and the generator must give finite images in [-1, 1] for every class.
Writes FOLDER/gpu_check.json; exit status 1 when a check fails, 2 without a GPU (unless --allow-cpu).
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

CPU_SECONDS_PER_STEP = 3.9
"""A 64x64 BAGAN-GP step (batch 128, 5 critic steps) with the defaults on the 2-core development CPU
with bfloat16, 2026-12-02 (benchmarks/RESULTS.md, bench_train_step.py)."""
REQUIRED = ("config.json", "history.csv", "generator.keras", "critic.keras", "decoder.keras", "samples/epoch_001.png",
            "samples/epoch_002.png", "progress.gif")


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--out", default="gpu-check", help="folder of the run and gpu_check.json (default gpu-check/)")
    p.add_argument("--steps", type=int, default=20, help="generator steps per GAN epoch (default 20)")
    p.add_argument("--dataset", default="fashion_mnist", help="default fashion_mnist (imbalanced, Table 1 row B)")
    p.add_argument("--data-dir", help="where the dataset's files are, as bagan_train.py's --data-dir")
    p.add_argument("--allow-cpu", action="store_true", help="run the check without a GPU (to test the check)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.allow_cpu:
        print("error: TensorFlow sees no GPU (make setup GPU=1 installs its CUDA build; nvidia-smi shows the "
              "driver); --allow-cpu runs the check anyway", file=sys.stderr)
        return 2
    import bagan_train
    from runs import Run
    run_dir = os.path.join(args.out, "run")
    if os.path.exists(os.path.join(run_dir, "config.json")):
        print(f"error: {run_dir} holds a run already: give another --out", file=sys.stderr)
        return 2
    flags = ["--dataset", args.dataset, "--imbalanced", "--epochs", "2", "--ae-epochs", "1", "--steps-per-epoch",
             str(args.steps), "--eval-every", "1", "--out", run_dir, "--verbose", "2"]
    if args.data_dir:
        flags += ["--data-dir", args.data_dir]
    started = time.time()
    code = bagan_train.main(flags)
    if code:
        return code
    run = Run.open(run_dir)
    gan = [row for row in run.history() if row["phase"] == "gan"]
    once = float(gan[1].get("eval_classifier_seconds") or 0)
    step = (float(gan[1]["seconds"]) - once - float(gan[1].get("eval_seconds") or 0)) / args.steps
    missing = [name for name in REQUIRED if not run.file(name).is_file()]
    checkpoints = [str(path) for path in run.checkpoints()]
    generator = run.load_generator("last")
    z = np.zeros((1, run.config["latent_dim"]), np.float32)
    images = [np.asarray(generator([z, np.array([c], np.int32)], training=False))
              for c in range(len(run.config["class_names"]))]
    in_range = all(np.isfinite(x).all() and np.abs(x).max() <= 1.0 for x in images)
    devices = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    result = dict(devices=devices or ["CPU (--allow-cpu)"], precision=run.config.get("precision"),
                  precision_chosen=run.config.get("precision_chosen"), image_size=run.config["image_size"],
                  batch_size=run.config["batch_size"], steps=args.steps, seconds_per_step=round(step, 3),
                  cpu_seconds_per_step=CPU_SECONDS_PER_STEP, speedup=round(CPU_SECONDS_PER_STEP / step, 1),
                  first_epoch_seconds=float(gan[0]["seconds"]), missing=missing, checkpoints=checkpoints,
                  generator_in_range=bool(in_range), best=run.best() is not None,
                  seconds=round(time.time() - started, 1))
    ok = not missing and checkpoints and in_range
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(result, f, indent=2)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{', '.join(result['devices'])}: {step:.3f} s per generator step at {result['image_size']}x"
              f"{result['image_size']}, batch {result['batch_size']}, {result['precision']} "
              f"({result['speedup']}x the 2-core CPU's {CPU_SECONDS_PER_STEP} s); run folder "
              f"{'complete' if not missing else 'missing ' + ', '.join(missing)}; generator "
              f"{'in [-1, 1]' if in_range else 'OUT OF RANGE'}; {os.path.join(args.out, 'gpu_check.json')}")
    return 0 if ok else 1


if __name__ == "__main__":
    from console import tensorflow_quiet
    with tensorflow_quiet():
        sys.exit(main())
