//! Every frame of the vectors in `tests/vectors/` parses, whole and through the stream decoder
//! split in every way tried, with identical results.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use msrpcast::msrp::parser::{parse, FrameDecoder, Limits, ParseError, Parsed};
use msrpcast::msrp::writer::write_message;
use msrpcast::msrp::{ByteRange, Continuation, FailureReport, Header, Kind, Message, Method};
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
    for sub in ["msrplib", "rfc4975", "rfc4976"] {
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
    assert_eq!(v.len(), 12);
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

/// Bodies of one stream, in frame order.
fn bodies(frames: &[Message]) -> Vec<&[u8]> {
    frames.iter().map(|m| &m.body[..]).collect()
}

/// Every MSRP message printed in RFC 4975 (sections 4, 5.1, 11.1, 11.2, 11.4, 11.5, 11.6); see
/// `tests/vectors/README.md` for where a vector had to complete the RFC.
#[test]
fn rfc4975_examples_parse() {
    let f = parse_stream(&read("rfc4975", "rfc4975-s4-send-and-200.msrp"));
    assert_eq!(f.len(), 2);
    assert_eq!(&f[0].body[..], b"Hey Bob, are you there?");
    assert_eq!(f[0].message_id().map(|b| &b[..]), Some(&b"87652491"[..]));
    assert_eq!(f[1].response_code(), Some(200));

    let f = parse_stream(&read("rfc4975", "rfc4975-s5.1-two-chunks.msrp"));
    assert_eq!(bodies(&f), [&b"abcd"[..], b"EFGH"]);
    assert_eq!(
        (f[0].continuation, f[1].continuation),
        (Continuation::More, Continuation::End)
    );
    assert_eq!(
        f[0].byte_range(),
        Some(ByteRange {
            start: 1,
            end: None,
            total: Some(8)
        })
    );

    let f = parse_stream(&read("rfc4975", "rfc4975-s11.1-basic-im.msrp"));
    assert_eq!(f.len(), 4);
    assert_eq!(bodies(&f)[0], b"Hi, I'm Alice!");
    assert_eq!(bodies(&f)[2], b"Hi, Alice!  I'm Bob!");
    assert_eq!(
        (f[1].response_code(), f[3].response_code()),
        (Some(200), Some(200))
    );
    assert_eq!(&f[2].to_path[0].session_id[..], b"iau39soe2843z");

    let f = parse_stream(&read("rfc4975", "rfc4975-s11.2-xhtml.msrp"));
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].content_type().map(|b| &b[..]),
        Some(&b"application/xhtml+xml"[..])
    );
    assert!(f[0].body.starts_with(b"<?xml version=\"1.0\""));
    assert!(f[0].body.ends_with(b"</body>\r\n</html>"));

    let f = parse_stream(&read("rfc4975", "rfc4975-s11.4-chunked-cpim.msrp"));
    assert_eq!(f.len(), 2);
    // The CPIM envelope travels in the first chunk only; the RFC's 1-137 matches it exactly.
    assert_eq!(f[0].body.len(), 137);
    assert!(f[0].body.ends_with(b"text/plain\r\n\r\nABCD"));
    assert_eq!(f[0].continuation, Continuation::More);
    assert_eq!(&f[1].body[..], b"1234567890");
    assert_eq!(f[1].byte_range().map(|r| r.start), Some(138));

    let f = parse_stream(&read("rfc4975", "rfc4975-s11.5-system-message.msrp"));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].failure_report(), FailureReport::No);
    assert!(!f[0].success_report());
    assert_eq!(&f[0].body[..], b"This conference will end in 5 minutes");

    let f = parse_stream(&read("rfc4975", "rfc4975-s11.6-positive-report.msrp"));
    assert_eq!(f.len(), 2);
    assert!(f[0].success_report());
    assert_eq!(f[0].failure_report(), FailureReport::No);
    assert!(f[0].body.ends_with(b"</p>\r\n</body></html>"));
    assert_eq!(f[1].method(), Some(&Method::Report));
    assert_eq!(f[1].status().map(|s| (s.namespace, s.code)), Some((0, 200)));
    assert!(f[1].body.is_empty());
}

/// RFC 4975 Figure 3 as printed is a "snippet": its requests lack To-Path and From-Path, which
/// every request must carry (section 7.1, ABNF `headers`). It is kept verbatim and must be refused
/// for exactly that reason; the completed copy above parses.
#[test]
fn rfc4975_figure3_as_printed_lacks_the_paths() {
    let data = read("rfc4975", "rfc4975-s5.1-two-chunks.as-printed.invalid");
    assert_eq!(
        parse(&data, &Limits::default()),
        Err(ParseError::MissingToPath)
    );
}

/// The AUTH exchange of RFC 4976 section 5.1 (two relays), continuation lines joined.
#[test]
fn rfc4976_auth_examples_parse() {
    let f = parse_stream(&read("rfc4976", "rfc4976-s5.1-auth.msrp"));
    let kinds: Vec<_> = f
        .iter()
        .map(|m| match &m.kind {
            Kind::Request(Method::Auth) => 0,
            Kind::Response { code, .. } => *code,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, [0, 401, 0, 200, 0, 0, 401, 401, 0, 0, 200, 200]);
    // A relay URI without session-id and port.
    assert!(f[0].to_path[0].session_id.is_empty());
    assert_eq!(f[0].to_path[0].port, None);
    assert_eq!(f[4].to_path.len(), 2);
    let has = |m: &Message, pred: fn(&Header) -> bool| m.headers.iter().any(pred);
    assert!(has(&f[1], |h| matches!(h, Header::WwwAuthenticate(_))));
    assert!(has(&f[2], |h| matches!(h, Header::Authorization(_))));
    assert!(has(&f[3], |h| matches!(h, Header::Expires(900))));
    assert!(has(
        &f[10],
        |h| matches!(h, Header::UsePath(p) if p.len() == 2)
    ));
    assert!(has(&f[11], |h| matches!(h, Header::Expires(1800))));
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
