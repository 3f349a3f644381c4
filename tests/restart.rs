//! A restart loses no file (issue 14): complete files survive a stop and a new start of the
//! engine on the same spool folder and are offered again as participants join; bad records and
//! partial uploads are removed at start, each with a log line naming it; the finished-transfer
//! limits and the end of a conference apply to restored files as to any other.
//!
//! Every engine here talks to 127.0.0.1 only; deadlines are hang guards, not measurements.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use msrpcast::config::Config;
use msrpcast::roster::{DeliveryState, TransferState};
use msrpcast::runtime::log::{Level, Logger};
use msrpcast::runtime::receive::{hex, ReceiveServer, Sink};
use msrpcast::runtime::{Engine, Signal};
use sha1::{Digest, Sha1};

mod common;
use common::{data, upload, wait_joined};

const LIMIT: Duration = Duration::from_secs(30);

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("msrpcast-restart-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An engine on `spool` that logs into a queue the test reads.
fn engine(spool: &Path, sets: &[(&str, &str)]) -> Engine {
    let mut cfg = Config::default();
    cfg.set("spool_dir", spool.to_str().unwrap()).unwrap();
    cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
    cfg.set("io_threads", "1").unwrap();
    for (k, v) in sets {
        cfg.set(k, v).unwrap();
    }
    Engine::start_with_logger(cfg, Logger::queue(Level::Info, 100_000, None)).unwrap()
}

/// Every log message so far.
fn logs(e: &Engine) -> Vec<String> {
    std::iter::from_fn(|| e.logger().pop())
        .map(|r| r.message)
        .collect()
}

fn receiver() -> ReceiveServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    ReceiveServer::start(addr, "rx", Sink::Discard, true, None, 1).unwrap()
}

