//! `msrpcast receive`: the library's passive receiver (or one behind a relay) as a process,
//! over plain TCP or TLS (`msrps`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use msrpcast::runtime::receive::{
    Listen, ReceiveServer, ReceiveTls, RelayLogin, Sink, DEFAULT_HANDSHAKE_TIMEOUT,
};
use msrpcast::tls::{Fingerprint, Verify};

use crate::misbehave::Misbehave;
use crate::{exit, parse_misbehave, Fail};

/// How saved files are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NameBy {
    /// The name the sender offered (Content-Disposition), made safe; the Message-ID without one.
    Offered,
    /// The MSRP Message-ID (a later message with the same id replaces the file; for tests).
    MessageId,
}

#[derive(Args)]
pub struct ReceiveArgs {
    /// Listen address; port 0 picks a free one (the first line shows it).
    #[arg(
        long,
        value_name = "HOST:PORT",
        required_unless_present = "relay",
        conflicts_with = "relay"
    )]
    listen: Option<SocketAddr>,
    /// Instead of listening: connect to this MSRP relay (RFC 4976), authenticate with AUTH and
    /// receive on that connection. An msrps:// relay is reached over TLS; its certificate must
    /// chain to a trusted root (the system's, or --tls-ca) and name the URI's host, unless
    /// --relay-fingerprint or --tls-verify say otherwise.
    #[arg(long, value_name = "MSRP_URI", requires = "relay_auth")]
    relay: Option<String>,
    /// The relay login.
    #[arg(long, value_name = "USER:PASS")]
    relay_auth: Option<String>,
    /// The lifetime to ask the relay for (Expires).
    #[arg(long, value_name = "SECONDS")]
    relay_expires: Option<u32>,
    /// PEM certificate chain (end-entity first). With --listen: accept TLS connections only and
    /// print an msrps:// URI. With an msrps:// --relay: presented if the relay asks for a client
    /// certificate.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// msrps:// --relay: PEM CA bundle trusted for the relay's certificate instead of the
    /// system's roots.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// msrps:// --relay: how the relay's certificate is checked: host (chain to a trusted root,
    /// naming the URI's host; the default), fingerprint (equal to a --relay-fingerprint; the
    /// default when one is given) or none (anything; a warning says so).
    #[arg(long, value_name = "MODE", value_parser = parse_verify)]
    tls_verify: Option<Verify>,
    /// msrps:// --relay: accept exactly the certificate with this fingerprint (RFC 8122 syntax,
    /// e.g. "sha-256 4A:0C:…"); may be given more than once.
    #[arg(long, value_name = "FINGERPRINT", value_parser = parse_fingerprint)]
    relay_fingerprint: Vec<Fingerprint>,
    /// Deadline of a TLS handshake, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64)]
    tls_handshake_timeout_ms: u64,
    /// The session id of our URI: incoming frames must name it in their To-Path.
    #[arg(long, value_name = "ID")]
    session_id: String,
    /// Folder for the received files (created if missing).
    #[arg(long, value_name = "DIR", required_unless_present = "discard")]
    dir: Option<PathBuf>,
    /// How saved files are named.
    #[arg(long, value_enum, default_value_t = NameBy::Offered)]
    name_by: NameBy,
    /// Exit after this many messages (complete or failed).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Parse and count only, save nothing (benchmarks).
    #[arg(long)]
    discard: bool,
    /// Skip SHA-1 (lines then show `-`; benchmarks: hashing would make the receiver the limit).
    #[arg(long)]
    no_hash: bool,
    /// I/O threads; accepted connections go to the least loaded one.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Misbehave on purpose (tests), like a real phone or a broken one: rate=BYTES_PER_S,
    /// close-after=BYTES, close-after-bytes=BYTES (once per receiver: the part file is kept and a
    /// resumed transfer completes it), reply-481, never-answer, failure-report, close-after-report,
    /// report-per-chunk, nagle, flood; several joined by commas (e.g. report-per-chunk,nagle). An
    /// unknown one is refused with the list of known ones.
    #[arg(long, value_name = "BEHAVIOUR", value_parser = parse_misbehave)]
    misbehave: Option<Misbehave>,
    /// Largest message accepted (bytes, with --listen): a chunk whose Byte-Range reaches past
    /// it is refused with 413 before the file grows.
    #[arg(long, value_name = "BYTES", default_value_t = msrpcast::runtime::receive::DEFAULT_MAX_MESSAGE_BYTES)]
    max_bytes: u64,
}

fn parse_verify(s: &str) -> Result<Verify, String> {
    s.parse()
}

fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    Fingerprint::parse(s).map_err(|e| e.to_string())
}

