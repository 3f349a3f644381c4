//! Result codes: one `uint32_t` space in numbered blocks, and the function that names each.

use std::ffi::{c_char, CStr};

use crate::roster::RosterError;
use crate::runtime::engine::EngineError;

/// The result of every call that can fail: `MSRPCAST_OK` (0), `MSRPCAST_EMPTY` (1, not an error)
/// or one of the `MSRPCAST_ERR_*` codes. 1000s: the caller's arguments; 2000s: the engine's
/// state; 3000s: the system or a bug. In C a `uint32_t`; functions that take a code take a plain
/// integer, so an unknown value is never undefined behaviour ([`msrpcast_result_name`] names it
/// `MSRPCAST_UNKNOWN_RESULT`).
///
/// cbindgen:prefix-with-name=false
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum msrpcast_result {
    /// Success.
    MSRPCAST_OK = 0,
    /// No signal waiting (`msrpcast_engine_next_signal`): not an error.
    MSRPCAST_EMPTY = 1,
    /// A required pointer argument was NULL.
    MSRPCAST_ERR_NULL_ARGUMENT = 1000,
    /// A string argument is not UTF-8.
    MSRPCAST_ERR_INVALID_UTF8 = 1001,
    /// A string or the whole message exceeds its limit (`MSRPCAST_MAX_MESSAGE_BYTES`).
    MSRPCAST_ERR_TOO_LONG = 1002,
    /// `msrpcast_config_set`: no setting has this key.
    MSRPCAST_ERR_UNKNOWN_KEY = 1003,
    /// A value is malformed, empty where it must not be, or out of range.
    MSRPCAST_ERR_INVALID_VALUE = 1004,
    /// `msrpcast_config_validate`: the settings conflict (see `msrpcast_config_error`).
    MSRPCAST_ERR_INVALID_CONFIG = 1005,
    /// An output buffer is too small.
    MSRPCAST_ERR_BUFFER_TOO_SMALL = 1006,
    /// The engine's queue or the control socket is full: nothing was done, retry later.
    MSRPCAST_ERR_BUSY = 2000,
    /// The engine was stopped (`msrpcast_engine_stop`).
    MSRPCAST_ERR_STOPPED = 2001,
    /// A client cannot reach the engine's control socket (no engine, or no permission).
    MSRPCAST_ERR_UNREACHABLE = 2002,
    /// The engine could not start (see `msrpcast_config_error` on its config).
    MSRPCAST_ERR_START = 2003,
    /// No transfer has this id.
    MSRPCAST_ERR_UNKNOWN_TRANSFER = 2004,
    /// No reply within the time given.
    MSRPCAST_ERR_TIMEOUT = 2005,
    /// The engine refused the request (a limit, an empty conference, a spool quota).
    MSRPCAST_ERR_REFUSED = 2006,
    /// No conference has this id (an upload needs participants first).
    MSRPCAST_ERR_UNKNOWN_CONFERENCE = 2007,
    /// `upload_file`: the path is not a regular file inside the `upload_dir` setting (symlinks
    /// and `..` resolved), or `upload_dir` is not set.
    MSRPCAST_ERR_FORBIDDEN = 2008,
    /// An operating-system call failed (a file, a socket).
    MSRPCAST_ERR_IO = 3000,
    /// A bug: a Rust panic was caught at the boundary. The handle may be inconsistent; the process
    /// goes on.
    MSRPCAST_ERR_PANIC = 3001,
}

pub use msrpcast_result::*;

