//! The engine's TLS decisions on real sockets (127.0.0.1): an answer that asks for TLS while the
//! engine has no TLS, `a=inactive`, `a=sendonly` and `a=max-size` each fail the delivery with a
//! reason before any socket is opened — a plain listener on the answer's port sees no
//! connection and no byte — while the same answer without those attributes does reach it (so the
//! zero-byte checks can fail). TLS offers carry `TCP/TLS/MSRP`, an `msrps` path and our
//! certificate's fingerprint; `tls_verify = none` is logged as a warning.

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use msrpcast::config::Config;
use msrpcast::roster::{DeliveryId, DeliveryState, TransferId};
use msrpcast::runtime::log::{Level, Logger};
use msrpcast::runtime::{Engine, Signal};

mod common;
use common::{data, upload, wait_joined};

const WAIT: Duration = Duration::from_secs(10);

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "msrpcast-tlseng-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Dir, sets: &[(&str, &str)]) -> Config {
    let mut cfg = Config::default();
    cfg.set("spool_dir", dir.0.join("spool").to_str().unwrap())
        .unwrap();
    cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
    cfg.set("log_level", "warn").unwrap();
    cfg.set("control_socket", "").unwrap();
    for (k, v) in sets {
        cfg.set(k, v).unwrap_or_else(|e| panic!("{e}"));
    }
    cfg
}

/// A self-signed certificate for 127.0.0.1 written as `tls_cert`/`tls_key` settings.
fn certificate(dir: &Dir) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (
        dir.write("cert.pem", &cert.pem()),
        dir.write("key.pem", &key.serialize_pem()),
    )
}

/// A plain TCP listener that counts the connections it accepts and the bytes it reads.
struct Plain {
    listener: TcpListener,
    port: u16,
}

impl Plain {
    fn new() -> Plain {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        Plain { listener, port }
    }

