//! Pattern listeners follow the catalog while the stream runs. On an
//! interval (`spec.publication.refreshIntervalSeconds`) the database's
//! tables are matched again against the spec as written: a table matched
//! now and not listened to yet is described (columns, types, primary key)
//! for the session to adopt; a listened table that is no longer matched
//! (dropped, renamed) is let go. Where the publication takes a schema
//! whole, a new table's first change reaches the stream before any look:
//! the session asks [`Discovery::describe`] about it then, and captures it
//! from that change on.
//!
//! The engine, not the operator, adds such tables to the publication: the
//! table's listener must join the routes before the table joins the
//! publication (else its first changes would find no listener), and its
//! snapshot must be asked for after (so it covers the rows written before
//! the table was published); only the process that owns the stream can
//! order the three. It also works with no cluster at all.

use std::collections::HashSet;
use std::time::Duration;

use pgkafka_crds::{ListenerSpec, PgKafkaConnectorSpec, QualifiedTable};
use tokio::time::{interval, Interval, MissedTickBehavior};
use tokio_postgres::Client;

use crate::config::EngineConfig;
use crate::error::Error;
use crate::source::catalog::{table_info, user_tables, TableInfo};
use crate::source::connection::connect;
use crate::source::lookup::TypeRows;
use crate::source::provision;

/// What one look at the catalog found.
#[derive(Default)]
pub(super) struct Found {
    /// Tables matched and not listened to yet, each with its listener
    /// (the pattern listener's, templates filled) and what the catalog says.
    pub added: Vec<(ListenerSpec, TableInfo)>,
    /// Listened tables no listener selects any more.
    pub dropped: Vec<QualifiedTable>,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty()
    }
}

/// The catalog, looked at on an interval for a spec with pattern listeners.
pub(super) struct Discovery<'a> {
    /// The spec as written (its pattern listeners not expanded).
    written: &'a PgKafkaConnectorSpec,
    cfg: &'a EngineConfig,
    client: Option<Client>,
    ticks: Interval,
    types: TypeRows,
    /// Tables already said to be skipped, so each is logged once.
    warned: HashSet<QualifiedTable>,
}

impl<'a> Discovery<'a> {
    /// `None` when `written` selects no table by pattern.
    pub fn new(written: &'a PgKafkaConnectorSpec, cfg: &'a EngineConfig) -> Option<Self> {
        if !written.has_patterns() {
            return None;
        }
        let every = Duration::from_secs(u64::from(
            written.publication.refresh_interval_seconds.max(1),
        ));
        // The first tick is at once: a session starts by catching up with
        // what changed while none ran.
        let mut ticks = interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Some(Discovery {
            written,
            cfg,
            client: None,
            ticks,
            types: TypeRows::default(),
            warned: HashSet::new(),
        })
    }

    /// Waits for the next look (cancel-safe).
    pub async fn due(&mut self) {
        self.ticks.tick().await;
    }

    /// The catalog session, opened (again) when it is not open.
    async fn connect(&mut self) -> Result<Client, Error> {
        match self.client.take() {
            Some(client) if !client.is_closed() => Ok(client),
            _ => {
                let name = format!("pgkafka-{}-tables", self.cfg.name);
                Ok(connect(&name, &self.cfg.spec.postgres, &self.cfg.postgres).await?)
            }
        }
    }

    /// Matches the database's tables against the spec as written, given
    /// the tables `listened` to now.
    pub async fn look(&mut self, listened: &[QualifiedTable]) -> Result<Found, Error> {
        let client = self.connect().await?;
        let found = self.look_with(&client, listened).await;
        self.client = Some(client);
        found
    }

    async fn look_with(
        &mut self,
        client: &Client,
        listened: &[QualifiedTable],
    ) -> Result<Found, Error> {
        let catalog = user_tables(client).await?;
        let expanded = self.written.expand(&catalog);
        let matched: HashSet<QualifiedTable> = expanded.tables().into_iter().collect();
        let known: HashSet<&QualifiedTable> = listened.iter().collect();
        let mut found = Found {
            dropped: listened
                .iter()
                .filter(|t| !matched.contains(*t))
                .cloned()
                .collect(),
            ..Found::default()
        };
        for listener in expanded.listeners {
            let Ok(table) = QualifiedTable::parse(&listener.table) else {
                continue;
            };
            if known.contains(&table) {
                continue;
            }
            // Gone again since it was listed: the next look says so.
            if let Some(info) = self.describe_with(client, &table).await? {
                found.added.push((listener, info));
            }
        }
        Ok(found)
    }

    /// `table`'s listener and what the catalog says of it, when a pattern
    /// listener matches it (and no exact one names it).
    pub async fn describe(
        &mut self,
        table: &QualifiedTable,
    ) -> Result<Option<(ListenerSpec, TableInfo)>, Error> {
        let Some(listener) = self
            .written
            .expand(std::slice::from_ref(table))
            .listeners
            .into_iter()
            .find(|l| {
                l.origin.as_ref().is_some_and(|o| o.matched)
                    && QualifiedTable::parse(&l.table).ok().as_ref() == Some(table)
            })
        else {
            return Ok(None);
        };
        let client = self.connect().await?;
        let info = self.describe_with(&client, table).await;
        self.client = Some(client);
        Ok(info?.map(|info| (listener, info)))
    }

    async fn describe_with(
        &mut self,
        client: &Client,
        table: &QualifiedTable,
    ) -> Result<Option<TableInfo>, Error> {
        let Some(mut info) = table_info(client, table).await? else {
            return Ok(None);
        };
        self.types.resolve(client, &mut info.shape.columns).await?;
        Ok(Some(info))
    }

    /// Adds `tables` to a managed publication (see
    /// [`provision::publish_added`]); returns those still not published.
    pub async fn publish(
        &mut self,
        tables: &[QualifiedTable],
    ) -> Result<Vec<QualifiedTable>, Error> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.connect().await?;
        let published = provision::publish_added(&client, &self.cfg.spec, tables).await;
        self.client = Some(client);
        Ok(published?)
    }

    /// Whether `table` being skipped is news (to be logged).
    pub fn first_skip(&mut self, table: &QualifiedTable) -> bool {
        self.warned.insert(table.clone())
    }

    /// `table` is captured: a later skip of it is news again.
    pub fn captured(&mut self, table: &QualifiedTable) {
        self.warned.remove(table);
    }
}
