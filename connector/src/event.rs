//! The neutral types every stage may use: a table's shape, a decoded row, a
//! change of one row in one transaction, and the Kafka record made of it.
//! This module imports no stage; stages import it.

use std::sync::Arc;

use bytes::Bytes;

use crate::lsn::Lsn;

pub(crate) use pgkafka_postgres::shape::{Column, TableShape};

/// A table as the stream describes it, with its record key resolved.
#[derive(Debug)]
pub(crate) struct Relation {
    /// Relation OID.
    pub id: u32,
    /// Name, columns, replica identity.
    pub shape: TableShape,
    /// Each column's name as a JSON object key with its colon: `"id":`.
    pub json_names: Vec<Vec<u8>>,
    /// Positions (in `columns`) of the record-key columns; empty: no key.
    pub key: Vec<usize>,
}

/// One column value of a tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Datum {
    /// SQL NULL.
    Null,
    /// A TOASTed value that did not change; PostgreSQL does not send it.
    UnchangedToast,
    /// Text-format value.
    Text(Bytes),
    /// Binary-format value (only with the `binary` option).
    Binary(Bytes),
}

/// The old row an UPDATE or DELETE carries, by replica identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OldTuple {
    /// Only the replica identity (key) columns are meaningful; others are NULL.
    Key(Vec<Datum>),
    /// The whole old row (REPLICA IDENTITY FULL).
    Full(Vec<Datum>),
}

impl OldTuple {
    /// The values, whichever kind.
    pub fn datums(&self) -> &[Datum] {
        match self {
            OldTuple::Key(d) | OldTuple::Full(d) => d,
        }
    }
}

/// Debezium op codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// INSERT.
    Create,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// TRUNCATE.
    Truncate,
    /// A row read by a snapshot.
    Read,
}

impl Op {
    /// The envelope's `op` value.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
            Op::Read => "r",
        }
    }
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// The transaction a change belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxInfo {
    /// Transaction id.
    pub xid: u32,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 UTC.
    pub commit_time_us: i64,
    /// Commit LSN of the transaction before it (Debezium's
    /// `lastCommitLsn`, the first half of `source.sequence`), if known.
    pub last_commit_lsn: Option<Lsn>,
}

impl TxInfo {
    /// What snapshot rows read at `unix_ms` and placed at `lsn` carry: no
    /// transaction (xid 0), the read time as their time.
    pub fn read_at(lsn: Lsn, unix_ms: i64, last_commit_lsn: Option<Lsn>) -> TxInfo {
        TxInfo {
            xid: 0,
            commit_lsn: lsn,
            commit_time_us: unix_ms * 1000 - PG_EPOCH_OFFSET_US,
            last_commit_lsn,
        }
    }

    /// Commit time in Unix milliseconds.
    pub fn commit_ms(&self) -> i64 {
        (self.commit_time_us + PG_EPOCH_OFFSET_US).div_euclid(1000)
    }
}

/// A row image to render.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Row<'a> {
    /// No row (`null`).
    Absent,
    /// Every column.
    Full(&'a [Datum]),
    /// Only the key columns (an old tuple holding just the replica identity).
    KeyOnly(&'a [Datum]),
}

/// One change of one row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Change<'a> {
    /// The table.
    pub relation: &'a Relation,
    /// What happened.
    pub op: Op,
    /// Row before (update, delete).
    pub before: Row<'a>,
    /// Row after (insert, update).
    pub after: Row<'a>,
    /// WAL position of this change.
    pub lsn: Lsn,
    /// Its transaction.
    pub tx: TxInfo,
    /// Its place in the transaction, when transaction metadata is on.
    pub order: Option<TxOrder>,
}

/// A change's place in its transaction (Debezium's `transaction` block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxOrder {
    /// Among every change of the transaction, from 1.
    pub total: u64,
    /// Among the changes of its table, from 1.
    pub collection: u64,
}

impl TxOrder {
    /// The place of the change right after this one, in the same table.
    pub fn next(self) -> TxOrder {
        TxOrder {
            total: self.total + 1,
            collection: self.collection + 1,
        }
    }
}

