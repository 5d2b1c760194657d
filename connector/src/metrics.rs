//! Every metric the engine exports, with its name in one place. Labels are
//! bounded: none carries row values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Row changes turned into records (before fan-out to targets).
pub const EVENTS_TOTAL: &str = "pgkafka_events_total";
/// Source transactions committed in the stream.
pub const TRANSACTIONS_TOTAL: &str = "pgkafka_transactions_total";
/// Records acknowledged by Kafka.
pub const RECORDS_DELIVERED_TOTAL: &str = "pgkafka_records_delivered_total";
/// Records Kafka refused after its retries (each replayed by a new session).
pub const DELIVERY_ERRORS_TOTAL: &str = "pgkafka_delivery_errors_total";
/// Sessions started after a failure.
pub const SESSION_RESTARTS_TOTAL: &str = "pgkafka_session_restarts_total";
/// The flush LSN last reported to PostgreSQL, as a number.
pub const CONFIRMED_LSN: &str = "pgkafka_confirmed_flush_lsn";
/// The highest LSN received in the stream.
pub const RECEIVED_LSN: &str = "pgkafka_received_lsn";
/// The server's WAL end from its last keepalive.
pub const WAL_END_LSN: &str = "pgkafka_wal_end_lsn";
/// Unix time of the last keepalive (or data message) from the server.
pub const LAST_KEEPALIVE_SECONDS: &str = "pgkafka_last_keepalive_timestamp_seconds";
/// Records sent and not yet acknowledged.
pub const IN_FLIGHT_RECORDS: &str = "pgkafka_in_flight_records";
/// Bytes of those records.
pub const IN_FLIGHT_BYTES: &str = "pgkafka_in_flight_bytes";
/// The in-flight record cap.
pub const IN_FLIGHT_RECORDS_LIMIT: &str = "pgkafka_in_flight_records_limit";
/// In-flight byte cap (key, value and librdkafka's per-message share).
pub const IN_FLIGHT_BYTES_LIMIT: &str = "pgkafka_in_flight_bytes_limit";
/// 1 while the replication stream is open and streaming.
pub const STREAMING: &str = "pgkafka_streaming";
/// Commit time (Unix ms) of the last transaction that produced records.
pub const LAST_EVENT_TIMESTAMP_MS: &str = "pgkafka_last_event_timestamp_milliseconds";
/// Changes a target received, by `table` and `topic`.
pub const TARGET_RECORDS_TOTAL: &str = "pgkafka_target_records_total";
/// Changes a target's filter rejected, by `table` and `topic`.
pub const TARGET_FILTERED_TOTAL: &str = "pgkafka_target_filtered_total";
/// Bytes of the changes a target received, by `table` and `topic`.
pub const TARGET_BYTES_TOTAL: &str = "pgkafka_target_bytes_total";
/// Row changes seen for a listener's table (before action and filter checks).
pub const LISTENER_CHANGES_TOTAL: &str = "pgkafka_listener_changes_total";
/// Records not yet acknowledged, by `topic`.
pub const TOPIC_IN_FLIGHT: &str = "pgkafka_topic_in_flight_records";
/// Records Kafka did not acknowledge, by `topic`.
pub const TOPIC_DELIVERY_ERRORS_TOTAL: &str = "pgkafka_topic_delivery_errors_total";
/// Snapshot rows sent, by `table`.
pub const SNAPSHOT_ROWS_TOTAL: &str = "pgkafka_snapshot_rows_total";
/// Tables by snapshot `state` (pending, running, done, failed).
pub const SNAPSHOT_TABLES: &str = "pgkafka_snapshot_tables";
/// Outbox rows an outbox target's spec ignores (updates, deletes), by
/// `table` and `topic` (the target's topic template).
pub const OUTBOX_IGNORED_TOTAL: &str = "pgkafka_outbox_ignored_total";
/// Records over `spec.kafka.maxRecordBytes` sent to the dead-letter topic
/// instead (`spec.errors.tolerance: all`).
pub const RECORDS_DEAD_LETTERED_TOTAL: &str = "pgkafka_records_dead_lettered_total";
/// Heartbeat records Kafka acknowledged.
pub const HEARTBEATS_TOTAL: &str = "pgkafka_heartbeats_total";
/// Heartbeats that failed (the record, or the action query).
pub const HEARTBEAT_FAILURES_TOTAL: &str = "pgkafka_heartbeat_failures_total";
/// Unix time the snapshot of `table` started.
pub const SNAPSHOT_STARTED_SECONDS: &str = "pgkafka_snapshot_started_timestamp_seconds";

