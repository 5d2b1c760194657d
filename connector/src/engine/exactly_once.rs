//! The session's exactly-once steps: resume after the last Kafka checkpoint,
//! commit Kafka transactions at source-transaction boundaries with a
//! checkpoint record, and finish cleanly on stop.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Session;
use crate::ack::tracker::Tracker;
use crate::error::Error;
use crate::lsn::Lsn;
use crate::sink::kafka::{KafkaSink, SinkEvent, CHECKPOINT_SEQ};
use crate::sink::transactions::{
    checkpoint_topic, checkpoint_value, due, read_checkpoint, transactional_id,
};
use crate::sink::{Record, TxHeaders};

/// Checkpoint records count in no per-topic metric.
const NO_TOPIC_INDEX: usize = 0xFFFF;

impl Session<'_> {
    /// Fences older producers, then starts after what Kafka committed:
    /// returns the LSN to start replication at.
    pub(super) async fn eos_start(&mut self, sink: &KafkaSink, start: Lsn) -> Result<Lsn, Error> {
        let topic = checkpoint_topic(self.cfg);
        sink.ensure_topics(&[Arc::from(topic.as_str())]).await?;
        sink.init_transactions().await?;
        let id = transactional_id(self.cfg);
        let config = sink.base_config().clone();
        let checkpoint = tokio::task::spawn_blocking(move || read_checkpoint(&config, &topic, &id))
            .await
            .map_err(|e| Error::Internal(format!("reading checkpoints: {e}")))??;
        match checkpoint {
            Some(ck) if ck > self.tracker.flushed() => {
                tracing::info!(checkpoint = %ck, slot = %self.tracker.flushed(), "resuming after the last transaction Kafka committed");
                self.tracker = Tracker::new(ck);
                self.eos_committed = ck;
                Ok(ck)
            }
            _ => Ok(start),
        }
    }

    /// Commits the open Kafka transaction when it is due.
    pub(super) async fn eos_commit_if_due(
        &mut self,
        sink: &KafkaSink,
        events: &mut mpsc::UnboundedReceiver<SinkEvent>,
    ) -> Result<(), Error> {
        let ready = self.kafka_txn.as_ref().is_some_and(|open| {
            due(
                open,
                self.tracker.in_transaction(),
                self.tracker.in_flight_records(),
            )
        });
        if ready {
            self.eos_commit(sink, events).await?;
        }
        Ok(())
    }

    /// Writes the checkpoint of the last complete source transaction into the
    /// open Kafka transaction and commits it.
    async fn eos_commit(
        &mut self,
        sink: &KafkaSink,
        events: &mut mpsc::UnboundedReceiver<SinkEvent>,
    ) -> Result<(), Error> {
        let Some(open) = self.kafka_txn.as_ref() else {
            return Ok(());
        };
        let Some(covers) = open.covers else {
            return Ok(());
        };
        let checkpoint = Record {
            topic: Arc::from(checkpoint_topic(self.cfg)),
            topic_index: NO_TOPIC_INDEX,
            key: Some(Bytes::from(transactional_id(self.cfg))),
            payload: Bytes::from(checkpoint_value(covers)),
            tx: Arc::new(TxHeaders::new(covers, 0)),
            part: None,
        };
        self.send(&checkpoint, CHECKPOINT_SEQ, sink, events).await?;
        if let Err(e) = sink.commit_transaction().await {
            // Best effort: the next session's producer fences it anyway.
            let _ = sink.abort_transaction().await;
            return Err(e);
        }
        self.kafka_txn = None;
        self.eos_committed = self.eos_committed.max(covers);
        Ok(())
    }

    /// On stop: commit what is complete, abort the rest (it is replayed).
    pub(super) async fn eos_finish(
        &mut self,
        sink: &KafkaSink,
        events: &mut mpsc::UnboundedReceiver<SinkEvent>,
    ) -> Result<(), Error> {
        if self.kafka_txn.is_none() {
            return Ok(());
        }
        if self.tracker.in_transaction() {
            // A source transaction is half sent: none of it may count.
            if let Some(open) = &mut self.kafka_txn {
                open.covers = None;
            }
            sink.abort_transaction().await?;
            self.kafka_txn = None;
            return Ok(());
        }
        self.eos_commit(sink, events).await
    }
}
