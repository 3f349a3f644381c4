//! The engine: one core thread that owns the decisions (who gets which file, when to offer, when
//! to say bye), the I/O pool that carries the bytes, the spool, and the queue of signalling
//! requests for the host.
//!
//! Every public method is non-blocking for its caller: joins, leaves and SIP outcomes are queued
//! to the core thread (a bounded queue: a full queue is an error, never a wait), and status reads
//! take the roster's lock only for the time of a copy.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, select, tick, unbounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use crate::config::Config;
use crate::msrp::ids::IdGen;
use crate::msrp::parser::FrameDecoder;
use crate::msrp::sender::{Sender as MsrpSender, SenderConfig};
use crate::msrp::{writer, Host, Message, Uri};
use crate::roster::{
    DeliveryId, DeliveryState, Joined, Left, Limits as RosterLimits, Roster, RosterError,
    TransferId, TransferState,
};
use crate::runtime::delivery::{DeliveryConn, DeliveryParts, Outcome, Progress, PHASE_SENDING};
use crate::runtime::io::{Command, Ctx, Flow, Handler, IoPool, IoWaker};
use crate::runtime::log::{Level, Logger};
use crate::runtime::net;
use crate::runtime::spool::{Spool, SpoolError, SpoolFile, SpoolState, SpoolWriter};
use crate::sdp;

/// A request from the engine to the host's SIP stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Send an INVITE with `sdp` to `target_uri`, From `sender_uri`; report the answer with
    /// [`Engine::answered`] or [`Engine::rejected`].
    Offer {
        delivery: u64,
        target_uri: String,
        sdp: String,
        sender_uri: String,
    },
    /// End the file session of `delivery` (BYE after a 2xx; CANCEL or nothing before).
    Bye { delivery: u64 },
}

/// Why an engine call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// A setting is invalid or the engine could not start (listener, spool, threads).
    Start(String),
    /// The engine's queue is full: the caller should retry later; nothing was done.
    Busy,
    /// The engine has stopped.
    Stopped,
    Roster(RosterError),
    Spool(String),
    /// The conference exists but nobody is in it.
    NoParticipants(String),
    UnknownTransfer(u64),
    BadInput(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Start(r) => write!(f, "engine cannot start: {r}"),
            EngineError::Busy => write!(f, "engine queue full, try again"),
            EngineError::Stopped => write!(f, "engine stopped"),
            EngineError::Roster(e) => write!(f, "{e}"),
            EngineError::Spool(e) => write!(f, "spool: {e}"),
            EngineError::NoParticipants(c) => write!(f, "conference {c:?} has no participants"),
            EngineError::UnknownTransfer(t) => write!(f, "unknown transfer {t}"),
            EngineError::BadInput(r) => write!(f, "{r}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<RosterError> for EngineError {
    fn from(e: RosterError) -> Self {
        EngineError::Roster(e)
    }
}

enum Cmd {
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
        delivery: u64,
        sdp: String,
    },
    Rejected {
        delivery: u64,
        code: u16,
    },
    Ended {
        delivery: u64,
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
    /// An accepted connection whose first frame named a session we wait for.
    Accepted {
        delivery: u64,
        stream: mio::net::TcpStream,
        decoder: Box<FrameDecoder>,
        first: Box<Message>,
    },
    Stop,
}

/// The SIP side of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sip {
    /// Reached directly by MSRP URI: no SIP dialog.
    Direct,
    Offered {
        deadline: Instant,
    },
    /// The INVITE was answered with 2xx: a BYE is owed at the end.
    Answered,
    /// No dialog any more (rejected, or ended by the peer).
    Gone,
}

struct Live {
    transfer: TransferId,
    participant: String,
    session_id: Bytes,
    local_uri: Uri,
    sip: Sip,
    progress: Arc<Progress>,
    /// The connection exists on the I/O pool.
    on_io: bool,
    /// Waiting for the participant to connect (it answered `a=setup:active`).
    accept_deadline: Option<Instant>,
}

struct Shared {
    roster: Roster,
    /// Cancelled transfers, checked by their upload writers.
    cancelled: Mutex<std::collections::HashSet<TransferId>>,
}

/// A running engine. Dropping it stops it.
pub struct Engine {
    cfg: Arc<Config>,
    tx: Sender<Cmd>,
    signals: Receiver<Signal>,
    notify: NotifySlot,
    shared: Arc<Shared>,
    spool: Arc<Spool>,
    io: Arc<IoPool>,
    waker: IoWaker,
    logger: Logger,
    msrp_addr: SocketAddr,
    core: Option<JoinHandle<()>>,
}

/// An upload in progress: the HTTP handler (or any producer) appends bytes, then finishes or
/// aborts. Deliveries read the spool while it grows.
pub struct Upload {
    pub transfer: TransferId,
    writer: Option<SpoolWriter>,
    shared: Arc<Shared>,
    tx: Sender<Cmd>,
    waker: IoWaker,
}

