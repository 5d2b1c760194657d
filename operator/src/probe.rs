//! Asking a running engine how it is: its `/status` through its Service.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube::ResourceExt;
use pgkafka_crds::PgKafkaConnector;

use crate::resources::{engine_name, HTTP_PORT};
use crate::status::EngineReport;

/// Reads an engine's report; `None` when it does not answer.
#[async_trait]
pub trait EngineProbe: Send + Sync {
    /// The engine of connector `c`.
    async fn report(&self, c: &PgKafkaConnector) -> Option<EngineReport>;
}

/// Over HTTP, at `http://<name>-engine.<namespace>.svc:8080/status`.
#[derive(Debug, Default)]
pub struct HttpProbe {
    /// Tests without cluster DNS: `DIR/<namespace>/<service>` holds the
    /// engine's `host:port`.
    pub endpoints_dir: Option<PathBuf>,
}

impl HttpProbe {
    /// Where the engine of `c` answers.
    fn address(&self, c: &PgKafkaConnector) -> Option<String> {
        let (service, ns) = (engine_name(c), c.namespace()?);
        match &self.endpoints_dir {
            None => Some(format!("{service}.{ns}.svc:{HTTP_PORT}")),
            Some(dir) => std::fs::read_to_string(dir.join(&ns).join(&service))
                .ok()
                .map(|a| a.trim().to_owned()),
        }
    }
}

#[async_trait]
impl EngineProbe for HttpProbe {
    async fn report(&self, c: &PgKafkaConnector) -> Option<EngineReport> {
        let url = format!("http://{}/status", self.address(c)?);
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
        let request = client.get(url.parse().ok()?);
        let response = tokio::time::timeout(Duration::from_secs(3), request)
            .await
            .ok()?
            .ok()?;
        let body = tokio::time::timeout(Duration::from_secs(3), response.into_body().collect())
            .await
            .ok()?
            .ok()?
            .to_bytes();
        parse_report(&body)
    }
}

/// The engine's `/status` JSON, read for what the status needs.
pub fn parse_report(body: &[u8]) -> Option<EngineReport> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(EngineReport {
        streaming: v["streaming"].as_bool()?,
        last_event_ms: v["lastEventUnixMs"].as_i64().filter(|ms| *ms > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_engine_status() {
        let body = br#"{"streaming": true, "lastEventUnixMs": 1700000000000, "slot": "s"}"#;
        assert_eq!(
            parse_report(body),
            Some(EngineReport {
                streaming: true,
                last_event_ms: Some(1_700_000_000_000)
            })
        );
        assert_eq!(
            parse_report(br#"{"streaming": false, "lastEventUnixMs": 0}"#),
            Some(EngineReport::default())
        );
        assert_eq!(parse_report(b"not json"), None);
    }
}
