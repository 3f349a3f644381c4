//! Response heads and bodies: status lines, JSON error bodies `{"error":..,"reason":..}`, the
//! session cookie, the page with its security headers, and Server-Sent Events framing.

use super::HttpError;
use crate::json;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "msrpcast_token";

/// The reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// The machine-readable `error` value of the JSON error body for a status.
pub fn error_code(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "too_large",
        415 => "unsupported_media_type",
        421 => "misdirected",
        429 => "too_many_requests",
        431 => "header_too_large",
        501 => "not_implemented",
        503 => "unavailable",
        505 => "version_not_supported",
        507 => "insufficient_storage",
        _ => "error",
    }
}

/// A response status line plus headers, written with [`ResponseHead::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl ResponseHead {
    /// A head with `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`.
    pub fn new(status: u16) -> Self {
        ResponseHead {
            status,
            headers: vec![
                ("Cache-Control", "no-store".to_string()),
                ("X-Content-Type-Options", "nosniff".to_string()),
            ],
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn content_type(self, value: &str) -> Self {
        self.header("Content-Type", value)
    }

    pub fn content_length(self, n: u64) -> Self {
        self.header("Content-Length", n.to_string())
    }

    /// `Connection: close` when `close`, else `keep-alive`.
    pub fn connection(self, close: bool) -> Self {
        self.header("Connection", if close { "close" } else { "keep-alive" })
    }

    pub fn set_cookie(self, value: String) -> Self {
        self.header("Set-Cookie", value)
    }

    /// Appends the head (status line, headers, empty line) to `out`. Header values must not
    /// contain CR or LF; any that do are dropped rather than written.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\n",
                self.status,
                reason_phrase(self.status)
            )
            .as_bytes(),
        );
        for (name, value) in &self.headers {
            if value.contains(['\r', '\n']) {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(256);
        self.write(&mut v);
        v
    }
}

/// The interim response for `Expect: 100-continue`.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// `{"error":"<error>","reason":"<reason>"}`.
pub fn json_error(error: &str, reason: &str) -> String {
    let mut out = String::new();
    let mut o = json::Object::begin(&mut out);
    o.str("error", error).str("reason", reason);
    o.end();
    out
}

