#!/usr/bin/env python3
"""Summarises bench/recipes.sh: one Markdown row per recipe from OUT/<recipe>/cv.json and the
fold runs' history.csv (standard library only).

    python3 bench/recipes_table.py OUT seed seed_aug resnet10_aug
"""

import csv
import json
import statistics
import sys
from pathlib import Path


def mean_sd(entry):
    if entry is None:
        return "—"
    sd = entry.get("sd")
    return f"{entry['mean']:.3f} ± {sd:.3f}" if sd is not None else f"{entry['mean']:.3f}"


def main():
    out = Path(sys.argv[1])
    print("| recipe | accuracy (mean ± SD) | ROC AUC (mean ± SD) | sensitivity | specificity "
          "| epochs trained per fold | s per epoch (median) | per-fold accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for recipe in sys.argv[2:]:
        cv = json.loads((out / recipe / "cv.json").read_text())
        seconds, epochs = [], []
        for fold in cv["per_fold"]:
            run = Path(fold["run"])
            if not run.is_absolute() and not run.exists():
                run = out / recipe / run.name
            with open(run / "history.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            seconds += [float(r["seconds"]) for r in rows]
            epochs.append(fold["epochs"])
        m = cv["mean"]
        per_fold = ", ".join(f"{f['metrics']['accuracy']:.2f}" for f in cv["per_fold"])
        print(f"| {recipe} | {mean_sd(m['accuracy'])} | {mean_sd(m['auc'])} "
              f"| {mean_sd(m['sensitivity'])} | {mean_sd(m['specificity'])} "
              f"| {', '.join(map(str, epochs))} | {statistics.median(seconds):.1f} | {per_fold} |")


if __name__ == "__main__":
    main()
