//! The passive receiver over TLS (`ReceiveServer::start_with` with a server configuration, what
//! `msrpcast receive --tls-cert/--tls-key` runs): its URI is `msrps://…`, and the engine, verifying
//! its certificate by host against a CA made here, delivers a file whose SHA-1 the receiver
//! checks; a receiver whose certificate the engine does not trust gets nothing.

use std::sync::Arc;
use std::time::Duration;

use msrpcast::config::Config;
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::receive::{
    Listen, ReceiveServer, ReceiveTls, Sink, DEFAULT_HANDSHAKE_TIMEOUT,
};
use msrpcast::runtime::Engine;
use msrpcast::tls::{Tls, TlsSettings, Verify};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use sha1::{Digest, Sha1};

mod common;
use common::{upload, wait_done, wait_joined};

struct Files {
    dir: std::path::PathBuf,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Files {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.join(name), text).unwrap();
        self.path(name)
    }
}

/// A CA (PEM) and a certificate and key for 127.0.0.1 signed by it.
fn ca_and_leaf() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn deliver(trusted_ca: bool) -> (DeliveryState, Option<String>, String) {
    let files = Files {
        dir: std::env::temp_dir().join(format!(
            "msrpcast-rxtls-{}-{trusted_ca}",
            std::process::id()
        )),
    };
    let _ = std::fs::remove_dir_all(&files.dir);
    std::fs::create_dir_all(&files.dir).unwrap();
    let (ca, cert, key) = ca_and_leaf();
    let (other_ca, _, _) = ca_and_leaf();
    let rx_tls = Tls::load(TlsSettings {
        cert: Some(files.write("rx-cert.pem", &cert).into()),
        key: Some(files.write("rx-key.pem", &key).into()),
        ca: None,
        verify: Verify::None,
        request_client_cert: false,
        alpn: Vec::new(),
        verify_cache: 0,
    })
    .unwrap();
    let rx = ReceiveServer::listen(Listen {
        addr: "127.0.0.1:0".parse().unwrap(),
        session_id: "rxtls".into(),
        sink: Sink::Discard,
        hash: true,
        hooks: None,
        threads: 1,
        max_message_bytes: 1 << 30,
        tls: Some(ReceiveTls {
            tls: Arc::new(rx_tls),
            fingerprints: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }),
    })
    .unwrap();
    let uri = rx.uri.to_string();
    assert!(uri.starts_with("msrps://127.0.0.1:"), "{uri}");
    // The engine's own certificate (msrp_tls needs one) is the receiver's; what it trusts is
    // the receiver's CA, or another one.
    let mut cfg = Config::default();
    let spool = files.path("spool");
    let engine_ca = files.write("trusted.pem", if trusted_ca { &ca } else { &other_ca });
    for (k, v) in [
        ("spool_dir", spool.as_str()),
        ("msrp_listen", "127.0.0.1:0"),
        ("control_socket", ""),
        ("log_level", "error"),
        ("msrp_tls", "on"),
        ("tls_cert", &files.path("rx-cert.pem")),
        ("tls_key", &files.path("rx-key.pem")),
        ("tls_ca", &engine_ca),
        ("tls_verify", "host"),
        ("tls_handshake_timeout_ms", "60000"),
    ] {
        cfg.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    let e = Engine::start(cfg).unwrap();
    e.join_direct("c", "p", &uri).unwrap();
    wait_joined(&e, "c", 1);
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + i / 251) as u8).collect();
    let t = upload(&e, "c", &data);
    let states = wait_done(&e, t, 1, Duration::from_secs(300), String::new);
    let got = if states[0].1 == DeliveryState::Done {
        rx.next(Duration::from_secs(60)).and_then(|r| r.sha1)
    } else {
        rx.next(Duration::from_millis(200)).and_then(|r| r.sha1)
    };
    let want: String = Sha1::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    e.stop();
    (states[0].1.clone(), got, want)
}

#[test]
fn tls_receiver_gets_the_file_from_an_engine_that_verifies_it() {
    let (state, got, want) = deliver(true);
    assert_eq!(state, DeliveryState::Done);
    assert_eq!(got, Some(want));
}

#[test]
fn tls_receiver_with_an_untrusted_certificate_gets_nothing() {
    let (state, got, _) = deliver(false);
    match &state {
        DeliveryState::Failed { reason, .. } => assert!(reason.contains("TLS"), "{reason}"),
        other => panic!("delivered to an untrusted receiver: {other:?}"),
    }
    assert_eq!(got, None);
}
