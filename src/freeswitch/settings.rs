//! The FreeSWITCH-only settings of `msrpcast.conf.xml`, the target template, the argument of the
//! `msrpcast` dialplan application, and the check every SIP target passes.
//!
//! `msrpcast.conf.xml` holds `<param name="…" value="…"/>` lines. [`Settings::set`] takes the
//! FreeSWITCH-only keys ([`FS_KEYS`]) and answers `Ok(false)` for any other key, which then goes to
//! the engine's [`crate::config::Config::set`] — so every engine setting is available with the
//! same name and value syntax as everywhere else.

use super::event::Event;
use super::FsError;
use crate::config::parse_bool;

/// The keys only the FreeSWITCH module has, with their documentation and default.
pub const FS_KEYS: &[(&str, &str)] = &[
    (
        "conferences",
        "Which conferences take part: `all` (default), or a comma-separated list of conference \
         names, where a name ending in `*` matches every name with that prefix.",
    ),
    (
        "require_optin",
        "Only members whose call ran the `msrpcast` dialplan application (or set the channel \
         variable `msrpcast`) take part. Default false.",
    ),
    (
        "target_template",
        "How the SIP target of a member is formed: empty (default) for the channel's contact \
         (`sip:` + sip_contact_uri + `;` + sip_contact_params), or a text with `${Name}` \
         placeholders, each an event header or a channel variable, e.g. \
         `sip:${Caller-Caller-ID-Number}@${sip_network_ip}:${sip_network_port};transport=${sip_via_protocol}`.",
    ),
    (
        "sofia_profile",
        "The sofia profile the file INVITEs leave through. Default internal.",
    ),
];

/// The channel variables the C side looks up (by the member's `Unique-ID`) and passes with an
/// `add-member` event, besides those the target template names.
pub const CHANNEL_VARIABLES: &[&str] = &[
    "msrpcast",
    "sip_contact_uri",
    "sip_contact_params",
    "sip_network_ip",
    "sip_network_port",
    "sip_via_protocol",
];

/// Which conferences take part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ConferenceFilter {
    #[default]
    All,
    /// Exact names, or prefixes (a listed name ending in `*`).
    List(Vec<Pattern>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl ConferenceFilter {
    pub fn parse(v: &str) -> Result<ConferenceFilter, String> {
        let v = v.trim();
        if v.eq_ignore_ascii_case("all") || v == "*" {
            return Ok(ConferenceFilter::All);
        }
        let mut list = Vec::new();
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.strip_suffix('*') {
                Some(p) if p.contains('*') => return Err(format!("{name}: `*` only at the end")),
                Some(p) => list.push(Pattern::Prefix(p.to_owned())),
                None if name.contains('*') => return Err(format!("{name}: `*` only at the end")),
                None => list.push(Pattern::Exact(name.to_owned())),
            }
        }
        if list.is_empty() {
            return Err("`all` or a list of conference names".into());
        }
        Ok(ConferenceFilter::List(list))
    }

    pub fn matches(&self, conference: &str) -> bool {
        match self {
            ConferenceFilter::All => true,
            ConferenceFilter::List(l) => l.iter().any(|p| match p {
                Pattern::Exact(n) => n == conference,
                Pattern::Prefix(p) => conference.starts_with(p.as_str()),
            }),
        }
    }
}

/// A target template: literal text and `${Name}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Name(String),
}

impl Template {
    pub fn parse(v: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = v;
        while let Some(i) = rest.find("${") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_owned()));
            }
            let after = &rest[i + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ at byte {}", v.len() - rest.len() + i))?;
            let name = after[..end].trim();
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '$') {
                return Err(format!("bad placeholder ${{{}}}", &after[..end]));
            }
            parts.push(Part::Name(name.to_owned()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Name(_))) {
            return Err(
                "no ${…} placeholder: a fixed target would send every file to one place".into(),
            );
        }
        Ok(Template { parts })
    }

    /// The names of the placeholders, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Name(n) => Some(n.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills the placeholders: each name is an event header, or else a channel variable
    /// (`variable_<name>`). A name with neither is [`FsError::MissingHeader`].
    pub fn render(&self, ev: &Event) -> Result<String, FsError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Name(n) => {
                    let v = ev
                        .header(n)
                        .filter(|v| !v.trim().is_empty())
                        .or_else(|| ev.var(n))
                        .ok_or_else(|| FsError::MissingHeader(n.clone()))?;
                    out.push_str(v.trim());
                }
            }
        }
        Ok(out)
    }
}

