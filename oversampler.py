"""Rebalance image arrays from Python with BAGAN-GP, the way imbalanced-learn's SMOTE does.

    from oversampler import BAGANGPOversampler
    sampler = BAGANGPOversampler(image_size=32, epochs=40, random_state=0)
    X_res, y_res = sampler.fit_resample(X, y)          # originals first, generated images after
    X_new, y_new = sampler.sample(100)                 # 100 more images of every class
    sampler.save("digits-sampler"); BAGANGPOversampler.load("digits-sampler")

Training is bagan_train's recipe (`bagan_train.train` with a `TrainConfig` made from the sampler's
settings) into a run folder (a temporary one unless `run_dir` is given); the fitted sampler keeps
the generator read back from that folder, never the training process's memory.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from numbers import Integral, Real

import numpy as np
from imblearn.over_sampling.base import BaseOverSampler
from imblearn.utils import check_sampling_strategy
from sklearn.utils.validation import check_is_fitted

import bagan_train
from datasets import Dataset, resize_images, to_uint8
from runs import CONFIG_FILE, GENERATOR_FILE, Run, UsageError, generated_batches, load_model, save_json, save_model

DATASET_NAME = "arrays"
"""config['dataset'] of the runs the oversampler trains (bagan_train's folder defaults apply)."""
TRAIN_SETTINGS = ("model", "epochs", "ae_epochs", "image_size", "batch_size", "latent_dim", "learning_rate",
                  "g_learning_rate", "beta_1", "beta_2", "train_ratio", "gp_weight", "steps_per_epoch", "variant",
                  "critic_init", "latent", "ema_decay", "diffaugment", "real_batches", "eval_every", "precision",
                  "jit_compile")
"""Constructor settings that are bagan_train.TrainConfig's; None leaves its default."""
SAVED_FILE = "oversampler.json"
JUDGE_FILE = "judge.keras"
TRAINING_FILE = "training_images.npz"
"""What select= needs, saved beside the generator: the judge and the training images at the model's size."""
SAVE_FORMAT = 1
CHANNELS = (1, 3)
KNOWN_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))
"""Value ranges recognised in float images, tried in this order."""


class TrainingError(RuntimeError):
    """Training stopped at a non-finite loss."""


@dataclass(frozen=True)
class ImageFormat:
    """How the caller's images look, so that generated images are returned the same way.

    image_shape is (H, W, C); layout is "HW" for (N, H, W), "HWC" for (N, H, W, C) and "flat" for
    (N, H*W*C) rows; value_range (low, high) maps linearly onto uint8 0..255.
    """

    image_shape: tuple
    layout: str
    dtype: str
    value_range: tuple

    @classmethod
    def detect(cls, X, image_shape=None, value_range=None):
        """The format of the images X (a numpy array); ValueError when X cannot be images."""
        if X.dtype.kind not in "uif":
            raise ValueError(f"images must be a numeric (uint8 or float) array, got dtype {X.dtype}")
        given = _check_image_shape(image_shape) if image_shape is not None else None
        if X.ndim == 2:
            if given is None:
                raise ValueError("X is 2-D (n_samples, n_features): pass image_shape=(H, W) or (H, W, C) "
                                 "to read its rows as flattened images")
            shape, layout = given, "flat"
            if math.prod(shape) != X.shape[1]:
                raise ValueError(f"image_shape {tuple(image_shape)} has {math.prod(shape)} values but X has "
                                 f"{X.shape[1]} features per row")
        elif X.ndim in (3, 4):
            if given is not None and tuple(image_shape) != X.shape[1:]:
                raise ValueError(f"image_shape {tuple(image_shape)} does not match the images' shape {X.shape[1:]}")
            shape, layout = _check_image_shape(X.shape[1:]), "HW" if X.ndim == 3 else "HWC"
        else:
            raise ValueError(f"images must be (N, H, W), (N, H, W, C) or flattened (N, H*W*C) with "
                             f"image_shape; got an array of shape {X.shape}")
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            raise ValueError("images contain NaN or infinite values")
        return cls(shape, layout, X.dtype.str, _value_range(X, value_range))

    def check(self, X):
        """ValueError unless X (a numpy array) holds images of this format."""
        expected = self.output_shape(len(X))
        if X.shape != expected or X.dtype != np.dtype(self.dtype):
            raise ValueError(f"the sampler was fitted on {np.dtype(self.dtype).name} images of shape "
                             f"{expected[1:]}; got {X.dtype.name} of shape {X.shape[1:]}")
        low, high = self.value_range
        if len(X) and (X.min() < low or X.max() > high):
            raise ValueError(f"the sampler was fitted on values in [{low:g}, {high:g}]; got values in "
                             f"[{X.min():g}, {X.max():g}]")

    def output_shape(self, n):
        height, width, channels = self.image_shape
        return {"HW": (n, height, width), "HWC": (n, height, width, channels),
                "flat": (n, height * width * channels)}[self.layout]

    def to_uint8(self, X):
        """Images in this format -> uint8 (N, H, W, C)."""
        X = np.asarray(X).reshape((len(X),) + self.image_shape)
        if X.dtype == np.uint8 and self.value_range == (0.0, 255.0):
            return X
        low, high = self.value_range
        scaled = (X.astype(np.float64) - low) * (255.0 / (high - low))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)

    def from_uint8(self, images):
        """uint8 (N, H, W, C) images -> this format (dtype, value range, layout)."""
        dtype = np.dtype(self.dtype)
        if dtype == np.uint8 and self.value_range == (0.0, 255.0):
            values = images
        else:
            low, high = self.value_range
            values = np.clip(images / 255.0 * (high - low) + low, low, high)
            if dtype.kind in "ui":
                values = np.rint(values)
        return values.astype(dtype).reshape(self.output_shape(len(images)))


