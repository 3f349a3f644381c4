//! Every engine setting in one [`Config`], settable by string key and string value.
//!
//! This is what the C ABI (`msrpcast_config_set(key, value)`), the Kamailio `modparam`s, the
//! FreeSWITCH XML configuration and the command-line flags all map onto, so the key names and the
//! value syntax are the same everywhere:
//!
//! - booleans: `yes/no`, `true/false`, `1/0`, `on/off` (any case);
//! - sizes: plain bytes, or a number with a binary suffix `K`/`KiB`, `M`/`MiB`, `G`/`GiB`,
//!   `T`/`TiB` (any case, `K` = `KiB` = 1024), e.g. `10GiB`, `512k`;
//! - durations: whole milliseconds (keys ending in `_ms`);
//! - optional strings (`http_token`, `msrp_advertise`, `contact`, `outbound_proxy`) and file
//!   paths (`tls_cert`, `tls_key`, `tls_ca`, `http_tls_cert`, `http_tls_key`): the empty string
//!   means "not set".
//!
//! [`Config::set`] checks one value on its own; [`Config::validate`] checks the whole
//! configuration, including the rules that involve several settings, and is what an engine runs
//! before it starts. [`Config::keys`] lists every key with its documentation and default.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::level::Level;
use crate::tls::Verify;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// Largest allowed `chunk_bytes`.
pub const MAX_CHUNK_BYTES: u64 = MIB;
/// Largest allowed `io_threads`.
pub const MAX_IO_THREADS: usize = 256;
/// Largest allowed `http_hsts_max_age_s` (about ten years).
pub const MAX_HSTS_S: usize = 315_360_000;

/// A setting that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    /// The setting's key, as given.
    pub key: String,
    /// Why the value was refused (empty for [`ConfigErrorKind::Unknown`]).
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// No setting has this key.
    Unknown,
    /// The value does not parse, is out of range, or conflicts with another setting.
    Invalid,
}

impl ConfigError {
    fn unknown(key: &str) -> ConfigError {
        ConfigError {
            kind: ConfigErrorKind::Unknown,
            key: key.to_owned(),
            reason: String::new(),
        }
    }

    fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ConfigErrorKind::Invalid,
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ConfigErrorKind::Unknown => write!(f, "unknown setting {}", self.key),
            ConfigErrorKind::Invalid => {
                write!(f, "invalid value for {}: {}", self.key, self.reason)
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The host (and optional port) put into `a=path` instead of the listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertise {
    /// A host name, an IPv4 address or an IPv6 address (without brackets).
    pub host: String,
    /// `None`: the port of `msrp_listen`.
    pub port: Option<u16>,
}

impl fmt::Display for Advertise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = self.host.contains(':');
        match (v6, self.port) {
            (true, Some(p)) => write!(f, "[{}]:{}", self.host, p),
            (true, None) => write!(f, "[{}]", self.host),
            (false, Some(p)) => write!(f, "{}:{}", self.host, p),
            (false, None) => f.write_str(&self.host),
        }
    }
}

/// Declares every setting once: its key (= the [`Config`] field), type, default, parser (which is
/// also its validation: [`Config::set`] runs it on a new value, [`Config::validate`] on the
/// current one), formatter (its form for [`Config::get`], which the parser accepts back) and
/// documentation (ending with the default; a test checks the two agree). Everything else —
/// the struct, [`Default`], [`Config::keys`], `set`, `get` — is derived from this one table.
macro_rules! settings {
    ($(
        $key:ident: $ty:ty = $default:expr,
            parse $parse:expr, show $show:expr,
            $doc:literal;
    )*) => {
        /// Every engine setting. Field names are the setting keys; see [`Config::keys`] for
        /// each one's meaning and default (plain text, not rustdoc: it is also printed by
        /// `msrpcast settings`). Durations are in milliseconds, sizes in bytes.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Config {
            $(pub $key: $ty,)*
        }

        impl Default for Config {
            fn default() -> Config {
                Config { $($key: $default,)* }
            }
        }

        /// Key, documentation (ending with the default), in the order of [`Config`]'s fields.
        static KEYS: &[(&str, &str)] = &[$((stringify!($key), $doc),)*];

        impl Config {
            /// Parses `v` for `key` and stores it; `None` for an unknown key.
            fn set_key(&mut self, key: &str, v: &str) -> Option<Result<(), String>> {
                Some(match key {
                    $(stringify!($key) => {
                        let parse: fn(&str) -> Result<$ty, String> = $parse;
                        parse(v).map(|x| self.$key = x)
                    })*
                    _ => return None,
                })
            }

            /// The value of `key` in the form its parser reads; `None` for an unknown key.
            fn get_key(&self, key: &str) -> Option<String> {
                Some(match key {
                    $(stringify!($key) => {
                        let show: fn(&$ty) -> String = $show;
                        show(&self.$key)
                    })*
                    _ => return None,
                })
            }

            /// Each value on its own, through its key's parser (fields are public and may have
            /// been assigned directly): the first one the parser refuses.
            fn check_each(&self) -> Result<(), ConfigError> {
                $({
                    let parse: fn(&str) -> Result<$ty, String> = $parse;
                    let show: fn(&$ty) -> String = $show;
                    parse(&show(&self.$key))
                        .map_err(|r| ConfigError::invalid(stringify!($key), r))?;
                })*
                Ok(())
            }
        }
    };
}