impl Upload {
    /// Appends bytes. Fails when the file is too large, the spool is full or the transfer was
    /// cancelled; the upload is then aborted and deliveries that started get `#`.
    pub fn append(&mut self, data: &[u8]) -> Result<(), EngineError> {
        if self.shared.cancelled.lock().contains(&self.transfer) {
            self.abort_inner();
            return Err(EngineError::Spool("transfer cancelled".into()));
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(EngineError::Spool("upload already ended".into()));
        };
        if let Err(e) = w.append(data) {
            let msg = e.to_string();
            self.writer = None;
            self.end(e);
            return Err(EngineError::Spool(msg));
        }
        Ok(())
    }

    /// Records how the upload ended and tells the deliveries (spool state) and the core thread
    /// (deliveries not yet connected).
    fn publish_end(&self, state: TransferState, size: Option<u64>) {
        let _ = self
            .shared
            .roster
            .set_transfer_state(self.transfer, state, size);
        self.waker.wake();
        let _ = self.tx.send(Cmd::UploadEnded {
            transfer: self.transfer,
        });
    }

    fn end(&mut self, e: SpoolError) {
        let state = match e {
            SpoolError::TooLarge { limit } => TransferState::TooLarge { limit },
            other => TransferState::Aborted {
                reason: other.to_string(),
            },
        };
        self.publish_end(state, None);
    }

    fn abort_inner(&mut self) {
        if let Some(w) = self.writer.take() {
            let size = w.written();
            w.abort();
            self.publish_end(
                TransferState::Aborted {
                    reason: "upload aborted".into(),
                },
                Some(size),
            );
        }
    }

    /// The whole file arrived.
    pub fn finish(mut self) -> Result<[u8; 20], EngineError> {
        let Some(w) = self.writer.take() else {
            return Err(EngineError::Spool("upload already ended".into()));
        };
        let size = w.written();
        let sha1 = match w.finish() {
            Ok(sha1) => sha1,
            Err(e) => {
                // Without this the transfer would stay "receiving" and its deliveries wait.
                self.publish_end(
                    TransferState::Aborted {
                        reason: e.to_string(),
                    },
                    Some(size),
                );
                return Err(EngineError::Spool(e.to_string()));
            }
        };
        self.publish_end(TransferState::Complete { sha1 }, Some(size));
        Ok(sha1)
    }

    /// The upload broke off (client went away, bad body): deliveries are aborted.
    pub fn abort(mut self) {
        self.abort_inner();
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.writer.as_ref().map(|w| w.written()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.abort_inner();
    }
}

const QUEUE: usize = 65_536;

/// Where the host's "a signal is waiting" hook lives.
type NotifySlot = Arc<Mutex<Option<Arc<dyn Fn() + Send + Sync>>>>;

impl Engine {
    /// Starts the engine's threads (core and I/O pool) and binds the MSRP listener. Call it in
    /// the process that is to own the threads (in Kamailio: the dedicated engine process, never
    /// before the fork).
    pub fn start(cfg: Config) -> Result<Engine, EngineError> {
        let logger = Logger::stderr(cfg.log_level);
        Engine::start_with_logger(cfg, logger)
    }

    /// [`Engine::start`] with the host's logger (a queue the host drains, for the C ABI).
    pub fn start_with_logger(cfg: Config, logger: Logger) -> Result<Engine, EngineError> {
        cfg.validate()
            .map_err(|e| EngineError::Start(e.to_string()))?;
        let cfg = Arc::new(cfg);
        let spool = Arc::new(
            Spool::open(&cfg.spool_dir, cfg.spool_max_bytes, cfg.max_file_bytes)
                .map_err(|e| EngineError::Start(format!("spool_dir {:?}: {e}", cfg.spool_dir)))?,
        );
        let threads = if cfg.io_threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            cfg.io_threads
        };
        let io = Arc::new(
            IoPool::start(threads).map_err(|e| EngineError::Start(format!("I/O threads: {e}")))?,
        );
        let listener = net::listen(cfg.msrp_listen)
            .map_err(|e| EngineError::Start(format!("msrp_listen {}: {e}", cfg.msrp_listen)))?;
        let msrp_addr = listener
            .local_addr()
            .map_err(|e| EngineError::Start(format!("msrp_listen: {e}")))?;
        let shared = Arc::new(Shared {
            roster: Roster::new(RosterLimits {
                max_conferences: cfg.max_conferences,
                max_participants_per_conference: cfg.max_participants_per_conference,
                ..RosterLimits::default()
            }),
            cancelled: Mutex::new(Default::default()),
        });
        let (tx, rx) = bounded(QUEUE);
        let (sig_tx, sig_rx) = unbounded();
        let (out_tx, out_rx) = unbounded();
        let notify: NotifySlot = Arc::new(Mutex::new(None));
        let waiting: Arc<Mutex<HashMap<Bytes, u64>>> = Arc::new(Mutex::new(HashMap::new()));
        io.add(Box::new(Listener {
            listener,
            waiting: waiting.clone(),
            tx: tx.clone(),
            logger: logger.clone(),
        }));
        let (advertise_host, advertise_port) = advertise(&cfg, msrp_addr);
        let core = Core {
            cfg: cfg.clone(),
            shared: shared.clone(),
            spool: spool.clone(),
            io: io.clone(),
            logger: logger.clone(),
            ids: IdGen::new().map_err(|e| EngineError::Start(format!("no OS randomness: {e}")))?,
            files: HashMap::new(),
            live: HashMap::new(),
            direct: HashMap::new(),
            signals: sig_tx,
            notify: notify.clone(),
            outcomes: out_tx,
            waiting,
            msrp_addr,
            advertise_host,
            advertise_port,
        };
        let waker = io.waker();
        let handle = std::thread::Builder::new()
            .name("msrpcast-core".into())
            .spawn(move || core.run(rx, out_rx))
            .map_err(|e| EngineError::Start(format!("core thread: {e}")))?;
        logger.log(
            Level::Info,
            "engine",
            format_args!(
                "started: MSRP on {msrp_addr}, {threads} I/O threads, spool {:?}",
                cfg.spool_dir
            ),
        );
        Ok(Engine {
            cfg,
            tx,
            signals: sig_rx,
            notify,
            shared,
            spool,
            io,
            waker,
            logger,
            msrp_addr,
            core: Some(handle),
        })
    }

