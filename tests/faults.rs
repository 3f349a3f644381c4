//! Faults against the running engine and HTTP server (issue 14): uploads that break off mid-body
//! must give back their spool file and quota at once (finding 7). Real sockets at 127.0.0.1.
//!
//! The panic-injection tests of the same issue ("a panic in any engine thread is caught") are
//! unit tests next to the code (`runtime::fault`), because their injection points exist only in
//! test builds of the library.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::Duration;

mod common;

use common::http::{set_all, try_read_head, wait, HttpFix as Fix, TOKEN};

impl Fix {
    fn new(name: &str, sets: &[(&str, &str)]) -> Fix {
        Fix::start(&format!("faults-{name}"), |_, cfg| {
            set_all(
                cfg,
                &[("http_token", TOKEN), ("answer_timeout_ms", "600000")],
            );
            set_all(cfg, sets);
        })
    }
}

/// Descriptors of this process that point at files in `dir` (deleted ones included: the
/// link then reads `<path> (deleted)`).
fn open_files_in(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with(&prefix) && p.contains(".spool"))
        .collect()
}

fn head(conf: &str, len: usize) -> String {
    format!(
        "POST /conferences/{conf}/files HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=part.bin\r\n\
Content-Length: {len}\r\n\r\n"
    )
}

/// Status of a response read from `s`, `None` when it closes first.
fn status(s: &mut TcpStream) -> Option<u16> {
    try_read_head(s)?[9..12].parse().ok()
}

/// Finding 7: raw uploads that disconnect mid-body with a small quota. Each left its spool file
/// open (deleted, but its bytes counted) for as long as the transfer was remembered, so later
/// uploads got 507. Now an aborted upload gives back its file and its quota at once.
#[test]
fn uploads_cut_mid_body_release_their_file_and_quota() {
    const QUOTA: usize = 1 << 20;
    let fix = Fix::new(
        "abort",
        &[("spool_max_bytes", "1MiB"), ("max_file_bytes", "1MiB")],
    );
    // A SIP participant who never answers: its deliveries stay offered, off the I/O threads.
    fix.engine()
        .join("room", "alice", "sip:alice@127.0.0.1:9", None)
        .unwrap();
    wait("the join", Duration::from_secs(5), || {
        fix.engine().roster().conference("room").is_some()
    });
    let body = vec![b'P'; QUOTA];
    for round in 0..4 {
        // Announces 1000 KiB, sends 600 KiB, then goes away.
        let mut s = TcpStream::connect(fix.addr).unwrap();
        s.write_all(head("room", 1000 * 1024).as_bytes()).unwrap();
        s.write_all(&body[..600 * 1024]).unwrap();
        wait(
            "the partial bytes in the spool",
            Duration::from_secs(10),
            || {
                fix.engine()
                    .roster()
                    .transfers_of("room")
                    .iter()
                    .any(|t| t.size >= 600 * 1024 && t.state.name() == "receiving")
            },
        );
        drop(s);
        wait(
            &format!("round {round}: the aborted upload's file to be closed"),
            Duration::from_secs(10),
            || {
                fix.engine()
                    .roster()
                    .transfers_of("room")
                    .iter()
                    .all(|t| t.state.name() != "receiving")
                    && open_files_in(&fix.spool()).is_empty()
            },
        );
    }
    // The whole quota is free again: a file of exactly the quota is accepted.
    let mut s = TcpStream::connect(fix.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head("room", QUOTA).as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    assert_eq!(status(&mut s), Some(201), "upload after the aborted ones");
}
