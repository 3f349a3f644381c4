//! Every frame of the vectors in `tests/vectors/` parses, whole and through the stream decoder
//! split in every way tried, with identical results.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use msrpcast::msrp::parser::{parse, FrameDecoder, Limits, Parsed};
use msrpcast::msrp::writer::write_message;
use msrpcast::msrp::{ByteRange, Continuation, Kind, Message, Method};
use sha1::{Digest, Sha1};

fn vector_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(sub)
}

fn read(sub: &str, name: &str) -> Bytes {
    Bytes::from(std::fs::read(vector_dir(sub).join(name)).expect("vector file"))
}

/// Parses a whole stream with `parse`, frame after frame.
fn parse_stream(stream: &Bytes) -> Vec<Message> {
    let mut out = Vec::new();
    let mut rest = stream.clone();
    while !rest.is_empty() {
        match parse(&rest, &Limits::default()) {
            Ok(Parsed::Complete(m, n)) => {
                out.push(m);
                rest = rest.slice(n..);
            }
            other => panic!("frame {} did not parse: {other:?}", out.len()),
        }
    }
    out
}

/// Feeds a stream to a decoder in pieces of the given sizes (cycled).
fn decode_stream(stream: &[u8], sizes: &[usize]) -> Vec<Message> {
    let mut d = FrameDecoder::default();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let n = sizes[i % sizes.len()].max(1).min(stream.len() - at);
        i += 1;
        d.feed(&stream[at..at + n]);
        at += n;
        while let Some(m) = d.next().expect("decodes") {
            out.push(m);
        }
    }
    assert_eq!(d.buffered(), 0);
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn all_vectors() -> Vec<(String, Bytes)> {
    let mut v = Vec::new();
    for sub in ["msrplib", "rfc4975"] {
        let mut names: Vec<_> = std::fs::read_dir(vector_dir(sub))
            .expect("vector dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".msrp"))
            .collect();
        names.sort();
        for n in names {
            let data = read(sub, &n);
            v.push((format!("{sub}/{n}"), data));
        }
    }
    assert_eq!(v.len(), 9);
    v
}

#[test]
fn msrplib_sender_streams_reassemble_the_file() {
    for name in [
        "msrplib-64k-report-per-chunk.sender-to-receiver.msrp",
        "msrplib-64k-report-per-message.sender-to-receiver.msrp",
    ] {
        let frames = parse_stream(&read("msrplib", name));
        assert_eq!(frames.len(), 4, "{name}");
        // The binding SEND: empty, Byte-Range 1-0/0.
        assert!(frames[0].body.is_empty());
        assert_eq!(
            frames[0].byte_range(),
            Some(ByteRange {
                start: 1,
                end: Some(0),
                total: Some(0)
            })
        );
        let mut hasher = Sha1::new();
        let mut next = 1u64;
        for f in &frames[1..] {
            assert_eq!(f.method(), Some(&Method::Send));
            assert!(f.success_report());
            let r = f.byte_range().expect("byte range");
            assert_eq!(r.start, next);
            assert_eq!(r.total, Some(150_000));
            assert_eq!(r.end, Some(next + f.body.len() as u64 - 1));
            next += f.body.len() as u64;
            hasher.update(&f.body);
        }
        assert_eq!(next - 1, 150_000);
        assert_eq!(frames[3].continuation, Continuation::End);
        assert_eq!(
            hex(&hasher.finalize()),
            "11b0ba16f55851bed4db5073c86b7d4c372dcb6e"
        );
    }
}

#[test]
fn msrplib_receiver_streams_parse() {
    let per_chunk = parse_stream(&read(
        "msrplib",
        "msrplib-64k-report-per-chunk.receiver-to-sender.msrp",
    ));
    let per_message = parse_stream(&read(
        "msrplib",
        "msrplib-64k-report-per-message.receiver-to-sender.msrp",
    ));
    let count = |fs: &[Message]| {
        let oks = fs.iter().filter(|m| m.response_code() == Some(200)).count();
        let reports = fs
            .iter()
            .filter(|m| m.method() == Some(&Method::Report))
            .count();
        (oks, reports)
    };
    assert_eq!(count(&per_chunk), (4, 3));
    assert_eq!(count(&per_message), (4, 1));
    let last = per_message.last().expect("a frame");
    assert_eq!(last.status().map(|s| s.code), Some(200));
    assert_eq!(
        last.byte_range(),
        Some(ByteRange {
            start: 1,
            end: Some(150_000),
            total: Some(150_000)
        })
    );
}

#[test]
fn rfc_examples_parse() {
    let frames = parse_stream(&read("rfc4975", "rfc4975-s4-send-and-200.msrp"));
    assert_eq!(&frames[0].body[..], b"Hey Bob, are you there?");
    assert_eq!(frames[1].response_code(), Some(200));
    let frames = parse_stream(&read("rfc4975", "rfc4975-s7.1-two-chunks.msrp"));
    assert_eq!(
        (&frames[0].body[..], frames[0].continuation),
        (&b"abcd"[..], Continuation::More)
    );
    assert_eq!(
        (&frames[1].body[..], frames[1].continuation),
        (&b"EFGH"[..], Continuation::End)
    );
    let frames = parse_stream(&read("rfc4975", "rfc4975-s10.1-basic-im.msrp"));
    assert_eq!(&frames[0].body[..], b"Hi, I'm Alice!");
    let frames = parse_stream(&read("rfc4975", "rfc4975-s10.2-xhtml-and-report.msrp"));
    assert!(frames[0].success_report());
    assert!(frames[0].body.ends_with(b"</body></html>"));
    assert_eq!(frames[1].status().map(|s| s.code), Some(200));
    let frames = parse_stream(&read("rfc4975", "rfc4976-auth.msrp"));
    assert_eq!(frames[0].method(), Some(&Method::Auth));
    assert!(frames[0].to_path[0].session_id.is_empty());
    assert!(matches!(frames[1].kind, Kind::Response { code: 200, .. }));
}

#[test]
fn every_vector_decodes_identically_however_split() {
    for (name, data) in all_vectors() {
        let whole = parse_stream(&data);
        for sizes in [
            &[1usize][..],
            &[2],
            &[3, 1, 4, 1, 5, 9, 2, 6],
            &[1000],
            &[4096, 7],
            &[data.len()],
        ] {
            // One byte at a time over the 150 kB streams is the slow case; still linear.
            assert_eq!(decode_stream(&data, sizes), whole, "{name} {sizes:?}");
        }
    }
}

#[test]
fn every_prefix_of_every_small_vector_frame_is_partial() {
    for (name, data) in all_vectors() {
        let frames = parse_stream(&data);
        let mut at = 0;
        for f in frames {
            let mut out = bytes::BytesMut::new();
            write_message(&f, &mut out);
            let frame_len = out.len();
            let frame = data.slice(at..at + frame_len);
            assert_eq!(&frame[..], &out[..], "{name}: writer reproduces the frame");
            at += frame_len;
            if frame_len > 4096 {
                continue;
            }
            for n in 0..frame_len {
                assert_eq!(
                    parse(&frame.slice(..n), &Limits::default()),
                    Ok(Parsed::Partial),
                    "{name} prefix {n}"
                );
            }
        }
        assert_eq!(at, data.len());
    }
}

#[test]
fn every_vector_frame_round_trips_through_the_writer() {
    for (name, data) in all_vectors() {
        for f in parse_stream(&data) {
            let mut out = bytes::BytesMut::new();
            write_message(&f, &mut out);
            let back = parse_stream(&out.freeze());
            assert_eq!(back, vec![f], "{name}");
        }
    }
}
