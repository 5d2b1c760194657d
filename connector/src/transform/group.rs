//! Whole-transaction messages. Changes for a group accumulate while a
//! transaction is decoded; at its commit each group with changes becomes one
//! message, or several numbered parts when it would exceed the broker's
//! message size:
//!
//! `{"txId":…,"commitLsn":"0/…","commitTime":"…Z","part":1,"parts":1,"changes":[…]}`
//!
//! Every part carries the same `txId` and the part count, so a consumer
//! reassembles a transaction by concatenating `changes` of parts 1..=parts.
//!
//! Memory is bounded whatever the transaction's size: all groups keep at
//! most [`GROUP_MEMORY_BUDGET`] bytes in memory, the group that crosses it
//! goes on in a spill file (`spill.rs`), and at the commit the parts are
//! built one at a time as the session can send them.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;

use super::route::Group;
use super::spill::{SpillError, SpillFile};
use crate::event::{Record, TxHeaders, TxInfo};

/// Room left in a message for the wrapper, key and headers.
const WRAPPER_BYTES: usize = 1024;

/// Bytes of changes all groups keep in memory for one transaction; beyond
/// it, the group that crosses it goes on in a spill file.
pub(crate) const GROUP_MEMORY_BUDGET: usize = 8 * 1024 * 1024;

/// One group's changes of the current transaction, cut into parts (each
/// under the message size) as they arrive, so the part count is known at
/// the commit however the changes are stored.
#[derive(Debug, Default)]
struct Buffer {
    /// Per part: how many changes and how many bytes (with separators).
    parts: Vec<(usize, usize)>,
    /// In memory until the budget is crossed.
    memory: Vec<Bytes>,
    /// Then in a spill file (everything that was in memory too).
    file: Option<SpillFile>,
}

impl Buffer {
    fn count(&mut self, len: usize, budget: usize) {
        let add = len + 1;
        match self.parts.last_mut() {
            Some((n, size)) if *size + add <= budget || *n == 0 => {
                *n += 1;
                *size += add;
            }
            _ => self.parts.push((1, add)),
        }
    }

    fn memory_bytes(&self) -> usize {
        self.memory.iter().map(Bytes::len).sum()
    }
}

/// The commit being written out, part by part.
#[derive(Debug)]
struct Flushing {
    tx: TxInfo,
    headers: Arc<TxHeaders>,
    key: Bytes,
    group: usize,
    part: usize,
    /// Changes of the group's memory already written.
    taken: usize,
}

/// Changes of the current transaction, per group.
#[derive(Debug)]
pub struct GroupBuffers {
    groups: Vec<Group>,
    buffers: Vec<Buffer>,
    max_message_bytes: usize,
    memory_budget: usize,
    in_memory: usize,
    /// Bytes spilled since last asked (a metric).
    spilled: u64,
    flushing: Option<Flushing>,
}

impl GroupBuffers {
    /// Buffers for `groups`; messages stay under `max_message_bytes`, and
    /// all groups together hold at most `memory_budget` bytes in memory.
    pub fn new(groups: Vec<Group>, max_message_bytes: usize, memory_budget: usize) -> Self {
        let n = groups.len();
        GroupBuffers {
            groups,
            buffers: (0..n).map(|_| Buffer::default()).collect(),
            max_message_bytes,
            memory_budget,
            in_memory: 0,
            spilled: 0,
            flushing: None,
        }
    }

    /// Buffers for groups added since (a table matched while streaming
    /// whose targets name a new group): `groups` is every group, old ones
    /// first.
    pub fn follow(&mut self, groups: &[Group]) {
        for group in groups.iter().skip(self.groups.len()) {
            self.groups.push(group.clone());
            self.buffers.push(Buffer::default());
        }
    }

    fn part_budget(&self) -> usize {
        self.max_message_bytes.saturating_sub(WRAPPER_BYTES).max(1)
    }

