//! From decoded pgoutput messages to Kafka records: which listener a change
//! belongs to, whether it captures that action, which targets' filters pass
//! it, and one record per target (or one change in a transaction group).

use std::collections::HashMap;
use std::sync::Arc;

use pgkafka_crds::{Action, PgKafkaConnectorSpec, QualifiedTable, TopicCreation};

use super::assemble::{encoder, key_policy, own_limits};
use super::fanout::{change_of, fan_out, record_key, Encoder, RowChange};
use super::filter::RowView;
use super::group::{GroupBuffers, GROUP_MEMORY_BUDGET};
use super::mask::Salts;
use super::message::{Logical, MessageRoutes, MESSAGE_COLLECTION};
use super::route::{action_index, CompiledRoute, Routes};
use super::schema::SchemaNamer;
use super::txmeta::TxMetadata;
use super::watch::KeyWatch;
use super::TransformError;
use crate::decode::pgoutput::{Message, RelationBody};
use crate::decode::relations::{KeyPolicy, RelationCache};
use crate::decode::values::ValueModes;
use crate::event::{Column, OldTuple, Record, Relation, TableShape, TopicFacts, TxHeaders, TxInfo};
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use bytes::Bytes;

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
    /// Neither: a row change, a relation, a message inside the transaction.
    Other,
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

#[path = "live_tables.rs"]
mod live_tables;
#[path = "snapshot_rows.rs"]
mod snapshot_rows;

/// Turns messages into records. Holds the relation cache, each relation's
/// listener and compiled route, and the transaction being decoded.
pub(crate) struct Transform {
    routes: Routes,
    policy: KeyPolicy,
    relations: RelationCache,
    /// Per relation OID: its listener and that listener's compiled route.
    compiled: HashMap<u32, (usize, CompiledRoute)>,
    encoder: Encoder,
    tx: Option<(TxInfo, Arc<TxHeaders>)>,
    /// Commit LSN of the last transaction begun (`source.sequence`).
    last_commit: Option<Lsn>,
    /// Names the schema form's schemas, when `spec.kafka.schemas`.
    schemas: Option<SchemaNamer>,
    /// `spec.kafka.schemaChangeTopic` and its index in the topic list.
    schema_changes: Option<(usize, Arc<str>)>,
    /// The columns of each captured table last announced there.
    announced: HashMap<QualifiedTable, Vec<Column>>,
    groups: GroupBuffers,
    /// Transaction metadata, when `spec.kafka.provideTransactionMetadata`.
    txmeta: Option<TxMetadata>,
    /// `spec.messages`: which logical decoding messages are sent, where.
    messages: MessageRoutes,
    /// `spec.kafka.topicDefaults`, for topics messages name.
    topic_defaults: TopicCreation,
    /// The salts of hashed columns.
    salts: Salts,
}

impl Transform {
    /// Compiles the listeners of a validated spec. `primary_keys` come from the
    /// catalog and decide the record key where `keyColumns` is not given.
    pub fn new(
        name: &str,
        spec: &PgKafkaConnectorSpec,
        primary_keys: HashMap<QualifiedTable, Vec<String>>,
        metrics: &Metrics,
        salts: &Salts,
    ) -> Result<Self, TransformError> {
        let mut routes = Routes::new(spec, metrics)?;
        let schema_changes = spec
            .kafka
            .schema_change_topic
            .as_deref()
            .map(|t| routes.topic_index(t));
        let txmeta = spec.kafka.transaction_topic_name().map(|t| {
            let (index, topic) = routes.topic_index(&t);
            TxMetadata::new(topic, index, spec.kafka.schemas)
        });
        let messages = MessageRoutes::new(spec, &mut routes, txmeta.is_some());
        let dead_letters = spec.errors.dead_letters().map(|d| {
            let (index, topic) = routes.topic_index(&d.topic);
            (topic, index, d.context_headers)
        });
        let policy = key_policy(&routes, spec, primary_keys);
        let max_message_bytes = spec
            .kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let encoder = encoder(name, spec, metrics, max_message_bytes, dead_letters);
        own_limits(&mut routes, spec, &encoder.limit);
        Ok(Transform {
            groups: GroupBuffers::new(
                routes.groups.clone(),
                max_message_bytes,
                GROUP_MEMORY_BUDGET,
            ),
            routes,
            policy,
            relations: RelationCache::default(),
            compiled: HashMap::new(),
            encoder,
            salts: salts.clone(),
            tx: None,
            last_commit: None,
            schema_changes,
            announced: HashMap::new(),
            schemas: spec.kafka.schemas.then(|| SchemaNamer {
                prefix: spec.kafka.topic_prefix.clone(),
                transaction: txmeta.is_some(),
            }),
            txmeta,
            messages,
            topic_defaults: spec.kafka.topic_defaults.clone(),
        })
    }

