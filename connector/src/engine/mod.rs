//! The engine: start-up checks, then replication sessions until shutdown.
//!
//! A session owns one replication connection, one Kafka producer and one LSN
//! tracker. Any fault (PostgreSQL or Kafka) ends the session; the next one
//! starts from the last acknowledged LSN with a fresh producer, so records
//! not yet acknowledged are sent again and nothing is lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgkafka_crds::QualifiedTable;
use pgwire_replication::{ReplicationClient, ReplicationEvent};
use tokio::sync::{mpsc, watch};

mod exactly_once;

use crate::ack::tracker::Tracker;
use crate::config::EngineConfig;
use crate::decode::pgoutput::{decode, Message};
use crate::error::Error;
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::pipeline::{Boundary, Pipeline, TableShape};
use crate::sink::kafka::{KafkaSink, SendError, SinkEvent, CHECKPOINT_SEQ};
use crate::sink::Record;
use crate::source::{connection, provision};

/// Caps on work handed to Kafka and not yet acknowledged. At the cap the engine
/// stops reading the stream; PostgreSQL keeps the WAL.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Records in flight.
    pub records: usize,
    /// Bytes in flight.
    pub bytes: usize,
    /// How often the confirmed position is reported to PostgreSQL.
    pub status_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            records: 100_000,
            bytes: 64 * 1024 * 1024,
            status_interval: Duration::from_secs(1),
        }
    }
}

/// How long a session is given to deliver what it sent when asked to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the final flush LSN to reach the server.
const FINAL_STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// A session that streamed this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Delay before restart `attempt` (0-based): exponential from 200 ms, capped at
/// 30 s, with jitter in its upper half so many engines do not retry in step.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = 200f64 * 2f64.powi(attempt.min(20) as i32);
    let capped = base.min(30_000.0);
    Duration::from_millis((capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))) as u64)
}

