//! The Debezium-compatible JSON envelope and record key, written straight into
//! byte buffers:
//! `{"before":…,"after":…,"source":{…},"op":"c","ts_ms":…}`.

use std::io::Write as _;

use pgkafka_crds::Envelope;

use super::mask::ColumnMask;
use crate::decode::values::{
    write_binary_value, write_str, write_text_value, ValueModes, UNAVAILABLE_VALUE,
};
use crate::event::{Change, Datum, Op, Relation, Row};

/// How one target renders changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Encoding<'a> {
    /// Debezium or flat.
    pub envelope: Envelope,
    /// Columns kept, by position; every column when `None`.
    pub columns: Option<&'a [bool]>,
    /// Masked, hashed and truncated columns, by position.
    pub masks: Option<&'a [Option<ColumnMask>]>,
    /// The schema form's value schema: the envelope is then its payload.
    pub schema: Option<&'a [u8]>,
}

/// Constant parts of every envelope this connector writes.
#[derive(Clone, Debug)]
pub struct EnvelopeContext {
    /// `source.name`: the connector's name.
    pub name: String,
    /// `source.db`.
    pub database: String,
    /// How values are written (the connector's handling modes).
    pub modes: ValueModes,
}

/// Writes the Debezium envelope of `change`; `now_ms` is the processing time.
pub fn write_envelope(
    out: &mut Vec<u8>,
    ctx: &EnvelopeContext,
    change: &Change<'_>,
    now_ms: i64,
    encoding: Encoding<'_>,
) {
    let columns = Columns {
        kept: encoding.columns,
        masks: encoding.masks,
        modes: &ctx.modes,
    };
    if encoding.envelope == Envelope::Flat {
        return write_flat(out, change, &columns);
    }
    out.extend_from_slice(b"{\"before\":");
    write_row(out, change.relation, change.before, &columns);
    out.extend_from_slice(b",\"after\":");
    write_row(out, change.relation, change.after, &columns);
    out.extend_from_slice(b",\"source\":{\"version\":\"");
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"\",\"connector\":\"postgresql\",\"name\":");
    write_str(out, &ctx.name);
    out.extend_from_slice(b",\"ts_ms\":");
    write_int(out, change.tx.commit_ms());
    // Snapshot rows are read between watermarks while the stream goes on,
    // which Debezium calls an incremental snapshot.
    out.extend_from_slice(if change.op == Op::Read {
        b",\"snapshot\":\"incremental\",\"db\":"
    } else {
        b",\"snapshot\":\"false\",\"db\":"
    });
    write_str(out, &ctx.database);
    out.extend_from_slice(b",\"schema\":");
    write_str(out, &change.relation.shape.table.schema);
    out.extend_from_slice(b",\"table\":");
    write_str(out, &change.relation.shape.table.name);
    out.extend_from_slice(b",\"txId\":");
    write_int(out, change.tx.xid);
    out.extend_from_slice(b",\"lsn\":");
    write_int(out, change.lsn.0);
    out.extend_from_slice(b",\"commitLsn\":");
    let _ = write!(out, "\"{}\"", change.tx.commit_lsn);
    // Debezium's ordering pair: a JSON string holding
    // `["<last commit LSN>","<LSN>"]`, both decimal.
    out.extend_from_slice(b",\"sequence\":\"[");
    match change.tx.last_commit_lsn {
        Some(lsn) => {
            let _ = write!(out, "\\\"{}\\\"", lsn.0);
        }
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(out, ",\\\"{}\\\"]\",\"xmin\":null", change.lsn.0);
    out.extend_from_slice(b"},\"op\":\"");
    out.extend_from_slice(change.op.code().as_bytes());
    out.extend_from_slice(b"\",\"ts_ms\":");
    write_int(out, now_ms);
    if let Some(order) = change.order {
        let _ = write!(
            out,
            ",\"transaction\":{{\"id\":\"{}\",\"total_order\":{},\"data_collection_order\":{}}}",
            change.tx.metadata_id(),
            order.total,
            order.collection
        );
    }
    out.push(b'}');
}

