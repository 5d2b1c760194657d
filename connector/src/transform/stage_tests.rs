//! Tests of the pipeline: routing, and snapshot rows between watermarks.
use super::*;
use std::collections::HashSet;

use crate::event::{Column, Datum};
use crate::transform::watch::NoWatch;
use bytes::Bytes;

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
    targets: [{}, {topic: audit}, {topic: quiet, tombstonesOnDelete: false}]
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
            value_oid: 23,
            type_modifier: -1,
        }],
    })
}

fn row(v: &str) -> Vec<Datum> {
    vec![Datum::Text(Bytes::copy_from_slice(v.as_bytes()))]
}

/// The test spec's transform, with no catalog keys and no salts.
fn transform() -> Transform {
    Transform::new(
        "c",
        &spec(),
        HashMap::new(),
        &Metrics::new("c"),
        &Default::default(),
    )
    .expect("compiles")
}

#[test]
fn routes_captured_actions_to_every_target_and_ignores_the_rest() {
    let mut p = transform();
    assert_eq!(
        p.topics(),
        [
            Arc::<str>::from("cdc.public.orders"),
            Arc::from("audit"),
            Arc::from("quiet")
        ]
    );
    let mut out = Vec::new();
    let begin = Message::Begin {
        final_lsn: Lsn(100),
        commit_time_us: 0,
        xid: 5,
    };
    assert!(matches!(
        p.handle(begin, Lsn(1), 0, &mut out, &mut NoWatch),
        Ok(Boundary::Begin(_))
    ));
    for m in [relation(1, "orders"), relation(2, "other")] {
        p.handle(m, Lsn(2), 0, &mut out, &mut NoWatch)
            .expect("relation");
    }
    p.handle(
        Message::Insert {
            relation_id: 1,
            new: row("1"),
        },
        Lsn(3),
        0,
        &mut out,
        &mut NoWatch,
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
        &mut NoWatch,
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
        &mut NoWatch,
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
        &mut NoWatch,
    )
    .expect("delete");
    let commit = Message::Commit {
        commit_lsn: Lsn(100),
        end_lsn: Lsn(120),
        commit_time_us: 0,
    };
    assert_eq!(
        p.handle(commit, Lsn(7), 0, &mut out, &mut NoWatch)
            .expect("commit"),
        Boundary::Commit { end_lsn: Lsn(120) }
    );
    let seen: Vec<(&str, &[u8], bool)> = out
        .iter()
        .map(|r| {
            let key = r.key.as_deref().unwrap_or_default();
            (&*r.topic, key, r.payload.is_none())
        })
        .collect();
    // Each delete is followed by a tombstone (a null value under the same
    // key), except where the target turned them off.
    let key = &br#"{"id":1}"#[..];
    assert_eq!(
        seen,
        vec![
            ("cdc.public.orders", key, false),
            ("audit", key, false),
            ("quiet", key, false),
            ("cdc.public.orders", key, false),
            ("cdc.public.orders", key, true),
            ("audit", key, false),
            ("audit", key, true),
            ("quiet", key, false),
        ]
    );
    assert!(out.iter().all(|r| *r.tx == TxHeaders::new(Lsn(100), 5)));
}

#[test]
fn change_for_unknown_relation_is_an_error() {
    let mut p = transform();
    let err = p.handle(
        Message::Insert {
            relation_id: 77,
            new: row("1"),
        },
        Lsn(1),
        0,
        &mut Vec::new(),
        &mut NoWatch,
    );
    assert!(matches!(err, Err(TransformError::UnknownRelation(77))));
}

