//! [`TlsStream`]: a `rustls` connection over a non-blocking `mio` socket, driven by readiness.
//!
//! Nothing here blocks and nothing reads a clock: the caller passes `now`, and the handshake
//! fails with [`TlsError::HandshakeTimeout`] when a call sees `now` at or past the deadline.
//! The intended use from an I/O-thread handler:
//!
//! - on readiness, and on every tick while [`TlsStream::is_handshaking`]: [`TlsStream::drive`]
//!   (reads the peer's handshake records, writes ours, checks the deadline);
//! - once the handshake is done: `Read` for plaintext (until `WouldBlock`, as mio's readiness is
//!   edge-triggered) and `Write` for plaintext. `write` accepts at most [`BUFFER_LIMIT`] queued
//!   bytes and then returns `WouldBlock`: wait for writability, then `flush`/`write` again;
//! - [`TlsStream::wants_write`] tells whether encrypted bytes are still queued.
//!
//! Errors from `Read`/`Write` carry the [`TlsError`] ([`TlsError::from_io`] gets it back), so a
//! delivery can report "fingerprint mismatch" rather than "invalid data". Plaintext is only
//! read from the peer after the handshake — and so after its certificate was verified — and
//! plaintext written before the handshake completes is held back until then.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::fingerprint::{Fingerprint, HashFunction};
use super::TlsError;

/// Plaintext (and, separately, ciphertext) that may wait in memory before `write` pushes back.
pub const BUFFER_LIMIT: usize = 256 * 1024;

/// One TLS connection on a non-blocking socket.
pub struct TlsStream {
    conn: Connection,
    sock: TcpStream,
    deadline: Instant,
    /// The first fatal error; every later call returns it.
    failed: Option<TlsError>,
    /// The peer's side is closed (EOF seen on the socket).
    eof: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.conn.is_handshaking())
            .field("failed", &self.failed)
            .field("eof", &self.eof)
            .finish()
    }
}

fn would_block(e: &io::Error) -> bool {
    // A socket still connecting refuses writes with ENOTCONN: wait for writability as well.
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOTCONN)
}

impl TlsStream {
    /// The client side over `sock` (connected, or still connecting), verifying the peer as
    /// `name`. The handshake must complete by `deadline`.
    pub fn connect(
        sock: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        deadline: Instant,
    ) -> Result<TlsStream, TlsError> {
        let conn = ClientConnection::new(config, name).map_err(|e| TlsError::from_rustls(&e))?;
        Ok(TlsStream::new(conn.into(), sock, deadline))
    }

    /// The server side over an accepted `sock`.
    pub fn accept(
        sock: TcpStream,
        config: Arc<ServerConfig>,
        deadline: Instant,
    ) -> Result<TlsStream, TlsError> {
        let conn = ServerConnection::new(config).map_err(|e| TlsError::from_rustls(&e))?;
        Ok(TlsStream::new(conn.into(), sock, deadline))
    }

    /// The client side of a connection whose handshake already completed on a blocking socket
    /// ([`super::blocking::connect`]), continued on `sock` (the same socket, now non-blocking).
    /// Plaintext that rustls already decrypted stays buffered: read until `WouldBlock` first.
    pub fn established(conn: ClientConnection, sock: TcpStream) -> TlsStream {
        // The handshake is over: the deadline is never consulted again.
        TlsStream::new(conn.into(), sock, Instant::now())
    }

    fn new(mut conn: Connection, sock: TcpStream, deadline: Instant) -> TlsStream {
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        TlsStream {
            conn,
            sock,
            deadline,
            failed: None,
            eof: false,
        }
    }

    /// The socket, to register with a `mio::Registry`, or to shut down.
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Encrypted bytes are queued for the socket (keep asking for writability).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// The first fatal error, if one happened.
    pub fn error(&self) -> Option<&TlsError> {
        self.failed.as_ref()
    }

    /// The certificate chain the peer presented (end-entity first), after the handshake.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The fingerprint of the peer's end-entity certificate.
    pub fn peer_fingerprint(&self, hash: HashFunction) -> Option<Fingerprint> {
        self.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Fingerprint::of(hash, c))
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Records the first fatal error (later ones are consequences) and returns it.
    fn fail(&mut self, e: TlsError) -> TlsError {
        let first = self.failed.get_or_insert(e).clone();
        // Best effort: let the peer see our alert.
        let _ = self.flush_tls();
        first
    }

