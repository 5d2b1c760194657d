//! The engine's internal topics survive a real Kafka: created compacted,
//! and an existing one that is not compacted refused naming it and the fix;
//! a user's compacted data topic is left as it is. Against noida-db, which
//! reports topic configs (Tansu does not).

use std::time::Duration;

use pgkafka_tests::{read_to_end, unique, Broker, Engine, Manifest, Postgres};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

async fn cleanup_policy(bootstrap: &str, topic: &str) -> Option<String> {
    let described = admin(bootstrap)
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .ok()?;
    described
        .into_iter()
        .next()?
        .ok()?
        .get("cleanup.policy")?
        .value
        .clone()
}

async fn create(bootstrap: &str, topic: &str, policy: &str) {
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", policy);
    let result = admin(bootstrap)
        .create_topics(&[new], &AdminOptions::new())
        .await
        .expect("create topics");
    assert!(result.iter().all(Result::is_ok), "{result:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_topics_are_compacted_and_a_deleting_one_is_refused() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let broker = Broker::noida();
    let (name, prefix) = (unique("topics"), unique("topics"));
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: t");
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    for topic in ["pgkafka-snapshots", "pgkafka-offsets"] {
        assert_eq!(
            cleanup_policy(&broker.bootstrap, &format!("{prefix}.{topic}"))
                .await
                .as_deref(),
            Some("compact"),
            "{topic}"
        );
    }
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());

    // Another connector whose offsets topic exists with retention only.
    let (name, prefix) = (unique("topics"), unique("topics"));
    let offsets = format!("{prefix}.pgkafka-offsets");
    create(&broker.bootstrap, &offsets, "delete").await;
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: t");
    let mut engine = Engine::start(ENGINE, &m.yaml());
    let (code, log) = engine.wait_exit(LONG);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "internal topic {offsets} has cleanup.policy=delete"
        )) && log.contains("cleanup.policy=compact"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_compacted_topic_is_left_compacted_and_a_delete_ends_in_its_tombstone() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let broker = Broker::noida();
    let (name, prefix) = (unique("compact"), unique("compact"));
    let topic = format!("{prefix}.public.t");
    // A data topic the user made compacted: the engine leaves it as it is.
    create(&broker.bootstrap, &topic, "compact").await;
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: t");
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    db.exec(
        "INSERT INTO t VALUES (1, 'a'), (2, 'b');
         UPDATE t SET v = 'b2' WHERE id = 2;
         DELETE FROM t WHERE id = 1;",
    )
    .await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    assert_eq!(
        cleanup_policy(&broker.bootstrap, &topic).await.as_deref(),
        Some("compact")
    );
    let records = read_to_end(&broker.bootstrap, &topic);
    let last = |key: &str| records.iter().rfind(|r| r.key.as_deref() == Some(key));
    // What compaction keeps per key: the deleted key's tombstone, the
    // updated key's latest row.
    assert!(
        last(r#"{"id":1}"#).is_some_and(|r| r.raw.is_none()),
        "the deleted key ends in its tombstone: {records:#?}"
    );
    assert_eq!(
        last(r#"{"id":2}"#).map(|r| r.value["after"]["v"].clone()),
        Some("b2".into())
    );
}
