//! The RFC 5547 `a=file-selector` attribute (§6):
//!
//! ```text
//! file-selector-attr = "file-selector" [":" selector *(SP selector)]
//! selector           = filename-selector / filesize-selector / filetype-selector / hash-selector
//! filename-selector  = "name:" DQUOTE filename-string DQUOTE
//! filename-string    = 1*(filename-char / percent-encoded)
//! filename-char      = %x01-09 / %x0B-0C / %x0E-21 / %x23-24 / %x26-FF
//!                      ; any byte except NUL, CR, LF, double quotes, or percent
//! percent-encoded    = "%" HEXDIG HEXDIG
//! filetype-selector  = "type:" type "/" subtype *(";" ft-parameter)
//! hash-selector      = "hash:" hash-algorithm ":" hash-value   ; sha-1, 2HEXDIG *(":" 2HEXDIG)
//! ```
//!
//! File names come from uploaders and are untrusted. [`escape_file_name`] percent-encodes the five
//! bytes the ABNF forbids (NUL, CR, LF, `"`, `%`) and, beyond what it requires, every other
//! control character (C0 and DEL), so no receiver sees a raw control byte. Non-ASCII UTF-8 stays
//! literal: `%x80-FF` is in `filename-char`, and RFC 5547 names are UTF-8. Since `"` never
//! appears unescaped, the closing quote is unambiguous.

use super::SdpError;

/// Percent-encodes `name` into an RFC 5547 `filename-string` (without the surrounding quotes).
/// Never fails; an empty name yields an empty string (callers should substitute a name, since
/// the ABNF needs at least one character).
pub fn escape_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        let code = c as u32;
        if code < 0x20 || code == 0x7f || c == '"' || c == '%' {
            // `code` < 0x80, so it is one byte.
            out.push('%');
            out.push(hex_upper(code >> 4));
            out.push(hex_upper(code & 15));
        } else {
            out.push(c);
        }
    }
    out
}

fn hex_upper(v: u32) -> char {
    char::from(b"0123456789ABCDEF"[(v & 15) as usize])
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes an RFC 5547 `filename-string` (the text between the quotes). Refuses bytes the ABNF
/// forbids (NUL, CR, LF, `"`), a `%` not followed by two hex digits, and a result that is not
/// UTF-8.
pub fn unescape_file_name(s: &str) -> Result<String, SdpError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_val);
                let lo = b.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => {
                        return Err(SdpError::BadFileName {
                            reason: "'%' not followed by two hex digits",
                        })
                    }
                }
                i += 3;
            }
            0 | b'\r' | b'\n' => {
                return Err(SdpError::BadFileName {
                    reason: "raw NUL, CR or LF",
                })
            }
            b'"' => {
                return Err(SdpError::BadFileName {
                    reason: "unescaped double quote",
                })
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| SdpError::BadFileName {
        reason: "not UTF-8 once decoded",
    })
}

/// RFC 2045 token character (any CHAR except SPACE, CTLs and tspecials).
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// The `type/subtype` to put in `type:` for an untrusted media type: lower-cased, parameters
/// dropped, `application/octet-stream` when it is not two RFC 2045 tokens.
pub fn selector_type(content_type: &str) -> String {
    let main = content_type.split(';').next().unwrap_or("").trim();
    let ok = main.split_once('/').is_some_and(|(t, s)| {
        !t.is_empty() && !s.is_empty() && t.bytes().chain(s.bytes()).all(is_token_char)
    });
    if ok {
        main.to_ascii_lowercase()
    } else {
        "application/octet-stream".to_owned()
    }
}

/// `sha-1` hash value: upper-case hex bytes separated by colons.
pub fn format_sha1(h: &[u8; 20]) -> String {
    let mut s = String::with_capacity(59);
    for (i, b) in h.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(hex_upper(u32::from(b >> 4)));
        s.push(hex_upper(u32::from(b & 15)));
    }
    s
}

/// A parsed `a=file-selector` value. Unknown selectors and hash algorithms are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileSelector {
    pub name: Option<String>,
    /// `type/subtype` with any parameters, verbatim.
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub sha1: Option<[u8; 20]>,
}

impl FileSelector {
    /// Parses the value after `a=file-selector:`.
    pub fn parse(value: &str) -> Result<FileSelector, SdpError> {
        let err = |reason| SdpError::BadFileSelector { reason };
        let mut sel = FileSelector::default();
        let mut rest = value.trim_start_matches([' ', '\t']);
        while !rest.is_empty() {
            let (key, after) = rest.split_once(':').ok_or(err("selector without ':'"))?;
            if key.is_empty() || !key.bytes().all(is_token_char) {
                return Err(err("bad selector name"));
            }
            let value_end = if key.eq_ignore_ascii_case("name") {
                let inner = after
                    .strip_prefix('"')
                    .ok_or(err("name not in double quotes"))?;
                let close = inner.find('"').ok_or(err("unterminated name"))?;
                sel.name = Some(unescape_file_name(&inner[..close])?);
                // Both quotes are one byte.
                close + 2
            } else {
                let end = value_end_outside_quotes(after).ok_or(err("unterminated quote"))?;
                let v = &after[..end];
                if key.eq_ignore_ascii_case("type") {
                    sel.content_type = Some(v.to_owned());
                } else if key.eq_ignore_ascii_case("size") {
                    sel.size = Some(v.parse().map_err(|_| err("size not a number"))?);
                } else if key.eq_ignore_ascii_case("hash") {
                    let (alg, hex) = v.split_once(':').ok_or(err("hash without algorithm"))?;
                    if alg.eq_ignore_ascii_case("sha-1") {
                        sel.sha1 = Some(parse_sha1(hex).ok_or(err("malformed sha-1 value"))?);
                    }
                }
                end
            };
            rest = &after[value_end..];
            if !rest.is_empty() {
                let trimmed = rest.trim_start_matches([' ', '\t']);
                if trimmed.len() == rest.len() {
                    return Err(err("selectors not separated by a space"));
                }
                rest = trimmed;
            }
        }
        Ok(sel)
    }
}

