//! The engine's ConfigMap: the connector manifest the engine runs, with
//! secret references only (never a secret value).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use pgkafka_crds::PgKafkaConnector;

use super::{metadata, CONFIG_FILE};

/// The manifest the engine reads: apiVersion, kind, name, namespace and spec.
pub fn engine_manifest(c: &PgKafkaConnector) -> Result<String, serde_yaml::Error> {
    let manifest = serde_json::json!({
        "apiVersion": "pgkafka.io/v1alpha1",
        "kind": "PgKafkaConnector",
        "metadata": {"name": c.name_any(), "namespace": c.namespace()},
        "spec": c.spec,
    });
    serde_yaml::to_string(&manifest)
}

/// The ConfigMap holding [`engine_manifest`].
pub fn configmap(c: &PgKafkaConnector) -> Result<ConfigMap, serde_yaml::Error> {
    Ok(ConfigMap {
        metadata: metadata(c),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_owned(),
            engine_manifest(c)?,
        )])),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::{connector, SPEC};

    #[test]
    fn holds_the_spec_and_parses_back_as_the_engine_reads_it() {
        let c = connector(SPEC);
        let cm = configmap(&c).expect("serializes");
        assert_eq!(cm.metadata.name.as_deref(), Some("orders-engine"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
        let owner = &cm.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("PgKafkaConnector", Some(true))
        );
        let text = &cm.data.as_ref().expect("data")["connector.yaml"];
        let back: PgKafkaConnector = serde_yaml::from_str(text).expect("engine parses it");
        assert_eq!(back.spec, c.spec);
        assert!(text.contains("passwordSecretRef") && !text.contains("status"));
    }
}
