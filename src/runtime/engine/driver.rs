//! The core thread: a thin loop around the sans-IO [`Core`] that feeds it the engine's requests,
//! the delivery outcomes and the clock, and carries out its [`Action`]s with the I/O pool, the
//! spool, the host's signal queue and the network.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::config::Config;
use crate::msrp::parser::FrameDecoder;
use crate::msrp::{Host, Message, Uri};
use crate::roster::{DeliveryId, TransferId};
use crate::runtime::delivery::{DeliveryConn, DeliveryOutcome, DeliveryParts, OutcomeSink};
use crate::runtime::fault::{self, Guarded};
use crate::runtime::io::{Command, IoPool};
use crate::runtime::log::Logger;
use crate::runtime::net;
use crate::runtime::readahead::ReadAhead;
use crate::runtime::spool::{Spool, SpoolFile};
use crate::tls::{TlsStream, Transport};

use super::core::{Action, Attach, Core};
use super::persist::{Job, Record};
use super::{NotifySlot, Signal};

/// How often the roster gets the deliveries' progress when no deadline comes sooner.
const TICK: Duration = Duration::from_millis(200);

/// Turns an MSRP URI's host and port into an address; may block (the system resolver). The
/// engine uses [`net::resolve`]; tests inject resolvers that never answer.
pub(crate) type Resolve = Arc<dyn Fn(&Uri) -> io::Result<SocketAddr> + Send + Sync>;

/// A request for the core thread.
pub(super) enum Cmd {
    Join {
        conference: String,
        participant: String,
        target: String,
        display: Option<String>,
        /// A participant reached directly at this MSRP path (To-Path, e.g. relay URIs then the
        /// receiver's), without SIP.
        direct: Option<Vec<Uri>>,
    },
    Leave {
        conference: String,
        participant: String,
    },
    Answered {
        delivery: DeliveryId,
        sdp: String,
    },
    Rejected {
        delivery: DeliveryId,
        code: u16,
    },
    Ended {
        delivery: DeliveryId,
    },
    NewTransfer {
        transfer: TransferId,
        file: Arc<SpoolFile>,
    },
    UploadEnded {
        transfer: TransferId,
    },
    Cancel {
        transfer: TransferId,
    },
    /// A complete file of an earlier run, its SHA-1 checked (`spool_persist`).
    Restore {
        record: Box<Record>,
        file: Arc<SpoolFile>,
    },
    /// A name resolution started by [`Driver::dial`] finished.
    Resolved {
        delivery: DeliveryId,
        to_path: Vec<Uri>,
        result: Result<SocketAddr, String>,
    },
    /// An accepted connection whose first frame named a session we wait for.
    Accepted {
        delivery: DeliveryId,
        stream: Transport,
        decoder: Box<FrameDecoder>,
        first: Box<Message>,
    },
    /// An accepted connection whose first frame named a participant's file session
    /// (offer_in).
    AcceptedIncoming {
        slot: Box<super::offer_in::Slot>,
        stream: Transport,
        decoder: Box<FrameDecoder>,
        first: Box<Message>,
    },
    Stop,
}

impl Cmd {
    /// What the command is, for the log of a panic while handling it.
    fn name(&self) -> String {
        match self {
            Cmd::Join {
                conference,
                participant,
                ..
            } => format!("the join of {participant:?} to {conference:?}"),
            Cmd::Leave {
                conference,
                participant,
            } => format!("the leave of {participant:?} from {conference:?}"),
            Cmd::Answered { delivery, .. } => format!("the answer of delivery {delivery}"),
            Cmd::Rejected { delivery, .. } => format!("the rejection of delivery {delivery}"),
            Cmd::Ended { delivery } => format!("the end of delivery {delivery}"),
            Cmd::NewTransfer { transfer, .. } => format!("new transfer {transfer}"),
            Cmd::UploadEnded { transfer } => format!("the end of the upload of {transfer}"),
            Cmd::Cancel { transfer } => format!("the cancel of transfer {transfer}"),
            Cmd::Restore { record, .. } => format!("the restore of {}", record.spool),
            Cmd::Resolved { delivery, .. } => {
                format!("the name resolution of delivery {delivery}")
            }
            Cmd::Accepted { delivery, .. } => format!("the connection of delivery {delivery}"),
            Cmd::AcceptedIncoming { slot, .. } => {
                format!(
                    "the connection of transfer {} from a participant",
                    slot.transfer
                )
            }
            Cmd::Stop => "stop".to_owned(),
        }
    }
}

