//! OS calls the engine's threads need that neither the standard library nor rustix offers
//! safely; kept here, the one layer where `unsafe` is allowed.

use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks `SIGPIPE` in the calling thread. Called first by every engine thread (they all start
/// through `crate::runtime::spawn`).
///
/// A write to a connection the peer has closed raises `SIGPIPE`, whose default action ends the
/// process. A Rust program ignores it at start-up, but the engine runs inside a C host (Kamailio
/// and FreeSWITCH ignore it; another host may not), and not every write can pass
/// `MSG_NOSIGNAL` (`writev`, `sendfile`). A blocked `SIGPIPE` raised by a write is directed at
/// that thread and stays pending there, the write fails with `EPIPE` and the delivery fails
/// with a reason; the host's own threads and its disposition of the signal are not touched.
pub fn block_sigpipe_in_this_thread() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    // SAFETY: `set` is a local, initialised by sigemptyset before sigaddset and
    // pthread_sigmask read it; a null old-set pointer is allowed. pthread_sigmask changes only
    // the calling thread's mask.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 && !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "msrpcast: cannot block SIGPIPE in an engine thread (error {rc}): a peer that \
             closes during a write may end a host that does not ignore SIGPIPE"
        );
    }
}

#[cfg(test)]
mod tests {
    /// The calling thread's mask holds SIGPIPE afterwards; a new thread's does not change
    /// its parent's.
    #[test]
    fn sigpipe_is_blocked_in_the_calling_thread_only() {
        fn blocked() -> bool {
            // SAFETY: `cur` is a local the call fills; a null new-set pointer only reads the mask.
            unsafe {
                let mut cur: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
                libc::sigismember(&cur, libc::SIGPIPE) == 1
            }
        }
        let before = blocked();
        let inside = std::thread::spawn(|| {
            let was = blocked();
            super::block_sigpipe_in_this_thread();
            (was, blocked())
        })
        .join()
        .unwrap();
        assert_eq!(inside, (before, true));
        assert_eq!(blocked(), before, "the parent's mask changed");
    }
}
