//! Serialising MSRP frames (RFC 4975 §7.1).
//!
//! [`write_message`] writes any [`Message`] and round-trips with the parser. The SEND fast path
//! ([`write_send_head`] + the body + [`write_end_line`]) writes chunk heads around a body that is
//! never copied here, with To-Path and From-Path rendered once per session by [`render_path`].
//!
//! # Framing convention of the fast path
//!
//! [`write_end_line`] always writes `CRLF -------<tid><flag> CRLF`. Its leading CRLF is the one
//! that ends the body (RFC 4975: `data CRLF end-line`). So that the two compose for frames without
//! a body too, [`write_send_head`] with `content_type: None` leaves off the CRLF of its last header
//! line; with `Some` it ends with `Content-Type: ...CRLF CRLF` and the body follows. A chunk is
//! therefore always `head`, `body` (possibly empty), `end-line`, in that order.
//!
//! A body must not contain its own end-line: check with [`body_contains_end_line`] and pick
//! another transaction id when it does.

use bytes::{BufMut, Bytes, BytesMut};

use super::dash_runs::{find_dashed, DASHES, DASH_FINDER};
use super::message::{ByteRange, Continuation, FailureReport, Header, Kind, Message, Status};
use super::uri::{Host, Uri};

const CRLF: &[u8] = b"\r\n";

/// Appends the decimal form of `n` without going through `fmt`.
fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

/// Appends a three-digit number (status codes and the Status namespace), zero-padded.
fn put_3digits(out: &mut BytesMut, n: u16) {
    let n = n % 1000;
    out.put_slice(&[
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

fn put_byte_range(out: &mut BytesMut, r: ByteRange) {
    put_u64(out, r.start);
    out.put_u8(b'-');
    match r.end {
        Some(e) => put_u64(out, e),
        None => out.put_u8(b'*'),
    }
    out.put_u8(b'/');
    match r.total {
        Some(t) => put_u64(out, t),
        None => out.put_u8(b'*'),
    }
}

fn put_path(out: &mut BytesMut, path: &[Uri]) {
    for (i, u) in path.iter().enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        put_uri(out, u);
    }
}

/// Appends `b` as the URI's `Display` shows it: as it is when ASCII (every parsed URI), lossily
/// otherwise.
fn put_lossy(out: &mut BytesMut, b: &[u8]) {
    if b.is_ascii() {
        out.put_slice(b);
    } else {
        out.put_slice(String::from_utf8_lossy(b).as_bytes());
    }
}

/// Appends `u` as its `Display` shows it, without the formatting machinery: every response and
/// chunk head carries one or two (`core::fmt` was a quarter of the receiving side's work outside
/// the kernel).
fn put_uri(out: &mut BytesMut, u: &Uri) {
    out.put_slice(if u.secure { b"msrps://" } else { b"msrp://" });
    if let Some(ui) = &u.userinfo {
        put_lossy(out, ui);
        out.put_u8(b'@');
    }
    match &u.host {
        Host::Name(n) => put_lossy(out, n),
        Host::V4(a) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.put_u8(b'.');
                }
                put_u64(out, u64::from(octet));
            }
        }
        Host::V6(a) => {
            use std::fmt::Write as _;
            // Writing into a BytesMut cannot fail (it grows as needed).
            let _ = write!(out, "[{a}]");
        }
    }
    if let Some(p) = u.port {
        out.put_u8(b':');
        put_u64(out, u64::from(p));
    }
    if !u.session_id.is_empty() {
        out.put_u8(b'/');
        put_lossy(out, &u.session_id);
    }
    out.put_u8(b';');
    put_lossy(out, &u.transport);
    for (name, value) in &u.params {
        out.put_u8(b';');
        put_lossy(out, name);
        if let Some(v) = value {
            out.put_u8(b'=');
            put_lossy(out, v);
        }
    }
}

/// Renders a path header value (URIs separated by one space), once per session.
pub fn render_path(path: &[Uri]) -> Bytes {
    let mut out = BytesMut::with_capacity(64 * path.len().max(1));
    put_path(&mut out, path);
    out.freeze()
}

fn put_end_line(out: &mut BytesMut, tid: &[u8], c: Continuation) {
    out.put_slice(DASHES);
    out.put_slice(tid);
    out.put_u8(c.as_byte());
    out.put_slice(CRLF);
}

