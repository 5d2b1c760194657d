//! The status, computed from what was observed: conditions `Ready`,
//! `SlotHealthy`, `Degraded` and `Snapshotting` with CamelCase reasons, the
//! slot's progress as PostgreSQL reports it, and the snapshot progress as the
//! engine reports it. `Ready` follows the running engine, never just a
//! successful reconcile.

use pgkafka_crds::conditions::{ConditionStatus, ConditionType, Reason};
use pgkafka_crds::report::{EngineStatus, SnapshotState};
use pgkafka_crds::{
    Condition, ConnectorState, PgKafkaConnectorStatus, ReplicationStatus, SnapshotStatus,
};

use crate::postgres::SlotState;

/// What PostgreSQL said of the slot.
#[derive(Debug, Clone, Default)]
pub enum SlotSeen {
    /// PostgreSQL could not be asked.
    #[default]
    Unknown,
    /// The slot does not exist.
    Missing,
    /// The slot as `pg_replication_slots` shows it.
    Found(SlotState),
}

impl SlotSeen {
    /// From a read of `pg_replication_slots`: `Err` when it could not be asked.
    pub fn from_read<E>(read: Result<Option<SlotState>, E>) -> Self {
        match read {
            Err(_) => SlotSeen::Unknown,
            Ok(None) => SlotSeen::Missing,
            Ok(Some(s)) => SlotSeen::Found(s),
        }
    }
}

/// Everything a status is computed from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Desired run state.
    pub state: ConnectorState,
    /// A problem that stopped the reconcile: (reason, message).
    pub problem: Option<(Reason, String)>,
    /// The slot, when PostgreSQL could be asked; `Some(None)`: it does not exist.
    pub slot: SlotSeen,
    /// The engine's report, when it answered.
    pub engine: Option<EngineStatus>,
    /// The `pgkafka.io/snapshot` value the engine accepted in this reconcile.
    pub snapshot_requested: Option<String>,
    /// The `pgkafka.io/snapshot-stop` value the engine accepted in this reconcile.
    pub snapshot_stop_requested: Option<String>,
    /// Dead letters acknowledged (`pgkafka.io/dead-letters-acknowledged`).
    pub dead_letters_acknowledged: u64,
}

fn condition(type_: ConditionType, status: bool, reason: Reason, message: String) -> Condition {
    Condition::new(type_, ConditionStatus::from_bool(status), reason, message)
}

fn unknown(type_: ConditionType, reason: Reason, message: &str) -> Condition {
    Condition::new(type_, ConditionStatus::Unknown, reason, message)
}

/// The status for `observed`. Conditions keep their `lastTransitionTime`
/// from `previous` while their status does not change.
pub fn compute(
    observed: &Observed,
    slot_name: &str,
    previous: Option<&PgKafkaConnectorStatus>,
    now: &str,
) -> PgKafkaConnectorStatus {
    let slot_healthy = slot_healthy(observed, slot_name);
    let ready = ready(observed);
    let degraded = degraded(observed, &slot_healthy);
    let snapshot = snapshot(observed, previous);
    let snapshotting = snapshotting(observed, snapshot.as_ref());
    let conditions = [ready, slot_healthy, degraded, snapshotting]
        .into_iter()
        .map(|c| keep_transition_time(c, previous, now))
        .collect();
    PgKafkaConnectorStatus {
        observed_generation: observed.generation,
        conditions,
        replication: replication(observed, slot_name, previous),
        snapshot,
        tables: match &observed.engine {
            Some(engine) => Some(engine.tables.clone()),
            None => previous.and_then(|p| p.tables.clone()),
        },
    }
}

/// `status.snapshot`: the engine's report when it answered, else what was
/// known; `requested` remembers the last annotation value handed over.
fn snapshot(
    observed: &Observed,
    previous: Option<&PgKafkaConnectorStatus>,
) -> Option<SnapshotStatus> {
    let before = previous.and_then(|p| p.snapshot.as_ref());
    let requested = observed
        .snapshot_requested
        .clone()
        .or_else(|| before.and_then(|b| b.requested.clone()));
    let stop_requested = observed
        .snapshot_stop_requested
        .clone()
        .or_else(|| before.and_then(|b| b.stop_requested.clone()));
    let tables = match &observed.engine {
        Some(engine) => engine.snapshot.tables.clone(),
        None => before.map(|b| b.tables.clone()).unwrap_or_default(),
    };
    let done = tables
        .iter()
        .filter(|t| t.state == SnapshotState::Done)
        .count();
    let summary = if tables.is_empty() {
        "none".to_owned()
    } else {
        format!("{done}/{}", tables.len())
    };
    Some(SnapshotStatus {
        summary,
        requested,
        stop_requested,
        tables,
    })
}

