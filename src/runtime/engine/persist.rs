//! Records of complete files, so a restart of the engine (and of its host) loses no file.
//!
//! When an upload completes, the engine writes a small record next to its spool file
//! (`msrpcast-<n>-<id>.record` beside `msrpcast-<n>-<id>.spool`): the conference, the file's
//! name, type, size and SHA-1, the sender URI it was offered from, when it was uploaded and last
//! changed, the participants it was offered to and those who received it, and — for a file sent
//! to chosen participants only — those participants (`to` lines; a record without them, such as
//! one written before they existed, is a file for the whole room). The record is
//! rewritten (coalesced, at most once per engine tick) when that list changes, and removed with
//! the file (conference ended, transfer cancelled, pruned by `finished_transfer_ttl_ms` /
//! `max_finished_transfers` / `max_files_per_conference`).
//!
//! Writes are safe against a crash at any point: the record goes to `<record>.tmp`, is flushed,
//! renamed over the record and the folder is flushed. The last line of a record is the SHA-1 of
//! everything before it: a torn or altered record is detected, logged with its name, and skipped
//! (removed, together with its spool file) — never a crash. The spool file itself is not flushed
//! (an `fdatasync` per upload forced the whole file to the disk while its fan-out was reading
//! it): a process or host-server restart keeps the page cache, and after a power loss the
//! start-up SHA-1 check finds a file whose bytes did not reach the disk and removes it with its
//! record, logged.
//!
//! At start ([`load`], with the spool folder locked) every record is read; the spool keeps the
//! files of the valid ones and removes every other spool file (partial uploads: no complete
//! record), each with a log line. The records' files are then checked against their SHA-1 on the
//! persister thread ([`Persister`]) and handed to the core ([`Cmd::Restore`]), which offers them
//! again to the conference's participants once they join.
//!
//! All record writes, removals and checks run on the one persister thread, in the order the
//! core asked for them (a removal never overtakes the write before it); the core thread never
//! waits for the disk.

use std::collections::{BTreeSet, HashSet};
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Sender};
use sha1::{Digest, Sha1};

use crate::runtime::log::{Level, Logger};
use crate::runtime::spool::{is_spool_name, Spool, SpoolFile, SpoolState};

use super::driver::Cmd;

const MAGIC: &str = "msrpcast-record 1";
const RECORD_SUFFIX: &str = ".record";
const TMP_SUFFIX: &str = ".record.tmp";
/// A record larger than this is not one of ours.
const MAX_RECORD_BYTES: u64 = 16 << 20;

/// What the engine needs to offer a complete file again after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The spool file's name in the spool folder (`msrpcast-<n>-<id>.spool`).
    pub spool: String,
    pub conference: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha1: [u8; 20],
    /// The SIP URI the file was offered from (`sender_uri` when it was uploaded).
    pub sender: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When the transfer last changed (what `finished_transfer_ttl_ms` ages by).
    pub changed_ms: u64,
    /// Participant keys the file was offered to.
    pub recipients: BTreeSet<String>,
    /// Participant keys that received the whole file (never offered it again).
    pub delivered: BTreeSet<String>,
    /// The participants the file was sent to, in the order chosen, when not the whole room.
    pub to: Option<Vec<String>>,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord(pub String);

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(why: impl Into<String>) -> BadRecord {
    BadRecord(why.into())
}

/// Percent-encodes everything but printable ASCII other than `%`, so a value is one word.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn dec(s: &str) -> Result<String, BadRecord> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| bad("bad % escape"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad("bad % escape"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("a value is not UTF-8"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex20(s: &str) -> Result<[u8; 20], BadRecord> {
    if s.len() != 40 {
        return Err(bad("sha1 is not 40 hex digits"));
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| bad("sha1 is not 40 hex digits"))?;
    }
    Ok(out)
}

impl Record {
    /// The record's file name: the spool file's, `.spool` replaced by `.record`.
    pub fn file_name(&self) -> String {
        record_name(&self.spool)
    }

