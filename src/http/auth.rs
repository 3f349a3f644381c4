//! Authentication, pure: `Authorization: Bearer <token>` for scripts, or the `msrpcast_token`
//! cookie for the page.
//!
//! The cookie holds an opaque random session key (128 bits, hex) issued by `POST /login`, not the
//! token itself. Why: the token is a long-lived shared secret that scripts use too; a session key
//! expires on its own (`Max-Age` and a server-side deadline), dies with the process, can be
//! revoked by logout without changing the token, and is always cookie-safe (a token may contain
//! `;`, `,`, spaces or quotes). The cost is a small bounded table here, with no HMAC or key to
//! manage. All comparisons of secrets are constant-time in their content.

use super::head::RequestHead;
use super::params::{cookie, parse_urlencoded};
use super::response::COOKIE_NAME;

/// Compares `given` with `expected` in time that depends only on `expected.len()`, never on
/// where the bytes differ nor on the content of `given`. A length mismatch is folded into the
/// result, not returned early.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff: u8 = 0;
    for (i, &e) in expected.iter().enumerate() {
        // A missing byte compares against the complement of the expected one: always unequal.
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= g ^ e;
    }
    let len_diff = (given.len() ^ expected.len()) as u64;
    // Fold the length difference into one bit without a data-dependent branch.
    let len_bit = ((len_diff | len_diff.wrapping_neg()) >> 63) as u8;
    std::hint::black_box(diff | len_bit) == 0
}

/// The credential a request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
    None,
}

/// Finds the credential: the Bearer token first, else the session cookie.
pub fn credential(head: &RequestHead) -> Credential<'_> {
    if let Some(v) = head.header("authorization") {
        if let Some((scheme, rest)) = v.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Credential::Bearer(rest.trim());
            }
        }
    }
    for c in head.header_all("cookie") {
        if let Some(v) = cookie(c, COOKIE_NAME) {
            return Credential::Cookie(v);
        }
    }
    Credential::None
}

/// The result of [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No token configured: everything is open (the handler then binds to 127.0.0.1 only).
    Open,
    /// A correct Bearer token.
    Token,
    /// A live session cookie.
    Session,
    /// Missing or wrong credential: 401.
    Denied,
}

impl Auth {
    pub fn allowed(self) -> bool {
        self != Auth::Denied
    }
}

/// Decides whether `head` may use a protected route.
pub fn authorize(head: &RequestHead, token: Option<&str>, sessions: &Sessions, now: u64) -> Auth {
    let Some(token) = token else {
        return Auth::Open;
    };
    match credential(head) {
        Credential::Bearer(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Auth::Token,
        Credential::Cookie(k) if sessions.check(k, now) => Auth::Session,
        _ => Auth::Denied,
    }
}

/// Checks a `POST /login` form body (`token=...`) against the configured token.
pub fn login_form_ok(body: &str, token: &str) -> bool {
    let given = parse_urlencoded(body)
        .ok()
        .and_then(|f| f.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v))
        .unwrap_or_default();
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// The authority (`host` or `host:port`, lower-case, IPv6 in brackets) split into host and
/// port; `None` when it is not one.
fn split_authority(a: &str) -> Option<(String, Option<u16>)> {
    let a = a.trim().to_ascii_lowercase();
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (format!("[{h}]"), port)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p.parse().ok()?)),
            Some(_) => return None,
            None => (a.clone(), None),
        }
    };
    let host = host.trim_end_matches('.').to_owned();
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `(host, port)` matches an entry of `allowed` (`host` matches any port).
fn listed(host: &str, port: Option<u16>, allowed: &[String]) -> bool {
    allowed.iter().any(|e| match split_authority(e) {
        Some((h, None)) => h == host,
        Some((h, Some(p))) => h == host && port == Some(p),
        None => false,
    })
}

/// Without a token (loopback only): the `Host` of a request must name this machine — a loopback
/// name or one of `allowed` (`http_allowed_hosts`) — so a page whose DNS name was rebound to
/// 127.0.0.1 cannot read the API. A request without `Host` (HTTP/1.0 tools) passes.
pub fn host_allowed(head: &RequestHead, allowed: &[String]) -> bool {
    let Some(h) = head.header("host") else {
        return true;
    };
    match split_authority(h) {
        Some((host, port)) => is_loopback_name(&host) || listed(&host, port, allowed),
        None => false,
    }
}

/// Without a token: a request carrying `Origin` must come from the page itself (the Origin's
/// authority is the request's `Host`) or from an origin in `allowed`; browsers send `Origin`
/// with every cross-site POST, so a foreign page cannot upload or cancel. No `Origin` (scripts,
/// curl) passes.
pub fn origin_allowed(head: &RequestHead, allowed: &[String]) -> bool {
    let Some(origin) = head.header("origin") else {
        return true;
    };
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false; // "null" (sandboxed frames, file:) and anything else
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let Some((host, port)) = split_authority(authority) else {
        return false;
    };
    let port = port.unwrap_or(default_port);
    let same = head
        .header("host")
        .and_then(split_authority)
        .is_some_and(|(h, p)| h == host && p.unwrap_or(80) == port);
    same || listed(&host, Some(port), allowed)
}

