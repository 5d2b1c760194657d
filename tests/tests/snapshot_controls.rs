//! Snapshot controls (Debezium's signals) against a real PostgreSQL and a
//! real broker: a snapshot of part of a table (`additional-conditions`,
//! checked by PostgreSQL first), paused, kept paused across a kill -9,
//! resumed to its end with only the rows the condition takes; a snapshot
//! stopped and kept stopped across a restart.

use std::collections::BTreeSet;
use std::time::Duration;

use pgkafka_crds::report::{SnapshotState, TableSnapshot};
use pgkafka_tests::{read_to_end, unique, wait_until, Broker, Engine, Manifest, Postgres, TestDb};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(120);
const ROWS: i32 = 200_000;

struct Run {
    db: TestDb,
    broker: Broker,
    engine: Engine,
    slot: String,
    topic: String,
}

/// `items` with `ROWS` rows, a third of them `keep`; snapshots of 100-row
/// chunks on request only.
async fn items() -> Run {
    let db = Postgres::shared().fresh_database().await;
    db.exec(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, kind text NOT NULL);
         INSERT INTO items SELECT g, CASE WHEN g % 3 = 0 THEN 'keep' ELSE 'skip' END
           FROM generate_series(1, {ROWS}) g;"
    ))
    .await;
    let broker = Broker::start();
    let (name, prefix) = (unique("ctl"), unique("ctl"));
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: items")
        .spec(|s| s.snapshot.chunk_size = 100);
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    Run {
        db,
        broker,
        engine,
        slot: format!("{name}_slot"),
        topic: format!("{prefix}.public.items"),
    }
}

fn table(engine: &Engine) -> Option<TableSnapshot> {
    engine
        .status()?
        .snapshot
        .tables
        .into_iter()
        .find(|t| t.table == "public.items")
}

fn post(engine: &Engine, path: &str, body: &str) -> (u16, String) {
    engine
        .http_post(path, body)
        .unwrap_or_else(|| panic!("no answer to POST {path}"))
}

fn wait_state(engine: &Engine, state: SnapshotState) -> TableSnapshot {
    wait_until(LONG, &format!("the snapshot to be {state}"), || {
        table(engine).is_some_and(|t| t.state == state)
    });
    table(engine).unwrap_or_default()
}

/// Once the engine runs again: a change written now arrives, so the
/// session has planned its snapshots by then.
async fn barrier(r: &Run, id: i32) {
    r.db.exec(&format!("INSERT INTO items VALUES ({id}, 'barrier')"))
        .await;
    r.db.wait_confirmed_all(&r.slot, LONG).await;
}

/// Kills the engine, starts it again and waits until it streams.
fn kill_and_restart(engine: &mut Engine) {
    engine.kill9();
    engine.restart(ENGINE);
    engine.wait_streaming();
}

#[tokio::test(flavor = "multi_thread")]
async fn part_of_a_table_paused_across_a_kill_and_resumed_to_its_end() {
    let mut r = items().await;
    let body = r#"{"tables": ["public.items"], "condition": "kind = 'keep'"}"#;
    assert_eq!(post(&r.engine, "/snapshots", body).0, 202);
    wait_until(LONG, "a few chunks", || {
        table(&r.engine).is_some_and(|t| t.rows >= 500)
    });
    assert_eq!(post(&r.engine, "/snapshots/pause", "").0, 202);
    let paused = wait_state(&r.engine, SnapshotState::Paused);
    assert!(paused.rows < (ROWS / 3) as u64, "paused midway: {paused:?}");
    assert_eq!(paused.condition.as_deref(), Some("kind = 'keep'"));

    kill_and_restart(&mut r.engine);
    let after_kill = wait_state(&r.engine, SnapshotState::Paused);
    assert!(after_kill.rows <= paused.rows, "{after_kill:?}");
    barrier(&r, ROWS + 1).await;
    let still = table(&r.engine).unwrap_or_default();
    assert_eq!(
        (still.state, still.rows),
        (SnapshotState::Paused, after_kill.rows),
        "nothing read while paused"
    );

    assert_eq!(post(&r.engine, "/snapshots/resume", "").0, 202);
    let done = wait_state(&r.engine, SnapshotState::Done);
    assert_eq!(done.condition.as_deref(), Some("kind = 'keep'"));
    assert!(done.started_ms.is_some() && done.finished_ms.is_some());
    r.db.wait_confirmed_all(&r.slot, LONG).await;
    let read: BTreeSet<i64> = read_to_end(&r.broker.bootstrap, &r.topic)
        .iter()
        .filter(|c| c.value["op"] == "r")
        .filter_map(|c| c.value["after"]["id"].as_i64())
        .collect();
    let kept: BTreeSet<i64> = (1..=i64::from(ROWS)).filter(|id| id % 3 == 0).collect();
    assert_eq!(read, kept, "every row the condition takes, and only those");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_snapshot_stays_stopped() {
    let mut r = items().await;
    assert_eq!(
        post(&r.engine, "/snapshots", r#"{"tables": ["items"]}"#).0,
        202
    );
    wait_until(LONG, "a few chunks", || {
        table(&r.engine).is_some_and(|t| t.rows >= 500)
    });
    let (code, body) = post(
        &r.engine,
        "/snapshots/stop",
        r#"{"tables": ["public.items"]}"#,
    );
    assert_eq!(code, 202, "{body}");
    let stopped = wait_state(&r.engine, SnapshotState::Stopped);
    assert!(stopped.finished_ms.is_some() && stopped.rows < ROWS as u64);

    kill_and_restart(&mut r.engine);
    let after = wait_state(&r.engine, SnapshotState::Stopped);
    barrier(&r, ROWS + 1).await;
    let still = table(&r.engine).unwrap_or_default();
    assert_eq!(
        (still.state, still.rows),
        (SnapshotState::Stopped, after.rows)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_postgresql_refuses_is_refused_with_its_words() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE items (id int PRIMARY KEY, kind text)")
        .await;
    let broker = Broker::start();
    let (name, prefix) = (unique("ctl"), unique("ctl"));
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: items");
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    for (condition, says) in [
        ("nope > 1", "column \\\"nope\\\" does not exist"),
        ("id + 1", "argument of WHERE must be type boolean"),
        ("kind = 'a", "a string literal is not closed"),
        ("true) OR (true", "closes a parenthesis it did not open"),
        ("true; DELETE FROM items", "`;` is not taken"),
    ] {
        let body = serde_json::json!({"tables": ["public.items"], "condition": condition});
        let (code, answer) = post(&engine, "/snapshots", &body.to_string());
        assert_eq!(code, 400, "{condition}: {answer}");
        assert!(answer.contains(says), "{condition}: {answer}");
    }
    assert_eq!(table(&engine), None, "nothing was asked");
}
