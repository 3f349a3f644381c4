//! `msrpcast_engine`: the running engine in the process that owns its threads, its signalling
//! port, and the calls a single-process host makes on it directly.

use std::ffi::{c_char, c_int, CString};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::RwLock;

use super::boundary::*;
use super::config::msrpcast_config;
use super::notify::Notify;
use super::result::*;
use super::signal::msrpcast_signal;
use crate::runtime::control::{
    self, ControlServer, CounterSnapshot, Counters, FileUploads, Request, UploadFileError,
};
use crate::runtime::engine::Engine;
use crate::runtime::log::{Logger, DEFAULT_QUEUE_CAPACITY};

/// `what` of `msrpcast_engine_status` and `msrpcast_client_status` (passed as `uint32_t`).
///
/// cbindgen:prefix-with-name=false
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum msrpcast_status_what {
    /// `{"conferences":[...]}`: each conference with its participants.
    MSRPCAST_STATUS_CONFERENCES = 1,
    /// `{"transfers":[...]}`: each transfer with its deliveries.
    MSRPCAST_STATUS_TRANSFERS = 2,
    /// Both of the above in one object.
    MSRPCAST_STATUS_ALL = 3,
    /// The counters of `msrpcast_stats` as a JSON object.
    MSRPCAST_STATUS_COUNTERS = 4,
}

const _: () = {
    assert!(
        msrpcast_status_what::MSRPCAST_STATUS_CONFERENCES as u32 == control::STATUS_CONFERENCES
    );
    assert!(msrpcast_status_what::MSRPCAST_STATUS_TRANSFERS as u32 == control::STATUS_TRANSFERS);
    assert!(msrpcast_status_what::MSRPCAST_STATUS_ALL as u32 == control::STATUS_ALL);
    assert!(msrpcast_status_what::MSRPCAST_STATUS_COUNTERS as u32 == control::STATUS_COUNTERS);
};

/// The counters `msrpcast_engine_stats` copies out: the runtime's own snapshot, which is
/// `#[repr(C)]` and named `msrpcast_stats` in the header (cbindgen.toml `[export.rename]`).
pub use crate::runtime::control::CounterSnapshot as msrpcast_stats;

struct Running {
    engine: Arc<Engine>,
    control: Option<ControlServer>,
    /// The HTTP handler started with the engine (`http_enabled`); stopped before the engine.
    /// Shared with the control thread (RELOAD_TLS), which ends first.
    http: Option<Arc<crate::http::HttpServer>>,
}

/// A running engine. Its functions are thread-safe, except `msrpcast_engine_free`, which must
/// not race with any other call on the same handle.
pub struct msrpcast_engine {
    state: RwLock<Option<Running>>,
    notify: Arc<Notify>,
    counters: Arc<Counters>,
    uploads: Arc<FileUploads>,
}

impl msrpcast_engine {
    fn with<T>(
        &self,
        f: impl FnOnce(&Running) -> Result<T, msrpcast_result>,
    ) -> Result<T, msrpcast_result> {
        let guard = self.state.read();
        let r = guard.as_ref().ok_or(MSRPCAST_ERR_STOPPED)?;
        f(r)
    }

    fn apply(&self, req: Request<'_>) -> FfiResult {
        self.with(|r| {
            control::apply(&r.engine, &self.counters, &self.uploads, &req)
                .map_err(|e| engine_code(&e))
        })
    }

    /// What `msrpcast_client_reload_tls` answers, for callers already in Rust (FreeSWITCH's
    /// `msrpcast reload_tls`): the JSON answer, or the result code and the reason.
    pub(super) fn reload_tls_json(&self) -> Result<String, (msrpcast_result, String)> {
        self.with(|r| Ok(control::reload_tls_logged(&r.engine, r.http.as_deref())))
            .map_err(|code| (code, "the engine is not running".to_owned()))?
    }

    /// What `msrpcast_engine_join` does, for callers already in Rust (the FreeSWITCH bridge).
    pub(super) fn join(
        &self,
        conference: &str,
        participant: &str,
        target: &str,
        display: Option<&str>,
    ) -> FfiResult {
        self.apply(Request::Join {
            conference: nonempty(conference)?,
            participant: nonempty(participant)?,
            target: nonempty(target)?,
            display: display.filter(|d| !d.is_empty()),
        })
    }