fn put_status(out: &mut BytesMut, s: &Status) {
    put_3digits(out, s.namespace);
    out.put_u8(b' ');
    put_3digits(out, s.code);
    if let Some(c) = &s.comment {
        out.put_u8(b' ');
        out.put_slice(c);
    }
}

fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(CRLF);
}

/// Writes a whole frame. The body section (blank line, body, CRLF) is written when the body is
/// non-empty or a `Content-Type` header is present, so that the output parses back to `msg`.
/// Header values are written as they are: a value holding CR or LF yields a frame that does not
/// parse.
pub fn write_message(msg: &Message, out: &mut BytesMut) {
    out.reserve(256 + msg.body.len());
    out.put_slice(b"MSRP ");
    out.put_slice(&msg.transaction_id);
    out.put_u8(b' ');
    match &msg.kind {
        Kind::Request(m) => out.put_slice(m.as_bytes()),
        Kind::Response { code, comment } => {
            put_3digits(out, *code);
            if let Some(c) = comment {
                out.put_u8(b' ');
                out.put_slice(c);
            }
        }
    }
    out.put_slice(CRLF);
    out.put_slice(b"To-Path: ");
    put_path(out, &msg.to_path);
    out.put_slice(CRLF);
    out.put_slice(b"From-Path: ");
    put_path(out, &msg.from_path);
    out.put_slice(CRLF);
    let mut has_content_type = false;
    for h in &msg.headers {
        match h {
            Header::MessageId(v) => put_header(out, b"Message-ID", v),
            Header::ByteRange(r) => {
                out.put_slice(b"Byte-Range: ");
                put_byte_range(out, *r);
                out.put_slice(CRLF);
            }
            Header::SuccessReport(v) => {
                put_header(out, b"Success-Report", if *v { b"yes" } else { b"no" })
            }
            Header::FailureReport(v) => put_header(
                out,
                b"Failure-Report",
                match v {
                    FailureReport::Yes => b"yes",
                    FailureReport::No => b"no",
                    FailureReport::Partial => b"partial",
                },
            ),
            Header::Status(s) => {
                out.put_slice(b"Status: ");
                put_status(out, s);
                out.put_slice(CRLF);
            }
            Header::ContentType(v) => {
                has_content_type = true;
                put_header(out, b"Content-Type", v)
            }
            Header::UsePath(p) => {
                out.put_slice(b"Use-Path: ");
                put_path(out, p);
                out.put_slice(CRLF);
            }
            Header::WwwAuthenticate(v) => put_header(out, b"WWW-Authenticate", v),
            Header::Authorization(v) => put_header(out, b"Authorization", v),
            Header::Expires(n) | Header::MinExpires(n) | Header::MaxExpires(n) => {
                out.put_slice(match h {
                    Header::Expires(_) => b"Expires: ",
                    Header::MinExpires(_) => b"Min-Expires: ",
                    _ => b"Max-Expires: ",
                });
                put_u64(out, u64::from(*n));
                out.put_slice(CRLF);
            }
            Header::Other { name, value } => put_header(out, name, value),
        }
    }
    if has_content_type || !msg.body.is_empty() {
        out.put_slice(CRLF);
        out.put_slice(&msg.body);
        out.put_slice(CRLF);
    }
    put_end_line(out, &msg.transaction_id, msg.continuation);
}

/// The head of one SEND chunk, with paths pre-rendered by [`render_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendHead<'a> {
    pub tid: &'a [u8],
    pub to_path: &'a [u8],
    pub from_path: &'a [u8],
    pub message_id: &'a [u8],
    pub byte_range: ByteRange,
    /// Written as `Success-Report: yes` when true (absent means `no`).
    pub success_report: bool,
    /// Written when not `yes` (absent means `yes`).
    pub failure_report: FailureReport,
    /// `None`: a chunk without body (no Content-Type, no blank line).
    pub content_type: Option<&'a [u8]>,
    /// A `Content-Disposition` value (e.g. [`super::disposition::attachment`]), written before
    /// `Content-Type` in a chunk with a body (RFC 4975 puts other MIME headers first).
    pub content_disposition: Option<&'a [u8]>,
}

