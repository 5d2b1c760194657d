//! Snapshots, in one module: existing rows reach Kafka as `op: r` records
//! beside the stream, read in key-ordered chunks between two WAL watermarks
//! (DBLog, as Debezium's incremental snapshots do it).
//!
//! | part | file |
//! |---|---|
//! | the reader: chunks and watermarks, on a thread of its own | `reader.rs` |
//! | the keys the stream changed while a chunk was open | `changed.rs` |
//! | progress kept in a compacted topic, read back at start | `progress.rs` |
//! | progress and requests (execute, pause, resume, stop) shared with `/status` and `POST /snapshots` | `shared.rs` |
//! | a request's condition, checked before it starts | `condition.rs` |
//! | pause, stop and resume of a table's read | `halt.rs` |
//! | tables added and dropped while streaming (pattern listeners) | `live.rs` |
//! | the session's interface: [`Snapshots`] | this file |
//!
//! The session calls [`Snapshots`] at a watermark in the stream
//! ([`Snapshots::at_watermark`]), hands it to the transform stage as the
//! [`KeyWatch`] of every change, and tells it when positions become safe
//! ([`Snapshots::persist`]). A chunk's rows are emitted at its high
//! watermark, minus every key the stream changed since its low one; its
//! progress is written once the position of that high watermark is safe
//! (acknowledged, or committed under exactly-once). A crash re-reads at
//! most the chunks in flight, one per table.
//!
//! Pausing or stopping a table cancels its reader task (before its next
//! chunk) and drops the chunks it has in flight. The new state is written
//! at once with the last progress already kept (so a kill right after it
//! still stays paused or stopped), and every progress kept later carries
//! it; a resume reads on after the last row sent, with the same condition.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use pgkafka_crds::report::SnapshotState;
use pgkafka_crds::{QualifiedTable, SnapshotMode};
use tokio::sync::{mpsc, Notify};

mod changed;
pub(crate) mod condition;
mod halt;
mod live;
mod progress;
pub(crate) mod reader;
mod shared;

use crate::config::EngineConfig;
use crate::error::{Error, ErrorKind};
use crate::event::now_ms;
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::transform::watch::KeyWatch;
use changed::Watched;
use live::Listened;
use progress::ProgressStore;
pub(crate) use reader::Watermark;
use reader::{chunk_ids, run_reader, Chunk, ReaderEvent, ReaderSettings, Run, TableRequest};
use shared::{pending, Progress};
pub(crate) use shared::{table_name, Command, SharedSnapshots};

/// A chunk emitted whose progress waits for its position to be safe.
struct Emitted {
    at: Lsn,
    progress: Progress,
}

/// The reader's ends of the channels, until [`Snapshots::start`] hands them over.
struct Unstarted {
    requests: mpsc::UnboundedReceiver<TableRequest>,
    events: mpsc::Sender<ReaderEvent>,
}

/// One session's snapshots.
pub(crate) struct Snapshots<'a> {
    cfg: &'a EngineConfig,
    metrics: &'a Metrics,
    shared: SharedSnapshots,
    store: ProgressStore,
    unstarted: Option<Unstarted>,
    events: mpsc::Receiver<ReaderEvent>,
    requests: mpsc::UnboundedSender<TableRequest>,
    /// Chunk id -> table, from the reader's `Low` events.
    lows: HashMap<u64, QualifiedTable>,
    /// Chunks read, waiting for their high watermark.
    arrived: HashMap<u64, Chunk>,
    /// Open chunks and the keys the stream changed meanwhile.
    watched: Watched,
    /// Chunks emitted in the open source transaction, with the rows kept:
    /// their progress waits for its end.
    in_transaction: Vec<(Chunk, u64)>,
    emitted: VecDeque<Emitted>,
    /// The request each table is read for, by table.
    runs: HashMap<QualifiedTable, Run>,
    /// The progress a restart would resume from, by table name: what was
    /// kept last (or nothing yet, for a read started anew).
    kept: HashMap<String, Progress>,
    /// The last generation handed out.
    generation: u64,
    /// The tables a snapshot may read, by listener index (the spec's, then
    /// those matched while streaming).
    listeners: Vec<Listened>,
}

/// Runs the reader on a thread of its own (reading and parsing chunks
/// then costs the session's thread nothing). It ends when the session drops
/// its end of the channels: every table's task then fails to hand over.
fn spawn_reader(
    settings: Arc<ReaderSettings>,
    requests: mpsc::UnboundedReceiver<TableRequest>,
    events: mpsc::Sender<ReaderEvent>,
) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ErrorKind::Thread {
            what: "snapshot reader",
            source,
        })?;
    std::thread::Builder::new()
        .name("snapshot-reader".into())
        .spawn(move || runtime.block_on(run_reader(settings, requests, events)))
        .map_err(|source| ErrorKind::Thread {
            what: "snapshot reader",
            source,
        })?;
    Ok(())
}

