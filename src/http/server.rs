//! The HTTP server: sockets and threads around the sans-IO [`Connection`].
//!
//! **Design: one acceptor thread and one thread per connection, with blocking sockets and short
//! read timeouts** (plus a watcher thread for events and metrics, and a small thread that turns
//! away connections over the limit). Why not mio on the engine's I/O pool: an upload is bound by
//! the spool's disk writes and SHA-1, which block; on a readiness loop they would stall every
//! other connection of that thread (and the MSRP deliveries sharing the pool), so they would need
//! a worker pool anyway. A thread per connection keeps the upload path a plain
//! `read → Connection::handle_input → Upload::append` loop with no copies and no queue, and is
//! bounded by `http_max_connections` (default 256; each thread's memory is its 256 KiB read
//! buffer plus a small stack). MSRP fan-out, where thousands of sockets matter, stays on mio.
//!
//! - **Limits**: the `http_max_connections`+1st connection gets `503` and is closed (by the
//!   rejecter thread, which reads what the client sent for a moment so the answer is not lost to
//!   a reset); `http_max_uploads` is enforced by the backend (`503`).
//! - **No progress** for `http_idle_timeout_ms` inside a request: `408`, the upload aborted, the
//!   connection closed. An idle keep-alive connection is closed without a response.
//! - **Slow heads** (slowloris): a request head must be complete `http_head_timeout_ms` after its
//!   first byte, however the bytes trickle in (`408`, close). And when all
//!   `http_max_connections` are taken, a new connection displaces the oldest one that is still
//!   waiting for (or inside) a request head, so connections that never send a whole head cannot
//!   keep real clients out; only connections busy with a request make new ones wait for `503`.
//! - **Event streams** (`/api/events`) do not count against `http_max_connections`; they have
//!   their own limit, `http_max_event_streams` (`503` beyond), and end after
//!   `http_event_stream_max_ms` (EventSource reconnects).
//! - **Events**: `GET /api/events` turns the connection into an SSE stream fed by the watcher,
//!   which diffs roster snapshots every `http_sse_interval_ms` and emits one `transfer` event per
//!   changed transfer per interval (the per-transfer throttle); a `: keep-alive` comment every
//!   15 s; the stream ends when the client goes away.
//! - **Auth**: without `http_token` the server binds to a loopback address only (the port of
//!   `http_listen`) and logs that it does.
//! - **HTTPS** (`http_tls_cert`, `http_tls_key`): the TLS handshake runs on the connection's own
//!   thread, never in the acceptor, under `http_head_timeout_ms` (a connection still handshaking
//!   counts as waiting for its head, so it can be displaced); then the same loop runs over the
//!   TLS stream. Every response carries `Strict-Transport-Security` (`http_hsts_max_age_s`) and
//!   the login cookie is `Secure`. A connection over the limit is closed without a `503` (a TLS
//!   client could not read a plain one). [`HttpServer::reload_tls`] re-reads the files.
//! - **Shutdown**: dropping [`HttpServer`] stops accepting, shuts every open socket down (a
//!   running upload is aborted: partial spool file removed, deliveries aborted) and joins the
//!   threads.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};

use super::auth::Sessions;
use super::backend::{EngineBackend, EngineUpload};
use super::response::{error_response, sse_event, SSE_KEEPALIVE};
use super::service::{Connection, Ctx, EventSlots, ServiceConfig};
use crate::config::Config;
use crate::runtime::engine::Engine;
use crate::runtime::fault;
use crate::runtime::log::Logger;
use crate::tls::blocking::BlockingTls;
use crate::tls::{Tls, TlsError, TlsSettings};

/// Bytes read from a socket at a time (and the largest piece handed to the spool per call).
pub const READ_BUFFER: usize = 256 * 1024;
/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// SSE comment interval, so proxies and dead peers are noticed.
const SSE_KEEPALIVE_EVERY: Duration = Duration::from_secs(15);
/// Queued SSE frames per subscriber before it is dropped as too slow (it reconnects).
const SSE_QUEUE: usize = 1024;
/// Login sessions kept, and their lifetime.
const MAX_SESSIONS: usize = 1024;
const SESSION_TTL_SECS: u64 = 12 * 3600;
/// How long a closing connection keeps reading (discarding) so its last answer is delivered.
const LINGER: Duration = Duration::from_millis(500);

