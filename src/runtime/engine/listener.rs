//! The MSRP listener: participants that answered `a=setup:active` connect to us; each accepted
//! connection waits for its first frame, which names the session it is for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::msrp::parser::FrameDecoder;
use crate::msrp::Message;
use crate::roster::DeliveryId;
use crate::runtime::fault::{self, Guarded};
use crate::runtime::io::{Command, Ctx, Flow, Handler};
use crate::runtime::log::{Level, Logger};
use crate::tls::{first_bytes, FirstBytes, Tls, TlsStream, Transport};

use super::core::Awaited;
use super::driver::Cmd;
use super::offer_in::{Sessions, Slot};

/// The MSRP listener: accepted connections wait for their first frame, which names the session
/// (the last URI of its To-Path); a known session goes to the engine, anything else is refused.
pub(super) struct Listener {
    pub listener: mio::net::TcpListener,
    pub waiting: Awaited,
    pub tx: Sender<Cmd>,
    pub logger: Logger,
    /// `msrp_max_pending` and `msrp_pending_max_bytes`.
    pub max_pending: usize,
    pub pending_max_bytes: u64,
    /// Connections still waiting for their first frame.
    pub pending: Arc<AtomicUsize>,
    /// Refusing connections since the last one accepted (logged once per run of refusals).
    pub refusing: bool,
    /// MSRP TLS (`msrp_tls`): a connection that starts with a TLS handshake is served with it;
    /// `None`: such a connection is closed.
    pub tls: Option<Arc<Tls>>,
    pub handshake_timeout: Duration,
    /// Sessions of files from participants (offer_in): a first frame may name one of them.
    pub incoming: Arc<Sessions>,
}

impl Listener {
    /// The engine's MSRP listener, with its limits from `cfg`.
    pub(super) fn new(
        listener: mio::net::TcpListener,
        waiting: Awaited,
        tx: Sender<Cmd>,
        logger: Logger,
        cfg: &crate::config::Config,
        tls: Option<Arc<Tls>>,
        incoming: Arc<Sessions>,
    ) -> Listener {
        Listener {
            listener,
            waiting,
            tx,
            logger,
            max_pending: cfg.msrp_max_pending,
            pending_max_bytes: cfg.msrp_pending_max_bytes,
            pending: Arc::default(),
            refusing: false,
            tls,
            handshake_timeout: Duration::from_millis(cfg.tls_handshake_timeout_ms),
            incoming,
        }
    }
}

/// How long an accepted connection may take to send its first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// One place in the count of pending connections, given back when the connection goes.
struct PendingSlot(Arc<AtomicUsize>);

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Listener {
    /// Takes a place for one more pending connection, or `None` when all are taken.
    fn slot(&mut self, peer: SocketAddr) -> Option<PendingSlot> {
        let taken = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_pending).then_some(n + 1)
            })
            .is_ok();
        if taken {
            self.refusing = false;
            return Some(PendingSlot(self.pending.clone()));
        }
        if !self.refusing {
            self.refusing = true;
            self.logger.warn(
                "engine",
                format_args!(
                    "MSRP connection from {peer} closed: {} connections already wait for their \
                     first frame (msrp_max_pending); further refusals are not logged",
                    self.max_pending
                ),
            );
        }
        None
    }
}

