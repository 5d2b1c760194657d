//! The snapshot reader: a table's existing rows in key order, one chunk at a
//! time, each chunk read between two WAL watermarks (DBLog, as Debezium's
//! incremental snapshots do it).
//!
//! For every chunk: a low watermark goes into the WAL (a transactional
//! `pg_logical_emit_message` in a transaction of its own, which the stream
//! delivers in commit order with every other transaction), then the chunk is
//! read (`LIMIT chunkSize` rows after the last key), handed to the engine,
//! and a high watermark follows. The reader's session commits synchronously,
//! so each watermark reaches the stream at once rather than at the next WAL
//! flush. The engine drops from the
//! chunk every key the stream changed between the two watermarks and emits
//! the rest at the high watermark's place in the stream, so a snapshot row
//! never overtakes a newer change and no row is missed. The reader reads the
//! next chunk while the engine emits one, holding at most two per table.
//!
//! Values are read in PostgreSQL's text format (the simple query protocol)
//! under the replication session's settings, so they are byte for byte what
//! pgoutput would send for the same row. Each chunk is read in a read-only
//! transaction; a request's condition (checked before, `condition.rs`)
//! narrows every chunk's query.
//!
//! Every request carries a generation and a cancel flag: pausing or
//! stopping a table raises the flag, its task stops before the next chunk,
//! and the engine drops whatever an older generation still sends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pgkafka_crds::{PostgresSpec, QualifiedTable};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::credentials::PgCredentials;
use crate::decode::values::SESSION_OPTIONS;
use crate::event::{Datum, TableShape};
use crate::source::catalog::{snapshot_key, table_info};
use crate::source::connection::connect_verified;
use crate::source::error::PgError;
use crate::source::lookup::TypeRows;
use crate::source::provision::quote_ident;
use crate::source::tls::VerifiedName;

/// The prefix of the watermark messages in the WAL.
pub(crate) const WATERMARK_PREFIX: &str = "pgkafka.snapshot";

/// One table to read.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    /// The table as the catalog describes it.
    pub shape: TableShape,
    /// Positions of the key columns (unique, not null), in key order.
    pub key: Vec<usize>,
    /// Each key column's SQL type (`format_type`), to cast the last key.
    pub key_types: Vec<String>,
    /// Resume after this key (text of each key column); from the start when `None`.
    pub after: Option<Vec<String>>,
    /// Only rows where this SQL expression holds.
    pub condition: Option<String>,
}

/// What the reader tells the engine, in this order for each chunk: `Low`
/// (before its low watermark is written), `Chunk` (before its high one).
#[derive(Debug)]
pub(crate) enum ReaderEvent {
    /// Chunk `id` of `table` begins: watch the table's changes from its low
    /// watermark on.
    Low {
        /// Chunk id.
        id: u64,
        /// The table.
        table: QualifiedTable,
        /// The request's generation.
        generation: u64,
    },
    /// A chunk's rows.
    Chunk(Chunk),
    /// The table cannot be read; it is reported failed.
    Failed {
        /// The request's generation.
        generation: u64,
        /// Why.
        error: SnapshotError,
    },
}

/// A chunk read between watermarks `id`.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Its watermark id.
    pub id: u64,
    /// The generation of the request it was read for.
    pub generation: u64,
    /// The table, as read.
    pub shape: Arc<TableShape>,
    /// Rows in the order pgoutput sends columns.
    pub rows: Vec<Vec<Datum>>,
    /// The key of its last row (text), to resume after.
    pub last_key: Option<Vec<String>>,
    /// The table has no rows after this chunk.
    pub last: bool,
    /// Told when the engine emitted the chunk; the reader reads on then.
    pub taken: oneshot::Sender<()>,
}

/// A watermark, as its message content says: `{"id":7,"high":false}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Watermark {
    /// Chunk id.
    pub id: u64,
    /// High (after the chunk) or low (before it).
    pub high: bool,
}

impl Watermark {
    /// Parses a logical message of ours; `None` for anything else.
    pub fn parse(prefix: &str, content: &[u8]) -> Option<Watermark> {
        (prefix == WATERMARK_PREFIX)
            .then(|| serde_json::from_slice(content).ok())
            .flatten()
    }
}

/// Why a table could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    /// PostgreSQL refused (permissions, a dropped table).
    #[error("snapshot of {table}: {source}")]
    Query {
        /// The table.
        table: QualifiedTable,
        /// Why.
        source: PgError,
    },
    /// The engine went away (the session ended): the table resumes later.
    #[error("snapshot of {0}: the session ended")]
    Abandoned(QualifiedTable),
}

