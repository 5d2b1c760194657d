//! Snapshot state shared by the sessions, `/status` and `POST /snapshots`:
//! each table's progress and what was asked of the snapshots.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pgkafka_crds::report::{SkippedTable, SnapshotState, TableSnapshot, TablesReport};
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

/// What was asked of the snapshots, in order (Debezium's signals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `execute-snapshot`: read `tables` from the start, only the rows
    /// where `condition` holds (`additional-conditions`).
    Execute {
        tables: Vec<QualifiedTable>,
        condition: Option<String>,
    },
    /// `pause-snapshot`: these tables, or every pending and running one.
    Pause(Vec<QualifiedTable>),
    /// `resume-snapshot`: these tables, or every paused one.
    Resume(Vec<QualifiedTable>),
    /// `stop-snapshot`: these tables, or every unfinished one.
    Stop(Vec<QualifiedTable>),
}

#[derive(Default)]
struct BoardState {
    tables: BTreeMap<String, Progress>,
    commands: Vec<Command>,
    /// The tables listened to: the spec's exact ones until start-up has
    /// matched the pattern listeners, then every matched table too.
    listened: Vec<QualifiedTable>,
    /// Tables a pattern matched that are not captured, with why.
    skipped: Vec<SkippedTable>,
}

impl SharedSnapshots {
    fn with<T>(&self, f: impl FnOnce(&mut BoardState) -> T) -> T {
        match self.inner.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The tables a snapshot may be asked of.
    pub fn listened(&self) -> Vec<QualifiedTable> {
        self.with(|s| s.listened.clone())
    }

    /// Sets the tables listened to (at build, and once patterns matched).
    pub fn set_listened(&self, tables: Vec<QualifiedTable>) {
        self.with(|s| s.listened = tables);
    }

    /// The listened tables for `/status`: count, first names, skipped.
    pub fn tables_report(&self) -> TablesReport {
        self.with(|s| {
            let names = s.listened.iter().map(table_name).collect();
            TablesReport::of(names, s.skipped.clone())
        })
    }

    /// Tables matched while streaming: `added` are listened to from now on,
    /// `dropped` no longer (their snapshot progress leaves the status too),
    /// `skipped` could not be captured (replacing any earlier word on them).
    pub fn follow_tables(
        &self,
        added: &[QualifiedTable],
        dropped: &[QualifiedTable],
        skipped: Vec<SkippedTable>,
        metrics: &Metrics,
    ) {
        self.with(|s| {
            s.listened.retain(|t| !dropped.contains(t));
            s.listened.extend(added.iter().cloned());
            for t in dropped {
                s.tables.remove(&table_name(t));
            }
            let gone = |name: &String| {
                dropped.iter().chain(added).any(|t| &table_name(t) == name)
                    || skipped.iter().any(|k| &k.table == name)
            };
            s.skipped.retain(|k| !gone(&k.table));
            s.skipped.extend(skipped);
            count_states(s, metrics);
        });
    }

    /// Every table's progress, for `/status`.
    pub fn tables(&self) -> Vec<TableSnapshot> {
        self.with(|s| s.tables.values().map(|p| p.shown.clone()).collect())
    }

    /// The Notify a session waits on for requests.
    pub fn notify(&self) -> Arc<Notify> {
        Arc::clone(&self.requested)
    }

    /// Asks for a snapshot of `tables` (already checked to be listened),
    /// of the rows where `condition` (already checked) holds.
    pub fn request(&self, tables: Vec<QualifiedTable>, condition: Option<String>) {
        self.request_with(tables, None, condition);
    }

    /// Asks for a snapshot of `tables` for `reason`, which their status shows.
    pub fn request_because(&self, tables: Vec<QualifiedTable>, reason: &str) {
        self.request_with(tables, Some(reason), None);
    }

    fn request_with(
        &self,
        tables: Vec<QualifiedTable>,
        reason: Option<&str>,
        condition: Option<String>,
    ) {
        self.with(|s| {
            for t in &tables {
                let mut p = pending(t);
                p.shown.reason = reason.map(str::to_owned);
                p.shown.condition = condition.clone();
                s.tables.insert(table_name(t), p);
            }
            s.commands.push(Command::Execute { tables, condition });
        });
        self.requested.notify_one();
    }

    /// Pauses, resumes or stops snapshots (tables already checked).
    pub fn command(&self, command: Command) {
        self.with(|s| s.commands.push(command));
        self.requested.notify_one();
    }

    pub(super) fn take_commands(&self) -> Vec<Command> {
        self.with(|s| std::mem::take(&mut s.commands))
    }

    /// The tables in `state`.
    pub(super) fn in_state(&self, wanted: impl Fn(SnapshotState) -> bool) -> Vec<String> {
        self.with(|s| {
            s.tables
                .values()
                .filter(|p| wanted(p.shown.state))
                .map(|p| p.shown.table.clone())
                .collect()
        })
    }

    pub(super) fn set(&self, progress: Progress, metrics: &Metrics) {
        self.with(|s| {
            s.tables.insert(progress.shown.table.clone(), progress);
            count_states(s, metrics);
        });
    }

    pub(super) fn get(&self, table: &str) -> Option<Progress> {
        self.with(|s| s.tables.get(table).cloned())
    }
}

/// The tables in each snapshot state, as gauges.
fn count_states(s: &BoardState, metrics: &Metrics) {
    let mut counts = [0i64; SnapshotState::ALL.len()];
    for p in s.tables.values() {
        if let Some(i) = SnapshotState::ALL
            .iter()
            .position(|&st| st == p.shown.state)
        {
            counts[i] += 1;
        }
    }
    for (state, n) in SnapshotState::ALL.iter().zip(counts) {
        metrics
            .snapshot_tables
            .with_label_values(&[state.as_str()])
            .set(n);
    }
}

pub(super) fn pending(t: &QualifiedTable) -> Progress {
    Progress {
        shown: TableSnapshot::pending(table_name(t)),
        after: None,
    }
}
