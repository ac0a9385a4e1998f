"""Train BAGAN-GP: the supervised autoencoder first, then the GAN (paper Sec. 3.2 and 4).

    python bagan_train.py                              # embedded digits set, about 10 minutes on 2 cores
    python bagan_train.py --dataset cells --data-dir data/cells
    python bagan_train.py --resume train_results/<run>
    python bagan_train.py --generate train_results/<run> --per-class 500 --to generated/

Everything a run produces goes into its run folder (see README.md); config.json there is enough to
rebuild the dataset split and the networks.
"""
import argparse
import csv
import datetime
import json
import math
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# What each --model is made of (the classes are in bagan_gp.py). autoencoder: which one initialises the generator
# ("variant": the BAGAN-GP variant decides; None: networks start fresh). train_ratio: its critic
# steps per generator step by default; gradient_penalty: whether --gp-weight applies.
MODELS = {
    "bagan_gp": dict(title="BAGAN-GP", autoencoder="variant", train_ratio=5, gradient_penalty=True),
    "bagan": dict(title="BAGAN", autoencoder="unsupervised", train_ratio=1, gradient_penalty=False),
    "cdragan": dict(title="cDRAGAN", autoencoder=None, train_ratio=5, gradient_penalty=True),
    "wgan_gp": dict(title="conditional WGAN-GP", autoencoder=None, train_ratio=5, gradient_penalty=True),
    "cgan": dict(title="CGAN", autoencoder=None, train_ratio=1, gradient_penalty=False),
    "acgan": dict(title="AC-GAN", autoencoder=None, train_ratio=1, gradient_penalty=False),
}


def autoencoder_kind(config):
    """"supervised", "unsupervised" or None: the autoencoder a run's configuration trains first."""
    from bagan_gp import VARIANTS
    kind = MODELS[config.get("model", "bagan_gp")]["autoencoder"]
    if kind == "variant":
        return "supervised" if VARIANTS[config.get("variant") or "v3"]["supervised_autoencoder"] else "unsupervised"
    return kind


PAPER_DEFAULTS = dict(image_size=64, batch_size=128, latent_dim=128, learning_rate=2e-4,
                      beta_1=0.5, beta_2=0.9, train_ratio=5, gp_weight=10.0)
# Epochs of the paper's Sec. 4 (cells 100, Fashion-MNIST 15, CIFAR-10 30); the autoencoder's are ours.
DATASET_DEFAULTS = {
    "digits": dict(image_size=32, batch_size=64, epochs=40, ae_epochs=30),
    # A third of the images: three times the epochs for about the same number of generator steps.
    "digits --imbalanced": dict(image_size=32, batch_size=64, epochs=120, ae_epochs=30),
    "fashion_mnist": dict(epochs=15, ae_epochs=10),
    "cifar10": dict(epochs=30, ae_epochs=10),
    "cells": dict(epochs=100, ae_epochs=30),
}
FOLDER_DEFAULTS = dict(epochs=100, ae_epochs=30)
GRID_ROWS = 8
CAPTION_HEIGHT = 14  # pixels above each progress.gif frame for "epoch N"


class UsageError(Exception):
    """A bad flag or run folder: reported in one line before any work is done."""


