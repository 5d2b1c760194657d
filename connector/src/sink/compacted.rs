//! Compacted topics beside the data: small durable records keyed by what
//! they describe. [`CompactedWriter`] writes them with acks=all through a
//! plain idempotent producer (never in a Kafka transaction; snapshot
//! progress); [`read_compacted`] reads every committed record of a topic
//! back (snapshot progress, and the exactly-once checkpoints the session's
//! transactional producer writes).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use pgkafka_crds::KafkaSpec;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;

use super::kafka::client_config_with;
use super::SinkError;
use crate::credentials::KafkaCredentials;

/// How long one record may take to be acknowledged.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes keyed records to one topic and waits for each acknowledgement.
#[derive(Clone)]
pub(crate) struct CompactedWriter {
    producer: FutureProducer,
    config: ClientConfig,
    topic: String,
}

impl CompactedWriter {
    /// A producer for `topic`.
    pub fn new(
        spec: &KafkaSpec,
        credentials: &KafkaCredentials,
        topic: String,
    ) -> Result<Self, SinkError> {
        let config = client_config_with(spec, credentials);
        let producer = config.create().map_err(SinkError::Config)?;
        Ok(CompactedWriter {
            producer,
            config,
            topic,
        })
    }

    /// The client configuration, for reading the topic back.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Hands `value` under `key` to the producer now, in order with every
    /// other write of this writer (so a later write of the key lands after
    /// it), and starts its acknowledgement in the background: the first
    /// write that fails is kept in `failed`.
    pub fn write_in_background(
        &self,
        key: &str,
        value: &[u8],
        failed: &Arc<Mutex<Option<SinkError>>>,
    ) -> Result<(), SinkError> {
        let record = FutureRecord::to(&self.topic).key(key).payload(value);
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| SinkError::delivery(self.topic.clone(), e))?;
        let (failed, topic) = (Arc::clone(failed), self.topic.clone());
        tokio::spawn(async move {
            let error = match delivery.await {
                Ok(Ok(_)) => return,
                Ok(Err((e, _))) => e,
                Err(_) => KafkaError::Canceled,
            };
            if let Ok(mut slot) = failed.lock() {
                slot.get_or_insert(SinkError::delivery(topic, error));
            }
        });
        Ok(())
    }

    /// Waits (at most `timeout`) for every write handed over to be
    /// acknowledged.
    pub async fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|source| SinkError::Blocking {
                what: "flushing a compacted topic's writes",
                source,
            })?;
        flushed.map_err(|e| SinkError::delivery(self.topic.clone(), e))
    }

    /// Writes `value` under `key`; returns once the broker acknowledged it.
    pub async fn write(&self, key: &str, value: &[u8]) -> Result<(), SinkError> {
        let record = FutureRecord::to(&self.topic).key(key).payload(value);
        self.producer
            .send(record, WRITE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| SinkError::delivery(self.topic.clone(), e))
    }
}

/// A record's key and value.
pub(crate) type KeyedRecord = (Vec<u8>, Vec<u8>);

/// Every committed record of `topic` whose key `wanted`, read with
/// `read_committed` from the beginning of every partition to its end, in
/// order. `group` names the reader (no offsets are committed).
pub(crate) fn read_compacted(
    base: &ClientConfig,
    topic: &str,
    group: &str,
    wanted: impl Fn(&[u8]) -> bool,
) -> Result<Vec<KeyedRecord>, SinkError> {
    let mut config = base.clone();
    config
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().map_err(SinkError::Kafka)?;
    let timeout = Duration::from_secs(15);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(SinkError::Kafka)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(SinkError::Kafka)?;
    }
    consumer.assign(&tpl).map_err(SinkError::Kafka)?;
    let mut ended = std::collections::HashSet::new();
    let mut out = Vec::new();
    const LIMIT: Duration = Duration::from_secs(60);
    let deadline = Instant::now() + LIMIT;
    while ended.len() < partitions {
        if Instant::now() > deadline {
            return Err(SinkError::ReadTimeout {
                topic: topic.to_owned(),
                seconds: LIMIT.as_secs(),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if let (Some(key), Some(value)) = (m.key(), m.payload()) {
                    if wanted(key) {
                        out.push((key.to_vec(), value.to_vec()));
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => return Err(SinkError::Kafka(e)),
            None => {}
        }
    }
    Ok(out)
}
