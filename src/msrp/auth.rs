//! RFC 4976 relay authentication (`AUTH`), sans-IO: the client side that a receiver runs on its
//! connection to an MSRP relay before the relay will forward frames to it.
//!
//! The exchange (RFC 4976 §5.1, with HTTP digest of RFC 2617):
//! 1. `AUTH` with `To-Path: <relay URI>`, `From-Path: <our URI>` and optionally `Expires`;
//! 2. the relay answers `401` with `WWW-Authenticate: Digest realm=..., nonce=..., qop=...`;
//! 3. `AUTH` again with `Authorization: Digest ...`, where HA1 = MD5(user:realm:password),
//!    HA2 = MD5("AUTH:" + the To-Path URI as sent), and with `qop=auth`
//!    response = MD5(HA1:nonce:nc:cnonce:auth:HA2) (without qop: MD5(HA1:nonce:HA2));
//! 4. `200` carrying `Use-Path` (the relay URIs senders must put before ours) and `Expires`.
//!
//! [`AuthClient`] drives it: [`AuthClient::start`] gives the first request, every frame from the
//! relay goes to [`AuthClient::handle_frame`], which says what to send next or reports the
//! outcome. A `401` after our credentials (not marked `stale`) ends it with
//! [`AuthError::Rejected`]; `403` with [`AuthError::Forbidden`]; a `423` (Expires out of bounds)
//! is retried once with the value moved into the relay's `Min-Expires`/`Max-Expires`. Time-outs
//! are the caller's: nothing here reads a clock.

use std::fmt;

use bytes::Bytes;
use md5::{Digest, Md5};

use super::ids::IdGen;
use super::message::{Continuation, Header, Kind, Message, Method};
use super::uri::Uri;

/// Why authentication with the relay failed. [`AuthError::status_code`] gives the MSRP status
/// that caused it, when a response did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// `401` again after our credentials: wrong user name or password.
    Rejected,
    /// `403`: the relay knows the user but refuses it.
    Forbidden { comment: String },
    /// `423` even after moving `Expires` into the relay's bounds.
    ExpiresOutOfBounds { min: Option<u32>, max: Option<u32> },
    /// The `401` carried no usable digest challenge.
    BadChallenge(ChallengeError),
    /// Any other non-2xx response.
    Failed { code: u16, comment: String },
    /// The `200` carried no `Use-Path`.
    MissingUsePath,
}

impl AuthError {
    /// The MSRP response code behind the error, if a response caused it.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            AuthError::Rejected | AuthError::BadChallenge(_) => Some(401),
            AuthError::Forbidden { .. } => Some(403),
            AuthError::ExpiresOutOfBounds { .. } => Some(423),
            AuthError::Failed { code, .. } => Some(*code),
            AuthError::MissingUsePath => Some(200),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Rejected => f.write_str("authentication rejected (401 after credentials)"),
            AuthError::Forbidden { comment } => write!(f, "relay refused the user: 403 {comment}"),
            AuthError::ExpiresOutOfBounds { min, max } => {
                write!(f, "relay refused the Expires value: 423")?;
                if let Some(m) = min {
                    write!(f, ", Min-Expires {m}")?;
                }
                if let Some(m) = max {
                    write!(f, ", Max-Expires {m}")?;
                }
                Ok(())
            }
            AuthError::BadChallenge(e) => write!(f, "unusable WWW-Authenticate: {e}"),
            AuthError::Failed { code, comment } => write!(f, "AUTH failed: {code} {comment}"),
            AuthError::MissingUsePath => f.write_str("relay's 200 to AUTH has no Use-Path"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Why a `WWW-Authenticate` value is not a usable digest challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeError {
    /// No `WWW-Authenticate` header at all.
    Missing,
    /// The scheme is not `Digest`.
    NotDigest,
    /// Not a comma-separated list of `name=value` / `name="value"`.
    Syntax,
    /// A quoted string without its closing quote.
    UnterminatedQuote,
    /// No `realm`.
    MissingRealm,
    /// No `nonce`.
    MissingNonce,
    /// An `algorithm` other than MD5.
    UnsupportedAlgorithm,
    /// A `qop` list without `auth`.
    UnsupportedQop,
    /// Not UTF-8.
    BadUtf8,
}

impl fmt::Display for ChallengeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChallengeError::Missing => "no WWW-Authenticate header",
            ChallengeError::NotDigest => "scheme is not Digest",
            ChallengeError::Syntax => "malformed parameter list",
            ChallengeError::UnterminatedQuote => "unterminated quoted string",
            ChallengeError::MissingRealm => "no realm",
            ChallengeError::MissingNonce => "no nonce",
            ChallengeError::UnsupportedAlgorithm => "algorithm is not MD5",
            ChallengeError::UnsupportedQop => "qop offers no \"auth\"",
            ChallengeError::BadUtf8 => "not UTF-8",
        })
    }
}

