//! Reconcile scenarios against the mock API server: which requests the
//! operator makes, with which field manager, and what the status says.

use serde_json::json;

use crate::fixtures::{engine, healthy_slot, not_found_answer, Answer, ApiServer, Doc, Scenario};
use crate::postgres::Dropped;
use crate::probe::SnapshotSignal;
use crate::reconcile::{reconcile, FIELD_MANAGER};
use pgkafka_crds::conditions::{ConditionType, Reason};
use pgkafka_crds::report::{EngineStatus, SnapshotReport, SnapshotState, TableSnapshot};
use pgkafka_crds::{ConnectorState, ReclaimPolicy};

#[tokio::test]
async fn a_new_connector_gets_the_finalizer_first() {
    let s = Scenario::new().engine(engine(true)).start();
    let (api, db) = (&s.api, &s.db);
    reconcile(Doc::test().build(), s.ctx.clone())
        .await
        .expect("reconciles");
    let patches = api.find("PATCH", "/pgkafkaconnectors/orders");
    assert_eq!(patches.len(), 1, "{:?}", api.seen);
    assert!(
        patches[0].body.to_string().contains("pgkafka.io/cleanup"),
        "{:?}",
        patches[0].body
    );
    assert!(
        db.calls().is_empty(),
        "nothing is provisioned before the finalizer is in place"
    );
}

#[tokio::test]
async fn apply_provisions_applies_children_with_ssa_and_reports_ready() {
    let s = Scenario::new()
        .slot(healthy_slot())
        .engine(engine(true))
        .start();
    let (api, db) = (&s.api, &s.db);
    let ctx_metrics = s.ctx.metrics.clone();
    reconcile(Doc::test().finalized().build(), s.ctx.clone())
        .await
        .expect("reconciles");

    assert_eq!(
        db.calls(),
        ["provision as cdc with password s3cret", "slot_state"]
    );
    for kind in [
        "/serviceaccounts/orders-engine",
        "/configmaps/orders-engine",
        "/services/orders-engine",
        "/deployments/orders-engine",
    ] {
        let applied = api.find("PATCH", kind);
        assert_eq!(applied.len(), 1, "{kind} applied once");
        assert!(
            applied[0]
                .uri
                .contains(&format!("fieldManager={FIELD_MANAGER}"))
                && applied[0].uri.contains("force=true"),
            "{}",
            applied[0].uri
        );
        assert_eq!(
            applied[0].body["metadata"]["ownerReferences"][0]["kind"],
            "PgKafkaConnector"
        );
    }
    let cm = &api.find("PATCH", "/configmaps/")[0].body;
    assert!(
        !cm.to_string().contains("s3cret"),
        "no secret value in the ConfigMap"
    );
    let status_patch = &api.find("PATCH", "/pgkafkaconnectors/orders/status")[0];
    assert!(status_patch
        .uri
        .contains(&format!("fieldManager={FIELD_MANAGER}")));
    assert_eq!(
        api.condition(ConditionType::Ready),
        ("True", Some(Reason::Streaming))
    );
    assert_eq!(
        api.condition(ConditionType::SlotHealthy),
        ("True", Some(Reason::SlotReserved))
    );
    let status = api.last_status();
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["replication"]["confirmedFlushLSN"], "0/16B3748");
    assert_eq!(status["replication"]["lagBytes"], 4096);
    assert!(
        api.event_reasons().contains(&"Streaming".to_owned()),
        "{:?}",
        api.event_reasons()
    );
    let metrics = String::from_utf8(ctx_metrics.render()).expect("utf8");
    assert!(
        metrics.contains(r#"pgkafka_operator_connector_ready{name="orders",namespace="shop"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"pgkafka_operator_slot_lag_bytes{name="orders",namespace="shop",slot="orders_slot"} 4096"#
    ));
}

#[tokio::test]
async fn not_ready_while_the_engine_does_not_stream() {
    let s = Scenario::new().slot(healthy_slot()).start();
    let api = &s.api;
    reconcile(Doc::test().finalized().build(), s.ctx.clone())
        .await
        .expect("reconciles");
    assert_eq!(
        api.condition(ConditionType::Ready),
        ("False", Some(Reason::EngineUnreachable))
    );
}

#[tokio::test]
async fn paused_scales_the_engine_to_zero_and_says_so() {
    let s = Scenario::new()
        .slot(healthy_slot())
        .engine(engine(true))
        .start();
    let api = &s.api;
    let paused = Doc::test()
        .finalized()
        .spec(|spec| spec.state = ConnectorState::Paused);
    reconcile(paused.build(), s.ctx.clone())
        .await
        .expect("reconciles");
    assert_eq!(
        api.find("PATCH", "/deployments/")[0].body["spec"]["replicas"],
        0
    );
    assert_eq!(
        api.condition(ConditionType::Ready),
        ("False", Some(Reason::Paused))
    );
}

