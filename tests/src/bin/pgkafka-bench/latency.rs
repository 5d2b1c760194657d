//! Commit-to-consumer latency of one-row transactions written open-loop at
//! fixed rates: the writer keeps its schedule whatever the engine does, and
//! a consumer notes, for every record, its arrival time minus the
//! transaction's commit time (`source.ts_ms`, PostgreSQL's own clock on the
//! same machine).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgkafka_tests::{partition_count, Broker, Engine, Postgres, TestDb};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::util::{quantile, slot, Manifest};

/// One rate's figures.
pub struct Latency {
    pub rate: u64,
    pub achieved: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Commit to the engine handing the record to librdkafka.
    pub produce_p50_ms: f64,
    pub produce_p99_ms: f64,
    pub received: usize,
    /// The engine's resident set at the end of the rate's run, KiB.
    pub rss_kib: u64,
}

/// Writers: several sessions so a high rate is not bound by one backend.
const WRITERS: usize = 4;

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Reads `topic` from its end until `expected` records or `limit`; returns
/// per record (arrival minus commit, produce minus commit) in ms, the
/// produce time being the record's Kafka timestamp (librdkafka's CreateTime,
/// taken when the engine hands the record over).
fn consume_latencies(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    limit: Duration,
    ready: std::sync::mpsc::Sender<()>,
) -> Vec<(f64, f64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", pgkafka_tests::unique("lat"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("consumer");
    let partitions = partition_count(&consumer, topic, Duration::from_secs(30)).expect("topic");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::End)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    // Let the assignment settle on the end offsets before writing.
    for _ in 0..20 {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    let _ = ready.send(());
    let deadline = Instant::now() + limit;
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) else {
            continue;
        };
        let arrived = now_ms();
        let value: serde_json::Value = m
            .payload()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or_default();
        if let Some(commit) = value["source"]["ts_ms"].as_f64() {
            let produced = m.timestamp().to_millis().map_or(f64::NAN, |t| t as f64);
            out.push((arrived - commit, produced - commit));
        }
    }
    out
}

/// Writes `count` one-row transactions at `rate` per second, open loop;
/// returns the achieved rate.
async fn write_open_loop(
    writers: &[Arc<tokio_postgres::Client>],
    first_id: u64,
    count: u64,
    rate: u64,
) -> f64 {
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let at = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(at).await;
        let client = Arc::clone(&writers[i as usize % writers.len()]);
        let id = (first_id + i) as i64;
        tasks.spawn(async move {
            client
                .execute("INSERT INTO lat VALUES ($1, 'x')", &[&id])
                .await
                .expect("insert");
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    count as f64 / started.elapsed().as_secs_f64()
}

/// Runs each rate for `seconds` on one engine.
pub async fn latency(
    pg: &Postgres,
    db: &TestDb,
    broker: &Broker,
    bin: &std::path::Path,
    rates: &[u64],
    seconds: u64,
) -> Vec<Latency> {
    db.exec("CREATE TABLE lat (id bigint PRIMARY KEY, v text); CREATE PUBLICATION lat_pub FOR TABLE lat")
        .await;
    let prefix = format!("{}_lat", db.name);
    let manifest = Manifest {
        db,
        broker,
        publication: "lat_pub",
        slot: slot(db, "lat"),
        slot_exists: false,
        topic_prefix: prefix.clone(),
        kafka_extra: &std::env::var("BENCH_LATENCY_KAFKA").unwrap_or_default(),
        snapshot: "never",
        listeners: "[{table: lat}]",
    };
    let mut engine = Engine::start(&bin.to_string_lossy(), &manifest.yaml());
    engine.wait_streaming();
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let client = pg.connect(&db.name).await;
        // The test cluster commits asynchronously (WAL flushed every
        // 200 ms), and the walsender sends only flushed WAL: commit as
        // production does.
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .expect("synchronous commit");
        writers.push(Arc::new(client));
    }
    let topic = format!("{prefix}.public.lat");
    let mut out = Vec::new();
    let mut next_id = 1;
    for &rate in rates {
        let count = rate * seconds;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (bootstrap, t) = (broker.bootstrap.clone(), topic.clone());
        let limit = Duration::from_secs(seconds * 4 + 30);
        let reader = std::thread::spawn(move || {
            consume_latencies(&bootstrap, &t, count as usize, limit, ready_tx)
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(60));
        let achieved = write_open_loop(&writers, next_id, count, rate).await;
        next_id += count;
        let pairs = tokio::task::spawn_blocking(move || reader.join().unwrap_or_default())
            .await
            .unwrap_or_default();
        let mut lat: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let mut produce: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        lat.sort_by(f64::total_cmp);
        produce.sort_by(f64::total_cmp);
        eprintln!("  latency at {rate}/s: {} of {count} received", lat.len());
        out.push(Latency {
            rate,
            achieved,
            p50_ms: quantile(&lat, 0.5),
            p99_ms: quantile(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(f64::NAN),
            produce_p50_ms: quantile(&produce, 0.5),
            produce_p99_ms: quantile(&produce, 0.99),
            received: lat.len(),
            rss_kib: engine.rss_kib().unwrap_or(0),
        });
    }
    engine.stop();
    out
}