impl<'a> Snapshots<'a> {
    /// The snapshots of one session; nothing is read before [`Snapshots::start`].
    pub fn new(
        cfg: &'a EngineConfig,
        metrics: &'a Metrics,
        shared: SharedSnapshots,
    ) -> Result<Self, Error> {
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (events_tx, events) =
            mpsc::channel(cfg.spec.snapshot.max_concurrent_tables as usize + 1);
        Ok(Snapshots {
            store: ProgressStore::new(cfg)?,
            cfg,
            metrics,
            shared,
            unstarted: Some(Unstarted {
                requests: requests_rx,
                events: events_tx,
            }),
            events,
            requests,
            lows: HashMap::new(),
            arrived: HashMap::new(),
            watched: Watched::default(),
            in_transaction: Vec::new(),
            emitted: VecDeque::new(),
            runs: HashMap::new(),
            kept: HashMap::new(),
            generation: 0,
            listeners: Listened::of(&cfg.spec),
        })
    }

    /// Reads the progress kept in Kafka, plans what to read (unfinished
    /// tables, requests, and under `initial` every table never snapshotted)
    /// and starts the reader. The stream must be open: the reader's
    /// watermarks have to reach it.
    pub async fn start(&mut self) -> Result<(), Error> {
        for progress in self.store.read().await? {
            self.kept
                .insert(progress.shown.table.clone(), progress.clone());
            self.shared.set(progress, self.metrics);
        }
        let Some(Unstarted { requests, events }) = self.unstarted.take() else {
            return Ok(());
        };
        let cfg = self.cfg;
        let settings = Arc::new(ReaderSettings {
            application_name: format!("pgkafka-{}-snapshot", cfg.name),
            postgres: cfg.spec.postgres.clone(),
            credentials: cfg.postgres.clone(),
            chunk_size: cfg.spec.snapshot.chunk_size,
            max_tables: cfg.spec.snapshot.max_concurrent_tables as usize,
            ids: chunk_ids(),
        });
        spawn_reader(settings, requests, events)?;
        self.plan().await
    }

    /// The progress topic, created with the others.
    pub fn topic(&self) -> Arc<str> {
        Arc::from(self.store.topic())
    }

    /// Notified when `POST /snapshots` asks for tables.
    pub fn requested(&self) -> Arc<Notify> {
        self.shared.notify()
    }