    /// After a commit: the next part of its whole-transaction messages, one
    /// at a time so a transaction of any size is never whole in memory.
    pub fn next_group_part(&mut self) -> Result<Option<Record>, TransformError> {
        Ok(self.groups.next_part()?)
    }

    /// Bytes of whole-transaction groups spilled to disk since last asked.
    pub fn take_spilled_bytes(&mut self) -> u64 {
        self.groups.take_spilled_bytes()
    }

    /// Whether a listener captures `table`.
    pub fn captures(&self, table: &QualifiedTable) -> bool {
        self.routes.listener_of(table).is_some()
    }

    /// Every topic the pipeline may write to; records carry their index here.
    #[cfg(test)]
    pub fn topics(&self) -> &[Arc<str>] {
        &self.routes.topics.names
    }

    /// What the broker says of the topics from index `start` on.
    pub fn learn_topics(&mut self, start: usize, facts: Vec<TopicFacts>) {
        self.routes.topics.learn(start, facts);
    }

    /// The topics added since last asked (at first: every topic known at
    /// start-up; later: those outbox rows named), from index `start` on,
    /// each with how it is created when it does not exist
    /// (`spec.kafka.topicDefaults` under its targets' `topicCreation`).
    pub fn take_added_topics(&mut self) -> (usize, Vec<(Arc<str>, TopicCreation)>) {
        self.routes.topics.take_added()
    }

