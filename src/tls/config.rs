//! Certificates, keys and trusted roots from files, and [`Tls`]: the holder of the configs that
//! connections are made with, replaced whole on reload.
//!
//! A reload reads every file again and builds new configs; if anything fails the old ones stay
//! and the error is returned. Connections hold an `Arc` of the config they started with, so a
//! reload never disturbs them; only handshakes that start afterwards use the new files.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::fingerprint::{Fingerprint, HashFunction};
use super::stream::TlsStream;
use super::verified::CachedVerifier;
use super::verify::{DeferredClientVerifier, FingerprintVerifier, NoVerifier, Verify};
use super::{provider, TlsError};

/// Largest certificate or key file read (a chain of a few certificates is a few KiB).
const MAX_PEM_FILE: u64 = 1024 * 1024;
/// Largest CA bundle read (Debian's full bundle is about 220 KiB).
const MAX_CA_FILE: u64 = 16 * 1024 * 1024;

/// What [`Tls`] is built from (the future `tls_*` settings; see `docs/tls.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, end-entity first. Needed to accept TLS connections and to present
    /// a client certificate; without it we can still connect and verify peers.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the chain's first certificate.
    pub key: Option<PathBuf>,
    /// PEM CA bundle trusted instead of the system store.
    pub ca: Option<PathBuf>,
    pub verify: Verify,
    /// Whether a server asks clients for a certificate (MSRP: yes, so that an `a=setup:active`
    /// participant can be checked; HTTPS: no, browsers would prompt).
    pub request_client_cert: bool,
    /// ALPN protocols offered by the server (`http/1.1` for HTTPS; none for MSRP).
    pub alpn: Vec<Vec<u8>>,
    /// Chains accepted by host verification remembered at most (`tls_verify_cache`; 0: none,
    /// every chain is checked against the roots on every handshake). See [`super::verified`].
    pub verify_cache: usize,
}

fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, TlsError> {
    let f = File::open(path).map_err(|e| TlsError::file(path, format!("cannot open: {e}")))?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| TlsError::file(path, format!("cannot read: {e}")))?;
    if buf.len() as u64 > limit {
        return Err(TlsError::file(
            path,
            format!("larger than {limit} bytes: not a {what}"),
        ));
    }
    Ok(buf)
}

fn pem_problem(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { end_marker } => format!(
            "a PEM section has no end line {}",
            String::from_utf8_lossy(&end_marker)
        ),
        E::IllegalSectionStart { line } => format!(
            "malformed PEM BEGIN line {:?}",
            String::from_utf8_lossy(&line)
        ),
        E::Base64Decode(d) => format!("bad base64 in a PEM section: {d}"),
        other => other.to_string(),
    }
}

/// Reads a PEM certificate chain (end-entity first). Errors name the file and the problem.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_limited(path, MAX_PEM_FILE, "certificate file")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(path, pem_problem(e)))?;
    if certs.is_empty() {
        let problem = if contains(&pem, b"PRIVATE KEY-----") {
            "holds a private key but no certificate (swapped with the key file?)"
        } else {
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found"
        };
        return Err(TlsError::file(path, problem));
    }
    Ok(certs)
}

/// Reads a PEM private key (the first one in the file).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_limited(path, MAX_PEM_FILE, "key file")?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(k) => Ok(k),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            let problem = if contains(&pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                "the private key is encrypted; give an unencrypted key (openssl pkey -in … -out …)"
            } else if contains(&pem, b"-----BEGIN CERTIFICATE-----") {
                "holds a certificate but no private key (swapped with the certificate file?)"
            } else {
                "no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC) found"
            };
            Err(TlsError::file(path, problem))
        }
        Err(e) => Err(TlsError::file(path, pem_problem(e))),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// The trusted roots: the CA bundle when given, else the system store (`/etc/ssl/certs` on
/// Debian; `SSL_CERT_FILE`/`SSL_CERT_DIR` override it).
fn load_roots(ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = read_limited(path, MAX_CA_FILE, "CA bundle")?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::file(path, pem_problem(e)))?;
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::file(
                    path,
                    format!("no usable CA certificate ({ignored} could not be parsed)"),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(TlsError::NoRoots {
                    problem: if errors.is_empty() {
                        "the system store is empty; install ca-certificates or set tls_ca"
                            .to_owned()
                    } else {
                        errors.join("; ")
                    },
                });
            }
        }
    }
    Ok(roots)
}