    /// (connections, bytes) seen so far, reading each accepted connection for up to `read_for`.
    fn seen(&self, read_for: Duration) -> (usize, usize) {
        let (mut conns, mut bytes) = (0, 0);
        loop {
            match self.listener.accept() {
                Ok((mut s, _)) => {
                    conns += 1;
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let t0 = Instant::now();
                    let mut buf = [0u8; 4096];
                    while t0.elapsed() < read_for {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => bytes += n,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::WouldBlock | ErrorKind::TimedOut
                                ) =>
                            {
                                if bytes > 0 {
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return (conns, bytes),
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

fn next_signal(e: &Engine) -> Signal {
    e.signals()
        .recv_timeout(WAIT)
        .expect("no signal from the engine")
}

/// Joins one SIP participant, uploads `size` bytes, returns the offer.
fn offered(e: &Engine, size: usize) -> (TransferId, DeliveryId, String) {
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(e, "c", 1);
    let t = upload(e, "c", &vec![0x5a; size]);
    let Signal::Offer { delivery, sdp, .. } = next_signal(e) else {
        panic!("expected an offer")
    };
    (t, delivery, sdp)
}

/// An answer from a participant at `port` (it listens: `a=setup:passive`).
fn answer(port: u16, tls: bool, extra: &str) -> String {
    let (proto, scheme) = if tls {
        ("TCP/TLS/MSRP", "msrps")
    } else {
        ("TCP/MSRP", "msrp")
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message {port} {proto} *\r\na=accept-types:*\r\na=setup:passive\r\n{extra}\
         a=path:{scheme}://127.0.0.1:{port}/s3ss10n;tcp\r\n"
    )
}

/// Waits for the delivery's final state.
fn final_state(e: &Engine, t: TransferId) -> DeliveryState {
    common::wait_done(e, t, 1, WAIT, String::new).remove(0).1
}

fn failed_with(state: &DeliveryState, words: &str) {
    match state {
        DeliveryState::Failed { reason, .. } => {
            assert!(reason.contains(words), "reason {reason:?} lacks {words:?}")
        }
        other => panic!("expected a failure naming {words:?}, got {other:?}"),
    }
}

/// One refused answer: the delivery fails naming `words`, the BYE follows, and the
/// participant's listener sees nothing.
fn refused(sets: &[(&str, &str)], size: usize, tls: bool, extra: &str, words: &str) {
    let dir = Dir::new("refused");
    let mut sets = sets.to_vec();
    let (cert, key);
    if sets.iter().any(|(k, v)| *k == "msrp_tls" && *v == "on") {
        (cert, key) = certificate(&dir);
        sets.push(("tls_cert", &cert));
        sets.push(("tls_key", &key));
    }
    let e = Engine::start(config(&dir, &sets)).unwrap();
    let plain = Plain::new();
    let (t, d, _) = offered(&e, size);
    e.answered(d, &answer(plain.port, tls, extra)).unwrap();
    failed_with(&final_state(&e, t), words);
    assert_eq!(next_signal(&e), Signal::Bye { delivery: d });
    // The engine decided before opening anything; a connection it had opened would be in the
    // backlog by now, since the failure is recorded only after the decision.
    assert_eq!(plain.seen(Duration::from_millis(200)), (0, 0));
    e.stop();
}

#[test]
fn tls_answer_without_tls_configured_gets_no_byte() {
    refused(&[], 1000, true, "", "TLS is not configured (msrp_tls)");
}

/// An `msrps` path under a `TCP/MSRP` line still counts as TLS: never a byte in clear.
#[test]
fn msrps_path_under_a_plain_m_line_gets_no_byte() {
    let dir = Dir::new("mixed");
    let e = Engine::start(config(&dir, &[])).unwrap();
    let plain = Plain::new();
    let (t, d, _) = offered(&e, 1000);
    let sdp = answer(plain.port, true, "").replace("TCP/TLS/MSRP", "TCP/MSRP");
    e.answered(d, &sdp).unwrap();
    failed_with(&final_state(&e, t), "TLS is not configured");
    assert_eq!(plain.seen(Duration::from_millis(200)), (0, 0));
}

#[test]
fn inactive_answer_gets_no_byte() {
    refused(&[], 1000, false, "a=inactive\r\n", "a=inactive");
}

#[test]
fn sendonly_answer_gets_no_byte() {
    refused(&[], 1000, false, "a=sendonly\r\n", "a=sendonly");
}

#[test]
fn file_over_max_size_gets_no_byte() {
    refused(
        &[],
        1000,
        false,
        "a=max-size:999\r\n",
        "larger than the participant's a=max-size (999)",
    );
}

/// The control: the same kind of answer within bounds reaches the listener, so the zero-byte
/// assertions above are not vacuous.
#[test]
fn acceptable_plain_answer_reaches_the_listener() {
    let dir = Dir::new("control");
    let e = Engine::start(config(&dir, &[("connect_timeout_ms", "2000")])).unwrap();
    let plain = Plain::new();
    let (_, d, _) = offered(&e, 1000);
    e.answered(d, &answer(plain.port, false, "a=max-size:1000\r\n"))
        .unwrap();
    let t0 = Instant::now();
    let (mut conns, mut bytes) = (0, 0);
    while bytes == 0 && t0.elapsed() < WAIT {
        let (c, b) = plain.seen(Duration::from_millis(500));
        conns += c;
        bytes += b;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(conns, 1);
    assert!(bytes > 0, "the plain answer got no byte");
}

/// A direct participant at an `msrps` URI while TLS is off: refused before connecting.
#[test]
fn direct_msrps_without_tls_gets_no_byte() {
    let dir = Dir::new("direct");
    let e = Engine::start(config(&dir, &[])).unwrap();
    let plain = Plain::new();
    e.join_direct(
        "c",
        "p",
        &format!("msrps://127.0.0.1:{}/d1r3ct;tcp", plain.port),
    )
    .unwrap();
    wait_joined(&e, "c", 1);
    let t = upload(&e, "c", &[1u8; 500]);
    failed_with(&final_state(&e, t), "TLS is not configured (msrp_tls)");
    assert_eq!(plain.seen(Duration::from_millis(200)), (0, 0));
}

#[test]
fn msrp_tls_offers_tls_with_our_fingerprint() {
    let dir = Dir::new("offer");
    let (cert, key) = certificate(&dir);
    let e = Engine::start(config(
        &dir,
        &[
            ("msrp_tls", "on"),
            ("tls_cert", &cert),
            ("tls_key", &key),
            ("tls_verify", "fingerprint"),
        ],
    ))
    .unwrap();
    let fp = e.tls_fingerprint().expect("a fingerprint with msrp_tls on");
    let (_, _, sdp) = offered(&e, 100);
    assert!(sdp.contains(" TCP/TLS/MSRP *\r\n"), "{sdp}");
    assert!(sdp.contains("a=path:msrps://127.0.0.1:"), "{sdp}");
    assert!(
        sdp.contains(&format!("a=fingerprint:{fp}\r\n")),
        "{fp} not in {sdp}"
    );
    assert!(fp.starts_with("sha-256 "), "{fp}");
    // Off: plain offers.
    let dir = Dir::new("offer-off");
    let e = Engine::start(config(&dir, &[])).unwrap();
    assert_eq!(e.tls_fingerprint(), None);
    let (_, _, sdp) = offered(&e, 100);
    assert!(sdp.contains(" TCP/MSRP *\r\n"), "{sdp}");
    assert!(
        !sdp.contains("msrps") && !sdp.contains("a=fingerprint"),
        "{sdp}"
    );
}

#[test]
fn start_fails_naming_a_missing_certificate_file() {
    let dir = Dir::new("badfile");
    let missing = dir.0.join("nope.pem");
    let m = missing.to_str().unwrap();
    let err = Engine::start(config(
        &dir,
        &[("msrp_tls", "on"), ("tls_cert", m), ("tls_key", m)],
    ))
    .err()
    .expect("start must fail");
    let text = err.to_string();
    assert!(
        text.contains("nope.pem") && text.contains("cannot open"),
        "{text}"
    );
}

#[test]
fn tls_verify_none_is_a_warning_at_start() {
    for (verify, warned) in [("none", true), ("host", false)] {
        let dir = Dir::new("none");
        let (cert, key) = certificate(&dir);
        let logger = Logger::queue(Level::Info, 1024, None);
        let e = Engine::start_with_logger(
            config(
                &dir,
                &[
                    ("msrp_tls", "on"),
                    ("tls_cert", &cert),
                    ("tls_key", &key),
                    ("tls_verify", verify),
                ],
            ),
            logger.clone(),
        )
        .unwrap();
        let mut found = false;
        while let Some(r) = logger.pop() {
            found |= r.level == Level::Warn && r.message.contains("tls_verify = none");
        }
        assert_eq!(found, warned, "tls_verify = {verify}");
        e.stop();
    }
}

#[test]
fn reload_reads_the_files_again_and_keeps_the_old_on_error() {
    let dir = Dir::new("reload");
    let (cert, key) = certificate(&dir);
    let e = Engine::start(config(
        &dir,
        &[("msrp_tls", "on"), ("tls_cert", &cert), ("tls_key", &key)],
    ))
    .unwrap();
    let before = e.tls_fingerprint().unwrap();
    // A renewed certificate in the same files.
    let (cert2, key2) = {
        let d2 = Dir::new("reload2");
        let (c, k) = certificate(&d2);
        (
            std::fs::read_to_string(c).unwrap(),
            std::fs::read_to_string(k).unwrap(),
        )
    };
    std::fs::write(&cert, &cert2).unwrap();
    std::fs::write(&key, &key2).unwrap();
    e.reload_tls().unwrap();
    let after = e.tls_fingerprint().unwrap();
    assert_ne!(before, after);
    // A broken file: the error names it, the loaded certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    let err = e.reload_tls().unwrap_err().to_string();
    assert!(err.contains("cert.pem"), "{err}");
    assert_eq!(e.tls_fingerprint().unwrap(), after);
    // Off: nothing to reload.
    let dir = Dir::new("reload-off");
    let e = Engine::start(config(&dir, &[])).unwrap();
    assert!(e.reload_tls().unwrap_err().to_string().contains("msrp_tls"));
}

// ---- MSRP over TLS on the wire: the engine connects (the participant answered passive) ----

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use msrpcast::runtime::receive::{hex, ReceiveServer, Sink};
use msrpcast::tls::{Tls, TlsSettings, Verify};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use sha1::{Digest, Sha1};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
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
        pem: cert.pem(),
    }
}

/// A leaf for `names` signed by `ca`, valid from `years` if given; (cert PEM, key PEM, DER).
fn leaf(ca: &Ca, names: &[&str], years: Option<(i32, i32)>) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if let Some((from, to)) = years {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// The participant's side: a TLS server on its own port that forwards the plaintext to a plain
/// `ReceiveServer` (which checks SHA-1), counting the plaintext bytes that came from the engine.
struct TlsParticipant {
    port: u16,
    rx: ReceiveServer,
    plaintext: Arc<AtomicUsize>,
    handshake: Arc<Mutex<Option<Result<(), String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TlsParticipant {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TlsParticipant {
    fn start(dir: &Dir, tag: &str, cert: &str, key: &str) -> TlsParticipant {
        TlsParticipant::start_on(dir, tag, cert, key, "127.0.0.1")
    }

    /// [`TlsParticipant::start`] listening on `ip` (another loopback address: 127.0.0.2).
    fn start_on(dir: &Dir, tag: &str, cert: &str, key: &str, ip: &str) -> TlsParticipant {
        let tls = Tls::load(TlsSettings {
            cert: Some(dir.write(&format!("{tag}-cert.pem"), cert).into()),
            key: Some(dir.write(&format!("{tag}-key.pem"), key).into()),
            ca: None,
            verify: Verify::None,
            request_client_cert: false,
            alpn: Vec::new(),
            verify_cache: 0,
        })
        .unwrap();
        let rx = ReceiveServer::start(
            "127.0.0.1:0".parse().unwrap(),
            "rx",
            Sink::Discard,
            true,
            None,
            1,
        )
        .unwrap();
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let plaintext = Arc::new(AtomicUsize::new(0));
        let handshake = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let rx_addr = rx.addr;
        let (p, h, st) = (plaintext.clone(), handshake.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let sock = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if st.load(Ordering::Acquire) || t0.elapsed() > WAIT * 3 => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            };
            sock.set_nonblocking(false).unwrap();
            let accepted = msrpcast::tls::blocking::accept(
                sock,
                tls.server_config().unwrap(),
                Duration::from_secs(5),
            );
            let mut tls_s = match accepted {
                Ok(s) => {
                    *h.lock().unwrap() = Some(Ok(()));
                    s
                }
                Err(e) => {
                    *h.lock().unwrap() = Some(Err(e.to_string()));
                    return;
                }
            };
            let mut plain = std::net::TcpStream::connect(rx_addr).unwrap();
            let tick = Some(Duration::from_millis(2));
            tls_s.sock.set_read_timeout(tick).unwrap();
            plain.set_read_timeout(tick).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let quiet = |e: &std::io::Error| {
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
            };
            while !st.load(Ordering::Acquire) {
                match tls_s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        p.fetch_add(n, Ordering::AcqRel);
                        if std::io::Write::write_all(&mut plain, &buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if quiet(&e) => {}
                    Err(_) => break,
                }
                match plain.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if std::io::Write::write_all(&mut tls_s, &buf[..n]).is_err()
                            || std::io::Write::flush(&mut tls_s).is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if quiet(&e) => {}
                    Err(_) => break,
                }
            }
        });
        TlsParticipant {
            port,
            rx,
            plaintext,
            handshake,
            stop,
            thread: Some(thread),
        }
    }

    fn handshake_result(&self) -> Option<Result<(), String>> {
        let t0 = Instant::now();
        loop {
            if let Some(r) = self.handshake.lock().unwrap().clone() {
                return Some(r);
            }
            if t0.elapsed() > WAIT {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// An engine with `msrp_tls` on, trusting `ca_pem`, verifying with `verify`.
fn tls_engine(dir: &Dir, ca_pem: &str, verify: &str) -> Engine {
    let (cert, key) = certificate(dir);
    let ca_path = dir.write("trusted-ca.pem", ca_pem);
    Engine::start(config(
        dir,
        &[
            ("msrp_tls", "on"),
            ("tls_cert", &cert),
            ("tls_key", &key),
            ("tls_ca", &ca_path),
            ("tls_verify", verify),
            ("tls_handshake_timeout_ms", "5000"),
        ],
    ))
    .unwrap()
}

/// A TLS answer (`a=setup:passive`) pointing at `host:port`, with `extra` lines.
fn tls_answer(host: &str, port: u16, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message {port} TCP/TLS/MSRP *\r\na=accept-types:*\r\na=setup:passive\r\n{extra}\
         a=path:msrps://{host}:{port}/rx;tcp\r\n"
    )
}

/// Engine active over msrps: the participant's certificate names 127.0.0.1 and chains to the
/// configured CA; the file arrives whole (SHA-1 at the receiver) and the delivery is done.
#[test]
fn msrps_delivery_engine_active_host_verified() {
    let dir = Dir::new("msrps-ok");
    let ca1 = ca("participants CA");
    let (cert, key, _) = leaf(&ca1, &["127.0.0.1"], None);
    let part = TlsParticipant::start(&dir, "p", &cert, &key);
    let e = tls_engine(&dir, &ca1.pem, "host");
    let data = data(3 << 20, 11);
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let t = upload(&e, "c", &data);
    let Signal::Offer { delivery, sdp, .. } = next_signal(&e) else {
        panic!("expected an offer")
    };
    assert!(sdp.contains("TCP/TLS/MSRP"), "{sdp}");
    e.answered(delivery, &tls_answer("127.0.0.1", part.port, ""))
        .unwrap();
    assert_eq!(part.handshake_result(), Some(Ok(())));
    let got = part.rx.next(WAIT * 3).expect("the receiver got nothing");
    assert_eq!(got.failure, None);
    assert_eq!(got.bytes, data.len() as u64);
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(&data))));
    assert_eq!(final_state(&e, t), DeliveryState::Done);
    assert!(part.plaintext.load(Ordering::Acquire) > data.len());
}

/// Engine active over msrps with `tls_verify = fingerprint`: a self-signed certificate whose
/// fingerprint the answer carries is accepted (SHA-1 at the receiver).
#[test]
fn msrps_delivery_engine_active_fingerprint_verified() {
    let dir = Dir::new("msrps-fp");
    let own = ca("self-signed participant");
    let (cert, key, der) = leaf(&own, &["participant.invalid"], None);
    let fp = msrpcast::tls::Fingerprint::of(msrpcast::tls::HashFunction::Sha256, &der);
    let part = TlsParticipant::start(&dir, "p", &cert, &key);
    let unrelated = ca("unrelated CA");
    let e = tls_engine(&dir, &unrelated.pem, "fingerprint");
    let data = data(1 << 20, 11);
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let t = upload(&e, "c", &data);
    let Signal::Offer { delivery, .. } = next_signal(&e) else {
        panic!("expected an offer")
    };
    e.answered(
        delivery,
        &tls_answer("127.0.0.1", part.port, &format!("a=fingerprint:{fp}\r\n")),
    )
    .unwrap();
    let got = part.rx.next(WAIT * 3).expect("the receiver got nothing");
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(&data))));
    assert_eq!(final_state(&e, t), DeliveryState::Done);
}

/// Each verification failure fails the delivery naming its cause, and not one plaintext byte
/// reaches the participant.
fn refused_peer(
    tag: &str,
    verify: &str,
    leaf_of: impl Fn(&Ca) -> (String, String, Vec<u8>),
    fp_line: &str,
    words: &str,
) {
    let dir = Dir::new(tag);
    let trusted = ca("trusted CA");
    let (cert, key, _) = leaf_of(&trusted);
    let part = TlsParticipant::start(&dir, "p", &cert, &key);
    let e = tls_engine(&dir, &trusted.pem, verify);
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let t = upload(&e, "c", &data(100_000, 11));
    let Signal::Offer { delivery, .. } = next_signal(&e) else {
        panic!("expected an offer")
    };
    e.answered(delivery, &tls_answer("127.0.0.1", part.port, fp_line))
        .unwrap();
    failed_with(&final_state(&e, t), words);
    assert!(
        matches!(part.handshake_result(), Some(Err(_))),
        "the participant's handshake did not fail: {:?}",
        part.handshake_result()
    );
    assert_eq!(
        part.plaintext.load(Ordering::Acquire),
        0,
        "plaintext left the engine"
    );
    assert!(part.rx.next(Duration::from_millis(100)).is_none());
}

/// The engine remembers a chain it accepted (`tls_verify_cache`) only for the name it was
/// accepted for: the same certificate, valid for 127.0.0.1, first delivered to at 127.0.0.1 (and
/// so remembered), is refused at 127.0.0.2 with no plaintext byte sent.
#[test]
fn remembered_chain_does_not_pass_another_host() {
    let dir = Dir::new("remembered");
    let trusted = ca("trusted CA");
    let (cert, key, _) = leaf(&trusted, &["127.0.0.1"], None);
    let good = TlsParticipant::start(&dir, "p1", &cert, &key);
    let other = TlsParticipant::start_on(&dir, "p2", &cert, &key, "127.0.0.2");
    let e = tls_engine(&dir, &trusted.pem, "host");
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let data = data(200_000, 5);
    let t1 = upload(&e, "c", &data);
    let Signal::Offer { delivery, .. } = next_signal(&e) else {
        panic!("expected an offer")
    };
    e.answered(delivery, &tls_answer("127.0.0.1", good.port, ""))
        .unwrap();
    assert_eq!(final_state(&e, t1), DeliveryState::Done);
    assert!(good.rx.next(WAIT).is_some_and(|g| g.failure.is_none()));

    let t2 = upload(&e, "c", &data);
    // The first delivery's BYE may come first.
    let delivery = loop {
        if let Signal::Offer { delivery, .. } = next_signal(&e) {
            break delivery;
        }
    };
    e.answered(delivery, &tls_answer("127.0.0.2", other.port, ""))
        .unwrap();
    failed_with(&final_state(&e, t2), "wrong host");
    assert_eq!(other.plaintext.load(Ordering::Acquire), 0, "plaintext left");
}

#[test]
fn msrps_wrong_host_fails_with_no_byte() {
    refused_peer(
        "wronghost",
        "host",
        |c| leaf(c, &["other.example"], None),
        "",
        "wrong host",
    );
}

#[test]
fn msrps_expired_certificate_fails_with_no_byte() {
    refused_peer(
        "expired",
        "host",
        |c| leaf(c, &["127.0.0.1"], Some((2001, 2002))),
        "",
        "certificate expired",
    );
}

#[test]
fn msrps_unknown_ca_fails_with_no_byte() {
    refused_peer(
        "unknownca",
        "host",
        |_| leaf(&ca("someone else's CA"), &["127.0.0.1"], None),
        "",
        "unknown CA",
    );
}

#[test]
fn msrps_fingerprint_mismatch_fails_with_no_byte() {
    let other = leaf(&ca("x"), &["127.0.0.1"], None).2;
    let fp = msrpcast::tls::Fingerprint::of(msrpcast::tls::HashFunction::Sha256, &other);
    refused_peer(
        "fpmismatch",
        "fingerprint",
        |c| leaf(c, &["127.0.0.1"], None),
        &format!("a=fingerprint:{fp}\r\n"),
        "fingerprint mismatch",
    );
}

/// A participant reached directly at an `msrps` URI (no SDP: `host` verification of the URI's
/// host, as for a relay): the file arrives whole over TLS.
#[test]
fn msrps_direct_participant_gets_the_file() {
    let dir = Dir::new("msrps-direct");
    let ca1 = ca("participants CA");
    let (cert, key, _) = leaf(&ca1, &["127.0.0.1"], None);
    let part = TlsParticipant::start(&dir, "p", &cert, &key);
    let e = tls_engine(&dir, &ca1.pem, "host");
    e.join_direct("c", "p", &format!("msrps://127.0.0.1:{}/rx;tcp", part.port))
        .unwrap();
    wait_joined(&e, "c", 1);
    let data = data(2 << 20, 11);
    let t = upload(&e, "c", &data);
    let got = part.rx.next(WAIT * 3).expect("the receiver got nothing");
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(&data))));
    assert_eq!(final_state(&e, t), DeliveryState::Done);
    assert_eq!(part.handshake_result(), Some(Ok(())));
}

