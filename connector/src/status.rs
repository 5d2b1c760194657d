//! What a running engine reports about itself: the same figures `/status`
//! serves and an embedding program reads through a [`StatusHandle`], as
//! the one contract type `pgkafka_crds::report::EngineStatus`.

use pgkafka_crds::report::{Counters, EngineStatus, InFlight, SnapshotReport};
use pgkafka_crds::QualifiedTable;

use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::snapshot::condition::ConditionCheck;
use crate::snapshot::{table_name, Command, SharedSnapshots};

/// Where a stopped engine leaves its reason for `/status`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Halted(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Halted {
    /// Records why the engine stopped: its error and each source's words.
    pub(crate) fn set(&self, error: &crate::error::Error) {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            let part = s.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = s.source();
        }
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(text);
        }
    }

    fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|h| h.clone())
    }
}

/// Reads the state of a running engine; cheap to clone.
#[derive(Clone)]
pub struct StatusHandle {
    pub(crate) name: String,
    pub(crate) slot: String,
    pub(crate) metrics: Metrics,
    pub(crate) shared: SharedSnapshots,
    pub(crate) halted: Halted,
    /// How PostgreSQL is reached to check a snapshot's condition.
    pub(crate) condition_check: Option<ConditionCheck>,
}

impl StatusHandle {
    /// The engine's state now.
    pub fn status(&self) -> EngineStatus {
        let m = &self.metrics;
        let lsn = |g: &prometheus::IntGauge| Lsn(u64::try_from(g.get()).unwrap_or(0));
        EngineStatus {
            connector: self.name.clone(),
            slot: self.slot.clone(),
            streaming: self.is_streaming(),
            confirmed_flush_lsn: lsn(&m.confirmed_lsn),
            received_lsn: lsn(&m.received_lsn),
            wal_end_lsn: lsn(&m.wal_end_lsn),
            lag_bytes: (m.wal_end_lsn.get() - m.confirmed_lsn.get()).max(0),
            last_keepalive_unix_seconds: m.last_keepalive.get(),
            last_event_unix_ms: m.last_event_ms.get(),
            counters: Counters {
                events: m.events.get(),
                transactions: m.transactions.get(),
                records_delivered: m.delivered.get(),
                delivery_errors: m.delivery_errors.get(),
                session_restarts: m.restarts.get(),
                dead_lettered: m.dead_lettered.get(),
            },
            in_flight: InFlight {
                records: m.in_flight_records.get(),
                bytes: m.in_flight_bytes.get(),
                record_limit: m.in_flight_limit.get(),
            },
            tables: self.shared.tables_report(),
            snapshot: SnapshotReport {
                tables: self.shared.tables(),
            },
            halted: self.halted.get(),
        }
    }

    /// Asks for a snapshot of `tables` (`schema.table`), each a listened
    /// table, while streaming goes on; a table already being read starts
    /// again. Returns the tables accepted, or an error naming the first
    /// table that is not listened (nothing is accepted then).
    pub fn request_snapshot(&self, tables: &[String]) -> Result<Vec<String>, String> {
        let accepted = self.listened_tables(tables, false)?;
        let names = accepted.iter().map(table_name).collect();
        self.shared.request(accepted, None);
        Ok(names)
    }

    /// [`StatusHandle::request_snapshot`] of only the rows where
    /// `condition` (a SQL boolean expression, Debezium's
    /// `additional-conditions`) holds. PostgreSQL checks it on every table
    /// first; its message is the refusal.
    pub async fn request_snapshot_where(
        &self,
        tables: &[String],
        condition: &str,
    ) -> Result<Vec<String>, String> {
        let accepted = self.listened_tables(tables, false)?;
        let check = self
            .condition_check
            .as_ref()
            .ok_or("this engine has no PostgreSQL to check a condition with")?;
        check.check(&accepted, condition).await?;
        let names = accepted.iter().map(table_name).collect();
        self.shared.request(accepted, Some(condition.to_owned()));
        Ok(names)
    }

    /// Pauses the snapshots of `tables`, or of every pending and running
    /// table when empty (Debezium's `pause-snapshot`); returns the tables
    /// named.
    pub fn pause_snapshots(&self, tables: &[String]) -> Result<Vec<String>, String> {
        self.control(tables, Command::Pause)
    }

    /// Resumes paused snapshots after their last row sent (every paused
    /// table when `tables` is empty; Debezium's `resume-snapshot`).
    pub fn resume_snapshots(&self, tables: &[String]) -> Result<Vec<String>, String> {
        self.control(tables, Command::Resume)
    }

    /// Stops the snapshots of `tables`, or of every unfinished table when
    /// empty, before their end (Debezium's `stop-snapshot`).
    pub fn stop_snapshots(&self, tables: &[String]) -> Result<Vec<String>, String> {
        self.control(tables, Command::Stop)
    }

    fn control(
        &self,
        tables: &[String],
        command: fn(Vec<QualifiedTable>) -> Command,
    ) -> Result<Vec<String>, String> {
        let named = self.listened_tables(tables, true)?;
        let names = named.iter().map(table_name).collect();
        self.shared.command(command(named));
        Ok(names)
    }

    /// `tables` parsed, each a listened table; none at all only when
    /// `empty_means_all`.
    fn listened_tables(
        &self,
        tables: &[String],
        empty_means_all: bool,
    ) -> Result<Vec<QualifiedTable>, String> {
        if tables.is_empty() && !empty_means_all {
            return Err("tables: name at least one listened table".into());
        }
        let mut accepted = Vec::with_capacity(tables.len());
        let all = self.shared.listened();
        for name in tables {
            let table = QualifiedTable::parse(name).map_err(|e| format!("{name}: {e}"))?;
            if !all.contains(&table) {
                let listened: Vec<String> = all.iter().map(table_name).collect();
                return Err(format!(
                    "{name} is not a listened table (listened: {})",
                    listened.join(", ")
                ));
            }
            accepted.push(table);
        }
        Ok(accepted)
    }

    /// The replication stream is open and streaming.
    pub fn is_streaming(&self) -> bool {
        self.metrics.streaming.get() == 1
    }

    /// Every metric in Prometheus' text exposition format.
    pub fn prometheus_text(&self) -> Vec<u8> {
        self.metrics.render()
    }
}
