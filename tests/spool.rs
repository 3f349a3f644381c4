//! The spool across threads: a writer and readers that follow the written length, the limits,
//! the quota, and memory that stays bounded for a 1 GiB file.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use msrpcast::runtime::spool::{Spool, SpoolError, SpoolFile, SpoolState};
use sha1::{Digest, Sha1};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("msrpcast-it-{}-{}", std::process::id(), name));
    let _ = fs::remove_dir_all(&d);
    d
}

/// Deterministic test data: piece `i` of `len` bytes (xorshift seeded by `i`).
fn piece(i: u64, buf: &mut [u8]) {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Writes `total` bytes in pieces of varying size (up to `max_piece`), pausing now and then so
/// readers catch up and wait; returns the SHA-1 computed here, independently of the spool.
fn write_all(
    mut w: msrpcast::runtime::spool::SpoolWriter,
    total: u64,
    max_piece: usize,
) -> ([u8; 20], [u8; 20]) {
    let mut h = Sha1::new();
    let mut buf = vec![0u8; max_piece];
    let mut done = 0u64;
    let mut i = 0u64;
    while done < total {
        // Sizes cycle through 1 byte .. max_piece so pieces straddle read boundaries.
        let size = (((i * 7919) % max_piece as u64) + 1).min(total - done) as usize;
        piece(i, &mut buf[..size]);
        w.append(&buf[..size]).unwrap();
        h.update(&buf[..size]);
        done += size as u64;
        i += 1;
        if i.is_multiple_of(64) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let spool_sha = w.finish().unwrap();
    (h.finalize().into(), spool_sha)
}

/// Follows the file until it is final; returns (bytes read, SHA-1 of them, final state, peak
/// VmRSS seen in KiB).
fn follow(f: Arc<SpoolFile>, read_size: usize) -> (u64, [u8; 20], SpoolState, u64) {
    let mut h = Sha1::new();
    let mut buf = vec![0u8; read_size];
    let mut off = 0u64;
    let mut peak = 0;
    let mut next_rss_check = 0u64;
    loop {
        let n = f.read_at(off, &mut buf).unwrap();
        if n > 0 {
            h.update(&buf[..n]);
            off += n as u64;
            if off >= next_rss_check {
                peak = peak.max(vm_rss_kib());
                next_rss_check = off + 64 * MIB;
            }
            continue;
        }
        // Caught up: wait for more or for the end.
        let (len, state) = f.wait_for_more(off, Duration::from_secs(30));
        if len == off && state.is_final() {
            return (off, h.finalize().into(), state, peak.max(vm_rss_kib()));
        }
        assert!(len > off || state.is_final(), "no progress in 30 s");
    }
}

fn vm_rss_kib() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn only_lock_file_left(dir: &std::path::Path) -> bool {
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names == [".msrpcast.lock"]
}

#[test]
fn readers_follow_a_concurrent_writer() {
    let dir = tmp("follow");
    let spool = Spool::open(&dir, 64 * MIB, 64 * MIB).unwrap();
    let (w, f) = spool.create("follow").unwrap();
    let total = 4 * MIB + 12_345;
    let readers: Vec<_> = [13usize, 4096, 10_240, 65_536]
        .into_iter()
        .map(|rs| {
            let f = f.clone();
            thread::spawn(move || follow(f, rs))
        })
        .collect();
    let writer = thread::spawn(move || write_all(w, total, 70_000));
    let (independent, spool_sha) = writer.join().unwrap();
    assert_eq!(independent, spool_sha);
    for r in readers {
        let (n, sha, state, _) = r.join().unwrap();
        assert_eq!(n, total);
        assert_eq!(sha, independent);
        assert_eq!(
            state,
            SpoolState::Complete {
                size: total,
                sha1: independent
            }
        );
    }
    assert_eq!(spool.used_bytes(), total);
    spool.remove(&f);
    drop(f);
    assert_eq!(spool.used_bytes(), 0);
    assert!(only_lock_file_left(&dir));
    drop(spool);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn reader_sees_abort_mid_way() {
    let dir = tmp("abort");
    let spool = Spool::open(&dir, 16 * MIB, 16 * MIB).unwrap();
    let (mut w, f) = spool.create("abort").unwrap();
    let mut buf = vec![0u8; 100_000];
    piece(1, &mut buf);
    w.append(&buf).unwrap();
    // The reader takes every byte, says so, then waits for more: the abort reaches a reader
    // that has caught up (waiting, or just about to).
    let (caught_up, at_end) = std::sync::mpsc::channel();
    let reader = {
        let f = f.clone();
        thread::spawn(move || {
            let mut h = Sha1::new();
            let mut chunk = vec![0u8; 8192];
            let mut off = 0u64;
            while off < 100_000 {
                let n = f.read_at(off, &mut chunk).unwrap();
                h.update(&chunk[..n]);
                off += n as u64;
            }
            caught_up.send(()).unwrap();
            let (len, state) = f.wait_for_more(off, Duration::from_secs(30));
            (len, <[u8; 20]>::from(h.finalize()), state, 0u64)
        })
    };
    at_end.recv_timeout(Duration::from_secs(10)).unwrap();
    w.abort();
    let (n, sha, state, _) = reader.join().unwrap();
    assert_eq!(state, SpoolState::Aborted);
    assert_eq!(n, 100_000);
    assert_eq!(sha, <[u8; 20]>::from(Sha1::digest(&buf)));
    assert!(!f.path().exists());
    drop(f);
    assert_eq!(spool.used_bytes(), 0);
    assert!(only_lock_file_left(&dir));
    drop(spool);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn limits_leave_no_partial_file() {
    let dir = tmp("limits");
    let spool = Spool::open(&dir, MIB, 600 * KIB).unwrap();
    let chunk = vec![9u8; 100 * KIB as usize];

    // Over max_file_bytes: the 7th chunk would pass 600 KiB.
    let (mut w, f) = spool.create("big").unwrap();
    let waiter = {
        let f = f.clone();
        thread::spawn(move || follow(f, 65_536))
    };
    let mut err = None;
    for _ in 0..10 {
        if let Err(e) = w.append(&chunk) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(SpoolError::TooLarge { limit }) if limit == 600 * KIB));
    assert_eq!(f.len(), 600 * KIB);
    let (n, _, state, _) = waiter.join().unwrap();
    assert_eq!((n, state), (600 * KIB, SpoolState::TooLarge));
    drop(w);
    assert_eq!(
        f.state(),
        SpoolState::TooLarge,
        "drop keeps the first reason"
    );
    assert!(only_lock_file_left(&dir));
    drop(f);
    assert_eq!(spool.used_bytes(), 0);

    // Over the quota: two files of 500 KiB fit, the third's bytes do not.
    let mut keep = Vec::new();
    for name in ["a", "b"] {
        let (mut w, f) = spool.create(name).unwrap();
        for _ in 0..5 {
            w.append(&chunk).unwrap();
        }
        w.finish().unwrap();
        keep.push(f);
    }
    assert_eq!(spool.used_bytes(), 1000 * KIB);
    let (mut w, f) = spool.create("c").unwrap();
    w.append(&chunk[..24 * KIB as usize]).unwrap();
    let e = w.append(&chunk).unwrap_err();
    assert!(
        matches!(e, SpoolError::QuotaExceeded { limit, .. } if limit == MIB),
        "{e}"
    );
    assert_eq!(spool.used_bytes(), MIB, "nothing beyond the quota");
    assert_eq!(f.state(), SpoolState::QuotaExceeded);
    assert!(!f.path().exists());
    drop((w, f));
    assert_eq!(spool.used_bytes(), 1000 * KIB);

    // Quota comes back after remove.
    for f in keep.drain(..) {
        spool.remove(&f);
    }
    assert_eq!(spool.used_bytes(), 0);
    assert!(only_lock_file_left(&dir));
    let (mut w, f) = spool.create("d").unwrap();
    for _ in 0..6 {
        w.append(&chunk).unwrap();
    }
    w.finish().unwrap();
    drop(f);
    drop(spool);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn hostile_transfer_ids_stay_in_the_folder() {
    let dir = tmp("names");
    let spool = Spool::open(&dir, MIB, MIB).unwrap();
    let mut files = Vec::new();
    for id in [
        "../../etc/passwd",
        "/abs",
        "a\0b",
        "x\ny",
        "~root",
        "",
        "..",
    ] {
        let (w, f) = spool.create(id).unwrap();
        assert_eq!(f.path().parent(), Some(dir.as_path()), "{id:?}");
        let name = f.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{name}"
        );
        assert!(f.path().exists());
        files.push((w, f));
    }
    drop(files);
    assert!(only_lock_file_left(&dir));
    drop(spool);
    let _ = fs::remove_dir_all(&dir);
}

/// 1 GiB through the spool with a reader following: memory stays bounded. `make test` runs it
/// in release (a few seconds); a debug build takes over 10 s (SHA-1 over 1 GiB three times).
#[test]
fn one_gib_with_bounded_memory() {
    let dir = tmp("gib");
    let spool = Spool::open(&dir, 2 * GIB, 2 * GIB).unwrap();
    let (w, f) = spool.create("gib").unwrap();
    let t0 = Instant::now();
    let reader = {
        let f = f.clone();
        thread::spawn(move || follow(f, 256 * KIB as usize))
    };
    let writer = thread::spawn(move || write_all(w, GIB, 64 * KIB as usize));
    let (independent, spool_sha) = writer.join().unwrap();
    let (n, sha, state, peak_kib) = reader.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "1 GiB through the spool in {secs:.2} s ({:.2} GB/s), peak VmRSS {} KiB",
        GIB as f64 / secs / 1e9,
        peak_kib
    );
    assert_eq!(n, GIB);
    assert_eq!(sha, independent);
    assert_eq!(spool_sha, independent);
    assert!(matches!(state, SpoolState::Complete { size, .. } if size == GIB));
    assert!(peak_kib < 64 * 1024, "VmRSS {peak_kib} KiB");
    spool.remove(&f);
    drop(f);
    assert_eq!(spool.used_bytes(), 0);
    drop(spool);
    let _ = fs::remove_dir_all(&dir);
}

/// The final size is published when the writer finishes, before its SHA-1 is done (deliveries
/// end the message without waiting for the hash); the state follows with the hash.
#[test]
fn final_size_is_known_when_the_last_byte_is_written() {
    let dir = tmp("final");
    let spool = Spool::open(&dir, GIB, GIB).unwrap();
    let (mut w, f) = spool.create("final").unwrap();
    let mut buf = vec![0u8; 64 * KIB as usize];
    for i in 0..16 {
        piece(i, &mut buf);
        w.append(&buf).unwrap();
    }
    assert_eq!(f.final_len(), None, "still being written");
    let sha1 = w.finish().unwrap();
    assert_eq!(f.final_len(), Some(16 * 64 * KIB));
    assert_eq!(
        f.state(),
        SpoolState::Complete {
            size: 16 * 64 * KIB,
            sha1
        }
    );
    drop(f);
    drop(spool);
    let _ = fs::remove_dir_all(&dir);
}