/// One generation of loaded files and the configs built from them.
struct Loaded {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    certified: Option<Arc<CertifiedKey>>,
    fingerprint: Option<Fingerprint>,
    server: Option<Arc<ServerConfig>>,
    /// The client config for peers checked without a fingerprint (host or none).
    client: Arc<ClientConfig>,
    /// Host verification against the roots; `None` with `Verify::None`.
    webpki: Option<Arc<CachedVerifier>>,
}

impl Loaded {
    fn build(settings: TlsSettings) -> Result<Loaded, TlsError> {
        let provider = provider();
        let certified = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => {
                let chain = load_chain(cert)?;
                let der = load_key(key)?;
                let ck = CertifiedKey::from_der(chain, der, &provider).map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    other => TlsError::file(key, format!("unusable key: {other}")),
                })?;
                Some(Arc::new(ck))
            }
            (Some(cert), None) => {
                return Err(TlsError::file(cert, "a certificate needs tls_key as well"))
            }
            (None, Some(key)) => return Err(TlsError::file(key, "a key needs tls_cert as well")),
            (None, None) => None,
        };
        let fingerprint = certified
            .as_ref()
            .and_then(|ck| ck.cert.first())
            .map(|c| Fingerprint::of(HashFunction::Sha256, c));

        let webpki = host_verifier(&settings, &provider)?;

        let server = match &certified {
            None => None,
            Some(ck) => {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| TlsError::from_rustls(&e))?;
                let builder = if settings.request_client_cert {
                    builder.with_client_cert_verifier(Arc::new(DeferredClientVerifier {
                        algorithms: provider.signature_verification_algorithms,
                    }))
                } else {
                    builder.with_no_client_auth()
                };
                let mut cfg =
                    builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(ck.clone())));
                cfg.alpn_protocols = settings.alpn.clone();
                // MSRP (no ALPN): a connection belongs to one session and a participant does not
                // come back to resume it, so TLS 1.3 session tickets would be made, sent and
                // stored for nothing (2 per handshake by default). HTTPS keeps them: a browser
                // opens several connections to the same server.
                if settings.alpn.is_empty() {
                    cfg.send_tls13_tickets = 0;
                }
                Some(Arc::new(cfg))
            }
        };

        let client = match &webpki {
            Some(v) => client_config(&provider, v.clone(), certified.as_ref())?,
            None => client_config(
                &provider,
                Arc::new(NoVerifier {
                    algorithms: provider.signature_verification_algorithms,
                }),
                certified.as_ref(),
            )?,
        };

        Ok(Loaded {
            settings,
            provider,
            certified,
            fingerprint,
            server,
            client,
            webpki,
        })
    }
}

/// Host verification against the roots (`tls_ca` or the system store), remembering accepted
/// chains (`verify_cache`); `None` with `Verify::None`.
fn host_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<CachedVerifier>>, TlsError> {
    if settings.verify == Verify::None {
        return Ok(None);
    }
    let roots = load_roots(settings.ca.as_deref())?;
    let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::NoRoots {
            problem: e.to_string(),
        })?;
    Ok(Some(Arc::new(CachedVerifier::new(
        v,
        settings.verify_cache,
        super::verified::TTL,
    ))))
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    certified: Option<&Arc<CertifiedKey>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::from_rustls(&e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    // RFC 4975 §14.1: an endpoint with a certificate presents it in both roles, so that a peer
    // checking our a=fingerprint sees it.
    let cfg = match certified {
        Some(ck) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck.clone()))),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The server name to verify an MSRP URI's host against: an IP address or a DNS name.
pub fn server_name(host: &crate::msrp::Host) -> Result<ServerName<'static>, TlsError> {
    use crate::msrp::Host;
    match host {
        Host::V4(a) => Ok(ServerName::IpAddress(std::net::IpAddr::V4(*a).into())),
        Host::V6(a) => Ok(ServerName::IpAddress(std::net::IpAddr::V6(*a).into())),
        Host::Name(n) => {
            let text = String::from_utf8_lossy(n).into_owned();
            ServerName::try_from(text.clone()).map_err(|_| TlsError::BadName { host: text })
        }
    }
}

