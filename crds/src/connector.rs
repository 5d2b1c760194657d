//! The `PgKafkaConnector` spec and status. Field names are a promise to users:
//! add fields, never rename them. Every doc comment here is `kubectl explain` text.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::filter::FilterSpec;
use crate::status::PgKafkaConnectorStatus;
use crate::topics::TopicCreation;

/// Streams changes of PostgreSQL tables into Kafka topics through logical
/// replication (pgoutput).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "pgkafka.io",
    version = "v1alpha1",
    kind = "PgKafkaConnector",
    namespaced,
    status = "PgKafkaConnectorStatus",
    shortname = "pgkc",
    category = "pgkafka",
    cel,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#,
    printcolumn = r#"{"name":"Slot","type":"string","jsonPath":".spec.slot.name"}"#,
    printcolumn = r#"{"name":"Confirmed LSN","type":"string","jsonPath":".status.replication.confirmedFlushLSN"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","format":"int64","jsonPath":".status.replication.lagBytes"}"#,
    printcolumn = r#"{"name":"Tables","type":"integer","format":"int64","jsonPath":".status.tables.count"}"#,
    printcolumn = r#"{"name":"Snapshot","type":"string","jsonPath":".status.snapshot.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PgKafkaConnectorSpec {
    /// Whether the engine runs: `running` streams, `paused` stops the engine and
    /// keeps the slot (WAL accumulates), `stopped` stops it too.
    #[serde(default)]
    pub state: ConnectorState,
    /// The source database and how to connect to it.
    pub postgres: PostgresSpec,
    /// The publication that selects the tables streamed from the slot.
    pub publication: PublicationSpec,
    /// The logical replication slot that holds the connector's position.
    pub slot: SlotSpec,
    /// What happens to the slot and publication when the resource is deleted.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
    /// The Kafka cluster records are written to.
    pub kafka: KafkaSpec,
    /// The tables to capture, each with the actions it listens to and its targets.
    #[schemars(length(min = 1))]
    pub listeners: Vec<ListenerSpec>,
    /// Existing rows: whether the tables' current content is sent (as `op: r`
    /// records through the same targets) before and while changes stream.
    #[serde(default)]
    pub snapshot: SnapshotSpec,
    /// Logical decoding messages (`pg_logical_emit_message`) sent on, by
    /// prefix, as Debezium's message events (`op: m`); none when omitted.
    /// Transactional ones arrive in their transaction, the others at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<crate::MessageSpec>,
    /// Records that cannot be sent as they are (larger than
    /// `spec.kafka.maxRecordBytes`): halt, or send them to a dead-letter
    /// topic and go on (Kafka Connect's `errors.*`).
    #[serde(default, skip_serializing_if = "is_default_errors")]
    pub errors: crate::ErrorsSpec,
    /// CPU and memory of the engine's container; 100m / 128Mi requested and
    /// 512Mi limited when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// What the engine's Prometheus metrics are labelled by.
    #[serde(default, skip_serializing_if = "crate::metrics::is_default")]
    pub metrics: crate::MetricsSpec,
}

/// Snapshots of the listened tables' existing rows. They run while the stream
/// goes on, in key-ordered chunks between two WAL watermarks, so WAL is never
/// held for them, no row is missed and no stale row overtakes a newer change;
/// progress is kept in Kafka, so a restart continues from the last chunk.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotSpec {
    /// `initial`: every listened table the connector never snapshotted is
    /// snapshotted once (all tables of a new connector; a table added later
    /// when it appears). `never`: only on request (`POST /snapshots`, or the
    /// `pgkafka.io/snapshot` annotation).
    #[serde(default)]
    pub mode: SnapshotMode,
    /// Rows read per chunk (one query, held in memory until its high
    /// watermark arrives in the stream).
    #[serde(default = "default_chunk_size")]
    #[schemars(schema_with = "crate::schema::chunk_size")]
    pub chunk_size: u32,
    /// Tables snapshotted at once, each on its own connection.
    #[serde(default = "default_snapshot_tables")]
    #[schemars(schema_with = "crate::schema::snapshot_tables")]
    pub max_concurrent_tables: u32,
}