    /// What `msrpcast_engine_leave` does.
    pub(super) fn leave(&self, conference: &str, participant: &str) -> FfiResult {
        self.apply(Request::Leave {
            conference: nonempty(conference)?,
            participant: nonempty(participant)?,
        })
    }

    /// What `msrpcast_engine_cancel` does.
    pub(super) fn cancel(&self, transfer: u64) -> FfiResult {
        self.apply(Request::Cancel { transfer })
    }

    /// What `msrpcast_engine_upload_file` does: the new transfer's id.
    pub(super) fn upload_file(&self, conference: &str, path: &str) -> Result<u64, msrpcast_result> {
        self.upload_file_to(conference, path, None)
    }

    /// What `msrpcast_engine_upload_file_to` does (`to`: the chosen participants).
    pub(super) fn upload_file_to(
        &self,
        conference: &str,
        path: &str,
        to: Option<&[String]>,
    ) -> Result<u64, msrpcast_result> {
        let conference = nonempty(conference)?;
        let path = nonempty(path)?;
        let id = self.with(|r| {
            self.uploads
                .start_to(&r.engine, conference, Path::new(path), to)
                .map_err(|err| {
                    match &err {
                        UploadFileError::Forbidden(why) => r.engine.logger().warn(
                            "control",
                            format_args!("upload of a local file to {conference:?} refused: {why}"),
                        ),
                        UploadFileError::Engine(e) if to.is_some() => r.engine.logger().info(
                            "control",
                            format_args!("upload of a local file to {conference:?} refused: {e}"),
                        ),
                        _ => {}
                    }
                    upload_code(&err)
                })
        })?;
        self.counters.uploads.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// What `msrpcast_engine_status` answers, as a Rust string.
    pub(super) fn status_json(&self, what: u32) -> Result<String, msrpcast_result> {
        self.with(|r| {
            control::status_json(&r.engine, &self.counters, what).ok_or(MSRPCAST_ERR_INVALID_VALUE)
        })
    }

    fn stop(&self) {
        // Take the engine out first, so concurrent calls get MSRPCAST_ERR_STOPPED at once
        // instead of waiting for the threads to end.
        let running = self.state.write().take();
        if let Some(r) = running {
            // The control thread holds the other reference to the HTTP handler: it ends first,
            // so dropping ours stops the handler here.
            drop(r.control);
            drop(r.http);
            self.uploads.stop();
            stop_engine(r.engine);
        }
    }
}

/// The version, `"msrpcast 0.1.0"`: a static NUL-terminated string. Any thread.
#[no_mangle]
pub extern "C" fn msrpcast_version() -> *const c_char {
    const V: &str = concat!("msrpcast ", env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// Starts the engine (its threads, the MSRP listener, the spool, the control socket and, with
/// `http_enabled`, the HTTP upload page and API) from a copy of `cfg` and writes the handle to
/// `*out`. If any part cannot start (a port in use, the HTTP port included), nothing is left
/// running and the call fails. Call it in the process that is to own the threads and never fork
/// that process afterwards — in Kamailio the process forked in `child_init` for the engine,
/// never `mod_init`. On failure (`MSRPCAST_ERR_START`, `MSRPCAST_ERR_INVALID_CONFIG`,
/// `MSRPCAST_ERR_IO`) `msrpcast_config_error(cfg)` says why.
#[no_mangle]
pub extern "C" fn msrpcast_engine_start(
    cfg: *const msrpcast_config,
    out: *mut *mut msrpcast_engine,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: cfg is NULL or a live config (API contract).
        let c = unsafe { handle(cfg) }?;
        out_arg(out)?;
        if let Err(e) = c.cfg.validate() {
            c.set_error(e.to_string());
            return Err(MSRPCAST_ERR_INVALID_CONFIG);
        }
        let notify = Arc::new(Notify::new().map_err(|e| {
            c.set_error(format!("signal descriptor: {e}"));
            MSRPCAST_ERR_IO
        })?);
        // Log records wait in a bounded queue behind the same descriptor as the signals: no
        // Rust thread ever calls into the host to log.
        let logger = {
            let n = notify.clone();
            Logger::queue(
                c.cfg.log_level,
                DEFAULT_QUEUE_CAPACITY,
                Some(Arc::new(move || n.wake())),
            )
        };
        let engine = Arc::new(
            Engine::start_with_logger(c.cfg.clone(), logger).map_err(|e| {
                c.set_error(e.to_string());
                engine_code(&e)
            })?,
        );
        {
            let n = notify.clone();
            engine.set_signal_notify(Arc::new(move || n.wake()));
        }
        // Anything queued before the hooks were set is announced now.
        notify.wake();
        let counters = Arc::new(Counters::default());
        let uploads = Arc::new(FileUploads::default());
        let http = if c.cfg.http_enabled {
            // The upload page is the front door: without it the engine must not run.
            match crate::http::HttpServer::start(engine.clone(), engine.config()) {
                Ok(server) => Some(Arc::new(server)),
                Err(e) => {
                    c.set_error(format!("http_enabled: {e}"));
                    stop_engine(engine);
                    return Err(MSRPCAST_ERR_START);
                }
            }
        } else {
            None
        };
        let path = &c.cfg.control_socket;
        let control = if path.as_os_str().is_empty() {
            None
        } else {
            match ControlServer::start_with(
                path,
                engine.clone(),
                counters.clone(),
                uploads.clone(),
                http.clone(),
            ) {
                Ok(server) => Some(server),
                Err(e) => {
                    c.set_error(format!("control_socket {}: {e}", path.display()));
                    drop(http);
                    stop_engine(engine);
                    return Err(MSRPCAST_ERR_START);
                }
            }
        };
        c.set_error("");
        let e = Box::new(msrpcast_engine {
            state: RwLock::new(Some(Running {
                engine,
                control,
                http,
            })),
            notify,
            counters,
            uploads,
        });
        // SAFETY: out was checked non-NULL and is valid for writes (API contract).
        unsafe { write_out(out, Box::into_raw(e)) };
        Ok(())
    })
}

/// Stops the engine — running deliveries are aborted (`#` on the wire), spool files removed
/// (complete files with a record stay for the next start: `spool_persist`), the control
/// socket closed and removed, threads joined — but keeps the handle: later calls return
/// `MSRPCAST_ERR_STOPPED`, the signal descriptor stays open until `msrpcast_engine_free`.
/// Stopping twice is fine.
#[no_mangle]
pub extern "C" fn msrpcast_engine_stop(e: *mut msrpcast_engine) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        e.stop();
        Ok(())
    })
}

