"""Does the GAN keep the autoencoder's start? Per-class quality of one training run at step 0,
after the first epoch, at a quarter of the run and at its end.

    python benchmarks/start_quality.py --out DIR [--dataset digits] [--imbalanced] [--latent paper|class]
                                       [--g-learning-rate X] [--epochs N] [--precision ...] [--json]
                                       [--networks project|original] [--ema-decay D]
                                       [--diffaugment translation,cutout,color]

Trains one run with bagan_train.train into DIR (all other settings: the defaults) and judges its
generator at those epochs with a classifier of the real images: classify.py's paper-003 CNN trained
on the dataset's balanced training split (cached in --judge). Per class, with 200 images G(z, c)
(noise from runs.generated_batches, seed 0):

- recognised: the share the judge assigns to class c;
- fid: the Frechet distance, in the judge's 128-d features, to the class's unseen real images (the
  balanced protocol's test images that are not in the run's training split);
- diversity: the mean pairwise feature distance of the generated images over that of the unseen
  real ones (1 = as varied as the real class);
- near_copies: the share of generated images nearer to a training image of their class than 95% of
  the unseen real images are (below the 5th percentile of the real images' nearest-training
  distances); unseen real images score 0.05 by construction.

Writes DIR/start_quality.json (one entry per judged epoch, with its wall time) and DIR/step_000.png
(the sample grid at step 0, beside the run's samples/epoch_NNN.png), and prints a table.
"""
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

PER_CLASS = 200


def load_judge(path, data, seed=0):
    """The judge CNN trained on the balanced real training split, cached at `path`; (model, test accuracy)."""
    import keras
    from evaluators import train_judge
    meta = path + ".json"
    if os.path.isfile(path) and os.path.isfile(meta):
        return keras.models.load_model(path), json.load(open(meta))["test_accuracy"]
    model, check = train_judge(data, seed=seed, epochs=15)
    accuracy = check["accuracy"]
    model.save(path)
    json.dump(dict(test_accuracy=accuracy, dataset=data.name), open(meta, "w"))
    return model, accuracy


