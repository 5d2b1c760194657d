//! pgkafka's Kubernetes operator: reconciles `PgKafkaConnector` resources into
//! a provisioned publication and slot, a running engine, and a truthful status.

pub mod resources;
