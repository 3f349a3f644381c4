//! TLS on a blocking socket, for the HTTP server's thread-per-connection design: the handshake
//! runs under one overall deadline (a client trickling a byte at a time cannot stretch it), then
//! the caller gets a `rustls::StreamOwned` that reads and writes like the `TcpStream` it wraps,
//! with the socket's own read/write timeouts restored.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::TlsError;

/// A server-side TLS stream over a blocking socket.
pub type BlockingTls = StreamOwned<ServerConnection, TcpStream>;

/// Runs the server handshake on `sock` within `timeout`, then hands back the stream.
pub fn accept(
    mut sock: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<BlockingTls, TlsError> {
    let start = Instant::now();
    let io_err = |e: io::Error| TlsError::io(&e);
    let (read_timeout, write_timeout) = (
        sock.read_timeout().map_err(io_err)?,
        sock.write_timeout().map_err(io_err)?,
    );
    let mut conn = ServerConnection::new(config).map_err(|e| TlsError::from_rustls(&e))?;
    while conn.is_handshaking() {
        let left = timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or(TlsError::HandshakeTimeout)?;
        sock.set_read_timeout(Some(left)).map_err(io_err)?;
        sock.set_write_timeout(Some(left)).map_err(io_err)?;
        match conn.complete_io(&mut sock) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // Let the client see our alert, if there is one.
                let _ = conn.write_tls(&mut sock);
                return Err(classify(&e));
            }
        }
    }
    sock.set_read_timeout(read_timeout).map_err(io_err)?;
    sock.set_write_timeout(write_timeout).map_err(io_err)?;
    Ok(StreamOwned::new(conn, sock))
}

/// `complete_io` reports rustls errors as `InvalidData` wrapping the `rustls::Error`.
fn classify(e: &io::Error) -> TlsError {
    if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return TlsError::from_rustls(r);
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return TlsError::ClosedDuringHandshake;
    }
    TlsError::io(e)
}