impl Handler for Listener {
    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> std::io::Result<()> {
        registry.register(&mut self.listener, token, mio::Interest::READABLE)
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut self.listener);
    }

    fn on_ready(&mut self, now: Instant, _: bool, _: bool, ctx: &mut Ctx) -> Flow {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    // Without a place the stream is dropped here: closed at once.
                    let Some(slot) = self.slot(peer) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    ctx.add(Guarded::new(
                        Box::new(Pending {
                            stream: Some(Transport::Plain(stream)),
                            classified: false,
                            tls: self.tls.clone(),
                            handshake_timeout: self.handshake_timeout,
                            handoff: None,
                            peer,
                            decoder: FrameDecoder::new(Default::default()),
                            waiting: self.waiting.clone(),
                            incoming: self.incoming.clone(),
                            tx: self.tx.clone(),
                            deadline: now + FIRST_FRAME_TIMEOUT,
                            logger: self.logger.clone(),
                            received: 0,
                            max_bytes: self.pending_max_bytes,
                            _slot: slot,
                        }),
                        self.logger.clone(),
                        "an MSRP connection before its first frame",
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Flow::Continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.logger.log(
                        Level::Warn,
                        "engine",
                        format_args!("MSRP accept failed: {e}"),
                    );
                    return Flow::Continue;
                }
            }
        }
    }

    fn on_wake(&mut self, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Continue
    }

    fn on_tick(&mut self, now: Instant, _: &mut Ctx) -> Flow {
        // Files from participants whose connection never came fail here.
        for slot in self.incoming.expire(now) {
            let t = slot.transfer;
            self.logger.warn(
                "engine",
                format_args!(
                    "transfer {t}: participant {:?} never connected to send its file",
                    slot.participant
                ),
            );
            slot.upload
                .abort_with("the participant never connected to send the file");
        }
        Flow::Continue
    }

    fn on_command(&mut self, _: Command, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Close
    }
}

/// Whom an accepted connection turned out to be for.
enum Handoff {
    /// A delivery whose participant answered `a=setup:active`.
    Delivery(DeliveryId),
    /// A participant sending a file to the room (offer_in).
    Incoming(Box<Slot>),
}

/// An accepted connection before its session is known.
struct Pending {
    stream: Option<Transport>,
    /// The first bytes told TLS from plain MSRP.
    classified: bool,
    tls: Option<Arc<Tls>>,
    handshake_timeout: Duration,
    handoff: Option<(Handoff, Message)>,
    peer: SocketAddr,
    decoder: FrameDecoder,
    waiting: Awaited,
    incoming: Arc<Sessions>,
    tx: Sender<Cmd>,
    deadline: Instant,
    logger: Logger,
    /// Bytes read so far, at most `max_bytes` (plus one read) before the first frame.
    received: u64,
    max_bytes: u64,
    _slot: PendingSlot,
}