/// Stops the engine (as `msrpcast_engine_stop`) and frees the handle; the signal descriptor is
/// closed. NULL is allowed and does nothing. No other call on `e` may run concurrently.
#[no_mangle]
pub extern "C" fn msrpcast_engine_free(e: *mut msrpcast_engine) {
    // SAFETY: a non-NULL e came from msrpcast_engine_start (Box::into_raw) and is freed once,
    // with no concurrent call (API contract). Dropping it stops it (`impl Drop`).
    unsafe { free_box(e) }
}

/// Writes the descriptor that is readable while signals or log records wait. Poll it for
/// `POLLIN` on the host's own thread; on each wake-up call `msrpcast_engine_next_signal` until
/// it returns `MSRPCAST_EMPTY`. Owned by the engine: do not read, write or close it. Valid
/// until `msrpcast_engine_free`.
#[no_mangle]
pub extern "C" fn msrpcast_engine_signal_fd(
    e: *const msrpcast_engine,
    out_fd: *mut c_int,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        out_arg(out_fd)?;
        // SAFETY: out_fd was checked non-NULL and is valid for writes (API contract).
        unsafe { write_out(out_fd, e.notify.fd()) };
        Ok(())
    })
}

/// Takes the next signal — engine requests (OFFER, BYE) first, then log records — and writes it
/// to `*out` (free it with `msrpcast_signal_free`). `MSRPCAST_EMPTY` when none waits; the
/// descriptor has then been drained, and anything queued later makes it readable again, so
/// "poll, then call until EMPTY" never misses a signal. Any thread, but one consumer at a time
/// is the intended use.
#[no_mangle]
pub extern "C" fn msrpcast_engine_next_signal(
    e: *mut msrpcast_engine,
    out: *mut *mut msrpcast_signal,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        out_arg(out)?;
        let s = e.with(|r| {
            let take = || {
                r.engine
                    .next_signal()
                    .map(msrpcast_signal::from_signal)
                    .or_else(|| r.engine.logger().pop().map(msrpcast_signal::from_record))
            };
            match take() {
                Some(s) => Ok(s),
                None => {
                    e.notify.drain();
                    take().ok_or(MSRPCAST_EMPTY)
                }
            }
        })?;
        // SAFETY: out was checked non-NULL and is valid for writes (API contract).
        unsafe { write_out(out, Box::into_raw(Box::new(s))) };
        Ok(())
    })
}

