//! One MSRP connection that receives (RFC 4975): the transport, its frame decoder, the sans-IO
//! [`Receiver`] and the replies queued for the peer. Each frame goes to the receiver; its events
//! (data, a message complete, aborted or failed) and its replies (200s, REPORTs) go to a
//! [`FrameSide`], which says where the data goes and which replies are written.
//!
//! Shared by the engine's connection of a participant pushing a file to the room
//! (`engine::incoming`: the data into the spool, one message of the offered size) and the
//! passive receiver of the tool and the tests (`receive`: the data into part files, hooks,
//! resumed transfers).

use std::io::{self, Write as _};

use bytes::{Bytes, BytesMut};
use mio::{Interest, Registry, Token};

use crate::msrp::parser::FrameDecoder;
use crate::msrp::receiver::{Receiver, ReceiverEvent};
use crate::msrp::{writer, Message, Uri};
use crate::tls::Transport;

/// What happens to one reply of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Not written.
    Drop,
    /// Queued.
    Write,
    /// Queued and written at once, on its own (an error shows at the next flush).
    WriteAndFlush,
}

/// Where a receiving session's data goes, and which of its replies the peer gets. All the
/// receiver's events about a frame come before its replies to it.
pub(crate) trait FrameSide {
    /// Bytes of message `message_id` that belong at 0-based `offset`.
    fn data(&mut self, message_id: Bytes, offset: u64, bytes: &[u8]);
    /// Every byte of the message arrived: `total` bytes.
    fn complete(&mut self, message_id: Bytes, total: u64);
    /// The sender aborted the message (`#`) after `received` bytes.
    fn aborted(&mut self, message_id: Bytes, received: u64);
    /// The receiver refused a chunk of the message with `code` (or would have).
    fn failed(&mut self, message_id: Bytes, code: u16, reason: &'static str);
    /// A reply of the receiver to `frame`, about to be queued (it may be changed).
    fn reply(&mut self, frame: &Message, reply: &mut Message) -> Reply;
}

/// What one read from the peer gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// This many bytes, fed to the decoder.
    Bytes(usize),
    /// The peer closed the connection.
    Closed,
    /// Nothing now (the socket would block).
    Wait,
}

/// One receiving MSRP connection ([module docs](self)).
pub(crate) struct ReceivingSession {
    pub(crate) stream: Transport,
    pub(crate) decoder: FrameDecoder,
    pub(crate) receiver: Receiver,
    /// Bytes queued for the peer.
    pub(crate) out: BytesMut,
    /// Our URI as a path, the From-Path of the responses written here.
    local_path: Bytes,
}

impl ReceivingSession {
    pub(crate) fn new(
        stream: Transport,
        decoder: FrameDecoder,
        receiver: Receiver,
        local: &Uri,
    ) -> ReceivingSession {
        ReceivingSession {
            stream,
            decoder,
            receiver,
            out: BytesMut::new(),
            local_path: writer::render_path(std::slice::from_ref(local)),
        }
    }

    /// Hands `frame` to the receiver: its events to `side`, then its replies as `side` says.
    pub(crate) fn handle_frame(&mut self, frame: &Message, side: &mut impl FrameSide) {
        self.receiver.handle_frame(frame);
        while let Some(ev) = self.receiver.poll_event() {
            match ev {
                ReceiverEvent::Data {
                    message_id,
                    offset,
                    bytes,
                } => side.data(message_id, offset, &bytes),
                ReceiverEvent::MessageComplete {
                    message_id, total, ..
                } => side.complete(message_id, total),
                ReceiverEvent::MessageAborted {
                    message_id,
                    received,
                } => side.aborted(message_id, received),
                ReceiverEvent::MessageFailed {
                    message_id,
                    code,
                    reason,
                } => side.failed(message_id, code, reason),
                // REPORTs about messages this side sent: it sends none.
                ReceiverEvent::Report { .. } => {}
            }
        }
        while let Some(mut reply) = self.receiver.poll_reply() {
            match side.reply(frame, &mut reply) {
                Reply::Drop => {}
                Reply::Write => writer::write_message(&reply, &mut self.out),
                Reply::WriteAndFlush => {
                    writer::write_message(&reply, &mut self.out);
                    let _ = self.flush();
                }
            }
        }
    }

    /// Queues our own response `code` to the request `frame`, addressed to the first URI of its
    /// From-Path (the previous hop).
    pub(crate) fn respond(&mut self, frame: &Message, code: u16, reason: Option<&[u8]>) {
        let to = writer::render_path(&frame.from_path[..frame.from_path.len().min(1)]);
        writer::write_response(
            &frame.transaction_id,
            code,
            reason,
            &to,
            &self.local_path,
            &mut self.out,
        );
    }

    /// Reads once (at most `max` bytes) straight into the decoder's buffer.
    pub(crate) fn read(&mut self, max: usize) -> io::Result<Read> {
        let n = loop {
            match self.decoder.read_from(&mut self.stream, max) {
                Ok(0) => return Ok(Read::Closed),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Wait),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        crate::runtime::fault::inject("io", self.decoder.last(n));
        Ok(Read::Bytes(n))
    }

    /// Writes what is queued, as far as the socket takes it.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = self.out.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // TLS: the encrypted bytes still queued (WouldBlock: more at the next writable event).
        match self.stream.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            self.stream.socket_mut(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(self.stream.socket_mut());
    }
}