def _check_image_shape(shape):
    """(H, W) or (H, W, C) -> (H, W, C) of positive ints with C in CHANNELS."""
    if not isinstance(shape, (tuple, list)) or len(shape) not in (2, 3) or not all(
            isinstance(s, Integral) and s > 0 for s in shape):
        raise ValueError(f"image shape must be (H, W) or (H, W, C) of positive integers, got {shape!r}")
    shape = tuple(int(s) for s in shape) + ((1,) if len(shape) == 2 else ())
    if shape[-1] not in CHANNELS:
        raise ValueError(f"images must have 1 or 3 channels, got {shape[-1]}")
    return shape


def _value_range(X, value_range):
    """The given or detected (low, high) of X: uint8 is 0..255; float [0, 1], [-1, 1] or [0, 255]."""
    low, high = (float(X.min()), float(X.max())) if len(X) else (0.0, 0.0)
    if value_range is not None:
        if (not isinstance(value_range, (tuple, list)) or len(value_range) != 2
                or not all(isinstance(v, Real) and math.isfinite(v) for v in value_range)
                or value_range[0] >= value_range[1]):
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
        given = (float(value_range[0]), float(value_range[1]))
        if low < given[0] or high > given[1]:
            raise ValueError(f"images have values in [{low:g}, {high:g}], outside value_range {given}")
        return given
    if X.dtype == np.uint8:
        return (0.0, 255.0)
    for known in KNOWN_RANGES:
        if known[0] <= low and high <= known[1]:
            return known
    raise ValueError(f"images have values in [{low:g}, {high:g}], not in [0, 1], [-1, 1] or [0, 255]; "
                     "pass value_range=(low, high)")