# ---------------------------------------------------------------------------------------------
# Command line and configuration


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Train BAGAN-GP (supervised autoencoder, then the GAN) and write a run folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="digits",
                   help="digits (embedded), fashion_mnist, cifar10, cells, or a folder of class subfolders")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are")
    p.add_argument("--imbalanced", action="store_true", help="use the paper's imbalanced protocol")
    p.add_argument("--image-size", type=int, help="32, 64 or 128 (paper: 64; digits: 32)")
    p.add_argument("--batch-size", type=int, help="paper: 128 (digits: 64)")
    p.add_argument("--latent-dim", type=int, help="paper: 128")
    p.add_argument("--learning-rate", type=float, help="Adam learning rate, paper: 2e-4")
    p.add_argument("--beta-1", type=float, help="Adam beta_1, paper: 0.5")
    p.add_argument("--beta-2", type=float, help="Adam beta_2, paper: 0.9")
    p.add_argument("--train-ratio", type=int, help="critic steps per generator step, paper: 5")
    p.add_argument("--gp-weight", type=float, help="gradient penalty weight lambda, paper: 10")
    p.add_argument("--epochs", type=int, help="GAN epochs (default depends on the dataset)")
    p.add_argument("--ae-epochs", type=int, help="autoencoder epochs (default depends on the dataset)")
    p.add_argument("--steps-per-epoch", type=int, help="cap on generator steps per epoch (smoke runs)")
    p.add_argument("--model", choices=list(MODELS), default="bagan_gp",
                   help="bagan_gp (this paper), bagan (original BAGAN), cdragan, wgan_gp (conditional), "
                        "cgan, acgan: the papers' baselines on the same networks")
    p.add_argument("--variant", choices=["v1", "v2", "v3"],
                   help="bagan_gp only (default v3). v1: real labels for fakes; v2: balanced labels; "
                        "v3: v2 + supervised autoencoder")
    p.add_argument("--critic-init", choices=["none", "encoder"], default="none",
                   help="bagan_gp only: initialise the critic's convolutions from the pretrained encoder")
    p.add_argument("--real-fraction", type=float,
                   help="acgan only: share of real images in each discriminator batch "
                        "(default 0.5; paper 003: 0.25 for AC-GAN v1, 0.75 for v2)")
    p.add_argument("--alternate", action="store_true",
                   help="acgan only (AC-GAN v3): 75%% real images, 50%% every third epoch")
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16"], default="float32",
                   help="Keras dtype policy; losses and the penalty's norm stay float32")
    p.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto",
                   help="XLA for the train step; auto = Keras' choice: on with a GPU, off on CPU-only "
                        "machines, where it measured slower (benchmarks/RESULTS.md)")
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default="default",
                   help="tf.distribute: default (one device), mirrored (all GPUs of this machine, or its "
                        "logical CPUs), multiworker (several machines, from TF_CONFIG); --batch-size stays "
                        "the global batch")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default=None, help="run folder (default train_results/<dataset>-<variant>-<time>)")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="how many epoch checkpoints to keep")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--generate", metavar="RUN_DIR", help="write generated images of RUN_DIR's generator")
    p.add_argument("--per-class", type=int, default=100, help="with --generate: images per class")
    p.add_argument("--to", metavar="FOLDER", help="with --generate: output folder (class subfolders)")
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output")
    return p.parse_args(argv)


def build_config(args, data_in_memory=False):
    """Flags -> the full run configuration, with paper and dataset defaults filled in.

    `data_in_memory`: the caller brings its own Dataset (the oversampler); --dataset only names it.
    """
    from datasets import DATASET_NAMES
    if not data_in_memory and args.dataset not in DATASET_NAMES and not os.path.isdir(args.dataset):
        raise UsageError(f"unknown dataset {args.dataset!r}: use one of {', '.join(DATASET_NAMES)} "
                         "or a folder of class subfolders")
    config = dict(PAPER_DEFAULTS)
    preset = f"{args.dataset} --imbalanced" if args.imbalanced else args.dataset
    config.update(DATASET_DEFAULTS.get(preset) or DATASET_DEFAULTS.get(args.dataset, FOLDER_DEFAULTS))
    config.update(model_defaults(args))
    for key in list(PAPER_DEFAULTS) + ["epochs", "ae_epochs"]:
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    config.update(dataset=args.dataset, data_dir=args.data_dir, imbalanced=args.imbalanced,
                  model=args.model, variant=(args.variant or "v3") if args.model == "bagan_gp" else None,
                  critic_init=args.critic_init, precision=args.precision,
                  jit_compile=args.jit_compile,
                  seed=args.seed, steps_per_epoch=args.steps_per_epoch,
                  keep_checkpoints=args.keep_checkpoints)
    validate_config(config)
    return config


def model_defaults(args):
    """The settings a --model implies, after refusing the flags that do not apply to it."""
    model = MODELS[args.model]
    misplaced = [flag for flag, given, allowed in (
        ("--variant", args.variant is not None, args.model == "bagan_gp"),
        ("--critic-init encoder", args.critic_init != "none", args.model == "bagan_gp"),
        ("--gp-weight", args.gp_weight is not None, model["gradient_penalty"]),
        ("--real-fraction", args.real_fraction is not None, args.model == "acgan"),
        ("--alternate", args.alternate, args.model == "acgan"),
    ) if given and not allowed]
    if misplaced:
        raise UsageError(f"{', '.join(misplaced)} does not apply to --model {args.model}")
    defaults = dict(train_ratio=model["train_ratio"])
    if not model["gradient_penalty"]:
        defaults["gp_weight"] = 0.0
    if args.model == "acgan":
        defaults.update(alternate=args.alternate,
                        real_fraction=args.real_fraction or (0.75 if args.alternate else 0.5))
        if not 0.0 < defaults["real_fraction"] < 1.0:
            raise UsageError(f"--real-fraction must be between 0 and 1, got {defaults['real_fraction']}")
    return defaults


