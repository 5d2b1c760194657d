//! Exactly-once: a crash after Kafka committed but before the slot was told
//! resends nothing, because the restart resumes after Kafka's checkpoint.
//! The same crash under at-least-once resends: the check can fail. A broker
//! that hangs mid-transaction past `transaction.timeout.ms` makes the engine
//! drop that producer and resume from the last committed checkpoint with a
//! new one: a `read_committed` reader sees every change once.

use std::time::Duration;

use pgkafka_crds::DeliveryGuarantee;
use pgkafka_tests::{
    consume, distinct_ids, read_to_end, unique, Broker, Engine, Manifest, Postgres, TestDb,
};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(90);

/// Runs the crash scenario; returns (records in Kafka, distinct ids).
async fn crash_between_kafka_commit_and_slot(
    db: &TestDb,
    guarantee: DeliveryGuarantee,
    broker: Broker,
) -> (usize, usize, String) {
    let name = unique("eos");
    let prefix = unique("e");
    let topic = format!("{prefix}.public.items");
    let m = Manifest::new(&name, db, &broker.bootstrap, &prefix, "    - table: items")
        .delivery(guarantee)
        .yaml();
    // The slot hears of progress only every minute: a crash leaves it behind Kafka.
    let mut engine = Engine::start_with_args(ENGINE, &m, &["--status-interval-ms", "60000"]);
    engine.wait_streaming();
    for batch in 0..5 {
        let from = batch * 100 + 1;
        db.exec(&format!(
            "INSERT INTO items SELECT g FROM generate_series({from}, {}) g",
            from + 99
        ))
        .await;
    }
    assert_eq!(
        consume(&broker.bootstrap, &topic, 500, LONG).len(),
        500,
        "{}",
        engine.log_text()
    );
    let slot = format!("{name}_slot");
    let confirmed = db.confirmed_flush(&slot).await;
    engine.kill9();
    assert!(
        confirmed < db.current_wal().await,
        "the slot must lag behind Kafka for this test"
    );

    engine.args.clear();
    engine.restart(ENGINE);
    engine.wait_streaming();
    db.exec("INSERT INTO items SELECT g FROM generate_series(501, 600) g")
        .await;
    db.wait_confirmed_all(&slot, LONG).await;
    let records = read_to_end(&broker.bootstrap, &topic);
    let ids = distinct_ids(&records);
    assert_eq!(ids, (1..=600).collect::<Vec<_>>(), "nothing lost");
    assert_eq!(engine.stop(), Some(0));
    (records.len(), ids.len(), engine.log_text())
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_resends_nothing_after_a_crash() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE items (id bigint PRIMARY KEY)").await;
    let (records, distinct, log) =
        crash_between_kafka_commit_and_slot(&db, DeliveryGuarantee::ExactlyOnce, Broker::start())
            .await;
    assert_eq!(records, distinct, "a change was sent twice:\n{log}");
    assert!(
        log.contains("resuming after the last transaction Kafka committed"),
        "{log}"
    );

    // Control: the same crash under at-least-once sends the first rows again.
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE items (id bigint PRIMARY KEY)").await;
    let (records, distinct, _) =
        crash_between_kafka_commit_and_slot(&db, DeliveryGuarantee::AtLeastOnce, Broker::start())
            .await;
    assert!(
        records > distinct,
        "at-least-once should have resent after the crash"
    );
}

/// On a broker with real transaction semantics (noida-db hides aborted
/// records from `read_committed` readers, as Kafka does), a reader sees
/// every change exactly once; the at-least-once control still resends.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_committed_reader_sees_no_duplicate_on_a_transactional_broker() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE items (id bigint PRIMARY KEY)").await;
    let (records, distinct, log) =
        crash_between_kafka_commit_and_slot(&db, DeliveryGuarantee::ExactlyOnce, Broker::noida())
            .await;
    assert_eq!(
        records, distinct,
        "a duplicate for a read_committed reader:\n{log}"
    );
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE items (id bigint PRIMARY KEY)").await;
    let (records, distinct, _) =
        crash_between_kafka_commit_and_slot(&db, DeliveryGuarantee::AtLeastOnce, Broker::noida())
            .await;
    assert!(
        records > distinct,
        "at-least-once should have resent after the crash"
    );
}

/// The broker hangs (SIGSTOP) while a Kafka transaction is open, longer
/// than `transaction.timeout.ms`: the timed-out produce fails the session,
/// the producer is dropped, never retried (KAFKA-18579), and a new one
/// (a new epoch, fencing the old) resumes from the last checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_hung_past_the_transaction_timeout_costs_no_duplicate_and_no_loss() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE items (id bigint PRIMARY KEY)").await;
    let broker = Broker::noida();
    let (name, prefix) = (unique("hung"), unique("hung"));
    let topic = format!("{prefix}.public.items");
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: items")
        .delivery(DeliveryGuarantee::ExactlyOnce)
        .kafka_property("transaction.timeout.ms", "4000")
        .kafka_property("message.timeout.ms", "4000")
        .yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    db.exec("INSERT INTO items SELECT g FROM generate_series(1, 100) g")
        .await;
    assert_eq!(consume(&broker.bootstrap, &topic, 100, LONG).len(), 100);

    broker.pause();
    db.exec("INSERT INTO items SELECT g FROM generate_series(101, 200) g")
        .await;
    std::thread::sleep(Duration::from_secs(9));
    broker.resume();
    db.exec("INSERT INTO items SELECT g FROM generate_series(201, 300) g")
        .await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    let log = engine.log_text();
    assert!(log.contains("session failed; restarting"), "{log}");
    let records = read_to_end(&broker.bootstrap, &topic);
    let ids = distinct_ids(&records);
    assert_eq!(ids, (1..=300).collect::<Vec<_>>(), "nothing lost:\n{log}");
    assert_eq!(records.len(), ids.len(), "a duplicate:\n{log}");
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());
}
