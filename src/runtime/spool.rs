//! The spool: every uploaded file becomes a file in `spool_dir`, readable by deliveries while it
//! is still being written.
//!
//! - One [`Spool`] per engine ([`Spool::open`]) owns the folder. It takes an exclusive lock on
//!   `spool_dir/.msrpcast.lock` (a second engine on the same folder gets [`SpoolError::Busy`]),
//!   then deletes the files a previous run left behind: only regular files named
//!   `msrpcast-*.spool` directly in the folder, one `remove_file` each (no `remove_dir_all`, no
//!   recursion, symlinks and other names are left alone). [`Spool::open_keeping`] spares the
//!   files the caller names (complete files with an on-disk record, see
//!   `runtime/engine/persist.rs`), which [`Spool::restore`] then opens again as complete files.
//! - [`Spool::create`] makes a new file for an upload and returns its single [`SpoolWriter`] and
//!   the shared [`SpoolFile`]. The name is generated here (`msrpcast-<n>-<transfer id>.spool`,
//!   the id reduced to `[A-Za-z0-9_-]`, at most 64 characters); user-supplied file names never
//!   reach the file system. Files are created with mode 0600.
//! - [`SpoolWriter::append`] writes at the end of the file and then publishes the new length.
//!   The SHA-1 is computed on a thread of the upload's own that follows the writer, re-reading
//!   what was written from the page cache (a copy, ~10 GB/s, next to SHA-1's ~2 GB/s), so hashing
//!   runs on another core instead of capping the upload; [`SpoolWriter::finish`] waits for it to
//!   catch up. One such thread per upload being written (uploads are bounded by the HTTP
//!   server's limits); if it cannot be started the writer hashes inline. `max_file_bytes` and the quota `spool_max_bytes` are checked *before* a byte
//!   beyond them is written, so the disk never fills past the quota.
//! - Readers ([`SpoolFile::read_at`]) use positioned reads on the shared descriptor: any number
//!   of readers at once, each at its own offset, only ever seeing bytes below [`SpoolFile::len`].
//!
//! ## Lifetime and quota
//! A spool file's name is unlinked as soon as it cannot be delivered any more (aborted, too
//! large, quota exceeded), when [`Spool::remove`] is called, or when the last `Arc<SpoolFile>`
//! (the writer holds one) is dropped — unless it was marked [`SpoolFile::set_kept`] (its record
//! is on disk: it is to survive a restart). Readers that already hold the `Arc` keep reading after the
//! unlink (the open descriptor keeps the data on Linux), so removing a conference's file does not
//! break a delivery in flight. The file's bytes count against the quota until the last
//! `Arc<SpoolFile>` is dropped, because that is when the kernel frees the disk blocks; so the
//! quota is an honest upper bound of the disk space in use.
//!
//! ## Notifications
//! [`SpoolFile::subscribe`] registers a callback for "more data or a state change". It is
//! edge-triggered and coalesced: a subscription is *armed* when made and by
//! [`Subscription::arm`]; an append calls the callback of each armed subscription once and
//! disarms it; a state change (complete, aborted, too large, quota exceeded, removed) calls every
//! subscription. A consumer arms when it has read everything up to `len()` and re-checks `len()`
//! and `state()` after arming. So a writer appending many small pieces calls each subscriber at
//! most once per time that subscriber caught up — never per append at full rate — while a
//! waiting reader is woken by the very next append (no byte threshold adding latency to a slow
//! upload). Callbacks run on the writer's thread: they must be cheap, must not block, and must
//! not subscribe to or drop a subscription of the same file.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sha1::{Digest, Sha1};

use crate::config::Config;
use crate::msrp::dash_runs::DashRuns;

/// Callback of a [`Subscription`].
pub type Notify = Arc<dyn Fn() + Send + Sync>;

const PREFIX: &str = "msrpcast-";
const SUFFIX: &str = ".spool";
const LOCK_NAME: &str = ".msrpcast.lock";
/// Longest transfer id kept in a file name.
const MAX_ID_CHARS: usize = 64;

/// Where a spool file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolState {
    /// The upload is still running; [`SpoolFile::len`] grows.
    Writing,
    /// The whole file is there.
    Complete { size: u64, sha1: [u8; 20] },
    /// The upload was aborted or the file removed before it was complete.
    Aborted,
    /// The upload went over `max_file_bytes`.
    TooLarge,
    /// The upload would have gone over the spool quota `spool_max_bytes`.
    QuotaExceeded,
}

impl SpoolState {
    /// Complete, or failed for good.
    pub fn is_final(&self) -> bool {
        !matches!(self, SpoolState::Writing)
    }

    /// Aborted, too large or over quota: deliveries of it must be aborted.
    pub fn is_failed(&self) -> bool {
        matches!(
            self,
            SpoolState::Aborted | SpoolState::TooLarge | SpoolState::QuotaExceeded
        )
    }

    /// Short lower-case name for status output.
    pub fn name(&self) -> &'static str {
        match self {
            SpoolState::Writing => "writing",
            SpoolState::Complete { .. } => "complete",
            SpoolState::Aborted => "aborted",
            SpoolState::TooLarge => "too_large",
            SpoolState::QuotaExceeded => "quota_exceeded",
        }
    }
}

/// Why a spool operation failed.
#[derive(Debug)]
pub enum SpoolError {
    /// The file would exceed `max_file_bytes`; nothing beyond it was written.
    TooLarge { limit: u64 },
    /// The spool would exceed `spool_max_bytes`; nothing beyond it was written.
    QuotaExceeded { limit: u64, in_use: u64 },
    /// The file was removed while it was being written.
    Removed,
    /// The file is no longer being written (it failed earlier); carries its state.
    Closed(SpoolState),
    /// Another engine holds the spool folder's lock.
    Busy { dir: PathBuf },
    /// An operating system error.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl SpoolError {
    /// The HTTP status an upload failing with this error should get.
    pub fn http_status(&self) -> u16 {
        match self {
            SpoolError::TooLarge { .. } => 413,
            SpoolError::QuotaExceeded { .. } => 507,
            SpoolError::Removed | SpoolError::Closed(_) => 409,
            SpoolError::Busy { .. } | SpoolError::Io { .. } => 500,
        }
    }

