//! Start-up checks and provisioning on the SQL session: `wal_level`, the
//! listeners' tables, the publication and the slot. Identifiers are always
//! quoted; values are always bind parameters.

use std::collections::HashMap;

use pgkafka_crds::{PgKafkaConnectorSpec, QualifiedTable};
use tokio_postgres::Client;

use crate::catalog::{table_info, TableInfo};
use crate::error::PgError;
use crate::lsn::Lsn;
use crate::slot_check::Delivered;

#[path = "provision_slot.rs"]
mod slot_setup;
pub use slot_setup::create_slot_sql;
use slot_setup::ensure_slot;

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

/// What a publication publishes: tables, and schemas whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Tables named one by one (none of a schema published whole).
    pub tables: Vec<QualifiedTable>,
    /// Schemas published whole (`TABLES IN SCHEMA`): a table created in
    /// one is published from its first row.
    pub schemas: Vec<String>,
}

impl Published {
    /// `TABLE "s"."t", ..., TABLES IN SCHEMA "x", ...` (empty for nothing).
    fn clause(&self) -> String {
        let mut parts = Vec::new();
        if !self.tables.is_empty() {
            parts.push(format!("TABLE {}", table_list(&self.tables)));
        }
        if !self.schemas.is_empty() {
            let schemas: Vec<String> = self.schemas.iter().map(|s| quote_ident(s)).collect();
            parts.push(format!("TABLES IN SCHEMA {}", schemas.join(", ")));
        }
        parts.join(", ")
    }
}

/// `CREATE PUBLICATION "p" FOR TABLE "s"."t", ..., TABLES IN SCHEMA "x" WITH
/// (publish_via_partition_root = true)`: a partitioned table's changes then
/// arrive as the table the listener names, whichever partition holds the row
/// (and partitions attached later too).
pub(crate) fn create_publication_sql(name: &str, what: &Published) -> String {
    let clause = what.clause();
    let for_clause = if clause.is_empty() {
        String::new()
    } else {
        format!(" FOR {clause}")
    };
    format!(
        "CREATE PUBLICATION {}{for_clause} WITH (publish_via_partition_root = true)",
        quote_ident(name)
    )
}

/// `ALTER PUBLICATION "p" SET (publish_via_partition_root = true)`
fn via_root_sql(name: &str) -> String {
    format!(
        "ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
        quote_ident(name)
    )
}

/// `ALTER PUBLICATION "p" SET TABLE "s"."t", ..., TABLES IN SCHEMA "x"`
/// (`None` for nothing: PostgreSQL has no SET of nothing).
pub(crate) fn set_tables_sql(name: &str, what: &Published) -> Option<String> {
    let clause = what.clause();
    (!clause.is_empty()).then(|| format!("ALTER PUBLICATION {} SET {clause}", quote_ident(name)))
}

/// `ALTER PUBLICATION "p" ADD TABLE "s"."t", ...`
pub(crate) fn add_tables_sql(name: &str, tables: &[QualifiedTable]) -> String {
    format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        quote_ident(name),
        table_list(tables)
    )
}

/// `DROP PUBLICATION IF EXISTS "p"`
pub fn drop_publication_sql(name: &str) -> String {
    format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name))
}

/// The spec with its pattern listeners expanded against the database's
/// tables (`PgKafkaConnectorSpec::expand`); the spec itself when it has none.
pub async fn expand(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
) -> Result<PgKafkaConnectorSpec, PgError> {
    if !spec.has_patterns() {
        return Ok(spec.clone());
    }
    Ok(spec.expand(&crate::catalog::user_tables(client).await?))
}

/// Checks the server and reads every listened table, changing nothing.
pub async fn inspect(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
) -> Result<HashMap<QualifiedTable, TableInfo>, PgError> {
    check_wal_level(client).await?;
    check_tables(client, spec, &spec.tables()).await
}

/// The slot, ensured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ensured {
    /// Its confirmed position (a new slot's consistent point).
    pub start: Lsn,
    /// Changes after what was delivered were lost on the way
    /// (`spec.slot.onLoss` accepted it): under `resnapshot`, snapshot again.
    pub gap: bool,
}

