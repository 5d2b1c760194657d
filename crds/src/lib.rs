//! The `PgKafkaConnector` custom resource: the types users write in YAML, their
//! defaults, and the validation that names the offending field. No I/O here: the
//! engine reads these types from a file and the operator from the API server.
//!
//! - `connector.rs`: spec types, `status.rs`: status types (their doc comments are the user
//!   documentation, rendered into the CRD and the README's reference);
//!   `filter.rs`: row-filter conditions; `table.rs`: `schema.table` names as
//!   SQL reads them; `encoding.rs`: how values are written (Debezium's
//!   handling modes); `topics.rs`: how the engine creates data topics
//!   (`topicDefaults`, a target's `topicCreation`); `heartbeat.rs`:
//!   heartbeat records and the action query; `messages.rs`: logical
//!   decoding messages (`spec.messages`); `outbox.rs`: outbox targets
//!   (Debezium's Outbox Event Router); `errors.rs`: the error policy and
//!   the dead-letter topic (Connect's `errors.*`); `masks.rs`: masked,
//!   hashed and truncated columns (Debezium's `column.mask.*`);
//!   `patterns.rs`: listeners that select many tables (`tables`), and
//!   `spec.expand(catalog)`, which turns them into one listener per matched
//!   table before anything else reads the spec; `metrics.rs`: what the
//!   engine's series are labelled by (`spec.metrics.perTable`).
//! - `conditions.rs`: condition types and reasons as enums (the wire keeps
//!   Kubernetes' strings).
//! - `report.rs`: the engine's `/status`, the one contract between the
//!   engine (which writes it), the operator and the tests (which read it);
//!   `lsn.rs`: WAL positions as PostgreSQL prints them.
//! - `validate.rs`: `spec.validate()`, every problem at once, each naming its
//!   field; the CRD's CEL rules (`#[x_kube(validation)]`) say the same to the
//!   API server.
//! - `generate.rs`: the CRD YAML (`crdgen` writes `manifests/crd.yaml`, a
//!   test fails on drift), the reference table, and `check_manifest`, which
//!   checks a manifest as the API server and the engine would.

pub mod conditions;
mod connector;
mod encoding;
mod errors;
mod filter;
mod generate;
mod heartbeat;
pub mod lsn;
mod masks;
mod messages;
mod metrics;
mod outbox;
mod patterns;
pub mod report;
mod schema;
mod status;
mod table;
mod topics;
mod validate;

pub use connector::*;
pub use encoding::{BinaryHandlingMode, DecimalHandlingMode, JsonHandlingMode, TimePrecisionMode};
pub use errors::{DeadLetterQueueSpec, ErrorsSpec, Tolerance};
pub use filter::{ConditionSpec, Field, FilterSpec, Image, Logic, Operator};
pub use generate::{check_manifest, crd_yaml, openapi_schema, reference_markdown, ManifestError};
pub use heartbeat::HeartbeatSpec;
pub use masks::{ColumnMaskSpec, HashAlgorithm, HashSpec, MaskOperation};
pub use messages::MessageSpec;
pub use metrics::MetricsSpec;
pub use outbox::{AdditionalField, OutboxOperation, OutboxSpec, Placement, ROUTED_BY_VALUE};
pub use patterns::{fill_topic, ListenerOrigin, TableSelector};
pub use status::*;
pub use table::{QualifiedTable, TableNameError};
pub use topics::TopicCreation;
pub use validate::{FieldError, ValidationErrors};
