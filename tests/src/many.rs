//! Many tables in one connector, shared by the test and the benchmark:
//! `n` tables `many.t0000`… of `rows` rows each, one pattern listener over
//! the schema (each table on its own default topic, and every change also
//! on one topic of all of them, where a reader sees them together), and
//! what `/status` says while they are snapshotted.

use std::time::{Duration, Instant};

use pgkafka_crds::report::{EngineStatus, SnapshotState};

use crate::{Engine, Manifest, TestDb};

/// The schema the tables live in.
pub const SCHEMA: &str = "many";

/// Table `i`'s name in [`SCHEMA`].
pub fn table(i: usize) -> String {
    format!("t{i:04}")
}

/// Creates `n` tables of `rows` rows each (`id int PRIMARY KEY, v text`),
/// in one statement so PostgreSQL does the loop.
pub async fn create(db: &TestDb, n: usize, rows: usize) {
    db.exec(&format!(
        "CREATE SCHEMA {SCHEMA};
         DO $$ BEGIN
           FOR i IN 0..{last} LOOP
             EXECUTE format('CREATE TABLE {SCHEMA}.%I (id int PRIMARY KEY, v text)', 't' || lpad(i::text, 4, '0'));
             EXECUTE format('INSERT INTO {SCHEMA}.%I SELECT g, ''row '' || g FROM generate_series(1, {rows}) g',
                            't' || lpad(i::text, 4, '0'));
           END LOOP;
         END $$;",
        last = n.saturating_sub(1),
    ))
    .await;
}

/// One row more in every table, all in one transaction, with `id`.
pub async fn touch_all(db: &TestDb, n: usize, id: i64) {
    db.exec(&format!(
        "DO $$ BEGIN
           FOR i IN 0..{last} LOOP
             EXECUTE format('INSERT INTO {SCHEMA}.%I VALUES ({id}, ''touched'')', 't' || lpad(i::text, 4, '0'));
           END LOOP;
         END $$;",
        last = n.saturating_sub(1),
    ))
    .await;
}

/// The connector: the whole schema, snapshots under `initial` at
/// `concurrent` tables at once, every change also on `<prefix>.all`.
pub fn manifest(
    name: &str,
    db: &TestDb,
    bootstrap: &str,
    prefix: &str,
    concurrent: u32,
) -> Manifest {
    let listeners = format!(
        "    - tables: {{schemas: [{SCHEMA}]}}
      targets:
        - {{}}
        - {{topic: {prefix}.all}}"
    );
    Manifest::new(name, db, bootstrap, prefix, &listeners).spec(|s| {
        s.snapshot.mode = pgkafka_crds::SnapshotMode::Initial;
        s.snapshot.max_concurrent_tables = concurrent;
    })
}

/// What was seen while waiting for every snapshot to end.
#[derive(Debug, Default)]
pub struct SnapshotWatch {
    /// The most tables `running` at one look at `/status`.
    pub most_running: usize,
    /// Tables done at the end.
    pub done: usize,
    /// Rows sent by the snapshots.
    pub rows: u64,
    /// From the first look to the last table done.
    pub elapsed: Duration,
}

/// Looks at `/status` every 20 ms until `n` tables are done (or `limit`).
pub fn watch_snapshots(engine: &Engine, n: usize, limit: Duration) -> SnapshotWatch {
    let start = Instant::now();
    let mut watch = SnapshotWatch::default();
    let mut last: Option<EngineStatus> = None;
    while start.elapsed() < limit {
        if let Some(status) = engine.status() {
            let tables = &status.snapshot.tables;
            let running = tables
                .iter()
                .filter(|t| t.state == SnapshotState::Running)
                .count();
            watch.most_running = watch.most_running.max(running);
            watch.done = tables
                .iter()
                .filter(|t| t.state == SnapshotState::Done)
                .count();
            watch.rows = tables.iter().map(|t| t.rows).sum();
            last = Some(status);
            if watch.done >= n {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    watch.elapsed = start.elapsed();
    assert!(
        watch.done >= n,
        "{} of {n} tables snapshotted after {limit:?}: {:?}",
        watch.done,
        last.map(|s| s
            .snapshot
            .tables
            .into_iter()
            .filter(|t| t.state != SnapshotState::Done)
            .take(5)
            .collect::<Vec<_>>())
    );
    watch
}