/// The names in `dir` ending in `suffix`, sorted.
fn names(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < LIMIT, "{what}: not within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The one record in `dir`, as text.
fn record_text(dir: &Path) -> String {
    let r = names(dir, ".record");
    assert_eq!(r.len(), 1, "{r:?}");
    std::fs::read_to_string(dir.join(&r[0])).unwrap()
}

/// A first run on `dir`: participant `a` joins conference `c`, each of `bodies` is uploaded,
/// and the engine stops once every upload has its record.
fn first_run(dir: &Path, bodies: &[&[u8]]) {
    let e = engine(dir, &[]);
    e.join("c", "a", "sip:a@127.0.0.1:5999", None).unwrap();
    wait_joined(&e, "c", 1);
    for body in bodies {
        upload(&e, "c", body);
    }
    wait_until("a record for each upload", || {
        names(dir, ".record").len() == bodies.len()
    });
    e.stop();
}

/// Upload, stop, start again on the same spool: the participant who had the file is not
/// offered it again, a participant joining after the restart gets it intact (SHA-1), and the
/// conference's end removes it and its record.
#[test]
fn a_complete_file_survives_a_restart() {
    let dir = tmpdir("survive");
    let body = data(3 << 20, 7);
    let want = hex(&Sha1::digest(&body));
    {
        let e = engine(&dir, &[]);
        let first = receiver();
        e.join_direct("c", "first", &first.uri.to_string()).unwrap();
        wait_joined(&e, "c", 1);
        let t = upload(&e, "c", &body);
        let got = first.next(LIMIT).expect("first received nothing");
        assert_eq!(got.sha1.as_deref(), Some(want.as_str()));
        wait_until("first's delivery done", || {
            e.roster().transfer(t).unwrap().deliveries[0].state == DeliveryState::Done
        });
        // The record is rewritten (coalesced, per tick) once the delivery is done.
        wait_until("the record names first as delivered", || {
            names(&dir, ".record").len() == 1 && record_text(&dir).contains("\ndelivered first\n")
        });
        e.stop();
    }
    assert_eq!(
        names(&dir, ".spool").len(),
        1,
        "the file stays after a stop"
    );
    let rec = record_text(&dir);
    for line in [
        "conference c\n",
        "name file.bin\n",
        "type application/octet-stream\n",
        &format!("size {}\n", body.len()),
        &format!("sha1 {want}\n"),
        "recipient first\n",
    ] {
        assert!(rec.contains(line), "{line:?} missing from\n{rec}");
    }

    let e = engine(&dir, &[]);
    let again = receiver();
    let late = receiver();
    e.join_direct("c", "first", &again.uri.to_string()).unwrap();
    e.join_direct("c", "late", &late.uri.to_string()).unwrap();
    let got = late.next(LIMIT).expect("the late joiner received nothing");
    assert_eq!(got.failure, None);
    assert_eq!(got.bytes, body.len() as u64);
    assert_eq!(got.sha1.as_deref(), Some(want.as_str()));
    let t = e.roster().transfer_ids()[0];
    let tr = e.roster().transfer(t).unwrap();
    assert_eq!(
        tr.state,
        TransferState::Complete {
            sha1: Sha1::digest(&body).into()
        }
    );
    assert_eq!((tr.name.as_str(), tr.size), ("file.bin", body.len() as u64));
    wait_until("late's delivery done", || {
        e.roster().transfer(t).unwrap().deliveries[0].state == DeliveryState::Done
    });
    let who: Vec<String> = e
        .roster()
        .transfer(t)
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| d.participant)
        .collect();
    assert_eq!(who, ["late"], "first had the file before the restart");
    let log = logs(&e);
    assert!(
        log.iter().any(|m| m.contains("restored from msrpcast-")),
        "{log:#?}"
    );

    // The conference ends: its restored file and the record go.
    e.leave("c", "first").unwrap();
    e.leave("c", "late").unwrap();
    wait_until("spool and record removed at the conference's end", || {
        names(&dir, ".spool").is_empty() && names(&dir, ".record").is_empty()
    });
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `offer_to_late_joiners` off, a restored file goes to those it was offered to before the
/// restart (they join again) and to nobody else.
#[test]
fn restored_files_go_to_their_recipients_when_late_joiners_get_nothing() {
    let dir = tmpdir("recipients");
    {
        let e = engine(&dir, &[]);
        e.join("c", "bob", "sip:bob@127.0.0.1:5999", None).unwrap();
        wait_joined(&e, "c", 1);
        upload(&e, "c", b"hello bob");
        // Offered, never answered: the stop fails it.
        let s = e.signals().recv_timeout(LIMIT).expect("no offer");
        assert!(matches!(s, Signal::Offer { .. }), "{s:?}");
        wait_until("the record", || names(&dir, ".record").len() == 1);
        e.stop();
    }
    let e = engine(&dir, &[("offer_to_late_joiners", "off")]);
    e.join("c", "carol", "sip:carol@127.0.0.1:5998", None)
        .unwrap();
    e.join("c", "bob", "sip:bob@127.0.0.1:5999", None).unwrap();
    match e
        .signals()
        .recv_timeout(LIMIT)
        .expect("no offer after the restart")
    {
        Signal::Offer {
            target_uri, sdp, ..
        } => {
            assert_eq!(target_uri, "sip:bob@127.0.0.1:5999");
            let sha = hex(&Sha1::digest(b"hello bob"));
            let colons: String = sha
                .as_bytes()
                .chunks(2)
                .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
                .collect::<Vec<_>>()
                .join(":");
            assert!(sdp.contains(&colons), "the offer carries the hash: {sdp}");
        }
        other => panic!("{other:?}"),
    }
    let t = e.roster().transfer_ids()[0];
    let who: BTreeSet<String> = e
        .roster()
        .transfer(t)
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| d.participant)
        .collect();
    assert_eq!(who, BTreeSet::from(["bob".to_string()]));
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file sent to chosen participants (issue 13) keeps its recipient list across a restart: its
/// record names them (`to` lines), the restored transfer shows them, and after the restart it
/// is offered to them only — not to the others who join again, nor to a new participant, though
/// late joiners get files here (`offer_to_late_joiners` on).
#[test]
fn a_file_for_chosen_participants_keeps_them_after_a_restart() {
    let dir = tmpdir("chosen");
    {
        let e = engine(&dir, &[]);
        e.join("c", "bob", "sip:bob@127.0.0.1:5999", None).unwrap();
        e.join("c", "carol", "sip:carol@127.0.0.1:5998", None)
            .unwrap();
        wait_joined(&e, "c", 2);
        let mut up = e
            .upload_to(
                "c",
                "for-carol.txt",
                "text/plain",
                Some(9),
                Some(&["carol".into()]),
            )
            .unwrap();
        up.append(b"for carol").unwrap();
        up.finish().unwrap();
        // Offered to carol only, never answered (the stop fails it).
        match e.signals().recv_timeout(LIMIT).expect("no offer") {
            Signal::Offer { target_uri, .. } => assert_eq!(target_uri, "sip:carol@127.0.0.1:5998"),
            other => panic!("{other:?}"),
        }
        wait_until("the record names carol as the one chosen", || {
            names(&dir, ".record").len() == 1 && record_text(&dir).contains("\nto carol\n")
        });
        e.stop();
    }
    let e = engine(&dir, &[]);
    for (k, t) in [
        ("dave", "sip:dave@127.0.0.1:5997"),
        ("bob", "sip:bob@127.0.0.1:5999"),
        ("carol", "sip:carol@127.0.0.1:5998"),
    ] {
        e.join("c", k, t, None).unwrap();
    }
    wait_joined(&e, "c", 3);
    let mut offered = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        if let Ok(Signal::Offer { target_uri, .. }) =
            e.signals().recv_timeout(Duration::from_millis(100))
        {
            offered.push(target_uri);
        }
    }
    assert_eq!(
        offered,
        ["sip:carol@127.0.0.1:5998"],
        "offered after the restart"
    );
    let t = e.roster().transfer_ids()[0];
    let tr = e.roster().transfer(t).unwrap();
    assert_eq!(tr.to, Some(vec!["carol".to_string()]));
    let who: Vec<String> = tr.deliveries.into_iter().map(|d| d.participant).collect();
    assert_eq!(who, ["carol"]);
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a crash leaves: a torn record, a record that is not one, an unfinished record write
/// and a spool file without record (a partial upload). Each is removed at start with a log
/// line naming it; a good record beside them is restored.
#[test]
fn torn_records_and_partial_uploads_are_removed_at_start() {
    let dir = tmpdir("torn");
    first_run(&dir, &[b"one", b"two"]);
    let records = names(&dir, ".record");
    // The first record torn in the middle of a write (as a crash without rename safety would).
    let torn = dir.join(&records[0]);
    let text = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &text[..text.len() / 2]).unwrap();
    // Not a record at all.
    std::fs::write(dir.join("msrpcast-90-x.record"), b"garbage\ncheck 00\n").unwrap();
    // A partial upload and an unfinished record write.
    std::fs::write(dir.join("msrpcast-91-y.spool"), b"partial").unwrap();
    std::fs::write(dir.join("msrpcast-92-z.record.tmp"), b"msrpcast-record 1\n").unwrap();
    let spools = names(&dir, ".spool");
    assert_eq!(spools.len(), 3, "{spools:?}");

    let e = engine(&dir, &[]);
    let log = logs(&e);
    let has = |needle: &str| log.iter().any(|m| m.contains(needle));
    let skipped = |name: &str| {
        log.iter()
            .any(|m| m.contains(name) && m.contains("skipped and removed"))
    };
    assert!(skipped(&records[0]), "{log:#?}");
    assert!(skipped("msrpcast-90-x.record"), "{log:#?}");
    assert!(
        has("spool file msrpcast-91-y.spool of an earlier run removed (no complete record"),
        "{log:#?}"
    );
    assert!(
        has("record msrpcast-92-z.record.tmp: an unfinished record write"),
        "{log:#?}"
    );
    // The torn record's spool file went with it (no complete record); the good one stays.
    assert_eq!(names(&dir, ".record"), vec![records[1].clone()]);
    assert_eq!(
        names(&dir, ".spool"),
        vec![records[1].replace(".record", ".spool")]
    );
    assert!(names(&dir, ".tmp").is_empty());
    e.join("c", "a", "sip:a@127.0.0.1:5999", None).unwrap();
    match e
        .signals()
        .recv_timeout(LIMIT)
        .expect("no offer of the good file")
    {
        Signal::Offer { sdp, .. } => assert!(sdp.contains("size:3"), "{sdp}"),
        other => panic!("{other:?}"),
    }
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spool file changed on disk behind the engine's back is not offered: its SHA-1 no longer
/// matches its record.
#[test]
fn a_spool_file_that_changed_on_disk_is_not_restored() {
    let dir = tmpdir("changed");
    first_run(&dir, &[b"original"]);
    let spool = dir.join(&names(&dir, ".spool")[0]);
    std::fs::write(&spool, b"ORIGINAL").unwrap();
    let e = engine(&dir, &[]);
    wait_until("the changed file removed", || {
        names(&dir, ".spool").is_empty() && names(&dir, ".record").is_empty()
    });
    let log = logs(&e);
    assert!(
        log.iter()
            .any(|m| m.contains("its SHA-1 is") && m.contains("not restored")),
        "{log:#?}"
    );
    assert!(e.roster().transfer_ids().is_empty());
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `max_files_per_conference` and `finished_transfer_ttl_ms` apply to restored files: the
/// oldest beyond the count goes, and all go once older than the age limit.
#[test]
fn finished_transfer_limits_apply_to_restored_files() {
    let dir = tmpdir("limits");
    first_run(&dir, &[b"1", b"22", b"333"]);
    let newest = names(&dir, ".record")
        .into_iter()
        .find(|n| {
            std::fs::read_to_string(dir.join(n))
                .unwrap()
                .contains("\nsize 3\n")
        })
        .unwrap();
    // Waiting for its conference, a restored file still counts against the limits.
    let e = engine(&dir, &[("max_files_per_conference", "1")]);
    wait_until("one file kept", || {
        names(&dir, ".record").len() == 1 && names(&dir, ".spool").len() == 1
    });
    assert_eq!(names(&dir, ".record"), vec![newest.clone()]);
    wait_until("the roster holds the kept file", || {
        e.roster().transfer_ids().len() == 1
    });
    let t = e.roster().transfer_ids()[0];
    assert_eq!(e.roster().transfer(t).unwrap().name, "file.bin");
    assert_eq!(e.roster().transfer(t).unwrap().size, 3);
    e.stop();
    assert_eq!(names(&dir, ".record"), vec![newest]);

    let e = engine(&dir, &[("finished_transfer_ttl_ms", "1")]);
    wait_until("all files aged out", || {
        names(&dir, ".record").is_empty() && names(&dir, ".spool").is_empty()
    });
    assert!(e.roster().transfer_ids().is_empty());
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `spool_persist` off a stop removes every spool file, and a start removes the records an
/// earlier run left.
#[test]
fn without_spool_persist_nothing_survives() {
    let dir = tmpdir("off");
    first_run(&dir, &[b"kept"]);
    let e = engine(&dir, &[("spool_persist", "off")]);
    assert!(names(&dir, ".record").is_empty());
    assert!(names(&dir, ".spool").is_empty());
    e.join("c", "a", "sip:a@127.0.0.1:5999", None).unwrap();
    wait_joined(&e, "c", 1);
    upload(&e, "c", b"not kept");
    e.stop();
    assert!(names(&dir, ".spool").is_empty());
    assert!(names(&dir, ".record").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
