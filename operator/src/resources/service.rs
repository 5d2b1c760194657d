//! The engine's Service (metrics, status) and its ServiceAccount (no
//! permissions: the engine never talks to the API server).

use k8s_openapi::api::core::v1::{Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgkafka_crds::PgKafkaConnector;

use super::{labels, metadata, HTTP_PORT};

/// `<name>-engine`, port `http` (8080): `/metrics`, `/status`, `/readyz`.
pub fn service(c: &PgKafkaConnector) -> Service {
    Service {
        metadata: metadata(c),
        spec: Some(ServiceSpec {
            selector: Some(labels(c)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: HTTP_PORT,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The engine pod's identity, without an API token.
pub fn service_account(c: &PgKafkaConnector) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(c),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::{connector, SPEC};

    #[test]
    fn service_selects_the_engine_pod() {
        let c = connector(SPEC);
        let s = service(&c);
        let spec = s.spec.expect("spec");
        assert_eq!(spec.selector, Some(labels(&c)));
        assert_eq!(spec.ports.expect("ports")[0].port, 8080);
        assert_eq!(
            service_account(&c).automount_service_account_token,
            Some(false)
        );
    }
}
