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
    /// `None` for a client connection not started yet ([`TlsStream::connect`]).
    conn: Option<Connection>,
    /// What a client connection is started from, at the first call that needs it: its first
    /// flight (an ephemeral key pair and the ClientHello) is made on the thread that drives the
    /// connection, not on the one that dialled it.
    start: Option<(Arc<ClientConfig>, ServerName<'static>)>,
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
            .field("handshaking", &self.is_handshaking())
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
    ///
    /// Cheap: the connection starts (key share, ClientHello) at the first [`TlsStream::drive`],
    /// `Read` or `Write`, on the I/O thread — so a thread that dials many peers (the engine's
    /// core) does no cryptography. An error starting it is then that call's error.
    pub fn connect(
        sock: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        deadline: Instant,
    ) -> Result<TlsStream, TlsError> {
        Ok(TlsStream {
            conn: None,
            start: Some((config, name)),
            sock,
            deadline,
            failed: None,
            eof: false,
        })
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
            conn: Some(conn),
            start: None,
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
        self.conn.as_ref().is_none_or(|c| c.is_handshaking())
    }

    /// Encrypted bytes are queued for the socket (keep asking for writability). True for a
    /// client connection not started yet: its ClientHello is to be sent.
    pub fn wants_write(&self) -> bool {
        match &self.conn {
            Some(c) => c.wants_write(),
            None => self.start.is_some(),
        }
    }

    /// Starts a client connection made by [`TlsStream::connect`] (no-op once started).
    fn begin(&mut self) -> Result<(), TlsError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some((config, name)) = self.start.take() else {
            return Err(self.fail(TlsError::ClosedDuringHandshake));
        };
        match ClientConnection::new(config, name) {
            Ok(mut c) => {
                c.set_buffer_limit(Some(BUFFER_LIMIT));
                self.conn = Some(c.into());
                Ok(())
            }
            Err(e) => Err(self.fail(TlsError::from_rustls(&e))),
        }
    }

    /// The first fatal error, if one happened.
    pub fn error(&self) -> Option<&TlsError> {
        self.failed.as_ref()
    }

    /// The certificate chain the peer presented (end-entity first), after the handshake.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.as_ref().and_then(|c| c.peer_certificates())
    }

    /// The fingerprint of the peer's end-entity certificate.
    pub fn peer_fingerprint(&self, hash: HashFunction) -> Option<Fingerprint> {
        self.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Fingerprint::of(hash, c))
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.as_ref().and_then(|c| c.alpn_protocol())
    }

    /// Whether the handshake was full or resumed a session (`None` while handshaking).
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        self.conn.as_ref().and_then(|c| c.handshake_kind())
    }

    /// The negotiated cipher suite (`None` until the server chose one).
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.conn
            .as_ref()
            .and_then(|c| c.negotiated_cipher_suite())
            .map(|s| s.suite())
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
        if self.is_handshaking() && now >= self.deadline {
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
        self.begin()?;
        if self.is_handshaking() {
            self.flush_tls()?;
            while self.is_handshaking() && self.conn.as_ref().is_some_and(|c| c.wants_read()) {
                if !self.read_records()? {
                    break;
                }
                self.flush_tls()?;
            }
        }
        self.flush_tls()?;
        if self.is_handshaking() && now >= self.deadline {
            return Err(self.fail(TlsError::HandshakeTimeout));
        }
        Ok(!self.is_handshaking())
    }

    /// One read of ciphertext from the socket and its processing. `Ok(false)` when the socket
    /// had nothing (`WouldBlock`) or is at EOF.
    fn read_records(&mut self) -> Result<bool, TlsError> {
        if self.eof {
            return Ok(false);
        }
        self.begin()?;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        loop {
            match conn.read_tls(&mut self.sock) {
                Ok(0) => {
                    self.eof = true;
                    if conn.is_handshaking() {
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
        if let Err(e) = conn.process_new_packets() {
            return Err(self.fail(TlsError::from_rustls(&e)));
        }
        Ok(true)
    }

    /// Writes queued ciphertext until the socket pushes back. `Ok(true)` when nothing is left.
    pub fn flush_tls(&mut self) -> Result<bool, TlsError> {
        let Some(conn) = self.conn.as_mut() else {
            // Not started: nothing is queued yet (the first `drive` makes the ClientHello).
            return Ok(self.start.is_none());
        };
        while conn.wants_write() {
            match conn.write_tls(&mut self.sock) {
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
        match self.conn.as_mut() {
            Some(c) => c.send_close_notify(),
            // Never started: nothing was sent, nothing is to be said.
            None => self.start = None,
        }
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
            if let Some(conn) = self.conn.as_mut().filter(|c| !c.is_handshaking()) {
                match conn.reader().read(buf) {
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
                Ok(false) if self.eof && !self.is_handshaking() => {
                    // Let the reader report close_notify (0) or truncation (UnexpectedEof).
                    if let Some(conn) = self.conn.as_mut() {
                        return conn.reader().read(buf);
                    }
                    return Err(io::ErrorKind::WouldBlock.into());
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
        self.begin().map_err(TlsError::into_io)?;
        self.flush_tls().map_err(TlsError::into_io)?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = conn.writer().write_vectored(bufs)?;
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
