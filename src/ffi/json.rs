//! `msrpcast_json_walk`: a JSON text (the status answers) as a sequence of callbacks, so a host
//! can rebuild it in its own structures — Kamailio's RPC replies (`rpc->add`, `struct_add`,
//! `array_add`) — without a JSON parser of its own.

use std::ffi::{c_char, c_void};

use super::boundary::ffi_boundary;
use super::result::*;

/// The kind of a JSON value in [`msrpcast_json_visitor`] callbacks.
///
/// cbindgen:prefix-with-name=false
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum msrpcast_json_kind {
    MSRPCAST_JSON_OBJECT = 1,
    MSRPCAST_JSON_ARRAY = 2,
    /// `text` is the decoded string (UTF-8, may contain NUL bytes: use its length).
    MSRPCAST_JSON_STRING = 3,
    /// `text` is the number as written (e.g. `42`, `-1.5e3`).
    MSRPCAST_JSON_NUMBER = 4,
    MSRPCAST_JSON_TRUE = 5,
    MSRPCAST_JSON_FALSE = 6,
    MSRPCAST_JSON_NULL = 7,
}

/// Callbacks of [`msrpcast_json_walk`]. `key`/`key_len` is the member name inside an object,
/// NULL/0 inside an array and for the top value. A callback returning non-zero stops the walk.
/// A NULL callback is skipped.
#[repr(C)]
pub struct msrpcast_json_visitor {
    /// An object or array begins (`kind` OBJECT or ARRAY).
    pub begin: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            key: *const c_char,
            key_len: usize,
            kind: msrpcast_json_kind,
        ) -> i32,
    >,
    /// The object or array begun last ends.
    pub end: Option<unsafe extern "C" fn(userdata: *mut c_void, kind: msrpcast_json_kind) -> i32>,
    /// A scalar value (STRING, NUMBER, TRUE, FALSE, NULL); `text`/`len` as the kind says (empty
    /// for TRUE, FALSE, NULL).
    pub value: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            key: *const c_char,
            key_len: usize,
            kind: msrpcast_json_kind,
            text: *const c_char,
            len: usize,
        ) -> i32,
    >,
}

/// Deepest nesting [`msrpcast_json_walk`] follows (the status answers use 4 levels).
pub const MSRPCAST_JSON_MAX_DEPTH: usize = 32;

/// Walks the JSON text `json`/`len` (one value, e.g. a `msrpcast_client_status` answer) depth
/// first, calling `visitor`'s callbacks with `userdata`. Returns `MSRPCAST_OK` after the whole
/// value; `MSRPCAST_ERR_NULL_ARGUMENT` for a NULL `json` or `visitor`;
/// `MSRPCAST_ERR_INVALID_VALUE` for text that is not one JSON value, or nests deeper than
/// `MSRPCAST_JSON_MAX_DEPTH` (callbacks may have run for the part before the error);
/// `MSRPCAST_ERR_REFUSED` when a callback returned non-zero (the walk stops there). Pointers
/// given to callbacks are valid only during the call.
#[no_mangle]
pub extern "C" fn msrpcast_json_walk(
    json: *const c_char,
    len: usize,
    visitor: *const msrpcast_json_visitor,
    userdata: *mut c_void,
) -> msrpcast_result {
    ffi_boundary(|| {
        if json.is_null() || visitor.is_null() {
            return Err(MSRPCAST_ERR_NULL_ARGUMENT);
        }
        // SAFETY: json is not NULL and, by this function's contract, points to len readable
        // bytes for the duration of the call; isize::MAX bounds any real allocation.
        let text = unsafe { std::slice::from_raw_parts(json.cast::<u8>(), len) };
        // SAFETY: visitor is not NULL and points to a visitor for the duration of the call.
        let v = unsafe { &*visitor };
        let mut emit = |ev: Event<'_>| -> bool {
            let key_ptr = |k: Option<&str>| {
                k.map_or((std::ptr::null(), 0), |k| {
                    (k.as_ptr().cast::<c_char>(), k.len())
                })
            };
            let rc = match ev {
                Event::Begin(key, kind) => v.begin.map_or(0, |f| {
                    let (k, kl) = key_ptr(key);
                    // SAFETY: the host gave this callback for this walk; the key points into a
                    // buffer alive during the call (or is NULL with length 0).
                    unsafe { f(userdata, k, kl, kind) }
                }),
                Event::End(kind) => v.end.map_or(0, |f| {
                    // SAFETY: the host gave this callback for this walk; no pointer but its own.
                    unsafe { f(userdata, kind) }
                }),
                Event::Value(key, kind, val) => v.value.map_or(0, |f| {
                    let (k, kl) = key_ptr(key);
                    // SAFETY: the host gave this callback for this walk; key and value point
                    // into buffers alive during the call.
                    unsafe {
                        f(
                            userdata,
                            k,
                            kl,
                            kind,
                            val.as_ptr().cast::<c_char>(),
                            val.len(),
                        )
                    }
                }),
            };
            rc == 0
        };
        walk(text, &mut emit)
    })
}