impl Default for SnapshotSpec {
    fn default() -> Self {
        SnapshotSpec {
            mode: SnapshotMode::default(),
            chunk_size: default_chunk_size(),
            max_concurrent_tables: default_snapshot_tables(),
        }
    }
}

fn default_chunk_size() -> u32 {
    10_000
}

fn default_snapshot_tables() -> u32 {
    2
}

/// When tables are snapshotted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotMode {
    /// Each listened table once, when the connector first sees it.
    #[default]
    Initial,
    /// Only when asked.
    Never,
}

/// Desired run state of the engine.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ConnectorState {
    /// Stream changes.
    #[default]
    Running,
    /// Engine stopped, slot kept: PostgreSQL retains WAL until resumed.
    Paused,
    /// Engine stopped.
    Stopped,
}

/// What to do with the slot and publication when the resource is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReclaimPolicy {
    /// Keep the slot and publication (the safe default: a new connector can resume).
    #[default]
    Retain,
    /// Drop the slot and publication once the engine is gone.
    Delete,
}

/// A key inside a Kubernetes Secret. Locally, the file `<secrets-dir>/<name>/<key>`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the connector's namespace.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// Connection to the source PostgreSQL database.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.user) != has(self.userSecretRef)").message("set exactly one of user and userSecretRef"))]
pub struct PostgresSpec {
    /// Host name or IP address of the primary.
    #[schemars(length(min = 1))]
    pub host: String,
    /// TCP port.
    #[serde(default = "default_pg_port")]
    #[schemars(schema_with = "crate::schema::port")]
    pub port: u16,
    /// Database whose changes are captured. Immutable: the slot belongs to it.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("database is immutable: the slot belongs to it"))]
    pub database: String,
    /// Role to connect as; it needs the REPLICATION attribute. Exclusive with `userSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Secret key holding the role name. Exclusive with `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the password (SCRAM-SHA-256 or cleartext over TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// TLS mode, as libpq: disable, prefer, require, verify-ca, verify-full.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// Secret key holding the PEM CA bundle used by verify-ca and verify-full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

fn default_pg_port() -> u16 {
    5432
}

/// TLS mode of the PostgreSQL connections, with libpq's meaning.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it, without verifying the certificate.
    #[default]
    Prefer,
    /// Require TLS, without verifying the certificate.
    Require,
    /// Require TLS and a certificate signed by the CA.
    VerifyCa,
    /// Require TLS, a certificate signed by the CA, and a matching host name.
    VerifyFull,
}

/// The publication the slot streams.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublicationSpec {
    /// Publication name (case-sensitive; quoted in every statement). Immutable.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("publication name is immutable"))]
    pub name: String,
    /// Create the publication for the listeners' tables when it does not exist.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Seconds between two looks at the catalog for tables that pattern
    /// listeners (`listeners[].tables`) select: a table created since is
    /// captured without restarting the stream (added to a managed
    /// publication, then snapshotted under `snapshot.mode: initial`), a
    /// dropped one is let go. Unused without pattern listeners.
    #[serde(default = "default_refresh_seconds")]
    #[schemars(schema_with = "crate::schema::refresh_seconds")]
    pub refresh_interval_seconds: u32,
}

fn default_refresh_seconds() -> u32 {
    10
}

