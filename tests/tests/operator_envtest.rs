//! The operator against a real Kubernetes API server (kube-apiserver + etcd),
//! running as the chart's ServiceAccount with the chart's RBAC, against a
//! real PostgreSQL and a real broker. The test plays the kubelet: it runs
//! the engine as each Deployment's pod template says (`kubelet.rs`).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use pgkafka_crds::conditions::{ConditionType, Reason};
use pgkafka_crds::{ReclaimPolicy, SecretKeyRef};
use pgkafka_tests::cluster::ApiServer;
use pgkafka_tests::kubelet::Kubelet;
use pgkafka_tests::{unique, wait_for};

#[path = "support/envtest.rs"]
mod support;
use support::{dns, Env, LONG, REFRESH};

#[test]
fn the_crd_installs_without_warnings() {
    let Some(api) = ApiServer::shared() else {
        return;
    };
    assert!(
        api.crd_apply_output.contains("serverside-applied"),
        "{}",
        api.crd_apply_output
    );
    assert!(
        !api.crd_apply_output.to_lowercase().contains("warning"),
        "the API server warned about the CRD: {}",
        api.crd_apply_output
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_itself_refuses_invalid_resources_with_the_field_named() {
    let Some(env) = Env::new("cel").await else {
        return;
    };
    let slot = unique("cel");
    let good = env.connector("shop", &slot, "cel");
    let (ok, out) = env.apply(&good.yaml());
    assert!(ok, "{out}");
    let cases = [
        (
            good.clone()
                .spec(|s| s.slot.name = "other_slot".into())
                .yaml(),
            "slot name is immutable",
        ),
        (
            good.clone()
                .spec(|s| {
                    s.postgres.user_secret_ref = Some(SecretKeyRef {
                        name: "pg".into(),
                        key: "user".into(),
                    })
                })
                .yaml(),
            "exactly one of user and userSecretRef",
        ),
        (
            // The type writes an empty target list as none at all: only
            // the YAML itself can say `targets: []`.
            good.yaml().replace(
                "- table: public.orders\n",
                "- table: public.orders\n    targets: []\n",
            ),
            "must list at least one target",
        ),
    ];
    for (yaml, message) in cases {
        assert!(yaml != good.yaml(), "case changes nothing: {message}");
        let (ok, out) = env.apply(&yaml);
        assert!(!ok, "the server took it: {yaml}");
        assert!(out.contains(message), "expected {message:?} in: {out}");
    }
}

/// Apply, stream, status, printer columns, Events; an engine killed and
/// restarted; rollouts on a changed Secret and on the restart annotation;
/// paused, stopped, running again; delete with `reclaimPolicy: Delete`.
#[tokio::test(flavor = "multi_thread")]
async fn a_connector_lives_its_whole_life_on_a_real_api_server() {
    let Some(env) = Env::new("life").await else {
        return;
    };
    let kubelet = env.kubelet();
    let operator = env.operator(&kubelet, &[]);
    let (name, slot, prefix) = (dns("orders"), unique("life"), unique("life"));
    let engine = format!("{name}-engine");
    let topic = format!("{prefix}.public.orders");
    let yaml = env
        .connector(&name, &slot, &prefix)
        .spec(|s| s.reclaim_policy = ReclaimPolicy::Delete)
        .yaml();
    let (ok, out) = env.apply(&yaml);
    assert!(ok, "{out}");

    applied_and_streaming(&env, &name, &slot, &engine).await;
    env.db.exec("INSERT INTO orders VALUES (1, 'first')").await;
    assert_eq!(
        env.ids(&topic, &[1]).await,
        [1],
        "a row inserted arrives in Kafka"
    );
    status_agrees_with_postgres(&env, &name, &slot).await;
    wait_for(REFRESH, "the initial snapshot in the status", || async {
        env.get(&name)
            .await
            .and_then(|c| c.status?.snapshot)
            .is_some_and(|s| s.summary == "1/1")
    })
    .await;
    printer_columns_and_events(&env, &name, &slot);
    snapshot_annotation(&env, &name, &topic).await;

    // The engine process dies: Ready turns False, then True after the restart.
    kubelet.hold_restarts(true);
    kubelet.kill9(&engine);
    env.wait_condition(&name, "Ready", "False", REFRESH).await;
    kubelet.hold_restarts(false);
    env.wait_condition(&name, "Ready", "True", LONG).await;

    rollouts(&env, &kubelet, &name, &engine).await;
    paused_stopped_running(&env, &kubelet, &name, &engine, &topic).await;

    // Delete: the engine goes, then slot and publication, then the resource.
    env.kubectl_ok(&["delete", "pgkc", &name, "--wait=false"]);
    wait_for(LONG, "the resource to disappear", || async {
        env.get(&name).await.is_none()
    })
    .await;
    assert!(!kubelet.running(&engine), "the engine was stopped first");
    assert!(!env.slot_exists(&slot).await, "slot dropped");
    assert!(
        !env.publication_exists(&format!("{slot}_pub")).await,
        "publication dropped"
    );
    operator.assert_never_forbidden();
}

async fn applied_and_streaming(env: &Env, name: &str, slot: &str, engine: &str) {
    wait_for(LONG, "publication and slot", || async {
        env.slot_exists(slot).await && env.publication_exists(&format!("{slot}_pub")).await
    })
    .await;
    let uid = env
        .get(name)
        .await
        .and_then(|c| c.metadata.uid)
        .expect("connector uid");
    wait_for(
        LONG,
        "the engine's objects, owned by the connector",
        || async {
            let owned = |refs: Option<
                Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
            >| {
                refs.unwrap_or_default()
                    .iter()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            };
            let d = env.api::<Deployment>().get_opt(engine).await.ok().flatten();
            let cm = env.api::<ConfigMap>().get_opt(engine).await.ok().flatten();
            let svc = env.api::<Service>().get_opt(engine).await.ok().flatten();
            let sa = env
                .api::<ServiceAccount>()
                .get_opt(engine)
                .await
                .ok()
                .flatten();
            d.is_some_and(|o| owned(o.metadata.owner_references))
                && cm.is_some_and(|o| owned(o.metadata.owner_references))
                && svc.is_some_and(|o| owned(o.metadata.owner_references))
                && sa.is_some_and(|o| owned(o.metadata.owner_references))
        },
    )
    .await;
    env.wait_condition(name, "Ready", "True", LONG).await;
    assert_eq!(
        env.condition(name, "Ready").await.map(|c| c.1).as_deref(),
        Some("Streaming")
    );
}

/// `status.replication` says what `pg_replication_slots` says, within a refresh.
async fn status_agrees_with_postgres(env: &Env, name: &str, slot: &str) {
    wait_for(REFRESH, "status.replication to match pg_replication_slots", || async {
        let Some(r) = env.get(name).await.and_then(|c| c.status?.replication) else {
            return false;
        };
        let row = env
            .db
            .client
            .query_one(
                "SELECT confirmed_flush_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("slot row");
        r.confirmed_flush_lsn == row.get::<_, Option<String>>(0)
            && r.wal_status == row.get::<_, Option<String>>(1)
            && r.lag_bytes.is_some_and(|l| l >= 0)
            && r.active
    })
    .await;
}

/// Every `kubectl get pgkc` column has a value; `kubectl describe` shows
/// the Events of the condition changes.
fn printer_columns_and_events(env: &Env, name: &str, slot: &str) {
    let table = env.kubectl_ok(&["get", "pgkc", name]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("CONFIRMED LSN")
            && lines[0].contains("LAG"),
        "{table}"
    );
    let values: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(!lines[1].contains("<none>"), "a column is empty: {table}");
    assert_eq!(
        values.len(),
        9,
        "NAME READY STATE SLOT LSN LAG TABLES SNAPSHOT AGE: {table}"
    );
    assert_eq!(&values[..4], [name, "True", "running", slot], "{table}");
    assert!(values[4].contains('/'), "an LSN: {table}");
    assert!(values[5].parse::<i64>().is_ok(), "lag bytes: {table}");
    assert_eq!(values[6], "1", "one table listened to: {table}");
    assert_eq!(values[7], "1/1", "the initial snapshot is done: {table}");
    let described = env.kubectl_ok(&["describe", "pgkc", name]);
    let events = described.split("Events:").nth(1).unwrap_or_default();
    assert!(events.contains("Streaming"), "no Ready event: {described}");
    assert!(
        events.contains("SlotReserved"),
        "no SlotHealthy event: {described}"
    );
}

/// `pgkafka.io/snapshot` sends the table's rows again, once per value.
async fn snapshot_annotation(env: &Env, name: &str, topic: &str) {
    env.kubectl_ok(&[
        "annotate",
        "pgkc",
        name,
        "pgkafka.io/snapshot=public.orders",
    ]);
    wait_for(LONG, "the requested snapshot to be done", || async {
        env.get(name)
            .await
            .and_then(|c| c.status?.snapshot)
            .is_some_and(|s| {
                s.requested.as_deref() == Some("public.orders")
                    && s.tables.iter().any(|t| {
                        t.state == pgkafka_crds::report::SnapshotState::Done && t.rows == 1
                    })
            })
    })
    .await;
    let reads = env.reads(topic).await;
    assert!(reads >= 1, "the row was sent again as op r");
    let described = env.kubectl_ok(&["describe", "pgkc", name]);
    assert!(described.contains("SnapshotRequested"), "{described}");
    assert_eq!(
        env.condition(name, "Snapshotting")
            .await
            .map(|c| c.0)
            .as_deref(),
        Some("False"),
        "not snapshotting once done"
    );
}

/// A changed Secret and the restart annotation each roll the engine.
async fn rollouts(env: &Env, kubelet: &Kubelet, name: &str, engine: &str) {
    let before = kubelet.starts(engine);
    env.kubectl_ok(&["label", "secret", "pg", "rotated=yes"]);
    wait_for(LONG, "a rollout after the Secret changed", || async {
        kubelet.starts(engine) > before
    })
    .await;
    env.wait_condition(name, "Ready", "True", LONG).await;
    let before = kubelet.starts(engine);
    env.kubectl_ok(&[
        "annotate",
        "pgkc",
        name,
        "pgkafka.io/restart=1",
        "--overwrite",
    ]);
    wait_for(LONG, "a rollout after the restart annotation", || async {
        kubelet.starts(engine) > before
    })
    .await;
    env.wait_condition(name, "Ready", "True", LONG).await;
}

/// Paused and stopped stop the engine; running brings it back and it
/// resumes from the slot.
async fn paused_stopped_running(
    env: &Env,
    kubelet: &Kubelet,
    name: &str,
    engine: &str,
    topic: &str,
) {
    for state in ["paused", "stopped"] {
        let patch = format!("{{\"spec\":{{\"state\":\"{state}\"}}}}");
        env.kubectl_ok(&["patch", "pgkc", name, "--type=merge", "-p", &patch]);
        wait_for(
            LONG,
            &format!("the engine to stop when {state}"),
            || async { !kubelet.running(engine) },
        )
        .await;
        let reason = if state == "paused" {
            "Paused"
        } else {
            "Stopped"
        };
        wait_for(REFRESH, reason, || async {
            env.condition(name, "Ready")
                .await
                .is_some_and(|c| c.1 == reason)
        })
        .await;
    }
    env.db
        .exec("INSERT INTO orders VALUES (2, 'while stopped')")
        .await;
    env.kubectl_ok(&[
        "patch",
        "pgkc",
        name,
        "--type=merge",
        "-p",
        r#"{"spec":{"state":"running"}}"#,
    ]);
    env.wait_condition(name, "Ready", "True", LONG).await;
    assert_eq!(
        env.ids(topic, &[1, 2]).await,
        [1, 2],
        "the row written while stopped arrives"
    );
}

/// `reclaimPolicy: Retain`: the slot outlives the resource, and a new
/// resource on it resumes where the old one stopped.
#[tokio::test(flavor = "multi_thread")]
async fn retain_keeps_the_slot_and_a_new_resource_resumes_from_it() {
    let Some(env) = Env::new("retain").await else {
        return;
    };
    let kubelet = env.kubelet();
    let operator = env.operator(&kubelet, &[]);
    let (slot, prefix) = (unique("retain"), unique("retain"));
    let topic = format!("{prefix}.public.orders");
    let first = dns("first");
    let (ok, out) = env.apply(&env.connector(&first, &slot, &prefix).yaml());
    assert!(ok, "{out}");
    env.wait_condition(&first, "Ready", "True", LONG).await;
    env.db.exec("INSERT INTO orders VALUES (1, 'before')").await;
    assert_eq!(env.ids(&topic, &[1]).await, [1]);

    env.kubectl_ok(&["delete", "pgkc", &first, "--wait=false"]);
    wait_for(LONG, "the first resource to disappear", || async {
        env.get(&first).await.is_none()
    })
    .await;
    wait_for(LONG, "its engine to stop", || async {
        !kubelet.running(&format!("{first}-engine"))
    })
    .await;
    assert!(env.slot_exists(&slot).await, "Retain keeps the slot");
    env.db
        .exec("INSERT INTO orders VALUES (2, 'between')")
        .await;

    let second = dns("second");
    let (ok, out) = env.apply(&env.connector(&second, &slot, &prefix).yaml());
    assert!(ok, "{out}");
    env.wait_condition(&second, "Ready", "True", LONG).await;
    assert_eq!(
        env.ids(&topic, &[1, 2]).await,
        [1, 2],
        "the row written in between arrives"
    );
    operator.assert_never_forbidden();
}

/// A slot dropped while the connector is paused (what a failover to a
/// server without the slot does): the operator does not create a new one at
/// "now"; the status says the slot lost changes, naming what was delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_slot_is_not_recreated_and_the_status_says_slot_lost() {
    let Some(env) = Env::new("lost").await else {
        return;
    };
    let kubelet = env.kubelet();
    let operator = env.operator(&kubelet, &[]);
    let (name, slot, prefix) = (dns("lost"), unique("lost"), unique("lost"));
    let engine = format!("{name}-engine");
    let (ok, out) = env.apply(&env.connector(&name, &slot, &prefix).yaml());
    assert!(ok, "{out}");
    env.wait_condition(&name, "Ready", "True", LONG).await;
    env.db
        .exec("INSERT INTO orders VALUES (1, 'delivered')")
        .await;
    wait_for(LONG, "the status to show a confirmed position", || async {
        env.get(&name)
            .await
            .and_then(|c| c.status?.replication?.confirmed_flush_lsn)
            .is_some()
    })
    .await;
    env.kubectl_ok(&[
        "patch",
        "pgkc",
        &name,
        "--type=merge",
        "-p",
        r#"{"spec":{"state":"paused"}}"#,
    ]);
    wait_for(LONG, "the engine to stop", || async {
        !kubelet.running(&engine)
    })
    .await;
    wait_for(LONG, "the slot to be released", || async {
        env.db
            .client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    env.db
        .exec(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .await;
    env.kubectl_ok(&[
        "patch",
        "pgkc",
        &name,
        "--type=merge",
        "-p",
        r#"{"spec":{"state":"running"}}"#,
    ]);
    wait_for(LONG, "SlotHealthy=False SlotLost", || async {
        env.condition(&name, "SlotHealthy")
            .await
            .is_some_and(|c| c == ("False".into(), "SlotLost".into()))
    })
    .await;
    let c = env.get(&name).await.expect("connector");
    let conditions = c.status.expect("status").conditions;
    let ready = pgkafka_crds::conditions::find(&conditions, ConditionType::Ready).expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason()),
        ("False", Some(Reason::SlotLost))
    );
    assert!(
        ready.message.contains("does not exist") && ready.message.contains("spec.slot.onLoss"),
        "{}",
        ready.message
    );
    assert!(!env.slot_exists(&slot).await, "no slot created at 'now'");
    operator.assert_never_forbidden();
}

/// Dead letters show on the resource: `Degraded=True` reason
/// `RecordsDeadLettered` with the count, a Warning Event, until the
/// `pgkafka.io/dead-letters-acknowledged` annotation says they were handled.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_degrade_the_connector_until_acknowledged() {
    let Some(env) = Env::new("dlq").await else {
        return;
    };
    let kubelet = env.kubelet();
    let operator = env.operator(&kubelet, &[]);
    let (name, slot, prefix) = (dns("dlq"), unique("dlq"), unique("dlq"));
    let m = env.connector(&name, &slot, &prefix).spec(|s| {
        s.kafka.max_record_bytes = Some(2000);
        s.errors = pgkafka_crds::ErrorsSpec {
            tolerance: pgkafka_crds::Tolerance::All,
            dead_letter_queue: Some(pgkafka_crds::DeadLetterQueueSpec {
                topic: format!("{prefix}.dead-letters"),
                context_headers: true,
            }),
        };
    });
    let (ok, out) = env.apply(&m.yaml());
    assert!(ok, "{out}");
    env.wait_condition(&name, "Ready", "True", LONG).await;
    env.db
        .exec("INSERT INTO orders VALUES (900, repeat('x', 5000))")
        .await;
    wait_for(LONG, "Degraded=True RecordsDeadLettered", || async {
        env.condition(&name, "Degraded")
            .await
            .is_some_and(|c| c == ("True".into(), "RecordsDeadLettered".into()))
    })
    .await;
    let c = env.get(&name).await.expect("connector");
    let conditions = c.status.expect("status").conditions;
    let degraded =
        pgkafka_crds::conditions::find(&conditions, ConditionType::Degraded).expect("Degraded");
    assert!(
        degraded.message.contains("1 records"),
        "{}",
        degraded.message
    );
    let described = env.kubectl_ok(&["describe", "pgkc", &name]);
    assert!(
        described
            .split("Events:")
            .nth(1)
            .is_some_and(|e| e.contains("RecordsDeadLettered")),
        "{described}"
    );
    env.kubectl_ok(&[
        "annotate",
        "pgkc",
        &name,
        "pgkafka.io/dead-letters-acknowledged=1",
        "--overwrite",
    ]);
    env.wait_condition(&name, "Degraded", "False", LONG).await;
    operator.assert_never_forbidden();
}
