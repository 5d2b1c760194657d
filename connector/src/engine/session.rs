//! One replication session: one replication stream, one Kafka producer, one
//! LSN tracker. Messages flow stream -> pipeline -> producer; delivery
//! reports flow producer -> tracker; the guarantee decides which position is
//! confirmed back to the stream. Any fault ends the session.

use std::collections::HashMap;
use std::time::Duration;

use pgkafka_crds::QualifiedTable;
use tokio::sync::watch;

use super::acks::{Acks, Output};
use super::guarantee::Guarantee;
use super::snapshots::{Board, Snapshots};
use super::{lsn_gauge, now_ms, Limits};
use crate::config::EngineConfig;
use crate::decode::pgoutput::{Message, RelationBody};
use crate::error::{Error, ErrorKind};
use crate::event::Record;
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::sink::transactions::COMMIT_EVERY;
use crate::source::lookup::Lookups;
use crate::source::snapshot::{Chunk, ReaderEvent, Watermark};
use crate::source::stream::{ReplicationStream, StreamEvent, StreamSettings};
use crate::transform::pipeline::{Boundary, Pipeline};

/// How long a session is given to deliver what it sent when asked to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a session needs from the engine.
pub(super) struct SessionContext<'a> {
    /// The configuration.
    pub cfg: &'a EngineConfig,
    /// The engine's metrics.
    pub metrics: &'a Metrics,
    /// In-flight caps and status interval.
    pub limits: Limits,
    /// Primary keys from the catalog.
    pub primary_keys: HashMap<QualifiedTable, Vec<String>>,
    /// The replication stream's CA file.
    pub ca_file: Option<std::path::PathBuf>,
    /// See `source::tls::VerifiedName`.
    pub verified_name: Option<String>,
    /// Snapshot progress and requests.
    pub board: Board,
}

pub(super) struct Session<'a> {
    ctx: SessionContext<'a>,
    pipeline: Pipeline,
    acks: Acks<'a>,
    guarantee: Guarantee,
    /// Tracker sequence of the source transaction being read.
    current: Option<u64>,
    current_commit_ms: i64,
    /// Records of the message being handled (reused buffer).
    records: Vec<Record>,
    /// The position last confirmed to PostgreSQL.
    reported: Lsn,
    /// Snapshots, once the stream is open.
    snapshots: Option<Snapshots<'a>>,
    /// Chunks emitted in the current source transaction, with their rows
    /// kept: their progress waits for its commit.
    chunks_in_transaction: Vec<(Chunk, u64)>,
    /// What Relation messages need from the catalog.
    lookups: Lookups<'a>,
}

impl<'a> Session<'a> {
    /// A session resuming after `flushed`.
    pub fn new(ctx: SessionContext<'a>, flushed: Lsn) -> Result<Self, Error> {
        let cfg = ctx.cfg;
        let mut pipeline =
            Pipeline::new(&cfg.name, &cfg.spec, ctx.primary_keys.clone(), ctx.metrics)?;
        pipeline.resume_after(flushed);
        let lookups = Lookups::new(
            format!("pgkafka-{}-catalog", cfg.name),
            &cfg.spec.postgres,
            &cfg.postgres,
        );
        Ok(Session {
            lookups,
            acks: Acks::new(flushed, ctx.metrics),
            guarantee: Guarantee::new(&cfg.spec, flushed),
            ctx,
            pipeline,
            current: None,
            current_commit_ms: 0,
            records: Vec::new(),
            reported: flushed,
            snapshots: None,
            chunks_in_transaction: Vec::new(),
        })
    }