impl msrpcast_result {
    /// The code's name, e.g. `MSRPCAST_ERR_BUSY`: the one list of names (an exhaustive match, so
    /// a new code without a name does not compile).
    pub const fn name(self) -> &'static CStr {
        match self {
            MSRPCAST_OK => c"MSRPCAST_OK",
            MSRPCAST_EMPTY => c"MSRPCAST_EMPTY",
            MSRPCAST_ERR_NULL_ARGUMENT => c"MSRPCAST_ERR_NULL_ARGUMENT",
            MSRPCAST_ERR_INVALID_UTF8 => c"MSRPCAST_ERR_INVALID_UTF8",
            MSRPCAST_ERR_TOO_LONG => c"MSRPCAST_ERR_TOO_LONG",
            MSRPCAST_ERR_UNKNOWN_KEY => c"MSRPCAST_ERR_UNKNOWN_KEY",
            MSRPCAST_ERR_INVALID_VALUE => c"MSRPCAST_ERR_INVALID_VALUE",
            MSRPCAST_ERR_INVALID_CONFIG => c"MSRPCAST_ERR_INVALID_CONFIG",
            MSRPCAST_ERR_BUFFER_TOO_SMALL => c"MSRPCAST_ERR_BUFFER_TOO_SMALL",
            MSRPCAST_ERR_BUSY => c"MSRPCAST_ERR_BUSY",
            MSRPCAST_ERR_STOPPED => c"MSRPCAST_ERR_STOPPED",
            MSRPCAST_ERR_UNREACHABLE => c"MSRPCAST_ERR_UNREACHABLE",
            MSRPCAST_ERR_START => c"MSRPCAST_ERR_START",
            MSRPCAST_ERR_UNKNOWN_TRANSFER => c"MSRPCAST_ERR_UNKNOWN_TRANSFER",
            MSRPCAST_ERR_TIMEOUT => c"MSRPCAST_ERR_TIMEOUT",
            MSRPCAST_ERR_REFUSED => c"MSRPCAST_ERR_REFUSED",
            MSRPCAST_ERR_UNKNOWN_CONFERENCE => c"MSRPCAST_ERR_UNKNOWN_CONFERENCE",
            MSRPCAST_ERR_FORBIDDEN => c"MSRPCAST_ERR_FORBIDDEN",
            MSRPCAST_ERR_IO => c"MSRPCAST_ERR_IO",
            MSRPCAST_ERR_PANIC => c"MSRPCAST_ERR_PANIC",
        }
    }

    /// The name as a Rust string (for error texts).
    pub fn name_str(self) -> &'static str {
        match self.name().to_str() {
            Ok(s) => s,
            Err(_) => unreachable!(),
        }
    }
}

/// Every code once, for turning a number back into a code ([`from_u32`]). The test
/// `every_code_of_the_header_is_listed` checks it against the generated header's enum.
const ALL: [msrpcast_result; 20] = [
    MSRPCAST_OK,
    MSRPCAST_EMPTY,
    MSRPCAST_ERR_NULL_ARGUMENT,
    MSRPCAST_ERR_INVALID_UTF8,
    MSRPCAST_ERR_TOO_LONG,
    MSRPCAST_ERR_UNKNOWN_KEY,
    MSRPCAST_ERR_INVALID_VALUE,
    MSRPCAST_ERR_INVALID_CONFIG,
    MSRPCAST_ERR_BUFFER_TOO_SMALL,
    MSRPCAST_ERR_BUSY,
    MSRPCAST_ERR_STOPPED,
    MSRPCAST_ERR_UNREACHABLE,
    MSRPCAST_ERR_START,
    MSRPCAST_ERR_UNKNOWN_TRANSFER,
    MSRPCAST_ERR_TIMEOUT,
    MSRPCAST_ERR_REFUSED,
    MSRPCAST_ERR_UNKNOWN_CONFERENCE,
    MSRPCAST_ERR_FORBIDDEN,
    MSRPCAST_ERR_IO,
    MSRPCAST_ERR_PANIC,
];

/// The name of a result code, e.g. `"MSRPCAST_ERR_BUSY"`: a static NUL-terminated string, never
/// NULL; `"MSRPCAST_UNKNOWN_RESULT"` for a value that is not a code. Any thread.
#[no_mangle]
pub extern "C" fn msrpcast_result_name(result: u32) -> *const c_char {
    from_u32(result)
        .map(msrpcast_result::name)
        .unwrap_or(c"MSRPCAST_UNKNOWN_RESULT")
        .as_ptr()
}

/// The name of a code as Rust text (`"MSRPCAST_ERR_IO"`).
pub(crate) fn rc_name_str(code: msrpcast_result) -> &'static str {
    code.name_str()
}

/// The result code of a TLS reload that did not reload everything: `MSRPCAST_ERR_REFUSED` when
/// no TLS is on, `MSRPCAST_ERR_IO` when a file failed.
pub(crate) fn reload_code(e: &crate::http::TlsReloadError) -> msrpcast_result {
    match e {
        crate::http::TlsReloadError::NothingOn => MSRPCAST_ERR_REFUSED,
        crate::http::TlsReloadError::Failed(_) => MSRPCAST_ERR_IO,
    }
}

