//! The engine: the decisions (who gets which file, when to offer, when to say bye), the I/O pool
//! that carries the bytes, the spool, and the queue of signalling requests for the host.
//!
//! Every public method is non-blocking for its caller: joins, leaves and SIP outcomes are queued
//! to the core thread (a bounded queue: a full queue is an error, never a wait), and status reads
//! take the roster's lock only for the time of a copy.
//!
//! Files: this one is the public API ([`Engine`], [`Signal`], [`EngineError`]); `upload.rs` the
//! [`Upload`] writer; `core.rs` the sans-IO decisions (inputs with `now`, actions out, tested
//! with a virtual clock); `driver.rs` the core thread that feeds the core and carries out its
//! actions; `listener.rs` the MSRP listener and connections awaiting their first frame;
//! `persist.rs` the on-disk records that let complete files survive a restart.

mod core;
mod driver;
mod incoming;
mod listener;
mod offer_in;
mod persist;
mod upload;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use crate::config::Config;
use crate::roster::{DeliveryId, Origin, Roster, RosterError, TransferId, TransferState};
use crate::runtime::fault::Guarded;
use crate::runtime::io::{IoPool, IoWaker};
use crate::runtime::log::{Level, Logger};
use crate::runtime::net;
use crate::runtime::readahead::ReadAhead;
use crate::runtime::spool::{sanitize_id, Spool, SpoolFile};
use crate::tls::{Tls, TlsSettings, Verify};

use self::core::{Core, Shared};
use self::driver::{Cmd, Driver, Resolve};
use self::listener::Listener;
pub use self::offer_in::{OfferInAnswer, OfferInError};
use self::persist::{Job, Persister, Record};
pub use self::upload::Upload;

/// A request from the engine to the host's SIP stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Send an INVITE with `sdp` to `target_uri`, From `sender_uri`; report the answer with
    /// [`Engine::answered`] or [`Engine::rejected`].
    Offer {
        delivery: DeliveryId,
        target_uri: String,
        sdp: String,
        sender_uri: String,
    },
    /// End the file session of `delivery` (BYE after a 2xx; CANCEL or nothing before).
    Bye { delivery: DeliveryId },
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
    UnknownTransfer(TransferId),
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
    /// MSRP TLS (`msrp_tls`), shared with the core; `None` when off.
    tls: Option<Arc<Tls>>,
    core: Option<JoinHandle<()>>,
    /// Writes the records of complete files (`spool_persist`).
    persister: Option<Persister>,
    /// Files from participants being received (offer_in).
    sessions: Arc<offer_in::Sessions>,
    /// The deliveries' read-ahead budget (`spool_read_ahead_bytes`).
    read_ahead: Arc<ReadAhead>,
}

/// Conference, participant and display names end up in logs and status JSON: no control
/// characters.
fn check_names(
    conference: &str,
    participant: &str,
    display: Option<&str>,
) -> Result<(), EngineError> {
    let fields = [("conference", conference), ("participant", participant)];
    let shown = display.map(|d| ("display name", d));
    for (what, v) in fields.into_iter().chain(shown) {
        if v.contains(|c: char| c.is_ascii_control()) {
            return Err(EngineError::BadInput(format!(
                "{what} {v:?} contains a control character"
            )));
        }
    }
    Ok(())
}

/// The record thread when `spool_persist` is on, handed the complete files of an earlier run
/// to check against their SHA-1 (each comes back to the core as a restored transfer or goes).
fn start_persister(
    cfg: &Config,
    spool: &Arc<Spool>,
    tx: &Sender<Cmd>,
    logger: &Logger,
    restored: Vec<Restored>,
) -> Result<Option<Persister>, EngineError> {
    if !cfg.spool_persist {
        return Ok(None);
    }
    let p = Persister::start(
        cfg.spool_dir.clone(),
        spool.clone(),
        tx.clone(),
        logger.clone(),
    )
    .map_err(|e| start_error("record thread", &e))?;
    if !restored.is_empty() {
        logger.info(
            "engine",
            format_args!(
                "{} complete files of an earlier run found; checking their SHA-1",
                restored.len()
            ),
        );
    }
    for (rec, file) in restored {
        let _ = p.tx.send(Job::Verify(Box::new(rec), file));
    }
    Ok(Some(p))
}

