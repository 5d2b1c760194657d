//! `reconcile` wraps the finalizer; `apply` and `cleanup` are idempotent.
//!
//! apply: validate, read the referenced Secrets, provision publication and
//! slot, apply the engine's objects with server-side apply, then write the
//! status (from PostgreSQL's own view of the slot and the engine's report).
//! cleanup: by `reclaimPolicy`, stop the engine and drop slot and publication.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Client, Resource, ResourceExt};
use pgkafka_crds::conditions::{ConditionStatus, ConditionType};
use pgkafka_crds::{
    ConnectorState, PgKafkaConnector, PgKafkaConnectorStatus, ReclaimPolicy, SecretKeyRef,
};
use pgkafka_postgres::credentials::{resolve_postgres, trim_value, SecretError, SecretProblem};
use serde::Serialize;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::postgres::{Credentials, Database, Dropped};
use crate::probe::EngineProbe;
use crate::resources::{configmap, deployment, service, Settings, DEAD_LETTERS_ACKNOWLEDGED};
use crate::status::{self, Observed, SlotSeen};

/// The finalizer that makes deletion wait for cleanup.
pub const FINALIZER: &str = "pgkafka.io/cleanup";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "pgkafka-operator";
/// Progress numbers (LSNs, lag) are written at most this often.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// What the reconciler works with.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Metrics,
    /// Settings for the objects built.
    pub settings: Settings,
    /// PostgreSQL.
    pub db: Arc<dyn Database>,
    /// The engines' `/status`.
    pub probe: Arc<dyn EngineProbe>,
    /// How often a healthy connector's status is refreshed.
    pub refresh: Duration,
    /// When each connector's status was last written.
    pub status_writes: Mutex<HashMap<String, Instant>>,
    /// Each connector's last full apply, and what touched it since.
    pub fresh: crate::fresh::Freshness,
}