/// The row itself with `__` metadata fields, as Debezium's
/// ExtractNewRecordState writes it (`delete.handling.mode=rewrite`): the new
/// row, or the old one for a delete; a truncate has only the metadata.
fn write_flat(out: &mut Vec<u8>, change: &Change<'_>, columns: &Columns<'_>) {
    let row = match change.op {
        Op::Delete => change.before,
        _ => change.after,
    };
    out.push(b'{');
    let (datums, key_only) = match row {
        Row::Absent => (&[][..], false),
        Row::Full(d) => (d, false),
        Row::KeyOnly(d) => (d, true),
    };
    if write_fields(out, change.relation, datums, key_only, columns) {
        out.push(b',');
    }
    out.extend_from_slice(b"\"__op\":\"");
    out.extend_from_slice(change.op.code().as_bytes());
    out.extend_from_slice(b"\",\"__table\":");
    write_str(
        out,
        &format!(
            "{}.{}",
            change.relation.shape.table.schema, change.relation.shape.table.name
        ),
    );
    out.extend_from_slice(b",\"__lsn\":");
    write_int(out, change.lsn.0);
    out.extend_from_slice(b",\"__txId\":");
    write_int(out, change.tx.xid);
    out.extend_from_slice(b",\"__source_ts_ms\":");
    write_int(out, change.tx.commit_ms());
    out.extend_from_slice(if change.op == Op::Delete {
        b",\"__deleted\":\"true\"}"
    } else {
        b",\"__deleted\":\"false\"}"
    });
}

/// Appends an integer's decimal digits without allocating.
fn write_int(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Writes the record key, `{"id":1}`, from the key columns of `row`, with
/// `masks` (by column position) applied. `false` when the table has no key
/// or the row lacks a key value: such records are produced without a key.
pub fn write_key(
    out: &mut Vec<u8>,
    relation: &Relation,
    row: &[Datum],
    modes: &ValueModes,
    masks: Option<&[Option<ColumnMask>]>,
) -> bool {
    if relation.key.is_empty() {
        return false;
    }
    let columns = Columns {
        kept: None,
        masks,
        modes,
    };
    out.push(b'{');
    for (n, &i) in relation.key.iter().enumerate() {
        let Some(datum) = row.get(i) else {
            return false;
        };
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&relation.json_names[i]);
        columns.write_datum(out, relation, i, datum);
    }
    out.push(b'}');
    true
}

/// How a target writes a row's columns: which it keeps, which it masks,
/// the value modes.
struct Columns<'a> {
    kept: Option<&'a [bool]>,
    masks: Option<&'a [Option<ColumnMask>]>,
    modes: &'a ValueModes,
}

impl Columns<'_> {
    fn keeps(&self, i: usize) -> bool {
        self.kept
            .is_none_or(|keep| keep.get(i).copied().unwrap_or(true))
    }

    fn write_datum(&self, out: &mut Vec<u8>, relation: &Relation, i: usize, datum: &Datum) {
        let mask = self.masks.and_then(|m| m.get(i)).and_then(Option::as_ref);
        match (datum, mask) {
            (Datum::Null, None) => out.extend_from_slice(b"null"),
            (Datum::Null, Some(m)) => match m.null() {
                Some(text) => write_str(out, text),
                None => out.extend_from_slice(b"null"),
            },
            // The placeholder holds no data of the row: consumers must
            // still recognise it.
            (Datum::UnchangedToast, _) => write_str(out, UNAVAILABLE_VALUE),
            (Datum::Text(t) | Datum::Binary(t), Some(m)) => {
                // Masks apply to character columns, whose both forms are
                // the text itself.
                write_str(out, &m.text(&String::from_utf8_lossy(t)));
            }
            (Datum::Text(t), None) => {
                write_text_value(out, &relation.shape.columns[i], t, self.modes)
            }
            (Datum::Binary(b), None) => write_binary_value(out, b),
        }
    }
}

fn write_row(out: &mut Vec<u8>, relation: &Relation, row: Row<'_>, columns: &Columns<'_>) {
    let (datums, key_only) = match row {
        Row::Absent => {
            out.extend_from_slice(b"null");
            return;
        }
        Row::Full(d) => (d, false),
        Row::KeyOnly(d) => (d, true),
    };
    out.push(b'{');
    write_fields(out, relation, datums, key_only, columns);
    out.push(b'}');
}

