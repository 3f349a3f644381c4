//! Helpers shared by the benchmarks.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `msrpcast receive --discard --no-hash` child process: receivers that parse every chunk but
/// neither store nor hash, so the sender is what is measured. Killed when dropped.
pub struct Receiver {
    child: Child,
    /// Its MSRP URI (the first line it prints).
    pub uri: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a receiver for session `session` with `threads` I/O threads.
pub fn start_receiver(session: &str, threads: usize) -> Receiver {
    let mut child = Command::new(env!("CARGO_BIN_EXE_msrpcast"))
        .args([
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--session-id",
            session,
            "--discard",
            "--no-hash",
            "--threads",
            &threads.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("msrpcast receive");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut uri = String::new();
    out.read_line(&mut uri).expect("receiver URI");
    // Keep draining its per-message lines so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut line = String::new();
        while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            line.clear();
        }
    });
    Receiver {
        child,
        uri: uri.trim().to_string(),
    }
}
