//! The session's side of delivery: records handed to the producer
//! ([`Output::send`], [`Output::send_checkpoint`]) and the one place delivery reports are consumed
//! ([`Acks::on_event`]), feeding the LSN tracker.

use prometheus::IntGauge;
use tokio::sync::mpsc;

use super::Limits;
use crate::ack::tracker::Tracker;
use crate::config::EngineConfig;
use crate::error::{Error, ErrorKind};
use crate::event::{Record, TxHeaders};
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::sink::kafka::{KafkaSink, SendError, SinkEvent};
use crate::sink::SinkError;

/// The producer of one session and its delivery reports.
pub(super) struct Output {
    /// The producer.
    pub sink: KafkaSink,
    /// Its delivery reports, in arrival order.
    pub events: mpsc::UnboundedReceiver<SinkEvent>,
}

impl Output {
    /// A producer for `cfg`; transactional when `transactional_id` is given.
    pub fn open(cfg: &EngineConfig, transactional_id: Option<String>) -> Result<Self, Error> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let sink = KafkaSink::new(&cfg.spec.kafka, &cfg.kafka, transactional_id, events_tx)?;
        Ok(Output { sink, events })
    }

    /// Hands one record of source transaction `seq` to the producer.
    pub async fn send(
        &mut self,
        acks: &mut Acks<'_>,
        record: &Record,
        seq: u64,
    ) -> Result<(), Error> {
        self.send_counted(acks, record, seq).await?;
        acks.sent(record, seq)
    }

    /// Hands over a record already counted in flight ([`Acks::sent`]): one
    /// held while a Kafka transaction committed.
    pub async fn send_counted(
        &mut self,
        acks: &mut Acks<'_>,
        record: &Record,
        seq: u64,
    ) -> Result<(), Error> {
        self.queue(acks, &record.topic, |sink| sink.send(record, seq))
            .await
    }

    /// Hands an exactly-once checkpoint to the producer.
    pub async fn send_checkpoint(
        &mut self,
        acks: &mut Acks<'_>,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        tx: &TxHeaders,
    ) -> Result<(), Error> {
        self.queue(acks, topic, |sink| {
            sink.send_checkpoint(topic, key, payload, tx)
        })
        .await
    }

    /// Queues with `attempt`; a full local queue means waiting for
    /// deliveries, never dropping.
    async fn queue(
        &mut self,
        acks: &mut Acks<'_>,
        topic: &str,
        attempt: impl Fn(&KafkaSink) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        loop {
            match attempt(&self.sink) {
                Ok(()) => return Ok(()),
                Err(SendError::QueueFull) => {
                    // The producer's own thread keeps delivering meanwhile.
                    let event = self.events.recv().await;
                    acks.on_event(event)?;
                }
                Err(SendError::Kafka(e)) => {
                    return Err(SinkError::delivery(topic.to_owned(), e).into())
                }
            }
        }
    }
}

/// Acknowledgement bookkeeping of one session: the tracker and the gauges
/// of what is in flight.
pub(super) struct Acks<'a> {
    tracker: Tracker,
    metrics: &'a Metrics,
    topic_in_flight: Vec<IntGauge>,
}

impl<'a> Acks<'a> {
    /// Nothing in flight; everything before `flushed` is done.
    pub fn new(flushed: Lsn, metrics: &'a Metrics) -> Self {
        Acks {
            tracker: Tracker::new(flushed),
            metrics,
            topic_in_flight: Vec::new(),
        }
    }

    /// Starts over at `flushed` (exactly-once: after Kafka's last checkpoint).
    pub fn restart_at(&mut self, flushed: Lsn) {
        self.tracker = Tracker::new(flushed);
    }

    /// Per-topic in-flight gauges for `topics`, by topic index, at zero.
    pub fn watch_topics(&mut self, topics: &[std::sync::Arc<str>]) {
        self.topic_in_flight = topics
            .iter()
            .map(|t| self.metrics.topic_in_flight.with_label_values(&[&**t]))
            .collect();
        self.topic_in_flight.iter().for_each(|g| g.set(0));
    }

    /// The one place a delivery report is consumed.
    pub fn on_event(&mut self, event: Option<SinkEvent>) -> Result<(), Error> {
        match event {
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
                    .with_label_values(&[topic.as_str()])
                    .inc();
                Err(SinkError::delivery(topic, error).into())
            }
            Some(SinkEvent::Fatal(reason)) => Err(SinkError::Fatal(reason).into()),
            None => Err(ErrorKind::Internal("the producer's delivery channel closed").into()),
        }
    }

    /// Takes every report already waiting (deliveries come in bursts), then
    /// moves the flushed position.
    pub fn take_ready(&mut self, out: &mut Output) -> Result<(), Error> {
        while let Ok(event) = out.events.try_recv() {
            self.on_event(Some(event))?;
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

    /// Counts `record` of source transaction `seq` in flight.
    pub(super) fn sent(&mut self, record: &Record, seq: u64) -> Result<(), Error> {
        if let Some(g) = self.topic_in_flight.get(record.topic_index) {
            g.inc();
        }
        Ok(self.tracker.sent(seq, record.size())?)
    }

    /// A source transaction begins: its sequence number.
    pub fn begin(&mut self) -> u64 {
        self.tracker.begin()
    }

    /// Source transaction `seq` ends at `end_lsn`.
    pub fn commit(&mut self, seq: u64, end_lsn: Lsn) -> Result<(), Error> {
        Ok(self.tracker.commit(seq, end_lsn)?)
    }

    /// The server says everything before `wal_end` was sent.
    pub fn idle_at(&mut self, wal_end: Lsn) {
        self.tracker.idle_at(wal_end);
    }

    /// Moves the flushed position over what is complete.
    pub fn advance(&mut self) {
        self.tracker.advance();
    }

    /// Everything before it is acknowledged.
    pub fn flushed(&self) -> Lsn {
        self.tracker.flushed()
    }

    /// A source transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.tracker.in_transaction()
    }

    /// Records sent and not yet acknowledged.
    pub fn in_flight_records(&self) -> usize {
        self.tracker.in_flight_records()
    }

    /// At the in-flight cap: stop reading the stream.
    pub fn full(&self, limits: &Limits) -> bool {
        self.tracker.in_flight_records() >= limits.records
            || self.tracker.in_flight_bytes() >= limits.bytes
    }
}