def validate_config(config):
    from datasets import MODEL_IMAGE_SIZES as SUPPORTED_IMAGE_SIZES
    if config["image_size"] not in SUPPORTED_IMAGE_SIZES:
        raise UsageError(f"image size {config['image_size']} is not supported: use one of "
                         f"{', '.join(map(str, SUPPORTED_IMAGE_SIZES))}")
    if config["train_ratio"] < 1:
        raise UsageError(f"train ratio must be at least 1, got {config['train_ratio']}")
    for key in ("batch_size", "latent_dim", "epochs"):
        if config[key] < 1:
            raise UsageError(f"{key.replace('_', '-')} must be at least 1, got {config[key]}")
    if config["ae_epochs"] < 0:
        raise UsageError(f"ae-epochs must be at least 0, got {config['ae_epochs']}")
    if config["steps_per_epoch"] is not None and config["steps_per_epoch"] < 1:
        raise UsageError("steps-per-epoch must be at least 1")


def library_versions():
    import keras
    import tensorflow as tf
    return dict(python=platform.python_version(), tensorflow=tf.__version__,
                keras=keras.__version__, numpy=np.__version__)


def new_run_dir(config):
    name = os.path.basename(os.path.normpath(config["dataset"]))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    model = config["variant"] if config.get("model", "bagan_gp") == "bagan_gp" else config["model"]
    return os.path.join("train_results", f"{name}-{model}-{stamp}")


# ---------------------------------------------------------------------------------------------
# Files: atomic writes, images, GIF


def atomic_write(path, write):
    """Write through `write(tmp_path)` and rename, so a killed process never leaves half a file."""
    directory, base = os.path.split(os.fspath(path))
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{base}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_json(path, data):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
    atomic_write(path, write)


def save_model(model, path):
    atomic_write(path, model.save)


def image_grid(rows):
    """rows: list of uint8 arrays (n, H, W, C) of equal n -> one uint8 (rows*H, n*W, C) picture."""
    pad = 2
    n, h, w, c = rows[0].shape
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, c), 255, np.uint8)
    for r, images in enumerate(rows):
        for col, image in enumerate(images):
            y, x = pad + r * (h + pad), pad + col * (w + pad)
            grid[y:y + h, x:x + w] = image
    return grid


def save_png(path, image):
    from PIL import Image
    image = image[..., 0] if image.shape[-1] == 1 else image
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def assemble_gif(samples_dir, gif_path, duration=0.4):
    """progress.gif: one frame per samples/epoch_NNN.png, in epoch order, captioned with the epoch.

    The caption also keeps two alike epochs apart: GIF writers merge identical consecutive frames.
    """
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw
    frames = sorted(f for f in os.listdir(samples_dir) if f.startswith("epoch_") and f.endswith(".png"))
    if not frames:
        return
    images = []
    for name in frames:
        grid = Image.open(os.path.join(samples_dir, name)).convert("RGB")
        frame = Image.new("RGB", (grid.width, grid.height + CAPTION_HEIGHT), "white")
        frame.paste(grid, (0, CAPTION_HEIGHT))
        ImageDraw.Draw(frame).text((3, 1), f"epoch {int(name[6:-4])}", fill="black")
        images.append(np.asarray(frame))
    atomic_write(gif_path, lambda tmp: imageio.mimsave(tmp, images, format="GIF",
                                                       duration=duration, loop=0))


# ---------------------------------------------------------------------------------------------
# Callbacks: everything that is not the equations