/// `http_login_max_failures`: failed logins allowed per minute over all clients, as a token
/// bucket (a full minute's allowance at most), so guessing is slowed to that rate.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    per_minute: u64,
    /// In 1/60 of an attempt; a failure costs 60.
    budget: u64,
    last: u64,
}

impl LoginThrottle {
    pub fn new(per_minute: usize) -> Self {
        let per_minute = (per_minute as u64).max(1);
        LoginThrottle {
            per_minute,
            budget: per_minute * 60,
            last: 0,
        }
    }

    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        self.budget = self
            .budget
            .saturating_add(elapsed.saturating_mul(self.per_minute))
            .min(self.per_minute * 60);
    }

    /// `Err(seconds)` to wait when no attempt is allowed now (answer 429 with Retry-After).
    pub fn check(&mut self, now: u64) -> Result<(), u64> {
        self.refill(now);
        if self.budget >= 60 {
            Ok(())
        } else {
            Err((60 - self.budget).div_ceil(self.per_minute).max(1))
        }
    }

    /// A wrong token was tried.
    pub fn failed(&mut self, now: u64) {
        self.refill(now);
        self.budget = self.budget.saturating_sub(60);
    }
}

const KEY_BYTES: usize = 16;

/// Server-side session keys: a bounded table of random keys with deadlines (`now` in seconds,
/// from any monotonic clock the caller uses consistently).
#[derive(Debug, Clone)]
pub struct Sessions {
    entries: Vec<([u8; KEY_BYTES], u64)>,
    max: usize,
    ttl_secs: u64,
    /// Failed `POST /login` attempts (shared by all connections, like the sessions).
    pub login: LoginThrottle,
}

/// The OS random source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomUnavailable;

impl Sessions {
    /// At most `max` live sessions (the oldest is dropped beyond), each valid `ttl_secs`.
    pub fn new(max: usize, ttl_secs: u64) -> Self {
        Sessions {
            entries: Vec::new(),
            max: max.max(1),
            ttl_secs,
            login: LoginThrottle::new(20),
        }
    }

