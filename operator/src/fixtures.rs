//! Test fixtures: a mock API server (kube's `tower_test` pair) that answers
//! by route and records every request, and doubles for PostgreSQL and the
//! engine probe, so reconcile scenarios can be checked request by request.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use pgkafka_crds::conditions::{ConditionType, Reason};
use pgkafka_crds::{PgKafkaConnector, PgKafkaConnectorSpec, PgKafkaConnectorStatus, ReclaimPolicy};
use serde_json::{json, Value};

use crate::error::Error;
use crate::metrics::Metrics;
use crate::postgres::{Credentials, Database, Dropped, SlotState};
use crate::probe::{EngineProbe, SnapshotAnswer, SnapshotSignal};
use crate::reconcile::Context;
use crate::resources::fixtures::{connector, SPEC};
use crate::resources::Settings;
use pgkafka_crds::report::EngineStatus;

/// One request the operator made.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Body, parsed as JSON when it is JSON.
    pub body: Value,
}

/// An answer overriding the defaults for requests whose method matches and
/// whose URI contains `contains`.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Method to match.
    pub method: &'static str,
    /// Substring of the URI to match.
    pub contains: &'static str,
    /// Status code.
    pub code: u16,
    /// Body.
    pub body: Value,
}

/// PostgreSQL double: records calls, returns what it is told.
#[derive(Default)]
pub struct FakeDb {
    /// Calls made, by name.
    pub calls: Mutex<Vec<String>>,
    /// The slot state it reports.
    pub slot: Option<SlotState>,
    /// What drop_all answers.
    pub drop_answer: Option<Dropped>,
}

#[async_trait]
impl Database for FakeDb {
    async fn provision(
        &self,
        _: &PgKafkaConnector,
        creds: &Credentials,
        delivered: pgkafka_postgres::slot_check::Delivered,
    ) -> Result<(), Error> {
        let after = delivered
            .lsn()
            .map(|d| format!(" after {d}"))
            .unwrap_or_default();
        self.record(format!(
            "provision as {} with password {}{after}",
            creds.user,
            creds.password.expose()
        ));
        Ok(())
    }
    async fn slot_state(
        &self,
        _: &PgKafkaConnector,
        _: &Credentials,
    ) -> Result<Option<SlotState>, Error> {
        self.record("slot_state".into());
        Ok(self.slot.clone())
    }
    async fn drop_all(&self, _: &PgKafkaConnector, _: &Credentials) -> Result<Dropped, Error> {
        self.record("drop_all".into());
        Ok(self.drop_answer.unwrap_or(Dropped::Done))
    }
}

impl FakeDb {
    fn record(&self, call: String) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Probe double: reports what it is given, accepts and records snapshot
/// requests.
pub struct FakeProbe {
    report: Option<EngineStatus>,
    /// Snapshot requests received, in order.
    pub snapshot_requests: Arc<Mutex<Vec<SnapshotSignal>>>,
}

#[async_trait]
impl EngineProbe for FakeProbe {
    async fn report(&self, _: &PgKafkaConnector) -> Option<EngineStatus> {
        self.report.clone()
    }

    async fn signal(&self, _: &PgKafkaConnector, signal: &SnapshotSignal) -> SnapshotAnswer {
        if let Ok(mut requests) = self.snapshot_requests.lock() {
            requests.push(signal.clone());
        }
        SnapshotAnswer::Accepted
    }
}

/// An engine's `/status` with nothing to report but whether it streams;
/// tests change what they need: `EngineStatus { halted: Some(..), ..engine(false) }`.
pub fn engine(streaming: bool) -> EngineStatus {
    EngineStatus {
        connector: "orders".into(),
        slot: "orders_slot".into(),
        streaming,
        confirmed_flush_lsn: Default::default(),
        received_lsn: Default::default(),
        wal_end_lsn: Default::default(),
        lag_bytes: 0,
        last_keepalive_unix_seconds: 0,
        last_event_unix_ms: 0,
        counters: Default::default(),
        in_flight: Default::default(),
        snapshot: Default::default(),
        tables: Default::default(),
        halted: None,
    }
}

/// A slot in good health.
pub fn healthy_slot() -> SlotState {
    SlotState {
        active: true,
        confirmed_flush_lsn: Some("0/16B3748".into()),
        restart_lsn: Some("0/16B3700".into()),
        wal_status: Some("reserved".into()),
        lag_bytes: Some(4096),
        failover: None,
        synced: None,
    }
}

/// A connector as the API server returns it, built in steps (controller-rs's
/// `Doc::test().finalized()`): `Doc::test().finalized().spec(|s| ...).build()`.
#[derive(Clone)]
pub struct Doc(PgKafkaConnector);

impl Doc {
    /// `orders` in `shop`, as [`SPEC`] says, without a finalizer yet.
    pub fn test() -> Doc {
        Doc(connector(SPEC))
    }

