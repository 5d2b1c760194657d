//! Snapshot signals from annotations, handed to the running engine
//! (Debezium's `execute-snapshot`, `pause-snapshot`, `resume-snapshot` and
//! `stop-snapshot`):
//!
//! - `pgkafka.io/snapshot: "public.orders, public.lines"`, or with a
//!   condition `"public.orders WHERE created_at > '2026-01-01'"`: once per
//!   value (`status.snapshot.requested` remembers it);
//! - `pgkafka.io/snapshot-stop: "public.orders"` (`*` for every table):
//!   once per value (`status.snapshot.stopRequested`);
//! - `pgkafka.io/snapshot-paused: "true"`: a level: while it is there, the
//!   engine's pending and running tables are paused; once it is gone (or
//!   not `true`), its paused tables resume.
//!
//! Every signal sent is an Event; one the engine refuses is a Warning
//! Event with its message (a condition PostgreSQL refused, a table that is
//! not listened), and is not sent again.

use kube::runtime::events::EventType;
use kube::ResourceExt;
use pgkafka_crds::report::SnapshotState;
use pgkafka_crds::PgKafkaConnector;

use crate::probe::{SnapshotAnswer, SnapshotSignal};
use crate::reconcile::{publish, Context};
use crate::resources::{SNAPSHOT_ANNOTATION, SNAPSHOT_PAUSED_ANNOTATION, SNAPSHOT_STOP_ANNOTATION};
use crate::status::Observed;

/// Sends what the annotations ask of a running engine that answered.
pub(crate) async fn send(c: &PgKafkaConnector, ctx: &Context, observed: &mut Observed) {
    let remembered = c.status.as_ref().and_then(|s| s.snapshot.as_ref());
    let (requested, stopped) = (
        remembered.and_then(|s| s.requested.clone()),
        remembered.and_then(|s| s.stop_requested.clone()),
    );
    if let Some(value) = new_value(c, SNAPSHOT_ANNOTATION, requested.as_deref()) {
        let signal = execute(&value);
        if answered(c, ctx, &signal, SNAPSHOT_ANNOTATION).await {
            observed.snapshot_requested = Some(value);
        }
    }
    if let Some(value) = new_value(c, SNAPSHOT_STOP_ANNOTATION, stopped.as_deref()) {
        let signal = SnapshotSignal::Stop(tables(&value));
        if answered(c, ctx, &signal, SNAPSHOT_STOP_ANNOTATION).await {
            observed.snapshot_stop_requested = Some(value);
        }
    }
    if let Some(signal) = pause_or_resume(c, observed) {
        answered(c, ctx, &signal, SNAPSHOT_PAUSED_ANNOTATION).await;
    }
}

/// The annotation's value when it is set and not the one remembered.
fn new_value(c: &PgKafkaConnector, annotation: &str, remembered: Option<&str>) -> Option<String> {
    let value = c.annotations().get(annotation)?;
    (!value.trim().is_empty() && remembered != Some(value.as_str())).then(|| value.clone())
}

/// Pause while the annotation says so and a table is active; resume when
/// it does not and a table is paused.
fn pause_or_resume(c: &PgKafkaConnector, observed: &Observed) -> Option<SnapshotSignal> {
    let tables = &observed.engine.as_ref()?.snapshot.tables;
    let paused = c
        .annotations()
        .get(SNAPSHOT_PAUSED_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let any = |wanted: fn(SnapshotState) -> bool| tables.iter().any(|t| wanted(t.state));
    if paused && any(SnapshotState::is_active) {
        Some(SnapshotSignal::Pause)
    } else if !paused && any(|s| s == SnapshotState::Paused) {
        Some(SnapshotSignal::Resume)
    } else {
        None
    }
}

/// Sends `signal`; an Event says what happened. `true` when the engine
/// answered (accepted or refused: asking again would not help).
async fn answered(
    c: &PgKafkaConnector,
    ctx: &Context,
    signal: &SnapshotSignal,
    annotation: &str,
) -> bool {
    let (reason, what) = match signal {
        SnapshotSignal::Execute { tables, condition } => (
            "SnapshotRequested",
            match condition {
                Some(cond) => format!("snapshot of {} where {cond}", tables.join(", ")),
                None => format!("snapshot of {}", tables.join(", ")),
            },
        ),
        SnapshotSignal::Pause => ("SnapshotPaused", "snapshots paused".to_owned()),
        SnapshotSignal::Resume => ("SnapshotResumed", "snapshots resumed".to_owned()),
        SnapshotSignal::Stop(tables) if tables.is_empty() => (
            "SnapshotStopped",
            "every unfinished snapshot stopped".to_owned(),
        ),
        SnapshotSignal::Stop(tables) => (
            "SnapshotStopped",
            format!("snapshot of {} stopped", tables.join(", ")),
        ),
    };
    match ctx.probe.signal(c, signal).await {
        SnapshotAnswer::Accepted => {
            publish(c, ctx, EventType::Normal, reason, &what).await;
            true
        }
        SnapshotAnswer::Refused(message) => {
            let note = format!("{annotation}: {message}");
            publish(c, ctx, EventType::Warning, "SnapshotRefused", &note).await;
            true
        }
        SnapshotAnswer::Unreachable => false,
    }
}

/// `schema.table` names, comma-separated; `*` alone for every table.
fn tables(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "*")
        .map(str::to_owned)
        .collect()
}

/// `tables [WHERE condition]`.
fn execute(value: &str) -> SnapshotSignal {
    match split_where(value) {
        Some((list, condition)) => SnapshotSignal::Execute {
            tables: tables(list),
            condition: Some(condition.to_owned()),
        },
        None => SnapshotSignal::Execute {
            tables: tables(value),
            condition: None,
        },
    }
}

/// The table list and the condition, around the first `WHERE` (any case)
/// standing as a word between white space.
fn split_where(value: &str) -> Option<(&str, &str)> {
    let lower = value.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("where").map(|i| i + from) {
        let before = value[..at].chars().next_back();
        let after = value[at + 5..].chars().next();
        if before.is_some_and(char::is_whitespace) && after.is_some_and(char::is_whitespace) {
            let condition = value[at + 5..].trim();
            return (!condition.is_empty()).then_some((value[..at].trim(), condition));
        }
        from = at + 5;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_may_carry_a_condition() {
        assert_eq!(
            execute("public.orders, public.lines"),
            SnapshotSignal::Execute {
                tables: vec!["public.orders".into(), "public.lines".into()],
                condition: None
            }
        );
        assert_eq!(
            execute("public.orders\n  where status = 'somewhere' AND a <> 'WHERE'"),
            SnapshotSignal::Execute {
                tables: vec!["public.orders".into()],
                condition: Some("status = 'somewhere' AND a <> 'WHERE'".into())
            }
        );
        assert_eq!(
            execute("public.nowhere"),
            SnapshotSignal::Execute {
                tables: vec!["public.nowhere".into()],
                condition: None
            }
        );
        assert_eq!(tables("*"), Vec::<String>::new());
    }
}
