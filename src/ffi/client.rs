//! `msrpcast_client`: reaches the engine from any process of the host over the engine's
//! `AF_UNIX` datagram control socket (format in `runtime::control`). Every call but
//! `msrpcast_client_status` is one non-blocking `sendto`.

use std::ffi::{c_char, c_int};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::boundary::*;
use super::engine::{check_sip_code, owned_c_string, OfferInOut};
use super::result::*;
use crate::runtime::control::{ReplyPart, Request, WireError, MAX_MESSAGE_BYTES};

/// Limits of the C ABI, as integer constants.
///
/// cbindgen:prefix-with-name=false
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum msrpcast_limits {
    /// Largest control message (one datagram), all strings of a call included; a longer request
    /// gets `MSRPCAST_ERR_TOO_LONG`. Each string costs its length plus 4 bytes, a request's
    /// fixed part at most 18 bytes.
    MSRPCAST_MAX_MESSAGE_BYTES = 65_536,
}

const _: () = assert!(msrpcast_limits::MSRPCAST_MAX_MESSAGE_BYTES as usize == MAX_MESSAGE_BYTES);

/// A connection-less handle to the engine's control socket. Open it in the process that uses
/// it (after fork). Its calls are thread-safe.
pub struct msrpcast_client {
    sock: UnixDatagram,
    path: PathBuf,
    next_request: AtomicU32,
}

impl msrpcast_client {
    fn send(&self, req: Request<'_>) -> FfiResult {
        let mut buf = Vec::new();
        req.encode(&mut buf).map_err(wire_code)?;
        match self.sock.send_to(&buf, &self.path) {
            Ok(_) => Ok(()),
            Err(e) => Err(send_code(&e)),
        }
    }
}

fn wire_code(e: WireError) -> msrpcast_result {
    match e {
        WireError::TooLong => MSRPCAST_ERR_TOO_LONG,
        _ => MSRPCAST_ERR_INVALID_VALUE,
    }
}

/// EAGAIN (the engine's queue is full) → BUSY; no socket or nobody bound to it → UNREACHABLE.
fn send_code(e: &io::Error) -> msrpcast_result {
    match e.kind() {
        io::ErrorKind::WouldBlock => MSRPCAST_ERR_BUSY,
        io::ErrorKind::NotFound
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::PermissionDenied
        | io::ErrorKind::NotADirectory => MSRPCAST_ERR_UNREACHABLE,
        _ if e.raw_os_error() == Some(libc::EMSGSIZE) => MSRPCAST_ERR_TOO_LONG,
        _ if e.raw_os_error() == Some(libc::ENOBUFS) => MSRPCAST_ERR_BUSY,
        _ => MSRPCAST_ERR_IO,
    }
}

/// Binds `sock` to a kernel-chosen abstract address (Linux autobind), so the engine can answer.
fn autobind(sock: &UnixDatagram) -> io::Result<()> {
    let addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    let len = std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t;
    // SAFETY: the fd is an open socket owned by `sock` for the whole call; `addr` is an
    // initialised sockaddr_un that outlives the call, and `len` (only the family) is within its
    // size: an address of just the family asks Linux to autobind an abstract name.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens a client of the engine whose `control_socket` is the given path (not NUL-terminated).
/// Does not contact the engine: an engine that is not (yet) running shows as
/// `MSRPCAST_ERR_UNREACHABLE` on the calls. Open it in each process after fork; free it with
/// `msrpcast_client_free`.
#[no_mangle]
pub extern "C" fn msrpcast_client_open(
    control_socket: *const c_char,
    len: usize,
    out: *mut *mut msrpcast_client,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: control_socket is NULL or points to len readable bytes (API contract).
        let path = unsafe { nonempty_arg(control_socket, len) }?;
        out_arg(out)?;
        if path.len() > 107 || path.contains('\0') {
            return Err(MSRPCAST_ERR_INVALID_VALUE);
        }
        let sock = UnixDatagram::unbound().map_err(|_| MSRPCAST_ERR_IO)?;
        sock.set_nonblocking(true).map_err(|_| MSRPCAST_ERR_IO)?;
        let c = Box::new(msrpcast_client {
            sock,
            path: PathBuf::from(path),
            next_request: AtomicU32::new(std::process::id().wrapping_mul(2_654_435_761)),
        });
        // SAFETY: out was checked non-NULL and is valid for writes (API contract).
        unsafe { write_out(out, Box::into_raw(c)) };
        Ok(())
    })
}

