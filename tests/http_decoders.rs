//! The HTTP request reader and body decoders from the outside: uploads split at every position,
//! malformed codings with their reasons, and no panic or unbounded growth on arbitrary input.

use msrpcast::http::body::{decode_all_split, BodyDecoder, ChunkedDecoder, ChunkedLimits};
use msrpcast::http::params::percent_encode;
use msrpcast::http::{
    parse_content_disposition, parse_head, route, HeadLimits, HttpError, Method, MultipartDecoder,
    MultipartEvent, MultipartLimits, Parsed, ReadEvent, RequestReader, Route,
};
use proptest::prelude::*;

/// What a connection driver would see for one upload request.
#[derive(Debug, Default, PartialEq)]
struct Upload {
    route: Option<Route>,
    filename: Option<String>,
    content_type: Option<String>,
    token_field: Option<String>,
    data: Vec<u8>,
    complete: bool,
}

/// Drives a [`RequestReader`] (and a multipart decoder for form uploads) over `reads`, the way
/// the runtime does: keeps unconsumed head bytes, never keeps body bytes.
fn drive(reads: &[&[u8]]) -> Result<Upload, HttpError> {
    let mut reader = RequestReader::new(HeadLimits::default());
    let mut multipart: Option<MultipartDecoder> = None;
    let mut up = Upload::default();
    let mut pending: Vec<u8> = Vec::new();
    for read in reads {
        pending.extend_from_slice(read);
        loop {
            let (n, ev) = reader.feed(&pending)?;
            let mut need_more = false;
            match ev {
                ReadEvent::Head(h) => {
                    up.route = route(&h.method, &h.path).ok();
                    let ct = h.content_type.clone().unwrap_or_default();
                    if msrpcast::http::params::is_multipart_form(&ct) {
                        multipart = Some(MultipartDecoder::new(&ct, MultipartLimits::default())?);
                    } else {
                        let d = h.header("content-disposition").unwrap_or("attachment");
                        up.filename = parse_content_disposition(d)?.filename;
                        up.content_type = Some(ct);
                    }
                    reader.begin_body(&h, Some(1 << 20), true)?;
                }
                ReadEvent::Body(mut body) => match multipart.as_mut() {
                    None => up.data.extend_from_slice(body),
                    Some(m) => loop {
                        let (k, mev) = m.decode(body)?;
                        match mev {
                            MultipartEvent::PartStart {
                                filename,
                                content_type,
                                ..
                            } => {
                                up.filename = Some(filename);
                                up.content_type = content_type;
                            }
                            MultipartEvent::Data(d) => up.data.extend_from_slice(d),
                            MultipartEvent::PartEnd => {}
                            MultipartEvent::NeedMore | MultipartEvent::Done => {
                                body = &body[k..];
                                assert!(body.is_empty(), "NeedMore/Done consume the rest");
                                break;
                            }
                        }
                        body = &body[k..];
                    },
                },
                ReadEvent::End => {
                    if let Some(m) = &multipart {
                        m.finish()?;
                        up.token_field = m.field("token").map(str::to_string);
                    }
                    up.complete = true;
                }
                ReadEvent::NeedMore => need_more = true,
            }
            pending.drain(..n);
            if need_more || up.complete {
                break;
            }
        }
    }
    reader.eof()?;
    Ok(up)
}