/// The FreeSWITCH-only settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub conferences: ConferenceFilter,
    pub require_optin: bool,
    /// `None`: the channel's contact.
    pub target_template: Option<Template>,
    pub sofia_profile: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            conferences: ConferenceFilter::All,
            require_optin: false,
            target_template: None,
            sofia_profile: "internal".to_owned(),
        }
    }
}

impl Settings {
    /// Sets a FreeSWITCH-only key: `Ok(true)`; `Ok(false)` when `key` is not one (it is then an
    /// engine setting); [`FsError::InvalidValue`] names the key and why.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, FsError> {
        let bad = |reason: String| FsError::InvalidValue {
            key: key.to_owned(),
            reason,
        };
        match key {
            "conferences" => self.conferences = ConferenceFilter::parse(value).map_err(bad)?,
            "require_optin" => self.require_optin = parse_bool(value).map_err(bad)?,
            "target_template" => {
                self.target_template = if value.trim().is_empty() {
                    None
                } else {
                    Some(Template::parse(value.trim()).map_err(bad)?)
                }
            }
            "sofia_profile" => {
                let v = value.trim();
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                {
                    return Err(bad(format!(
                        "a sofia profile name (letters, digits, _ - .), got {value:?}"
                    )));
                }
                self.sofia_profile = v.to_owned();
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The channel variables the C side is to look up for an `add-member`: [`CHANNEL_VARIABLES`]
    /// and the template's placeholders that look like channel variables (not `Header-Names`).
    pub fn channel_variables(&self) -> Vec<String> {
        let mut v: Vec<String> = CHANNEL_VARIABLES.iter().map(|s| (*s).to_owned()).collect();
        if let Some(t) = &self.target_template {
            for n in t.names() {
                if !n.contains('-') && !v.iter().any(|x| x == n) {
                    v.push(n.to_owned());
                }
            }
        }
        v
    }

    /// The destination of `switch_core_session_outgoing_channel` on the `sofia` endpoint:
    /// `<profile>/<target>`. The target is checked again ([`check_target`]).
    pub fn sofia_destination(&self, target: &str) -> Result<String, FsError> {
        check_target(target).map_err(|reason| FsError::InvalidTarget {
            target: target.to_owned(),
            reason,
        })?;
        Ok(format!("{}/{}", self.sofia_profile, target))
    }
}

/// A SIP target must be a `sip:`/`sips:` URI with a host, and contain nothing that FreeSWITCH's
/// dial-string syntax would read as something else: `,` and `|` (several destinations), `^`
/// (mod_sofia's separator of a To URI), `{}`
/// (channel variables), `<>` and quotes, whitespace and control characters. Brackets stay allowed
/// for IPv6 hosts; the `sip:` prefix keeps a `[var=value]` block from leading the string.
pub fn check_target(t: &str) -> Result<(), String> {
    let lower = t.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("sip:") {
        r
    } else if let Some(r) = lower.strip_prefix("sips:") {
        r
    } else {
        return Err("must start with sip: or sips:".into());
    };
    if let Some(c) = t
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || ",|^{}<>\"'".contains(*c))
    {
        return Err(format!("must not contain {c:?}"));
    }
    let hostport = rest.split([';', '?']).next().unwrap_or("");
    let host = hostport.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host".into());
    }
    if t.len() > 1024 {
        return Err("longer than 1024 bytes".into());
    }
    Ok(())
}

/// The argument of the `msrpcast` dialplan application, kept verbatim in the channel variable
/// `msrpcast`: whitespace-separated words, `on`/`true`/`yes` (the default when empty) or
/// `off`/`false`/`no`, `display=<name>` and `target=<sip uri>`; a value with spaces is quoted
/// with `'` or `"`. Example: `display='Alice Smith' target=sip:alice@10.0.0.5;transport=tcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptIn {
    pub enabled: bool,
    pub display: Option<String>,
    pub target: Option<String>,
}

impl OptIn {
    pub fn parse(v: &str) -> Result<OptIn, String> {
        let mut o = OptIn {
            enabled: true,
            display: None,
            target: None,
        };
        for word in split_words(v)? {
            match word.split_once('=') {
                None => match parse_bool(&word) {
                    Ok(b) => o.enabled = b,
                    Err(_) => {
                        return Err(format!(
                            "unknown word {word:?} (on, off, display=, target=)"
                        ))
                    }
                },
                Some(("display", d)) => {
                    if d.chars().any(char::is_control) {
                        return Err("display= must not contain control characters".into());
                    }
                    o.display = Some(d.to_owned()).filter(|d| !d.is_empty());
                }
                Some(("target", t)) => {
                    check_target(t).map_err(|r| format!("target={t}: {r}"))?;
                    o.target = Some(t.to_owned());
                }
                Some((k, _)) => return Err(format!("unknown option {k}= (display=, target=)")),
            }
        }
        Ok(o)
    }
}

