//! The operator as pods: what `kubectl get pgkc` shows, the leader pod
//! deleted and the other replica taking the Lease, and the cleanup (a
//! connector deleted with `reclaimPolicy: Delete`, `helm uninstall`).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use pgkafka_tests::wait_for;

use crate::stage::{Connector, Stage, POD_START, RELEASE, RELEASE_NS, STATUS};

/// Every printer column of a running connector has a value.
pub async fn columns(stage: &Stage<'_>, c: &Connector) {
    let mut last = String::new();
    wait_for(STATUS, "every column of kubectl get pgkc filled", || {
        let (ok, out, err) = stage
            .node
            .kubectl(&["-n", &stage.ns, "get", "pgkc", &c.name]);
        last = format!("{out}{err}");
        let header: Vec<&str> = out
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let row: Vec<&str> = out
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let expected = [
            "NAME",
            "READY",
            "STATE",
            "SLOT",
            "CONFIRMED",
            "LSN",
            "LAG",
            "TABLES",
            "SNAPSHOT",
            "AGE",
        ];
        let filled = ok && header == expected && !row.is_empty() && !row.contains(&"<none>");
        async move { filled }
    })
    .await;
    let row = last.lines().nth(1).unwrap_or_default().to_owned();
    assert!(
        row.contains(" True ") && row.contains(" running ") && row.contains(&c.slot),
        "{last}"
    );
    eprintln!("{last}");
}

async fn holder(stage: &Stage<'_>) -> Option<String> {
    Api::<Lease>::namespaced(stage.node.client().await, RELEASE_NS)
        .get_opt("pgkafka-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

/// The leader's pod deleted: the other replica takes the Lease, and a
/// change made after that is reconciled (paused: the Deployment scales to
/// zero; running again: Ready).
pub async fn leader_deleted(stage: &Stage<'_>, c: &Connector) {
    let leader = holder(stage).await.expect("a Lease holder");
    let pods = stage.operator_pods().await;
    let other = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .find(|n| *n != leader)
        .expect("a second operator pod");
    let deleted = Instant::now();
    stage
        .node
        .kubectl_ok(&["-n", RELEASE_NS, "delete", "pod", &leader, "--wait=false"]);
    wait_for(
        Duration::from_secs(60),
        "the other replica to take the Lease",
        || async { holder(stage).await.is_some_and(|h| h == other) },
    )
    .await;
    let took = deleted.elapsed();
    let set_state = |state: &str| {
        let patch = format!(r#"{{"spec":{{"state":"{state}"}}}}"#);
        let args = [
            "-n",
            &stage.ns,
            "patch",
            "pgkc",
            &c.name,
            "--type=merge",
            "-p",
            &patch,
        ];
        stage.node.kubectl_ok(&args);
    };
    set_state("paused");
    let deployments = Api::<Deployment>::namespaced(stage.node.client().await, &stage.ns);
    let engine = format!("{}-engine", c.name);
    wait_for(
        STATUS,
        "the new leader to scale the paused engine to zero",
        || async {
            deployments
                .get_opt(&engine)
                .await
                .ok()
                .flatten()
                .and_then(|d| d.spec.replicas)
                == Some(0)
        },
    )
    .await;
    set_state("running");
    stage.engine_pod(&c.name).await;
    stage.wait_condition(&c.name, "Ready", "True", STATUS).await;
    eprintln!(
        "  {other} took the Lease {:.1} s after {leader} was deleted, then reconciled",
        took.as_secs_f64()
    );
}

/// Connectors deleted with `reclaimPolicy: Delete`: their slots,
/// publications and objects go; then `helm uninstall` removes the
/// operator's Deployment and RBAC (the CRD stays, as Helm does with crds/).
pub async fn cleanup(stage: &Stage<'_>) {
    let names: Vec<String> = stage
        .node
        .kubectl_ok(&["-n", &stage.ns, "get", "pgkc", "-o", "name"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(names.len(), 2, "two connectors: {names:?}");
    stage
        .node
        .kubectl_ok(&["-n", &stage.ns, "delete", "pgkc", "--all", "--timeout=120s"]);
    wait_for(STATUS, "slots and publications dropped", || async {
        let slots: i64 = count(stage, "SELECT count(*) FROM pg_replication_slots").await;
        let pubs: i64 = count(stage, "SELECT count(*) FROM pg_publication").await;
        slots == 0 && pubs == 0
    })
    .await;
    wait_for(POD_START, "the engines' objects gone", || async {
        let left = stage.node.kubectl_ok(&[
            "-n",
            &stage.ns,
            "get",
            "deployments,services,configmaps,serviceaccounts,pods",
            "-l",
            "app.kubernetes.io/managed-by=pgkafka-operator",
            "-o",
            "name",
        ]);
        left.trim().is_empty()
    })
    .await;
    stage.node.helm_ok(&[
        "uninstall",
        RELEASE,
        "--namespace",
        RELEASE_NS,
        "--wait",
        "--timeout",
        "120s",
    ]);
    wait_for(POD_START, "the operator's pods gone", || async {
        stage.operator_pods().await.is_empty()
    })
    .await;
    let (_, out, _) = stage
        .node
        .kubectl(&["get", "clusterrole,clusterrolebinding", "-o", "name"]);
    assert!(
        !out.contains("pgkafka"),
        "RBAC left after helm uninstall:\n{out}"
    );
    let (crd, _, _) = stage
        .node
        .kubectl(&["get", "crd", "pgkafkaconnectors.pgkafka.io"]);
    assert!(crd, "the CRD stays (Helm never deletes crds/)");
}

async fn count(stage: &Stage<'_>, sql: &str) -> i64 {
    stage
        .db
        .client
        .query_one(sql, &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}
