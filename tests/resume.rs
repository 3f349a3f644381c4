//! Resume after a dropped connection (issue 13): a SIP participant whose MSRP connection drops
//! mid-file is offered the file again with RFC 5547 `a=file-range` for the bytes it lacks, and
//! only those cross the wire; `msrpcast receive` keeps the part file and completes it.
//!
//! The test plays the SIP host (it takes the engine's signals and answers them); the participant
//! is an `msrpcast receive` process, reached through a counting TCP proxy so that the bytes of
//! each connection are measured on the wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msrpcast::roster::{DeliveryId, DeliveryState};
use msrpcast::runtime::receive::hex;
use msrpcast::runtime::{Engine, Signal};
use sha1::{Digest, Sha1};

mod common;
use common::{data, upload, wait_joined};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    common::proc::scratch(&format!("resume-{name}"))
}

/// A test engine that retries after 100 ms (not the default 2 s).
fn engine(dir: &std::path::Path, sets: &[(&str, &str)]) -> Engine {
    let mut all = vec![("resume_backoff_ms", "100")];
    all.extend_from_slice(sets);
    common::engine_in(dir, &all)
}

/// An `msrpcast receive` process and the lines it prints.
struct Peer {
    child: Child,
    uri: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn start(dir: &std::path::Path, misbehave: &str) -> Peer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_msrpcast"));
        cmd.args(["receive", "--listen", "127.0.0.1:0", "--session-id", "rx"])
            .arg("--dir")
            .arg(dir);
        if !misbehave.is_empty() {
            cmd.args(["--misbehave", misbehave]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let uri = lines.recv_timeout(Duration::from_secs(10)).unwrap();
        Peer { child, uri, lines }
    }

    fn port(&self) -> u16 {
        let hostport = self
            .uri
            .split("//")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        hostport.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The next line that starts with `what`.
    fn expect(&self, what: &str, secs: u64) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let l = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the receiver printed no {what:?} line"));
            if l.starts_with(what) {
                return l;
            }
        }
    }
}

/// A TCP proxy to `target` that counts, per connection, the bytes going towards the target.
struct Proxy {
    addr: SocketAddr,
    counts: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, n: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(k) => {
                if let Some(n) = &n {
                    n.fetch_add(k as u64, Ordering::Relaxed);
                }
                if to.write_all(&buf[..k]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }
}

fn proxy(target: SocketAddr) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let counts: Arc<Mutex<Vec<Arc<AtomicU64>>>> = Arc::default();
    let c = counts.clone();
    std::thread::spawn(move || {
        for a in l.incoming() {
            let Ok(a) = a else { return };
            let Ok(b) = TcpStream::connect(target) else {
                continue;
            };
            let n = Arc::new(AtomicU64::new(0));
            c.lock().unwrap().push(n.clone());
            let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            std::thread::spawn(move || pump(a, b, Some(n)));
            std::thread::spawn(move || pump(b2, a2, None));
        }
    });
    Proxy { addr, counts }
}

impl Proxy {
    fn connection_bytes(&self) -> Vec<u64> {
        self.counts
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

/// The participant's SDP answer: its path through the proxy, and `range` as `a=file-range`.
fn answer(p: &Proxy, range: Option<&str>) -> String {
    let port = p.addr.port();
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message {port} TCP/MSRP *\r\na=accept-types:*\r\na=recvonly\r\n\
         a=path:msrp://127.0.0.1:{port}/rx;tcp\r\n"
    );
    if let Some(r) = range {
        s.push_str(&format!("a=file-range:{r}\r\n"));
    }
    s
}

fn next_signal(e: &Engine, secs: u64) -> Signal {
    e.signals()
        .recv_timeout(Duration::from_secs(secs))
        .expect("no signal from the engine")
}

fn next_offer(e: &Engine, secs: u64) -> (DeliveryId, String) {
    loop {
        match next_signal(e, secs) {
            Signal::Offer { delivery, sdp, .. } => return (delivery, sdp),
            Signal::Bye { .. } => {}
        }
    }
}

fn attr<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(&format!("a={name}:")))
}

