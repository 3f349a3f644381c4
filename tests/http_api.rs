//! The HTTP API against its reference: every route of `src/http/route.rs` is in the OpenAPI
//! document (`docs/openapi.json`, served at `/api/openapi.json`), and every response of a real
//! run — engine, HTTP server and MSRP receivers on 127.0.0.1, every route and every error status
//! that can be provoked — validates against the schema of its route and status
//! (`tests/http_api/check.py` with Debian's python3-jsonschema). Also: CORS, and `/metrics`
//! parsed with `prometheus_client.parser`, its counters checked after one delivery.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use msrpcast::http::openapi::OPENAPI_JSON;
use msrpcast::http::route::ROUTES;

mod common;

use common::http::{connect, read_response, roundtrip, set_all, HttpFix as Fix, Resp};
use common::misbehave::Misbehave;

const TOKEN: &str = "api-test-token";
const PORTAL: &str = "https://portal.example";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn manifest(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Debian's python3 (where python3-jsonschema and python3-prometheus-client are installed),
/// else whatever `python3` is first on PATH; the test fails when neither has the modules.
fn python() -> String {
    for p in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(p)
            .args(["-c", "import jsonschema, prometheus_client.parser"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.to_string();
        }
    }
    panic!(
        "no python3 with jsonschema and prometheus_client: run scripts/install-deps.sh \
         (python3-jsonschema, python3-prometheus-client)"
    );
}

fn check(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(python())
        .arg(manifest("tests/http_api/check.py"))
        .args(args)
        .output()
        .expect("run check.py");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Fix {
    fn new(name: &str, token: Option<&str>, sets: &[(&str, &str)]) -> Fix {
        Fix::start(&format!("api-{name}"), |_, cfg| {
            if let Some(t) = token {
                cfg.set("http_token", t).unwrap();
            }
            cfg.set("http_sse_interval_ms", "20").unwrap();
            set_all(cfg, sets);
        })
    }

    fn receivers(&mut self, conf: &str, n: usize) {
        self.receivers_misbehaving(conf, n, None);
    }

    fn receivers_misbehaving(&mut self, conf: &str, n: usize, misbehave: Option<Misbehave>) {
        Fix::receivers_keyed(self, conf, n, |i| format!("{conf}-r{i}"), misbehave);
    }
}

fn wait(what: &str, f: impl FnMut() -> bool) {
    common::http::wait(what, Duration::from_secs(20), f)
}

/// Every response, tagged with the route (method and path template) it belongs to.
#[derive(Default)]
struct Records(Vec<String>);

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Records {
    fn add(&mut self, method: &str, template: &str, r: &Resp) {
        self.0.push(format!(
            "{{\"method\":{},\"template\":{},\"status\":{},\"content_type\":{},\"body\":{}}}",
            json_str(method),
            json_str(template),
            r.status,
            json_str(&r.header("content-type").unwrap_or_default()),
            json_str(&r.text())
        ));
    }

    fn add_event(&mut self, event: &str, data: &str) {
        self.0.push(format!(
            "{{\"method\":\"GET\",\"template\":\"/api/events\",\"status\":200,\
\"content_type\":\"text/event-stream\",\"sse_event\":{},\"body\":{}}}",
            json_str(event),
            json_str(data)
        ));
    }

    fn write(&self, path: &std::path::Path) {
        std::fs::write(path, format!("[{}]", self.0.join(",\n"))).unwrap();
    }
}

/// Sends a request with `Authorization: Bearer`, records its response under (`method`,
/// `template`), returns it.
fn call(
    rec: &mut Records,
    addr: SocketAddr,
    method: &str,
    path: &str,
    template: &str,
    extra: &str,
    body: &[u8],
) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
Connection: close\r\n{extra}"
    )
    .into_bytes();
    if !extra.contains("Transfer-Encoding") && !extra.contains("Content-Length") {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    let r = roundtrip(addr, &req);
    rec.add(method, template, &r);
    r
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn raw_upload(rec: &mut Records, addr: SocketAddr, conf: &str, body: &[u8]) -> Resp {
    call(
        rec,
        addr,
        "POST",
        &format!("/conferences/{conf}/files"),
        "/conferences/{conference}/files",
        "Content-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename*=UTF-8''report%20final.bin\r\n",
        body,
    )
}

fn wait_transfer_done(addr: SocketAddr, id: u64, deliveries: usize) -> String {
    wait_transfer_until(addr, id, |j| {
        j.matches("\"state\":\"done\"").count() == deliveries
    })
}

/// Polls `GET /api/transfers/{id}` until `pred` holds on its JSON; returns it.
fn wait_transfer_until(addr: SocketAddr, id: u64, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    wait("transfer state", || {
        let r = roundtrip(
            addr,
            format!(
                "GET /api/transfers/{id} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
Connection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        last = r.text();
        pred(&last)
    });
    last
}

/// Reads SSE frames from `s` until `until` says stop; returns (event, data) pairs.
fn read_events(
    s: &mut TcpStream,
    mut until: impl FnMut(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let mut buf = String::new();
    let mut events = Vec::new();
    let mut chunk = [0u8; 8192];
    let t0 = Instant::now();
    while !until(&events) {
        assert!(t0.elapsed() < Duration::from_secs(20), "no events: {buf}");
        let n = s.read(&mut chunk).expect("event stream read");
        assert!(n > 0, "event stream closed");
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = Vec::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d.to_string());
                }
            }
            if !event.is_empty() {
                events.push((event, data.join("\n")));
            }
        }
    }
    events
}

#[test]
fn every_route_is_in_the_openapi_document() {
    let doc = manifest("docs/openapi.json");
    let (ok, out, err) = check(&["routes", doc.to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut documented: Vec<String> = out.lines().map(str::to_string).collect();
    let mut routes: Vec<String> = ROUTES.iter().map(|(m, p)| format!("{m} {p}")).collect();
    documented.sort();
    routes.sort();
    assert_eq!(
        documented, routes,
        "docs/openapi.json and ROUTES in src/http/route.rs differ"
    );
    // The served document is the file.
    assert_eq!(
        std::fs::read_to_string(&doc).unwrap(),
        OPENAPI_JSON,
        "served document differs from docs/openapi.json"
    );
    // And docs/http-api.md shows every route.
    let md = std::fs::read_to_string(manifest("docs/http-api.md")).unwrap();
    for (m, p) in ROUTES {
        assert!(
            md.contains(&format!("`{m} {p}`")),
            "docs/http-api.md lacks `{m} {p}`"
        );
    }
}

#[test]
fn every_response_validates_against_the_openapi_schema() {
    let _g = serial();
    let mut fix = Fix::new(
        "schema",
        Some(TOKEN),
        &[
            ("max_file_bytes", "1MiB"),
            ("http_max_event_streams", "1"),
            ("http_login_max_failures", "1"),
            ("http_idle_timeout_ms", "1500"),
            ("http_cors_origins", PORTAL),
        ],
    );
    fix.receivers("c1", 2);
    fix.receivers("gone", 1);
    // A participant that reads 1 MB/s and drops the connection after 600 kB: a delivery that
    // fails while sending, with how far it got.
    fix.receivers_misbehaving(
        "lossy",
        1,
        Some(Misbehave::All(vec![
            Misbehave::Rate(1_000_000),
            Misbehave::CloseAfter(600_000),
        ])),
    );
    let addr = fix.addr;
    let mut rec = Records::default();

    // Page and document (no auth).
    let r = call(&mut rec, addr, "GET", "/?conference=c1", "/", "", b"");
    assert_eq!(r.status, 200);
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/openapi.json",
        "/api/openapi.json",
        "",
        b"",
    );
    assert_eq!((r.status, r.text().as_str()), (200, OPENAPI_JSON));

    // Event stream first, so it sees the uploads below.
    let mut sse = connect(addr);
    sse.write_all(
        format!("GET /api/events HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut sse);
    assert_eq!(r.status, 200);
    rec.add("GET", "/api/events", &r);
    // http_max_event_streams 1: the second stream is refused.
    let r = call(&mut rec, addr, "GET", "/api/events", "/api/events", "", b"");
    assert_eq!(r.status, 503, "{}", r.text());

    // Conferences.
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/conferences",
        "/api/conferences",
        "",
        b"",
    );
    assert_eq!(r.status, 200);
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/conferences/c1",
        "/api/conferences/{id}",
        "",
        b"",
    );
    assert_eq!(r.status, 200);
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/conferences/gone",
        "/api/conferences/{id}",
        "",
        b"",
    );
    assert_eq!(r.status, 200);
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/conferences/nope",
        "/api/conferences/{id}",
        "",
        b"",
    );
    assert_eq!(r.status, 404);

    // Uploads: raw, chunked, multipart with the token field; deliveries run to the end.
    let body = data(200_000);
    let r = raw_upload(&mut rec, addr, "c1", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/api/transfers/{}", r.transfer()))
    );
    let t1 = r.transfer();
    let mut ch = Vec::new();
    for c in body[..5000].chunks(1000) {
        ch.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        ch.extend_from_slice(c);
        ch.extend_from_slice(b"\r\n");
    }
    ch.extend_from_slice(b"0\r\n\r\n");
    let r = call(
        &mut rec,
        addr,
        "POST",
        "/conferences/c1/files",
        "/conferences/{conference}/files",
        "Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n",
        &ch,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let form = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n{TOKEN}\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"form.txt\"\r\n\
Content-Type: text/plain\r\n\r\nhello from a form\r\n--XyZ--\r\n"
    );
    let r = roundtrip(
        addr,
        format!(
            "POST /conferences/c1/files HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\
Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    );
    rec.add("POST", "/conferences/{conference}/files", &r);
    assert_eq!(r.status, 201, "{}", r.text());

    let done = wait_transfer_done(addr, t1, 2);
    assert!(done.starts_with(&format!("{{\"id\":{t1},")), "{done}");
    let r = call(
        &mut rec,
        addr,
        "GET",
        &format!("/api/transfers/{t1}"),
        "/api/transfers/{id}",
        "",
        b"",
    );
    assert_eq!(r.status, 200);
    // The event stream carried transfer events: each one is recorded for validation.
    let events = read_events(&mut sse, |ev| {
        ev.iter().any(|(_, d)| {
            d.starts_with(&format!("{{\"id\":{t1},"))
                && d.matches("\"state\":\"done\"").count() == 2
        })
    });
    for (e, d) in &events {
        rec.add_event(e, d);
    }
    drop(sse);

    // The conference's files: all three uploads, every delivery done.
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/conferences/c1/transfers",
        "/api/conferences/{id}/transfers",
        "",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let history = r.text();
    assert!(
        history.starts_with("{\"conference\":\"c1\",\"transfers\":[")
            && history.matches("\"via\":\"http\"").count() == 3,
        "{history}"
    );
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/conferences/nope/transfers",
        "/api/conferences/{id}/transfers",
        "",
        b"",
    );
    assert_eq!(r.status, 404);
    // A delivery lost mid-file: failed, ended while sending, with the bytes it got to.
    let r = raw_upload(&mut rec, addr, "lossy", &data(1_000_000));
    assert_eq!(r.status, 201, "{}", r.text());
    let mut lost = String::new();
    wait("the lossy delivery fails", || {
        let r = roundtrip(
            addr,
            format!(
                "GET /api/conferences/lossy/transfers HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
Connection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        lost = r.text();
        lost.contains("\"state\":\"failed\"")
    });
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/conferences/lossy/transfers",
        "/api/conferences/{id}/transfers",
        "",
        b"",
    );
    lost = r.text();
    assert!(lost.contains("\"ended_in\":\"sending\""), "{lost}");
    let bytes: u64 = lost
        .split("\"state\":\"failed\",\"bytes\":")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bytes in the failed delivery: {lost}"));
    assert!(bytes > 0 && bytes <= 600_000, "{bytes} bytes: {lost}");

    // Chosen recipients: a file for one participant shows `to`; an unknown key is 400.
    let r = call(
        &mut rec,
        addr,
        "POST",
        "/conferences/c1/files?to=c1-r1",
        "/conferences/{conference}/files",
        "Content-Type: text/plain\r\n",
        b"for r1 only",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let chosen = wait_transfer_done(addr, r.transfer(), 1);
    assert!(chosen.contains(r#""to":["c1-r1"]"#), "{chosen}");
    let r = call(
        &mut rec,
        addr,
        "GET",
        &format!("/api/transfers/{}", r.transfer()),
        "/api/transfers/{id}",
        "",
        b"",
    );
    assert_eq!(r.status, 200);
    let r = call(
        &mut rec,
        addr,
        "POST",
        "/conferences/c1/files?to=c1-r1,nobody",
        "/conferences/{conference}/files",
        "",
        b"x",
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // Cancel: a finished transfer keeps its outcome (204), an unknown one is 404.
    let p = format!("/api/transfers/{t1}");
    let r = call(&mut rec, addr, "DELETE", &p, "/api/transfers/{id}", "", b"");
    assert_eq!(r.status, 204);
    let r = call(
        &mut rec,
        addr,
        "DELETE",
        "/api/transfers/999999",
        "/api/transfers/{id}",
        "",
        b"",
    );
    assert_eq!(r.status, 404);
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/transfers/999999",
        "/api/transfers/{id}",
        "",
        b"",
    );
    assert_eq!(r.status, 404);

    // Upload refusals.
    let r = raw_upload(&mut rec, addr, "nope", b"x");
    assert_eq!(r.status, 404, "{}", r.text());
    fix.engine().leave("gone", "gone-r0").unwrap();
    wait("conference gone", || {
        fix.engine().roster().conference("gone").is_none()
    });
    let r = raw_upload(&mut rec, addr, "gone", b"x");
    assert_eq!(r.status, 409, "{}", r.text());
    let r = call(
        &mut rec,
        addr,
        "POST",
        "/conferences/c1/files",
        "/conferences/{conference}/files",
        "Content-Length: 2000000\r\n",
        b"",
    );
    assert_eq!(r.status, 413, "{}", r.text());
    let r = call(
        &mut rec,
        addr,
        "POST",
        "/conferences/c1/files",
        "/conferences/{conference}/files",
        "Transfer-Encoding: chunked\r\n",
        b"zz\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = roundtrip(
        addr,
        b"POST /conferences/c1/files HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 1\r\n\r\nx",
    );
    rec.add("POST", "/conferences/{conference}/files", &r);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"msrpcast\"")
    );
    let r = roundtrip(
        addr,
        format!("POST /conferences/c1/files HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    );
    rec.add("POST", "/conferences/{conference}/files", &r);
    assert_eq!(r.status, 411);
    let r = call(
        &mut rec,
        addr,
        "POST",
        "/conferences/c1/files",
        "/conferences/{conference}/files",
        "Transfer-Encoding: gzip\r\n",
        b"",
    );
    assert_eq!(r.status, 501, "{}", r.text());
    // No progress within http_idle_timeout_ms: 408.
    let mut s = connect(addr);
    s.write_all(
        format!(
            "POST /conferences/c1/files HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
Content-Length: 100\r\n\r\nabc"
        )
        .as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut s);
    rec.add("POST", "/conferences/{conference}/files", &r);
    assert_eq!(r.status, 408, "{}", r.text());

    // Routing and protocol errors.
    // (A 405 has no operation of its own: it is checked against the path's GET.)
    let mut put = Records::default();
    let r = call(
        &mut put,
        addr,
        "PUT",
        "/api/transfers/1",
        "/api/transfers/{id}",
        "",
        b"",
    );
    assert_eq!(
        (r.status, r.header("allow").as_deref()),
        (405, Some("GET, DELETE"))
    );
    rec.add("GET", "/api/transfers/{id}", &r);
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/transfers/%ff",
        "/api/transfers/{id}",
        "",
        b"",
    );
    assert_eq!(r.status, 400);
    let r = roundtrip(
        addr,
        format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)).as_bytes(),
    );
    rec.add("GET", "/metrics", &r);
    assert_eq!(r.status, 431);
    let r = roundtrip(addr, b"GET /metrics HTTP/2.0\r\n\r\n");
    rec.add("GET", "/metrics", &r);
    assert_eq!(r.status, 505, "{}", r.text());
    let r = roundtrip(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    rec.add("GET", "/metrics", &r);
    assert_eq!(r.status, 401);

    // Metrics.
    let r = call(&mut rec, addr, "GET", "/metrics", "/metrics", "", b"");
    assert_eq!(r.status, 200);

    // Login (http_login_max_failures 1): right, wrong, then throttled; logout.
    let login = |rec: &mut Records, token: &str| {
        let form = format!("token={token}");
        let r = roundtrip(
            addr,
            format!(
                "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
                form.len()
            )
            .as_bytes(),
        );
        rec.add("POST", "/login", &r);
        r
    };
    let r = login(&mut rec, TOKEN);
    assert_eq!(r.status, 303);
    let cookie = r.header("set-cookie").unwrap();
    let session = cookie.split(';').next().unwrap().to_string();
    let r = roundtrip(
        addr,
        format!("GET /api/conferences HTTP/1.1\r\nCookie: {session}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    rec.add("GET", "/api/conferences", &r);
    assert_eq!(r.status, 200, "the session cookie works");
    assert_eq!(login(&mut rec, "wrong").status, 401);
    let r = login(&mut rec, "wrong");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    let r = roundtrip(
        addr,
        format!("POST /logout HTTP/1.1\r\nCookie: {session}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    rec.add("POST", "/logout", &r);
    assert_eq!(r.status, 303);

    // Open mode (no token): foreign Host 421, foreign Origin 403, a listed CORS origin passes.
    let open = Fix::new("schema-open", None, &[("http_cors_origins", PORTAL)]);
    let r = roundtrip(
        open.addr,
        b"GET /api/conferences HTTP/1.1\r\nHost: rebound.example:8088\r\n\r\n",
    );
    rec.add("GET", "/api/conferences", &r);
    assert_eq!(r.status, 421);
    let r = roundtrip(
        open.addr,
        b"GET /api/conferences HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n\r\n",
    );
    rec.add("GET", "/api/conferences", &r);
    assert_eq!(r.status, 403);
    let r = roundtrip(
        open.addr,
        format!("GET /api/conferences HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {PORTAL}\r\n\r\n")
            .as_bytes(),
    );
    rec.add("GET", "/api/conferences", &r);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(PORTAL)
    );

    // Every recorded response against the document.
    let file = fix.dir.join("records.json");
    rec.write(&file);
    let doc = manifest("docs/openapi.json");
    let (ok, out, err) = check(&["validate", doc.to_str().unwrap(), file.to_str().unwrap()]);
    println!("{out}{err}");
    assert!(ok, "responses do not match docs/openapi.json:\n{out}{err}");
}

#[test]
fn cors_is_off_by_default_and_names_only_listed_origins() {
    let _g = serial();
    let off = Fix::new("cors-off", Some(TOKEN), &[]);
    let pre = |addr: SocketAddr, origin: &str, method: &str| {
        roundtrip(
            addr,
            format!(
                "OPTIONS /api/transfers/1 HTTP/1.1\r\nOrigin: {origin}\r\n\
Access-Control-Request-Method: {method}\r\nAccess-Control-Request-Headers: authorization\r\n\
Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let get = |addr: SocketAddr, origin: &str| {
        roundtrip(
            addr,
            format!(
                "GET /api/conferences HTTP/1.1\r\nOrigin: {origin}\r\nAuthorization: Bearer {TOKEN}\r\n\
Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    // Off: no CORS header anywhere; OPTIONS is an unknown method here.
    let r = pre(off.addr, PORTAL, "DELETE");
    assert_eq!(r.status, 405);
    assert!(
        !r.head.to_ascii_lowercase().contains("access-control"),
        "{}",
        r.head
    );
    let r = get(off.addr, PORTAL);
    assert_eq!(r.status, 200);
    assert!(
        !r.head.to_ascii_lowercase().contains("access-control"),
        "{}",
        r.head
    );
    drop(off);

    let on = Fix::new(
        "cors-on",
        Some(TOKEN),
        &[(
            "http_cors_origins",
            "https://portal.example, http://localhost:3000",
        )],
    );
    let r = pre(on.addr, PORTAL, "DELETE");
    assert_eq!(r.status, 204, "{}", r.head);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(PORTAL)
    );
    assert_eq!(
        r.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(
        r.header("access-control-allow-methods").as_deref(),
        Some("GET, DELETE")
    );
    assert!(r
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("Authorization")));
    assert_eq!(r.header("vary").as_deref(), Some("Origin"));
    let r = pre(on.addr, "http://localhost:3000", "GET");
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    // Unlisted origin, or a method the path does not have: 403, no CORS headers.
    let r = pre(on.addr, "https://evil.example", "DELETE");
    assert_eq!(r.status, 403);
    assert!(
        !r.head.to_ascii_lowercase().contains("access-control"),
        "{}",
        r.head
    );
    let r = pre(on.addr, PORTAL, "PUT");
    assert_eq!(r.status, 403);
    // Actual requests: the listed origin is named (never *), others are not; errors carry the
    // headers too, so the page can read why.
    let r = get(on.addr, PORTAL);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(PORTAL)
    );
    assert!(r
        .header("access-control-expose-headers")
        .is_some_and(|h| h.contains("Location")));
    let r = get(on.addr, "https://evil.example");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = roundtrip(
        on.addr,
        format!("GET /api/conferences HTTP/1.1\r\nOrigin: {PORTAL}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(PORTAL)
    );
    assert!(!r.head.contains("Access-Control-Allow-Origin: *"));
}

/// `/metrics` parsed by `prometheus_client.parser` (names by Prometheus conventions, histograms
/// well-formed), and its counters after one delivery to two participants.
#[test]
fn metrics_parse_and_count_one_delivery() {
    let _g = serial();
    let mut fix = Fix::new("metrics", Some(TOKEN), &[]);
    fix.receivers("m1", 2);
    let addr = fix.addr;
    let scrape = |fix: &Fix, tag: &str| -> HashMap<String, f64> {
        let mut rec = Records::default();
        let r = call(&mut rec, addr, "GET", "/metrics", "/metrics", "", b"");
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
        let file = fix.dir.join(format!("metrics-{tag}.txt"));
        std::fs::write(&file, r.text()).unwrap();
        let (ok, out, err) = check(&["metrics", file.to_str().unwrap()]);
        assert!(ok, "{err}\n{}", r.text());
        parse_values(&out)
    };
    let before = scrape(&fix, "before");
    let mut rec = Records::default();
    let body = data(300_000);
    let r = raw_upload(&mut rec, addr, "m1", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    // The SHA-1 (at a lower priority) may finish after the deliveries.
    wait_transfer_until(addr, r.transfer(), |j| {
        j.matches("\"state\":\"done\"").count() == 2 && j.contains("\"state\":\"complete\"")
    });
    let after = scrape(&fix, "after");
    let delta = |k: &str| {
        after
            .get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing: {after:?}"))
            - before.get(k).copied().unwrap_or(0.0)
    };
    assert_eq!(delta("msrpcast_uploads_total"), 1.0);
    assert_eq!(
        delta("msrpcast_uploads_ended_total{outcome=\"complete\"}"),
        1.0
    );
    assert_eq!(delta("msrpcast_deliveries_total{outcome=\"done\"}"), 2.0);
    assert_eq!(delta("msrpcast_deliveries_total{outcome=\"failed\"}"), 0.0);
    assert_eq!(delta("msrpcast_delivery_bytes_total"), 600_000.0);
    assert_eq!(delta("msrpcast_http_uploads_total"), 1.0);
    assert_eq!(delta("msrpcast_http_upload_bytes_total"), 300_000.0);
    assert_eq!(delta("msrpcast_delivery_duration_seconds_count"), 2.0);
    assert_eq!(delta("msrpcast_first_chunk_latency_seconds_count"), 2.0);
    assert!(delta("msrpcast_delivery_duration_seconds_sum") > 0.0);
    assert!(delta("msrpcast_first_chunk_latency_seconds_sum") >= 0.0);
    assert_eq!(
        delta("msrpcast_delivery_duration_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    assert_eq!(after["msrpcast_participants"], 2.0);
    assert_eq!(after["msrpcast_conferences"], 1.0);
}

/// The `{"name{labels}": value}` JSON line of `check.py metrics` (flat, numbers only).
fn parse_values(json: &str) -> HashMap<String, f64> {
    let t = json.trim().trim_start_matches('{').trim_end_matches('}');
    let mut out = HashMap::new();
    let mut rest = t;
    while let Some(start) = rest.find('"') {
        // Keys may contain escaped quotes (label values): find the closing `": `.
        let after = &rest[start + 1..];
        let end = after.find("\": ").expect("key end");
        let key = after[..end].replace("\\\"", "\"");
        let vstart = &after[end + 3..];
        let vend = vstart.find(", \"").unwrap_or(vstart.len());
        let v: f64 = vstart[..vend].trim().parse().expect("value");
        out.insert(key, v);
        rest = &vstart[vend..];
    }
    out
}

/// Chosen recipients (issue 13): `?to=` (and a form's `to` field) sends a file to those
/// participants only — each gets it intact (SHA-1), the others get nothing, the transfer shows
/// `to` — an unknown key or an empty list is 400 naming why, and a participant who joins
/// afterwards is offered only the file sent to the whole room. (The schema test checks these
/// responses against the OpenAPI document.)
#[test]
fn chosen_recipients_get_the_file_and_late_joiners_only_room_files() {
    use msrpcast::runtime::receive::hex;
    use sha1::{Digest, Sha1};
    let _g = serial();
    let mut fix = Fix::new("recipients", Some(TOKEN), &[]);
    fix.receivers("room", 4);
    let addr = fix.addr;
    let mut rec = Records::default();
    let upload_to = |rec: &mut Records, query: &str, body: &[u8]| {
        call(
            rec,
            addr,
            "POST",
            &format!("/conferences/room/files{query}"),
            "/conferences/{conference}/files",
            "Content-Type: application/octet-stream\r\n",
            body,
        )
    };
    let quiet = Duration::from_millis(1500);

    // Refusals first: nothing is created by them.
    let r = upload_to(&mut rec, "?to=room-r1,nobody", b"x");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains(r#"no participant \"nobody\""#),
        "{}",
        r.text()
    );
    let r = upload_to(&mut rec, "?to=", b"x");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("empty recipient list"), "{}", r.text());
    assert!(fix.engine().roster().transfers_of("room").is_empty());

    // A file for r1 and r3 (raw upload, the query).
    let subset = data(300_000);
    let subset_sha = hex(&Sha1::digest(&subset));
    let r = upload_to(&mut rec, "?to=room-r1,%20room-r3", &subset);
    assert_eq!(r.status, 201, "{}", r.text());
    let t_subset = r.transfer();
    let done = wait_transfer_done(addr, t_subset, 2);
    assert!(done.contains(r#""to":["room-r1","room-r3"]"#), "{done}");
    for i in [1, 3] {
        let got = fix.receivers[i]
            .next(Duration::from_secs(20))
            .expect("chosen one got it");
        assert_eq!(got.failure, None);
        assert_eq!(got.sha1.as_deref(), Some(subset_sha.as_str()), "r{i}");
    }
    for i in [0, 2] {
        assert!(
            fix.receivers[i].next(quiet).is_none(),
            "r{i} was not chosen"
        );
    }
    // A form's `to` field does the same: a file for r0 only.
    let form = "--XyZ\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nroom-r0\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"only-r0.txt\"\r\n\
Content-Type: text/plain\r\n\r\njust for r0\r\n--XyZ--\r\n";
    let r = call(
        &mut rec,
        addr,
        "POST",
        "/conferences/room/files",
        "/conferences/{conference}/files",
        "Content-Type: multipart/form-data; boundary=XyZ\r\n",
        form.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let t_form = r.transfer();
    wait_transfer_done(addr, t_form, 1);
    let got = fix.receivers[0]
        .next(Duration::from_secs(20))
        .expect("r0 got it");
    assert_eq!(got.sha1, Some(hex(&Sha1::digest(b"just for r0"))));
    for i in [1, 2, 3] {
        assert!(
            fix.receivers[i].next(quiet).is_none(),
            "r{i} was not chosen"
        );
    }

    // A file for the whole room: all four.
    let room = data(200_000).into_iter().rev().collect::<Vec<u8>>();
    let room_sha = hex(&Sha1::digest(&room));
    let r = upload_to(&mut rec, "", &room);
    assert_eq!(r.status, 201, "{}", r.text());
    let t_room = r.transfer();
    let done = wait_transfer_done(addr, t_room, 4);
    assert!(done.contains(r#""to":null"#), "{done}");
    for (i, rx) in fix.receivers.iter().enumerate() {
        let got = rx.next(Duration::from_secs(20)).expect("room file");
        assert_eq!(got.sha1.as_deref(), Some(room_sha.as_str()), "r{i}");
    }

    // A late joiner is offered the room file, never the files for chosen participants.
    Fix::receivers_keyed(&mut fix, "room", 1, |_| "room-late".into(), None);
    fix.wait_participants("room", 5);
    wait_transfer_done(addr, t_room, 5);
    let got = fix.receivers[4]
        .next(Duration::from_secs(20))
        .expect("late joiner");
    assert_eq!(got.sha1.as_deref(), Some(room_sha.as_str()));
    assert!(
        fix.receivers[4].next(quiet).is_none(),
        "late joiner got more"
    );
    let roster = fix.engine().roster();
    let who = |t: u64| {
        let mut v: Vec<String> = roster
            .transfers_of("room")
            .into_iter()
            .find(|x| x.id.0 == t)
            .expect("transfer")
            .deliveries
            .into_iter()
            .map(|d| d.participant)
            .collect();
        v.sort();
        v
    };
    assert_eq!(who(t_subset), ["room-r1", "room-r3"]);
    assert_eq!(who(t_form), ["room-r0"]);
    assert_eq!(who(t_room).len(), 5);

    for p in [
        format!("/api/transfers/{t_subset}"),
        format!("/api/transfers/{t_room}"),
    ] {
        let r = call(&mut rec, addr, "GET", &p, "/api/transfers/{id}", "", b"");
        assert_eq!(r.status, 200);
    }
    let r = call(
        &mut rec,
        addr,
        "GET",
        "/api/conferences/room/transfers",
        "/api/conferences/{id}/transfers",
        "",
        b"",
    );
    assert!(r.text().contains(r#""to":["room-r0"]"#), "{}", r.text());
    assert_eq!(r.status, 200);
}
