//! A thousand tables in one connector, on a real PostgreSQL and Tansu: one
//! pattern listener over a schema; every table snapshotted with
//! `maxConcurrentTables` respected; then a change on every table arrives,
//! each on its own topic and all of them on one. `PGKAFKA_MANY_TABLES`
//! sets the count (the benchmark measures the same with figures).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgkafka_tests::{consume, many, unique, Broker, Engine, Postgres};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(300);
const ROWS: usize = 10;
const CONCURRENT: u32 = 4;

fn count() -> usize {
    std::env::var("PGKAFKA_MANY_TABLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// The distinct `source.table` of `records` with `op`.
fn tables_with(records: &[pgkafka_tests::Consumed], op: &str) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.value["op"] == op)
        .filter_map(|r| r.value["source"]["table"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_tables_are_snapshotted_and_streamed_by_one_pattern_listener() {
    let n = count();
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    many::create(&db, n, ROWS).await;
    let (name, prefix) = (unique("many"), unique("many"));
    let m = many::manifest(&name, &db, &broker.bootstrap, &prefix, CONCURRENT)
        .spec(|s| s.metrics.per_table = false)
        .yaml();
    // The snapshot reader's connections, sampled while it reads: one per
    // table read at once, never more than maxConcurrentTables.
    let most = Arc::new(AtomicI64::new(0));
    let sampler = {
        let client = Postgres::shared().connect(&db.name).await;
        let (app, most) = (format!("pgkafka-{name}-snapshot"), Arc::clone(&most));
        tokio::spawn(async move {
            let sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
            while let Ok(row) = client.query_one(sql, &[&app]).await {
                most.fetch_max(row.get(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    let startup = started.elapsed();
    let watch = many::watch_snapshots(&engine, n, LONG);
    sampler.abort();
    let connections = most.load(Ordering::Relaxed);
    eprintln!("{n} tables: streaming after {startup:?}; snapshots {watch:?}; at most {connections} reader connections");
    assert!(
        (1..=i64::from(CONCURRENT)).contains(&connections),
        "{connections} snapshot connections at once, maxConcurrentTables {CONCURRENT}"
    );
    assert_eq!(watch.rows, (n * ROWS) as u64);
    let status = engine.status().expect("status");
    assert_eq!(status.tables.count, n as u64);
    assert_eq!(status.tables.names.len(), 20, "the first 20 names");
    assert_eq!(status.tables.names[0], "many.t0000");

    let all = format!("{prefix}.all");
    let read = consume(&broker.bootstrap, &all, n * ROWS, LONG);
    assert_eq!(tables_with(&read, "r").len(), n, "every table's snapshot");

    many::touch_all(&db, n, 1_000_000).await;
    let read = consume(&broker.bootstrap, &all, n * ROWS + n, LONG);
    let changed = tables_with(&read, "c");
    assert_eq!(changed.len(), n, "a change on every table");
    for i in [0, n / 2, n - 1] {
        let topic = format!("{prefix}.{}.{}", many::SCHEMA, many::table(i));
        let own = consume(&broker.bootstrap, &topic, ROWS + 1, LONG);
        assert_eq!(own.len(), ROWS + 1, "{topic}");
        assert_eq!(
            own.last().map(|r| r.value["after"]["id"].clone()),
            Some(1_000_000.into())
        );
    }
    // perTable: false: the pattern listener's tables share its series.
    let metrics = engine
        .http_get("/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let series: Vec<&str> = metrics.lines().filter(|l| !l.starts_with('#')).collect();
    eprintln!(
        "{n} tables: rss {:?} KiB, {} metric series",
        engine.rss_kib(),
        series.len()
    );
    assert!(series.len() < 150, "{} series:\n{metrics}", series.len());
    let own_topics = format!(
        r#"pgkafka_target_records_total{{connector="{name}",table="listeners[0]",topic="{prefix}.${{schema}}.${{table}}"}}"#
    );
    let value = series
        .iter()
        .find_map(|l| l.strip_prefix(own_topics.as_str()))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(
        value,
        Some((n * ROWS + n) as u64),
        "{own_topics} in\n{metrics}"
    );
    assert_eq!(engine.stop(), Some(0));
}
