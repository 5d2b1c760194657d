//! A table's existing rows: the engine's snapshot (acks=all, until every
//! record is acknowledged) against `COPY (SELECT ...) TO STDOUT` of the
//! same table into /dev/null.

use std::process::{Command, Stdio};
use std::time::Instant;

use pgkafka_tests::{Broker, TestDb};

use crate::util::{drop_slot, median, run_until, slot, Manifest};

/// Medians of `runs`: COPY rows/s, snapshot rows/s, the snapshot's peak
/// RSS (KiB).
pub async fn snapshot_scenario(
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
        let copy = rows as f64 / started.elapsed().as_secs_f64();
        let manifest = Manifest {
            db,
            broker,
            publication: "bench_pub",
            slot: slot(db, "snap"),
            slot_exists: false,
            topic_prefix: format!("{}_snap{run}", db.name),
            kafka_extra: "",
            snapshot: "initial",
            listeners: "[{table: bench}]",
        };
        let (secs, rss) = run_until(bin, &manifest.yaml(), |engine, status| {
            let done = engine
                .snapshot_of("public.bench")
                .is_some_and(|(state, sent)| {
                    state == pgkafka_crds::report::SnapshotState::Done && sent >= rows
                });
            done && status["inFlight"]["records"] == 0
        })
        .await;
        drop_slot(db, "snap").await;
        eprintln!(
            "  run: COPY {copy:.0} r/s, snapshot {:.0} r/s",
            rows as f64 / secs
        );
        copies.push(copy);
        snaps.push(rows as f64 / secs);
        rss_kib = rss_kib.max(rss);
    }
    (median(&mut copies), median(&mut snaps), rss_kib)
}