/// The engine's metrics, registered in their own registry.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    /// The label of topics whose series are shared (`spec.metrics.perTable:
    /// false`): a matched table's topic -> its target's topic as written.
    topic_labels: Arc<Mutex<HashMap<String, String>>>,
    /// See [`EVENTS_TOTAL`].
    pub events: IntCounter,
    /// See [`TRANSACTIONS_TOTAL`].
    pub transactions: IntCounter,
    /// See [`RECORDS_DELIVERED_TOTAL`].
    pub delivered: IntCounter,
    /// See [`DELIVERY_ERRORS_TOTAL`].
    pub delivery_errors: IntCounter,
    /// See [`SESSION_RESTARTS_TOTAL`].
    pub restarts: IntCounter,
    /// See [`CONFIRMED_LSN`].
    pub confirmed_lsn: IntGauge,
    /// See [`RECEIVED_LSN`].
    pub received_lsn: IntGauge,
    /// See [`WAL_END_LSN`].
    pub wal_end_lsn: IntGauge,
    /// See [`LAST_KEEPALIVE_SECONDS`].
    pub last_keepalive: IntGauge,
    /// See [`IN_FLIGHT_RECORDS`].
    pub in_flight_records: IntGauge,
    /// See [`IN_FLIGHT_BYTES`].
    pub in_flight_bytes: IntGauge,
    /// Bytes of whole-transaction groups written to spill files since start.
    pub group_spilled_bytes: IntCounter,
    /// See [`IN_FLIGHT_RECORDS_LIMIT`].
    pub in_flight_limit: IntGauge,
    /// See [`IN_FLIGHT_BYTES_LIMIT`].
    pub in_flight_bytes_limit: IntGauge,
    /// See [`STREAMING`].
    pub streaming: IntGauge,
    /// See [`LAST_EVENT_TIMESTAMP_MS`].
    pub last_event_ms: IntGauge,
    /// See [`TARGET_RECORDS_TOTAL`].
    pub target_records: IntCounterVec,
    /// See [`TARGET_FILTERED_TOTAL`].
    pub target_filtered: IntCounterVec,
    /// See [`TARGET_BYTES_TOTAL`].
    pub target_bytes: IntCounterVec,
    /// See [`LISTENER_CHANGES_TOTAL`].
    pub listener_changes: IntCounterVec,
    /// See [`TOPIC_IN_FLIGHT`].
    pub topic_in_flight: IntGaugeVec,
    /// See [`TOPIC_DELIVERY_ERRORS_TOTAL`].
    pub topic_delivery_errors: IntCounterVec,
    /// See [`SNAPSHOT_ROWS_TOTAL`].
    pub snapshot_rows: IntCounterVec,
    /// See [`SNAPSHOT_TABLES`].
    pub snapshot_tables: IntGaugeVec,
    /// See [`SNAPSHOT_STARTED_SECONDS`].
    pub snapshot_started: IntGaugeVec,
    /// See [`OUTBOX_IGNORED_TOTAL`].
    pub outbox_ignored: IntCounterVec,
    /// See [`RECORDS_DEAD_LETTERED_TOTAL`].
    pub dead_lettered: IntCounter,
    /// See [`HEARTBEATS_TOTAL`].
    pub heartbeats: IntCounter,
    /// See [`HEARTBEAT_FAILURES_TOTAL`].
    pub heartbeat_failures: IntCounter,
}

