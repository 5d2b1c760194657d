//! Exactly-once delivery: records go in Kafka transactions holding whole
//! source transactions, each ending with a checkpoint record of the slot
//! position it covers; a position is safe once its Kafka transaction
//! committed. A restart reads the last committed checkpoint and starts after
//! it, so PostgreSQL skips what Kafka already holds even when the slot was
//! not told yet.
//!
//! A commit runs in the background: it waits for the broker to take every
//! record in flight, and meanwhile the stream goes on, the new records held
//! (counted in flight, so the caps still bound them) and sent in the next
//! Kafka transaction once the commit resolved.

use std::time::Instant;

use pgkafka_crds::PgKafkaConnectorSpec;

use super::Delivery;
use crate::error::Error;
use crate::event::{Record, TxHeaders};
use crate::lsn::Lsn;
use crate::sink::kafka::KafkaSink;
use crate::sink::topics::ensure_compacted;
use crate::sink::transactions::{
    checkpoint_topic, checkpoint_value, due, read_checkpoint, transactional_id, OpenTransaction,
};
use crate::sink::SinkError;

/// Exactly-once state of one session.
pub(super) struct ExactlyOnce {
    /// The transactional id (one per source slot).
    id: String,
    /// The compacted checkpoint topic.
    topic: String,
    /// The Kafka transaction being filled.
    open: Option<OpenTransaction>,
    /// Everything before it is committed in Kafka.
    committed: Lsn,
    /// A Kafka transaction being committed in the background.
    committing: Option<Committing>,
}

/// A commit under way, and what waits for it.
struct Committing {
    /// The position it makes safe.
    covers: Lsn,
    /// librdkafka's commit, on a blocking thread.
    task: tokio::task::JoinHandle<Result<(), rdkafka::error::KafkaError>>,
    /// Records of later source transactions, counted in flight.
    held: Vec<(Record, u64)>,
    /// End of the last source transaction completed since.
    held_covers: Option<Lsn>,
}

impl ExactlyOnce {
    /// Nothing open; everything before `flushed` is committed.
    pub fn new(spec: &PgKafkaConnectorSpec, flushed: Lsn) -> Self {
        ExactlyOnce {
            id: transactional_id(spec),
            topic: checkpoint_topic(spec),
            open: None,
            committed: flushed,
            committing: None,
        }
    }

    /// The producer's transactional id.
    pub fn transactional_id(&self) -> String {
        self.id.clone()
    }

    /// Fences older producers and reads the last committed checkpoint;
    /// a checkpoint ahead of what is known committed is taken as committed.
    /// The order matters: fencing first completes or aborts whatever an
    /// older producer left in doubt, so the checkpoint read is final.
    pub async fn start(&mut self, sink: &KafkaSink) -> Result<Option<Lsn>, Error> {
        ensure_compacted(sink.base_config(), &[self.topic.as_str()]).await?;
        sink.init_transactions().await?;
        let (config, topic, id) = (
            sink.base_config().clone(),
            self.topic.clone(),
            self.id.clone(),
        );
        let checkpoint = tokio::task::spawn_blocking(move || read_checkpoint(&config, &topic, &id))
            .await
            .map_err(|source| SinkError::Blocking {
                what: "reading checkpoints",
                source,
            })??;
        if let Some(ck) = checkpoint {
            self.committed = self.committed.max(ck);
        }
        Ok(checkpoint)
    }

    /// A background commit is under way.
    pub fn is_committing(&self) -> bool {
        self.committing.is_some()
    }

    /// A Kafka transaction is open (it may become due with time).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// While a commit is under way, keeps `record` for the next Kafka
    /// transaction (true); else false: it goes to the producer now.
    pub fn hold(&mut self, record: &Record, seq: u64) -> bool {
        match &mut self.committing {
            Some(c) => {
                c.held.push((record.clone(), seq));
                true
            }
            None => false,
        }
    }

    /// Opens a Kafka transaction unless one is open.
    pub fn ensure_open(&mut self, sink: &KafkaSink) -> Result<(), Error> {
        if self.open.is_none() {
            sink.begin_transaction()?;
            self.open = Some(OpenTransaction {
                started: Instant::now(),
                covers: None,
            });
        }
        Ok(())
    }

    /// A source transaction ending at `end_lsn` was handed over completely:
    /// the open (or the next) Kafka transaction covers it.
    pub fn source_committed(&mut self, end_lsn: Lsn) {
        if let Some(c) = &mut self.committing {
            c.held_covers = Some(end_lsn);
        } else if let Some(open) = &mut self.open {
            open.covers = Some(end_lsn);
        }
    }

