//! `msrpcast serve`: the engine and the HTTP upload page and API, participants given directly.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use msrpcast::config::Config;
use msrpcast::runtime::Engine;

use crate::{Fail, SetArgs};

#[derive(Args)]
pub struct ServeArgs {
    /// Listen address of the page and API (http_listen; default 127.0.0.1:8088, port 0 picks a
    /// free one). Without --token only a loopback address is used.
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<String>,
    /// The access token (http_token): `Authorization: Bearer T`, or the page's login form, which
    /// sets an HttpOnly SameSite=Strict cookie.
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// PEM certificate chain for HTTPS (http_tls_cert); with --https-key the page and API are
    /// served over HTTPS only, with Strict-Transport-Security (http_hsts_max_age_s) and a Secure
    /// login cookie.
    #[arg(long, value_name = "FILE", requires = "https_key")]
    https_cert: Option<String>,
    /// The PEM private key of --https-cert (http_tls_key).
    #[arg(long, value_name = "FILE", requires = "https_cert")]
    https_key: Option<String>,
    /// Spool folder for uploads in progress (spool_dir); created with mode 0700 if missing.
    #[arg(long, value_name = "DIR")]
    spool: String,
    /// Adds a participant to conference CONF (repeatable; the participants of a conference are
    /// named p1, p2, ... in the order given). MSRP_URI may be a space-separated path (relays
    /// first) as `msrpcast receive --relay` prints.
    #[arg(long, value_name = "CONF=MSRP_URI", required = true)]
    participant: Vec<String>,
    /// MSRP listen address (msrp_listen; default 127.0.0.1:0 here).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    msrp: String,
    #[command(flatten)]
    set: SetArgs,
}

/// Creates `dir` (and missing parents) with mode 0700, as the spool itself would: the folder
/// holds uploads before they are delivered, so no other user may read it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

pub fn run(a: ServeArgs) -> Result<u8, Fail> {
    // Before any engine or HTTP thread exists, so that they all inherit the blocked SIGHUP and
    // only the wait below takes it.
    let hangups = msrpcast::ffi::hangup::Hangups::block()
        .map_err(|e| Fail::start(format!("blocking SIGHUP: {e}")))?;
    let mut cfg = Config::default();
    let set = |cfg: &mut Config, k: &str, v: &str| {
        cfg.set(k, v).map_err(|e| Fail::usage(format!("{k}: {e}")))
    };
    set(&mut cfg, "msrp_listen", &a.msrp)?;
    set(&mut cfg, "spool_dir", &a.spool)?;
    if let Some(h) = &a.http {
        set(&mut cfg, "http_listen", h)?;
    }
    if let Some(t) = &a.token {
        set(&mut cfg, "http_token", t)?;
    }
    if let (Some(c), Some(k)) = (&a.https_cert, &a.https_key) {
        set(&mut cfg, "http_tls_cert", c)?;
        set(&mut cfg, "http_tls_key", k)?;
    }
    a.set.apply(&mut cfg)?;
    let mut participants: Vec<(String, String, String)> = Vec::new();
    for p in &a.participant {
        let (conf, uri) = p
            .split_once('=')
            .filter(|(c, u)| !c.is_empty() && !u.trim().is_empty())
            .ok_or_else(|| Fail::usage(format!("--participant {p:?}: expected CONF=MSRP_URI")))?;
        let n = participants.iter().filter(|(c, _, _)| c == conf).count() + 1;
        participants.push((conf.to_string(), format!("p{n}"), uri.trim().to_string()));
    }
    create_private_dir(&cfg.spool_dir)
        .map_err(|e| Fail::start(format!("--spool {}: {e}", cfg.spool_dir.display())))?;
    cfg.validate().map_err(|e| Fail::usage(e.to_string()))?;
    let engine =
        std::sync::Arc::new(Engine::start(cfg.clone()).map_err(|e| Fail::start(e.to_string()))?);
    for (conf, key, uri) in &participants {
        engine
            .join_direct(conf, key, uri)
            .map_err(|e| Fail::usage(format!("--participant {conf}={uri}: {e}")))?;
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
            return Err(Fail::start("the engine did not take the participants"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let server = msrpcast::http::HttpServer::start(engine.clone(), &cfg)
        .map_err(|e| Fail::start(e.to_string()))?;
    let scheme = if server.is_https() { "https" } else { "http" };
    let url = format!("{scheme}://{}/", server.local_addr());
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
    // Serve until SIGINT or SIGTERM ends the process (default handling); each SIGHUP re-reads
    // the TLS certificates (a renewed one is used by new connections).
    loop {
        if let Err(e) = hangups.wait() {
            return Err(Fail::start(format!("waiting for SIGHUP: {e}")));
        }
        match msrpcast::http::reload_tls(&engine, Some(&server)) {
            Ok(done) => eprintln!(
                "msrpcast: SIGHUP: certificates reloaded ({})",
                match (done.msrp, done.https) {
                    (true, true) => "MSRP and HTTPS",
                    (true, false) => "MSRP",
                    _ => "HTTPS",
                }
            ),
            Err(e) => eprintln!("msrpcast: SIGHUP: {e}"),
        }
    }
}