/// Checks the server and the listened tables (pattern listeners expanded),
/// then ensures the publication and the slot, never past what was `delivered` unless `spec.slot.onLoss`
/// says so ([`crate::slot_check`]).
pub async fn provision(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
    delivered: Delivered,
) -> Result<Ensured, PgError> {
    let expanded = &expand(client, spec).await?;
    inspect(client, expanded).await?;
    ensure(client, (spec, expanded), delivered).await
}

/// Ensures the publication and the slot (see [`provision`]) for the spec
/// as `written` and as `expanded` against the catalog.
pub async fn ensure(
    client: &Client,
    (written, spec): (&PgKafkaConnectorSpec, &PgKafkaConnectorSpec),
    delivered: Delivered,
) -> Result<Ensured, PgError> {
    let what = to_publish(client, written, spec).await?;
    ensure_publication(client, spec, &what).await?;
    ensure_slot(client, spec, delivered).await
}

/// Makes `tables` (just matched by a pattern listener, while streaming)
/// part of the publication: a managed one gets those it lacks (`ADD TABLE`,
/// so nothing it publishes already changes); one the connector does not
/// manage is left alone. Returns the tables still not published.
pub async fn publish_added(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
    tables: &[QualifiedTable],
) -> Result<Vec<QualifiedTable>, PgError> {
    let name = &spec.publication.name;
    if publication_flags(client, name)
        .await?
        .is_some_and(|f| f.all_tables)
    {
        return Ok(Vec::new());
    }
    let published = published_tables(client, name).await?;
    let missing: Vec<QualifiedTable> = tables
        .iter()
        .filter(|t| !published.contains(t))
        .cloned()
        .collect();
    if missing.is_empty() || !spec.publication.create {
        return Ok(missing);
    }
    tracing::info!(publication = %name, tables = %table_list(&missing), "adding tables to the publication");
    client
        .batch_execute(&add_tables_sql(name, &missing))
        .await
        .map_err(PgError::during(format!(
            "adding {} to publication {}",
            table_list(&missing),
            quote_ident(name)
        )))?;
    Ok(Vec::new())
}

/// What the spec publishes: schemas whole where a listener of the spec as
/// `written` selects one by name alone (`tables: {schemas: [name]}`) and
/// the role may publish a schema (PostgreSQL 15 asks a superuser), every
/// other table of the spec as `expanded` one by one.
async fn to_publish(
    client: &Client,
    written: &PgKafkaConnectorSpec,
    expanded: &PgKafkaConnectorSpec,
) -> Result<Published, PgError> {
    let mut schemas: Vec<String> = written
        .listeners
        .iter()
        .filter_map(|l| l.tables.as_ref()?.whole_schema().map(str::to_owned))
        .collect();
    schemas.sort();
    schemas.dedup();
    if !schemas.is_empty() {
        let row = client
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(PgError::during("reading the role's attributes"))?;
        if !row.get::<_, bool>(0) {
            tracing::info!(schemas = %schemas.join(", "),
                "not a superuser: whole schemas are published table by table (a new table joins when the engine finds it)");
            schemas.clear();
        }
    }
    let tables = expanded
        .tables()
        .into_iter()
        .filter(|t| !schemas.contains(&t.schema))
        .collect();
    Ok(Published { tables, schemas })
}

