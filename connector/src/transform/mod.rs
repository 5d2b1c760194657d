//! Records from changes: each listener's targets, filters, column
//! selections, envelopes and transaction groups ([`stage::Transform`]).
//! It holds no snapshot state: the keys a change touches go to a
//! [`watch::KeyWatch`], and snapshot rows come in with the keys to drop.

mod assemble;
pub(crate) mod encode;
mod fanout;
pub(crate) mod filter;
pub(crate) mod group;
mod limit;
pub(crate) mod mask;
mod message;
mod outbox;
mod outbox_message;
pub(crate) mod route;
pub(crate) mod schema;
mod spill;
pub(crate) mod stage;
mod txmeta;
pub(crate) mod typed;
pub(crate) mod watch;

use crate::decode::relations::UnknownKeyColumn;

/// Why the stream cannot be turned into records.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransformError {
    /// A change for a relation the stream never described.
    #[error("change for relation OID {0} arrived before its Relation message")]
    UnknownRelation(u32),
    /// A row change outside a transaction.
    #[error("change outside a transaction")]
    NoTransaction,
    /// A listener's table that does not parse (validation should have caught it).
    #[error("spec.listeners[{index}].table: {source}")]
    Table {
        /// Listener index.
        index: usize,
        /// Why.
        source: pgkafka_crds::TableNameError,
    },
    /// A configured key column that the table does not have.
    #[error(transparent)]
    KeyColumn(#[from] UnknownKeyColumn),
    /// A filter or column selection that does not fit the table.
    #[error(transparent)]
    Filter(#[from] filter::FilterError),
    /// A record its topic would refuse (too large, no key for a compacted
    /// topic), with no dead-letter topic.
    #[error("{path}: {message}")]
    Refused {
        /// The target.
        path: String,
        /// Its size, the limit, where it came from, what to do.
        message: String,
    },
    /// An outbox row that cannot become an event as the spec says.
    #[error("{path}: {message}")]
    Outbox {
        /// The target's outbox field.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A thread encoding snapshot rows panicked (a bug: the session ends
    /// and the chunk is read again).
    #[error("a thread panicked while {0}")]
    Panicked(&'static str),
    /// A whole-transaction group could not be spilled to disk.
    #[error(transparent)]
    Spill(#[from] spill::SpillError),
}
