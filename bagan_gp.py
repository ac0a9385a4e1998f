"""BAGAN-GP and the models the papers compare it with, on shared networks and one training loop.

BAGAN-GP (paper 001, Sec. 3.2). Critic loss, Eq. (14), with sigmoid cross-entropy on D(x, y):
    L_D = CE(D(x_r, y_r), real) + CE(D(G(z, y_f), y_f), fake) + CE(D(x_r, y_wrong), fake)
          + gp_weight * E[(||grad_x D(x_hat, y_r)||_2 - 1)^2],   x_hat = a x_r + (1 - a) G(z, y_f)
Generator loss, Eq. (15):
    L_G = CE(D(G(z, y_f), y_f), real)
with z ~ N(0, I), y_f uniform over the classes ("balanced labels"), y_wrong uniform over the
classes other than y_r, a ~ U(0, 1) per sample.

Variants (Table 4 note): v1 uses the real batch's labels for the fakes and no wrong-label term
(Eq. 12, 13); v2 uses balanced labels and the wrong-label term (Eq. 14, 15); both start from
BAGAN's initialisation (the unsupervised decoder fed each class's Gaussian of encoded images: the
note's "(v3): replacing BAGAN original encoder by our encoder" and Sec. 5's v1 as cDRAGAN's loss
"combined with BAGAN framework"); v3 is v2 initialised from the supervised autoencoder (the default).

The baselines differ from BAGAN-GP by a loss, a label sampler or an initialisation, and each is
one class below, registered in MODELS under its --model name:
cDRAGAN is v1 without the autoencoder (Eq. 12, 13); conditional WGAN-GP swaps the cross-entropy for
the Wasserstein terms (Eq. 8, 9; paper 004); CGAN is cDRAGAN without the penalty, one critic step
per generator step (paper 003); AC-GAN (paper 003) has a discriminator with a real/fake and a class
output and its real-image proportion variants; BAGAN (paper 002, Sec. 3.1 of 001) draws the
generator's latent from each class's Gaussian of encoded images and trains a K+1-way softmax.

A model class describes itself: `title`, `default_train_ratio` (critic steps per generator step),
`autoencoder` (the one that initialises it: "supervised", "unsupervised" or None),
`uses_gradient_penalty`, `critic_terms` (the logged parts of its critic loss) and `options` (the
settings that apply to it alone, with their defaults); `build` makes its networks. The training
script, config.json, history.csv and the plots read those, so a new baseline is one class here.

Two training aids apply to every model (off by default): an exponential moving average of the
generator's weights (`ema_decay`; `sampling_generator` is what samples), and DiffAugment's
differentiable transforms (augment.py) on every image the critic sees, the penalty's included.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from augment import diff_augment, parse_policy
from autoencoder import (DEFAULT_NETWORKS, LEAKY_SLOPE, NETWORKS, build_decoder, build_embedding, downsampling_stack,
                         latent_head)
from datasets import to_model_range

VARIANTS = {
    "v1": dict(balanced_labels=False, wrong_label_term=False, autoencoder="unsupervised"),
    "v2": dict(balanced_labels=True, wrong_label_term=True, autoencoder="unsupervised"),
    "v3": dict(balanced_labels=True, wrong_label_term=True, autoencoder="supervised"),
}

def build_generator(embedding, decoder, latent=None):
    """Generator (Fig. 4): (z, label) -> decoder(embedding(z, label)), trainable end to end.

    With `latent` (a build_class_conditional_latent model, fixed) z first becomes the class's
    latent mean_c + A_c z, like the encoder's latents of that class's training images, which is
    what the pretrained embedding and decoder were trained on: decoder(embedding(latent(z, c), c)).
    """
    latent_dim = embedding.input_shape[0][-1]
    z = keras.Input(shape=(latent_dim,), name="z")
    label = keras.Input(shape=(), dtype="int32", name="label")
    code = z if latent is None else latent([z, label])
    return keras.Model([z, label], decoder(embedding([code, label])), name="generator")


def build_critic(image_shape, num_classes, encoder=None, networks=DEFAULT_NETWORKS):
    """Critic (Fig. 5): conv features * dense label embedding -> one unconstrained logit.

    Two parts, `critic_features` (image -> conv features) and `critic_head` (features, label ->
    logit): the label enters only the head, so Eq. (14) computes the features of the real images
    once for both of their terms. With `encoder`, the convolutions start from the pretrained
    encoder's weights (same layer names). The head: Embedding(K, 128) -> Dense -> LeakyReLU ->
    times the features -> Dense(1); the original code's embeds in 512 and has a Dense(512) (no
    activation) before the logit.
    """
    widths = NETWORKS[networks]
    image = keras.Input(shape=image_shape, name="image")
    body = keras.Model(image, downsampling_stack(image, image_shape[0], networks=networks), name="critic_features")
    features = keras.Input(shape=body.output_shape[1:], name="features")
    label = keras.Input(shape=(), dtype="int32", name="label")
    label_vector = layers.Embedding(num_classes, widths["label_units"], name="label_embedding")(label)
    label_vector = layers.Dense(features.shape[-1], name="label_dense")(label_vector)
    label_vector = layers.LeakyReLU(LEAKY_SLOPE)(label_vector)
    joint = layers.Multiply(name="features_times_label")([features, label_vector])
    if widths["head_units"]:
        joint = layers.Dense(widths["head_units"], name="joint_dense")(joint)
    logit = layers.Dense(1, dtype="float32", name="logit")(joint)
    head = keras.Model([features, label], logit, name="critic_head")
    image = keras.Input(shape=image_shape, name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    critic = keras.Model([image, label], head([body(image), label]), name="critic")
    if encoder is not None:
        for layer in body.layers:
            if layer.name.startswith("down_") and not layer.name.endswith("_act"):
                layer.set_weights(encoder.get_layer(layer.name).get_weights())
    return critic


def critic_parts(critic):
    """(features, head) of a critic built by `build_critic`, or None for any other critic."""
    names = {layer.name for layer in critic.layers}
    if {"critic_features", "critic_head"} <= names:
        return critic.get_layer("critic_features"), critic.get_layer("critic_head")
    return None


def build_acgan_discriminator(image_shape, num_classes, networks=DEFAULT_NETWORKS):
    """AC-GAN discriminator (paper 003, Fig. 3): image -> (real/fake logit, class logits)."""
    image = keras.Input(shape=image_shape, name="image")
    features = downsampling_stack(image, image_shape[0], networks=networks)
    source = layers.Dense(1, dtype="float32", name="source_logit")(features)
    classes = layers.Dense(num_classes, dtype="float32", name="class_logits")(features)
    return keras.Model(image, [source, classes], name="critic")


def build_bagan_discriminator(encoder, num_classes, dropout=0.0, networks=DEFAULT_NETWORKS):
    """BAGAN discriminator (Sec. 3.1): a copy of the pretrained encoder (built with `networks`), with
    Dropout(dropout) after each convolution as in the original code (IBM/BAGAN, balancing_gan.py),
    plus a softmax over K classes + "fake". Returns logits; index K (the last) is the fake class.
    """
    image = keras.Input(shape=encoder.input_shape[1:], name="image")
    features = downsampling_stack(image, encoder.input_shape[1], dropout=dropout, networks=networks)
    latent = latent_head(features, encoder.output_shape[-1], networks)
    logits = layers.Dense(num_classes + 1, dtype="float32", name="class_logits")(latent)
    critic = keras.Model(image, logits, name="critic")
    for layer in critic.layers:
        if layer.weights and layer.name != "class_logits":
            layer.set_weights(encoder.get_layer(layer.name).get_weights())
    return critic


def class_conditional_statistics(latents, labels, num_classes):
    """Per-class mean and covariance of encoded images (BAGAN's labeled latent generation)."""
    latents = np.asarray(latents, np.float64)
    means, covariances = [], []
    for c in range(num_classes):
        members = latents[np.asarray(labels) == c]
        means.append(members.mean(axis=0))
        covariances.append(np.cov(members, rowvar=False, bias=True) if len(members) > 1
                           else np.zeros((latents.shape[1],) * 2))
    return np.stack(means), np.stack(covariances)


def build_class_conditional_latent(means, covariances):
    """BAGAN's labeled latent: (z ~ N(0, I), c) -> mean_c + A_c z with A_c A_c^T = covariance_c.

    A_c is the symmetric square root (eigen-decomposition), defined for the singular covariances
    of classes with fewer images than latent dimensions. Fixed weights, not trained by the GAN.
    """
    num_classes, latent_dim = means.shape
    eigenvalues, eigenvectors = np.linalg.eigh(covariances)
    roots = eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))[:, None, :]
    z = keras.Input(shape=(latent_dim,), name="z")
    label = keras.Input(shape=(), dtype="int32", name="label")
    mean_layer = layers.Embedding(num_classes, latent_dim, trainable=False, dtype="float32", name="class_mean")
    root_layer = layers.Embedding(num_classes, latent_dim * latent_dim, trainable=False, dtype="float32",
                                  name="class_covariance_root")
    root = layers.Reshape((latent_dim, latent_dim), dtype="float32")(root_layer(label))
    spread = layers.Dot(axes=(2, 1), dtype="float32", name="root_times_z")([root, z])
    labeled_latent = layers.Add(dtype="float32", name="labeled_latent")([mean_layer(label), spread])
    model = keras.Model([z, label], labeled_latent, name="class_conditional_latent")
    mean_layer.set_weights([means.astype(np.float32)])
    root_layer.set_weights([roots.reshape(num_classes, -1).astype(np.float32)])
    return model


