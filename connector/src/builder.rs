//! The engine as a library: [`Engine::builder`] for a program that
//! configures it in code, [`Engine::from_manifest`] for the same YAML the
//! operator and `pgkafka-connector run` read. Either way the spec is
//! validated exactly as a `PgKafkaConnector` resource is.

use std::future::Future;
use std::path::Path;

use pgkafka_crds::{ConnectorState, PgKafkaConnectorSpec};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::config::EngineConfig;
use crate::credentials::{KafkaCredentials, PgCredentials, Secret};
use crate::engine::{self, Limits};
use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;
use crate::snapshot::condition::ConditionCheck;
use crate::snapshot::SharedSnapshots;
use crate::status::{Halted, StatusHandle};
use crate::transform::mask::Salts;

/// A configured engine, ready to [`run`](Engine::run).
pub struct Engine {
    cfg: EngineConfig,
    metrics: Metrics,
    limits: Limits,
    shared: SharedSnapshots,
    halted: Halted,
}

impl Engine {
    /// Starts configuring an engine named `name` (Debezium's `source.name`).
    pub fn builder(name: impl Into<String>) -> EngineBuilder {
        EngineBuilder {
            name: name.into(),
            fields: Map::new(),
            spec: None,
            postgres: PgCredentials::default(),
            kafka: KafkaCredentials::default(),
            salts: Salts::default(),
            limits: Limits::default(),
        }
    }

    /// An engine from a `PgKafkaConnector` manifest, its secret references
    /// read from `secrets_dir/<secret>/<key>` (the layout of a mounted Secret).
    pub fn from_manifest(path: &Path, secrets_dir: Option<&Path>) -> Result<Engine, Error> {
        Ok(Engine::new(
            EngineConfig::load(path, secrets_dir)?,
            Limits::default(),
        ))
    }

    fn new(cfg: EngineConfig, limits: Limits) -> Engine {
        let metrics = Metrics::new(&cfg.name);
        let shared = SharedSnapshots::default();
        // Until start-up has matched the pattern listeners: the exact ones.
        shared.set_listened(cfg.spec.tables());
        Engine {
            cfg,
            metrics,
            limits,
            shared,
            halted: Halted::default(),
        }
    }

    /// Replaces the in-flight caps and status interval.
    pub fn with_limits(mut self, limits: Limits) -> Engine {
        self.limits = limits;
        self
    }

    /// The validated spec.
    pub fn spec(&self) -> &PgKafkaConnectorSpec {
        &self.cfg.spec
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Reads the engine's state while it runs.
    pub fn status(&self) -> StatusHandle {
        StatusHandle {
            name: self.cfg.name.clone(),
            slot: self.cfg.spec.slot.name.clone(),
            metrics: self.metrics.clone(),
            shared: self.shared.clone(),
            halted: self.halted.clone(),
            condition_check: Some(ConditionCheck {
                postgres: self.cfg.spec.postgres.clone(),
                credentials: self.cfg.postgres.clone(),
            }),
        }
    }

    /// Streams until `shutdown` completes (then delivers what is in flight,
    /// confirms it, and returns) or a fault retrying cannot fix. Returns at
    /// once when `spec.state` is not `running`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        // The replication client builds its own rustls configuration from
        // the process default; an embedding program need not know.
        crate::source::tls::install_default_provider();
        if self.cfg.spec.state != ConnectorState::Running {
            tracing::info!(state = ?self.cfg.spec.state, "spec.state is not running: nothing to stream");
            return Ok(());
        }
        let (stop, stopped) = watch::channel(false);
        let halted = self.halted.clone();
        let engine = engine::run(self.cfg, self.metrics, self.limits, self.shared, stopped);
        tokio::pin!(engine, shutdown);
        tokio::select! {
            result = &mut engine => {
                if let Err(e) = &result {
                    halted.set(e);
                }
                return result;
            }
            () = &mut shutdown => {}
        }
        // The receiver lives inside `engine`, which is still running.
        let _ = stop.send(true);
        engine.await
    }
}

/// Configures an [`Engine`] in code. Each `with_` call sets the spec field
/// of the same name; [`build`](EngineBuilder::build) fills in the defaults
/// and validates, with errors naming the field.
pub struct EngineBuilder {
    name: String,
    fields: Map<String, Value>,
    spec: Option<PgKafkaConnectorSpec>,
    postgres: PgCredentials,
    kafka: KafkaCredentials,
    salts: Salts,
    limits: Limits,
}

