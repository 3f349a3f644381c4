//! The engine end to end on real sockets (127.0.0.1): uploads spooled and delivered to `msrpcast
//! receive`-style receivers, each checking SHA-1 independently; isolation of broken receivers;
//! late answers, late joiners, leaving and aborted uploads.
//!
//! Run in release (`make test` does): the large fan-outs move gigabytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use msrpcast::roster::{DeliveryState, TransferId, TransferState};
use msrpcast::runtime::receive::{hex, ReceiveServer, Received, Sink};
use msrpcast::runtime::{Engine, EngineError, Signal};
use sha1::{Digest, Sha1};

mod common;
use common::misbehave::Misbehave;
use common::{data, upload, wait_joined};

/// The tests of this file run one at a time: they move gigabytes and one of them compares
/// timings, which a concurrent fan-out on the same two cores would distort.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`common::wait_done`] without extra context.
fn wait_done(e: &Engine, t: TransferId, n: usize, limit: Duration) -> Vec<(String, DeliveryState)> {
    common::wait_done(e, t, n, limit, String::new)
}

/// Waits for `cond` (polled every millisecond), failing the test after `limit`.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "condition not met within {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "msrpcast-test-{}-{}-{}",
        name,
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A test's folder, removed when the test passes (a failing test's stays for a look; each
/// `make test` left ~200 MB of spools here before).
struct TmpDir(std::path::PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An engine spooling in a folder of its own. The folder comes first so that it is dropped
/// last, after the engine has stopped: bind it as `let (_dir, e) = engine(…)`.
fn engine(name: &str, sets: &[(&str, &str)]) -> (TmpDir, Engine) {
    let dir = tmpdir(name);
    let e = common::engine_in(&dir, sets);
    (TmpDir(dir), e)
}

fn receiver(misbehave: Option<Misbehave>) -> ReceiveServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let hooks = misbehave.as_ref().map(Misbehave::hooks);
    ReceiveServer::start(addr, "rx", Sink::Discard, true, hooks, 1).unwrap()
}

fn next_received(r: &ReceiveServer, secs: u64) -> Received {
    r.next(Duration::from_secs(secs))
        .expect("receiver reported nothing")
}

fn fanout(n: usize, size: usize) {
    let (_dir, e) = engine(&format!("fanout{n}"), &[]);
    let rx: Vec<ReceiveServer> = (0..n).map(|_| receiver(None)).collect();
    for (i, r) in rx.iter().enumerate() {
        e.join_direct("c", &format!("p{i}"), &r.uri.to_string())
            .unwrap();
    }
    wait_joined(&e, "c", n);
    let body = data(size, n as u64);
    let want = hex(&Sha1::digest(&body));
    let t = upload(&e, "c", &body);
    let states = wait_done(&e, t, n, Duration::from_secs(120));
    for (p, s) in &states {
        assert_eq!(*s, DeliveryState::Done, "{p}");
    }
    for r in &rx {
        let got = next_received(r, 10);
        assert_eq!(got.failure, None);
        assert_eq!(got.bytes, size as u64);
        assert_eq!(got.sha1.as_deref(), Some(want.as_str()));
    }
}

#[test]
fn fanout_1_receiver_64mib() {
    let _serial = serial();
    fanout(1, 64 << 20);
}

#[test]
fn fanout_10_receivers_64mib() {
    let _serial = serial();
    fanout(10, 64 << 20);
}

#[test]
fn fanout_100_receivers_64mib() {
    let _serial = serial();
    fanout(100, 64 << 20);
}

/// A receiver that reads 1 MiB/s does not hold back the other nine: all nine have the whole file
/// while the slow one has had less than half of it (at 1 MiB/s it needs 32 s for 32 MiB). Judged
/// by progress, not by comparing wall-clock times, so a loaded machine cannot flip it.
#[test]
fn slow_receiver_does_not_slow_the_others() {
    let _serial = serial();
    let size: u64 = 32 << 20;
    let body = data(size as usize, 7);
    let (_dir, e) = engine("slow", &[]);
    let rx: Vec<ReceiveServer> = (0..9).map(|_| receiver(None)).collect();
    let slow = receiver(Some(Misbehave::Rate(1 << 20)));
    for (i, r) in rx.iter().enumerate() {
        e.join_direct("c", &format!("p{i}"), &r.uri.to_string())
            .unwrap();
    }
    e.join_direct("c", "slow", &slow.uri.to_string()).unwrap();
    wait_joined(&e, "c", 10);
    let t = upload(&e, "c", &body);
    for r in &rx {
        let got = next_received(r, 60);
        assert_eq!(got.failure, None);
    }
    let tr = e.roster().transfer(t).unwrap();
    let s = tr
        .deliveries
        .iter()
        .find(|d| d.participant == "slow")
        .unwrap();
    assert!(
        !s.state.is_terminal(),
        "slow one should still be going: {:?}",
        s.state
    );
    let sent = match s.state {
        DeliveryState::Sending { bytes, .. } => bytes,
        _ => 0,
    };
    assert!(
        sent < size / 2,
        "the nine finished only after the slow one had {sent} of {size} bytes"
    );
}

