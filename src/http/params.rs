//! Header parameters (`type; name=value; name="quoted"`), Content-Disposition with RFC 6266 /
//! RFC 8187 `filename*=UTF-8''...`, the multipart boundary, percent-decoding, form-urlencoded
//! bodies and cookies. All pure functions over strings.

use super::HttpError;

/// Longest file name accepted (in bytes, after decoding).
pub const MAX_FILENAME_BYTES: usize = 1024;

/// A parsed `Content-Disposition` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition {
    /// `attachment`, `form-data`, `inline`, ... (lower-cased).
    pub kind: String,
    /// The `name` parameter (form-data field name).
    pub name: Option<String>,
    /// The file name: `filename*` when present (decoded), else `filename`.
    pub filename: Option<String>,
}

/// Splits `type; a=b; c="d"` into the lower-cased type and its parameters (names lower-cased,
/// values unquoted). Malformed input gives [`HttpError::BadHeaderParams`].
pub fn parse_params(value: &str) -> Result<(String, Vec<(String, String)>), HttpError> {
    let bytes = value.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    let start = i;
    while i < bytes.len() && bytes[i] != b';' {
        i += 1;
    }
    let kind = value[start..i].trim().to_ascii_lowercase();
    if kind.is_empty() || !kind.bytes().all(is_tchar_or_slash) {
        return Err(HttpError::BadHeaderParams("missing or invalid type"));
    }
    let mut params = Vec::new();
    while i < bytes.len() {
        // bytes[i] == b';'
        i += 1;
        skip_ws(&mut i);
        if i == bytes.len() {
            break; // a trailing ';' is tolerated
        }
        let name_start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        let name = value[name_start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if name.is_empty() || i == bytes.len() || bytes[i] != b'=' {
            return Err(HttpError::BadHeaderParams("malformed parameter"));
        }
        i += 1;
        skip_ws(&mut i);
        let mut val = String::new();
        if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let mut closed = false;
            while i < bytes.len() {
                let c = bytes[i];
                if c == b'"' {
                    closed = true;
                    i += 1;
                    break;
                }
                if c == b'\\' && i + 1 < bytes.len() && matches!(bytes[i + 1], b'"' | b'\\') {
                    val.push(bytes[i + 1] as char);
                    i += 2;
                    continue;
                }
                if c < 0x20 && c != b'\t' || c == 0x7f {
                    return Err(HttpError::BadHeaderParams(
                        "control character in quoted value",
                    ));
                }
                // Copy a whole UTF-8 character: find the next char boundary.
                let mut j = i + 1;
                while j < bytes.len() && !value.is_char_boundary(j) {
                    j += 1;
                }
                val.push_str(&value[i..j]);
                i = j;
            }
            if !closed {
                return Err(HttpError::BadHeaderParams("unterminated quoted value"));
            }
        } else {
            let vstart = i;
            while i < bytes.len() && bytes[i] != b';' && bytes[i] != b' ' && bytes[i] != b'\t' {
                if bytes[i] == b'"' || bytes[i] < 0x20 || bytes[i] == 0x7f {
                    return Err(HttpError::BadHeaderParams("invalid character in value"));
                }
                i += 1;
            }
            val.push_str(&value[vstart..i]);
        }
        skip_ws(&mut i);
        if i < bytes.len() && bytes[i] != b';' {
            return Err(HttpError::BadHeaderParams("junk after parameter value"));
        }
        params.push((name, val));
    }
    Ok((kind, params))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_tchar_or_slash(b: u8) -> bool {
    is_tchar(b) || b == b'/'
}

/// Parses a Content-Disposition value (`attachment; filename*=UTF-8''a%20b.pdf`,
/// `form-data; name="file"; filename="a b.pdf"`). `filename*` wins over `filename` (RFC 6266 §4.3);
/// its charset must be UTF-8 or ISO-8859-1.
pub fn parse_content_disposition(value: &str) -> Result<Disposition, HttpError> {
    let (kind, params) = parse_params(value)?;
    let mut name = None;
    let mut plain = None;
    let mut extended = None;
    for (k, v) in params {
        match k.as_str() {
            "name" if name.is_none() => name = Some(v),
            "filename" if plain.is_none() => plain = Some(v),
            "filename*" if extended.is_none() => extended = Some(decode_ext_value(&v)?),
            _ => {}
        }
    }
    let filename = extended.or(plain);
    if filename
        .as_ref()
        .is_some_and(|f| f.len() > MAX_FILENAME_BYTES)
    {
        return Err(HttpError::BadHeaderParams("file name too long"));
    }
    Ok(Disposition {
        kind,
        name,
        filename,
    })
}

/// Decodes an RFC 8187 ext-value `charset'language'percent-encoded`.
pub fn decode_ext_value(v: &str) -> Result<String, HttpError> {
    let mut it = v.splitn(3, '\'');
    let (Some(charset), Some(_lang), Some(encoded)) = (it.next(), it.next(), it.next()) else {
        return Err(HttpError::BadHeaderParams("filename* without charset''"));
    };
    let raw = percent_decode(encoded, false)?;
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(raw).map_err(|_| HttpError::BadPercentEncoding)
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Ok(raw.into_iter().map(char::from).collect())
    } else {
        Err(HttpError::BadHeaderParams(
            "unsupported charset in filename*",
        ))
    }
}