/// Index of the first space or tab outside double quotes, or the length; `None` when a quote is
/// left open.
fn value_end_outside_quotes(s: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => return Some(i),
            _ => {}
        }
    }
    (!quoted).then_some(s.len())
}

fn parse_sha1(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut parts = s.split(':');
    for o in &mut out {
        let p = parts.next()?.as_bytes();
        if p.len() != 2 {
            return None;
        }
        *o = hex_val(p[0])? << 4 | hex_val(p[1])?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every byte of an escaped name must be a `filename-char` or part of `percent-encoded`.
    fn assert_abnf(escaped: &str) {
        let b = escaped.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    assert!(
                        b.len() > i + 2
                            && b[i + 1].is_ascii_hexdigit()
                            && b[i + 2].is_ascii_hexdigit(),
                        "{escaped:?}"
                    );
                    i += 3;
                }
                0x01..=0x09 | 0x0b..=0x0c | 0x0e..=0x21 | 0x23..=0x24 | 0x26..=0xff => i += 1,
                other => panic!("byte {other:#x} not allowed in {escaped:?}"),
            }
        }
    }

    #[test]
    fn nasty_names() {
        let cases = [
            ("plain.txt", "plain.txt"),
            ("with space.pdf", "with space.pdf"),
            ("quote\".txt", "quote%22.txt"),
            ("100%.txt", "100%25.txt"),
            ("cr\rlf\n.txt", "cr%0Dlf%0A.txt"),
            ("nul\0.txt", "nul%00.txt"),
            ("tab\tbell\u{7}del\u{7f}", "tab%09bell%07del%7F"),
            ("Grüße 文件 😀.txt", "Grüße 文件 😀.txt"),
            ("%22\"", "%2522%22"),
            ("\" size:1 hash:sha-1:00", "%22 size:1 hash:sha-1:00"),
        ];
        for (name, want) in cases {
            let e = escape_file_name(name);
            assert_eq!(e, want, "{name:?}");
            assert_abnf(&e);
            assert!(!e.contains(['"', '\r', '\n', '\0']));
            assert_eq!(unescape_file_name(&e).as_deref(), Ok(name));
        }
    }

    #[test]
    fn unescape_refusals() {
        for bad in [
            "a%", "a%2", "a%zz", "a\"b", "a\rb", "a\nb", "a\0b", "%FF%FE",
        ] {
            assert!(
                matches!(unescape_file_name(bad), Err(SdpError::BadFileName { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(unescape_file_name("%c3%A9").as_deref(), Ok("é"));
    }

    #[test]
    fn selector_types() {
        assert_eq!(selector_type("image/JPEG"), "image/jpeg");
        assert_eq!(selector_type("text/plain; charset=utf-8"), "text/plain");
        assert_eq!(selector_type(""), "application/octet-stream");
        assert_eq!(selector_type("text"), "application/octet-stream");
        assert_eq!(selector_type("text/pl ain"), "application/octet-stream");
        assert_eq!(
            selector_type("text/x\r\na=evil"),
            "application/octet-stream"
        );
        assert_eq!(selector_type("a\"b/c"), "application/octet-stream");
    }

    #[test]
    fn parse_selector() {
        let mut h = [0u8; 20];
        h[0] = 0x12;
        h[19] = 0xef;
        let v = format!(
            "name:\"my %22file%22 x.txt\" type:text/plain;charset=\"a b\" size:1234 hash:sha-1:{}",
            format_sha1(&h)
        );
        let s = FileSelector::parse(&v).unwrap();
        assert_eq!(s.name.as_deref(), Some("my \"file\" x.txt"));
        assert_eq!(
            s.content_type.as_deref(),
            Some("text/plain;charset=\"a b\"")
        );
        assert_eq!(s.size, Some(1234));
        assert_eq!(s.sha1, Some(h));
        assert_eq!(FileSelector::parse("").unwrap(), FileSelector::default());
        // Unknown selectors and algorithms are skipped.
        let s = FileSelector::parse("foo:bar hash:sha-256:AA size:1").unwrap();
        assert_eq!((s.size, s.sha1), (Some(1), None));
        for bad in [
            "name:x",
            "name:\"x",
            "size:abc",
            "hash:sha-1:12",
            "name:\"a\"size:1",
            "type:\"x",
            "nocolon",
        ] {
            assert!(FileSelector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sha1_format() {
        let h: [u8; 20] = core::array::from_fn(|i| (i * 13) as u8);
        let s = format_sha1(&h);
        assert_eq!(s.len(), 59);
        assert!(s.starts_with("00:0D:1A:27"));
        assert_eq!(parse_sha1(&s), Some(h));
        assert_eq!(parse_sha1(&s.to_lowercase()), Some(h));
    }

    proptest! {
        #[test]
        fn escape_round_trips(name in any::<String>()) {
            let e = escape_file_name(&name);
            assert_abnf(&e);
            prop_assert_eq!(unescape_file_name(&e), Ok(name.clone()));
            let sel = FileSelector::parse(&format!("name:\"{e}\" size:5")).unwrap();
            prop_assert_eq!(sel.name, Some(name));
            prop_assert_eq!(sel.size, Some(5));
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = FileSelector::parse(&s);
            let _ = unescape_file_name(&s);
        }
    }
}
