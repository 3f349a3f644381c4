//! Streaming `multipart/form-data` (RFC 7578 over RFC 2046 §5.1) for uploads from a plain HTML
//! form: exactly one file part, handed out as a stream of slices, plus a few small text fields
//! (such as `token`) kept in memory up to a limit.
//!
//! The delimiter `CRLF--boundary` is found with memchr's memmem. When the input ends with a
//! proper prefix of the delimiter, those few bytes (at most 73) are held back until the next
//! input says whether they were a delimiter or data; nothing else is kept. Since a boundary
//! cannot contain CR, a held prefix that turns out not to be a delimiter is data in full.

use super::params::{multipart_boundary, parse_content_disposition};
use super::HttpError;
use memchr::memmem;

/// Limits of the multipart decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartLimits {
    /// A part's header block, including the empty line.
    pub max_part_head: usize,
    /// One non-file field's value.
    pub max_field_bytes: usize,
    /// Number of parts, the file included.
    pub max_parts: usize,
    /// Bytes before the first boundary (browsers send none). With the limits above this bounds
    /// what is read before the file part starts, and so before a form's `token` field is judged.
    pub max_preamble: usize,
}

impl Default for MultipartLimits {
    fn default() -> Self {
        MultipartLimits {
            max_part_head: 8 * 1024,
            max_field_bytes: 4 * 1024,
            max_parts: 16,
            max_preamble: 1024,
        }
    }
}

/// What one call to [`MultipartDecoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum MultipartEvent<'a> {
    /// The file part begins. Fields sent before it are already in [`MultipartDecoder::fields`].
    PartStart {
        /// The form field name.
        name: String,
        /// The file name as the browser sent it (untrusted).
        filename: String,
        /// The part's Content-Type, if any.
        content_type: Option<String>,
    },
    /// File bytes.
    Data(&'a [u8]),
    /// The file part ended.
    PartEnd,
    /// Input used up; feed more.
    NeedMore,
    /// The closing delimiter was read; the rest (epilogue) is ignored.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Preamble,
    File,
    Field,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Body(Kind),
    /// Just after a delimiter: `--`, transport padding, or CRLF.
    AfterDelim,
    AfterDash,
    Padding(u8),
    DelimLf,
    PartHead,
    Done,
}

/// What the inner loop decided, without borrows (turned into an event at the end).
enum Out {
    Input(usize, usize),
    Spill,
    Start,
    End,
    NeedMore,
    Done,
}

/// The streaming multipart/form-data decoder.
#[derive(Debug, Clone)]
pub struct MultipartDecoder {
    delim: Vec<u8>,
    limits: MultipartLimits,
    state: State,
    /// A proper prefix of `delim` seen at the end of the last input.
    held: Vec<u8>,
    /// Held bytes that turned out to be file data, handed out next.
    spill: Vec<u8>,
    head: Vec<u8>,
    start: Option<(String, String, Option<String>)>,
    field_name: String,
    field_value: Vec<u8>,
    fields: Vec<(String, String)>,
    parts: usize,
    file_seen: bool,
    preamble: usize,
}

impl MultipartDecoder {
    /// A decoder for a body with this Content-Type (`multipart/form-data; boundary=...`).
    pub fn new(content_type: &str, limits: MultipartLimits) -> Result<Self, HttpError> {
        let boundary = multipart_boundary(content_type)?;
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(boundary.as_bytes());
        Ok(MultipartDecoder {
            delim,
            limits,
            state: State::Body(Kind::Preamble),
            // As if the body were preceded by CRLF, so a first boundary at offset 0 matches.
            held: b"\r\n".to_vec(),
            spill: Vec::new(),
            head: Vec::new(),
            start: None,
            field_name: String::new(),
            field_value: Vec::new(),
            fields: Vec::new(),
            parts: 0,
            file_seen: false,
            preamble: 0,
        })
    }

