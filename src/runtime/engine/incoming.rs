//! The connection of a participant sending a file to the room: an RFC 4975 receiver (the
//! sans-IO [`Receiver`]: 200 per chunk as its `Failure-Report` asks, a success REPORT when its
//! `Success-Report` asks) whose data goes, in order, into the transfer's spool file through its
//! [`Upload`] — from where the deliveries to the other participants read it as it grows.
//!
//! One message per session, exactly as large as the offer's `a=file-selector` said. Anything
//! else fails the transfer with a reason (and the failed upload's spool file is removed by the
//! core): a chunk out of order, a second message, a size that differs, `#` from the sender, a
//! refusal by the spool (size, quota), the connection closing before the last byte, no frame for
//! twice `transaction_timeout_ms`, a BYE.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::{Interest, Registry, Token};

use crate::msrp::parser::FrameDecoder;
use crate::msrp::receiver::{Receiver, ReceiverConfig, ReceiverEvent};
use crate::msrp::{writer, FailureReport, Kind, Message, Method};
use crate::runtime::io::{Command, Ctx, Flow, Handler};
use crate::runtime::log::{Level, Logger};
use crate::tls::Transport;

use super::offer_in::{io_key, Sessions, Slot};
use super::Upload;

/// Bytes read from the socket per call.
const READ_BYTES: usize = 256 * 1024;

/// Reply bytes queued before the connection stops reading (the sender must take its 200s).
const MAX_OUT_BYTES: usize = 1 << 20;

/// A participant's connection that carries its file to the room.
pub(super) struct IncomingConn {
    key: u64,
    dialog: String,
    transfer: crate::roster::TransferId,
    participant: String,
    size: u64,
    stream: Transport,
    decoder: FrameDecoder,
    receiver: Receiver,
    local_path: Bytes,
    upload: Option<Upload>,
    /// The message carrying the file, once its first bytes came.
    message: Option<Bytes>,
    written: u64,
    out: BytesMut,
    buf: Vec<u8>,
    /// The whole file arrived and was handed to the spool.
    done: bool,
    /// The transfer failed: the replies go out, then the connection closes.
    failed: bool,
    /// Set while a frame is handled: this frame is refused with this code instead of 200.
    refuse: Option<u16>,
    last_frame: Instant,
    idle: Duration,
    sessions: Arc<Sessions>,
    logger: Logger,
    /// The first frame, handled at the first turn.
    first: Option<Message>,
}

impl IncomingConn {
    pub(super) fn new(
        slot: Box<Slot>,
        stream: Transport,
        decoder: FrameDecoder,
        first: Message,
        sessions: Arc<Sessions>,
        logger: Logger,
        idle: Duration,
    ) -> IncomingConn {
        let now = Instant::now();
        let Slot {
            dialog,
            transfer,
            participant,
            upload,
            local_uri,
            size,
            ..
        } = *slot;
        let receiver = Receiver::new(
            local_uri.clone(),
            ReceiverConfig {
                max_message_bytes: size,
                max_open_messages: 1,
                ..ReceiverConfig::default()
            },
        );
        IncomingConn {
            key: io_key(transfer),
            dialog,
            transfer,
            participant,
            size,
            stream,
            decoder,
            receiver,
            local_path: writer::render_path(std::slice::from_ref(&local_uri)),
            upload: Some(upload),
            message: None,
            written: 0,
            out: BytesMut::new(),
            buf: vec![0; READ_BYTES],
            done: false,
            failed: false,
            refuse: None,
            last_frame: now,
            idle,
            sessions,
            logger,
            first: Some(first),
        }
    }

    /// The transfer fails for `reason`: the upload is aborted (its deliveries end, its spool
    /// file goes).
    fn fail(&mut self, reason: &str) {
        if self.failed || self.done {
            return;
        }
        self.failed = true;
        let t = self.transfer;
        self.logger.log(
            Level::Warn,
            "engine",
            format_args!(
                "transfer {t}: the file from participant {:?} failed after {} of {} bytes: {reason}",
                self.participant, self.written, self.size
            ),
        );
        if let Some(up) = self.upload.take() {
            up.abort_with(reason);
        }
    }

    fn on_event(&mut self, ev: ReceiverEvent) {
        match ev {
            ReceiverEvent::Data {
                message_id,
                offset,
                bytes,
            } => self.on_data(message_id, offset, &bytes),
            ReceiverEvent::MessageComplete {
                message_id, total, ..
            } => {
                if self.message.as_ref() != Some(&message_id) && total > 0 {
                    return;
                }
                if total != self.size {
                    self.refuse = Some(400);
                    self.fail(&format!(
                        "the message has {total} bytes, the offer announced {}",
                        self.size
                    ));
                    return;
                }
                if self.failed {
                    return;
                }
                let Some(up) = self.upload.take() else {
                    return;
                };
                match up.finish() {
                    Ok(_) => {
                        self.done = true;
                        self.logger.info(
                            "engine",
                            format_args!(
                                "transfer {}: all {total} bytes received from participant {:?}",
                                self.transfer, self.participant
                            ),
                        );
                    }
                    Err(e) => {
                        self.refuse = Some(400);
                        self.failed = true;
                        self.logger.warn(
                            "engine",
                            format_args!("transfer {}: spool: {e}", self.transfer),
                        );
                    }
                }
            }
            ReceiverEvent::MessageAborted { received, .. } => self.fail(&format!(
                "the participant aborted the file (#) after {received} bytes"
            )),
            ReceiverEvent::MessageFailed { code, reason, .. } => {
                self.fail(&format!("a chunk was refused with {code}: {reason}"))
            }
            ReceiverEvent::Report { .. } => {}
        }
    }

