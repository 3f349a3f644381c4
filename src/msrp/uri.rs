//! MSRP URIs (RFC 4975 §9): `msrp[s]://[userinfo@]host[:port]/session-id;transport[;params]`.
//!
//! Parsing is zero-copy: every text field is a slice of the input `Bytes`. [`Uri::matches`]
//! implements the comparison rules of RFC 4975 §6.1; the derived `PartialEq` is structural.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

/// The host part of an MSRP URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, kept as received (compared case-insensitively).
    Name(Bytes),
    V4(Ipv4Addr),
    /// Written as `[addr]` on the wire.
    V6(Ipv6Addr),
}

/// One MSRP URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uri {
    /// `msrps` when true, `msrp` otherwise.
    pub secure: bool,
    pub userinfo: Option<Bytes>,
    pub host: Host,
    /// `None` when absent (default port 2855 applies when connecting).
    pub port: Option<u16>,
    /// Empty for a relay URI without session-id (RFC 4976).
    pub session_id: Bytes,
    /// The transport token, e.g. `tcp`.
    pub transport: Bytes,
    /// Further `;name[=value]` parameters, verbatim, in order.
    pub params: Vec<(Bytes, Option<Bytes>)>,
}

/// The MSRP default port (RFC 4975 §9).
pub const DEFAULT_PORT: u16 = 2855;

/// Why a URI (or a path of URIs) did not parse. All of them make a request unintelligible (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UriError {
    /// Not `msrp://` or `msrps://`.
    BadScheme,
    /// Empty or malformed `userinfo@`.
    BadUserinfo,
    /// Empty host, bad characters, or a malformed `[IPv6]` literal.
    BadHost,
    /// Port not a decimal number in 0..=65535.
    BadPort,
    /// A character outside the session-id alphabet.
    BadSessionId,
    /// The mandatory `;transport` is absent.
    MissingTransport,
    /// The transport is empty or not alphanumeric.
    BadTransport,
    /// An empty or malformed `;name[=value]` parameter.
    BadParam,
    /// A path header with no URI in it.
    EmptyPath,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UriError::BadScheme => "URI scheme is not msrp or msrps",
            UriError::BadUserinfo => "malformed userinfo in URI",
            UriError::BadHost => "malformed host in URI",
            UriError::BadPort => "malformed port in URI",
            UriError::BadSessionId => "malformed session-id in URI",
            UriError::MissingTransport => "URI has no transport",
            UriError::BadTransport => "malformed transport in URI",
            UriError::BadParam => "malformed URI parameter",
            UriError::EmptyPath => "path header holds no URI",
        })
    }
}

impl std::error::Error for UriError {}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters allowed in a domain name (lenient RFC 3986 reg-name without sub-delims).
fn is_host_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%'
}

/// RFC 3986 userinfo: unreserved / pct-encoded / sub-delims / ":".
fn is_userinfo_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':'
        )
}

/// RFC 4975 session-id: unreserved / "+" / "=" / "/" (and `%` leniently).
fn is_session_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'+' | b'=' | b'/' | b'%')
}

/// RFC 3261 token characters, used for URI parameter names and values.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Parses a dotted-quad IPv4 address without allocating; `None` if it is not one.
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = p
            .iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
        *o = u8::try_from(v).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn parse_port(s: &[u8]) -> Result<u16, UriError> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return Err(UriError::BadPort);
    }
    let v = s
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(v).map_err(|_| UriError::BadPort)
}