/// A participant joined conference `conf`: file INVITEs go to `target` (a SIP URI); `display`
/// may be NULL. Idempotent. Queued: never blocks (`MSRPCAST_ERR_BUSY` when the queue is full).
#[no_mangle]
pub extern "C" fn msrpcast_engine_join(
    e: *mut msrpcast_engine,
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
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        // SAFETY: each pointer is NULL or points to its length in readable bytes (API contract).
        let (conf, participant, target, display) = unsafe {
            (
                str_arg(conf, conf_len)?,
                str_arg(participant, participant_len)?,
                str_arg(target, target_len)?,
                opt_str_arg(display, display_len)?,
            )
        };
        e.join(conf, participant, target, display)
    })
}

/// A participant left; its running deliveries are aborted. Idempotent. Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_engine_leave(
    e: *mut msrpcast_engine,
    conf: *const c_char,
    conf_len: usize,
    participant: *const c_char,
    participant_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        // SAFETY: each pointer is NULL or points to its length in readable bytes (API contract).
        let (conf, participant) = unsafe {
            (
                str_arg(conf, conf_len)?,
                str_arg(participant, participant_len)?,
            )
        };
        e.leave(conf, participant)
    })
}

/// The INVITE of `delivery` was answered 2xx with this SDP. Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_engine_answered(
    e: *mut msrpcast_engine,
    delivery: u64,
    sdp: *const c_char,
    sdp_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        // SAFETY: sdp is NULL or points to sdp_len readable bytes (API contract).
        let sdp = unsafe { nonempty_arg(sdp, sdp_len) }?;
        e.apply(Request::Answered { delivery, sdp })
    })
}

/// The INVITE of `delivery` failed with this final SIP code (300–699; 408 for a timeout).
#[no_mangle]
pub extern "C" fn msrpcast_engine_rejected(
    e: *mut msrpcast_engine,
    delivery: u64,
    sip_code: u32,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        check_sip_code(sip_code)?;
        e.apply(Request::Rejected { delivery, sip_code })
    })
}

/// The file session's dialog of `delivery` ended (BYE received, or the BYE the engine asked
/// for completed).
#[no_mangle]
pub extern "C" fn msrpcast_engine_ended(e: *mut msrpcast_engine, delivery: u64) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        e.apply(Request::Ended { delivery })
    })
}

/// Cancels a transfer: its upload stops and every delivery is aborted (`#`, then BYE signals).
/// `MSRPCAST_ERR_UNKNOWN_TRANSFER` for an unknown id.
#[no_mangle]
pub extern "C" fn msrpcast_engine_cancel(
    e: *mut msrpcast_engine,
    transfer: u64,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        e.cancel(transfer)
    })
}

