//! The engine as a process, run from its binary on a manifest and a
//! secrets directory, exactly as a user runs it; its HTTP endpoints read as
//! the typed `/status` contract.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgkafka_crds::report::{EngineStatus, SnapshotState};

use crate::{free_port, unique, PG_PASSWORD};

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

    /// Waits (at most `limit`) until the engine's `/status` says it
    /// halted; its words.
    pub fn wait_halted(&self, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(h) = self.halted() {
                return h;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the engine did not halt:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
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
