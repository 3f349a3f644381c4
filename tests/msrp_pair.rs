//! The sender and receiver state machines against real Blink (python3-msrplib) traffic and
//! against each other, in memory, over a virtual clock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use msrpcast::msrp::ids::IdGen;
use msrpcast::msrp::parser::{parse, FrameDecoder, Limits, Parsed};
use msrpcast::msrp::receiver::{Receiver, ReceiverConfig, ReceiverEvent};
use msrpcast::msrp::sender::{Sender, SenderConfig, SenderEvent, SenderState};
use msrpcast::msrp::writer::{body_contains_end_line, write_message};
use msrpcast::msrp::{Kind, Message, Method, Uri};
use sha1::{Digest, Sha1};

const BLINK_SHA1: &str = "11b0ba16f55851bed4db5073c86b7d4c372dcb6e";
const BLINK_TOTAL: u64 = 150000;

fn vector(name: &str) -> Bytes {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/msrplib")
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Bytes::from(data)
}

fn frames(stream: &Bytes) -> Vec<Message> {
    let mut out = Vec::new();
    let mut rest = stream.clone();
    while !rest.is_empty() {
        match parse(&rest, &Limits::default()) {
            Ok(Parsed::Complete(m, n)) => {
                out.push(m);
                rest = rest.slice(n..);
            }
            other => panic!("frame {} did not parse: {other:?}", out.len()),
        }
    }
    out
}

fn uri(s: &str) -> Uri {
    Uri::parse_slice(s.as_bytes()).expect("uri")
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes data events at their offsets; returns the bytes and completed messages.
#[derive(Default)]
struct Sink {
    files: HashMap<Bytes, Vec<u8>>,
    complete: Vec<(Bytes, u64)>,
    aborted: Vec<Bytes>,
    failed: Vec<(Bytes, u16)>,
}

impl Sink {
    fn drain(&mut self, r: &mut Receiver) {
        while let Some(e) = r.poll_event() {
            match e {
                ReceiverEvent::Data {
                    message_id,
                    offset,
                    bytes,
                } => {
                    let f = self.files.entry(message_id).or_default();
                    let end = offset as usize + bytes.len();
                    if f.len() < end {
                        f.resize(end, 0);
                    }
                    f[offset as usize..end].copy_from_slice(&bytes);
                }
                ReceiverEvent::MessageComplete {
                    message_id, total, ..
                } => self.complete.push((message_id, total)),
                ReceiverEvent::MessageAborted { message_id, .. } => self.aborted.push(message_id),
                ReceiverEvent::MessageFailed {
                    message_id, code, ..
                } => self.failed.push((message_id, code)),
                ReceiverEvent::Report { .. } => {}
            }
        }
    }
}

fn blink_receiver_reassembles(name: &str) {
    let sent = frames(&vector(name));
    let mut r = Receiver::new(
        uri("msrp://127.0.0.1:27712/rxsess;tcp"),
        ReceiverConfig::default(),
    );
    let mut sink = Sink::default();
    let mut replies = Vec::new();
    for f in &sent {
        r.handle_frame(f);
        sink.drain(&mut r);
        replies.extend(std::iter::from_fn(|| r.poll_reply()));
    }
    // One 200 per SEND (bind included), in order, then one success REPORT for the whole file.
    let sends: Vec<&Message> = sent.iter().collect();
    let responses: Vec<&Message> = replies
        .iter()
        .filter(|m| m.response_code().is_some())
        .collect();
    assert_eq!(responses.len(), sends.len());
    for (s, resp) in sends.iter().zip(&responses) {
        assert_eq!(resp.transaction_id, s.transaction_id);
        assert_eq!(resp.response_code(), Some(200));
        assert_eq!(resp.to_path, vec![s.from_path[0].clone()]);
    }
    let reports: Vec<&Message> = replies
        .iter()
        .filter(|m| m.method() == Some(&Method::Report))
        .collect();
    assert_eq!(reports.len(), 1);
    let data_mid = sends[1].message_id().unwrap().clone();
    assert_eq!(reports[0].message_id(), Some(&data_mid));
    assert_eq!(reports[0].status().unwrap().code, 200);
    let br = reports[0].byte_range().unwrap();
    assert_eq!(
        (br.start, br.end, br.total),
        (1, Some(BLINK_TOTAL), Some(BLINK_TOTAL))
    );
    // Every reply serializes and re-parses (what the CLI receiver writes back).
    for m in &replies {
        let mut out = BytesMut::new();
        write_message(m, &mut out);
        assert_eq!(frames(&out.freeze()).len(), 1);
    }
    assert_eq!(sink.complete, vec![(data_mid.clone(), BLINK_TOTAL)]);
    assert!(sink.failed.is_empty() && sink.aborted.is_empty());
    let file = &sink.files[&data_mid];
    assert_eq!(file.len() as u64, BLINK_TOTAL);
    assert_eq!(hex(&Sha1::digest(file)), BLINK_SHA1);
}

#[test]
fn receiver_reassembles_blink_stream_report_per_message() {
    blink_receiver_reassembles("msrplib-64k-report-per-message.sender-to-receiver.msrp");
}

#[test]
fn receiver_reassembles_blink_stream_report_per_chunk() {
    blink_receiver_reassembles("msrplib-64k-report-per-chunk.sender-to-receiver.msrp");
}

/// Our sender, configured like Blink's (64 KiB chunks, bind first), receives what Blink's
/// receiver wrote back, with its transaction and message ids mapped onto ours in order.
fn sender_completes_with_blink_replies(name: &str, window: u64) {
    let t0 = Instant::now();
    let mut ids = IdGen::from_seed(0x1d5);
    let mut s = Sender::new(
        SenderConfig {
            chunk_bytes: 65536,
            window_bytes: window,
            ..SenderConfig::default()
        },
        &[uri("msrp://127.0.0.1:27712/rxsess;tcp")],
        &[uri("msrp://127.0.0.1:2855/2cacf05ca48fa0be0b7d;tcp")],
        Bytes::from_static(b"application/octet-stream"),
        &mut ids,
        t0,
    );
    s.handle_data_available(BLINK_TOTAL, true);
    let replies = frames(&vector(name));
    let mut tids: Vec<Bytes> = Vec::new();
    let mut next_response = 0;
    let mut now = t0;
    for reply in replies {
        // Write whatever the sender allows before the peer answers.
        while let Some(t) = s.poll_transmit(now) {
            tids.push(t.tid);
        }
        let mut m = reply.clone();
        match &m.kind {
            Kind::Response { .. } => {
                m.transaction_id = tids[next_response].clone();
                next_response += 1;
            }
            Kind::Request(_) => {
                for h in &mut m.headers {
                    if let msrpcast::msrp::Header::MessageId(v) = h {
                        *v = s.message_id().clone();
                    }
                }
            }
        }
        now += Duration::from_millis(3);
        assert!(s.handle_frame(&m, now), "frame not claimed: {reply:?}");
    }
    assert_eq!(tids.len(), 4, "bind and three 64 KiB chunks");
    assert_eq!(s.state(), SenderState::Completed);
    assert_eq!(s.acked(), BLINK_TOTAL);
    let ev: Vec<SenderEvent> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(ev.last(), Some(&SenderEvent::Completed));
}

#[test]
fn sender_completes_with_blink_report_per_message() {
    let name = "msrplib-64k-report-per-message.receiver-to-sender.msrp";
    sender_completes_with_blink_replies(name, 1 << 20);
    sender_completes_with_blink_replies(name, 65536);
}

#[test]
fn sender_completes_with_blink_report_per_chunk() {
    let name = "msrplib-64k-report-per-chunk.receiver-to-sender.msrp";
    sender_completes_with_blink_replies(name, 1 << 20);
    sender_completes_with_blink_replies(name, 65536);
}

/// xorshift64*: deterministic test randomness without a crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(n);
    v
}

