"""The autoencoders that initialise the GANs (BAGAN-GP paper, Sec. 3.2.2, Fig. 3).

Supervised autoencoder (BAGAN-GP, "v3"):
    latent         = encoder(image)
    labeled_latent = embedding(latent, label) = latent * Embedding(label)
    reconstruction = decoder(labeled_latent)
trained with the mean absolute error between image and reconstruction.

Unsupervised autoencoder (original BAGAN, and BAGAN-GP "v1"/"v2"): decoder(encoder(image)).

Architecture (Sec. 4): the encoder is a stack of stride-2 4x4 convolutions with LeakyReLU(0.2) and
a Dense to the latent; the decoder is a Dense to 4x4x256, then stride-2 transposed convolutions with
batch normalisation and LeakyReLU(0.2) up to the image size, tanh output in [-1, 1]. The number of
stages follows the image size: 32 -> 3, 64 -> 4, 128 -> 5 (from/to 4x4).

Two sets of widths and details (`--networks`, NETWORKS below): "project", this project's first, and
"original" (the default since 2026-12-01), those of the original BAGAN-GP code
(GH920/improved-bagan-gp, improved_bagan_gp.py, at 64x64): encoder 64-128-128-256 with a LeakyReLU
after its Dense, decoder 128-128-64 without batch normalisation after its Dense, convolutions
initialised from N(0, 0.02), and the critic's label head of bagan_gp.build_critic. Both keep this
file's batch-norm momentum (below). At 32x32 a stack uses its first stages, at 128x128 it repeats
its last width.
"""
import math

import keras
from keras import layers

from datasets import MODEL_IMAGE_SIZES as SUPPORTED_IMAGE_SIZES
LEAKY_SLOPE = 0.2
# Keras' default momentum (0.99) leaves the moving statistics far behind after the few hundred steps
# of an autoencoder run on a small set: inference-mode error on the *training* images was 7x the
# training error (0.54 vs 0.077 MAE on digits after 10 epochs). 0.9 tracks them (0.077 vs 0.077).
BATCH_NORM_MOMENTUM = 0.9

NETWORKS = {
    "project": dict(encoder_filters=(64, 128, 256, 512, 512), decoder_filters=(128, 64, 32, 32),
                    latent_activation=False, project_batch_norm=True, conv_stddev=None,
                    label_units=128, head_units=None),
    "original": dict(encoder_filters=(64, 128, 128, 256, 256), decoder_filters=(128, 128, 64, 64),
                     latent_activation=True, project_batch_norm=False, conv_stddev=0.02,
                     label_units=512, head_units=512),
}
"""--networks -> what the encoder, decoder and critics are built with (the one place that says it)."""
DEFAULT_NETWORKS = "original"
"""The better of the two on the quality judge and the faster (benchmarks/RESULTS.md): runs
since 2026-12-01; older runs' config.json say "project" or, before the setting, nothing (project)."""


