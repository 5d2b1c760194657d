//! One source transaction far bigger than the engine's memory, sent as one
//! whole-transaction message in numbered parts: the engine's resident set
//! is sampled throughout and must stay bounded whatever the size.

use std::time::{Duration, Instant};

use pgkafka_tests::{Broker, Engine, TestDb};

use crate::util::{slot, Manifest};

/// What the big transaction showed.
pub struct BigTx {
    pub rows: u64,
    pub spilled_bytes: u64,
    pub parts: u64,
    pub seconds: f64,
    pub peak_rss_kib: u64,
}

fn metric(engine: &Engine, name: &str) -> u64 {
    engine
        .http_get("/metrics")
        .map(|r| r.1)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// About 450 bytes of envelope per row: `rows` for a transaction of `bytes`.
pub async fn big_transaction(
    db: &TestDb,
    broker: &Broker,
    bin: &std::path::Path,
    bytes: u64,
    guarantee: &str,
) -> BigTx {
    let rows = bytes / 450;
    db.exec("CREATE TABLE bigtx (id bigint PRIMARY KEY, note text); CREATE PUBLICATION bigtx_pub FOR TABLE bigtx")
        .await;
    let prefix = format!("{}_big", db.name);
    let extra = format!(", deliveryGuarantee: {guarantee}");
    let manifest = Manifest {
        db,
        broker,
        publication: "bigtx_pub",
        slot: slot(db, "big"),
        slot_exists: false,
        topic_prefix: prefix.clone(),
        kafka_extra: &extra,
        snapshot: "never",
        listeners: &format!(
            "[{{table: bigtx, targets: [{{topic: {prefix}.tx, sendAsTransaction: true}}]}}]"
        ),
    };
    let mut engine = Engine::start(&bin.to_string_lossy(), &manifest.yaml());
    engine.wait_streaming();
    let started = Instant::now();
    db.exec(&format!(
        "INSERT INTO bigtx SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g"
    ))
    .await;
    eprintln!(
        "  big transaction: {rows} rows written in {:.1?}",
        started.elapsed()
    );
    db.exec(pgkafka_tests::FLUSH_COMMITS).await;
    let end: String = db
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0);
    let mut peak = 0;
    loop {
        peak = peak.max(engine.peak_rss_kib().unwrap_or(0));
        let row = db
            .client
            .query_one(
                "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot(db, "big"), &end],
            )
            .await
            .expect("slot");
        if row.get::<_, bool>(0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "big transaction too slow:\n{}",
            engine.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let figures = BigTx {
        rows,
        spilled_bytes: metric(&engine, "pgkafka_group_spilled_bytes_total"),
        parts: metric(&engine, "pgkafka_records_delivered_total"),
        seconds,
        peak_rss_kib: peak.max(engine.peak_rss_kib().unwrap_or(0)),
    };
    engine.stop();
    figures
}
