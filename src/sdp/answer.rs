//! Parsing the participant's SDP answer to our push offer.
//!
//! Which URI we use (RFC 4975 §5.4, §8.1; RFC 4976 §5): the answer's `a=path` lists, in order, the
//! answerer's relays (nearest to us first) and then the answerer's own session URI. So:
//! - we connect to the **first** URI ([`Answer::connect_to`]) — with no relay it is the only one;
//! - the **whole list** in order is the `To-Path` of our SENDs ([`Answer::path`]);
//! - the **last** URI is the participant itself ([`Answer::peer`]), whose session-id identifies
//!   the session (and matches an incoming connection when the answer says `a=setup:active`).
//!
//! `a=setup` (RFC 6135, RFC 4145): absent means the RFC 4975 default — the offerer connects, so the
//! answerer is `passive`.

use bytes::Bytes;

use super::file_selector::FileSelector;
use super::{shown, SdpError};
use crate::msrp::uri::{parse_path, Uri, UriError};

/// `a=setup` (RFC 4145 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The answerer connects to us.
    Active,
    /// The answerer waits; we connect (also the default when absent).
    Passive,
    /// Not valid in an answer; treated like passive by [`Answer::we_connect`].
    ActPass,
    /// No connection for now.
    HoldConn,
}

/// The media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// What we need from an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The `m=message` port (never 0: that is [`SdpError::Rejected`]).
    pub port: u16,
    /// `TCP/TLS/MSRP` rather than `TCP/MSRP`.
    pub tls: bool,
    /// The full `a=path`, in order: the `To-Path` of our requests.
    pub path: Vec<Uri>,
    /// The first URI of the path: where we open the TCP connection.
    pub connect_to: Uri,
    /// The last URI of the path: the participant's own session URI.
    pub peer: Uri,
    /// `a=setup`, `Passive` when absent.
    pub setup: Setup,
    /// Whether `a=setup` was present.
    pub setup_given: bool,
    /// Media-level direction, else session-level, else `sendrecv`.
    pub direction: Direction,
    /// `a=accept-types`, split on whitespace (empty when absent).
    pub accept_types: Vec<String>,
    pub max_size: Option<u64>,
    pub file_transfer_id: Option<String>,
    /// The echoed `a=file-selector`, when present and well-formed (informational only).
    pub file_selector: Option<FileSelector>,
    /// `a=fingerprint` values for this media (RFC 8122); see [`super::transport`].
    pub fingerprints: Vec<crate::tls::Fingerprint>,
    /// `a=file-range` as given (RFC 5547 §8), trimmed; see [`super::offer::parse_file_range`].
    pub file_range: Option<String>,
}

impl Answer {
    /// True when we open the connection (answer passive, or the invalid actpass), false when the
    /// participant connects to us (`active`) or holds the connection.
    pub fn we_connect(&self) -> bool {
        matches!(self.setup, Setup::Passive | Setup::ActPass)
    }

    /// True when the participant agreed to receive (`recvonly` or `sendrecv`).
    pub fn will_receive(&self) -> bool {
        matches!(self.direction, Direction::RecvOnly | Direction::SendRecv)
    }
}

fn direction(name: &str) -> Option<Direction> {
    match name.to_ascii_lowercase().as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

fn parse_setup(line: usize, raw: &str, value: &str) -> Result<Setup, SdpError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "active" => Ok(Setup::Active),
        "passive" => Ok(Setup::Passive),
        "actpass" => Ok(Setup::ActPass),
        "holdconn" => Ok(Setup::HoldConn),
        _ => Err(SdpError::BadSetup {
            line,
            text: shown(raw),
        }),
    }
}

/// The attribute name and value of an `a=` line value.
fn split_attr(v: &str) -> (&str, Option<&str>) {
    match v.split_once(':') {
        Some((n, val)) => (n.trim(), Some(val)),
        None => (v.trim(), None),
    }
}

