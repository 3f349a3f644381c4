//! How a delivery ends when the participant ends the connection itself, against raw TCP peers
//! written here that behave like real phones (RFC 4975 §5.4, §7.1.2, §7.1.3): a success REPORT
//! covering the message completes the delivery whatever the transport does after it (FIN, reset,
//! FIN in the same segment, the REPORT split over several segments); a close before that REPORT
//! fails it with a reason that says so.
//!
//! Each peer accepts the engine's connection, answers the bind SEND and every chunk with 200,
//! and once the last chunk is in does what the test asks.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use msrpcast::config::Config;
use msrpcast::msrp::parser::{FrameDecoder, Limits};
use msrpcast::msrp::{writer, Continuation, Kind, Message, Method};
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::Engine;

mod common;
use common::misbehave::Misbehave;
use common::{upload, wait_joined};

/// What the peer does once it has every byte of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The success REPORT in one write, then close (FIN) in a later call.
    ReportThenFin,
    /// The success REPORT, then a reset (SO_LINGER 0).
    ReportThenRst,
    /// The REPORT and the FIN in one segment (TCP_CORK held until the shutdown).
    ReportAndFinTogether,
    /// The REPORT in three pieces, each its own segment, then FIN.
    ReportSplit,
    /// FIN with no REPORT (every chunk got its 200).
    FinBeforeReport,
    /// A success REPORT per chunk (with each 200), then FIN right after the last.
    ReportPerChunkThenFin,
    /// FIN once this many body bytes are in and answered (a phone that drops mid-file).
    FinAfter(u64),
}

struct Peer {
    uri: String,
    join: std::thread::JoinHandle<Result<u64, String>>,
}

fn peer(end: End) -> Peer {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let uri = format!("msrp://127.0.0.1:{port}/phone;tcp");
    let me = uri.clone();
    let join = std::thread::spawn(move || run_peer(l, &me, end));
    Peer { uri, join }
}

fn response(req: &Message, me: &str) -> Vec<u8> {
    let to = writer::render_path(&req.from_path);
    let tid = String::from_utf8_lossy(&req.transaction_id).into_owned();
    format!(
        "MSRP {tid} 200 OK\r\nTo-Path: {}\r\nFrom-Path: {me}\r\n-------{tid}$\r\n",
        String::from_utf8_lossy(&to)
    )
    .into_bytes()
}

fn report(req: &Message, me: &str, n: u32, from: u64, to: u64, total: u64) -> Vec<u8> {
    let path = writer::render_path(&req.from_path);
    let mid = String::from_utf8_lossy(req.message_id().expect("Message-ID")).into_owned();
    let tid = format!("rep{n}");
    format!(
        "MSRP {tid} REPORT\r\nTo-Path: {}\r\nFrom-Path: {me}\r\nMessage-ID: {mid}\r\n\
         Byte-Range: {from}-{to}/{total}\r\nStatus: 000 200 OK\r\n-------{tid}$\r\n",
        String::from_utf8_lossy(&path)
    )
    .into_bytes()
}

