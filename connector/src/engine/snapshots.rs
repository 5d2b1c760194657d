//! Snapshots in the engine: which tables to read, the reader (one per
//! session), chunks matched to their watermarks in the stream, and progress
//! kept in a compacted Kafka topic so a restart resumes after the last
//! chunk that is safely in Kafka.
//!
//! A chunk's rows are emitted when its high watermark arrives in the stream,
//! minus every key the stream changed since its low watermark (the pipeline
//! notes them); its progress is written once the position of that high
//! watermark is safe (acknowledged, or committed under exactly-once). A
//! crash re-reads at most the chunks in flight, one per table.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use pgkafka_crds::report::{SnapshotState, TableSnapshot};
use pgkafka_crds::{PgKafkaConnectorSpec, QualifiedTable, SnapshotMode};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use crate::config::EngineConfig;
use crate::error::{Error, ErrorKind};
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::sink::progress::ProgressWriter;
use crate::sink::transactions::{read_compacted, transactional_id};
use crate::source::snapshot::{
    chunk_ids, run_reader, Chunk, ReaderEvent, ReaderSettings, TableRequest,
};

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
pub(crate) struct Board {
    inner: Arc<Mutex<BoardState>>,
    requested: Arc<Notify>,
}

#[derive(Default)]
struct BoardState {
    tables: BTreeMap<String, Progress>,
    requests: Vec<QualifiedTable>,
}

impl Board {
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
        self.with(|s| {
            for t in &tables {
                s.tables.insert(table_name(t), pending(t));
            }
            s.requests.extend(tables);
        });
        self.requested.notify_one();
    }

    fn take_requests(&self) -> Vec<QualifiedTable> {
        self.with(|s| std::mem::take(&mut s.requests))
    }

    fn set(&self, progress: Progress, metrics: &Metrics) {
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

    fn get(&self, table: &str) -> Option<Progress> {
        self.with(|s| s.tables.get(table).cloned())
    }
}

fn pending(t: &QualifiedTable) -> Progress {
    Progress {
        shown: TableSnapshot::pending(table_name(t)),
        after: None,
    }
}

/// The compacted topic holding snapshot progress.
pub(crate) fn progress_topic(spec: &PgKafkaConnectorSpec) -> String {
    format!("{}.pgkafka-snapshots", spec.kafka.topic_prefix)
}

/// A chunk emitted whose progress waits for its position to be safe.
struct Emitted {
    at: Lsn,
    progress: Progress,
}

