//! Hostile MSRP participants against the engine's delivery connections (issue 14, finding 1),
//! on real sockets at 127.0.0.1: a participant that floods empty SENDs and never reads what we
//! answer must not make the engine queue without bound, and must not hold up another
//! participant's delivery on the same I/O thread. Findings 3 and 19 have unit tests next to
//! their code (`msrp::sender`, `msrp::chunker`, `runtime::receive`).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use msrpcast::config::Config;
use msrpcast::msrp::parser::{FrameDecoder, Limits};
use msrpcast::msrp::{writer, Continuation, Kind, Message, Method};
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::Engine;

mod common;
use common::{upload, wait_done, wait_joined};

/// Bytes the flooder may get accepted before the test calls the engine unbounded: the kernel's
/// buffers on both ends (loopback autotuning: up to 32 MiB received, 4 MiB sent here) plus
/// `msrp_max_owed_responses` responses; an engine that reads and queues everything takes this
/// in well under a second.
const FLOOD_CAP: u64 = 128 << 20;

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

/// Reads one frame from `s` (blocking, with a deadline).
fn read_frame(s: &mut TcpStream, dec: &mut FrameDecoder) -> Result<Message, String> {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(m) = dec.next().map_err(|e| format!("parse: {e:?}"))? {
            return Ok(m);
        }
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("engine closed".into());
        }
        dec.feed(&buf[..n]);
    }
}

/// What the flooder saw.
#[derive(Debug)]
struct Flood {
    /// Bytes of empty SENDs the engine's side accepted.
    accepted: u64,
    /// The writes blocked for good (back-pressure) before `FLOOD_CAP`.
    blocked: bool,
    /// Growth of this process's resident memory while flooding, KiB.
    rss_growth_kib: u64,
}

/// Accepts the engine's connection, reads its first frame (the bind SEND, for its path) and
/// then only writes: empty SENDs as fast as the engine takes them, never reading.
fn flooder(l: TcpListener, me: String) -> Result<(Flood, TcpStream), String> {
    let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
    let mut dec = FrameDecoder::new(Limits::default());
    let first = read_frame(&mut s, &mut dec)?;
    let engine_path = String::from_utf8_lossy(&writer::render_path(&first.from_path)).into_owned();
    let mut batch = Vec::new();
    for i in 0..512 {
        batch.extend_from_slice(
            format!(
                "MSRP fl{i:04} SEND\r\nTo-Path: {engine_path}\r\nFrom-Path: {me}\r\n\
                 Message-ID: k{i}\r\nByte-Range: 1-0/0\r\n-------fl{i:04}$\r\n"
            )
            .as_bytes(),
        );
    }
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    let rss0 = vm_rss_kib();
    let mut accepted = 0u64;
    let mut at = 0usize;
    let mut last_progress = Instant::now();
    let blocked = loop {
        if accepted >= FLOOD_CAP {
            break false;
        }
        match s.write(&batch[at..]) {
            Ok(n) => {
                accepted += n as u64;
                at = (at + n) % batch.len();
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Blocked for 2 s on end: the engine stopped reading.
                if last_progress.elapsed() > Duration::from_secs(2) {
                    break true;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("flood write after {accepted} bytes: {e}")),
        }
    };
    let rss_growth_kib = vm_rss_kib().saturating_sub(rss0);
    // The connection stays open (and unread) until the engine gives up on it.
    Ok((
        Flood {
            accepted,
            blocked,
            rss_growth_kib,
        },
        s,
    ))
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

/// A well-behaved participant: answers every SEND, sends the success REPORT after the last
/// chunk, then waits for the engine to close. Returns the body bytes received.
fn good_peer(l: TcpListener, me: String) -> Result<u64, String> {
    let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
    let mut dec = FrameDecoder::new(Limits {
        max_body_bytes: 1 << 20,
        ..Limits::default()
    });
    let mut got = 0u64;
    loop {
        let m = read_frame(&mut s, &mut dec)?;
        if m.kind != Kind::Request(Method::Send) {
            continue;
        }
        s.write_all(&response(&m, &me)).map_err(|e| e.to_string())?;
        if m.body.is_empty() {
            continue;
        }
        got += m.body.len() as u64;
        if m.continuation != Continuation::End {
            continue;
        }
        let total = m.byte_range().and_then(|b| b.total).unwrap_or(got);
        let path = writer::render_path(&m.from_path);
        let mid = String::from_utf8_lossy(m.message_id().expect("Message-ID")).into_owned();
        let rep = format!(
            "MSRP rep1 REPORT\r\nTo-Path: {}\r\nFrom-Path: {me}\r\nMessage-ID: {mid}\r\n\
             Byte-Range: 1-{total}/{total}\r\nStatus: 000 200 OK\r\n-------rep1$\r\n",
            String::from_utf8_lossy(&path)
        );
        s.write_all(rep.as_bytes()).map_err(|e| e.to_string())?;
        let mut rest = [0u8; 4096];
        while matches!(s.read(&mut rest), Ok(n) if n > 0) {}
        return Ok(got);
    }
}

fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, format!("msrp://127.0.0.1:{port}/peer{port};tcp"))
}