/// The TLS settings of the command line: `None` for plain TCP; a usage error for options that do
/// not apply (TLS options for a plain relay, relay options with --listen).
fn tls_of(a: &ReceiveArgs, relay_secure: Option<bool>) -> Result<Option<ReceiveTls>, Fail> {
    let relay_only =
        a.tls_ca.is_some() || a.tls_verify.is_some() || !a.relay_fingerprint.is_empty();
    let verify = match relay_secure {
        None => {
            if relay_only {
                return Err(Fail::usage(
                    "--tls-ca, --tls-verify and --relay-fingerprint are for an msrps:// --relay",
                ));
            }
            if a.tls_cert.is_none() {
                return Ok(None);
            }
            // A listener checks no peer certificate.
            Verify::None
        }
        Some(false) => {
            if relay_only || a.tls_cert.is_some() {
                return Err(Fail::usage(
                    "TLS options with an msrp:// --relay: use an msrps:// URI for TLS",
                ));
            }
            return Ok(None);
        }
        Some(true) => {
            let pinned = !a.relay_fingerprint.is_empty();
            let v = a.tls_verify.unwrap_or(if pinned {
                Verify::Fingerprint
            } else {
                Verify::Host
            });
            match (v, pinned) {
                (Verify::Fingerprint, false) => {
                    return Err(Fail::usage(
                        "--tls-verify fingerprint needs --relay-fingerprint",
                    ))
                }
                (Verify::Host | Verify::None, true) => {
                    return Err(Fail::usage(format!(
                    "--relay-fingerprint with --tls-verify {v}: the fingerprint would be ignored"
                )))
                }
                _ => {}
            }
            if v == Verify::None {
                eprintln!(
                    "msrpcast: warning: --tls-verify none: the relay's certificate is not checked"
                );
            }
            v
        }
    };
    let mut tls = ReceiveTls::load(
        a.tls_cert.clone(),
        a.tls_key.clone(),
        a.tls_ca.clone(),
        verify,
        a.relay_fingerprint.clone(),
    )
    .map_err(|e| Fail::start(format!("TLS: {e}")))?;
    tls.handshake_timeout = Duration::from_millis(a.tls_handshake_timeout_ms.max(1));
    Ok(Some(tls))
}

pub fn run(a: ReceiveArgs) -> Result<u8, Fail> {
    let sink = match (&a.dir, a.discard) {
        (_, true) => Sink::Discard,
        (Some(dir), false) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Fail::start(format!("--dir {}: {e}", dir.display())))?;
            match a.name_by {
                NameBy::Offered => Sink::Named(dir.clone()),
                NameBy::MessageId => Sink::Dir(dir.clone()),
            }
        }
        // clap requires --dir unless --discard.
        (None, false) => return Err(Fail::usage("receive needs --dir DIR (or --discard)")),
    };
    let hash = !a.no_hash;
    let hooks = a.misbehave.as_ref().map(Misbehave::hooks);
    let server = match (&a.relay, a.listen) {
        (Some(relay), _) => {
            let uri = msrpcast::msrp::Uri::parse_slice(relay.as_bytes())
                .map_err(|e| Fail::usage(format!("--relay {relay:?}: {e}")))?;
            let auth = a
                .relay_auth
                .as_deref()
                .ok_or_else(|| Fail::usage("receive --relay needs --relay-auth USER:PASS"))?;
            let mut login =
                RelayLogin::parse(auth).map_err(|e| Fail::usage(format!("--relay-auth: {e}")))?;
            login.expires = a.relay_expires;
            login.tls = tls_of(&a, Some(uri.secure))?;
            ReceiveServer::start_via_relay(&uri, &login, &a.session_id, sink, hash, hooks)
                .map_err(|e| Fail::start(format!("relay {relay}: {e}")))?
        }
        (None, Some(listen)) => ReceiveServer::listen(Listen {
            addr: listen,
            session_id: a.session_id.clone(),
            sink,
            hash,
            hooks,
            threads: a.threads,
            max_message_bytes: a.max_bytes,
            tls: tls_of(&a, None)?,
        })
        .map_err(|e| Fail::start(format!("cannot listen on {listen}: {e}")))?,
        (None, None) => {
            return Err(Fail::usage(
                "receive needs --listen HOST:PORT (or --relay MSRP_URI)",
            ))
        }
    };
    // The To-Path for senders: our URI, or the relay's Use-Path then our URI.
    println!("{}", server.to_path_text());
    let mut seen = 0u64;
    loop {
        if a.count.is_some_and(|c| seen >= c) {
            return Ok(exit::OK);
        }
        let Ok(r) = server.events.recv() else {
            if server.relay.is_some() {
                eprintln!("msrpcast: the relay closed the connection");
                return Ok(exit::FAILED);
            }
            return Ok(exit::OK);
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
