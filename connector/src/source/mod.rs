//! The connections to PostgreSQL: the SQL session with its checks,
//! provisioning, catalog and slot state (shared with the operator), and the
//! replication stream (the engine's).

pub(crate) mod catalog;
pub(crate) mod connection;
pub(crate) mod error;
#[cfg(feature = "engine")]
pub(crate) mod lookup;
pub(crate) mod provision;
pub(crate) mod slot;
#[cfg(feature = "engine")]
pub(crate) mod snapshot;
#[cfg(feature = "engine")]
pub(crate) mod stream;
pub(crate) mod tls;