/// A complete JSON response.
pub fn json_response(status: u16, body: &str, close: bool) -> Vec<u8> {
    let mut out = ResponseHead::new(status)
        .content_type("application/json")
        .content_length(body.len() as u64)
        .connection(close)
        .to_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// A complete JSON error response; `allow` adds the `Allow` header (for 405).
pub fn error_response(status: u16, reason: &str, close: bool, allow: Option<&str>) -> Vec<u8> {
    let body = json_error(error_code(status), reason);
    let mut head = ResponseHead::new(status)
        .content_type("application/json")
        .content_length(body.len() as u64)
        .connection(close);
    if let Some(a) = allow {
        head = head.header("Allow", a);
    }
    if status == 401 {
        head = head.header("WWW-Authenticate", "Bearer realm=\"msrpcast\"");
    }
    let mut out = head.to_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The response for a request-reading error; the connection is closed after it, since the
/// framing of what follows is unknown.
pub fn http_error_response(e: &HttpError) -> Vec<u8> {
    error_response(e.status(), e.reason(), true, None)
}

/// The Content-Security-Policy of the page: inline script and style only, requests to itself.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
style-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page with its no-JavaScript part filled in: with `?conference=ID`, a plain
/// `multipart/form-data` form posting to that conference (a `token` field before the file, for
/// use without the login cookie); without it, a GET form asking for the conference id.
pub fn page_html(conference: Option<&str>) -> String {
    let form = match conference {
        Some(id) => format!(
            "<form method=\"post\" enctype=\"multipart/form-data\" action=\"/conferences/{}/files\">\
<p>Conference <strong>{}</strong></p>\
<label for=\"nojs-token\">Access token (if not logged in)</label>\
<input id=\"nojs-token\" name=\"token\" type=\"password\" autocomplete=\"current-password\">\
<label for=\"nojs-file\">File</label><input id=\"nojs-file\" name=\"file\" type=\"file\" required>\
<button type=\"submit\">Upload</button></form>",
            html_escape(&super::params::percent_encode(id)),
            html_escape(id)
        ),
        None => "<form method=\"get\" action=\"/\">\
<label for=\"nojs-conference\">Conference id</label>\
<input id=\"nojs-conference\" name=\"conference\" type=\"text\" required>\
<button type=\"submit\">Choose</button></form>"
            .to_string(),
    };
    super::PAGE.replacen("<!--NOSCRIPT-UPLOAD-->", &form, 1)
}

/// The complete `GET /` response (`conference` from the `?conference=` query).
pub fn page_response(conference: Option<&str>, close: bool) -> Vec<u8> {
    let html = page_html(conference);
    let body = html.as_bytes();
    let mut out = ResponseHead::new(200)
        .content_type("text/html; charset=utf-8")
        .content_length(body.len() as u64)
        .header("Content-Security-Policy", PAGE_CSP)
        .header("Referrer-Policy", "no-referrer")
        .connection(close)
        .to_bytes();
    out.extend_from_slice(body);
    out
}

/// `Set-Cookie` value for a session (`value` must be cookie-safe, e.g. hex).
pub fn session_cookie(value: &str, max_age_secs: u64) -> String {
    format!("{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}")
}

/// `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// `303 See Other` to `location` (after the form login), optionally setting a cookie.
pub fn see_other(location: &str, cookie: Option<String>, close: bool) -> Vec<u8> {
    let mut head = ResponseHead::new(303)
        .header("Location", location)
        .content_length(0)
        .connection(close);
    if let Some(c) = cookie {
        head = head.set_cookie(c);
    }
    head.to_bytes()
}

/// The body of `201 Created` for an upload. The engine's transfer ids are numbers, and are
/// written as JSON numbers as everywhere else (`/api/transfers`, the RPC and API commands); an
/// id that is not a decimal number (only test doubles have those) stays a string.
pub fn upload_created_body(transfer: &str) -> String {
    let id = if !transfer.is_empty()
        && transfer.len() <= 19
        && transfer.bytes().all(|b| b.is_ascii_digit())
    {
        transfer.to_string()
    } else {
        json::escape(transfer)
    };
    let mut out = String::new();
    let mut o = json::Object::begin(&mut out);
    o.raw("transfer", |o| o.push_str(&id)).str(
        "status",
        &format!("/api/transfers/{}", super::params::percent_encode(transfer)),
    );
    o.end();
    out
}

/// The head of a Server-Sent Events stream (no length: it ends with the connection).
pub fn sse_head() -> Vec<u8> {
    ResponseHead::new(200)
        .content_type("text/event-stream")
        .header("Connection", "keep-alive")
        .header("X-Accel-Buffering", "no")
        .to_bytes()
}

/// One SSE event; `data` lines are split on newlines as the format requires.
pub fn sse_event(event: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + event.len() + 16);
    out.push_str("event: ");
    out.push_str(&event.replace(['\r', '\n'], ""));
    out.push('\n');
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// An SSE comment line, to keep idle connections open through proxies.
pub const SSE_KEEPALIVE: &str = ": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_shape() {
        let r = String::from_utf8(error_response(405, "use GET", false, Some("GET"))).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(r.contains("\r\nAllow: GET\r\n"));
        assert!(r.contains("\r\nConnection: keep-alive\r\n"));
        let body = r#"{"error":"method_not_allowed","reason":"use GET"}"#;
        assert!(
            r.ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len()))
                || r.contains(body)
        );
        assert!(r.contains(&format!("Content-Length: {}\r\n", body.len())));
        let r = String::from_utf8(http_error_response(&HttpError::HeadTooLarge)).unwrap();
        assert!(r.starts_with("HTTP/1.1 431 "));
        assert!(r.contains("Connection: close"));
        let r = String::from_utf8(error_response(401, "token", false, None)).unwrap();
        assert!(r.contains("WWW-Authenticate: Bearer"));
    }

    #[test]
    fn json_escaping() {
        assert_eq!(
            json::escape("a\"b\\c\nd\u{1}<"),
            "\"a\\\"b\\\\c\\nd\\u0001\\u003c\""
        );
        assert_eq!(
            json_error("x", "bad \"name\""),
            r#"{"error":"x","reason":"bad \"name\""}"#
        );
        assert_eq!(
            upload_created_body("t1"),
            r#"{"transfer":"t1","status":"/api/transfers/t1"}"#
        );
        assert_eq!(
            upload_created_body("17"),
            r#"{"transfer":17,"status":"/api/transfers/17"}"#
        );
    }

    #[test]
    fn cookie_attributes() {
        let c = session_cookie("abc", 3600);
        for attr in [
            "msrpcast_token=abc",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(c.contains(attr), "{c}");
        }
        let r = String::from_utf8(see_other("/", Some(c), false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 303 See Other\r\n") && r.contains("Location: /\r\n"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn header_injection_is_dropped() {
        let h = ResponseHead::new(200)
            .header("Location", "/\r\nX: y")
            .to_bytes();
        assert!(!String::from_utf8(h).unwrap().contains("X: y"));
    }

    #[test]
    fn sse_framing() {
        assert_eq!(
            sse_event("transfer", "{\"a\":1}"),
            "event: transfer\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(sse_event("t", "a\nb"), "event: t\ndata: a\ndata: b\n\n");
        let h = String::from_utf8(sse_head()).unwrap();
        assert!(h.contains("text/event-stream") && !h.contains("Content-Length"));
        let p = String::from_utf8(page_response(None, false)).unwrap();
        assert!(p.contains("Content-Security-Policy") && p.contains("<!DOCTYPE html>"));
        assert!(p.contains("name=\"conference\"") && !p.contains("NOSCRIPT-UPLOAD"));
        let p = page_html(Some("a\"<b"));
        assert!(
            p.contains("enctype=\"multipart/form-data\" action=\"/conferences/a%22%3Cb/files\"")
        );
        assert!(p.contains("<strong>a&quot;&lt;b</strong>"));
        let cl = p.len();
        let r = String::from_utf8(page_response(Some("a\"<b"), true)).unwrap();
        assert!(r.contains(&format!("Content-Length: {cl}\r\n")));
    }
}