/// The logical replication slot.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotSpec {
    /// Slot name: lower-case letters, digits and underscores, at most 63
    /// characters. Immutable: the slot holds the connector's position.
    #[schemars(regex(pattern = r"^[a-z0-9_]{1,63}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("slot name is immutable: the slot holds the position"))]
    pub name: String,
    /// Create the slot (pgoutput) when it does not exist.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Recreate the slot when PostgreSQL invalidated it (`wal_status: lost`).
    /// Off by default: a new slot starts after the lost changes, so turning
    /// this on accepts that gap. The same as `onLoss: recreate`.
    #[serde(default)]
    pub recreate_if_lost: bool,
    /// What to do when the slot is gone or invalidated after this connector
    /// delivered changes through it (a failover to a standby without the
    /// slot, a dropped slot, WAL removed past `max_slot_wal_keep_size`):
    /// `fail` refuses to start and says why (nothing is skipped silently);
    /// `recreate` creates a new slot at the current position, accepting the
    /// gap; `resnapshot` creates a new slot and snapshots every listened
    /// table again, so consumers get every existing row as `op: r` (a row
    /// deleted during the gap cannot come back that way). A first start,
    /// with nothing delivered yet, creates the slot in every case.
    #[serde(default)]
    pub on_loss: SlotLossPolicy,
    /// Create the slot as a failover slot (PostgreSQL 17 and later), which
    /// a standby with `sync_replication_slots = on` keeps in step, so the
    /// slot survives a failover. Refused at start-up on older servers.
    #[serde(default)]
    pub failover: bool,
}

impl SlotSpec {
    /// `onLoss`, with `recreateIfLost: true` read as `recreate`.
    pub fn loss_policy(&self) -> SlotLossPolicy {
        match self.on_loss {
            SlotLossPolicy::Fail if self.recreate_if_lost => SlotLossPolicy::Recreate,
            policy => policy,
        }
    }
}

/// What a lost slot leads to (`spec.slot.onLoss`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SlotLossPolicy {
    /// Refuse to start, naming the slot, the last delivered position and the fix.
    #[default]
    Fail,
    /// Create a new slot at the current position: the gap is accepted.
    Recreate,
    /// Create a new slot and snapshot every listened table again.
    Resnapshot,
}

fn default_true() -> bool {
    true
}

