//! The engine side of the control socket: how client handles in *other processes* of the host
//! (Kamailio's SIP workers, its RPC process) reach the engine without ever waiting for it.
//!
//! The engine binds an `AF_UNIX`/`SOCK_DGRAM` socket at the `control_socket` path (its folder is
//! created, a stale socket file of an earlier run is replaced, permissions `0660`). One named
//! thread, `msrpcast-control`, receives datagrams and turns each into a call on the [`Engine`].
//! Clients send with `MSG_DONTWAIT`: when the socket's queue is full they are told so at once
//! (the C ABI's `MSRPCAST_ERR_BUSY`) and retry later; nothing in a client ever blocks.
//!
//! # Wire format (version 1)
//!
//! One request per datagram, at most [`MAX_MESSAGE_BYTES`]. Integers are little-endian; a
//! *string* is a `u32` byte length followed by that many bytes of UTF-8.
//!
//! ```text
//! datagram    = version:u8 (= 1)  op:u8  fields
//! 1 JOIN        conference:string participant:string target:string has_display:u8 [display:string]
//! 2 LEAVE       conference:string participant:string
//! 3 ANSWERED    delivery:u64 sdp:string
//! 4 REJECTED    delivery:u64 sip_code:u32
//! 5 ENDED       delivery:u64
//! 6 CANCEL      transfer:u64
//! 7 STATUS      request:u32 what:u32            (answered, see below)
//! 8 UPLOAD_FILE conference:string path:string   (spools a local file; see FileUploads)
//! ```
//!
//! A datagram with trailing bytes, a short field, bad UTF-8, an unknown version or op is counted
//! as malformed and dropped. Only STATUS is answered: the reply goes by `sendto` to the
//! requester's own (autobound) address, split into parts of at most [`REPLY_PART_BYTES`]:
//!
//! ```text
//! reply       = version:u8 (= 1)  op:u8 (= 0x87)  request:u32 result:u32 part:u16 parts:u16 payload
//! ```
//!
//! `result` is a C ABI result code (0 = OK); the payloads of parts `0..parts` concatenated are
//! the JSON text. `what` is 1 conferences, 2 transfers, 3 both, 4 the control counters.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::roster::{json, DeliveryId, TransferId};
use crate::runtime::engine::{Engine, EngineError, Upload};
use crate::runtime::log::Level;

/// Largest request datagram.
pub const MAX_MESSAGE_BYTES: usize = 65_536;
/// Largest payload of one STATUS reply datagram.
pub const REPLY_PART_BYTES: usize = 60_000;
/// Wire format version.
pub const VERSION: u8 = 1;

pub const OP_JOIN: u8 = 1;
pub const OP_LEAVE: u8 = 2;
pub const OP_ANSWERED: u8 = 3;
pub const OP_REJECTED: u8 = 4;
pub const OP_ENDED: u8 = 5;
pub const OP_CANCEL: u8 = 6;
pub const OP_STATUS: u8 = 7;
pub const OP_UPLOAD_FILE: u8 = 8;
pub const OP_STATUS_REPLY: u8 = 0x87;

/// `what` of a status request.
pub const STATUS_CONFERENCES: u32 = 1;
pub const STATUS_TRANSFERS: u32 = 2;
pub const STATUS_ALL: u32 = 3;
pub const STATUS_COUNTERS: u32 = 4;

/// How long the control thread retries a call the engine refused as busy before it drops it.
const BUSY_RETRY: Duration = Duration::from_secs(2);
/// Longest wait for a slow STATUS requester to take a reply part.
const REPLY_SEND_TIMEOUT: Duration = Duration::from_millis(200);

/// One request, borrowing its strings from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Join {
        conference: &'a str,
        participant: &'a str,
        target: &'a str,
        display: Option<&'a str>,
    },
    Leave {
        conference: &'a str,
        participant: &'a str,
    },
    Answered {
        delivery: u64,
        sdp: &'a str,
    },
    Rejected {
        delivery: u64,
        sip_code: u32,
    },
    Ended {
        delivery: u64,
    },
    Cancel {
        transfer: u64,
    },
    Status {
        request: u32,
        what: u32,
    },
    UploadFile {
        conference: &'a str,
        path: &'a str,
    },
}