impl Uri {
    /// Parses one URI; every text field is a slice of `input` (no copy). The whole input must be
    /// the URI (no surrounding whitespace).
    pub fn parse(input: &Bytes) -> Result<Uri, UriError> {
        let s: &[u8] = input;
        let (secure, rest_at) = if s.len() >= 7 && s[..7].eq_ignore_ascii_case(b"msrp://") {
            (false, 7)
        } else if s.len() >= 8 && s[..8].eq_ignore_ascii_case(b"msrps://") {
            (true, 8)
        } else {
            return Err(UriError::BadScheme);
        };

        // Authority: up to the first '/' or ';'.
        let auth_end = s[rest_at..]
            .iter()
            .position(|&b| b == b'/' || b == b';')
            .map_or(s.len(), |p| rest_at + p);
        let auth = &s[rest_at..auth_end];

        let (userinfo, host_at) = match auth.iter().rposition(|&b| b == b'@') {
            Some(at) => {
                let ui = &auth[..at];
                if ui.is_empty() || !ui.iter().copied().all(is_userinfo_char) {
                    return Err(UriError::BadUserinfo);
                }
                (Some(input.slice(rest_at..rest_at + at)), rest_at + at + 1)
            }
            None => (None, rest_at),
        };

        let hostport = &s[host_at..auth_end];
        let (host, port) = if hostport.first() == Some(&b'[') {
            let close = hostport
                .iter()
                .position(|&b| b == b']')
                .ok_or(UriError::BadHost)?;
            let lit = std::str::from_utf8(&hostport[1..close]).map_err(|_| UriError::BadHost)?;
            let addr: Ipv6Addr = lit.parse().map_err(|_| UriError::BadHost)?;
            let port = match &hostport[close + 1..] {
                [] => None,
                [b':', p @ ..] => Some(parse_port(p)?),
                _ => return Err(UriError::BadHost),
            };
            (Host::V6(addr), port)
        } else {
            let (h, port) = match hostport.iter().position(|&b| b == b':') {
                Some(c) => (&hostport[..c], Some(parse_port(&hostport[c + 1..])?)),
                None => (hostport, None),
            };
            if h.is_empty() || !h.iter().copied().all(is_host_char) {
                return Err(UriError::BadHost);
            }
            let host = match parse_ipv4(h) {
                Some(a) => Host::V4(a),
                None => Host::Name(input.slice(host_at..host_at + h.len())),
            };
            (host, port)
        };

        // Optional "/session-id", then mandatory ";transport".
        let mut at = auth_end;
        let session_id = if s.get(at) == Some(&b'/') {
            let start = at + 1;
            let end = s[start..]
                .iter()
                .position(|&b| b == b';')
                .map_or(s.len(), |p| start + p);
            let sid = &s[start..end];
            if sid.is_empty() || !sid.iter().copied().all(is_session_char) {
                return Err(UriError::BadSessionId);
            }
            at = end;
            input.slice(start..end)
        } else {
            Bytes::new()
        };
        if s.get(at) != Some(&b';') {
            return Err(UriError::MissingTransport);
        }
        at += 1;

        let mut fields = s[at..].split(|&b| b == b';');
        let transport = fields.next().unwrap_or(&[]);
        if transport.is_empty() || !transport.iter().all(u8::is_ascii_alphanumeric) {
            return Err(UriError::BadTransport);
        }
        let transport_b = input.slice(at..at + transport.len());
        at += transport.len();

        let mut params = Vec::new();
        for field in fields {
            at += 1; // the ';'
            let (name, value) = match field.iter().position(|&b| b == b'=') {
                Some(eq) => (&field[..eq], Some(&field[eq + 1..])),
                None => (field, None),
            };
            if name.is_empty() || !name.iter().copied().all(is_token_char) {
                return Err(UriError::BadParam);
            }
            let name_b = input.slice(at..at + name.len());
            let value_b = match value {
                Some(v) if v.is_empty() || !v.iter().copied().all(is_token_char) => {
                    return Err(UriError::BadParam)
                }
                Some(v) => Some(input.slice(at + name.len() + 1..at + name.len() + 1 + v.len())),
                None => None,
            };
            params.push((name_b, value_b));
            at += field.len();
        }

        Ok(Uri {
            secure,
            userinfo,
            host,
            port,
            session_id,
            transport: transport_b,
            params,
        })
    }

    /// Parses a URI from a plain slice (copies it once into a `Bytes`).
    pub fn parse_slice(input: &[u8]) -> Result<Uri, UriError> {
        Uri::parse(&Bytes::copy_from_slice(input))
    }

    /// The port to connect to: the explicit one or 2855.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// RFC 4975 §6.1 comparison: scheme equal, host case-insensitive, port with the default 2855
    /// applied, session-id case-sensitive, transport case-insensitive. Userinfo and parameters are
    /// ignored.
    pub fn matches(&self, other: &Uri) -> bool {
        let host_eq = match (&self.host, &other.host) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::V4(a), Host::V4(b)) => a == b,
            (Host::V6(a), Host::V6(b)) => a == b,
            _ => false,
        };
        self.secure == other.secure
            && host_eq
            && self.effective_port() == other.effective_port()
            && self.session_id == other.session_id
            && self.transport.eq_ignore_ascii_case(&other.transport)
    }

    /// The canonical text form as `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_string())
    }
}

