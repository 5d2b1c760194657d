//! The Kafka producer: acks=all, idempotent, Java-compatible murmur2
//! partitioning, user properties passed through. Delivery reports arrive on a
//! channel as [`SinkEvent`]s tagged with the transaction sequence number the
//! engine gave the record.

use std::sync::Arc;
use std::time::Duration;

use pgkafka_crds::{DeliveryGuarantee, KafkaSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::mpsc;

use super::Record;
use crate::config::EngineConfig;
use crate::error::Error;

/// Header carrying the source transaction's commit LSN (`0/16B3748`).
pub const HEADER_COMMIT_LSN: &str = "pgkafka.commit_lsn";
/// Header carrying the source transaction id.
pub const HEADER_TXID: &str = "pgkafka.txid";

/// How long librdkafka retries one record before reporting it failed, unless
/// `message.timeout.ms` is set in `spec.kafka.properties`.
pub const DEFAULT_DELIVERY_TIMEOUT_MS: &str = "30000";

/// What the producer reports back.
#[derive(Debug)]
pub enum SinkEvent {
    /// The broker acknowledged a record of transaction `seq`.
    Delivered {
        /// Transaction sequence number given at send time.
        seq: u64,
        /// The record's topic index.
        topic_index: usize,
        /// Record size.
        bytes: usize,
    },
    /// A record of transaction `seq` failed for good (retries exhausted).
    Failed {
        /// Transaction sequence number.
        seq: u64,
        /// The record's topic index.
        topic_index: usize,
        /// The record's topic.
        topic: String,
        /// Why.
        error: KafkaError,
    },
    /// The producer cannot go on (for example a fenced or unknown producer id).
    Fatal(String),
}

/// librdkafka callbacks, forwarded to the engine.
pub struct DeliveryContext {
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
        let (seq, topic_index) = unpack(opaque);
        let event = match result {
            Ok(m) => SinkEvent::Delivered {
                seq,
                topic_index,
                bytes: m.payload_len() + m.key().map_or(0, <[u8]>::len),
            },
            Err((error, m)) => SinkEvent::Failed {
                seq,
                topic_index,
                topic: m.topic().to_owned(),
                error: error.clone(),
            },
        };
        // The receiver is gone only when the session ended; its records are
        // replayed by the next session, so nothing is lost here.
        let _ = self.events.send(event);
    }
}

/// Bits of the delivery opaque that carry the topic index.
const TOPIC_BITS: u32 = 16;

/// The delivery opaque: transaction sequence and topic index in one word.
fn pack(seq: u64, topic_index: usize) -> usize {
    ((seq << TOPIC_BITS) as usize) | (topic_index & ((1 << TOPIC_BITS) - 1))
}

fn unpack(opaque: usize) -> (u64, usize) {
    (
        (opaque as u64) >> TOPIC_BITS,
        opaque & ((1 << TOPIC_BITS) - 1),
    )
}

/// Header carrying `i/n` on each part of a whole-transaction message.
pub const HEADER_PART: &str = "pgkafka.part";

/// Why a record was not queued.
#[derive(Debug)]
pub enum SendError {
    /// The local queue is full: wait for deliveries, then send again.
    QueueFull,
    /// Any other production error.
    Kafka(KafkaError),
}

/// The producer of one engine session.
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<DeliveryContext>>,
    config: ClientConfig,
}

/// Sequence number of checkpoint records: they belong to no source
/// transaction, and their delivery reports are not counted.
pub const CHECKPOINT_SEQ: u64 = (1 << 47) - 1;

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