/// The core thread's state: the core and the means to carry out its actions.
pub(super) struct Driver {
    pub core: Core,
    pub cfg: Arc<Config>,
    pub io: Arc<IoPool>,
    pub spool: Arc<Spool>,
    pub signals: Sender<Signal>,
    pub notify: NotifySlot,
    pub outcomes: OutcomeSink,
    pub msrp_addr: SocketAddr,
    pub logger: Logger,
    /// Where resolution results go: the core thread's own queue.
    pub tx: Sender<Cmd>,
    pub resolve: Resolve,
    /// Name resolutions running (each on its own thread), at most `max_name_lookups`.
    pub lookups: Arc<AtomicUsize>,
    /// MSRP TLS (`msrp_tls`); `None` when off.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The persister thread's queue (`spool_persist`); `None` when off.
    pub persist: Option<Sender<Job>>,
    /// Sessions of files from participants (offer_in).
    pub sessions: Arc<super::offer_in::Sessions>,
    /// The deliveries' read-ahead budget (`spool_read_ahead_bytes`).
    pub read_ahead: Arc<ReadAhead>,
}

/// One running name resolution, counted until its thread ends.
struct Lookup(Arc<AtomicUsize>);

impl Drop for Lookup {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Driver {
    /// Runs until [`Cmd::Stop`] or until every request sender is gone.
    /// Runs [`Driver::run`] on the core thread (`msrpcast-core`); logs that the engine started.
    pub fn spawn(
        self,
        rx: Receiver<Cmd>,
        outcomes: Receiver<(u64, DeliveryOutcome)>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let logger = self.logger.clone();
        let handle = crate::runtime::spawn("msrpcast-core", move || self.run(rx, outcomes))?;
        logger.info("engine", format_args!("started"));
        Ok(handle)
    }

    pub fn run(mut self, rx: Receiver<Cmd>, outcomes: Receiver<(u64, DeliveryOutcome)>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wake = self
                .core
                .poll_timeout()
                .map_or(next_tick, |t| t.min(next_tick));
            let wait = wake.saturating_duration_since(Instant::now());
            select! {
                recv(rx) -> cmd => match cmd {
                    Ok(Cmd::Stop) | Err(_) => break,
                    Ok(cmd) => {
                        let what = format!("handling {}", cmd.name());
                        let logger = self.logger.clone();
                        fault::guard(&logger, "engine", &what, || {
                            self.dispatch(cmd, Instant::now())
                        });
                    }
                },
                recv(outcomes) -> o => if let Ok((d, o)) = o {
                    let logger = self.logger.clone();
                    fault::guard(&logger, "engine", "handling a delivery outcome", || {
                        self.core.handle_outcome(DeliveryId(d), o, Instant::now())
                    });
                },
                default(wait) => {}
            }
            let now = Instant::now();
            if now >= wake {
                let logger = self.logger.clone();
                fault::guard(&logger, "engine", "handling the timers", || {
                    self.core.handle_tick(now)
                });
                next_tick = now + TICK;
            }
            self.guarded_flush();
        }
        let logger = self.logger.clone();
        fault::guard(&logger, "engine", "stopping", || self.core.handle_stop());
        self.guarded_flush();
    }

    /// [`Driver::flush`], a panic caught (the action that panicked is lost, the rest go on).
    fn guarded_flush(&mut self) {
        let logger = self.logger.clone();
        fault::guard(&logger, "engine", "carrying out the core's actions", || {
            self.flush()
        });
    }

    fn dispatch(&mut self, cmd: Cmd, now: Instant) {
        let core = &mut self.core;
        match cmd {
            Cmd::Join {
                conference,
                participant,
                target,
                display,
                direct,
            } => core.handle_join(conference, participant, target, display, direct, now),
            Cmd::Leave {
                conference,
                participant,
            } => core.handle_leave(&conference, &participant),
            Cmd::Answered { delivery, sdp } => core.handle_answered(delivery, &sdp, now),
            Cmd::Rejected { delivery, code } => core.handle_rejected(delivery, code),
            Cmd::Ended { delivery } => core.handle_ended(delivery),
            Cmd::NewTransfer { transfer, file } => core.handle_new_transfer(transfer, file, now),
            Cmd::UploadEnded { transfer } => core.handle_upload_ended(transfer),
            Cmd::Cancel { transfer } => core.handle_cancel(transfer),
            Cmd::Restore { record, file } => core.handle_restore(*record, file, now),
            Cmd::Resolved {
                delivery,
                to_path,
                result,
            } => match result {
                Ok(peer) => self.connect_to(delivery, &to_path, peer),
                Err(reason) => core.handle_dial_failed(delivery, reason),
            },
            Cmd::Accepted {
                delivery,
                stream,
                decoder,
                first,
            } => {
                if let Some(a) = core.handle_accepted(delivery, *first, stream.tls(), now) {
                    self.attach(a, stream, *decoder);
                }
            }
            Cmd::AcceptedIncoming {
                slot,
                stream,
                decoder,
                first,
            } => self.attach_incoming(slot, stream, *decoder, *first),
            Cmd::Stop => {}
        }
    }

