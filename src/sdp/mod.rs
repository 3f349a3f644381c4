//! SDP for MSRP file push: the RFC 5547 offer the engine sends to each participant, and parsing of
//! the participant's answer (RFC 4975 §8, RFC 6135 `a=setup`).
//!
//! - [`file_selector`]: `a=file-selector` — escaping of untrusted file names and media types, and
//!   a parser for the attribute (used on answers and in tests).
//! - [`offer`]: [`build_offer`] for one file.
//! - [`answer`]: [`parse_answer`], tolerant of line endings and attribute order, never panicking.
//! - [`push_in`]: a participant's own push offer (a file to the room) and our answer.
//! - [`transport`]: TLS, `a=fingerprint`, direction and `a=max-size` of an answer, and the checks
//!   a delivery runs on them before connecting ([`Answer::check_delivery`]).

pub mod answer;
pub mod file_selector;
pub mod offer;
pub mod push_in;
pub mod transport;

use std::fmt;

pub use answer::{
    parse_answer, parse_answer_with, Answer, Direction, Setup, DEFAULT_MAX_PATH_URIS,
};
pub use file_selector::{escape_file_name, unescape_file_name, FileSelector};
pub use offer::{build_offer, build_offer_tls, parse_file_range, FileOffer, OfferParams};
pub use push_in::{
    build_push_answer, parse_push_offer, PushAnswerParams, PushOffer, PushOfferError,
};
pub use transport::{parse_fingerprints, Refusal, TlsCapability};

use crate::msrp::uri::UriError;

/// Why an SDP (or one of its values) was refused. Line numbers are 1-based; `text` is the
/// offending line, shortened and with control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// The text does not start with `v=0`.
    NotSdp { text: String },
    /// A line that is not `<letter>=<value>`.
    BadLine { line: usize, text: String },
    /// No `m=message ... TCP/MSRP` or `TCP/TLS/MSRP` media line.
    NoMessageMedia,
    /// A malformed `m=` line (port or fields).
    BadMedia { line: usize, text: String },
    /// The message media was refused: port 0 (RFC 3264 §6).
    Rejected,
    /// The message media has no `a=path` (RFC 4975 §8.1 makes it mandatory).
    MissingPath { media_line: usize },
    /// An `a=path` that does not parse, or whose last URI has no session-id.
    BadPath {
        line: usize,
        text: String,
        reason: String,
    },
    /// An `a=setup` value other than active, passive, actpass or holdconn.
    BadSetup { line: usize, text: String },
    /// A malformed attribute value we rely on (e.g. `a=max-size`).
    BadAttribute { line: usize, text: String },
    /// A file name that is not a valid RFC 5547 `filename-string` or not UTF-8 once decoded.
    BadFileName { reason: &'static str },
    /// A malformed `a=file-selector` value.
    BadFileSelector { reason: &'static str },
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::NotSdp { text } => write!(f, "not an SDP body (first line {text})"),
            SdpError::BadLine { line, text } => write!(f, "line {line} {text}: not <type>=<value>"),
            SdpError::NoMessageMedia => f.write_str("no m=message line with TCP/MSRP"),
            SdpError::BadMedia { line, text } => write!(f, "line {line} {text}: malformed m= line"),
            SdpError::Rejected => f.write_str("message media rejected (port 0)"),
            SdpError::MissingPath { media_line } => {
                write!(f, "no a=path for the m=message line at line {media_line}")
            }
            SdpError::BadPath { line, text, reason } => {
                write!(f, "line {line} {text}: bad a=path: {reason}")
            }
            SdpError::BadSetup { line, text } => write!(f, "line {line} {text}: bad a=setup"),
            SdpError::BadAttribute { line, text } => {
                write!(f, "line {line} {text}: malformed attribute")
            }
            SdpError::BadFileName { reason } => write!(f, "bad file name: {reason}"),
            SdpError::BadFileSelector { reason } => write!(f, "bad a=file-selector: {reason}"),
        }
    }
}

impl std::error::Error for SdpError {}

impl SdpError {
    pub(crate) fn bad_path(line: usize, text: &str, reason: UriError) -> Self {
        SdpError::BadPath {
            line,
            text: shown(text),
            reason: reason.to_string(),
        }
    }
}

/// A line as shown in an error: at most 120 characters, control characters escaped, quoted.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 120;
    let mut s: String = text.chars().take(MAX).collect();
    if text.chars().nth(MAX).is_some() {
        s.push('…');
    }
    format!("{s:?}")
}
