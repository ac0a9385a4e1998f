"""The run folder: what training writes, and what everything after training reads.

    train_results/<dataset>-<variant or model>-<time>/
        config.json                  every setting, the data's class names and counts, versions
        history.csv                  one row per epoch and phase (autoencoder, gan): the losses
        checkpoints/epoch_NNN.npz    the whole training state after an epoch (newest few kept)
        generator.keras critic.keras [encoder.keras embedding.keras decoder.keras]
        generator_best.keras best.json eval_classifier.keras    with --eval-every: the best epoch's
                                                                generator by the worst class's score
        losses.png reconstruction.png samples/epoch_NNN.png progress.gif tensorboard/

bagan_train.py writes it; generate.py, fid.py, classify.py, the oversampler and the notebooks read
it through this module, never through the training script. config.json is enough to rebuild the
dataset split and the networks. Every file is written atomically (a temporary file, then a rename),
so a killed process never leaves half a file.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

RESULTS_DIR = "train_results"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
CHECKPOINTS_DIR = "checkpoints"
GENERATOR_FILE = "generator.keras"
BEST_GENERATOR_FILE = "generator_best.keras"
RAW_GENERATOR_FILE = "generator_raw.keras"  # with --ema-decay: the trained generator, generator.keras its average
BEST_FILE = "best.json"
EVAL_CLASSIFIER_FILE = "eval_classifier.keras"
GENERATORS = ("best", "last")
AUTOENCODER_NETWORKS = ("encoder", "embedding", "decoder")
GENERATE_BATCH = 256


class UsageError(Exception):
    """A bad flag, setting or run folder: reported in one line before any work (exit status 2)."""


# ---------------------------------------------------------------------------------------------
# Atomic files


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


def save_png(path, image):
    """A uint8 (H, W, C) image as PNG (grayscale when C is 1)."""
    from PIL import Image
    image = image[..., 0] if image.shape[-1] == 1 else image
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def save_model(model, path):
    atomic_write(path, model.save)


def load_model(path):
    """A .keras file (safe mode); a file that cannot be loaded is a UsageError naming it."""
    import keras
    try:
        return keras.models.load_model(path)
    except Exception as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UsageError(f"cannot load {path}: {reason}") from None


# ---------------------------------------------------------------------------------------------
# Generation


def generated_batches(generator, label, n, batch_size=GENERATE_BATCH, seed=0):
    """n images G(z, label) in [-1, 1], batch by batch; z ~ N(0, I) from default_rng([seed, label]).

    The noise of a class depends only on (seed, label), not on the batch size or on the other
    classes, so every command that generates (generate.py, fid.py, classify.py, the oversampler)
    gives the same images for the same seed.
    """
    latent_dim = generator.inputs[0].shape[-1]
    rng = np.random.default_rng([seed, label])
    for start in range(0, n, batch_size):
        k = min(batch_size, n - start)
        z = rng.standard_normal((k, latent_dim)).astype(np.float32)
        yield generator([z, np.full(k, label, np.int32)], training=False)


# ---------------------------------------------------------------------------------------------
# The run folder


class Autoencoder(NamedTuple):
    """The pretrained networks that initialise a model. Supervised (Fig. 3):
    decoder(embedding(encoder(x), y)); unsupervised (BAGAN): decoder(encoder(x)), the embedding unused."""

    encoder: object
    embedding: object
    decoder: object
    supervised: bool

    def reconstruct(self, images, labels):
        """Reconstructions of images in [-1, 1] of classes `labels`, in inference mode."""
        import keras
        latent = self.encoder(images, training=False)
        if self.supervised:
            latent = self.embedding([latent, keras.ops.convert_to_tensor(labels, "int32")], training=False)
        return self.decoder(latent, training=False)


def _complete(config):
    """config.json of runs written before it recorded the model and its autoencoder, completed."""
    config.setdefault("model", "bagan_gp")
    config.setdefault("resize", "stretch")
    config.setdefault("split_seed", config.get("seed", 42))
    if "autoencoder" not in config:
        kinds = {"v1": "unsupervised", "v2": "unsupervised", "v3": "supervised"}
        config["autoencoder"] = ("unsupervised" if config["model"] == "bagan" else
                                 kinds[config.get("variant") or "v3"] if config["model"] == "bagan_gp" else None)
    return config


class Run:
    """One run folder: its config and files. `writable` is False on a multi-worker cluster's
    non-chief workers, which train but write nothing."""

    def __init__(self, path, config, writable=True):
        self.path = Path(path)
        self.config = config
        self.writable = writable
        self._said_no_best = False  # generator_choice says once that the last generator is used

    @classmethod
    def create(cls, path, config, writable=True):
        """A run folder with `config` as its config.json (rewritten when the folder is resumed)."""
        run = cls(path, dict(config), writable)
        if writable:
            run.path.mkdir(parents=True, exist_ok=True)
            save_json(run.file(CONFIG_FILE), run.config)
        return run

    @classmethod
    def open(cls, path, require=(CONFIG_FILE,)):
        """An existing run folder holding every file in `require`; UsageError naming what is wrong."""
        path = Path(path)
        if not path.is_dir():
            raise UsageError(f"run folder {path} does not exist")
        for name in dict.fromkeys((CONFIG_FILE, *require)):
            if not (path / name).exists():
                why = "is it a finished run folder?" if name == GENERATOR_FILE else "is it a run folder?"
                raise UsageError(f"{path} has no {name}: {why}")
        try:
            config = json.loads((path / CONFIG_FILE).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read {path / CONFIG_FILE}: {e}") from None
        missing = [k for k in ("dataset", "image_size", "class_names") if k not in config]
        if missing:
            raise UsageError(f"{path / CONFIG_FILE} lacks {', '.join(missing)}")
        return cls(path, _complete(config))

    @property
    def name(self):
        return self.path.resolve().name

    def file(self, name):
        return self.path / name

    @property
    def autoencoder(self):
        """"supervised", "unsupervised" or None: the autoencoder the run trained first."""
        return self.config.get("autoencoder")

    # -------------------------------------------------------------------------------- history

    def history(self):
        """history.csv as a list of dicts, empty cells left out."""
        path = self.file(HISTORY_FILE)
        if not path.exists():
            return []
        with open(path, newline="") as f:
            return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]

    def training_seconds(self):
        """The run's training time: each epoch's seconds (history.csv) less the time an epoch spent
        getting the evaluation's classifier (eval_classifier_seconds), plus the classifier's training
        once (eval_classifier.json)."""
        rows = self.history()
        seconds = sum(float(r["seconds"]) - float(r.get("eval_classifier_seconds", 0.0))
                      for r in rows if "seconds" in r)
        meta = self.file(EVAL_CLASSIFIER_FILE.replace(".keras", ".json"))
        return round(seconds + (json.loads(meta.read_text())["seconds"] if meta.is_file() else 0.0), 1)

    def append_history(self, row):
        """Add one epoch's row; the header is every key in the order the rows first use it."""
        rows = self.history() + [row]
        fields = list(dict.fromkeys(key for r in rows for key in r))

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        atomic_write(self.file(HISTORY_FILE), write)
        return rows

    # -------------------------------------------------------------------------------- checkpoints

    def checkpoints(self):
        """Paths of checkpoints/epoch_NNN.npz, oldest first."""
        directory = self.file(CHECKPOINTS_DIR)
        if not directory.is_dir():
            return []
        return sorted(directory / f for f in os.listdir(directory) if f.startswith("epoch_") and f.endswith(".npz"))

    def save_checkpoint(self, variables, epoch, keep):
        """The values of `variables` after `epoch` as checkpoints/epoch_NNN.npz; the newest `keep` stay.

        The archive is written one array at a time, so a copy of every weight and optimizer moment is
        never in memory at once (that was a training run's memory peak, benchmarks/RESULTS.md); np.load reads it.
        """
        directory = self.file(CHECKPOINTS_DIR)
        directory.mkdir(exist_ok=True)

        def write(tmp):
            with zipfile.ZipFile(tmp, "w", allowZip64=True) as archive:
                def add(name, array):
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, np.asarray(array))
                add("epoch", np.int64(epoch))
                for i, variable in enumerate(variables):
                    add(f"v{i:05d}", variable.numpy())
        atomic_write(directory / f"epoch_{epoch:03d}.npz", write)
        for old in self.checkpoints()[:-keep]:
            os.remove(old)

    def load_checkpoint(self, variables):
        """Assign the newest checkpoint to `variables`; returns its epoch (0 without checkpoint)."""
        checkpoints = self.checkpoints()
        if not checkpoints:
            return 0
        with np.load(checkpoints[-1]) as data:
            keys = sorted(k for k in data.files if k.startswith("v"))
            if len(keys) != len(variables):
                raise UsageError(f"checkpoint {checkpoints[-1]} does not match this configuration "
                                 f"({len(keys)} arrays, {len(variables)} variables)")
            for key, variable in zip(keys, variables):
                variable.assign(data[key])
            return int(data["epoch"])

    # -------------------------------------------------------------------------------- networks

    def save_networks(self, *models):
        """Each model as <its name>.keras."""
        for model in models:
            save_model(model, self.file(f"{model.name}.keras"))

    def has_autoencoder_networks(self):
        return all(self.file(f"{name}.keras").is_file() for name in AUTOENCODER_NETWORKS)

    def best(self):
        """best.json (the best generator's epoch and per-class scores), or None."""
        path = self.file(BEST_FILE)
        return json.loads(path.read_text()) if path.is_file() and self.file(BEST_GENERATOR_FILE).is_file() else None

    def no_best_reason(self):
        """Why the run kept no best generator, as far as its folder tells: --best-by last, evaluation
        off, fewer epochs than --eval-every, or the judge refused (eval_classifier.json: "trusted": false and
        its "reason", at its top level or in its "check")."""
        every, epochs = self.config.get("eval_every") or 0, self.config.get("epochs")
        if self.config.get("best_by") == "last":
            return "it keeps its last generator (--best-by last)"
        if not every:
            return "in-training evaluation was off (--eval-every 0)"
        if epochs is not None and every > epochs:
            return f"it trained {epochs} epochs, fewer than --eval-every {every}, so no epoch was evaluated"
        try:
            meta = json.loads(self.file(EVAL_CLASSIFIER_FILE.replace(".keras", ".json")).read_text())
        except (OSError, ValueError):
            meta = {}
        for verdict in (meta, meta.get("check") if isinstance(meta, dict) else None):
            if isinstance(verdict, dict) and verdict.get("trusted") is False:
                reason = verdict.get("reason")
                return "the evaluator was not trusted" + (f": {reason}" if reason else "")
        return (f"no epoch evaluated every {every} epochs had its images recognised as their class above "
                "chance in every class")

    def generator_choice(self, which=None, say=True):
        """(path, description) of the generator to use: "best" (generator_best.keras), "last"
        (generator.keras) or None, the best when the run kept one, else the last; then a run
        without a best generator says so on stderr, once per Run, with no_best_reason (not one that
        keeps its last by --best-by last: its description says so)."""
        best = self.best()
        asked, which = which, which or ("best" if best else "last")
        if which not in GENERATORS:
            raise UsageError(f"generator must be best or last, got {which!r}")
        if which == "best":
            if best is None:
                raise UsageError(f"{self.path} has no {BEST_GENERATOR_FILE}: {self.no_best_reason()}; use last")
            by_recognition = best.get("by") == "recognition"
            return self.file(BEST_GENERATOR_FILE), (f"best (epoch {best['epoch']} of {self.config.get('epochs')}, "
                                                    + (f"worst class recognised {best['recognised_worst']:.2f}, "
                                                       if by_recognition else "")
                                                    + f"worst-class KID {best['kid_worst']:.4f})")
        if not self.file(GENERATOR_FILE).is_file():
            raise UsageError(f"{self.path} has no {GENERATOR_FILE}: is it a finished run folder?")
        by_last = self.config.get("best_by") == "last"
        if say and asked is None and not by_last and not self._said_no_best:
            self._said_no_best = True
            print(f"{self.path}: no best generator ({BEST_GENERATOR_FILE}): {self.no_best_reason()}; the last "
                  f"generator ({GENERATOR_FILE}) is used", file=sys.stderr, flush=True)
        return self.file(GENERATOR_FILE), (f"last (epoch {self.config.get('epochs')}"
                                            + (", --best-by last)" if by_last else ")"))

    def load_generator(self, which=None):
        """The generator of `generator_choice(which)`."""
        return load_model(self.generator_choice(which)[0])

    def load_autoencoder(self):
        """The run's encoder, embedding and decoder; UsageError when it has none."""
        if self.autoencoder is None:
            raise UsageError(f"{self.path} is a {self.config['model']} run, which has no autoencoder")
        missing = [f"{n}.keras" for n in AUTOENCODER_NETWORKS if not self.file(f"{n}.keras").is_file()]
        if missing:
            raise UsageError(f"{self.path} has no {', '.join(missing)}")
        return Autoencoder(*(load_model(self.file(f"{n}.keras")) for n in AUTOENCODER_NETWORKS),
                           supervised=self.autoencoder == "supervised")


