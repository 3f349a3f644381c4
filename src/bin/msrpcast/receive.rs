//! `msrpcast receive`: the library's passive receiver (or one behind a relay) as a process.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use msrpcast::runtime::receive::{Misbehave, ReceiveServer, RelayLogin, Sink};

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
    /// receive on that connection.
    #[arg(long, value_name = "MSRP_URI", requires = "relay_auth")]
    relay: Option<String>,
    /// The relay login.
    #[arg(long, value_name = "USER:PASS")]
    relay_auth: Option<String>,
    /// The lifetime to ask the relay for (Expires).
    #[arg(long, value_name = "SECONDS")]
    relay_expires: Option<u32>,
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
    /// I/O threads of the listener.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Misbehave on purpose (tests), like a real phone or a broken one: rate=BYTES_PER_S,
    /// close-after=BYTES, reply-481, never-answer, failure-report, close-after-report,
    /// report-per-chunk, nagle, flood; several joined by commas (e.g. report-per-chunk,nagle). An
    /// unknown one is refused with the list of known ones.
    #[arg(long, value_name = "BEHAVIOUR", value_parser = parse_misbehave)]
    misbehave: Option<Misbehave>,
    /// Largest message accepted (bytes, with --listen): a chunk whose Byte-Range reaches past
    /// it is refused with 413 before the file grows.
    #[arg(long, value_name = "BYTES", default_value_t = msrpcast::runtime::receive::DEFAULT_MAX_MESSAGE_BYTES)]
    max_bytes: u64,
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
            ReceiveServer::start_via_relay(&uri, &login, &a.session_id, sink, hash, a.misbehave)
                .map_err(|e| Fail::start(format!("relay {relay}: {e}")))?
        }
        (None, Some(listen)) => ReceiveServer::start_limited(
            listen,
            &a.session_id,
            sink,
            hash,
            a.misbehave,
            a.threads,
            a.max_bytes,
        )
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
