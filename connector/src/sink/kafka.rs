//! The Kafka producer: acks=all, idempotent, Java-compatible murmur2
//! partitioning, user properties passed through. Delivery reports arrive on a
//! channel as [`SinkEvent`]s tagged with the transaction sequence number the
//! engine gave the record; checkpoint records (exactly-once) are reported as
//! such and never counted as source records.

use std::sync::Arc;
use std::time::Duration;

use pgkafka_crds::{KafkaSpec, TopicCreation};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::mpsc;

use super::SinkError;
use crate::credentials::KafkaCredentials;
use crate::event::{record_size, Record, TopicFacts, TxHeaders};

/// Header carrying the source transaction's commit LSN (`0/16B3748`).
pub const HEADER_COMMIT_LSN: &str = "pgkafka.commit_lsn";
/// Header carrying the source transaction id.
pub const HEADER_TXID: &str = "pgkafka.txid";

/// How long librdkafka retries one record before reporting it failed, unless
/// `message.timeout.ms` is set in `spec.kafka.properties`.
pub const DEFAULT_DELIVERY_TIMEOUT_MS: &str = "30000";

/// What the producer reports back.
#[derive(Debug)]
pub(crate) enum SinkEvent {
    /// The broker acknowledged a record of transaction `seq`.
    Delivered {
        /// Transaction sequence number given at send time.
        seq: u64,
        /// The record's topic index.
        topic_index: usize,
        /// Record size.
        bytes: usize,
    },
    /// The broker acknowledged a checkpoint record.
    CheckpointDelivered,
    /// A record failed for good (retries exhausted).
    Failed {
        /// The record's topic.
        topic: String,
        /// Why.
        error: KafkaError,
    },
    /// The producer cannot go on (for example a fenced or unknown producer id).
    Fatal(String),
}

/// librdkafka callbacks, forwarded to the engine.
pub(crate) struct DeliveryContext {
    events: mpsc::UnboundedSender<SinkEvent>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => {
                let _ = self.events.send(SinkEvent::Fatal(reason.to_owned()));
            }
            // librdkafka's own log line already reported these.
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => {
                tracing::debug!(%error, reason, "kafka client error")
            }
            _ => tracing::warn!(%error, reason, "kafka client error"),
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let event = match (result, Tag::unpack(opaque)) {
            (Ok(_), Tag::Checkpoint) => SinkEvent::CheckpointDelivered,
            (Ok(m), Tag::Record { seq, topic_index }) => SinkEvent::Delivered {
                seq,
                topic_index,
                bytes: record_size(m.payload_len(), m.key().map_or(0, <[u8]>::len)),
            },
            (Err((error, m)), _) => SinkEvent::Failed {
                topic: m.topic().to_owned(),
                error: error.clone(),
            },
        };
        // The receiver is gone only when the session ended; its records are
        // replayed by the next session, so nothing is lost here.
        let _ = self.events.send(event);
    }
}

/// What a delivery report is about, carried through librdkafka as one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// A record of source transaction `seq`, to topic `topic_index`.
    Record { seq: u64, topic_index: usize },
    /// A checkpoint record.
    Checkpoint,
}

/// Bits of the delivery opaque that carry the topic index.
const TOPIC_BITS: u32 = 16;
/// The opaque's top bit marks a checkpoint.
const CHECKPOINT_BIT: usize = 1 << (usize::BITS - 1);

impl Tag {
    fn pack(self) -> usize {
        match self {
            Tag::Record { seq, topic_index } => {
                (((seq << TOPIC_BITS) as usize) | (topic_index & ((1 << TOPIC_BITS) - 1)))
                    & !CHECKPOINT_BIT
            }
            Tag::Checkpoint => CHECKPOINT_BIT,
        }
    }

    fn unpack(opaque: usize) -> Tag {
        if opaque & CHECKPOINT_BIT != 0 {
            return Tag::Checkpoint;
        }
        Tag::Record {
            seq: (opaque as u64) >> TOPIC_BITS,
            topic_index: opaque & ((1 << TOPIC_BITS) - 1),
        }
    }
}

/// Header carrying `i/n` on each part of a whole-transaction message.
pub const HEADER_PART: &str = "pgkafka.part";

