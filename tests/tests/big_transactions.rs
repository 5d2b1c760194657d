//! A whole-transaction group bigger than the engine's memory budget (8 MiB):
//! its changes spill to disk and come back as numbered parts, complete and
//! in order, under either delivery guarantee.

use std::time::Duration;

use pgkafka_crds::DeliveryGuarantee;
use pgkafka_tests::{read_to_end, unique, Broker, Engine, Manifest, Postgres};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(120);
const ROWS: i64 = 40_000;

async fn over_budget(guarantee: DeliveryGuarantee) {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE big (id bigint PRIMARY KEY, note text)")
        .await;
    let (name, prefix) = (unique("big"), unique("big"));
    let topic = format!("{prefix}.tx");
    let m = Manifest::new(
        &name,
        &db,
        &broker.bootstrap,
        &prefix,
        &format!("    - table: big\n      targets: [{{topic: {topic}, sendAsTransaction: true}}]"),
    )
    .delivery(guarantee)
    .yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    // About 400 bytes of envelope per row: 16 MB in one transaction.
    db.exec(&format!(
        "INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, {ROWS}) g"
    ))
    .await;
    let slot = format!("{name}_slot");
    db.wait_confirmed_all(&slot, LONG).await;
    let records = read_to_end(&broker.bootstrap, &topic);
    let parts = records.len();
    assert!(parts > 10, "{parts} parts of at most 1 MB for 16 MB");
    let mut ids = Vec::new();
    let mut numbers = Vec::new();
    for r in &records {
        assert_eq!(r.value["parts"], parts as u64, "every part knows the count");
        numbers.push(r.value["part"].as_u64().unwrap_or(0));
        for change in r.value["changes"].as_array().expect("changes") {
            ids.push(change["after"]["id"].as_i64().unwrap_or(0));
        }
    }
    assert_eq!(numbers, (1..=parts as u64).collect::<Vec<_>>());
    assert_eq!(
        ids,
        (1..=ROWS).collect::<Vec<_>>(),
        "every change, in order"
    );
    let metrics = engine.http_get("/metrics").map(|r| r.1).unwrap_or_default();
    let spilled: u64 = metrics
        .lines()
        .find(|l| l.starts_with("pgkafka_group_spilled_bytes_total"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0);
    assert!(spilled > 8 << 20, "spilled {spilled} bytes:\n{metrics}");
    assert_eq!(engine.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_over_the_memory_budget_spills_and_arrives_whole() {
    over_budget(DeliveryGuarantee::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_in_one_kafka_transaction() {
    over_budget(DeliveryGuarantee::ExactlyOnce).await;
}
