//! Kafka-protocol brokers for tests: Tansu (memory engine, per test or
//! `KAFKA_BOOTSTRAP_SERVERS`) and noida-db (real transaction semantics,
//! topic configs), each on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{dev_env, free_port, record_tier, unique, wait_until};

/// A Kafka-protocol broker: Tansu on a free loopback port, or the Kafka named
/// by `KAFKA_BOOTSTRAP_SERVERS`.
pub struct Broker {
    /// `host:port`.
    pub bootstrap: String,
    child: Option<Child>,
    /// The address it listens on and advertises.
    host: String,
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
                host: String::new(),
                port: 0,
                noida_dir: None,
            },
            _ => Broker::owned(),
        }
    }

    /// Always a Tansu of this test's own, which it may kill and restart.
    pub fn owned() -> Broker {
        Broker::owned_on("127.0.0.1")
    }

    /// A Tansu of this test's own listening on, and advertising, `host`
    /// (pods on the test node reach the host at its bridge address).
    pub fn owned_on(host: &str) -> Broker {
        let port = free_port();
        let mut broker = Broker {
            bootstrap: format!("{host}:{port}"),
            child: None,
            host: host.to_owned(),
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
            host: "127.0.0.1".to_owned(),
            port,
            noida_dir: Some(dir),
        }
    }

    /// Freezes the broker process (`SIGSTOP`): connections stay open and
    /// nothing is answered, as a broker hung in a long pause would.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker go on (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("a broker of this test's own");
        let ok = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} on the broker failed");
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
        let url = format!("tcp://{}:{}", self.host, self.port);
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
            std::net::TcpStream::connect((self.host.as_str(), self.port)).is_ok()
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
