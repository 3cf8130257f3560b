//! `ct3d serve`: a run behind HTTP (see [`ct3d_serve`]).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::args::WeightsArg;

/// The flags of `ct3d serve` (its help text is on [`crate::cli::Command::Serve`]).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The run folder written by `ct3d train`.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Which weights.
    #[arg(long, value_enum, default_value_t = WeightsArg::Best)]
    weights: WeightsArg,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Inference workers, each with its own copy of the network (default: the number of cores).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Requests that may wait for a worker; beyond them the service answers 503 with
    /// Retry-After at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    queue: usize,
    /// Largest body accepted, in MiB (a 512×512×60 int16 scan is 30 MiB uncompressed); larger
    /// bodies get 413.
    #[arg(long, value_name = "MiB", default_value_t = 256)]
    max_body_mib: usize,
    /// Longest a request may take in seconds, upload and waiting included; slower ones get 408.
    #[arg(long, value_name = "S", default_value_t = 120)]
    request_timeout: u64,
    /// Seconds a connection may stay silent (an idle keep-alive connection, a stalled upload)
    /// before it is closed.
    #[arg(long, value_name = "S", default_value_t = 30)]
    idle_timeout: u64,
    /// Testing aid: every job sleeps this many milliseconds first.
    #[arg(long, hide = true, default_value_t = 0)]
    test_delay_ms: u64,
    /// Testing aid: honour the `x-ct3d-test-panic` request header.
    #[arg(long, hide = true)]
    test_hooks: bool,
}

impl ServeArgs {
    /// Serves until SIGTERM or Ctrl-C, then drains the requests in flight and returns.
    pub fn run(self) -> Result<()> {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let config = ct3d_serve::ServeConfig {
            run: self.run.clone(),
            weights: self.weights.into(),
            addr: self.addr,
            workers,
            queue: self.queue,
            max_body_bytes: self.max_body_mib.saturating_mul(1 << 20),
            request_timeout: Duration::from_secs(self.request_timeout.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
            job_delay: Duration::from_millis(self.test_delay_ms),
            test_hooks: self.test_hooks,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let run = self.run.clone();
        runtime.block_on(ct3d_serve::serve(
            config,
            move |addr| {
                println!(
                    "serving {} on http://{addr} ({workers} workers): POST /v1/predict, GET /healthz, /readyz, /metrics",
                    run.display()
                );
                let _ = std::io::stdout().flush();
            },
            shutdown_signal(),
        ))?;
        println!("stopped: requests in flight were answered");
        Ok(())
    }
}

/// Resolves on SIGTERM (what a container orchestrator sends) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