/// Spools the local file at `path` (not NUL-terminated, UTF-8) as a new transfer to conference
/// `conf`, named by the path's last component, and writes its id to `*transfer` (NULL: not
/// wanted). The copy runs on an engine thread: this returns once the file is open and the
/// transfer exists, and deliveries start while it is being copied. The conference must have
/// participants (`MSRPCAST_ERR_UNKNOWN_CONFERENCE`, `MSRPCAST_ERR_REFUSED`); a path that is not
/// a regular file inside the `upload_dir` setting (symlinks and `..` resolved; a relative path is
/// taken from `upload_dir`), or any path while `upload_dir` is not set, gives
/// `MSRPCAST_ERR_FORBIDDEN` (the reason is logged); an unreadable file gives `MSRPCAST_ERR_IO`.
/// Joins are queued, so a join made just before may not be seen yet.
#[no_mangle]
pub extern "C" fn msrpcast_engine_upload_file(
    e: *mut msrpcast_engine,
    conf: *const c_char,
    conf_len: usize,
    path: *const c_char,
    path_len: usize,
    transfer: *mut u64,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        // SAFETY: conf is NULL or points to conf_len readable bytes (API contract).
        let conf = unsafe { str_arg(conf, conf_len) }?;
        // SAFETY: path is NULL or points to path_len readable bytes (API contract).
        let path = unsafe { str_arg(path, path_len) }?;
        let id = e.upload_file(conf, path)?;
        if !transfer.is_null() {
            // SAFETY: transfer is non-NULL and valid for writes (API contract).
            unsafe { write_out(transfer, id) };
        }
        Ok(())
    })
}

/// As `msrpcast_engine_upload_file`, for chosen participants only: `to` holds `to_count` (1 or
/// more) participant keys, `to_lens` their lengths (not NUL-terminated, UTF-8), each a key as
/// the conference lists it. Only they are offered the file, and participants who join later
/// never are. A key that is not a participant of the conference now, or `to_count` 0, gives
/// `MSRPCAST_ERR_INVALID_VALUE` (the reason is logged) and no transfer; a repeated key counts
/// once.
#[no_mangle]
pub extern "C" fn msrpcast_engine_upload_file_to(
    e: *mut msrpcast_engine,
    conf: *const c_char,
    conf_len: usize,
    path: *const c_char,
    path_len: usize,
    to: *const *const c_char,
    to_lens: *const usize,
    to_count: usize,
    transfer: *mut u64,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        // SAFETY: conf is NULL or points to conf_len readable bytes (API contract).
        let conf = unsafe { str_arg(conf, conf_len) }?;
        // SAFETY: path is NULL or points to path_len readable bytes (API contract).
        let path = unsafe { str_arg(path, path_len) }?;
        // SAFETY: to and to_lens are NULL or hold to_count readable elements, each key
        // to_lens[i] readable bytes (API contract).
        let keys = unsafe { keys_arg(to, to_lens, to_count) }?;
        let keys: Vec<String> = keys.into_iter().map(str::to_owned).collect();
        let id = e.upload_file_to(conf, path, Some(&keys))?;
        if !transfer.is_null() {
            // SAFETY: transfer is non-NULL and valid for writes (API contract).
            unsafe { write_out(transfer, id) };
        }
        Ok(())
    })
}

/// Conferences, participants and transfers as JSON (`what`: `MSRPCAST_STATUS_*`). Writes a
/// NUL-terminated string the caller frees with `msrpcast_string_free`, and its length without
/// the NUL. Takes the roster's lock only for a copy: fine on any thread.
#[no_mangle]
pub extern "C" fn msrpcast_engine_status(
    e: *mut msrpcast_engine,
    what: u32,
    json: *mut *mut c_char,
    len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        out_arg(json)?;
        out_arg(len)?;
        let text = e.status_json(what)?;
        let (ptr, n) = owned_c_string(text)?;
        // SAFETY: json and len were checked non-NULL and are valid for writes (API contract).
        unsafe {
            write_out(json, ptr);
            write_out(len, n);
        }
        Ok(())
    })
}

/// Copies the counters of the control socket and the direct calls into `*out`.
#[no_mangle]
pub extern "C" fn msrpcast_engine_stats(
    e: *const msrpcast_engine,
    out: *mut CounterSnapshot,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        out_arg(out)?;
        let s = e.counters.snapshot();
        // SAFETY: out was checked non-NULL and is valid for writes (API contract).
        unsafe { write_out(out, s) };
        Ok(())
    })
}

