//! Progress bars for long work: drawn on a terminal, silent when stderr is redirected (CI logs stay
//! clean), and never a dependency of the library crates, which report progress through callbacks.

use std::time::Duration;

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
