//! The slot half of provisioning: the slot checked against what was
//! delivered ([`crate::slot_check`]), used, created or recreated.

use pgkafka_crds::{PgKafkaConnectorSpec, SlotSpec};
use tokio_postgres::Client;

use super::Ensured;
use crate::error::PgError;
use crate::lsn::Lsn;
use crate::slot_check::{decide, Delivered, FoundSlot, SlotAction};

pub(super) async fn ensure_slot(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
    delivered: Delivered,
) -> Result<Ensured, PgError> {
    let slot = &spec.slot.name;
    if spec.slot.failover {
        check_failover_support(client).await?;
    }
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, coalesce(wal_status, ''), confirmed_flush_lsn::text
               FROM pg_replication_slots WHERE slot_name = $1",
            &[slot],
        )
        .await
        .map_err(PgError::during("looking up the replication slot"))?;
    let found = match &row {
        None => None,
        Some(row) => {
            let (plugin, database): (Option<String>, Option<String>) = (row.get(0), row.get(1));
            if plugin.as_deref() != Some("pgoutput")
                || database.as_deref() != Some(spec.postgres.database.as_str())
            {
                return Err(PgError::Setup {
                    field: "spec.slot.name".into(),
                    message: format!(
                        "slot {slot:?} exists but is not a pgoutput slot of database {:?} (plugin {plugin:?}, database {database:?})",
                        spec.postgres.database
                    ),
                });
            }
            Some(FoundSlot {
                lost: row.get::<_, String>(2) == "lost",
                confirmed: parse_lsn(row.get(3))?,
            })
        }
    };
    let decision = decide(&spec.slot, found.as_ref(), delivered)?;
    if decision.gap {
        tracing::warn!(slot = %slot, delivered = ?delivered.lsn().map(|d| d.to_string()), policy = ?spec.slot.loss_policy(),
            "changes after the delivered position cannot be streamed; going on as spec.slot.onLoss says");
    }
    let start = match (decision.action, found) {
        (SlotAction::Use, Some(found)) => found.confirmed,
        (SlotAction::Recreate, _) => {
            client
                .query_one("SELECT pg_drop_replication_slot($1)", &[slot])
                .await
                .map_err(PgError::during(format!(
                    "dropping invalidated slot {slot:?}"
                )))?;
            create_slot(client, &spec.slot, "recreating").await?
        }
        (SlotAction::Create | SlotAction::Use, _) => {
            tracing::info!(slot = %slot, "creating replication slot");
            create_slot(client, &spec.slot, "creating").await?
        }
    };
    Ok(Ensured {
        start,
        gap: decision.gap,
    })
}

/// Failover slots need PostgreSQL 17: older servers are refused naming the
/// field and the version.
async fn check_failover_support(client: &Client) -> Result<(), PgError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(PgError::during("reading the server version"))?;
    let version: i32 = row.get(0);
    if version < 170_000 {
        return Err(PgError::Setup {
            field: "spec.slot.failover".into(),
            message: format!(
                "failover slots need PostgreSQL 17 or later; this server is {}.{} \
                 (server_version_num {version}): turn spec.slot.failover off or upgrade",
                version / 10_000,
                version % 10_000 / 100
            ),
        });
    }
    Ok(())
}

/// The statement that creates `slot`: pgoutput, permanent, no two-phase,
/// and a failover slot when asked (PostgreSQL 17's fifth argument).
pub fn create_slot_sql(slot: &SlotSpec) -> &'static str {
    if slot.failover {
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)"
    } else {
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')"
    }
}

/// Creates the slot; returns its consistent point. `doing` names the step
/// in the error.
async fn create_slot(client: &Client, slot: &SlotSpec, doing: &str) -> Result<Lsn, PgError> {
    let name = &slot.name;
    let row = client
        .query_one(create_slot_sql(slot), &[name])
        .await
        .map_err(PgError::during(format!(
            "{doing} replication slot {name:?}"
        )))?;
    parse_lsn(row.get(0))
}

fn parse_lsn(text: Option<String>) -> Result<Lsn, PgError> {
    let text = text.unwrap_or_else(|| "0/0".into());
    text.parse().map_err(|e| PgError::Setup {
        field: "spec.slot.name".into(),
        message: format!("the server reported an unreadable slot position: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_slots_are_created_with_postgresql_17s_fifth_argument() {
        let mut slot = SlotSpec {
            name: "s".into(),
            create: true,
            recreate_if_lost: false,
            on_loss: Default::default(),
            failover: false,
        };
        assert_eq!(
            create_slot_sql(&slot),
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')"
        );
        slot.failover = true;
        // (slot_name, plugin, temporary, twophase, failover)
        assert_eq!(
            create_slot_sql(&slot),
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)"
        );
    }
}