/// Why a datagram could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The encoded request would exceed [`MAX_MESSAGE_BYTES`].
    TooLong,
    /// The datagram ends inside a field.
    Short,
    /// Bytes after the last field.
    Trailing,
    BadVersion(u8),
    UnknownOp(u8),
    InvalidUtf8,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TooLong => write!(f, "message longer than {MAX_MESSAGE_BYTES} bytes"),
            WireError::Short => f.write_str("datagram ends inside a field"),
            WireError::Trailing => f.write_str("bytes after the last field"),
            WireError::BadVersion(v) => write!(f, "unknown version {v}"),
            WireError::UnknownOp(o) => write!(f, "unknown op {o}"),
            WireError::InvalidUtf8 => f.write_str("string is not UTF-8"),
        }
    }
}

impl std::error::Error for WireError {}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    let n = u32::try_from(s.len()).map_err(|_| WireError::TooLong)?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Short);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self) -> Result<&'a str, WireError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| WireError::InvalidUtf8)
    }

    fn end(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

impl<'a> Request<'a> {
    /// Appends the datagram for this request to `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.clear();
        out.push(VERSION);
        match *self {
            Request::Join {
                conference,
                participant,
                target,
                display,
            } => {
                out.push(OP_JOIN);
                put_str(out, conference)?;
                put_str(out, participant)?;
                put_str(out, target)?;
                match display {
                    Some(d) => {
                        out.push(1);
                        put_str(out, d)?;
                    }
                    None => out.push(0),
                }
            }
            Request::Leave {
                conference,
                participant,
            } => {
                out.push(OP_LEAVE);
                put_str(out, conference)?;
                put_str(out, participant)?;
            }
            Request::Answered { delivery, sdp } => {
                out.push(OP_ANSWERED);
                out.extend_from_slice(&delivery.to_le_bytes());
                put_str(out, sdp)?;
            }
            Request::Rejected { delivery, sip_code } => {
                out.push(OP_REJECTED);
                out.extend_from_slice(&delivery.to_le_bytes());
                out.extend_from_slice(&sip_code.to_le_bytes());
            }
            Request::Ended { delivery } => {
                out.push(OP_ENDED);
                out.extend_from_slice(&delivery.to_le_bytes());
            }
            Request::Cancel { transfer } => {
                out.push(OP_CANCEL);
                out.extend_from_slice(&transfer.to_le_bytes());
            }
            Request::Status { request, what } => {
                out.push(OP_STATUS);
                out.extend_from_slice(&request.to_le_bytes());
                out.extend_from_slice(&what.to_le_bytes());
            }
            Request::UploadFile { conference, path } => {
                out.push(OP_UPLOAD_FILE);
                put_str(out, conference)?;
                put_str(out, path)?;
            }
        }
        if out.len() > MAX_MESSAGE_BYTES {
            return Err(WireError::TooLong);
        }
        Ok(())
    }

    /// Reads one datagram.
    pub fn decode(buf: &'a [u8]) -> Result<Request<'a>, WireError> {
        let mut r = Reader { buf };
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let req = match r.u8()? {
            OP_JOIN => {
                let conference = r.str()?;
                let participant = r.str()?;
                let target = r.str()?;
                let display = match r.u8()? {
                    0 => None,
                    _ => Some(r.str()?),
                };
                Request::Join {
                    conference,
                    participant,
                    target,
                    display,
                }
            }
            OP_LEAVE => Request::Leave {
                conference: r.str()?,
                participant: r.str()?,
            },
            OP_ANSWERED => Request::Answered {
                delivery: r.u64()?,
                sdp: r.str()?,
            },
            OP_REJECTED => Request::Rejected {
                delivery: r.u64()?,
                sip_code: r.u32()?,
            },
            OP_ENDED => Request::Ended { delivery: r.u64()? },
            OP_CANCEL => Request::Cancel { transfer: r.u64()? },
            OP_STATUS => Request::Status {
                request: r.u32()?,
                what: r.u32()?,
            },
            OP_UPLOAD_FILE => Request::UploadFile {
                conference: r.str()?,
                path: r.str()?,
            },
            op => return Err(WireError::UnknownOp(op)),
        };
        r.end()?;
        Ok(req)
    }
}

/// One part of a STATUS reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPart<'a> {
    pub request: u32,
    /// A C ABI result code; 0 = OK.
    pub result: u32,
    pub part: u16,
    pub parts: u16,
    pub payload: &'a [u8],
}

