//! A partitioned table listed as a listener: its partitions' rows arrive as
//! the parent's, whether the publication publishes via the partition root
//! (the managed one does) or names the leaves (an existing one without the
//! option), including a partition attached while the engine streams.

use std::time::Duration;

use pgkafka_tests::{read_to_end, unique, Broker, Engine, Manifest, Postgres, TestDb};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

async fn create_partitioned(db: &TestDb) {
    db.exec(
        "CREATE TABLE events (id int, region text, note text, PRIMARY KEY (id, region))
           PARTITION BY LIST (region);
         CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
         CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');",
    )
    .await;
}

/// Writes to both partitions, attaches a third (its columns in another
/// order) and writes to it; returns once the slot confirmed it all.
async fn write_and_attach(db: &TestDb, slot: &str) {
    db.exec(
        "INSERT INTO events VALUES (1, 'eu', 'a'), (2, 'us', 'b');
         UPDATE events SET note = 'moved' WHERE id = 1;
         CREATE TABLE events_ap (note text, region text NOT NULL, id int NOT NULL);
         ALTER TABLE events ATTACH PARTITION events_ap FOR VALUES IN ('ap');
         INSERT INTO events VALUES (3, 'ap', 'late');
         DELETE FROM events WHERE id = 2;",
    )
    .await;
    db.wait_confirmed_all(slot, LONG).await;
}

async fn run_case(via_root: Option<bool>) {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    create_partitioned(&db).await;
    let (name, prefix) = (unique("part"), unique("part"));
    let mut m = Manifest::new(
        &name,
        &db,
        &broker.bootstrap,
        &prefix,
        "    - table: events",
    );
    if let Some(via_root) = via_root {
        // An existing publication the connector does not manage.
        db.exec(&format!(
            "CREATE PUBLICATION {name}_pub FOR TABLE events WITH (publish_via_partition_root = {via_root})"
        ))
        .await;
        m = m.existing_publication();
    }
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    write_and_attach(&db, &format!("{name}_slot")).await;
    let records = read_to_end(&broker.bootstrap, &format!("{prefix}.public.events"));
    let mut seen: Vec<(String, String, String)> = records
        .iter()
        .filter(|r| r.raw.is_some())
        .map(|r| {
            let row = if r.value["op"] == "d" {
                &r.value["before"]
            } else {
                &r.value["after"]
            };
            (
                r.value["op"].as_str().unwrap_or("?").to_owned(),
                r.value["source"]["table"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                format!("{}/{}", row["id"], row["region"].as_str().unwrap_or("?")),
            )
        })
        .collect();
    seen.sort();
    let expect = |op: &str, row: &str| (op.to_owned(), "events".to_owned(), row.to_owned());
    assert_eq!(
        seen,
        [
            expect("c", "1/eu"),
            expect("c", "2/us"),
            expect("c", "3/ap"),
            expect("d", "2/us"),
            expect("u", "1/eu"),
        ],
        "{via_root:?}: {}",
        engine.log_text()
    );
    let keys: Vec<&str> = records.iter().filter_map(|r| r.key.as_deref()).collect();
    assert!(keys.contains(&r#"{"id":3,"region":"ap"}"#), "{keys:?}");
    assert_eq!(engine.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_publication_publishes_partitions_as_their_root() {
    run_case(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leaves_of_an_existing_publication_reach_the_roots_listener() {
    run_case(Some(false)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_publication_via_the_root_works_as_it_is() {
    run_case(Some(true)).await;
}