/// Serves one connection; returns the body bytes received.
fn run_peer(l: TcpListener, me: &str, end: End) -> Result<u64, String> {
    let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut dec = FrameDecoder::new(Limits {
        max_body_bytes: 1 << 20,
        ..Limits::default()
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut reports = 0u32;
    loop {
        let n = s.read(&mut buf).map_err(|e| format!("peer read: {e}"))?;
        if n == 0 {
            return Err(format!("engine closed first after {got} bytes"));
        }
        dec.feed(&buf[..n]);
        while let Some(m) = dec.next().map_err(|e| format!("peer parse: {e:?}"))? {
            if m.kind != Kind::Request(Method::Send) {
                continue;
            }
            let mut out = response(&m, me);
            if m.body.is_empty() {
                s.write_all(&out).map_err(|e| e.to_string())?;
                continue;
            }
            let br = m.byte_range().expect("Byte-Range");
            got += m.body.len() as u64;
            let last = m.continuation == Continuation::End;
            let total = br.total.unwrap_or(got);
            if end == End::ReportPerChunkThenFin {
                reports += 1;
                let to = br.start - 1 + m.body.len() as u64;
                out.extend(report(&m, me, reports, br.start, to, total));
            }
            s.write_all(&out).map_err(|e| e.to_string())?;
            if matches!(end, End::FinAfter(limit) if got >= limit) {
                // FIN after the 200s, then read until the engine closes: a close with unread
                // chunks would be a reset, which may discard the 200s before the engine reads them.
                s.shutdown(std::net::Shutdown::Write)
                    .map_err(|e| e.to_string())?;
                while s.read(&mut buf).is_ok_and(|n| n > 0) {}
                return Ok(got);
            }
            if !last {
                continue;
            }
            let rep = report(&m, me, 0, 1, total, total);
            finish(s, end, &rep)?;
            return Ok(got);
        }
    }
}

fn finish(s: TcpStream, end: End, rep: &[u8]) -> Result<(), String> {
    let sock = socket2::Socket::from(s);
    let err = |e: std::io::Error| e.to_string();
    match end {
        End::ReportThenFin => {
            (&sock).write_all(rep).map_err(err)?;
            drop(sock);
        }
        End::ReportThenRst => {
            (&sock).write_all(rep).map_err(err)?;
            // A reset discards what the peer has not sent yet (its 200s and the REPORT can still
            // wait for the congestion window): as on a real phone, only a REPORT that left
            // counts, so reset once everything was sent and acknowledged.
            wait_all_acked(&sock)?;
            sock.set_linger(Some(Duration::ZERO)).map_err(err)?;
            drop(sock);
        }
        End::ReportAndFinTogether => {
            sock.set_tcp_nodelay(false).map_err(err)?;
            sock.set_tcp_cork(true).map_err(err)?;
            (&sock).write_all(rep).map_err(err)?;
            // The FIN joins the corked REPORT: one segment carries both.
            sock.shutdown(std::net::Shutdown::Write).map_err(err)?;
            drop(sock);
        }
        End::ReportSplit => {
            let a = rep.len() / 3;
            let b = 2 * rep.len() / 3;
            for part in [&rep[..a], &rep[a..b], &rep[b..]] {
                (&sock).write_all(part).map_err(err)?;
                // Only shapes the segments (each piece its own); the verdict does not depend on it.
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(sock);
        }
        End::FinBeforeReport | End::ReportPerChunkThenFin | End::FinAfter(_) => drop(sock),
    }
    Ok(())
}

/// Waits (deadline 10 s) until the kernel's send queue of `sock` is empty, i.e. every byte
/// written was acknowledged by the other end: its `tx_queue` in `/proc/net/tcp` is 0.
fn wait_all_acked(sock: &socket2::Socket) -> Result<(), String> {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v) => {
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(v.ip().octets()),
                v.port()
            )
        }
        std::net::SocketAddr::V6(_) => String::new(),
    };
    let local = sock.local_addr().ok().and_then(|a| a.as_socket()).map(hex);
    let remote = sock.peer_addr().ok().and_then(|a| a.as_socket()).map(hex);
    let (Some(local), Some(remote)) = (local, remote) else {
        return Err("peer socket has no addresses".into());
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").map_err(|e| e.to_string())?;
        let queued = table.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 4 && f[1] == local && f[2] == remote)
                .then(|| f[4].split(':').next().map(|q| u64::from_str_radix(q, 16)))
                .flatten()
        });
        match queued {
            Some(Ok(0)) => return Ok(()),
            Some(Ok(_)) => {}
            _ => return Err(format!("{local} -> {remote} not in /proc/net/tcp")),
        }
        if std::time::Instant::now() > deadline {
            return Err("the peer's REPORT was never acknowledged".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn engine(name: &str) -> (Engine, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("msrpcast-peers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    cfg.set("spool_dir", dir.to_str().unwrap()).unwrap();
    cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
    cfg.set("log_level", "error").unwrap();
    (Engine::start(cfg).unwrap(), dir)
}

fn deliver(end: End, size: usize) -> DeliveryState {
    let (e, dir) = engine(&format!("{end:?}-{size}"));
    let p = peer(end);
    e.join_direct("c", "phone", &p.uri).unwrap();
    wait_joined(&e, "c", 1);
    let body: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
    let t = upload(&e, "c", &body);
    let states = common::wait_done(&e, t, 1, Duration::from_secs(60), String::new);
    let got = p.join.join().expect("peer thread");
    assert_eq!(
        got,
        Ok(size as u64),
        "{end:?}: the peer did not get every byte"
    );
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    states.into_iter().next().expect("one delivery").1
}

fn assert_done(end: End) {
    for size in [1, 150_000, 3 << 20] {
        let s = deliver(end, size);
        assert_eq!(s, DeliveryState::Done, "{end:?} with {size} bytes");
    }
}

#[test]
fn report_then_fin_completes() {
    assert_done(End::ReportThenFin);
}

#[test]
fn report_then_reset_completes() {
    assert_done(End::ReportThenRst);
}

#[test]
fn report_and_fin_in_one_segment_completes() {
    assert_done(End::ReportAndFinTogether);
}

#[test]
fn report_split_across_reads_completes() {
    assert_done(End::ReportSplit);
}

#[test]
fn report_per_chunk_then_fin_completes() {
    assert_done(End::ReportPerChunkThenFin);
}

#[test]
fn fin_before_report_fails_and_says_so() {
    for size in [1, 150_000] {
        match deliver(End::FinBeforeReport, size) {
            DeliveryState::Failed { reason, .. } => assert!(
                reason.contains("closed by the participant before the success report"),
                "{size} bytes: {reason}"
            ),
            s => panic!("{size} bytes: expected a failure, got {s:?}"),
        }
    }
}

/// A participant that drops mid-file: the delivery fails, and its byte count is what the peer
/// answered 200 for when it left — not the last progress copy (taken every 200 ms tick).
#[test]
fn drop_mid_file_keeps_the_exact_confirmed_count() {
    let (e, dir) = engine("drop-mid-file");
    let p = peer(End::FinAfter(1 << 20));
    e.join_direct("c", "phone", &p.uri).unwrap();
    wait_joined(&e, "c", 1);
    let body: Vec<u8> = (0..8 << 20).map(|i: usize| (i * 7 + 3) as u8).collect();
    let t = upload(&e, "c", &body);
    let states = common::wait_done(&e, t, 1, Duration::from_secs(60), String::new);
    let answered = p.join.join().expect("peer thread").expect("peer");
    let (_, state) = states.into_iter().next().expect("one delivery");
    assert!(
        matches!(state, DeliveryState::Failed { .. }),
        "expected a failure, got {state:?}"
    );
    let tr = e.roster().transfer(t).expect("transfer");
    let snap = &tr.deliveries[0];
    assert_eq!(
        snap.confirmed_bytes, answered,
        "the roster's count is the peer's"
    );
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
}

/// The same through `msrpcast receive --misbehave` peers: each delivery completes and the peer
/// got the file intact.
fn deliver_to_receiver(behaviour: &str, size: usize) {
    use msrpcast::runtime::receive::{hex, ReceiveServer, Sink};
    use sha1::{Digest, Sha1};
    let (e, dir) = engine(&format!("rx-{behaviour}-{size}"));
    let rx = ReceiveServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "rx",
        Sink::Discard,
        true,
        Some(behaviour.parse::<Misbehave>().unwrap().hooks()),
        1,
    )
    .unwrap();
    e.join_direct("c", "p", &rx.uri.to_string()).unwrap();
    wait_joined(&e, "c", 1);
    let body: Vec<u8> = (0..size).map(|i| (i * 13 + 1) as u8).collect();
    let t = upload(&e, "c", &body);
    let states = common::wait_done(&e, t, 1, Duration::from_secs(60), String::new);
    assert_eq!(
        states[0].1,
        DeliveryState::Done,
        "{behaviour}, {size} bytes"
    );
    let got = rx.next(Duration::from_secs(10)).expect("receiver outcome");
    assert_eq!(got.failure, None, "{behaviour}");
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(&body))), "{behaviour}");
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn misbehaving_receivers_confirm() {
    for b in [
        "close-after-report",
        "report-per-chunk",
        "nagle",
        "report-per-chunk,nagle,close-after-report",
    ] {
        for size in [1, 150_000, 2 << 20] {
            deliver_to_receiver(b, size);
        }
    }
}

#[test]
fn unknown_behaviour_is_refused_with_the_list() {
    let e = "report-per-chunk,bogus".parse::<Misbehave>().unwrap_err();
    assert!(
        e.contains("close-after-report") && e.contains("nagle"),
        "{e}"
    );
}
