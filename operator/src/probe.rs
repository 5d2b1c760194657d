//! Asking a running engine how it is: its `/status`, at its pod's address
//! (`engines.rs`) or through its Service; and snapshot signals sent to it.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube::ResourceExt;
use pgkafka_crds::PgKafkaConnector;

use crate::engines::EngineAddresses;
use crate::resources::{engine_name, HTTP_PORT};
use pgkafka_crds::report::EngineStatus;

/// Reads an engine's report; `None` when it does not answer.
#[async_trait]
pub trait EngineProbe: Send + Sync {
    /// The engine of connector `c`.
    async fn report(&self, c: &PgKafkaConnector) -> Option<EngineStatus>;
    /// Sends a snapshot signal to the engine of `c` (`POST /snapshots...`).
    async fn signal(&self, c: &PgKafkaConnector, signal: &SnapshotSignal) -> SnapshotAnswer;
}

/// A snapshot signal (Debezium's names), as the engine's HTTP API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSignal {
    /// `execute-snapshot` of `tables`, only the rows where `condition` holds.
    Execute {
        /// `schema.table` names.
        tables: Vec<String>,
        /// A SQL boolean expression (`additional-conditions`).
        condition: Option<String>,
    },
    /// `pause-snapshot`: every pending and running table.
    Pause,
    /// `resume-snapshot`: every paused table.
    Resume,
    /// `stop-snapshot` of `tables` (every unfinished one when empty).
    Stop(Vec<String>),
}

impl SnapshotSignal {
    /// The engine's path and the JSON body.
    pub fn request(&self) -> (&'static str, serde_json::Value) {
        use serde_json::json;
        match self {
            SnapshotSignal::Execute {
                tables,
                condition: None,
            } => ("/snapshots", json!({ "tables": tables })),
            SnapshotSignal::Execute {
                tables,
                condition: Some(c),
            } => ("/snapshots", json!({ "tables": tables, "condition": c })),
            SnapshotSignal::Pause => ("/snapshots/pause", json!({})),
            SnapshotSignal::Resume => ("/snapshots/resume", json!({})),
            SnapshotSignal::Stop(tables) => ("/snapshots/stop", json!({ "tables": tables })),
        }
    }
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

/// Over HTTP, at a ready address of the engine's pod (its Service's
/// EndpointSlices), else at `http://<name>-engine.<namespace>.svc:8080`.
#[derive(Debug, Default)]
pub struct HttpProbe {
    /// The engines' pod addresses, watched.
    pub addresses: EngineAddresses,
    /// The API-server tests' engines are local processes, and an API
    /// server refuses loopback addresses in EndpointSlices: there
    /// `DIR/<namespace>/<service>` holds the engine's `host:port`.
    pub endpoints_dir: Option<PathBuf>,
}

impl HttpProbe {
    /// Where the engine of `c` answers.
    fn address(&self, c: &PgKafkaConnector) -> Option<String> {
        let (service, ns) = (engine_name(c), c.namespace()?);
        if let Some(dir) = &self.endpoints_dir {
            return std::fs::read_to_string(dir.join(&ns).join(&service))
                .ok()
                .map(|a| a.trim().to_owned());
        }
        Some(
            self.addresses
                .address(&ns, &service)
                .unwrap_or_else(|| format!("{service}.{ns}.svc:{HTTP_PORT}")),
        )
    }
}

#[async_trait]
impl EngineProbe for HttpProbe {
    async fn report(&self, c: &PgKafkaConnector) -> Option<EngineStatus> {
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

    async fn signal(&self, c: &PgKafkaConnector, signal: &SnapshotSignal) -> SnapshotAnswer {
        let Some(address) = self.address(c) else {
            return SnapshotAnswer::Unreachable;
        };
        let (path, body) = signal.request();
        let Ok(uri) = format!("http://{address}{path}").parse::<hyper::Uri>() else {
            return SnapshotAnswer::Unreachable;
        };
        let body = body.to_string();
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

/// The engine's `/status` JSON: the contract type the engine writes.
/// `None` (an engine that does not answer properly) when it is not one.
pub fn parse_report(body: &[u8]) -> Option<EngineStatus> {
    match serde_json::from_slice(body) {
        Ok(status) => Some(status),
        Err(error) => {
            tracing::warn!(%error, "the engine's /status is not the status this operator reads");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkafka_crds::report::SnapshotState;

    #[test]
    fn reads_what_the_engine_writes() {
        let written = EngineStatus {
            last_event_unix_ms: 1_700_000_000_000,
            ..crate::fixtures::engine(true)
        };
        let body = serde_json::to_vec(&written).expect("serializes");
        let read = parse_report(&body).expect("report");
        assert_eq!(read, written);
        assert_eq!(read.last_event_ms(), Some(1_700_000_000_000));
        assert_eq!(parse_report(b"not json"), None);
        assert_eq!(
            parse_report(br#"{"streaming": true}"#),
            None,
            "not the whole contract"
        );
    }

    #[test]
    fn reads_the_snapshot_tables() {
        let mut written = crate::fixtures::engine(true);
        written.snapshot.tables = vec![pgkafka_crds::report::TableSnapshot {
            state: SnapshotState::Running,
            rows: 12,
            started_ms: Some(5),
            ..pgkafka_crds::report::TableSnapshot::pending("public.orders".into())
        }];
        let body = serde_json::to_vec(&written).expect("serializes");
        let report = parse_report(&body).expect("report");
        assert_eq!(report.snapshot.tables, written.snapshot.tables);
    }
}
