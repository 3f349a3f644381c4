//! msrpcast: push files uploaded from a web browser to every participant of a SIP conference over
//! MSRP (RFC 4975, file transfer per RFC 5547), as a library with a C ABI loaded into Kamailio or
//! FreeSWITCH.
//!
//! How the parts fit: [`msrp`] is the sans-IO protocol core (parser, writer, chunker, sender and
//! receiver state machines driven by bytes and a `now`); `sdp` builds RFC 5547 push offers and
//! parses answers; `roster` keeps conferences, participants, files and deliveries; `runtime` owns
//! the threads, non-blocking sockets, spool files and timers and drives one sender state machine
//! per (file, participant); `http` is the upload page and JSON API feeding the spool; `ffi` is the
//! C ABI through which the host reports joins and leaves and performs the SIP work the engine asks
//! for; `freeswitch` turns FreeSWITCH's `conference::maintenance` events into joins and leaves;
//! `tls` loads certificates and keys, verifies peers (host or `a=fingerprint`) and wraps a
//! non-blocking socket in `rustls` for `msrps` and HTTPS; `config` holds the settings and `level`
//! the log severity they share with `runtime::log`.
//! Only `ffi` contains `unsafe`.

#![deny(unsafe_code)]

pub mod config;
#[allow(unsafe_code)]
pub mod ffi;
pub mod freeswitch;
pub mod http;
pub mod json;
pub mod level;
pub mod msrp;
pub mod roster;
pub mod runtime;
pub mod sdp;
pub mod tls;
