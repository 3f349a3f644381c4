//! MSRP core benchmarks (`cargo bench --bench msrp`; `-- --quick` or MSRPCAST_BENCH_QUICK=1 for a
//! short smoke run). Prints `BENCH <name> <value> <unit>` lines:
//!
//! - `msrp_parse_send_10k`: parsing a stream of SEND chunks with 10240-byte random bodies, GB/s
//!   of input (every frame fully parsed: start line, headers, URIs, end-line search).
//! - `msrp_parse_small`: parsing a stream of 200 responses and REPORTs, messages/s.
//! - `msrp_write_send_10k`: producing chunk heads and end-lines around 10240-byte bodies with the
//!   fast path, including the check that the body does not hold the end-line; GB/s of the
//!   resulting stream (head + body + end-line), the body itself not copied.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use msrpcast::msrp::ids::IdGen;
use msrpcast::msrp::parser::{parse, Limits, Parsed};
use msrpcast::msrp::writer::{
    body_contains_end_line, render_path, write_end_line, write_report, write_response,
    write_send_head, Report, SendHead,
};
use msrpcast::msrp::{ByteRange, Continuation, FailureReport, Uri};

const BODY: usize = 10240;

/// Time this thread spent on a CPU, from Linux's /proc/thread-self/schedstat (ns). On a shared
/// machine it tells the code's own speed apart from waiting for the CPU.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    (ns > 0).then(|| Duration::from_nanos(ns))
}

/// Runs `f` (one batch) until `target` has passed; returns batches run, the wall time taken, and
/// the on-CPU time when known.
fn run(target: Duration, mut f: impl FnMut()) -> (u64, Duration, Option<Duration>) {
    f(); // warm-up
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        f();
        n += 1;
        let el = start.elapsed();
        if el >= target {
            let cpu = cpu0.and_then(|c0| Some(cpu_time()?.saturating_sub(c0)));
            return (n, el, cpu);
        }
    }
}

/// Prints the BENCH line (wall clock) and, on stderr, the same figure over on-CPU time.
fn report(name: &str, amount: f64, unit: &str, scale: f64, wall: Duration, cpu: Option<Duration>) {
    let prec = if unit == "msg/s" { 0 } else { 2 };
    println!(
        "BENCH {name} {:.prec$} {unit}",
        amount / wall.as_secs_f64() / scale
    );
    if let Some(c) = cpu.filter(|c| !c.is_zero()) {
        eprintln!(
            "# {name}: {:.prec$} {unit} per on-CPU second ({:.0}% of the wall time on a CPU)",
            amount / c.as_secs_f64() / scale,
            100.0 * c.as_secs_f64() / wall.as_secs_f64()
        );
    }
}

fn paths() -> (Bytes, Bytes) {
    let to = Uri::parse_slice(b"msrp://127.0.0.1:27712/rxsess4f7ef0e4660ba;tcp").expect("uri");
    let from = Uri::parse_slice(b"msrp://127.0.0.1:2855/43b7b647f7ef0e4660ba;tcp").expect("uri");
    (render_path(&[to]), render_path(&[from]))
}

fn random_body(ids: &mut IdGen) -> Vec<u8> {
    (0..BODY / 8)
        .flat_map(|_| ids.next_u64().to_le_bytes())
        .collect()
}

/// A stream of `n` SEND chunks of a 10240 * n byte message.
fn send_stream(n: usize, ids: &mut IdGen) -> Bytes {
    let (to, from) = paths();
    let mid = ids.message_id();
    let total = (BODY * n) as u64;
    let mut out = BytesMut::new();
    for i in 0..n {
        let tid = ids.transaction_id();
        let body = random_body(ids);
        let start = (i * BODY) as u64 + 1;
        write_send_head(
            &SendHead {
                tid: &tid,
                to_path: &to,
                from_path: &from,
                message_id: &mid,
                byte_range: ByteRange {
                    start,
                    end: None,
                    total: Some(total),
                },
                success_report: true,
                failure_report: FailureReport::Yes,
                content_type: Some(b"application/octet-stream"),
                content_disposition: None,
            },
            &mut out,
        );
        out.extend_from_slice(&body);
        let flag = if i + 1 == n {
            Continuation::End
        } else {
            Continuation::More
        };
        write_end_line(&tid, flag, &mut out);
    }
    out.freeze()
}

