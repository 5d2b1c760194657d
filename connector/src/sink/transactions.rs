//! Exactly-once delivery: records go to Kafka in transactions, each ending
//! with a checkpoint record that holds the slot position it covers. A
//! restart reads the last committed checkpoint and starts replication there,
//! so PostgreSQL skips every transaction Kafka already committed, even when
//! the slot itself was not told yet.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use pgkafka_crds::PgKafkaConnectorSpec;

use super::SinkError;
use crate::lsn::Lsn;

/// The transactional id: one per source slot, so a restarted engine fences
/// the transactions of the one it replaces.
pub(crate) fn transactional_id(spec: &PgKafkaConnectorSpec) -> String {
    let pg = &spec.postgres;
    format!(
        "pgkafka.{}.{}.{}.{}",
        pg.host, pg.port, pg.database, spec.slot.name
    )
}

/// The compacted topic holding checkpoints, keyed by transactional id.
pub(crate) fn checkpoint_topic(spec: &PgKafkaConnectorSpec) -> String {
    format!("{}.pgkafka-checkpoints", spec.kafka.topic_prefix)
}

/// A checkpoint's value: `{"lsn":"0/16B3748"}`.
pub(crate) fn checkpoint_value(lsn: Lsn) -> Vec<u8> {
    format!("{{\"lsn\":\"{lsn}\"}}").into_bytes()
}

fn parse_checkpoint(value: &[u8]) -> Option<Lsn> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    v["lsn"].as_str()?.parse().ok()
}

/// The highest committed checkpoint of `id` in `topic` (`None` when there is
/// none).
pub(crate) fn read_checkpoint(
    base: &ClientConfig,
    topic: &str,
    id: &str,
) -> Result<Option<Lsn>, SinkError> {
    let records = read_compacted(base, topic, &format!("{id}.checkpoint-reader"), |key| {
        key == id.as_bytes()
    })?;
    Ok(records
        .iter()
        .filter_map(|(_, value)| parse_checkpoint(value))
        .max())
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

/// The Kafka transaction being filled.
#[derive(Debug)]
pub(crate) struct OpenTransaction {
    /// When it began.
    pub started: Instant,
    /// End LSN of the last source transaction it completely holds.
    pub covers: Option<Lsn>,
}

/// When an open Kafka transaction is committed: it holds only complete
/// source transactions and is old enough.
pub(crate) fn due(open: &OpenTransaction, in_source_transaction: bool) -> bool {
    !in_source_transaction && open.covers.is_some() && open.started.elapsed() >= COMMIT_EVERY
}

/// How long a Kafka transaction stays open (at least; it closes at the next
/// source commit after it). A commit waits for every record in flight and
/// the broker's EndTxn while the stream is not read: every 100 ms that
/// stall cost a third of the throughput (0.65 of `pg_recvlogical`), every
/// 500 ms it costs little. `read_committed` consumers see records that much
/// later.
pub const COMMIT_EVERY: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_commits_wait_for_source_boundaries() {
        assert_eq!(
            parse_checkpoint(&checkpoint_value(Lsn(0x1_0000_0010))),
            Some(Lsn(0x1_0000_0010))
        );
        assert_eq!(parse_checkpoint(b"junk"), None);
        let young = OpenTransaction {
            started: Instant::now(),
            covers: Some(Lsn(1)),
        };
        assert!(!due(&young, false), "too young");
        let empty = OpenTransaction {
            started: Instant::now() - COMMIT_EVERY,
            covers: None,
        };
        assert!(!due(&empty, false), "nothing complete to cover yet");
        let old = OpenTransaction {
            started: Instant::now() - COMMIT_EVERY,
            covers: Some(Lsn(1)),
        };
        assert!(due(&old, false));
        assert!(!due(&old, true), "never inside a source transaction");
    }
}