    /// The non-file fields read so far, in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// The value of a non-file field read so far.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the closing delimiter has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The body ended: an error unless the closing delimiter was read.
    pub fn finish(&self) -> Result<(), HttpError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(HttpError::MultipartTruncated)
        }
    }

    /// Feeds decoded body bytes; returns `(consumed, event)`. `NeedMore` means all of `input` was
    /// consumed. Other events may consume less (even 0); call again with the rest.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, MultipartEvent<'a>), HttpError> {
        let (consumed, out) = self.run(input)?;
        let ev = match out {
            Out::Input(a, b) => MultipartEvent::Data(&input[a..b]),
            Out::Spill => MultipartEvent::Data(&self.spill),
            Out::Start => match self.start.take() {
                Some((name, filename, content_type)) => MultipartEvent::PartStart {
                    name,
                    filename,
                    content_type,
                },
                None => MultipartEvent::NeedMore, // not reached: Start is set with it
            },
            Out::End => MultipartEvent::PartEnd,
            Out::NeedMore => MultipartEvent::NeedMore,
            Out::Done => MultipartEvent::Done,
        };
        Ok((consumed, ev))
    }

    fn run(&mut self, input: &[u8]) -> Result<(usize, Out), HttpError> {
        self.spill.clear();
        let mut i = 0;
        loop {
            match self.state {
                State::Done => return Ok((input.len(), Out::Done)),
                State::Body(kind) => {
                    if let Some(out) = self.body(kind, input, &mut i)? {
                        return Ok((i, out));
                    }
                }
                State::PartHead => {
                    while i < input.len() && self.state == State::PartHead {
                        self.head.push(input[i]);
                        i += 1;
                        if self.head.len() > self.limits.max_part_head {
                            return Err(HttpError::MultipartPartHeadTooLarge);
                        }
                        let complete = self.head == b"\r\n" || self.head.ends_with(b"\r\n\r\n");
                        if complete && self.part_head()? {
                            return Ok((i, Out::Start));
                        }
                    }
                    if self.state == State::PartHead {
                        return Ok((i, Out::NeedMore));
                    }
                }
                State::AfterDelim | State::AfterDash | State::Padding(_) | State::DelimLf => {
                    let Some(&b) = input.get(i) else {
                        return Ok((i, Out::NeedMore));
                    };
                    i += 1;
                    self.state = match (self.state, b) {
                        (State::AfterDelim, b'-') => State::AfterDash,
                        (State::AfterDash, b'-') => {
                            if !self.file_seen {
                                return Err(HttpError::MultipartNoFile);
                            }
                            self.state = State::Done;
                            return Ok((input.len(), Out::Done));
                        }
                        (State::AfterDelim, b' ' | b'\t') => State::Padding(1),
                        (State::Padding(n), b' ' | b'\t') if n < 64 => State::Padding(n + 1),
                        (State::AfterDelim | State::Padding(_), b'\r') => State::DelimLf,
                        (State::DelimLf, b'\n') => {
                            self.head.clear();
                            State::PartHead
                        }
                        _ => return Err(HttpError::MultipartBadDelimiter),
                    };
                }
            }
        }
    }

    /// One step inside a part body. `Some(out)` ends this call.
    fn body(&mut self, kind: Kind, input: &[u8], i: &mut usize) -> Result<Option<Out>, HttpError> {
        let rest = &input[*i..];
        if !self.held.is_empty() {
            let have = self.held.len();
            let need = self.delim.len() - have;
            let take = need.min(rest.len());
            if rest[..take] == self.delim[have..have + take] {
                *i += take;
                if take == need {
                    self.held.clear();
                    return self.on_delimiter(kind);
                }
                self.held.extend_from_slice(&rest[..take]);
                return Ok(Some(Out::NeedMore));
            }
            // Not a delimiter after all: the held bytes are data.
            let held = std::mem::take(&mut self.held);
            return self.data_spill(kind, held);
        }
        if rest.is_empty() {
            return Ok(Some(Out::NeedMore));
        }
        let start = *i;
        if let Some(p) = memmem::find(rest, &self.delim) {
            if p > 0 {
                *i += p;
                return self.data(kind, input, start, start + p);
            }
            *i += self.delim.len();
            return self.on_delimiter(kind);
        }
        // No whole delimiter: hold a tail that may be its beginning (it starts with the only CR).
        let window = rest.len().saturating_sub(self.delim.len() - 1);
        let tail = memchr::memrchr(b'\r', &rest[window..])
            .map(|r| window + r)
            .filter(|&r| self.delim.starts_with(&rest[r..]));
        match tail {
            Some(0) => {
                self.held.extend_from_slice(rest);
                *i = input.len();
                Ok(Some(Out::NeedMore))
            }
            Some(r) => {
                *i += r;
                self.data(kind, input, start, start + r)
            }
            None => {
                *i = input.len();
                self.data(kind, input, start, input.len())
            }
        }
    }

    fn data(
        &mut self,
        kind: Kind,
        input: &[u8],
        a: usize,
        b: usize,
    ) -> Result<Option<Out>, HttpError> {
        match kind {
            Kind::File => Ok(Some(Out::Input(a, b))),
            Kind::Preamble => self.skip_preamble(b - a),
            Kind::Field => {
                if self.field_value.len() + (b - a) > self.limits.max_field_bytes {
                    return Err(HttpError::MultipartFieldTooLarge);
                }
                self.field_value.extend_from_slice(&input[a..b]);
                Ok(None)
            }
        }
    }

    fn data_spill(&mut self, kind: Kind, held: Vec<u8>) -> Result<Option<Out>, HttpError> {
        match kind {
            Kind::File => {
                self.spill = held;
                Ok(Some(Out::Spill))
            }
            Kind::Preamble => self.skip_preamble(held.len()),
            Kind::Field => {
                if self.field_value.len() + held.len() > self.limits.max_field_bytes {
                    return Err(HttpError::MultipartFieldTooLarge);
                }
                self.field_value.extend_from_slice(&held);
                Ok(None)
            }
        }
    }

    fn skip_preamble(&mut self, n: usize) -> Result<Option<Out>, HttpError> {
        self.preamble = self.preamble.saturating_add(n);
        if self.preamble > self.limits.max_preamble {
            return Err(HttpError::MultipartPreambleTooLarge);
        }
        Ok(None)
    }

    fn on_delimiter(&mut self, kind: Kind) -> Result<Option<Out>, HttpError> {
        self.state = State::AfterDelim;
        match kind {
            Kind::File => Ok(Some(Out::End)),
            Kind::Preamble => Ok(None),
            Kind::Field => {
                let value = std::mem::take(&mut self.field_value);
                let name = std::mem::take(&mut self.field_name);
                let v = String::from_utf8(value).map_err(|_| HttpError::MultipartFieldNotUtf8)?;
                self.fields.push((name, v));
                Ok(None)
            }
        }
    }

    /// Parses the part head in `self.head`; true when it starts the file part.
    fn part_head(&mut self) -> Result<bool, HttpError> {
        self.parts += 1;
        if self.parts > self.limits.max_parts {
            return Err(HttpError::MultipartTooManyParts);
        }
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let headers = match httparse::parse_headers(&self.head, &mut storage) {
            Ok(httparse::Status::Complete((_, h))) => h,
            _ => return Err(HttpError::MultipartBadPartHead),
        };
        let mut disposition = None;
        let mut content_type = None;
        for h in headers.iter() {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| HttpError::MultipartBadPartHead)?
                .trim();
            if h.name.eq_ignore_ascii_case("content-disposition") {
                disposition = Some(parse_content_disposition(value)?);
            } else if h.name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.to_string());
            }
        }
        let d = disposition.ok_or(HttpError::MultipartNoDisposition)?;
        let name = match (d.kind.as_str(), d.name) {
            ("form-data", Some(n)) => n,
            _ => return Err(HttpError::MultipartNoDisposition),
        };
        self.held.clear();
        if let Some(filename) = d.filename {
            if self.file_seen {
                return Err(HttpError::MultipartSecondFile);
            }
            self.file_seen = true;
            self.start = Some((name, filename, content_type));
            self.state = State::Body(Kind::File);
            Ok(true)
        } else {
            self.field_name = name;
            self.field_value.clear();
            self.state = State::Body(Kind::Field);
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn body(file: &[u8]) -> Vec<u8> {
        let mut b = b"--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nsecret\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.txt\"\r\n\
Content-Type: text/plain\r\n\r\n"
            .to_vec();
        b.extend_from_slice(file);
        b.extend_from_slice(b"\r\n--XyZ--\r\nepilogue");
        b
    }

    #[derive(Debug, PartialEq, Default)]
    struct Got {
        start: Option<(String, String, Option<String>)>,
        data: Vec<u8>,
        ended: bool,
        done: bool,
        fields: Vec<(String, String)>,
    }

    fn run_pieces(pieces: &[&[u8]]) -> Result<Got, HttpError> {
        let mut d = MultipartDecoder::new(CT, MultipartLimits::default())?;
        let mut g = Got::default();
        for piece in pieces {
            let mut buf = *piece;
            loop {
                let (n, ev) = d.decode(buf)?;
                buf = &buf[n..];
                match ev {
                    MultipartEvent::PartStart {
                        name,
                        filename,
                        content_type,
                    } => g.start = Some((name, filename, content_type)),
                    MultipartEvent::Data(x) => g.data.extend_from_slice(x),
                    MultipartEvent::PartEnd => g.ended = true,
                    MultipartEvent::NeedMore => break,
                    MultipartEvent::Done => {
                        g.done = true;
                        break;
                    }
                }
            }
        }
        d.finish()?;
        g.fields = d.fields().to_vec();
        Ok(g)
    }

    fn expected(file: &[u8]) -> Got {
        Got {
            start: Some(("file".into(), "a b.txt".into(), Some("text/plain".into()))),
            data: file.to_vec(),
            ended: true,
            done: true,
            fields: vec![("token".into(), "secret".into())],
        }
    }

    #[test]
    fn whole_body() {
        let file = b"hello\r\n--XyY not quite\r\n--Xy\r\r\n-";
        assert_eq!(run_pieces(&[&body(file)]).unwrap(), expected(file));
    }

    #[test]
    fn split_at_every_pair_of_positions() {
        let file = b"ab\r\n--Xy\rc\r\n-";
        let b = body(file);
        let want = expected(file);
        for x in 0..=b.len() {
            for y in x..=b.len() {
                let got = run_pieces(&[&b[..x], &b[x..y], &b[y..]]).unwrap();
                assert_eq!(got, want, "split {x} {y}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let file: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let b = body(&file);
        let pieces: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(run_pieces(&pieces).unwrap(), expected(&file));
    }

    /// Finding 14 of issue 14: a 200 MiB preamble was read (and discarded) to its end.
    #[test]
    fn preamble_is_bounded() {
        let max = MultipartLimits::default().max_preamble;
        let mut d = MultipartDecoder::new(CT, MultipartLimits::default()).unwrap();
        let junk = vec![b'x'; 4096];
        let mut fed = 0;
        let e = loop {
            match d.decode(&junk) {
                Ok((n, MultipartEvent::NeedMore)) => {
                    fed += n;
                    assert!(fed <= 200 << 20, "200 MiB of preamble accepted");
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(e, HttpError::MultipartPreambleTooLarge);
        assert!(fed <= max, "{fed} bytes read first");
        assert_eq!(e.status(), 400);
        // Up to the limit, split anywhere, it is still fine.
        let mut b = vec![b'p'; max - 2];
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(&body(b"ok")[..]);
        assert_eq!(run_pieces(&[&b]).unwrap(), expected(b"ok"));
    }

    #[test]
    fn preamble_and_padding_and_empty_file() {
        let b = b"preamble\r\n--XyZ \t\r\nContent-Disposition: form-data; name=f; filename=\"\"\r\n\r\n\r\n--XyZ--";
        let g = run_pieces(&[b]).unwrap();
        assert_eq!(g.start, Some(("f".into(), "".into(), None)));
        assert!(g.data.is_empty() && g.ended && g.done);
    }

    #[test]
    fn file_data_is_not_copied() {
        let file = vec![b'z'; 100_000];
        let b = body(&file);
        let mut d = MultipartDecoder::new(CT, MultipartLimits::default()).unwrap();
        let mut buf = &b[..];
        loop {
            let (n, ev) = d.decode(buf).unwrap();
            let before = buf.as_ptr() as usize;
            buf = &buf[n..];
            if let MultipartEvent::Data(x) = ev {
                assert_eq!(x.len(), 100_000);
                assert!(x.as_ptr() as usize >= before, "slice of the input");
                break;
            }
        }
    }

    fn err(b: &[u8]) -> HttpError {
        run_pieces(&[b]).unwrap_err()
    }

    #[test]
    fn malformed_each_with_its_reason() {
        assert_eq!(
            MultipartDecoder::new("multipart/form-data", MultipartLimits::default()).unwrap_err(),
            HttpError::MultipartBoundary
        );
        assert_eq!(err(b"--XyZx\r\n"), HttpError::MultipartBadDelimiter);
        assert_eq!(err(b"--XyZ-x"), HttpError::MultipartBadDelimiter);
        assert_eq!(err(b"--XyZ\r\r"), HttpError::MultipartBadDelimiter);
        assert_eq!(
            err(b"--XyZ\r\nNo Colon\r\n\r\n"),
            HttpError::MultipartBadPartHead
        );
        assert_eq!(
            err(b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--"),
            HttpError::MultipartNoDisposition
        );
        assert_eq!(
            err(b"--XyZ\r\nContent-Disposition: attachment; filename=a\r\n\r\nx\r\n--XyZ--"),
            HttpError::MultipartNoDisposition
        );
        let two = b"--XyZ\r\nContent-Disposition: form-data; name=a; filename=a\r\n\r\nx\r\n\
--XyZ\r\nContent-Disposition: form-data; name=b; filename=b\r\n\r\ny\r\n--XyZ--";
        assert_eq!(err(two), HttpError::MultipartSecondFile);
        let big = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=t\r\n\r\n{}\r\n--XyZ--",
            "v".repeat(5000)
        );
        assert_eq!(err(big.as_bytes()), HttpError::MultipartFieldTooLarge);
        let head = format!("--XyZ\r\nX: {}\r\n\r\n", "h".repeat(9000));
        assert_eq!(err(head.as_bytes()), HttpError::MultipartPartHeadTooLarge);
        let many: String = (0..17)
            .map(|i| format!("--XyZ\r\nContent-Disposition: form-data; name=f{i}\r\n\r\nv\r\n"))
            .collect();
        assert_eq!(err(many.as_bytes()), HttpError::MultipartTooManyParts);
        assert_eq!(
            err(b"--XyZ\r\nContent-Disposition: form-data; name=t\r\n\r\nv\r\n--XyZ--"),
            HttpError::MultipartNoFile
        );
        assert_eq!(
            err(b"--XyZ\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\nabc"),
            HttpError::MultipartTruncated
        );
        assert_eq!(err(b"no boundary at all"), HttpError::MultipartTruncated);
        assert_eq!(
            err(b"--XyZ\r\nContent-Disposition: form-data; name=t\r\n\r\n\xff\r\n--XyZ--"),
            HttpError::MultipartFieldNotUtf8
        );
    }
}
