"""Everything a training run does besides the equations, as Keras callbacks, and the pictures they draw.

bagan_train.py gives them to `fit`: the autoencoder phase gets `HistoryCSV`; the GAN phase gets
`EpochSchedule`, `StopOnNonFiniteLoss` and, in the process that writes the run folder,
`BestGenerator` (with --eval-every), `HistoryCSV`, `SampleGrid`, `Checkpoint`, `ProgressGIF` and
TensorBoard. They read and write the run folder through a runs.Run. `BestGenerator` adds its scores
to the epoch's logs, so the callbacks after it (history.csv, losses.png, TensorBoard) record them.
"""
import math
import os
import sys
import time

import keras
import numpy as np

from datasets import to_model_range, to_uint8
from runs import BEST_FILE, BEST_GENERATOR_FILE, CHECKPOINTS_DIR, atomic_write, save_json, save_model, save_png

EVAL_PER_CLASS = 100
"""Generated images per class at each in-training evaluation (fixed noise: the same images' change)."""
EVAL_REAL_PER_CLASS = 500
"""Training images per class the evaluation compares with (the first ones)."""
PLOT_EVERY_S = 30
"""Seconds between redrawings of losses.png during a phase (HistoryCSV)."""
GRID_ROWS = 8
"""Rows of generated images in a sample grid (fixed noise vectors), below the row of real ones."""
GRID_PAD = 2
"""White pixels between and around the images of a grid."""
GRID_MIN_WIDTH, GRID_MIN_TILE, GRID_MAX_SIDE = 480, 64, 2000
"""A labelled grid of few classes or small images is drawn larger (each image repeated k x k times,
`grid_scale`): about GRID_MIN_WIDTH pixels wide, images of at least GRID_MIN_TILE pixels, as long as
its longest side stays within GRID_MAX_SIDE."""
CAPTION_HEIGHT = 14
"""Pixels above each progress.gif frame for "epoch N"."""


class NonFiniteLoss(Exception):
    """Training stopped at a NaN or infinite loss; nothing was written for that epoch."""

    def __init__(self, step, losses, checkpoint):
        self.step, self.losses, self.checkpoint = step, losses, checkpoint
        keep = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written"
        super().__init__(f"a non-finite loss ({', '.join(losses)}) at generator step {step}; "
                         f"training stopped, {keep}")


class EpochProgress(keras.callbacks.Callback):
    """One line per finished epoch: the phase, the epoch, its time and an estimate of the time the
    phase has left (the mean epoch time so far, without the evaluation classifier's training, which
    happens once, times the epochs to go). `then`: what follows the phase (the autoencoder's lines
    say "then 40 GAN epochs", whose time is not known yet); without it the phase is the last, and
    the estimate is the run's. `early_stopping`: the estimate is an upper bound, of this training
    only (classify.py's classifiers); `stream`: where the lines go (default stdout)."""

    def __init__(self, phase, epochs, then=None, early_stopping=False, stream=None):
        super().__init__()
        self.phase, self.epochs, self.then = phase, epochs, then
        self.early_stopping, self.stream = early_stopping, stream
        self.times, self.started = [], time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        once = float((logs or {}).get("eval_classifier_seconds", 0.0))
        self.times.append(seconds - once)
        left = (self.epochs - epoch - 1) * float(np.mean(self.times))
        estimate = f"about {left / 60:.0f} min" if left >= 90 else f"about {left:.0f} s"
        if self.early_stopping:
            estimate = f"at most {estimate} left of this training (early stopping may end it sooner)"
        else:
            estimate += f" left of the {self.phase}, then {self.then}" if self.then else " left of the run"
        done = "done" + (f"; then {self.then}" if self.then else "")
        print(f"[{self.phase}] epoch {epoch + 1}/{self.epochs} in {seconds:.0f} s"
              + (f" ({once:.0f} s of it the evaluation's classifier, once)" if once >= 1 else "") + "; "
              f"{estimate if epoch + 1 < self.epochs else done}", file=self.stream or sys.stdout, flush=True)


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
    """Appends one row per epoch (phase, epoch, the model's loss_parts, then anything else logged,
    and the epoch's wall time in seconds) to history.csv, and redraws losses.png after the first
    epoch, then at most every PLOT_EVERY_S seconds, and at the end (a drawing takes about 0.7 s on
    two cores, a fifth of a small folder's 4-second epoch)."""

    def __init__(self, run, phase, title):
        super().__init__()
        self.run = run
        self.phase = phase
        self.title = title
        self.started = time.perf_counter()
        self.plotted = -math.inf
        self.rows = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        keys = dict.fromkeys([*getattr(self.model, "loss_parts", ()), *logs])  # the model's order first
        self.rows = self.run.append_history(dict(phase=self.phase, epoch=epoch + 1,
                                                 **{k: float(logs[k]) for k in keys if k in logs},
                                                 seconds=round(time.perf_counter() - self.started, 3)))
        if time.perf_counter() - self.plotted >= PLOT_EVERY_S:
            self.plot()

    def on_train_end(self, logs=None):
        if self.rows is not None:
            self.plot()

    def plot(self):
        plot_losses(self.rows, self.run.file("losses.png"), self.title, self.run.config.get("train_counts"),
                    self.run.best())
        self.plotted = time.perf_counter()


