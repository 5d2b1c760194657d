//! Snapshots, in one module: existing rows reach Kafka as `op: r` records
//! beside the stream, read in key-ordered chunks between two WAL watermarks
//! (DBLog, as Debezium's incremental snapshots do it).
//!
//! | part | file |
//! |---|---|
//! | the reader: chunks and watermarks, on a thread of its own | `reader.rs` |
//! | the keys the stream changed while a chunk was open | `changed.rs` |
//! | progress kept in a compacted topic, read back at start | `progress.rs` |
//! | progress and requests shared with `/status` and `POST /snapshots` | `shared.rs` |
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use pgkafka_crds::report::SnapshotState;
use pgkafka_crds::{QualifiedTable, SnapshotMode};
use tokio::sync::{mpsc, Notify};

mod changed;
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
use progress::ProgressStore;
pub(crate) use reader::Watermark;
use reader::{chunk_ids, run_reader, Chunk, ReaderEvent, ReaderSettings, TableRequest};
use shared::{pending, Progress};
pub(crate) use shared::{table_name, SharedSnapshots};

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
        })
    }

    /// Reads the progress kept in Kafka, plans what to read (unfinished
    /// tables, requests, and under `initial` every table never snapshotted)
    /// and starts the reader. The stream must be open: the reader's
    /// watermarks have to reach it.
    pub async fn start(&mut self) -> Result<(), Error> {
        for progress in self.store.read().await? {
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
        self.plan();
        Ok(())
    }

    /// The progress topic, created with the others.
    pub fn topic(&self) -> Arc<str> {
        Arc::from(self.store.topic())
    }

    /// Notified when `POST /snapshots` asks for tables.
    pub fn requested(&self) -> Arc<Notify> {
        self.shared.notify()
    }

    /// Hands the reader every listened table that needs reading.
    fn plan(&mut self) {
        let requested = self.shared.take_requests();
        for (i, l) in self.cfg.spec.listeners.iter().enumerate() {
            let Ok(table) = QualifiedTable::parse(&l.table) else {
                continue;
            };
            let after = match self.shared.get(&table_name(&table)) {
                _ if requested.contains(&table) => None,
                None if self.cfg.spec.snapshot.mode == SnapshotMode::Initial => None,
                Some(p) if p.shown.state.is_active() => p.after,
                _ => continue,
            };
            self.read(i, table, after);
        }
    }

    fn read(&mut self, listener: usize, table: QualifiedTable, after: Option<Vec<String>>) {
        let spec = &self.cfg.spec.listeners[listener];
        if after.is_none() {
            // A fresh start keeps the reason a request gave.
            let mut fresh = pending(&table);
            fresh.shown.reason = self
                .shared
                .get(&table_name(&table))
                .and_then(|p| p.shown.reason);
            self.shared.set(fresh, self.metrics);
        }
        let request = TableRequest {
            table,
            after,
            key_columns: spec.key_columns.clone(),
            field: format!("spec.listeners[{listener}]"),
        };
        // The reader lives as long as this session; a send fails only
        // while it is being torn down.
        let _ = self.requests.send(request);
    }

    /// Starts what was asked for since the last call.
    pub fn take_requests(&mut self) {
        for table in self.shared.take_requests() {
            let listener = self
                .cfg
                .spec
                .listeners
                .iter()
                .position(|l| QualifiedTable::parse(&l.table).ok().as_ref() == Some(&table));
            if let Some(i) = listener {
                self.read(i, table, None);
            }
        }
    }

    /// The next event of the reader (cancel-safe).
    pub async fn next_event(&mut self) -> Option<ReaderEvent> {
        self.events.recv().await
    }

    /// Takes in one reader event.
    pub async fn on_event(&mut self, event: ReaderEvent) -> Result<(), Error> {
        match event {
            ReaderEvent::Low { id, table } => {
                self.lows.insert(id, table);
            }
            ReaderEvent::Chunk(chunk) => {
                self.arrived.insert(chunk.id, chunk);
            }
            ReaderEvent::Failed(e) => {
                tracing::error!(error = %e, "snapshot failed");
                let table = e.table();
                let mut progress = self
                    .shared
                    .get(&table_name(table))
                    .unwrap_or_else(|| pending(table));
                progress.shown.state = SnapshotState::Failed;
                progress.shown.error = Some(e.to_string());
                progress.shown.finished_ms = Some(now_ms());
                self.store.write(&progress).await?;
                self.shared.set(progress, self.metrics);
            }
        }
        Ok(())
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
        shown.state = if chunk.last {
            SnapshotState::Done
        } else {
            SnapshotState::Running
        };
        shown.rows += kept;
        shown.started_ms.get_or_insert(now);
        if chunk.last {
            shown.finished_ms = Some(now);
        }
        if chunk.last_key.is_some() {
            progress.after = chunk.last_key.clone();
        }
        let name = table_name(table);
        self.metrics
            .snapshot_rows
            .with_label_values(&[name.as_str()])
            .inc_by(kept);
        self.metrics
            .snapshot_started
            .with_label_values(&[name.as_str()])
            .set(progress.shown.started_ms.unwrap_or(now) / 1000);
        self.shared.set(progress.clone(), self.metrics);
        self.emitted.push_back(Emitted { at, progress });
        let _ = chunk.taken.send(());
    }

    /// Writes the progress of every chunk at or before `safe`.
    pub async fn persist(&mut self, safe: Lsn) -> Result<(), Error> {
        while self.emitted.front().is_some_and(|e| e.at <= safe) {
            if let Some(e) = self.emitted.pop_front() {
                self.store.write(&e.progress).await?;
            }
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