def make_callbacks():
    """Callback classes, defined once Keras is imported."""
    import keras

    class HistoryCSV(keras.callbacks.Callback):
        """Appends one row per epoch (phase, epoch, losses) to history.csv and redraws losses.png."""

        def __init__(self, run_dir, phase, title="BAGAN-GP"):
            super().__init__()
            self.path = os.path.join(run_dir, "history.csv")
            self.plot_path = os.path.join(run_dir, "losses.png")
            self.phase = phase
            self.title = title

        def on_epoch_end(self, epoch, logs=None):
            if getattr(self.model, "nan_step", None) is not None:
                return
            rows = read_history(self.path)
            rows.append(dict(phase=self.phase, epoch=epoch + 1,
                             **{k: float(v) for k, v in (logs or {}).items()}))
            write_history(self.path, rows)
            plot_losses(rows, self.plot_path, self.title)

    class StopOnNaN(keras.callbacks.Callback):
        """Stops at the first non-finite loss and remembers the step; nothing is saved after it."""

        def __init__(self, steps_per_epoch):
            super().__init__()
            self.steps_per_epoch = steps_per_epoch
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            bad = [k for k, v in (logs or {}).items() if not math.isfinite(float(v))]
            if bad:
                self.model.nan_step = self.epoch * self.steps_per_epoch + batch + 1
                self.model.nan_losses = bad
                self.model.stop_training = True

    class SampleGrid(keras.callbacks.Callback):
        """samples/epoch_NNN.png in the layout of Eq. (16): a row of real images, then one row per
        fixed noise vector, one column per class; one batched generator call per epoch."""

        def __init__(self, run_dir, real_row, noise):
            super().__init__()
            self.dir = os.path.join(run_dir, "samples")
            os.makedirs(self.dir, exist_ok=True)
            self.real_row = real_row
            self.noise = noise

        def on_epoch_end(self, epoch, logs=None):
            if getattr(self.model, "nan_step", None) is not None:
                return
            rows = generate_grid_rows(self.model.generator, self.noise, len(self.real_row))
            save_png(os.path.join(self.dir, f"epoch_{epoch + 1:03d}.png"),
                     image_grid([self.real_row] + rows))

    class Checkpoint(keras.callbacks.Callback):
        """Full training state after every good epoch (atomic), keeping the newest `keep`."""

        def __init__(self, run_dir, keep):
            super().__init__()
            self.dir = os.path.join(run_dir, "checkpoints")
            os.makedirs(self.dir, exist_ok=True)
            self.keep = keep

        def on_epoch_end(self, epoch, logs=None):
            if getattr(self.model, "nan_step", None) is not None:
                return
            save_checkpoint(self.model, os.path.join(self.dir, f"epoch_{epoch + 1:03d}.npz"), epoch + 1)
            for old in list_checkpoints(self.dir)[:-self.keep]:
                os.remove(old)

    class EpochSchedule(keras.callbacks.Callback):
        """Tells a model with a per-epoch schedule (AC-GAN v3's batch proportions) the epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            if hasattr(self.model, "begin_epoch"):
                self.model.begin_epoch(epoch)

    return HistoryCSV, StopOnNaN, SampleGrid, Checkpoint, EpochSchedule


HISTORY_FIELDS = ["phase", "epoch", "loss", "val_loss", "d_loss", "g_loss", "gp",
                  "d_real", "d_fake", "d_wrong", "d_class"]


def read_history(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def write_history(path, rows):
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write)


def plot_losses(rows, path, title="BAGAN-GP"):
    """losses.png: autoencoder train/test MAE and the GAN's losses per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_ae, ax_gan) = plt.subplots(1, 2, figsize=(11, 4))
    for phase, ax, keys in (("autoencoder", ax_ae, ["loss", "val_loss"]),
                            ("gan", ax_gan, ["d_loss", "g_loss", "d_real", "d_fake", "d_wrong", "d_class", "gp"])):
        phase_rows = [r for r in rows if r["phase"] == phase]
        for key in keys:
            points = [(int(r["epoch"]), float(r[key])) for r in phase_rows if key in r]
            if points:
                ax.plot(*zip(*points), label={"loss": "train MAE", "val_loss": "test MAE"}.get(key, key))
        ax.set_title({"autoencoder": "autoencoder reconstruction", "gan": title}[phase])
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)


def generate_grid_rows(generator, noise, num_classes):
    """G(z_r, c) for every fixed noise vector r and class c, in one batched call (Eq. 16)."""
    from datasets import to_uint8
    rows = len(noise)
    z = np.repeat(noise, num_classes, axis=0)
    labels = np.tile(np.arange(num_classes, dtype=np.int32), rows)
    images = to_uint8(generator([z, labels], training=False))
    return list(images.reshape((rows, num_classes) + images.shape[1:]))


