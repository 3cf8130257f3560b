#!/usr/bin/env python3
"""Golden cases for ct3d's calibration metrics, confidence intervals and temperature scaling.

Regenerate (from the repository root) with numpy 2.x, scipy and scikit-learn 1.x:

    python3 tools/golden/gen_calibration_golden.py

Writes `crates/ct3d/tests/data/calibration_golden.json`, read by `crates/ct3d/tests/calibration.rs`.
Each case holds float32 probabilities (written as the float64 values of the float32 numbers,
which is what ct3d computes with) and 0/1 labels, and what the references make of them:

* scikit-learn: `brier_score_loss`, `calibration_curve(..., n_bins=15, strategy='uniform')`,
  `accuracy_score`, `recall_score` (sensitivity; with pos_label=0: specificity) at the rule
  "positive when p > 0.5", `roc_auc_score`, and the best Youden J of `roc_curve`;
* the ECE, Σ (n_b / N)·|acc_b − conf_b| over the bins `calibration_curve` keeps (the counts come
  from the same `searchsorted` binning, checked against its output here);
* DeLong's AUC variance by the numpy midrank algorithm of Sun & Xu (2014) below, checked here
  against the O(m·n) definition, and the 95 % interval on the logit scale;
* the temperature minimising the mean NLL of sigmoid(logit / T), logits from probabilities
  clamped to [1e-7, 1 - 1e-7], by scipy's bounded Brent search on log T in [ln 0.01, ln 100].
"""

import json
import os

import numpy as np
import scipy.optimize
import scipy.special
import sklearn
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    recall_score,
    roc_auc_score,
    roc_curve,
)

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "ct3d", "tests", "data", "calibration_golden.json",
)
N_BINS = 15
Z = 1.959963984540054


def compute_midrank(x):
    """Midranks (1-based, ties share the mean rank), Sun & Xu (2014)."""
    order = np.argsort(x, kind="mergesort")
    z = x[order]
    n = len(x)
    t = np.zeros(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and z[j] == z[i]:
            j += 1
        t[i:j] = 0.5 * (i + j - 1)
        i = j
    out = np.empty(n, dtype=np.float64)
    out[order] = t + 1
    return out


def fast_delong(scores, labels):
    """AUC and its DeLong variance by the fast midrank algorithm (positives first)."""
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    m, n = len(pos), len(neg)
    tx = compute_midrank(pos)
    ty = compute_midrank(neg)
    tz = compute_midrank(np.concatenate([pos, neg]))
    auc = tz[:m].sum() / m / n - (m + 1.0) / 2.0 / n
    v01 = (tz[:m] - tx) / n
    v10 = 1.0 - (tz[m:] - ty) / m
    var = np.var(v01, ddof=1) / m + np.var(v10, ddof=1) / n
    return auc, var


def delong_by_definition(scores, labels):
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10 = psi.mean(axis=1)
    v01 = psi.mean(axis=0)
    return psi.mean(), np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg)


def logit_interval(auc, var):
    if auc <= 0 or auc >= 1 or var <= 0:
        return [auc, auc]
    center = np.log(auc / (1 - auc))
    half = Z * np.sqrt(var) / (auc * (1 - auc))
    return [float(scipy.special.expit(center - half)), float(scipy.special.expit(center + half))]


def fit_temperature(p, y):
    z = scipy.special.logit(np.clip(p, 1e-7, 1 - 1e-7))

    def nll(u):
        x = z / np.exp(u)
        return float(np.mean(np.logaddexp(0.0, x) - y * x))

    bound = np.log(100.0)
    res = scipy.optimize.minimize_scalar(
        nll, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-12}
    )
    return float(np.exp(res.x)), nll(0.0), float(res.fun)


def case(name, p32, y):
    p = p32.astype(np.float64)
    y = np.asarray(y, dtype=np.int64)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=N_BINS, strategy="uniform")
    bins = np.linspace(0.0, 1.0, N_BINS + 1)
    binids = np.searchsorted(bins[1:-1], p)
    counts = np.bincount(binids, minlength=N_BINS)
    nonzero = counts[counts != 0]
    # The same binning as calibration_curve: its per-bin values from our counts.
    assert np.allclose(
        np.bincount(binids, weights=y, minlength=N_BINS)[counts != 0] / nonzero, prob_true
    )
    ece = float(np.sum(nonzero / len(p) * np.abs(prob_true - prob_pred)))
    predicted = (p > 0.5).astype(np.int64)
    auc, var = fast_delong(p, y)
    auc_def, var_def = delong_by_definition(p, y)
    assert abs(auc - auc_def) < 1e-12 and abs(var - var_def) < 1e-12, (name, var, var_def)
    assert abs(auc - roc_auc_score(y, p)) < 1e-12
    fpr, tpr, _ = roc_curve(y, p)
    temperature, nll_before, nll_after = fit_temperature(p, y)
    return {
        "name": name,
        "probabilities": p.tolist(),
        "labels": y.tolist(),
        "brier": float(brier_score_loss(y, p)),
        "prob_true": prob_true.tolist(),
        "prob_pred": prob_pred.tolist(),
        "bin_counts": nonzero.tolist(),
        "ece": ece,
        "accuracy": float(accuracy_score(y, predicted)),
        "sensitivity": float(recall_score(y, predicted, pos_label=1)),
        "specificity": float(recall_score(y, predicted, pos_label=0)),
        "auc": float(roc_auc_score(y, p)),
        "delong_auc": float(auc),
        "delong_variance": float(var),
        "delong_interval": logit_interval(auc, var),
        "youden_j": float(np.max(tpr - fpr)),
        "temperature": temperature,
        "nll_before": nll_before,
        "nll_after": nll_after,
    }


def main():
    rng = np.random.default_rng(14)
    cases = []

    # Noisy scores with exact bin edges, 0, 1 and 0.5 among them.
    y = rng.integers(0, 2, 80)
    z = 3.0 * (2 * y - 1) + 2.5 * rng.standard_normal(80)
    p = scipy.special.expit(z).astype(np.float32)
    p[:6] = np.float32([0.0, 1.0, 0.5, 1 / 15, 2 / 15, 14 / 15])
    cases.append(case("noisy", p, y))

    # Heavy ties: four distinct scores.
    y = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    p = np.float32([0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.4, 0.8, 0.2, 0.6, 0.6, 0.2, 0.8, 0.4, 0.8])
    cases.append(case("ties", p, y))

    # Imbalanced (5 positives in 45), underconfident scores.
    y = np.array([1] * 5 + [0] * 40)
    z = 0.8 * (2 * y - 1) + 1.2 * rng.standard_normal(45)
    p = scipy.special.expit(z).astype(np.float32)
    cases.append(case("imbalanced", p, y))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(
            {
                "generator": "tools/golden/gen_calibration_golden.py",
                "versions": {
                    "numpy": np.__version__,
                    "scipy": scipy.__version__,
                    "scikit-learn": sklearn.__version__,
                },
                "cases": cases,
            },
            f,
            indent=1,
        )
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
