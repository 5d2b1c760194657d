//! The record size limit (`spec.kafka.maxRecordBytes`), what the broker
//! says of the topic (its own `max.message.bytes`; a compacted topic takes
//! no record without a key), and the error policy (`spec.errors` or the
//! target's own, Kafka Connect's `errors.*`): a record the broker would
//! refuse is never sent. Brokers refuse whole batches, so a refusal learnt
//! from the broker could not tell the guilty record from its neighbours;
//! checked here, it is exact. Under `tolerance: none` such a record halts
//! the engine before anything of its transaction is sent (the slot stays
//! before the change); under `tolerance: all` a record on the dead-letter
//! topic takes its place in the same source transaction (the same Kafka
//! transaction under exactly-once): the original key, a value that says
//! what was refused and why (with the original value when it fits), and
//! Connect's `__connect.errors.*` headers. The stream goes on and the slot
//! moves past.

use std::sync::Arc;

use bytes::Bytes;
use prometheus::IntCounter;
use serde_json::json;

use super::TransformError;
use crate::event::{EventExtras, Record, TopicFacts};

/// The limit and what to do past it.
#[derive(Debug, Clone)]
pub(crate) struct RecordLimit {
    /// Largest key + value, in bytes.
    pub max_bytes: usize,
    /// The connector's name (in the dead-letter context).
    pub connector: String,
    /// The dead-letter topic and its index, with context headers or not.
    pub dead_letters: Option<(Arc<str>, usize, bool)>,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: IntCounter,
}

/// Bytes a record takes on the wire beyond its key, value and own
/// headers: the batch header and the transaction headers every record
/// carries, with room to spare.
const WIRE_OVERHEAD: usize = 200;

/// Why a record cannot go to its topic.
enum Refusal {
    /// Key + value over `spec.kafka.maxRecordBytes`.
    OverLimit,
    /// Over the topic's own `max.message.bytes`.
    OverTopicLimit(usize),
    /// No key, for a compacted topic.
    Keyless,
    /// The broker refused every record of the topic (not authorized).
    Topic(Arc<str>),
}

impl Refusal {
    fn of(record: &Record, facts: &TopicFacts, max_bytes: usize) -> Option<Refusal> {
        if let Some(words) = &facts.refused {
            return Some(Refusal::Topic(Arc::clone(words)));
        }
        let (key, value) = sizes(record);
        if key + value > max_bytes {
            return Some(Refusal::OverLimit);
        }
        let headers = record.extras.as_ref().map_or(0, |e| {
            e.headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
                .sum()
        });
        match facts.max_message_bytes {
            Some(limit) if key + value + headers + WIRE_OVERHEAD > limit => {
                return Some(Refusal::OverTopicLimit(limit))
            }
            _ => {}
        }
        (facts.compacted && record.key.is_none()).then_some(Refusal::Keyless)
    }

    /// Connect's reason word and exception class.
    fn words(&self) -> (&'static str, &'static str) {
        match self {
            Refusal::OverLimit | Refusal::OverTopicLimit(_) => {
                ("RecordTooLarge", "io.pgkafka.RecordTooLargeException")
            }
            Refusal::Keyless => (
                "KeylessRecordOnCompactedTopic",
                "io.pgkafka.InvalidRecordException",
            ),
            Refusal::Topic(_) => (
                "TopicAuthorizationFailed",
                "org.apache.kafka.common.errors.TopicAuthorizationException",
            ),
        }
    }
}

fn sizes(record: &Record) -> (usize, usize) {
    (
        record.key.as_ref().map_or(0, Bytes::len),
        record.payload.as_ref().map_or(0, Bytes::len),
    )
}

