//! The TLS module over real loopback sockets, with certificates made here (rcgen): handshakes in
//! both roles, data both ways with back-pressure, each verification failure with its reason,
//! the fingerprint path, handshake deadlines, reload, and the ways a connection ends.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use msrpcast::msrp::Host;
use msrpcast::tls::config::server_name;
use msrpcast::tls::{Fingerprint, HashFunction, Tls, TlsError, TlsSettings, TlsStream, Verify};

/// Real time allowed for any one wait in these tests (they finish in milliseconds).
const WAIT: Duration = Duration::from_secs(10);
const HANDSHAKE: Duration = Duration::from_secs(5);

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "msrpcast-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key, as PEM.
struct Pem {
    cert: String,
    key: String,
    der: Vec<u8>,
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        issuer: Issuer::new(params, key),
        cert_pem: cert.pem(),
    }
}

fn leaf(ca: &Ca, names: &[&str], expired: bool) -> Pem {
    leaf_valid(ca, names, if expired { Some((2001, 2002)) } else { None })
}

/// A leaf valid from January 1st of the first year to January 1st of the second, if given.
fn leaf_valid(ca: &Ca, names: &[&str], years: Option<(i32, i32)>) -> Pem {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if let Some((from, to)) = years {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn self_signed(names: &[&str]) -> Pem {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A `Tls` with `pem` as our certificate (if any), trusting `ca_pem` (if any).
fn tls(dir: &Dir, tag: &str, pem: Option<&Pem>, ca_pem: Option<&str>, verify: Verify) -> Tls {
    let (cert, key) = match pem {
        Some(p) => (
            Some(dir.write(&format!("{tag}-cert.pem"), &p.cert)),
            Some(dir.write(&format!("{tag}-key.pem"), &p.key)),
        ),
        None => (None, None),
    };
    Tls::load(TlsSettings {
        cert,
        key,
        ca: ca_pem.map(|c| dir.write(&format!("{tag}-ca.pem"), c)),
        verify,
        request_client_cert: true,
        alpn: Vec::new(),
        verify_cache: 0,
    })
    .unwrap()
}

/// A connected pair of loopback sockets: (client side as a blocking std socket, server side).
fn plain_pair() -> (std::net::TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    // As the engine does (net::connect, Listener): without it, request/response rounds wait on
    // Nagle and delayed ACKs.
    client.set_nodelay(true).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok((server, _)) => {
                server.set_nodelay(true).unwrap();
                return (client, server);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "accept timed out");
                std::thread::yield_now();
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A connected pair of non-blocking loopback sockets: (client side, server side).
fn socket_pair() -> (TcpStream, TcpStream) {
    let (client, server) = plain_pair();
    client.set_nonblocking(true).unwrap();
    (TcpStream::from_std(client), server)
}

/// Waits on both sockets' readiness and drives both handshakes until each has finished or
/// failed. Returns each side's result.
struct Pair {
    poll: Poll,
    client: TlsStream,
    server: TlsStream,
}

impl Pair {
    fn new(client: TlsStream, server: TlsStream) -> Pair {
        let poll = Poll::new().unwrap();
        let mut p = Pair {
            poll,
            client,
            server,
        };
        let both = Interest::READABLE | Interest::WRITABLE;
        p.poll
            .registry()
            .register(p.client.socket_mut(), Token(0), both)
            .unwrap();
        p.poll
            .registry()
            .register(p.server.socket_mut(), Token(1), both)
            .unwrap();
        p
    }

    fn wait(&mut self) {
        let mut events = Events::with_capacity(8);
        self.poll
            .poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
    }

    fn handshake(&mut self) -> (Result<(), TlsError>, Result<(), TlsError>) {
        let deadline = Instant::now() + WAIT;
        let mut c: Option<Result<(), TlsError>> = None;
        let mut s: Option<Result<(), TlsError>> = None;
        while c.is_none() || s.is_none() {
            assert!(Instant::now() < deadline, "handshake never ended");
            let now = Instant::now();
            if c.is_none() {
                match self.client.drive(now) {
                    Ok(true) => c = Some(Ok(())),
                    Ok(false) => {}
                    Err(e) => c = Some(Err(e)),
                }
            }
            if s.is_none() {
                match self.server.drive(now) {
                    Ok(true) => s = Some(Ok(())),
                    Ok(false) => {}
                    Err(e) => s = Some(Err(e)),
                }
            }
            if c.is_none() || s.is_none() {
                self.wait();
            }
        }
        (c.unwrap(), s.unwrap())
    }
}

/// Client connecting as `name` with `client_tls`, server accepting with `server_tls`.
fn pair(client_tls: &Tls, fingerprints: &[Fingerprint], name: &str, server_tls: &Tls) -> Pair {
    let (c, s) = socket_pair();
    let deadline = Instant::now() + HANDSHAKE;
    let host = host(name);
    let client = TlsStream::connect(
        c,
        client_tls.client_config(fingerprints).unwrap(),
        server_name(&host).unwrap(),
        deadline,
    )
    .unwrap();
    let server = TlsStream::accept(s, server_tls.server_config().unwrap(), deadline).unwrap();
    Pair::new(client, server)
}

fn host(name: &str) -> Host {
    match name.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => Host::V4(a),
        Ok(std::net::IpAddr::V6(a)) => Host::V6(a),
        Err(_) => Host::Name(bytes::Bytes::copy_from_slice(name.as_bytes())),
    }
}

/// Moves `data` from `from` to `to` through non-blocking writes and reads with back-pressure.
fn transfer(p: &mut Pair, client_to_server: bool, data: &[u8]) -> Vec<u8> {
    let mut got = Vec::with_capacity(data.len());
    let mut sent = 0;
    let mut buf = vec![0u8; 16 * 1024];
    let mut would_blocks = 0usize;
    let deadline = Instant::now() + WAIT;
    while got.len() < data.len() {
        assert!(Instant::now() < deadline, "transfer stuck at {}", got.len());
        let (from, to) = if client_to_server {
            (&mut p.client, &mut p.server)
        } else {
            (&mut p.server, &mut p.client)
        };
        let mut progressed = false;
        while sent < data.len() {
            match from.write(&data[sent..]) {
                Ok(n) => {
                    sent += n;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    would_blocks += 1;
                    break;
                }
                Err(e) => panic!("write: {e}"),
            }
        }
        let _ = from.flush();
        loop {
            match to.read(&mut buf) {
                Ok(0) => panic!("closed early"),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        if !progressed {
            p.wait();
        }
    }
    if data.len() > 4 * msrpcast::tls::stream::BUFFER_LIMIT {
        assert!(would_blocks > 0, "a large write never met back-pressure");
    }
    got
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn handshake_and_data_both_ways_with_host_verification() {
    let dir = Dir::new();
    let ca = ca("test CA");
    let server_pem = leaf(&ca, &["localhost", "127.0.0.1"], false);
    let client_pem = leaf(&ca, &["client.test"], false);
    let server = tls(
        &dir,
        "s",
        Some(&server_pem),
        Some(&ca.cert_pem),
        Verify::Host,
    );
    let client = tls(
        &dir,
        "c",
        Some(&client_pem),
        Some(&ca.cert_pem),
        Verify::Host,
    );
    for name in ["localhost", "127.0.0.1"] {
        let mut p = pair(&client, &[], name, &server);
        let (c, s) = p.handshake();
        assert_eq!(c, Ok(()));
        assert_eq!(s, Ok(()));
        // 8 MiB client → server: much more than the socket and rustls buffers hold.
        let data = pattern(8 * 1024 * 1024);
        assert!(
            transfer(&mut p, true, &data) == data,
            "client → server corrupted"
        );
        let back = pattern(100_000);
        assert!(
            transfer(&mut p, false, &back) == back,
            "server → client corrupted"
        );
        // The client presented its certificate; the server checks it once it knows the peer.
        assert_eq!(
            p.server.peer_fingerprint(HashFunction::Sha256),
            Some(Fingerprint::of(HashFunction::Sha256, &client_pem.der))
        );
        assert_eq!(
            server.check_accepted(&p.server, &host("client.test"), &[]),
            Ok(())
        );
        assert!(matches!(
            server.check_accepted(&p.server, &host("other.test"), &[]),
            Err(TlsError::WrongHost { .. })
        ));
    }
}

#[test]
fn wrong_host_fails_with_the_names() {
    let dir = Dir::new();
    let ca = ca("test CA");
    let server = tls(
        &dir,
        "s",
        Some(&leaf(&ca, &["localhost"], false)),
        None,
        Verify::None,
    );
    let client = tls(&dir, "c", None, Some(&ca.cert_pem), Verify::Host);
    let mut p = pair(&client, &[], "wrong.example", &server);
    let (c, s) = p.handshake();
    let e = c.unwrap_err();
    match &e {
        TlsError::WrongHost {
            expected,
            presented,
        } => {
            assert_eq!(expected, "wrong.example");
            assert!(presented.iter().any(|n| n.contains("localhost")), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("wrong host"), "{e}");
    // The server learns that the client refused its certificate.
    assert!(matches!(s, Err(TlsError::PeerAlert { .. })), "{s:?}");
}

#[test]
fn expired_certificate_fails() {
    let dir = Dir::new();
    let ca = ca("test CA");
    let server = tls(
        &dir,
        "s",
        Some(&leaf(&ca, &["localhost"], true)),
        None,
        Verify::None,
    );
    let client = tls(&dir, "c", None, Some(&ca.cert_pem), Verify::Host);
    let (c, _) = pair(&client, &[], "localhost", &server).handshake();
    let e = c.unwrap_err();
    assert!(matches!(e, TlsError::Expired { .. }), "{e:?}");
    assert!(e.to_string().starts_with("certificate expired"), "{e}");

    let server = tls(
        &dir,
        "s2",
        Some(&leaf_valid(&ca, &["localhost"], Some((2090, 2091)))),
        None,
        Verify::None,
    );
    let (c, _) = pair(&client, &[], "localhost", &server).handshake();
    let e = c.unwrap_err();
    assert!(matches!(e, TlsError::NotYetValid { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("certificate not valid yet"),
        "{e}"
    );
}

#[test]
fn unknown_ca_fails_and_no_plaintext_reaches_the_peer() {
    let dir = Dir::new();
    let trusted = ca("trusted CA");
    let other = ca("other CA");
    let server = tls(
        &dir,
        "s",
        Some(&leaf(&other, &["localhost"], false)),
        None,
        Verify::None,
    );
    let client = tls(&dir, "c", None, Some(&trusted.cert_pem), Verify::Host);
    let mut p = pair(&client, &[], "localhost", &server);
    // Written before the handshake: held back, and never sent since the handshake fails.
    let n = p.client.write(b"MSRP secret SEND\r\n").unwrap();
    assert_eq!(n, 18);
    let (c, s) = p.handshake();
    assert_eq!(c, Err(TlsError::UnknownCa));
    assert!(s.is_err());
    assert!(c.unwrap_err().to_string().starts_with("unknown CA"));
    let mut buf = [0u8; 64];
    assert!(
        p.server.read(&mut buf).is_err(),
        "the server read plaintext"
    );
}

#[test]
fn self_signed_certificate_is_an_unknown_ca_without_fingerprint() {
    let dir = Dir::new();
    let ca = ca("test CA");
    let server = tls(
        &dir,
        "s",
        Some(&self_signed(&["localhost"])),
        None,
        Verify::None,
    );
    // Fingerprint mode with no fingerprint in the SDP falls back to host verification.
    let client = tls(&dir, "c", None, Some(&ca.cert_pem), Verify::Fingerprint);
    let (c, _) = pair(&client, &[], "localhost", &server).handshake();
    assert_eq!(c, Err(TlsError::UnknownCa));
}

#[test]
fn fingerprint_accepts_a_self_signed_certificate() {
    let dir = Dir::new();
    let ca = ca("test CA");
    let pem = self_signed(&["peer.invalid"]);
    let server = tls(&dir, "s", Some(&pem), None, Verify::None);
    let client = tls(&dir, "c", None, Some(&ca.cert_pem), Verify::Fingerprint);
    // As an SDP answer would carry it: lower-case hex, SHA-1 and SHA-256 both given.
    let sha256 = Fingerprint::of(HashFunction::Sha256, &pem.der);
    let sha1 = Fingerprint::of(HashFunction::Sha1, &pem.der);
    let from_sdp = Fingerprint::parse(&sha256.to_string().to_lowercase()).unwrap();
    // The host in the URI does not matter once the fingerprint matches.
    let mut p = pair(&client, &[sha1, from_sdp], "127.0.0.1", &server);
    let (c, s) = p.handshake();
    assert_eq!(c, Ok(()));
    assert_eq!(s, Ok(()));
    let data = pattern(300_000);
    assert!(transfer(&mut p, true, &data) == data);
}

#[test]
fn fingerprint_mismatch_fails_with_both_values() {
    let dir = Dir::new();
    let pem = self_signed(&["localhost"]);
    let impostor = self_signed(&["localhost"]);
    let server = tls(&dir, "s", Some(&impostor), None, Verify::None);
    let client = tls(
        &dir,
        "c",
        None,
        Some(&ca("x").cert_pem),
        Verify::Fingerprint,
    );
    let expected = Fingerprint::of(HashFunction::Sha256, &pem.der);
    let mut p = pair(
        &client,
        std::slice::from_ref(&expected),
        "localhost",
        &server,
    );
    let (c, _) = p.handshake();
    let e = c.unwrap_err();
    assert_eq!(
        e,
        TlsError::FingerprintMismatch {
            expected: vec![expected.to_string()],
            presented: Fingerprint::of(HashFunction::Sha256, &impostor.der).to_string(),
        }
    );
    assert!(e.to_string().starts_with("fingerprint mismatch"), "{e}");
}

#[test]
fn fingerprint_of_an_accepted_client_is_checked_after_the_handshake() {
    let dir = Dir::new();
    let server_pem = self_signed(&["server.invalid"]);
    let client_pem = self_signed(&["client.invalid"]);
    let server = tls(
        &dir,
        "s",
        Some(&server_pem),
        Some(&ca("x").cert_pem),
        Verify::Fingerprint,
    );
    let client = tls(&dir, "c", Some(&client_pem), None, Verify::None);
    let mut p = pair(&client, &[], "localhost", &server);
    assert_eq!(p.handshake(), (Ok(()), Ok(())));
    let right = Fingerprint::of(HashFunction::Sha512, &client_pem.der);
    let wrong = Fingerprint::of(HashFunction::Sha512, &server_pem.der);
    let h = host("client.invalid");
    assert_eq!(server.check_accepted(&p.server, &h, &[right]), Ok(()));
    assert!(matches!(
        server.check_accepted(&p.server, &h, &[wrong]),
        Err(TlsError::FingerprintMismatch { .. })
    ));
    // Without a fingerprint in the SDP: host rules, and a self-signed one is unknown.
    assert_eq!(
        server.check_accepted(&p.server, &h, &[]),
        Err(TlsError::UnknownCa)
    );
}

#[test]
fn accepted_client_without_certificate() {
    let dir = Dir::new();
    let server = tls(
        &dir,
        "s",
        Some(&self_signed(&["s"])),
        Some(&ca("x").cert_pem),
        Verify::Host,
    );
    let client = tls(&dir, "c", None, None, Verify::None);
    let mut p = pair(&client, &[], "localhost", &server);
    assert_eq!(p.handshake(), (Ok(()), Ok(())));
    assert_eq!(
        server.check_accepted(&p.server, &host("localhost"), &[]),
        Err(TlsError::NoPeerCertificate)
    );
}

#[test]
fn verify_none_accepts_anything() {
    let dir = Dir::new();
    let server = tls(
        &dir,
        "s",
        Some(&self_signed(&["x.invalid"])),
        None,
        Verify::None,
    );
    let client = tls(&dir, "c", None, None, Verify::None);
    let mut p = pair(&client, &[], "localhost", &server);
    assert_eq!(p.handshake(), (Ok(()), Ok(())));
}

/// `TlsStream::connect` does no TLS work: the key share and ClientHello are made at the first
/// `drive` (on the I/O thread, not on the engine's core thread that dials). Until then nothing
/// reaches the peer, the stream counts as handshaking (its deadline applies) and wants to
/// write; closed unstarted, it has nothing to send.
#[test]
fn client_starts_at_the_first_drive() {
    let dir = Dir::new();
    let client_tls = tls(&dir, "c", None, None, Verify::None);
    let start = Instant::now();
    let (c, mut s) = socket_pair();
    let mut client = TlsStream::connect(
        c,
        client_tls.client_config(&[]).unwrap(),
        server_name(&host("localhost")).unwrap(),
        start + HANDSHAKE,
    )
    .unwrap();
    assert!(client.is_handshaking() && client.wants_write());
    assert!(client.peer_certificates().is_none() && client.cipher_suite().is_none());
    std::thread::sleep(Duration::from_millis(20));
    let mut buf = [0u8; 4096];
    let e = s.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "bytes before drive");

    assert_eq!(client.drive(start), Ok(false));
    let deadline = Instant::now() + WAIT;
    let n = loop {
        match s.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no ClientHello");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("read: {e}"),
        }
    };
    assert_eq!(
        msrpcast::tls::first_bytes(&buf[..n]),
        msrpcast::tls::FirstBytes::Tls
    );

    // Never driven: the deadline still ends it.
    let (c, _s) = socket_pair();
    let mut idle = TlsStream::connect(
        c,
        client_tls.client_config(&[]).unwrap(),
        server_name(&host("localhost")).unwrap(),
        start + HANDSHAKE,
    )
    .unwrap();
    assert_eq!(idle.check_deadline(start), Ok(()));
    assert_eq!(
        idle.check_deadline(start + HANDSHAKE),
        Err(TlsError::HandshakeTimeout)
    );

    // Closed before it started: nothing queued, nothing sent.
    let (c, mut s) = socket_pair();
    let mut closed = TlsStream::connect(
        c,
        client_tls.client_config(&[]).unwrap(),
        server_name(&host("localhost")).unwrap(),
        start + HANDSHAKE,
    )
    .unwrap();
    closed.close();
    assert!(!closed.wants_write());
    assert_eq!(closed.flush_tls(), Ok(true));
    closed.socket().shutdown(std::net::Shutdown::Write).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match s.read(&mut buf) {
            Ok(n) => {
                assert_eq!(n, 0, "bytes from a connection closed before it started");
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no EOF");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Our MSRP servers (no ALPN) send no TLS 1.3 session tickets: a second connection from the same
/// client config to the same server is a full handshake again (an MSRP connection is one
/// session's, and a benchmark of handshakes measures full ones). An HTTPS server (ALPN
/// `http/1.1`) still sends them, and there the second connection resumes. Both negotiate
/// TLS13_AES_128_GCM_SHA256, our preferred suite.
#[test]
fn msrp_servers_send_no_session_tickets_https_servers_do() {
    let dir = Dir::new();
    let ca = ca("test CA");
    let server_pem = leaf(&ca, &["localhost"], false);
    let client = tls(&dir, "c", None, Some(&ca.cert_pem), Verify::Host);
    let msrp = tls(&dir, "m", Some(&server_pem), None, Verify::None);
    let https = Tls::load(TlsSettings {
        cert: Some(dir.write("h-cert.pem", &server_pem.cert)),
        key: Some(dir.write("h-key.pem", &server_pem.key)),
        ca: None,
        verify: Verify::None,
        request_client_cert: false,
        alpn: vec![b"http/1.1".to_vec()],
        verify_cache: 0,
    })
    .unwrap();
    for (server, second) in [
        (&msrp, rustls::HandshakeKind::Full),
        (&https, rustls::HandshakeKind::Resumed),
    ] {
        for kind in [rustls::HandshakeKind::Full, second] {
            let mut p = pair(&client, &[], "localhost", server);
            let (c, s) = p.handshake();
            assert_eq!((c, s), (Ok(()), Ok(())));
            assert_eq!(p.client.handshake_kind(), Some(kind));
            assert_eq!(
                p.client.cipher_suite(),
                Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
            );
            // The client reads what followed the handshake (tickets, if any) with this data.
            assert_eq!(transfer(&mut p, false, b"after"), b"after");
        }
    }
}

#[test]
fn handshake_deadline_against_a_silent_peer() {
    let dir = Dir::new();
    let server_tls = tls(
        &dir,
        "s",
        Some(&self_signed(&["localhost"])),
        None,
        Verify::None,
    );
    let client_tls = tls(&dir, "c", None, None, Verify::None);
    let start = Instant::now();

    // Client role: the server accepted the TCP connection and never speaks.
    let (c, _silent_server) = socket_pair();
    let mut client = TlsStream::connect(
        c,
        client_tls.client_config(&[]).unwrap(),
        server_name(&host("localhost")).unwrap(),
        start + HANDSHAKE,
    )
    .unwrap();
    assert_eq!(client.drive(start), Ok(false));
    assert_eq!(client.check_deadline(start + HANDSHAKE / 2), Ok(()));
    assert_eq!(
        client.drive(start + HANDSHAKE),
        Err(TlsError::HandshakeTimeout)
    );
    // Sticky: later calls report the same.
    let e = client.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(TlsError::from_io(&e), Some(&TlsError::HandshakeTimeout));

    // Server role: the client connected and never sends a ClientHello.
    let (_silent_client, s) = socket_pair();
    let mut server =
        TlsStream::accept(s, server_tls.server_config().unwrap(), start + HANDSHAKE).unwrap();
    assert_eq!(server.drive(start), Ok(false));
    assert_eq!(
        server.check_deadline(start + HANDSHAKE + Duration::from_millis(1)),
        Err(TlsError::HandshakeTimeout)
    );
}

#[test]
fn peer_closing_or_speaking_plain_text_during_the_handshake() {
    let dir = Dir::new();
    let server_tls = tls(
        &dir,
        "s",
        Some(&self_signed(&["localhost"])),
        None,
        Verify::None,
    );
    let now = Instant::now();

    let (c, s) = socket_pair();
    drop(c);
    let mut server = TlsStream::accept(s, server_tls.server_config().unwrap(), now + WAIT).unwrap();
    let deadline = Instant::now() + WAIT;
    let r = loop {
        match server.drive(Instant::now()) {
            Ok(false) => {
                assert!(Instant::now() < deadline);
                std::thread::yield_now();
            }
            other => break other,
        }
    };
    assert_eq!(r, Err(TlsError::ClosedDuringHandshake));

    // A plain MSRP client talking to the TLS port.
    let (mut c, s) = plain_pair();
    c.write_all(b"MSRP a786hjs2 SEND\r\nTo-Path: msrp://x\r\n\r\n")
        .unwrap();
    let mut server = TlsStream::accept(s, server_tls.server_config().unwrap(), now + WAIT).unwrap();
    let r = loop {
        match server.drive(Instant::now()) {
            Ok(false) => {
                assert!(Instant::now() < deadline);
                std::thread::yield_now();
            }
            other => break other,
        }
    };
    assert!(matches!(r, Err(TlsError::Protocol { .. })), "{r:?}");
}

#[test]
fn close_notify_versus_truncation() {
    let dir = Dir::new();
    let server_tls = tls(
        &dir,
        "s",
        Some(&self_signed(&["localhost"])),
        None,
        Verify::None,
    );
    let client_tls = tls(&dir, "c", None, None, Verify::None);

    let mut p = pair(&client_tls, &[], "localhost", &server_tls);
    assert_eq!(p.handshake(), (Ok(()), Ok(())));
    p.client.write_all(b"bye").unwrap();
    p.client.close();
    assert!(!p.client.wants_write());
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 16];
    loop {
        assert!(Instant::now() < deadline);
        match p.server.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => p.wait(),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, b"bye");

    let mut p = pair(&client_tls, &[], "localhost", &server_tls);
    assert_eq!(p.handshake(), (Ok(()), Ok(())));
    p.client
        .socket()
        .shutdown(std::net::Shutdown::Both)
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let e = loop {
        assert!(Instant::now() < deadline);
        match p.server.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => p.wait(),
            other => break other.unwrap_err(),
        }
    };
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

fn write_pem(dir: &Path, pem: &Pem) {
    std::fs::write(dir.join("live-cert.pem"), &pem.cert).unwrap();
    std::fs::write(dir.join("live-key.pem"), &pem.key).unwrap();
}

#[test]
fn reload_swaps_the_certificate_and_keeps_old_connections() {
    let dir = Dir::new();
    let first = self_signed(&["localhost"]);
    let second = self_signed(&["localhost"]);
    write_pem(&dir.0, &first);
    let server_tls = Tls::load(TlsSettings {
        cert: Some(dir.0.join("live-cert.pem")),
        key: Some(dir.0.join("live-key.pem")),
        verify: Verify::None,
        ..Default::default()
    })
    .unwrap();
    let client_tls = tls(
        &dir,
        "c",
        None,
        Some(&ca("x").cert_pem),
        Verify::Fingerprint,
    );
    let fp1 = Fingerprint::of(HashFunction::Sha256, &first.der);
    let fp2 = Fingerprint::of(HashFunction::Sha256, &second.der);
    assert_eq!(server_tls.fingerprint(), Some(fp1.clone()));

    let mut old = pair(
        &client_tls,
        std::slice::from_ref(&fp1),
        "localhost",
        &server_tls,
    );
    assert_eq!(old.handshake(), (Ok(()), Ok(())));

    write_pem(&dir.0, &second);
    server_tls.reload().unwrap();
    assert_eq!(server_tls.fingerprint(), Some(fp2.clone()));

    // The old connection goes on with the old certificate.
    let data = pattern(50_000);
    assert!(transfer(&mut old, true, &data) == data);
    // New handshakes present the new one.
    let (c, _) = pair(
        &client_tls,
        std::slice::from_ref(&fp1),
        "localhost",
        &server_tls,
    )
    .handshake();
    assert!(
        matches!(c, Err(TlsError::FingerprintMismatch { .. })),
        "{c:?}"
    );
    let (c, _) = pair(
        &client_tls,
        std::slice::from_ref(&fp2),
        "localhost",
        &server_tls,
    )
    .handshake();
    assert_eq!(c, Ok(()));

    // A broken file on reload: the error names it, the loaded certificate stays.
    std::fs::write(dir.0.join("live-key.pem"), "garbage").unwrap();
    let e = server_tls.reload().unwrap_err();
    assert!(e.to_string().contains("live-key.pem"), "{e}");
    assert_eq!(server_tls.fingerprint(), Some(fp2));
    // And a key from another certificate is refused as such.
    std::fs::write(dir.0.join("live-key.pem"), &first.key).unwrap();
    std::fs::write(dir.0.join("live-cert.pem"), &second.cert).unwrap();
    assert!(matches!(
        server_tls.reload(),
        Err(TlsError::KeyMismatch { .. })
    ));
}

#[test]
fn connecting_socket_handshakes_once_connected() {
    // The engine hands over a socket whose connect is still in progress.
    let dir = Dir::new();
    let server_tls = tls(
        &dir,
        "s",
        Some(&self_signed(&["localhost"])),
        None,
        Verify::None,
    );
    let client_tls = tls(&dir, "c", None, None, Verify::None);
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let c = TcpStream::connect(addr).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut client = TlsStream::connect(
        c,
        client_tls.client_config(&[]).unwrap(),
        server_name(&host("localhost")).unwrap(),
        deadline,
    )
    .unwrap();
    // Drive before the accept: must not fail on a not-yet-connected socket.
    assert_eq!(client.drive(Instant::now()), Ok(false));
    let s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline);
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    };
    let server = TlsStream::accept(s, server_tls.server_config().unwrap(), deadline).unwrap();
    let mut p = Pair::new(client, server);
    assert_eq!(p.handshake(), (Ok(()), Ok(())));
}

#[test]
fn blocking_accept_for_https() {
    let dir = Dir::new();
    let ca = ca("test CA");
    let pem = leaf(&ca, &["localhost"], false);
    let server_tls = Tls::load(TlsSettings {
        cert: Some(dir.write("h-cert.pem", &pem.cert)),
        key: Some(dir.write("h-key.pem", &pem.key)),
        verify: Verify::None,
        request_client_cert: false,
        alpn: vec![b"http/1.1".to_vec()],
        ..Default::default()
    })
    .unwrap();
    let client_tls = tls(&dir, "c", None, Some(&ca.cert_pem), Verify::Host);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = client_tls.client_config(&[]).unwrap();
    let client = std::thread::spawn(move || {
        let sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let conn =
            rustls::ClientConnection::new(cfg, server_name(&host("localhost")).unwrap()).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).unwrap();
        reply
    });
    let (sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut s =
        msrpcast::tls::blocking::accept(sock, server_tls.server_config().unwrap(), WAIT).unwrap();
    // The socket's own timeout is back once the handshake is done.
    assert_eq!(
        s.sock.read_timeout().unwrap(),
        Some(Duration::from_millis(100))
    );
    let mut req = [0u8; 18];
    s.read_exact(&mut req).unwrap();
    assert_eq!(&req, b"GET / HTTP/1.1\r\n\r\n");
    s.write_all(b"pong").unwrap();
    assert_eq!(&client.join().unwrap(), b"pong");
}

#[test]
fn blocking_accept_deadline_and_plain_http() {
    let dir = Dir::new();
    let server_tls = tls(
        &dir,
        "s",
        Some(&self_signed(&["localhost"])),
        None,
        Verify::None,
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    // A client that connects and says nothing.
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    let (sock, _) = listener.accept().unwrap();
    let start = Instant::now();
    let limit = Duration::from_millis(200);
    let e = msrpcast::tls::blocking::accept(sock, server_tls.server_config().unwrap(), limit)
        .unwrap_err();
    assert_eq!(e, TlsError::HandshakeTimeout);
    let took = start.elapsed();
    assert!(took >= limit && took < WAIT, "{took:?}");

    // Plain HTTP on the HTTPS port.
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (sock, _) = listener.accept().unwrap();
    let e = msrpcast::tls::blocking::accept(sock, server_tls.server_config().unwrap(), WAIT)
        .unwrap_err();
    assert!(matches!(e, TlsError::Protocol { .. }), "{e:?}");
}

/// A TLS echo server as a handler on the engine's own I/O pool: the adapter driven the way a
/// delivery would drive it (readiness, ticks, never blocking).
struct Echo {
    stream: TlsStream,
    pending: Vec<u8>,
    echoed: usize,
    report: crossbeam_channel::Sender<Result<usize, TlsError>>,
}

impl Echo {
    fn report(&mut self, r: Result<usize, TlsError>) -> msrpcast::runtime::io::Flow {
        let _ = self.report.send(r);
        msrpcast::runtime::io::Flow::Close
    }

    fn turn(&mut self, now: Instant) -> msrpcast::runtime::io::Flow {
        use msrpcast::runtime::io::Flow;
        match self.stream.drive(now) {
            Err(e) => return self.report(Err(e)),
            Ok(false) => return Flow::Continue,
            Ok(true) => {}
        }
        let mut buf = [0u8; 8192];
        loop {
            // Echo what is pending first; read more only when it is gone (back-pressure).
            while !self.pending.is_empty() {
                match self.stream.write(&self.pending) {
                    Ok(n) => {
                        self.echoed += n;
                        self.pending.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Continue,
                    Err(e) => return self.report(Err(TlsError::from_io(&e).unwrap().clone())),
                }
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.stream.close();
                    let n = self.echoed;
                    return self.report(Ok(n));
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Continue,
                Err(e) => {
                    return self.report(Err(TlsError::Io {
                        kind: e.kind(),
                        detail: e.to_string(),
                    }))
                }
            }
        }
    }
}

impl msrpcast::runtime::io::Handler for Echo {
    fn register(&mut self, registry: &mio::Registry, token: Token) -> io::Result<()> {
        registry.register(
            self.stream.socket_mut(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn deregister(&mut self, registry: &mio::Registry) {
        let _ = registry.deregister(self.stream.socket_mut());
    }

    fn on_ready(
        &mut self,
        now: Instant,
        _: bool,
        _: bool,
        _: &mut msrpcast::runtime::io::Ctx,
    ) -> msrpcast::runtime::io::Flow {
        self.turn(now)
    }

    fn on_wake(
        &mut self,
        _: Instant,
        _: &mut msrpcast::runtime::io::Ctx,
    ) -> msrpcast::runtime::io::Flow {
        msrpcast::runtime::io::Flow::Continue
    }

    fn on_tick(
        &mut self,
        now: Instant,
        _: &mut msrpcast::runtime::io::Ctx,
    ) -> msrpcast::runtime::io::Flow {
        if let Err(e) = self.stream.check_deadline(now) {
            return self.report(Err(e));
        }
        self.turn(now)
    }

    fn on_command(
        &mut self,
        _: msrpcast::runtime::io::Command,
        _: Instant,
        _: &mut msrpcast::runtime::io::Ctx,
    ) -> msrpcast::runtime::io::Flow {
        msrpcast::runtime::io::Flow::Close
    }
}

#[test]
fn the_io_pool_drives_the_adapter() {
    let dir = Dir::new();
    let ca = ca("test CA");
    let server_tls = tls(
        &dir,
        "s",
        Some(&leaf(&ca, &["localhost"], false)),
        None,
        Verify::None,
    );
    let client_tls = tls(&dir, "c", None, Some(&ca.cert_pem), Verify::Host);
    let pool =
        msrpcast::runtime::io::IoPool::start(1, msrpcast::runtime::log::Logger::discard()).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(4);

    // Echo: the client sends 64 × 16 KiB, each read back before the next.
    let (client_sock, server_sock) = plain_pair();
    pool.add(Box::new(Echo {
        stream: TlsStream::accept(
            server_sock,
            server_tls.server_config().unwrap(),
            Instant::now() + HANDSHAKE,
        )
        .unwrap(),
        pending: Vec::new(),
        echoed: 0,
        report: tx.clone(),
    }));
    client_sock.set_read_timeout(Some(WAIT)).unwrap();
    let conn = rustls::ClientConnection::new(
        client_tls.client_config(&[]).unwrap(),
        server_name(&host("localhost")).unwrap(),
    )
    .unwrap();
    let mut client = rustls::StreamOwned::new(conn, client_sock);
    let data = pattern(16 * 1024 * 64);
    let mut back = vec![0u8; 16 * 1024];
    for chunk in data.chunks(16 * 1024) {
        client.write_all(chunk).unwrap();
        client.read_exact(&mut back[..chunk.len()]).unwrap();
        assert!(back[..chunk.len()] == *chunk);
    }
    client.conn.send_close_notify();
    client.flush().unwrap();
    let r = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(r, Ok(data.len()));

    // A silent client: the pool's tick ends the handshake at its deadline.
    let (_silent, server_sock) = plain_pair();
    let start = Instant::now();
    pool.add(Box::new(Echo {
        stream: TlsStream::accept(
            server_sock,
            server_tls.server_config().unwrap(),
            start + Duration::from_millis(200),
        )
        .unwrap(),
        pending: Vec::new(),
        echoed: 0,
        report: tx,
    }));
    let r = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(r, Err(TlsError::HandshakeTimeout));
    assert!(start.elapsed() >= Duration::from_millis(200));
}

/// Sends `data` from `a` to `b` through the `Transport` interface, then closes `a`'s sending side
/// in order; returns what `b` read up to its end of stream.
fn through(
    a: &mut msrpcast::tls::Transport,
    b: &mut msrpcast::tls::Transport,
    data: &[u8],
) -> Vec<u8> {
    use std::io::IoSlice;
    let deadline = Instant::now() + WAIT;
    let now = Instant::now();
    while !(a.handshake(now).unwrap() & b.handshake(now).unwrap()) {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    let (head, tail) = data.split_at(data.len() / 3);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut shut = false;
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "stuck at {}", got.len());
        if sent < data.len() {
            // Vectored, as a delivery writes head + body + end-line.
            let r = if sent < head.len() {
                a.write_vectored(&[IoSlice::new(&head[sent..]), IoSlice::new(tail)])
            } else {
                a.write(&tail[sent - head.len()..])
            };
            match r {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        } else if !shut {
            shut = a.shutdown_write().unwrap();
        }
        match b.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn transport_plain_and_tls_behave_alike() {
    use msrpcast::tls::Transport;
    let data = pattern(1_000_000);

    let (c, s) = socket_pair();
    let (mut a, mut b) = (Transport::Plain(c), Transport::Plain(s));
    assert!(!a.is_tls() && a.tls().is_none());
    assert!(through(&mut a, &mut b, &data) == data);

    let dir = Dir::new();
    let server_tls = tls(
        &dir,
        "s",
        Some(&self_signed(&["localhost"])),
        None,
        Verify::None,
    );
    let client_tls = tls(&dir, "c", None, None, Verify::None);
    let p = pair(&client_tls, &[], "localhost", &server_tls);
    let (mut a, mut b) = (
        Transport::Tls(Box::new(p.client)),
        Transport::Tls(Box::new(p.server)),
    );
    assert!(a.is_tls());
    // The TLS end of stream is a close_notify, not a truncation.
    assert!(through(&mut a, &mut b, &data) == data);
    assert!(b.tls().unwrap().peer_certificates().is_none());
    assert!(a.tls().unwrap().peer_certificates().is_some());
}

#[test]
fn first_bytes_of_real_connections() {
    use msrpcast::tls::{first_bytes, FirstBytes};
    let dir = Dir::new();
    let client_tls = tls(&dir, "c", None, None, Verify::None);
    let (c, s) = socket_pair();
    let mut client = TlsStream::connect(
        c,
        client_tls.client_config(&[]).unwrap(),
        server_name(&host("localhost")).unwrap(),
        Instant::now() + WAIT,
    )
    .unwrap();
    assert_eq!(client.drive(Instant::now()), Ok(false));
    let mut peek = [0u8; 3];
    let deadline = Instant::now() + WAIT;
    let n = loop {
        match s.peek(&mut peek) {
            Ok(n) if n >= 2 => break n,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    };
    assert_eq!(first_bytes(&peek[..n]), FirstBytes::Tls);

    let (mut c, s) = plain_pair();
    c.write_all(b"MSRP x SEND\r\n").unwrap();
    let n = loop {
        match s.peek(&mut peek) {
            Ok(n) if n >= 1 => break n,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    };
    assert_eq!(first_bytes(&peek[..n]), FirstBytes::Plain);
}

#[test]
fn plaintext_written_before_the_handshake_follows_it() {
    let dir = Dir::new();
    let server_tls = tls(
        &dir,
        "s",
        Some(&self_signed(&["localhost"])),
        None,
        Verify::None,
    );
    let client_tls = tls(&dir, "c", None, None, Verify::None);
    let mut p = pair(&client_tls, &[], "localhost", &server_tls);
    // Queued before the handshake: leaves right behind the client's Finished.
    p.client.write_all(b"MSRP first SEND").unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline);
        let now = Instant::now();
        let _ = p.client.drive(now).unwrap();
        if p.server.drive(now).unwrap() {
            break;
        }
        p.wait();
    }
    // The server reads it as a handler would after its handshake turn (until WouldBlock).
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 15 {
        assert!(Instant::now() < deadline);
        let _ = p.client.drive(Instant::now());
        match p.server.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => p.wait(),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, b"MSRP first SEND");
}
