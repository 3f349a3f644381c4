//! Spool read-ahead of the delivery connections, bounded (issue 11).
//!
//! A delivery reads the spool a block at a time (many chunks' bodies in one positioned read)
//! and sends its chunks as the MSRP window lets them go. A block read beyond what the window
//! lets go now stays in memory while the delivery waits for responses: with thousands of
//! deliveries waiting at once (10,000 concurrent deliveries of a 1 MiB file) those blocks were
//! most of the engine's memory, about 120 KiB per waiting delivery.
//!
//! Two rules bound it. A block is never longer than the chunk being sent plus what the window
//! lets go after it, so a delivery that waits for responses holds no block. And the blocks that
//! deliveries hold (read, not yet all handed to their out queue) count against one engine-wide
//! budget, `spool_read_ahead_bytes`: when a block does not fit, the delivery reads just the
//! chunk it sends now, which is handed over at once and so is not read-ahead. What the out
//! queues hold is bounded per delivery apart from this (`OUT_LIMIT` in the delivery), and is
//! written as soon as the socket takes it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The engine's account of read-ahead blocks held by its deliveries.
#[derive(Debug)]
pub struct ReadAhead {
    budget: u64,
    held: AtomicU64,
    peak: AtomicU64,
}

impl ReadAhead {
    /// An account allowing `budget` bytes of blocks held at once (`spool_read_ahead_bytes`).
    pub fn new(budget: u64) -> Arc<ReadAhead> {
        Arc::new(ReadAhead {
            budget,
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        })
    }

    /// Bytes of blocks held now, all deliveries together.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The most [`ReadAhead::held`] ever was.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// A delivery's share, empty until it reads a block.
    pub fn lease(self: &Arc<Self>) -> Lease {
        Lease {
            account: self.clone(),
            held: 0,
        }
    }

    /// Takes `n` bytes if they fit in the budget.
    fn take(&self, n: u64) -> bool {
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h + n <= self.budget).then_some(h + n)
            });
        match taken {
            Ok(before) => {
                self.peak.fetch_max(before + n, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn give_back(&self, n: u64) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What one delivery holds of the budget: its current block's length, given back when the block
/// is used up or replaced, and when the delivery ends.
#[derive(Debug)]
pub struct Lease {
    account: Arc<ReadAhead>,
    held: u64,
}

impl Lease {
    /// How many bytes to read for the next block, which starts with a chunk of `chunk` bytes:
    /// `want` (the delivery's choice: whole chunks, no further than the spool holds) cut to the
    /// chunk plus the whole chunks that `room` (what the window lets go after this chunk)
    /// allows, and taken from the budget; when it does not fit, `chunk`. The previous block is
    /// given back first.
    pub fn block_len(&mut self, want: u64, chunk: u64, room: u64) -> u64 {
        self.release();
        let chunk = chunk.max(1);
        let len = want.min(chunk + room / chunk * chunk).max(chunk);
        if len > chunk && self.account.take(len) {
            self.held = len;
            len
        } else {
            chunk
        }
    }

    /// The block was used up (or dropped): its bytes no longer count.
    pub fn release(&mut self) {
        if self.held > 0 {
            self.account.give_back(self.held);
            self.held = 0;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: u64 = 10_240;
    const BLOCK: u64 = 12 * CHUNK;

    #[test]
    fn a_block_goes_no_further_than_the_window_lets_go() {
        let ra = ReadAhead::new(u64::MAX);
        let mut l = ra.lease();
        // Room for 24 more chunks: the whole block.
        assert_eq!(l.block_len(BLOCK, CHUNK, 24 * CHUNK), BLOCK);
        // Room for 3 chunks and a bit: 4 chunks.
        assert_eq!(l.block_len(BLOCK, CHUNK, 3 * CHUNK + 100), 4 * CHUNK);
        // No room after this chunk (the window is full): just the chunk, nothing held.
        assert_eq!(l.block_len(BLOCK, CHUNK, CHUNK - 1), CHUNK);
        assert_eq!(ra.held(), 0);
        // The end of the file: what the delivery asked for, shorter than a chunk multiple.
        assert_eq!(l.block_len(CHUNK + 5, CHUNK, 24 * CHUNK), CHUNK + 5);
        assert_eq!(ra.held(), CHUNK + 5);
        l.release();
        assert_eq!(ra.held(), 0);
    }

    #[test]
    fn many_deliveries_never_hold_more_than_the_budget() {
        let budget = 5 * BLOCK + BLOCK / 2;
        let ra = ReadAhead::new(budget);
        let mut leases: Vec<Lease> = (0..40).map(|_| ra.lease()).collect();
        let mut blocks = 0;
        for l in &mut leases {
            let n = l.block_len(BLOCK, CHUNK, 100 * CHUNK);
            assert!(n == BLOCK || n == CHUNK, "{n}");
            blocks += usize::from(n == BLOCK);
            assert!(ra.held() <= budget);
        }
        // Five blocks fit; every other delivery reads one chunk at a time.
        assert_eq!(blocks, 5);
        assert_eq!(ra.held(), 5 * BLOCK);
        assert_eq!(ra.peak(), 5 * BLOCK);
        // A block given back makes room for another delivery's.
        leases[0].release();
        assert_eq!(leases[39].block_len(BLOCK, CHUNK, 100 * CHUNK), BLOCK);
        // Deliveries that end give back what they held.
        drop(leases);
        assert_eq!(ra.held(), 0);
        assert_eq!(ra.peak(), 5 * BLOCK);
    }

    #[test]
    fn a_zero_budget_reads_chunk_by_chunk() {
        let ra = ReadAhead::new(0);
        let mut l = ra.lease();
        assert_eq!(l.block_len(BLOCK, CHUNK, 100 * CHUNK), CHUNK);
        assert_eq!(ra.peak(), 0);
    }
}
