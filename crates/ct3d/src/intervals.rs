//! 95 % confidence intervals of an evaluation's summary numbers.
//!
//! A validation split of a few dozen scans gives an accuracy that could easily be ten points
//! off; every summary number `ct3d eval`, the report and `ct3d cv` print therefore carries its
//! interval ([`evaluation_metrics`]):
//!
//! * Accuracy, sensitivity, specificity and AUC: the stratified percentile bootstrap. Each of
//!   [`BOOTSTRAP_RESAMPLES`] resamples draws, with replacement, as many positives from the
//!   positives and as many negatives from the negatives as the data has (so sensitivity and
//!   specificity always have their denominators, and the class balance is the data's); the
//!   interval runs from the 2.5th to the 97.5th percentile of the resampled values (numpy's
//!   default `linear` percentile). The draws come from ct3d's seeded SplitMix64, one stream in a
//!   fixed order, so the same seed gives the same interval to the last bit.
//! * AUC also gets DeLong's interval (DeLong, DeLong & Clarke-Pearson 1988), with the variance
//!   computed by the fast midrank algorithm of Sun & Xu (2014) ([`delong_variance`]). The
//!   interval is taken on the logit scale, `logit(AUC) ± 1.96 · SE / (AUC (1 − AUC))`, and
//!   transformed back: unlike the plain `AUC ± 1.96 · SE` it never leaves `[0, 1]` and is
//!   asymmetric near 1, where AUCs of good models live. An AUC of exactly 0 or 1 has variance 0
//!   and the degenerate interval `[AUC, AUC]`.

use ct3d_volume::rng::SplitMix64;

use crate::metrics::{
    BinaryMetrics, DelongInterval, Interval, Intervals, binary_metrics_at, roc_auc,
};

/// Bootstrap resamples.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The bootstrap's seed unless the caller gives one.
pub const DEFAULT_BOOTSTRAP_SEED: u64 = 20_140_804;

/// The two-sided 97.5 % quantile of the standard normal distribution.
const Z_975: f64 = 1.959_963_984_540_054;

/// How to compute the intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// Resamples (at least 1).
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self {
            resamples: BOOTSTRAP_RESAMPLES,
            seed: DEFAULT_BOOTSTRAP_SEED,
        }
    }
}

/// Every metric of `probabilities` against `labels` at `threshold` (a scan is positive above
/// it), with 95 % intervals ([`Intervals`]). Panics if the slices differ in length.
pub fn evaluation_metrics(
    probabilities: &[f32],
    labels: &[u8],
    threshold: f64,
    options: BootstrapOptions,
) -> BinaryMetrics {
    let mut metrics = binary_metrics_at(probabilities, labels, threshold);
    metrics.intervals = Some(intervals(probabilities, labels, threshold, options));
    metrics
}

/// The intervals of [`evaluation_metrics`].
pub fn intervals(
    probabilities: &[f32],
    labels: &[u8],
    threshold: f64,
    options: BootstrapOptions,
) -> Intervals {
    let positives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != 0).collect();
    let negatives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
    let resamples = options.resamples.max(1);
    let mut rng = SplitMix64::new(options.seed);
    let mut values: [Vec<f64>; 4] = Default::default();
    let mut p = Vec::with_capacity(labels.len());
    let mut y = Vec::with_capacity(labels.len());
    if !labels.is_empty() {
        for _ in 0..resamples {
            p.clear();
            y.clear();
            for class in [&negatives, &positives] {
                for _ in 0..class.len() {
                    let i = class[rng.below(class.len())];
                    p.push(probabilities[i]);
                    y.push(labels[i]);
                }
            }
            let m = binary_metrics_at(&p, &y, threshold);
            let auc = roc_auc(&p, &y);
            for (list, value) in
                values
                    .iter_mut()
                    .zip([Some(m.accuracy), m.sensitivity, m.specificity, auc])
            {
                list.extend(value);
            }
        }
    }
    let [accuracy, sensitivity, specificity, auc] = values.map(|mut v| percentile_interval(&mut v));
    Intervals {
        level: 0.95,
        resamples,
        seed: options.seed,
        accuracy,
        sensitivity,
        specificity,
        auc,
        auc_delong: delong_interval(probabilities, labels),
    }
}

