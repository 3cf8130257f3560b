//! Progress bars for long work: drawn on a terminal; when stderr is redirected (CI logs) the bars
//! are hidden and long work prints a plain line now and then instead ([`PlainProgress`]). Never a
//! dependency of the library crates, which report progress through callbacks.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `what` (e.g. "prepare"), with count, rate and ETA.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .expect("static template is valid")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A spinner for work of unknown length, with the elapsed time.
pub fn spinner(what: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .expect("static template is valid"),
    );
    spinner.set_message(what.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// Environment variable: seconds between plain progress lines when stderr is not a terminal.
pub const PROGRESS_SECONDS_VAR: &str = "CT3D_PROGRESS_SECONDS";

/// Seconds between plain progress lines unless [`PROGRESS_SECONDS_VAR`] says otherwise.
const DEFAULT_PROGRESS_SECONDS: f64 = 30.0;

/// Plain progress lines on stderr for logs, where the bars draw nothing: within one task (an
/// epoch, the preparation) at most one line per interval, so a long epoch is not silent.
pub struct PlainProgress {
    interval: Duration,
    state: Mutex<PlainState>,
}

struct PlainState {
    task: String,
    started: Instant,
    last_line: Instant,
}

impl PlainProgress {
    /// Lines every `CT3D_PROGRESS_SECONDS` (default 30; 0 prints every step) when stderr is not
    /// a terminal; `None` on a terminal, where the bars show progress.
    pub fn for_stderr() -> Option<Self> {
        if std::io::stderr().is_terminal() {
            return None;
        }
        let seconds = std::env::var(PROGRESS_SECONDS_VAR)
            .ok()
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(DEFAULT_PROGRESS_SECONDS);
        Some(Self::every(Duration::from_secs_f64(seconds)))
    }

    /// Lines at most every `interval`.
    pub fn every(interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            interval,
            state: Mutex::new(PlainState {
                task: String::new(),
                started: now,
                last_line: now,
            }),
        }
    }

    /// One step of `task` (e.g. "epoch 3"): prints `line(elapsed since the task started)` on
    /// stderr if the interval has passed since the task's start or its last line. A new task
    /// restarts the clock.
    pub fn step(&self, task: &str, line: impl FnOnce(Duration) -> String) {
        if let Some(text) = self.due(task, Instant::now()).map(line) {
            eprintln!("{text}");
        }
    }

    /// The time since `task` started, when a line is due at `now`.
    fn due(&self, task: &str, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.task != task {
            task.clone_into(&mut state.task);
            state.started = now;
            state.last_line = now;
        }
        if now.duration_since(state.last_line) < self.interval {
            return None;
        }
        state.last_line = now;
        Some(now.duration_since(state.started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_once_per_interval_and_task() {
        let progress = PlainProgress::every(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(progress.due("epoch 1", t0), None, "not at the task's start");
        assert_eq!(progress.due("epoch 1", t0 + Duration::from_secs(10)), None);
        let at = t0 + Duration::from_secs(31);
        assert_eq!(progress.due("epoch 1", at), Some(Duration::from_secs(31)));
        assert_eq!(progress.due("epoch 1", at + Duration::from_secs(5)), None);
        // A new epoch starts its own clock.
        assert_eq!(progress.due("epoch 2", at + Duration::from_secs(40)), None);

        let every = PlainProgress::every(Duration::ZERO);
        assert_eq!(every.due("epoch 1", t0), Some(Duration::ZERO));
        assert!(every.due("epoch 1", t0).is_some());
    }
}
