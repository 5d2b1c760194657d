//! Where records go. The engine has one sink, Kafka ([`kafka::KafkaSink`]).
//!
//! Guarantee: a record is "done" only when the broker acknowledged it with
//! acks=all; the sink reports every record exactly once as delivered or failed,
//! and never drops one silently. Records of one key keep their order (one
//! partition per key, idempotent producer).

use std::sync::Arc;

use bytes::Bytes;

use crate::lsn::Lsn;

pub mod kafka;
pub mod transactions;

/// One Kafka message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Its position in the pipeline's topic list (for per-topic metrics).
    pub topic_index: usize,
    /// Message key (JSON of the key columns), if the table has one.
    pub key: Option<Bytes>,
    /// Message value (the envelope).
    pub payload: Bytes,
    /// Header values of the source transaction, shared by its records.
    pub tx: Arc<TxHeaders>,
    /// Part `i` of `n` of a whole-transaction message.
    pub part: Option<(usize, usize)>,
}

/// The headers every record of one transaction carries, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxHeaders {
    /// Commit LSN, `0/16B3748`.
    pub commit_lsn: String,
    /// Transaction id.
    pub xid: String,
}

impl TxHeaders {
    /// Renders the header values of a transaction.
    pub fn new(commit_lsn: Lsn, xid: u32) -> Self {
        TxHeaders {
            commit_lsn: commit_lsn.to_string(),
            xid: xid.to_string(),
        }
    }
}

impl Record {
    /// Bytes this record holds while in flight.
    pub fn size(&self) -> usize {
        self.payload.len() + self.key.as_ref().map_or(0, |k| k.len())
    }
}