    /// Carries out the core's actions (which may add more).
    fn flush(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Signal(s) => {
                    let _ = self.signals.send(s);
                    if let Some(f) = self.notify.lock().clone() {
                        f();
                    }
                }
                Action::Abort { delivery, reason } => self
                    .io
                    .command(delivery.0, Command::Abort { reason, code: 0 }),
                Action::Dial { delivery, to_path } => self.dial(delivery, to_path),
                Action::Unspool(f) => self.spool.remove(&f),
                Action::Record(rec, f) => {
                    if let Some(p) = &self.persist {
                        let _ = p.send(Job::Write(rec, f));
                    }
                }
                Action::Forget(name) => {
                    if let Some(p) = &self.persist {
                        let _ = p.send(Job::Remove(name));
                    }
                }
            }
        }
    }

    /// Connects to the first URI of `to_path`: at once for an IP address, after a name
    /// resolution on a thread of its own for a name, so a name server that never answers does
    /// not hold up the core (the core's deadline fails the delivery).
    fn dial(&mut self, d: DeliveryId, to_path: Vec<Uri>) {
        let Some(first) = to_path.first() else {
            self.core.handle_dial_failed(d, "empty MSRP path".into());
            return;
        };
        if !matches!(first.host, Host::Name(_)) {
            match net::resolve(first) {
                Ok(peer) => self.connect_to(d, &to_path, peer),
                Err(e) => self
                    .core
                    .handle_dial_failed(d, format!("cannot resolve {first}: {e}")),
            }
            return;
        }
        if let Err(reason) = self.resolve_later(d, to_path) {
            self.core.handle_dial_failed(d, reason);
        }
    }

    fn resolve_later(&self, delivery: DeliveryId, to_path: Vec<Uri>) -> Result<(), String> {
        let max = self.cfg.max_name_lookups;
        let taken = self
            .lookups
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return Err(format!(
                "{max} name resolutions already running (max_name_lookups)"
            ));
        }
        let lookup = Lookup(self.lookups.clone());
        let (resolve, tx) = (self.resolve.clone(), self.tx.clone());
        crate::runtime::spawn("msrpcast-resolve", move || {
            let _lookup = lookup;
            let first = &to_path[0];
            let result = resolve(first).map_err(|e| format!("cannot resolve {first}: {e}"));
            // Fails only when the engine stopped meanwhile.
            let _ = tx.send(Cmd::Resolved {
                delivery,
                to_path,
                result,
            });
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start a name resolution: {e}"))
    }

    /// Starts the connection of a delivery the core still dials.
    fn connect_to(&mut self, d: DeliveryId, to_path: &[Uri], peer: SocketAddr) {
        if !self.core.dialing(d) {
            return;
        }
        match self.connect(peer) {
            Ok(stream) => {
                let local = stream.local_addr().ok();
                if let Some(a) = self.core.handle_dialed(d, to_path, local, Instant::now()) {
                    self.attach_dialed(a, stream);
                }
            }
            Err(e) => self
                .core
                .handle_dial_failed(d, format!("cannot connect to {peer}: {e}")),
        }
    }

    /// Connects from the listen port when `msrp_reuse_port` asks for it, else (or when that
    /// fails) from any port.
    fn connect(&self, peer: SocketAddr) -> std::io::Result<mio::net::TcpStream> {
        let same_family = self.msrp_addr.is_ipv4() == peer.is_ipv4();
        if self.cfg.msrp_reuse_port && same_family {
            match net::connect(peer, Some(self.msrp_addr)) {
                Ok(s) => return Ok(s),
                // Relays that route by source port (Kamailio's msrp) will not route this one.
                Err(e) => self.logger.warn(
                    "engine",
                    format_args!(
                        "connecting to {peer} from the listen port {} failed ({e}); \
                         connecting from another port",
                        self.msrp_addr
                    ),
                ),
            }
        }
        net::connect(peer, None)
    }

    /// The connection's transport: TLS towards `a.tls` (handshake by `connect_timeout_ms` +
    /// `tls_handshake_timeout_ms` from now, on the I/O thread), else plain.
    fn transport(
        &self,
        a: &Attach,
        stream: mio::net::TcpStream,
        now: Instant,
    ) -> Result<Transport, crate::tls::TlsError> {
        let Some(target) = &a.tls else {
            return Ok(Transport::Plain(stream));
        };
        let tls = self
            .tls
            .as_ref()
            .ok_or(crate::tls::TlsError::NotConfigured {
                what: "msrp_tls is off",
            })?;
        let name = crate::tls::config::server_name(&target.host)?;
        let config = tls.client_config(&target.fingerprints)?;
        let deadline = now
            + Duration::from_millis(self.cfg.connect_timeout_ms)
            + Duration::from_millis(self.cfg.tls_handshake_timeout_ms);
        Ok(Transport::Tls(Box::new(TlsStream::connect(
            stream, config, name, deadline,
        )?)))
    }

    /// A connection we opened: plain or TLS as the delivery asks, then on the I/O pool.
    fn attach_dialed(&self, a: Attach, stream: mio::net::TcpStream) {
        match self.transport(&a, stream, Instant::now()) {
            Ok(t) => self.attach(a, t, FrameDecoder::new(Default::default())),
            Err(e) => {
                // Nothing was written: the core hears of it like any other outcome.
                let _ = self.outcomes.send((
                    a.delivery.0,
                    DeliveryOutcome::Failed {
                        code: None,
                        reason: format!("TLS: {e}"),
                    },
                ));
            }
        }
    }

    /// Puts the connection of a participant sending a file (offer_in) on the I/O pool, once it
    /// proved the TLS its offer asked for.
    fn attach_incoming(
        &self,
        slot: Box<super::offer_in::Slot>,
        stream: Transport,
        decoder: FrameDecoder,
        first: Message,
    ) {
        if let Some((host, fingerprints)) = &slot.tls {
            let checked = match (stream.tls(), &self.tls) {
                (Some(s), Some(ours)) => ours
                    .check_accepted(s, host, fingerprints)
                    .map_err(|e| format!("TLS: {e}")),
                _ => Err(
                    "the participant connected without TLS although its offer asked for msrps"
                        .into(),
                ),
            };
            if let Err(reason) = checked {
                self.logger.warn(
                    "engine",
                    format_args!("transfer {}: {reason}", slot.transfer),
                );
                self.sessions.finished(&slot.dialog);
                slot.upload.abort_with(&reason);
                return;
            }
        }
        let idle = Duration::from_millis(self.cfg.transaction_timeout_ms.saturating_mul(2));
        let conn = super::incoming::IncomingConn::new(
            slot,
            stream,
            decoder,
            first,
            self.sessions.clone(),
            self.logger.clone(),
            idle,
        );
        self.io.add(Guarded::new(
            Box::new(conn),
            self.logger.clone(),
            "the connection of a file from a participant",
        ));
    }

    /// Puts a delivery connection on the I/O pool.
    fn attach(&self, a: Attach, stream: Transport, decoder: FrameDecoder) {
        let now = Instant::now();
        let waker = self.io.waker();
        let subscription = a.file.subscribe(Arc::new(move || waker.wake()));
        let parts = DeliveryParts {
            id: a.delivery.0,
            subscription,
            stream,
            connecting: a.connecting,
            connect_timeout: Duration::from_millis(self.cfg.connect_timeout_ms),
            sender: a.sender,
            file: a.file,
            // Responses come a few at a time: the decoder holds no buffer between them.
            decoder: decoder.release_when_idle(),
            progress: a.progress,
            sink: self.outcomes.clone(),
            local_path: a.local_path,
            peer_path: a.peer_path,
            max_owed_responses: self.cfg.msrp_max_owed_responses,
            owed_timeout: Duration::from_millis(self.cfg.transaction_timeout_ms),
            read_ahead: self.read_ahead.clone(),
        };
        let mut conn = DeliveryConn::new(parts, now);
        if let Some(first) = a.first {
            conn.accept_first(first, now);
        }
        self.io.add(Guarded::delivery(
            Box::new(conn),
            self.logger.clone(),
            a.delivery.0,
            self.outcomes.clone(),
        ));
    }
}
