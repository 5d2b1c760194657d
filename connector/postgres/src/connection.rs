//! The SQL session to PostgreSQL (catalog checks, provisioning, slot state),
//! with libpq's `sslmode` meanings. The replication stream is `stream.rs`.

use std::time::Duration;

use pgkafka_crds::{PostgresSpec, SslMode};
use tokio_postgres::Client;

use crate::credentials::PgCredentials;
use crate::error::PgError;
use crate::tls::VerifiedName;

/// `host:port/database as user`, for error messages (never the password).
pub(crate) fn describe_target(pg: &PostgresSpec, user: &str) -> String {
    format!("{}:{}/{} as {}", pg.host, pg.port, pg.database, user)
}

/// Opens a SQL session as `application_name`; the connection task runs until
/// the client is dropped.
pub async fn connect(
    application_name: &str,
    pg: &PostgresSpec,
    creds: &PgCredentials,
) -> Result<Client, PgError> {
    connect_verified(application_name, pg, creds, &VerifiedName::default()).await
}

/// [`connect`]; under `verify-ca`, `verified` learns the name in the
/// server's certificate.
pub async fn connect_verified(
    application_name: &str,
    pg: &PostgresSpec,
    creds: &PgCredentials,
    verified: &VerifiedName,
) -> Result<Client, PgError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&pg.host)
        .port(pg.port)
        .dbname(&pg.database)
        .user(&creds.user)
        .application_name(application_name)
        .connect_timeout(Duration::from_secs(10));
    if !creds.password.expose().is_empty() {
        config.password(creds.password.expose());
    }
    let wrap = |source| PgError::connect(describe_target(pg, &creds.user), source);
    match crate::tls::client_config(pg.ssl_mode, creds.ca_pem.as_deref(), verified)? {
        None => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(wrap)?;
            tokio::spawn(conn);
            Ok(client)
        }
        Some(tls) => {
            config.ssl_mode(match pg.ssl_mode {
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let (client, conn) = config.connect(tls).await.map_err(wrap)?;
            tokio::spawn(conn);
            Ok(client)
        }
    }
}
