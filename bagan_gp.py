"""BAGAN-GP and the models the papers compare it with, on shared networks and one training loop.

BAGAN-GP (paper 001, Sec. 3.2). Critic loss, Eq. (14), with sigmoid cross-entropy on D(x, y):
    L_D = CE(D(x_r, y_r), real) + CE(D(G(z, y_f), y_f), fake) + CE(D(x_r, y_wrong), fake)
          + gp_weight * E[(||grad_x D(x_hat, y_r)||_2 - 1)^2],   x_hat = a x_r + (1 - a) G(z, y_f)
Generator loss, Eq. (15):
    L_G = CE(D(G(z, y_f), y_f), real)
with z ~ N(0, I), y_f uniform over the classes ("balanced labels"), y_wrong uniform over the
classes other than y_r, a ~ U(0, 1) per sample.

Variants (Table 4 note): v1 uses the real batch's labels for the fakes and no wrong-label term
(Eq. 12, 13); v2 uses balanced labels and the wrong-label term (Eq. 14, 15); v3 is v2 initialised
from the supervised autoencoder (the default).

The baselines differ from BAGAN-GP by a loss, a label sampler or an initialisation (the table of
them is bagan_train.MODELS):
cDRAGAN is v1 without the autoencoder (Eq. 12, 13); conditional WGAN-GP swaps the cross-entropy for
the Wasserstein terms (Eq. 8, 9; paper 004); CGAN is cDRAGAN without the penalty, one critic step
per generator step (paper 003); AC-GAN (paper 003) has a discriminator with a real/fake and a class
output and its real-image proportion variants; BAGAN (paper 002, Sec. 3.1 of 001) draws the
generator's latent from each class's Gaussian of encoded images and trains a K+1-way softmax.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from autoencoder import downsampling_stack

VARIANTS = {
    "v1": dict(balanced_labels=False, wrong_label_term=False, supervised_autoencoder=False),
    "v2": dict(balanced_labels=True, wrong_label_term=True, supervised_autoencoder=False),
    "v3": dict(balanced_labels=True, wrong_label_term=True, supervised_autoencoder=True),
}

def build_generator(embedding, decoder):
    """Generator (Fig. 4): (z, label) -> decoder(embedding(z, label)), trainable end to end."""
    latent_dim = embedding.input_shape[0][-1]
    z = keras.Input(shape=(latent_dim,), name="z")
    label = keras.Input(shape=(), dtype="int32", name="label")
    return keras.Model([z, label], decoder(embedding([z, label])), name="generator")


def build_critic(image_shape, num_classes, encoder=None):
    """Critic (Fig. 5): conv features * dense label embedding -> one unconstrained logit.

    Two parts, `critic_features` (image -> conv features) and `critic_head` (features, label ->
    logit): the label enters only the head, so Eq. (14) computes the features of the real images
    once for both of their terms. With `encoder`, the convolutions start from the pretrained
    encoder's weights (same layer names).
    """
    image = keras.Input(shape=image_shape, name="image")
    body = keras.Model(image, downsampling_stack(image, image_shape[0]), name="critic_features")
    features = keras.Input(shape=body.output_shape[1:], name="features")
    label = keras.Input(shape=(), dtype="int32", name="label")
    label_vector = layers.Embedding(num_classes, 128, name="label_embedding")(label)
    label_vector = layers.Dense(features.shape[-1], name="label_dense")(label_vector)
    label_vector = layers.LeakyReLU(0.2)(label_vector)
    joint = layers.Multiply(name="features_times_label")([features, label_vector])
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


def build_acgan_discriminator(image_shape, num_classes):
    """AC-GAN discriminator (paper 003, Fig. 3): image -> (real/fake logit, class logits)."""
    image = keras.Input(shape=image_shape, name="image")
    features = downsampling_stack(image, image_shape[0])
    source = layers.Dense(1, dtype="float32", name="source_logit")(features)
    classes = layers.Dense(num_classes, dtype="float32", name="class_logits")(features)
    return keras.Model(image, [source, classes], name="critic")


def build_bagan_discriminator(encoder, num_classes):
    """BAGAN discriminator (Sec. 3.1): the pretrained encoder plus a softmax over K classes + "fake".

    Returns logits; index K (the last) is the fake class.
    """
    body = keras.models.clone_model(encoder)
    body.set_weights(encoder.get_weights())
    image = keras.Input(shape=encoder.input_shape[1:], name="image")
    logits = layers.Dense(num_classes + 1, dtype="float32", name="class_logits")(body(image))
    return keras.Model(image, logits, name="critic")


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


class AdversarialModel(keras.Model):
    """What every model shares: the networks, the samplers, the penalty and the training step.

    `train_step` = `train_ratio` critic updates on `critic_loss`, then one generator update on
    `generator_loss`; a model supplies those two and `sample_fakes`. The fakes of a critic step are
    drawn before its gradient tape: constants for the critic, so the generator's activations are
    not held for a backward pass that never reaches them.

    Under a tf.distribute strategy `train_step` runs once per replica on its share of the global
    batch: the losses are means over that share, so their gradients are scaled by 1 / replicas
    before the optimizers sum them (`replica_loss_scale`); every random draw is made for the
    global batch and each replica keeps its own rows (`replica_rows`).
    """

    loss_parts = ("d_loss", "g_loss", "d_real", "d_fake")

    def __init__(self, generator, critic, num_classes, latent_dim=128, train_ratio=5, gp_weight=10.0,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.critic = critic
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.train_ratio = train_ratio
        self.gp_weight = gp_weight
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_parts}
        self.built = True  # its networks are; fit under a strategy would otherwise call it on images

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

    def gradient_penalty(self, real_images, fake_images, labels):
        """E[(||grad_x D(x_hat, y)||_2 - 1)^2], x_hat = a x_r + (1 - a) x_f, a ~ U(0, 1) per sample.

        The norm is taken in float32 with a small epsilon inside the square root.
        """
        batch_size = ops.shape(real_images)[0]
        alpha = self.replica_rows(lambda shape: keras.random.uniform(shape, seed=self.seed_generator),
                                  (batch_size, 1, 1, 1))
        interpolated = alpha * real_images + (1.0 - alpha) * fake_images
        with tf.GradientTape() as tape:
            tape.watch(interpolated)
            logits = self.critic([interpolated, labels], training=True)
        grads = ops.cast(tape.gradient(logits, interpolated), "float32")
        norm = ops.sqrt(ops.sum(ops.square(grads), axis=(1, 2, 3)) + 1e-12)
        return ops.mean(ops.square(norm - 1.0))

    def penalty_gradients(self, after, real_images, fake_images, labels, scale):
        """The critic's gradient of gp_weight * GP, and GP; computed once the gradients `after`
        (the loss terms') exist, so the two backward passes never hold their activations together
        (0.5 GB less at 64x64 in float32); their sum is the gradient of the whole critic loss."""
        with tf.control_dependencies([g for g in after if g is not None]):
            with tf.GradientTape() as tape:
                gp = self.gradient_penalty(real_images, fake_images, labels)
                scaled = self.gp_weight * gp * scale
        return tape.gradient(scaled, self.critic.trainable_weights), gp

    def train_step(self, data):
        real_images, real_labels = data
        real_labels = ops.cast(real_labels, "int32")
        scale = self.replica_loss_scale()
        for _ in range(self.train_ratio):
            fake_images, fake_labels = self.sample_fakes(real_labels)
            with tf.GradientTape() as tape:
                d_loss, parts = self.critic_loss(real_images, real_labels, fake_images, fake_labels)
                scaled = d_loss * scale
            grads = tape.gradient(scaled, self.critic.trainable_weights)
            if self.gp_weight:
                penalty_grads, parts["gp"] = self.penalty_gradients(grads, real_images, fake_images,
                                                                    real_labels, scale)
                grads = [add_gradients(g, p) for g, p in zip(grads, penalty_grads)]
                d_loss = d_loss + self.gp_weight * parts["gp"]
            self.d_optimizer.apply_gradients(zip(grads, self.critic.trainable_weights))
        with tf.GradientTape() as tape:
            g_loss = self.generator_loss(real_labels)
            scaled = g_loss * scale
        grads = tape.gradient(scaled, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        for name, value in dict(parts, d_loss=d_loss, g_loss=g_loss).items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


class BAGANGP(AdversarialModel):
    """BAGAN-GP: Eq. (14) `train_ratio` times, then Eq. (15); also cDRAGAN, WGAN-GP and CGAN.

    `adversarial_loss`: `sigmoid_cross_entropy` (Eq. 12-15) or `wasserstein` (Eq. 8, 9).
    """

    loss_parts = ("d_loss", "g_loss", "gp", "d_real", "d_fake", "d_wrong")

    def __init__(self, generator, critic, num_classes, balanced_labels=True, wrong_label_term=True,
                 adversarial_loss=sigmoid_cross_entropy, **kwargs):
        super().__init__(generator, critic, num_classes, **kwargs)
        self.balanced_labels = balanced_labels
        self.wrong_label_term = wrong_label_term
        self.adversarial_loss = adversarial_loss

    def fake_labels(self, real_labels):
        """Balanced labels (v2, v3) or the real batch's labels (v1, cDRAGAN, WGAN-GP, CGAN)."""
        if self.balanced_labels:
            return self.sample_balanced_labels(ops.shape(real_labels)[0])
        return real_labels

    def sample_fakes(self, real_labels):
        fake_labels = self.fake_labels(real_labels)
        return self.generate(fake_labels), fake_labels

    def critic_logits(self, real_images, fake_images, labels):
        """D on the rows [x_r, x_f] (and x_r again for the wrong labels) with `labels`, in one pass.

        The real images' conv features are computed once for both of their terms when the critic
        has the features/head split of `build_critic`; otherwise one call on the concatenated batch.
        """
        images = ops.concatenate([real_images, fake_images], 0)
        parts = critic_parts(self.critic)
        if parts is None:
            if self.wrong_label_term:
                images = ops.concatenate([images, real_images], 0)
            return self.critic([images, labels], training=True)
        body, head = parts
        features = body(images, training=True)
        if self.wrong_label_term:
            features = ops.concatenate([features, features[:ops.shape(real_images)[0]]], 0)
        return head([features, labels], training=True)

    def critic_loss(self, real_images, real_labels, fake_images, fake_labels):
        """Eq. (14)'s cross-entropy (or Wasserstein) terms for one batch, in one critic pass; their
        sum and the parts. `train_step` adds the gradient penalty, gp_weight * GP, after them."""
        batch_size = ops.shape(real_images)[0]
        labels = [real_labels, fake_labels]
        if self.wrong_label_term:
            labels.append(self.sample_wrong_labels(real_labels))
        logits = self.critic_logits(real_images, fake_images, ops.concatenate(labels, 0))
        parts = {
            "d_real": self.adversarial_loss(logits[:batch_size], 1.0),
            "d_fake": self.adversarial_loss(logits[batch_size:2 * batch_size], 0.0),
            "d_wrong": (self.adversarial_loss(logits[2 * batch_size:], 0.0)
                        if self.wrong_label_term else ops.zeros(())),
            "gp": ops.zeros(()),
        }
        return parts["d_real"] + parts["d_fake"] + parts["d_wrong"], parts

    def generator_loss(self, real_labels):
        """Eq. (15): the critic should call G(z, y_f) real for the label it was asked for."""
        fake_labels = self.fake_labels(real_labels)
        logits = self.critic([self.generate(fake_labels), fake_labels], training=True)
        return self.adversarial_loss(logits, 1.0)


class ACGAN(AdversarialModel):
    """AC-GAN (paper 003, Eq. 2, 3): the discriminator maximises L_S + L_C, the generator L_C - L_S
    (in the usual non-saturating form: it minimises CE(source, real) + CE(class, c)).

    `real_fraction` is the share of real images in each discriminator batch (paper 003: 0.5 for
    AC-GAN, 0.25 for its v1, 0.75 for v2); all B real images of a batch are used and
    B (1 - r) / r fakes are added. `alternate` (v3) drops it to 0.5 every third epoch.
    Fake labels are drawn from the real batch's labels, i.e. the data's class distribution.
    """

    loss_parts = ("d_loss", "g_loss", "d_real", "d_fake", "d_class")

    def __init__(self, generator, critic, num_classes, real_fraction=0.5, alternate=False, **kwargs):
        super().__init__(generator, critic, num_classes, **dict(kwargs, gp_weight=0.0))  # no penalty
        if not 0.0 < real_fraction < 1.0:
            raise ValueError(f"real_fraction must be between 0 and 1, got {real_fraction}")
        self.base_real_fraction = real_fraction
        self.alternate = alternate
        self.real_fraction = keras.Variable(real_fraction, trainable=False, dtype="float32",
                                            name="real_fraction")

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
        source, classes = self.critic(ops.concatenate([real_images, fake_images], 0), training=True)
        source = ops.cast(source[:, 0], "float32")
        is_real = ops.concatenate([ops.ones_like(real_labels), ops.zeros_like(fake_labels)], 0)
        source_ce = ops.binary_crossentropy(ops.cast(is_real, "float32"), source, from_logits=True)
        class_ce = softmax_cross_entropy(classes, ops.concatenate([real_labels, fake_labels], 0))
        parts = {"d_real": ops.mean(source_ce[:batch_size]), "d_fake": ops.mean(source_ce[batch_size:]),
                 "d_class": class_ce}
        return ops.mean(source_ce) + class_ce, parts

    def generator_loss(self, real_labels):
        fake_labels = self.labels_like_data(real_labels, ops.shape(real_labels)[0])
        source, classes = self.critic(self.generate(fake_labels), training=True)
        return sigmoid_cross_entropy(source, 1.0) + softmax_cross_entropy(classes, fake_labels)


class BAGAN(AdversarialModel):
    """The original BAGAN (paper 002; Sec. 3.1 of 001).

    The generator is the unsupervised autoencoder's decoder fed the class-conditional latent
    (`build_class_conditional_latent`); the discriminator is the encoder with a K+1-way softmax,
    trained with sparse categorical cross-entropy: real images as their class, fakes as class K.
    Each discriminator batch adds ceil(B / K) fakes with balanced labels to the B real images,
    so "fake" is as frequent as one class; the generator wants its fakes classified as the class
    it was asked for. One discriminator step per generator step.
    """

    def __init__(self, generator, critic, num_classes, **kwargs):
        super().__init__(generator, critic, num_classes, **dict(kwargs, gp_weight=0.0))  # no penalty

    @property
    def fake_class(self):
        return self.num_classes

    def sample_fakes(self, real_labels):
        count = (ops.shape(real_labels)[0] + self.num_classes - 1) // self.num_classes
        fake_labels = self.sample_balanced_labels(count)
        return self.generate(fake_labels), fake_labels

    def critic_loss(self, real_images, real_labels, fake_images, fake_labels):
        batch_size = ops.shape(real_images)[0]
        logits = ops.cast(self.critic(ops.concatenate([real_images, fake_images], 0), training=True), "float32")
        targets = ops.concatenate([real_labels, ops.full_like(fake_labels, self.fake_class)], 0)
        ce = ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return ops.mean(ce), {"d_real": ops.mean(ce[:batch_size]), "d_fake": ops.mean(ce[batch_size:])}

    def generator_loss(self, real_labels):
        fake_labels = self.sample_balanced_labels(ops.shape(real_labels)[0])
        return softmax_cross_entropy(self.critic(self.generate(fake_labels), training=True), fake_labels)
