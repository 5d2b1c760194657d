//! Whole-transaction messages. Changes for a group accumulate while a
//! transaction is decoded; at its commit each group with changes becomes one
//! message, or several numbered parts when it would exceed the broker's
//! message size:
//!
//! `{"txId":…,"commitLsn":"0/…","commitTime":"…Z","part":1,"parts":1,"changes":[…]}`
//!
//! Every part carries the same `txId` and the part count, so a consumer
//! reassembles a transaction by concatenating `changes` of parts 1..=parts.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;

use super::route::Group;
use crate::event::{Record, TxHeaders, TxInfo};

/// Room left in a message for the wrapper, key and headers.
const WRAPPER_BYTES: usize = 1024;

/// A group holding more than this for one transaction fails the engine
/// rather than the machine: such a transaction needs a bigger limit or no
/// grouping.
pub const GROUP_BUFFER_LIMIT: usize = 512 * 1024 * 1024;

/// A group's buffer outgrew [`GROUP_BUFFER_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction {xid} holds more than {limit} bytes of changes for group {group:?}; whole-transaction messages are built in memory, so send this table's changes per change (drop sendAsTransaction/group) or split the transaction")]
pub struct GroupTooLarge {
    /// The group.
    pub group: String,
    /// The transaction.
    pub xid: u32,
    /// The limit.
    pub limit: usize,
}

/// Changes of the current transaction, per group.
#[derive(Debug)]
pub struct GroupBuffers {
    groups: Vec<Group>,
    changes: Vec<Vec<Bytes>>,
    bytes: Vec<usize>,
    max_message_bytes: usize,
}

impl GroupBuffers {
    /// Buffers for `groups`; messages stay under `max_message_bytes`.
    pub fn new(groups: Vec<Group>, max_message_bytes: usize) -> Self {
        let n = groups.len();
        GroupBuffers {
            groups,
            changes: vec![Vec::new(); n],
            bytes: vec![0; n],
            max_message_bytes,
        }
    }

    /// Adds one change envelope to group `g`.
    pub fn push(&mut self, g: usize, change: Bytes, xid: u32) -> Result<(), GroupTooLarge> {
        self.bytes[g] += change.len();
        self.changes[g].push(change);
        if self.bytes[g] > GROUP_BUFFER_LIMIT {
            return Err(GroupTooLarge {
                group: self.groups[g].name.clone(),
                xid,
                limit: GROUP_BUFFER_LIMIT,
            });
        }
        Ok(())
    }

    /// Drops what was buffered (a transaction that did not complete).
    pub fn clear(&mut self) {
        self.changes.iter_mut().for_each(Vec::clear);
        self.bytes.iter_mut().for_each(|b| *b = 0);
    }

    /// At commit: one message (or parts) per group that received changes.
    pub fn flush(&mut self, tx: &TxInfo, headers: &Arc<TxHeaders>, out: &mut Vec<Record>) {
        let budget = self.max_message_bytes.saturating_sub(WRAPPER_BYTES).max(1);
        let key = Bytes::from(tx.xid.to_string());
        for (g, group) in self.groups.iter().enumerate() {
            let changes = std::mem::take(&mut self.changes[g]);
            self.bytes[g] = 0;
            if changes.is_empty() {
                continue;
            }
            let parts = split(&changes, budget);
            let n = parts.len();
            for (i, range) in parts.into_iter().enumerate() {
                let payload = wrap(tx, i + 1, n, &changes[range]);
                out.push(Record {
                    topic: Arc::clone(&group.topic),
                    topic_index: group.topic_index,
                    key: Some(key.clone()),
                    payload: Some(payload),
                    tx: Arc::clone(headers),
                    part: Some((i + 1, n)),
                });
            }
        }
    }
}

/// Consecutive ranges of `changes` whose sizes (plus separators) stay within
/// `budget`; a change larger than the budget gets a part of its own.
fn split(changes: &[Bytes], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut parts = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, c) in changes.iter().enumerate() {
        let add = c.len() + 1;
        if i > start && size + add > budget {
            parts.push(start..i);
            (start, size) = (i, 0);
        }
        size += add;
    }
    parts.push(start..changes.len());
    parts
}

fn wrap(tx: &TxInfo, part: usize, parts: usize, changes: &[Bytes]) -> Bytes {
    let size: usize = changes.iter().map(|c| c.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 160);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"txId\":{},\"commitLsn\":\"{}\",\"commitTime\":\"{}\",\"part\":{part},\"parts\":{parts},\"changes\":[",
        tx.xid,
        tx.commit_lsn,
        commit_time(tx)
    );
    for (i, c) in changes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(c);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
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
        );
        for c in [r#"{"n":1}"#, r#"{"n":2}"#] {
            buffers.push(0, Bytes::from(c), 77).expect("room");
        }
        let headers = Arc::new(TxHeaders::new(Lsn(0x10), 77));
        let mut out = Vec::new();
        buffers.flush(&tx(), &headers, &mut out);
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
        out.clear();
        buffers.flush(&tx(), &headers, &mut out);
        assert!(out.is_empty(), "flush empties the buffers");
    }

    proptest! {
        #[test]
        fn parts_stay_under_the_limit_and_reassemble(sizes in proptest::collection::vec(1usize..300, 1..60), limit in 1100usize..3000) {
            let mut buffers = GroupBuffers::new(vec![group()], limit);
            let changes: Vec<String> = sizes.iter().enumerate().map(|(i, n)| format!("{{\"i\":{i},\"p\":\"{}\"}}", "x".repeat(*n))).collect();
            for c in &changes {
                buffers.push(0, Bytes::from(c.clone()), 77).expect("room");
            }
            let mut out = Vec::new();
            buffers.flush(&tx(), &Arc::new(TxHeaders::new(Lsn(0x10), 77)), &mut out);
            let mut joined = Vec::new();
            for (i, r) in out.iter().enumerate() {
                let payload = r.payload.as_deref().expect("value");
                prop_assert!(payload.len() <= limit, "part of {} bytes over {limit}", payload.len());
                let v: serde_json::Value = serde_json::from_slice(payload).expect("JSON");
                prop_assert_eq!(v["part"].as_u64(), Some(i as u64 + 1));
                prop_assert_eq!(v["parts"].as_u64(), Some(out.len() as u64));
                joined.extend(v["changes"].as_array().expect("array").iter().cloned());
            }
            let expected: Vec<serde_json::Value> = changes.iter().map(|c| serde_json::from_str(c).expect("JSON")).collect();
            prop_assert_eq!(joined, expected);
        }
    }
}
