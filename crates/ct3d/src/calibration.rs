//! Calibration: how far a run's probabilities can be taken at their word, and temperature
//! scaling to make them more so.
//!
//! A network trained with cross-entropy ranks scans well long before its probabilities mean what
//! they say: "0.9" should come true nine times in ten. Two numbers measure it, both in
//! probability units: the Brier score ([`brier_score`], the mean squared difference between
//! probability and label) and the expected calibration error ([`expected_calibration_error`],
//! the scan-weighted mean gap between the predicted and the observed fraction of positives in
//! 15 equal-width bins, [`reliability_curve`]). Both equal scikit-learn's (`brier_score_loss`,
//! and `calibration_curve(..., n_bins=15, strategy='uniform')`, which leaves empty bins out).
//!
//! Temperature scaling (Guo et al. 2017) divides the network's logit `z` by one number `T > 0`
//! fitted on the validation scans ([`fit_temperature`]): `p = sigmoid(z / T)`. It never changes
//! which side of 0.5 a scan falls on, nor the ranking (the AUC); it only makes the probabilities
//! sharper (`T < 1`) or softer (`T > 1`). The fitted temperature, and optionally a decision
//! threshold chosen by Youden's J ([`youden_threshold`]), are recorded in the run folder as
//! `calibration.json` ([`Calibration`], written atomically); runs without the file behave as
//! before.
//!
//! The logits are recovered from the network's f32 probabilities, clamped to `[1e-7, 1 − 1e-7]`
//! as the loss is, so they reach at most ±16.1.

use std::path::{Path, PathBuf};

use ct3d_volume::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};

/// Equal-width bins of the reliability curve and the ECE.
pub const CALIBRATION_BINS: usize = 15;

/// The name of the calibration record in a run folder.
pub const CALIBRATION_FILE: &str = "calibration.json";

/// Probabilities are clamped to `[ε, 1 − ε]` before taking logits, as the loss clamps them.
const EPSILON: f64 = 1e-7;

/// The fitted temperature is searched in `[1 / TEMPERATURE_BOUND, TEMPERATURE_BOUND]`.
pub const TEMPERATURE_BOUND: f64 = 100.0;

/// Why calibrating failed, or a calibration record could not be used. One line.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// Too few scans, or only one class, to fit on.
    #[error(
        "cannot calibrate on {scans} scans ({positives} positive, {negatives} negative): \
         calibration needs scans of both classes"
    )]
    TooFew {
        /// Scans given.
        scans: usize,
        /// Positive scans among them.
        positives: usize,
        /// Negative scans among them.
        negatives: usize,
    },
    /// Youden's J is not positive at any threshold: the scores do not separate the classes.
    #[error(
        "no threshold separates the classes better than chance (Youden's J ≤ 0 everywhere): \
         keep the threshold 0.5"
    )]
    NoYoudenThreshold,
    /// `calibration.json` is not a valid record.
    #[error("{}: not a valid calibration record ({reason}); delete it or calibrate again", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing `calibration.json` failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of the bin (probability).
    pub lower: f64,
    /// Upper edge of the bin (probability); the bin holds `lower < p ≤ upper` (the first bin
    /// also holds 0), as scikit-learn's `np.searchsorted` binning does.
    pub upper: f64,
    /// Scans in the bin.
    pub count: usize,
    /// Their mean predicted probability (scikit-learn's `prob_pred`).
    pub mean_predicted: f64,
    /// The fraction of them that are positive (scikit-learn's `prob_true`).
    pub observed: f64,
}

/// Brier score: the mean of `(p − y)²` over scans (probabilities in f64), `None` without scans.
/// Equal to scikit-learn's `brier_score_loss`.
pub fn brier_score(probabilities: &[f32], labels: &[u8]) -> Option<f64> {
    if probabilities.is_empty() {
        return None;
    }
    let sum: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (f64::from(p) - f64::from(u8::from(y != 0))).powi(2))
        .sum();
    Some(sum / probabilities.len() as f64)
}