/// Frees a client. NULL is allowed and does nothing.
#[no_mangle]
pub extern "C" fn msrpcast_client_free(c: *mut msrpcast_client) {
    // SAFETY: a non-NULL c came from msrpcast_client_open (Box::into_raw) and is freed once,
    // with no concurrent call (API contract).
    unsafe { free_box(c) }
}

/// As `msrpcast_engine_join`, through the control socket. Never blocks: `MSRPCAST_ERR_BUSY`
/// when the socket is full (retry later), `MSRPCAST_ERR_UNREACHABLE` when no engine listens.
/// `MSRPCAST_OK` means the request was queued, not that the engine accepted it.
#[no_mangle]
pub extern "C" fn msrpcast_client_join(
    c: *mut msrpcast_client,
    conf: *const c_char,
    conf_len: usize,
    participant: *const c_char,
    participant_len: usize,
    target: *const c_char,
    target_len: usize,
    display: *const c_char,
    display_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        // SAFETY: each pointer is NULL or points to its length in readable bytes (API contract).
        let req = unsafe {
            Request::Join {
                conference: nonempty_arg(conf, conf_len)?,
                participant: nonempty_arg(participant, participant_len)?,
                target: nonempty_arg(target, target_len)?,
                display: opt_str_arg(display, display_len)?,
            }
        };
        c.send(req)
    })
}

/// As `msrpcast_engine_leave`, through the control socket. Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_client_leave(
    c: *mut msrpcast_client,
    conf: *const c_char,
    conf_len: usize,
    participant: *const c_char,
    participant_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        // SAFETY: each pointer is NULL or points to its length in readable bytes (API contract).
        let req = unsafe {
            Request::Leave {
                conference: nonempty_arg(conf, conf_len)?,
                participant: nonempty_arg(participant, participant_len)?,
            }
        };
        c.send(req)
    })
}

/// As `msrpcast_engine_answered`, through the control socket. Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_client_answered(
    c: *mut msrpcast_client,
    delivery: u64,
    sdp: *const c_char,
    sdp_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        // SAFETY: sdp is NULL or points to sdp_len readable bytes (API contract).
        let sdp = unsafe { nonempty_arg(sdp, sdp_len) }?;
        c.send(Request::Answered { delivery, sdp })
    })
}

/// As `msrpcast_engine_rejected`, through the control socket. Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_client_rejected(
    c: *mut msrpcast_client,
    delivery: u64,
    sip_code: u32,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        check_sip_code(sip_code)?;
        c.send(Request::Rejected { delivery, sip_code })
    })
}

/// As `msrpcast_engine_ended`, through the control socket. Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_client_ended(c: *mut msrpcast_client, delivery: u64) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        c.send(Request::Ended { delivery })
    })
}

/// As `msrpcast_engine_cancel`, through the control socket (an unknown transfer is not
/// reported back). Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_client_cancel(
    c: *mut msrpcast_client,
    transfer: u64,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        c.send(Request::Cancel { transfer })
    })
}

/// As `msrpcast_engine_upload_file`, through the control socket: the engine process opens
/// `path` (so the path must be readable by it) and the transfer id is not reported back (see
/// the status). Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_client_upload_file(
    c: *mut msrpcast_client,
    conf: *const c_char,
    conf_len: usize,
    path: *const c_char,
    path_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        // SAFETY: conf is NULL or points to conf_len readable bytes (API contract).
        let conference = unsafe { nonempty_arg(conf, conf_len) }?;
        // SAFETY: path is NULL or points to path_len readable bytes (API contract).
        let path = unsafe { nonempty_arg(path, path_len) }?;
        c.send(Request::UploadFile { conference, path })
    })
}

