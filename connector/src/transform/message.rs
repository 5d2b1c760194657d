//! Logical decoding messages (`spec.messages`) as Debezium's message
//! events: key `{"prefix"}`, value `{"op": "m", "ts_ms", "source",
//! "transaction", "message": {"prefix", "content"}}` (`transaction` only with
//! transaction metadata on and for a transactional message), the content
//! written as `binaryHandlingMode` says (base64 by default), with Connect
//! schemas (`io.debezium.connector.postgresql.MessageKey` / `MessageValue`)
//! in the schema form. The first entry whose prefixes take a message routes
//! it; messages no entry takes are dropped, as Debezium drops those its
//! prefix lists exclude.

use std::io::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use pgkafka_crds::{BinaryHandlingMode, MessageSpec, PgKafkaConnectorSpec, TopicCreation};
use serde_json::{json, Value};

use super::encode::EnvelopeContext;
use super::outbox_message::event_from_json;
use super::route::{Routes, TopicRegistry, NO_TOPIC};
use super::schema::{source_schema, wrap};
use super::txmeta::BLOCK_SCHEMA;
use super::TransformError;
use crate::decode::values::write_str;
use crate::event::{Record, TxHeaders, TxInfo, TxOrder};
use crate::lsn::Lsn;

/// The data collection transaction metadata counts messages under
/// (Debezium's `LogicalDecodingMessageId`).
pub(super) const MESSAGE_COLLECTION: &str = "LOGICAL_DECODING_MESSAGE";

/// The message entries of a spec, each with its topic.
pub(super) struct MessageRoutes {
    entries: Vec<(MessageSpec, usize, Arc<str>)>,
    schemas: Option<(Bytes, Bytes)>,
}

/// One logical decoding message, where it stands in the stream.
pub(super) struct Logical<'a> {
    pub prefix: &'a str,
    pub content: &'a [u8],
    pub lsn: Lsn,
    /// Its transaction, for a transactional message.
    pub tx: Option<&'a TxInfo>,
    /// Its place in the transaction, with transaction metadata on.
    pub order: Option<TxOrder>,
    pub now_ms: i64,
}

impl MessageRoutes {
    /// Registers each entry's topic in `routes` (outbox entries' topics are
    /// named by their messages).
    pub fn new(spec: &PgKafkaConnectorSpec, routes: &mut Routes, transaction: bool) -> Self {
        let entries = spec
            .messages
            .iter()
            .map(|m| {
                let (index, topic) = match &m.outbox {
                    Some(o) => (NO_TOPIC, Arc::from(o.topic.as_str())),
                    None => routes.topic_index(&m.topic_name(&spec.kafka.topic_prefix)),
                };
                (m.clone(), index, topic)
            })
            .collect();
        let schemas = spec.kafka.schemas.then(|| {
            (
                Bytes::from(KEY_SCHEMA),
                Bytes::from(value_schema(transaction)),
            )
        });
        MessageRoutes { entries, schemas }
    }

    /// Whether some entry takes messages with `prefix`.
    pub fn takes(&self, prefix: &str) -> bool {
        self.entries.iter().any(|(m, _, _)| m.takes(prefix))
    }

    /// The record of `message`, when an entry takes its prefix: Debezium's
    /// message event, or for an outbox entry the event its content
    /// describes (its topic registered in `topics` when new).
    pub fn record(
        &self,
        ctx: &EnvelopeContext,
        message: &Logical<'_>,
        headers: &Arc<TxHeaders>,
        topics: &mut TopicRegistry,
        defaults: &TopicCreation,
    ) -> Result<Option<Record>, TransformError> {
        let Some((i, (m, index, topic))) = self
            .entries
            .iter()
            .enumerate()
            .find(|(_, (m, _, _))| m.takes(message.prefix))
        else {
            return Ok(None);
        };
        if let Some(outbox) = &m.outbox {
            let commit_ms = message.tx.map_or(message.now_ms, TxInfo::commit_ms);
            let event = event_from_json(
                outbox,
                message.content,
                commit_ms,
                &format!("spec.messages[{i}]"),
            )?;
            let (index, topic) = topics.index_with(&event.topic, defaults);
            return Ok(Some(event.into_record(topic, index, headers)));
        }
        let key = json!({ "prefix": message.prefix }).to_string().into_bytes();
        let value = value(ctx, message);
        let (key, value) = match &self.schemas {
            Some((k, v)) => (wrap(k, &key), wrap(v, &value)),
            None => (key, value),
        };
        Ok(Some(Record::keyed(
            topic,
            *index,
            Some(Bytes::from(key)),
            Some(Bytes::from(value)),
            headers,
        )))
    }
}

/// The value, in Debezium's field order.
fn value(ctx: &EnvelopeContext, m: &Logical<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + m.content.len() * 4 / 3);
    let _ = write!(out, "{{\"op\":\"m\",\"ts_ms\":{},\"source\":", m.now_ms);
    write_source(&mut out, ctx, m);
    if let (Some(order), Some(tx)) = (m.order, m.tx) {
        let _ = write!(
            out,
            ",\"transaction\":{{\"id\":\"{}\",\"total_order\":{},\"data_collection_order\":{}}}",
            tx.metadata_id(),
            order.total,
            order.collection
        );
    }
    out.extend_from_slice(b",\"message\":{\"prefix\":");
    write_str(&mut out, m.prefix);
    out.extend_from_slice(b",\"content\":");
    write_str(&mut out, &content_text(m.content, ctx.modes.binary));
    out.extend_from_slice(b"}}");
    out
}