fn write_lossy(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
    // Parsed URIs are ASCII; a hand-built one with other bytes is shown lossily.
    f.write_str(&String::from_utf8_lossy(b))
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "msrps://" } else { "msrp://" })?;
        if let Some(ui) = &self.userinfo {
            write_lossy(f, ui)?;
            f.write_str("@")?;
        }
        match &self.host {
            Host::Name(n) => write_lossy(f, n)?,
            Host::V4(a) => write!(f, "{a}")?,
            Host::V6(a) => write!(f, "[{a}]")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if !self.session_id.is_empty() {
            f.write_str("/")?;
            write_lossy(f, &self.session_id)?;
        }
        f.write_str(";")?;
        write_lossy(f, &self.transport)?;
        for (name, value) in &self.params {
            f.write_str(";")?;
            write_lossy(f, name)?;
            if let Some(v) = value {
                f.write_str("=")?;
                write_lossy(f, v)?;
            }
        }
        Ok(())
    }
}

/// Parses a path header value (`To-Path`, `From-Path`, `Use-Path`): URIs separated by spaces.
/// Every URI is a slice of `input`. Runs of spaces or tabs are accepted between URIs.
pub fn parse_path(input: &Bytes) -> Result<Vec<Uri>, UriError> {
    let s: &[u8] = input;
    // Fast path: the common single-URI path.
    if !s.iter().any(|&b| b == b' ' || b == b'\t') {
        if s.is_empty() {
            return Err(UriError::EmptyPath);
        }
        return Ok(vec![Uri::parse(input)?]);
    }
    let mut out = Vec::with_capacity(2);
    let mut i = 0;
    while i < s.len() {
        if s[i] == b' ' || s[i] == b'\t' {
            i += 1;
            continue;
        }
        let end = s[i..]
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .map_or(s.len(), |p| i + p);
        out.push(Uri::parse(&input.slice(i..end))?);
        i = end;
    }
    if out.is_empty() {
        return Err(UriError::EmptyPath);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Uri, UriError> {
        Uri::parse_slice(s.as_bytes())
    }

    #[test]
    fn parses_full_uri() {
        let u = p("msrp://alice@atlanta.example.com:7654/jshA7weztas;tcp;foo=bar;baz").unwrap();
        assert!(!u.secure);
        assert_eq!(u.userinfo.as_deref(), Some(&b"alice"[..]));
        assert_eq!(
            u.host,
            Host::Name(Bytes::from_static(b"atlanta.example.com"))
        );
        assert_eq!(u.port, Some(7654));
        assert_eq!(&u.session_id[..], b"jshA7weztas");
        assert_eq!(&u.transport[..], b"tcp");
        assert_eq!(u.params.len(), 2);
        assert_eq!(&u.params[0].0[..], b"foo");
        assert_eq!(u.params[0].1.as_deref(), Some(&b"bar"[..]));
        assert_eq!(&u.params[1].0[..], b"baz");
        assert_eq!(u.params[1].1, None);
    }

    #[test]
    fn parses_hosts() {
        let u = p("msrps://10.0.0.1/s;tcp").unwrap();
        assert!(u.secure);
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(u.port, None);
        assert_eq!(u.effective_port(), 2855);
        let u = p("msrp://[2001:db8::1]:9/s;tcp").unwrap();
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(9));
        let u = p("msrp://[::1]/s;tcp").unwrap();
        assert_eq!(u.host, Host::V6(Ipv6Addr::LOCALHOST));
        // Not a valid dotted quad: a name.
        let u = p("msrp://1.2.3.999/s;tcp").unwrap();
        assert!(matches!(u.host, Host::Name(_)));
    }

    #[test]
    fn relay_uri_without_session() {
        let u = p("msrps://alice@intra.example.com;tcp").unwrap();
        assert!(u.session_id.is_empty());
        assert_eq!(u.to_string(), "msrps://alice@intra.example.com;tcp");
    }

    #[test]
    fn session_id_may_contain_slash() {
        let u = p("msrp://h/a/b+c=;tcp").unwrap();
        assert_eq!(&u.session_id[..], b"a/b+c=");
    }

    #[test]
    fn zero_copy() {
        let input = Bytes::from_static(b"msrp://example.com:1/abc;tcp");
        let u = Uri::parse(&input).unwrap();
        let base = input.as_ptr() as usize;
        assert_eq!(u.session_id.as_ptr() as usize, base + 21);
        assert_eq!(u.transport.as_ptr() as usize, base + 25);
    }

    #[test]
    fn errors() {
        assert_eq!(p("sip://a/b;tcp"), Err(UriError::BadScheme));
        assert_eq!(p("msrp:/a/b;tcp"), Err(UriError::BadScheme));
        assert_eq!(p("msrp://@a/b;tcp"), Err(UriError::BadUserinfo));
        assert_eq!(p("msrp:///b;tcp"), Err(UriError::BadHost));
        assert_eq!(p("msrp://a b/b;tcp"), Err(UriError::BadHost));
        assert_eq!(p("msrp://[::1/b;tcp"), Err(UriError::BadHost));
        assert_eq!(p("msrp://[zz]/b;tcp"), Err(UriError::BadHost));
        assert_eq!(p("msrp://a:99999/b;tcp"), Err(UriError::BadPort));
        assert_eq!(p("msrp://a:/b;tcp"), Err(UriError::BadPort));
        assert_eq!(p("msrp://a:1x/b;tcp"), Err(UriError::BadPort));
        assert_eq!(p("msrp://a/;tcp"), Err(UriError::BadSessionId));
        assert_eq!(p("msrp://a/b c;tcp"), Err(UriError::BadSessionId));
        assert_eq!(p("msrp://a/b"), Err(UriError::MissingTransport));
        assert_eq!(p("msrp://a/b;"), Err(UriError::BadTransport));
        assert_eq!(p("msrp://a/b;t-p"), Err(UriError::BadTransport));
        assert_eq!(p("msrp://a/b;tcp;"), Err(UriError::BadParam));
        assert_eq!(p("msrp://a/b;tcp;x="), Err(UriError::BadParam));
        assert_eq!(p(""), Err(UriError::BadScheme));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "msrp://atlanta.example.com:7654/jshA7weztas;tcp",
            "msrps://bob@[2001:db8::1]:2855/x/y;tcp;a=b;c",
            "msrp://127.0.0.1/s;ws",
            "msrps://relay.example.com;tcp",
        ] {
            let u = p(s).unwrap();
            assert_eq!(u.to_string(), s);
            assert_eq!(Uri::parse(&u.to_bytes()).unwrap(), u);
        }
        // The scheme is written in lower case.
        assert_eq!(p("MSRP://h/s;tcp").unwrap().to_string(), "msrp://h/s;tcp");
    }

    #[test]
    fn comparison_rules() {
        let a = p("msrp://Example.COM:2855/abc;TCP").unwrap();
        assert!(a.matches(&p("msrp://example.com/abc;tcp").unwrap()));
        assert!(a.matches(&p("msrp://user@example.com:2855/abc;tcp;x=y").unwrap()));
        assert!(!a.matches(&p("msrps://example.com/abc;tcp").unwrap()));
        assert!(!a.matches(&p("msrp://example.com:2856/abc;tcp").unwrap()));
        assert!(!a.matches(&p("msrp://example.com/ABC;tcp").unwrap()));
        assert!(!a.matches(&p("msrp://example.org/abc;tcp").unwrap()));
        assert!(!a.matches(&p("msrp://example.com/abc;ws").unwrap()));
        let v4 = p("msrp://127.0.0.1/s;tcp").unwrap();
        assert!(v4.matches(&p("msrp://127.0.0.1:2855/s;tcp").unwrap()));
        assert!(!v4.matches(&p("msrp://localhost/s;tcp").unwrap()));
    }

    #[test]
    fn paths() {
        let input = Bytes::from_static(b"msrp://a/1;tcp  msrp://b:2/2;tcp");
        let v = parse_path(&input).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].port, Some(2));
        assert_eq!(
            parse_path(&Bytes::from_static(b"   ")),
            Err(UriError::EmptyPath)
        );
        assert_eq!(parse_path(&Bytes::new()), Err(UriError::EmptyPath));
        assert_eq!(
            parse_path(&Bytes::from_static(b"msrp://a/1;tcp x")),
            Err(UriError::BadScheme)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = Uri::parse_slice(&s);
            let _ = parse_path(&Bytes::from(s));
        }

        #[test]
        fn display_then_parse_is_identity(
            secure: bool,
            host in "[a-z][a-z0-9.-]{0,20}",
            port in proptest::option::of(proptest::num::u16::ANY),
            sid in "[A-Za-z0-9+=/._~-]{1,20}",
            tr in "[a-z0-9]{1,5}",
        ) {
            let u = Uri {
                secure,
                userinfo: None,
                host: parse_ipv4(host.as_bytes()).map_or_else(|| Host::Name(Bytes::from(host.clone())), Host::V4),
                port,
                session_id: Bytes::from(sid),
                transport: Bytes::from(tr),
                params: vec![],
            };
            let back = Uri::parse(&u.to_bytes()).unwrap();
            proptest::prop_assert_eq!(back, u);
        }
    }
}