/// Parses one `m=` line value: `(media, port, proto)`.
fn parse_m(line: usize, raw: &str, v: &str) -> Result<(String, u16, String), SdpError> {
    let bad = || SdpError::BadMedia {
        line,
        text: shown(raw),
    };
    let mut it = v.split_ascii_whitespace();
    let media = it.next().ok_or_else(bad)?;
    let port_field = it.next().ok_or_else(bad)?;
    let proto = it.next().ok_or_else(bad)?;
    let port_str = port_field.split('/').next().unwrap_or(port_field);
    if port_str.is_empty() || !port_str.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let port: u16 = port_str.parse().map_err(|_| bad())?;
    Ok((media.to_ascii_lowercase(), port, proto.to_ascii_uppercase()))
}

/// The default bound on the URIs of an answer's `a=path` (the setting `max_path_uris`).
pub const DEFAULT_MAX_PATH_URIS: usize = 16;

/// Parses an SDP answer with at most [`DEFAULT_MAX_PATH_URIS`] URIs in its `a=path`; see
/// [`parse_answer_with`].
pub fn parse_answer(sdp: &str) -> Result<Answer, SdpError> {
    parse_answer_with(sdp, DEFAULT_MAX_PATH_URIS)
}

/// Parses an SDP answer. Accepts CRLF or LF line ends and any attribute order; never panics.
/// An `a=path` of more than `max_path_uris` URIs is refused before its URIs are parsed (each
/// would be repeated in every SEND's `To-Path`).
pub fn parse_answer_with(sdp: &str, max_path_uris: usize) -> Result<Answer, SdpError> {
    // Session-level values used as fallbacks.
    let mut session_setup: Option<Setup> = None;
    let mut session_dir: Option<Direction> = None;
    let mut seen_version = false;

    // The chosen media section, once found; `in_chosen` while its lines are being read.
    let mut chosen: Option<(usize, u16, bool)> = None;
    let mut in_chosen = false;
    let mut in_media = false;

    let mut path: Option<Vec<Uri>> = None;
    let mut setup: Option<Setup> = None;
    let mut dir: Option<Direction> = None;
    let mut accept_types = Vec::new();
    let mut max_size = None;
    let mut file_transfer_id = None;
    let mut file_selector = None;
    let mut file_range = None;

    for (idx, raw) in sdp.split('\n').enumerate() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        if !seen_version {
            if raw.trim_end() != "v=0" {
                return Err(SdpError::NotSdp { text: shown(raw) });
            }
            seen_version = true;
            continue;
        }
        let b = raw.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b'=' {
            return Err(SdpError::BadLine {
                line: line_no,
                text: shown(raw),
            });
        }
        // b[0] and b[1] are ASCII, so index 2 is a char boundary.
        let value = &raw[2..];
        match b[0] {
            b'm' => {
                in_media = true;
                in_chosen = false;
                let (media, port, proto) = parse_m(line_no, raw, value)?;
                if chosen.is_none()
                    && media == "message"
                    && (proto == "TCP/MSRP" || proto == "TCP/TLS/MSRP")
                {
                    chosen = Some((line_no, port, proto == "TCP/TLS/MSRP"));
                    in_chosen = true;
                }
            }
            b'a' => {
                let (name, val) = split_attr(value);
                let name_lc = name.to_ascii_lowercase();
                if !in_media {
                    if name_lc == "setup" {
                        session_setup = Some(parse_setup(line_no, raw, val.unwrap_or(""))?);
                    } else if let Some(d) = direction(&name_lc) {
                        session_dir = Some(d);
                    }
                    continue;
                }
                if !in_chosen {
                    continue;
                }
                match (name_lc.as_str(), val) {
                    ("path", Some(v)) => {
                        if path.is_some() {
                            return Err(SdpError::BadPath {
                                line: line_no,
                                text: shown(raw),
                                reason: "more than one a=path".to_owned(),
                            });
                        }
                        let v = v.trim_matches([' ', '\t']);
                        let n = v.split_ascii_whitespace().count();
                        if n > max_path_uris {
                            return Err(SdpError::BadPath {
                                line: line_no,
                                text: shown(raw),
                                reason: format!(
                                    "{n} URIs, more than max_path_uris ({max_path_uris})"
                                ),
                            });
                        }
                        let uris = parse_path(&Bytes::copy_from_slice(v.as_bytes()))
                            .map_err(|e| SdpError::bad_path(line_no, raw, e))?;
                        let last_ok = uris.last().is_some_and(|u| !u.session_id.is_empty());
                        if !last_ok {
                            return Err(SdpError::BadPath {
                                line: line_no,
                                text: shown(raw),
                                reason: "the last URI has no session-id".to_owned(),
                            });
                        }
                        path = Some(uris);
                    }
                    ("path", None) => {
                        return Err(SdpError::bad_path(line_no, raw, UriError::EmptyPath))
                    }
                    ("setup", v) => setup = Some(parse_setup(line_no, raw, v.unwrap_or(""))?),
                    ("accept-types", Some(v)) => {
                        accept_types = v.split_ascii_whitespace().map(str::to_owned).collect();
                    }
                    ("max-size", Some(v)) => {
                        max_size =
                            Some(
                                v.trim()
                                    .parse::<u64>()
                                    .map_err(|_| SdpError::BadAttribute {
                                        line: line_no,
                                        text: shown(raw),
                                    })?,
                            );
                    }
                    ("file-transfer-id", Some(v)) => file_transfer_id = Some(v.trim().to_owned()),
                    ("file-selector", Some(v)) => file_selector = FileSelector::parse(v).ok(),
                    ("file-range", Some(v)) => file_range = Some(v.trim().to_owned()),
                    (other, None) => {
                        if let Some(d) = direction(other) {
                            dir = Some(d);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !seen_version {
        return Err(SdpError::NotSdp {
            text: shown(sdp.lines().next().unwrap_or("")),
        });
    }
    let (media_line, port, tls) = chosen.ok_or(SdpError::NoMessageMedia)?;
    if port == 0 {
        return Err(SdpError::Rejected);
    }
    let path = path.ok_or(SdpError::MissingPath { media_line })?;
    let (Some(connect_to), Some(peer)) = (path.first().cloned(), path.last().cloned()) else {
        // parse_path never returns an empty list; kept as an error rather than a panic.
        return Err(SdpError::MissingPath { media_line });
    };
    let setup_given = setup.is_some() || session_setup.is_some();
    Ok(Answer {
        port,
        tls,
        path,
        connect_to,
        peer,
        setup: setup.or(session_setup).unwrap_or(Setup::Passive),
        setup_given,
        direction: dir.or(session_dir).unwrap_or(Direction::SendRecv),
        accept_types,
        max_size,
        file_transfer_id,
        file_selector,
        fingerprints: super::transport::parse_fingerprints(sdp)?,
        file_range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::uri::Host;
    use proptest::prelude::*;

    const BLINK: &str = "v=0\r\n\
        o=- 3915645478 3915645479 IN IP4 192.168.1.23\r\n\
        s=Blink 5.6.0 (Linux)\r\n\
        t=0 0\r\n\
        m=message 51234 TCP/MSRP *\r\n\
        c=IN IP4 192.168.1.23\r\n\
        a=path:msrp://192.168.1.23:51234/a8Qp2wX7nLmR;tcp\r\n\
        a=accept-types:*\r\n\
        a=accept-wrapped-types:*\r\n\
        a=setup:passive\r\n\
        a=recvonly\r\n\
        a=file-selector:name:\"report.pdf\" type:application/pdf size:123456\r\n\
        a=file-transfer-id:vBnG916bdberum2fFEABR\r\n\
        a=file-disposition:attachment\r\n";

    #[test]
    fn blink_like_answer() {
        let a = parse_answer(BLINK).unwrap();
        assert_eq!(a.port, 51234);
        assert!(!a.tls);
        assert_eq!(a.path.len(), 1);
        assert_eq!(a.connect_to, a.peer);
        assert_eq!(a.peer.host, Host::V4("192.168.1.23".parse().unwrap()));
        assert_eq!(a.peer.port, Some(51234));
        assert_eq!(&a.peer.session_id[..], b"a8Qp2wX7nLmR");
        assert_eq!((a.setup, a.setup_given), (Setup::Passive, true));
        assert!(a.we_connect());
        assert_eq!(a.direction, Direction::RecvOnly);
        assert!(a.will_receive());
        assert_eq!(a.accept_types, ["*"]);
        assert_eq!(a.file_transfer_id.as_deref(), Some("vBnG916bdberum2fFEABR"));
        let sel = a.file_selector.unwrap();
        assert_eq!(sel.name.as_deref(), Some("report.pdf"));
        assert_eq!(sel.size, Some(123_456));
    }

    #[test]
    fn lf_only_and_any_order() {
        let lf = "v=0\n\
            o=- 1 1 IN IP4 10.0.0.1\n\
            s=-\n\
            t=0 0\n\
            a=setup:active\n\
            m=audio 4000 RTP/AVP 0\n\
            a=path:msrp://wrong.example:1/zz;tcp\n\
            a=recvonly\n\
            m=message 7000 tcp/msrp *\n\
            a=file-transfer-id:x\n\
            a=max-size:999\n\
            a=path:msrp://10.0.0.1:7000/s1;tcp   \n\
            \n";
        let a = parse_answer(lf).unwrap();
        assert_eq!(a.port, 7000);
        assert_eq!(&a.peer.session_id[..], b"s1");
        // Session-level setup applies; the audio section's attributes do not.
        assert_eq!(a.setup, Setup::Active);
        assert!(!a.we_connect());
        assert_eq!(a.direction, Direction::SendRecv);
        assert_eq!(a.max_size, Some(999));
        assert!(a.accept_types.is_empty());
    }

    #[test]
    fn two_path_uris_relay_first() {
        let sdp = BLINK.replace(
            "a=path:msrp://192.168.1.23:51234/a8Qp2wX7nLmR;tcp",
            "a=path:msrps://relay.example.net:2855/r3lay;tcp msrp://192.168.1.23:51234/a8Qp2wX7nLmR;tcp",
        );
        let a = parse_answer(&sdp).unwrap();
        assert_eq!(a.path.len(), 2);
        assert_eq!(a.connect_to, a.path[0]);
        assert_eq!(
            a.connect_to.host,
            Host::Name(Bytes::from_static(b"relay.example.net"))
        );
        assert!(a.connect_to.secure);
        assert_eq!(a.peer, a.path[1]);
        assert_eq!(&a.peer.session_id[..], b"a8Qp2wX7nLmR");
    }

    #[test]
    fn setup_values_and_default() {
        for (v, want) in [
            ("active", Setup::Active),
            ("PASSIVE", Setup::Passive),
            ("actpass", Setup::ActPass),
            ("holdconn", Setup::HoldConn),
        ] {
            let sdp = BLINK.replace("a=setup:passive", &format!("a=setup:{v}"));
            assert_eq!(parse_answer(&sdp).unwrap().setup, want, "{v}");
        }
        let a = parse_answer(&BLINK.replace("a=setup:passive\r\n", "")).unwrap();
        assert_eq!((a.setup, a.setup_given), (Setup::Passive, false));
        assert!(a.we_connect());
        let e = parse_answer(&BLINK.replace("a=setup:passive", "a=setup:sideways")).unwrap_err();
        assert_eq!(
            e,
            SdpError::BadSetup {
                line: 10,
                text: "\"a=setup:sideways\"".into()
            }
        );
        assert!(e.to_string().contains("line 10"));
    }

    #[test]
    fn tls_media() {
        let sdp = BLINK
            .replace("TCP/MSRP", "TCP/TLS/MSRP")
            .replace("msrp://", "msrps://");
        let a = parse_answer(&sdp).unwrap();
        assert!(a.tls && a.peer.secure);
    }

    #[test]
    fn port_zero_is_rejected() {
        let sdp = BLINK
            .replace("m=message 51234", "m=message 0")
            .replace("a=path:msrp://192.168.1.23:51234/a8Qp2wX7nLmR;tcp\r\n", "");
        assert_eq!(parse_answer(&sdp), Err(SdpError::Rejected));
    }

    #[test]
    fn missing_or_bad_path() {
        let no_path = BLINK.replace("a=path:msrp://192.168.1.23:51234/a8Qp2wX7nLmR;tcp\r\n", "");
        let e = parse_answer(&no_path).unwrap_err();
        assert_eq!(e, SdpError::MissingPath { media_line: 5 });
        assert!(e.to_string().contains("a=path"), "{e}");

        let bad = BLINK.replace("msrp://192.168.1.23:51234/", "http://192.168.1.23:51234/");
        let e = parse_answer(&bad).unwrap_err();
        assert!(matches!(e, SdpError::BadPath { line: 7, .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("line 7") && msg.contains("http://"), "{msg}");

        let no_session = BLINK.replace("51234/a8Qp2wX7nLmR;tcp", "51234;tcp");
        let e = parse_answer(&no_session).unwrap_err();
        assert!(e.to_string().contains("no session-id"), "{e}");

        let empty = BLINK.replace(
            "a=path:msrp://192.168.1.23:51234/a8Qp2wX7nLmR;tcp",
            "a=path:",
        );
        assert!(matches!(
            parse_answer(&empty),
            Err(SdpError::BadPath { line: 7, .. })
        ));
        let twice = BLINK.replace(
            "a=recvonly",
            "a=recvonly\r\na=path:msrp://192.168.1.23:51234/other;tcp",
        );
        assert!(matches!(
            parse_answer(&twice),
            Err(SdpError::BadPath { line: 12, .. })
        ));
    }

    /// Finding 12 of issue 14: an answer with 1000 path URIs was accepted (36 KB SEND heads).
    #[test]
    fn path_length_is_bounded() {
        let uri = "msrp://192.168.1.23:51234/a8Qp2wX7nLmR;tcp";
        let long = |n: usize| {
            let relays = vec!["msrp://relay.example:2855/r1;tcp"; n - 1].join(" ");
            BLINK.replace(uri, &format!("{relays} {uri}"))
        };
        for n in [1000, DEFAULT_MAX_PATH_URIS + 1] {
            let e = parse_answer(&long(n)).unwrap_err();
            assert!(
                matches!(&e, SdpError::BadPath { reason, .. } if reason.contains("max_path_uris")),
                "{n}: {e:?}"
            );
        }
        let a = parse_answer(&long(DEFAULT_MAX_PATH_URIS)).unwrap();
        assert_eq!(a.path.len(), DEFAULT_MAX_PATH_URIS);
        assert!(parse_answer_with(&long(3), 2).is_err());
        assert_eq!(parse_answer_with(&long(3), 3).unwrap().path.len(), 3);
    }

    #[test]
    fn garbage() {
        assert!(matches!(parse_answer(""), Err(SdpError::NotSdp { .. })));
        assert!(matches!(
            parse_answer("SIP/2.0 200 OK\r\n"),
            Err(SdpError::NotSdp { .. })
        ));
        assert_eq!(
            parse_answer(
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            ),
            Err(SdpError::NoMessageMedia)
        );
        let e = parse_answer("v=0\r\nthis is not sdp\r\n").unwrap_err();
        assert_eq!(
            e,
            SdpError::BadLine {
                line: 2,
                text: "\"this is not sdp\"".into()
            }
        );
        let e = parse_answer("v=0\r\nm=message x TCP/MSRP *\r\n").unwrap_err();
        assert!(matches!(e, SdpError::BadMedia { line: 2, .. }));
        let e = parse_answer("v=0\r\nm=message 99999 TCP/MSRP *\r\n").unwrap_err();
        assert!(matches!(e, SdpError::BadMedia { line: 2, .. }));
        let e = parse_answer(
            &BLINK
                .replace("a=max-size", "a=x")
                .replace("a=recvonly", "a=max-size:-1"),
        )
        .unwrap_err();
        assert!(matches!(e, SdpError::BadAttribute { line: 11, .. }));
        // Wrong transport for the message media: not usable.
        assert_eq!(
            parse_answer(&BLINK.replace("TCP/MSRP", "TCP/WS/MSRP")),
            Err(SdpError::NoMessageMedia)
        );
        // A long garbage line is shortened in the error.
        let long = format!("v=0\r\n{}\r\n", "\u{1}".repeat(10_000));
        let msg = parse_answer(&long).unwrap_err().to_string();
        assert!(msg.len() < 1_000, "{}", msg.len());
    }

    #[test]
    fn our_offer_parses_as_an_answer() {
        use crate::sdp::offer::{build_offer, FileOffer, OfferParams};
        let p = OfferParams {
            session_version: 1,
            origin_user: "-".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: 2855,
            path: Uri::parse_slice(b"msrp://127.0.0.1:2855/abc;tcp").unwrap(),
            accept_types: "*".into(),
            max_size: None,
        };
        let f = FileOffer {
            name: "a \"b\".txt".into(),
            content_type: "text/plain".into(),
            size: Some(3),
            sha1: Some([0xaa; 20]),
            file_transfer_id: "t1".into(),
            disposition: "attachment".into(),
            description: Some("desc".into()),
            file_range: Some((2, 3)),
        };
        let a = parse_answer(&build_offer(&p, &f)).unwrap();
        assert_eq!(a.file_range.as_deref(), Some("2-3"));
        assert_eq!(a.peer, p.path);
        assert_eq!(a.setup, Setup::ActPass);
        assert_eq!(a.direction, Direction::SendOnly);
        let sel = a.file_selector.unwrap();
        assert_eq!(sel.name.as_deref(), Some("a \"b\".txt"));
        assert_eq!(sel.sha1, Some([0xaa; 20]));
    }

    proptest! {
        #[test]
        fn never_panics_on_random_text(s in ".{0,400}") {
            let _ = parse_answer(&s);
            let _ = parse_answer(&format!("v=0\r\n{s}"));
        }

        #[test]
        fn never_panics_on_random_lines(
            lines in proptest::collection::vec(
                ("(v|o|s|t|m|c|a|x|=| )", "(=|:)?", "(message|path:|setup:|0|65536|msrp://|TCP/MSRP|\\*| |;tcp|a/b)*"),
                0..20,
            ),
            lf_only in any::<bool>(),
        ) {
            let eol = if lf_only { "\n" } else { "\r\n" };
            let mut s = format!("v=0{eol}");
            for (a, b, c) in lines {
                s.push_str(&format!("{a}{b}{c}{eol}"));
            }
            let _ = parse_answer(&s);
        }

        #[test]
        fn never_panics_on_any_string(s in any::<String>()) {
            let _ = parse_answer(&s);
            let _ = parse_answer(&format!("v=0\n{s}"));
        }

        #[test]
        fn never_panics_on_mutated_answers(pos in 0usize..600, insert in ".{0,8}", cut in 0usize..20) {
            let mut s = BLINK.to_owned();
            let mut at = pos.min(s.len());
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.replace_range(at..end, &insert);
            let _ = parse_answer(&s);
        }
    }
}
