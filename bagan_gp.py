"""BAGAN-GP: the generator, the critic and the adversarial training step (paper Sec. 3.2).

Critic loss, Eq. (14), with sigmoid cross-entropy on the critic's logit D(x, y):
    L_D = CE(D(x_r, y_r), real) + CE(D(G(z, y_f), y_f), fake) + CE(D(x_r, y_wrong), fake)
          + gp_weight * E[(||grad_x D(x_hat, y_r)||_2 - 1)^2],   x_hat = a x_r + (1 - a) G(z, y_f)
Generator loss, Eq. (15):
    L_G = CE(D(G(z, y_f), y_f), real)
with z ~ N(0, I), y_f uniform over the classes ("balanced labels"), y_wrong uniform over the
classes other than y_r, a ~ U(0, 1) per sample.

Variants (Table 4 note): v1 uses the real batch's labels for the fakes and no wrong-label term
(Eq. 12, 13); v2 uses balanced labels and the wrong-label term (Eq. 14, 15); v3 is v2 initialised
from the supervised autoencoder (the default). Which autoencoder initialises the generator is the
training script's business; this module only needs `balanced_labels` and `wrong_label_term`.
"""
import keras
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

    With `encoder`, the convolutions start from the pretrained encoder's weights (same layer names).
    """
    image = keras.Input(shape=image_shape, name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    features = downsampling_stack(image, image_shape[0])
    label_vector = layers.Embedding(num_classes, 128, name="label_embedding")(label)
    label_vector = layers.Dense(features.shape[-1], name="label_dense")(label_vector)
    label_vector = layers.LeakyReLU(0.2)(label_vector)
    joint = layers.Multiply(name="features_times_label")([features, label_vector])
    logit = layers.Dense(1, dtype="float32", name="logit")(joint)
    critic = keras.Model([image, label], logit, name="critic")
    if encoder is not None:
        for layer in critic.layers:
            if layer.name.startswith("down_") and not layer.name.endswith("_act"):
                layer.set_weights(encoder.get_layer(layer.name).get_weights())
    return critic


def sigmoid_cross_entropy(logits, target):
    """Mean sigmoid cross-entropy of logits against a constant target (1 = real, 0 = fake)."""
    logits = ops.cast(logits, "float32")
    return ops.mean(ops.binary_crossentropy(ops.full_like(logits, target), logits, from_logits=True))


class BAGANGP(keras.Model):
    """BAGAN-GP adversarial training; `train_step` is Eq. (14) `train_ratio` times, then Eq. (15)."""

    def __init__(self, generator, critic, num_classes, latent_dim=128, train_ratio=5,
                 gp_weight=10.0, balanced_labels=True, wrong_label_term=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.critic = critic
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.train_ratio = train_ratio
        self.gp_weight = gp_weight
        self.balanced_labels = balanced_labels
        self.wrong_label_term = wrong_label_term
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("d_loss", "g_loss", "gp", "d_real", "d_fake", "d_wrong")}

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def sample_noise(self, batch_size):
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def sample_balanced_labels(self, batch_size):
        """y_f ~ U{0, ..., K-1}: every class equally often, whatever the data's imbalance."""
        return keras.random.randint((batch_size,), 0, self.num_classes, seed=self.seed_generator,
                                    dtype="int32")

    def sample_wrong_labels(self, labels):
        """y_wrong uniform over the K-1 classes that are not the true label."""
        shift = keras.random.randint(ops.shape(labels), 1, self.num_classes,
                                     seed=self.seed_generator, dtype="int32")
        return (labels + shift) % self.num_classes

    def fake_labels(self, real_labels):
        """Balanced labels (v2, v3) or the real batch's labels (v1)."""
        if self.balanced_labels:
            return self.sample_balanced_labels(ops.shape(real_labels)[0])
        return real_labels

    def gradient_penalty(self, real_images, fake_images, labels):
        """E[(||grad_x D(x_hat, y)||_2 - 1)^2], x_hat = a x_r + (1 - a) x_f, a ~ U(0, 1) per sample.

        The norm is taken in float32 with a small epsilon inside the square root.
        """
        batch_size = ops.shape(real_images)[0]
        alpha = keras.random.uniform((batch_size, 1, 1, 1), seed=self.seed_generator)
        interpolated = alpha * real_images + (1.0 - alpha) * fake_images
        with tf.GradientTape() as tape:
            tape.watch(interpolated)
            logits = self.critic([interpolated, labels], training=True)
        grads = ops.cast(tape.gradient(logits, interpolated), "float32")
        norm = ops.sqrt(ops.sum(ops.square(grads), axis=(1, 2, 3)) + 1e-12)
        return ops.mean(ops.square(norm - 1.0))

    def critic_loss(self, real_images, real_labels):
        """Eq. (14) for one batch; returns the total and its parts."""
        batch_size = ops.shape(real_images)[0]
        fake_labels = self.fake_labels(real_labels)
        fake_images = self.generator([self.sample_noise(batch_size), fake_labels], training=True)
        images, labels = [real_images, fake_images], [real_labels, fake_labels]
        if self.wrong_label_term:
            images.append(real_images)
            labels.append(self.sample_wrong_labels(real_labels))
        logits = self.critic([ops.concatenate(images, 0), ops.concatenate(labels, 0)], training=True)
        parts = {
            "d_real": sigmoid_cross_entropy(logits[:batch_size], 1.0),
            "d_fake": sigmoid_cross_entropy(logits[batch_size:2 * batch_size], 0.0),
            "d_wrong": (sigmoid_cross_entropy(logits[2 * batch_size:], 0.0)
                        if self.wrong_label_term else ops.zeros(())),
            "gp": self.gradient_penalty(real_images, fake_images, real_labels),
        }
        total = parts["d_real"] + parts["d_fake"] + parts["d_wrong"] + self.gp_weight * parts["gp"]
        return total, parts

    def generator_loss(self, real_labels):
        """Eq. (15): the critic should call G(z, y_f) real for the label it was asked for."""
        batch_size = ops.shape(real_labels)[0]
        fake_labels = self.fake_labels(real_labels)
        fake_images = self.generator([self.sample_noise(batch_size), fake_labels], training=True)
        return sigmoid_cross_entropy(self.critic([fake_images, fake_labels], training=True), 1.0)

    def train_step(self, data):
        real_images, real_labels = data
        real_labels = ops.cast(real_labels, "int32")
        for _ in range(self.train_ratio):
            with tf.GradientTape() as tape:
                d_loss, parts = self.critic_loss(real_images, real_labels)
            grads = tape.gradient(d_loss, self.critic.trainable_weights)
            self.d_optimizer.apply_gradients(zip(grads, self.critic.trainable_weights))
        with tf.GradientTape() as tape:
            g_loss = self.generator_loss(real_labels)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        for name, value in dict(parts, d_loss=d_loss, g_loss=g_loss).items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}