    /// Adds one change envelope to group `g`; past the memory budget the
    /// group's changes move to a spill file.
    pub fn push(&mut self, g: usize, change: Bytes, xid: u32) -> Result<(), SpillError> {
        let budget = self.part_budget();
        let buffer = &mut self.buffers[g];
        buffer.count(change.len(), budget);
        if let Some(file) = buffer.file.as_mut() {
            self.spilled += change.len() as u64;
            return file.append(&change);
        }
        self.in_memory += change.len();
        buffer.memory.push(change);
        if self.in_memory > self.memory_budget {
            let mut file = SpillFile::create()?;
            for c in &buffer.memory {
                file.append(c)?;
            }
            let moved = buffer.memory_bytes();
            tracing::info!(xid, group = %self.groups[g].name, bytes = moved, "transaction over the memory budget: spilling its group to disk");
            self.spilled += moved as u64;
            self.in_memory -= moved;
            buffer.memory = Vec::new();
            buffer.file = Some(file);
        }
        Ok(())
    }

    /// Bytes written to spill files since last asked.
    pub fn take_spilled_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.spilled)
    }

    /// Drops what was buffered (a transaction that did not complete).
    pub fn clear(&mut self) {
        self.buffers.iter_mut().for_each(|b| *b = Buffer::default());
        self.in_memory = 0;
        self.flushing = None;
    }

    /// At commit: from now on [`GroupBuffers::next_part`] gives one message
    /// (or numbered parts) per group that received changes.
    pub fn commit(&mut self, tx: &TxInfo, headers: &Arc<TxHeaders>) -> Result<(), SpillError> {
        for buffer in &mut self.buffers {
            if let Some(file) = buffer.file.as_mut() {
                file.rewind()?;
            }
        }
        self.flushing = Some(Flushing {
            tx: *tx,
            headers: Arc::clone(headers),
            key: Bytes::from(tx.xid.to_string()),
            group: 0,
            part: 0,
            taken: 0,
        });
        Ok(())
    }

    /// The next part of the committed transaction's messages; `None` when
    /// all are out (the buffers are then empty).
    pub fn next_part(&mut self) -> Result<Option<Record>, SpillError> {
        loop {
            let Some(f) = self.flushing.as_mut() else {
                return Ok(None);
            };
            let Some(buffer) = self.buffers.get_mut(f.group) else {
                self.clear();
                return Ok(None);
            };
            let Some(&(count, bytes)) = buffer.parts.get(f.part) else {
                *buffer = Buffer::default();
                (f.group, f.part, f.taken) = (f.group + 1, 0, 0);
                continue;
            };
            let parts = buffer.parts.len();
            let mut out = Vec::with_capacity(bytes + 160);
            wrap_head(&mut out, &f.tx, f.part + 1, parts);
            for i in 0..count {
                if i > 0 {
                    out.push(b',');
                }
                match buffer.file.as_mut() {
                    Some(file) => file.read_into(&mut out)?,
                    None => out.extend_from_slice(&buffer.memory[f.taken + i]),
                }
            }
            out.extend_from_slice(b"]}");
            f.taken += count;
            f.part += 1;
            let group = &self.groups[f.group];
            return Ok(Some(Record {
                topic: Arc::clone(&group.topic),
                topic_index: group.topic_index,
                key: Some(f.key.clone()),
                payload: Some(Bytes::from(out)),
                tx: Arc::clone(&f.headers),
                part: Some((f.part, parts)),
                moved: None,
                extras: None,
            }));
        }
    }
}

/// `{"txId":…,"commitLsn":…,"commitTime":…,"part":…,"parts":…,"changes":[`
fn wrap_head(out: &mut Vec<u8>, tx: &TxInfo, part: usize, parts: usize) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"txId\":{},\"commitLsn\":\"{}\",\"commitTime\":\"{}\",\"part\":{part},\"parts\":{parts},\"changes\":[",
        tx.xid,
        tx.commit_lsn,
        commit_time(tx)
    );
}

