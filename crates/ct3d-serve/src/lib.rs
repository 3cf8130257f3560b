//! # ct3d-serve
//!
//! A trained ct3d run behind HTTP, for deployment next to a PACS bridge or an inference gateway:
//!
//! - `POST /v1/predict`: the body is one scan, a NIfTI file (`.nii`, or gzip-compressed) or a zip
//!   of one DICOM series; the answer is JSON with the probability (calibrated when the run is),
//!   the class, the run's config hash and per-stage timings.
//! - `GET /healthz` (the process answers), `GET /readyz` (the weights are loaded; 503 before),
//!   `GET /metrics` (Prometheus text format: requests by status, latency histograms per stage,
//!   queue depth, requests in flight, model load time).
//!
//! # Bounded work
//! A fixed pool of inference workers (threads, each with its own copy of the network) takes jobs
//! from a bounded queue. When the queue is full the service answers 503 with `Retry-After` at
//! once instead of piling up. Bodies above the size limit get 413; a request (upload included)
//! that outlives the request timeout gets 408, so a slow client cannot hold a worker: the body is
//! read completely before a job is queued. A connection on which the client sends nothing for the
//! idle timeout (between requests, or mid-upload) is closed. Every bad body gets 400 with a one-line JSON error, and
//! the service keeps serving. A panic inside a job becomes a 500 naming a logged id, and the worker
//! survives. SIGTERM (or Ctrl-C) stops accepting connections, lets the requests in flight finish,
//! and returns.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ct3d::inference::{LoadedRun, StageTimes, WeightsChoice, load_run, predict_scan_timed};
use ct3d_model::DeviceChoice;
use serde::Serialize;

mod metrics;

pub use metrics::Metrics;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The run folder.
    pub run: PathBuf,
    /// Which weights.
    pub weights: WeightsChoice,
    /// Where to listen (`127.0.0.1:8080`; port 0 picks a free one).
    pub addr: SocketAddr,
    /// Inference workers (at least 1).
    pub workers: usize,
    /// Jobs that may wait for a worker; one more gets 503.
    pub queue: usize,
    /// Largest body accepted, in bytes; a larger one gets 413.
    pub max_body_bytes: usize,
    /// Longest a request may take, upload included; a slower one gets 408.
    pub request_timeout: Duration,
    /// Longest a connection may wait for the client's next bytes (an idle keep-alive
    /// connection, a stalled upload) or for it to take the answer; then it is closed.
    pub idle_timeout: Duration,
    /// Testing aid: every job sleeps this long first, so that tests can fill the queue and
    /// observe draining. Zero in production.
    pub job_delay: Duration,
    /// Testing aid: a request with the header `x-ct3d-test-panic` panics inside its job.
    pub test_hooks: bool,
}

/// Why the service could not start or stopped with an error. One line.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The run could not be loaded.
    #[error(transparent)]
    Run(#[from] ct3d::error::TrainError),
    /// The address could not be bound, or the server failed.
    #[error("{addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// What `/v1/predict` answers.
#[derive(Debug, Clone, Serialize)]
pub struct PredictResponse {
    /// Probability of the positive class (calibrated when `calibrated`).
    pub probability: f32,
    /// The predicted class name.
    pub class: String,
    /// Whether the run's calibration (temperature, threshold) was applied.
    pub calibrated: bool,
    /// SHA-256 of the run's `config.json`.
    pub config_sha256: String,
    /// Which weights answered (`best` or `last`).
    pub weights: &'static str,
    /// Milliseconds per stage: `read`, `preprocess`, `model`, and the job's `total`.
    pub timings_ms: Timings,
}

/// Per-stage milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timings {
    /// Reading and decoding the body.
    pub read: f64,
    /// Windowing, rotating, resizing.
    pub preprocess: f64,
    /// The network.
    pub model: f64,
    /// The whole job, waiting excluded.
    pub total: f64,
}

/// One queued request.
struct Job {
    body: Bytes,
    panic: bool,
    reply: tokio::sync::oneshot::Sender<Result<PredictResponse, JobError>>,
}

enum JobError {
    /// The body is not a scan ct3d can read: 400.
    BadInput(String),
    /// A bug: 500 with this id (logged with the panic message).
    Panic(u64),
}

/// The state the handlers share.
pub struct AppState {
    jobs: SyncSender<Job>,
    metrics: Arc<Metrics>,
    ready: std::sync::atomic::AtomicBool,
    test_hooks: bool,
}

