//! From decoded pgoutput messages to Kafka records: which listener a change
//! belongs to, whether it captures that action, which targets' filters pass
//! it, and one record per target (or one change in a transaction group).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use pgkafka_crds::{Action, Envelope, PgKafkaConnectorSpec, QualifiedTable};

use super::encode::{write_envelope, write_key, Encoding, EnvelopeContext};
use super::filter::RowView;
use super::group::GroupBuffers;
use super::route::{action_index, CompiledRoute, Listener, Routes};
use super::TransformError;
use crate::decode::pgoutput::{Message, RelationBody};
use crate::decode::relations::{KeyColumns, KeyPolicy, RelationCache};
use crate::event::{
    Change, Datum, OldTuple, Op, Record, Relation, Row, TableShape, TxHeaders, TxInfo,
};
use crate::lsn::Lsn;
use crate::metrics::Metrics;

/// What a message meant for the transaction bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// A transaction started.
    Begin(TxInfo),
    /// The current transaction committed; a restart resumes at `end_lsn`.
    Commit {
        /// LSN just past the commit record.
        end_lsn: Lsn,
    },
    /// Anything else.
    None,
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Turns messages into records. Holds the relation cache, each relation's
/// listener and compiled route, and the transaction being decoded.
pub(crate) struct Pipeline {
    routes: Routes,
    policy: KeyPolicy,
    relations: RelationCache,
    /// Per relation OID: its listener and that listener's compiled route.
    compiled: HashMap<u32, (usize, CompiledRoute)>,
    encoder: Encoder,
    /// Tables under a snapshot chunk: the keys the stream changes.
    /// By chunk id: the table and what changed in it since the chunk's low
    /// watermark (two chunks of one table may be open at once).
    watched: HashMap<u64, (QualifiedTable, ChangedKeys)>,
    tx: Option<(TxInfo, Arc<TxHeaders>)>,
    groups: GroupBuffers,
}

impl Pipeline {
    /// Compiles the listeners of a validated spec. `primary_keys` come from the
    /// catalog and decide the record key where `keyColumns` is not given.
    pub fn new(
        name: &str,
        spec: &PgKafkaConnectorSpec,
        primary_keys: HashMap<QualifiedTable, Vec<String>>,
        metrics: &Metrics,
    ) -> Result<Self, TransformError> {
        let routes = Routes::new(spec, metrics)?;
        let mut policy = KeyPolicy {
            primary_keys,
            ..KeyPolicy::default()
        };
        for (i, (listener, l)) in routes.listeners.iter().zip(&spec.listeners).enumerate() {
            if let Some(keys) = &l.key_columns {
                policy.key_columns.insert(
                    listener.table.clone(),
                    KeyColumns {
                        field: format!("spec.listeners[{i}].keyColumns"),
                        columns: keys.clone(),
                    },
                );
            }
        }
        let max_message_bytes = spec
            .kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        Ok(Pipeline {
            groups: GroupBuffers::new(routes.groups.clone(), max_message_bytes),
            routes,
            policy,
            relations: RelationCache::default(),
            compiled: HashMap::new(),
            encoder: Encoder {
                context: EnvelopeContext {
                    name: name.to_owned(),
                    database: spec.postgres.database.clone(),
                },
                payload_hint: Cell::new(256),
            },
            watched: HashMap::new(),
            tx: None,
        })
    }

    /// Every topic the pipeline may write to; records carry their index here.
    pub fn topics(&self) -> &[Arc<str>] {
        &self.routes.topics
    }

