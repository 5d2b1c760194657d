//! Test support: a real PostgreSQL (one throwaway cluster per test process, a
//! fresh database per test), a real Kafka-protocol broker (Tansu per test, or
//! `KAFKA_BOOTSTRAP_SERVERS`), the engine as a process, and a consumer.
//! Everything is started through `tests/dev-env.sh`, the same script a
//! developer uses (`postgres`, `broker`, `engine`, `kafka`, `manifest`:
//! one file each). For the operator: a real Kubernetes API server
//! ([`cluster`]) and the test playing the kubelet for engine Deployments
//! ([`kubelet`]); a real single-node Kubernetes for pods that really run
//! ([`node`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod broker;
pub mod cluster;
mod engine;
pub mod fleet;
mod kafka;
pub mod kubelet;
mod manifest;
pub mod many;
pub mod node;
mod postgres;

pub use broker::Broker;
pub use engine::Engine;
pub use kafka::{consume, distinct_ids, partition_count, read_to_end, Consumed};
pub use manifest::{manifest, Manifest};
pub use postgres::{Postgres, TestDb, FLUSH_COMMITS};

/// The superuser password of the test clusters.
pub const PG_PASSWORD: &str = "postgres";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn dev_env(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/dev-env.sh"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tests/dev-env.sh {args:?}: {e}"));
    assert!(
        out.status.success(),
        "tests/dev-env.sh {args:?} failed: {}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Notes that a test tier ran (or was skipped, and why) for the summary
/// the test command prints at its end (`tests/dev-env.sh test` names the
/// file in `PGKAFKA_TIERS_FILE`; without it the note goes to stderr).
pub fn record_tier(tier: &str, outcome: &str) {
    use std::io::Write;
    let line = format!("{tier}: {outcome}\n");
    match std::env::var_os("PGKAFKA_TIERS_FILE") {
        Some(path) => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
        None => eprint!("tier {line}"),
    }
}

/// A unique lower-case name for databases, slots and topics.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `ready` every 50 ms until it holds; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Async [`wait_until`].
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !ready().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
