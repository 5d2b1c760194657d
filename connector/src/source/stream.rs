//! The replication stream: owns the replication connection, yields decoded
//! pgoutput messages with their WAL position, and reports the flush position
//! the engine confirms.
//!
//! The carrier (pgwire-replication) parses three pgoutput messages itself and
//! hands over the rest as raw bytes: Begin, Commit and logical messages
//! (`pg_logical_emit_message`, the snapshot watermarks) become its own events,
//! converted here field by field (Begin and Commit tested to equal what
//! [`decode`] gives for the same bytes). Every other message goes through
//! [`decode`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgkafka_crds::{PgKafkaConnectorSpec, SslMode};
use pgwire_replication::{
    PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig,
};

use crate::credentials::PgCredentials;
use crate::decode::pgoutput::{decode, DecodeError, Message};
use crate::decode::values::SESSION_OPTIONS;
use crate::lsn::Lsn;

/// How long to wait for the final flush position to reach the server.
const FINAL_STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the stream stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// The replication connection failed.
    #[error("replication stream: {0}")]
    Replication(#[from] PgWireError),
    /// The stream held bytes that are not pgoutput.
    #[error("decoding pgoutput at {lsn}: {source}")]
    Decode {
        /// Position of the message.
        lsn: Lsn,
        /// Why.
        source: DecodeError,
    },
    /// The server closed the stream.
    #[error("replication stream: the server ended the replication stream")]
    Ended,
}

/// What the stream delivers.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// A pgoutput message at a WAL position.
    Message(Message, Lsn),
    /// The server is alive; everything before `wal_end` has been sent.
    KeepAlive {
        /// The server's WAL end.
        wal_end: Lsn,
    },
}

/// Where and how to stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings<'a> {
    /// Application name on the server.
    pub application_name: String,
    /// The spec (postgres, slot, publication).
    pub spec: &'a PgKafkaConnectorSpec,
    /// Who logs in.
    pub credentials: &'a PgCredentials,
    /// The CA bundle as a file (the carrier reads a path).
    pub ca_file: Option<PathBuf>,
    /// The name the SQL connection's verify-ca learnt (see `tls::VerifiedName`).
    pub verified_name: Option<String>,
    /// How often the flush position is reported.
    pub status_interval: Duration,
}

/// An open replication stream.
pub(crate) struct ReplicationStream {
    client: ReplicationClient,
}

impl ReplicationStream {
    /// Starts streaming at `start` (zero: the slot's confirmed position),
    /// with `start` already confirmed.
    pub async fn open(settings: StreamSettings<'_>, start: Lsn) -> Result<Self, StreamError> {
        let mut client = ReplicationClient::connect(config(settings, start)).await?;
        client.wait_started().await?;
        Ok(ReplicationStream { client })
    }

    /// The next message or keepalive. Cancel-safe: dropped before it
    /// returned, it has consumed only events the engine does not use.
    pub async fn recv(&mut self) -> Result<StreamEvent, StreamError> {
        loop {
            let event = self.client.recv().await?.ok_or(StreamError::Ended)?;
            if let Some(event) = convert(event)? {
                return Ok(event);
            }
        }
    }

    /// Reports that everything before `lsn` is safely in Kafka.
    pub fn confirm(&self, lsn: Lsn) {
        self.client.update_applied_lsn(theirs(lsn));
    }

    /// Closes the stream once the server was told `flushed` (or after a
    /// short wait): the carrier sends no status update when stopping, so
    /// its periodic one must carry the final position first.
    pub async fn close(mut self, flushed: Lsn) -> Result<(), StreamError> {
        let metrics = self.client.metrics();
        let deadline = Instant::now() + FINAL_STATUS_TIMEOUT;
        while ours(metrics.last_applied_lsn()) < flushed && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client.shutdown().await?;
        Ok(())
    }
}

/// Who is behind the address: IDENTIFY_SYSTEM on a replication session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The cluster's system identifier (decimal).
    pub system_id: String,
    /// Its current timeline.
    pub timeline: u32,
}

/// Asks the server who it is (IDENTIFY_SYSTEM), on a replication session
/// of its own that never starts streaming.
pub(crate) async fn identify(settings: StreamSettings<'_>) -> Result<Identity, StreamError> {
    let mut client = ReplicationClient::connect_gated(config(settings, Lsn::ZERO)).await?;
    let answer = client.identify_system().await?;
    Ok(Identity {
        system_id: answer.system_id,
        timeline: answer.timeline,
    })
}

