//! End-to-end tests of the picture commands (`show`, `montage`, `plot`, `eval --plots`) and of
//! `ct3d report`, whose page is opened in headless Chromium: every image must decode and the
//! console must stay free of errors.
//!
//! The browser part needs Debian's `chromium` (or `CT3D_CHROMIUM=/path/to/chrome`). Without one it
//! is skipped with a message, unless `CT3D_REQUIRE_BROWSER=1` (set by `.ci/run`) makes a missing
//! browser a failure. It leaves `report-screenshot.png` and `report.pdf` in Cargo's test temp
//! folder (the path is printed) for a developer to look at.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    assert_clean_failure, assert_success, ct3d, ct3d_in, s, small_train_args, stderr, stdout,
};

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// A small trained run: 6 + 6 phantoms of 64×64, input 48³, filters 4,4,8,8, 2 epochs.
fn small_run(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    assert_success(&ct3d(&[
        "synth",
        "--out",
        s(&data),
        "--normal",
        "6",
        "--abnormal",
        "6",
        "--seed",
        "2",
        "--size-xy",
        "64",
    ]));
    let run = dir.join("run");
    assert_success(&ct3d(&small_train_args(
        &data,
        &run,
        &["--epochs", "2", "--seed", "1"],
    )));
    (data, run)
}

#[test]
fn show_and_montage_write_pictures_or_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_success(&ct3d(&[
        "synth",
        "--out",
        s(&data),
        "--normal",
        "1",
        "--abnormal",
        "0",
        "--size-xy",
        "64",
        "--depth",
        "44",
    ]));
    let scan = data.join("CT-0").join("phantom_0000.nii.gz");
    let slice = dir.path().join("slice.png");
    assert_success(&ct3d(&["show", s(&scan), "-o", s(&slice)]));
    assert_eq!(
        png_size(&slice),
        (512, 512),
        "128×128 slice at the default scale 4"
    );
    let rotated = dir.path().join("rotated.png");
    assert_success(&ct3d(&[
        "show",
        s(&scan),
        "--augment-angle",
        "-20",
        "--size",
        "32,32,40",
        "--scale",
        "1",
        "-o",
        s(&rotated),
    ]));
    assert_eq!(png_size(&rotated), (32, 32));
    assert_ne!(
        std::fs::read(&slice).unwrap(),
        std::fs::read(&rotated).unwrap()
    );

    let montage = dir.path().join("montage.png");
    assert_success(&ct3d(&["montage", s(&scan), "-o", s(&montage)]));
    assert_eq!(png_size(&montage), (1280, 512), "4 × 10 tiles of 128×128");
    let raw = dir.path().join("raw.png");
    let out = ct3d(&[
        "montage",
        s(&scan),
        "--raw",
        "--rows",
        "2",
        "--cols",
        "4",
        "--first",
        "36",
        "-o",
        s(&raw),
    ]);
    assert_success(&out);
    assert_eq!(png_size(&raw), (4 * 64, 2 * 64), "raw 64×64 slices");
    assert!(stdout(&out).contains("slices 36–43"));

    let out = ct3d(&["montage", s(&scan), "--raw", "--first", "10", "-o", s(&raw)]);
    assert_clean_failure(&out, &[s(&scan), "needs slices 10..50", "has 44"]);
    let out = ct3d(&["show", s(&scan), "--slice", "64", "-o", s(&slice)]);
    assert_clean_failure(&out, &["slice 64 is outside the volume's 64 slices"]);
    let out = ct3d(&["show", s(&dir.path().join("missing.nii")), "-o", s(&slice)]);
    assert_clean_failure(&out, &["missing.nii"]);
    let out = ct3d(&[
        "show",
        s(&scan),
        "-o",
        s(&dir.path().join("no/such/dir/x.png")),
    ]);
    assert_clean_failure(&out, &["x.png"]);
    assert_eq!(
        png_size(&slice),
        (512, 512),
        "a failed command leaves the old picture"
    );

    // The extension decides the format: .jpg is a JPEG; others are refused before any work.
    for (command, name) in [("show", "slice.jpg"), ("montage", "montage.JPEG")] {
        let jpeg = dir.path().join(name);
        assert_success(&ct3d(&[command, s(&scan), "-o", s(&jpeg)]));
        assert_eq!(
            jpeg_size(&jpeg),
            if command == "show" {
                (512, 512)
            } else {
                (1280, 512)
            }
        );
    }
    for name in ["slice.gif", "slice.nii"] {
        let other = dir.path().join(name);
        let out = ct3d(&["show", s(&scan), "-o", s(&other)]);
        assert_clean_failure(&out, &[s(&other), "name the output .png or .jpg"]);
        assert!(!other.exists());
    }
}