/// Broken receivers each fail with their reason; the others succeed.
#[test]
fn broken_receivers_fail_alone() {
    let _serial = serial();
    let (_dir, e) = engine(
        "broken",
        &[
            ("transaction_timeout_ms", "1500"),
            ("report_timeout_ms", "1500"),
        ],
    );
    let good: Vec<ReceiveServer> = (0..3).map(|_| receiver(None)).collect();
    let closer = receiver(Some(Misbehave::CloseAfter(1 << 20)));
    let r481 = receiver(Some(Misbehave::Reply481));
    let mute = receiver(Some(Misbehave::NeverAnswer));
    let failrep = receiver(Some(Misbehave::FailureReport));
    let flood = receiver(Some(Misbehave::Flood));
    for (i, r) in good.iter().enumerate() {
        e.join_direct("c", &format!("good{i}"), &r.uri.to_string())
            .unwrap();
    }
    e.join_direct("c", "closer", &closer.uri.to_string())
        .unwrap();
    e.join_direct("c", "r481", &r481.uri.to_string()).unwrap();
    e.join_direct("c", "mute", &mute.uri.to_string()).unwrap();
    e.join_direct("c", "failrep", &failrep.uri.to_string())
        .unwrap();
    e.join_direct("c", "flood", &flood.uri.to_string()).unwrap();
    wait_joined(&e, "c", 8);
    let body = data(8 << 20, 3);
    let t = upload(&e, "c", &body);
    let states = wait_done(&e, t, 8, Duration::from_secs(30));
    for (p, s) in &states {
        match p.as_str() {
            p if p.starts_with("good") => assert_eq!(*s, DeliveryState::Done, "{p}"),
            // A receiver closing with unread data makes the kernel reset the connection.
            "closer" => assert!(
                matches!(s, DeliveryState::Failed { reason, .. }
                    if reason.contains("closed") || reason.contains("reset")),
                "closer: {s:?}"
            ),
            "r481" => assert!(
                matches!(
                    s,
                    DeliveryState::Failed {
                        code: Some(481),
                        ..
                    }
                ),
                "r481: {s:?}"
            ),
            "mute" => assert!(
                matches!(
                    s,
                    DeliveryState::Failed {
                        code: Some(408),
                        ..
                    }
                ),
                "mute: {s:?}"
            ),
            "failrep" => assert!(
                matches!(
                    s,
                    DeliveryState::Failed {
                        code: Some(415),
                        ..
                    }
                ),
                "failrep: {s:?}"
            ),
            // Floods empty SENDs (well-formed: not refused as unparsable) and never reads:
            // pushed back, then timed out, on our SEND or on the responses it leaves unread.
            "flood" => assert!(
                matches!(s, DeliveryState::Failed { code: Some(408), reason }
                    if reason.contains("timed out") || reason.contains("does not read")),
                "flood: {s:?}"
            ),
            other => panic!("unexpected participant {other}"),
        }
    }
}

fn answer_for(r: &ReceiveServer) -> String {
    let port = r.addr.port();
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message {port} TCP/MSRP *\r\na=accept-types:*\r\na=recvonly\r\na=path:{}\r\n",
        r.uri
    )
}

fn next_signal(e: &Engine, secs: u64) -> Signal {
    e.signals()
        .recv_timeout(Duration::from_secs(secs))
        .expect("no signal from the engine")
}

