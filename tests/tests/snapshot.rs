//! Snapshots against a real PostgreSQL and a real broker: existing rows
//! arrive as `op: r` while the stream goes on, and a consumer applying the
//! topic in order ends with exactly the table, whatever was written
//! meanwhile; a kill -9 resumes from the last chunk; the slot keeps moving.

use std::collections::BTreeMap;
use std::time::Duration;

use pgkafka_crds::report::SnapshotState;
use pgkafka_tests::{
    manifest, read_to_end, unique, wait_for, Broker, Consumed, Engine, Manifest, Postgres, TestDb,
};
use serde_json::Value;

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(120);

/// What a consumer that upserts by key and deletes on `d` ends with.
fn apply(records: &[Consumed]) -> BTreeMap<i64, Value> {
    let mut table = BTreeMap::new();
    for r in records {
        let v = &r.value;
        match v["op"].as_str() {
            Some("c" | "u" | "r") => {
                if let Some(id) = v["after"]["id"].as_i64() {
                    table.insert(id, v["after"].clone());
                }
            }
            Some("d") => {
                if let Some(id) = v["before"]["id"].as_i64() {
                    table.remove(&id);
                }
            }
            _ => {}
        }
    }
    table
}

/// The table as PostgreSQL holds it, rendered as the engine renders it.
async fn content(db: &TestDb, table: &str) -> BTreeMap<i64, Value> {
    db.client
        .query(&format!("SELECT id, v, n FROM {table}"), &[])
        .await
        .expect("table content")
        .iter()
        .map(|row| {
            let id: i32 = row.get(0);
            let v: Option<String> = row.get(1);
            let n: Option<i32> = row.get(2);
            (i64::from(id), serde_json::json!({"id": id, "v": v, "n": n}))
        })
        .collect()
}

/// Waits until the slot confirmed everything written so far, then reads
/// the topic to its end: nothing can be missing or still coming.
async fn settled(db: &TestDb, slot: &str, broker: &Broker, topic: &str) -> Vec<Consumed> {
    db.wait_confirmed_all(slot, LONG).await;
    read_to_end(&broker.bootstrap, topic)
}

/// Writes (updates, deletes, inserts) against `table` until told to stop.
fn writer(
    db_name: String,
    table: String,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<u64>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let client = Postgres::shared().connect(&db_name).await;
        let mut n = 0u64;
        let mut next_id = 1_000_000;
        while stopped.try_recv().is_err() {
            let id = (n * 7919 % 200_000) as i32 + 1;
            let sql = match n % 4 {
                0 => format!("UPDATE {table} SET v = 'w{n}', n = n + 1 WHERE id = {id}"),
                1 => format!("DELETE FROM {table} WHERE id = {}", id + 1),
                2 => {
                    next_id += 1;
                    format!("INSERT INTO {table} VALUES ({next_id}, 'new{n}', 0)")
                }
                _ => format!("UPDATE {table} SET v = NULL WHERE id = {}", id + 2),
            };
            client.batch_execute(&sql).await.expect("writer statement");
            n += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        n
    });
    (stop, task)
}

