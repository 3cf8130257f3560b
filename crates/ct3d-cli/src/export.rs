//! `ct3d export`: a run as an ONNX model (see [`ct3d::export`]).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use ct3d_model::onnx::BatchSize;

use crate::args::WeightsArg;

/// The flags of `ct3d export` (its help text is on [`crate::cli::Command::Export`]).
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run folder written by `ct3d train`.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// The ONNX file to write.
    #[arg(long, value_name = "FILE.onnx")]
    onnx: PathBuf,
    /// Which weights.
    #[arg(long, value_enum, default_value_t = WeightsArg::Best)]
    weights: WeightsArg,
    /// The batch dimension: `dynamic` (any N) or a fixed number of volumes per call.
    #[arg(long, value_name = "dynamic|N", default_value = "dynamic")]
    batch: String,
}

impl ExportArgs {
    /// Exports the run and prints what the file holds.
    pub fn run(self) -> Result<()> {
        let batch = match self.batch.as_str() {
            "dynamic" => BatchSize::Dynamic,
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => BatchSize::Fixed(n),
                _ => bail!("--batch {n:?}: expected `dynamic` or a positive number of volumes"),
            },
        };
        let exported =
            ct3d::export::export_onnx(&self.run, self.weights.into(), batch, &self.onnx)?;
        let [x, y, z] = exported.input_size;
        let n = match batch {
            BatchSize::Dynamic => "N".to_owned(),
            BatchSize::Fixed(n) => n.to_string(),
        };
        println!(
            "wrote {} ({} KiB): {} in ONNX opset {}, input [{n}, 1, {x}, {y}, {z}] float32 in [0, 1], outputs logit and probability{}",
            exported.path.display(),
            exported.bytes.div_ceil(1024),
            exported.architecture,
            ct3d_model::onnx::OPSET,
            exported.temperature.map_or(String::new(), |t| format!(
                " (calibrated: temperature {t:.4})"
            ))
        );
        println!("metadata:");
        for (key, value) in &exported.metadata {
            println!("  {key} = {value}");
        }
        Ok(())
    }
}
