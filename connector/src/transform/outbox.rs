//! Outbox targets (`targets[].outbox`, Debezium's Outbox Event Router): a
//! row of the outbox table becomes one event, routed by a column through a
//! topic template, keyed by a column's text, the payload column as the
//! value (JSON itself for `json`/`jsonb` unless told otherwise, else a
//! string), header `id` from the event-id column, other columns as headers
//! or beside the payload, and the Kafka timestamp from a column or the
//! commit time. Inserts (and snapshot rows) are events; updates and deletes
//! are ignored, routed or fatal as the spec says.
//!
//! Columns are resolved once per table shape, so a missing one fails at
//! start-up (and at a later Relation message), naming the field.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime};
use pgkafka_crds::{Action, OutboxOperation, OutboxSpec, Placement};

use super::filter::FilterError;
use super::TransformError;
use crate::decode::values::write_string;
use crate::event::{Datum, EventExtras, Record, TableShape, TxHeaders, TxInfo};

const JSON: u32 = 114;
const JSONB: u32 = 3802;
const INT8: u32 = 20;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;

/// An outbox target's columns, by position in one table shape.
#[derive(Debug, Clone)]
pub(crate) struct CompiledOutbox {
    id: usize,
    key: usize,
    payload: usize,
    route_by: usize,
    /// The timestamp column and its type.
    timestamp: Option<(usize, u32)>,
    /// (column, placement, header or field name).
    additional: Vec<(usize, Placement, String)>,
    /// The payload is sent as JSON rather than as a string.
    expand: bool,
    /// The payload column is `json` or `jsonb`: PostgreSQL checked it.
    payload_is_json: bool,
}

/// One outbox event, before it has a topic index.
#[derive(Debug)]
pub(crate) struct OutboxEvent {
    pub topic: String,
    pub key: Option<Bytes>,
    /// `None`: a tombstone.
    pub value: Option<Bytes>,
    pub extras: EventExtras,
}

