//! Throughput on a backlog: the engine in each mode against
//! `pg_recvlogical` on the same WAL, in the same run. A backlog is written
//! once after a template slot was created; each contender drains its own
//! copy of that slot.

use std::process::{Command, Stdio};
use std::time::Instant;

use pgkafka_tests::{Broker, TestDb};

use crate::util::{drop_slot, median, run_until, slot, Manifest};

/// A table, its publication and how its rows are written.
pub struct Backlog {
    pub table: &'static str,
    pub ddl: &'static str,
    /// `INSERT ... SELECT ... FROM generate_series({from}, {to}) g`.
    pub insert: &'static str,
}

pub const PLAIN_BACKLOG: Backlog = Backlog {
    table: "bench",
    ddl: "CREATE TABLE bench (id bigint PRIMARY KEY, customer text, amount numeric(12,2), qty int,
                              status text, created timestamptz, note text)",
    // About 150 bytes per row, as in the environment's measurements.
    insert: "INSERT INTO bench SELECT g, 'customer-' || g, g % 10000 / 100.0, g % 7, 'pending',
                    '2024-01-01'::timestamptz + g * interval '1 second', md5(g::text) || md5((g+1)::text)
               FROM generate_series({from}, {to}) g",
};

/// Rows of many types: the value encoders' cost.
pub const WIDE_BACKLOG: Backlog = Backlog {
    table: "wide",
    ddl: "CREATE TABLE wide (id bigint PRIMARY KEY, n1 numeric(18,4), n2 numeric, f float8,
                             b bool, ts timestamptz, t timestamp, d date, u uuid, j jsonb,
                             ai int[], at text[], an numeric[], by bytea, s text)",
    insert: "INSERT INTO wide SELECT g, g * 1.2345, g / 7.0, g * 0.5, g % 2 = 0,
                    '2024-01-01'::timestamptz + g * interval '1 ms', '2024-01-01'::timestamp + g * interval '1 s',
                    '2024-01-01'::date + g % 1000, md5(g::text)::uuid,
                    jsonb_build_object('id', g, 'tags', jsonb_build_array('a', g % 5), 'ok', true),
                    ARRAY[g, g + 1, g + 2], ARRAY['x' || g, 'y'], ARRAY[g * 0.01, 1.5], decode(md5(g::text), 'hex'),
                    'row ' || g
               FROM generate_series({from}, {to}) g",
};

/// A Debezium-shaped outbox table: events with a jsonb payload of about
/// the plain backlog's row size, of one aggregate type so that both
/// contenders write one topic (more topics mean smaller batches: the
/// broker's cost, not the router's).
pub const OUTBOX_BACKLOG: Backlog = Backlog {
    table: "outbox",
    ddl: "CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype text NOT NULL,
                               aggregateid text NOT NULL, type text NOT NULL, payload jsonb)",
    insert: "INSERT INTO outbox SELECT md5(g::text)::uuid, 'Order', g::text, 'OrderCreated',
                    jsonb_build_object('id', g, 'customer', 'customer-' || g, 'amount', g % 10000 / 100.0,
                                       'note', md5(g::text))
               FROM generate_series({from}, {to}) g",
};

/// The outbox table's rows as outbox events (Debezium's defaults).
pub const OUTBOX: Contender = Contender {
    name: "outbox events (Outbox Event Router)",
    kafka_extra: "",
    listeners: "[{table: {table}, targets: [{outbox: {}}]}]",
};

/// One way of running the engine on a backlog.
pub struct Contender {
    pub name: &'static str,
    pub kafka_extra: &'static str,
    /// `{table}` is replaced by the backlog's table.
    pub listeners: &'static str,
}

pub const PLAIN: Contender = Contender {
    name: "at-least-once, debezium",
    kafka_extra: "",
    listeners: "[{table: {table}}]",
};

pub const MODES: [Contender; 5] = [
    Contender {
        name: "exactly-once",
        kafka_extra: ", deliveryGuarantee: exactlyOnce",
        listeners: "[{table: {table}}]",
    },
    Contender {
        name: "flat envelope",
        kafka_extra: ", envelope: flat",
        listeners: "[{table: {table}}]",
    },
    Contender {
        name: "grouped (sendAsTransaction)",
        kafka_extra: "",
        listeners: "[{table: {table}, targets: [{topic: {table}.tx, sendAsTransaction: true}]}]",
    },
    Contender {
        name: "three filtered targets",
        kafka_extra: "",
        listeners: "[{table: {table}, targets: [
            {topic: {table}.qty, filter: {conditions: [{field: new.qty, operator: '>', value: 3}]}},
            {topic: {table}.amount, filter: {conditions: [{field: new.amount, operator: '>=', value: '50.00'}]}},
            {topic: {table}.customer, filter: {conditions: [{field: new.customer, operator: ends_with, value: '7'}]}}]}]",
    },
    Contender {
        name: "masked columns (SHA-256 hash, mask, cut)",
        kafka_extra: "",
        listeners: "[{table: {table}, targets: [{columnMasks: [
            {columns: [customer], hash: {algorithm: SHA-256, saltSecretRef: {name: pii, key: salt}}},
            {columns: [status], maskWithChars: 4},
            {columns: [note], truncateToChars: 16}]}]}]",
    },
];

