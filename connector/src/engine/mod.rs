//! The engine: start-up checks, then replication sessions until shutdown.
//!
//! A session ([`session`]) owns one replication stream, one Kafka producer
//! and one LSN tracker. Any fault (PostgreSQL or Kafka) ends the session; the
//! next one starts from the last safe position with a fresh producer, so
//! records not yet acknowledged are sent again and nothing is lost.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgkafka_crds::{QualifiedTable, SlotLossPolicy, SnapshotMode};
use tokio::sync::watch;

mod discovery;
mod heartbeat;
mod offsets;
mod session;

use crate::config::EngineConfig;
pub use crate::delivery::Limits;
use crate::delivery::RefusedTopics;
use crate::error::{Error, ErrorKind};
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::snapshot::SharedSnapshots;
use crate::source::catalog::snapshot_key;
use crate::source::connection::connect_verified;
use crate::source::lookup::TypeRows;
use crate::source::provision;
use crate::source::stream::{identify, Identity, StreamSettings};
use crate::source::tls::VerifiedName;
use crate::transform::stage::Transform;
use offsets::Offsets;
use pgkafka_postgres::slot_check::Delivered;
use session::{Session, SessionContext};

/// A session that streamed this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Delay before restart `attempt` (0-based): exponential from 200 ms, capped at
/// 30 s, with jitter in its upper half so many engines do not retry in step.
fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = 200f64 * 2f64.powi(attempt.min(20) as i32);
    let capped = base.min(30_000.0);
    Duration::from_millis((capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))) as u64)
}

/// What start-up learnt, for every session.
struct StartUp {
    primary_keys: HashMap<QualifiedTable, Vec<String>>,
    flushed: Lsn,
    verified: VerifiedName,
    identity: Identity,
}