def reconstruction_figure(path, autoencoder, data, supervised, per_class=6):
    """reconstruction.png: for each class a row of real test images and one of reconstructions."""
    from datasets import to_model_range, to_uint8
    rows = []
    for c in range(data.num_classes):
        pool = data.x_test[data.y_test == c]
        if len(pool) == 0:
            pool = data.x_train[data.y_train == c]
        real = pool[:per_class]
        if len(real) < per_class:
            real = np.concatenate([real, np.zeros((per_class - len(real),) + real.shape[1:], np.uint8)])
        inputs = np.asarray(to_model_range(real))
        if supervised:
            inputs = [inputs, np.full(per_class, c, np.int32)]
        rows += [real, to_uint8(autoencoder(inputs, training=False))]
    save_png(path, image_grid(rows))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def optimizer_state(optimizer):
    """Step counter and moments; the learning rate is left to config.json, so an edit there counts."""
    return [v for v in optimizer.variables if not v.path.endswith("learning_rate")]


def training_state(model):
    """Every variable needed to continue exactly: networks, optimizers, the noise generator."""
    return (model.generator.variables + model.critic.variables + optimizer_state(model.d_optimizer)
            + optimizer_state(model.g_optimizer) + [model.seed_generator.state])


def save_checkpoint(model, path, epoch):
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(training_state(model))}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, epoch=np.int64(epoch), **arrays)
    atomic_write(path, write)


def load_checkpoint(model, path):
    """Restore a checkpoint into a compiled model (optimizers built by its compile); returns the
    number of finished epochs."""
    variables = training_state(model)
    with np.load(path) as data:
        keys = sorted(k for k in data.files if k.startswith("v"))
        if len(keys) != len(variables):
            raise UsageError(f"checkpoint {path} does not match this configuration "
                             f"({len(keys)} arrays, {len(variables)} variables)")
        for key, variable in zip(keys, variables):
            variable.assign(data[key])
        return int(data["epoch"])


def list_checkpoints(directory):
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if f.startswith("epoch_") and f.endswith(".npz"))


# ---------------------------------------------------------------------------------------------
# The two phases


def make_strategy(name):
    """The tf.distribute strategy of --strategy. Created before any other TensorFlow work, as
    MultiWorkerMirroredStrategy requires; mirrored uses every GPU, or the logical CPU devices of
    a machine without one (one unless configured, e.g. by the tests)."""
    if name == "multiworker" and not os.environ.get("TF_CONFIG"):
        raise UsageError("--strategy multiworker reads the cluster from TF_CONFIG, which is not set "
                         "(see README: several GPUs or machines)")
    import tensorflow as tf
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        return reduce_each_tensor(tf.distribute.MultiWorkerMirroredStrategy())
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def reduce_each_tensor(strategy):
    """Work around Keras' fit under MultiWorkerMirroredStrategy (keras-team/keras#20585, open).

    Keras asks the strategy to reduce a whole (images, labels) batch at once and to average the
    replicas' scalar losses "along axis 0"; this strategy's reduce takes one tensor, and axis 0 of a
    scalar does not exist. Reducing each tensor, scalars over the replicas, is what Keras means.
    """
    import tensorflow as tf
    reduce = strategy.reduce

    def reduce_one(op, value, axis=None):
        scalar = strategy.experimental_local_results(value)[0].shape.rank == 0
        return reduce(op, value, axis=None if scalar else axis)

    strategy.reduce = lambda op, value, axis=None: tf.nest.map_structure(
        lambda v: reduce_one(op, v, axis), value)
    return strategy


