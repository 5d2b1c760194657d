//! The status, computed from what was observed: conditions `Ready`,
//! `SlotHealthy`, `Degraded` and `Snapshotting` with CamelCase reasons, the
//! slot's progress as PostgreSQL reports it, and the snapshot progress as the
//! engine reports it. `Ready` follows the running engine, never just a
//! successful reconcile.

use pgkafka_crds::{
    Condition, ConnectorState, PgKafkaConnectorStatus, ReplicationStatus, SnapshotStatus,
    TableSnapshotStatus,
};

use crate::postgres::SlotState;

/// What the engine's `/status` said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineReport {
    /// It is streaming.
    pub streaming: bool,
    /// Unix milliseconds of the last change it delivered, if any.
    pub last_event_ms: Option<i64>,
    /// Snapshot progress per table.
    pub snapshots: Vec<TableSnapshotStatus>,
    /// Why it stopped streaming for good and waits for a new configuration.
    pub halted: Option<String>,
}

/// Everything a status is computed from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Desired run state.
    pub state: ConnectorState,
    /// A problem that stopped the reconcile: (reason, message).
    pub problem: Option<(String, String)>,
    /// The slot, when PostgreSQL could be asked; `Some(None)`: it does not exist.
    pub slot: Option<Option<SlotState>>,
    /// The engine's report, when it answered.
    pub engine: Option<EngineReport>,
    /// The `pgkafka.io/snapshot` value the engine accepted in this reconcile.
    pub snapshot_requested: Option<String>,
}

fn condition(type_: &str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: String::new(),
    }
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
    let tables = match &observed.engine {
        Some(engine) => engine.snapshots.clone(),
        None => before.map(|b| b.tables.clone()).unwrap_or_default(),
    };
    let done = tables.iter().filter(|t| t.state == "done").count();
    let summary = if tables.is_empty() {
        "none".to_owned()
    } else {
        format!("{done}/{}", tables.len())
    };
    Some(SnapshotStatus {
        summary,
        requested,
        tables,
    })
}

/// `Snapshotting`: True while a table is pending or being read.
fn snapshotting(observed: &Observed, snapshot: Option<&SnapshotStatus>) -> Condition {
    let tables = snapshot.map(|s| s.tables.as_slice()).unwrap_or_default();
    let active: Vec<String> = tables
        .iter()
        .filter(|t| t.state == "pending" || t.state == "running")
        .map(|t| format!("{} {} ({} rows)", t.table, t.state, t.rows))
        .collect();
    let failed: Vec<&str> = tables
        .iter()
        .filter(|t| t.state == "failed")
        .map(|t| t.table.as_str())
        .collect();
    match (&observed.engine, active.is_empty()) {
        (None, _) => Condition {
            status: "Unknown".into(),
            ..condition(
                "Snapshotting",
                false,
                "EngineUnreachable",
                "the engine did not report".into(),
            )
        },
        (Some(_), false) => condition("Snapshotting", true, "Snapshotting", active.join(", ")),
        (Some(_), true) if !failed.is_empty() => condition(
            "Snapshotting",
            false,
            "SnapshotFailed",
            format!("failed: {} (see status.snapshot.tables)", failed.join(", ")),
        ),
        (Some(_), true) => condition(
            "Snapshotting",
            false,
            "Idle",
            "no snapshot is running".into(),
        ),
    }
}

/// `SlotHealthy`: the slot exists and holds its WAL.
fn slot_healthy(observed: &Observed, slot_name: &str) -> Condition {
    match &observed.slot {
        None => Condition {
            status: "Unknown".into(),
            ..condition("SlotHealthy", false, "SlotUnknown", "PostgreSQL could not be asked".into())
        },
        Some(None) => condition("SlotHealthy", false, "SlotMissing", format!("replication slot {slot_name:?} does not exist")),
        Some(Some(s)) => match s.wal_status.as_deref() {
            Some("lost") => condition(
                "SlotHealthy",
                false,
                "SlotLost",
                format!("slot {slot_name:?} is invalidated: WAL it needed was removed; set spec.slot.recreateIfLost to accept the gap"),
            ),
            Some("unreserved") => condition(
                "SlotHealthy",
                false,
                "SlotUnreserved",
                format!("slot {slot_name:?} is past max_slot_wal_keep_size and will be invalidated at the next checkpoint"),
            ),
            _ => condition("SlotHealthy", true, "SlotReserved", format!("slot {slot_name:?} holds its WAL")),
        },
    }
}