/// Runs the engine until `shutdown` turns true, or a fault that retrying
/// cannot fix. Start-up problems (configuration, permissions, missing
/// objects, unreachable database) are returned at once.
pub(crate) async fn run(
    cfg: EngineConfig,
    metrics: Metrics,
    limits: Limits,
    shared: SharedSnapshots,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let ca_file = stream_ca_file(&cfg)?;
    let mut cfg = cfg;
    let written = cfg.spec.clone();
    let StartUp {
        mut primary_keys,
        mut flushed,
        verified,
        identity,
    } = start_up(&mut cfg, &metrics, &shared, ca_file.clone(), limits).await?;
    metrics.confirmed_lsn.set(lsn_gauge(flushed));
    metrics
        .in_flight_limit
        .set(i64::try_from(limits.records).unwrap_or(i64::MAX));
    metrics
        .in_flight_bytes_limit
        .set(i64::try_from(limits.bytes).unwrap_or(i64::MAX));
    // The first session starts where the slot is; later ones where the last
    // session's safe position reached.
    let mut start = Lsn::ZERO;
    let mut attempt = 0u32;
    let refused = RefusedTopics::default();
    loop {
        let began = Instant::now();
        let ctx = SessionContext {
            cfg: &cfg,
            written: &written,
            metrics: &metrics,
            limits,
            primary_keys: primary_keys.clone(),
            ca_file: ca_file.clone(),
            verified_name: verified.get(),
            shared: shared.clone(),
            identity: identity.clone(),
            refused: refused.clone(),
        };
        let mut session = Session::new(ctx, flushed)?;
        let result = session.run(start, &mut shutdown).await;
        metrics.streaming.set(0);
        flushed = flushed.max(session.safe_position());
        start = flushed;
        let followed = session.take_followed();
        drop(session);
        follow(&mut cfg, &mut primary_keys, followed);
        let e = match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() => e,
            Err(e) => return Err(e),
        };
        if began.elapsed() > HEALTHY_SESSION {
            attempt = 0;
        }
        let delay = backoff(attempt, rand::random());
        attempt = attempt.saturating_add(1);
        metrics.restarts.inc();
        tracing::warn!(error = %e, resume_at = %start, delay_ms = delay.as_millis() as u64, "session failed; restarting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// The tables a session started or stopped listening to, kept for the
/// sessions after it (only tables a pattern matched are ever let go).
fn follow(
    cfg: &mut EngineConfig,
    primary_keys: &mut HashMap<QualifiedTable, Vec<String>>,
    followed: session::Followed,
) {
    let gone = |l: &pgkafka_crds::ListenerSpec| {
        l.origin.as_ref().is_some_and(|o| o.matched)
            && QualifiedTable::parse(&l.table).is_ok_and(|t| followed.dropped.contains(&t))
    };
    cfg.spec.listeners.retain(|l| !gone(l));
    for (listener, primary_key) in followed.added {
        if let Ok(table) = QualifiedTable::parse(&listener.table) {
            primary_keys.insert(table, primary_key);
        }
        cfg.spec.listeners.push(listener);
    }
}

/// Checks the server and the listeners' tables (filters and column
/// selections against the catalog, before anything is created), then who
/// the server is and what this connector delivered before, then ensures the
/// publication and the slot: never starting past what was delivered unless
/// `spec.slot.onLoss` says so (`pgkafka_postgres::slot_check`).
async fn start_up(
    cfg: &mut EngineConfig,
    metrics: &Metrics,
    shared: &SharedSnapshots,
    ca_file: Option<PathBuf>,
    limits: Limits,
) -> Result<StartUp, Error> {
    let verified = VerifiedName::default();
    let application_name = format!("pgkafka-{}", cfg.name);
    let client = connect_verified(
        &application_name,
        &cfg.spec.postgres,
        &cfg.postgres,
        &verified,
    )
    .await?;
    // From here on every listener names one table: pattern listeners become
    // one listener per table they match now.
    let written = cfg.spec.clone();
    cfg.spec = provision::expand(&client, &written).await?;
    shared.set_listened(cfg.spec.tables());
    let cfg = &*cfg;
    let primary_keys = check_listeners(cfg, metrics, &client).await?;
    let settings = stream_settings(cfg, ca_file, verified.get(), limits.status_interval);
    let identity = identify(settings).await?;
    let delivered = Offsets::read(cfg).await?;
    if let Some(d) = &delivered {
        if d.system_identifier != identity.system_id {
            return Err(ErrorKind::OtherCluster {
                slot: cfg.spec.slot.name.clone(),
                recorded: d.system_identifier.clone(),
                found: identity.system_id.clone(),
                delivered: d.confirmed_lsn,
            }
            .into());
        }
        // The count of dead letters goes on from what was recorded.
        let counted = metrics.dead_lettered.get();
        metrics
            .dead_lettered
            .inc_by(d.dead_lettered.saturating_sub(counted));
    }
    let known = delivered
        .as_ref()
        .map_or(Delivered::Nothing, |d| Delivered::Exactly(d.confirmed_lsn));
    let ensured = provision::ensure(&client, (&written, &cfg.spec), known).await?;
    if ensured.gap && cfg.spec.slot.loss_policy() == SlotLossPolicy::Resnapshot {
        let tables: Vec<QualifiedTable> = cfg
            .spec
            .listeners
            .iter()
            .filter_map(|l| QualifiedTable::parse(&l.table).ok())
            .collect();
        tracing::warn!(tables = tables.len(), "the slot lost changes: snapshotting every listened table again (spec.slot.onLoss: resnapshot)");
        shared.request_because(
            tables,
            "the slot lost changes (spec.slot.onLoss: resnapshot)",
        );
    }
    Ok(StartUp {
        primary_keys,
        flushed: ensured.start,
        verified,
        identity,
    })
}

/// The listeners' tables as the catalog has them: filters and column
/// selections compile, snapshot keys exist; returns the primary keys.
async fn check_listeners(
    cfg: &EngineConfig,
    metrics: &Metrics,
    client: &tokio_postgres::Client,
) -> Result<HashMap<QualifiedTable, Vec<String>>, Error> {
    let mut tables = provision::inspect(client, &cfg.spec).await?;
    let mut types = TypeRows::default();
    for info in tables.values_mut() {
        types.resolve(client, &mut info.shape.columns).await?;
    }
    Transform::new(&cfg.name, &cfg.spec, HashMap::new(), metrics, &cfg.salts)?
        .check_tables(tables.values().map(|info| &info.shape))?;
    if cfg.spec.snapshot.mode == SnapshotMode::Initial {
        // Every table will be snapshotted by its key: refuse now, naming the
        // table and the fix, rather than fail in the middle.
        for (i, listener) in cfg.spec.listeners.iter().enumerate() {
            let Some(info) = QualifiedTable::parse(&listener.table)
                .ok()
                .and_then(|t| tables.get(&t))
            else {
                continue;
            };
            let field = format!("{}.keyColumns", cfg.spec.listener_field(i));
            let configured = listener.key_columns.as_deref();
            snapshot_key(client, &info.shape, &info.primary_key, configured, &field).await?;
        }
    }
    Ok(tables
        .into_iter()
        .filter(|(_, info)| !info.primary_key.is_empty())
        .map(|(t, info)| (t, info.primary_key))
        .collect())
}

/// Where and how the replication stream connects.
pub(super) fn stream_settings(
    cfg: &EngineConfig,
    ca_file: Option<PathBuf>,
    verified_name: Option<String>,
    status_interval: std::time::Duration,
) -> StreamSettings<'_> {
    StreamSettings {
        application_name: format!("pgkafka-{}", cfg.name),
        spec: &cfg.spec,
        credentials: &cfg.postgres,
        ca_file,
        verified_name,
        status_interval,
    }
}

/// The CA bundle as a file for the replication stream: the secrets file
/// when there is one, else the PEM written once to a private temp file.
fn stream_ca_file(cfg: &EngineConfig) -> Result<Option<PathBuf>, Error> {
    match (&cfg.pg_ca_file, &cfg.postgres.ca_pem) {
        (Some(path), _) => Ok(Some(path.clone())),
        (None, None) => Ok(None),
        (None, Some(pem)) => {
            let path = std::env::temp_dir().join(format!(
                "pgkafka-{}-{}-ca.pem",
                cfg.name,
                std::process::id()
            ));
            std::fs::write(&path, pem).map_err(|source| ErrorKind::WriteFile {
                path: path.clone(),
                source,
            })?;
            Ok(Some(path))
        }
    }
}

fn lsn_gauge(lsn: Lsn) -> i64 {
    i64::try_from(lsn.0).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(0, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(1600));
        assert_eq!(backoff(30, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(30, 0.0), Duration::from_secs(15));
    }
}