class BestGenerator(keras.callbacks.Callback):
    """Every `every` epochs, the generator's per-class KID against the class's training images and
    the share of its images recognised as their class, both by the run's judge (a classifier of
    the training split, evaluators.train_judge; evaluators.class_scores); logged as kid/<class>,
    recognised/<class>, kid_worst and eval_seconds, and at the first evaluation
    eval_classifier_seconds (training or loading the judge, part of that epoch's seconds).

    The generator is kept as generator_best.keras with best.json (its epoch, scores, rule and the
    judge's check) when its images are recognised as their class above chance in every class
    (metrics.recognised_above_chance: noise, a constant image or images that ignore their label are
    not) and its worst class is the best so far, so that a minority class cannot be traded for the
    mean: by `best_by` "kid" the lowest worst-class KID; by "recognition" the highest worst-class
    share recognised, the worst-class KID breaking ties (a small set: KID against a class of a few
    training images measures nearness to those few). By "last" every evaluated epoch is scored and
    logged and none is kept: the last generator is the one used, and the console says at the end
    when its last evaluation was not recognised above chance in every class. When the judge cannot
    tell the classes apart on held-out real images (its check), no epoch is scored and no best is
    kept: the last generator stays, and the console says why. A resumed run continues from its
    best.json. `classifier`: a function that returns (judge, check), called at the first evaluation
    (bagan_train.evaluation_classifier)."""

    def __init__(self, run, classifier, data, every, seed, best_by="kid"):
        super().__init__()
        self.run, self.get_classifier, self.data, self.every, self.seed = run, classifier, data, every, seed
        self.best_by = best_by
        self.names = [str(name) for name in data.class_names]
        self.classifier = self.real = self.check = self.last_above = None
        best = run.best()
        self.best = (self.rank(best["kid_worst"], min(best.get("recognised", {}).values(), default=0.0))
                     if best else None)

    def rank(self, kid_worst, recognised_worst):
        """An evaluation's place by `best_by`, lower is better."""
        return (-recognised_worst, kid_worst) if self.best_by == "recognition" else (kid_worst,)

    def prepare(self):
        """The judge, its check, and its features of each class's training images; returns the seconds."""
        from evaluators import class_features
        started = time.perf_counter()
        x, y = self.data.x_train, self.data.y_train
        self.classifier, self.check = self.get_classifier()
        if not self.check["trusted"]:
            print(f"[evaluation] the judge cannot tell the classes apart ({self.check['reason']}): no epoch is "
                  "scored and no best generator is kept; the last generator stays", flush=True)
            return time.perf_counter() - started
        self.real = class_features(self.classifier, x, y, self.data.num_classes, EVAL_REAL_PER_CLASS)
        return time.perf_counter() - started

    def on_epoch_end(self, epoch, logs=None):
        from evaluators import class_scores
        from metrics import recognised_above_chance
        if (epoch + 1) % self.every:
            return
        once = {} if self.classifier is not None else {"eval_classifier_seconds": self.prepare()}
        if not self.check["trusted"]:
            if logs is not None:
                logs.update(once)
            return
        started = time.perf_counter()
        generator = self.model.sampling_generator()
        kid, recognised = class_scores(generator, self.classifier, self.real, EVAL_PER_CLASS, self.seed)
        worst = max(v for v in kid if not math.isnan(v))
        above = recognised_above_chance(recognised, EVAL_PER_CLASS, self.data.num_classes)
        scores = {**{f"kid/{n}": v for n, v in zip(self.names, kid)},
                  **{f"recognised/{n}": v for n, v in zip(self.names, recognised)}, "kid_worst": worst}
        rank = self.rank(worst, min(recognised))
        self.last_above = (epoch + 1, all(above))
        if self.best_by != "last" and all(above) and (self.best is None or rank < self.best):
            self.best = rank
            save_model(generator, self.run.file(BEST_GENERATOR_FILE))
            save_json(self.run.file(BEST_FILE), dict(epoch=epoch + 1, kid_worst=worst, kid=dict(zip(self.names, kid)),
                                                     recognised=dict(zip(self.names, recognised)),
                                                     recognised_worst=min(recognised), by=self.best_by,
                                                     judge=self.check))
        if logs is not None:
            logs.update(scores, eval_seconds=time.perf_counter() - started, **once)

    def on_train_end(self, logs=None):
        if self.best_by == "last":
            if self.last_above and not self.last_above[1]:
                print(f"[evaluation] at the last evaluation (epoch {self.last_above[0]}) some class's images were "
                      "not recognised as it above chance: the last generator, which --best-by last uses, may not "
                      "draw every class", flush=True)
            return
        if self.check and self.check["trusted"] and self.best is None:
            print("[evaluation] no evaluated epoch's images were recognised as their class above chance in every "
                  "class: no best generator is kept; the last generator stays", flush=True)


