//! The operator's side of PostgreSQL: provision the publication and slot,
//! read the slot's state for the status, and drop both under
//! `reclaimPolicy: Delete`. The SQL itself is the crate `pgkafka-postgres`,
//! which the engine uses too (it carries no Kafka client).

use async_trait::async_trait;
use kube::ResourceExt;
use pgkafka_crds::PgKafkaConnector;
use pgkafka_postgres::connection::connect;
use pgkafka_postgres::provision::provision;
use pgkafka_postgres::slot::{drop_slot_and_publication, read_slot};
use pgkafka_postgres::slot_check::Delivered;
use pgkafka_postgres::PgError;
use tokio_postgres::Client;

use crate::error::Error;

pub use pgkafka_postgres::credentials::PgCredentials as Credentials;
pub use pgkafka_postgres::slot::{Dropped, SlotState};

/// Everything the reconciler asks of PostgreSQL. The real implementation is
/// [`Postgres`]; API-contract tests substitute a recording double so they can
/// focus on Kubernetes traffic (the real one is tested against a real server).
#[async_trait]
pub trait Database: Send + Sync {
    /// Checks wal_level and the tables, and ensures publication and slot,
    /// never past what was `delivered` (the last `confirmedFlushLSN` the
    /// status showed) unless `spec.slot.onLoss` says so.
    async fn provision(
        &self,
        c: &PgKafkaConnector,
        creds: &Credentials,
        delivered: Delivered,
    ) -> Result<(), Error>;
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
    async fn connect(&self, c: &PgKafkaConnector, creds: &Credentials) -> Result<Client, PgError> {
        let application_name = format!("pgkafka-operator-{}", c.name_any());
        connect(&application_name, &c.spec.postgres, creds).await
    }
}

#[async_trait]
impl Database for Postgres {
    async fn provision(
        &self,
        c: &PgKafkaConnector,
        creds: &Credentials,
        delivered: Delivered,
    ) -> Result<(), Error> {
        let client = self.connect(c, creds).await?;
        provision(&client, &c.spec, delivered).await?;
        Ok(())
    }

    async fn slot_state(
        &self,
        c: &PgKafkaConnector,
        creds: &Credentials,
    ) -> Result<Option<SlotState>, Error> {
        let client = self.connect(c, creds).await?;
        Ok(read_slot(&client, &c.spec.slot.name).await?)
    }

    async fn drop_all(&self, c: &PgKafkaConnector, creds: &Credentials) -> Result<Dropped, Error> {
        let client = self.connect(c, creds).await?;
        let spec = &c.spec;
        Ok(drop_slot_and_publication(&client, &spec.slot.name, &spec.publication.name).await?)
    }
}