/// A parsed digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    /// `qop` offered `auth` (we then answer with `qop=auth`, `nc` and `cnonce`); `false` when the
    /// challenge had no `qop` (RFC 2069 compatibility).
    pub qop_auth: bool,
    pub opaque: Option<String>,
    /// `algorithm` as given (only MD5 is accepted); echoed back.
    pub algorithm: Option<String>,
    /// `stale=true`: the nonce expired, the credentials were fine.
    pub stale: bool,
}

/// Splits `name=value` parameters separated by commas; values may be quoted strings with `\`
/// escapes. Names are returned lower-cased.
fn parse_params(s: &str) -> Result<Vec<(String, String)>, ChallengeError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        // Tolerate empty list elements (`a=1,,b=2`, a trailing comma).
        if i < b.len() && b[i] == b',' {
            i += 1;
            continue;
        }
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && is_token_byte(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(ChallengeError::Syntax);
        }
        let name = s[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(ChallengeError::Syntax);
        }
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            loop {
                let Some(&c) = b.get(i) else {
                    return Err(ChallengeError::UnterminatedQuote);
                };
                match c {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        let Some(&e) = b.get(i + 1) else {
                            return Err(ChallengeError::UnterminatedQuote);
                        };
                        v.push(e as char);
                        i += 2;
                    }
                    _ => {
                        // Copy the whole UTF-8 sequence starting here.
                        let ch = s[i..].chars().next().ok_or(ChallengeError::Syntax)?;
                        v.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            v
        } else {
            let vs = i;
            while i < b.len() && is_token_byte(b[i]) {
                i += 1;
            }
            if i == vs {
                return Err(ChallengeError::Syntax);
            }
            s[vs..i].to_string()
        };
        out.push((name, value));
        skip_ws(&mut i);
        match b.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(_) => return Err(ChallengeError::Syntax),
        }
    }
}