impl<'a> ReplyPart<'a> {
    pub const HEADER_BYTES: usize = 14;

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION);
        out.push(OP_STATUS_REPLY);
        out.extend_from_slice(&self.request.to_le_bytes());
        out.extend_from_slice(&self.result.to_le_bytes());
        out.extend_from_slice(&self.part.to_le_bytes());
        out.extend_from_slice(&self.parts.to_le_bytes());
        out.extend_from_slice(self.payload);
    }

    pub fn decode(buf: &'a [u8]) -> Result<ReplyPart<'a>, WireError> {
        let mut r = Reader { buf };
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let op = r.u8()?;
        if op != OP_STATUS_REPLY {
            return Err(WireError::UnknownOp(op));
        }
        Ok(ReplyPart {
            request: r.u32()?,
            result: r.u32()?,
            part: r.u16()?,
            parts: r.u16()?,
            payload: r.buf,
        })
    }
}

/// What reached the engine through the control socket and the C ABI's direct calls. Each
/// counter of a call counts calls the engine accepted.
#[derive(Debug, Default)]
pub struct Counters {
    pub datagrams: AtomicU64,
    pub malformed: AtomicU64,
    pub joins: AtomicU64,
    pub leaves: AtomicU64,
    pub answered: AtomicU64,
    pub rejected: AtomicU64,
    pub ended: AtomicU64,
    pub cancels: AtomicU64,
    pub uploads: AtomicU64,
    pub status: AtomicU64,
    /// Calls the engine refused (bad input, unknown conference or transfer, spool errors).
    pub refused: AtomicU64,
    /// Calls dropped because the engine stayed busy for 2 s or had stopped.
    pub dropped: AtomicU64,
    /// Times the control thread found the engine's queue full and waited.
    pub busy_waits: AtomicU64,
}

/// A copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub datagrams: u64,
    pub malformed: u64,
    pub joins: u64,
    pub leaves: u64,
    pub answered: u64,
    pub rejected: u64,
    pub ended: u64,
    pub cancels: u64,
    pub uploads: u64,
    pub status: u64,
    pub refused: u64,
    pub dropped: u64,
    pub busy_waits: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            datagrams: l(&self.datagrams),
            malformed: l(&self.malformed),
            joins: l(&self.joins),
            leaves: l(&self.leaves),
            answered: l(&self.answered),
            rejected: l(&self.rejected),
            ended: l(&self.ended),
            cancels: l(&self.cancels),
            uploads: l(&self.uploads),
            status: l(&self.status),
            refused: l(&self.refused),
            dropped: l(&self.dropped),
            busy_waits: l(&self.busy_waits),
        }
    }
}

impl CounterSnapshot {
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        let mut o = json::Object::begin(&mut s);
        o.u64("datagrams", self.datagrams)
            .u64("malformed", self.malformed)
            .u64("joins", self.joins)
            .u64("leaves", self.leaves)
            .u64("answered", self.answered)
            .u64("rejected", self.rejected)
            .u64("ended", self.ended)
            .u64("cancels", self.cancels)
            .u64("uploads", self.uploads)
            .u64("status", self.status)
            .u64("refused", self.refused)
            .u64("dropped", self.dropped)
            .u64("busy_waits", self.busy_waits);
        o.end();
        s
    }
}