/// Writes the start line and headers of a SEND chunk; see the module docs for how it composes
/// with the body and [`write_end_line`].
pub fn write_send_head(h: &SendHead<'_>, out: &mut BytesMut) {
    out.reserve(
        96 + h.tid.len()
            + h.to_path.len()
            + h.from_path.len()
            + h.message_id.len()
            + h.content_type.map_or(0, <[u8]>::len)
            + h.content_disposition.map_or(0, <[u8]>::len),
    );
    out.put_slice(b"MSRP ");
    out.put_slice(h.tid);
    out.put_slice(b" SEND\r\nTo-Path: ");
    out.put_slice(h.to_path);
    out.put_slice(b"\r\nFrom-Path: ");
    out.put_slice(h.from_path);
    out.put_slice(b"\r\nByte-Range: ");
    put_byte_range(out, h.byte_range);
    out.put_slice(b"\r\nMessage-ID: ");
    out.put_slice(h.message_id);
    if h.success_report {
        out.put_slice(b"\r\nSuccess-Report: yes");
    }
    match h.failure_report {
        FailureReport::Yes => {}
        FailureReport::No => out.put_slice(b"\r\nFailure-Report: no"),
        FailureReport::Partial => out.put_slice(b"\r\nFailure-Report: partial"),
    }
    if let Some(ct) = h.content_type {
        if let Some(cd) = h.content_disposition {
            out.put_slice(b"\r\nContent-Disposition: ");
            out.put_slice(cd);
        }
        out.put_slice(b"\r\nContent-Type: ");
        out.put_slice(ct);
        out.put_slice(b"\r\n\r\n");
    }
}

/// Writes `CRLF -------<tid><flag> CRLF`: the CRLF ending the body (or, for a chunk without body,
/// the last header line), then the end-line.
pub fn write_end_line(tid: &[u8], c: Continuation, out: &mut BytesMut) {
    out.reserve(DASHES.len() + tid.len() + 5);
    out.put_slice(CRLF);
    put_end_line(out, tid, c);
}

/// True when `body` holds `-------<tid>`, so that a receiver could take part of the body for the
/// end-line. Conservative: it ignores what precedes and follows the match.
pub fn body_contains_end_line(body: &[u8], tid: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = find_dashed(&body[at..], &DASH_FINDER) {
        let q = at + i + DASHES.len();
        if body[q..].starts_with(tid) {
            return true;
        }
        at += i + 1;
    }
    false
}

/// Writes a complete response without body: `MSRP <tid> <code> [comment]`, To-Path, From-Path,
/// end-line with `$`.
pub fn write_response(
    tid: &[u8],
    code: u16,
    comment: Option<&[u8]>,
    to_path: &[u8],
    from_path: &[u8],
    out: &mut BytesMut,
) {
    out.reserve(64 + 2 * tid.len() + to_path.len() + from_path.len());
    out.put_slice(b"MSRP ");
    out.put_slice(tid);
    out.put_u8(b' ');
    put_3digits(out, code);
    if let Some(c) = comment {
        out.put_u8(b' ');
        out.put_slice(c);
    }
    out.put_slice(b"\r\nTo-Path: ");
    out.put_slice(to_path);
    out.put_slice(b"\r\nFrom-Path: ");
    out.put_slice(from_path);
    out.put_slice(CRLF);
    put_end_line(out, tid, Continuation::End);
}

/// A REPORT request (RFC 4975 §7.1.2), paths pre-rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    pub tid: &'a [u8],
    pub to_path: &'a [u8],
    pub from_path: &'a [u8],
    pub message_id: &'a [u8],
    pub byte_range: ByteRange,
    /// The status code in namespace 000, e.g. 200.
    pub code: u16,
    /// The reason phrase, e.g. `OK`.
    pub comment: Option<&'a [u8]>,
}

