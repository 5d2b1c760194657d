//! The relation cache: what each relation OID in the stream is, which listener
//! captures it, and which columns form its record key. Rebuilt from every
//! Relation message, so a table altered mid-stream is described correctly from
//! its next change on.

use std::collections::HashMap;
use std::sync::Arc;

use pgkafka_crds::QualifiedTable;

use super::pgoutput::{Column, RelationBody};

/// A table as the stream describes it, resolved against the configuration.
#[derive(Debug)]
pub struct Relation {
    /// Relation OID.
    pub id: u32,
    /// Schema-qualified name.
    pub table: QualifiedTable,
    /// Columns in the order tuples carry them.
    pub columns: Vec<Column>,
    /// Each column's name as a JSON object key with its colon: `"id":`.
    pub json_names: Vec<Vec<u8>>,
    /// Replica identity: `d`efault, `n`othing, `f`ull, `i`ndex.
    pub replica_identity: u8,
    /// The listener capturing this table, if any.
    pub listener: Option<usize>,
    /// Positions (in `columns`) of the record-key columns; empty: no key.
    pub key: Vec<usize>,
}

/// Why a relation cannot be used as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.listeners[{listener}].keyColumns: column {column:?} does not exist in {table} (columns: {available})")]
pub struct UnknownKeyColumn {
    /// Listener index.
    pub listener: usize,
    /// The column asked for.
    pub column: String,
    /// The table.
    pub table: QualifiedTable,
    /// The columns it has.
    pub available: String,
}

/// How a table's record key is chosen, from configuration and catalog.
#[derive(Debug, Clone, Default)]
pub struct KeyPolicy {
    /// Listener index by table.
    pub listeners: HashMap<QualifiedTable, usize>,
    /// Explicit `keyColumns` by listener index.
    pub key_columns: HashMap<usize, Vec<String>>,
    /// Primary-key columns by table, read from the catalog at session start.
    pub primary_keys: HashMap<QualifiedTable, Vec<String>>,
}

/// Relation OID to resolved relation.
#[derive(Debug, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Arc<Relation>>,
}

impl RelationCache {
    /// Records (or replaces) a relation from its Relation message.
    pub fn insert(
        &mut self,
        body: RelationBody,
        policy: &KeyPolicy,
    ) -> Result<Arc<Relation>, UnknownKeyColumn> {
        let table = QualifiedTable {
            schema: body.schema,
            name: body.name,
        };
        let listener = policy.listeners.get(&table).copied();
        let position = |name: &str| body.columns.iter().position(|c| c.name == name);
        let key = match listener.and_then(|l| policy.key_columns.get(&l).map(|k| (l, k))) {
            Some((l, names)) => names
                .iter()
                .map(|n| {
                    position(n).ok_or_else(|| UnknownKeyColumn {
                        listener: l,
                        column: n.clone(),
                        table: table.clone(),
                        available: body
                            .columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => match policy.primary_keys.get(&table) {
                Some(pk) if pk.iter().all(|n| position(n).is_some()) => {
                    pk.iter().filter_map(|n| position(n)).collect()
                }
                _ => body
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.is_key)
                    .map(|(i, _)| i)
                    .collect(),
            },
        };
        let json_names = body
            .columns
            .iter()
            .map(|c| {
                let mut name = Vec::with_capacity(c.name.len() + 3);
                super::values::write_str(&mut name, &c.name);
                name.push(b':');
                name
            })
            .collect();
        let relation = Arc::new(Relation {
            id: body.id,
            table,
            columns: body.columns,
            json_names,
            replica_identity: body.replica_identity,
            listener,
            key,
        });
        self.relations.insert(body.id, Arc::clone(&relation));
        Ok(relation)
    }

    /// The relation for an OID seen in a change message.
    pub fn get(&self, id: u32) -> Option<&Arc<Relation>> {
        self.relations.get(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> RelationBody {
        let col = |name: &str, is_key| Column {
            is_key,
            name: name.into(),
            type_oid: 23,
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
        policy.listeners.insert(orders(), 0);
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
        policy.key_columns.insert(0, vec!["note".into()]);
        let rel = cache.insert(body(), &policy).expect("ok");
        assert_eq!(rel.key, vec![2]);
        assert_eq!(rel.listener, Some(0));
        assert_eq!(rel.json_names[0], b"\"id\":");
        assert!(Arc::ptr_eq(cache.get(1).expect("cached"), &rel));
    }

    #[test]
    fn unknown_key_column_names_listener_and_columns() {
        let mut policy = KeyPolicy::default();
        policy.listeners.insert(orders(), 3);
        policy.key_columns.insert(3, vec!["nope".into()]);
        let err = RelationCache::default()
            .insert(body(), &policy)
            .expect_err("unknown column");
        assert_eq!(
            err.to_string(),
            "spec.listeners[3].keyColumns: column \"nope\" does not exist in \"public\".\"orders\" (columns: id, tenant, note)"
        );
    }
}
