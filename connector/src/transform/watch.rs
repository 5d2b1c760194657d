//! Who wants to know which row keys the stream changes: the snapshot
//! module, which drops those keys from a chunk open between its watermarks.
//! The transform stage computes record keys anyway; it tells a [`KeyWatch`]
//! and keeps no snapshot state of its own.

use bytes::Bytes;
use pgkafka_crds::QualifiedTable;

/// Told of every captured change of a table it watches.
pub(crate) trait KeyWatch {
    /// Whether changes of `table` are wanted now (asked for every change,
    /// so it must be cheap).
    fn watches(&self, table: &QualifiedTable) -> bool;
    /// A captured change of `table` touched the row with record `key` (the
    /// old and the new image each tell their key).
    fn changed(&mut self, table: &QualifiedTable, key: Bytes);
    /// `table` was truncated: every row read before may be gone.
    fn truncated(&mut self, table: &QualifiedTable);
}

/// Watches nothing (tests of the stage alone).
#[cfg(test)]
pub(crate) struct NoWatch;

#[cfg(test)]
impl KeyWatch for NoWatch {
    fn watches(&self, _: &QualifiedTable) -> bool {
        false
    }
    fn changed(&mut self, _: &QualifiedTable, _: Bytes) {}
    fn truncated(&mut self, _: &QualifiedTable) {}
}
