//! The chunked decoder: never panics, and the result does not depend on how the input is split
//! (the first byte picks the read size).
#![no_main]

use libfuzzer_sys::fuzz_target;
use msrpcast::http::body::{decode_all_split, BodyDecoder, ChunkedDecoder, ChunkedLimits};

fn run(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), msrpcast::http::HttpError> {
    let limits = ChunkedLimits {
        max_line: 64,
        max_trailers: 128,
        max_body: Some(4096),
    };
    decode_all_split(
        &mut BodyDecoder::Chunked(ChunkedDecoder::new(limits)),
        input,
        piece,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len().max(1));
    let split = run(input, usize::from(first % 16) + 1);
    assert_eq!(whole, split);
    if let Ok((body, used)) = &whole {
        assert!(body.len() <= *used);
    }
});