def _check_labels(y):
    """y as a 1-D numpy array of integer or string labels; ValueError otherwise."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must hold one label per image (1-D), got shape {y.shape}")
    if len(y) == 0:
        raise ValueError("y is empty: no images to learn from")
    if y.dtype.kind in "iuU":
        return y
    if y.dtype.kind == "O" and (all(isinstance(v, str) for v in y) or all(
            isinstance(v, Integral) and not isinstance(v, bool) for v in y)):
        return y
    raise ValueError(f"labels must be integers or strings, got {y.dtype} labels such as {y[:3].tolist()}")


def _resize_back(images, height, width):
    """Model-size uint8 (N, S, S, C) images -> (N, height, width, C), bilinear like datasets.resize_images."""
    if height == width:
        return resize_images(images, height)
    from PIL import Image
    out = np.empty((len(images), height, width, images.shape[-1]), np.uint8)
    for i, image in enumerate(images):
        for c in range(images.shape[-1]):
            out[i, ..., c] = np.asarray(Image.fromarray(image[..., c]).resize((width, height), Image.BILINEAR))
    return out


def _json_value(value):
    """A numpy scalar as the Python value json can write."""
    return value.item() if isinstance(value, np.generic) else value


def _training_context(verbose):
    """Silence the training's progress lines when verbose is 0 (bagan_train.train keeps the caller's
    Keras dtype policy)."""
    return contextlib.redirect_stdout(io.StringIO()) if verbose == 0 else contextlib.nullcontext()


class BAGANGPOversampler(BaseOverSampler):
    """BAGAN-GP over-sampler with imbalanced-learn's interface (fit, fit_resample) plus sample and save.

    Images: (N, H, W) or (N, H, W, C) arrays with 1 or 3 channels, uint8 or float (or integer); or
    flattened rows (N, H*W*C) with `image_shape=(H, W)` or `(H, W, C)`, which is how the sampler
    runs inside an imbalanced-learn Pipeline. Generated images come back in the layout, dtype and
    value range of the fitted images: uint8 is 0..255; float ranges are detected at fit time as
    [0, 1], [-1, 1] or [0, 255] (in that order), or given as `value_range=(low, high)`. They are
    quantised to 256 levels and resized from the model's `image_size` to H x W.

    Labels: integers or strings, mapped to 0..K-1 in sorted order (`classes_`); results use the
    original values. Every image trains the networks: the run's test split is the training split
    itself (a held-out split would take images from the smallest classes, which need them most),
    so the autoencoder's test curve in the run folder is its training error.

    `sampling_strategy` is imbalanced-learn's for over-samplers ('auto' = 'not majority',
    'minority', 'not minority', 'all', a dict of target counts, a callable y -> dict, a float for
    two classes). `random_state` (int) seeds training and the generator's noise: the same fitted
    sampler and random_state give identical images. Training settings (`model`, `epochs`,
    `image_size`, `variant`, ...) are bagan_train.TrainConfig's (`model="wgan_gp"` trains a
    baseline); None keeps its default for a folder dataset (the paper's 64x64; batch, epochs,
    autoencoder epochs and the evaluation's interval scaled to the number of images, and class-balanced
    real batches for a small set, bagan_train.TrainConfig.fit_budget). The in-training evaluation's
    judge is checked on a fifth of the images of each class, held out from the judge only.
    `generator`: the run's "best" generator (kept by that evaluation) or its "last"; None: the best
    when the run kept one. `run_dir` keeps the run
    folder (losses, sample grids); by default a temporary one is removed after fitting.
    `select` ("confidence", "novel" or both in a list) keeps only generated images that a judge trained
    on the same images at fit time (evaluators.train_judge) gives their class with probability at
    least `select_threshold` (default 0.9), or that are no nearer to a training image than fid.py's
    memorisation threshold (evaluators.select_generated), drawing up to ten times the quota; a class
    can then come back short, and `selection_` gives each class's drawn, kept and dropped counts.
    `fit_resample` trains, as in imbalanced-learn; `resample` rebalances with the already fitted
    generator. Like bagan_train, fitting seeds Python's, NumPy's and Keras' global generators.
    """

    def __init__(self, sampling_strategy="auto", random_state=None, *, model=None, epochs=None, ae_epochs=None,
                 image_size=None, batch_size=None, latent_dim=None, learning_rate=None, g_learning_rate=None,
                 beta_1=None, beta_2=None, train_ratio=None, gp_weight=None, steps_per_epoch=None, variant=None,
                 critic_init=None, latent=None, ema_decay=None, diffaugment=None, real_batches=None, eval_every=None,
                 precision=None, jit_compile=None,
                 generator=None, image_shape=None, value_range=None, run_dir=None, select=None, select_threshold=None,
                 verbose=1):
        super().__init__(sampling_strategy=sampling_strategy)
        self.random_state = random_state
        self.model = model
        self.epochs = epochs
        self.ae_epochs = ae_epochs
        self.image_size = image_size
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.learning_rate = learning_rate
        self.g_learning_rate = g_learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.train_ratio = train_ratio
        self.gp_weight = gp_weight
        self.steps_per_epoch = steps_per_epoch
        self.variant = variant
        self.critic_init = critic_init
        self.latent = latent
        self.ema_decay = ema_decay
        self.diffaugment = diffaugment
        self.real_batches = real_batches
        self.eval_every = eval_every
        self.precision = precision
        self.jit_compile = jit_compile
        self.generator = generator
        self.image_shape = image_shape
        self.value_range = value_range
        self.run_dir = run_dir
        self.select = select
        self.select_threshold = select_threshold
        self.verbose = verbose

    # -------------------------------------------------------------------------------- fitting

    def fit(self, X, y):
        """Train BAGAN-GP on images X with labels y; every input is checked before training."""
        X, y, image_format, config = self._checked_for_training(X, y)
        self._train(X, y, image_format, config)
        self.sampling_strategy_ = check_sampling_strategy(self.sampling_strategy, y, self._sampling_type)
        return self

    def fit_resample(self, X, y):
        """Train on (X, y), then return (X_res, y_res): X and y first, generated images after."""
        X, y, image_format, config = self._checked_for_training(X, y)
        self._train(X, y, image_format, config)
        return self.resample(X, y)

    def _fit_resample(self, X, y):
        """imbalanced-learn's hook; fit_resample itself is overridden to accept image arrays."""
        return self.fit_resample(X, y)

    def _checked_for_training(self, X, y):
        """(X, y, ImageFormat, run config) after every check that can fail before training."""
        self._validate_params()
        if self.random_state is not None and (not isinstance(self.random_state, Integral)
                                              or self.random_state < 0):
            raise ValueError(f"random_state must be None or a non-negative integer, got {self.random_state!r}")
        y = _check_labels(y)
        X = np.asarray(X)
        image_format = ImageFormat.detect(X, self.image_shape, self.value_range)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} images but y has {len(y)} labels")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); at least 2 are needed")
        check_sampling_strategy(self.sampling_strategy, y, self._sampling_type)
        config = self._run_config()
        config.fit_budget(len(X))
        if self.generator not in (None, "best", "last"):
            raise ValueError(f"generator must be None, 'best' or 'last', got {self.generator!r}")
        if self.generator == "best" and not 0 < config.eval_every <= config.epochs:
            raise ValueError("generator='best' needs the in-training evaluation: eval_every from 1 to epochs")
        if config.batch_size > len(X):
            raise ValueError(f"batch_size {config.batch_size} is larger than the {len(X)} images; "
                             "pass a smaller batch_size")
        self._select_rules()
        if self.run_dir is not None and os.path.exists(os.path.join(self.run_dir, CONFIG_FILE)):
            raise ValueError(f"run_dir {self.run_dir} already holds a run; give a new folder")
        return X, y, image_format, config

    def _select_rules(self):
        """select as a tuple of evaluators.SELECT_RULES (empty: no selection); ValueError on a bad value."""
        from evaluators import SELECT_RULES
        rules = () if self.select is None else (self.select,) if isinstance(self.select, str) else tuple(self.select)
        if any(rule not in SELECT_RULES for rule in rules):
            raise ValueError(f"select must be None, {' or '.join(map(repr, SELECT_RULES))} or a list of them, "
                             f"got {self.select!r}")
        if self.select_threshold is not None and not (isinstance(self.select_threshold, Real)
                                                      and 0 < self.select_threshold < 1):
            raise ValueError(f"select_threshold must be between 0 and 1, got {self.select_threshold!r}")
        return rules

    def _run_config(self):
        """bagan_train's TrainConfig of the settings, checked by it; ValueError naming a bad one."""
        try:
            return bagan_train.TrainConfig.create(dataset=DATASET_NAME, seed=self.random_state,
                                                  **{name: getattr(self, name) for name in TRAIN_SETTINGS})
        except UsageError as e:
            raise ValueError(f"bad training setting: {e}") from None

    def _train(self, X, y, image_format, config):
        """bagan_train.train on the images at the model's size; keeps the generator read back from the run folder."""
        from callbacks import NonFiniteLoss
        classes, codes = np.unique(y, return_inverse=True)
        images = resize_images(image_format.to_uint8(X), config.image_size)
        labels = codes.reshape(-1).astype(np.int64)
        data = Dataset(images, labels, images, labels, [str(c) for c in classes.tolist()],
                       image_format.image_shape[-1], DATASET_NAME)
        run_dir = os.fspath(self.run_dir) if self.run_dir is not None else tempfile.mkdtemp(prefix="bagan-oversampler-")
        try:
            with _training_context(self.verbose):
                bagan_train.train(config, run_dir, data=data, verbose=self.verbose)
            generator = Run.open(run_dir).load_generator(self.generator)
        except NonFiniteLoss as e:
            kept = f"; see the run folder {run_dir}" if self.run_dir is not None else ""
            raise TrainingError(f"training stopped at a non-finite loss at generator step {e.step}: try a lower "
                                f"learning_rate or float32 precision{kept}") from None
        except UsageError as e:
            raise ValueError(str(e)) from None
        finally:
            if self.run_dir is None:
                shutil.rmtree(run_dir, ignore_errors=True)
        if self._select_rules():  # the judge of select=, trained on the same images (evaluators.train_judge)
            from evaluators import train_judge
            self.judge_, self.judge_check_ = train_judge(data, config.seed)
            self.train_images_, self.train_codes_ = images, labels
        self.generator_ = generator
        self.classes_ = classes
        self.image_format_ = image_format
        if image_format.layout == "flat":
            self.n_features_in_ = X.shape[1]
        else:
            self.__dict__.pop("n_features_in_", None)

    # -------------------------------------------------------------------------------- sampling

    def resample(self, X, y):
        """(X_res, y_res) for `sampling_strategy` with the fitted generator, without training again."""
        check_is_fitted(self, "generator_")
        y = _check_labels(y)
        X = np.asarray(X)
        if X.ndim == 0 or len(X) != len(y):
            raise ValueError(f"X has {len(X) if X.ndim else 0} images but y has {len(y)} labels")
        self.image_format_.check(X)
        unknown = sorted(set(np.unique(y).tolist()) - set(self.classes_.tolist()))
        if unknown:
            raise ValueError(f"labels {unknown} were not among the fitted classes {self.classes_.tolist()}")
        self.sampling_strategy_ = check_sampling_strategy(self.sampling_strategy, y, self._sampling_type)
        X_new, y_new = self._generate(self.sampling_strategy_, self.random_state)
        return np.concatenate([X, X_new]), np.concatenate([y, y_new])

    def sample(self, n_per_class, random_state=None):
        """(X_new, y_new): n_per_class generated images of every class, or of a dict {label: n}.

        random_state defaults to the sampler's; the same value gives the same images.
        """
        check_is_fitted(self, "generator_")
        if isinstance(n_per_class, dict):
            counts = n_per_class
        else:
            counts = {label: n_per_class for label in self.classes_.tolist()}
        fitted = set(self.classes_.tolist())
        for label, n in counts.items():
            if label not in fitted:
                raise ValueError(f"label {label!r} is not among the fitted classes {self.classes_.tolist()}")
            if not isinstance(n, Integral) or isinstance(n, bool) or n < 0:
                raise ValueError(f"the number of images per class must be a non-negative integer, got {n!r}")
        return self._generate(counts, self.random_state if random_state is None else random_state)

    def _generate(self, counts, random_state):
        """Images of counts {label: n} in class order; the noise of class index c from numpy's
        default_rng([random_state, c]) (runs.generated_batches), a fresh random state if None."""
        index = {label: i for i, label in enumerate(self.classes_.tolist())}
        seed = int(np.random.default_rng().integers(2**31)) if random_state is None else random_state
        size, channels = self.generator_.outputs[0].shape[1], self.image_format_.image_shape[-1]
        images, codes = [np.zeros((0, size, size, channels), np.uint8)], [np.zeros(0, np.int64)]
        rules = self._select_rules()
        if rules:
            from evaluators import SELECT_THRESHOLD, select_generated
            if not hasattr(self, "judge_"):
                raise ValueError("select= needs the judge trained at fit time: fit (or load a sampler fitted) with select")
            quota = np.zeros(len(index), np.int64)
            for label, n in counts.items():
                quota[index[label]] = n
            kept, codes, stats = select_generated(self.generator_, self.judge_, self.train_images_, self.train_codes_,
                                                  quota, seed, rules, self.select_threshold or SELECT_THRESHOLD)
            images.append(kept)
            self.selection_ = {label: stats[i] for label, i in index.items() if stats[i]["drawn"]}
        else:
            for label, n in sorted(counts.items()):
                images += [to_uint8(batch) for batch in generated_batches(self.generator_, index[label], n, seed=seed)]
                codes.append(np.full(n, index[label]))
            codes = np.concatenate(codes)
        images = np.concatenate(images)
        height, width, _ = self.image_format_.image_shape
        return self.image_format_.from_uint8(_resize_back(images, height, width)), self.classes_[codes]

    # -------------------------------------------------------------------------------- saving

    def save(self, path):
        """Write the fitted sampler to the folder `path`: generator.keras and oversampler.json."""
        check_is_fitted(self, "generator_")
        os.makedirs(path, exist_ok=True)
        params = {name: _json_value(value) for name, value in self.get_params().items()}
        strategy = self.sampling_strategy
        if isinstance(strategy, dict):
            params["sampling_strategy"] = {"counts": [[_json_value(k), _json_value(v)] for k, v in strategy.items()]}
        elif callable(strategy):
            warnings.warn("a callable sampling_strategy is not saved; the loaded sampler uses 'auto'", stacklevel=2)
            params["sampling_strategy"] = "auto"
        for name in ("image_shape", "value_range"):
            if params[name] is not None:
                params[name] = [_json_value(v) for v in params[name]]
        if params["run_dir"] is not None:
            params["run_dir"] = os.fspath(params["run_dir"])
        save_model(self.generator_, os.path.join(path, GENERATOR_FILE))
        if hasattr(self, "judge_"):
            save_model(self.judge_, os.path.join(path, JUDGE_FILE))
            np.savez_compressed(os.path.join(path, TRAINING_FILE), images=self.train_images_, codes=self.train_codes_)
        saved = {"format": SAVE_FORMAT, "params": params, "classes": self.classes_.tolist(),
                 "classes_dtype": self.classes_.dtype.str, "image_format": asdict(self.image_format_),
                 "n_features_in": getattr(self, "n_features_in_", None)}
        save_json(os.path.join(path, SAVED_FILE), saved)

    @classmethod
    def load(cls, path):
        """A fitted sampler from a folder written by save()."""
        saved_path = os.path.join(path, SAVED_FILE)
        if not os.path.isfile(saved_path) or not os.path.isfile(os.path.join(path, GENERATOR_FILE)):
            raise ValueError(f"{path} is not a saved BAGANGPOversampler (needs {SAVED_FILE} and {GENERATOR_FILE})")
        with open(saved_path) as f:
            saved = json.load(f)
        if saved.get("format") != SAVE_FORMAT:
            raise ValueError(f"{saved_path} has save format {saved.get('format')!r}; this version reads {SAVE_FORMAT}")
        params = saved["params"]
        if isinstance(params["sampling_strategy"], dict):
            params["sampling_strategy"] = {k: v for k, v in params["sampling_strategy"]["counts"]}
        for name in ("image_shape", "value_range"):
            if params[name] is not None:
                params[name] = tuple(params[name])
        sampler = cls(**params)
        sampler.generator_ = load_model(os.path.join(path, GENERATOR_FILE))
        if os.path.isfile(os.path.join(path, JUDGE_FILE)):
            sampler.judge_ = load_model(os.path.join(path, JUDGE_FILE))
            with np.load(os.path.join(path, TRAINING_FILE)) as stored:
                sampler.train_images_, sampler.train_codes_ = stored["images"], stored["codes"]
        sampler.classes_ = np.array(saved["classes"], dtype=np.dtype(saved["classes_dtype"]))
        image_format = saved["image_format"]
        sampler.image_format_ = ImageFormat(tuple(image_format["image_shape"]), image_format["layout"],
                                            image_format["dtype"], tuple(image_format["value_range"]))
        if saved["n_features_in"] is not None:
            sampler.n_features_in_ = saved["n_features_in"]
        return sampler
