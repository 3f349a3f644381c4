//! The HTTP side of msrpcast, in two halves.
//!
//! - **Sans-IO** (every module but `server`): request heads (parsed with `httparse`), streaming
//!   body decoders (Content-Length, chunked, multipart/form-data), routing, auth, CORS, response
//!   heads, the OpenAPI document, the embedded upload page, and the per-connection state machine
//!   [`Connection`] of `service` with its [`Backend`] (`backend` is the one that talks to the
//!   engine). None of these owns a socket or a thread: they are fed bytes and hand back the bytes
//!   to write, so they are tested without a network.
//! - **The server** ([`server`], [`HttpServer`]): the half with sockets and threads — it binds
//!   `http_listen`, runs the accept loop, one thread per connection around a [`Connection`], the
//!   event-stream watcher and the rejecter, and enforces the connection limits and timeouts.
//!
//! Contract shared by every decoder: `decode(input)` returns how many bytes of `input` it consumed
//! and one event. Body decoders always consume everything they do not hand back, so a caller never
//! keeps body bytes; only the request head is left in the caller's buffer until it is complete
//! (bounded by [`head::HeadLimits::max_head_bytes`]). No result depends on how the stream was split.

pub mod auth;
pub mod backend;
pub mod body;
pub mod cors;
pub mod head;
pub mod multipart;
pub mod openapi;
pub mod params;
pub mod reader;
pub mod response;
pub mod route;
pub mod server;
pub mod service;

pub use auth::{constant_time_eq, Auth, Credential, Sessions};
pub use backend::{EngineBackend, EngineUpload};
pub use body::{BodyDecoder, ChunkedDecoder, ContentLengthDecoder, Decoded};
pub use head::{parse_head, HeadLimits, Method, Parsed, RequestHead};
pub use multipart::{MultipartDecoder, MultipartEvent, MultipartLimits};
pub use params::{parse_content_disposition, Disposition};
pub use reader::{ReadEvent, RequestReader};
pub use response::ResponseHead;
pub use route::{route, Route, RouteError};
pub use server::{reload_tls, HttpServer, ServerError, TlsReloadError, TlsReloaded};
pub use service::{Backend, Connection, Ctx, Refusal, ServiceConfig, UploadRequest, UploadSink};

/// The upload page, served by `GET /`: plain HTML, CSS and JS, no external assets.
pub const PAGE: &str = include_str!("page.html");