/// Re-reads the TLS certificates and keys in use — MSRP (`tls_cert`, `tls_key`, `tls_ca`, when
/// `msrp_tls` is on) and HTTPS (`http_tls_cert`, `http_tls_key`, when the HTTP handler started
/// with the engine serves HTTPS) — without a restart: new connections use the new files, running
/// deliveries and uploads keep theirs. A file that fails leaves its previous certificate in use:
/// `MSRPCAST_ERR_IO`, and `*error` gets the reason naming the file. `MSRPCAST_ERR_REFUSED` when
/// no TLS is on. On failure `*error` (when `error` is not NULL) is a NUL-terminated string the
/// caller frees with `msrpcast_string_free`, `*error_len` its length; on success `*error` is
/// NULL. Reads files: call it from the host's engine process, not a latency-critical thread.
#[no_mangle]
pub extern "C" fn msrpcast_engine_reload_tls(
    e: *mut msrpcast_engine,
    error: *mut *mut c_char,
    error_len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        let outcome = e.with(|r| Ok(crate::http::reload_tls(&r.engine, r.http.as_deref())))?;
        let (code, text) = match outcome {
            Ok(_) => (MSRPCAST_OK, None),
            Err(why) => (reload_code(&why), Some(why.to_string())),
        };
        if !error.is_null() {
            let (ptr, n) = match text {
                Some(t) => owned_c_string(t.replace('\0', " "))?,
                None => (std::ptr::null_mut(), 0),
            };
            // SAFETY: error is non-NULL and valid for writes (API contract).
            unsafe { write_out(error, ptr) };
            if !error_len.is_null() {
                // SAFETY: error_len is non-NULL and valid for writes (API contract).
                unsafe { write_out(error_len, n) };
            }
        }
        match code {
            MSRPCAST_OK => Ok(()),
            c => Err(c),
        }
    })
}

/// A participant offers a file to its conference: the SDP body of its INVITE (an RFC 5547 push
/// offer: `m=message … TCP/MSRP` or `TCP/TLS/MSRP`, `a=sendonly`, `a=file-selector` with the
/// size) to the conference's URI. `participant` is its key or the target URI it joined with
/// (the Contact of its conference call); `dialog` the host's key of this INVITE's dialog (its
/// Call-ID), which `msrpcast_engine_offer_in_ended` names at its BYE.
///
/// `MSRPCAST_OK` when the offer was decided, either way: `*status` is the SIP status to answer
/// with — 200 and `*body` the answer SDP (`a=recvonly`, `a=setup:passive`, our `a=path`; send
/// it with `Content-Type: application/sdp`), or the refusal (403 not a participant, 413 too
/// large or over the spool quota, 415 type not accepted, 486 more than
/// `offer_in_per_participant_per_min`, 488 not a push offer we can take, 503 no room) and
/// `*body` the reason. `*body` is NUL-terminated, `*body_len` its length; free it with
/// `msrpcast_string_free`. `*transfer` (when `transfer` is not NULL) gets the new transfer's id,
/// 0 on refusal. The file is then offered to every *other* participant and streamed to them
/// while it arrives. Creates a spool file; never waits for the network.
#[no_mangle]
pub extern "C" fn msrpcast_engine_offer_in(
    e: *mut msrpcast_engine,
    conf: *const c_char,
    conf_len: usize,
    participant: *const c_char,
    participant_len: usize,
    dialog: *const c_char,
    dialog_len: usize,
    sdp: *const c_char,
    sdp_len: usize,
    status: *mut u16,
    body: *mut *mut c_char,
    body_len: *mut usize,
    transfer: *mut u64,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        // SAFETY: each pointer is NULL or points to its length in readable bytes (API contract).
        let (conf, participant, dialog, sdp) = unsafe {
            (
                nonempty_arg(conf, conf_len)?,
                nonempty_arg(participant, participant_len)?,
                nonempty_arg(dialog, dialog_len)?,
                nonempty_arg(sdp, sdp_len)?,
            )
        };
        let out = OfferInOut::checked(status, body, body_len, transfer)?;
        let (code, id, text) = e.with(|r| {
            Ok(control::offer_in_answer(
                &r.engine,
                conf,
                participant,
                dialog,
                sdp,
            ))
        })?;
        // SAFETY: the pointers are valid for writes (API contract); checked() saw them non-NULL.
        unsafe { out.hand_out(code, id, &text) }
    })
}

