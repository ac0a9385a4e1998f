"""Runs for tests/test_distribute.py, each in a fresh process (TensorFlow's devices are fixed at start).

    python tests/distributed_run.py equivalence          # JSON: losses and weights, one device vs two
    python tests/distributed_run.py cli FLAGS...         # bagan_train.main(FLAGS) on two logical CPUs

Both split this machine's CPU into two logical devices first, so MirroredStrategy has two replicas.
The repository must be on PYTHONPATH (test_distribute.py sets it).
One strategy per process, as on the command line: strategies created one after another in one
process share TensorFlow's collective instance keys, and their all-reduces then clash.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import bagan_train  # noqa: E402
from autoencoder import build_decoder, build_embedding  # noqa: E402
from bagan_gp import BAGANGP, build_critic, build_generator  # noqa: E402
from datasets import load_dataset, make_tf_dataset  # noqa: E402

BATCH, LATENT, STEPS = 16, 16, 3


class UnscaledBAGANGP(BAGANGP):
    """The mistake the equivalence test must catch: replica losses not divided by the replica count."""

    @staticmethod
    def replica_loss_scale():
        return 1.0


def train(model_class, strategy, data, initial_weights=None):
    """STEPS train steps (one per epoch) with plain SGD, so a wrong gradient scale shows in the weights.

    Returns the model, its per-step losses and the weights it started from.
    """
    with strategy.scope():
        shape = data.x_train.shape[1:]
        generator = build_generator(build_embedding(data.num_classes, LATENT), build_decoder(shape, LATENT))
        model = model_class(generator, build_critic(shape, data.num_classes), data.num_classes, latent_dim=LATENT,
                            train_ratio=2, seed=11)
        if initial_weights is not None:
            model.generator.set_weights(initial_weights[0])
            model.critic.set_weights(initial_weights[1])
        initial = model.generator.get_weights(), model.critic.get_weights()
        model.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.05))
    batches = make_tf_dataset(data.x_train, data.y_train, BATCH, shuffle=False, drop_remainder=True,
                              repeat=True, steps_per_epoch=STEPS)
    history = model.fit(batches, epochs=STEPS, steps_per_epoch=1, verbose=0, shuffle=False).history
    return model, {k: [float(v) for v in values] for k, values in history.items()}, initial


def weights(model):
    return model.generator.get_weights() + model.critic.get_weights()


def equivalence():
    """One device, two mirrored replicas, and two replicas with the scaling mistake, from the same start."""
    data = load_dataset("digits", image_size=32)
    keras.utils.set_random_seed(3)
    single, history, initial = train(BAGANGP, tf.distribute.get_strategy(), data)
    result = {"single": history}
    for name, model_class in (("mirrored", BAGANGP), ("unscaled", UnscaledBAGANGP)):
        strategy = bagan_train.make_strategy("mirrored")
        model, result[name], _ = train(model_class, strategy, data, initial)
        result[f"{name}_replicas"] = strategy.num_replicas_in_sync
        result[f"{name}_weight_difference"] = max(float(np.max(np.abs(a - b)))
                                                  for a, b in zip(weights(single), weights(model)))
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["equivalence"]:
        equivalence()
    elif sys.argv[1:2] == ["cli"]:
        sys.exit(bagan_train.main(sys.argv[2:]))
    else:
        sys.exit(__doc__)
