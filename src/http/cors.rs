//! CORS for integrators' own pages (`http_cors_origins`). Off by default: without listed
//! origins no `Access-Control-*` header is ever sent, so browsers keep other sites' scripts from
//! reading responses, and `OPTIONS` is answered `405` like any unknown method.
//!
//! With origins listed (exact `scheme://host[:port]`, never `*`):
//! - a request whose `Origin` is listed gets `Access-Control-Allow-Origin: <that origin>`,
//!   `Access-Control-Allow-Credentials: true` (the origin is named, never `*`, so credentials
//!   may be allowed), `Access-Control-Expose-Headers` (`Location`, `Retry-After`,
//!   `WWW-Authenticate`) and `Vary: Origin`; one whose `Origin` is not listed gets none of them
//!   (the browser then hides the response from the page);
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from a listed
//!   origin is answered `204` with the path's methods, the request headers the API reads
//!   (`Authorization`, `Content-Type`, `Content-Disposition`) and `Access-Control-Max-Age: 600`,
//!   without any credential (browsers send none on preflights); from an unlisted origin, or for a
//!   method the path does not have, `403`;
//! - without `http_token` (open mode), a listed origin also passes the cross-origin check that
//!   otherwise refuses foreign `Origin`s with `403`.
//!
//! The session cookie is `SameSite=Strict`, so a page on another site cannot use a login made
//! on the upload page; integrators' pages send `Authorization: Bearer`.

use super::head::{Method, RequestHead};
use super::response::{error_response, ResponseHead};
use super::route::{route, RouteError};

/// Request headers a page may send (answered in `Access-Control-Allow-Headers`).
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Content-Disposition";
/// Response headers a page may read besides the CORS-safelisted ones.
pub const EXPOSE_HEADERS: &str = "Location, Retry-After, WWW-Authenticate";
/// Seconds a browser may cache a preflight answer.
pub const MAX_AGE_SECS: u32 = 600;
/// Most origins `http_cors_origins` may list.
pub const MAX_ORIGINS: usize = 64;