/// A stream of `n` pairs (200 response, success REPORT).
fn small_stream(n: usize, ids: &mut IdGen) -> Bytes {
    let (to, from) = paths();
    let mid = ids.message_id();
    let mut out = BytesMut::new();
    for i in 0..n as u64 {
        write_response(
            &ids.transaction_id(),
            200,
            Some(b"OK"),
            &to,
            &from,
            &mut out,
        );
        write_report(
            &Report {
                tid: &ids.transaction_id(),
                to_path: &to,
                from_path: &from,
                message_id: &mid,
                byte_range: ByteRange {
                    start: 1 + i * BODY as u64,
                    end: Some((i + 1) * BODY as u64),
                    total: Some(n as u64 * BODY as u64),
                },
                code: 200,
                comment: Some(b"OK"),
            },
            &mut out,
        );
    }
    out.freeze()
}

/// Parses every frame of `stream`; returns the frame count.
fn parse_all(stream: &Bytes, limits: &Limits) -> usize {
    let mut rest = stream.clone();
    let mut frames = 0;
    while !rest.is_empty() {
        match parse(black_box(&rest), limits) {
            Ok(Parsed::Complete(m, n)) => {
                black_box(&m);
                frames += 1;
                rest = rest.slice(n..);
            }
            other => panic!("benchmark stream did not parse: {other:?}"),
        }
    }
    frames
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("MSRPCAST_BENCH_QUICK").is_ok_and(|v| v == "1");
    let target = if quick {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(1500)
    };
    // MSRPCAST_BENCH_ONLY=<name> runs one benchmark (for profiling).
    let only = std::env::var("MSRPCAST_BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut ids = IdGen::from_seed(0x5eed);
    let limits = Limits::default();

    // Parse: 64 chunks (about 670 kB, cache-resident like a socket buffer being drained).
    if wanted("msrp_parse_send_10k") {
        let sends = send_stream(64, &mut ids);
        assert_eq!(parse_all(&sends, &limits), 64);
        let (n, el, cpu) = run(target, || {
            black_box(parse_all(&sends, &limits));
        });
        let bytes = n as f64 * sends.len() as f64;
        report("msrp_parse_send_10k", bytes, "GB/s", 1e9, el, cpu);
    }

    if wanted("msrp_parse_small") {
        let small = small_stream(500, &mut ids);
        assert_eq!(parse_all(&small, &limits), 1000);
        let (n, el, cpu) = run(target, || {
            black_box(parse_all(&small, &limits));
        });
        report("msrp_parse_small", n as f64 * 1000.0, "msg/s", 1.0, el, cpu);
    }
    if !wanted("msrp_write_send_10k") {
        return;
    }

    // Write: heads and end-lines around 64 distinct bodies, as a sender would produce them.
    let (to, from) = paths();
    let mid = ids.message_id();
    let bodies: Vec<Vec<u8>> = (0..64).map(|_| random_body(&mut ids)).collect();
    let tids: Vec<[u8; 16]> = (0..64).map(|_| ids.transaction_id()).collect();
    let total = (BODY * bodies.len()) as u64;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut stream_bytes = 0u64;
    let (n, el, cpu) = run(target, || {
        stream_bytes = 0;
        for (i, body) in bodies.iter().enumerate() {
            let tid = &tids[i];
            if body_contains_end_line(black_box(body), tid) {
                panic!("random body holds its end-line");
            }
            out.clear();
            write_send_head(
                &SendHead {
                    tid,
                    to_path: &to,
                    from_path: &from,
                    message_id: &mid,
                    byte_range: ByteRange {
                        start: (i * BODY) as u64 + 1,
                        end: None,
                        total: Some(total),
                    },
                    success_report: true,
                    failure_report: FailureReport::Yes,
                    content_type: Some(b"application/octet-stream"),
                    content_disposition: None,
                },
                &mut out,
            );
            let head_len = out.len();
            write_end_line(tid, Continuation::More, &mut out);
            black_box(&out);
            stream_bytes += (out.len() + body.len()) as u64;
            let _ = head_len;
        }
    });
    let bytes = n as f64 * stream_bytes as f64;
    report("msrp_write_send_10k", bytes, "GB/s", 1e9, el, cpu);
}