/// The reliability curve over `bins` equal-width bins of `[0, 1]`, empty bins left out: what
/// scikit-learn's `calibration_curve(y, p, n_bins=bins, strategy='uniform')` returns, with the
/// counts. Bin `k` holds `k / bins < p ≤ (k + 1) / bins` (bin 0 also holds 0; values above 1
/// go to the last bin), with the edges computed as numpy's `linspace` computes them.
pub fn reliability_curve(probabilities: &[f32], labels: &[u8], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let step = 1.0 / bins as f64;
    let edge = |k: usize| if k == bins { 1.0 } else { k as f64 * step };
    let mut count = vec![0usize; bins];
    let mut predicted = vec![0.0f64; bins];
    let mut positive = vec![0usize; bins];
    for (&p, &y) in probabilities.iter().zip(labels) {
        let p = f64::from(p);
        // np.searchsorted(interior_edges, p, side='left'): the interior edges strictly below p.
        let k = (1..bins).take_while(|&k| edge(k) < p).count();
        count[k] += 1;
        predicted[k] += p;
        positive[k] += usize::from(y != 0);
    }
    (0..bins)
        .filter(|&k| count[k] > 0)
        .map(|k| ReliabilityBin {
            lower: edge(k),
            upper: edge(k + 1),
            count: count[k],
            mean_predicted: predicted[k] / count[k] as f64,
            observed: positive[k] as f64 / count[k] as f64,
        })
        .collect()
}

/// Expected calibration error over [`CALIBRATION_BINS`] equal-width bins: `Σ_b (n_b / N) ·
/// |observed_b − mean_predicted_b|`, `None` without scans.
pub fn expected_calibration_error(probabilities: &[f32], labels: &[u8]) -> Option<f64> {
    if probabilities.is_empty() {
        return None;
    }
    let total = probabilities.len() as f64;
    Some(
        reliability_curve(probabilities, labels, CALIBRATION_BINS)
            .iter()
            .map(|b| b.count as f64 / total * (b.observed - b.mean_predicted).abs())
            .sum(),
    )
}

/// The logit of a probability, clamped to `[1e-7, 1 − 1e-7]` first (at most ±16.1).
pub fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(EPSILON, 1.0 - EPSILON);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The probability `p` rescaled by temperature `temperature`: `sigmoid(logit(p) / T)`.
pub fn apply_temperature(p: f32, temperature: f64) -> f32 {
    sigmoid(logit(p) / temperature) as f32
}

/// Mean negative log-likelihood (binary cross-entropy, natural log) of `sigmoid(z / T)` for
/// logits `z`, computed without overflow as `softplus(x) − y·x`.
pub fn temperature_nll(logits: &[f64], labels: &[u8], temperature: f64) -> f64 {
    let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
    let sum: f64 = logits
        .iter()
        .zip(labels)
        .map(|(&z, &y)| {
            let x = z / temperature;
            softplus(x) - if y != 0 { x } else { 0.0 }
        })
        .sum();
    sum / logits.len().max(1) as f64
}

/// A fitted temperature and what it did to the validation scans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureFit {
    /// The temperature `T`.
    pub temperature: f64,
    /// Mean NLL at `T = 1` (the raw probabilities, from the clamped logits).
    pub nll_before: f64,
    /// Mean NLL at the fitted `T`.
    pub nll_after: f64,
    /// The optimum lies at a bound of the search (`T` of 0.01 or 100): the scans are perfectly
    /// separated (NLL falls for ever as `T → 0`) or ranked backwards; too few or too easy
    /// validation scans to calibrate on.
    pub at_bound: bool,
}