/// Everything that can go wrong while reading a request, each with the HTTP status it implies
/// ([`HttpError::status`]) and a short reason for the JSON error body ([`HttpError::reason`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request head is not HTTP/1.x syntax (400); the text says which part.
    MalformedHead(&'static str),
    /// The header block is larger than the limit (431).
    HeadTooLarge,
    /// More header fields than the limit (431).
    TooManyHeaders,
    /// A header value is not valid UTF-8 (400).
    HeaderNotUtf8,
    /// Not HTTP/1.0 or HTTP/1.1 (505).
    VersionNotSupported,
    /// Content-Length is not a decimal number, or several disagree (400).
    BadContentLength,
    /// Both Content-Length and Transfer-Encoding (400).
    ConflictingFraming,
    /// A transfer coding other than `chunked` (501).
    UnsupportedTransferEncoding,
    /// A body is needed but neither Content-Length nor chunked coding was given (411).
    LengthRequired,
    /// The body is larger than allowed (413).
    PayloadTooLarge,
    /// The connection ended before the body did (400).
    BodyTruncated,
    /// Chunked coding: the chunk size is not hexadecimal (400).
    ChunkSizeInvalid,
    /// Chunked coding: the chunk size does not fit in 64 bits (400).
    ChunkSizeOverflow,
    /// Chunked coding: a chunk-size line (with extensions) is longer than the limit (400).
    ChunkLineTooLong,
    /// Chunked coding: a line does not end with CRLF (400).
    ChunkBadLineEnd,
    /// Chunked coding: chunk data not followed by CRLF (400).
    ChunkDataNoCrlf,
    /// Chunked coding: the trailer section is larger than the limit (400).
    TrailersTooLarge,
    /// Multipart: Content-Type has no usable boundary parameter (400).
    MultipartBoundary,
    /// Multipart: the line after a boundary is neither `--` nor CRLF (400).
    MultipartBadDelimiter,
    /// Multipart: a part's header block is larger than the limit (400).
    MultipartPartHeadTooLarge,
    /// Multipart: a part's header block is not valid syntax (400).
    MultipartBadPartHead,
    /// Multipart: a part without `Content-Disposition: form-data; name=...` (400).
    MultipartNoDisposition,
    /// Multipart: more than one file part (400).
    MultipartSecondFile,
    /// Multipart: a non-file field larger than the limit (400).
    MultipartFieldTooLarge,
    /// Multipart: more parts than the limit (400).
    MultipartTooManyParts,
    /// Multipart: a field value is not UTF-8 (400).
    MultipartFieldNotUtf8,
    /// Multipart: the body ended before the closing boundary (400).
    MultipartTruncated,
    /// Multipart: no file part at all (400).
    MultipartNoFile,
    /// Multipart: more bytes before the first boundary than the limit (400).
    MultipartPreambleTooLarge,
    /// A Content-Disposition or Content-Type header that cannot be parsed (400); says why.
    BadHeaderParams(&'static str),
    /// A percent-encoded value decodes to bytes that are not UTF-8, or has a bad escape (400).
    BadPercentEncoding,
    /// A path segment cannot be decoded (400).
    BadPath,
}

impl HttpError {
    /// The HTTP status code this error implies.
    pub fn status(&self) -> u16 {
        use HttpError::*;
        match self {
            HeadTooLarge | TooManyHeaders => 431,
            VersionNotSupported => 505,
            UnsupportedTransferEncoding => 501,
            LengthRequired => 411,
            PayloadTooLarge => 413,
            _ => 400,
        }
    }

    /// A short human-readable reason, stable enough for tests and the JSON error body.
    pub fn reason(&self) -> &'static str {
        use HttpError::*;
        match self {
            MalformedHead(why) => why,
            HeadTooLarge => "request header block too large",
            TooManyHeaders => "too many header fields",
            HeaderNotUtf8 => "header value is not UTF-8",
            VersionNotSupported => "only HTTP/1.0 and HTTP/1.1 are supported",
            BadContentLength => "invalid Content-Length",
            ConflictingFraming => "both Content-Length and Transfer-Encoding",
            UnsupportedTransferEncoding => "only the chunked transfer coding is supported",
            LengthRequired => "Content-Length or chunked coding required",
            PayloadTooLarge => "body larger than allowed",
            BodyTruncated => "connection closed before the end of the body",
            ChunkSizeInvalid => "chunk size is not hexadecimal",
            ChunkSizeOverflow => "chunk size too large",
            ChunkLineTooLong => "chunk-size line too long",
            ChunkBadLineEnd => "chunk line does not end with CRLF",
            ChunkDataNoCrlf => "chunk data not followed by CRLF",
            TrailersTooLarge => "chunked trailer section too large",
            MultipartBoundary => "multipart Content-Type without a valid boundary",
            MultipartBadDelimiter => "malformed multipart boundary line",
            MultipartPartHeadTooLarge => "multipart part headers too large",
            MultipartBadPartHead => "malformed multipart part headers",
            MultipartNoDisposition => "multipart part without Content-Disposition form-data name",
            MultipartSecondFile => "more than one file part",
            MultipartFieldTooLarge => "multipart field too large",
            MultipartTooManyParts => "too many multipart parts",
            MultipartFieldNotUtf8 => "multipart field is not UTF-8",
            MultipartTruncated => "multipart body ended before the closing boundary",
            MultipartNoFile => "multipart body has no file part",
            MultipartPreambleTooLarge => "multipart preamble too large",
            BadHeaderParams(why) => why,
            BadPercentEncoding => "bad percent-encoding or not UTF-8",
            BadPath => "malformed request path",
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_issue() {
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::PayloadTooLarge.status(), 413);
        assert_eq!(HttpError::LengthRequired.status(), 411);
        assert_eq!(HttpError::VersionNotSupported.status(), 505);
        assert_eq!(HttpError::ChunkSizeInvalid.status(), 400);
        assert_eq!(HttpError::MultipartTruncated.status(), 400);
        assert_eq!(
            HttpError::MalformedHead("bad token").to_string(),
            "400 bad token"
        );
    }

    #[test]
    fn page_has_the_ids_the_browser_test_uses() {
        for id in [
            "id=\"token\"",
            "id=\"login\"",
            "id=\"conference\"",
            "id=\"file\"",
            "id=\"send\"",
            "id=\"cancel\"",
            "id=\"upload-progress\"",
            "id=\"queue\"",
            "id=\"transfers\"",
            "/api/conferences/\" + encodeURIComponent(conf) + \"/transfers",
            "@media (prefers-color-scheme: dark)",
            "aria-live",
            "<noscript>",
            "<!--NOSCRIPT-UPLOAD-->",
        ] {
            assert!(PAGE.contains(id), "page lacks {id}");
        }
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
    }
}
