//! The resource's status, as the operator writes it: conditions, the
//! slot's progress and the snapshot's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgKafkaConnectorStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, SlotHealthy, Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The slot's progress as PostgreSQL reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationStatus>,
    /// Snapshot progress as the engine reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotStatus>,
    /// The tables the engine listens to (count, the first few, those a
    /// pattern matched and could not capture), as it reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<crate::report::TablesReport>,
}

/// Snapshot progress of every table the engine knows about.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// `done/known`: `2/3` when two of the three tables the engine knows are
    /// done; `none` before any. One word for `kubectl get`.
    pub summary: String,
    /// The last `pgkafka.io/snapshot` annotation value the engine accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// The last `pgkafka.io/snapshot-stop` annotation value the engine accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<String>,
    /// Per table.
    #[serde(default)]
    pub tables: Vec<crate::report::TableSnapshot>,
}

/// A Kubernetes-style condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, CamelCase.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
}

/// Replication slot progress.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationStatus {
    /// Slot name.
    pub slot_name: String,
    /// Whether a walsender is attached to the slot.
    pub active: bool,
    /// Last LSN confirmed by the engine (everything before it is in Kafka).
    #[serde(
        rename = "confirmedFlushLSN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub confirmed_flush_lsn: Option<String>,
    /// Oldest LSN the slot still needs.
    #[serde(
        rename = "restartLSN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restart_lsn: Option<String>,
    /// reserved, extended, unreserved or lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
    /// Current WAL position minus the confirmed LSN, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Commit time of the last change delivered, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<String>,
    /// A failover slot (PostgreSQL 17+): standbys with
    /// `sync_replication_slots` keep it. Absent on older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<bool>,
    /// On a standby: the slot is synchronized from the primary (PostgreSQL
    /// 17+). Absent on older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<bool>,
}