/// Why a record was not queued.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The local queue is full: wait for deliveries, then send again.
    QueueFull,
    /// Any other production error.
    Kafka(KafkaError),
}

/// One message as librdkafka is given it.
struct Outgoing<'a> {
    topic: &'a str,
    key: Option<&'a [u8]>,
    /// `None`: a tombstone.
    payload: Option<&'a [u8]>,
    tx: &'a TxHeaders,
    part: Option<&'a str>,
    moved: Option<&'a crate::event::MovedKey>,
    extras: Option<&'a crate::event::EventExtras>,
}

/// The producer of one engine session.
pub(crate) struct KafkaSink {
    producer: Arc<ThreadedProducer<DeliveryContext>>,
    config: ClientConfig,
}

/// How long transaction operations may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// The librdkafka configuration for `spec`: user properties first, then the
/// settings the delivery guarantee depends on, which `validate()` keeps users
/// from changing.
pub fn client_config(spec: &KafkaSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", spec.bootstrap_servers.join(","))
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random");
    if !spec.properties.contains_key("linger.ms") {
        config.set("linger.ms", "5");
    }
    // librdkafka retries a record until this passes (default 5 minutes). A
    // failed record ends the session and a new producer replays from the last
    // acknowledged LSN, which also re-creates topics an empty broker lost, so
    // a shorter bound recovers sooner without losing anything.
    if !["message.timeout.ms", "delivery.timeout.ms"]
        .iter()
        .any(|k| spec.properties.contains_key(*k))
    {
        config.set("message.timeout.ms", DEFAULT_DELIVERY_TIMEOUT_MS);
    }
    config
}

/// [`client_config`] with the SASL credentials and the broker CA.
pub(crate) fn client_config_with(spec: &KafkaSpec, credentials: &KafkaCredentials) -> ClientConfig {
    let mut config = client_config(spec);
    if let Some((user, password)) = &credentials.sasl {
        config
            .set("sasl.username", user)
            .set("sasl.password", password.expose());
    }
    if let Some(ca) = &credentials.ca_pem {
        config.set("ssl.ca.pem", ca);
    }
    config
}

