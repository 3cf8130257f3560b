//! `ct3d`: the command-line front end. Each subcommand is an `…Args` struct (in the file of its
//! group: `volume`, `train`, `model`, `pictures`, `fetch`, `demo`) whose `run` converts the flags
//! to the library's types, calls one or two library functions and prints the outcome; this file
//! only parses and dispatches, and prints an error's chain once, on one line, worded with the
//! CLI's flags ([`flags`]).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};

mod args;
mod calibrate;
mod cli;
mod demo;
mod explain;
mod export;
mod fetch;
mod flags;
mod huge_pages;
mod model;
mod pictures;
mod progress;
mod serve;
mod sweep;
mod train;
mod volume;

#[global_allocator]
static ALLOCATOR: huge_pages::HugePageAllocator = huge_pages::HugePageAllocator;

fn main() -> ExitCode {
    restore_default_sigpipe();
    // Parsed in two steps to keep the matches: `train --resume` asks which flags were typed.
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Info(args) => args.run(),
        Command::Preprocess(args) => args.run(),
        Command::Rotate(args) => args.run(),
        Command::Prepare(args) => args.run(),
        Command::Synth(args) => args.run(),
        Command::Train(args) => args.run(matches.subcommand_matches("train")),
        Command::Cv(args) => args.run(),
        Command::Sweep(args) => args.run(),
        Command::Eval(args) => args.run(),
        Command::Predict(args) => args.run(),
        Command::Explain(args) => args.run(),
        Command::Calibrate(args) => args.run(),
        Command::Show(args) => args.run(),
        Command::Montage(args) => args.run(),
        Command::Plot(args) => args.run(),
        Command::Report(args) => args.run(),
        Command::Cache(args) => args.run(),
        Command::Fetch(args) => args.run(),
        Command::Export(args) => args.run(),
        Command::Serve(args) => args.run(),
        Command::Summary(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Demo(args) => args.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", flags::message(&err));
            ExitCode::FAILURE
        }
    }
}

/// A seed from the clock and the process id, for runs without --seed (it is printed and recorded).
pub(crate) fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Keep it short enough to type back in.
    ct3d_volume::rng::derive_seed(nanos, &[u64::from(std::process::id())]) % 1_000_000
}

/// Lets `ct3d predict ... | head` end quietly when the reader goes away, like other Unix tools,
/// instead of panicking on the failed write (Rust ignores SIGPIPE by default).
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; setting a signal's
    // disposition to SIG_DFL has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
