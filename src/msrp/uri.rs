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

// Character classes, one bit each, looked up in a table so that each part is one scan.
const HOST: u8 = 1; // lenient reg-name: unreserved / "%"
const USERINFO: u8 = 2; // unreserved / pct-encoded / sub-delims / ":"
const SESSION: u8 = 4; // unreserved / "+" / "=" / "/" (and "%")
const TOKEN: u8 = 8; // RFC 3261 token
const ALNUM: u8 = 16;
const DIGIT_DOT: u8 = 32;

const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        let unreserved = alnum || matches!(b, b'-' | b'.' | b'_' | b'~');
        let mut c = 0;
        if unreserved || b == b'%' {
            c |= HOST;
        }
        if unreserved
            || matches!(
                b,
                b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':'
            )
        {
            c |= USERINFO;
        }
        if unreserved || matches!(b, b'+' | b'=' | b'/' | b'%') {
            c |= SESSION;
        }
        if alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            c |= TOKEN;
        }
        if alnum {
            c |= ALNUM;
        }
        if b.is_ascii_digit() || b == b'.' {
            c |= DIGIT_DOT;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = class_table();

/// Length of the run of bytes of class `class` at the start of `s`.
#[inline]
fn run_of(s: &[u8], class: u8) -> usize {
    s.iter()
        .position(|&b| CLASS[b as usize] & class == 0)
        .unwrap_or(s.len())
}

#[inline]
fn all_of(s: &[u8], class: u8) -> bool {
    run_of(s, class) == s.len()
}

/// [`run_of`], eight bytes per step while they all match.
#[inline]
fn run_of8(s: &[u8], class: u8) -> usize {
    let mut at = 0;
    while let Some(c) = s.get(at..at + 8) {
        let all = CLASS[c[0] as usize]
            & CLASS[c[1] as usize]
            & CLASS[c[2] as usize]
            & CLASS[c[3] as usize]
            & CLASS[c[4] as usize]
            & CLASS[c[5] as usize]
            & CLASS[c[6] as usize]
            & CLASS[c[7] as usize];
        if all & class == 0 {
            break;
        }
        at += 8;
    }
    at + run_of(&s[at..], class)
}

/// A dotted quad at `s[at..]` as [`parse_ipv4`] reads one, and where it ends; whatever follows
/// is not looked at.
#[inline]
fn scan_ipv4(s: &[u8], mut at: usize) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    for (k, o) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let start = at;
        let mut v = 0u16;
        while at < s.len() && at - start < 3 && s[at].is_ascii_digit() {
            v = v * 10 + u16::from(s[at] - b'0');
            at += 1;
        }
        if at == start {
            return None;
        }
        *o = u8::try_from(v).ok()?;
    }
    Some((Ipv4Addr::from(octets), at))
}

/// Parses a dotted-quad IPv4 address without allocating; `None` if it is not one.
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut idx = 0;
    let mut val: u16 = 0;
    let mut digits = 0;
    for &b in s {
        if b == b'.' {
            if digits == 0 || idx == 3 {
                return None;
            }
            octets[idx] = u8::try_from(val).ok()?;
            idx += 1;
            val = 0;
            digits = 0;
        } else if b.is_ascii_digit() && digits < 3 {
            val = val * 10 + u16::from(b - b'0');
            digits += 1;
        } else {
            return None;
        }
    }
    if digits == 0 || idx != 3 {
        return None;
    }
    octets[3] = u8::try_from(val).ok()?;
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

