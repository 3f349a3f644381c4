//! Peer verification (RFC 4975 §14.1, RFC 8122):
//!
//! - [`Verify::Host`] (the default): the peer's certificate chain must lead to a trusted root (the
//!   system store or `tls_ca`) and name the host of its `msrps` URI; `webpki` does both.
//! - [`Verify::Fingerprint`]: when the peer's SDP carries `a=fingerprint`, its certificate must
//!   have that fingerprint, and nothing else is asked of it (self-signed is the normal case,
//!   RFC 8122 §5); without a fingerprint in the SDP it falls back to `Host`.
//! - [`Verify::None`]: any certificate (the handshake signatures are still checked). Only when
//!   set explicitly; the caller logs a warning at start.
//!
//! In every mode the peer must prove it holds the certificate's key: the handshake signature is
//! checked with the provider's algorithms.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};

use super::fingerprint::{matches_any, Fingerprint};
use super::TlsError;

/// How a peer's certificate is checked (the `tls_verify` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Chain to a trusted root and name the URI's host.
    #[default]
    Host,
    /// The SDP's `a=fingerprint` when there is one, else `Host`.
    Fingerprint,
    /// No check of the certificate (signatures only). Explicit only.
    None,
}

impl Verify {
    pub fn name(self) -> &'static str {
        match self {
            Verify::Host => "host",
            Verify::Fingerprint => "fingerprint",
            Verify::None => "none",
        }
    }
}

impl fmt::Display for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Verify {
    type Err = String;
    fn from_str(s: &str) -> Result<Verify, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "host" => Ok(Verify::Host),
            "fingerprint" => Ok(Verify::Fingerprint),
            "none" => Ok(Verify::None),
            other => Err(format!(
                "tls_verify {other:?}: expected host, fingerprint or none"
            )),
        }
    }
}

/// Wraps one of our errors so that it survives the trip through rustls and comes back out of
/// [`TlsError::from_rustls`] unchanged.
pub(crate) fn rustls_error(e: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Accepts exactly the certificates whose fingerprint the SDP gave.
#[derive(Debug)]
pub(crate) struct FingerprintVerifier {
    pub(crate) fingerprints: Vec<Fingerprint>,
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match matches_any(&self.fingerprints, end_entity) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(actual) => Err(rustls_error(TlsError::FingerprintMismatch {
                expected: self.fingerprints.iter().map(|f| f.to_string()).collect(),
                presented: actual.to_string(),
            })),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Accepts any certificate (`tls_verify = none`); signatures are still checked.
#[derive(Debug)]
pub(crate) struct NoVerifier {
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server side of an MSRP listener asks for a client certificate but does not judge it
/// during the handshake: which participant connected (and so which host or fingerprint to check
/// against) is known only from the first MSRP request, after the handshake. The caller then runs
/// [`Tls::check_accepted`](super::Tls::check_accepted). The certificate's key is still proven by
/// the handshake signature.
#[derive(Debug)]
pub(crate) struct DeferredClientVerifier {
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_names() {
        for v in [Verify::Host, Verify::Fingerprint, Verify::None] {
            assert_eq!(v.name().parse::<Verify>(), Ok(v));
        }
        assert_eq!(" HOST ".parse::<Verify>(), Ok(Verify::Host));
        let e = "off".parse::<Verify>().unwrap_err();
        assert!(e.contains("host, fingerprint or none"), "{e}");
        assert_eq!(Verify::default(), Verify::Host);
    }

    #[test]
    fn our_error_survives_rustls() {
        let e = TlsError::FingerprintMismatch {
            expected: vec!["sha-256 AA".into()],
            presented: "sha-256 BB".into(),
        };
        assert_eq!(TlsError::from_rustls(&rustls_error(e.clone())), e);
    }
}