    /// With the operator's finalizer, as apply sees it.
    pub fn finalized(mut self) -> Doc {
        self.0.metadata.finalizers = Some(vec!["pgkafka.io/cleanup".into()]);
        self
    }

    /// Being deleted (finalizer still on), under `reclaimPolicy`.
    pub fn deleting(self, policy: ReclaimPolicy) -> Doc {
        let mut doc = self.finalized().spec(|s| s.reclaim_policy = policy);
        doc.0.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-11-22T10:00:00Z")).expect("a valid time"));
        doc
    }

    /// With annotation `key` = `value`.
    pub fn annotated(mut self, key: &str, value: &str) -> Doc {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    /// Any typed change of the spec.
    pub fn spec(mut self, edit: impl FnOnce(&mut PgKafkaConnectorSpec)) -> Doc {
        edit(&mut self.0.spec);
        self
    }

    /// With `status`, as a later reconcile sees it.
    pub fn status(mut self, status: Value) -> Doc {
        self.0.status = serde_json::from_value(status).ok();
        self
    }

    /// The resource, shared as the controller hands it over.
    pub fn build(self) -> Arc<PgKafkaConnector> {
        Arc::new(self.0)
    }
}

/// One scenario's mock API server and doubles, built in steps:
/// `Scenario::new().slot(healthy_slot()).engine(engine(true)).start()`.
#[derive(Default)]
pub struct Scenario {
    answers: Vec<Answer>,
    db: FakeDb,
    engine: Option<EngineStatus>,
}

/// A started [`Scenario`].
pub struct Started {
    /// The mock API server and what it saw.
    pub api: ApiServer,
    /// The database double and the calls it got.
    pub db: Arc<FakeDb>,
    /// The reconciler's context on both.
    pub ctx: Arc<Context>,
    /// Snapshot requests the engine double received.
    pub snapshot_requests: Arc<Mutex<Vec<SnapshotSignal>>>,
}

impl Scenario {
    /// No special answers, no slot, no engine.
    pub fn new() -> Scenario {
        Scenario::default()
    }

    /// The API server answers requests matching `answer` so.
    pub fn answer(mut self, answer: Answer) -> Scenario {
        self.answers.push(answer);
        self
    }

    /// PostgreSQL reports `slot`.
    pub fn slot(mut self, slot: SlotState) -> Scenario {
        self.db.slot = Some(slot);
        self
    }

    /// Dropping the slot answers `answer`.
    pub fn drop_answer(mut self, answer: Dropped) -> Scenario {
        self.db.drop_answer = Some(answer);
        self
    }

    /// The engine answers `/status` with `status`.
    pub fn engine(mut self, status: EngineStatus) -> Scenario {
        self.engine = Some(status);
        self
    }