/// The `source` block of a message: no schema or table; a transactional
/// message carries its transaction, the others none.
fn write_source(out: &mut Vec<u8>, ctx: &EnvelopeContext, m: &Logical<'_>) {
    out.extend_from_slice(b"{\"version\":\"");
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"\",\"connector\":\"postgresql\",\"name\":");
    write_str(out, &ctx.name);
    let ts = m.tx.map_or(m.now_ms, TxInfo::commit_ms);
    let _ = write!(out, ",\"ts_ms\":{ts},\"snapshot\":\"false\",\"db\":");
    write_str(out, &ctx.database);
    out.extend_from_slice(b",\"schema\":\"\",\"table\":\"\",\"txId\":");
    match m.tx {
        Some(tx) => {
            let _ = write!(out, "{}", tx.xid);
        }
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(out, ",\"lsn\":{},\"commitLsn\":", m.lsn.0);
    match m.tx {
        Some(tx) => {
            let _ = write!(out, "\"{}\"", tx.commit_lsn);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"sequence\":\"[");
    match m.tx.and_then(|tx| tx.last_commit_lsn) {
        Some(last) => {
            let _ = write!(out, "\\\"{}\\\"", last.0);
        }
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(out, ",\\\"{}\\\"]\",\"xmin\":null}}", m.lsn.0);
}

/// The content as `binaryHandlingMode` writes bytes.
fn content_text(content: &[u8], mode: BinaryHandlingMode) -> String {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    match mode {
        BinaryHandlingMode::Base64 => STANDARD.encode(content),
        BinaryHandlingMode::Base64UrlSafe => URL_SAFE.encode(content),
        BinaryHandlingMode::Hex => content.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

const KEY_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"string","optional":true,"field":"prefix"}],"optional":false,"name":"io.debezium.connector.postgresql.MessageKey","version":1}"#;

fn value_schema(transaction: bool) -> Vec<u8> {
    let mut fields = vec![
        json!({"type": "string", "optional": false, "field": "op"}),
        json!({"type": "int64", "optional": true, "field": "ts_ms"}),
        source_schema(),
    ];
    if transaction {
        fields.push(serde_json::from_str(BLOCK_SCHEMA).unwrap_or(Value::Null));
    }
    fields.push(json!({"type": "struct", "fields": [
            {"type": "string", "optional": true, "field": "prefix"},
            {"type": "string", "optional": true, "field": "content"}],
        "optional": false, "name": "io.debezium.connector.postgresql.Message", "version": 1,
        "field": "message"}));
    json!({"type": "struct", "fields": fields, "optional": false,
           "name": "io.debezium.connector.postgresql.MessageValue", "version": 1})
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::values::ValueModes;

    fn ctx(binary: BinaryHandlingMode) -> EnvelopeContext {
        EnvelopeContext {
            name: "shop".into(),
            database: "db".into(),
            modes: ValueModes {
                decimal: Default::default(),
                time: Default::default(),
                binary,
                json_as_text: true,
            },
        }
    }

    #[test]
    fn a_transactional_message_as_debezium_writes_it() {
        let tx = TxInfo {
            xid: 556,
            commit_lsn: Lsn(46_523_128),
            commit_time_us: 0,
            last_commit_lsn: None,
        };
        let m = Logical {
            prefix: "foo",
            content: b"bar",
            lsn: Lsn(46_523_000),
            tx: Some(&tx),
            order: Some(TxOrder {
                total: 2,
                collection: 1,
            }),
            now_ms: 1_559_033_904_863,
        };
        let v: Value =
            serde_json::from_slice(&value(&ctx(BinaryHandlingMode::Base64), &m)).expect("JSON");
        assert_eq!(v["op"], "m");
        assert_eq!(v["message"], json!({"prefix": "foo", "content": "YmFy"}));
        assert_eq!(v["source"]["txId"], 556);
        assert_eq!(v["source"]["table"], "");
        assert_eq!(v["source"]["ts_ms"], 946_684_800_000i64);
        assert_eq!(
            v["transaction"],
            json!({"id": "556:46523128", "total_order": 2, "data_collection_order": 1})
        );
    }

    #[test]
    fn a_non_transactional_message_has_no_transaction_and_hex_content() {
        let m = Logical {
            prefix: "p",
            content: &[0xde, 0xad],
            lsn: Lsn(7),
            tx: None,
            order: None,
            now_ms: 5,
        };
        let v: Value =
            serde_json::from_slice(&value(&ctx(BinaryHandlingMode::Hex), &m)).expect("JSON");
        assert_eq!(v["message"]["content"], "dead");
        assert_eq!(v["source"]["txId"], Value::Null);
        assert_eq!(v["source"]["ts_ms"], 5);
        assert!(v.get("transaction").is_none());
    }
}