/// Why the server could not start.
#[derive(Debug)]
pub enum ServerError {
    /// The listen address cannot be bound.
    Bind { addr: SocketAddr, source: io::Error },
    /// A socket call or a thread failed.
    Io(&'static str, io::Error),
    /// `http_tls_cert` / `http_tls_key` could not be loaded (the text names the file).
    Tls(TlsError),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Bind { addr, source } => write!(f, "http_listen {addr}: {source}"),
            ServerError::Io(what, e) => write!(f, "HTTP server: {what}: {e}"),
            ServerError::Tls(e) => write!(f, "http_tls_cert/http_tls_key: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. } | ServerError::Io(_, source) => Some(source),
            ServerError::Tls(e) => Some(e),
        }
    }
}

struct Conn {
    stream: TcpStream,
    /// Set by its thread: between requests or inside a head (may be displaced).
    awaiting_head: Arc<AtomicBool>,
    /// An event stream: counted by [`EventSlots`], not by `http_max_connections`.
    event_stream: Arc<AtomicBool>,
    since: Instant,
}

struct Conns {
    next: u64,
    open: std::collections::HashMap<u64, Conn>,
}

impl Conns {
    /// Connections counted against `http_max_connections` (event streams are not).
    fn counted(&self) -> usize {
        self.open
            .values()
            .filter(|c| !c.event_stream.load(Ordering::Acquire))
            .count()
    }
}

struct Shared {
    backend: EngineBackend,
    service: ServiceConfig,
    sessions: Mutex<Sessions>,
    stop: AtomicBool,
    idle: Duration,
    head_timeout: Duration,
    sse_interval: Duration,
    event_stream_max: Duration,
    events: EventSlots,
    max_connections: usize,
    conns: Mutex<Conns>,
    conns_changed: Condvar,
    subscribers: Mutex<Vec<Sender<Arc<str>>>>,
    started: Instant,
    logger: Logger,
    /// HTTPS; `None` for plain HTTP.
    tls: Option<Arc<Tls>>,
}