    /// The bytes on disk: one `key value` line each, then `check <sha1 of the lines before>`.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{MAGIC}");
        let _ = writeln!(s, "spool {}", enc(&self.spool));
        let _ = writeln!(s, "conference {}", enc(&self.conference));
        let _ = writeln!(s, "name {}", enc(&self.name));
        let _ = writeln!(s, "type {}", enc(&self.content_type));
        let _ = writeln!(s, "size {}", self.size);
        let _ = writeln!(s, "sha1 {}", hex(&self.sha1));
        let _ = writeln!(s, "sender {}", enc(&self.sender));
        let _ = writeln!(s, "created_ms {}", self.created_ms);
        let _ = writeln!(s, "changed_ms {}", self.changed_ms);
        for r in &self.recipients {
            let _ = writeln!(s, "recipient {}", enc(r));
        }
        for r in &self.delivered {
            let _ = writeln!(s, "delivered {}", enc(r));
        }
        for r in self.to.iter().flatten() {
            let _ = writeln!(s, "to {}", enc(r));
        }
        let check = hex(&Sha1::digest(s.as_bytes()));
        let _ = writeln!(s, "check {check}");
        s
    }

    /// Parses [`Record::encode`]'s output; any deviation (torn, altered, unknown key, missing
    /// field) is an error saying what.
    pub fn decode(text: &str) -> Result<Record, BadRecord> {
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or_else(|| bad("truncated (no check line)"))?;
        let (body, last) = text.split_at(body_end);
        let check = last
            .strip_suffix('\n')
            .and_then(|l| l.strip_prefix("check "))
            .ok_or_else(|| bad("truncated (no check line)"))?;
        if check != hex(&Sha1::digest(body.as_bytes())) {
            return Err(bad("check sum does not match (torn or altered)"));
        }
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad(format!("first line is not {MAGIC:?}")));
        }
        let mut r = Record {
            spool: String::new(),
            conference: String::new(),
            name: String::new(),
            content_type: String::new(),
            size: 0,
            sha1: [0; 20],
            sender: String::new(),
            created_ms: 0,
            changed_ms: 0,
            recipients: BTreeSet::new(),
            delivered: BTreeSet::new(),
            to: None,
        };
        let mut seen = HashSet::new();
        for line in lines {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad(format!("bad {k} {v:?}")));
            let once = matches!(k, "recipient" | "delivered" | "to") || seen.insert(k.to_owned());
            if !once {
                return Err(bad(format!("{k} given twice")));
            }
            match k {
                "spool" => r.spool = dec(v)?,
                "conference" => r.conference = dec(v)?,
                "name" => r.name = dec(v)?,
                "type" => r.content_type = dec(v)?,
                "size" => r.size = num(v)?,
                "sha1" => r.sha1 = unhex20(v)?,
                "sender" => r.sender = dec(v)?,
                "created_ms" => r.created_ms = num(v)?,
                "changed_ms" => r.changed_ms = num(v)?,
                "recipient" => {
                    r.recipients.insert(dec(v)?);
                }
                "delivered" => {
                    r.delivered.insert(dec(v)?);
                }
                "to" => r.to.get_or_insert_with(Vec::new).push(dec(v)?),
                other => return Err(bad(format!("unknown line {other:?}"))),
            }
        }
        for k in ["spool", "conference", "size", "sha1"] {
            if !seen.contains(k) {
                return Err(bad(format!("no {k} line")));
            }
        }
        if !is_spool_name(&r.spool) || r.spool.contains('/') {
            return Err(bad(format!("{:?} is not a spool file name", r.spool)));
        }
        if r.conference.is_empty() {
            return Err(bad("empty conference"));
        }
        Ok(r)
    }
}

/// `msrpcast-<n>-<id>.spool` → `msrpcast-<n>-<id>.record`.
pub fn record_name(spool: &str) -> String {
    format!(
        "{}{RECORD_SUFFIX}",
        spool.strip_suffix(".spool").unwrap_or(spool)
    )
}

