//! Plain-TCP deliveries on direct paths (issue 11): chunks of `direct_chunk_bytes` (64 KiB by
//! default), bodies sent from the spool file with `sendfile` where the dash-run index shows
//! they cannot hold an end-line, read and written from memory otherwise (bodies with runs of
//! dashes, files restored from disk). Every file must arrive intact (SHA-1) at a real receiver;
//! the engine's completion log line says how many body bytes went out with `sendfile`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use msrpcast::config::Config;
use msrpcast::msrp::{Message, Uri};
use msrpcast::roster::{DeliveryState, TransferState};
use msrpcast::runtime::log::{Level, Logger};
use msrpcast::runtime::receive::{FrameVerdict, Hooks, ReceiveHooks, ReceiveServer, Sink};
use msrpcast::runtime::Engine;
use sha1::{Digest, Sha1};

mod common;
use common::{data, upload, wait_joined};

const LIMIT: Duration = Duration::from_secs(120);

/// What the receiver saw of the frames: the largest body and the number of data frames.
#[derive(Default)]
struct Seen {
    max_body: AtomicUsize,
    frames: AtomicU64,
}

/// Receiver hooks that record frame sizes and, with `rate`, read at most that many bytes per
/// second (a slow reader: the engine's writes and sendfiles come back short or would block).
struct Tap {
    seen: Arc<Seen>,
    rate: Option<u64>,
    budget: u64,
    last: Instant,
}

impl ReceiveHooks for Tap {
    fn read_allowance(&mut self, now: Instant) -> u64 {
        let Some(r) = self.rate else {
            return u64::MAX;
        };
        let add = (r as f64 * now.duration_since(self.last).as_secs_f64()) as u64;
        self.last = now;
        self.budget = self.budget.saturating_add(add).min(r);
        self.budget
    }

    fn on_read(&mut self, n: usize) {
        if self.rate.is_some() {
            self.budget = self.budget.saturating_sub(n as u64);
        }
    }

    fn on_frame(&mut self, f: &Message, _: &Uri, _: &mut BytesMut) -> FrameVerdict {
        if !f.body.is_empty() {
            self.seen
                .max_body
                .fetch_max(f.body.len(), Ordering::Relaxed);
            self.seen.frames.fetch_add(1, Ordering::Relaxed);
        }
        FrameVerdict::Handle
    }
}

fn receiver(rate: Option<u64>) -> (ReceiveServer, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let hooks: Hooks = Arc::new(move || {
        Box::new(Tap {
            seen: s.clone(),
            rate,
            budget: 0,
            last: Instant::now(),
        }) as Box<dyn ReceiveHooks>
    });
    let addr = "127.0.0.1:0".parse().unwrap();
    let rx = ReceiveServer::start(addr, "rx", Sink::Discard, true, Some(hooks), 1).unwrap();
    (rx, seen)
}

fn tmpdir(name: &str) -> PathBuf {
    common::proc::scratch(&format!("zerocopy-{name}"))
}

