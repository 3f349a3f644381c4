//! Where a message's runs of seven or more dashes end, found once as its bytes arrive, so that
//! sending a chunk does not scan the chunk's body for its own end-line.
//!
//! A chunk's body must not contain `-------<tid>` (RFC 4975 §7.1: the receiver would take it for
//! the end-line). [`super::writer::body_contains_end_line`] answers that by scanning the body:
//! every delivery of the same file scanned the same bytes again (9–11 % of the engine's delivery
//! CPU in the session-5 profile). The index answers it from positions instead: a transaction id
//! never starts with `-` (ours are alphanumeric), so the seven dashes of an end-line are the last
//! seven of a run of dashes, and the id starts at the run's end. Only run ends need to be
//! remembered; binary data almost never has any (a given position starts seven dashes with
//! probability 256⁻⁷), text with `-------` rules has a few per rule.
//!
//! The index holds at most [`DashRuns::MAX_RUNS`] positions (8 bytes each, 64 KiB per file);
//! a file with more (a text of dashed rules, say) stops being indexed and its chunks are scanned
//! as before ([`DashRuns::ends_within`] answers `None`).

use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem;

/// Run ends (positions just past a run of at least seven dashes) of the bytes fed so far.
#[derive(Debug, Clone, Default)]
pub struct DashRuns {
    /// Sorted run ends: each the position of the first byte after the run, a byte that is not a
    /// dash (a run still open at the end of what was fed is in `open`, not here).
    ends: Vec<u64>,
    /// Length of the run of dashes at the end of what was fed (0 when it ends with another byte).
    open: u64,
    /// Bytes fed.
    fed: u64,
    /// More than [`DashRuns::MAX_RUNS`] runs: nothing is answered any more.
    overflowed: bool,
}

/// Dashes of an end-line.
const RUN: u64 = 7;

/// The seven dashes of an end-line.
pub(crate) const DASHES: &[u8] = b"-------";

/// Built once: constructing a searcher costs about as much as scanning 2 kB.
pub(crate) static DASH_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(DASHES));

/// Four dashes as one word, for [`find_dashed`].
const DASH_WORD: u32 = u32::from_ne_bytes(*b"----");
/// Bytes [`find_dashed`] checks at once for a word of dashes.
const SCAN_BLOCK: usize = 128;
/// Blocks holding dashes but no occurrence after which [`find_dashed`] stops checking words.
const SCAN_FALSE_HITS: usize = 8;

/// Whether any of the block's 32 aligned 4-byte words is `----` (the compiler turns the loop
/// into vector compares).
#[inline]
fn block_has_dash_word(block: &[u8; SCAN_BLOCK]) -> bool {
    let mut any = false;
    for w in block.as_chunks::<4>().0 {
        any |= u32::from_ne_bytes(*w) == DASH_WORD;
    }
    any
}

