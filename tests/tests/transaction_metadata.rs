//! Transaction metadata (`spec.kafka.provideTransactionMetadata`, Debezium's
//! `provide.transaction.metadata`): BEGIN and END records on
//! `<topicPrefix>.transaction` with exact counts, and each change's
//! `transaction` block with its total and per-table order, on a
//! transaction spanning two tables (a key change counted as the delete
//! and the create it is sent as). Real PostgreSQL, real broker.

use std::time::Duration;

use pgkafka_tests::{read_to_end, unique, Broker, Consumed, Engine, Manifest, Postgres, TestDb};
use serde_json::{json, Value};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

/// `0/16B3748` as a number.
fn lsn_number(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').expect("an LSN");
    (u64::from_str_radix(hi, 16).expect("hex") << 32) | u64::from_str_radix(lo, 16).expect("hex")
}

struct Run {
    db: TestDb,
    name: String,
    prefix: String,
    broker: Broker,
    engine: Engine,
}

/// A streaming connector on tables `a` and `b` with transaction metadata.
async fn streaming(schemas: bool) -> Run {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
        .await;
    let broker = Broker::start();
    let (name, prefix) = (unique("txmeta"), unique("txmeta"));
    let m = Manifest::new(
        &name,
        &db,
        &broker.bootstrap,
        &prefix,
        "    - table: a\n    - table: b",
    )
    .spec(|s| {
        s.kafka.provide_transaction_metadata = true;
        s.kafka.schemas = schemas;
    });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    Run {
        db,
        name,
        prefix,
        broker,
        engine,
    }
}

async fn one_transaction_over_two_tables(schemas: bool) -> Run {
    let mut run = streaming(schemas).await;
    let db = &run.db;
    db.exec(
        "BEGIN;
         INSERT INTO a VALUES (1);
         INSERT INTO b VALUES (10);
         INSERT INTO a VALUES (2);
         UPDATE b SET id = 11 WHERE id = 10;
         COMMIT;",
    )
    .await;
    db.wait_confirmed_all(&format!("{}_slot", run.name), LONG)
        .await;
    assert_eq!(run.engine.stop(), Some(0), "{}", run.engine.log_text());
    run
}

/// The records with a value, in the order of their changes (partitions
/// keep per-key order only: sort by op and id, as the transaction wrote).
fn data(records: &[Consumed]) -> Vec<&Consumed> {
    let mut out: Vec<&Consumed> = records.iter().filter(|r| r.raw.is_some()).collect();
    let rank = |r: &Consumed| {
        let id = r.value["after"]["id"]
            .as_i64()
            .or(r.value["before"]["id"].as_i64());
        let op = r.value["op"].as_str().unwrap_or_default().to_owned();
        (id.unwrap_or_default(), op != "c" || id == Some(11))
    };
    out.sort_by_key(|r| rank(r));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn begin_end_and_each_changes_place_in_its_transaction() {
    let run = one_transaction_over_two_tables(false).await;
    let read = |t: &str| read_to_end(&run.broker.bootstrap, &format!("{}.{t}", run.prefix));
    let (a, b, tx) = (read("public.a"), read("public.b"), read("transaction"));
    let (a, b) = (data(&a), data(&b));
    assert_eq!((a.len(), b.len(), tx.len()), (2, 3, 2), "{tx:#?}");
    let source = &a[0].value["source"];
    let id = format!(
        "{}:{}",
        source["txId"],
        lsn_number(source["commitLsn"].as_str().expect("commitLsn"))
    );
    let ts = source["ts_ms"].clone();
    assert_eq!(
        tx[0].key.as_deref(),
        Some(json!({ "id": id }).to_string().as_str())
    );
    assert_eq!(
        tx[0].raw.as_deref(),
        Some(
            format!(r#"{{"status":"BEGIN","id":"{id}","event_count":null,"data_collections":null,"ts_ms":{ts}}}"#)
                .as_str()
        )
    );
    assert_eq!(
        tx[1].raw.as_deref(),
        Some(format!(r#"{{"status":"END","id":"{id}","event_count":5,"data_collections":[{{"data_collection":"public.a","event_count":2}},{{"data_collection":"public.b","event_count":3}}],"ts_ms":{ts}}}"#).as_str())
    );
    let block = |r: &Consumed| r.value["transaction"].clone();
    let expect = |total: u64, table: u64| json!({"id": id, "total_order": total, "data_collection_order": table});
    assert_eq!(block(a[0]), expect(1, 1));
    assert_eq!(block(b[0]), expect(2, 1));
    assert_eq!(block(a[1]), expect(3, 2));
    // The key change: the delete of id 10, then the create of id 11.
    assert_eq!(
        (b[1].value["op"].clone(), block(b[1])),
        (Value::from("d"), expect(4, 2))
    );
    assert_eq!(
        (b[2].value["op"].clone(), block(b[2])),
        (Value::from("c"), expect(5, 3))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_form_names_debeziums_transaction_schemas() {
    let run = one_transaction_over_two_tables(true).await;
    let read = |t: &str| read_to_end(&run.broker.bootstrap, &format!("{}.{t}", run.prefix));
    let tx = read("transaction");
    assert_eq!(tx.len(), 2);
    assert_eq!(
        tx[0].value["schema"]["name"],
        "io.debezium.connector.common.TransactionMetadataValue"
    );
    assert_eq!(tx[1].value["payload"]["event_count"], 5);
    let a = read("public.a");
    let first = a
        .iter()
        .find(|r| r.value["payload"]["after"]["id"] == 1)
        .expect("row 1");
    let fields = first.value["schema"]["fields"]
        .as_array()
        .expect("fields")
        .clone();
    let block = fields
        .iter()
        .find(|f| f["field"] == "transaction")
        .expect("a transaction field");
    assert_eq!(block["name"], "event.block");
    assert_eq!(first.value["payload"]["transaction"]["total_order"], 1);
}

/// Across a kill -9, every transaction's END arrives (a replayed one may
/// come twice, at least once), with its exact count.
#[tokio::test(flavor = "multi_thread")]
async fn every_transactions_end_arrives_across_a_kill_9() {
    let Run {
        db,
        name,
        prefix,
        broker,
        mut engine,
    } = streaming(false).await;
    for t in 0..60 {
        db.exec(&format!(
            "BEGIN; INSERT INTO a VALUES ({x}), ({y}); INSERT INTO b VALUES ({t}); COMMIT;",
            x = 2 * t,
            y = 2 * t + 1
        ))
        .await;
    }
    let topic = format!("{prefix}.transaction");
    let _ = pgkafka_tests::consume(&broker.bootstrap, &topic, 40, LONG);
    engine.kill9();
    engine.restart(ENGINE);
    engine.wait_streaming();
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    let records = read_to_end(&broker.bootstrap, &topic);
    let ends: std::collections::BTreeMap<String, Value> = records
        .iter()
        .filter(|r| r.value["status"] == "END")
        .map(|r| {
            (
                r.value["id"].as_str().unwrap_or_default().to_owned(),
                r.value["event_count"].clone(),
            )
        })
        .collect();
    assert_eq!(ends.len(), 60, "{}", engine.log_text());
    assert!(ends.values().all(|n| *n == 3), "{ends:?}");
    // Every change names a transaction whose END arrived.
    let a = read_to_end(&broker.bootstrap, &format!("{prefix}.public.a"));
    assert!(a
        .iter()
        .all(|r| ends.contains_key(r.value["transaction"]["id"].as_str().unwrap_or_default())));
}
