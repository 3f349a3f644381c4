//! `msrpcast_fs`: the FreeSWITCH module's decisions behind the C ABI ([`crate::freeswitch`]).
//!
//! FreeSWITCH runs the engine in its own process, so `mod_msrpcast` calls `msrpcast_engine_*`
//! directly; these functions add what is particular to FreeSWITCH: its settings next to the
//! engine's (`msrpcast.conf.xml`), `conference::maintenance` events given as header pairs, the
//! dialplan application's argument, the sofia destination of a file INVITE, the SIP code of a
//! failed leg and the `msrpcast` API command. Joins, leaves and the API's engine commands reach
//! the engine through the handle's Rust methods (the ones `msrpcast_engine_*` use, so they are
//! counted the same), never back through this crate's own `extern "C"` functions.
//!
//! The functions that answer with a text (`msrpcast_fs_event`, `msrpcast_fs_app_check`,
//! `msrpcast_fs_api`) write it on success **and** on the errors their documentation lists, because
//! the text is then the diagnosis the host logs; it is the host's, freed with
//! `msrpcast_string_free`. That is the one exception to "outputs only on success".

use std::ffi::c_char;

use super::boundary::*;
use super::config::msrpcast_config;
use super::engine::{msrpcast_engine, owned_c_string};
use super::result::*;
use crate::config::ConfigErrorKind;
use crate::freeswitch::api::{self, ApiCommand};
use crate::freeswitch::{self as fs, Bridge, Event, EventOutcome, FsError, Membership, OptIn};

/// The FreeSWITCH side's state: settings and the members it joined. Thread-safe, except
/// `msrpcast_fs_config_set` and `msrpcast_fs_free`, which must not run concurrently with anything
/// else on the handle (FreeSWITCH: module load and unload).
pub struct msrpcast_fs {
    bridge: Bridge,
    /// `Settings::channel_variables`, each followed by a NUL (for `msrpcast_fs_variable_name`).
    variables: Vec<String>,
    /// Variables of every file leg, names and values followed by a NUL
    /// (`msrpcast_fs_leg_variable`).
    leg_variables: Vec<(String, String)>,
}

impl msrpcast_fs {
    fn refresh_leg_variables(&mut self, cfg: &crate::config::Config) {
        self.leg_variables = fs::leg_variables(cfg)
            .into_iter()
            .map(|(n, v)| (format!("{n}\0"), format!("{v}\0")))
            .collect();
    }

    fn refresh_variables(&mut self) {
        self.variables = self
            .bridge
            .settings()
            .channel_variables()
            .into_iter()
            .map(|mut v| {
                v.push('\0');
                v
            })
            .collect();
    }
}

/// One event header (or looked-up channel variable, named `variable_<name>`) as pointer +
/// length pairs. Values need not be UTF-8 (invalid bytes become U+FFFD); a NULL value is empty.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msrpcast_fs_header {
    pub name: *const c_char,
    pub name_len: usize,
    pub value: *const c_char,
    pub value_len: usize,
}

/// What `msrpcast_fs_event` did.
///
/// cbindgen:prefix-with-name=false
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum msrpcast_fs_outcome {
    /// Nothing: another action, a conference not configured, a member not opted in, a leave of
    /// a member never joined.
    MSRPCAST_FS_IGNORED = 0,
    /// A member was joined.
    MSRPCAST_FS_JOINED = 1,
    /// A member already joined was joined again (duplicate `add-member`; idempotent).
    MSRPCAST_FS_ALREADY_JOINED = 2,
    /// A member left.
    MSRPCAST_FS_LEFT = 3,
    /// A conference ended: every member the module had joined to it left.
    MSRPCAST_FS_CONFERENCE_ENDED = 4,
}

/// At most this many headers per event (FreeSWITCH sends about 80).
const MAX_HEADERS: usize = 4096;

fn fs_error_code(e: &FsError) -> msrpcast_result {
    match e {
        FsError::Engine { code, .. } => {
            super::result::from_u32(*code).unwrap_or(MSRPCAST_ERR_INVALID_VALUE)
        }
        _ => MSRPCAST_ERR_INVALID_VALUE,
    }
}

