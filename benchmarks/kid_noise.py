"""How much the in-training evaluation's per-class KID moves with the noise it draws.

    python benchmarks/kid_noise.py train_results/<run> [--per-class 100] [--draws 12] [--json]

Scores the run's best and last generators (generator_best.keras, generator.keras) as the in-training
evaluation does (evaluators.class_scores: the run's judge, eval_classifier.keras, and its features of each
class's first training images), once per noise seed 0..draws-1, and prints per class the mean and
standard deviation of the KID (in history.csv's units) and the mean share recognised. When the
spread is as large as the difference between two epochs, the choice between them is the draw's.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--per-class", type=int, default=None,
                   help="generated images per class and draw (default: the evaluation's, callbacks.EVAL_PER_CLASS)")
    p.add_argument("--draws", type=int, default=12, help="noise seeds 0..N-1 (default 12)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from callbacks import EVAL_PER_CLASS, EVAL_REAL_PER_CLASS
    from datasets import load_dataset
    from evaluators import class_features, class_scores
    from runs import BEST_GENERATOR_FILE, EVAL_CLASSIFIER_FILE, GENERATOR_FILE, Run, load_model
    per_class = args.per_class or EVAL_PER_CLASS
    run = Run.open(args.run_dir)
    c = run.config
    data = load_dataset(c["dataset"], c.get("data_dir"), c["image_size"], c.get("imbalanced", False), c["split_seed"],
                        c.get("resize", "pad"), c.get("window"))
    judge = load_model(run.file(EVAL_CLASSIFIER_FILE))
    real = class_features(judge, data.x_train, data.y_train, data.num_classes, EVAL_REAL_PER_CLASS)
    names = [str(n) for n in data.class_names]
    result = dict(run_dir=args.run_dir, per_class=per_class, draws=args.draws, classes=names, generators={})
    for which, file in (("best", BEST_GENERATOR_FILE), ("last", GENERATOR_FILE)):
        if not run.file(file).is_file():
            continue
        generator = load_model(run.file(file))
        scores = [class_scores(generator, judge, real, per_class, seed) for seed in range(args.draws)]
        kid = np.array([s[0] for s in scores])
        recognised = np.array([s[1] for s in scores])
        result["generators"][which] = dict(kid_mean=kid.mean(0).tolist(), kid_sd=kid.std(0, ddof=1).tolist(),
                                           recognised_mean=recognised.mean(0).tolist())
        if not args.json:
            print(f"{which}: per class {', '.join(names)}")
            print("  KID        " + "  ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(kid.mean(0), kid.std(0, ddof=1))))
            print("  recognised " + "  ".join(f"{m:.2f}" for m in recognised.mean(0)), flush=True)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