fn start_error(what: &str, e: &dyn fmt::Display) -> EngineError {
    EngineError::Start(format!("{what}: {e}"))
}

/// What the engine opens before its threads start.
struct Resources {
    /// MSRP TLS (`msrp_tls`): its certificate, key and CA files read.
    tls: Option<Arc<Tls>>,
    spool: Arc<Spool>,
    io: Arc<IoPool>,
    listener: mio::net::TcpListener,
    msrp_addr: SocketAddr,
    /// Complete files of an earlier run, to be checked and restored (`spool_persist`).
    restored: Vec<Restored>,
}

/// A complete file of an earlier run and its record.
type Restored = (Record, Arc<SpoolFile>);

/// Opens the spool folder. With `spool_persist` the complete files of an earlier run (those
/// with a good record) are kept and opened again; every other spool file of an earlier run is
/// removed, with a log line each. Without it, records of an earlier run are removed too.
fn open_spool(cfg: &Config, logger: &Logger) -> Result<(Spool, Vec<Restored>), EngineError> {
    let mut records = Vec::new();
    let spool = Spool::open_keeping(
        &cfg.spool_dir,
        cfg.spool_max_bytes,
        cfg.max_file_bytes,
        |dir| {
            records = persist::load(dir, logger);
            if !cfg.spool_persist {
                for r in records.drain(..) {
                    let _ = persist::remove(dir, &r.spool);
                    logger.info(
                        "engine",
                        format_args!(
                            "record {} of an earlier run removed (spool_persist is off)",
                            r.file_name()
                        ),
                    );
                }
            }
            records.iter().map(|r| r.spool.clone()).collect()
        },
    )
    .map_err(|e| start_error(&format!("spool_dir {:?}", cfg.spool_dir), &e))?;
    let log = logger.clone();
    spool.set_hash_nice(
        i32::from(cfg.spool_hash_nice),
        Box::new(move |e| {
            log.warn(
                "spool",
                format_args!(
                    "cannot lower the priority of a hashing thread (spool_hash_nice): {e}"
                ),
            )
        }),
    );
    for name in spool.stale_names() {
        logger.info(
            "engine",
            format_args!(
                "spool file {name} of an earlier run removed ({})",
                if cfg.spool_persist {
                    "no complete record: a partial upload"
                } else {
                    "spool_persist is off"
                }
            ),
        );
    }
    let mut restored = Vec::new();
    for r in records {
        match spool.restore(&r.spool, &sanitize_id(&r.name), r.size, r.sha1) {
            Ok(f) => restored.push((r, f)),
            Err(e) => {
                logger.log(
                    Level::Error,
                    "engine",
                    format_args!(
                        "record {}: file {:?} of conference {:?} not restored: {e}; removed",
                        r.file_name(),
                        r.name,
                        r.conference
                    ),
                );
                let _ = std::fs::remove_file(spool.dir().join(&r.spool));
                let _ = persist::remove(spool.dir(), &r.spool);
            }
        }
    }
    Ok((spool, restored))
}

