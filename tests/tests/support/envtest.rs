//! The harness of the API-server scenarios: one namespace with its own
//! database, broker, kubelet stand-in and operator, and the user's hands
//! (kubectl as the admin).

use std::path::PathBuf;
use std::time::Duration;

use kube::api::Api;
use kube::Client;
use pgkafka_crds::{PgKafkaConnector, SnapshotMode};
use pgkafka_tests::cluster::{ApiServer, Operator};
use pgkafka_tests::kubelet::Kubelet;
use pgkafka_tests::{consume, distinct_ids, unique, wait_for, Broker, Manifest, Postgres, TestDb};

pub const ENGINE: &str = env!("CARGO_BIN_EXE_engine");
pub const OPERATOR: &str = env!("CARGO_BIN_EXE_operator");
pub const LONG: Duration = Duration::from_secs(90);
/// The operators here refresh status every second: "within a refresh" is
/// given a few of them.
pub const REFRESH: Duration = Duration::from_secs(10);

/// One namespace with its own database, broker, kubelet and operator.
pub struct Env {
    pub api: &'static ApiServer,
    pub client: Client,
    pub ns: String,
    pub db: TestDb,
    pub broker: Broker,
    pub work: PathBuf,
}

impl Env {
    /// `None` when no API server binaries exist (outside CI only).
    pub async fn new(prefix: &str) -> Option<Env> {
        let api = ApiServer::shared()?;
        let ns = api.namespace(prefix).await;
        let work = std::env::temp_dir().join(unique("pgkafka-node"));
        std::fs::create_dir_all(&work).expect("work dir");
        let db = Postgres::shared().fresh_database().await;
        db.exec("CREATE TABLE orders (id int PRIMARY KEY, note text)")
            .await;
        let env = Env {
            client: api.admin().await,
            api,
            ns,
            db,
            broker: Broker::start(),
            work,
        };
        env.kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "pg",
            "--from-literal=password=postgres",
        ]);
        Some(env)
    }

    pub fn kubelet(&self) -> Kubelet {
        Kubelet::start(self.client.clone(), &self.ns, ENGINE, &self.work)
    }

    pub fn operator(&self, kubelet: &Kubelet, extra: &[&str]) -> Operator {
        Operator::start(OPERATOR, self.api, &self.ns, &kubelet.endpoints, extra)
    }

    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        self.api.kubectl(&all)
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?}: {err}");
        out
    }

    /// `kubectl apply -f` of `yaml`; (success, what kubectl printed).
    pub fn apply(&self, yaml: &str) -> (bool, String) {
        let file = self.work.join(format!("{}.yaml", unique("apply")));
        std::fs::write(&file, yaml).expect("manifest file");
        let (ok, out, err) = self.kubectl(&["apply", "-f", &file.to_string_lossy()]);
        (ok, format!("{out}{err}"))
    }

    /// A connector named `name` on slot `slot`, listening to `orders`.
    /// Connector `name` on this namespace's database and broker, capturing
    /// `public.orders` through slot `slot` and publication `<slot>_pub`, with
    /// initial snapshots (the default); tests change it with the builder.
    pub fn connector(&self, name: &str, slot: &str, prefix: &str) -> Manifest {
        Manifest::new(
            name,
            &self.db,
            &self.broker.bootstrap,
            prefix,
            "    - table: public.orders",
        )
        .spec(|s| {
            s.slot.name = slot.into();
            s.publication.name = format!("{slot}_pub");
            s.snapshot.mode = SnapshotMode::Initial;
        })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn get(&self, name: &str) -> Option<PgKafkaConnector> {
        self.api::<PgKafkaConnector>()
            .get_opt(name)
            .await
            .ok()
            .flatten()
    }

    /// (status, reason) of condition `kind`.
    pub async fn condition(&self, name: &str, kind: &str) -> Option<(String, String)> {
        pgkafka_tests::cluster::connector_condition(&self.client, &self.ns, name, kind).await
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

    pub async fn slot_exists(&self, slot: &str) -> bool {
        self.db
            .client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("slots")
            .is_some()
    }

    pub async fn publication_exists(&self, publication: &str) -> bool {
        self.db
            .client
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&publication],
            )
            .await
            .expect("publications")
            .is_some()
    }

    /// How many snapshot rows (`op: r`) `topic` holds.
    pub async fn reads(&self, topic: &str) -> usize {
        let (bootstrap, topic) = (self.broker.bootstrap.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            pgkafka_tests::read_to_end(&bootstrap, &topic)
                .iter()
                .filter(|r| r.value["op"] == "r")
                .count()
        })
        .await
        .expect("reader")
    }

    /// The distinct ids in `topic` once they are `expected` (at-least-once:
    /// a record may arrive twice), or what arrived by the deadline.
    pub async fn ids(&self, topic: &str, expected: &[i64]) -> Vec<i64> {
        let deadline = std::time::Instant::now() + LONG;
        loop {
            let bootstrap = self.broker.bootstrap.clone();
            let topic = topic.to_owned();
            let records = tokio::task::spawn_blocking(move || {
                consume(&bootstrap, &topic, usize::MAX, Duration::from_secs(3))
            })
            .await
            .expect("consumer");
            let ids = distinct_ids(&records);
            if ids == expected || std::time::Instant::now() > deadline {
                return ids;
            }
        }
    }
}

pub fn dns(prefix: &str) -> String {
    unique(prefix).replace('_', "-")
}