#[tokio::test]
async fn a_missing_secret_is_a_condition_and_a_retry_not_a_crash() {
    let s = Scenario::new()
        .answer(not_found_answer("/secrets/shop-db", "secrets \"shop-db\""))
        .engine(engine(true))
        .start();
    let (api, db) = (&s.api, &s.db);
    let err = reconcile(Doc::test().finalized().build(), s.ctx.clone())
        .await
        .expect_err("fails");
    assert_eq!(err.reason(), Reason::SecretMissing);
    assert_eq!(
        api.condition(ConditionType::Ready),
        ("False", Some(Reason::SecretMissing))
    );
    assert!(db.calls().is_empty());
    assert!(
        api.find("PATCH", "/deployments/").is_empty(),
        "no engine without credentials"
    );
}

#[tokio::test]
async fn an_invalid_spec_names_the_field_and_waits_for_a_change() {
    let s = Scenario::new().engine(engine(true)).start();
    let api = &s.api;
    let bad = Doc::test()
        .finalized()
        .spec(|spec| spec.slot.name = "Bad-Slot".into());
    let action = reconcile(bad.build(), s.ctx.clone()).await;
    assert!(
        action.is_ok(),
        "no error loop for a spec only the user can fix"
    );
    assert_eq!(
        api.condition(ConditionType::Ready),
        ("False", Some(Reason::InvalidSpec))
    );
    let message = api.last_status()["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("spec.slot.name"), "{message}");
}

#[tokio::test]
async fn api_errors_surface_with_their_reason() {
    for code in [409u16, 422] {
        let s = Scenario::new()
            .answer(Answer {
                method: "PATCH",
                contains: "/deployments/",
                code,
                body: json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": code, "message": "refused"}),
            })
            .slot(healthy_slot())
            .engine(engine(true))
            .start();
        let api = &s.api;
        let err = reconcile(Doc::test().finalized().build(), s.ctx.clone())
            .await
            .expect_err("fails");
        assert_eq!(err.reason(), Reason::KubernetesApiError, "{code}");
        assert_eq!(
            api.condition(ConditionType::Degraded),
            ("True", Some(Reason::KubernetesApiError)),
            "{code}"
        );
    }
}

#[tokio::test]
async fn delete_with_retain_keeps_slot_and_publication() {
    let s = Scenario::new().start();
    let (api, db) = (&s.api, &s.db);
    reconcile(
        Doc::test().deleting(ReclaimPolicy::Retain).build(),
        s.ctx.clone(),
    )
    .await
    .expect("cleans up");
    assert!(db.calls().is_empty(), "nothing dropped");
    let removal = api.find("PATCH", "/pgkafkaconnectors/orders");
    assert_eq!(removal.len(), 1, "finalizer removed");
    assert!(
        removal[0].body.to_string().contains("remove")
            || removal[0].body.to_string().contains("finalizers")
    );
    assert!(api.event_reasons().contains(&"Retained".to_owned()));
}

#[tokio::test]
async fn delete_with_delete_stops_the_engine_then_drops() {
    let s = Scenario::new().start();
    let (api, db) = (&s.api, &s.db);
    reconcile(
        Doc::test().deleting(ReclaimPolicy::Delete).build(),
        s.ctx.clone(),
    )
    .await
    .expect("cleans up");
    assert_eq!(api.find("DELETE", "/deployments/orders-engine").len(), 1);
    assert_eq!(db.calls(), ["drop_all"]);
    assert_eq!(
        api.find("PATCH", "/pgkafkaconnectors/orders").len(),
        1,
        "finalizer removed after the drop"
    );
}

#[tokio::test]
async fn delete_waits_while_the_engine_holds_the_slot() {
    let s = Scenario::new().drop_answer(Dropped::SlotActive).start();
    let api = &s.api;
    let err = reconcile(
        Doc::test().deleting(ReclaimPolicy::Delete).build(),
        s.ctx.clone(),
    )
    .await
    .expect_err("waits");
    assert_eq!(err.reason(), Reason::WaitingForEngine);
    assert!(
        api.find("PATCH", "/pgkafkaconnectors/orders").is_empty(),
        "finalizer kept"
    );
}

#[tokio::test]
async fn the_lease_is_created_taken_when_free_and_refused_when_held() {
    use crate::leader::{try_hold, Timing};
    use k8s_openapi::api::coordination::v1::Lease;
    let lease_api = |client| kube::Api::<Lease>::namespaced(client, "ops");
    // No lease yet: created with us as holder.
    let (api, client) = ApiServer::start(vec![Answer {
        method: "POST",
        contains: "/leases",
        code: 201,
        body: json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "pgkafka-operator"}}),
    }]);
    assert!(try_hold(
        &lease_api(client),
        "pgkafka-operator",
        "me",
        Timing::default()
    )
    .await
    .expect("lease"));
    assert_eq!(
        api.find("POST", "/leases")[0].body["spec"]["holderIdentity"],
        "me"
    );
    // Held by a live replica: not taken, nothing written.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let held = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "pgkafka-operator", "resourceVersion": "5"},
                      "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": now}});
    let (api, client) = ApiServer::start(vec![Answer {
        method: "GET",
        contains: "/leases/",
        code: 200,
        body: held.clone(),
    }]);
    assert!(!try_hold(
        &lease_api(client),
        "pgkafka-operator",
        "me",
        Timing::default()
    )
    .await
    .expect("lease"));
    assert!(api.find("PUT", "/leases/").is_empty());
    // A racing replica wins the compare-and-swap: 409 means not ours.
    let expired = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "pgkafka-operator", "resourceVersion": "5"},
                         "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": "2020-01-01T00:00:00Z"}});
    let (api, client) = ApiServer::start(vec![
        Answer {
            method: "GET",
            contains: "/leases/",
            code: 200,
            body: expired,
        },
        Answer {
            method: "PUT",
            contains: "/leases/",
            code: 409,
            body: json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409}),
        },
    ]);
    assert!(!try_hold(
        &lease_api(client),
        "pgkafka-operator",
        "me",
        Timing::default()
    )
    .await
    .expect("lease"));
    assert_eq!(
        api.find("PUT", "/leases/")[0].body["metadata"]["resourceVersion"],
        "5",
        "compare-and-swap on the version"
    );
}

