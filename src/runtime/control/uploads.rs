//! Local files spooled on request (`msrpcast_engine_upload_file`, UPLOAD_FILE).
//!
//! Only regular files inside the `upload_dir` setting are sent: whoever can write to the
//! control socket (or reach the host's RPC) must not be able to make the engine read and send
//! any file it can open (`/etc/shadow`, a key). The check is made on what was actually opened:
//! the path is first checked lexically (no file outside the folder is ever opened), then opened
//! without blocking (a FIFO cannot stall the caller), and the opened descriptor's real path
//! (`/proc/self/fd`, symlinks and `..` resolved by the kernel for that very open) must lie inside
//! the folder's real path, and its type must be a regular file.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::runtime::engine::{Engine, EngineError, Upload};
use crate::runtime::log::Level;

/// Why a local file could not be spooled.
#[derive(Debug)]
pub enum UploadFileError {
    /// The file cannot be opened or read.
    Io(io::Error),
    /// Not allowed: `upload_dir` is not set, the path lies outside it, or it is not a regular
    /// file. The text says which.
    Forbidden(String),
    /// The engine refused the transfer.
    Engine(EngineError),
}

impl std::fmt::Display for UploadFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadFileError::Io(e) => write!(f, "{e}"),
            UploadFileError::Forbidden(r) => write!(f, "{r}"),
            UploadFileError::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UploadFileError {}

/// Files spooled from the local file system (`msrpcast_engine_upload_file`, the UPLOAD_FILE
/// request): each copy runs on its own short-lived thread so the caller never waits for the disk.
#[derive(Default)]
pub struct FileUploads {
    jobs: Mutex<Vec<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

impl FileUploads {
    /// Opens `path` (absolute, or relative to `upload_dir`), checks it is a regular file inside
    /// `upload_dir`, starts the transfer for `conference` and copies the file into the spool on
    /// a thread. Returns the transfer id once the transfer exists (deliveries are already
    /// starting).
    pub fn start(
        &self,
        engine: &Engine,
        conference: &str,
        path: &Path,
    ) -> Result<u64, UploadFileError> {
        self.start_to(engine, conference, path, None)
    }

    /// As [`FileUploads::start`], for the participants `to` only when given (see
    /// [`Engine::upload_to`]: an unknown key or an empty list is refused).
    pub fn start_to(
        &self,
        engine: &Engine,
        conference: &str,
        path: &Path,
        to: Option<&[String]>,
    ) -> Result<u64, UploadFileError> {
        let cfg = engine.config();
        let (file, meta) = open_inside(cfg.upload_dir.as_deref(), &cfg.spool_dir, path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let upload = engine
            .upload_to(
                conference,
                &name,
                "application/octet-stream",
                Some(meta.len()),
                to,
            )
            .map_err(UploadFileError::Engine)?;
        let transfer = upload.transfer.0;
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let logger = engine.logger().clone();
        let shown = path.display().to_string();
        let handle = crate::runtime::spawn("msrpcast-upload", move || {
            // A panic drops the upload, which aborts it; it is logged here.
            let what = format!("copying {shown:?} into the spool");
            let copied = crate::runtime::fault::guard(&logger, "control", &what, || {
                copy_into(file, upload, &flag)
            });
            if let Some(Err(e)) = copied {
                logger.log(
                    Level::Warn,
                    "control",
                    format_args!("transfer {transfer}: upload of {shown:?} failed: {e}"),
                );
            }
        })
        .map_err(UploadFileError::Io)?;
        let mut jobs = self.jobs.lock();
        jobs.retain(|(_, h)| !h.is_finished());
        jobs.push((cancel, handle));
        Ok(transfer)
    }

    /// Aborts the copies still running and waits for their threads.
    pub fn stop(&self) {
        let jobs = std::mem::take(&mut *self.jobs.lock());
        for (cancel, _) in &jobs {
            cancel.store(true, Ordering::Relaxed);
        }
        for (_, h) in jobs {
            let _ = h.join();
        }
    }
}

impl Drop for FileUploads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `path` lexically normalised (`.` dropped, `..` taking off one component); `None` when `..`
/// would climb above the root or the path is not absolute.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => return None,
        }
    }
    out.is_absolute().then_some(out)
}

