//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/openapi.json`. It is
//! `docs/openapi.json` embedded as is, so the served document and the one in the repository are
//! the same bytes; `tests/http_api.rs` checks that it lists every route of [`super::route::ROUTES`]
//! and validates real responses against it.

use super::response::ResponseHead;

/// `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// The complete `GET /api/openapi.json` response.
pub fn openapi_response(close: bool) -> Vec<u8> {
    let mut out = ResponseHead::new(200)
        .content_type("application/json")
        .content_length(OPENAPI_JSON.len() as u64)
        .connection(close)
        .to_bytes();
    out.extend_from_slice(OPENAPI_JSON.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_1_with_every_route_path() {
        assert!(OPENAPI_JSON.contains("\"openapi\": \"3.1.0\""));
        for (_, path) in super::super::route::ROUTES {
            assert!(
                OPENAPI_JSON.contains(&format!("\"{path}\": {{")),
                "{path} missing"
            );
        }
        let r = String::from_utf8(openapi_response(false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with(OPENAPI_JSON));
    }
}
