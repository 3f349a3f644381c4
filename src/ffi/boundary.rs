//! The one panic boundary every exported function goes through, and the checks of raw
//! arguments (NULL, length, UTF-8) shared by all of them.

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::result::*;

/// What the body of an exported function returns: `Ok(())` becomes `MSRPCAST_OK`, `Err(code)`
/// that code (`MSRPCAST_EMPTY` included).
pub(crate) type FfiResult = Result<(), msrpcast_result>;

/// Runs `f`, turning a panic into `MSRPCAST_ERR_PANIC`, so no unwinding ever crosses into C.
pub(crate) fn ffi_boundary(f: impl FnOnce() -> FfiResult) -> msrpcast_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => MSRPCAST_OK,
        Ok(Err(code)) => code,
        Err(_) => MSRPCAST_ERR_PANIC,
    }
}

/// The same for functions without a result code (`_free`, accessors): a panic yields `default`.
pub(crate) fn ffi_boundary_or<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

/// Largest string argument accepted (any single string must fit a control message).
pub(crate) const MAX_STRING_BYTES: usize = 65_536;

/// A required string argument: NULL → `MSRPCAST_ERR_NULL_ARGUMENT`, longer than the message
/// limit → `MSRPCAST_ERR_TOO_LONG`, not UTF-8 → `MSRPCAST_ERR_INVALID_UTF8`. A zero length is
/// returned as `""`; the caller decides whether that is allowed.
///
/// # Safety
/// When `ptr` is not NULL it must point to `len` readable bytes that stay unchanged for `'a`.
pub(crate) unsafe fn str_arg<'a>(
    ptr: *const c_char,
    len: usize,
) -> Result<&'a str, msrpcast_result> {
    if ptr.is_null() {
        return Err(MSRPCAST_ERR_NULL_ARGUMENT);
    }
    if len > MAX_STRING_BYTES {
        return Err(MSRPCAST_ERR_TOO_LONG);
    }
    // SAFETY: ptr is not NULL and, by this function's contract, points to len readable bytes
    // that outlive 'a; u8 has no alignment requirement and len <= 64 KiB < isize::MAX.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|_| MSRPCAST_ERR_INVALID_UTF8)
}

/// A required, non-empty string argument (an empty one → `MSRPCAST_ERR_INVALID_VALUE`).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn nonempty_arg<'a>(
    ptr: *const c_char,
    len: usize,
) -> Result<&'a str, msrpcast_result> {
    // SAFETY: forwarded contract of this function.
    let s = unsafe { str_arg(ptr, len) }?;
    if s.is_empty() {
        return Err(MSRPCAST_ERR_INVALID_VALUE);
    }
    Ok(s)
}

/// An optional string argument: NULL (whatever the length) or a zero length → `None`.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(
    ptr: *const c_char,
    len: usize,
) -> Result<Option<&'a str>, msrpcast_result> {
    if ptr.is_null() || len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded contract of this function.
    unsafe { str_arg(ptr, len) }.map(Some)
}

/// Most keys a list argument (`keys`, `key_lens`, `count`) may hold: more could not fit one
/// control message (each key costs at least 5 bytes).
pub(crate) const MAX_LIST_KEYS: usize = 16_384;

/// A required list of non-empty strings: `count` pointers in `keys` and their lengths in
/// `key_lens`. `count` 0 → `MSRPCAST_ERR_INVALID_VALUE`; NULL arrays or elements →
/// `MSRPCAST_ERR_NULL_ARGUMENT`; more than [`MAX_LIST_KEYS`] → `MSRPCAST_ERR_TOO_LONG`; each
/// element as [`nonempty_arg`].
///
/// # Safety
/// When `count` is not 0 and the arrays are not NULL, each must hold `count` readable elements,
/// and each `keys[i]` must satisfy [`str_arg`]'s contract for `key_lens[i]`, unchanged for `'a`.
pub(crate) unsafe fn keys_arg<'a>(
    keys: *const *const c_char,
    key_lens: *const usize,
    count: usize,
) -> Result<Vec<&'a str>, msrpcast_result> {
    if count == 0 {
        return Err(MSRPCAST_ERR_INVALID_VALUE);
    }
    if keys.is_null() || key_lens.is_null() {
        return Err(MSRPCAST_ERR_NULL_ARGUMENT);
    }
    if count > MAX_LIST_KEYS {
        return Err(MSRPCAST_ERR_TOO_LONG);
    }
    // SAFETY: both arrays are non-NULL and, by this function's contract, hold count readable,
    // aligned elements; count <= MAX_LIST_KEYS keeps the byte size far below isize::MAX.
    let (ptrs, lens) = unsafe {
        (
            std::slice::from_raw_parts(keys, count),
            std::slice::from_raw_parts(key_lens, count),
        )
    };
    ptrs.iter()
        .zip(lens)
        // SAFETY: each element's pointer and length follow str_arg's contract (ours).
        .map(|(p, n)| unsafe { nonempty_arg(*p, *n) })
        .collect()
}

