"""Speed of one BAGAN-GP train_step: the project's against a plain reference, side by side.

    python benchmarks/bench_train_step.py [--image-size 64] [--batch-size 128] [--steps 3]
                                          [--precision auto|float32|mixed_bfloat16] [--networks project|original]
                                          [--jit-compile] [--json]

Both steps train on the same random batch, in the same process:
- project: bagan_gp.BAGANGP.train_step with --networks at the chosen precision (the three critic
  passes of Eq. 14 in one pass: the convolutions on [real, fake] once, the label head on all three
  terms);
- reference: what a user would otherwise run, the original BAGAN-GP code's design: its networks
  (--networks original), the equations written the straightforward way, float32, three separate
  critic calls, no XLA. (Until 2026-12-01 the reference had the project's networks.)
--precision auto (the default) is bagan_train.py's default: what `bagan_train.auto_precision` picks
on this machine. Images per second = batch size / seconds per train_step (median of --steps timed
steps after one warm-up step), and the ratio project / reference. The first step of each, tracing
included, is timed too (the reference's first, so the process's one-off start-up costs are its). Achieved FLOP/s uses a per-layer count of the
networks' multiply-adds and is compared with a float32 and a bfloat16 matrix product timed here.
"""
import itertools
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from autoencoder import DEFAULT_NETWORKS, NETWORKS, build_decoder, build_embedding  # noqa: E402
from bagan_gp import BAGANGP, build_critic, build_generator, sigmoid_cross_entropy  # noqa: E402
from bagan_train import auto_precision  # noqa: E402


