//! The MSRP listener: participants that answered `a=setup:active` connect to us; each accepted
//! connection waits for its first frame, which names the session it is for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::msrp::parser::FrameDecoder;
use crate::msrp::Message;
use crate::roster::DeliveryId;
use crate::runtime::io::{Command, Ctx, Flow, Handler};
use crate::runtime::log::{Level, Logger};

use super::core::Awaited;
use super::driver::Cmd;

/// The MSRP listener: accepted connections wait for their first frame, which names the session
/// (the last URI of its To-Path); a known session goes to the engine, anything else is refused.
pub(super) struct Listener {
    pub listener: mio::net::TcpListener,
    pub waiting: Awaited,
    pub tx: Sender<Cmd>,
    pub logger: Logger,
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
                    let _ = stream.set_nodelay(true);
                    ctx.add(Box::new(Pending {
                        stream: Some(stream),
                        handoff: None,
                        peer,
                        decoder: FrameDecoder::new(Default::default()),
                        waiting: self.waiting.clone(),
                        tx: self.tx.clone(),
                        deadline: now + Duration::from_secs(30),
                        logger: self.logger.clone(),
                    }));
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

    fn on_tick(&mut self, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Continue
    }

    fn on_command(&mut self, _: Command, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Close
    }
}

/// An accepted connection before its session is known.
struct Pending {
    stream: Option<mio::net::TcpStream>,
    handoff: Option<(DeliveryId, Message)>,
    peer: SocketAddr,
    decoder: FrameDecoder,
    waiting: Awaited,
    tx: Sender<Cmd>,
    deadline: Instant,
    logger: Logger,
}

impl Handler for Pending {
    fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> std::io::Result<()> {
        match self.stream.as_mut() {
            Some(s) => registry.register(s, token, mio::Interest::READABLE),
            None => Ok(()),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        let _ = registry.deregister(&mut stream);
        if let Some((delivery, first)) = self.handoff.take() {
            let decoder =
                std::mem::replace(&mut self.decoder, FrameDecoder::new(Default::default()));
            let _ = self.tx.try_send(Cmd::Accepted {
                delivery,
                stream,
                decoder: Box::new(decoder),
                first: Box::new(first),
            });
        }
    }

    fn on_ready(&mut self, _: Instant, readable: bool, _: bool, _: &mut Ctx) -> Flow {
        use std::io::Read;
        if !readable {
            return Flow::Continue;
        }
        let mut buf = [0u8; 8192];
        loop {
            let Some(s) = self.stream.as_mut() else {
                return Flow::Close;
            };
            match s.read(&mut buf) {
                Ok(0) => return Flow::Close,
                Ok(n) => {
                    self.decoder.feed(&buf[..n]);
                    match self.decoder.next() {
                        Ok(Some(first)) => return self.route(first),
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
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    fn on_command(&mut self, _: Command, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Close
    }
}

impl Pending {
    fn route(&mut self, first: Message) -> Flow {
        let session = first
            .to_path
            .last()
            .map(|u| u.session_id.clone())
            .unwrap_or_default();
        let d = self.waiting.lock().remove(&session);
        let Some(d) = d else {
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
        self.handoff = Some((d, first));
        Flow::Close
    }
}