/// One step of the walk.
enum Event<'a> {
    Begin(Option<&'a str>, msrpcast_json_kind),
    End(msrpcast_json_kind),
    Value(Option<&'a str>, msrpcast_json_kind, &'a str),
}

/// Parses `text` as exactly one JSON value, reporting events; `emit` returning false stops.
fn walk(text: &[u8], emit: &mut dyn FnMut(Event<'_>) -> bool) -> Result<(), msrpcast_result> {
    let mut p = Parser { s: text, i: 0 };
    p.ws();
    p.value(None, 0, emit)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(MSRPCAST_ERR_INVALID_VALUE);
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

const BAD: msrpcast_result = MSRPCAST_ERR_INVALID_VALUE;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> Result<(), msrpcast_result> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(BAD)
        }
    }

    fn value(
        &mut self,
        key: Option<&str>,
        depth: usize,
        emit: &mut dyn FnMut(Event<'_>) -> bool,
    ) -> Result<(), msrpcast_result> {
        let ok = |b: bool| if b { Ok(()) } else { Err(MSRPCAST_ERR_REFUSED) };
        match self.peek().ok_or(BAD)? {
            b'{' | b'[' => {
                if depth >= MSRPCAST_JSON_MAX_DEPTH {
                    return Err(BAD);
                }
                let object = self.s[self.i] == b'{';
                let kind = if object {
                    msrpcast_json_kind::MSRPCAST_JSON_OBJECT
                } else {
                    msrpcast_json_kind::MSRPCAST_JSON_ARRAY
                };
                let close = if object { b'}' } else { b']' };
                self.i += 1;
                ok(emit(Event::Begin(key, kind)))?;
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    return ok(emit(Event::End(kind)));
                }
                loop {
                    self.ws();
                    if object {
                        let k = self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                        self.value(Some(&k), depth + 1, emit)?;
                    } else {
                        self.value(None, depth + 1, emit)?;
                    }
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {
                            self.i += 1;
                            return ok(emit(Event::End(kind)));
                        }
                        _ => return Err(BAD),
                    }
                }
            }
            b'"' => {
                let s = self.string()?;
                ok(emit(Event::Value(
                    key,
                    msrpcast_json_kind::MSRPCAST_JSON_STRING,
                    &s,
                )))
            }
            b't' => self.literal(b"true", key, msrpcast_json_kind::MSRPCAST_JSON_TRUE, emit),
            b'f' => self.literal(b"false", key, msrpcast_json_kind::MSRPCAST_JSON_FALSE, emit),
            b'n' => self.literal(b"null", key, msrpcast_json_kind::MSRPCAST_JSON_NULL, emit),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                self.i += 1;
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.peek() {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| BAD)?;
                if n.parse::<f64>().is_err() {
                    return Err(BAD);
                }
                ok(emit(Event::Value(
                    key,
                    msrpcast_json_kind::MSRPCAST_JSON_NUMBER,
                    n,
                )))
            }
            _ => Err(BAD),
        }
    }

    fn literal(
        &mut self,
        word: &[u8],
        key: Option<&str>,
        kind: msrpcast_json_kind,
        emit: &mut dyn FnMut(Event<'_>) -> bool,
    ) -> Result<(), msrpcast_result> {
        if !self.s[self.i..].starts_with(word) {
            return Err(BAD);
        }
        self.i += word.len();
        if emit(Event::Value(key, kind, "")) {
            Ok(())
        } else {
            Err(MSRPCAST_ERR_REFUSED)
        }
    }

    /// A string at the cursor, unescaped.
    fn string(&mut self) -> Result<String, msrpcast_result> {
        self.eat(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let b = self.peek().ok_or(BAD)?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|_| BAD),
                b'\\' => {
                    let e = self.peek().ok_or(BAD)?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                self.eat(b'\\')?;
                                self.eat(b'u')?;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(BAD);
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or(BAD)?
                        }
                        _ => return Err(BAD),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(BAD),
                b => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, msrpcast_result> {
        let h = self.s.get(self.i..self.i + 4).ok_or(BAD)?;
        self.i += 4;
        let h = std::str::from_utf8(h).map_err(|_| BAD)?;
        u32::from_str_radix(h, 16).map_err(|_| BAD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Result<Vec<String>, msrpcast_result> {
        let mut out = Vec::new();
        walk(text.as_bytes(), &mut |e| {
            out.push(match e {
                Event::Begin(k, kind) => format!("begin {k:?} {kind:?}"),
                Event::End(kind) => format!("end {kind:?}"),
                Event::Value(k, kind, v) => format!("{k:?} {kind:?} {v:?}"),
            });
            true
        })?;
        Ok(out)
    }

    #[test]
    fn walks_a_status_answer() {
        let e = events(
            r#" {"transfers":[{"id":1,"name":"a\"b\u00e9\ud83d\ude00","done":true,"code":null,
            "x":[]}]} "#,
        )
        .unwrap();
        assert_eq!(
            e,
            [
                "begin None MSRPCAST_JSON_OBJECT",
                "begin Some(\"transfers\") MSRPCAST_JSON_ARRAY",
                "begin None MSRPCAST_JSON_OBJECT",
                "Some(\"id\") MSRPCAST_JSON_NUMBER \"1\"",
                "Some(\"name\") MSRPCAST_JSON_STRING \"a\\\"bé😀\"",
                "Some(\"done\") MSRPCAST_JSON_TRUE \"\"",
                "Some(\"code\") MSRPCAST_JSON_NULL \"\"",
                "begin Some(\"x\") MSRPCAST_JSON_ARRAY",
                "end MSRPCAST_JSON_ARRAY",
                "end MSRPCAST_JSON_OBJECT",
                "end MSRPCAST_JSON_ARRAY",
                "end MSRPCAST_JSON_OBJECT",
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_one_value() {
        for bad in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1 2]",
            "\"\\x\"",
            "\"a",
            "1 2",
            "tru",
            "-",
            "\"\\ud800\"",
            "{\"a\":\"\u{1}\"}",
        ] {
            assert_eq!(events(bad), Err(MSRPCAST_ERR_INVALID_VALUE), "{bad:?}");
        }
        let deep = "[".repeat(MSRPCAST_JSON_MAX_DEPTH + 1);
        assert_eq!(events(&deep), Err(MSRPCAST_ERR_INVALID_VALUE));
        // A callback saying stop.
        let mut n = 0;
        let r = walk(b"[1,2,3]", &mut |_| {
            n += 1;
            n < 3
        });
        assert_eq!((r, n), (Err(MSRPCAST_ERR_REFUSED), 3));
    }
}