impl KafkaSink {
    /// Builds a producer; delivery reports go to `events`.
    pub fn new(
        cfg: &EngineConfig,
        events: mpsc::UnboundedSender<SinkEvent>,
    ) -> Result<Self, Error> {
        let mut config = client_config(&cfg.spec.kafka);
        if let Some((user, password)) = &cfg.kafka_sasl {
            config
                .set("sasl.username", user)
                .set("sasl.password", password.expose());
        }
        if let Some(ca) = &cfg.kafka_ca_file {
            config.set("ssl.ca.location", ca.to_string_lossy());
        }
        // The consumers built from this config (checkpoints, topic admin)
        // must not inherit the producer-only transactional id.
        let base = config.clone();
        if cfg.spec.kafka.delivery_guarantee == DeliveryGuarantee::ExactlyOnce {
            config.set(
                "transactional.id",
                super::transactions::transactional_id(cfg),
            );
            // A large source transaction is one Kafka transaction: allow the
            // brokers' usual maximum (15 minutes) rather than librdkafka's 60 s.
            if !cfg
                .spec
                .kafka
                .properties
                .contains_key("transaction.timeout.ms")
            {
                config.set("transaction.timeout.ms", "900000");
            }
        }
        let producer = config
            .create_with_context(DeliveryContext { events })
            .map_err(|e| Error::KafkaConfig(e.to_string()))?;
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
    ) -> Result<(), Error> {
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || call(&producer))
            .await
            .map_err(|e| Error::Internal(format!("{what}: {e}")))?
            .map_err(Error::Kafka)
    }

    /// Registers the transactional id, fencing any older producer with it.
    pub async fn init_transactions(&self) -> Result<(), Error> {
        self.blocking("init_transactions", |p| p.init_transactions(TXN_TIMEOUT))
            .await
    }

    /// Opens a Kafka transaction.
    pub fn begin_transaction(&self) -> Result<(), Error> {
        self.producer.begin_transaction().map_err(Error::Kafka)
    }

    /// Commits the open transaction (waits for every record in it).
    pub async fn commit_transaction(&self) -> Result<(), Error> {
        self.blocking("commit_transaction", |p| p.commit_transaction(TXN_TIMEOUT))
            .await
    }

    /// Aborts the open transaction.
    pub async fn abort_transaction(&self) -> Result<(), Error> {
        self.blocking("abort_transaction", |p| p.abort_transaction(TXN_TIMEOUT))
            .await
    }

    /// Creates the topics that do not exist yet, with the broker's default
    /// partition count and replication factor.
    pub async fn ensure_topics(&self, topics: &[std::sync::Arc<str>]) -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> =
            self.config.create().map_err(Error::Kafka)?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, -1, TopicReplication::Fixed(-1)))
            .collect();
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new, &opts)
            .await
            .map_err(Error::Kafka)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(Error::Kafka(KafkaError::AdminOp(code))).inspect_err(|_| {
                        tracing::error!(topic, %code, "cannot create topic");
                    })
                }
            }
        }
        Ok(())
    }

    /// Queues one record of transaction `seq`.
    pub fn send(&self, record: &Record, seq: u64) -> Result<(), SendError> {
        let part = record.part.map(|(i, n)| format!("{i}/{n}"));
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: HEADER_COMMIT_LSN,
                value: Some(record.tx.commit_lsn.as_bytes()),
            })
            .insert(Header {
                key: HEADER_TXID,
                value: Some(record.tx.xid.as_bytes()),
            });
        if let Some(part) = &part {
            headers = headers.insert(Header {
                key: HEADER_PART,
                value: Some(part.as_bytes()),
            });
        }
        let mut msg = BaseRecord::with_opaque_to(&record.topic, pack(seq, record.topic_index))
            .payload(&*record.payload)
            .headers(headers);
        if let Some(key) = &record.key {
            msg = msg.key(&**key);
        }
        self.producer
            .send(msg)
            .map_err(|(e, _)| match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
                _ => SendError::Kafka(e),
            })
    }

    /// Waits up to `timeout` for every queued record to be delivered or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
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
        assert_eq!(unpack(pack(0, 0)), (0, 0));
        assert_eq!(unpack(pack(123_456_789, 65_535)), (123_456_789, 65_535));
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
