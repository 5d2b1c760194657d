//! A real single-node Kubernetes (`../shared/kube-node/`, started by
//! `tests/node/tier.sh`): the user's hands on it (kubectl and helm with the
//! admin kubeconfig) and the node's own (containerd's `ctr`, and the
//! container's processes seen from the host, since the image has no shell).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;

use crate::{dev_env, repo_root, unique};

/// The node's address on its bridge: what pods reach the host at.
pub const HOST_ADDRESS: &str = "10.244.0.1";

/// A running node, from `PGKAFKA_KUBE_NODE_RUN` (its run directory).
pub struct KubeNode {
    run: PathBuf,
    kubectl: String,
    helm: String,
}

impl KubeNode {
    /// The node `tests/node/tier.sh` started; panics without one (this test
    /// target is built only for that tier).
    pub fn from_env() -> KubeNode {
        let run = std::env::var_os("PGKAFKA_KUBE_NODE_RUN")
            .map(PathBuf::from)
            .expect("PGKAFKA_KUBE_NODE_RUN: run through tests/node/tier.sh");
        assert!(
            run.join("kubeconfig").is_file(),
            "no kubeconfig in {}: is the node up?",
            run.display()
        );
        KubeNode {
            run,
            kubectl: dev_env(&["kubectl-bin"]),
            helm: dev_env(&["helm-bin"]),
        }
    }

    /// The admin kubeconfig.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.run.join("kubeconfig")
    }

    /// The kubectl binary.
    pub fn kubectl_path(&self) -> &str {
        &self.kubectl
    }

    /// A client with the node's admin kubeconfig.
    pub async fn client(&self) -> Client {
        crate::cluster::client_from(&self.kubeconfig_path()).await
    }

    /// kubectl as the admin; (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        run(&self.kubectl, &self.kubeconfig_path(), args)
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed: {err}");
        out
    }

    /// helm as the admin, from the repository root; its stdout.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = run(&self.helm, &self.kubeconfig_path(), args);
        assert!(ok, "helm {args:?} failed: {err}");
        out
    }

    /// `kubectl apply -f` of `yaml` in `ns`.
    pub fn apply(&self, ns: &str, yaml: &str) {
        let file = std::env::temp_dir().join(format!("{}.yaml", unique("node-apply")));
        std::fs::write(&file, yaml).expect("manifest file");
        self.kubectl_ok(&["-n", ns, "apply", "-f", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(file);
    }

    /// A new namespace.
    pub fn namespace(&self, prefix: &str) -> String {
        let name = unique(prefix).replace('_', "-");
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }

    /// The pods of `ns` matching `selector`, running or not.
    pub async fn pods(&self, ns: &str, selector: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client().await, ns)
            .list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// Waits until exactly one pod matches, Running and Ready (its
    /// readiness probe passed), not being deleted; returns it.
    pub async fn ready_pod(&self, ns: &str, selector: &str, limit: Duration) -> Pod {
        let deadline = Instant::now() + limit;
        loop {
            let live: Vec<Pod> = self
                .pods(ns, selector)
                .await
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            if let [pod] = live.as_slice() {
                if pod_ready(pod) {
                    return pod.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for one Ready pod {selector} in {ns}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends `signal` to a container's main process through containerd.
    pub fn kill_container(&self, container_id: &str, signal: &str) {
        let id = container_id.trim_start_matches("containerd://");
        let sock = self.run.join("containerd/containerd.sock");
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&sock)
            .args(["-n", "k8s.io", "tasks", "kill", "-s", signal, id])
            .output()
            .expect("ctr");
        assert!(
            out.status.success(),
            "ctr tasks kill {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The host PID of a container's main process.
    pub fn container_pid(&self, container_id: &str) -> u32 {
        let id = container_id.trim_start_matches("containerd://");
        let sock = self.run.join("containerd/containerd.sock");
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&sock)
            .args(["-n", "k8s.io", "tasks", "ls"])
            .output()
            .expect("ctr");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with(id))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no task {id} in containerd"))
    }
}

/// Whether a pod's `Ready` condition is true.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The first container's (id, restart count) of a pod.
pub fn container(pod: &Pod) -> (String, i32) {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map(|c| (c.container_id.clone().unwrap_or_default(), c.restart_count))
        .unwrap_or_default()
}

fn run(bin: &str, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .current_dir(repo_root())
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