def is_chief(strategy):
    """Whether this process writes the run folder: always, except on a multi-worker cluster's
    non-chief workers (the chief is task "chief", or worker 0 when the cluster has none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def set_precision(config):
    """Keras dtype policy of every network built afterwards (the losses stay float32).

    TensorFlow logs one harmless 'remapper failed ... LeakyReluGrad' error while optimising the
    critic's double backward pass; switching the remapper off silences it but made the 64x64
    step markedly slower (benchmarks/RESULTS.md), so it stays on.
    """
    import keras
    keras.mixed_precision.set_global_policy(config["precision"])


def train_autoencoder(config, data, run_dir, verbose, chief=True):
    """Phase 1: the (supervised, for v3) autoencoder; the chief saves encoder/embedding/decoder .keras."""
    from autoencoder import (build_decoder, build_embedding, build_encoder, build_supervised_autoencoder,
                             build_unsupervised_autoencoder, compile_autoencoder)
    from datasets import make_tf_dataset
    HistoryCSV, *_ = make_callbacks()

    supervised = autoencoder_kind(config) == "supervised"
    shape = data.x_train.shape[1:]
    encoder = build_encoder(shape, config["latent_dim"])
    decoder = synchronize_batch_norm(build_decoder(shape, config["latent_dim"]))
    embedding = build_embedding(data.num_classes, config["latent_dim"])
    if supervised:
        autoencoder = build_supervised_autoencoder(encoder, embedding, decoder)
    else:
        autoencoder = build_unsupervised_autoencoder(encoder, decoder)
    compile_autoencoder(autoencoder, config["learning_rate"], config["beta_1"], config["beta_2"])

    def pairs(x, y, shuffle):
        """((image, label) or image, image) batches, the autoencoder's input and target; and their count."""
        steps = math.ceil(len(x) / config["batch_size"])
        ds = make_tf_dataset(x, y, config["batch_size"], shuffle=shuffle, seed=config["seed"], repeat=True,
                             steps_per_epoch=steps)
        return ds.map(lambda im, lab: (((im, lab) if supervised else im), im)), steps

    if config["ae_epochs"] > 0:
        print(f"[autoencoder] {'supervised' if supervised else 'unsupervised'}, "
              f"{config['ae_epochs']} epochs on {len(data.x_train)} images", flush=True)
        train_batches, train_steps = pairs(data.x_train, data.y_train, True)
        test_batches, test_steps = pairs(data.x_test, data.y_test, False)
        autoencoder.fit(train_batches, epochs=config["ae_epochs"], steps_per_epoch=train_steps,
                        validation_data=test_batches, validation_steps=test_steps,
                        callbacks=[HistoryCSV(run_dir, "autoencoder")] if chief else [], shuffle=False,
                        verbose=verbose)
    if chief:
        reconstruction_figure(os.path.join(run_dir, "reconstruction.png"), autoencoder, data, supervised)
        for model in (encoder, embedding, decoder):
            save_model(model, os.path.join(run_dir, f"{model.name}.keras"))
    return encoder, embedding, decoder


def load_autoencoder(run_dir):
    import keras
    encoder, embedding, decoder = [keras.models.load_model(os.path.join(run_dir, f"{name}.keras"))
                                   for name in ("encoder", "embedding", "decoder")]
    return encoder, embedding, synchronize_batch_norm(decoder)


def synchronize_batch_norm(model):
    """Batch statistics over the global batch when replicas share it, as on one device."""
    import keras
    import tensorflow as tf
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
    return model


def encode_training_images(encoder, data, batch_size):
    """The encoder's latent vectors of every training image, in order (plain calls: no collectives)."""
    from datasets import to_model_range
    return np.concatenate([np.asarray(encoder(to_model_range(data.x_train[i:i + batch_size]), training=False))
                           for i in range(0, len(data.x_train), batch_size)])


def build_model(config, data, encoder=None, embedding=None, decoder=None):
    """Phase 2: the --model's generator and critic (from the autoencoder where it has one), compiled."""
    import keras
    import bagan_gp as gan
    from autoencoder import build_decoder, build_embedding
    name, num_classes, shape = config.get("model", "bagan_gp"), data.num_classes, data.x_train.shape[1:]
    common = dict(latent_dim=config["latent_dim"], train_ratio=config["train_ratio"],
                  gp_weight=config["gp_weight"], seed=config["seed"])
    if decoder is None:
        decoder = synchronize_batch_norm(build_decoder(shape, config["latent_dim"]))
    if name == "bagan":
        means, covariances = gan.class_conditional_statistics(
            encode_training_images(encoder, data, config["batch_size"]), data.y_train, num_classes)
        generator = gan.build_generator(gan.build_class_conditional_latent(means, covariances), decoder)
        model = gan.BAGAN(generator, gan.build_bagan_discriminator(encoder, num_classes), num_classes, **common)
    elif name == "acgan":
        generator = gan.build_generator(build_embedding(num_classes, config["latent_dim"]), decoder)
        model = gan.ACGAN(generator, gan.build_acgan_discriminator(shape, num_classes), num_classes,
                          real_fraction=config["real_fraction"], alternate=config["alternate"], **common)
    else:
        variant = gan.VARIANTS[config["variant"] if name == "bagan_gp" else "v1"]
        if embedding is None or not variant["supervised_autoencoder"]:
            embedding = build_embedding(num_classes, config["latent_dim"])
        critic = gan.build_critic(shape, num_classes,
                                  encoder=encoder if config.get("critic_init") == "encoder" else None)
        loss = gan.wasserstein if name == "wgan_gp" else gan.sigmoid_cross_entropy
        model = gan.BAGANGP(gan.build_generator(embedding, decoder), critic, num_classes,
                            balanced_labels=variant["balanced_labels"],
                            wrong_label_term=variant["wrong_label_term"], adversarial_loss=loss, **common)

    def adam():
        return keras.optimizers.Adam(config["learning_rate"], beta_1=config["beta_1"], beta_2=config["beta_2"])
    jit_compile = {"auto": "auto", "true": True, "false": False}[config.get("jit_compile", "auto")]
    model.compile(d_optimizer=adam(), g_optimizer=adam(), jit_compile=jit_compile)
    return model


