//! The two connections to PostgreSQL: a SQL session (catalog checks,
//! provisioning) and the replication stream, both from one [`EngineConfig`].

use std::time::Duration;

use pgkafka_crds::SslMode;
use pgwire_replication::{ReplicationConfig, TlsConfig};
use tokio_postgres::Client;

use super::tls::VerifiedName;
use crate::config::EngineConfig;
use crate::decode::values::SESSION_OPTIONS;
use crate::error::Error;
use crate::lsn::Lsn;

/// `host:port/database as user`, for error messages (never the password).
pub fn describe_target(cfg: &EngineConfig) -> String {
    let pg = &cfg.spec.postgres;
    format!("{}:{}/{} as {}", pg.host, pg.port, pg.database, cfg.user)
}

/// Opens a SQL session; the connection task runs until the client is dropped.
/// Under `verify-ca`, `verified` learns the name in the server's certificate.
pub async fn connect_sql(cfg: &EngineConfig, verified: &VerifiedName) -> Result<Client, Error> {
    let pg = &cfg.spec.postgres;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&pg.host)
        .port(pg.port)
        .dbname(&pg.database)
        .user(&cfg.user)
        .application_name(format!("pgkafka-{}", cfg.name))
        .connect_timeout(Duration::from_secs(10));
    if !cfg.password.expose().is_empty() {
        config.password(cfg.password.expose());
    }
    let wrap = |source| Error::connect(describe_target(cfg), source);
    match super::tls::client_config(pg.ssl_mode, cfg.ca_file.as_deref(), verified)? {
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

/// The replication stream's configuration, starting at `start` (zero: the
/// slot's confirmed position) with `start` already acknowledged.
/// `verified_name`: see [`VerifiedName`].
pub fn replication_config(
    cfg: &EngineConfig,
    start: Lsn,
    verified_name: Option<String>,
) -> ReplicationConfig {
    let pg = &cfg.spec.postgres;
    let tls = match pg.ssl_mode {
        SslMode::Disable => TlsConfig::disabled(),
        SslMode::Prefer => TlsConfig {
            mode: pgwire_replication::SslMode::Prefer,
            ..TlsConfig::disabled()
        },
        SslMode::Require => TlsConfig::require(),
        SslMode::VerifyCa => match verified_name {
            Some(name) => TlsConfig::verify_ca(cfg.ca_file.clone()).with_sni_hostname(name),
            None => TlsConfig::verify_ca(cfg.ca_file.clone()),
        },
        SslMode::VerifyFull => TlsConfig::verify_full(cfg.ca_file.clone()),
    };
    // The crate writes the publication name unquoted into the option list,
    // which folds upper case: quote it here.
    let publication = format!("\"{}\"", cfg.spec.publication.name.replace('"', "\"\""));
    let mut config = ReplicationConfig::new(
        pg.host.clone(),
        cfg.user.clone(),
        cfg.password.expose(),
        pg.database.clone(),
        cfg.spec.slot.name.clone(),
        publication,
    )
    .with_port(pg.port)
    .with_tls(tls)
    .with_start_lsn(start.into())
    .with_status_interval(Duration::from_secs(1))
    .with_wakeup_interval(Duration::from_secs(5))
    .with_options(SESSION_OPTIONS)
    .with_application_name(format!("pgkafka-{}", cfg.name));
    if start != Lsn::ZERO {
        config = config.with_ack_lsn(start.into());
    }
    config
}