/// Loads the run, starts the workers and serves until `shutdown` resolves, then drains the
/// requests in flight. `on_listening` learns the bound address (the port, when 0 was asked).
pub async fn serve(
    config: ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let started = Instant::now();
    let run = load_run(&config.run, config.weights, DeviceChoice::Cpu)?;
    metrics.model_load_seconds(started.elapsed().as_secs_f64());
    let config_sha256 = ct3d_volume::cache::hash_file(&run.dir.config())
        .map(|h| h.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .unwrap_or_default();
    let weights = match config.weights {
        WeightsChoice::Best => "best",
        WeightsChoice::Last => "last",
    };
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(config.queue);
    let receiver = Arc::new(Mutex::new(receiver));
    for worker in 0..config.workers.max(1) {
        let receiver = Arc::clone(&receiver);
        let run = run.clone();
        let metrics = Arc::clone(&metrics);
        let context = WorkerContext {
            config_sha256: config_sha256.clone(),
            weights,
            delay: config.job_delay,
        };
        std::thread::Builder::new()
            .name(format!("ct3d-infer-{worker}"))
            .spawn(move || work(&receiver, &run, &metrics, &context))
            .map_err(|source| ServeError::Listen {
                addr: config.addr,
                source,
            })?;
    }
    let state = Arc::new(AppState {
        jobs: sender,
        metrics: Arc::clone(&metrics),
        ready: std::sync::atomic::AtomicBool::new(true),
        test_hooks: config.test_hooks,
    });
    let app = router(state, config.max_body_bytes, config.request_timeout);
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.addr,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.addr,
        source,
    })?;
    let listener = IdleTimeoutListener {
        inner: listener,
        idle: config.idle_timeout,
    };
    on_listening(local);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Listen {
            addr: local,
            source,
        })
}

/// A TCP listener whose connections close when the client sends nothing (or takes no answer)
/// for `idle`: an idle keep-alive connection or a stalled client holds a socket for at most that
/// long.
struct IdleTimeoutListener {
    inner: tokio::net::TcpListener,
    idle: Duration,
}

impl axum::serve::Listener for IdleTimeoutListener {
    type Io = std::pin::Pin<Box<tokio_io_timeout::TimeoutStream<tokio::net::TcpStream>>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_read_timeout(Some(self.idle));
        stream.set_write_timeout(Some(self.idle));
        (Box::pin(stream), addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The routes, with the body limit and the request timeout.
pub fn router(state: Arc<AppState>, max_body_bytes: usize, timeout: Duration) -> Router {
    Router::new()
        .route("/v1/predict", post(predict))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading\n").into_response()
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    (headers, state.metrics.encode()).into_response()
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message.replace('\n', " ") });
    (status, axum::Json(body)).into_response()
}

async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let started = Instant::now();
    let response = predict_inner(&state, &headers, body).await;
    state
        .metrics
        .request_done(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn predict_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "the body is larger than the service's limit (--max-body-mib)".to_owned()
            } else {
                rejection.body_text()
            };
            return json_error(status, &message);
        }
    };
    if body.is_empty() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "empty body: send a NIfTI file (.nii or .nii.gz) or a zip of one DICOM series",
        );
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job {
        body,
        panic: state.test_hooks && headers.contains_key("x-ct3d-test-panic"),
        reply,
    };
    match state.jobs.try_send(job) {
        Ok(()) => state.metrics.queued(1),
        Err(TrySendError::Full(_)) => {
            let mut response = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: every worker is occupied and the queue is full; retry shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(TrySendError::Disconnected(_)) => {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, "the workers have stopped");
        }
    }
    match answer.await {
        Ok(Ok(prediction)) => (StatusCode::OK, axum::Json(prediction)).into_response(),
        Ok(Err(JobError::BadInput(message))) => json_error(StatusCode::BAD_REQUEST, &message),
        Ok(Err(JobError::Panic(id))) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("internal error {id} (logged); the service keeps running"),
        ),
        Err(_) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the worker dropped the job",
        ),
    }
}

struct WorkerContext {
    config_sha256: String,
    weights: &'static str,
    delay: Duration,
}

static PANIC_IDS: AtomicU64 = AtomicU64::new(1);

/// A worker: takes jobs until the queue closes; a panicking job becomes an error reply.
fn work(
    receiver: &Mutex<std::sync::mpsc::Receiver<Job>>,
    run: &LoadedRun,
    metrics: &Metrics,
    context: &WorkerContext,
) {
    loop {
        let job = {
            let Ok(receiver) = receiver.lock() else {
                return;
            };
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        metrics.queued(-1);
        metrics.in_flight(1);
        let Job { body, panic, reply } = job;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if !context.delay.is_zero() {
                std::thread::sleep(context.delay);
            }
            if panic {
                panic!("x-ct3d-test-panic");
            }
            predict_body(run, &body, context, metrics)
        }));
        let result = match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(message)) => Err(JobError::BadInput(message)),
            Err(payload) => {
                let id = PANIC_IDS.fetch_add(1, Ordering::Relaxed);
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                tracing::error!("internal error {id}: {message}");
                Err(JobError::Panic(id))
            }
        };
        metrics.in_flight(-1);
        // The client may have gone (timeout): nothing to answer then.
        let _ = reply.send(result);
    }
}

