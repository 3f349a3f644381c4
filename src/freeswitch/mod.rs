//! FreeSWITCH: what `mod_msrpcast` (`freeswitch-module/`) decides, kept here so CI can test it.
//!
//! The C module only makes FreeSWITCH API calls. For each `CUSTOM conference::maintenance` event
//! it passes the event's headers, plus the member's channel variables it looked up by
//! `Unique-ID` ([`Settings::channel_variables`]), to [`Bridge::handle`] (through
//! `msrpcast_fs_event`), which decides:
//!
//! - `add-member` → join: conference = `Conference-Name`, participant key = the channel's
//!   `Unique-ID`, target = the `msrpcast` variable's `target=`, else the target template, else the
//!   channel's contact (`sip:` + `sip_contact_uri` [+ `;` + `sip_contact_params`]); display = the
//!   variable's `display=`, else `Caller-Caller-ID-Name`. Only conferences that
//!   [`ConferenceFilter`] lets through, only opted-in calls when `require_optin`, never a call
//!   whose `msrpcast` variable says `off`. A second `add-member` for the same member joins again
//!   (the engine's join is idempotent) and reports [`EventOutcome::AlreadyJoined`].
//! - `del-member` → leave, for a member that was joined.
//! - `conference-destroy` → leave every member joined to that conference.
//! - any other action → ignored.
//!
//! A header the decision needs but the event lacks is [`FsError::MissingHeader`] naming it.

pub mod api;
pub mod cause;
pub mod event;
pub mod settings;

use std::collections::HashMap;
use std::fmt;

use parking_lot::Mutex;

pub use cause::failure_code;
pub use event::Event;
pub use settings::{check_target, ConferenceFilter, OptIn, Settings, Template};

/// The `Event-Subclass` the module binds to.
pub const SUBCLASS: &str = "conference::maintenance";

/// Why an event, a setting or an application argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    /// A header (or, for templates, a header or channel variable) the decision needs is absent
    /// or empty.
    MissingHeader(String),
    /// A header is there but unusable (e.g. a malformed `msrpcast` variable).
    InvalidHeader { name: String, reason: String },
    /// The target formed for a member is not a usable SIP URI.
    InvalidTarget { target: String, reason: String },
    /// A FreeSWITCH-only setting has a bad value.
    InvalidValue { key: String, reason: String },
    /// A line of a plain-format event could not be read.
    Malformed { line: usize, reason: String },
    /// The engine refused a join or leave (`code` is an `msrpcast_result`).
    Engine { code: u32, reason: String },
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::MissingHeader(n) => write!(f, "missing header {n}"),
            FsError::InvalidHeader { name, reason } => write!(f, "invalid header {name}: {reason}"),
            FsError::InvalidTarget { target, reason } => {
                write!(f, "invalid target {target:?}: {reason}")
            }
            FsError::InvalidValue { key, reason } => write!(f, "invalid value for {key}: {reason}"),
            FsError::Malformed { line, reason } => {
                write!(f, "malformed event line {line}: {reason}")
            }
            FsError::Engine { reason, .. } => write!(f, "engine: {reason}"),
        }
    }
}

impl std::error::Error for FsError {}

/// What an event asks for, before it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Join {
        conference: String,
        participant: String,
        target: String,
        display: Option<String>,
    },
    Leave {
        conference: String,
        participant: String,
    },
    EndConference {
        conference: String,
    },
    Ignore {
        reason: String,
    },
}

/// Decides what an event means under `settings` (pure: no state, no engine).
pub fn decide(settings: &Settings, ev: &Event) -> Result<Decision, FsError> {
    if let Some(sub) = ev.header("Event-Subclass") {
        if !sub.eq_ignore_ascii_case(SUBCLASS) {
            return Ok(ignore(format!("event subclass {sub} is not {SUBCLASS}")));
        }
    }
    let action = ev.require("Action")?;
    match action {
        "add-member" => decide_join(settings, ev),
        "del-member" => Ok(Decision::Leave {
            conference: ev.require("Conference-Name")?.to_owned(),
            participant: ev.require("Unique-ID")?.to_owned(),
        }),
        "conference-destroy" => Ok(Decision::EndConference {
            conference: ev.require("Conference-Name")?.to_owned(),
        }),
        other => Ok(ignore(format!("action {other} is not used"))),
    }
}

fn ignore(reason: String) -> Decision {
    Decision::Ignore { reason }
}