#[test]
fn snapshot_rows_drop_keys_changed_between_watermarks_and_read_as_r() {
    let mut p = transform();
    let orders = QualifiedTable::parse("public.orders").expect("valid");
    let mut out = Vec::new();
    p.handle(relation(1, "orders"), Lsn(1), 0, &mut out, &mut NoWatch)
        .expect("relation");
    let mut watch = Recorded::default();
    let begin = Message::Begin {
        final_lsn: Lsn(10),
        commit_time_us: 0,
        xid: 1,
    };
    p.handle(begin, Lsn(2), 0, &mut out, &mut watch)
        .expect("begin");
    let delete = Message::Delete {
        relation_id: 1,
        old: OldTuple::Key(row("2")),
    };
    p.handle(delete, Lsn(3), 0, &mut out, &mut watch)
        .expect("delete");
    // Updates are not captured by this listener: such a change never
    // reaches the consumer, so the chunk keeps that row.
    let update = Message::Update {
        relation_id: 1,
        old: None,
        new: row("3"),
    };
    p.handle(update, Lsn(4), 0, &mut out, &mut watch)
        .expect("update");
    assert_eq!(
        watch.keys,
        [(orders.clone(), Bytes::from_static(br#"{"id":2}"#))]
    );
    let changed: HashSet<Bytes> = watch.keys.into_iter().map(|(_, k)| k).collect();
    out.clear();
    let shape = orders_shape();
    assert_eq!(shape.table, orders);
    let kept = p
        .snapshot_rows(
            &shape,
            &[row("1"), row("2"), row("3")],
            &changed,
            (Lsn(20), 0),
            &mut out,
        )
        .expect("rows");
    assert_eq!(kept, 2, "the row the stream changed is dropped");
    let keys: Vec<&[u8]> = out.iter().filter_map(|r| r.key.as_deref()).collect();
    // Three targets, each gets rows 1 and 3.
    let (one, three) = (&br#"{"id":1}"#[..], &br#"{"id":3}"#[..]);
    assert_eq!(keys, [one, one, one, three, three, three]);
    let value: serde_json::Value =
        serde_json::from_slice(out[0].payload.as_deref().expect("value")).expect("json");
    assert_eq!(value["op"], "r");
    assert_eq!(value["source"]["snapshot"], "incremental");
    assert_eq!(value["after"]["id"], 1);
}

#[test]
fn a_large_chunk_is_encoded_on_several_threads_in_row_order() {
    let mut p = transform();
    let shape = orders_shape();
    // Past the size kept on the session's thread; every 7th row dropped.
    let rows: Vec<Vec<Datum>> = (1..=5000).map(|i| row(&i.to_string())).collect();
    let dropped: HashSet<Bytes> = (1..=5000)
        .filter(|i| i % 7 == 0)
        .map(|i| Bytes::from(format!(r#"{{"id":{i}}}"#)))
        .collect();
    let mut out = Vec::new();
    let kept = p
        .snapshot_rows(&shape, &rows, &dropped, (Lsn(20), 0), &mut out)
        .expect("rows");
    let expected: Vec<i64> = (1..=5000).filter(|i| i % 7 != 0).collect();
    assert_eq!(kept, expected.len() as u64);
    // Three targets per row, in row order, as one thread would make them.
    let ids: Vec<i64> = out
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_slice(r.payload.as_deref().expect("value")).expect("json");
            v["after"]["id"].as_i64().expect("id")
        })
        .collect();
    let thrice: Vec<i64> = expected.iter().flat_map(|&i| [i, i, i]).collect();
    assert_eq!(ids, thrice);
}

/// `public.orders (id int PRIMARY KEY)`.
fn orders_shape() -> TableShape {
    TableShape {
        table: QualifiedTable::parse("public.orders").expect("valid"),
        columns: vec![Column {
            is_key: true,
            name: "id".into(),
            type_oid: 23,
            value_oid: 23,
            type_modifier: -1,
        }],
        replica_identity: b'd',
    }
}

/// A watch that notes every key it is told of.
#[derive(Default)]
struct Recorded {
    keys: Vec<(QualifiedTable, Bytes)>,
}

impl crate::transform::watch::KeyWatch for Recorded {
    fn watches(&self, _: &QualifiedTable) -> bool {
        true
    }
    fn changed(&mut self, table: &QualifiedTable, key: Bytes) {
        self.keys.push((table.clone(), key));
    }
    fn truncated(&mut self, _: &QualifiedTable) {}
}
