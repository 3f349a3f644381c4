//! `msrpcast`: the command-line tool for development, demos and interoperability checks.
//!
//! - `send` ([`send`]): deliver a file to MSRP URIs, with progress per receiver.
//! - `receive` ([`receive`]): a passive receiver (or one behind an MSRP relay) saving files.
//! - `serve` ([`serve`]): the engine and the HTTP upload page and API without a SIP server.
//! - `settings`, `completions`: the engine settings; shell completion scripts.
//!
//! The options are declared here with clap; each subcommand's module does the work. All of them
//! use the library's own engine and runtime.

mod misbehave;
mod receive;
mod send;
mod serve;

use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use msrpcast::config::Config;

use crate::misbehave::Misbehave;

/// Exit statuses; the same table is printed by `--help`.
pub mod exit {
    /// Everything asked for was done.
    pub const OK: u8 = 0;
    /// `send`: at least one receiver did not get the file. `receive --relay`: the relay closed.
    pub const FAILED: u8 = 1;
    /// Bad command line or setting (clap's own usage errors use 2 as well).
    pub const USAGE: u8 = 2;
    /// Could not start: a file, folder or listen address, the engine, the relay login.
    pub const START: u8 = 3;
}

const EXIT_TABLE: &str = "\
Exit status:
  0  everything asked for was done
  1  send: at least one receiver did not get the file (failed or timed out);
     receive --relay: the relay closed the connection
  2  bad command line or setting
  3  could not start: FILE, --dir, --spool, a listen address, the engine or the relay login";

#[derive(Parser)]
#[command(
    name = "msrpcast",
    version,
    about = "Push files to SIP conference participants over MSRP (RFC 4975, RFC 5547)",
    after_help = EXIT_TABLE,
    args_override_self = true,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deliver FILE as one MSRP message (Success-Report: yes) to every --to URI.
    ///
    /// One line per receiver on stdout at the end (`ok URI BYTES bytes` or `failed URI CODE
    /// REASON`, CODE `-` when there is none), a summary on stderr. On a terminal a progress bar
    /// per receiver is drawn on stderr; otherwise state changes are plain lines on stderr. With
    /// --json, stdout carries one JSON object per event instead.
    #[command(after_help = EXIT_TABLE)]
    Send(send::SendArgs),
    /// A passive MSRP receiver that saves what it receives.
    ///
    /// Prints the To-Path for senders as its first line (its own URI, or behind --relay the
    /// relay's Use-Path then its own URI, space separated: give it whole to `send --to`), then
    /// one line per message: `received MESSAGE-ID BYTES SHA1 PATH` (PATH is the rest of the line)
    /// or `failed MESSAGE-ID WHY`. Files are saved in --dir under the name the sender offered
    /// (Content-Disposition), made safe: only its last path component, no control characters,
    /// no leading dots, `NAME (1).EXT` ... when taken; without an offered name, or with
    /// --name-by message-id, under the MSRP Message-ID (replacing an older file of that name).
    #[command(after_help = EXIT_TABLE)]
    Receive(receive::ReceiveArgs),
    /// The engine and the HTTP upload page and API in one process, without a SIP server.
    ///
    /// Each participant is reached directly at its MSRP URI (no SDP exchange), e.g. a `msrpcast
    /// receive`. Prints the page's URL as its first line on stdout, then serves until it is
    /// killed. SIGHUP re-reads the TLS certificates (--https-cert/--https-key, and tls_cert/
    /// tls_key/tls_ca with --set msrp_tls=on) for new connections. Stopping: SIGINT or SIGTERM
    /// end the process at once (default signal handling).
    /// Uploads and deliveries running then are cut off; the next start with the same --spool
    /// removes the partial uploads and offers the complete files again (spool_persist).
    #[command(after_help = EXIT_TABLE)]
    Serve(serve::ServeArgs),
    /// Every engine setting (for --set, Kamailio modparams, FreeSWITCH's msrpcast.conf.xml) with
    /// its meaning and default.
    Settings,
    /// Prints a shell completion script, e.g. `msrpcast completions bash >
    /// /etc/bash_completion.d/msrpcast`.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// Options shared by the commands that run an engine.
#[derive(Args, Clone, Default)]
pub struct SetArgs {
    /// Any engine setting, applied after the other options (`msrpcast settings` lists them),
    /// e.g. --set max_file_bytes=1GiB. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl SetArgs {
    pub fn apply(&self, cfg: &mut Config) -> Result<(), Fail> {
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| Fail::usage(format!("--set {kv:?}: expected KEY=VALUE")))?;
            cfg.set(k, v).map_err(|e| Fail::usage(e.to_string()))?;
        }
        Ok(())
    }
}

/// An error with the exit status it implies.
#[derive(Debug)]
pub struct Fail {
    pub status: u8,
    pub message: String,
}

impl Fail {
    pub fn usage(message: impl Into<String>) -> Fail {
        Fail {
            status: exit::USAGE,
            message: message.into(),
        }
    }
    pub fn start(message: impl Into<String>) -> Fail {
        Fail {
            status: exit::START,
            message: message.into(),
        }
    }
}

/// `--misbehave` goes through the type's own `FromStr`, so new behaviours need no CLI change.
pub fn parse_misbehave(s: &str) -> Result<Misbehave, String> {
    s.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(a) => send::run(a),
        Command::Receive(a) => receive::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Settings => {
            for (k, doc) in Config::keys() {
                println!("{k}\n    {doc}");
            }
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "msrpcast",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("msrpcast: {}", e.message);
            ExitCode::from(e.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