/// Reconciles one connector.
pub async fn reconcile(c: Arc<PgKafkaConnector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.duration.start_timer();
    ctx.metrics.reconciles.inc();
    let ns = c.namespace().unwrap_or_else(|| "default".into());
    let api: Api<PgKafkaConnector> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, c, |event| async {
        match event {
            Event::Apply(c) => apply(&c, &ctx).await,
            Event::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Decides the requeue after a failed reconcile; counts it.
pub fn error_policy(_c: Arc<PgKafkaConnector>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .with_label_values(&[error.reason().as_str()])
        .inc();
    tracing::warn!(reason = %error.reason(), %error, "reconcile failed");
    Action::requeue(error.requeue_after())
}

async fn apply(c: &PgKafkaConnector, ctx: &Context) -> Result<Action, Error> {
    let mut observed = Observed {
        generation: c.metadata.generation,
        state: c.spec.state,
        dead_letters_acknowledged: c
            .annotations()
            .get(DEAD_LETTERS_ACKNOWLEDGED)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        ..Observed::default()
    };
    let outcome = apply_children(c, ctx, &mut observed).await;
    if let Err(e) = &outcome {
        observed.problem = Some((e.reason(), e.to_string()));
    }
    write_status(c, ctx, &observed).await?;
    match outcome {
        Ok(()) => Ok(Action::requeue(ctx.refresh)),
        // A bad spec waits for the user: the condition names the field.
        Err(Error::InvalidSpec(_)) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

/// The last position the status showed confirmed: this connector delivered
/// up to there, so a slot that vanished since is a loss, not a first start.
/// The engine has gone on since, so it is "at least": a slot ahead of it is
/// expected, only a gone or invalidated one is a loss.
fn delivered(c: &PgKafkaConnector) -> pgkafka_postgres::slot_check::Delivered {
    use pgkafka_postgres::slot_check::Delivered;
    c.status
        .as_ref()
        .and_then(|s| s.replication.as_ref())
        .and_then(|r| r.confirmed_flush_lsn.as_deref())
        .and_then(|t| t.parse().ok())
        .map_or(Delivered::Nothing, Delivered::AtLeast)
}

async fn apply_children(
    c: &PgKafkaConnector,
    ctx: &Context,
    observed: &mut Observed,
) -> Result<(), Error> {
    c.spec.validate()?;
    match ctx.fresh.current(c) {
        // Nothing it depends on changed: only the slot is read again.
        Some(creds) => observed.slot = SlotSeen::from_read(ctx.db.slot_state(c, &creds).await),
        None => {
            let touches = ctx.fresh.touches(c);
            let applied = apply_objects(c, ctx, observed).await;
            match applied {
                Ok(creds) => ctx.fresh.applied(c, touches, creds),
                Err(e) => {
                    ctx.fresh.forget(c);
                    return Err(e);
                }
            }
        }
    }
    if c.spec.state == ConnectorState::Running {
        observed.engine = ctx.probe.report(c).await;
        if observed.engine.is_some() {
            crate::signals::send(c, ctx, observed).await;
        }
    }
    Ok(())
}

/// Reads the Secrets, provisions PostgreSQL (reading the slot) and applies
/// the engine's objects; returns the credentials read.
async fn apply_objects(
    c: &PgKafkaConnector,
    ctx: &Context,
    observed: &mut Observed,
) -> Result<Credentials, Error> {
    let ns = c.namespace().unwrap_or_else(|| "default".into());
    let (creds, versions) = read_credentials(c, &ctx.client, &ns).await?;
    let provisioned = ctx.db.provision(c, &creds, delivered(c)).await;
    observed.slot = SlotSeen::from_read(ctx.db.slot_state(c, &creds).await);
    provisioned?;
    let manifest = configmap::engine_manifest(c).map_err(|source| Error::Serialize {
        what: "the engine manifest",
        source,
    })?;
    let inputs = format!(
        "{:016x}",
        fnv1a(format!("{manifest}\n{versions}").as_bytes())
    );
    let params = PatchParams::apply(FIELD_MANAGER).force();
    ssa(
        Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ns),
        &service::service_account(c),
        &params,
    )
    .await?;
    let cm = configmap::configmap(c).map_err(|source| Error::Serialize {
        what: "the engine ConfigMap",
        source,
    })?;
    ssa(
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns),
        &cm,
        &params,
    )
    .await?;
    ssa(
        Api::<Service>::namespaced(ctx.client.clone(), &ns),
        &service::service(c),
        &params,
    )
    .await?;
    let d = deployment::deployment(c, &ctx.settings, &inputs);
    ssa(
        Api::<Deployment>::namespaced(ctx.client.clone(), &ns),
        &d,
        &params,
    )
    .await?;
    Ok(creds)
}

async fn ssa<K>(api: Api<K>, obj: &K, params: &PatchParams) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(&name, params, &Patch::Apply(obj)).await?;
    Ok(())
}

/// Reads the referenced Secrets; also returns their resource versions, so a
/// changed password rolls the engine.
async fn read_credentials(
    c: &PgKafkaConnector,
    client: &Client,
    ns: &str,
) -> Result<(Credentials, String), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut versions = Vec::new();
    let mut values = HashMap::new();
    for (field, r) in pgkafka_postgres::credentials::postgres_refs(&c.spec.postgres) {
        let value = match secrets.get_opt(&r.name).await? {
            Some(secret) => {
                versions.push(format!(
                    "{}={}",
                    r.name,
                    secret.resource_version().unwrap_or_default()
                ));
                secret_value(&secret, field, r)
            }
            None => Err(SecretError::new(
                field,
                r,
                SecretProblem::Missing("does not exist".into()),
            )),
        };
        values.insert(field, value);
    }
    let creds = resolve_postgres(&c.spec.postgres, |field, r| {
        values.remove(field).unwrap_or_else(|| {
            Err(SecretError::new(
                field,
                r,
                SecretProblem::Missing("was not read".into()),
            ))
        })
    })?;
    versions.sort();
    Ok((creds, versions.join(",")))
}

/// The value under `r.key` of a Secret, as text.
fn secret_value(
    secret: &Secret,
    field: &'static str,
    r: &SecretKeyRef,
) -> Result<String, SecretError> {
    let problem = |what: &'static str| SecretError::new(field, r, SecretProblem::Invalid(what));
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(|| problem("has no such key"))?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| problem("is not UTF-8"))?;
    Ok(trim_value(text))
}