    /// Streams from `start` until `shutdown` or a fault.
    pub async fn run(
        &mut self,
        start: Lsn,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let mut out = Output::open(self.ctx.cfg, self.guarantee.transactional_id())?;
        out.sink.ensure_topics(self.pipeline.topics()).await?;
        let start = self.guarantee.start(&out, &mut self.acks, start).await?;
        self.acks.watch_topics(self.pipeline.topics());
        let mut stream = ReplicationStream::open(self.stream_settings(), start).await?;
        let (cfg, metrics) = (self.ctx.cfg, self.ctx.metrics);
        let snapshots = Snapshots::start(cfg, metrics, self.ctx.board.clone()).await?;
        out.sink
            .ensure_topics(&[std::sync::Arc::from(snapshots.topic())])
            .await?;
        self.snapshots = Some(snapshots);
        let requested = self.ctx.board.notify();
        metrics.streaming.set(1);
        tracing::info!(slot = %cfg.spec.slot.name, from = %self.acks.flushed(), "streaming");
        // Checked five times per period: a due commit waits at most a fifth.
        let mut tick = tokio::time::interval(COMMIT_EVERY / 5);
        loop {
            let full = self.acks.full(&self.ctx.limits);
            let snaps = self
                .snapshots
                .as_mut()
                .ok_or(ErrorKind::Internal("no snapshots"))?;
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                event = out.events.recv() => self.acks.on_event(event)?,
                _ = tick.tick(), if self.guarantee.is_open() => {
                    self.guarantee.commit_if_due(&mut out, &mut self.acks).await?;
                }
                result = self.guarantee.commit_resolved(), if self.guarantee.is_committing() => {
                    self.guarantee.after_commit(result, &mut out, &mut self.acks).await?;
                }
                Some(event) = snaps.next_event() => self.on_reader_event(event).await?,
                _ = requested.notified() => self.take_snapshot_requests(),
                event = stream.recv(), if !full => self.on_stream_event(event?, &mut out).await?,
            }
            self.acks.take_ready(&mut out)?;
            self.report(&stream);
            if let Some(snaps) = self.snapshots.as_mut() {
                snaps.persist(self.reported).await?;
            }
        }
        self.drain(&mut out, stream).await
    }

    fn stream_settings(&self) -> StreamSettings<'_> {
        let cfg = self.ctx.cfg;
        StreamSettings {
            application_name: format!("pgkafka-{}", cfg.name),
            spec: &cfg.spec,
            credentials: &cfg.postgres,
            ca_file: self.ctx.ca_file.clone(),
            verified_name: self.ctx.verified_name.clone(),
            status_interval: self.ctx.limits.status_interval,
        }
    }

    /// The position that is safe to confirm (used after the session ended).
    pub fn safe_position(&mut self) -> Lsn {
        self.guarantee.safe_position(&self.acks)
    }

    /// Tells PostgreSQL the safe position when it moved.
    fn report(&mut self, stream: &ReplicationStream) {
        let safe = self.guarantee.safe_position(&self.acks);
        if safe > self.reported {
            debug_assert!(safe >= self.reported, "LSN went backwards");
            self.reported = safe;
            stream.confirm(safe);
            self.ctx.metrics.confirmed_lsn.set(lsn_gauge(safe));
        }
    }

    /// Graceful stop: wait for what was sent, report the final position, close.
    async fn drain(&mut self, out: &mut Output, stream: ReplicationStream) -> Result<(), Error> {
        tracing::info!(
            in_flight = self.acks.in_flight_records(),
            "stopping: draining deliveries"
        );
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while self.acks.in_flight_records() > 0 {
            tokio::select! {
                event = out.events.recv() => self.acks.on_event(event)?,
                result = self.guarantee.commit_resolved(), if self.guarantee.is_committing() => {
                    self.guarantee.after_commit(result, out, &mut self.acks).await?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = out.sink.in_flight(), "deliveries still pending at stop; they will be replayed");
                    break;
                }
            }
        }
        self.acks.advance();
        self.guarantee.finish(out, &mut self.acks).await?;
        self.report(&stream);
        let flushed = self.reported;
        stream.close(flushed).await?;
        tracing::info!(confirmed = %flushed, "stopped");
        Ok(())
    }

    async fn on_stream_event(&mut self, event: StreamEvent, out: &mut Output) -> Result<(), Error> {
        let metrics = self.ctx.metrics;
        // A busy server sends data instead of keepalives: both show it is alive.
        metrics.last_keepalive.set(now_ms() / 1000);
        let (message, lsn) = match event {
            StreamEvent::KeepAlive { wal_end } => {
                metrics.wal_end_lsn.set(lsn_gauge(wal_end));
                self.acks.idle_at(wal_end);
                return Ok(());
            }
            StreamEvent::Message(message, lsn) => (message, lsn),
        };
        if lsn_gauge(lsn) > metrics.received_lsn.get() {
            metrics.received_lsn.set(lsn_gauge(lsn));
        }
        self.on_message(message, lsn, out).await
    }

    async fn on_message(
        &mut self,
        mut message: Message,
        lsn: Lsn,
        out: &mut Output,
    ) -> Result<(), Error> {
        if let Message::Relation(body) = &mut message {
            self.prepare_relation(body).await?;
        }
        if let Message::Logical {
            prefix, content, ..
        } = &message
        {
            if let Some(mark) = Watermark::parse(prefix, content) {
                return self.on_watermark(mark, lsn, out).await;
            }
        }
        let boundary = self
            .pipeline
            .handle(message, lsn, now_ms(), &mut self.records)?;
        if let Boundary::Begin(tx) = boundary {
            self.current = Some(self.acks.begin());
            self.current_commit_ms = tx.commit_ms();
        }
        // A commit may carry records (whole-transaction messages): they belong
        // to the transaction, so they are sent before it is closed.
        if !self.records.is_empty() {
            self.ctx.metrics.last_event_ms.set(self.current_commit_ms);
            if boundary == Boundary::None {
                self.ctx.metrics.events.inc();
            }
            self.send_records(out).await?;
        }
        if let Boundary::Commit { end_lsn } = boundary {
            self.send_group_parts(out).await?;
            let seq = self
                .current
                .take()
                .ok_or(ErrorKind::Internal("commit without begin"))?;
            self.acks.commit(seq, end_lsn)?;
            self.ctx.metrics.transactions.inc();
            if let Some(snaps) = self.snapshots.as_mut() {
                for (chunk, kept) in self.chunks_in_transaction.drain(..) {
                    snaps.emitted(chunk, kept, end_lsn);
                }
            }
            self.guarantee
                .source_committed(end_lsn, out, &mut self.acks)
                .await?;
        }
        Ok(())
    }

    /// What the pipeline needs beyond pgoutput's description of a relation:
    /// a partition not captured itself is named as its captured root (the
    /// publication sends leaves unless `publish_via_partition_root`), and
    /// types outside the engine's table are resolved through the catalog.
    async fn prepare_relation(&mut self, body: &mut RelationBody) -> Result<(), Error> {
        let table = QualifiedTable {
            schema: body.schema.clone(),
            name: body.name.clone(),
        };
        if !self.pipeline.captures(&table) {
            match self.lookups.root_of(body.id).await? {
                Some(root) if self.pipeline.captures(&root) => {
                    tracing::debug!(partition = %table, root = %root, "routing a partition to its root's listener");
                    body.schema = root.schema;
                    body.name = root.name;
                }
                _ => return Ok(()),
            }
        }
        self.lookups.resolve_types(&mut body.columns).await?;
        Ok(())
    }

    async fn on_reader_event(&mut self, event: ReaderEvent) -> Result<(), Error> {
        match self.snapshots.as_mut() {
            Some(snaps) => snaps.on_event(event).await,
            None => Ok(()),
        }
    }

    fn take_snapshot_requests(&mut self) {
        if let Some(snaps) = self.snapshots.as_mut() {
            snaps.take_requests();
        }
    }

    /// A snapshot watermark in the stream: at a low one the chunk's table is
    /// watched; at a high one the chunk's rows that the stream did not change
    /// meanwhile are sent, in the watermark's transaction (or, for a
    /// non-transactional one, as a transaction of their own at its position).
    async fn on_watermark(
        &mut self,
        mark: Watermark,
        lsn: Lsn,
        out: &mut Output,
    ) -> Result<(), Error> {
        let Some(snaps) = self.snapshots.as_mut() else {
            return Ok(());
        };
        snaps.drain().await?;
        if !mark.high {
            if let Some(table) = snaps.low(mark.id) {
                self.pipeline.watch(mark.id, table);
            }
            return Ok(());
        }
        let changed = self.pipeline.unwatch(mark.id);
        let Some(chunk) = snaps.take_chunk(mark.id) else {
            return Ok(());
        };
        let kept = self.pipeline.snapshot_rows(
            &chunk.shape,
            &chunk.rows,
            &changed,
            lsn,
            now_ms(),
            &mut self.records,
        )?;
        if self.current.is_some() {
            // A transactional watermark: the rows belong to its transaction;
            // its progress is safe once that transaction's end is.
            if !self.records.is_empty() {
                self.send_records(out).await?;
            }
            self.chunks_in_transaction.push((chunk, kept));
            return Ok(());
        } else {
            let seq = self.acks.begin();
            self.current = Some(seq);
            if !self.records.is_empty() {
                self.send_records(out).await?;
            }
            self.current = None;
            self.acks.commit(seq, lsn)?;
            self.guarantee
                .source_committed(lsn, out, &mut self.acks)
                .await?;
        }
        if let Some(snaps) = self.snapshots.as_mut() {
            snaps.emitted(chunk, kept, lsn);
        }
        Ok(())
    }

    /// The committed transaction's whole-transaction messages, built and
    /// sent one part at a time, each once the in-flight caps leave room:
    /// memory stays bounded whatever the transaction's size.
    async fn send_group_parts(&mut self, out: &mut Output) -> Result<(), Error> {
        let seq = self
            .current
            .ok_or(ErrorKind::Internal("group parts outside a transaction"))?;
        let mut sent = false;
        while let Some(record) = self.pipeline.next_group_part()? {
            sent = true;
            self.wait_for_room(out).await?;
            self.guarantee
                .send(out, &mut self.acks, &record, seq)
                .await?;
        }
        if sent {
            self.ctx.metrics.last_event_ms.set(self.current_commit_ms);
            let spilled = self.pipeline.take_spilled_bytes();
            self.ctx.metrics.group_spilled_bytes.inc_by(spilled);
        }
        Ok(())
    }

    /// At the in-flight caps: handles deliveries (and a background commit)
    /// until there is room again. Messages that make many records (a
    /// snapshot chunk, a fan-out) wait here too, so the caps hold.
    async fn wait_for_room(&mut self, out: &mut Output) -> Result<(), Error> {
        while self.acks.full(&self.ctx.limits) {
            tokio::select! {
                event = out.events.recv() => self.acks.on_event(event)?,
                result = self.guarantee.commit_resolved(), if self.guarantee.is_committing() => {
                    self.guarantee.after_commit(result, out, &mut self.acks).await?;
                }
            }
            self.acks.take_ready(out)?;
        }
        Ok(())
    }

    /// Sends the records of the current message, keeping the buffer.
    async fn send_records(&mut self, out: &mut Output) -> Result<(), Error> {
        let seq = self
            .current
            .ok_or(ErrorKind::Internal("records outside a transaction"))?;
        let records = std::mem::take(&mut self.records);
        for record in &records {
            self.wait_for_room(out).await?;
            self.guarantee
                .send(out, &mut self.acks, record, seq)
                .await?;
        }
        self.records = records;
        self.records.clear();
        Ok(())
    }
}
