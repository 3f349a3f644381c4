//! HTTP benchmarks (`make bench`): prints `BENCH <name> <value> <unit>` lines.
//!
//! - `http_upload`: one 1 GiB raw upload over loopback into the spool, no receivers (the
//!   conference's only participant is a SIP one whose offer is never answered), in GB/s, to
//!   the `201` (every byte in the spool; the SHA-1 finishes behind it, its time is on stderr);
//!   and `http_upload_ratio` to the loopback baseline.
//! - `upload_to_delivery`: one 1 GiB upload to 3 connected receivers (`msrpcast receive
//!   --discard` in a child process, one MSRP session each), time from the first request byte to
//!   the last delivery's success report (delivery `done` in the roster), as a ratio to the
//!   upload alone. Below 2 the deliveries overlap the upload; the goal is ≤ 1.3.
//! - `spool_sha1`: SHA-1 alone over the same bytes in 256 KiB pieces, in GB/s. The spool hashes
//!   on a thread of its own that follows the writer and the `201` does not wait for it, so this
//!   is no ceiling of `http_upload`; it bounds when the transfer becomes `complete`.
//! - `https_upload_ratio`: the same upload over HTTPS (`http_tls_cert`, a certificate made here;
//!   the client is rustls with the same provider) ÷ the plain upload of the same run. Goal ≥ 0.7.
//!
//! The client is a minimal HTTP/1.1 client of its own writing 1 MiB blocks. `--quick`: 32 MiB.
//! `MSRPCAST_BENCH_SET=key=value[,…]` sets engine settings in every setup (A/B with one binary,
//! e.g. `spool_hash_nice=19`).
//!
//! Each figure is measured `MSRPCAST_BENCH_REPEAT` times (default 3) and the median printed;
//! a ratio is the median of the runs' own ratios, each against a loopback baseline measured
//! just before that run (`benches/baseline.sh -t 1`; `MSRPCAST_BASELINE_GBPS` if it cannot
//! run). Each run's figures go to stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msrpcast::config::Config;
use msrpcast::http::HttpServer;
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::Engine;
use sha1::{Digest, Sha1};

mod common;
use common::{baseline_now, bench_settings, cpu_seconds, median, repeats, start_receiver};

const TOKEN: &str = "bench-token";
const BLOCK: usize = 1 << 20;