impl TxInfo {
    /// The transaction's id in transaction metadata: `<xid>:<commit LSN>`
    /// (decimal), the same on BEGIN, every change and END.
    pub fn metadata_id(&self) -> String {
        format!("{}:{}", self.xid, self.commit_lsn.0)
    }
}

/// One Kafka message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Its position in the routes' topic list (for per-topic metrics).
    pub topic_index: usize,
    /// Message key (JSON of the key columns), if the table has one.
    pub key: Option<Bytes>,
    /// Message value (the envelope); `None` is a tombstone (a null value).
    pub payload: Option<Bytes>,
    /// Header values of the source transaction, shared by its records.
    pub tx: Arc<TxHeaders>,
    /// Part `i` of `n` of a whole-transaction message.
    pub part: Option<(usize, usize)>,
    /// A primary-key change's other key (Debezium's headers): on the
    /// delete of the old key, `__debezium.newkey`; on the create of the new
    /// one, `__debezium.oldkey`.
    pub moved: Option<MovedKey>,
    /// An outbox event's headers and Kafka timestamp.
    pub extras: Option<Arc<EventExtras>>,
}

/// What the broker says of a topic that decides whether a record can go
/// there at all: its own size limit, whether it is compacted (a compacted
/// topic refuses records without a key), and whether it refused this
/// engine's records outright (not authorized). Unknown parts are
/// `None`/`false`: nothing is checked against them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TopicFacts {
    /// The topic's `max.message.bytes`.
    pub max_message_bytes: Option<usize>,
    /// `cleanup.policy` includes `compact`.
    pub compacted: bool,
    /// The broker's words when it refused every record of the topic.
    pub refused: Option<Arc<str>>,
}

/// What an outbox event adds to its record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct EventExtras {
    /// Headers (name, value's text; `None` for SQL NULL).
    pub headers: Vec<(String, Option<String>)>,
    /// The record's Kafka timestamp (Unix ms); the produce time when `None`.
    pub timestamp_ms: Option<i64>,
}

/// The other key of a record that a primary-key change split in two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MovedKey {
    /// This record deletes the old key; the row lives on under this key.
    To(Bytes),
    /// This record creates the new key; the row was under this key.
    From(Bytes),
}

impl MovedKey {
    /// Debezium's header name and its value.
    pub fn header(&self) -> (&'static str, &[u8]) {
        match self {
            MovedKey::To(k) => ("__debezium.newkey", k),
            MovedKey::From(k) => ("__debezium.oldkey", k),
        }
    }
}

/// What librdkafka holds per queued message beyond its key and value (the
/// message struct, its headers, the batch's framing), measured as the
/// resident set's growth per in-flight record: the in-flight byte cap
/// counts it, so a cap of small records is a cap on memory too.
pub(crate) const RECORD_OVERHEAD: usize = 320;

impl Record {
    /// A record of source transaction `tx` with nothing beyond its key and
    /// value (no part, moved key or outbox extras).
    pub fn keyed(
        topic: &Arc<str>,
        topic_index: usize,
        key: Option<Bytes>,
        payload: Option<Bytes>,
        tx: &Arc<TxHeaders>,
    ) -> Record {
        Record {
            topic: Arc::clone(topic),
            topic_index,
            key,
            payload,
            tx: Arc::clone(tx),
            part: None,
            moved: None,
            extras: None,
        }
    }

    /// Bytes this record holds while in flight, librdkafka's share included.
    pub fn size(&self) -> usize {
        record_size(
            self.payload.as_ref().map_or(0, |p| p.len()),
            self.key.as_ref().map_or(0, |k| k.len()),
        )
    }
}

/// In-flight bytes of a record with a value and key of these lengths.
pub(crate) fn record_size(payload: usize, key: usize) -> usize {
    payload + key + RECORD_OVERHEAD
}

/// The headers every record of one transaction carries, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxHeaders {
    /// Commit LSN, `0/16B3748`.
    pub commit_lsn: String,
    /// Transaction id.
    pub xid: String,
}

impl TxHeaders {
    /// Renders the header values of a transaction.
    pub fn new(commit_lsn: Lsn, xid: u32) -> Self {
        TxHeaders {
            commit_lsn: commit_lsn.to_string(),
            xid: xid.to_string(),
        }
    }
}

/// The wall clock in Unix milliseconds (the envelope's `ts_ms`).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
