//! Fuzzes the MSRP receiver (`runtime::receive`, what `msrpcast receive` and the tests run) over
//! a real loopback connection: the input is the byte stream a hostile sender writes. Oracle: no
//! panic on any thread (libFuzzer's panic hook aborts the process), and after the sender
//! half-closes, the receiver closes the connection within 5 s (it neither hangs nor keeps a
//! connection whose peer is gone).
//!
//! Input layout: byte 0 bit 0 selects the sink (0: parse and count only; 1: save files under
//! the offered names in a scratch folder, emptied as it fills); the rest is the stream, where
//! `$TO` is replaced by the receiver's URI and `$FROM` by a sender URI, so that frames can reach
//! the session.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use msrpcast::runtime::receive::{ReceiveServer, Sink};

struct Receivers {
    discard: ReceiveServer,
    named: ReceiveServer,
    dir: PathBuf,
}

fn receivers() -> &'static Receivers {
    static R: OnceLock<Receivers> = OnceLock::new();
    R.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("msrpcast-fuzz-recv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        Receivers {
            discard: ReceiveServer::start(addr, "fuzzsess1", Sink::Discard, true, None, 1).unwrap(),
            named: ReceiveServer::start(addr, "fuzzsess2", Sink::Named(dir.clone()), true, None, 1)
                .unwrap(),
            dir,
        }
    })
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let r = receivers();
    let server = if sel & 1 == 0 { &r.discard } else { &r.named };
    let to = server.to_path_text();
    let stream = replace(stream, b"$TO", to.as_bytes());
    let stream = replace(&stream, b"$FROM", b"msrp://127.0.0.1:9/fuzzsender;tcp");

    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The receiver may close first (a fatal frame): write errors are expected.
    let _ = s.write_all(&stream);
    let _ = s.shutdown(Shutdown::Write);
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the receiver kept the connection 5 s after the sender half-closed"
        );
    }
    while server.next(Duration::ZERO).is_some() {}

    static RUNS: AtomicUsize = AtomicUsize::new(0);
    if RUNS.fetch_add(1, Ordering::Relaxed) % 256 == 255 {
        if let Ok(rd) = std::fs::read_dir(&r.dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
});
