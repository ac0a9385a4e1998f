"""What the in-training evaluation (--eval-every) cost a finished run, as a share of its training time.

    python benchmarks/eval_cost.py train_results/<run> [--json]

From the run folder alone: the evaluation classifier's training time (eval_classifier.json), the
time of every evaluation (history.csv's eval_seconds) and of every epoch of both phases
(history.csv's seconds, which include the evaluations). The target: at most 5% of a default run.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runs import EVAL_CLASSIFIER_FILE, Run, UsageError  # noqa: E402


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        run = Run.open(args.run_dir)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = run.file(EVAL_CLASSIFIER_FILE.replace(".keras", ".json"))
    if not meta.is_file():
        print(f"error: {run.path} has no {meta.name}: it did not evaluate during training", file=sys.stderr)
        return 2
    classifier_s = json.loads(meta.read_text())["seconds"]
    evals = [float(r["eval_seconds"]) for r in run.history() if "eval_seconds" in r]
    total = run.training_seconds()
    result = dict(run_dir=str(run.path), classifier_s=classifier_s, evaluations=len(evals), evaluation_s=sum(evals),
                  training_s=total, share=(classifier_s + sum(evals)) / total)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{run.name}: classifier {classifier_s:.1f} s + {len(evals)} evaluations {sum(evals):.1f} s "
              f"= {result['share']:.1%} of {total:.0f} s of training (autoencoder, GAN and classifier)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
