//! The engine's HTTP endpoints: `/metrics` (Prometheus), `/healthz` (the
//! process runs), `/readyz` (200 only while streaming) and `/status` (JSON).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::Error;
use crate::lsn::Lsn;
use crate::metrics::Metrics;

/// What the endpoints report.
#[derive(Clone)]
pub struct HttpState {
    /// Connector name.
    pub name: String,
    /// Slot name.
    pub slot: String,
    /// The engine's metrics.
    pub metrics: Metrics,
}

impl HttpState {
    fn status_json(&self) -> serde_json::Value {
        let m = &self.metrics;
        let lsn = |g: &prometheus::IntGauge| Lsn(u64::try_from(g.get()).unwrap_or(0)).to_string();
        serde_json::json!({
            "connector": self.name,
            "slot": self.slot,
            "streaming": m.streaming.get() == 1,
            "confirmedFlushLSN": lsn(&m.confirmed_lsn),
            "receivedLSN": lsn(&m.received_lsn),
            "walEndLSN": lsn(&m.wal_end_lsn),
            "lagBytes": (m.wal_end_lsn.get() - m.confirmed_lsn.get()).max(0),
            "lastKeepaliveUnixSeconds": m.last_keepalive.get(),
            "lastEventUnixMs": m.last_event_ms.get(),
            "counters": {
                "events": m.events.get(),
                "transactions": m.transactions.get(),
                "recordsDelivered": m.delivered.get(),
                "deliveryErrors": m.delivery_errors.get(),
                "sessionRestarts": m.restarts.get(),
            },
            "inFlight": {"records": m.in_flight_records.get(), "bytes": m.in_flight_bytes.get(), "recordLimit": m.in_flight_limit.get()},
        })
    }

    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match path {
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.metrics.streaming.get() == 1 => {
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
                self.status_json().to_string().into_bytes(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, v);
        }
        response
    }
}

/// Binds `addr` and serves until the process ends. Returns the bound address.
pub async fn serve(addr: SocketAddr, state: HttpState) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Http {
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
                    async move { Ok::<_, Infallible>(state.respond(req.uri().path())) }
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

    #[test]
    fn readyz_follows_streaming_and_status_reports_lsns() {
        let state = HttpState {
            name: "c".into(),
            slot: "s".into(),
            metrics: Metrics::new("c"),
        };
        assert_eq!(
            state.respond("/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.metrics.streaming.set(1);
        state.metrics.confirmed_lsn.set(0x1_0000_0010);
        state.metrics.wal_end_lsn.set(0x1_0000_0110);
        assert_eq!(state.respond("/readyz").status(), StatusCode::OK);
        let status = state.status_json();
        assert_eq!(status["confirmedFlushLSN"], "1/10");
        assert_eq!(status["lagBytes"], 256);
        assert_eq!(state.respond("/nope").status(), StatusCode::NOT_FOUND);
    }
}
