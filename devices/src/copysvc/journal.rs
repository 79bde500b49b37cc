//! Asynchronous remote copy journals (DESIGN.md §7): the primary array's per-group
//! journal of writes with sequence numbers, and the secondary array's applier that
//! applies them strictly in sequence order, so that the secondary always holds a prefix
//! of the primary's write order. Sans-IO.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use fcsim_fabric::Wwn;

/// One journalled write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Group sequence number (from 1).
    pub seq: u64,
    /// The pair it belongs to (primary side).
    pub pair: String,
    /// The secondary LU.
    pub secondary: Wwn,
    pub lba: u64,
    pub blocks: u64,
    pub data: Bytes,
}

/// The primary side of a consistency group's journal.
#[derive(Debug, Clone)]
pub struct Journal {
    /// Entries not yet acknowledged by the secondary, in sequence order.
    entries: VecDeque<JournalEntry>,
    bytes: u64,
    pub capacity: u64,
    /// Last sequence number handed out.
    pub last_seq: u64,
    /// Last sequence number sent.
    sent: u64,
    /// Every entry up to here is acknowledged by the secondary.
    pub acked: u64,
    /// Acknowledged out of order, above `acked`.
    acked_above: std::collections::BTreeSet<u64>,
    /// High-water mark of the bytes held.
    pub peak_bytes: u64,
}

/// Why an append was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalFull;

impl Journal {
    pub fn new(capacity: u64) -> Journal {
        Journal {
            entries: VecDeque::new(),
            bytes: 0,
            capacity,
            last_seq: 0,
            sent: 0,
            acked: 0,
            acked_above: Default::default(),
            peak_bytes: 0,
        }
    }

    /// Appends a write and returns its sequence number; a full journal refuses it.
    pub fn append(
        &mut self,
        pair: &str,
        secondary: Wwn,
        lba: u64,
        blocks: u64,
        data: Bytes,
    ) -> Result<u64, JournalFull> {
        let len = data.len() as u64;
        if self.bytes + len > self.capacity {
            return Err(JournalFull);
        }
        self.last_seq += 1;
        self.bytes += len;
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        self.entries.push_back(JournalEntry {
            seq: self.last_seq,
            pair: pair.to_string(),
            secondary,
            lba,
            blocks,
            data,
        });
        Ok(self.last_seq)
    }

    /// The next entry to send, if `window` entries are not already in flight.
    pub fn next_to_send(&mut self, window: u64) -> Option<JournalEntry> {
        if self.sent.saturating_sub(self.acked) >= window {
            return None;
        }
        let first = self.entries.front()?.seq;
        let idx = usize::try_from(self.sent + 1 - first).ok()?;
        let e = self.entries.get(idx)?.clone();
        self.sent = e.seq;
        Some(e)
    }

    /// The secondary holds entry `seq`.
    pub fn ack(&mut self, seq: u64) {
        if seq <= self.acked {
            return;
        }
        self.acked_above.insert(seq);
        while self.acked_above.remove(&(self.acked + 1)) {
            self.acked += 1;
        }
        while self.entries.front().is_some_and(|e| e.seq <= self.acked) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.data.len() as u64;
            }
        }
    }

    /// Empties the journal (the group suspends): the entries not yet acknowledged, for
    /// the bitmap.
    pub fn discard(&mut self) -> Vec<JournalEntry> {
        let out: Vec<JournalEntry> = self.entries.drain(..).collect();
        self.bytes = 0;
        self.sent = self.last_seq;
        self.acked = self.last_seq;
        self.acked_above.clear();
        out
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether every entry up to `seq` is on the secondary.
    pub fn drained_to(&self) -> u64 {
        self.acked
    }
}

/// The secondary side of a group: entries received, applied in sequence order. The
/// payload `T` is whatever one entry carries: `(lun, lba, data)` for a journal, a whole
/// record for the relay standby (`crate::relay::Standby`).
#[derive(Debug, Clone)]
pub struct JournalApplier<T = (u16, u64, Bytes)> {
    /// Last sequence number applied.
    pub applied: u64,
    /// Received ahead of a gap.
    pending: BTreeMap<u64, T>,
}

impl<T> Default for JournalApplier<T> {
    fn default() -> Self {
        Self::after(0)
    }
}

impl<T> JournalApplier<T> {
    /// An applier whose next entry is `seq + 1`.
    pub fn after(seq: u64) -> Self {
        JournalApplier {
            applied: seq,
            pending: BTreeMap::new(),
        }
    }

    /// Receives entry `seq`; returns the entries now applicable, in order. Duplicates (a
    /// retransmission) are ignored.
    pub fn receive(&mut self, seq: u64, entry: T) -> Vec<(u64, T)> {
        if seq <= self.applied {
            return Vec::new();
        }
        self.pending.insert(seq, entry);
        let mut out = Vec::new();
        while let Some(entry) = self.pending.remove(&(self.applied + 1)) {
            self.applied += 1;
            out.push((self.applied, entry));
        }
        out
    }

    /// Whether entry `seq` was received: applied, or held behind a gap.
    pub fn has(&self, seq: u64) -> bool {
        seq <= self.applied || self.pending.contains_key(&seq)
    }

    /// Entries held behind a gap (dropped at takeover: they are not part of a prefix).
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Takeover: whatever is not applicable in order is discarded.
    pub fn takeover(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_journal_refuses() {
        let mut j = Journal::new(1024);
        assert!(
            j.append("p", Wwn(1), 0, 1, Bytes::from(vec![0; 512]))
                .is_ok()
        );
        assert!(
            j.append("p", Wwn(1), 1, 1, Bytes::from(vec![0; 512]))
                .is_ok()
        );
        assert_eq!(
            j.append("p", Wwn(1), 2, 1, Bytes::from(vec![0; 512])),
            Err(JournalFull)
        );
        let e = j.next_to_send(8).unwrap();
        j.ack(e.seq);
        assert_eq!(j.bytes(), 512);
        assert!(
            j.append("p", Wwn(1), 2, 1, Bytes::from(vec![0; 512]))
                .is_ok()
        );
    }

    #[test]
    fn out_of_order_acks_free_a_prefix_only() {
        let mut j = Journal::new(1 << 20);
        for i in 0..4 {
            j.append("p", Wwn(1), i, 1, Bytes::from(vec![0; 512]))
                .unwrap();
        }
        let seqs: Vec<u64> = std::iter::from_fn(|| j.next_to_send(8).map(|e| e.seq)).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        j.ack(2);
        j.ack(3);
        assert_eq!(j.drained_to(), 0);
        assert_eq!(j.len(), 4);
        j.ack(1);
        assert_eq!(j.drained_to(), 3);
        assert_eq!(j.len(), 1);
    }

    #[test]
    fn window_limits_flight() {
        let mut j = Journal::new(1 << 20);
        for i in 0..4 {
            j.append("p", Wwn(1), i, 1, Bytes::new()).unwrap();
        }
        assert!(j.next_to_send(2).is_some());
        assert!(j.next_to_send(2).is_some());
        assert!(j.next_to_send(2).is_none());
    }

    #[test]
    fn applier_applies_in_order_and_ignores_duplicates() {
        let mut a: JournalApplier = JournalApplier::default();
        assert!(a.receive(2, (0, 2, Bytes::new())).is_empty());
        let out = a.receive(1, (0, 1, Bytes::new()));
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(a.receive(1, (0, 1, Bytes::new())).is_empty());
        a.receive(4, (0, 4, Bytes::new()));
        assert!(a.has(2) && a.has(4) && !a.has(3));
        assert_eq!(a.takeover(), 1);
        assert_eq!(a.applied, 2);
    }
}