/// Parses the common form `msrp[s]://host[:port][/session-id];transport` (lower-case scheme, no
/// userinfo, no `[IPv6]` literal, no parameters) in one pass over `s`, a slice of `base`; text
/// fields are slices of `base`. `None` for anything else, which [`Uri::parse`]'s general scanner
/// then accepts or rejects. For every input this accepts, the general scanner gives the same
/// `Uri` (checked by `fast_path_agrees_with_general` below).
#[inline]
fn parse_common(base: &Bytes, s: &[u8]) -> Option<Uri> {
    let (secure, host_at) = if s.starts_with(b"msrp://") {
        (false, 7)
    } else if s.starts_with(b"msrps://") {
        (true, 8)
    } else {
        return None;
    };
    let n = s.len();
    // Every slice below is of `s`, which lies in `base` at `off`.
    debug_assert!(base.as_ptr_range().contains(&s.as_ptr()) || s.is_empty());
    let off = (s.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    let sub = |a: usize, b: usize| base.slice(off + a..off + b);
    // A dotted quad ends the host when the byte after it cannot continue a host name.
    let quad = match s.get(host_at) {
        Some(b) if b.is_ascii_digit() => {
            scan_ipv4(s, host_at).filter(|&(_, end)| end == n || CLASS[s[end] as usize] & HOST == 0)
        }
        _ => None,
    };
    let (host, mut at) = match quad {
        Some((a, end)) => (Host::V4(a), end),
        None => {
            let at = host_at + run_of8(&s[host_at..], HOST);
            if at == host_at {
                return None;
            }
            let h = &s[host_at..at];
            // parse_ipv4 rejects any byte but digits and dots, as the general scanner's class
            // test does.
            let a = if h[0].is_ascii_digit() {
                parse_ipv4(h)
            } else {
                None
            };
            match a {
                Some(a) => (Host::V4(a), at),
                None => (Host::Name(sub(host_at, at)), at),
            }
        }
    };
    let mut port = None;
    if at < n && s[at] == b':' {
        at += 1;
        let p_at = at;
        let mut v = 0u32;
        while at < n && at - p_at < 5 && s[at].is_ascii_digit() {
            v = v * 10 + u32::from(s[at] - b'0');
            at += 1;
        }
        if at == p_at || v > u32::from(u16::MAX) {
            return None;
        }
        // A sixth digit or any other byte: not the common form.
        port = Some(v as u16);
    }
    let mut session_id = Bytes::new();
    if at < n && s[at] == b'/' {
        at += 1;
        let sid_at = at;
        at += run_of8(&s[at..], SESSION);
        if at == sid_at {
            return None;
        }
        session_id = sub(sid_at, at);
    }
    if at >= n || s[at] != b';' {
        return None;
    }
    at += 1;
    let t = &s[at..];
    let transport = if t == b"tcp" {
        Bytes::from_static(b"tcp")
    } else if !t.is_empty() && t.iter().all(u8::is_ascii_alphanumeric) {
        sub(at, n)
    } else {
        return None;
    };
    Some(Uri {
        secure,
        userinfo: None,
        host,
        port,
        session_id,
        transport,
        params: Vec::new(),
    })
}

impl Uri {
    /// The same URI holding its own copies of its text: a parsed URI's fields are slices of the
    /// frame it came in, which they keep in memory.
    pub fn detached(&self) -> Uri {
        let copy = |b: &Bytes| Bytes::copy_from_slice(b);
        Uri {
            secure: self.secure,
            userinfo: self.userinfo.as_ref().map(copy),
            host: match &self.host {
                Host::Name(n) => Host::Name(copy(n)),
                other => other.clone(),
            },
            port: self.port,
            session_id: copy(&self.session_id),
            transport: copy(&self.transport),
            params: self
                .params
                .iter()
                .map(|(k, v)| (copy(k), v.as_ref().map(copy)))
                .collect(),
        }
    }

    /// Parses one URI; every text field is a slice of `input` (no copy). The whole input must be
    /// the URI (no surrounding whitespace).
    pub fn parse(input: &Bytes) -> Result<Uri, UriError> {
        match parse_common(input, input) {
            Some(u) => Ok(u),
            None => Uri::parse_general(input),
        }
    }

    /// Every form of RFC 4975 §9, and the errors.
    fn parse_general(input: &Bytes) -> Result<Uri, UriError> {
        let s: &[u8] = input;
        let (secure, rest_at) = if s.len() >= 7 && s[..7].eq_ignore_ascii_case(b"msrp://") {
            (false, 7)
        } else if s.len() >= 8 && s[..8].eq_ignore_ascii_case(b"msrps://") {
            (true, 8)
        } else {
            return Err(UriError::BadScheme);
        };

        // Optional userinfo: only scanned for when an '@' occurs before the path.
        let mut host_at = rest_at;
        let mut userinfo = None;
        let ui_len = run_of(&s[rest_at..], USERINFO);
        if s.get(rest_at + ui_len) == Some(&b'@') {
            if ui_len == 0 {
                return Err(UriError::BadUserinfo);
            }
            userinfo = Some(input.slice(rest_at..rest_at + ui_len));
            host_at = rest_at + ui_len + 1;
        }

        let (host, mut at) = if s.get(host_at) == Some(&b'[') {
            let close = s[host_at..]
                .iter()
                .position(|&b| b == b']')
                .map(|p| host_at + p)
                .ok_or(UriError::BadHost)?;
            let lit = std::str::from_utf8(&s[host_at + 1..close]).map_err(|_| UriError::BadHost)?;
            let addr: Ipv6Addr = lit.parse().map_err(|_| UriError::BadHost)?;
            (Host::V6(addr), close + 1)
        } else {
            let h_len = run_of(&s[host_at..], HOST);
            if h_len == 0 {
                return Err(UriError::BadHost);
            }
            let h = &s[host_at..host_at + h_len];
            let host = if all_of(h, DIGIT_DOT) {
                parse_ipv4(h).map(Host::V4)
            } else {
                None
            }
            .unwrap_or_else(|| Host::Name(input.slice(host_at..host_at + h_len)));
            (host, host_at + h_len)
        };
        let mut port = None;
        if s.get(at) == Some(&b':') {
            let p_len = s[at + 1..]
                .iter()
                .position(|&b| b == b'/' || b == b';')
                .unwrap_or(s.len() - at - 1);
            port = Some(parse_port(&s[at + 1..at + 1 + p_len])?);
            at += 1 + p_len;
        }
        match s.get(at) {
            None | Some(b'/') | Some(b';') => {}
            Some(_) => return Err(UriError::BadHost),
        }

        // Optional "/session-id", then mandatory ";transport".
        let session_id = if s.get(at) == Some(&b'/') {
            let start = at + 1;
            let len = run_of(&s[start..], SESSION);
            at = start + len;
            if len == 0 || (at < s.len() && s[at] != b';') {
                return Err(UriError::BadSessionId);
            }
            input.slice(start..at)
        } else {
            Bytes::new()
        };
        if s.get(at) != Some(&b';') {
            return Err(UriError::MissingTransport);
        }
        at += 1;
        let t_len = run_of(&s[at..], ALNUM);
        if t_len == 0 || (at + t_len < s.len() && s[at + t_len] != b';') {
            return Err(UriError::BadTransport);
        }
        // The usual transport as a static: equal bytes, and no reference count to touch.
        let transport = if &s[at..at + t_len] == b"tcp" {
            Bytes::from_static(b"tcp")
        } else {
            input.slice(at..at + t_len)
        };
        at += t_len;

        let mut params = Vec::new();
        while at < s.len() {
            // s[at] == ';'
            at += 1;
            let n_len = run_of(&s[at..], TOKEN);
            if n_len == 0 {
                return Err(UriError::BadParam);
            }
            let name = input.slice(at..at + n_len);
            at += n_len;
            let value = if s.get(at) == Some(&b'=') {
                at += 1;
                let v_len = run_of(&s[at..], TOKEN);
                if v_len == 0 {
                    return Err(UriError::BadParam);
                }
                at += v_len;
                Some(input.slice(at - v_len..at))
            } else {
                None
            };
            if at < s.len() && s[at] != b';' {
                return Err(UriError::BadParam);
            }
            params.push((name, value));
        }

        Ok(Uri {
            secure,
            userinfo,
            host,
            port,
            session_id,
            transport,
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
    // Fastest path: one URI of the common form (it holds no blank).
    if let Some(u) = parse_common(input, s) {
        return Ok(vec![u]);
    }
    // Fast path: the common single-URI path.
    if memchr::memchr2(b' ', b'\t', s).is_none() {
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
        match parse_common(input, &s[i..end]) {
            Some(u) => out.push(u),
            None => out.push(Uri::parse_general(&input.slice(i..end))?),
        }
        i = end;
    }
    if out.is_empty() {
        return Err(UriError::EmptyPath);
    }
    Ok(out)
}

/// The common one-URI path (see `parse_common`) over `s`, a slice of `base`; `None` for any
/// other value, which [`parse_path_in`] then reads.
#[inline]
pub(crate) fn parse_path_fast(base: &Bytes, s: &[u8]) -> Option<Vec<Uri>> {
    parse_common(base, s).map(|u| vec![u])
}

/// [`parse_path`] over `s`, a slice of `base`, without first making a `Bytes` of `s`.
pub(crate) fn parse_path_in(base: &Bytes, s: &[u8]) -> Result<Vec<Uri>, UriError> {
    match parse_common(base, s) {
        Some(u) => Ok(vec![u]),
        None => parse_path(&base.slice_ref(s)),
    }
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
        let input = Bytes::from_static(b"msrp://example.com:1/abc;ws");
        let u = Uri::parse(&input).unwrap();
        let base = input.as_ptr() as usize;
        assert_eq!(u.session_id.as_ptr() as usize, base + 21);
        assert_eq!(u.transport.as_ptr() as usize, base + 25);
        // "tcp" is shared as a static instead (same bytes).
        let u = Uri::parse_slice(b"msrp://h/s;tcp").unwrap();
        assert_eq!(&u.transport[..], b"tcp");
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

    fn fast_agrees(s: &[u8]) {
        let b = Bytes::copy_from_slice(s);
        if let Some(fast) = parse_common(&b, &b) {
            assert_eq!(
                Uri::parse_general(&b),
                Ok(fast),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn fast_path_covers_the_common_forms() {
        for s in [
            &b"msrp://127.0.0.1:2855/43b7b647f7ef0e4660ba;tcp"[..],
            b"msrps://biloxi.example.com:12763/kjhd37s2s20w2a;tcp",
            b"msrp://h/a/b+c=;ws",
            b"msrp://relay.example.com;tcp",
            b"msrp://1.2.3.999:0/s;tcp",
        ] {
            let b = Bytes::copy_from_slice(s);
            assert!(parse_common(&b, &b).is_some(), "{s:?}");
            fast_agrees(s);
        }
        // Left to the general scanner.
        for s in [
            &b"MSRP://h/s;tcp"[..],
            b"msrp://u@h/s;tcp",
            b"msrp://[::1]/s;tcp",
            b"msrp://h/s;tcp;x=y",
            b"msrp://h:123456/s;tcp",
            b"msrp://h:99999/s;tcp",
            b"msrp://h/s",
            b"msrp://h/;tcp",
        ] {
            let b = Bytes::copy_from_slice(s);
            assert!(parse_common(&b, &b).is_none(), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_general(s in "(msrps?|MSRP)://([a-z0-9.@:%_~-]|\\[|\\]){0,16}(/[a-zA-Z0-9/+=%;-]{0,8})?(;[a-z0-9=;]{0,6})?") {
            fast_agrees(s.as_bytes());
        }

        #[test]
        fn fast_path_agrees_on_random_bytes(s in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let mut v = b"msrp://".to_vec();
            v.extend_from_slice(&s);
            fast_agrees(&v);
        }

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
