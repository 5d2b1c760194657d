//! Leader election between operator replicas on a real API server, as the
//! chart's ServiceAccount: only the Lease holder reconciles, a killed holder
//! is replaced when the Lease expires, a holder stopped with SIGTERM hands
//! the Lease over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use pgkafka_tests::cluster::OPERATOR_NAMESPACE;
use pgkafka_tests::{unique, wait_for};

// This file uses a part of the shared harness.
#[allow(dead_code)]
#[path = "support/envtest.rs"]
mod support;
use support::{dns, Env, LONG};

/// Two replicas: only the Lease holder reconciles; when it dies the other
/// takes over within the lease time; when it stops on SIGTERM it hands the
/// Lease over at once.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_reconciles_and_the_other_takes_over() {
    let Some(env) = Env::new("lease").await else {
        return;
    };
    let kubelet = env.kubelet();
    let args = ["--leader-election", "--lease-namespace", OPERATOR_NAMESPACE];
    let mut operators = [env.operator(&kubelet, &args), env.operator(&kubelet, &args)];
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), OPERATOR_NAMESPACE);
    let holder = || async {
        leases
            .get_opt("pgkafka-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    wait_for(LONG, "a Lease holder", || async {
        holder().await.is_some()
    })
    .await;
    let first = holder().await.expect("holder");
    let leader = operators
        .iter()
        .position(|o| o.name == first)
        .expect("the holder is one of ours");
    let standby = 1 - leader;
    let (slot, prefix) = (unique("lease"), unique("lease"));
    let name = dns("lease");
    let (ok, out) = env.apply(&env.connector(&name, &slot, &prefix).yaml());
    assert!(ok, "{out}");
    env.wait_condition(&name, "Ready", "True", LONG).await;
    assert!(operators[leader].reconciles() > 0, "the holder reconciles");
    assert_eq!(operators[standby].reconciles(), 0, "the other does not");

    operators[leader].kill9();
    let next = operators[standby].name.clone();
    wait_for(
        Duration::from_secs(40),
        "the standby to take the Lease",
        || async { holder().await.as_deref() == Some(next.as_str()) },
    )
    .await;
    env.kubectl_ok(&[
        "annotate",
        "pgkc",
        &name,
        "pgkafka.io/restart=2",
        "--overwrite",
    ]);
    wait_for(LONG, "the new holder to reconcile", || async {
        operators[standby].reconciles() > 0
    })
    .await;

    // Stopped with SIGTERM (a rollout, its pod deleted), the holder
    // releases the Lease: a third replica, watching it, takes it before the
    // last renewal would have expired.
    let third = env.operator(&kubelet, &args);
    let renewed = leases
        .get_opt("pgkafka-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.renew_time)
        .map(|t| t.0.as_second())
        .expect("a renewal time");
    assert_eq!(
        operators[standby].terminate(),
        Some(0),
        "a clean exit on SIGTERM"
    );
    let log = operators[standby].log_text();
    assert!(log.contains("lease released"), "{log}");
    wait_for(LONG, "the third replica to take the Lease", || async {
        holder().await.as_deref() == Some(third.name.as_str())
    })
    .await;
    let acquired = leases
        .get_opt("pgkafka-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.acquire_time)
        .map_or(i64::MAX, |t| t.0.as_second());
    assert!(
        acquired < renewed + 15,
        "taken at {acquired}, not before the lease renewed at {renewed} (15 s) expired: never released"
    );
    for operator in operators.iter().chain([&third]) {
        operator.assert_never_forbidden();
    }
}
