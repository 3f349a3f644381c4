//! The control socket's server: binding the socket and the `msrpcast-control` thread that
//! receives datagrams, applies them with back-pressure and answers STATUS.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::HttpServer;
use crate::runtime::engine::{Engine, EngineError};
use crate::runtime::fault;

use super::apply;
use super::counters::{status_json, Counters};
use super::uploads::{FileUploads, UploadFileError};
use super::wire::{ReplyPart, Request, MAX_MESSAGE_BYTES, REPLY_PART_BYTES};

/// How long the control thread retries a call the engine refused as busy before it drops it.
const BUSY_RETRY: Duration = Duration::from_secs(2);
/// Longest wait for a slow STATUS requester to take a reply part.
const REPLY_SEND_TIMEOUT: Duration = Duration::from_millis(200);

/// The running control socket. Dropping it stops the thread and removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    sock: Arc<UnixDatagram>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    uploads: Arc<FileUploads>,
    /// Inode of the socket file we bound, so we never remove another engine's socket.
    ino: u64,
}

impl ControlServer {
    /// Binds `path` and starts the `msrpcast-control` thread with counters and uploads of its own.
    pub fn start(path: &Path, engine: Arc<Engine>) -> io::Result<ControlServer> {
        Self::start_with(path, engine, Default::default(), Default::default(), None)
    }

