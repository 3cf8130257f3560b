//! Parity of the calibration metrics, the confidence intervals and temperature scaling with
//! scikit-learn, scipy and the numpy DeLong reference, on the golden cases of
//! `tools/golden/gen_calibration_golden.py` (`tests/data/calibration_golden.json`; ties, exact
//! bin edges, 0, 1 and 0.5 among them).

use std::path::PathBuf;

use ct3d::calibration::{
    CALIBRATION_BINS, apply_temperature, brier_score, expected_calibration_error, fit_temperature,
    reliability_curve, youden_threshold,
};
use ct3d::intervals::{BootstrapOptions, delong_interval, delong_variance, evaluation_metrics};
use ct3d::metrics::binary_metrics;
use serde_json::Value;

struct Case {
    name: String,
    probabilities: Vec<f32>,
    labels: Vec<u8>,
    golden: Value,
}

fn cases() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/calibration_golden.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    cases
        .iter()
        .map(|case| Case {
            name: case["name"].as_str().unwrap().to_owned(),
            // The golden values are float32 numbers written as float64: exact as f32.
            probabilities: numbers(&case["probabilities"])
                .iter()
                .map(|&p| {
                    let q = p as f32;
                    assert_eq!(f64::from(q), p, "not a float32 value: {p}");
                    q
                })
                .collect(),
            labels: numbers(&case["labels"]).iter().map(|&y| y as u8).collect(),
            golden: case.clone(),
        })
        .collect()
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn number(case: &Case, key: &str) -> f64 {
    case.golden[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: {key} missing", case.name))
}

/// Asserts `|a − b| ≤ tolerance`, naming the case and the quantity, and returns the difference.
fn close(case: &Case, what: &str, a: f64, b: f64, tolerance: f64) -> f64 {
    let difference = (a - b).abs();
    assert!(
        difference <= tolerance,
        "{}: {what} {a} vs reference {b} (difference {difference:e})",
        case.name
    );
    difference
}

#[test]
fn brier_ece_and_the_reliability_curve_equal_scikit_learn() {
    let mut worst: f64 = 0.0;
    for case in cases() {
        let (p, y) = (&case.probabilities, &case.labels);
        let brier = brier_score(p, y).unwrap();
        worst = worst.max(close(&case, "Brier", brier, number(&case, "brier"), 1e-15));
        let ece = expected_calibration_error(p, y).unwrap();
        worst = worst.max(close(&case, "ECE", ece, number(&case, "ece"), 1e-15));
        let bins = reliability_curve(p, y, CALIBRATION_BINS);
        let counts: Vec<f64> = bins.iter().map(|b| b.count as f64).collect();
        assert_eq!(counts, numbers(&case.golden["bin_counts"]), "{}", case.name);
        for (bin, (observed, predicted)) in bins.iter().zip(
            numbers(&case.golden["prob_true"])
                .into_iter()
                .zip(numbers(&case.golden["prob_pred"])),
        ) {
            worst = worst.max(close(&case, "prob_true", bin.observed, observed, 1e-15));
            worst = worst.max(close(
                &case,
                "prob_pred",
                bin.mean_predicted,
                predicted,
                1e-15,
            ));
        }
        // The metrics carry the same numbers.
        let m = binary_metrics(p, y);
        assert_eq!((m.brier, m.ece), (Some(brier), Some(ece)));
    }
    println!("Brier, ECE, reliability curve: max |difference| vs scikit-learn {worst:e}");
}

#[test]
fn point_metrics_equal_scikit_learn_and_delong_the_reference() {
    let (mut worst_point, mut worst_variance, mut worst_interval): (f64, f64, f64) =
        (0.0, 0.0, 0.0);
    for case in cases() {
        let (p, y) = (&case.probabilities, &case.labels);
        let m = evaluation_metrics(p, y, 0.5, BootstrapOptions::default());
        for (what, value, key) in [
            ("accuracy", Some(m.accuracy), "accuracy"),
            ("sensitivity", m.sensitivity, "sensitivity"),
            ("specificity", m.specificity, "specificity"),
            ("AUC", m.auc, "auc"),
        ] {
            let d = close(&case, what, value.unwrap(), number(&case, key), 1e-15);
            worst_point = worst_point.max(d);
        }
        let (auc, variance) = delong_variance(p, y).unwrap();
        worst_point = worst_point.max(close(
            &case,
            "DeLong AUC",
            auc,
            number(&case, "delong_auc"),
            1e-15,
        ));
        worst_variance = worst_variance.max(close(
            &case,
            "DeLong variance",
            variance,
            number(&case, "delong_variance"),
            1e-15,
        ));
        let interval = delong_interval(p, y).unwrap();
        let reference = numbers(&case.golden["delong_interval"]);
        worst_interval = worst_interval.max(close(
            &case,
            "DeLong lower",
            interval.lower,
            reference[0],
            1e-12,
        ));
        worst_interval = worst_interval.max(close(
            &case,
            "DeLong upper",
            interval.upper,
            reference[1],
            1e-12,
        ));
        assert_eq!(m.intervals.unwrap().auc_delong, Some(interval));
    }
    println!(
        "accuracy, sensitivity, specificity, AUC: max |difference| vs scikit-learn {worst_point:e}; \
         DeLong variance vs the numpy reference {worst_variance:e}, interval {worst_interval:e}"
    );
}

#[test]
fn temperature_and_youden_equal_scipy_and_roc_curve() {
    let mut worst: f64 = 0.0;
    for case in cases() {
        let (p, y) = (&case.probabilities, &case.labels);
        let fit = fit_temperature(p, y).unwrap();
        let reference = number(&case, "temperature");
        worst = worst.max(close(
            &case,
            "temperature",
            fit.temperature,
            reference,
            1e-6 * reference,
        ));
        close(
            &case,
            "NLL before",
            fit.nll_before,
            number(&case, "nll_before"),
            1e-12,
        );
        close(
            &case,
            "NLL after",
            fit.nll_after,
            number(&case, "nll_after"),
            1e-12,
        );
        // Youden's threshold reaches the best J of scikit-learn's roc_curve sweep.
        let t = youden_threshold(p, y).unwrap();
        let m = ct3d::metrics::binary_metrics_at(p, y, t);
        let j = m.sensitivity.unwrap() + m.specificity.unwrap() - 1.0;
        close(&case, "Youden's J", j, number(&case, "youden_j"), 1e-12);
        // Temperature scaling never moves a scan across 0.5.
        let calibrated: Vec<f32> = p
            .iter()
            .map(|&q| apply_temperature(q, fit.temperature))
            .collect();
        assert_eq!(
            binary_metrics(&calibrated, y).confusion,
            binary_metrics(p, y).confusion
        );
    }
    println!("temperature: max |difference| vs scipy {worst:e}");
}