def new_run_dir(dataset, kind):
    """train_results/<dataset>-<kind>-<time> for a new run."""
    import datetime
    name = os.path.basename(os.path.normpath(dataset))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(RESULTS_DIR, f"{name}-{kind}-{stamp}")


def run_folders(results_dir, required=(CONFIG_FILE,)):
    """Run folders in results_dir holding every file in `required`, oldest first by the time their
    training last finished (generator.keras), else last wrote history.csv or config.json."""
    def finished(path):
        return next((path / f).stat().st_mtime for f in (GENERATOR_FILE, HISTORY_FILE, CONFIG_FILE)
                    if (path / f).exists())
    found = [p for p in Path(results_dir).glob("*/") if all((p / f).exists() for f in required)]
    return sorted((p.resolve() for p in found), key=finished)


def results_dir():
    """The notebooks' folder of runs: $BAGAN_RESULTS, else train_results/."""
    return Path(os.environ.get("BAGAN_RESULTS") or RESULTS_DIR).resolve()


def find_run(named=None, required=(CONFIG_FILE,)):
    """The notebooks' run: `named` (their RUN line), else $BAGAN_RUN, else the run folder of
    results_dir() holding every file in `required` whose training finished last."""
    named = named or os.environ.get("BAGAN_RUN")
    if named:
        return Run.open(Path(named).expanduser().resolve(), required)
    found = run_folders(results_dir(), required)
    if not found:
        raise UsageError(f"no run folder with {', '.join(required)} in {results_dir()}: "
                         "train one (`make train`) or set BAGAN_RUN to a run folder")
    return Run.open(found[-1], required)
