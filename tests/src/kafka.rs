//! Reading topics back in tests: a consumer that assigns every partition
//! itself (no group rebalance to wait for).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::unique;

/// A consumer that assigns partitions itself (no group rebalance to wait for).
fn test_consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("test"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer")
}

/// Every `after.id` in `records`, sorted, without duplicates.
pub fn distinct_ids(records: &[Consumed]) -> Vec<i64> {
    let mut ids: Vec<i64> = records
        .iter()
        .filter_map(|r| r.value["after"]["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One consumed Kafka record.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Key as text.
    pub key: Option<String>,
    /// Value parsed as JSON (`Null` for a tombstone).
    pub value: serde_json::Value,
    /// Value as the text it is; `None` for a tombstone.
    pub raw: Option<String>,
    /// Headers as (name, text).
    pub headers: Vec<(String, String)>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// How many partitions `topic` has; `None` while it does not exist.
pub fn partition_count(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Option<usize> {
    consumer
        .fetch_metadata(Some(topic), timeout)
        .ok()
        .and_then(|m| {
            m.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len())
        })
        .filter(|&n| n > 0)
}

/// Reads `topic` from the beginning until `expected` records arrived or
/// `limit` passed, then returns what arrived (in partition, offset order).
pub fn consume(bootstrap: &str, topic: &str, expected: usize, limit: Duration) -> Vec<Consumed> {
    let consumer = test_consumer(bootstrap);
    let deadline = Instant::now() + limit;
    // Assign every partition from the beginning (no group rebalance to wait for).
    let partitions = loop {
        match partition_count(&consumer, topic, Duration::from_secs(5)) {
            Some(n) => break n,
            None if Instant::now() >= deadline => return Vec::new(),
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        out.push(consumed(&m));
    }
    out.sort_by_key(|c| (c.partition, c.offset));
    out
}

/// Every record of `topic` up to the partitions' ends (as the broker reports
/// them in fetch responses): call it once the slot confirmed the writes, and
/// nothing can be missing or still coming. An absent topic reads as empty.
pub fn read_to_end(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("test"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let Some(partitions) = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()
        .and_then(|m| {
            m.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len() as i32)
        })
    else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end = std::collections::HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Tansu's fetch responses can report a partition's end before its last
    // batch is visible: after every partition reached its end, keep reading
    // until nothing new came for a while.
    let quiet = Duration::from_millis(800);
    let mut last_news = Instant::now();
    while at_end.len() < partitions as usize || last_news.elapsed() < quiet {
        assert!(
            Instant::now() < deadline,
            "{topic}: partitions not read to the end after 60 s"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(consumed(&m));
                last_news = Instant::now();
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    out.sort_by_key(|c| (c.partition, c.offset));
    out
}

fn consumed(m: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Consumed {
        key: m.key().map(text),
        raw: m.payload().map(text),
        value: m
            .payload()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or(serde_json::Value::Null),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(text).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
        partition: m.partition(),
        offset: m.offset(),
    }
}
