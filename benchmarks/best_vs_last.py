"""The best generator (kept by the in-training evaluation) against the last, judged independently.

    python benchmarks/best_vs_last.py train_results/<run> [--json]

Scores the run's generator_best.keras and generator.keras with start_quality.py's judge (a classifier
of the dataset's balanced real training split, cached in benchmarks/): per class the share
recognised, the FID to the unseen real images of the class, the diversity and the near copies of
200 generated images each; plus the in-training evaluation's own scores of both epochs
(history.csv's kid/<class>). A run with --ema-decay also has its raw (not averaged) last generator,
generator_raw.keras, judged as "raw".
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from datasets import load_dataset
    from runs import RAW_GENERATOR_FILE, Run, load_model
    from start_quality import Judge, load_judge
    run = Run.open(args.run_dir)
    best = run.best()
    if best is None:
        print(f"error: {run.path} has no best generator (trained without --eval-every)", file=sys.stderr)
        return 2
    c = run.config
    run_data = load_dataset(c["dataset"], c.get("data_dir"), c["image_size"], c.get("imbalanced", False), c["seed"])
    balanced = load_dataset(c["dataset"], c.get("data_dir"), c["image_size"], False, c["seed"])
    judge_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f".judge-{c['dataset']}-{c['image_size']}.keras")
    model, accuracy = load_judge(judge_path, balanced)
    judge = Judge(model, run_data, balanced)
    rows = {row["epoch"]: row for row in run.history() if row["phase"] == "gan"}
    result = dict(run_dir=str(run.path), best_epoch=best["epoch"], last_epoch=c["epochs"], judge_test_accuracy=accuracy,
                  class_names=list(run_data.class_names), train_counts=run_data.train_counts())
    raw = run.file(RAW_GENERATOR_FILE)
    kinds = ("best", "last") + (("raw",) if raw.is_file() else ())
    for which in kinds:
        epoch = str(best["epoch"] if which == "best" else c["epochs"])
        generator = load_model(raw) if which == "raw" else run.load_generator(which)
        result[which] = dict(judge(generator),
                             eval_kid=[float(rows[epoch][f"kid/{n}"]) if f"kid/{n}" in rows.get(epoch, {}) else None
                                       for n in run_data.class_names])
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{run.name}: best epoch {best['epoch']} of {c['epochs']}; judge accuracy {accuracy:.3f}")
    print("train counts: " + " ".join(map(str, run_data.train_counts())))
    for key, fmt in (("eval_kid", ".4f"), ("recognised", ".2f"), ("fid", ".1f"), ("diversity", ".2f"),
                     ("near_copies", ".2f")):
        for which in kinds:
            values = result[which][key]
            print(f"{key:>11} {which:>4}: " + " ".join("  n/a" if v is None else format(v, fmt) for v in values)
                  + (f"   mean {np.mean([v for v in values if v is not None]):{fmt}}" if key != "recognised"
                     else f"   min {min(values):{fmt}}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
