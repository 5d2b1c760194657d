//! Where records go. The engine has one sink, Kafka ([`kafka::KafkaSink`]).
//!
//! Guarantee: a record is "done" only when the broker acknowledged it with
//! acks=all; the sink reports every record exactly once as delivered or failed,
//! and never drops one silently. Records of one key keep their order (one
//! partition per key, idempotent producer). Under exactly-once, records go in
//! Kafka transactions and "done" means committed ([`transactions`]).

use rdkafka::error::KafkaError;

pub(crate) mod compacted;
pub(crate) mod kafka;
pub(crate) mod topics;
pub(crate) mod transactions;

/// What the sink can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    /// librdkafka refused the configuration.
    #[error("spec.kafka.properties: {0}")]
    Config(#[source] KafkaError),
    /// A Kafka client operation failed.
    #[error("kafka: {0}")]
    Kafka(#[source] KafkaError),
    /// A topic could not be created.
    #[error("kafka: cannot create topic {topic}{settings}: {code} (see spec.kafka.topicDefaults and the targets' topicCreation)")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// What it was to be created with (`" with ..."`), empty for the
        /// broker's defaults.
        settings: String,
        /// Why, as the broker said.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// A record could not be delivered after librdkafka's retries.
    #[error("kafka did not acknowledge a record for topic {topic}: {source}")]
    Delivery {
        /// Its topic.
        topic: String,
        /// Why.
        source: KafkaError,
    },
    /// Kafka refuses a record and would refuse it again (too large, not
    /// authorized): the engine stops before the slot moves past it.
    #[error("kafka refuses records for topic {topic} ({source}); the slot stays before this change. Fix the cause (for a size limit: the topic's max.message.bytes and the producer's message.max.bytes in spec.kafka.properties) and restart")]
    Refused {
        /// Its topic.
        topic: String,
        /// Why.
        source: KafkaError,
    },
    /// Kafka refuses every record of a topic (not authorized): the session
    /// restarts, and the records meet the error policy before they are sent.
    #[error("kafka refuses every record for topic {topic} ({source}); the session starts again and sends them as spec.errors says")]
    TopicRefused {
        /// The topic.
        topic: String,
        /// Why.
        source: KafkaError,
    },
    /// The producer entered a fatal state and must be rebuilt.
    #[error("kafka producer failed fatally: {0}")]
    Fatal(String),
    /// A blocking client call could not be run or did not finish.
    #[error("kafka: {what} did not complete: {source}")]
    Blocking {
        /// The call.
        what: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
    /// An internal topic exists without compaction: retention would delete
    /// what a restart needs.
    #[error("kafka: internal topic {topic} has cleanup.policy={policy}: retention would delete the records a restart resumes from. Make it compacted (kafka-configs --alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact) and restart")]
    NotCompacted {
        /// The topic.
        topic: String,
        /// Its policy.
        policy: String,
    },
    /// Reading a compacted topic (checkpoints, snapshot progress) took too long.
    #[error("kafka: reading {topic} took over {seconds} s")]
    ReadTimeout {
        /// The checkpoint topic.
        topic: String,
        /// The limit.
        seconds: u64,
    },
}

impl SinkError {
    /// A record of `topic` that Kafka did not take: [`SinkError::Refused`]
    /// when retrying cannot help, else [`SinkError::Delivery`].
    pub fn delivery(topic: String, source: KafkaError) -> Self {
        use rdkafka::types::RDKafkaErrorCode as C;
        let permanent = matches!(
            source.rdkafka_error_code(),
            Some(
                C::MessageSizeTooLarge
                    | C::InvalidMessageSize
                    | C::TopicAuthorizationFailed
                    | C::ClusterAuthorizationFailed
                    | C::InvalidRecord
                    | C::PolicyViolation
                    | C::InvalidTopic
            )
        );
        if permanent {
            SinkError::Refused { topic, source }
        } else {
            SinkError::Delivery { topic, source }
        }
    }
}