/// Opens `path` for reading if it is a regular file inside `dir` (see the module doc).
/// Files of the spool itself (other transfers' data) are refused even when `upload_dir`
/// contains `spool_dir`.
fn open_inside(
    dir: Option<&Path>,
    spool_dir: &Path,
    path: &Path,
) -> Result<(fs::File, fs::Metadata), UploadFileError> {
    let forbidden = |why: String| UploadFileError::Forbidden(format!("{}: {why}", path.display()));
    let Some(dir) = dir else {
        return Err(forbidden(
            "uploads of local files are disabled (the upload_dir setting is not set)".into(),
        ));
    };
    let root = fs::canonicalize(dir)
        .map_err(|e| forbidden(format!("upload_dir {}: {e}", dir.display())))?;
    let full = if path.is_absolute() {
        path.to_owned()
    } else {
        root.join(path)
    };
    // Lexical check first: nothing outside the folder is opened at all (opening can have side
    // effects, and success or failure would tell whether the file exists).
    let outside = || forbidden(format!("outside upload_dir {}", dir.display()));
    let lexical = normalise(&full).ok_or_else(outside)?;
    let dir_lexical = normalise(&std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()));
    let inside = |p: &Path| p != root && p.starts_with(&root);
    let inside_lexically =
        inside(&lexical) || dir_lexical.is_some_and(|d| lexical != d && lexical.starts_with(&d));
    if !inside_lexically {
        return Err(outside());
    }
    let io = |e: io::Error| {
        UploadFileError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&lexical)
        .map_err(io)?;
    // What the kernel opened, symlinks and `..` resolved.
    let real = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| forbidden(format!("cannot check where the file is: {e}")))?;
    if !inside(&real) {
        return Err(forbidden(format!(
            "resolves to {}, outside upload_dir {}",
            real.display(),
            dir.display()
        )));
    }
    if fs::canonicalize(spool_dir).is_ok_and(|s| real.starts_with(s)) {
        return Err(forbidden(format!(
            "inside spool_dir {}",
            spool_dir.display()
        )));
    }
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(forbidden("not a regular file".into()));
    }
    Ok((file, meta))
}