struct Setup {
    server: Option<HttpServer>,
    engine: Option<Arc<Engine>>,
    dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.server.take();
        // Connection threads and the hashing thread of the last upload may still hold the
        // engine for a moment: let them go, so it stops (and writes its records) before its
        // folder is removed.
        let t0 = Instant::now();
        while self
            .engine
            .as_ref()
            .is_some_and(|e| Arc::strong_count(e) > 1 && t0.elapsed() < Duration::from_secs(10))
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.engine.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Setup {
    fn new(tag: &str) -> Setup {
        Setup::with(tag, &[])
    }

    fn with(tag: &str, extra: &[(&str, &str)]) -> Setup {
        let dir =
            std::env::temp_dir().join(format!("msrpcast-httpbench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = Config::default();
        for (k, v) in [
            ("spool_dir", dir.to_str().expect("utf-8 temp dir")),
            ("msrp_listen", "127.0.0.1:0"),
            ("http_listen", "127.0.0.1:0"),
            ("http_token", TOKEN),
            ("log_level", "error"),
            ("answer_timeout_ms", "3600000"),
        ] {
            cfg.set(k, v).expect(k);
        }
        for (k, v) in extra {
            cfg.set(k, v).expect(k);
        }
        for (k, v) in bench_settings() {
            cfg.set(&k, &v).expect("MSRPCAST_BENCH_SET");
        }
        let engine = Arc::new(Engine::start(cfg.clone()).expect("engine"));
        let server = HttpServer::start(engine.clone(), &cfg).expect("http server");
        Setup {
            server: Some(server),
            engine: Some(engine),
            dir,
        }
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine")
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("server").local_addr()
    }

    fn wait_participants(&self, conf: &str, n: usize) {
        wait_until(|| {
            self.engine()
                .roster()
                .conference(conf)
                .is_some_and(|c| c.participants.len() >= n)
        });
    }
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(900), "timed out");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn pattern() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..BLOCK / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// Uploads `size` generated bytes as a raw body; returns the transfer id and the seconds from
/// the first request byte to the `201`.
fn upload(addr: SocketAddr, conf: &str, size: u64, start: Instant) -> (u64, f64) {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    upload_over(s, conf, size, start)
}

/// [`upload`] on an established stream (plain or TLS).
fn upload_over(mut s: impl Read + Write, conf: &str, size: u64, start: Instant) -> (u64, f64) {
    let head = format!(
        "POST /conferences/{conf}/files HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename*=UTF-8''bench.bin\r\nContent-Length: {size}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("head");
    let mut block = pattern();
    let mut left = size;
    let mut i = 0u64;
    while left > 0 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let n = left.min(BLOCK as u64) as usize;
        s.write_all(&block[..n]).expect("body");
        left -= n as u64;
        i += 1;
    }
    s.flush().expect("flush");
    let mut resp = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let n = s.read(&mut b).expect("response");
        assert!(n > 0, "connection closed before the response");
        resp.extend_from_slice(&b[..n]);
        if let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&resp).into_owned();
            assert!(text.starts_with("HTTP/1.1 201 "), "{text}");
            let len: usize = text[..i]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("Content-Length");
            if resp.len() >= i + 4 + len {
                let secs = start.elapsed().as_secs_f64();
                let body = &text[i + 4..];
                let id = body
                    .split("\"transfer\":")
                    .nth(1)
                    .map(|r| r.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
                    .and_then(|v| v.parse().ok())
                    .expect("transfer id");
                return (id, secs);
            }
        }
    }
}

/// Seconds of one upload to its `201`, and to the transfer's `complete` (its SHA-1 known), and
/// the CPU seconds of this process (client, server, spool, hash) until then.
fn http_upload(size: u64) -> (f64, f64, f64) {
    let s = Setup::new("upload");
    s.engine()
        .join("solo", "placeholder", "sip:nobody@127.0.0.1:9", None)
        .expect("join");
    s.wait_participants("solo", 1);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let (id, secs) = upload(s.addr(), "solo", size, t0);
    wait_until(|| {
        s.engine()
            .roster()
            .transfer(msrpcast::roster::TransferId(id))
            .is_some_and(|t| t.state.is_finished())
    });
    (secs, t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0)
}

/// One upload to `n` receivers: seconds to the last success report and to the `201`, and the
/// CPU seconds of this process (uploader and engine) and of the receivers' process meanwhile.
struct Fanout {
    total: f64,
    upload: f64,
    cpu_engine: f64,
    cpu_receivers: f64,
}

fn upload_to_delivery(size: u64, n: usize) -> Fanout {
    let rx = start_receiver("httpbench", 2);
    let s = Setup::new("fanout");
    for i in 0..n {
        s.engine()
            .join_direct("fan", &format!("r{i}"), &rx.uri)
            .expect("join");
    }
    s.wait_participants("fan", n);
    let (cpu0, rx_cpu0) = (cpu_seconds(), rx.cpu_seconds());
    let t0 = Instant::now();
    let (id, up_secs) = upload(s.addr(), "fan", size, t0);
    wait_until(|| {
        let t = s
            .engine()
            .roster()
            .transfer(msrpcast::roster::TransferId(id))
            .expect("transfer");
        if let Some(bad) = t
            .deliveries
            .iter()
            .find(|d| matches!(d.state, DeliveryState::Failed { .. }))
        {
            panic!("delivery failed: {:?}", bad.state);
        }
        t.deliveries.len() == n && t.deliveries.iter().all(|d| d.state == DeliveryState::Done)
    });
    Fanout {
        total: t0.elapsed().as_secs_f64(),
        upload: up_secs,
        cpu_engine: cpu_seconds() - cpu0,
        cpu_receivers: rx.cpu_seconds() - rx_cpu0,
    }
}

/// Seconds of one upload of `size` bytes over HTTPS, from the TCP connect (handshake included),
/// and the CPU seconds of this process (client, server, spool, hash) until it is `complete`.
fn https_upload(size: u64) -> (f64, f64) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("msrpcast-httpsbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cert dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let s = Setup::with(
        "https",
        &[
            ("http_tls_cert", cert_path.to_str().expect("utf-8")),
            ("http_tls_key", key_path.to_str().expect("utf-8")),
        ],
    );
    s.engine()
        .join("solo", "placeholder", "sip:nobody@127.0.0.1:9", None)
        .expect("join");
    s.wait_participants("solo", 1);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(msrpcast::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let tcp = TcpStream::connect(s.addr()).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let conn = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
    let (id, secs) = upload_over(rustls::StreamOwned::new(conn, tcp), "solo", size, t0);
    wait_until(|| {
        s.engine()
            .roster()
            .transfer(msrpcast::roster::TransferId(id))
            .is_some_and(|t| t.state.is_finished())
    });
    let cpu = cpu_seconds() - cpu0;
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    (secs, cpu)
}

fn sha1_gbps(size: u64) -> f64 {
    let block = pattern();
    let t0 = Instant::now();
    let mut h = Sha1::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        for piece in block[..n].chunks(256 * 1024) {
            h.update(piece);
        }
        left -= n as u64;
    }
    std::hint::black_box(h.finalize());
    size as f64 / t0.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let size: u64 = if quick { 32 << 20 } else { 1 << 30 };
    // MSRPCAST_BENCH_ONLY=<name>[,<name>…] runs only those benchmarks (for profiling; names as
    // in the BENCH lines, without `_ratio`). `https_upload` and `upload_to_delivery` need
    // `http_upload`.
    let only = std::env::var("MSRPCAST_BENCH_ONLY").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == name))
    };
    let runs = repeats();
    eprintln!("http benches: {runs} runs each (MSRPCAST_BENCH_REPEAT), medians printed");
    let (mut gbps, mut ratio, mut https, mut fan, mut sha) =
        (vec![], vec![], vec![], vec![], vec![]);
    for run in 1..=runs {
        if wanted("http_upload") {
            let base = baseline_now();
            let (up, complete, cpu) = http_upload(size);
            let g = size as f64 / up / 1e9;
            eprintln!(
                "run {run}: http_upload {g:.3} GB/s (201 after {up:.2} s, SHA-1 done after \
                 {complete:.2} s, {cpu:.2} CPU s), baseline {}",
                base.map_or("unknown".into(), |b| format!("{b:.2} GB/s"))
            );
            gbps.push(g);
            if let Some(b) = base {
                ratio.push(g / b);
            }
            if wanted("https_upload") {
                let (tls_up, tls_cpu) = https_upload(size);
                eprintln!(
                    "run {run}: https_upload {:.3} GB/s over HTTPS ({tls_cpu:.2} CPU s), \
                     ratio {:.3}",
                    size as f64 / tls_up / 1e9,
                    up / tls_up
                );
                https.push(up / tls_up);
            }
            if wanted("upload_to_delivery") {
                let f = upload_to_delivery(size, 3);
                eprintln!(
                    "run {run}: upload_to_delivery {:.3}: {:.2} s to the 3rd success report, \
                     upload part {:.2} s, upload alone {up:.2} s; CPU {:.2} s engine+uploader, \
                     {:.2} s receivers = {:.2} of 2 cores busy",
                    f.total / up,
                    f.total,
                    f.upload,
                    f.cpu_engine,
                    f.cpu_receivers,
                    (f.cpu_engine + f.cpu_receivers) / f.total / 2.0
                );
                fan.push(f.total / up);
            }
        }
        if wanted("spool_sha1") {
            sha.push(sha1_gbps(size));
        }
    }
    if !gbps.is_empty() {
        println!("BENCH http_upload {:.3} GB/s", median(&gbps));
        if ratio.is_empty() {
            eprintln!(
                "http_upload_ratio: no loopback baseline (benches/baseline.sh failed and \
                       MSRPCAST_BASELINE_GBPS is not set)"
            );
        } else {
            println!("BENCH http_upload_ratio {:.3} x", median(&ratio));
        }
    }
    if !https.is_empty() {
        println!("BENCH https_upload_ratio {:.3} x", median(&https));
    }
    if !fan.is_empty() {
        println!("BENCH upload_to_delivery {:.3} x", median(&fan));
    }
    if !sha.is_empty() {
        println!("BENCH spool_sha1 {:.3} GB/s", median(&sha));
    }
}