#[test]
fn flooding_participant_is_pushed_back_and_does_not_hold_up_others() {
    let dir = std::env::temp_dir().join(format!("msrpcast-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    cfg.set("spool_dir", dir.to_str().unwrap()).unwrap();
    cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
    cfg.set("log_level", "error").unwrap();
    // One I/O thread: both deliveries share it.
    cfg.set("io_threads", "1").unwrap();
    cfg.set("transaction_timeout_ms", "10000").unwrap();
    let e = Engine::start(cfg).unwrap();

    let (lf, flood_uri) = listener();
    let (lg, good_uri) = listener();
    let flood = std::thread::spawn({
        let me = flood_uri.clone();
        move || flooder(lf, me)
    });
    let good = std::thread::spawn({
        let me = good_uri.clone();
        move || good_peer(lg, me)
    });
    e.join_direct("c", "flooder", &flood_uri).unwrap();
    e.join_direct("c", "good", &good_uri).unwrap();
    wait_joined(&e, "c", 2);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + 1) as u8).collect();
    let t = upload(&e, "c", &body);

    let (f, _held) = flood.join().expect("flooder thread").expect("flooder");
    eprintln!(
        "flood: {} bytes accepted, blocked {}, RSS +{} KiB",
        f.accepted, f.blocked, f.rss_growth_kib
    );
    assert!(
        f.blocked && f.accepted < FLOOD_CAP,
        "the engine kept reading a participant that never reads: {f:?}"
    );

    let states = wait_done(&e, t, 2, Duration::from_secs(40), String::new);
    let got = good.join().expect("good peer thread");
    assert_eq!(got, Ok(body.len() as u64));
    eprintln!("{states:?}");
    for (who, st) in &states {
        match who.as_str() {
            "good" => assert_eq!(*st, DeliveryState::Done, "the good participant"),
            _ => assert!(
                matches!(st, DeliveryState::Failed { reason, .. } if !reason.is_empty()),
                "the flooder's delivery: {st:?}"
            ),
        }
    }
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
}

/// One raw MSRP client of `msrpcast receive`: sends `frames` and returns the status codes of
/// the responses, in order (REPORTs are skipped).
fn send_frames(addr: std::net::SocketAddr, frames: &[String]) -> Vec<u16> {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut dec = FrameDecoder::new(Limits::default());
    let mut codes = Vec::new();
    for f in frames {
        let mut check = FrameDecoder::new(Limits::default());
        check.feed(f.as_bytes());
        check.next().unwrap_or_else(|e| panic!("{e:?}: {f}"));
        s.write_all(f.as_bytes()).unwrap();
        loop {
            let m = read_frame(&mut s, &mut dec).expect("a response");
            if let Kind::Response { code, .. } = m.kind {
                codes.push(code);
                break;
            }
        }
    }
    codes
}