/// `Snapshotting`: True while a table is pending or being read.
fn snapshotting(observed: &Observed, snapshot: Option<&SnapshotStatus>) -> Condition {
    let tables = snapshot.map(|s| s.tables.as_slice()).unwrap_or_default();
    let active: Vec<String> = tables
        .iter()
        .filter(|t| t.state.is_active())
        .map(|t| format!("{} {} ({} rows)", t.table, t.state, t.rows))
        .collect();
    let failed: Vec<&str> = tables
        .iter()
        .filter(|t| t.state == SnapshotState::Failed)
        .map(|t| t.table.as_str())
        .collect();
    let paused: Vec<String> = tables
        .iter()
        .filter(|t| t.state == SnapshotState::Paused)
        .map(|t| format!("{} ({} rows)", t.table, t.rows))
        .collect();
    match (&observed.engine, active.is_empty()) {
        (None, _) => unknown(
            ConditionType::Snapshotting,
            Reason::EngineUnreachable,
            "the engine did not report",
        ),
        (Some(_), false) => condition(
            ConditionType::Snapshotting,
            true,
            Reason::Snapshotting,
            active.join(", "),
        ),
        (Some(_), true) if !paused.is_empty() => condition(
            ConditionType::Snapshotting,
            false,
            Reason::SnapshotPaused,
            format!("paused: {}", paused.join(", ")),
        ),
        (Some(_), true) if !failed.is_empty() => condition(
            ConditionType::Snapshotting,
            false,
            Reason::SnapshotFailed,
            format!("failed: {} (see status.snapshot.tables)", failed.join(", ")),
        ),
        (Some(_), true) => condition(
            ConditionType::Snapshotting,
            false,
            Reason::Idle,
            "no snapshot is running".into(),
        ),
    }
}

/// `SlotHealthy`: the slot exists and holds its WAL.
fn slot_healthy(observed: &Observed, slot_name: &str) -> Condition {
    // Provisioning refused a slot that lost changes: that is the slot's news.
    if let Some((Reason::SlotLost, message)) = &observed.problem {
        return condition(
            ConditionType::SlotHealthy,
            false,
            Reason::SlotLost,
            message.clone(),
        );
    }
    match &observed.slot {
        SlotSeen::Unknown => unknown(ConditionType::SlotHealthy, Reason::SlotUnknown, "PostgreSQL could not be asked"),
        SlotSeen::Missing => condition(ConditionType::SlotHealthy, false, Reason::SlotMissing, format!("replication slot {slot_name:?} does not exist")),
        SlotSeen::Found(s) => match s.wal_status.as_deref() {
            Some("lost") => condition(
                ConditionType::SlotHealthy,
                false,
                Reason::SlotLost,
                format!("slot {slot_name:?} is invalidated: WAL it needed was removed; set spec.slot.recreateIfLost to accept the gap"),
            ),
            Some("unreserved") => condition(
                ConditionType::SlotHealthy,
                false,
                Reason::SlotUnreserved,
                format!("slot {slot_name:?} is past max_slot_wal_keep_size and will be invalidated at the next checkpoint"),
            ),
            _ => condition(ConditionType::SlotHealthy, true, Reason::SlotReserved, format!("slot {slot_name:?} holds its WAL")),
        },
    }
}

/// `Ready`: the engine is streaming, and nothing stands in the way.
fn ready(observed: &Observed) -> Condition {
    let streaming = observed.engine.as_ref().is_some_and(|e| e.streaming);
    match (&problem(observed), observed.state) {
        (Some((reason, message)), _) => {
            condition(ConditionType::Ready, false, *reason, message.clone())
        }
        (None, ConnectorState::Paused) => condition(
            ConditionType::Ready,
            false,
            Reason::Paused,
            "spec.state is paused: the engine is stopped, the slot is kept".into(),
        ),
        (None, ConnectorState::Stopped) => condition(
            ConditionType::Ready,
            false,
            Reason::Stopped,
            "spec.state is stopped".into(),
        ),
        (None, ConnectorState::Running) if streaming => condition(
            ConditionType::Ready,
            true,
            Reason::Streaming,
            "the engine is streaming".into(),
        ),
        (None, ConnectorState::Running) => condition(
            ConditionType::Ready,
            false,
            if observed.engine.is_some() {
                Reason::EngineNotStreaming
            } else {
                Reason::EngineUnreachable
            },
            "the engine is not streaming yet (starting, or reconnecting: see its logs)".into(),
        ),
    }
}

