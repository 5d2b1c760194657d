//! Pausing, stopping and resuming a table's snapshot (Debezium's
//! `pause-snapshot`, `stop-snapshot`, `resume-snapshot`): the new state is
//! kept in the progress topic before `/status` shows it.

use std::sync::atomic::Ordering;

use pgkafka_crds::report::{SnapshotState, TableSnapshot};
use pgkafka_crds::QualifiedTable;

use super::shared::Progress;
use super::{table_name, Snapshots};
use crate::error::Error;
use crate::event::now_ms;

impl Snapshots<'_> {
    /// Pauses or stops `table` if it is unfinished: its reader stops before
    /// the next chunk, the chunks in flight are dropped, and the new state
    /// is kept at once.
    pub(super) async fn halt(
        &mut self,
        table: &QualifiedTable,
        state: SnapshotState,
    ) -> Result<(), Error> {
        let name = table_name(table);
        let Some(mut progress) = self.shared.get(&name) else {
            return Ok(());
        };
        let from = progress.shown.state;
        if !(from.is_active() || (from == SnapshotState::Paused && state == SnapshotState::Stopped))
        {
            return Ok(());
        }
        if let Some(run) = self.runs.remove(table) {
            run.cancel.store(true, Ordering::Relaxed);
        }
        // Dropping a chunk tells its reader the engine is gone.
        self.arrived.retain(|_, c| &c.shape.table != table);
        self.lows.retain(|_, t| t != table);
        progress.shown.state = state;
        if state == SnapshotState::Stopped {
            progress.shown.finished_ms = Some(now_ms());
        }
        tracing::info!(table = %name, state = %state, rows = progress.shown.rows, "snapshot {state}");
        self.keep_state(progress).await
    }

    /// Keeps `progress`'s state at once with the progress kept last (its
    /// rows and key are safe; the newer ones are not yet), then shows it:
    /// `/status` says paused or stopped only once a restart would say so too.
    async fn keep_state(&mut self, progress: Progress) -> Result<(), Error> {
        let name = progress.shown.table.clone();
        let mut record = self.kept.get(&name).cloned().unwrap_or_else(|| Progress {
            after: None,
            shown: TableSnapshot {
                rows: 0,
                ..progress.shown.clone()
            },
        });
        record.shown.state = progress.shown.state;
        record.shown.finished_ms = progress.shown.finished_ms;
        record.shown.condition = progress.shown.condition.clone();
        self.store.write(&record).await?;
        self.kept.insert(name, record);
        self.shared.set(progress, self.metrics);
        Ok(())
    }

    /// Reads a paused `table` on after its last row sent, with its condition.
    pub(super) async fn resume(&mut self, table: QualifiedTable) -> Result<(), Error> {
        let Some(mut progress) = self.shared.get(&table_name(&table)) else {
            return Ok(());
        };
        let Some(i) = self.listener_of(&table) else {
            return Ok(());
        };
        if progress.shown.state != SnapshotState::Paused {
            return Ok(());
        }
        progress.shown.state = SnapshotState::Pending;
        let (after, condition) = (progress.after.clone(), progress.shown.condition.clone());
        tracing::info!(table = %progress.shown.table, rows = progress.shown.rows, "snapshot resumed");
        self.keep_state(progress).await?;
        self.read(i, table, after, condition);
        Ok(())
    }
}