/// The JSON of a status request, `None` for an unknown `what`.
pub fn status_json(engine: &Engine, counters: &Counters, what: u32) -> Option<String> {
    match what {
        STATUS_CONFERENCES => Some(engine.roster().snapshot().conferences_json()),
        STATUS_TRANSFERS => Some(engine.roster().snapshot().transfers_json()),
        STATUS_ALL => Some(engine.roster().to_json()),
        STATUS_COUNTERS => Some(counters.snapshot().to_json()),
        _ => None,
    }
}

/// Why a local file could not be spooled.
#[derive(Debug)]
pub enum UploadFileError {
    /// The file cannot be opened or is not a regular file.
    Io(io::Error),
    /// The engine refused the transfer.
    Engine(EngineError),
}

impl std::fmt::Display for UploadFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadFileError::Io(e) => write!(f, "{e}"),
            UploadFileError::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UploadFileError {}

/// Files spooled from the local file system (`msrpcast_engine_upload_file`, the UPLOAD_FILE
/// request): each copy runs on its own short-lived thread so the caller never waits for the disk.
#[derive(Default)]
pub struct FileUploads {
    jobs: Mutex<Vec<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

impl FileUploads {
    /// Opens `path`, starts the transfer for `conference` and copies the file into the spool on a
    /// thread. Returns the transfer id once the transfer exists (deliveries are already starting).
    pub fn start(
        &self,
        engine: &Engine,
        conference: &str,
        path: &Path,
    ) -> Result<u64, UploadFileError> {
        let io = |e: io::Error| {
            UploadFileError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        };
        let file = fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let upload = engine
            .upload(
                conference,
                &name,
                "application/octet-stream",
                Some(meta.len()),
            )
            .map_err(UploadFileError::Engine)?;
        let transfer = upload.transfer.0;
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let logger = engine.logger().clone();
        let shown = path.display().to_string();
        let handle = std::thread::Builder::new()
            .name("msrpcast-upload".into())
            .spawn(move || {
                if let Err(e) = copy_into(file, upload, &flag) {
                    logger.log(
                        Level::Warn,
                        "control",
                        format_args!("transfer {transfer}: upload of {shown:?} failed: {e}"),
                    );
                }
            })
            .map_err(UploadFileError::Io)?;
        let mut jobs = self.jobs.lock();
        jobs.retain(|(_, h)| !h.is_finished());
        jobs.push((cancel, handle));
        Ok(transfer)
    }

    /// Aborts the copies still running and waits for their threads.
    pub fn stop(&self) {
        let jobs = std::mem::take(&mut *self.jobs.lock());
        for (cancel, _) in &jobs {
            cancel.store(true, Ordering::Relaxed);
        }
        for (_, h) in jobs {
            let _ = h.join();
        }
    }
}

impl Drop for FileUploads {
    fn drop(&mut self) {
        self.stop();
    }
}

fn copy_into(mut file: fs::File, mut upload: Upload, cancel: &AtomicBool) -> Result<(), String> {
    use std::io::Read;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            upload.abort();
            return Err("engine stopping".into());
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                upload.abort();
                return Err(e.to_string());
            }
        };
        upload.append(&buf[..n]).map_err(|e| e.to_string())?;
    }
    upload.finish().map(|_| ()).map_err(|e| e.to_string())
}