/// Writes an owned text to the optional outputs `text`/`len` (either may be NULL: skipped).
///
/// # Safety
/// Non-NULL pointers must be valid for writes.
unsafe fn write_text(text: *mut *mut c_char, len: *mut usize, s: String) {
    if text.is_null() {
        return;
    }
    if let Ok((p, n)) = owned_c_string(s.replace('\0', "")) {
        // SAFETY: text is non-NULL and valid for writes (contract of this function).
        unsafe { write_out(text, p) };
        if !len.is_null() {
            // SAFETY: len is non-NULL and valid for writes (contract of this function).
            unsafe { write_out(len, n) };
        }
    }
}

/// Makes the FreeSWITCH state with default settings (conferences `all`, no opt-in required,
/// targets from the contact, sofia profile `internal`) and sets FreeSWITCH's defaults on `cfg`:
/// `control_socket` empty (one process: the module calls the engine directly). Free with
/// `msrpcast_fs_free`.
#[no_mangle]
pub extern "C" fn msrpcast_fs_new(
    cfg: *mut msrpcast_config,
    out: *mut *mut msrpcast_fs,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: cfg is NULL or a live config used by this thread only (API contract).
        let cfg = unsafe { handle_mut(cfg) }?;
        out_arg(out)?;
        cfg.cfg
            .set("control_socket", "")
            .map_err(|_| MSRPCAST_ERR_INVALID_CONFIG)?;
        let mut f = Box::new(msrpcast_fs {
            bridge: Bridge::default(),
            variables: Vec::new(),
            leg_variables: Vec::new(),
        });
        f.refresh_variables();
        f.refresh_leg_variables(&cfg.cfg);
        // SAFETY: out was checked non-NULL and is valid for writes (API contract).
        unsafe { write_out(out, Box::into_raw(f)) };
        Ok(())
    })
}

/// Frees the FreeSWITCH state. NULL is allowed and does nothing. It does not leave the members
/// it joined: stopping the engine ends everything.
#[no_mangle]
pub extern "C" fn msrpcast_fs_free(fs: *mut msrpcast_fs) {
    // SAFETY: a non-NULL fs came from msrpcast_fs_new (Box::into_raw) and is freed once.
    unsafe { free_box(fs) }
}

/// One `<param name="key" value="value"/>` of `msrpcast.conf.xml`: a FreeSWITCH-only key
/// (`conferences`, `require_optin`, `target_template`, `sofia_profile`) goes to `fs`, any other
/// to the engine settings in `cfg` (as `msrpcast_config_set`). Errors
/// (`MSRPCAST_ERR_UNKNOWN_KEY`, `MSRPCAST_ERR_INVALID_VALUE`) leave the setting unchanged, and
/// `msrpcast_config_error(cfg)` names the key and why, for both kinds of keys.
#[no_mangle]
pub extern "C" fn msrpcast_fs_config_set(
    fs: *mut msrpcast_fs,
    cfg: *mut msrpcast_config,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: fs is NULL or a live handle used by this thread only (API contract).
        let f = unsafe { handle_mut(fs) }?;
        // SAFETY: cfg is NULL or a live config used by this thread only (API contract).
        let cfg = unsafe { handle_mut(cfg) }?;
        // SAFETY: key and value point to their lengths in readable bytes (API contract).
        let (key, value) = match unsafe { (str_arg(key, key_len), str_arg(value, value_len)) } {
            (Ok(k), Ok(v)) => (k, v),
            (Err(e), _) | (_, Err(e)) => {
                cfg.set_error(format!("key or value rejected: {}", e.name_str()));
                return Err(e);
            }
        };
        match f.bridge.settings_mut().set(key, value) {
            Ok(true) => {
                f.refresh_variables();
                cfg.set_error("");
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => {
                cfg.set_error(e.to_string());
                return Err(MSRPCAST_ERR_INVALID_VALUE);
            }
        }
        match cfg.cfg.set(key, value) {
            Ok(()) => {
                f.refresh_leg_variables(&cfg.cfg);
                cfg.set_error("");
                Ok(())
            }
            Err(e) => {
                cfg.set_error(e.to_string());
                Err(match e.kind {
                    ConfigErrorKind::Unknown => MSRPCAST_ERR_UNKNOWN_KEY,
                    ConfigErrorKind::Invalid => MSRPCAST_ERR_INVALID_VALUE,
                })
            }
        }
    })
}

