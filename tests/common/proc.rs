//! Helpers for the tests that run the `msrpcast` tool as a child process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Bytes a process wrote, as text (lossy: the tests look for words in it).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An empty scratch folder `msrpcast-<name>-<pid>` under the temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("msrpcast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `msrpcast receive --listen 127.0.0.1:0 --session-id SESSION --dir DIR EXTRA...`; returns it,
/// its first line (its URI) and a reader of the rest of its standard output.
pub fn receiver(
    session: &str,
    dir: &Path,
    extra: &[&str],
) -> (Proc, String, BufReader<ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_msrpcast"))
        .args([
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--session-id",
            session,
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut uri = String::new();
    out.read_line(&mut uri).unwrap();
    (Proc(child), uri.trim().to_string(), out)
}
