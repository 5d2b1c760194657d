//! Restart cases other CDC tools lost changes in: kill -9 at several points
//! (before the first record, early, midway, near the end) of one
//! 100,000-row transaction (from `INSERT ... SELECT` and from `COPY`: many
//! changes, one commit LSN), a transaction open across a restart, and
//! transactions mixing rows with logical messages. Every committed row
//! arrives, and every message. Real PostgreSQL, real broker, the engine as a
//! process killed for real.

use std::time::Duration;

use pgkafka_tests::{
    consume, distinct_ids, read_to_end, unique, Broker, Engine, Manifest, Postgres, TestDb,
};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(120);
const ROWS: i64 = 100_000;

struct Running {
    db: TestDb,
    broker: Broker,
    engine: Engine,
    slot: String,
    topic: String,
    messages: String,
}

async fn running() -> Running {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE items (id bigint PRIMARY KEY, note text)")
        .await;
    let (name, prefix) = (unique("restart"), unique("restart"));
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: items").spec(|s| {
        s.messages = vec![pgkafka_crds::MessageSpec {
            prefixes: vec!["app".into()],
            topic: None,
            outbox: None,
        }]
    });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    Running {
        db,
        broker,
        engine,
        slot: format!("{name}_slot"),
        topic: format!("{prefix}.public.items"),
        messages: format!("{prefix}.message"),
    }
}

/// Kills the engine once each of `points` records reached the topic (`0`:
/// at once, while it may still be decoding), starting it again after each
/// kill, then checks that every id in `1..=expected` arrives.
async fn kill_at(r: &mut Running, points: &[usize], expected: i64) {
    for &seen in points {
        let got = consume(&r.broker.bootstrap, &r.topic, seen, LONG);
        assert!(
            got.len() >= seen,
            "only {} records before the kill at {seen}",
            got.len()
        );
        r.engine.kill9();
        r.engine.restart(ENGINE);
        r.engine.wait_streaming();
    }
    r.db.wait_confirmed_all(&r.slot, LONG).await;
    let ids = distinct_ids(&read_to_end(&r.broker.bootstrap, &r.topic));
    assert_eq!(ids.len() as i64, expected, "{}", r.engine.log_text());
    assert_eq!(ids.first().copied(), Some(1));
    assert_eq!(ids.last().copied(), Some(expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_inside_one_big_insert_select_loses_no_row() {
    let mut r = running().await;
    r.db.exec(&format!(
        "INSERT INTO items SELECT g, 'bulk' FROM generate_series(1, {ROWS}) g"
    ))
    .await;
    kill_at(&mut r, &[5_000, 40_000, 90_000], ROWS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_inside_one_big_copy_loses_no_row() {
    let mut r = running().await;
    // COPY from the server's own program: one statement, one commit.
    r.db.exec(&format!("COPY items (id) FROM PROGRAM 'seq 1 {ROWS}'"))
        .await;
    kill_at(&mut r, &[0, 50_000], ROWS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_open_across_a_restart_arrives_whole() {
    let mut r = running().await;
    let other = Postgres::shared().connect(&r.db.name).await;
    other
        .batch_execute("BEGIN; INSERT INTO items SELECT g, 'long' FROM generate_series(1, 500) g")
        .await
        .expect("begin");
    r.db.exec("INSERT INTO items SELECT g, 'short' FROM generate_series(501, 600) g")
        .await;
    let _ = consume(&r.broker.bootstrap, &r.topic, 100, LONG);
    r.engine.kill9();
    r.engine.restart(ENGINE);
    r.engine.wait_streaming();
    other
        .batch_execute(
            "INSERT INTO items SELECT g, 'long' FROM generate_series(601, 1000) g; COMMIT",
        )
        .await
        .expect("commit");
    r.db.wait_confirmed_all(&r.slot, LONG).await;
    let ids = distinct_ids(&read_to_end(&r.broker.bootstrap, &r.topic));
    assert_eq!(
        ids,
        (1..=1000).collect::<Vec<_>>(),
        "{}",
        r.engine.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_mixed_with_logical_messages_arrive_across_a_kill() {
    let mut r = running().await;
    for batch in 0..20 {
        let from = batch * 50 + 1;
        r.db.exec(&format!(
            "BEGIN;
             INSERT INTO items SELECT g, 'a' FROM generate_series({from}, {}) g;
             SELECT pg_logical_emit_message(true, 'app', 'between rows {batch}');
             INSERT INTO items SELECT g, 'b' FROM generate_series({}, {}) g;
             SELECT pg_logical_emit_message(false, 'app', 'outside {batch}');
             COMMIT;",
            from + 24,
            from + 25,
            from + 49
        ))
        .await;
    }
    kill_at(&mut r, &[1, 300, 700], 1000).await;
    // Every message too, the transactional and the others.
    let mut contents: Vec<String> = read_to_end(&r.broker.bootstrap, &r.messages)
        .iter()
        .filter_map(|m| m.value["message"]["content"].as_str().map(str::to_owned))
        .collect();
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), 40, "{contents:?}");
}
