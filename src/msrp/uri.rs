//! MSRP URIs (RFC 4975 §9): `msrp[s]://[userinfo@]host[:port]/session-id;transport[;params]`.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

/// The host part of an MSRP URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, kept as received (compared case-insensitively).
    Name(Bytes),
    V4(Ipv4Addr),
    /// Written as `[addr]` on the wire.
    V6(Ipv6Addr),
}

/// One MSRP URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uri {
    /// `msrps` when true, `msrp` otherwise.
    pub secure: bool,
    pub userinfo: Option<Bytes>,
    pub host: Host,
    /// `None` when absent (default port 2855 applies when connecting).
    pub port: Option<u16>,
    /// Empty for a relay URI without session-id (RFC 4976).
    pub session_id: Bytes,
    /// The transport token, e.g. `tcp`.
    pub transport: Bytes,
    /// Further `;name[=value]` parameters, verbatim, in order.
    pub params: Vec<(Bytes, Option<Bytes>)>,
}

/// The MSRP default port (RFC 4975 §9).
pub const DEFAULT_PORT: u16 = 2855;