/// The receiver's own TLS listener (`msrpcast receive --listen … --tls-cert … --tls-key …`):
/// its URI is `msrps`, a plain connection gets nothing from it, and the engine's file arrives
/// whole over TLS.
#[test]
fn tls_listener_of_the_receiver_gets_the_file() {
    use msrpcast::runtime::receive::{Listen, ReceiveTls};
    let dir = Dir::new("rx-listen");
    let ca1 = ca("receivers CA");
    let (cert, key, _) = leaf(&ca1, &["127.0.0.1"], None);
    let tls = ReceiveTls::load(
        Some(dir.write("rx-cert.pem", &cert).into()),
        Some(dir.write("rx-key.pem", &key).into()),
        None,
        msrpcast::tls::Verify::None,
        Vec::new(),
    )
    .unwrap();
    let rx = ReceiveServer::listen(Listen {
        addr: "127.0.0.1:0".parse().unwrap(),
        session_id: "rx".into(),
        sink: Sink::Discard,
        hash: true,
        hooks: None,
        threads: 1,
        max_message_bytes: 1 << 30,
        tls: Some(tls),
    })
    .unwrap();
    let uri = rx.to_path_text();
    assert_eq!(uri, format!("msrps://127.0.0.1:{}/rx;tcp", rx.addr.port()));
    // MSRP in clear is not TLS: the listener closes the connection (at most a TLS alert comes
    // back, never an MSRP response).
    let mut plain = std::net::TcpStream::connect(rx.addr).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(
        &mut plain,
        b"MSRP a1 SEND\r\nTo-Path: msrp://127.0.0.1/rx;tcp\r\nFrom-Path: msrp://127.0.0.1:9/x;tcp\r\n-------a1$\r\n",
    )
    .unwrap();
    let mut back = Vec::new();
    let mut buf = [0u8; 64];
    let closed = loop {
        match plain.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "the listener kept a plain connection open");
    assert!(
        !back.windows(4).any(|w| w == b"MSRP"),
        "a plain request got an MSRP answer: {back:?}"
    );

    let e = tls_engine(&dir, &ca1.pem, "host");
    e.join_direct("c", "p", &uri).unwrap();
    wait_joined(&e, "c", 1);
    let data = data(3 << 20, 11);
    let t = upload(&e, "c", &data);
    let got = rx.next(WAIT * 3).expect("the receiver got nothing");
    assert_eq!(got.failure, None);
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(&data))));
    assert_eq!(final_state(&e, t), DeliveryState::Done);
}

