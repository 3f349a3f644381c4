//! `msrpcast`: the command-line tool for development, demos and interoperability checks.
//!
//! - `msrpcast send FILE --to MSRP_URI [--to ...]`: deliver FILE to each URI as one MSRP message.
//! - `msrpcast receive --listen HOST:PORT --session-id ID --dir DIR`: a passive receiver; with
//!   `--relay MSRP_URI --relay-auth USER:PASS` instead of `--listen`, behind an MSRP relay.
//! - `msrpcast serve ...`: the engine and the HTTP handler without a SIP server.
//!
//! All of them use the library's own engine and runtime.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use msrpcast::config::Config;
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::receive::{Misbehave, ReceiveServer, RelayLogin, Sink};
use msrpcast::runtime::Engine;

const USAGE: &str = "usage:
  msrpcast send FILE --to MSRP_URI [--to MSRP_URI ...] [--chunk-bytes N] [--set KEY=VALUE ...]
      Deliver FILE as one MSRP message (Success-Report: yes) to every URI; one line per receiver;
      exit status 0 only if all succeeded.
  msrpcast receive --listen HOST:PORT --session-id ID --dir DIR [--count N] [--misbehave B]
      A passive receiver: prints its a=path URI, accepts any number of connections and messages
      for that session and saves each complete message in DIR (named by its Message-ID). Prints
      one line per message: `received <message-id> <bytes> <sha1> <path>` or `failed <id> <why>`.
      --count N exits after N messages. --discard counts instead of saving. --no-hash skips
      SHA-1 (the line then shows `-`; for benchmarks).
      --misbehave (tests): rate=BYTES_PER_S, close-after=BYTES, reply-481, never-answer,
      failure-report.
  msrpcast receive --relay MSRP_URI --relay-auth USER:PASS --session-id ID --dir DIR [...]
      The same receiver behind an MSRP relay (RFC 4976): connects to the relay, authenticates
      with AUTH and receives on that connection. Its first line is the To-Path for senders,
      `<relay Use-Path> <own URI>` (space separated: give it whole to `send --to`).
      [--relay-expires SECONDS] asks for that lifetime; the other options are as above.
  msrpcast serve --http HOST:PORT [--token T] --spool DIR --participant CONF=MSRP_URI [...]
      [--msrp HOST:PORT] [--set KEY=VALUE ...]
      The engine and the HTTP upload page and API in one process, without a SIP server;
      `msrpcast serve --help` explains each option.
  msrpcast settings
      Every engine setting with its meaning and default.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("send") => send(&args[1..]),
        Some("receive") => receive(&args[1..]),
        Some("serve") => serve(&args[1..]),
        Some("settings") => {
            for (k, doc) in Config::keys() {
                println!("{k}\n    {doc}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("missing or unknown command\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("msrpcast: {e}");
            ExitCode::from(2)
        }
    }
}

/// Splits `args` into flags with values (repeatable) and positionals.
struct Args {
    flags: Vec<(String, String)>,
    switches: Vec<String>,
    positional: Vec<String>,
}

fn parse_args(args: &[String], switches: &[&str]) -> Result<Args, String> {
    let mut out = Args {
        flags: Vec::new(),
        switches: Vec::new(),
        positional: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            if switches.contains(&name) {
                out.switches.push(name.to_string());
                continue;
            }
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => (
                    name.to_string(),
                    it.next()
                        .ok_or_else(|| format!("--{name} needs a value"))?
                        .clone(),
                ),
            };
            out.flags.push((name, value));
        } else {
            out.positional.push(a.clone());
        }
    }
    Ok(out)
}

impl Args {
    fn all(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn one(&self, name: &str) -> Option<&str> {
        self.all(name).last().copied()
    }
    fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for (n, _) in &self.flags {
            if !known.contains(&n.as_str()) {
                return Err(format!("unknown option --{n}"));
            }
        }
        Ok(())
    }
}

