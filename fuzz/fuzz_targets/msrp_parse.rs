//! Fuzzes the MSRP frame parser: `parse` over the whole input, and `FrameDecoder` fed the same
//! bytes in pieces whose sizes come from the input. Both must agree, and neither may panic.
//!
//! Input layout: byte 0 selects tight or default limits, byte 1 seeds the split sizes, the rest
//! is the stream.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use msrpcast::msrp::parser::{parse, FrameDecoder, Limits, Parsed};

fuzz_target!(|data: &[u8]| {
    let (limits, seed, stream) = match data {
        [l, s, rest @ ..] => {
            let limits = if l & 1 == 0 {
                Limits::default()
            } else {
                Limits {
                    max_header_bytes: 256,
                    max_headers: 6,
                    max_body_bytes: 64,
                }
            };
            (limits, *s, rest)
        }
        _ => return,
    };

    // Whole-buffer parsing, frame after frame.
    let mut whole = Vec::new();
    let mut rest = Bytes::copy_from_slice(stream);
    loop {
        match parse(&rest, &limits) {
            Ok(Parsed::Complete(m, n)) => {
                assert!(n > 0 && n <= rest.len());
                whole.push(Ok(m));
                rest = rest.slice(n..);
            }
            Ok(Parsed::Partial) => break,
            Err(e) => {
                whole.push(Err(e));
                break;
            }
        }
    }

    // The decoder, fed in pieces of 1..=16 bytes chosen by the seed.
    let mut dec = FrameDecoder::new(limits);
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut x = u32::from(seed) | 1;
    'feed: while at < stream.len() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x as usize % 16 + 1).min(stream.len() - at);
        dec.feed(&stream[at..at + n]);
        at += n;
        loop {
            match dec.next() {
                Ok(Some(m)) => pieces.push(Ok(m)),
                Ok(None) => break,
                Err(e) => {
                    pieces.push(Err(e));
                    if e.is_fatal() {
                        break 'feed;
                    }
                    // A non-fatal error consumed its frame; parse() stops there, so do we.
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(whole, pieces);
});
