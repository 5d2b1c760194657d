//! The operator's side of PostgreSQL: provision the publication and slot
//! (the engine's own checks and statements, reused), read the slot's state
//! for the status, and drop both under `reclaimPolicy: Delete`.

use std::path::PathBuf;

use async_trait::async_trait;
use kube::ResourceExt;
use pgkafka_connector::config::{EngineConfig, Secret};
use pgkafka_connector::source::{connection, provision, tls::VerifiedName};
use pgkafka_crds::{PgKafkaConnector, ReplicationStatus};
use tokio_postgres::Client;

use crate::error::Error;

/// Credentials read from the referenced Secrets.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The role.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// The CA bundle (PEM) for verify-ca / verify-full.
    pub ca_pem: Option<String>,
}

/// The slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// A walsender holds it.
    pub active: bool,
    /// Everything before it is in Kafka.
    pub confirmed_flush_lsn: Option<String>,
    /// The oldest WAL it needs.
    pub restart_lsn: Option<String>,
    /// reserved, extended, unreserved, lost.
    pub wal_status: Option<String>,
    /// `pg_current_wal_lsn() - confirmed_flush_lsn`.
    pub lag_bytes: Option<i64>,
}

impl SlotState {
    /// The status block, for `status.replication`.
    pub fn to_status(&self, slot: &str) -> ReplicationStatus {
        ReplicationStatus {
            slot_name: slot.to_owned(),
            active: self.active,
            confirmed_flush_lsn: self.confirmed_flush_lsn.clone(),
            restart_lsn: self.restart_lsn.clone(),
            wal_status: self.wal_status.clone(),
            lag_bytes: self.lag_bytes,
            last_event_time: None,
        }
    }
}

/// What dropping found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Slot and publication are gone.
    Done,
    /// The slot is still held by a walsender: the engine is not gone yet.
    SlotActive,
}

/// Everything the reconciler asks of PostgreSQL. The real implementation is
/// [`Postgres`]; API-contract tests substitute a recording double so they can
/// focus on Kubernetes traffic (the real one is tested against a real server).
#[async_trait]
pub trait Database: Send + Sync {
    /// Checks wal_level and the tables, and ensures publication and slot.
    async fn provision(&self, c: &PgKafkaConnector, creds: &Credentials) -> Result<(), Error>;
    /// The slot's state; `None` when it does not exist.
    async fn slot_state(
        &self,
        c: &PgKafkaConnector,
        creds: &Credentials,
    ) -> Result<Option<SlotState>, Error>;
    /// Drops the slot (when inactive) and the publication.
    async fn drop_all(&self, c: &PgKafkaConnector, creds: &Credentials) -> Result<Dropped, Error>;
}

/// The real database.
#[derive(Debug, Default)]
pub struct Postgres;

impl Postgres {
    async fn connect(&self, c: &PgKafkaConnector, creds: &Credentials) -> Result<Client, Error> {
        let ca_file = match &creds.ca_pem {
            Some(pem) => {
                let path = ca_path(c);
                std::fs::write(&path, pem)
                    .map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))?;
                Some(path)
            }
            None => None,
        };
        let cfg = EngineConfig {
            name: c.name_any(),
            spec: c.spec.clone(),
            user: creds.user.clone(),
            password: creds.password.clone(),
            ca_file,
            kafka_sasl: None,
            kafka_ca_file: None,
        };
        Ok(connection::connect_sql(&cfg, &VerifiedName::default()).await?)
    }
}

/// Where a connector's CA bundle is written for the SQL connection.
fn ca_path(c: &PgKafkaConnector) -> PathBuf {
    std::env::temp_dir().join(format!(
        "pgkafka-ca-{}-{}.pem",
        c.namespace().unwrap_or_default(),
        c.name_any()
    ))
}

#[async_trait]
impl Database for Postgres {
    async fn provision(&self, c: &PgKafkaConnector, creds: &Credentials) -> Result<(), Error> {
        let client = self.connect(c, creds).await?;
        provision::inspect(&client, &c.spec).await?;
        provision::ensure(&client, &c.spec).await?;
        Ok(())
    }

    async fn slot_state(
        &self,
        c: &PgKafkaConnector,
        creds: &Credentials,
    ) -> Result<Option<SlotState>, Error> {
        let client = self.connect(c, creds).await?;
        read_slot(&client, &c.spec.slot.name).await
    }

    async fn drop_all(&self, c: &PgKafkaConnector, creds: &Credentials) -> Result<Dropped, Error> {
        let client = self.connect(c, creds).await?;
        let slot = &c.spec.slot.name;
        if let Some(state) = read_slot(&client, slot).await? {
            if state.active {
                return Ok(Dropped::SlotActive);
            }
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[slot])
                .await
                .map_err(|e| sql_error(format!("dropping slot {slot:?}"), &e))?;
        }
        client
            .batch_execute(&provision::drop_publication_sql(&c.spec.publication.name))
            .await
            .map_err(|e| sql_error("dropping publication".into(), &e))?;
        Ok(Dropped::Done)
    }
}

fn sql_error(context: String, e: &tokio_postgres::Error) -> Error {
    Error::Postgres(format!(
        "{context}: {}",
        pgkafka_connector::error::postgres_detail(e)
    ))
}