impl KafkaSink {
    /// Builds a producer; delivery reports go to `events`. With a
    /// `transactional_id` it produces in Kafka transactions (exactly-once).
    pub fn new(
        spec: &KafkaSpec,
        credentials: &KafkaCredentials,
        transactional_id: Option<String>,
        events: mpsc::UnboundedSender<SinkEvent>,
    ) -> Result<Self, SinkError> {
        let mut config = client_config_with(spec, credentials);
        // The consumers built from this config (checkpoints, topic admin)
        // must not inherit the producer-only transactional id.
        let base = config.clone();
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
            // A large source transaction is one Kafka transaction: allow the
            // brokers' usual maximum (15 minutes) rather than librdkafka's 60 s.
            if !spec.properties.contains_key("transaction.timeout.ms") {
                config.set("transaction.timeout.ms", "900000");
            }
        }
        let producer = config
            .create_with_context(DeliveryContext { events })
            .map_err(SinkError::Config)?;
        Ok(KafkaSink {
            producer: Arc::new(producer),
            config: base,
        })
    }

    /// The client configuration without producer-only settings.
    pub fn base_config(&self) -> &ClientConfig {
        &self.config
    }

    /// Runs a blocking transaction call off the async thread.
    async fn blocking(
        &self,
        what: &'static str,
        call: impl FnOnce(&ThreadedProducer<DeliveryContext>) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), SinkError> {
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || call(&producer))
            .await
            .map_err(|source| SinkError::Blocking { what, source })?
            .map_err(SinkError::Kafka)
    }

    /// Registers the transactional id, fencing any older producer with it.
    pub async fn init_transactions(&self) -> Result<(), SinkError> {
        self.blocking("init_transactions", |p| p.init_transactions(TXN_TIMEOUT))
            .await
    }

    /// Opens a Kafka transaction.
    pub fn begin_transaction(&self) -> Result<(), SinkError> {
        self.producer.begin_transaction().map_err(SinkError::Kafka)
    }

    /// Commits the open transaction on a blocking thread and returns at once:
    /// the caller awaits the handle when it is ready to (records of the next
    /// transaction cannot be produced before it resolves).
    pub fn commit_transaction_task(&self) -> tokio::task::JoinHandle<Result<(), KafkaError>> {
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || producer.commit_transaction(TXN_TIMEOUT))
    }

    /// Aborts the open transaction.
    pub async fn abort_transaction(&self) -> Result<(), SinkError> {
        self.blocking("abort_transaction", |p| p.abort_transaction(TXN_TIMEOUT))
            .await
    }

    /// Creates each of `topics` that does not exist yet as its settings
    /// say; returns what the broker says of each.
    pub async fn ensure_topics(
        &self,
        topics: &[(Arc<str>, TopicCreation)],
    ) -> Result<Vec<TopicFacts>, SinkError> {
        let named = topics.iter().map(|(t, c)| (&**t, c));
        let admin = super::topics::create_missing(&self.config, named).await?;
        let names: Vec<&str> = topics.iter().map(|(t, _)| &**t).collect();
        Ok(super::topics::facts(&admin, &names).await)
    }

    /// Queues one record of source transaction `seq`.
    pub fn send(&self, record: &Record, seq: u64) -> Result<(), SendError> {
        let tag = Tag::Record {
            seq,
            topic_index: record.topic_index,
        };
        let part = record.part.map(|(i, n)| format!("{i}/{n}"));
        let message = Outgoing {
            topic: &record.topic,
            key: record.key.as_deref(),
            payload: record.payload.as_deref(),
            tx: &record.tx,
            part: part.as_deref(),
            moved: record.moved.as_ref(),
            extras: record.extras.as_deref(),
        };
        self.produce(message, tag)
    }

    /// Queues a checkpoint record (exactly-once) of the position `tx` names:
    /// reported as [`SinkEvent::CheckpointDelivered`], never as a source record.
    pub fn send_checkpoint(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        tx: &TxHeaders,
    ) -> Result<(), SendError> {
        let message = Outgoing {
            topic,
            key: Some(key),
            payload: Some(payload),
            tx,
            part: None,
            moved: None,
            extras: None,
        };
        self.produce(message, Tag::Checkpoint)
    }

    fn produce(&self, m: Outgoing<'_>, tag: Tag) -> Result<(), SendError> {
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: HEADER_COMMIT_LSN,
                value: Some(m.tx.commit_lsn.as_bytes()),
            })
            .insert(Header {
                key: HEADER_TXID,
                value: Some(m.tx.xid.as_bytes()),
            });
        if let Some(part) = m.part {
            headers = headers.insert(Header {
                key: HEADER_PART,
                value: Some(part.as_bytes()),
            });
        }
        if let Some((key, value)) = m.moved.map(crate::event::MovedKey::header) {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if let Some(extras) = m.extras {
            for (key, value) in &extras.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
        }
        let mut msg = BaseRecord::with_opaque_to(m.topic, tag.pack()).headers(headers);
        if let Some(ms) = m.extras.and_then(|e| e.timestamp_ms) {
            msg = msg.timestamp(ms);
        }
        if let Some(payload) = m.payload {
            msg = msg.payload(payload);
        }
        if let Some(key) = m.key {
            msg = msg.key(key);
        }
        self.producer
            .send(msg)
            .map_err(|(e, _)| match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
                _ => SendError::Kafka(e),
            })
    }

    /// Records queued or in flight.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_round_trips() {
        for tag in [
            Tag::Record {
                seq: 0,
                topic_index: 0,
            },
            Tag::Record {
                seq: 123_456_789,
                topic_index: 65_535,
            },
            Tag::Checkpoint,
        ] {
            assert_eq!(Tag::unpack(tag.pack()), tag);
        }
    }

    #[test]
    fn guarantee_settings_win_over_properties() {
        let spec: KafkaSpec = serde_yaml::from_str(
            "{bootstrapServers: [a:1, b:2], topicPrefix: x, properties: {compression.type: zstd, acks: all}}",
        )
        .expect("spec");
        let config = client_config(&spec);
        assert_eq!(config.get("bootstrap.servers"), Some("a:1,b:2"));
        assert_eq!(config.get("compression.type"), Some("zstd"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("partitioner"), Some("murmur2_random"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(
            config.get("message.timeout.ms"),
            Some(DEFAULT_DELIVERY_TIMEOUT_MS)
        );
    }
}
