//! One replication session: one replication stream, one [`Delivery`] (the
//! Kafka producer, the caps, the LSN tracker and the guarantee), one
//! [`Snapshots`]. Messages flow stream -> transform -> delivery; the
//! delivery's safe position flows back to the stream. One `select!` loop
//! takes whatever comes first; any fault ends the session.

use std::collections::HashMap;
use std::time::Duration;

use pgkafka_crds::{ListenerSpec, PgKafkaConnectorSpec, QualifiedTable};
use tokio::sync::watch;

use super::discovery::Discovery;
use super::heartbeat::Heartbeat;
use super::offsets::Offsets;
use super::{lsn_gauge, stream_settings, Limits};
use crate::config::EngineConfig;
use crate::decode::pgoutput::{Message, RelationBody};
use crate::delivery::{Delivery, RefusedTopics};
use crate::error::{Error, ErrorKind};
use crate::event::{now_ms, Record};
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::snapshot::{SharedSnapshots, Snapshots, Watermark};
use crate::source::lookup::Lookups;
use crate::source::stream::{Identity, ReplicationStream, StreamEvent, StreamSettings};
use crate::transform::stage::{Boundary, Transform};

/// How long a session is given to deliver what it sent when asked to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Stream events handled in one turn of the loop when they are ready at
/// once: a turn's bookkeeping (recording and confirming the position,
/// snapshot progress, the `select!` itself) then runs once per batch, not
/// once per message, which one-row transactions feel most.
const BATCH: usize = 256;

#[path = "follow.rs"]
mod follow;

/// What a session needs from the engine.
pub(super) struct SessionContext<'a> {
    /// The configuration (pattern listeners expanded).
    pub cfg: &'a EngineConfig,
    /// The spec as written: what pattern listeners are matched against
    /// while streaming.
    pub written: &'a PgKafkaConnectorSpec,
    /// The engine's metrics.
    pub metrics: &'a Metrics,
    /// In-flight caps and status interval.
    pub limits: Limits,
    /// Primary keys from the catalog.
    pub primary_keys: HashMap<QualifiedTable, Vec<String>>,
    /// The replication stream's CA file.
    pub ca_file: Option<std::path::PathBuf>,
    /// See `pgkafka_postgres::tls::VerifiedName`.
    pub verified_name: Option<String>,
    /// Snapshot progress and requests.
    pub shared: SharedSnapshots,
    /// Who the server is (written with the offsets record).
    pub identity: Identity,
    /// Topics the broker refused outright, kept across sessions.
    pub refused: RefusedTopics,
}

/// The source transaction being read.
struct OpenSource {
    /// Its sequence in the delivery's tracker.
    seq: u64,
    /// Its commit time (Unix ms), for the last-event gauge.
    commit_ms: i64,
}

pub(super) struct Session<'a> {
    ctx: SessionContext<'a>,
    transform: Transform,
    delivery: Delivery<'a>,
    snapshots: Snapshots<'a>,
    current: Option<OpenSource>,
    /// Records of the message being handled (reused buffer).
    records: Vec<Record>,
    /// The position last confirmed to PostgreSQL.
    reported: Lsn,
    /// What Relation messages need from the catalog.
    lookups: Lookups<'a>,
    /// The record of what was delivered: only recorded positions are
    /// confirmed to PostgreSQL.
    offsets: Offsets,
    /// Pattern listeners' tables looked for while streaming.
    discovery: Option<Discovery<'a>>,
    /// What this session's discovery changed, for the next session.
    followed: Followed,
}

/// Tables a session started or stopped listening to.
#[derive(Default)]
pub(super) struct Followed {
    /// Each table's listener and primary key.
    pub added: Vec<(ListenerSpec, Vec<String>)>,
    /// Tables gone.
    pub dropped: Vec<QualifiedTable>,
}