    /// Session lifetime, for the cookie's `Max-Age`.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Issues a new session key (32 hex digits) valid until `now + ttl`.
    pub fn issue(&mut self, now: u64) -> Result<String, RandomUnavailable> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|_| RandomUnavailable)?;
        self.entries.retain(|(_, exp)| *exp > now);
        if self.entries.len() >= self.max {
            self.entries.remove(0);
        }
        self.entries.push((key, now.saturating_add(self.ttl_secs)));
        Ok(hex(&key))
    }

    /// Whether `key` is a live session. Every entry is compared, in constant time each.
    pub fn check(&self, key: &str, now: u64) -> bool {
        let Some(k) = unhex(key) else {
            return false;
        };
        let mut found = false;
        for (e, exp) in &self.entries {
            found |= constant_time_eq(&k, e) & (*exp > now);
        }
        found
    }

    /// Ends a session (logout).
    pub fn revoke(&mut self, key: &str) {
        if let Some(k) = unhex(key) {
            self.entries.retain(|(e, _)| !constant_time_eq(&k, e));
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; KEY_BYTES]> {
    let b = s.as_bytes();
    if b.len() != KEY_BYTES * 2 {
        return None;
    }
    let mut out = [0u8; KEY_BYTES];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8; // two hex digits are below 256
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_head, HeadLimits, Parsed};

    fn head(extra: &str) -> RequestHead {
        let s = format!("GET /api/conferences HTTP/1.1\r\n{extra}\r\n");
        match parse_head(s.as_bytes(), &HeadLimits::default()) {
            Ok(Parsed::Complete(h, _)) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn constant_time_eq_is_correct() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"Secret", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"secrets", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"x", b""));
        // A prefix padded with what a missing byte compares against must still differ.
        assert!(!constant_time_eq(&[0xff], &[0x00, 0xff]));
        for a in 0u8..=255 {
            for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                assert_eq!(constant_time_eq(&[a], &[b]), a == b);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn constant_time_eq_matches_eq(a in proptest::collection::vec(0u8..4, 0..6),
                                       b in proptest::collection::vec(0u8..4, 0..6)) {
            proptest::prop_assert_eq!(constant_time_eq(&a, &b), a == b);
        }
    }

    #[test]
    fn bearer_cookie_and_open() {
        let s = Sessions::new(4, 100);
        assert_eq!(authorize(&head(""), None, &s, 0), Auth::Open);
        assert_eq!(authorize(&head(""), Some("T"), &s, 0), Auth::Denied);
        assert_eq!(
            authorize(&head("Authorization: Bearer T\r\n"), Some("T"), &s, 0),
            Auth::Token
        );
        assert_eq!(
            authorize(&head("Authorization: bearer  T \r\n"), Some("T"), &s, 0),
            Auth::Token
        );
        assert_eq!(
            authorize(&head("Authorization: Bearer X\r\n"), Some("T"), &s, 0),
            Auth::Denied
        );
        assert_eq!(
            authorize(&head("Authorization: Basic VA==\r\n"), Some("T"), &s, 0),
            Auth::Denied
        );
        // The raw token in the cookie is not a session.
        assert_eq!(
            authorize(&head("Cookie: msrpcast_token=T\r\n"), Some("T"), &s, 0),
            Auth::Denied
        );
    }

    #[test]
    fn sessions_issue_check_expire_revoke() {
        let mut s = Sessions::new(2, 100);
        let k = s.issue(10).unwrap();
        assert_eq!(k.len(), 32);
        let h = head(&format!("Cookie: a=b; msrpcast_token={k}\r\n"));
        assert_eq!(authorize(&h, Some("T"), &s, 50), Auth::Session);
        assert_eq!(authorize(&h, Some("T"), &s, 110), Auth::Denied, "expired");
        let k2 = s.issue(20).unwrap();
        let k3 = s.issue(30).unwrap();
        assert_ne!(k2, k3);
        assert_eq!(s.len(), 2);
        assert!(!s.check(&k, 40), "oldest dropped beyond max");
        assert!(s.check(&k2, 40) && s.check(&k3, 40));
        s.revoke(&k2);
        assert!(!s.check(&k2, 40) && s.check(&k3, 40));
        assert!(!s.check("zz", 40));
    }

    /// Finding 15 of issue 14: 37,756 login guesses in 5 s, no throttle.
    #[test]
    fn failed_logins_are_throttled() {
        let mut t = LoginThrottle::new(3);
        for _ in 0..3 {
            assert_eq!(t.check(100), Ok(()));
            t.failed(100);
        }
        assert_eq!(t.check(100), Err(20), "3 per minute: one more after 20 s");
        assert!(t.check(119).is_err());
        assert_eq!(t.check(120), Ok(()));
        t.failed(120);
        assert!(t.check(121).is_err());
        // A quiet minute restores the whole allowance, never more.
        assert_eq!(t.check(1000), Ok(()));
        for _ in 0..3 {
            t.failed(1000);
        }
        assert!(t.check(1000).is_err());
    }

    fn with(extra: &str) -> RequestHead {
        head(extra)
    }

    /// Finding 6 of issue 14: without a token a cross-site POST was accepted and a rebound DNS
    /// name could read the API.
    #[test]
    fn host_and_origin_checks() {
        let allowed = vec![
            "files.example.com".to_owned(),
            "proxy.example:8443".to_owned(),
        ];
        for ok in [
            "127.0.0.1:8088",
            "localhost",
            "LOCALHOST:1",
            "[::1]:8088",
            "127.1.2.3",
            "files.example.com:80",
            "proxy.example:8443",
        ] {
            assert!(
                host_allowed(&with(&format!("Host: {ok}\r\n")), &allowed),
                "{ok}"
            );
        }
        assert!(host_allowed(&with(""), &allowed));
        for bad in [
            "evil.example:8088",
            "127.0.0.1.evil.example",
            "proxy.example:80",
            "[::2]:1",
            "a:b:c",
            "",
        ] {
            assert!(
                !host_allowed(&with(&format!("Host: {bad}\r\n")), &allowed),
                "{bad}"
            );
        }
        let h = |o: &str| with(&format!("Host: 127.0.0.1:8088\r\nOrigin: {o}\r\n"));
        assert!(origin_allowed(&with("Host: 127.0.0.1:8088\r\n"), &allowed));
        assert!(origin_allowed(&h("http://127.0.0.1:8088"), &allowed));
        assert!(origin_allowed(&h("https://files.example.com"), &allowed));
        assert!(origin_allowed(&h("https://proxy.example:8443"), &allowed));
        for bad in [
            "http://evil.example",
            "null",
            "http://localhost:8088",
            "http://127.0.0.1:9999",
            "file://x",
            "https://proxy.example",
        ] {
            assert!(!origin_allowed(&h(bad), &allowed), "{bad}");
        }
        let plain = with("Host: localhost\r\nOrigin: http://localhost\r\n");
        assert!(origin_allowed(&plain, &[]));
    }

    #[test]
    fn login_form() {
        assert!(login_form_ok("token=a%26b", "a&b"));
        assert!(!login_form_ok("token=a", "a&b"));
        assert!(!login_form_ok("", "a&b"));
        assert!(login_form_ok("x=1&token=s+t", "s t"));
    }
}
