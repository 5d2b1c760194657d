//! What every benchmark section shares: engine manifests, running the
//! engine until a condition, slots named after their database, medians.

use std::time::{Duration, Instant};

use pgkafka_tests::{Broker, Engine, TestDb};

/// Slots are per cluster: name them after the database.
pub fn slot(db: &TestDb, role: &str) -> String {
    format!("{}_{role}", db.name)
}

pub async fn drop_slot(db: &TestDb, role: &str) {
    db.exec(&format!(
        "SELECT pg_drop_replication_slot('{}')",
        slot(db, role)
    ))
    .await;
}

/// An engine manifest on `db` and `broker`: slot `slot_name` (created
/// unless `copied`), publication `publication`, `kafka` extra lines.
pub struct Manifest<'a> {
    pub db: &'a TestDb,
    pub broker: &'a Broker,
    pub publication: &'a str,
    pub slot: String,
    pub slot_exists: bool,
    pub topic_prefix: String,
    pub kafka_extra: &'a str,
    pub snapshot: &'a str,
    pub listeners: &'a str,
}

impl Manifest<'_> {
    pub fn yaml(&self) -> String {
        format!(
            r#"apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata: {{name: bench}}
spec:
  postgres: {{host: 127.0.0.1, port: {port}, database: {db}, user: postgres,
             passwordSecretRef: {{name: pg, key: password}}, sslMode: disable}}
  publication: {{name: {publication}, create: false}}
  slot: {{name: {slot}, create: {create}}}
  kafka: {{bootstrapServers: ["{bootstrap}"], topicPrefix: {prefix}{extra}}}
  snapshot: {{mode: {snapshot}}}
  listeners: {listeners}
"#,
            port = self.db.port,
            db = self.db.name,
            publication = self.publication,
            slot = self.slot,
            create = !self.slot_exists,
            bootstrap = self.broker.bootstrap,
            prefix = self.topic_prefix,
            extra = self.kafka_extra,
            snapshot = self.snapshot,
            listeners = self.listeners,
        )
    }
}

/// Runs the engine on `manifest` until `done` holds for it and its
/// `/status`; returns seconds and the engine's peak RSS in KiB.
pub async fn run_until(
    bin: &std::path::Path,
    manifest: &str,
    done: impl Fn(&Engine, &serde_json::Value) -> bool,
) -> (f64, u64) {
    let started = Instant::now();
    // The salt of the masked-columns contender (`pii/salt`).
    let secrets = [
        ("pg/password", pgkafka_tests::PG_PASSWORD),
        ("pii/salt", "bench-salt"),
    ];
    let mut engine = Engine::start_with_secrets(&bin.to_string_lossy(), manifest, &secrets);
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
            started.elapsed() < Duration::from_secs(3600),
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

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// The `q` quantile (0..=1) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}