/// SIP participants: the offer goes to the host, a late answer still starts from byte 1, and
/// the BYE follows the delivery.
#[test]
fn late_answer_gets_the_whole_file_and_a_bye() {
    let _serial = serial();
    let (_dir, e) = engine("late", &[]);
    let r = receiver(None);
    e.join("c", "alice", "sip:alice@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(&e, "c", 1);
    let body = data(4 << 20, 11);
    let t = upload(&e, "c", &body);
    let Signal::Offer {
        delivery,
        target_uri,
        sdp,
        ..
    } = next_signal(&e, 5)
    else {
        panic!("expected an offer")
    };
    assert_eq!(target_uri, "sip:alice@127.0.0.1:5999");
    assert!(sdp.contains("m=message "), "{sdp}");
    assert!(sdp.contains("a=file-selector:"), "{sdp}");
    assert!(sdp.contains("a=sendonly"), "{sdp}");
    // Late: the whole file is spooled before the answer comes (the upload has finished).
    assert!(matches!(
        e.roster().transfer(t).unwrap().state,
        TransferState::Complete { .. }
    ));
    assert_eq!(
        e.roster().delivery(delivery).unwrap().state,
        DeliveryState::Offering
    );
    e.answered(delivery, &answer_for(&r)).unwrap();
    let got = next_received(&r, 20);
    assert_eq!(got.failure, None);
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(&body))));
    assert_eq!(next_signal(&e, 5), Signal::Bye { delivery });
    let states = wait_done(&e, t, 1, Duration::from_secs(5));
    assert_eq!(states[0].1, DeliveryState::Done);
}

#[test]
fn rejected_invite_fails_with_its_code() {
    let _serial = serial();
    let (_dir, e) = engine("reject", &[]);
    e.join("c", "bob", "sip:bob@127.0.0.1:5998", None).unwrap();
    wait_joined(&e, "c", 1);
    let t = upload(&e, "c", &data(1000, 1));
    let Signal::Offer { delivery, .. } = next_signal(&e, 5) else {
        panic!("expected an offer")
    };
    e.rejected(delivery, 486).unwrap();
    let states = wait_done(&e, t, 1, Duration::from_secs(5));
    assert!(
        matches!(
            states[0].1,
            DeliveryState::Failed {
                code: Some(486),
                ..
            }
        ),
        "{:?}",
        states[0].1
    );
}

#[test]
fn late_joiner_is_offered_earlier_files() {
    let _serial = serial();
    let (_dir, e) = engine("latejoin", &[]);
    let first = receiver(None);
    e.join_direct("c", "first", &first.uri.to_string()).unwrap();
    wait_joined(&e, "c", 1);
    let body = data(2 << 20, 5);
    let t = upload(&e, "c", &body);
    assert_eq!(next_received(&first, 20).failure, None);
    let late = receiver(None);
    e.join_direct("c", "late", &late.uri.to_string()).unwrap();
    let got = next_received(&late, 20);
    assert_eq!(got.failure, None);
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(&body))));
    let states = wait_done(&e, t, 2, Duration::from_secs(5));
    assert!(states.iter().all(|(_, s)| *s == DeliveryState::Done));
}

#[test]
fn leaving_mid_transfer_aborts_only_that_delivery() {
    let _serial = serial();
    let (_dir, e) = engine("leave", &[]);
    let stays = receiver(None);
    let leaves = receiver(Some(Misbehave::Rate(8 << 20)));
    e.join_direct("c", "stays", &stays.uri.to_string()).unwrap();
    e.join_direct("c", "leaves", &leaves.uri.to_string())
        .unwrap();
    wait_joined(&e, "c", 2);
    let body = data(16 << 20, 9);
    let t = upload(&e, "c", &body);
    assert_eq!(next_received(&stays, 20).failure, None);
    e.leave("c", "leaves").unwrap();
    let got = next_received(&leaves, 10);
    assert_eq!(
        got.failure.as_deref(),
        Some("aborted by the sender"),
        "{got:?}"
    );
    // The receiver has the file before the engine has its success REPORT: wait for the roster.
    for (p, s) in wait_done(&e, t, 2, Duration::from_secs(10)) {
        match p.as_str() {
            "stays" => assert_eq!(s, DeliveryState::Done),
            _ => assert_eq!(s, DeliveryState::Cancelled),
        }
    }
}

#[test]
fn aborted_upload_aborts_started_deliveries() {
    let _serial = serial();
    let (_dir, e) = engine("abort", &[]);
    let a = receiver(None);
    let b = receiver(None);
    e.join_direct("c", "a", &a.uri.to_string()).unwrap();
    e.join_direct("c", "b", &b.uri.to_string()).unwrap();
    wait_joined(&e, "c", 2);
    let mut up = e
        .upload("c", "f", "application/octet-stream", None)
        .unwrap();
    let t = up.transfer;
    up.append(&data(3 << 20, 2)).unwrap();
    // Both deliveries are on the wire before the upload breaks off.
    wait_until(Duration::from_secs(10), || {
        let ds = e.roster().transfer(t).unwrap().deliveries;
        ds.len() == 2
            && ds
                .iter()
                .all(|d| matches!(d.state, DeliveryState::Sending { .. }))
    });
    up.abort();
    for r in [&a, &b] {
        let got = next_received(r, 10);
        assert_eq!(
            got.failure.as_deref(),
            Some("aborted by the sender"),
            "{got:?}"
        );
    }
    let states = wait_done(&e, t, 2, Duration::from_secs(5));
    for (p, s) in states {
        assert!(matches!(s, DeliveryState::Failed { .. }), "{p}: {s:?}");
    }
}