/// Fits the temperature that minimises the mean NLL of `sigmoid(logit(p) / T)` on these scans
/// (see [`temperature_nll`]), for `T` in `[0.01, 100]`. Needs scans of both classes.
///
/// The problem is one-dimensional and the NLL is convex in `1 / T` (it is a logistic regression
/// with one coefficient and no intercept), hence unimodal in `u = ln T`. Golden-section search on
/// `u` therefore finds the minimum without derivatives, cannot step to `T ≤ 0`, takes a fixed
/// number of steps (deterministic to the last bit) and, unlike Newton's method, needs no
/// safeguard when the optimum is at infinity (perfectly separated scans).
pub fn fit_temperature(
    probabilities: &[f32],
    labels: &[u8],
) -> Result<TemperatureFit, CalibrationError> {
    let positives = labels.iter().filter(|&&y| y != 0).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(CalibrationError::TooFew {
            scans: labels.len(),
            positives,
            negatives,
        });
    }
    let logits: Vec<f64> = probabilities.iter().map(|&p| logit(p)).collect();
    let nll = |u: f64| temperature_nll(&logits, labels, u.exp());
    let (mut a, mut b) = (-TEMPERATURE_BOUND.ln(), TEMPERATURE_BOUND.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (nll(c), nll(d));
    // The bracket shrinks by 0.618 per step: 9.2 → 1e-10 in ~53 steps.
    while b - a > 1e-10 {
        if fc <= fd {
            (b, d, fd) = (d, c, fc);
            c = b - ratio * (b - a);
            fc = nll(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + ratio * (b - a);
            fd = nll(d);
        }
    }
    let u = (a + b) / 2.0;
    let bound = TEMPERATURE_BOUND.ln();
    Ok(TemperatureFit {
        temperature: u.exp(),
        nll_before: nll(0.0),
        nll_after: nll(u),
        at_bound: u.abs() > bound - 1e-6,
    })
}

/// The threshold that maximises Youden's J = sensitivity + specificity − 1 when a scan is called
/// positive for a probability above it: the midpoint between the lowest probability called
/// positive and the next lower one (0 below the lowest). Of equal J, the highest threshold wins
/// (the first maximum of scikit-learn's `roc_curve` sweep). `None` when J is nowhere positive.
pub fn youden_threshold(probabilities: &[f32], labels: &[u8]) -> Option<f64> {
    let positives = labels.iter().filter(|&&y| y != 0).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best: Option<(f64, f64)> = None;
    let mut i = 0;
    while i < order.len() {
        let score = probabilities[order[i]];
        while i < order.len() && probabilities[order[i]] == score {
            if labels[order[i]] != 0 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let j = tp as f64 / positives as f64 - fp as f64 / negatives as f64;
        let below = order.get(i).map_or(0.0, |&k| f64::from(probabilities[k]));
        let threshold = (f64::from(score) + below) / 2.0;
        if j > 0.0 && best.is_none_or(|(best_j, _)| j > best_j) {
            best = Some((j, threshold));
        }
    }
    best.map(|(_, threshold)| threshold)
}

/// A decision threshold recorded in `calibration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedThreshold {
    /// The threshold, on the calibrated probabilities: a scan is positive above it.
    pub value: f64,
    /// How it was chosen (`youden`: maximal sensitivity + specificity on the validation scans).
    pub method: String,
}

/// `calibration.json`: what `ct3d calibrate` fitted, and for which weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The temperature `T` (`p = sigmoid(logit / T)`).
    pub temperature: f64,
    /// A decision threshold other than 0.5, on the calibrated probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<RecordedThreshold>,
    /// Which weights it was fitted for (`best` or `last`).
    pub weights: String,
    /// SHA-256 of that weights file when fitted: a run trained further has new weights, which
    /// this calibration does not describe.
    pub weights_sha256: String,
    /// Which scans it was fitted on (`val`: the run's recorded validation scans).
    pub split: String,
    /// How many scans.
    pub scans: usize,
    /// Mean NLL before (T = 1) and after, on those scans.
    pub nll: [f64; 2],
    /// ECE before and after, on those scans.
    pub ece: [f64; 2],
    /// Brier score before and after, on those scans.
    pub brier: [f64; 2],
    /// The ct3d version that fitted it.
    pub ct3d_version: String,
}

impl Calibration {
    /// The probability shown for a raw one.
    pub fn apply(&self, p: f32) -> f32 {
        apply_temperature(p, self.temperature)
    }

    /// The decision threshold on calibrated probabilities (0.5 unless one is recorded).
    pub fn decision_threshold(&self) -> f64 {
        self.threshold.as_ref().map_or(0.5, |t| t.value)
    }

