//! The operator's metrics, names in one place.

use pgkafka_crds::PgKafkaConnectorStatus;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Reconciles run.
pub const RECONCILES_TOTAL: &str = "pgkafka_operator_reconciles_total";
/// Reconciles that failed, by CamelCase reason.
pub const RECONCILE_FAILURES_TOTAL: &str = "pgkafka_operator_reconcile_failures_total";
/// Reconcile duration.
pub const RECONCILE_DURATION_SECONDS: &str = "pgkafka_operator_reconcile_duration_seconds";
/// 1 when a connector is Ready, by `namespace` and `name`.
pub const CONNECTOR_READY: &str = "pgkafka_operator_connector_ready";
/// Bytes the slot's confirmed position is behind the server, from PostgreSQL.
pub const SLOT_LAG_BYTES: &str = "pgkafka_operator_slot_lag_bytes";
/// 1 for the slot's current `wal_status`, by `namespace`, `name`, `slot`, `wal_status`.
pub const SLOT_WAL_STATUS: &str = "pgkafka_operator_slot_wal_status";
/// Requests the operator sent the Kubernetes API, by `verb` (`get`, `list`,
/// `watch`, `create`, `update`, `patch`, `delete`).
pub const API_REQUESTS_TOTAL: &str = "pgkafka_operator_api_requests_total";

/// The operator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// See [`RECONCILES_TOTAL`].
    pub reconciles: IntCounter,
    /// See [`RECONCILE_FAILURES_TOTAL`].
    pub failures: IntCounterVec,
    /// See [`RECONCILE_DURATION_SECONDS`].
    pub duration: Histogram,
    /// See [`CONNECTOR_READY`].
    pub ready: IntGaugeVec,
    /// See [`SLOT_LAG_BYTES`].
    pub lag: IntGaugeVec,
    /// See [`SLOT_WAL_STATUS`].
    pub wal_status: IntGaugeVec,
    /// See [`API_REQUESTS_TOTAL`].
    pub api_requests: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let reconciles =
            IntCounter::new(RECONCILES_TOTAL, "Reconciles run.").expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(RECONCILE_FAILURES_TOTAL, "Reconciles that failed."),
            &["reason"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(RECONCILE_DURATION_SECONDS, "Reconcile duration.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let ready = gauge(
            CONNECTOR_READY,
            "1 when the connector is Ready.",
            &["namespace", "name"],
        );
        let lag = gauge(
            SLOT_LAG_BYTES,
            "Bytes the slot is behind the server.",
            &["namespace", "name", "slot"],
        );
        let wal_status = gauge(
            SLOT_WAL_STATUS,
            "1 for the slot's current wal_status.",
            &["namespace", "name", "slot", "wal_status"],
        );
        let api_requests = IntCounterVec::new(
            Opts::new(API_REQUESTS_TOTAL, "Requests sent to the Kubernetes API."),
            &["verb"],
        )
        .expect("valid metric");
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(api_requests.clone()),
            Box::new(reconciles.clone()),
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(ready.clone()),
            Box::new(lag.clone()),
            Box::new(wal_status.clone()),
        ];
        for m in collectors {
            registry.register(m).expect("registered once");
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            ready,
            lag,
            wal_status,
            api_requests,
        }
    }
}

/// The API verb of a request: `watch` for a GET with `watch=true` (one per
/// watch opened), `list` or `get` for other GETs by whether the path ends
/// in a collection, else the method's verb.
pub fn api_verb<B>(request: &::http::Request<B>) -> &'static str {
    let uri = request.uri();
    match *request.method() {
        ::http::Method::GET => {
            let query = uri.query().unwrap_or_default();
            if query
                .split('&')
                .any(|p| p == "watch=true" || p == "watch=1")
            {
                "watch"
            } else if is_collection(uri.path()) {
                "list"
            } else {
                "get"
            }
        }
        ::http::Method::POST => "create",
        ::http::Method::PUT => "update",
        ::http::Method::PATCH => "patch",
        ::http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// `/api/v1/namespaces/x/pods` and `/apis/g/v/pods` are collections;
/// `.../pods/name` and `.../pods/name/status` are not. Counted from the
/// group version: `/api/v1` then pairs, `/apis/g/v` then pairs.
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.first() {
        Some(&"api") => parts.len().saturating_sub(2),
        Some(&"apis") => parts.len().saturating_sub(3),
        _ => return false,
    };
    rest % 2 == 1
}

impl Metrics {
    /// Exports a connector's status for alerting.
    pub fn observe(
        &self,
        namespace: &str,
        name: &str,
        slot: &str,
        status: &PgKafkaConnectorStatus,
    ) {
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        self.ready
            .with_label_values(&[namespace, name])
            .set(i64::from(ready));
        if let Some(r) = &status.replication {
            self.lag
                .with_label_values(&[namespace, name, slot])
                .set(r.lag_bytes.unwrap_or(0));
            for s in ["reserved", "extended", "unreserved", "lost"] {
                let current = r.wal_status.as_deref() == Some(s);
                self.wal_status
                    .with_label_values(&[namespace, name, slot, s])
                    .set(i64::from(current));
            }
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod verb_tests {
    use super::api_verb;

    fn verb(method: &str, uri: &str) -> &'static str {
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("request");
        api_verb(&request)
    }

    #[test]
    fn verbs_are_told_apart_as_the_api_server_counts_them() {
        let crs = "/apis/pgkafka.io/v1alpha1/namespaces/shop/pgkafkaconnectors";
        assert_eq!(verb("GET", crs), "list");
        assert_eq!(
            verb("GET", &format!("{crs}?watch=true&resourceVersion=1")),
            "watch"
        );
        assert_eq!(verb("GET", &format!("{crs}/orders")), "get");
        assert_eq!(verb("PATCH", &format!("{crs}/orders/status")), "patch");
        assert_eq!(verb("GET", "/api/v1/namespaces/shop/secrets/pg"), "get");
        assert_eq!(verb("GET", "/api/v1/namespaces/shop/secrets"), "list");
        assert_eq!(verb("GET", "/api/v1/namespaces"), "list");
        assert_eq!(
            verb("POST", "/apis/coordination.k8s.io/v1/namespaces/x/leases"),
            "create"
        );
        assert_eq!(
            verb("PUT", "/apis/coordination.k8s.io/v1/namespaces/x/leases/l"),
            "update"
        );
        assert_eq!(
            verb("DELETE", "/api/v1/namespaces/x/configmaps/c"),
            "delete"
        );
    }
}
