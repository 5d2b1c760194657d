//! What the catalog says about a listened table: its columns as pgoutput will
//! send them, its replica identity, and its primary key.

use pgkafka_crds::QualifiedTable;
use tokio_postgres::Client;

use crate::error::PgError;
use crate::shape::{Column, TableShape};

/// A listened table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Name, columns and replica identity.
    pub shape: TableShape,
    /// Primary-key columns, in key order (empty without a primary key).
    pub primary_key: Vec<String>,
}

/// Every table a listener may select by pattern: ordinary and partitioned
/// tables (a partition is captured as its root), outside PostgreSQL's own
/// schemas, sorted.
pub async fn user_tables(client: &Client) -> Result<Vec<QualifiedTable>, PgError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
              ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(PgError::during("listing the database's tables"))?;
    Ok(rows
        .iter()
        .map(|r| QualifiedTable {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// Reads `table`; `None` when it does not exist (or is not a table).
pub async fn table_info(
    client: &Client,
    table: &QualifiedTable,
) -> Result<Option<TableInfo>, PgError> {
    let rows = client
        .query(
            "SELECT c.relreplident::text, a.attname::text, a.atttypid,
                    array_position(pk.indkey::int2[], a.attnum),
                    coalesce(a.attnum = ANY(ri.indkey::int2[]), false), a.atttypmod
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_attribute a
                      ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
               LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
               LEFT JOIN pg_index ri ON ri.indrelid = c.oid AND ri.indisreplident
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
              ORDER BY a.attnum",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(PgError::during(format!("looking up table {table}")))?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let identity = first.get::<_, String>(0).bytes().next().unwrap_or(b'd');
    let mut columns = Vec::with_capacity(rows.len());
    let mut pk: Vec<(i32, String)> = Vec::new();
    for row in &rows {
        let Some(name) = row.get::<_, Option<String>>(1) else {
            continue;
        };
        let pk_position: Option<i32> = row.get(3);
        let in_identity_index: bool = row.get(4);
        let is_key = match identity {
            b'f' => true,
            b'n' => false,
            b'i' => in_identity_index,
            _ => pk_position.is_some(),
        };
        if let Some(p) = pk_position {
            pk.push((p, name.clone()));
        }
        columns.push(Column {
            is_key,
            name,
            type_oid: row.get(2),
            value_oid: row.get(2),
            type_modifier: row.get(5),
        });
    }
    pk.sort();
    Ok(Some(TableInfo {
        shape: TableShape {
            table: table.clone(),
            columns,
            replica_identity: identity,
        },
        primary_key: pk.into_iter().map(|(_, n)| n).collect(),
    }))
}

/// The key a table is snapshotted by: `configured` (`keyColumns`) when
/// given, else the primary key. Either must be unique and not null, or a
/// chunk could skip or repeat rows; `field` names the spec field in errors.
/// Returns each key column's position in `shape` and SQL type.
pub async fn snapshot_key(
    client: &Client,
    shape: &TableShape,
    primary_key: &[String],
    configured: Option<&[String]>,
    field: &str,
) -> Result<(Vec<usize>, Vec<String>), PgError> {
    let setup = |message: String| PgError::Setup {
        field: field.to_owned(),
        message,
    };
    let table = &shape.table;
    let names: Vec<String> = match configured {
        Some(cols) => cols.to_vec(),
        None if !primary_key.is_empty() => primary_key.to_vec(),
        None => {
            return Err(setup(format!(
                "{table} has no primary key, so its rows cannot be snapshotted in key order: \
                 give it one, or set keyColumns to columns that are unique and not null \
                 (or spec.snapshot.mode: never)"
            )))
        }
    };
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    EXISTS (SELECT 1 FROM pg_index i
                             WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL
                               AND i.indexprs IS NULL
                               AND (SELECT array_agg(x ORDER BY x) FROM unnest(i.indkey::int2[]) x)
                                 = (SELECT array_agg(b.attnum ORDER BY b.attnum) FROM pg_attribute b
                                     WHERE b.attrelid = c.oid AND b.attname = ANY($3)))
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = ANY($3)
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name, &names],
        )
        .await
        .map_err(PgError::during(format!("reading the key of {table}")))?;
    let mut positions = Vec::with_capacity(names.len());
    let mut types = Vec::with_capacity(names.len());
    for name in &names {
        let row = rows
            .iter()
            .find(|r| r.get::<_, String>(0) == *name)
            .ok_or_else(|| setup(format!("{table} has no column {name:?}")))?;
        if !row.get::<_, bool>(2) || !row.get::<_, bool>(3) {
            return Err(setup(format!(
                "the key columns {names:?} of {table} must be NOT NULL and have a unique index \
                 on exactly them, or a snapshot could miss or repeat rows"
            )));
        }
        let position = shape
            .columns
            .iter()
            .position(|c| &c.name == name)
            .ok_or_else(|| setup(format!("{table} has no column {name:?}")))?;
        positions.push(position);
        types.push(row.get::<_, String>(1));
    }
    Ok((positions, types))
}