/// Creates metrics labelled with the connector and registers each once.
struct Registrar<'a> {
    registry: Registry,
    connector: &'a str,
}

impl Registrar<'_> {
    fn opts(&self, name: &str, help: &str) -> Opts {
        Opts::new(name, help).const_label("connector", self.connector)
    }

    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.registry
            .register(Box::new(metric.clone()))
            .expect("each metric registered once");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(
            IntCounter::with_opts(self.opts(name, help)).expect("metric names are valid constants"),
        )
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(
            IntGauge::with_opts(self.opts(name, help)).expect("metric names are valid constants"),
        )
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(
            IntCounterVec::new(self.opts(name, help), labels)
                .expect("metric names are valid constants"),
        )
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(
            IntGaugeVec::new(self.opts(name, help), labels)
                .expect("metric names are valid constants"),
        )
    }
}

const TABLE_TOPIC: &[&str] = &["table", "topic"];

/// The metrics with labels (by table, topic or state).
struct Labelled {
    target_records: IntCounterVec,
    target_filtered: IntCounterVec,
    target_bytes: IntCounterVec,
    listener_changes: IntCounterVec,
    topic_delivery_errors: IntCounterVec,
    topic_in_flight: IntGaugeVec,
    snapshot_rows: IntCounterVec,
    snapshot_tables: IntGaugeVec,
    snapshot_started: IntGaugeVec,
    outbox_ignored: IntCounterVec,
}

impl Labelled {
    fn new(r: &Registrar<'_>) -> Self {
        Labelled {
            target_records: r.counter_vec(
                TARGET_RECORDS_TOTAL,
                "Changes a target received.",
                TABLE_TOPIC,
            ),
            target_filtered: r.counter_vec(
                TARGET_FILTERED_TOTAL,
                "Changes a target's filter rejected.",
                TABLE_TOPIC,
            ),
            target_bytes: r.counter_vec(
                TARGET_BYTES_TOTAL,
                "Bytes of the changes a target received.",
                TABLE_TOPIC,
            ),
            listener_changes: r.counter_vec(
                LISTENER_CHANGES_TOTAL,
                "Row changes seen for a listener's table.",
                &["table"],
            ),
            topic_delivery_errors: r.counter_vec(
                TOPIC_DELIVERY_ERRORS_TOTAL,
                "Records Kafka did not acknowledge.",
                &["topic"],
            ),
            topic_in_flight: r.gauge_vec(
                TOPIC_IN_FLIGHT,
                "Records not yet acknowledged, by topic.",
                &["topic"],
            ),
            snapshot_rows: r.counter_vec(SNAPSHOT_ROWS_TOTAL, "Snapshot rows sent.", &["table"]),
            snapshot_tables: r.gauge_vec(SNAPSHOT_TABLES, "Tables by snapshot state.", &["state"]),
            snapshot_started: r.gauge_vec(
                SNAPSHOT_STARTED_SECONDS,
                "Unix time a table's snapshot started.",
                &["table"],
            ),
            outbox_ignored: r.counter_vec(
                OUTBOX_IGNORED_TOTAL,
                "Outbox rows an outbox target's spec ignores (updates, deletes).",
                TABLE_TOPIC,
            ),
        }
    }
}

