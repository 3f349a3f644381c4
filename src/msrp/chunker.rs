//! Splits one MSRP message of known or still unknown size into SEND chunks (RFC 4975 §5.1, §7.1).
//!
//! The chunker only plans: it says which bytes the next chunk carries and what its `Byte-Range`
//! and end-line flag are. Every planned range has end `*` (an interruptible chunk: FreeSWITCH's
//! receiver breaks on large chunks with a numeric end) and total `*` while the size is unknown.
//!
//! While the total is unknown one byte is held back, so that the message can always end with a
//! data-carrying `$` chunk when the total becomes final — never with an empty one.

use super::message::{ByteRange, Continuation};

/// Default chunk body size: Kamailio 5.6's MSRP relay rejects frames with more than 10240 body
/// bytes (see the project's Kamailio notes).
pub const DEFAULT_CHUNK_BYTES: usize = 10240;

/// One planned SEND chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    /// 1-based position of the chunk's first byte in the message (the `Byte-Range` start).
    pub start: u64,
    /// Body length in bytes (0 for an empty message or an abort chunk).
    pub len: u64,
    /// The `Byte-Range` header to send.
    pub byte_range: ByteRange,
    /// The end-line flag.
    pub continuation: Continuation,
}

impl ChunkPlan {
    /// The chunk's body as 0-based offsets into the message.
    pub fn body(&self) -> std::ops::Range<u64> {
        let from = self.start - 1;
        from..from + self.len
    }
}

/// Plans the chunks of one message.
#[derive(Debug, Clone)]
pub struct Chunker {
    chunk_bytes: u64,
    /// 0-based offset of the next byte to plan.
    next: u64,
    /// Bytes of the message available so far.
    available: u64,
    /// The final total, once known.
    total: Option<u64>,
    /// A `$` or `#` chunk has been planned: nothing more will be.
    finished: bool,
}

impl Chunker {
    /// A chunker producing bodies of at most `chunk_bytes` (at least 1) bytes.
    pub fn new(chunk_bytes: usize) -> Chunker {
        Chunker {
            chunk_bytes: chunk_bytes.max(1) as u64,
            next: 0,
            available: 0,
            total: None,
            finished: false,
        }
    }

    /// The message now holds `len` bytes; `complete` says `len` is its final size. Lengths never
    /// shrink: a smaller `len` is ignored, and once the total is final it does not change.
    pub fn data_available(&mut self, len: u64, complete: bool) {
        if self.total.is_some() {
            return;
        }
        self.available = self.available.max(len);
        if complete {
            self.total = Some(self.available);
        }
    }

    /// Starts the message at 0-based `offset` instead of 0: the peer holds the bytes before it
    /// already (a resumed transfer, RFC 5547 `a=file-range`). Only before the first chunk;
    /// the chunks' `Byte-Range` then starts at `offset + 1`, total unchanged.
    pub fn skip_to(&mut self, offset: u64) {
        if self.next == 0 && !self.finished {
            self.next = offset;
        }
    }

    /// The final total, once known.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Bytes planned so far (the 0-based offset of the next chunk).
    pub fn planned(&self) -> u64 {
        self.next
    }

    /// Whether the last (`$`) or an abort (`#`) chunk has been planned.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether [`Chunker::next_chunk`] would return a chunk now.
    pub fn has_next(&self) -> bool {
        (!self.finished && self.sendable() > 0) || self.empty_message_pending()
    }

    fn empty_message_pending(&self) -> bool {
        !self.finished && self.total == Some(0)
    }

    /// Bytes that may go out now: all of them once the total is known, all but one before.
    fn sendable(&self) -> u64 {
        match self.total {
            Some(t) => t - self.next,
            None => self.available.saturating_sub(1).saturating_sub(self.next),
        }
    }

    /// Body length of the chunk [`Chunker::next_chunk`] would plan now (0 when none, or for an
    /// empty message).
    pub fn next_len(&self) -> u64 {
        if self.finished {
            return 0;
        }
        self.sendable().min(self.chunk_bytes)
    }