impl Resources {
    /// Checks the settings, then reads the TLS files, opens the spool, starts the I/O threads
    /// and binds the MSRP listener: everything that can fail before the core thread starts.
    fn open(cfg: &Config, logger: &Logger) -> Result<Resources, EngineError> {
        cfg.validate()
            .map_err(|e| EngineError::Start(e.to_string()))?;
        let tls = load_msrp_tls(cfg, logger).map_err(|e| start_error("msrp_tls", &e))?;
        let (spool, restored) = open_spool(cfg, logger)?;
        let threads = match cfg.io_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let io =
            IoPool::start(threads, logger.clone()).map_err(|e| start_error("I/O threads", &e))?;
        let listener = net::listen(cfg.msrp_listen)
            .map_err(|e| start_error(&format!("msrp_listen {}", cfg.msrp_listen), &e))?;
        let msrp_addr = listener
            .local_addr()
            .map_err(|e| start_error("msrp_listen", &e))?;
        let spool_dir = &cfg.spool_dir;
        let what = format!("MSRP on {msrp_addr}, {threads} I/O threads, spool {spool_dir:?}");
        logger.info("engine", format_args!("starting: {what}"));
        Ok(Resources {
            tls,
            spool: Arc::new(spool),
            io: Arc::new(io),
            listener,
            msrp_addr,
            restored,
        })
    }
}

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
        Engine::start_with_resolver(cfg, logger, Arc::new(net::resolve))
    }

    /// [`Engine::start_with_logger`] with the name resolver given (tests: one that never
    /// answers).
    pub(crate) fn start_with_resolver(
        cfg: Config,
        logger: Logger,
        resolve: Resolve,
    ) -> Result<Engine, EngineError> {
        let opened = Resources::open(&cfg, &logger)?;
        let (tls, spool, io, msrp_addr) = (opened.tls, opened.spool, opened.io, opened.msrp_addr);
        let cfg = Arc::new(cfg);
        let shared = Arc::new(Shared::new(&cfg));
        let (tx, rx) = bounded(cfg.max_queued_commands);
        let (sig_tx, sig_rx) = unbounded();
        let (out_tx, out_rx) = unbounded();
        let notify: NotifySlot = Arc::new(Mutex::new(None));
        let awaited = Arc::new(Mutex::new(HashMap::new()));
        let core = Core::new(
            cfg.clone(),
            shared.clone(),
            awaited.clone(),
            logger.clone(),
            msrp_addr,
        )
        .map_err(|e| start_error("engine core", &e))?
        .with_tls(tls.clone());
        let sessions = Arc::new(offer_in::Sessions::new()?);
        io.add(Guarded::keep(
            Box::new(Listener::new(
                opened.listener,
                awaited,
                tx.clone(),
                logger.clone(),
                &cfg,
                tls.clone(),
                sessions.clone(),
            )),
            logger.clone(),
            "the MSRP listener",
        ));
        let persister = start_persister(&cfg, &spool, &tx, &logger, opened.restored)?;
        let read_ahead = ReadAhead::new(cfg.spool_read_ahead_bytes);
        let driver = Driver {
            core,
            cfg: cfg.clone(),
            io: io.clone(),
            spool: spool.clone(),
            signals: sig_tx,
            notify: notify.clone(),
            outcomes: out_tx,
            msrp_addr,
            tx: tx.clone(),
            resolve,
            lookups: Arc::default(),
            tls: tls.clone(),
            logger: logger.clone(),
            persist: persister.as_ref().map(|p| p.tx.clone()),
            sessions: sessions.clone(),
            read_ahead: read_ahead.clone(),
        };
        let handle = driver
            .spawn(rx, out_rx)
            .map_err(|e| start_error("core thread", &e))?;
        Ok(Engine {
            waker: io.waker(),
            cfg,
            tx,
            signals: sig_rx,
            notify,
            shared,
            spool,
            io,
            logger,
            msrp_addr,
            tls,
            core: Some(handle),
            persister,
            sessions,
            read_ahead,
        })
    }

    /// Reads the MSRP TLS certificate, key and CA files again (a renewed certificate), without
    /// a restart. Running deliveries keep the configuration they started with; new ones use the
    /// new files. On error the previous files stay in use and the error says which file failed.
    pub fn reload_tls(&self) -> Result<(), EngineError> {
        let Some(tls) = &self.tls else {
            return Err(EngineError::BadInput(
                "MSRP TLS is off (msrp_tls): nothing to reload".into(),
            ));
        };
        tls.reload().map_err(|e| {
            EngineError::BadInput(format!("TLS reload failed, old files kept: {e}"))
        })?;
        self.logger.info(
            "engine",
            format_args!(
                "MSRP TLS reloaded{}",
                tls.fingerprint()
                    .map(|f| format!(": certificate {f}"))
                    .unwrap_or_default()
            ),
        );
        Ok(())
    }

    /// True when MSRP TLS (`msrp_tls`) is on.
    pub fn msrp_tls_on(&self) -> bool {
        self.tls.is_some()
    }

    /// The SHA-256 fingerprint of our MSRP TLS certificate, when `msrp_tls` is on.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.tls
            .as_ref()
            .and_then(|t| t.fingerprint())
            .map(|f| f.to_string())
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
        // The target becomes the Request-URI of the host's INVITE: a CR or LF in it would add
        // headers to that request. Names and display names end up in logs and status JSON.
        if target_uri.contains(|c: char| c.is_ascii_control() || c == ' ') {
            return Err(EngineError::BadInput(format!(
                "target {target_uri:?} contains a space or a control character"
            )));
        }
        check_names(conference, participant, display)?;
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
        check_names(conference, participant, None)?;
        // One URI, or a space-separated path (relays first, RFC 4976): the whole list is the
        // To-Path and the connection goes to its first URI.
        let uri = crate::msrp::uri::parse_path(&bytes::Bytes::copy_from_slice(
            msrp_uri.trim().as_bytes(),
        ))
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
    pub fn answered(&self, delivery: DeliveryId, sdp: &str) -> Result<(), EngineError> {
        self.send(Cmd::Answered {
            delivery,
            sdp: sdp.into(),
        })
    }

    /// The file INVITE of `delivery` failed with this SIP code (408 for a timeout).
    pub fn rejected(&self, delivery: DeliveryId, sip_code: u16) -> Result<(), EngineError> {
        self.send(Cmd::Rejected {
            delivery,
            code: sip_code,
        })
    }

    /// The file session's dialog ended (BYE received, or our BYE completed).
    pub fn ended(&self, delivery: DeliveryId) -> Result<(), EngineError> {
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
        self.upload_to(conference, name, content_type, declared_size, None)
    }

    /// As [`Engine::upload`], for the participants `to` only when given: they alone are offered
    /// the file, late joiners never. Every key must be a participant now
    /// (`RosterError::UnknownParticipant` names the first that is not); an empty list is
    /// `RosterError::NoRecipients`.
    pub fn upload_to(
        &self,
        conference: &str,
        name: &str,
        content_type: &str,
        declared_size: Option<u64>,
        to: Option<&[String]>,
    ) -> Result<Upload, EngineError> {
        self.start_upload(conference, name, content_type, declared_size, to, None)
    }

    /// [`Engine::upload_to`] with the file's origin known before any participant is offered it
    /// (a participant's own file is never offered back to it).
    fn start_upload(
        &self,
        conference: &str,
        name: &str,
        content_type: &str,
        declared_size: Option<u64>,
        to: Option<&[String]>,
        origin: Option<Origin>,
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
        let transfer = self.shared.roster.add_transfer_to(
            conference,
            name,
            content_type,
            declared_size,
            to,
        )?;
        if let Some(o) = origin {
            self.shared.roster.set_transfer_origin(transfer, o)?;
        }
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
            format_args!(
                "transfer {transfer}: upload of {name:?} ({content_type}) to {} of conference {conference:?} started",
                match to {
                    Some(keys) => format!("participants {keys:?}"),
                    None => "every participant".to_owned(),
                }
            ),
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
    pub fn cancel(&self, transfer: TransferId) -> Result<(), EngineError> {
        if self.shared.roster.transfer(transfer).is_none() {
            return Err(EngineError::UnknownTransfer(transfer));
        }
        self.shared.cancelled.lock().insert(transfer);
        let _ = self.shared.roster.cancel_transfer(transfer);
        self.send(Cmd::Cancel { transfer })
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

    /// Spool bytes the deliveries hold read ahead: now, and the most ever (at most
    /// `spool_read_ahead_bytes`).
    pub fn read_ahead(&self) -> (u64, u64) {
        (self.read_ahead.held(), self.read_ahead.peak())
    }

    /// Stops the engine: running deliveries are aborted (`#`), spool files removed — but, with
    /// `spool_persist`, the complete files, whose records are brought up to date first — and
    /// threads joined.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(h) = self.core.take() {
            // Uploads whose SHA-1 is still being computed become complete (and get their
            // restart record) before the core stops.
            let hashing = std::mem::take(&mut *self.shared.hashing.lock());
            for j in hashing {
                j.join();
            }
            let _ = self.tx.send(Cmd::Stop);
            let _ = h.join();
            if let Some(p) = self.persister.take() {
                p.finish();
            }
            self.logger
                .log(Level::Info, "engine", format_args!("stopped"));
        }
    }
}

