//! `ct3d fetch`: download public datasets. A thin layer over `ct3d-fetch` that parses the flags,
//! draws a progress bar (bytes, rate, ETA) and prints the digests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use ct3d_fetch::{DownloadedFile, FetchError, FetchObserver, FetchOptions, RetryPolicy};
use indicatif::{ProgressBar, ProgressStyle};

use crate::progress;

/// Which dataset `ct3d fetch` downloads.
#[derive(Debug, Subcommand)]
pub enum FetchDataset {
    /// Download the Keras example's MosMedData subset into DIR/CT-0 (normal) and DIR/CT-23
    /// (abnormal), ready for `ct3d train --data DIR`.
    ///
    /// Fetches CT-0.zip and CT-23.zip (100 scans each) from the example's release
    /// (https://github.com/hasibzunair/3D-image-classification-tutorial/releases/tag/v0.2, or
    /// --base-url), resuming an interrupted download (run the command again), retrying network
    /// failures, checking the size the server announced and printing each archive's SHA-256 (pin it
    /// with --sha256 to have it enforced). The archives are unpacked safely (no path may leave the
    /// class folder, no links, no zip bombs) and atomically, then deleted. Class folders that
    /// already hold files are left alone unless --force is given.
    ///
    /// License: MosMedData (Morozov et al., 2020) is CC BY-NC-ND 3.0: non-commercial use with
    /// attribution; it may not be redistributed in modified form (preprocessed copies included).
    #[command(
        after_help = "Example:\n  ct3d fetch mosmed --out MosMedData\n  ct3d train --data MosMedData --out runs/mosmed --seed 1"
    )]
    Mosmed(MosmedArgs),
}

/// Flags of `ct3d fetch mosmed`.
#[derive(Debug, Args)]
pub struct MosmedArgs {
    /// Dataset folder to fill (created if missing); the scans go to DIR/CT-0 and DIR/CT-23.
    /// Downloads in progress wait in DIR/.ct3d-download.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Download CT-0.zip and CT-23.zip from this folder URL instead (a mirror).
    #[arg(long, value_name = "URL", default_value = ct3d_fetch::DEFAULT_BASE_URL)]
    base_url: String,
    /// Pin an archive's SHA-256 (64 hex digits): a download that differs is deleted and the
    /// command fails. NAME is CT-0.zip or CT-23.zip; repeat the flag for both.
    #[arg(long = "sha256", value_name = "NAME=HEX", value_parser = parse_pin)]
    sha256: Vec<(String, String)>,
    /// Retry a failed download up to N more times (waiting 1 s, 2 s, 4 s, ...); attempts that
    /// made progress do not count.
    #[arg(long, default_value_t = 3, value_name = "N")]
    retries: u32,
    /// Download and replace class folders that already hold files.
    #[arg(long)]
    force: bool,
}

fn parse_pin(text: &str) -> Result<(String, String), String> {
    ct3d_fetch::parse_sha256_pin(text).map_err(|e| e.to_string())
}

/// The flags of `ct3d fetch` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(subcommand)]
    dataset: FetchDataset,
}

impl FetchArgs {
    /// Downloads the dataset.
    pub fn run(self) -> Result<()> {
        match self.dataset {
            FetchDataset::Mosmed(args) => mosmed(args),
        }
    }
}

fn mosmed(args: MosmedArgs) -> Result<()> {
    let mut options = FetchOptions::new(&args.out);
    options.base_url = args.base_url;
    options.sha256 = args.sha256.into_iter().collect::<BTreeMap<_, _>>();
    options.download.retry = RetryPolicy {
        retries: args.retries,
        ..RetryPolicy::default()
    };
    options.force = args.force;

    let bar = BarProgress::default();
    let result = ct3d_fetch::fetch_mosmed(&options, &bar);
    bar.clear();
    let outcomes = result?;
    for outcome in &outcomes {
        let folder = outcome.folder.display();
        match &outcome.extracted {
            Some(extracted) => println!(
                "{folder}: {} file{}, {}",
                extracted.files,
                if extracted.files == 1 { "" } else { "s" },
                indicatif::HumanBytes(extracted.bytes)
            ),
            None => println!("{folder}: already holds files, left as it is (--force replaces it)"),
        }
    }
    println!(
        "Next: ct3d train --data {} --out runs/mosmed --seed 1",
        args.out.display()
    );
    Ok(())
}

/// Draws one bar per download and prints the steps worth keeping.
#[derive(Default)]
struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl BarProgress {
    fn bar(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clear(&self) {
        if let Some(bar) = self.bar().take() {
            bar.finish_and_clear();
        }
    }

    /// Shows `bar` in place of the current one.
    fn show(&self, bar: ProgressBar) {
        self.clear();
        *self.bar() = Some(bar);
    }

    /// Prints a line above the bar (or plainly when there is none).
    fn note(&self, line: String) {
        match &*self.bar() {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl FetchObserver for BarProgress {
    fn skipped(&self, folder: &Path) {
        self.note(format!(
            "{}: already holds files, skipped",
            folder.display()
        ));
    }

    fn attempt(&self, url: &str, attempt: u32) {
        if attempt == 1 {
            self.note(format!("downloading {url}"));
        }
    }

    fn receiving(&self, url: &str, offset: u64, total: Option<u64>) {
        self.clear();
        if offset > 0 {
            self.note(format!(
                "resuming at {} ({offset} bytes already here)",
                indicatif::HumanBytes(offset)
            ));
        }
        let bar = byte_bar(total, file_name(url));
        bar.set_position(offset);
        self.show(bar);
    }

    fn bytes(&self, _url: &str, received: u64, _total: Option<u64>) {
        if let Some(bar) = &*self.bar() {
            bar.set_position(received);
        }
    }

    fn restarted_from_zero(&self, _url: &str, discarded: u64) {
        self.note(format!(
            "the server does not resume downloads: starting over ({discarded} bytes discarded)"
        ));
    }

    fn retrying(&self, _url: &str, error: &FetchError, wait: Duration) {
        self.note(format!(
            "{}; retrying in {}",
            crate::flags::line(error),
            indicatif::HumanDuration(wait)
        ));
    }

    fn downloaded(&self, file: &DownloadedFile<'_>) {
        self.clear();
        let name = file_name(file.url);
        let sha256 = file.sha256;
        let how = if file.verified {
            "matches the pinned digest".to_owned()
        } else {
            format!("not pinned: --sha256 {name}={sha256} checks it next time")
        };
        let from = if file.reused {
            ", from an earlier run"
        } else {
            ""
        };
        // The digest goes to stdout: it is a result, not chatter.
        println!(
            "{name}: {} bytes{from}, SHA-256 {sha256} ({how})",
            file.bytes
        );
    }

    fn extracting(&self, archive: &Path, folder: &Path) {
        self.show(progress::spinner(&format!(
            "unpacking {} into {}",
            archive.file_name().unwrap_or_default().to_string_lossy(),
            folder.display()
        )));
    }

    fn extracted(&self, _folder: &Path, _files: usize, _bytes: u64) {
        self.clear();
    }
}

/// A bar in bytes with rate and ETA, or a byte counter when the size is unknown.
fn byte_bar(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} (eta {eta})",
                )
                .expect("static template is valid")
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{prefix:>10.bold} {spinner} {bytes} {bytes_per_sec}")
                    .expect("static template is valid"),
            );
            bar
        }
    };
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}
