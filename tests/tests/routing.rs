//! Listeners, targets, filters and whole-transaction messages, end to end
//! against a real PostgreSQL and broker. Each filter is checked against the
//! equivalent SQL query on the same table.

use std::time::Duration;

use pgkafka_tests::{
    manifest, read_to_end, unique, Broker, Consumed, Engine, Manifest, Postgres, TestDb,
};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
const LONG: Duration = Duration::from_secs(60);

/// Waits until the slot confirmed everything written so far: from then on
/// every record is in Kafka.
async fn wait_confirmed(db: &TestDb, slot: &str) {
    db.wait_confirmed_all(slot, LONG).await;
}

fn sorted_ids(records: &[Consumed], image: &str) -> Vec<i32> {
    let mut ids: Vec<i32> = records
        .iter()
        .filter_map(|r| r.value[image]["id"].as_i64().map(|id| id as i32))
        .collect();
    ids.sort_unstable();
    ids
}

async fn query_ids(db: &TestDb, sql: &str) -> Vec<i32> {
    db.client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// 40 rows with NULLs in every nullable column, amounts around 10, and
/// timestamps on both sides of 2024-06-01T00:00Z.
const INSERT_ORDERS: &str = "
    INSERT INTO orders
    SELECT g,
           (ARRAY['new', 'paid', 'shipped', NULL])[g % 4 + 1],
           CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 1.25 + 0.5)::numeric(10,2) END,
           g % 5,
           '2024-05-31T22:00:00Z'::timestamptz + (g - 20) * interval '1 hour',
           (ARRAY['rush order', 'gift wrap', 'AB-' || g, 'call me!', NULL])[g % 5 + 1]
      FROM generate_series(1, 40) g;";

