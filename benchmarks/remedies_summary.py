"""python benchmarks/remedies_summary.py RESULTS.json [MORE.json ...]  (classify.py --json outputs)

Per row of classify.py results: accuracy, macro F1, mean minority recall, smallest class's recall
(mean ± sd over seeds), and each generated row's paired difference in mean minority recall against
the best row without generated images (same seeds), with a 95% t interval."""
import json, sys
import numpy as np
from scipy import stats

rows = []
for path in sys.argv[1:]:
    result = json.load(open(path))
    rows += [(r, result) for r in result["rows"]]
result = rows[0][1]
counts = np.array(result["train_counts"])
minority = np.flatnonzero(counts < 0.5 * counts.max())
smallest = int(np.argmin(counts))

def per_seed(row):
    out = {}
    for s in row["per_seed"]:
        recall = np.array([np.nan if v is None else v for v in s["per_class_recall"]])
        out[s["seed"]] = dict(accuracy=s["accuracy"], f1=s["f1"], minority=float(np.nanmean(recall[minority])),
                              smallest=float(recall[smallest]))
    return out

def fmt(values):
    v = np.array(values)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"

table = {}
for row, res in rows:
    name = row["name"] + (f" ({'select ' + '+'.join(res['select'])})" if res.get("select") else "") + (
        " (ratio auto)" if res.get("synthetic_ratio") == "auto" else "")
    table[name] = (row, per_seed(row))
print(f"minority classes {minority.tolist()}, smallest class {smallest} ({counts[smallest]} training images)")
print("| training set | accuracy | macro F1 | mean minority recall | smallest class recall |")
print("| --- | --- | --- | --- | --- |")
for name, (row, seeds) in table.items():
    print(f"| {name} | " + " | ".join(fmt([s[k] for s in seeds.values()]) for k in ("accuracy", "f1", "minority", "smallest")) + " |")
classic = {n: v for n, v in table.items() if v[0]["kind"] not in ("generator",)}
best = max(classic, key=lambda n: np.mean([s["minority"] for s in classic[n][1].values()]))
print(f"\nbest row without generated images (mean minority recall): {best}")
for name, (row, seeds) in table.items():
    if row["kind"] != "generator":
        continue
    common = sorted(set(seeds) & set(classic[best][1]))
    d = np.array([seeds[s]["minority"] - classic[best][1][s]["minority"] for s in common])
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    print(f"{name} - {best}: {d.mean():+.3f}, 95% interval [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}] over seeds {common}")
