//! Heartbeats (`spec.kafka.heartbeat`): on an idle connector, records on
//! `__debezium-heartbeat.<topicPrefix>` in Debezium's shapes, and the action
//! query run on the source database each time (its rows stream like any
//! other). A statement PostgreSQL refuses stops the engine at start-up,
//! naming the field. Real PostgreSQL, real broker.

use std::time::Duration;

use pgkafka_crds::HeartbeatSpec;
use pgkafka_tests::{consume, unique, Broker, Engine, Manifest, Postgres};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

fn heartbeat(action_query: Option<&str>) -> HeartbeatSpec {
    HeartbeatSpec {
        interval_seconds: 1,
        topic: None,
        action_query: action_query.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connector_beats_and_runs_its_action_query() {
    let db = Postgres::shared().fresh_database().await;
    db.exec(
        "CREATE TABLE idle (id int PRIMARY KEY);
         CREATE TABLE cdc_heartbeat (id int PRIMARY KEY, beats int NOT NULL)",
    )
    .await;
    let broker = Broker::start();
    let (name, prefix) = (unique("beat"), unique("beat"));
    let action = "INSERT INTO cdc_heartbeat VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET beats = cdc_heartbeat.beats + 1";
    let m = Manifest::new(
        &name,
        &db,
        &broker.bootstrap,
        &prefix,
        "    - table: idle\n    - table: cdc_heartbeat",
    )
    .spec(|s| s.kafka.heartbeat = Some(heartbeat(Some(action))));
    let started = now_ms();
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    let topic = format!("__debezium-heartbeat.{prefix}");
    let beats = consume(&broker.bootstrap, &topic, 3, LONG);
    assert!(beats.len() >= 3, "{}", engine.log_text());
    let mut last = started;
    for b in &beats {
        assert_eq!(
            b.key.as_deref(),
            Some(format!(r#"{{"serverName":"{prefix}"}}"#).as_str())
        );
        let ts = b.value["ts_ms"].as_i64().expect("ts_ms");
        assert_eq!(b.value.as_object().map(|o| o.len()), Some(1), "{:?}", b.raw);
        assert!(ts >= last && ts <= now_ms(), "{ts} after {last}");
        last = ts;
    }
    // The action query's writes stream like any other change.
    let changes = consume(
        &broker.bootstrap,
        &format!("{prefix}.public.cdc_heartbeat"),
        2,
        LONG,
    );
    assert_eq!(
        changes.first().map(|c| c.value["op"].clone()),
        Some("c".into())
    );
    assert_eq!(
        changes.get(1).map(|c| c.value["op"].clone()),
        Some("u".into())
    );
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_carry_connect_schemas_in_the_schema_form() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE idle (id int PRIMARY KEY)").await;
    let broker = Broker::start();
    let (name, prefix) = (unique("beats"), unique("beats"));
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: idle").spec(|s| {
        s.kafka.schemas = true;
        s.kafka.heartbeat = Some(HeartbeatSpec {
            topic: Some(format!("{prefix}.beats")),
            ..heartbeat(None)
        });
    });
    let mut engine = Engine::start(ENGINE, &m.yaml());
    engine.wait_streaming();
    let beats = consume(&broker.bootstrap, &format!("{prefix}.beats"), 1, LONG);
    let beat = beats.first().expect("a heartbeat");
    assert_eq!(
        beat.value["schema"]["name"],
        "io.debezium.connector.common.Heartbeat"
    );
    assert_eq!(beat.value["schema"]["fields"][0]["field"], "ts_ms");
    assert!(beat.value["payload"]["ts_ms"].is_i64());
    let key: serde_json::Value =
        serde_json::from_str(beat.key.as_deref().expect("key")).expect("key JSON");
    assert_eq!(
        key["schema"]["name"],
        "io.debezium.connector.common.ServerNameKey"
    );
    assert_eq!(key["payload"]["serverName"], prefix.as_str());
    assert_eq!(engine.stop(), Some(0), "{}", engine.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_query_postgresql_refuses_stops_the_engine_naming_the_field() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE idle (id int PRIMARY KEY)").await;
    let broker = Broker::start();
    let (name, prefix) = (unique("beatbad"), unique("beatbad"));
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, "    - table: idle")
        .spec(|s| s.kafka.heartbeat = Some(heartbeat(Some("UPDATE nowhere SET x = 1"))));
    let mut engine = Engine::start(ENGINE, &m.yaml());
    let (code, log) = engine.wait_exit(LONG);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("spec.kafka.heartbeat.actionQuery: PostgreSQL refuses")
            && log.contains("nowhere")
            && log.contains("does not exist"),
        "{log}"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
