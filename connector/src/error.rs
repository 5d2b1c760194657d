//! The engine's one error type. Each variant keeps its source (the stages'
//! own error types nest inside it), and [`Error::is_retryable`] is the only
//! place that decides whether a failed session is started again or the
//! engine stops.

use std::path::PathBuf;

use pgwire_replication::PgWireError;
use rdkafka::types::RDKafkaErrorCode;

use crate::ack::tracker::UnknownSeq;
use crate::credentials::SecretError;
use crate::sink::SinkError;
use crate::source::error::PgError;
use crate::source::stream::StreamError;
use crate::transform::TransformError;

/// Why the engine stopped, or could not start. Its message names the spec
/// field or the server's own words; [`std::error::Error::source`] leads to
/// the underlying driver or client error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<ErrorKind>);

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error(Box::new(kind))
    }
}

/// `?` turns each stage's error into an [`Error`].
macro_rules! from_stage_errors {
    ($($source:ty => $variant:ident),* $(,)?) => {$(
        impl From<$source> for Error {
            fn from(e: $source) -> Self {
                ErrorKind::$variant(e).into()
            }
        }
    )*};
}

from_stage_errors! {
    pgkafka_crds::ValidationErrors => Invalid,
    SecretError => Secret,
    PgError => Database,
    StreamError => Stream,
    TransformError => Transform,
    SinkError => Sink,
    UnknownSeq => Bookkeeping,
}

/// Everything that can stop the engine or one of its sessions.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ErrorKind {
    /// The manifest cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest is not a valid `PgKafkaConnector`.
    #[error("{path}: {source}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The parser's error (it names the field and position).
        source: serde_yaml::Error,
    },
    /// The configuration lacks something every connector needs.
    #[error("{origin}: {field} is required")]
    Missing {
        /// The file or builder it came from.
        origin: String,
        /// The field.
        field: &'static str,
    },
    /// The builder's fields do not make a spec.
    #[error("engine {name}: {source}")]
    Builder {
        /// The engine's name.
        name: String,
        /// The field that is missing or wrong.
        source: serde_json::Error,
    },
    /// A spec field is invalid.
    #[error("invalid spec: {0}")]
    Invalid(pgkafka_crds::ValidationErrors),
    /// A secret referenced by the spec cannot be read.
    #[error(transparent)]
    Secret(SecretError),
    /// Connecting, a catalog query or provisioning failed.
    #[error(transparent)]
    Database(PgError),
    /// The replication stream failed.
    #[error(transparent)]
    Stream(StreamError),
    /// The stream could not be turned into records.
    #[error(transparent)]
    Transform(TransformError),
    /// Kafka failed or refused.
    #[error(transparent)]
    Sink(SinkError),
    /// The server behind the address is another cluster than the one this
    /// connector delivered from (restored, or a different one).
    #[error("spec.postgres: the server's system identifier is {found}, but this connector delivered changes up to {delivered} through slot {slot:?} of the cluster with system identifier {recorded}: this is another cluster (a restore, or a different server behind the address), so streaming from it could skip or repeat changes. Point spec.postgres at the original cluster, or, to start over on this one, use a new spec.slot.name (and spec.kafka.topicPrefix if the old records must stay apart)")]
    OtherCluster {
        /// The slot.
        slot: String,
        /// The identifier recorded with what was delivered.
        recorded: String,
        /// The identifier the server reports now.
        found: String,
        /// The last delivered position.
        delivered: crate::lsn::Lsn,
    },
    /// The HTTP server could not start.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        /// Listen address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A local file the engine needs could not be written.
    #[error("cannot write {path}: {source}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A bug: the acknowledgement bookkeeping disagrees with itself.
    #[error("internal error: {0}")]
    Bookkeeping(UnknownSeq),
    /// A bug: the engine's own state disagrees with itself.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// Whether a session that failed with this error is started again (after
    /// a backoff) rather than stopping the engine. Transport faults are
    /// retried; configuration and data errors would fail again the same way.
    pub fn is_retryable(&self) -> bool {
        match &*self.0 {
            ErrorKind::Database(PgError::Connect { .. }) => true,
            ErrorKind::Database(PgError::Query { source, .. }) => {
                source.is_closed() || source.code().is_none()
            }
            ErrorKind::Stream(StreamError::Replication(e)) => {
                matches!(e, PgWireError::Io(_) | PgWireError::Task(_))
                    || is_transient_server_error(e)
            }
            ErrorKind::Stream(StreamError::Ended) => true,
            // Settings the broker refuses would be refused again; a broker
            // not ready (or an ACL an administrator adds) may pass next time.
            ErrorKind::Sink(SinkError::CreateTopic { code, .. }) => !matches!(
                code,
                RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::InvalidPartitions
                    | RDKafkaErrorCode::InvalidReplicationFactor
                    | RDKafkaErrorCode::InvalidReplicaAssignment
                    | RDKafkaErrorCode::PolicyViolation
                    | RDKafkaErrorCode::InvalidTopic
            ),
            ErrorKind::Sink(
                SinkError::Kafka(_)
                | SinkError::Delivery { .. }
                | SinkError::Fatal(_)
                | SinkError::TopicRefused { .. },
            ) => true,
            ErrorKind::Database(
                PgError::Setup { .. } | PgError::Tls { .. } | PgError::SlotLost { .. },
            )
            | ErrorKind::OtherCluster { .. }
            | ErrorKind::Stream(StreamError::Decode { .. })
            | ErrorKind::Sink(
                SinkError::Config(_)
                | SinkError::Refused { .. }
                | SinkError::Blocking { .. }
                | SinkError::NotCompacted { .. }
                | SinkError::ReadTimeout { .. },
            )
            | ErrorKind::ReadConfig { .. }
            | ErrorKind::ParseConfig { .. }
            | ErrorKind::Missing { .. }
            | ErrorKind::Builder { .. }
            | ErrorKind::Invalid(_)
            | ErrorKind::Secret(_)
            | ErrorKind::Transform(_)
            | ErrorKind::Http { .. }
            | ErrorKind::WriteFile { .. }
            | ErrorKind::Thread { .. }
            | ErrorKind::Bookkeeping(_)
            | ErrorKind::Internal(_) => false,
        }
    }
}

