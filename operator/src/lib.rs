//! pgkafka's Kubernetes operator: reconciles `PgKafkaConnector` resources into
//! a provisioned publication and slot, a running engine, and a truthful status.
//!
//! # How it is built
//!
//! ```text
//! main.rs, cli  wiring only: flags, client, leader election, controller, /metrics
//! controller    watches connectors and what they own (Deployments, ConfigMaps,
//!               Services, ServiceAccounts) and the Secrets they reference
//! leader        Lease-based leader election: only the holder reconciles;
//!               released on SIGTERM, watched by the waiting replicas
//! reconcile     `reconcile` = kube's finalizer around two idempotent functions:
//!                 apply:   validate -> read Secrets (one resolver, shared with the
//!                          engine) -> provision publication and slot -> server-side
//!                          apply ServiceAccount, ConfigMap, Service, Deployment
//!                          (owner references, field manager `pgkafka-operator`)
//!                          -> status
//!                          (the full apply only when something it depends on
//!                          changed: see fresh; otherwise the slot and the engine
//!                          are read and the status written if it changed)
//!                 cleanup: by reclaimPolicy: stop the engine, wait for the slot to
//!                          be released, drop slot and publication
//! fresh         each connector's last full apply and what touched it since (the
//!               controller's watches touch the owner before its reconcile is
//!               queued): a connector at rest costs the API server nothing
//! resources/    the engine's objects as pure functions of the resource (tested as values)
//! postgres      the `Database` seam; its real implementation is the crate
//!               `pgkafka-postgres`, the PostgreSQL side the engine uses too: the
//!               operator does not depend on the engine crate, so no librdkafka
//!               and no replication carrier is linked (a test checks the binary)
//! engines       where each engine answers: a ready pod address from its Service's
//!               EndpointSlices (watched), so no cluster DNS is needed
//! probe         the `EngineProbe` seam: the engine's `/status` over HTTP, read
//!               as `pgkafka_crds::report::EngineStatus` (the type the engine
//!               writes), and snapshot signals sent to it
//! signals       the snapshot annotations (`pgkafka.io/snapshot` with an optional
//!               WHERE, `-paused`, `-stop`) turned into signals once the
//!               engine answered, each an Event
//! status        `status::compute`: conditions (Ready, SlotHealthy, Degraded) and
//!               `status.replication` from observations, pure; `Ready` follows the
//!               running engine, never the last reconcile
//! error         one error type; its `reason()` names conditions, Events and
//!               metrics, and `requeue_after()` is the one retry decision
//! metrics, http the operator's own Prometheus metrics (API requests by verb
//!               too, counted by a layer on the client) and endpoints
//! ```
//!
//! Tests: pure builders and `status::compute` beside their code; API-contract
//! scenarios on kube's mock service (`scenarios.rs`, `fixtures.rs`) for what a
//! real server cannot show; the PostgreSQL side against a real server in
//! `tests/tests/operator_postgres.rs`.

pub mod cli;
pub mod controller;
pub mod engines;
pub mod error;
pub mod fresh;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod postgres;
pub mod probe;
pub mod reconcile;
pub mod resources;
mod signals;
pub mod status;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod scenarios;
