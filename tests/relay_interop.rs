//! Through an independent implementation: the engine delivers through Debian's Kamailio MSRP
//! relay (`msrp.so`, RFC 4976, started with `tests/kamailio/run-relay.sh`) to receivers that
//! authenticated with the relay. Proves that a parser nobody here wrote accepts every frame the
//! engine sends (chunks of 10240 bytes with a two-URI To-Path), that our AUTH works against a
//! real relay, and that success REPORTs find their way back (the delivery ends `Done`).
//!
//! Over TLS too (`msrps`, RFC 4976 §3): the relay with Debian's `tls.so`, `msrpcast receive
//! --relay msrps://…` behind it (the relay's certificate checked against a CA made here), the
//! engine reaching the relay over TLS (its certificate checked too), the file intact (SHA-1).
//!
//! Needs `kamailio` and `kamailio-tls-modules` (scripts/install-deps.sh installs them). Without
//! them the tests FAIL: this is the interop proof, not an optional extra.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use msrpcast::config::Config;
use msrpcast::msrp::auth::{AuthClient, AuthParams, AuthStep};
use msrpcast::msrp::ids::IdGen;
use msrpcast::msrp::parser::{FrameDecoder, Limits};
use msrpcast::msrp::receiver::{Receiver, ReceiverConfig, ReceiverEvent};
use msrpcast::msrp::{writer, Uri};
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::receive::{hex, ReceiveServer, RelayLogin, Sink};
use msrpcast::runtime::Engine;
use sha1::{Digest, Sha1};

mod common;
use common::{upload, wait_joined};

const USER: &str = "msrpcast";
const PASSWORD: &str = "relay-secret";
/// The relay cfg's frame limit (tests/kamailio/README.md).
const MAX_RELAY_FRAME: usize = 11238;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Kamailio relay started for one test, stopped by PID on drop.
struct Relay {
    pid: String,
    port: u16,
    uri: Uri,
    log: PathBuf,
    dir: PathBuf,
}

fn path_with_sbin() -> String {
    let p = std::env::var("PATH").unwrap_or_default();
    format!("{p}:/usr/local/sbin:/usr/sbin:/sbin")
}

impl Relay {
    fn start() -> Relay {
        Relay::start_with(&[])
    }

    /// With TLS only (`msrps`), presenting this certificate chain and key (PEM files).
    /// With TLS only (`msrps`), presenting this certificate chain and key (PEM files). Without
    /// Kamailio's tls.so (kamailio-tls-modules) the relay does not start and the test fails
    /// with its log.
    fn start_tls(cert: &Path, key: &Path) -> Relay {
        Relay::start_with(&[
            ("RELAY_TLS_CERT", cert.to_str().unwrap()),
            ("RELAY_TLS_KEY", key.to_str().unwrap()),
        ])
    }

    fn start_with(env: &[(&str, &str)]) -> Relay {
        let path = path_with_sbin();
        let found = path
            .split(':')
            .any(|d| !d.is_empty() && Path::new(d).join("kamailio").is_file());
        assert!(
            found,
            "kamailio is not installed: this interop test needs Debian's kamailio package \
             (run scripts/install-deps.sh as root); it fails rather than skips"
        );
        let out = Command::new(root().join("tests/kamailio/run-relay.sh"))
            .arg("start")
            .env("PATH", &path)
            .envs(env.iter().copied())
            .output()
            .expect("run tests/kamailio/run-relay.sh");
        assert!(
            out.status.success(),
            "run-relay.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .unwrap_or_else(|| panic!("no {k} in {vars:?}"))
                .clone()
        };
        Relay {
            pid: get("RELAY_PID"),
            port: get("RELAY_PORT").parse().unwrap(),
            uri: Uri::parse_slice(get("RELAY_URI").as_bytes()).unwrap(),
            log: PathBuf::from(get("RELAY_LOG")),
            dir: PathBuf::from(get("RELAY_DIR")),
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = Command::new(root().join("tests/kamailio/run-relay.sh"))
            .args(["stop", &self.pid])
            .env("PATH", path_with_sbin())
            .status();
        // Kept after a failure, for its kamailio.log.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn tmpdir(name: &str) -> PathBuf {
    common::proc::scratch(&format!("relay-{name}"))
}

fn engine(dir: &Path) -> Engine {
    let cfg = common::test_config(dir, &[]);
    // Defaults that matter here, stated: 10240-byte chunks, source port = listen port.
    assert_eq!(cfg.chunk_bytes, 10_240);
    assert!(cfg.msrp_reuse_port);
    Engine::start(cfg).unwrap()
}

fn login() -> RelayLogin {
    RelayLogin::parse(&format!("{USER}:{PASSWORD}")).unwrap()
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    getrandom::fill(&mut v).unwrap();
    v
}

fn sha1_hex(b: &[u8]) -> String {
    hex(&Sha1::digest(b))
}

/// TCP connections in /proc/net/tcp (any state, TIME_WAIT included) between the two ports on
/// 127.0.0.1, in either direction: proves the engine's end of its relay connection was bound to
/// its listen port (`msrp_reuse_port`).
fn tcp_between(a: u16, b: u16) -> bool {
    let t = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    t.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let port = |s: &str| {
            s.rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        };
        match (
            f.get(1).and_then(|s| port(s)),
            f.get(2).and_then(|s| port(s)),
        ) {
            (Some(l), Some(r)) => (l == a && r == b) || (l == b && r == a),
            _ => false,
        }
    })
}

