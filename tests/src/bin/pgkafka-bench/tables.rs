//! A thousand tables in one connector (one pattern listener over a schema,
//! `spec.metrics.perTable: false`): start-up, the snapshot of every table
//! against `COPY` of each, then a backlog spread over all of them drained
//! by the engine against `pg_recvlogical` on the same backlog.

use std::process::{Command, Stdio};
use std::time::Instant;

use pgkafka_tests::{many, unique, Broker, Engine, Postgres, TestDb};

use crate::throughput::time_recvlogical;
use crate::util::{slot, Manifest};

/// What the section measured.
pub struct TableFigures {
    pub tables: usize,
    pub rows: usize,
    pub startup_secs: f64,
    pub copy_rows_per_sec: f64,
    pub snapshot_rows_per_sec: f64,
    pub snapshot_rss_kib: u64,
    pub metric_series: usize,
    pub backlog_rows: usize,
    pub recvlogical_rows_per_sec: f64,
    pub streaming_rows_per_sec: f64,
    pub streaming_rss_kib: u64,
    /// The same backlog with every table's changes on one topic.
    pub one_topic_rows_per_sec: f64,
}

/// `COPY` of every table to /dev/null in one psql session: rows/s.
fn copy_all(db: &TestDb, n: usize, rows: usize) -> f64 {
    let script: String = (0..n)
        .map(|i| {
            format!(
                "COPY (SELECT * FROM {}.{}) TO STDOUT;\n",
                many::SCHEMA,
                many::table(i)
            )
        })
        .collect();
    let started = Instant::now();
    let status = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname={}",
            db.port, db.name
        ))
        .args(["-q", "-c", &script])
        .env("PGPASSWORD", pgkafka_tests::PG_PASSWORD)
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "COPY failed: {status}");
    (n * rows) as f64 / started.elapsed().as_secs_f64()
}

pub async fn thousand_tables(
    pg: &Postgres,
    broker: &Broker,
    bin: &std::path::Path,
    rows: usize,
) -> TableFigures {
    let n = 1000;
    let db = pg.fresh_database().await;
    many::create(&db, n, rows).await;
    let copy_rows_per_sec = copy_all(&db, n, rows);
    let (name, prefix) = (unique("bench_many"), unique("bench_many"));
    let m = many::manifest(&name, &db, &broker.bootstrap, &prefix, 2)
        .spec(|s| s.metrics.per_table = false)
        .yaml();
    let started = Instant::now();
    let mut engine = Engine::start(&bin.to_string_lossy(), &m);
    engine.wait_streaming();
    let startup_secs = started.elapsed().as_secs_f64();
    let snapshot_started = Instant::now();
    let watch = many::watch_snapshots(&engine, n, std::time::Duration::from_secs(1800));
    // Every snapshot record acknowledged too.
    while engine.status().is_some_and(|s| s.in_flight.records > 0) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let snapshot_secs = snapshot_started
        .elapsed()
        .as_secs_f64()
        .min(watch.elapsed.as_secs_f64() + 1.0);
    let snapshot_rss_kib = engine.peak_rss_kib().unwrap_or(0);
    let metric_series = engine
        .http_get("/metrics")
        .map(|(_, b)| b.lines().filter(|l| !l.starts_with('#')).count())
        .unwrap_or(0);
    engine.stop();

    // The backlog: a hundred rows in every table, ten tables a transaction.
    let publication = format!("{name}_pub");
    db.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        slot(&db, "tpl")
    ))
    .await;
    let backlog_rows = n * 100;
    db.exec(&format!(
        "DO $$ BEGIN
           FOR i IN 0..{last} LOOP
             EXECUTE format('INSERT INTO {schema}.%I SELECT g, ''backlog'' FROM generate_series(1000001, 1000100) g',
                            't' || lpad(i::text, 4, '0'));
             IF i % 10 = 9 THEN COMMIT; END IF;
           END LOOP;
         END $$;",
        last = n - 1,
        schema = many::SCHEMA,
    ))
    .await;
    db.exec(pgkafka_tests::FLUSH_COMMITS).await;
    let end: String = db
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn")
        .get(0);
    let recv_secs = time_recvlogical(&db, &publication, &end).await;
    let (streaming_secs, streaming_rss_kib) =
        drain(&db, broker, bin, (&publication, None), n / 10).await;
    let one_topic = unique("bench_one");
    let (one_topic_secs, _) =
        drain(&db, broker, bin, (&publication, Some(&one_topic)), n / 10).await;
    crate::util::drop_slot(&db, "tpl").await;
    TableFigures {
        tables: n,
        rows,
        startup_secs,
        copy_rows_per_sec,
        snapshot_rows_per_sec: (n * rows) as f64 / snapshot_secs,
        snapshot_rss_kib,
        metric_series,
        backlog_rows,
        recvlogical_rows_per_sec: backlog_rows as f64 / recv_secs,
        streaming_rows_per_sec: backlog_rows as f64 / streaming_secs,
        streaming_rss_kib,
        one_topic_rows_per_sec: backlog_rows as f64 / one_topic_secs,
    }
}

/// The engine on a copy of the template slot until it decoded
/// `transactions` and every record is acknowledged: seconds, peak RSS.
/// `topic`: every table's changes there instead of a topic each.
async fn drain(
    db: &TestDb,
    broker: &Broker,
    bin: &std::path::Path,
    (publication, topic): (&str, Option<&str>),
    transactions: usize,
) -> (f64, u64) {
    db.exec(&format!(
        "SELECT pg_copy_logical_replication_slot('{}', '{}')",
        slot(db, "tpl"),
        slot(db, "drain")
    ))
    .await;
    let targets = topic.map_or(String::new(), |t| format!(", targets: [{{topic: {t}}}]"));
    let listeners = format!(
        "[{{tables: {{schemas: [{}]}}{targets}}}]\n  metrics: {{perTable: false}}",
        many::SCHEMA
    );
    let manifest = Manifest {
        db,
        broker,
        publication,
        slot: slot(db, "drain"),
        slot_exists: true,
        topic_prefix: unique("bench_drain"),
        kafka_extra: "",
        snapshot: "never",
        listeners: &listeners,
    };
    // Timed from streaming on: start-up (1,000 tables checked, their
    // topics described) is its own figure.
    let secrets = [("pg/password", pgkafka_tests::PG_PASSWORD)];
    let mut engine = Engine::start_with_secrets(&bin.to_string_lossy(), &manifest.yaml(), &secrets);
    engine.wait_streaming();
    let started = Instant::now();
    while !engine
        .status()
        .is_some_and(|s| s.counters.transactions >= transactions as u64 && s.in_flight.records == 0)
    {
        assert!(
            started.elapsed().as_secs() < 1800,
            "drain too slow:\n{}",
            engine.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let result = (
        started.elapsed().as_secs_f64(),
        engine.peak_rss_kib().unwrap_or(0),
    );
    engine.stop();
    crate::util::drop_slot(db, "drain").await;
    result
}
