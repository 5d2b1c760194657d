//! Engine pods as the kubelet runs them: the readiness probe, the status
//! against `pg_replication_slots`, the JSON log, the security context seen
//! from the container's own process, a container killed and a pod deleted,
//! a Secret rotated (SIGTERM, the grace period, the slot confirmed), and a
//! spill under a real cgroup memory limit.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use pgkafka_tests::node::{container, pod_ready};
use pgkafka_tests::read_to_end;

use crate::stage::{Connector, Stage, POD_START, ROLE, STATUS};

/// Applied: the pod Ready through its probe, `Ready=True`, the status equal
/// to the server's slot, a row in Kafka, the structured log.
pub async fn applied(stage: &Stage<'_>, c: &Connector) {
    stage.apply_main(c);
    let pod = stage.engine_pod(&c.name).await;
    stage.wait_condition(&c.name, "Ready", "True", STATUS).await;
    stage
        .db
        .exec("INSERT INTO orders VALUES (1, 'first')")
        .await;
    stage.assert_arrived(&c.topic, &[1]).await;
    replication_status_matches(stage, c).await;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let logs = stage.node.kubectl_ok(&["-n", &stage.ns, "logs", &pod_name]);
    let streaming = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "streaming");
    let line =
        streaming.unwrap_or_else(|| panic!("no JSON `streaming` line in kubectl logs:\n{logs}"));
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["slot"], c.slot.as_str(), "{line}");
}

