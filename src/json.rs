//! The crate's one JSON writer (status API, HTTP error bodies, control-socket replies, FreeSWITCH
//! API answers): string escaping and an object/array builder. Hand-written rather than
//! serde_json: every document is a few flat fields written in one place (nothing to derive),
//! serde_json leaves `<`, `>` and `&` as they are (we need output safe inside an HTML
//! `<script>`, so it would take a custom formatter anyway), and it would add two dependencies.
//!
//! Output is always valid JSON (RFC 8259) and safe to embed in an HTML `<script>` block: besides
//! the mandatory escapes, `<`, `>`, `&`, U+2028 and U+2029 are written as `\uXXXX`.

use std::fmt::Write as _;

/// Appends `s` to `out` as a JSON string literal, quotes included.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20
                || c == '\u{7f}'
                || c == '<'
                || c == '>'
                || c == '&'
                || c == '\u{2028}'
                || c == '\u{2029}' =>
            {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string literal.
pub fn escape(s: &str) -> String {
    let mut out = String::new();
    push_str(&mut out, s);
    out
}

/// Builds one JSON object: `{"k":v,...}`. Keys are written escaped.
pub struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    /// Opens `{` on `out`; [`Object::end`] closes it.
    pub fn begin(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str(self.out, k);
        self.out.push(':');
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        push_str(self.out, v);
        self
    }

    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }

    pub fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{v}");
        self
    }

    pub fn opt_u64(&mut self, k: &str, v: Option<u64>) -> &mut Self {
        match v {
            Some(v) => self.u64(k, v),
            None => self.null(k),
        }
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
        self
    }

    pub fn null(&mut self, k: &str) -> &mut Self {
        self.key(k);
        self.out.push_str("null");
        self
    }

    /// Writes a value produced by `f` (which must write exactly one JSON value) under `k`.
    pub fn raw(&mut self, k: &str, f: impl FnOnce(&mut String)) -> &mut Self {
        self.key(k);
        f(self.out);
        self
    }

    /// Writes an array under `k`, one element per item, each written by `f`.
    pub fn array<I, T>(&mut self, k: &str, items: I, f: impl FnMut(&mut String, T)) -> &mut Self
    where
        I: IntoIterator<Item = T>,
    {
        self.key(k);
        push_array(self.out, items, f);
        self
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

/// Writes `[e1,e2,...]`, each element written by `f`.
pub fn push_array<I, T>(out: &mut String, items: I, mut f: impl FnMut(&mut String, T))
where
    I: IntoIterator<Item = T>,
{
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        f(out, item);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal JSON string-literal decoder, enough to check that escaping round-trips.
    fn decode(lit: &str) -> String {
        let inner = lit
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .expect("quoted");
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            assert!(c as u32 >= 0x20, "raw control char {c:?} in {lit:?}");
            assert_ne!(c, '"', "bare quote in {lit:?}");
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next().expect("escape") {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let v = u32::from_str_radix(&hex, 16).expect("hex");
                    out.push(char::from_u32(v).expect("BMP scalar"));
                }
                other => panic!("bad escape \\{other}"),
            }
        }
        out
    }

    #[test]
    fn quotes_and_backslashes() {
        assert_eq!(escape(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn control_characters() {
        assert_eq!(escape("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(
            escape("\u{0}\u{1}\u{1f}\u{7f}"),
            r#""\u0000\u0001\u001f\u007f""#
        );
    }

    #[test]
    fn non_ascii_kept_and_html_safe() {
        assert_eq!(escape("Grüße 文件 😀"), "\"Grüße 文件 😀\"");
        assert_eq!(
            escape("</script>&\u{2028}\u{2029}"),
            r#""\u003c/script\u003e\u0026\u2028\u2029""#
        );
    }

    #[test]
    fn object_and_array_builder() {
        let mut s = String::new();
        let mut o = Object::begin(&mut s);
        o.str("a", "x\"y")
            .u64("n", 42)
            .opt_u64("m", None)
            .opt_str("d", Some("é"))
            .bool("t", true)
            .array("l", [1u64, 2, 3], |out, v| out.push_str(&v.to_string()))
            .array("e", Vec::<u64>::new(), |_, _| {});
        o.end();
        assert_eq!(
            s,
            r#"{"a":"x\"y","n":42,"m":null,"d":"é","t":true,"l":[1,2,3],"e":[]}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn escape_round_trips(s in proptest::prelude::any::<String>()) {
            let lit = escape(&s);
            proptest::prop_assert_eq!(decode(&lit), s);
        }
    }
}
