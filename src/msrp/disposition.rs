//! The file name of a message in its `Content-Disposition` MIME header (RFC 4975 §7.1 lets a
//! SEND carry one before its `Content-Type`; the parameters are RFC 6266's).
//!
//! The sender writes `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>`:
//! the value is plain ASCII whatever the name holds, so an uploaded name can never break the
//! header (no CR, LF or quote reaches the wire). A receiver prefers `filename*`, then `filename`,
//! and must still treat the result as hostile: [`safe_file_name`] makes it one path component.

use std::fmt::Write;

/// Longest name [`safe_file_name`] keeps, in bytes (common file systems' NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// The `Content-Disposition` value announcing `name`.
pub fn attachment(name: &str) -> String {
    let mut out = String::with_capacity(32 + 4 * name.len());
    out.push_str("attachment; filename=\"");
    for c in name.chars() {
        // The fallback: printable ASCII except the quoted-string's specials.
        if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out.push_str("\"; filename*=UTF-8''");
    for &b in name.as_bytes() {
        // RFC 5987 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The file name in a `Content-Disposition` value: `filename*` (UTF-8 or ISO-8859-1
/// ext-value) when present and decodable, else `filename` (token or quoted-string). Not yet
/// safe as a path: see [`safe_file_name`].
pub fn file_name(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?;
    let mut plain = None;
    let mut extended = None;
    // Parameters after the disposition type; quoted strings may hold ';'.
    for (name, v) in params(value) {
        if name.eq_ignore_ascii_case("filename*") {
            extended = extended.or_else(|| decode_ext_value(&v));
        } else if name.eq_ignore_ascii_case("filename") {
            plain = plain.or(Some(v));
        }
    }
    extended.or(plain).filter(|n| !n.is_empty())
}

/// `name=value` pairs after the first `;`, values unquoted.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = match s.split_once(';') {
        Some((_, r)) => r,
        None => return out,
    };
    // Bounded: each pass consumes at least one byte.
    while !rest.is_empty() {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            v.push(e);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &q[end.min(q.len())..];
            rest = rest.split_once(';').map_or("", |(_, r)| r);
        } else {
            let (v, r) = rest.split_once(';').unwrap_or((rest, ""));
            value = v.trim().to_string();
            rest = r;
        }
        out.push((name, value));
    }
    out
}

/// RFC 5987 `charset'lang'pct-encoded`.
fn decode_ext_value(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next()?;
    let _lang = parts.next()?;
    let enc = parts.next()?;
    let mut bytes = Vec::with_capacity(enc.len());
    let mut it = enc.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hi = (it.next()? as char).to_digit(16)?;
            let lo = (it.next()? as char).to_digit(16)?;
            bytes.push((hi * 16 + lo) as u8);
        } else {
            bytes.push(b);
        }
    }
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.iter().map(|&b| b as char).collect())
    } else {
        None
    }
}

/// `name` as one harmless path component, or `None` when nothing usable is left: only the part
/// after the last `/` or `\`; control characters dropped; leading dots and spaces removed (no
/// hidden files, no `.` or `..`); at most [`MAX_NAME_BYTES`] bytes, cut at a character boundary
/// and keeping the extension when it is short.
pub fn safe_file_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim_start_matches(['.', ' ']).trim_end();
    if cleaned.is_empty() {
        return None;
    }
    if cleaned.len() <= MAX_NAME_BYTES {
        return Some(cleaned.to_string());
    }
    let ext = match cleaned.rfind('.') {
        Some(i) if cleaned.len() - i <= 16 => &cleaned[i..],
        _ => "",
    };
    let mut cut = MAX_NAME_BYTES - ext.len();
    while !cleaned.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(format!("{}{ext}", &cleaned[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_round_trips_and_stays_ascii() {
        for name in [
            "report.pdf",
            "a \"quoted\" name.txt",
            "Grüße – 2026.odt",
            "line\r\nInjected: yes",
            "back\\slash;semi=colon",
            "日本語.txt",
        ] {
            let v = attachment(name);
            assert!(v.is_ascii(), "{v}");
            assert!(!v.contains('\r') && !v.contains('\n'), "{v}");
            assert_eq!(file_name(v.as_bytes()).as_deref(), Some(name), "{v}");
        }
    }

    #[test]
    fn parses_what_other_senders_write() {
        assert_eq!(
            file_name(b"attachment; filename=report.pdf").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(
            file_name(b"attachment; filename=\"a;b \\\"c\\\".txt\"; size=3").as_deref(),
            Some("a;b \"c\".txt")
        );
        assert_eq!(
            file_name(b"render; FILENAME*=iso-8859-1'en'%E9t%E9.txt").as_deref(),
            Some("été.txt")
        );
        // A broken filename* falls back to filename.
        assert_eq!(
            file_name(b"attachment; filename*=UTF-8''%ZZ; filename=x.bin").as_deref(),
            Some("x.bin")
        );
        assert_eq!(file_name(b"attachment"), None);
        assert_eq!(file_name(b"attachment; filename=\"\""), None);
        assert_eq!(
            file_name(b"inline; filename=\"unterminated"),
            Some("unterminated".into())
        );
    }

    #[test]
    fn safe_names_are_one_component() {
        assert_eq!(
            safe_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            safe_file_name("C:\\x\\..\\evil.exe").as_deref(),
            Some("evil.exe")
        );
        assert_eq!(safe_file_name("..").as_deref(), None);
        assert_eq!(safe_file_name("/").as_deref(), None);
        assert_eq!(safe_file_name(" .hidden").as_deref(), Some("hidden"));
        assert_eq!(safe_file_name("a\u{0}b\u{7}c\nd").as_deref(), Some("abcd"));
        let long = format!("{}.tar.gz", "ü".repeat(300));
        let s = safe_file_name(&long).unwrap();
        assert!(s.len() <= MAX_NAME_BYTES && s.ends_with(".gz"), "{s}");
    }
}