    /// The mock server and the context, ready for `reconcile`.
    pub fn start(self) -> Started {
        let (api, client) = ApiServer::start(self.answers);
        let db = Arc::new(self.db);
        let snapshot_requests = Arc::new(Mutex::new(Vec::new()));
        let ctx = context_recording(
            client,
            Arc::clone(&db),
            self.engine,
            Arc::clone(&snapshot_requests),
        );
        Started {
            api,
            db,
            ctx,
            snapshot_requests,
        }
    }
}

/// A 404 from the API server for `GET` of `path_part`.
pub fn not_found_answer(path_part: &'static str, what: &str) -> Answer {
    Answer {
        method: "GET",
        contains: path_part,
        code: 404,
        body: json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{what} not found")}),
    }
}

/// The mock API server and what it saw.
pub struct ApiServer {
    /// Requests in arrival order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl ApiServer {
    /// Starts answering with defaults plus `answers`; returns the server
    /// and a client talking to it.
    pub fn start(answers: Vec<Answer>) -> (ApiServer, Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let uri = request.uri().to_string();
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes)
                    .or_else(|_| serde_yaml::from_slice(&bytes))
                    .unwrap_or(Value::Null);
                let (code, reply) = answer(&answers, &method, &uri, &body);
                if let Ok(mut l) = log.lock() {
                    l.push(Seen { method, uri, body });
                }
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()))
                    .expect("valid response");
                send.send_response(response);
            }
        });
        (ApiServer { seen }, Client::new(service, "default"))
    }

    /// Requests whose method matches and URI contains `part`.
    pub fn find(&self, method: &str, part: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|r| r.method == method && r.uri.contains(part))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The last status written.
    pub fn last_status(&self) -> Value {
        self.find("PATCH", "/status")
            .last()
            .map(|s| s.body["status"].clone())
            .unwrap_or(Value::Null)
    }

    /// The condition `type_` of the last status written: (status, reason).
    pub fn condition(&self, type_: ConditionType) -> (&'static str, Option<Reason>) {
        let status: Option<PgKafkaConnectorStatus> =
            serde_json::from_value(self.last_status()).ok();
        let conditions = status.map(|s| s.conditions).unwrap_or_default();
        match pgkafka_crds::conditions::find(&conditions, type_) {
            Some(c) => (c.status().map_or("?", |s| s.as_str()), c.reason()),
            None => ("absent", None),
        }
    }

    /// Reasons of the Events published.
    pub fn event_reasons(&self) -> Vec<String> {
        self.find("POST", "/events")
            .iter()
            .filter_map(|e| e.body["reason"].as_str().map(str::to_owned))
            .collect()
    }
}

fn not_found(what: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{what} not found"), "reason": "NotFound", "code": 404})
}

fn answer(answers: &[Answer], method: &str, uri: &str, body: &Value) -> (u16, Value) {
    if let Some(a) = answers
        .iter()
        .find(|a| a.method == method && uri.contains(a.contains))
    {
        return (a.code, a.body.clone());
    }
    match method {
        "GET" if uri.contains("/secrets/") => (
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-db", "namespace": "shop", "resourceVersion": "7"},
                   "data": {"password": "czNjcmV0Cg=="}}),
        ),
        "PATCH" if uri.contains("/pgkafkaconnectors/") => (
            200,
            serde_json::to_value(&*Doc::test().finalized().build()).unwrap_or_default(),
        ),
        "DELETE" => (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        "GET" | "POST" | "PATCH" | "PUT" if uri.contains("/events") => (201, body.clone()),
        "PATCH" => (200, body.clone()),
        _ => (404, not_found(uri)),
    }
}

/// A context on `client` with the doubles; the probe reports `probe` and
/// records snapshot requests into `snapshot_requests`.
pub fn context_recording(
    client: Client,
    db: Arc<FakeDb>,
    probe: Option<EngineStatus>,
    snapshot_requests: Arc<Mutex<Vec<SnapshotSignal>>>,
) -> Arc<Context> {
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "pgkafka-operator".into(),
                instance: None,
            },
        ),
        client,
        metrics: Metrics::default(),
        settings: Settings::default(),
        db,
        probe: Arc::new(FakeProbe {
            report: probe,
            snapshot_requests,
        }),
        refresh: std::time::Duration::from_secs(15),
        status_writes: Mutex::new(Default::default()),
        fresh: Default::default(),
    })
}
