//! The test plays the kubelet (and the garbage collector) for engine
//! Deployments: no Pod runs on an API server without nodes, so this runs
//! the `pgkafka-connector` binary as the Deployment's pod template says:
//! its arguments and environment, the ConfigMap and projected Secrets
//! written as files where the volumes would be mounted, its HTTP port on
//! loopback (its address written where the operator's test-only probe
//! override reads it). A changed pod template restarts it (a rollout);
//! replicas 0, a deleted Deployment or a deleted owner stop it; a process
//! that died is started again unless restarts are held.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use kube::Client;
use pgkafka_crds::PgKafkaConnector;

use crate::free_port;

/// One engine "pod".
struct Pod {
    child: Child,
    /// The pod template it runs, as JSON (a change means a rollout).
    template: String,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, Pod>,
    /// Starts per Deployment.
    starts: HashMap<String, usize>,
    /// Do not start a process that died.
    hold: bool,
}

/// The kubelet stand-in of one namespace; stops its engines when dropped.
pub struct Kubelet {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    /// Where engine addresses are written: `DIR/<namespace>/<name>`.
    pub endpoints: PathBuf,
}

/// What a pod needs beyond its template.
#[derive(Clone)]
struct Node {
    client: Client,
    namespace: String,
    engine_bin: String,
    work: PathBuf,
    endpoints: PathBuf,
}

impl Kubelet {
    /// Watches the Deployments of `namespace` every 200 ms.
    pub fn start(client: Client, namespace: &str, engine_bin: &str, work: &Path) -> Kubelet {
        let endpoints = work.join("endpoints");
        std::fs::create_dir_all(endpoints.join(namespace)).expect("endpoints dir");
        let node = Node {
            client,
            namespace: namespace.to_owned(),
            engine_bin: engine_bin.to_owned(),
            work: work.to_owned(),
            endpoints: endpoints.clone(),
        };
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = node.sync(&shared).await {
                    eprintln!("kubelet stand-in: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Kubelet {
            state,
            task,
            endpoints,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("kubelet state"))
    }

    /// How many times the engine of Deployment `name` was started.
    pub fn starts(&self, name: &str) -> usize {
        self.with(|s| s.starts.get(name).copied().unwrap_or(0))
    }

    /// Whether the engine of `name` runs now.
    pub fn running(&self, name: &str) -> bool {
        self.with(|s| {
            s.pods
                .get_mut(name)
                .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
        })
    }

    /// Kills the engine of `name` with SIGKILL (a crashed container).
    pub fn kill9(&self, name: &str) {
        self.with(|s| {
            if let Some(pod) = s.pods.get_mut(name) {
                let _ = pod.child.kill();
                let _ = pod.child.wait();
            }
        });
    }

    /// Holds (or allows again) restarting processes that died.
    pub fn hold_restarts(&self, hold: bool) {
        self.with(|s| s.hold = hold);
    }
}

/// Stops a container as a kubelet does: SIGTERM, then SIGKILL after the
/// grace period.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + GRACE;
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The termination grace period given to an engine.
const GRACE: Duration = Duration::from_secs(15);

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        self.with(|s| {
            for pod in s.pods.values_mut() {
                let _ = pod.child.kill();
                let _ = pod.child.wait();
            }
        });
    }
}