def distances(a, b):
    """Euclidean distances between the rows of a and of b (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0))


def pairwise_mean(f):
    return distances(f, f)[np.triu_indices(len(f), 1)].mean()


def nearest(a, b):
    """Distance of every row of a to its nearest row of b."""
    return distances(a, b).min(axis=1)


class Judge:
    """Per-class recognition, FID, diversity and near copies of a generator, in the judge's features."""

    def __init__(self, model, run_data, balanced):
        import keras
        from datasets import to_model_range
        self.model = model
        self.features = keras.Model(model.inputs, model.get_layer("features").output)
        seen = {image.tobytes() for image in run_data.x_train}
        unseen = np.array([image.tobytes() not in seen for image in balanced.x_test])
        self.classes = range(run_data.num_classes)
        embed = lambda x: self.features.predict(to_model_range(x), batch_size=256, verbose=0)  # noqa: E731
        self.real = [embed(balanced.x_test[unseen & (balanced.y_test == c)]) for c in self.classes]
        self.train = [embed(run_data.x_train[run_data.y_train == c]) for c in self.classes]
        self.threshold = [np.percentile(nearest(r, t), 5) for r, t in zip(self.real, self.train)]

    def __call__(self, generator):
        import warnings
        from metrics import FeatureSet, SingularCovarianceWarning
        from runs import generated_batches
        warnings.simplefilter("ignore", SingularCovarianceWarning)  # few unseen real digits: compare like with like
        rows = dict(recognised=[], fid=[], diversity=[], near_copies=[])
        for c in self.classes:
            images = np.concatenate([np.asarray(b) for b in generated_batches(generator, c, PER_CLASS, seed=0)])
            logits = self.model.predict(images, batch_size=256, verbose=0)
            f = self.features.predict(images, batch_size=256, verbose=0)
            rows["recognised"].append(float(np.mean(logits.argmax(1) == c)))
            rows["fid"].append(FeatureSet(self.real[c]).fid(FeatureSet(f)))
            rows["diversity"].append(float(pairwise_mean(f) / pairwise_mean(self.real[c])))
            rows["near_copies"].append(float(np.mean(nearest(f, self.train[c]) < self.threshold[c])))
        return rows


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--out", required=True, help="the run folder to write")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir")
    p.add_argument("--imbalanced", action="store_true")
    p.add_argument("--image-size", type=int)
    p.add_argument("--latent", choices=["paper", "class"], default="paper")
    p.add_argument("--g-learning-rate", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--networks", choices=["project", "original"], help="bagan_train.py's")
    p.add_argument("--ema-decay", type=float, help="bagan_train.py's (the few-images aids' measurement)")
    p.add_argument("--diffaugment", help="bagan_train.py's (the few-images aids' measurement)")
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"], help="bagan_train.py's (default auto)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--judge", help="judge cache (default benchmarks/.judge-<dataset>-<size>.keras)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import keras
    import bagan_train
    from callbacks import GRID_ROWS, generate_grid_rows, image_grid
    from datasets import load_dataset
    from runs import save_png
    config = bagan_train.TrainConfig.create(
        dataset=args.dataset, data_dir=args.data_dir, imbalanced=args.imbalanced, image_size=args.image_size,
        latent=args.latent, g_learning_rate=args.g_learning_rate, epochs=args.epochs, precision=args.precision,
        seed=args.seed, networks=args.networks, ema_decay=args.ema_decay, diffaugment=args.diffaugment)
    run_data = load_dataset(config.dataset, config.data_dir, config.image_size, config.imbalanced, config.seed)
    balanced = load_dataset(config.dataset, config.data_dir, config.image_size, False, config.seed)
    judge_path = args.judge or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            f".judge-{config.dataset}-{config.image_size}.keras")
    model, accuracy = load_judge(judge_path, balanced)
    judge = Judge(model, run_data, balanced)
    judged = {0, 1, max(1, config.epochs // 4), config.epochs}
    results, started = [], time.time()

    class Evaluate(keras.callbacks.Callback):
        def judge(self, epoch):
            results.append(dict(epoch=epoch, seconds=round(time.time() - started, 1), **judge(self.model.sampling_generator())))
            print(f"[start_quality] epoch {epoch}: lowest recognised {min(results[-1]['recognised']):.2f}, "
                  f"mean FID {np.mean(results[-1]['fid']):.1f}", file=sys.stderr, flush=True)

        def on_train_begin(self, logs=None):
            noise = np.random.default_rng(config.seed).standard_normal((GRID_ROWS, config.latent_dim))
            real_row = np.stack([run_data.x_train[run_data.y_train == c][0] for c in range(run_data.num_classes)])
            rows = generate_grid_rows(self.model.sampling_generator(), noise.astype(np.float32), run_data.num_classes)
            save_png(os.path.join(args.out, "step_000.png"), image_grid([real_row] + rows))
            self.judge(0)

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 in judged:
                self.judge(epoch + 1)

    summary = bagan_train.train(config, args.out, data=run_data, verbose=0, callbacks=[Evaluate()])
    result = dict(run_dir=args.out, dataset=config.dataset, imbalanced=config.imbalanced,
                  image_size=config.image_size, latent=config.latent, learning_rate=config.learning_rate,
                  g_learning_rate=config.g_learning_rate, epochs=config.epochs, precision=config.precision,
                  networks=config.networks, ema_decay=config.ema_decay, diffaugment=config.diffaugment,
                  train_counts=run_data.train_counts(), class_names=list(run_data.class_names),
                  judge_test_accuracy=accuracy, judge=judge_path,
                  judge_sha256=hashlib.sha256(open(judge_path, "rb").read()).hexdigest(),
                  unseen_real_counts=[len(r) for r in judge.real], per_class=PER_CLASS,
                  train_seconds=summary["seconds"], judged=results)
    with open(os.path.join(args.out, "start_quality.json"), "w") as f:
        json.dump(result, f, indent=1)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{config.dataset}{' imbalanced' if config.imbalanced else ''} {config.image_size}x{config.image_size}, "
          f"latent {config.latent}, learning rates {config.learning_rate:g} (critic) / {config.g_learning_rate:g} "
          f"(generator), judge accuracy {accuracy:.3f}")
    print("train counts: " + " ".join(map(str, run_data.train_counts())))
    for entry in results:
        for key in ("recognised", "fid", "diversity", "near_copies"):
            print(f"epoch {entry['epoch']:3d} {key:>11}: " + " ".join(f"{v:5.2f}" if key != "fid" else f"{v:5.1f}"
                                                                   for v in entry[key]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
