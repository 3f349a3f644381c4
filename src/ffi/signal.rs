//! `msrpcast_signal`: one request of the engine for the host (an OFFER to send, a BYE), or one
//! log record, taken with `msrpcast_engine_next_signal`.

use std::ffi::c_char;

use super::boundary::*;
use crate::runtime::engine::Signal;
use crate::runtime::log::{Level, Record};

/// What a signal asks for (`msrpcast_signal_kind`).
///
/// cbindgen:prefix-with-name=false
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum msrpcast_signal_type {
    /// Not a signal (a NULL pointer was passed).
    MSRPCAST_SIGNAL_NONE = 0,
    /// Send an INVITE: target, SDP and sender are set; answer with `*_answered` or `*_rejected`.
    MSRPCAST_SIGNAL_OFFER = 1,
    /// End the file session of a delivery (BYE after a 2xx, CANCEL before); then `*_ended`.
    MSRPCAST_SIGNAL_BYE = 2,
    /// A log record: level and text are set.
    MSRPCAST_SIGNAL_LOG = 3,
}

/// The level of a LOG signal (`msrpcast_signal_log_level`); map it to the host's levels.
///
/// cbindgen:prefix-with-name=false
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum msrpcast_log_level {
    /// Not a LOG signal.
    MSRPCAST_LOG_NONE = 0,
    MSRPCAST_LOG_ERROR = 1,
    MSRPCAST_LOG_WARN = 2,
    MSRPCAST_LOG_INFO = 3,
    MSRPCAST_LOG_DEBUG = 4,
}

pub use msrpcast_log_level::*;
pub use msrpcast_signal_type::*;

/// One signal, owned by the host until `msrpcast_signal_free`. Immutable: any thread may read it.
pub struct msrpcast_signal {
    kind: msrpcast_signal_type,
    delivery: u64,
    /// Each string is stored with a trailing NUL that the accessors do not count.
    target: String,
    sdp: String,
    sender: String,
    level: msrpcast_log_level,
    text: String,
}

fn with_nul(s: &str) -> String {
    let mut t = String::with_capacity(s.len() + 1);
    t.push_str(s);
    t.push('\0');
    t
}

impl msrpcast_signal {
    fn empty(kind: msrpcast_signal_type) -> msrpcast_signal {
        msrpcast_signal {
            kind,
            delivery: 0,
            target: with_nul(""),
            sdp: with_nul(""),
            sender: with_nul(""),
            level: MSRPCAST_LOG_NONE,
            text: with_nul(""),
        }
    }

    pub(crate) fn from_signal(s: Signal) -> msrpcast_signal {
        match s {
            Signal::Offer {
                delivery,
                target_uri,
                sdp,
                sender_uri,
            } => msrpcast_signal {
                delivery: delivery.0,
                target: with_nul(&target_uri),
                sdp: with_nul(&sdp),
                sender: with_nul(&sender_uri),
                ..msrpcast_signal::empty(MSRPCAST_SIGNAL_OFFER)
            },
            Signal::Bye { delivery } => msrpcast_signal {
                delivery: delivery.0,
                ..msrpcast_signal::empty(MSRPCAST_SIGNAL_BYE)
            },
        }
    }

    pub(crate) fn from_record(r: Record) -> msrpcast_signal {
        let level = match r.level {
            Level::Error => MSRPCAST_LOG_ERROR,
            Level::Warn => MSRPCAST_LOG_WARN,
            Level::Info => MSRPCAST_LOG_INFO,
            Level::Debug => MSRPCAST_LOG_DEBUG,
        };
        let mut text = String::with_capacity(r.target.len() + r.message.len() + 3);
        text.push_str(r.target);
        text.push_str(": ");
        text.push_str(&r.message);
        text.retain(|c| c != '\0');
        msrpcast_signal {
            level,
            text: with_nul(&text),
            ..msrpcast_signal::empty(MSRPCAST_SIGNAL_LOG)
        }
    }
}

/// # Safety
/// `s` is NULL or a live signal.
unsafe fn sig<'a>(s: *const msrpcast_signal) -> Option<&'a msrpcast_signal> {
    // SAFETY: by this function's contract.
    unsafe { handle(s) }.ok()
}

/// Writes a stored (NUL-terminated) string to the two outputs; NULL outputs are skipped.
///
/// # Safety
/// `ptr` and `len` are NULL or valid for writes.
unsafe fn put(v: &str, ptr: *mut *const c_char, len: *mut usize) {
    let n = v.len().saturating_sub(1);
    if !ptr.is_null() {
        // SAFETY: non-NULL and valid for writes by this function's contract.
        unsafe { write_out(ptr, v.as_ptr().cast::<c_char>()) };
    }
    if !len.is_null() {
        // SAFETY: as above.
        unsafe { write_out(len, n) };
    }
}

/// `MSRPCAST_SIGNAL_OFFER`, `_BYE` or `_LOG`; `MSRPCAST_SIGNAL_NONE` (0) for NULL.
#[no_mangle]
pub extern "C" fn msrpcast_signal_kind(s: *const msrpcast_signal) -> msrpcast_signal_type {
    ffi_boundary_or(MSRPCAST_SIGNAL_NONE, || {
        // SAFETY: s is NULL or a live signal (API contract).
        unsafe { sig(s) }.map_or(MSRPCAST_SIGNAL_NONE, |s| s.kind)
    })
}

/// The delivery an OFFER or BYE is about (pass it to `*_answered`, `*_rejected`, `*_ended`);
/// 0 for a LOG or NULL.
#[no_mangle]
pub extern "C" fn msrpcast_signal_delivery(s: *const msrpcast_signal) -> u64 {
    // SAFETY: s is NULL or a live signal (API contract).
    ffi_boundary_or(0, || unsafe { sig(s) }.map_or(0, |s| s.delivery))
}

