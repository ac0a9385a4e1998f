"""Train BAGAN-GP (paper 001, Sec. 3.2 and 4), or a model it is compared with, into a run folder.

    python bagan_train.py                                    # embedded digits, 7-25 minutes on 2 cores
    python bagan_train.py --dataset fashion_mnist --imbalanced --model bagan
    python bagan_train.py --resume train_results/<run>      # continue from its last checkpoint

The recipe is `train`, right below; its settings are a `TrainConfig`, whose table of defaults
follows. The run folder it writes is described in runs.py.
"""
import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from console import tensorflow_quiet  # noqa: E402
from datasets import (MODEL_IMAGE_SIZES, PAPER_IMAGE_SIZE, RESIZE_MODES, TRAINING_IMAGE_SIZES,  # noqa: E402
                      DatasetError, add_dataset_arguments, check_dataset_arguments)
from runs import (CONFIG_FILE, EVAL_CLASSIFIER_FILE, RAW_GENERATOR_FILE, Autoencoder, Run, UsageError,  # noqa: E402
                  load_model, new_run_dir, save_json, save_model)


def train(config, run_dir=None, data=None, strategy=None, verbose=1, callbacks=()):
    """The recipe: data -> autoencoder -> model -> fit -> save, into `run_dir` (a new folder, or the
    run folder that `config` continues from its last checkpoint). Returns a summary of the run.

    A NaN or infinite loss raises callbacks.NonFiniteLoss; the last good checkpoint stays.
    `data`: a datasets.Dataset to train on instead of loading config.dataset (the oversampler's).
    Under a tf.distribute `strategy` the networks live in its scope, Keras splits each global batch
    between the replicas, and only the chief writes the run folder. `callbacks`: more Keras
    callbacks for the GAN phase (after the run's own).
    """
    import keras
    import tensorflow as tf
    from callbacks import EpochProgress
    from datasets import load_dataset, make_tf_dataset

    resumed = Run.open(run_dir).config if run_dir and os.path.exists(os.path.join(run_dir, CONFIG_FILE)) else None
    data = data or load_dataset(config.dataset, config.data_dir, config.image_size, config.imbalanced, config.split_seed,
                                config.resize, config.window)
    budget = config.fit_budget(len(data.x_train))
    if resumed:
        TrainConfig.resume(run_dir, **dataclasses.asdict(config))  # refuses what the checkpoint fixes
    strategy = strategy or tf.distribute.get_strategy()
    config.check_fits(data, strategy.num_replicas_in_sync)
    chosen = config.choose_precision() or (resumed or {}).get("precision_chosen")
    run = Run.create(run_dir or config.new_run_dir(), dict(config.record(data), precision_chosen=chosen,
                                                           budget=budget or (resumed or {}).get("budget")),
                     writable=is_chief(strategy))
    replicas = strategy.num_replicas_in_sync
    print(f"run folder: {run.path}" + (f" ({replicas} replicas, {type(strategy).__name__})" if replicas > 1 else "")
          + ("" if run.writable else " (a worker: writes nothing)"), flush=True)
    if chosen and not resumed:
        print(f"precision: {config.precision} ({chosen})", flush=True)
    if budget and not resumed:
        print(describe_budget(budget), flush=True)
    classifier = evaluation_classifier(config, data, run)
    if classifier and replicas > 1:  # only the chief evaluates: it trains the classifier before the replicas start
        trained = classifier()
        classifier = lambda: trained  # noqa: E731
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    with strategy.scope(), dtype_policy(config.precision):
        pretrained = pretrain_autoencoder(config, data, run, verbose)                # Sec. 3.2.2
        model = config.model_class.build(data, pretrained, **config.model_settings())  # Sec. 3.2
        model.compile(d_optimizer=adam(config, config.learning_rate), g_optimizer=adam(config, config.g_learning_rate),
                      jit_compile=config.xla)
        first_epoch = run.load_checkpoint(model.training_state())
        steps = config.steps_per_epoch_for(data)
        if first_epoch >= config.epochs:
            print(f"[{config.label}] all {config.epochs} epochs are done; writing the networks of the last", flush=True)
        else:
            print(f"[{config.label}] epochs {first_epoch + 1}..{config.epochs}, {steps} generator steps per "
                  f"epoch, train ratio {config.train_ratio}" + (" (resumed)" if first_epoch else ""), flush=True)
        batches = make_tf_dataset(data.x_train, data.y_train, config.batch_size, seed=config.seed,
                                  drop_remainder=True, repeat=True, first_epoch=first_epoch, steps_per_epoch=steps,
                                  balanced_classes=data.num_classes if config.real_batches == "balanced" else None)
        model.fit(batches, epochs=config.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                  callbacks=gan_callbacks(config, data, run, steps, classifier) + list(callbacks)
                  + ([EpochProgress(config.label, config.epochs)] if verbose else []), shuffle=False, verbose=verbose)
    if run.writable:
        run.save_networks(model.sampling_generator(), model.critic)
        if model.ema_decay:
            save_model(model.generator, run.file(RAW_GENERATOR_FILE))
    return dict(run_dir=str(run.path), epochs=config.epochs, seconds=round(time.time() - started, 1),
                last=run.history()[-1:])