def steps_per_epoch(config, data):
    steps = len(data.x_train) // config["batch_size"]
    if config["steps_per_epoch"]:
        steps = min(steps, config["steps_per_epoch"])
    return steps


def train_gan(config, data, run_dir, model, first_epoch, verbose, chief=True):
    """Phase 2: the GAN with Keras fit; returns the step at which a loss became NaN, or None."""
    import keras
    from datasets import make_tf_dataset
    HistoryCSV, StopOnNaN, SampleGrid, Checkpoint, EpochSchedule = make_callbacks()
    steps = steps_per_epoch(config, data)
    name = config.get("model", "bagan_gp")
    real_row = np.stack([data.x_train[data.y_train == c][0] for c in range(data.num_classes)])
    noise = np.random.default_rng(config["seed"]).standard_normal((GRID_ROWS, config["latent_dim"]))
    callbacks = [EpochSchedule(), StopOnNaN(steps)]
    if chief:
        callbacks += [
            HistoryCSV(run_dir, "gan", MODELS[name]["title"]),
            SampleGrid(run_dir, real_row, noise.astype(np.float32)),
            Checkpoint(run_dir, config["keep_checkpoints"]),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), update_freq="epoch"),
        ]
    model.nan_step = None
    label = f"bagan-gp] {config['variant']}" if name == "bagan_gp" else f"{name}]"
    print(f"[{label}, epochs {first_epoch + 1}..{config['epochs']}, "
          f"{steps} generator steps per epoch, train ratio {config['train_ratio']}", flush=True)
    batches = make_tf_dataset(data.x_train, data.y_train, config["batch_size"], seed=config["seed"],
                              drop_remainder=True, repeat=True, first_epoch=first_epoch, steps_per_epoch=steps)
    model.fit(batches, epochs=config["epochs"], initial_epoch=first_epoch, steps_per_epoch=steps,
              callbacks=callbacks, shuffle=False, verbose=verbose)
    return model.nan_step


# ---------------------------------------------------------------------------------------------
# Commands


def train(args):
    if args.resume:
        run_dir = args.resume
        config_path = os.path.join(run_dir, "config.json")
        if not os.path.isfile(config_path):
            raise UsageError(f"{run_dir} is not a run folder (no config.json)")
        with open(config_path) as f:
            config = json.load(f)
        if args.epochs is not None:
            config["epochs"] = args.epochs
        validate_config(config)
    else:
        config = build_config(args)
        run_dir = args.out or new_run_dir(config)
    strategy = make_strategy(args.strategy)
    if not args.resume and is_chief(strategy) and os.path.exists(os.path.join(run_dir, "config.json")):
        raise UsageError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")

    from datasets import load_dataset
    data = load_dataset(config["dataset"], data_dir=config["data_dir"], image_size=config["image_size"],
                        imbalanced=config["imbalanced"], seed=config["seed"])
    code, summary = fit_run(config, data, run_dir, args.verbose, strategy)
    if code == 0:
        print(json.dumps(summary) if args.json else f"done in {summary['seconds']} s: {run_dir}")
    return code


def fit_run(config, data, run_dir, verbose=1, strategy=None):
    """Train the run described by `config` on `data` into `run_dir` (new or to resume).

    Writes config.json (with the data's class names and counts), the autoencoder, the GAN and
    every file of the run folder. Returns (exit code, summary); a non-finite loss gives code 1
    with the last good checkpoint kept. Used by `train` and by the oversampler.

    Under a tf.distribute `strategy` the networks and optimizers are built in its scope, Keras
    splits each global batch between the replicas, and only the chief writes files.
    """
    import keras
    import tensorflow as tf
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if len(data.x_train) < config["batch_size"]:
        raise UsageError(f"batch size {config['batch_size']} is larger than the training split "
                         f"({len(data.x_train)} images)")
    if config["batch_size"] % replicas:
        raise UsageError(f"batch size {config['batch_size']} does not split evenly between {replicas} replicas")
    config.update(class_names=list(data.class_names), channels=data.channels,
                  train_counts=data.train_counts(), test_counts=data.test_counts(),
                  versions=library_versions())
    if chief:
        os.makedirs(run_dir, exist_ok=True)
        save_json(os.path.join(run_dir, "config.json"), config)
    print(f"run folder: {run_dir}" + (f" ({replicas} replicas, {strategy.__class__.__name__})"
                                      if replicas > 1 else "") + ("" if chief else " (a worker: writes nothing)"),
          flush=True)

    keras.utils.set_random_seed(config["seed"])
    set_precision(config)
    started = time.time()
    with strategy.scope():
        return _fit_in_scope(config, data, run_dir, verbose, chief, started)


