//! `/metrics`: what an operator's Prometheus scrapes, in the text exposition format.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to about 65 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The service's counters, gauges and histograms.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<StatusLabel, Counter>,
    request_seconds: Histograms<StatusLabel>,
    stage_seconds: Histograms<StageLabel>,
    queue_depth: Gauge<i64, AtomicI64>,
    in_flight: Gauge<i64, AtomicI64>,
    model_load: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric (all start at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ct3d");
        let requests = Family::<StatusLabel, Counter>::default();
        registry.register(
            "predict_requests",
            "Requests to POST /v1/predict, by HTTP status",
            requests.clone(),
        );
        let request_seconds: Histograms<StatusLabel> =
            Family::new_with_constructor(latency_buckets);
        registry.register(
            "predict_request_seconds",
            "Latency of POST /v1/predict (waiting included), by HTTP status",
            request_seconds.clone(),
        );
        let stage_seconds: Histograms<StageLabel> = Family::new_with_constructor(latency_buckets);
        registry.register(
            "predict_stage_seconds",
            "Time per stage of a prediction: read (decode the body), preprocess, model",
            stage_seconds.clone(),
        );
        let queue_depth = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "queue_depth",
            "Predictions waiting for a worker",
            queue_depth.clone(),
        );
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "in_flight",
            "Predictions a worker is computing",
            in_flight.clone(),
        );
        let model_load = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "model_load_seconds",
            "Seconds it took to load the run's weights at start",
            model_load.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            request_seconds,
            stage_seconds,
            queue_depth,
            in_flight,
            model_load,
        }
    }

    /// A request to `/v1/predict` ended with `status` after `seconds`.
    pub fn request_done(&self, status: u16, seconds: f64) {
        let label = StatusLabel {
            status: status.to_string(),
        };
        self.requests.get_or_create(&label).inc();
        self.request_seconds.get_or_create(&label).observe(seconds);
    }

    /// A prediction's stage times, in seconds.
    pub fn stages(&self, read: f64, preprocess: f64, model: f64) {
        for (stage, seconds) in [("read", read), ("preprocess", preprocess), ("model", model)] {
            self.stage_seconds
                .get_or_create(&StageLabel {
                    stage: stage.to_owned(),
                })
                .observe(seconds);
        }
    }

    /// The queue grew (`+1`) or shrank (`-1`).
    pub fn queued(&self, change: i64) {
        self.queue_depth.inc_by(change);
    }

    /// A worker started (`+1`) or finished (`-1`) a job.
    pub fn in_flight(&self, change: i64) {
        self.in_flight.inc_by(change);
    }

    /// The model took `seconds` to load.
    pub fn model_load_seconds(&self, seconds: f64) {
        self.model_load.set(seconds);
    }

    /// Everything, in the exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Into a String: formatting cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        }
        text
    }
}
