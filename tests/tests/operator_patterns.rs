//! A pattern listener through the operator on a real API server: the
//! operator expands it against the database's tables to provision the
//! publication, and the engine captures what it matched, and a table
//! created later, which the resource's status then lists.

use pgkafka_crds::SnapshotMode;
use pgkafka_tests::{unique, Manifest};

// This file uses a small part of the shared harness.
#[allow(dead_code)]
#[path = "support/envtest.rs"]
mod support;
use support::{dns, Env, LONG};

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_publishes_the_tables_a_pattern_matches() {
    let Some(env) = Env::new("patterns").await else {
        return;
    };
    env.db
        .exec("CREATE TABLE order_lines (id int PRIMARY KEY); CREATE TABLE audit (id int PRIMARY KEY);")
        .await;
    let kubelet = env.kubelet();
    let operator = env.operator(&kubelet, &[]);
    let (name, slot, prefix) = (dns("patterns"), unique("patterns"), unique("patterns"));
    let m = Manifest::new(
        &name,
        &env.db,
        &env.broker.bootstrap,
        &prefix,
        r"    - tables: {include: ['public\.order.*']}",
    )
    .spec(|s| {
        s.slot.name = slot.clone();
        s.publication.name = format!("{slot}_pub");
        s.snapshot.mode = SnapshotMode::Never;
        s.publication.refresh_interval_seconds = 1;
    });
    let (ok, out) = env.apply(&m.yaml());
    assert!(ok, "{out}");
    env.wait_condition(&name, "Ready", "True", LONG).await;
    let published = env.db.published_tables(&format!("{slot}_pub")).await;
    assert_eq!(published, ["public.order_lines", "public.orders"]);
    env.db
        .exec("INSERT INTO order_lines VALUES (7); INSERT INTO audit VALUES (8);")
        .await;
    let lines = format!("{prefix}.public.order_lines");
    assert_eq!(env.ids(&lines, &[7]).await, [7]);

    // A table created while it runs: the engine captures it, and the
    // resource's status lists it (written only when it changed).
    env.db
        .exec("CREATE TABLE order_notes (id int PRIMARY KEY)")
        .await;
    let deadline = std::time::Instant::now() + LONG;
    let tables = loop {
        let tables = env
            .get(&name)
            .await
            .and_then(|c| c.status)
            .and_then(|s| s.tables);
        if tables.as_ref().is_some_and(|t| t.count == 3) {
            break tables;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status.tables: {tables:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let names = tables.map(|t| t.names).unwrap_or_default();
    assert_eq!(
        names,
        ["public.order_lines", "public.order_notes", "public.orders"]
    );
    env.db.exec("INSERT INTO order_notes VALUES (9)").await;
    let notes = format!("{prefix}.public.order_notes");
    assert_eq!(env.ids(&notes, &[9]).await, [9]);
    let (_, out, _) = env.kubectl(&["get", "pgkc", &name]);
    assert!(
        out.lines().next().unwrap_or_default().contains("TABLES"),
        "{out}"
    );
    operator.assert_never_forbidden();
}