// ---- MSRP over TLS when the participant connects (it answered a=setup:active) ----

/// The participant's side when it connects: rustls client to the engine's listener (checking
/// the engine's certificate by the offer's fingerprint, presenting `cert`), a bind SEND naming
/// the engine's session, then a sans-IO `Receiver` answering chunks and sending the success
/// REPORT. Returns the SHA-1 of what arrived, or the error that ended it.
fn active_participant(
    dir: &Dir,
    engine: &Engine,
    offer: &str,
    cert: &str,
    key: &str,
) -> Result<(u64, String), String> {
    use bytes::{Bytes, BytesMut};
    use msrpcast::msrp::parser::FrameDecoder;
    use msrpcast::msrp::receiver::{Receiver, ReceiverConfig, ReceiverEvent};
    use msrpcast::msrp::{writer, Continuation, Header, Kind, Message, Method, Uri};
    use std::io::Write;
    let line = |p: &str| {
        offer
            .lines()
            .find_map(|l| l.strip_prefix(p))
            .unwrap_or_else(|| panic!("no {p} in {offer}"))
            .trim()
            .to_owned()
    };
    let engine_path = Uri::parse_slice(line("a=path:").as_bytes()).unwrap();
    let fp = msrpcast::tls::Fingerprint::parse(&line("a=fingerprint:")).unwrap();
    let ours = Uri::parse_slice(b"msrps://127.0.0.1:9/p4rt;tcp").unwrap();
    let tls = Tls::load(TlsSettings {
        cert: Some(dir.write("active-cert.pem", cert).into()),
        key: Some(dir.write("active-key.pem", key).into()),
        ca: None,
        verify: Verify::Fingerprint,
        request_client_cert: false,
        alpn: Vec::new(),
        verify_cache: 0,
    })
    .unwrap();
    let config = tls.client_config(&[fp]).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let sock = std::net::TcpStream::connect(engine.msrp_addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    let bind = Message {
        transaction_id: Bytes::from_static(b"bind1"),
        kind: Kind::Request(Method::Send),
        to_path: vec![engine_path],
        from_path: vec![ours.clone()],
        headers: vec![Header::MessageId(Bytes::from_static(b"bindmsg"))],
        body: Bytes::new(),
        continuation: Continuation::End,
    };
    let mut out = BytesMut::new();
    writer::write_message(&bind, &mut out);
    s.write_all(&out).map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut rx = Receiver::new(ours, ReceiverConfig::default());
    let mut decoder = FrameDecoder::new(Default::default());
    let mut sha = Sha1::new();
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < WAIT * 3, "the active participant timed out");
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("{e} after {got} file bytes"))?;
        if n == 0 {
            return Err(format!(
                "the engine closed the connection after {got} file bytes"
            ));
        }
        decoder.feed(&buf[..n]);
        let mut done = false;
        while let Some(msg) = decoder.next().map_err(|e| e.to_string())? {
            rx.handle_frame(&msg);
            let mut out = BytesMut::new();
            while let Some(reply) = rx.poll_reply() {
                writer::write_message(&reply, &mut out);
            }
            s.write_all(&out).map_err(|e| e.to_string())?;
            s.flush().map_err(|e| e.to_string())?;
            while let Some(ev) = rx.poll_event() {
                match ev {
                    ReceiverEvent::Data { offset, bytes, .. } => {
                        assert_eq!(offset, got, "data out of order");
                        got += bytes.len() as u64;
                        sha.update(&bytes);
                    }
                    ReceiverEvent::MessageComplete { .. } => done = true,
                    _ => {}
                }
            }
        }
        if done {
            return Ok((got, hex(&sha.finalize())));
        }
    }
}

