//! The engine's HTTP endpoints: `/metrics` (Prometheus), `/healthz` (the
//! process runs), `/readyz` (200 only while streaming) and `/status` (JSON);
//! and the snapshot signals (Debezium's names): `POST /snapshots`
//! (execute-snapshot, with an optional condition), `POST
//! /snapshots/pause`, `/snapshots/resume` and `/snapshots/stop`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::{Error, ErrorKind};
use crate::status::StatusHandle;

/// What the endpoints report.
#[derive(Clone)]
pub(crate) struct HttpState {
    /// The engine's state.
    pub status: StatusHandle,
}

/// Bodies larger than this are refused.
const MAX_BODY: usize = 64 * 1024;

impl HttpState {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != hyper::Method::POST {
            return self.respond(req.uri().path());
        }
        let control = match req.uri().path() {
            "/snapshots" => None,
            "/snapshots/pause" => Some(StatusHandle::pause_snapshots as Control),
            "/snapshots/resume" => Some(StatusHandle::resume_snapshots as Control),
            "/snapshots/stop" => Some(StatusHandle::stop_snapshots as Control),
            _ => return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body over 64 KiB"),
        };
        match control {
            None => self.request_snapshot(&body).await,
            Some(control) => self.control(&body, control),
        }
    }

    /// `POST /snapshots` with `{"tables": ["public.orders"]}` and an
    /// optional `"condition": "<SQL boolean expression>"`: 202 with the
    /// tables accepted, or 400 naming what is wrong (PostgreSQL's message
    /// for a condition it refuses).
    async fn request_snapshot(&self, body: &[u8]) -> Response<Full<Bytes>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Request {
            tables: Vec<String>,
            #[serde(default)]
            condition: Option<String>,
        }
        let request: Request = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                let message = format!(
                    "expected {{\"tables\": [\"schema.table\", ...], \"condition\": \"...\" (optional)}}: {e}"
                );
                return json_error(StatusCode::BAD_REQUEST, &message);
            }
        };
        let answer = match &request.condition {
            None => self.status.request_snapshot(&request.tables),
            Some(condition) => {
                self.status
                    .request_snapshot_where(&request.tables, condition)
                    .await
            }
        };
        accepted(answer)
    }

    /// `POST /snapshots/{pause,resume,stop}`, with `{"tables": [...]}` or
    /// no body (every table concerned).
    fn control(&self, body: &[u8], control: Control) -> Response<Full<Bytes>> {
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            tables: Vec<String>,
        }
        let request: Request = if body.iter().all(u8::is_ascii_whitespace) {
            Request::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => {
                    let message =
                        format!("expected no body or {{\"tables\": [\"schema.table\", ...]}}: {e}");
                    return json_error(StatusCode::BAD_REQUEST, &message);
                }
            }
        };
        accepted(control(&self.status, &request.tables))
    }

    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match path {
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.status.prometheus_text(),
            ),
            "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.status.is_streaming() => {
                (StatusCode::OK, "text/plain", b"streaming\n".to_vec())
            }
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"not streaming\n".to_vec(),
            ),
            "/status" => (
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&self.status.status()).unwrap_or_default(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        reply(status, content_type, body)
    }
}

/// A snapshot signal of the status handle.
type Control = fn(&StatusHandle, &[String]) -> Result<Vec<String>, String>;

/// 202 with the tables accepted, or 400 with why not.
fn accepted(answer: Result<Vec<String>, String>) -> Response<Full<Bytes>> {
    match answer {
        Ok(accepted) => {
            let body = serde_json::json!({ "accepted": accepted });
            reply(
                StatusCode::ACCEPTED,
                "application/json",
                body.to_string().into_bytes(),
            )
        }
        Err(message) => json_error(StatusCode::BAD_REQUEST, &message),
    }
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message });
    reply(status, "application/json", body.to_string().into_bytes())
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Binds `addr` and serves until the process ends. Returns the bound address.
pub(crate) async fn serve(addr: SocketAddr, state: HttpState) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ErrorKind::Http {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ErrorKind::Http {
        addr: addr.to_string(),
        source,
    })?;
    let state = Arc::new(state);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(state.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn orders_listened() -> crate::snapshot::SharedSnapshots {
        let shared = crate::snapshot::SharedSnapshots::default();
        shared.set_listened(vec![
            pgkafka_crds::QualifiedTable::parse("public.orders").expect("valid")
        ]);
        shared
    }

    #[test]
    fn readyz_follows_streaming_and_status_reports_lsns() {
        let metrics = Metrics::new("c");
        let state = HttpState {
            status: StatusHandle {
                name: "c".into(),
                slot: "s".into(),
                metrics: metrics.clone(),
                shared: orders_listened(),
                halted: Default::default(),
                condition_check: None,
            },
        };
        assert_eq!(
            state.respond("/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.streaming.set(1);
        metrics.confirmed_lsn.set(0x1_0000_0010);
        metrics.wal_end_lsn.set(0x1_0000_0110);
        assert_eq!(state.respond("/readyz").status(), StatusCode::OK);
        let status = serde_json::to_value(state.status.status()).expect("serializes");
        assert_eq!(status["confirmedFlushLSN"], "1/10");
        assert_eq!(status["lagBytes"], 256);
        assert_eq!(state.respond("/nope").status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn snapshot_requests_name_what_is_wrong() {
        let metrics = Metrics::new("c");
        let state = HttpState {
            status: StatusHandle {
                name: "c".into(),
                slot: "s".into(),
                metrics,
                shared: orders_listened(),
                halted: Default::default(),
                condition_check: None,
            },
        };
        let accepted = state.request_snapshot(br#"{"tables": ["orders"]}"#).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        let unknown = state
            .request_snapshot(br#"{"tables": ["public.nope"]}"#)
            .await;
        assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
        let malformed = state.request_snapshot(br#"{"table": "orders"}"#).await;
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
        let pause = state.control(b"", StatusHandle::pause_snapshots);
        assert_eq!(pause.status(), StatusCode::ACCEPTED);
        let stop = state.control(
            br#"{"tables": ["public.nope"]}"#,
            StatusHandle::stop_snapshots,
        );
        assert_eq!(stop.status(), StatusCode::BAD_REQUEST);
        let tables = state.status.status().snapshot.tables;
        assert_eq!(tables.len(), 1, "only the accepted table is pending");
        assert_eq!(tables[0].table, "public.orders");
        assert_eq!(tables[0].state, crate::SnapshotState::Pending);
    }
}
