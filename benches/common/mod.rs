//! Helpers shared by the benchmarks.
#![allow(dead_code)]

pub mod proxy;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `MSRPCAST_BENCH_SET=key=value[,key=value…]`: engine settings a benchmark sets on top of its
/// own, for A/B comparisons with one binary (e.g. `spool_hash_nice=19`). An entry without `=`
/// stops the benchmark.
pub fn bench_settings() -> Vec<(String, String)> {
    let sets = std::env::var("MSRPCAST_BENCH_SET").unwrap_or_default();
    sets.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("MSRPCAST_BENCH_SET: key=value");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// A `msrpcast receive --discard --no-hash` child process: receivers that parse every chunk but
/// neither store nor hash, so the sender is what is measured. Killed when dropped.
pub struct Receiver {
    child: Child,
    /// Its MSRP URI (the first line it prints).
    pub uri: String,
}

impl Receiver {
    /// CPU seconds (user + system) the receiver process used so far.
    pub fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a receiver for session `session` with `threads` I/O threads.
pub fn start_receiver(session: &str, threads: usize) -> Receiver {
    start_receiver_with(session, threads, None)
}

/// [`start_receiver`] with `--misbehave MISBEHAVE` (e.g. `report-per-chunk,nagle`).
pub fn start_receiver_with(session: &str, threads: usize, misbehave: Option<&str>) -> Receiver {
    start_receiver_args(session, threads, misbehave, &[])
}

/// A receiver listening with TLS (`msrps`) with this certificate and key (PEM files).
pub fn start_tls_receiver(
    session: &str,
    threads: usize,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Receiver {
    let (cert, key) = (
        cert.to_str().expect("utf-8 path"),
        key.to_str().expect("utf-8 path"),
    );
    start_receiver_args(
        session,
        threads,
        None,
        &["--tls-cert", cert, "--tls-key", key],
    )
}

fn start_receiver_args(
    session: &str,
    threads: usize,
    misbehave: Option<&str>,
    extra: &[&str],
) -> Receiver {
    let threads = threads.to_string();
    let mut args = vec![
        "receive",
        "--listen",
        "127.0.0.1:0",
        "--session-id",
        session,
        "--discard",
        "--no-hash",
        "--threads",
        &threads,
    ];
    if let Some(m) = misbehave {
        args.extend(["--misbehave", m]);
    }
    args.extend(extra);
    // MSRPCAST_BENCH_RECEIVER names another msrpcast binary for the receivers (A/B runs of the
    // receiving side with one engine build).
    let bin = std::env::var_os("MSRPCAST_BENCH_RECEIVER")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_msrpcast").into());
    let mut child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("msrpcast receive");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut uri = String::new();
    out.read_line(&mut uri).expect("receiver URI");
    // Keep draining its per-message lines so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut line = String::new();
        while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            line.clear();
        }
    });
    Receiver {
        child,
        uri: uri.trim().to_string(),
    }
}

/// A CA and a certificate it signed for 127.0.0.1, as PEM files in `dir`: (CA, cert, key).
pub fn tls_files(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).expect("cert dir");
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
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

/// The host:port of an MSRP URI `msrp://HOST:PORT/SESSION;tcp`.
pub fn uri_addr(uri: &str) -> std::net::SocketAddr {
    let rest = uri.split_once("://").expect("msrp URI").1;
    let hostport = rest.split('/').next().expect("authority");
    hostport.parse().expect("numeric host:port")
}

/// The same URI with its host:port replaced (to route a participant through a proxy).
pub fn uri_via(uri: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = uri.split_once("://").expect("msrp URI");
    let (_, path) = rest.split_once('/').expect("path");
    format!("{scheme}://{addr}/{path}")
}

/// CPU seconds (user + system) of all threads of this process so far, from `/proc/self/stat`
/// (clock ticks of `getconf CLK_TCK`, usually 10 ms).
pub fn cpu_seconds() -> f64 {
    proc_cpu_seconds("/proc/self/stat")
}

/// CPU seconds (user + system) of the process whose `stat` file is `path`.
fn proc_cpu_seconds(path: &str) -> f64 {
    static TICK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let hz = *TICK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(14) + tick(15)) / hz
}

/// How many times a benchmark measures each figure: `MSRPCAST_BENCH_REPEAT` (default 3, at
/// least 1). Single runs on a shared 2-core machine spread up to 2×; the median of the runs is
/// printed.
pub fn repeats() -> usize {
    std::env::var("MSRPCAST_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(3)
        .max(1)
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The loopback baseline of this moment, for the ratio of one repeat: `benches/baseline.sh -t 1`
/// (iperf3, like `make bench`'s own baseline line) run now, so each repeat's ratio compares with
/// the machine as it is during that repeat. Falls back to `MSRPCAST_BASELINE_GBPS` when the
/// script cannot run; `None` when neither gives a figure.
pub fn baseline_now() -> Option<f64> {
    run_baseline(&["-t", "1"]).or_else(|| {
        std::env::var("MSRPCAST_BASELINE_GBPS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|b| *b > 0.0)
    })
}

/// [`baseline_now`] with iperf3's zero-copy sender (`baseline.sh -t 1 --sendfile`): what the
/// kernel's `sendfile` path itself reaches on loopback now. No fallback.
pub fn sendfile_baseline_now() -> Option<f64> {
    run_baseline(&["-t", "1", "--sendfile"])
}

fn run_baseline(args: &[&str]) -> Option<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/baseline.sh");
    Command::new(script)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .filter(|b| *b > 0.0)
}