settings! {
    http_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8088)),
        parse parse_socket_addr, show show::plain,
        "Address of the HTTP upload page and API (IP:port). Default 127.0.0.1:8088.";
    http_token: Option<String> = None,
        parse parse_token, show show::opt,
        "Token required for uploads and the API (Bearer or login form). Without one the HTTP listener must be on a loopback address. Default: none.";
    http_max_connections: usize = 256,
        parse |v| parse_count(v, 1, 1 << 20), show show::plain,
        "Concurrent HTTP connections; more get 503. Default 256.";
    http_max_uploads: usize = 16,
        parse |v| parse_count(v, 1, 1 << 20), show show::plain,
        "Concurrent uploads (one counts until its SHA-1 is known, which may be shortly after its 201); more get 503. Default 16.";
    http_idle_timeout_ms: u64 = 30_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "An HTTP connection without progress for this long gets 408 and is closed. Default 30000.";
    http_sse_interval_ms: u64 = 250,
        parse |v| parse_ms(v, 1), show show::plain,
        "Shortest interval between two progress events of one transfer on /api/events. Default 250.";
    http_head_timeout_ms: u64 = 10_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "A request head must arrive whole within this time of its first byte, else 408 and the connection closes (however slowly bytes trickle in). At http_max_connections a new connection displaces the oldest one still waiting for its head, so slow heads cannot lock real clients out. Default 10000.";
    http_allowed_hosts: Vec<Advertise> = Vec::new(),
        parse parse_host_list, show show::list,
        "Without http_token: host names (host or host:port, comma-separated) accepted besides the loopback names in the Host header and in the Origin of requests (a request naming another Host gets 421, one from another Origin 403: DNS rebinding and cross-site posts). List the public name here when a proxy on this machine forwards to the page. Default: none.";
    http_cors_origins: Vec<String> = Vec::new(),
        parse crate::http::cors::parse_origins, show show::list,
        "Origins (scheme://host[:port], comma-separated, never *) of integrators' own pages that may call the API from a browser: their requests get Access-Control-Allow-Origin with credentials allowed, and OPTIONS preflights are answered; other origins get no CORS headers (preflights 403). Default: none (CORS off).";
    http_login_max_failures: usize = 20,
        parse |v| parse_count(v, 1, 1 << 20), show show::plain,
        "Failed POST /login per minute over all clients; beyond that /login answers 429 until the allowance refills (Bearer requests are not affected). Default 20.";
    http_max_event_streams: usize = 64,
        parse |v| parse_count(v, 1, 1 << 20), show show::plain,
        "Concurrent /api/events streams, counted apart from http_max_connections; more get 503. Default 64.";
    http_event_stream_max_ms: u64 = 3_600_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "An /api/events stream is ended after this long (the browser reconnects), so a vanished client cannot hold it forever. Default 3600000.";
    http_tls_cert: Option<PathBuf> = None,
        parse parse_file, show show::opt_path,
        "PEM certificate chain (end-entity first) of the HTTP page and API: HTTPS is on when this and http_tls_key are set (then with Strict-Transport-Security and a Secure login cookie). Default: none (plain HTTP).";
    http_tls_key: Option<PathBuf> = None,
        parse parse_file, show show::opt_path,
        "PEM private key of http_tls_cert (PKCS#8, PKCS#1 or SEC1, unencrypted). Default: none.";
    http_hsts_max_age_s: u64 = 31_536_000,
        parse |v| parse_count(v, 0, MAX_HSTS_S).map(|n| n as u64), show show::plain,
        "max-age of the Strict-Transport-Security header sent on every HTTPS response; 0 sends none. Default 31536000.";
    msrp_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2855)),
        parse parse_socket_addr, show show::plain,
        "Address of the MSRP listener (IP:port). Default 127.0.0.1:2855.";
    msrp_advertise: Option<Advertise> = None,
        parse parse_advertise, show show::opt,
        "Host or host:port put into a=path instead of the listen address; required when msrp_listen is 0.0.0.0 or [::] (or behind NAT). Default: none.";
    msrp_reuse_port: bool = true,
        parse parse_bool, show show::plain,
        "Bind outgoing MSRP connections to the listen port as their source port. Default true.";
    msrp_max_pending: usize = 64,
        parse |v| parse_count(v, 1, 1 << 20), show show::plain,
        "Connections accepted on the MSRP listener that have not yet sent their first frame (which names their session); more are closed at once. Default 64.";
    msrp_pending_max_bytes: u64 = 16 * 1024,
        parse |v| parse_size(v, 1), show show::size,
        "Bytes such a connection may send before its first frame is complete; more closes it. Default 16KiB.";
    max_name_lookups: usize = 16,
        parse |v| parse_count(v, 1, 4096), show show::plain,
        "Name resolutions of participants' MSRP hosts running at once, each on a short-lived thread of its own; a delivery needing one more fails. A resolution is given connect_timeout_ms. Default 16.";
    max_queued_commands: usize = 65_536,
        parse |v| parse_count(v, 1, 1 << 24), show show::plain,
        "Calls from the host, the HTTP API and the RPCs (joins, uploads, answers, ...) waiting for the engine's core thread at most; one more is refused at once as busy (MSRPCAST_ERR_BUSY) rather than waiting. The queue is allocated whole at start, about 128 bytes per place. Default 65536.";
    msrp_max_owed_responses: usize = 64,
        parse |v| parse_count(v, 1, 65536), show show::plain,
        "Responses to a participant's own MSRP requests (keep-alive SENDs) queued on its delivery connection at most: at this many unread, its frames are no longer read until it takes them, and left so for transaction_timeout_ms the delivery fails. Default 64.";
    msrp_max_report_ranges: usize = 256,
        parse |v| parse_count(v, 1, 65536), show show::plain,
        "Disjoint byte ranges a participant's success REPORTs may acknowledge in one delivery before they join up; more fails that delivery (ranges beyond the message size are ignored). Default 256.";
    msrp_tls: bool = false,
        parse parse_bool, show show::plain,
        "MSRP over TLS (msrps, RFC 4975 section 14): offers use TCP/TLS/MSRP with msrps paths and a=fingerprint, and answers asking TLS are honoured. Off: plain offers, and an answer asking TLS fails its delivery before any byte is sent. On needs tls_cert and tls_key. Default off.";
    tls_cert: Option<PathBuf> = None,
        parse parse_file, show show::opt_path,
        "PEM certificate chain (end-entity first) presented on MSRP TLS connections, both as server and as client. Default: none.";
    tls_key: Option<PathBuf> = None,
        parse parse_file, show show::opt_path,
        "PEM private key of tls_cert (PKCS#8, PKCS#1 or SEC1, unencrypted). Default: none.";
    tls_ca: Option<PathBuf> = None,
        parse parse_file, show show::opt_path,
        "PEM CA bundle trusted for MSRP peers instead of the system store. Default: none (the system store).";
    tls_verify: Verify = Verify::Host,
        parse str::parse, show show::plain,
        "How an MSRP TLS peer's certificate is checked: host (it chains to a trusted CA and names the host of the msrps URI), fingerprint (it matches the answer's a=fingerprint when there is one, else host), or none (anything; logged as a warning at start). Default host.";
    tls_verify_cache: usize = 1024,
        parse |v| parse_count(v, 0, 1 << 20), show show::plain,
        "With tls_verify host: how many peer certificate chains accepted for a host are remembered, each for 10 s, so that connecting to the same peer again (a fan-out starting many deliveries) does not check the same chain against the trusted roots again (one signature check per certificate). Only a byte-for-byte identical chain for the same host counts; the handshake signature is checked on every connection; an expiring certificate is noticed at most 10 s late. 0: every chain is checked every time. Default 1024.";
    tls_handshake_timeout_ms: u64 = 10_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "Deadline of one MSRP TLS handshake, counted from the TCP connection. Default 10000.";
    spool_dir: PathBuf = PathBuf::from("/var/spool/msrpcast"),
        parse parse_dir, show show::path,
        "Folder of the spool files (created if missing; files of an earlier run are removed, but the complete ones kept by spool_persist). Default /var/spool/msrpcast.";
    spool_max_bytes: u64 = 10 * GIB,
        parse |v| parse_size(v, 1), show show::size,
        "Disk quota of all spool files together; an upload beyond it fails cleanly. Default 10GiB.";
    max_file_bytes: u64 = 4 * GIB,
        parse |v| parse_size(v, 1), show show::size,
        "Largest accepted file; a larger upload gets 413. Default 4GiB.";
    spool_hash_nice: u8 = 10,
        parse |v| parse_count(v, 0, 19).map(|n| n as u8), show show::plain,
        "How many nice values below the uploading thread the thread hashing an upload (SHA-1, behind the writer) runs, 0 to 19 (at most nice 19): on a busy machine the upload's threads get the cores first and the hash catches up behind them (the 201 does not wait for it; the transfer becomes complete when it is done). 0: the same priority. Default 10.";
    spool_persist: bool = true,
        parse parse_bool, show show::plain,
        "Complete files survive a restart of the engine (and of its host): each gets a small record beside its spool file (written with fsync and rename), and at the next start they are offered again to the conference's participants as they join, except to those who received them already. Off: a stop removes every spool file and the next start removes what a crash left. Partial uploads never survive. Default on.";
    chunk_bytes: u64 = 10_240,
        parse parse_chunk, show show::size,
        "Body bytes per MSRP SEND chunk on a path through an MSRP relay (an a=path with more than one URI), 1 to 1MiB (Kamailio's MSRP relay rejects frames over 10240). Default 10240.";
    direct_chunk_bytes: u64 = 65_536,
        parse parse_chunk, show show::size,
        "Body bytes per MSRP SEND chunk on a direct path (the participant's a=path is its own URI alone, no relay), 1 to 1MiB; at most window_bytes. Larger chunks cost less CPU per byte (fewer frames, responses and system calls; on plain TCP each body goes out with sendfile): 64KiB is what a widely used phone sends itself, and on loopback 256KiB and 1MiB saved little more (docs/architecture.md). Every data chunk's Byte-Range ends in * (FreeSWITCH's receiver needs that above 16352 bytes). Default 64KiB.";
    window_bytes: u64 = 262_144,
        parse |v| parse_size(v, 1), show show::size,
        "Unacknowledged bytes in flight per delivery at its start; at least chunk_bytes. The window grows from here towards max_window_bytes while answers come back in time. Default 262144.";
    max_window_bytes: u64 = 16 << 20,
        parse |v| parse_size(v, 1), show show::size,
        "Largest window of unacknowledged bytes per delivery (bandwidth x round trip of the longest path to fill; 16MiB fills 1 Gbit/s at 130 ms); at or below window_bytes the window is fixed. It bounds retained state (56 bytes per chunk in flight, 92 KiB per delivery at the defaults), not buffers. Default 16MiB.";
    spool_read_ahead_bytes: u64 = 32 << 20,
        parse |v| parse_size(v, 0), show show::size,
        "Spool bytes the deliveries hold read ahead, all together: a delivery reads its file a block at a time (up to 128KiB, never more than its MSRP window lets go at once) while this has room, else one chunk at a time. Default 32MiB.";
    transaction_timeout_ms: u64 = 30_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "Time for an MSRP transaction response before the delivery fails with 408. Default 30000.";
    report_timeout_ms: u64 = 30_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "Time after the last chunk for the success REPORT. Default 30000.";
    answer_timeout_ms: u64 = 60_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "Time for a final answer to the file INVITE. Default 60000.";
    connect_timeout_ms: u64 = 10_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "Time to establish the MSRP TCP connection. Default 10000.";
    resume_retries: usize = 2,
        parse |v| parse_count(v, 0, 100), show show::plain,
        "How often a delivery whose connection dropped after some bytes were confirmed is offered again to the same participant (SIP participants), each time with a=file-range for the bytes still missing (RFC 5547); 0: never, the delivery fails at the drop. Default 2.";
    resume_backoff_ms: u64 = 2_000,
        parse |v| parse_ms(v, 0), show show::plain,
        "Wait before such a re-offer: this many milliseconds times the attempt number (2000, 4000, ...). Default 2000.";
    io_threads: usize = 0,
        parse |v| parse_count(v, 0, MAX_IO_THREADS), show show::plain,
        "I/O threads of the engine; 0 means the number of CPUs. Default 0.";
    offer_to_late_joiners: bool = true,
        parse parse_bool, show show::plain,
        "Offer the conference's earlier complete files to a participant who joins later. Default true.";
    sender_uri: String = "sip:msrpcast@localhost".to_owned(),
        parse parse_sip_uri, show show::plain,
        "SIP URI used as From of the file INVITEs. Default sip:msrpcast@localhost.";
    contact: Option<String> = None,
        parse |v| parse_optional(v, parse_sip_uri), show show::opt,
        "SIP Contact of the file INVITEs. Default: none (the host's own).";
    outbound_proxy: Option<String> = None,
        parse |v| parse_optional(v, parse_sip_uri), show show::opt,
        "SIP URI through which the file INVITEs are sent. Default: none.";
    max_conferences: usize = 10_000,
        parse |v| parse_count(v, 1, usize::MAX), show show::plain,
        "Most conferences known at once. Default 10000.";
    max_participants_per_conference: usize = 1000,
        parse |v| parse_count(v, 1, usize::MAX), show show::plain,
        "Most participants in one conference. Default 1000.";
    max_participants: usize = 100_000,
        parse |v| parse_count(v, 1, usize::MAX), show show::plain,
        "Most participants over all conferences. Default 100000.";
    max_files_per_conference: usize = 1000,
        parse |v| parse_count(v, 1, usize::MAX), show show::plain,
        "Most files (transfers) one conference holds at once; a transfer cancelled with DELETE no longer counts, and at the limit the oldest finished file (upload ended, every delivery ended) makes room. Default 1000.";
    max_finished_transfers: usize = 1000,
        parse |v| parse_count(v, 1, usize::MAX), show show::plain,
        "Finished transfers kept over all conferences (for the status API and late joiners); beyond, the oldest are forgotten and their spool files removed. Default 1000.";
    finished_transfer_ttl_ms: u64 = 86_400_000,
        parse |v| parse_ms(v, 1), show show::plain,
        "A finished transfer is forgotten (and its spool file removed) this long after it last changed. Default 86400000.";
    offer_in_per_participant_per_min: usize = 10,
        parse |v| parse_count(v, 0, 1 << 20), show show::plain,
        "Files one participant may send to its conference (RFC 5547 push offers, msrpcast_offer_in) in any 60 seconds; more are refused with 486 until the minute passes. 0 refuses every file from participants. Default 10.";
    offer_in_max_sessions: usize = 64,
        parse |v| parse_count(v, 0, 1 << 20), show show::plain,
        "Files from participants being received at once, over all conferences (each one an MSRP session the participant connects to); more are refused with 503. 0 refuses every file from participants. Default 64.";
    max_path_uris: usize = 16,
        parse |v| parse_count(v, 1, 1024), show show::plain,
        "Most URIs accepted in an answer's a=path (the participant's relays plus itself); a longer path fails the delivery. Default 16.";
    accept_types: String = "*".to_owned(),
        parse parse_accept_types, show show::plain,
        "Value of a=accept-types in the offers (space-separated MIME types, * for any). Default *.";
    success_report: bool = true,
        parse parse_bool, show show::plain,
        "Ask for a success REPORT (Success-Report: yes) and count a delivery done only when it covers the file. Default true.";
    bind_empty_send: bool = true,
        parse parse_bool, show show::plain,
        "Send an empty SEND first to bind the connection when the engine is the active side (RFC 4975 section 7.1). Default true.";
    log_level: Level = Level::Info,
        parse parse_level, show show::level,
        "Most detailed level logged: error, warn, info or debug. Default info.";
    control_socket: PathBuf = PathBuf::from("/run/msrpcast/control.sock"),
        parse parse_socket_path, show show::path,
        "Path of the engine's AF_UNIX datagram control socket, through which client handles in any process of the host reach the engine (at most 107 bytes); empty for none (single-process hosts calling the engine directly). Default /run/msrpcast/control.sock.";
    http_enabled: bool = true,
        parse parse_bool, show show::plain,
        "Start the HTTP upload page and API together with the engine (C ABI). Default true.";
    upload_dir: Option<PathBuf> = None,
        parse |v| parse_optional(v, parse_dir), show show::opt_path,
        "Folder whose files may be spooled from the local disk (UPLOAD_FILE on the control socket, msrpcast_engine_upload_file, the msrpcast.upload RPC and FreeSWITCH command): the path, relative to it or absolute, must name a regular file inside it once symlinks and .. are resolved. Empty: uploads of local files are refused. Default: none.";
}

