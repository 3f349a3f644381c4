//! The RFC 5547 push offer: one `m=message` stream, `a=sendonly`, describing one file.
//!
//! Every value that could come from outside (file name, description, media type, origin user,
//! accept-types, transfer id) is escaped or filtered so that no emitted line contains a CR, LF or
//! NUL inside its value and the `a=file-selector` stays unambiguous.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::file_selector::{escape_file_name, format_sha1, is_token_char, selector_type};
use crate::msrp::uri::Uri;
use crate::tls::Fingerprint;

/// The file being offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffer {
    /// The uploader's file name (untrusted; escaped here).
    pub name: String,
    /// The uploader's media type (untrusted; reduced to `type/subtype` or
    /// `application/octet-stream`).
    pub content_type: String,
    /// The size, when known at offer time.
    pub size: Option<u64>,
    /// The SHA-1, only when the file was complete before the offer.
    pub sha1: Option<[u8; 20]>,
    /// RFC 5547 `a=file-transfer-id`: unique per offer (token characters; others are dropped).
    pub file_transfer_id: String,
    /// `a=file-disposition`, normally `attachment`.
    pub disposition: String,
    /// Written as the media-level `i=` line (RFC 5547 §5).
    pub description: Option<String>,
    /// RFC 5547 §8 `a=file-range:<start>-<stop>` (1-based, inclusive): only these bytes of the
    /// file are sent, the rest being held by the answerer from an earlier transfer. `None`: the
    /// whole file.
    pub file_range: Option<(u64, u64)>,
}

/// Our side of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferParams {
    /// `o=` session id and version.
    pub session_version: u64,
    /// `o=` user name (`-` when empty or not a visible-ASCII word).
    pub origin_user: String,
    /// `o=` and `c=` address.
    pub address: IpAddr,
    /// `m=` port: the MSRP listener's (advertised) port.
    pub port: u16,
    /// Our `a=path` URI; `msrps` makes the protocol `TCP/TLS/MSRP`.
    pub path: Uri,
    /// `a=accept-types`, normally `*`.
    pub accept_types: String,
    /// `a=max-size`, when set.
    pub max_size: Option<u64>,
}

fn addr_fields(a: IpAddr) -> (&'static str, String) {
    match a {
        IpAddr::V4(v4) => ("IP4", v4.to_string()),
        IpAddr::V6(v6) => ("IP6", v6.to_string()),
    }
}

/// Keeps only characters that may appear in an SDP text value: no control characters at all.
fn text_value(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Keeps only RFC 2045 token characters.
fn token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii() && is_token_char(*c as u8))
        .collect()
}

/// `accept-types` = `*` or media types separated by single spaces.
fn accept_types(s: &str) -> String {
    let types: Vec<&str> = s
        .split_ascii_whitespace()
        .filter(|t| t.bytes().all(|b| is_token_char(b) || b == b'/'))
        .collect();
    if types.is_empty() {
        "*".to_owned()
    } else {
        types.join(" ")
    }
}

/// The SDP offer for one file, CRLF line endings. `TCP/TLS/MSRP` exactly when `p.path` is
/// `msrps`; no `a=fingerprint` (see [`build_offer_tls`]).
pub fn build_offer(p: &OfferParams, f: &FileOffer) -> String {
    render(p, f, p.path.secure, None)
}

/// The offer over TLS (the `msrp_tls` setting): `TCP/TLS/MSRP`, our path as `msrps` whatever
/// `p.path` says, and `a=fingerprint` with our certificate's fingerprint when we have one
/// (RFC 4975 §14.1, RFC 8122), so that a peer may check a self-signed certificate.
pub fn build_offer_tls(
    p: &OfferParams,
    f: &FileOffer,
    fingerprint: Option<&Fingerprint>,
) -> String {
    render(p, f, true, fingerprint)
}