/// The `index`-th channel variable the host is to look up on the member's channel (by
/// `Unique-ID`) and pass with an `add-member` event as a header `variable_<name>`: `msrpcast`,
/// `sip_contact_uri`, `sip_contact_params`, `sip_network_ip`, `sip_network_port`,
/// `sip_via_protocol` and the target template's variables. `MSRPCAST_EMPTY` past the last one.
/// The name is NUL-terminated and lives until the next `msrpcast_fs_config_set` or the free.
#[no_mangle]
pub extern "C" fn msrpcast_fs_variable_name(
    fs: *const msrpcast_fs,
    index: usize,
    name: *mut *const c_char,
    len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: fs is NULL or a live handle (API contract).
        let f = unsafe { handle(fs) }?;
        out_arg(name)?;
        out_arg(len)?;
        let v = f.variables.get(index).ok_or(MSRPCAST_EMPTY)?;
        // SAFETY: name and len were checked non-NULL and are valid for writes (API contract).
        unsafe {
            write_out(name, v.as_ptr().cast::<c_char>());
            write_out(len, v.len() - 1);
        }
        Ok(())
    })
}

/// The `index`-th variable to put on every file leg (in the `var_event` of
/// `switch_core_session_outgoing_channel`): `sip_enable_soa=false` (sofia-sip must not rewrite
/// the engine's SDP) and, with `outbound_proxy` set, `sip_route_uri`. `MSRPCAST_EMPTY` past the
/// last one. Both strings are NUL-terminated and live until the next `msrpcast_fs_config_set`
/// or the free.
#[no_mangle]
pub extern "C" fn msrpcast_fs_leg_variable(
    fs: *const msrpcast_fs,
    index: usize,
    name: *mut *const c_char,
    name_len: *mut usize,
    value: *mut *const c_char,
    value_len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: fs is NULL or a live handle (API contract).
        let f = unsafe { handle(fs) }?;
        out_arg(name)?;
        out_arg(name_len)?;
        out_arg(value)?;
        out_arg(value_len)?;
        let (n, v) = f.leg_variables.get(index).ok_or(MSRPCAST_EMPTY)?;
        // SAFETY: the outputs were checked non-NULL and are valid for writes (API contract).
        unsafe {
            write_out(name, n.as_ptr().cast::<c_char>());
            write_out(name_len, n.len() - 1);
            write_out(value, v.as_ptr().cast::<c_char>());
            write_out(value_len, v.len() - 1);
        }
        Ok(())
    })
}

/// Joins and leaves go straight to the engine handle's Rust methods (the same ones
/// `msrpcast_engine_join`/`_leave` use), not back through the C ABI.
struct EngineMembership<'a>(&'a msrpcast_engine);

fn engine_result(r: FfiResult, what: &str) -> Result<(), FsError> {
    r.map_err(|code| FsError::Engine {
        code: code as u32,
        reason: format!("{what} refused: {}", code.name_str()),
    })
}

impl Membership for EngineMembership<'_> {
    fn join(
        &mut self,
        conference: &str,
        participant: &str,
        target: &str,
        display: Option<&str>,
    ) -> Result<(), FsError> {
        engine_result(
            self.0.join(conference, participant, target, display),
            "join",
        )
    }

    fn leave(&mut self, conference: &str, participant: &str) -> Result<(), FsError> {
        engine_result(self.0.leave(conference, participant), "leave")
    }
}

