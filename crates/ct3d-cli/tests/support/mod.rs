//! Helpers shared by the end-to-end tests that run the real `ct3d` binary.

use std::path::Path;
use std::process::{Command, Output};

pub fn ct3d(args: &[&str]) -> Output {
    ct3d_in(Path::new("."), args)
}

pub fn ct3d_in(working_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ct3d"))
        .args(args)
        .current_dir(working_dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the ct3d binary runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn s(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "expected success, stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

/// The part of a one-line message that repeats an earlier part, e.g. a cause printed twice
/// ("a.nii: bad header: a.nii: bad header").
pub fn repeated_tail(message: &str) -> Option<&str> {
    message
        .match_indices(": ")
        .map(|(i, _)| (&message[..i], &message[i + 2..]))
        .find(|(head, tail)| tail.len() >= 12 && head.contains(tail))
        .map(|(_, tail)| tail)
}

/// Asserts a clean failure: exit code 1, no panic, a single `error:` line mentioning every
/// needle and not repeating itself.
pub fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error line expected, got: {err}");
    for needle in needles {
        assert!(error_lines[0].contains(needle), "{needle:?} not in {err:?}");
    }
    assert_eq!(
        repeated_tail(error_lines[0]),
        None,
        "the message repeats itself: {err}"
    );
}

/// The `ct3d train` flags of the small model every end-to-end test trains: input 48³, filters
/// 4,4,8,8, dense 16.
pub const SMALL_MODEL: [&str; 6] = [
    "--size",
    "48,48,48",
    "--filters",
    "4,4,8,8",
    "--dense",
    "16",
];

/// `ct3d train` arguments for the small model ([`SMALL_MODEL`]), plus `extra`.
pub fn small_train_args<'a>(data: &'a Path, run: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--data", s(data), "--out", s(run)];
    args.extend_from_slice(&SMALL_MODEL);
    args.extend_from_slice(extra);
    args
}

/// Phantoms written by `ct3d synth` into `out` (CT-0 and CT-23; 64×64 in-plane, `depth` slices or
/// the default), `normal` + `abnormal` of them drawn from `seed`; returns `out`.
pub fn synth_into(
    out: &Path,
    normal: usize,
    abnormal: usize,
    seed: u64,
    depth: Option<usize>,
) -> std::path::PathBuf {
    let (normal, abnormal, seed) = (normal.to_string(), abnormal.to_string(), seed.to_string());
    let depth = depth.map(|d| d.to_string());
    let mut args = vec![
        "synth",
        "--out",
        s(out),
        "--normal",
        &normal,
        "--abnormal",
        &abnormal,
        "--seed",
        &seed,
        "--size-xy",
        "64",
    ];
    if let Some(depth) = &depth {
        args.extend(["--depth", depth.as_str()]);
    }
    assert_success(&ct3d(&args));
    out.to_owned()
}