/// The formatters of the settings table: each gives the form its key's parser reads back. Each
/// takes `&T` of its field's type exactly (the table stores them as `fn(&T) -> String`), hence
/// `&PathBuf` and `&Vec<T>`.
#[allow(clippy::ptr_arg)]
mod show {
    use std::fmt::Display;
    use std::path::PathBuf;

    use crate::level::Level;

    pub fn plain<T: Display>(v: &T) -> String {
        v.to_string()
    }

    pub fn size(v: &u64) -> String {
        super::format_size(*v)
    }

    /// An unset optional value is the empty string.
    pub fn opt<T: Display>(v: &Option<T>) -> String {
        v.as_ref().map(ToString::to_string).unwrap_or_default()
    }

    pub fn path(v: &PathBuf) -> String {
        v.display().to_string()
    }

    pub fn opt_path(v: &Option<PathBuf>) -> String {
        v.as_ref().map(path).unwrap_or_default()
    }

    /// Comma-separated, no spaces.
    pub fn list<T: Display>(v: &Vec<T>) -> String {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn level(v: &Level) -> String {
        v.name().to_owned()
    }
}

impl Config {
    /// Every key with its documentation and default, in a stable order (for `--help` and docs).
    pub fn keys() -> &'static [(&'static str, &'static str)] {
        KEYS
    }

