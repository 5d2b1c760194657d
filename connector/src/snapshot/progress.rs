//! Snapshot progress kept durably, off the pod's disk: one record per
//! table on a compacted topic, keyed `<transactional id>/<schema.table>`,
//! written once the chunk it describes is safely in Kafka.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgkafka_crds::PgKafkaConnectorSpec;

use super::shared::Progress;
use crate::config::EngineConfig;
use crate::error::Error;
use crate::sink::compacted::{read_compacted, CompactedWriter};
use crate::sink::transactions::transactional_id;
use crate::sink::SinkError;

/// The compacted topic holding snapshot progress.
pub(crate) fn progress_topic(spec: &PgKafkaConnectorSpec) -> String {
    format!("{}.pgkafka-snapshots", spec.kafka.topic_prefix)
}

/// Where one connector's progress records are written and read.
pub(super) struct ProgressStore {
    writer: CompactedWriter,
    key_prefix: String,
    /// The first background write that failed.
    failed: Arc<Mutex<Option<SinkError>>>,
}

impl ProgressStore {
    /// The store of `cfg`'s connector.
    pub fn new(cfg: &EngineConfig) -> Result<Self, Error> {
        let writer = CompactedWriter::new(&cfg.spec.kafka, &cfg.kafka, progress_topic(&cfg.spec))?;
        Ok(ProgressStore {
            writer,
            key_prefix: format!("{}/", transactional_id(&cfg.spec)),
            failed: Arc::default(),
        })
    }

    /// The topic, created with the others.
    pub fn topic(&self) -> &str {
        self.writer.topic()
    }

    /// Writes `progress`; returns once the broker acknowledged it.
    pub async fn write(&self, progress: &Progress) -> Result<(), Error> {
        let key = format!("{}{}", self.key_prefix, progress.shown.table);
        let value = serde_json::to_vec(progress).unwrap_or_default();
        Ok(self.writer.write(&key, &value).await?)
    }

    /// Writes `progress` without waiting for the broker (in order with
    /// every other write, so a later [`ProgressStore::write`] of the table
    /// lands after it): a snapshot of many small tables is not paced by one
    /// broker round trip per table. A failure shows at the next
    /// [`ProgressStore::check`].
    pub fn write_later(&self, progress: &Progress) -> Result<(), Error> {
        let key = format!("{}{}", self.key_prefix, progress.shown.table);
        let value = serde_json::to_vec(progress).unwrap_or_default();
        Ok(self
            .writer
            .write_in_background(&key, &value, &self.failed)?)
    }

    /// Waits for the background writes (at a session's end), then
    /// [`ProgressStore::check`]s them.
    pub async fn flush(&self) -> Result<(), Error> {
        self.writer
            .flush(std::time::Duration::from_secs(10))
            .await?;
        self.check()
    }

    /// The first background write that failed, as an error.
    pub fn check(&self) -> Result<(), Error> {
        let failed = self.failed.lock().ok().and_then(|mut slot| slot.take());
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The latest progress of each table of this connector.
    pub async fn read(&self) -> Result<Vec<Progress>, Error> {
        read_progress(&self.writer, &self.key_prefix).await
    }
}

async fn read_progress(writer: &CompactedWriter, prefix: &str) -> Result<Vec<Progress>, Error> {
    let (config, topic, prefix) = (
        writer.config().clone(),
        writer.topic().to_owned(),
        prefix.to_owned(),
    );
    let group = format!("{prefix}snapshot-reader");
    let records = tokio::task::spawn_blocking(move || {
        read_compacted(&config, &topic, &group, |key| {
            key.starts_with(prefix.as_bytes())
        })
    })
    .await
    .map_err(|source| crate::sink::SinkError::Blocking {
        what: "reading snapshot progress",
        source,
    })??;
    let mut latest: HashMap<Vec<u8>, Progress> = HashMap::new();
    for (key, value) in records {
        if let Ok(progress) = serde_json::from_slice(&value) {
            latest.insert(key, progress);
        }
    }
    Ok(latest.into_values().collect())
}