/// Handles one `conference::maintenance` event, given as `count` header pairs (the event's
/// headers, then the channel variables of `msrpcast_fs_variable_name` as `variable_<name>`;
/// later pairs win): joins or leaves members on `e` and writes what it did to `*outcome`.
/// `text`/`text_len` (optional, NULL to skip) receive a sentence for the log — also on
/// `MSRPCAST_ERR_INVALID_VALUE` (a header missing, named in the text, or unusable) and on the
/// engine's errors (`MSRPCAST_ERR_BUSY`, `MSRPCAST_ERR_STOPPED`, …), when nothing was recorded.
/// Any thread; events may come from several at once.
#[no_mangle]
pub extern "C" fn msrpcast_fs_event(
    fs: *const msrpcast_fs,
    e: *mut msrpcast_engine,
    headers: *const msrpcast_fs_header,
    count: usize,
    outcome: *mut msrpcast_fs_outcome,
    text: *mut *mut c_char,
    text_len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: fs is NULL or a live handle (API contract).
        let f = unsafe { handle(fs) }?;
        // SAFETY: e is NULL or a live engine handle (API contract).
        let e = unsafe { handle(e) }?;
        if headers.is_null() {
            return Err(MSRPCAST_ERR_NULL_ARGUMENT);
        }
        out_arg(outcome)?;
        if count > MAX_HEADERS {
            return Err(MSRPCAST_ERR_TOO_LONG);
        }
        // SAFETY: headers is non-NULL and points to count readable, initialised pairs (API
        // contract); count <= 4096 keeps the size far below isize::MAX.
        let pairs = unsafe { std::slice::from_raw_parts(headers, count) };
        let mut ev = Event::new();
        for h in pairs {
            // SAFETY: each name/value is NULL or points to its length in readable bytes.
            let (name, value) = unsafe {
                (
                    bytes_arg(h.name, h.name_len)?,
                    opt_bytes(h.value, h.value_len)?,
                )
            };
            ev.push(
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            );
        }
        match f.bridge.handle(&ev, &mut EngineMembership(e)) {
            Ok(report) => {
                let o = match report.outcome {
                    EventOutcome::Ignored => msrpcast_fs_outcome::MSRPCAST_FS_IGNORED,
                    EventOutcome::Joined => msrpcast_fs_outcome::MSRPCAST_FS_JOINED,
                    EventOutcome::AlreadyJoined => msrpcast_fs_outcome::MSRPCAST_FS_ALREADY_JOINED,
                    EventOutcome::Left => msrpcast_fs_outcome::MSRPCAST_FS_LEFT,
                    EventOutcome::ConferenceEnded => {
                        msrpcast_fs_outcome::MSRPCAST_FS_CONFERENCE_ENDED
                    }
                };
                // SAFETY: outcome was checked non-NULL; text/len are NULL or writable (API
                // contract).
                unsafe {
                    write_out(outcome, o);
                    write_text(text, text_len, report.text);
                }
                Ok(())
            }
            Err(err) => {
                // SAFETY: text/len are NULL or writable (API contract).
                unsafe { write_text(text, text_len, err.to_string()) };
                Err(fs_error_code(&err))
            }
        }
    })
}

/// A required byte string: NULL → `MSRPCAST_ERR_NULL_ARGUMENT`, over 64 KiB → `TOO_LONG`.
///
/// # Safety
/// A non-NULL `p` points to `len` readable bytes.
unsafe fn bytes_arg<'a>(p: *const c_char, len: usize) -> Result<&'a [u8], msrpcast_result> {
    if p.is_null() {
        return Err(MSRPCAST_ERR_NULL_ARGUMENT);
    }
    if len > MAX_STRING_BYTES {
        return Err(MSRPCAST_ERR_TOO_LONG);
    }
    // SAFETY: p is non-NULL and points to len readable bytes (contract); len <= 64 KiB.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// An optional byte string: NULL is empty.
///
/// # Safety
/// As [`bytes_arg`].
unsafe fn opt_bytes<'a>(p: *const c_char, len: usize) -> Result<&'a [u8], msrpcast_result> {
    if p.is_null() {
        return Ok(&[]);
    }
    // SAFETY: forwarded contract.
    unsafe { bytes_arg(p, len) }
}

/// Checks the argument of the `msrpcast` dialplan application (which the host then stores
/// verbatim in the channel variable `msrpcast`): words `on`/`off`, `display=…`, `target=<sip
/// uri>`, quoted with `'` or `"` when they hold spaces. `text` (optional) gets what it means
/// (`opted in, display "Alice"`), or on `MSRPCAST_ERR_INVALID_VALUE` why not.
#[no_mangle]
pub extern "C" fn msrpcast_fs_app_check(
    data: *const c_char,
    data_len: usize,
    text: *mut *mut c_char,
    text_len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: data is NULL or points to data_len readable bytes (API contract).
        let data = unsafe { opt_str_arg(data, data_len) }?.unwrap_or("");
        match OptIn::parse(data) {
            Ok(o) => {
                let mut s = String::from(if o.enabled { "opted in" } else { "opted out" });
                if let Some(d) = &o.display {
                    s.push_str(&format!(", display {d:?}"));
                }
                if let Some(t) = &o.target {
                    s.push_str(&format!(", target {t}"));
                }
                // SAFETY: text/len are NULL or writable (API contract).
                unsafe { write_text(text, text_len, s) };
                Ok(())
            }
            Err(reason) => {
                // SAFETY: text/len are NULL or writable (API contract).
                unsafe { write_text(text, text_len, format!("msrpcast {data:?}: {reason}")) };
                Err(MSRPCAST_ERR_INVALID_VALUE)
            }
        }
    })
}