def num_stages(image_size):
    """Stride-2 stages between a 4x4 feature map and an image of `image_size` (a power of two)."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(f"image size {image_size} is not supported; use one of {SUPPORTED_IMAGE_SIZES}")
    return int(math.log2(image_size)) - 2


def encoder_filters(image_size, networks=DEFAULT_NETWORKS):
    """Filters of the downsampling convolutions (project: 64, 128, 256, 512, 512; original: 64,
    128, 128, 256, 256), one per stage."""
    return list(NETWORKS[networks]["encoder_filters"][:num_stages(image_size)])


def decoder_filters(image_size, networks=DEFAULT_NETWORKS):
    """Filters after each upsampling stage but the last (which outputs the image channels)."""
    return list(NETWORKS[networks]["decoder_filters"][:num_stages(image_size) - 1])


def conv_initializer(networks=DEFAULT_NETWORKS):
    """A fresh kernel initializer for a convolution: Keras' default, or the original code's N(0, 0.02)."""
    stddev = NETWORKS[networks]["conv_stddev"]
    return keras.initializers.RandomNormal(stddev=stddev) if stddev else "glorot_uniform"


def downsampling_stack(image, image_size, name_prefix="down", dropout=0.0, networks=DEFAULT_NETWORKS):
    """Stride-2 4x4 convolutions with LeakyReLU(0.2), shared by the encoder and the critics; with
    `dropout`, a Dropout after each (the original BAGAN's discriminator).

    Convolutions are named `down_1 ... down_n` so a critic can be initialised from an encoder by name.
    """
    x = image
    for i, filters in enumerate(encoder_filters(image_size, networks), start=1):
        x = layers.Conv2D(filters, 4, strides=2, padding="same", kernel_initializer=conv_initializer(networks),
                          name=f"{name_prefix}_{i}")(x)
        x = layers.LeakyReLU(LEAKY_SLOPE, name=f"{name_prefix}_{i}_act")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name_prefix}_{i}_dropout")(x)
    return layers.Flatten(name="features")(x)


def latent_head(features, latent_dim, networks=DEFAULT_NETWORKS):
    """features -> the latent: a Dense (and the original code's LeakyReLU after it), float32."""
    latent = layers.Dense(latent_dim, name="latent", dtype="float32")(features)
    if NETWORKS[networks]["latent_activation"]:
        latent = layers.LeakyReLU(LEAKY_SLOPE, dtype="float32", name="latent_act")(latent)
    return latent


def build_encoder(image_shape, latent_dim=128, networks=DEFAULT_NETWORKS):
    """Encoder: image in [-1, 1] -> latent vector (Sec. 4)."""
    image = keras.Input(shape=image_shape, name="image")
    features = downsampling_stack(image, image_shape[0], networks=networks)
    return keras.Model(image, latent_head(features, latent_dim, networks), name="encoder")


def build_decoder(image_shape, latent_dim=128, networks=DEFAULT_NETWORKS):
    """Decoder: (labeled) latent -> image in [-1, 1] (Sec. 4; batch norm only here)."""
    image_size, _, channels = image_shape
    latent = keras.Input(shape=(latent_dim,), name="labeled_latent")
    x = layers.Dense(4 * 4 * 256, name="project")(latent)
    if NETWORKS[networks]["project_batch_norm"]:
        x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name="project_bn")(x)
    x = layers.LeakyReLU(LEAKY_SLOPE)(x)
    x = layers.Reshape((4, 4, 256))(x)
    for i, filters in enumerate(decoder_filters(image_size, networks), start=1):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", kernel_initializer=conv_initializer(networks),
                                   name=f"up_{i}")(x)
        x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"up_{i}_bn")(x)
        x = layers.LeakyReLU(LEAKY_SLOPE)(x)
    x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", kernel_initializer=conv_initializer(networks),
                               name="to_image")(x)
    image = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return synchronize_batch_norm(keras.Model(latent, image, name="decoder"))


def synchronize_batch_norm(model):
    """Batch statistics over the global batch when the replicas of a tf.distribute strategy share
    it, as on one device (the strategy in scope decides; a loaded decoder is set again)."""
    import tensorflow as tf
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
    return model


def build_embedding(num_classes, latent_dim=128):
    """Embedding model (Fig. 3): labeled_latent = latent * Embedding(label)."""
    latent = keras.Input(shape=(latent_dim,), name="latent")
    label = keras.Input(shape=(), dtype="int32", name="label")
    label_vector = layers.Embedding(num_classes, latent_dim, name="label_embedding")(label)
    labeled_latent = layers.Multiply(name="labeled_latent")([latent, label_vector])
    return keras.Model([latent, label], labeled_latent, name="embedding")


def build_supervised_autoencoder(encoder, embedding, decoder):
    """The supervised autoencoder of Fig. 3: (image, label) -> reconstruction."""
    image = keras.Input(shape=encoder.input_shape[1:], name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    reconstruction = decoder(embedding([encoder(image), label]))
    return keras.Model([image, label], reconstruction, name="supervised_autoencoder")


def build_unsupervised_autoencoder(encoder, decoder):
    """The original BAGAN autoencoder: image -> reconstruction, no label."""
    image = keras.Input(shape=encoder.input_shape[1:], name="image")
    return keras.Model(image, decoder(encoder(image)), name="autoencoder")


def compile_autoencoder(autoencoder, learning_rate=2e-4, beta_1=0.5, beta_2=0.9, loss="mae"):
    """Adam like the GAN; the reconstruction error "mae" (the BAGAN-GP code's) or "mse" (BAGAN's)."""
    autoencoder.compile(
        optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2),
        loss=loss,
    )
    return autoencoder
