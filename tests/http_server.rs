//! The HTTP server end to end on real sockets (127.0.0.1): engine + `HttpServer` + receivers
//! (`msrpcast receive`-style `ReceiveServer`s that check SHA-1 on their side). Every limit of
//! issue 4 answers with its status; uploads stream into the spool; a 1 GiB upload keeps the
//! process's memory bounded.
//!
//! The tests take a global lock and run one at a time: the machine is small and the memory test
//! reads the whole process's RSS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use msrpcast::config::Config;
use msrpcast::http::HttpServer;
use msrpcast::runtime::receive::hex;
use msrpcast::runtime::Engine;
use sha1::{Digest, Sha1};

mod common;
use common::data;
use common::misbehave::Misbehave;

use common::http::{connect, read_response, roundtrip, set_all, wait, HttpFix as Fix, Resp, TOKEN};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fix {
    fn new(name: &str, sets: &[(&str, &str)]) -> Fix {
        Fix::start(&format!("http-{name}"), |_, cfg| {
            set_all(
                cfg,
                &[("http_token", TOKEN), ("answer_timeout_ms", "600000")],
            );
            set_all(cfg, sets);
        })
    }

    /// `n` receivers joined to `conf` as r0..r{n-1}.
    fn receivers(&mut self, conf: &str, n: usize, misbehave: Option<Misbehave>) {
        Fix::receivers_keyed(self, conf, n, |i| format!("r{i}"), misbehave);
    }

    /// A SIP participant whose offer nobody answers (its delivery stays `offering`).
    fn sip_participant(&self, conf: &str) {
        self.engine()
            .join(conf, "sip1", "sip:nobody@127.0.0.1:9", None)
            .unwrap();
        self.wait_participants(conf, 1);
    }

    fn spool_files(&self) -> Vec<PathBuf> {
        spool_files(&self.dir.join("spool"))
    }
}

fn spool_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "spool"))
                .collect()
        })
        .unwrap_or_default()
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    roundtrip(
        addr,
        format!(
            "GET {path} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

/// Sends `head` then the body from `body` on a writer thread (write errors ignored: the server
/// may answer early and close), and reads the response on this one.
fn send_streaming(
    addr: SocketAddr,
    head: String,
    body: impl FnOnce(&mut TcpStream) -> std::io::Result<()> + Send + 'static,
) -> Resp {
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        if w.write_all(head.as_bytes()).is_ok() {
            let _ = body(&mut w);
        }
    });
    let r = read_response(&mut s);
    drop(s);
    let _ = writer.join();
    r
}

fn upload_head(conf: &str, extra: &str) -> String {
    format!(
        "POST /conferences/{conf}/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20final.bin\r\n{extra}\r\n"
    )
}

fn upload_raw(addr: SocketAddr, conf: &str, body: Arc<Vec<u8>>) -> Resp {
    let head = upload_head(conf, &format!("Content-Length: {}\r\n", body.len()));
    send_streaming(addr, head, move |w| {
        for c in body.chunks(100_000) {
            w.write_all(c)?;
        }
        Ok(())
    })
}

fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn multipart(body: &[u8], boundary: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"mp.bin\"\r\n\
             Content-Type: application/x-test\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Polls `GET /api/transfers/{id}` until `pred` holds on its JSON.
fn wait_transfer(
    addr: SocketAddr,
    id: u64,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let t0 = Instant::now();
    loop {
        let r = get(addr, &format!("/api/transfers/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.text();
        if pred(&j) {
            return j;
        }
        assert!(t0.elapsed() < limit, "transfer {id} never matched: {j}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

fn check_receivers(fix: &Fix, len: usize, sha1: &str) {
    for (i, r) in fix.receivers.iter().enumerate() {
        let got = r
            .next(Duration::from_secs(60))
            .expect("receiver reported nothing");
        assert_eq!(got.failure, None, "receiver {i}");
        assert_eq!(got.bytes, len as u64, "receiver {i}");
        assert_eq!(got.sha1.as_deref(), Some(sha1), "receiver {i}");
    }
}

#[test]
fn raw_multipart_and_chunked_uploads_reach_three_receivers_and_count_in_metrics() {
    let _g = serial();
    let mut fix = Fix::new("fanout", &[]);
    fix.receivers("c1", 3, None);
    let addr = fix.addr;
    let body = Arc::new(data(3 * 1024 * 1024 + 17, 7));
    let sha1 = hex(&Sha1::digest(&body[..]));

    // Raw body, Content-Length.
    let r = upload_raw(addr, "c1", body.clone());
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.transfer();
    assert_eq!(r.header("location"), Some(format!("/api/transfers/{id}")));
    check_receivers(&fix, body.len(), &sha1);
    let j = wait_transfer(addr, id, Duration::from_secs(30), |j| {
        count(j, "\"state\":\"done\"") == 3 && j.contains("\"state\":\"complete\"")
    });
    assert!(
        j.contains("\"state\":\"complete\"") && j.contains(&sha1),
        "{j}"
    );
    assert!(j.contains("\"name\":\"résumé final.bin\""), "{j}");

    // multipart/form-data with a text field before the file, Content-Length.
    let mp = multipart(&body, "----b0undary");
    let head = format!(
        "POST /conferences/c1/files HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary=----b0undary\r\nContent-Length: {}\r\n\r\n",
        mp.len()
    );
    let r = send_streaming(addr, head, move |w| {
        for c in mp.chunks(65_536 + 3) {
            w.write_all(c)?;
        }
        Ok(())
    });
    assert_eq!(r.status, 201, "{}", r.text());
    let id2 = r.transfer();
    check_receivers(&fix, body.len(), &sha1);
    let j = wait_transfer(addr, id2, Duration::from_secs(30), |j| {
        count(j, "\"state\":\"done\"") == 3 && j.contains("\"state\":\"complete\"")
    });
    assert!(
        j.contains("\"name\":\"mp.bin\"") && j.contains("application/x-test"),
        "{j}"
    );

    // Chunked transfer coding, uneven chunk sizes, Expect: 100-continue.
    let ch = chunked(&body, &[1, 4093, 65_536, 300_001, 7]);
    let head = upload_head(
        "c1",
        "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n",
    );
    let r = send_streaming(addr, head, move |w| w.write_all(&ch));
    assert_eq!(r.status, 201, "{}", r.text());
    let id3 = r.transfer();
    check_receivers(&fix, body.len(), &sha1);
    // The SHA-1 (at a lower priority) may finish after the deliveries: the counters below
    // count the upload complete once it has.
    wait_transfer(addr, id3, Duration::from_secs(30), |j| {
        count(j, "\"state\":\"done\"") == 3 && j.contains("\"state\":\"complete\"")
    });

    // The counters: 3 uploads, 9 deliveries done, every byte acknowledged.
    let m = get(addr, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let m = m.text();
    for line in [
        "msrpcast_uploads_total 3\n".to_string(),
        "msrpcast_uploads_ended_total{outcome=\"complete\"} 3\n".to_string(),
        "msrpcast_deliveries_total{outcome=\"done\"} 9\n".to_string(),
        "msrpcast_deliveries_total{outcome=\"failed\"} 0\n".to_string(),
        format!("msrpcast_delivery_bytes_total {}\n", 9 * body.len()),
        format!("msrpcast_http_upload_bytes_total {}\n", 3 * body.len()),
        "msrpcast_sessions_active 0\n".to_string(),
        "msrpcast_participants 3\n".to_string(),
        "# TYPE msrpcast_deliveries_total counter\n".to_string(),
    ] {
        assert!(m.contains(&line), "metrics lack {line:?}:\n{m}");
    }
}

#[test]
fn auth_on_every_route() {
    let _g = serial();
    let fix = Fix::new("auth", &[]);
    fix.sip_participant("c1");
    let addr = fix.addr;
    let routes = [
        ("GET", "/api/conferences"),
        ("GET", "/api/conferences/c1"),
        ("GET", "/api/transfers/1"),
        ("DELETE", "/api/transfers/1"),
        ("GET", "/api/events"),
        ("GET", "/metrics"),
        ("POST", "/conferences/c1/files"),
    ];
    for (m, p) in routes {
        for auth in [
            "",
            "Authorization: Bearer wrong-token\r\n",
            "Authorization: Basic czNjcmV0\r\n",
        ] {
            let r = roundtrip(
                addr,
                format!("{m} {p} HTTP/1.1\r\n{auth}Content-Length: 1\r\n\r\nx").as_bytes(),
            );
            assert_eq!(r.status, 401, "{m} {p} with {auth:?}");
            assert!(r.header("www-authenticate").is_some());
        }
        let r = roundtrip(
            addr,
            format!(
                "{m} {p} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1\r\n\r\nx"
            )
            .as_bytes(),
        );
        assert!(
            [200, 201, 204, 404].contains(&r.status),
            "{m} {p} with the token: {} {}",
            r.status,
            r.text()
        );
    }
    // The page itself needs no token.
    let r = roundtrip(addr, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("id=\"login\""));
    // Login form: wrong token 401, right token 303 with an HttpOnly SameSite=Strict cookie.
    let login = |t: &str| {
        let body = format!("token={t}");
        roundtrip(
            addr,
            format!(
                "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    assert_eq!(login("nope").status, 401);
    let r = login(TOKEN);
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r.header("set-cookie").expect("cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = |path: &str| {
        roundtrip(
            addr,
            format!("GET {path} HTTP/1.1\r\nCookie: {pair}\r\n\r\n").as_bytes(),
        )
    };
    let r = with_cookie("/api/conferences");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("\"id\":\"c1\"") && r.text().contains("sip:nobody@"),
        "{}",
        r.text()
    );
    assert_eq!(with_cookie("/metrics").status, 200);
    // A made-up cookie is refused.
    let r = roundtrip(
        addr,
        b"GET /api/conferences HTTP/1.1\r\nCookie: msrpcast_token=00112233445566778899aabbccddeeff\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    // A cookie works for an upload too (the page's XHR sends no Authorization header).
    let r = roundtrip(
        addr,
        format!(
            "POST /conferences/c1/files HTTP/1.1\r\nCookie: {pair}\r\nContent-Length: 3\r\n\r\nabc"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn too_large_removes_the_partial_spool_file_and_aborts_started_deliveries() {
    let _g = serial();
    let mut fix = Fix::new("toolarge", &[("max_file_bytes", "2MiB")]);
    fix.receivers("c1", 3, None);
    let addr = fix.addr;
    // Declared too large: refused before anything is spooled.
    let r = roundtrip(
        addr,
        upload_head("c1", &format!("Content-Length: {}\r\n", 3 << 20)).as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(fix.spool_files().is_empty());
    // Chunked: the limit is hit while streaming, after the deliveries started.
    let body = data(8 << 20, 3);
    let head = upload_head("c1", "Transfer-Encoding: chunked\r\n");
    let first = chunked(&body[..1 << 20], &[65_536]);
    let rest = chunked(&body[1 << 20..], &[65_536]);
    let engine = fix.engine_arc();
    let r = send_streaming(addr, head, move |w| {
        // Strip the terminating 0-chunk of the first part so both parts form one body.
        w.write_all(&first[..first.len() - 5])?;
        let t0 = Instant::now();
        // Let the deliveries start on the first megabyte.
        while t0.elapsed() < Duration::from_secs(10) {
            let started = engine.roster().snapshot().transfers.iter().any(|t| {
                t.deliveries
                    .iter()
                    .filter(|d| d.state.name() == "sending")
                    .count()
                    == 3
            });
            if started {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        w.write_all(&rest)
    });
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("too_large"), "{}", r.text());
    wait(
        "the partial spool file to go",
        Duration::from_secs(5),
        || fix.spool_files().is_empty(),
    );
    let snap = fix.engine().roster().snapshot();
    let t = snap.transfers.last().expect("the transfer");
    let id = t.id.0;
    let j = wait_transfer(addr, id, Duration::from_secs(10), |j| {
        !j.contains("\"state\":\"sending\"")
            && !j.contains("\"state\":\"queued\"")
            && !j.contains("\"state\":\"connecting\"")
    });
    assert!(j.contains("\"state\":\"too-large\""), "{j}");
    assert_eq!(count(&j, "\"state\":\"done\""), 0, "{j}");
    assert_eq!(
        count(&j, "\"state\":\"failed\"") + count(&j, "\"state\":\"cancelled\""),
        3,
        "{j}"
    );
    // The receivers saw the message end without success (`#`).
    for r in &fix.receivers {
        if let Some(got) = r.next(Duration::from_secs(5)) {
            assert!(got.failure.is_some(), "{got:?}");
        }
    }
}

#[test]
fn header_block_over_16_kib_is_431() {
    let _g = serial();
    let fix = Fix::new("431", &[]);
    let req = format!(
        "GET /api/conferences HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let r = send_streaming(fix.addr, req, |_| Ok(()));
    assert_eq!(r.status, 431, "{}", r.text());
}

#[test]
fn no_progress_is_408_and_the_upload_is_aborted() {
    let _g = serial();
    let fix = Fix::new("408", &[("http_idle_timeout_ms", "300")]);
    fix.sip_participant("c1");
    let mut s = connect(fix.addr);
    s.write_all(upload_head("c1", "Content-Length: 1000\r\n").as_bytes())
        .unwrap();
    s.write_all(&[7u8; 10]).unwrap();
    wait("the upload to start", Duration::from_secs(5), || {
        !fix.spool_files().is_empty()
    });
    let t0 = Instant::now();
    let r = read_response(&mut s);
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    wait(
        "the partial spool file to go",
        Duration::from_secs(5),
        || fix.spool_files().is_empty(),
    );
    // A half-sent head gets 408 too.
    let mut s = connect(fix.addr);
    s.write_all(b"GET /api/conf").unwrap();
    assert_eq!(read_response(&mut s).status, 408);
}

#[test]
fn too_many_connections_or_uploads_is_503() {
    let _g = serial();
    let fix = Fix::new(
        "503",
        &[("http_max_connections", "3"), ("http_max_uploads", "1")],
    );
    fix.sip_participant("c1");
    let addr = fix.addr;
    // Upload A holds the only upload place.
    let mut a = connect(addr);
    a.write_all(upload_head("c1", "Content-Length: 20\r\n").as_bytes())
        .unwrap();
    a.write_all(&[1u8; 10]).unwrap();
    wait("upload A", Duration::from_secs(5), || {
        fix.server().backend().active_uploads() == 1
    });
    let r = roundtrip(addr, upload_head("c1", "Content-Length: 5\r\n").as_bytes());
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("http_max_uploads"), "{}", r.text());
    // Connections: A plus two in the middle of a request fill the three places (idle ones, or
    // ones still sending a head, would make room for a new connection: issue 14 finding 5).
    wait(
        "the refused connection to end",
        Duration::from_secs(5),
        || fix.server().connections() == 1,
    );
    let mut b = connect(addr);
    let mut c = connect(addr);
    for s in [&mut b, &mut c] {
        s.write_all(b"POST /login HTTP/1.1\r\nContent-Length: 100\r\n\r\ntoken=")
            .unwrap();
    }
    wait("3 busy connections", Duration::from_secs(5), || {
        fix.server().busy_connections() == 3
    });
    let mut d = connect(addr);
    let r = read_response(&mut d);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("http_max_connections"), "{}", r.text());
    // Upload A still completes.
    a.write_all(&[1u8; 10]).unwrap();
    let r = read_response(&mut a);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn unknown_conference_is_404_and_emptied_conference_is_409() {
    let _g = serial();
    let fix = Fix::new("404", &[]);
    let r = roundtrip(
        fix.addr,
        format!("{}abc", upload_head("nope", "Content-Length: 3\r\n")).as_bytes(),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(get(fix.addr, "/api/conferences/nope").status, 404);
    assert_eq!(get(fix.addr, "/api/transfers/123").status, 404);
    assert_eq!(get(fix.addr, "/api/transfers/x").status, 404);
    fix.sip_participant("c9");
    assert_eq!(get(fix.addr, "/api/conferences/c9").status, 200);
    fix.engine().leave("c9", "sip1").unwrap();
    wait("the conference to end", Duration::from_secs(5), || {
        fix.engine().roster().conference("c9").is_none()
    });
    let r = roundtrip(
        fix.addr,
        upload_head("c9", "Content-Length: 3\r\n").as_bytes(),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("no participants"), "{}", r.text());
    assert!(fix.spool_files().is_empty());
}

#[test]
fn malformed_bodies_are_400_and_other_methods_405() {
    let _g = serial();
    let fix = Fix::new("400", &[]);
    fix.sip_participant("c1");
    let addr = fix.addr;
    let r = roundtrip(
        addr,
        format!(
            "{}5\r\nhello\r\nzz\r\n",
            upload_head("c1", "Transfer-Encoding: chunked\r\n")
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("chunk size"), "{}", r.text());
    let r = roundtrip(
        addr,
        format!(
            "{}3\r\nabcXY",
            upload_head("c1", "Transfer-Encoding: chunked\r\n")
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // Multipart: no closing boundary before the body ends.
    let body =
        "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nDATA\r\n";
    let r = roundtrip(
        addr,
        format!(
            "POST /conferences/c1/files HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("multipart"), "{}", r.text());
    // Multipart: garbage after a boundary.
    let body = "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nD\r\n--Bxx\r\n";
    let r = roundtrip(
        addr,
        format!(
            "POST /conferences/c1/files HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n{body}--B--\r\n",
            body.len() + 7
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // Multipart without a boundary parameter.
    let r = roundtrip(
        addr,
        format!(
            "POST /conferences/c1/files HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: multipart/form-data\r\nContent-Length: 2\r\n\r\nxx"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    wait(
        "spool files of failed uploads to go",
        Duration::from_secs(5),
        || fix.spool_files().is_empty(),
    );
    for (m, p, allow) in [
        ("PUT", "/api/conferences", "GET"),
        ("POST", "/api/transfers/1", "GET, DELETE"),
        ("GET", "/conferences/c1/files", "POST"),
    ] {
        let r = roundtrip(
            addr,
            format!(
                "{m} {p} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 405, "{m} {p}");
        let got = r.header("allow").unwrap_or_default();
        assert!(
            allow.split(", ").all(|a| got.contains(a)),
            "{m} {p}: Allow {got:?}"
        );
    }
}

#[test]
fn delete_cancels_every_delivery() {
    let _g = serial();
    let mut fix = Fix::new("cancel", &[]);
    fix.receivers("c1", 3, Some(Misbehave::Rate(256 * 1024)));
    let addr = fix.addr;
    let body = Arc::new(data(4 << 20, 11));
    let r = upload_raw(addr, "c1", body);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.transfer();
    wait_transfer(addr, id, Duration::from_secs(20), |j| {
        count(j, "\"state\":\"sending\"") == 3
    });
    let r = roundtrip(
        addr,
        format!("DELETE /api/transfers/{id} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let j = wait_transfer(addr, id, Duration::from_secs(10), |j| {
        count(j, "\"state\":\"cancelled\"") == 4
    });
    assert!(j.starts_with(&format!("{{\"id\":{id},")), "{j}");
    for (i, r) in fix.receivers.iter().enumerate() {
        let got = r
            .next(Duration::from_secs(20))
            .expect("receiver saw the abort");
        assert!(got.failure.is_some(), "receiver {i}: {got:?}");
    }
    // Cancelling again, or a transfer that does not exist.
    let r = roundtrip(
        addr,
        b"DELETE /api/transfers/424242 HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\n\r\n",
    );
    assert_eq!(r.status, 404);
}

#[test]
fn events_stream_throttled_progress_of_a_transfer() {
    let _g = serial();
    let mut fix = Fix::new("sse", &[("http_sse_interval_ms", "200")]);
    fix.receivers("c1", 2, Some(Misbehave::Rate(1 << 20)));
    let addr = fix.addr;
    let mut s = connect(addr);
    s.write_all(
        format!("GET /api/events HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut rd = BufReader::new(s);
    let r = read_response(&mut rd);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    let body = Arc::new(data(3 << 20, 5));
    let t0 = Instant::now();
    let up = std::thread::spawn(move || upload_raw(addr, "c1", body));
    let mut events: Vec<(Instant, String)> = Vec::new();
    let mut event = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(rd.read_line(&mut line).unwrap() > 0, "stream ended");
        let l = line.trim_end();
        if let Some(e) = l.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = l.strip_prefix("data: ") {
            assert_eq!(event, "transfer");
            events.push((Instant::now(), d.to_string()));
            if count(d, "\"state\":\"done\"") == 2 {
                break;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no final event");
    }
    let r = up.join().unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.transfer();
    let mine: Vec<&(Instant, String)> = events
        .iter()
        .filter(|(_, d)| d.starts_with(&format!("{{\"id\":{id},")))
        .collect();
    assert!(mine.len() >= 3, "{mine:?}");
    // Progress in between: some event shows a delivery part-way.
    assert!(
        mine.iter().any(|(_, d)| d.contains("\"state\":\"sending\"")
            && d.contains("\"percent\":")
            && !d.contains("\"percent\":100,")),
        "{mine:?}"
    );
    // Throttle: at most one event of a transfer per interval (200 ms), plus the first one.
    let span = mine.last().unwrap().0 - mine[0].0;
    let most = span.as_millis() as usize / 200 + 2;
    assert!(mine.len() <= most, "{} events in {span:?}", mine.len());
}

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn one_gib_upload_keeps_memory_bounded() {
    let _g = serial();
    let fix = Fix::new("1gib", &[]);
    // A SIP participant that never answers: the upload alone is measured.
    fix.sip_participant("c1");
    const SIZE: u64 = 1 << 30;
    let base = vm_rss_kib();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(base));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(vm_rss_kib(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    let head = upload_head("c1", &format!("Content-Length: {SIZE}\r\n"));
    let r = send_streaming(fix.addr, head, |w| {
        let mut block = data(1 << 20, 99);
        for i in 0..(SIZE >> 20) {
            block[..8].copy_from_slice(&i.to_le_bytes());
            w.write_all(&block)?;
        }
        Ok(())
    });
    let secs = t0.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    // The SHA-1 finishes behind the 201: the transfer becomes complete when it is known.
    let j = wait_transfer(fix.addr, r.transfer(), Duration::from_secs(60), |j| {
        j.contains("\"complete\"")
    });
    assert!(j.contains(&format!("\"size\":{SIZE}")), "{j}");
    let growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(base);
    eprintln!(
        "1 GiB upload: {secs:.2} s ({:.2} GB/s), RSS growth {growth} KiB",
        SIZE as f64 / secs / 1e9
    );
    assert!(growth < 64 * 1024, "RSS grew by {growth} KiB");
}

#[test]
fn server_without_token_binds_loopback_and_stops_cleanly() {
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("msrpcast-http-notoken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    cfg.set("spool_dir", dir.to_str().unwrap()).unwrap();
    cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
    cfg.set("http_listen", "127.0.0.1:0").unwrap();
    cfg.set("log_level", "error").unwrap();
    let engine = Arc::new(Engine::start(cfg.clone()).unwrap());
    // Not loopback in the settings (as the C ABI could hand it over unvalidated): loopback anyway.
    cfg.http_listen = "0.0.0.0:0".parse().unwrap();
    let server = HttpServer::start(engine.clone(), &cfg).unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback(), "{addr}");
    // No token: the API is open on loopback.
    let r = roundtrip(addr, b"GET /api/conferences HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);
    engine
        .join("c1", "sip1", "sip:x@127.0.0.1:9", None)
        .unwrap();
    wait("join", Duration::from_secs(5), || {
        engine.roster().conference("c1").is_some()
    });
    // An upload in progress when the server stops is aborted and its spool file removed.
    let mut s = connect(addr);
    s.write_all(b"POST /conferences/c1/files HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
        .unwrap();
    wait("the upload", Duration::from_secs(5), || {
        !spool_files(&dir).is_empty()
    });
    let t0 = Instant::now();
    drop(server);
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(spool_files(&dir).is_empty());
    assert!(TcpStream::connect(addr).is_err());
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let _g = serial();
    let fix = Fix::new("keepalive", &[]);
    fix.sip_participant("c1");
    let mut s = connect(fix.addr);
    for i in 0..3 {
        s.write_all(
            format!(
                "GET /api/conferences HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n\
                 POST /conferences/c1/files HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: 5\r\n\r\nhello"
            )
            .as_bytes(),
        )
        .unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, 200, "round {i}");
        assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
        let r = read_response(&mut s);
        assert_eq!(r.status, 201, "round {i}: {}", r.text());
    }
    // A 404 keeps the connection too; `Connection: close` ends it.
    s.write_all(
        format!(
            "GET /nope HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut s).status, 404);
    let r = read_response(&mut s);
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("msrpcast_http_uploads_total 3\n"),
        "{}",
        r.text()
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
}
