//! The LSN tracker: the flush LSN reported to PostgreSQL is the highest commit
//! end LSN such that every record of every transaction at or below it has been
//! acknowledged by Kafka. Transactions (and idle positions from keepalives)
//! are kept in stream order; deliveries may complete in any order.

use std::collections::VecDeque;

use crate::lsn::Lsn;

#[derive(Debug)]
struct Entry {
    seq: u64,
    /// Where a restart resumes once this entry is done; `None` while open.
    end: Option<Lsn>,
    pending: usize,
    /// A position from a keepalive, not a transaction.
    idle_mark: bool,
}

/// In-flight work and the acknowledged position.
#[derive(Debug, Default)]
pub struct Tracker {
    entries: VecDeque<Entry>,
    next_seq: u64,
    flushed: Lsn,
    records: usize,
    bytes: usize,
}

/// The tracker was told about work it never handed out: a bug, never input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("acknowledgement for unknown transaction sequence {0}")]
pub struct UnknownSeq(pub u64);

impl Tracker {
    /// Starts from a position already confirmed (the slot's, or a previous
    /// session's).
    pub fn new(flushed: Lsn) -> Self {
        Tracker {
            flushed,
            ..Tracker::default()
        }
    }

    /// Opens a transaction; its records are tagged with the returned sequence.
    pub fn begin(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Entry {
            seq,
            end: None,
            pending: 0,
            idle_mark: false,
        });
        seq
    }

    /// A record of transaction `seq` was handed to Kafka.
    pub fn sent(&mut self, seq: u64, bytes: usize) -> Result<(), UnknownSeq> {
        self.entry(seq)?.pending += 1;
        self.records += 1;
        self.bytes += bytes;
        Ok(())
    }

    /// Transaction `seq` committed; a restart after it resumes at `end`.
    pub fn commit(&mut self, seq: u64, end: Lsn) -> Result<(), UnknownSeq> {
        self.entry(seq)?.end = Some(end);
        Ok(())
    }

    /// Kafka acknowledged one record of transaction `seq`.
    pub fn delivered(&mut self, seq: u64, bytes: usize) -> Result<(), UnknownSeq> {
        let entry = self.entry(seq)?;
        entry.pending = entry.pending.checked_sub(1).ok_or(UnknownSeq(seq))?;
        self.records -= 1;
        self.bytes = self.bytes.saturating_sub(bytes);
        Ok(())
    }

    /// The server says everything before `wal_end` was sent. Between
    /// transactions that position is safe to confirm once all earlier work is
    /// acknowledged: it lets an idle or fully filtered slot free its WAL.
    pub fn idle_at(&mut self, wal_end: Lsn) {
        if self.in_transaction() {
            return;
        }
        let last_end = self
            .entries
            .back()
            .and_then(|e| e.end)
            .unwrap_or(self.flushed);
        if wal_end <= last_end {
            return;
        }
        match self.entries.back_mut() {
            // Keepalives repeat while idle: keep one mark, not one per keepalive.
            Some(e) if e.idle_mark => e.end = Some(wal_end),
            _ => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.entries.push_back(Entry {
                    seq,
                    end: Some(wal_end),
                    pending: 0,
                    idle_mark: true,
                });
            }
        }
    }

    /// Pops every finished transaction at the front; returns the new flush LSN
    /// when it moved.
    pub fn advance(&mut self) -> Option<Lsn> {
        let before = self.flushed;
        while let Some(front) = self.entries.front() {
            match front.end {
                Some(end) if front.pending == 0 => {
                    debug_assert!(end >= self.flushed || front.idle_mark, "LSN went backwards");
                    self.flushed = self.flushed.max(end);
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
        (self.flushed > before).then_some(self.flushed)
    }

    /// The confirmed position: everything before it is in Kafka.
    pub fn flushed(&self) -> Lsn {
        self.flushed
    }

    /// Whether a transaction is open (begun, not committed).
    pub fn in_transaction(&self) -> bool {
        self.entries.back().is_some_and(|e| e.end.is_none())
    }

    /// Records sent and not yet acknowledged.
    pub fn in_flight_records(&self) -> usize {
        self.records
    }

    /// Bytes of those records.
    pub fn in_flight_bytes(&self) -> usize {
        self.bytes
    }

    fn entry(&mut self, seq: u64) -> Result<&mut Entry, UnknownSeq> {
        let front = self.entries.front().map_or(self.next_seq, |e| e.seq);
        let index = seq.checked_sub(front).ok_or(UnknownSeq(seq))?;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
            .filter(|e| e.seq == seq)
            .ok_or(UnknownSeq(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn waits_for_every_record_of_the_oldest_transaction() {
        let mut t = Tracker::new(Lsn(10));
        let a = t.begin();
        t.sent(a, 5).expect("a");
        t.sent(a, 5).expect("a");
        t.commit(a, Lsn(100)).expect("a");
        let b = t.begin();
        t.sent(b, 1).expect("b");
        t.commit(b, Lsn(200)).expect("b");
        t.delivered(b, 1).expect("b");
        assert_eq!(t.advance(), None, "b is done but a is not");
        t.delivered(a, 5).expect("a");
        assert_eq!(t.advance(), None);
        t.delivered(a, 5).expect("a");
        assert_eq!(t.advance(), Some(Lsn(200)));
        assert_eq!((t.in_flight_records(), t.in_flight_bytes()), (0, 0));
    }

    #[test]
    fn open_transaction_blocks_and_empty_ones_pass() {
        let mut t = Tracker::new(Lsn(0));
        let a = t.begin();
        t.commit(a, Lsn(50)).expect("a");
        let b = t.begin();
        t.idle_at(Lsn(500));
        assert_eq!(t.advance(), Some(Lsn(50)));
        t.sent(b, 1).expect("b");
        t.delivered(b, 1).expect("b");
        assert_eq!(t.advance(), None, "b has not committed");
        t.commit(b, Lsn(60)).expect("b");
        t.idle_at(Lsn(70));
        t.idle_at(Lsn(80));
        assert_eq!(t.advance(), Some(Lsn(80)));
        t.idle_at(Lsn(75));
        assert_eq!(t.advance(), None, "never backwards");
    }

    #[test]
    fn unknown_or_extra_acknowledgements_are_errors() {
        let mut t = Tracker::new(Lsn(0));
        assert_eq!(t.delivered(3, 1), Err(UnknownSeq(3)));
        let a = t.begin();
        assert_eq!(t.delivered(a, 1), Err(UnknownSeq(a)));
    }

    proptest! {
        /// Whatever the delivery order, the flush LSN never passes a
        /// transaction with an unacknowledged record, and ends at the last one.
        #[test]
        fn flush_never_passes_unacknowledged_work(
            sizes in proptest::collection::vec(0usize..4, 1..20),
            order in any::<proptest::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let mut t = Tracker::new(Lsn(0));
            let mut outstanding = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let seq = t.begin();
                for _ in 0..*n {
                    t.sent(seq, 1).expect("sent");
                    outstanding.push((seq, Lsn(10 * (i as u64 + 1))));
                }
                t.commit(seq, Lsn(10 * (i as u64 + 1))).expect("commit");
            }
            let mut rng = seed.wrapping_add(order.index(1000) as u64);
            while !outstanding.is_empty() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let (seq, _) = outstanding.swap_remove((rng >> 33) as usize % outstanding.len());
                t.delivered(seq, 1).expect("delivered");
                t.advance();
                if let Some(min_pending) = outstanding.iter().map(|(_, end)| *end).min() {
                    prop_assert!(t.flushed() < min_pending);
                }
            }
            t.advance();
            prop_assert_eq!(t.flushed(), Lsn(10 * sizes.len() as u64));
        }
    }
}