impl RecordLimit {
    /// Appends `record` to `out`, or in its place its dead letter when it
    /// cannot go to its topic (`facts`: what the broker says of it); an
    /// error when it cannot and there is no dead-letter topic. `table` and
    /// `path` name where it came from.
    pub fn admit(
        &self,
        record: Record,
        facts: &TopicFacts,
        (table, path): (&str, &str),
        out: &mut Vec<Record>,
    ) -> Result<(), TransformError> {
        let Some(refusal) = Refusal::of(&record, facts, self.max_bytes) else {
            out.push(record);
            return Ok(());
        };
        let message = self.describe(&record, &refusal, table);
        let Some((topic, index, context_headers)) = &self.dead_letters else {
            let fix = match refusal {
                Refusal::OverLimit | Refusal::OverTopicLimit(_) => {
                    "raise maxRecordBytes (and the broker's limits)"
                }
                Refusal::Keyless => "give the table a key (or keyColumns), or send it to a topic that is not compacted",
                Refusal::Topic(_) => "grant the connector's principal WRITE on the topic and restart the engine",
            };
            return Err(TransformError::Refused {
                path: path.to_owned(),
                message: format!(
                    "{message}; nothing of its transaction was sent and the slot stays before it: \
                     {fix}, or set errors.tolerance: all with a deadLetterQueue"
                ),
            });
        };
        self.dead_lettered.inc();
        let dlq = (topic, *index, *context_headers);
        out.push(self.dead_letter(record, &refusal, message, table, dlq));
        Ok(())
    }