/// `Ready`: the engine is streaming, and nothing stands in the way.
fn ready(observed: &Observed) -> Condition {
    let streaming = observed.engine.as_ref().is_some_and(|e| e.streaming);
    match (&problem(observed), observed.state) {
        (Some((reason, message)), _) => condition("Ready", false, reason, message.clone()),
        (None, ConnectorState::Paused) => condition(
            "Ready",
            false,
            "Paused",
            "spec.state is paused: the engine is stopped, the slot is kept".into(),
        ),
        (None, ConnectorState::Stopped) => {
            condition("Ready", false, "Stopped", "spec.state is stopped".into())
        }
        (None, ConnectorState::Running) if streaming => {
            condition("Ready", true, "Streaming", "the engine is streaming".into())
        }
        (None, ConnectorState::Running) => condition(
            "Ready",
            false,
            if observed.engine.is_some() {
                "EngineNotStreaming"
            } else {
                "EngineUnreachable"
            },
            "the engine is not streaming yet (starting, or reconnecting: see its logs)".into(),
        ),
    }
}

/// A problem of the reconcile, else an engine that halted (reason
/// `EngineHalted`, its own words as the message).
fn problem(observed: &Observed) -> Option<(String, String)> {
    observed.problem.clone().or_else(|| {
        let halted = observed.engine.as_ref()?.halted.clone()?;
        Some(("EngineHalted".into(), halted))
    })
}