impl<'a> Session<'a> {
    /// A session resuming after `flushed`.
    pub fn new(ctx: SessionContext<'a>, flushed: Lsn) -> Result<Self, Error> {
        let cfg = ctx.cfg;
        let mut transform = Transform::new(
            &cfg.name,
            &cfg.spec,
            ctx.primary_keys.clone(),
            ctx.metrics,
            &cfg.salts,
        )?;
        transform.resume_after(flushed);
        let lookups = Lookups::new(
            format!("pgkafka-{}-catalog", cfg.name),
            &cfg.spec.postgres,
            &cfg.postgres,
        );
        Ok(Session {
            offsets: Offsets::new(
                cfg,
                ctx.identity.clone(),
                flushed,
                ctx.metrics.dead_lettered.clone(),
            )?,
            lookups,
            discovery: Discovery::new(ctx.written, cfg),
            followed: Followed::default(),
            delivery: Delivery::open(cfg, ctx.metrics, ctx.limits, flushed, ctx.refused.clone())?,
            snapshots: Snapshots::new(cfg, ctx.metrics, ctx.shared.clone())?,
            ctx,
            transform,
            current: None,
            records: Vec::new(),
            reported: flushed,
        })
    }

    /// Streams from `start` until `shutdown` or a fault.
    pub async fn run(
        &mut self,
        start: Lsn,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let (_, topics) = self.transform.take_added_topics();
        let (start, facts) = self.delivery.start(&topics, start).await?;
        self.transform.learn_topics(0, facts);
        let progress_topic = self.snapshots.topic();
        self.delivery
            .ensure_internal_topics(&[self.offsets.topic()])
            .await?;
        // The stream confirms `start` as it opens (a Kafka checkpoint may be
        // ahead of the slot under exactly-once): record it first.
        self.offsets.flush(start).await?;
        let mut stream = ReplicationStream::open(self.stream_settings(), start).await?;
        // Read what progress exists before creating its topic: a topic that
        // does not exist yet holds nothing, and reading one just created
        // costs a fetch round per partition.
        self.snapshots.start().await?;
        self.delivery
            .ensure_internal_topics(&[&progress_topic])
            .await?;
        let requested = self.snapshots.requested();
        let (cfg, metrics) = (self.ctx.cfg, self.ctx.metrics);
        let mut heartbeat = Heartbeat::start(cfg, metrics).await?;
        metrics.streaming.set(1);
        tracing::info!(slot = %cfg.spec.slot.name, from = %start, "streaming");
        loop {
            let room = self.delivery.has_room();
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                event = self.delivery.next_event() => self.delivery.handle(event).await?,
                Some(event) = self.snapshots.next_event() => self.snapshots.on_event(event).await?,
                _ = requested.notified() => self.snapshots.take_requests().await?,
                _ = heartbeat.due() => heartbeat.beat(),
                _ = discovery_due(&mut self.discovery) => self.follow_tables().await?,
                event = stream.recv(), if room => self.on_stream_batch(event?, &mut stream).await?,
            }
            self.report(&stream).await?;
            // A chunk's progress is safe once its rows are in Kafka.
            let delivered = self.delivery.safe_position();
            self.snapshots.persist(delivered).await?;
        }
        self.delivery.finish(DRAIN_TIMEOUT).await?;
        let safe = self.delivery.safe_position();
        self.snapshots.persist(safe).await?;
        self.snapshots.finish().await?;
        self.offsets.flush(safe).await?;
        self.report(&stream).await?;
        let flushed = self.reported;
        stream.close(flushed).await?;
        tracing::info!(confirmed = %flushed, "stopped");
        Ok(())
    }

    fn stream_settings(&self) -> StreamSettings<'a> {
        let ctx = &self.ctx;
        stream_settings(
            ctx.cfg,
            ctx.ca_file.clone(),
            ctx.verified_name.clone(),
            ctx.limits.status_interval,
        )
    }

    /// The position that is safe to confirm (used after the session
    /// ended): delivered, and recorded as delivered.
    pub fn safe_position(&mut self) -> Lsn {
        self.delivery.safe_position().min(self.offsets.recorded())
    }

    /// Records the safe position when it moved, and tells PostgreSQL what
    /// is recorded.
    async fn report(&mut self, stream: &ReplicationStream) -> Result<(), Error> {
        let delivered = self.delivery.safe_position();
        self.offsets.record(delivered).await?;
        let safe = delivered.min(self.offsets.recorded());
        if safe > self.reported {
            debug_assert!(safe >= self.reported, "LSN went backwards");
            self.reported = safe;
            stream.confirm(safe);
            self.ctx.metrics.confirmed_lsn.set(lsn_gauge(safe));
        }
        Ok(())
    }

    /// Handles `first`, then the events that are ready already (up to
    /// [`BATCH`], while below the in-flight caps).
    async fn on_stream_batch(
        &mut self,
        first: StreamEvent,
        stream: &mut ReplicationStream,
    ) -> Result<(), Error> {
        self.on_stream_event(first).await?;
        for _ in 1..BATCH {
            if !self.delivery.has_room() {
                break;
            }
            match ready_now(stream.recv()) {
                Some(event) => self.on_stream_event(event?).await?,
                None => break,
            }
        }
        Ok(())
    }

    async fn on_stream_event(&mut self, event: StreamEvent) -> Result<(), Error> {
        let metrics = self.ctx.metrics;
        // A busy server sends data instead of keepalives: both show it is alive.
        metrics.last_keepalive.set(now_ms() / 1000);
        let (message, lsn) = match event {
            StreamEvent::KeepAlive { wal_end } => {
                metrics.wal_end_lsn.set(lsn_gauge(wal_end));
                self.delivery.idle_at(wal_end);
                return Ok(());
            }
            StreamEvent::Message(message, lsn) => (message, lsn),
        };
        if lsn_gauge(lsn) > metrics.received_lsn.get() {
            metrics.received_lsn.set(lsn_gauge(lsn));
        }
        self.on_message(message, lsn).await
    }

    async fn on_message(&mut self, mut message: Message, lsn: Lsn) -> Result<(), Error> {
        if let Message::Relation(body) = &mut message {
            self.prepare_relation(body).await?;
        }
        if let Message::Logical {
            prefix, content, ..
        } = &message
        {
            if let Some(mark) = Watermark::parse(prefix, content) {
                return self.on_watermark(mark, lsn).await;
            }
        }
        let boundary = self.transform.handle(
            message,
            lsn,
            now_ms(),
            &mut self.records,
            &mut self.snapshots,
        )?;
        self.add_new_topics().await?;
        if let Boundary::Begin(tx) = boundary {
            self.current = Some(OpenSource {
                seq: self.delivery.begin(),
                commit_ms: tx.commit_ms(),
            });
        }
        if !self.records.is_empty() && self.current.is_none() {
            // A non-transactional logical message: a transaction of its own.
            return self.send_alone(lsn).await;
        }
        // A commit may carry records (whole-transaction messages): they belong
        // to the transaction, so they are sent before it is closed.
        if !self.records.is_empty() {
            if let Some(open) = &self.current {
                self.ctx.metrics.last_event_ms.set(open.commit_ms);
            }
            if boundary == Boundary::Other {
                self.ctx.metrics.events.inc();
            }
            self.send_records().await?;
        }
        if let Boundary::Commit { end_lsn } = boundary {
            self.send_group_parts().await?;
            let open = self
                .current
                .take()
                .ok_or(ErrorKind::Internal("commit without begin"))?;
            self.ctx.metrics.transactions.inc();
            self.snapshots.source_committed(end_lsn);
            self.delivery.commit(open.seq, end_lsn).await?;
        }
        Ok(())
    }

    /// What the transform needs beyond pgoutput's description of a relation:
    /// a partition not captured itself is named as its captured root (the
    /// publication sends leaves unless `publish_via_partition_root`), and
    /// types outside the engine's table are resolved through the catalog.
    async fn prepare_relation(&mut self, body: &mut RelationBody) -> Result<(), Error> {
        let table = QualifiedTable {
            schema: body.schema.clone(),
            name: body.name.clone(),
        };
        if !self.transform.captures(&table) {
            match self.lookups.root_of(body.id).await? {
                Some(root) if self.transform.captures(&root) => {
                    tracing::debug!(partition = %table, root = %root, "routing a partition to its root's listener");
                    body.schema = root.schema;
                    body.name = root.name;
                }
                _ if self.adopt(&table).await? => {}
                _ => return Ok(()),
            }
        }
        self.lookups.resolve_types(&mut body.columns).await?;
        Ok(())
    }

    /// A snapshot watermark in the stream: at a high one the chunk's rows
    /// that the stream did not change meanwhile are sent, in the
    /// watermark's transaction (or, for a non-transactional one, as a
    /// transaction of their own at its position).
    async fn on_watermark(&mut self, mark: Watermark, lsn: Lsn) -> Result<(), Error> {
        let Some((chunk, dropped)) = self.snapshots.at_watermark(mark).await? else {
            return Ok(());
        };
        let kept = self.transform.snapshot_rows(
            &chunk.shape,
            &chunk.rows,
            &dropped,
            (lsn, now_ms()),
            &mut self.records,
        )?;
        self.add_new_topics().await?;
        if self.current.is_some() {
            // A transactional watermark: the rows belong to its transaction;
            // its progress is safe once that transaction's end is.
            self.send_records().await?;
            self.snapshots.emitted_in_transaction(chunk, kept);
            return Ok(());
        }
        self.send_alone(lsn).await?;
        self.snapshots.emitted_at(chunk, kept, lsn);
        Ok(())
    }

    /// Creates the topics outbox rows just named, before their records go.
    async fn add_new_topics(&mut self) -> Result<(), Error> {
        let (start, added) = self.transform.take_added_topics();
        let facts = self.delivery.add_topics(start, &added).await?;
        self.transform.learn_topics(start, facts);
        Ok(())
    }

    /// Sends the records at hand outside any source transaction, as one of
    /// their own ending at `lsn`.
    async fn send_alone(&mut self, lsn: Lsn) -> Result<(), Error> {
        let seq = self.delivery.begin();
        self.current = Some(OpenSource { seq, commit_ms: 0 });
        let sent = self.send_records().await;
        self.current = None;
        sent?;
        self.delivery.commit(seq, lsn).await
    }

    /// The committed transaction's whole-transaction messages, built and
    /// sent one part at a time (the delivery waits for room before each):
    /// memory stays bounded whatever the transaction's size.
    async fn send_group_parts(&mut self) -> Result<(), Error> {
        let open = self
            .current
            .as_ref()
            .ok_or(ErrorKind::Internal("group parts outside a transaction"))?;
        let (seq, commit_ms) = (open.seq, open.commit_ms);
        let mut sent = false;
        while let Some(record) = self.transform.next_group_part()? {
            sent = true;
            self.delivery.send(&record, seq).await?;
        }
        if sent {
            self.ctx.metrics.last_event_ms.set(commit_ms);
            let spilled = self.transform.take_spilled_bytes();
            self.ctx.metrics.group_spilled_bytes.inc_by(spilled);
        }
        Ok(())
    }

    /// Sends the records of the current message, keeping the buffer.
    async fn send_records(&mut self) -> Result<(), Error> {
        let seq = self
            .current
            .as_ref()
            .ok_or(ErrorKind::Internal("records outside a transaction"))?
            .seq;
        let records = std::mem::take(&mut self.records);
        for record in &records {
            self.delivery.send(record, seq).await?;
        }
        self.records = records;
        self.records.clear();
        Ok(())
    }
}

/// The next look at the catalog, never without pattern listeners.
async fn discovery_due(discovery: &mut Option<Discovery<'_>>) {
    match discovery {
        Some(d) => d.due().await,
        None => std::future::pending().await,
    }
}

/// The future's output if it is ready at the first poll; otherwise `None`
/// and the future is dropped (for cancel-safe futures only: the stream's
/// `recv` loses nothing when dropped before it returned).
fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}