def encode(encoder, images, batch_size):
    """The encoder's latent vectors of uint8 images, in order, batch by batch (plain calls: no collectives)."""
    return np.concatenate([np.asarray(encoder(to_model_range(images[i:i + batch_size]), training=False))
                           for i in range(0, len(images), batch_size)])


# ---------------------------------------------------------------------------------------------
# Losses


def sigmoid_cross_entropy(logits, target):
    """Mean sigmoid cross-entropy of logits against a constant target (1 = real, 0 = fake)."""
    logits = ops.cast(logits, "float32")
    return ops.mean(ops.binary_crossentropy(ops.full_like(logits, target), logits, from_logits=True))


def wasserstein(logits, target):
    """The Wasserstein terms of Eq. (8, 9): -E[D(x)] for real targets, +E[D(x)] for fake ones."""
    return ops.mean(ops.cast(logits, "float32")) * (1.0 - 2.0 * target)


def softmax_cross_entropy(logits, labels):
    """Mean sparse categorical cross-entropy of class logits against integer labels."""
    return ops.mean(ops.sparse_categorical_crossentropy(labels, ops.cast(logits, "float32"), from_logits=True))


def add_gradients(a, b):
    """a + b for two gradients of one variable; None counts as zero, embedding rows (IndexedSlices) densify."""
    if b is None:
        return a
    if isinstance(a, tf.IndexedSlices) or isinstance(b, tf.IndexedSlices):
        return tf.convert_to_tensor(a) + tf.convert_to_tensor(b)
    return a + b