    fn on_data(&mut self, message_id: Bytes, offset: u64, bytes: &[u8]) {
        if self.failed || self.done {
            self.refuse = Some(403);
            return;
        }
        match &self.message {
            None => self.message = Some(message_id),
            Some(m) if *m == message_id => {}
            Some(_) => {
                // The receiver holds one message at a time; a second one after the first.
                self.refuse = Some(403);
                return;
            }
        }
        if offset != self.written {
            self.refuse = Some(400);
            self.fail(&format!(
                "a chunk starts at byte {} where byte {} was expected (chunks must come in order)",
                offset + 1,
                self.written + 1
            ));
            return;
        }
        let Some(up) = self.upload.as_mut() else {
            self.refuse = Some(403);
            return;
        };
        if let Err(e) = up.append(bytes) {
            // The upload already ended itself (too large, quota, cancelled) with its reason.
            self.upload = None;
            self.failed = true;
            self.refuse = Some(413);
            self.logger.warn(
                "engine",
                format_args!(
                    "transfer {}: the file from participant {:?} failed after {} bytes: {e}",
                    self.transfer, self.participant, self.written
                ),
            );
            return;
        }
        self.written += bytes.len() as u64;
    }

    fn handle_frame(&mut self, msg: Message, now: Instant) {
        self.last_frame = now;
        self.refuse = None;
        self.receiver.handle_frame(&msg);
        while let Some(ev) = self.receiver.poll_event() {
            self.on_event(ev);
        }
        let refused = self.refuse.take();
        while let Some(reply) = self.receiver.poll_reply() {
            let ours = reply.response_code() == Some(200)
                || matches!(reply.kind, Kind::Request(Method::Report));
            if refused.is_some() && ours {
                // This frame's 200 (and success REPORT) are replaced by the refusal.
                continue;
            }
            writer::write_message(&reply, &mut self.out);
        }
        if let Some(code) = refused {
            let is_send = matches!(msg.kind, Kind::Request(Method::Send));
            if is_send && msg.failure_report() != FailureReport::No {
                let to = writer::render_path(&msg.from_path[..msg.from_path.len().min(1)]);
                writer::write_response(
                    &msg.transaction_id,
                    code,
                    None,
                    &to,
                    &self.local_path,
                    &mut self.out,
                );
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
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
        match self.stream.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// Decodes the frames already buffered.
    fn drain(&mut self, now: Instant) -> Result<(), String> {
        loop {
            match self.decoder.next() {
                Ok(Some(m)) => self.handle_frame(m, now),
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("malformed MSRP from the participant: {e}")),
            }
        }
    }

    fn turn(&mut self, now: Instant) -> Flow {
        if let Some(first) = self.first.take() {
            self.handle_frame(first, now);
        }
        if let Err(r) = self.drain(now) {
            self.fail(&r);
            return self.close();
        }
        while !self.failed && self.out.len() < MAX_OUT_BYTES {
            match self.stream.read(&mut self.buf) {
                Ok(0) => {
                    if !self.done {
                        let r = format!(
                            "the participant's connection closed after {} of {} bytes",
                            self.written, self.size
                        );
                        self.fail(&r);
                    }
                    let _ = self.flush();
                    return self.close();
                }
                Ok(n) => {
                    crate::runtime::fault::inject("io", &self.buf[..n]);
                    self.decoder.feed(&self.buf[..n]);
                    if let Err(r) = self.drain(now) {
                        self.fail(&r);
                        return self.close();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let r = format!(
                        "the participant's connection failed after {} of {} bytes: {e}",
                        self.written, self.size
                    );
                    self.fail(&r);
                    return self.close();
                }
            }
        }
        if let Err(e) = self.flush() {
            self.fail(&format!("cannot write to the participant: {e}"));
            return self.close();
        }
        if self.failed && self.out.is_empty() {
            return self.close();
        }
        Flow::Continue
    }

    fn close(&mut self) -> Flow {
        if self.stream.is_tls() {
            let _ = self.stream.shutdown_write();
        }
        Flow::Close
    }
}

impl Handler for IncomingConn {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            self.stream.socket_mut(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(self.stream.socket_mut());
        if !self.done {
            let r = format!(
                "the participant's connection ended after {} of {} bytes",
                self.written, self.size
            );
            self.fail(&r);
        }
        self.sessions.finished(&self.dialog);
    }

    fn on_ready(&mut self, now: Instant, _: bool, _: bool, _: &mut Ctx) -> Flow {
        self.turn(now)
    }

    fn on_wake(&mut self, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Continue
    }

    fn on_tick(&mut self, now: Instant, _: &mut Ctx) -> Flow {
        if now.duration_since(self.last_frame) >= self.idle {
            if !self.done {
                let r = format!(
                    "nothing from the participant for {} ms after {} of {} bytes",
                    self.idle.as_millis(),
                    self.written,
                    self.size
                );
                self.fail(&r);
            }
            return self.close();
        }
        // Replies held back by a full socket, and reading resumed once they left.
        self.turn(now)
    }

    fn on_command(&mut self, cmd: Command, _: Instant, _: &mut Ctx) -> Flow {
        let Command::Abort { reason, .. } = cmd;
        if !self.done {
            self.fail(&reason);
        }
        self.close()
    }

    fn key(&self) -> Option<u64> {
        Some(self.key)
    }
}