impl Node {
    /// One pass: start what should run, restart what changed, stop the rest.
    async fn sync(&self, state: &Mutex<State>) -> Result<(), kube::Error> {
        let desired = self.desired().await?;
        let mut to_start = Vec::new();
        {
            let mut s = state.lock().expect("kubelet state");
            let hold = s.hold;
            s.pods.retain(|name, pod| {
                let keep = desired
                    .get(name)
                    .is_some_and(|d| template_of(d) == pod.template);
                if !keep {
                    terminate(&mut pod.child);
                    let _ = std::fs::remove_file(self.endpoints.join(&self.namespace).join(name));
                }
                keep
            });
            for (name, deployment) in &desired {
                let alive = s
                    .pods
                    .get_mut(name)
                    .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)));
                // A process that died stays down while restarts are held.
                let held = hold && s.pods.contains_key(name);
                if !alive && !held {
                    to_start.push((name.clone(), deployment.clone()));
                }
            }
        }
        for (name, deployment) in to_start {
            let pod = self.run(&name, &deployment).await?;
            let mut s = state.lock().expect("kubelet state");
            *s.starts.entry(name.clone()).or_default() += 1;
            s.pods.insert(name, pod);
        }
        Ok(())
    }

    /// Deployments that should have a running engine; also deletes those
    /// whose owner is gone (the garbage collector's job).
    async fn desired(&self) -> Result<BTreeMap<String, Deployment>, kube::Error> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let connectors: Api<PgKafkaConnector> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let owners: Vec<String> = connectors
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|c| c.metadata.uid)
            .collect();
        let mut desired = BTreeMap::new();
        for d in deployments.list(&ListParams::default()).await?.items {
            let name = d.metadata.name.clone().unwrap_or_default();
            let orphan = d
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|refs| !refs.iter().any(|r| owners.contains(&r.uid)));
            if orphan && d.metadata.deletion_timestamp.is_none() {
                deployments
                    .delete(&name, &DeleteParams::background())
                    .await?;
            }
            let replicas = d.spec.replicas.unwrap_or(1);
            if !orphan && d.metadata.deletion_timestamp.is_none() && replicas > 0 {
                desired.insert(name, d);
            }
        }
        Ok(desired)
    }

    /// Starts the engine as the pod template says.
    async fn run(&self, name: &str, d: &Deployment) -> Result<Pod, kube::Error> {
        let spec: PodSpec = d.spec.template.spec.clone().unwrap_or_default();
        let container: Container = spec.containers.first().cloned().unwrap_or_default();
        let root = self.work.join(&self.namespace).join(name);
        let _ = std::fs::remove_dir_all(&root);
        let mounts = self.mount_volumes(&spec, &container, &root).await?;
        let port = free_port();
        let args = local_args(container.args.as_deref().unwrap_or_default(), &mounts, port);
        let log = std::fs::File::create(root.join("engine.log")).expect("engine log");
        let mut command = Command::new(&self.engine_bin);
        command.args(&args);
        for env in container.env.iter().flatten() {
            command.env(&env.name, env.value.clone().unwrap_or_default());
        }
        let child = command
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.engine_bin));
        let address = self.endpoints.join(&self.namespace).join(name);
        std::fs::write(address, format!("127.0.0.1:{port}")).expect("endpoint file");
        Ok(Pod {
            child,
            template: template_of(d),
        })
    }

    /// Writes each mounted volume's files under `root`; returns the mount
    /// paths and where they are now.
    async fn mount_volumes(
        &self,
        spec: &PodSpec,
        container: &Container,
        root: &Path,
    ) -> Result<Vec<(String, PathBuf)>, kube::Error> {
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let dir = root.join(&mount.name);
            std::fs::create_dir_all(&dir).expect("volume dir");
            let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name);
            if let Some(cm) = volume.and_then(|v| v.config_map.as_ref()) {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                for (key, value) in api.get(&cm.name).await?.data.unwrap_or_default() {
                    std::fs::write(dir.join(key), value).expect("config file");
                }
            }
            let sources = volume
                .and_then(|v| v.projected.as_ref())
                .and_then(|p| p.sources.clone())
                .unwrap_or_default();
            for secret in sources.iter().filter_map(|s| s.secret.as_ref()) {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
                let data = api.get(&secret.name).await?.data.unwrap_or_default();
                for item in secret.items.iter().flatten() {
                    let file = dir.join(&item.path);
                    std::fs::create_dir_all(file.parent().expect("parent")).expect("secret dir");
                    let value = data.get(&item.key).map(|b| b.0.clone()).unwrap_or_default();
                    std::fs::write(file, value).expect("secret file");
                }
            }
            mounts.push((mount.mount_path.clone(), dir));
        }
        Ok(mounts)
    }
}

/// The template as JSON: any change to it is a rollout.
fn template_of(d: &Deployment) -> String {
    serde_json::to_string(&d.spec.template).unwrap_or_default()
}

/// The container's arguments with mount paths moved to their local
/// directories and the HTTP address on loopback.
fn local_args(args: &[String], mounts: &[(String, PathBuf)], port: u16) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    for arg in args {
        if out.last().is_some_and(|prev| prev == "--http-addr") {
            out.push(format!("127.0.0.1:{port}"));
            continue;
        }
        let moved = mounts.iter().find_map(|(mount, dir)| {
            arg.strip_prefix(mount.as_str())
                .map(|rest| format!("{}{rest}", dir.to_string_lossy()))
        });
        out.push(moved.unwrap_or_else(|| arg.clone()));
    }
    out
}
