//! What a relation needs from the catalog that pgoutput does not send: the
//! type behind each OID outside the engine's table (domains, enums, arrays
//! of them, extension types) and, for a partition, the partitioned table at
//! the root of its tree. Asked once per type and per relation, on a SQL
//! session opened the first time it is needed.

use std::collections::HashMap;

use pgkafka_crds::{PostgresSpec, QualifiedTable};
use tokio_postgres::Client;

use super::connection::connect;
use super::error::PgError;
use crate::credentials::PgCredentials;
use crate::decode::types::{domain_modifier, needs_catalog, value_oid, TypeRow};
use crate::event::Column;

/// Catalog rows of the types met so far, by OID.
#[derive(Debug, Default)]
pub(crate) struct TypeRows(HashMap<u32, TypeRow>);

impl TypeRows {
    /// Sets each column's `value_oid`, reading the types it does not know yet.
    pub async fn resolve(
        &mut self,
        client: &Client,
        columns: &mut [Column],
    ) -> Result<(), PgError> {
        let mut wanted: Vec<u32> = columns.iter().map(|c| c.type_oid).collect();
        // Each round reads the types the last one referred to (a domain's
        // base, an array's element); chains are short.
        for _ in 0..8 {
            wanted.retain(|oid| needs_catalog(*oid) && !self.0.contains_key(oid));
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.is_empty() {
                break;
            }
            let rows = client
                .query(
                    "SELECT oid, typtype::text, typbasetype,
                            CASE WHEN typcategory = 'A' THEN typelem ELSE 0::oid END, typtypmod
                       FROM pg_type WHERE oid = ANY($1)",
                    &[&wanted],
                )
                .await
                .map_err(PgError::during("reading column types"))?;
            let mut next = Vec::new();
            for row in rows {
                let kind: String = row.get(1);
                let type_row = TypeRow {
                    kind: kind.bytes().next().unwrap_or(b'b'),
                    base: row.get(2),
                    element: row.get(3),
                    modifier: row.get(4),
                };
                next.extend(type_row.refers_to());
                self.0.insert(row.get(0), type_row);
            }
            wanted = next;
        }
        self.apply(columns);
        Ok(())
    }

    /// Whether any column has a type this cache cannot place yet.
    pub fn misses(&self, columns: &[Column]) -> bool {
        columns
            .iter()
            .any(|c| needs_catalog(c.type_oid) && !self.0.contains_key(&c.type_oid))
    }

    /// Sets `value_oid` (and a domain's modifier) from what is known,
    /// without asking.
    pub fn apply(&self, columns: &mut [Column]) {
        for column in columns {
            column.value_oid = value_oid(column.type_oid, &self.0);
            if column.type_modifier == -1 {
                if let Some(modifier) = domain_modifier(column.type_oid, &self.0) {
                    column.type_modifier = modifier;
                }
            }
        }
    }
}

/// The partitioned table at the root of `relation`'s partition tree; `None`
/// when it is not a partition (or no longer exists).
pub(crate) async fn partition_root(
    client: &Client,
    relation: u32,
) -> Result<Option<QualifiedTable>, PgError> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = pg_partition_root($1::oid::regclass) AND c.oid <> $1::oid",
            &[&relation],
        )
        .await
        .map_err(PgError::during("looking up a partition's root"))?;
    Ok(row.map(|r| QualifiedTable {
        schema: r.get(0),
        name: r.get(1),
    }))
}

/// The stream's catalog session and what it learnt.
pub(crate) struct Lookups<'a> {
    application_name: String,
    pg: &'a PostgresSpec,
    credentials: &'a PgCredentials,
    client: Option<Client>,
    /// Types met so far.
    pub types: TypeRows,
    /// Relation OID to its partition root (`None`: not a partition).
    roots: HashMap<u32, Option<QualifiedTable>>,
}

impl<'a> Lookups<'a> {
    /// Nothing asked yet; the session opens on first use.
    pub fn new(
        application_name: String,
        pg: &'a PostgresSpec,
        credentials: &'a PgCredentials,
    ) -> Self {
        Lookups {
            application_name,
            pg,
            credentials,
            client: None,
            types: TypeRows::default(),
            roots: HashMap::new(),
        }
    }

    async fn client(&mut self) -> Result<&Client, PgError> {
        let client = match self.client.take() {
            Some(open) if !open.is_closed() => open,
            _ => connect(&self.application_name, self.pg, self.credentials).await?,
        };
        Ok(self.client.insert(client))
    }

    /// Sets the columns' `value_oid`, asking the catalog only for types it
    /// has not met.
    pub async fn resolve_types(&mut self, columns: &mut [Column]) -> Result<(), PgError> {
        if !self.types.misses(columns) {
            self.types.apply(columns);
            return Ok(());
        }
        let mut types = std::mem::take(&mut self.types);
        let result = match self.client().await {
            Ok(client) => types.resolve(client, columns).await,
            Err(e) => Err(e),
        };
        self.types = types;
        result
    }

    /// The partition root of `relation`, asked once per relation.
    pub async fn root_of(&mut self, relation: u32) -> Result<Option<QualifiedTable>, PgError> {
        if let Some(known) = self.roots.get(&relation) {
            return Ok(known.clone());
        }
        let root = partition_root(self.client().await?, relation).await?;
        self.roots.insert(relation, root.clone());
        Ok(root)
    }
}