/// Writes `rec` safely into `dir`: temp file, `fsync`, rename, `fsync` of the folder.
pub fn write(dir: &Path, rec: &Record) -> io::Result<()> {
    let name = rec.file_name();
    let tmp = dir.join(format!(
        "{}{TMP_SUFFIX}",
        name.trim_end_matches(RECORD_SUFFIX)
    ));
    let dst = dir.join(&name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(rec.encode().as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &dst)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the record of spool file `spool` (absent is fine), then flushes the folder.
pub fn remove(dir: &Path, spool: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(record_name(spool))) {
        Ok(()) => File::open(dir)?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn read_small(path: &Path) -> Result<String, BadRecord> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut s = String::new();
    f.take(MAX_RECORD_BYTES + 1)
        .read_to_string(&mut s)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if s.len() as u64 > MAX_RECORD_BYTES {
        return Err(bad("larger than 16 MiB"));
    }
    Ok(s)
}

/// Reads every record in `dir` (the spool folder, locked by the caller). Leftover temp files
/// and bad records (each logged with its name and what is wrong) are removed; so are records
/// whose spool file is missing. Returns the good ones, oldest first.
pub fn load(dir: &Path, logger: &Logger) -> Vec<Record> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            logger.log(
                Level::Error,
                "engine",
                format_args!(
                    "cannot read the spool folder {} for records: {e}",
                    dir.display()
                ),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<Record> = entries
        .flatten()
        .filter_map(|entry| load_entry(dir, &entry, logger))
        .collect();
    // Oldest first; within one millisecond in upload order (the spool file's number).
    let seq = |r: &Record| -> u64 {
        r.spool
            .trim_start_matches("msrpcast-")
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX)
    };
    out.sort_by_key(|r| (r.created_ms, seq(r), r.spool.clone()));
    out
}

/// One entry of the spool folder: its good record, or `None` (not a record; or a leftover temp
/// file, a bad record or one whose spool file is gone, each removed with a log line).
fn load_entry(dir: &Path, entry: &fs::DirEntry, logger: &Logger) -> Option<Record> {
    let fname = entry.file_name();
    let name = fname.to_str()?;
    if !name.starts_with("msrpcast-") {
        return None;
    }
    let path = entry.path();
    let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
    if name.ends_with(TMP_SUFFIX) {
        if is_file {
            logger.log(
                Level::Warn,
                "engine",
                format_args!(
                    "record {name}: an unfinished record write (the engine stopped while \
                     writing it), removed"
                ),
            );
            let _ = fs::remove_file(&path);
        }
        return None;
    }
    if !name.ends_with(RECORD_SUFFIX) || !is_file {
        return None;
    }
    let parsed = read_small(&path)
        .and_then(|t| Record::decode(&t))
        .and_then(|r| {
            if r.file_name() == name {
                Ok(r)
            } else {
                Err(bad(format!("names spool file {:?}, not its own", r.spool)))
            }
        });
    match parsed {
        Ok(r) if dir.join(&r.spool).is_file() => return Some(r),
        Ok(r) => logger.log(
            Level::Warn,
            "engine",
            format_args!(
                "record {name}: its spool file {} is gone; file {:?} of conference {:?} \
                 cannot be restored, record removed",
                r.spool, r.name, r.conference
            ),
        ),
        Err(e) => logger.log(
            Level::Error,
            "engine",
            format_args!("record {}: {e}; skipped and removed", path.display()),
        ),
    }
    let _ = fs::remove_file(&path);
    None
}

/// What the persister thread does.
pub(super) enum Job {
    /// Flush the file, write (or rewrite) its record, then mark the file kept.
    Write(Box<Record>, Arc<SpoolFile>),
    /// Remove the record of this spool file.
    Remove(String),
    /// A file restored at start: check its SHA-1, then hand it to the core.
    Verify(Box<Record>, Arc<SpoolFile>),
}

/// The persister thread and its queue.
pub(super) struct Persister {
    pub tx: Sender<Job>,
    join: Option<JoinHandle<()>>,
}

impl Persister {
    /// Starts the thread; `core` is where verified restored files go.
    pub fn start(
        dir: PathBuf,
        spool: Arc<Spool>,
        core: Sender<Cmd>,
        logger: Logger,
    ) -> io::Result<Persister> {
        let (tx, rx) = unbounded::<Job>();
        let join = crate::runtime::spawn("msrpcast-persist", move || {
            for job in rx {
                let logger2 = logger.clone();
                crate::runtime::fault::guard(&logger2, "engine", "writing a record", || {
                    run_job(&dir, &spool, &core, &logger, job)
                });
            }
        })?;
        Ok(Persister {
            tx,
            join: Some(join),
        })
    }

    /// Waits until every job queued before is done and the thread ended (the engine stops; the
    /// core's sender must be gone first).
    pub fn finish(mut self) {
        let (tx, _) = unbounded();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn run_job(dir: &Path, spool: &Spool, core: &Sender<Cmd>, logger: &Logger, job: Job) {
    match job {
        Job::Write(rec, file) => {
            if file.is_removed() {
                return;
            }
            let done = write(dir, &rec);
            match done {
                Ok(()) => file.set_kept(true),
                Err(e) => logger.log(
                    Level::Error,
                    "engine",
                    format_args!(
                        "record {}: cannot write it: {e}; file {:?} of conference {:?} will not \
                         survive a restart",
                        rec.file_name(),
                        rec.name,
                        rec.conference
                    ),
                ),
            }
        }
        Job::Remove(spool_name) => {
            if let Err(e) = remove(dir, &spool_name) {
                logger.log(
                    Level::Error,
                    "engine",
                    format_args!("record {}: cannot remove it: {e}", record_name(&spool_name)),
                );
            }
        }
        Job::Verify(rec, file) => match file_sha1(&file) {
            Ok(sha1) if sha1 == rec.sha1 => {
                let _ = core.send(Cmd::Restore { record: rec, file });
            }
            got => {
                let why = match got {
                    Ok(sha1) => format!(
                        "its SHA-1 is {}, the record says {}",
                        hex(&sha1),
                        hex(&rec.sha1)
                    ),
                    Err(e) => format!("cannot read it: {e}"),
                };
                logger.log(
                    Level::Error,
                    "engine",
                    format_args!(
                        "spool file {} (file {:?} of conference {:?}): {why}; not restored, \
                         removed with its record",
                        rec.spool, rec.name, rec.conference
                    ),
                );
                spool.remove(&file);
                let _ = remove(dir, &rec.spool);
            }
        },
    }
}

/// The SHA-1 of a complete spool file, read from the disk.
fn file_sha1(file: &SpoolFile) -> io::Result<[u8; 20]> {
    let len = match file.state() {
        SpoolState::Complete { size, .. } => size,
        s => return Err(io::Error::other(format!("not complete ({})", s.name()))),
    };
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    while at < len {
        let n = file.read_at(at, &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("ends at byte {at} of {len}"),
            ));
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            spool: "msrpcast-3-7.spool".into(),
            conference: "conf 1".into(),
            name: "a\nb €%.txt".into(),
            content_type: "text/plain".into(),
            size: 12,
            sha1: [0xab; 20],
            sender: "sip:msrpcast@example.org".into(),
            created_ms: 1_000,
            changed_ms: 2_000,
            recipients: ["alice".to_string(), "b ob".to_string()].into(),
            delivered: ["alice".to_string()].into(),
            to: None,
        }
    }

    /// A file for chosen participants keeps them, in their order; a record written before
    /// `to` lines existed (none in it) reads as a file for the whole room.
    #[test]
    fn chosen_recipients_round_trip_and_old_records_still_read() {
        let mut r = sample();
        r.to = Some(vec!["zoe".into(), "b ob".into()]);
        let text = r.encode();
        assert!(text.contains("to zoe\nto b%20ob\n"), "{text}");
        assert_eq!(Record::decode(&text), Ok(r));
        // The exact bytes the previous version wrote (no `to` line): the whole room.
        let old = "msrpcast-record 1\nspool msrpcast-3-7.spool\nconference c\nname f\n\
                   type t\nsize 3\nsha1 abababababababababababababababababababab\n\
                   sender sip:s@x\ncreated_ms 1\nchanged_ms 2\nrecipient alice\n";
        let check = hex(&Sha1::digest(old.as_bytes()));
        let back = Record::decode(&format!("{old}check {check}\n")).unwrap();
        assert_eq!(back.to, None);
        assert_eq!(back.recipients, ["alice".to_string()].into());
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let text = r.encode();
        assert!(text.contains("name a%0Ab%20%E2%82%AC%25.txt\n"), "{text}");
        assert_eq!(Record::decode(&text), Ok(r.clone()));
        assert_eq!(r.file_name(), "msrpcast-3-7.record");
    }

    #[test]
    fn torn_and_altered_records_are_refused() {
        let text = sample().encode();
        for cut in [0, 1, 10, text.len() / 2, text.len() - 1] {
            assert!(Record::decode(&text[..cut]).is_err(), "cut at {cut}");
        }
        let altered = text.replace("size 12", "size 13");
        let e = Record::decode(&altered).unwrap_err();
        assert!(e.0.contains("check sum"), "{e}");
        // A consistent record that names a path outside the folder is refused too.
        let mut r = sample();
        r.spool = "../x.spool".into();
        assert!(Record::decode(&r.encode()).is_err());
    }
}