/// A problem of the reconcile, else an engine that halted (reason
/// `EngineHalted`, its own words as the message).
fn problem(observed: &Observed) -> Option<(Reason, String)> {
    observed.problem.clone().or_else(|| {
        let halted = observed.engine.as_ref()?.halted.clone()?;
        Some((Reason::EngineHalted, halted))
    })
}

/// Records the engine sent to the dead-letter topic in all.
fn dead_letters(observed: &Observed) -> u64 {
    observed
        .engine
        .as_ref()
        .map_or(0, |e| e.counters.dead_lettered)
}

/// `Degraded`: a problem of the reconcile or of the slot, else dead
/// letters not yet acknowledged.
fn degraded(observed: &Observed, slot_healthy: &Condition) -> Condition {
    match (
        &problem(observed),
        slot_healthy.status(),
        slot_healthy.reason(),
    ) {
        (Some((reason, message)), _, _) => {
            condition(ConditionType::Degraded, true, *reason, message.clone())
        }
        (None, Some(ConditionStatus::False), Some(reason)) => condition(
            ConditionType::Degraded,
            true,
            reason,
            slot_healthy.message.clone(),
        ),
        _ if dead_letters(observed) > observed.dead_letters_acknowledged => condition(
            ConditionType::Degraded,
            true,
            Reason::RecordsDeadLettered,
            format!(
                "{} records went to the dead-letter topic ({} acknowledged); \
                 once handled, annotate pgkafka.io/dead-letters-acknowledged={}",
                dead_letters(observed),
                observed.dead_letters_acknowledged,
                dead_letters(observed)
            ),
        ),
        _ => condition(
            ConditionType::Degraded,
            false,
            Reason::AsExpected,
            "no problem observed".into(),
        ),
    }
}

/// A condition whose status did not change keeps its transition time.
fn keep_transition_time(
    mut c: Condition,
    previous: Option<&PgKafkaConnectorStatus>,
    now: &str,
) -> Condition {
    let kept = previous
        .and_then(|p| {
            p.conditions
                .iter()
                .find(|old| old.type_ == c.type_ && old.status == c.status)
        })
        .map(|old| old.last_transition_time.clone());
    c.last_transition_time = kept.unwrap_or_else(|| now.to_owned());
    c
}

/// `status.replication`: the slot as PostgreSQL reports it, with the time
/// of the engine's last event (kept from before when the engine is silent).
fn replication(
    observed: &Observed,
    slot_name: &str,
    previous: Option<&PgKafkaConnectorStatus>,
) -> Option<ReplicationStatus> {
    let SlotSeen::Found(s) = &observed.slot else {
        // Gone or not to be asked: keep what was known, so the next
        // reconcile still knows how far this connector delivered.
        return previous
            .and_then(|p| p.replication.clone())
            .map(|r| ReplicationStatus { active: false, ..r });
    };
    let mut r = s.to_status(slot_name);
    r.last_event_time = observed
        .engine
        .as_ref()
        .and_then(EngineStatus::last_event_ms)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .or_else(|| {
            previous
                .and_then(|p| p.replication.as_ref())
                .and_then(|r| r.last_event_time.clone())
        });
    Some(r)
}

/// Whether writing `new` over `old` is worth a request: conditions or the
/// observed generation changed, or the progress numbers did and `numbers_due`.
pub fn worth_writing(
    old: Option<&PgKafkaConnectorStatus>,
    new: &PgKafkaConnectorStatus,
    numbers_due: bool,
) -> bool {
    let Some(old) = old else {
        return true;
    };
    old.conditions != new.conditions
        || old.observed_generation != new.observed_generation
        || snapshot_states(old) != snapshot_states(new)
        || (old.tables != new.tables && new.tables.is_some())
        || ((old.replication != new.replication || old.snapshot != new.snapshot) && numbers_due)
}

/// The requested annotation value and (table, state) pairs.
type SnapshotStates<'a> = (Option<&'a str>, Vec<(&'a str, SnapshotState)>);

/// What of `status.snapshot` is written at once: the annotation value handed
/// over (else the next reconcile would hand it over again) and each table's
/// state; row counts are progress numbers.
fn snapshot_states(s: &PgKafkaConnectorStatus) -> Option<SnapshotStates<'_>> {
    s.snapshot.as_ref().map(|snap| {
        let states = snap
            .tables
            .iter()
            .map(|t| (t.table.as_str(), t.state))
            .collect();
        (snap.requested.as_deref(), states)
    })
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