/// The dialog of a participant's push offer ended (BYE received; `dialog` as given to
/// `msrpcast_engine_offer_in`): a file still arriving is aborted — its transfer fails with the
/// reason and its partial spool file goes —, a complete one stays. An unknown dialog is not an
/// error (it may be a delivery's). Never blocks.
#[no_mangle]
pub extern "C" fn msrpcast_engine_offer_in_ended(
    e: *mut msrpcast_engine,
    dialog: *const c_char,
    dialog_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        // SAFETY: dialog is NULL or points to dialog_len readable bytes (API contract).
        let dialog = unsafe { nonempty_arg(dialog, dialog_len) }?;
        e.apply(Request::OfferInEnded { dialog })
    })
}

/// Frees a string returned by `msrpcast_engine_status` or `msrpcast_client_status`. NULL is
/// allowed and does nothing.
#[no_mangle]
pub extern "C" fn msrpcast_string_free(s: *mut c_char) {
    // SAFETY: a non-NULL s came from CString::into_raw in this library (owned_c_string) and is
    // freed once (API contract).
    unsafe { free_with(s, CString::from_raw) }
}

/// A required string that must not be empty (as [`nonempty_arg`] for a C argument).
fn nonempty(s: &str) -> Result<&str, msrpcast_result> {
    if s.is_empty() {
        Err(MSRPCAST_ERR_INVALID_VALUE)
    } else {
        Ok(s)
    }
}

/// Stops the engine once its other owners (the control and HTTP threads) have ended.
/// `msrpcast_engine_free` drops the handle: the engine stops first (nothing if already stopped).
impl Drop for msrpcast_engine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stop_engine(engine: Arc<Engine>) {
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.stop(),
        // Cannot happen (the control and HTTP threads, the only other owners, have ended); the
        // last owner's drop stops it anyway.
        Err(shared) => drop(shared),
    }
}

/// A string handed to C: NUL-terminated, freed by `msrpcast_string_free`.
pub(crate) fn owned_c_string(text: String) -> Result<(*mut c_char, usize), msrpcast_result> {
    let n = text.len();
    // JSON text never holds a raw NUL (it is escaped as \u0000).
    let c = CString::new(text).map_err(|_| MSRPCAST_ERR_IO)?;
    Ok((c.into_raw(), n))
}

pub(crate) fn check_sip_code(code: u32) -> FfiResult {
    if (300..=699).contains(&code) {
        Ok(())
    } else {
        Err(MSRPCAST_ERR_INVALID_VALUE)
    }
}

/// Where an offer_in call (`msrpcast_engine_offer_in`, `msrpcast_client_offer_in`) puts the
/// decided answer: SIP status, body (an SDP answer or the refusal's reason) and transfer id.
pub(crate) struct OfferInOut {
    status: *mut u16,
    body: *mut *mut c_char,
    body_len: *mut usize,
    /// May be NULL: the caller does not want the transfer id.
    transfer: *mut u64,
}

impl OfferInOut {
    /// `MSRPCAST_ERR_NULL_POINTER` (as `out_arg`) unless status, body and body_len are non-NULL.
    pub(crate) fn checked(
        status: *mut u16,
        body: *mut *mut c_char,
        body_len: *mut usize,
        transfer: *mut u64,
    ) -> Result<OfferInOut, msrpcast_result> {
        out_arg(status)?;
        out_arg(body)?;
        out_arg(body_len)?;
        Ok(OfferInOut {
            status,
            body,
            body_len,
            transfer,
        })
    }

    /// Writes the answer (a NUL in the text becomes a space: the body is a C string).
    ///
    /// # Safety
    /// Each pointer given to [`OfferInOut::checked`] must be valid for one write (transfer: or
    /// NULL).
    pub(crate) unsafe fn hand_out(self, code: u16, id: u64, text: &str) -> FfiResult {
        let (ptr, n) = owned_c_string(text.replace('\0', " "))?;
        // SAFETY: checked() saw status, body and body_len non-NULL; the caller guarantees they
        // and a non-NULL transfer are valid for writes.
        unsafe {
            write_out(self.status, code);
            write_out(self.body, ptr);
            write_out(self.body_len, n);
            if !self.transfer.is_null() {
                write_out(self.transfer, id);
            }
        }
        Ok(())
    }
}