/// (filter, the SQL WHERE clause that admits the same inserted rows)
const INSERT_FILTERS: [(&str, &str); 15] = [
    ("{field: new.status, operator: '==', value: paid}", "status = 'paid'"),
    ("{field: new.status, operator: '!=', value: paid}", "status <> 'paid'"),
    ("{field: new.amount, operator: '>', value: 9.75}", "amount > 9.75"),
    ("{field: new.amount, operator: '<=', value: '10.5'}", "amount <= 10.5"),
    ("{field: new.qty, operator: '<', value: 2}", "qty < 2"),
    ("{field: new.created, operator: '>=', value: '2024-06-01T02:00:00+02:00'}", "created >= '2024-06-01T00:00:00Z'"),
    ("{field: new.status, operator: in, value: [new, shipped]}", "status IN ('new', 'shipped')"),
    ("{field: new.status, operator: not_in, value: [new]}", "status NOT IN ('new')"),
    ("{field: new.status, operator: is_null}", "status IS NULL"),
    ("{field: new.note, operator: exists}", "true"),
    ("{field: new.note, operator: contains, value: rush}", "note LIKE '%rush%'"),
    ("{field: new.note, operator: starts_with, value: gift}", "note LIKE 'gift%'"),
    ("{field: new.note, operator: ends_with, value: '!'}", "note LIKE '%!'"),
    ("{field: new.note, operator: matches, value: '^[A-Z]{2}-[0-9]+$'}", "note ~ '^[A-Z]{2}-[0-9]+$'"),
    (
        "{any: [{all: [{field: new.status, operator: '==', value: paid}, {field: new.amount, operator: '>=', value: 30}]}, {not: {field: new.note, operator: is_null}}]}",
        "(status = 'paid' AND amount >= 30) OR NOT (note IS NULL)",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_operator_admits_exactly_what_sql_admits() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec("CREATE TABLE orders (id int PRIMARY KEY, status text, amount numeric(10,2), qty int, created timestamptz, note text); ALTER TABLE orders REPLICA IDENTITY FULL;").await;
    let prefix = unique("f");
    let mut targets = String::new();
    for (k, (filter, _)) in INSERT_FILTERS.iter().enumerate() {
        targets.push_str(&format!(
            "        - topic: {prefix}.f{k}\n          filter: {{actions: [insert], conditions: [{filter}]}}\n"
        ));
    }
    // Updates: `changed`, and a condition on the old row.
    targets.push_str(&format!(
        "        - topic: {prefix}.changed\n          filter: {{actions: [update], conditions: [{{field: new.status, operator: changed}}]}}\n\
         \x20       - topic: {prefix}.old\n          filter: {{actions: [update], logic: OR, conditions: [{{field: old.qty, operator: '<', value: 2}}, {{field: old.status, operator: is_null}}]}}\n\
         \x20       - topic: {prefix}.all\n"
    ));
    let name = unique("ops");
    let listeners = format!("    - table: orders\n      targets:\n{targets}");
    let mut engine = Engine::start(
        ENGINE,
        &manifest(&name, &db, &broker.bootstrap, &prefix, &listeners),
    );
    engine.wait_streaming();

    db.exec(INSERT_ORDERS).await;
    let mut expected = Vec::new();
    for (_, sql) in INSERT_FILTERS {
        expected.push(
            query_ids(
                &db,
                &format!("SELECT id FROM orders WHERE {sql} ORDER BY id"),
            )
            .await,
        );
    }
    let changed = query_ids(&db, "SELECT id FROM orders WHERE id <= 20 AND id % 3 = 0 AND status IS DISTINCT FROM 'paid' ORDER BY id").await;
    let old = query_ids(
        &db,
        "SELECT id FROM orders WHERE id <= 20 AND (qty < 2 OR status IS NULL) ORDER BY id",
    )
    .await;
    db.exec("UPDATE orders SET status = CASE WHEN id % 3 = 0 THEN 'paid' ELSE status END, qty = qty + 1 WHERE id <= 20")
        .await;
    wait_confirmed(&db, &format!("{name}_slot")).await;

    for (k, (filter, sql)) in INSERT_FILTERS.iter().enumerate() {
        let got = sorted_ids(
            &read_to_end(&broker.bootstrap, &format!("{prefix}.f{k}")),
            "after",
        );
        assert_eq!(got, expected[k], "filter {filter} (SQL: {sql})");
    }
    assert_eq!(
        sorted_ids(
            &read_to_end(&broker.bootstrap, &format!("{prefix}.changed")),
            "after"
        ),
        changed
    );
    assert_eq!(
        sorted_ids(
            &read_to_end(&broker.bootstrap, &format!("{prefix}.old")),
            "after"
        ),
        old
    );
    let all = read_to_end(&broker.bootstrap, &format!("{prefix}.all"));
    assert_eq!(all.len(), 60, "40 inserts and 20 updates, unfiltered");

    // Row by row, the unfiltered topic matches the table.
    let rows = db
        .client
        .query(
            "SELECT id, status, amount::text, qty FROM orders ORDER BY id",
            &[],
        )
        .await
        .expect("rows");
    for row in rows {
        let id: i32 = row.get(0);
        let last = all
            .iter()
            .rfind(|r| r.value["after"]["id"] == id)
            .expect("a record per row");
        let after = &last.value["after"];
        assert_eq!(
            after["status"].as_str(),
            row.get::<_, Option<&str>>(1),
            "row {id}"
        );
        assert_eq!(
            after["amount"].as_str(),
            row.get::<_, Option<&str>>(2),
            "row {id}"
        );
        assert_eq!(
            after["qty"].as_i64(),
            Some(i64::from(row.get::<_, i32>(3))),
            "row {id}"
        );
    }
    assert_eq!(engine.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_gets_one_message_per_transaction_split_in_parts_when_large() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text);
         CREATE TABLE lines (id int PRIMARY KEY, order_id int, sku text, note text);",
    )
    .await;
    let prefix = unique("g");
    let topic = format!("{prefix}.shop.tx");
    let listeners = format!(
        "    - table: orders\n      targets: [{{topic: {topic}, group: shop}}]\n\
         \x20   - table: lines\n      targets: [{{topic: {topic}, group: shop, columns: {{exclude: [note]}}}}, {{envelope: flat}}]"
    );
    let name = unique("grp");
    let m = Manifest::new(&name, &db, &broker.bootstrap, &prefix, &listeners)
        .kafka_property("message.max.bytes", "100000")
        .yaml();
    let mut engine = Engine::start(ENGINE, &m);
    engine.wait_streaming();

    db.exec(
        "BEGIN;
         INSERT INTO orders VALUES (1, 'ada');
         INSERT INTO lines VALUES (1, 1, 'tea', 'secret'), (2, 1, 'cup', 'secret');
         UPDATE orders SET customer = 'ada l.' WHERE id = 1;
         COMMIT;",
    )
    .await;
    // One statement per call: a simple query with several statements is one
    // transaction unless it says otherwise.
    db.exec("INSERT INTO lines VALUES (3, 1, 'pot', 'secret')")
        .await;
    db.exec("BEGIN; INSERT INTO orders VALUES (2, 'rolled back'); ROLLBACK;")
        .await;
    db.exec("INSERT INTO lines SELECT g, 9, 'bulk-' || g, md5(g::text) FROM generate_series(100, 3099) g")
        .await;
    wait_confirmed(&db, &format!("{name}_slot")).await;

    let messages = read_to_end(&broker.bootstrap, &topic);
    let mut by_tx: std::collections::BTreeMap<u64, Vec<&Consumed>> = Default::default();
    for m in &messages {
        let tx = m.value["txId"].as_u64().expect("txId");
        assert_eq!(
            m.key.as_deref(),
            Some(tx.to_string().as_str()),
            "keyed by transaction"
        );
        by_tx.entry(tx).or_default().push(m);
    }
    assert_eq!(
        by_tx.len(),
        3,
        "three committed transactions touched the group; the rolled back one sent nothing"
    );
    let mut txs = by_tx.into_values();

    let first = txs.next().expect("first transaction");
    assert_eq!(first.len(), 1);
    let changes = first[0].value["changes"].as_array().expect("changes");
    let seen: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["source"]["table"].as_str().unwrap_or("?"),
                c["op"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("orders", "c"),
            ("lines", "c"),
            ("lines", "c"),
            ("orders", "u")
        ],
        "commit order, both tables"
    );
    assert_eq!(
        changes[1]["after"],
        serde_json::json!({"id": 1, "order_id": 1, "sku": "tea"}),
        "note excluded"
    );
    assert_eq!(
        (
            first[0].value["part"].as_u64(),
            first[0].value["parts"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(first[0].value["commitTime"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let second = txs.next().expect("second transaction");
    let changes = second[0].value["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "only the table it touched");
    assert_eq!(changes[0]["after"]["id"], 3);

    // The bulk insert exceeds 100,000 bytes: numbered parts that reassemble.
    let mut parts = txs.next().expect("bulk transaction");
    parts.sort_by_key(|p| p.value["part"].as_u64());
    let n = parts.len();
    assert!(n > 1, "a large transaction is split");
    let mut ids = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p.value["part"].as_u64(), Some(i as u64 + 1));
        assert_eq!(p.value["parts"].as_u64(), Some(n as u64));
        let header = p
            .headers
            .iter()
            .find(|(k, _)| k == "pgkafka.part")
            .map(|(_, v)| v.as_str());
        assert_eq!(header, Some(format!("{}/{n}", i + 1).as_str()));
        ids.extend(
            p.value["changes"]
                .as_array()
                .expect("changes")
                .iter()
                .filter_map(|c| c["after"]["id"].as_i64()),
        );
    }
    assert_eq!(
        ids,
        (100..3100).collect::<Vec<i64>>(),
        "every change once, in order"
    );

    // The per-change target of `lines` got every line, flat.
    let flat = read_to_end(&broker.bootstrap, &format!("{prefix}.public.lines"));
    assert_eq!(flat.len(), 3 + 3000);
    assert!(flat
        .iter()
        .all(|r| r.value["__op"] == "c" && r.value["note"].is_string()));
    assert_eq!(engine.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_filters_fail_at_start_up_naming_listener_target_and_field() {
    let db = Postgres::shared().fresh_database().await;
    db.exec(
        "CREATE TABLE orders (id int PRIMARY KEY, status text, amount numeric);
         CREATE TABLE audit (id int PRIMARY KEY, status text);",
    )
    .await;
    let cases = [
        (
            "{field: new.nope, operator: exists}",
            ".conditions[0].field",
            "has no column \"nope\"",
        ),
        (
            "{field: new.amount, operator: contains, value: '1'}",
            ".conditions[0].operator",
            "does not fit \"amount\"",
        ),
        (
            "{field: new.amount, operator: '>', value: lots}",
            ".conditions[0].value",
            "\"lots\" is not a numeric value",
        ),
        (
            "{field: new.status, operator: matches, value: '(open'}",
            ".conditions[0].value",
            "bad regular expression",
        ),
        (
            "{field: old.status, operator: '==', value: x}",
            ".conditions[0].field",
            "REPLICA IDENTITY FULL",
        ),
        (
            "{any: [{field: new.status, operator: changed}]}",
            ".conditions[0].any[0].field",
            "REPLICA IDENTITY FULL",
        ),
    ];
    for (condition, suffix, expected) in cases {
        let name = unique("badf");
        let listeners = format!(
            "    - table: audit\n    - table: orders\n      targets:\n        - {{}}\n        - {{topic: t, filter: {{conditions: [{condition}]}}}}"
        );
        let m = manifest(&name, &db, "127.0.0.1:9", "x", &listeners);
        let mut engine = Engine::start(ENGINE, &m);
        let (code, log) = engine.wait_exit(LONG);
        assert_eq!(code, Some(1), "{condition}: {log}");
        let field = format!("spec.listeners[1].targets[1].filter{suffix}: ");
        assert!(
            log.contains(&field) && log.contains(expected),
            "{condition}: wanted {field}…{expected} in\n{log}"
        );
        let slot = db.confirmed_flush(&format!("{name}_slot")).await;
        let exists: bool = db
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                &[&format!("{name}_slot")],
            )
            .await
            .expect("slot query")
            .get(0);
        assert!(
            !exists && slot == 0,
            "{condition}: nothing is created before the filters are valid"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quoted_names_and_composite_key_columns() {
    let db = Postgres::shared().fresh_database().await;
    let broker = Broker::start();
    db.exec(
        r#"CREATE SCHEMA "Sales";
           CREATE TABLE "Sales"."Order.Lines" (id int PRIMARY KEY, tenant text NOT NULL, "Line No" int NOT NULL, qty int);"#,
    )
    .await;
    let prefix = unique("q");
    let name = unique("quoted");
    let listeners = r#"    - table: '"Sales"."Order.Lines"'
      keyColumns: [tenant, "Line No"]"#;
    let mut engine = Engine::start(
        ENGINE,
        &manifest(&name, &db, &broker.bootstrap, &prefix, listeners),
    );
    engine.wait_streaming();
    db.exec(r#"INSERT INTO "Sales"."Order.Lines" VALUES (1, 'acme', 3, 5)"#)
        .await;
    wait_confirmed(&db, &format!("{name}_slot")).await;
    // Characters Kafka does not allow in topic names become '_'.
    let got = read_to_end(&broker.bootstrap, &format!("{prefix}.Sales.Order.Lines"));
    assert_eq!(got.len(), 1, "{}", engine.log_text());
    assert_eq!(
        got[0].key.as_deref(),
        Some(r#"{"tenant":"acme","Line No":3}"#)
    );
    assert_eq!(got[0].value["source"]["schema"], "Sales");
    assert_eq!(got[0].value["source"]["table"], "Order.Lines");
    assert_eq!(engine.stop(), Some(0));
}
