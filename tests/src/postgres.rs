//! A real PostgreSQL 15 for tests: one throwaway cluster per test process
//! (or one of a test's own), a fresh database per test, and what tests ask
//! of it (the slot's confirmed position, the WAL position).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::{dev_env, record_tier, unique, wait_for, PG_PASSWORD};

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

    /// A new cluster (`wal_level=logical`) also listening on `address`,
    /// any client address admitted with the password: pods on the test
    /// node reach the host at its bridge address.
    pub fn start_on(address: &str) -> Postgres {
        Postgres::start_listening("logical", "", &format!("127.0.0.1,{address}"))
    }

    /// A new cluster (`wal_level=logical`) for `slots` connectors: as many
    /// replication slots and walsenders, four sessions each.
    pub fn start_for(slots: usize) -> Postgres {
        Postgres::start_sized("logical", "", "127.0.0.1", slots)
    }

    fn start_with(wal_level: &str, tls: &str) -> Postgres {
        Postgres::start_listening(wal_level, tls, "127.0.0.1")
    }

    fn start_listening(wal_level: &str, tls: &str, addresses: &str) -> Postgres {
        Postgres::start_sized(wal_level, tls, addresses, 20)
    }

    fn start_sized(wal_level: &str, tls: &str, addresses: &str, slots: usize) -> Postgres {
        let dir = std::env::temp_dir().join(unique("pgkafka-pg"));
        let pid = std::process::id().to_string();
        let port = dev_env(&[
            "pg-up",
            &dir.to_string_lossy(),
            &pid,
            wal_level,
            tls,
            addresses,
            &slots.to_string(),
        ]);
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

    /// The tables `publication` publishes, as `schema.table`, sorted.
    pub async fn published_tables(&self, publication: &str) -> Vec<String> {
        self.client
            .query(
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables
                  WHERE pubname = $1 ORDER BY 1",
                &[&publication],
            )
            .await
            .expect("publication tables")
            .iter()
            .map(|r| r.get(0))
            .collect()
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
