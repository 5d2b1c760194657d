//! Heartbeats (Debezium's `heartbeat.interval.ms`): a record on an interval
//! so consumers tell an idle table from a stopped connector, and an optional
//! statement run on the source database (Debezium's
//! `heartbeat.action.query`) so a database whose captured tables see no
//! writes still moves the slot.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Heartbeat records and the optional action query.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatSpec {
    /// Seconds between heartbeats (Debezium's `heartbeat.interval.ms`).
    #[schemars(schema_with = "crate::schema::heartbeat_seconds")]
    pub interval_seconds: u32,
    /// Topic of the heartbeat records; `__debezium-heartbeat.<topicPrefix>`
    /// (Debezium's default) when omitted. Key `{"serverName": <topicPrefix>}`,
    /// value `{"ts_ms": <now>}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub topic: Option<String>,
    /// A statement run on the source database at every heartbeat (Debezium's
    /// `heartbeat.action.query`), for example
    /// `INSERT INTO cdc_heartbeat (id, ts) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET ts = now()`.
    /// Checked by PostgreSQL at start-up; a failure later is logged and
    /// counted, and the stream goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_query: Option<String>,
}

impl HeartbeatSpec {
    /// The heartbeat topic for connectors with `topic_prefix`.
    pub fn topic_name(&self, topic_prefix: &str) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("__debezium-heartbeat.{topic_prefix}"))
    }

    /// What is wrong with it, each as (path, message).
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interval_seconds == 0 {
            out.push((
                "spec.kafka.heartbeat.intervalSeconds".into(),
                "must be at least 1".into(),
            ));
        }
        if self
            .action_query
            .as_deref()
            .is_some_and(|q| q.trim().is_empty())
        {
            out.push((
                "spec.kafka.heartbeat.actionQuery".into(),
                "must not be empty (omit it for none)".into(),
            ));
        }
        out
    }
}
