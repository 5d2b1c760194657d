//! From one change to records: one per target whose filter passes (targets
//! with the same encoding share one payload), or one change in a
//! transaction group. An UPDATE that changed the record key becomes, for
//! per-change targets, a delete of the old key (and its tombstone) and a
//! create of the new one, as Debezium writes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use pgkafka_crds::{Action, TopicCreation};

use super::encode::{write_envelope, write_key, Encoding, EnvelopeContext};
use super::filter::RowView;
use super::group::GroupBuffers;
use super::limit::RecordLimit;
use super::mask::ColumnMask;
use super::route::{CompiledRoute, Listener, TopicRegistry};
use super::schema::wrap;
use super::TransformError;
use crate::decode::values::ValueModes;
use crate::event::{
    Change, Datum, MovedKey, OldTuple, Op, Record, Relation, Row, TopicFacts, TxHeaders, TxInfo,
};
use crate::lsn::Lsn;

/// Writes envelopes, remembering their usual size.
pub(crate) struct Encoder {
    pub(super) context: EnvelopeContext,
    /// Shared by the threads that encode snapshot rows (a hint: relaxed).
    pub(super) payload_hint: AtomicUsize,
    /// The record size limit and the error policy past it.
    pub(super) limit: RecordLimit,
}

impl Encoder {
    fn encode(&self, change: &Change<'_>, now_ms: i64, encoding: Encoding<'_>) -> Bytes {
        let mut buf = Vec::with_capacity(self.payload_hint.load(Ordering::Relaxed));
        write_envelope(&mut buf, &self.context, change, now_ms, encoding);
        if let Some(schema) = encoding.schema {
            buf = wrap(schema, &buf);
        }
        self.payload_hint.store(buf.len() + 64, Ordering::Relaxed);
        Bytes::from(buf)
    }
}

/// One change of one row, ready to fan out to a listener's targets.
pub(super) struct RowChange<'a> {
    pub change: Change<'a>,
    pub row: RowView<'a>,
    pub key: Option<Bytes>,
    /// An UPDATE that changed the record key: the old key. Such a change
    /// reaches each target (but whole-transaction ones) as Debezium writes
    /// it: a delete of the old key, its tombstone, a create of the new key.
    pub old_key: Option<Bytes>,
    pub headers: &'a Arc<TxHeaders>,
    pub now_ms: i64,
}

/// Payloads already written for one change, by encoding: targets with the
/// same envelope, column selection and masks share one.
#[derive(Default)]
struct Payloads<'e>(Vec<(Encoding<'e>, Bytes)>);

impl<'e> Payloads<'e> {
    fn get(
        &mut self,
        encoder: &Encoder,
        change: &Change<'_>,
        now_ms: i64,
        encoding: Encoding<'e>,
    ) -> Bytes {
        let same = |e: &Encoding<'_>| {
            e.envelope == encoding.envelope
                && e.columns == encoding.columns
                && e.masks.map(<[_]>::as_ptr) == encoding.masks.map(<[_]>::as_ptr)
        };
        if let Some((_, payload)) = self.0.iter().find(|(e, _)| same(e)) {
            return payload.clone();
        }
        let payload = encoder.encode(change, now_ms, encoding);
        self.0.push((encoding, payload.clone()));
        payload
    }
}

