//! Snapshot rows to records, on as many threads as there are cores: a
//! chunk's rows are split into contiguous parts, each encoded on a scoped
//! thread, and the parts' records joined back in row order, so what is sent
//! is exactly what one thread would have made (a chunk holds each key once:
//! the order per key cannot change). The session's thread then only sends.
//! A listener with an outbox target stays on one thread (its rows may name
//! new topics, which only the owner of the registry may add).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use pgkafka_crds::Action;

use super::Transform;
use crate::decode::relations::RelationCache;
use crate::event::{Change, Datum, Op, Record, Relation, Row, TableShape, TxHeaders, TxInfo};
use crate::lsn::Lsn;
use crate::transform::fanout::{fan_out, record_key, Encoder, RowChange, SharedTopics, TopicSink};
use crate::transform::filter::RowView;
use crate::transform::route::{CompiledRoute, Listener};
use crate::transform::TransformError;

/// Below this many rows a chunk is encoded on the session's thread: a
/// thread costs more than it saves.
const PARALLEL_ROWS: usize = 1024;

/// The threads that encode one chunk: the cores, at most eight.
fn encode_threads() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .min(8)
}

/// What every row of a chunk is encoded with.
struct ChunkContext<'a> {
    listener: &'a Listener,
    route: &'a CompiledRoute,
    relation: &'a Relation,
    encoder: &'a Encoder,
    dropped: &'a HashSet<Bytes>,
    tx: TxInfo,
    headers: &'a Arc<TxHeaders>,
    lsn: Lsn,
    now_ms: i64,
}

impl ChunkContext<'_> {
    /// The records of `rows` (those whose key is not in `dropped`) into
    /// `out`; how many rows were kept.
    fn encode(
        &self,
        rows: &[Vec<Datum>],
        topics: &mut impl TopicSink,
        out: &mut Vec<Record>,
    ) -> Result<u64, TransformError> {
        let mut kept = 0;
        for row in rows {
            let key = record_key(self.relation, Some(row), &self.encoder.context.modes);
            if key.as_ref().is_some_and(|k| self.dropped.contains(k)) {
                continue;
            }
            kept += 1;
            let one = RowChange {
                change: Change {
                    relation: self.relation,
                    op: Op::Read,
                    before: Row::Absent,
                    after: Row::Full(row),
                    lsn: self.lsn,
                    tx: self.tx,
                    order: None,
                },
                row: RowView {
                    action: Action::Insert,
                    old: None,
                    new: Some(row),
                },
                key,
                old_key: None,
                headers: self.headers,
                now_ms: self.now_ms,
            };
            fan_out(
                self.listener,
                self.route,
                &one,
                self.encoder,
                None,
                topics,
                out,
            )?;
        }
        Ok(kept)
    }
}

impl Transform {
    /// Records for the snapshot rows of `shape` read between watermarks,
    /// placed at `lsn` (the high watermark): every row whose key is in
    /// `dropped` (the stream changed it meanwhile and carried the newer
    /// image) is left out.
    /// Targets that opted out and whole-transaction targets get none.
    /// Returns how many rows were kept.
    pub fn snapshot_rows(
        &mut self,
        shape: &TableShape,
        rows: &[Vec<Datum>],
        dropped: &HashSet<Bytes>,
        (lsn, now_ms): (Lsn, i64),
        out: &mut Vec<Record>,
    ) -> Result<u64, TransformError> {
        let Some(l) = self.routes.listener_of(&shape.table) else {
            return Ok(0);
        };
        let relation = RelationCache::describe(0, shape.clone(), &self.policy)?;
        let route = self.compile(l, &relation)?;
        let headers = Arc::new(TxHeaders::new(lsn, 0));
        let listener = &self.routes.listeners[l];
        let chunk = ChunkContext {
            listener,
            route: &route,
            relation: &relation,
            encoder: &self.encoder,
            dropped,
            tx: TxInfo::read_at(lsn, now_ms, self.last_commit),
            headers: &headers,
            lsn,
            now_ms,
        };
        let threads = encode_threads();
        let outbox = listener.targets.iter().any(|t| t.outbox.is_some());
        if outbox || threads < 2 || rows.len() < PARALLEL_ROWS {
            return chunk.encode(rows, &mut self.routes.topics, out);
        }
        let topics = &self.routes.topics;
        let parts: Vec<Result<(u64, Vec<Record>), TransformError>> = std::thread::scope(|s| {
            let handles: Vec<_> = rows
                .chunks(rows.len().div_ceil(threads))
                .map(|part| {
                    let chunk = &chunk;
                    s.spawn(move || {
                        let mut records = Vec::with_capacity(part.len());
                        let kept = chunk.encode(part, &mut SharedTopics(topics), &mut records)?;
                        Ok((kept, records))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(TransformError::Panicked("encoding snapshot rows")))
                })
                .collect()
        });
        let mut kept = 0;
        for part in parts {
            let (n, records) = part?;
            kept += n;
            out.extend(records);
        }
        Ok(kept)
    }
}
