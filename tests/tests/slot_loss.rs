//! A slot that lost changes is never recreated silently: the engine keeps
//! its own record of what it delivered (a compacted topic) and compares the
//! slot with it at every start. Real PostgreSQL, real broker; the engine as
//! a process.

use std::collections::BTreeSet;
use std::time::Duration;

use pgkafka_crds::SlotLossPolicy;
use pgkafka_tests::{read_to_end, unique, Broker, Engine, Manifest, Postgres, TestDb};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

/// One connector on `orders` that streamed rows 1..=3 and was stopped.
struct Delivered {
    db: TestDb,
    broker: Broker,
    manifest: Manifest,
    slot: String,
    topic: String,
}

async fn delivered_then_stopped() -> Delivered {
    delivered_then_stopped_on(Postgres::shared()).await
}

async fn delivered_then_stopped_on(pg: &Postgres) -> Delivered {
    let db = pg.fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        .await;
    let (name, prefix) = (unique("loss"), unique("loss"));
    let manifest = Manifest::new(
        &name,
        &db,
        &broker.bootstrap,
        &prefix,
        "    - table: orders",
    );
    let mut engine = Engine::start(ENGINE, &manifest.yaml());
    engine.wait_streaming();
    db.exec("INSERT INTO orders SELECT g, 'before' FROM generate_series(1, 3) g")
        .await;
    let slot = format!("{name}_slot");
    db.wait_confirmed_all(&slot, LONG).await;
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());
    Delivered {
        db,
        broker,
        manifest,
        slot,
        topic: format!("{prefix}.public.orders"),
    }
}

/// Starts the engine with `onLoss: recreate`, writes row `id` and returns
/// what the topic holds once the slot confirmed it.
async fn recreate_then_write(d: &Delivered, id: i32) -> Vec<pgkafka_tests::Consumed> {
    let recreate = d
        .manifest
        .clone()
        .spec(|s| s.slot.on_loss = SlotLossPolicy::Recreate);
    let mut engine = Engine::start(ENGINE, &recreate.yaml());
    engine.wait_streaming();
    d.db.exec(&format!("INSERT INTO orders VALUES ({id}, 'after')"))
        .await;
    d.db.wait_confirmed_all(&d.slot, LONG).await;
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());
    read_to_end(&d.broker.bootstrap, &d.topic)
}

fn ids(records: &[pgkafka_tests::Consumed], op: &str) -> BTreeSet<i64> {
    records
        .iter()
        .filter(|r| r.value["op"] == op)
        .filter_map(|r| r.value["after"]["id"].as_i64())
        .collect()
}

