//! Masked, hashed and truncated columns (`targets[].columnMasks`, Debezium's
//! `column.mask.*` and `column.truncate.*`) on snapshot rows and changes,
//! `before` and `after`, in both envelopes and the schema form; the key
//! only when asked; filters on the real values. Every expected value is
//! PostgreSQL's own: `sha256()`, `md5()` and `left()` of the same text.
//! Real PostgreSQL, real broker.

use std::time::Duration;

use pgkafka_tests::{read_to_end, unique, Broker, Consumed, Engine, Manifest, Postgres, TestDb};
use serde_json::{json, Value};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);
const SALT: &str = "CzQMA0cB5K";

/// Two targets of one table: the Debezium envelope with every operation,
/// and a flat one that hashes the key too and sees only Ada's rows (its
/// filter compares the real e-mail address).
fn listeners(prefix: &str) -> String {
    format!(
        r#"    - table: people
      targets:
        - columnMasks:
            - {{columns: [email], hash: {{algorithm: SHA-256, saltSecretRef: {{name: pii, key: salt}}}}}}
            - {{columns: [code], hash: {{algorithm: MD5, saltSecretRef: {{name: pii, key: salt}}}}}}
            - {{columns: [notes], truncateToChars: 5}}
            - {{columns: [nick], maskWithChars: 3}}
        - topic: {prefix}.flat
          envelope: flat
          filter: {{conditions: [{{field: new.email, operator: "==", value: ada@example.com}}]}}
          columnMasks:
            - {{columns: [id, email], hash: {{algorithm: SHA-256, saltSecretRef: {{name: pii, key: salt}}}}, applyToKey: true}}
"#
    )
}

async fn people(db: &TestDb) {
    db.exec(
        "CREATE TABLE people (id text PRIMARY KEY, email text, code varchar(8), notes text, nick text);
         ALTER TABLE people REPLICA IDENTITY FULL;
         INSERT INTO people VALUES ('p1', 'ada@example.com', 'AB-1234', 'żółw ćma and more', 'ace'),
                                   ('p2', 'bob@example.com', NULL, NULL, NULL);",
    )
    .await;
}

/// The row as the masks should write it, from PostgreSQL's own functions.
async fn expected(db: &TestDb, id: &str) -> Value {
    let row = db
        .client
        .query_one(
            "SELECT id, encode(sha256(convert_to($2 || email, 'UTF8')), 'hex'),
                    left(md5($2 || code), 8), left(notes, 5), '***'::text
               FROM people WHERE id = $1",
            &[&id, &SALT],
        )
        .await
        .expect("expected row");
    json!({
        "id": row.get::<_, String>(0),
        "email": row.get::<_, Option<String>>(1),
        "code": row.get::<_, Option<String>>(2),
        "notes": row.get::<_, Option<String>>(3),
        "nick": row.get::<_, String>(4),
    })
}

async fn hashed(db: &TestDb, text: &str) -> String {
    db.client
        .query_one(
            "SELECT encode(sha256(convert_to($1 || $2, 'UTF8')), 'hex')",
            &[&SALT, &text],
        )
        .await
        .expect("hash")
        .get(0)
}

fn by_op<'a>(records: &'a [Consumed], op: &str, id: &str) -> &'a Consumed {
    records
        .iter()
        .find(|r| {
            let v = if r.value.get("payload").is_some() {
                &r.value["payload"]
            } else {
                &r.value
            };
            v["op"] == op && (v["after"]["id"] == id || v["before"]["id"] == id || v["id"] == id)
        })
        .unwrap_or_else(|| panic!("no {op} record of {id}: {records:#?}"))
}

struct Run {
    db: TestDb,
    broker: Broker,
    _engine: Engine,
    prefix: String,
}

