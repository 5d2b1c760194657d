//! Test support: a real PostgreSQL (one throwaway cluster per test process, a
//! fresh database per test), a real Kafka-protocol broker (Tansu per test, or
//! `KAFKA_BOOTSTRAP_SERVERS`), the engine as a process, and a consumer.
//! Everything is started through `tests/dev-env.sh`, the same script a
//! developer uses. For the operator: a real Kubernetes API server
//! ([`cluster`]) and the test playing the kubelet for engine Deployments
//! ([`kubelet`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgkafka_crds::report::{EngineStatus, SnapshotState};
use tokio_postgres::{Client, NoTls};

pub mod cluster;
mod kafka;
pub mod kubelet;
mod manifest;

pub use kafka::{consume, distinct_ids, partition_count, read_to_end, Consumed};
pub use manifest::{manifest, Manifest};

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

/// A throwaway PostgreSQL 15 cluster, stopped when the test process exits.
pub struct Postgres {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The cluster's directory.
    pub dir: PathBuf,
}

impl Postgres {
    /// The cluster shared by this test process (`wal_level=logical`).
    pub fn shared() -> &'static Postgres {
        static PG: OnceLock<Postgres> = OnceLock::new();
        PG.get_or_init(|| {
            let pg = Postgres::start("logical");
            record_tier("real PostgreSQL 15", "ran");
            pg
        })
    }

    /// A new cluster with the given `wal_level`.
    pub fn start(wal_level: &str) -> Postgres {
        Postgres::start_with(wal_level, "")
    }

    /// A new cluster serving TLS with a certificate for `localhost` signed by
    /// the CA in [`Postgres::ca_file`].
    pub fn start_tls() -> Postgres {
        Postgres::start_with("logical", "tls")
    }

    fn start_with(wal_level: &str, tls: &str) -> Postgres {
        let dir = std::env::temp_dir().join(unique("pgkafka-pg"));
        let pid = std::process::id().to_string();
        let port = dev_env(&["pg-up", &dir.to_string_lossy(), &pid, wal_level, tls]);
        Postgres {
            port: port
                .parse()
                .unwrap_or_else(|_| panic!("pg-up printed {port:?}, not a port")),
            dir,
        }
    }

    /// The CA that signed a TLS cluster's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.crt")
    }

    /// Connects to `database` as the superuser.
    pub async fn connect(&self, database: &str) -> Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(PG_PASSWORD)
            .dbname(database)
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to test database {database}: {e}"));
        tokio::spawn(conn);
        client
    }

    /// A new empty database and a client connected to it.
    pub async fn fresh_database(&self) -> TestDb {
        let name = unique("db");
        self.connect("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        TestDb {
            client: self.connect(&name).await,
            name,
            port: self.port,
        }
    }
}

/// A transaction whose synchronous commit flushes the WAL of every commit
/// before it. It must write WAL to be flushed: a logical message, which
/// the engine ignores (an xid alone commits without a flush).
pub const FLUSH_COMMITS: &str = "BEGIN; SET LOCAL synchronous_commit = on;
     SELECT pg_logical_emit_message(true, 'pgkafka-tests', 'flush'); COMMIT;";

/// A database of its own for one test.
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// Superuser session on it.
    pub client: Client,
    /// The cluster's port.
    pub port: u16,
}

impl TestDb {
    /// Runs SQL statements.
    pub async fn exec(&self, sql: &str) {
        self.client.batch_execute(sql).await.unwrap_or_else(|e| {
            panic!(
                "SQL failed: {}\n{sql}",
                pgkafka_postgres::postgres_detail(&e)
            )
        });
    }