/// The schemas `name` publishes whole.
async fn published_schemas(client: &Client, name: &str) -> Result<Vec<String>, PgError> {
    let mut schemas: Vec<String> = client
        .query(
            "SELECT n.nspname::text FROM pg_publication_namespace pn
               JOIN pg_publication p ON p.oid = pn.pnpubid
               JOIN pg_namespace n ON n.oid = pn.pnnspid
              WHERE p.pubname = $1",
            &[&name],
        )
        .await
        .map_err(PgError::during("listing the publication's schemas"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    schemas.sort();
    Ok(schemas)
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
                field: format!("{}.table", spec.listener_field(i)),
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

/// What `pg_publication` says of a publication.
#[derive(Debug, Clone, Copy)]
struct PublicationFlags {
    /// `FOR ALL TABLES`.
    all_tables: bool,
    /// `publish_via_partition_root`.
    via_root: bool,
}

/// The publication `name`'s flags; `None` when it does not exist.
async fn publication_flags(
    client: &Client,
    name: &str,
) -> Result<Option<PublicationFlags>, PgError> {
    let row = client
        .query_opt(
            "SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(PgError::during("looking up the publication"))?;
    Ok(row.map(|row| PublicationFlags {
        all_tables: row.get(0),
        via_root: row.get(1),
    }))
}

async fn ensure_publication(
    client: &Client,
    spec: &PgKafkaConnectorSpec,
    what: &Published,
) -> Result<(), PgError> {
    let name = &spec.publication.name;
    let Some(flags) = publication_flags(client, name).await? else {
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
            .batch_execute(&create_publication_sql(name, what))
            .await
            .map_err(PgError::during(format!(
                "creating publication {}",
                quote_ident(name)
            )));
    };
    if flags.all_tables {
        return Ok(());
    }
    if spec.publication.create && !flags.via_root {
        publish_via_root(client, name).await?;
    }
    let tables = spec.tables();
    let published = published_tables(client, name).await?;
    let missing: Vec<QualifiedTable> = tables
        .iter()
        .filter(|t| !published.contains(t))
        .cloned()
        .collect();
    let extra = published.iter().any(|t| !tables.contains(t));
    let schemas_differ = published_schemas(client, name).await? != what.schemas;
    if missing.is_empty() && !((extra || schemas_differ) && spec.publication.create) {
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
    let Some(sql) = set_tables_sql(name, what) else {
        tracing::warn!(publication = %name, "no listener matches a table: the publication is left as it is");
        return Ok(());
    };
    tracing::info!(publication = %name, tables = %table_list(&what.tables), schemas = %what.schemas.join(", "),
        "setting the publication's tables");
    client
        .batch_execute(&sql)
        .await
        .map_err(PgError::during(format!(
            "altering publication {}",
            quote_ident(name)
        )))
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
        let only = |tables: Vec<QualifiedTable>| Published {
            tables,
            schemas: Vec::new(),
        };
        assert_eq!(
            set_tables_sql("pub ü", &only(vec![t])).as_deref(),
            Some(r#"ALTER PUBLICATION "pub ü" SET TABLE "ventes é"."commandes ""🚚""""#)
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
        let only = |tables: &[QualifiedTable]| Published {
            tables: tables.to_vec(),
            schemas: Vec::new(),
        };
        assert_eq!(
            create_publication_sql("Pub\"lic", &only(&tables)),
            r#"CREATE PUBLICATION "Pub""lic" FOR TABLE "public"."orders", "My.Schema"."x""; DROP TABLE y; --" WITH (publish_via_partition_root = true)"#
        );
        assert_eq!(
            via_root_sql("a\"b"),
            r#"ALTER PUBLICATION "a""b" SET (publish_via_partition_root = true)"#
        );
        assert_eq!(
            add_tables_sql("p", &tables[1..]),
            r#"ALTER PUBLICATION "p" ADD TABLE "My.Schema"."x""; DROP TABLE y; --""#
        );
        assert_eq!(
            set_tables_sql("p", &only(&tables[..1])).as_deref(),
            Some(r#"ALTER PUBLICATION "p" SET TABLE "public"."orders""#)
        );
        let both = Published {
            tables: tables[..1].to_vec(),
            schemas: vec!["sales".into(), "We\"ird".into()],
        };
        assert_eq!(
            create_publication_sql("p", &both),
            r#"CREATE PUBLICATION "p" FOR TABLE "public"."orders", TABLES IN SCHEMA "sales", "We""ird" WITH (publish_via_partition_root = true)"#
        );
        assert_eq!(
            create_publication_sql("p", &Published::default()),
            r#"CREATE PUBLICATION "p" WITH (publish_via_partition_root = true)"#
        );
        assert_eq!(set_tables_sql("p", &Published::default()), None);
    }
}