/// RFC 2616 token characters.
fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses a `WWW-Authenticate` value: `Digest` and its parameters in any order, names
/// case-insensitive, quoted or token values.
pub fn parse_challenge(value: &[u8]) -> Result<Challenge, ChallengeError> {
    let s = std::str::from_utf8(value).map_err(|_| ChallengeError::BadUtf8)?;
    let s = s.trim_start();
    let scheme_end = s.find([' ', '\t']).unwrap_or(s.len());
    if !s[..scheme_end].eq_ignore_ascii_case("digest") {
        return Err(ChallengeError::NotDigest);
    }
    let params = parse_params(&s[scheme_end..])?;
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let realm = get("realm").ok_or(ChallengeError::MissingRealm)?;
    let nonce = get("nonce").ok_or(ChallengeError::MissingNonce)?;
    let algorithm = get("algorithm");
    if let Some(a) = &algorithm {
        if !a.eq_ignore_ascii_case("md5") {
            return Err(ChallengeError::UnsupportedAlgorithm);
        }
    }
    let qop_auth = match get("qop") {
        None => false,
        Some(q) => {
            if !q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) {
                return Err(ChallengeError::UnsupportedQop);
            }
            true
        }
    };
    Ok(Challenge {
        realm,
        nonce,
        qop_auth,
        opaque: get("opaque"),
        algorithm,
        stale: get("stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
    })
}

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    let out = h.finalize();
    let mut s = String::with_capacity(32);
    for b in out.iter() {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// The digest `response` value (RFC 2617 §3.2.2.1) for `method` on `uri`. With `qop = Some("auth")`
/// it covers `nc` and `cnonce`; with `None` it is the RFC 2069 form.
#[allow(clippy::too_many_arguments)]
pub fn digest_response(
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
) -> String {
    let ha1 = md5_hex(&[
        user.as_bytes(),
        b":",
        realm.as_bytes(),
        b":",
        password.as_bytes(),
    ]);
    let ha2 = md5_hex(&[method.as_bytes(), b":", uri.as_bytes()]);
    match qop {
        Some((qop, nc, cnonce)) => md5_hex(&[
            ha1.as_bytes(),
            b":",
            nonce.as_bytes(),
            b":",
            nc.as_bytes(),
            b":",
            cnonce.as_bytes(),
            b":",
            qop.as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
        None => md5_hex(&[ha1.as_bytes(), b":", nonce.as_bytes(), b":", ha2.as_bytes()]),
    }
}

/// A quoted-string with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The `Authorization` value answering `ch` for an AUTH to `uri`.
pub fn authorization(
    ch: &Challenge,
    user: &str,
    password: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let nc = format!("{nc:08x}");
    let qop = ch.qop_auth.then_some(("auth", nc.as_str(), cnonce));
    let response = digest_response(user, &ch.realm, password, "AUTH", uri, &ch.nonce, qop);
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response={}",
        quote(user),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        quote(&response)
    );
    if ch.qop_auth {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce={}", quote(cnonce)));
    }
    if let Some(a) = &ch.algorithm {
        v.push_str(&format!(", algorithm={a}"));
    }
    if let Some(o) = &ch.opaque {
        v.push_str(&format!(", opaque={}", quote(o)));
    }
    v
}

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct AuthParams {
    /// The relay's URI (no session-id); the To-Path of AUTH and the digest `uri`.
    pub relay: Uri,
    /// Our URI: From-Path of AUTH, and the last URI senders will address.
    pub local: Uri,
    pub user: String,
    pub password: String,
    /// Requested lifetime of the authorization (seconds), or the relay's default.
    pub expires: Option<u32>,
}

/// The outcome of a successful AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The relay's `Use-Path`: senders reach us at `<use_path...> <our URI>`.
    pub use_path: Vec<Uri>,
    /// Granted lifetime in seconds, when the relay said.
    pub expires: Option<u32>,
}

/// What to do after a frame from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Not for us (another transaction, or a request): ignore it.
    Ignored,
    /// Write this AUTH request and wait for its response.
    Send(Message),
    /// Authorized: the relay forwards frames for us on this connection from now on.
    Done(Authorized),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Waiting,
    Finished,
}

/// The client side of the AUTH exchange on one connection to a relay.
#[derive(Debug)]
pub struct AuthClient {
    p: AuthParams,
    ids: IdGen,
    state: State,
    tid: Bytes,
    /// The digest `uri`: the relay URI exactly as written in To-Path.
    uri: String,
    /// Whether the request in flight carried credentials.
    sent_credentials: bool,
    nc: u32,
    stale_retries: u8,
    expires_retried: bool,
    expires: Option<u32>,
}

impl AuthClient {
    pub fn new(p: AuthParams, ids: IdGen) -> AuthClient {
        let uri = p.relay.to_string();
        let expires = p.expires;
        AuthClient {
            p,
            ids,
            state: State::Idle,
            tid: Bytes::new(),
            uri,
            sent_credentials: false,
            nc: 0,
            stale_retries: 0,
            expires_retried: false,
            expires,
        }
    }

    /// The transaction id of the AUTH in flight.
    pub fn transaction_id(&self) -> &Bytes {
        &self.tid
    }

    /// The first AUTH (no credentials).
    pub fn start(&mut self) -> Message {
        self.request(None)
    }

    fn request(&mut self, authorization: Option<String>) -> Message {
        self.tid = self.ids.transaction_id_bytes();
        self.state = State::Waiting;
        self.sent_credentials = authorization.is_some();
        let mut headers = Vec::new();
        if let Some(a) = authorization {
            headers.push(Header::Authorization(Bytes::from(a)));
        }
        if let Some(e) = self.expires {
            headers.push(Header::Expires(e));
        }
        Message {
            transaction_id: self.tid.clone(),
            kind: Kind::Request(Method::Auth),
            to_path: vec![self.p.relay.clone()],
            from_path: vec![self.p.local.clone()],
            headers,
            body: Bytes::new(),
            continuation: Continuation::End,
        }
    }

