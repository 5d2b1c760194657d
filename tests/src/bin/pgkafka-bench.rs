//! `pgkafka-bench`: the engine's throughput against PostgreSQL's own
//! `pg_recvlogical` on the same backlog, in the same run.
//!
//! For each scenario a backlog is written once after a template slot was
//! created; each contender gets a copy of that slot, so both decode exactly the
//! same WAL. `pg_recvlogical` writes pgoutput to /dev/null; the engine decodes,
//! builds Debezium JSON and waits for Kafka's acks=all on every record.
//!
//! The 1M-row table is also snapshotted (acks=all until every record is
//! acknowledged), against `COPY (SELECT ...) TO STDOUT` of the same table
//! and against the engine streaming the same rows from the WAL.
//!
//! Run with `tests/dev-env.sh bench` (release build). Prints rows/s of each,
//! their ratio, and the engine's peak RSS.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgkafka_tests::{Broker, Engine, Postgres, TestDb};

struct Scenario {
    name: &'static str,
    rows: u64,
    transactions: u64,
    /// Also run the engine with three filtered targets, and snapshot the
    /// table the backlog filled.
    filtered_comparison: bool,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "1,000,000 rows in 100 transactions",
        rows: 1_000_000,
        transactions: 100,
        filtered_comparison: true,
    },
    Scenario {
        name: "100,000 one-row transactions",
        rows: 100_000,
        transactions: 100_000,
        filtered_comparison: false,
    },
];

fn engine_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.with_file_name("pgkafka-connector")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // Each contender drains its own copy of the slot this many times and the
    // medians are reported: a 2-core machine shared with the database and the
    // broker is noisy.
    let runs: usize = args
        .iter()
        .skip_while(|a| *a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let pg = Postgres::start("logical");
    let broker = Broker::start();
    let bin = engine_binary();
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p pgkafka-connector",
        bin.display()
    );
    println!(
        "pgkafka benchmark (engine: {}), medians of {runs} runs",
        bin.display()
    );
    println!(
        "{:<40} {:>14} {:>14} {:>6} {:>12} {:>10}",
        "scenario", "pg_recvlogical", "engine", "ratio", "ratio range", "engine RSS"
    );
    for s in SCENARIOS {
        let scale = if quick { 10 } else { 1 };
        let (rows, txs) = (s.rows / scale, (s.transactions / scale).max(1));
        let db = pg.fresh_database().await;
        let end_lsn = load_backlog(&db, rows, txs).await;
        let (mut base_rates, mut engine_rates, mut ratios, mut rss_kib) =
            (vec![], vec![], vec![], 0);
        for _ in 0..runs {
            let baseline = rows as f64 / time_recvlogical(&db, &end_lsn);
            let (engine_secs, rss) = time_engine(&db, &broker, &bin, txs, PLAIN).await;
            let engine = rows as f64 / engine_secs;
            // The copies hold WAL: drop them before the next run.
            for role in ["recv", "engine"] {
                drop_slot(&db, role).await;
            }
            eprintln!("  run: pg_recvlogical {baseline:.0} r/s, engine {engine:.0} r/s");
            base_rates.push(baseline);
            engine_rates.push(engine);
            ratios.push(engine / baseline);
            rss_kib = rss_kib.max(rss);
        }
        // The cost of routing: three filtered targets against one plain one.
        let mut filtered_rates = Vec::new();
        if s.filtered_comparison {
            for _ in 0..runs {
                let (secs, rss) = time_engine(&db, &broker, &bin, txs, FILTERED).await;
                drop_slot(&db, "engine").await;
                eprintln!(
                    "  run: engine with three filtered targets {:.0} r/s",
                    rows as f64 / secs
                );
                filtered_rates.push(rows as f64 / secs);
                rss_kib = rss_kib.max(rss);
            }
        }
        let snapshot = if s.filtered_comparison {
            Some(snapshot_scenario(&db, &broker, &bin, rows, runs).await)
        } else {
            None
        };
        drop_slot(&db, "tpl").await;
        let (lo, hi) = (min(&ratios), max(&ratios));
        let label = if quick {
            format!("{} /{scale}", s.name)
        } else {
            s.name.to_owned()
        };
        println!(
            "{label:<40} {:>10.0} r/s {:>10.0} r/s {:>6.2} {lo:>5.2}-{hi:<6.2} {:>6} MiB",
            median(&mut base_rates),
            median(&mut engine_rates),
            median(&mut ratios),
            rss_kib / 1024
        );
        if !filtered_rates.is_empty() {
            let filtered = median(&mut filtered_rates);
            println!(
                "{:<40} {:>14} {:>10.0} r/s {:>6.2} (of one plain target)",
                "  same, three filtered targets",
                "",
                filtered,
                filtered / median(&mut engine_rates)
            );
        }
        if let Some((copy, snap, rss)) = snapshot {
            let streaming = median(&mut engine_rates);
            println!(
                "{:<40} {:>10.0} r/s {:>10.0} r/s {:>6.2} (of streaming {streaming:.0} r/s; COPY is the first column) {:>6} MiB",
                "  snapshot of the same table",
                copy,
                snap,
                snap / streaming,
                rss / 1024
            );
        }
    }
}

