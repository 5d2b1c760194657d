//! The slot as PostgreSQL itself reports it (`pg_replication_slots`), for
//! status and for deciding whether it may be dropped.

use pgkafka_crds::ReplicationStatus;
use tokio_postgres::Client;

use crate::error::PgError;
use crate::provision::{drop_publication_sql, quote_ident};

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
    /// A failover slot (PostgreSQL 17+; `None` before).
    pub failover: Option<bool>,
    /// Synchronized from the primary (PostgreSQL 17+; `None` before).
    pub synced: Option<bool>,
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
            failover: self.failover,
            synced: self.synced,
        }
    }
}

/// Reads one slot; `None` when it does not exist.
pub async fn read_slot(client: &Client, slot: &str) -> Result<Option<SlotState>, PgError> {
    let row = client
        .query_opt(
            // failover and synced exist from PostgreSQL 17 on: read through
            // the row's JSON, which is NULL for a column a server lacks.
            "SELECT active, confirmed_flush_lsn::text, restart_lsn::text, wal_status,
                    (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint,
                    (to_jsonb(s) ->> 'failover')::boolean, (to_jsonb(s) ->> 'synced')::boolean
               FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(PgError::during(format!("reading slot {slot:?}")))?;
    Ok(row.map(|r| SlotState {
        active: r.get(0),
        confirmed_flush_lsn: r.get(1),
        restart_lsn: r.get(2),
        wal_status: r.get(3),
        lag_bytes: r.get(4),
        failover: r.get(5),
        synced: r.get(6),
    }))
}

/// What dropping found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Slot and publication are gone.
    Done,
    /// The slot is still held by a walsender: the engine is not gone yet.
    SlotActive,
}

/// Drops the slot (unless a walsender holds it) and then the publication.
/// Dropping what is already gone is not an error.
pub async fn drop_slot_and_publication(
    client: &Client,
    slot: &str,
    publication: &str,
) -> Result<Dropped, PgError> {
    if let Some(state) = read_slot(client, slot).await? {
        if state.active {
            return Ok(Dropped::SlotActive);
        }
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map_err(PgError::during(format!("dropping slot {slot:?}")))?;
    }
    client
        .batch_execute(&drop_publication_sql(publication))
        .await
        .map_err(PgError::during(format!(
            "dropping publication {}",
            quote_ident(publication)
        )))?;
    Ok(Dropped::Done)
}
