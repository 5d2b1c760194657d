//! What is generated from the types: the CRD YAML, its OpenAPI schema, the
//! README's field reference, and the check a manifest must pass (schema
//! CEL rules and `validate()`).

use crate::PgKafkaConnector;

/// The CRD as YAML, exactly as `crdgen` prints it and `manifests/crd.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&PgKafkaConnector::crd())
}

/// The OpenAPI schema of the `v1alpha1` version, as the apiserver sees it.
pub fn openapi_schema() -> serde_json::Value {
    use kube::CustomResourceExt;
    let crd = PgKafkaConnector::crd();
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default()
}

/// Why a manifest would be refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// It does not parse as a `PgKafkaConnector` (unknown or missing field).
    #[error("{0}")]
    Parse(#[from] serde_yaml::Error),
    /// A CEL rule of the CRD fails: the API server would refuse it.
    #[error("{0}")]
    Cel(#[from] kube::core::cel::ValidationErrors),
    /// A spec field is invalid.
    #[error("{0}")]
    Invalid(#[from] crate::ValidationErrors),
}

/// Checks a manifest the way the apiserver's CEL rules and the engine would:
/// it parses (no unknown field), every CEL rule holds (transition rules
/// against `old` when given), and `validate()` passes. Errors name fields.
pub fn check_manifest(yaml: &str, old: Option<&str>) -> Result<PgKafkaConnector, ManifestError> {
    // The apiserver runs CEL on the object as written; serde checks the shape.
    let parse = |y: &str| -> Result<(PgKafkaConnector, serde_json::Value), ManifestError> {
        let resource: PgKafkaConnector = serde_yaml::from_str(y)?;
        let value: serde_json::Value = serde_yaml::from_str(y)?;
        Ok((resource, value))
    };
    let (resource, value) = parse(yaml)?;
    let old = old.map(parse).transpose()?.map(|(_, v)| v);
    kube::core::cel::Validator::new().validate(&openapi_schema(), &value, old.as_ref())?;
    resource.spec.validate()?;
    Ok(resource)
}

/// The resource reference as a Markdown table, generated from the CRD's field
/// docs (the README carries it between `<!-- reference -->` markers).
pub fn reference_markdown() -> String {
    fn walk(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
            return;
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        for (name, child) in props {
            let field = format!("{path}.{name}");
            let mut kind = child
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("object")
                .to_owned();
            let items = child.get("items");
            if let Some(t) = items.and_then(|i| i.get("type")).and_then(|t| t.as_str()) {
                kind = format!("[]{t}");
            }
            if let Some(values) = child.get("enum").and_then(|e| e.as_array()) {
                let values: Vec<String> = values
                    .iter()
                    .filter_map(|v| v.as_str())
                    .map(|v| format!("`{v}`"))
                    .collect();
                kind = values.join(" \\| ");
            }
            let mut doc = child
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or("")
                .replace('\n', " ")
                .replace('|', "\\|");
            if let Some(d) = child.get("default") {
                doc.push_str(&format!(" Default: `{d}`."));
            }
            let req = if required.contains(&name.as_str()) {
                " (required)"
            } else {
                ""
            };
            out.push(format!(
                "| `{}`{req} | {kind} | {doc} |",
                field.trim_start_matches('.')
            ));
            // Kubernetes' own types (resources) are documented upstream.
            if name != "resources" {
                walk(child, &field, out);
                if let Some(items) = items {
                    walk(items, &format!("{field}[]"), out);
                }
            }
        }
    }
    let schema = openapi_schema();
    let mut rows = vec![
        "| field | type | description |".to_owned(),
        "| --- | --- | --- |".to_owned(),
    ];
    walk(&schema["properties"]["spec"], "spec", &mut rows);
    walk(&schema["properties"]["status"], "status", &mut rows);
    rows.join("\n") + "\n"
}

#[cfg(test)]
mod crd_tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata: {name: orders}
spec:
  postgres: {host: db, database: shop, user: cdc}
  publication: {name: orders_pub}
  slot: {name: orders_slot}
  kafka: {bootstrapServers: ["k:9092"], topicPrefix: cdc}
  listeners: [{table: orders, targets: [{filter: {conditions: [{any: [{field: new.a, operator: in, value: [1, "x"]}]}]}}]}]
"#;

    #[test]
    fn committed_crd_matches_the_types() {
        let committed = include_str!("../../manifests/crd.yaml");
        let generated = crd_yaml().expect("CRD serializes");
        assert!(
            committed == generated,
            "manifests/crd.yaml is stale: run `cargo run -p pgkafka-crds --bin crdgen > manifests/crd.yaml`"
        );
    }

    #[test]
    fn the_crd_uses_only_formats_the_api_server_knows() {
        // It warns about unsigned formats (schemars writes `uint32` for a
        // u32): the fields are signed with a minimum instead.
        let generated = crd_yaml().expect("CRD serializes");
        let unsigned: Vec<&str> = generated
            .lines()
            .filter(|l| l.trim_start().starts_with("format: uint"))
            .collect();
        assert!(unsigned.is_empty(), "{unsigned:?}");
    }

    /// Every `x-kubernetes-validations` rule in the schema, with its path.
    fn rules(schema: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
        if let Some(list) = schema
            .get("x-kubernetes-validations")
            .and_then(|v| v.as_array())
        {
            for r in list {
                out.push((
                    path.to_owned(),
                    r["rule"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                rules(v, &format!("{path}.{k}"), out);
            }
        }
        if let Some(items) = schema.get("items") {
            rules(items, &format!("{path}[]"), out);
        }
    }

    #[test]
    fn every_cel_rule_compiles() {
        let schema = openapi_schema();
        let mut found = Vec::new();
        rules(&schema, "", &mut found);
        assert!(found.len() >= 4, "rules: {found:?}");
        fn check(compiled: &kube::core::cel::CompiledSchema, path: &str) {
            for v in &compiled.validations {
                assert!(v.is_ok(), "{path}: {:?}", v.as_ref().err());
            }
            for (k, child) in &compiled.properties {
                check(child, &format!("{path}.{k}"));
            }
            if let Some(items) = &compiled.items {
                check(items, &format!("{path}[]"));
            }
        }
        check(&kube::core::cel::compile_schema(&schema), "");
    }

    #[test]
    fn cel_rules_hold_and_refuse() {
        let good = check_manifest(GOOD, None).expect("valid manifest");
        assert_eq!(good.spec.slot.name, "orders_slot");
        let both = GOOD.replace("user: cdc}", "user: cdc, userSecretRef: {name: s, key: u}}");
        let err = check_manifest(&both, None)
            .expect_err("user and userSecretRef")
            .to_string();
        assert!(
            err.contains("exactly one of user and userSecretRef"),
            "{err}"
        );
        let renamed = GOOD.replace("orders_slot", "other_slot");
        let err = check_manifest(&renamed, Some(GOOD))
            .expect_err("slot renamed")
            .to_string();
        assert!(err.contains("slot name is immutable"), "{err}");
        let moved = GOOD.replace("database: shop", "database: other");
        assert!(check_manifest(&moved, Some(GOOD))
            .expect_err("db")
            .to_string()
            .contains("database is immutable"));
        let no_targets = GOOD.replace("listeners: [{table: orders, targets: [{filter: {conditions: [{any: [{field: new.a, operator: in, value: [1, \"x\"]}]}]}}]}]", "listeners: [{table: orders, targets: []}]");
        let err = check_manifest(&no_targets, None)
            .expect_err("empty targets")
            .to_string();
        assert!(err.contains("must list at least one target"), "{err}");
        let eos = GOOD.replace(
            "topicPrefix: cdc}",
            "topicPrefix: cdc, deliveryGuarantee: exactlyOnce}",
        );
        check_manifest(&eos, None).expect("exactlyOnce with the engine's producer settings");
        let not_idempotent = eos.replace(
            "deliveryGuarantee: exactlyOnce}",
            "deliveryGuarantee: exactlyOnce, properties: {enable.idempotence: 'false'}}",
        );
        let err = check_manifest(&not_idempotent, None)
            .expect_err("idempotence off")
            .to_string();
        assert!(
            err.contains("exactlyOnce needs an idempotent producer"),
            "{err}"
        );
        let more = GOOD.replace("topicPrefix: cdc", "topicPrefix: cdc2");
        check_manifest(&more, Some(GOOD)).expect("other fields may change");
    }
}