fn commit_time(tx: &TxInfo) -> String {
    chrono::DateTime::from_timestamp_millis(tx.commit_ms())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;
    use proptest::prelude::*;

    fn group() -> Group {
        Group {
            name: "shop".into(),
            topic: Arc::from("tx"),
            topic_index: 3,
        }
    }

    fn tx() -> TxInfo {
        TxInfo {
            xid: 77,
            commit_lsn: Lsn(0x10),
            commit_time_us: 1_500,
            last_commit_lsn: None,
        }
    }

    /// Every part of the committed transaction.
    fn drain(buffers: &mut GroupBuffers) -> Vec<Record> {
        buffers
            .commit(&tx(), &Arc::new(TxHeaders::new(Lsn(0x10), 77)))
            .expect("commit");
        std::iter::from_fn(|| buffers.next_part().expect("part")).collect()
    }

    #[test]
    fn one_message_per_group_with_changes_in_order() {
        let mut buffers = GroupBuffers::new(
            vec![
                group(),
                Group {
                    name: "idle".into(),
                    ..group()
                },
            ],
            1_000_000,
            GROUP_MEMORY_BUDGET,
        );
        for c in [r#"{"n":1}"#, r#"{"n":2}"#] {
            buffers.push(0, Bytes::from(c), 77).expect("room");
        }
        let out = drain(&mut buffers);
        assert_eq!(out.len(), 1, "the idle group sends nothing");
        let v: serde_json::Value =
            serde_json::from_slice(out[0].payload.as_deref().expect("value")).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"txId": 77, "commitLsn": "0/10", "commitTime": "2000-01-01T00:00:00.001Z",
                               "part": 1, "parts": 1, "changes": [{"n": 1}, {"n": 2}]})
        );
        assert_eq!(
            (out[0].key.as_deref(), out[0].topic_index),
            (Some(&b"77"[..]), 3)
        );
        assert!(
            drain(&mut buffers).is_empty(),
            "a commit empties the buffers"
        );
        assert_eq!(buffers.take_spilled_bytes(), 0, "nothing spilled");
    }

    proptest! {
        #[test]
        fn parts_stay_under_the_limit_and_reassemble(
            sizes in proptest::collection::vec(1usize..300, 1..60),
            limit in 1100usize..3000,
            memory in prop::sample::select(vec![0usize, 500, GROUP_MEMORY_BUDGET]),
        ) {
            // memory 0 spills from the first change, 500 part-way through.
            let mut buffers = GroupBuffers::new(vec![group()], limit, memory);
            let changes: Vec<String> = sizes.iter().enumerate().map(|(i, n)| format!("{{\"i\":{i},\"p\":\"{}\"}}", "x".repeat(*n))).collect();
            for c in &changes {
                buffers.push(0, Bytes::from(c.clone()), 77).expect("room");
            }
            let total: usize = changes.iter().map(String::len).sum();
            let spilled = buffers.take_spilled_bytes() as usize;
            let expect_spill = total > memory;
            prop_assert_eq!(spilled > 0, expect_spill, "{} of {} bytes spilled", spilled, total);
            let out = drain(&mut buffers);
            let mut joined = Vec::new();
            for (i, r) in out.iter().enumerate() {
                let payload = r.payload.as_deref().expect("value");
                prop_assert!(payload.len() <= limit, "part of {} bytes over {limit}", payload.len());
                let v: serde_json::Value = serde_json::from_slice(payload).expect("JSON");
                prop_assert_eq!(v["part"].as_u64(), Some(i as u64 + 1));
                prop_assert_eq!(v["parts"].as_u64(), Some(out.len() as u64));
                prop_assert_eq!(r.part, Some((i + 1, out.len())));
                joined.extend(v["changes"].as_array().expect("array").iter().cloned());
            }
            let expected: Vec<serde_json::Value> = changes.iter().map(|c| serde_json::from_str(c).expect("JSON")).collect();
            prop_assert_eq!(joined, expected);
        }
    }
}