async fn slot_exists(db: &TestDb, slot: &str) -> bool {
    db.client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("query slots")
        .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_slot_is_refused_naming_it_and_the_delivered_position() {
    let d = delivered_then_stopped().await;
    d.db.exec(&format!("SELECT pg_drop_replication_slot('{}')", d.slot))
        .await;
    d.db.exec("INSERT INTO orders VALUES (4, 'gap'), (5, 'gap')")
        .await;
    let mut engine = Engine::start(ENGINE, &d.manifest.yaml());
    let halted = engine.wait_halted(LONG);
    assert!(
        halted.contains(&format!("{:?} does not exist", d.slot))
            && halted.contains("delivered changes through it up to")
            && halted.contains("spec.slot.onLoss"),
        "{halted}"
    );
    assert!(
        engine
            .http_get("/readyz")
            .is_some_and(|(code, _)| code != 200),
        "not ready while refusing"
    );
    assert!(
        !slot_exists(&d.db, &d.slot).await,
        "no slot was created at 'now'"
    );
    let (code, log) = engine.wait_exit(LONG);
    assert_eq!(code, Some(1), "{log}");
}

/// PostgreSQL itself invalidates the slot (past `max_slot_wal_keep_size`,
/// at a checkpoint): refused under `fail`; `recreate` drops and creates it
/// and streams on.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_postgresql_invalidated_is_refused_and_recreate_streams_on() {
    // A cluster of its own: the limit holds for every slot of a cluster.
    let pg = Postgres::start("logical");
    let d = delivered_then_stopped_on(&pg).await;
    d.db.exec("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        .await;
    d.db.exec("SELECT pg_reload_conf()").await;
    for n in 0..4 {
        d.db.exec(&format!("INSERT INTO orders VALUES ({}, 'gap')", 10 + n))
            .await;
        d.db.exec("SELECT pg_switch_wal()").await;
    }
    d.db.exec("CHECKPOINT").await;
    let status: Option<String> =
        d.db.client
            .query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
                &[&d.slot],
            )
            .await
            .expect("slot")
            .get(0);
    assert_eq!(status.as_deref(), Some("lost"), "PostgreSQL invalidated it");

    let mut engine = Engine::start(ENGINE, &d.manifest.yaml());
    let halted = engine.wait_halted(LONG);
    assert!(
        halted.contains(&format!(
            "slot {:?} is invalidated (wal_status = lost)",
            d.slot
        )) && halted.contains("delivered changes through it up to"),
        "{halted}"
    );
    assert_eq!(engine.stop(), Some(1), "a halted engine exits failed");

    let records = recreate_then_write(&d, 20).await;
    assert_eq!(
        ids(&records, "c"),
        BTreeSet::from([1, 2, 3, 20]),
        "rows 10-13 are the gap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recreate_accepts_the_gap_and_resnapshot_sends_every_row_again() {
    let d = delivered_then_stopped().await;
    d.db.exec(&format!("SELECT pg_drop_replication_slot('{}')", d.slot))
        .await;
    d.db.exec("INSERT INTO orders VALUES (4, 'gap')").await;
    // recreate: streams on from a new slot; row 4 is the accepted gap.
    let records = recreate_then_write(&d, 5).await;
    assert_eq!(
        ids(&records, "c"),
        BTreeSet::from([1, 2, 3, 5]),
        "row 4 is the gap"
    );

    // resnapshot: the slot is gone again; a new one, and every row as `r`.
    d.db.exec(&format!("SELECT pg_drop_replication_slot('{}')", d.slot))
        .await;
    d.db.exec("INSERT INTO orders VALUES (6, 'gap')").await;
    let resnapshot = d
        .manifest
        .clone()
        .spec(|s| s.slot.on_loss = SlotLossPolicy::Resnapshot);
    let mut engine = Engine::start(ENGINE, &resnapshot.yaml());
    engine.wait_streaming();
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let status = engine.status().expect("/status");
        let table = status
            .snapshot
            .tables
            .iter()
            .find(|t| t.table == "public.orders");
        if let Some(t) = table.filter(|t| t.state == pgkafka_crds::report::SnapshotState::Done) {
            let reason = t.reason.clone().unwrap_or_default();
            assert!(reason.contains("slot lost changes"), "{t:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no resnapshot: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.db.wait_confirmed_all(&d.slot, LONG).await;
    let records = read_to_end(&d.broker.bootstrap, &d.topic);
    assert_eq!(
        ids(&records, "r"),
        BTreeSet::from([1, 2, 3, 4, 5, 6]),
        "every existing row again, the gap's rows among them"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_moved_past_what_was_delivered_is_refused() {
    let d = delivered_then_stopped().await;
    d.db.exec("INSERT INTO orders VALUES (4, 'skipped')").await;
    let target = d.db.current_wal().await;
    d.db.exec(&format!(
        "SELECT pg_replication_slot_advance('{}', '{}'::pg_lsn)",
        d.slot,
        lsn_text(target)
    ))
    .await;
    let engine = Engine::start(ENGINE, &d.manifest.yaml());
    let halted = engine.wait_halted(LONG);
    assert!(
        halted.contains("something else moved it past what reached Kafka"),
        "{halted}"
    );
}

fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[tokio::test(flavor = "multi_thread")]
async fn another_cluster_behind_the_address_is_refused_naming_both_identifiers() {
    let d = delivered_then_stopped().await;
    // A different cluster with the same database, table and slot name.
    let other = Postgres::start("logical");
    other
        .connect("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {}", d.db.name))
        .await
        .expect("database");
    let twin = other.connect(&d.db.name).await;
    twin.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        .await
        .expect("table");
    let moved = d.manifest.clone().spec(|s| s.postgres.port = other.port);
    let engine = Engine::start(ENGINE, &moved.yaml());
    let halted = engine.wait_halted(LONG);
    assert!(
        halted.contains("this is another cluster") && halted.contains("system identifier"),
        "{halted}"
    );
    let slots = twin
        .query_opt("SELECT 1 FROM pg_replication_slots", &[])
        .await
        .expect("slots");
    assert!(slots.is_none(), "nothing was created on the other cluster");
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_slots_are_refused_before_postgresql_17_naming_the_field() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE orders (id int PRIMARY KEY)").await;
    let m = Manifest::new(
        &unique("fo"),
        &db,
        &broker.bootstrap,
        &unique("fo"),
        "    - table: orders",
    )
    .spec(|s| s.slot.failover = true);
    let mut engine = Engine::start(ENGINE, &m.yaml());
    let (code, log) = engine.wait_exit(LONG);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(
            "spec.slot.failover: failover slots need PostgreSQL 17 or later; this server is 15."
        ),
        "{log}"
    );
}
