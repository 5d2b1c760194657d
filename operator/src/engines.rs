//! Where each engine answers: a ready address of its pod, from the
//! EndpointSlices of its Service (watched, as CloudNativePG's operator
//! reaches its instance pods by IP), so the operator reads `/status`
//! wherever cluster DNS is slow or absent. The Service's DNS name is the
//! fallback while no slice lists a ready endpoint.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

/// The label the EndpointSlice controller puts on a Service's slices.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The engines' slices carry their Service's labels (the controller copies
/// them): only these are watched.
const ENGINE_SELECTOR: &str = "app.kubernetes.io/name=pgkafka-engine";

/// The engines' EndpointSlices, kept current by watches.
#[derive(Clone, Default)]
pub struct EngineAddresses {
    stores: Vec<Store<EndpointSlice>>,
}

impl std::fmt::Debug for EngineAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineAddresses")
            .field("watches", &self.stores.len())
            .finish()
    }
}

impl EngineAddresses {
    /// Watches the engines' EndpointSlices in `namespaces` (all of them
    /// when empty), in the background for as long as the process runs.
    pub fn watch(client: &Client, namespaces: &[String]) -> Self {
        let apis: Vec<Api<EndpointSlice>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let stores = apis
            .into_iter()
            .map(|api| {
                let (reader, writer) = reflector::store();
                let config = watcher::Config::default().labels(ENGINE_SELECTOR);
                let events = reflector::reflector(writer, watcher(api, config))
                    .default_backoff()
                    .touched_objects()
                    .for_each(|event| {
                        if let Err(error) = event {
                            tracing::warn!(%error, "watching the engines' EndpointSlices");
                        }
                        futures::future::ready(())
                    });
                tokio::spawn(events);
                reader
            })
            .collect();
        EngineAddresses { stores }
    }

    /// `ip:port` of a ready endpoint of Service `service` in `namespace`.
    pub fn address(&self, namespace: &str, service: &str) -> Option<String> {
        self.stores.iter().find_map(|store| {
            let slices = store
                .state()
                .into_iter()
                .filter(|s| s.namespace().as_deref() == Some(namespace));
            ready_address(slices, service)
        })
    }
}

/// The first ready endpoint address among `slices` of Service `service`,
/// with the slice's port.
fn ready_address(
    slices: impl Iterator<Item = Arc<EndpointSlice>>,
    service: &str,
) -> Option<String> {
    slices
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(service))
        .find_map(|s| {
            let port = s.ports.as_ref()?.iter().find_map(|p| p.port)?;
            let endpoint = s
                .endpoints
                .as_ref()?
                .iter()
                .find(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))?;
            let ip = endpoint.addresses.first()?;
            Some(if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(service: &str, ready: bool, ip: &str) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-x"), "namespace": "shop",
                             "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            }))
            .expect("an EndpointSlice"),
        )
    }

    #[test]
    fn a_ready_endpoint_of_the_engine_s_service_is_its_address() {
        let slices = || {
            vec![
                slice("other", true, "10.244.0.9"),
                slice("orders-engine", false, "10.244.0.10"),
                slice("orders-engine", true, "10.244.0.11"),
            ]
            .into_iter()
        };
        assert_eq!(
            ready_address(slices(), "orders-engine").as_deref(),
            Some("10.244.0.11:8080")
        );
        assert_eq!(ready_address(slices(), "nope"), None);
        let v6 = slice("orders-engine", true, "fd00::5");
        assert_eq!(
            ready_address(std::iter::once(v6), "orders-engine").as_deref(),
            Some("[fd00::5]:8080")
        );
    }
}