fn decide_join(settings: &Settings, ev: &Event) -> Result<Decision, FsError> {
    let conference = ev.require("Conference-Name")?;
    let participant = ev.require("Unique-ID")?;
    if !settings.conferences.matches(conference) {
        return Ok(ignore(format!(
            "conference {conference} is not in the setting conferences"
        )));
    }
    let opt = match ev.var("msrpcast") {
        Some(v) => Some(OptIn::parse(v).map_err(|reason| FsError::InvalidHeader {
            name: "variable_msrpcast".into(),
            reason,
        })?),
        None => None,
    };
    match &opt {
        Some(o) if !o.enabled => {
            return Ok(ignore(format!(
                "member {participant} opted out (msrpcast=off)"
            )))
        }
        None if settings.require_optin => {
            return Ok(ignore(format!(
                "member {participant} did not opt in (require_optin; dialplan application msrpcast)"
            )))
        }
        _ => {}
    }
    let explicit = opt.as_ref().and_then(|o| o.target.clone());
    let target = match (explicit, &settings.target_template) {
        (Some(t), _) => t,
        (None, Some(tpl)) => tpl.render(ev)?,
        (None, None) => contact_target(ev)?,
    };
    check_target(&target).map_err(|reason| FsError::InvalidTarget {
        target: target.clone(),
        reason,
    })?;
    let display = opt
        .and_then(|o| o.display)
        .or_else(|| {
            ev.header("Caller-Caller-ID-Name")
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
        })
        .filter(|d| !d.chars().any(char::is_control));
    Ok(Decision::Join {
        conference: conference.to_owned(),
        participant: participant.to_owned(),
        target,
        display,
    })
}

/// `sip:` + `sip_contact_uri` (which FreeSWITCH keeps as `user@host:port`) + `;` +
/// `sip_contact_params` when there are any.
fn contact_target(ev: &Event) -> Result<String, FsError> {
    let uri = ev
        .var("sip_contact_uri")
        .ok_or_else(|| FsError::MissingHeader("variable_sip_contact_uri".into()))?
        .trim();
    let uri = uri.trim_start_matches('<').trim_end_matches('>');
    // Compared as bytes: the contact is the caller's text and may hold any UTF-8, so slicing
    // the str at a fixed index could split a character.
    let has_scheme = |s: &[u8]| {
        uri.as_bytes()
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    };
    let mut t = if has_scheme(b"sip:") || has_scheme(b"sips:") {
        uri.to_owned()
    } else {
        format!("sip:{uri}")
    };
    if let Some(p) = ev.var("sip_contact_params") {
        let p = p.trim().trim_start_matches(';');
        if !p.is_empty() {
            t.push(';');
            t.push_str(p);
        }
    }
    Ok(t)
}

/// The channel variables every file leg gets: `sip_enable_soa=false`, so that sofia-sip sends
/// the engine's SDP byte for byte (with SOA on it rewrote `o=` and the attribute order), and
/// `sip_route_uri` = `outbound_proxy` when that is set. (`contact` is not applied: the sofia
/// profile makes the Contact.)
pub fn leg_variables(cfg: &crate::config::Config) -> Vec<(String, String)> {
    let mut v = vec![("sip_enable_soa".to_owned(), "false".to_owned())];
    if let Some(p) = &cfg.outbound_proxy {
        v.push(("sip_route_uri".to_owned(), p.clone()));
    }
    v
}

/// Where join and leave decisions go (not the engine's [`crate::roster::Roster`], which records
/// them): the engine handle's Rust methods in `ffi::freeswitch` (what `msrpcast_engine_join` and
/// `_leave` call) or, in tests, a recorder.
pub trait Membership {
    fn join(
        &mut self,
        conference: &str,
        participant: &str,
        target: &str,
        display: Option<&str>,
    ) -> Result<(), FsError>;
    fn leave(&mut self, conference: &str, participant: &str) -> Result<(), FsError>;
}

/// What [`Bridge::handle`] did with an event (in C `msrpcast_fs_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Ignored = 0,
    Joined = 1,
    AlreadyJoined = 2,
    Left = 3,
    ConferenceEnded = 4,
}

/// An outcome and a sentence for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: EventOutcome,
    pub text: String,
}

impl Report {
    fn new(outcome: EventOutcome, text: String) -> Report {
        Report { outcome, text }
    }
}

/// The FreeSWITCH side's state: its settings and who it joined where, so `del-member` and
/// `conference-destroy` leave exactly the members it joined. Thread-safe: FreeSWITCH delivers
/// events from several dispatch threads.
#[derive(Debug, Default)]
pub struct Bridge {
    settings: Settings,
    /// conference → participant → target.
    members: Mutex<HashMap<String, HashMap<String, String>>>,
}