/// One record per target whose filter passes (targets with the same
/// encoding share one payload); grouped targets buffer the change instead,
/// or, without `groups` (snapshot rows), get nothing. Filters see the change
/// as it happened (a key-changing UPDATE is an UPDATE to them).
pub(super) fn fan_out(
    listener: &Listener,
    route: &CompiledRoute,
    one: &RowChange<'_>,
    encoder: &Encoder,
    mut groups: Option<&mut GroupBuffers>,
    topics: &mut impl TopicSink,
    out: &mut Vec<Record>,
) -> Result<(), TransformError> {
    let snapshot = one.change.op == Op::Read;
    let wrap_key = |k: &Bytes| match &route.key_schema {
        Some(schema) => Bytes::from(wrap(schema, k)),
        None => k.clone(),
    };
    let key = one.key.as_ref().map(wrap_key);
    let old_key = one.old_key.as_ref().map(wrap_key);
    let split = one.old_key.as_ref().map(|_| split_key_change(&one.change));
    let (mut payloads, mut deletes, mut creates) = Default::default();
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
        if let (Some(spec), Some(Some(outbox))) = (&target.outbox, route.outboxes.get(j)) {
            outbox_event(
                target,
                (
                    target.limit.as_ref().unwrap_or(&encoder.limit),
                    &listener.label,
                ),
                spec,
                outbox,
                one,
                topics,
                out,
            )?;
            continue;
        }
        let masked = route.masked[j].as_ref();
        let encoding = Encoding {
            envelope: target.envelope,
            columns: route.kept[j].as_deref(),
            masks: masked.map(|m| &m.values[..]),
            schema: route.value_schemas.get(j).map(|s| &s[..]),
        };
        target.records.inc();
        if let (Some(g), Some(groups)) = (target.group, groups.as_deref_mut()) {
            let payload = Payloads::get(&mut payloads, encoder, &one.change, one.now_ms, encoding);
            target.bytes.inc_by(payload.len() as u64);
            groups.push(g, payload, one.change.tx.xid)?;
            continue;
        }
        let emit = Emit {
            target,
            headers: one.headers,
            limit: target.limit.as_ref().unwrap_or(&encoder.limit),
            facts: topics.facts(target.topic_index),
            table: &listener.label,
        };
        let own_keys = masked
            .and_then(|m| m.key.as_deref())
            .map(|masks| masked_keys(one, &encoder.context.modes, masks, wrap_key));
        let keys = match &own_keys {
            Some((key, old_key)) => (key.as_ref(), old_key.as_ref()),
            None => (key.as_ref(), old_key.as_ref()),
        };
        let cache = (&mut payloads, &mut deletes, &mut creates);
        emit.change(one, split.as_ref(), keys, encoder, encoding, cache, out)?;
    }
    Ok(())
}

/// The topics records of a fan-out go to.
pub(super) trait TopicSink {
    /// What the broker says of topic `index`.
    fn facts(&self, index: usize) -> &TopicFacts;
    /// The index of `topic`, added when new; `None` where topics cannot be
    /// added (a shared registry).
    fn add(&mut self, topic: &str, creation: &TopicCreation) -> Option<(usize, Arc<str>)>;
}

impl TopicSink for TopicRegistry {
    fn facts(&self, index: usize) -> &TopicFacts {
        TopicRegistry::facts(self, index)
    }

    fn add(&mut self, topic: &str, creation: &TopicCreation) -> Option<(usize, Arc<str>)> {
        Some(self.index_with(topic, creation))
    }
}

/// A registry read by several threads at once (snapshot rows of a
/// listener without outbox targets, whose records never name new topics).
pub(super) struct SharedTopics<'a>(pub &'a TopicRegistry);

impl TopicSink for SharedTopics<'_> {
    fn facts(&self, index: usize) -> &TopicFacts {
        self.0.facts(index)
    }

    fn add(&mut self, _: &str, _: &TopicCreation) -> Option<(usize, Arc<str>)> {
        None
    }
}

/// An outbox target's event of `one`, if its spec routes the action.
fn outbox_event(
    target: &super::route::Target,
    (limit, table): (&RecordLimit, &str),
    spec: &pgkafka_crds::OutboxSpec,
    outbox: &super::outbox::CompiledOutbox,
    one: &RowChange<'_>,
    topics: &mut impl TopicSink,
    out: &mut Vec<Record>,
) -> Result<(), TransformError> {
    let row = match one.row.action {
        Action::Delete => one.row.old.map(|o| match o {
            crate::event::OldTuple::Full(d) => &d[..],
            // Only the key: the event's columns are not there.
            crate::event::OldTuple::Key(_) => &[][..],
        }),
        _ => one.row.new,
    };
    match outbox.event(spec, one.row.action, row, &one.change.tx, &target.path)? {
        Some(event) => {
            let (index, topic) = topics.add(&event.topic, &target.creation).ok_or_else(|| {
                TransformError::Outbox {
                    path: target.path.clone(),
                    message: "an outbox row on a thread that cannot add topics".into(),
                }
            })?;
            target.records.inc();
            let size = event.value.as_ref().map_or(0, Bytes::len);
            target.bytes.inc_by(size as u64);
            let record = event.into_record(topic, index, one.headers);
            limit.admit(record, topics.facts(index), (table, &target.path), out)?;
        }
        None => {
            if let Some(ignored) = &target.ignored {
                ignored.inc();
            }
        }
    }
    Ok(())
}

/// A key-changing UPDATE as Debezium writes it: a delete of the old row,
/// then a create of the new one.
fn split_key_change<'a>(change: &Change<'a>) -> (Change<'a>, Change<'a>) {
    let delete = Change {
        op: Op::Delete,
        after: Row::Absent,
        ..*change
    };
    let create = Change {
        op: Op::Create,
        before: Row::Absent,
        order: change.order.map(crate::event::TxOrder::next),
        ..*change
    };
    (delete, create)
}

