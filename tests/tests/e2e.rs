//! End to end against a real PostgreSQL and a real Kafka-protocol broker: the
//! engine runs as a process on a manifest, exactly as a user runs it.

use std::time::Duration;

use pgkafka_tests::{consume, manifest, unique, wait_for, Broker, Engine, Postgres};
use serde_json::{json, Value};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

fn ops(records: &[pgkafka_tests::Consumed]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.value["op"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_arrive_in_order_with_envelopes_and_keys() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE TABLE typed (
            id int PRIMARY KEY, small smallint, big bigint, price numeric(12,4), ratio double precision,
            ok boolean, name text, doc jsonb, raw bytea, tags text[], nums int[], at timestamptz,
            local timestamp, day date, uid uuid, big_text text);
         CREATE TABLE other (id int PRIMARY KEY, v text);",
    )
    .await;
    let name = unique("typed");
    let prefix = unique("t");
    let m = manifest(
        &name,
        &db,
        &broker.bootstrap,
        &prefix,
        "    - table: public.typed",
    );
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();

    db.exec(
        "INSERT INTO typed VALUES (1, -2, 9007199254740993, 10.5000, 1.25, true, 'héllo \"q\"',
            '{\"a\": [1, 2]}', '\\x00ff', ARRAY['x', NULL, 'y z'], ARRAY[1, 2], '2024-02-29 13:04:05.5+02',
            '2024-02-29 13:04:05', '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
            (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i));
         INSERT INTO other VALUES (1, 'not listened');
         UPDATE typed SET name = 'changed' WHERE id = 1;
         DELETE FROM typed WHERE id = 1;
         INSERT INTO typed (id) VALUES (2);
         TRUNCATE typed;",
    )
    .await;
    // Incompressible, so PostgreSQL stores it out of line (TOAST).
    let big: String = db
        .client
        .query_one(
            "SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i",
            &[],
        )
        .await
        .expect("big text")
        .get(0);

    let topic = format!("{prefix}.public.typed");
    let got = consume(&broker.bootstrap, &topic, 5, LONG);
    assert_eq!(ops(&got), ["c", "u", "d", "c", "t"], "{got:#?}");

    let after = &got[0].value["after"];
    assert_eq!(
        after,
        &json!({
            "id": 1, "small": -2, "big": 9007199254740993u64, "price": "10.5000", "ratio": 1.25, "ok": true,
            "name": "héllo \"q\"", "doc": {"a": [1, 2]}, "raw": "AP8=", "tags": ["x", null, "y z"],
            "nums": [1, 2], "at": "2024-02-29T11:04:05.5Z", "local": "2024-02-29T13:04:05",
            "day": "2024-02-29", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "big_text": big
        })
    );
    assert_eq!(got[0].value["before"], Value::Null);
    let source = &got[0].value["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], name.as_str());
    assert_eq!(source["db"], db.name.as_str());
    assert_eq!(
        (source["schema"].as_str(), source["table"].as_str()),
        (Some("public"), Some("typed"))
    );
    assert!(
        source["txId"].as_u64().is_some() && source["lsn"].as_u64().is_some(),
        "{source}"
    );
    assert_eq!(got[0].key.as_deref(), Some(r#"{"id":1}"#));
    let commit_lsn = got[0]
        .headers
        .iter()
        .find(|(k, _)| k == "pgkafka.commit_lsn");
    assert_eq!(
        commit_lsn.map(|(_, v)| v.as_str()),
        source["commitLsn"].as_str()
    );

    // The update: an unchanged TOASTed value is not NULL and not the old text.
    let update = &got[1].value;
    assert_eq!(update["after"]["name"], "changed");
    assert_eq!(update["after"]["big_text"], "__debezium_unavailable_value");
    assert_eq!(update["after"]["nums"], json!([1, 2]));
    // Default replica identity: the delete carries the key only.
    assert_eq!(got[2].value["before"], json!({"id": 1}));
    assert_eq!(got[2].value["after"], Value::Null);
    assert_eq!(got[2].key.as_deref(), Some(r#"{"id":1}"#));
    assert_eq!(got[3].value["after"]["price"], Value::Null);
    assert_eq!(got[4].value["source"]["table"], "typed");

    // The unlisted table produced nothing anywhere.
    assert!(consume(
        &broker.bootstrap,
        &format!("{prefix}.public.other"),
        1,
        Duration::from_secs(3)
    )
    .is_empty());
    assert!(got.iter().all(|r| r.value["source"]["table"] == "typed"));
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_filtered_stream_still_advances_the_slot() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE TABLE listened (id int PRIMARY KEY); CREATE TABLE unlisted (id int PRIMARY KEY);",
    )
    .await;
    let name = unique("idle");
    let m = manifest(
        &name,
        &db,
        &broker.bootstrap,
        &unique("i"),
        "    - table: listened\n      actions: [delete]",
    );
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    let slot = format!("{name}_slot");
    // Writes the engine never turns into a record: another table, and an
    // action the listener does not capture.
    db.exec(
        "INSERT INTO unlisted SELECT generate_series(1, 1000); INSERT INTO listened VALUES (1);",
    )
    .await;
    let target = db.current_wal().await;
    wait_for(
        LONG,
        "confirmed_flush_lsn to pass the filtered writes",
        || async { db.confirmed_flush(&slot).await >= target },
    )
    .await;
    assert_eq!(engine.stop(), Some(0));
}