    /// The slot's `confirmed_flush_lsn` as a number (0 when unset or missing).
    pub async fn confirmed_flush(&self, slot: &str) -> u64 {
        let row = self
            .client
            .query_opt(
                "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("query slot");
        row.and_then(|r| r.get::<_, Option<String>>(0))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (at most `limit`) until `slot` confirmed everything committed
    /// so far; returns that position. Nothing written before the call can
    /// still be on its way to Kafka afterwards.
    pub async fn wait_confirmed_all(&self, slot: &str, limit: Duration) -> u64 {
        let target = self.current_wal().await;
        wait_for(
            limit,
            &format!("slot {slot} to confirm every write"),
            || async { self.confirmed_flush(slot).await >= target },
        )
        .await;
        target
    }

    /// The WAL write position, past every commit made so far: a synchronous
    /// commit first flushes the WAL of all earlier ones (under
    /// `synchronous_commit = off` the write position may lag a commit).
    pub async fn current_wal(&self) -> u64 {
        self.client
            .batch_execute(FLUSH_COMMITS)
            .await
            .expect("flush commits");
        let row = self
            .client
            .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::text", &[])
            .await
            .expect("current wal");
        row.get::<_, String>(0).parse().expect("numeric LSN")
    }
}

/// A Kafka-protocol broker: Tansu on a free loopback port, or the Kafka named
/// by `KAFKA_BOOTSTRAP_SERVERS`.
pub struct Broker {
    /// `host:port`.
    pub bootstrap: String,
    child: Option<Child>,
    port: u16,
    /// noida-db's data directory (`None`: Tansu or an outside Kafka).
    noida_dir: Option<PathBuf>,
}

impl Broker {
    /// Uses `KAFKA_BOOTSTRAP_SERVERS` when set, else starts Tansu.
    pub fn start() -> Broker {
        match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(b) if !b.is_empty() => Broker {
                bootstrap: b,
                child: None,
                port: 0,
                noida_dir: None,
            },
            _ => Broker::owned(),
        }
    }

    /// Always a Tansu of this test's own, which it may kill and restart.
    pub fn owned() -> Broker {
        let port = free_port();
        let mut broker = Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            child: None,
            port,
            noida_dir: None,
        };
        broker.restart();
        record_tier("real broker (Tansu)", "ran");
        broker
    }

    /// Stops noida-db cleanly (it saves its state, compacting compacted
    /// topics) and starts it again on the same port and data.
    pub fn restart_noida(&mut self) {
        let dir = self.noida_dir.clone().expect("a noida-db broker");
        if let Some(child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let mut child = child;
            let _ = child.wait();
        }
        self.child = Some(spawn_noida(&dir, self.port));
        let port = self.port;
        wait_until(Duration::from_secs(10), "noida-db to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// A noida-db of this test's own: a Kafka-protocol broker with real
    /// transaction semantics (aborted records hidden from `read_committed`
    /// readers, zombie producers fenced) that compacts compacted topics.
    /// Its state is one JSON file: keep its data small.
    pub fn noida() -> Broker {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("pgkafka-noida"));
        std::fs::create_dir_all(&dir).expect("noida dir");
        let child = spawn_noida(&dir, port);
        wait_until(Duration::from_secs(10), "noida-db to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        record_tier(
            "second broker (noida-db: transactions, topic configs)",
            "ran",
        );
        Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            child: Some(child),
            port,
            noida_dir: Some(dir),
        }
    }

