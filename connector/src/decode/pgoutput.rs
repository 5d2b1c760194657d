//! pgoutput protocol version 1 messages, decoded from the bytes of one XLogData
//! payload. Pure and total: any byte sequence yields a message or a
//! `DecodeError`, never a panic. Tuple values stay zero-copy slices of the
//! payload (`Bytes`).

use bytes::{Buf, Bytes};

use crate::event::{Column, Datum, OldTuple};
use crate::lsn::Lsn;

/// A Relation message: the shape of a table, sent before its first change in a
/// session and again after it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationBody {
    /// Relation OID.
    pub id: u32,
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Replica identity setting: `d`efault, `n`othing, `f`ull or `i`ndex.
    pub replica_identity: u8,
    /// Columns in attribute order (dropped and generated columns excluded).
    pub columns: Vec<Column>,
}

/// A decoded pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Start of a transaction.
    Begin {
        /// LSN of the commit record.
        final_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01 UTC.
        commit_time_us: i64,
        /// Transaction id.
        xid: u32,
    },
    /// End of a transaction.
    Commit {
        /// LSN of the commit record.
        commit_lsn: Lsn,
        /// LSN just past the commit record: where a restart resumes.
        end_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01 UTC.
        commit_time_us: i64,
    },
    /// The replication origin a transaction came from.
    Origin {
        /// Commit LSN on the origin server.
        commit_lsn: Lsn,
        /// Origin name.
        name: String,
    },
    /// A table's shape.
    Relation(RelationBody),
    /// A non-built-in type used by a relation.
    Type {
        /// Type OID.
        oid: u32,
        /// Schema of the type.
        schema: String,
        /// Type name.
        name: String,
    },
    /// INSERT.
    Insert {
        /// Relation OID.
        relation_id: u32,
        /// The new row.
        new: Vec<Datum>,
    },
    /// UPDATE.
    Update {
        /// Relation OID.
        relation_id: u32,
        /// The old row or key, when the replica identity provides it.
        old: Option<OldTuple>,
        /// The new row.
        new: Vec<Datum>,
    },
    /// DELETE.
    Delete {
        /// Relation OID.
        relation_id: u32,
        /// The old key or row.
        old: OldTuple,
    },
    /// TRUNCATE of one or more relations.
    Truncate {
        /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
        options: u8,
        /// Relations truncated.
        relation_ids: Vec<u32>,
    },
    /// `pg_logical_emit_message()`.
    Logical {
        /// Emitted inside a transaction.
        transactional: bool,
        /// LSN of the message.
        lsn: Lsn,
        /// Application prefix.
        prefix: String,
        /// Payload.
        content: Bytes,
    },
}

/// Why a payload is not a valid pgoutput v1 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended inside a field.
    #[error("pgoutput message truncated while reading {0}")]
    Truncated(&'static str),
    /// A tag byte this decoder does not know.
    #[error("unknown pgoutput message tag 0x{0:02x}")]
    UnknownTag(u8),
    /// A tuple column kind other than n, u, t, b.
    #[error("unknown tuple column kind 0x{0:02x}")]
    TupleKind(u8),
    /// A tuple marker other than the one expected (N, K, O).
    #[error("unexpected tuple marker 0x{0:02x} in {1}")]
    TupleMarker(u8, &'static str),
    /// A negative count or length.
    #[error("negative length {0} in {1}")]
    NegativeLength(i64, &'static str),
    /// A name that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    /// Bytes left over after the message.
    #[error("{0} trailing bytes after a {1} message")]
    Trailing(usize, &'static str),
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            Err(DecodeError::Truncated(what))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_i16())
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_i32())
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        self.need(8, what)?;
        Ok(self.buf.get_i64())
    }
    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        self.need(8, what)?;
        Ok(Lsn(self.buf.get_u64()))
    }
    fn count(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| DecodeError::NegativeLength(n.into(), what))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let n = self.i32(what)?;
        let n = usize::try_from(n).map_err(|_| DecodeError::NegativeLength(n.into(), what))?;
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }
    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated(what))?;
        let s = self.buf.split_to(end);
        self.buf.advance(1);
        String::from_utf8(s.to_vec()).map_err(|_| DecodeError::Utf8(what))
    }
    fn tuple(&mut self) -> Result<Vec<Datum>, DecodeError> {
        let n = self.count("tuple column count")?;
        // Never trust a count for an allocation larger than the bytes present.
        let mut out = Vec::with_capacity(n.min(self.buf.remaining()));
        for _ in 0..n {
            out.push(match self.u8("tuple column kind")? {
                b'n' => Datum::Null,
                b'u' => Datum::UnchangedToast,
                b't' => Datum::Text(self.bytes("text value")?),
                b'b' => Datum::Binary(self.bytes("binary value")?),
                other => return Err(DecodeError::TupleKind(other)),
            });
        }
        Ok(out)
    }
    fn finish(self, msg: Message, name: &'static str) -> Result<Message, DecodeError> {
        match self.buf.remaining() {
            0 => Ok(msg),
            n => Err(DecodeError::Trailing(n, name)),
        }
    }
}

