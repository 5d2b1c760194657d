//! The engine's own record of what it delivered, kept off the database: on
//! a compacted topic, keyed by database and slot (not by address: a
//! replica promoted behind another address is the same cluster, a
//! different cluster behind any address is not),
//! the slot, the cluster's system identifier and timeline, and the last
//! position confirmed to PostgreSQL; and the records sent to the
//! dead-letter topic so far, so the count survives restarts.
//!
//! A position is recorded before it is confirmed to PostgreSQL, so the slot
//! is never ahead of the record by this engine's doing: a slot that is
//! gone, invalidated or ahead at start-up is a loss, and a different system
//! identifier is another cluster (`pgkafka_postgres::slot_check`). The
//! record is written at most once a second, in the background, and at
//! shutdown.

use std::time::{Duration, Instant};

use pgkafka_crds::PgKafkaConnectorSpec;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

use crate::config::EngineConfig;
use crate::error::{Error, ErrorKind};
use crate::event::now_ms;
use crate::lsn::Lsn;
use crate::sink::compacted::{read_compacted, CompactedWriter};
use crate::sink::kafka::client_config_with;
use crate::sink::SinkError;
use crate::source::stream::Identity;

/// How often a moved position is recorded (at most).
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// The compacted topic holding the record.
pub(crate) fn offsets_topic(spec: &PgKafkaConnectorSpec) -> String {
    format!("{}.pgkafka-offsets", spec.kafka.topic_prefix)
}

/// The record's key: `<database>/<slot>`.
fn record_key(spec: &PgKafkaConnectorSpec) -> String {
    format!("{}/{}", spec.postgres.database, spec.slot.name)
}

/// What this connector delivered, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Delivered {
    /// The slot.
    pub slot: String,
    /// The cluster's system identifier.
    pub system_identifier: String,
    /// Its timeline when the record was written.
    pub timeline: u32,
    /// Everything before it is in Kafka and was confirmed (or is about to
    /// be) to PostgreSQL.
    pub confirmed_lsn: Lsn,
    /// When it was written (Unix ms).
    pub written_unix_ms: i64,
    /// Records sent to the dead-letter topic in all (a record re-sent after
    /// a crash counts again).
    #[serde(default)]
    pub dead_lettered: u64,
}

type PendingWrite = (Lsn, tokio::task::JoinHandle<Result<(), SinkError>>);

/// Writes the record of one engine run.
pub(crate) struct Offsets {
    writer: CompactedWriter,
    key: String,
    slot: String,
    identity: Identity,
    /// Recorded (acknowledged by Kafka): may be confirmed to PostgreSQL.
    recorded: Lsn,
    pending: Option<PendingWrite>,
    last_write: Option<Instant>,
    /// Records sent to the dead-letter topic.
    dead_lettered: IntCounter,
}

impl Offsets {
    /// The record of `cfg`'s connector, on the cluster `identity`, with
    /// `recorded` known to be recorded already (or confirmed by the slot).
    pub fn new(
        cfg: &EngineConfig,
        identity: Identity,
        recorded: Lsn,
        dead_lettered: IntCounter,
    ) -> Result<Self, Error> {
        Ok(Offsets {
            writer: CompactedWriter::new(&cfg.spec.kafka, &cfg.kafka, offsets_topic(&cfg.spec))?,
            key: record_key(&cfg.spec),
            slot: cfg.spec.slot.name.clone(),
            identity,
            recorded,
            pending: None,
            last_write: None,
            dead_lettered,
        })
    }

    /// The topic, created with the others.
    pub fn topic(&self) -> &str {
        self.writer.topic()
    }

    /// The last record of `cfg`'s connector (`None`: it never delivered).
    pub async fn read(cfg: &EngineConfig) -> Result<Option<Delivered>, Error> {
        // A reader needs no producer: the client settings suffice.
        let (config, topic, key) = (
            client_config_with(&cfg.spec.kafka, &cfg.kafka),
            offsets_topic(&cfg.spec),
            record_key(&cfg.spec),
        );
        let group = format!("{key}.offsets-reader");
        let records = tokio::task::spawn_blocking(move || {
            read_compacted(&config, &topic, &group, |k| k == key.as_bytes())
        })
        .await
        .map_err(|source| SinkError::Blocking {
            what: "reading the offsets record",
            source,
        })??;
        Ok(records
            .last()
            .and_then(|(_, value)| serde_json::from_slice(value).ok()))
    }

    /// The position that may be confirmed to PostgreSQL.
    pub fn recorded(&self) -> Lsn {
        self.recorded
    }

    /// Takes in a finished write, and starts recording `safe` when it moved
    /// and a second passed since the last write.
    pub async fn record(&mut self, safe: Lsn) -> Result<(), Error> {
        if let Some((lsn, task)) = self.pending.take_if(|(_, task)| task.is_finished()) {
            // Finished: the await returns at once.
            match task.await {
                Ok(Ok(())) => self.recorded = self.recorded.max(lsn),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(ErrorKind::Internal("an offsets write did not finish").into()),
            }
        }
        let due = self.last_write.is_none_or(|t| t.elapsed() >= RECORD_EVERY);
        if self.pending.is_none() && safe > self.recorded && due {
            let (writer, key, value) = (self.writer.clone(), self.key.clone(), self.value(safe));
            self.last_write = Some(Instant::now());
            let task = tokio::spawn(async move { writer.write(&key, &value).await });
            self.pending = Some((safe, task));
        }
        Ok(())
    }

    /// Records `safe` now and waits for it (at start, at shutdown).
    pub async fn flush(&mut self, safe: Lsn) -> Result<(), Error> {
        if let Some((lsn, task)) = self.pending.take() {
            if let Ok(Ok(())) = task.await {
                self.recorded = self.recorded.max(lsn);
            }
        }
        if safe > self.recorded {
            self.writer.write(&self.key, &self.value(safe)).await?;
            self.recorded = safe;
        }
        Ok(())
    }

    fn value(&self, lsn: Lsn) -> Vec<u8> {
        let record = Delivered {
            slot: self.slot.clone(),
            system_identifier: self.identity.system_id.clone(),
            timeline: self.identity.timeline,
            confirmed_lsn: lsn,
            written_unix_ms: now_ms(),
            dead_lettered: self.dead_lettered.get(),
        };
        serde_json::to_vec(&record).unwrap_or_default()
    }
}
