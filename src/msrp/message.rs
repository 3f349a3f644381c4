//! The MSRP message model (RFC 4975 §7, RFC 4976 §5): one frame on the wire, request or response.
//!
//! Values are slices of the parser's input (`Bytes`), so a parsed frame — body included —
//! shares the receive buffer instead of copying it.

use bytes::Bytes;

use super::uri::Uri;

/// The end-line flag of a frame (RFC 4975 §7.1): more chunks follow, last chunk, or aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Continuation {
    /// `+`: more chunks of this message follow.
    More,
    /// `$`: this frame ends the message.
    End,
    /// `#`: the sender aborted the message.
    Abort,
}

impl Continuation {
    /// The flag character on the wire.
    pub fn as_byte(self) -> u8 {
        match self {
            Continuation::More => b'+',
            Continuation::End => b'$',
            Continuation::Abort => b'#',
        }
    }

    /// Parses the flag character.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'+' => Some(Continuation::More),
            b'$' => Some(Continuation::End),
            b'#' => Some(Continuation::Abort),
            _ => None,
        }
    }
}

/// A request method. Unknown methods are kept (RFC 4975 §7: answer them with 501).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Send,
    Report,
    /// RFC 4976 relay authentication.
    Auth,
    /// Any other method token, kept as received.
    Other(Bytes),
}

impl Method {
    /// The method token as written on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Method::Send => b"SEND",
            Method::Report => b"REPORT",
            Method::Auth => b"AUTH",
            Method::Other(b) => b,
        }
    }
}

/// The start line: `MSRP <tid> <method>` or `MSRP <tid> <code> [comment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Request(Method),
    Response { code: u16, comment: Option<Bytes> },
}

/// `Byte-Range: start-end/total` (RFC 4975 §9). 1-based, inclusive. `end`/`total` = `None` is `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
    pub total: Option<u64>,
}

/// `Failure-Report` values (RFC 4975 §7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReport {
    Yes,
    No,
    Partial,
}

/// `Status: <namespace> <code> [comment]` of a REPORT (RFC 4975 §9). Namespace 000 is the only one
/// defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub namespace: u16,
    pub code: u16,
    pub comment: Option<Bytes>,
}

/// Every header other than To-Path and From-Path (which are fields of [`Message`] because they are
/// mandatory and always first). Kept in the order received; unknown headers are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    MessageId(Bytes),
    ByteRange(ByteRange),
    SuccessReport(bool),
    FailureReport(FailureReport),
    Status(Status),
    /// The media type, verbatim (parameters included).
    ContentType(Bytes),
    /// RFC 4976 `Use-Path`.
    UsePath(Vec<Uri>),
    /// RFC 4976 `WWW-Authenticate`, verbatim value.
    WwwAuthenticate(Bytes),
    /// RFC 4976 `Authorization`, verbatim value.
    Authorization(Bytes),
    Expires(u32),
    MinExpires(u32),
    MaxExpires(u32),
    /// Any other header (including MIME headers such as `Content-ID`), name and value verbatim.
    Other {
        name: Bytes,
        value: Bytes,
    },
}

/// One MSRP frame: a request (or one chunk of it) or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub transaction_id: Bytes,
    pub kind: Kind,
    pub to_path: Vec<Uri>,
    pub from_path: Vec<Uri>,
    /// All other headers, in order.
    pub headers: Vec<Header>,
    /// The body (empty when there is none). A slice of the parser's input, never a copy.
    pub body: Bytes,
    pub continuation: Continuation,
}

impl Message {
    /// The request method, if this is a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.kind {
            Kind::Request(m) => Some(m),
            Kind::Response { .. } => None,
        }
    }

    /// The response code, if this is a response.
    pub fn response_code(&self) -> Option<u16> {
        match &self.kind {
            Kind::Response { code, .. } => Some(*code),
            Kind::Request(_) => None,
        }
    }

    /// A success REPORT (`Status: 000 200 OK`) for the bytes `range` of message `message_id`,
    /// from `from` along `to_path` (RFC 4975 §7.1.2).
    pub fn new_success_report(
        transaction_id: Bytes,
        to_path: Vec<Uri>,
        from: Uri,
        message_id: Bytes,
        range: ByteRange,
    ) -> Message {
        Message {
            transaction_id,
            kind: Kind::Request(Method::Report),
            to_path,
            from_path: vec![from],
            headers: vec![
                Header::MessageId(message_id),
                Header::ByteRange(range),
                Header::Status(Status {
                    namespace: 0,
                    code: 200,
                    comment: Some(Bytes::from_static(b"OK")),
                }),
            ],
            body: Bytes::new(),
            continuation: Continuation::End,
        }
    }

    pub fn message_id(&self) -> Option<&Bytes> {
        self.headers.iter().find_map(|h| match h {
            Header::MessageId(v) => Some(v),
            _ => None,
        })
    }

    pub fn byte_range(&self) -> Option<ByteRange> {
        self.headers.iter().find_map(|h| match h {
            Header::ByteRange(v) => Some(*v),
            _ => None,
        })
    }

    /// `Success-Report`, defaulting to `no` (RFC 4975 §7.1.2).
    pub fn success_report(&self) -> bool {
        self.headers
            .iter()
            .find_map(|h| match h {
                Header::SuccessReport(v) => Some(*v),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// `Failure-Report`, defaulting to `yes` (RFC 4975 §7.1.2).
    pub fn failure_report(&self) -> FailureReport {
        self.headers
            .iter()
            .find_map(|h| match h {
                Header::FailureReport(v) => Some(*v),
                _ => None,
            })
            .unwrap_or(FailureReport::Yes)
    }

    pub fn status(&self) -> Option<&Status> {
        self.headers.iter().find_map(|h| match h {
            Header::Status(v) => Some(v),
            _ => None,
        })
    }

    pub fn content_type(&self) -> Option<&Bytes> {
        self.headers.iter().find_map(|h| match h {
            Header::ContentType(v) => Some(v),
            _ => None,
        })
    }
}
