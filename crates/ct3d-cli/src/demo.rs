//! `ct3d demo`: runs [`ct3d::demo::run_demo`] and prints each step as the single commands would.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use ct3d::demo::{DemoObserver, DemoOptions, DemoSettings, DemoStep, run_demo};
use ct3d::evaluate::{EvalSplit, Evaluation, LoadedRun, Prediction, WeightsChoice};
use ct3d::train::{TrainObserver, TrainOutcome};
use indicatif::ProgressBar;

use crate::args::{DeviceArgs, count};
use crate::train::ConsoleObserver;

/// The flags of `ct3d demo` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working folder for the demo's data, cache, run, pictures and report.
    #[arg(long, default_value = "ct3d-demo", value_name = "DIR")]
    out: PathBuf,
    /// The example's full settings: 100 + 100 phantoms of 512×512, input 128×128×64,
    /// learning rate 1e-4, up to 100 epochs with patience 15.
    #[arg(long)]
    full: bool,
    // The help is built from the demo's settings so that it cannot drift from them.
    #[arg(long, value_name = "N", help = epochs_help())]
    epochs: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `demo --epochs`'s help, with the real defaults of the quick and the full settings.
fn epochs_help() -> String {
    format!(
        "Number of epochs (default: {}, or {} with --full)",
        DemoSettings::quick().epochs,
        DemoSettings::full().epochs
    )
}

impl DemoArgs {
    /// Runs the demo with the console's output.
    pub fn run(self) -> Result<()> {
        let started = Instant::now();
        let mut settings = if self.full {
            DemoSettings::full()
        } else {
            DemoSettings::quick()
        };
        settings.epochs = self.epochs.unwrap_or(settings.epochs);
        println!(
            "ct3d demo: synthetic phantoms → preprocessing → the Keras example's 3D CNN → report, in {}",
            self.out.display()
        );
        let console = DemoConsole {
            full: self.full,
            training: ConsoleObserver::new(None),
            bar: Mutex::new(None),
        };
        let options = DemoOptions {
            out: self.out,
            settings,
            device: self.device.device,
        };
        let outcome = run_demo(&options, &console);
        console.training.clear();
        let outcome = outcome.map_err(|error| match error {
            // The library speaks of a folder; here it is the flag's.
            ct3d::demo::DemoError::NotDemoFolder(_) => anyhow::anyhow!("{error} (--out)"),
            error => error.into(),
        })?;
        println!(
            "\nDone in {:.0} s. Open the report: {}",
            started.elapsed().as_secs_f64(),
            outcome.report.display()
        );
        Ok(())
    }
}

/// Prints the demo's steps as `synth`, `train`, `eval`, `predict`, `plot` and `report` print
/// their work.
struct DemoConsole {
    full: bool,
    training: ConsoleObserver,
    bar: Mutex<Option<ProgressBar>>,
}

impl DemoObserver for DemoConsole {
    fn step(&self, step: &DemoStep) {
        let title = match step {
            DemoStep::Synthesise { per_class } => {
                format!("synthesise {per_class} normal and {per_class} abnormal phantom scans")
            }
            DemoStep::HeldOut => {
                "synthesise 2 held-out scans (not in the dataset) for prediction".to_owned()
            }
            DemoStep::Train {
                input: [w, h, d],
                epochs,
            } => format!(
                "train the example's model at {w}×{h}×{d} for up to {}{}",
                count(*epochs, "epoch"),
                if self.full {
                    " (the example's settings)"
                } else {
                    " (the example: 128×128×64, 100 epochs; `ct3d demo --full` runs those)"
                }
            ),
            DemoStep::Evaluate => "evaluate the best weights on the validation scans".to_owned(),
            DemoStep::Predict => "predict the two held-out scans".to_owned(),
            DemoStep::Report => "write the report".to_owned(),
        };
        println!("\n== {}/{} {title}", step.number(), DemoStep::COUNT);
    }

    fn phantom_written(&self, done: usize, total: usize) {
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bar.get_or_insert_with(|| crate::progress::bar(total as u64, "synth"));
        bar.set_position(done as u64);
    }

    fn synthesised(&self, out: &Path, paths: &[PathBuf], elapsed: Duration) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
        let per_class = paths.len() / 2;
        println!(
            "wrote {} ({per_class} CT-0, {per_class} CT-23, seed {}) to {} in {:.1}s",
            count(paths.len(), "phantom scan"),
            ct3d::demo::DEMO_SEED,
            out.display(),
            elapsed.as_secs_f64()
        );
    }

    fn held_out(&self, dir: &Path, _paths: &[PathBuf]) {
        println!("wrote {}", dir.display());
    }

    fn training(&self) -> &dyn TrainObserver {
        &self.training
    }

    fn trained(&self, outcome: &TrainOutcome) {
        self.training.clear();
        crate::train::print_outcome(outcome);
    }

    fn evaluated(&self, run: &LoadedRun, evaluation: &Evaluation, pictures: &[PathBuf; 2]) {
        crate::model::warn_changed_data(evaluation);
        let [roc, confusion] = pictures;
        println!("wrote {} and {}", roc.display(), confusion.display());
        crate::model::print_evaluation(run, evaluation, EvalSplit::Val, WeightsChoice::Best);
    }

    fn predicted(&self, run: &LoadedRun, prediction: &Prediction) {
        println!("{}:", prediction.path.display());
        crate::model::print_sentences(&run.config.train.classes, prediction.probability);
    }

    fn wrote(&self, path: &Path) {
        println!("wrote {}", path.display());
    }

    fn reported(&self, path: &Path, html_bytes: usize) {
        crate::pictures::print_report_written(path, html_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_help_gives_the_real_default_epochs() {
        use clap::CommandFactory;
        let mut cli = crate::Cli::command();
        let demo = cli
            .find_subcommand_mut("demo")
            .expect("demo is a subcommand");
        // Whitespace collapsed: clap wraps long help at the terminal's width.
        let help = demo.render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let expected = format!(
            "default: {}, or {} with --full",
            DemoSettings::quick().epochs,
            DemoSettings::full().epochs
        );
        assert!(help.contains(&expected), "{expected:?} not in:\n{help}");
        assert!(
            help.contains("Run the whole pipeline on synthetic phantoms"),
            "{help}"
        );
    }
}
