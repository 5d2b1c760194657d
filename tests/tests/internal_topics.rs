//! Topics on a real Kafka: the engine's internal topics are created
//! compacted, and an existing one that is not compacted is refused naming it
//! and the fix; data topics are created as `spec.kafka.topicDefaults` and a
//! target's `topicCreation` say, and one that exists is left as it is; a
//! compacted data topic, once compacted, keeps a deleted key's tombstone
//! only. Against noida-db, which reports topic configs and compacts (Tansu
//! does neither).

use std::time::Duration;

use pgkafka_crds::TopicCreation;
use pgkafka_tests::{partition_count, read_to_end, unique, Broker, Engine, Manifest, Postgres};
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
    topic_config(bootstrap, topic, "cleanup.policy").await
}

async fn topic_config(bootstrap: &str, topic: &str, name: &str) -> Option<String> {
    let described = admin(bootstrap)
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .ok()?;
    described.into_iter().next()?.ok()?.get(name)?.value.clone()
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

fn partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    partition_count(&consumer, topic, Duration::from_secs(10))
}

fn creation(partitions: Option<i32>, configs: &[(&str, &str)]) -> TopicCreation {
    TopicCreation {
        partitions,
        replication_factor: None,
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn data_topics_are_created_as_the_defaults_and_a_targets_override_say() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY)")
        .await;
    let broker = Broker::noida();
    let (name, prefix) = (unique("create"), unique("create"));
    // A topic that exists already: left as it is (one partition, delete).
    let existing = format!("{prefix}.public.c");
    create(&broker.bootstrap, &existing, "delete").await;
    let listeners = "    - table: a\n    - table: b\n      targets: [{topicCreation: {partitions: 2, configs: {retention.ms: \"3600000\"}}}]\n    - table: c";
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, listeners).spec(|s| {
        s.kafka.topic_defaults = creation(
            Some(3),
            &[("cleanup.policy", "compact"), ("retention.ms", "86400000")],
        );
    });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    let (a, b) = (format!("{prefix}.public.a"), format!("{prefix}.public.b"));
    let bs = &broker.bootstrap;
    assert_eq!(partitions(bs, &a), Some(3), "the defaults");
    assert_eq!(cleanup_policy(bs, &a).await.as_deref(), Some("compact"));
    assert_eq!(
        topic_config(bs, &a, "retention.ms").await.as_deref(),
        Some("86400000")
    );
    assert_eq!(partitions(bs, &b), Some(2), "the target's override");
    assert_eq!(
        cleanup_policy(bs, &b).await.as_deref(),
        Some("compact"),
        "configs merge key by key"
    );
    assert_eq!(
        topic_config(bs, &b, "retention.ms").await.as_deref(),
        Some("3600000")
    );
    assert_eq!(
        partitions(bs, &existing),
        Some(1),
        "an existing topic is left alone"
    );
    assert_eq!(
        cleanup_policy(bs, &existing).await.as_deref(),
        Some("delete")
    );
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());

    // Settings the broker refuses stop the engine naming the topic and them.
    let (name, prefix) = (unique("create"), unique("create"));
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: a").spec(|s| {
        s.kafka.topic_defaults = creation(None, &[("cleanup.policy", "sometimes")]);
    });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    let (code, log) = engine.wait_exit(LONG);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "cannot create topic {prefix}.public.a with cleanup.policy=sometimes"
        )),
        "{log}"
    );
}

/// A compacted data topic (made so through `topicDefaults`, with small
/// segments so the broker compacts soon) ends, for a deleted key, in its
/// tombstone alone, and for an updated key in its last row alone.
#[tokio::test(flavor = "multi_thread")]
async fn once_compacted_a_deleted_key_leaves_only_its_tombstone() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let broker = Broker::noida();
    let (name, prefix) = (unique("compacts"), unique("compacts"));
    let topic = format!("{prefix}.public.t");
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: t").spec(|s| {
        s.kafka.topic_defaults = creation(
            Some(1),
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1024"),
                ("min.compaction.lag.ms", "0"),
            ],
        );
    });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    db.exec(
        "INSERT INTO t VALUES (1, 'a'), (2, 'b');
         UPDATE t SET v = 'b2' WHERE id = 2;
         UPDATE t SET v = 'b3' WHERE id = 2;
         DELETE FROM t WHERE id = 1;",
    )
    .await;
    let slot = format!("{name}_slot");
    db.wait_confirmed_all(&slot, LONG).await;
    // Later rows, each delivered on its own (its own batch), roll the
    // segment holding the first ones, so the broker compacts it.
    for id in 3..=6 {
        db.exec(&format!("INSERT INTO t VALUES ({id}, 'later')"))
            .await;
        db.wait_confirmed_all(&slot, LONG).await;
    }
    let records = read_to_end(&broker.bootstrap, &topic);
    let of = |key: &str| -> Vec<_> {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .collect()
    };
    let one = of(r#"{"id":1}"#);
    assert!(
        one.len() == 1 && one[0].raw.is_none(),
        "the deleted key's tombstone alone: {one:#?}"
    );
    let two = of(r#"{"id":2}"#);
    assert_eq!(two.len(), 1, "{two:#?}");
    assert_eq!(two[0].value["after"]["v"], "b3");
    assert!(
        records.len() < 2 + 38 + 5,
        "the topic was compacted: {} records",
        records.len()
    );
    assert_eq!(
        records.iter().filter(|r| r.key.is_some()).count(),
        records.len()
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