    fn io(op: &'static str, path: &Path, source: io::Error) -> SpoolError {
        SpoolError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::TooLarge { limit } => {
                write!(f, "file is larger than max_file_bytes ({limit} bytes)")
            }
            SpoolError::QuotaExceeded { limit, in_use } => write!(
                f,
                "spool quota spool_max_bytes ({limit} bytes) exhausted ({in_use} bytes in use)"
            ),
            SpoolError::Removed => f.write_str("spool file was removed while being written"),
            SpoolError::Closed(s) => {
                write!(f, "spool file is no longer being written ({})", s.name())
            }
            SpoolError::Busy { dir } => write!(
                f,
                "spool folder {} is in use by another msrpcast engine",
                dir.display()
            ),
            SpoolError::Io { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What all files of one spool share: limits, the quota counter and the folder lock.
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    max_file_bytes: u64,
    used: AtomicU64,
    /// How hashing threads lower their priority; unset: they keep the creator's.
    priority: OnceLock<HashPriority>,
    /// Held (locked) while the spool or any of its files lives.
    _lock: File,
}

/// Told (once per spool) why a hashing thread could not lower its priority.
pub type PriorityError = Box<dyn Fn(&io::Error) + Send + Sync>;

/// How far below the thread that starts them hashing threads put themselves
/// ([`Spool::set_hash_nice`]).
struct HashPriority {
    nice: i32,
    on_error: PriorityError,
    reported: AtomicBool,
}

impl HashPriority {
    /// Lowers the calling thread's priority by `nice` (nice value at most 19; only this thread:
    /// Linux applies `setpriority` to a thread id alone, and a new thread starts with its
    /// creator's). A failure is reported once and the thread hashes at its priority.
    fn apply(&self) {
        if self.nice == 0 {
            return;
        }
        let tid = Some(rustix::thread::gettid());
        let r = rustix::process::getpriority_process(tid)
            .and_then(|now| rustix::process::setpriority_process(tid, (now + self.nice).min(19)));
        if let Err(e) = r {
            if !self.reported.swap(true, Ordering::Relaxed) {
                (self.on_error)(&io::Error::from(e));
            }
        }
    }
}

impl Shared {
    fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.max_bytes)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The engine's spool folder; see the module documentation.
pub struct Spool {
    shared: Arc<Shared>,
    seq: AtomicU64,
    /// Names of the stale files [`Spool::open`] removed.
    stale: Vec<String>,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.shared.dir)
            .field("max_bytes", &self.shared.max_bytes)
            .field("max_file_bytes", &self.shared.max_file_bytes)
            .field("used", &self.used_bytes())
            .finish()
    }
}

impl Spool {
    /// Opens (creating it with mode 0700 if missing) the spool folder, locks it and removes the
    /// stale `msrpcast-*.spool` files of an earlier run.
    pub fn open(
        dir: impl Into<PathBuf>,
        max_bytes: u64,
        max_file_bytes: u64,
    ) -> Result<Spool, SpoolError> {
        Spool::open_keeping(dir, max_bytes, max_file_bytes, |_| HashSet::new())
    }

