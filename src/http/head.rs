//! The request head: `httparse` does the syntax; this adds the limits, the framing decision
//! (Content-Length / chunked) and an owned [`RequestHead`].

use super::HttpError;

/// Whether a parse is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Parsed; the head took this many bytes of the input (the body starts there).
    Complete(T, usize),
    /// More bytes needed; keep the input and call again with more appended.
    Partial,
}

/// Limits for the request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Request line plus header block, including the final empty line (431 beyond).
    pub max_head_bytes: usize,
    /// Number of header fields (431 beyond).
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// The request method; the ones msrpcast routes are variants, others are kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Other(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method token as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

/// A parsed request head, owning its strings (they are small and bounded by the head limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The path part of the request target, still percent-encoded (routing decodes segments).
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The Content-Length, when given (and no Transfer-Encoding).
    pub content_length: Option<u64>,
    /// Transfer-Encoding: chunked.
    pub chunked: bool,
    /// The Content-Type value, when given.
    pub content_type: Option<String>,
    /// Whether the connection may stay open after this request.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request carries a body (chunked, or a non-zero Content-Length).
    pub fn has_body(&self) -> bool {
        self.chunked || self.content_length.is_some_and(|n| n > 0)
    }

    /// The value of a query parameter (percent-decoded, `+` as space), if present.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        super::params::parse_urlencoded(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Parses a request head from the start of `buf`. `Partial` means: keep `buf`, append more and