    /// Plans the next chunk, or `None` when no byte can go out yet (or the message is finished).
    pub fn next_chunk(&mut self) -> Option<ChunkPlan> {
        if self.finished {
            return None;
        }
        if self.empty_message_pending() {
            // An empty message: one chunk `1-0/0` without body.
            self.finished = true;
            return Some(ChunkPlan {
                start: 1,
                len: 0,
                byte_range: ByteRange {
                    start: 1,
                    end: Some(0),
                    total: Some(0),
                },
                continuation: Continuation::End,
            });
        }
        let len = self.sendable().min(self.chunk_bytes);
        if len == 0 {
            return None;
        }
        let start = self.next + 1;
        self.next += len;
        let last = self.total == Some(self.next);
        if last {
            self.finished = true;
        }
        Some(ChunkPlan {
            start,
            len,
            byte_range: ByteRange {
                start,
                end: None,
                total: self.total,
            },
            continuation: if last {
                Continuation::End
            } else {
                Continuation::More
            },
        })
    }

    /// Plans an abort chunk at the next byte (`Byte-Range: n-*/total`, no body, `#`), or `None`
    /// when the message already ended (its `$` chunk was planned) or nothing was sent yet.
    pub fn abort_chunk(&mut self) -> Option<ChunkPlan> {
        if self.finished || self.next == 0 {
            self.finished = true;
            return None;
        }
        self.finished = true;
        let start = self.next + 1;
        Some(ChunkPlan {
            start,
            len: 0,
            byte_range: ByteRange {
                start,
                end: None,
                total: self.total,
            },
            continuation: Continuation::Abort,
        })
    }
}

