//! The record size limit (`spec.kafka.maxRecordBytes`) and the error
//! policy (`spec.errors`, Kafka Connect's `errors.*`): a record whose key
//! and value are larger than the limit is never sent. Under `tolerance:
//! none` it halts the engine before anything of its transaction is sent
//! (the slot stays before the change); under `tolerance: all` a record on
//! the dead-letter topic takes its place in the same source transaction
//! (the same Kafka transaction under exactly-once): the original key, a
//! value that says what was refused and why, and Connect's
//! `__connect.errors.*` headers. The stream goes on and the slot moves past.

use std::sync::Arc;

use bytes::Bytes;
use prometheus::IntCounter;
use serde_json::json;

use super::TransformError;
use crate::event::{EventExtras, Record};

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

impl RecordLimit {
    /// Appends `record` to `out`, or in its place its dead letter when it is
    /// over the limit; an error when it is over and there is no
    /// dead-letter topic. `table` and `path` name where it came from.
    pub fn admit(
        &self,
        record: Record,
        table: &str,
        path: &str,
        out: &mut Vec<Record>,
    ) -> Result<(), TransformError> {
        let key_bytes = record.key.as_ref().map_or(0, Bytes::len);
        let value_bytes = record.payload.as_ref().map_or(0, Bytes::len);
        let size = key_bytes + value_bytes;
        if size <= self.max_bytes {
            out.push(record);
            return Ok(());
        }
        let message = format!(
            "a record of {size} bytes for topic {} (table {table}, transaction {} committing at {}) is larger than spec.kafka.maxRecordBytes ({})",
            record.topic, record.tx.xid, record.tx.commit_lsn, self.max_bytes
        );
        let Some((topic, index, context_headers)) = &self.dead_letters else {
            return Err(TransformError::TooLarge {
                path: path.to_owned(),
                message: format!(
                    "{message}; nothing of its transaction was sent and the slot stays before it: \
                     raise maxRecordBytes (and the broker's limits), or set spec.errors.tolerance: all \
                     with a deadLetterQueue"
                ),
            });
        };
        let value = json!({
            "reason": "RecordTooLarge",
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
        let headers = if *context_headers {
            [
                ("__connect.errors.topic", record.topic.to_string()),
                ("__connect.errors.connector.name", self.connector.clone()),
                ("__connect.errors.stage", "KAFKA_PRODUCE".to_owned()),
                (
                    "__connect.errors.exception.class.name",
                    "io.pgkafka.RecordTooLargeException".to_owned(),
                ),
                ("__connect.errors.exception.message", message),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Some(v)))
            .collect()
        } else {
            Vec::new()
        };
        self.dead_lettered.inc();
        out.push(Record {
            extras: Some(Arc::new(EventExtras {
                headers,
                timestamp_ms: None,
            })),
            ..Record::keyed(
                topic,
                *index,
                record.key,
                Some(Bytes::from(value.to_string())),
                &record.tx,
            )
        });
        Ok(())
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
            .admit(record(92), "public.big", "t", &mut out)
            .expect("fits");
        assert_eq!(out.len(), 1);
        let err = limit(false)
            .admit(
                record(93),
                "public.big",
                "spec.listeners[0].targets[0]",
                &mut out,
            )
            .expect_err("over");
        assert!(
            err.to_string()
                .starts_with("spec.listeners[0].targets[0]: a record of 101 bytes"),
            "{err}"
        );
        let l = limit(true);
        l.admit(record(500), "public.big", "t", &mut out)
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
}