/// Width and height of a baseline JPEG (from its SOF0 segment).
fn jpeg_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..2], b"\xFF\xD8", "{} is not a JPEG", path.display());
    let mut i = 2;
    loop {
        assert_eq!(bytes[i], 0xFF, "JPEG segment marker");
        let marker = bytes[i + 1];
        let length = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xC0 {
            let be = |j: usize| u32::from(u16::from_be_bytes([bytes[j], bytes[j + 1]]));
            return (be(i + 7), be(i + 5));
        }
        i += 2 + length;
    }
}

/// Runs the whole picture and report flow on one small run (training is the slow part).
#[test]
fn plot_eval_plots_and_a_report_that_a_browser_renders() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, run) = small_run(dir.path());

    // Like `report`, `plot` writes into the run folder unless -o says otherwise.
    let out = ct3d_in(dir.path(), &["plot", s(&run)]);
    assert_success(&out);
    assert_eq!(png_size(&run.join("curves.png")), (1200, 400));
    assert!(
        stdout(&out).contains(s(&run.join("curves.png"))),
        "{}",
        stdout(&out)
    );
    assert!(
        !dir.path().join("curves.png").exists(),
        "nothing in the working folder"
    );
    let curves = dir.path().join("curves.png");
    assert_success(&ct3d(&["plot", s(&run), "-o", s(&curves)]));
    assert_eq!(png_size(&curves), (1200, 400));
    let curves_jpeg = dir.path().join("curves.jpg");
    assert_success(&ct3d(&["plot", s(&run), "-o", s(&curves_jpeg)]));
    assert_eq!(jpeg_size(&curves_jpeg), (1200, 400));
    let out = ct3d(&["plot", s(dir.path()), "-o", s(&curves)]);
    assert_clean_failure(&out, &["history.csv", "not found"]);

    // The "wrote" line goes to stdout, except with --json, whose stdout stays pure JSON.
    let plots = dir.path().join("plots");
    let out = ct3d(&["eval", "--run", s(&run), "--plots", s(&plots), "--json"]);
    assert_success(&out);
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout stays pure JSON");
    assert!(stderr(&out).contains("wrote "), "{}", stderr(&out));
    assert_eq!(png_size(&plots.join("roc.png")), (480, 480));
    assert_eq!(png_size(&plots.join("confusion.png")), (480, 480));
    let out = ct3d(&["eval", "--run", s(&run), "--plots", s(&plots)]);
    assert_success(&out);
    assert!(
        stdout(&out).contains(&format!("wrote {}", s(&plots.join("roc.png")))),
        "{}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("wrote"), "{}", stderr(&out));

    let report = dir.path().join("report.html");
    let out = ct3d(&[
        "report",
        s(&run),
        "-o",
        s(&report),
        "--examples",
        "1",
        "--tta",
        "2",
    ]);
    assert_success(&out);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("Test-time augmentation") && html.contains("mean of 2 augmented copies"));
    assert!(html.contains("Where the model looked"));
    for needle in [
        "Training curves",
        "Validation metrics",
        "ROC AUC",
        "sensitivity",
        "specificity",
        "confusion matrix",
        "best epoch",
        "Validation scans with predictions",
        "CT-0",
        "CT-23",
        "4, 4, 8, 8",
    ] {
        assert!(html.contains(needle), "{needle:?} missing from the report");
    }
    // Self-contained: every image inline, nothing fetched.
    let images = html.matches("<img ").count();
    assert!(images >= 4, "curves, ROC, confusion and montages: {images}");
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), images);
    for remote in ["http://", "https://", "<link", "<script", "@import"] {
        assert!(
            !html.contains(remote),
            "{remote:?} in a self-contained report"
        );
    }
    // Default location: inside the run.
    assert_success(&ct3d(&["report", s(&run)]));
    assert!(run.join("report.html").is_file());

    check_in_browser(&report);
}

fn find_browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CT3D_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    })
}

