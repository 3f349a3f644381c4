//! A participant sends a file to the room (issue 13, first part): `Engine::offer_in` answers
//! its RFC 5547 push offer, the participant's MSRP side (here a second engine, as `msrpcast
//! send` drives it) connects to the answer's path and sends; the other participants receive the
//! file while it arrives, the sender never gets it back. Refusals carry their SIP codes; a drop
//! mid-way fails the transfer and removes its partial spool file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use msrpcast::roster::{DeliveryState, Origin, TransferState};
use msrpcast::runtime::receive::{hex, ReceiveServer, Sink};
use msrpcast::runtime::{Engine, OfferInError};
use msrpcast::sdp::{parse_answer, Direction, Setup};
use sha1::{Digest, Sha1};

mod common;
use common::{data, upload, wait_done, wait_joined};

fn tmpdir(name: &str) -> std::path::PathBuf {
    common::proc::scratch(&format!("offerin-{name}"))
}

fn engine(dir: &std::path::Path, sets: &[(&str, &str)]) -> Engine {
    common::engine_in(dir, sets)
}

fn receiver() -> ReceiveServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    ReceiveServer::start(addr, "rx", Sink::Discard, true, None, 1).unwrap()
}

/// A push offer as a phone sends it (Blink's shape).
fn push_offer(size: u64, name: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message 9 TCP/MSRP *\r\na=sendonly\r\na=accept-types:*\r\n\
         a=path:msrp://127.0.0.1:9/alicesession;tcp\r\na=setup:actpass\r\n\
         a=file-selector:name:\"{name}\" type:application/octet-stream size:{size}\r\n\
         a=file-transfer-id:ft1\r\n"
    )
}

const ALICE: &str = "sip:alice@127.0.0.1:5999";

/// A room of three: two direct receivers and alice, a SIP participant (she would get an
/// INVITE signal for any file offered to her).
fn room(e: &Engine) -> (ReceiveServer, ReceiveServer) {
    let (r1, r2) = (receiver(), receiver());
    e.join_direct("c", "p1", &r1.uri.to_string()).unwrap();
    e.join_direct("c", "p2", &r2.uri.to_string()).unwrap();
    e.join("c", "alice-call", ALICE, Some("Alice")).unwrap();
    wait_joined(e, "c", 3);
    (r1, r2)
}