    /// [`Spool::open`], sparing the `msrpcast-*.spool` files whose names `keep` returns. `keep`
    /// runs once the folder is locked (so no other engine changes it meanwhile) and is given the
    /// folder. New files are numbered after the highest number kept, so no name is used twice.
    pub fn open_keeping(
        dir: impl Into<PathBuf>,
        max_bytes: u64,
        max_file_bytes: u64,
        keep: impl FnOnce(&Path) -> HashSet<String>,
    ) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| SpoolError::io("creating spool folder", &dir, e))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| SpoolError::io("opening", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Busy { dir }),
            Err(fs::TryLockError::Error(e)) => {
                return Err(SpoolError::io("locking", &lock_path, e))
            }
        }
        let kept = keep(&dir);
        let stale = remove_stale(&dir, &kept)?;
        let first = kept.iter().filter_map(|n| seq_of(n)).max().unwrap_or(0) + 1;
        Ok(Spool {
            shared: Arc::new(Shared {
                dir,
                max_bytes,
                max_file_bytes,
                used: AtomicU64::new(0),
                priority: OnceLock::new(),
                _lock: lock,
            }),
            seq: AtomicU64::new(first),
            stale,
        })
    }

    /// [`Spool::open`] with `spool_dir`, `spool_max_bytes` and `max_file_bytes` of a config.
    pub fn from_config(config: &Config) -> Result<Spool, SpoolError> {
        Spool::open(
            config.spool_dir.clone(),
            config.spool_max_bytes,
            config.max_file_bytes,
        )
    }

    /// Makes the threads that hash uploads behind their writers run `nice` nice values below
    /// the thread that starts them (at most 19; `spool_hash_nice`, 0: the same), so that on a busy machine
    /// the upload's own threads get the cores and the hash catches up behind. `on_error` is
    /// told, once, when a thread could not lower its priority. Only the first call counts
    /// (returns false after it).
    pub fn set_hash_nice(&self, nice: i32, on_error: PriorityError) -> bool {
        self.shared
            .priority
            .set(HashPriority {
                nice,
                on_error,
                reported: AtomicBool::new(false),
            })
            .is_ok()
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The quota, `spool_max_bytes`.
    pub fn max_bytes(&self) -> u64 {
        self.shared.max_bytes
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.shared.max_file_bytes
    }

    /// Bytes counted against the quota now (see "Lifetime and quota" above).
    pub fn used_bytes(&self) -> u64 {
        self.shared.used.load(Ordering::Acquire)
    }

    /// How many stale files [`Spool::open`] removed (for the engine's start-up log line).
    pub fn stale_removed(&self) -> usize {
        self.stale.len()
    }

    /// The names of the stale files [`Spool::open`] removed (for a log line each).
    pub fn stale_names(&self) -> &[String] {
        &self.stale
    }

    /// Opens a file an earlier run left complete (spared by [`Spool::open_keeping`]) as a
    /// [`SpoolState::Complete`] file of `size` bytes with this SHA-1 (not re-read here), marked
    /// kept. Fails when the name is not a spool file name, the file is not a regular file of
    /// exactly `size` bytes, or the quota has no room for it.
    pub fn restore(
        &self,
        name: &str,
        transfer_id: &str,
        size: u64,
        sha1: [u8; 20],
    ) -> Result<Arc<SpoolFile>, SpoolError> {
        let path = self.shared.dir.join(name);
        if !is_spool_name(name) || name.contains('/') {
            return Err(SpoolError::io(
                "restoring",
                &path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a spool file name"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| SpoolError::io("restoring", &path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| SpoolError::io("restoring", &path, e))?;
        if !meta.is_file() || meta.len() != size {
            let why = if meta.is_file() {
                format!("{} bytes on disk, the record says {size}", meta.len())
            } else {
                "not a regular file".to_owned()
            };
            return Err(SpoolError::io(
                "restoring",
                &path,
                io::Error::new(io::ErrorKind::InvalidData, why),
            ));
        }
        if !self.shared.reserve(size) {
            return Err(SpoolError::QuotaExceeded {
                limit: self.shared.max_bytes,
                in_use: self.used_bytes(),
            });
        }
        Ok(Arc::new(SpoolFile {
            transfer_id: transfer_id.to_owned(),
            path,
            file,
            len: AtomicU64::new(size),
            final_len: AtomicU64::new(size),
            reserved: AtomicU64::new(size),
            state: Mutex::new(SpoolState::Complete { size, sha1 }),
            unlinked: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            kept: AtomicBool::new(true),
            shared: self.shared.clone(),
            subs: Mutex::new(Vec::new()),
            armed: AtomicUsize::new(0),
            next_sub: AtomicU64::new(1),
            dash_runs: None,
        }))
    }

    /// Creates the spool file of a new upload. `transfer_id` only labels the file name (reduced
    /// to `[A-Za-z0-9_-]`); uniqueness comes from a counter.
    pub fn create(&self, transfer_id: &str) -> Result<(SpoolWriter, Arc<SpoolFile>), SpoolError> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{n}-{}{SUFFIX}", sanitize_id(transfer_id));
        let path = self.shared.dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| SpoolError::io("creating", &path, e))?;
        let sf = Arc::new(SpoolFile {
            transfer_id: transfer_id.to_owned(),
            path,
            file,
            len: AtomicU64::new(0),
            final_len: AtomicU64::new(u64::MAX),
            reserved: AtomicU64::new(0),
            state: Mutex::new(SpoolState::Writing),
            unlinked: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            kept: AtomicBool::new(false),
            shared: self.shared.clone(),
            subs: Mutex::new(Vec::new()),
            armed: AtomicUsize::new(0),
            next_sub: AtomicU64::new(1),
            dash_runs: Some(Mutex::new(DashRuns::new())),
        });
        let writer = SpoolWriter {
            file: sf.clone(),
            hasher: Hashing::NotStarted,
            written: 0,
            done: false,
        };
        Ok((writer, sf))
    }

    /// Removes a file: its name goes now; readers holding it keep reading; a file still being
    /// written becomes [`SpoolState::Aborted`] and its writer gets [`SpoolError::Removed`]. Its
    /// bytes return to the quota when the last `Arc<SpoolFile>` is dropped.
    pub fn remove(&self, file: &SpoolFile) {
        file.remove();
    }
}

/// Reduces a transfer id to `[A-Za-z0-9_-]` (other characters become `_`), at most 64
/// characters; an empty id becomes `file`.
pub fn sanitize_id(id: &str) -> String {
    let s: String = id
        .chars()
        .take(MAX_ID_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "file".to_owned()
    } else {
        s
    }
}

/// `msrpcast-*.spool`.
pub fn is_spool_name(name: &str) -> bool {
    name.len() > PREFIX.len() + SUFFIX.len() && name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// The number `n` of a spool file name `msrpcast-<n>-<id>.spool`.
fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Removes the regular files named `msrpcast-*.spool` directly in `dir`, but those in `keep`;
/// returns the names removed.
fn remove_stale(dir: &Path, keep: &HashSet<String>) -> Result<Vec<String>, SpoolError> {
    let entries = fs::read_dir(dir).map_err(|e| SpoolError::io("reading", dir, e))?;
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io("reading", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(PREFIX) && name.ends_with(SUFFIX)) || keep.contains(name) {
            continue;
        }
        // file_type() does not follow symlinks.
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => removed.push(name.to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io("removing stale", &path, e)),
        }
    }
    Ok(removed)
}

struct SubEntry {
    id: u64,
    armed: AtomicBool,
    f: Notify,
}

/// One spooled file, shared by its writer and every delivery reading it.
pub struct SpoolFile {
    transfer_id: String,
    path: PathBuf,
    file: File,
    /// Bytes written and readable.
    len: AtomicU64,
    /// The final size once the writer has every byte ([`u64::MAX`] before): set before the
    /// SHA-1 is done, so that deliveries can end the message without waiting for the hash.
    final_len: AtomicU64,
    /// Bytes counted against the quota for this file.
    reserved: AtomicU64,
    state: Mutex<SpoolState>,
    unlinked: AtomicBool,
    removed: AtomicBool,
    /// Its record is on disk: dropping the last `Arc` leaves the file (for the next start).
    kept: AtomicBool,
    shared: Arc<Shared>,
    subs: Mutex<Vec<Arc<SubEntry>>>,
    /// Number of armed subscriptions (a hint that lets an append skip the lock).
    armed: AtomicUsize,
    next_sub: AtomicU64,
    /// Where the runs of dashes that could carry an end-line end, found once by the writer as
    /// the bytes arrive (see [`DashRuns`]); `None` for a file restored from disk (its
    /// deliveries scan each chunk instead).
    dash_runs: Option<Mutex<DashRuns>>,
}

impl fmt::Debug for SpoolFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolFile")
            .field("path", &self.path)
            .field("len", &self.len())
            .field("state", &self.state())
            .finish()
    }
}

impl SpoolFile {
    /// Bytes written so far; every byte below it can be read.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's final size once its last byte is written, while [`SpoolState::Writing`] may
    /// still last until the SHA-1 is done. Deliveries can end the message here: its bytes will
    /// not change (a file removed now still becomes [`SpoolState::Aborted`]).
    pub fn final_len(&self) -> Option<u64> {
        match self.final_len.load(Ordering::SeqCst) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    pub fn state(&self) -> SpoolState {
        *self.state.lock()
    }

    /// The path it has (or had, once removed) in the spool folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The transfer id it was created for, as given.
    pub fn transfer_id(&self) -> &str {
        &self.transfer_id
    }

    /// Whether [`Spool::remove`] was called.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// The file's name in the spool folder.
    pub fn name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }

    /// Marks the file to stay on disk when the last `Arc` is dropped (its record was written),
    /// or not. [`Spool::remove`] removes it either way.
    pub fn set_kept(&self, kept: bool) {
        self.kept.store(kept, Ordering::Release);
    }

    pub fn is_kept(&self) -> bool {
        self.kept.load(Ordering::Acquire)
    }

