//! Asking a running engine how it is: its `/status` through its Service.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Empty, Full};
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
    /// Asks the engine of `c` to snapshot `tables` (`POST /snapshots`).
    async fn request_snapshot(&self, c: &PgKafkaConnector, tables: &[String]) -> SnapshotAnswer;
}

/// What the engine said to a snapshot request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotAnswer {
    /// 202: the tables will be read.
    Accepted,
    /// 400: the engine's message names what is wrong (asking again will not help).
    Refused(String),
    /// No answer: ask again at the next reconcile.
    Unreachable,
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

    async fn request_snapshot(&self, c: &PgKafkaConnector, tables: &[String]) -> SnapshotAnswer {
        let Some(address) = self.address(c) else {
            return SnapshotAnswer::Unreachable;
        };
        let Ok(uri) = format!("http://{address}/snapshots").parse::<hyper::Uri>() else {
            return SnapshotAnswer::Unreachable;
        };
        let body = serde_json::json!({ "tables": tables }).to_string();
        let Ok(request) = hyper::Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
        else {
            return SnapshotAnswer::Unreachable;
        };
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_secs(3), client.request(request)).await
        else {
            return SnapshotAnswer::Unreachable;
        };
        let status = response.status();
        let body = tokio::time::timeout(Duration::from_secs(3), response.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        match status.as_u16() {
            202 => SnapshotAnswer::Accepted,
            400 => SnapshotAnswer::Refused(
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
            ),
            _ => SnapshotAnswer::Unreachable,
        }
    }
}

/// The engine's `/status` JSON, read for what the status needs.
pub fn parse_report(body: &[u8]) -> Option<EngineReport> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let snapshots = v["snapshot"]["tables"]
        .as_array()
        .map(|tables| {
            tables
                .iter()
                .filter_map(|t| serde_json::from_value(t.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    Some(EngineReport {
        streaming: v["streaming"].as_bool()?,
        last_event_ms: v["lastEventUnixMs"].as_i64().filter(|ms| *ms > 0),
        snapshots,
        halted: v["halted"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_snapshot_tables() {
        let body = br#"{"streaming": true, "lastEventUnixMs": 0, "snapshot": {"tables": [
            {"table": "public.orders", "state": "running", "rows": 12, "after": ["12"], "startedMs": 5}]}}"#;
        let report = parse_report(body).expect("report");
        assert_eq!(report.snapshots.len(), 1);
        assert_eq!(
            (
                report.snapshots[0].table.as_str(),
                report.snapshots[0].state.as_str(),
                report.snapshots[0].rows
            ),
            ("public.orders", "running", 12)
        );
        assert_eq!(report.snapshots[0].started_ms, Some(5));
    }

    #[test]
    fn reads_the_engine_status() {
        let body = br#"{"streaming": true, "lastEventUnixMs": 1700000000000, "slot": "s"}"#;
        assert_eq!(
            parse_report(body),
            Some(EngineReport {
                streaming: true,
                last_event_ms: Some(1_700_000_000_000),
                snapshots: Vec::new(),
                halted: None,
            })
        );
        assert_eq!(
            parse_report(br#"{"streaming": false, "lastEventUnixMs": 0}"#),
            Some(EngineReport::default())
        );
        assert_eq!(parse_report(b"not json"), None);
    }
}
