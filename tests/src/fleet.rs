//! Many connectors under one operator, on the real API server with the
//! test playing the kubelet (each engine a real process on a real
//! PostgreSQL and Tansu): how long until all are Ready, what the operator
//! asks of the API server once nothing changes, its memory, and how soon
//! one changed connector is handled while all the others reconcile.
//! Shared by the test (`tests/tests/operator_fleet.rs`, 20 connectors) and
//! the benchmark (100).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use pgkafka_crds::{PgKafkaConnector, SnapshotMode};

use crate::cluster::{ApiServer, Operator};
use crate::kubelet::Kubelet;
use crate::{unique, Broker, Manifest, Postgres};

/// What was measured.
#[derive(Debug)]
pub struct FleetFigures {
    /// Connectors applied.
    pub connectors: usize,
    /// From `kubectl apply` of all of them to all `Ready=True`.
    pub to_ready: Duration,
    /// Requests other than watches the operator sent per connector per
    /// minute while nothing changed (status refreshed every `refresh`).
    pub requests_per_connector_minute: f64,
    /// Requests other than watches the operator sent from its start until
    /// the rest began (applying, provisioning, first statuses).
    pub requests_until_rest: f64,
    /// The requests counted at rest, by verb (watches included).
    pub at_rest_by_verb: Vec<(String, f64)>,
    /// How long the operator was watched at rest.
    pub rest: Duration,
    /// Reconciles run at rest.
    pub reconciles_at_rest: u64,
    /// WAL the server wrote while at rest (bytes): progress the statuses
    /// may rightly show.
    pub wal_at_rest: i64,
    /// What of one connector's status differed between the start and the
    /// end of the rest (`field: before -> after`).
    pub status_changes: Vec<String>,
    /// Its resident set at the end, KiB.
    pub operator_rss_kib: Option<u64>,
    /// One connector paused while every other one was touched: until its
    /// Deployment had no replica.
    pub changed_handled: Duration,
}

const VERBS: [&str; 8] = [
    "get", "list", "watch", "create", "update", "patch", "delete", "other",
];

