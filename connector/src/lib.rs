//! pgkafka's replication engine: PostgreSQL logical replication (pgoutput)
//! into Kafka, with the flush LSN moving only after Kafka acknowledged.
//!
//! Data flows one way: `source` (replication connection) -> `decode`
//! (pgoutput) -> `pipeline` (listeners, targets, envelope) -> `sink` (Kafka)
//! -> `ack` (LSN tracker) -> back to `source` as the flush position.

pub mod ack {
    //! Acknowledgement bookkeeping.
    pub mod tracker;
}
pub mod cli;
pub mod config;
pub mod decode {
    //! pgoutput bytes to typed messages and JSON values.
    pub mod pgoutput;
    pub mod relations;
    pub mod values;
}
pub mod engine;
pub mod error;
pub mod http;
pub mod lsn;
pub mod metrics;
pub mod pipeline;
pub mod sink;
pub mod source {
    //! The connections to PostgreSQL.
    pub mod catalog;
    pub mod connection;
    pub mod provision;
    pub mod tls;
}
pub mod transform {
    //! Records from changes.
    pub mod encode;
    pub mod filter;
    pub mod group;
    pub mod route;
    pub mod typed;
}
