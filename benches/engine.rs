//! Engine benchmarks (`make bench`): fan-out throughput to receivers that parse every chunk, the
//! engine's peak RSS and CPU per GB, fan-out over emulated long paths (`wan_fanout_…`: a
//! user-space delay/rate proxy per participant, `common/proxy.rs`), the cost of a peer that
//! reports every chunk with Nagle on, first-chunk latency, and over TLS: fan-out ÷ the plain
//! fan-out of the same run (`fanout_tls_10x256MiB_ratio`, receivers `msrpcast receive
//! --tls-cert`, the engine verifying them by host against a CA made here) and deliveries per
//! second when 1,000 start at once, each with its own handshake (`tls_handshakes_per_s`).
//! `MSRPCAST_BENCH_ONLY=name,…` runs only those (for profiling); `MSRPCAST_BENCH_SET=key=value,…`
//! sets engine settings on top (for comparisons, e.g. `max_window_bytes=256KiB`);
//! `MSRPCAST_BENCH_RECEIVER=/path/to/msrpcast` runs the receivers from another build (A/B runs of
//! the receiving side). Prints `BENCH <name> <value> <unit>` lines;
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
use common::proxy::{DelayProxy, Path};
use common::{
    baseline_now, bench_settings, cpu_seconds, median, repeats, sendfile_baseline_now,
    start_receiver, start_receiver_with, start_tls_receiver, tls_files, uri_addr, uri_via,
};

fn engine(tag: &str) -> (Engine, std::path::PathBuf) {
    engine_with(tag, &[])
}

