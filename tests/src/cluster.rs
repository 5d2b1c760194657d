//! A real Kubernetes API server (kube-apiserver + etcd, the envtest pair) for
//! the operator's tests: the CRD from `manifests/crd.yaml`, the operator's
//! ServiceAccount and RBAC rendered from the chart, a token minted for that
//! ServiceAccount, and the operator run as a process on that token, so the
//! chart's least-privilege RBAC is what is tested.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::{dev_env, free_port, repo_root, unique};

/// The release namespace the chart is rendered into.
pub const OPERATOR_NAMESPACE: &str = "pgkafka-system";

/// A running API server with the CRD and the chart's RBAC installed.
pub struct ApiServer {
    /// HTTPS port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    admin_kubeconfig: PathBuf,
    operator_kubeconfig: PathBuf,
    /// What the server said while the CRD was applied (warnings included).
    pub crd_apply_output: String,
}

impl ApiServer {
    /// The API server shared by this test process; `None` when no binaries
    /// exist outside CI (a loud line says how to get them). Under `CI=true`
    /// missing binaries are a failure.
    pub fn shared() -> Option<&'static ApiServer> {
        static SERVER: OnceLock<Option<ApiServer>> = OnceLock::new();
        SERVER.get_or_init(ApiServer::start).as_ref()
    }

    fn start() -> Option<ApiServer> {
        let found = Command::new("bash")
            .arg(repo_root().join("tests/dev-env.sh"))
            .arg("envtest-dir")
            .stderr(Stdio::inherit())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            let how =
                "no kube-apiserver and etcd: set KUBEBUILDER_ASSETS to a directory holding them \
                       (`setup-envtest use 1.36 -p path` prints one) or provide ../shared/envtest";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{how}");
            eprintln!("\n*** SKIPPING the API-server tests: {how} ***\n");
            crate::record_tier("real kube-apiserver + etcd", &format!("SKIPPED ({how})"));
            return None;
        }
        let dir = std::env::temp_dir().join(unique("pgkafka-kube"));
        let pid = std::process::id().to_string();
        let up = dev_env(&["kube-up", &dir.to_string_lossy(), &pid]);
        crate::record_tier("real kube-apiserver + etcd", "ran");
        let (port, token) = up
            .split_once(' ')
            .unwrap_or_else(|| panic!("kube-up printed {up:?}"));
        let port: u16 = port.parse().expect("kube-up port");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&admin_kubeconfig, port, token);
        let mut server = ApiServer {
            port,
            operator_kubeconfig: dir.join("operator.kubeconfig"),
            dir,
            admin_kubeconfig,
            crd_apply_output: String::new(),
        };
        server.install();
        Some(server)
    }

    /// CRD, operator namespace, the chart's ServiceAccount and RBAC, and a
    /// token for that ServiceAccount.
    fn install(&mut self) {
        let crd = repo_root().join("manifests/crd.yaml");
        self.crd_apply_output = self.kubectl_ok(&["apply", "--server-side", "-f", &path(&crd)]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/pgkafkaconnectors.pgkafka.io",
            "--timeout=30s",
        ]);
        self.kubectl_ok(&["create", "namespace", OPERATOR_NAMESPACE]);
        let rbac = self.dir.join("rbac.yaml");
        std::fs::write(&rbac, chart_rbac()).expect("write rbac.yaml");
        self.kubectl_ok(&["apply", "-f", &path(&rbac)]);
        let token = self.kubectl_ok(&[
            "create",
            "token",
            "pgkafka-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "--duration=4h",
        ]);
        write_kubeconfig(&self.operator_kubeconfig, self.port, token.trim());
    }

    /// A client with the static admin token (bypasses RBAC: the test's own
    /// hands, never the operator's).
    pub async fn admin(&self) -> Client {
        client_from(&self.admin_kubeconfig).await
    }

    /// The kubeconfig holding the operator ServiceAccount's token.
    pub fn operator_kubeconfig(&self) -> &Path {
        &self.operator_kubeconfig
    }

    /// Runs kubectl as the admin; returns (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let bin = dev_env(&["kubectl-bin"]);
        let out = Command::new(bin)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// kubectl that must succeed; its stdout and stderr together.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed: {stderr}");
        format!("{stdout}{stderr}")
    }

    /// A new namespace for one test.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = unique(prefix).replace('_', "-");
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("namespace");
        Api::<Namespace>::all(self.admin().await)
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        name
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The chart rendered with leader election on, reduced to the ServiceAccount
/// and RBAC objects.
fn chart_rbac() -> String {
    let helm = dev_env(&["helm-bin"]);
    let out = Command::new(helm)
        .args(["template", "pgkafka-operator"])
        .arg(repo_root().join("charts/pgkafka-operator"))
        .args(["--namespace", OPERATOR_NAMESPACE])
        .args(["--set", "leaderElection.enabled=true"])
        .output()
        .expect("helm template");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let kinds = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    text.split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| kinds.iter().any(|k| l.trim() == format!("kind: {k}")))
        })
        .map(|doc| format!("---{}\n", doc.trim_start_matches("---")))
        .collect()
}

