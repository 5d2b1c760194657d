//! The engine's connections to PostgreSQL: the replication stream, the
//! snapshot reader and the catalog lookups Relation messages need. The SQL
//! session, provisioning, catalog and slot state are the shared crate
//! `pgkafka-postgres`, named here under their old paths.

pub(crate) use pgkafka_postgres::{catalog, connection, error, provision, tls};

pub(crate) mod lookup;
pub(crate) mod stream;