/// call again; once `buf` holds more than `max_head_bytes` without a complete head, the answer is
/// [`HttpError::HeadTooLarge`]. Leading empty lines (RFC 9112 §2.2) are skipped by `httparse`.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Result<Parsed<RequestHead>, HttpError> {
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut storage);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(e) => {
            return Err(match e {
                httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
                httparse::Error::Version => HttpError::VersionNotSupported,
                httparse::Error::Token => HttpError::MalformedHead("invalid token in request line"),
                httparse::Error::HeaderName => HttpError::MalformedHead("invalid header name"),
                httparse::Error::HeaderValue => HttpError::MalformedHead("invalid header value"),
                httparse::Error::NewLine => HttpError::MalformedHead("invalid line ending"),
                httparse::Error::Status => HttpError::MalformedHead("invalid request line"),
            })
        }
    };
    let used = match status {
        httparse::Status::Partial => {
            return if buf.len() > limits.max_head_bytes {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(Parsed::Partial)
            };
        }
        httparse::Status::Complete(n) => n,
    };
    if used > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    // httparse fills these in on Complete; the fallbacks are never taken.
    let method = Method::from_token(req.method.unwrap_or(""));
    let target = req.path.unwrap_or("/");
    let minor_version = req.version.unwrap_or(1);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    if !path.starts_with('/') {
        // Absolute-form and authority-form are for proxies; `*` for OPTIONS only.
        if !(path == "*" && method == Method::Options) {
            return Err(HttpError::MalformedHead(
                "request target must be an absolute path",
            ));
        }
    }

    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| HttpError::HeaderNotUtf8)?;
        headers.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }

    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut chunked = false;
    let mut keep_alive = minor_version >= 1;
    let mut expect_continue = false;
    let mut content_type = None;
    for (name, value) in &headers {
        match name.as_str() {
            "content-length" => {
                for item in value.split(',') {
                    let n = parse_decimal(item.trim()).ok_or(HttpError::BadContentLength)?;
                    if content_length.is_some_and(|m| m != n) {
                        return Err(HttpError::BadContentLength);
                    }
                    content_length = Some(n);
                }
            }
            "transfer-encoding" => {
                for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    // chunked must be the last coding, and the only one we can decode.
                    if chunked || !coding.eq_ignore_ascii_case("chunked") {
                        return Err(HttpError::UnsupportedTransferEncoding);
                    }
                    chunked = true;
                }
                te_seen = true;
            }
            "connection" => {
                for opt in value.split(',').map(str::trim) {
                    if opt.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if opt.eq_ignore_ascii_case("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
            "expect" if value.eq_ignore_ascii_case("100-continue") => expect_continue = true,
            "content-type" if content_type.is_none() => content_type = Some(value.clone()),
            _ => {}
        }
    }
    if te_seen && !chunked {
        return Err(HttpError::UnsupportedTransferEncoding);
    }
    if te_seen && content_length.is_some() {
        return Err(HttpError::ConflictingFraming);
    }
    if te_seen && minor_version == 0 {
        return Err(HttpError::UnsupportedTransferEncoding);
    }

    Ok(Parsed::Complete(
        RequestHead {
            method,
            path,
            query,
            minor_version,
            headers,
            content_length,
            chunked,
            content_type,
            keep_alive,
            expect_continue,
        },
        used,
    ))
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Parsed<RequestHead>, HttpError> {
        parse_head(s.as_bytes(), &HeadLimits::default())
    }

    fn complete(s: &str) -> (RequestHead, usize) {
        match parse(s) {
            Ok(Parsed::Complete(h, n)) => (h, n),
            other => panic!("expected complete, got {other:?}"),
        }
    }

    const UPLOAD: &str = "POST /conferences/4711/files?x=1 HTTP/1.1\r\nHost: a\r\n\
        Content-Type: application/pdf\r\nContent-Length: 123\r\n\
        Content-Disposition: attachment; filename*=UTF-8''a%20b.pdf\r\n\r\nBODY";

    #[test]
    fn parses_an_upload_head() {
        let (h, n) = complete(UPLOAD);
        assert_eq!(&UPLOAD[n..], "BODY");
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.path, "/conferences/4711/files");
        assert_eq!(h.query.as_deref(), Some("x=1"));
        assert_eq!(h.content_length, Some(123));
        assert!(!h.chunked);
        assert!(h.keep_alive);
        assert_eq!(h.content_type.as_deref(), Some("application/pdf"));
        assert_eq!(h.header("HOST"), Some("a"));
        assert_eq!(h.query_param("x").as_deref(), Some("1"));
    }

    #[test]
    fn every_prefix_is_partial() {
        let end = UPLOAD.find("\r\n\r\n").unwrap() + 4;
        for i in 0..end {
            assert_eq!(parse(&UPLOAD[..i]), Ok(Parsed::Partial), "prefix {i}");
        }
        assert!(matches!(parse(&UPLOAD[..end]), Ok(Parsed::Complete(_, n)) if n == end));
    }

    #[test]
    fn header_block_over_16k_is_431() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(17 * 1024));
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge));
        // Still incomplete but already too large.
        assert_eq!(parse(&big[..16 * 1024 + 10]), Err(HttpError::HeadTooLarge));
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        let many: String = (0..70).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(HttpError::TooManyHeaders)
        );
    }

    #[test]
    fn framing_decisions() {
        let (h, _) = complete("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.chunked && h.content_length.is_none() && h.has_body());
        assert_eq!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            Err(HttpError::ConflictingFraming)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(HttpError::BadContentLength)
        );
        let (h, _) = complete("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(h.content_length, Some(3));
        let (h, _) = complete("GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive && !h.has_body());
        let (h, _) =
            complete("GET / HTTP/1.1\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.keep_alive && h.expect_continue);
    }

    #[test]
    fn bad_syntax_and_versions() {
        assert_eq!(
            parse("GET / HTTP/2.0\r\n\r\n"),
            Err(HttpError::VersionNotSupported)
        );
        assert_eq!(HttpError::VersionNotSupported.status(), 505);
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"),
            Err(HttpError::MalformedHead(_))
        ));
        assert!(matches!(
            parse("G\x01T / HTTP/1.1\r\n\r\n"),
            Err(HttpError::MalformedHead(_))
        ));
        assert!(matches!(
            parse("GET http://x/ HTTP/1.1\r\n\r\n"),
            Err(HttpError::MalformedHead(_))
        ));
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", &HeadLimits::default()),
            Err(HttpError::HeaderNotUtf8)
        );
        let (h, _) = complete("PATCH /x HTTP/1.1\r\n\r\n");
        assert_eq!(h.method, Method::Other("PATCH".into()));
        assert_eq!(h.method.as_str(), "PATCH");
    }
}