impl Shared {
    fn now_secs(&self) -> u64 {
        self.started.elapsed().as_secs() + 1
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn unregister(&self, id: u64) {
        let mut c = self.conns.lock();
        c.open.remove(&id);
        self.backend.set_connections(c.open.len());
        self.conns_changed.notify_all();
    }
}

/// A running HTTP server. Dropping it stops it.
pub struct HttpServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    waker: Arc<mio::Waker>,
    /// Dropped on stop: the watcher and the rejecter see the channel close.
    stop_tx: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `cfg.http_listen` (a loopback address only when `cfg.http_token` is unset) and
    /// starts serving the upload page and API of `engine`. The limits and timeouts are the
    /// `http_*` settings of `cfg`; the file size limit is the engine's `max_file_bytes`.
    pub fn start(engine: Arc<Engine>, cfg: &Config) -> Result<HttpServer, ServerError> {
        let logger = engine.logger().clone();
        let mut addr = cfg.http_listen;
        if cfg.http_token.is_none() {
            if !addr.ip().is_loopback() {
                logger.warn(
                    "http",
                    format_args!(
                        "no http_token: listening on 127.0.0.1:{} instead of {addr}",
                        addr.port()
                    ),
                );
                addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port());
            } else {
                logger.info(
                    "http",
                    format_args!("no http_token: listening on the loopback address {addr} only"),
                );
            }
        }
        let tls = match (&cfg.http_tls_cert, &cfg.http_tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                Tls::load(TlsSettings {
                    cert: Some(cert.clone()),
                    key: Some(key.clone()),
                    // Clients are not asked for certificates (browsers would prompt), so no
                    // roots are needed beyond the system store the loader falls back to.
                    ca: None,
                    verify: crate::tls::Verify::None,
                    request_client_cert: false,
                    alpn: vec![b"http/1.1".to_vec()],
                    verify_cache: 0,
                })
                .map_err(ServerError::Tls)?,
            )),
            _ => None,
        };
        let listener =
            TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::Io("local_addr", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::Io("set_nonblocking", e))?;
        let poll = mio::Poll::new().map_err(|e| ServerError::Io("poll", e))?;
        const LISTENER: mio::Token = mio::Token(0);
        const WAKE: mio::Token = mio::Token(1);
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&listener.as_raw_fd()),
                LISTENER,
                mio::Interest::READABLE,
            )
            .map_err(|e| ServerError::Io("register", e))?;
        let waker = Arc::new(
            mio::Waker::new(poll.registry(), WAKE).map_err(|e| ServerError::Io("waker", e))?,
        );
        let backend = EngineBackend::new(engine, cfg.http_max_uploads);
        let shared = Arc::new(Shared {
            backend,
            service: ServiceConfig {
                token: cfg.http_token.clone(),
                max_file_bytes: cfg.max_file_bytes,
                allowed_hosts: cfg
                    .http_allowed_hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                secure: tls.is_some(),
                hsts: (tls.is_some() && cfg.http_hsts_max_age_s > 0)
                    .then(|| format!("max-age={}", cfg.http_hsts_max_age_s)),
                cors_origins: cfg.http_cors_origins.clone(),
                ..ServiceConfig::default()
            },
            sessions: Mutex::new({
                let mut s = Sessions::new(MAX_SESSIONS, SESSION_TTL_SECS);
                s.login = super::auth::LoginThrottle::new(cfg.http_login_max_failures);
                s
            }),
            stop: AtomicBool::new(false),
            idle: Duration::from_millis(cfg.http_idle_timeout_ms.max(1)),
            head_timeout: Duration::from_millis(cfg.http_head_timeout_ms.max(1)),
            sse_interval: Duration::from_millis(cfg.http_sse_interval_ms.max(1)),
            event_stream_max: Duration::from_millis(cfg.http_event_stream_max_ms.max(1)),
            events: EventSlots::new(cfg.http_max_event_streams),
            max_connections: cfg.http_max_connections.max(1),
            conns: Mutex::new(Conns {
                next: 0,
                open: std::collections::HashMap::new(),
            }),
            conns_changed: Condvar::new(),
            subscribers: Mutex::new(Vec::new()),
            started: Instant::now(),
            logger: logger.clone(),
            tls,
        });
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (reject_tx, reject_rx) = bounded::<TcpStream>(64);
        let mut server = HttpServer {
            shared: shared.clone(),
            addr,
            waker,
            stop_tx: Some(stop_tx),
            threads: Vec::new(),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            crate::runtime::spawn(name, f).map_err(|e| ServerError::Io("thread", e))
        };
        let s = shared.clone();
        let rx = stop_rx.clone();
        server.threads.push(spawn(
            "msrpcast-http-watch",
            Box::new(move || watch(&s, &rx)),
        )?);
        let rx = stop_rx;
        let s = shared.clone();
        server.threads.push(spawn(
            "msrpcast-http-reject",
            Box::new(move || reject(&s, &reject_rx, &rx)),
        )?);
        let s = shared;
        server.threads.push(spawn(
            "msrpcast-http-accept",
            Box::new(move || accept(s, poll, listener, reject_tx)),
        )?);
        logger.info(
            "http",
            format_args!(
                "upload page and API on {}://{addr}/",
                if server.shared.tls.is_some() {
                    "https"
                } else {
                    "http"
                }
            ),
        );
        Ok(server)
    }

    /// Re-reads `http_tls_cert` and `http_tls_key` (a renewed certificate) for new connections.
    /// On error the loaded certificate stays and the error names the file. `Ok(false)`: HTTPS
    /// is off, nothing to reload.
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        match &self.shared.tls {
            Some(t) => t.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// True when the page and API are served over HTTPS.
    pub fn is_https(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// The bound address (the real port when `http_listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backend, for its counters.
    pub fn backend(&self) -> &EngineBackend {
        &self.shared.backend
    }

    /// Open connections now (event streams included).
    pub fn connections(&self) -> usize {
        self.shared.conns.lock().open.len()
    }

    /// Connections busy with a request now (neither waiting for a head nor an event stream):
    /// the ones a new connection cannot displace.
    pub fn busy_connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .open
            .values()
            .filter(|c| {
                !c.awaiting_head.load(Ordering::Acquire) && !c.event_stream.load(Ordering::Acquire)
            })
            .count()
    }

    /// Open event streams now.
    pub fn event_streams(&self) -> usize {
        self.shared.events.open()
    }
}

/// What [`reload_tls`] re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsReloaded {
    pub msrp: bool,
    pub https: bool,
}