/// As `msrpcast_engine_upload_file`, through the control socket, with the engine's answer: a
/// request and its reply, waiting up to `timeout_ms` (1 or more) — for RPC and CLI processes,
/// never for a SIP worker. The engine process opens `path` (it must be readable by it).
///
/// Whenever the engine answered, `*json` is set to a NUL-terminated JSON object (free it with
/// `msrpcast_string_free`) and `*len` to its length: `{"transfer":<id>}` with `MSRPCAST_OK`, or
/// `{"error":"<reason>"}` with the refusal's code (`MSRPCAST_ERR_UNKNOWN_CONFERENCE`,
/// `MSRPCAST_ERR_REFUSED` for a conference without participants or a full spool,
/// `MSRPCAST_ERR_IO` for a file it cannot read, `MSRPCAST_ERR_BUSY`, `MSRPCAST_ERR_STOPPED`).
/// Without an answer — `MSRPCAST_ERR_TIMEOUT`, `MSRPCAST_ERR_UNREACHABLE`, argument errors —
/// `*json` is left unchanged.
#[no_mangle]
pub extern "C" fn msrpcast_client_upload(
    c: *mut msrpcast_client,
    conf: *const c_char,
    conf_len: usize,
    path: *const c_char,
    path_len: usize,
    timeout_ms: u32,
    json: *mut *mut c_char,
    len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        // SAFETY: conf is NULL or points to conf_len readable bytes (API contract).
        let conference = unsafe { nonempty_arg(conf, conf_len) }?;
        // SAFETY: path is NULL or points to path_len readable bytes (API contract).
        let path = unsafe { nonempty_arg(path, path_len) }?;
        let (result, text) = ask_answer(c, timeout_ms, json, len, |request| Request::Upload {
            request,
            conference,
            path,
            to: None,
        })?;
        // SAFETY: json and len were checked non-NULL and are valid for writes (API contract).
        unsafe { hand_out_answer(result, text, json, len) }
    })
}

/// As `msrpcast_client_upload`, for chosen participants only (as
/// `msrpcast_engine_upload_file_to`): `to` holds `to_count` (1 or more) participant keys,
/// `to_lens` their lengths. A key that is not a participant of the conference gives
/// `MSRPCAST_ERR_INVALID_VALUE` with `{"error":"no participant \"<key>\" in conference …"}`;
/// `to_count` 0 gives `MSRPCAST_ERR_INVALID_VALUE` without asking the engine (`*json`
/// unchanged). The keys travel in the one control message (`MSRPCAST_MAX_MESSAGE_BYTES`).
#[no_mangle]
pub extern "C" fn msrpcast_client_upload_to(
    c: *mut msrpcast_client,
    conf: *const c_char,
    conf_len: usize,
    path: *const c_char,
    path_len: usize,
    to: *const *const c_char,
    to_lens: *const usize,
    to_count: usize,
    timeout_ms: u32,
    json: *mut *mut c_char,
    len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        // SAFETY: conf is NULL or points to conf_len readable bytes (API contract).
        let conference = unsafe { nonempty_arg(conf, conf_len) }?;
        // SAFETY: path is NULL or points to path_len readable bytes (API contract).
        let path = unsafe { nonempty_arg(path, path_len) }?;
        // SAFETY: to and to_lens are NULL or hold to_count readable elements, each key
        // to_lens[i] readable bytes (API contract).
        let keys = unsafe { keys_arg(to, to_lens, to_count) }?;
        let (result, text) = ask_answer(c, timeout_ms, json, len, |request| Request::Upload {
            request,
            conference,
            path,
            to: Some(keys),
        })?;
        // SAFETY: json and len were checked non-NULL and are valid for writes (API contract).
        unsafe { hand_out_answer(result, text, json, len) }
    })
}

/// The checks and the exchange of a request whose answer is handed out as JSON: `json` and
/// `len` must be non-NULL, `timeout_ms` 1 or more; then [`ask`] waits up to that long.
fn ask_answer<'a>(
    c: &msrpcast_client,
    timeout_ms: u32,
    json: *mut *mut c_char,
    len: *mut usize,
    make: impl FnOnce(u32) -> Request<'a>,
) -> Result<(u32, String), msrpcast_result> {
    out_arg(json)?;
    out_arg(len)?;
    if timeout_ms == 0 {
        return Err(MSRPCAST_ERR_INVALID_VALUE);
    }
    ask(c, make, Duration::from_millis(timeout_ms.into()))
}

