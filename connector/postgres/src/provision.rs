//! Start-up checks and provisioning on the SQL session: `wal_level`, the
//! listeners' tables, the publication and the slot. Identifiers are always
//! quoted; values are always bind parameters.

use std::collections::HashMap;

use pgkafka_crds::{PgKafkaConnectorSpec, QualifiedTable};
use tokio_postgres::Client;

use crate::catalog::{table_info, TableInfo};
use crate::error::PgError;
use crate::lsn::Lsn;

/// `"na""me"`: an identifier quoted for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn table_list(tables: &[QualifiedTable]) -> String {
    tables
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE PUBLICATION "p" FOR TABLE "s"."t", ... WITH (publish_via_partition_root = true)`:
/// a partitioned table's changes then arrive as the table the listener names,
/// whichever partition holds the row (and partitions attached later too).
pub(crate) fn create_publication_sql(name: &str, tables: &[QualifiedTable]) -> String {
    format!(
        "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
        quote_ident(name),
        table_list(tables)
    )
}

/// `ALTER PUBLICATION "p" SET (publish_via_partition_root = true)`
fn via_root_sql(name: &str) -> String {
    format!(
        "ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
        quote_ident(name)
    )
}

/// `ALTER PUBLICATION "p" SET TABLE "s"."t", ...`
pub(crate) fn set_tables_sql(name: &str, tables: &[QualifiedTable]) -> String {
    format!(
        "ALTER PUBLICATION {} SET TABLE {}",
        quote_ident(name),
        table_list(tables)
    )
}

/// `DROP PUBLICATION IF EXISTS "p"`
pub fn drop_publication_sql(name: &str) -> String {
    format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name))
}

/// Checks the server and reads every listened table, changing nothing.
pub async fn inspect(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
) -> Result<HashMap<QualifiedTable, TableInfo>, PgError> {
    check_wal_level(client).await?;
    check_tables(client, spec, &spec.tables()).await
}

/// Checks the server and the listened tables, then ensures the publication
/// and the slot; returns the slot's confirmed position.
pub async fn provision(client: &Client, spec: &PgKafkaConnectorSpec) -> Result<Lsn, PgError> {
    inspect(client, spec).await?;
    ensure(client, spec).await
}

/// Ensures the publication and the slot; returns the slot's confirmed position.
pub async fn ensure(client: &Client, spec: &PgKafkaConnectorSpec) -> Result<Lsn, PgError> {
    ensure_publication(client, spec, &spec.tables()).await?;
    ensure_slot(client, spec).await
}

async fn check_wal_level(client: &Client) -> Result<(), PgError> {
    let row = client
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(PgError::during("reading wal_level"))?;
    let level: String = row.get(0);
    if level == "logical" {
        Ok(())
    } else {
        Err(PgError::Setup {
            field: "spec.postgres".into(),
            message: format!(
                "the server's wal_level is '{level}'; logical replication needs wal_level = logical \
                 (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)"
            ),
        })
    }
}

/// Every listened table must exist; returns what the catalog says of each.
async fn check_tables(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
    tables: &[QualifiedTable],
) -> Result<HashMap<QualifiedTable, TableInfo>, PgError> {
    let mut found = HashMap::new();
    for (i, table) in tables.iter().enumerate() {
        let Some(info) = table_info(client, table).await? else {
            return Err(PgError::Setup {
                field: format!("spec.listeners[{i}].table"),
                message: format!(
                    "table {table} does not exist in database {:?}",
                    spec.postgres.database
                ),
            });
        };
        found.insert(table.clone(), info);
    }
    Ok(found)
}

/// The tables `name` publishes. Without publish_via_partition_root a
/// publication lists a partitioned table's leaves: the root counts as
/// published too.
async fn published_tables(client: &Client, name: &str) -> Result<Vec<QualifiedTable>, PgError> {
    Ok(client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1
             UNION
             SELECT rn.nspname::text, rc.relname::text
               FROM pg_publication_tables pt
               JOIN pg_class rc
                 ON rc.oid = pg_partition_root(format('%I.%I', pt.schemaname, pt.tablename)::regclass)
               JOIN pg_namespace rn ON rn.oid = rc.relnamespace
              WHERE pt.pubname = $1",
            &[&name],
        )
        .await
        .map_err(PgError::during("listing the publication's tables"))?
        .iter()
        .map(|r| QualifiedTable {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// A managed publication sends a partition's rows as its root table's.
async fn publish_via_root(client: &Client, name: &str) -> Result<(), PgError> {
    tracing::info!(publication = %name, "publishing partitions as their root table");
    client
        .batch_execute(&via_root_sql(name))
        .await
        .map_err(PgError::during(format!(
            "altering publication {}",
            quote_ident(name)
        )))
}

async fn ensure_publication(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
    tables: &[QualifiedTable],
) -> Result<(), PgError> {
    let name = &spec.publication.name;
    let row = client
        .query_opt(
            "SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1",
            &[name],
        )
        .await
        .map_err(PgError::during("looking up the publication"))?;
    let Some(row) = row else {
        if !spec.publication.create {
            return Err(PgError::Setup {
                field: "spec.publication.name".into(),
                message: format!(
                    "publication {} does not exist and spec.publication.create is false",
                    quote_ident(name)
                ),
            });
        }
        tracing::info!(publication = %name, "creating publication");
        return client
            .batch_execute(&create_publication_sql(name, tables))
            .await
            .map_err(PgError::during(format!(
                "creating publication {}",
                quote_ident(name)
            )));
    };
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    if spec.publication.create && !row.get::<_, bool>(1) {
        publish_via_root(client, name).await?;
    }
    let published = published_tables(client, name).await?;
    let missing: Vec<QualifiedTable> = tables
        .iter()
        .filter(|t| !published.contains(t))
        .cloned()
        .collect();
    let extra = published.iter().any(|t| !tables.contains(t));
    if missing.is_empty() && !(extra && spec.publication.create) {
        return Ok(());
    }
    if !spec.publication.create {
        return Err(PgError::Setup {
            field: "spec.publication.name".into(),
            message: format!(
                "publication {} does not include {}; add them or set spec.publication.create",
                quote_ident(name),
                table_list(&missing)
            ),
        });
    }
    // A publication the connector manages follows its listeners exactly.
    tracing::info!(publication = %name, tables = %table_list(tables), "setting the publication's tables");
    client
        .batch_execute(&set_tables_sql(name, tables))
        .await
        .map_err(PgError::during(format!(
            "altering publication {}",
            quote_ident(name)
        )))
}

async fn ensure_slot(client: &Client, spec: &PgKafkaConnectorSpec) -> Result<Lsn, PgError> {
    let slot = &spec.slot.name;
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, coalesce(wal_status, ''), confirmed_flush_lsn::text
               FROM pg_replication_slots WHERE slot_name = $1",
            &[slot],
        )
        .await
        .map_err(PgError::during("looking up the replication slot"))?;
    let Some(row) = row else {
        if !spec.slot.create {
            return Err(PgError::Setup {
                field: "spec.slot.name".into(),
                message: format!(
                    "replication slot {slot:?} does not exist and spec.slot.create is false"
                ),
            });
        }
        tracing::info!(slot = %slot, "creating replication slot");
        return create_slot(client, slot, "creating").await;
    };
    let (plugin, database, wal_status): (Option<String>, Option<String>, String) =
        (row.get(0), row.get(1), row.get(2));
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
    if wal_status == "lost" {
        if !spec.slot.recreate_if_lost {
            return Err(PgError::Setup {
                field: "spec.slot.name".into(),
                message: format!(
                    "slot {slot:?} is invalidated (wal_status = lost): the WAL it needed was removed and changes \
                     were lost. Set spec.slot.recreateIfLost to accept that gap and start from now"
                ),
            });
        }
        tracing::warn!(slot = %slot, "slot invalidated; recreating it as spec.slot.recreateIfLost asks: changes since its last position are lost");
        client
            .query_one("SELECT pg_drop_replication_slot($1)", &[slot])
            .await
            .map_err(PgError::during(format!(
                "dropping invalidated slot {slot:?}"
            )))?;
        return create_slot(client, slot, "recreating").await;
    }
    parse_lsn(row.get(3))
}

/// Creates pgoutput slot `slot`; returns its consistent point. `doing`
/// names the step in the error.
async fn create_slot(client: &Client, slot: &str, doing: &str) -> Result<Lsn, PgError> {
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(PgError::during(format!(
            "{doing} replication slot {slot:?}"
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
    fn unicode_and_quotes_survive_quoting() {
        let t = QualifiedTable {
            schema: "ventes é".into(),
            name: "commandes \"🚚\"".into(),
        };
        assert_eq!(
            set_tables_sql("pub ü", &[t]),
            r#"ALTER PUBLICATION "pub ü" SET TABLE "ventes é"."commandes ""🚚""""#
        );
        assert_eq!(
            drop_publication_sql("a\"b"),
            r#"DROP PUBLICATION IF EXISTS "a""b""#
        );
    }

    #[test]
    fn statements_quote_hostile_names() {
        let tables = [
            QualifiedTable {
                schema: "public".into(),
                name: "orders".into(),
            },
            QualifiedTable {
                schema: "My.Schema".into(),
                name: "x\"; DROP TABLE y; --".into(),
            },
        ];
        assert_eq!(
            create_publication_sql("Pub\"lic", &tables),
            r#"CREATE PUBLICATION "Pub""lic" FOR TABLE "public"."orders", "My.Schema"."x""; DROP TABLE y; --" WITH (publish_via_partition_root = true)"#
        );
        assert_eq!(
            via_root_sql("a\"b"),
            r#"ALTER PUBLICATION "a""b" SET (publish_via_partition_root = true)"#
        );
        assert_eq!(
            set_tables_sql("p", &tables[..1]),
            r#"ALTER PUBLICATION "p" SET TABLE "public"."orders""#
        );
    }
}
