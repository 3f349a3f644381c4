//! `msrpcast_config`: every engine setting, set by key and value strings.

use std::ffi::c_char;

use parking_lot::Mutex;

use super::boundary::*;
use super::result::*;
use crate::config::{Config, ConfigErrorKind};

/// A configuration being built. Not thread-safe: one thread at a time.
pub struct msrpcast_config {
    pub(crate) cfg: Config,
    /// The text of the last error of a call on this config (set, validate, engine start).
    pub(crate) error: Mutex<String>,
}

impl msrpcast_config {
    /// Stores the text followed by a NUL, so C callers may also print it with `%s`.
    pub(crate) fn set_error(&self, text: impl Into<String>) {
        let mut t: String = text.into();
        t.retain(|c| c != '\0');
        t.push('\0');
        *self.error.lock() = t;
    }
}

/// Makes a configuration with every setting at its default and writes it to `*out`.
/// Free it with `msrpcast_config_free`. Any process, any thread.
#[no_mangle]
pub extern "C" fn msrpcast_config_new(out: *mut *mut msrpcast_config) -> msrpcast_result {
    ffi_boundary(|| {
        out_arg(out)?;
        let cfg = Box::new(msrpcast_config {
            cfg: Config::default(),
            error: Mutex::new(String::new()),
        });
        // SAFETY: out was checked non-NULL; the caller passes a valid pointer to write to.
        unsafe { write_out(out, Box::into_raw(cfg)) };
        Ok(())
    })
}

/// Frees a configuration. NULL is allowed and does nothing. An engine started from it keeps
/// its own copy.
#[no_mangle]
pub extern "C" fn msrpcast_config_free(cfg: *mut msrpcast_config) {
    // SAFETY: a non-NULL cfg came from msrpcast_config_new (Box::into_raw) and is freed once,
    // as the API requires.
    unsafe { free_box(cfg) }
}

/// Sets one setting from its string form (the keys and value syntax of `msrpcast settings` and
/// docs/c-api.md). `MSRPCAST_ERR_UNKNOWN_KEY` or `MSRPCAST_ERR_INVALID_VALUE` leave the setting
/// unchanged; `msrpcast_config_error` then names the key and why.
#[no_mangle]
pub extern "C" fn msrpcast_config_set(
    cfg: *mut msrpcast_config,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: cfg is NULL or a live config used by this thread only (API contract).
        let cfg = unsafe { handle_mut(cfg) }?;
        // SAFETY: key points to key_len readable bytes (API contract).
        let key = unsafe { str_arg(key, key_len) };
        // SAFETY: value points to value_len readable bytes (API contract).
        let value = unsafe { str_arg(value, value_len) };
        let (key, value) = match (key, value) {
            (Ok(k), Ok(v)) => (k, v),
            (Err(e), _) | (_, Err(e)) => {
                cfg.set_error(format!("key or value rejected: {}", e.name_str()));
                return Err(e);
            }
        };
        match cfg.cfg.set(key, value) {
            Ok(()) => {
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

/// Checks the whole configuration, including the rules between settings;
/// `MSRPCAST_ERR_INVALID_CONFIG` with `msrpcast_config_error` naming the key and why.
#[no_mangle]
pub extern "C" fn msrpcast_config_validate(cfg: *mut msrpcast_config) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: cfg is NULL or a live config (API contract).
        let cfg = unsafe { handle(cfg) }?;
        match cfg.cfg.validate() {
            Ok(()) => {
                cfg.set_error("");
                Ok(())
            }
            Err(e) => {
                cfg.set_error(e.to_string());
                Err(MSRPCAST_ERR_INVALID_CONFIG)
            }
        }
    })
}

/// The text of the last error of `msrpcast_config_set`, `msrpcast_config_validate` or
/// `msrpcast_engine_start` on this config (empty after a success), e.g. `invalid value for
/// chunk_bytes: must be between 1 and 1048576, got 0`. The byte at `(*msg)[*len]` is a NUL.
/// Valid until the next call on `cfg` or its free.
#[no_mangle]
pub extern "C" fn msrpcast_config_error(
    cfg: *const msrpcast_config,
    msg: *mut *const c_char,
    len: *mut usize,
) -> msrpcast_result {
    ffi_boundary(|| {
        // SAFETY: cfg is NULL or a live config (API contract).
        let cfg = unsafe { handle(cfg) }?;
        out_arg(msg)?;
        out_arg(len)?;
        let e = cfg.error.lock();
        let (ptr, n) = match e.len() {
            0 => (c"".as_ptr().cast::<u8>(), 0),
            l => (e.as_ptr(), l - 1),
        };
        // SAFETY: msg and len were checked non-NULL and are valid for writes (API contract).
        unsafe {
            write_out(msg, ptr.cast::<c_char>());
            write_out(len, n);
        }
        Ok(())
    })
}
