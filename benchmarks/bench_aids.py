"""What the training aids cost per step: BAGAN-GP's train_step without them, with the generator's
moving average (--ema-decay), with DiffAugment (--diffaugment translation,cutout,color) and with both.

    python benchmarks/bench_aids.py [--image-size 64] [--batch-size 128] [--steps 3]
                                    [--precision auto|float32|mixed_bfloat16] [--json]

The four models have the same networks (built from one seed) and train on the same random batch in
one process; their steps are timed alternately (median of --steps after one warm-up step each), so a
change of the machine's load hits all four. Prints seconds per step and each one's cost over none.
"""
import itertools
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from autoencoder import build_decoder, build_embedding  # noqa: E402
from bagan_gp import BAGANGP, build_critic, build_generator  # noqa: E402
from bench_train_step import add_step_arguments, compiled_step, resolve_precision, time_interleaved  # noqa: E402

POLICY = "translation,cutout,color"
SETTINGS = {"none": {}, "ema": dict(ema_decay=0.999), "diffaugment": dict(diffaugment=POLICY),
            "both": dict(ema_decay=0.999, diffaugment=POLICY)}


def build_model(image_size, networks, **aids):
    keras.utils.set_random_seed(0)
    shape = (image_size, image_size, 1)
    generator = build_generator(build_embedding(10, 128), build_decoder(shape, 128, networks))
    return BAGANGP(generator, build_critic(shape, 10, networks=networks), 10, latent_dim=128, seed=0, **aids)


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    add_step_arguments(p)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.precision, _ = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(args.precision)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (args.batch_size, args.image_size, args.image_size, 1)), tf.float32)
    labels = tf.constant(rng.integers(0, 10, args.batch_size), tf.int32)
    steps = [compiled_step(build_model(args.image_size, args.networks, **aids)) for aids in SETTINGS.values()]
    print(f"[bench] {', '.join(SETTINGS)}: {args.steps} alternating timed steps each ...", file=sys.stderr, flush=True)
    seconds = time_interleaved(steps, itertools.repeat((images, labels)), args.steps)
    result = dict(image_size=args.image_size, batch_size=args.batch_size, precision=args.precision,
                  networks=args.networks, steps=args.steps,
                  seconds_per_step=dict(zip(SETTINGS, seconds)),
                  cost=dict(zip(SETTINGS, (s / seconds[0] - 1 for s in seconds))),
                  machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                  load_average=os.getloadavg(), tensorflow=tf.__version__, keras=keras.__version__)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.image_size}x{args.image_size}, batch {args.batch_size}, {args.precision}, median of {args.steps} "
          f"steps; load average {result['load_average'][0]:.2f}")
    for name, s in result["seconds_per_step"].items():
        print(f"{name:>12}: {s:.3f} s/step" + (f"  {result['cost'][name]:+.1%}" if name != "none" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