    /// Hands the reader every listened table that needs reading (under
    /// `initial`, those never snapshotted; those left pending or running),
    /// then does what was asked meanwhile.
    async fn plan(&mut self) -> Result<(), Error> {
        let commands = self.shared.take_commands();
        let asked: Vec<&QualifiedTable> = commands
            .iter()
            .filter_map(|c| match c {
                Command::Execute { tables, .. } => Some(tables),
                _ => None,
            })
            .flatten()
            .collect();
        let mut reads = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let table = l.table.clone();
            if asked.contains(&&table) {
                continue;
            }
            match self.shared.get(&table_name(&table)) {
                None if self.cfg.spec.snapshot.mode == SnapshotMode::Initial => {
                    reads.push((i, table, None, None))
                }
                Some(p) if p.shown.state.is_active() => {
                    reads.push((i, table, p.after, p.shown.condition))
                }
                _ => {}
            }
        }
        for (i, table, after, condition) in reads {
            self.read(i, table, after, condition);
        }
        for command in commands {
            self.apply(command).await?;
        }
        Ok(())
    }

    /// Has the reader read `table` (listener `listener`) after `after` (from
    /// the start when `None`), where `condition` holds; a read of it under
    /// way is cancelled.
    fn read(
        &mut self,
        listener: usize,
        table: QualifiedTable,
        after: Option<Vec<String>>,
        condition: Option<String>,
    ) {
        let Some(spec) = self.listeners.get(listener) else {
            return;
        };
        let (key_columns, field) = (spec.key_columns.clone(), spec.field.clone());
        if after.is_none() {
            // A fresh start keeps the reason a request gave.
            let mut fresh = pending(&table);
            fresh.shown.reason = self
                .shared
                .get(&table_name(&table))
                .and_then(|p| p.shown.reason);
            fresh.shown.condition = condition.clone();
            // Nothing of this read is kept yet.
            self.kept.insert(fresh.shown.table.clone(), fresh.clone());
            self.shared.set(fresh, self.metrics);
        }
        self.generation += 1;
        let run = Run {
            generation: self.generation,
            cancel: Arc::default(),
        };
        if let Some(old) = self.runs.insert(table.clone(), run.clone()) {
            old.cancel.store(true, Ordering::Relaxed);
        }
        let request = TableRequest {
            table,
            after,
            key_columns,
            field,
            condition,
            run,
        };
        // The reader lives as long as this session; a send fails only
        // while it is being torn down.
        let _ = self.requests.send(request);
    }

    fn listener_of(&self, table: &QualifiedTable) -> Option<usize> {
        self.listeners.iter().position(|l| &l.table == table)
    }

    /// Does what was asked since the last call.
    pub async fn take_requests(&mut self) -> Result<(), Error> {
        for command in self.shared.take_commands() {
            self.apply(command).await?;
        }
        Ok(())
    }

    /// `tables`, or when empty the known tables in a state `wanted` takes.
    fn targets(
        &self,
        tables: Vec<QualifiedTable>,
        wanted: impl Fn(SnapshotState) -> bool,
    ) -> Vec<QualifiedTable> {
        if !tables.is_empty() {
            return tables;
        }
        self.shared
            .in_state(wanted)
            .iter()
            .filter_map(|name| QualifiedTable::parse(name).ok())
            .collect()
    }

    async fn apply(&mut self, command: Command) -> Result<(), Error> {
        match command {
            Command::Execute { tables, condition } => {
                for table in tables {
                    if let Some(i) = self.listener_of(&table) {
                        self.read(i, table, None, condition.clone());
                    }
                }
            }
            Command::Pause(tables) => {
                for table in self.targets(tables, SnapshotState::is_active) {
                    self.halt(&table, SnapshotState::Paused).await?;
                }
            }
            Command::Resume(tables) => {
                for table in self.targets(tables, |s| s == SnapshotState::Paused) {
                    self.resume(table).await?;
                }
            }
            Command::Stop(tables) => {
                let unfinished = |s: SnapshotState| s.is_active() || s == SnapshotState::Paused;
                for table in self.targets(tables, unfinished) {
                    self.halt(&table, SnapshotState::Stopped).await?;
                }
            }
        }
        Ok(())
    }

    /// The next event of the reader (cancel-safe).
    pub async fn next_event(&mut self) -> Option<ReaderEvent> {
        self.events.recv().await
    }

    /// Takes in one reader event.
    pub async fn on_event(&mut self, event: ReaderEvent) -> Result<(), Error> {
        match event {
            ReaderEvent::Low {
                id,
                table,
                generation,
            } => {
                if self.current(&table, generation) {
                    self.lows.insert(id, table);
                }
            }
            ReaderEvent::Chunk(chunk) => {
                // A chunk of a paused, stopped or restarted read is dropped.
                if self.current(&chunk.shape.table, chunk.generation) {
                    self.arrived.insert(chunk.id, chunk);
                }
            }
            ReaderEvent::Failed { generation, error } => {
                let table = &error.table().clone();
                if !self.current(table, generation) {
                    return Ok(());
                }
                self.runs.remove(table);
                tracing::error!(%error, "snapshot failed");
                let mut progress = self
                    .shared
                    .get(&table_name(table))
                    .unwrap_or_else(|| pending(table));
                progress.shown.state = SnapshotState::Failed;
                progress.shown.error = Some(error.to_string());
                progress.shown.finished_ms = Some(now_ms());
                self.store.write(&progress).await?;
                self.shared.set(progress, self.metrics);
            }
        }
        Ok(())
    }

    /// Whether `generation` is the read of `table` under way.
    fn current(&self, table: &QualifiedTable, generation: u64) -> bool {
        self.runs
            .get(table)
            .is_some_and(|r| r.generation == generation)
    }

    /// A watermark of chunk `mark.id` in the stream. At a low one the
    /// chunk's table is watched from here on; at a high one the chunk comes
    /// back with the keys to drop from it (emptied when the table was
    /// truncated meanwhile), to be emitted at this position.
    pub async fn at_watermark(
        &mut self,
        mark: Watermark,
    ) -> Result<Option<(Chunk, HashSet<Bytes>)>, Error> {
        // The reader announces a chunk before it writes the watermark.
        while let Ok(event) = self.events.try_recv() {
            self.on_event(event).await?;
        }
        if !mark.high {
            if let Some(table) = self.lows.get(&mark.id) {
                self.watched.open(mark.id, table.clone());
            }
            return Ok(None);
        }
        let changed = self.watched.close(mark.id);
        if self.lows.remove(&mark.id).is_none() {
            return Ok(None);
        }
        let Some(mut chunk) = self.arrived.remove(&mark.id) else {
            return Ok(None);
        };
        if changed.truncated {
            chunk.rows.clear();
        }
        Ok(Some((chunk, changed.keys)))
    }

    /// `chunk` was emitted with `kept` rows inside the open source
    /// transaction: its progress is safe once that transaction's end is.
    pub fn emitted_in_transaction(&mut self, chunk: Chunk, kept: u64) {
        self.in_transaction.push((chunk, kept));
    }

    /// `chunk` was emitted with `kept` rows as a transaction of its own at `at`.
    pub fn emitted_at(&mut self, chunk: Chunk, kept: u64, at: Lsn) {
        self.emitted(chunk, kept, at);
    }

    /// The open source transaction ended at `end_lsn`.
    pub fn source_committed(&mut self, end_lsn: Lsn) {
        for (chunk, kept) in std::mem::take(&mut self.in_transaction) {
            self.emitted(chunk, kept, end_lsn);
        }
    }

    /// Chunk emitted at `at` with `kept` rows: progress to write once `at`
    /// is safe; the reader may read on.
    fn emitted(&mut self, chunk: Chunk, kept: u64, at: Lsn) {
        let table = &chunk.shape.table;
        let now = now_ms();
        let mut progress = self
            .shared
            .get(&table_name(table))
            .unwrap_or_else(|| pending(table));
        let shown = &mut progress.shown;
        // A chunk emitted in the transaction of its watermark may end after
        // the table was paused or stopped: its rows count, the state stays.
        let halted = matches!(shown.state, SnapshotState::Paused | SnapshotState::Stopped);
        shown.state = match (chunk.last, halted) {
            (true, _) => SnapshotState::Done,
            (false, true) => shown.state,
            (false, false) => SnapshotState::Running,
        };
        if chunk.last {
            self.runs.remove(table);
        }
        shown.rows += kept;
        shown.started_ms.get_or_insert(now);
        if chunk.last {
            shown.finished_ms = Some(now);
        }
        if chunk.last_key.is_some() {
            progress.after = chunk.last_key.clone();
        }
        let label = match self.listener_of(table) {
            Some(l) => self.listeners[l].label.clone(),
            None => table_name(table),
        };
        self.metrics
            .snapshot_rows
            .with_label_values(&[label.as_str()])
            .inc_by(kept);
        self.metrics
            .snapshot_started
            .with_label_values(&[label.as_str()])
            .set(progress.shown.started_ms.unwrap_or(now) / 1000);
        self.shared.set(progress.clone(), self.metrics);
        self.emitted.push_back(Emitted { at, progress });
        let _ = chunk.taken.send(());
    }

    /// At the session's end: the progress written is acknowledged.
    pub async fn finish(&self) -> Result<(), Error> {
        self.store.flush().await
    }

    /// Writes the progress of every chunk at or before `safe`; a table
    /// paused or stopped since keeps that state.
    pub async fn persist(&mut self, safe: Lsn) -> Result<(), Error> {
        self.store.check()?;
        while self.emitted.front().is_some_and(|e| e.at <= safe) {
            let Some(Emitted { mut progress, .. }) = self.emitted.pop_front() else {
                break;
            };
            let shown = &mut progress.shown;
            if let Some(now) = self.shared.get(&shown.table) {
                let halted = matches!(
                    now.shown.state,
                    SnapshotState::Paused | SnapshotState::Stopped
                );
                if halted && shown.state != SnapshotState::Done {
                    shown.state = now.shown.state;
                    shown.finished_ms = now.shown.finished_ms;
                }
            }
            // A table's last chunk is written in the background: a snapshot
            // of many small tables is then not paced by one broker round
            // trip per table, and a crash before its acknowledgement
            // re-reads that chunk alone. Earlier chunks wait for it, so a
            // crash re-reads at most the chunks in flight.
            if progress.shown.state == SnapshotState::Done {
                self.store.write_later(&progress)?;
            } else {
                self.store.write(&progress).await?;
            }
            self.kept.insert(progress.shown.table.clone(), progress);
        }
        Ok(())
    }
}

impl KeyWatch for Snapshots<'_> {
    fn watches(&self, table: &QualifiedTable) -> bool {
        self.watched.watches(table)
    }

    fn changed(&mut self, table: &QualifiedTable, key: Bytes) {
        self.watched.changed(table, key);
    }

    fn truncated(&mut self, table: &QualifiedTable) {
        self.watched.truncated(table);
    }
}