struct PairOutcome {
    received: Vec<u8>,
    virtual_time: Duration,
    max_in_flight: u64,
    frames: usize,
}

/// Variations of the wire.
#[derive(Default, Clone, Copy)]
struct PairOpts {
    /// Send every response twice (Kamailio's relay with its README config does).
    duplicate_responses: bool,
    /// Window of exactly one chunk (stop-and-wait, as jmsrp needs).
    stop_and_wait: bool,
}

/// Wires a sender to a receiver through two in-memory byte pipes cut into random pieces. The
/// file appears in the spool in random increments (total unknown until the end). Chunk size and
/// window are random.
fn run_pair(seed: u64, size: usize, opts: PairOpts) -> PairOutcome {
    let mut rng = Rng::new(seed);
    let data = random_bytes(&mut rng, size);
    let chunk = rng.range(512, 16 * 1024) as usize;
    let window = if opts.stop_and_wait {
        chunk as u64
    } else {
        rng.range(chunk as u64, 32 * chunk as u64)
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut ids = IdGen::from_seed(seed);
    let rx_uri = uri("msrp://127.0.0.1:7777/rxpair;tcp");
    let tx_uri = uri("msrp://127.0.0.1:8888/txpair;tcp");
    let mut s = Sender::new(
        SenderConfig {
            chunk_bytes: chunk,
            window_bytes: window,
            ..SenderConfig::default()
        },
        std::slice::from_ref(&rx_uri),
        std::slice::from_ref(&tx_uri),
        Bytes::from_static(b"application/octet-stream"),
        &mut ids,
        now,
    );
    let mut r = Receiver::new(rx_uri, ReceiverConfig::default());
    let mut sink = Sink::default();
    let mut to_rx = FrameDecoder::new(Limits::default());
    let mut to_tx = FrameDecoder::new(Limits::default());
    let mut wire_tx: Vec<u8> = Vec::new(); // sender → receiver, not yet delivered
    let mut wire_rx: Vec<u8> = Vec::new(); // receiver → sender
    let mut spooled = 0usize;
    let mut max_in_flight = 0;
    let mut nframes = 0;
    for _ in 0..10_000_000 {
        // The spool grows.
        if spooled < size {
            spooled = (spooled + rng.range(1, 3 * chunk as u64) as usize).min(size);
            s.handle_data_available(spooled as u64, spooled == size);
        }
        // The sender writes what it may.
        while let Some(mut t) = s.poll_transmit(now) {
            let body = &data[t.body.start as usize..t.body.end as usize];
            if body_contains_end_line(body, &t.tid) {
                s.retid(&mut t);
            }
            wire_tx.extend_from_slice(&t.head);
            wire_tx.extend_from_slice(body);
            wire_tx.extend_from_slice(&t.end_line);
            nframes += 1;
        }
        max_in_flight = max_in_flight.max(s.in_flight());
        // The window grows from `window` while answers come at once (up to the default cap).
        assert!(s.in_flight() <= s.window().max(chunk as u64));
        assert!(s.window() <= window.max(SenderConfig::default().max_window_bytes));
        // Some bytes cross each way.
        let n = (rng.range(1, 4 * chunk as u64) as usize).min(wire_tx.len());
        to_rx.feed(&wire_tx[..n]);
        wire_tx.drain(..n);
        while let Some(m) = to_rx.next().expect("receiver parses") {
            r.handle_frame(&m);
        }
        sink.drain(&mut r);
        while let Some(m) = r.poll_reply() {
            let mut out = BytesMut::new();
            write_message(&m, &mut out);
            wire_rx.extend_from_slice(&out);
            if opts.duplicate_responses && m.response_code().is_some() {
                wire_rx.extend_from_slice(&out);
            }
        }
        let n = (rng.range(1, 2048) as usize).min(wire_rx.len());
        to_tx.feed(&wire_rx[..n]);
        wire_rx.drain(..n);
        while let Some(m) = to_tx.next().expect("sender parses") {
            assert!(s.handle_frame(&m, now), "unclaimed {m:?}");
        }
        now += Duration::from_millis(1);
        if let Some(d) = s.poll_timeout() {
            if d <= now {
                s.handle_timeout(now);
            }
        }
        match s.state() {
            SenderState::Completed => break,
            SenderState::Failed => panic!("failed: {:?}", s.poll_event()),
            _ => {}
        }
    }
    assert_eq!(s.state(), SenderState::Completed);
    assert_eq!(s.acked(), size as u64);
    assert_eq!(sink.complete.len(), 1, "one message");
    assert!(sink.failed.is_empty());
    let received = sink.files.remove(s.message_id()).unwrap_or_default();
    PairOutcome {
        received,
        virtual_time: now - t0,
        max_in_flight,
        frames: nframes,
    }
}

#[test]
fn pair_delivers_1mib_intact_with_random_chunking() {
    for seed in [1u64, 2, 3, 0xdead_beef] {
        let mut rng = Rng::new(seed);
        let expect = random_bytes(&mut rng, 1 << 20);
        let out = run_pair(seed, 1 << 20, PairOpts::default());
        assert!(out.received == expect, "seed {seed}: bytes differ");
        assert!(out.max_in_flight > 0);
        eprintln!(
            "seed {seed}: {} frames, {:?} virtual, max in flight {}",
            out.frames, out.virtual_time, out.max_in_flight
        );
    }
}

#[test]
fn pair_delivers_10mib_intact() {
    let seed = 0x5eed;
    let mut rng = Rng::new(seed);
    let expect = random_bytes(&mut rng, 10 << 20);
    let out = run_pair(seed, 10 << 20, PairOpts::default());
    assert_eq!(
        hex(&Sha1::digest(&out.received)),
        hex(&Sha1::digest(&expect))
    );
}

#[test]
fn pair_tolerates_duplicate_responses_and_stop_and_wait() {
    for (seed, opts) in [
        (
            11u64,
            PairOpts {
                duplicate_responses: true,
                ..PairOpts::default()
            },
        ),
        (
            12,
            PairOpts {
                stop_and_wait: true,
                ..PairOpts::default()
            },
        ),
        (
            13,
            PairOpts {
                duplicate_responses: true,
                stop_and_wait: true,
            },
        ),
    ] {
        let mut rng = Rng::new(seed);
        let expect = random_bytes(&mut rng, 256 << 10);
        let out = run_pair(seed, 256 << 10, opts);
        assert!(out.received == expect, "seed {seed}: bytes differ");
        if opts.stop_and_wait {
            assert!(out.max_in_flight <= 16 * 1024);
        }
    }
}