fn engine(spool: &Path, sets: &[(&str, &str)]) -> Engine {
    let mut cfg = Config::default();
    cfg.set("spool_dir", spool.to_str().unwrap()).unwrap();
    cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
    for (k, v) in sets {
        cfg.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    Engine::start_with_logger(cfg, Logger::queue(Level::Info, 100_000, None)).unwrap()
}

fn sha1_hex(b: &[u8]) -> String {
    Sha1::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// The body bytes sent with sendfile, from each completed delivery's log line, in order.
fn sendfile_bytes(e: &Engine) -> Vec<u64> {
    std::iter::from_fn(|| e.logger().pop())
        .filter_map(|r| {
            let rest = r.message.split(" bytes, MSRP window up to ").nth(1)?;
            let n = rest.split(", ").nth(1)?.split(' ').next()?;
            Some(n.parse().expect("a byte count"))
        })
        .collect()
}

/// Spools `body` whole, then delivers it to a fresh receiver joining late (so that every chunk
/// is full: none is cut at the end of what was spooled so far); returns what the receiver saw
/// and the bytes sent by sendfile.
fn deliver(e: &Engine, conf: &str, body: &[u8], rate: Option<u64>) -> (Arc<Seen>, u64) {
    let (rx, seen) = receiver(rate);
    // A participant that never answers, so that the conference exists for the upload.
    e.join(conf, "nobody", "sip:nobody@127.0.0.1:5999", None)
        .unwrap();
    wait_joined(e, conf, 1);
    let t = upload(e, conf, body);
    let t0 = Instant::now();
    while !matches!(
        e.roster().transfer(t).unwrap().state,
        TransferState::Complete { .. }
    ) {
        assert!(t0.elapsed() < LIMIT, "upload not complete");
        std::thread::sleep(Duration::from_millis(5));
    }
    e.join_direct(conf, "rx", &rx.uri.to_string()).unwrap();
    let t0 = Instant::now();
    let states = loop {
        let s = e.roster().transfer(t).unwrap().deliveries;
        if let Some(d) = s
            .iter()
            .find(|d| d.participant == "rx" && d.state.is_terminal())
        {
            break d.state.clone();
        }
        assert!(t0.elapsed() < LIMIT, "not delivered: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(states, DeliveryState::Done);
    let got = rx.next(LIMIT).expect("the receiver got nothing");
    assert_eq!(got.failure, None);
    assert_eq!(got.bytes, body.len() as u64);
    assert_eq!(got.sha1, Some(sha1_hex(body)), "the file arrived altered");
    let sent = sendfile_bytes(e);
    assert_eq!(sent.len(), 1, "one completion line: {sent:?}");
    (seen, sent[0])
}

/// Random bytes whose first `dashy` bytes are full of runs of 5–12 dashes followed by short
/// alphanumeric ids (end-line look-alikes), the rest without a run of seven dashes.
fn with_dashes(len: usize, dashy: usize) -> Vec<u8> {
    let mut v = data(len, 5);
    for b in v.iter_mut() {
        if *b == b'-' {
            *b = b'+';
        }
    }
    let mut at = 0;
    let mut k = 0usize;
    while at + 40 < dashy {
        let run = 5 + k % 8;
        v[at..at + run].fill(b'-');
        v[at + run..at + run + 8].copy_from_slice(b"a1B2c3D4");
        at += run + 8 + 300 + (k * 37) % 700;
        k += 1;
    }
    v
}

/// A direct path gets 64 KiB chunks, each body by sendfile: all of a random file; a file with
/// runs of dashes in its first MiB has those chunks read instead (and every byte arrives).
#[test]
fn direct_plain_delivery_sends_large_chunks_with_sendfile() {
    let dir = tmpdir("direct");
    let e = engine(&dir, &[]);
    let body = data((5 << 20) + 1234, 9);
    let (seen, sent) = deliver(&e, "c", &body, None);
    assert_eq!(seen.max_body.load(Ordering::Relaxed), 65_536);
    assert_eq!(sent, body.len() as u64, "not every body went by sendfile");

    let body = with_dashes(3 << 20, 1 << 20);
    let (seen, sent) = deliver(&e, "d", &body, None);
    assert_eq!(seen.max_body.load(Ordering::Relaxed), 65_536);
    // The 16 chunks of the dashed first MiB are read, the rest goes by sendfile.
    assert_eq!(sent, body.len() as u64 - (1 << 20), "sendfile sent {sent}");
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `direct_chunk_bytes` sets the size (here 1 MiB), and a slow reader with a window larger than
/// the socket buffers makes sendfile and the vectored writes come back short or would-block
/// (checked once with strace: EAGAIN and short counts): still intact.
#[test]
fn slow_reader_gets_large_chunks_intact() {
    let dir = tmpdir("slow");
    let sets = [("direct_chunk_bytes", "1MiB"), ("window_bytes", "10MiB")];
    let e = engine(&dir, &sets);
    let body = with_dashes((10 << 20) + 77, 100_000);
    let (seen, sent) = deliver(&e, "c", &body, Some(4 << 20));
    assert_eq!(seen.max_body.load(Ordering::Relaxed), 1 << 20);
    assert_eq!(seen.frames.load(Ordering::Relaxed), 11);
    assert_eq!(
        sent,
        body.len() as u64 - (1 << 20),
        "all but the dashed chunk"
    );
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file restored from disk has no dash-run index: its bodies are read and written from
/// memory (no sendfile), in direct-path chunks, and arrive intact.
#[test]
fn restored_file_falls_back_to_reads() {
    let dir = tmpdir("restored");
    let body = with_dashes((3 << 20) + 5, 1 << 20);
    {
        let e = engine(&dir, &[]);
        let (_, sent) = deliver(&e, "c", &body, None);
        assert!(sent > 0);
        let t0 = Instant::now();
        while !std::fs::read_dir(&dir).unwrap().any(|f| {
            f.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".record")
        }) {
            assert!(t0.elapsed() < LIMIT, "no record written");
            std::thread::sleep(Duration::from_millis(5));
        }
        e.stop();
    }
    let e = engine(&dir, &[]);
    let (rx, seen) = receiver(None);
    e.join_direct("c", "late", &rx.uri.to_string()).unwrap();
    let got = rx.next(LIMIT).expect("the late joiner received nothing");
    assert_eq!(got.failure, None);
    assert_eq!(got.sha1, Some(sha1_hex(&body)));
    let t0 = Instant::now();
    let sent = loop {
        let s = sendfile_bytes(&e);
        if let Some(&n) = s.first() {
            break n;
        }
        assert!(t0.elapsed() < LIMIT, "no completion line");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(sent, 0, "a restored file has no index: no sendfile");
    assert_eq!(seen.max_body.load(Ordering::Relaxed), 65_536);
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
