//! Panics in engine threads (issue 14, "Crashes"): a bug that panics while one connection, one
//! command or one datagram is handled must not take the thread down with everything else on it
//! (a dead core thread stops every conference; a dead I/O thread silently strands its
//! connections; a dead HTTP connection thread used to keep its place in `http_max_connections`
//! for good). Each engine thread therefore runs its unit of work through [`guard`], which
//! catches the panic, logs it at `error` with what was being done, and lets the thread go on:
//!
//! - the core thread: each command, delivery outcome, tick and action flush (`engine::driver`);
//! - the I/O threads: every handler is wrapped in [`Guarded`]; a handler that panics is closed
//!   (its socket deregistered and dropped) and, for a delivery, the core is told it failed, so
//!   the delivery ends with a reason instead of hanging; the MSRP listener is kept and driven
//!   again (closing it would refuse every later connection);
//! - the control thread: each datagram (`control::server`); local-file copies (`control::uploads`);
//! - the HTTP server: each connection's thread (its place is always given back), each accepted
//!   connection's admission, each watcher turn (`http::server`).
//!
//! A panic at the C ABI is caught separately (`ffi::boundary`, `MSRPCAST_ERR_PANIC`).
//!
//! The state a panicking unit left half-changed stays as it is: the guard isolates a bug, it
//! does not undo it. The error record says so, so the operator knows to report it.
//!
//! ## Injection (tests only)
//! [`inject`] panics when a test hands one of the engine's entry points a magic key
//! (`msrpcast-test-panic-<site>` as a conference name, or as the first bytes on a connection).
//! It exists only under `cfg(test)`: in every other build it is an empty inline function, so no
//! setting or input can make a release build panic on purpose. The tests live here and next to
//! the guarded code.

use std::any::Any;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use mio::{Registry, Token};

use crate::runtime::delivery::{DeliveryOutcome, OutcomeSink};
use crate::runtime::io::{Command, Ctx, Flow, Handler};
use crate::runtime::log::Logger;

/// The text of a panic payload.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Runs `f`; a panic is caught and logged at `error` under `target` with `what` was being
/// done, and gives `None`.
pub fn guard<R>(
    logger: &Logger,
    target: &'static str,
    what: &str,
    f: impl FnOnce() -> R,
) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(p) => {
            logger.error(
                target,
                format_args!(
                    "internal error (a bug, please report it): panic while {what}: {}; \
                     the thread goes on",
                    message(p.as_ref())
                ),
            );
            None
        }
    }
}

/// Test builds: panics when `key` is `msrpcast-test-panic-<site>`.
#[cfg(test)]
pub fn inject(site: &str, key: &[u8]) {
    let magic = format!("msrpcast-test-panic-{site}");
    if key == magic.as_bytes() {
        panic!("injected panic ({magic})");
    }
}

/// Other builds: nothing.
#[cfg(not(test))]
#[inline(always)]
pub fn inject(_site: &str, _key: &[u8]) {}

/// An I/O handler whose panics are caught: the handler is then closed and, for a delivery, the
/// core is told the delivery failed.
pub struct Guarded {
    inner: Box<dyn Handler>,
    logger: Logger,
    what: &'static str,
    /// A delivery's id and where its outcome goes.
    delivery: Option<(u64, OutcomeSink)>,
    /// The inner handler panicked: it is not called again.
    broken: bool,
    /// A panic leaves the handler in place (the listener: closing it would end every future
    /// connection, and it holds no state a panic could leave half-changed but its counters).
    keep: bool,
}

impl Guarded {
    /// Wraps a handler that is not a delivery (the listener, a connection before its first
    /// frame).
    pub fn new(inner: Box<dyn Handler>, logger: Logger, what: &'static str) -> Box<Guarded> {
        Box::new(Guarded {
            inner,
            logger,
            what,
            delivery: None,
            broken: false,
            keep: false,
        })
    }

