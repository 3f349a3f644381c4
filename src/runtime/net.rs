//! Socket set-up: the MSRP listener and outgoing connections, optionally from the listen port
//! (`msrp_reuse_port`): Kamailio's relay and msrp-node-lib match a connection to the `From-Path`
//! port, so the outgoing source port has to be the advertised one.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

fn socket_for(addr: &SocketAddr) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
}

/// A non-blocking listener with `SO_REUSEADDR` and `SO_REUSEPORT`, so outgoing connections may
/// share its port.
pub fn listen(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let s = socket_for(&addr)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(mio::net::TcpListener::from_std(s.into()))
}

/// Starts a non-blocking connection to `peer`, bound to `local` first when given (source port =
/// the listen port). The connection completes later: wait for writability, then check
/// `take_error` / `peer_addr`.
pub fn connect(peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<mio::net::TcpStream> {
    let s = socket_for(&peer)?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    if let Some(local) = local {
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&SockAddr::from(local))?;
    }
    match s.connect(&SockAddr::from(peer)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(s.into()))
}

/// Resolves an MSRP URI's host and port to a socket address (names through the system resolver;
/// this may block, so the engine calls it off the I/O threads).
pub fn resolve(uri: &crate::msrp::Uri) -> io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let port = uri.port.unwrap_or(crate::msrp::uri::DEFAULT_PORT);
    match &uri.host {
        crate::msrp::Host::V4(a) => Ok(SocketAddr::from((*a, port))),
        crate::msrp::Host::V6(a) => Ok(SocketAddr::from((*a, port))),
        crate::msrp::Host::Name(n) => {
            let name = std::str::from_utf8(n)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "host is not UTF-8"))?;
            (name, port).to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{name}: no address"))
            })
        }
    }
}
