//! Pods on a real kubelet (`../shared/kube-node/`, started and stopped by
//! `tests/node/tier.sh`, which also builds the image from the Dockerfile and
//! imports it): the chart installed with Helm, two operator pods on their
//! ServiceAccount electing a leader, engine pods run by containerd with
//! their real probes, mounts, security context and memory limit, against
//! PostgreSQL and Tansu on the host's bridge address.
//!
//! One node for the whole tier, so the scenarios run in order in one test,
//! each timed; built only with the `kube-node` feature (the tier's
//! `cargo test --features kube-node --test node`).

use std::time::Instant;

use pgkafka_tests::node::{KubeNode, HOST_ADDRESS};
use pgkafka_tests::{unique, Broker, Postgres, TestDb};

mod engine_pods;
mod operator_pods;
mod stage;

use stage::Stage;

/// Runs `scenario`, printing how long it took.
async fn timed<F: std::future::Future<Output = ()>>(name: &str, scenario: F) {
    let start = Instant::now();
    eprintln!("node scenario: {name} ...");
    scenario.await;
    eprintln!(
        "node scenario: {name}: passed in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scenarios_on_a_real_node() {
    let node = KubeNode::from_env();
    let pg = Postgres::start_on(HOST_ADDRESS);
    let broker = Broker::owned_on(HOST_ADDRESS);
    let db: TestDb = pg.fresh_database().await;
    let stage = Stage::new(node, &db, &broker, &unique("node"));
    timed(
        "the chart installed with Helm, two operator pods",
        stage.install_chart(),
    )
    .await;
    let main = stage.main_connector();
    timed(
        "a connector applied: engine Ready, status, a row, logs",
        engine_pods::applied(&stage, &main),
    )
    .await;
    timed(
        "the security context inside the engine container",
        engine_pods::hardened(&stage, &main),
    )
    .await;
    timed(
        "the engine container killed, then its pod deleted",
        engine_pods::killed(&stage, &main),
    )
    .await;
    timed(
        "a Secret changed: rollout with SIGTERM, nothing lost",
        engine_pods::secret_rotated(&stage, &main),
    )
    .await;
    timed(
        "16 MB over budget under a 128Mi memory limit",
        engine_pods::memory_limited(&stage),
    )
    .await;
    timed(
        "kubectl get pgkc shows every column",
        operator_pods::columns(&stage, &main),
    )
    .await;
    timed(
        "the leader pod deleted: the other takes the Lease",
        operator_pods::leader_deleted(&stage, &main),
    )
    .await;
    timed(
        "connectors deleted (reclaimPolicy Delete), helm uninstall",
        operator_pods::cleanup(&stage),
    )
    .await;
}
