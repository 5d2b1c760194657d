//! A session adopting the tables its discovery found, in the one order
//! that loses nothing: the listener joins the routes and its topics are
//! created, then the table joins the publication, then (under
//! `snapshot.mode: initial`) its snapshot is asked for, which reads every
//! row written before the table was published.

use pgkafka_crds::report::SkippedTable;
use pgkafka_crds::{ListenerSpec, QualifiedTable, SnapshotMode};

use super::{Followed, Session};
use crate::error::Error;
use crate::snapshot::table_name;
use crate::source::catalog::TableInfo;

/// Why a table added while streaming is snapshotted.
const MATCHED_REASON: &str = "matched by a pattern listener while streaming";

impl Session<'_> {
    /// Looks at the catalog and follows what changed.
    pub(super) async fn follow_tables(&mut self) -> Result<(), Error> {
        let Some(discovery) = self.discovery.as_mut() else {
            return Ok(());
        };
        let found = discovery.look(&self.ctx.shared.listened()).await?;
        if found.is_empty() {
            return Ok(());
        }
        let mut skipped = Vec::new();
        let mut routed = Vec::new();
        for (listener, info) in found.added {
            match self.route(&listener, &info) {
                Ok(()) => routed.push((listener, info)),
                Err(reason) => skipped.push(skip(&info.shape.table, reason)),
            }
        }
        self.add_new_topics().await?;
        let tables: Vec<QualifiedTable> =
            routed.iter().map(|(_, i)| i.shape.table.clone()).collect();
        let unpublished = match self.discovery.as_mut() {
            Some(d) => d.publish(&tables).await?,
            None => Vec::new(),
        };
        let mut added = Vec::new();
        for (listener, info) in routed {
            let table = info.shape.table.clone();
            if unpublished.contains(&table) {
                let reason = format!(
                    "publication {:?} does not publish it, and spec.publication.create is false: add it to the publication to capture it",
                    self.ctx.cfg.spec.publication.name
                );
                skipped.push(skip(&table, reason));
                continue;
            }
            if let Some(d) = self.discovery.as_mut() {
                d.captured(&table);
            }
            added.push(self.capture(listener, info));
        }
        let discovery = self
            .discovery
            .as_mut()
            .ok_or(crate::error::ErrorKind::Internal("no discovery"))?;
        for table in &found.dropped {
            tracing::info!(table = %table, "a listened table is gone: no longer captured");
            self.snapshots.drop_table(table);
            // Added and dropped in one session: the next one knows neither.
            self.followed
                .added
                .retain(|(l, _)| QualifiedTable::parse(&l.table).ok().as_ref() != Some(table));
        }
        for s in &skipped {
            if let Ok(table) = QualifiedTable::parse(&s.table) {
                if discovery.first_skip(&table) {
                    tracing::warn!(table = %s.table, reason = %s.reason, "a table a pattern matched is not captured");
                }
            }
        }
        self.followed.dropped.extend(found.dropped.iter().cloned());
        self.ctx
            .shared
            .follow_tables(&added, &found.dropped, skipped, self.ctx.metrics);
        Ok(())
    }

    /// A table the stream describes that no listener captures: when a
    /// pattern listener matches it (a table created in a schema the
    /// publication takes whole, whose first change is here before any look
    /// at the catalog), it is captured from this change on. Whether it is.
    pub(super) async fn adopt(&mut self, table: &QualifiedTable) -> Result<bool, Error> {
        let Some(discovery) = self.discovery.as_mut() else {
            return Ok(false);
        };
        let Some((listener, info)) = discovery.describe(table).await? else {
            return Ok(false);
        };
        if let Err(reason) = self.route(&listener, &info) {
            let skipped = vec![skip(table, reason)];
            self.ctx
                .shared
                .follow_tables(&[], &[], skipped, self.ctx.metrics);
            return Ok(false);
        }
        self.add_new_topics().await?;
        let table = self.capture(listener, info);
        self.ctx
            .shared
            .follow_tables(&[table], &[], Vec::new(), self.ctx.metrics);
        Ok(true)
    }

    /// The table `info` describes, routed and published, is captured: a
    /// snapshot asked for under `initial`, kept for the next session.
    fn capture(&mut self, listener: ListenerSpec, info: TableInfo) -> QualifiedTable {
        let table = info.shape.table;
        let snapshot = self.ctx.cfg.spec.snapshot.mode == SnapshotMode::Initial;
        tracing::info!(table = %table, snapshot, "capturing a table matched while streaming");
        let field = listener.field(0);
        let reason = snapshot.then_some(MATCHED_REASON);
        self.snapshots
            .add_table(table.clone(), &listener, field, reason);
        self.followed.added.push((listener, info.primary_key));
        table
    }

    /// Gives `listener` a route for the table `info` describes (kept from
    /// an earlier look when there is one); why not, when it does not fit.
    fn route(&mut self, listener: &ListenerSpec, info: &TableInfo) -> Result<(), String> {
        if self.transform.captures(&info.shape.table) {
            return Ok(());
        }
        let cfg = self.ctx.cfg;
        self.transform
            .add_listener(
                listener,
                &listener.field(0),
                (&cfg.spec.kafka, cfg.spec.metrics.per_table),
                &info.shape,
                info.primary_key.clone(),
                self.ctx.metrics,
            )
            .map_err(|e| e.to_string())
    }

    /// What this session's discovery changed, for the next session.
    pub(in crate::engine) fn take_followed(&mut self) -> Followed {
        std::mem::take(&mut self.followed)
    }
}

fn skip(table: &QualifiedTable, reason: String) -> SkippedTable {
    SkippedTable {
        table: table_name(table),
        reason,
    }
}