fn write_kubeconfig(file: &Path, port: u16, token: &str) {
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: envtest, cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}}}]\n\
         users: [{{name: envtest, user: {{token: \"{token}\"}}}}]\n\
         contexts: [{{name: envtest, context: {{cluster: envtest, user: envtest}}}}]\n\
         current-context: envtest\n"
    );
    std::fs::write(file, text).expect("write kubeconfig");
}

pub(crate) async fn client_from(kubeconfig: &Path) -> Client {
    pgkafka_postgres::tls::install_default_provider();
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&text).expect("kubeconfig parses"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// (status, reason) of condition `kind` of connector `name` in `ns`.
pub async fn connector_condition(
    client: &Client,
    ns: &str,
    name: &str,
    kind: &str,
) -> Option<(String, String)> {
    let c = Api::<pgkafka_crds::PgKafkaConnector>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let cond = c.status?.conditions.into_iter().find(|x| x.type_ == kind)?;
    Some((cond.status, cond.reason))
}

/// The operator, run as a process on its ServiceAccount's token.
pub struct Operator {
    child: Option<Child>,
    /// Its log (JSON lines).
    pub log: PathBuf,
    /// Its /metrics port.
    pub metrics_port: u16,
    /// `POD_NAME`, its identity in the Lease.
    pub name: String,
}

impl Operator {
    /// Starts `bin` watching `namespace`, refreshing status every second
    /// (unless `extra` gives `--refresh-seconds`), reading engine addresses
    /// from `endpoints`; `extra` args appended.
    pub fn start(
        bin: &str,
        api: &ApiServer,
        namespace: &str,
        endpoints: &Path,
        extra: &[&str],
    ) -> Operator {
        let name = unique("operator").replace('_', "-");
        let log = api.dir.join(format!("{name}.log"));
        let metrics_port = free_port();
        let file = std::fs::File::create(&log).expect("operator log");
        let child = Command::new(bin)
            .env("KUBECONFIG", api.operator_kubeconfig())
            .env("POD_NAME", &name)
            .env("RUST_LOG", "info,kube=warn")
            .args(["--namespace", namespace])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(if extra.contains(&"--refresh-seconds") {
                &[][..]
            } else {
                &["--refresh-seconds", "1"][..]
            })
            .arg("--engine-endpoints-dir")
            .arg(endpoints)
            .args(["--engine-image", "pgkafka:test"])
            .args(extra)
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        Operator {
            child: Some(child),
            log,
            metrics_port,
            name,
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics when the API server refused the operator anything: the
    /// chart's RBAC must be enough.
    pub fn assert_never_forbidden(&self) {
        let log = self.log_text();
        let forbidden: Vec<&str> = log
            .lines()
            .filter(|l| l.to_lowercase().contains("forbidden"))
            .collect();
        assert!(
            forbidden.is_empty(),
            "the operator was refused:\n{}",
            forbidden.join("\n")
        );
    }

    /// The sum of the series of its /metrics whose line starts with
    /// `prefix` (a name, or a name and the start of its labels).
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        http_get_text(self.metrics_port, "/metrics")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Its resident set (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Its reconcile count, from its /metrics.
    pub fn reconciles(&self) -> u64 {
        let Some(text) = http_get_text(self.metrics_port, "/metrics") else {
            return 0;
        };
        text.lines()
            .filter(|l| l.starts_with("pgkafka_operator_reconciles_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Stops it with SIGTERM (what the kubelet sends) and waits for it to
    /// exit; its exit status.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok()?.code()
    }

    /// Kills it with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// GET `path` on 127.0.0.1:`port`; the body when the answer is 200.
pub fn http_get_text(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}