# ---------------------------------------------------------------------------------------------
# The models


MODELS = {}
"""--model name -> model class: the one registry the command line, config.json and the plots read."""


def registered(model_class):
    """Adds a model class to MODELS under its `model_name`."""
    MODELS[model_class.model_name] = model_class
    return model_class


class AdversarialModel(keras.Model):
    """What every model shares: the networks, the samplers, the gradient penalty and the training step.

    `train_step` = `train_ratio` critic updates (`critic_steps`, one traced loop of `critic_step`:
    `critic_loss`, plus gp_weight * GP for a model with the penalty), then one generator update on
    `generator_loss`; a model supplies those two losses, `sample_fakes` and `build`. The fakes of a
    critic step are drawn before its gradient tape: constants for the critic, so the generator's
    activations are not held for a backward pass that never reaches them.

    Under a tf.distribute strategy `train_step` runs once per replica on its share of the global
    batch: the losses are means over that share, so their gradients are scaled by 1 / replicas
    before the optimizers sum them (`replica_loss_scale`); every random draw is made for the
    global batch and each replica keeps its own rows (`replica_rows`).

    `ema_decay` > 0 keeps an exponential moving average of the generator's variables, updated
    after each generator step (`update_average`); `diffaugment` names the transforms of augment.py
    applied to every batch the critic sees (`augment`).
    """

    model_name = None               # the --model value
    title = None                    # how plots and the console call it
    default_train_ratio = 5         # critic steps per generator step
    autoencoder = None              # "supervised", "unsupervised" or None: what initialises the generator
    uses_gradient_penalty = True    # whether gp_weight * GP is part of the critic loss
    critic_terms = ("d_real", "d_fake")
    options = {}                    # settings of this model alone, and their defaults
    setting_defaults = {}           # its own defaults of the general settings (learning rate, ...)

    def __init__(self, generator, critic, num_classes, latent_dim=128, train_ratio=5, gp_weight=10.0,
                 seed=None, ema_decay=0.0, diffaugment=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.critic = critic
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.train_ratio = train_ratio
        self.gp_weight = gp_weight if self.uses_gradient_penalty else 0.0
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.diffaugment = parse_policy(diffaugment)
        self.ema_decay = float(ema_decay or 0.0)
        self.generator_average = []
        if self.ema_decay:
            # Variables of their own: a replica may update them, each replica holding the same value.
            self.generator_average = [keras.Variable(ops.convert_to_tensor(v), dtype=v.dtype, trainable=False,
                                                     aggregation="only_first_replica", name=f"average_{i}")
                                      for i, v in enumerate(generator.variables)]
            self.averaged_generator = keras.models.clone_model(generator)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_parts}
        self.built = True  # its networks are; fit under a strategy would otherwise call it on images

    # -------------------------------------------------------------------------------- description

    @property
    def loss_parts(self):
        """What each epoch logs (history.csv, losses.png): both losses, GP where the model has
        the penalty, and the critic loss's terms."""
        return ("d_loss", "g_loss") + (("gp",) if self.uses_gradient_penalty else ()) + self.critic_terms

    @classmethod
    def option_values(cls, **given):
        """The model's options, `given` (None: the default) over `options`; ValueError for a bad value."""
        return {name: default if given.get(name) is None else given[name] for name, default in cls.options.items()}

    @classmethod
    def initialised_by(cls, options):
        """The autoencoder trained before this model with these options (None: it starts fresh)."""
        return cls.autoencoder

    @classmethod
    def build(cls, data, pretrained=None, *, latent_dim, batch_size, **settings):
        """The model and its networks for `data` (a datasets.Dataset), started from the
        `pretrained` runs.Autoencoder where the model has one. `settings`: `networks` (the widths,
        autoencoder.NETWORKS), the model's options, and the rest of __init__'s keywords
        (train_ratio, gp_weight, seed, ema_decay, diffaugment)."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------- training

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        """Both optimizers, built now: their slots must exist before a replicated train_step runs."""
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        d_optimizer.build(self.critic.trainable_variables)
        g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def training_state(self):
        """Every variable needed to continue exactly: networks, optimizers' step counters and
        moments, the noise generator. The learning rate is left to config.json, so an edit counts."""
        def optimizer_state(optimizer):
            return [v for v in optimizer.variables if not v.path.endswith("learning_rate")]
        return (self.generator.variables + self.critic.variables + optimizer_state(self.d_optimizer)
                + optimizer_state(self.g_optimizer) + [self.seed_generator.state] + self.generator_average)

    def train_step(self, data):
        real_images, real_labels = data
        real_labels = ops.cast(real_labels, "int32")
        d_loss, parts = self.critic_steps(real_images, real_labels)
        g_loss = self.generator_step(real_labels)
        if self.ema_decay:
            self.update_average()
        for name, value in dict(parts, d_loss=d_loss, g_loss=g_loss).items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def critic_steps(self, real_images, real_labels):
        """`train_ratio` critic steps on the same real batch; the last one's loss and parts.

        One traced loop rather than `train_ratio` unrolled copies of the step: the graph, its
        tracing time and its memory do not grow with the ratio (benchmarks/RESULTS.md). The steps run one
        after the other, each reading the critic the previous one updated. Under a tf.distribute
        strategy the copies stay unrolled: a replica cannot synchronise (the optimizer's sum over
        replicas, batch normalisation's statistics) inside a loop.
        """
        if tf.distribute.has_strategy():
            for _ in range(self.train_ratio):
                d_loss, parts = self.critic_step(real_images, real_labels)
            return d_loss, parts

        def step(i, d_loss, parts):
            d_loss, parts = self.critic_step(real_images, real_labels)
            return i + 1, ops.cast(d_loss, "float32"), {k: ops.cast(v, "float32") for k, v in parts.items()}

        start = {name: ops.zeros((), "float32") for name in self.loss_parts if name not in ("d_loss", "g_loss")}
        _, d_loss, parts = tf.while_loop(lambda i, *_: i < self.train_ratio, step,
                                         (ops.zeros((), "int32"), ops.zeros((), "float32"), start),
                                         parallel_iterations=1, maximum_iterations=self.train_ratio)
        return d_loss, parts

    def critic_step(self, real_images, real_labels):
        """One critic update on critic_loss (+ gp_weight * GP); returns the loss and its parts."""
        fake_images, fake_labels = self.sample_fakes(real_labels)
        with tf.GradientTape() as tape:
            d_loss, parts = self.critic_loss(real_images, real_labels, fake_images, fake_labels)
            scaled = d_loss * self.replica_loss_scale()
        grads = tape.gradient(scaled, self.critic.trainable_weights)
        if self.gp_weight:
            penalty, parts["gp"], penalty_grads = self.penalty_term(grads, real_images, fake_images, real_labels)
            d_loss = d_loss + penalty
            grads = [add_gradients(g, p) for g, p in zip(grads, penalty_grads)]
        self.d_optimizer.apply_gradients(zip(grads, self.critic.trainable_weights))
        return d_loss, parts

    def generator_step(self, real_labels):
        """One generator update on generator_loss; returns the loss."""
        with tf.GradientTape() as tape:
            g_loss = self.generator_loss(real_labels)
            scaled = g_loss * self.replica_loss_scale()
        grads = tape.gradient(scaled, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        return g_loss

    def update_average(self):
        """The generator's exponential moving average, after generator step t (counted by its optimizer):
        average <- d * average + (1 - d) * variable, d = min(ema_decay, (1 + t) / (10 + t)).

        The warm-up (tf.train.ExponentialMovingAverage's, by number of updates) lets the random or
        pretrained start fade within tens of steps. Every variable is averaged the same way, batch
        normalisation's moving mean and variance included, so the averaged generator's statistics
        come from the same window of training as its weights.
        """
        t = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        for average, variable in zip(self.generator_average, self.generator.variables):
            average.assign(decay * average + (1.0 - decay) * variable)

    def sampling_generator(self):
        """The generator that sample grids, the in-training evaluation and generator.keras use: with
        ema_decay the averaged one (its weights refreshed on each call), else the trained one."""
        if not self.ema_decay:
            return self.generator
        self.averaged_generator.set_weights([ops.convert_to_numpy(v) for v in self.generator_average])
        return self.averaged_generator

    def augment(self, images):
        """DiffAugment's transforms (augment.py) on a batch the critic is about to see, each image its
        own draw from the model's seed; the images unchanged without --diffaugment. Real and generated
        batches are augmented in separate calls, so that an image's draw is the same on one device
        as on several (`replica_rows`)."""
        if not self.diffaugment:
            return images

        def uniform(shape):
            return self.replica_rows(lambda rows: keras.random.uniform(rows, seed=self.seed_generator), shape)
        return diff_augment(images, self.diffaugment, uniform)

    # -------------------------------------------------------------------------------- the penalty

    def gradient_penalty(self, real_images, fake_images, labels):
        """GP = E[(||grad_x D(x_hat, y)||_2 - 1)^2], x_hat = a x_r + (1 - a) x_f, a ~ U(0, 1) per sample.

        The norm is taken in float32 with a small epsilon inside the square root. With --diffaugment
        x_hat is augmented like every other image the critic sees, and the gradient is taken there.
        """
        batch_size = ops.shape(real_images)[0]
        alpha = self.replica_rows(lambda shape: keras.random.uniform(shape, seed=self.seed_generator),
                                  (batch_size, 1, 1, 1))
        interpolated = self.augment(alpha * real_images + (1.0 - alpha) * fake_images)
        with tf.GradientTape() as tape:
            tape.watch(interpolated)
            logits = self.critic([interpolated, labels], training=True)
        grads = ops.cast(tape.gradient(logits, interpolated), "float32")
        norm = ops.sqrt(ops.sum(ops.square(grads), axis=(1, 2, 3)) + 1e-12)
        return ops.mean(ops.square(norm - 1.0))

    def penalty_term(self, after, real_images, fake_images, labels):
        """(gp_weight * GP, GP, the critic's gradient of gp_weight * GP), Eq. (14)'s last term.

        Taken once the gradients `after` (the other terms') exist, so the two backward passes never
        hold their activations together (0.5 GB less at 64x64 in float32); the sum of the two
        gradients is the gradient of the whole critic loss.
        """
        with tf.control_dependencies([g for g in after if g is not None]):
            with tf.GradientTape() as tape:
                gp = self.gradient_penalty(real_images, fake_images, labels)
                penalty = self.gp_weight * gp
                scaled = penalty * self.replica_loss_scale()
        return penalty, gp, tape.gradient(scaled, self.critic.trainable_weights)

    # -------------------------------------------------------------------------------- sampling

    @staticmethod
    def replica_loss_scale():
        """1 / replicas in sync: the optimizers sum the replicas' gradients of their local means."""
        return 1.0 / tf.distribute.get_strategy().num_replicas_in_sync

    def replica_rows(self, draw, shape):
        """This replica's rows of `draw(shape)` made for the whole global batch.

        All replicas share the seed generator's state, so each draws the same global sample and
        keeps a different slice: no two replicas get the same noise, and the numbers a batch sees
        do not depend on how many replicas share it (one device draws the same global sample).
        """
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if replicas == 1:
            return draw(shape)
        rows = shape[0]
        start = ops.cast(context.replica_id_in_sync_group, "int32") * rows
        sample = draw((rows * replicas,) + tuple(shape[1:]))
        return ops.slice(sample, [start] + [0] * (len(shape) - 1), (rows,) + tuple(shape[1:]))

    def sample_noise(self, batch_size):
        return self.replica_rows(lambda shape: keras.random.normal(shape, seed=self.seed_generator),
                                 (batch_size, self.latent_dim))

    def sample_integers(self, count, low, high):
        """Integers uniform in [low, high), `count` of them per replica."""
        return self.replica_rows(lambda shape: keras.random.randint(shape, low, high, seed=self.seed_generator,
                                                                    dtype="int32"), (count,))

    def sample_balanced_labels(self, batch_size):
        """y_f ~ U{0, ..., K-1}: every class equally often, whatever the data's imbalance."""
        return self.sample_integers(batch_size, 0, self.num_classes)

    def sample_wrong_labels(self, labels):
        """y_wrong uniform over the K-1 classes that are not the true label."""
        shift = self.sample_integers(ops.shape(labels)[0], 1, self.num_classes)
        return (labels + shift) % self.num_classes

    def generate(self, labels):
        """G(z, labels) with fresh noise, in training mode."""
        return self.generator([self.sample_noise(ops.shape(labels)[0]), labels], training=True)


@registered
class BAGANGP(AdversarialModel):
    """BAGAN-GP (paper 001): Eq. (14) `train_ratio` times, then Eq. (15); v1/v2/v3 by `variant`.

    cDRAGAN, WGAN-GP and CGAN are this model with other class settings (below).
    """

    model_name = "bagan_gp"
    title = "BAGAN-GP"
    autoencoder = "supervised"
    critic_terms = ("d_real", "d_fake", "d_wrong")
    options = {"variant": "v3", "critic_init": "none", "latent": "paper"}
    balanced_labels = True          # y_f uniform over the classes; False: the real batch's labels
    wrong_label_term = True         # Eq. (14)'s CE(D(x_r, y_wrong), fake)
    adversarial_loss = staticmethod(sigmoid_cross_entropy)

    def __init__(self, generator, critic, num_classes, balanced_labels=None, wrong_label_term=None,
                 adversarial_loss=None, **kwargs):
        super().__init__(generator, critic, num_classes, **kwargs)
        for name, value in dict(balanced_labels=balanced_labels, wrong_label_term=wrong_label_term,
                                adversarial_loss=adversarial_loss).items():
            if value is not None:
                setattr(self, name, value)

    @classmethod
    def option_values(cls, **given):
        """v1 and v2 always start from BAGAN's initialisation: latent "class"; the choice is v3's."""
        values = super().option_values(**given)
        if values.get("variant") in ("v1", "v2"):
            values["latent"] = "class"
        return values

    @classmethod
    def initialised_by(cls, options):
        return VARIANTS[options["variant"]]["autoencoder"] if "variant" in options else cls.autoencoder

    @classmethod
    def build(cls, data, pretrained=None, *, latent_dim, batch_size, networks=DEFAULT_NETWORKS, variant=None,
              critic_init="none", latent="paper", **common):
        """The generator and the critic of Fig. 4 and 5; the critic's convolutions from the encoder
        with critic_init "encoder".

        v3 (the supervised autoencoder): generator = its embedding + decoder, fed z ~ N(0, I) with
        latent "paper" (Fig. 4), or with latent "class" z first mapped to its class's Gaussian of the
        encoder's latents of the training images (BAGAN's labeled latent, fixed) in front of the
        trainable embedding. v1 and v2 (the unsupervised autoencoder): BAGAN's initialisation, as
        the paper's Table 4 note and Sec. 5 read ("v1 ... combined with BAGAN framework"; v3
        "replacing BAGAN original encoder by our encoder"): its decoder fed the class latent, no
        embedding. Without an autoencoder (cDRAGAN, WGAN-GP, CGAN): a fresh embedding and decoder.
        """
        shape, num_classes = data.x_train.shape[1:], data.num_classes
        decoder = pretrained.decoder if pretrained else build_decoder(shape, latent_dim, networks)
        embedding = None
        if not pretrained or pretrained.supervised:
            embedding = pretrained.embedding if pretrained else build_embedding(num_classes, latent_dim)
        critic = build_critic(shape, num_classes, encoder=pretrained.encoder if critic_init == "encoder" else None,
                              networks=networks)
        class_latent = None
        if latent == "class":
            class_latent = build_class_conditional_latent(*class_conditional_statistics(
                encode(pretrained.encoder, data.x_train, batch_size), data.y_train, num_classes))
        generator = (build_generator(embedding, decoder, class_latent) if embedding is not None
                     else build_generator(class_latent, decoder))
        labels = VARIANTS[variant] if variant else {}
        return cls(generator, critic, num_classes,
                   balanced_labels=labels.get("balanced_labels"), wrong_label_term=labels.get("wrong_label_term"),
                   latent_dim=latent_dim, **common)

    def fake_labels(self, real_labels):
        """Balanced labels (v2, v3) or the real batch's labels (v1, cDRAGAN, WGAN-GP, CGAN)."""
        if self.balanced_labels:
            return self.sample_balanced_labels(ops.shape(real_labels)[0])
        return real_labels

    def sample_fakes(self, real_labels):
        fake_labels = self.fake_labels(real_labels)
        return self.generate(fake_labels), fake_labels

    def critic_logits(self, real_images, real_labels, fake_images, fake_labels, wrong_labels=None):
        """D(x_r, y_r), D(x_f, y_f) and D(x_r, y_wrong) (None without wrong labels), in one pass.

        The real images' conv features are computed once for both of their terms when the critic
        has the features/head split of `build_critic`; any other critic gets one call on the
        concatenated batch.
        """
        batch_size = ops.shape(real_images)[0]
        images = ops.concatenate([self.augment(real_images), self.augment(fake_images)], 0)
        with_wrong = wrong_labels is not None
        labels = ops.concatenate([real_labels, fake_labels] + ([wrong_labels] if with_wrong else []), 0)
        parts = critic_parts(self.critic)
        if parts is None:
            images = ops.concatenate([images, images[:batch_size]], 0) if with_wrong else images
            logits = self.critic([images, labels], training=True)
        else:
            body, head = parts
            features = body(images, training=True)
            if with_wrong:
                features = ops.concatenate([features, features[:batch_size]], 0)
            logits = head([features, labels], training=True)
        return logits[:batch_size], logits[batch_size:2 * batch_size], logits[2 * batch_size:] if with_wrong else None

    def critic_loss(self, real_images, real_labels, fake_images, fake_labels):
        """Eq. (14) without its penalty (Eq. 12 for v1; the Wasserstein terms of Eq. 8 for WGAN-GP):
        CE(D(x_r, y_r), real) + CE(D(G(z, y_f), y_f), fake) + CE(D(x_r, y_wrong), fake)."""
        wrong_labels = self.sample_wrong_labels(real_labels) if self.wrong_label_term else None
        real, fake, wrong = self.critic_logits(real_images, real_labels, fake_images, fake_labels, wrong_labels)
        d_real = self.adversarial_loss(real, 1.0)
        d_fake = self.adversarial_loss(fake, 0.0)
        d_wrong = self.adversarial_loss(wrong, 0.0) if self.wrong_label_term else ops.zeros(())
        return d_real + d_fake + d_wrong, dict(d_real=d_real, d_fake=d_fake, d_wrong=d_wrong)

    def generator_loss(self, real_labels):
        """Eq. (15): the critic should call G(z, y_f) real for the label it was asked for."""
        fake_labels = self.fake_labels(real_labels)
        logits = self.critic([self.augment(self.generate(fake_labels)), fake_labels], training=True)
        return self.adversarial_loss(logits, 1.0)


@registered
class BAGAN(AdversarialModel):
    """The original BAGAN (paper 002; Sec. 3.1 of 001).

    The generator is the unsupervised autoencoder's decoder fed the class-conditional latent
    (`build_class_conditional_latent`); the discriminator is the encoder with a K+1-way softmax,
    trained with sparse categorical cross-entropy: real images as their class, fakes as class K.
    Each discriminator batch adds ceil(B / K) fakes with balanced labels to the B real images,
    so "fake" is as frequent as one class; the generator wants its fakes classified as the class
    it was asked for. One discriminator step per generator step.
    """

    model_name = "bagan"
    title = "BAGAN"
    default_train_ratio = 1
    autoencoder = "unsupervised"
    uses_gradient_penalty = False
    options = {"dropout": 0.3}
    setting_defaults = dict(learning_rate=5e-5, beta_2=0.999, ae_loss="mse")  # the original code's

    @classmethod
    def build(cls, data, pretrained=None, *, latent_dim, batch_size, networks=DEFAULT_NETWORKS, dropout=0.3, **common):
        """Class statistics of the encoded training images -> labeled latent -> the pretrained decoder."""
        means, covariances = class_conditional_statistics(
            encode(pretrained.encoder, data.x_train, batch_size), data.y_train, data.num_classes)
        generator = build_generator(build_class_conditional_latent(means, covariances), pretrained.decoder)
        critic = build_bagan_discriminator(pretrained.encoder, data.num_classes, dropout, networks)
        return cls(generator, critic, data.num_classes, latent_dim=latent_dim, **common)

    @property
    def fake_class(self):
        return self.num_classes

    def sample_fakes(self, real_labels):
        count = (ops.shape(real_labels)[0] + self.num_classes - 1) // self.num_classes
        fake_labels = self.sample_balanced_labels(count)
        return self.generate(fake_labels), fake_labels

    def critic_loss(self, real_images, real_labels, fake_images, fake_labels):
        batch_size = ops.shape(real_images)[0]
        images = ops.concatenate([self.augment(real_images), self.augment(fake_images)], 0)
        logits = ops.cast(self.critic(images, training=True), "float32")
        targets = ops.concatenate([real_labels, ops.full_like(fake_labels, self.fake_class)], 0)
        ce = ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return ops.mean(ce), {"d_real": ops.mean(ce[:batch_size]), "d_fake": ops.mean(ce[batch_size:])}

    def generator_loss(self, real_labels):
        fake_labels = self.sample_balanced_labels(ops.shape(real_labels)[0])
        return softmax_cross_entropy(self.critic(self.augment(self.generate(fake_labels)), training=True), fake_labels)


@registered
class CDRAGAN(BAGANGP):
    """cDRAGAN (Eq. 12, 13): BAGAN-GP v1's losses without the autoencoder (real labels for the
    fakes, no wrong-label term, networks from scratch)."""

    model_name = "cdragan"
    title = "cDRAGAN"
    autoencoder = None
    options = {}
    balanced_labels = False
    wrong_label_term = False


@registered
class WGANGP(CDRAGAN):
    """Conditional WGAN-GP (paper 004; Eq. 8, 9): cDRAGAN with the Wasserstein terms
    -E[D(x_r, y_r)] + E[D(G(z, y_r), y_r)] for the critic and -E[D(G(z, y_r), y_r)] for the generator."""

    model_name = "wgan_gp"
    title = "conditional WGAN-GP"
    adversarial_loss = staticmethod(wasserstein)


@registered
class CGAN(CDRAGAN):
    """Conditional GAN (paper 003): cDRAGAN without the gradient penalty, one critic step per generator step."""

    model_name = "cgan"
    title = "CGAN"
    default_train_ratio = 1
    uses_gradient_penalty = False


@registered
class ACGAN(AdversarialModel):
    """AC-GAN (paper 003, Eq. 2, 3): the discriminator maximises L_S + L_C, the generator L_C - L_S
    (in the usual non-saturating form: it minimises CE(source, real) + CE(class, c)).

    `real_fraction` is the share of real images in each discriminator batch (paper 003: 0.5 for
    AC-GAN, 0.25 for its v1, 0.75 for v2); all B real images of a batch are used and
    B (1 - r) / r fakes are added. `alternate` (v3) drops it to 0.5 every third epoch.
    Fake labels are drawn from the real batch's labels, i.e. the data's class distribution.
    """

    model_name = "acgan"
    title = "AC-GAN"
    default_train_ratio = 1
    uses_gradient_penalty = False
    critic_terms = ("d_real", "d_fake", "d_class")
    options = {"real_fraction": None, "alternate": False}

    def __init__(self, generator, critic, num_classes, real_fraction=0.5, alternate=False, **kwargs):
        super().__init__(generator, critic, num_classes, **kwargs)
        if not 0.0 < real_fraction < 1.0:
            raise ValueError(f"real_fraction must be between 0 and 1, got {real_fraction}")
        self.base_real_fraction = real_fraction
        self.alternate = alternate
        self.real_fraction = keras.Variable(real_fraction, trainable=False, dtype="float32",
                                            name="real_fraction")

    @classmethod
    def option_values(cls, **given):
        """real_fraction defaults to 0.75 with alternate (v3's share), else 0.5."""
        alternate = bool(given.get("alternate"))
        real_fraction = given.get("real_fraction")
        if real_fraction is None:
            real_fraction = 0.75 if alternate else 0.5
        if not 0.0 < real_fraction < 1.0:
            raise ValueError(f"real fraction must be between 0 and 1, got {real_fraction}")
        return {"real_fraction": real_fraction, "alternate": alternate}

    @classmethod
    def build(cls, data, pretrained=None, *, latent_dim, batch_size, networks=DEFAULT_NETWORKS, real_fraction=0.5,
              alternate=False, **common):
        """Generator = a fresh embedding + decoder; the two-headed discriminator of Fig. 3."""
        shape, num_classes = data.x_train.shape[1:], data.num_classes
        decoder = build_decoder(shape, latent_dim, networks)
        generator = build_generator(build_embedding(num_classes, latent_dim), decoder)
        return cls(generator, build_acgan_discriminator(shape, num_classes, networks), num_classes,
                   real_fraction=real_fraction, alternate=alternate, latent_dim=latent_dim, **common)

    def begin_epoch(self, epoch):
        """v3's schedule: every third epoch (3, 6, ...) half the batch is real."""
        every_third = self.alternate and (epoch + 1) % 3 == 0
        self.real_fraction.assign(0.5 if every_third else self.base_real_fraction)

    def labels_like_data(self, real_labels, count):
        return ops.take(real_labels, self.sample_integers(count, 0, ops.shape(real_labels)[0]))

    def sample_fakes(self, real_labels):
        batch_size = ops.cast(ops.shape(real_labels)[0], "float32")
        count = ops.cast(ops.round(batch_size * (1.0 - self.real_fraction) / self.real_fraction), "int32")
        fake_labels = self.labels_like_data(real_labels, count)
        return self.generate(fake_labels), fake_labels

    def critic_loss(self, real_images, real_labels, fake_images, fake_labels):
        """L_S + L_C over one batch of real and fake images, each image weighing the same."""
        batch_size = ops.shape(real_images)[0]
        images = ops.concatenate([self.augment(real_images), self.augment(fake_images)], 0)
        source, classes = self.critic(images, training=True)
        source = ops.cast(source[:, 0], "float32")
        is_real = ops.concatenate([ops.ones_like(real_labels), ops.zeros_like(fake_labels)], 0)
        source_ce = ops.binary_crossentropy(ops.cast(is_real, "float32"), source, from_logits=True)
        class_ce = softmax_cross_entropy(classes, ops.concatenate([real_labels, fake_labels], 0))
        parts = {"d_real": ops.mean(source_ce[:batch_size]), "d_fake": ops.mean(source_ce[batch_size:]),
                 "d_class": class_ce}
        return ops.mean(source_ce) + class_ce, parts

    def generator_loss(self, real_labels):
        fake_labels = self.labels_like_data(real_labels, ops.shape(real_labels)[0])
        source, classes = self.critic(self.augment(self.generate(fake_labels)), training=True)
        return sigmoid_cross_entropy(source, 1.0) + softmax_cross_entropy(classes, fake_labels)
