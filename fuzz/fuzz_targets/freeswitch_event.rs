//! Fuzzes what `mod_msrpcast` hands the library for each FreeSWITCH conference event
//! (`freeswitch::Bridge::handle`, through `decide`), and the `msrpcast` API command parser.
//! Headers and channel variables come from the members' SIP signalling, so they are hostile: no
//! panic; a join names a non-empty conference and participant and a target that passes
//! `check_target` (so nothing reaches FreeSWITCH's dial string unchecked); the bridge's own
//! bookkeeping only ever holds members it was told to join.
//!
//! Input layout (lossy UTF-8), lines separated by `\n`: the first line holds FreeSWITCH
//! settings `key=value` separated by `;` (`conferences`, `require_optin`, `target_template`,
//! `sofia_profile`); each further line is `Name: value` (a header; `variable_x` names are channel
//! variables); a line `--` ends one event and starts the next one; a line starting with `!` is
//! an API command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msrpcast::freeswitch::api::ApiCommand;
use msrpcast::freeswitch::event::Event;
use msrpcast::freeswitch::settings::{check_target, Settings};
use msrpcast::freeswitch::{Bridge, FsError, Membership};

#[derive(Default)]
struct Record {
    joined: Vec<(String, String)>,
}

impl Membership for Record {
    fn join(&mut self, c: &str, p: &str, t: &str, _: Option<&str>) -> Result<(), FsError> {
        assert!(!c.is_empty() && !p.is_empty(), "join {c:?} {p:?}");
        if let Err(e) = check_target(t) {
            panic!("join with a bad target {t:?}: {e}");
        }
        self.joined.push((c.to_owned(), p.to_owned()));
        Ok(())
    }

    fn leave(&mut self, _: &str, _: &str) -> Result<(), FsError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut settings = Settings::default();
    for kv in lines.next().unwrap_or("").split(';') {
        if let Some((k, v)) = kv.split_once('=') {
            let _ = settings.set(k, v);
        }
    }
    let bridge = Bridge::new(settings);
    let mut rec = Record::default();
    let mut ev = Event::new();
    let mut events = 0;
    for line in lines.chain(std::iter::once("--")) {
        if let Some(cmd) = line.strip_prefix('!') {
            let _ = ApiCommand::parse(cmd);
        } else if line == "--" {
            let _ = bridge.handle(&ev, &mut rec);
            ev = Event::new();
            events += 1;
            if events > 64 {
                break;
            }
        } else if let Some((n, v)) = line.split_once(':') {
            ev.push(n.trim(), v.trim_start());
        }
    }
    for member in bridge.joined() {
        assert!(rec.joined.contains(&member), "{member:?} never joined");
    }
});
