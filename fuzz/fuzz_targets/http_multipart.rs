//! The multipart decoder: never panics, and what it reports does not depend on how the input is
//! split (the first byte picks the read size).
#![no_main]

use libfuzzer_sys::fuzz_target;
use msrpcast::http::{HttpError, MultipartDecoder, MultipartEvent, MultipartLimits};

type Outcome = (
    Option<(String, String, Option<String>)>,
    Vec<u8>,
    usize,
    Vec<(String, String)>,
    bool,
);

fn run(input: &[u8], piece: usize) -> Result<Outcome, HttpError> {
    let limits = MultipartLimits {
        max_part_head: 256,
        max_field_bytes: 64,
        max_parts: 4,
        max_preamble: 128,
    };
    let mut m = MultipartDecoder::new("multipart/form-data; boundary=b-1", limits)?;
    let (mut start, mut data, mut ends, mut done) = (None, Vec::new(), 0, false);
    'outer: for chunk in input.chunks(piece) {
        let mut buf = chunk;
        loop {
            let (n, ev) = m.decode(buf)?;
            assert!(n <= buf.len());
            match ev {
                MultipartEvent::PartStart {
                    name,
                    filename,
                    content_type,
                } => start = Some((name, filename, content_type)),
                MultipartEvent::Data(d) => data.extend_from_slice(d),
                MultipartEvent::PartEnd => ends += 1,
                MultipartEvent::NeedMore => break,
                MultipartEvent::Done => {
                    done = true;
                    break 'outer;
                }
            }
            buf = &buf[n..];
        }
    }
    Ok((start, data, ends, m.fields().to_vec(), done))
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len().max(1));
    let split = run(input, usize::from(first % 32) + 1);
    assert_eq!(whole, split);
    if let Ok((_, body, ends, _, _)) = &whole {
        assert!(body.len() <= input.len() && *ends <= 1);
    }
});