    fn answer(&mut self, ch: &Challenge) -> Message {
        self.nc += 1;
        let cnonce = format!("{:016x}", self.ids.next_u64());
        let a = authorization(
            ch,
            &self.p.user,
            &self.p.password,
            &self.uri,
            self.nc,
            &cnonce,
        );
        self.request(Some(a))
    }

    /// Takes one frame read from the relay connection.
    pub fn handle_frame(&mut self, msg: &Message) -> Result<AuthStep, AuthError> {
        let Kind::Response { code, comment } = &msg.kind else {
            return Ok(AuthStep::Ignored);
        };
        if self.state != State::Waiting || msg.transaction_id != self.tid {
            return Ok(AuthStep::Ignored);
        }
        let comment = comment
            .as_ref()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        let result = self.on_response(*code, comment, msg);
        if !matches!(result, Ok(AuthStep::Send(_))) {
            self.state = State::Finished;
        }
        result
    }

    fn on_response(
        &mut self,
        code: u16,
        comment: String,
        msg: &Message,
    ) -> Result<AuthStep, AuthError> {
        match code {
            200..=299 => {
                let mut use_path = Vec::new();
                let mut expires = None;
                for h in &msg.headers {
                    match h {
                        Header::UsePath(p) => use_path.extend(p.iter().cloned()),
                        Header::Expires(e) => expires = Some(*e),
                        _ => {}
                    }
                }
                if use_path.is_empty() {
                    return Err(AuthError::MissingUsePath);
                }
                Ok(AuthStep::Done(Authorized { use_path, expires }))
            }
            401 => {
                let value = msg
                    .headers
                    .iter()
                    .find_map(|h| match h {
                        Header::WwwAuthenticate(v) => Some(v),
                        _ => None,
                    })
                    .ok_or(AuthError::BadChallenge(ChallengeError::Missing));
                if self.sent_credentials {
                    // A stale nonce means the password was right: answer the fresh one, once.
                    let stale = value
                        .as_ref()
                        .ok()
                        .and_then(|v| parse_challenge(v).ok())
                        .filter(|c| c.stale);
                    match stale {
                        Some(ch) if self.stale_retries == 0 => {
                            self.stale_retries += 1;
                            Ok(AuthStep::Send(self.answer(&ch)))
                        }
                        _ => Err(AuthError::Rejected),
                    }
                } else {
                    let ch = parse_challenge(value?).map_err(AuthError::BadChallenge)?;
                    Ok(AuthStep::Send(self.answer(&ch)))
                }
            }
            403 => Err(AuthError::Forbidden { comment }),
            423 => {
                let (mut min, mut max) = (None, None);
                for h in &msg.headers {
                    match h {
                        Header::MinExpires(v) => min = Some(*v),
                        Header::MaxExpires(v) => max = Some(*v),
                        _ => {}
                    }
                }
                let current = self.expires;
                let fixed = match (current, min, max) {
                    (Some(e), Some(lo), _) if e < lo => Some(lo),
                    (Some(e), _, Some(hi)) if e > hi => Some(hi),
                    _ => None,
                };
                match fixed {
                    Some(e) if !self.expires_retried => {
                        self.expires_retried = true;
                        self.expires = Some(e);
                        // Start over: the relay may want a fresh challenge.
                        self.stale_retries = 0;
                        Ok(AuthStep::Send(self.request(None)))
                    }
                    _ => Err(AuthError::ExpiresOutOfBounds { min, max }),
                }
            }
            _ => Err(AuthError::Failed { code, comment }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::parser::{parse, Limits, Parsed};
    use crate::msrp::writer::write_message;
    use bytes::BytesMut;

    // Vectors computed independently with Python's hashlib.
    const RELAY: &str = "msrp://127.0.0.1:7000;tcp";
    const HA1: &str = "83ebd213c351c55f83f92e2d1360ca53"; // md5("msrpcast:msrpcast-relay:relay-secret")
    const HA2: &str = "15a8f69b16493013d796617b8b732305"; // md5("AUTH:" + RELAY)

    fn uri(s: &str) -> Uri {
        Uri::parse_slice(s.as_bytes()).unwrap()
    }

    #[test]
    fn md5_parts_match_python() {
        assert_eq!(md5_hex(&[b"msrpcast:msrpcast-relay:relay-secret"]), HA1);
        assert_eq!(md5_hex(&[b"AUTH:", RELAY.as_bytes()]), HA2);
    }

    #[test]
    fn digest_with_qop_auth() {
        let r = digest_response(
            "msrpcast",
            "msrpcast-relay",
            "relay-secret",
            "AUTH",
            RELAY,
            "4f2a9c1e5b7d",
            Some(("auth", "00000001", "0a1b2c3d4e5f6071")),
        );
        assert_eq!(r, "00b104881804c7f2251dc5bb87402354");
    }

    #[test]
    fn digest_without_qop() {
        let r = digest_response(
            "msrpcast",
            "msrpcast-relay",
            "relay-secret",
            "AUTH",
            RELAY,
            "4f2a9c1e5b7d",
            None,
        );
        assert_eq!(r, "d31b66c2ece1f778ea050e38f8faab92");
    }

    #[test]
    fn digest_rfc2617_example() {
        let r = digest_response(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("auth", "00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn challenge_any_order_and_case() {
        let c = parse_challenge(
            b"Digest qop=\"auth\", NONCE=\"ab\\\"c\",realm=\"msrpcast-relay\" , algorithm=MD5, opaque=\"x,y\"",
        )
        .unwrap();
        assert_eq!(c.realm, "msrpcast-relay");
        assert_eq!(c.nonce, "ab\"c");
        assert!(c.qop_auth);
        assert_eq!(c.algorithm.as_deref(), Some("MD5"));
        assert_eq!(c.opaque.as_deref(), Some("x,y"));
        assert!(!c.stale);
        let c =
            parse_challenge(b"digest realm=r,nonce=n,qop=\"auth-int,auth\",stale=TRUE").unwrap();
        assert!(c.qop_auth && c.stale);
        let c = parse_challenge(b"Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!c.qop_auth);
    }

    #[test]
    fn challenge_errors() {
        use ChallengeError::*;
        let e = |v: &[u8]| parse_challenge(v).unwrap_err();
        assert_eq!(e(b"Basic realm=\"r\""), NotDigest);
        assert_eq!(e(b"Digest realm=\"r\""), MissingNonce);
        assert_eq!(e(b"Digest nonce=\"n\""), MissingRealm);
        assert_eq!(e(b"Digest realm=\"r, nonce=\"n\""), Syntax);
        assert_eq!(e(b"Digest realm=\"r\", nonce=\"n"), UnterminatedQuote);
        assert_eq!(e(b"Digest realm=\"r\", nonce=\"n\\"), UnterminatedQuote);
        assert_eq!(e(b"Digest realm=\"r\" nonce=\"n\""), Syntax);
        assert_eq!(e(b"Digest realm=, nonce=n"), Syntax);
        assert_eq!(e(b"Digest =r"), Syntax);
        assert_eq!(
            e(b"Digest realm=r, nonce=n, algorithm=SHA-256"),
            UnsupportedAlgorithm
        );
        assert_eq!(
            e(b"Digest realm=r, nonce=n, qop=\"auth-int\""),
            UnsupportedQop
        );
        assert_eq!(e(b"Digest realm=\"\xff\", nonce=n"), BadUtf8);
    }

    #[test]
    fn challenge_never_panics_on_prefixes() {
        let full =
            "Digest realm=\"msrpcast-relay\", nonce=\"Zy1x\\\"é\", qop=\"auth\", opaque=\"o\"";
        for i in 0..=full.len() {
            let _ = parse_challenge(&full.as_bytes()[..i]);
        }
    }

    #[test]
    fn authorization_value() {
        let ch = Challenge {
            realm: "msrpcast-relay".into(),
            nonce: "4f2a9c1e5b7d".into(),
            qop_auth: true,
            opaque: None,
            algorithm: None,
            stale: false,
        };
        let a = authorization(
            &ch,
            "msrpcast",
            "relay-secret",
            RELAY,
            1,
            "0a1b2c3d4e5f6071",
        );
        assert_eq!(
            a,
            "Digest username=\"msrpcast\", realm=\"msrpcast-relay\", nonce=\"4f2a9c1e5b7d\", \
             uri=\"msrp://127.0.0.1:7000;tcp\", response=\"00b104881804c7f2251dc5bb87402354\", \
             qop=auth, nc=00000001, cnonce=\"0a1b2c3d4e5f6071\""
        );
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    fn client(expires: Option<u32>) -> AuthClient {
        AuthClient::new(
            AuthParams {
                relay: uri(RELAY),
                local: uri("msrp://127.0.0.1:40000/abc;tcp"),
                user: "msrpcast".into(),
                password: "relay-secret".into(),
                expires,
            },
            IdGen::from_seed(7),
        )
    }

    /// Serialises and re-parses: what goes on the wire must be a valid frame.
    fn wire(m: &Message) -> Message {
        let mut out = BytesMut::new();
        write_message(m, &mut out);
        match parse(&out.freeze(), &Limits::default()).unwrap() {
            Parsed::Complete(m, _) => m,
            other => panic!("{other:?}"),
        }
    }

    fn response(req: &Message, code: u16, headers: Vec<Header>) -> Message {
        wire(&Message {
            transaction_id: req.transaction_id.clone(),
            kind: Kind::Response {
                code,
                comment: Some(Bytes::from_static(b"Reason")),
            },
            to_path: req.from_path.clone(),
            from_path: req.to_path.clone(),
            headers,
            body: Bytes::new(),
            continuation: Continuation::End,
        })
    }

    fn challenge401(req: &Message, extra: &str) -> Message {
        let v =
            format!("Digest realm=\"msrpcast-relay\", nonce=\"4f2a9c1e5b7d\", qop=\"auth\"{extra}");
        response(req, 401, vec![Header::WwwAuthenticate(Bytes::from(v))])
    }

    fn authz(m: &Message) -> String {
        m.headers
            .iter()
            .find_map(|h| match h {
                Header::Authorization(v) => Some(String::from_utf8_lossy(v).into_owned()),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn full_exchange() {
        let mut c = client(Some(600));
        let first = wire(&c.start());
        assert_eq!(first.method(), Some(&Method::Auth));
        assert_eq!(first.to_path, vec![uri(RELAY)]);
        assert_eq!(first.from_path, vec![uri("msrp://127.0.0.1:40000/abc;tcp")]);
        assert!(first.headers.contains(&Header::Expires(600)));
        assert!(!first
            .headers
            .iter()
            .any(|h| matches!(h, Header::Authorization(_))));

        let AuthStep::Send(second) = c.handle_frame(&challenge401(&first, "")).unwrap() else {
            panic!("no second AUTH")
        };
        let second = wire(&second);
        assert_ne!(second.transaction_id, first.transaction_id);
        // Check the response against an independent computation from the cnonce it chose.
        let a = authz(&second);
        let params = parse_params(a.strip_prefix("Digest").unwrap()).unwrap();
        let get = |n: &str| params.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let cnonce = get("cnonce");
        assert_eq!(cnonce.len(), 16);
        let expect = digest_response(
            "msrpcast",
            "msrpcast-relay",
            "relay-secret",
            "AUTH",
            RELAY,
            "4f2a9c1e5b7d",
            Some(("auth", "00000001", &cnonce)),
        );
        assert_eq!(get("response"), expect);
        assert_eq!(get("username"), "msrpcast");
        assert_eq!(get("qop"), "auth");
        assert_eq!(get("nc"), "00000001");
        assert!(a.contains("uri=\"msrp://127.0.0.1:7000;tcp\""));

        // A stray frame of another transaction is ignored.
        assert_eq!(
            c.handle_frame(&response(&first, 200, vec![])).unwrap(),
            AuthStep::Ignored
        );
        let ok = response(
            &second,
            200,
            vec![
                Header::UsePath(vec![uri("msrp://127.0.0.1:7000/s1;tcp")]),
                Header::Expires(600),
            ],
        );
        assert_eq!(
            c.handle_frame(&ok).unwrap(),
            AuthStep::Done(Authorized {
                use_path: vec![uri("msrp://127.0.0.1:7000/s1;tcp")],
                expires: Some(600)
            })
        );
        // Finished: nothing more is taken.
        assert_eq!(c.handle_frame(&ok).unwrap(), AuthStep::Ignored);
    }

    #[test]
    fn second_401_is_rejected() {
        let mut c = client(None);
        let first = c.start();
        let AuthStep::Send(second) = c.handle_frame(&challenge401(&first, "")).unwrap() else {
            panic!()
        };
        let e = c.handle_frame(&challenge401(&second, "")).unwrap_err();
        assert_eq!(e, AuthError::Rejected);
        assert!(e.to_string().contains("authentication rejected"));
        assert_eq!(e.status_code(), Some(401));
    }

    #[test]
    fn stale_nonce_is_answered_once() {
        let mut c = client(None);
        let first = c.start();
        let AuthStep::Send(second) = c.handle_frame(&challenge401(&first, "")).unwrap() else {
            panic!()
        };
        let AuthStep::Send(third) = c
            .handle_frame(&challenge401(&second, ", stale=true"))
            .unwrap()
        else {
            panic!()
        };
        assert!(authz(&third).contains("nc=00000002"));
        assert_eq!(
            c.handle_frame(&challenge401(&third, ", stale=true"))
                .unwrap_err(),
            AuthError::Rejected
        );
    }

    #[test]
    fn forbidden_and_other_failures() {
        let mut c = client(None);
        let first = c.start();
        let AuthStep::Send(second) = c.handle_frame(&challenge401(&first, "")).unwrap() else {
            panic!()
        };
        let e = c.handle_frame(&response(&second, 403, vec![])).unwrap_err();
        assert_eq!(
            e,
            AuthError::Forbidden {
                comment: "Reason".into()
            }
        );
        assert_eq!(e.status_code(), Some(403));

        let mut c = client(None);
        let first = c.start();
        let e = c.handle_frame(&response(&first, 501, vec![])).unwrap_err();
        assert_eq!(e.status_code(), Some(501));

        let mut c = client(None);
        let first = c.start();
        let e = c.handle_frame(&response(&first, 401, vec![])).unwrap_err();
        assert_eq!(e, AuthError::BadChallenge(ChallengeError::Missing));
        let mut c = client(None);
        let first = c.start();
        let bad = response(
            &first,
            401,
            vec![Header::WwwAuthenticate(Bytes::from_static(b"Basic x=y"))],
        );
        assert_eq!(
            c.handle_frame(&bad).unwrap_err(),
            AuthError::BadChallenge(ChallengeError::NotDigest)
        );

        let mut c = client(None);
        let first = c.start();
        let AuthStep::Send(second) = c.handle_frame(&challenge401(&first, "")).unwrap() else {
            panic!()
        };
        assert_eq!(
            c.handle_frame(&response(&second, 200, vec![])).unwrap_err(),
            AuthError::MissingUsePath
        );
    }

    #[test]
    fn expires_out_of_bounds_retried_once() {
        let mut c = client(Some(30));
        let first = c.start();
        let AuthStep::Send(second) = c.handle_frame(&challenge401(&first, "")).unwrap() else {
            panic!()
        };
        let bounds = vec![Header::MinExpires(60), Header::MaxExpires(3600)];
        let AuthStep::Send(again) = c
            .handle_frame(&response(&second, 423, bounds.clone()))
            .unwrap()
        else {
            panic!()
        };
        assert!(again.headers.contains(&Header::Expires(60)));
        assert!(!again
            .headers
            .iter()
            .any(|h| matches!(h, Header::Authorization(_))));
        let AuthStep::Send(fourth) = c.handle_frame(&challenge401(&again, "")).unwrap() else {
            panic!()
        };
        assert_eq!(
            c.handle_frame(&response(&fourth, 423, bounds)).unwrap_err(),
            AuthError::ExpiresOutOfBounds {
                min: Some(60),
                max: Some(3600)
            }
        );
        // Without bounds to move into, a 423 fails at once.
        let mut c = client(None);
        let first = c.start();
        let e = c.handle_frame(&response(&first, 423, vec![])).unwrap_err();
        assert_eq!(e.status_code(), Some(423));
        assert!(e.to_string().contains("423"));
    }

    #[test]
    fn requests_from_the_relay_are_ignored() {
        let mut c = client(None);
        let first = c.start();
        let mut req = first.clone();
        req.kind = Kind::Request(Method::Send);
        assert_eq!(c.handle_frame(&req).unwrap(), AuthStep::Ignored);
    }
}