impl Handler for Pending {
    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> std::io::Result<()> {
        match self.stream.as_mut() {
            Some(s) => registry.register(s.socket_mut(), token, mio::Interest::READABLE),
            None => Ok(()),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        let _ = registry.deregister(stream.socket_mut());
        if let Some((handoff, first)) = self.handoff.take() {
            let decoder =
                std::mem::replace(&mut self.decoder, FrameDecoder::new(Default::default()));
            let _ = self.tx.try_send(match handoff {
                Handoff::Delivery(delivery) => Cmd::Accepted {
                    delivery,
                    stream,
                    decoder: Box::new(decoder),
                    first: Box::new(first),
                },
                Handoff::Incoming(slot) => Cmd::AcceptedIncoming {
                    slot,
                    stream,
                    decoder: Box::new(decoder),
                    first: Box::new(first),
                },
            });
        }
    }

    fn on_ready(&mut self, now: Instant, readable: bool, _: bool, _: &mut Ctx) -> Flow {
        use std::io::Read;
        if !readable && !self.stream.as_ref().is_some_and(Transport::is_tls) {
            return Flow::Continue;
        }
        if !self.classified {
            match self.classify(now) {
                Some(flow) => return flow,
                None => self.classified = true,
            }
        }
        if let Some(s) = self.stream.as_mut() {
            match s.handshake(now) {
                Ok(true) => {}
                Ok(false) => return Flow::Continue,
                Err(e) => {
                    self.logger.log(
                        Level::Warn,
                        "engine",
                        format_args!("MSRP TLS connection from {}: {e}", self.peer),
                    );
                    return Flow::Close;
                }
            }
        }
        let mut buf = [0u8; 8192];
        loop {
            let Some(s) = self.stream.as_mut() else {
                return Flow::Close;
            };
            match s.read(&mut buf) {
                Ok(0) => return Flow::Close,
                Ok(n) => {
                    fault::inject("io", &buf[..n]);
                    self.decoder.feed(&buf[..n]);
                    self.received += n as u64;
                    match self.decoder.next() {
                        Ok(Some(first)) => return self.route(first),
                        Ok(None) if self.received > self.max_bytes => {
                            self.logger.warn(
                                "engine",
                                format_args!(
                                    "MSRP connection from {} closed: {} bytes without a complete \
                                     first frame (msrp_pending_max_bytes {})",
                                    self.peer, self.received, self.max_bytes
                                ),
                            );
                            return Flow::Close;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            self.logger.log(
                                Level::Warn,
                                "engine",
                                format_args!("MSRP connection from {}: {e}", self.peer),
                            );
                            return Flow::Close;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Flow::Continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Flow::Close,
            }
        }
    }

    fn on_wake(&mut self, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Continue
    }

    fn on_tick(&mut self, now: Instant, _: &mut Ctx) -> Flow {
        if now >= self.deadline {
            return Flow::Close;
        }
        if let Some(Err(e)) = self.stream.as_mut().map(|s| s.check_deadline(now)) {
            self.logger.log(
                Level::Warn,
                "engine",
                format_args!("MSRP TLS connection from {}: {e}", self.peer),
            );
            return Flow::Close;
        }
        Flow::Continue
    }

    fn on_command(&mut self, _: Command, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Close
    }
}

impl Pending {
    /// Peeks at the first bytes: a TLS handshake makes this a TLS server connection (closed
    /// when TLS is off), anything else stays plain. `Some(flow)` to return now (need more
    /// bytes, or close); `None` when classified.
    fn classify(&mut self, now: Instant) -> Option<Flow> {
        let Some(Transport::Plain(sock)) = self.stream.as_ref() else {
            return None;
        };
        let mut peeked = [0u8; 2];
        let n = match sock.peek(&mut peeked) {
            Ok(0) => return Some(Flow::Close),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(Flow::Continue),
            Err(_) => return Some(Flow::Close),
        };
        match first_bytes(&peeked[..n]) {
            FirstBytes::NeedMore => Some(Flow::Continue),
            FirstBytes::Plain => None,
            FirstBytes::Tls => {
                let config = match self.tls.as_ref().map(|t| t.server_config()) {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        self.logger.warn(
                            "engine",
                            format_args!("MSRP TLS connection from {} closed: {e}", self.peer),
                        );
                        return Some(Flow::Close);
                    }
                    None => {
                        self.logger.warn(
                            "engine",
                            format_args!(
                                "MSRP connection from {} closed: it starts TLS and msrp_tls is off",
                                self.peer
                            ),
                        );
                        return Some(Flow::Close);
                    }
                };
                let Some(Transport::Plain(sock)) = self.stream.take() else {
                    return Some(Flow::Close);
                };
                match TlsStream::accept(sock, config, now + self.handshake_timeout) {
                    Ok(t) => {
                        self.stream = Some(Transport::Tls(Box::new(t)));
                        None
                    }
                    Err(e) => {
                        self.logger.warn(
                            "engine",
                            format_args!("MSRP TLS connection from {}: {e}", self.peer),
                        );
                        Some(Flow::Close)
                    }
                }
            }
        }
    }

    fn route(&mut self, first: Message) -> Flow {
        let session = first
            .to_path
            .last()
            .map(|u| u.session_id.clone())
            .unwrap_or_default();
        let d = self.waiting.lock().remove(&session);
        let handoff = match d {
            Some(d) => Some(Handoff::Delivery(d)),
            None => self.incoming.take_waiting(&session).map(Handoff::Incoming),
        };
        let Some(handoff) = handoff else {
            self.logger.log(
                Level::Warn,
                "engine",
                format_args!(
                    "MSRP connection from {} for unknown session {:?}: closed",
                    self.peer,
                    String::from_utf8_lossy(&session)
                ),
            );
            return Flow::Close;
        };
        // Handed over in `deregister`, once the socket has left this thread's poll.
        self.handoff = Some((handoff, first));
        Flow::Close
    }
}