fn apply_sets(cfg: &mut Config, args: &Args) -> Result<(), String> {
    for kv in args.all("set") {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        cfg.set(k, v).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn send(args: &[String]) -> Result<ExitCode, String> {
    let a = parse_args(args, &[])?;
    a.check_known(&["to", "chunk-bytes", "set", "timeout-ms"])?;
    let [file] = a.positional.as_slice() else {
        return Err(format!("send needs exactly one FILE\n{USAGE}"));
    };
    let to = a.all("to");
    if to.is_empty() {
        return Err("send needs at least one --to MSRP_URI".into());
    }
    let mut cfg = Config::default();
    let spool = std::env::temp_dir().join(format!("msrpcast-send-{}", std::process::id()));
    cfg.set("spool_dir", &spool.to_string_lossy())
        .map_err(|e| e.to_string())?;
    cfg.set("msrp_listen", "127.0.0.1:0")
        .map_err(|e| e.to_string())?;
    cfg.set("log_level", "warn").map_err(|e| e.to_string())?;
    if let Some(c) = a.one("chunk-bytes") {
        cfg.set("chunk_bytes", c).map_err(|e| e.to_string())?;
    }
    apply_sets(&mut cfg, &a)?;
    let mut f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let size = f.metadata().map_err(|e| format!("{file}: {e}"))?.len();
    let engine = Engine::start(cfg).map_err(|e| e.to_string())?;
    let conf = "cli";
    for (i, uri) in to.iter().enumerate() {
        engine
            .join_direct(conf, &format!("r{i}"), uri)
            .map_err(|e| e.to_string())?;
    }
    // Joins are queued; wait until the roster has them all.
    let t0 = Instant::now();
    while engine
        .roster()
        .conference(conf)
        .map(|c| c.participants.len())
        .unwrap_or(0)
        < to.len()
    {
        if t0.elapsed() > Duration::from_secs(5) {
            return Err("engine did not take the receivers".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let name = std::path::Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut up = engine
        .upload(conf, &name, "application/octet-stream", Some(size))
        .map_err(|e| e.to_string())?;
    let transfer = up.transfer;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{file}: {e}"))?;
        if n == 0 {
            break;
        }
        up.append(&buf[..n]).map_err(|e| e.to_string())?;
    }
    up.finish().map_err(|e| e.to_string())?;
    let timeout = a
        .one("timeout-ms")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| "--timeout-ms: a number".to_string())
        })
        .transpose()?
        .unwrap_or(600_000);
    let deadline = Instant::now() + Duration::from_millis(timeout);
    let t = loop {
        let t = engine
            .roster()
            .transfer(transfer)
            .ok_or("transfer vanished")?;
        if t.deliveries.len() == to.len() && t.deliveries.iter().all(|d| d.state.is_terminal()) {
            break t;
        }
        if Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let secs = t0.elapsed().as_secs_f64();
    let mut ok = true;
    for (i, uri) in to.iter().enumerate() {
        let key = format!("r{i}");
        let d = t.deliveries.iter().find(|d| d.participant == key);
        match d.map(|d| &d.state) {
            Some(DeliveryState::Done) => println!("ok {uri} {size} bytes"),
            Some(DeliveryState::Failed { reason, code }) => {
                ok = false;
                match code {
                    Some(c) => println!("failed {uri} {c} {reason}"),
                    None => println!("failed {uri} - {reason}"),
                }
            }
            Some(other) => {
                ok = false;
                println!("failed {uri} - timed out while {}", other.name());
            }
            None => {
                ok = false;
                println!("failed {uri} - never started");
            }
        }
    }
    eprintln!(
        "msrpcast: {size} bytes to {} receivers in {secs:.3} s",
        to.len()
    );
    engine.stop();
    let _ = std::fs::remove_dir_all(&spool);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn receive(args: &[String]) -> Result<ExitCode, String> {
    let a = parse_args(args, &["discard", "no-hash"])?;
    a.check_known(&[
        "listen",
        "session-id",
        "dir",
        "count",
        "misbehave",
        "threads",
        "relay",
        "relay-auth",
        "relay-expires",
    ])?;
    let relay = a.one("relay");
    if relay.is_some() && a.one("listen").is_some() {
        return Err("receive takes --listen or --relay, not both".into());
    }
    let session = a.one("session-id").ok_or("receive needs --session-id ID")?;
    let sink = if a.has("discard") {
        Sink::Discard
    } else {
        let dir = PathBuf::from(
            a.one("dir")
                .ok_or("receive needs --dir DIR (or --discard)")?,
        );
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Sink::Dir(dir)
    };
    let misbehave: Option<Misbehave> = a.one("misbehave").map(str::parse).transpose()?;
    // Benchmarks measure the sender: SHA-1 at ~1 GB/s would make the receiver the limit.
    let hash = !a.has("no-hash");
    let count: Option<u64> = a
        .one("count")
        .map(|c| c.parse().map_err(|_| "--count: a number".to_string()))
        .transpose()?;
    let threads: usize = a
        .one("threads")
        .map(|c| c.parse().map_err(|_| "--threads: a number".to_string()))
        .transpose()?
        .unwrap_or(1);
    let server = match relay {
        Some(relay) => {
            let uri = msrpcast::msrp::Uri::parse_slice(relay.as_bytes())
                .map_err(|e| format!("--relay {relay:?}: {e}"))?;
            let mut login = RelayLogin::parse(
                a.one("relay-auth")
                    .ok_or("receive --relay needs --relay-auth USER:PASS")?,
            )
            .map_err(|e| format!("--relay-auth: {e}"))?;
            login.expires = a
                .one("relay-expires")
                .map(|v| {
                    v.parse()
                        .map_err(|_| "--relay-expires: a number of seconds".to_string())
                })
                .transpose()?;
            ReceiveServer::start_via_relay(&uri, &login, session, sink, hash, misbehave)
                .map_err(|e| format!("relay {relay}: {e}"))?
        }
        None => {
            let listen: SocketAddr = a
                .one("listen")
                .ok_or("receive needs --listen HOST:PORT (or --relay MSRP_URI)")?
                .parse()
                .map_err(|e| format!("--listen: {e}"))?;
            ReceiveServer::start(listen, session, sink, hash, misbehave, threads)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?
        }
    };
    // The To-Path for senders: our URI, or the relay's Use-Path then our URI.
    println!("{}", server.to_path_text());
    let mut seen = 0u64;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(ExitCode::SUCCESS);
        }
        let Ok(r) = server.events.recv() else {
            if server.relay.is_some() {
                eprintln!("msrpcast: the relay closed the connection");
                return Ok(ExitCode::from(1));
            }
            return Ok(ExitCode::SUCCESS);
        };
        seen += 1;
        match r.failure {
            None => println!(
                "received {} {} {} {}",
                r.message_id,
                r.bytes,
                r.sha1.as_deref().unwrap_or("-"),
                r.path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "-".into())
            ),
            Some(why) => println!("failed {} {why}", r.message_id),
        }
    }
}

