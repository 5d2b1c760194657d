//! From one change to records: one per target whose filter passes (targets
//! with the same encoding share one payload), or one change in a
//! transaction group; and the keys a snapshot chunk must drop.

use std::cell::Cell;

use std::sync::Arc;

use bytes::Bytes;
use pgkafka_crds::{Action, Envelope};

use super::encode::{write_envelope, write_key, Encoding, EnvelopeContext};
use super::filter::RowView;
use super::group::GroupBuffers;
use super::route::{CompiledRoute, Listener};
use super::schema::wrap;
use super::TransformError;
use crate::decode::values::ValueModes;
use crate::event::{Change, Datum, OldTuple, Op, Record, Relation, Row, TxHeaders, TxInfo};
use crate::lsn::Lsn;

/// Writes envelopes, remembering their usual size.
pub(crate) struct Encoder {
    pub(super) context: EnvelopeContext,
    pub(super) payload_hint: Cell<usize>,
}

impl Encoder {
    fn encode(&self, change: &Change<'_>, now_ms: i64, encoding: Encoding<'_>) -> Bytes {
        let mut buf = Vec::with_capacity(self.payload_hint.get());
        write_envelope(&mut buf, &self.context, change, now_ms, encoding);
        if let Some(schema) = encoding.schema {
            buf = wrap(schema, &buf);
        }
        self.payload_hint.set(buf.len() + 64);
        Bytes::from(buf)
    }
}

/// RowChange change of one row, ready to fan out to a listener's targets.
pub(super) struct RowChange<'a> {
    pub change: Change<'a>,
    pub row: RowView<'a>,
    pub key: Option<Bytes>,
    pub headers: &'a Arc<TxHeaders>,
    pub now_ms: i64,
}

/// RowChange record per target whose filter passes (targets with the same
/// encoding share one payload); grouped targets buffer the change instead,
/// or, without `groups` (snapshot rows), get nothing.
pub(super) fn fan_out(
    listener: &Listener,
    route: &CompiledRoute,
    one: &RowChange<'_>,
    encoder: &Encoder,
    mut groups: Option<&mut GroupBuffers>,
    out: &mut Vec<Record>,
) -> Result<(), TransformError> {
    let snapshot = one.change.op == Op::Read;
    let key = match (&route.key_schema, &one.key) {
        (Some(schema), Some(key)) => Some(Bytes::from(wrap(schema, key))),
        _ => one.key.clone(),
    };
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
            schema: route.value_schemas.get(j).map(|s| &s[..]),
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
            _ => {
                let record = Record {
                    topic: Arc::clone(&target.topic),
                    topic_index: target.topic_index,
                    key: key.clone(),
                    payload: Some(payload),
                    tx: Arc::clone(one.headers),
                    part: None,
                };
                // After a delete, the same key with a null value: compaction
                // then forgets the key (Debezium's tombstones.on.delete).
                let tombstone =
                    (one.change.op == Op::Delete && target.tombstones && record.key.is_some())
                        .then(|| Record {
                            payload: None,
                            ..record.clone()
                        });
                out.push(record);
                out.extend(tombstone);
            }
        }
    }
    Ok(())
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
    let row = row?;
    let mut key = Vec::with_capacity(32);
    write_key(&mut key, relation, row, modes).then(|| Bytes::from(key))
}
