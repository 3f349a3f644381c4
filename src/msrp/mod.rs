//! Sans-IO MSRP (RFC 4975, RFC 4976 framing): URIs, the message model, an incremental zero-copy
//! parser, a writer, a chunker, the sender state machine for one message to one peer, and receiver
//! reassembly. Nothing here owns a socket, a thread or a clock: time comes in as `now`.

pub mod auth;
pub mod chunker;
pub mod dash_runs;
pub mod disposition;
pub mod ids;
pub mod message;
pub mod parser;
pub mod receiver;
pub mod sender;
pub mod uri;
pub mod writer;

pub use message::{ByteRange, Continuation, FailureReport, Header, Kind, Message, Method, Status};
pub use uri::{Host, Uri};
