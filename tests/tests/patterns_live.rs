//! Pattern listeners while the stream runs, on a real PostgreSQL and
//! Tansu: a table created mid-stream and written at once (every row
//! arrives: the snapshot brings those written before the table joined the
//! publication, the stream the rest), a dropped table leaving the
//! publication and the status, and a matched table that does not fit its
//! listener skipped with the reason while the others go on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgkafka_tests::{consume, read_to_end, unique, Broker, Consumed, Engine, Manifest, Postgres};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

/// Each id's last value, applying the records in order (`None`: deleted).
fn final_state(records: &[Consumed]) -> BTreeMap<i64, Option<String>> {
    let mut state = BTreeMap::new();
    for r in records.iter().filter(|r| !r.value.is_null()) {
        let v = &r.value;
        let image = if v["op"] == "d" {
            &v["before"]
        } else {
            &v["after"]
        };
        let Some(id) = image["id"].as_i64() else {
            continue;
        };
        let value = (v["op"] != "d").then(|| image["v"].as_str().unwrap_or_default().to_owned());
        state.insert(id, value);
    }
    state
}

/// Waits until `/status` satisfies `ok`.
fn wait_status(
    engine: &Engine,
    what: &str,
    ok: impl Fn(&pgkafka_crds::report::EngineStatus) -> bool,
) -> pgkafka_crds::report::EngineStatus {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(s) = engine.status().filter(|s| ok(s)) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}\n{}",
            engine.status(),
            engine.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_created_mid_stream_is_captured_from_its_first_row_and_let_go_when_dropped() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE public.a (id int PRIMARY KEY, v text)")
        .await;
    let (name, prefix) = (unique("live"), unique("live"));
    let listeners = r#"    - tables: {include: ['public\..*']}"#;
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, listeners)
        .snapshots(100)
        .spec(|s| s.publication.refresh_interval_seconds = 1)
        .yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    let publication = format!("{name}_pub");
    assert_eq!(db.published_tables(&publication).await, ["public.a"]);

    // Created and written in one go, then written on while the engine
    // finds it, adds it to the publication and snapshots it.
    db.exec(
        "CREATE TABLE public.n (id int PRIMARY KEY, v text);
         INSERT INTO public.n SELECT i, 'first' FROM generate_series(1, 50) i;",
    )
    .await;
    let writer = {
        let client = Postgres::shared().connect(&db.name).await;
        tokio::spawn(async move {
            for i in 51..=250 {
                client
                    .execute("INSERT INTO public.n VALUES ($1, 'later')", &[&i])
                    .await
                    .expect("insert");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    wait_status(&engine, "public.n listened to", |s| {
        s.tables.names.iter().any(|t| t == "public.n")
    });
    writer.await.expect("writer");
    db.exec("UPDATE public.n SET v = 'changed' WHERE id = 1; DELETE FROM public.n WHERE id = 2;")
        .await;
    let snapshot = wait_status(&engine, "public.n snapshotted", |s| {
        s.snapshot
            .tables
            .iter()
            .any(|t| t.table == "public.n" && t.state == pgkafka_crds::report::SnapshotState::Done)
    });
    let entry = snapshot
        .snapshot
        .tables
        .iter()
        .find(|t| t.table == "public.n");
    assert!(
        entry
            .and_then(|t| t.reason.as_deref())
            .is_some_and(|r| r.contains("pattern")),
        "{entry:?}"
    );
    assert_eq!(snapshot.tables.count, 2, "{:?}", snapshot.tables);
    assert_eq!(
        db.published_tables(&publication).await,
        ["public.a", "public.n"]
    );
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;

    let topic = format!("{prefix}.public.n");
    let records = read_to_end(&broker.bootstrap, &topic);
    let state = final_state(&records);
    let expected: BTreeMap<i64, Option<String>> = (1..=250)
        .map(|i| {
            let v = match i {
                1 => Some("changed"),
                2 => None,
                3..=50 => Some("first"),
                _ => Some("later"),
            };
            (i, v.map(str::to_owned))
        })
        .collect();
    assert_eq!(state.len(), expected.len(), "ids captured");
    assert_eq!(state, expected);
    // Rows written before the table was published came through its
    // snapshot; the update after it through the stream, after the snapshot.
    let ops_of = |id: i64| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.value["after"]["id"] == id || r.value["before"]["id"] == id)
            .map(|r| r.value["op"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for id in 3..=50 {
        assert!(
            ops_of(id).contains(&"r".to_owned()),
            "id {id}: {:?}",
            ops_of(id)
        );
    }
    assert_eq!(
        ops_of(1).last().map(String::as_str),
        Some("u"),
        "{:?}",
        ops_of(1)
    );
    assert_eq!(
        ops_of(1).first().map(String::as_str),
        Some("r"),
        "{:?}",
        ops_of(1)
    );

    db.exec("DROP TABLE public.n").await;
    let after = wait_status(&engine, "public.n let go", |s| {
        s.tables.count == 1 && !s.snapshot.tables.iter().any(|t| t.table == "public.n")
    });
    assert_eq!(after.tables.names, ["public.a"]);
    assert_eq!(db.published_tables(&publication).await, ["public.a"]);
    // The stream goes on for the table that stayed.
    db.exec("INSERT INTO public.a VALUES (7, 'still')").await;
    let a = consume(&broker.bootstrap, &format!("{prefix}.public.a"), 1, LONG);
    assert_eq!(
        a.last().map(|r| r.value["after"]["id"].clone()),
        Some(7.into())
    );
    assert_eq!(engine.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_matched_table_lacking_a_filter_column_is_skipped_with_the_reason() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE public.a (id int PRIMARY KEY, status text)")
        .await;
    let (name, prefix) = (unique("lives"), unique("lives"));
    let listeners = r#"    - tables: {include: ['public\..*']}
      targets:
        - filter: {conditions: [{field: new.status, operator: '==', value: paid}]}"#;
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, listeners)
        .spec(|s| s.publication.refresh_interval_seconds = 1)
        .yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    db.exec(
        "CREATE TABLE public.nostatus (id int PRIMARY KEY);
         CREATE TABLE public.b (id int PRIMARY KEY, status text);",
    )
    .await;
    let status = wait_status(&engine, "public.b captured, public.nostatus skipped", |s| {
        s.tables.names.iter().any(|t| t == "public.b") && !s.tables.skipped.is_empty()
    });
    let skipped = &status.tables.skipped;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].table, "public.nostatus");
    assert!(
        skipped[0]
            .reason
            .contains(r#"spec.listeners[0] (table "public"."nostatus")"#)
            && skipped[0].reason.contains("status"),
        "{skipped:?}"
    );
    assert!(status.streaming);
    assert_eq!(
        db.published_tables(&format!("{name}_pub")).await,
        ["public.a", "public.b"]
    );
    db.exec("INSERT INTO public.b VALUES (1, 'paid'), (2, 'open')")
        .await;
    let b = consume(&broker.bootstrap, &format!("{prefix}.public.b"), 1, LONG);
    assert_eq!(b.len(), 1, "only the paid row passes: {b:?}");
    assert_eq!(b[0].value["after"]["id"], 1);
    assert_eq!(engine.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_schema_is_published_whole_and_a_new_table_streams_from_its_first_row() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE SCHEMA fresh; CREATE TABLE fresh.a (id int PRIMARY KEY, v text)")
        .await;
    let (name, prefix) = (unique("whole"), unique("whole"));
    // No snapshot, and no look at the catalog before an hour: only the
    // stream can bring the new table's rows.
    let m = Manifest::new(
        &name,
        &db,
        &broker.bootstrap,
        &prefix,
        "    - tables: {schemas: [fresh]}",
    )
    .spec(|s| s.publication.refresh_interval_seconds = 3600)
    .yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();
    let schemas = db
        .client
        .query(
            "SELECT n.nspname::text FROM pg_publication_namespace pn
               JOIN pg_publication p ON p.oid = pn.pnpubid
               JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE p.pubname = $1",
            &[&format!("{name}_pub")],
        )
        .await
        .expect("publication schemas");
    let schemas: Vec<String> = schemas.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        schemas,
        ["fresh"],
        "FOR TABLES IN SCHEMA (the tests log in as a superuser)"
    );
    db.exec(
        "CREATE TABLE fresh.n (id int PRIMARY KEY, v text);
         INSERT INTO fresh.n SELECT i, 'first' FROM generate_series(1, 50) i;",
    )
    .await;
    db.exec("INSERT INTO fresh.n SELECT i, 'then' FROM generate_series(51, 100) i")
        .await;
    let records = consume(&broker.bootstrap, &format!("{prefix}.fresh.n"), 100, LONG);
    let mut ids: Vec<i64> = records
        .iter()
        .filter(|r| r.value["op"] == "c")
        .filter_map(|r| r.value["after"]["id"].as_i64())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=100).collect::<Vec<_>>(),
        "every row, as a change (partitions read one after the other)"
    );
    let status = engine.status().expect("status");
    assert!(
        status.tables.names.iter().any(|t| t == "fresh.n"),
        "{:?}",
        status.tables
    );
    assert_eq!(engine.stop(), Some(0));
}
