//! mod_msrpcast's decisions with recorded `conference::maintenance` events
//! (`tests/vectors/freeswitch/`, FreeSWITCH's plain event format): joins, leaves, unknown
//! conferences, missing headers, duplicates, opt-in; then the same events through the C ABI
//! (`msrpcast_fs_*`) into a running engine, checked in its status JSON; and the shipped
//! `cfg/freeswitch/msrpcast.conf.xml` applied key by key.

use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use msrpcast::ffi::config::*;
use msrpcast::ffi::engine::*;
use msrpcast::ffi::freeswitch::*;
use msrpcast::ffi::result::*;
use msrpcast::freeswitch::{Bridge, Event, EventOutcome, FsError, Membership, Settings};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vector(name: &str) -> Event {
    let p = root().join("tests/vectors/freeswitch").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Event::parse_plain(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The event as the C side passes it: its headers, then the member's channel variables.
fn with_channel(event: &str, channel: &str) -> Event {
    let mut ev = vector(event);
    for (n, v) in vector(channel).headers() {
        ev.push(n, v);
    }
    ev
}

#[derive(Default)]
struct Recorder(Vec<String>);

impl Membership for Recorder {
    fn join(&mut self, c: &str, p: &str, t: &str, d: Option<&str>) -> Result<(), FsError> {
        self.0
            .push(format!("join {c} {p} {t} {}", d.unwrap_or("-")));
        Ok(())
    }
    fn leave(&mut self, c: &str, p: &str) -> Result<(), FsError> {
        self.0.push(format!("leave {c} {p}"));
        Ok(())
    }
}

const ALICE: &str = "1f0e9a52-6c4e-4bde-a3b1-7a2d8c9e0f11";
const BOB: &str = "2a7b3c44-1d5e-4f60-8b72-9c3d4e5f6a22";
const CAROL: &str = "3c8d4e55-2e6f-4a71-9c83-ad4e5f6a7b33";

#[test]
fn recorded_events_have_the_header_set_of_the_notes() {
    let ev = vector("add-member-alice.txt");
    assert_eq!(ev.len(), 81);
    for h in [
        "Conference-Name",
        "Conference-Domain",
        "Conference-Size",
        "Conference-Unique-ID",
        "Conference-Profile-Name",
        "Member-ID",
        "Member-Type",
        "Unique-ID",
        "Channel-Name",
        "Caller-Caller-ID-Name",
        "Caller-Caller-ID-Number",
        "Caller-Network-Addr",
        "Caller-Destination-Number",
        "Call-Direction",
        "Action",
        "Event-Subclass",
        "Event-Name",
    ] {
        assert!(ev.header(h).is_some(), "{h}");
    }
    assert_eq!(ev.header("Caller-Caller-ID-Name"), Some("Alice Müller"));
    assert_eq!(
        vector("del-member-alice.txt").header("Hangup-Cause"),
        Some("NORMAL_CLEARING")
    );
}

#[test]
fn joins_leaves_duplicates_and_conference_end() {
    let b = Bridge::new(Settings::default());
    let mut r = Recorder::default();
    let alice = with_channel("add-member-alice.txt", "channel-1000.txt");
    let bob = with_channel("add-member-bob.txt", "channel-1001.txt");

    let rep = b.handle(&alice, &mut r).unwrap();
    assert_eq!(rep.outcome, EventOutcome::Joined, "{}", rep.text);
    assert_eq!(
        b.handle(&bob, &mut r).unwrap().outcome,
        EventOutcome::Joined
    );
    // A duplicate add-member is an idempotent join.
    assert_eq!(
        b.handle(&alice, &mut r).unwrap().outcome,
        EventOutcome::AlreadyJoined
    );
    // Other actions are ignored.
    for other in ["start-talking-bob.txt", "conference-create.txt"] {
        assert_eq!(
            b.handle(&vector(other), &mut r).unwrap().outcome,
            EventOutcome::Ignored,
            "{other}"
        );
    }
    assert_eq!(
        b.handle(&vector("del-member-alice.txt"), &mut r)
            .unwrap()
            .outcome,
        EventOutcome::Left
    );
    // A second del-member of the same member does nothing.
    assert_eq!(
        b.handle(&vector("del-member-alice.txt"), &mut r)
            .unwrap()
            .outcome,
        EventOutcome::Ignored
    );
    assert_eq!(b.joined(), vec![("3000".to_owned(), BOB.to_owned())]);
    let end = b.handle(&vector("conference-destroy.txt"), &mut r).unwrap();
    assert_eq!(end.outcome, EventOutcome::ConferenceEnded);
    assert!(end.text.contains("1 member"), "{}", end.text);
    assert!(b.joined().is_empty());

    assert_eq!(
        r.0,
        vec![
            format!("join 3000 {ALICE} sip:1000@127.0.0.1:5071 Alice Müller"),
            format!("join 3000 {BOB} sip:1001@127.0.0.1:5072;transport=tcp Bob"),
            format!("join 3000 {ALICE} sip:1000@127.0.0.1:5071 Alice Müller"),
            format!("leave 3000 {ALICE}"),
            format!("leave 3000 {BOB}"),
        ]
    );
}

#[test]
fn unknown_conferences_and_opt_in() {
    let mut s = Settings::default();
    s.set("conferences", "3000, sales-*").unwrap();
    s.set("require_optin", "true").unwrap();
    let b = Bridge::new(s);
    let mut r = Recorder::default();
    let other = with_channel("add-member-other-conference.txt", "channel-1002.txt");
    let rep = b.handle(&other, &mut r).unwrap();
    assert_eq!(rep.outcome, EventOutcome::Ignored);
    assert!(rep.text.contains("4000"), "{}", rep.text);
    // Bob's channel has no msrpcast variable: not opted in.
    let bob = with_channel("add-member-bob.txt", "channel-1001.txt");
    let rep = b.handle(&bob, &mut r).unwrap();
    assert_eq!(rep.outcome, EventOutcome::Ignored);
    assert!(rep.text.contains("opt in"), "{}", rep.text);
    // Alice's has msrpcast=true.
    let alice = with_channel("add-member-alice.txt", "channel-1000.txt");
    assert_eq!(
        b.handle(&alice, &mut r).unwrap().outcome,
        EventOutcome::Joined
    );
    assert_eq!(r.0.len(), 1);
}

#[test]
fn verbose_events_need_no_lookup() {
    let b = Bridge::new(Settings::default());
    let mut r = Recorder::default();
    let rep = b
        .handle(&vector("add-member-verbose-carol.txt"), &mut r)
        .unwrap();
    assert_eq!(rep.outcome, EventOutcome::Joined);
    assert_eq!(
        r.0,
        vec![format!(
            "join 3000 {CAROL} sip:1002@127.0.0.1:5073 Carol (verbose)"
        )]
    );
}

#[test]
fn target_template_from_network_address() {
    let mut s = Settings::default();
    s.set(
        "target_template",
        "sip:${Caller-Caller-ID-Number}@${sip_network_ip}:${sip_network_port};transport=${sip_via_protocol}",
    )
    .unwrap();
    let b = Bridge::new(s);
    let mut r = Recorder::default();
    b.handle(
        &with_channel("add-member-bob.txt", "channel-1001.txt"),
        &mut r,
    )
    .unwrap();
    assert_eq!(
        r.0,
        vec![format!(
            "join 3000 {BOB} sip:1001@127.0.0.1:5072;transport=tcp Bob"
        )]
    );
    // Without the looked-up variables the template names what is missing.
    let err = b.handle(&vector("add-member-bob.txt"), &mut r).unwrap_err();
    assert_eq!(err, FsError::MissingHeader("sip_network_ip".into()));
}

#[test]
fn missing_headers_are_named() {
    let b = Bridge::new(Settings::default());
    let mut r = Recorder::default();
    let err = b
        .handle(
            &with_channel("add-member-missing-unique-id.txt", "channel-1001.txt"),
            &mut r,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "missing header Unique-ID");
    // No channel looked up and not verbose: no contact.
    let err = b.handle(&vector("add-member-bob.txt"), &mut r).unwrap_err();
    assert_eq!(err.to_string(), "missing header variable_sip_contact_uri");
    let mut no_action = vector("add-member-bob.txt");
    no_action.push("Action", "");
    assert_eq!(
        b.handle(&no_action, &mut r).unwrap_err(),
        FsError::MissingHeader("Action".into())
    );
    assert!(r.0.is_empty());
    assert!(b.joined().is_empty());
}

// --- through the C ABI, into a running engine -----------------------------------------------

struct Pairs {
    // Owns the strings the pairs point into.
    _strings: Vec<(String, String)>,
    pairs: Vec<msrpcast_fs_header>,
}

fn pairs(ev: &Event) -> Pairs {
    let strings: Vec<(String, String)> = ev
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    let pairs = strings
        .iter()
        .map(|(n, v)| msrpcast_fs_header {
            name: n.as_ptr().cast(),
            name_len: n.len(),
            value: v.as_ptr().cast(),
            value_len: v.len(),
        })
        .collect();
    Pairs {
        _strings: strings,
        pairs,
    }
}

fn take_text(p: *mut c_char, n: usize) -> String {
    assert!(!p.is_null());
    // SAFETY: p is a string of n bytes from the library.
    let s = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) };
    let t = String::from_utf8(s.to_vec()).unwrap();
    msrpcast_string_free(p);
    t
}

