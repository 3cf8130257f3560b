//! Times one training step and one-scan inference of the seed's model on random data.
//!
//! ```text
//! cargo run --release -p ct3d-model --example bench -- [cpu|cuda|vulkan] [batch] [x,y,z] [repeats]
//! ```
//! Defaults: `cpu 2 128,128,64 3`. Prints every sample and the median, in seconds.

use std::process::ExitCode;
use std::time::Duration;

use ct3d_model::bench::{Timing, bench_predict, bench_train_step};
use ct3d_model::{Architecture, DeviceChoice, ModelConfig};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let choice: DeviceChoice = arg(0, "cpu").parse().map_err(|e| format!("{e}"))?;
    let batch: usize = arg(1, "2").parse().map_err(|e| format!("batch: {e}"))?;
    let size = parse_size(&arg(2, "128,128,64"))?;
    let repeats: usize = arg(3, "3").parse().map_err(|e| format!("repeats: {e}"))?;
    let device = choice.resolve().map_err(|e| e.to_string())?;

    println!(
        "device {choice}, batch {batch}, input {size:?}, {repeats} timed repeats after 1 warm-up"
    );
    let config = ModelConfig {
        input: size,
        ..ModelConfig::default()
    };
    let architecture = Architecture::SeedCnn;
    let train = bench_train_step(architecture, &config, &device, batch, repeats)
        .map_err(|e| e.to_string())?;
    report("train step", &train);
    let predict =
        bench_predict(architecture, &config, &device, repeats).map_err(|e| e.to_string())?;
    report("predict (1 scan)", &predict);
    Ok(())
}

fn parse_size(text: &str) -> Result<[usize; 3], String> {
    let parts: Vec<usize> = text
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("size `{text}`: {e}"))?;
    <[usize; 3]>::try_from(parts).map_err(|_| format!("size `{text}`: expected x,y,z"))
}

fn report(what: &str, timing: &Timing) {
    let seconds = |d: &Duration| format!("{:.3}", d.as_secs_f64());
    let samples: Vec<String> = timing.samples.iter().map(seconds).collect();
    println!(
        "{what}: median {} s (samples: {})",
        seconds(&timing.median()),
        samples.join(", ")
    );
}