/// The destination of the file INVITE for `switch_core_session_outgoing_channel` on the `sofia`
/// endpoint: `<sofia_profile>/<target>`, after checking the target once more
/// (`MSRPCAST_ERR_INVALID_VALUE` for anything a dial string would misread). The string is the
/// caller's (`msrpcast_string_free`).
#[no_mangle]
pub extern "C" fn msrpcast_fs_dial(
    fs: *const msrpcast_fs,
    target: *const c_char,
    target_len: usize,
    dest: *mut *mut c_char,
    dest_len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: fs is NULL or a live handle (API contract).
        let f = unsafe { handle(fs) }?;
        // SAFETY: target is NULL or points to target_len readable bytes (API contract).
        let target = unsafe { nonempty_arg(target, target_len) }?;
        out_arg(dest)?;
        out_arg(dest_len)?;
        let d = f
            .bridge
            .settings()
            .sofia_destination(target)
            .map_err(|_| MSRPCAST_ERR_INVALID_VALUE)?;
        let (p, n) = owned_c_string(d)?;
        // SAFETY: dest and dest_len were checked non-NULL and are valid for writes.
        unsafe {
            write_out(dest, p);
            write_out(dest_len, n);
        }
        Ok(())
    })
}

/// The SIP code to report (`msrpcast_engine_rejected`) for a file leg that ended without a 2xx:
/// its `sip_term_status` variable when that is 300–699 (NULL or length 0: none), else its
/// hangup cause (`switch_call_cause_t`) mapped as mod_sofia does, timeouts as 408. Always
/// 300–699.
#[no_mangle]
pub extern "C" fn msrpcast_fs_failure_code(
    hangup_cause: u32,
    sip_term_status: *const c_char,
    len: usize,
) -> u32 {
    ffi_boundary_or(480, || {
        // SAFETY: sip_term_status is NULL or points to len readable bytes (API contract).
        let status = unsafe { opt_str_arg(sip_term_status, len) }.ok().flatten();
        fs::failure_code(hangup_cause, status)
    })
}

