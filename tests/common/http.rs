//! The HTTP side of the integration tests: an engine with its HTTP server in a fresh folder, and
//! a minimal HTTP/1.1 client over a plain `TcpStream` (one request, one response, no library in
//! between, so that the tests see exactly the bytes the server sends).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msrpcast::config::Config;
use msrpcast::http::HttpServer;
use msrpcast::runtime::receive::{ReceiveServer, Sink};

use super::misbehave::Misbehave;
use msrpcast::runtime::Engine;

/// The `http_token` of the tests that set one.
pub const TOKEN: &str = "s3cret-token";

/// An engine and its HTTP server, both on 127.0.0.1 port 0, the spool in `<dir>/spool`. Dropped:
/// the server stops, then the engine, then the folder is removed.
pub struct HttpFix {
    server: Option<HttpServer>,
    engine: Option<Arc<Engine>>,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// Receivers joined by [`HttpFix::receivers_keyed`]; they outlive the engine.
    pub receivers: Vec<ReceiveServer>,
}

impl Drop for HttpFix {
    fn drop(&mut self) {
        self.server.take();
        self.engine.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl HttpFix {
    /// Starts in the fresh folder `$TMPDIR/msrpcast-<name>-<pid>`: spool in it, listeners on
    /// 127.0.0.1:0, log level error, then whatever `configure` sets (it is given the folder).
    pub fn start(name: &str, configure: impl FnOnce(&Path, &mut Config)) -> HttpFix {
        let dir = std::env::temp_dir().join(format!("msrpcast-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = Config::default();
        cfg.set("spool_dir", dir.join("spool").to_str().unwrap())
            .unwrap();
        cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
        cfg.set("http_listen", "127.0.0.1:0").unwrap();
        cfg.set("log_level", "error").unwrap();
        configure(&dir, &mut cfg);
        let engine = Arc::new(Engine::start(cfg.clone()).unwrap());
        let server = HttpServer::start(engine.clone(), &cfg).unwrap();
        HttpFix {
            addr: server.local_addr(),
            server: Some(server),
            engine: Some(engine),
            dir,
            receivers: Vec::new(),
        }
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    /// The engine, shared (for a thread of the test).
    pub fn engine_arc(&self) -> Arc<Engine> {
        self.engine.clone().unwrap()
    }

    pub fn server(&self) -> &HttpServer {
        self.server.as_ref().unwrap()
    }

    /// The spool folder.
    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// `n` discarding, hashing receivers on 127.0.0.1 joined to `conf` directly, participant
    /// `i` under the key `key(i)`; returns once the roster has `n` participants there.
    pub fn receivers_keyed(
        &mut self,
        conf: &str,
        n: usize,
        key: impl Fn(usize) -> String,
        misbehave: Option<Misbehave>,
    ) {
        for i in 0..n {
            let r = ReceiveServer::start(
                "127.0.0.1:0".parse().unwrap(),
                &format!("rx{i}"),
                Sink::Discard,
                true,
                misbehave.as_ref().map(Misbehave::hooks),
                1,
            )
            .unwrap();
            self.engine()
                .join_direct(conf, &key(i), &r.to_path_text())
                .unwrap();
            self.receivers.push(r);
        }
        self.wait_participants(conf, n);
    }

    /// Waits until `conf` has at least `n` participants.
    pub fn wait_participants(&self, conf: &str, n: usize) {
        wait("joins", Duration::from_secs(5), || {
            self.engine()
                .roster()
                .conference(conf)
                .is_some_and(|c| c.participants.len() >= n)
        });
    }
}

/// Sets each `(key, value)`, panicking on any error.
pub fn set_all(cfg: &mut Config, sets: &[(&str, &str)]) {
    for (k, v) in sets {
        cfg.set(k, v).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Waits until `f` holds, polling every 10 ms; `limit` is a hang guard only.
pub fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One HTTP response as it arrived.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// The status line and the header lines, `\r\n` each, up to the empty line.
    pub head: String,
    /// The Content-Length body (empty without one).
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header of this name (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The `"transfer"` id of a 201 body: a JSON number, as in the rest of the API.
    pub fn transfer(&self) -> u64 {
        let t = self.text();
        let i = t.find("\"transfer\":").expect("transfer id") + 11;
        t[i..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("the transfer id is not a number: {t}"))
    }
}

/// A connection with a 60 s read timeout (a hang guard).
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Reads one response head, up to and with its empty line; `None` when the connection ends (or
/// the read times out) first.
pub fn try_read_head(s: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8(head).unwrap())
}

/// Reads one response (skipping `100 Continue`): the body by Content-Length, none without (SSE).
/// `None` when the connection ends first.
pub fn try_read_response(s: &mut impl Read) -> Option<Resp> {
    loop {
        let head = try_read_head(s)?;
        let status: u16 = head[9..12].parse().unwrap();
        if status == 100 {
            continue;
        }
        let mut r = Resp {
            status,
            head,
            body: Vec::new(),
        };
        if let Some(n) = r.header("content-length") {
            let mut body = vec![0u8; n.parse().unwrap()];
            s.read_exact(&mut body).ok()?;
            r.body = body;
        }
        return Some(r);
    }
}

/// [`try_read_response`] that must get one.
pub fn read_response(s: &mut impl Read) -> Resp {
    try_read_response(s).expect("the connection ended before a whole response")
}

/// Sends `req` on a new connection and reads the response. A write error is ignored: the server
/// may answer and close before it read everything (early refusals).
pub fn roundtrip(addr: SocketAddr, req: &[u8]) -> Resp {
    let mut s = connect(addr);
    let _ = s.write_all(req);
    read_response(&mut s)
}