    /// Wraps a listener: after a panic it stays registered and is driven again.
    pub fn keep(inner: Box<dyn Handler>, logger: Logger, what: &'static str) -> Box<Guarded> {
        let mut g = Guarded::new(inner, logger, what);
        g.keep = true;
        g
    }

    /// Wraps a delivery's connection; a panic fails delivery `id` through `sink`.
    pub fn delivery(
        inner: Box<dyn Handler>,
        logger: Logger,
        id: u64,
        sink: OutcomeSink,
    ) -> Box<Guarded> {
        Box::new(Guarded {
            inner,
            logger,
            what: "a delivery connection",
            delivery: Some((id, sink)),
            broken: false,
            keep: false,
        })
    }

    fn run(&mut self, event: &str, f: impl FnOnce(&mut dyn Handler) -> Flow) -> Flow {
        if self.broken {
            return Flow::Close;
        }
        let inner = &mut self.inner;
        let what = match &self.delivery {
            Some((id, _)) => format!("driving {} ({event}) of delivery {id}", self.what),
            None => format!("driving {} ({event})", self.what),
        };
        match guard(&self.logger, "io", &what, || f(inner.as_mut())) {
            Some(Flow::Replace(next)) => {
                Flow::Replace(Guarded::new(next, self.logger.clone(), self.what))
            }
            Some(flow) => flow,
            None if self.keep => Flow::Continue,
            None => {
                self.broken = true;
                if let Some((id, sink)) = &self.delivery {
                    // Ignored by the core when the delivery already reported its outcome.
                    let _ = sink.send((
                        *id,
                        DeliveryOutcome::Failed {
                            code: None,
                            reason: "internal error in the delivery's connection (logged)".into(),
                        },
                    ));
                }
                Flow::Close
            }
        }
    }
}