/// Applies one request to the engine and counts it when accepted. STATUS is not handled here.
pub fn apply(
    engine: &Engine,
    counters: &Counters,
    uploads: &FileUploads,
    req: &Request<'_>,
) -> Result<(), EngineError> {
    let (r, counter) = match *req {
        Request::Join {
            conference,
            participant,
            target,
            display,
        } => (
            engine.join(conference, participant, target, display),
            &counters.joins,
        ),
        Request::Leave {
            conference,
            participant,
        } => (engine.leave(conference, participant), &counters.leaves),
        Request::Answered { delivery, sdp } => (
            engine.answered(DeliveryId(delivery), sdp),
            &counters.answered,
        ),
        Request::Rejected { delivery, sip_code } => {
            let code = u16::try_from(sip_code)
                .map_err(|_| EngineError::BadInput(format!("SIP code {sip_code}")));
            (
                code.and_then(|c| engine.rejected(DeliveryId(delivery), c)),
                &counters.rejected,
            )
        }
        Request::Ended { delivery } => (engine.ended(DeliveryId(delivery)), &counters.ended),
        Request::Cancel { transfer } => (engine.cancel(TransferId(transfer)), &counters.cancels),
        Request::UploadFile { conference, path } => (
            match uploads.start(engine, conference, Path::new(path)) {
                Ok(_) => Ok(()),
                Err(UploadFileError::Engine(e)) => Err(e),
                Err(UploadFileError::Io(e)) => Err(EngineError::BadInput(e.to_string())),
            },
            &counters.uploads,
        ),
        Request::Status { .. } => return Ok(()),
    };
    match &r {
        Ok(()) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Err(EngineError::Busy) => {}
        Err(EngineError::Stopped) => {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
    r
}

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
        Self::start_with(path, engine, Default::default(), Default::default())
    }

    /// Like [`ControlServer::start`], sharing counters and file uploads with the caller (the C
    /// ABI counts its direct calls in the same counters).
    pub fn start_with(
        path: &Path,
        engine: Arc<Engine>,
        counters: Arc<Counters>,
        uploads: Arc<FileUploads>,
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
            std::thread::Builder::new()
                .name("msrpcast-control".into())
                .spawn(move || serve(&sock, &engine, &counters, &uploads, &stop))?
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

fn serve(
    sock: &UnixDatagram,
    engine: &Engine,
    counters: &Counters,
    uploads: &FileUploads,
    stop: &AtomicBool,
) {
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
        let req = match Request::decode(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                engine
                    .logger()
                    .debug("control", format_args!("malformed control datagram: {e}"));
                continue;
            }
        };
        if let Request::Status { request, what } = req {
            counters.status.fetch_add(1, Ordering::Relaxed);
            reply_status(sock, &from, engine, counters, request, what, &mut out);
            continue;
        }
        // Back-pressure: while the engine's queue is full the control thread waits, so the
        // socket's queue fills and clients are told BUSY instead of events being lost.
        let t0 = Instant::now();
        loop {
            match apply(engine, counters, uploads, &req) {
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
                    break;
                }
                Err(e) => {
                    engine
                        .logger()
                        .info("control", format_args!("control request refused: {e}"));
                    break;
                }
                Ok(()) => break,
            }
        }
    }
}

/// Result codes shared with the C ABI (`MSRPCAST_OK`, `MSRPCAST_ERR_INVALID_VALUE`).
const RESULT_OK: u32 = 0;
const RESULT_INVALID_VALUE: u32 = 1004;

