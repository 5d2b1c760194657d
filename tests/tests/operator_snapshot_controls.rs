//! Snapshot controls through annotations, on a real API server with the
//! operator as its ServiceAccount and the real engine (the test plays the
//! kubelet): a snapshot of part of a table (`WHERE` in
//! `pgkafka.io/snapshot`), paused while `pgkafka.io/snapshot-paused` says
//! so and resumed when it goes, a condition PostgreSQL refuses as a
//! Warning Event with its words, and `pgkafka.io/snapshot-stop`. Each shows
//! in `status.snapshot`, the `Snapshotting` condition and Events.

use pgkafka_crds::report::{SnapshotState, TableSnapshot};
use pgkafka_crds::SnapshotMode;
use pgkafka_tests::{unique, wait_for};

// Shared with operator_envtest.rs, which uses the rest of it.
#[allow(dead_code)]
#[path = "support/envtest.rs"]
mod support;
use support::{dns, Env, LONG};

const ROWS: i32 = 100_000;

async fn orders(env: &Env, name: &str) -> Option<TableSnapshot> {
    env.get(name)
        .await?
        .status?
        .snapshot?
        .tables
        .into_iter()
        .find(|t| t.table == "public.orders")
}

async fn wait_state(env: &Env, name: &str, state: SnapshotState) -> TableSnapshot {
    wait_for(
        LONG,
        &format!("status.snapshot: orders {state}"),
        || async { orders(env, name).await.is_some_and(|t| t.state == state) },
    )
    .await;
    orders(env, name).await.unwrap_or_default()
}

/// The Events of `name`, as `kubectl describe` prints them.
fn events(env: &Env, name: &str) -> String {
    let described = env.kubectl_ok(&["describe", "pgkc", name]);
    described
        .split("Events:")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn annotate(env: &Env, name: &str, annotations: &[&str]) {
    let mut args = vec!["annotate", "pgkc", name];
    args.extend_from_slice(annotations);
    args.push("--overwrite");
    env.kubectl_ok(&args);
}

#[tokio::test(flavor = "multi_thread")]
async fn annotations_pause_resume_narrow_and_stop_snapshots() {
    let Some(env) = Env::new("ctl").await else {
        return;
    };
    env.db
        .exec(&format!(
            "INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, {ROWS}) g"
        ))
        .await;
    let kubelet = env.kubelet();
    let operator = env.operator(&kubelet, &[]);
    let (name, slot, prefix) = (dns("ctl"), unique("ctl"), unique("ctl"));
    let m = env.connector(&name, &slot, &prefix).spec(|s| {
        s.snapshot.mode = SnapshotMode::Never;
        s.snapshot.chunk_size = 100;
    });
    let (ok, out) = env.apply(&m.yaml());
    assert!(ok, "{out}");
    env.wait_condition(&name, "Ready", "True", LONG).await;

    // Paused from the start: the request begins, the next reconcile pauses it.
    annotate(
        &env,
        &name,
        &[
            "pgkafka.io/snapshot-paused=true",
            "pgkafka.io/snapshot=public.orders WHERE id % 2 = 0",
        ],
    );
    let paused = wait_state(&env, &name, SnapshotState::Paused).await;
    assert_eq!(paused.condition.as_deref(), Some("id % 2 = 0"));
    assert!(paused.rows < (ROWS / 2) as u64, "{paused:?}");
    env.wait_condition(&name, "Snapshotting", "False", LONG)
        .await;
    assert_eq!(
        env.condition(&name, "Snapshotting").await.map(|c| c.1),
        Some("SnapshotPaused".to_owned())
    );
    let seen = events(&env, &name);
    assert!(
        seen.contains("SnapshotRequested") && seen.contains("where id % 2 = 0"),
        "{seen}"
    );
    assert!(seen.contains("SnapshotPaused"), "{seen}");

    // The annotation gone: resumed, to the end, with its condition.
    env.kubectl_ok(&["annotate", "pgkc", &name, "pgkafka.io/snapshot-paused-"]);
    let done = wait_state(&env, &name, SnapshotState::Done).await;
    assert_eq!(done.rows, (ROWS / 2) as u64, "{done:?}");
    assert!(events(&env, &name).contains("SnapshotResumed"));

    // A condition PostgreSQL refuses: a Warning with its words, nothing run.
    annotate(
        &env,
        &name,
        &["pgkafka.io/snapshot=public.orders WHERE nope > 1"],
    );
    wait_for(LONG, "the refusal as an Event", || async {
        events(&env, &name).contains("SnapshotRefused")
    })
    .await;
    let seen = events(&env, &name);
    assert!(seen.contains("column \"nope\" does not exist"), "{seen}");
    assert_eq!(
        orders(&env, &name).await.map(|t| t.state),
        Some(SnapshotState::Done)
    );

    // Stopped: paused first so it cannot end before the stop arrives.
    annotate(
        &env,
        &name,
        &[
            "pgkafka.io/snapshot-paused=true",
            "pgkafka.io/snapshot=public.orders",
        ],
    );
    wait_state(&env, &name, SnapshotState::Paused).await;
    annotate(&env, &name, &["pgkafka.io/snapshot-stop=*"]);
    let stopped = wait_state(&env, &name, SnapshotState::Stopped).await;
    assert!(stopped.finished_ms.is_some() && stopped.condition.is_none());
    let c = env.get(&name).await.expect("connector");
    let snapshot = c.status.and_then(|s| s.snapshot).expect("snapshot status");
    assert_eq!(snapshot.stop_requested.as_deref(), Some("*"));
    assert!(events(&env, &name).contains("SnapshotStopped"));
    operator.assert_never_forbidden();
}