class SampleGrid(keras.callbacks.Callback):
    """samples/epoch_NNN.png in the layout of Eq. (16): a row of real images, then one row per
    fixed noise vector, one column per class, labelled; one batched generator call per epoch."""

    def __init__(self, run, real_row, noise, class_names):
        super().__init__()
        self.dir = run.file("samples")
        self.dir.mkdir(exist_ok=True)
        self.real_row = real_row
        self.noise = noise
        self.labels = ["real"] + [f"z{r}" for r in range(1, len(noise) + 1)], [str(n) for n in class_names]

    def on_epoch_end(self, epoch, logs=None):
        rows = generate_grid_rows(self.model.sampling_generator(), self.noise, len(self.real_row))
        save_png(self.dir / f"epoch_{epoch + 1:03d}.png", labelled_grid([self.real_row] + rows, *self.labels))


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


def grid_scale(rows):
    """The integer factor k by which labelled_grid enlarges the images of `rows` (image_grid's rows):
    the smallest that makes the grid GRID_MIN_WIDTH pixels wide and its images GRID_MIN_TILE pixels,
    at most what keeps its longest side within GRID_MAX_SIDE, at least 1."""
    n, h, w = rows[0].shape[:3]
    width, height = n * (w + GRID_PAD) + GRID_PAD, len(rows) * (h + GRID_PAD) + GRID_PAD
    wanted = max(math.ceil(GRID_MIN_TILE / max(h, w)), math.ceil(GRID_MIN_WIDTH / width))
    return max(1, min(wanted, GRID_MAX_SIDE // max(width, height)))


def labelled_grid(rows, row_labels=(), column_labels=()):
    """image_grid with `row_labels` left of its rows and `column_labels` above its columns (written
    upwards when one is wider than a tile), black on white; the grid itself sits in the picture's
    bottom-right corner. The images are enlarged by grid_scale(rows) (nearest neighbour), so that a
    grid of few classes or small images can be seen; the labels keep their size."""
    from PIL import Image, ImageDraw, ImageFont
    k = grid_scale(rows)
    rows = [np.repeat(np.repeat(np.asarray(images), k, axis=1), k, axis=2) for images in rows]
    grid = image_grid(rows)
    height, width = rows[0].shape[1:3]
    font = ImageFont.load_default()
    sizes = [font.getbbox(text)[2:] for text in column_labels]
    upright = all(w <= width + GRID_PAD for w, _ in sizes)
    left = max((font.getbbox(text)[2] for text in row_labels), default=-6) + 6
    top = (max((h if upright else w for w, h in sizes), default=-6) + 6) if column_labels else 0
    mode = "L" if grid.shape[-1] == 1 else "RGB"
    canvas = Image.new(mode, (left + grid.shape[1], top + grid.shape[0]), "white")
    canvas.paste(Image.fromarray(grid[..., 0] if mode == "L" else grid), (left, top))
    draw = ImageDraw.Draw(canvas)
    for r, text in enumerate(row_labels):
        draw.text((left - 3, top + GRID_PAD + r * (height + GRID_PAD) + height // 2), text, fill="black",
                  font=font, anchor="rm")
    for c, text in enumerate(column_labels):
        x = left + GRID_PAD + c * (width + GRID_PAD) + width // 2
        if upright:
            draw.text((x, top - 3), text, fill="black", font=font, anchor="md")
            continue
        w, h = sizes[c]
        label = Image.new(mode, (w + 2, h + 2), "white")
        ImageDraw.Draw(label).text((1, 1), text, fill="black", font=font)
        label = label.rotate(90, expand=True)
        canvas.paste(label, (x - label.width // 2, top - 3 - label.height))
    return np.asarray(canvas)[..., None] if mode == "L" else np.asarray(canvas)


def generate_grid_rows(generator, noise, num_classes):
    """G(z_r, c) for every fixed noise vector r and class c, in one batched call (Eq. 16)."""
    rows = len(noise)
    z = np.repeat(noise, num_classes, axis=0)
    labels = np.tile(np.arange(num_classes, dtype=np.int32), rows)
    images = to_uint8(generator([z, labels], training=False))
    return list(images.reshape((rows, num_classes) + images.shape[1:]))


def reconstruction_figure(path, autoencoder, data, per_class=6):
    """reconstruction.png: for each class a row of real test images and one of their
    reconstructions by a runs.Autoencoder, labelled."""
    rows, labels = [], []
    for c in range(data.num_classes):
        pool = data.x_test[data.y_test == c]
        if len(pool) == 0:
            pool = data.x_train[data.y_train == c]
        real = pool[:per_class]
        if len(real) < per_class:
            real = np.concatenate([real, np.zeros((per_class - len(real),) + real.shape[1:], np.uint8)])
        reconstructed = autoencoder.reconstruct(to_model_range(real), np.full(per_class, c, np.int32))
        rows += [real, to_uint8(reconstructed)]
        labels += [f"{data.class_names[c]}: real", f"{data.class_names[c]}: reconstructed"]
    save_png(path, labelled_grid(rows, labels))


def plot_losses(rows, path, title, train_counts=None, best=None):
    """losses.png: losses_figure saved."""
    fig = losses_figure(rows, title, train_counts, best)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def losses_figure(rows, title, train_counts=None, best=None):
    """The autoencoder's train/test MAE and the GAN's logged losses per epoch (whole-number epochs,
    a marker on every point of a short curve, so a single epoch shows); with the in-training
    evaluation, its per-class KID and recognition too, minority classes (under half the largest
    class's training images) dashed and the best epoch marked."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is
    from matplotlib.ticker import MaxNLocator
    evaluated = any(key.startswith("kid/") for r in rows for key in r)
    fig = Figure(figsize=(11, 8 if evaluated else 4))
    axes = fig.subplots(2 if evaluated else 1, 2, squeeze=False).ravel()
    gan = [r for r in rows if r["phase"] == "gan"]
    for phase, ax in (("autoencoder", axes[0]), ("gan", axes[1])):
        phase_rows = [r for r in rows if r["phase"] == phase]
        for key in dict.fromkeys(k for r in phase_rows for k in r if k not in ("phase", "epoch")):
            if "/" in key or key in ("kid_worst", "eval_seconds", "eval_classifier_seconds", "seconds"):
                continue
            points = [(int(r["epoch"]), float(r[key])) for r in phase_rows if key in r]
            ax.plot(*zip(*points), marker="." if len(points) < 30 else None,
                    label={"loss": "train MAE", "val_loss": "test MAE"}.get(key, key))
        ax.set_title({"autoencoder": "autoencoder reconstruction", "gan": title}[phase])
    if evaluated:
        names = list(dict.fromkeys(k[4:] for r in gan for k in r if k.startswith("kid/")))
        counts = list(train_counts or [])
        minority = {n for n, count in zip(names, counts) if count < 0.5 * max(counts)}
        for ax, prefix, label in ((axes[2], "kid/", "KID to the class's training images (lower: better)"),
                                  (axes[3], "recognised/", "share recognised as their class")):
            for i, name in enumerate(names):
                points = [(int(r["epoch"]), float(r[prefix + name])) for r in gan if prefix + name in r]
                count = f" ({counts[i]})" if i < len(counts) else ""
                ax.plot(*zip(*points), marker=".", linestyle="--" if name in minority else "-",
                        label=f"{name}{count}{' minority' if name in minority else ''}")
            if best:
                ax.axvline(best["epoch"], color="gray", linewidth=0.8)
                ax.annotate(f"best: epoch {best['epoch']}", (best["epoch"], 1.0), xycoords=("data", "axes fraction"),
                            xytext=(-3, -3), textcoords="offset points", fontsize="small", va="top", ha="right")
            ax.set_title(f"evaluation: {label}", fontsize="medium")
        axes[3].legend(fontsize="x-small", ncol=2, title="class (training images)", title_fontsize="x-small")
    for ax in axes[:2]:
        if ax.lines:
            ax.legend(fontsize="small")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.tight_layout()
    return fig


def assemble_gif(samples_dir, gif_path, duration=500):
    """progress.gif: one frame per samples/epoch_NNN.png, in epoch order, captioned with the epoch,
    each shown `duration` milliseconds (imageio 2.38's unit; 0.4 meant no delay at all).

    The caption also keeps two alike epochs apart: GIF writers merge identical consecutive frames.
    Grids of different sizes (a run resumed by a version that labels its grids) share one canvas.
    """
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw
    if not os.path.isdir(samples_dir):
        return
    frames = sorted(f for f in os.listdir(samples_dir) if f.startswith("epoch_") and f.endswith(".png"))
    if not frames:
        return
    grids = [Image.open(os.path.join(samples_dir, name)).convert("RGB") for name in frames]
    width, height = max(g.width for g in grids), max(g.height for g in grids)
    images = []
    for name, grid in zip(frames, grids):
        frame = Image.new("RGB", (width, height + CAPTION_HEIGHT), "white")
        frame.paste(grid, (0, CAPTION_HEIGHT))
        ImageDraw.Draw(frame).text((3, 1), f"epoch {int(name[6:-4])}", fill="black")
        images.append(np.asarray(frame))
    atomic_write(gif_path, lambda tmp: imageio.mimsave(tmp, images, format="GIF", duration=duration, loop=0))