/// Runs the scenario with `n` connectors, the operator refreshing status
/// every `refresh_seconds` (its default is 15), watched at rest for `rest`.
/// `None` when there is no API server here.
pub async fn run(
    n: usize,
    (engine, operator): (&str, &str),
    refresh_seconds: u64,
    rest: Duration,
) -> Option<FleetFigures> {
    let api = ApiServer::shared()?;
    let ns = api.namespace("fleet").await;
    let client = api.admin().await;
    let work: PathBuf = std::env::temp_dir().join(unique("pgkafka-fleet"));
    std::fs::create_dir_all(&work).expect("work dir");
    // A cluster of its own: a slot and a walsender per connector.
    let pg = Postgres::start_for(n + 4);
    let db = pg.fresh_database().await;
    db.exec("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        .await;
    let broker = Broker::start();
    let kubectl = |args: &[&str]| {
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        api.kubectl_ok(&all)
    };
    kubectl(&[
        "create",
        "secret",
        "generic",
        "pg",
        "--from-literal=password=postgres",
    ]);
    let kubelet = Kubelet::start(client.clone(), &ns, engine, &work);
    let refresh = refresh_seconds.to_string();
    let op = Operator::start(
        operator,
        api,
        &ns,
        &kubelet.endpoints,
        &["--refresh-seconds", &refresh],
    );

    let manifests: Vec<String> = (0..n)
        .map(|i| {
            Manifest::new(
                &format!("c{i:03}"),
                &db,
                &broker.bootstrap,
                "fleet",
                "    - table: public.orders",
            )
            .spec(|s| {
                s.slot.name = format!("fleet_{i:03}");
                s.publication.name = format!("fleet_{i:03}_pub");
                s.snapshot.mode = SnapshotMode::Never;
            })
            .yaml()
        })
        .collect();
    let file = work.join("fleet.yaml");
    std::fs::write(&file, manifests.join("---\n")).expect("manifests");
    let applied = Instant::now();
    kubectl(&["apply", "-f", &file.to_string_lossy()]);
    let connectors: Api<PgKafkaConnector> = Api::namespaced(client.clone(), &ns);
    wait_ready(&connectors, n, Duration::from_secs(60 + 6 * n as u64), &op).await;
    let to_ready = applied.elapsed();

    // At rest: let the last status writes land, then count.
    tokio::time::sleep(Duration::from_secs(2 * refresh_seconds + 2)).await;
    let (before, reconciled) = (by_verb(&op), op.reconciles());
    let status_of = || async {
        let c = connectors.get("c000").await.ok();
        c.and_then(|c| c.status)
            .map(|s| serde_json::to_value(s).unwrap_or_default())
    };
    let (wal_before, status_before) = (wal_bytes(&db).await, status_of().await);
    tokio::time::sleep(rest).await;
    let after = by_verb(&op);
    let (wal_after, status_after) = (wal_bytes(&db).await, status_of().await);
    let status_changes = differences("status", status_before.as_ref(), status_after.as_ref());
    let reconciles_at_rest = op.reconciles() - reconciled;
    let wal_at_rest = wal_after - wal_before;
    let at_rest_by_verb: Vec<(String, f64)> = VERBS
        .iter()
        .zip(after.iter().zip(&before))
        .map(|(v, (a, b))| ((*v).to_owned(), a - b))
        .collect();
    let requests: f64 = at_rest_by_verb
        .iter()
        .filter(|(v, _)| v != "watch")
        .map(|(_, d)| d)
        .sum();
    let requests_per_connector_minute = requests / n as f64 / (rest.as_secs_f64() / 60.0);
    let requests_until_rest: f64 = VERBS
        .iter()
        .zip(&before)
        .filter(|(v, _)| **v != "watch")
        .map(|(_, b)| b)
        .sum();

    // Every connector touched (a full reconcile each), one paused meanwhile.
    let touched = Instant::now();
    kubectl(&[
        "annotate",
        "pgkc",
        "--all",
        "fleet/touched=1",
        "--overwrite",
    ]);
    kubectl(&[
        "patch",
        "pgkc",
        "c000",
        "--type=merge",
        "-p",
        r#"{"spec":{"state":"paused"}}"#,
    ]);
    let deployments: Api<Deployment> = Api::namespaced(client, &ns);
    let paused = loop {
        let replicas = deployments
            .get_opt("c000-engine")
            .await
            .ok()
            .flatten()
            .map(|d| d.spec)
            .and_then(|s| s.replicas);
        if replicas == Some(0) {
            break touched.elapsed();
        }
        assert!(
            touched.elapsed() < Duration::from_secs(120),
            "c000 never paused:\n{}",
            op.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    op.assert_never_forbidden();
    Some(FleetFigures {
        connectors: n,
        to_ready,
        requests_per_connector_minute,
        requests_until_rest,
        at_rest_by_verb,
        rest,
        reconciles_at_rest,
        wal_at_rest,
        status_changes,
        operator_rss_kib: op.rss_kib(),
        changed_handled: paused,
    })
}

/// The server's WAL position, in bytes.
async fn wal_bytes(db: &crate::TestDb) -> i64 {
    db.client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// The leaves that differ between `a` and `b`, as `path: a -> b`.
fn differences(
    path: &str,
    a: Option<&serde_json::Value>,
    b: Option<&serde_json::Value>,
) -> Vec<String> {
    match (a, b) {
        (Some(serde_json::Value::Object(x)), Some(serde_json::Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .flat_map(|k| differences(&format!("{path}.{k}"), x.get(k), y.get(k)))
                .collect()
        }
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![format!("{path}: {a:?} -> {b:?}")],
    }
}

/// The operator's API requests so far, in [`VERBS`] order.
fn by_verb(op: &Operator) -> Vec<f64> {
    VERBS
        .iter()
        .map(|v| {
            op.metric_sum(&format!(
                "pgkafka_operator_api_requests_total{{verb=\"{v}\"}}"
            ))
        })
        .collect()
}

async fn wait_ready(connectors: &Api<PgKafkaConnector>, n: usize, limit: Duration, op: &Operator) {
    let start = Instant::now();
    loop {
        let list = connectors
            .list(&Default::default())
            .await
            .expect("list connectors");
        let ready = list
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|x| x.type_ == "Ready" && x.status == "True")
                })
            })
            .count();
        if ready == n {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{ready} of {n} connectors Ready after {limit:?}:\n{}",
            op.log_text()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
