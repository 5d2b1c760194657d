//! Connector manifests for tests, built as the typed resource: a test says
//! what it changes (`.delivery(ExactlyOnce)`, `.spec(|s| ...)`) rather than
//! patching YAML text, and a change the type does not have fails to compile.
//! Only tests of malformed input edit the YAML itself.

use pgkafka_crds::{DeliveryGuarantee, PgKafkaConnector, PgKafkaConnectorSpec, SnapshotMode};

use crate::TestDb;

/// A `PgKafkaConnector` being built.
#[derive(Clone, Debug)]
pub struct Manifest(PgKafkaConnector);

impl Manifest {
    /// The base: `db` on the shared cluster as the superuser (password from
    /// the secret `pg/password`), `bootstrap`, topic prefix `prefix`,
    /// publication `<name>_pub` and slot `<name>_slot`, listeners from
    /// `listeners_yaml` (YAML list entries, given verbatim). It streams
    /// changes only (`snapshot.mode: never`): tests of snapshots turn them on.
    pub fn new(
        name: &str,
        db: &TestDb,
        bootstrap: &str,
        prefix: &str,
        listeners_yaml: &str,
    ) -> Manifest {
        let yaml = format!(
            r#"apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata:
  name: {name}
spec:
  postgres:
    host: 127.0.0.1
    port: {port}
    database: {db}
    user: postgres
    passwordSecretRef: {{name: pg, key: password}}
    sslMode: disable
  publication: {{name: {name}_pub}}
  slot: {{name: {name}_slot}}
  kafka:
    bootstrapServers: ["{bootstrap}"]
    topicPrefix: {prefix}
    properties: {{message.timeout.ms: "10000"}}
  snapshot: {{mode: never}}
  listeners:
{listeners_yaml}
"#,
            port = db.port,
            db = db.name,
        );
        Manifest(
            serde_yaml::from_str(&yaml)
                .unwrap_or_else(|e| panic!("test manifest does not parse ({e}):\n{yaml}")),
        )
    }

    /// Any typed change of the spec.
    pub fn spec(mut self, edit: impl FnOnce(&mut PgKafkaConnectorSpec)) -> Manifest {
        edit(&mut self.0.spec);
        self
    }

    /// `spec.kafka.deliveryGuarantee`.
    pub fn delivery(self, guarantee: DeliveryGuarantee) -> Manifest {
        self.spec(|s| s.kafka.delivery_guarantee = guarantee)
    }

    /// A producer property in `spec.kafka.properties`.
    pub fn kafka_property(self, key: &str, value: &str) -> Manifest {
        self.spec(|s| {
            s.kafka.properties.insert(key.into(), value.into());
        })
    }

    /// `spec.snapshot: {mode: initial, chunkSize: chunk}`.
    pub fn snapshots(self, chunk: u32) -> Manifest {
        self.spec(|s| {
            s.snapshot.mode = SnapshotMode::Initial;
            s.snapshot.chunk_size = chunk;
        })
    }

    /// The publication exists already and the connector does not manage it.
    pub fn existing_publication(self) -> Manifest {
        self.spec(|s| s.publication.create = false)
    }

    /// The spec, to read what the manifest says.
    pub fn get(&self) -> &PgKafkaConnectorSpec {
        &self.0.spec
    }

    /// The manifest as the engine reads it.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.0).unwrap_or_else(|e| panic!("manifest serializes: {e}"))
    }
}

/// [`Manifest::new`] as YAML, for tests that change nothing.
pub fn manifest(
    name: &str,
    db: &TestDb,
    bootstrap: &str,
    prefix: &str,
    listeners_yaml: &str,
) -> String {
    Manifest::new(name, db, bootstrap, prefix, listeners_yaml).yaml()
}
