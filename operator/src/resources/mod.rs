//! The Kubernetes objects that run one connector's engine, built as pure
//! functions of the resource (and tested as values). Applying them is the
//! reconciler's job.

use std::collections::BTreeMap;

use kube::{Resource, ResourceExt};
use pgkafka_crds::PgKafkaConnector;

pub mod configmap;
pub mod deployment;
pub mod service;

/// The engine's container port for HTTP (metrics, health, status).
pub const HTTP_PORT: i32 = 8080;
/// Where the engine reads its manifest.
pub const CONFIG_DIR: &str = "/etc/pgkafka/config";
/// Where the engine reads its secrets (`DIR/<secret>/<key>`).
pub const SECRETS_DIR: &str = "/etc/pgkafka/secrets";
/// The manifest's file name in the ConfigMap.
pub const CONFIG_FILE: &str = "connector.yaml";
/// Annotation that restarts the engine once when its value changes.
pub const RESTART_ANNOTATION: &str = "pgkafka.io/restart";
/// Annotation whose value (comma-separated `schema.table`s) asks the engine
/// for one snapshot of those tables each time it changes.
pub const SNAPSHOT_ANNOTATION: &str = "pgkafka.io/snapshot";
/// Annotation whose value (`schema.table`s, or `*`) stops those snapshots
/// once each time it changes.
pub const SNAPSHOT_STOP_ANNOTATION: &str = "pgkafka.io/snapshot-stop";
/// Annotation that keeps snapshots paused while it says `true`.
pub const SNAPSHOT_PAUSED_ANNOTATION: &str = "pgkafka.io/snapshot-paused";

/// The annotation that acknowledges dead letters: the count handled.
pub const DEAD_LETTERS_ACKNOWLEDGED: &str = "pgkafka.io/dead-letters-acknowledged";

/// Operator-wide settings for the objects it builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The engine image (the same image as the operator by default).
    pub engine_image: String,
    /// Its pull policy.
    pub image_pull_policy: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            engine_image: "ghcr.io/pgkafka/pgkafka:latest".into(),
            image_pull_policy: "IfNotPresent".into(),
        }
    }
}

/// Name of every object of a connector's engine: `<connector>-engine`.
pub fn engine_name(c: &PgKafkaConnector) -> String {
    format!("{}-engine", c.name_any())
}

/// Labels on every object of a connector's engine (and its pod selector).
pub fn labels(c: &PgKafkaConnector) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "pgkafka-engine".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), c.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "pgkafka-operator".to_owned(),
        ),
    ])
}

/// Metadata shared by the engine's objects: name, namespace, labels, owner.
pub fn metadata(
    c: &PgKafkaConnector,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(engine_name(c)),
        namespace: c.namespace(),
        labels: Some(labels(c)),
        owner_references: c.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Connectors for tests, built from YAML like users write them.
    use pgkafka_crds::PgKafkaConnector;

    /// A valid connector; `extra` replaces `spec:` lines verbatim.
    pub fn connector(spec_yaml: &str) -> PgKafkaConnector {
        let yaml = format!(
            "apiVersion: pgkafka.io/v1alpha1\nkind: PgKafkaConnector\nmetadata: {{name: orders, namespace: shop, uid: 1234-abcd, generation: 3}}\nspec:\n{spec_yaml}"
        );
        serde_yaml::from_str(&yaml).expect("fixture parses")
    }

    /// The spec every test starts from.
    pub const SPEC: &str = "  postgres: {host: db.shop.svc, database: shop, user: cdc, passwordSecretRef: {name: shop-db, key: password}}
  publication: {name: orders_pub}
  slot: {name: orders_slot}
  kafka: {bootstrapServers: [\"kafka:9092\"], topicPrefix: cdc}
  listeners: [{table: public.orders}]
";
}
