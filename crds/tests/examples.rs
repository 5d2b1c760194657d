//! Every `PgKafkaConnector` in `manifests/examples/` passes the generated CRD
//! schema, its CEL rules and `validate()`; the chart ships the same CRD.

use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(".."))
}

/// The OpenAPI schema as a JSON Schema validator reads it (`nullable`
/// becomes a `null` type, as the apiserver treats it).
fn json_schema(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = v.as_object_mut() {
        if obj.remove("nullable") == Some(serde_json::Value::Bool(true)) {
            if let Some(t) = obj.get("type").and_then(|t| t.as_str()).map(str::to_owned) {
                obj.insert("type".into(), serde_json::json!([t, "null"]));
            }
        }
        for (_, child) in obj.iter_mut() {
            *child = json_schema(child.take());
        }
    } else if let Some(list) = v.as_array_mut() {
        for child in list.iter_mut() {
            *child = json_schema(child.take());
        }
    }
    v
}

#[test]
fn every_example_connector_is_valid() {
    let validator = jsonschema::validator_for(&json_schema(pgkafka_crds::openapi_schema()))
        .expect("schema compiles");
    let mut checked = 0;
    let mut files: Vec<_> = std::fs::read_dir(repo().join("manifests/examples"))
        .expect("examples dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        for doc in text.split("\n---\n") {
            let value: serde_json::Value = serde_yaml::from_str(doc).expect("YAML");
            if value["kind"] != "PgKafkaConnector" {
                continue;
            }
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            pgkafka_crds::check_manifest(doc, None)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} example connectors found");
}

#[test]
fn the_schema_refuses_what_the_apiserver_would() {
    let validator = jsonschema::validator_for(&json_schema(pgkafka_crds::openapi_schema()))
        .expect("schema compiles");
    let bad = serde_json::json!({
        "apiVersion": "pgkafka.io/v1alpha1", "kind": "PgKafkaConnector", "metadata": {"name": "x"},
        "spec": {"postgres": {"host": "db", "database": "d", "user": "u", "port": 70000},
                 "publication": {"name": "p"}, "slot": {"name": "Bad Slot"},
                 "kafka": {"bootstrapServers": ["k:9092"], "topicPrefix": "x"}, "listeners": []}
    });
    let errors: Vec<String> = validator
        .iter_errors(&bad)
        .map(|e| e.instance_path().to_string())
        .collect();
    for path in ["/spec/postgres/port", "/spec/slot/name", "/spec/listeners"] {
        assert!(
            errors.iter().any(|e| e == path),
            "{path} not refused: {errors:?}"
        );
    }
}

#[test]
fn the_chart_ships_the_generated_crd() {
    let chart = std::fs::read_to_string(
        repo().join("charts/pgkafka-operator/crds/pgkafkaconnectors.pgkafka.io.yaml"),
    )
    .expect("chart CRD");
    assert_eq!(
        chart,
        pgkafka_crds::crd_yaml().expect("CRD"),
        "copy manifests/crd.yaml into the chart's crds/"
    );
}

#[test]
fn the_readme_reference_is_generated_from_the_crd() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let start = readme
        .find("<!-- reference:start -->\n")
        .map(|i| i + "<!-- reference:start -->\n".len());
    let end = readme.find("<!-- reference:end -->");
    let (Some(start), Some(end)) = (start, end) else {
        panic!("README lacks the reference markers");
    };
    assert_eq!(
        &readme[start..end],
        pgkafka_crds::reference_markdown(),
        "README reference is stale: regenerate it with `cargo run -p pgkafka-crds --bin crdgen -- --reference`"
    );
}

#[test]
fn the_readme_names_every_condition_reason() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let start = readme
        .find("| condition | True | False reasons |")
        .expect("the conditions table");
    let table: String = readme[start..]
        .lines()
        .take(6)
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<&str> = pgkafka_crds::conditions::Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .filter(|r| !table.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's conditions table lacks {missing:?}"
    );
    for t in pgkafka_crds::conditions::ConditionType::ALL {
        assert!(table.contains(&format!("| `{t}` |")), "no row for {t}");
    }
}