/// The table the backlog filled, snapshotted into the broker (acks=all,
/// until every record is acknowledged), against `COPY (SELECT ...) TO
/// STDOUT` of the same table into /dev/null. Medians of `runs`: COPY rows/s,
/// snapshot rows/s, the snapshot's peak RSS (KiB).
async fn snapshot_scenario(
    db: &TestDb,
    broker: &Broker,
    bin: &std::path::Path,
    rows: u64,
    runs: usize,
) -> (f64, f64, u64) {
    let (mut copies, mut snaps, mut rss_kib) = (vec![], vec![], 0);
    for run in 0..runs {
        let started = Instant::now();
        let status = Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres dbname={}",
                db.port, db.name
            ))
            .args(["-q", "-c", "COPY (SELECT * FROM bench) TO STDOUT"])
            .env("PGPASSWORD", pgkafka_tests::PG_PASSWORD)
            .stdout(Stdio::null())
            .status()
            .expect("run psql");
        assert!(status.success(), "COPY failed: {status}");
        copies.push(rows as f64 / started.elapsed().as_secs_f64());
        let (secs, rss) = time_snapshot(db, broker, bin, rows, run).await;
        drop_slot(db, "snap").await;
        eprintln!(
            "  run: COPY {:.0} r/s, snapshot {:.0} r/s",
            copies[run],
            rows as f64 / secs
        );
        snaps.push(rows as f64 / secs);
        rss_kib = rss_kib.max(rss);
    }
    (median(&mut copies), median(&mut snaps), rss_kib)
}

/// Runs the engine with a new slot and `snapshot: initial` until the table's
/// snapshot is done and Kafka acknowledged every record.
async fn time_snapshot(
    db: &TestDb,
    broker: &Broker,
    bin: &std::path::Path,
    rows: u64,
    run: usize,
) -> (f64, u64) {
    let manifest = format!(
        r#"apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata: {{name: bench}}
spec:
  postgres: {{host: 127.0.0.1, port: {port}, database: {db}, user: postgres,
             passwordSecretRef: {{name: pg, key: password}}, sslMode: disable}}
  publication: {{name: bench_pub, create: false}}
  slot: {{name: {slot}}}
  kafka: {{bootstrapServers: ["{bootstrap}"], topicPrefix: {db}_snap{run}}}
  snapshot: {{mode: initial}}
  listeners: [{{table: bench}}]
"#,
        port = db.port,
        db = db.name,
        bootstrap = broker.bootstrap,
        slot = slot(db, "snap"),
    );
    run_until(bin, &manifest, |engine, status| {
        let done = engine
            .snapshot_of("public.bench")
            .is_some_and(|(state, sent)| state == "done" && sent >= rows);
        done && status["inFlight"]["records"] == 0
    })
    .await
}

async fn drop_slot(db: &TestDb, role: &str) {
    db.exec(&format!(
        "SELECT pg_drop_replication_slot('{}')",
        slot(db, role)
    ))
    .await;
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// Creates the table, the publication and a template slot, then writes the
/// backlog; returns the WAL position after it.
async fn load_backlog(db: &TestDb, rows: u64, transactions: u64) -> String {
    db.exec(
        "CREATE TABLE bench (id bigint PRIMARY KEY, customer text, amount numeric(12,2), qty int,
                             status text, created timestamptz, note text);
         CREATE PUBLICATION bench_pub FOR TABLE bench;",
    )
    .await;
    // Its own statement: a slot cannot be created in a transaction that wrote.
    db.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        slot(db, "tpl")
    ))
    .await;
    let per_tx = rows / transactions;
    let started = Instant::now();
    for t in 0..transactions {
        let (from, to) = (t * per_tx + 1, (t + 1) * per_tx);
        // About 150 bytes per row, as in the environment's measurements.
        db.exec(&format!(
            "INSERT INTO bench SELECT g, 'customer-' || g, g % 10000 / 100.0, g % 7, 'pending',
                    '2024-01-01'::timestamptz + g * interval '1 second', md5(g::text) || md5((g+1)::text)
               FROM generate_series({from}, {to}) g"
        ))
        .await;
    }
    eprintln!(
        "  backlog: {rows} rows in {transactions} transactions written in {:.1?}",
        started.elapsed()
    );
    let row = db
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn");
    row.get(0)
}