/// The reloadable TLS state of one listener kind (MSRP, or HTTPS with its own files).
pub struct Tls {
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cur = self.current.read();
        f.debug_struct("Tls")
            .field("settings", &cur.settings)
            .field(
                "fingerprint",
                &cur.fingerprint.as_ref().map(|f| f.to_string()),
            )
            .finish()
    }
}

impl Tls {
    /// Reads the files and builds the configs.
    pub fn load(settings: TlsSettings) -> Result<Tls, TlsError> {
        Ok(Tls {
            current: RwLock::new(Arc::new(Loaded::build(settings)?)),
        })
    }

    /// Reads the same files again (a renewed certificate). On error the previous configs stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let settings = self.current.read().settings.clone();
        self.replace(settings)
    }

    /// Switches to other settings. On error the previous configs stay.
    pub fn replace(&self, settings: TlsSettings) -> Result<(), TlsError> {
        let next = Arc::new(Loaded::build(settings)?);
        *self.current.write() = next;
        Ok(())
    }

    pub fn settings(&self) -> TlsSettings {
        self.current.read().settings.clone()
    }

    pub fn verify(&self) -> Verify {
        self.current.read().settings.verify
    }

    /// True when a certificate and key are loaded (we can accept TLS and present a certificate).
    pub fn has_certificate(&self) -> bool {
        self.current.read().certified.is_some()
    }

    /// The SHA-256 fingerprint of our certificate, for `a=fingerprint` in offers.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.current.read().fingerprint.clone()
    }

    /// The server config for accepted connections; `NotConfigured` without a certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.current
            .read()
            .server
            .clone()
            .ok_or(TlsError::NotConfigured {
                what: "no certificate and key (tls_cert, tls_key) to accept TLS connections",
            })
    }

    /// The client config for connecting to a peer whose SDP gave `fingerprints` (may be
    /// empty). With `Verify::Fingerprint` and at least one fingerprint, a config that accepts
    /// exactly those certificates; otherwise the shared host (or none) config.
    pub fn client_config(
        &self,
        fingerprints: &[Fingerprint],
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let cur = self.current.read().clone();
        if cur.settings.verify == Verify::Fingerprint && !fingerprints.is_empty() {
            client_config(
                &cur.provider,
                Arc::new(FingerprintVerifier {
                    fingerprints: fingerprints.to_vec(),
                    algorithms: cur.provider.signature_verification_algorithms,
                }),
                cur.certified.as_ref(),
            )
        } else {
            Ok(cur.client.clone())
        }
    }

    /// Checks the certificate of a peer that connected to us (an `a=setup:active` participant),
    /// once its session — and so its SDP — is known from its first request. The rules are those
    /// of [`Verify`]: its fingerprint (in `Fingerprint` mode, when the SDP has one), else its
    /// chain and `host` against the roots; `None` accepts anything.
    ///
    /// Host checking of a client certificate uses the server-certificate rules, so a certificate
    /// restricted to the `clientAuth` purpose fails with "bad certificate"; such peers need
    /// `fingerprint`.
    pub fn check_accepted(
        &self,
        stream: &TlsStream,
        host: &crate::msrp::Host,
        fingerprints: &[Fingerprint],
    ) -> Result<(), TlsError> {
        let cur = self.current.read().clone();
        if cur.settings.verify == Verify::None {
            return Ok(());
        }
        let certs = stream
            .peer_certificates()
            .ok_or(TlsError::NoPeerCertificate)?;
        let (end_entity, intermediates) = certs.split_first().ok_or(TlsError::NoPeerCertificate)?;
        if cur.settings.verify == Verify::Fingerprint && !fingerprints.is_empty() {
            return super::fingerprint::matches_any(fingerprints, end_entity).map_err(|actual| {
                TlsError::FingerprintMismatch {
                    expected: fingerprints.iter().map(|f| f.to_string()).collect(),
                    presented: actual.to_string(),
                }
            });
        }
        let webpki = cur.webpki.as_ref().ok_or(TlsError::NotConfigured {
            what: "no trusted roots loaded",
        })?;
        let name = server_name(host)?;
        use rustls::client::danger::ServerCertVerifier;
        webpki
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| TlsError::from_rustls(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's own folder of files, removed when the test ends (kept when it panics, to look
    /// at).
    struct Tmp(PathBuf);

    impl Tmp {
        fn new(test: &str) -> Tmp {
            let dir = std::env::temp_dir()
                .join(format!("msrpcast-tls-unit-{}-{test}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Tmp(dir)
        }

        fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, contents).unwrap();
            p
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn file_errors_name_the_file_and_the_problem() {
        let tmp = Tmp::new("file-errors");
        let missing = Path::new("/nonexistent/msrpcast/cert.pem");
        let e = load_chain(missing).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/msrpcast/cert.pem: cannot open"),
            "{e}"
        );

        let empty = tmp.file("empty.pem", b"");
        let e = load_chain(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = load_key(&empty).unwrap_err().to_string();
        assert!(e.contains("no PEM private key"), "{e}");

        let key_only = tmp.file(
            "key-only.pem",
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        );
        let e = load_chain(&key_only).unwrap_err().to_string();
        assert!(e.contains("swapped"), "{e}");

        let cert_only = tmp.file(
            "cert-only.pem",
            b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        );
        let e = load_key(&cert_only).unwrap_err().to_string();
        assert!(e.contains("holds a certificate but no private key"), "{e}");

        let enc = tmp.file(
            "enc.pem",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let e = load_key(&enc).unwrap_err().to_string();
        assert!(e.contains("encrypted"), "{e}");

        let unterminated = tmp.file("open.pem", b"-----BEGIN CERTIFICATE-----\nMAA=\n");
        let e = load_chain(&unterminated).unwrap_err().to_string();
        assert!(e.contains("open.pem") && e.contains("no end line"), "{e}");

        let bad64 = tmp.file(
            "bad64.pem",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let e = load_chain(&bad64).unwrap_err().to_string();
        assert!(e.contains("base64"), "{e}");
    }

    #[test]
    fn cert_without_key_and_key_without_cert() {
        let tmp = Tmp::new("cert-key");
        let p = tmp.file("c.pem", b"");
        let e = Tls::load(TlsSettings {
            cert: Some(p.clone()),
            verify: Verify::None,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("needs tls_key"), "{e}");
        let e = Tls::load(TlsSettings {
            key: Some(p),
            verify: Verify::None,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("needs tls_cert"), "{e}");
    }

    #[test]
    fn without_certificate_no_server_config() {
        let t = Tls::load(TlsSettings {
            verify: Verify::None,
            ..Default::default()
        })
        .unwrap();
        assert!(!t.has_certificate());
        assert!(t.fingerprint().is_none());
        let e = t.server_config().unwrap_err();
        assert!(matches!(e, TlsError::NotConfigured { .. }), "{e}");
        assert!(t.client_config(&[]).is_ok());
    }

    #[test]
    fn ca_bundle_without_certificates() {
        let tmp = Tmp::new("ca-bundle");
        let p = tmp.file("ca-empty.pem", b"# nothing here\n");
        let e = Tls::load(TlsSettings {
            ca: Some(p),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ca-empty.pem") && e.contains("no usable CA"),
            "{e}"
        );
    }

    #[test]
    fn system_roots_load_where_the_system_has_them() {
        // Debian's ca-certificates bundle; the CI machine has it, a minimal container may not.
        if !Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
            return;
        }
        let t = Tls::load(TlsSettings::default()).unwrap();
        assert_eq!(t.verify(), Verify::Host);
        assert!(t.client_config(&[]).is_ok());
    }

    #[test]
    fn server_names() {
        use crate::msrp::Host;
        assert!(matches!(
            server_name(&Host::V4("127.0.0.1".parse().unwrap())),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name(&Host::Name(bytes::Bytes::from_static(b"example.com"))),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name(&Host::Name(bytes::Bytes::from_static(b"bad name"))),
            Err(TlsError::BadName { .. })
        ));
    }
}
