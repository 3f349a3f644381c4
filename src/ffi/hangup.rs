//! `SIGHUP` as a blocking wait, for `msrpcast serve`'s certificate reload. Signal masks need
//! libc calls, and the crate keeps every `unsafe` under `src/ffi/`, so this small piece of the
//! command-line tool lives here.
//!
//! [`Hangups::block`] blocks `SIGHUP` in the calling thread; threads started from it afterwards
//! inherit the mask, so a `SIGHUP` sent to the process stays pending until [`Hangups::wait`]
//! takes it (`sigwait`). No handler runs in signal context.

use std::io;
use std::mem::MaybeUninit;

/// `SIGHUP` blocked in this thread (and the threads it starts), ready to be waited for.
pub struct Hangups {
    set: libc::sigset_t,
}

impl Hangups {
    /// Blocks `SIGHUP`. Call it before starting any thread that should not see the signal.
    pub fn block() -> io::Result<Hangups> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set behind the pointer, which is valid for writes.
        if unsafe { libc::sigemptyset(set.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sigemptyset returned 0, so the set is initialised.
        let mut set = unsafe { set.assume_init() };
        // SAFETY: set is an initialised sigset_t; SIGHUP is a valid signal number.
        if unsafe { libc::sigaddset(&mut set, libc::SIGHUP) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: set is initialised; the old mask is not wanted (NULL is allowed).
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(Hangups { set })
    }

    /// Waits until a `SIGHUP` arrives (one pending signal is taken per call).
    pub fn wait(&self) -> io::Result<()> {
        let mut sig: libc::c_int = 0;
        // SAFETY: self.set is an initialised sigset_t and sig is valid for writes.
        let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
}