    /// Sets one setting from its string form. The value is checked on its own; rules that involve
    /// other settings are checked by [`Config::validate`]. On error the configuration is unchanged.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match self.set_key(key, value.trim()) {
            Some(r) => r.map_err(|reason| ConfigError::invalid(key, reason)),
            None => Err(ConfigError::unknown(key)),
        }
    }

    /// The current value of a setting in a form [`Config::set`] accepts (`None` for an unknown
    /// key; an unset optional setting is the empty string). Note that `http_token` is returned
    /// as is: callers that show settings must hide it.
    pub fn get(&self, key: &str) -> Option<String> {
        self.get_key(key)
    }

    /// Every setting with its current value, `http_token` shown as `(set)` when set.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        KEYS.iter()
            .map(|(k, _)| {
                let v = match *k {
                    "http_token" if self.http_token.is_some() => "(set)".to_owned(),
                    _ => self.get(k).unwrap_or_default(),
                };
                (*k, v)
            })
            .collect()
    }

    /// Checks the whole configuration: each value on its own through its key's parser (fields
    /// are public and may have been assigned directly; the messages are [`Config::set`]'s), then
    /// the rules between settings. Returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::invalid(key, reason)
        }
        self.check_each()?;
        if self.window_bytes < self.chunk_bytes {
            return Err(bad(
                "window_bytes",
                format!(
                    "must be at least chunk_bytes ({}), got {}",
                    self.chunk_bytes, self.window_bytes
                ),
            ));
        }
        if self.window_bytes < self.direct_chunk_bytes {
            return Err(bad(
                "window_bytes",
                format!(
                    "must be at least direct_chunk_bytes ({}), got {}: lower direct_chunk_bytes \
                     for a smaller window",
                    self.direct_chunk_bytes, self.window_bytes
                ),
            ));
        }
        if self.spool_max_bytes < self.max_file_bytes {
            return Err(bad(
                "spool_max_bytes",
                format!(
                    "must be at least max_file_bytes ({}), got {}: one file of the largest \
                     allowed size would not fit",
                    format_size(self.max_file_bytes),
                    format_size(self.spool_max_bytes)
                ),
            ));
        }
        if self.msrp_listen.ip().is_unspecified() && self.msrp_advertise.is_none() {
            return Err(bad(
                "msrp_advertise",
                format!(
                    "must be set when msrp_listen is {} (a=path needs a reachable host)",
                    self.msrp_listen.ip()
                ),
            ));
        }
        if self.http_token.is_none() && !self.http_listen.ip().is_loopback() {
            return Err(bad(
                "http_listen",
                format!(
                    "{} is not a loopback address; without http_token the HTTP handler may \
                     only listen on 127.0.0.1 or [::1]",
                    self.http_listen
                ),
            ));
        }
        self.validate_tls()?;
        if self.http_max_uploads > self.http_max_connections {
            return Err(bad(
                "http_max_uploads",
                format!(
                    "must be between 1 and http_max_connections ({}), got {}",
                    self.http_max_connections, self.http_max_uploads
                ),
            ));
        }
        if self.max_participants_per_conference > self.max_participants {
            return Err(bad(
                "max_participants_per_conference",
                format!(
                    "must not exceed max_participants ({}), got {}",
                    self.max_participants, self.max_participants_per_conference
                ),
            ));
        }
        Ok(())
    }

    /// The TLS rules: certificate and key come in pairs; `msrp_tls` needs ours (an
    /// `a=setup:active` participant connects to us, and we are then the TLS server).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        for (cert_key, key_key, cert, key) in [
            ("tls_cert", "tls_key", &self.tls_cert, &self.tls_key),
            (
                "http_tls_cert",
                "http_tls_key",
                &self.http_tls_cert,
                &self.http_tls_key,
            ),
        ] {
            match (cert, key) {
                (Some(_), None) => {
                    return Err(ConfigError::invalid(
                        key_key,
                        format!("must be set when {cert_key} is (the certificate's private key)"),
                    ))
                }
                (None, Some(_)) => {
                    return Err(ConfigError::invalid(
                        cert_key,
                        format!("must be set when {key_key} is (the key's certificate chain)"),
                    ))
                }
                _ => {}
            }
        }
        if self.msrp_tls && self.tls_cert.is_none() {
            return Err(ConfigError::invalid(
                "msrp_tls",
                "needs tls_cert and tls_key: a participant that answers a=setup:active connects \
                 to us, and we are then the TLS server",
            ));
        }
        Ok(())
    }

    /// True when the HTTP page and API are served over HTTPS.
    pub fn http_tls(&self) -> bool {
        self.http_tls_cert.is_some() && self.http_tls_key.is_some()
    }

    /// `io_threads` with 0 resolved to the number of CPUs (at least 1).
    pub fn io_thread_count(&self) -> usize {
        if self.io_threads > 0 {
            self.io_threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

/// Parses `yes/no/true/false/1/0/on/off`, any case.
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(format!(
            "expected yes/no, true/false, 1/0 or on/off, got {v:?}"
        )),
    }
}

