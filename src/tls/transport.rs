//! [`Transport`]: what a connection handler holds instead of a bare `TcpStream` — plain TCP or
//! TLS over it, with one interface. `Read`/`Write` have the same non-blocking meaning for both
//! (`WouldBlock`: wait for readiness), so a handler's read and write loops do not change; the
//! TLS-only steps (`handshake`, `check_deadline`, close_notify in `shutdown_write`) are no-ops
//! for plain TCP.
//!
//! [`first_bytes`] tells a TLS ClientHello from an MSRP request on an accepted connection, so one
//! listener can serve both (peek, do not read).

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

use super::stream::TlsStream;
use super::TlsError;

/// A connection's byte stream.
#[derive(Debug)]
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Transport {
    /// The socket, to register with a `mio::Registry`, ask `peer_addr`, and so on.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => t.socket(),
        }
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => t.socket_mut(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// The TLS stream (peer certificates, fingerprint), if this is TLS.
    pub fn tls(&self) -> Option<&TlsStream> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => Some(t),
        }
    }

    /// Advances the TLS handshake; `Ok(true)` when application data may flow (at once for
    /// plain TCP). Call on readiness until it says `true`; write nothing before. The turn it
    /// first says `true`, read until `WouldBlock` whatever the event was (see
    /// [`TlsStream::drive`]).
    pub fn handshake(&mut self, now: Instant) -> Result<bool, TlsError> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) if !t.is_handshaking() => Ok(true),
            Transport::Tls(t) => t.drive(now),
        }
    }

    /// Fails a TLS handshake that has passed its deadline (call on ticks).
    pub fn check_deadline(&mut self, now: Instant) -> Result<(), TlsError> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(t) => t.check_deadline(now),
        }
    }

    /// Encrypted bytes are still queued (plain TCP queues nothing here).
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.wants_write(),
        }
    }

    /// Closes our sending side in order: for TLS a `close_notify` first, flushed, then the TCP
    /// write side. `Ok(false)` while the `close_notify` is still queued (call again when
    /// writable); `Ok(true)` once the socket's write side is shut.
    pub fn shutdown_write(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(s) => s.shutdown(Shutdown::Write).map(|_| true),
            Transport::Tls(t) => {
                if t.error().is_none() {
                    t.close();
                }
                if t.wants_write() && !t.flush_tls().map_err(TlsError::into_io)? {
                    return Ok(false);
                }
                t.socket().shutdown(Shutdown::Write).map(|_| true)
            }
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            Transport::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
        }
    }
}

/// What the first bytes of an accepted connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// Nothing yet: peek again when readable.
    NeedMore,
    /// A TLS handshake record (`0x16 0x03 …`).
    Tls,
    /// Anything else (an MSRP request starts with `MSRP `).
    Plain,
}

/// Classifies the first bytes peeked from an accepted connection.
pub fn first_bytes(peeked: &[u8]) -> FirstBytes {
    match peeked {
        [] | [0x16] => FirstBytes::NeedMore,
        [0x16, 0x03, ..] => FirstBytes::Tls,
        _ => FirstBytes::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(first_bytes(b""), FirstBytes::NeedMore);
        assert_eq!(first_bytes(&[0x16]), FirstBytes::NeedMore);
        assert_eq!(first_bytes(&[0x16, 0x03, 0x01, 0x02]), FirstBytes::Tls);
        assert_eq!(first_bytes(b"MSRP a SEND\r\n"), FirstBytes::Plain);
        assert_eq!(first_bytes(&[0x16, 0x02]), FirstBytes::Plain);
        assert_eq!(first_bytes(b"M"), FirstBytes::Plain);
    }
}