impl Bridge {
    pub fn new(settings: Settings) -> Bridge {
        Bridge {
            settings,
            members: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// For configuration, before any event.
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// Decides and applies one event. The lock is held across the membership calls (they never
    /// block), so the bookkeeping and the engine see events in the same order.
    pub fn handle(&self, ev: &Event, membership: &mut dyn Membership) -> Result<Report, FsError> {
        let decision = decide(&self.settings, ev)?;
        let mut members = self.members.lock();
        match decision {
            Decision::Ignore { reason } => Ok(Report::new(EventOutcome::Ignored, reason)),
            Decision::Join {
                conference,
                participant,
                target,
                display,
            } => {
                membership.join(&conference, &participant, &target, display.as_deref())?;
                let conf = members.entry(conference.clone()).or_default();
                let again = conf.insert(participant.clone(), target.clone()).is_some();
                let d = display.map(|d| format!(" ({d})")).unwrap_or_default();
                Ok(if again {
                    Report::new(
                        EventOutcome::AlreadyJoined,
                        format!("{participant}{d} already in {conference}: joined again, target {target}"),
                    )
                } else {
                    Report::new(
                        EventOutcome::Joined,
                        format!("{participant}{d} joined {conference}, target {target}"),
                    )
                })
            }
            Decision::Leave {
                conference,
                participant,
            } => {
                let known = members
                    .get(&conference)
                    .is_some_and(|c| c.contains_key(&participant));
                if !known {
                    return Ok(Report::new(
                        EventOutcome::Ignored,
                        format!("{participant} left {conference} but was never joined"),
                    ));
                }
                membership.leave(&conference, &participant)?;
                if let Some(c) = members.get_mut(&conference) {
                    c.remove(&participant);
                    if c.is_empty() {
                        members.remove(&conference);
                    }
                }
                Ok(Report::new(
                    EventOutcome::Left,
                    format!("{participant} left {conference}"),
                ))
            }
            Decision::EndConference { conference } => {
                let Some(conf) = members.remove(&conference) else {
                    return Ok(Report::new(
                        EventOutcome::Ignored,
                        format!("conference {conference} ended with no joined members"),
                    ));
                };
                let mut left = 0usize;
                let mut kept = HashMap::new();
                let mut first_err = None;
                for (p, t) in conf {
                    match membership.leave(&conference, &p) {
                        Ok(()) => left += 1,
                        Err(e) => {
                            first_err.get_or_insert(e);
                            kept.insert(p, t);
                        }
                    }
                }
                if let Some(e) = first_err {
                    // Those not left stay known, so a repeated destroy (or their del-member)
                    // can still leave them.
                    members.insert(conference, kept);
                    return Err(e);
                }
                Ok(Report::new(
                    EventOutcome::ConferenceEnded,
                    format!("conference {conference} ended: {left} member(s) left"),
                ))
            }
        }
    }

    /// Members currently joined, as (conference, participant) pairs, sorted.
    pub fn joined(&self) -> Vec<(String, String)> {
        let m = self.members.lock();
        let mut v: Vec<(String, String)> = m
            .iter()
            .flat_map(|(c, ps)| ps.keys().map(move |p| (c.clone(), p.clone())))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        calls: Vec<String>,
        fail: bool,
    }

    impl Membership for Rec {
        fn join(&mut self, c: &str, p: &str, t: &str, d: Option<&str>) -> Result<(), FsError> {
            if self.fail {
                return Err(FsError::Engine {
                    code: 2000,
                    reason: "busy".into(),
                });
            }
            self.calls.push(format!("join {c} {p} {t} {d:?}"));
            Ok(())
        }
        fn leave(&mut self, c: &str, p: &str) -> Result<(), FsError> {
            if self.fail {
                return Err(FsError::Engine {
                    code: 2000,
                    reason: "busy".into(),
                });
            }
            self.calls.push(format!("leave {c} {p}"));
            Ok(())
        }
    }

    fn add(conf: &str, uuid: &str) -> Event {
        let mut e = Event::new();
        e.push("Event-Name", "CUSTOM");
        e.push("Event-Subclass", SUBCLASS);
        e.push("Action", "add-member");
        e.push("Conference-Name", conf);
        e.push("Unique-ID", uuid);
        e.push("Caller-Caller-ID-Name", "Alice");
        e.push_var("sip_contact_uri", "1000@192.0.2.7:5060");
        e
    }

    fn del(conf: &str, uuid: &str) -> Event {
        let mut e = Event::new();
        e.push("Event-Subclass", SUBCLASS);
        e.push("Action", "del-member");
        e.push("Conference-Name", conf);
        e.push("Unique-ID", uuid);
        e
    }

    /// Finding 16 of issue 14: a contact user with a multi-byte character across byte 4 or 5
    /// panicked (str slice inside a char); now it is refused or used, never a panic.
    #[test]
    fn non_ascii_contact_user_does_not_panic() {
        for contact in [
            "abc\u{20ac}x@192.0.2.7",
            "sip\u{e9}x@h",
            "sips\u{20ac}@h",
            "\u{e9}",
            "SIP:\u{e9}@h",
        ] {
            let mut ev = Event::new();
            ev.push("Event-Subclass", SUBCLASS);
            ev.push("Action", "add-member");
            ev.push("Conference-Name", "3000");
            ev.push("Unique-ID", "u1");
            ev.push_var("sip_contact_uri", contact);
            let got = std::panic::catch_unwind(|| decide(&Settings::default(), &ev));
            let got = got.unwrap_or_else(|_| panic!("decide panicked on contact {contact:?}"));
            if let Ok(Decision::Join { target, .. }) = &got {
                assert!(target.to_ascii_lowercase().starts_with("sip:"), "{target}");
            }
        }
    }

    #[test]
    fn join_uses_contact_and_caller_name() {
        let mut ev = add("3000", "u1");
        ev.push_var("sip_contact_params", "transport=tcp");
        assert_eq!(
            decide(&Settings::default(), &ev).unwrap(),
            Decision::Join {
                conference: "3000".into(),
                participant: "u1".into(),
                target: "sip:1000@192.0.2.7:5060;transport=tcp".into(),
                display: Some("Alice".into()),
            }
        );
    }

    #[test]
    fn opt_in_and_overrides() {
        let mut s = Settings::default();
        s.set("require_optin", "true").unwrap();
        let ev = add("3000", "u1");
        assert!(matches!(decide(&s, &ev).unwrap(), Decision::Ignore { .. }));
        let mut ev2 = ev.clone();
        ev2.push_var("msrpcast", "display=Bob target=sip:bob@198.51.100.1");
        match decide(&s, &ev2).unwrap() {
            Decision::Join {
                target, display, ..
            } => {
                assert_eq!(target, "sip:bob@198.51.100.1");
                assert_eq!(display.as_deref(), Some("Bob"));
            }
            d => panic!("{d:?}"),
        }
        let mut off = ev.clone();
        off.push_var("msrpcast", "off");
        assert!(matches!(
            decide(&Settings::default(), &off).unwrap(),
            Decision::Ignore { .. }
        ));
        let mut bad = ev;
        bad.push_var("msrpcast", "colour=red");
        assert!(matches!(
            decide(&Settings::default(), &bad),
            Err(FsError::InvalidHeader { ref name, .. }) if name == "variable_msrpcast"
        ));
    }

    #[test]
    fn bridge_tracks_members() {
        let b = Bridge::new(Settings::default());
        let mut r = Rec::default();
        assert_eq!(
            b.handle(&add("c", "u1"), &mut r).unwrap().outcome,
            EventOutcome::Joined
        );
        assert_eq!(
            b.handle(&add("c", "u1"), &mut r).unwrap().outcome,
            EventOutcome::AlreadyJoined
        );
        assert_eq!(
            b.handle(&add("c", "u2"), &mut r).unwrap().outcome,
            EventOutcome::Joined
        );
        assert_eq!(
            b.handle(&del("c", "u1"), &mut r).unwrap().outcome,
            EventOutcome::Left
        );
        assert_eq!(
            b.handle(&del("c", "u1"), &mut r).unwrap().outcome,
            EventOutcome::Ignored
        );
        let mut destroy = Event::new();
        destroy.push("Action", "conference-destroy");
        destroy.push("Conference-Name", "c");
        assert_eq!(
            b.handle(&destroy, &mut r).unwrap().outcome,
            EventOutcome::ConferenceEnded
        );
        assert!(b.joined().is_empty());
        assert_eq!(r.calls.len(), 5, "{:?}", r.calls);
        assert_eq!(r.calls[4], "leave c u2");
    }

    #[test]
    fn engine_refusal_leaves_no_trace() {
        let b = Bridge::new(Settings::default());
        let mut r = Rec {
            fail: true,
            ..Rec::default()
        };
        assert!(matches!(
            b.handle(&add("c", "u1"), &mut r),
            Err(FsError::Engine { code: 2000, .. })
        ));
        assert!(b.joined().is_empty());
        r.fail = false;
        b.handle(&add("c", "u1"), &mut r).unwrap();
        r.fail = true;
        let mut destroy = Event::new();
        destroy.push("Action", "conference-destroy");
        destroy.push("Conference-Name", "c");
        assert!(b.handle(&destroy, &mut r).is_err());
        assert_eq!(
            b.joined().len(),
            1,
            "a refused leave keeps the member known"
        );
    }
}