    /// Kills the broker (its memory engine loses every topic and record).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        static BIN: OnceLock<String> = OnceLock::new();
        let bin = BIN.get_or_init(|| dev_env(&["tansu-bin"]));
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        wait_until(Duration::from_secs(10), "tansu to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }
}

fn spawn_noida(dir: &Path, port: u16) -> Child {
    static BIN: OnceLock<String> = OnceLock::new();
    let bin = BIN.get_or_init(|| dev_env(&["noida-bin"]));
    Command::new(bin)
        .args(["start", "--data-dir"])
        .arg(dir)
        .args(["--host", "127.0.0.1", "--only", "kafka", "--kafka-port"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start noida-db")
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.noida_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
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

/// The engine, run as a process from its binary.
pub struct Engine {
    child: Option<Child>,
    /// Its HTTP port.
    pub http_port: u16,
    /// Its stderr log.
    pub log: PathBuf,
    /// Extra command-line arguments for the next (re)start.
    pub args: Vec<String>,
    dir: PathBuf,
}

impl Engine {
    /// Writes `manifest` and a secrets directory holding the test password,
    /// then starts `bin run -f manifest`.
    pub fn start(bin: &str, manifest: &str) -> Engine {
        Engine::start_with_secrets(bin, manifest, &[("pg/password", PG_PASSWORD)])
    }

    /// [`Engine::start`] with extra command-line arguments.
    pub fn start_with_args(bin: &str, manifest: &str, args: &[&str]) -> Engine {
        let mut engine = Engine::prepare(manifest, &[("pg/password", PG_PASSWORD)]);
        engine.args = args.iter().map(|a| (*a).to_owned()).collect();
        engine.restart(bin);
        engine
    }

    /// [`Engine::start`] with the given secrets, as (`name/key`, value).
    pub fn start_with_secrets(bin: &str, manifest: &str, secrets: &[(&str, &str)]) -> Engine {
        let mut engine = Engine::prepare(manifest, secrets);
        engine.restart(bin);
        engine
    }

    fn prepare(manifest: &str, secrets: &[(&str, &str)]) -> Engine {
        let dir = std::env::temp_dir().join(unique("pgkafka-engine"));
        std::fs::create_dir_all(&dir).expect("engine dir");
        for (path, value) in secrets {
            let file = dir.join("secrets").join(path);
            std::fs::create_dir_all(file.parent().expect("name/key")).expect("secret dir");
            std::fs::write(file, value).expect("secret");
        }
        std::fs::write(dir.join("connector.yaml"), manifest).expect("manifest");
        Engine {
            child: None,
            http_port: 0,
            log: dir.join("engine.log"),
            args: Vec::new(),
            dir,
        }
    }

    /// Replaces the manifest the next [`Engine::restart`] reads.
    pub fn rewrite(&self, manifest: &str) {
        std::fs::write(self.dir.join("connector.yaml"), manifest).expect("manifest");
    }

    /// The engine's `/status`, read as the contract type it writes (a body
    /// that is not one panics: the contract broke).
    pub fn status(&self) -> Option<EngineStatus> {
        let (_, body) = self.http_get("/status")?;
        Some(
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("/status is not an EngineStatus ({e}): {body}")),
        )
    }

    /// The snapshot state of `table` from `/status`: (state, rows).
    pub fn snapshot_of(&self, table: &str) -> Option<(SnapshotState, u64)> {
        let status = self.status()?;
        let entry = status.snapshot.tables.iter().find(|t| t.table == table)?;
        Some((entry.state, entry.rows))
    }

    /// Starts the process again with the same manifest (after a kill).
    pub fn restart(&mut self, bin: &str) {
        self.http_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("engine log");
        let child = Command::new(bin)
            .arg("run")
            .arg("-f")
            .arg(self.dir.join("connector.yaml"))
            .arg("--secrets-dir")
            .arg(self.dir.join("secrets"))
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .args(&self.args)
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start engine");
        self.child = Some(child);
    }

    /// GET `path` on the engine's HTTP port: status code and body.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        self.http("GET", path, "")
    }

    /// POST `body` (JSON) to `path`: status code and body.
    pub fn http_post(&self, path: &str, body: &str) -> Option<(u16, String)> {
        self.http("POST", path, body)
    }

    fn http(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.get(9..12)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((code, body))
    }

    /// Waits until `/readyz` says the engine streams; panics with its log if it exits.
    pub fn wait_streaming(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "engine exited with {status} before streaming:\n{}",
                    self.log_text()
                );
            }
            if self
                .http_get("/readyz")
                .is_some_and(|(code, _)| code == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "engine not streaming after 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the engine gives up: it exits by itself, or it halts
    /// (a fault retrying cannot fix: `/status` says `halted` and the process
    /// stays up for a new configuration), and is then stopped with SIGTERM.
    /// Its exit code and log.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, String) {
        self.wait_child(limit, true)
    }

    fn wait_child(&mut self, limit: Duration, or_halted: bool) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        let mut polls = 0u32;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return (status.code(), self.log_text());
            }
            polls += 1;
            if or_halted && polls.is_multiple_of(10) && self.halted().is_some() {
                let code = self.stop();
                return (code, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "engine still running after {limit:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Why the engine halted, from its `/status`; `None` while it runs.
    pub fn halted(&self) -> Option<String> {
        self.status()?.halted
    }

    /// SIGKILL: no drain, no final status update.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = self.child.as_ref()?.id();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        self.wait_child(Duration::from_secs(40), false).0
    }

    /// The process's peak resident set size (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The process's resident set size now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The engine's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
