//! pgkafka's replication engine: PostgreSQL logical replication (pgoutput)
//! into Kafka, with the slot's flush position moving only after Kafka
//! acknowledged (or, exactly-once, committed) everything before it.
//!
//! # Embedding the engine
//!
//! ```no_run
//! use pgkafka_connector::{credentials::Secret, Engine};
//!
//! # async fn demo() -> Result<(), pgkafka_connector::Error> {
//! let engine = Engine::builder("orders")
//!     .with_postgres("127.0.0.1", 5432, "shop")
//!     .with_user("cdc", Secret::new("secret"))
//!     .with_publication("orders_pub")
//!     .with_slot("orders_slot")
//!     .with_kafka(&["127.0.0.1:9092"], "cdc")
//!     .with_tables(["public.orders"])
//!     .build()?;
//! let status = engine.status(); // read it from another task while it runs
//! engine.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! println!("stopped at {}", status.status().confirmed_flush_lsn);
//! # Ok(()) }
//! ```
//!
//! [`Engine::from_manifest`] takes the `PgKafkaConnector` YAML instead, and
//! `connector/examples/embed.rs` is a whole program.
//!
//! # How it is built
//!
//! Data flows one way, one stage per concern:
//!
//! ```text
//! PostgreSQL walsender
//!   -> source::stream   replication connection, keepalives, flush reports
//!   -> decode           from PostgreSQL's wire forms: pgoutput bytes -> Message (pure,
//!                       total); relation cache; a value's text -> its JSON (types outside
//!                       the OID table resolved once through the catalog: source::lookup,
//!                       also partition roots)
//!   -> transform        listener per table -> targets -> filter -> columns and masks -> envelope
//!                       -> groups
//!                       (transform::stage::Transform; the keys a change touches go to a
//!                       KeyWatch, which is how snapshots hear of them)
//!   -> delivery         the one object between the session and Kafka: producer and delivery
//!                       reports (sink), in-flight caps, LSN tracker (ack), at-least-once or
//!                       exactly-once; has_room / send / next_event / safe_position
//!   -> source::stream   flush position reported; the slot may free WAL
//!
//! snapshot, beside the stream (one module):
//!   reader              chunks in key order between two WAL watermarks, own connections,
//!                       on a thread of its own
//!   Snapshots           at a high watermark: the chunk minus the keys the stream changed
//!                       since its low one; progress in a compacted topic once safe
//! ```
//!
//! `engine::session` wires them: one `select!` over shutdown, the
//! delivery's background events, the snapshot reader, snapshot requests,
//! heartbeats and the stream (read only while the delivery has room; the
//! events already waiting are taken in batches of up to 256, so the
//! position bookkeeping runs once per batch).
//!
//! Imports go one way too. `event` (rows, changes, records; a table's
//! shape comes from `pgkafka-postgres`) and `lsn` are neutral: every stage
//! may use them and they use no stage. `decode` uses only them; `source`
//! and `transform` use `decode`; `sink` and `ack` use only the neutral
//! types; `delivery` uses `sink` and `ack`; `snapshot` uses `source`,
//! `transform` (its watch trait) and `sink`; `engine` wires the stages into
//! sessions, and nothing imports `engine` but the public face below
//! (`connector/tests/layering.rs` checks every arrow). Each stage has its
//! own error type; [`Error`] nests them, and [`Error::is_retryable`] is the
//! one place that decides what is retried.
//!
//! Where each concern lives:
//!
//! | concern | module |
//! |---|---|
//! | public face: builder, run, status | `builder.rs`, `status.rs`, this file |
//! | the `/status` contract (written here, read by the operator and the tests) | `pgkafka_crds::report` |
//! | configuration from a manifest and a secrets directory | `config.rs`, `pgkafka_postgres::credentials` |
//! | SQL session, TLS, provisioning, catalog, slot state | the crate `pgkafka-postgres` (`connector/postgres/`) |
//! | catalog lookups for Relation messages (domains, enums, arrays of them; partition roots) | `source/lookup.rs` |
//! | replication stream | `source/stream.rs` |
//! | snapshots: reader and watermarks, changed keys, progress store, requests (execute with a condition, pause, resume, stop) and `/status` | `snapshot/{reader,changed,progress,shared,condition,mod}.rs` |
//! | pgoutput, relations, PostgreSQL types, values, Debezium's handling modes | `decode/{pgoutput,relations,types,values,decimal,temporal}.rs` |
//! | routes, filters, typed comparison, envelope, fan-out to targets (tombstones), groups and their spill files | `transform/{route,filter,typed,encode,fanout,group,spill,stage,assemble,watch}.rs` (`assemble`: keys, encoder and limits from the spec) |
//! | the schema form (Connect schemas), schema-change announcements | `transform/schema.rs`, `transform/stage.rs` |
//! | Kafka producer, compacted topics (writer and reader), exactly-once checkpoints | `sink/{kafka,compacted,transactions}.rs` |
//! | creating topics (data topics as `topicDefaults`/`topicCreation` say; internal ones compacted, and checked) | `sink/topics.rs` |
//! | LSN tracker | `ack/tracker.rs` |
//! | delivery: caps, reports, guarantee (exactly-once commits in the background); topics the broker refuses outright, kept across sessions (`RefusedTopics`) | `delivery/{mod,exactly_once}.rs` |
//! | sessions and their restarts; the start-up checks of the slot against what was delivered; pattern listeners expanded at start-up (every later stage sees one listener per table) | `engine/{mod,session}.rs`, `pgkafka_postgres::slot_check`, `pgkafka_postgres::provision::expand` |
//! | tables pattern listeners match while streaming: the catalog looked at on an interval, a new table routed, published (`ADD TABLE`) and snapshotted in that order, a dropped one let go; a schema published whole (`TABLES IN SCHEMA`): a new table captured at its first Relation message | `engine/{discovery,follow}.rs`, `transform/live_tables.rs`, `snapshot/live.rs`, `pgkafka_postgres::provision::{publish_added, ensure}` |
//! | snapshot chunks encoded on as many threads as cores, joined in row order | `transform/snapshot_rows.rs` |
//! | the record of what was delivered (slot, system identifier, position) | `engine/offsets.rs` |
//! | heartbeats (`spec.kafka.heartbeat`: records and the action query, in the background) | `engine/heartbeat.rs` |
//! | transaction metadata (BEGIN/END, the `transaction` block); logical decoding messages (`spec.messages`) | `transform/{txmeta,message}.rs` |
//! | what a topic takes (size limits, keys on compacted topics, refused topics: `event::TopicFacts`, described by `sink/topics.rs`) and the error policy (dead letters; a target's own policy) | `transform/limit.rs`, `transform/route.rs` (`Target::limit`, `TopicRegistry::facts`) |
//! | masked, hashed and truncated columns (`columnMasks`; salts read with the config) | `transform/mask.rs`, applied by `transform/encode.rs` |
//! | outbox targets (Debezium's Outbox Event Router), and messages read as outbox rows; topics named by rows, created as they appear | `transform/{outbox,outbox_message}.rs`, `transform/route.rs` (`TopicRegistry`), `delivery::Delivery::add_topics` |
//! | primary-key changes as delete + tombstone + create | `transform/{stage,fanout}.rs` |
//! | HTTP endpoints, metrics, command line | `http.rs`, `metrics.rs`, `cli.rs` |
//!
//! # Rules that hold everywhere
//!
//! - The confirmed LSN only moves forward (`max`, with a `debug_assert`), and
//!   only over what Kafka acknowledged (committed, under exactly-once) and
//!   the offsets record holds. Idle and fully filtered streams still
//!   advance through keepalives.
//! - Never start past what was delivered: a slot that vanished, was
//!   invalidated or moved ahead, or another cluster behind the address, is
//!   refused unless `spec.slot.onLoss` says otherwise.
//! - Memory is bounded: in-flight records and bytes are capped
//!   ([`Limits`]); at the cap the engine stops reading and PostgreSQL keeps
//!   the WAL. Whole-transaction groups keep at most 8 MiB of a transaction
//!   in memory and spill the rest to an unlinked temp file; their parts are
//!   built one at a time at the commit. A snapshot holds at most two chunks per table
//!   being read (`spec.snapshot.chunkSize` rows each): the reader waits for
//!   the engine to take one before reading a third.
//! - Decoding is pure and total: any bytes give a message or an error, never
//!   a panic (property-tested).
//! - Faults end a session; the next one resumes from the last safe position
//!   with a new producer and capped, jittered backoff. A fault retrying
//!   cannot fix ends [`Engine::run`] with its error, which `/status` then
//!   reports as `halted`; the command line stays up, not ready, rather than
//!   exit into a crash loop.
//!
//! # The PostgreSQL side, shared
//!
//! Connection and TLS, provisioning, catalog, slot state and credentials are
//! the crate `pgkafka-postgres` (in `connector/postgres/`), which the
//! operator links alone: it carries no Kafka client and no replication
//! stream. The `/status` types are `pgkafka_crds::report`, read by the
//! operator and the tests.

pub use pgkafka_crds::lsn;
pub use pgkafka_postgres::credentials;

pub(crate) mod ack {
    //! Acknowledgement bookkeeping.
    pub(crate) mod tracker;
}
mod builder;
pub mod cli;
pub(crate) mod config;
pub(crate) mod decode;
pub(crate) mod delivery;
pub(crate) mod engine;
mod error;
pub(crate) mod event;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod sink;
pub(crate) mod snapshot;
pub(crate) mod source;
mod status;
pub(crate) mod transform;

pub use builder::{Engine, EngineBuilder};
pub use engine::Limits;
pub use error::Error;
pub use pgkafka_crds::report::{
    Counters, EngineStatus as Status, InFlight, SnapshotReport, SnapshotState, TableSnapshot,
};
pub use status::StatusHandle;

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