/// Records of one target.
struct Emit<'t, 'f> {
    target: &'t super::route::Target,
    headers: &'t Arc<TxHeaders>,
    limit: &'t RecordLimit,
    /// What the broker says of the target's topic.
    facts: &'f TopicFacts,
    /// `schema.table`.
    table: &'t str,
}

impl<'t> Emit<'t, '_> {
    /// The records of `one` for this target: one, or for a key change
    /// (`split`, with the old key) the delete of the old key and the create
    /// of the new one. Payloads are shared through `cache` by targets with
    /// the same encoding.
    #[allow(clippy::too_many_arguments)]
    fn change(
        &self,
        one: &RowChange<'_>,
        split: Option<&(Change<'_>, Change<'_>)>,
        (key, old_key): (Option<&Bytes>, Option<&Bytes>),
        encoder: &Encoder,
        encoding: Encoding<'t>,
        (payloads, deletes, creates): (&mut Payloads<'t>, &mut Payloads<'t>, &mut Payloads<'t>),
        out: &mut Vec<Record>,
    ) -> Result<(), TransformError> {
        match (split, old_key) {
            (Some((delete, create)), Some(old)) => {
                let gone = Payloads::get(deletes, encoder, delete, one.now_ms, encoding);
                let moved = key.cloned().map(MovedKey::To);
                self.push(out, Some(old.clone()), gone, true, moved)?;
                let born = Payloads::get(creates, encoder, create, one.now_ms, encoding);
                let moved = Some(MovedKey::From(old.clone()));
                self.push(out, key.cloned(), born, false, moved)
            }
            _ => {
                let payload = Payloads::get(payloads, encoder, &one.change, one.now_ms, encoding);
                let delete = one.change.op == Op::Delete;
                self.push(out, key.cloned(), payload, delete, None)
            }
        }
    }

    /// The record, and after a delete the same key with a null value:
    /// compaction then forgets the key (Debezium's tombstones.on.delete).
    fn push(
        &self,
        out: &mut Vec<Record>,
        key: Option<Bytes>,
        payload: Bytes,
        delete: bool,
        moved: Option<MovedKey>,
    ) -> Result<(), TransformError> {
        self.target.bytes.inc_by(payload.len() as u64);
        let record = Record {
            moved,
            ..Record::keyed(
                &self.target.topic,
                self.target.topic_index,
                key,
                Some(payload),
                self.headers,
            )
        };
        let tombstone = (delete && self.target.tombstones && record.key.is_some()).then(|| {
            Record::keyed(
                &record.topic,
                record.topic_index,
                record.key.clone(),
                None,
                self.headers,
            )
        });
        self.limit
            .admit(record, self.facts, (self.table, &self.target.path), out)?;
        out.extend(tombstone);
        Ok(())
    }
}

pub(super) fn change_of<'a>(
    relation: &'a Relation,
    row: &RowView<'a>,
    lsn: Lsn,
    tx: TxInfo,
) -> Change<'a> {
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
        order: None,
    }
}

fn old_row(old: Option<&OldTuple>) -> Row<'_> {
    match old {
        None => Row::Absent,
        Some(OldTuple::Key(d)) => Row::KeyOnly(d),
        Some(OldTuple::Full(d)) => Row::Full(d),
    }
}

pub(super) fn record_key(
    relation: &Relation,
    row: Option<&[Datum]>,
    modes: &ValueModes,
) -> Option<Bytes> {
    masked_key(relation, row, modes, None)
}

fn masked_key(
    relation: &Relation,
    row: Option<&[Datum]>,
    modes: &ValueModes,
    masks: Option<&[Option<ColumnMask>]>,
) -> Option<Bytes> {
    let row = row?;
    let mut key = Vec::with_capacity(32);
    write_key(&mut key, relation, row, modes, masks).then(|| Bytes::from(key))
}

/// The key (and, for a key change, the old key) of `one` for a target
/// whose masks apply to key columns, in the schema form when it is on.
fn masked_keys(
    one: &RowChange<'_>,
    modes: &ValueModes,
    masks: &[Option<ColumnMask>],
    wrap_key: impl Fn(&Bytes) -> Bytes,
) -> (Option<Bytes>, Option<Bytes>) {
    let relation = one.change.relation;
    let row = one.row.new.or(one.row.old.map(OldTuple::datums));
    let key = masked_key(relation, row, modes, Some(masks)).map(|k| wrap_key(&k));
    let old_key = one.old_key.as_ref().and_then(|_| {
        let old = one.row.old.map(OldTuple::datums);
        masked_key(relation, old, modes, Some(masks)).map(|k| wrap_key(&k))
    });
    (key, old_key)
}
