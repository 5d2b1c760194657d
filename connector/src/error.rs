//! The engine's one error type. Each variant keeps its source, and
//! [`Error::is_retryable`] is the only place that decides whether a failed
//! session is started again or the engine stops.

use std::path::PathBuf;

use crate::decode::pgoutput::DecodeError;
use crate::pipeline::PipelineError;

/// Everything that can stop an engine session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest cannot be read or parsed.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest is not a valid `PgKafkaConnector`.
    #[error("{path}: {message}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the field and position).
        message: String,
    },
    /// A spec field is invalid.
    #[error("invalid spec: {0}")]
    Invalid(#[from] pgkafka_crds::ValidationErrors),
    /// A secret referenced by the spec cannot be read.
    #[error("{field}: cannot read secret {name}/{key}: {reason}")]
    Secret {
        /// The spec field holding the reference.
        field: &'static str,
        /// Secret name.
        name: String,
        /// Key in the secret.
        key: String,
        /// Why.
        reason: String,
    },
    /// No connection to PostgreSQL could be made.
    #[error("cannot connect to PostgreSQL at {target} (spec.postgres): {detail}")]
    Connect {
        /// `host:port/database as user`.
        target: String,
        /// The server's message when it sent one, else the driver's.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A catalog query or provisioning statement failed.
    #[error("PostgreSQL: {context}: {detail}")]
    Postgres {
        /// What the engine was doing.
        context: String,
        /// The server's message when it sent one, else the driver's.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server or the objects it holds do not allow streaming as configured.
    #[error("{field}: {message}")]
    Setup {
        /// The spec field the problem relates to.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The replication connection failed.
    #[error("replication stream: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    /// The stream held bytes that are not pgoutput.
    #[error("decoding pgoutput at {lsn}: {source}")]
    Decode {
        /// Position of the message.
        lsn: crate::lsn::Lsn,
        /// Why.
        source: DecodeError,
    },
    /// The stream could not be turned into records.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The Kafka configuration was refused by librdkafka.
    #[error("spec.kafka.properties: {0}")]
    KafkaConfig(String),
    /// A Kafka client operation failed.
    #[error("kafka: {0}")]
    Kafka(#[source] rdkafka::error::KafkaError),
    /// A record could not be delivered after librdkafka's retries.
    #[error("kafka did not acknowledge a record for topic {topic}: {source}")]
    Delivery {
        /// Its topic.
        topic: String,
        /// Why.
        source: rdkafka::error::KafkaError,
    },
    /// Kafka refuses a record and would refuse it again (too large, not
    /// authorized): the engine stops before the slot moves past it.
    #[error("kafka refuses records for topic {topic} ({source}); the slot stays before this change. Fix the cause (for a size limit: the topic's max.message.bytes and the producer's message.max.bytes in spec.kafka.properties) and restart")]
    Refused {
        /// Its topic.
        topic: String,
        /// Why.
        source: rdkafka::error::KafkaError,
    },
    /// The producer entered a fatal state and must be rebuilt.
    #[error("kafka producer failed fatally: {0}")]
    ProducerFatal(String),
    /// The HTTP server could not start.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        /// Listen address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A bug: the engine's own bookkeeping disagrees with itself.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The most useful text of a driver error: the server's message (with its
/// detail and hint) when there is one, else the error and its causes.
pub fn postgres_detail(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        for extra in [db.detail(), db.hint()].into_iter().flatten() {
            text.push_str("; ");
            text.push_str(extra);
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl Error {
    /// A record of `topic` that Kafka did not take: [`Error::Refused`] when
    /// retrying cannot help, else [`Error::Delivery`].
    pub fn delivery(topic: String, source: rdkafka::error::KafkaError) -> Self {
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
            Error::Refused { topic, source }
        } else {
            Error::Delivery { topic, source }
        }
    }

    /// A failed connection attempt to `target`.
    pub fn connect(target: String, source: tokio_postgres::Error) -> Self {
        Error::Connect {
            target,
            detail: postgres_detail(&source),
            source,
        }
    }

    /// A failed statement while doing `context`.
    pub fn postgres(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::Postgres {
            context: context.into(),
            detail: postgres_detail(&source),
            source,
        }
    }

    /// Whether a session that failed with this error is started again (after
    /// a backoff) rather than stopping the engine. Transport faults are
    /// retried; configuration and data errors would fail again the same way.
    pub fn is_retryable(&self) -> bool {
        use pgwire_replication::PgWireError as W;
        match self {
            Error::Connect { .. }
            | Error::Kafka(_)
            | Error::Delivery { .. }
            | Error::ProducerFatal(_) => true,
            Error::Postgres { source, .. } => source.is_closed() || source.code().is_none(),
            Error::Replication(e) => {
                matches!(e, W::Io(_) | W::Task(_)) || is_transient_server_error(e)
            }
            Error::ReadConfig { .. }
            | Error::ParseConfig { .. }
            | Error::Invalid(_)
            | Error::Secret { .. }
            | Error::Setup { .. }
            | Error::Decode { .. }
            | Error::Pipeline(_)
            | Error::KafkaConfig(_)
            | Error::Refused { .. }
            | Error::Http { .. }
            | Error::Internal(_) => false,
        }
    }
}

/// A server error during streaming that a new session can overcome: the slot
/// still held by the previous walsender, a shutdown, a terminated backend.
fn is_transient_server_error(e: &pgwire_replication::PgWireError) -> bool {
    let pgwire_replication::PgWireError::Server(msg) = e else {
        return false;
    };
    [
        "is active for PID",
        "terminating connection",
        "shutting down",
        "the database system is",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire_replication::PgWireError as W;

    #[test]
    fn transport_faults_retry_and_configuration_does_not() {
        assert!(Error::ProducerFatal("x".into()).is_retryable());
        assert!(
            Error::Replication(W::Io(std::sync::Arc::new(std::io::Error::other("reset"))))
                .is_retryable()
        );
        assert!(Error::Replication(W::Server(
            "replication slot \"s\" is active for PID 42".into()
        ))
        .is_retryable());
        assert!(
            !Error::Replication(W::Auth("password authentication failed".into())).is_retryable()
        );
        assert!(!Error::Setup {
            field: "spec.slot.name".into(),
            message: "lost".into()
        }
        .is_retryable());
        assert!(!Error::Decode {
            lsn: crate::lsn::Lsn(1),
            source: DecodeError::UnknownTag(b'Z')
        }
        .is_retryable());
    }
}