#[tokio::test]
async fn the_snapshot_annotation_asks_the_engine_once_per_value() {
    let running = EngineStatus {
        snapshot: SnapshotReport {
            tables: vec![TableSnapshot {
                state: SnapshotState::Running,
                rows: 10,
                ..TableSnapshot::pending("public.orders".into())
            }],
        },
        ..engine(true)
    };
    let s = Scenario::new().slot(healthy_slot()).engine(running).start();
    let (api, requests) = (&s.api, &s.snapshot_requests);
    let annotated = Doc::test()
        .finalized()
        .annotated("pgkafka.io/snapshot", "public.orders, public.lines");
    reconcile(annotated.clone().build(), s.ctx.clone())
        .await
        .expect("reconciles");
    assert_eq!(
        requests.lock().map(|r| r.clone()).unwrap_or_default(),
        vec![SnapshotSignal::Execute {
            tables: vec!["public.orders".to_owned(), "public.lines".to_owned()],
            condition: None
        }]
    );
    let status = api.last_status();
    assert_eq!(
        status["snapshot"]["requested"],
        "public.orders, public.lines"
    );
    assert_eq!(status["snapshot"]["summary"], "0/1");
    assert_eq!(status["snapshot"]["tables"][0]["state"], "running");
    assert_eq!(
        api.condition(ConditionType::Snapshotting),
        ("True", Some(Reason::Snapshotting))
    );

    // The same value again (now in the status): not asked twice.
    let again = annotated.status(status);
    reconcile(again.build(), s.ctx.clone())
        .await
        .expect("reconciles");
    assert_eq!(requests.lock().map(|r| r.len()).unwrap_or_default(), 1);
}

#[tokio::test]
async fn pause_follows_its_annotation_and_stop_and_conditions_go_once() {
    let with = |state: SnapshotState| EngineStatus {
        snapshot: SnapshotReport {
            tables: vec![TableSnapshot {
                state,
                rows: 10,
                condition: Some("id > 5".into()),
                ..TableSnapshot::pending("public.orders".into())
            }],
        },
        ..engine(true)
    };
    let s = Scenario::new()
        .slot(healthy_slot())
        .engine(with(SnapshotState::Running))
        .start();
    let doc = Doc::test()
        .finalized()
        .annotated("pgkafka.io/snapshot", "public.orders WHERE id > 5")
        .annotated("pgkafka.io/snapshot-paused", "true")
        .annotated("pgkafka.io/snapshot-stop", "*");
    reconcile(doc.clone().build(), s.ctx.clone())
        .await
        .expect("reconciles");
    assert_eq!(
        s.snapshot_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
        vec![
            SnapshotSignal::Execute {
                tables: vec!["public.orders".to_owned()],
                condition: Some("id > 5".to_owned())
            },
            SnapshotSignal::Stop(vec![]),
            SnapshotSignal::Pause,
        ]
    );
    let status = s.api.last_status();
    assert_eq!(status["snapshot"]["stopRequested"], "*");
    assert_eq!(status["snapshot"]["tables"][0]["condition"], "id > 5");

    // Paused now, the annotation gone: resumed once, nothing else again.
    let s = Scenario::new()
        .slot(healthy_slot())
        .engine(with(SnapshotState::Paused))
        .start();
    let resumed = Doc::test()
        .finalized()
        .annotated("pgkafka.io/snapshot", "public.orders WHERE id > 5")
        .annotated("pgkafka.io/snapshot-stop", "*")
        .status(status);
    reconcile(resumed.build(), s.ctx.clone())
        .await
        .expect("reconciles");
    assert_eq!(
        s.snapshot_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
        vec![SnapshotSignal::Resume]
    );
    assert_eq!(
        s.api.condition(ConditionType::Snapshotting),
        ("False", Some(Reason::SnapshotPaused))
    );
}
