//! The keys the stream changed while a chunk was open: from its low
//! watermark to its high one, the transform stage tells every captured
//! change of a watched table ([`KeyWatch`]); at the high watermark those
//! rows are dropped from the chunk, since the stream already carried a
//! newer image of each.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use pgkafka_crds::QualifiedTable;

use crate::transform::watch::KeyWatch;

/// What changed in one table since a chunk's low watermark.
#[derive(Debug, Default)]
pub(super) struct ChangedKeys {
    /// Record keys (JSON of the key columns) of changed rows, old and new.
    pub keys: HashSet<Bytes>,
    /// The table was truncated: every row read may be gone.
    pub truncated: bool,
}

/// Open chunks by id, each with its table and what changed in it (two
/// chunks of one table may be open at once).
#[derive(Debug, Default)]
pub(super) struct Watched(HashMap<u64, (QualifiedTable, ChangedKeys)>);

impl Watched {
    /// Chunk `id` of `table` opened: note its table's changes from now on.
    pub fn open(&mut self, id: u64, table: QualifiedTable) {
        self.0.insert(id, (table, ChangedKeys::default()));
    }

    /// Chunk `id` closed: what changed while it was open.
    pub fn close(&mut self, id: u64) -> ChangedKeys {
        self.0.remove(&id).map(|(_, c)| c).unwrap_or_default()
    }

    fn each(&mut self, table: &QualifiedTable, mut f: impl FnMut(&mut ChangedKeys)) {
        for (t, changed) in self.0.values_mut() {
            if t == table {
                f(changed);
            }
        }
    }
}

impl KeyWatch for Watched {
    fn watches(&self, table: &QualifiedTable) -> bool {
        !self.0.is_empty() && self.0.values().any(|(t, _)| t == table)
    }

    fn changed(&mut self, table: &QualifiedTable, key: Bytes) {
        self.each(table, |c| {
            c.keys.insert(key.clone());
        });
    }

    fn truncated(&mut self, table: &QualifiedTable) {
        self.each(table, |c| c.truncated = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_chunks_of_the_table_note_changes() {
        let orders = QualifiedTable::parse("public.orders").expect("valid");
        let other = QualifiedTable::parse("public.other").expect("valid");
        let mut w = Watched::default();
        assert!(!w.watches(&orders));
        w.open(1, orders.clone());
        w.open(2, orders.clone());
        assert!(w.watches(&orders) && !w.watches(&other));
        w.changed(&orders, Bytes::from_static(b"k1"));
        w.changed(&other, Bytes::from_static(b"k2"));
        let first = w.close(1);
        assert_eq!(first.keys.len(), 1);
        assert!(first.keys.contains(&Bytes::from_static(b"k1")));
        w.truncated(&orders);
        assert!(
            w.close(2).truncated,
            "the other open chunk heard the truncate"
        );
        assert!(!w.watches(&orders), "nothing open");
        assert!(
            w.close(9).keys.is_empty(),
            "an unknown chunk changed nothing"
        );
    }
}
