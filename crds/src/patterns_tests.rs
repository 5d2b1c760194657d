//! Pattern listeners: what they match, what an exact listener keeps, topic
//! templates, the fields their errors name.

use crate::{PgKafkaConnector, QualifiedTable};

fn connector(listeners: &str) -> PgKafkaConnector {
    let yaml = format!(
        r#"
apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata: {{name: shop}}
spec:
  postgres: {{host: db, database: shop, user: cdc, passwordSecretRef: {{name: db, key: password}}}}
  publication: {{name: shop_pub}}
  slot: {{name: shop_slot}}
  kafka: {{bootstrapServers: ["k:9092"], topicPrefix: cdc}}
  listeners:
{listeners}
"#
    );
    serde_yaml::from_str(&yaml).expect("test manifest parses")
}

fn catalog() -> Vec<QualifiedTable> {
    [
        "public.a",
        "public.ab",
        "public.tmp_x",
        "sales.c",
        "sales.d",
        "Audit.Log",
    ]
    .iter()
    .map(|t| {
        let (schema, name) = t.split_once('.').expect("schema.table");
        QualifiedTable {
            schema: schema.into(),
            name: name.into(),
        }
    })
    .collect()
}

/// (table as the expanded listener names it, first target's topic or "").
fn expanded(listeners: &str) -> Vec<(String, String)> {
    let c = connector(listeners);
    assert_eq!(c.spec.validate(), Ok(()));
    c.spec
        .expand(&catalog())
        .listeners
        .into_iter()
        .map(|l| {
            let topic = l
                .targets
                .first()
                .and_then(|t| t.topic.clone())
                .unwrap_or_default();
            (l.table, topic)
        })
        .collect()
}

fn tables(listeners: &str) -> Vec<String> {
    expanded(listeners).into_iter().map(|(t, _)| t).collect()
}

#[test]
fn include_and_exclude_match_whole_names() {
    let got = tables(
        r#"    - tables: {include: ['public\.a.*'], exclude: ['public\.tmp_.*', 'public\.ab']}"#,
    );
    assert_eq!(got, [r#""public"."a""#]);
    // Anchored at both ends: `public\.a` is not a prefix match.
    let got = tables(r#"    - tables: {include: ['public\.a']}"#);
    assert_eq!(got, [r#""public"."a""#]);
    let got = tables(r#"    - tables: {include: ['a']}"#);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn whole_schemas_and_names_as_stored() {
    let got = tables("    - tables: {schemas: [sales, Audit]}");
    assert_eq!(
        got,
        [r#""Audit"."Log""#, r#""sales"."c""#, r#""sales"."d""#]
    );
    let c = connector("    - tables: {schemas: [sales]}");
    assert_eq!(
        c.spec.listeners[0]
            .tables
            .as_ref()
            .and_then(|t| t.whole_schema()),
        Some("sales")
    );
    let c = connector("    - tables: {schemas: ['sa.*']}");
    assert_eq!(
        c.spec.listeners[0]
            .tables
            .as_ref()
            .and_then(|t| t.whole_schema()),
        None
    );
}

#[test]
fn an_exact_listener_keeps_its_table_and_the_first_pattern_wins() {
    let got = expanded(
        r#"    - tables: {include: ['public\..*'], exclude: ['public\.tmp_.*']}
      targets: [{topic: 'first.${table}'}]
    - table: public.a
      targets: [{topic: exact}]
    - tables: {include: ['.*']}
      targets: [{topic: 'rest.${schema}.${table}'}]"#,
    );
    assert_eq!(
        got,
        [
            (r#""public"."ab""#.to_owned(), "first.ab".to_owned()),
            ("public.a".to_owned(), "exact".to_owned()),
            (r#""Audit"."Log""#.to_owned(), "rest.Audit.Log".to_owned()),
            (
                r#""public"."tmp_x""#.to_owned(),
                "rest.public.tmp_x".to_owned()
            ),
            (r#""sales"."c""#.to_owned(), "rest.sales.c".to_owned()),
            (r#""sales"."d""#.to_owned(), "rest.sales.d".to_owned()),
        ]
    );
}

#[test]
fn an_expanded_listener_names_the_field_the_user_wrote() {
    let c = connector(
        r#"    - tables: {schemas: [sales]}
    - table: public.a"#,
    );
    let e = c.spec.expand(&catalog());
    assert_eq!(
        e.listener_field(0),
        r#"spec.listeners[0] (table "sales"."c")"#
    );
    assert_eq!(
        e.listener_field(1),
        r#"spec.listeners[0] (table "sales"."d")"#
    );
    assert_eq!(e.listener_field(2), "spec.listeners[1]");
    assert_eq!(c.spec.listener_field(1), "spec.listeners[1]");
    // An expanded table name parses back to the catalog's.
    let t = QualifiedTable::parse(&e.listeners[0].table).expect("parses");
    assert_eq!((t.schema.as_str(), t.name.as_str()), ("sales", "c"));
}

#[test]
fn bad_selectors_are_named() {
    let errors = |listeners: &str| -> Vec<(String, String)> {
        match connector(listeners).spec.validate() {
            Ok(()) => vec![],
            Err(e) => e.0.into_iter().map(|e| (e.field, e.message)).collect(),
        }
    };
    let e = errors(r#"    - tables: {include: ['public\.(a']}"#);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "spec.listeners[0].tables.include[0]");
    assert!(e[0].1.contains("not a regular expression"), "{e:?}");
    let e = errors("    - tables: {exclude: ['x']}");
    assert_eq!(e[0].0, "spec.listeners[0].tables", "{e:?}");
    let e = errors("    - {table: public.a, tables: {schemas: [public]}}");
    assert_eq!(e[0].0, "spec.listeners[0].table", "{e:?}");
    let e =
        errors("    - tables: {schemas: [public]}\n      targets: [{topic: 'bad topic ${table}'}]");
    assert_eq!(e[0].0, "spec.listeners[0].targets[0].topic", "{e:?}");
    assert!(errors(
        "    - tables: {schemas: [public]}\n      targets: [{topic: 'cdc.${schema}.${table}'}]"
    )
    .is_empty());
}
