//! The PostgreSQL side pgkafka's engine and operator share, and nothing
//! else: no Kafka client, no replication stream.
//!
//! | concern | module |
//! |---|---|
//! | the SQL session, with libpq's `sslmode` meanings | [`connection`], [`tls`] |
//! | start-up checks and provisioning of the publication and the slot; pattern listeners expanded against the catalog | [`provision`] |
//! | what the catalog says of a listened table (columns, replica identity, key), and which tables a pattern may match | [`catalog`], [`shape`] |
//! | the slot's state for the status, dropping slot and publication | [`slot`] |
//! | whether the slot may be used, created or recreated, given what was delivered | [`slot_check`] |
//! | credentials from secret references (files or Kubernetes Secrets) | [`credentials`] |
//! | log sequence numbers | [`lsn`] |
//! | errors, with the server's own words | [`error`] |
//!
//! Identifiers are always quoted ([`provision::quote_ident`]), values always
//! bound. The engine (`pgkafka-connector`) adds the replication stream and
//! the snapshot reader on top; the operator uses this crate alone.

pub mod catalog;
pub mod connection;
pub mod credentials;
pub mod error;
pub use pgkafka_crds::lsn;
pub mod provision;
pub mod shape;
pub mod slot;
pub mod slot_check;
pub mod tls;

pub use error::{postgres_detail, PgError};
