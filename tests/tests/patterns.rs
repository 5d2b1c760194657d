//! Listeners that select many tables (`tables: {schemas, include,
//! exclude}`), on a real PostgreSQL and Tansu: what they capture, what an
//! exact listener keeps, topic templates, the publication the engine
//! makes, and a filter whose column one matched table lacks.

use std::time::Duration;

use pgkafka_tests::{consume, read_to_end, unique, Broker, Engine, Manifest, Postgres};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn patterns_capture_what_they_match_and_an_exact_listener_keeps_its_table() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE SCHEMA sales;
         CREATE TABLE public.a (id int PRIMARY KEY);
         CREATE TABLE public.b (id int PRIMARY KEY);
         CREATE TABLE public.tmp_x (id int PRIMARY KEY);
         CREATE TABLE sales.c (id int PRIMARY KEY);",
    )
    .await;
    let (name, prefix) = (unique("pat"), unique("pat"));
    let listeners = format!(
        r#"    - tables: {{include: ['public\..*'], exclude: ['public\.tmp_.*']}}
      targets: [{{topic: '{prefix}.p.${{table}}'}}]
    - table: public.b
      targets: [{{topic: '{prefix}.exact'}}]
    - tables: {{schemas: [sales]}}"#
    );
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, &listeners).yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    let published = db.published_tables(&format!("{name}_pub")).await;
    assert_eq!(published, ["public.a", "public.b", "sales.c"]);
    db.exec(
        "INSERT INTO public.a VALUES (1); INSERT INTO public.b VALUES (2);
         INSERT INTO public.tmp_x VALUES (3); INSERT INTO sales.c VALUES (4);",
    )
    .await;
    let id = |topic: &str| {
        consume(&broker.bootstrap, topic, 1, LONG)
            .first()
            .and_then(|r| r.value["after"]["id"].as_i64())
    };
    assert_eq!(
        id(&format!("{prefix}.p.a")),
        Some(1),
        "matched, topic template"
    );
    assert_eq!(
        id(&format!("{prefix}.exact")),
        Some(2),
        "the exact listener's"
    );
    assert_eq!(
        id(&format!("{prefix}.sales.c")),
        Some(4),
        "whole schema, default topic"
    );
    // A matched table is a listened one: a snapshot may be asked of it.
    let asked = engine.http_post("/snapshots", r#"{"tables": ["public.a"]}"#);
    assert_eq!(asked.as_ref().map(|r| r.0), Some(202), "{asked:?}");
    let a = consume(&broker.bootstrap, &format!("{prefix}.p.a"), 2, LONG);
    assert!(a.iter().any(|r| r.value["op"] == "r"), "{a:?}");
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    for never in [
        format!("{prefix}.p.b"),
        format!("{prefix}.p.tmp_x"),
        format!("{prefix}.public.tmp_x"),
    ] {
        assert!(
            read_to_end(&broker.bootstrap, &never).is_empty(),
            "{never} got records"
        );
    }
    assert_eq!(engine.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_column_one_matched_table_lacks_is_refused_naming_both() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE TABLE public.a (id int PRIMARY KEY, status text);
         CREATE TABLE public.b (id int PRIMARY KEY);",
    )
    .await;
    let (name, prefix) = (unique("patf"), unique("patf"));
    let listeners = r#"    - tables: {include: ['public\..*']}
      targets:
        - filter: {conditions: [{field: new.status, operator: '==', value: paid}]}"#;
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, listeners).yaml();
    let mut engine = Engine::start(ENGINE, &m);
    let (code, log) = engine.wait_exit(LONG);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains(r#"spec.listeners[0] (table "public"."b")"#),
        "{log}"
    );
    assert!(log.contains("status"), "{log}");
}