/// Parses a size: plain bytes, or a number with `K/KiB`, `M/MiB`, `G/GiB`, `T/TiB` (binary,
/// any case, optional space before the suffix). Must be at least `min`.
pub fn parse_size(v: &str, min: u64) -> Result<u64, String> {
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "expected a size such as 10240, 512K or 4GiB, got {v:?}"
        ));
    }
    let mult = match suffix.trim_start().to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "t" | "tib" => TIB,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} in {v:?} (use K, M, G, T, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {v:?} is too large"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {v:?} is too large"))?;
    if bytes < min {
        return Err(format!("must be at least {min} bytes, got {v:?}"));
    }
    Ok(bytes)
}

/// Formats a size the way [`parse_size`] reads it, with the largest exact binary suffix.
pub fn format_size(n: u64) -> String {
    for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{}", n / unit, name);
        }
    }
    n.to_string()
}

/// Parses a duration in whole milliseconds, at least `min`.
pub fn parse_ms(v: &str, min: u64) -> Result<u64, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected a whole number of milliseconds such as 30000, got {v:?}"
        ));
    }
    let n: u64 = v
        .parse()
        .map_err(|_| format!("duration {v:?} is too large"))?;
    if n < min {
        return Err(format!("must be at least {min} ms, got {n}"));
    }
    Ok(n)
}

/// Parses a count in `min..=max`.
pub fn parse_count(v: &str, min: usize, max: usize) -> Result<usize, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number, got {v:?}"));
    }
    let n: usize = v
        .parse()
        .map_err(|_| format!("number {v:?} is too large"))?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}, got {n}"));
    }
    Ok(n)
}

/// A file path (PEM certificate, key or CA bundle): absolute or relative, without NUL or line
/// breaks; empty means not set. Whether the file exists and parses is checked when it is loaded.
fn parse_file(v: &str) -> Result<Option<PathBuf>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    if v.bytes().any(|b| b == 0 || b == b'\n' || b == b'\r') {
        return Err(format!("{v:?} is not a file path (NUL or line break)"));
    }
    if v.len() > 4096 {
        return Err(format!("path of {} bytes is longer than 4096", v.len()));
    }
    Ok(Some(PathBuf::from(v)))
}

fn parse_chunk(v: &str) -> Result<u64, String> {
    let n = parse_size(v, 1)?;
    if n > MAX_CHUNK_BYTES {
        return Err(format!("must be between 1 and {MAX_CHUNK_BYTES}, got {n}"));
    }
    Ok(n)
}

/// Parses `IP:port` (IPv6 in brackets). Host names are not resolved here.
pub fn parse_socket_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse::<SocketAddr>()
        .map_err(|_| format!("expected IP:port such as 127.0.0.1:2855 or [::1]:2855, got {v:?}"))
}

/// Empty means not set; anything else goes through `parse`.
fn parse_optional<T>(v: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if v.is_empty() {
        Ok(None)
    } else {
        parse(v).map(Some)
    }
}

fn parse_level(v: &str) -> Result<Level, String> {
    v.parse::<Level>().map_err(|e| format!("{e}, got {v:?}"))
}

fn parse_token(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    if !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".to_owned());
    }
    if v.len() < 8 {
        return Err(format!("must be at least 8 characters, got {}", v.len()));
    }
    Ok(Some(v.to_owned()))
}

/// Parses `host`, `host:port`, `IPv6`, `[IPv6]` or `[IPv6]:port`; empty means not set.
pub fn parse_advertise(v: &str) -> Result<Option<Advertise>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let port_of = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("bad port {p:?} in {v:?}")),
            Ok(n) => Ok(n),
        }
    };
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in {v:?}"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{h:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => {
                Some(port_of(after.strip_prefix(':').ok_or_else(|| {
                    format!("expected :port after ']' in {v:?}")
                })?)?)
            }
        };
        (h.to_owned(), port)
    } else if v.matches(':').count() > 1 {
        // A bare IPv6 address.
        if v.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v:?} is not a host, host:port or IPv6 address"));
        }
        (v.to_owned(), None)
    } else if let Some((h, p)) = v.split_once(':') {
        (h.to_owned(), Some(port_of(p)?))
    } else {
        (v.to_owned(), None)
    };
    check_host(&host)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_unspecified() {
            return Err(format!(
                "{ip} cannot be advertised: peers cannot connect to it"
            ));
        }
    }
    Ok(Some(Advertise { host, port }))
}

/// A host name (letters, digits, `-`, `.`), an IPv4 or an IPv6 address.
/// A comma- or space-separated list of `host`, `host:port` or `[v6]:port` (lowercased); empty
/// for none.
fn parse_host_list(v: &str) -> Result<Vec<Advertise>, String> {
    let mut out = Vec::new();
    for item in v.split([',', ' ', '\t']).filter(|s| !s.is_empty()) {
        match parse_advertise(&item.to_ascii_lowercase())? {
            Some(a) => out.push(a),
            None => return Err(format!("{item:?} is not a host name")),
        }
    }
    if out.len() > 64 {
        return Err(format!("at most 64 host names, got {}", out.len()));
    }
    Ok(out)
}

fn check_host(h: &str) -> Result<(), String> {
    if h.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{h:?} is not a valid host name or IP address"))
    }
}

/// A `sip:` or `sips:` URI without whitespace or control characters (it ends up in SIP headers).
fn parse_sip_uri(v: &str) -> Result<String, String> {
    let lower = v.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("sip:")
        .or_else(|| lower.strip_prefix("sips:"))
        .ok_or_else(|| format!("expected a sip: or sips: URI, got {v:?}"))?;
    if rest.is_empty() {
        return Err(format!("{v:?} has no host"));
    }
    if !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{v:?} contains spaces, control or non-ASCII characters"
        ));
    }
    Ok(v.to_owned())
}

/// Space-separated MIME types (`type/subtype`, `type/*` or `*`), as in RFC 4975 `a=accept-types`.
fn parse_accept_types(v: &str) -> Result<String, String> {
    let mut n = 0;
    for t in v.split_ascii_whitespace() {
        n += 1;
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        let ok = t == "*"
            || match t.split_once('/') {
                Some((ty, sub)) => token_ok(ty) && (sub == "*" || token_ok(sub)),
                None => false,
            };
        if !ok {
            return Err(format!(
                "{t:?} is not a MIME type such as text/plain, image/* or *"
            ));
        }
    }
    if n == 0 {
        return Err("must name at least one MIME type or *".to_owned());
    }
    Ok(v.split_ascii_whitespace().collect::<Vec<_>>().join(" "))
}