/// Runs the API command `msrpcast <cmd>` (`status`, `conferences`, `transfers`, `counters`,
/// `members`, `cancel <transfer>`, `upload <conference> <path>` → `{"transfer":<id>}`, `help`) and writes its JSON answer to `*json` (the caller's,
/// `msrpcast_string_free`). On an error — `MSRPCAST_ERR_INVALID_VALUE` for an unknown command,
/// the engine's code otherwise — `*json` is `{"error":"…"}`. `e` may be NULL (engine not
/// running): only `members` and `help` then succeed.
#[no_mangle]
pub extern "C" fn msrpcast_fs_api(
    fs: *const msrpcast_fs,
    e: *mut msrpcast_engine,
    cmd: *const c_char,
    cmd_len: usize,
    json: *mut *mut c_char,
    json_len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: fs is NULL or a live handle (API contract).
        let f = unsafe { handle(fs) }?;
        out_arg(json)?;
        out_arg(json_len)?;
        // SAFETY: cmd is NULL or points to cmd_len readable bytes (API contract).
        let cmd = unsafe { opt_str_arg(cmd, cmd_len) }?.unwrap_or("");
        // SAFETY: e is NULL or a live engine handle (API contract).
        let engine = unsafe { e.as_ref() };
        let answer = ApiCommand::parse(cmd)
            .map_err(|msg| (MSRPCAST_ERR_INVALID_VALUE, msg))
            .and_then(|command| api_answer(f, engine, command));
        match answer {
            Ok(s) => {
                // SAFETY: json and json_len were checked non-NULL and are writable.
                unsafe { write_text(json, json_len, s) };
                Ok(())
            }
            Err((code, msg)) => {
                // SAFETY: as above.
                unsafe { write_text(json, json_len, api::error_json(&msg)) };
                Err(code)
            }
        }
    })
}

