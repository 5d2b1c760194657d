//! `validate()`: every bad field is named.

use crate::PgKafkaConnector;

const VALID: &str = r#"
apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata: {name: orders}
spec:
  postgres: {host: db, database: shop, user: cdc, passwordSecretRef: {name: db, key: password}}
  publication: {name: orders_pub}
  slot: {name: orders_slot}
  kafka: {bootstrapServers: ["k:9092"], topicPrefix: cdc}
  listeners:
    - table: public.orders
"#;

fn parse(yaml: &str) -> PgKafkaConnector {
    serde_yaml::from_str(yaml).expect("test manifest parses")
}

fn fields(yaml: &str) -> Vec<String> {
    match parse(yaml).spec.validate() {
        Ok(()) => vec![],
        Err(e) => e.0.into_iter().map(|e| e.field).collect(),
    }
}

#[test]
fn valid_manifest_passes_with_defaults() {
    let c = parse(VALID);
    assert_eq!(c.spec.validate(), Ok(()));
    assert_eq!(c.spec.postgres.port, 5432);
    assert!(c.spec.slot.create && c.spec.publication.create);
    assert_eq!(c.spec.listeners[0].actions.len(), 4);
}

#[test]
fn unknown_field_is_a_parse_error_naming_it() {
    let yaml = VALID.replace(
        "slot: {name: orders_slot}",
        "slot: {name: orders_slot, nmae: x}",
    );
    let err = serde_yaml::from_str::<PgKafkaConnector>(&yaml)
        .expect_err("unknown field must fail")
        .to_string();
    assert!(err.contains("nmae"), "{err}");
}

#[test]
fn each_bad_field_is_named() {
    let cases = [
            (
                "slot: {name: orders_slot}",
                "slot: {name: Orders-Slot}",
                "spec.slot.name",
            ),
            (
                "publication: {name: orders_pub}",
                "publication: {name: \"\"}",
                "spec.publication.name",
            ),
            ("host: db,", "host: \"\",", "spec.postgres.host"),
            ("user: cdc,", "", "spec.postgres.user"),
            ("[\"k:9092\"]", "[\"k\"]", "spec.kafka.bootstrapServers[0]"),
            (
                "topicPrefix: cdc",
                "topicPrefix: \"c d\"",
                "spec.kafka.topicPrefix",
            ),
            (
                "topicPrefix: cdc",
                "topicPrefix: cdc, properties: {acks: \"1\"}",
                "spec.kafka.properties.acks",
            ),
            (
                "- table: public.orders",
                "- table: a.b.c",
                "spec.listeners[0].table",
            ),
            (
                "- table: public.orders",
                "- {table: orders, actions: []}",
                "spec.listeners[0].actions",
            ),
            (
                "- table: public.orders",
                "- {table: orders, targets: [{topic: \"a/b\"}]}",
                "spec.listeners[0].targets[0].topic",
            ),
            (
                "- table: public.orders",
                "- table: orders\n    - table: public.ORDERS",
                "spec.listeners[1].table",
            ),
            (
                "topicPrefix: cdc",
                "topicPrefix: cdc, topicDefaults: {partitions: 0}",
                "spec.kafka.topicDefaults.partitions",
            ),
            (
                "topicPrefix: cdc",
                "topicPrefix: cdc, transactionTopic: tx",
                "spec.kafka.transactionTopic",
            ),
            (
                "- table: public.orders",
                "- {table: orders, targets: [{outbox: {topic: \"events.${aggregate}\"}}]}",
                "spec.listeners[0].targets[0].outbox.topic",
            ),
            (
                "- table: public.orders",
                "- {table: orders, targets: [{topic: t, outbox: {}}]}",
                "spec.listeners[0].targets[0].topic",
            ),
            (
                "  listeners:",
                "  messages: [{prefixes: []}]\n  listeners:",
                "spec.messages[0].prefixes",
            ),
            (
                "  listeners:",
                "  errors: {tolerance: all}\n  listeners:",
                "spec.errors.deadLetterQueue",
            ),
            (
                "- table: public.orders",
                "- {table: orders, targets: [{errors: {tolerance: all}}]}",
                "spec.listeners[0].targets[0].errors.deadLetterQueue",
            ),
            (
                "- table: public.orders",
                "- {table: orders, targets: [{columnMasks: [{columns: [a], maskWithChars: 2, truncateToChars: 2}]}]}",
                "spec.listeners[0].targets[0].columnMasks[0]",
            ),
            (
                "- table: public.orders",
                "- {table: orders, targets: [{outbox: {}, columnMasks: [{columns: [a], maskWithChars: 2}]}]}",
                "spec.listeners[0].targets[0].columnMasks",
            ),
            (
                "topicPrefix: cdc",
                "topicPrefix: cdc, heartbeat: {intervalSeconds: 0}",
                "spec.kafka.heartbeat.intervalSeconds",
            ),
            (
                "topicPrefix: cdc",
                "topicPrefix: cdc, heartbeat: {intervalSeconds: 5, actionQuery: \" \"}",
                "spec.kafka.heartbeat.actionQuery",
            ),
            (
                "- table: public.orders",
                "- {table: orders, targets: [{topicCreation: {configs: {\"retention.ms\": \"\"}}}]}",
                "spec.listeners[0].targets[0].topicCreation.configs.retention.ms",
            ),
            (
                "- table: public.orders",
                "- {table: orders, targets: [{topicCreation: {partitions: 3}}, {topicCreation: {partitions: 6}}]}",
                "spec.listeners[0].targets[1].topicCreation",
            ),
        ];
    for (from, to, field) in cases {
        let yaml = VALID.replace(from, to);
        assert_ne!(yaml, VALID, "case {field} did not change the manifest");
        assert_eq!(fields(&yaml), vec![field.to_string()], "case {to}");
    }
}
