//! Records over `spec.kafka.maxRecordBytes`: with `spec.errors.tolerance:
//! none` the engine halts before sending anything of the transaction, the
//! slot before it; with `all` the record goes to the dead-letter topic
//! (original key, a value and `__connect.errors.*` headers saying what and
//! why), the next rows arrive and the slot moves past, also under
//! exactly-once. Real PostgreSQL, real broker.

use std::time::Duration;

use pgkafka_crds::{DeadLetterQueueSpec, DeliveryGuarantee, ErrorsSpec, TargetSpec, Tolerance};
use pgkafka_tests::{
    distinct_ids, read_to_end, unique, Broker, Engine, Manifest, Postgres, TestDb,
};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

struct Run {
    db: TestDb,
    broker: Broker,
    engine: Engine,
    slot: String,
    topic: String,
    dlq: String,
}

/// Where the error policy is written.
#[derive(Clone, Copy)]
enum Policy {
    /// `spec.errors`.
    Connector,
    /// `spec.listeners[0].targets[0].errors`, `spec.errors` left as it is.
    Target,
}

/// Rows 1 and 3 small, row 2 of 5,000 bytes, each its own transaction,
/// with a limit of 2,000 bytes.
async fn big_row_between_small_ones(
    errors: ErrorsSpec,
    guarantee: DeliveryGuarantee,
    policy: Policy,
) -> Run {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE big (id int PRIMARY KEY, body text)")
        .await;
    let broker = Broker::start();
    let (name, prefix) = (unique("dlq"), unique("dlq"));
    let dlq = format!("{prefix}.dead-letters");
    let errors = to_topic(errors, &dlq);
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: big")
        .delivery(guarantee)
        .spec(|s| {
            s.kafka.max_record_bytes = Some(2000);
            match policy {
                Policy::Connector => s.errors = errors,
                Policy::Target => {
                    s.listeners[0].targets = vec![TargetSpec {
                        errors: Some(errors),
                        ..TargetSpec::default()
                    }]
                }
            }
        });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    // Row 1 is delivered before the others come: a halt does not wait for
    // what is still in flight (the slot keeps it for the restart).
    db.exec("INSERT INTO big VALUES (1, 'small')").await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    db.exec(
        "INSERT INTO big VALUES (2, repeat('x', 5000));
         INSERT INTO big VALUES (3, 'small');",
    )
    .await;
    Run {
        db,
        broker,
        engine,
        slot: format!("{name}_slot"),
        topic: format!("{prefix}.public.big"),
        dlq,
    }
}

/// `errors` with its dead-letter queue (if any) on `topic`.
fn to_topic(errors: ErrorsSpec, topic: &str) -> ErrorsSpec {
    ErrorsSpec {
        dead_letter_queue: errors.dead_letter_queue.map(|d| DeadLetterQueueSpec {
            topic: topic.to_owned(),
            ..d
        }),
        ..errors
    }
}