/// The carrier's event as ours; `None` for what the engine does not use.
fn convert(event: ReplicationEvent) -> Result<Option<StreamEvent>, StreamError> {
    let (message, lsn) = match event {
        ReplicationEvent::KeepAlive { wal_end, .. } => {
            return Ok(Some(StreamEvent::KeepAlive {
                wal_end: ours(wal_end),
            }))
        }
        ReplicationEvent::Begin {
            final_lsn,
            xid,
            commit_time_micros,
        } => (
            Message::Begin {
                final_lsn: ours(final_lsn),
                commit_time_us: commit_time_micros,
                xid,
            },
            ours(final_lsn),
        ),
        ReplicationEvent::Commit {
            lsn,
            end_lsn,
            commit_time_micros,
        } => (
            Message::Commit {
                commit_lsn: ours(lsn),
                end_lsn: ours(end_lsn),
                commit_time_us: commit_time_micros,
            },
            ours(end_lsn),
        ),
        ReplicationEvent::XLogData {
            wal_start, data, ..
        } => {
            let lsn = ours(wal_start);
            let message = decode(data).map_err(|source| StreamError::Decode { lsn, source })?;
            (message, lsn)
        }
        ReplicationEvent::Message {
            transactional,
            lsn,
            prefix,
            content,
        } => (
            Message::Logical {
                transactional,
                lsn: ours(lsn),
                prefix,
                content,
            },
            ours(lsn),
        ),
        ReplicationEvent::StoppedAt { .. } => return Ok(None),
    };
    Ok(Some(StreamEvent::Message(message, lsn)))
}

/// The carrier's configuration.
fn config(s: StreamSettings<'_>, start: Lsn) -> ReplicationConfig {
    let pg = &s.spec.postgres;
    let tls = match pg.ssl_mode {
        SslMode::Disable => TlsConfig::disabled(),
        SslMode::Prefer => TlsConfig {
            mode: pgwire_replication::SslMode::Prefer,
            ..TlsConfig::disabled()
        },
        SslMode::Require => TlsConfig::require(),
        SslMode::VerifyCa => match s.verified_name {
            Some(name) => TlsConfig::verify_ca(s.ca_file).with_sni_hostname(name),
            None => TlsConfig::verify_ca(s.ca_file),
        },
        SslMode::VerifyFull => TlsConfig::verify_full(s.ca_file),
    };
    // The carrier writes the publication name unquoted into the option list,
    // which folds upper case: quote it here.
    let publication = format!("\"{}\"", s.spec.publication.name.replace('"', "\"\""));
    let mut config = ReplicationConfig::new(
        pg.host.clone(),
        s.credentials.user.clone(),
        s.credentials.password.expose(),
        pg.database.clone(),
        s.spec.slot.name.clone(),
        publication,
    )
    .with_port(pg.port)
    .with_tls(tls)
    .with_start_lsn(theirs(start))
    .with_status_interval(s.status_interval)
    .with_wakeup_interval(Duration::from_secs(5))
    .with_options(SESSION_OPTIONS)
    .with_application_name(s.application_name);
    if start != Lsn::ZERO {
        config = config.with_ack_lsn(theirs(start));
    }
    config
}

/// The carrier's position as ours.
fn ours(l: pgwire_replication::Lsn) -> Lsn {
    Lsn(l.as_u64())
}

/// Our position as the carrier's.
fn theirs(l: Lsn) -> pgwire_replication::Lsn {
    pgwire_replication::Lsn::from_u64(l.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};

    fn message(event: ReplicationEvent) -> (Message, Lsn) {
        match convert(event) {
            Ok(Some(StreamEvent::Message(m, lsn))) => (m, lsn),
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn carrier_boundaries_equal_what_the_decoder_reads_from_the_same_bytes() {
        let (final_lsn, end_lsn, time, xid) = (0x1_0000_00A0u64, 0x1_0000_00D8u64, 42i64, 745u32);
        let mut begin = BytesMut::new();
        begin.put_u8(b'B');
        begin.put_u64(final_lsn);
        begin.put_i64(time);
        begin.put_u32(xid);
        let (converted, at) = message(ReplicationEvent::Begin {
            final_lsn: pgwire_replication::Lsn::from_u64(final_lsn),
            xid,
            commit_time_micros: time,
        });
        assert_eq!(Ok(converted), decode(begin.freeze()));
        assert_eq!(at, Lsn(final_lsn));

        let mut commit = BytesMut::new();
        commit.put_u8(b'C');
        commit.put_u8(0);
        commit.put_u64(final_lsn);
        commit.put_u64(end_lsn);
        commit.put_i64(time);
        let (converted, at) = message(ReplicationEvent::Commit {
            lsn: pgwire_replication::Lsn::from_u64(final_lsn),
            end_lsn: pgwire_replication::Lsn::from_u64(end_lsn),
            commit_time_micros: time,
        });
        assert_eq!(Ok(converted), decode(commit.freeze()));
        assert_eq!(at, Lsn(end_lsn), "a commit is placed at its end LSN");
    }

    #[test]
    fn raw_payloads_go_through_the_decoder() {
        let event = ReplicationEvent::XLogData {
            wal_start: pgwire_replication::Lsn::from_u64(7),
            wal_end: pgwire_replication::Lsn::from_u64(7),
            server_time_micros: 0,
            data: Bytes::from_static(b"Z"),
        };
        assert!(matches!(
            convert(event),
            Err(StreamError::Decode {
                lsn: Lsn(7),
                source: DecodeError::UnknownTag(b'Z')
            })
        ));
    }
}
