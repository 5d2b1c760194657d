//! The tables a snapshot may read change while the stream runs: a pattern
//! listener's new table joins (and is read at once under `initial`), a
//! dropped one leaves with whatever was being read of it.

use std::sync::atomic::Ordering;

use pgkafka_crds::{ListenerSpec, PgKafkaConnectorSpec, QualifiedTable};

use super::{table_name, Snapshots};

/// What a snapshot needs of one listener.
pub(super) struct Listened {
    pub table: QualifiedTable,
    /// `keyColumns`, when given: the key chunks are read by.
    pub key_columns: Option<Vec<String>>,
    /// The listener's spec path, for errors.
    pub field: String,
}

impl Listened {
    /// The spec's listeners (one table each, patterns expanded).
    pub fn of(spec: &PgKafkaConnectorSpec) -> Vec<Listened> {
        spec.listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                Some(Listened {
                    table: QualifiedTable::parse(&l.table).ok()?,
                    key_columns: l.key_columns.clone(),
                    field: spec.listener_field(i),
                })
            })
            .collect()
    }
}

impl Snapshots<'_> {
    /// `table` is listened to from now on (listener `l`, spec path
    /// `field`); `reason` set, it is read at once, the reason shown.
    pub fn add_table(
        &mut self,
        table: QualifiedTable,
        l: &ListenerSpec,
        field: String,
        reason: Option<&str>,
    ) {
        if self.listener_of(&table).is_none() {
            self.listeners.push(Listened {
                table: table.clone(),
                key_columns: l.key_columns.clone(),
                field,
            });
        }
        if let Some(reason) = reason {
            self.shared.request_because(vec![table], reason);
        }
    }

    /// `table` is gone: its read under way is cancelled and its chunks in
    /// flight dropped; it is no longer listened to.
    pub fn drop_table(&mut self, table: &QualifiedTable) {
        if let Some(run) = self.runs.remove(table) {
            run.cancel.store(true, Ordering::Relaxed);
        }
        self.arrived.retain(|_, c| &c.shape.table != table);
        self.lows.retain(|_, t| t != table);
        self.kept.remove(&table_name(table));
        self.listeners.retain(|l| &l.table != table);
    }
}