fn spool_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("spool"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".spool"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_participant_sends_32mib_to_the_others_and_not_to_itself() {
    let dir = tmpdir("room");
    let e = engine(&dir, &[]);
    let (r1, r2) = room(&e);
    let size: u64 = 32 << 20;
    let body = data(size as usize, 13);
    let want = hex(&Sha1::digest(&body));

    // Alice is named by the contact of her conference call, as Kamailio's cfg does.
    let ans = e
        .offer_in(
            "c",
            ALICE,
            "push-dialog-1",
            &push_offer(size, "big file.bin"),
        )
        .expect("offer accepted");
    let a = parse_answer(&ans.sdp).unwrap();
    assert_eq!(a.direction, Direction::RecvOnly, "{}", ans.sdp);
    assert_eq!(a.setup, Setup::Passive);
    assert!(!a.tls);
    assert_eq!(a.path.len(), 1);
    assert_eq!(a.path[0].effective_port(), e.msrp_addr().port());
    assert_eq!(a.file_selector.as_ref().unwrap().size, Some(size));
    assert_eq!(
        a.file_selector.as_ref().unwrap().name.as_deref(),
        Some("big file.bin")
    );
    assert!(ans.sdp.contains("a=accept-types:*\r\n"), "{}", ans.sdp);
    let t = ans.transfer;
    let tr = e.roster().transfer(t).unwrap();
    assert_eq!(tr.origin, Some(Origin::Participant("alice-call".into())));
    assert_eq!(tr.name, "big file.bin");

    // Alice's MSRP side: an engine of her own connects to the answer's path and sends, as
    // `msrpcast send --to <path>` does.
    let alice_dir = tmpdir("alice");
    let alice = engine(&alice_dir, &[]);
    alice
        .join_direct("cli", "room", &a.path[0].to_string())
        .unwrap();
    wait_joined(&alice, "cli", 1);
    let sent = upload(&alice, "cli", &body);
    let states = wait_done(&alice, sent, 1, Duration::from_secs(120), String::new);
    assert_eq!(
        states[0].1,
        DeliveryState::Done,
        "alice's side: the room's success REPORT covers the file"
    );

    let states = wait_done(&e, t, 2, Duration::from_secs(120), String::new);
    let mut who: Vec<&str> = states.iter().map(|(p, _)| p.as_str()).collect();
    who.sort();
    assert_eq!(
        who,
        ["p1", "p2"],
        "the sender is never offered its own file"
    );
    for (p, s) in &states {
        assert_eq!(*s, DeliveryState::Done, "{p}");
    }
    for r in [&r1, &r2] {
        let got = r.next(Duration::from_secs(10)).expect("received");
        assert_eq!(got.failure, None);
        assert_eq!(got.bytes, size);
        assert_eq!(got.sha1.as_deref(), Some(want.as_str()));
    }
    let tr = e.roster().transfer(t).unwrap();
    match tr.state {
        TransferState::Complete { sha1 } => assert_eq!(hex(&sha1), want),
        other => panic!("{other:?}"),
    }
    let json = e.roster().to_json();
    assert!(
        json.contains(r#""via":"participant","sender":"alice-call""#),
        "{json}"
    );
    // No INVITE for alice (nor for anybody: p1 and p2 are direct).
    assert_eq!(e.next_signal(), None);
    // The participant ends its dialog; the complete file stays.
    e.offer_in_ended("push-dialog-1");
    std::thread::sleep(Duration::from_millis(100));
    assert!(matches!(
        e.roster().transfer(t).unwrap().state,
        TransferState::Complete { .. }
    ));
    alice.stop();
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&alice_dir);
}

#[test]
fn refusals_carry_their_sip_codes() {
    let dir = tmpdir("refusals");
    let e = engine(
        &dir,
        &[
            ("max_file_bytes", "1M"),
            ("offer_in_per_participant_per_min", "2"),
        ],
    );
    let _room = room(&e);
    let code = |r: Result<_, OfferInError>| r.map(|_| 200).unwrap_or_else(|e| e.sip_code());
    let ok = push_offer(1000, "a.txt");
    assert_eq!(code(e.offer_in("c", "mallory", "d0", &ok)), 403);
    assert_eq!(
        code(e.offer_in("c", "sip:mallory@127.0.0.1", "d0", &ok)),
        403
    );
    assert_eq!(code(e.offer_in("nope", ALICE, "d0", &ok)), 403);
    assert_eq!(code(e.offer_in("c", ALICE, "d0", "not sdp")), 488);
    let recv = ok.replace("a=sendonly", "a=recvonly");
    assert_eq!(code(e.offer_in("c", ALICE, "d0", &recv)), 488);
    let tls = ok.replace("TCP/MSRP", "TCP/TLS/MSRP");
    assert_eq!(
        code(e.offer_in("c", ALICE, "d0", &tls)),
        488,
        "msrp_tls is off"
    );
    assert_eq!(
        code(e.offer_in("c", ALICE, "d0", &push_offer(2 << 20, "big"))),
        413
    );
    // Two per minute: the third is refused, a repeated dialog too.
    let first = e.offer_in("c", "alice-call", "d1", &ok).unwrap();
    assert_eq!(code(e.offer_in("c", ALICE, "d1", &ok)), 400);
    assert_eq!(code(e.offer_in("c", ALICE, "d2", &ok)), 200);
    assert_eq!(code(e.offer_in("c", ALICE, "d3", &ok)), 486);
    assert!(e.roster().transfer(first.transfer).is_some());

    // BYE before connecting: the transfer fails with the reason, its spool file goes.
    assert!(e.offer_in_ended("d1"));
    assert!(!e.offer_in_ended("d1"));
    let t0 = Instant::now();
    loop {
        let st = e.roster().transfer(first.transfer).unwrap().state;
        if let TransferState::Aborted { reason } = &st {
            assert!(reason.contains("before connecting"), "{reason}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{st:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes one SEND chunk of the message `m1` to `s`.
fn send_chunk(s: &mut TcpStream, to: &str, tid: &str, start: u64, body: &[u8], total: u64) {
    let mut f = format!(
        "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: msrp://127.0.0.1:9/alicesession;tcp\r\n\
         Message-ID: m1\r\nSuccess-Report: yes\r\nByte-Range: {start}-{}/{total}\r\n\
         Content-Type: application/octet-stream\r\n\r\n",
        start + body.len() as u64 - 1
    )
    .into_bytes();
    f.extend_from_slice(body);
    f.extend_from_slice(format!("\r\n-------{tid}+\r\n").as_bytes());
    s.write_all(&f).unwrap();
}

/// The bind: an empty SEND first, as msrplib (Blink) and msrpcast do when they connect (a first
/// frame must fit in msrp_pending_max_bytes).
fn bind(s: &mut TcpStream, to: &str) {
    s.write_all(
        format!(
            "MSRP bind0001 SEND\r\nTo-Path: {to}\r\nFrom-Path: \
             msrp://127.0.0.1:9/alicesession;tcp\r\nMessage-ID: b1\r\n\
             Byte-Range: 1-0/0\r\n-------bind0001$\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
}

#[test]
fn a_drop_midway_fails_the_transfer_and_removes_the_partial_spool() {
    let dir = tmpdir("drop");
    let e = engine(&dir, &[]);
    let (r1, _r2) = room(&e);
    let total: u64 = 1 << 20;
    let ans = e
        .offer_in("c", "alice-call", "dlg", &push_offer(total, "part.bin"))
        .unwrap();
    let a = parse_answer(&ans.sdp).unwrap();
    let to = a.path[0].to_string();
    let mut s = TcpStream::connect(e.msrp_addr()).unwrap();
    bind(&mut s, &to);
    let chunk = data(100 * 1024, 5);
    send_chunk(&mut s, &to, "tid00001", 1, &chunk, total);
    send_chunk(&mut s, &to, "tid00002", 102_401, &chunk, total);
    // Both chunks are answered 200 before we hang up.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(3).filter(|w| w == b"200").count() < 3 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    // The other participants were already receiving while the file arrived.
    let t0 = Instant::now();
    loop {
        let tr = e.roster().transfer(ans.transfer).unwrap();
        if tr.size >= 204_800 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{tr:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(s);
    let t0 = Instant::now();
    let reason = loop {
        let st = e.roster().transfer(ans.transfer).unwrap().state;
        if let TransferState::Aborted { reason } = st {
            break reason;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{st:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        reason.contains("closed after 204800 of 1048576 bytes"),
        "{reason}"
    );
    let states = wait_done(&e, ans.transfer, 2, Duration::from_secs(30), String::new);
    for (p, st) in &states {
        assert!(matches!(st, DeliveryState::Failed { .. }), "{p}: {st:?}");
    }
    let got = r1.next(Duration::from_secs(10)).expect("p1's receiver");
    assert!(got.failure.is_some(), "{got:?}");
    let t0 = Instant::now();
    while !spool_files(&dir).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{:?}",
            spool_files(&dir)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bye_while_the_file_arrives_fails_the_transfer() {
    let dir = tmpdir("bye");
    let e = engine(&dir, &[]);
    let _room = room(&e);
    let total: u64 = 1 << 20;
    let ans = e
        .offer_in("c", ALICE, "bye-dialog", &push_offer(total, "bye.bin"))
        .unwrap();
    let to = parse_answer(&ans.sdp).unwrap().path[0].to_string();
    let mut s = TcpStream::connect(e.msrp_addr()).unwrap();
    bind(&mut s, &to);
    let chunk = data(64 * 1024, 9);
    send_chunk(&mut s, &to, "tid00001", 1, &chunk, total);
    let t0 = Instant::now();
    while e.roster().transfer(ans.transfer).unwrap().size < 65_536 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(e.offer_in_ended("bye-dialog"));
    let t0 = Instant::now();
    let reason = loop {
        if let TransferState::Aborted { reason } = e.roster().transfer(ans.transfer).unwrap().state
        {
            break reason;
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(reason.contains("BYE"), "{reason}");
    // The engine closed the participant's connection.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break true,
            Ok(_) => {}
        }
    };
    assert!(closed);
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
