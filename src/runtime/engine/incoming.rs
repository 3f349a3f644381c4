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

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Registry, Token};

use crate::msrp::parser::FrameDecoder;
use crate::msrp::receiver::{Receiver, ReceiverConfig};
use crate::msrp::{FailureReport, Kind, Message, Method};
use crate::runtime::io::{Command, Ctx, Flow, Handler};
use crate::runtime::log::{Level, Logger};
use crate::runtime::receiving::{FrameSide, Read, ReceivingSession, Reply};
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
    session: ReceivingSession,
    file: IntoSpool,
    last_frame: Instant,
    idle: Duration,
    sessions: Arc<Sessions>,
    /// The first frame, handled at the first turn.
    first: Option<Message>,
}

/// Where the participant's file goes: in order into the transfer's spool file, or the transfer
/// fails with a reason.
struct IntoSpool {
    transfer: crate::roster::TransferId,
    participant: String,
    size: u64,
    upload: Option<Upload>,
    /// The message carrying the file, once its first bytes came.
    message: Option<Bytes>,
    written: u64,
    /// The whole file arrived and was handed to the spool.
    done: bool,
    /// The transfer failed: the replies go out, then the connection closes.
    failed: bool,
    /// Set while a frame is handled: this frame is refused with this code instead of 200.
    refuse: Option<u16>,
    logger: Logger,
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
            session: ReceivingSession::new(stream, decoder, receiver, &local_uri),
            file: IntoSpool {
                transfer,
                participant,
                size,
                upload: Some(upload),
                message: None,
                written: 0,
                done: false,
                failed: false,
                refuse: None,
                logger,
            },
            last_frame: Instant::now(),
            idle,
            sessions,
            first: Some(first),
        }
    }
}

impl IntoSpool {
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

    /// Fails the transfer (unless the whole file came) with what happened to the connection
    /// after the bytes so far.
    fn ended(&mut self, what: &str) {
        if !self.done {
            let r = format!("{what} after {} of {} bytes", self.written, self.size);
            self.fail(&r);
        }
    }
}

impl FrameSide for IntoSpool {
    fn data(&mut self, message_id: Bytes, offset: u64, bytes: &[u8]) {
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

    fn complete(&mut self, message_id: Bytes, total: u64) {
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

    fn aborted(&mut self, _: Bytes, received: u64) {
        self.fail(&format!(
            "the participant aborted the file (#) after {received} bytes"
        ));
    }

    fn failed(&mut self, _: Bytes, code: u16, reason: &'static str) {
        self.fail(&format!("a chunk was refused with {code}: {reason}"));
    }

    fn reply(&mut self, _frame: &Message, reply: &mut Message) -> Reply {
        let ours = reply.response_code() == Some(200)
            || matches!(reply.kind, Kind::Request(Method::Report));
        if self.refuse.is_some() && ours {
            // This frame's 200 (and success REPORT) are replaced by the refusal.
            Reply::Drop
        } else {
            Reply::Write
        }
    }
}

impl IncomingConn {
    fn handle_frame(&mut self, msg: Message, now: Instant) {
        self.last_frame = now;
        self.file.refuse = None;
        self.session.handle_frame(&msg, &mut self.file);
        if let Some(code) = self.file.refuse.take() {
            let is_send = matches!(msg.kind, Kind::Request(Method::Send));
            if is_send && msg.failure_report() != FailureReport::No {
                self.session.respond(&msg, code, None);
            }
        }
    }

    /// Decodes the frames already buffered.
    fn drain(&mut self, now: Instant) -> Result<(), String> {
        loop {
            match self.session.decoder.next() {
                Ok(Some(m)) => self.handle_frame(m, now),
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("malformed MSRP from the participant: {e}")),
            }
        }
    }

    /// Fails the transfer for `reason` and closes.
    fn fail_close(&mut self, reason: &str) -> Flow {
        self.file.fail(reason);
        self.close()
    }

    fn turn(&mut self, now: Instant) -> Flow {
        if let Some(first) = self.first.take() {
            self.handle_frame(first, now);
        }
        if let Err(r) = self.drain(now) {
            return self.fail_close(&r);
        }
        while !self.file.failed && self.session.out.len() < MAX_OUT_BYTES {
            match self.session.read(READ_BYTES) {
                Ok(Read::Closed) => {
                    self.file.ended("the participant's connection closed");
                    let _ = self.session.flush();
                    return self.close();
                }
                Ok(Read::Bytes(_)) => {
                    if let Err(r) = self.drain(now) {
                        return self.fail_close(&r);
                    }
                }
                Ok(Read::Wait) => break,
                Err(e) => {
                    let f = &self.file;
                    let r = format!(
                        "the participant's connection failed after {} of {} bytes: {e}",
                        f.written, f.size
                    );
                    return self.fail_close(&r);
                }
            }
        }
        if let Err(e) = self.session.flush() {
            return self.fail_close(&format!("cannot write to the participant: {e}"));
        }
        if self.file.failed && self.session.out.is_empty() {
            return self.close();
        }
        Flow::Continue
    }

    fn close(&mut self) -> Flow {
        if self.session.stream.is_tls() {
            let _ = self.session.stream.shutdown_write();
        }
        Flow::Close
    }
}

impl Handler for IncomingConn {
    /// The engine aborts the connection by its transfer's key.
    fn key(&self) -> Option<u64> {
        Some(self.key)
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.session.register(registry, token)
    }

    fn deregister(&mut self, registry: &Registry) {
        self.session.deregister(registry);
        self.file.ended("the participant's connection ended");
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
            let what = format!(
                "nothing from the participant for {} ms",
                self.idle.as_millis()
            );
            self.file.ended(&what);
            return self.close();
        }
        // Replies held back by a full socket, and reading resumed once they left.
        self.turn(now)
    }

    fn on_command(&mut self, cmd: Command, _: Instant, _: &mut Ctx) -> Flow {
        let Command::Abort { reason, .. } = cmd;
        if !self.file.done {
            self.file.fail(&reason);
        }
        self.close()
    }
}