impl Handler for Guarded {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let inner = &mut self.inner;
        match guard(&self.logger, "io", "registering a connection", || {
            inner.register(registry, token)
        }) {
            Some(r) => r,
            None => {
                self.broken = true;
                Err(io::Error::other("panic while registering"))
            }
        }
    }

    fn deregister(&mut self, registry: &Registry) {
        let inner = &mut self.inner;
        // Also after a panic: the socket must leave the poll before it is dropped.
        let _ = guard(&self.logger, "io", "deregistering a connection", || {
            inner.deregister(registry)
        });
    }

    fn on_ready(&mut self, now: Instant, readable: bool, writable: bool, ctx: &mut Ctx) -> Flow {
        self.run("ready", |h| h.on_ready(now, readable, writable, ctx))
    }

    fn on_wake(&mut self, now: Instant, ctx: &mut Ctx) -> Flow {
        self.run("wake", |h| h.on_wake(now, ctx))
    }

    fn on_tick(&mut self, now: Instant, ctx: &mut Ctx) -> Flow {
        self.run("tick", |h| h.on_tick(now, ctx))
    }

    fn on_command(&mut self, cmd: Command, now: Instant, ctx: &mut Ctx) -> Flow {
        self.run("command", |h| h.on_command(cmd, now, ctx))
    }

    fn key(&self) -> Option<u64> {
        self.inner.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::http::HttpServer;
    use crate::runtime::control::{ControlServer, Request};
    use crate::runtime::engine::Engine;
    use crate::runtime::io::IoPool;
    use crate::runtime::log::{Level, Record};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    struct Fix {
        engine: Option<Arc<Engine>>,
        logger: Logger,
        dir: PathBuf,
    }

    impl Drop for Fix {
        fn drop(&mut self) {
            self.engine.take();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(name: &str, sets: &[(&str, &str)]) -> Fix {
        let dir =
            std::env::temp_dir().join(format!("msrpcast-fault-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = Config::default();
        cfg.set("spool_dir", dir.join("spool").to_str().unwrap())
            .unwrap();
        cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
        cfg.set("http_listen", "127.0.0.1:0").unwrap();
        cfg.set("io_threads", "1").unwrap();
        cfg.set("answer_timeout_ms", "600000").unwrap();
        for (k, v) in sets {
            cfg.set(k, v).unwrap();
        }
        let logger = Logger::queue(Level::Error, 1000, None);
        let engine = Arc::new(Engine::start_with_logger(cfg, logger.clone()).unwrap());
        Fix {
            engine: Some(engine),
            logger,
            dir,
        }
    }

    impl Fix {
        fn engine(&self) -> &Arc<Engine> {
            self.engine.as_ref().unwrap()
        }

        fn errors(&self) -> Vec<Record> {
            std::iter::from_fn(|| self.logger.pop())
                .filter(|r| r.level == Level::Error)
                .collect()
        }
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(5), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn assert_logged(errors: &[Record], site: &str) {
        let magic = format!("msrpcast-test-panic-{site}");
        assert!(
            errors
                .iter()
                .any(|r| r.message.contains("panic while") && r.message.contains(&magic)),
            "{errors:?}"
        );
    }

    /// The core thread: a join that panics is logged; later joins and uploads still work.
    #[test]
    fn core_thread_survives_a_panic() {
        let f = fixture("core", &[]);
        let e = f.engine();
        e.join("msrpcast-test-panic-core", "p", "sip:p@127.0.0.1:9", None)
            .unwrap();
        e.join("room", "alice", "sip:alice@127.0.0.1:9", None)
            .unwrap();
        wait_for("the join after the panic", || {
            e.roster().conference("room").is_some()
        });
        let up = e.upload("room", "a.txt", "text/plain", Some(1)).unwrap();
        let t = up.transfer;
        let mut up = up;
        up.append(b"x").unwrap();
        up.finish().unwrap();
        wait_for("the offer of the file", || {
            e.roster()
                .transfer(t)
                .is_some_and(|t| t.deliveries.iter().any(|d| d.state.name() == "offering"))
        });
        assert_logged(&f.errors(), "core");
    }

    /// An I/O thread: a connection whose handler panics is closed and logged; the thread keeps
    /// serving the others (with one I/O thread, everything else is on it).
    #[test]
    fn io_thread_survives_a_panic() {
        let f = fixture("io", &[("msrp_pending_max_bytes", "64")]);
        let addr = f.engine().msrp_addr();
        let mut bad = TcpStream::connect(addr).unwrap();
        bad.write_all(b"msrpcast-test-panic-io").unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(bad.read(&mut b), Ok(0) | Err(_)),
            "the panicking connection is closed"
        );
        // The same thread still reads and closes a connection that sends too much.
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&[b'x'; 200]);
            let t0 = Instant::now();
            let r = s.read(&mut b);
            assert!(
                matches!(r, Ok(0))
                    || r.as_ref()
                        .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
                "closed by the engine, not timed out: {r:?} after {:?}",
                t0.elapsed()
            );
        }
        assert_logged(&f.errors(), "io");
    }

    struct Panicky {
        ticks: Arc<AtomicUsize>,
        panic_at: usize,
    }

    impl Handler for Panicky {
        fn register(&mut self, _: &Registry, _: Token) -> io::Result<()> {
            Ok(())
        }
        fn deregister(&mut self, _: &Registry) {}
        fn on_ready(&mut self, _: Instant, _: bool, _: bool, _: &mut Ctx) -> Flow {
            Flow::Continue
        }
        fn on_wake(&mut self, _: Instant, _: &mut Ctx) -> Flow {
            Flow::Continue
        }
        fn on_tick(&mut self, _: Instant, _: &mut Ctx) -> Flow {
            let n = self.ticks.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.panic_at {
                panic!("tick {n}");
            }
            Flow::Continue
        }
        fn on_command(&mut self, _: Command, _: Instant, _: &mut Ctx) -> Flow {
            Flow::Close
        }
    }

    /// A delivery handler that panics is closed, its delivery reported failed, and the other
    /// handlers on the same I/O thread keep being driven.
    #[test]
    fn guarded_delivery_fails_instead_of_killing_its_thread() {
        let logger = Logger::queue(Level::Error, 100, None);
        let pool = IoPool::start(1, logger.clone()).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let bad_ticks = Arc::new(AtomicUsize::new(0));
        let good_ticks = Arc::new(AtomicUsize::new(0));
        pool.add(Guarded::delivery(
            Box::new(Panicky {
                ticks: bad_ticks.clone(),
                panic_at: 2,
            }),
            logger.clone(),
            7,
            tx,
        ));
        pool.add(Guarded::new(
            Box::new(Panicky {
                ticks: good_ticks.clone(),
                panic_at: usize::MAX,
            }),
            logger.clone(),
            "a test handler",
        ));
        // A kept handler (the listener) is driven again after its panic.
        let kept_ticks = Arc::new(AtomicUsize::new(0));
        pool.add(Guarded::keep(
            Box::new(Panicky {
                ticks: kept_ticks.clone(),
                panic_at: 1,
            }),
            logger.clone(),
            "a kept handler",
        ));
        let (id, outcome) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(id, 7);
        assert!(
            matches!(&outcome, DeliveryOutcome::Failed { code: None, reason } if reason.contains("internal error")),
            "{outcome:?}"
        );
        let seen = good_ticks.load(Ordering::SeqCst);
        wait_for("ticks after the panic", || {
            good_ticks.load(Ordering::SeqCst) >= seen + 3
        });
        assert_eq!(bad_ticks.load(Ordering::SeqCst), 2, "never driven again");
        wait_for("the kept handler's ticks", || {
            kept_ticks.load(Ordering::SeqCst) >= 3
        });
        let recs: Vec<Record> = std::iter::from_fn(|| logger.pop()).collect();
        assert!(
            recs.iter()
                .any(|r| r.message.contains("delivery 7") && r.message.contains("tick 2")),
            "{recs:?}"
        );
        assert!(
            recs.iter().any(|r| r.message.contains("a kept handler")),
            "{recs:?}"
        );
    }

    /// The control thread: a datagram whose handling panics is logged and counted; the next
    /// one is applied.
    #[test]
    fn control_thread_survives_a_panic() {
        let f = fixture("control", &[]);
        let path = f.dir.join("control.sock");
        let server = ControlServer::start(&path, f.engine().clone()).unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let mut buf = Vec::new();
        for conference in ["msrpcast-test-panic-control", "room"] {
            Request::Join {
                conference,
                participant: "alice",
                target: "sip:alice@127.0.0.1:9",
                display: None,
            }
            .encode(&mut buf)
            .unwrap();
            client.send_to(&buf, &path).unwrap();
        }
        wait_for("the join after the panic", || {
            f.engine().roster().conference("room").is_some()
        });
        assert_eq!(server.counters().snapshot().joins, 1);
        assert_eq!(server.counters().snapshot().refused, 1);
        assert_logged(&f.errors(), "control");
    }

    /// An HTTP connection thread: a panic closes that connection and gives its place back, so
    /// more panics than `http_max_connections` still leave the server answering.
    #[test]
    fn http_connection_panic_gives_its_place_back() {
        let f = fixture(
            "http",
            &[("http_max_connections", "2"), ("http_max_uploads", "1")],
        );
        let cfg = f.engine().config().clone();
        let server = HttpServer::start(f.engine().clone(), &cfg).unwrap();
        let addr = server.local_addr();
        for _ in 0..5 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"msrpcast-test-panic-http").unwrap();
            let mut b = [0u8; 64];
            assert!(matches!(s.read(&mut b), Ok(0) | Err(_)), "closed");
            wait_for("the place to come back", || server.connections() == 0);
        }
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 ") && !resp.starts_with("HTTP/1.1 503"),
            "{resp:?}"
        );
        assert_logged(&f.errors(), "http");
        drop(server);
    }
}