/// What kind of body this is, by its first bytes.
enum BodyKind {
    Gzip,
    Zip,
    Nifti,
}

fn body_kind(body: &[u8]) -> Option<BodyKind> {
    if body.starts_with(&[0x1f, 0x8b]) {
        return Some(BodyKind::Gzip);
    }
    if body.starts_with(b"PK\x03\x04") {
        return Some(BodyKind::Zip);
    }
    // NIfTI-1 (348) or NIfTI-2 (540) header size, in either byte order.
    let size = body.get(..4)?;
    let little = i32::from_le_bytes([size[0], size[1], size[2], size[3]]);
    let big = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
    [348, 540]
        .iter()
        .any(|&n| little == n || big == n)
        .then_some(BodyKind::Nifti)
}

/// Most files a DICOM zip may hold, and most bytes it may unpack to per byte of body.
const ZIP_MAX_FILES: usize = 5_000;
const ZIP_MAX_RATIO: u64 = 50;

/// Writes the body where ct3d's readers take it and predicts it. An `Err` is a one-line reason
/// the body is refused (400).
fn predict_body(
    run: &LoadedRun,
    body: &[u8],
    context: &WorkerContext,
    metrics: &Metrics,
) -> Result<PredictResponse, String> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("ct3d-serve-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let scan = match body_kind(body) {
        Some(BodyKind::Gzip) => write(dir.path(), "scan.nii.gz", body)?,
        Some(BodyKind::Nifti) => write(dir.path(), "scan.nii", body)?,
        Some(BodyKind::Zip) => unzip_series(dir.path(), body)?,
        None => {
            return Err(
                "not a NIfTI file (.nii or .nii.gz) or a zip of one DICOM series".to_owned(),
            );
        }
    };
    let unpack = started.elapsed().as_secs_f64();
    let (
        prediction,
        StageTimes {
            read,
            preprocess,
            model,
        },
    ) = predict_scan_timed(run, &scan, None).map_err(|e| {
        // Paths in messages are this request's temporary files: name the body instead.
        let text = ct3d::error::one_line(&e);
        text.replace(&scan.display().to_string(), "the body")
            .replace(&dir.path().display().to_string(), "the body")
    })?;
    let read = read + unpack;
    metrics.stages(read, preprocess, model);
    let ms = |s: f64| (s * 1e6).round() / 1e3;
    Ok(PredictResponse {
        probability: prediction.probability,
        class: prediction.class,
        calibrated: run.calibration.applied().is_some(),
        config_sha256: context.config_sha256.clone(),
        weights: context.weights,
        timings_ms: Timings {
            read: ms(read),
            preprocess: ms(preprocess),
            model: ms(model),
            total: ms(started.elapsed().as_secs_f64()),
        },
    })
}

fn write(dir: &Path, name: &str, body: &[u8]) -> Result<PathBuf, String> {
    let path = dir.join(name);
    std::fs::write(&path, body).map_err(|e| format!("cannot store the body: {e}"))?;
    Ok(path)
}

/// Unpacks a zip of one DICOM series into `dir/series/`, flat: every regular file under its own
/// base name (so no entry can escape the folder), folders and macOS metadata skipped, within
/// [`ZIP_MAX_FILES`] files and [`ZIP_MAX_RATIO`] times the body's size.
fn unzip_series(dir: &Path, body: &[u8]) -> Result<PathBuf, String> {
    let bad = |reason: String| format!("the zip body cannot be unpacked: {reason}");
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(body)).map_err(|e| bad(e.to_string()))?;
    if archive.len() > ZIP_MAX_FILES {
        return Err(bad(format!(
            "{} entries, more than {ZIP_MAX_FILES}",
            archive.len()
        )));
    }
    let series = dir.join("series");
    std::fs::create_dir(&series).map_err(|e| bad(e.to_string()))?;
    let budget = (body.len() as u64).saturating_mul(ZIP_MAX_RATIO);
    let mut written = 0u64;
    let mut files = 0usize;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| bad(e.to_string()))?;
        if !entry.is_file() {
            continue;
        }
        let name = entry.name().to_owned();
        if name.starts_with("__MACOSX/") || name.ends_with(".DS_Store") {
            continue;
        }
        let Some(base) = Path::new(&name).file_name() else {
            continue;
        };
        let target = series.join(format!("{index:05}-{}", base.to_string_lossy()));
        let mut out = std::fs::File::create(&target).map_err(|e| bad(e.to_string()))?;
        let limit = budget.saturating_sub(written) + 1;
        let copied = std::io::copy(&mut std::io::Read::take(&mut entry, limit), &mut out)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        written += copied;
        if written > budget {
            return Err(bad(format!(
                "it unpacks to more than {ZIP_MAX_RATIO} times its size"
            )));
        }
        files += 1;
    }
    if files == 0 {
        return Err(bad("it holds no files".to_owned()));
    }
    Ok(series)
}
