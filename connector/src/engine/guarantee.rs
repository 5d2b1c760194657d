//! The delivery guarantee, one type: what "safe to confirm" means.
//!
//! - At least once: a position is safe once every record before it was
//!   acknowledged (acks=all); after a crash the unconfirmed tail is sent again.
//! - Exactly once: records go in Kafka transactions holding whole source
//!   transactions, each ending with a checkpoint record of the slot position
//!   it covers; a position is safe once its Kafka transaction committed. A
//!   restart reads the last committed checkpoint and starts after it, so
//!   PostgreSQL skips what Kafka already holds even when the slot was not
//!   told yet. A commit runs in the background: it waits for the broker to
//!   take every record in flight, and meanwhile the stream goes on, the new
//!   records held (counted in flight, so the caps still bound them) and
//!   sent in the next Kafka transaction once the commit resolved.

use std::sync::Arc;
use std::time::Instant;

use pgkafka_crds::{DeliveryGuarantee, PgKafkaConnectorSpec};

use super::acks::{Acks, Output};
use crate::error::Error;
use crate::event::{Record, TxHeaders};
use crate::lsn::Lsn;
use crate::sink::transactions::{
    checkpoint_topic, checkpoint_value, due, read_checkpoint, transactional_id, OpenTransaction,
};
use crate::sink::SinkError;

/// The connector's delivery guarantee and its state.
pub(super) enum Guarantee {
    /// Safe once acknowledged.
    AtLeastOnce,
    /// Safe once committed in a Kafka transaction.
    ExactlyOnce(ExactlyOnce),
}

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

impl Guarantee {
    /// The guarantee `spec` asks for; everything before `flushed` is done.
    pub fn new(spec: &PgKafkaConnectorSpec, flushed: Lsn) -> Self {
        match spec.kafka.delivery_guarantee {
            DeliveryGuarantee::AtLeastOnce => Guarantee::AtLeastOnce,
            DeliveryGuarantee::ExactlyOnce => Guarantee::ExactlyOnce(ExactlyOnce {
                id: transactional_id(spec),
                topic: checkpoint_topic(spec),
                open: None,
                committed: flushed,
                committing: None,
            }),
        }
    }

    /// The producer's transactional id, when it needs one.
    pub fn transactional_id(&self) -> Option<String> {
        match self {
            Guarantee::AtLeastOnce => None,
            Guarantee::ExactlyOnce(e) => Some(e.id.clone()),
        }
    }

    /// Prepares the new producer; returns where replication starts. Under
    /// exactly-once: fences older producers, then starts after what Kafka
    /// committed when that is ahead of the slot.
    pub async fn start(
        &mut self,
        out: &Output,
        acks: &mut Acks<'_>,
        start: Lsn,
    ) -> Result<Lsn, Error> {
        let Guarantee::ExactlyOnce(e) = self else {
            return Ok(start);
        };
        out.sink
            .ensure_topics(&[Arc::from(e.topic.as_str())])
            .await?;
        out.sink.init_transactions().await?;
        let (config, topic, id) = (
            out.sink.base_config().clone(),
            e.topic.clone(),
            e.id.clone(),
        );
        let checkpoint = tokio::task::spawn_blocking(move || read_checkpoint(&config, &topic, &id))
            .await
            .map_err(|source| crate::sink::SinkError::Blocking {
                what: "reading checkpoints",
                source,
            })??;
        match checkpoint {
            Some(ck) if ck > acks.flushed() => {
                tracing::info!(checkpoint = %ck, slot = %acks.flushed(), "resuming after the last transaction Kafka committed");
                acks.restart_at(ck);
                e.committed = ck;
                Ok(ck)
            }
            _ => Ok(start),
        }
    }

    /// Before a record of a source transaction is sent: under exactly-once,
    /// a Kafka transaction must be open.
    fn before_send(&mut self, out: &Output) -> Result<(), Error> {
        if let Guarantee::ExactlyOnce(e) = self {
            if e.open.is_none() {
                out.sink.begin_transaction()?;
                e.open = Some(OpenTransaction {
                    started: Instant::now(),
                    covers: None,
                });
            }
        }
        Ok(())
    }

    /// Hands one record of source transaction `seq` over: to the producer,
    /// or, while a commit is under way, to the records it holds.
    pub async fn send(
        &mut self,
        out: &mut Output,
        acks: &mut Acks<'_>,
        record: &Record,
        seq: u64,
    ) -> Result<(), Error> {
        if let Guarantee::ExactlyOnce(ExactlyOnce {
            committing: Some(c),
            ..
        }) = self
        {
            acks.sent(record, seq)?;
            c.held.push((record.clone(), seq));
            return Ok(());
        }
        self.before_send(out)?;
        out.send(acks, record, seq).await
    }

    /// A background commit is under way.
    pub fn is_committing(&self) -> bool {
        matches!(
            self,
            Guarantee::ExactlyOnce(ExactlyOnce {
                committing: Some(_),
                ..
            })
        )
    }

