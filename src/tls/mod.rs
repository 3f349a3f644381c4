//! TLS for MSRP (`msrps`, RFC 4975 §14) and, later, HTTPS: certificates and keys from PEM files,
//! a holder that reloads them without a restart, peer verification (host name against trusted
//! roots, or the SDP answer's `a=fingerprint` per RFC 8122, or — only when set explicitly —
//! none), and a non-blocking stream adapter that the I/O threads drive by readiness and `now`.
//!
//! - [`fingerprint`]: [`Fingerprint`] — the RFC 8122 `a=fingerprint` value: parse, print, compute.
//! - [`config`]: [`TlsSettings`], [`load_chain`], [`load_key`], [`Tls`] (the reloadable holder
//!   of the server config and the client configs).
//! - [`verify`]: the certificate verifiers behind [`Verify`].
//! - [`stream`]: [`TlsStream`], `rustls` over a non-blocking `mio` socket, with a handshake
//!   deadline.
//! - [`transport`]: [`Transport`] — plain TCP or TLS behind one interface, for the handlers;
//!   [`first_bytes`] tells TLS from MSRP on an accepted connection.
//! - [`blocking`]: the server handshake on a blocking socket under one deadline (HTTPS).
//!
//! The crypto provider is `ring` (see `docs/tls.md` for why); it is named in one place,
//! [`provider`].

pub mod blocking;
pub mod config;
pub mod fingerprint;
pub mod stream;
pub mod transport;
pub mod verified;
pub mod verify;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use config::{load_chain, load_key, Tls, TlsSettings};
pub use fingerprint::{Fingerprint, HashFunction};
pub use stream::TlsStream;
pub use transport::{first_bytes, FirstBytes, Transport};
pub use verify::Verify;

/// The crypto provider every config of this crate is built with: `ring`'s, with the AES-128-GCM
/// suites first (within each TLS version; the others stay, in `ring`'s order). rustls' default puts
/// AES-256-GCM-SHA384 first; with AES-128-GCM-SHA256 the handshake's transcript hash and key
/// schedule use SHA-256, which this hardware (SHA-NI) does ~4× faster than SHA-384, and bulk
/// AES runs 10 rounds rather than 14 — 128-bit strength, like the P-256/X25519 key exchange it
/// is paired with (RFC 8446 §9.1: the suite every TLS 1.3 implementation must support). The
/// suite is chosen by our order when we connect; as a server rustls follows the client's order.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::CipherSuite as S;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| {
        let aes128 = matches!(
            s.suite(),
            S::TLS13_AES_128_GCM_SHA256
                | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (s.tls13().is_none(), !aes128)
    });
    Arc::new(p)
}

