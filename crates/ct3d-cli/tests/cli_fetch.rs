//! `ct3d fetch mosmed` through the real binary, against a local HTTP server on 127.0.0.1
//! (`ct3d-test-server`, the one the library's tests use): exit codes, printed digests, files,
//! and a clean failure that leaves nothing behind.

use std::fs;
use std::path::Path;

use ct3d_test_server::{Server, closed_port, fake_scan, zip_of};

use crate::support::{assert_clean_failure, assert_success, ct3d, s, stdout};

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn fetch_mosmed_downloads_unpacks_and_prints_the_digests() {
    let normal = fake_scan(1, 20_000);
    let abnormal = fake_scan(2, 15_000);
    let ct0 = zip_of(&[("CT-0/study_0001.nii.gz", &normal)]);
    let ct23 = zip_of(&[("CT-23/study_0939.nii.gz", &abnormal)]);
    let server = Server::start();
    server.add("CT-0.zip", ct0.clone());
    server.add("CT-23.zip", ct23.clone());
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("MosMedData");

    let pin = format!("CT-23.zip={}", ct3d_fetch::sha256_hex(&ct23));
    let out = ct3d(&[
        "fetch",
        "mosmed",
        "--out",
        s(&out_dir),
        "--base-url",
        &server.base_url(),
        "--sha256",
        &pin,
    ]);
    assert_success(&out);
    assert_eq!(names(&out_dir), ["CT-0", "CT-23"]);
    assert_eq!(
        fs::read(out_dir.join("CT-0/study_0001.nii.gz")).unwrap(),
        normal
    );
    assert_eq!(
        fs::read(out_dir.join("CT-23/study_0939.nii.gz")).unwrap(),
        abnormal
    );
    let text = stdout(&out);
    assert!(text.contains(&ct3d_fetch::sha256_hex(&ct0)), "{text}");
    assert!(text.contains(&ct3d_fetch::sha256_hex(&ct23)), "{text}");
    assert!(text.contains("matches the pinned digest"), "{text}");

    // A second run finds both folders and downloads nothing.
    let again = ct3d(&[
        "fetch",
        "mosmed",
        "--out",
        s(&out_dir),
        "--base-url",
        &server.base_url(),
    ]);
    assert_success(&again);
    assert_eq!(server.requests().len(), 2);
    assert!(
        stdout(&again).contains("left as it is"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn fetch_with_a_wrong_digest_fails_and_leaves_nothing() {
    let server = Server::start();
    server.add(
        "CT-0.zip",
        zip_of(&[("CT-0/study_0001.nii.gz", &fake_scan(1, 1000))]),
    );
    let dir = tempfile::tempdir().unwrap();
    let pin = format!("CT-0.zip={}", "0".repeat(64));
    let out = ct3d(&[
        "fetch",
        "mosmed",
        "--out",
        s(dir.path()),
        "--base-url",
        &server.base_url(),
        "--sha256",
        &pin,
    ]);
    assert_clean_failure(&out, &["CT-0.zip", "SHA-256", "deleted"]);
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn fetch_from_an_unreachable_host_names_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}/", closed_port());
    let out = ct3d(&[
        "fetch",
        "mosmed",
        "--out",
        s(dir.path()),
        "--base-url",
        &base,
        "--retries",
        "0",
    ]);
    assert_clean_failure(
        &out,
        &[&format!("{base}CT-0.zip"), "gave up after 1 attempt)"],
    );
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn fetch_refuses_a_malformed_pin_before_downloading() {
    let dir = tempfile::tempdir().unwrap();
    let out = ct3d(&[
        "fetch",
        "mosmed",
        "--out",
        s(dir.path()),
        "--sha256",
        "CT-1.zip=abc",
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn fetch_help_names_the_license() {
    let out = ct3d(&["fetch", "mosmed", "--help"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("CC BY-NC-ND 3.0"), "{text}");
    assert!(text.contains("--base-url"), "{text}");
    assert!(text.contains("--sha256"), "{text}");
}
