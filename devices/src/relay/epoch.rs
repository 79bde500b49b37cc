//! The emb 7 sync buffer (seed 002 §3.4, §4.7 "Delayed write", Figs 24–27; invariants
//! D1, D3, D6, D8): the writes of one source's open epoch, held off the media until the
//! restart point that closes the epoch, then committed together; discarded at failover.
//!
//! The [`super::Standby`] feeds it in sequence order, so "complete before commit" (D5)
//! and "reflects in order" (D4) are the in-order applier's job, not this buffer's.
//! Overlapping writes within an epoch are not coalesced on arrival: the commit applies
//! them in sequence (issue-ID) order, so the later write wins on the overlapping bytes
//! only, whatever the arrival order (D6, seed §7.6 E11).

use super::Record;

/// One source's open epoch.
#[derive(Debug, Clone, Default)]
pub struct EpochBuffer {
    /// The epoch's writes, in sequence order.
    held: Vec<Record>,
    /// Their data bytes.
    bytes: u64,
}

impl EpochBuffer {
    /// Holds a write of the open epoch (the delayed write's "receive complete", D8).
    pub fn hold(&mut self, write: Record) {
        self.bytes += write.header.len;
        self.held.push(write);
    }

    /// The restart point closing the epoch landed: its writes, in the order to apply.
    pub fn commit(&mut self) -> Vec<Record> {
        self.bytes = 0;
        std::mem::take(&mut self.held)
    }

    /// Failover: the open epoch is dropped (D3). Returns the writes discarded.
    pub fn discard(&mut self) -> usize {
        self.bytes = 0;
        std::mem::take(&mut self.held).len()
    }

    /// Data bytes held.
    pub fn held_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{Kind, RecordId, SourceId};
    use super::*;

    fn w(seq: u64) -> Record {
        Record::new(
            RecordId {
                source: SourceId(0),
                seq,
            },
            Kind::Write { lun: 0, lba: 0 },
            Bytes::from(vec![0; 8]),
        )
    }

    #[test]
    fn an_epoch_commits_in_order_or_is_discarded_whole() {
        let mut e = EpochBuffer::default();
        e.hold(w(1));
        e.hold(w(2));
        assert_eq!(e.held_bytes(), 16);
        let c = e.commit();
        assert_eq!(c.iter().map(|r| r.id().seq).collect::<Vec<_>>(), vec![1, 2]);
        assert!(e.is_empty());
        e.hold(w(3));
        assert_eq!(e.discard(), 1);
        assert!(e.is_empty() && e.held_bytes() == 0);
    }
}