fn copy_into(mut file: fs::File, mut upload: Upload, cancel: &AtomicBool) -> Result<(), String> {
    use std::io::Read;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            upload.abort();
            return Err("engine stopping".into());
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                upload.abort();
                return Err(e.to_string());
            }
        };
        upload.append(&buf[..n]).map_err(|e| e.to_string())?;
    }
    upload.finish().map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::runtime::control::{ControlServer, Request};
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    fn tempdir(name: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "msrpcast-uploads-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn engine(dir: &Path, upload_dir: Option<&Path>) -> Arc<Engine> {
        let mut cfg = Config::default();
        cfg.set("spool_dir", dir.join("spool").to_str().unwrap())
            .unwrap();
        cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
        cfg.set("io_threads", "1").unwrap();
        cfg.set("log_level", "error").unwrap();
        cfg.set("answer_timeout_ms", "600000").unwrap();
        if let Some(u) = upload_dir {
            cfg.set("upload_dir", u.to_str().unwrap()).unwrap();
        }
        let e = Arc::new(Engine::start(cfg).unwrap_or_else(|e| panic!("{e}")));
        // A participant whose file INVITEs nobody answers.
        e.join("room", "alice", "sip:alice@127.0.0.1:9", None)
            .unwrap();
        wait_for("the join", || e.roster().conference("room").is_some());
        e
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(5), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn names(e: &Engine) -> Vec<String> {
        let mut v: Vec<String> = e
            .roster()
            .transfers_of("room")
            .into_iter()
            .map(|t| t.name)
            .collect();
        v.sort();
        v
    }

    /// Issue 14 finding 9: UPLOAD_FILE datagrams naming files outside `upload_dir` (directly,
    /// through `..`, through a symlink), a FIFO or a folder are refused and counted; files inside
    /// it (absolute or relative path) are sent.
    #[test]
    fn control_socket_upload_is_confined_to_upload_dir() {
        let dir = tempdir("confined");
        let outbox = dir.join("outbox");
        fs::create_dir_all(outbox.join("sub")).unwrap();
        let secret = dir.join("secret.txt");
        fs::write(&secret, b"password hashes").unwrap();
        fs::write(outbox.join("agenda.txt"), b"agenda").unwrap();
        fs::write(outbox.join("sub/notes.txt"), b"notes").unwrap();
        std::os::unix::fs::symlink(&secret, outbox.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("/etc", outbox.join("etc")).unwrap();
        let fifo = outbox.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // A FIFO would block a plain open until a writer comes.
        assert_eq!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .code(),
            Some(0),
            "mkfifo {c:?}"
        );
        let e = engine(&dir, Some(&outbox));
        let server = ControlServer::start(&dir.join("control.sock"), e.clone()).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        let send = |path: &str| {
            let mut buf = Vec::new();
            Request::UploadFile {
                conference: "room",
                path,
            }
            .encode(&mut buf)
            .unwrap();
            client.send_to(&buf, server.path()).unwrap();
        };
        let outbox_s = outbox.to_str().unwrap();
        let refused = [
            secret.to_str().unwrap().to_owned(),
            "/etc/passwd".to_owned(),
            format!("{outbox_s}/../secret.txt"),
            "../secret.txt".to_owned(),
            format!("{outbox_s}/link.txt"),
            "etc/passwd".to_owned(),
            format!("{outbox_s}/sub"),
            outbox_s.to_owned(),
            format!("{outbox_s}/missing.txt"),
        ];
        for p in &refused {
            send(p);
        }
        wait_for("every refusal", || {
            server.counters().snapshot().refused == refused.len() as u64
        });
        assert_eq!(names(&e), Vec::<String>::new(), "nothing sent");
        // Sent last: before the fix the open blocked the control thread for good.
        send(&format!("{outbox_s}/fifo"));
        wait_for("the FIFO's refusal", || {
            server.counters().snapshot().refused == refused.len() as u64 + 1
        });
        send(&format!("{outbox_s}/agenda.txt"));
        send("sub/../sub/notes.txt");
        wait_for("two uploads", || server.counters().snapshot().uploads == 2);
        assert_eq!(names(&e), ["agenda.txt", "notes.txt"]);
        drop(server);
        drop(e);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Without `upload_dir` nothing is opened, and the reason names the setting.
    #[test]
    fn without_upload_dir_every_local_upload_is_refused() {
        let dir = tempdir("unset");
        let file = dir.join("f.txt");
        fs::write(&file, b"x").unwrap();
        let e = engine(&dir, None);
        let uploads = FileUploads::default();
        match uploads.start(&e, "room", &file) {
            Err(UploadFileError::Forbidden(why)) => {
                assert!(why.contains("upload_dir"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // With it, the same file goes; a symlink out of the folder is refused with its target.
        drop(e);
        let other = tempdir("unset-other");
        // A spool of its own: the first engine's may still be locked for a moment.
        let e = engine(&other, Some(&dir));
        assert!(uploads.start(&e, "room", &file).is_ok());
        fs::write(other.join("k"), b"key").unwrap();
        std::os::unix::fs::symlink(other.join("k"), dir.join("k")).unwrap();
        match uploads.start(&e, "room", &dir.join("k")) {
            Err(UploadFileError::Forbidden(why)) => {
                assert!(why.contains("resolves to"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // Never the spool's own files, even when upload_dir contains spool_dir.
        let own = tempdir("unset-own");
        fs::write(own.join("f"), b"data").unwrap();
        let e2 = engine(&own, Some(&own));
        assert!(uploads.start(&e2, "room", &own.join("f")).is_ok());
        let spooled = fs::read_dir(own.join("spool"))
            .unwrap()
            .flatten()
            .map(|x| x.path())
            .find(|p| p.extension().is_some_and(|x| x == "spool"))
            .expect("a spool file");
        match uploads.start(&e2, "room", &spooled) {
            Err(UploadFileError::Forbidden(why)) => assert!(why.contains("spool_dir"), "{why}"),
            r => panic!("{r:?}"),
        }
        uploads.stop();
        drop(e);
        drop(e2);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
        fs::remove_dir_all(&own).unwrap();
    }
}