    fn send(&self, cmd: Cmd) -> Result<(), EngineError> {
        match self.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(EngineError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Stopped),
        }
    }

    /// A participant joined a conference; file INVITEs go to `target_uri`. Idempotent.
    pub fn join(
        &self,
        conference: &str,
        participant: &str,
        target_uri: &str,
        display: Option<&str>,
    ) -> Result<(), EngineError> {
        if conference.is_empty() || participant.is_empty() || target_uri.is_empty() {
            return Err(EngineError::BadInput(
                "conference, participant and target must not be empty".into(),
            ));
        }
        self.send(Cmd::Join {
            conference: conference.into(),
            participant: participant.into(),
            target: target_uri.into(),
            display: display.map(Into::into),
            direct: None,
        })
    }

    /// A participant reached directly at an MSRP URI (no SIP, no SDP): `msrpcast serve` and tests.
    pub fn join_direct(
        &self,
        conference: &str,
        participant: &str,
        msrp_uri: &str,
    ) -> Result<(), EngineError> {
        // One URI, or a space-separated path (relays first, RFC 4976): the whole list is the
        // To-Path and the connection goes to its first URI.
        let uri = crate::msrp::uri::parse_path(&Bytes::copy_from_slice(msrp_uri.trim().as_bytes()))
            .map_err(|e| EngineError::BadInput(format!("bad MSRP URI {msrp_uri:?}: {e}")))?;
        self.send(Cmd::Join {
            conference: conference.into(),
            participant: participant.into(),
            target: msrp_uri.into(),
            display: None,
            direct: Some(uri),
        })
    }

    /// A participant left. Idempotent. Its running deliveries are aborted.
    pub fn leave(&self, conference: &str, participant: &str) -> Result<(), EngineError> {
        self.send(Cmd::Leave {
            conference: conference.into(),
            participant: participant.into(),
        })
    }

    /// The file INVITE of `delivery` was answered 2xx with this SDP.
    pub fn answered(&self, delivery: u64, sdp: &str) -> Result<(), EngineError> {
        self.send(Cmd::Answered {
            delivery,
            sdp: sdp.into(),
        })
    }

    /// The file INVITE of `delivery` failed with this SIP code (408 for a timeout).
    pub fn rejected(&self, delivery: u64, sip_code: u16) -> Result<(), EngineError> {
        self.send(Cmd::Rejected {
            delivery,
            code: sip_code,
        })
    }

    /// The file session's dialog ended (BYE received, or our BYE completed).
    pub fn ended(&self, delivery: u64) -> Result<(), EngineError> {
        self.send(Cmd::Ended { delivery })
    }

    /// Starts an upload for `conference`. Fails when the conference is unknown, empty, or the
    /// spool refuses the file.
    pub fn upload(
        &self,
        conference: &str,
        name: &str,
        content_type: &str,
        declared_size: Option<u64>,
    ) -> Result<Upload, EngineError> {
        let conf = self.shared.roster.conference(conference).ok_or_else(|| {
            EngineError::Roster(RosterError::UnknownConference(conference.into()))
        })?;
        if conf.participants.is_empty() {
            return Err(EngineError::NoParticipants(conference.into()));
        }
        if let Some(size) = declared_size {
            if size > self.cfg.max_file_bytes {
                return Err(EngineError::Spool(format!(
                    "file of {size} bytes exceeds max_file_bytes {}",
                    self.cfg.max_file_bytes
                )));
            }
        }
        let transfer =
            self.shared
                .roster
                .add_transfer(conference, name, content_type, declared_size)?;
        let (writer, file) = match self.spool.create(&transfer.to_string()) {
            Ok(x) => x,
            Err(e) => {
                let _ = self.shared.roster.set_transfer_state(
                    transfer,
                    TransferState::Aborted {
                        reason: e.to_string(),
                    },
                    Some(0),
                );
                return Err(EngineError::Spool(e.to_string()));
            }
        };
        self.send(Cmd::NewTransfer { transfer, file })?;
        self.logger.log(
            Level::Info,
            "engine",
            format_args!("transfer {transfer}: upload of {name:?} ({content_type}) to conference {conference:?} started"),
        );
        Ok(Upload {
            transfer,
            writer: Some(writer),
            shared: self.shared.clone(),
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        })
    }

    /// Cancels a transfer: the upload stops, every delivery is aborted with `#` and `Bye`.
    pub fn cancel(&self, transfer: u64) -> Result<(), EngineError> {
        let id = TransferId(transfer);
        if self.shared.roster.transfer(id).is_none() {
            return Err(EngineError::UnknownTransfer(transfer));
        }
        self.shared.cancelled.lock().insert(id);
        self.send(Cmd::Cancel { transfer: id })
    }

    /// The next request for the host, if any. Never blocks.
    pub fn next_signal(&self) -> Option<Signal> {
        self.signals.try_recv().ok()
    }

    /// The signal queue, for hosts that want to block or select on it.
    pub fn signals(&self) -> &Receiver<Signal> {
        &self.signals
    }

    /// A hook called (from an engine thread) after each signal is queued: the C ABI uses it to
    /// make its file descriptor readable. It must be cheap and must not call into the host.
    pub fn set_signal_notify(&self, f: Arc<dyn Fn() + Send + Sync>) {
        *self.notify.lock() = Some(f);
    }

    pub fn roster(&self) -> &Roster {
        &self.shared.roster
    }

    /// The address the MSRP listener is bound to.
    pub fn msrp_addr(&self) -> SocketAddr {
        self.msrp_addr
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn logger(&self) -> &Logger {
        &self.logger
    }

    /// Handlers per I/O thread.
    pub fn io_loads(&self) -> Vec<usize> {
        self.io.loads()
    }

    /// Stops the engine: running deliveries are aborted (`#`), spool files removed, threads
    /// joined.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(h) = self.core.take() {
            let _ = self.tx.send(Cmd::Stop);
            let _ = h.join();
            self.logger
                .log(Level::Info, "engine", format_args!("stopped"));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// The host and port for our `a=path` URIs: `msrp_advertise` when set, else the listen address.
fn advertise(cfg: &Config, bound: SocketAddr) -> (String, u16) {
    match &cfg.msrp_advertise {
        Some(a) => {
            let host = if a.host.contains(':') {
                format!("[{}]", a.host)
            } else {
                a.host.clone()
            };
            (host, a.port.unwrap_or(bound.port()))
        }
        None => match bound {
            SocketAddr::V4(v) => (v.ip().to_string(), v.port()),
            SocketAddr::V6(v) => (format!("[{}]", v.ip()), v.port()),
        },
    }
}

struct Core {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    spool: Arc<Spool>,
    io: Arc<IoPool>,
    logger: Logger,
    ids: IdGen,
    files: HashMap<TransferId, Arc<SpoolFile>>,
    live: HashMap<u64, Live>,
    direct: HashMap<(String, String), Vec<Uri>>,
    signals: Sender<Signal>,
    notify: NotifySlot,
    outcomes: Sender<(u64, Outcome)>,
    waiting: Arc<Mutex<HashMap<Bytes, u64>>>,
    msrp_addr: SocketAddr,
    advertise_host: String,
    advertise_port: u16,
}

impl Core {
    fn run(mut self, rx: Receiver<Cmd>, outcomes: Receiver<(u64, Outcome)>) {
        let ticker = tick(Duration::from_millis(200));
        loop {
            select! {
                recv(rx) -> cmd => match cmd {
                    Ok(Cmd::Stop) | Err(_) => break,
                    Ok(cmd) => self.handle(cmd),
                },
                recv(outcomes) -> o => if let Ok((d, o)) = o { self.outcome(d, o) },
                recv(ticker) -> _ => self.tick(),
            }
        }
        self.shutdown();
    }

    fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        self.logger.log(level, "engine", args);
    }

    fn signal(&self, s: Signal) {
        let _ = self.signals.send(s);
        if let Some(f) = self.notify.lock().clone() {
            f();
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join {
                conference,
                participant,
                target,
                display,
                direct,
            } => self.join(conference, participant, target, display, direct),
            Cmd::Leave {
                conference,
                participant,
            } => self.leave(&conference, &participant),
            Cmd::Answered { delivery, sdp } => self.answered(delivery, &sdp),
            Cmd::Rejected { delivery, code } => {
                if let Some(l) = self.live.get_mut(&delivery) {
                    l.sip = Sip::Gone;
                    self.fail(
                        delivery,
                        Some(code),
                        format!("file INVITE rejected with {code}"),
                    );
                }
            }
            Cmd::Ended { delivery } => {
                if let Some(l) = self.live.get_mut(&delivery) {
                    l.sip = Sip::Gone;
                    if l.on_io {
                        self.io.command(
                            delivery,
                            Command::Abort {
                                reason: "file session ended by the participant".into(),
                                code: 0,
                            },
                        );
                    } else {
                        self.fail(
                            delivery,
                            None,
                            "file session ended before it started".into(),
                        );
                    }
                }
            }
            Cmd::NewTransfer { transfer, file } => {
                self.files.insert(transfer, file);
                if self.shared.cancelled.lock().contains(&transfer) {
                    // Cancelled before the engine got to it: nobody is offered the file.
                    return;
                }
                let Some(t) = self.shared.roster.transfer(transfer) else {
                    return;
                };
                for p in self.shared.roster.participants(&t.conference) {
                    self.deliver(transfer, &p.key);
                }
            }
            Cmd::UploadEnded { transfer } => {
                if let Some(t) = self.shared.roster.transfer(transfer) {
                    self.log(
                        Level::Info,
                        format_args!(
                            "transfer {transfer}: upload {} ({} bytes)",
                            t.state.name(),
                            t.size
                        ),
                    );
                    if t.state.is_finished() && !matches!(t.state, TransferState::Complete { .. }) {
                        // Deliveries not yet on the wire end here; those on it see the spool
                        // state and send `#`.
                        let pending: Vec<u64> = self
                            .live
                            .iter()
                            .filter(|(_, l)| l.transfer == transfer && !l.on_io)
                            .map(|(d, _)| *d)
                            .collect();
                        for d in pending {
                            self.fail(d, None, "upload aborted".into());
                        }
                    }
                }
            }
            Cmd::Cancel { transfer } => self.cancel(transfer),
            Cmd::Accepted {
                delivery,
                stream,
                decoder,
                first,
            } => self.accepted(delivery, stream, *decoder, *first),
            Cmd::Stop => {}
        }
    }

    fn join(
        &mut self,
        conference: String,
        participant: String,
        target: String,
        display: Option<String>,
        direct: Option<Vec<Uri>>,
    ) {
        match self
            .shared
            .roster
            .join(&conference, &participant, &target, display.as_deref())
        {
            Ok(Joined::New { .. }) => {
                self.log(
                    Level::Info,
                    format_args!("{participant:?} joined conference {conference:?} ({target})"),
                );
                if let Some(u) = direct {
                    self.direct
                        .insert((conference.clone(), participant.clone()), u);
                }
                if self.cfg.offer_to_late_joiners {
                    for t in self.shared.roster.transfers_of(&conference) {
                        let usable = matches!(
                            t.state,
                            TransferState::Complete { .. } | TransferState::Receiving
                        );
                        if usable && self.files.contains_key(&t.id) {
                            self.deliver(t.id, &participant);
                        }
                    }
                }
            }
            Ok(Joined::Already { .. }) => {
                if let Some(u) = direct {
                    self.direct.insert((conference, participant), u);
                }
            }
            Err(e) => self.log(
                Level::Warn,
                format_args!("join of {participant:?} to {conference:?} refused: {e}"),
            ),
        }
    }

    fn leave(&mut self, conference: &str, participant: &str) {
        match self.shared.roster.leave(conference, participant) {
            Left::NotJoined => {}
            Left::Left { cancelled, ended } => {
                self.log(
                    Level::Info,
                    format_args!("{participant:?} left conference {conference:?}"),
                );
                self.direct
                    .remove(&(conference.to_string(), participant.to_string()));
                for d in cancelled {
                    self.abort_delivery(d.0, "participant left the conference");
                }
                if let Some(ended) = ended {
                    self.log(Level::Info, format_args!("conference {:?} ended", ended.id));
                    for t in ended.transfers {
                        if let Some(f) = self.files.remove(&t) {
                            self.spool.remove(&f);
                        }
                    }
                }
            }
        }
    }

    /// Aborts a delivery that the roster already marked cancelled (or that is being cancelled).
    fn abort_delivery(&mut self, d: u64, reason: &str) {
        let Some(l) = self.live.get(&d) else {
            return;
        };
        if l.on_io {
            self.io.command(
                d,
                Command::Abort {
                    reason: reason.into(),
                    code: 0,
                },
            );
        } else {
            let l = self.live.remove(&d);
            if let Some(l) = l {
                self.waiting.lock().remove(&l.session_id);
                if matches!(l.sip, Sip::Offered { .. } | Sip::Answered) {
                    self.signal(Signal::Bye { delivery: d });
                }
            }
        }
    }

    fn cancel(&mut self, transfer: TransferId) {
        let Some(t) = self.shared.roster.transfer(transfer) else {
            return;
        };
        self.log(Level::Info, format_args!("transfer {transfer}: cancelled"));
        for d in t.deliveries {
            if let Ok(true) = self
                .shared
                .roster
                .set_delivery_state(d.id, DeliveryState::Cancelled)
            {
                self.abort_delivery(d.id.0, "transfer cancelled");
            }
        }
    }

    fn local_uri(&mut self) -> (Bytes, Uri) {
        let session_id = self.ids.session_id();
        let text = format!(
            "msrp://{}:{}/{};tcp",
            self.advertise_host,
            self.advertise_port,
            String::from_utf8_lossy(&session_id)
        );
        let uri = match Uri::parse_slice(text.as_bytes()) {
            Ok(u) => u,
            Err(_) => Uri {
                secure: false,
                userinfo: None,
                host: Host::Name(Bytes::from(self.advertise_host.clone())),
                port: Some(self.advertise_port),
                session_id: session_id.clone(),
                transport: Bytes::from_static(b"tcp"),
                params: Vec::new(),
            },
        };
        (session_id, uri)
    }

    /// Starts the delivery of `transfer` to `participant`: an offer through the host, or a
    /// direct connection.
    fn deliver(&mut self, transfer: TransferId, participant: &str) {
        let (d, fresh) = match self.shared.roster.add_delivery(transfer, participant) {
            Ok(x) => x,
            Err(e) => {
                self.log(Level::Warn, format_args!("no delivery: {e}"));
                return;
            }
        };
        if !fresh || self.live.contains_key(&d.0) {
            return;
        }
        let Some(t) = self.shared.roster.transfer(transfer) else {
            return;
        };
        let (session_id, local_uri) = self.local_uri();
        let key = (t.conference.clone(), participant.to_string());
        let direct = self.direct.get(&key).cloned();
        let now = Instant::now();
        self.live.insert(
            d.0,
            Live {
                transfer,
                participant: participant.to_string(),
                session_id,
                local_uri: local_uri.clone(),
                sip: if direct.is_some() {
                    Sip::Direct
                } else {
                    Sip::Offered {
                        deadline: now + Duration::from_millis(self.cfg.answer_timeout_ms),
                    }
                },
                progress: Arc::new(Progress::default()),
                on_io: false,
                accept_deadline: None,
            },
        );
        if let Some(uri) = direct {
            let _ = self
                .shared
                .roster
                .set_delivery_state(d, DeliveryState::Connecting);
            self.connect(d.0, uri);
            return;
        }
        let target = self
            .shared
            .roster
            .participants(&t.conference)
            .into_iter()
            .find(|p| p.key == participant)
            .map(|p| p.target);
        let Some(target) = target else {
            self.fail(d.0, None, "participant has no target".into());
            return;
        };
        let sha1 = match self.files.get(&transfer).map(|f| f.state()) {
            Some(SpoolState::Complete { sha1, .. }) => Some(sha1),
            _ => None,
        };
        let size = match &t.state {
            TransferState::Complete { .. } => Some(t.size),
            _ => t.declared_size,
        };
        let offer = sdp::FileOffer {
            name: t.name.clone(),
            content_type: if t.content_type.is_empty() {
                "application/octet-stream".into()
            } else {
                t.content_type.clone()
            },
            size,
            sha1,
            file_transfer_id: String::from_utf8_lossy(&self.ids.message_id()).into_owned(),
            disposition: "attachment".into(),
            description: None,
        };
        let address = match self.advertise_host.trim_matches(['[', ']']).parse() {
            Ok(a) => a,
            Err(_) => self.msrp_addr.ip(),
        };
        let params = sdp::OfferParams {
            session_version: now.elapsed().as_secs() + d.0,
            origin_user: "msrpcast".into(),
            address,
            port: self.advertise_port,
            path: local_uri,
            accept_types: self.cfg.accept_types.clone(),
            max_size: None,
        };
        let body = sdp::build_offer(&params, &offer);
        let _ = self
            .shared
            .roster
            .set_delivery_state(d, DeliveryState::Offering);
        self.log(
            Level::Info,
            format_args!(
                "delivery {d}: offering transfer {transfer} to {participant:?} at {target}"
            ),
        );
        self.signal(Signal::Offer {
            delivery: d.0,
            target_uri: target,
            sdp: body,
            sender_uri: self.cfg.sender_uri.clone(),
        });
    }

    fn answered(&mut self, d: u64, body: &str) {
        let Some(l) = self.live.get_mut(&d) else {
            // Left or cancelled meanwhile: the dialog still needs its BYE.
            self.signal(Signal::Bye { delivery: d });
            return;
        };
        l.sip = Sip::Answered;
        let answer = match sdp::parse_answer(body) {
            Ok(a) => a,
            Err(e) => {
                self.fail(d, Some(488), format!("unusable SDP answer: {e}"));
                return;
            }
        };
        let _ = self
            .shared
            .roster
            .set_delivery_state(DeliveryId(d), DeliveryState::Connecting);
        if answer.setup == sdp::Setup::Active {
            // The participant connects to us; its first frame names our session.
            let l = self.live.get_mut(&d);
            if let Some(l) = l {
                l.accept_deadline =
                    Some(Instant::now() + Duration::from_millis(self.cfg.connect_timeout_ms));
                self.waiting.lock().insert(l.session_id.clone(), d);
            }
            return;
        }
        self.connect(d, answer.path);
    }

    fn sender_for(&mut self, l_uri: &Uri, to_path: &[Uri], t: TransferId) -> MsrpSender {
        let cfg = SenderConfig {
            chunk_bytes: usize::try_from(self.cfg.chunk_bytes).unwrap_or(usize::MAX),
            window_bytes: self.cfg.window_bytes,
            transaction_timeout: Duration::from_millis(self.cfg.transaction_timeout_ms),
            report_timeout: Duration::from_millis(self.cfg.report_timeout_ms),
            success_report: self.cfg.success_report,
            bind_with_empty_send: self.cfg.bind_empty_send,
            ..SenderConfig::default()
        };
        let transfer = self.shared.roster.transfer(t);
        let ct = transfer
            .as_ref()
            .map(|t| t.content_type.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into());
        let sender = MsrpSender::new(
            cfg,
            to_path,
            std::slice::from_ref(l_uri),
            Bytes::from(ct),
            &mut self.ids,
            Instant::now(),
        );
        // The offered name travels in the chunks too, for receivers that never see the SDP.
        match transfer.filter(|t| !t.name.is_empty()) {
            Some(t) => {
                sender.with_disposition(Bytes::from(crate::msrp::disposition::attachment(&t.name)))
            }
            None => sender,
        }
    }

    fn connect(&mut self, d: u64, to_path: Vec<Uri>) {
        let Some(l) = self.live.get(&d) else {
            return;
        };
        let Some(first) = to_path.first() else {
            self.fail(d, None, "empty MSRP path".into());
            return;
        };
        let peer = match net::resolve(first) {
            Ok(a) => a,
            Err(e) => {
                self.fail(d, None, format!("cannot resolve {first}: {e}"));
                return;
            }
        };
        let local = if self.cfg.msrp_reuse_port && self.msrp_addr.is_ipv4() == peer.is_ipv4() {
            Some(self.msrp_addr)
        } else {
            None
        };
        let stream = match net::connect(peer, local).or_else(|e| {
            if local.is_some() {
                net::connect(peer, None)
            } else {
                Err(e)
            }
        }) {
            Ok(s) => s,
            Err(e) => {
                self.fail(d, None, format!("cannot connect to {peer}: {e}"));
                return;
            }
        };
        let (mut l_uri, transfer, progress) = (l.local_uri.clone(), l.transfer, l.progress.clone());
        // Our From-Path must name our end of the connection: relays (Kamailio's msrp.so) send
        // REPORTs back to the host:port of our URI. When the listen port could not be used (a
        // second connection to the same relay would repeat the first one's address 4-tuple),
        // name the port actually used — where no SDP a=path promised the listen port: direct
        // deliveries and paths through a relay.
        if matches!(l.sip, Sip::Direct) || to_path.len() > 1 {
            if let Ok(a) = stream.local_addr() {
                if a.port() != l_uri.effective_port() {
                    l_uri.port = Some(a.port());
                }
            }
        }
        self.start_conn(
            d,
            stream,
            true,
            FrameDecoder::new(Default::default()),
            &to_path,
            l_uri,
            transfer,
            progress,
            None,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn start_conn(
        &mut self,
        d: u64,
        stream: mio::net::TcpStream,
        connecting: bool,
        decoder: FrameDecoder,
        to_path: &[Uri],
        l_uri: Uri,
        transfer: TransferId,
        progress: Arc<Progress>,
        first: Option<Message>,
    ) {
        let Some(file) = self.files.get(&transfer).cloned() else {
            self.fail(d, None, "file no longer spooled".into());
            return;
        };
        let sender = self.sender_for(&l_uri, to_path, transfer);
        let waker = self.io.waker();
        let subscription = file.subscribe(Arc::new(move || waker.wake()));
        let parts = DeliveryParts {
            id: d,
            subscription,
            stream,
            connecting,
            connect_timeout: Duration::from_millis(self.cfg.connect_timeout_ms),
            sender,
            file,
            decoder,
            progress,
            sink: self.outcomes.clone(),
            local_path: writer::render_path(std::slice::from_ref(&l_uri)),
            peer_path: writer::render_path(to_path),
        };
        let mut conn = DeliveryConn::new(parts, Instant::now());
        if let Some(first) = first {
            conn.accept_first(first, Instant::now());
        }
        if let Some(l) = self.live.get_mut(&d) {
            l.on_io = true;
        }
        self.io.add(Box::new(conn));
    }

    fn accepted(
        &mut self,
        d: u64,
        stream: mio::net::TcpStream,
        decoder: FrameDecoder,
        first: Message,
    ) {
        let Some(l) = self.live.get(&d) else {
            return;
        };
        // The peer's From-Path is our To-Path, reversed order semantics per RFC 4975 §7.2.
        let to_path: Vec<Uri> = first.from_path.clone();
        let (l_uri, transfer, progress) = (l.local_uri.clone(), l.transfer, l.progress.clone());
        self.start_conn(
            d,
            stream,
            false,
            decoder,
            &to_path,
            l_uri,
            transfer,
            progress,
            Some(first),
        );
    }

    fn fail(&mut self, d: u64, code: Option<u16>, reason: String) {
        self.log(Level::Warn, format_args!("delivery {d} failed: {reason}"));
        let _ = self
            .shared
            .roster
            .set_delivery_state(DeliveryId(d), DeliveryState::Failed { reason, code });
        if let Some(l) = self.live.remove(&d) {
            self.waiting.lock().remove(&l.session_id);
            if l.on_io {
                self.io.command(
                    d,
                    Command::Abort {
                        reason: "failed".into(),
                        code: 0,
                    },
                );
            }
            if matches!(l.sip, Sip::Offered { .. } | Sip::Answered) {
                self.signal(Signal::Bye { delivery: d });
            }
        }
    }

    fn outcome(&mut self, d: u64, o: Outcome) {
        let Some(l) = self.live.remove(&d) else {
            return;
        };
        self.waiting.lock().remove(&l.session_id);
        match o {
            Outcome::Completed => {
                let total = self
                    .files
                    .get(&l.transfer)
                    .map(|f| f.len())
                    .unwrap_or_default();
                self.log(
                    Level::Info,
                    format_args!(
                        "delivery {d}: transfer {} delivered to {:?} ({total} bytes)",
                        l.transfer, l.participant
                    ),
                );
                let _ = self
                    .shared
                    .roster
                    .set_delivery_state(DeliveryId(d), DeliveryState::Done);
            }
            Outcome::Failed { code, reason } => {
                let cancelled = self
                    .shared
                    .roster
                    .delivery(DeliveryId(d))
                    .is_some_and(|s| s.state == DeliveryState::Cancelled);
                self.log(
                    if cancelled { Level::Info } else { Level::Warn },
                    format_args!(
                        "delivery {d}: transfer {} to {:?} {}: {reason}",
                        l.transfer,
                        l.participant,
                        if cancelled { "cancelled" } else { "failed" }
                    ),
                );
                let _ = self.shared.roster.set_delivery_state(
                    DeliveryId(d),
                    DeliveryState::Failed {
                        reason,
                        code: code.filter(|c| *c != 0),
                    },
                );
            }
        }
        if l.sip == Sip::Answered {
            self.signal(Signal::Bye { delivery: d });
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        for (d, l) in &self.live {
            if let Sip::Offered { deadline } = l.sip {
                if now >= deadline {
                    expired.push((*d, Some(408), "no answer to the file INVITE".to_string()));
                    continue;
                }
            }
            if let Some(deadline) = l.accept_deadline {
                if !l.on_io && now >= deadline {
                    expired.push((*d, Some(408), "the participant never connected".to_string()));
                    continue;
                }
            }
            if l.on_io
                && l.progress.phase.load(std::sync::atomic::Ordering::Acquire) == PHASE_SENDING
            {
                let bytes = l.progress.acked.load(std::sync::atomic::Ordering::Acquire);
                let total = match self.files.get(&l.transfer).map(|f| f.state()) {
                    Some(SpoolState::Complete { size, .. }) => Some(size),
                    _ => None,
                };
                let _ = self
                    .shared
                    .roster
                    .set_delivery_state(DeliveryId(*d), DeliveryState::Sending { bytes, total });
            }
        }
        for (d, code, reason) in expired {
            self.fail(d, code, reason);
        }
        for (t, f) in &self.files {
            if matches!(f.state(), SpoolState::Writing) {
                let _ = self.shared.roster.set_transfer_size(*t, f.len());
            }
        }
    }

    fn shutdown(&mut self) {
        let ds: Vec<u64> = self.live.keys().copied().collect();
        for d in ds {
            self.fail(d, Some(503), "engine stopped".into());
        }
        for (_, f) in self.files.drain() {
            self.spool.remove(&f);
        }
    }
}

/// The MSRP listener: accepted connections wait for their first frame, which names the session
/// (the last URI of its To-Path); a known session goes to the engine, anything else is refused.
struct Listener {
    listener: mio::net::TcpListener,
    waiting: Arc<Mutex<HashMap<Bytes, u64>>>,
    tx: Sender<Cmd>,
    logger: Logger,
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
    handoff: Option<(u64, Message)>,
    peer: SocketAddr,
    decoder: FrameDecoder,
    waiting: Arc<Mutex<HashMap<Bytes, u64>>>,
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
