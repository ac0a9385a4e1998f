"""Digits quality check: does a classifier trained on real digits recognise the generated ones?

    python benchmarks/quality_digits.py train_results/<digits run> [--per-class 200] [--json]

Trains the project's judge (evaluators.train_judge) on the real (balanced) digits training split at
the run's image size, reports its accuracy on the real test split, then the share of the run's
generated images of each class that it assigns to that class. The goal for the default `make train` run is at least 90% for
every class, minority classes included.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def train_judge(image_size, seed=0):
    """The judge: evaluators.train_judge on the real balanced digits; (model, test accuracy)."""
    from datasets import load_dataset
    from evaluators import train_judge
    model, check = train_judge(load_dataset("digits", image_size=image_size), seed=seed, epochs=15)
    return model, check["accuracy"]


def generated_recognition(judge, generator, num_classes, latent_dim, per_class, seed=0):
    """Share of G(z, c) classified as c, for every class c."""
    rng = np.random.default_rng(seed)
    shares = []
    for c in range(num_classes):
        z = rng.standard_normal((per_class, latent_dim)).astype(np.float32)
        images = generator.predict([z, np.full(per_class, c, np.int32)], batch_size=256, verbose=0)
        predicted = np.argmax(judge.predict(images, batch_size=256, verbose=0), axis=1)
        shares.append(float(np.mean(predicted == c)))
    return shares


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a finished digits run folder")
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from runs import GENERATOR_FILE, Run, UsageError
    try:
        run = Run.open(args.run_dir, require=(GENERATOR_FILE,))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    config = run.config
    if config["dataset"] != "digits":
        print(f"error: {args.run_dir} was trained on {config['dataset']}, not digits", file=sys.stderr)
        return 2
    judge, accuracy = train_judge(config["image_size"], args.seed)
    generator = run.load_generator()
    shares = generated_recognition(judge, generator, len(config["class_names"]), config["latent_dim"],
                                   args.per_class, args.seed)
    result = dict(run_dir=args.run_dir, judge_test_accuracy=accuracy, per_class=args.per_class,
                  recognised=dict(zip(config["class_names"], shares)),
                  train_counts=config["train_counts"], minimum=min(shares))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"judge accuracy on real test digits: {accuracy:.3f}")
        print(f"{'class':>5} {'train imgs':>10} {'recognised':>10}")
        for name, count, share in zip(config["class_names"], config["train_counts"], shares):
            print(f"{name:>5} {count:>10} {share:>10.1%}")
        print(f"lowest class: {min(shares):.1%} (goal: at least 90%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