/// The MSRP TLS state when `msrp_tls` is on: certificate, key and roots loaded once (an error
/// names the file). `tls_verify = none` is logged as a warning.
fn load_msrp_tls(cfg: &Config, logger: &Logger) -> Result<Option<Arc<Tls>>, crate::tls::TlsError> {
    if !cfg.msrp_tls {
        return Ok(None);
    }
    let tls = Tls::load(TlsSettings {
        cert: cfg.tls_cert.clone(),
        key: cfg.tls_key.clone(),
        ca: cfg.tls_ca.clone(),
        verify: cfg.tls_verify,
        request_client_cert: true,
        alpn: Vec::new(),
        verify_cache: cfg.tls_verify_cache,
    })?;
    if cfg.tls_verify == Verify::None {
        logger.log(
            Level::Warn,
            "engine",
            format_args!(
                "tls_verify = none: MSRP peers' certificates are not checked; anyone on the path \
                 can pose as a participant"
            ),
        );
    }
    logger.info(
        "engine",
        format_args!(
            "MSRP TLS on (tls_verify = {}){}",
            cfg.tls_verify,
            tls.fingerprint()
                .map(|f| format!(", certificate {f}"))
                .unwrap_or_default()
        ),
    );
    Ok(Some(Arc::new(tls)))
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::DeliveryState;
    use std::time::{Duration, Instant};

    /// A participant whose `a=path` names a host the name server never answers for: the core
    /// thread keeps serving others, and the delivery fails at `connect_timeout_ms` with a reason
    /// that names the host (issue 14, finding 4).
    #[test]
    fn a_name_server_that_never_answers_does_not_hold_up_the_core() {
        let dir = std::env::temp_dir().join(format!("msrpcast-dns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = Config::default();
        cfg.set("spool_dir", dir.to_str().unwrap()).unwrap();
        cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
        cfg.set("io_threads", "1").unwrap();
        cfg.set("connect_timeout_ms", "500").unwrap();
        // Never answers for "hang.test" (gives up after 5 s, when the test is long over).
        let (_keep, never) = crossbeam_channel::bounded::<()>(0);
        let resolve: Resolve = Arc::new(move |uri| match &uri.host {
            crate::msrp::Host::Name(n) if &n[..] == b"hang.test" => {
                let _ = never.recv_timeout(Duration::from_secs(5));
                Err(std::io::Error::other("timed out"))
            }
            _ => net::resolve(uri),
        });
        let e = Engine::start_with_resolver(cfg, Logger::discard(), resolve).unwrap();
        e.join_direct("c", "far", "msrp://hang.test:2855/s1;tcp")
            .unwrap();
        let t0 = Instant::now();
        while e.roster().conference("c").is_none() {
            assert!(t0.elapsed() < Duration::from_secs(5), "join not seen");
            std::thread::yield_now();
        }
        let mut up = e.upload("c", "f.txt", "text/plain", Some(3)).unwrap();
        up.append(b"abc").unwrap();
        let t = up.transfer;
        up.finish().unwrap();

        // The core is free: a later join is offered the file at once.
        let t1 = Instant::now();
        e.join("c", "near", "sip:near@127.0.0.1", None).unwrap();
        let offer = e.signals().recv_timeout(Duration::from_secs(2));
        assert!(
            matches!(offer, Ok(Signal::Offer { ref target_uri, .. }) if target_uri == "sip:near@127.0.0.1"),
            "{offer:?} after {:?}",
            t1.elapsed()
        );

        // The far delivery fails at its deadline, naming the host.
        let state = loop {
            let tr = e.roster().transfer(t).unwrap();
            let far = tr
                .deliveries
                .iter()
                .find(|d| d.participant == "far")
                .cloned();
            if let Some(d) = far.filter(|d| d.state.is_terminal()) {
                break d.state;
            }
            assert!(
                t1.elapsed() < Duration::from_secs(4),
                "far delivery never failed"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        match state {
            DeliveryState::Failed { code, reason } => {
                assert_eq!(code, Some(408));
                assert!(
                    reason.contains("hang.test") && reason.contains("500 ms"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        e.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
