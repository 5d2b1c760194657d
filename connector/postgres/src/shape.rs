//! A table's shape, as pgoutput's Relation message or the catalog describes
//! it: the one description filters, column selections and snapshots are
//! compiled against.

use pgkafka_crds::QualifiedTable;

/// A column as pgoutput (or the catalog) describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity.
    pub is_key: bool,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// The built-in type whose rules its values follow: `type_oid` for a
    /// built-in, the base type for a domain, an array of the resolved
    /// element for an array, text for other types (`decode::types`).
    pub value_oid: u32,
    /// Type modifier (atttypmod).
    pub type_modifier: i32,
}

/// A table's shape: what the stream's Relation message or the catalog says.
/// Filters and column selections are compiled against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableShape {
    /// Schema-qualified name.
    pub table: QualifiedTable,
    /// Columns in the order tuples carry them; `is_key` marks the replica identity.
    pub columns: Vec<Column>,
    /// Replica identity: `d`efault, `n`othing, `f`ull or `i`ndex.
    pub replica_identity: u8,
}