fn raw_upload(name: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /conferences/4711/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\
Content-Type: application/pdf\r\nContent-Length: {}\r\n\
Content-Disposition: attachment; filename*=UTF-8''{}\r\n\r\n",
        body.len(),
        percent_encode(name)
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn multipart_upload(boundary: &str, name: &str, file: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nsecret\r\n\
--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut r = format!(
        "POST /conferences/4711/files HTTP/1.1\r\nHost: x\r\n\
Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

fn chunk_encode(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x};e=1\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
    out
}

#[test]
fn raw_upload_split_at_every_pair_of_positions() {
    let file = b"%PDF\r\n--x\r\n\x00\xff";
    let req = raw_upload("résumé \"1\".pdf", file);
    let want = Upload {
        route: Some(Route::Upload {
            conference: "4711".into(),
        }),
        filename: Some("résumé \"1\".pdf".into()),
        content_type: Some("application/pdf".into()),
        token_field: None,
        data: file.to_vec(),
        complete: true,
    };
    for a in 0..=req.len() {
        for b in (a..=req.len()).step_by(3) {
            assert_eq!(
                drive(&[&req[..a], &req[a..b], &req[b..]]).unwrap(),
                want,
                "{a} {b}"
            );
        }
    }
}

#[test]
fn multipart_upload_boundary_split_at_every_position() {
    // The file contains near-misses of the delimiter.
    let file = b"\r\n--bound\r\r\n--boun-\r\n-";
    let req = multipart_upload("boundary42", "a.png", file);
    let want = Upload {
        route: Some(Route::Upload {
            conference: "4711".into(),
        }),
        filename: Some("a.png".into()),
        content_type: Some("image/png".into()),
        token_field: Some("secret".into()),
        data: file.to_vec(),
        complete: true,
    };
    // Every pair of split points inside the body (head splits are covered by the raw test).
    let body_start = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    for a in body_start..=req.len() {
        for b in a..=req.len() {
            assert_eq!(
                drive(&[&req[..a], &req[a..b], &req[b..]]).unwrap(),
                want,
                "{a} {b}"
            );
        }
    }
    let one_by_one: Vec<&[u8]> = req.chunks(1).collect();
    assert_eq!(drive(&one_by_one).unwrap(), want);
}

#[test]
fn chunked_upload_every_read_size() {
    let file: Vec<u8> = (0..2000u32).map(|i| (i * 7) as u8).collect();
    let body = chunk_encode(&file, &[1, 17, 300, 1000]);
    let mut req = b"POST /conferences/c/files HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\
Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"x.bin\"\r\n\r\n"
        .to_vec();
    req.extend_from_slice(&body);
    for piece in [1, 2, 3, 5, 7, 64, 1000, req.len()] {
        let reads: Vec<&[u8]> = req.chunks(piece).collect();
        let up = drive(&reads).unwrap();
        assert_eq!(up.data, file, "piece {piece}");
        assert_eq!(up.filename.as_deref(), Some("x.bin"));
        assert!(up.complete);
    }
}

#[test]
fn limits_and_malformed_input_each_with_a_status() {
    let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(16 * 1024));
    assert_eq!(drive(&[big_head.as_bytes()]).unwrap_err().status(), 431);
    let no_len = b"POST /conferences/1/files HTTP/1.1\r\n\r\n";
    assert_eq!(drive(&[no_len]), Err(HttpError::LengthRequired));
    let too_big = b"POST /conferences/1/files HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n";
    assert_eq!(drive(&[too_big]).unwrap_err().status(), 413);
    let bad_chunk =
        b"POST /conferences/1/files HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    let e = drive(&[bad_chunk]).unwrap_err();
    assert_eq!(
        (e.status(), e.reason()),
        (400, "chunk size is not hexadecimal")
    );
    let mut trunc = multipart_upload("b", "a", b"data");
    trunc.truncate(trunc.len() - 8);
    // Content-Length now promises more than arrives.
    assert_eq!(drive(&[&trunc]), Err(HttpError::BodyTruncated));
    let http2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    assert_eq!(drive(&[http2]).unwrap_err().status(), 505);
}

#[test]
fn content_disposition_forms() {
    let cases = [
        (
            "attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf",
            "€ rates.pdf",
        ),
        ("attachment; filename=\"plain.txt\"", "plain.txt"),
        ("attachment; filename=\"x\"; filename*=UTF-8''y", "y"),
        ("form-data; name=\"f\"; filename=\"日本.txt\"", "日本.txt"),
    ];
    for (v, want) in cases {
        assert_eq!(
            parse_content_disposition(v).unwrap().filename.as_deref(),
            Some(want)
        );
    }
    assert!(parse_content_disposition("attachment; filename*=UTF-8''%FF").is_err());
}

#[test]
fn routing_405_and_404() {
    assert_eq!(
        route(&Method::Get, "/conferences/1/files")
            .unwrap_err()
            .status(),
        405
    );
    assert_eq!(route(&Method::Get, "/nope").unwrap_err().status(), 404);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn head_parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_head(&input, &HeadLimits::default());
    }

    #[test]
    fn head_parser_every_prefix_is_partial(path in "/[a-z0-9%]{0,20}", v in "[ -~]{0,40}") {
        let req = format!("GET {path} HTTP/1.1\r\nX-A: {}\r\n\r\n", v.trim());
        let whole = parse_head(req.as_bytes(), &HeadLimits::default());
        if let Ok(Parsed::Complete(_, n)) = whole {
            prop_assert_eq!(n, req.len());
            for i in 0..req.len() {
                prop_assert_eq!(parse_head(&req.as_bytes()[..i], &HeadLimits::default()), Ok(Parsed::Partial));
            }
        }
    }

    #[test]
    fn chunked_never_panics(input in proptest::collection::vec(any::<u8>(), 0..400), piece in 1usize..20) {
        let mut d = BodyDecoder::Chunked(ChunkedDecoder::new(ChunkedLimits::default()));
        let _ = decode_all_split(&mut d, &input, piece);
    }

    #[test]
    fn chunked_round_trip(body in proptest::collection::vec(any::<u8>(), 0..500),
                          sizes in proptest::collection::vec(1usize..64, 1..5),
                          piece in 1usize..40) {
        let enc = chunk_encode(&body, &sizes);
        let mut d = BodyDecoder::Chunked(ChunkedDecoder::new(ChunkedLimits::default()));
        let (out, used) = decode_all_split(&mut d, &enc, piece).unwrap();
        prop_assert_eq!(out, body);
        prop_assert_eq!(used, enc.len());
    }

    #[test]
    fn multipart_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600), piece in 1usize..30) {
        let mut m = MultipartDecoder::new("multipart/form-data; boundary=ab", MultipartLimits::default()).unwrap();
        'outer: for chunk in input.chunks(piece) {
            let mut buf = chunk;
            loop {
                match m.decode(buf) {
                    Err(_) => break 'outer,
                    Ok((n, ev)) => {
                        let stop = matches!(ev, MultipartEvent::NeedMore | MultipartEvent::Done);
                        buf = &buf[n..];
                        if stop { break; }
                    }
                }
            }
        }
    }

    #[test]
    fn disposition_and_routes_never_panic(s in "\\PC{0,80}") {
        let _ = parse_content_disposition(&s);
        let _ = route(&Method::Get, &s);
        let _ = route(&Method::Delete, &format!("/api/transfers/{s}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn multipart_round_trip(file in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'-'), Just(b'a'), any::<u8>()], 0..300),
                            piece in 1usize..50) {
        let req = multipart_upload("a-b", "f.bin", &file);
        // The file must not contain the delimiter itself (RFC 2046 forbids it).
        prop_assume!(!file.windows(7).any(|w| w == b"\r\n--a-b"));
        let reads: Vec<&[u8]> = req.chunks(piece).collect();
        let up = drive(&reads).unwrap();
        prop_assert_eq!(up.data, file);
        prop_assert!(up.complete);
    }
}
