//! Engine benchmarks (`make bench`): fan-out throughput to receivers that parse every chunk, the
//! engine's peak RSS, and first-chunk latency. Prints `BENCH <name> <value> <unit>` lines;
//! ratios use `MSRPCAST_BASELINE_GBPS` (the loopback baseline measured in the same run).
//!
//! The receivers run in a separate process (`msrpcast receive --discard`), so the RSS figure is
//! the engine's own. The file is spooled first (one placeholder participant), then the N
//! receivers join and get it as late joiners: the figure is delivery throughput, not upload
//! speed (the HTTP benchmarks measure the overlap of both).

use std::time::{Duration, Instant};

use msrpcast::config::Config;
use msrpcast::roster::{DeliveryState, TransferId};
use msrpcast::runtime::receive::{ReceiveServer, Sink};
use msrpcast::runtime::Engine;

mod common;
use common::start_receiver;

fn engine(tag: &str) -> (Engine, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("msrpcast-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    cfg.set("spool_dir", dir.to_str().expect("utf-8 temp dir"))
        .expect("spool_dir");
    cfg.set("msrp_listen", "127.0.0.1:0").expect("msrp_listen");
    cfg.set("log_level", "error").expect("log_level");
    cfg.set("answer_timeout_ms", "3600000").expect("answer");
    (Engine::start(cfg).expect("engine"), dir)
}

fn pattern() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..(4 << 20) / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn spool_file(e: &Engine, conf: &str, size: u64) -> TransferId {
    e.join(conf, "placeholder", "sip:nobody@127.0.0.1:9", None)
        .expect("join");
    wait_until(|| e.roster().conference(conf).is_some());
    let mut up = e
        .upload(conf, "bench.bin", "application/octet-stream", Some(size))
        .expect("upload");
    let p = pattern();
    let mut left = size;
    while left > 0 {
        let n = left.min(p.len() as u64) as usize;
        up.append(&p[..n]).expect("append");
        left -= n as u64;
    }
    let t = up.transfer;
    up.finish().expect("finish");
    t
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(600), "timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Delivers a spooled file of `size` bytes to `n` receivers; returns (GB/s, peak RSS MiB).
fn fanout(n: usize, size: u64) -> (f64, f64) {
    let rx = start_receiver("bench", 1);
    let (e, dir) = engine(&format!("fanout{n}"));
    let t = spool_file(&e, "c", size);
    reset_peak_rss();
    let t0 = Instant::now();
    for i in 0..n {
        e.join_direct("c", &format!("p{i}"), &rx.uri).expect("join");
    }
    wait_until(|| {
        let tr = e.roster().transfer(t).expect("transfer");
        let done: Vec<_> = tr
            .deliveries
            .iter()
            .filter(|d| d.participant != "placeholder")
            .collect();
        if let Some(bad) = done
            .iter()
            .find(|d| matches!(d.state, DeliveryState::Failed { .. }))
        {
            panic!("delivery failed: {:?}", bad.state);
        }
        done.len() == n && done.iter().all(|d| d.state == DeliveryState::Done)
    });
    let secs = t0.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    ((n as f64 * size as f64) / secs / 1e9, rss)
}

fn first_chunk_latency_ms() -> f64 {
    let rx = ReceiveServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        "lat",
        Sink::Discard,
        false,
        None,
        1,
    )
    .expect("receiver");
    let (e, dir) = engine("latency");
    e.join_direct("c", "p", &rx.uri.to_string()).expect("join");
    wait_until(|| e.roster().conference("c").is_some());
    let mut samples = Vec::new();
    for _ in 0..20 {
        let mut up = e
            .upload("c", "x", "application/octet-stream", None)
            .expect("upload");
        let t = up.transfer;
        // Wait until the delivery is connected and bound (the receiver is "already connected").
        up.append(b"x").expect("append");
        wait_until(|| {
            e.roster().transfer(t).is_some_and(|tr| {
                tr.deliveries
                    .iter()
                    .any(|d| matches!(d.state, DeliveryState::Sending { .. }))
            })
        });
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        up.append(&[7u8; 1000]).expect("append");
        up.finish().expect("finish");
        rx.next(Duration::from_secs(10)).expect("message");
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("MSRPCAST_BENCH_QUICK").is_some();
    let baseline: Option<f64> = std::env::var("MSRPCAST_BASELINE_GBPS")
        .ok()
        .and_then(|v| v.parse().ok());
    let mib = |m: u64| m << 20;
    let runs: [(&str, usize, u64); 3] = if quick {
        [
            ("fanout_1x1GiB", 1, mib(64)),
            ("fanout_10x256MiB", 10, mib(16)),
            ("fanout_100x64MiB", 100, mib(2)),
        ]
    } else {
        [
            ("fanout_1x1GiB", 1, mib(1024)),
            ("fanout_10x256MiB", 10, mib(256)),
            ("fanout_100x64MiB", 100, mib(64)),
        ]
    };
    let mut rss100 = 0.0;
    for (name, n, size) in runs {
        let (gbps, rss) = fanout(n, size);
        println!("BENCH {name} {gbps:.3} GB/s");
        if let Some(b) = baseline {
            println!("BENCH {name}_ratio {:.3} x", gbps / b);
        }
        if n == 100 {
            rss100 = rss;
        }
    }
    println!("BENCH fanout_peak_rss_mib {rss100:.1} MiB");
    if !quick {
        let (_, rss4x) = fanout(100, mib(256));
        println!("BENCH fanout_peak_rss_mib_4x_file {rss4x:.1} MiB");
    }
    println!(
        "BENCH first_chunk_latency_ms {:.2} ms",
        first_chunk_latency_ms()
    );
}