    /// Compiles every target's filter and column selection against the
    /// catalog's description of its table, so a bad filter fails at start-up.
    pub fn check_tables<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a TableShape>,
    ) -> Result<(), TransformError> {
        for shape in tables {
            if let Some(l) = self.routes.listener_of(&shape.table) {
                CompiledRoute::compile(&self.routes.listeners[l], shape)?;
            }
        }
        Ok(())
    }

    /// Processes one message at WAL position `lsn`, appending its records to `out`.
    pub fn handle(
        &mut self,
        msg: Message,
        lsn: Lsn,
        now_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<Boundary, TransformError> {
        let (action, relation_id, old, new) = match msg {
            Message::Begin {
                final_lsn,
                commit_time_us,
                xid,
            } => return Ok(self.begin(final_lsn, commit_time_us, xid)),
            Message::Commit { end_lsn, .. } => {
                if let Some((tx, headers)) = self.tx.take() {
                    self.groups.flush(&tx, &headers, out);
                }
                return Ok(Boundary::Commit { end_lsn });
            }
            Message::Relation(body) => {
                self.relation(body)?;
                return Ok(Boundary::None);
            }
            Message::Insert { relation_id, new } => (Action::Insert, relation_id, None, Some(new)),
            Message::Update {
                relation_id,
                old,
                new,
            } => (Action::Update, relation_id, old, Some(new)),
            Message::Delete { relation_id, old } => (Action::Delete, relation_id, Some(old), None),
            Message::Truncate { relation_ids, .. } => {
                for id in relation_ids {
                    let row = RowView {
                        action: Action::Truncate,
                        old: None,
                        new: None,
                    };
                    self.row_change(id, row, lsn, now_ms, out)?;
                }
                return Ok(Boundary::None);
            }
            Message::Origin { .. } | Message::Type { .. } | Message::Logical { .. } => {
                return Ok(Boundary::None)
            }
        };
        let row = RowView {
            action,
            old: old.as_ref(),
            new: new.as_deref(),
        };
        self.row_change(relation_id, row, lsn, now_ms, out)?;
        Ok(Boundary::None)
    }

    fn begin(&mut self, final_lsn: Lsn, commit_time_us: i64, xid: u32) -> Boundary {
        let tx = TxInfo {
            xid,
            commit_lsn: final_lsn,
            commit_time_us,
        };
        self.tx = Some((tx, Arc::new(TxHeaders::new(final_lsn, xid))));
        self.groups.clear();
        Boundary::Begin(tx)
    }

    /// A table described (again): its key, and its route when a listener
    /// captures it.
    fn relation(&mut self, body: RelationBody) -> Result<(), TransformError> {
        let relation = self.relations.insert(body, &self.policy)?;
        match self.routes.listener_of(&relation.shape.table) {
            Some(l) => {
                let route = CompiledRoute::compile(&self.routes.listeners[l], &relation.shape)?;
                self.compiled.insert(relation.id, (l, route));
            }
            None => {
                self.compiled.remove(&relation.id);
            }
        }
        Ok(())
    }

    fn row_change(
        &mut self,
        relation_id: u32,
        row: RowView<'_>,
        lsn: Lsn,
        now_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), TransformError> {
        let relation = self
            .relations
            .get(relation_id)
            .ok_or(TransformError::UnknownRelation(relation_id))?;
        let Some((l, route)) = self.compiled.get(&relation_id) else {
            return Ok(());
        };
        let listener = &self.routes.listeners[*l];
        listener.changes.inc();
        if !listener.actions[action_index(row.action)] {
            return Ok(());
        }
        let Some((tx, headers)) = &self.tx else {
            return Err(TransformError::NoTransaction);
        };
        // A snapshot chunk drops the rows whose change this listener
        // captured (the stream carried the newer image). A change it does
        // not capture would never reach the consumer: the chunk keeps it.
        for (table, changed) in self.watched.values_mut() {
            if *table == relation.shape.table {
                changed.note(relation, &row);
            }
        }
        let change = change_of(relation, &row, lsn, *tx);
        let key = record_key(relation, row.new.or(row.old.map(OldTuple::datums)));
        let one = One {
            change,
            row,
            key,
            headers,
            now_ms,
        };
        fan_out(
            listener,
            route,
            &one,
            &self.encoder,
            Some(&mut self.groups),
            out,
        )
    }

    /// Starts noting the keys the stream changes in `table` (a snapshot
    /// chunk's low watermark passed).
    pub fn watch(&mut self, chunk: u64, table: &QualifiedTable) {
        self.watched
            .insert(chunk, (table.clone(), ChangedKeys::default()));
    }

    /// Stops noting; returns what changed since [`Pipeline::watch`].
    pub fn unwatch(&mut self, chunk: u64) -> ChangedKeys {
        self.watched
            .remove(&chunk)
            .map(|(_, changed)| changed)
            .unwrap_or_default()
    }

    /// Records for the snapshot rows of `shape` read between watermarks,
    /// placed at `lsn` (the high watermark): every row whose key the stream
    /// changed meanwhile is dropped (the stream carried a newer image).
    /// Targets that opted out and whole-transaction targets get none.
    /// Returns how many rows were kept.
    pub fn snapshot_rows(
        &mut self,
        shape: &TableShape,
        rows: &[Vec<Datum>],
        changed: &ChangedKeys,
        lsn: Lsn,
        now_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<u64, TransformError> {
        let Some(l) = self.routes.listener_of(&shape.table) else {
            return Ok(0);
        };
        if changed.truncated {
            return Ok(0);
        }
        let relation = RelationCache::describe(0, shape.clone(), &self.policy)?;
        let listener = &self.routes.listeners[l];
        let route = CompiledRoute::compile(listener, shape)?;
        let tx = TxInfo::read_at(lsn, now_ms);
        let headers = Arc::new(TxHeaders::new(lsn, 0));
        let mut kept = 0;
        for row in rows {
            let key = record_key(&relation, Some(row));
            if key.as_ref().is_some_and(|k| changed.keys.contains(k)) {
                continue;
            }
            kept += 1;
            let view = RowView {
                action: Action::Insert,
                old: None,
                new: Some(row),
            };
            let change = Change {
                relation: &relation,
                op: Op::Read,
                before: Row::Absent,
                after: Row::Full(row),
                lsn,
                tx,
            };
            let one = One {
                change,
                row: view,
                key,
                headers: &headers,
                now_ms,
            };
            fan_out(listener, &route, &one, &self.encoder, None, out)?;
        }
        Ok(kept)
    }
}

/// Keys a snapshot chunk must drop: changed in the stream between its
/// watermarks.
#[derive(Debug, Default)]
pub(crate) struct ChangedKeys {
    /// Record keys (JSON of the key columns) of changed rows, old and new.
    pub keys: HashSet<Bytes>,
    /// The table was truncated: every row read may be gone.
    pub truncated: bool,
}

impl ChangedKeys {
    fn note(&mut self, relation: &Relation, row: &RowView<'_>) {
        if row.action == Action::Truncate {
            self.truncated = true;
        }
        for image in [row.new, row.old.map(OldTuple::datums)]
            .into_iter()
            .flatten()
        {
            if let Some(key) = record_key(relation, Some(image)) {
                self.keys.insert(key);
            }
        }
    }
}

/// Writes envelopes, remembering their usual size.
pub(crate) struct Encoder {
    context: EnvelopeContext,
    payload_hint: Cell<usize>,
}

impl Encoder {
    fn encode(&self, change: &Change<'_>, now_ms: i64, encoding: Encoding<'_>) -> Bytes {
        let mut buf = Vec::with_capacity(self.payload_hint.get());
        write_envelope(&mut buf, &self.context, change, now_ms, encoding);
        self.payload_hint.set(buf.len() + 64);
        Bytes::from(buf)
    }
}

/// One change of one row, ready to fan out to a listener's targets.
struct One<'a> {
    change: Change<'a>,
    row: RowView<'a>,
    key: Option<Bytes>,
    headers: &'a Arc<TxHeaders>,
    now_ms: i64,
}