fn engine_with(tag: &str, extra: &[(&str, &str)]) -> (Engine, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("msrpcast-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    for (k, v) in extra {
        cfg.set(k, v).expect(k);
    }
    for (k, v) in bench_settings() {
        cfg.set(&k, &v).expect("MSRPCAST_BENCH_SET");
    }
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

fn wait_until(f: impl FnMut() -> bool) {
    wait_every(Duration::from_millis(1), f)
}

fn wait_every(every: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(600), "timed out");
        std::thread::sleep(every);
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

/// Joins each `(name, uri)` to conference `conf` (whose transfer `t` is spooled) and waits until
/// all their deliveries are done; returns the seconds it took. Panics on a failed delivery.
fn deliver(e: &Engine, conf: &str, t: TransferId, who: &[(String, String)]) -> f64 {
    let t0 = Instant::now();
    for (name, uri) in who {
        e.join_direct(conf, name, uri).expect("join");
    }
    let names: std::collections::HashSet<&str> = who.iter().map(|(n, _)| n.as_str()).collect();
    // Polling the roster costs a snapshot of every delivery: rarely when there are many.
    let every = Duration::from_millis(if who.len() > 10 { 20 } else { 1 });
    wait_every(every, || {
        let tr = e.roster().transfer(t).expect("transfer");
        let mine: Vec<_> = tr
            .deliveries
            .iter()
            .filter(|d| names.contains(d.participant.as_str()))
            .collect();
        if let Some(bad) = mine
            .iter()
            .find(|d| matches!(d.state, DeliveryState::Failed { .. }))
        {
            panic!("delivery failed: {:?}", bad.state);
        }
        mine.len() == who.len() && mine.iter().all(|d| d.state == DeliveryState::Done)
    });
    t0.elapsed().as_secs_f64()
}

struct Fanout {
    gbps: f64,
    rss_mib: f64,
    /// The engine's CPU seconds (user + system, all threads) per GB delivered.
    cpu_s_per_gb: f64,
}

/// Delivers a spooled file of `size` bytes to `n` receivers (one receiver process).
fn fanout(n: usize, size: u64) -> Fanout {
    let rx = start_receiver("bench", 1);
    fanout_to(rx, engine(&format!("fanout{n}")), n, size)
}

/// TLS: the engine (`msrp_tls` on, its own certificate, trusting the receivers' CA with
/// `tls_verify = host`) and the receivers (`msrpcast receive --tls-cert`) all over `msrps`.
struct TlsSetup {
    dir: std::path::PathBuf,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl TlsSetup {
    fn new() -> TlsSetup {
        let dir = std::env::temp_dir().join(format!("msrpcast-bench-certs-{}", std::process::id()));
        let (ca, cert, key) = tls_files(&dir);
        TlsSetup { dir, ca, cert, key }
    }

    fn receiver(&self, threads: usize) -> common::Receiver {
        start_tls_receiver("bench", threads, &self.cert, &self.key)
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        let s = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
        vec![
            ("msrp_tls", "on".into()),
            ("tls_cert", s(&self.cert)),
            ("tls_key", s(&self.key)),
            ("tls_ca", s(&self.ca)),
            ("tls_verify", "host".into()),
            ("tls_handshake_timeout_ms", "600000".into()),
        ]
    }
}

impl Drop for TlsSetup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// [`fanout`] over TLS.
fn fanout_tls(n: usize, size: u64) -> Fanout {
    let tls = TlsSetup::new();
    let rx = tls.receiver(1);
    assert!(rx.uri.starts_with("msrps://"), "{}", rx.uri);
    let settings = tls.settings();
    fanout_to(
        rx,
        engine_with(&format!("fanouttls{n}"), &as_refs(&settings)),
        n,
        size,
    )
}

/// What [`tls_handshakes_per_s`] measured.
struct Handshakes {
    per_s: f64,
    /// The engine's CPU (user + system, all threads) per delivery, in µs.
    engine_cpu_us: f64,
    /// The receivers' CPU per delivery (server side of the handshake, MSRP), in µs.
    receivers_cpu_us: f64,
}

/// `n` TLS deliveries of a `size`-byte file starting at once (receivers in `procs` processes):
/// deliveries per second, each with its own full handshake (the engine's client side: key
/// exchange, the receiver's chain verified against `tls_ca` and its name checked), and the CPU
/// each side spent per delivery — the figure that does not depend on what else the machine runs.
fn tls_handshakes_per_s(n: usize, size: u64, procs: usize) -> Handshakes {
    let tls = TlsSetup::new();
    let rxs: Vec<_> = (0..procs).map(|_| tls.receiver(1)).collect();
    let mut settings = tls.settings();
    for (k, v) in [
        ("transaction_timeout_ms", "600000"),
        ("report_timeout_ms", "600000"),
        ("connect_timeout_ms", "600000"),
    ] {
        settings.push((k, v.into()));
    }
    settings.push(("max_participants_per_conference", (n + 1).to_string()));
    let (e, dir) = engine_with("handshakes", &as_refs(&settings));
    let t = spool_file(&e, "c", size);
    let who: Vec<(String, String)> = (0..n)
        .map(|i| (format!("h{i}"), rxs[i % procs].uri.clone()))
        .collect();
    let rx_cpu = || rxs.iter().map(|r| r.cpu_seconds()).sum::<f64>();
    let (cpu0, rx0) = (cpu_seconds(), rx_cpu());
    let secs = deliver(&e, "c", t, &who);
    let (cpu, rx) = (cpu_seconds() - cpu0, rx_cpu() - rx0);
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    Handshakes {
        per_s: n as f64 / secs,
        engine_cpu_us: cpu * 1e6 / n as f64,
        receivers_cpu_us: rx * 1e6 / n as f64,
    }
}

/// Delivers a file of `size` bytes spooled in `engine` to `n` participants at `rx`.
fn fanout_to(
    rx: common::Receiver,
    (e, dir): (Engine, std::path::PathBuf),
    n: usize,
    size: u64,
) -> Fanout {
    let t = spool_file(&e, "c", size);
    reset_peak_rss();
    let who: Vec<(String, String)> = (0..n).map(|i| (format!("p{i}"), rx.uri.clone())).collect();
    let cpu0 = cpu_seconds();
    let secs = deliver(&e, "c", t, &who);
    let cpu = cpu_seconds() - cpu0;
    let rss_mib = peak_rss_mib();
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    let gb = n as f64 * size as f64 / 1e9;
    Fanout {
        gbps: gb / secs,
        rss_mib,
        cpu_s_per_gb: cpu / gb,
    }
}

/// `n` participants, each behind its own emulated `path` (a [`DelayProxy`] to the one receiver
/// process): aggregate payload rate ÷ aggregate link rate.
fn wan_fanout(n: usize, size: u64, path: Path) -> f64 {
    let rx = start_receiver("bench", 2);
    let target = uri_addr(&rx.uri);
    let proxies: Vec<DelayProxy> = (0..n)
        .map(|_| DelayProxy::start(target, path).expect("proxy"))
        .collect();
    let (e, dir) = engine("wan");
    let t = spool_file(&e, "c", size);
    let who: Vec<(String, String)> = proxies
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("w{i}"), uri_via(&rx.uri, p.addr())))
        .collect();
    let secs = deliver(&e, "c", t, &who);
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    (n as f64 * size as f64 / secs) / (n as f64 * path.rate as f64)
}