    /// Resolves when the background commit did (never without one).
    pub async fn commit_resolved(&mut self) -> Result<(), Error> {
        match self {
            Guarantee::ExactlyOnce(ExactlyOnce {
                committing: Some(c),
                ..
            }) => match (&mut c.task).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(kafka)) => Err(SinkError::Kafka(kafka).into()),
                Err(source) => Err(SinkError::Blocking {
                    what: "commit_transaction",
                    source,
                }
                .into()),
            },
            _ => std::future::pending().await,
        }
    }

    /// After [`Guarantee::commit_resolved`]: on success the position is
    /// safe and the held records open the next Kafka transaction.
    pub async fn after_commit(
        &mut self,
        result: Result<(), Error>,
        out: &mut Output,
        acks: &mut Acks<'_>,
    ) -> Result<(), Error> {
        let Guarantee::ExactlyOnce(e) = self else {
            return Ok(());
        };
        let Some(c) = e.committing.take() else {
            return Ok(());
        };
        if let Err(err) = result {
            // Best effort: the next session's producer fences it anyway.
            let _ = out.sink.abort_transaction().await;
            return Err(err);
        }
        e.committed = e.committed.max(c.covers);
        if c.held.is_empty() && c.held_covers.is_none() {
            return Ok(());
        }
        out.sink.begin_transaction()?;
        e.open = Some(OpenTransaction {
            started: Instant::now(),
            covers: c.held_covers,
        });
        for (record, seq) in &c.held {
            out.send_counted(acks, record, *seq).await?;
        }
        Ok(())
    }

    /// Waits for a background commit, if any, and sends what it held.
    pub async fn settle(&mut self, out: &mut Output, acks: &mut Acks<'_>) -> Result<(), Error> {
        if self.is_committing() {
            let result = self.commit_resolved().await;
            self.after_commit(result, out, acks).await?;
        }
        Ok(())
    }

    /// A source transaction ending at `end_lsn` was handed over completely.
    pub async fn source_committed(
        &mut self,
        end_lsn: Lsn,
        out: &mut Output,
        acks: &mut Acks<'_>,
    ) -> Result<(), Error> {
        if let Guarantee::ExactlyOnce(e) = self {
            if let Some(c) = &mut e.committing {
                c.held_covers = Some(end_lsn);
                return Ok(());
            }
            if let Some(open) = &mut e.open {
                open.covers = Some(end_lsn);
                e.commit_if_due(out, acks).await?;
            }
        }
        Ok(())
    }

    /// A Kafka transaction is open (it may become due with time).
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            Guarantee::ExactlyOnce(ExactlyOnce { open: Some(_), .. })
        )
    }

    /// Commits the open Kafka transaction when it is due.
    pub async fn commit_if_due(
        &mut self,
        out: &mut Output,
        acks: &mut Acks<'_>,
    ) -> Result<(), Error> {
        match self {
            Guarantee::AtLeastOnce => Ok(()),
            Guarantee::ExactlyOnce(e) => e.commit_if_due(out, acks).await,
        }
    }

    /// The position that is safe to confirm to PostgreSQL.
    pub fn safe_position(&mut self, acks: &Acks<'_>) -> Lsn {
        match self {
            Guarantee::AtLeastOnce => acks.flushed(),
            Guarantee::ExactlyOnce(e) => {
                if e.open.is_none() && e.committing.is_none() && acks.in_flight_records() == 0 {
                    // Nothing uncommitted is outstanding: idle positions are safe too.
                    e.committed = e.committed.max(acks.flushed());
                }
                acks.flushed().min(e.committed)
            }
        }
    }

    /// On stop: commit what is complete, abort the rest (it is replayed).
    pub async fn finish(&mut self, out: &mut Output, acks: &mut Acks<'_>) -> Result<(), Error> {
        self.settle(out, acks).await?;
        let Guarantee::ExactlyOnce(e) = self else {
            return Ok(());
        };
        if e.open.is_none() {
            return Ok(());
        }
        if acks.in_transaction() {
            // A source transaction is half sent: none of it may count.
            e.open = None;
            out.sink.abort_transaction().await?;
            return Ok(());
        }
        e.commit(out, acks).await?;
        self.settle(out, acks).await
    }
}

impl ExactlyOnce {
    async fn commit_if_due(&mut self, out: &mut Output, acks: &mut Acks<'_>) -> Result<(), Error> {
        let ready = self.committing.is_none()
            && self
                .open
                .as_ref()
                .is_some_and(|open| due(open, acks.in_transaction()));
        if ready {
            self.commit(out, acks).await?;
        }
        Ok(())
    }

    /// Writes the checkpoint of the last complete source transaction into
    /// the open Kafka transaction and starts committing it in the
    /// background ([`Guarantee::commit_resolved`]).
    async fn commit(&mut self, out: &mut Output, acks: &mut Acks<'_>) -> Result<(), Error> {
        let Some(covers) = self.open.as_ref().and_then(|open| open.covers) else {
            return Ok(());
        };
        let payload = checkpoint_value(covers);
        let headers = TxHeaders::new(covers, 0);
        out.send_checkpoint(acks, &self.topic, self.id.as_bytes(), &payload, &headers)
            .await?;
        self.open = None;
        self.committing = Some(Committing {
            covers,
            task: out.sink.commit_transaction_task(),
            held: Vec::new(),
            held_covers: None,
        });
        Ok(())
    }
}
