//! The engine's Deployment: one replica (zero when paused or stopped),
//! `Recreate` so two engines never hold the slot, non-root with a read-only
//! root filesystem, the manifest and Secrets mounted as files, an emptyDir
//! at /tmp for spill files.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection, SecurityContext,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use pgkafka_crds::{ConnectorState, PgKafkaConnector, SecretKeyRef};
use pgkafka_postgres::credentials::{kafka_refs, postgres_refs};

use super::{
    engine_name, labels, metadata, Settings, CONFIG_DIR, CONFIG_FILE, HTTP_PORT,
    RESTART_ANNOTATION, SECRETS_DIR,
};

/// Pod annotation carrying a digest of the manifest and the Secrets' versions:
/// when either changes, the pod is replaced.
pub const INPUTS_ANNOTATION: &str = "pgkafka.io/inputs";
/// The non-root user of the image.
const USER_ID: i64 = 65532;

/// Every Secret key the spec references, in spec order, without repeats.
pub fn secret_refs(c: &PgKafkaConnector) -> Vec<&SecretKeyRef> {
    let mut refs: Vec<&SecretKeyRef> = Vec::new();
    let all = postgres_refs(&c.spec.postgres)
        .into_iter()
        .chain(kafka_refs(&c.spec.kafka))
        .map(|(_, r)| r)
        .chain(c.spec.salt_refs().into_iter().map(|(_, r)| r));
    for r in all {
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    refs
}

/// The Deployment; `inputs` is a digest of the manifest and Secret versions.
pub fn deployment(c: &PgKafkaConnector, settings: &Settings, inputs: &str) -> Deployment {
    let replicas = i32::from(c.spec.state == ConnectorState::Running);
    let mut annotations = BTreeMap::from([(INPUTS_ANNOTATION.to_owned(), inputs.to_owned())]);
    if let Some(restart) = c.annotations().get(RESTART_ANNOTATION) {
        annotations.insert(RESTART_ANNOTATION.to_owned(), restart.clone());
    }
    Deployment {
        metadata: metadata(c),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(c)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(c)),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec(c, settings)),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The engine's pod: non-root, no API token, the manifest and the Secrets
/// mounted read-only.
fn pod_spec(c: &PgKafkaConnector, settings: &Settings) -> PodSpec {
    PodSpec {
        service_account_name: Some(engine_name(c)),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(USER_ID),
            run_as_group: Some(USER_ID),
            fs_group: Some(USER_ID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![engine_container(c, settings)],
        termination_grace_period_seconds: Some(45),
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: engine_name(c),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "secrets".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(secret_projections(c)),
                    ..Default::default()
                }),
                ..Default::default()
            },
            // The root file system is read-only: whole-transaction groups
            // over the memory budget spill here (TMPDIR is /tmp).
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(HTTP_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// The engine container: `pgkafka-connector run` on the mounted manifest.
fn engine_container(c: &PgKafkaConnector, settings: &Settings) -> Container {
    Container {
        name: "engine".into(),
        image: Some(settings.engine_image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec!["/usr/local/bin/pgkafka-connector".into()]),
        args: Some(vec![
            "run".into(),
            "-f".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
            "--secrets-dir".into(),
            SECRETS_DIR.into(),
            "--http-addr".into(),
            format!("0.0.0.0:{HTTP_PORT}"),
            "--log-format".into(),
            "json".into(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            ..Default::default()
        }]),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        resources: Some(c.spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "secrets".into(),
                mount_path: SECRETS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// Each referenced Secret key, projected as `<name>/<key>` (the layout the
/// engine's `--secrets-dir` reads).
fn secret_projections(c: &PgKafkaConnector) -> Vec<VolumeProjection> {
    secret_refs(c)
        .into_iter()
        .map(|r| VolumeProjection {
            secret: Some(SecretProjection {
                name: r.name.clone(),
                items: Some(vec![KeyToPath {
                    key: r.key.clone(),
                    path: format!("{}/{}", r.name, r.key),
                    mode: Some(0o440),
                    user: None,
                }]),
                optional: Some(false),
            }),
            ..Default::default()
        })
        .collect()
}

/// Requests and limits when the spec gives none: the engine holds at most
/// 64 MiB of records in flight.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".into())),
            ("memory".to_owned(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("512Mi".into()),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::{connector, SPEC};

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.template.spec.as_ref().expect("pod spec")
    }

    #[test]
    fn defaults_run_one_hardened_replica() {
        let c = connector(SPEC);
        let d = deployment(&c, &Settings::default(), "abc");
        assert_eq!(d.spec.replicas, Some(1));
        assert_eq!(
            d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
            Some("Recreate")
        );
        let pod = pod(&d);
        let sc = pod.security_context.as_ref().expect("pod security");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        let container = &pod.containers[0];
        let csc = container
            .security_context
            .as_ref()
            .expect("container security");
        assert_eq!(
            (
                csc.read_only_root_filesystem,
                csc.allow_privilege_escalation
            ),
            (Some(true), Some(false))
        );
        let limits = container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert_eq!(limits["memory"], Quantity("512Mi".into()));
        assert_eq!(
            d.spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .map(|a| a[INPUTS_ANNOTATION].as_str()),
            Some("abc")
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("orders-engine"));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn secrets_are_mounted_never_inlined() {
        let spec = SPEC.replace(
            "user: cdc, passwordSecretRef: {name: shop-db, key: password}",
            "userSecretRef: {name: shop-db, key: user}, passwordSecretRef: {name: shop-db, key: password}, sslMode: verify-full, caSecretRef: {name: shop-ca, key: ca.crt}",
        ).replace(
            "listeners: [{table: public.orders}]",
            "listeners: [{table: public.orders, targets: [{columnMasks: [{columns: [email], hash: {algorithm: SHA-256, saltSecretRef: {name: pii, key: salt}}}]}]}]",
        );
        let d = deployment(&connector(&spec), &Settings::default(), "x");
        let volumes = pod(&d).volumes.as_ref().expect("volumes");
        let projected = volumes[1]
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .expect("sources");
        let paths: Vec<(String, String)> = projected
            .iter()
            .filter_map(|s| s.secret.as_ref())
            .map(|s| {
                (
                    s.name.clone(),
                    s.items.as_ref().expect("items")[0].path.clone(),
                )
            })
            .collect();
        assert_eq!(
            paths,
            [
                ("shop-db".to_owned(), "shop-db/user".to_owned()),
                ("shop-db".to_owned(), "shop-db/password".to_owned()),
                ("shop-ca".to_owned(), "shop-ca/ca.crt".to_owned()),
                ("pii".to_owned(), "pii/salt".to_owned())
            ]
        );
        let env = pod(&d).containers[0].env.clone().unwrap_or_default();
        assert!(env.is_empty(), "no secret in the environment");
    }

    #[test]
    fn paused_scales_to_zero_and_resources_and_restart_come_from_the_resource() {
        let spec =
            format!("{SPEC}  state: paused\n  resources: {{limits: {{memory: 1Gi, cpu: '2'}}}}\n");
        let mut c = connector(&spec);
        c.annotations_mut()
            .insert(RESTART_ANNOTATION.into(), "2026-11-22T10:00:00Z".into());
        let d = deployment(&c, &Settings::default(), "x");
        assert_eq!(d.spec.replicas, Some(0));
        let limits = pod(&d).containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .expect("limits");
        assert_eq!(limits["memory"], Quantity("1Gi".into()));
        let annotations = d
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .expect("annotations");
        assert_eq!(annotations[RESTART_ANNOTATION], "2026-11-22T10:00:00Z");
    }
}