    /// The dead letter in `record`'s place on the dead-letter topic: its
    /// key, a value saying what and why (with the original value when it
    /// fits), Connect's headers when asked for.
    fn dead_letter(
        &self,
        record: Record,
        refusal: &Refusal,
        message: String,
        table: &str,
        (topic, index, context_headers): (&Arc<str>, usize, bool),
    ) -> Record {
        let (reason, class) = refusal.words();
        let (key_bytes, value_bytes) = sizes(&record);
        let mut value = json!({
            "reason": reason,
            "message": message,
            "connector": self.connector,
            "table": table,
            "topic": &*record.topic,
            "commitLsn": record.tx.commit_lsn,
            "txId": record.tx.xid,
            "keyBytes": key_bytes,
            "valueBytes": value_bytes,
            "limit": self.max_bytes,
        });
        let mut text = value.to_string();
        // The original value too, when the dead letter stays within limits.
        if let Some(original) = &record.payload {
            if text.len() + original.len() + key_bytes + 32 <= self.max_bytes {
                value["value"] = serde_json::from_slice(original)
                    .unwrap_or_else(|_| String::from_utf8_lossy(original).into());
                text = value.to_string();
            }
        }
        let headers = if context_headers {
            [
                ("__connect.errors.topic", record.topic.to_string()),
                ("__connect.errors.connector.name", self.connector.clone()),
                ("__connect.errors.stage", "KAFKA_PRODUCE".to_owned()),
                ("__connect.errors.exception.class.name", class.to_owned()),
                ("__connect.errors.exception.message", message),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Some(v)))
            .collect()
        } else {
            Vec::new()
        };
        Record {
            extras: Some(Arc::new(EventExtras {
                headers,
                timestamp_ms: None,
            })),
            ..Record::keyed(
                topic,
                index,
                record.key,
                Some(Bytes::from(text)),
                &record.tx,
            )
        }
    }

    /// What was refused and why, in words.
    fn describe(&self, record: &Record, refusal: &Refusal, table: &str) -> String {
        let (key, value) = sizes(record);
        let size = key + value;
        let whose = format!(
            "a record of {size} bytes for topic {} (table {table}, transaction {} committing at {})",
            record.topic, record.tx.xid, record.tx.commit_lsn
        );
        match refusal {
            Refusal::OverLimit => format!(
                "{whose} is larger than spec.kafka.maxRecordBytes ({})",
                self.max_bytes
            ),
            Refusal::OverTopicLimit(limit) => format!(
                "{whose} does not fit the topic's max.message.bytes ({limit}) with its headers"
            ),
            Refusal::Keyless => format!(
                "{whose} has no key, and the topic is compacted (cleanup.policy=compact), which refuses records without one"
            ),
            Refusal::Topic(words) => format!(
                "{whose} cannot go: the broker refused this engine's records for the topic ({words})"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TxHeaders;
    use crate::lsn::Lsn;

    fn record(value_bytes: usize) -> Record {
        Record::keyed(
            &Arc::from("p.public.big"),
            0,
            Some(Bytes::from_static(b"{\"id\":1}")),
            Some(Bytes::from(vec![b'x'; value_bytes])),
            &Arc::new(TxHeaders::new(Lsn(0x1_0000), 7)),
        )
    }

    fn limit(dead_letters: bool) -> RecordLimit {
        RecordLimit {
            max_bytes: 100,
            connector: "c".into(),
            dead_letters: dead_letters.then(|| (Arc::from("dlq"), 4, true)),
            dead_lettered: IntCounter::new("n", "h").expect("counter"),
        }
    }

    #[test]
    fn under_the_limit_passes_over_it_halts_or_goes_to_the_dead_letters() {
        let mut out = Vec::new();
        limit(false)
            .admit(
                record(92),
                &TopicFacts::default(),
                ("public.big", "t"),
                &mut out,
            )
            .expect("fits");
        assert_eq!(out.len(), 1);
        let err = limit(false)
            .admit(
                record(93),
                &TopicFacts::default(),
                ("public.big", "spec.listeners[0].targets[0]"),
                &mut out,
            )
            .expect_err("over");
        assert!(
            err.to_string()
                .starts_with("spec.listeners[0].targets[0]: a record of 101 bytes"),
            "{err}"
        );
        let l = limit(true);
        l.admit(
            record(500),
            &TopicFacts::default(),
            ("public.big", "t"),
            &mut out,
        )
        .expect("dead-lettered");
        let dead = &out[1];
        assert_eq!((&*dead.topic, dead.topic_index), ("dlq", 4));
        assert_eq!(dead.key.as_deref(), Some(&b"{\"id\":1}"[..]));
        let v: serde_json::Value =
            serde_json::from_slice(dead.payload.as_deref().unwrap_or_default()).expect("JSON");
        assert_eq!(v["reason"], "RecordTooLarge");
        assert_eq!(
            (v["keyBytes"].clone(), v["valueBytes"].clone()),
            (json!(8), json!(500))
        );
        assert_eq!(v["topic"], "p.public.big");
        let headers = &dead.extras.as_ref().expect("headers").headers;
        assert_eq!(
            headers[0],
            ("__connect.errors.topic".into(), Some("p.public.big".into()))
        );
        assert_eq!(l.dead_lettered.get(), 1);
    }

    #[test]
    fn the_topic_s_own_limit_and_compaction_are_checked_too() {
        let mut out = Vec::new();
        let l = limit(true);
        let small = TopicFacts {
            max_message_bytes: Some(250),
            ..TopicFacts::default()
        };
        // 8 + 92 bytes fit spec's 100, but not 250 with the wire's overhead.
        l.admit(record(92), &small, ("public.big", "t"), &mut out)
            .expect("dead-lettered");
        let v: serde_json::Value =
            serde_json::from_slice(out[0].payload.as_deref().unwrap_or_default()).expect("JSON");
        assert_eq!(v["reason"], "RecordTooLarge");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("max.message.bytes (250)")),
            "{v}"
        );
        let keyless = Record {
            key: None,
            ..record(10)
        };
        let compacted = TopicFacts {
            compacted: true,
            ..TopicFacts::default()
        };
        let err = limit(false)
            .admit(keyless.clone(), &compacted, ("public.big", "t"), &mut out)
            .expect_err("halts");
        assert!(err.to_string().contains("has no key"), "{err}");
        let mut big = limit(true);
        big.max_bytes = 10_000;
        big.admit(keyless.clone(), &compacted, ("public.big", "t"), &mut out)
            .expect("dead-lettered");
        let dead = out.last().expect("dead letter");
        let v: serde_json::Value =
            serde_json::from_slice(dead.payload.as_deref().unwrap_or_default()).expect("JSON");
        assert_eq!(v["reason"], "KeylessRecordOnCompactedTopic");
        assert_eq!(v["value"], "xxxxxxxxxx", "the original value, as it fits");
        let class = &dead.extras.as_ref().expect("headers").headers[3];
        assert_eq!(
            class.1.as_deref(),
            Some("io.pgkafka.InvalidRecordException")
        );
        let refused = TopicFacts {
            refused: Some(Arc::from("Broker: Topic authorization failed")),
            ..TopicFacts::default()
        };
        big.admit(record(10), &refused, ("public.big", "t"), &mut out)
            .expect("dead-lettered");
        let v: serde_json::Value = serde_json::from_slice(
            out.last()
                .and_then(|r| r.payload.as_deref())
                .unwrap_or_default(),
        )
        .expect("JSON");
        assert_eq!(v["reason"], "TopicAuthorizationFailed");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("(Broker: Topic authorization failed)")),
            "{v}"
        );
        big.admit(
            keyless,
            &TopicFacts::default(),
            ("public.big", "t"),
            &mut out,
        )
        .expect("sent");
        assert_eq!(out.last().map(|r| &*r.topic), Some("p.public.big"));
    }
}
