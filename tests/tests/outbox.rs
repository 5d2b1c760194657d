//! Outbox targets (Debezium's Outbox Event Router, its defaults): a
//! Debezium-shaped outbox table routed to a topic per aggregate type, keyed
//! by the aggregate id, the jsonb payload as the value itself, the event id
//! and other columns as headers; a row inserted and deleted in one
//! transaction is one event; updates ignored, routed or fatal as asked;
//! nothing lost across kill -9. Real PostgreSQL, real broker.

use std::collections::BTreeSet;
use std::time::Duration;

use pgkafka_tests::{
    consume, read_to_end, unique, Broker, Consumed, Engine, Manifest, Postgres, TestDb,
};
use serde_json::json;

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

const OUTBOX: &str = "CREATE TABLE outbox (
    id uuid PRIMARY KEY,
    aggregatetype text NOT NULL,
    aggregateid text NOT NULL,
    type text NOT NULL,
    payload jsonb)";

fn header<'a>(r: &'a Consumed, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn outbox_db() -> TestDb {
    let db = Postgres::shared().fresh_database().await;
    db.exec(OUTBOX).await;
    db.exec("CREATE TABLE orders (id int PRIMARY KEY, total int)")
        .await;
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn a_debezium_outbox_table_works_unchanged() {
    let db = outbox_db().await;
    let broker = Broker::start();
    let (name, prefix) = (unique("outbox"), unique("outbox"));
    let listeners = "    - table: outbox
      targets:
        - outbox:
            additionalPlacement: [{column: type, placement: header, alias: eventType}]
    - table: orders";
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, listeners);
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    db.exec(
        "BEGIN;
         INSERT INTO orders VALUES (42, 10);
         INSERT INTO outbox VALUES ('6d0b5e1c-0a51-4a3c-8d5c-1b9c2f1e7a10', 'Order', '42', 'OrderCreated',
                                    '{\"id\": 42, \"total\": 10, \"note\": \"a \\\"quoted\\\" word\"}');
         INSERT INTO outbox VALUES ('0e4f2a52-3c1b-4e8e-9a3b-2f6d7c8e9a01', 'Customer', 'c-7', 'CustomerSeen', '[1, 2]');
         COMMIT;
         -- The outbox pattern that never grows the table: insert and delete at once.
         BEGIN;
         INSERT INTO outbox VALUES ('a1a2a3a4-b1b2-c1c2-d1d2-e1e2e3e4e5e6', 'Order', '43', 'OrderCreated', '{\"id\": 43}');
         DELETE FROM outbox WHERE id = 'a1a2a3a4-b1b2-c1c2-d1d2-e1e2e3e4e5e6';
         COMMIT;",
    )
    .await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    let orders = read_to_end(&broker.bootstrap, "outbox.event.Order");
    let customers = read_to_end(&broker.bootstrap, "outbox.event.Customer");
    assert_eq!((orders.len(), customers.len()), (2, 1), "{orders:#?}");
    // Partitions keep per-key order only: find each event by its key.
    let by_key = |k: &str| {
        orders
            .iter()
            .find(|r| r.key.as_deref() == Some(k))
            .expect("event")
    };
    let first = by_key("42");
    assert_eq!(first.key.as_deref(), Some("42"));
    // The jsonb payload is the value itself, not a string holding it.
    assert_eq!(
        first.value,
        json!({"id": 42, "total": 10, "note": "a \"quoted\" word"})
    );
    assert_eq!(
        header(first, "id"),
        Some("6d0b5e1c-0a51-4a3c-8d5c-1b9c2f1e7a10")
    );
    assert_eq!(header(first, "eventType"), Some("OrderCreated"));
    assert_eq!(customers[0].key.as_deref(), Some("c-7"));
    assert_eq!(customers[0].value, json!([1, 2]));
    // Inserted and deleted in one transaction: the event, and no more.
    assert_eq!(by_key("43").value, json!({"id": 43}));
    let left: i64 = db
        .client
        .query_one("SELECT count(*) FROM outbox WHERE aggregateid = '43'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "the table does not grow");
    // The business table streams as usual beside it.
    let rows = read_to_end(&broker.bootstrap, &format!("{prefix}.public.orders"));
    assert_eq!(rows.len(), 1);
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_are_ignored_routed_or_fatal_as_asked() {
    let db = outbox_db().await;
    let broker = Broker::start();
    let (name, prefix) = (unique("obupd"), unique("obupd"));
    let listeners = format!(
        "    - table: outbox
      targets:
        - outbox: {{topic: '{prefix}.ignored.${{routedByValue}}'}}
        - outbox: {{topic: '{prefix}.routed.${{routedByValue}}', onUpdate: route}}"
    );
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, &listeners);
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    db.exec(
        "INSERT INTO outbox VALUES ('11111111-1111-1111-1111-111111111111', 'Order', '1', 'OrderCreated', '{\"v\": 1}');
         UPDATE outbox SET payload = '{\"v\": 2}';",
    )
    .await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    let ignored = read_to_end(&broker.bootstrap, &format!("{prefix}.ignored.Order"));
    let routed = read_to_end(&broker.bootstrap, &format!("{prefix}.routed.Order"));
    let values = |r: &[Consumed]| r.iter().map(|c| c.value.clone()).collect::<Vec<_>>();
    assert_eq!(values(&ignored), [json!({"v": 1})]);
    assert_eq!(values(&routed), [json!({"v": 1}), json!({"v": 2})]);
    let metrics = engine
        .http_get("/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("pgkafka_outbox_ignored_total") && l.contains(".ignored."))
        .unwrap_or_default();
    assert!(line.ends_with(" 1"), "{line}");
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());

    // onUpdate: fail halts, naming the field; the slot keeps the update.
    let (name, prefix) = (unique("obfail"), unique("obfail"));
    let listeners = format!(
        "    - table: outbox\n      targets: [{{outbox: {{topic: '{prefix}.${{routedByValue}}', onUpdate: fail}}}}]"
    );
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, &listeners);
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    db.exec("UPDATE outbox SET payload = '{\"v\": 3}'").await;
    let halted = engine.wait_halted(LONG);
    assert!(
        halted.contains("spec.listeners[0].targets[0].outbox") && halted.contains("fail"),
        "{halted}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_event_is_lost_across_a_kill_9() {
    let db = outbox_db().await;
    let broker = Broker::start();
    let (name, prefix) = (unique("obkill"), unique("obkill"));
    let listeners = format!(
        "    - table: outbox\n      targets: [{{outbox: {{topic: '{prefix}.${{routedByValue}}'}}}}]"
    );
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, &listeners);
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    for batch in 0..50 {
        db.exec(&format!(
            "BEGIN;
             INSERT INTO outbox SELECT gen_random_uuid(), 'Order', g::text, 'OrderCreated',
                                       jsonb_build_object('n', g)
               FROM generate_series({}, {}) g;
             DELETE FROM outbox;
             COMMIT;",
            batch * 10 + 1,
            batch * 10 + 10
        ))
        .await;
    }
    let topic = format!("{prefix}.Order");
    let _ = consume(&broker.bootstrap, &topic, 100, LONG);
    engine.kill9();
    engine.restart(ENGINE);
    engine.wait_streaming();
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    let n: BTreeSet<i64> = read_to_end(&broker.bootstrap, &topic)
        .iter()
        .filter_map(|r| r.value["n"].as_i64())
        .collect();
    assert_eq!(
        n,
        (1..=500).collect::<BTreeSet<_>>(),
        "{}",
        engine.log_text()
    );
}