/// Delivered file checked from the bytes on disk, hashed here (not by the receiver).
fn check_saved(r: &ReceiveServer, want_sha1: &str, size: usize) {
    let got = r
        .next(Duration::from_secs(10))
        .expect("relay-mode receiver reported nothing");
    assert_eq!(got.failure, None);
    assert_eq!(got.bytes, size as u64);
    let path = got.path.as_ref().expect("saved file");
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len(), size);
    assert_eq!(sha1_hex(&bytes), want_sha1, "bytes on disk differ");
    assert_eq!(got.sha1.as_deref(), Some(want_sha1), "receiver's own hash");
}

#[test]
fn sixteen_mib_through_kamailio_relay() {
    let relay = Relay::start();
    let dir = tmpdir("one");
    let rx = ReceiveServer::start_via_relay(
        &relay.uri,
        &login(),
        "rx1",
        Sink::Dir(dir.join("rx")),
        true,
        None,
    )
    .unwrap_or_else(|e| panic!("AUTH with the relay: {e}\n{}", relay.log_tail()));
    std::fs::create_dir_all(dir.join("rx")).unwrap();
    // `<Use-Path> <own URI>`, the own URI naming our end of the relay connection.
    assert_eq!(rx.to_path.len(), 2);
    assert_eq!(rx.to_path[0].port, Some(relay.port));
    assert!(!rx.to_path[0].session_id.is_empty());
    assert_eq!(rx.uri.port, Some(rx.addr.port()));
    assert_eq!(rx.relay.as_ref().and_then(|a| a.expires), Some(3600));

    let e = engine(&dir);
    e.join_direct("c", "a", &rx.to_path_text()).unwrap();
    wait_joined(&e, "c", 1);
    let body = random(16 << 20);
    let want = sha1_hex(&body);
    let t0 = Instant::now();
    let t = upload(&e, "c", &body);
    let states = common::wait_done(&e, t, 1, Duration::from_secs(60), || relay.log_tail());
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(states[0].1, DeliveryState::Done, "{states:?}");
    check_saved(&rx, &want, body.len());
    eprintln!(
        "relay_interop: 16 MiB through Kamailio's relay in {secs:.2} s ({:.1} MB/s)",
        body.len() as f64 / secs / 1e6
    );
    let engine_port = e.msrp_addr().port();
    assert!(
        tcp_between(engine_port, relay.port),
        "no TCP connection between the engine's listen port {engine_port} and the relay {}: \
         msrp_reuse_port did not bind the outgoing connection",
        relay.port
    );
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the hand-driven receiver saw.
struct Tapped {
    bytes: u64,
    sha1: String,
    max_frame: usize,
    frames: usize,
    /// Last URI of the first SEND's From-Path (the engine's URI).
    sender: Option<Uri>,
    /// Frames other than SENDs with data, as `start line` summaries.
    others: Vec<String>,
}

/// A receiver driven by hand on a blocking socket (the sans-IO AUTH client and `Receiver`, not
/// the runtime's), measuring each frame as the relay delivers it. The relay moves its Use-Path
/// URI from To-Path to From-Path, so a frame arrives with the size it left the engine with.
fn tapped_receiver(relay: &Relay) -> (Vec<Uri>, std::thread::JoinHandle<Tapped>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let local: SocketAddr = s.local_addr().unwrap();
    let me =
        Uri::parse_slice(format!("msrp://127.0.0.1:{}/tap;tcp", local.port()).as_bytes()).unwrap();
    let mut auth = AuthClient::new(
        AuthParams {
            relay: relay.uri.clone(),
            local: me.clone(),
            user: USER.into(),
            password: PASSWORD.into(),
            expires: None,
        },
        IdGen::from_seed(99),
    );
    let mut dec = FrameDecoder::new(Limits {
        max_body_bytes: 1 << 20,
        ..Limits::default()
    });
    let mut out = BytesMut::new();
    writer::write_message(&auth.start(), &mut out);
    s.write_all(&out).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let use_path = 'auth: loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "relay closed during AUTH");
        dec.feed(&buf[..n]);
        while let Some(m) = dec.next().unwrap() {
            match auth.handle_frame(&m).unwrap() {
                AuthStep::Ignored => {}
                AuthStep::Send(req) => {
                    out.clear();
                    writer::write_message(&req, &mut out);
                    s.write_all(&out).unwrap();
                }
                AuthStep::Done(a) => break 'auth a.use_path,
            }
        }
    };
    let mut path = use_path;
    path.push(me.clone());
    let handle = std::thread::spawn(move || {
        let mut rcv = Receiver::new(me, ReceiverConfig::default());
        let mut hasher = Sha1::new();
        let (mut next, mut max_frame, mut frames) = (0u64, 0usize, 0usize);
        let mut sender = None;
        let mut others = Vec::new();
        loop {
            loop {
                let before = dec.buffered();
                let Some(m) = dec.next().unwrap() else { break };
                let size = before - dec.buffered();
                frames += 1;
                max_frame = max_frame.max(size);
                if sender.is_none() && !m.body.is_empty() {
                    sender = m.from_path.last().cloned();
                }
                if m.body.is_empty() {
                    others.push(format!(
                        "{:?} {}",
                        m.kind,
                        String::from_utf8_lossy(&m.transaction_id)
                    ));
                }
                rcv.handle_frame(&m);
                out.clear();
                while let Some(r) = rcv.poll_reply() {
                    writer::write_message(&r, &mut out);
                }
                s.write_all(&out).unwrap();
                while let Some(ev) = rcv.poll_event() {
                    match ev {
                        ReceiverEvent::Data { offset, bytes, .. } => {
                            assert_eq!(offset, next, "data out of order");
                            hasher.update(&bytes);
                            next += bytes.len() as u64;
                        }
                        ReceiverEvent::MessageComplete { total, .. } => {
                            assert_eq!(total, next);
                            // The success REPORT is written: let it leave before closing.
                            close_after_flush(&mut s);
                            return Tapped {
                                bytes: total,
                                sha1: hex(&hasher.finalize()),
                                max_frame,
                                frames,
                                sender,
                                others,
                            };
                        }
                        ReceiverEvent::MessageAborted { .. }
                        | ReceiverEvent::MessageFailed { .. } => {
                            panic!("tapped receiver: {ev:?}")
                        }
                        ReceiverEvent::Report { .. } => {}
                    }
                }
            }
            let n = s.read(&mut buf).expect("tapped receiver: read");
            assert!(n > 0, "relay closed the tapped receiver's connection");
            dec.feed(&buf[..n]);
        }
    });
    (path, handle)
}