/// Re-reads every TLS certificate in use — MSRP (`tls_cert`, `tls_key`, `tls_ca`, when
/// `msrp_tls` is on) and HTTPS (`http_tls_cert`, `http_tls_key`, when `http` serves HTTPS) —
/// for new connections; running ones keep theirs. What failed keeps its previous files and is
/// named in the error; what succeeded is in use. `Err` too when no TLS is on at all. The RPC
/// `msrpcast.reload_tls`, `msrpcast_engine_reload_tls` and `SIGHUP` of `msrpcast serve` end here.
pub fn reload_tls(
    engine: &Engine,
    http: Option<&HttpServer>,
) -> Result<TlsReloaded, TlsReloadError> {
    let mut done = TlsReloaded::default();
    let mut errors = Vec::new();
    if engine.msrp_tls_on() {
        match engine.reload_tls() {
            Ok(()) => done.msrp = true,
            Err(e) => errors.push(format!("MSRP: {e}")),
        }
    }
    if let Some(h) = http {
        match h.reload_tls() {
            Ok(on) => done.https = on,
            Err(e) => errors.push(format!("HTTPS: TLS reload failed, old files kept: {e}")),
        }
        if done.https {
            engine
                .logger()
                .info("http", format_args!("HTTPS certificate reloaded"));
        }
    }
    if !errors.is_empty() {
        return Err(TlsReloadError::Failed(errors.join("; ")));
    }
    if done == TlsReloaded::default() {
        return Err(TlsReloadError::NothingOn);
    }
    Ok(done)
}

/// Why [`reload_tls`] did not reload everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsReloadError {
    /// Neither `msrp_tls` nor HTTPS is on.
    NothingOn,
    /// A file could not be loaded (the text names it); that part keeps its previous files.
    Failed(String),
}

impl std::fmt::Display for TlsReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsReloadError::NothingOn => {
                f.write_str("no TLS to reload: msrp_tls is off and HTTPS is not on")
            }
            TlsReloadError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TlsReloadError {}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.stop_tx.take();
        let _ = self.waker.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.subscribers.lock().clear();
        let mut c = self.shared.conns.lock();
        for s in c.open.values() {
            let _ = s.stream.shutdown(Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.open.is_empty() {
            if self
                .shared
                .conns_changed
                .wait_until(&mut c, deadline)
                .timed_out()
            {
                self.shared.logger.warn(
                    "http",
                    format_args!("{} connections did not end in time", c.open.len()),
                );
                break;
            }
        }
        drop(c);
        // A connection's thread unregisters, then lets go of the shared state (and through the
        // backend of the engine) as it returns: wait for that too, so that whoever stops the
        // engine next is its last owner (otherwise the engine could stop later, on that thread).
        while Arc::strong_count(&self.shared) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn accept(
    shared: Arc<Shared>,
    mut poll: mio::Poll,
    listener: TcpListener,
    reject: Sender<TcpStream>,
) {
    let mut events = mio::Events::with_capacity(16);
    while !shared.stopping() {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if e.kind() != io::ErrorKind::Interrupted {
                shared.logger.error(
                    "http",
                    format_args!("poll: {e}; the HTTP server stops accepting"),
                );
                return;
            }
        }
        loop {
            if shared.stopping() {
                return;
            }
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    shared.logger.warn("http", format_args!("accept: {e}"));
                    std::thread::sleep(TICK);
                    break;
                }
            };
            fault::guard(
                &shared.logger,
                "http",
                "admitting an HTTP connection",
                || admit(&shared, stream, &reject),
            );
        }
    }
}

/// At the limit: closes the oldest connection still waiting for (or inside) a request head, so
/// the new one gets its place. False when every connection is busy with a request.
fn displace_waiting(c: &mut Conns) -> bool {
    let oldest = c
        .open
        .iter()
        .filter(|(_, x)| {
            x.awaiting_head.load(Ordering::Acquire) && !x.event_stream.load(Ordering::Acquire)
        })
        .min_by_key(|(id, x)| (x.since, **id))
        .map(|(id, _)| *id);
    match oldest.and_then(|id| c.open.remove(&id)) {
        Some(x) => {
            let _ = x.stream.shutdown(Shutdown::Both);
            true
        }
        None => false,
    }
}