fn send_chunk(to: &str, from: &str, mid: &str, range: &str, body: &str) -> String {
    send_part(to, from, mid, range, body, '$')
}

/// A chunk with continuation `flag` (`+` more follows, `$` last).
fn send_part(to: &str, from: &str, mid: &str, range: &str, body: &str, flag: char) -> String {
    format!(
        "MSRP tx{mid}x{} SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: {mid}\r\n\
         Byte-Range: {range}\r\nContent-Type: text/plain\r\n\r\n{body}\r\n-------tx{mid}x{}{flag}\r\n",
        body.len(),
        body.len()
    )
}

/// Issue 14 #19: a stranger reusing a Message-ID does not overwrite the earlier file, a
/// finished message is not reopened on its connection, and a Byte-Range far past the declared
/// total or the size limit is refused with 4xx before any part file grows.
#[test]
fn receive_keeps_files_apart_and_refuses_huge_ranges() {
    use msrpcast::runtime::receive::{ReceiveServer, Sink};
    let dir = std::env::temp_dir().join(format!("msrpcast-recv19-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let srv = ReceiveServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "rx19",
        Sink::Dir(dir.clone()),
        false,
        None,
        1,
    )
    .unwrap();
    let to = srv.to_path_text();
    let a = "msrp://127.0.0.1:1111/alice;tcp";
    let b = "msrp://127.0.0.1:2222/stranger;tcp";

    // The first sender's message, complete.
    assert_eq!(
        send_frames(srv.addr, &[send_chunk(&to, a, "m1", "1-5/5", "first")]),
        vec![200]
    );
    let first = srv.next(Duration::from_secs(5)).expect("first message");
    assert!(first.failure.is_none(), "{first:?}");
    // The same Message-ID again on that connection: refused, the message is over. And a
    // stranger's message with the same id on its own connection: kept apart.
    let mut c = TcpStream::connect(srv.addr).unwrap();
    let mut dec = FrameDecoder::new(Limits::default());
    let mut codes = Vec::new();
    for f in [
        send_chunk(&to, a, "m2", "1-2/2", "ok"),
        send_chunk(&to, a, "m2", "1-2/2", "XX"),
    ] {
        c.write_all(f.as_bytes()).unwrap();
        loop {
            if let Kind::Response { code, .. } = read_frame(&mut c, &mut dec).unwrap().kind {
                codes.push(code);
                break;
            }
        }
    }
    assert_eq!(codes, vec![200, 403], "a finished message was reopened");
    let _ = srv.next(Duration::from_secs(5)).expect("m2");
    assert_eq!(
        send_frames(srv.addr, &[send_chunk(&to, b, "m1", "1-5/5", "EVIL!")]),
        vec![200]
    );
    let second = srv
        .next(Duration::from_secs(5))
        .expect("stranger's message");
    assert_eq!(
        std::fs::read(dir.join("m1")).unwrap(),
        b"first",
        "the earlier file was overwritten"
    );
    assert_ne!(second.path.as_deref(), Some(dir.join("m1").as_path()));
    assert_eq!(std::fs::read(dir.join("m2")).unwrap(), b"ok");

    // A Byte-Range at 2^40 with an unknown total (more to follow: the part file stays), then
    // one past its declared total.
    let far = format!("{}-{}/*", (1u64 << 40) + 1, (1u64 << 40) + 1);
    let codes = send_frames(
        srv.addr,
        &[
            send_part(&to, b, "m3", &far, "x", '+'),
            send_chunk(&to, b, "m4", "9-*/10", "xyz"),
        ],
    );
    assert!(
        codes.iter().all(|c| (400..500).contains(c)),
        "huge ranges accepted: {codes:?}"
    );
    let biggest = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    assert!(
        biggest < 1 << 20,
        "a file of {biggest} bytes (apparent) in the receive folder"
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(dir);
}