/// Slots are per cluster: name them after the database.
fn slot(db: &TestDb, role: &str) -> String {
    format!("{}_{role}", db.name)
}

async fn copy_slot(db: &TestDb, role: &str) {
    let (template, copy) = (slot(db, "tpl"), slot(db, role));
    db.exec(&format!(
        "SELECT pg_copy_logical_replication_slot('{template}', '{copy}')"
    ))
    .await;
}

fn time_recvlogical(db: &TestDb, end_lsn: &str) -> f64 {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| rt.block_on(copy_slot(db, "recv")));
    let started = Instant::now();
    let status = Command::new("pg_recvlogical")
        .args([
            "-d",
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={}",
                db.port, db.name
            ),
        ])
        .args([
            "-S",
            &slot(db, "recv"),
            "--start",
            "-P",
            "pgoutput",
            "-o",
            "proto_version=1",
        ])
        .args([
            "-o",
            "publication_names=bench_pub",
            "--no-loop",
            "-E",
            end_lsn,
            "-f",
            "/dev/null",
        ])
        .env("PGPASSWORD", pgkafka_tests::PG_PASSWORD)
        .stderr(Stdio::inherit())
        .status()
        .expect("run pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed: {status}");
    started.elapsed().as_secs_f64()
}

/// Runs the engine on a copy of the template slot until Kafka acknowledged
/// every row; returns seconds and the engine's peak RSS in KiB.
/// One plain target: the default topic.
const PLAIN: &str = "[{table: bench}]";

/// Three targets, each with a filter on a different column type.
const FILTERED: &str = "[{table: bench, targets: [
    {topic: bench.qty, filter: {conditions: [{field: new.qty, operator: '>', value: 3}]}},
    {topic: bench.amount, filter: {conditions: [{field: new.amount, operator: '>=', value: '50.00'}]}},
    {topic: bench.customer, filter: {conditions: [{field: new.customer, operator: ends_with, value: '7'}]}}]}]";

/// Runs the engine on a copy of the template slot until it decoded all
/// `transactions` and Kafka acknowledged every record; returns seconds and
/// the engine's peak RSS in KiB.
async fn time_engine(
    db: &TestDb,
    broker: &Broker,
    bin: &std::path::Path,
    transactions: u64,
    listeners: &str,
) -> (f64, u64) {
    copy_slot(db, "engine").await;
    let manifest = format!(
        r#"apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata: {{name: bench}}
spec:
  postgres: {{host: 127.0.0.1, port: {port}, database: {db}, user: postgres,
             passwordSecretRef: {{name: pg, key: password}}, sslMode: disable}}
  publication: {{name: bench_pub, create: false}}
  slot: {{name: {slot}, create: false}}
  kafka: {{bootstrapServers: ["{bootstrap}"], topicPrefix: {db}}}
  snapshot: {{mode: never}}
  listeners: {listeners}
"#,
        port = db.port,
        db = db.name,
        bootstrap = broker.bootstrap,
        slot = slot(db, "engine"),
    );
    run_until(bin, &manifest, |_, status| {
        let decoded = status["counters"]["transactions"].as_u64().unwrap_or(0);
        let in_flight = status["inFlight"]["records"].as_u64().unwrap_or(u64::MAX);
        decoded >= transactions && in_flight == 0
    })
    .await
}

/// Runs the engine on `manifest` until `done` holds for it and its
/// `/status`; returns seconds and the engine's peak RSS in KiB.
async fn run_until(
    bin: &std::path::Path,
    manifest: &str,
    done: impl Fn(&Engine, &serde_json::Value) -> bool,
) -> (f64, u64) {
    let started = Instant::now();
    let mut engine = Engine::start(&bin.to_string_lossy(), manifest);
    let mut peak_kib = 0;
    loop {
        peak_kib = peak_kib.max(engine.peak_rss_kib().unwrap_or(0));
        let status = engine
            .http_get("/status")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .unwrap_or_default();
        if done(&engine, &status) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "engine too slow:\n{}",
            engine.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    peak_kib = peak_kib.max(engine.peak_rss_kib().unwrap_or(0));
    engine.stop();
    (secs, peak_kib)
}
