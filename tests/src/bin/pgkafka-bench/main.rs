//! `pgkafka-bench`: the engine against PostgreSQL's own `pg_recvlogical`
//! (and `COPY`) on the same data, in the same run, and its latency and
//! memory. Sections (`--only throughput,outbox,latency,bigtx,tables,fleet`):
//!
//! - **throughput** (`throughput.rs`): backlogs drained by
//!   `pg_recvlogical` to /dev/null and by the engine (Debezium JSON into
//!   the broker, acks=all, until every record is acknowledged) in each
//!   mode: at-least-once, exactly-once, the flat envelope, a grouped
//!   target, three filtered targets, masked columns (a SHA-256 hash, a
//!   mask and a cut); a wide row of many types; 100k one-row
//!   transactions; the 1M-row table snapshotted against `COPY`
//!   (`snapshot.rs`). Peak RSS of each (the in-flight cap fills when the
//!   broker is slower than decoding).
//! - **outbox**: a Debezium-shaped outbox table of 1M events in 100
//!   transactions, drained as plain row changes and as outbox events
//!   (the Outbox Event Router's cost), both against `pg_recvlogical`.
//! - **latency** (`latency.rs`): one-row transactions written open-loop at
//!   fixed rates; commit-to-consumer p50/p99/max; the engine's resident
//!   set while streaming steadily.
//! - **bigtx** (`bigtx.rs`): one 2 GB grouped transaction, RSS sampled.
//! - **tables** (`tables.rs`): 1,000 tables in one pattern listener:
//!   start-up, their snapshot against `COPY` of each, then a backlog spread
//!   over all of them against `pg_recvlogical`; RSS and metric series.
//! - **fleet** (`pgkafka_tests::fleet`): 100 connectors under one operator
//!   on the real API server (engines as processes): time to all Ready, API
//!   requests per connector per minute at rest, operator RSS, how soon one
//!   changed connector is handled while the others reconcile.
//!
//! Run with `tests/dev-env.sh bench` (release build); `--quick` divides
//! every size by 10, `--runs N` sets the rounds (medians are printed).
//! `BENCH_LATENCY_KAFKA=", properties: {linger.ms: '20'}"` adds to the
//! latency engine's `spec.kafka` (to see the producer's batching at work).

mod bigtx;
mod latency;
mod snapshot;
mod tables;
mod throughput;
mod util;

use std::path::PathBuf;

use pgkafka_tests::{Broker, Postgres};
use throughput::{
    Backlog, Contender, Figures, MODES, OUTBOX, OUTBOX_BACKLOG, PLAIN, PLAIN_BACKLOG, WIDE_BACKLOG,
};

fn engine_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.with_file_name("pgkafka-connector")
}

struct Args {
    quick: bool,
    runs: usize,
    only: Vec<String>,
    /// `--contenders a,b`: only the throughput contenders whose name holds one.
    contenders: Vec<String>,
}