/// A path for an AF_UNIX socket: no NUL, short enough for `sun_path` (108 bytes with the
/// terminating NUL); empty means "none".
fn parse_socket_path(v: &str) -> Result<PathBuf, String> {
    if v.len() > 107 {
        return Err(format!(
            "at most 107 bytes (the AF_UNIX limit), got {}",
            v.len()
        ));
    }
    if v.is_empty() {
        return Ok(PathBuf::new());
    }
    parse_dir(v)
}

fn parse_dir(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if v.contains('\0') {
        return Err("must not contain NUL".to_owned());
    }
    Ok(PathBuf::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(c: &mut Config, k: &str, v: &str) -> Result<(), ConfigError> {
        c.set(k, v)
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.chunk_bytes, 10240);
        assert_eq!(c.spool_max_bytes, 10 * GIB);
        assert_eq!(c.max_file_bytes, 4 * GIB);
        assert_eq!(c.log_level, Level::Info);
        // Every documented key exists, says its default, and get/set round-trips it.
        for (k, doc) in Config::keys() {
            let v = c.get(k).unwrap_or_else(|| panic!("get({k})"));
            // The doc's closing "Default …" names the table's default ("none": unset).
            let (_, said) = doc
                .rsplit_once("Default")
                .unwrap_or_else(|| panic!("{k} doc lacks its default"));
            let said = said.trim_start_matches(':').trim();
            let said = said.strip_suffix('.').unwrap_or(said);
            let said = if said.starts_with("none") { "" } else { said };
            let mut d = Config::default();
            d.set(k, said)
                .unwrap_or_else(|e| panic!("{k}: doc's default {said:?}: {e}"));
            assert_eq!(d, c, "{k}: doc says Default {said:?}, the table {v:?}");
            let mut d = Config::default();
            d.set(k, &v)
                .unwrap_or_else(|e| panic!("set({k}, {v:?}): {e}"));
            assert_eq!(d, c, "{k} round trip");
        }
        let mut names: Vec<_> = Config::keys().iter().map(|(k, _)| *k).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Config::keys().len(), "duplicate key");
    }

    /// The Kamailio module exports every key as a modparam (its `ENGINE_KEYS` list) and its
    /// README documents each one.
    #[test]
    fn kamailio_module_knows_every_key() {
        let c_file = include_str!("../kamailio-module/msrpcast_mod.c");
        let readme = include_str!("../kamailio-module/README.md");
        for (k, _) in Config::keys() {
            assert!(c_file.contains(&format!("X({k})")), "ENGINE_KEYS lacks {k}");
            assert!(readme.contains(&format!("| `{k}` |")), "README lacks {k}");
        }
    }

    #[test]
    fn every_key_round_trips_a_non_default_value() {
        let values = [
            ("http_listen", "[::1]:9000"),
            ("http_token", "s3cret-token"),
            ("http_max_connections", "10"),
            ("http_max_uploads", "2"),
            ("http_idle_timeout_ms", "500"),
            ("http_sse_interval_ms", "100"),
            ("http_head_timeout_ms", "2000"),
            (
                "http_allowed_hosts",
                "files.example.com, 192.0.2.1:8088 [2001:db8::1]:80",
            ),
            (
                "http_cors_origins",
                "https://portal.example.com, http://127.0.0.1:3000",
            ),
            ("http_login_max_failures", "5"),
            ("http_max_event_streams", "3"),
            ("http_event_stream_max_ms", "60000"),
            ("http_tls_cert", "/etc/msrpcast/https-cert.pem"),
            ("http_tls_key", "/etc/msrpcast/https-key.pem"),
            ("http_hsts_max_age_s", "0"),
            ("msrp_listen", "0.0.0.0:2856"),
            ("msrp_advertise", "media.example.com:2900"),
            ("msrp_reuse_port", "off"),
            ("msrp_max_pending", "8"),
            ("msrp_pending_max_bytes", "4K"),
            ("max_name_lookups", "3"),
            ("max_queued_commands", "100"),
            ("msrp_max_owed_responses", "5"),
            ("msrp_max_report_ranges", "7"),
            ("msrp_tls", "on"),
            ("tls_cert", "/etc/msrpcast/cert.pem"),
            ("tls_key", "key.pem"),
            ("tls_ca", "/etc/msrpcast/ca.pem"),
            ("tls_verify", "Fingerprint"),
            ("tls_verify_cache", "0"),
            ("tls_handshake_timeout_ms", "2500"),
            ("spool_dir", "/tmp/spool"),
            ("spool_max_bytes", "20G"),
            ("max_file_bytes", "1000"),
            ("spool_persist", "off"),
            ("spool_hash_nice", "19"),
            ("chunk_bytes", "2048"),
            ("direct_chunk_bytes", "128K"),
            ("window_bytes", "1M"),
            ("max_window_bytes", "8M"),
            ("spool_read_ahead_bytes", "1M"),
            ("transaction_timeout_ms", "1000"),
            ("report_timeout_ms", "2000"),
            ("answer_timeout_ms", "3000"),
            ("connect_timeout_ms", "4000"),
            ("resume_retries", "0"),
            ("resume_backoff_ms", "500"),
            ("io_threads", "4"),
            ("offer_to_late_joiners", "no"),
            ("sender_uri", "sips:files@example.com"),
            ("contact", "sip:engine@10.0.0.1:5060"),
            ("outbound_proxy", "sip:proxy.example.com;lr"),
            ("max_conferences", "5"),
            ("max_participants_per_conference", "7"),
            ("max_participants", "70"),
            ("max_files_per_conference", "9"),
            ("max_finished_transfers", "11"),
            ("finished_transfer_ttl_ms", "1000"),
            ("max_path_uris", "4"),
            ("offer_in_per_participant_per_min", "3"),
            ("offer_in_max_sessions", "5"),
            ("accept_types", "image/*  text/plain"),
            ("success_report", "FALSE"),
            ("bind_empty_send", "0"),
            ("log_level", "Debug"),
            ("control_socket", "/tmp/msrpcast-test/control.sock"),
            ("http_enabled", "no"),
            ("upload_dir", "/srv/msrpcast/outbox"),
        ];
        assert_eq!(values.len(), Config::keys().len());
        let mut c = Config::default();
        for (k, v) in values {
            c.set(k, v).unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(c.get(k), Config::default().get(k), "{k} did not change");
        }
        c.validate().unwrap();
        let mut d = Config::default();
        for (k, _) in Config::keys() {
            d.set(k, &c.get(k).unwrap()).unwrap();
        }
        assert_eq!(c, d);
        assert_eq!(c.get("spool_max_bytes").as_deref(), Some("20GiB"));
        assert_eq!(c.get("max_file_bytes").as_deref(), Some("1000"));
        assert_eq!(
            c.get("http_allowed_hosts").as_deref(),
            Some("files.example.com,192.0.2.1:8088,[2001:db8::1]:80")
        );
        assert!(c.set("http_allowed_hosts", "bad host!").is_err());
        assert!(c.set("http_allowed_hosts", "0.0.0.0").is_err());
        assert_eq!(
            c.get("http_cors_origins").as_deref(),
            Some("https://portal.example.com,http://127.0.0.1:3000")
        );
        assert!(c.set("http_cors_origins", "*").is_err());
        assert!(c
            .set("http_cors_origins", "https://x.example/path")
            .is_err());
        assert_eq!(c.get("accept_types").as_deref(), Some("image/* text/plain"));
        assert_eq!(c.get("log_level").as_deref(), Some("debug"));
        assert_eq!(
            c.get("msrp_advertise").as_deref(),
            Some("media.example.com:2900")
        );
        let shown = c.entries();
        assert!(shown.contains(&("http_token", "(set)".to_owned())));
        assert!(!shown.iter().any(|(_, v)| v.contains("s3cret")));
    }

    #[test]
    fn unknown_key() {
        let mut c = Config::default();
        let e = set(&mut c, "chunk_size", "1").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::Unknown);
        assert_eq!(e.to_string(), "unknown setting chunk_size");
        assert_eq!(c.get("chunk_size"), None);
        assert_eq!(c, Config::default());
    }

    #[test]
    fn bools() {
        for t in ["yes", "TRUE", "1", "On", " on "] {
            assert_eq!(parse_bool(t.trim()), Ok(true), "{t}");
        }
        for f in ["no", "False", "0", "OFF"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "2", "y", "enabled", "truee"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
        let mut c = Config::default();
        let e = c.set("success_report", "maybe").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for success_report: expected yes/no, true/false, 1/0 or on/off, got \"maybe\""
        );
        assert!(c.success_report);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10240", 1), Ok(10240));
        assert_eq!(parse_size("512k", 1), Ok(512 * 1024));
        assert_eq!(parse_size("512 KiB", 1), Ok(512 * 1024));
        assert_eq!(parse_size("4M", 1), Ok(4 * MIB));
        assert_eq!(parse_size("4mib", 1), Ok(4 * MIB));
        assert_eq!(parse_size("10GiB", 1), Ok(10 * GIB));
        assert_eq!(parse_size("10g", 1), Ok(10 * GIB));
        assert_eq!(parse_size("2T", 1), Ok(2 * TIB));
        assert_eq!(parse_size("0", 0), Ok(0));
        assert!(parse_size("0", 1).unwrap_err().contains("at least 1"));
        assert!(parse_size("", 1).is_err());
        assert!(parse_size("K", 1).is_err());
        assert!(parse_size("-1", 1).is_err());
        assert!(parse_size("1.5G", 1).is_err());
        assert!(parse_size("10KB", 1)
            .unwrap_err()
            .contains("unknown size suffix"));
        assert!(parse_size("10 P", 1)
            .unwrap_err()
            .contains("unknown size suffix"));
        assert!(parse_size("99999999999999999999", 1)
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("20000000T", 1)
            .unwrap_err()
            .contains("too large"));
        for n in [1, 1000, 1024, 10240, 3 * MIB, 10 * GIB, 5 * TIB, 1536] {
            assert_eq!(parse_size(&format_size(n), 0), Ok(n));
        }
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(10240), "10KiB");
    }

    #[test]
    fn durations_and_counts() {
        assert_eq!(parse_ms("30000", 1), Ok(30000));
        assert_eq!(parse_ms("0", 0), Ok(0));
        assert!(parse_ms("0", 1).unwrap_err().contains("at least 1"));
        assert!(parse_ms("30s", 1).unwrap_err().contains("milliseconds"));
        assert!(parse_ms("-5", 0).is_err());
        assert!(parse_ms("", 0).is_err());
        assert!(parse_ms("99999999999999999999999", 0)
            .unwrap_err()
            .contains("too large"));
        assert_eq!(parse_count("4", 0, 8), Ok(4));
        assert!(parse_count("9", 0, 8)
            .unwrap_err()
            .contains("between 0 and 8"));
        assert!(parse_count("x", 0, 8).is_err());
        let mut c = Config::default();
        assert!(c.set("io_threads", "1000").is_err());
        assert!(c.set("transaction_timeout_ms", "0").is_err());
        assert!(c.set("http_max_uploads", "0").is_err());
    }

    #[test]
    fn addresses() {
        let mut c = Config::default();
        c.set("msrp_listen", "[::]:2855").unwrap();
        assert!(c.msrp_listen.ip().is_unspecified());
        assert!(c
            .set("msrp_listen", "localhost:2855")
            .unwrap_err()
            .reason
            .contains("IP:port"));
        assert!(c.set("http_listen", "127.0.0.1").is_err());
        assert!(c.set("http_listen", "127.0.0.1:99999").is_err());

        let a = |v| parse_advertise(v);
        assert_eq!(
            a("203.0.113.5"),
            Ok(Some(Advertise {
                host: "203.0.113.5".into(),
                port: None
            }))
        );
        assert_eq!(
            a("msrp.example.com:2900"),
            Ok(Some(Advertise {
                host: "msrp.example.com".into(),
                port: Some(2900)
            }))
        );
        assert_eq!(
            a("[2001:db8::1]:2855"),
            Ok(Some(Advertise {
                host: "2001:db8::1".into(),
                port: Some(2855)
            }))
        );
        assert_eq!(
            a("2001:db8::1"),
            Ok(Some(Advertise {
                host: "2001:db8::1".into(),
                port: None
            }))
        );
        assert_eq!(a(""), Ok(None));
        for bad in [
            "host:0",
            "host:x",
            "host:",
            "[2001:db8::1",
            "[nothex]:1",
            "[::1]x",
            "bad host",
            "-bad.example",
            "a..b",
            "0.0.0.0",
            "[::]:2855",
            "1:2:3",
        ] {
            assert!(a(bad).is_err(), "{bad}");
        }
        for v in ["[2001:db8::1]:2855", "[2001:db8::1]", "h.example:1", "h"] {
            assert_eq!(a(v).unwrap().unwrap().to_string(), v);
        }
    }

    #[test]
    fn strings() {
        let mut c = Config::default();
        assert!(c.set("sender_uri", "http://x").is_err());
        assert!(c.set("sender_uri", "sip:").is_err());
        assert!(c.set("sender_uri", "sip:a b@c").is_err());
        assert!(c.set("sender_uri", "sip:a@c\r\nX: y").is_err());
        assert!(c.set("sender_uri", "").is_err());
        c.set("contact", "sip:me@host").unwrap();
        c.set("contact", "").unwrap();
        assert_eq!(c.contact, None);
        assert!(c
            .set("http_token", "short")
            .unwrap_err()
            .reason
            .contains("at least 8"));
        assert!(c.set("http_token", "has space in it").is_err());
        c.set("http_token", "").unwrap();
        assert_eq!(c.http_token, None);
        assert!(c.set("accept_types", "").is_err());
        assert!(c.set("accept_types", "text").is_err());
        assert!(c.set("accept_types", "text/plain\"").is_err());
        c.set("accept_types", "*").unwrap();
        assert!(c.set("spool_dir", "").is_err());
        assert!(c
            .set("log_level", "trace")
            .unwrap_err()
            .reason
            .contains("trace"));
    }

    fn invalid(c: &Config) -> ConfigError {
        let e = c.validate().unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::Invalid);
        e
    }

    #[test]
    fn chunk_bytes_range() {
        let mut c = Config::default();
        assert!(c.set("chunk_bytes", "0").is_err());
        assert!(c
            .set("chunk_bytes", "2M")
            .unwrap_err()
            .reason
            .contains("between 1"));
        c.set("chunk_bytes", "1MiB").unwrap();
        c.set("window_bytes", "1MiB").unwrap();
        c.validate().unwrap();
        c.chunk_bytes = 0;
        assert_eq!(invalid(&c).key, "chunk_bytes");
        c.chunk_bytes = MAX_CHUNK_BYTES + 1;
        assert_eq!(invalid(&c).key, "chunk_bytes");
    }

    #[test]
    fn window_must_hold_a_chunk() {
        let mut c = Config::default();
        c.set("window_bytes", "4096").unwrap();
        let e = invalid(&c);
        assert_eq!(
            e.to_string(),
            "invalid value for window_bytes: must be at least chunk_bytes (10240), got 4096"
        );
    }

    #[test]
    fn window_must_hold_a_direct_chunk() {
        let mut c = Config::default();
        assert_eq!(c.direct_chunk_bytes, 65_536);
        c.set("window_bytes", "32KiB").unwrap();
        let e = invalid(&c);
        assert_eq!(e.key, "window_bytes");
        assert!(e.reason.contains("direct_chunk_bytes (65536)"), "{e}");
        c.set("direct_chunk_bytes", "32KiB").unwrap();
        c.validate().unwrap();
        assert!(c.set("direct_chunk_bytes", "0").is_err());
        assert!(c.set("direct_chunk_bytes", "2MiB").is_err());
        c.set("direct_chunk_bytes", "1MiB").unwrap();
        c.set("window_bytes", "1MiB").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn spool_quota_holds_largest_file() {
        let mut c = Config::default();
        c.set("spool_max_bytes", "1G").unwrap();
        let e = invalid(&c);
        assert_eq!(e.key, "spool_max_bytes");
        assert!(e.reason.contains("max_file_bytes (4GiB)"), "{e}");
        c.set("max_file_bytes", "1G").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn wildcard_listen_needs_advertise() {
        let mut c = Config::default();
        c.set("msrp_listen", "0.0.0.0:2855").unwrap();
        assert_eq!(invalid(&c).key, "msrp_advertise");
        c.set("msrp_listen", "[::]:2855").unwrap();
        assert!(invalid(&c).reason.contains("::"));
        c.set("msrp_advertise", "198.51.100.7").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn tokenless_http_only_on_loopback() {
        let mut c = Config::default();
        c.set("http_listen", "0.0.0.0:8088").unwrap();
        let e = invalid(&c);
        assert_eq!(e.key, "http_listen");
        assert!(e.reason.contains("loopback"));
        c.set("http_listen", "[::1]:8088").unwrap();
        c.validate().unwrap();
        c.set("http_listen", "192.0.2.1:8088").unwrap();
        c.set("http_token", "0123456789abcdef").unwrap();
        c.validate().unwrap();
        c.http_token = Some("bad token".into());
        assert_eq!(invalid(&c).key, "http_token");
    }

    #[test]
    fn other_cross_checks() {
        let mut c = Config::default();
        c.set("http_max_connections", "4").unwrap();
        assert_eq!(invalid(&c).key, "http_max_uploads");
        c.set("http_max_uploads", "4").unwrap();
        c.validate().unwrap();

        let mut c = Config::default();
        c.set("max_participants", "10").unwrap();
        assert_eq!(invalid(&c).key, "max_participants_per_conference");

        let c = Config {
            answer_timeout_ms: 0,
            ..Config::default()
        };
        assert_eq!(invalid(&c).key, "answer_timeout_ms");

        let c = Config {
            sender_uri: "mailto:x".into(),
            ..Config::default()
        };
        assert_eq!(invalid(&c).key, "sender_uri");

        let c = Config {
            io_threads: MAX_IO_THREADS + 1,
            ..Config::default()
        };
        assert_eq!(invalid(&c).key, "io_threads");

        let c = Config {
            msrp_advertise: Some(Advertise {
                host: "x y".into(),
                port: None,
            }),
            ..Config::default()
        };
        assert_eq!(invalid(&c).key, "msrp_advertise");
    }

    #[test]
    fn tls_settings() {
        let mut c = Config::default();
        assert!(!c.msrp_tls && !c.http_tls());
        assert_eq!(c.tls_verify, Verify::Host);
        c.set("msrp_tls", "on").unwrap();
        let e = invalid(&c);
        assert_eq!(e.key, "msrp_tls");
        assert!(e.reason.contains("tls_cert and tls_key"), "{e}");
        c.set("tls_cert", "/etc/c.pem").unwrap();
        let e = invalid(&c);
        assert_eq!(e.key, "tls_key");
        c.set("tls_key", "/etc/k.pem").unwrap();
        c.validate().unwrap();
        c.set("tls_cert", "").unwrap();
        assert_eq!(c.tls_cert, None);
        assert_eq!(invalid(&c).key, "tls_cert");
        c.set("msrp_tls", "off").unwrap();
        c.set("tls_key", "").unwrap();
        c.validate().unwrap();

        c.set("http_tls_key", "/etc/hk.pem").unwrap();
        assert_eq!(invalid(&c).key, "http_tls_cert");
        c.set("http_tls_cert", "/etc/hc.pem").unwrap();
        c.validate().unwrap();
        assert!(c.http_tls());

        assert!(c
            .set("tls_verify", "strict")
            .unwrap_err()
            .reason
            .contains("host, fingerprint or none"));
        c.set("tls_verify", "NONE").unwrap();
        assert_eq!(c.get("tls_verify").as_deref(), Some("none"));
        assert!(c.set("tls_ca", "a\nb").is_err());
        assert!(c.set("tls_handshake_timeout_ms", "0").is_err());
        assert!(c.set("http_hsts_max_age_s", "315360001").is_err());
        c.set("http_hsts_max_age_s", "0").unwrap();
        let d = Config {
            tls_handshake_timeout_ms: 0,
            ..Config::default()
        };
        assert_eq!(invalid(&d).key, "tls_handshake_timeout_ms");
        let d = Config {
            tls_ca: Some(PathBuf::from("x\ny")),
            ..Config::default()
        };
        assert_eq!(invalid(&d).key, "tls_ca");
    }

    #[test]
    fn io_thread_count_resolves_zero() {
        let mut c = Config::default();
        assert!(c.io_thread_count() >= 1);
        c.io_threads = 3;
        assert_eq!(c.io_thread_count(), 3);
    }
}