/// Writes `"col":value` pairs, comma-separated; `true` if it wrote any.
fn write_fields(
    out: &mut Vec<u8>,
    relation: &Relation,
    datums: &[Datum],
    key_only: bool,
    columns: &Columns<'_>,
) -> bool {
    let mut first = true;
    for (i, datum) in datums.iter().enumerate().take(relation.shape.columns.len()) {
        if key_only && !relation.shape.columns[i].is_key {
            continue;
        }
        if !columns.keeps(i) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&relation.json_names[i]);
        columns.write_datum(out, relation, i, datum);
    }
    !first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::pgoutput::RelationBody;
    use crate::decode::relations::{KeyPolicy, RelationCache};
    use crate::event::{Column, TxInfo};
    use crate::lsn::Lsn;
    use bytes::Bytes;
    use serde_json::json;
    use std::sync::Arc;

    fn relation() -> Arc<Relation> {
        let col = |name: &str, is_key, type_oid| Column {
            is_key,
            name: name.into(),
            type_oid,
            value_oid: type_oid,
            type_modifier: -1,
        };
        let body = RelationBody {
            id: 9,
            schema: "shop".into(),
            name: "orders".into(),
            replica_identity: b'd',
            columns: vec![
                col("id", true, 20),
                col("doc", false, 25),
                col("paid", false, 16),
            ],
        };
        RelationCache::default()
            .insert(body, &KeyPolicy::default())
            .expect("no configured key")
    }

    fn text(s: &str) -> Datum {
        Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn update_envelope_matches_debezium_shape() {
        let rel = relation();
        let old = [text("7"), Datum::Null, Datum::Null];
        let new = [text("7"), Datum::UnchangedToast, text("t")];
        let tx = TxInfo {
            xid: 745,
            commit_lsn: Lsn(0x1_0000_00A0),
            commit_time_us: 1_000,
            last_commit_lsn: Some(Lsn(0x1_0000_0010)),
        };
        let change = Change {
            relation: &rel,
            op: Op::Update,
            before: Row::KeyOnly(&old),
            after: Row::Full(&new),
            lsn: Lsn(4096),
            tx,
            order: None,
        };
        let ctx = EnvelopeContext {
            name: "orders".into(),
            database: "shop".into(),
            modes: ValueModes::default(),
        };
        let mut out = Vec::new();
        write_envelope(&mut out, &ctx, &change, 5, Encoding::default());
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(
            v,
            json!({
                "before": {"id": 7},
                "after": {"id": 7, "doc": UNAVAILABLE_VALUE, "paid": true},
                "source": {"version": env!("CARGO_PKG_VERSION"), "connector": "postgresql", "name": "orders",
                           "ts_ms": 946_684_800_001i64, "snapshot": "false", "db": "shop", "schema": "shop",
                           "table": "orders", "txId": 745, "lsn": 4096, "commitLsn": "1/A0",
                           "sequence": "[\"4294967312\",\"4096\"]", "xmin": null},
                "op": "u",
                "ts_ms": 5
            })
        );
        let mut key = Vec::new();
        assert!(write_key(
            &mut key,
            &rel,
            &new,
            &ValueModes::default(),
            None
        ));
        assert_eq!(key, br#"{"id":7}"#);
    }

    #[test]
    fn flat_envelope_and_column_selection() {
        let rel = relation();
        let old = [text("7"), text("gone"), text("f")];
        let tx = TxInfo {
            xid: 9,
            commit_lsn: Lsn(1),
            commit_time_us: 0,
            last_commit_lsn: None,
        };
        let ctx = EnvelopeContext {
            name: "n".into(),
            database: "d".into(),
            modes: ValueModes::default(),
        };
        let keep = [true, false, true];
        let delete = Change {
            relation: &rel,
            op: Op::Delete,
            before: Row::Full(&old),
            after: Row::Absent,
            lsn: Lsn(2),
            tx,
            order: None,
        };
        let mut out = Vec::new();
        write_envelope(
            &mut out,
            &ctx,
            &delete,
            0,
            Encoding {
                envelope: Envelope::Flat,
                columns: Some(&keep),
                schema: None,
                masks: None,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(
            v,
            json!({"id": 7, "paid": false, "__op": "d", "__table": "shop.orders", "__lsn": 2, "__txId": 9,
                   "__source_ts_ms": 946_684_800_000i64, "__deleted": "true"})
        );
        out.clear();
        let truncate = Change {
            before: Row::Absent,
            op: Op::Truncate,
            ..delete
        };
        write_envelope(
            &mut out,
            &ctx,
            &truncate,
            0,
            Encoding {
                envelope: Envelope::Flat,
                columns: None,
                schema: None,
                masks: None,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["__op"], "t");
        out.clear();
        write_envelope(
            &mut out,
            &ctx,
            &delete,
            0,
            Encoding {
                envelope: Envelope::Debezium,
                columns: Some(&keep),
                schema: None,
                masks: None,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["before"], json!({"id": 7, "paid": false}));
    }

    #[test]
    fn no_key_columns_means_no_key() {
        let mut rel = Arc::try_unwrap(relation()).expect("sole owner");
        rel.key.clear();
        let mut key = Vec::new();
        assert!(!write_key(
            &mut key,
            &rel,
            &[text("1")],
            &ValueModes::default(),
            None
        ));
    }
}