/// The first offset of `finder`'s needle in `hay`, as `finder.find(hay)` answers, at two to
/// three times its speed on file data, for a needle that holds seven dashes starting at most 5
/// bytes in and is at most 20 bytes long ([`DASHES`]; the parser's `CRLF -------`). Searching
/// for seven dashes was the largest user-space cost of the MSRP receiver (the end-line) and of
/// the HTTP upload thread (the spool's [`DashRuns`] index: 37 % of its samples).
///
/// The seven dashes of an occurrence always hold one whole 4-byte word aligned to `hay`'s start
/// (the first multiple of 4 at or after the dashes' start is at most 3 bytes in, and 4 more
/// bytes still lie within the 7). So only the blocks with a word of dashes are searched, each
/// with 8 bytes before it (an occurrence starts at most 5 + 3 bytes before its word) and 16
/// after (one at most 20 long ends at most 16 bytes past the block); the part after the last
/// whole block is searched as it is. Data full of dashes (text rules, say) would make every
/// block a candidate: after [`SCAN_FALSE_HITS`] blocks without an occurrence the rest is left
/// to the finder alone.
pub(crate) fn find_dashed(hay: &[u8], finder: &memmem::Finder<'_>) -> Option<usize> {
    debug_assert!(
        finder.needle().len() <= 20
            && finder
                .needle()
                .windows(DASHES.len())
                .position(|w| w == DASHES)
                .is_some_and(|d| d <= 5),
        "find_dashed: the needle has no seven dashes near its start"
    );
    let (blocks, _) = hay.as_chunks::<SCAN_BLOCK>();
    let mut false_hits = 0;
    for (k, block) in blocks.iter().enumerate() {
        if !block_has_dash_word(block) {
            continue;
        }
        // No occurrence starts before `from`: its word would be in an earlier block.
        let from = (k * SCAN_BLOCK).saturating_sub(8);
        if false_hits == SCAN_FALSE_HITS {
            return finder.find(&hay[from..]).map(|i| from + i);
        }
        let to = ((k + 1) * SCAN_BLOCK + 16).min(hay.len());
        if let Some(i) = finder.find(&hay[from..to]) {
            return Some(from + i);
        }
        false_hits += 1;
    }
    let from = (blocks.len() * SCAN_BLOCK).saturating_sub(8);
    finder.find(&hay[from..]).map(|i| from + i)
}

impl DashRuns {
    /// Run ends kept at most per file (64 KiB); past it the file is scanned per chunk.
    pub const MAX_RUNS: usize = 8192;