/// A manifest (which streams only) with snapshots on, `chunk` rows each.
fn with_snapshots(m: Manifest, chunk: u32) -> String {
    m.snapshots(chunk).yaml()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_under_writes_and_a_kill_9_ends_with_exactly_the_table() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, v text, n int);
         INSERT INTO big SELECT g, md5(g::text), g FROM generate_series(1, 200000) g;",
    )
    .await;
    let (name, prefix) = (unique("snap"), unique("snap"));
    let slot = format!("{name}_slot");
    let topic = format!("{prefix}.public.big");
    let chunk = 5_000;
    let yaml = with_snapshots(
        Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: big"),
        chunk,
    );
    let mut engine = Engine::start(ENGINE, &yaml);
    engine.wait_streaming();
    let (stop, writes) = writer(db.name.clone(), "big".into());

    // Some chunks in, the slot moving while the snapshot runs, then a crash.
    let flushed_at_start = db.confirmed_flush(&slot).await;
    wait_for(LONG, "a few chunks", || async {
        engine
            .snapshot_of("public.big")
            .is_some_and(|(state, rows)| state == SnapshotState::Running && rows >= 30_000)
    })
    .await;
    wait_for(LONG, "the slot to advance during the snapshot", || async {
        db.confirmed_flush(&slot).await > flushed_at_start
    })
    .await;
    assert!(
        engine
            .snapshot_of("public.big")
            .is_some_and(|(s, _)| s == SnapshotState::Running),
        "the slot advanced while the snapshot was still running"
    );
    let rows_before_kill = engine.snapshot_of("public.big").map_or(0, |(_, r)| r);
    engine.kill9();
    engine.restart(ENGINE);
    engine.wait_streaming();
    wait_for(LONG, "the snapshot to finish", || async {
        engine
            .snapshot_of("public.big")
            .is_some_and(|(s, _)| s == SnapshotState::Done)
    })
    .await;
    let _ = stop.send(());
    let written = writes.await.expect("writer");
    assert!(
        written > 100,
        "the writer ran throughout ({written} statements)"
    );

    let records = settled(&db, &slot, &broker, &topic).await;
    let expected = content(&db, "big").await;
    let got = apply(&records);
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, row)| got.get(id) != Some(row))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "rows differ, e.g. {wrong:?} (log:\n{})",
        engine.log_text()
    );
    assert_eq!(got.len(), expected.len(), "no stale row left behind");

    // Resumed, not restarted: rows read twice are about the chunks in flight.
    let mut reads: BTreeMap<i64, usize> = BTreeMap::new();
    for r in records.iter().filter(|r| r.value["op"] == "r") {
        assert_eq!(r.value["source"]["snapshot"], "incremental");
        *reads
            .entry(r.value["after"]["id"].as_i64().unwrap_or(0))
            .or_default() += 1;
    }
    let twice = reads.values().filter(|&&n| n > 1).count();
    assert!(
        twice <= 2 * chunk as usize,
        "{twice} rows read twice after a crash at {rows_before_kill} rows (chunk {chunk})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_added_later_is_snapshotted_while_the_others_stream() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE TABLE a (id int PRIMARY KEY, v text, n int);
         CREATE TABLE b (id int PRIMARY KEY, v text, n int);
         INSERT INTO b SELECT g, 'b' || g, g FROM generate_series(1, 3000) g;",
    )
    .await;
    let (name, prefix) = (unique("later"), unique("later"));
    let only_a = with_snapshots(
        Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: a"),
        500,
    );
    let mut engine = Engine::start(ENGINE, &only_a);
    engine.wait_streaming();
    db.exec("INSERT INTO a VALUES (1, 'a1', 1)").await;
    engine.stop();
    let both = with_snapshots(
        Manifest::new(
            &name,
            &db,
            &broker.bootstrap,
            &prefix,
            "    - table: a\n    - table: b",
        ),
        500,
    );
    engine.rewrite(&both);
    engine.restart(ENGINE);
    engine.wait_streaming();
    db.exec("INSERT INTO a VALUES (2, 'a2', 2)").await;
    wait_for(LONG, "b's snapshot", || async {
        engine
            .snapshot_of("public.b")
            .is_some_and(|(s, rows)| s == SnapshotState::Done && rows == 3000)
    })
    .await;
    let slot = format!("{name}_slot");
    let b = apply(&settled(&db, &slot, &broker, &format!("{prefix}.public.b")).await);
    assert_eq!(b, content(&db, "b").await, "b's existing rows arrived");
    let a = apply(&read_to_end(
        &broker.bootstrap,
        &format!("{prefix}.public.a"),
    ));
    assert_eq!(
        a.keys().copied().collect::<Vec<_>>(),
        [1, 2],
        "a kept streaming"
    );
    assert_eq!(
        engine.snapshot_of("public.a").map(|(s, _)| s),
        Some(SnapshotState::Done),
        "a was snapshotted once, when the connector first saw it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn post_snapshots_resends_filtered_selected_and_opted_out_as_asked() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int);
         INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 100) g;",
    )
    .await;
    let (name, prefix) = (unique("post"), unique("post"));
    let listeners = format!(
        "    - table: t
      targets:
        - {{topic: {prefix}.all}}
        - {{topic: {prefix}.big, columns: {{include: [id]}}, filter: {{conditions: [{{field: new.n, operator: '>', value: 90}}]}}}}
        - {{topic: {prefix}.changes, snapshot: false}}"
    );
    let yaml = manifest(&name, &db, &broker.bootstrap, &prefix, &listeners);
    let mut engine = Engine::start(ENGINE, &yaml);
    engine.wait_streaming();
    assert_eq!(
        engine.snapshot_of("public.t"),
        None,
        "mode never: nothing read"
    );

    let (code, body) = engine
        .http_post("/snapshots", r#"{"tables": ["public.nope"]}"#)
        .expect("answer");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("public.nope is not a listened table"),
        "{body}"
    );
    let (code, body) = engine
        .http_post("/snapshots", r#"{"tables": ["t"]}"#)
        .expect("answer");
    assert_eq!(code, 202, "{body}");
    wait_for(LONG, "the requested snapshot", || async {
        engine
            .snapshot_of("public.t")
            .is_some_and(|(s, rows)| s == SnapshotState::Done && rows == 100)
    })
    .await;
    db.exec("INSERT INTO t VALUES (101, 'after', 101)").await;
    let slot = format!("{name}_slot");
    let all = settled(&db, &slot, &broker, &format!("{prefix}.all")).await;
    assert_eq!(all.iter().filter(|r| r.value["op"] == "r").count(), 100);
    let big = read_to_end(&broker.bootstrap, &format!("{prefix}.big"));
    let big_reads: Vec<&Value> = big
        .iter()
        .filter(|r| r.value["op"] == "r")
        .map(|r| &r.value["after"])
        .collect();
    assert_eq!(big_reads.len(), 10, "the filter applies to snapshot rows");
    assert!(
        big_reads
            .iter()
            .all(|a| a.as_object().is_some_and(|o| o.len() == 1)),
        "only id: {big_reads:?}"
    );
    let changes = read_to_end(&broker.bootstrap, &format!("{prefix}.changes"));
    assert!(
        changes.iter().all(|r| r.value["op"] != "r"),
        "the opted-out target gets no snapshot row"
    );
    assert_eq!(changes.len(), 1, "but it gets the change");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_a_key_is_refused_at_start_up_naming_it_and_the_fix() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE nokey (id int, v text)").await;
    let (name, prefix) = (unique("nokey"), unique("nokey"));
    let yaml = with_snapshots(
        Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: nokey"),
        1000,
    );
    let mut engine = Engine::start(ENGINE, &yaml);
    let (code, log) = engine.wait_exit(LONG);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("\"public\".\"nokey\" has no primary key"),
        "{log}"
    );
    assert!(log.contains("keyColumns"), "{log}");
    // keyColumns that are not unique are refused too.
    let yaml = with_snapshots(
        Manifest::new(
            &name,
            &db,
            &broker.bootstrap,
            &prefix,
            "    - table: nokey\n      keyColumns: [id]",
        ),
        1000,
    );
    let mut engine = Engine::start(ENGINE, &yaml);
    let (code, log) = engine.wait_exit(LONG);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("must be NOT NULL and have a unique index"),
        "{log}"
    );
}
