//! Binary-classification metrics as the report and `ct3d eval` present them.
//!
//! Everything is computed from per-scan probabilities of the positive class and 0/1 labels. The
//! decision threshold is 0.5, as in the Keras example's `acc` metric, unless a run records
//! another one (`ct3d calibrate --threshold youden`): a scan is called positive when its
//! probability exceeds the threshold.
//!
//! How well the probabilities are calibrated ([`BinaryMetrics::brier`], [`BinaryMetrics::ece`]) is
//! computed in [`crate::calibration`]; the 95 % intervals ([`Intervals`]) in [`crate::intervals`].

use serde::{Deserialize, Serialize};

pub use crate::calibration::ReliabilityBin;

/// One scan's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanScore {
    /// The scan file.
    pub path: std::path::PathBuf,
    /// Its true label (0 or 1).
    pub label: u8,
    /// The model's probability of label 1 (with test-time augmentation: the mean over the
    /// augmented copies).
    pub probability: f32,
    /// With test-time augmentation: how much the augmented copies disagree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<TtaSpread>,
}

/// The spread of one scan's test-time-augmented probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TtaSpread {
    /// Augmented copies averaged.
    pub count: usize,
    /// Sample standard deviation (n − 1) of their probabilities (0 for one copy).
    pub sd: f64,
    /// The lowest probability.
    pub min: f32,
    /// The highest probability.
    pub max: f32,
}

/// The result of `ct3d eval`.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Which data was evaluated: `recorded` (the scans the run's `config.json` lists) or
    /// `other: PATH` (another data folder or manifest, not the run's recorded scans).
    pub data: String,
    /// Which scans were evaluated (`val` or `all`).
    pub split: String,
    /// Recorded scans left out because they no longer exist (only when allowed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<std::path::PathBuf>,
    /// Recorded scans whose bytes changed since training, scored as they are now (only when
    /// allowed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<std::path::PathBuf>,
    /// The metrics.
    pub metrics: BinaryMetrics,
    /// Per-scan probabilities.
    pub scans: Vec<ScanScore>,
    /// Which probabilities these are: `raw` (the network's) or `calibrated (T = 1.37)`
    /// (temperature-scaled, [`crate::calibration`]).
    pub probabilities: String,
    /// The reliability curve of the probabilities: 15 equal-width bins of `[0, 1]`, empty bins
    /// left out (as scikit-learn's `calibration_curve` does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reliability: Vec<ReliabilityBin>,
}

/// Counts of the four outcomes at the decision threshold (0.5 unless the run records another).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Negatives predicted negative.
    pub true_negative: usize,
    /// Negatives predicted positive.
    pub false_positive: usize,
    /// Positives predicted negative.
    pub false_negative: usize,
    /// Positives predicted positive.
    pub true_positive: usize,
}

/// The metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    /// Number of scans.
    pub count: usize,
    /// Mean binary cross-entropy (natural log), clamped like Keras (ε = 1e-7).
    pub loss: f64,
    /// Fraction of scans classified correctly at 0.5.
    pub accuracy: f64,
    /// Area under the ROC curve (ties count one half); `None` when only one class is present.
    pub auc: Option<f64>,
    /// True-positive rate, TP / (TP + FN); `None` without positives.
    pub sensitivity: Option<f64>,
    /// True-negative rate, TN / (TN + FP); `None` without negatives.
    pub specificity: Option<f64>,
    /// The confusion matrix.
    pub confusion: Confusion,
    /// The decision threshold: a scan is called positive when its probability exceeds it
    /// (0.5 in metrics recorded before ct3d wrote it).
    #[serde(default = "half")]
    pub threshold: f64,
    /// Brier score, the mean of (probability − label)²: 0 is perfect, 0.25 is a constant 0.5;
    /// `None` without scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brier: Option<f64>,
    /// Expected calibration error over 15 equal-width bins, Σ (n_b / N) · |observed_b −
    /// predicted_b|, in probability units; `None` without scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece: Option<f64>,
    /// 95 % confidence intervals of accuracy, sensitivity, specificity and AUC (only where an
    /// evaluation asked for them: not in the per-epoch validation of training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Intervals>,
}

fn half() -> f64 {
    0.5
}

/// A two-sided confidence interval, in the metric's units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
}

/// DeLong's interval of the ROC AUC, with the variance it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DelongInterval {
    /// Lower end.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
    /// DeLong's estimate of the AUC's variance (fast midrank algorithm, Sun & Xu 2014).
    pub variance: f64,
}

/// 95 % confidence intervals of an evaluation's summary numbers (see [`crate::intervals`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    /// The confidence level (0.95).
    pub level: f64,
    /// Bootstrap resamples (stratified: drawn with replacement within each class).
    pub resamples: usize,
    /// The seed of the resampling: the same seed gives the same intervals.
    pub seed: u64,
    /// Accuracy, percentile bootstrap.
    pub accuracy: Option<Interval>,
    /// Sensitivity, percentile bootstrap; `None` without positives.
    pub sensitivity: Option<Interval>,
    /// Specificity, percentile bootstrap; `None` without negatives.
    pub specificity: Option<Interval>,
    /// ROC AUC, percentile bootstrap; `None` unless both classes are present.
    pub auc: Option<Interval>,
    /// ROC AUC, DeLong's interval on the logit scale; `None` unless each class has at least two
    /// scans.
    pub auc_delong: Option<DelongInterval>,
}

/// Keras clips probabilities to [ε, 1 − ε] before taking logs; we do the same so losses compare.
const KERAS_EPSILON: f64 = 1e-7;