impl Args {
    fn parse() -> Args {
        let args: Vec<String> = std::env::args().collect();
        let value = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned();
        Args {
            quick: args.iter().any(|a| a == "--quick"),
            runs: value("--runs").and_then(|n| n.parse().ok()).unwrap_or(3),
            only: value("--only")
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            contenders: value("--contenders")
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }

    fn scale(&self) -> u64 {
        if self.quick {
            10
        } else {
            1
        }
    }
}

fn print_row(label: &str, f: &Figures) {
    println!(
        "{label:<44} {:>10.0} r/s {:>10.0} r/s {:>6.2} {:>5.2}-{:<6.2} {:>6} MiB",
        f.baseline,
        f.engine,
        f.ratio,
        f.ratio_range.0,
        f.ratio_range.1,
        f.rss_kib / 1024
    );
}

/// One backlog, drained by `pg_recvlogical` and by each contender.
async fn backlog_section(
    pg: &Postgres,
    broker: &Broker,
    args: &Args,
    (backlog, rows, txs): (&Backlog, u64, u64),
    contenders: &[&Contender],
    with_snapshot: bool,
) {
    let bin = engine_binary();
    let (rows, txs) = (rows / args.scale(), (txs / args.scale()).max(1));
    let db = pg.fresh_database().await;
    let end = throughput::load_backlog(&db, backlog, rows, txs).await;
    println!("{rows} rows of {} in {txs} transactions:", backlog.table);
    let mut plain_rate = None;
    for c in contenders {
        if !args.contenders.is_empty()
            && !args.contenders.iter().any(|n| c.name.contains(n.as_str()))
        {
            continue;
        }
        let f =
            throughput::measure(&db, broker, &bin, backlog, (rows, txs), &end, c, args.runs).await;
        plain_rate.get_or_insert(f.engine);
        print_row(&format!("  {}", c.name), &f);
    }
    if with_snapshot {
        let (copy, snap, rss) =
            snapshot::snapshot_scenario(&db, broker, &bin, rows, args.runs).await;
        println!(
            "{:<44} {copy:>10.0} r/s {snap:>10.0} r/s {:>6.2} (COPY in the first column; {:.2} of streaming) {:>6} MiB",
            "  snapshot of the same table",
            snap / copy,
            snap / plain_rate.unwrap_or(f64::NAN),
            rss / 1024
        );
    }
    util::drop_slot(&db, "tpl").await;
}

async fn throughput_section(pg: &Postgres, broker: &Broker, args: &Args) {
    println!(
        "{:<44} {:>14} {:>14} {:>6} {:>12} {:>10}",
        "scenario", "pg_recvlogical", "engine", "ratio", "ratio range", "engine RSS"
    );
    let all: Vec<&Contender> = std::iter::once(&PLAIN).chain(MODES.iter()).collect();
    backlog_section(
        pg,
        broker,
        args,
        (&PLAIN_BACKLOG, 1_000_000, 100),
        &all,
        true,
    )
    .await;
    backlog_section(
        pg,
        broker,
        args,
        (&WIDE_BACKLOG, 200_000, 20),
        &[&PLAIN],
        false,
    )
    .await;
    backlog_section(
        pg,
        broker,
        args,
        (&PLAIN_BACKLOG, 100_000, 100_000),
        &[&PLAIN],
        false,
    )
    .await;
}

/// Outbox events against the same table's rows as plain changes, on one
/// backlog: the router's cost.
async fn outbox_section(pg: &Postgres, broker: &Broker, args: &Args) {
    println!(
        "{:<44} {:>14} {:>14} {:>6} {:>12} {:>10}",
        "scenario", "pg_recvlogical", "engine", "ratio", "ratio range", "engine RSS"
    );
    backlog_section(
        pg,
        broker,
        args,
        (&OUTBOX_BACKLOG, 1_000_000, 100),
        &[&PLAIN, &OUTBOX],
        false,
    )
    .await;
}

async fn latency_section(pg: &Postgres, broker: &Broker, args: &Args) {
    let db = pg.fresh_database().await;
    let seconds = if args.quick { 3 } else { 10 };
    println!("one-row transactions, open loop, {seconds} s per rate: commit to consumer");
    println!(
        "{:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>19} {:>8}",
        "rate/s", "achieved", "received", "p50 ms", "p99 ms", "max ms", "to produce p50/p99", "RSS"
    );
    let rates = [1_000, 5_000, 20_000];
    for l in latency::latency(pg, &db, broker, &engine_binary(), &rates, seconds).await {
        println!(
            "{:>8} {:>9.0} {:>9} {:>8.1} {:>8.1} {:>8.1} {:>9.1}/{:<9.1} {:>4} MiB",
            l.rate,
            l.achieved,
            l.received,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.produce_p50_ms,
            l.produce_p99_ms,
            l.rss_kib / 1024
        );
    }
}

async fn bigtx_section(pg: &Postgres, broker: &Broker, args: &Args) {
    let bytes = (2u64 << 30) / args.scale();
    for guarantee in ["atLeastOnce", "exactlyOnce"] {
        let db = pg.fresh_database().await;
        let b = bigtx::big_transaction(&db, broker, &engine_binary(), bytes, guarantee).await;
        println!(
            "one grouped transaction of {} MiB, {guarantee}: {} rows, {} parts in {:.1} s ({:.0} MiB/s), {} MiB spilled, peak RSS {} MiB",
            bytes >> 20,
            b.rows,
            b.parts,
            b.seconds,
            (bytes >> 20) as f64 / b.seconds,
            b.spilled_bytes >> 20,
            b.peak_rss_kib / 1024
        );
    }
}

async fn tables_section(pg: &Postgres, broker: &Broker, args: &Args) {
    let rows = (1000 / args.scale()) as usize;
    let t = tables::thousand_tables(pg, broker, &engine_binary(), rows).await;
    println!(
        "{} tables of {} rows, one pattern listener (metrics.perTable: false):",
        t.tables, t.rows
    );
    println!("  start-up to streaming: {:.1} s", t.startup_secs);
    println!(
        "  snapshot of all: COPY {:.0} r/s, engine {:.0} r/s ({:.2} of COPY), peak RSS {} MiB, {} metric series",
        t.copy_rows_per_sec,
        t.snapshot_rows_per_sec,
        t.snapshot_rows_per_sec / t.copy_rows_per_sec,
        t.snapshot_rss_kib / 1024,
        t.metric_series
    );
    println!(
        "  {} rows over all tables: pg_recvlogical {:.0} r/s, engine {:.0} r/s ({:.2}), peak RSS {} MiB",
        t.backlog_rows,
        t.recvlogical_rows_per_sec,
        t.streaming_rows_per_sec,
        t.streaming_rows_per_sec / t.recvlogical_rows_per_sec,
        t.streaming_rss_kib / 1024
    );
    println!(
        "  the same backlog, every table on one topic: engine {:.0} r/s ({:.2} of pg_recvlogical)",
        t.one_topic_rows_per_sec,
        t.one_topic_rows_per_sec / t.recvlogical_rows_per_sec
    );
}

async fn fleet_section(args: &Args) {
    let exe = std::env::current_exe().expect("own path");
    let (engine, operator) = (exe.with_file_name("engine"), exe.with_file_name("operator"));
    let n = if args.quick { 20 } else { 100 };
    let rest = std::time::Duration::from_secs(60);
    let bins = (&*engine.to_string_lossy(), &*operator.to_string_lossy());
    let Some(f) = pgkafka_tests::fleet::run(n, bins, 15, rest).await else {
        println!("{n} connectors under one operator: skipped (no kube-apiserver and etcd here)");
        return;
    };
    println!("{n} connectors under one operator (real kube-apiserver, engines as processes, 15 s refresh):");
    println!("  apply to all Ready: {:.1} s", f.to_ready.as_secs_f64());
    println!(
        "  at rest ({} s): {:.2} API requests per connector per minute (watches apart), {} reconciles; by verb {:?}",
        f.rest.as_secs(),
        f.requests_per_connector_minute,
        f.reconciles_at_rest,
        f.at_rest_by_verb
    );
    println!(
        "  WAL written at rest: {} bytes; c000's status changes at rest: {:?}",
        f.wal_at_rest, f.status_changes
    );
    println!(
        "  before the rest: {:.0} requests ({:.1} per connector)",
        f.requests_until_rest,
        f.requests_until_rest / n as f64
    );
    println!(
        "  one connector paused while all {n} were touched: handled in {:.1} s; operator RSS {} MiB",
        f.changed_handled.as_secs_f64(),
        f.operator_rss_kib.unwrap_or(0) / 1024
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let pg = Postgres::start("logical");
    let broker = Broker::start();
    let bin = engine_binary();
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p pgkafka-connector",
        bin.display()
    );
    println!(
        "pgkafka benchmark (engine: {}), medians of {} runs",
        bin.display(),
        args.runs
    );
    if args.wants("throughput") {
        throughput_section(&pg, &broker, &args).await;
    }
    if args.wants("outbox") {
        outbox_section(&pg, &broker, &args).await;
    }
    if args.wants("latency") {
        latency_section(&pg, &broker, &args).await;
    }
    if args.wants("bigtx") {
        bigtx_section(&pg, &broker, &args).await;
    }
    if args.wants("tables") {
        tables_section(&pg, &broker, &args).await;
    }
    if args.wants("fleet") {
        fleet_section(&args).await;
    }
}