#[test]
fn four_receivers_through_one_relay() {
    let relay = Relay::start();
    let dir = tmpdir("four");
    let mut rx = Vec::new();
    for i in 0..3 {
        let d = dir.join(format!("rx{i}"));
        std::fs::create_dir_all(&d).unwrap();
        rx.push(
            ReceiveServer::start_via_relay(
                &relay.uri,
                &login(),
                &format!("rx{i}"),
                Sink::Dir(d),
                true,
                None,
            )
            .unwrap_or_else(|e| panic!("AUTH: {e}\n{}", relay.log_tail())),
        );
    }
    let (tap_path, tap) = tapped_receiver(&relay);
    let e = engine(&dir);
    for (i, r) in rx.iter().enumerate() {
        e.join_direct("c", &format!("r{i}"), &r.to_path_text())
            .unwrap();
    }
    let tap_text = String::from_utf8_lossy(&writer::render_path(&tap_path)).into_owned();
    e.join_direct("c", "tap", &tap_text).unwrap();
    wait_joined(&e, "c", 4);
    let size = 16 << 20;
    let body = random(size);
    let want = sha1_hex(&body);
    let t0 = Instant::now();
    let t = upload(&e, "c", &body);
    let states = common::wait_done(&e, t, 4, Duration::from_secs(60), || relay.log_tail());
    let secs = t0.elapsed().as_secs_f64();
    for (p, s) in &states {
        assert_eq!(*s, DeliveryState::Done, "{p}: {states:?}");
    }
    for r in &rx {
        check_saved(r, &want, size);
    }
    let tapped = tap.join().unwrap();
    assert_eq!(tapped.bytes, size as u64);
    assert_eq!(tapped.sha1, want);
    // Each From-Path names its connection's own end: one connection has the listen port
    // (msrp_reuse_port), the others could not repeat that address pair and name their own.
    let sender = tapped.sender.expect("no SEND seen");
    let sender_port = sender.port.expect("port in the engine's URI");
    assert!(
        tcp_between(sender_port, relay.port),
        "the engine's From-Path port {sender_port} is not its end of a connection to the relay"
    );
    assert!(
        tcp_between(e.msrp_addr().port(), relay.port),
        "no engine connection to the relay from the listen port"
    );
    eprintln!(
        "relay_interop: 4 x {} MiB through Kamailio's relay in {secs:.2} s; largest frame {} bytes \
         ({} frames at the tapped receiver; relay limit {MAX_RELAY_FRAME})",
        size >> 20,
        tapped.max_frame,
        tapped.frames
    );
    eprintln!(
        "relay_interop: frames without data at the tapped receiver: {:?}",
        tapped.others
    );
    assert!(tapped.max_frame <= MAX_RELAY_FRAME);
    assert!(
        tapped.max_frame > 10_240,
        "chunks are not full 10240-byte bodies"
    );
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A wrong password gets `401` twice: AUTH fails with "authentication rejected".
#[test]
fn wrong_password_is_rejected() {
    let relay = Relay::start();
    let mut l = login();
    l.password = "wrong".into();
    let err = ReceiveServer::start_via_relay(&relay.uri, &l, "bad", Sink::Discard, false, None)
        .err()
        .expect("AUTH with a wrong password succeeded");
    assert!(err.to_string().contains("authentication rejected"), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    // Another user: 403.
    let mut l = login();
    l.user = "intruder".into();
    let err = ReceiveServer::start_via_relay(&relay.uri, &l, "bad", Sink::Discard, false, None)
        .err()
        .expect("AUTH as another user succeeded");
    assert!(err.to_string().contains("403"), "{err}");
    // Expires out of bounds: the cfg answers 423 with Min-Expires: 60 itself (msrp.so 5.6.3
    // crashes on an AUTH with Expires, see tests/kamailio/README.md) and 400 to any Expires in
    // bounds. So a 400 here proves that the client took the 423's Min-Expires and retried.
    let mut l = login();
    l.expires = Some(10);
    let err = ReceiveServer::start_via_relay(&relay.uri, &l, "short", Sink::Discard, false, None)
        .err()
        .expect("AUTH with Expires: 10 succeeded");
    assert!(err.to_string().contains("400"), "{err}");
    // The right credentials still work after the failures.
    let r = ReceiveServer::start_via_relay(&relay.uri, &login(), "ok", Sink::Discard, false, None)
        .unwrap_or_else(|e| panic!("AUTH after failures: {e}\n{}", relay.log_tail()));
    assert_eq!(r.relay.as_ref().and_then(|a| a.expires), Some(3600));
}

/// A relay-mode receiver's error responses reach the sender through the relay (they carry the
/// request's whole From-Path: the relay drops a response addressed to itself alone).
#[test]
fn receiver_errors_reach_the_sender_through_the_relay() {
    let relay = Relay::start();
    let rx = ReceiveServer::start_via_relay(&relay.uri, &login(), "rx", Sink::Discard, true, None)
        .unwrap_or_else(|e| panic!("AUTH: {e}\n{}", relay.log_tail()));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = format!(
        "msrp://127.0.0.1:{}/snd;tcp",
        s.local_addr().unwrap().port()
    );
    // A body longer than its Byte-Range: the receiver answers 400.
    let frame = format!(
        "MSRP t400 SEND\r\nTo-Path: {}\r\nFrom-Path: {me}\r\nMessage-ID: m1\r\n\
         Byte-Range: 1-3/3\r\nContent-Type: text/plain\r\n\r\nabcde\r\n-------t400$\r\n",
        rx.to_path_text()
    );
    s.write_all(frame.as_bytes()).unwrap();
    let mut dec = FrameDecoder::new(Limits::default());
    let mut codes = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while !codes.contains(&400) && t0.elapsed() < Duration::from_secs(5) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => dec.feed(&buf[..n]),
            Err(_) => break,
        }
        while let Some(m) = dec.next().unwrap() {
            if m.transaction_id.as_ref() == b"t400" {
                codes.extend(m.response_code());
            }
        }
    }
    // The relay's own 200 (hop by hop), then the receiver's 400.
    assert!(
        codes.contains(&400),
        "responses seen: {codes:?}\n{}",
        relay.log_tail()
    );
    let got = rx.next(Duration::from_secs(2)).expect("receiver event");
    assert!(got.failure.is_some(), "{got:?}");
}

