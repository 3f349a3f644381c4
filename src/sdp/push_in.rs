//! A participant's own RFC 5547 push offer (it sends a file to the room) and our answer.
//!
//! The offer is read with the same tolerant parser as the answers to our offers
//! ([`parse_answer_with`]: line endings, attribute order, `a=path` bounds), then held to what a
//! push needs: `a=sendonly` (RFC 5547 §8: the offerer sends), an `a=file-selector` that parses
//! and names the size, and a setup role that lets the participant connect to us (`active`,
//! `actpass` or none — RFC 4975 §5.4 makes the offerer the active side by default). The answer
//! says `a=recvonly`, `a=setup:passive`, our own `a=path`, our accept-types, and repeats the
//! file-selector (RFC 5547 §8: the answerer copies it) rebuilt from the parsed values, so no
//! byte of the participant's text is echoed unchecked.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::answer::{parse_answer_with, Direction, Setup};
use super::file_selector::{
    escape_file_name, format_sha1, is_token_char, selector_type, FileSelector,
};
use super::SdpError;
use crate::msrp::uri::Uri;
use crate::tls::Fingerprint;

/// What a participant's push offer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOffer {
    /// `TCP/TLS/MSRP` (or an `msrps` path): the participant connects with TLS.
    pub tls: bool,
    /// The participant's `a=path` (relays first, itself last).
    pub path: Vec<Uri>,
    /// The file's name, as offered (decoded; untrusted).
    pub name: String,
    /// The file's media type (`application/octet-stream` when the selector has none).
    pub content_type: String,
    /// The file's size in bytes.
    pub size: u64,
    /// `hash:sha-1`, when the offer gives one.
    pub sha1: Option<[u8; 20]>,
    /// `a=file-transfer-id`, token characters only (empty when absent).
    pub file_transfer_id: String,
    /// The participant's `a=fingerprint`s (TLS).
    pub fingerprints: Vec<Fingerprint>,
}

/// Why a push offer is refused, with the SIP status the refusal maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOfferError {
    /// Not an MSRP SDP we can read, or not a push (488 Not Acceptable Here).
    Unacceptable(String),
    /// The file's media type is not one of our accept-types (415 Unsupported Media Type).
    UnsupportedType(String),
}

impl PushOfferError {
    /// The SIP status of the refusal.
    pub fn sip_code(&self) -> u16 {
        match self {
            PushOfferError::Unacceptable(_) => 488,
            PushOfferError::UnsupportedType(_) => 415,
        }
    }
}

impl std::fmt::Display for PushOfferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushOfferError::Unacceptable(r) | PushOfferError::UnsupportedType(r) => f.write_str(r),
        }
    }
}

impl From<SdpError> for PushOfferError {
    fn from(e: SdpError) -> Self {
        PushOfferError::Unacceptable(e.to_string())
    }
}

/// The first `a=file-selector` value of the SDP, when there is one.
fn file_selector_line(sdp: &str) -> Option<&str> {
    sdp.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .find_map(|l| {
            let v = l.strip_prefix("a=")?;
            let (name, value) = v.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("file-selector")
                .then_some(value)
        })
}

/// Whether `content_type` is one of `accept_types` (`*`, `type/*` or the exact type, case
/// insensitive; parameters ignored).
pub fn type_accepted(accept_types: &str, content_type: &str) -> bool {
    let bare = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let major = bare.split('/').next().unwrap_or("");
    accept_types.split_ascii_whitespace().any(|t| {
        let t = t.to_ascii_lowercase();
        t == "*" || t == bare || t.strip_suffix("/*").is_some_and(|m| m == major)
    })
}

