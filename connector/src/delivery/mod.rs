//! Delivery: the one object between the session and Kafka. It owns the
//! producer and its delivery reports, the in-flight caps, the LSN tracker
//! and the delivery guarantee, so the session only hands it records and asks
//! it for the safe position.
//!
//! Its shape follows a tower service (Vector's Kafka sink): [`Delivery::has_room`]
//! is `poll_ready` (the session stops reading the stream while it is false),
//! [`Delivery::send`] is `call` (it waits for room itself, so a message that
//! makes many records cannot overshoot the caps). What happens in the
//! background (delivery reports, an exactly-once commit resolving, a Kafka
//! transaction becoming due) comes out of [`Delivery::next_event`], which is
//! cancel-safe and so can stand in the session's one `select!`, and is
//! handled by [`Delivery::handle`].
//!
//! - At least once: a position is safe once every record before it was
//!   acknowledged (acks=all); after a crash the unconfirmed tail is sent again.
//! - A topic the broker refuses outright (not authorized) fails the
//!   session like any refusal, and is kept in [`RefusedTopics`]: the next
//!   session's records for it meet the error policy before they are sent
//!   (dead letters, or a halt naming the topic). Refusals of single
//!   records cannot be told apart from their batch neighbours here; those
//!   the transform checks before sending (sizes, keys of compacted topics).
//! - Exactly once ([`exactly_once`]): records go in Kafka transactions holding
//!   whole source transactions, each ending with a checkpoint record of the
//!   slot position it covers; a position is safe once its Kafka transaction
//!   committed. Commits run in the background while the stream goes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgkafka_crds::{DeliveryGuarantee, TopicCreation};
use prometheus::IntGauge;
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

mod exactly_once;

use crate::ack::tracker::Tracker;
use crate::config::EngineConfig;
use crate::error::{Error, ErrorKind};
use crate::event::{Record, TopicFacts};
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::sink::kafka::{KafkaSink, SendError, SinkEvent};
use crate::sink::topics::ensure_compacted;
use crate::sink::transactions::COMMIT_EVERY;
use crate::sink::SinkError;
use exactly_once::ExactlyOnce;

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
            // Key, value and librdkafka's per-message share: with the
            // engine's own ~20 MiB this keeps the resident set under
            // 64 MiB at the cap, and it is 100 ms of a fast stream.
            bytes: 16 * 1024 * 1024,
            status_interval: Duration::from_secs(1),
        }
    }
}

/// Topics whose records the broker refused outright (not authorized), with
/// its words: kept by the engine across sessions until it restarts.
#[derive(Clone, Default)]
pub(crate) struct RefusedTopics(Arc<Mutex<HashMap<String, Arc<str>>>>);

impl RefusedTopics {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Arc<str>>) -> T) -> T {
        match self.0.lock() {
            Ok(mut m) => f(&mut m),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn insert(&self, topic: &str, words: String) {
        self.with(|m| m.insert(topic.to_owned(), Arc::from(words)));
    }

    fn get(&self, topic: &str) -> Option<Arc<str>> {
        self.with(|m| m.get(topic).cloned())
    }
}

/// Whether `code` refuses every record of a topic, whatever the record.
fn refuses_whole_topic(code: Option<rdkafka::types::RDKafkaErrorCode>) -> bool {
    code == Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed)
}

/// Something that happened in the background, to hand to [`Delivery::handle`].
pub(crate) enum DeliveryEvent {
    /// A delivery report (`None`: the producer's channel closed).
    Report(Option<SinkEvent>),
    /// The background commit of a Kafka transaction resolved.
    Committed(Result<(), Error>),
    /// Time passed with a Kafka transaction open: it may be due.
    Tick,
}

