//! `ct3d calibrate`: its flags, and the before/after table it prints around
//! `ct3d::evaluate::calibrate`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use ct3d::evaluate::{self, ThresholdChoice, WeightsChoice};
use ct3d::metrics::BinaryMetrics;

use crate::args::{DeviceArgs, WeightsArg, count};
use crate::model::{name_data_override, warn_changed_data_paths};

/// `--threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ThresholdArg {
    /// Keep 0.5.
    #[value(name = "0.5")]
    Half,
    /// Maximise sensitivity + specificity (Youden's J) on the validation scans.
    Youden,
}

impl From<ThresholdArg> for ThresholdChoice {
    fn from(arg: ThresholdArg) -> Self {
        match arg {
            ThresholdArg::Half => Self::Half,
            ThresholdArg::Youden => Self::Youden,
        }
    }
}

/// The flags of `ct3d calibrate` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The run folder written by `ct3d train`.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// The decision threshold to record: 0.5, or Youden's J on the validation scans.
    #[arg(long, value_enum, default_value_t = ThresholdArg::Half)]
    threshold: ThresholdArg,
    /// Which weights to calibrate (the calibration applies to these weights only).
    #[arg(long, value_enum, default_value_t = WeightsArg::Best)]
    weights: WeightsArg,
    /// Use the run's recorded validation scans that are still there, as they are now, instead of
    /// refusing.
    #[arg(long)]
    allow_changed_data: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl CalibrateArgs {
    /// Fits and records the temperature (and threshold), and prints NLL, ECE and Brier score
    /// before and after.
    pub fn run(self) -> Result<()> {
        let weights = WeightsChoice::from(self.weights);
        let mut loaded = evaluate::load_run(&self.run, weights, self.device.device)?;
        let outcome =
            evaluate::calibrate(&mut loaded, self.threshold.into(), self.allow_changed_data)
                .map_err(name_data_override)?;
        warn_changed_data_paths(&outcome.missing, &outcome.changed);
        let c = &outcome.calibration;
        println!(
            "fitted on {} (the run's recorded validation scans), {} weights",
            count(c.scans, "scan"),
            weights.name()
        );
        println!(
            "temperature T = {:.4} (probability = sigmoid(logit / T))",
            c.temperature
        );
        if outcome.fit.at_bound {
            eprintln!(
                "warning: the temperature reached the end of its range ({:.2}): the validation \
                 scans are perfectly separated (or ranked backwards), so they say little about \
                 calibration; calibrate on more validation scans",
                c.temperature
            );
        }
        if let Some(t) = &c.threshold {
            println!(
                "threshold {:.4} (Youden's J on the calibrated probabilities)",
                t.value
            );
        }
        let (before, after) = (&outcome.before, &outcome.after);
        println!("{:<14} {:>10} {:>10}", "", "before", "after");
        println!("{:<14} {:>10.4} {:>10.4}", "NLL", c.nll[0], c.nll[1]);
        println!(
            "{:<14} {:>10.4} {:>10.4}",
            "ECE (15 bins)", c.ece[0], c.ece[1]
        );
        println!(
            "{:<14} {:>10.4} {:>10.4}",
            "Brier score", c.brier[0], c.brier[1]
        );
        let row = |name: &str, pick: fn(&BinaryMetrics) -> Option<f64>| {
            let cell = |m: &BinaryMetrics| pick(m).map_or("n/a".to_owned(), |v| format!("{v:.4}"));
            println!("{name:<14} {:>10} {:>10}", cell(before), cell(after));
        };
        row("accuracy", |m| Some(m.accuracy));
        row("sensitivity", |m| m.sensitivity);
        row("specificity", |m| m.specificity);
        println!(
            "(on the scans it was fitted on: this shows what the fit did, not how it does on new \
             scans)"
        );
        println!(
            "wrote {}; `ct3d eval` and `ct3d predict` now give calibrated probabilities (--raw \
             for the network's own)",
            ct3d::calibration::calibration_path(&self.run).display()
        );
        Ok(())
    }
}