/// `status.replication` equals `pg_replication_slots` (the operator reads
/// it there; the same row, once a refresh has passed).
async fn replication_status_matches(stage: &Stage<'_>, c: &Connector) {
    let deadline = Instant::now() + STATUS;
    let last = loop {
        let row = stage
            .db
            .client
            .query_one(
                "SELECT active, confirmed_flush_lsn::text, restart_lsn::text, wal_status
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&c.slot],
            )
            .await
            .expect("slot row");
        let server = (
            row.get::<_, bool>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, Option<String>>(2),
            row.get::<_, Option<String>>(3),
        );
        let status = stage.get(&c.name).await.and_then(|x| x.status?.replication);
        let last = format!("server {server:?}, status {status:?}");
        if status.is_some_and(|r| {
            r.slot_name == c.slot
                && (r.active, r.confirmed_flush_lsn, r.restart_lsn, r.wal_status) == server
        }) {
            break last;
        }
        assert!(
            Instant::now() < deadline,
            "status.replication never equalled pg_replication_slots: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("  status.replication = pg_replication_slots: {last}");
}

/// The container's main process, seen from the host through /proc (the
/// image has no shell to exec): non-root uid and gid, no capabilities, no
/// new privileges, a read-only root with a writable /tmp, and the Secret
/// mounted 0440 for the pod's fsGroup.
pub async fn hardened(stage: &Stage<'_>, c: &Connector) {
    let pod = stage.engine_pod(&c.name).await;
    let pid = stage.node.container_pid(&container(&pod).0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65532 65532 65532 65532", "{status}");
    assert_eq!(field("Gid:"), "65532 65532 65532 65532", "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    let root = format!("/proc/{pid}/root");
    let err = std::fs::write(format!("{root}/probe"), b"x")
        .expect_err("the root file system is read-only");
    assert_eq!(err.raw_os_error(), Some(30), "EROFS writing /, got {err}");
    std::fs::write(format!("{root}/tmp/probe"), b"x").expect("/tmp (emptyDir) is writable");
    let _ = std::fs::remove_file(format!("{root}/tmp/probe"));
    let secret = std::fs::metadata(format!("{root}/etc/pgkafka/secrets/pg/password"))
        .expect("mounted secret");
    assert_eq!(secret.mode() & 0o777, 0o440, "secret file mode");
    assert_eq!(secret.gid(), 65532, "secret file group (fsGroup)");
    eprintln!("  uid/gid 65532, CapEff 0, NoNewPrivs 1, / read-only (EROFS), /tmp writable, secret 0440 gid 65532");
}

/// The container killed: the pod and the connector not Ready, then Ready
/// again after the kubelet restarts it; then the pod deleted and replaced.
/// Rows written meanwhile all arrive.
pub async fn killed(stage: &Stage<'_>, c: &Connector) {
    let pod = stage.engine_pod(&c.name).await;
    let (id, restarts) = container(&pod);
    stage
        .db
        .exec("INSERT INTO orders VALUES (2, 'before kill')")
        .await;
    stage.node.kill_container(&id, "SIGKILL");
    stage
        .db
        .exec("INSERT INTO orders VALUES (3, 'while down')")
        .await;
    let (mut pod_unready, mut connector_unready) = (false, false);
    let selector = Stage::engine_selector(&c.name);
    let deadline = Instant::now() + POD_START;
    loop {
        let pods = stage.node.pods(&stage.ns, &selector).await;
        let ready = stage
            .condition(&c.name, "Ready")
            .await
            .is_some_and(|(s, _)| s == "True");
        connector_unready |= !ready;
        if let Some(p) = pods.first() {
            pod_unready |= !pod_ready(p);
            if container(p).1 > restarts && pod_ready(p) && ready {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the killed engine never came back Ready: {pods:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        pod_unready,
        "the pod never showed not Ready after its container was killed"
    );
    assert!(
        connector_unready,
        "the connector never showed Ready=False while its engine was down"
    );
    let old = pod.metadata.name.clone().unwrap_or_default();
    stage
        .node
        .kubectl_ok(&["-n", &stage.ns, "delete", "pod", &old, "--wait=false"]);
    stage
        .db
        .exec("INSERT INTO orders VALUES (4, 'pod deleted')")
        .await;
    let new = stage.engine_pod(&c.name).await;
    assert_ne!(
        new.metadata.name.as_deref(),
        Some(old.as_str()),
        "a new pod"
    );
    stage.wait_condition(&c.name, "Ready", "True", STATUS).await;
    stage
        .db
        .exec("INSERT INTO orders VALUES (5, 'after')")
        .await;
    stage.assert_arrived(&c.topic, &[1, 2, 3, 4, 5]).await;
}

/// The password rotated in PostgreSQL and the Secret: the pod template
/// rolls, the old engine stops on SIGTERM within its grace period having
/// confirmed what Kafka acknowledged, the new one logs in with the new
/// password and resumes from the slot: every row once.
pub async fn secret_rotated(stage: &Stage<'_>, c: &Connector) {
    let old = stage.engine_pod(&c.name).await;
    let old_name = old.metadata.name.clone().unwrap_or_default();
    let logs = follow_logs(stage, &old_name);
    stage
        .db
        .exec("INSERT INTO orders VALUES (10, 'a'), (11, 'b')")
        .await;
    let before_last = wal_lsn(stage).await;
    stage.db.exec("INSERT INTO orders VALUES (12, 'c')").await;
    stage.assert_arrived(&c.topic, &[10, 11, 12]).await;
    let rotated = Instant::now();
    stage
        .db
        .exec(&format!("ALTER ROLE {ROLE} PASSWORD 'second-password'"))
        .await;
    stage.node.kubectl_ok(&[
        "-n",
        &stage.ns,
        "patch",
        "secret",
        "pg",
        "-p",
        r#"{"stringData":{"password":"second-password"}}"#,
    ]);
    let (text, stopped_after) = tokio::task::spawn_blocking(logs)
        .await
        .expect("log follower");
    let old_exited = k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(
        stopped_after < Duration::from_secs(45),
        "the old engine took {stopped_after:?} (grace period 45 s)"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "signal received; stopping"),
        "no SIGTERM in:\n{text}"
    );
    let stop = lines
        .iter()
        .find(|l| l["fields"]["message"] == "stopped")
        .unwrap_or_else(|| panic!("the old engine never logged `stopped`:\n{text}"));
    let confirmed = parse_lsn(stop["fields"]["confirmed"].as_str().unwrap_or_default());
    assert!(
        confirmed > before_last,
        "confirmed {confirmed:X} at stop, row 12 committed after {before_last:X}"
    );
    stage
        .db
        .exec("INSERT INTO orders VALUES (13, 'during rollout')")
        .await;
    let new = stage.engine_pod(&c.name).await;
    assert_ne!(
        new.metadata.name.as_deref(),
        Some(old_name.as_str()),
        "the template rolled"
    );
    // `Recreate`: the new pod is made only once the old one is gone, so two
    // engines never hold the slot (a rolling update would have made it
    // seconds before the old engine exited). Seconds, with the log
    // stream's own delay as slack.
    let created = new
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    assert!(
        created >= old_exited - 2,
        "new pod created at {created}, before the old engine exited at {old_exited}"
    );
    stage.wait_condition(&c.name, "Ready", "True", STATUS).await;
    stage
        .db
        .exec("INSERT INTO orders VALUES (14, 'after')")
        .await;
    let records = stage.assert_arrived(&c.topic, &[10, 11, 12, 13, 14]).await;
    let mut counts = BTreeMap::new();
    for r in &records {
        if let Some(id) = r.value["after"]["id"].as_i64().filter(|id| *id >= 10) {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "each row once across the rollout: {counts:?}"
    );
    eprintln!(
        "  old engine stopped {:.1} s after the Secret changed (SIGTERM, confirmed {confirmed:X}); new pod Ready {:.1} s after",
        stopped_after.as_secs_f64(),
        rotated.elapsed().as_secs_f64()
    );
}

/// `kubectl logs -f` of a pod until its container ends: (the log, when it
/// ended counted from now).
fn follow_logs(stage: &Stage<'_>, pod: &str) -> impl FnOnce() -> (String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(stage.node.kubectl_path())
        .env("KUBECONFIG", stage.node.kubeconfig_path())
        .args(["-n", &stage.ns, "logs", "-f", pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    move || {
        let mut text = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        let _ = child.wait();
        (text, start.elapsed())
    }
}

async fn wal_lsn(stage: &Stage<'_>) -> u64 {
    let row = stage
        .db
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn");
    parse_lsn(row.get::<_, &str>(0))
}

fn parse_lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap_or(("0", "0"));
    (u64::from_str_radix(hi, 16).unwrap_or(0) << 32) | u64::from_str_radix(lo, 16).unwrap_or(0)
}

/// A 16 MB whole-transaction group (twice the engine's memory budget) under
/// a 128Mi cgroup limit: it spills to the pod's /tmp and arrives whole; the
/// container is never OOM-killed.
pub async fn memory_limited(stage: &Stage<'_>) {
    const ROWS: i64 = 40_000;
    let name = format!("big-{}", std::process::id());
    let topic = format!("{name}.tx");
    let limited = ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "memory".into(),
            Quantity("128Mi".into()),
        )])),
        requests: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
        ..Default::default()
    };
    let m = stage
        .manifest(
            &name,
            &format!(
                "    - table: big\n      targets: [{{topic: {topic}, sendAsTransaction: true}}]"
            ),
        )
        .spec(|s| {
            s.slot.name = name.replace('-', "_") + "_slot";
            s.publication.name = name.replace('-', "_") + "_pub";
            s.resources = Some(limited);
        });
    stage.node.apply(&stage.ns, &m.yaml());
    let pod = stage.engine_pod(&name).await;
    stage.wait_condition(&name, "Ready", "True", STATUS).await;
    let pid = stage.node.container_pid(&container(&pod).0);
    let limit = cgroup_memory(pid, "memory.limit_in_bytes");
    assert_eq!(limit, 128 << 20, "the container's cgroup memory limit");
    stage
        .db
        .exec(&format!(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, {ROWS}) g"
        ))
        .await;
    let slot = format!("{}_slot", name.replace('-', "_"));
    stage
        .db
        .wait_confirmed_all(&slot, Duration::from_secs(180))
        .await;
    let bootstrap = stage.broker.bootstrap.clone();
    let records = tokio::task::spawn_blocking(move || read_to_end(&bootstrap, &topic))
        .await
        .expect("reader");
    let ids: Vec<i64> = records
        .iter()
        .flat_map(|r| r.value["changes"].as_array().cloned().unwrap_or_default())
        .filter_map(|ch| ch["after"]["id"].as_i64())
        .collect();
    assert!(records.len() > 10, "{} parts for 16 MB", records.len());
    assert_eq!(
        ids,
        (1..=ROWS).collect::<Vec<_>>(),
        "every change, in order"
    );
    let now = stage.engine_pod(&name).await;
    assert_eq!(
        container(&now),
        container(&pod),
        "same container, never restarted (OOM)"
    );
    let peak = cgroup_memory(pid, "memory.max_usage_in_bytes");
    eprintln!(
        "  {} parts, cgroup limit 128 MiB, peak usage {:.1} MiB",
        records.len(),
        peak as f64 / 1048576.0
    );
}

/// A value of the container's memory cgroup (v1 on this node).
fn cgroup_memory(pid: u32, file: &str) -> u64 {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    let path = groups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("no memory cgroup in:\n{groups}"));
    let text = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/{file}"))
        .expect("cgroup file");
    text.trim().parse().unwrap_or(0)
}
