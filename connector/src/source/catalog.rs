//! What the catalog says about a listened table: its columns as pgoutput will
//! send them, its replica identity, and its primary key.

use pgkafka_crds::QualifiedTable;
use tokio_postgres::Client;

use super::error::PgError;
use crate::event::{Column, TableShape};

/// A listened table.
#[derive(Debug, Clone)]
pub(crate) struct TableInfo {
    /// Name, columns and replica identity.
    pub shape: TableShape,
    /// Primary-key columns, in key order (empty without a primary key).
    pub primary_key: Vec<String>,
}

/// Reads `table`; `None` when it does not exist (or is not a table).
pub(crate) async fn table_info(
    client: &Client,
    table: &QualifiedTable,
) -> Result<Option<TableInfo>, PgError> {
    let rows = client
        .query(
            "SELECT c.relreplident::text, a.attname::text, a.atttypid,
                    array_position(pk.indkey::int2[], a.attnum),
                    coalesce(a.attnum = ANY(ri.indkey::int2[]), false)
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
            type_modifier: -1,
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
