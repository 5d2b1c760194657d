//! What every node scenario stands on: the node, PostgreSQL and Tansu on the
//! host's bridge address, one namespace with the connectors' Secret, the
//! chart's release, and the user's view of a connector.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use pgkafka_crds::{PgKafkaConnector, ReclaimPolicy, SnapshotMode};
use pgkafka_tests::node::{KubeNode, HOST_ADDRESS};
use pgkafka_tests::{consume, distinct_ids, wait_for, Broker, Consumed, Manifest, TestDb};

/// The release namespace and name of the chart.
pub const RELEASE_NS: &str = "pgkafka-system";
pub const RELEASE: &str = "pgkafka";
/// Pods start in seconds here; images are never pulled.
pub const POD_START: Duration = Duration::from_secs(90);
/// Status is refreshed every 15 s by default, and on every owned change.
pub const STATUS: Duration = Duration::from_secs(60);
/// The role the connectors log in as, its first password in Secret `pg`.
pub const ROLE: &str = "cdc";
pub const FIRST_PASSWORD: &str = "first-password";

pub struct Stage<'a> {
    pub node: KubeNode,
    pub db: &'a TestDb,
    pub broker: &'a Broker,
    pub ns: String,
    prefix: String,
}

/// A connector of the scenarios.
pub struct Connector {
    pub name: String,
    pub slot: String,
    pub topic: String,
}

impl<'a> Stage<'a> {
    pub fn new(node: KubeNode, db: &'a TestDb, broker: &'a Broker, prefix: &str) -> Stage<'a> {
        let ns = node.namespace("pgkc");
        node.kubectl_ok(&[
            "-n",
            &ns,
            "create",
            "secret",
            "generic",
            "pg",
            &format!("--from-literal=password={FIRST_PASSWORD}"),
        ]);
        Stage {
            node,
            db,
            broker,
            ns,
            prefix: prefix.to_owned(),
        }
    }

    /// `helm install` of the chart: the imported image, never pulled, two
    /// replicas (leader election on).
    pub async fn install_chart(&self) {
        self.db
            .exec(&format!(
                "CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{FIRST_PASSWORD}';
                 CREATE TABLE orders (id int PRIMARY KEY, note text);
                 CREATE TABLE big (id bigint PRIMARY KEY, note text);"
            ))
            .await;
        let image =
            std::env::var("PGKAFKA_IMAGE").unwrap_or_else(|_| "localhost/pgkafka:dev".into());
        let (repository, tag) = image.rsplit_once(':').expect("PGKAFKA_IMAGE is name:tag");
        self.node.helm_ok(&[
            "install",
            RELEASE,
            "charts/pgkafka-operator",
            "--namespace",
            RELEASE_NS,
            "--create-namespace",
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "replicas=2",
            "--wait",
            "--timeout",
            "180s",
        ]);
        let pods = self.operator_pods().await;
        let ready = pods
            .iter()
            .filter(|p| pgkafka_tests::node::pod_ready(p))
            .count();
        assert_eq!(ready, 2, "two operator pods Ready after helm --wait");
    }

    pub async fn operator_pods(&self) -> Vec<Pod> {
        self.node
            .pods(RELEASE_NS, "app.kubernetes.io/name=pgkafka-operator")
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// A connector on `table` logging in as the scenarios' role at the
    /// host's bridge address, deleting its slot and publication with it.
    pub fn manifest(&self, name: &str, listeners_yaml: &str) -> Manifest {
        Manifest::new(
            name,
            self.db,
            &self.broker.bootstrap,
            &self.prefix,
            listeners_yaml,
        )
        .spec(|s| {
            s.postgres.host = HOST_ADDRESS.into();
            s.postgres.user = Some(ROLE.into());
            s.reclaim_policy = ReclaimPolicy::Delete;
        })
    }

    /// The main connector: `orders`, initial snapshot.
    pub fn main_connector(&self) -> Connector {
        let name = format!("orders-{}", std::process::id());
        Connector {
            slot: format!("{}_slot", name.replace('-', "_")),
            topic: format!("{}.public.orders", self.prefix),
            name,
        }
    }

    pub fn apply_main(&self, c: &Connector) {
        let m = self
            .manifest(&c.name, "    - table: public.orders")
            .spec(|s| {
                s.slot.name = c.slot.clone();
                s.publication.name = format!("{}_pub", c.slot);
                s.snapshot.mode = SnapshotMode::Initial;
            });
        self.node.apply(&self.ns, &m.yaml());
    }

    pub fn engine_selector(name: &str) -> String {
        format!("app.kubernetes.io/name=pgkafka-engine,app.kubernetes.io/instance={name}")
    }

    pub async fn engine_pod(&self, name: &str) -> Pod {
        self.node
            .ready_pod(&self.ns, &Stage::engine_selector(name), POD_START)
            .await
    }

    pub async fn get(&self, name: &str) -> Option<PgKafkaConnector> {
        Api::<PgKafkaConnector>::namespaced(self.node.client().await, &self.ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()
    }

    /// (status, reason) of condition `kind`.
    pub async fn condition(&self, name: &str, kind: &str) -> Option<(String, String)> {
        let client = self.node.client().await;
        pgkafka_tests::cluster::connector_condition(&client, &self.ns, name, kind).await
    }

    pub async fn wait_condition(&self, name: &str, kind: &str, status: &str, limit: Duration) {
        let what = format!("{kind}={status} on {name}");
        wait_for(limit, &what, || async {
            self.condition(name, kind)
                .await
                .is_some_and(|(s, _)| s == status)
        })
        .await;
    }

    /// Every record of `topic` once its distinct ids are `expected`, or
    /// what arrived by the deadline.
    pub async fn records(&self, topic: &str, expected: &[i64]) -> Vec<Consumed> {
        let deadline = std::time::Instant::now() + STATUS;
        loop {
            let (bootstrap, t) = (self.broker.bootstrap.clone(), topic.to_owned());
            let records = tokio::task::spawn_blocking(move || {
                consume(&bootstrap, &t, usize::MAX, Duration::from_secs(3))
            })
            .await
            .expect("consumer");
            let ids = distinct_ids(&records);
            if expected.iter().all(|id| ids.contains(id)) || std::time::Instant::now() > deadline {
                return records;
            }
        }
    }

    /// Asserts every id in `expected` arrived in `topic`.
    pub async fn assert_arrived(&self, topic: &str, expected: &[i64]) -> Vec<Consumed> {
        let records = self.records(topic, expected).await;
        let ids = distinct_ids(&records);
        let missing: Vec<&i64> = expected.iter().filter(|id| !ids.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "ids {missing:?} never reached {topic} (got {ids:?})"
        );
        records
    }
}