/// One session's delivery to Kafka.
pub(crate) struct Delivery<'a> {
    sink: KafkaSink,
    /// Delivery reports, in arrival order.
    reports: mpsc::UnboundedReceiver<SinkEvent>,
    tracker: Tracker,
    limits: Limits,
    metrics: &'a Metrics,
    /// Per-topic in-flight gauges, by topic index.
    topic_in_flight: Vec<IntGauge>,
    /// `None`: at least once.
    exactly_once: Option<ExactlyOnce>,
    /// Checked five times per Kafka transaction period: a due commit waits
    /// at most a fifth of it.
    tick: Interval,
    /// Topics refused outright, shared with the sessions to come.
    refused: RefusedTopics,
    /// The dead-letter topics: their refusal halts (nowhere else to go).
    dead_letter_topics: Vec<String>,
}

impl<'a> Delivery<'a> {
    /// A producer for `cfg` with nothing in flight; everything before
    /// `flushed` is done.
    pub fn open(
        cfg: &EngineConfig,
        metrics: &'a Metrics,
        limits: Limits,
        flushed: Lsn,
        refused: RefusedTopics,
    ) -> Result<Self, Error> {
        let exactly_once = match cfg.spec.kafka.delivery_guarantee {
            DeliveryGuarantee::AtLeastOnce => None,
            DeliveryGuarantee::ExactlyOnce => Some(ExactlyOnce::new(&cfg.spec, flushed)),
        };
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let transactional_id = exactly_once.as_ref().map(ExactlyOnce::transactional_id);
        let sink = KafkaSink::new(&cfg.spec.kafka, &cfg.kafka, transactional_id, reports_tx)?;
        let mut tick = tokio::time::interval(COMMIT_EVERY / 5);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Delivery {
            sink,
            reports,
            tracker: Tracker::new(flushed),
            limits,
            metrics,
            topic_in_flight: Vec::new(),
            exactly_once,
            tick,
            refused,
            dead_letter_topics: cfg.spec.dead_letter_topics(),
        })
    }

    /// Creates the `topics` that do not exist, each as its settings say
    /// (records carry their index in `topics`), and prepares the producer;
    /// returns where replication starts, and what the broker says of each
    /// topic. Under exactly-once it fences older producers, then starts
    /// after what Kafka committed when that is ahead of `start`.
    pub async fn start(
        &mut self,
        topics: &[(Arc<str>, TopicCreation)],
        start: Lsn,
    ) -> Result<(Lsn, Vec<TopicFacts>), Error> {
        self.topic_in_flight.clear();
        let facts = self.add_topics(0, topics).await?;
        let Some(e) = &mut self.exactly_once else {
            return Ok((start, facts));
        };
        match e.start(&self.sink).await? {
            Some(checkpoint) if checkpoint > self.tracker.flushed() => {
                tracing::info!(checkpoint = %checkpoint, slot = %self.tracker.flushed(), "resuming after the last transaction Kafka committed");
                self.tracker = Tracker::new(checkpoint);
                Ok((checkpoint, facts))
            }
            _ => Ok((start, facts)),
        }
    }

    /// Creates the `topics` (indexes from `start` on) that do not exist,
    /// each as its settings say, and counts their records in flight;
    /// returns what the broker says of each.
    pub async fn add_topics(
        &mut self,
        start: usize,
        topics: &[(Arc<str>, TopicCreation)],
    ) -> Result<Vec<TopicFacts>, Error> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let mut facts = self.sink.ensure_topics(topics).await?;
        for (fact, (topic, _)) in facts.iter_mut().zip(topics) {
            fact.refused = self.refused.get(topic);
        }
        debug_assert_eq!(
            start,
            self.topic_in_flight.len(),
            "topics added in index order"
        );
        for (topic, _) in topics {
            let label = self.metrics.topic_label(topic);
            let gauge = self.metrics.topic_in_flight.with_label_values(&[&label]);
            // A session starts with nothing in flight; a shared series
            // (spec.metrics.perTable: false) is reset only then.
            if start == 0 || label == **topic {
                gauge.set(0);
            }
            self.topic_in_flight.push(gauge);
        }
        Ok(facts)
    }

    /// Creates the engine's internal topics (snapshot progress, the
    /// offsets record) compacted, and checks those that exist.
    pub async fn ensure_internal_topics(&self, topics: &[&str]) -> Result<(), Error> {
        Ok(ensure_compacted(self.sink.base_config(), topics).await?)
    }

    /// Below the in-flight caps: the session may read the stream.
    pub fn has_room(&self) -> bool {
        self.tracker.in_flight_records() < self.limits.records
            && self.tracker.in_flight_bytes() < self.limits.bytes
    }

    /// A source transaction begins: the sequence its records carry.
    pub fn begin(&mut self) -> u64 {
        self.tracker.begin()
    }

    /// Hands one record of source transaction `seq` over, once the caps
    /// leave room: to the producer or, while a commit is under way, to the
    /// records held for the next Kafka transaction.
    pub async fn send(&mut self, record: &Record, seq: u64) -> Result<(), Error> {
        while !self.has_room() {
            let event = self.next_event().await;
            self.handle(event).await?;
        }
        if let Some(g) = self.topic_in_flight.get(record.topic_index) {
            g.inc();
        }
        self.tracker.sent(seq, record.size())?;
        if let Some(e) = &mut self.exactly_once {
            if e.hold(record, seq) {
                return Ok(());
            }
            e.ensure_open(&self.sink)?;
        }
        self.produce(record, seq).await
    }

    /// Source transaction `seq` was handed over completely; a restart after
    /// it resumes at `end_lsn`.
    pub async fn commit(&mut self, seq: u64, end_lsn: Lsn) -> Result<(), Error> {
        self.tracker.commit(seq, end_lsn)?;
        if let Some(e) = &mut self.exactly_once {
            e.source_committed(end_lsn);
        }
        self.commit_if_due().await
    }

    /// The server says everything before `wal_end` was sent: between
    /// transactions an idle or fully filtered stream advances too.
    pub fn idle_at(&mut self, wal_end: Lsn) {
        self.tracker.idle_at(wal_end);
    }

    /// The next background event. Cancel-safe: nothing is lost when another
    /// branch of a `select!` wins.
    pub async fn next_event(&mut self) -> DeliveryEvent {
        let Delivery {
            reports,
            exactly_once,
            tick,
            ..
        } = self;
        let committing = exactly_once
            .as_ref()
            .is_some_and(ExactlyOnce::is_committing);
        let open = exactly_once.as_ref().is_some_and(ExactlyOnce::is_open);
        tokio::select! {
            biased;
            report = reports.recv() => DeliveryEvent::Report(report),
            result = exactly_once::commit_resolved(exactly_once), if committing => {
                DeliveryEvent::Committed(result)
            }
            _ = tick.tick(), if open => DeliveryEvent::Tick,
        }
    }

    /// Takes in one background event (and every report already waiting:
    /// deliveries come in bursts).
    pub async fn handle(&mut self, event: DeliveryEvent) -> Result<(), Error> {
        match event {
            DeliveryEvent::Report(report) => {
                self.on_report(report)?;
                while let Ok(report) = self.reports.try_recv() {
                    self.on_report(Some(report))?;
                }
            }
            DeliveryEvent::Committed(result) => self.after_commit(result).await?,
            DeliveryEvent::Tick => self.commit_if_due().await?,
        }
        self.tracker.advance();
        self.metrics
            .in_flight_records
            .set(self.tracker.in_flight_records() as i64);
        self.metrics
            .in_flight_bytes
            .set(self.tracker.in_flight_bytes() as i64);
        Ok(())
    }

    /// The position that is safe to confirm to PostgreSQL: acknowledged,
    /// and under exactly-once also committed in Kafka.
    pub fn safe_position(&mut self) -> Lsn {
        self.tracker.advance();
        let acknowledged = self.tracker.flushed();
        match &mut self.exactly_once {
            None => acknowledged,
            Some(e) => e.safe_position(acknowledged, self.tracker.in_flight_records()),
        }
    }

    /// Graceful stop: waits (at most `limit`) for what was sent, then under
    /// exactly-once commits what is complete and aborts the rest (it is
    /// replayed).
    pub async fn finish(&mut self, limit: Duration) -> Result<(), Error> {
        tracing::info!(
            in_flight = self.tracker.in_flight_records(),
            "stopping: draining deliveries"
        );
        let deadline = tokio::time::Instant::now() + limit;
        while self.tracker.in_flight_records() > 0 {
            tokio::select! {
                event = self.next_event() => self.handle(event).await?,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.sink.in_flight(), "deliveries still pending at stop; they will be replayed");
                    break;
                }
            }
        }
        self.tracker.advance();
        self.finish_transactions().await
    }

    /// The one place a delivery report is consumed.
    fn on_report(&mut self, report: Option<SinkEvent>) -> Result<(), Error> {
        match report {
            Some(SinkEvent::Delivered {
                seq,
                topic_index,
                bytes,
            }) => {
                self.metrics.delivered.inc();
                if let Some(g) = self.topic_in_flight.get(topic_index) {
                    g.dec();
                }
                Ok(self.tracker.delivered(seq, bytes)?)
            }
            Some(SinkEvent::CheckpointDelivered) => Ok(()),
            Some(SinkEvent::Failed { topic, error }) => {
                self.metrics.delivery_errors.inc();
                self.metrics
                    .topic_delivery_errors
                    .with_label_values(&[self.metrics.topic_label(&topic).as_str()])
                    .inc();
                Err(self.refusal(topic, error))
            }
            Some(SinkEvent::Fatal(reason)) => Err(SinkError::Fatal(reason).into()),
            None => Err(ErrorKind::Internal("the producer's delivery channel closed").into()),
        }
    }

    /// The error for a record of `topic` Kafka did not take. A topic it
    /// refuses outright (not a dead-letter topic) is remembered, for the
    /// next session to send its records as the error policy says.
    fn refusal(&self, topic: String, error: rdkafka::error::KafkaError) -> Error {
        if refuses_whole_topic(error.rdkafka_error_code())
            && !self.dead_letter_topics.contains(&topic)
        {
            tracing::warn!(%topic, %error, "the broker refuses this topic's records: the next session sends them as the error policy says");
            self.refused.insert(&topic, error.to_string());
            return SinkError::TopicRefused {
                topic,
                source: error,
            }
            .into();
        }
        SinkError::delivery(topic, error).into()
    }

    /// Hands a record already counted in flight to the producer.
    async fn produce(&mut self, record: &Record, seq: u64) -> Result<(), Error> {
        self.queue(&record.topic, |sink| sink.send(record, seq))
            .await
    }

    /// Queues with `attempt`; a full local queue means waiting for
    /// deliveries, never dropping.
    async fn queue(
        &mut self,
        topic: &str,
        attempt: impl Fn(&KafkaSink) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        loop {
            match attempt(&self.sink) {
                Ok(()) => return Ok(()),
                Err(SendError::QueueFull) => {
                    // The producer's own thread keeps delivering meanwhile.
                    let report = self.reports.recv().await;
                    self.on_report(report)?;
                }
                Err(SendError::Kafka(e)) => return Err(self.refusal(topic.to_owned(), e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode as C;

    #[test]
    fn only_an_authorization_refusal_is_topic_wide_and_it_is_kept() {
        assert!(refuses_whole_topic(Some(C::TopicAuthorizationFailed)));
        // A batch refused for one record's sake holds innocent neighbours.
        for code in [C::MessageSizeTooLarge, C::InvalidRecord, C::PolicyViolation] {
            assert!(!refuses_whole_topic(Some(code)), "{code:?}");
        }
        let refused = RefusedTopics::default();
        let later = refused.clone();
        refused.insert(
            "cdc.public.orders",
            "Broker: Topic authorization failed".into(),
        );
        assert_eq!(
            later.get("cdc.public.orders").as_deref(),
            Some("Broker: Topic authorization failed")
        );
        assert_eq!(later.get("other"), None);
    }
}