/// Creates the table, its publication and a template slot, then writes the
/// backlog; returns the WAL position after it.
pub async fn load_backlog(db: &TestDb, backlog: &Backlog, rows: u64, transactions: u64) -> String {
    db.exec(backlog.ddl).await;
    db.exec(&format!(
        "CREATE PUBLICATION {t}_pub FOR TABLE {t}",
        t = backlog.table
    ))
    .await;
    // Its own statement: a slot cannot be created in a transaction that wrote.
    db.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        slot(db, "tpl")
    ))
    .await;
    let per_tx = (rows / transactions).max(1);
    let started = Instant::now();
    for t in 0..transactions {
        let (from, to) = (t * per_tx + 1, (t + 1) * per_tx);
        let sql = backlog
            .insert
            .replace("{from}", &from.to_string())
            .replace("{to}", &to.to_string());
        db.exec(&sql).await;
    }
    eprintln!(
        "  backlog: {rows} rows of {} in {transactions} transactions written in {:.1?}",
        backlog.table,
        started.elapsed()
    );
    db.exec(pgkafka_tests::FLUSH_COMMITS).await;
    let row = db
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn");
    row.get(0)
}

async fn copy_slot(db: &TestDb, role: &str) {
    let (template, copy) = (slot(db, "tpl"), slot(db, role));
    db.exec(&format!(
        "SELECT pg_copy_logical_replication_slot('{template}', '{copy}')"
    ))
    .await;
}

/// Seconds `pg_recvlogical` takes to drain a copy of the template slot.
pub async fn time_recvlogical(db: &TestDb, publication: &str, end_lsn: &str) -> f64 {
    copy_slot(db, "recv").await;
    let started = Instant::now();
    let status = Command::new("pg_recvlogical")
        .args([
            "-d",
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={}",
                db.port, db.name
            ),
        ])
        .args(["-S", &slot(db, "recv"), "--start", "-P", "pgoutput"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={publication}"))
        .args(["--no-loop", "-E", end_lsn, "-f", "/dev/null"])
        .env("PGPASSWORD", pgkafka_tests::PG_PASSWORD)
        .stderr(Stdio::inherit())
        .status()
        .expect("run pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed: {status}");
    let secs = started.elapsed().as_secs_f64();
    drop_slot(db, "recv").await;
    secs
}

/// Runs the engine as `contender` on a copy of the template slot until it
/// decoded all `transactions` and Kafka acknowledged (or, exactly-once,
/// committed) every record; returns seconds and peak RSS in KiB.
pub async fn time_engine(
    db: &TestDb,
    broker: &Broker,
    bin: &std::path::Path,
    backlog: &Backlog,
    transactions: u64,
    contender: &Contender,
    run: usize,
) -> (f64, u64) {
    copy_slot(db, "engine").await;
    let listeners = contender.listeners.replace("{table}", backlog.table);
    let publication = format!("{}_pub", backlog.table);
    let manifest = Manifest {
        db,
        broker,
        publication: &publication,
        slot: slot(db, "engine"),
        slot_exists: true,
        topic_prefix: format!("{}_{run}", db.name),
        kafka_extra: contender.kafka_extra,
        snapshot: "never",
        listeners: &listeners,
    };
    let result = run_until(bin, &manifest.yaml(), |_, status| {
        let decoded = status["counters"]["transactions"].as_u64().unwrap_or(0);
        let in_flight = status["inFlight"]["records"].as_u64().unwrap_or(u64::MAX);
        decoded >= transactions && in_flight == 0
    })
    .await;
    drop_slot(db, "engine").await;
    result
}

/// One contender's figures on one backlog.
pub struct Figures {
    pub baseline: f64,
    pub engine: f64,
    pub ratio: f64,
    pub ratio_range: (f64, f64),
    pub rss_kib: u64,
}

/// Interleaves `pg_recvlogical` and `contender` for `runs` rounds; medians.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    db: &TestDb,
    broker: &Broker,
    bin: &std::path::Path,
    backlog: &Backlog,
    (rows, transactions): (u64, u64),
    end_lsn: &str,
    contender: &Contender,
    runs: usize,
) -> Figures {
    let publication = format!("{}_pub", backlog.table);
    let (mut base, mut engine, mut ratios, mut rss) = (vec![], vec![], vec![], 0);
    for run in 0..runs {
        let baseline = rows as f64 / time_recvlogical(db, &publication, end_lsn).await;
        let (secs, peak) =
            time_engine(db, broker, bin, backlog, transactions, contender, run).await;
        let rate = rows as f64 / secs;
        eprintln!(
            "  run: {} pg_recvlogical {baseline:.0} r/s, engine {rate:.0} r/s, {} MiB",
            contender.name,
            peak / 1024
        );
        base.push(baseline);
        engine.push(rate);
        ratios.push(rate / baseline);
        rss = rss.max(peak);
    }
    let range = (crate::util::min(&ratios), crate::util::max(&ratios));
    Figures {
        baseline: median(&mut base),
        engine: median(&mut engine),
        ratio: median(&mut ratios),
        ratio_range: range,
        rss_kib: rss,
    }
}