async fn run(schemas: bool) -> Run {
    let db = Postgres::shared().fresh_database().await;
    people(&db).await;
    let broker = Broker::start();
    let (name, prefix) = (unique("masks"), unique("masks"));
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, &listeners(&prefix))
        .snapshots(100)
        .spec(|s| s.kafka.schemas = schemas);
    let mut engine = Engine::start_with_secrets(
        ENGINE,
        &m.yaml(),
        &[
            ("pg/password", pgkafka_tests::PG_PASSWORD),
            ("pii/salt", SALT),
        ],
    );
    engine.wait_streaming();
    pgkafka_tests::wait_until(LONG, "the snapshot", || {
        engine
            .snapshot_of("public.people")
            .is_some_and(|(s, _)| s == pgkafka_crds::report::SnapshotState::Done)
    });
    db.exec(
        "INSERT INTO people VALUES ('p3', 'cy@example.com', 'Z', 'short', NULL);
         UPDATE people SET notes = 'changed notes here', code = 'CD-5678' WHERE id = 'p1';",
    )
    .await;
    db.wait_confirmed_all(&format!("{name}_slot"), LONG).await;
    Run {
        db,
        broker,
        _engine: engine,
        prefix,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_rows_and_changes_are_masked_hashed_and_cut() {
    let r = run(false).await;
    let records = read_to_end(&r.broker.bootstrap, &format!("{}.public.people", r.prefix));
    let bob = by_op(&records, "r", "p2");
    let want_bob = expected(&r.db, "p2").await;
    assert_eq!(
        bob.value["after"], want_bob,
        "NULLs: hashes and cuts keep them, the mask does not"
    );
    assert_eq!(bob.value["after"]["code"], Value::Null);
    assert_eq!(
        bob.key.as_deref(),
        Some(r#"{"id":"p2"}"#),
        "keys stay as they are"
    );
    let cy = by_op(&records, "c", "p3");
    assert_eq!(cy.value["after"], expected(&r.db, "p3").await);
    // The update: `before` as the snapshot row had it, `after` as now.
    let ada_before = by_op(&records, "r", "p1").value["after"].clone();
    let update = by_op(&records, "u", "p1");
    assert_eq!(update.value["before"], ada_before);
    assert_eq!(update.value["after"], expected(&r.db, "p1").await);
    assert_eq!(update.value["after"]["notes"], "chang");
    assert_eq!(
        update.value["after"]["code"].as_str().map(str::len),
        Some(8),
        "an md5 cut to varchar(8)"
    );

    // The flat target: only Ada (its filter saw the real address), key hashed.
    let flat = read_to_end(&r.broker.bootstrap, &format!("{}.flat", r.prefix));
    let ids: Vec<&Value> = flat.iter().map(|c| &c.value["id"]).collect();
    let p1 = hashed(&r.db, "p1").await;
    assert_eq!(ids, [&json!(p1), &json!(p1)], "{flat:#?}");
    assert_eq!(flat[1].value["__op"], "u");
    assert_eq!(
        flat[1].value["notes"], "changed notes here",
        "no cut on this target"
    );
    assert_eq!(flat[1].key, Some(format!(r#"{{"id":"{p1}"}}"#)));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_form_marks_masked_fields_as_debezium_does() {
    let r = run(true).await;
    let records = read_to_end(&r.broker.bootstrap, &format!("{}.public.people", r.prefix));
    let update = by_op(&records, "u", "p1");
    assert_eq!(
        update.value["payload"]["after"],
        expected(&r.db, "p1").await
    );
    let fields = &update.value["schema"]["fields"][1]["fields"];
    let parameters = |name: &str| {
        fields
            .as_array()
            .and_then(|f| f.iter().find(|f| f["field"] == name))
            .map(|f| f["parameters"].clone())
            .unwrap_or_else(|| panic!("no field {name}: {fields}"))
    };
    assert_eq!(parameters("email"), json!({"masked": "true"}));
    assert_eq!(parameters("nick"), json!({"masked": "true"}));
    assert_eq!(parameters("notes"), json!({"truncateLength": "5"}));
    assert_eq!(parameters("id"), Value::Null);
    let flat = read_to_end(&r.broker.bootstrap, &format!("{}.flat", r.prefix));
    let p1 = hashed(&r.db, "p1").await;
    let key: Value = serde_json::from_str(flat[0].key.as_deref().unwrap_or("null")).expect("key");
    assert_eq!(key["payload"], json!({"id": p1}));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_or_non_text_column_is_refused_naming_it() {
    let db = Postgres::shared().fresh_database().await;
    db.exec("CREATE TABLE people (id int PRIMARY KEY, email text)")
        .await;
    let broker = Broker::start();
    for (column, says) in [
        ("mail", "has no column \"mail\""),
        ("id", "not a character type"),
    ] {
        let (name, prefix) = (unique("masks"), unique("masks"));
        let listeners = format!(
            "    - table: people\n      targets:\n        - columnMasks: [{{columns: [email, {column}], maskWithChars: 2}}]\n"
        );
        let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, &listeners);
        let engine = Engine::start(ENGINE, &m.yaml());
        let halted = engine.wait_halted(LONG);
        assert!(
            halted.contains("spec.listeners[0].targets[0].columnMasks[0].columns[1]")
                && halted.contains(says),
            "{halted}"
        );
    }
}