fn dead_letters() -> ErrorsSpec {
    ErrorsSpec {
        tolerance: Tolerance::All,
        dead_letter_queue: Some(DeadLetterQueueSpec {
            topic: String::new(),
            context_headers: true,
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_record_halts_before_anything_of_its_transaction_is_sent() {
    let r = big_row_between_small_ones(
        ErrorsSpec::default(),
        DeliveryGuarantee::AtLeastOnce,
        Policy::Connector,
    )
    .await;
    let halted = r.engine.wait_halted(LONG);
    assert!(
        halted.contains("a record of")
            && halted.contains("larger than spec.kafka.maxRecordBytes (2000)")
            && halted.contains("spec.listeners[0].targets[0]"),
        "{halted}"
    );
    let ids = distinct_ids(&read_to_end(&r.broker.bootstrap, &r.topic));
    assert_eq!(ids, [1], "nothing past the oversized row");
    let confirmed = r.db.confirmed_flush(&r.slot).await;
    assert!(
        confirmed < r.db.current_wal().await,
        "the slot stays before it"
    );
}

async fn dead_lettered(guarantee: DeliveryGuarantee, policy: Policy) -> Run {
    let r = big_row_between_small_ones(dead_letters(), guarantee, policy).await;
    r.db.wait_confirmed_all(&r.slot, LONG).await;
    let ids = distinct_ids(&read_to_end(&r.broker.bootstrap, &r.topic));
    assert_eq!(ids, [1, 3], "{}", r.engine.log_text());
    let dead = read_to_end(&r.broker.bootstrap, &r.dlq);
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let d = &dead[0];
    assert_eq!(d.key.as_deref(), Some(r#"{"id":2}"#));
    assert_eq!(d.value["reason"], "RecordTooLarge");
    assert_eq!(d.value["topic"], r.topic.as_str());
    assert_eq!(d.value["table"], "public.big");
    assert_eq!(d.value["limit"], 2000);
    assert!(d.value["valueBytes"].as_u64().unwrap_or(0) > 5000);
    let header = |n: &str| {
        d.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("__connect.errors.topic"), Some(r.topic.clone()));
    assert_eq!(
        header("__connect.errors.stage").as_deref(),
        Some("KAFKA_PRODUCE")
    );
    let metrics = r
        .engine
        .http_get("/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pgkafka_records_dead_lettered_total") && l.ends_with(" 1")),
        "{metrics}"
    );
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tolerance_all_it_is_dead_lettered_and_the_stream_goes_on() {
    let mut r = dead_lettered(DeliveryGuarantee::AtLeastOnce, Policy::Connector).await;
    // The count survives a kill: the operator's Degraded must not clear by itself.
    r.engine.kill9();
    r.engine.restart(ENGINE);
    r.engine.wait_streaming();
    let counted = r.engine.status().map(|s| s.counters.dead_lettered);
    assert_eq!(counted, Some(1), "{}", r.engine.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_s_own_policy_overrides_the_connector_s() {
    dead_lettered(DeliveryGuarantee::AtLeastOnce, Policy::Target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dead_letter_is_in_the_kafka_transaction_under_exactly_once() {
    dead_lettered(DeliveryGuarantee::ExactlyOnce, Policy::Connector).await;
}

/// Records the topic itself would refuse, on noida-db, which enforces a
/// topic's `max.message.bytes` and refuses records without a key on a
/// compacted topic (refusing the whole batch they are in): the engine
/// checks both before sending, so only the guilty record is dead-lettered
/// and its neighbours arrive.
async fn topic_refusals(errors: ErrorsSpec) -> (Run, String) {
    let db = Postgres::shared().fresh_database().await;
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, body text);
         CREATE TABLE nokey (note text);",
    )
    .await;
    let broker = Broker::noida();
    let (name, prefix) = (unique("dlq"), unique("dlq"));
    let dlq = format!("{prefix}.dead-letters");
    let errors = to_topic(errors, &dlq);
    let listeners = r#"    - table: big
      targets: [{topicCreation: {configs: {max.message.bytes: "2000"}}}]
    - table: nokey
      targets: [{topicCreation: {configs: {cleanup.policy: compact}}}]
"#;
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, listeners)
        .spec(|s| s.errors = errors);
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    db.exec("INSERT INTO big VALUES (1, 'small')").await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    db.exec(
        "BEGIN;
         INSERT INTO big VALUES (2, repeat('x', 3000));
         INSERT INTO big VALUES (3, 'small');
         INSERT INTO nokey VALUES ('no key here');
         COMMIT;
         INSERT INTO big VALUES (4, 'small');",
    )
    .await;
    let nokey_topic = format!("{prefix}.public.nokey");
    let run = Run {
        db,
        broker,
        engine,
        slot: format!("{name}_slot"),
        topic: format!("{prefix}.public.big"),
        dlq,
    };
    (run, nokey_topic)
}

#[tokio::test(flavor = "multi_thread")]
async fn records_the_topic_would_refuse_are_dead_lettered_alone() {
    let (r, nokey_topic) = topic_refusals(dead_letters()).await;
    r.db.wait_confirmed_all(&r.slot, LONG).await;
    let ids = distinct_ids(&read_to_end(&r.broker.bootstrap, &r.topic));
    assert_eq!(ids, [1, 3, 4], "{}", r.engine.log_text());
    assert!(read_to_end(&r.broker.bootstrap, &nokey_topic).is_empty());
    let dead = read_to_end(&r.broker.bootstrap, &r.dlq);
    assert_eq!(dead.len(), 2, "{dead:#?}");
    let too_large = &dead[0];
    assert_eq!(too_large.key.as_deref(), Some(r#"{"id":2}"#));
    assert_eq!(too_large.value["reason"], "RecordTooLarge");
    assert!(
        too_large.value["message"]
            .as_str()
            .is_some_and(|m| m.contains("max.message.bytes (2000)")),
        "{:?}",
        too_large.value
    );
    assert_eq!(
        too_large.value["value"]["after"]["body"]
            .as_str()
            .map(str::len),
        Some(3000),
        "the original value, as it fits the engine's own limit"
    );
    let keyless = &dead[1];
    assert_eq!(keyless.key, None);
    assert_eq!(keyless.value["reason"], "KeylessRecordOnCompactedTopic");
    assert_eq!(keyless.value["topic"], nokey_topic.as_str());
    assert_eq!(keyless.value["value"]["after"]["note"], "no key here");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_over_the_topic_s_limit_halts_under_tolerance_none() {
    let (r, _) = topic_refusals(ErrorsSpec::default()).await;
    let halted = r.engine.wait_halted(LONG);
    assert!(
        halted.contains("does not fit the topic's max.message.bytes (2000)"),
        "{halted}"
    );
    let ids = distinct_ids(&read_to_end(&r.broker.bootstrap, &r.topic));
    assert_eq!(ids, [1], "nothing of its transaction");
}

/// A dead letter its own topic refuses halts: nowhere else to put it. Every
/// topic is compacted here, so a row without a key can go neither to its
/// topic nor, keyless too, as a dead letter (noida-db refuses it).
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_its_topic_refuses_halts() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE nokey (note text)").await;
    let broker = Broker::noida();
    let (name, prefix) = (unique("dlq"), unique("dlq"));
    let dlq = format!("{prefix}.dead-letters");
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: nokey").spec(|s| {
        s.errors = to_topic(dead_letters(), &dlq);
        s.kafka
            .topic_defaults
            .configs
            .insert("cleanup.policy".into(), "compact".into());
    });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    db.exec("INSERT INTO nokey VALUES ('no key here')").await;
    let halted = engine.wait_halted(LONG);
    assert!(
        halted.contains(&format!("kafka refuses records for topic {dlq}")),
        "{halted}"
    );
    assert!(
        db.confirmed_flush(&format!("{name}_slot")).await < db.current_wal().await,
        "the slot stays before the row"
    );
}