    /// Reads bytes at `offset` into `buf` with a positioned read (no shared cursor, so any
    /// number of readers at once). Never returns bytes at or beyond [`SpoolFile::len`]; returns
    /// 0 at that point. Keeps working after the file was removed.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.len();
        if offset >= len || buf.is_empty() {
            return Ok(0);
        }
        let avail = usize::try_from(len - offset).unwrap_or(usize::MAX);
        let n = buf.len().min(avail);
        self.file.read_at(&mut buf[..n], offset)
    }

    /// Puts into `out` the run ends of dashes (see [`DashRuns`]) within `r`, a range of bytes
    /// below [`SpoolFile::len`]. False when the file has no usable index (restored from disk, or
    /// more runs than [`DashRuns::MAX_RUNS`]): the caller must scan the bytes itself.
    pub fn dash_run_ends(&self, r: std::ops::Range<u64>, out: &mut Vec<u64>) -> bool {
        out.clear();
        let Some(d) = &self.dash_runs else {
            return false;
        };
        match d.lock().ends_within(r) {
            Some(ends) => {
                out.extend_from_slice(ends);
                true
            }
            None => false,
        }
    }

    /// Registers `f` for "more data or state changed" (see the module documentation). The
    /// subscription starts armed and ends when dropped.
    pub fn subscribe(self: &Arc<Self>, f: Notify) -> Subscription {
        let entry = Arc::new(SubEntry {
            id: self.next_sub.fetch_add(1, Ordering::Relaxed),
            armed: AtomicBool::new(true),
            f,
        });
        self.subs.lock().push(entry.clone());
        self.armed.fetch_add(1, Ordering::SeqCst);
        Subscription {
            file: self.clone(),
            entry,
        }
    }

    /// Blocks the calling thread until `len() > seen` or the state is final, at most `timeout`.
    /// Returns the length and state then. For simple consumers and tests; the engine's I/O
    /// threads use [`SpoolFile::subscribe`] instead.
    pub fn wait_for_more(self: &Arc<Self>, seen: u64, timeout: Duration) -> (u64, SpoolState) {
        let deadline = Instant::now() + timeout;
        let thread = std::thread::current();
        let sub = self.subscribe(Arc::new(move || thread.unpark()));
        loop {
            sub.arm();
            let state = self.state();
            let len = self.len();
            if len > seen || state.is_final() {
                return (len, state);
            }
            let now = Instant::now();
            if now >= deadline {
                return (len, state);
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    fn remove(&self) {
        self.removed.store(true, Ordering::Release);
        if !self.finish_state(SpoolState::Aborted) {
            // Not being written any more: only the name goes.
            self.unlink();
        }
    }

    /// Moves from `Writing` to `new`; false if it was no longer `Writing`. Unlinks the name of
    /// a failed file and calls every subscriber.
    fn finish_state(&self, new: SpoolState) -> bool {
        {
            let mut st = self.state.lock();
            if *st != SpoolState::Writing {
                return false;
            }
            *st = new;
        }
        if new.is_failed() {
            self.unlink();
        }
        fence(Ordering::SeqCst);
        let subs = self.subs.lock();
        for s in subs.iter() {
            if s.armed.swap(false, Ordering::SeqCst) {
                self.armed.fetch_sub(1, Ordering::SeqCst);
            }
            (s.f)();
        }
        true
    }

    /// Calls the armed subscribers once each and disarms them.
    fn notify_armed(&self) {
        if self.armed.load(Ordering::SeqCst) == 0 {
            return;
        }
        let subs = self.subs.lock();
        for s in subs.iter() {
            if s.armed.swap(false, Ordering::SeqCst) {
                self.armed.fetch_sub(1, Ordering::SeqCst);
                (s.f)();
            }
        }
    }

    fn unlink(&self) {
        if !self.unlinked.swap(true, Ordering::AcqRel) {
            // Already gone (NotFound) is fine; other errors leave a file that the next start's
            // stale cleanup removes.
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl AsFd for SpoolFile {
    /// The open descriptor, for `sendfile`-style zero-copy sends. Only bytes below
    /// [`SpoolFile::len`] are valid.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if !*self.kept.get_mut() || *self.removed.get_mut() {
            self.unlink();
        }
        self.shared.release(*self.reserved.get_mut());
    }
}

/// A registration for notifications of one [`SpoolFile`]; unregistered when dropped.
pub struct Subscription {
    file: Arc<SpoolFile>,
    entry: Arc<SubEntry>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.entry.id)
            .field("armed", &self.is_armed())
            .finish()
    }
}

impl Subscription {
    /// Asks for one call at the next append. Call it when caught up, then check `len()` and
    /// `state()` again: data or a state change that came just before arming is seen there.
    pub fn arm(&self) {
        if !self.entry.armed.swap(true, Ordering::SeqCst) {
            self.file.armed.fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    pub fn is_armed(&self) -> bool {
        self.entry.armed.load(Ordering::SeqCst)
    }

    pub fn file(&self) -> &Arc<SpoolFile> {
        &self.file
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.file.subs.lock();
        subs.retain(|s| s.id != self.entry.id);
        if self.entry.armed.swap(false, Ordering::SeqCst) {
            self.file.armed.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The single writer of a spool file. Dropping it without [`SpoolWriter::finish`] marks the
/// file [`SpoolState::Aborted`].
pub struct SpoolWriter {
    file: Arc<SpoolFile>,
    hasher: Hashing,
    written: u64,
    done: bool,
}

impl fmt::Debug for SpoolWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolWriter")
            .field("path", &self.file.path)
            .field("written", &self.written)
            .finish()
    }
}

impl SpoolWriter {
    pub fn file(&self) -> &Arc<SpoolFile> {
        &self.file
    }

    /// Bytes appended so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data`. Checks `max_file_bytes` and the quota first: going over either writes
    /// nothing of `data`, moves the file to [`SpoolState::TooLarge`] /
    /// [`SpoolState::QuotaExceeded`] (its name is unlinked, subscribers are told) and returns
    /// the error; so does every later call.
    pub fn append(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        let f = &self.file;
        if f.removed.load(Ordering::Acquire) {
            f.finish_state(SpoolState::Aborted);
            return Err(SpoolError::Removed);
        }
        match f.state() {
            SpoolState::Writing => {}
            SpoolState::TooLarge => {
                return Err(SpoolError::TooLarge {
                    limit: f.shared.max_file_bytes,
                })
            }
            SpoolState::QuotaExceeded => {
                return Err(SpoolError::QuotaExceeded {
                    limit: f.shared.max_bytes,
                    in_use: f.shared.used.load(Ordering::Acquire),
                })
            }
            s => return Err(SpoolError::Closed(s)),
        }
        if data.is_empty() {
            return Ok(());
        }
        let n = data.len() as u64;
        let new_len = match self.written.checked_add(n) {
            Some(l) if l <= f.shared.max_file_bytes => l,
            _ => {
                f.finish_state(SpoolState::TooLarge);
                return Err(SpoolError::TooLarge {
                    limit: f.shared.max_file_bytes,
                });
            }
        };
        if !f.shared.reserve(n) {
            f.finish_state(SpoolState::QuotaExceeded);
            return Err(SpoolError::QuotaExceeded {
                limit: f.shared.max_bytes,
                in_use: f.shared.used.load(Ordering::Acquire),
            });
        }
        f.reserved.fetch_add(n, Ordering::AcqRel);
        if let Err(e) = f.file.write_all_at(data, self.written) {
            f.finish_state(SpoolState::Aborted);
            return Err(SpoolError::io("writing", &f.path, e));
        }
        self.written = new_len;
        // Indexed before the bytes become readable (the store below publishes both).
        if let Some(d) = &f.dash_runs {
            d.lock().feed(data);
        }
        f.len.store(new_len, Ordering::SeqCst);
        self.hasher.advance(&self.file, data, new_len);
        f.notify_armed();
        Ok(())
    }

    /// Marks the file complete and returns its SHA-1. Fails if it was removed or had failed.
    /// The id of the thread hashing this file, once it runs (tests check its priority).
    #[cfg(test)]
    fn hash_thread_id(&self) -> Option<i32> {
        match &self.hasher {
            Hashing::Background(b) => {
                Some(b.shared.tid.load(Ordering::Acquire)).filter(|&t| t != 0)
            }
            _ => None,
        }
    }

    /// Waits for the hashing thread to catch up; [`SpoolWriter::finish_then`] does not.
    pub fn finish(mut self) -> Result<[u8; 20], SpoolError> {
        self.done = true;
        self.publish_final_len()?;
        let r = std::mem::replace(&mut self.hasher, Hashing::NotStarted).finish();
        complete(&self.file, self.written, r)
    }

    /// Every byte is written: publishes the final length at once (readers may end the message
    /// now), and marks the file complete when its SHA-1 is known, then calls `then` with the
    /// outcome — on the hashing thread, whose handle is returned (`Ok(Some)`), or before
    /// returning when there is none (`Ok(None)`: an empty file, or hashing inline). `Err`: the
    /// file could not be finished (removed, or failed earlier); `then` is not called.
    ///
    /// The caller learns that the file is whole without waiting for SHA-1 (≈ 1 GB/s on one core,
    /// slower than loopback and disk); the hash finishes behind it. Join the handle before the
    /// spool goes away (an engine stopping), so the completion is not lost.
    pub fn finish_then<F>(mut self, then: F) -> Result<Option<HashJoin>, SpoolError>
    where
        F: FnOnce(Result<[u8; 20], SpoolError>) + Send + 'static,
    {
        self.done = true;
        self.publish_final_len()?;
        let size = self.written;
        match std::mem::replace(&mut self.hasher, Hashing::NotStarted) {
            Hashing::Background(mut b) => {
                let file = self.file.clone();
                let on_hash = move |r: io::Result<[u8; 20]>| then(complete(&file, size, r));
                {
                    let mut g = b.shared.progress.lock();
                    g.finished = true;
                    g.then = Some(Box::new(on_hash));
                }
                b.shared.cv.notify_one();
                Ok(b.join.take().map(HashJoin))
            }
            other => {
                let sha1 = complete(&self.file, size, other.finish())?;
                then(Ok(sha1));
                Ok(None)
            }
        }
    }

    /// Stores the final length so readers can end the message while the hash catches up.
    fn publish_final_len(&self) -> Result<(), SpoolError> {
        let f = &self.file;
        if f.removed.load(Ordering::Acquire) {
            f.finish_state(SpoolState::Aborted);
            return Err(SpoolError::Removed);
        }
        if f.state() != SpoolState::Writing {
            return Err(SpoolError::Closed(f.state()));
        }
        f.final_len.store(self.written, Ordering::SeqCst);
        f.notify_armed();
        Ok(())
    }

    /// Marks the file aborted (the upload was cancelled or broke off).
    pub fn abort(mut self) {
        self.done = true;
        self.hasher.cancel();
        self.file.finish_state(SpoolState::Aborted);
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        self.hasher.cancel();
        if !self.done {
            self.file.finish_state(SpoolState::Aborted);
        }
    }
}

/// Moves a file whose every byte is written to [`SpoolState::Complete`] with the hash `r`
/// (or to [`SpoolState::Aborted`] when hashing failed).
fn complete(f: &SpoolFile, size: u64, r: io::Result<[u8; 20]>) -> Result<[u8; 20], SpoolError> {
    let sha1 = match r {
        Ok(h) => h,
        Err(e) => {
            f.finish_state(SpoolState::Aborted);
            return Err(SpoolError::io("hashing", &f.path, e));
        }
    };
    if f.finish_state(SpoolState::Complete { size, sha1 }) {
        Ok(sha1)
    } else {
        Err(SpoolError::Closed(f.state()))
    }
}

/// The hashing thread of a file finished with [`SpoolWriter::finish_then`]; [`HashJoin::join`]
/// waits until the file is complete and the callback has run.
pub struct HashJoin(std::thread::JoinHandle<Option<io::Result<[u8; 20]>>>);

impl fmt::Debug for HashJoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashJoin")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl HashJoin {
    /// Whether the hash and the callback are done.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Waits for the hash and the callback. Returns at once when called on the hashing thread
    /// itself (its callback dropped the last reference to what joins it).
    pub fn join(self) {
        if self.0.thread().id() != std::thread::current().id() {
            let _ = self.0.join();
        }
    }
}

/// How a writer computes its file's SHA-1.
enum Hashing {
    /// Nothing appended yet.
    NotStarted,
    /// On the calling thread (the background thread could not be started).
    Inline(Sha1),
    Background(BackgroundHash),
}

/// Bytes hashed per read of the background hasher.
const HASH_BLOCK: usize = 256 * 1024;

impl Hashing {
    /// `data` was appended; the file now holds `len` bytes.
    fn advance(&mut self, file: &Arc<SpoolFile>, data: &[u8], len: u64) {
        if matches!(self, Hashing::NotStarted) {
            *self = match BackgroundHash::start(file.clone()) {
                Ok(b) => Hashing::Background(b),
                Err(_) => Hashing::Inline(Sha1::new()),
            };
        }
        match self {
            Hashing::NotStarted => {}
            Hashing::Inline(h) => h.update(data),
            Hashing::Background(b) => b.advance(len),
        }
    }

    fn finish(self) -> io::Result<[u8; 20]> {
        match self {
            Hashing::NotStarted => Ok(Sha1::new().finalize().into()),
            Hashing::Inline(h) => Ok(h.finalize().into()),
            Hashing::Background(b) => b.finish(),
        }
    }

    fn cancel(&mut self) {
        if let Hashing::Background(b) = self {
            b.cancel();
        }
        *self = Hashing::NotStarted;
    }
}

/// What the hashing thread calls with its result instead of returning it (a writer finished
/// with [`SpoolWriter::finish_then`]).
type OnHash = Box<dyn FnOnce(io::Result<[u8; 20]>) + Send>;

#[derive(Default)]
struct HashProgress {
    /// Bytes written so far (the thread hashes up to here).
    target: u64,
    finished: bool,
    cancelled: bool,
    /// Set together with `finished` by [`SpoolWriter::finish_then`].
    then: Option<OnHash>,
}

struct HashShared {
    progress: Mutex<HashProgress>,
    cv: Condvar,
    /// The hashing thread's id, once it has set its priority (0 before).
    tid: AtomicI32,
}

/// The thread hashing a spool file behind its writer.
struct BackgroundHash {
    shared: Arc<HashShared>,
    /// Returns the hash, or `None` when it went to the `then` callback.
    join: Option<std::thread::JoinHandle<Option<io::Result<[u8; 20]>>>>,
}

impl BackgroundHash {
    fn start(file: Arc<SpoolFile>) -> io::Result<BackgroundHash> {
        let shared = Arc::new(HashShared {
            progress: Mutex::new(HashProgress::default()),
            cv: Condvar::new(),
            tid: AtomicI32::new(0),
        });
        let sh = shared.clone();
        let join = crate::runtime::spawn("msrpcast-sha1", move || {
            if let Some(p) = file.shared.priority.get() {
                p.apply();
            }
            let tid = rustix::thread::gettid().as_raw_nonzero().get();
            sh.tid.store(tid, Ordering::Release);
            let r = hash_follow(&file, &sh);
            // The file must not keep the spool alive past the callback.
            drop(file);
            let then = sh.progress.lock().then.take();
            match then {
                Some(then) => {
                    then(r);
                    None
                }
                None => Some(r),
            }
        })?;
        Ok(BackgroundHash {
            shared,
            join: Some(join),
        })
    }

    fn advance(&self, len: u64) {
        self.shared.progress.lock().target = len;
        self.shared.cv.notify_one();
    }

    fn finish(mut self) -> io::Result<[u8; 20]> {
        self.shared.progress.lock().finished = true;
        self.shared.cv.notify_one();
        match self.join.take().map(|j| j.join()) {
            Some(Ok(Some(r))) => r,
            _ => Err(io::Error::other("the hashing thread ended abnormally")),
        }
    }

    fn cancel(&mut self) {
        self.shared.progress.lock().cancelled = true;
        self.shared.cv.notify_one();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for BackgroundHash {
    fn drop(&mut self) {
        if self.join.is_some() {
            self.cancel();
        }
    }
}

/// The hashing thread: hashes what was written as it is published, until the writer finishes.
fn hash_follow(file: &SpoolFile, sh: &HashShared) -> io::Result<[u8; 20]> {
    let mut h = Sha1::new();
    let mut at = 0u64;
    let mut buf = vec![0u8; HASH_BLOCK];
    loop {
        let (target, finished) = {
            let mut g = sh.progress.lock();
            while g.target == at && !g.finished && !g.cancelled {
                sh.cv.wait(&mut g);
            }
            if g.cancelled {
                return Err(io::Error::other("cancelled"));
            }
            (g.target, g.finished)
        };
        while at < target {
            let n = usize::try_from(target - at)
                .unwrap_or(HASH_BLOCK)
                .min(HASH_BLOCK);
            file.file.read_exact_at(&mut buf[..n], at)?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        if finished {
            return Ok(h.finalize().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("msrpcast-unit-{}-{}", std::process::id(), name));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_id("abc-DEF_123"), "abc-DEF_123");
        assert_eq!(sanitize_id("../../etc/passwd"), "______etc_passwd");
        assert_eq!(sanitize_id("a b\0c\nd"), "a_b_c_d");
        assert_eq!(sanitize_id("é"), "_");
        assert_eq!(sanitize_id(""), "file");
        assert_eq!(sanitize_id(&"x".repeat(500)).len(), 64);
    }

    #[test]
    fn write_read_complete() {
        let dir = tmp("wrc");
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        let (mut w, f) = spool.create("t/1 ../x").unwrap();
        let name = f.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.starts_with("msrpcast-") && name.ends_with("-t_1____x.spool"),
            "{name}"
        );
        assert_eq!(f.path().parent(), Some(dir.as_path()));
        assert_eq!(f.transfer_id(), "t/1 ../x");
        w.append(b"hello ").unwrap();
        assert_eq!(f.len(), 6);
        assert_eq!(f.state(), SpoolState::Writing);
        let mut buf = [0u8; 64];
        assert_eq!(f.read_at(0, &mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"hello ");
        w.append(b"world").unwrap();
        w.append(b"").unwrap();
        assert_eq!(f.read_at(6, &mut buf).unwrap(), 5);
        assert_eq!(f.read_at(11, &mut buf).unwrap(), 0);
        assert_eq!(f.read_at(3, &mut buf[..2]).unwrap(), 2);
        assert_eq!(&buf[..2], b"lo");
        let sha = w.finish().unwrap();
        assert_eq!(hex(&sha), "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed");
        assert_eq!(
            f.state(),
            SpoolState::Complete {
                size: 11,
                sha1: sha
            }
        );
        assert_eq!(spool.used_bytes(), 11);
        drop(spool);
        drop(f);
        let _ = fs::remove_dir_all(&dir);
    }

    /// `finish_then` returns with the final length published and the file still `Writing`
    /// when there is hashing left; the callback gets the SHA-1 of every byte and the file is
    /// `Complete` by then; joining the handle waits for it.
    #[test]
    fn finish_then_completes_behind_the_caller() {
        let dir = tmp("then");
        let spool = Spool::open(&dir, 1 << 30, 1 << 30).unwrap();
        let (mut w, f) = spool.create("t").unwrap();
        let block: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i * 31 + (i >> 11)) as u8)
            .collect();
        let mut want = Sha1::new();
        for i in 0..48u8 {
            let mut b = block.clone();
            b[0] = i;
            w.append(&b).unwrap();
            want.update(&b);
        }
        let want: [u8; 20] = want.finalize().into();
        let size = 48u64 << 20;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let seen = f.clone();
        let join = w
            .finish_then(move |r| {
                // The file is complete before the callback runs.
                let state = seen.state();
                tx.send((r.map_err(|e| e.to_string()), state)).unwrap();
            })
            .unwrap();
        assert_eq!(f.final_len(), Some(size));
        let join = join.expect("a 48 MiB file is hashed on the hashing thread");
        join.join();
        let (r, state) = rx
            .try_recv()
            .expect("the callback ran before join returned");
        assert_eq!(r, Ok(want));
        assert_eq!(state, SpoolState::Complete { size, sha1: want });
        assert_eq!(f.state(), SpoolState::Complete { size, sha1: want });
        drop(f);
        drop(spool);
        let _ = fs::remove_dir_all(&dir);
    }

    /// The hashing thread runs `spool_hash_nice` below the thread that writes (here the test's
    /// thread), and hashes correctly at that priority.
    #[test]
    fn hashing_thread_runs_at_the_lower_priority() {
        use rustix::process::{getpriority_process, Pid};
        let dir = tmp("nice");
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        let errors = Arc::new(AtomicUsize::new(0));
        let e2 = errors.clone();
        let on_error: PriorityError = Box::new(move |_| {
            e2.fetch_add(1, Ordering::Relaxed);
        });
        assert!(spool.set_hash_nice(7, on_error));
        assert!(
            !spool.set_hash_nice(3, Box::new(|_| {})),
            "only the first call counts"
        );
        let me = getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let (mut w, _f) = spool.create("nice").unwrap();
        w.append(b"some bytes").unwrap();
        let t0 = Instant::now();
        let tid = loop {
            if let Some(t) = w.hash_thread_id() {
                break t;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no hashing thread");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_ne!(tid, rustix::thread::gettid().as_raw_nonzero().get());
        let theirs = getpriority_process(Pid::from_raw(tid)).unwrap();
        assert_eq!(
            theirs,
            (me + 7).min(19),
            "the writer's thread is at nice {me}"
        );
        assert_eq!(
            getpriority_process(Some(rustix::thread::gettid())).unwrap(),
            me,
            "the writer's own priority is unchanged"
        );
        let want: [u8; 20] = Sha1::digest(b"some bytes").into();
        assert_eq!(w.finish().unwrap(), want);
        assert_eq!(errors.load(Ordering::Relaxed), 0);
        drop(spool);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Nothing to hash on a thread (an empty file): the callback runs before `finish_then`
    /// returns. A removed file: `Err`, and the callback never runs.
    #[test]
    fn finish_then_inline_and_refused() {
        let dir = tmp("then2");
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        let (w, f) = spool.create("empty").unwrap();
        let (tx, rx) = crossbeam_channel::bounded(2);
        let tx2 = tx.clone();
        assert!(w
            .finish_then(move |r| tx.send(r.is_ok()).unwrap())
            .unwrap()
            .is_none());
        assert_eq!(rx.try_recv(), Ok(true));
        assert!(matches!(f.state(), SpoolState::Complete { size: 0, .. }));
        let (mut w, f2) = spool.create("gone").unwrap();
        w.append(b"abc").unwrap();
        spool.remove(&f2);
        assert!(matches!(
            w.finish_then(move |r| tx2.send(r.is_ok()).unwrap()),
            Err(SpoolError::Removed)
        ));
        assert!(rx.try_recv().is_err(), "the callback must not run");
        assert_eq!(f2.state(), SpoolState::Aborted);
        drop((f, f2, spool));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn appends_index_dash_runs_across_appends() {
        let dir = tmp("dashes");
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        let (mut w, f) = spool.create("d").unwrap();
        let mut ends = vec![99];
        assert!(f.dash_run_ends(0..0, &mut ends));
        assert!(ends.is_empty());
        w.append(b"ab----").unwrap();
        w.append(b"---").unwrap();
        w.append(b"-xyz-------").unwrap();
        // The first run ends at 10; the second is still open at the end of the file.
        assert!(f.dash_run_ends(0..f.len(), &mut ends));
        assert_eq!(ends, [10]);
        w.append(b"q").unwrap();
        assert!(f.dash_run_ends(0..f.len(), &mut ends));
        assert_eq!(ends, [10, 20]);
        assert!(f.dash_run_ends(11..21, &mut ends));
        assert_eq!(ends, [20]);
        w.finish().unwrap();
        drop(f);
        drop(spool);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_file_completes() {
        let dir = tmp("empty");
        let spool = Spool::open(&dir, 100, 100).unwrap();
        let (w, f) = spool.create("e").unwrap();
        let sha = w.finish().unwrap();
        assert_eq!(hex(&sha), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert!(f.is_empty());
        drop(f);
        drop(spool);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn too_large_writes_nothing_beyond_and_unlinks() {
        let dir = tmp("big");
        let spool = Spool::open(&dir, 1000, 10).unwrap();
        let (mut w, f) = spool.create("big").unwrap();
        let path = f.path().to_owned();
        w.append(b"12345678").unwrap();
        let e = w.append(b"abc").unwrap_err();
        assert!(matches!(e, SpoolError::TooLarge { limit: 10 }), "{e}");
        assert_eq!(e.http_status(), 413);
        assert_eq!(f.state(), SpoolState::TooLarge);
        assert_eq!(f.len(), 8);
        assert!(!path.exists());
        assert!(matches!(w.append(b"x"), Err(SpoolError::TooLarge { .. })));
        assert!(matches!(
            w.finish(),
            Err(SpoolError::Closed(SpoolState::TooLarge))
        ));
        // Still counted until the last holder lets go.
        assert_eq!(spool.used_bytes(), 8);
        drop(f);
        assert_eq!(spool.used_bytes(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn exactly_the_limit_is_fine() {
        let dir = tmp("exact");
        let spool = Spool::open(&dir, 10, 10).unwrap();
        let (mut w, f) = spool.create("x").unwrap();
        w.append(&[7u8; 10]).unwrap();
        assert!(w.finish().is_ok());
        assert_eq!(spool.used_bytes(), 10);
        let (mut w2, f2) = spool.create("y").unwrap();
        let e = w2.append(b"z").unwrap_err();
        assert!(
            matches!(
                e,
                SpoolError::QuotaExceeded {
                    limit: 10,
                    in_use: 10
                }
            ),
            "{e}"
        );
        assert_eq!(e.http_status(), 507);
        assert_eq!(f2.state(), SpoolState::QuotaExceeded);
        assert!(!f2.path().exists());
        assert!(f.path().exists());
        drop((f, f2, w2));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn abort_and_drop_states() {
        let dir = tmp("abort");
        let spool = Spool::open(&dir, 100, 100).unwrap();
        let (mut w, f) = spool.create("a").unwrap();
        w.append(b"abc").unwrap();
        w.abort();
        assert_eq!(f.state(), SpoolState::Aborted);
        assert!(f.state().is_failed());
        assert!(!f.path().exists());
        // A reader that already had it still reads.
        let mut b = [0u8; 3];
        assert_eq!(f.read_at(0, &mut b).unwrap(), 3);
        assert_eq!(&b, b"abc");

        let (w, g) = spool.create("b").unwrap();
        drop(w);
        assert_eq!(g.state(), SpoolState::Aborted);
        drop((f, g));
        assert_eq!(spool.used_bytes(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn remove_while_writing_and_after_complete() {
        let dir = tmp("remove");
        let spool = Spool::open(&dir, 100, 100).unwrap();
        let (mut w, f) = spool.create("r").unwrap();
        w.append(b"abc").unwrap();
        spool.remove(&f);
        assert!(f.is_removed());
        assert_eq!(f.state(), SpoolState::Aborted);
        assert!(matches!(w.append(b"d"), Err(SpoolError::Removed)));
        assert!(matches!(w.finish(), Err(SpoolError::Removed)));
        assert!(!f.path().exists());

        let (mut w, g) = spool.create("s").unwrap();
        w.append(b"xyz").unwrap();
        w.finish().unwrap();
        assert_eq!(spool.used_bytes(), 6);
        spool.remove(&g);
        assert!(!g.path().exists());
        // Complete stays complete: deliveries in flight finish.
        assert!(matches!(g.state(), SpoolState::Complete { size: 3, .. }));
        let mut b = [0u8; 3];
        assert_eq!(g.read_at(0, &mut b).unwrap(), 3);
        drop(f);
        assert_eq!(spool.used_bytes(), 3);
        drop(g);
        assert_eq!(spool.used_bytes(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn stale_files_removed_on_open_and_lock() {
        let dir = tmp("stale");
        fs::create_dir_all(dir.join("msrpcast-sub.spool")).unwrap();
        fs::write(dir.join("msrpcast-1-old.spool"), b"old").unwrap();
        fs::write(dir.join("msrpcast-2-old.spool"), b"old").unwrap();
        fs::write(dir.join("keep.txt"), b"keep").unwrap();
        fs::write(dir.join("msrpcast-notspool"), b"keep").unwrap();
        let spool = Spool::open(&dir, 100, 100).unwrap();
        assert_eq!(spool.stale_removed(), 2);
        assert!(!dir.join("msrpcast-1-old.spool").exists());
        assert!(dir.join("keep.txt").exists());
        assert!(dir.join("msrpcast-notspool").exists());
        assert!(dir.join("msrpcast-sub.spool").is_dir());
        // A second engine on the same folder is refused.
        let e = Spool::open(&dir, 100, 100).unwrap_err();
        assert!(matches!(e, SpoolError::Busy { .. }), "{e}");
        let (_w, f) = spool.create("x").unwrap();
        drop(spool);
        // Still locked while a file lives.
        assert!(matches!(
            Spool::open(&dir, 100, 100),
            Err(SpoolError::Busy { .. })
        ));
        drop((_w, f));
        let again = Spool::open(&dir, 100, 100).unwrap();
        assert_eq!(again.stale_removed(), 0);
        drop(again);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn notifications_are_edge_triggered() {
        let dir = tmp("notify");
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        let (mut w, f) = spool.create("n").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let sub = f.subscribe(Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        assert!(sub.is_armed());
        for _ in 0..1000 {
            w.append(&[1u8; 10]).unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call until re-armed");
        sub.arm();
        w.append(b"x").unwrap();
        w.append(b"y").unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A state change reaches an unarmed subscriber too.
        w.finish().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        drop(sub);
        assert!(f.subs.lock().is_empty());
        assert_eq!(f.armed.load(Ordering::SeqCst), 0);
        drop(f);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Returns once a thread is inside `wait_for_more` on `f` (its subscription exists).
    fn waiting(f: &SpoolFile) {
        let t0 = Instant::now();
        while f.subs.lock().is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(10), "nobody waits");
            std::thread::yield_now();
        }
    }

    #[test]
    fn wait_for_more_times_out_and_wakes() {
        let dir = tmp("wait");
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        let (mut w, f) = spool.create("w").unwrap();
        let t0 = Instant::now();
        assert_eq!(
            f.wait_for_more(0, Duration::from_millis(30)),
            (0, SpoolState::Writing)
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
        let f2 = f.clone();
        let h = std::thread::spawn(move || f2.wait_for_more(0, Duration::from_secs(10)));
        waiting(&f);
        w.append(b"abc").unwrap();
        assert_eq!(h.join().unwrap(), (3, SpoolState::Writing));
        let f3 = f.clone();
        let h = std::thread::spawn(move || f3.wait_for_more(3, Duration::from_secs(10)));
        waiting(&f);
        w.abort();
        assert_eq!(h.join().unwrap(), (3, SpoolState::Aborted));
        drop(f);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn error_messages() {
        let e = SpoolError::TooLarge { limit: 5 };
        assert_eq!(
            e.to_string(),
            "file is larger than max_file_bytes (5 bytes)"
        );
        let e = SpoolError::Closed(SpoolState::Aborted);
        assert_eq!(
            e.to_string(),
            "spool file is no longer being written (aborted)"
        );
        let e = SpoolError::io(
            "creating",
            Path::new("/x"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(e.to_string().starts_with("creating /x: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
