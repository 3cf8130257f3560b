//! Parity with scipy 1.17: every case in `tests/data/golden/cases.json` (written by
//! `tools/golden/gen_golden.py`, which spells out the exact scipy calls) must agree to a maximum
//! absolute error of 1e-5 on `[0, 1]` data.

use crate::support::{golden, golden_dir, max_abs_error};
use ct3d_volume::augment::rotate_augment;
use ct3d_volume::preprocess::{PreprocessParams, process_volume};
use ct3d_volume::spline::{
    cos_degrees, rotate_planes, sin_degrees, spline_prefilter_plane, zoom_linear_factors,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn manifest() -> Value {
    let path = golden_dir().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("cases.json parses")
}

fn cases(section: &str) -> Vec<Value> {
    let cases = manifest()[section].as_array().cloned().unwrap_or_default();
    assert!(!cases.is_empty(), "no {section} cases in cases.json");
    cases
}

fn text(case: &Value, key: &str) -> String {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {case}"))
        .to_owned()
}

fn number(case: &Value, key: &str) -> f64 {
    case[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {case}"))
}

fn check(label: &str, actual: &ct3d_volume::Volume, expected_name: &str) {
    let expected = golden(expected_name);
    assert_eq!(actual.shape().to_vec(), expected.shape, "{label}: shape");
    let (error, at) = max_abs_error(actual.data(), &expected.values);
    println!("{label}: max abs error {error:e} (at flat index {at})");
    assert!(
        error <= TOLERANCE,
        "{label}: max abs error {error:e} at flat index {at} exceeds {TOLERANCE:e}"
    );
}

#[test]
fn preprocessing_matches_scipy() {
    for case in cases("preprocess") {
        let name = text(&case, "name");
        let input = golden(&text(&case, "input")).to_volume();
        let size: Vec<usize> = case["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let config = PreprocessParams {
            hu_min: number(&case, "hu_min") as f32,
            hu_max: number(&case, "hu_max") as f32,
            size: [size[0], size[1], size[2]],
        }
        .check()
        .unwrap();
        let out = process_volume(&input, &config).unwrap();
        check(
            &format!("preprocess {name}"),
            &out,
            &text(&case, "expected"),
        );
    }
}

#[test]
fn zoom_rounding_edge_gives_zero_last_planes_like_scipy() {
    let edge_cases: Vec<Value> = cases("preprocess")
        .into_iter()
        .filter(|c| text(c, "name").starts_with("zoom_edge"))
        .collect();
    assert!(!edge_cases.is_empty());
    for case in edge_cases {
        let flags: Vec<bool> = case["last_plane_zero"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        assert!(
            flags.iter().all(|&f| f),
            "fixture {} should hit the edge on every axis",
            text(&case, "name")
        );
        let size: Vec<usize> = case["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let config = PreprocessParams {
            size: [size[0], size[1], size[2]],
            ..Default::default()
        }
        .check()
        .unwrap();
        let out = process_volume(&golden(&text(&case, "input")).to_volume(), &config).unwrap();
        let [nx, ny, nz] = out.shape();
        let zero_x = (0..ny).all(|y| (0..nz).all(|z| out.get(nx - 1, y, z) == 0.0));
        let zero_y = (0..nx).all(|x| (0..nz).all(|z| out.get(x, ny - 1, z) == 0.0));
        let zero_z = (0..nx).all(|x| (0..ny).all(|y| out.get(x, y, nz - 1) == 0.0));
        assert!(
            zero_x && zero_y && zero_z,
            "{}: last planes should be zero",
            text(&case, "name")
        );
        assert!(out.get(nx - 2, ny - 2, nz - 2) > 0.0);
    }
}

#[test]
fn augmentation_matches_scipy_for_every_seed_angle() {
    let cases = cases("augment");
    let mut angles: Vec<f32> = cases.iter().map(|c| number(c, "angle") as f32).collect();
    angles.sort_by(f32::total_cmp);
    assert_eq!(angles, ct3d_volume::augment::SEED_ANGLES);
    for case in cases {
        let angle = number(&case, "angle") as f32;
        let out = rotate_augment(&golden(&text(&case, "input")).to_volume(), angle);
        check(&format!("augment {angle}"), &out, &text(&case, "expected"));
    }
}

#[test]
fn rotation_matches_scipy() {
    for case in cases("rotate") {
        let out = rotate_planes(
            &golden(&text(&case, "input")).to_volume(),
            number(&case, "angle"),
        );
        check(
            &format!("rotate {}", text(&case, "name")),
            &out,
            &text(&case, "expected"),
        );
    }
}

#[test]
fn zoom_matches_scipy() {
    for case in cases("zoom") {
        let bits: Vec<u64> = case["factor_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let factors = [
            f64::from_bits(bits[0]),
            f64::from_bits(bits[1]),
            f64::from_bits(bits[2]),
        ];
        let input = golden(&text(&case, "input")).to_volume();
        let out = zoom_linear_factors(&input, factors);
        let name = text(&case, "name");
        check(&format!("zoom {name}"), &out, &text(&case, "expected"));
        if factors == [1.0; 3] {
            assert_eq!(out, input, "unit factors must return the input unchanged");
        }
    }
}

#[test]
fn prefilter_matches_scipy() {
    for case in cases("prefilter") {
        let input = golden(&text(&case, "input"));
        let expected = golden(&text(&case, "expected"));
        let mut plane = input.values.clone();
        spline_prefilter_plane(&mut plane, [input.shape[0], input.shape[1]]);
        let error = plane
            .iter()
            .zip(&expected.values)
            .map(|(a, e)| (a - e).abs())
            .fold(0.0, f64::max);
        println!("prefilter {}: max abs error {error:e}", text(&case, "name"));
        assert!(
            error <= 1e-12,
            "prefilter {}: {error:e}",
            text(&case, "name")
        );
    }
}

#[test]
fn degree_trigonometry_matches_scipy_special() {
    for case in cases("angles") {
        let angle = number(&case, "angle");
        let cos = f64::from_bits(case["cos_bits"].as_u64().unwrap());
        let sin = f64::from_bits(case["sin_bits"].as_u64().unwrap());
        let ulps = |a: f64, b: f64| (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
        if angle % 90.0 == 0.0 {
            assert_eq!(
                (cos_degrees(angle), sin_degrees(angle)),
                (cos, sin),
                "{angle}"
            );
        } else {
            assert!(
                ulps(cos_degrees(angle), cos) <= 1 && ulps(sin_degrees(angle), sin) <= 1,
                "{angle}"
            );
        }
    }
}