def _fit_in_scope(config, data, run_dir, verbose, chief, started):
    """fit_run's two phases, in the strategy's scope."""
    checkpoints = list_checkpoints(os.path.join(run_dir, "checkpoints"))
    encoder = embedding = decoder = None
    if autoencoder_kind(config) is None:
        print(f"[{config['model']}] no autoencoder: the networks start from random weights", flush=True)
    elif all(os.path.exists(os.path.join(run_dir, f"{n}.keras")) for n in ("encoder", "embedding", "decoder")):
        print("[autoencoder] already trained in this run folder; loading it", flush=True)
        encoder, embedding, decoder = load_autoencoder(run_dir)
    else:
        encoder, embedding, decoder = train_autoencoder(config, data, run_dir, verbose, chief)
    model = build_model(config, data, encoder, embedding, decoder)
    first_epoch = load_checkpoint(model, checkpoints[-1]) if checkpoints else 0
    if checkpoints:
        print(f"[{config.get('model', 'bagan_gp')}] resuming from {checkpoints[-1]} (epoch {first_epoch})",
              flush=True)

    nan_step = None
    if first_epoch < config["epochs"]:
        nan_step = train_gan(config, data, run_dir, model, first_epoch, verbose, chief)
    if chief:
        assemble_gif(os.path.join(run_dir, "samples"), os.path.join(run_dir, "progress.gif"))
    summary = dict(run_dir=run_dir, epochs=config["epochs"], seconds=round(time.time() - started, 1))
    if nan_step is not None:
        last = list_checkpoints(os.path.join(run_dir, "checkpoints"))
        keep = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written"
        print(f"error: a non-finite loss ({', '.join(model.nan_losses)}) at generator step {nan_step}; "
              f"training stopped, {keep}", file=sys.stderr)
        return 1, dict(summary, nan_step=nan_step)
    if chief:
        save_model(model.generator, os.path.join(run_dir, "generator.keras"))
        save_model(model.critic, os.path.join(run_dir, "critic.keras"))
    summary["last"] = read_history(os.path.join(run_dir, "history.csv"))[-1:]
    return 0, summary


def generate(args):
    """--generate: N images per class from a run's generator, as PNG in class subfolders."""
    if not args.to:
        raise UsageError("--generate needs --to FOLDER")
    if args.per_class < 1:
        raise UsageError("--per-class must be at least 1")
    config_path = os.path.join(args.generate, "config.json")
    generator_path = os.path.join(args.generate, "generator.keras")
    for path in (config_path, generator_path):
        if not os.path.isfile(path):
            raise UsageError(f"{args.generate} has no {os.path.basename(path)}: is it a finished run folder?")
    with open(config_path) as f:
        config = json.load(f)
    import keras
    from datasets import to_uint8
    generator = keras.models.load_model(generator_path)
    rng = np.random.default_rng(args.seed)
    written = {}
    for c, name in enumerate(config["class_names"]):
        folder = os.path.join(args.to, str(name).replace(os.sep, "-"))
        os.makedirs(folder, exist_ok=True)
        for start in range(0, args.per_class, 256):
            n = min(256, args.per_class - start)
            z = rng.standard_normal((n, config["latent_dim"])).astype(np.float32)
            images = to_uint8(generator.predict_on_batch([z, np.full(n, c, np.int32)]))
            for i, image in enumerate(images):
                save_png(os.path.join(folder, f"generated_{start + i:05d}.png"), image)
        written[name] = args.per_class
        print(f"{name}: {args.per_class} images -> {folder}", flush=True)
    if args.json:
        print(json.dumps(dict(folder=args.to, per_class=written)))
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        return generate(args) if args.generate else train(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from datasets import DatasetError
        if isinstance(e, DatasetError):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
