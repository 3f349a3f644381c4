//! The pollable file descriptor of the signalling port.
//!
//! A non-blocking `AF_UNIX` stream pair: engine threads write a byte to one end after queuing a
//! signal or a log record ([`Notify::wake`]); the host polls the other end for `POLLIN`. A flag
//! keeps a burst of records to one write. The host's side calls [`Notify::drain`] and then looks
//! at the queues again, which is what makes the protocol lose no wake-up:
//!
//! ```text
//! producer: push record; if !pending.swap(true) { write byte }
//! consumer: pending = false; read every byte; look at the queues again
//! ```
//!
//! A record pushed before the consumer's second look is seen by that look; one pushed after it
//! finds `pending` false and writes a byte, so the descriptor is readable again.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct Notify {
    rx: UnixStream,
    tx: UnixStream,
    pending: AtomicBool,
}

impl Notify {
    pub(crate) fn new() -> io::Result<Notify> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Notify {
            rx,
            tx,
            pending: AtomicBool::new(false),
        })
    }

    /// The descriptor the host polls.
    pub(crate) fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Makes the descriptor readable. Cheap, never blocks, never logs (it runs inside the
    /// logger's push).
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            // A full buffer (WouldBlock) means the descriptor is already readable.
            let _ = (&self.tx).write(&[1]);
        }
    }

    /// Empties the descriptor; look at the queues again afterwards.
    pub(crate) fn drain(&self) {
        self.pending.store(false, Ordering::SeqCst);
        let mut buf = [0u8; 256];
        loop {
            match (&self.rx).read(&mut buf) {
                Ok(0) => return,
                Ok(n) if n < buf.len() => return,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(n: &Notify) -> bool {
        let mut pfd = libc::pollfd {
            fd: n.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one initialised pollfd for a descriptor owned by `n`, no wait.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        r == 1 && pfd.revents & libc::POLLIN != 0
    }

    #[test]
    fn wake_makes_readable_and_drain_empties() {
        let n = Notify::new().unwrap();
        assert!(!readable(&n));
        n.wake();
        n.wake();
        assert!(readable(&n));
        n.drain();
        assert!(!readable(&n));
        // After a drain the next wake writes again.
        n.wake();
        assert!(readable(&n));
    }

    #[test]
    fn many_wakes_from_threads_never_block() {
        let n = std::sync::Arc::new(Notify::new().unwrap());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        n.wake();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(readable(&n));
        n.drain();
        assert!(!readable(&n));
    }
}
