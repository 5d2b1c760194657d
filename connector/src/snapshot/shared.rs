//! Snapshot state shared by the sessions, `/status` and `POST /snapshots`:
//! each table's progress and the tables asked for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pgkafka_crds::report::{SnapshotState, TableSnapshot};
use pgkafka_crds::QualifiedTable;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// A table's snapshot as kept in Kafka: what `/status` shows, and the key
/// to resume after (never shown: it holds row values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Progress {
    /// What `/status` and the resource's status show.
    #[serde(flatten)]
    pub shown: TableSnapshot,
    /// The key of the last row safely sent (text per key column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
}

/// `schema.table`, as users write it.
pub(crate) fn table_name(t: &QualifiedTable) -> String {
    format!("{}.{}", t.schema, t.name)
}

/// Snapshot state shared by the sessions, `/status` and `POST /snapshots`.
#[derive(Clone, Default)]
pub(crate) struct SharedSnapshots {
    inner: Arc<Mutex<BoardState>>,
    requested: Arc<Notify>,
}

#[derive(Default)]
struct BoardState {
    tables: BTreeMap<String, Progress>,
    requests: Vec<QualifiedTable>,
}

impl SharedSnapshots {
    fn with<T>(&self, f: impl FnOnce(&mut BoardState) -> T) -> T {
        match self.inner.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Every table's progress, for `/status`.
    pub fn tables(&self) -> Vec<TableSnapshot> {
        self.with(|s| s.tables.values().map(|p| p.shown.clone()).collect())
    }

    /// The Notify a session waits on for requests.
    pub fn notify(&self) -> Arc<Notify> {
        Arc::clone(&self.requested)
    }

    /// Asks for a snapshot of `tables` (already checked to be listened).
    pub fn request(&self, tables: Vec<QualifiedTable>) {
        self.request_with(tables, None);
    }

    /// Asks for a snapshot of `tables` for `reason`, which their status shows.
    pub fn request_because(&self, tables: Vec<QualifiedTable>, reason: &str) {
        self.request_with(tables, Some(reason));
    }

    fn request_with(&self, tables: Vec<QualifiedTable>, reason: Option<&str>) {
        self.with(|s| {
            for t in &tables {
                let mut p = pending(t);
                p.shown.reason = reason.map(str::to_owned);
                s.tables.insert(table_name(t), p);
            }
            s.requests.extend(tables);
        });
        self.requested.notify_one();
    }

    pub(super) fn take_requests(&self) -> Vec<QualifiedTable> {
        self.with(|s| std::mem::take(&mut s.requests))
    }

    pub(super) fn set(&self, progress: Progress, metrics: &Metrics) {
        self.with(|s| {
            s.tables.insert(progress.shown.table.clone(), progress);
            for state in SnapshotState::ALL {
                let n = s.tables.values().filter(|p| p.shown.state == state).count();
                metrics
                    .snapshot_tables
                    .with_label_values(&[state.as_str()])
                    .set(n as i64);
            }
        });
    }

    pub(super) fn get(&self, table: &str) -> Option<Progress> {
        self.with(|s| s.tables.get(table).cloned())
    }
}

pub(super) fn pending(t: &QualifiedTable) -> Progress {
    Progress {
        shown: TableSnapshot::pending(table_name(t)),
        after: None,
    }
}