/// A join target with CR/LF (a second SIP header smuggled into the host's INVITE) is refused
/// with a reason, and nothing reaches the roster (issue 14, finding 17).
#[test]
fn join_with_control_characters_is_refused() {
    let _serial = serial();
    let (_dir, e) = engine("crlf", &[]);
    let bad = [
        ("c", "a", "sip:a@127.0.0.1\r\nX-Injected: 1", None),
        ("c", "a", "sip:a@127.0.0.1\n", None),
        ("c", "a", "sip:a b@127.0.0.1", None),
        ("c\r\n", "a", "sip:a@127.0.0.1", None),
        ("c", "a\u{0}", "sip:a@127.0.0.1", None),
        ("c", "a", "sip:a@127.0.0.1", Some("Alice\r\nX: 1")),
    ];
    for (conf, who, target, display) in bad {
        match e.join(conf, who, target, display) {
            Err(EngineError::BadInput(reason)) => {
                assert!(
                    reason.contains("control character") || reason.contains("space"),
                    "{reason}"
                )
            }
            other => panic!("{target:?} / {display:?}: {other:?}"),
        }
    }
    assert!(matches!(
        e.join_direct("c", "a\r\n", "msrp://127.0.0.1:9/s;tcp"),
        Err(EngineError::BadInput(_))
    ));
    e.join("c", "ok", "sip:ok@127.0.0.1", Some("Ok")).unwrap();
    wait_joined(&e, "c", 1);
    let conf = e.roster().conference("c").unwrap();
    assert_eq!(
        conf.participants.len(),
        1,
        "only the good join went through"
    );
}

/// Reads from `s` until the peer closes it (EOF or reset), failing after `limit`.
fn wait_closed(s: &mut std::net::TcpStream, limit: Duration) {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection not closed by the engine: {e}"),
        }
    }
}

fn loads(e: &Engine) -> usize {
    e.io_loads().iter().sum()
}

/// Still open, nothing to read: a non-blocking read would block.
fn is_open(s: &std::net::TcpStream) -> bool {
    use std::io::Read;
    s.set_nonblocking(true).unwrap();
    let r = (&*s).read(&mut [0u8; 16]);
    s.set_nonblocking(false).unwrap();
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Connections to the MSRP listener that have not sent their first frame are capped in number
/// (`msrp_max_pending`) and in bytes (`msrp_pending_max_bytes`) (issue 14, finding 2).
#[test]
fn connections_awaiting_their_first_frame_are_capped() {
    use std::io::Write;
    use std::net::TcpStream;
    let _serial = serial();
    let (_dir, e) = engine(
        "pending",
        &[("msrp_max_pending", "2"), ("msrp_pending_max_bytes", "1K")],
    );
    let addr = e.msrp_addr();
    let base = loads(&e);
    // A SEND head and 1 KiB of body without its end-line: over the byte cap.
    let mut big = TcpStream::connect(addr).unwrap();
    big.write_all(
        b"MSRP abcd1234 SEND\r\nTo-Path: msrp://127.0.0.1:1/x;tcp\r\n\
          From-Path: msrp://127.0.0.1:2/y;tcp\r\nMessage-ID: m1\r\nByte-Range: 1-*/*\r\n\
          Content-Type: text/plain\r\n\r\n",
    )
    .unwrap();
    big.write_all(&[b'x'; 1024]).unwrap();
    wait_closed(&mut big, Duration::from_secs(10));
    wait_until(Duration::from_secs(10), || loads(&e) == base);

    // Two silent connections take both places; a third is closed at once.
    let a = TcpStream::connect(addr).unwrap();
    let b = TcpStream::connect(addr).unwrap();
    let mut c = TcpStream::connect(addr).unwrap();
    wait_closed(&mut c, Duration::from_secs(10));
    assert!(is_open(&a) && is_open(&b), "the first two still wait");

    // A place comes back when a pending connection goes (each pending connection is one
    // handler on the I/O threads).
    drop(a);
    wait_until(Duration::from_secs(10), || loads(&e) == base + 1);
    let d = TcpStream::connect(addr).unwrap();
    wait_until(Duration::from_secs(10), || loads(&e) == base + 2);
    assert!(is_open(&d) && is_open(&b));
}