    /// The safe position given what is `acknowledged`: never past what
    /// Kafka committed, except idle positions with nothing outstanding.
    pub fn safe_position(&mut self, acknowledged: Lsn, in_flight: usize) -> Lsn {
        if self.open.is_none() && self.committing.is_none() && in_flight == 0 {
            self.committed = self.committed.max(acknowledged);
        }
        acknowledged.min(self.committed)
    }
}

/// Resolves when the background commit did (never without one).
pub(super) async fn commit_resolved(e: &mut Option<ExactlyOnce>) -> Result<(), Error> {
    let Some(Committing { task, .. }) = e.as_mut().and_then(|e| e.committing.as_mut()) else {
        return std::future::pending().await;
    };
    match task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(kafka)) => Err(SinkError::Kafka(kafka).into()),
        Err(source) => Err(SinkError::Blocking {
            what: "commit_transaction",
            source,
        }
        .into()),
    }
}

impl Delivery<'_> {
    /// Commits the open Kafka transaction when it is due: it holds only
    /// complete source transactions and is old enough.
    pub(super) async fn commit_if_due(&mut self) -> Result<(), Error> {
        let in_source_transaction = self.tracker.in_transaction();
        let ready = self.exactly_once.as_ref().is_some_and(|e| {
            e.committing.is_none()
                && e.open
                    .as_ref()
                    .is_some_and(|open| due(open, in_source_transaction))
        });
        if ready {
            self.commit_open().await?;
        }
        Ok(())
    }

    /// Writes the checkpoint of the last complete source transaction into
    /// the open Kafka transaction and starts committing it in the
    /// background.
    async fn commit_open(&mut self) -> Result<(), Error> {
        let Some(e) = &self.exactly_once else {
            return Ok(());
        };
        let Some(covers) = e.open.as_ref().and_then(|open| open.covers) else {
            return Ok(());
        };
        let (topic, id) = (e.topic.clone(), e.id.clone());
        let payload = checkpoint_value(covers);
        let headers = TxHeaders::new(covers, 0);
        self.queue(&topic, |sink| {
            sink.send_checkpoint(&topic, id.as_bytes(), &payload, &headers)
        })
        .await?;
        let task = self.sink.commit_transaction_task();
        if let Some(e) = &mut self.exactly_once {
            e.open = None;
            e.committing = Some(Committing {
                covers,
                task,
                held: Vec::new(),
                held_covers: None,
            });
        }
        Ok(())
    }

    /// After a background commit resolved: on success its position is
    /// safe and the held records open the next Kafka transaction.
    pub(super) async fn after_commit(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        let Some(e) = &mut self.exactly_once else {
            return Ok(());
        };
        let Some(c) = e.committing.take() else {
            return Ok(());
        };
        // A commit that failed or timed out is never retried nor aborted
        // here (KAFKA-18579: a timed-out commit may still complete on the
        // broker). The session ends, this producer is dropped, and the next
        // one's init_transactions bumps the epoch, which settles the
        // transaction either way before the checkpoint is read.
        result?;
        e.committed = e.committed.max(c.covers);
        if c.held.is_empty() && c.held_covers.is_none() {
            return Ok(());
        }
        self.sink.begin_transaction()?;
        e.open = Some(OpenTransaction {
            started: Instant::now(),
            covers: c.held_covers,
        });
        for (record, seq) in &c.held {
            self.produce(record, *seq).await?;
        }
        Ok(())
    }

    /// Waits for a background commit, if any, and sends what it held.
    async fn settle(&mut self) -> Result<(), Error> {
        if self
            .exactly_once
            .as_ref()
            .is_some_and(ExactlyOnce::is_committing)
        {
            let result = commit_resolved(&mut self.exactly_once).await;
            self.after_commit(result).await?;
        }
        Ok(())
    }

    /// On stop: commit what is complete, abort the rest (it is replayed).
    pub(super) async fn finish_transactions(&mut self) -> Result<(), Error> {
        self.settle().await?;
        if !self.exactly_once.as_ref().is_some_and(ExactlyOnce::is_open) {
            return Ok(());
        }
        if self.tracker.in_transaction() {
            // A source transaction is half sent: none of it may count.
            if let Some(e) = &mut self.exactly_once {
                e.open = None;
            }
            self.sink.abort_transaction().await?;
            return Ok(());
        }
        self.commit_open().await?;
        self.settle().await
    }
}