impl CompiledOutbox {
    /// Resolves `spec`'s columns in `shape`; `path` names the target.
    pub fn compile(spec: &OutboxSpec, shape: &TableShape, path: &str) -> Result<Self, FilterError> {
        let find = |field: &str, name: &str| -> Result<usize, FilterError> {
            shape
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| {
                    let all: Vec<&str> = shape.columns.iter().map(|c| c.name.as_str()).collect();
                    FilterError {
                        path: format!("{path}.outbox.{field}"),
                        message: format!(
                            "{} has no column {name:?} (columns: {})",
                            shape.table,
                            all.join(", ")
                        ),
                    }
                })
        };
        let payload = find("payload", &spec.payload)?;
        if spec.on_delete == OutboxOperation::Route && shape.replica_identity != b'f' {
            return Err(FilterError {
                path: format!("{path}.outbox.onDelete"),
                message: format!(
                    "routing deletes needs the whole old row: ALTER TABLE {} REPLICA IDENTITY FULL",
                    shape.table
                ),
            });
        }
        let timestamp = match &spec.timestamp {
            Some(name) => {
                let i = find("timestamp", name)?;
                let oid = shape.columns[i].value_oid;
                if ![INT8, TIMESTAMP, TIMESTAMPTZ].contains(&oid) {
                    return Err(FilterError {
                        path: format!("{path}.outbox.timestamp"),
                        message: format!(
                            "column {name:?} of {} is not a timestamp, timestamptz or bigint",
                            shape.table
                        ),
                    });
                }
                Some((i, oid))
            }
            None => None,
        };
        let mut additional = Vec::new();
        for (k, a) in spec.additional_placement.iter().enumerate() {
            let i = find(&format!("additionalPlacement[{k}].column"), &a.column)?;
            additional.push((i, a.placement, a.name().to_owned()));
        }
        let is_json = [JSON, JSONB].contains(&shape.columns[payload].value_oid);
        Ok(CompiledOutbox {
            id: find("eventId", &spec.event_id)?,
            key: find("eventKey", &spec.event_key)?,
            payload,
            route_by: find("routeByField", &spec.route_by_field)?,
            timestamp,
            additional,
            expand: spec.expand_json_payload.unwrap_or(is_json),
            payload_is_json: is_json,
        })
    }

    /// The event of a change with `action` whose row (the new one; the old
    /// one for a delete) is `row`; `None` when the spec ignores the action.
    pub fn event(
        &self,
        spec: &OutboxSpec,
        action: Action,
        row: Option<&[Datum]>,
        tx: &TxInfo,
        path: &str,
    ) -> Result<Option<OutboxEvent>, TransformError> {
        let policy = match action {
            Action::Insert => OutboxOperation::Route,
            Action::Update => spec.on_update,
            Action::Delete => spec.on_delete,
            Action::Truncate => OutboxOperation::Ignore,
        };
        match policy {
            OutboxOperation::Ignore => return Ok(None),
            OutboxOperation::Fail => {
                return Err(TransformError::Outbox {
                    path: format!("{path}.outbox"),
                    message: format!(
                        "a {action:?} of an outbox row, and onUpdate/onDelete say fail: the slot keeps it; \
                         change the policy to ignore or route it"
                    ),
                })
            }
            OutboxOperation::Route => {}
        }
        let row = row.ok_or_else(|| TransformError::Outbox {
            path: format!("{path}.outbox"),
            message: "no row image to build the event from".into(),
        })?;
        let text = |i: usize| -> Result<Option<&str>, TransformError> {
            match row.get(i) {
                Some(Datum::Text(b)) => Ok(std::str::from_utf8(b).ok()),
                Some(Datum::Null) | None => Ok(None),
                Some(Datum::UnchangedToast) | Some(Datum::Binary(_)) => Err(TransformError::Outbox {
                    path: format!("{path}.outbox"),
                    message: format!(
                        "column {} of the row is not in the change (a routed {action:?} needs REPLICA IDENTITY FULL)",
                        i + 1
                    ),
                }),
            }
        };
        let topic = routed_topic(spec, text(self.route_by)?.unwrap_or_default(), path)?;
        let payload = text(self.payload)?;
        let empty = payload.is_none_or(|p| p.trim().is_empty());
        let value = if empty && spec.tombstone_on_empty_payload {
            None
        } else {
            Some(self.value(payload, text)?)
        };
        let mut headers = vec![("id".to_owned(), text(self.id)?.map(str::to_owned))];
        for (i, placement, name) in &self.additional {
            if *placement == Placement::Header {
                headers.push((name.clone(), text(*i)?.map(str::to_owned)));
            }
        }
        let timestamp_ms = match self.timestamp {
            Some((i, oid)) => text(i)?.and_then(|t| millis(t, oid)),
            None => None,
        }
        .or(Some(tx.commit_ms()));
        Ok(Some(OutboxEvent {
            topic,
            key: text(self.key)?.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value,
            extras: EventExtras {
                headers,
                timestamp_ms,
            },
        }))
    }

    /// The value: the payload alone, or `{"payload": ..., <field>: ...}` with
    /// envelope-placed columns.
    fn value<'r>(
        &self,
        payload: Option<&str>,
        text: impl Fn(usize) -> Result<Option<&'r str>, TransformError>,
    ) -> Result<Bytes, TransformError> {
        let mut out = Vec::with_capacity(payload.map_or(4, str::len) + 64);
        let fields: Vec<&(usize, Placement, String)> = self
            .additional
            .iter()
            .filter(|(_, p, _)| *p == Placement::Envelope)
            .collect();
        let wrapped = !fields.is_empty();
        if wrapped {
            out.extend_from_slice(b"{\"payload\":");
        }
        self.write_payload(&mut out, payload);
        for (i, _, name) in fields {
            out.push(b',');
            write_string(&mut out, name.as_bytes());
            out.push(b':');
            match text(*i)? {
                Some(t) => write_string(&mut out, t.as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        }
        if wrapped {
            out.push(b'}');
        }
        Ok(Bytes::from(out))
    }

    fn write_payload(&self, out: &mut Vec<u8>, payload: Option<&str>) {
        match payload {
            None => out.extend_from_slice(b"null"),
            // json and jsonb values are JSON (PostgreSQL checked them) and
            // go as they are; other text only when it parses as an object
            // or an array (what Debezium expands).
            Some(p) if self.expand && (self.payload_is_json || is_json_document(p)) => {
                out.extend_from_slice(p.as_bytes())
            }
            Some(p) => write_string(out, p.as_bytes()),
        }
    }
}

/// The topic `routed_by` names through the template; an invalid name is an
/// error naming the value.
pub(super) fn routed_topic(
    spec: &OutboxSpec,
    routed_by: &str,
    path: &str,
) -> Result<String, TransformError> {
    let topic = spec.topic_for(routed_by);
    if topic_name_ok(&topic) {
        return Ok(topic);
    }
    Err(TransformError::Outbox {
        path: format!("{path}.outbox.topic"),
        message: format!(
            "the routing value {routed_by:?} makes the topic {topic:?}, which Kafka does not allow (letters, digits, '.', '_', '-', at most 249)"
        ),
    })
}

/// Text that is a JSON object or array (what Debezium expands); scalars
/// stay strings.
pub(super) fn is_json_document(text: &str) -> bool {
    let t = text.trim_start();
    (t.starts_with('{') || t.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// A timestamp column's text as Unix milliseconds.
fn millis(text: &str, oid: u32) -> Option<i64> {
    match oid {
        INT8 => text.parse().ok(),
        TIMESTAMPTZ => DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .ok()
            .map(|t| t.timestamp_millis()),
        TIMESTAMP => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc().timestamp_millis()),
        _ => None,
    }
}

/// Kafka's topic-name rule.
fn topic_name_ok(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl OutboxEvent {
    /// Its record, once its topic has an index.
    pub fn into_record(
        self,
        topic: Arc<str>,
        topic_index: usize,
        headers: &Arc<TxHeaders>,
    ) -> Record {
        Record {
            extras: Some(Arc::new(self.extras)),
            ..Record::keyed(&topic, topic_index, self.key, self.value, headers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Column;
    use crate::lsn::Lsn;
    use pgkafka_crds::{AdditionalField, QualifiedTable};

    fn column(name: &str, oid: u32) -> Column {
        Column {
            is_key: name == "id",
            name: name.into(),
            type_oid: oid,
            value_oid: oid,
            type_modifier: -1,
        }
    }

    fn shape(payload_oid: u32) -> TableShape {
        TableShape {
            table: QualifiedTable {
                schema: "public".into(),
                name: "outbox".into(),
            },
            columns: vec![
                column("id", 2950),
                column("aggregatetype", 25),
                column("aggregateid", 25),
                column("type", 25),
                column("payload", payload_oid),
                column("created", TIMESTAMPTZ),
            ],
            replica_identity: b'd',
        }
    }

    fn text(s: &str) -> Datum {
        Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn row(payload: &str) -> Vec<Datum> {
        vec![
            text("6d0b5e1c-0a51-4a3c-8d5c-1b9c2f1e7a10"),
            text("Order"),
            text("42"),
            text("OrderCreated"),
            text(payload),
            text("2026-12-02 01:02:03.456+00"),
        ]
    }

    const TX: TxInfo = TxInfo {
        xid: 1,
        commit_lsn: Lsn(1),
        commit_time_us: 0,
        last_commit_lsn: None,
    };

    #[test]
    fn debeziums_defaults_on_a_jsonb_payload() {
        let spec = OutboxSpec::default();
        let o = CompiledOutbox::compile(&spec, &shape(JSONB), "t").expect("compiles");
        let e = o
            .event(
                &spec,
                Action::Insert,
                Some(&row(r#"{"total": 1}"#)),
                &TX,
                "t",
            )
            .expect("event")
            .expect("an insert is an event");
        assert_eq!(e.topic, "outbox.event.Order");
        assert_eq!(e.key.as_deref(), Some(&b"42"[..]));
        assert_eq!(e.value.as_deref(), Some(&br#"{"total": 1}"#[..]));
        assert_eq!(
            e.extras.headers,
            [(
                "id".to_owned(),
                Some("6d0b5e1c-0a51-4a3c-8d5c-1b9c2f1e7a10".to_owned())
            )]
        );
        assert_eq!(e.extras.timestamp_ms, Some(TX.commit_ms()));
        for action in [Action::Update, Action::Delete, Action::Truncate] {
            assert!(o
                .event(&spec, action, Some(&row("{}")), &TX, "t")
                .expect("ok")
                .is_none());
        }
    }

    #[test]
    fn text_payloads_headers_envelope_fields_and_the_timestamp_column() {
        let spec = OutboxSpec {
            timestamp: Some("created".into()),
            additional_placement: vec![
                AdditionalField {
                    column: "type".into(),
                    placement: Placement::Header,
                    alias: Some("eventType".into()),
                },
                AdditionalField {
                    column: "type".into(),
                    placement: Placement::Envelope,
                    alias: None,
                },
            ],
            on_update: OutboxOperation::Fail,
            ..OutboxSpec::default()
        };
        let o = CompiledOutbox::compile(&spec, &shape(25), "t").expect("compiles");
        let e = o
            .event(&spec, Action::Insert, Some(&row(r#"{"a":"b"}"#)), &TX, "t")
            .expect("ok")
            .expect("event");
        // A text payload stays a string unless expansion is asked for.
        assert_eq!(
            e.value.as_deref(),
            Some(&br#"{"payload":"{\"a\":\"b\"}","type":"OrderCreated"}"#[..])
        );
        assert_eq!(
            e.extras.headers[1],
            ("eventType".into(), Some("OrderCreated".into()))
        );
        assert_eq!(e.extras.timestamp_ms, Some(1_796_173_323_456));
        let err = o
            .event(&spec, Action::Update, Some(&row("{}")), &TX, "t")
            .expect_err("fail policy");
        assert!(err.to_string().contains("t.outbox"), "{err}");
        let expanded = OutboxSpec {
            expand_json_payload: Some(true),
            ..OutboxSpec::default()
        };
        let o = CompiledOutbox::compile(&expanded, &shape(25), "t").expect("compiles");
        let e = o
            .event(&expanded, Action::Insert, Some(&row("[1,2]")), &TX, "t")
            .expect("ok")
            .expect("event");
        assert_eq!(e.value.as_deref(), Some(&b"[1,2]"[..]));
    }

    #[test]
    fn a_missing_column_and_a_bad_routing_value_name_the_field() {
        let spec = OutboxSpec {
            payload: "body".into(),
            ..OutboxSpec::default()
        };
        let err = CompiledOutbox::compile(&spec, &shape(JSONB), "spec.listeners[0].targets[0]")
            .expect_err("no body column");
        assert_eq!(err.path, "spec.listeners[0].targets[0].outbox.payload");
        assert!(
            err.message.contains("has no column \"body\""),
            "{}",
            err.message
        );
        let spec = OutboxSpec::default();
        let o = CompiledOutbox::compile(&spec, &shape(JSONB), "t").expect("compiles");
        let mut bad = row("{}");
        bad[1] = text("Order Lines");
        let err = o
            .event(&spec, Action::Insert, Some(&bad), &TX, "t")
            .expect_err("bad topic");
        assert!(
            err.to_string().contains("\"outbox.event.Order Lines\""),
            "{err}"
        );
        let deletes = OutboxSpec {
            on_delete: OutboxOperation::Route,
            ..OutboxSpec::default()
        };
        let err = CompiledOutbox::compile(&deletes, &shape(JSONB), "t").expect_err("not FULL");
        assert_eq!(err.path, "t.outbox.onDelete");
    }
}
