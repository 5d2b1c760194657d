//! Exactly-once delivery: records go to Kafka in transactions, each ending
//! with a checkpoint record that holds the slot position it covers. A
//! restart reads the last committed checkpoint and starts replication there,
//! so PostgreSQL skips every transaction Kafka already committed, even when
//! the slot itself was not told yet.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use pgkafka_crds::PgKafkaConnectorSpec;

use super::compacted::read_compacted;
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