fn render(
    p: &OfferParams,
    f: &FileOffer,
    secure: bool,
    fingerprint: Option<&Fingerprint>,
) -> String {
    let (addr_type, addr) = addr_fields(p.address);
    let user = if !p.origin_user.is_empty() && p.origin_user.bytes().all(|b| b.is_ascii_graphic()) {
        p.origin_user.as_str()
    } else {
        "-"
    };
    let proto = if secure { "TCP/TLS/MSRP" } else { "TCP/MSRP" };
    let mut name = escape_file_name(&f.name);
    if name.is_empty() {
        // filename-string needs at least one character.
        name.push_str("file");
    }
    let mut disposition = token(&f.disposition);
    if disposition.is_empty() {
        disposition.push_str("attachment");
    }
    let mut transfer_id = token(&f.file_transfer_id);
    if transfer_id.is_empty() {
        transfer_id.push('-');
    }

    let mut s = String::with_capacity(512);
    // Writing to a String cannot fail; the results below are ignored for that reason.
    let _ = write!(
        s,
        "v=0\r\no={user} {v} {v} IN {addr_type} {addr}\r\ns=-\r\nc=IN {addr_type} {addr}\r\nt=0 0\r\n",
        v = p.session_version
    );
    let _ = write!(s, "m=message {} {proto} *\r\n", p.port);
    if let Some(d) = &f.description {
        let _ = write!(s, "i={}\r\n", text_value(d));
    }
    s.push_str("a=sendonly\r\n");
    let _ = write!(s, "a=accept-types:{}\r\n", accept_types(&p.accept_types));
    if let Some(m) = p.max_size {
        let _ = write!(s, "a=max-size:{m}\r\n");
    }
    // A Uri's Display never contains spaces or line breaks for parsed URIs; filter anyway.
    let mut path = p.path.clone();
    path.secure = secure;
    let _ = write!(s, "a=path:{}\r\n", text_value(&path.to_string()));
    s.push_str("a=setup:actpass\r\n");
    if let Some(fp) = fingerprint {
        // Our own computed value: hash name and hex digits only.
        let _ = write!(s, "a=fingerprint:{fp}\r\n");
    }
    let _ = write!(
        s,
        "a=file-selector:name:\"{name}\" type:{}",
        selector_type(&f.content_type)
    );
    if let Some(size) = f.size {
        let _ = write!(s, " size:{size}");
    }
    if let Some(h) = &f.sha1 {
        let _ = write!(s, " hash:sha-1:{}", format_sha1(h));
    }
    s.push_str("\r\n");
    let _ = write!(s, "a=file-transfer-id:{transfer_id}\r\n");
    let _ = write!(s, "a=file-disposition:{disposition}\r\n");
    if let Some((start, stop)) = f.file_range {
        let _ = write!(s, "a=file-range:{start}-{stop}\r\n");
    }
    s
}