    /// Compiles every target's filter and column selection against the
    /// catalog's description of its table, so a bad filter fails at start-up.
    pub fn check_tables<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a TableShape>,
    ) -> Result<(), TransformError> {
        for shape in tables {
            if let Some(l) = self.routes.listener_of(&shape.table) {
                CompiledRoute::compile(&self.routes.listeners[l], shape, &self.salts)?;
            }
        }
        Ok(())
    }

    /// Processes one message at WAL position `lsn`, appending its records to
    /// `out`; `watch` hears the keys of the changes it captures.
    pub fn handle(
        &mut self,
        msg: Message,
        lsn: Lsn,
        now_ms: i64,
        out: &mut Vec<Record>,
        watch: &mut dyn KeyWatch,
    ) -> Result<Boundary, TransformError> {
        let (action, relation_id, old, new) = match msg {
            Message::Begin {
                final_lsn,
                commit_time_us,
                xid,
            } => return Ok(self.begin(final_lsn, commit_time_us, xid)),
            Message::Commit { end_lsn, .. } => {
                if let (Some(m), Some((tx, headers))) = (&mut self.txmeta, &self.tx) {
                    m.end(tx, headers, out);
                }
                if let Some((tx, headers)) = self.tx.take() {
                    self.groups.commit(&tx, &headers)?;
                }
                return Ok(Boundary::Commit { end_lsn });
            }
            Message::Relation(body) => {
                self.relation(body, lsn, now_ms, out)?;
                return Ok(Boundary::Other);
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
                    self.row_change(id, row, lsn, now_ms, out, watch)?;
                }
                return Ok(Boundary::Other);
            }
            Message::Logical {
                transactional,
                lsn,
                prefix,
                content,
            } => {
                self.logical(transactional, lsn, &prefix, &content, now_ms, out)?;
                return Ok(Boundary::Other);
            }
            Message::Origin { .. } | Message::Type { .. } => return Ok(Boundary::Other),
        };
        let row = RowView {
            action,
            old: old.as_ref(),
            new: new.as_deref(),
        };
        self.row_change(relation_id, row, lsn, now_ms, out, watch)?;
        Ok(Boundary::Other)
    }

    /// A logical decoding message an entry of `spec.messages` takes: in its
    /// transaction when transactional, else on its own at `lsn`.
    fn logical(
        &mut self,
        transactional: bool,
        lsn: Lsn,
        prefix: &str,
        content: &[u8],
        now_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), TransformError> {
        if !self.messages.takes(prefix) {
            return Ok(());
        }
        let in_tx = self.tx.as_ref().filter(|_| transactional);
        let headers = match in_tx {
            Some((_, h)) => Arc::clone(h),
            None => Arc::new(TxHeaders::new(lsn, 0)),
        };
        let order = match (in_tx, &mut self.txmeta) {
            (Some((tx, h)), Some(m)) => Some(m.place(MESSAGE_COLLECTION, 1, tx, h, out)),
            _ => None,
        };
        let message = Logical {
            prefix,
            content,
            lsn,
            tx: in_tx.map(|(tx, _)| tx),
            order,
            now_ms,
        };
        let record = self.messages.record(
            &self.encoder.context,
            &message,
            &headers,
            &mut self.routes.topics,
            &self.topic_defaults,
        )?;
        out.extend(record);
        Ok(())
    }

    /// The stream resumes after the transaction that committed at `lsn`.
    pub fn resume_after(&mut self, lsn: Lsn) {
        self.last_commit = Some(lsn);
    }

    fn begin(&mut self, final_lsn: Lsn, commit_time_us: i64, xid: u32) -> Boundary {
        let tx = TxInfo {
            xid,
            commit_lsn: final_lsn,
            commit_time_us,
            last_commit_lsn: self.last_commit.replace(final_lsn),
        };
        self.tx = Some((tx, Arc::new(TxHeaders::new(final_lsn, xid))));
        self.groups.clear();
        if let Some(m) = &mut self.txmeta {
            m.begin();
        }
        Boundary::Begin(tx)
    }

    /// A table described (again): its key, and its route when a listener
    /// captures it.
    fn relation(
        &mut self,
        body: RelationBody,
        lsn: Lsn,
        now_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), TransformError> {
        let relation = self.relations.insert(body, &self.policy)?;
        match self.routes.listener_of(&relation.shape.table) {
            Some(l) => {
                self.announce(&relation, lsn, now_ms, out);
                let route = self.compile(l, &relation)?;
                self.compiled.insert(relation.id, (l, route));
            }
            None => {
                self.compiled.remove(&relation.id);
            }
        }
        Ok(())
    }

    /// On the schema-change topic, keyed by the table: the columns of a
    /// captured table the first time this session sees it and whenever they
    /// change (pgoutput repeats a Relation after any catalog change).
    fn announce(&mut self, relation: &Relation, lsn: Lsn, now_ms: i64, out: &mut Vec<Record>) {
        let (Some((topic_index, topic)), Some((tx, headers))) = (&self.schema_changes, &self.tx)
        else {
            return;
        };
        let shape = &relation.shape;
        let previous = self.announced.get(&shape.table);
        if previous == Some(&shape.columns) {
            return;
        }
        let table = format!("{}.{}", shape.table.schema, shape.table.name);
        let columns: Vec<serde_json::Value> = shape
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                serde_json::json!({"name": c.name, "position": i + 1, "typeOid": c.type_oid,
                                   "typeModifier": c.type_modifier, "valueTypeOid": c.value_oid,
                                   "key": relation.key.contains(&i)})
            })
            .collect();
        let value = serde_json::json!({
            "type": if previous.is_some() { "ALTER" } else { "CURRENT" },
            "table": table,
            "columns": columns,
            "source": {"name": self.encoder.context.name, "db": self.encoder.context.database,
                       "schema": shape.table.schema, "table": shape.table.name,
                       "txId": tx.xid, "lsn": lsn.0, "ts_ms": tx.commit_ms()},
            "ts_ms": now_ms,
        });
        let key = serde_json::json!({ "table": table }).to_string();
        out.push(Record::keyed(
            topic,
            *topic_index,
            Some(Bytes::from(key)),
            Some(Bytes::from(value.to_string())),
            headers,
        ));
        self.announced
            .insert(shape.table.clone(), shape.columns.clone());
    }

    /// Listener `l`'s targets compiled for `relation`, with the schema
    /// form's schemas when it is on.
    fn compile(&self, l: usize, relation: &Relation) -> Result<CompiledRoute, TransformError> {
        let listener = &self.routes.listeners[l];
        let mut route = CompiledRoute::compile(listener, &relation.shape, &self.salts)?;
        if let Some(namer) = &self.schemas {
            let modes = &self.encoder.context.modes;
            route.key_schema = Some(Bytes::from(namer.key(relation, modes)));
            route.value_schemas = listener
                .targets
                .iter()
                .zip(route.kept.iter().zip(&route.masked))
                .map(|(t, (kept, masked))| {
                    let masks = masked.as_ref().map(|m| &m.values[..]);
                    Bytes::from(namer.value(relation, t.envelope, (kept.as_deref(), masks), modes))
                })
                .collect();
        }
        Ok(route)
    }

    fn row_change(
        &mut self,
        relation_id: u32,
        row: RowView<'_>,
        lsn: Lsn,
        now_ms: i64,
        out: &mut Vec<Record>,
        watch: &mut dyn KeyWatch,
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
        let table = &relation.shape.table;
        if watch.watches(table) {
            if row.action == Action::Truncate {
                watch.truncated(table);
            }
            for image in [row.new, row.old.map(OldTuple::datums)]
                .into_iter()
                .flatten()
            {
                if let Some(key) = record_key(relation, Some(image), &self.encoder.context.modes) {
                    watch.changed(table, key);
                }
            }
        }
        let mut change = change_of(relation, &row, lsn, *tx);
        let modes = &self.encoder.context.modes;
        let key = record_key(relation, row.new.or(row.old.map(OldTuple::datums)), modes);
        let old_key = moved_from(relation, &row, modes).filter(|old| Some(old) != key.as_ref());
        if let Some(m) = &mut self.txmeta {
            // A key change is sent as two events: a delete and a create.
            let events = if old_key.is_some() { 2 } else { 1 };
            change.order = Some(m.place(&listener.label, events, tx, headers, out));
        }
        let one = RowChange {
            change,
            row,
            key,
            old_key,
            headers,
            now_ms,
        };
        fan_out(
            listener,
            route,
            &one,
            &self.encoder,
            Some(&mut self.groups),
            &mut self.routes.topics,
            out,
        )
    }
}

/// An UPDATE's record key before it, when the old image carries every key
/// column: the whole old row (REPLICA IDENTITY FULL), or the replica
/// identity when the record key is part of it (pgoutput sends that only when
/// it changed). `None` otherwise: the key cannot have changed, or cannot be
/// told.
fn moved_from(relation: &Relation, row: &RowView<'_>, modes: &ValueModes) -> Option<Bytes> {
    if row.action != Action::Update || relation.key.is_empty() {
        return None;
    }
    let carries_key = match row.old? {
        OldTuple::Full(_) => true,
        OldTuple::Key(_) => relation
            .key
            .iter()
            .all(|&i| relation.shape.columns.get(i).is_some_and(|c| c.is_key)),
    };
    carries_key
        .then(|| record_key(relation, row.old.map(OldTuple::datums), modes))
        .flatten()
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
