//! `CachedVerifier`: host verification (`tls_verify = host`) that remembers, for a short
//! while, the chains it accepted for a name.
//!
//! Checking a peer's chain against the roots costs one signature check per certificate of the
//! chain (an ECDSA P-256 check is ≈ 60–100 µs with ring here), and a fan-out connects to the
//! same peer — or to many peers with the same certificate — many times within a second. The
//! answer of `webpki` for a given chain, name and OCSP response only changes with time (a
//! certificate's validity), so an accepted (chain, name, OCSP response) is taken as accepted
//! again for [`TTL`], compared byte for byte: a different certificate, intermediate or name is
//! checked in full. Nothing else is skipped: the handshake signature (the peer proves it holds
//! the key) is checked on every handshake, and failures are never remembered. A certificate
//! that expires is noticed at most [`TTL`] late. At most `tls_verify_cache` chains are kept
//! (0: none, every chain is checked); a reload of the files starts an empty cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;

/// How long an accepted chain is taken as accepted without checking it again.
pub const TTL: Duration = Duration::from_secs(10);

/// What a remembered verification was about; compared in full.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    name: ServerName<'static>,
    chain: Vec<Vec<u8>>,
    ocsp: Vec<u8>,
}

impl Key {
    fn new(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
    ) -> Key {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        Key {
            name: name.to_owned(),
            chain,
            ocsp: ocsp.to_vec(),
        }
    }
}

/// `webpki` host verification with a bounded memory of accepted chains; see the module doc.
#[derive(Debug)]
pub(crate) struct CachedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    max: usize,
    ttl: Duration,
    /// Accepted chains and when each stops counting.
    seen: Mutex<HashMap<Key, Instant>>,
    hits: AtomicU64,
}

impl CachedVerifier {
    /// Remembers at most `max` chains (0: none) for `ttl` each.
    pub(crate) fn new(inner: Arc<WebPkiServerVerifier>, max: usize, ttl: Duration) -> Self {
        CachedVerifier {
            inner,
            max,
            ttl,
            seen: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
        }
    }

    /// Verifications answered from memory so far.
    #[cfg(test)]
    fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Chains remembered now (expired ones included until they are swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().len()
    }

    fn remember(&self, key: Key, now: Instant) {
        let mut seen = self.seen.lock();
        if seen.len() >= self.max {
            seen.retain(|_, until| *until > now);
        }
        if seen.len() < self.max {
            seen.insert(key, now + self.ttl);
        }
    }
}

impl ServerCertVerifier for CachedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // With the cache off (`max` 0) every chain is verified and nothing is kept.
        let key =
            (self.max > 0).then(|| Key::new(end_entity, intermediates, server_name, ocsp_response));
        let t = Instant::now();
        if let Some(key) = &key {
            if self.seen.lock().get(key).is_some_and(|until| *until > t) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(ServerCertVerified::assertion());
            }
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Some(key) = key {
            self.remember(key, t);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    struct Ca {
        cert: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(ca: &Ca, names: &[&str]) -> CertificateDer<'static> {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names).unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn verifier(ca: &Ca, max: usize, ttl: Duration) -> CachedVerifier {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.clone()).unwrap();
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
                .build()
                .unwrap();
        CachedVerifier::new(inner, max, ttl)
    }

    fn check(v: &CachedVerifier, cert: &CertificateDer<'_>, name: &str) -> bool {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    /// A remembered chain answers only for the same name and the same bytes: another name, or
    /// another certificate for the same name (from a CA we do not trust), is checked in full and
    /// refused.
    #[test]
    fn remembered_only_for_the_same_chain_and_name() {
        let (trusted, other) = (ca(), ca());
        let good = leaf(&trusted, &["a.example", "127.0.0.1"]);
        let v = verifier(&trusted, 16, TTL);
        assert!(check(&v, &good, "a.example"));
        assert_eq!((v.hits(), v.len()), (0, 1));
        assert!(check(&v, &good, "a.example"));
        assert_eq!(v.hits(), 1, "the second check is answered from memory");
        assert!(
            check(&v, &good, "127.0.0.1"),
            "another name: checked, and valid"
        );
        assert_eq!(v.hits(), 1);
        assert!(
            !check(&v, &good, "b.example"),
            "a name not in the certificate"
        );
        let forged = leaf(&other, &["a.example"]);
        assert!(
            !check(&v, &forged, "a.example"),
            "same name, untrusted issuer"
        );
        assert!(
            !check(&v, &forged, "a.example"),
            "failures are not remembered"
        );
        assert_eq!(v.hits(), 1);
    }

    #[test]
    fn bounded_expiring_and_off() {
        let trusted = ca();
        let certs: Vec<_> = (0..3).map(|_| leaf(&trusted, &["a.example"])).collect();
        let v = verifier(&trusted, 2, TTL);
        for c in &certs {
            assert!(check(&v, c, "a.example"));
        }
        assert_eq!(v.len(), 2, "at most tls_verify_cache chains");
        assert!(check(&v, &certs[2], "a.example"));
        assert_eq!(v.hits(), 0, "the third chain did not fit");

        let v = verifier(&trusted, 2, Duration::ZERO);
        assert!(check(&v, &certs[0], "a.example"));
        assert!(check(&v, &certs[0], "a.example"));
        assert_eq!(v.hits(), 0, "expired at once");

        let v = verifier(&trusted, 0, TTL);
        assert!(check(&v, &certs[0], "a.example"));
        assert!(check(&v, &certs[0], "a.example"));
        assert_eq!((v.hits(), v.len()), (0, 0), "0: nothing remembered");
        assert!(!check(&v, &certs[0], "b.example"));
    }
}
