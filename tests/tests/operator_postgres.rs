//! The operator's PostgreSQL side against a real server: exactly the
//! publication and slot asked for, the publication following the listeners,
//! the slot's state as PostgreSQL reports it, drops, and hostile names.

use pgkafka_connector::credentials::Secret;
use pgkafka_crds::PgKafkaConnector;
use pgkafka_operator::postgres::{Credentials, Database, Dropped, Postgres};
use pgkafka_tests::{unique, Postgres as TestCluster, PG_PASSWORD};

fn connector(db: &pgkafka_tests::TestDb, name: &str, tables: &str) -> PgKafkaConnector {
    let yaml = format!(
        "apiVersion: pgkafka.io/v1alpha1\nkind: PgKafkaConnector\nmetadata: {{name: {name}, namespace: test}}\nspec:
  postgres: {{host: 127.0.0.1, port: {port}, database: {db}, user: postgres, sslMode: disable}}
  publication: {{name: {name}_pub}}
  slot: {{name: {name}_slot}}
  reclaimPolicy: Delete
  kafka: {{bootstrapServers: [\"k:9092\"], topicPrefix: x}}
  listeners: [{tables}]\n",
        port = db.port,
        db = db.name,
    );
    serde_yaml::from_str(&yaml).expect("connector parses")
}

fn creds() -> Credentials {
    Credentials {
        user: "postgres".into(),
        password: Secret::new(PG_PASSWORD),
        ca_pem: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn provisions_exactly_what_is_asked_alters_and_drops() {
    let db = TestCluster::shared().fresh_database().await;
    db.exec("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY);")
        .await;
    let name = unique("op");
    let c = connector(&db, &name, "{table: a}, {table: b}");
    let pg = Postgres;
    pg.provision(
        &c,
        &creds(),
        pgkafka_postgres::slot_check::Delivered::Nothing,
    )
    .await
    .expect("provision");
    pg.provision(
        &c,
        &creds(),
        pgkafka_postgres::slot_check::Delivered::Nothing,
    )
    .await
    .expect("provisioning twice is a no-op");
    assert_eq!(
        db.published_tables(&format!("{name}_pub")).await,
        ["public.a", "public.b"]
    );
    let slots: i64 = db
        .client
        .query_one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND plugin = 'pgoutput'", &[&format!("{name}_slot")])
        .await
        .expect("slots")
        .get(0);
    assert_eq!(slots, 1);

    // Listeners change: the publication follows.
    let changed = connector(&db, &name, "{table: b}, {table: c}");
    pg.provision(
        &changed,
        &creds(),
        pgkafka_postgres::slot_check::Delivered::Nothing,
    )
    .await
    .expect("alter");
    assert_eq!(
        db.published_tables(&format!("{name}_pub")).await,
        ["public.b", "public.c"]
    );

    // Slot state matches PostgreSQL's own view.
    db.exec("INSERT INTO b VALUES (1)").await;
    let state = pg
        .slot_state(&c, &creds())
        .await
        .expect("state")
        .expect("slot exists");
    let direct = db
        .client
        .query_one(
            "SELECT confirmed_flush_lsn::text, restart_lsn::text, wal_status, active FROM pg_replication_slots WHERE slot_name = $1",
            &[&format!("{name}_slot")],
        )
        .await
        .expect("direct");
    assert_eq!(
        state.confirmed_flush_lsn,
        direct.get::<_, Option<String>>(0)
    );
    assert_eq!(state.restart_lsn, direct.get::<_, Option<String>>(1));
    assert_eq!(state.wal_status, direct.get::<_, Option<String>>(2));
    assert_eq!(state.active, direct.get::<_, bool>(3));
    assert!(
        state.lag_bytes.is_some_and(|l| l > 0),
        "the insert is behind the slot: {state:?}"
    );

    assert_eq!(
        pg.drop_all(&c, &creds()).await.expect("drop"),
        Dropped::Done
    );
    assert_eq!(
        pg.drop_all(&c, &creds()).await.expect("drop twice"),
        Dropped::Done
    );
    assert_eq!(pg.slot_state(&c, &creds()).await.expect("state"), None);
    assert!(db.published_tables(&format!("{name}_pub")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_are_quoted_never_executed() {
    let db = TestCluster::shared().fresh_database().await;
    db.exec(r#"CREATE TABLE "we""ird; DROP TABLE victim; --" (id int PRIMARY KEY); CREATE TABLE victim (id int);"#)
        .await;
    let name = unique("hostile");
    let mut c = connector(
        &db,
        &name,
        r#"{table: 'public."we""ird; DROP TABLE victim; --"'}"#,
    );
    c.spec.publication.name = "Pub\"; DROP TABLE victim; --".into();
    Postgres
        .provision(
            &c,
            &creds(),
            pgkafka_postgres::slot_check::Delivered::Nothing,
        )
        .await
        .expect("provision");
    let victim: bool = db
        .client
        .query_one("SELECT to_regclass('public.victim') IS NOT NULL", &[])
        .await
        .expect("victim")
        .get(0);
    assert!(victim, "no injected statement ran");
    assert_eq!(
        db.published_tables("Pub\"; DROP TABLE victim; --")
            .await
            .len(),
        1
    );
    assert_eq!(
        Postgres.drop_all(&c, &creds()).await.expect("drop"),
        Dropped::Done
    );
}