/// Hands an answered request's JSON text out through `*json`/`*len` whatever its result (the
/// caller frees it with `msrpcast_string_free`), then returns that result: `Ok` for
/// `MSRPCAST_OK`, else the code (an unknown one as `MSRPCAST_ERR_IO`).
///
/// # Safety
/// `json` and `len` must be non-NULL and valid for writes of one pointer and one `usize`.
unsafe fn hand_out_answer(
    result: u32,
    text: String,
    json: *mut *mut c_char,
    len: *mut usize,
) -> Result<(), msrpcast_result> {
    let (ptr, n) = owned_c_string(text)?;
    // SAFETY: the caller guarantees json and len are non-NULL and valid for writes.
    unsafe {
        write_out(json, ptr);
        write_out(len, n);
    }
    if result == MSRPCAST_OK as u32 {
        Ok(())
    } else {
        Err(from_u32(result).unwrap_or(MSRPCAST_ERR_IO))
    }
}

/// As `msrpcast_engine_reload_tls`, through the control socket, with the outcome: the engine
/// process re-reads the TLS certificates and keys in use (MSRP `tls_cert`, `tls_key`, `tls_ca`
/// when `msrp_tls` is on; `http_tls_cert`, `http_tls_key` when its HTTP handler serves HTTPS)
/// and answers; this waits up to `timeout_ms` (1 or more) — for RPC and CLI processes, never
/// for a SIP worker. The engine logs the outcome too.
///
/// Whenever the engine answered, `*json` is set to a NUL-terminated JSON object (free it with
/// `msrpcast_string_free`) and `*len` to its length, and the return value is the reload's
/// result: `MSRPCAST_OK` with `{"result":"MSRPCAST_OK","msrp":<bool>,"https":<bool>}` (what was
/// re-read, plus `"fingerprint":"sha-256 …"` of the MSRP certificate now in use);
/// `MSRPCAST_ERR_IO` with `{"result":"MSRPCAST_ERR_IO","error":"<reason naming the file>"}` when
/// a file failed (that part keeps its previous certificate); `MSRPCAST_ERR_REFUSED` with an
/// `"error"` when no TLS is on. Without an answer — `MSRPCAST_ERR_TIMEOUT`,
/// `MSRPCAST_ERR_UNREACHABLE`, argument errors — `*json` is left unchanged.
#[no_mangle]
pub extern "C" fn msrpcast_client_reload_tls(
    c: *mut msrpcast_client,
    timeout_ms: u32,
    json: *mut *mut c_char,
    len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        let (result, text) = ask_answer(c, timeout_ms, json, len, |request| Request::ReloadTls {
            request,
        })?;
        // SAFETY: json and len were checked non-NULL and are valid for writes (API contract).
        unsafe { hand_out_answer(result, text, json, len) }
    })
}

/// As `msrpcast_engine_status`, through the control socket: a request and its reply, waiting
/// up to `timeout_ms` (1 or more) — for RPC and CLI processes, never for a SIP worker.
/// `MSRPCAST_ERR_TIMEOUT` when the reply does not come in time. Free the string with
/// `msrpcast_string_free`.
#[no_mangle]
pub extern "C" fn msrpcast_client_status(
    c: *mut msrpcast_client,
    what: u32,
    timeout_ms: u32,
    json: *mut *mut c_char,
    len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        let (result, text) = ask_answer(c, timeout_ms, json, len, |request| Request::Status {
            request,
            what,
        })?;
        if result != MSRPCAST_OK as u32 {
            return Err(from_u32(result).unwrap_or(MSRPCAST_ERR_IO));
        }
        let (ptr, n) = owned_c_string(text)?;
        // SAFETY: json and len were checked non-NULL and are valid for writes (API contract).
        unsafe {
            write_out(json, ptr);
            write_out(len, n);
        }
        Ok(())
    })
}

