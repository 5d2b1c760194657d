//! Wires the controller: watch `PgKafkaConnector`s, the objects they own,
//! and the Secrets they reference (a changed password rolls the engine).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};
use pgkafka_crds::PgKafkaConnector;

use crate::metrics::Metrics;
use crate::postgres::Postgres;
use crate::probe::HttpProbe;
use crate::reconcile::{error_policy, reconcile, Context};
use crate::resources::{deployment::secret_refs, Settings};

/// Builds the shared context with the real database; a healthy connector's
/// status is refreshed every `refresh`.
pub fn context(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    probe: HttpProbe,
    refresh: Duration,
) -> Arc<Context> {
    let reporter = Reporter {
        controller: "pgkafka-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics,
        settings,
        db: Arc::new(Postgres),
        probe: Arc::new(probe),
        refresh,
        status_writes: Mutex::new(Default::default()),
        fresh: Default::default(),
    })
}

/// Runs the controller for one namespace (`None`: all) until a signal.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let (connectors, deployments, configmaps, services, secrets) = (
        scoped::<PgKafkaConnector>(&client, &namespace),
        scoped::<Deployment>(&client, &namespace),
        scoped::<ConfigMap>(&client, &namespace),
        scoped::<Service>(&client, &namespace),
        scoped::<Secret>(&client, &namespace),
    );
    let controller = Controller::new(connectors, watcher::Config::default().any_semantic());
    let store = controller.store();
    let managed =
        || watcher::Config::default().labels("app.kubernetes.io/managed-by=pgkafka-operator");
    // `owns`, with each event also touching the owner (see `crate::fresh`)
    // before its reconcile is queued.
    let (c1, c2, c3, c4) = (ctx.clone(), ctx.clone(), ctx.clone(), ctx.clone());
    controller
        .watches(deployments, managed(), move |o: Deployment| {
            touch_owner(&c1, &o)
        })
        .watches(configmaps, managed(), move |o: ConfigMap| {
            touch_owner(&c2, &o)
        })
        .watches(services, managed(), move |o: Service| touch_owner(&c3, &o))
        .watches(
            secrets,
            watcher::Config::default(),
            move |secret: Secret| {
                let refs = referencing(&store.state(), &secret);
                for r in &refs {
                    c4.fresh
                        .touch(r.namespace.as_deref().unwrap_or_default(), &r.name);
                }
                refs
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

/// The connector that controls `object`, touched (see `crate::fresh`).
fn touch_owner<K: kube::Resource>(
    ctx: &Context,
    object: &K,
) -> Option<ObjectRef<PgKafkaConnector>> {
    let owner = object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "PgKafkaConnector")?;
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    ctx.fresh.touch(&namespace, &owner.name);
    Some(ObjectRef::new(&owner.name).within(&namespace))
}

/// An API for one namespace, or all of them.
fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The connectors that reference `secret`.
pub fn referencing(
    connectors: &[Arc<PgKafkaConnector>],
    secret: &Secret,
) -> Vec<ObjectRef<PgKafkaConnector>> {
    connectors
        .iter()
        .filter(|c| c.namespace() == secret.namespace())
        .filter(|c| {
            secret_refs(c)
                .iter()
                .any(|r| Some(r.name.as_str()) == secret.metadata.name.as_deref())
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::{connector, SPEC};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn a_secret_maps_to_the_connectors_that_use_it() {
        let uses = Arc::new(connector(SPEC));
        let other = Arc::new(connector(&SPEC.replace("shop-db", "other-db")));
        let secret = |name: &str, ns: &str| Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let refs = referencing(&[uses.clone(), other], &secret("shop-db", "shop"));
        assert_eq!(refs, vec![ObjectRef::from_obj(uses.as_ref())]);
        assert!(referencing(&[uses], &secret("shop-db", "elsewhere")).is_empty());
    }
}