fn admit(shared: &Arc<Shared>, stream: TcpStream, reject: &Sender<TcpStream>) {
    let _ = stream.set_nonblocking(false);
    let awaiting_head = Arc::new(AtomicBool::new(true));
    let event_stream = Arc::new(AtomicBool::new(false));
    let registered = {
        let mut c = shared.conns.lock();
        let room = c.counted() < shared.max_connections || displace_waiting(&mut c);
        if !room {
            None
        } else {
            match stream.try_clone() {
                Ok(clone) => {
                    c.next += 1;
                    let id = c.next;
                    c.open.insert(
                        id,
                        Conn {
                            stream: clone,
                            awaiting_head: awaiting_head.clone(),
                            event_stream: event_stream.clone(),
                            since: Instant::now(),
                        },
                    );
                    shared.backend.set_connections(c.open.len());
                    Some(id)
                }
                Err(_) => None,
            }
        }
    };
    let Some(id) = registered else {
        // Full: the rejecter answers 503; if even its queue is full, just close.
        let _ = reject.try_send(stream);
        return;
    };
    let s = shared.clone();
    let spawned = crate::runtime::spawn("msrpcast-http", move || {
        // A panic ends this connection only (its socket closes as it unwinds, an upload
        // in progress is aborted); its place is given back either way (issue 14).
        fault::guard(&s.logger, "http", "serving an HTTP connection", || {
            serve(&s, stream, &awaiting_head, &event_stream)
        });
        s.unregister(id);
    });
    if let Err(e) = spawned {
        shared
            .logger
            .warn("http", format_args!("no thread for a connection: {e}"));
        let stream = shared
            .conns
            .lock()
            .open
            .get(&id)
            .and_then(|s| s.stream.try_clone().ok());
        shared.unregister(id);
        if let Some(s) = stream {
            let _ = reject.try_send(s);
        }
    }
}