/// The answer to one API command; the commands that need the engine call its Rust methods.
fn api_answer(
    f: &msrpcast_fs,
    e: Option<&msrpcast_engine>,
    command: ApiCommand,
) -> Result<String, (msrpcast_result, String)> {
    let engine = || {
        e.ok_or((
            MSRPCAST_ERR_STOPPED,
            "the engine is not running".to_string(),
        ))
    };
    let refused =
        |code: msrpcast_result, what: String| (code, format!("{what}: {}", code.name_str()));
    match command {
        ApiCommand::Help => Ok(format!("{{\"usage\":{}}}", crate::json::escape(api::USAGE))),
        ApiCommand::Members => Ok(api::members_json(&f.bridge.joined())),
        ApiCommand::Status(what) => engine()?
            .status_json(what)
            .map_err(|code| refused(code, "status".into())),
        ApiCommand::Cancel(id) => engine()?
            .cancel(id)
            .map(|()| format!("{{\"cancelled\":{id}}}"))
            .map_err(|code| refused(code, format!("cancel {id}"))),
        ApiCommand::Upload { conference, path } => engine()?
            .upload_file(&conference, &path)
            .map(|id| format!("{{\"transfer\":{id}}}"))
            .map_err(|code| refused(code, format!("upload {path} to {conference}"))),
        ApiCommand::ReloadTls => engine()?
            .reload_tls_json()
            .map_err(|(code, reason)| refused(code, format!("reload_tls: {reason}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::config::{msrpcast_config_error, msrpcast_config_free, msrpcast_config_new};
    use crate::ffi::engine::msrpcast_string_free;

    fn text_of(p: *mut c_char, n: usize) -> String {
        // SAFETY: p came from this library with n bytes.
        let s = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) };
        let t = String::from_utf8(s.to_vec()).unwrap();
        msrpcast_string_free(p);
        t
    }

    fn set(f: *mut msrpcast_fs, c: *mut msrpcast_config, k: &str, v: &str) -> msrpcast_result {
        msrpcast_fs_config_set(f, c, k.as_ptr().cast(), k.len(), v.as_ptr().cast(), v.len())
    }

    #[test]
    fn config_routes_keys_and_reports_errors() {
        let mut c = std::ptr::null_mut();
        let mut f = std::ptr::null_mut();
        assert_eq!(msrpcast_config_new(&mut c), MSRPCAST_OK);
        assert_eq!(msrpcast_fs_new(c, &mut f), MSRPCAST_OK);
        assert_eq!(set(f, c, "require_optin", "yes"), MSRPCAST_OK);
        assert_eq!(set(f, c, "chunk_bytes", "2048"), MSRPCAST_OK);
        assert_eq!(set(f, c, "no_such_key", "1"), MSRPCAST_ERR_UNKNOWN_KEY);
        assert_eq!(set(f, c, "conferences", " , "), MSRPCAST_ERR_INVALID_VALUE);
        let (mut m, mut n) = (std::ptr::null(), 0usize);
        assert_eq!(msrpcast_config_error(c, &mut m, &mut n), MSRPCAST_OK);
        // SAFETY: m points to n bytes owned by the config.
        let msg =
            std::str::from_utf8(unsafe { std::slice::from_raw_parts(m.cast::<u8>(), n) }).unwrap();
        assert!(msg.contains("conferences"), "{msg}");
        // SAFETY: c and f are live.
        unsafe {
            assert_eq!((*c).cfg.chunk_bytes, 2048);
            assert!((*c).cfg.control_socket.as_os_str().is_empty());
            assert!((*f).bridge.settings().require_optin);
        }
        set(
            f,
            c,
            "target_template",
            "sip:${Caller-Caller-ID-Number}@${my_ip}",
        );
        let mut names = Vec::new();
        let mut i = 0;
        loop {
            let (mut p, mut l) = (std::ptr::null(), 0usize);
            match msrpcast_fs_variable_name(f, i, &mut p, &mut l) {
                MSRPCAST_OK => {
                    // SAFETY: p points to l bytes owned by f.
                    let s = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), l) };
                    names.push(String::from_utf8(s.to_vec()).unwrap());
                }
                MSRPCAST_EMPTY => break,
                r => panic!("{r:?}"),
            }
            i += 1;
        }
        assert_eq!(names.first().map(String::as_str), Some("msrpcast"));
        assert_eq!(names.last().map(String::as_str), Some("my_ip"));
        msrpcast_fs_free(f);
        msrpcast_fs_free(std::ptr::null_mut());
        msrpcast_config_free(c);
    }

    #[test]
    fn app_check_dial_and_codes() {
        let (mut t, mut n) = (std::ptr::null_mut(), 0usize);
        let ok = "display='Alice Smith'";
        assert_eq!(
            msrpcast_fs_app_check(ok.as_ptr().cast(), ok.len(), &mut t, &mut n),
            MSRPCAST_OK
        );
        assert_eq!(text_of(t, n), "opted in, display \"Alice Smith\"");
        let bad = "colour=red";
        assert_eq!(
            msrpcast_fs_app_check(bad.as_ptr().cast(), bad.len(), &mut t, &mut n),
            MSRPCAST_ERR_INVALID_VALUE
        );
        assert!(text_of(t, n).contains("colour"));
        assert_eq!(
            msrpcast_fs_app_check(
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            MSRPCAST_OK
        );

        let mut c = std::ptr::null_mut();
        let mut f = std::ptr::null_mut();
        msrpcast_config_new(&mut c);
        msrpcast_fs_new(c, &mut f);
        let target = "sip:1000@192.0.2.7:5060";
        assert_eq!(
            msrpcast_fs_dial(f, target.as_ptr().cast(), target.len(), &mut t, &mut n),
            MSRPCAST_OK
        );
        assert_eq!(text_of(t, n), "internal/sip:1000@192.0.2.7:5060");
        let evil = "sip:a@b,sip:c@d";
        assert_eq!(
            msrpcast_fs_dial(f, evil.as_ptr().cast(), evil.len(), &mut t, &mut n),
            MSRPCAST_ERR_INVALID_VALUE
        );
        let st = "486";
        assert_eq!(msrpcast_fs_failure_code(21, st.as_ptr().cast(), 3), 486);
        assert_eq!(msrpcast_fs_failure_code(102, std::ptr::null(), 0), 408);

        // The API without an engine: members and help work, the rest says why not.
        let cmd = "members";
        assert_eq!(
            msrpcast_fs_api(
                f,
                std::ptr::null_mut(),
                cmd.as_ptr().cast(),
                cmd.len(),
                &mut t,
                &mut n
            ),
            MSRPCAST_OK
        );
        assert_eq!(text_of(t, n), "{\"members\":[]}");
        let cmd = "transfers";
        assert_eq!(
            msrpcast_fs_api(
                f,
                std::ptr::null_mut(),
                cmd.as_ptr().cast(),
                cmd.len(),
                &mut t,
                &mut n
            ),
            MSRPCAST_ERR_STOPPED
        );
        assert!(text_of(t, n).starts_with("{\"error\":"));
        msrpcast_fs_free(f);
        msrpcast_config_free(c);
    }
}