/// The 2.5th and 97.5th percentiles of `values` (numpy's default linear interpolation), `None`
/// for no values.
fn percentile_interval(values: &mut [f64]) -> Option<Interval> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(Interval {
        lower: percentile(values, 0.025),
        upper: percentile(values, 0.975),
    })
}

/// numpy's `percentile(sorted, 100 q)` with the default `linear` method.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let low = h.floor() as usize;
    let high = (low + 1).min(sorted.len() - 1);
    sorted[low] + (h - low as f64) * (sorted[high] - sorted[low])
}

/// Midranks (1-based, ties get the mean of their ranks) of `x`, in `x`'s order.
fn midranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && x[order[j]] == x[order[i]] {
            j += 1;
        }
        let rank = (i + j + 1) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = rank;
        }
        i = j;
    }
    ranks
}

/// The sample variance (n − 1) of `v`.
fn sample_variance(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64
}

/// The AUC and DeLong's estimate of its variance, by the fast midrank algorithm of Sun & Xu
/// (2014): with `m` positives and `n` negatives, the structural components are
/// `V10_i = (R_i − R⁺_i) / n` for positive `i` and `V01_j = 1 − (R_j − R⁻_j) / m` for negative
/// `j`, where `R` is a scan's midrank among all scans and `R⁺`/`R⁻` its midrank within its
/// class; `Var(AUC) = s²(V10) / m + s²(V01) / n` with sample variances. `None` unless each class
/// has at least two scans (a sample variance needs two values).
pub fn delong_variance(scores: &[f32], labels: &[u8]) -> Option<(f64, f64)> {
    let positive: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|&(_, &y)| y != 0)
        .map(|(&s, _)| f64::from(s))
        .collect();
    let negative: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|&(_, &y)| y == 0)
        .map(|(&s, _)| f64::from(s))
        .collect();
    let (m, n) = (positive.len(), negative.len());
    if m < 2 || n < 2 {
        return None;
    }
    let all: Vec<f64> = positive.iter().chain(&negative).copied().collect();
    let (within_positive, within_negative, overall) =
        (midranks(&positive), midranks(&negative), midranks(&all));
    let (mf, nf) = (m as f64, n as f64);
    let auc = overall[..m].iter().sum::<f64>() / (mf * nf) - (mf + 1.0) / (2.0 * nf);
    let v10: Vec<f64> = (0..m)
        .map(|i| (overall[i] - within_positive[i]) / nf)
        .collect();
    let v01: Vec<f64> = (0..n)
        .map(|j| 1.0 - (overall[m + j] - within_negative[j]) / mf)
        .collect();
    Some((auc, sample_variance(&v10) / mf + sample_variance(&v01) / nf))
}