/// A set of byte ranges (0-based, half-open), kept sorted and merged. Used to track which parts of
/// a message were acknowledged, reported or received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// Number of disjoint ranges held.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Adds `r`, merging it with the ranges it touches or overlaps. Empty ranges are ignored.
    pub fn insert(&mut self, r: std::ops::Range<u64>) {
        if r.start >= r.end {
            return;
        }
        // First range whose end reaches r.start (touching counts), last whose start <= r.end.
        let lo = self.ranges.partition_point(|&(_, e)| e < r.start);
        let hi = self.ranges.partition_point(|&(s, _)| s <= r.end);
        if lo == hi {
            self.ranges.insert(lo, (r.start, r.end));
            return;
        }
        let start = self.ranges[lo].0.min(r.start);
        let end = self.ranges[hi - 1].1.max(r.end);
        self.ranges.drain(lo + 1..hi);
        self.ranges[lo] = (start, end);
    }

    /// Whether every byte of `r` is in the set (true for an empty `r`).
    pub fn contains(&self, r: std::ops::Range<u64>) -> bool {
        if r.start >= r.end {
            return true;
        }
        let i = self.ranges.partition_point(|&(_, e)| e <= r.start);
        self.ranges
            .get(i)
            .is_some_and(|&(s, e)| s <= r.start && r.end <= e)
    }

    /// Whether any byte of `r` is in the set.
    pub fn overlaps(&self, r: std::ops::Range<u64>) -> bool {
        if r.start >= r.end {
            return false;
        }
        let i = self.ranges.partition_point(|&(_, e)| e <= r.start);
        self.ranges.get(i).is_some_and(|&(s, _)| s < r.end)
    }

    /// The end of the range that starts at 0: how many bytes from the start are in the set.
    pub fn contiguous_prefix(&self) -> u64 {
        match self.ranges.first() {
            Some(&(0, e)) => e,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut Chunker) -> Vec<ChunkPlan> {
        std::iter::from_fn(|| c.next_chunk()).collect()
    }

    #[test]
    fn known_total_splits_into_chunks_with_star_end() {
        let mut c = Chunker::new(10);
        c.data_available(25, true);
        let plans = drain(&mut c);
        assert_eq!(plans.len(), 3);
        assert_eq!(
            plans[0].byte_range,
            ByteRange {
                start: 1,
                end: None,
                total: Some(25)
            }
        );
        assert_eq!(plans[0].continuation, Continuation::More);
        assert_eq!(plans[1].start, 11);
        assert_eq!(plans[1].body(), 10..20);
        assert_eq!(plans[2].start, 21);
        assert_eq!(plans[2].len, 5);
        assert_eq!(plans[2].continuation, Continuation::End);
        assert!(c.finished());
        assert_eq!(c.next_chunk(), None);
    }

    #[test]
    fn unknown_total_holds_back_one_byte_and_ends_with_data() {
        let mut c = Chunker::new(10);
        c.data_available(1, false);
        assert_eq!(c.next_chunk(), None, "the only byte is held back");
        c.data_available(15, false);
        let p = c.next_chunk().unwrap();
        assert_eq!((p.start, p.len, p.byte_range.total), (1, 10, None));
        assert_eq!(p.continuation, Continuation::More);
        let p = c.next_chunk().unwrap();
        assert_eq!((p.start, p.len), (11, 4));
        assert_eq!(c.next_chunk(), None);
        c.data_available(15, true);
        let p = c.next_chunk().unwrap();
        assert_eq!((p.start, p.len, p.byte_range.total), (15, 1, Some(15)));
        assert_eq!(p.continuation, Continuation::End);
        assert_eq!(c.next_chunk(), None);
    }

    #[test]
    fn empty_message_is_one_empty_end_chunk() {
        let mut c = Chunker::new(10);
        c.data_available(0, true);
        let p = c.next_chunk().unwrap();
        assert_eq!(p.len, 0);
        assert_eq!(p.byte_range.end, Some(0));
        assert_eq!(p.continuation, Continuation::End);
        assert_eq!(c.next_chunk(), None);
    }

    #[test]
    fn abort_marks_next_byte() {
        let mut c = Chunker::new(10);
        c.data_available(100, false);
        c.next_chunk().unwrap();
        let a = c.abort_chunk().unwrap();
        assert_eq!(a.start, 11);
        assert_eq!(a.len, 0);
        assert_eq!(a.continuation, Continuation::Abort);
        assert_eq!(a.byte_range.end, None);
        assert_eq!(c.next_chunk(), None);
        assert_eq!(c.abort_chunk(), None);
    }

    #[test]
    fn no_abort_after_end_or_before_start() {
        let mut c = Chunker::new(10);
        assert_eq!(c.abort_chunk(), None);
        let mut c = Chunker::new(10);
        c.data_available(5, true);
        c.next_chunk().unwrap();
        assert_eq!(c.abort_chunk(), None);
    }

    #[test]
    fn total_is_final_and_lengths_never_shrink() {
        let mut c = Chunker::new(4);
        c.data_available(8, false);
        c.data_available(3, false);
        c.data_available(8, true);
        c.data_available(100, true);
        assert_eq!(c.total(), Some(8));
        let plans = drain(&mut c);
        assert_eq!(plans.iter().map(|p| p.len).sum::<u64>(), 8);
    }
    #[test]
    fn range_set_merges_and_answers_queries() {
        let mut s = RangeSet::new();
        s.insert(10..20);
        s.insert(30..40);
        assert_eq!(s.len(), 2);
        assert_eq!(s.contiguous_prefix(), 0);
        assert!(s.contains(12..20));
        assert!(!s.contains(12..21));
        assert!(s.overlaps(19..30));
        assert!(!s.overlaps(20..30));
        s.insert(20..30); // touches both: one range
        assert_eq!(s.len(), 1);
        assert!(s.contains(10..40));
        s.insert(0..5);
        s.insert(5..10);
        assert_eq!(s.contiguous_prefix(), 40);
        s.insert(50..60);
        s.insert(45..70);
        s.insert(3..3);
        assert_eq!(s.len(), 2);
        assert!(s.contains(45..70));
        assert!(!s.contains(40..45));
    }

    #[test]
    fn range_set_matches_a_bitmap_model() {
        // Deterministic pseudo-random inserts checked against a plain bitmap.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut s = RangeSet::new();
        let mut bits = [false; 200];
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = x % 200;
            let b = (a + (x >> 32) % 12).min(200);
            s.insert(a..b);
            for bit in bits.iter_mut().take(b as usize).skip(a as usize) {
                *bit = true;
            }
            let (qa, qb) = ((x >> 8) % 200, ((x >> 8) % 200 + (x >> 40) % 9).min(200));
            let all = (qa..qb).all(|i| bits[i as usize]);
            let any = (qa..qb).any(|i| bits[i as usize]);
            assert_eq!(s.contains(qa..qb), all);
            assert_eq!(s.overlaps(qa..qb), any);
            let prefix = bits.iter().take_while(|b| **b).count() as u64;
            assert_eq!(s.contiguous_prefix(), prefix);
        }
    }
}