/// Why a TLS set-up or connection failed. The `Display` text names the cause as an operator
/// would look for it (file and problem, wrong host, expired, unknown CA, fingerprint mismatch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// A certificate, key or CA file could not be used.
    File { path: PathBuf, problem: String },
    /// The private key does not belong to the first certificate of the chain.
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// No trusted root could be loaded (no system store and no `tls_ca`).
    NoRoots { problem: String },
    /// TLS was asked for a role that has no configuration (e.g. accept without a certificate).
    NotConfigured { what: &'static str },
    /// The peer's name cannot be used for verification (e.g. an empty host).
    BadName { host: String },
    /// The peer's certificate does not match the host we connected to.
    WrongHost {
        expected: String,
        presented: Vec<String>,
    },
    /// The peer's certificate has expired.
    Expired { detail: String },
    /// The peer's certificate is not valid yet.
    NotYetValid { detail: String },
    /// The peer's certificate chain does not lead to a trusted root (self-signed included).
    UnknownCa,
    /// The peer's certificate does not match the `a=fingerprint` of its SDP.
    FingerprintMismatch {
        expected: Vec<String>,
        presented: String,
    },
    /// The peer presented no certificate where one was needed.
    NoPeerCertificate,
    /// Another certificate problem (bad signature, wrong purpose, …).
    BadCertificate { detail: String },
    /// The peer refused the handshake with an alert (it did not accept our certificate, …).
    PeerAlert { alert: String },
    /// A protocol error (garbage instead of TLS, no common cipher suite, …).
    Protocol { detail: String },
    /// The handshake did not complete before its deadline.
    HandshakeTimeout,
    /// The peer closed the connection during the handshake.
    ClosedDuringHandshake,
    /// A socket error.
    Io { kind: io::ErrorKind, detail: String },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File { path, problem } => write!(f, "{}: {problem}", path.display()),
            TlsError::KeyMismatch { cert, key } => write!(
                f,
                "the key in {} does not belong to the certificate in {}",
                key.display(),
                cert.display()
            ),
            TlsError::NoRoots { problem } => write!(f, "no trusted CA certificates: {problem}"),
            TlsError::NotConfigured { what } => write!(f, "TLS is not configured: {what}"),
            TlsError::BadName { host } => write!(f, "cannot verify a certificate for {host:?}"),
            TlsError::WrongHost {
                expected,
                presented,
            } => {
                write!(f, "wrong host: the certificate is not valid for {expected}")?;
                if presented.is_empty() {
                    f.write_str(" (it names no host)")
                } else {
                    write!(f, " (it names {})", presented.join(", "))
                }
            }
            TlsError::Expired { detail } => write!(f, "certificate expired: {detail}"),
            TlsError::NotYetValid { detail } => write!(f, "certificate not valid yet: {detail}"),
            TlsError::UnknownCa => {
                f.write_str("unknown CA: the certificate is not signed by a trusted authority")
            }
            TlsError::FingerprintMismatch {
                expected,
                presented,
            } => write!(
                f,
                "fingerprint mismatch: the certificate is {presented}, the SDP says {}",
                expected.join(" or ")
            ),
            TlsError::NoPeerCertificate => f.write_str("the peer presented no certificate"),
            TlsError::BadCertificate { detail } => write!(f, "bad certificate: {detail}"),
            TlsError::PeerAlert { alert } => {
                write!(f, "the peer refused the TLS handshake: {alert}")
            }
            TlsError::Protocol { detail } => write!(f, "TLS protocol error: {detail}"),
            TlsError::HandshakeTimeout => f.write_str("TLS handshake timed out"),
            TlsError::ClosedDuringHandshake => {
                f.write_str("the peer closed the connection during the TLS handshake")
            }
            TlsError::Io { detail, .. } => write!(f, "TLS socket error: {detail}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl TlsError {
    pub(crate) fn file(path: impl Into<PathBuf>, problem: impl Into<String>) -> TlsError {
        TlsError::File {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn io(e: &io::Error) -> TlsError {
        TlsError::Io {
            kind: e.kind(),
            detail: e.to_string(),
        }
    }

    /// Classifies a `rustls` error (from the handshake or a config builder).
    pub fn from_rustls(e: &rustls::Error) -> TlsError {
        use rustls::{CertificateError as C, Error as E};
        match e {
            E::InvalidCertificate(c) => match c {
                C::NotValidForName => TlsError::WrongHost {
                    expected: "the requested host".to_owned(),
                    presented: Vec::new(),
                },
                C::NotValidForNameContext {
                    expected,
                    presented,
                } => TlsError::WrongHost {
                    expected: server_name_text(expected),
                    presented: presented.clone(),
                },
                C::Expired => TlsError::Expired {
                    detail: "past its not-after date".to_owned(),
                },
                C::ExpiredContext { time, not_after } => TlsError::Expired {
                    detail: format!(
                        "not after {} (unix), now {}",
                        not_after.as_secs(),
                        time.as_secs()
                    ),
                },
                C::NotValidYet => TlsError::NotYetValid {
                    detail: "before its not-before date".to_owned(),
                },
                C::NotValidYetContext { time, not_before } => TlsError::NotYetValid {
                    detail: format!(
                        "not before {} (unix), now {}",
                        not_before.as_secs(),
                        time.as_secs()
                    ),
                },
                C::UnknownIssuer => TlsError::UnknownCa,
                C::Other(other) => match other.0.downcast_ref::<TlsError>() {
                    Some(inner) => inner.clone(),
                    None => TlsError::BadCertificate {
                        detail: other.to_string(),
                    },
                },
                other => TlsError::BadCertificate {
                    detail: format!("{other:?}"),
                },
            },
            E::NoCertificatesPresented => TlsError::NoPeerCertificate,
            E::AlertReceived(a) => TlsError::PeerAlert {
                alert: format!("{a:?}"),
            },
            other => TlsError::Protocol {
                detail: other.to_string(),
            },
        }
    }

    /// The `TlsError` carried by an `io::Error` from [`TlsStream`]'s `Read`/`Write`, if any.
    pub fn from_io(e: &io::Error) -> Option<&TlsError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<TlsError>())
    }

    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            TlsError::Io { kind, .. } => *kind,
            TlsError::HandshakeTimeout => io::ErrorKind::TimedOut,
            TlsError::ClosedDuringHandshake => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

fn server_name_text(n: &rustls::pki_types::ServerName<'_>) -> String {
    use rustls::pki_types::ServerName;
    match n {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use rustls::CipherSuite as S;

    #[test]
    fn provider_prefers_aes_128_gcm_and_keeps_the_other_suites() {
        let ours: Vec<S> = super::provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut theirs: Vec<S> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(ours[0], S::TLS13_AES_128_GCM_SHA256);
        let pos = |s: S| ours.iter().position(|x| *x == s).unwrap();
        // TLS 1.3 suites before TLS 1.2 ones; within TLS 1.2, AES-128-GCM first too.
        assert!(pos(S::TLS13_AES_256_GCM_SHA384) < pos(S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
        assert!(
            pos(S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
                < pos(S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        );
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| u16::from(*s));
        theirs.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, theirs, "the same suites, reordered");
    }
}