/// One record per target whose filter passes (targets with the same
/// encoding share one payload); grouped targets buffer the change instead,
/// or, without `groups` (snapshot rows), get nothing.
fn fan_out(
    listener: &Listener,
    route: &CompiledRoute,
    one: &One<'_>,
    encoder: &Encoder,
    mut groups: Option<&mut GroupBuffers>,
    out: &mut Vec<Record>,
) -> Result<(), TransformError> {
    let snapshot = one.change.op == Op::Read;
    let mut encoded: Vec<(Envelope, Option<&[bool]>, Bytes)> = Vec::new();
    for (j, target) in listener.targets.iter().enumerate() {
        if snapshot && (!target.snapshot || target.group.is_some()) {
            continue;
        }
        if route.filters[j]
            .as_ref()
            .is_some_and(|f| !f.matches(&one.row))
        {
            target.filtered.inc();
            continue;
        }
        let encoding = Encoding {
            envelope: target.envelope,
            columns: route.masks[j].as_deref(),
        };
        let payload = match encoded
            .iter()
            .find(|(e, c, _)| *e == encoding.envelope && *c == encoding.columns)
        {
            Some((_, _, payload)) => payload.clone(),
            None => {
                let payload = encoder.encode(&one.change, one.now_ms, encoding);
                encoded.push((encoding.envelope, encoding.columns, payload.clone()));
                payload
            }
        };
        target.records.inc();
        target.bytes.inc_by(payload.len() as u64);
        match (target.group, groups.as_deref_mut()) {
            (Some(g), Some(groups)) => groups.push(g, payload, one.change.tx.xid)?,
            _ => out.push(Record {
                topic: Arc::clone(&target.topic),
                topic_index: target.topic_index,
                key: one.key.clone(),
                payload,
                tx: Arc::clone(one.headers),
                part: None,
            }),
        }
    }
    Ok(())
}