/// Answers connections over the limit with 503.
fn reject(shared: &Shared, queue: &Receiver<TcpStream>, stop: &Receiver<()>) {
    let body = error_response(
        503,
        &format!(
            "too many connections (http_max_connections {})",
            shared.max_connections
        ),
        true,
        None,
    );
    loop {
        crossbeam_channel::select! {
            recv(queue) -> s => match s {
                // A TLS client could not read a plain 503: just close.
                Ok(s) if shared.tls.is_some() => drop(s),
                Ok(mut s) => {
                    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                    if s.write_all(&body).is_ok() {
                        linger(&mut s, LINGER);
                    }
                }
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        }
    }
}

/// Half-closes and reads (discarding) for a moment so the peer gets what was written before
/// the close instead of a reset caused by its unread request bytes.
fn linger<S: HttpIo>(s: &mut S, how_long: Duration) {
    let _ = s.flush();
    s.close_write();
    let deadline = Instant::now() + how_long;
    let _ = s.tcp().set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// What a connection is served over: the plain socket, or TLS on it.
trait HttpIo: Read + Write {
    /// The socket, for timeouts and blocking mode.
    fn tcp(&self) -> &TcpStream;
    /// Ends our sending side (after TLS's close_notify).
    fn close_write(&mut self);
    /// After a read: more bytes that are already here (no system call, never blocks) into
    /// `buf`; how many. A TLS connection hands out at most one record (16 KiB) per read, so a
    /// 256 KiB buffer would otherwise go to the spool 16 KiB at a time, each piece a write and
    /// a wake-up of the hashing thread.
    fn read_buffered(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}

impl HttpIo for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn close_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Bytes read from the socket at a time under TLS.
const TLS_READ_BUFFER: usize = 128 * 1024;

/// The socket under a TLS connection, read in large pieces: rustls asks for about 4 KiB at a
/// time, which would cost a system call per 4 KiB of an upload.
struct BufSock {
    sock: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Read for BufSock {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            let n = self.sock.read(&mut self.buf)?;
            self.start = 0;
            self.end = n;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl Write for BufSock {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.sock.write(b)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

type ServedTls = rustls::StreamOwned<rustls::ServerConnection, BufSock>;

impl HttpIo for ServedTls {
    fn tcp(&self) -> &TcpStream {
        &self.sock.sock
    }

    fn close_write(&mut self) {
        self.conn.send_close_notify();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock).is_err() {
                break;
            }
        }
        let _ = self.sock.sock.shutdown(Shutdown::Write);
    }

    fn read_buffered(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.conn.reader().read(&mut buf[n..]) {
                Ok(0) => break, // close_notify: the next read says so
                Ok(k) => {
                    n += k;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            }
            // No plaintext left: decrypt what the last socket read brought, if anything.
            if self.sock.start == self.sock.end {
                break;
            }
            self.conn.read_tls(&mut self.sock)?;
            if let Err(e) = self.conn.process_new_packets() {
                // The next read reports it (and sends the alert).
                return if n > 0 {
                    Ok(n)
                } else {
                    Err(io::Error::other(e))
                };
            }
        }
        Ok(n)
    }
}

/// The handshaken stream, reading through a [`BufSock`].
fn buffered(tls: BlockingTls) -> ServedTls {
    let rustls::StreamOwned { conn, sock } = tls;
    rustls::StreamOwned::new(
        conn,
        BufSock {
            sock,
            buf: vec![0u8; TLS_READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        },
    )
}

fn flush<S: HttpIo>(stream: &mut S, conn: &mut Connection<EngineUpload>) -> bool {
    let out = conn.take_output();
    out.is_empty() || stream.write_all(&out).and_then(|()| stream.flush()).is_ok()
}

/// One connection, from its first byte (its TLS handshake over HTTPS) to its close.
fn serve(
    shared: &Shared,
    stream: TcpStream,
    awaiting_head: &AtomicBool,
    event_stream: &AtomicBool,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = &shared.tls else {
        return serve_on(shared, stream, awaiting_head, event_stream);
    };
    let peer = stream.peer_addr().ok();
    // The handshake is due within the head deadline: a client trickling it cannot hold the
    // thread longer than one slow head could.
    let accepted = tls
        .server_config()
        .and_then(|cfg| crate::tls::blocking::accept(stream, cfg, shared.head_timeout));
    match accepted {
        Ok(tls_stream) => serve_on(shared, buffered(tls_stream), awaiting_head, event_stream),
        Err(e) => {
            if !shared.stopping() {
                shared.logger.debug(
                    "http",
                    format_args!(
                        "TLS handshake with {} failed: {e}",
                        peer.map_or_else(|| "a client".to_owned(), |a| a.to_string())
                    ),
                );
            }
        }
    }
}

fn serve_on<S: HttpIo>(
    shared: &Shared,
    mut stream: S,
    awaiting_head: &AtomicBool,
    event_stream: &AtomicBool,
) {
    let tick = shared.idle.min(shared.head_timeout).min(TICK);
    let _ = stream.tcp().set_read_timeout(Some(tick));
    let _ = stream
        .tcp()
        .set_write_timeout(Some(shared.idle.max(Duration::from_secs(1))));
    let mut conn: Connection<EngineUpload> = Connection::new(&shared.service);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut last = Instant::now();
    // When the first byte of the head being read arrived (the whole head is due within
    // `http_head_timeout_ms` of it, whatever the pace of the bytes).
    let mut head_since: Option<Instant> = None;
    loop {
        if shared.stopping() {
            return;
        }
        if head_since.is_some_and(|t| t.elapsed() >= shared.head_timeout) {
            conn.handle_timeout();
            if flush(&mut stream, &mut conn) {
                linger(&mut stream, LINGER);
            }
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                conn.handle_eof();
                flush(&mut stream, &mut conn);
                return;
            }
            Ok(mut n) => {
                n += stream.read_buffered(&mut buf[n..]).unwrap_or(0);
                fault::inject("http", &buf[..n]);
                last = Instant::now();
                let mut ctx = Ctx {
                    backend: &shared.backend,
                    sessions: &shared.sessions,
                    config: &shared.service,
                    now: shared.now_secs(),
                    events: &shared.events,
                };
                conn.handle_input(&buf[..n], &mut ctx);
                awaiting_head.store(conn.awaiting_head(), Ordering::Release);
                head_since = match head_since {
                    _ if !conn.has_partial_head() => None,
                    None => Some(last),
                    since => since,
                };
                if !flush(&mut stream, &mut conn) {
                    if conn.is_event_stream() {
                        // The slot was taken when the stream was granted.
                        shared.events.release();
                    }
                    conn.handle_eof();
                    return;
                }
                if conn.wants_close() {
                    linger(&mut stream, LINGER);
                    return;
                }
                if conn.is_event_stream() {
                    drop(buf);
                    // It no longer counts against http_max_connections; the slot it took from
                    // http_max_event_streams is given back when it ends.
                    event_stream.store(true, Ordering::Release);
                    awaiting_head.store(false, Ordering::Release);
                    shared.conns_changed.notify_all();
                    events(shared, stream);
                    shared.events.release();
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if last.elapsed() >= shared.idle {
                    if conn.in_request() {
                        conn.handle_timeout();
                        if flush(&mut stream, &mut conn) {
                            linger(&mut stream, LINGER);
                        }
                    }
                    return;
                }
            }
            Err(_) => {
                conn.handle_eof();
                return;
            }
        }
    }
}

/// The SSE side of a connection after `GET /api/events`.
fn events<S: HttpIo>(shared: &Shared, mut stream: S) {
    let (tx, rx) = bounded::<Arc<str>>(SSE_QUEUE);
    shared.subscribers.lock().push(tx);
    // First the transfers that are still moving, then every change the watcher reports.
    let snap = shared.backend.engine().roster().snapshot();
    let mut first = String::new();
    for t in snap
        .transfers
        .iter()
        .filter(|t| EngineBackend::is_active(t))
    {
        first.push_str(&sse_event("transfer", &shared.backend.transfer_to_json(t)));
    }
    if !first.is_empty() && write_now(&mut stream, first.as_bytes()).is_err() {
        return;
    }
    let mut last_write = Instant::now();
    let started = Instant::now();
    let mut probe = [0u8; 512];
    loop {
        if started.elapsed() >= shared.event_stream_max {
            // EventSource reconnects; a client that vanished without a FIN is let go here.
            return;
        }
        match rx.recv_timeout(TICK) {
            Ok(frame) => {
                let mut out = frame.to_string();
                while let Ok(more) = rx.try_recv() {
                    out.push_str(&more);
                }
                if write_now(&mut stream, out.as_bytes()).is_err() {
                    return;
                }
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if shared.stopping() {
            return;
        }
        if last_write.elapsed() >= SSE_KEEPALIVE_EVERY {
            if write_now(&mut stream, SSE_KEEPALIVE.as_bytes()).is_err() {
                return;
            }
            last_write = Instant::now();
        }
        // Has the client gone? (It sends nothing on an event stream; anything it does send is
        // read and ignored.)
        if stream.tcp().set_nonblocking(true).is_err() {
            return;
        }
        let gone = match stream.read(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        if gone || stream.tcp().set_nonblocking(false).is_err() {
            return;
        }
    }
}

/// Writes and flushes (TLS keeps written records until flushed).
fn write_now<S: HttpIo>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}

/// Every `http_sse_interval_ms`: the transfers that changed since the last look (the roster
/// keeps a change counter, so retained transfers that do not move cost nothing here) → metrics
/// counters, and one SSE frame per transfer whose JSON changed, to every subscriber.
fn watch(shared: &Shared, stop: &Receiver<()>) {
    let mut last: std::collections::HashMap<crate::roster::TransferId, String> =
        std::collections::HashMap::new();
    let mut version = 0;
    loop {
        match stop.recv_timeout(shared.sse_interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        fault::guard(&shared.logger, "http", "watching the transfers", || {
            watch_once(shared, &mut last, &mut version)
        });
    }
}

/// One turn of [`watch`].
fn watch_once(
    shared: &Shared,
    last: &mut std::collections::HashMap<crate::roster::TransferId, String>,
    version: &mut u64,
) {
    let roster = shared.backend.engine().roster();
    shared
        .backend
        .remember_conferences(&roster.conference_ids());
    // Nothing changed: no transfer to look at, and no pass over the transfers kept (up to
    // `max_finished_transfers` of them, every interval). Transfers forgotten meanwhile leave
    // `last` and the backend's counters at the next change.
    if roster.version() == *version {
        return;
    }
    let (v, changed) = roster.changed_since(*version);
    *version = v;
    let live: std::collections::HashSet<_> = roster.transfer_ids().into_iter().collect();
    shared.backend.observe_changes(&changed, &live);
    let mut frames: Vec<Arc<str>> = Vec::new();
    for t in &changed {
        let json = shared.backend.transfer_to_json(t);
        if last.get(&t.id) != Some(&json) {
            frames.push(Arc::from(sse_event("transfer", &json)));
            last.insert(t.id, json);
        }
    }
    last.retain(|id, _| live.contains(id));
    if frames.is_empty() {
        return;
    }
    shared.subscribers.lock().retain(|s| {
        frames.iter().all(|f| match s.try_send(f.clone()) {
            Ok(()) => true,
            // Too slow or gone: dropping the sender ends its stream (EventSource reconnects).
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        })
    });
}