/// Computes all metrics from probabilities in [0, 1] and labels in {0, 1} at threshold 0.5,
/// without intervals. Panics if the slices differ in length (a programming error, not input
/// data).
pub fn binary_metrics(probabilities: &[f32], labels: &[u8]) -> BinaryMetrics {
    binary_metrics_at(probabilities, labels, 0.5)
}

/// [`binary_metrics`] at another decision threshold: a scan is positive when its probability
/// exceeds `threshold`.
pub fn binary_metrics_at(probabilities: &[f32], labels: &[u8], threshold: f64) -> BinaryMetrics {
    assert_eq!(
        probabilities.len(),
        labels.len(),
        "one label per probability"
    );
    let mut confusion = Confusion::default();
    let mut loss = 0.0;
    for (&p, &y) in probabilities.iter().zip(labels) {
        let p = f64::from(p).clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON);
        let positive_label = y != 0;
        loss -= if positive_label {
            p.ln()
        } else {
            (1.0 - p).ln()
        };
        match (positive_label, p > threshold) {
            (false, false) => confusion.true_negative += 1,
            (false, true) => confusion.false_positive += 1,
            (true, false) => confusion.false_negative += 1,
            (true, true) => confusion.true_positive += 1,
        }
    }
    let count = labels.len();
    let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
    BinaryMetrics {
        count,
        loss: if count > 0 { loss / count as f64 } else { 0.0 },
        accuracy: ratio(confusion.true_negative + confusion.true_positive, count).unwrap_or(0.0),
        auc: roc_auc(probabilities, labels),
        sensitivity: ratio(
            confusion.true_positive,
            confusion.true_positive + confusion.false_negative,
        ),
        specificity: ratio(
            confusion.true_negative,
            confusion.true_negative + confusion.false_positive,
        ),
        confusion,
        threshold,
        brier: crate::calibration::brier_score(probabilities, labels),
        ece: crate::calibration::expected_calibration_error(probabilities, labels),
        intervals: None,
    }
}

/// ROC AUC as the Mann–Whitney statistic with average ranks for ties (equal to the area under the
/// exact ROC curve); `None` unless both classes are present.
pub fn roc_auc(scores: &[f32], labels: &[u8]) -> Option<f64> {
    let positives = labels.iter().filter(|&&y| y != 0).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks are 1-based; tied scores share the mean of their ranks.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        positive_rank_sum += mean_rank
            * order[start..end]
                .iter()
                .filter(|&&i| labels[i] != 0)
                .count() as f64;
        start = end;
    }
    let u = positive_rank_sum - (positives * (positives + 1)) as f64 / 2.0;
    Some(u / (positives * negatives) as f64)
}

/// Points of the ROC curve, `(false-positive rate, true-positive rate)` from (0, 0) to (1, 1), one
/// per distinct threshold; empty unless both classes are present.
pub fn roc_curve(scores: &[f32], labels: &[u8]) -> Vec<(f64, f64)> {
    let positives = labels.iter().filter(|&&y| y != 0).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let threshold = scores[order[i]];
        while i < order.len() && scores[order[i]] == threshold {
            if labels[order[i]] != 0 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        points.push((fp as f64 / negatives as f64, tp as f64 / positives as f64));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_separation() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[0, 0, 1, 1]), Some(0.0));
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // One positive tied with one negative, the other pair separated: (1 + 0.5 + 1 + 1) / 4.
        assert_eq!(roc_auc(&[0.5, 0.2, 0.5, 0.9], &[0, 0, 1, 1]), Some(0.875));
        assert_eq!(roc_auc(&[0.5, 0.5], &[0, 1]), Some(0.5));
    }

    #[test]
    fn auc_matches_brute_force_pair_count() {
        let scores = [0.3, 0.7, 0.7, 0.1, 0.9, 0.4, 0.4, 0.6];
        let labels = [0, 1, 0, 0, 1, 1, 0, 1];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] == 1 && labels[j] == 0 {
                    pairs += 1.0;
                    wins += if si > sj {
                        1.0
                    } else if si == sj {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let auc = roc_auc(&scores, &labels).unwrap();
        assert!(
            (auc - wins / pairs).abs() < 1e-12,
            "{auc} vs {}",
            wins / pairs
        );
    }

    #[test]
    fn single_class_has_no_auc() {
        assert_eq!(roc_auc(&[0.1, 0.9], &[1, 1]), None);
        assert!(roc_curve(&[0.1, 0.9], &[0, 0]).is_empty());
    }

    #[test]
    fn confusion_and_rates() {
        let m = binary_metrics(&[0.1, 0.6, 0.4, 0.9, 0.8], &[0, 0, 1, 1, 1]);
        assert_eq!(
            m.confusion,
            Confusion {
                true_negative: 1,
                false_positive: 1,
                false_negative: 1,
                true_positive: 2
            }
        );
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert!((m.sensitivity.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.specificity.unwrap() - 0.5).abs() < 1e-12);
        let expected_loss =
            -((0.9f64).ln() + (0.4f64).ln() + (0.4f64).ln() + (0.9f64).ln() + (0.8f64).ln()) / 5.0;
        assert!(
            (m.loss - expected_loss).abs() < 1e-6,
            "{} vs {expected_loss}",
            m.loss
        );
    }

    #[test]
    fn loss_is_finite_for_confident_mistakes() {
        let m = binary_metrics(&[1.0, 0.0], &[0, 1]);
        assert!(m.loss.is_finite());
        assert!((m.loss - -(1e-7f64).ln()).abs() < 1e-6);
    }

    #[test]
    fn roc_curve_ends_at_corners() {
        let pts = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]);
        assert_eq!(pts.first(), Some(&(0.0, 0.0)));
        assert_eq!(pts.last(), Some(&(1.0, 1.0)));
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }
}
