//! TLS on a blocking socket, for the HTTP server's thread-per-connection design and for the
//! client side of `msrpcast receive --relay msrps://…` (handshake and AUTH before the connection
//! goes to the I/O pool): the handshake runs under one overall deadline (a peer trickling a byte
//! at a time cannot stretch it), then the caller gets a `rustls::StreamOwned` that reads and
//! writes like the `TcpStream` it wraps, with the socket's own read/write timeouts restored.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use super::TlsError;

/// A server-side TLS stream over a blocking socket.
pub type BlockingTls = StreamOwned<ServerConnection, TcpStream>;

/// A client-side TLS stream over a blocking socket.
pub type BlockingTlsClient = StreamOwned<ClientConnection, TcpStream>;

/// Runs the server handshake on `sock` within `timeout`, then hands back the stream.
pub fn accept(
    sock: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<BlockingTls, TlsError> {
    let conn = ServerConnection::new(config).map_err(|e| TlsError::from_rustls(&e))?;
    handshake(conn, sock, timeout)
}

/// Runs the client handshake on the connected `sock` within `timeout`, verifying the peer as
/// `name` with `config`'s verifier (the error names the cause: wrong host, unknown CA, …).
pub fn connect(
    sock: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    timeout: Duration,
) -> Result<BlockingTlsClient, TlsError> {
    let conn = ClientConnection::new(config, name).map_err(|e| TlsError::from_rustls(&e))?;
    handshake(conn, sock, timeout)
}

fn handshake<C, S>(
    mut conn: C,
    mut sock: TcpStream,
    timeout: Duration,
) -> Result<StreamOwned<C, TcpStream>, TlsError>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    let start = Instant::now();
    let io_err = |e: io::Error| TlsError::io(&e);
    let (read_timeout, write_timeout) = (
        sock.read_timeout().map_err(io_err)?,
        sock.write_timeout().map_err(io_err)?,
    );
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
                // Let the peer see our alert, if there is one.
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