/// Parses an RFC 5547 `file-range` value, `<start>-<stop>` with a 1-based start and a stop that
/// is a number or `*` (`None`); `None` for anything else (a start of 0, a stop before the start).
pub fn parse_file_range(v: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = v.trim().split_once('-')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 20 && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) {
        return None;
    }
    let start: u64 = a.parse().ok()?;
    if start == 0 {
        return None;
    }
    if b == "*" {
        return Some((start, None));
    }
    if !digits(b) {
        return None;
    }
    let stop: u64 = b.parse().ok()?;
    // An empty range is `start - 1` (RFC 5547 allows a stop one below the start).
    (stop + 1 >= start).then_some((start, Some(stop)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::file_selector::FileSelector;
    use proptest::prelude::*;

    fn params() -> OfferParams {
        OfferParams {
            session_version: 3_900_000_001,
            origin_user: "msrpcast".into(),
            address: "192.0.2.10".parse().unwrap(),
            port: 2855,
            path: Uri::parse_slice(b"msrp://192.0.2.10:2855/s3ss10n;tcp").unwrap(),
            accept_types: "*".into(),
            max_size: None,
        }
    }

    fn file() -> FileOffer {
        FileOffer {
            name: "report.pdf".into(),
            content_type: "application/pdf".into(),
            size: Some(123_456),
            sha1: None,
            file_transfer_id: "vBnG916bdberum2fFEABR".into(),
            disposition: "attachment".into(),
            description: None,
            file_range: None,
        }
    }

    #[test]
    fn normal_offer_exact() {
        let want = "v=0\r\n\
            o=msrpcast 3900000001 3900000001 IN IP4 192.0.2.10\r\n\
            s=-\r\n\
            c=IN IP4 192.0.2.10\r\n\
            t=0 0\r\n\
            m=message 2855 TCP/MSRP *\r\n\
            a=sendonly\r\n\
            a=accept-types:*\r\n\
            a=path:msrp://192.0.2.10:2855/s3ss10n;tcp\r\n\
            a=setup:actpass\r\n\
            a=file-selector:name:\"report.pdf\" type:application/pdf size:123456\r\n\
            a=file-transfer-id:vBnG916bdberum2fFEABR\r\n\
            a=file-disposition:attachment\r\n";
        assert_eq!(build_offer(&params(), &file()), want);
    }

    #[test]
    fn full_offer_exact_v6_tls_hash_description() {
        let mut p = params();
        p.address = "2001:db8::1".parse().unwrap();
        p.path = Uri::parse_slice(b"msrps://[2001:db8::1]:2856/abc;tcp").unwrap();
        p.max_size = Some(1_000_000);
        p.accept_types = "message/cpim  text/plain".into();
        let mut f = file();
        f.size = None;
        f.sha1 = Some(core::array::from_fn(|i| i as u8));
        f.description = Some("Quarterly\r\nreport".into());
        let want = "v=0\r\n\
            o=msrpcast 3900000001 3900000001 IN IP6 2001:db8::1\r\n\
            s=-\r\n\
            c=IN IP6 2001:db8::1\r\n\
            t=0 0\r\n\
            m=message 2855 TCP/TLS/MSRP *\r\n\
            i=Quarterly  report\r\n\
            a=sendonly\r\n\
            a=accept-types:message/cpim text/plain\r\n\
            a=max-size:1000000\r\n\
            a=path:msrps://[2001:db8::1]:2856/abc;tcp\r\n\
            a=setup:actpass\r\n\
            a=file-selector:name:\"report.pdf\" type:application/pdf \
            hash:sha-1:00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13\r\n\
            a=file-transfer-id:vBnG916bdberum2fFEABR\r\n\
            a=file-disposition:attachment\r\n";
        assert_eq!(build_offer(&p, &f), want);
    }

    #[test]
    fn tls_offer_with_fingerprint() {
        use crate::sdp::parse_answer;
        use crate::tls::HashFunction;
        let fp = Fingerprint::of(HashFunction::Sha256, b"our certificate");
        // A plain msrp path becomes msrps.
        let sdp = build_offer_tls(&params(), &file(), Some(&fp));
        assert_clean_lines(&sdp);
        assert!(sdp.contains("m=message 2855 TCP/TLS/MSRP *\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=path:msrps://192.0.2.10:2855/s3ss10n;tcp\r\na=setup:actpass\r\na=fingerprint:sha-256 "),
            "{sdp}"
        );
        let a = parse_answer(&sdp).unwrap();
        assert!(a.tls && a.requires_tls() && a.transport_consistent());
        assert_eq!(a.fingerprints, vec![fp]);
        // Without a certificate: TLS, no fingerprint line.
        let sdp = build_offer_tls(&params(), &file(), None);
        assert!(sdp.contains("TCP/TLS/MSRP") && !sdp.contains("a=fingerprint"));
        // The plain builder is unchanged by all this.
        assert!(!build_offer(&params(), &file()).contains("TLS"));
    }

    fn selector_line(sdp: &str) -> &str {
        sdp.split("\r\n")
            .find_map(|l| l.strip_prefix("a=file-selector:"))
            .unwrap()
    }

    /// Every line ends with CRLF and no value holds a CR, LF or NUL.
    fn assert_clean_lines(sdp: &str) {
        assert!(sdp.ends_with("\r\n"));
        let body = &sdp[..sdp.len() - 2];
        for line in body.split("\r\n") {
            assert!(!line.contains(['\r', '\n', '\0']), "bad line {line:?}");
            let b = line.as_bytes();
            assert!(
                b.len() >= 2 && b[0].is_ascii_lowercase() && b[1] == b'=',
                "{line:?}"
            );
        }
    }

    #[test]
    fn nasty_values_stay_on_their_lines() {
        let mut p = params();
        p.origin_user = "evil user\r\na=x".into();
        p.accept_types = "*\r\na=evil".into();
        let mut f = file();
        f.name = "x\"\r\n%\0\u{1b}[31m名.exe".into();
        f.content_type = "text/plain\r\na=setup:active".into();
        f.file_transfer_id = "id\r\na=evil".into();
        f.disposition = "\r\n".into();
        f.description = Some("line1\nline2\r\0".into());
        let sdp = build_offer(&p, &f);
        assert_clean_lines(&sdp);
        assert!(sdp.contains("o=- "));
        assert!(sdp.contains("a=accept-types:*\r\n"), "{sdp}");
        assert!(sdp.contains("a=file-transfer-id:idaevil\r\n"), "{sdp}");
        assert!(sdp.contains("a=file-disposition:attachment\r\n"));
        assert_eq!(sdp.matches("a=setup:").count(), 1);
        let sel = FileSelector::parse(selector_line(&sdp)).unwrap();
        assert_eq!(sel.name.as_deref(), Some(f.name.as_str()));
        assert_eq!(
            sel.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(sel.size, Some(123_456));
    }

    #[test]
    fn empty_name_still_valid() {
        let mut f = file();
        f.name.clear();
        let sdp = build_offer(&params(), &f);
        assert!(sdp.contains("a=file-selector:name:\"file\" "));
    }

    proptest! {
        #[test]
        fn any_name_round_trips_through_the_offer(
            name in any::<String>(),
            ct in any::<String>(),
            desc in proptest::option::of(any::<String>()),
        ) {
            let mut f = file();
            f.name = name.clone();
            f.content_type = ct;
            f.description = desc;
            let sdp = build_offer(&params(), &f);
            assert_clean_lines(&sdp);
            let sel = FileSelector::parse(selector_line(&sdp)).unwrap();
            let want = if name.is_empty() { "file".to_owned() } else { name };
            prop_assert_eq!(sel.name, Some(want));
        }
    }

    #[test]
    fn file_range_is_offered_and_parsed() {
        let mut f = file();
        f.file_range = Some((10_485_761, 67_108_864));
        let sdp = build_offer(&params(), &f);
        assert!(sdp.contains("a=file-range:10485761-67108864\r\n"), "{sdp}");
        assert!(!build_offer(&params(), &file()).contains("file-range"));
        assert_eq!(
            parse_file_range("10485761-67108864"),
            Some((10_485_761, Some(67_108_864)))
        );
        assert_eq!(parse_file_range(" 5-* "), Some((5, None)));
        for bad in [
            "0-5",
            "5-3",
            "-5",
            "5-",
            "a-5",
            "5-x",
            "99999999999999999999999-1",
            "",
        ] {
            assert_eq!(parse_file_range(bad), None, "{bad}");
        }
    }
}