/// Half-closes `s` (our FIN goes after the bytes already written) and reads until the peer
/// closes too, or 5 s: closing with unread input would reset the connection instead, and a
/// reset can discard what we wrote last.
fn close_after_flush(s: &mut std::net::TcpStream) {
    use std::io::Read;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A CA made here, and a certificate it signed for `names`, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// The RFC 8122 SHA-256 fingerprint of `cert`.
    fingerprint: String,
}

fn pki(dir: &Path, tag: &str, names: &[&str]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("msrpcast test CA {tag}"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(format!("{tag}-{name}"));
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        cert: write("cert.pem", &cert.pem()),
        key: write("key.pem", &key.serialize_pem()),
        fingerprint: msrpcast::tls::Fingerprint::of(
            msrpcast::tls::HashFunction::Sha256,
            cert.der(),
        )
        .to_string(),
    }
}

/// An engine with MSRP over TLS, trusting `ca` (its own certificate is self-signed).
fn tls_engine(dir: &Path, ca: &Path) -> Engine {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("engine-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("engine-key.pem"), key.serialize_pem()).unwrap();
    let mut cfg = Config::default();
    for (k, v) in [
        ("spool_dir", dir.join("spool").to_str().unwrap()),
        ("msrp_listen", "127.0.0.1:0"),
        ("log_level", "warn"),
        ("control_socket", ""),
        ("msrp_tls", "on"),
        ("tls_cert", dir.join("engine-cert.pem").to_str().unwrap()),
        ("tls_key", dir.join("engine-key.pem").to_str().unwrap()),
        ("tls_ca", ca.to_str().unwrap()),
        ("tls_verify", "host"),
    ] {
        cfg.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    Engine::start(cfg).unwrap()
}

/// `msrpcast receive --relay URI` with `extra` options, run to its end: exit status and stderr.
fn receive_fails(relay: &Relay, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_msrpcast"))
        .args(["receive", "--relay"])
        .arg(relay_uri_text(relay))
        .args([
            "--relay-auth",
            &format!("{USER}:{PASSWORD}"),
            "--session-id",
            "refused",
            "--discard",
            "--count",
            "1",
        ])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn relay_uri_text(relay: &Relay) -> String {
    String::from_utf8_lossy(&writer::render_path(std::slice::from_ref(&relay.uri))).into_owned()
}

/// The CLI receiver behind an `msrps://` relay gets the engine's file intact; the engine reached
/// the relay over TLS. The relay's certificate is checked on both sides: without the CA, or
/// with a wrong pinned fingerprint, the receiver does not log in, and an engine trusting
/// another CA fails the delivery naming the cause.
#[test]
fn msrps_through_kamailio_relay_over_tls() {
    use std::io::BufRead;
    let dir = tmpdir("tls");
    let relay_pki = pki(&dir, "relay", &["127.0.0.1"]);
    let relay = Relay::start_tls(&relay_pki.cert, &relay_pki.key);
    assert!(relay.uri.secure, "{:?}", relay.uri);

    // The relay's certificate is not trusted by the system: refused before AUTH, with the cause.
    let (code, err) = receive_fails(&relay, &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("unknown CA"), "{err}");
    let other = pki(&dir, "other", &["127.0.0.1"]);
    let (code, err) = receive_fails(&relay, &["--relay-fingerprint", &other.fingerprint]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("fingerprint mismatch"), "{err}");
    // TLS options with a plain relay URI are a usage error.
    let plain = Command::new(env!("CARGO_BIN_EXE_msrpcast"))
        .args([
            "receive",
            "--relay",
            &format!("msrp://127.0.0.1:{};tcp", relay.port),
            "--relay-auth",
            "u:p",
            "--session-id",
            "x",
            "--discard",
            "--tls-ca",
        ])
        .arg(&relay_pki.ca)
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("msrps"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    // Trusting the CA: logged in over TLS; the path is msrps throughout.
    let rx_dir = dir.join("rx");
    let mut child = Command::new(env!("CARGO_BIN_EXE_msrpcast"))
        .args(["receive", "--relay"])
        .arg(relay_uri_text(&relay))
        .args([
            "--relay-auth",
            &format!("{USER}:{PASSWORD}"),
            "--session-id",
            "rxtls",
            "--count",
            "1",
            "--dir",
        ])
        .arg(&rx_dir)
        .arg("--tls-ca")
        .arg(&relay_pki.ca)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let to_path = match lines.next() {
        Some(Ok(l)) => l,
        other => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "receive printed no To-Path ({other:?}): {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                relay.log_tail()
            );
        }
    };
    let uris: Vec<&str> = to_path.split(' ').collect();
    assert_eq!(uris.len(), 2, "{to_path}");
    assert!(
        uris[0].starts_with(&format!("msrps://127.0.0.1:{}/", relay.port)),
        "the relay's Use-Path: {to_path}"
    );
    assert!(uris[1].starts_with("msrps://127.0.0.1:"), "{to_path}");

    // An engine that trusts another CA: the delivery fails naming the cause, nothing arrives.
    let wrong_dir = dir.join("wrong");
    std::fs::create_dir_all(&wrong_dir).unwrap();
    let e = tls_engine(&wrong_dir, &other.ca);
    e.join_direct("c", "rx", &to_path).unwrap();
    wait_joined(&e, "c", 1);
    let t = upload(&e, "c", &random(64 << 10));
    let states = common::wait_done(&e, t, 1, Duration::from_secs(30), || relay.log_tail());
    match &states[0].1 {
        DeliveryState::Failed { reason, .. } => {
            assert!(reason.contains("unknown CA"), "{reason}")
        }
        s => panic!("delivery with an untrusted relay certificate: {s:?}"),
    }
    e.stop();

    // The engine trusting the relay's CA: the file arrives intact.
    let e = tls_engine(&dir, &relay_pki.ca);
    e.join_direct("c", "rx", &to_path).unwrap();
    wait_joined(&e, "c", 1);
    let body = random(4 << 20);
    let want = sha1_hex(&body);
    let t = upload(&e, "c", &body);
    let states = common::wait_done(&e, t, 1, Duration::from_secs(60), || relay.log_tail());
    assert_eq!(states[0].1, DeliveryState::Done, "{states:?}");
    let line = match lines.next() {
        Some(Ok(l)) => l,
        other => panic!("receive said nothing after the file: {other:?}"),
    };
    let f: Vec<&str> = line.splitn(5, ' ').collect();
    assert_eq!(f.len(), 5, "{line}");
    assert_eq!(
        (f[0], f[2], f[3]),
        ("received", "4194304", want.as_str()),
        "{line}"
    );
    let saved = std::fs::read(f[4]).unwrap();
    assert_eq!(sha1_hex(&saved), want, "bytes on disk differ");
    let status = child.wait().unwrap();
    assert!(status.success(), "receive exited with {status}");
    // The engine's end of the TLS connection to the relay is its listen port (From-Path).
    assert!(
        tcp_between(e.msrp_addr().port(), relay.port),
        "no connection between the engine's listen port and the relay"
    );
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
