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

const KEY_BYTES: usize = 16;

/// Server-side session keys: a bounded table of random keys with deadlines (`now` in seconds,
/// from any monotonic clock the caller uses consistently).
#[derive(Debug, Clone)]
pub struct Sessions {
    entries: Vec<([u8; KEY_BYTES], u64)>,
    max: usize,
    ttl_secs: u64,
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

    #[test]
    fn login_form() {
        assert!(login_form_ok("token=a%26b", "a&b"));
        assert!(!login_form_ok("token=a", "a&b"));
        assert!(!login_form_ok("", "a&b"));
        assert!(login_form_ok("x=1&token=s+t", "s t"));
    }
}
