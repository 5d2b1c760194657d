//! The relation cache: what each relation OID in the stream is and which
//! columns form its record key. Rebuilt from every Relation message, so a
//! table altered mid-stream is described correctly from its next change on.
//! Which listener captures a relation is routing's business, not this one's.

use std::collections::HashMap;
use std::sync::Arc;

use pgkafka_crds::QualifiedTable;

use super::pgoutput::RelationBody;
use crate::event::{Relation, TableShape};

/// Why a relation cannot be used as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: column {column:?} does not exist in {table} (columns: {available})")]
pub(crate) struct UnknownKeyColumn {
    /// The spec field naming the key columns.
    pub field: String,
    /// The column asked for.
    pub column: String,
    /// The table.
    pub table: QualifiedTable,
    /// The columns it has.
    pub available: String,
}

/// Configured key columns of one table, with the spec field they come from.
#[derive(Debug, Clone)]
pub(crate) struct KeyColumns {
    /// `spec.listeners[i].keyColumns`.
    pub field: String,
    /// Column names, in key order.
    pub columns: Vec<String>,
}

/// How a table's record key is chosen, from configuration and catalog.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyPolicy {
    /// Explicit `keyColumns`, by table.
    pub key_columns: HashMap<QualifiedTable, KeyColumns>,
    /// Primary-key columns by table, read from the catalog at session start.
    pub primary_keys: HashMap<QualifiedTable, Vec<String>>,
}

impl KeyPolicy {
    /// Positions of the key columns of `shape`: the configured ones, else the
    /// primary key, else the replica identity.
    fn key_of(&self, shape: &TableShape) -> Result<Vec<usize>, UnknownKeyColumn> {
        let position = |name: &str| shape.columns.iter().position(|c| c.name == name);
        if let Some(configured) = self.key_columns.get(&shape.table) {
            return configured
                .columns
                .iter()
                .map(|n| {
                    position(n).ok_or_else(|| UnknownKeyColumn {
                        field: configured.field.clone(),
                        column: n.clone(),
                        table: shape.table.clone(),
                        available: shape
                            .columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                })
                .collect();
        }
        match self.primary_keys.get(&shape.table) {
            Some(pk) if pk.iter().all(|n| position(n).is_some()) => {
                Ok(pk.iter().filter_map(|n| position(n)).collect())
            }
            _ => Ok(shape
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_key)
                .map(|(i, _)| i)
                .collect()),
        }
    }
}

/// Relation OID to resolved relation.
#[derive(Debug, Default)]
pub(crate) struct RelationCache {
    relations: HashMap<u32, Arc<Relation>>,
}

impl RelationCache {
    /// Records (or replaces) a relation from its Relation message.
    pub fn insert(
        &mut self,
        body: RelationBody,
        policy: &KeyPolicy,
    ) -> Result<Arc<Relation>, UnknownKeyColumn> {
        let shape = TableShape {
            table: QualifiedTable {
                schema: body.schema,
                name: body.name,
            },
            columns: body.columns,
            replica_identity: body.replica_identity,
        };
        let relation = Arc::new(Self::describe(body.id, shape, policy)?);
        self.relations.insert(body.id, Arc::clone(&relation));
        Ok(relation)
    }

    /// A relation for `shape` (from the stream or the catalog), its key
    /// chosen by `policy`.
    pub fn describe(
        id: u32,
        shape: TableShape,
        policy: &KeyPolicy,
    ) -> Result<Relation, UnknownKeyColumn> {
        let key = policy.key_of(&shape)?;
        let json_names = shape
            .columns
            .iter()
            .map(|c| {
                let mut name = Vec::with_capacity(c.name.len() + 3);
                super::values::write_str(&mut name, &c.name);
                name.push(b':');
                name
            })
            .collect();
        Ok(Relation {
            id,
            shape,
            json_names,
            key,
        })
    }

    /// The relation for an OID seen in a change message.
    pub fn get(&self, id: u32) -> Option<&Arc<Relation>> {
        self.relations.get(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Column;

    fn body() -> RelationBody {
        let col = |name: &str, is_key| Column {
            is_key,
            name: name.into(),
            type_oid: 23,
            value_oid: 23,
            type_modifier: -1,
        };
        RelationBody {
            id: 1,
            schema: "public".into(),
            name: "orders".into(),
            replica_identity: b'f',
            columns: vec![col("id", true), col("tenant", true), col("note", true)],
        }
    }

    fn orders() -> QualifiedTable {
        QualifiedTable::parse("public.orders").expect("valid")
    }

    #[test]
    fn key_prefers_configured_then_primary_key_then_replica_identity() {
        let mut policy = KeyPolicy::default();
        let mut cache = RelationCache::default();
        // Replica identity FULL flags every column.
        assert_eq!(
            cache.insert(body(), &policy).expect("ok").key,
            vec![0, 1, 2]
        );
        policy
            .primary_keys
            .insert(orders(), vec!["tenant".into(), "id".into()]);
        assert_eq!(cache.insert(body(), &policy).expect("ok").key, vec![1, 0]);
        policy.key_columns.insert(
            orders(),
            KeyColumns {
                field: "spec.listeners[0].keyColumns".into(),
                columns: vec!["note".into()],
            },
        );
        let rel = cache.insert(body(), &policy).expect("ok");
        assert_eq!(rel.key, vec![2]);
        assert_eq!(rel.json_names[0], b"\"id\":");
        assert!(Arc::ptr_eq(cache.get(1).expect("cached"), &rel));
    }

    #[test]
    fn unknown_key_column_names_listener_and_columns() {
        let mut policy = KeyPolicy::default();
        policy.key_columns.insert(
            orders(),
            KeyColumns {
                field: "spec.listeners[3].keyColumns".into(),
                columns: vec!["nope".into()],
            },
        );
        let err = RelationCache::default()
            .insert(body(), &policy)
            .expect_err("unknown column");
        assert_eq!(
            err.to_string(),
            "spec.listeners[3].keyColumns: column \"nope\" does not exist in \"public\".\"orders\" (columns: id, tenant, note)"
        );
    }
}
