//! From decoded pgoutput messages to Kafka records: which listener a change
//! belongs to, whether it captures that action, and one record per target.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use pgkafka_crds::{Action, PgKafkaConnectorSpec, QualifiedTable};

use crate::decode::pgoutput::{Datum, Message, OldTuple};
use crate::decode::relations::{KeyPolicy, Relation, RelationCache, UnknownKeyColumn};
use crate::lsn::Lsn;
use crate::sink::{Record, TxHeaders};
use crate::transform::encode::{
    write_envelope, write_key, Change, EnvelopeContext, Op, Row, TxInfo,
};

/// A listener, compiled from its spec.
#[derive(Debug, Clone)]
struct Listener {
    actions: [bool; 4],
    topics: Vec<Arc<str>>,
}

fn action_index(a: Action) -> usize {
    match a {
        Action::Insert => 0,
        Action::Update => 1,
        Action::Delete => 2,
        Action::Truncate => 3,
    }
}

/// What a message meant for the transaction bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
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

/// Why the stream cannot be processed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A change for a relation the stream never described.
    #[error("change for relation OID {0} arrived before its Relation message")]
    UnknownRelation(u32),
    /// A row change outside a transaction.
    #[error("change outside a transaction")]
    NoTransaction,
    /// A configured key column that the table does not have.
    #[error(transparent)]
    KeyColumn(#[from] UnknownKeyColumn),
}

/// Turns messages into records. Holds the relation cache and the transaction
/// being decoded.
pub struct Pipeline {
    listeners: Vec<Listener>,
    policy: KeyPolicy,
    relations: RelationCache,
    envelope: EnvelopeContext,
    tx: Option<TxInfo>,
    tx_headers: Option<Arc<TxHeaders>>,
    payload_hint: Cell<usize>,
}

impl Pipeline {
    /// Compiles the listeners of a validated spec. `primary_keys` come from the
    /// catalog and decide the record key where `keyColumns` is not given.
    pub fn new(
        name: &str,
        spec: &PgKafkaConnectorSpec,
        primary_keys: HashMap<QualifiedTable, Vec<String>>,
    ) -> Self {
        let mut policy = KeyPolicy {
            primary_keys,
            ..KeyPolicy::default()
        };
        let mut listeners = Vec::with_capacity(spec.listeners.len());
        for (i, l) in spec.listeners.iter().enumerate() {
            // `validate()` has run: every table parses.
            let Ok(table) = QualifiedTable::parse(&l.table) else {
                continue;
            };
            let mut actions = [false; 4];
            for a in &l.actions {
                actions[action_index(*a)] = true;
            }
            let default_topic = || Arc::<str>::from(table.default_topic(&spec.kafka.topic_prefix));
            let topics = if l.targets.is_empty() {
                vec![default_topic()]
            } else {
                l.targets
                    .iter()
                    .map(|t| t.topic.as_deref().map_or_else(default_topic, Arc::from))
                    .collect()
            };
            if let Some(keys) = &l.key_columns {
                policy.key_columns.insert(listeners.len(), keys.clone());
            }
            policy.listeners.insert(table, listeners.len());
            debug_assert_eq!(i, listeners.len());
            listeners.push(Listener { actions, topics });
        }
        Pipeline {
            listeners,
            policy,
            relations: RelationCache::default(),
            envelope: EnvelopeContext {
                name: name.to_owned(),
                database: spec.postgres.database.clone(),
            },
            tx: None,
            tx_headers: None,
            payload_hint: Cell::new(256),
        }
    }

