//! HTTPS for the page and API (`http_tls_cert`, `http_tls_key`) on real sockets (127.0.0.1), with
//! a CA made here (rcgen) and the `curl` command line as the client: an upload with
//! `curl --cacert` reaches a receiver intact (SHA-1 checked there); every response carries
//! `Strict-Transport-Security`; the login cookie is `Secure`; curl without the CA refuses the
//! server; a plain-HTTP request gets no HTTP answer; a client that never starts its handshake
//! neither holds up other clients (the handshake runs on the connection's thread) nor outlives
//! `http_head_timeout_ms`.

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use msrpcast::runtime::receive::{hex, ReceiveServer, Sink};
use sha1::{Digest, Sha1};

mod common;

use common::http::{set_all, wait, HttpFix as Fix, TOKEN};

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it, as files.
fn pki(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    pki_named(dir, "")
}

/// [`pki`] with the file names prefixed by `tag`.
fn pki_named(dir: &std::path::Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("msrpcast test CA {tag}"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let w = |name: &str, text: String| {
        let p = dir.join(format!("{tag}{name}"));
        std::fs::write(&p, text).unwrap();
        p
    };
    (
        w("ca.pem", ca_cert.pem()),
        w("cert.pem", cert.pem()),
        w("key.pem", key.serialize_pem()),
    )
}

impl Fix {
    /// HTTPS with a certificate of a CA made in the fixture's folder ([`Fix::ca`]).
    fn new(name: &str, sets: &[(&str, &str)]) -> Fix {
        let fix = Fix::start(&format!("https-{name}"), |dir, cfg| {
            let (_, cert, key) = pki(dir);
            set_all(
                cfg,
                &[
                    ("http_token", TOKEN),
                    ("control_socket", ""),
                    ("http_tls_cert", cert.to_str().unwrap()),
                    ("http_tls_key", key.to_str().unwrap()),
                ],
            );
            set_all(cfg, sets);
        });
        assert!(fix.server().is_https());
        fix
    }

    /// The CA that signed the server's certificate (written by [`pki`]).
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }

    /// `curl` with a 20 s cap; `-D -` puts the response head on stdout before the body.
    fn curl(&self, args: &[&str]) -> Output {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "-D", "-"])
            .args(args)
            .output()
            .expect("curl")
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn upload_over_https_with_hsts_and_a_secure_cookie() {
    let fix = Fix::new("upload", &[]);
    let ca = fix.ca();
    let ca = ca.to_str().unwrap();
    let rx = ReceiveServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "rx",
        Sink::Discard,
        true,
        None,
        1,
    )
    .unwrap();
    let engine = fix.engine();
    engine.join_direct("c", "r0", &rx.to_path_text()).unwrap();
    wait("join", Duration::from_secs(5), || {
        engine
            .roster()
            .conference("c")
            .is_some_and(|c| c.participants.len() == 1)
    });

    // 3 MiB of varied bytes through curl --cacert.
    let body: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = fix.dir.join("upload.bin");
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{}", file.display());
    let auth = format!("Authorization: Bearer {TOKEN}");
    let o = fix.curl(&[
        "--cacert",
        ca,
        "-H",
        &auth,
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        "Content-Disposition: attachment; filename=\"upload.bin\"",
        "--data-binary",
        &data,
        &fix.url("https", "/conferences/c/files"),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("HTTP/1.1 201 "), "{out}");
    assert!(
        out.contains("Strict-Transport-Security: max-age=31536000\r\n"),
        "{out}"
    );
    let got = rx.next(Duration::from_secs(20)).expect("nothing received");
    assert_eq!(got.failure, None);
    assert_eq!(got.bytes, body.len() as u64);
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(&body))));

    // The page, and the login cookie.
    let o = fix.curl(&["--cacert", ca, &fix.url("https", "/")]);
    let out = text(&o);
    assert!(
        out.contains("HTTP/1.1 200 ") && out.contains("<!DOCTYPE html>"),
        "{out}"
    );
    assert!(out.contains("Strict-Transport-Security: "), "{out}");
    let login = format!("token={TOKEN}");
    let o = fix.curl(&[
        "--cacert",
        ca,
        "--data",
        &login,
        &fix.url("https", "/login"),
    ]);
    let out = text(&o);
    assert!(out.contains("HTTP/1.1 303 "), "{out}");
    let cookie = out
        .lines()
        .find(|l| l.starts_with("Set-Cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {out}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
}

/// The server's certificate is checked by the client: without the CA curl refuses it (exit 60);
/// a plain-HTTP request to the HTTPS port gets no HTTP response.
#[test]
fn unknown_ca_and_plain_http_get_nothing() {
    let fix = Fix::new("refuse", &[]);
    let o = fix.curl(&[&fix.url("https", "/api/conferences")]);
    assert_eq!(o.status.code(), Some(60), "{}", text(&o));
    let o = fix.curl(&[&fix.url("http", "/api/conferences")]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(!out.contains("HTTP/1.1 "), "{out}");
}

/// `http_hsts_max_age_s = 0`: HTTPS without HSTS.
#[test]
fn hsts_zero_sends_none() {
    let fix = Fix::new("nohsts", &[("http_hsts_max_age_s", "0")]);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let o = fix.curl(&[
        "--cacert",
        fix.ca().to_str().unwrap(),
        "-H",
        &auth,
        &fix.url("https", "/api/conferences"),
    ]);
    let out = text(&o);
    assert!(out.contains("HTTP/1.1 200 "), "{out}");
    assert!(!out.contains("Strict-Transport-Security"), "{out}");
}

/// A client that connects and never sends its ClientHello: others are served meanwhile (the
/// handshake is on the connection's thread), and it is closed after `http_head_timeout_ms`.
#[test]
fn silent_client_holds_nobody_and_is_closed_at_the_head_deadline() {
    let fix = Fix::new("silent", &[("http_head_timeout_ms", "700")]);
    let mut silent = TcpStream::connect(fix.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t0 = Instant::now();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let o = fix.curl(&[
        "--cacert",
        fix.ca().to_str().unwrap(),
        "-H",
        &auth,
        &fix.url("https", "/api/conferences"),
    ]);
    assert!(text(&o).contains("HTTP/1.1 200 "), "{}", text(&o));
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).unwrap_or(0);
    let closed_after = t0.elapsed();
    assert_eq!(n, 0, "the silent client got bytes");
    assert!(
        closed_after >= Duration::from_millis(600) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
}

/// `reload_tls` re-reads the files; a broken file leaves the served certificate in place.
#[test]
fn reload_keeps_serving() {
    let fix = Fix::new("reload", &[]);
    let server = fix.server();
    let engine = fix.engine();
    assert!(server.reload_tls().unwrap());
    let done = msrpcast::http::reload_tls(engine, Some(server)).unwrap();
    assert!(done.https && !done.msrp, "{done:?}");
    std::fs::write(fix.dir.join("key.pem"), "garbage").unwrap();
    let e = server.reload_tls().unwrap_err().to_string();
    assert!(e.contains("key.pem"), "{e}");
    let e = msrpcast::http::reload_tls(engine, Some(server)).unwrap_err();
    assert!(
        matches!(&e, msrpcast::http::TlsReloadError::Failed(t) if t.contains("key.pem")),
        "{e}"
    );
    assert_eq!(
        msrpcast::http::reload_tls(engine, None).unwrap_err(),
        msrpcast::http::TlsReloadError::NothingOn
    );
    let o = fix.curl(&[
        "--cacert",
        fix.ca().to_str().unwrap(),
        &fix.url("https", "/"),
    ]);
    assert!(text(&o).contains("HTTP/1.1 200 "), "{}", text(&o));
}

/// `msrpcast serve --https-cert --https-key` serves HTTPS and re-reads its certificate on
/// SIGHUP: a client trusting only a new CA is refused until the signal, then served.
#[test]
fn serve_over_https_reloads_on_sighup() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("msrpcast-https-hup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca1, cert, key) = pki(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_msrpcast"))
        .args(["serve", "--http", "127.0.0.1:0", "--spool"])
        .arg(dir.join("spool"))
        .args([
            "--participant",
            "c1=msrp://127.0.0.1:1/x;tcp",
            "--https-cert",
        ])
        .arg(&cert)
        .arg("--https-key")
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let child = Kill(child);
    let mut url = String::new();
    out.read_line(&mut url).unwrap();
    let url = url.trim().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let get = |ca: &PathBuf| {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(ca)
            .arg(&url)
            .output()
            .unwrap()
    };
    let o = get(&ca1);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{}", text(&o));
    // A renewed certificate from another CA, written over the same files.
    let (ca2, cert2, key2) = pki_named(&dir, "new-");
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    assert_eq!(
        get(&ca2).status.code(),
        Some(60),
        "served the new certificate before SIGHUP"
    );
    let hup = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait(
        "the new certificate after SIGHUP",
        Duration::from_secs(10),
        || String::from_utf8_lossy(&get(&ca2).stdout) == "200",
    );
    // Still alive and serving after the signal.
    assert_eq!(get(&ca1).status.code(), Some(60));
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
