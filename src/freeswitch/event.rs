//! A FreeSWITCH event as the module sees it: an ordered list of header names and values.
//!
//! The C side copies the headers of the `switch_event_t` (`hp->name`, `hp->value`) as pairs and
//! appends the channel variables it looked up, named as FreeSWITCH names them in verbose events
//! (`variable_sip_contact_uri`). Names compare case-insensitively, as `switch_event_get_header`
//! does; when a name occurs twice the last one wins, so a looked-up variable overrides the same
//! variable of a verbose event.
//!
//! [`Event::parse_plain`] reads FreeSWITCH's plain serialization (`switch_event_serialize` with
//! encoding, what ESL's `event plain` delivers): one `Name: value` line per header, values
//! percent-encoded, `_undef_` for an empty value, a blank line at the end. The recorded events in
//! `tests/vectors/freeswitch/` use it.

use std::fmt;

use super::FsError;

/// The prefix FreeSWITCH gives channel variables in an event.
pub const VARIABLE_PREFIX: &str = "variable_";

/// The value `switch_event_serialize` writes for an empty header.
const UNDEF: &str = "_undef_";

/// Header names and values, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    headers: Vec<(String, String)>,
}

impl Event {
    pub fn new() -> Event {
        Event::default()
    }

    /// Appends a header (later headers of the same name win).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }

    /// Appends a channel variable as `variable_<name>`.
    pub fn push_var(&mut self, name: &str, value: impl Into<String>) {
        self.push(format!("{VARIABLE_PREFIX}{name}"), value);
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Every header, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The value of the last header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header that must be there and not empty: otherwise [`FsError::MissingHeader`] naming it.
    pub fn require(&self, name: &str) -> Result<&str, FsError> {
        match self.header(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(FsError::MissingHeader(name.to_owned())),
        }
    }

    /// A non-empty channel variable (`variable_<name>`).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.header(&format!("{VARIABLE_PREFIX}{name}"))
            .filter(|v| !v.trim().is_empty())
    }

    /// Parses the plain serialization (see the module documentation). Lines end in `\n` (a `\r`
    /// before it is ignored); parsing stops at the first blank line (a body, as announced by
    /// `Content-Length`, is not part of the headers). A line without `": "` or a bad
    /// percent-escape is [`FsError::Malformed`] with the line number.
    pub fn parse_plain(text: &str) -> Result<Event, FsError> {
        let mut ev = Event::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(": ") else {
                return Err(FsError::Malformed {
                    line: i + 1,
                    reason: "no \": \" between name and value".into(),
                });
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(FsError::Malformed {
                    line: i + 1,
                    reason: format!("bad header name {name:?}"),
                });
            }
            let value = if value == UNDEF {
                String::new()
            } else {
                percent_decode(value).map_err(|reason| FsError::Malformed {
                    line: i + 1,
                    reason,
                })?
            };
            ev.push(name, value);
        }
        Ok(ev)
    }
}

impl fmt::Display for Event {
    /// The plain serialization, values percent-encoded as `switch_url_encode` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.headers {
            if v.is_empty() {
                writeln!(f, "{n}: {UNDEF}")?;
            } else {
                writeln!(f, "{n}: {}", percent_encode(v))?;
            }
        }
        writeln!(f)
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "value is not UTF-8 once decoded".to_owned())
}

/// Encodes what `switch_url_encode` encodes: bytes outside printable ASCII, `%` and FreeSWITCH's
/// unsafe set (space, `"`, `#`, `%`, `&`, `+`, `:`, `;`, `<`, `=`, `>`, `?`, `@`, `[`, `\`, `]`,
/// `^`, `` ` ``, `{`, `|`, `}`). Unlike FreeSWITCH it also encodes `%` itself, so a decode
/// always gives the original back.
fn percent_encode(s: &str) -> String {
    const UNSAFE: &[u8] = b"\r\n \"#%&+:;<=>?@[\\]^`{|}";
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if !(b' '..=b'~').contains(&c) || UNSAFE.contains(&c) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_format_round_trips() {
        let text = "Event-Name: CUSTOM\nCaller-Caller-ID-Name: Alice%20M%C3%BCller\n\
                    Hangup-Cause: _undef_\nChannel-Name: sofia/internal/1000%40127.0.0.1\n\n\
                    Content-Length: 3\n\nabc";
        let ev = Event::parse_plain(text).unwrap();
        assert_eq!(ev.len(), 4);
        assert_eq!(ev.header("caller-caller-id-name"), Some("Alice Müller"));
        assert_eq!(ev.header("Hangup-Cause"), Some(""));
        assert_eq!(
            ev.header("Channel-Name"),
            Some("sofia/internal/1000@127.0.0.1")
        );
        let again = Event::parse_plain(&ev.to_string()).unwrap();
        assert_eq!(again, ev);
    }

    #[test]
    fn last_header_wins_and_require_names_the_header() {
        let mut ev = Event::new();
        ev.push("variable_sip_contact_uri", "old@1.2.3.4");
        ev.push_var("sip_contact_uri", "new@1.2.3.4");
        ev.push("Empty", "  ");
        assert_eq!(ev.var("sip_contact_uri"), Some("new@1.2.3.4"));
        assert_eq!(
            ev.require("Empty"),
            Err(FsError::MissingHeader("Empty".into()))
        );
        let e = ev.require("Unique-ID").unwrap_err();
        assert!(e.to_string().contains("Unique-ID"), "{e}");
    }

    #[test]
    fn malformed_lines_are_errors_with_the_line() {
        assert!(matches!(
            Event::parse_plain("A: b\nno separator\n"),
            Err(FsError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            Event::parse_plain("A: %zz\n"),
            Err(FsError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            Event::parse_plain("A: %ff\n"),
            Err(FsError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            Event::parse_plain("A: %4\n"),
            Err(FsError::Malformed { line: 1, .. })
        ));
    }
}