def forward_flops(model):
    """Multiply-adds x 2 of one image through the model's Conv2D, Conv2DTranspose and Dense layers."""
    layers = keras.layers
    flops = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):
            flops += forward_flops(layer)
        elif isinstance(layer, layers.Conv2DTranspose):
            h, w, c_in = layer.input.shape[1:]
            kh, kw = layer.kernel_size
            flops += 2 * h * w * c_in * kh * kw * layer.filters
        elif isinstance(layer, layers.Conv2D):
            h, w, _ = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            flops += 2 * h * w * layer.input.shape[-1] * kh * kw * layer.filters
        elif isinstance(layer, layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def train_step_flops(generator, critic, batch_size, train_ratio, shared_real_features):
    """FLOPs of one train_step, counting a backward pass as 2 forward passes and the gradient
    penalty's double backward pass as 4 (forward + input gradient + its weight gradient).

    Eq. (14) puts 3 batches through the critic's head; through its convolutions 3 (three calls) or 2
    (`shared_real_features`: the real images' features serve both of their terms).
    """
    g, d = forward_flops(generator), forward_flops(critic)
    body = forward_flops(critic.get_layer("critic_features"))
    head = d - body
    conv_images = batch_size * (2 if shared_real_features else 3)
    critic_step = g * batch_size + 3 * (body * conv_images + head * 3 * batch_size) + 5 * d * batch_size
    generator_step = 3 * g * batch_size + 3 * d * batch_size
    return train_ratio * critic_step + generator_step


def matmul_flops_per_s(dtype, n=2048, repeats=5):
    """FLOP/s of an n x n matrix product in `dtype` on this machine (median of repeats)."""
    a = tf.random.normal((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    product = tf.function(lambda x: tf.linalg.matmul(x, x))
    product(a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.median(times))


def build_models(image_size, batch_size, precision, reference, networks=DEFAULT_NETWORKS):
    """Networks under `precision`, wrapped in BAGANGP (or the reference subclass)."""
    keras.mixed_precision.set_global_policy(precision)
    shape = (image_size, image_size, 1)
    generator = build_generator(build_embedding(10, 128), build_decoder(shape, 128, networks))
    critic = build_critic(shape, 10, networks=networks)
    return (ReferenceBAGANGP if reference else BAGANGP)(generator, critic, 10, latent_dim=128, seed=0)


class ReferenceBAGANGP(BAGANGP):
    """The plain way: D(x_r, y_r), D(G(z, y_f), y_f) and D(x_r, y_wrong) as three critic calls."""

    def critic_loss(self, real_images, real_labels, fake_images, fake_labels):
        parts = {
            "d_real": sigmoid_cross_entropy(self.critic([real_images, real_labels], training=True), 1.0),
            "d_fake": sigmoid_cross_entropy(self.critic([fake_images, fake_labels], training=True), 0.0),
            "d_wrong": sigmoid_cross_entropy(
                self.critic([real_images, self.sample_wrong_labels(real_labels)], training=True), 0.0),
        }
        return parts["d_real"] + parts["d_fake"] + parts["d_wrong"], parts


def compiled_step(model, jit_compile=False):
    """The model's compiled train function, traced once (the warm-up step)."""
    model.compile(d_optimizer=keras.optimizers.Adam(2e-4, 0.5, 0.9),
                  g_optimizer=keras.optimizers.Adam(2e-4, 0.5, 0.9), jit_compile=jit_compile)
    model.make_train_function()
    return model.train_function


def time_interleaved(steps, batch, repeats, first=None):
    """Median seconds per call of each step function, timed alternately so load changes hit both;
    the seconds of each one's first call (tracing included) go into the list `first`."""
    for step in steps:
        start = time.perf_counter()
        float(step(batch)["d_loss"])
        if first is not None:
            first.append(time.perf_counter() - start)
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, spent in zip(steps, times):
            start = time.perf_counter()
            float(step(batch)["d_loss"])
            spent.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def resolve_precision(precision):
    """(policy, why): --precision auto resolved as bagan_train.py resolves it; why is '' when given."""
    if precision != "auto":
        return precision, ""
    policy, why = auto_precision()
    return policy, f" (auto: {why})"


def add_step_arguments(p):
    """The flags of a train-step benchmark: image size, batch size, timed steps, precision."""
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="timed steps per model (median)")
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto",
                   help="the project step's (default auto: bagan_train.py's choice for this machine)")
    p.add_argument("--networks", choices=list(NETWORKS), default=DEFAULT_NETWORKS,
                   help=f"the project step's networks (autoencoder.NETWORKS; default {DEFAULT_NETWORKS}, bagan_train.py's)")


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(p)
    p.add_argument("--jit-compile", action="store_true", help="XLA for the project's step")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.precision, why = resolve_precision(args.precision)

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (args.batch_size, args.image_size, args.image_size, 1)),
                         tf.float32)
    labels = tf.constant(rng.integers(0, 10, args.batch_size), tf.int32)

    reference = build_models(args.image_size, args.batch_size, "float32", reference=True, networks="original")
    flops = train_step_flops(reference.generator, reference.critic, args.batch_size, reference.train_ratio, False)
    reference_step = compiled_step(reference)
    project = build_models(args.image_size, args.batch_size, args.precision, reference=False, networks=args.networks)
    project_step = compiled_step(project, args.jit_compile)
    project_flops = train_step_flops(project.generator, project.critic, args.batch_size, project.train_ratio, True)
    print(f"[bench] reference (float32, 3 critic calls) and project ({args.precision}{why}, one critic pass, "
          f"jit_compile={args.jit_compile}), {args.steps} alternating timed steps each ...", file=sys.stderr)
    batch = itertools.repeat((images, labels))
    first = []
    reference_s, project_s = time_interleaved([reference_step, project_step], batch, args.steps, first)
    keras.mixed_precision.set_global_policy("float32")
    peak_f32, peak_bf16 = matmul_flops_per_s(tf.float32), matmul_flops_per_s(tf.bfloat16)

    result = dict(
        precision=args.precision, networks=args.networks, image_size=args.image_size, batch_size=args.batch_size,
        jit_compile=args.jit_compile, steps=args.steps,
        project_img_per_s=args.batch_size / project_s, reference_img_per_s=args.batch_size / reference_s,
        ratio=reference_s / project_s, project_s_per_step=project_s, reference_s_per_step=reference_s,
        reference_first_step_s=first[0], project_first_step_s=first[1],
        tflop_per_step=flops / 1e12, project_tflop_per_step=project_flops / 1e12,
        project_tflop_per_s=project_flops / project_s / 1e12,
        reference_tflop_per_s=flops / reference_s / 1e12,
        matmul_float32_tflop_per_s=peak_f32 / 1e12, matmul_bfloat16_tflop_per_s=peak_bf16 / 1e12,
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        tensorflow=tf.__version__, keras=keras.__version__,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.image_size}x{args.image_size}, batch {args.batch_size}: reference {flops / 1e12:.2f} TFLOP per "
              f"step, project {project_flops / 1e12:.2f} ({args.networks} networks, the real images' features shared)")
        print(f"reference (original networks, float32, 3 critic calls): {result['reference_img_per_s']:.1f} img/s, "
              f"{reference_s:.2f} s/step, {result['reference_tflop_per_s']:.3f} TFLOP/s")
        print(f"project ({args.networks} networks, {args.precision}{', XLA' if args.jit_compile else ''}): "
              f"{result['project_img_per_s']:.1f} img/s, {project_s:.2f} s/step, "
              f"{result['project_tflop_per_s']:.3f} TFLOP/s")
        print(f"ratio project / reference: {result['ratio']:.2f}x")
        print(f"first step, tracing included: reference {first[0]:.1f} s, project {first[1]:.1f} s")
        print(f"matrix product here: float32 {result['matmul_float32_tflop_per_s']:.3f} TFLOP/s, "
              f"bfloat16 {result['matmul_bfloat16_tflop_per_s']:.3f} TFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