/// The Kafka cluster and how records are produced.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.deliveryGuarantee) || self.deliveryGuarantee != 'exactlyOnce' || !has(self.properties) || (!('transactional.id' in self.properties) && (!('enable.idempotence' in self.properties) || self.properties['enable.idempotence'] == 'true'))").message("exactlyOnce needs an idempotent producer and sets transactional.id itself"))]
pub struct KafkaSpec {
    /// Bootstrap brokers, `host:port`.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: Vec<String>,
    /// Prefix of the default topic name `<topicPrefix>.<schema>.<table>`.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,200}$"))]
    pub topic_prefix: String,
    /// librdkafka producer properties passed through as they are (for example
    /// `compression.type: zstd`). `acks` must stay `all` and idempotence on.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Default message shape of every target: `debezium` or `flat`.
    #[serde(default)]
    pub envelope: Envelope,
    /// Secret key holding SASL credentials as a JAAS line
    /// (`... required username="u" password="p";`); set `security.protocol`
    /// and `sasl.mechanisms` in `properties`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the PEM CA bundle that signs the brokers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// `atLeastOnce` (a restart may resend changes after the last confirmed
    /// position) or `exactlyOnce` (records are written in Kafka transactions
    /// together with the slot's position, and a restart skips what Kafka
    /// already committed; consumers must read with `isolation.level=read_committed`).
    #[serde(default)]
    pub delivery_guarantee: DeliveryGuarantee,
    /// After each delete, a record with the same key and a null value, so a
    /// compacted topic forgets the key and sink connectors delete the row
    /// (Debezium's `tombstones.on.delete`). Targets may override it.
    #[serde(default = "default_true")]
    pub tombstones_on_delete: bool,
    /// Write keys and values as Kafka Connect's JsonConverter does with
    /// `schemas.enable=true`: `{"schema": {...}, "payload": {...}}`, the
    /// schema naming Debezium's logical types. For consumers that need it
    /// (the Debezium JDBC sink, ClickHouse's Debezium mode).
    #[serde(default)]
    pub schemas: bool,
    /// `numeric` values: `string` (exact, the default), `precise` or `double`.
    #[serde(default)]
    pub decimal_handling_mode: crate::DecimalHandlingMode,
    /// `date`, `time` and `timestamp` values: `isostring` (the default),
    /// `adaptive`, `adaptive_time_microseconds` or `connect`.
    #[serde(default)]
    pub time_precision_mode: crate::TimePrecisionMode,
    /// `bytea` values: `base64` (the default), `base64-url-safe` or `hex`.
    #[serde(default)]
    pub binary_handling_mode: crate::BinaryHandlingMode,
    /// `json` and `jsonb` values: `string` (the default, Debezium's form: a
    /// string holding the JSON text) or `json` (embedded; the JSON value
    /// `null` and SQL NULL then look alike).
    #[serde(default)]
    pub json_handling_mode: crate::JsonHandlingMode,
    /// A topic that receives the new columns of a captured table each time
    /// its shape is first seen in a session and whenever it changes (a column
    /// added, dropped, renamed or retyped), keyed by the table; none when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub schema_change_topic: Option<String>,
    /// How the engine creates the topics it writes to that do not exist yet
    /// (`partitions`, `replicationFactor`, `configs`; Debezium's
    /// `topic.creation.default.*`); a target's `topicCreation` overrides it
    /// for its topic. Topics that exist are left as they are.
    #[serde(default, skip_serializing_if = "TopicCreation::is_default")]
    pub topic_defaults: TopicCreation,
    /// Heartbeat records on an interval (Debezium's `heartbeat.interval.ms`),
    /// and optionally a statement run on the source database each time; none
    /// when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<crate::HeartbeatSpec>,
    /// Debezium's `provide.transaction.metadata`: a BEGIN and an END record
    /// for each transaction with captured changes on `transactionTopic`, and
    /// a `transaction` block `{id, total_order, data_collection_order}` in
    /// each change event.
    #[serde(default)]
    pub provide_transaction_metadata: bool,
    /// Topic of the BEGIN and END records; `<topicPrefix>.transaction`
    /// (Debezium's default) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub transaction_topic: Option<String>,
    /// The largest record (key and value, as encoded) the engine sends;
    /// the producer's `message.max.bytes` (1,000,000 by default) when
    /// omitted. A larger one follows `spec.errors`, checked before it is
    /// sent, so no broker error stops a transaction half way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_record_bytes: Option<i32>,
}

impl KafkaSpec {
    /// The transaction metadata topic, when transaction metadata is on.
    pub fn transaction_topic_name(&self) -> Option<String> {
        self.provide_transaction_metadata.then(|| {
            self.transaction_topic
                .clone()
                .unwrap_or_else(|| format!("{}.transaction", self.topic_prefix))
        })
    }
}

/// What a restart may do to records already in Kafka.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryGuarantee {
    /// No change is lost; some may be sent twice after a crash.
    #[default]
    AtLeastOnce,
    /// No change is lost or sent twice, for `read_committed` consumers.
    ExactlyOnce,
}

/// A row change kind a listener captures.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// INSERT (Debezium op `c`).
    Insert,
    /// UPDATE (op `u`).
    Update,
    /// DELETE (op `d`).
    Delete,
    /// TRUNCATE (op `t`).
    Truncate,
}

impl Action {
    /// All actions, the default of a listener.
    pub const ALL: [Action; 4] = [
        Action::Insert,
        Action::Update,
        Action::Delete,
        Action::Truncate,
    ];
}

fn all_actions() -> Vec<Action> {
    Action::ALL.to_vec()
}