    /// Fails the handshake if `now` is at or past its deadline. Call from a periodic tick.
    pub fn check_deadline(&mut self, now: Instant) -> Result<(), TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.conn.is_handshaking() && now >= self.deadline {
            return Err(self.fail(TlsError::HandshakeTimeout));
        }
        Ok(())
    }

    /// Advances the handshake as far as the socket allows: reads the peer's records, writes
    /// ours, checks the deadline. `Ok(true)` once the handshake is complete (then use
    /// `Read`/`Write`); `Ok(false)` while waiting for the peer.
    ///
    /// When it first returns `Ok(true)`, read until `WouldBlock` even without a readable event:
    /// application data that came with the peer's last handshake flight (a client's first MSRP
    /// request, typically) has already been taken off the socket and waits in the buffer.
    pub fn drive(&mut self, now: Instant) -> Result<bool, TlsError> {
        self.check_deadline(now)?;
        if self.conn.is_handshaking() {
            self.flush_tls()?;
            while self.conn.is_handshaking() && self.conn.wants_read() {
                if !self.read_records()? {
                    break;
                }
                self.flush_tls()?;
            }
        }
        self.flush_tls()?;
        if self.conn.is_handshaking() && now >= self.deadline {
            return Err(self.fail(TlsError::HandshakeTimeout));
        }
        Ok(!self.conn.is_handshaking())
    }

    /// One read of ciphertext from the socket and its processing. `Ok(false)` when the socket
    /// had nothing (`WouldBlock`) or is at EOF.
    fn read_records(&mut self) -> Result<bool, TlsError> {
        if self.eof {
            return Ok(false);
        }
        loop {
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => {
                    self.eof = true;
                    if self.conn.is_handshaking() {
                        return Err(self.fail(TlsError::ClosedDuringHandshake));
                    }
                    // rustls now reports a clean close (close_notify seen) or UnexpectedEof.
                    return Ok(false);
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => return Err(self.fail(TlsError::io(&e))),
            }
        }
        if let Err(e) = self.conn.process_new_packets() {
            return Err(self.fail(TlsError::from_rustls(&e)));
        }
        Ok(true)
    }

    /// Writes queued ciphertext until the socket pushes back. `Ok(true)` when nothing is left.
    pub fn flush_tls(&mut self) -> Result<bool, TlsError> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => {
                    let err = TlsError::io(&e);
                    if self.failed.is_none() {
                        self.failed = Some(err.clone());
                    }
                    return Err(err);
                }
            }
        }
        Ok(true)
    }

    /// Queues a `close_notify` and tries to send it; the caller then shuts the socket's write
    /// side once [`TlsStream::wants_write`] is false (or its close deadline passed).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush_tls();
    }
}

impl Read for TlsStream {
    /// Plaintext from the peer. `Ok(0)` after the peer's `close_notify`; `UnexpectedEof` when
    /// the peer closed without one (a truncation); `WouldBlock` when nothing is buffered and the
    /// socket has nothing either.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into_io());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.conn.is_handshaking() {
                match self.conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // Nothing decrypted is waiting: one more read from the socket.
            match self.read_records() {
                Ok(true) => {
                    // Answers to what was read (handshake records, key updates) go out now.
                    self.flush_tls().map_err(TlsError::into_io)?;
                }
                Ok(false) if self.eof && !self.conn.is_handshaking() => {
                    // Let the reader report close_notify (0) or truncation (UnexpectedEof).
                    return self.conn.reader().read(buf);
                }
                Ok(false) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => return Err(e.into_io()),
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Queues plaintext (encrypted once the handshake is done) and writes what the socket takes.
    /// Returns `WouldBlock` when nothing more can be queued: wait for writability.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into_io());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        self.flush_tls().map_err(TlsError::into_io)?;
        let n = self.conn.writer().write_vectored(bufs)?;
        self.flush_tls().map_err(TlsError::into_io)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Writes queued ciphertext; `WouldBlock` while some is left.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into_io());
        }
        if self.flush_tls().map_err(TlsError::into_io)? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}