/// Reads one slot from `pg_replication_slots`.
pub async fn read_slot(client: &Client, slot: &str) -> Result<Option<SlotState>, Error> {
    let row = client
        .query_opt(
            "SELECT active, confirmed_flush_lsn::text, restart_lsn::text, wal_status,
                    (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| sql_error(format!("reading slot {slot:?}"), &e))?;
    Ok(row.map(|r| SlotState {
        active: r.get(0),
        confirmed_flush_lsn: r.get(1),
        restart_lsn: r.get(2),
        wal_status: r.get(3),
        lag_bytes: r.get(4),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkafka_tests::{unique, Postgres as TestCluster, PG_PASSWORD};

    fn connector(db: &pgkafka_tests::TestDb, name: &str, tables: &str) -> PgKafkaConnector {
        let yaml = format!(
            "apiVersion: pgkafka.io/v1alpha1\nkind: PgKafkaConnector\nmetadata: {{name: {name}, namespace: test}}\nspec:
  postgres: {{host: 127.0.0.1, port: {port}, database: {db}, user: postgres, sslMode: disable}}
  publication: {{name: {name}_pub}}
  slot: {{name: {name}_slot}}
  reclaimPolicy: Delete
  kafka: {{bootstrapServers: [\"k:9092\"], topicPrefix: x}}
  listeners: [{tables}]\n",
            port = db.port,
            db = db.name,
        );
        serde_yaml::from_str(&yaml).expect("connector parses")
    }

    fn creds() -> Credentials {
        Credentials {
            user: "postgres".into(),
            password: Secret::new(PG_PASSWORD),
            ca_pem: None,
        }
    }

    async fn published(db: &pgkafka_tests::TestDb, publication: &str) -> Vec<String> {
        db.client
            .query(
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1",
                &[&publication],
            )
            .await
            .expect("publication tables")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn provisions_exactly_what_is_asked_alters_and_drops() {
        let db = TestCluster::shared().fresh_database().await;
        db.exec("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY);")
            .await;
        let name = unique("op");
        let c = connector(&db, &name, "{table: a}, {table: b}");
        let pg = Postgres;
        pg.provision(&c, &creds()).await.expect("provision");
        pg.provision(&c, &creds())
            .await
            .expect("provisioning twice is a no-op");
        assert_eq!(
            published(&db, &format!("{name}_pub")).await,
            ["public.a", "public.b"]
        );
        let slots: i64 = db
            .client
            .query_one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND plugin = 'pgoutput'", &[&format!("{name}_slot")])
            .await
            .expect("slots")
            .get(0);
        assert_eq!(slots, 1);

        // Listeners change: the publication follows.
        let changed = connector(&db, &name, "{table: b}, {table: c}");
        pg.provision(&changed, &creds()).await.expect("alter");
        assert_eq!(
            published(&db, &format!("{name}_pub")).await,
            ["public.b", "public.c"]
        );

        // Slot state matches PostgreSQL's own view.
        db.exec("INSERT INTO b VALUES (1)").await;
        let state = pg
            .slot_state(&c, &creds())
            .await
            .expect("state")
            .expect("slot exists");
        let direct = db
            .client
            .query_one(
                "SELECT confirmed_flush_lsn::text, restart_lsn::text, wal_status, active FROM pg_replication_slots WHERE slot_name = $1",
                &[&format!("{name}_slot")],
            )
            .await
            .expect("direct");
        assert_eq!(
            state.confirmed_flush_lsn,
            direct.get::<_, Option<String>>(0)
        );
        assert_eq!(state.restart_lsn, direct.get::<_, Option<String>>(1));
        assert_eq!(state.wal_status, direct.get::<_, Option<String>>(2));
        assert_eq!(state.active, direct.get::<_, bool>(3));
        assert!(
            state.lag_bytes.is_some_and(|l| l > 0),
            "the insert is behind the slot: {state:?}"
        );

        assert_eq!(
            pg.drop_all(&c, &creds()).await.expect("drop"),
            Dropped::Done
        );
        assert_eq!(
            pg.drop_all(&c, &creds()).await.expect("drop twice"),
            Dropped::Done
        );
        assert_eq!(pg.slot_state(&c, &creds()).await.expect("state"), None);
        assert!(published(&db, &format!("{name}_pub")).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn hostile_names_are_quoted_never_executed() {
        let db = TestCluster::shared().fresh_database().await;
        db.exec(r#"CREATE TABLE "we""ird; DROP TABLE victim; --" (id int PRIMARY KEY); CREATE TABLE victim (id int);"#)
            .await;
        let name = unique("hostile");
        let mut c = connector(
            &db,
            &name,
            r#"{table: 'public."we""ird; DROP TABLE victim; --"'}"#,
        );
        c.spec.publication.name = "Pub\"; DROP TABLE victim; --".into();
        Postgres.provision(&c, &creds()).await.expect("provision");
        let victim: bool = db
            .client
            .query_one("SELECT to_regclass('public.victim') IS NOT NULL", &[])
            .await
            .expect("victim")
            .get(0);
        assert!(victim, "no injected statement ran");
        assert_eq!(
            published(&db, "Pub\"; DROP TABLE victim; --").await.len(),
            1
        );
        assert_eq!(
            Postgres.drop_all(&c, &creds()).await.expect("drop"),
            Dropped::Done
        );
    }
}
