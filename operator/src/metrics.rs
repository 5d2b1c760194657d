//! The operator's metrics, names in one place.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Reconciles run.
pub const RECONCILES_TOTAL: &str = "pgkafka_operator_reconciles_total";
/// Reconciles that failed, by CamelCase reason.
pub const RECONCILE_FAILURES_TOTAL: &str = "pgkafka_operator_reconcile_failures_total";
/// Reconcile duration.
pub const RECONCILE_DURATION_SECONDS: &str = "pgkafka_operator_reconcile_duration_seconds";

/// The operator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// See [`RECONCILES_TOTAL`].
    pub reconciles: IntCounter,
    /// See [`RECONCILE_FAILURES_TOTAL`].
    pub failures: IntCounterVec,
    /// See [`RECONCILE_DURATION_SECONDS`].
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let reconciles =
            IntCounter::new(RECONCILES_TOTAL, "Reconciles run.").expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(RECONCILE_FAILURES_TOTAL, "Reconciles that failed."),
            &["reason"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(RECONCILE_DURATION_SECONDS, "Reconcile duration.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        for m in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
        ] {
            registry.register(m).expect("registered once");
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
        }
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