/// Seconds to deliver `size` bytes to a receiver answering every chunk with a 200 and a REPORT
/// written separately with Nagle on, ÷ the same to a receiver reporting once per message.
fn report_per_chunk_nagle_ratio(size: u64) -> f64 {
    let nagle = start_receiver_with("bench", 1, Some("report-per-chunk,nagle"));
    let plain = start_receiver("bench", 1);
    let (e, dir) = engine("nagle");
    let t = spool_file(&e, "c", size);
    // A transfer of this size takes well under a second: the median of five pairs, taken in
    // turns, so that a moment of load on a shared machine does not decide the ratio.
    let (mut slow, mut fast) = (Vec::new(), Vec::new());
    for k in 0..5 {
        slow.push(deliver(
            &e,
            "c",
            t,
            &[(format!("nagle{k}"), nagle.uri.clone())],
        ));
        fast.push(deliver(
            &e,
            "c",
            t,
            &[(format!("plain{k}"), plain.uri.clone())],
        ));
    }
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (slow, fast) = (median(&mut slow), median(&mut fast));
    eprintln!("report-per-chunk+nagle {slow:.3} s, per-message {fast:.3} s (medians of 5)");
    slow / fast
}

/// `n` concurrent deliveries of a `size`-byte file, to receivers spread over `procs` receiver
/// processes; returns (seconds until all are done, the engine's peak RSS in MiB).
fn scale(n: usize, size: u64, procs: usize) -> (f64, f64) {
    let rxs: Vec<_> = (0..procs).map(|_| start_receiver("bench", 1)).collect();
    let dir = std::env::temp_dir().join(format!("msrpcast-bench-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    for (k, v) in [
        ("spool_dir", dir.to_str().expect("utf-8 temp dir")),
        ("msrp_listen", "127.0.0.1:0"),
        ("log_level", "error"),
        ("answer_timeout_ms", "3600000"),
        ("transaction_timeout_ms", "600000"),
        ("report_timeout_ms", "600000"),
        ("connect_timeout_ms", "600000"),
    ] {
        cfg.set(k, v).expect(k);
    }
    cfg.set("max_participants_per_conference", &(n + 1).to_string())
        .expect("max participants");
    let e = Engine::start(cfg).expect("engine");
    let t = spool_file(&e, "c", size);
    reset_peak_rss();
    let who: Vec<(String, String)> = (0..n)
        .map(|i| (format!("s{i}"), rxs[i % procs].uri.clone()))
        .collect();
    let secs = deliver(&e, "c", t, &who);
    let rss = peak_rss_mib();
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    (secs, rss)
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
    // MSRPCAST_BENCH_ONLY=<name>[,<name>…] runs only those benchmarks (for profiling; names as
    // in the BENCH lines, without `_ratio`).
    let only = std::env::var("MSRPCAST_BENCH_ONLY").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == name))
    };
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
    let mut rss100 = None;
    let mut plain10 = None;
    for (name, n, size) in runs {
        if !wanted(name) {
            continue;
        }
        // MSRPCAST_BENCH_REPEAT runs (default 3): medians; each run's ratio against a baseline
        // measured just before it (common::baseline_now). For one participant also against
        // iperf3's own `sendfile` sender (the engine's path for file bodies on plain TCP).
        let mut zc = Vec::new();
        let all: Vec<(Option<f64>, Fanout)> = (0..repeats())
            .map(|_| {
                if n == 1 {
                    zc.extend(sendfile_baseline_now());
                }
                (baseline_now().or(baseline), fanout(n, size))
            })
            .collect();
        let med = |x: fn(&Fanout) -> f64| median(&all.iter().map(|r| x(&r.1)).collect::<Vec<_>>());
        let f = Fanout {
            gbps: med(|f| f.gbps),
            rss_mib: med(|f| f.rss_mib),
            cpu_s_per_gb: med(|f| f.cpu_s_per_gb),
        };
        let ratios: Vec<f64> = all
            .iter()
            .filter_map(|(b, f)| b.map(|b| f.gbps / b))
            .collect();
        eprintln!(
            "{name}: {} runs, GB/s {:?}",
            all.len(),
            all.iter().map(|r| r.1.gbps).collect::<Vec<_>>()
        );
        if n == 10 {
            plain10 = Some(f.gbps);
        }
        println!("BENCH {name} {:.3} GB/s", f.gbps);
        if !ratios.is_empty() {
            println!("BENCH {name}_ratio {:.3} x", median(&ratios));
        }
        if zc.len() == all.len() {
            let zc_ratios: Vec<f64> = zc.iter().zip(&all).map(|(z, r)| r.1.gbps / z).collect();
            eprintln!("{name}: sendfile baselines GB/s {zc:?}");
            println!("BENCH {name}_sendfile_ratio {:.3} x", median(&zc_ratios));
        }
        if n == 10 {
            println!("BENCH fanout_cpu_s_per_gb {:.3} s/GB", f.cpu_s_per_gb);
        }
        if n == 100 {
            rss100 = Some(f.rss_mib);
        }
    }
    if let Some(rss100) = rss100 {
        println!("BENCH fanout_peak_rss_mib {rss100:.1} MiB");
    }
    // Right after the 100 x 64 MiB runs: a peak is measured from the RSS the process holds when
    // it starts (the heap kept from earlier runs counts), so the two figures compare only when
    // nothing else ran between them (after the TLS and handshake runs it read ~40 MiB).
    if !quick && wanted("fanout_peak_rss_mib_4x_file") {
        let f = fanout(100, mib(256));
        println!("BENCH fanout_peak_rss_mib_4x_file {:.1} MiB", f.rss_mib);
    }
    if wanted("fanout_tls_10x256MiB") {
        let size = if quick { mib(16) } else { mib(256) };
        let plain = plain10.unwrap_or_else(|| fanout(10, size).gbps);
        let tls = fanout_tls(10, size);
        eprintln!(
            "fanout_tls_10x256MiB: {:.3} GB/s over TLS, {plain:.3} GB/s plain; engine CPU {:.3} \
             s/GB over TLS",
            tls.gbps, tls.cpu_s_per_gb
        );
        println!("BENCH fanout_tls_10x256MiB_ratio {:.3} x", tls.gbps / plain);
    }
    if wanted("tls_handshakes_per_s") {
        let h = tls_handshakes_per_s(if quick { 200 } else { 1000 }, 1024, 4);
        eprintln!(
            "tls_handshakes_per_s: CPU per delivery: engine {:.0} µs, receivers {:.0} µs",
            h.engine_cpu_us, h.receivers_cpu_us
        );
        println!("BENCH tls_handshakes_per_s {:.0} /s", h.per_s);
    }
    if wanted("wan_fanout_10x64MiB") {
        let wan = Path::symmetric(Duration::from_millis(50), 100);
        let ratio = wan_fanout(10, if quick { mib(8) } else { mib(64) }, wan);
        println!("BENCH wan_fanout_10x64MiB_ratio {ratio:.3} x");
    }
    if wanted("report_per_chunk_nagle") {
        let ratio = report_per_chunk_nagle_ratio(if quick { mib(8) } else { mib(48) });
        println!("BENCH report_per_chunk_nagle_ratio {ratio:.3} x");
    }
    if wanted("scale_1000x16MiB") {
        let (s1000, _) = scale(1000, if quick { mib(1) } else { mib(16) }, 4);
        println!("BENCH scale_1000x16MiB_s {s1000:.2} s");
    }
    if wanted("scale_10000x1MiB") {
        let (s10k, rss10k) = scale(if quick { 2000 } else { 10_000 }, mib(1), 4);
        println!("BENCH scale_10000x1MiB_s {s10k:.2} s");
        println!("BENCH scale_10000_peak_rss_mib {rss10k:.1} MiB");
    }
    if wanted("first_chunk_latency") {
        println!(
            "BENCH first_chunk_latency_ms {:.2} ms",
            first_chunk_latency_ms()
        );
    }
}
