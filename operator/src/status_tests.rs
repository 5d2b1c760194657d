//! `status::compute`: conditions, replication and snapshot status from
//! observations.

use super::*;
use crate::fixtures::engine;
use pgkafka_crds::report::TableSnapshot;

#[test]
fn a_handed_over_snapshot_request_is_written_at_once_rows_when_due() {
    let table = |state, rows| TableSnapshot {
        state,
        rows,
        ..TableSnapshot::pending("public.orders".into())
    };
    let with = |requested: Option<&str>, t| PgKafkaConnectorStatus {
        snapshot: Some(SnapshotStatus {
            summary: "0/1".into(),
            requested: requested.map(str::to_owned),
            stop_requested: None,
            tables: vec![t],
        }),
        ..Default::default()
    };
    let old = with(None, table(SnapshotState::Running, 10));
    assert!(worth_writing(
        Some(&old),
        &with(Some("public.orders"), table(SnapshotState::Running, 10)),
        false
    ));
    assert!(worth_writing(
        Some(&old),
        &with(None, table(SnapshotState::Done, 10)),
        false
    ));
    assert!(!worth_writing(
        Some(&old),
        &with(None, table(SnapshotState::Running, 20)),
        false
    ));
    assert!(worth_writing(
        Some(&old),
        &with(None, table(SnapshotState::Running, 20)),
        true
    ));
}

fn slot_state(wal_status: &str) -> SlotState {
    SlotState {
        active: true,
        confirmed_flush_lsn: Some("0/10".into()),
        restart_lsn: Some("0/8".into()),
        wal_status: Some(wal_status.into()),
        lag_bytes: Some(16),
        failover: None,
        synced: None,
    }
}

fn slot(wal_status: &str) -> SlotSeen {
    SlotSeen::Found(slot_state(wal_status))
}

fn ready(s: &PgKafkaConnectorStatus) -> (&str, &str) {
    let c = get(s, ConditionType::Ready);
    (c.status.as_str(), c.reason.as_str())
}

fn get(s: &PgKafkaConnectorStatus, t: ConditionType) -> &Condition {
    pgkafka_crds::conditions::find(&s.conditions, t).expect("condition")
}

#[test]
fn dead_letters_degrade_until_acknowledged() {
    let mut o = Observed {
        generation: Some(1),
        slot: slot("reserved"),
        engine: Some(engine(true)),
        ..Default::default()
    };
    assert_eq!(
        get(&compute(&o, "s", None, "t0"), ConditionType::Degraded).status,
        "False"
    );
    if let Some(e) = &mut o.engine {
        e.counters.dead_lettered = 3;
    }
    let s = compute(&o, "s", None, "t0");
    let d = get(&s, ConditionType::Degraded);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", "RecordsDeadLettered")
    );
    assert!(
        d.message.contains("3 records") && d.message.contains("dead-letters-acknowledged=3"),
        "{}",
        d.message
    );
    o.dead_letters_acknowledged = 3;
    assert_eq!(
        get(&compute(&o, "s", None, "t0"), ConditionType::Degraded).status,
        "False"
    );
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
    o.engine = Some(engine(false));
    assert_eq!(
        ready(&compute(&o, "s", None, "t0")),
        ("False", "EngineNotStreaming")
    );
    o.engine = Some(EngineStatus {
        last_event_unix_ms: 1_700_000_000_000,
        ..engine(true)
    });
    let s = compute(&o, "s", None, "t0");
    assert_eq!(ready(&s), ("True", "Streaming"));
    // An engine that halted says why, in Ready and Degraded.
    let mut halted = o.clone();
    halted.engine = Some(EngineStatus {
        halted: Some("spec.listeners[0].targets[0].filter: column \"x\" was dropped".into()),
        ..engine(false)
    });
    let h = compute(&halted, "s", None, "t0");
    assert_eq!(ready(&h), ("False", "EngineHalted"));
    let degraded = h
        .conditions
        .iter()
        .find(|c| c.is(ConditionType::Degraded))
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
        get(&compute(&o, "s", None, "t0"), ConditionType::Degraded).status,
        "False"
    );
}

#[test]
fn slot_problems_and_spec_problems_show() {
    let lost = Observed {
        slot: slot("lost"),
        engine: Some(engine(true)),
        ..Default::default()
    };
    let s = compute(&lost, "s", None, "t0");
    assert_eq!(
        (
            get(&s, ConditionType::SlotHealthy).status.as_str(),
            get(&s, ConditionType::SlotHealthy).reason.as_str()
        ),
        ("False", "SlotLost")
    );
    assert_eq!(get(&s, ConditionType::Degraded).reason, "SlotLost");
    let missing = Observed {
        slot: SlotSeen::Missing,
        ..Default::default()
    };
    assert_eq!(
        get(
            &compute(&missing, "s", None, "t0"),
            ConditionType::SlotHealthy
        )
        .reason,
        "SlotMissing"
    );
    let bad = Observed {
        problem: Some((Reason::InvalidSpec, "spec.slot.name: bad".into())),
        ..Default::default()
    };
    let s = compute(&bad, "s", None, "t0");
    assert_eq!(ready(&s), ("False", "InvalidSpec"));
    assert_eq!(get(&s, ConditionType::SlotHealthy).status, "Unknown");
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
        engine: Some(engine(true)),
        ..Default::default()
    };
    let first = compute(&o, "s", None, "t0");
    let again = compute(&o, "s", Some(&first), "t1");
    assert_eq!(get(&again, ConditionType::Ready).last_transition_time, "t0");
    assert!(!worth_writing(Some(&first), &again, true));
    let stopped = Observed {
        engine: None,
        ..o.clone()
    };
    let changed = compute(&stopped, "s", Some(&first), "t2");
    assert_eq!(
        get(&changed, ConditionType::Ready).last_transition_time,
        "t2"
    );
    assert!(
        worth_writing(Some(&first), &changed, false),
        "condition changes are written at once"
    );
    let mut moved = o.clone();
    moved.slot = SlotSeen::Found(SlotState {
        lag_bytes: Some(99),
        ..slot_state("reserved")
    });
    let numbers = compute(&moved, "s", Some(&first), "t3");
    assert!(
        !worth_writing(Some(&first), &numbers, false),
        "progress waits for its interval"
    );
    assert!(worth_writing(Some(&first), &numbers, true));
    let mut matched = o.clone();
    let mut report = engine(true);
    report.tables =
        pgkafka_crds::report::TablesReport::of(vec!["public.a".into(), "public.b".into()], vec![]);
    matched.engine = Some(report);
    let tables = compute(&matched, "s", Some(&first), "t4");
    assert!(
        worth_writing(Some(&first), &tables, false),
        "a table matched or dropped is written at once"
    );
}