fn fs_event(
    f: *const msrpcast_fs,
    e: *mut msrpcast_engine,
    ev: &Event,
) -> (msrpcast_result, Option<msrpcast_fs_outcome>, String) {
    let p = pairs(ev);
    let mut outcome = msrpcast_fs_outcome::MSRPCAST_FS_IGNORED;
    let mut out_set = false;
    let (mut t, mut n) = (std::ptr::null_mut(), 0usize);
    let r = msrpcast_fs_event(
        f,
        e,
        p.pairs.as_ptr(),
        p.pairs.len(),
        &mut outcome,
        &mut t,
        &mut n,
    );
    if r == MSRPCAST_OK {
        out_set = true;
    }
    (r, out_set.then_some(outcome), take_text(t, n))
}

fn api(f: *const msrpcast_fs, e: *mut msrpcast_engine, cmd: &str) -> (msrpcast_result, String) {
    let (mut t, mut n) = (std::ptr::null_mut(), 0usize);
    let r = msrpcast_fs_api(f, e, cmd.as_ptr().cast(), cmd.len(), &mut t, &mut n);
    (r, take_text(t, n))
}

fn set(f: *mut msrpcast_fs, c: *mut msrpcast_config, k: &str, v: &str) -> msrpcast_result {
    msrpcast_fs_config_set(f, c, k.as_ptr().cast(), k.len(), v.as_ptr().cast(), v.len())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn events_through_the_c_abi_reach_the_engine() {
    let dir = std::env::temp_dir().join(format!("msrpcast-fs-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = std::ptr::null_mut();
    let mut f = std::ptr::null_mut();
    assert_eq!(msrpcast_config_new(&mut c), MSRPCAST_OK);
    assert_eq!(msrpcast_fs_new(c, &mut f), MSRPCAST_OK);
    let spool = dir.join("spool");
    for (k, v) in [
        ("spool_dir", spool.to_str().unwrap()),
        ("upload_dir", dir.to_str().unwrap()),
        ("msrp_listen", "127.0.0.1:0"),
        ("http_enabled", "no"),
        ("log_level", "warn"),
        ("conferences", "3000"),
        ("outbound_proxy", "sip:proxy.example.com;lr"),
    ] {
        assert_eq!(set(f, c, k, v), MSRPCAST_OK, "{k}");
    }
    // The leg variables: no SOA, the outbound proxy as Route.
    let mut legs = Vec::new();
    for i in 0.. {
        let (mut n, mut nl, mut v, mut vl) = (std::ptr::null(), 0, std::ptr::null(), 0);
        match msrpcast_fs_leg_variable(f, i, &mut n, &mut nl, &mut v, &mut vl) {
            MSRPCAST_OK => {
                // SAFETY: both point to their lengths in bytes owned by f.
                let (n, v) = unsafe {
                    (
                        std::slice::from_raw_parts(n.cast::<u8>(), nl),
                        std::slice::from_raw_parts(v.cast::<u8>(), vl),
                    )
                };
                legs.push(format!(
                    "{}={}",
                    String::from_utf8_lossy(n),
                    String::from_utf8_lossy(v)
                ));
            }
            MSRPCAST_EMPTY => break,
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(
        legs,
        [
            "sip_enable_soa=false",
            "sip_route_uri=sip:proxy.example.com;lr"
        ]
    );

    let mut e = std::ptr::null_mut();
    assert_eq!(msrpcast_engine_start(c, &mut e), MSRPCAST_OK);

    let alice = with_channel("add-member-alice.txt", "channel-1000.txt");
    let bob = with_channel("add-member-bob.txt", "channel-1001.txt");
    let (r, o, text) = fs_event(f, e, &alice);
    assert_eq!(
        (r, o),
        (MSRPCAST_OK, Some(msrpcast_fs_outcome::MSRPCAST_FS_JOINED)),
        "{text}"
    );
    assert!(text.contains(ALICE), "{text}");
    let (r, o, _) = fs_event(f, e, &bob);
    assert_eq!(
        (r, o),
        (MSRPCAST_OK, Some(msrpcast_fs_outcome::MSRPCAST_FS_JOINED))
    );
    let (r, o, _) = fs_event(f, e, &alice);
    assert_eq!(
        (r, o),
        (
            MSRPCAST_OK,
            Some(msrpcast_fs_outcome::MSRPCAST_FS_ALREADY_JOINED)
        )
    );
    let (r, o, text) = fs_event(
        f,
        e,
        &with_channel("add-member-other-conference.txt", "channel-1002.txt"),
    );
    assert_eq!(
        (r, o),
        (MSRPCAST_OK, Some(msrpcast_fs_outcome::MSRPCAST_FS_IGNORED))
    );
    assert!(text.contains("4000"), "{text}");
    let (r, o, text) = fs_event(f, e, &vector("add-member-missing-unique-id.txt"));
    assert_eq!((r, o), (MSRPCAST_ERR_INVALID_VALUE, None));
    assert_eq!(text, "missing header Unique-ID");

    wait_for("two participants in 3000", || {
        let (r, json) = api(f, e, "conferences");
        assert_eq!(r, MSRPCAST_OK, "{json}");
        json.contains(ALICE) && json.contains(BOB)
    });
    let (_, json) = api(f, e, "conferences");
    assert!(
        json.contains("\"target\":\"sip:1001@127.0.0.1:5072;transport=tcp\""),
        "{json}"
    );
    assert!(json.contains("\"display\":\"Alice Müller\""), "{json}");
    assert!(!json.contains(CAROL), "{json}");

    let (r, o, _) = fs_event(f, e, &vector("del-member-alice.txt"));
    assert_eq!(
        (r, o),
        (MSRPCAST_OK, Some(msrpcast_fs_outcome::MSRPCAST_FS_LEFT))
    );
    wait_for("alice gone", || !api(f, e, "conferences").1.contains(ALICE));
    let (r, json) = api(f, e, "members");
    assert_eq!(r, MSRPCAST_OK);
    assert_eq!(
        json,
        format!("{{\"members\":[{{\"conference\":\"3000\",\"participant\":\"{BOB}\"}}]}}")
    );
    let (r, json) = api(f, e, "transfers");
    assert_eq!((r, json.as_str()), (MSRPCAST_OK, "{\"transfers\":[]}"));
    let (r, json) = api(f, e, "cancel 99");
    assert_eq!(r, MSRPCAST_ERR_UNKNOWN_TRANSFER, "{json}");
    assert!(json.starts_with("{\"error\":"), "{json}");
    let (r, _) = api(f, e, "frobnicate");
    assert_eq!(r, MSRPCAST_ERR_INVALID_VALUE);
    // No TLS on: reload_tls says so, with its result code.
    let (r, json) = api(f, e, "reload_tls");
    assert_eq!(r, MSRPCAST_ERR_REFUSED, "{json}");
    assert!(
        json.starts_with("{\"error\":\"reload_tls: no TLS to reload")
            && json.contains("MSRPCAST_ERR_REFUSED"),
        "{json}"
    );
    // Only files inside upload_dir (issue 14 #9).
    let (r, json) = api(f, e, "upload 3000 /etc/hostname");
    assert_eq!(r, MSRPCAST_ERR_FORBIDDEN, "{json}");
    // upload <conference> <path>, then cancel it.
    let file = dir.join("a file.bin");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    let (r, json) = api(f, e, &format!("upload 3000 {}", file.display()));
    assert_eq!(r, MSRPCAST_OK, "{json}");
    let id: u64 = json
        .trim_start_matches("{\"transfer\":")
        .trim_end_matches('}')
        .parse()
        .unwrap_or_else(|_| panic!("{json}"));
    wait_for("the transfer listed", || {
        api(f, e, "transfers").1.contains("\"name\":\"a file.bin\"")
    });
    let (r, json) = api(f, e, &format!("cancel {id}"));
    assert_eq!((r, json), (MSRPCAST_OK, format!("{{\"cancelled\":{id}}}")));
    let (r, _) = api(f, e, "upload 4000 /nonexistent");
    assert_ne!(r, MSRPCAST_OK);
    // The bridge's calls are counted like the C ABI's own: three joins (Alice, Bob, Alice again:
    // the engine's join is idempotent), one leave, the accepted upload and cancel (`cancel 99`
    // was refused).
    let mut stats = msrpcast_stats::default();
    assert_eq!(msrpcast_engine_stats(e, &mut stats), MSRPCAST_OK);
    assert_eq!(
        (stats.joins, stats.leaves, stats.uploads, stats.cancels),
        (3, 1, 1, 1),
        "{stats:?}"
    );

    let (r, o, _) = fs_event(f, e, &vector("conference-destroy.txt"));
    assert_eq!(
        (r, o),
        (
            MSRPCAST_OK,
            Some(msrpcast_fs_outcome::MSRPCAST_FS_CONFERENCE_ENDED)
        )
    );
    wait_for("conference 3000 ended", || {
        !api(f, e, "conferences").1.contains(BOB)
    });

    // After the engine stopped, a join is refused with the engine's code and a text.
    assert_eq!(msrpcast_engine_stop(e), MSRPCAST_OK);
    let (r, o, text) = fs_event(f, e, &bob);
    assert_eq!((r, o), (MSRPCAST_ERR_STOPPED, None));
    assert!(text.contains("MSRPCAST_ERR_STOPPED"), "{text}");

    // NULL arguments.
    let p = pairs(&bob);
    let mut outcome = msrpcast_fs_outcome::MSRPCAST_FS_IGNORED;
    assert_eq!(
        msrpcast_fs_event(
            std::ptr::null(),
            e,
            p.pairs.as_ptr(),
            p.pairs.len(),
            &mut outcome,
            std::ptr::null_mut(),
            std::ptr::null_mut()
        ),
        MSRPCAST_ERR_NULL_ARGUMENT
    );
    let bad = [msrpcast_fs_header {
        name: std::ptr::null(),
        name_len: 3,
        value: std::ptr::null(),
        value_len: 0,
    }];
    assert_eq!(
        msrpcast_fs_event(
            f,
            e,
            bad.as_ptr(),
            1,
            &mut outcome,
            std::ptr::null_mut(),
            std::ptr::null_mut()
        ),
        MSRPCAST_ERR_NULL_ARGUMENT
    );

    msrpcast_engine_free(e);
    msrpcast_fs_free(f);
    msrpcast_config_free(c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `<param name="…" value="…"/>` of an XML file, comments skipped (enough for our own file).
fn params(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("<!--") {
        let (before, after) = rest.split_at(i);
        collect_params(before, &mut out);
        rest = match after.find("-->") {
            Some(j) => &after[j + 3..],
            None => "",
        };
    }
    collect_params(rest, &mut out);
    out
}

fn collect_params(s: &str, out: &mut Vec<(String, String)>) {
    for tag in s.split("<param ").skip(1) {
        let attr = |a: &str| {
            let k = format!("{a}=\"");
            let i = tag.find(&k).unwrap() + k.len();
            tag[i..i + tag[i..].find('"').unwrap()].to_owned()
        };
        out.push((attr("name"), attr("value")));
    }
}

#[test]
fn shipped_config_applies_and_validates() {
    let ps = params(&root().join("cfg/freeswitch/msrpcast.conf.xml"));
    assert!(ps.len() >= 10, "{ps:?}");
    let mut c = std::ptr::null_mut();
    let mut f = std::ptr::null_mut();
    msrpcast_config_new(&mut c);
    msrpcast_fs_new(c, &mut f);
    for (k, v) in &ps {
        assert_eq!(set(f, c, k, v), MSRPCAST_OK, "{k}={v}");
    }
    assert_eq!(msrpcast_config_validate(c), MSRPCAST_OK);
    // The commented-out template must be valid too, when someone enables it.
    let text = std::fs::read_to_string(root().join("cfg/freeswitch/msrpcast.conf.xml")).unwrap();
    let i = text.find("value=\"sip:${").unwrap() + 7;
    let tpl = &text[i..i + text[i..].find('"').unwrap()];
    assert_eq!(set(f, c, "target_template", tpl), MSRPCAST_OK, "{tpl}");
    msrpcast_fs_free(f);
    msrpcast_config_free(c);
}

/// `tests/vectors/freeswitch/recorded/`: every `conference::maintenance` event FreeSWITCH 1.11.1
/// sent (captured over ESL, `event plain`) while two sipp calls joined conf-rec through the
/// dialplan application and hung up. The channel variables are appended as the module appends
/// them after its lookup (the contacts of that run: sip:participant@127.0.0.1:42001 and :42002).
#[test]
fn a_recorded_freeswitch_session() {
    let dir = root().join("tests/vectors/freeswitch/recorded");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 10);
    let b = Bridge::new(Settings::default());
    let mut r = Recorder::default();
    let mut outcomes = Vec::new();
    let mut joins = 0;
    for f in &files {
        let mut ev = Event::parse_plain(&std::fs::read_to_string(f).unwrap()).unwrap();
        if ev.header("Action") == Some("add-member") {
            joins += 1;
            ev.push_var(
                "sip_contact_uri",
                format!("participant@127.0.0.1:4200{joins}"),
            );
            ev.push_var("msrpcast", format!("display=rec{joins}-1@e2e"));
        }
        outcomes.push(b.handle(&ev, &mut r).unwrap().outcome);
    }
    use EventOutcome::*;
    assert_eq!(
        outcomes,
        [Ignored, Joined, Ignored, Joined, Ignored, Left, Ignored, Ignored, Left, Ignored]
    );
    assert_eq!(
        r.0,
        [
            "join conf-rec 3905adba-5175-4d0a-9fbc-abc14779e3ba sip:participant@127.0.0.1:42001 rec1-1@e2e",
            "join conf-rec 481dcfb9-e443-40ec-b84c-59c5f4f899dc sip:participant@127.0.0.1:42002 rec2-1@e2e",
            "leave conf-rec 3905adba-5175-4d0a-9fbc-abc14779e3ba",
            "leave conf-rec 481dcfb9-e443-40ec-b84c-59c5f4f899dc",
        ]
    );
    // The real add-member has the headers the synthesized vectors model, in the same order; the
    // model's calls also have a presence id (Channel-Presence-ID, 81 headers; sipp's 80).
    let real = Event::parse_plain(&std::fs::read_to_string(&files[1]).unwrap()).unwrap();
    let model = vector("add-member-alice.txt");
    let names = |e: &Event| {
        e.headers()
            .map(|(n, _)| n.to_owned())
            .filter(|n| n != "Channel-Presence-ID")
            .collect::<Vec<_>>()
    };
    assert_eq!(real.len(), 80);
    assert_eq!(names(&real), names(&model));
}
