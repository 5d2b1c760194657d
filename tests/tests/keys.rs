//! A primary-key change, Debezium's way: a delete of the old key, its
//! tombstone, then a create of the new key, so every consumer that applies
//! records by key converges on the table. Real PostgreSQL, real broker.

use std::collections::BTreeMap;
use std::time::Duration;

use pgkafka_tests::{read_to_end, unique, Broker, Consumed, Engine, Manifest, Postgres, TestDb};
use serde_json::{json, Value};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

/// What a consumer that applies records by key holds at the end: the last
/// value per key, a tombstone or delete removing it.
fn applied_by_key(records: &[Consumed]) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    for r in records {
        let Some(key) = r.key.clone() else { continue };
        match (&r.raw, r.value["op"].as_str()) {
            (None, _) | (Some(_), Some("d")) => {
                state.remove(&key);
            }
            _ => {
                state.insert(key, r.value["after"].clone());
            }
        }
    }
    state
}

fn header<'a>(r: &'a Consumed, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn run(db: &TestDb, table: &str, listeners: &str) -> (Vec<Consumed>, Vec<Consumed>) {
    let broker = Broker::start();
    let (name, prefix) = (unique("keys"), unique("keys"));
    // `TX` names this run's whole-transaction topic.
    let listeners = listeners.replace("TX", &format!("{prefix}-tx"));
    let m = Manifest::new(&name, db, &broker.bootstrap, &prefix, &listeners);
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    db.exec(&format!(
        "INSERT INTO {table} VALUES (1, 'a'), (2, 'b');
         UPDATE {table} SET id = 20 WHERE id = 2;
         UPDATE {table} SET note = 'a2' WHERE id = 1;"
    ))
    .await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    let records = read_to_end(&broker.bootstrap, &format!("{prefix}.public.{table}"));
    let grouped = read_to_end(&broker.bootstrap, &format!("{prefix}-tx"));
    (records, grouped)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_change_is_a_delete_a_tombstone_and_a_create_and_consumers_converge() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE items (id int PRIMARY KEY, note text)")
        .await;
    let (records, _) = run(&db, "items", "    - table: items").await;
    // Per key, in order (the two keys may sit in different partitions).
    let of = |key: &str| -> Vec<&Consumed> {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .collect()
    };
    let (old, new) = (of(r#"{"id":2}"#), of(r#"{"id":20}"#));
    let ops = |rs: &[&Consumed]| -> Vec<Option<String>> {
        rs.iter()
            .map(|r| r.value["op"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        ops(&old),
        [Some("c".into()), Some("d".into()), None],
        "the old key: its create, a delete, its tombstone: {old:#?}"
    );
    assert_eq!(
        ops(&new),
        [Some("c".into())],
        "the new key: a create: {new:#?}"
    );
    assert_eq!(old[1].value["before"]["id"], 2);
    assert_eq!(header(old[1], "__debezium.newkey"), Some(r#"{"id":20}"#));
    assert_eq!(new[0].value["after"], json!({"id": 20, "note": "b"}));
    assert_eq!(header(new[0], "__debezium.oldkey"), Some(r#"{"id":2}"#));
    // A change that keeps the key stays one update.
    assert!(records
        .iter()
        .any(|r| r.key.as_deref() == Some(r#"{"id":1}"#) && r.value["op"] == "u"));
    let rows = db
        .client
        .query("SELECT id, note FROM items ORDER BY id", &[])
        .await
        .expect("rows");
    let table: BTreeMap<String, Value> = rows
        .iter()
        .map(|r| {
            let id: i32 = r.get(0);
            let note: String = r.get(1);
            (format!(r#"{{"id":{id}}}"#), json!({"id": id, "note": note}))
        })
        .collect();
    assert_eq!(
        applied_by_key(&records),
        table,
        "the consumer holds the table"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn full_identity_flat_envelope_and_whole_transactions_follow_the_same_rule() {
    let db = Postgres::shared().fresh_database().await;
    db.exec(
        "CREATE TABLE wide (id int PRIMARY KEY, note text);
         ALTER TABLE wide REPLICA IDENTITY FULL;",
    )
    .await;
    let (records, grouped) = run(
        &db,
        "wide",
        "    - table: wide\n      targets: [{envelope: flat}, {topic: TX, sendAsTransaction: true}]",
    )
    .await;
    // The flat form, per key: the row for `c`, its delete form, the
    // tombstone; then the new key's row.
    let of = |key: &str| -> Vec<bool> {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .map(|r| r.raw.is_some())
            .collect()
    };
    assert_eq!(of(r#"{"id":2}"#), [true, true, false], "{records:#?}");
    assert_eq!(of(r#"{"id":20}"#), [true], "{records:#?}");
    let deleted = records
        .iter()
        .find(|r| r.key.as_deref() == Some(r#"{"id":2}"#) && r.value["__deleted"] == "true");
    assert!(deleted.is_some(), "the flat delete form: {records:#?}");
    // A whole-transaction message keeps the one update with both images.
    let changes: Vec<&Value> = grouped
        .iter()
        .flat_map(|r| r.value["changes"].as_array().into_iter().flatten())
        .collect();
    let update = changes
        .iter()
        .find(|c| c["op"] == "u" && c["after"]["id"] == 20)
        .unwrap_or_else(|| panic!("one u change in {grouped:#?}"));
    assert_eq!(update["before"]["id"], 2);
}