/// The code with this number, if it is one.
pub(crate) fn from_u32(v: u32) -> Option<msrpcast_result> {
    ALL.iter().copied().find(|c| *c as u32 == v)
}

/// The control socket's wire carries result codes as numbers; the runtime's copies of the ones it
/// answers by itself must be the C ABI's.
const _: () = {
    use crate::runtime::control::{RESULT_INVALID_VALUE, RESULT_OK};
    assert!(MSRPCAST_OK as u32 == RESULT_OK);
    assert!(MSRPCAST_ERR_INVALID_VALUE as u32 == RESULT_INVALID_VALUE);
};

/// The code for an engine refusal.
/// The result code of a refused local-file upload (control socket, C ABI, host commands).
pub(crate) fn upload_code(e: &crate::runtime::control::UploadFileError) -> msrpcast_result {
    use crate::runtime::control::UploadFileError;
    match e {
        UploadFileError::Io(_) => MSRPCAST_ERR_IO,
        UploadFileError::Forbidden(_) => MSRPCAST_ERR_FORBIDDEN,
        UploadFileError::Engine(x) => engine_code(x),
    }
}

pub(crate) fn engine_code(e: &EngineError) -> msrpcast_result {
    match e {
        EngineError::Start(_) => MSRPCAST_ERR_START,
        EngineError::Busy => MSRPCAST_ERR_BUSY,
        EngineError::Stopped => MSRPCAST_ERR_STOPPED,
        EngineError::Roster(r) => match r {
            RosterError::Empty { .. } => MSRPCAST_ERR_INVALID_VALUE,
            RosterError::TooLong { .. } => MSRPCAST_ERR_TOO_LONG,
            RosterError::UnknownConference(_) => MSRPCAST_ERR_UNKNOWN_CONFERENCE,
            RosterError::UnknownTransfer(_) => MSRPCAST_ERR_UNKNOWN_TRANSFER,
            // A chosen recipient who is not a participant, or none chosen.
            RosterError::UnknownParticipant { .. } | RosterError::NoRecipients => {
                MSRPCAST_ERR_INVALID_VALUE
            }
            _ => MSRPCAST_ERR_REFUSED,
        },
        EngineError::Spool(_) | EngineError::NoParticipants(_) => MSRPCAST_ERR_REFUSED,
        EngineError::UnknownTransfer(_) => MSRPCAST_ERR_UNKNOWN_TRANSFER,
        EngineError::BadInput(_) => MSRPCAST_ERR_INVALID_VALUE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_code_has_a_unique_name_matching_its_constant() {
        for code in ALL {
            // SAFETY: msrpcast_result_name returns a static NUL-terminated string.
            let got = unsafe { CStr::from_ptr(msrpcast_result_name(code as u32)) };
            assert_eq!(got, code.name());
            assert_eq!(format!("{code:?}"), code.name_str());
            assert_eq!(ALL.iter().filter(|c| **c == code).count(), 1);
            assert_eq!(from_u32(code as u32), Some(code));
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(msrpcast_result_name(4242)) };
        assert_eq!(unknown, c"MSRPCAST_UNKNOWN_RESULT");
    }

    /// `ALL` lists every code of the enum, as cbindgen wrote it into the header.
    #[test]
    fn every_code_of_the_header_is_listed() {
        let header = include_str!("../../include/msrpcast.h");
        let start = header.find("enum msrpcast_result").expect("enum in header");
        let body = &header[start..];
        let body = &body[..body.find('}').expect("enum end")];
        let mut n = 0;
        for line in body.lines().map(str::trim) {
            if let Some((name, value)) = line.trim_end_matches(',').split_once(" = ") {
                let v: u32 = value.parse().expect("code value");
                let code = from_u32(v).unwrap_or_else(|| panic!("{name} = {v} not in ALL"));
                assert_eq!(code.name_str(), name);
                n += 1;
            }
        }
        assert_eq!(n, ALL.len());
    }

    #[test]
    fn engine_errors_map_to_their_block() {
        assert_eq!(engine_code(&EngineError::Busy), MSRPCAST_ERR_BUSY);
        assert_eq!(
            engine_code(&EngineError::Roster(RosterError::UnknownConference(
                "c".into()
            ))),
            MSRPCAST_ERR_UNKNOWN_CONFERENCE
        );
        assert_eq!(
            engine_code(&EngineError::BadInput("x".into())),
            MSRPCAST_ERR_INVALID_VALUE
        );
    }
}
