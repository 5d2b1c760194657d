//! The operator's metrics, names in one place.

use pgkafka_crds::PgKafkaConnectorStatus;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Reconciles run.
pub const RECONCILES_TOTAL: &str = "pgkafka_operator_reconciles_total";
/// Reconciles that failed, by CamelCase reason.
pub const RECONCILE_FAILURES_TOTAL: &str = "pgkafka_operator_reconcile_failures_total";
/// Reconcile duration.
pub const RECONCILE_DURATION_SECONDS: &str = "pgkafka_operator_reconcile_duration_seconds";
/// 1 when a connector is Ready, by `namespace` and `name`.
pub const CONNECTOR_READY: &str = "pgkafka_operator_connector_ready";
/// Bytes the slot's confirmed position is behind the server, from PostgreSQL.
pub const SLOT_LAG_BYTES: &str = "pgkafka_operator_slot_lag_bytes";
/// 1 for the slot's current `wal_status`, by `namespace`, `name`, `slot`, `wal_status`.
pub const SLOT_WAL_STATUS: &str = "pgkafka_operator_slot_wal_status";

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
    /// See [`CONNECTOR_READY`].
    pub ready: IntGaugeVec,
    /// See [`SLOT_LAG_BYTES`].
    pub lag: IntGaugeVec,
    /// See [`SLOT_WAL_STATUS`].
    pub wal_status: IntGaugeVec,
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
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let ready = gauge(
            CONNECTOR_READY,
            "1 when the connector is Ready.",
            &["namespace", "name"],
        );
        let lag = gauge(
            SLOT_LAG_BYTES,
            "Bytes the slot is behind the server.",
            &["namespace", "name", "slot"],
        );
        let wal_status = gauge(
            SLOT_WAL_STATUS,
            "1 for the slot's current wal_status.",
            &["namespace", "name", "slot", "wal_status"],
        );
        let collectors: [Box<dyn prometheus::core::Collector>; 6] = [
            Box::new(reconciles.clone()),
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(ready.clone()),
            Box::new(lag.clone()),
            Box::new(wal_status.clone()),
        ];
        for m in collectors {
            registry.register(m).expect("registered once");
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            ready,
            lag,
            wal_status,
        }
    }
}

impl Metrics {
    /// Exports a connector's status for alerting.
    pub fn observe(
        &self,
        namespace: &str,
        name: &str,
        slot: &str,
        status: &PgKafkaConnectorStatus,
    ) {
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        self.ready
            .with_label_values(&[namespace, name])
            .set(i64::from(ready));
        if let Some(r) = &status.replication {
            self.lag
                .with_label_values(&[namespace, name, slot])
                .set(r.lag_bytes.unwrap_or(0));
            for s in ["reserved", "extended", "unreserved", "lost"] {
                let current = r.wal_status.as_deref() == Some(s);
                self.wal_status
                    .with_label_values(&[namespace, name, slot, s])
                    .set(i64::from(current));
            }
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