def pretrain_autoencoder(config, data, run, verbose):
    """Phase 1: the autoencoder that initialises the model (supervised for v3, Fig. 3), a
    runs.Autoencoder; None for models without one. A run folder that has it already loads it."""
    from autoencoder import (build_decoder, build_embedding, build_encoder, build_supervised_autoencoder,
                             build_unsupervised_autoencoder, compile_autoencoder, synchronize_batch_norm)
    from callbacks import EpochProgress, HistoryCSV, reconstruction_figure
    from datasets import make_tf_dataset

    if config.autoencoder is None:
        print(f"[{config.label}] no autoencoder: the networks start from random weights", flush=True)
        return None
    if run.has_autoencoder_networks():
        print("[autoencoder] already trained in this run folder; loading it", flush=True)
        pretrained = run.load_autoencoder()
        synchronize_batch_norm(pretrained.decoder)
        return pretrained
    supervised = config.autoencoder == "supervised"
    shape = data.x_train.shape[1:]
    encoder = build_encoder(shape, config.latent_dim, config.networks)
    decoder = build_decoder(shape, config.latent_dim, config.networks)
    embedding = build_embedding(data.num_classes, config.latent_dim)
    pretrained = Autoencoder(encoder, embedding, decoder, supervised)
    if supervised:
        autoencoder = build_supervised_autoencoder(encoder, embedding, decoder)
    else:
        autoencoder = build_unsupervised_autoencoder(encoder, decoder)
    compile_autoencoder(autoencoder, config.learning_rate, config.beta_1, config.beta_2, config.ae_loss)

    def input_and_target(image, label):
        return ((image, label) if supervised else image), image

    def pairs(x, y, shuffle):
        """((image, label) or image, image) batches, the autoencoder's input and target."""
        ds = make_tf_dataset(x, y, config.batch_size, shuffle=shuffle, seed=config.seed, repeat=True,
                             steps_per_epoch=-(-len(x) // config.batch_size))
        return ds.map(input_and_target)

    if config.ae_epochs > 0:
        print(f"[autoencoder] {config.autoencoder}, {config.ae_epochs} epochs on {len(data.x_train)} images",
              flush=True)
        autoencoder.fit(pairs(data.x_train, data.y_train, True), epochs=config.ae_epochs,
                        steps_per_epoch=-(-len(data.x_train) // config.batch_size),
                        validation_data=pairs(data.x_test, data.y_test, False),
                        validation_steps=-(-len(data.x_test) // config.batch_size),
                        callbacks=([HistoryCSV(run, "autoencoder", config.model_class.title)] if run.writable else [])
                        + ([EpochProgress("autoencoder", config.ae_epochs, f"{config.epochs} GAN epochs")]
                           if verbose else []),
                        shuffle=False, verbose=verbose)
    if run.writable:
        reconstruction_figure(run.file("reconstruction.png"), pretrained, data)
        run.save_networks(encoder, embedding, decoder)
    return pretrained


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy `name` inside the block, the caller's again after it."""
    import keras
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def adam(config, learning_rate):
    import keras
    return keras.optimizers.Adam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)


def evaluation_classifier(config, data, run):
    """A function that returns the classifier of the in-training evaluation (--eval-every): the
    judge (evaluators.train_judge: class-balanced batches) trained in float32 on the run's training
    split, kept in the run folder; None when the run does not evaluate (eval_every 0 or more than its epochs, or a
    worker that writes nothing). callbacks.BestGenerator calls it at the first evaluation, so that
    the classifier trains in memory the GAN's steps have freed (a lower peak than training it first);
    it sets the global seeds, which the GAN does not draw from once built: its numbers stay the same."""
    if not (run.writable and 0 < config.eval_every <= config.epochs):
        return None
    return functools.partial(load_or_train_evaluation_classifier, config, data, run)


def load_or_train_evaluation_classifier(config, data, run):
    """(classifier, check): the judge of the run folder, or made there (evaluators.judge: trained,
    or the judge cache's when one of the same data, seed and settings was trained before) with
    eval_classifier.json (its check on the held-out images, steps, seconds, whether cached); the
    check is printed either way."""
    from evaluators import judge
    from metrics import describe_check
    path, meta_path = run.file(EVAL_CLASSIFIER_FILE), run.file(EVAL_CLASSIFIER_FILE.replace(".keras", ".json"))
    meta = json.loads(meta_path.read_text()) if path.is_file() and meta_path.is_file() else {}
    if "check" in meta:
        classifier = load_model(path)
    else:
        started = time.time()
        with dtype_policy("float32"):
            classifier, check, cached = judge(data, seed=config.seed, epochs=EVAL_CLASSIFIER_EPOCHS)
        save_model(classifier, path)
        meta = dict(check=check, epochs=EVAL_CLASSIFIER_EPOCHS, seconds=round(time.time() - started, 1),
                    cached=cached)
        save_json(meta_path, meta)
    how = "from the judge cache, loaded" if meta.get("cached") else "trained"
    print(f"[evaluation] classifier of the training split, every {config.eval_every} epochs, "
          f"{meta['check']['steps']} class-balanced batches, {how} in {meta['seconds']:.1f} s; "
          f"{describe_check(meta['check'])}", flush=True)
    return classifier, meta["check"]


def gan_callbacks(config, data, run, steps, classifier=None):
    """Phase 2's side effects; only the process that writes the run folder writes files."""
    import keras
    from callbacks import (GRID_ROWS, BestGenerator, Checkpoint, EpochSchedule, HistoryCSV, ProgressGIF,
                           SampleGrid, StopOnNonFiniteLoss)
    callbacks = [EpochSchedule(), StopOnNonFiniteLoss(run, steps)]
    if classifier is not None:
        callbacks.append(BestGenerator(run, classifier, data, config.eval_every, config.seed, config.best_by))
    if run.writable:
        real_row = np.stack([data.x_train[data.y_train == c][0] for c in range(data.num_classes)])
        noise = np.random.default_rng(config.seed).standard_normal((GRID_ROWS, config.latent_dim))
        callbacks += [HistoryCSV(run, "gan", config.model_class.title),
                      SampleGrid(run, real_row, noise.astype(np.float32), data.class_names),
                      Checkpoint(run, config.keep_checkpoints), ProgressGIF(run),
                      keras.callbacks.TensorBoard(str(run.file("tensorboard")), update_freq="epoch")]
    return callbacks


# ---------------------------------------------------------------------------------------------
# Settings


def setting(help=None, default=None, **flag):
    """A TrainConfig field and its flag --name-with-dashes (argparse's type, choices or action in
    `flag`). Without `help` the flag is datasets.add_dataset_arguments'."""
    return dataclasses.field(default=default, metadata=dict(help=help, **flag))


# Defaults, from the most general to the most specific; a flag or keyword argument beats them all.
PAPER_DEFAULTS = dict(  # Sec. 4 (epochs: the cell set's; the autoencoder's and the evaluation's are ours)
    image_size=PAPER_IMAGE_SIZE, batch_size=128, latent_dim=128, learning_rate=2e-4, beta_1=0.5, beta_2=0.9,
    gp_weight=10.0, epochs=100, ae_epochs=30, ae_loss="mae", eval_every=10)
DATASET_DEFAULTS = {  # Sec. 4: Fashion-MNIST 15 epochs, CIFAR-10 30; digits: ours, about 10 minutes
    "digits": dict(image_size=TRAINING_IMAGE_SIZES["digits"], batch_size=64, epochs=40, eval_every=5),
    "fashion_mnist": dict(epochs=15, ae_epochs=10, eval_every=1),
    "cifar10": dict(epochs=30, ae_epochs=10, eval_every=3),
}
IMBALANCED_DEFAULTS = {  # a third of the images: three times the epochs, as many generator steps
    "digits": dict(epochs=120, eval_every=10),
}
# Then the model's own (bagan_gp.py): its setting_defaults (BAGAN: the original code's Adam and loss),
# its default train ratio, no gp_weight without a penalty, and the defaults of its options.
EVAL_CLASSIFIER_EPOCHS = 5
BUDGET = dict(images_per_batch=8, min_batch=16, generator_steps=3000, ae_steps=1000, evaluations=20, small_steps=1500)
"""The training budget of data without a table of its own above (class folders, cells, the
oversampler's arrays), `TrainConfig.fit_budget`: a batch of about an eighth of the training images
(a power of two from 16 to the paper's 128), at least `generator_steps` generator steps and
`ae_steps` autoencoder batches, and about `evaluations` in-training evaluations. A set so small that
the paper's 100 epochs would give fewer than `small_steps` generator steps also gets class-balanced
real batches (--real-batches balanced) and keeps its last generator (--best-by last: a judge of a
few hundred images cannot pick among good epochs). The paper's cells run (about 6,900 training
images, batch 128, 100 epochs: 5,300 steps) keeps its settings; a folder of 282 training images gets
batch 32, 375 epochs, balanced real batches and the last generator instead of 2 steps per epoch
(benchmarks/RESULTS.md)."""
FITTED = ("batch_size", "epochs", "ae_epochs", "eval_every", "real_batches", "best_by")
"""The settings fit_budget may set."""
BEFORE_THE_SETTING = dict(latent="paper", eval_every=0, ae_loss="mae", dropout=0.0, resize="stretch", ema_decay=0.0,
                          networks="project", real_batches="data", best_by="kid")
"""What runs written before a setting existed did; --resume fills them in (g_learning_rate: the learning rate)."""
RESUMABLE = ("epochs", "learning_rate", "g_learning_rate", "keep_checkpoints", "jit_compile", "eval_every")
"""What --resume may change; the checkpoint holds everything else."""


def flag(name):
    return "--" + name.replace("_", "-")


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a run; config.json holds them (with the data's class names and counts).

    Make one with `TrainConfig.create(**settings)` (None or missing: the default of the tables
    above) or `TrainConfig.resume(run_dir, **changes)`; both check every value and raise
    UsageError naming the culprit. Each field is a flag of this script and a keyword of the
    oversampler.
    """

    dataset: str = setting(default="digits")
    data_dir: str = setting()
    imbalanced: bool = setting(default=False)
    image_size: int = setting()
    resize: str = setting(default="pad", choices=RESIZE_MODES)
    window: list = setting()
    model: str = setting("this paper's model or one the papers compare it with, on the same networks",
                         default="bagan_gp")
    variant: str = setting("bagan_gp only (default v3). v1: real labels for the fakes; v2: balanced "
                           "labels and the wrong-label term; v3: v2 + supervised autoencoder",
                           choices=("v1", "v2", "v3"))
    critic_init: str = setting("bagan_gp only (default none): the critic's convolutions from the "
                               "pretrained encoder", choices=("none", "encoder"))
    latent: str = setting("bagan_gp only (default paper): the generator's input. paper: z ~ N(0, I) into the "
                          "embedding (Fig. 4); class: z mapped to its class's Gaussian of the encoder's latents "
                          "first (v3)", choices=("paper", "class"))
    real_fraction: float = setting("acgan only: share of real images in a discriminator batch (default 0.5; "
                                   "paper 003: 0.25 for AC-GAN v1, 0.75 for v2)", type=float)
    alternate: bool = setting("acgan only (AC-GAN v3): 75%% real images, 50%% every third epoch",
                              action="store_true")
    dropout: float = setting("bagan only (default 0.3, the original code's): dropout after each of the "
                             "discriminator's convolutions", type=float)
    networks: str = setting("the widths and details of the encoder, decoder and critic: the original BAGAN-GP "
                            "code's, or this project's first ones (autoencoder.NETWORKS; benchmarks/RESULTS.md)",
                            default="original", choices=("original", "project"))
    batch_size: int = setting("paper: 128 (digits: 64)", type=int)
    latent_dim: int = setting("paper: 128", type=int)
    learning_rate: float = setting("Adam's learning rate (the critic's, the autoencoder's), paper: 2e-4; bagan: "
                                   "5e-5 (the original code's)", type=float)
    g_learning_rate: float = setting("the generator's learning rate (default: --learning-rate's, as in the paper)",
                                     type=float)
    beta_1: float = setting("Adam's beta_1, paper: 0.5", type=float)
    beta_2: float = setting("Adam's beta_2, paper: 0.9; bagan: 0.999 (Keras' default, the original code's)",
                            type=float)
    train_ratio: int = setting("critic steps per generator step (paper: 5; bagan, cgan, acgan: 1)", type=int)
    gp_weight: float = setting("gradient penalty weight lambda (paper: 10), where the model has the penalty",
                               type=float)
    epochs: int = setting("GAN epochs (paper: cells 100, fashion_mnist 15, cifar10 30; digits 40, "
                          "imbalanced 120)", type=int)
    ae_epochs: int = setting("autoencoder epochs (digits and cells 30, fashion_mnist and cifar10 10)", type=int)
    ae_loss: str = setting("the autoencoder's reconstruction error: mae (the BAGAN-GP code's) or mse (BAGAN's "
                           "default)", choices=("mae", "mse"))
    steps_per_epoch: int = setting("cap on generator steps per epoch (smoke runs)", type=int)
    ema_decay: float = setting("keep an exponential moving average of the generator's weights with this decay "
                               "(e.g. 0.999, warmed up over the first steps); samples, the evaluation and "
                               "generator.keras use it, generator_raw.keras is the trained one. 0: off",
                               default=0.0, type=float)
    diffaugment: str = setting("differentiable augmentation of every image the critic sees (DiffAugment): any of "
                               "translation,cutout,color, separated by commas (or +); none: off")
    real_batches: str = setting("the real images of the critic's batches: data (drawn as the training split is, "
                                "the paper's expectation of Eq. 14) or balanced (every class alike, as many images "
                                "per epoch as the split: a class of six images is seen as often as the largest); "
                                "the budget picks balanced for a small set",
                                default="data", choices=("data", "balanced"))
    eval_every: int = setting("every N epochs, score the generator per class (KID and recognition by a classifier of "
                              "the training split) and keep generator_best.keras by the worst class; 0: never "
                              "(digits 5, imbalanced 10; fashion_mnist 1; cifar10 3; others 10)", type=int)
    best_by: str = setting("which evaluated epoch generator_best.keras keeps, among those whose images are recognised "
                           "above chance in every class: kid (the lowest worst-class KID), recognition (the highest "
                           "worst-class share recognised, the worst-class KID breaking ties) or last (none: the "
                           "epochs are scored, and the last generator is the one used); the budget picks last for a "
                           "small set, whose judge of a few hundred images cannot pick among good epochs",
                           default="kid", choices=("kid", "recognition", "last"))
    precision: str = setting("Keras dtype policy; losses and the penalty's norm stay float32. auto: "
                             "mixed_bfloat16 where the hardware computes bfloat16 natively (a CPU with "
                             "avx512_bf16 or AMX, a GPU of compute capability 8.0 or newer), float32 elsewhere",
                             default="auto", choices=("auto", "float32", "mixed_bfloat16"))
    jit_compile: str = setting("XLA for the train step; auto = Keras' choice: on with a GPU, off on "
                               "CPU-only machines, where it measured slower (benchmarks/RESULTS.md)",
                               default="auto", choices=("auto", "true", "false"))
    seed: int = setting("seed of the weights and every draw (and of the split unless --split-seed)", default=42,
                        type=int)
    split_seed: int = setting("seed of the train/test split and of the imbalanced protocol's subsample (default: "
                              "--seed); runs that differ only in --seed with one --split-seed share their data",
                              type=int)
    keep_checkpoints: int = setting("how many epoch checkpoints to keep", default=2, type=int)

    # -------------------------------------------------------------------------------- making one

    @classmethod
    def create(cls, **settings):
        """The configuration of `settings` (None: the default), checked."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise UsageError(f"unknown training setting {unknown[0]!r}")
        given = {name: value for name, value in settings.items() if value is not None}
        config = cls(**given)
        model = config.model_class
        misplaced = [name for name in model_option_names() if name in given and name not in model.options]
        if "gp_weight" in given and not model.uses_gradient_penalty:
            misplaced.append("gp_weight")
        if misplaced:
            raise UsageError(f"{', '.join(map(flag, misplaced))} does not apply to --model {config.model}")
        try:
            options = model.option_values(**{name: given.get(name) for name in model.options})
        except ValueError as e:
            raise UsageError(str(e)) from None
        overridden = [name for name in options if name in given and given[name] != options[name]]
        if overridden:
            raise UsageError(f"{flag(overridden[0])} {given[overridden[0]]} does not apply to --model {config.model}"
                             + (f" {config.variant}" if config.variant else "") + f" (it has {options[overridden[0]]})")
        layers = [("paper", PAPER_DEFAULTS), ("dataset", DATASET_DEFAULTS.get(config.dataset, {})),
                  ("imbalanced protocol", IMBALANCED_DEFAULTS.get(config.dataset, {}) if config.imbalanced else {}),
                  ("model", {**model.setting_defaults, "train_ratio": model.default_train_ratio,
                             **({} if model.uses_gradient_penalty else {"gp_weight": 0.0}), **options})]
        config.sources = {f.name: "flag" if f.name in given else "default" for f in dataclasses.fields(cls)}
        for source, defaults in layers:
            for name, value in defaults.items():
                if name not in given:
                    setattr(config, name, value)
                    config.sources[name] = source
        if config.g_learning_rate is None:
            config.g_learning_rate = config.learning_rate
            config.sources["g_learning_rate"] = "the learning rate"
        if config.split_seed is None:
            config.split_seed = config.seed
            config.sources["split_seed"] = "the seed"
        config.validate()
        config.given = frozenset(given)
        return config

    @classmethod
    def resume(cls, run_dir, **changes):
        """The configuration of the run in `run_dir`, with the changes RESUMABLE allows (None: no
        change); another setting that differs is refused, naming its flag."""
        saved = Run.open(run_dir).config
        config = cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})
        model = config.model_class
        for f in dataclasses.fields(cls):
            if f.name not in saved:  # a setting added since the run began: what the code did before it
                setattr(config, f.name, BEFORE_THE_SETTING.get(f.name))
        for name in model_option_names():
            setattr(config, name, getattr(config, name) if name in model.options else None)
        for name, value in model.option_values(**config.options).items():
            setattr(config, name, value)
        if config.g_learning_rate is None:
            config.g_learning_rate = config.learning_rate
        if config.split_seed is None:
            config.split_seed = config.seed
        for name, value in changes.items():
            if value is None or value == getattr(config, name) or (name, value) == ("precision", "auto"):
                continue
            if name not in RESUMABLE:
                raise UsageError(f"{flag(name)} cannot change when resuming (the run has "
                                 f"{getattr(config, name)!r}); only {', '.join(map(flag, RESUMABLE))} can")
            done = max((int(row["epoch"]) for row in Run.open(run_dir).history() if row["phase"] == "gan"), default=0)
            if name == "epochs" and value < done:
                raise UsageError(f"--epochs {value}: {done} epochs are done in {run_dir}; give more to continue")
            setattr(config, name, value)
        config.validate()
        return config

    def validate(self):
        """UsageError naming the first setting out of range."""
        if self.image_size not in MODEL_IMAGE_SIZES:
            raise UsageError(f"image size {self.image_size} is not supported: use one of "
                             f"{', '.join(map(str, MODEL_IMAGE_SIZES))}")
        if self.train_ratio < 1:
            raise UsageError(f"train ratio must be at least 1, got {self.train_ratio}")
        for name in ("batch_size", "latent_dim", "epochs", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise UsageError(f"{flag(name)[2:]} must be at least 1, got {getattr(self, name)}")
        for name in ("ae_epochs", "eval_every"):
            if getattr(self, name) < 0:
                raise UsageError(f"{flag(name)[2:]} must be at least 0, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UsageError("steps-per-epoch must be at least 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"--ema-decay must be at least 0 and below 1, got {self.ema_decay}")
        from augment import parse_policy
        try:
            self.diffaugment = ",".join(parse_policy(self.diffaugment)) or None
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.window is not None and (len(self.window) != 2 or not self.window[0] < self.window[1]):
            raise UsageError(f"--window needs LOW HIGH with LOW < HIGH, got {self.window}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) is not None and getattr(self, f.name) not in choices:
                raise UsageError(f"{f.name.replace('_', ' ')} must be one of {', '.join(choices)}, "
                                 f"got {getattr(self, f.name)!r}")

    given = None
    """The settings `create` was given (not a field: config.json does not keep it); None for a resumed
    run and once fit_budget has run."""
    sources = None
    """Where `create` took each setting's value from: flag, model, imbalanced protocol, dataset, paper,
    default (the field's own), data (fit_budget); `--show-config` prints them."""

    def fit_budget(self, train_images):
        """Scales batch, epochs, autoencoder epochs and evaluations to `train_images` (BUDGET), for
        data without defaults of its own, where no flag or keyword gave them; returns a dict of what
        it set and why (None: nothing to fit). Made once per configuration: calling it again changes
        nothing."""
        if self.dataset in DATASET_DEFAULTS or self.given is None:
            return None
        given, self.given = self.given, None
        before = {name: getattr(self, name) for name in FITTED}
        if "batch_size" not in given:
            fit = 2 ** int(math.log2(max(train_images // BUDGET["images_per_batch"], 1)))
            self.batch_size = max(min(fit, PAPER_DEFAULTS["batch_size"]),
                                  min(BUDGET["min_batch"], 2 ** int(math.log2(max(train_images, 1)))))
        steps = max(self.steps_per_epoch_for_count(train_images), 1)
        if "epochs" not in given:
            self.epochs = max(self.epochs, math.ceil(BUDGET["generator_steps"] / steps))
        if "ae_epochs" not in given and self.ae_epochs:
            batches = math.ceil(train_images / self.batch_size)
            self.ae_epochs = max(self.ae_epochs, math.ceil(BUDGET["ae_steps"] / batches))
        if "eval_every" not in given and self.eval_every:
            self.eval_every = max(self.eval_every, round(self.epochs / BUDGET["evaluations"]))
        small = train_images // self.batch_size * PAPER_DEFAULTS["epochs"] < BUDGET["small_steps"]
        if "real_batches" not in given and small:  # the paper's epochs would be too few steps
            self.real_batches = "balanced"
        if "best_by" not in given and small:
            self.best_by = "last"
        self.validate()
        for name in FITTED:
            if self.sources and name not in given and getattr(self, name) != before[name]:
                self.sources[name] = f"data ({train_images} training images, BUDGET)"
        return dict(train_images=train_images, batch_size=self.batch_size, epochs=self.epochs,
                    generator_steps=self.epochs * steps, ae_epochs=self.ae_epochs, eval_every=self.eval_every,
                    real_batches=self.real_batches, best_by=self.best_by,
                    given=sorted(name for name in FITTED if name in given),
                    changed={name: [value, getattr(self, name)] for name, value in before.items()
                             if value != getattr(self, name)})

    def check_fits(self, data, replicas):
        """UsageError when a batch does not fit the training split or the replicas."""
        if len(data.x_train) < self.batch_size:
            raise UsageError(f"batch size {self.batch_size} is larger than the training split "
                             f"({len(data.x_train)} images)")
        if self.batch_size % replicas:
            raise UsageError(f"batch size {self.batch_size} does not split evenly between {replicas} replicas")

    # -------------------------------------------------------------------------------- derived

    @property
    def model_class(self):
        models = import_models()
        if self.model not in models:
            raise UsageError(f"unknown model {self.model!r}: use one of {', '.join(models)}")
        return models[self.model]

    @property
    def options(self):
        """The model's own settings (variant, critic_init; real_fraction, alternate)."""
        return {name: getattr(self, name) for name in self.model_class.options}

    @property
    def autoencoder(self):
        """"supervised", "unsupervised" or None: the autoencoder trained first."""
        return self.model_class.initialised_by(self.options)

    @property
    def label(self):
        """How the console names the run's model: "bagan_gp v3", "acgan"."""
        return f"{self.model} {self.variant}" if self.variant else self.model

    @property
    def xla(self):
        return {"auto": "auto", "true": True, "false": False}[self.jit_compile]

    def model_settings(self):
        """The keyword arguments of the model class's `build`."""
        return dict(latent_dim=self.latent_dim, train_ratio=self.train_ratio, gp_weight=self.gp_weight,
                    seed=self.seed, batch_size=self.batch_size, networks=self.networks, ema_decay=self.ema_decay,
                    diffaugment=self.diffaugment, **self.options)

    def choose_precision(self):
        """Resolves --precision auto (`auto_precision`) in place; returns why it chose, else None."""
        if self.precision != "auto":
            return None
        self.precision, why = auto_precision()
        return f"auto: {why}"

    def steps_per_epoch_for(self, data):
        return self.steps_per_epoch_for_count(len(data.x_train))

    def steps_per_epoch_for_count(self, train_images):
        steps = train_images // self.batch_size
        return min(steps, self.steps_per_epoch) if self.steps_per_epoch else steps

    def new_run_dir(self):
        return new_run_dir(self.dataset, self.variant or self.model)

    def record(self, data):
        """config.json: the settings, the autoencoder, the data's classes and counts, the versions."""
        import keras
        import tensorflow as tf
        return dict(dataclasses.asdict(self), autoencoder=self.autoencoder, intensity=data.intensity,
                    original_size=data.original_size, mixed=data.mixed, class_names=list(data.class_names),
                    channels=data.channels, train_counts=data.train_counts(), test_counts=data.test_counts(),
                    versions=dict(python=platform.python_version(), tensorflow=tf.__version__,
                                  keras=keras.__version__, numpy=np.__version__))


def describe_budget(budget):
    """The console's line for TrainConfig.fit_budget's record."""
    given = f"; given: {', '.join(map(flag, budget['given']))}" if budget["given"] else ""
    balanced = budget.get("real_batches") == "balanced"
    by = {"recognition": ", the best generator by its worst class's recognition",
          "last": ", the last generator kept (no best: a judge of so few images cannot pick among epochs)"}
    return (f"budget: {budget['train_images']} training images -> batch {budget['batch_size']}, "
            f"{budget['epochs']} GAN epochs = {budget['generator_steps']} generator steps, "
            f"{budget['ae_epochs']} autoencoder epochs, an evaluation every {budget['eval_every']} epochs"
            + (", class-balanced real batches for the critic" if balanced else "")
            + by.get(budget.get("best_by"), "")
            + f" (at least {BUDGET['generator_steps']} generator and {BUDGET['ae_steps']} autoencoder steps, a "
            f"batch of about 1/{BUDGET['images_per_batch']} of the images, so that a small set trains long enough"
            + (" and a class of a few images counts as much as the largest" if balanced else "")
            + f"{given}; --batch-size, --epochs, --ae-epochs, --eval-every, --real-batches and --best-by override)")


def auto_precision(cpuinfo="/proc/cpuinfo"):
    """(policy, why): mixed bfloat16 where every GPU has compute capability 8.0 or newer or, without
    a GPU, where the CPU has bfloat16 instructions (avx512_bf16, amx_bf16 in `cpuinfo`'s flags);
    float32 elsewhere, where bfloat16 would be emulated and slower (benchmarks/RESULTS.md)."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = min(tf.config.experimental.get_device_details(g).get("compute_capability") or (0, 0)
                         for g in gpus)
        native = capability >= (8, 0)
        return ("mixed_bfloat16" if native else "float32",
                f"GPU compute capability {capability[0]}.{capability[1]}" + ("" if native else ", below 8.0"))
    try:
        with open(cpuinfo) as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split(":", 1)[1].split()}
    except OSError:
        return "float32", f"no GPU, and {cpuinfo} cannot be read for the CPU's bfloat16 instructions"
    native = [name for name in ("avx512_bf16", "amx_bf16") if name in flags]
    if native:
        return "mixed_bfloat16", f"no GPU; the CPU has {' and '.join(native)}"
    return "float32", "no GPU, and the CPU has no bfloat16 instructions (avx512_bf16, amx_bf16)"


def model_option_names():
    """The TrainConfig fields that are some model's own options."""
    return list(dict.fromkeys(name for model in import_models().values() for name in model.options))


def import_models():
    """bagan_gp.MODELS (importing it loads TensorFlow, so the registry is read only when needed)."""
    import bagan_gp
    return bagan_gp.MODELS


# ---------------------------------------------------------------------------------------------
# Several devices or machines


def make_strategy(name):
    """The tf.distribute strategy of --strategy. Created before any other TensorFlow work, as
    MultiWorkerMirroredStrategy requires; mirrored uses every GPU, or the logical CPU devices of
    a machine without one (one unless configured, e.g. by the tests)."""
    if name == "multiworker" and not os.environ.get("TF_CONFIG"):
        raise UsageError("--strategy multiworker reads the cluster from TF_CONFIG, which is not set "
                         "(see docs/multi-device.md)")
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


# ---------------------------------------------------------------------------------------------
# Command line


def add_training_arguments(parser, exclude=()):
    """A flag for every TrainConfig setting but the dataset's (datasets.add_dataset_arguments) and
    `exclude`; unset, each is None (the table's default)."""
    models = import_models()
    group = parser.add_argument_group("training")
    for f in dataclasses.fields(TrainConfig):
        if f.metadata["help"] is None or f.name in exclude:
            continue
        options = {k: v for k, v in f.metadata.items() if k != "help"}
        help = f.metadata["help"]
        if f.name == "model":
            options["choices"] = list(models)
            help += ": " + ", ".join(f"{name} ({m.title})" for name, m in models.items())
        elif f.default is not None:
            help += f" (default {f.default})"
        group.add_argument(flag(f.name), help=help, default=None, **options)
    return group


def parse_args(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description="Train BAGAN-GP (the autoencoder, then the GAN) or a model the "
                                   "papers compare it with, and write a run folder.")
    add_dataset_arguments(p, dict(dataset="digits", imbalanced="no", image_size="64; digits 32"))
    add_training_arguments(p)
    group = p.add_argument_group("run")
    group.add_argument("--out", help="run folder (default train_results/<dataset>-<variant or model>-<time>)")
    group.add_argument("--resume", metavar="RUN_DIR",
                       help=f"continue the run in RUN_DIR from its last checkpoint; "
                            f"{', '.join(map(flag, RESUMABLE))} may change")
    group.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default="default",
                       help="tf.distribute: default (one device), mirrored (all GPUs of this machine, or its "
                            "logical CPUs), multiworker (several machines, from TF_CONFIG); --batch-size stays "
                            "the global batch")
    group.add_argument("--show-config", action="store_true",
                       help="print every setting these flags resolve to and where its value comes from (paper, "
                            "dataset, imbalanced protocol, model, data, flag), then stop without training")
    group.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    group.add_argument("--verbose", type=int, choices=[0, 1, 2],
                       help="Keras progress output: 0 none, 1 a progress bar, 2 one line per epoch (default: 1 on "
                            "a terminal, 2 in a log file); 1 and 2 add an estimate of the time left")
    return p.parse_args(argv)


def show_config(config, resumed=None):
    """A table of every setting, its value and where the value came from (TrainConfig.sources); a
    folder's dataset is read to fit its budget. A resumed run's settings come from its config.json."""
    if resumed:
        sources = {f.name: f"{resumed}/config.json" for f in dataclasses.fields(config)}
    else:
        if config.dataset not in DATASET_DEFAULTS:
            from datasets import load_dataset
            data = load_dataset(config.dataset, config.data_dir, config.image_size, config.imbalanced, config.split_seed,
                                config.resize, config.window)
            config.fit_budget(len(data.x_train))
        sources = config.sources
    rows = [(f.name, json.dumps(getattr(config, f.name)), sources.get(f.name, "default"))
            for f in dataclasses.fields(config)]
    widths = [max(len(row[i]) for row in rows + [("setting", "value", "from")]) for i in range(2)]
    lines = [f"{'setting'.ljust(widths[0])}  {'value'.ljust(widths[1])}  from"]
    lines += [f"{name.ljust(widths[0])}  {value.ljust(widths[1])}  {source}" for name, value, source in rows]
    return "\n".join(lines)


def _at_terminal(stream):
    """Whether `stream` (sys.stdin, sys.stdout) is a terminal; False when it is missing or closed."""
    try:
        return bool(stream) and stream.isatty()
    except (ValueError, OSError):
        return False


def main(argv=None):
    args = parse_args(argv)
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    try:
        check_dataset_arguments(args, MODEL_IMAGE_SIZES)
        if args.resume and args.out:
            raise UsageError("--out does not apply to --resume: a run continues in its own folder")
        config = TrainConfig.resume(args.resume, **settings) if args.resume else TrainConfig.create(**settings)
        if args.show_config:
            print(show_config(config, args.resume))
            return 0
        run_dir = args.resume or args.out or config.new_run_dir()
        strategy = make_strategy(args.strategy)
        if not args.resume and is_chief(strategy) and os.path.exists(os.path.join(run_dir, CONFIG_FILE)):
            raise UsageError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
    except (UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from callbacks import NonFiniteLoss
    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
    try:
        summary = train(config, run_dir, strategy=strategy, verbose=verbose)
    except (UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        checkpoints = Run(run_dir, {}).checkpoints()
        saved = (f"the last saved epoch is {int(checkpoints[-1].stem[6:])} ({checkpoints[-1]})" if checkpoints
                 else "no epoch was saved yet")
        # Keras' progress bar (verbose 1: "\r" updates) or the terminal's "^C" may have left the cursor mid-line
        sys.stdout.flush()
        mid_line = verbose == 1 or _at_terminal(sys.stdin) or _at_terminal(sys.stdout)
        print(("\n" if mid_line else "") + f"interrupted: {saved}; continue with: python bagan_train.py --resume "
              f"{run_dir}", file=sys.stderr, flush=True)
        return 130
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"done in {summary['seconds']} s: {run_dir}\nnext: look at {os.path.join(run_dir, 'progress.gif')} and "
              f"losses.png; python generate.py {run_dir} --per-class 500 --to generated/; "
              f"python fid.py {run_dir} --features classifier; python compare.py --help")
    return 0


if __name__ == "__main__":
    with tensorflow_quiet():
        sys.exit(main())
