//! Heartbeats (`spec.kafka.heartbeat`, Debezium's `heartbeat.interval.ms`):
//! on an interval, a record on the heartbeat topic (key
//! `{"serverName": <topicPrefix>}`, value `{"ts_ms": <now>}`, Debezium's
//! shapes, with Connect schemas in the schema form), so consumers tell an
//! idle table from a stopped connector; and the optional action query
//! (Debezium's `heartbeat.action.query`) on the source database, so a
//! database whose captured tables see no writes still moves the slot.
//!
//! Each beat runs in the background, beside the stream: a slow broker or
//! database delays the next beat (none starts while one is running), never
//! the stream. A failed beat is logged and counted; the stream goes on.

use std::sync::Arc;
use std::time::Duration;

use pgkafka_crds::HeartbeatSpec;
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_postgres::Client;

use crate::config::EngineConfig;
use crate::error::Error;
use crate::event::now_ms;
use crate::metrics::Metrics;
use crate::sink::compacted::CompactedWriter;
use crate::sink::kafka::client_config_with;
use crate::sink::topics::create_missing;
use crate::source::connection::connect;
use crate::source::error::PgError;
use crate::transform::schema::wrap;

/// Connect schemas of the heartbeat's key and value (Debezium's names).
const KEY_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"serverName"}],"optional":false,"name":"io.debezium.connector.common.ServerNameKey","version":1}"#;
const VALUE_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat","version":1}"#;

/// The heartbeats of one session; does nothing when none are configured.
pub(super) struct Heartbeat {
    beating: Option<Beating>,
}

struct Beating {
    writer: CompactedWriter,
    key: String,
    schemas: bool,
    tick: Interval,
    /// The action query, checked by PostgreSQL at start-up.
    action: Option<(Arc<Client>, Arc<str>)>,
    running: Option<JoinHandle<()>>,
    metrics: Metrics,
}

impl Heartbeat {
    /// Creates the heartbeat topic (as `spec.kafka.topicDefaults` says)
    /// and checks the action query, when heartbeats are configured.
    pub async fn start(cfg: &EngineConfig, metrics: &Metrics) -> Result<Self, Error> {
        let Some(spec) = &cfg.spec.kafka.heartbeat else {
            return Ok(Heartbeat { beating: None });
        };
        let kafka = &cfg.spec.kafka;
        let topic = spec.topic_name(&kafka.topic_prefix);
        let base = client_config_with(kafka, &cfg.kafka);
        create_missing(&base, [(topic.as_str(), &kafka.topic_defaults)].into_iter()).await?;
        let action = match &spec.action_query {
            Some(sql) => Some((
                Arc::new(checked_action(cfg, sql).await?),
                Arc::from(sql.as_str()),
            )),
            None => None,
        };
        let mut tick = tokio::time::interval(interval(spec));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Heartbeat {
            beating: Some(Beating {
                writer: CompactedWriter::new(kafka, &cfg.kafka, topic)?,
                key: serde_json::json!({ "serverName": kafka.topic_prefix }).to_string(),
                schemas: kafka.schemas,
                tick,
                action,
                running: None,
                metrics: metrics.clone(),
            }),
        })
    }

    /// Resolves at the next beat (never without heartbeats).
    pub async fn due(&mut self) {
        match &mut self.beating {
            Some(b) => {
                b.tick.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Starts a beat in the background, unless the last one still runs.
    pub fn beat(&mut self) {
        let Some(b) = &mut self.beating else {
            return;
        };
        if b.running.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let payload = serde_json::json!({ "ts_ms": now_ms() }).to_string();
        let (key, value) = if b.schemas {
            (
                String::from_utf8_lossy(&wrap(KEY_SCHEMA.as_bytes(), b.key.as_bytes()))
                    .into_owned(),
                wrap(VALUE_SCHEMA.as_bytes(), payload.as_bytes()),
            )
        } else {
            (b.key.clone(), payload.into_bytes())
        };
        let (writer, action, metrics) = (b.writer.clone(), b.action.clone(), b.metrics.clone());
        b.running = Some(tokio::spawn(async move {
            match writer.write(&key, &value).await {
                Ok(()) => metrics.heartbeats.inc(),
                Err(e) => {
                    metrics.heartbeat_failures.inc();
                    tracing::warn!(error = %e, "heartbeat record not delivered");
                }
            }
            if let Some((client, sql)) = action {
                if let Err(e) = client.batch_execute(&sql).await {
                    metrics.heartbeat_failures.inc();
                    tracing::warn!(error = %e, "heartbeat action query failed");
                }
            }
        }));
    }
}

fn interval(spec: &HeartbeatSpec) -> Duration {
    Duration::from_secs(u64::from(spec.interval_seconds.max(1)))
}

/// A session for the action query, once PostgreSQL parsed and planned it
/// (a statement it refuses stops the engine at start-up, naming the field).
async fn checked_action(cfg: &EngineConfig, sql: &str) -> Result<Client, Error> {
    let application = format!("pgkafka-{}-heartbeat", cfg.name);
    let client = connect(&application, &cfg.spec.postgres, &cfg.postgres).await?;
    if let Err(e) = client.prepare(sql).await {
        let detail = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned());
        return Err(PgError::Setup {
            field: "spec.kafka.heartbeat.actionQuery".into(),
            message: format!("PostgreSQL refuses {sql:?}: {detail}"),
        }
        .into());
    }
    Ok(client)
}