/// Writes a complete REPORT: To-Path, From-Path, Message-ID, Byte-Range, `Status: 000 <code>
/// [comment]`, end-line with `$`.
pub fn write_report(r: &Report<'_>, out: &mut BytesMut) {
    out.reserve(128 + 2 * r.tid.len() + r.to_path.len() + r.from_path.len() + r.message_id.len());
    out.put_slice(b"MSRP ");
    out.put_slice(r.tid);
    out.put_slice(b" REPORT\r\nTo-Path: ");
    out.put_slice(r.to_path);
    out.put_slice(b"\r\nFrom-Path: ");
    out.put_slice(r.from_path);
    out.put_slice(b"\r\nMessage-ID: ");
    out.put_slice(r.message_id);
    out.put_slice(b"\r\nByte-Range: ");
    put_byte_range(out, r.byte_range);
    out.put_slice(b"\r\nStatus: 000 ");
    put_3digits(out, r.code);
    if let Some(c) = r.comment {
        out.put_u8(b' ');
        out.put_slice(c);
    }
    out.put_slice(CRLF);
    put_end_line(out, r.tid, Continuation::End);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_uri_writes_what_display_shows() {
        let mut uris: Vec<Uri> = [
            "msrp://127.0.0.1:2855/abc;tcp",
            "msrps://0.0.0.0:1/s;tcp",
            "msrp://255.255.255.255:65535/x=y+z;tcp;rn=1;flag",
            "msrp://user:pw%20x@relay.example.com:9;tcp",
            "msrp://[2001:db8::1]:2855/sid;tcp",
            "msrp://host/sid;tcp",
            "msrp://10.0.12.7/a;ws;x=1",
        ]
        .iter()
        .map(|t| Uri::parse(&Bytes::from_static(t.as_bytes())).expect(t))
        .collect();
        // Hand-built, with bytes that are not UTF-8 (shown lossily by both).
        let mut odd = uris[0].clone();
        odd.session_id = Bytes::from_static(b"s\xffid\xc3");
        odd.host = Host::Name(Bytes::from_static(b"h\x80"));
        odd.port = Some(0);
        uris.push(odd);
        for u in &uris {
            let mut out = BytesMut::new();
            put_uri(&mut out, u);
            assert_eq!(&out[..], u.to_string().as_bytes(), "{u}");
        }
    }

    use crate::msrp::parser::{parse, Limits, Parsed};
    use crate::msrp::uri::Host;
    use crate::msrp::Method;
    use proptest::prelude::*;

    fn reparse(b: &[u8]) -> Message {
        match parse(&Bytes::copy_from_slice(b), &Limits::default()) {
            Ok(Parsed::Complete(m, n)) => {
                assert_eq!(n, b.len(), "{}", String::from_utf8_lossy(b));
                m
            }
            other => panic!("{other:?} for {}", String::from_utf8_lossy(b)),
        }
    }

    fn uri(s: &str) -> Uri {
        Uri::parse_slice(s.as_bytes()).unwrap()
    }

    #[test]
    fn send_head_body_end_line_parse() {
        let to = render_path(&[uri("msrp://h:1/a;tcp"), uri("msrp://r/b;tcp")]);
        let from = render_path(&[uri("msrp://me/c;tcp")]);
        assert_eq!(&to[..], b"msrp://h:1/a;tcp msrp://r/b;tcp");
        let range = ByteRange {
            start: 11,
            end: None,
            total: Some(30),
        };
        let mut out = BytesMut::new();
        let head = SendHead {
            tid: b"tid12345",
            to_path: &to,
            from_path: &from,
            message_id: b"mid1",
            byte_range: range,
            success_report: true,
            failure_report: FailureReport::Partial,
            content_type: Some(b"application/octet-stream"),
            content_disposition: None,
        };
        write_send_head(&head, &mut out);
        out.put_slice(b"0123456789");
        write_end_line(b"tid12345", Continuation::More, &mut out);
        let m = reparse(&out);
        assert_eq!(&m.body[..], b"0123456789");
        assert_eq!(m.byte_range(), Some(range));
        assert!(m.success_report());
        assert_eq!(m.failure_report(), FailureReport::Partial);
        assert_eq!(m.to_path.len(), 2);
        assert_eq!(m.continuation, Continuation::More);

        // A Content-Disposition goes before Content-Type, and only with a content part.
        let cd = b"attachment; filename=\"r.pdf\"; filename*=UTF-8''r.pdf";
        for ct in [Some(&b"application/pdf"[..]), None] {
            let mut out = BytesMut::new();
            write_send_head(
                &SendHead {
                    content_type: ct,
                    content_disposition: Some(cd),
                    ..head
                },
                &mut out,
            );
            let text = String::from_utf8_lossy(&out).into_owned();
            match ct {
                Some(_) => assert!(
                    text.ends_with(
                        "\r\nContent-Disposition: attachment; filename=\"r.pdf\"; \
                         filename*=UTF-8''r.pdf\r\nContent-Type: application/pdf\r\n\r\n"
                    ),
                    "{text}"
                ),
                None => assert!(!text.contains("Content-Disposition"), "{text}"),
            }
        }

        // Empty body with Content-Type, and a chunk without body.
        for ct in [Some(&b"text/plain"[..]), None] {
            let mut out = BytesMut::new();
            write_send_head(
                &SendHead {
                    content_type: ct,
                    success_report: false,
                    failure_report: FailureReport::Yes,
                    ..head
                },
                &mut out,
            );
            write_end_line(b"tid12345", Continuation::Abort, &mut out);
            let m = reparse(&out);
            assert!(m.body.is_empty());
            assert_eq!(m.continuation, Continuation::Abort);
            assert_eq!(m.content_type().is_some(), ct.is_some());
            assert_eq!(m.headers.len(), 2 + usize::from(ct.is_some()));
        }
    }

    #[test]
    fn exact_bytes_of_a_bodyless_send() {
        let mut out = BytesMut::new();
        write_send_head(
            &SendHead {
                tid: b"48db5a4655432fa3",
                to_path: b"msrp://127.0.0.1:27712/rxsess;tcp",
                from_path: b"msrp://127.0.0.1:2855/43b7b647f7ef0e4660ba;tcp",
                message_id: b"c2e2f5a91aff2022",
                byte_range: ByteRange {
                    start: 1,
                    end: Some(0),
                    total: Some(0),
                },
                success_report: false,
                failure_report: FailureReport::Yes,
                content_type: None,
                content_disposition: None,
            },
            &mut out,
        );
        write_end_line(b"48db5a4655432fa3", Continuation::End, &mut out);
        // The first frame of the msrplib capture, byte for byte.
        let capture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/msrplib/msrplib-64k-report-per-chunk.sender-to-receiver.msrp"
        ))
        .unwrap();
        assert_eq!(&out[..], &capture[..out.len()]);
        let m = reparse(&out);
        assert_eq!(&m.message_id().unwrap()[..], b"c2e2f5a91aff2022");
    }

    #[test]
    fn response_and_report() {
        let mut out = BytesMut::new();
        write_response(
            b"abcd",
            200,
            Some(b"OK"),
            b"msrp://a/b;tcp",
            b"msrp://c/d;tcp",
            &mut out,
        );
        assert_eq!(
            &out[..],
            b"MSRP abcd 200 OK\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n-------abcd$\r\n"
        );
        let m = reparse(&out);
        assert_eq!(m.response_code(), Some(200));
        let mut out = BytesMut::new();
        let range = ByteRange {
            start: 1,
            end: Some(150000),
            total: Some(150000),
        };
        write_report(
            &Report {
                tid: b"9a64b3acf947bf9a",
                to_path: b"msrp://a/b;tcp",
                from_path: b"msrp://c/d;tcp",
                message_id: b"111fc6c2ffa8ff91",
                byte_range: range,
                code: 200,
                comment: Some(b"OK"),
            },
            &mut out,
        );
        let m = reparse(&out);
        assert_eq!(m.method(), Some(&Method::Report));
        assert_eq!(m.byte_range(), Some(range));
        let s = m.status().unwrap();
        assert_eq!((s.namespace, s.code), (0, 200));
        assert_eq!(&m.message_id().unwrap()[..], b"111fc6c2ffa8ff91");
    }

    #[test]
    fn end_line_detection() {
        assert!(body_contains_end_line(b"xx-------abcd+", b"abcd"));
        assert!(body_contains_end_line(b"-------abcd", b"abcd"));
        assert!(!body_contains_end_line(b"------abcd$", b"abcd"));
        assert!(!body_contains_end_line(b"-------abce", b"abcd"));
        let long = vec![b'a'; 80];
        let mut body = b"-------".to_vec();
        body.extend_from_slice(&long);
        assert!(body_contains_end_line(&body, &long));
    }

    #[test]
    fn numbers() {
        let mut out = BytesMut::new();
        put_u64(&mut out, 0);
        out.put_u8(b' ');
        put_u64(&mut out, u64::MAX);
        out.put_u8(b' ');
        put_3digits(&mut out, 7);
        assert_eq!(&out[..], b"0 18446744073709551615 007");
    }

    // ---- property: any valid message survives write -> parse ----

    fn ident(min: usize, max: usize) -> impl Strategy<Value = Bytes> {
        proptest::string::string_regex(&format!(
            "[a-zA-Z0-9][a-zA-Z0-9.+%=-]{{{},{}}}",
            min - 1,
            max - 1
        ))
        .unwrap()
        .prop_map(Bytes::from)
    }

    fn text(re: &str) -> impl Strategy<Value = Bytes> {
        proptest::string::string_regex(re)
            .unwrap()
            .prop_map(Bytes::from)
    }

    fn arb_uri() -> impl Strategy<Value = Uri> {
        let host = prop_oneof![
            text("[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?").prop_map(Host::Name),
            any::<[u8; 4]>().prop_map(|o| Host::V4(o.into())),
            any::<[u16; 8]>().prop_map(|s| Host::V6(s.into())),
        ];
        (
            any::<bool>(),
            proptest::option::of(text("[a-z]{1,6}")),
            host,
            proptest::option::of(any::<u16>()),
            prop_oneof![Just(Bytes::new()), text("[A-Za-z0-9+=/._~-]{1,16}")],
            text("[a-z]{2,4}"),
            proptest::collection::vec(
                (
                    text("[a-z]{1,5}"),
                    proptest::option::of(text("[a-z0-9]{1,5}")),
                ),
                0..2,
            ),
        )
            .prop_map(
                |(secure, userinfo, host, port, session_id, transport, params)| Uri {
                    secure,
                    userinfo,
                    host,
                    port,
                    session_id,
                    transport,
                    params,
                },
            )
    }

    fn arb_range() -> impl Strategy<Value = ByteRange> {
        (
            1u64..1_000_000,
            proptest::option::of(0u64..1000),
            any::<bool>(),
            0u64..1000,
        )
            .prop_map(|(start, len, known_total, extra)| {
                let end = len.map(|l| start + l - 1);
                let total = known_total.then(|| end.unwrap_or(start) + extra);
                ByteRange { start, end, total }
            })
    }

    fn arb_header() -> impl Strategy<Value = Header> {
        let value = "[!-~]([ -~]{0,20}[!-~])?";
        prop_oneof![
            ident(1, 20).prop_map(Header::MessageId),
            arb_range().prop_map(Header::ByteRange),
            any::<bool>().prop_map(Header::SuccessReport),
            prop_oneof![
                Just(FailureReport::Yes),
                Just(FailureReport::No),
                Just(FailureReport::Partial)
            ]
            .prop_map(Header::FailureReport),
            (
                0u16..1000,
                100u16..1000,
                proptest::option::of(text("[A-Za-z]([A-Za-z ]{0,10}[A-Za-z])?"))
            )
                .prop_map(|(namespace, code, comment)| Header::Status(Status {
                    namespace,
                    code,
                    comment
                })),
            text("[a-z]{1,8}/[a-z0-9.+-]{1,8}(; charset=utf-8)?").prop_map(Header::ContentType),
            proptest::collection::vec(arb_uri(), 1..3).prop_map(Header::UsePath),
            text(value).prop_map(Header::WwwAuthenticate),
            text(value).prop_map(Header::Authorization),
            any::<u32>().prop_map(Header::Expires),
            any::<u32>().prop_map(Header::MinExpires),
            any::<u32>().prop_map(Header::MaxExpires),
            (
                text("X-[A-Za-z0-9-]{1,10}"),
                prop_oneof![Just(Bytes::new()), text(value)]
            )
                .prop_map(|(name, value)| Header::Other { name, value }),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let kind = prop_oneof![
            Just(Kind::Request(Method::Send)),
            Just(Kind::Request(Method::Report)),
            Just(Kind::Request(Method::Auth)),
            text("[A-Z]{1,10}")
                .prop_filter("known method", |m| !matches!(
                    &m[..],
                    b"SEND" | b"REPORT" | b"AUTH"
                ))
                .prop_map(|m| Kind::Request(Method::Other(m))),
            (
                100u16..1000,
                proptest::option::of(text("[A-Za-z][A-Za-z ]{0,15}"))
            )
                .prop_map(|(code, comment)| Kind::Response { code, comment }),
        ];
        (
            ident(4, 32),
            kind,
            proptest::collection::vec(arb_uri(), 1..3),
            proptest::collection::vec(arb_uri(), 1..3),
            proptest::collection::vec(arb_header(), 0..8),
            proptest::collection::vec(any::<u8>(), 0..200),
            prop_oneof![
                Just(Continuation::More),
                Just(Continuation::End),
                Just(Continuation::Abort)
            ],
        )
            .prop_filter("body holds the end-line", |(tid, _, _, _, _, body, _)| {
                !body_contains_end_line(body, tid)
            })
            .prop_map(
                |(tid, kind, to_path, from_path, headers, body, continuation)| Message {
                    transaction_id: tid,
                    kind,
                    to_path,
                    from_path,
                    headers,
                    body: Bytes::from(body),
                    continuation,
                },
            )
    }

    proptest! {
        #[test]
        fn write_then_parse_is_identity(m in arb_message()) {
            let mut out = BytesMut::new();
            write_message(&m, &mut out);
            let back = reparse(&out);
            prop_assert_eq!(back, m);
        }
    }
}