/// Runs the engine until `shutdown` turns true, or a fault that retrying
/// cannot fix. Start-up problems (configuration, permissions, missing
/// objects, unreachable database) are returned at once.
pub async fn run(
    cfg: EngineConfig,
    metrics: Metrics,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let verified_name = crate::source::tls::VerifiedName::default();
    let client = connection::connect_sql(&cfg, &verified_name).await?;
    let tables = provision::inspect(&client, &cfg.spec).await?;
    // Filters and column selections are checked against the catalog before
    // anything is created.
    let shapes: HashMap<QualifiedTable, TableShape> = tables
        .iter()
        .map(|(t, info)| (t.clone(), info.shape.clone()))
        .collect();
    Pipeline::new(&cfg.name, &cfg.spec, HashMap::new(), &metrics)
        .check_tables(&shapes)
        .map_err(|e| Error::Setup {
            field: e.path,
            message: e.message,
        })?;
    let primary_keys: HashMap<QualifiedTable, Vec<String>> = tables
        .into_iter()
        .filter(|(_, info)| !info.primary_key.is_empty())
        .map(|(t, info)| (t, info.primary_key))
        .collect();
    let mut flushed = provision::ensure(&client, &cfg.spec).await?;
    drop(client);
    metrics.confirmed_lsn.set(lsn_gauge(flushed));
    metrics
        .in_flight_limit
        .set(i64::try_from(limits.records).unwrap_or(i64::MAX));
    // The first session starts where the slot is; later ones where the last
    // session's acknowledgements reached.
    let mut start = Lsn::ZERO;
    let mut attempt = 0u32;
    loop {
        let began = Instant::now();
        let mut session = Session::new(&cfg, &metrics, limits, flushed, primary_keys.clone());
        session.verified_name = verified_name.get();
        let result = session.run(start, &mut shutdown).await;
        metrics.streaming.set(0);
        flushed = flushed.max(session.safe_position());
        start = flushed;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() => {
                if began.elapsed() > HEALTHY_SESSION {
                    attempt = 0;
                }
                let delay = backoff(attempt, rand::random());
                attempt = attempt.saturating_add(1);
                metrics.restarts.inc();
                tracing::warn!(error = %e, resume_at = %start, delay_ms = delay.as_millis() as u64, "session failed; restarting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn lsn_gauge(lsn: Lsn) -> i64 {
    i64::try_from(lsn.0).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct Session<'a> {
    cfg: &'a EngineConfig,
    metrics: &'a Metrics,
    limits: Limits,
    tracker: Tracker,
    pipeline: Pipeline,
    current: Option<u64>,
    records: Vec<Record>,
    verified_name: Option<String>,
    topic_in_flight: Vec<prometheus::IntGauge>,
    current_commit_ms: i64,
    /// Exactly-once: records go in Kafka transactions with checkpoints.
    eos: bool,
    /// The Kafka transaction being filled (exactly-once).
    kafka_txn: Option<crate::sink::transactions::OpenTransaction>,
    /// Everything up to here is committed in Kafka (exactly-once).
    eos_committed: Lsn,
    /// The position last reported to PostgreSQL.
    reported: Lsn,
}

impl<'a> Session<'a> {
    fn new(
        cfg: &'a EngineConfig,
        metrics: &'a Metrics,
        limits: Limits,
        flushed: Lsn,
        primary_keys: HashMap<QualifiedTable, Vec<String>>,
    ) -> Self {
        Session {
            cfg,
            metrics,
            limits,
            tracker: Tracker::new(flushed),
            pipeline: Pipeline::new(&cfg.name, &cfg.spec, primary_keys, metrics),
            current: None,
            records: Vec::new(),
            verified_name: None,
            topic_in_flight: Vec::new(),
            current_commit_ms: 0,
            eos: cfg.spec.kafka.delivery_guarantee == pgkafka_crds::DeliveryGuarantee::ExactlyOnce,
            kafka_txn: None,
            eos_committed: flushed,
            reported: flushed,
        }
    }

    async fn run(&mut self, start: Lsn, shutdown: &mut watch::Receiver<bool>) -> Result<(), Error> {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let sink = KafkaSink::new(self.cfg, events_tx)?;
        sink.ensure_topics(self.pipeline.topics()).await?;
        let start = if self.eos {
            self.eos_start(&sink, start).await?
        } else {
            start
        };
        self.topic_in_flight = self
            .pipeline
            .topics()
            .iter()
            .map(|t| self.metrics.topic_in_flight.with_label_values(&[&**t]))
            .collect();
        self.topic_in_flight.iter().for_each(|g| g.set(0));
        let mut repl = ReplicationClient::connect(
            connection::replication_config(self.cfg, start, self.verified_name.clone())
                .with_status_interval(self.limits.status_interval),
        )
        .await?;
        repl.wait_started().await?;
        self.metrics.streaming.set(1);
        tracing::info!(slot = %self.cfg.spec.slot.name, from = %self.tracker.flushed(), "streaming");
        let mut tick = tokio::time::interval(crate::sink::transactions::COMMIT_EVERY);
        loop {
            let full = self.tracker.in_flight_records() >= self.limits.records
                || self.tracker.in_flight_bytes() >= self.limits.bytes;
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                event = events.recv() => self.on_sink_event(event)?,
                _ = tick.tick(), if self.kafka_txn.is_some() => self.eos_commit_if_due(&sink, &mut events).await?,
                event = repl.recv(), if !full => match event? {
                    Some(event) => self.on_replication_event(event, &sink, &mut events).await?,
                    None => return Err(Error::Replication(pgwire_replication::PgWireError::Task(
                        "the server ended the replication stream".into(),
                    ))),
                },
            }
            // Deliveries come in bursts: take all that are ready before advancing.
            while let Ok(event) = events.try_recv() {
                self.on_sink_event(Some(event))?;
            }
            self.tracker.advance();
            self.report(&repl);
            self.metrics
                .in_flight_records
                .set(self.tracker.in_flight_records() as i64);
            self.metrics
                .in_flight_bytes
                .set(self.tracker.in_flight_bytes() as i64);
        }
        self.drain(&sink, &mut events, &mut repl).await
    }

    /// The position that is safe to confirm: everything before it is in
    /// Kafka (committed, under exactly-once).
    fn safe_position(&self) -> Lsn {
        if self.eos {
            self.tracker.flushed().min(self.eos_committed)
        } else {
            self.tracker.flushed()
        }
    }

    /// Tells PostgreSQL the safe position when it moved.
    fn report(&mut self, repl: &ReplicationClient) {
        if self.eos && self.kafka_txn.is_none() && self.tracker.in_flight_records() == 0 {
            // Nothing uncommitted is outstanding: idle positions are safe too.
            self.eos_committed = self.eos_committed.max(self.tracker.flushed());
        }
        let safe = self.safe_position();
        if safe > self.reported {
            debug_assert!(safe >= self.reported, "LSN went backwards");
            self.reported = safe;
            repl.update_applied_lsn(safe.into());
            self.metrics.confirmed_lsn.set(lsn_gauge(safe));
        }
    }

    /// Graceful stop: wait for what was sent, report the final position, close.
    async fn drain(
        &mut self,
        sink: &KafkaSink,
        events: &mut mpsc::UnboundedReceiver<SinkEvent>,
        repl: &mut ReplicationClient,
    ) -> Result<(), Error> {
        tracing::info!(
            in_flight = self.tracker.in_flight_records(),
            "stopping: draining deliveries"
        );
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while self.tracker.in_flight_records() > 0 {
            tokio::select! {
                event = events.recv() => self.on_sink_event(event)?,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = sink.in_flight(), "deliveries still pending at stop; they will be replayed");
                    break;
                }
            }
        }
        self.tracker.advance();
        if self.eos {
            self.eos_finish(sink, events).await?;
        }
        self.report(repl);
        let flushed = self.reported;
        // The client does not send a status update when stopping; wait until
        // its periodic one carried the final position.
        let metrics = repl.metrics();
        let deadline = Instant::now() + FINAL_STATUS_TIMEOUT;
        while Lsn::from(metrics.last_applied_lsn()) < flushed && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        repl.shutdown().await?;
        tracing::info!(confirmed = %flushed, "stopped");
        Ok(())
    }

    fn on_sink_event(&mut self, event: Option<SinkEvent>) -> Result<(), Error> {
        match event {
            Some(SinkEvent::Delivered {
                seq,
                topic_index,
                bytes,
            }) => {
                if seq == CHECKPOINT_SEQ {
                    return Ok(());
                }
                self.metrics.delivered.inc();
                if let Some(g) = self.topic_in_flight.get(topic_index) {
                    g.dec();
                }
                self.tracker
                    .delivered(seq, bytes)
                    .map_err(|e| Error::Internal(e.to_string()))
            }
            Some(SinkEvent::Failed { topic, error, .. }) => {
                self.metrics.delivery_errors.inc();
                self.metrics
                    .topic_delivery_errors
                    .with_label_values(&[topic.as_str()])
                    .inc();
                Err(Error::delivery(topic, error))
            }
            Some(SinkEvent::Fatal(reason)) => Err(Error::ProducerFatal(reason)),
            None => Err(Error::Internal(
                "the producer's delivery channel closed".into(),
            )),
        }
    }

    async fn on_replication_event(
        &mut self,
        event: ReplicationEvent,
        sink: &KafkaSink,
        events: &mut mpsc::UnboundedReceiver<SinkEvent>,
    ) -> Result<(), Error> {
        // A busy server sends data instead of keepalives: both show it is alive.
        self.metrics.last_keepalive.set(now_ms() / 1000);
        let (message, lsn) = match event {
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                self.metrics.wal_end_lsn.set(lsn_gauge(wal_end.into()));
                self.tracker.idle_at(wal_end.into());
                return Ok(());
            }
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => (
                Message::Begin {
                    final_lsn: final_lsn.into(),
                    commit_time_us: commit_time_micros,
                    xid,
                },
                Lsn::from(final_lsn),
            ),
            ReplicationEvent::Commit {
                lsn,
                end_lsn,
                commit_time_micros,
            } => (
                Message::Commit {
                    commit_lsn: lsn.into(),
                    end_lsn: end_lsn.into(),
                    commit_time_us: commit_time_micros,
                },
                Lsn::from(end_lsn),
            ),
            ReplicationEvent::XLogData {
                wal_start, data, ..
            } => {
                let lsn = Lsn::from(wal_start);
                let message = decode(data).map_err(|source| Error::Decode { lsn, source })?;
                (message, lsn)
            }
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => return Ok(()),
        };
        let received = lsn_gauge(lsn);
        if received > self.metrics.received_lsn.get() {
            self.metrics.received_lsn.set(received);
        }
        let boundary = self
            .pipeline
            .handle(message, lsn, now_ms(), &mut self.records)?;
        if let Boundary::Begin(tx) = boundary {
            self.current = Some(self.tracker.begin());
            self.current_commit_ms = tx.commit_ms();
        }
        if !self.records.is_empty() {
            self.metrics.last_event_ms.set(self.current_commit_ms);
        }
        // A commit may carry records (whole-transaction messages): they belong
        // to the transaction, so they are sent before it is closed.
        if !self.records.is_empty() {
            if boundary == Boundary::None {
                self.metrics.events.inc();
            }
            let seq = self
                .current
                .ok_or_else(|| Error::Internal("records outside a transaction".into()))?;
            let records = std::mem::take(&mut self.records);
            for record in &records {
                self.send(record, seq, sink, events).await?;
            }
            self.records = records;
            self.records.clear();
        }
        if let Boundary::Commit { end_lsn } = boundary {
            let seq = self
                .current
                .take()
                .ok_or_else(|| Error::Internal("commit without begin".into()))?;
            self.tracker
                .commit(seq, end_lsn)
                .map_err(|e| Error::Internal(e.to_string()))?;
            self.metrics.transactions.inc();
            if let Some(open) = &mut self.kafka_txn {
                open.covers = Some(end_lsn);
                self.eos_commit_if_due(sink, events).await?;
            }
        }
        Ok(())
    }

    /// Hands one record to the producer; a full local queue means waiting for
    /// deliveries, never dropping.
    async fn send(
        &mut self,
        record: &Record,
        seq: u64,
        sink: &KafkaSink,
        events: &mut mpsc::UnboundedReceiver<SinkEvent>,
    ) -> Result<(), Error> {
        if self.eos && self.kafka_txn.is_none() && seq != CHECKPOINT_SEQ {
            sink.begin_transaction()?;
            self.kafka_txn = Some(crate::sink::transactions::OpenTransaction {
                started: std::time::Instant::now(),
                covers: None,
            });
        }
        loop {
            match sink.send(record, seq) {
                Ok(()) if seq == CHECKPOINT_SEQ => return Ok(()),
                Ok(()) => {
                    if let Some(g) = self.topic_in_flight.get(record.topic_index) {
                        g.inc();
                    }
                    return self
                        .tracker
                        .sent(seq, record.size())
                        .map_err(|e| Error::Internal(e.to_string()));
                }
                Err(SendError::QueueFull) => {
                    // The producer's own thread keeps delivering meanwhile.
                    let event = events.recv().await;
                    self.on_sink_event(event)?;
                }
                Err(SendError::Kafka(e)) => {
                    return Err(Error::delivery(record.topic.to_string(), e))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(0, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(1600));
        assert_eq!(backoff(30, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(30, 0.0), Duration::from_secs(15));
    }
}
