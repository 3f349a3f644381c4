//! A user-space TCP proxy that emulates a long, narrow path for tests and benchmarks (the
//! kernel's netem is not available on the machines this runs on): every connection accepted on
//! its port is forwarded to one target, each direction through a bottleneck of `rate` bytes per
//! second followed by a propagation delay of `one_way` (RTT = 2 × `one_way` plus what the hosts
//! add).
//!
//! Model, per direction: bytes read from the source leave the bottleneck at
//! `max(arrival, previous departure) + len / rate` and are written to the destination `one_way`
//! later. The bytes held (queued at the bottleneck plus on the "wire") are bounded by
//! `rate × one_way + queue_bytes`; beyond it the proxy stops reading, so TCP's own back-pressure
//! reaches the sender as on a real path with a router buffer of `queue_bytes`.
//!
//! Threads: one accept thread, two per direction of each connection (reader and writer), all
//! ending with their connection. Blocking sockets; the reader reads at most 16 KiB at a time,
//! which at 100 Mbit/s is a pacing grain of 1.3 ms.
//!
//! Shared source of `benches/` and `tests/` (included by path), so that no test-only code sits in
//! the library.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Largest piece read (and paced) at once.
const PIECE: usize = 16 * 1024;

/// The emulated path of one direction.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    /// Propagation delay of this direction.
    pub one_way: Duration,
    /// Bottleneck rate, bytes per second.
    pub rate: u64,
    /// Router buffer at the bottleneck, bytes.
    pub queue_bytes: usize,
}

impl Path {
    /// A path of `rtt` (split evenly between the directions) and `mbit_s` megabits per second,
    /// with a router buffer of one bandwidth-delay product.
    pub fn symmetric(rtt: Duration, mbit_s: u64) -> Path {
        let rate = mbit_s * 1_000_000 / 8;
        let bdp = (rate as f64 * rtt.as_secs_f64()) as usize;
        Path {
            one_way: rtt / 2,
            rate,
            queue_bytes: bdp.max(64 * 1024),
        }
    }

    /// Bytes a direction holds at most.
    fn limit(&self) -> usize {
        (self.rate as f64 * self.one_way.as_secs_f64()) as usize + self.queue_bytes
    }
}

/// A running proxy; stops accepting when dropped (open connections run until they close).
pub struct DelayProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target` over `path` in each direction.
    pub fn start(target: SocketAddr, path: Path) -> io::Result<DelayProxy> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::Builder::new()
            .name("delay-proxy".into())
            .spawn(move || {
                for c in l.incoming() {
                    if st.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(c) = c else { continue };
                    if let Err(e) = connect(c, target, path) {
                        eprintln!("delay proxy: cannot reach {target}: {e}");
                    }
                }
            })?;
        Ok(DelayProxy { addr, stop })
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept thread so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn connect(client: TcpStream, target: SocketAddr, path: Path) -> io::Result<()> {
    let server = TcpStream::connect(target)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    pipe(client.try_clone()?, server.try_clone()?, path)?;
    pipe(server, client, path)?;
    Ok(())
}

struct Line {
    /// (time to write, bytes); an empty piece is the end of the stream.
    q: VecDeque<(Instant, Vec<u8>)>,
    held: usize,
    /// The writer failed: the reader stops too.
    broken: bool,
}

/// One direction: `from` → delay line → `to`.
fn pipe(mut from: TcpStream, mut to: TcpStream, path: Path) -> io::Result<()> {
    let line = Arc::new((
        Mutex::new(Line {
            q: VecDeque::new(),
            held: 0,
            broken: false,
        }),
        Condvar::new(),
    ));
    let l2 = line.clone();
    let limit = path.limit().max(PIECE);
    std::thread::Builder::new()
        .name("delay-proxy-rd".into())
        .spawn(move || {
            let (m, cv) = &*l2;
            let mut depart = Instant::now();
            let mut buf = vec![0u8; PIECE];
            loop {
                {
                    let mut g = m.lock().expect("proxy lock");
                    while g.held + PIECE > limit && !g.broken {
                        g = cv.wait(g).expect("proxy lock");
                    }
                    if g.broken {
                        return;
                    }
                }
                let n = from.read(&mut buf).unwrap_or(0);
                let now = Instant::now();
                let mut g = m.lock().expect("proxy lock");
                if n == 0 {
                    g.q.push_back((now, Vec::new()));
                    cv.notify_all();
                    return;
                }
                depart = depart.max(now) + Duration::from_secs_f64(n as f64 / path.rate as f64);
                g.held += n;
                g.q.push_back((depart + path.one_way, buf[..n].to_vec()));
                cv.notify_all();
            }
        })?;
    std::thread::Builder::new()
        .name("delay-proxy-wr".into())
        .spawn(move || {
            let (m, cv) = &*line;
            loop {
                let (at, piece) = {
                    let mut g = m.lock().expect("proxy lock");
                    while g.q.is_empty() {
                        g = cv.wait(g).expect("proxy lock");
                    }
                    g.q.pop_front().expect("non-empty")
                };
                let wait = at.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                if piece.is_empty() {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
                let ok = to.write_all(&piece).is_ok();
                let mut g = m.lock().expect("proxy lock");
                g.held -= piece.len();
                if !ok {
                    g.broken = true;
                    cv.notify_all();
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
                cv.notify_all();
            }
        })?;
    Ok(())
}
