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
    /// The `table` label of its snapshot series (see `spec.metrics.perTable`).
    pub label: String,
}

/// The `table` label of `table`'s series, listener `l` being its listener
/// (a pattern listener's index when `perTable` is off).
pub(super) fn metric_label(table: &QualifiedTable, l: &ListenerSpec, per_table: bool) -> String {
    match l.origin.as_ref().filter(|o| o.matched && !per_table) {
        Some(o) => format!("listeners[{}]", o.index),
        None => table_name(table),
    }
}

impl Listened {
    /// The spec's listeners (one table each, patterns expanded).
    pub fn of(spec: &PgKafkaConnectorSpec) -> Vec<Listened> {
        spec.listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let table = QualifiedTable::parse(&l.table).ok()?;
                Some(Listened {
                    label: metric_label(&table, l, spec.metrics.per_table),
                    table,
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
                label: metric_label(&table, l, self.cfg.spec.metrics.per_table),
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
