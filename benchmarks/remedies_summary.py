"""One table from several classify.py --json results of the same data and seeds.

    python benchmarks/remedies_summary.py classify.json auto.json select.json [--json]

Per training set (a row of any of the results; a row from a run with --synthetic-ratio or
--select is named so): accuracy, macro F1, mean minority recall and the smallest class's recall
(mean ± sd over the seeds), then each generated row's paired difference in mean minority recall
against the best row without generated images (tables.paired_against_best, 95% t interval).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tables import minority_classes, minority_recall, paired_against_best, paired_lines  # noqa: E402

MUST_AGREE = ("dataset", "imbalanced", "image_size", "split_seed", "train_counts", "test_counts")


def row_name(row, result):
    """The row's name, marked with the options of the classify.py call that trained it."""
    marks = []
    if row["kind"] == "generator" and result.get("select"):
        marks.append("select " + "+".join(result["select"]))
    ratio = result.get("synthetic_ratio")
    if row["kind"] == "generator" and ratio is not None:
        marks.append("ratio auto" if ratio == "auto" else f"ratio {ratio:g}")
    return row["name"] + (f" ({', '.join(marks)})" if marks else "")


def summary(results):
    """{"minority", "smallest", "rows": [{"name", "accuracy", "f1", "minority", "smallest": [per seed]}],
    "paired": paired_against_best(...)} over the rows of every result."""
    counts = results[0]["train_counts"]
    smallest = int(np.argmin(counts))
    rows = []
    for result in results:
        for row in result["rows"]:
            name = row_name(row, result)
            if any(r["name"] == name for r in rows):
                continue  # the same training set in two calls: the first call's scores
            rows.append(dict(row, name=name))
    table = [dict(name=row["name"], **{
        "accuracy": [s["accuracy"] for s in row["per_seed"]],
        "f1": [s["f1"] for s in row["per_seed"]],
        "minority": [minority_recall(s, counts) for s in row["per_seed"]],
        "smallest": [s["per_class_recall"][smallest] for s in row["per_seed"]]}) for row in rows]
    return dict(minority=minority_classes(counts), smallest=smallest, smallest_images=counts[smallest],
                rows=table, paired=paired_against_best(rows, counts))


def cell(values):
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    return f"{np.nanmean(v):.3f} ± {np.nanstd(v, ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def main(argv=None):
    from console import ArgumentParser
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="classify.py --json outputs (results.json of a classify folder)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    results = []
    for path in args.results:
        try:
            with open(path) as f:
                results.append(json.load(f))
        except (OSError, ValueError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 2
        if "rows" not in results[-1]:
            print(f"error: {path}: not a classify.py result (no rows)", file=sys.stderr)
            return 2
        differ = [k for k in MUST_AGREE if results[-1].get(k) != results[0].get(k)]
        if differ:
            print(f"error: {path}: {', '.join(differ)} differ from {args.results[0]}'s", file=sys.stderr)
            return 2
    found = summary(results)
    if args.json:
        print(json.dumps(found))
        return 0
    print(f"minority classes {found['minority']}, smallest class {found['smallest']} "
          f"({found['smallest_images']} training images)")
    print("| training set | accuracy | macro F1 | mean minority recall | smallest class recall |")
    print("| --- | --- | --- | --- | --- |")
    for row in found["rows"]:
        print(f"| {row['name']} | " + " | ".join(cell(row[k]) for k in ("accuracy", "f1", "minority", "smallest"))
              + " |")
    print("\n" + "\n".join(paired_lines(found["paired"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