/// FNV-1a: a digest stable across builds (the std hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

async fn write_status(
    c: &PgKafkaConnector,
    ctx: &Context,
    observed: &Observed,
) -> Result<(), Error> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let new = status::compute(observed, &c.spec.slot.name, c.status.as_ref(), &now);
    let key = format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any());
    ctx.metrics.observe(
        &c.namespace().unwrap_or_default(),
        &c.name_any(),
        &c.spec.slot.name,
        &new,
    );
    let due = ctx
        .status_writes
        .lock()
        .ok()
        .and_then(|w| w.get(&key).map(|t| t.elapsed() >= STATUS_INTERVAL))
        .unwrap_or(true);
    if !status::worth_writing(c.status.as_ref(), &new, due) {
        return Ok(());
    }
    publish_changes(c, ctx, c.status.as_ref(), &new).await;
    let api: Api<PgKafkaConnector> =
        Api::namespaced(ctx.client.clone(), &c.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "pgkafka.io/v1alpha1",
        "kind": "PgKafkaConnector",
        "status": new,
    });
    api.patch_status(
        &c.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    if let Ok(mut writes) = ctx.status_writes.lock() {
        writes.insert(key, Instant::now());
    }
    Ok(())
}

/// An Event for every condition whose status changed.
async fn publish_changes(
    c: &PgKafkaConnector,
    ctx: &Context,
    old: Option<&PgKafkaConnectorStatus>,
    new: &PgKafkaConnectorStatus,
) {
    for cond in &new.conditions {
        let before = old.and_then(|o| o.conditions.iter().find(|x| x.type_ == cond.type_));
        if before.is_some_and(|b| b.status == cond.status && b.reason == cond.reason) {
            continue;
        }
        // Degraded=True is the bad news; for the others, True is the good one.
        let healthy = match cond.status() {
            Some(ConditionStatus::False) => cond.is(ConditionType::Degraded),
            Some(ConditionStatus::True) => !cond.is(ConditionType::Degraded),
            _ => false,
        };
        let kind = if healthy {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(
            c,
            ctx,
            kind,
            &cond.reason,
            &format!("{}: {}", cond.type_, cond.message),
        )
        .await;
    }
}

pub(crate) async fn publish(
    c: &PgKafkaConnector,
    ctx: &Context,
    kind: EventType,
    reason: &str,
    note: &str,
) {
    let event = KubeEvent {
        type_: kind,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &c.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish an Event");
    }
}

async fn cleanup(c: &PgKafkaConnector, ctx: &Context) -> Result<Action, Error> {
    ctx.fresh.forget(c);
    if c.spec.reclaim_policy == ReclaimPolicy::Retain {
        publish(
            c,
            ctx,
            EventType::Normal,
            "Retained",
            "reclaimPolicy Retain: slot and publication are kept",
        )
        .await;
        return Ok(Action::await_change());
    }
    let ns = c.namespace().unwrap_or_else(|| "default".into());
    // The engine must be gone before its slot is dropped.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    match deployments
        .delete(
            &crate::resources::engine_name(c),
            &DeleteParams::foreground(),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    let (creds, _) = read_credentials(c, &ctx.client, &ns).await?;
    match ctx.db.drop_all(c, &creds).await? {
        Dropped::SlotActive => Err(Error::EngineStillRunning(c.spec.slot.name.clone())),
        Dropped::Done => {
            publish(
                c,
                ctx,
                EventType::Normal,
                "Dropped",
                "reclaimPolicy Delete: slot and publication dropped",
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a(b"db=1"), fnv1a(b"db=2"));
    }
}