impl EngineBuilder {
    /// Starts from a whole spec (for example parsed from YAML); `with_`
    /// calls made before are ignored.
    pub fn with_spec(mut self, spec: PgKafkaConnectorSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// `spec.postgres.host`, `port` and `database`.
    pub fn with_postgres(self, host: &str, port: u16, database: &str) -> Self {
        self.merge(
            "postgres",
            json!({"host": host, "port": port, "database": database}),
        )
    }

    /// The PostgreSQL role and its password.
    pub fn with_user(mut self, user: &str, password: Secret) -> Self {
        self.postgres.user = user.to_owned();
        self.postgres.password = password;
        self.merge("postgres", json!({"user": user}))
    }

    /// `spec.postgres.sslMode` (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`) and the CA bundle (PEM) the verifying modes check against.
    pub fn with_tls(mut self, ssl_mode: &str, ca_pem: Option<String>) -> Self {
        self.postgres.ca_pem = ca_pem;
        self.merge("postgres", json!({"sslMode": ssl_mode}))
    }

    /// `spec.publication.name`; created (and kept to the listened tables)
    /// unless it exists with them.
    pub fn with_publication(self, name: &str) -> Self {
        self.merge("publication", json!({"name": name}))
    }

    /// `spec.slot.name`; created when missing.
    pub fn with_slot(self, name: &str) -> Self {
        self.merge("slot", json!({"name": name}))
    }

    /// `spec.kafka.bootstrapServers` and `topicPrefix`.
    pub fn with_kafka(self, bootstrap_servers: &[&str], topic_prefix: &str) -> Self {
        self.merge(
            "kafka",
            json!({"bootstrapServers": bootstrap_servers, "topicPrefix": topic_prefix}),
        )
    }

    /// One producer property (`spec.kafka.properties`).
    pub fn with_kafka_property(self, key: &str, value: &str) -> Self {
        self.merge("kafka", json!({"properties": {key: value}}))
    }

    /// The salt a hashed column's `saltSecretRef` names (`name`/`key`), as
    /// the Secret would hold it.
    pub fn with_salt(mut self, name: &str, key: &str, salt: Secret) -> Self {
        let r = pgkafka_crds::SecretKeyRef {
            name: name.to_owned(),
            key: key.to_owned(),
        };
        self.salts.insert(&r, salt.expose());
        self
    }

    /// Kafka SASL credentials and broker CA, as `spec.kafka.saslSecretRef`
    /// and `caSecretRef` would give them.
    pub fn with_kafka_credentials(mut self, credentials: KafkaCredentials) -> Self {
        self.kafka = credentials;
        self
    }

    /// One listener per table (`schema.table`, or `table` in `public`), each
    /// with the default target `<topicPrefix>.<schema>.<table>`.
    pub fn with_tables<'a>(self, tables: impl IntoIterator<Item = &'a str>) -> Self {
        let listeners: Vec<Value> = tables.into_iter().map(|t| json!({"table": t})).collect();
        self.merge("listeners", Value::Array(listeners))
    }

    /// In-flight caps and status interval.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Validates and returns the engine.
    pub fn build(self) -> Result<Engine, Error> {
        let spec = match self.spec {
            Some(spec) => spec,
            None => serde_json::from_value(Value::Object(self.fields)).map_err(|source| {
                ErrorKind::Builder {
                    name: self.name.clone(),
                    source,
                }
            })?,
        };
        spec.validate()?;
        let cfg = EngineConfig {
            name: self.name,
            spec,
            postgres: self.postgres,
            kafka: self.kafka,
            pg_ca_file: None,
            salts: self.salts,
        };
        Ok(Engine::new(cfg, self.limits))
    }

    /// Merges `value` into the spec object at `key` (objects field by field).
    fn merge(mut self, key: &str, value: Value) -> Self {
        let slot = self.fields.entry(key).or_insert(Value::Null);
        merge_json(slot, value);
        self
    }
}

fn merge_json(into: &mut Value, value: Value) {
    match (into, value) {
        (Value::Object(into), Value::Object(value)) => {
            for (k, v) in value {
                merge_json(into.entry(k).or_insert(Value::Null), v);
            }
        }
        (into, value) => *into = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> EngineBuilder {
        Engine::builder("orders")
            .with_postgres("db.internal", 5433, "shop")
            .with_user("cdc", Secret::new("pw"))
            .with_publication("orders_pub")
            .with_slot("orders_slot")
            .with_kafka(&["k1:9092", "k2:9092"], "cdc")
            .with_kafka_property("compression.type", "zstd")
            .with_tables(["public.orders", "lines"])
    }

    #[test]
    fn the_builder_fills_the_spec_with_its_defaults() {
        let engine = builder().build().expect("valid");
        let spec = engine.spec();
        assert_eq!(engine.name(), "orders");
        assert_eq!(
            (spec.postgres.host.as_str(), spec.postgres.port),
            ("db.internal", 5433)
        );
        assert_eq!(spec.postgres.user.as_deref(), Some("cdc"));
        assert!(
            spec.slot.create && spec.publication.create,
            "serde defaults apply"
        );
        assert_eq!(spec.kafka.bootstrap_servers, ["k1:9092", "k2:9092"]);
        assert_eq!(spec.kafka.properties["compression.type"], "zstd");
        assert_eq!(spec.listeners.len(), 2);
        assert_eq!(engine.cfg.postgres.password.expose(), "pw");
        assert!(!engine.status().is_streaming());
    }

    #[test]
    fn a_missing_or_invalid_field_is_named() {
        let err = Engine::builder("x")
            .with_postgres("h", 5432, "d")
            .build()
            .err()
            .expect("incomplete");
        assert!(err.to_string().contains("missing field"), "{err}");
        let err = builder()
            .with_kafka_property("enable.idempotence", "false")
            .build()
            .err()
            .expect("invalid");
        assert!(err.to_string().contains("enable.idempotence"), "{err}");
    }
}