const SERVE_HELP: &str = "usage: msrpcast serve --http HOST:PORT [--token T] --spool DIR
                      --participant CONF=MSRP_URI [--participant CONF=MSRP_URI ...]
                      [--https-cert FILE --https-key FILE] [--msrp HOST:PORT]
                      [--set KEY=VALUE ...]

The engine and the HTTP upload page and API in one process, without a SIP server: each
participant is reached directly at its MSRP URI (no SDP exchange), e.g. a `msrpcast receive`.
Prints the page's URL as its first line on stdout, then serves until it is killed.

  --http HOST:PORT      listen address of the page and API (http_listen; default 127.0.0.1:8088,
                        port 0 picks a free one). Without --token only a loopback address is used.
  --token T             the access token (http_token): `Authorization: Bearer T`, or the page's
                        login form, which sets an HttpOnly SameSite=Strict cookie.
  --spool DIR           spool folder for uploads in progress (spool_dir); created if missing.
  --participant CONF=MSRP_URI
                        adds a participant to conference CONF (repeatable; the participants of a
                        conference are named p1, p2, ... in the order given). MSRP_URI may be a
                        space-separated path (relays first) as `msrpcast receive --relay` prints.
  --https-cert FILE     PEM certificate chain for HTTPS (http_tls_cert); with --https-key the
                        page and API are served over HTTPS only, with Strict-Transport-Security
                        (http_hsts_max_age_s) and a Secure login cookie.
  --https-key FILE      its PEM private key (http_tls_key).
  --msrp HOST:PORT      MSRP listen address (msrp_listen; default 127.0.0.1:0 here).
  --set KEY=VALUE       any engine setting (`msrpcast settings` lists them all with defaults),
                        applied after the options above, e.g. --set max_file_bytes=1GiB
                        --set http_max_uploads=4 --set http_idle_timeout_ms=60000.