/// SQLSTATEs of server errors during streaming that a new session can
/// overcome: the slot still held by the previous walsender (object in use),
/// an administrator or crash shutdown, a server not accepting connections
/// yet, too many connections, and every connection exception (class 08).
const TRANSIENT_SQLSTATES: [&str; 5] = ["55006", "57P01", "57P02", "57P03", "53300"];

/// Whether a server error is one a new session can overcome, by its SQLSTATE
/// (the carrier ends the message with `(SQLSTATE xxxxx)`).
fn is_transient_server_error(e: &PgWireError) -> bool {
    let PgWireError::Server(msg) = e else {
        return false;
    };
    sqlstate(msg).is_some_and(|code| code.starts_with("08") || TRANSIENT_SQLSTATES.contains(&code))
}

/// The SQLSTATE at the end of a carrier's server message.
fn sqlstate(message: &str) -> Option<&str> {
    let code = message.rsplit_once("(SQLSTATE ")?.1.strip_suffix(')')?;
    (code.len() == 5).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::pgoutput::DecodeError;
    use pgwire_replication::PgWireError as W;

    fn server(message: &str) -> Error {
        StreamError::Replication(W::Server(message.into())).into()
    }

    #[test]
    fn transport_faults_retry_and_configuration_does_not() {
        assert!(Error::from(SinkError::Fatal("x".into())).is_retryable());
        let io = W::Io(std::sync::Arc::new(std::io::Error::other("reset")));
        assert!(Error::from(StreamError::Replication(io)).is_retryable());
        assert!(
            server("replication slot \"s\" is active for PID 42 (SQLSTATE 55006)").is_retryable()
        );
        assert!(
            server("terminating connection due to administrator command (SQLSTATE 57P01)")
                .is_retryable()
        );
        assert!(!server("permission denied for database (SQLSTATE 42501)").is_retryable());
        let auth = W::Auth("password authentication failed".into());
        assert!(!Error::from(StreamError::Replication(auth)).is_retryable());
        let lost = PgError::Setup {
            field: "spec.slot.name".into(),
            message: "lost".into(),
        };
        assert!(!Error::from(lost).is_retryable());
        let garbage = StreamError::Decode {
            lsn: crate::lsn::Lsn(1),
            source: DecodeError::UnknownTag(b'Z'),
        };
        assert!(!Error::from(garbage).is_retryable());
    }

    #[test]
    fn sqlstate_is_read_from_the_end_of_the_message() {
        assert_eq!(sqlstate("x (SQLSTATE 55006)"), Some("55006"));
        assert_eq!(sqlstate("no code"), None);
        assert_eq!(sqlstate("odd (SQLSTATE 1)"), None);
    }
}
