//! The engine's `/status`, defined once: the engine serializes it, the
//! operator and the tests deserialize it, and a table's snapshot in it is the
//! same type as in `status.snapshot.tables` of the resource.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

/// What a running engine reports about itself (`GET /status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    /// The connector's name.
    pub connector: String,
    /// The replication slot.
    pub slot: String,
    /// The replication stream is open and streaming.
    pub streaming: bool,
    /// The flush position last confirmed to PostgreSQL.
    #[serde(rename = "confirmedFlushLSN")]
    pub confirmed_flush_lsn: Lsn,
    /// The highest position received.
    #[serde(rename = "receivedLSN")]
    pub received_lsn: Lsn,
    /// The server's WAL end from its last keepalive.
    #[serde(rename = "walEndLSN")]
    pub wal_end_lsn: Lsn,
    /// WAL end minus the confirmed position.
    pub lag_bytes: i64,
    /// Unix time of the last keepalive or data message.
    pub last_keepalive_unix_seconds: i64,
    /// Commit time (Unix ms) of the last transaction that produced records;
    /// 0 before the first.
    pub last_event_unix_ms: i64,
    /// Totals since start.
    pub counters: Counters,
    /// Work handed to Kafka and not yet acknowledged.
    pub in_flight: InFlight,
    /// Snapshot progress per table.
    pub snapshot: SnapshotReport,
    /// The tables listened to, pattern listeners' matches included.
    #[serde(default)]
    pub tables: TablesReport,
    /// Why the engine stopped streaming for good (a fault retrying cannot
    /// fix, such as a filter naming a column that was dropped): nothing
    /// after the confirmed position is lost, and it waits for a new
    /// configuration. Absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
}

impl EngineStatus {
    /// Unix ms of the last change delivered, `None` before the first.
    pub fn last_event_ms(&self) -> Option<i64> {
        Some(self.last_event_unix_ms).filter(|ms| *ms > 0)
    }
}

/// Snapshot progress per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// Every table snapshotted, being snapshotted or asked for.
    pub tables: Vec<TableSnapshot>,
}

/// The tables listened to: how many, the first few by name (a connector
/// may listen to thousands; the count is exact), and those a pattern
/// matched that could not be captured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TablesReport {
    /// How many tables are listened to.
    #[schemars(schema_with = "crate::schema::count")]
    pub count: u64,
    /// The first [`TablesReport::NAMES_SHOWN`] of them by name, `schema.table`.
    #[serde(default)]
    pub names: Vec<String>,
    /// Tables a pattern listener matched that are not captured, with why
    /// (a filter naming a column the table lacks, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedTable>,
}

impl TablesReport {
    /// Names listed at most.
    pub const NAMES_SHOWN: usize = 20;

    /// The report of `names` (sorted here) and `skipped`.
    pub fn of(mut names: Vec<String>, skipped: Vec<SkippedTable>) -> Self {
        names.sort();
        let count = names.len() as u64;
        names.truncate(Self::NAMES_SHOWN);
        TablesReport {
            count,
            names,
            skipped,
        }
    }
}

/// A table a pattern matched and the engine could not capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedTable {
    /// `schema.table`.
    pub table: String,
    /// Why, naming the field.
    pub reason: String,
}

/// Totals since the engine started (dead letters: in all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Row changes captured by a listener.
    pub events: u64,
    /// Source transactions committed in the stream.
    pub transactions: u64,
    /// Records acknowledged by Kafka.
    pub records_delivered: u64,
    /// Records Kafka refused after retries (each replayed).
    pub delivery_errors: u64,
    /// Sessions restarted after a failure.
    pub session_restarts: u64,
    /// Records sent to the dead-letter topic in all: kept with the engine's
    /// offsets record, so a restart goes on counting.
    #[serde(default)]
    pub dead_lettered: u64,
}

/// In-flight work against its cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    /// Records.
    pub records: i64,
    /// Bytes.
    pub bytes: i64,
    /// The record cap.
    pub record_limit: i64,
}

/// Where a table's snapshot is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotState {
    /// Asked for, not started.
    #[default]
    Pending,
    /// Being read.
    Running,
    /// Every row sent and safe.
    Done,
    /// Stopped on an error (see `error`); a new request starts it again.
    Failed,
    /// Paused on request (Debezium's `pause-snapshot`); a resume goes on
    /// after the last row sent, with the same condition.
    Paused,
    /// Stopped on request before its end (Debezium's `stop-snapshot`); a
    /// new request starts it again.
    Stopped,
}

impl SnapshotState {
    /// Every state, in the order a snapshot goes through them.
    pub const ALL: [SnapshotState; 6] = [
        SnapshotState::Pending,
        SnapshotState::Running,
        SnapshotState::Paused,
        SnapshotState::Done,
        SnapshotState::Stopped,
        SnapshotState::Failed,
    ];

    /// The word on the wire (`pending`, `running`, `paused`, `done`,
    /// `stopped`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Pending => "pending",
            SnapshotState::Running => "running",
            SnapshotState::Paused => "paused",
            SnapshotState::Done => "done",
            SnapshotState::Stopped => "stopped",
            SnapshotState::Failed => "failed",
        }
    }

    /// Pending or running: the table is not finished.
    pub fn is_active(self) -> bool {
        matches!(self, SnapshotState::Pending | SnapshotState::Running)
    }
}

impl std::fmt::Display for SnapshotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One table's snapshot: in the engine's `/status` and in the resource's
/// `status.snapshot.tables`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableSnapshot {
    /// `schema.table`.
    pub table: String,
    /// pending, running, paused, done, stopped or failed.
    pub state: SnapshotState,
    /// The condition that selects the rows sent (a request's SQL `WHERE`
    /// expression, Debezium's `additional-conditions`); every row when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Rows sent so far.
    #[schemars(schema_with = "crate::schema::count")]
    pub rows: u64,
    /// Unix milliseconds when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    /// Unix milliseconds when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it runs, when neither `spec.snapshot.mode` nor a request started
    /// it (the slot lost changes under `spec.slot.onLoss: resnapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TableSnapshot {
    /// `table`, asked for and not started.
    pub fn pending(table: String) -> Self {
        TableSnapshot {
            table,
            ..TableSnapshot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_reads_back_as_written() {
        let status = EngineStatus {
            connector: "c".into(),
            slot: "s".into(),
            streaming: true,
            confirmed_flush_lsn: Lsn(0x1_0000_0010),
            received_lsn: Lsn(0x1_0000_0020),
            wal_end_lsn: Lsn(0x1_0000_0030),
            lag_bytes: 32,
            last_keepalive_unix_seconds: 1,
            last_event_unix_ms: 0,
            counters: Counters::default(),
            in_flight: InFlight::default(),
            tables: TablesReport::of(vec!["public.b".into(), "public.a".into()], Vec::new()),
            snapshot: SnapshotReport {
                tables: vec![TableSnapshot {
                    state: SnapshotState::Running,
                    rows: 12,
                    ..TableSnapshot::pending("public.orders".into())
                }],
            },
            halted: None,
        };
        let json = serde_json::to_value(&status).expect("serializes");
        assert_eq!(json["confirmedFlushLSN"], "1/10");
        assert_eq!(json["snapshot"]["tables"][0]["state"], "running");
        assert!(json.get("halted").is_none());
        let back: EngineStatus = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, status);
        assert_eq!(back.last_event_ms(), None);
    }

    #[test]
    fn an_unknown_state_is_refused() {
        let bad = serde_json::json!({"table": "t", "state": "skipped", "rows": 1});
        assert!(serde_json::from_value::<TableSnapshot>(bad).is_err());
    }
}