/// The `a=file-selector` without its `hash:` part (absent from an offer made while the file was
/// still being uploaded).
fn selector_sans_hash(sdp: &str) -> String {
    let s = attr(sdp, "file-selector").expect("a=file-selector");
    s.split(' ')
        .filter(|w| !w.starts_with("hash:"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn delivery_state(e: &Engine, d: DeliveryId) -> msrpcast::roster::DeliverySnapshot {
    e.roster().delivery(d).expect("delivery")
}

fn wait_terminal(e: &Engine, d: DeliveryId, secs: u64) -> msrpcast::roster::DeliverySnapshot {
    let t0 = std::time::Instant::now();
    loop {
        let s = delivery_state(e, d);
        if s.state.is_terminal() {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "delivery not finished: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the re-offer after a drop: the roster shows the next attempt first.
fn wait_requeued(e: &Engine, d: DeliveryId, attempt: u32) -> msrpcast::roster::DeliverySnapshot {
    let t0 = std::time::Instant::now();
    loop {
        let s = delivery_state(e, d);
        if s.attempt >= attempt {
            return s;
        }
        assert!(
            !s.state.is_terminal(),
            "the delivery ended instead of being offered again: {s:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(60), "no re-offer: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

const MIB: u64 = 1 << 20;

/// The receiver closes its connection after 10 MiB of a 64 MiB file; the engine offers it again
/// with `a=file-range:<N+1>-67108864` (N the bytes confirmed) and the same file, and only the
/// rest crosses the wire; the receiver completes its part file and the SHA-1 of the whole file
/// matches.
#[test]
fn dropped_delivery_resumes_from_the_confirmed_byte() {
    let _s = serial();
    let dir = tmpdir("resume");
    let e = engine(&dir, &[]);
    let peer = Peer::start(&dir.join("rx"), &format!("close-after-bytes={}", 10 * MIB));
    let px = proxy(SocketAddr::from(([127, 0, 0, 1], peer.port())));
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let size = 64 * MIB;
    let body = data(size as usize, 13);
    let want = hex(&Sha1::digest(&body));
    upload(&e, "c", &body);

    let (d, first) = next_offer(&e, 10);
    assert_eq!(attr(&first, "file-range"), None, "{first}");
    e.answered(d, &answer(&px, None)).unwrap();
    let cut = peer.expect("failed ", 60);
    assert!(cut.contains("kept for a resumed transfer"), "{cut}");

    let again = wait_requeued(&e, d, 2);
    let (d2, second) = next_offer(&e, 30);
    assert_eq!(d2, d, "the re-offer is for the same delivery");
    let kept = delivery_state(&e, d)
        .resumed_from
        .expect("resumed_from in the roster");
    assert_eq!(again.attempt, 2);
    assert!(
        (MIB..=11 * MIB).contains(&kept),
        "confirmed before the drop: {kept}"
    );
    let range = format!("{}-{size}", kept + 1);
    assert_eq!(
        attr(&second, "file-range"),
        Some(range.as_str()),
        "{second}"
    );
    // The same file: name, type and size, and now its SHA-1 too; a new transfer operation.
    assert_eq!(selector_sans_hash(&second), selector_sans_hash(&first));
    let sha_attr = attr(&second, "file-selector").unwrap();
    let colon_hex: Vec<String> = Sha1::digest(&body)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(
        sha_attr.contains(&format!("hash:sha-1:{}", colon_hex.join(":"))),
        "{sha_attr}"
    );
    assert_ne!(
        attr(&second, "file-transfer-id"),
        attr(&first, "file-transfer-id")
    );

    e.answered(d, &answer(&px, Some(&range))).unwrap();
    let got = peer.expect("received ", 120);
    let fields: Vec<&str> = got.split(' ').collect();
    assert_eq!(fields[2], size.to_string(), "{got}");
    assert_eq!(fields[3], want, "SHA-1 of the whole file: {got}");
    let saved = std::fs::read(fields[4]).unwrap();
    assert!(saved == body, "the saved file differs");

    let done = wait_terminal(&e, d, 30);
    assert_eq!(done.state, DeliveryState::Done);
    assert_eq!((done.attempt, done.resumed_from), (2, Some(kept)));

    let wire = px.connection_bytes();
    assert_eq!(wire.len(), 2, "connections: {wire:?}");
    let rest = size - kept;
    // The rest plus the chunks' heads (about 200 bytes per 10 KiB chunk), never the whole file.
    assert!(
        wire[1] >= rest && wire[1] < rest + rest / 20,
        "second connection carried {} bytes for the {rest} missing",
        wire[1]
    );
    assert!(wire[0] < size, "first connection: {}", wire[0]);
    eprintln!(
        "resume: confirmed {kept} before the drop; connections carried {wire:?} bytes (file {size})"
    );
    drop(peer);
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
}

/// A participant whose answer does not take the offered range gets the whole file: an answer
/// naming another range ends that session and a fresh offer without a range follows; an answer
/// without `a=file-range` (the attribute unknown to it) gets the whole file in that session.
#[test]
fn refused_range_gets_the_whole_file() {
    let _s = serial();
    for other_range in [true, false] {
        let dir = tmpdir(if other_range { "refuse" } else { "ignore" });
        let e = engine(&dir, &[]);
        let peer = Peer::start(&dir.join("rx"), &format!("close-after-bytes={}", 2 * MIB));
        let px = proxy(SocketAddr::from(([127, 0, 0, 1], peer.port())));
        e.join("c", "bob", "sip:bob@127.0.0.1:5998", None).unwrap();
        wait_joined(&e, "c", 1);
        let size = 8 * MIB;
        let body = data(size as usize, 21);
        let want = hex(&Sha1::digest(&body));
        upload(&e, "c", &body);
        let (d, _) = next_offer(&e, 10);
        e.answered(d, &answer(&px, None)).unwrap();
        peer.expect("failed ", 60);
        wait_requeued(&e, d, 2);
        let (_, second) = next_offer(&e, 30);
        let range = attr(&second, "file-range")
            .expect("a=file-range")
            .to_owned();
        let attempt = if other_range {
            e.answered(d, &answer(&px, Some(&format!("1-{size}"))))
                .unwrap();
            wait_requeued(&e, d, 3);
            let (_, third) = next_offer(&e, 30);
            assert_eq!(attr(&third, "file-range"), None, "{third}");
            e.answered(d, &answer(&px, None)).unwrap();
            3
        } else {
            e.answered(d, &answer(&px, None)).unwrap();
            2
        };
        let got = peer.expect("received ", 60);
        assert!(got.contains(&format!(" {size} {want} ")), "{got} ({range})");
        let done = wait_terminal(&e, d, 30);
        assert_eq!(done.state, DeliveryState::Done);
        assert_eq!((done.attempt, done.resumed_from), (attempt, None));
        let wire = px.connection_bytes();
        assert!(
            *wire.last().unwrap() >= size,
            "the whole file goes again: {wire:?}"
        );
        drop(peer);
        drop(e);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A participant that drops every connection: offered again `resume_retries` times, then the
/// delivery fails with a reason that says so.
#[test]
fn retries_exhausted_fail_with_a_reason() {
    let _s = serial();
    let dir = tmpdir("exhaust");
    let e = engine(&dir, &[("resume_retries", "1")]);
    let peer = Peer::start(&dir.join("rx"), &format!("close-after={}", MIB));
    let px = proxy(SocketAddr::from(([127, 0, 0, 1], peer.port())));
    e.join("c", "carol", "sip:carol@127.0.0.1:5997", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let size = 8 * MIB;
    upload(&e, "c", &data(size as usize, 5));
    let (d, _) = next_offer(&e, 10);
    e.answered(d, &answer(&px, None)).unwrap();
    wait_requeued(&e, d, 2);
    let (_, second) = next_offer(&e, 30);
    let range = attr(&second, "file-range")
        .expect("a=file-range")
        .to_owned();
    e.answered(d, &answer(&px, Some(&range))).unwrap();
    let end = wait_terminal(&e, d, 60);
    let DeliveryState::Failed { reason, .. } = &end.state else {
        panic!("{end:?}")
    };
    assert!(
        reason.contains("gave up after 2 attempts") && reason.contains("resume_retries"),
        "{reason}"
    );
    assert_eq!(end.attempt, 2);
    assert_eq!(end.ended_in, Some("sending"));
    // Nothing more is offered.
    while let Ok(s) = e.signals().recv_timeout(Duration::from_millis(500)) {
        assert!(matches!(s, Signal::Bye { .. }), "{s:?}");
    }
    drop(peer);
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
}

/// One SEND of the file `k.txt` on `c`; returns the response code.
fn send_chunk(c: &mut TcpStream, to: &str, mid: &str, range: &str, body: &str, flag: char) -> u16 {
    let tid = format!("t{mid}x");
    let frame = format!(
        "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: msrp://127.0.0.1:1111/tx;tcp\r\n\
         Message-ID: {mid}\r\nByte-Range: {range}\r\n\
         Content-Disposition: attachment; filename=\"k.txt\"\r\nContent-Type: text/plain\r\n\r\n\
         {body}\r\n-------{tid}{flag}\r\n"
    );
    c.write_all(frame.as_bytes()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let end = format!("-------{tid}$\r\n");
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(&end) {
        let n = c.read(&mut buf).expect("a response");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let first = text.lines().next().unwrap_or_default().to_owned();
    first
        .split(' ')
        .nth(2)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text}"))
}

/// `msrpcast receive` keeps the part file of a transfer cut off mid-way and completes it from a
/// message whose Byte-Range continues it; a range that would leave a hole, or that reaches past
/// the declared size, is refused (400) and writes nothing (issue 14 #19: no sparse files).
#[test]
fn receive_completes_a_kept_part_only_from_a_contiguous_range() {
    let _s = serial();
    let dir = tmpdir("guard");
    let rx = dir.join("rx");
    let peer = Peer::start(&rx, "");
    let addr = SocketAddr::from(([127, 0, 0, 1], peer.port()));
    let to = peer.uri.clone();
    let mut c = TcpStream::connect(addr).unwrap();
    assert_eq!(send_chunk(&mut c, &to, "m1", "1-5/10", "01234", '+'), 200);
    drop(c);
    let cut = peer.expect("failed ", 10);
    assert!(cut.contains("5 bytes kept"), "{cut}");

    let mut c = TcpStream::connect(addr).unwrap();
    // A hole after the kept bytes, and a chunk past the declared size: refused.
    assert_eq!(send_chunk(&mut c, &to, "m2", "8-10/10", "789", '$'), 400);
    assert_eq!(send_chunk(&mut c, &to, "m3", "6-*/10", "5678901", '$'), 400);
    // From byte 4: the kept part is cut to 3 bytes and completed.
    assert_eq!(
        send_chunk(&mut c, &to, "m4", "4-10/10", "3456789", '$'),
        200
    );
    let got = peer.expect("received ", 10);
    let want = hex(&Sha1::digest(b"0123456789"));
    assert!(got.starts_with(&format!("received m4 10 {want} ")), "{got}");
    let path = got.split(' ').nth(4).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"0123456789");
    let biggest = std::fs::read_dir(&rx)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    assert_eq!(biggest, 10, "a file larger than the message in the folder");
    drop(peer);
    let _ = std::fs::remove_dir_all(dir);
}