    pub fn new() -> DashRuns {
        DashRuns::default()
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// The next bytes of the message, in order.
    pub fn feed(&mut self, data: &[u8]) {
        let base = self.fed;
        self.fed += data.len() as u64;
        if self.overflowed {
            return;
        }
        let mut i = 0;
        while i < data.len() {
            // Continue the open run (or start one) at i.
            let dashes = data[i..].iter().take_while(|&&c| c == b'-').count();
            if i + dashes == data.len() {
                self.open += dashes as u64;
                return;
            }
            if self.open + dashes as u64 >= RUN {
                self.push(base + (i + dashes) as u64);
            }
            self.open = 0;
            // data[i + dashes] is another byte: look for the next seven dashes after it.
            let from = i + dashes + 1;
            match find_dashed(&data[from..], &DASH_FINDER) {
                Some(k) => i = from + k,
                None => {
                    // A shorter run at the end may continue in the next bytes.
                    let tail = data[from..]
                        .iter()
                        .rev()
                        .take_while(|&&c| c == b'-')
                        .count();
                    self.open = tail as u64;
                    return;
                }
            }
        }
    }

    fn push(&mut self, end: u64) {
        if self.ends.len() == Self::MAX_RUNS {
            self.overflowed = true;
            self.ends = Vec::new();
        } else {
            self.ends.push(end);
        }
    }

    /// The run ends inside `r` (which must lie within the bytes fed), or `None` when the index
    /// overflowed. A run still open at the end of what was fed is not reported: no id can follow
    /// it inside `r`.
    pub fn ends_within(&self, r: Range<u64>) -> Option<&[u64]> {
        if self.overflowed {
            return None;
        }
        let a = self.ends.partition_point(|&e| e < r.start);
        let b = self.ends.partition_point(|&e| e <= r.end);
        Some(&self.ends[a..b])
    }
}

/// Whether `body`, the message bytes from offset `start`, contains `-------<tid>`, given the
/// run ends `ends` of (at least) that range from [`DashRuns::ends_within`]. The same answer as
/// [`super::writer::body_contains_end_line`] for any `tid` that does not start with `-`; for one
/// that does (or an empty one), it falls back to that scan.
pub fn body_contains_end_line_at(body: &[u8], start: u64, ends: &[u64], tid: &[u8]) -> bool {
    if tid.first().is_none_or(|&c| c == b'-') {
        return super::writer::body_contains_end_line(body, tid);
    }
    let end = start + body.len() as u64;
    let from = ends.partition_point(|&e| e < start + RUN);
    ends[from..]
        .iter()
        .take_while(|&&e| e + tid.len() as u64 <= end)
        .any(|&e| {
            let at = (e - start) as usize;
            &body[at..at + tid.len()] == tid
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::writer::body_contains_end_line;

    /// Brute force: the ends of runs of ≥ 7 dashes followed by another byte.
    fn run_ends(data: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        let mut run = 0;
        for (i, &c) in data.iter().enumerate() {
            if c == b'-' {
                run += 1;
            } else {
                if run >= 7 {
                    out.push(i as u64);
                }
                run = 0;
            }
        }
        out
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Bytes with many runs of dashes of every length (0–20) between short runs of `a`, `b` or
    /// the id's first characters, so that end-lines of a two-letter id occur.
    fn dashy(rng: &mut Rng, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let dashes = rng.below(21) as usize;
            v.extend(std::iter::repeat_n(b'-', dashes));
            for _ in 0..rng.below(4) {
                v.push(b"abx"[rng.below(3) as usize]);
            }
        }
        v.truncate(len);
        v
    }

    /// `data` fed in pieces of 1 to `most` bytes.
    fn fed_in_pieces(data: &[u8], rng: &mut Rng, most: u64) -> DashRuns {
        let mut d = DashRuns::new();
        let mut at = 0;
        while at < data.len() {
            let n = (1 + rng.below(most) as usize).min(data.len() - at);
            d.feed(&data[at..at + n]);
            at += n;
        }
        d
    }

    #[test]
    fn index_matches_a_brute_force_scan_whatever_the_pieces() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for round in 0..300 {
            let len = 1 + rng.below(3000) as usize;
            let data = dashy(&mut rng, len);
            // Pieces of 1 to 40 bytes: runs cross piece boundaries all the time.
            let d = fed_in_pieces(&data, &mut rng, 40);
            assert_eq!(d.fed(), data.len() as u64);
            let all = d.ends_within(0..data.len() as u64).unwrap();
            assert_eq!(all, &run_ends(&data)[..], "round {round}");
        }
    }

    #[test]
    fn a_run_across_many_pieces_and_one_at_the_end() {
        let mut d = DashRuns::new();
        for _ in 0..10 {
            d.feed(b"-");
        }
        d.feed(b"x");
        assert_eq!(d.ends_within(0..11), Some(&[10u64][..]));
        // Open at the end: not reported until another byte ends it.
        d.feed(b"---");
        d.feed(b"----");
        assert_eq!(d.ends_within(0..18), Some(&[10u64][..]));
        d.feed(b"ab");
        assert_eq!(d.ends_within(0..20), Some(&[10u64, 18][..]));
        assert_eq!(d.ends_within(11..20), Some(&[18u64][..]));
        assert_eq!(d.ends_within(11..17), Some(&[][..]));
        // Six dashes split over two pieces are no run.
        d.feed(b"---");
        d.feed(b"---z");
        assert_eq!(d.ends_within(0..27), Some(&[10u64, 18][..]));
    }

    #[test]
    fn chunk_checks_match_the_scan_for_every_range() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for _ in 0..60 {
            let len = 400 + rng.below(600) as usize;
            let data = dashy(&mut rng, len);
            // Pieces of 1 to 40 bytes: runs cross piece boundaries all the time.
            let d = fed_in_pieces(&data, &mut rng, 40);
            for _ in 0..200 {
                let s = rng.below(data.len() as u64);
                let e = s + rng.below(data.len() as u64 - s + 1);
                let body = &data[s as usize..e as usize];
                let ends = d.ends_within(s..e).unwrap();
                for tid in [&b"ab"[..], b"a", b"xa", b"abxab", b"q"] {
                    assert_eq!(
                        body_contains_end_line_at(body, s, ends, tid),
                        body_contains_end_line(body, tid),
                        "range {s}..{e} tid {tid:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_id_starting_with_a_dash_falls_back_to_the_scan() {
        let body = b"x--------ab";
        assert!(body_contains_end_line_at(body, 0, &[], b"-ab"));
        assert!(!body_contains_end_line_at(body, 0, &[], b"ab"));
        assert!(body_contains_end_line_at(body, 0, &[9], b"ab"));
    }

    #[test]
    fn too_many_runs_stop_the_index() {
        let mut d = DashRuns::new();
        for _ in 0..DashRuns::MAX_RUNS {
            d.feed(b"-------x");
        }
        assert_eq!(
            d.ends_within(0..d.fed()).map(<[u64]>::len),
            Some(DashRuns::MAX_RUNS)
        );
        d.feed(b"-------x");
        assert_eq!(d.ends_within(0..d.fed()), None);
        d.feed(b"abc");
        assert_eq!(d.fed(), (DashRuns::MAX_RUNS as u64 + 1) * 8 + 3);
    }

    /// Random bytes (dashes rare) with runs of 1–12 dashes planted at `spots` places.
    fn sparse(rng: &mut Rng, len: usize, spots: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|_| (rng.next() >> 24) as u8).collect();
        for _ in 0..spots {
            let n = 1 + rng.below(12) as usize;
            let at = rng.below(len as u64) as usize;
            let end = (at + n).min(len);
            v[at..end].fill(b'-');
        }
        v
    }

    #[test]
    fn dash_search_finds_what_the_finder_finds() {
        let mut rng = Rng(0x0bad_cafe_1234_5678);
        let base = sparse(&mut rng, 4096, 0);
        // One run of seven dashes at every offset of the first blocks (block edges and the
        // 8-byte margins included), searched from every alignment.
        for at in 0..400 {
            let mut hay = base.clone();
            hay[at..at + 7].fill(b'-');
            for skip in 0..5 {
                let h = &hay[skip.min(at)..];
                assert_eq!(
                    find_dashed(h, &DASH_FINDER),
                    DASH_FINDER.find(h),
                    "at {at} skip {skip}"
                );
            }
        }
        // Near misses (runs of 1–12) everywhere, with and without a real one.
        for round in 0..300 {
            let len = rng.below(5000) as usize;
            let spots = rng.below(40) as usize;
            let hay = sparse(&mut rng, len, spots);
            for skip in [0, 1, 3] {
                let h = &hay[skip.min(hay.len())..];
                assert_eq!(
                    find_dashed(h, &DASH_FINDER),
                    DASH_FINDER.find(h),
                    "round {round}"
                );
            }
        }
        // All dashes, or dashes without seven in a row: the false-hit fallback.
        for len in [0, 6, 7, 127, 128, 135, 4096] {
            let h = vec![b'-'; len];
            assert_eq!(find_dashed(&h, &DASH_FINDER), DASH_FINDER.find(&h), "{len}");
            let h: Vec<u8> = (0..len)
                .map(|i| if i % 7 == 6 { b'x' } else { b'-' })
                .collect();
            assert_eq!(find_dashed(&h, &DASH_FINDER), None, "{len}");
        }
    }

    #[test]
    fn index_matches_a_brute_force_scan_in_large_pieces() {
        // Pieces of whole blocks and more: the word search runs (the small pieces above stay
        // below one block).
        let mut rng = Rng(0x5eed_0f00_ba11_0001);
        for round in 0..100 {
            let len = 1 + rng.below(40_000) as usize;
            let spots = rng.below(200) as usize;
            let data = sparse(&mut rng, len, spots);
            let d = fed_in_pieces(&data, &mut rng, 9000);
            let all = d.ends_within(0..data.len() as u64).unwrap();
            assert_eq!(all, &run_ends(&data)[..], "round {round}");
        }
    }
}