impl SnapshotError {
    /// The table it is about.
    pub fn table(&self) -> &QualifiedTable {
        match self {
            SnapshotError::Query { table, .. } | SnapshotError::Abandoned(table) => table,
        }
    }
}

/// The SQL that pins the text format of values, as the stream has it.
pub(crate) fn session_settings_sql() -> String {
    SESSION_OPTIONS
        .split_whitespace()
        .filter(|part| *part != "-c")
        .filter_map(|setting| setting.split_once('='))
        .map(|(k, v)| format!("SET {k} = '{v}';"))
        .collect()
}

/// `SELECT "a", "b" FROM "s"."t" [WHERE (condition) AND ("k") > ('1'::integer)]
/// ORDER BY "k" LIMIT n`
pub(crate) fn chunk_sql(plan: &TablePlan, limit: u32) -> String {
    let cols = &plan.shape.columns;
    let list = |idx: &[usize]| {
        idx.iter()
            .map(|&i| quote_ident(&cols[i].name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all: Vec<usize> = (0..cols.len()).collect();
    let mut sql = format!("SELECT {} FROM {}", list(&all), plan.shape.table);
    let mut filters = Vec::new();
    if let Some(condition) = &plan.condition {
        filters.push(format!("({condition})"));
    }
    if let Some(after) = &plan.after {
        let values: Vec<String> = after
            .iter()
            .zip(&plan.key_types)
            .map(|(v, t)| format!("{}::{t}", quote_literal(v)))
            .collect();
        filters.push(format!("({}) > ({})", list(&plan.key), values.join(", ")));
    }
    if !filters.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&filters.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", list(&plan.key)));
    sql
}

/// `'it''s'`: a string literal (standard_conforming_strings is on).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A request's identity while it is read: its generation, and the flag
/// that stops it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    /// The request's generation (the engine drops events of older ones).
    pub generation: u64,
    /// Raised when the table is paused or stopped, or asked for again.
    pub cancel: Arc<AtomicBool>,
}

impl Run {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Reads `plan`'s table chunk by chunk into `events` until its end, or
/// until `run` is cancelled (before the next chunk).
pub(crate) async fn read_table(
    client: &Client,
    mut plan: TablePlan,
    (chunk_size, ids): (u32, &AtomicU64),
    run: &Run,
    events: &mpsc::Sender<ReaderEvent>,
) -> Result<(), SnapshotError> {
    let table = plan.shape.table.clone();
    let shape = Arc::new(plan.shape.clone());
    let fail = |source: PgError| SnapshotError::Query {
        table: table.clone(),
        source,
    };
    let gone = || SnapshotError::Abandoned(table.clone());
    let mut in_flight: Option<oneshot::Receiver<()>> = None;
    loop {
        if run.cancelled() {
            return Err(gone());
        }
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let low = ReaderEvent::Low {
            id,
            table: table.clone(),
            generation: run.generation,
        };
        events.send(low).await.map_err(|_| gone())?;
        emit(client, Watermark { id, high: false })
            .await
            .map_err(fail)?;
        let sql = chunk_sql(&plan, chunk_size);
        let rows = read_rows(client, &sql, plan.shape.columns.len())
            .await
            .map_err(|e| fail(PgError::query(format!("reading {table}"), e)))?;
        let last = rows.len() < chunk_size as usize;
        let last_key = rows.last().map(|row| key_text(row, &plan.key));
        let (taken, wait) = oneshot::channel();
        let chunk = Chunk {
            id,
            generation: run.generation,
            shape: Arc::clone(&shape),
            rows,
            last_key: last_key.clone(),
            last,
            taken,
        };
        events
            .send(ReaderEvent::Chunk(chunk))
            .await
            .map_err(|_| gone())?;
        emit(client, Watermark { id, high: true })
            .await
            .map_err(fail)?;
        // Read the next chunk while the engine emits this one, but hold at
        // most two: wait until the one before was taken.
        if let Some(previous) = in_flight.replace(wait) {
            previous.await.map_err(|_| gone())?;
        }
        if last {
            if let Some(wait) = in_flight.take() {
                wait.await.map_err(|_| gone())?;
            }
            return Ok(());
        }
        plan.after = last_key;
    }
}

async fn emit(client: &Client, mark: Watermark) -> Result<(), PgError> {
    let content = serde_json::to_string(&mark).unwrap_or_default();
    let sql = format!(
        "SELECT pg_logical_emit_message(true, {}, {})",
        quote_literal(WATERMARK_PREFIX),
        quote_literal(&content)
    );
    client
        .simple_query(&sql)
        .await
        .map(|_| ())
        .map_err(PgError::during("writing a snapshot watermark"))
}

/// The rows of `sql`, read in a read-only transaction (a condition cannot
/// write).
async fn read_rows(
    client: &Client,
    sql: &str,
    columns: usize,
) -> Result<Vec<Vec<Datum>>, tokio_postgres::Error> {
    let mut rows = Vec::new();
    let read_only = format!("BEGIN READ ONLY; {sql}; COMMIT");
    for message in client.simple_query(&read_only).await? {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        let datums = (0..columns)
            .map(|i| match row.get(i) {
                Some(text) => Datum::Text(Bytes::copy_from_slice(text.as_bytes())),
                None => Datum::Null,
            })
            .collect();
        rows.push(datums);
    }
    Ok(rows)
}

fn key_text(row: &[Datum], key: &[usize]) -> Vec<String> {
    key.iter()
        .map(|&i| match row.get(i) {
            Some(Datum::Text(t)) => String::from_utf8_lossy(t).into_owned(),
            _ => String::new(),
        })
        .collect()
}

/// Chunk ids: from a random start, so a watermark of an earlier engine
/// replayed from the WAL never matches a chunk of this one.
pub(crate) fn chunk_ids() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(rand::random::<u64>() >> 2))
}

/// A table the reader is asked to snapshot.
#[derive(Debug, Clone)]
pub(crate) struct TableRequest {
    /// The table.
    pub table: QualifiedTable,
    /// Resume after this key; from the start when `None`.
    pub after: Option<Vec<String>>,
    /// Configured `keyColumns`, if any.
    pub key_columns: Option<Vec<String>>,
    /// The listener's spec path, for errors.
    pub field: String,
    /// Only rows where this SQL expression holds (checked before).
    pub condition: Option<String>,
    /// Its generation and cancel flag.
    pub run: Run,
}

/// How the reader connects and reads.
pub(crate) struct ReaderSettings {
    /// Application name of its connections.
    pub application_name: String,
    /// Where PostgreSQL is.
    pub postgres: PostgresSpec,
    /// Who logs in.
    pub credentials: PgCredentials,
    /// Rows per chunk.
    pub chunk_size: u32,
    /// Tables read at once.
    pub max_tables: usize,
    /// Chunk ids.
    pub ids: Arc<AtomicU64>,
}

/// Reads the requested tables, `max_tables` at once, each on a connection
/// of its own, kept for the next table while there is one (a thousand small
/// tables do not cost a thousand logins; an idle reader holds none), until
/// `requests` closes (or the task is aborted, which aborts every table's
/// task too).
pub(crate) async fn run_reader(
    settings: Arc<ReaderSettings>,
    mut requests: mpsc::UnboundedReceiver<TableRequest>,
    events: mpsc::Sender<ReaderEvent>,
) {
    // Tables wait for a permit in the order they were asked for (the
    // semaphore is fair).
    let permits = Arc::new(Semaphore::new(settings.max_tables.max(1)));
    let idle: Arc<Mutex<Vec<Client>>> = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { break };
                let (settings, events) = (Arc::clone(&settings), events.clone());
                let (permits, idle) = (Arc::clone(&permits), Arc::clone(&idle));
                tasks.spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return;
                    };
                    read_requested(&settings, request, &events, &idle).await;
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                if tasks.is_empty() {
                    if let Ok(mut kept) = idle.lock() {
                        kept.clear();
                    }
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads one requested table on a kept connection (or a new one), keeps
/// the connection when the table went well, and reports a failure.
async fn read_requested(
    settings: &ReaderSettings,
    request: TableRequest,
    events: &mpsc::Sender<ReaderEvent>,
    idle: &Mutex<Vec<Client>>,
) {
    let generation = request.run.generation;
    let table = request.table.clone();
    let kept = idle.lock().ok().and_then(|mut v| v.pop());
    let connected = match kept.filter(|c| !c.is_closed()) {
        Some(client) => Ok(client),
        None => connect_reader(settings).await,
    };
    let outcome = match connected {
        Ok(client) => {
            let outcome = snapshot_one(settings, &client, request, events).await;
            // A connection whose table failed may be mid-transaction.
            if outcome.is_ok() {
                if let Ok(mut v) = idle.lock() {
                    v.push(client);
                }
            }
            outcome
        }
        Err(source) => Err(SnapshotError::Query { table, source }),
    };
    if let Err(error) = outcome {
        if !matches!(error, SnapshotError::Abandoned(_)) {
            let _ = events.send(ReaderEvent::Failed { generation, error }).await;
        }
    }
}

/// A reader connection: values in the stream's text formats, and
/// watermarks committed synchronously (the walsender sends only flushed WAL).
async fn connect_reader(settings: &ReaderSettings) -> Result<Client, PgError> {
    let client = connect_verified(
        &settings.application_name,
        &settings.postgres,
        &settings.credentials,
        &VerifiedName::default(),
    )
    .await?;
    let settings_sql = format!("{} SET synchronous_commit = on;", session_settings_sql());
    client
        .batch_execute(&settings_sql)
        .await
        .map_err(|e| PgError::query("setting the session's value formats", e))?;
    Ok(client)
}

async fn snapshot_one(
    settings: &ReaderSettings,
    client: &Client,
    request: TableRequest,
    events: &mpsc::Sender<ReaderEvent>,
) -> Result<(), SnapshotError> {
    let table = request.table.clone();
    if request.run.cancelled() {
        return Err(SnapshotError::Abandoned(table));
    }
    let fail = |source: PgError| SnapshotError::Query {
        table: table.clone(),
        source,
    };
    let mut info = table_info(client, &table)
        .await
        .map_err(fail)?
        .ok_or_else(|| {
            fail(PgError::Setup {
                field: format!("{}.table", request.field),
                message: format!("table {table} does not exist"),
            })
        })?;
    TypeRows::default()
        .resolve(client, &mut info.shape.columns)
        .await
        .map_err(fail)?;
    let (key, key_types) = snapshot_key(
        client,
        &info.shape,
        &info.primary_key,
        request.key_columns.as_deref(),
        &format!("{}.keyColumns", request.field),
    )
    .await
    .map_err(fail)?;
    let plan = TablePlan {
        shape: info.shape,
        key,
        key_types,
        after: request.after,
        condition: request.condition,
    };
    let sizes = (settings.chunk_size, &*settings.ids);
    read_table(client, plan, sizes, &request.run, events).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Column;

    fn plan(after: Option<Vec<String>>) -> TablePlan {
        let col = |name: &str| Column {
            is_key: false,
            name: name.into(),
            type_oid: 23,
            value_oid: 23,
            type_modifier: -1,
        };
        TablePlan {
            shape: TableShape {
                table: QualifiedTable {
                    schema: "My".into(),
                    name: "or\"ders".into(),
                },
                columns: vec![col("id"), col("te'nant"), col("note")],
                replica_identity: b'd',
            },
            key: vec![1, 0],
            key_types: vec!["text".into(), "integer".into()],
            after,
            condition: None,
        }
    }

    #[test]
    fn chunks_are_key_ordered_and_resume_after_the_last_key_quoted() {
        assert_eq!(
            chunk_sql(&plan(None), 500),
            r#"SELECT "id", "te'nant", "note" FROM "My"."or""ders" ORDER BY "te'nant", "id" LIMIT 500"#
        );
        assert_eq!(
            chunk_sql(&plan(Some(vec!["a'; DROP".into(), "7".into()])), 10),
            r#"SELECT "id", "te'nant", "note" FROM "My"."or""ders" WHERE ("te'nant", "id") > ('a''; DROP'::text, '7'::integer) ORDER BY "te'nant", "id" LIMIT 10"#
        );
        let narrowed = TablePlan {
            condition: Some("note <> 'x'".into()),
            ..plan(Some(vec!["a".into(), "7".into()]))
        };
        assert_eq!(
            chunk_sql(&narrowed, 10),
            r#"SELECT "id", "te'nant", "note" FROM "My"."or""ders" WHERE (note <> 'x') AND ("te'nant", "id") > ('a'::text, '7'::integer) ORDER BY "te'nant", "id" LIMIT 10"#
        );
    }

    #[test]
    fn watermarks_round_trip_and_others_are_ignored() {
        let mark = Watermark { id: 9, high: true };
        let text = serde_json::to_vec(&mark).expect("json");
        assert_eq!(Watermark::parse(WATERMARK_PREFIX, &text), Some(mark));
        assert_eq!(Watermark::parse("other", &text), None);
        assert_eq!(Watermark::parse(WATERMARK_PREFIX, b"junk"), None);
        assert_eq!(
            session_settings_sql(),
            "SET DateStyle = 'ISO';SET TimeZone = 'UTC';SET IntervalStyle = 'iso_8601';SET bytea_output = 'hex';SET extra_float_digits = '3';"
        );
    }
}
