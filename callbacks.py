"""Everything a training run does besides the equations, as Keras callbacks, and the pictures they draw.

bagan_train.py gives them to `fit`: the autoencoder phase gets `HistoryCSV`; the GAN phase gets
`EpochSchedule`, `StopOnNonFiniteLoss` and, in the process that writes the run folder, `HistoryCSV`,
`SampleGrid`, `Checkpoint`, `ProgressGIF` and TensorBoard. They read and write the run folder
through a runs.Run.
"""
import math
import os

import keras
import numpy as np

from datasets import to_model_range, to_uint8
from runs import CHECKPOINTS_DIR, atomic_write, save_png

GRID_ROWS = 8
"""Rows of generated images in a sample grid (fixed noise vectors), below the row of real ones."""
GRID_PAD = 2
"""White pixels between and around the images of a grid."""
CAPTION_HEIGHT = 14
"""Pixels above each progress.gif frame for "epoch N"."""


class NonFiniteLoss(Exception):
    """Training stopped at a NaN or infinite loss; nothing was written for that epoch."""

    def __init__(self, step, losses, checkpoint):
        self.step, self.losses, self.checkpoint = step, losses, checkpoint
        keep = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written"
        super().__init__(f"a non-finite loss ({', '.join(losses)}) at generator step {step}; "
                         f"training stopped, {keep}")


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises NonFiniteLoss at the first non-finite loss, before any callback ends the epoch, so
    no history row, grid or checkpoint is written after it."""

    def __init__(self, run, steps_per_epoch):
        super().__init__()
        self.run = run
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = [k for k, v in (logs or {}).items() if not math.isfinite(float(v))]
        if bad:
            checkpoints = self.run.checkpoints()
            raise NonFiniteLoss(self.epoch * self.steps_per_epoch + batch + 1, bad,
                                checkpoints[-1] if checkpoints else None)


class HistoryCSV(keras.callbacks.Callback):
    """Appends one row per epoch (phase, epoch, the model's loss_parts) to history.csv and redraws losses.png."""

    def __init__(self, run, phase, title):
        super().__init__()
        self.run = run
        self.phase = phase
        self.title = title

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        keys = dict.fromkeys([*getattr(self.model, "loss_parts", ()), *logs])  # the model's order first
        rows = self.run.append_history(dict(phase=self.phase, epoch=epoch + 1,
                                            **{k: float(logs[k]) for k in keys if k in logs}))
        plot_losses(rows, self.run.file("losses.png"), self.title)


class SampleGrid(keras.callbacks.Callback):
    """samples/epoch_NNN.png in the layout of Eq. (16): a row of real images, then one row per
    fixed noise vector, one column per class; one batched generator call per epoch."""

    def __init__(self, run, real_row, noise):
        super().__init__()
        self.dir = run.file("samples")
        self.dir.mkdir(exist_ok=True)
        self.real_row = real_row
        self.noise = noise

    def on_epoch_end(self, epoch, logs=None):
        rows = generate_grid_rows(self.model.generator, self.noise, len(self.real_row))
        save_png(self.dir / f"epoch_{epoch + 1:03d}.png", image_grid([self.real_row] + rows))


class Checkpoint(keras.callbacks.Callback):
    """The model's whole training state after every epoch (runs.Run.save_checkpoint), newest `keep` kept."""

    def __init__(self, run, keep):
        super().__init__()
        run.file(CHECKPOINTS_DIR).mkdir(exist_ok=True)
        self.run = run
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        self.run.save_checkpoint(self.model.training_state(), epoch + 1, self.keep)


class EpochSchedule(keras.callbacks.Callback):
    """Tells a model with a per-epoch schedule (AC-GAN v3's batch proportions) the epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        if hasattr(self.model, "begin_epoch"):
            self.model.begin_epoch(epoch)


class ProgressGIF(keras.callbacks.Callback):
    """progress.gif from the sample grids when training ends (not after a non-finite loss)."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_train_end(self, logs=None):
        assemble_gif(self.run.file("samples"), self.run.file("progress.gif"))


# ---------------------------------------------------------------------------------------------
# Pictures


def image_grid(rows):
    """rows: list of uint8 arrays (n, H, W, C) of equal n -> one uint8 picture, GRID_PAD apart."""
    pad = GRID_PAD
    n, h, w, c = rows[0].shape
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, c), 255, np.uint8)
    for r, images in enumerate(rows):
        for col, image in enumerate(images):
            y, x = pad + r * (h + pad), pad + col * (w + pad)
            grid[y:y + h, x:x + w] = image
    return grid


def generate_grid_rows(generator, noise, num_classes):
    """G(z_r, c) for every fixed noise vector r and class c, in one batched call (Eq. 16)."""
    rows = len(noise)
    z = np.repeat(noise, num_classes, axis=0)
    labels = np.tile(np.arange(num_classes, dtype=np.int32), rows)
    images = to_uint8(generator([z, labels], training=False))
    return list(images.reshape((rows, num_classes) + images.shape[1:]))


def reconstruction_figure(path, autoencoder, data, per_class=6):
    """reconstruction.png: for each class a row of real test images and one of their
    reconstructions by a runs.Autoencoder."""
    rows = []
    for c in range(data.num_classes):
        pool = data.x_test[data.y_test == c]
        if len(pool) == 0:
            pool = data.x_train[data.y_train == c]
        real = pool[:per_class]
        if len(real) < per_class:
            real = np.concatenate([real, np.zeros((per_class - len(real),) + real.shape[1:], np.uint8)])
        reconstructed = autoencoder.reconstruct(to_model_range(real), np.full(per_class, c, np.int32))
        rows += [real, to_uint8(reconstructed)]
    save_png(path, image_grid(rows))


def plot_losses(rows, path, title):
    """losses.png: autoencoder train/test MAE and the GAN's logged losses per epoch."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is
    fig = Figure(figsize=(11, 4))
    ax_ae, ax_gan = fig.subplots(1, 2)
    for phase, ax in (("autoencoder", ax_ae), ("gan", ax_gan)):
        phase_rows = [r for r in rows if r["phase"] == phase]
        for key in dict.fromkeys(k for r in phase_rows for k in r if k not in ("phase", "epoch")):
            points = [(int(r["epoch"]), float(r[key])) for r in phase_rows if key in r]
            ax.plot(*zip(*points), label={"loss": "train MAE", "val_loss": "test MAE"}.get(key, key))
        ax.set_title({"autoencoder": "autoencoder reconstruction", "gan": title}[phase])
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def assemble_gif(samples_dir, gif_path, duration=0.4):
    """progress.gif: one frame per samples/epoch_NNN.png, in epoch order, captioned with the epoch.

    The caption also keeps two alike epochs apart: GIF writers merge identical consecutive frames.
    """
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw
    if not os.path.isdir(samples_dir):
        return
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
    atomic_write(gif_path, lambda tmp: imageio.mimsave(tmp, images, format="GIF", duration=duration, loop=0))