/// Checks and normalises one origin of `http_cors_origins`: `http` or `https`, a host, an
/// optional port, nothing else (no path, no `*`); lower-case, default port left out.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    if lower == "*" || lower == "null" {
        return Err(format!(
            "{s:?}: name each origin (scheme://host[:port]); {lower} would let any page use the API"
        ));
    }
    let (scheme, authority) = lower
        .split_once("://")
        .ok_or_else(|| format!("{s:?} is not scheme://host[:port]"))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(format!("{s:?}: the scheme must be http or https")),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@', '*', ' ', '\t'])
        || authority.chars().any(|c| c.is_control())
    {
        return Err(format!("{s:?} is not scheme://host[:port] (no path)"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("{s:?}: port {p:?} is not a number"))?;
            (h, Some(port))
        }
        _ => (authority, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if !host_ok {
        return Err(format!("{s:?}: {host:?} is not a host name"));
    }
    Ok(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Parses the comma- or space-separated `http_cors_origins` list.
pub fn parse_origins(v: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in v.split([',', ' ', '\t']).filter(|s| !s.is_empty()) {
        let o = parse_origin(item)?;
        if !out.contains(&o) {
            out.push(o);
        }
    }
    if out.len() > MAX_ORIGINS {
        return Err(format!("at most {MAX_ORIGINS} origins, got {}", out.len()));
    }
    Ok(out)
}

/// The request's `Origin`, normalised, when it is one of `origins`.
pub fn listed_origin(head: &RequestHead, origins: &[String]) -> Option<String> {
    if origins.is_empty() {
        return None;
    }
    let o = parse_origin(head.header("origin")?).ok()?;
    origins.contains(&o).then_some(o)
}

/// The header lines (each ending in CRLF) added to every response to a listed origin.
pub fn response_headers(origin: &str) -> String {
    format!(
        "Access-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Credentials: true\r\n\
Access-Control-Expose-Headers: {EXPOSE_HEADERS}\r\nVary: Origin\r\n"
    )
}

/// Inserts `extra` header lines after the status line of the response head at the start of
/// `resp` (a whole response or just its head). A `1xx` interim response is left alone.
pub fn splice(resp: Vec<u8>, extra: &str) -> Vec<u8> {
    if extra.is_empty() || resp.starts_with(b"HTTP/1.1 1") {
        return resp;
    }
    let Some(eol) = resp.windows(2).position(|w| w == b"\r\n") else {
        return resp;
    };
    let mut out = Vec::with_capacity(resp.len() + extra.len());
    out.extend_from_slice(&resp[..eol + 2]);
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(&resp[eol + 2..]);
    out
}

/// The methods of `path` (for a preflight's `Access-Control-Allow-Methods`), or `None` when
/// the path is not a route.
fn path_methods(path: &str) -> Option<&'static str> {
    match route(&Method::Options, path) {
        Err(RouteError::MethodNotAllowed { allow }) => Some(allow),
        _ => None,
    }
}

/// Whether `head` is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(head: &RequestHead) -> bool {
    head.method == Method::Options
        && head.header("origin").is_some()
        && head.header("access-control-request-method").is_some()
}

/// The answer to a preflight (see the module doc). `origins` is not empty.
pub fn preflight_response(head: &RequestHead, origins: &[String], close: bool) -> Vec<u8> {
    let Some(origin) = listed_origin(head, origins) else {
        return error_response(403, "origin not allowed (http_cors_origins)", close, None);
    };
    let Some(methods) = path_methods(&head.path) else {
        return error_response(404, "no such resource", close, None);
    };
    let wanted = head
        .header("access-control-request-method")
        .unwrap_or_default()
        .trim();
    if !methods.split(", ").any(|m| m == wanted) {
        return error_response(
            403,
            "method not allowed on this resource (CORS preflight)",
            close,
            None,
        );
    }
    let head = ResponseHead::new(204)
        .header("Access-Control-Allow-Methods", methods)
        .header("Access-Control-Allow-Headers", ALLOW_HEADERS)
        .header("Access-Control-Max-Age", MAX_AGE_SECS.to_string())
        .connection(close)
        .to_bytes();
    splice(head, &response_headers(&origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_head, HeadLimits, Parsed};

    fn head(text: &str) -> RequestHead {
        match parse_head(text.as_bytes(), &HeadLimits::default()).unwrap() {
            Parsed::Complete(head, _) => head,
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn origins_are_checked_and_normalised() {
        assert_eq!(
            parse_origin("HTTPS://Portal.Example.com:443/").unwrap(),
            "https://portal.example.com"
        );
        assert_eq!(
            parse_origin("http://portal.example.com:8080").unwrap(),
            "http://portal.example.com:8080"
        );
        assert_eq!(
            parse_origin("http://[::1]:3000").unwrap(),
            "http://[::1]:3000"
        );
        for bad in [
            "*",
            "null",
            "portal.example.com",
            "ftp://x.example",
            "https://x.example/path",
            "https://user@x.example",
            "https://x.example:99999",
            "https://",
            "https://*.example.com",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_origins("https://a.example, http://b.example:81 https://a.example").unwrap(),
            ["https://a.example", "http://b.example:81"]
        );
        let many: Vec<String> = (0..65).map(|i| format!("https://h{i}.example")).collect();
        assert!(parse_origins(&many.join(",")).is_err());
    }

    #[test]
    fn only_listed_origins_are_named() {
        let origins = vec!["https://portal.example".to_string()];
        let h = head("GET /api/conferences HTTP/1.1\r\nOrigin: https://PORTAL.example\r\n\r\n");
        assert_eq!(
            listed_origin(&h, &origins).as_deref(),
            Some("https://portal.example")
        );
        let h = head("GET /api/conferences HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n");
        assert_eq!(listed_origin(&h, &origins), None);
        let h = head("GET /api/conferences HTTP/1.1\r\nOrigin: https://portal.example\r\n\r\n");
        assert_eq!(listed_origin(&h, &[]), None);
    }

    #[test]
    fn preflight_answers() {
        let origins = vec!["https://portal.example".to_string()];
        let pre = |origin: &str, path: &str, method: &str| {
            let h = head(&format!(
                "OPTIONS {path} HTTP/1.1\r\nOrigin: {origin}\r\n\
Access-Control-Request-Method: {method}\r\nAccess-Control-Request-Headers: authorization\r\n\r\n"
            ));
            assert!(is_preflight(&h));
            String::from_utf8(preflight_response(&h, &origins, false)).unwrap()
        };
        let r = pre("https://portal.example", "/api/transfers/7", "DELETE");
        assert!(r.starts_with("HTTP/1.1 204 "), "{r}");
        for line in [
            "Access-Control-Allow-Origin: https://portal.example\r\n",
            "Access-Control-Allow-Credentials: true\r\n",
            "Access-Control-Allow-Methods: GET, DELETE\r\n",
            "Access-Control-Allow-Headers: Authorization, Content-Type, Content-Disposition\r\n",
            "Access-Control-Max-Age: 600\r\n",
            "Vary: Origin\r\n",
        ] {
            assert!(r.contains(line), "{line}: {r}");
        }
        let r = pre("https://evil.example", "/api/transfers/7", "DELETE");
        assert!(
            r.starts_with("HTTP/1.1 403 ") && !r.contains("Access-Control"),
            "{r}"
        );
        let r = pre("https://portal.example", "/api/transfers/7", "PUT");
        assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
        let r = pre("https://portal.example", "/nope", "GET");
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = pre("https://portal.example", "/conferences/c1/files", "POST");
        assert!(r.contains("Access-Control-Allow-Methods: POST\r\n"), "{r}");
        let h = head("OPTIONS / HTTP/1.1\r\nOrigin: https://portal.example\r\n\r\n");
        assert!(!is_preflight(&h));
    }

    #[test]
    fn splice_inserts_after_the_status_line() {
        let r = splice(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody".to_vec(), "X: y\r\n");
        assert_eq!(r, b"HTTP/1.1 200 OK\r\nX: y\r\nA: b\r\n\r\nbody");
        let c = splice(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), "X: y\r\n");
        assert_eq!(c, b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}
