//! A pattern listener through the operator on a real API server: the
//! operator expands it against the database's tables to provision the
//! publication, and the engine captures what it matched.

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
    operator.assert_never_forbidden();
}