fn reply_status(
    sock: &UnixDatagram,
    to: &UnixAddr,
    engine: &Engine,
    counters: &Counters,
    request: u32,
    what: u32,
    out: &mut Vec<u8>,
) {
    if to.is_unnamed() {
        return;
    }
    let (result, json) = match status_json(engine, counters, what) {
        Some(j) => (RESULT_OK, j),
        None => (RESULT_INVALID_VALUE, String::new()),
    };
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

    fn all_requests() -> Vec<Request<'static>> {
        vec![
            Request::Join {
                conference: "conf",
                participant: "alice",
                target: "sip:alice@example.com",
                display: Some("Alice Ä"),
            },
            Request::Join {
                conference: "c",
                participant: "p",
                target: "t",
                display: None,
            },
            Request::Leave {
                conference: "conf",
                participant: "alice",
            },
            Request::Answered {
                delivery: u64::MAX,
                sdp: "v=0\r\n",
            },
            Request::Rejected {
                delivery: 7,
                sip_code: 486,
            },
            Request::Ended { delivery: 9 },
            Request::Cancel { transfer: 3 },
            Request::Status {
                request: 42,
                what: STATUS_ALL,
            },
            Request::UploadFile {
                conference: "conf",
                path: "/tmp/x",
            },
        ]
    }

    #[test]
    fn every_request_round_trips() {
        let mut buf = Vec::new();
        for r in all_requests() {
            r.encode(&mut buf).unwrap();
            assert_eq!(Request::decode(&buf).unwrap(), r);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let mut buf = Vec::new();
        for r in all_requests() {
            r.encode(&mut buf).unwrap();
            for cut in 0..buf.len() {
                assert!(Request::decode(&buf[..cut]).is_err(), "{r:?} cut {cut}");
            }
            let mut long = buf.clone();
            long.push(0);
            assert_eq!(Request::decode(&long), Err(WireError::Trailing));
        }
    }

    #[test]
    fn bad_version_op_and_utf8() {
        assert_eq!(Request::decode(&[2, 1]), Err(WireError::BadVersion(2)));
        assert_eq!(Request::decode(&[1, 99]), Err(WireError::UnknownOp(99)));
        let mut buf = vec![1, OP_LEAVE, 1, 0, 0, 0, 0xff, 1, 0, 0, 0, b'a'];
        assert_eq!(Request::decode(&buf), Err(WireError::InvalidUtf8));
        buf[6] = b'c';
        assert_eq!(
            Request::decode(&buf),
            Ok(Request::Leave {
                conference: "c",
                participant: "a"
            })
        );
        // A length that points far past the end is Short, never a panic.
        assert_eq!(
            Request::decode(&[1, OP_LEAVE, 0xff, 0xff, 0xff, 0xff]),
            Err(WireError::Short)
        );
    }

    #[test]
    fn oversize_request_is_refused_by_the_encoder() {
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        let mut buf = Vec::new();
        assert_eq!(
            Request::Answered {
                delivery: 1,
                sdp: &big
            }
            .encode(&mut buf),
            Err(WireError::TooLong)
        );
    }

    #[test]
    fn reply_part_round_trips() {
        let p = ReplyPart {
            request: 5,
            result: 0,
            part: 1,
            parts: 3,
            payload: b"{\"a\":1}",
        };
        let mut buf = Vec::new();
        p.encode(&mut buf);
        assert_eq!(buf.len(), ReplyPart::HEADER_BYTES + 7);
        assert_eq!(ReplyPart::decode(&buf).unwrap(), p);
        assert!(ReplyPart::decode(&buf[..5]).is_err());
    }

    fn test_engine(dir: &Path) -> Arc<Engine> {
        let mut cfg = Config::default();
        cfg.set("spool_dir", dir.join("spool").to_str().unwrap())
            .unwrap();
        cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
        cfg.set("io_threads", "1").unwrap();
        cfg.set("http_enabled", "no").unwrap();
        Arc::new(Engine::start(cfg).unwrap())
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
        let engine = test_engine(&dir);
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
        let asker = UnixDatagram::bind_addr(
            &<UnixAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(format!(
                "msrpcast-test-{}",
                std::process::id()
            ))
            .unwrap(),
        )
        .unwrap();
        asker
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Request::Status {
            request: 77,
            what: STATUS_CONFERENCES,
        }
        .encode(&mut buf)
        .unwrap();
        asker.send_to(&buf, &path).unwrap();
        let mut rbuf = vec![0u8; MAX_MESSAGE_BYTES];
        let n = asker.recv(&mut rbuf).unwrap();
        let part = ReplyPart::decode(&rbuf[..n]).unwrap();
        assert_eq!(
            (part.request, part.result, part.part, part.parts),
            (77, 0, 0, 1)
        );
        let text = std::str::from_utf8(part.payload).unwrap();
        assert!(text.contains("\"alice\""), "{text}");

        // A second server on the same live path is refused; the first keeps its socket.
        assert!(ControlServer::start(&path, engine.clone()).is_err());
        assert!(path.exists());
        drop(server);
        assert!(!path.exists(), "socket file removed on drop");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_socket_is_replaced_and_non_socket_refused() {
        let dir = tempdir("stale");
        let engine = test_engine(&dir);
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