fn field(
    s: *const msrpcast_signal,
    ptr: *mut *const c_char,
    len: *mut usize,
    pick: fn(&msrpcast_signal) -> &str,
) {
    ffi_boundary_or((), || {
        // SAFETY: s is NULL or a live signal (API contract).
        let v = unsafe { sig(s) }.map_or("\0", pick);
        // SAFETY: ptr and len are NULL or valid for writes (API contract).
        unsafe { put(v, ptr, len) }
    })
}

/// OFFER: the SIP URI to send the INVITE to. The string stays valid until the signal is freed
/// and is followed by a NUL; empty for other kinds or a NULL signal. NULL outputs are skipped.
#[no_mangle]
pub extern "C" fn msrpcast_signal_target(
    s: *const msrpcast_signal,
    ptr: *mut *const c_char,
    len: *mut usize,
) {
    field(s, ptr, len, |s| &s.target)
}

/// OFFER: the SDP body of the INVITE (`Content-Type: application/sdp`). As `msrpcast_signal_target`.
#[no_mangle]
pub extern "C" fn msrpcast_signal_sdp(
    s: *const msrpcast_signal,
    ptr: *mut *const c_char,
    len: *mut usize,
) {
    field(s, ptr, len, |s| &s.sdp)
}

/// OFFER: the From URI of the INVITE (the `sender_uri` setting). As `msrpcast_signal_target`.
#[no_mangle]
pub extern "C" fn msrpcast_signal_sender(
    s: *const msrpcast_signal,
    ptr: *mut *const c_char,
    len: *mut usize,
) {
    field(s, ptr, len, |s| &s.sender)
}

/// LOG: `MSRPCAST_LOG_ERROR` (1) … `MSRPCAST_LOG_DEBUG` (4); `MSRPCAST_LOG_NONE` (0) for other
/// kinds or NULL.
#[no_mangle]
pub extern "C" fn msrpcast_signal_log_level(s: *const msrpcast_signal) -> msrpcast_log_level {
    ffi_boundary_or(MSRPCAST_LOG_NONE, || {
        // SAFETY: s is NULL or a live signal (API contract).
        unsafe { sig(s) }.map_or(MSRPCAST_LOG_NONE, |s| s.level)
    })
}

/// LOG: `target: message`, control characters escaped. As `msrpcast_signal_target`.
#[no_mangle]
pub extern "C" fn msrpcast_signal_text(
    s: *const msrpcast_signal,
    ptr: *mut *const c_char,
    len: *mut usize,
) {
    field(s, ptr, len, |s| &s.text)
}

/// Frees a signal. NULL is allowed and does nothing.
#[no_mangle]
pub extern "C" fn msrpcast_signal_free(s: *mut msrpcast_signal) {
    // SAFETY: a non-NULL s came from msrpcast_engine_next_signal (Box::into_raw) and is freed
    // once (API contract).
    unsafe { free_box(s) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    fn get(
        s: *const msrpcast_signal,
        f: extern "C" fn(*const msrpcast_signal, *mut *const c_char, *mut usize),
    ) -> String {
        let mut p: *const c_char = ptr::null();
        let mut n = 0usize;
        f(s, &mut p, &mut n);
        // SAFETY: the accessor set p to n readable bytes followed by a NUL.
        let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n + 1) };
        assert_eq!(bytes[n], 0);
        String::from_utf8(bytes[..n].to_vec()).unwrap()
    }

    #[test]
    fn offer_accessors() {
        let s = Box::into_raw(Box::new(msrpcast_signal::from_signal(Signal::Offer {
            delivery: crate::roster::DeliveryId(9),
            target_uri: "sip:a@b".into(),
            sdp: "v=0\r\n".into(),
            sender_uri: "sip:m@x".into(),
        })));
        assert_eq!(msrpcast_signal_kind(s), MSRPCAST_SIGNAL_OFFER);
        assert_eq!(msrpcast_signal_delivery(s), 9);
        assert_eq!(get(s, msrpcast_signal_target), "sip:a@b");
        assert_eq!(get(s, msrpcast_signal_sdp), "v=0\r\n");
        assert_eq!(get(s, msrpcast_signal_sender), "sip:m@x");
        assert_eq!(get(s, msrpcast_signal_text), "");
        assert_eq!(msrpcast_signal_log_level(s), MSRPCAST_LOG_NONE);
        // NULL outputs are skipped.
        msrpcast_signal_sdp(s, ptr::null_mut(), ptr::null_mut());
        msrpcast_signal_free(s);
    }

    #[test]
    fn null_signal_is_empty() {
        assert_eq!(msrpcast_signal_kind(ptr::null()), MSRPCAST_SIGNAL_NONE);
        assert_eq!(msrpcast_signal_delivery(ptr::null()), 0);
        assert_eq!(get(ptr::null(), msrpcast_signal_target), "");
        msrpcast_signal_free(ptr::null_mut());
    }

    #[test]
    fn log_record_maps_level_and_text() {
        let s = msrpcast_signal::from_record(Record {
            level: Level::Warn,
            target: "engine",
            message: "hello".into(),
            time: std::time::SystemTime::now(),
        });
        let p = Box::into_raw(Box::new(s));
        assert_eq!(msrpcast_signal_kind(p), MSRPCAST_SIGNAL_LOG);
        assert_eq!(msrpcast_signal_log_level(p), MSRPCAST_LOG_WARN);
        assert_eq!(get(p, msrpcast_signal_text), "engine: hello");
        msrpcast_signal_free(p);
    }
}