/// One session's snapshots.
pub(super) struct Snapshots<'a> {
    cfg: &'a EngineConfig,
    metrics: &'a Metrics,
    board: Board,
    writer: ProgressWriter,
    key_prefix: String,
    events: mpsc::Receiver<ReaderEvent>,
    requests: mpsc::UnboundedSender<TableRequest>,
    /// Chunk id -> table, from the reader's `Low` events.
    lows: HashMap<u64, QualifiedTable>,
    /// Chunks read, waiting for their high watermark.
    arrived: HashMap<u64, Chunk>,
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
    /// Reads the progress kept in Kafka, plans what to read (unfinished
    /// tables, requests, and under `initial` every table never snapshotted)
    /// and starts the reader. The stream must be open: the reader's
    /// watermarks have to reach it.
    pub async fn start(
        cfg: &'a EngineConfig,
        metrics: &'a Metrics,
        board: Board,
    ) -> Result<Snapshots<'a>, Error> {
        let writer = ProgressWriter::new(&cfg.spec.kafka, &cfg.kafka, progress_topic(&cfg.spec))?;
        let key_prefix = format!("{}/", transactional_id(&cfg.spec));
        for progress in read_progress(&writer, &key_prefix).await? {
            board.set(progress, metrics);
        }
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (events_tx, events) =
            mpsc::channel(cfg.spec.snapshot.max_concurrent_tables as usize + 1);
        let settings = Arc::new(ReaderSettings {
            application_name: format!("pgkafka-{}-snapshot", cfg.name),
            postgres: cfg.spec.postgres.clone(),
            credentials: cfg.postgres.clone(),
            chunk_size: cfg.spec.snapshot.chunk_size,
            max_tables: cfg.spec.snapshot.max_concurrent_tables as usize,
            ids: chunk_ids(),
        });
        spawn_reader(settings, requests_rx, events_tx)?;
        let mut snapshots = Snapshots {
            cfg,
            metrics,
            board,
            writer,
            key_prefix,
            events,
            requests,
            lows: HashMap::new(),
            arrived: HashMap::new(),
            emitted: VecDeque::new(),
        };
        snapshots.plan();
        Ok(snapshots)
    }

    /// Hands the reader every listened table that needs reading.
    fn plan(&mut self) {
        let requested = self.board.take_requests();
        for (i, l) in self.cfg.spec.listeners.iter().enumerate() {
            let Ok(table) = QualifiedTable::parse(&l.table) else {
                continue;
            };
            let after = match self.board.get(&table_name(&table)) {
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
            self.board.set(pending(&table), self.metrics);
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
        for table in self.board.take_requests() {
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

    /// The next event of the reader.
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
                    .board
                    .get(&table_name(table))
                    .unwrap_or_else(|| pending(table));
                progress.shown.state = SnapshotState::Failed;
                progress.shown.error = Some(e.to_string());
                progress.shown.finished_ms = Some(super::now_ms());
                self.write(&progress).await?;
                self.board.set(progress, self.metrics);
            }
        }
        Ok(())
    }

    /// Takes in every event already waiting (before a watermark is handled:
    /// the reader announces a chunk before it writes the watermark).
    pub async fn drain(&mut self) -> Result<(), Error> {
        while let Ok(event) = self.events.try_recv() {
            self.on_event(event).await?;
        }
        Ok(())
    }

    /// The table of chunk `id`, when its low watermark is ours.
    pub fn low(&self, id: u64) -> Option<&QualifiedTable> {
        self.lows.get(&id)
    }

    /// Chunk `id`, when both its watermarks are ours.
    pub fn take_chunk(&mut self, id: u64) -> Option<Chunk> {
        self.lows.remove(&id)?;
        self.arrived.remove(&id)
    }

    /// Chunk emitted at `at` with `kept` rows: progress to write once `at`
    /// is safe; the reader may read on.
    pub fn emitted(&mut self, chunk: Chunk, kept: u64, at: Lsn) {
        let table = &chunk.shape.table;
        let now = super::now_ms();
        let mut progress = self
            .board
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
        self.board.set(progress.clone(), self.metrics);
        self.emitted.push_back(Emitted { at, progress });
        let _ = chunk.taken.send(());
    }

    /// Writes the progress of every chunk at or before `safe`.
    pub async fn persist(&mut self, safe: Lsn) -> Result<(), Error> {
        while self.emitted.front().is_some_and(|e| e.at <= safe) {
            if let Some(e) = self.emitted.pop_front() {
                self.write(&e.progress).await?;
            }
        }
        Ok(())
    }

    async fn write(&self, progress: &Progress) -> Result<(), Error> {
        let key = format!("{}{}", self.key_prefix, progress.shown.table);
        let value = serde_json::to_vec(progress).unwrap_or_default();
        Ok(self.writer.write(&key, &value).await?)
    }

    /// The progress topic, created with the others.
    pub fn topic(&self) -> &str {
        self.writer.topic()
    }
}

/// The latest progress of each table of this connector.
async fn read_progress(writer: &ProgressWriter, prefix: &str) -> Result<Vec<Progress>, Error> {
    let (config, topic, prefix) = (
        writer.config().clone(),
        writer.topic().to_owned(),
        prefix.to_owned(),
    );
    let group = format!("{prefix}snapshot-reader");
    let records = tokio::task::spawn_blocking(move || {
        read_compacted(&config, &topic, &group, |key| {
            key.starts_with(prefix.as_bytes())
        })
    })
    .await
    .map_err(|source| crate::sink::SinkError::Blocking {
        what: "reading snapshot progress",
        source,
    })??;
    let mut latest: HashMap<Vec<u8>, Progress> = HashMap::new();
    for (key, value) in records {
        if let Ok(progress) = serde_json::from_slice(&value) {
            latest.insert(key, progress);
        }
    }
    Ok(latest.into_values().collect())
}