    /// Every topic the pipeline may write to.
    pub fn topics(&self) -> Vec<Arc<str>> {
        let mut all: Vec<Arc<str>> = self
            .listeners
            .iter()
            .flat_map(|l| l.topics.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Processes one message at WAL position `lsn`, appending its records to `out`.
    pub fn handle(
        &mut self,
        msg: Message,
        lsn: Lsn,
        now_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<Boundary, PipelineError> {
        match msg {
            Message::Begin {
                final_lsn,
                commit_time_us,
                xid,
            } => {
                let tx = TxInfo {
                    xid,
                    commit_lsn: final_lsn,
                    commit_time_us,
                };
                self.tx = Some(tx);
                self.tx_headers = Some(Arc::new(TxHeaders::new(final_lsn, xid)));
                return Ok(Boundary::Begin(tx));
            }
            Message::Commit { end_lsn, .. } => {
                self.tx = None;
                return Ok(Boundary::Commit { end_lsn });
            }
            Message::Relation(body) => {
                self.relations.insert(body, &self.policy)?;
            }
            Message::Insert { relation_id, new } => {
                self.row_change(
                    relation_id,
                    Action::Insert,
                    None,
                    Some(&new),
                    lsn,
                    now_ms,
                    out,
                )?;
            }
            Message::Update {
                relation_id,
                old,
                new,
            } => {
                self.row_change(
                    relation_id,
                    Action::Update,
                    old.as_ref(),
                    Some(&new),
                    lsn,
                    now_ms,
                    out,
                )?;
            }
            Message::Delete { relation_id, old } => {
                self.row_change(
                    relation_id,
                    Action::Delete,
                    Some(&old),
                    None,
                    lsn,
                    now_ms,
                    out,
                )?;
            }
            Message::Truncate { relation_ids, .. } => {
                for id in relation_ids {
                    self.row_change(id, Action::Truncate, None, None, lsn, now_ms, out)?;
                }
            }
            Message::Origin { .. } | Message::Type { .. } | Message::LogicalMessage { .. } => {}
        }
        Ok(Boundary::None)
    }

    #[allow(clippy::too_many_arguments)]
    fn row_change(
        &self,
        relation_id: u32,
        action: Action,
        old: Option<&OldTuple>,
        new: Option<&Vec<Datum>>,
        lsn: Lsn,
        now_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), PipelineError> {
        let relation = self
            .relations
            .get(relation_id)
            .ok_or(PipelineError::UnknownRelation(relation_id))?;
        let Some(listener) = relation.listener.map(|l| &self.listeners[l]) else {
            return Ok(());
        };
        if !listener.actions[action_index(action)] {
            return Ok(());
        }
        let tx = self.tx.ok_or(PipelineError::NoTransaction)?;
        let (op, before, after) = match action {
            Action::Insert => (
                Op::Create,
                Row::Absent,
                new.map_or(Row::Absent, |n| Row::Full(n)),
            ),
            Action::Update => (
                Op::Update,
                old_row(old),
                new.map_or(Row::Absent, |n| Row::Full(n)),
            ),
            Action::Delete => (Op::Delete, old_row(old), Row::Absent),
            Action::Truncate => (Op::Truncate, Row::Absent, Row::Absent),
        };
        let change = Change {
            relation,
            op,
            before,
            after,
            lsn,
            tx,
        };
        // Envelopes of one table are alike in size: start from the last one's.
        let mut payload = Vec::with_capacity(self.payload_hint.get());
        write_envelope(&mut payload, &self.envelope, &change, now_ms);
        self.payload_hint.set(payload.len() + 64);
        let headers = self
            .tx_headers
            .clone()
            .ok_or(PipelineError::NoTransaction)?;
        let key = record_key(
            relation,
            new.map(Vec::as_slice).or(old.map(OldTuple::datums)),
        );
        let payload = Bytes::from(payload);
        for topic in &listener.topics {
            out.push(Record {
                topic: Arc::clone(topic),
                key: key.clone(),
                payload: payload.clone(),
                tx: Arc::clone(&headers),
            });
        }
        Ok(())
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
    use crate::decode::pgoutput::{Column, RelationBody};

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
        let mut p = Pipeline::new("c", &spec(), HashMap::new());
        assert_eq!(
            p.topics(),
            vec![Arc::<str>::from("audit"), Arc::from("cdc.public.orders")]
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
        let mut p = Pipeline::new("c", &spec(), HashMap::new());
        let err = p.handle(
            Message::Insert {
                relation_id: 77,
                new: row("1"),
            },
            Lsn(1),
            0,
            &mut Vec::new(),
        );
        assert!(matches!(err, Err(PipelineError::UnknownRelation(77))));
    }
}
