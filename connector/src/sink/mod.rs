//! Where records go. The engine has one sink, Kafka ([`kafka::KafkaSink`]).
//!
//! Guarantee: a record is "done" only when the broker acknowledged it with
//! acks=all; the sink reports every record exactly once as delivered or failed,
//! and never drops one silently. Records of one key keep their order (one
//! partition per key, idempotent producer).

use std::sync::Arc;

use crate::lsn::Lsn;

pub mod kafka;

/// One Kafka message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Message key (JSON of the key columns), if the table has one.
    pub key: Option<Arc<[u8]>>,
    /// Message value (the envelope).
    pub payload: Arc<[u8]>,
    /// Commit LSN of the source transaction (a header).
    pub commit_lsn: Lsn,
    /// Source transaction id (a header).
    pub xid: u32,
}

impl Record {
    /// Bytes this record holds while in flight.
    pub fn size(&self) -> usize {
        self.payload.len() + self.key.as_ref().map_or(0, |k| k.len())
    }
}