/// Percent-decodes `s` (and `+` as space when `plus_as_space`, for form-urlencoded data).
pub fn percent_decode(s: &str, plus_as_space: bool) -> Result<Vec<u8>, HttpError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).and_then(|&c| (c as char).to_digit(16));
                let lo = b.get(i + 2).and_then(|&c| (c as char).to_digit(16));
                match (hi, lo) {
                    // Two hex digits are below 256.
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(HttpError::BadPercentEncoding),
                }
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Percent-decodes to a UTF-8 string.
pub fn percent_decode_utf8(s: &str, plus_as_space: bool) -> Result<String, HttpError> {
    String::from_utf8(percent_decode(s, plus_as_space)?).map_err(|_| HttpError::BadPercentEncoding)
}

/// Percent-encodes everything outside RFC 3986 unreserved characters (used by tests and to
/// build `filename*` values; the page does the same in JS).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses an `application/x-www-form-urlencoded` string into (name, value) pairs.
pub fn parse_urlencoded(s: &str) -> Result<Vec<(String, String)>, HttpError> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode_utf8(k, true)?, percent_decode_utf8(v, true)?))
        })
        .collect()
}

/// The multipart boundary of a `multipart/form-data; boundary=...` Content-Type (RFC 2046 §5.1.1:
/// 1 to 70 characters from `bchars`, not ending in a space).
pub fn multipart_boundary(content_type: &str) -> Result<String, HttpError> {
    let (kind, params) = parse_params(content_type).map_err(|_| HttpError::MultipartBoundary)?;
    if kind != "multipart/form-data" {
        return Err(HttpError::MultipartBoundary);
    }
    let boundary = params
        .into_iter()
        .find(|(k, _)| k == "boundary")
        .map(|(_, v)| v)
        .ok_or(HttpError::MultipartBoundary)?;
    let ok_char = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    if boundary.is_empty()
        || boundary.len() > 70
        || boundary.ends_with(' ')
        || !boundary.bytes().all(ok_char)
    {
        return Err(HttpError::MultipartBoundary);
    }
    Ok(boundary)
}