    /// How the probabilities are described: `calibrated (T = 1.37)`.
    pub fn describe(&self) -> String {
        format!("calibrated (T = {:.2})", self.temperature)
    }
}

/// `RUN/calibration.json`.
pub fn calibration_path(run: &Path) -> PathBuf {
    run.join(CALIBRATION_FILE)
}

/// Reads `RUN/calibration.json`; `None` when the run has none (runs before calibration, or never
/// calibrated). A file that is not a valid record is an error naming it.
pub fn read_calibration(run: &Path) -> Result<Option<Calibration>, CalibrationError> {
    let path = calibration_path(run);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CalibrationError::Io { path, source }),
    };
    let calibration: Calibration =
        serde_json::from_str(&text).map_err(|e| CalibrationError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let t = calibration.temperature;
    let threshold_ok = calibration
        .threshold
        .as_ref()
        .is_none_or(|t| t.value.is_finite() && (0.0..=1.0).contains(&t.value));
    if !(t.is_finite() && t > 0.0 && threshold_ok) {
        return Err(CalibrationError::Corrupt {
            path,
            reason: "the temperature must be a positive number and the threshold within [0, 1]"
                .to_owned(),
        });
    }
    Ok(Some(calibration))
}

/// Writes `RUN/calibration.json` atomically.
pub fn write_calibration(run: &Path, calibration: &Calibration) -> Result<(), CalibrationError> {
    let path = calibration_path(run);
    let mut text =
        serde_json::to_string_pretty(calibration).map_err(|e| CalibrationError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    text.push('\n');
    write_bytes_atomic(&path, text.as_bytes())
        .map_err(|source| CalibrationError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brier_and_bins_by_hand() {
        let p = [0.0, 0.25, 0.3, 0.5, 1.0];
        let y = [0, 0, 1, 1, 1];
        let brier = brier_score(&p, &y).unwrap();
        let expected = (0.0 + 0.0625 + 0.49 + 0.25 + 0.0) / 5.0;
        assert!((brier - expected).abs() < 1e-7, "{brier} vs {expected}");
        // Four bins: a value on an edge (0.25, 0.5) belongs to the bin below it, 0 to the first.
        let bins = reliability_curve(&p, &y, 4);
        let summary: Vec<(f64, f64, usize)> =
            bins.iter().map(|b| (b.lower, b.upper, b.count)).collect();
        assert_eq!(summary, [(0.0, 0.25, 2), (0.25, 0.5, 2), (0.75, 1.0, 1)]);
        assert_eq!((bins[0].observed, bins[0].mean_predicted), (0.0, 0.125));
        assert_eq!(bins[1].observed, 1.0);
        assert!((bins[1].mean_predicted - 0.4).abs() < 1e-7);
        // ECE: (2/5)·0.125 + (2/5)·0.6 + (1/5)·0.
        let ece = expected_calibration_error(&p, &y).unwrap();
        assert!(ece > 0.0);
        let four = bins
            .iter()
            .map(|b| b.count as f64 / 5.0 * (b.observed - b.mean_predicted).abs())
            .sum::<f64>();
        assert!((four - (0.4 * 0.125 + 0.4 * 0.6)).abs() < 1e-7, "{four}");
        assert!(brier_score(&[], &[]).is_none());
        assert!(expected_calibration_error(&[], &[]).is_none());
    }

    #[test]
    fn perfectly_calibrated_bins_have_no_error() {
        // In the bin around 0.25, one scan in four is positive.
        let p = [0.25f32; 8];
        let y = [1, 0, 0, 0, 1, 0, 0, 0];
        assert!(expected_calibration_error(&p, &y).unwrap().abs() < 1e-12);
        let ece = expected_calibration_error(&[0.9, 0.9], &[0, 0]).unwrap();
        assert!((ece - 0.9).abs() < 1e-6, "{ece}");
    }

    #[test]
    fn temperature_recovers_a_known_scale() {
        // Labels drawn so that the true probability is sigmoid(z / 2): the raw probabilities
        // sigmoid(z) are overconfident and the fit should find T near 2.
        let mut rng = ct3d_volume::rng::SplitMix64::new(3);
        let (mut p, mut y) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let z = 8.0 * rng.next_f64() - 4.0;
            p.push(sigmoid(z) as f32);
            y.push(u8::from(rng.next_f64() < sigmoid(z / 2.0)));
        }
        let fit = fit_temperature(&p, &y).unwrap();
        assert!((fit.temperature - 2.0).abs() < 0.25, "{fit:?}");
        assert!(fit.nll_after < fit.nll_before && !fit.at_bound, "{fit:?}");
        // The minimum: nudging T either way does not lower the NLL.
        let logits: Vec<f64> = p.iter().map(|&q| logit(q)).collect();
        for factor in [0.999, 1.001] {
            assert!(
                temperature_nll(&logits, &y, fit.temperature * factor) >= fit.nll_after - 1e-12
            );
        }
    }

    #[test]
    fn separated_or_one_class_scans_are_named() {
        let fit = fit_temperature(&[0.4, 0.45, 0.55, 0.6], &[0, 0, 1, 1]).unwrap();
        assert!(fit.at_bound && fit.temperature < 0.011, "{fit:?}");
        let err = fit_temperature(&[0.4, 0.6], &[1, 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot calibrate on 2 scans (2 positive, 0 negative): calibration needs scans of \
             both classes"
        );
    }

    #[test]
    fn temperature_keeps_the_side_of_one_half() {
        for p in [0.01f32, 0.3, 0.5, 0.7, 0.999] {
            for t in [0.3, 1.0, 4.0] {
                let q = apply_temperature(p, t);
                assert_eq!(q > 0.5, p > 0.5, "{p} at T = {t}: {q}");
            }
        }
        assert!((apply_temperature(0.8, 1.0) - 0.8).abs() < 1e-6);
    }

    #[test]
    fn youden_picks_the_best_cut() {
        // Cutting between 0.35 and 0.3 catches 2 of 2 positives and 1 of 3 negatives:
        // J = 1 − 1/3; every other cut is worse.
        let p = [0.1, 0.3, 0.35, 0.6, 0.8];
        let y = [0, 0, 1, 0, 1];
        let t = youden_threshold(&p, &y).unwrap();
        assert!((t - (0.35 + f64::from(0.3f32)) / 2.0).abs() < 1e-6, "{t}");
        let m = crate::metrics::binary_metrics_at(&p, &y, t);
        assert_eq!(m.sensitivity, Some(1.0));
        assert!(youden_threshold(&[0.9, 0.1], &[0, 1]).is_none());
    }

    fn read_back_record() -> Calibration {
        Calibration {
            temperature: 1.5,
            threshold: Some(RecordedThreshold {
                value: 0.4,
                method: "youden".to_owned(),
            }),
            weights: "best".to_owned(),
            weights_sha256: "00".to_owned(),
            split: "val".to_owned(),
            scans: 4,
            nll: [0.7, 0.6],
            ece: [0.2, 0.1],
            brier: [0.25, 0.2],
            ct3d_version: "0".to_owned(),
        }
    }

    #[test]
    fn calibration_records_round_trip_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_calibration(dir.path()).unwrap(), None);
        let record = read_back_record();
        write_calibration(dir.path(), &record).unwrap();
        assert_eq!(read_calibration(dir.path()).unwrap(), Some(record));
        let path = dir.path().join(CALIBRATION_FILE);
        std::fs::write(&path, "{ \"temperature\": ").unwrap();
        let err = read_calibration(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: not a valid calibration record (",
                path.display()
            )) && !err.contains('\n'),
            "{err}"
        );
        // Valid JSON, impossible values.
        let mut bad = serde_json::to_value(read_back_record()).unwrap();
        bad["temperature"] = serde_json::json!(-1.0);
        std::fs::write(&path, bad.to_string()).unwrap();
        let err = read_calibration(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("the temperature must be a positive number"),
            "{err}"
        );
    }
}