/// Splits on whitespace; `'…'` and `"…"` group (the quotes are removed).
fn split_words(v: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in v.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conference_filter() {
        let f = ConferenceFilter::parse("3000, sales-* ,ops").unwrap();
        assert!(f.matches("3000"));
        assert!(!f.matches("30001"));
        assert!(f.matches("sales-east"));
        assert!(f.matches("ops"));
        assert!(!f.matches("dev"));
        assert_eq!(
            ConferenceFilter::parse("ALL").unwrap(),
            ConferenceFilter::All
        );
        assert!(ConferenceFilter::parse(" , ").is_err());
        assert!(ConferenceFilter::parse("a*b").is_err());
        assert!(ConferenceFilter::parse("a**").is_err());
    }

    #[test]
    fn template_renders_headers_then_variables() {
        let t = Template::parse(
            "sip:${Caller-Caller-ID-Number}@${sip_network_ip}:${sip_network_port};transport=${sip_via_protocol}",
        )
        .unwrap();
        let mut ev = Event::new();
        ev.push("Caller-Caller-ID-Number", "1000");
        ev.push_var("sip_network_ip", "192.0.2.7");
        ev.push_var("sip_network_port", "5062");
        ev.push_var("sip_via_protocol", "tcp");
        assert_eq!(
            t.render(&ev).unwrap(),
            "sip:1000@192.0.2.7:5062;transport=tcp"
        );
        let mut partial = Event::new();
        partial.push("Caller-Caller-ID-Number", "1000");
        assert_eq!(
            t.render(&partial),
            Err(FsError::MissingHeader("sip_network_ip".into()))
        );
        assert!(Template::parse("sip:${a").is_err());
        assert!(Template::parse("sip:${}").is_err());
        assert!(Template::parse("sip:fixed@host").is_err());
    }

    #[test]
    fn settings_keys_and_variables() {
        let mut s = Settings::default();
        assert_eq!(s.set("require_optin", "yes"), Ok(true));
        assert!(s.require_optin);
        assert_eq!(s.set("chunk_bytes", "10240"), Ok(false));
        assert!(matches!(
            s.set("require_optin", "maybe"),
            Err(FsError::InvalidValue { ref key, .. }) if key == "require_optin"
        ));
        assert!(s.set("sofia_profile", "in/ternal").is_err());
        assert_eq!(s.set("sofia_profile", "external"), Ok(true));
        s.set(
            "target_template",
            "sip:${Caller-Caller-ID-Number}@${my_host}",
        )
        .unwrap();
        let vars = s.channel_variables();
        assert!(vars.contains(&"my_host".to_owned()));
        assert!(!vars.iter().any(|v| v.contains('-')));
        assert_eq!(
            s.sofia_destination("sip:1000@192.0.2.7:5060").unwrap(),
            "external/sip:1000@192.0.2.7:5060"
        );
        assert!(s.sofia_destination("sip:a@b,sip:c@d").is_err());
        s.set("target_template", "").unwrap();
        assert_eq!(s.target_template, None);
    }

    #[test]
    fn targets_are_checked() {
        assert!(check_target("sip:1000@192.0.2.7:5060;transport=tcp").is_ok());
        assert!(check_target("sips:alice@example.com").is_ok());
        assert!(check_target("sip:[2001:db8::1]:5060").is_ok());
        for bad in [
            "tel:+123",
            "sip:",
            "sip:a@",
            "sip:a@b|sip:c@d",
            "sip:a@b^sip:c@d",
            "sip:a@b c",
            "sip:{x=y}a@b",
            "sip:a@b\r\nX: y",
        ] {
            assert!(check_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn opt_in_words() {
        assert_eq!(
            OptIn::parse("").unwrap(),
            OptIn {
                enabled: true,
                display: None,
                target: None
            }
        );
        assert!(!OptIn::parse("off").unwrap().enabled);
        let o =
            OptIn::parse("display='Alice Smith' target=sip:alice@10.0.0.5;transport=tcp").unwrap();
        assert_eq!(o.display.as_deref(), Some("Alice Smith"));
        assert_eq!(
            o.target.as_deref(),
            Some("sip:alice@10.0.0.5;transport=tcp")
        );
        assert!(OptIn::parse("display='Alice").is_err());
        assert!(OptIn::parse("colour=red").is_err());
        assert!(OptIn::parse("target=http://x").is_err());
        assert!(OptIn::parse("maybe").is_err());
    }
}
