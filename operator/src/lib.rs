//! pgkafka's Kubernetes operator: reconciles `PgKafkaConnector` resources into
//! a provisioned publication and slot, a running engine, and a truthful status.

pub mod controller;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod postgres;
pub mod probe;
pub mod reconcile;
pub mod resources;
pub mod status;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod scenarios;