/// Reads a participant's push offer, refusing what a push to the room cannot be.
/// `accept_types` is our own list (`*` for any).
pub fn parse_push_offer(
    sdp: &str,
    max_path_uris: usize,
    accept_types: &str,
) -> Result<PushOffer, PushOfferError> {
    let a = parse_answer_with(sdp, max_path_uris)?;
    let bad = |r: &str| Err(PushOfferError::Unacceptable(r.to_owned()));
    if a.direction != Direction::SendOnly {
        return bad("not a file push: the m=message line is not a=sendonly");
    }
    if matches!(a.setup, Setup::Passive | Setup::HoldConn) {
        return bad("a=setup:passive or holdconn: the participant must connect to us");
    }
    let Some(value) = file_selector_line(sdp) else {
        return bad("no a=file-selector");
    };
    let sel = FileSelector::parse(value)?;
    let Some(size) = sel.size else {
        return bad("a=file-selector without size");
    };
    let content_type = sel
        .content_type
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    if !type_accepted(accept_types, &content_type) {
        return Err(PushOfferError::UnsupportedType(format!(
            "type {content_type:?} is not one of the accepted types {accept_types:?}"
        )));
    }
    let tls = a.tls || a.path.first().is_some_and(|u| u.secure);
    Ok(PushOffer {
        tls,
        path: a.path,
        name: sel.name.clone().unwrap_or_default(),
        content_type,
        size,
        sha1: sel.sha1,
        file_transfer_id: a
            .file_transfer_id
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii() && is_token_char(*c as u8))
            .collect(),
        fingerprints: a.fingerprints,
    })
}

/// Our side of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAnswerParams {
    /// `o=` session id and version.
    pub session_version: u64,
    /// `o=` and `c=` address.
    pub address: IpAddr,
    /// `m=` port.
    pub port: u16,
    /// Our `a=path` URI (its session-id names the session); `msrps` makes it `TCP/TLS/MSRP`.
    pub path: Uri,
    /// `a=accept-types`.
    pub accept_types: String,
    /// `a=max-size`: the largest file we take.
    pub max_size: u64,
    /// Our certificate's fingerprint, written when the session is TLS.
    pub fingerprint: Option<Fingerprint>,
}