/// Waits until the engine has taken the answer of `d` (it then waits for the participant's
/// connection): connecting earlier would name a session the listener does not know yet.
fn wait_connecting(e: &Engine, d: DeliveryId) {
    let t0 = Instant::now();
    while e.roster().delivery(d).map(|x| x.state) != Some(DeliveryState::Connecting) {
        assert!(t0.elapsed() < WAIT, "the answer was not taken");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An `a=setup:active` TLS answer from 127.0.0.1, with `extra` lines.
fn active_answer(extra: &str) -> String {
    tls_answer("127.0.0.1", 9, extra)
        .replace("a=setup:passive", "a=setup:active")
        .replace("/rx;tcp", "/p4rt;tcp")
}

/// Engine passive over msrps: the participant connects with TLS, its certificate (for
/// 127.0.0.1, from the trusted CA) is checked once its first frame names the session, and the
/// file arrives whole (SHA-1 at the participant).
#[test]
fn msrps_delivery_engine_passive() {
    let dir = Dir::new("msrps-passive");
    let trusted = ca("participants CA");
    let (cert, key, _) = leaf(&trusted, &["127.0.0.1"], None);
    let e = tls_engine(&dir, &trusted.pem, "host");
    let data = data(2 << 20, 11);
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let t = upload(&e, "c", &data);
    let Signal::Offer { delivery, sdp, .. } = next_signal(&e) else {
        panic!("expected an offer")
    };
    e.answered(delivery, &active_answer("")).unwrap();
    wait_connecting(&e, delivery);
    let (n, sha) = active_participant(&dir, &e, &sdp, &cert, &key).unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(sha, hex(&Sha1::digest(&data)));
    assert_eq!(final_state(&e, t), DeliveryState::Done);
}

/// Engine passive: a participant whose certificate does not name its host is refused after its
/// first frame; it receives not one byte of the file.
#[test]
fn msrps_engine_passive_wrong_host_gets_no_byte() {
    let dir = Dir::new("msrps-passive-bad");
    let trusted = ca("participants CA");
    let (cert, key, _) = leaf(&trusted, &["other.example"], None);
    let e = tls_engine(&dir, &trusted.pem, "host");
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let t = upload(&e, "c", &data(100_000, 11));
    let Signal::Offer { delivery, sdp, .. } = next_signal(&e) else {
        panic!("expected an offer")
    };
    e.answered(delivery, &active_answer("")).unwrap();
    wait_connecting(&e, delivery);
    let r = active_participant(&dir, &e, &sdp, &cert, &key);
    assert!(
        r.as_ref().is_err_and(|e| e.ends_with("after 0 file bytes")),
        "{r:?}"
    );
    failed_with(&final_state(&e, t), "wrong host");
}

/// A participant whose answer asked for TLS (`a=setup:active`) but that connects in clear is
/// refused once its first frame names the session; nothing is sent to it.
#[test]
fn msrps_engine_passive_plain_connection_is_refused() {
    use bytes::{Bytes, BytesMut};
    use msrpcast::msrp::{writer, Continuation, Header, Kind, Message, Method, Uri};
    use std::io::Write;
    let dir = Dir::new("msrps-passive-plain");
    let trusted = ca("participants CA");
    let e = tls_engine(&dir, &trusted.pem, "host");
    let (t, d, sdp) = offered(&e, 1000);
    e.answered(d, &active_answer("")).unwrap();
    wait_connecting(&e, d);
    let path = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=path:"))
        .unwrap()
        .trim()
        .to_owned();
    let bind = Message {
        transaction_id: Bytes::from_static(b"bind1"),
        kind: Kind::Request(Method::Send),
        to_path: vec![Uri::parse_slice(path.as_bytes()).unwrap()],
        from_path: vec![Uri::parse_slice(b"msrp://127.0.0.1:9/p4rt;tcp").unwrap()],
        headers: vec![Header::MessageId(Bytes::from_static(b"bindmsg"))],
        body: Bytes::new(),
        continuation: Continuation::End,
    };
    let mut out = BytesMut::new();
    writer::write_message(&bind, &mut out);
    let mut s = std::net::TcpStream::connect(e.msrp_addr()).unwrap();
    s.write_all(&out).unwrap();
    failed_with(&final_state(&e, t), "connected without TLS");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    assert_eq!(
        s.read(&mut buf).unwrap_or(0),
        0,
        "the engine answered in clear"
    );
}