/// As `msrpcast_engine_offer_in`, through the control socket: the engine process decides and
/// answers; this waits up to `timeout_ms` (1 or more) for it. A SIP worker calls it while it
/// handles the participant's INVITE: the engine answers from its control thread without any
/// network wait (it checks, creates the spool file and builds the SDP), so the wait is short.
/// `MSRPCAST_OK` with `*status`, `*body`, `*body_len` and `*transfer` (may be NULL) as
/// `msrpcast_engine_offer_in` gives them; `MSRPCAST_ERR_TIMEOUT` or `MSRPCAST_ERR_UNREACHABLE`
/// without an answer (then answer the INVITE 503), argument errors as usual.
#[no_mangle]
pub extern "C" fn msrpcast_client_offer_in(
    c: *mut msrpcast_client,
    conf: *const c_char,
    conf_len: usize,
    participant: *const c_char,
    participant_len: usize,
    dialog: *const c_char,
    dialog_len: usize,
    sdp: *const c_char,
    sdp_len: usize,
    timeout_ms: u32,
    status: *mut u16,
    body: *mut *mut c_char,
    body_len: *mut usize,
    transfer: *mut u64,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        // SAFETY: each pointer is NULL or points to its length in readable bytes (API contract).
        let (conference, participant, dialog, sdp) = unsafe {
            (
                nonempty_arg(conf, conf_len)?,
                nonempty_arg(participant, participant_len)?,
                nonempty_arg(dialog, dialog_len)?,
                nonempty_arg(sdp, sdp_len)?,
            )
        };
        let out = OfferInOut::checked(status, body, body_len, transfer)?;
        if timeout_ms == 0 {
            return Err(MSRPCAST_ERR_INVALID_VALUE);
        }
        let (result, text) = ask(
            c,
            |request| Request::OfferIn {
                request,
                conference,
                participant,
                dialog,
                sdp,
            },
            Duration::from_millis(timeout_ms.into()),
        )?;
        if result != MSRPCAST_OK as u32 {
            return Err(from_u32(result).unwrap_or(MSRPCAST_ERR_IO));
        }
        let (code, id, text) =
            crate::runtime::control::parse_offer_in_payload(&text).ok_or(MSRPCAST_ERR_IO)?;
        // SAFETY: the pointers are valid for writes (API contract); checked() saw them non-NULL.
        unsafe { out.hand_out(code, id, text) }
    })
}

/// As `msrpcast_engine_offer_in_ended`, through the control socket. Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_client_offer_in_ended(
    c: *mut msrpcast_client,
    dialog: *const c_char,
    dialog_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: c is NULL or a live client handle (API contract).
        let c = unsafe { handle(c) }?;
        // SAFETY: dialog is NULL or points to dialog_len readable bytes (API contract).
        let dialog = unsafe { nonempty_arg(dialog, dialog_len) }?;
        c.send(Request::OfferInEnded { dialog })
    })
}

/// One request-reply exchange (STATUS, UPLOAD) on a socket of its own, so a late reply to an
/// earlier request that timed out never reaches a later one. Returns the reply's result code
/// and its text.
fn ask<'a>(
    c: &msrpcast_client,
    make: impl FnOnce(u32) -> Request<'a>,
    timeout: Duration,
) -> Result<(u32, String), msrpcast_result> {
    let deadline = Instant::now() + timeout;
    let sock = UnixDatagram::unbound().map_err(|_| MSRPCAST_ERR_IO)?;
    autobind(&sock).map_err(|_| MSRPCAST_ERR_IO)?;
    sock.set_nonblocking(true).map_err(|_| MSRPCAST_ERR_IO)?;
    let request = c.next_request.fetch_add(1, Ordering::Relaxed);
    let mut buf = Vec::new();
    make(request).encode(&mut buf).map_err(wire_code)?;
    sock.send_to(&buf, &c.path).map_err(|e| send_code(&e))?;
    let mut rbuf = vec![0u8; MAX_MESSAGE_BYTES];
    let mut text: Vec<u8> = Vec::new();
    let mut next_part = 0u16;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait_readable(&sock, left) {
            return Err(MSRPCAST_ERR_TIMEOUT);
        }
        let n = match sock.recv(&mut rbuf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(MSRPCAST_ERR_IO),
        };
        let Ok(part) = ReplyPart::decode(&rbuf[..n]) else {
            continue;
        };
        if part.request != request {
            continue;
        }
        if part.part != next_part {
            // A part went missing: the reply is incomplete.
            return Err(MSRPCAST_ERR_IO);
        }
        text.extend_from_slice(part.payload);
        next_part += 1;
        if next_part >= part.parts {
            let text = String::from_utf8(text).map_err(|_| MSRPCAST_ERR_IO)?;
            return Ok((part.result, text));
        }
    }
}

/// Waits until `sock` is readable or `timeout` passes.
fn wait_readable(sock: &UnixDatagram, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = c_int::try_from(timeout.as_millis().max(1)).unwrap_or(c_int::MAX);
    // SAFETY: pfd is one initialised pollfd that lives through the call, and nfds is 1; the fd
    // is owned by `sock`, open for the whole call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    r > 0 && pfd.revents & libc::POLLIN != 0
}