/// One captured table.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerSpec {
    /// `schema.table` (schema defaults to `public`); quote parts with upper case
    /// or dots as in SQL: `"Sales"."Order.Lines"`. Give this or `tables`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub table: String,
    /// Many tables by pattern instead of one (Debezium's schema and table
    /// include and exclude lists): this listener's actions, keys and targets
    /// apply to each; a target's `topic` may use `${schema}` and `${table}`.
    /// A table an exact `table` listener names is that listener's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<crate::TableSelector>,
    /// Actions captured; all four when omitted.
    #[serde(default = "all_actions")]
    #[schemars(length(min = 1))]
    pub actions: Vec<Action>,
    /// Columns forming the record key; the primary key (else the replica
    /// identity) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_columns: Option<Vec<String>>,
    /// Where the changes go; one target on the default topic when omitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("targets, when given, must list at least one target (omit it for the default topic)"))]
    pub targets: Vec<TargetSpec>,
    /// In an expanded spec, the listener it comes from; never read from a
    /// manifest, never in the CRD. (Serialized when set: the schema derive
    /// copies this struct, and a field only skipped would go unread there.)
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub origin: Option<crate::ListenerOrigin>,
}

/// A Kafka destination of a listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    /// Topic name; `<topicPrefix>.<schema>.<table>` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Message shape for this target; `spec.kafka.envelope` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    /// Which columns the row images carry: `{include: [...]}` or `{exclude: [...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<ColumnsSpec>,
    /// Which changes this target receives; all the listener captures when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterSpec>,
    /// Send one message per PostgreSQL transaction holding all its matching
    /// changes, instead of one message per change.
    #[serde(default)]
    pub send_as_transaction: bool,
    /// Targets sharing a group name (across listeners) receive ONE message per
    /// transaction with the changes of all their tables. Implies
    /// `sendAsTransaction`; every target of a group names the same topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Whether this target receives snapshot rows (`op: r`); set false for a
    /// target that only wants changes.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub snapshot: bool,
    /// Tombstones after deletes for this target; `spec.kafka.tombstonesOnDelete`
    /// when omitted. Whole-transaction targets never get them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstones_on_delete: Option<bool>,
    /// How this target's topic is created when it does not exist, over
    /// `spec.kafka.topicDefaults` (each part set here wins, configs key by
    /// key). Targets that write to one topic must agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_creation: Option<TopicCreation>,
    /// Send the table's rows as outbox events (Debezium's Outbox Event
    /// Router, its defaults when `{}`): the topic from a column through a
    /// template, the key, value and headers from columns. Such a target has
    /// no `topic`, `envelope`, `columns` or grouping of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<crate::OutboxSpec>,
    /// Columns masked, hashed or truncated in this target's records
    /// (Debezium's `column.mask.*` and `column.truncate.*`): changes and
    /// snapshot rows, `before` and `after`; filters still see the real
    /// values. Refused at start-up when a column does not exist or is not
    /// a character column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub column_masks: Vec<crate::ColumnMaskSpec>,
    /// This target's own error policy, instead of `spec.errors`, for its
    /// records that cannot be sent as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<crate::ErrorsSpec>,
}

fn is_default_errors(e: &crate::ErrorsSpec) -> bool {
    *e == crate::ErrorsSpec::default()
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec {
            topic: None,
            envelope: None,
            columns: None,
            filter: None,
            send_as_transaction: false,
            group: None,
            snapshot: true,
            tombstones_on_delete: None,
            topic_creation: None,
            outbox: None,
            column_masks: Vec::new(),
            errors: None,
        }
    }
}

impl TargetSpec {
    /// Whether this target receives whole transactions.
    pub fn groups_transactions(&self) -> bool {
        self.send_as_transaction || self.group.is_some()
    }
}

/// The message shape.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Envelope {
    /// `{"before", "after", "source", "op", "ts_ms"}`, as Debezium writes it.
    #[default]
    Debezium,
    /// The row itself (the new row; the old one for deletes) with `__op`,
    /// `__table`, `__lsn`, `__txId`, `__source_ts_ms` and `__deleted` fields, as
    /// Debezium's ExtractNewRecordState transform writes it.
    Flat,
}

/// A column selection: exactly one of `include` and `exclude`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnsSpec {
    /// Only these columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// Every column but these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
}