fn change_of<'a>(relation: &'a Relation, row: &RowView<'a>, lsn: Lsn, tx: TxInfo) -> Change<'a> {
    let new = row.new.map_or(Row::Absent, Row::Full);
    let (op, before, after) = match row.action {
        Action::Insert => (Op::Create, Row::Absent, new),
        Action::Update => (Op::Update, old_row(row.old), new),
        Action::Delete => (Op::Delete, old_row(row.old), Row::Absent),
        Action::Truncate => (Op::Truncate, Row::Absent, Row::Absent),
    };
    Change {
        relation,
        op,
        before,
        after,
        lsn,
        tx,
    }
}

fn old_row(old: Option<&OldTuple>) -> Row<'_> {
    match old {
        None => Row::Absent,
        Some(OldTuple::Key(d)) => Row::KeyOnly(d),
        Some(OldTuple::Full(d)) => Row::Full(d),
    }
}

fn record_key(relation: &Relation, row: Option<&[Datum]>) -> Option<Bytes> {
    let row = row?;
    let mut key = Vec::with_capacity(32);
    write_key(&mut key, relation, row).then(|| Bytes::from(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Column;

    fn spec() -> PgKafkaConnectorSpec {
        serde_yaml::from_str(
            r#"
postgres: {host: db, database: shop, user: cdc}
publication: {name: p}
slot: {name: s}
kafka: {bootstrapServers: ["k:9092"], topicPrefix: cdc}
listeners:
  - table: public.orders
    actions: [insert, delete]
    targets: [{}, {topic: audit}]
"#,
        )
        .expect("spec parses")
    }

    fn relation(id: u32, name: &str) -> Message {
        Message::Relation(RelationBody {
            id,
            schema: "public".into(),
            name: name.into(),
            replica_identity: b'd',
            columns: vec![Column {
                is_key: true,
                name: "id".into(),
                type_oid: 23,
                type_modifier: -1,
            }],
        })
    }

    fn row(v: &str) -> Vec<Datum> {
        vec![Datum::Text(Bytes::copy_from_slice(v.as_bytes()))]
    }

    #[test]
    fn routes_captured_actions_to_every_target_and_ignores_the_rest() {
        let mut p =
            Pipeline::new("c", &spec(), HashMap::new(), &Metrics::new("c")).expect("compiles");
        assert_eq!(
            p.topics(),
            [Arc::<str>::from("cdc.public.orders"), Arc::from("audit")]
        );
        let mut out = Vec::new();
        let begin = Message::Begin {
            final_lsn: Lsn(100),
            commit_time_us: 0,
            xid: 5,
        };
        assert!(matches!(
            p.handle(begin, Lsn(1), 0, &mut out),
            Ok(Boundary::Begin(_))
        ));
        for m in [relation(1, "orders"), relation(2, "other")] {
            p.handle(m, Lsn(2), 0, &mut out).expect("relation");
        }
        p.handle(
            Message::Insert {
                relation_id: 1,
                new: row("1"),
            },
            Lsn(3),
            0,
            &mut out,
        )
        .expect("insert");
        p.handle(
            Message::Update {
                relation_id: 1,
                old: None,
                new: row("1"),
            },
            Lsn(4),
            0,
            &mut out,
        )
        .expect("update");
        p.handle(
            Message::Insert {
                relation_id: 2,
                new: row("9"),
            },
            Lsn(5),
            0,
            &mut out,
        )
        .expect("other table");
        p.handle(
            Message::Delete {
                relation_id: 1,
                old: OldTuple::Key(row("1")),
            },
            Lsn(6),
            0,
            &mut out,
        )
        .expect("delete");
        let commit = Message::Commit {
            commit_lsn: Lsn(100),
            end_lsn: Lsn(120),
            commit_time_us: 0,
        };
        assert_eq!(
            p.handle(commit, Lsn(7), 0, &mut out).expect("commit"),
            Boundary::Commit { end_lsn: Lsn(120) }
        );
        let seen: Vec<(&str, &[u8])> = out
            .iter()
            .map(|r| (&*r.topic, r.key.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("cdc.public.orders", &br#"{"id":1}"#[..]),
                ("audit", br#"{"id":1}"#),
                ("cdc.public.orders", br#"{"id":1}"#),
                ("audit", br#"{"id":1}"#),
            ]
        );
        assert!(out.iter().all(|r| *r.tx == TxHeaders::new(Lsn(100), 5)));
    }

    #[test]
    fn change_for_unknown_relation_is_an_error() {
        let mut p =
            Pipeline::new("c", &spec(), HashMap::new(), &Metrics::new("c")).expect("compiles");
        let err = p.handle(
            Message::Insert {
                relation_id: 77,
                new: row("1"),
            },
            Lsn(1),
            0,
            &mut Vec::new(),
        );
        assert!(matches!(err, Err(TransformError::UnknownRelation(77))));
    }

    #[test]
    fn snapshot_rows_drop_keys_changed_between_watermarks_and_read_as_r() {
        let mut p =
            Pipeline::new("c", &spec(), HashMap::new(), &Metrics::new("c")).expect("compiles");
        let orders = QualifiedTable::parse("public.orders").expect("valid");
        let mut out = Vec::new();
        p.handle(relation(1, "orders"), Lsn(1), 0, &mut out)
            .expect("relation");
        p.watch(7, &orders);
        let begin = Message::Begin {
            final_lsn: Lsn(10),
            commit_time_us: 0,
            xid: 1,
        };
        p.handle(begin, Lsn(2), 0, &mut out).expect("begin");
        let delete = Message::Delete {
            relation_id: 1,
            old: OldTuple::Key(row("2")),
        };
        p.handle(delete, Lsn(3), 0, &mut out).expect("delete");
        // Updates are not captured by this listener: such a change never
        // reaches the consumer, so the chunk keeps that row.
        let update = Message::Update {
            relation_id: 1,
            old: None,
            new: row("3"),
        };
        p.handle(update, Lsn(4), 0, &mut out).expect("update");
        let changed = p.unwatch(7);
        assert_eq!(
            changed.keys.into_iter().collect::<Vec<_>>(),
            [Bytes::from_static(br#"{"id":2}"#)]
        );
        let changed = ChangedKeys {
            keys: [Bytes::from_static(br#"{"id":2}"#)].into(),
            truncated: false,
        };
        out.clear();
        let shape = TableShape {
            table: orders,
            columns: vec![Column {
                is_key: true,
                name: "id".into(),
                type_oid: 23,
                type_modifier: -1,
            }],
            replica_identity: b'd',
        };
        let kept = p
            .snapshot_rows(
                &shape,
                &[row("1"), row("2"), row("3")],
                &changed,
                Lsn(20),
                0,
                &mut out,
            )
            .expect("rows");
        assert_eq!(kept, 2, "the row the stream changed is dropped");
        let keys: Vec<&[u8]> = out.iter().filter_map(|r| r.key.as_deref()).collect();
        // Two targets, each gets rows 1 and 3.
        assert_eq!(
            keys,
            [
                &br#"{"id":1}"#[..],
                br#"{"id":1}"#,
                br#"{"id":3}"#,
                br#"{"id":3}"#
            ]
        );
        let value: serde_json::Value = serde_json::from_slice(&out[0].payload).expect("json");
        assert_eq!(value["op"], "r");
        assert_eq!(value["source"]["snapshot"], "incremental");
        assert_eq!(value["after"]["id"], 1);
    }
}