/// A handle argument: NULL → `MSRPCAST_ERR_NULL_ARGUMENT`.
///
/// # Safety
/// When not NULL, `p` must come from this library's matching `_new`/`_open`/`_start` and not
/// have been freed; no `&mut` to it may exist for `'a`.
pub(crate) unsafe fn handle<'a, T>(p: *const T) -> Result<&'a T, msrpcast_result> {
    // SAFETY: by this function's contract a non-NULL p is a live, properly aligned T.
    unsafe { p.as_ref() }.ok_or(MSRPCAST_ERR_NULL_ARGUMENT)
}

/// A handle argument for exclusive use.
///
/// # Safety
/// As [`handle`], and no other reference to `*p` may exist for `'a`.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T) -> Result<&'a mut T, msrpcast_result> {
    // SAFETY: by this function's contract a non-NULL p is a live, aligned, unaliased T.
    unsafe { p.as_mut() }.ok_or(MSRPCAST_ERR_NULL_ARGUMENT)
}

/// Checks that an output pointer is not NULL (before any work is done).
pub(crate) fn out_arg<T>(p: *mut T) -> Result<(), msrpcast_result> {
    if p.is_null() {
        Err(MSRPCAST_ERR_NULL_ARGUMENT)
    } else {
        Ok(())
    }
}

/// Writes an output; the pointer was checked with [`out_arg`].
///
/// # Safety
/// `p` must be non-NULL, aligned and valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, v: T) {
    // SAFETY: by this function's contract p is valid for writes; `write` does not drop the old
    // (possibly uninitialised) value.
    unsafe { p.write(v) }
}

/// The body of every `msrpcast_*_free`: NULL does nothing; otherwise `reclaim` takes back the
/// ownership that was handed to C and the owner is dropped, inside the panic boundary (a panic
/// in a destructor does not cross into C). Modelled on rustls-ffi's `free_box`.
///
/// # Safety
/// A non-NULL `p` must be what the matching `into_raw` of this library returned (`reclaim` is its
/// inverse: `Box::from_raw` for `Box::into_raw`, `CString::from_raw` for `CString::into_raw`),
/// not yet freed, and used by no other call during or after this one.
pub(crate) unsafe fn free_with<P, T>(p: *mut P, reclaim: unsafe fn(*mut P) -> T) {
    ffi_boundary_or((), || {
        if !p.is_null() {
            // SAFETY: p is non-NULL, and by this function's contract came from the `into_raw`
            // that `reclaim` undoes, is freed only here, and has no other user.
            drop(unsafe { reclaim(p) });
        }
    })
}

/// [`free_with`] for a handle made by `Box::into_raw` (config, engine, client, signal, fs).
///
/// # Safety
/// A non-NULL `p` came from `Box::into_raw(Box<T>)` in this library, is freed once, and is used
/// by no other call during or after this one.
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    // SAFETY: forwarded contract of this function; Box::from_raw undoes Box::into_raw.
    unsafe { free_with(p, Box::from_raw) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_is_caught_and_named() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = ffi_boundary(|| panic!("boom"));
        let v = ffi_boundary_or(7u32, || panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(r, MSRPCAST_ERR_PANIC);
        assert_eq!(v, 7);
        assert_eq!(ffi_boundary(|| Ok(())), MSRPCAST_OK);
        assert_eq!(ffi_boundary(|| Err(MSRPCAST_EMPTY)), MSRPCAST_EMPTY);
    }

    #[test]
    fn string_arguments_are_checked() {
        let ok = b"conf";
        let bad = [0x66u8, 0xff];
        // SAFETY: each pointer is NULL or points to the given number of readable bytes.
        unsafe {
            assert_eq!(str_arg(ok.as_ptr().cast(), 4), Ok("conf"));
            assert_eq!(str_arg(ok.as_ptr().cast(), 0), Ok(""));
            assert_eq!(
                str_arg(std::ptr::null(), 4),
                Err(MSRPCAST_ERR_NULL_ARGUMENT)
            );
            assert_eq!(
                str_arg(std::ptr::null(), 0),
                Err(MSRPCAST_ERR_NULL_ARGUMENT)
            );
            assert_eq!(
                str_arg(bad.as_ptr().cast(), 2),
                Err(MSRPCAST_ERR_INVALID_UTF8)
            );
            assert_eq!(
                str_arg(ok.as_ptr().cast(), MAX_STRING_BYTES + 1),
                Err(MSRPCAST_ERR_TOO_LONG)
            );
            assert_eq!(
                nonempty_arg(ok.as_ptr().cast(), 0),
                Err(MSRPCAST_ERR_INVALID_VALUE)
            );
            assert_eq!(opt_str_arg(std::ptr::null(), 9), Ok(None));
            assert_eq!(opt_str_arg(ok.as_ptr().cast(), 2), Ok(Some("co")));
        }
    }
}