/// Decodes one pgoutput v1 message.
pub fn decode(payload: Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader { buf: payload };
    let (msg, name) = match r.u8("message tag")? {
        b'B' => (begin(&mut r)?, "Begin"),
        b'C' => (commit(&mut r)?, "Commit"),
        b'O' => (origin(&mut r)?, "Origin"),
        b'R' => (decode_relation(&mut r)?, "Relation"),
        b'Y' => (type_message(&mut r)?, "Type"),
        b'I' => (insert(&mut r)?, "Insert"),
        b'U' => (update(&mut r)?, "Update"),
        b'D' => (delete(&mut r)?, "Delete"),
        b'T' => (truncate(&mut r)?, "Truncate"),
        b'M' => (logical_message(&mut r)?, "Message"),
        other => return Err(DecodeError::UnknownTag(other)),
    };
    r.finish(msg, name)
}

fn begin(r: &mut Reader) -> Result<Message, DecodeError> {
    Ok(Message::Begin {
        final_lsn: r.lsn("begin final LSN")?,
        commit_time_us: r.i64("begin commit time")?,
        xid: r.u32("begin xid")?,
    })
}

fn commit(r: &mut Reader) -> Result<Message, DecodeError> {
    let _flags = r.u8("commit flags")?;
    Ok(Message::Commit {
        commit_lsn: r.lsn("commit LSN")?,
        end_lsn: r.lsn("commit end LSN")?,
        commit_time_us: r.i64("commit time")?,
    })
}

fn origin(r: &mut Reader) -> Result<Message, DecodeError> {
    Ok(Message::Origin {
        commit_lsn: r.lsn("origin commit LSN")?,
        name: r.cstr("origin name")?,
    })
}

fn type_message(r: &mut Reader) -> Result<Message, DecodeError> {
    Ok(Message::Type {
        oid: r.u32("type OID")?,
        schema: r.cstr("type schema")?,
        name: r.cstr("type name")?,
    })
}

fn insert(r: &mut Reader) -> Result<Message, DecodeError> {
    let relation_id = r.u32("insert relation id")?;
    match r.u8("insert tuple marker")? {
        b'N' => {}
        other => return Err(DecodeError::TupleMarker(other, "Insert")),
    }
    let new = r.tuple()?;
    Ok(Message::Insert { relation_id, new })
}

fn update(r: &mut Reader) -> Result<Message, DecodeError> {
    let relation_id = r.u32("update relation id")?;
    let (old, marker) = match r.u8("update tuple marker")? {
        b'K' => (Some(OldTuple::Key(r.tuple()?)), r.u8("update new marker")?),
        b'O' => (Some(OldTuple::Full(r.tuple()?)), r.u8("update new marker")?),
        other => (None, other),
    };
    if marker != b'N' {
        return Err(DecodeError::TupleMarker(marker, "Update"));
    }
    let new = r.tuple()?;
    Ok(Message::Update {
        relation_id,
        old,
        new,
    })
}

fn delete(r: &mut Reader) -> Result<Message, DecodeError> {
    let relation_id = r.u32("delete relation id")?;
    let old = match r.u8("delete tuple marker")? {
        b'K' => OldTuple::Key(r.tuple()?),
        b'O' => OldTuple::Full(r.tuple()?),
        other => return Err(DecodeError::TupleMarker(other, "Delete")),
    };
    Ok(Message::Delete { relation_id, old })
}

fn truncate(r: &mut Reader) -> Result<Message, DecodeError> {
    let n = r.i32("truncate relation count")?;
    let n = usize::try_from(n)
        .map_err(|_| DecodeError::NegativeLength(n.into(), "truncate relation count"))?;
    let options = r.u8("truncate options")?;
    let mut relation_ids = Vec::with_capacity(n.min(r.buf.remaining() / 4));
    for _ in 0..n {
        relation_ids.push(r.u32("truncate relation id")?);
    }
    Ok(Message::Truncate {
        options,
        relation_ids,
    })
}

fn logical_message(r: &mut Reader) -> Result<Message, DecodeError> {
    Ok(Message::Logical {
        transactional: r.u8("message flags")? & 1 == 1,
        lsn: r.lsn("message LSN")?,
        prefix: r.cstr("message prefix")?,
        content: r.bytes("message content")?,
    })
}

fn decode_relation(r: &mut Reader) -> Result<Message, DecodeError> {
    let id = r.u32("relation id")?;
    let schema = r.cstr("relation schema")?;
    let name = r.cstr("relation name")?;
    let replica_identity = r.u8("relation replica identity")?;
    let n = r.count("relation column count")?;
    let mut columns = Vec::with_capacity(n.min(r.buf.remaining()));
    for _ in 0..n {
        let flags = r.u8("column flags")?;
        let name = r.cstr("column name")?;
        let type_oid = r.u32("column type")?;
        let type_modifier = r.i32("column type modifier")?;
        columns.push(Column {
            is_key: flags & 1 == 1,
            name,
            type_oid,
            value_oid: type_oid,
            type_modifier,
        });
    }
    Ok(Message::Relation(RelationBody {
        id,
        schema,
        name,
        replica_identity,
        columns,
    }))
}

#[cfg(test)]
#[path = "pgoutput_tests.rs"]
mod tests;