fn browser(chromium: &Path, profile: &Path) -> Command {
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        // Any attempt to reach the network fails, so a non-inline resource shows up as an error.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// Runs the browser on `page` with extra arguments and a fresh profile; it must succeed.
fn browser_succeeds(chromium: &Path, args: &[&str], page: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = browser(chromium, profile.path())
        .args(args)
        .arg(page)
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens a copy of the report with a probe script appended (the report itself has no script):
/// after `load` it writes, into the DOM, how many images there are and which failed to decode,
/// plus any script error. `--dump-dom` prints the DOM after loading.
fn check_in_browser(report: &Path) {
    let required = std::env::var("CT3D_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let Some(chromium) = find_browser() else {
        assert!(
            !required,
            "CT3D_REQUIRE_BROWSER=1 but no chromium found (install Debian's `chromium`)"
        );
        eprintln!("SKIPPED the browser check: no chromium on PATH (set CT3D_CHROMIUM)");
        return;
    };
    let dir = report.parent().unwrap();
    let probe = dir.join("report-probe.html");
    let html = std::fs::read_to_string(report).unwrap();
    let script = r#"<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement('pre');
  out.id = 'ct3d-probe';
  out.textContent = 'PROBE images=' + images.length + ' broken=' + JSON.stringify(broken) +
    ' errors=' + JSON.stringify(window.__errors) + ' END';
  document.body.appendChild(out);
});
</script>"#;
    std::fs::write(
        &probe,
        html.replace("</body>", &format!("{script}\n</body>")),
    )
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = browser(&chromium, profile.path())
        .arg("--dump-dom")
        .arg(&probe)
        .output()
        .expect("chromium starts");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    // The probe's output is appended to <body>, after the script whose source also holds the
    // marker: take the last occurrence.
    let probe_line = dom
        .rsplit_once("PROBE ")
        .and_then(|(_, rest)| rest.split(" END").next())
        .unwrap_or_else(|| panic!("the probe did not run; DOM: {dom:.2000}\nlog: {log}"));
    let images = html.matches("<img ").count();
    assert_eq!(
        probe_line,
        format!("images={images} broken=[] errors=[]"),
        "browser log: {log}"
    );
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains(":ERROR:") || l.contains("Uncaught")))
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors: {console_errors:?}"
    );

    // Pictures for the developer: the page as a laptop shows it, and as it prints.
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let screenshot = keep.join("report-screenshot.png");
    let pdf = keep.join("report.pdf");
    browser_succeeds(
        &chromium,
        &[
            "--window-size=1366,3000",
            "--hide-scrollbars",
            &format!("--screenshot={}", screenshot.display()),
        ],
        report,
    );
    assert_eq!(png_size(&screenshot), (1366, 3000));
    browser_succeeds(
        &chromium,
        &[
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={}", pdf.display()),
        ],
        report,
    );
    let pdf_bytes = std::fs::read(&pdf).unwrap();
    assert!(pdf_bytes.starts_with(b"%PDF") && pdf_bytes.len() > 10_000);
    eprintln!(
        "browser check passed; look at {} and {}",
        screenshot.display(),
        pdf.display()
    );
}

/// The README's first command, cut to one epoch: every stage runs and leaves its outputs. (The
/// full demo's accuracy is measured by running it; see the README.)
#[test]
fn demo_runs_every_stage_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let result = ct3d(&["demo", "--out", s(&out), "--epochs", "1"]);
    assert_success(&result);
    let text = stdout(&result);
    for stage in ["== 1/6", "== 2/6", "== 3/6", "== 4/6", "== 5/6", "== 6/6"] {
        assert!(text.contains(stage), "{stage} missing: {text}");
    }
    assert_eq!(
        text.matches("percent confident that CT scan is").count(),
        4,
        "two sentences for each held-out scan: {text}"
    );
    assert!(text.contains("Open the report:"));
    assert_eq!(
        std::fs::read_dir(out.join("data/CT-0")).unwrap().count(),
        60
    );
    assert_eq!(
        std::fs::read_dir(out.join("data/CT-23")).unwrap().count(),
        60
    );
    for picture in ["plots/curves.png", "plots/roc.png", "plots/confusion.png"] {
        png_size(&out.join(picture));
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("ct3d report: run"));
    assert!(out.join("held-out/abnormal_held_out.nii.gz").is_file());
    assert!(
        out.join(".ct3d-demo").is_file(),
        "the demo marks its folder"
    );
}

/// `demo --out DIR` never trains on (or overwrites) a folder it did not make.
#[test]
fn demo_refuses_a_folder_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(mine.join("data/CT-0")).unwrap();
    std::fs::write(mine.join("data/CT-0/my_scan.nii.gz"), b"a user's scan").unwrap();
    let out = ct3d(&["demo", "--out", s(&mine), "--epochs", "1"]);
    assert_clean_failure(&out, &[s(&mine), "not made by `ct3d demo`", "--out"]);
    let left: Vec<_> = std::fs::read_dir(&mine)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["data"], "the demo wrote into a user's folder");
    assert_eq!(
        std::fs::read_dir(mine.join("data/CT-0")).unwrap().count(),
        1
    );
}