    /// Like [`ControlServer::start`], sharing counters and file uploads with the caller (the C
    /// ABI counts its direct calls in the same counters). `http` is the HTTP handler started
    /// with the engine, whose HTTPS certificate RELOAD_TLS re-reads along with MSRP's.
    pub fn start_with(
        path: &Path,
        engine: Arc<Engine>,
        counters: Arc<Counters>,
        uploads: Arc<FileUploads>,
        http: Option<Arc<HttpServer>>,
    ) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        remove_stale(path)?;
        let sock = UnixDatagram::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
        let ino = fs::metadata(path)?.ino();
        sock.set_write_timeout(Some(REPLY_SEND_TIMEOUT))?;
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let sock = sock.clone();
            let stop = stop.clone();
            let counters = counters.clone();
            let uploads = uploads.clone();
            crate::runtime::spawn("msrpcast-control", move || {
                let ctx = Ctx {
                    engine: &engine,
                    counters: &counters,
                    uploads: &uploads,
                    http: http.as_deref(),
                    stop: &stop,
                };
                serve(&sock, &ctx)
            })?
        };
        Ok(ControlServer {
            path: path.to_owned(),
            sock,
            stop,
            thread: Some(thread),
            counters,
            uploads,
            ino,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn uploads(&self) -> &Arc<FileUploads> {
        &self.uploads
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the thread's recv (it then returns 0 bytes and sees the flag).
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes a socket file nobody listens on; refuses to touch a live socket or a non-socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    let probe = UnixDatagram::unbound()?;
    match probe.connect(path) {
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another engine listens on {}", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// What the control thread works with.
struct Ctx<'a> {
    engine: &'a Engine,
    counters: &'a Counters,
    uploads: &'a FileUploads,
    http: Option<&'a HttpServer>,
    stop: &'a AtomicBool,
}

fn serve(sock: &UnixDatagram, ctx: &Ctx<'_>) {
    let Ctx {
        engine,
        counters,
        stop,
        ..
    } = *ctx;
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    let mut out = Vec::with_capacity(REPLY_PART_BYTES + ReplyPart::HEADER_BYTES);
    loop {
        let got = sock.recv_from(&mut buf);
        if stop.load(Ordering::Acquire) {
            return;
        }
        let (n, from) = match got {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                engine
                    .logger()
                    .warn("control", format_args!("control socket: {e}"));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        counters.datagrams.fetch_add(1, Ordering::Relaxed);
        if n > MAX_MESSAGE_BYTES {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // A panic while handling one datagram is logged and the thread goes on (issue 14).
        let handled = fault::guard(
            engine.logger(),
            "control",
            "handling a control datagram",
            || handle(sock, ctx, &buf[..n], &from, &mut out),
        );
        if handled.is_none() {
            counters.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One datagram: decoded, then applied or answered.
fn handle(sock: &UnixDatagram, ctx: &Ctx<'_>, datagram: &[u8], from: &UnixAddr, out: &mut Vec<u8>) {
    let Ctx {
        engine,
        counters,
        uploads,
        stop,
        ..
    } = *ctx;
    let req = match Request::decode(datagram) {
        Ok(r) => r,
        Err(e) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            engine
                .logger()
                .debug("control", format_args!("malformed control datagram: {e}"));
            return;
        }
    };
    if let Request::Status { request, what } = req {
        counters.status.fetch_add(1, Ordering::Relaxed);
        reply_status(sock, from, engine, counters, request, what, out);
        return;
    }
    if let Request::Upload {
        request,
        conference,
        path,
        to,
    } = req
    {
        let to: Option<Vec<String>> = to.map(|v| v.into_iter().map(str::to_owned).collect());
        let (result, json) = upload_answered(
            engine,
            counters,
            uploads,
            (conference, to.as_deref()),
            path,
            stop,
        );
        reply(sock, from, engine, request, result, &json, out);
        return;
    }
    if let Request::OfferIn {
        request,
        conference,
        participant,
        dialog,
        sdp,
    } = req
    {
        let (status, transfer, body) =
            super::offer_in_answer(engine, conference, participant, dialog, sdp);
        let text = super::offer_in_payload(status, transfer, &body);
        reply(sock, from, engine, request, RESULT_OK, &text, out);
        return;
    }
    if let Request::ReloadTls { request } = req {
        let (result, json) = reload_answered(engine, ctx.http);
        reply(sock, from, engine, request, result, &json, out);
        return;
    }
    apply_with_backpressure(engine, counters, uploads, &req, stop);
}

/// Back-pressure: while the engine's queue is full the control thread waits, so the socket's
/// queue fills and clients are told BUSY instead of events being lost.
fn apply_with_backpressure(
    engine: &Engine,
    counters: &Counters,
    uploads: &FileUploads,
    req: &Request<'_>,
    stop: &AtomicBool,
) {
    let t0 = Instant::now();
    loop {
        match apply(engine, counters, uploads, req) {
            Err(EngineError::Busy) if t0.elapsed() < BUSY_RETRY => {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                counters.busy_waits.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(EngineError::Busy) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                engine.logger().warn(
                    "control",
                    format_args!("engine busy for {BUSY_RETRY:?}: control request dropped"),
                );
                return;
            }
            Err(e) => {
                engine
                    .logger()
                    .info("control", format_args!("control request refused: {e}"));
                return;
            }
            Ok(()) => return,
        }
    }
}

/// Result codes the control server answers by itself: the C ABI's `MSRPCAST_OK` and
/// `MSRPCAST_ERR_INVALID_VALUE` (const-asserted equal in `ffi::result`).
pub const RESULT_OK: u32 = 0;
pub const RESULT_INVALID_VALUE: u32 = 1004;

/// UPLOAD: spools the file like UPLOAD_FILE (retrying while the engine is busy, as
/// [`apply_with_backpressure`] does) and returns the reply: result code and JSON.
fn upload_answered(
    engine: &Engine,
    counters: &Counters,
    uploads: &FileUploads,
    (conference, to): (&str, Option<&[String]>),
    path: &str,
    stop: &AtomicBool,
) -> (u32, String) {
    let t0 = Instant::now();
    let r = loop {
        match uploads.start_to(engine, conference, Path::new(path), to) {
            Err(UploadFileError::Engine(EngineError::Busy))
                if t0.elapsed() < BUSY_RETRY && !stop.load(Ordering::Acquire) =>
            {
                counters.busy_waits.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
            other => break other,
        }
    };
    match r {
        Ok(id) => {
            counters.uploads.fetch_add(1, Ordering::Relaxed);
            engine.logger().info(
                "control",
                format_args!("transfer {id}: upload of {path:?} to conference {conference:?}"),
            );
            (RESULT_OK, format!("{{\"transfer\":{id}}}"))
        }
        Err(e) => {
            let code = crate::ffi::result::upload_code(&e);
            match &e {
                UploadFileError::Engine(EngineError::Stopped) => &counters.dropped,
                _ => &counters.refused,
            }
            .fetch_add(1, Ordering::Relaxed);
            engine.logger().info(
                "control",
                format_args!("upload of {path:?} to conference {conference:?} refused: {e}"),
            );
            let mut json = String::new();
            let mut o = crate::json::Object::begin(&mut json);
            o.str("error", &e.to_string());
            o.end();
            (code as u32, json)
        }
    }
}

/// RELOAD_TLS: re-reads every TLS certificate in use (as `msrpcast_engine_reload_tls`), logs
/// the outcome in the engine's log and returns it for the requester: result code and JSON.
fn reload_answered(engine: &Engine, http: Option<&HttpServer>) -> (u32, String) {
    use crate::ffi::result::rc_name_str;
    use crate::json::escape as json_escape;
    match reload_tls_logged(engine, http) {
        Ok(json) => (crate::ffi::result::MSRPCAST_OK as u32, json),
        Err((code, reason)) => (
            code as u32,
            format!(
                "{{\"result\":\"{}\",\"error\":{}}}",
                rc_name_str(code),
                json_escape(&reason)
            ),
        ),
    }
}

/// Re-reads every TLS certificate in use and logs the outcome: on success the JSON answer
/// `{"result":"MSRPCAST_OK","msrp":…,"https":…[,"fingerprint":"…"]}`, else the result code and
/// the reason (naming the file that failed). The control socket's RELOAD_TLS and FreeSWITCH's
/// `msrpcast reload_tls` answer with it.
pub(crate) fn reload_tls_logged(
    engine: &Engine,
    http: Option<&HttpServer>,
) -> Result<String, (crate::ffi::result::msrpcast_result, String)> {
    use crate::ffi::result::{rc_name_str, reload_code, MSRPCAST_OK};
    use crate::json::escape as json_escape;
    match crate::http::reload_tls(engine, http) {
        Ok(done) => {
            let fingerprint = if done.msrp {
                engine
                    .tls_fingerprint()
                    .map(|f| format!(",\"fingerprint\":{}", json_escape(&f)))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            engine.logger().info(
                "control",
                format_args!(
                    "TLS reload: done (MSRP {}, HTTPS {})",
                    done.msrp, done.https
                ),
            );
            Ok(format!(
                "{{\"result\":\"{}\",\"msrp\":{},\"https\":{}{fingerprint}}}",
                rc_name_str(MSRPCAST_OK),
                done.msrp,
                done.https
            ))
        }
        Err(e) => {
            let code = reload_code(&e);
            engine.logger().error(
                "control",
                format_args!("TLS reload: {}: {e}", rc_name_str(code)),
            );
            Err((code, e.to_string()))
        }
    }
}

fn reply_status(
    sock: &UnixDatagram,
    to: &UnixAddr,
    engine: &Engine,
    counters: &Counters,
    request: u32,
    what: u32,
    out: &mut Vec<u8>,
) {
    let (result, json) = match status_json(engine, counters, what) {
        Some(j) => (RESULT_OK, j),
        None => (RESULT_INVALID_VALUE, String::new()),
    };
    reply(sock, to, engine, request, result, &json, out);
}

/// Sends a reply (STATUS or UPLOAD) in parts of at most [`REPLY_PART_BYTES`].
fn reply(
    sock: &UnixDatagram,
    to: &UnixAddr,
    engine: &Engine,
    request: u32,
    result: u32,
    json: &str,
    out: &mut Vec<u8>,
) {
    if to.is_unnamed() {
        return;
    }
    let bytes = json.as_bytes();
    let parts = bytes.len().div_ceil(REPLY_PART_BYTES).max(1);
    let Ok(parts16) = u16::try_from(parts) else {
        engine
            .logger()
            .warn("control", format_args!("status reply too large to send"));
        return;
    };
    for part in 0..parts {
        let lo = part * REPLY_PART_BYTES;
        let hi = (lo + REPLY_PART_BYTES).min(bytes.len());
        ReplyPart {
            request,
            result,
            part: part as u16,
            parts: parts16,
            payload: &bytes[lo..hi],
        }
        .encode(out);
        if sock.send_to_addr(out, to).is_err() {
            // The requester went away or does not read: it times out on its side.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::roster::TransferId;
    use crate::runtime::control::STATUS_CONFERENCES;
    use std::sync::atomic::AtomicU64;

    /// An engine spooling under `dir`, without HTTP, with the settings `sets` on top.
    fn test_engine(dir: &Path, sets: &[(&str, &str)]) -> Arc<Engine> {
        let mut cfg = Config::default();
        cfg.set("spool_dir", dir.join("spool").to_str().unwrap())
            .unwrap();
        cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
        cfg.set("io_threads", "1").unwrap();
        cfg.set("http_enabled", "no").unwrap();
        for (k, v) in sets {
            cfg.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        Arc::new(Engine::start(cfg).unwrap())
    }

    /// A client socket bound to an abstract name (`tag` and the process id), so the server
    /// can answer it; replies wait up to 10 s.
    fn asker(tag: &str) -> UnixDatagram {
        let asker = UnixDatagram::bind_addr(
            &<UnixAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(format!(
                "msrpcast-test-{tag}-{}",
                std::process::id()
            ))
            .unwrap(),
        )
        .unwrap();
        asker
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        asker
    }

    /// Sends `request` (numbered `id`) from `asker` to the server at `path`; its reply must be
    /// one part: returns the result code and the text.
    fn ask(asker: &UnixDatagram, path: &Path, id: u32, request: Request<'_>) -> (u32, String) {
        let mut buf = Vec::new();
        request.encode(&mut buf).unwrap();
        asker.send_to(&buf, path).unwrap();
        let mut rbuf = vec![0u8; MAX_MESSAGE_BYTES];
        let n = asker.recv(&mut rbuf).unwrap();
        let part = ReplyPart::decode(&rbuf[..n]).unwrap();
        assert_eq!((part.request, part.part, part.parts), (id, 0, 1));
        (
            part.result,
            String::from_utf8(part.payload.to_vec()).unwrap(),
        )
    }

    fn tempdir(name: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "msrpcast-control-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn server_applies_requests_answers_status_and_cleans_up() {
        let dir = tempdir("serve");
        let engine = test_engine(&dir, &[]);
        let path = dir.join("sub/control.sock");
        let server = ControlServer::start(&path, engine.clone()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);

        let client = UnixDatagram::unbound().unwrap();
        let mut buf = Vec::new();
        Request::Join {
            conference: "room",
            participant: "alice",
            target: "sip:alice@127.0.0.1",
            display: Some("Alice"),
        }
        .encode(&mut buf)
        .unwrap();
        client.send_to(&buf, &path).unwrap();
        client.send_to(b"\x01\x63garbage", &path).unwrap();
        assert!(wait_for(|| engine.roster().conference("room").is_some()));
        assert!(wait_for(|| server.counters().snapshot().malformed == 1));
        assert_eq!(server.counters().snapshot().joins, 1);

        // Status goes back to the requester's own address.
        let status = Request::Status {
            request: 77,
            what: STATUS_CONFERENCES,
        };
        let (result, text) = ask(&asker("status"), &path, 77, status);
        assert_eq!(result, RESULT_OK, "{text}");
        assert!(text.contains("\"alice\""), "{text}");

        // A second server on the same live path is refused; the first keeps its socket.
        assert!(ControlServer::start(&path, engine.clone()).is_err());
        assert!(path.exists());
        drop(server);
        assert!(!path.exists(), "socket file removed on drop");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// UPLOAD is answered with the transfer id, or with the refusal's code and reason.
    #[test]
    fn upload_is_answered_with_the_transfer_id() {
        let dir = tempdir("upload");
        let engine = test_engine(&dir, &[("upload_dir", dir.to_str().unwrap())]);
        let path = dir.join("control.sock");
        let server = ControlServer::start(&path, engine.clone()).unwrap();
        engine
            .join("room", "alice", "sip:alice@127.0.0.1:9", None)
            .unwrap();
        assert!(wait_for(|| engine.roster().conference("room").is_some()));
        let file = dir.join("notes.txt");
        fs::write(&file, b"hello").unwrap();
        let asker = asker("upload");
        let ask = |request: u32, conference: &str, p: &Path| {
            let upload = Request::Upload {
                request,
                conference,
                path: p.to_str().unwrap(),
                to: None,
            };
            ask(&asker, &path, request, upload)
        };
        let (result, json) = ask(1, "room", &file);
        assert_eq!(result, RESULT_OK, "{json}");
        let id: u64 = json
            .strip_prefix("{\"transfer\":")
            .and_then(|r| r.strip_suffix('}'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{json}"));
        let t = engine.roster().transfer(TransferId(id)).expect("transfer");
        assert_eq!(
            (t.conference.as_str(), t.name.as_str()),
            ("room", "notes.txt")
        );
        assert_eq!(server.counters().snapshot().uploads, 1);
        let (result, json) = ask(2, "nobody", &file);
        assert_eq!(result, 2007, "MSRPCAST_ERR_UNKNOWN_CONFERENCE: {json}");
        assert!(json.starts_with("{\"error\":\""), "{json}");
        let (result, json) = ask(3, "room", &dir.join("missing"));
        assert_eq!(result, 3000, "MSRPCAST_ERR_IO: {json}");
        assert!(json.contains("missing"), "{json}");
        let (result, json) = ask(4, "room", Path::new("/etc/hostname"));
        assert_eq!(result, 2008, "MSRPCAST_ERR_FORBIDDEN: {json}");
        assert!(json.contains("outside upload_dir"), "{json}");
        assert_eq!(server.counters().snapshot().refused, 3);
        drop(server);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// RELOAD_TLS is answered with the reload's outcome: refused without TLS, done with the
    /// fingerprint of the new certificate, and a failure naming the file that broke.
    #[test]
    fn reload_tls_is_answered_with_the_outcome() {
        let dir = tempdir("reload");
        let asker = asker("reload");
        let ask = |sock_path: &Path, request: u32| {
            ask(&asker, sock_path, request, Request::ReloadTls { request })
        };

        // No TLS on: refused, saying so.
        let plain = test_engine(&dir, &[]);
        let path = dir.join("plain.sock");
        let server = ControlServer::start(&path, plain).unwrap();
        let (result, json) = ask(&path, 1);
        assert_eq!(result, 2006, "MSRPCAST_ERR_REFUSED: {json}");
        assert!(
            json.starts_with("{\"result\":\"MSRPCAST_ERR_REFUSED\",\"error\":\"no TLS to reload"),
            "{json}"
        );
        drop(server);

        // MSRP TLS on: a renewed certificate is read, its fingerprint answered.
        let write_cert = |tag: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![format!("{tag}.example")])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
            fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
            crate::tls::Fingerprint::of(crate::tls::HashFunction::Sha256, cert.der()).to_string()
        };
        let first = write_cert("first");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let engine = test_engine(
            &dir,
            &[
                ("msrp_tls", "on"),
                ("tls_cert", cert.to_str().unwrap()),
                ("tls_key", key.to_str().unwrap()),
                ("tls_verify", "none"),
            ],
        );
        assert_eq!(engine.tls_fingerprint().as_deref(), Some(first.as_str()));
        let path = dir.join("tls.sock");
        let server = ControlServer::start(&path, engine.clone()).unwrap();
        let second = write_cert("second");
        assert_ne!(first, second);
        let (result, json) = ask(&path, 2);
        assert_eq!(result, RESULT_OK, "{json}");
        assert_eq!(
            json,
            format!(
                "{{\"result\":\"MSRPCAST_OK\",\"msrp\":true,\"https\":false,\"fingerprint\":\"{second}\"}}"
            )
        );
        assert_eq!(engine.tls_fingerprint().as_deref(), Some(second.as_str()));

        // A broken certificate file: MSRPCAST_ERR_IO naming it; the previous one stays.
        fs::write(dir.join("cert.pem"), b"not a certificate").unwrap();
        let (result, json) = ask(&path, 3);
        assert_eq!(result, 3000, "MSRPCAST_ERR_IO: {json}");
        assert!(
            json.starts_with("{\"result\":\"MSRPCAST_ERR_IO\",\"error\":\"MSRP: "),
            "{json}"
        );
        assert!(
            json.contains("cert.pem") && json.contains("no PEM certificate"),
            "{json}"
        );
        assert_eq!(engine.tls_fingerprint().as_deref(), Some(second.as_str()));
        drop(server);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_socket_is_replaced_and_non_socket_refused() {
        let dir = tempdir("stale");
        let engine = test_engine(&dir, &[]);
        let path = dir.join("control.sock");
        drop(UnixDatagram::bind(&path).unwrap()); // leaves a dead socket file
        assert!(path.exists());
        let server = ControlServer::start(&path, engine.clone()).unwrap();
        drop(server);
        fs::write(&path, b"not a socket").unwrap();
        assert!(ControlServer::start(&path, engine).is_err());
        assert!(path.exists(), "a regular file is never removed");
        fs::remove_dir_all(&dir).unwrap();
    }
}