/// `Degraded`: a problem of the reconcile or of the slot.
fn degraded(observed: &Observed, slot_healthy: &Condition) -> Condition {
    match (&problem(observed), slot_healthy.status.as_str()) {
        (Some((reason, message)), _) => condition("Degraded", true, reason, message.clone()),
        (None, "False") => condition(
            "Degraded",
            true,
            &slot_healthy.reason,
            slot_healthy.message.clone(),
        ),
        _ => condition(
            "Degraded",
            false,
            "AsExpected",
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
    observed.slot.as_ref().and_then(|s| s.as_ref()).map(|s| {
        let mut r = s.to_status(slot_name);
        r.last_event_time = observed
            .engine
            .as_ref()
            .and_then(|e| e.last_event_ms)
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .or_else(|| {
                previous
                    .and_then(|p| p.replication.as_ref())
                    .and_then(|r| r.last_event_time.clone())
            });
        r
    })
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
        || ((old.replication != new.replication || old.snapshot != new.snapshot) && numbers_due)
}

/// The requested annotation value and (table, state) pairs.
type SnapshotStates<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>);

/// What of `status.snapshot` is written at once: the annotation value handed
/// over (else the next reconcile would hand it over again) and each table's
/// state; row counts are progress numbers.
fn snapshot_states(s: &PgKafkaConnectorStatus) -> Option<SnapshotStates<'_>> {
    s.snapshot.as_ref().map(|snap| {
        let states = snap
            .tables
            .iter()
            .map(|t| (t.table.as_str(), t.state.as_str()))
            .collect();
        (snap.requested.as_deref(), states)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_snapshot_request_is_written_at_once_rows_when_due() {
        let table = |state: &str, rows| TableSnapshotStatus {
            table: "public.orders".into(),
            state: state.into(),
            rows,
            ..Default::default()
        };
        let with = |requested: Option<&str>, t| PgKafkaConnectorStatus {
            snapshot: Some(SnapshotStatus {
                summary: "0/1".into(),
                requested: requested.map(str::to_owned),
                tables: vec![t],
            }),
            ..Default::default()
        };
        let old = with(None, table("running", 10));
        assert!(worth_writing(
            Some(&old),
            &with(Some("public.orders"), table("running", 10)),
            false
        ));
        assert!(worth_writing(
            Some(&old),
            &with(None, table("done", 10)),
            false
        ));
        assert!(!worth_writing(
            Some(&old),
            &with(None, table("running", 20)),
            false
        ));
        assert!(worth_writing(
            Some(&old),
            &with(None, table("running", 20)),
            true
        ));
    }

    fn slot(wal_status: &str) -> Option<Option<SlotState>> {
        Some(Some(SlotState {
            active: true,
            confirmed_flush_lsn: Some("0/10".into()),
            restart_lsn: Some("0/8".into()),
            wal_status: Some(wal_status.into()),
            lag_bytes: Some(16),
        }))
    }

    fn ready(s: &PgKafkaConnectorStatus) -> (&str, &str) {
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        (c.status.as_str(), c.reason.as_str())
    }

    fn get<'a>(s: &'a PgKafkaConnectorStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
    }

    #[test]
    fn ready_only_while_the_engine_streams() {
        let mut o = Observed {
            generation: Some(3),
            slot: slot("reserved"),
            ..Default::default()
        };
        assert_eq!(
            ready(&compute(&o, "s", None, "t0")),
            ("False", "EngineUnreachable")
        );
        o.engine = Some(EngineReport {
            streaming: false,
            last_event_ms: None,
            snapshots: Vec::new(),
            halted: None,
        });
        assert_eq!(
            ready(&compute(&o, "s", None, "t0")),
            ("False", "EngineNotStreaming")
        );
        o.engine = Some(EngineReport {
            streaming: true,
            last_event_ms: Some(1_700_000_000_000),
            snapshots: Vec::new(),
            halted: None,
        });
        let s = compute(&o, "s", None, "t0");
        assert_eq!(ready(&s), ("True", "Streaming"));
        // An engine that halted says why, in Ready and Degraded.
        let mut halted = o.clone();
        halted.engine = Some(EngineReport {
            streaming: false,
            last_event_ms: None,
            snapshots: Vec::new(),
            halted: Some("spec.listeners[0].targets[0].filter: column \"x\" was dropped".into()),
        });
        let h = compute(&halted, "s", None, "t0");
        assert_eq!(ready(&h), ("False", "EngineHalted"));
        let degraded = h
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .expect("Degraded");
        assert!(degraded.message.contains("column \"x\""), "{degraded:?}");
        assert_eq!(s.observed_generation, Some(3));
        let r = s.replication.expect("replication");
        assert_eq!(
            (r.confirmed_flush_lsn.as_deref(), r.lag_bytes),
            (Some("0/10"), Some(16))
        );
        assert_eq!(r.last_event_time.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(
            get(&compute(&o, "s", None, "t0"), "Degraded").status,
            "False"
        );
    }

    #[test]
    fn slot_problems_and_spec_problems_show() {
        let lost = Observed {
            slot: slot("lost"),
            engine: Some(EngineReport {
                streaming: true,
                last_event_ms: None,
                snapshots: Vec::new(),
                halted: None,
            }),
            ..Default::default()
        };
        let s = compute(&lost, "s", None, "t0");
        assert_eq!(
            (
                get(&s, "SlotHealthy").status.as_str(),
                get(&s, "SlotHealthy").reason.as_str()
            ),
            ("False", "SlotLost")
        );
        assert_eq!(get(&s, "Degraded").reason, "SlotLost");
        let missing = Observed {
            slot: Some(None),
            ..Default::default()
        };
        assert_eq!(
            get(&compute(&missing, "s", None, "t0"), "SlotHealthy").reason,
            "SlotMissing"
        );
        let bad = Observed {
            problem: Some(("InvalidSpec".into(), "spec.slot.name: bad".into())),
            ..Default::default()
        };
        let s = compute(&bad, "s", None, "t0");
        assert_eq!(ready(&s), ("False", "InvalidSpec"));
        assert_eq!(get(&s, "SlotHealthy").status, "Unknown");
        let paused = Observed {
            state: ConnectorState::Paused,
            slot: slot("reserved"),
            ..Default::default()
        };
        assert_eq!(
            ready(&compute(&paused, "s", None, "t0")),
            ("False", "Paused")
        );
    }

    #[test]
    fn transition_times_move_only_on_change_and_writes_are_limited() {
        let o = Observed {
            slot: slot("reserved"),
            engine: Some(EngineReport {
                streaming: true,
                last_event_ms: None,
                snapshots: Vec::new(),
                halted: None,
            }),
            ..Default::default()
        };
        let first = compute(&o, "s", None, "t0");
        let again = compute(&o, "s", Some(&first), "t1");
        assert_eq!(get(&again, "Ready").last_transition_time, "t0");
        assert!(!worth_writing(Some(&first), &again, true));
        let stopped = Observed {
            engine: None,
            ..o.clone()
        };
        let changed = compute(&stopped, "s", Some(&first), "t2");
        assert_eq!(get(&changed, "Ready").last_transition_time, "t2");
        assert!(
            worth_writing(Some(&first), &changed, false),
            "condition changes are written at once"
        );
        let mut moved = o.clone();
        moved.slot = Some(Some(SlotState {
            lag_bytes: Some(99),
            ..slot("reserved").flatten().expect("slot")
        }));
        let numbers = compute(&moved, "s", Some(&first), "t3");
        assert!(
            !worth_writing(Some(&first), &numbers, false),
            "progress waits for its interval"
        );
        assert!(worth_writing(Some(&first), &numbers, true));
    }
}