/// The outbox without a table: a transactional logical decoding message
/// whose content is the event, routed by the same router; one rolled back
/// never arrives.
#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_without_a_table_sends_messages_as_events() {
    let db = outbox_db().await;
    let broker = Broker::start();
    let (name, prefix) = (unique("obmsg"), unique("obmsg"));
    let m = Manifest::new(
        &name,
        &db,
        &broker.bootstrap,
        &prefix,
        "    - table: orders",
    )
    .spec(|s| {
        s.messages = vec![pgkafka_crds::MessageSpec {
            prefixes: vec!["outbox".into()],
            topic: None,
            outbox: Some(pgkafka_crds::OutboxSpec {
                topic: format!("{prefix}.${{routedByValue}}"),
                additional_placement: vec![pgkafka_crds::AdditionalField {
                    column: "type".into(),
                    placement: pgkafka_crds::Placement::Header,
                    alias: None,
                }],
                ..Default::default()
            }),
        }]
    });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    let event = |id: &str| {
        format!(
            "SELECT pg_logical_emit_message(true, 'outbox', json_build_object(
               'id', '{id}', 'aggregatetype', 'Order', 'aggregateid', '42', 'type', 'OrderCreated',
               'payload', json_build_object('id', 42, 'total', 10))::text)"
        )
    };
    db.exec(&format!(
        "BEGIN; INSERT INTO orders VALUES (42, 10); {}; COMMIT;
         BEGIN; {}; ROLLBACK;",
        event("e-1"),
        event("e-2")
    ))
    .await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    let events = read_to_end(&broker.bootstrap, &format!("{prefix}.Order"));
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e.key.as_deref(), Some("42"));
    assert_eq!(e.value, json!({"id": 42, "total": 10}));
    assert_eq!(header(e, "id"), Some("e-1"));
    assert_eq!(header(e, "type"), Some("OrderCreated"));
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());
}