Stopping: SIGINT or SIGTERM end the process at once (default signal handling). Uploads and
deliveries running then are cut off; the spool files they leave are removed by the next start
with the same --spool (stale cleanup).";

fn serve(args: &[String]) -> Result<ExitCode, String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{SERVE_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let a = parse_args(args, &[])?;
    a.check_known(&[
        "http",
        "token",
        "spool",
        "participant",
        "msrp",
        "set",
        "https-cert",
        "https-key",
    ])?;
    if let Some(p) = a.positional.first() {
        return Err(format!("serve: unexpected argument {p:?}\n{SERVE_HELP}"));
    }
    let mut cfg = Config::default();
    let set = |cfg: &mut Config, k: &str, v: &str| cfg.set(k, v).map_err(|e| e.to_string());
    set(
        &mut cfg,
        "msrp_listen",
        a.one("msrp").unwrap_or("127.0.0.1:0"),
    )?;
    set(
        &mut cfg,
        "spool_dir",
        a.one("spool").ok_or("serve needs --spool DIR")?,
    )?;
    if let Some(h) = a.one("http") {
        set(&mut cfg, "http_listen", h)?;
    }
    if let Some(t) = a.one("token") {
        set(&mut cfg, "http_token", t)?;
    }
    if let Some(c) = a.one("https-cert") {
        set(&mut cfg, "http_tls_cert", c)?;
    }
    if let Some(k) = a.one("https-key") {
        set(&mut cfg, "http_tls_key", k)?;
    }
    apply_sets(&mut cfg, &a)?;
    let mut participants: Vec<(String, String, String)> = Vec::new();
    for p in a.all("participant") {
        let (conf, uri) = p
            .split_once('=')
            .ok_or_else(|| format!("--participant {p:?}: expected CONF=MSRP_URI"))?;
        if conf.is_empty() || uri.trim().is_empty() {
            return Err(format!("--participant {p:?}: expected CONF=MSRP_URI"));
        }
        let n = participants.iter().filter(|(c, _, _)| c == conf).count() + 1;
        participants.push((conf.to_string(), format!("p{n}"), uri.trim().to_string()));
    }
    if participants.is_empty() {
        return Err("serve needs at least one --participant CONF=MSRP_URI".into());
    }
    std::fs::create_dir_all(&cfg.spool_dir)
        .map_err(|e| format!("--spool {}: {e}", cfg.spool_dir.display()))?;
    cfg.validate().map_err(|e| e.to_string())?;
    let engine = std::sync::Arc::new(Engine::start(cfg.clone()).map_err(|e| e.to_string())?);
    for (conf, key, uri) in &participants {
        engine
            .join_direct(conf, key, uri)
            .map_err(|e| format!("--participant {conf}={uri}: {e}"))?;
    }
    // Joins are queued: wait until the roster has them, so the page shows them at once.
    let t0 = Instant::now();
    let joined = || {
        participants.iter().all(|(c, k, _)| {
            engine
                .roster()
                .conference(c)
                .is_some_and(|x| x.participants.iter().any(|p| &p.key == k))
        })
    };
    while !joined() {
        if t0.elapsed() > Duration::from_secs(5) {
            return Err("the engine did not take the participants".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let server =
        msrpcast::http::HttpServer::start(engine.clone(), &cfg).map_err(|e| e.to_string())?;
    let url = format!(
        "{}://{}/",
        if server.is_https() { "https" } else { "http" },
        server.local_addr()
    );
    println!("{url}");
    let mut confs: Vec<&str> = participants.iter().map(|(c, _, _)| c.as_str()).collect();
    confs.dedup();
    for c in confs {
        eprintln!("msrpcast: conference {c:?}: {url}?conference={c}",);
    }
    if cfg.http_token.is_none() {
        eprintln!(
            "msrpcast: no --token: the page and API need no login and listen on loopback only"
        );
    }
    // Serve until a signal ends the process (no handler: `unsafe` stays out of the CLI).
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
