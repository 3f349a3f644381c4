//! Routing: method and path to a [`Route`], or 404 / 405 (with the `Allow` value) / 400.

use super::head::Method;
use super::params::percent_decode_utf8;
use super::HttpError;

/// Every endpoint of the handler. Ids are percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the upload page.
    Page,
    /// `POST /login`: form login, sets the session cookie.
    Login,
    /// `POST /logout`: clears the session cookie.
    Logout,
    /// `POST /conferences/{conference}/files`: an upload.
    Upload { conference: String },
    /// `GET /api/conferences`.
    Conferences,
    /// `GET /api/conferences/{id}`.
    Conference { id: String },
    /// `GET /api/conferences/{id}/transfers`: the conference's files with their deliveries.
    ConferenceTransfers { id: String },
    /// `GET /api/transfers/{id}`.
    Transfer { id: String },
    /// `DELETE /api/transfers/{id}`: cancel.
    CancelTransfer { id: String },
    /// `GET /api/events`: Server-Sent Events.
    Events,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /api/openapi.json`: the OpenAPI 3.1 document of this API.
    OpenApi,
}

/// Every route as (method, path template), in the OpenAPI document's spelling: `{conference}`
/// and `{id}` stand for one percent-encoded path segment. `tests/http_api.rs` checks that the
/// OpenAPI document (`docs/openapi.json`) lists exactly these, and the tests below that each
/// one routes to the variant whose [`Route::template`] it is.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("POST", "/conferences/{conference}/files"),
    ("GET", "/api/conferences"),
    ("GET", "/api/conferences/{id}"),
    ("GET", "/api/conferences/{id}/transfers"),
    ("GET", "/api/transfers/{id}"),
    ("DELETE", "/api/transfers/{id}"),
    ("GET", "/api/events"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
];

impl Route {
    /// Whether the route needs a valid token or session (everything but the page, login,
    /// logout and the OpenAPI document).
    pub fn needs_auth(&self) -> bool {
        !matches!(
            self,
            Route::Page | Route::Login | Route::Logout | Route::OpenApi
        )
    }

    /// The (method, path template) of this route, as in [`ROUTES`].
    pub fn template(&self) -> (&'static str, &'static str) {
        match self {
            Route::Page => ("GET", "/"),
            Route::Login => ("POST", "/login"),
            Route::Logout => ("POST", "/logout"),
            Route::Upload { .. } => ("POST", "/conferences/{conference}/files"),
            Route::Conferences => ("GET", "/api/conferences"),
            Route::Conference { .. } => ("GET", "/api/conferences/{id}"),
            Route::ConferenceTransfers { .. } => ("GET", "/api/conferences/{id}/transfers"),
            Route::Transfer { .. } => ("GET", "/api/transfers/{id}"),
            Route::CancelTransfer { .. } => ("DELETE", "/api/transfers/{id}"),
            Route::Events => ("GET", "/api/events"),
            Route::Metrics => ("GET", "/metrics"),
            Route::OpenApi => ("GET", "/api/openapi.json"),
        }
    }
}

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// 404: no such resource.
    NotFound,
    /// 405: the resource exists; `allow` is the `Allow` header value.
    MethodNotAllowed { allow: &'static str },
    /// 400: a path segment does not decode.
    BadPath(HttpError),
}

impl RouteError {
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound => 404,
            RouteError::MethodNotAllowed { .. } => 405,
            RouteError::BadPath(_) => 400,
        }
    }
}

/// Decodes one path segment: percent-decoding, UTF-8, no control characters, not empty.
fn segment(s: &str) -> Result<String, RouteError> {
    if s.is_empty() {
        return Err(RouteError::NotFound);
    }
    let d = percent_decode_utf8(s, false).map_err(|_| RouteError::BadPath(HttpError::BadPath))?;
    if d.is_empty() || d.len() > 256 || d.chars().any(char::is_control) {
        return Err(RouteError::BadPath(HttpError::BadPath));
    }
    Ok(d)
}

/// Picks the route for `method` on `path` (the path without the query).
pub fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    let segs: Vec<&str> = match path.strip_prefix('/') {
        Some("") => Vec::new(),
        Some(rest) => rest.split('/').collect(),
        None => return Err(RouteError::NotFound),
    };
    let get = |r: Route| match method {
        Method::Get => Ok(r),
        _ => Err(RouteError::MethodNotAllowed { allow: "GET" }),
    };
    let post = |r: Route| match method {
        Method::Post => Ok(r),
        _ => Err(RouteError::MethodNotAllowed { allow: "POST" }),
    };
    match segs.as_slice() {
        [] => get(Route::Page),
        ["login"] => post(Route::Login),
        ["logout"] => post(Route::Logout),
        ["metrics"] => get(Route::Metrics),
        ["conferences", id, "files"] => {
            let conference = segment(id)?;
            post(Route::Upload { conference })
        }
        ["api", "conferences"] => get(Route::Conferences),
        ["api", "conferences", id] => {
            let id = segment(id)?;
            get(Route::Conference { id })
        }
        ["api", "conferences", id, "transfers"] => {
            let id = segment(id)?;
            get(Route::ConferenceTransfers { id })
        }
        ["api", "events"] => get(Route::Events),
        ["api", "openapi.json"] => get(Route::OpenApi),
        ["api", "transfers", id] => {
            let id = segment(id)?;
            match method {
                Method::Get => Ok(Route::Transfer { id }),
                Method::Delete => Ok(Route::CancelTransfer { id }),
                _ => Err(RouteError::MethodNotAllowed {
                    allow: "GET, DELETE",
                }),
            }
        }
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route() {
        let id = |s: &str| s.to_string();
        let cases = [
            (Method::Get, "/", Route::Page),
            (Method::Post, "/login", Route::Login),
            (Method::Post, "/logout", Route::Logout),
            (Method::Get, "/metrics", Route::Metrics),
            (
                Method::Post,
                "/conferences/4711/files",
                Route::Upload {
                    conference: id("4711"),
                },
            ),
            (Method::Get, "/api/conferences", Route::Conferences),
            (
                Method::Get,
                "/api/conferences/a%20b",
                Route::Conference { id: id("a b") },
            ),
            (
                Method::Get,
                "/api/conferences/4711/transfers",
                Route::ConferenceTransfers { id: id("4711") },
            ),
            (Method::Get, "/api/events", Route::Events),
            (
                Method::Get,
                "/api/transfers/t1",
                Route::Transfer { id: id("t1") },
            ),
            (
                Method::Delete,
                "/api/transfers/t1",
                Route::CancelTransfer { id: id("t1") },
            ),
            (
                Method::Post,
                "/conferences/%E2%82%AC%2F1/files",
                Route::Upload {
                    conference: id("€/1"),
                },
            ),
        ];
        for (m, p, want) in cases {
            assert_eq!(route(&m, p), Ok(want), "{} {p}", m.as_str());
        }
        assert!(!Route::Page.needs_auth() && Route::Metrics.needs_auth());
    }

    /// Every entry of [`ROUTES`] routes to the variant whose template it is, and every variant
    /// of [`Route`] (each documented by a `/// \`METHOD /path\`` line) is in [`ROUTES`].
    #[test]
    fn routes_list_matches_the_router() {
        for (m, t) in ROUTES {
            let method = match *m {
                "GET" => Method::Get,
                "POST" => Method::Post,
                "DELETE" => Method::Delete,
                other => panic!("method {other}"),
            };
            let path = t.replace("{conference}", "c1").replace("{id}", "7");
            let r = route(&method, &path).unwrap_or_else(|e| panic!("{m} {t}: {e:?}"));
            assert_eq!(r.template(), (*m, *t));
        }
        let src = include_str!("route.rs");
        let body = &src[src.find("pub enum Route {").unwrap()..];
        let body = &body[..body.find("\n}").unwrap()];
        let documented: Vec<(String, String)> = body
            .lines()
            .filter_map(|l| {
                let doc = l.trim().strip_prefix("/// `")?;
                let (m, rest) = doc.split_once(' ')?;
                let path = rest.split('`').next()?;
                Some((m.to_string(), path.to_string()))
            })
            .collect();
        let variants = body
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                l.starts_with("    ")
                    && !l.starts_with("     ")
                    && t.starts_with(char::is_uppercase)
            })
            .count();
        assert_eq!(documented.len(), variants, "a variant without its doc line");
        assert_eq!(documented.len(), ROUTES.len());
        for (m, p) in &documented {
            assert!(
                ROUTES.iter().any(|(rm, rp)| rm == m && rp == p),
                "{m} {p} is not in ROUTES"
            );
        }
    }

    #[test]
    fn not_found_and_not_allowed() {
        for p in [
            "/x",
            "/api",
            "/api/conferences/",
            "/conferences/1",
            "/conferences/1/files/x",
            "//",
            "*",
        ] {
            assert_eq!(route(&Method::Get, p), Err(RouteError::NotFound), "{p}");
        }
        assert_eq!(
            route(&Method::Post, "/"),
            Err(RouteError::MethodNotAllowed { allow: "GET" })
        );
        assert_eq!(
            route(&Method::Get, "/conferences/1/files"),
            Err(RouteError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route(&Method::Put, "/api/transfers/t"),
            Err(RouteError::MethodNotAllowed {
                allow: "GET, DELETE"
            })
        );
        assert_eq!(
            route(&Method::Other("PATCH".into()), "/api/events")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            route(&Method::Get, "/api/transfers/%zz")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            route(&Method::Get, "/api/transfers/%ff")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            route(&Method::Get, "/api/transfers/%0a")
                .unwrap_err()
                .status(),
            400
        );
    }
}