/// DeLong's 95 % interval of the AUC on the logit scale (see the module's documentation).
pub fn delong_interval(scores: &[f32], labels: &[u8]) -> Option<DelongInterval> {
    let (auc, variance) = delong_variance(scores, labels)?;
    let (lower, upper) = if auc <= 0.0 || auc >= 1.0 || variance <= 0.0 {
        (auc, auc)
    } else {
        let center = (auc / (1.0 - auc)).ln();
        let half = Z_975 * variance.sqrt() / (auc * (1.0 - auc));
        let expit = |x: f64| 1.0 / (1.0 + (-x).exp());
        (expit(center - half), expit(center + half))
    };
    Some(DelongInterval {
        lower,
        upper,
        variance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DeLong's variance straight from its definition: the placement values ψ(X_i, Y_j) (1 when
    /// the positive scores higher, ½ for a tie) averaged per scan, O(m n).
    fn delong_by_definition(scores: &[f32], labels: &[u8]) -> (f64, f64) {
        let pos: Vec<f32> = (0..scores.len())
            .filter(|&i| labels[i] != 0)
            .map(|i| scores[i])
            .collect();
        let neg: Vec<f32> = (0..scores.len())
            .filter(|&i| labels[i] == 0)
            .map(|i| scores[i])
            .collect();
        let psi = |x: f32, y: f32| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        };
        let v10: Vec<f64> = pos
            .iter()
            .map(|&x| neg.iter().map(|&y| psi(x, y)).sum::<f64>() / neg.len() as f64)
            .collect();
        let v01: Vec<f64> = neg
            .iter()
            .map(|&y| pos.iter().map(|&x| psi(x, y)).sum::<f64>() / pos.len() as f64)
            .collect();
        let auc = v10.iter().sum::<f64>() / v10.len() as f64;
        (
            auc,
            sample_variance(&v10) / pos.len() as f64 + sample_variance(&v01) / neg.len() as f64,
        )
    }

    #[test]
    fn midrank_delong_equals_the_definition_with_ties() {
        let scores = [0.3, 0.7, 0.7, 0.1, 0.9, 0.4, 0.4, 0.6, 0.4, 0.7];
        let labels = [0, 1, 0, 0, 1, 1, 0, 1, 1, 0];
        let (auc, var) = delong_variance(&scores, &labels).unwrap();
        let (auc_def, var_def) = delong_by_definition(&scores, &labels);
        assert!((auc - auc_def).abs() < 1e-12, "{auc} vs {auc_def}");
        assert!((var - var_def).abs() < 1e-12, "{var} vs {var_def}");
        assert!((auc - roc_auc(&scores, &labels).unwrap()).abs() < 1e-12);
        let ci = delong_interval(&scores, &labels).unwrap();
        assert!(
            ci.lower < auc && auc < ci.upper && ci.lower > 0.0 && ci.upper < 1.0,
            "{ci:?}"
        );
        assert!(delong_variance(&[0.1, 0.2, 0.9], &[0, 0, 1]).is_none());
    }

    #[test]
    fn perfect_separation_has_a_degenerate_delong_interval() {
        let ci = delong_interval(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1]).unwrap();
        assert_eq!((ci.lower, ci.upper, ci.variance), (1.0, 1.0, 0.0));
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // np.percentile([1, 2, 3, 4], [2.5, 97.5]) = [1.075, 3.925]
        let mut v = [4.0, 1.0, 3.0, 2.0];
        let i = percentile_interval(&mut v).unwrap();
        assert!(
            (i.lower - 1.075).abs() < 1e-12 && (i.upper - 3.925).abs() < 1e-12,
            "{i:?}"
        );
    }

    #[test]
    fn the_bootstrap_is_seeded_and_stratified() {
        let mut rng = SplitMix64::new(1);
        let labels: Vec<u8> = (0..60).map(|i| u8::from(i % 3 == 0)).collect();
        let scores: Vec<f32> = labels
            .iter()
            .map(|&y| (0.35 * f64::from(y) + 0.65 * rng.next_f64()) as f32)
            .collect();
        let options = BootstrapOptions::default();
        let a = evaluation_metrics(&scores, &labels, 0.5, options);
        let b = evaluation_metrics(&scores, &labels, 0.5, options);
        assert_eq!(a, b, "the same seed gives the same intervals");
        let other = evaluation_metrics(
            &scores,
            &labels,
            0.5,
            BootstrapOptions { seed: 7, ..options },
        );
        let auc_interval = |m: &BinaryMetrics| m.intervals.as_ref().unwrap().auc;
        assert_ne!(
            auc_interval(&a),
            auc_interval(&other),
            "another seed, other resamples"
        );
        let i = a.intervals.as_ref().unwrap();
        assert_eq!(i.resamples, 2000);
        for (value, interval) in [
            (Some(a.accuracy), i.accuracy),
            (a.sensitivity, i.sensitivity),
            (a.specificity, i.specificity),
            (a.auc, i.auc),
        ] {
            let (value, interval) = (value.unwrap(), interval.unwrap());
            assert!(
                interval.lower <= value
                    && value <= interval.upper
                    && interval.lower < interval.upper,
                "{value} in {interval:?}"
            );
        }
        // One class only: no sensitivity, AUC or DeLong interval, but accuracy has one.
        let one = evaluation_metrics(&[0.2, 0.7, 0.4], &[0, 0, 0], 0.5, options);
        let i = one.intervals.unwrap();
        assert!(i.accuracy.is_some() && i.sensitivity.is_none() && i.auc.is_none());
        assert!(i.auc_delong.is_none() && i.specificity.is_some());
    }
}