/// The answer to `offer`: `a=recvonly`, `a=setup:passive`, our path, the file-selector repeated.
pub fn build_push_answer(p: &PushAnswerParams, offer: &PushOffer) -> String {
    let (addr_type, addr) = match p.address {
        IpAddr::V4(v) => ("IP4", v.to_string()),
        IpAddr::V6(v) => ("IP6", v.to_string()),
    };
    let secure = p.path.secure;
    let proto = if secure { "TCP/TLS/MSRP" } else { "TCP/MSRP" };
    let types: Vec<&str> = p
        .accept_types
        .split_ascii_whitespace()
        .filter(|t| t.bytes().all(|b| is_token_char(b) || b == b'/'))
        .collect();
    let types = if types.is_empty() {
        "*".to_owned()
    } else {
        types.join(" ")
    };
    let mut name = escape_file_name(&offer.name);
    if name.is_empty() {
        name.push_str("file");
    }
    let mut s = String::with_capacity(512);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=msrpcast {v} {v} IN {addr_type} {addr}\r\ns=-\r\nc=IN {addr_type} {addr}\r\n\
         t=0 0\r\nm=message {} {proto} *\r\n",
        p.port,
        v = p.session_version
    );
    s.push_str("a=recvonly\r\n");
    let _ = write!(s, "a=accept-types:{types}\r\n");
    let _ = write!(s, "a=max-size:{}\r\n", p.max_size);
    let _ = write!(s, "a=path:{}\r\n", p.path);
    s.push_str("a=setup:passive\r\n");
    if let (true, Some(fp)) = (secure, &p.fingerprint) {
        let _ = write!(s, "a=fingerprint:{fp}\r\n");
    }
    let _ = write!(
        s,
        "a=file-selector:name:\"{name}\" type:{} size:{}",
        selector_type(&offer.content_type),
        offer.size
    );
    if let Some(h) = &offer.sha1 {
        let _ = write!(s, " hash:sha-1:{}", format_sha1(h));
    }
    s.push_str("\r\n");
    if !offer.file_transfer_id.is_empty() {
        let _ = write!(s, "a=file-transfer-id:{}\r\n", offer.file_transfer_id);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::parse_answer;

    const PUSH: &str = "v=0\r\n\
        o=- 1 1 IN IP4 192.0.2.5\r\n\
        s=-\r\n\
        c=IN IP4 192.0.2.5\r\n\
        t=0 0\r\n\
        m=message 7654 TCP/MSRP *\r\n\
        a=sendonly\r\n\
        a=accept-types:*\r\n\
        a=path:msrp://192.0.2.5:7654/abcd;tcp\r\n\
        a=setup:actpass\r\n\
        a=file-selector:name:\"My %22report%22.pdf\" type:application/pdf size:4096\r\n\
        a=file-transfer-id:xyz123\r\n";

    #[test]
    fn a_push_offer_is_read() {
        let o = parse_push_offer(PUSH, 16, "*").unwrap();
        assert_eq!(o.name, "My \"report\".pdf");
        assert_eq!(o.content_type, "application/pdf");
        assert_eq!(o.size, 4096);
        assert!(!o.tls);
        assert_eq!(o.path[0].to_string(), "msrp://192.0.2.5:7654/abcd;tcp");
        assert_eq!(o.file_transfer_id, "xyz123");
    }

    #[test]
    fn refusals_and_their_codes() {
        let no_size = PUSH.replace(" size:4096", "");
        assert_eq!(
            parse_push_offer(&no_size, 16, "*").unwrap_err().sip_code(),
            488
        );
        let recv = PUSH.replace("a=sendonly", "a=recvonly");
        assert_eq!(
            parse_push_offer(&recv, 16, "*").unwrap_err().sip_code(),
            488
        );
        let passive = PUSH.replace("a=setup:actpass", "a=setup:passive");
        assert_eq!(
            parse_push_offer(&passive, 16, "*").unwrap_err().sip_code(),
            488
        );
        let no_sel: String = PUSH
            .lines()
            .filter(|l| !l.starts_with("a=file-selector"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            parse_push_offer(&no_sel, 16, "*").unwrap_err().sip_code(),
            488
        );
        assert_eq!(
            parse_push_offer("hello", 16, "*").unwrap_err().sip_code(),
            488
        );
        let e = parse_push_offer(PUSH, 16, "image/* text/plain").unwrap_err();
        assert_eq!(e.sip_code(), 415, "{e}");
        assert!(parse_push_offer(PUSH, 16, "image/* application/*").is_ok());
        assert!(parse_push_offer(PUSH, 16, "APPLICATION/PDF").is_ok());
    }

    #[test]
    fn the_answer_receives_passively_and_repeats_the_selector() {
        let o = parse_push_offer(PUSH, 16, "*").unwrap();
        let p = PushAnswerParams {
            session_version: 7,
            address: "127.0.0.1".parse().unwrap(),
            port: 2855,
            path: Uri::parse_slice(b"msrp://127.0.0.1:2855/s355;tcp").unwrap(),
            accept_types: "*".into(),
            max_size: 1 << 30,
            fingerprint: None,
        };
        let sdp = build_push_answer(&p, &o);
        assert!(sdp.contains("m=message 2855 TCP/MSRP *\r\n"), "{sdp}");
        assert!(sdp.contains("a=recvonly\r\n"));
        assert!(sdp.contains("a=setup:passive\r\n"));
        assert!(sdp.contains("a=path:msrp://127.0.0.1:2855/s355;tcp\r\n"));
        assert!(sdp.contains(
            "a=file-selector:name:\"My %22report%22.pdf\" type:application/pdf size:4096\r\n"
        ));
        assert!(sdp.contains("a=file-transfer-id:xyz123\r\n"));
        // Our own answer parser reads it back as a passive receiver.
        let back = parse_answer(&sdp).unwrap();
        assert_eq!(back.direction, Direction::RecvOnly);
        assert_eq!(back.setup, Setup::Passive);
        assert_eq!(back.file_selector.unwrap().size, Some(4096));
    }
}