impl Metrics {
    /// Creates and registers every metric, labelled with the connector name.
    pub fn new(connector: &str) -> Self {
        let r = Registrar {
            registry: Registry::new(),
            connector,
        };
        let Labelled {
            target_records,
            target_filtered,
            target_bytes,
            listener_changes,
            topic_delivery_errors,
            topic_in_flight,
            snapshot_rows,
            snapshot_tables,
            snapshot_started,
            outbox_ignored,
        } = Labelled::new(&r);
        Metrics {
            target_records,
            target_filtered,
            target_bytes,
            listener_changes,
            topic_delivery_errors,
            topic_in_flight,
            snapshot_rows,
            snapshot_tables,
            snapshot_started,
            outbox_ignored,
            events: r.counter(EVENTS_TOTAL, "Row changes captured by a listener."),
            transactions: r.counter(
                TRANSACTIONS_TOTAL,
                "Source transactions committed in the stream.",
            ),
            delivered: r.counter(RECORDS_DELIVERED_TOTAL, "Records acknowledged by Kafka."),
            delivery_errors: r.counter(
                DELIVERY_ERRORS_TOTAL,
                "Records Kafka refused after retries (replayed).",
            ),
            restarts: r.counter(
                SESSION_RESTARTS_TOTAL,
                "Replication sessions restarted after a failure.",
            ),
            confirmed_lsn: r.gauge(CONFIRMED_LSN, "Flush LSN reported to PostgreSQL."),
            received_lsn: r.gauge(RECEIVED_LSN, "Highest LSN received."),
            wal_end_lsn: r.gauge(WAL_END_LSN, "Server WAL end from the last keepalive."),
            last_keepalive: r.gauge(
                LAST_KEEPALIVE_SECONDS,
                "Unix time of the last keepalive or data message from the server.",
            ),
            in_flight_records: r.gauge(IN_FLIGHT_RECORDS, "Records sent and not yet acknowledged."),
            in_flight_bytes: r.gauge(IN_FLIGHT_BYTES, "Bytes of records not yet acknowledged."),
            group_spilled_bytes: r.counter(
                "pgkafka_group_spilled_bytes_total",
                "Bytes of whole-transaction groups spilled to disk since start (transactions over the memory budget).",
            ),
            in_flight_limit: r.gauge(IN_FLIGHT_RECORDS_LIMIT, "In-flight record cap."),
            in_flight_bytes_limit: r.gauge(IN_FLIGHT_BYTES_LIMIT, "In-flight byte cap."),
            streaming: r.gauge(STREAMING, "1 while the replication stream is streaming."),
            last_event_ms: r.gauge(
                LAST_EVENT_TIMESTAMP_MS,
                "Commit time of the last transaction that produced records.",
            ),
            dead_lettered: r.counter(
                RECORDS_DEAD_LETTERED_TOTAL,
                "Records over maxRecordBytes sent to the dead-letter topic instead.",
            ),
            heartbeats: r.counter(HEARTBEATS_TOTAL, "Heartbeat records Kafka acknowledged."),
            heartbeat_failures: r.counter(
                HEARTBEAT_FAILURES_TOTAL,
                "Heartbeats that failed (the record or the action query).",
            ),
            registry: r.registry,
            topic_labels: Arc::default(),
        }
    }

    /// Labels `topic`'s series `label` from now on.
    pub fn label_topic(&self, topic: &str, label: &str) {
        if let Ok(mut labels) = self.topic_labels.lock() {
            labels.insert(topic.to_owned(), label.to_owned());
        }
    }

    /// The label of `topic`'s series: itself, unless [`Metrics::label_topic`]
    /// said otherwise.
    pub fn topic_label(&self, topic: &str) -> String {
        self.topic_labels
            .lock()
            .ok()
            .and_then(|labels| labels.get(topic).cloned())
            .unwrap_or_else(|| topic.to_owned())
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a malformed family, which the
        // constants above rule out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_the_connector_label() {
        let m = Metrics::new("orders");
        m.events.inc();
        m.confirmed_lsn.set(42);
        let text = String::from_utf8(m.render()).expect("utf8");
        assert!(
            text.contains("pgkafka_events_total{connector=\"orders\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pgkafka_confirmed_flush_lsn{connector=\"orders\"} 42"),
            "{text}"
        );
        for name in [
            TRANSACTIONS_TOTAL,
            WAL_END_LSN,
            LAST_KEEPALIVE_SECONDS,
            IN_FLIGHT_RECORDS,
            STREAMING,
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
