//! Transaction metadata (Debezium's `provide.transaction.metadata`): a
//! BEGIN record before the first captured change of a transaction and an
//! END record at its commit, on the transaction topic, keyed by the
//! transaction's id; and each change's place in its transaction
//! ([`TxOrder`], the envelope's `transaction` block).
//!
//! Shapes as Debezium writes them: key `{"id"}`, value `{"status", "id",
//! "event_count", "data_collections", "ts_ms"}` (BEGIN has nulls for the
//! counts), `data_collections` as `[{"data_collection": "<schema>.<table>",
//! "event_count"}]` in order of first change, `ts_ms` the commit time. The
//! id is `<xid>:<commit LSN>` on every record of the transaction (Debezium's
//! PostgreSQL connector puts the LSN of the event at hand there, so its
//! BEGIN and END ids differ; one id lets consumers join them).
//!
//! Counted: every change a listener captures (a key-changing UPDATE counts
//! twice, as the delete and the create it is sent as), whatever the
//! targets' filters then keep, as Debezium counts before its transforms.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::schema::wrap;
use crate::event::{Record, TxHeaders, TxInfo, TxOrder};

const KEY_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataKey","version":1}"#;
const VALUE_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"status"},{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":true,"field":"event_count"},{"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"data_collection"},{"type":"int64","optional":false,"field":"event_count"}],"optional":false,"name":"event.collection","version":1},"optional":true,"field":"data_collections"},{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataValue","version":1}"#;

/// The Connect schema of the envelope's `transaction` field.
pub(super) const BLOCK_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block","version":1,"field":"transaction"}"#;

/// Transaction metadata of the stream, one transaction at a time.
pub(super) struct TxMetadata {
    topic: Arc<str>,
    topic_index: usize,
    schemas: bool,
    /// The transaction being read, once it had a captured change.
    open: Option<Counts>,
}

#[derive(Default)]
struct Counts {
    total: u64,
    /// Per table (`schema.table`), in order of first change.
    tables: Vec<(String, u64)>,
}

impl TxMetadata {
    /// Metadata written to `topic` (index `topic_index` in the routes'
    /// topics), with Connect schemas when `schemas`.
    pub fn new(topic: Arc<str>, topic_index: usize, schemas: bool) -> Self {
        TxMetadata {
            topic,
            topic_index,
            schemas,
            open: None,
        }
    }

    /// A transaction began: nothing counted yet.
    pub fn begin(&mut self) {
        self.open = None;
    }

    /// The place of the next `events` changes of `table` (1, or 2 for a
    /// key change sent as a delete and a create); the first change of a
    /// transaction is preceded by its BEGIN record in `out`.
    pub fn place(
        &mut self,
        table: &str,
        events: u64,
        tx: &TxInfo,
        headers: &Arc<TxHeaders>,
        out: &mut Vec<Record>,
    ) -> TxOrder {
        let counts = match &mut self.open {
            Some(c) => c,
            None => {
                let value = format!(
                    r#"{{"status":"BEGIN","id":{},"event_count":null,"data_collections":null,"ts_ms":{}}}"#,
                    json!(tx.metadata_id()),
                    tx.commit_ms()
                );
                out.push(self.record(tx, value, headers));
                self.open.insert(Counts::default())
            }
        };
        let at = match counts.tables.iter().position(|(t, _)| t == table) {
            Some(i) => i,
            None => {
                counts.tables.push((table.to_owned(), 0));
                counts.tables.len() - 1
            }
        };
        let order = TxOrder {
            total: counts.total + 1,
            collection: counts.tables[at].1 + 1,
        };
        counts.total += events;
        counts.tables[at].1 += events;
        order
    }

    /// The transaction committed: its END record, when it had a change.
    pub fn end(&mut self, tx: &TxInfo, headers: &Arc<TxHeaders>, out: &mut Vec<Record>) {
        let Some(counts) = self.open.take() else {
            return;
        };
        let collections: Vec<String> = counts
            .tables
            .iter()
            .map(|(t, n)| format!(r#"{{"data_collection":{},"event_count":{n}}}"#, json!(t)))
            .collect();
        let value = format!(
            r#"{{"status":"END","id":{},"event_count":{},"data_collections":[{}],"ts_ms":{}}}"#,
            json!(tx.metadata_id()),
            counts.total,
            collections.join(","),
            tx.commit_ms()
        );
        out.push(self.record(tx, value, headers));
    }

    /// A record keyed by the transaction's id; `value` is JSON in
    /// Debezium's field order.
    fn record(&self, tx: &TxInfo, value: String, headers: &Arc<TxHeaders>) -> Record {
        let key = format!(r#"{{"id":{}}}"#, json!(tx.metadata_id()));
        let (key, value) = if self.schemas {
            (
                wrap(KEY_SCHEMA.as_bytes(), key.as_bytes()),
                wrap(VALUE_SCHEMA.as_bytes(), value.as_bytes()),
            )
        } else {
            (key.into_bytes(), value.into_bytes())
        };
        Record::keyed(
            &self.topic,
            self.topic_index,
            Some(Bytes::from(key)),
            Some(Bytes::from(value)),
            headers,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;

    #[test]
    fn begin_before_the_first_change_and_end_with_the_counts() {
        let tx = TxInfo {
            xid: 571,
            commit_lsn: Lsn(53_195_832),
            commit_time_us: 0,
            last_commit_lsn: None,
        };
        let headers = Arc::new(TxHeaders::new(tx.commit_lsn, tx.xid));
        let mut m = TxMetadata::new(Arc::from("p.transaction"), 3, false);
        let mut out = Vec::new();
        m.begin();
        let first = m.place("s1.a", 1, &tx, &headers, &mut out);
        let moved = m.place("s2.a", 2, &tx, &headers, &mut out);
        let third = m.place("s1.a", 1, &tx, &headers, &mut out);
        m.end(&tx, &headers, &mut out);
        assert_eq!((first.total, first.collection), (1, 1));
        assert_eq!((moved.total, moved.collection), (2, 1));
        assert_eq!((moved.next().total, moved.next().collection), (3, 2));
        assert_eq!((third.total, third.collection), (4, 2));
        let text = |b: &Option<Bytes>| {
            String::from_utf8(b.clone().unwrap_or_default().to_vec()).unwrap_or_default()
        };
        assert_eq!(out.len(), 2);
        assert_eq!(text(&out[0].key), r#"{"id":"571:53195832"}"#);
        assert_eq!(
            text(&out[0].payload),
            r#"{"status":"BEGIN","id":"571:53195832","event_count":null,"data_collections":null,"ts_ms":946684800000}"#
        );
        assert_eq!(
            text(&out[1].payload),
            r#"{"status":"END","id":"571:53195832","event_count":4,"data_collections":[{"data_collection":"s1.a","event_count":2},{"data_collection":"s2.a","event_count":2}],"ts_ms":946684800000}"#
        );
        assert_eq!(out[1].topic_index, 3);
    }

    #[test]
    fn a_transaction_without_changes_has_no_records() {
        let tx = TxInfo {
            xid: 1,
            commit_lsn: Lsn(1),
            commit_time_us: 0,
            last_commit_lsn: None,
        };
        let headers = Arc::new(TxHeaders::new(tx.commit_lsn, tx.xid));
        let mut m = TxMetadata::new(Arc::from("t"), 0, true);
        let mut out = Vec::new();
        m.begin();
        m.end(&tx, &headers, &mut out);
        assert!(out.is_empty());
    }
}