/// Whether a Content-Type is `multipart/form-data` (any parameters).
pub fn is_multipart_form(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// The value of cookie `name` in a `Cookie` header value.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == name).then(|| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_upload_disposition() {
        let d = parse_content_disposition("attachment; filename*=UTF-8''na%C3%AFve%20file%22.pdf")
            .unwrap();
        assert_eq!(d.kind, "attachment");
        assert_eq!(d.filename.as_deref(), Some("naïve file\".pdf"));
        let d = parse_content_disposition(
            "Attachment; filename=\"fallback.pdf\"; filename*=utf-8'en'real.pdf",
        )
        .unwrap();
        assert_eq!(d.filename.as_deref(), Some("real.pdf"));
        let d =
            parse_content_disposition("attachment; filename=\"a \\\"q\\\" \\\\ b.txt\"").unwrap();
        assert_eq!(d.filename.as_deref(), Some("a \"q\" \\ b.txt"));
        let d = parse_content_disposition("attachment;filename=plain.txt").unwrap();
        assert_eq!(d.filename.as_deref(), Some("plain.txt"));
        let d = parse_content_disposition("attachment; filename*=iso-8859-1''%E9t%E9").unwrap();
        assert_eq!(d.filename.as_deref(), Some("été"));
        let d = parse_content_disposition("attachment").unwrap();
        assert_eq!(d.filename, None);
    }

    #[test]
    fn form_data_disposition_with_raw_utf8() {
        let d = parse_content_disposition("form-data; name=\"file\"; filename=\"résumé ü.pdf\"")
            .unwrap();
        assert_eq!(d.kind, "form-data");
        assert_eq!(d.name.as_deref(), Some("file"));
        assert_eq!(d.filename.as_deref(), Some("résumé ü.pdf"));
    }

    #[test]
    fn bad_dispositions() {
        for bad in [
            "",
            "; filename=x",
            "attachment; filename*=UTF-8''%C3",
            "attachment; filename*=UTF-8''%zz",
            "attachment; filename*=nocharset",
            "attachment; filename*=koi8-r''x",
            "attachment; filename=\"unterminated",
            "attachment; filename",
            "attachment; filename=a\"b",
            "attachment; filename=\"a\" junk",
            "attachment; filename=\"a\u{1}b\"",
        ] {
            let e = parse_content_disposition(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        let long = format!("attachment; filename=\"{}\"", "x".repeat(2000));
        assert_eq!(
            parse_content_disposition(&long),
            Err(HttpError::BadHeaderParams("file name too long"))
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        for s in ["a b.pdf", "é\"%;\r\n/\\.txt", "日本語.txt", ""] {
            let enc = percent_encode(s);
            assert!(enc.bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(percent_decode_utf8(&enc, false).unwrap(), s);
            let d =
                parse_content_disposition(&format!("attachment; filename*=UTF-8''{enc}")).unwrap();
            assert_eq!(d.filename.as_deref(), Some(s));
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=----WebKitFormBoundaryX1").unwrap(),
            "----WebKitFormBoundaryX1"
        );
        assert_eq!(
            multipart_boundary("Multipart/Form-Data; boundary=\"a b\"").unwrap(),
            "a b"
        );
        for bad in [
            "multipart/form-data",
            "multipart/mixed; boundary=x",
            "multipart/form-data; boundary=\"\"",
            "multipart/form-data; boundary=\"a \"",
            "multipart/form-data; boundary=a\\b",
        ] {
            assert_eq!(
                multipart_boundary(bad),
                Err(HttpError::MultipartBoundary),
                "{bad}"
            );
        }
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert_eq!(multipart_boundary(&long), Err(HttpError::MultipartBoundary));
        assert!(is_multipart_form("multipart/form-data; boundary=x"));
        assert!(!is_multipart_form("application/pdf"));
    }

    #[test]
    fn urlencoded_and_cookies() {
        assert_eq!(
            parse_urlencoded("token=a%2Bb+c&x=&y").unwrap(),
            vec![
                ("token".into(), "a+b c".into()),
                ("x".into(), "".into()),
                ("y".into(), "".into())
            ]
        );
        assert!(parse_urlencoded("t=%ff").is_err());
        assert_eq!(
            cookie("a=1; msrpcast_token=abc; b=2", "msrpcast_token"),
            Some("abc")
        );
        assert_eq!(cookie("msrpcast_token=\"q\"", "msrpcast_token"), Some("q"));
        assert_eq!(cookie("xmsrpcast_token=abc", "msrpcast_token"), None);
    }
}
