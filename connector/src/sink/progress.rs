//! Small durable records beside the data: snapshot progress, written to a
//! compacted topic with acks=all by a plain idempotent producer (never in a
//! Kafka transaction), and read back with [`super::transactions::read_compacted`].

use std::time::Duration;

use pgkafka_crds::KafkaSpec;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::kafka::client_config_with;
use super::SinkError;
use crate::credentials::KafkaCredentials;

/// How long one progress record may take to be acknowledged.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes keyed records to one topic and waits for each acknowledgement.
pub(crate) struct ProgressWriter {
    producer: FutureProducer,
    config: ClientConfig,
    topic: String,
}

impl ProgressWriter {
    /// A producer for `topic`.
    pub fn new(
        spec: &KafkaSpec,
        credentials: &KafkaCredentials,
        topic: String,
    ) -> Result<Self, SinkError> {
        let config = client_config_with(spec, credentials);
        let producer = config.create().map_err(SinkError::Config)?;
        Ok(ProgressWriter {
            producer,
            config,
            topic,
        })
    }

    /// The client configuration, for reading the topic back.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `value` under `key`; returns once the broker acknowledged it.
    pub async fn write(&self, key: &str, value: &[u8]) -> Result<(), SinkError> {
        let record = FutureRecord::to(&self.topic).key(key).payload(value);
        self.producer
            .send(record, WRITE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| SinkError::delivery(self.topic.clone(), e))
    }
}
