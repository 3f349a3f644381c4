//! Incremental zero-copy MSRP frame parser (RFC 4975 §7.1, §9).
//!
//! [`parse`] looks at the start of a buffer and answers [`Parsed::Complete`] with the frame and
//! the number of bytes it took, or [`Parsed::Partial`] when more bytes are needed. Every value of
//! the returned [`Message`] — the body included — is a slice of the input `Bytes`.
//!
//! Parsing happens in two steps. *Locating* works on `&[u8]`: it splits the start line and
//! header lines (checking CRLFs, the header-block and header-count limits), then finds the end-line
//! `-------<tid><flag>CRLF` with one `memmem` pass over the body. *Building* parses the start line
//! and header values with nom into the typed [`Message`]. The outcome is the same however the
//! input was split: an error is only reported once the bytes seen so far decide it.
//!
//! [`FrameDecoder`] does the same over a stream, remembering where the end-line search stopped
//! so that feeding a large body in small pieces costs linear time.

use std::fmt;
use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::{memchr, memchr2, memmem};
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::digit1;
use nom::combinator::{all_consuming, opt, rest};
use nom::error::ErrorKind;
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::dash_runs::{find_dashed, DASHES};
use super::message::{
    ByteRange, Continuation, FailureReport, Header, Kind, Message, Method, Status,
};
use super::uri::{parse_path_fast, parse_path_in, Uri, UriError};

/// Bounds on what one frame may hold. Each has its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the start line and header lines, CRLFs and the blank line (or, for a frame
    /// without body, its end-line) included.
    pub max_header_bytes: usize,
    /// Header lines (To-Path and From-Path included).
    pub max_headers: usize,
    /// Bytes of one frame's body (one chunk).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8192,
            max_headers: 32,
            max_body_bytes: 1 << 20,
        }
    }
}

/// The outcome of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// One frame and the number of input bytes it took.
    Complete(Message, usize),
    /// The input is a valid beginning of a frame; more bytes are needed.
    Partial,
}

/// Why a frame was rejected. [`ParseError::status_code`] gives the MSRP response it calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// The start line and headers exceed [`Limits::max_header_bytes`].
    HeaderBlockTooLarge,
    /// More header lines than [`Limits::max_headers`].
    TooManyHeaders,
    /// The body exceeds [`Limits::max_body_bytes`].
    BodyTooLarge,
    /// No `To-Path` header.
    MissingToPath,
    /// No `From-Path` header.
    MissingFromPath,
    /// A header that may appear once appears twice.
    DuplicateHeader,
    /// A malformed `Byte-Range` value.
    BadByteRange,
    /// A header value (or response comment) is not UTF-8.
    BadUtf8,
    /// The start line is not `MSRP <tid> <method>` or `MSRP <tid> <code> [comment]`.
    BadStartLine,
    /// A malformed header line or value.
    BadHeader,
    /// A malformed URI in a path header.
    BadUri(UriError),
    /// The end-line has the wrong transaction id or continuation flag.
    BadEndLine,
    /// A CR not followed by LF, or an LF not preceded by CR, in the start line or headers.
    BareCrOrLf,
    /// A malformed `Status` header.
    BadStatus,
}

impl ParseError {
    /// The MSRP status code to answer a request that failed this way with: 413 for an oversize
    /// body (stop sending this message), 400 (unintelligible) for everything else.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::BodyTooLarge => 413,
            _ => 400,
        }
    }

    /// True when the error broke the framing itself, so the rest of the stream cannot be read.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ParseError::HeaderBlockTooLarge
                | ParseError::TooManyHeaders
                | ParseError::BodyTooLarge
                | ParseError::BadStartLine
                | ParseError::BadEndLine
                | ParseError::BareCrOrLf
        )
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::HeaderBlockTooLarge => f.write_str("header block too large"),
            ParseError::TooManyHeaders => f.write_str("too many headers"),
            ParseError::BodyTooLarge => f.write_str("chunk body too large"),
            ParseError::MissingToPath => f.write_str("missing To-Path header"),
            ParseError::MissingFromPath => f.write_str("missing From-Path header"),
            ParseError::DuplicateHeader => f.write_str("duplicate header"),
            ParseError::BadByteRange => f.write_str("malformed Byte-Range header"),
            ParseError::BadUtf8 => f.write_str("header value is not UTF-8"),
            ParseError::BadStartLine => f.write_str("malformed start line"),
            ParseError::BadHeader => f.write_str("malformed header"),
            ParseError::BadUri(e) => write!(f, "bad URI in path header: {e}"),
            ParseError::BadEndLine => f.write_str("end-line does not match the transaction"),
            ParseError::BareCrOrLf => f.write_str("bare CR or LF in the header block"),
            ParseError::BadStatus => f.write_str("malformed Status header"),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<UriError> for ParseError {
    fn from(e: UriError) -> Self {
        ParseError::BadUri(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Locating: structure only, over &[u8].
// ---------------------------------------------------------------------------------------------

/// The longest transaction id (RFC 4975 `ident`: 4 to 32 characters).
const MAX_TID: usize = 32;
const MIN_TID: usize = 4;
/// What precedes the transaction id in the CRLF + end-line that closes a body.
const END_PREFIX: &[u8] = b"\r\n-------";
/// Built once: constructing a searcher per frame costs about as much as scanning 2 kB.
static END_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(END_PREFIX));
/// The first offset of [`END_PREFIX`] in `hay`, as `END_FINDER.find(hay)` answers, at about
/// twice its speed on file data (it is the receiving side's largest cost after the kernel's
/// copy: 18 % of `msrpcast receive`'s samples); see [`find_dashed`].
fn find_end_prefix(hay: &[u8]) -> Option<usize> {
    find_dashed(hay, &END_FINDER)
}

/// Header lines whose ends [`scan_head`] records for [`build`]; later lines are found again.
const RECORDED_LINES: usize = 16;

/// The header lines found while locating, so that building does not search for them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lines {
    /// Header lines (To-Path and From-Path included).
    count: usize,
    /// How many leading lines have their end in `cr`.
    recorded: usize,
    /// Offset of the CR that ends header line `i`.
    cr: [u32; RECORDED_LINES],
}

impl Lines {
    const EMPTY: Lines = Lines {
        count: 0,
        recorded: 0,
        cr: [0; RECORDED_LINES],
    };

    #[inline]
    fn push(&mut self, cr: usize) {
        // Offsets only grow, so the recorded lines stay a prefix.
        if self.count < RECORDED_LINES {
            if let Ok(v) = u32::try_from(cr) {
                self.cr[self.count] = v;
                self.recorded += 1;
            }
        }
        self.count += 1;
    }
}

/// Where the parts of one complete frame lie, as offsets from the frame start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameLoc {
    tid_len: usize,
    kind: LocKind,
    /// The start line, CRLF excluded.
    start_line_end: usize,
    /// Header lines run from after the start line's CRLF to here.
    headers_end: usize,
    lines: Lines,
    body_start: usize,
    body_end: usize,
    flag: Continuation,
    total: usize,
}

/// A frame whose head is complete and has a body section whose end is being searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeadLoc {
    tid_len: usize,
    kind: LocKind,
    start_line_end: usize,
    headers_end: usize,
    lines: Lines,
    body_start: usize,
}

/// The start line's method or status, as offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocKind {
    Method(usize, usize),
    Response(u16, Option<(usize, usize)>),
}

enum HeadScan {
    Partial,
    /// A frame without body, complete.
    Bodyless(FrameLoc),
    /// Head complete, body follows.
    Body(HeadLoc),
}

const IDENT: u8 = 1;
const TOKEN: u8 = 2;

/// Character classes by table lookup (these run for every byte of ids and header names).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        if alnum || matches!(b, b'.' | b'-' | b'+' | b'%' | b'=') {
            t[i] |= IDENT;
        }
        if alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            t[i] |= TOKEN;
        }
        i += 1;
    }
    t
};

/// RFC 4975 `ident-char`.
fn is_ident_char(b: u8) -> bool {
    CLASS[b as usize] & IDENT != 0
}

/// Length of the run of `ident-char`s at the start of `s`, eight bytes per step while they all
/// are.
#[inline]
fn ident_run(s: &[u8]) -> usize {
    let mut at = 0;
    while let Some(c) = s.get(at..at + 8) {
        if c.iter().fold(IDENT, |m, &b| m & CLASS[b as usize]) == 0 {
            break;
        }
        at += 8;
    }
    while at < s.len() && is_ident_char(s[at]) {
        at += 1;
    }
    at
}

/// Finds the LF ending the line that starts at `from`, checking CRLF discipline and the header
/// block limit. `head` is the input up to the limit (counted from offset 0); `at_limit` says
/// that it ends at the limit rather than at the end of the bytes received. `Ok(None)` means more
/// bytes are needed.
#[inline]
fn find_line(head: &[u8], from: usize, at_limit: bool) -> Result<Option<usize>, ParseError> {
    let window = head.get(from..).unwrap_or(&[]);
    match memchr2(b'\r', b'\n', window) {
        Some(i) if window[i] == b'\r' => match window.get(i + 1) {
            Some(b'\n') => Ok(Some(from + i + 1)),
            Some(_) => Err(ParseError::BareCrOrLf),
            // The LF would lie at the window's end: past the limit, or not received yet.
            None if at_limit => Err(ParseError::HeaderBlockTooLarge),
            None => Ok(None),
        },
        Some(_) => Err(ParseError::BareCrOrLf),
        None if at_limit => Err(ParseError::HeaderBlockTooLarge),
        None => Ok(None),
    }
}

/// Locates the start line and header lines of the frame at the start of `buf`.
fn scan_head(buf: &[u8], limits: &Limits) -> Result<HeadScan, ParseError> {
    let msrp = match buf.first_chunk::<5>() {
        Some(head) => head == b"MSRP ",
        None => b"MSRP ".starts_with(buf),
    };
    if !msrp {
        return Err(ParseError::BadStartLine);
    }
    let at_limit = buf.len() >= limits.max_header_bytes;
    let head = &buf[..buf.len().min(limits.max_header_bytes)];
    let Some(sl_lf) = find_line(head, 0, at_limit)? else {
        return Ok(HeadScan::Partial);
    };
    let start_line_end = sl_lf - 1;
    // The whole start line is checked now (cheap); the tid is needed for the end-line.
    let (tid_len, kind) = locate_start_line(&buf[..start_line_end])?;
    let tid = &buf[5..5 + tid_len];

    let mut lines = Lines::EMPTY;
    let mut pos = sl_lf + 1;
    loop {
        let Some(lf) = find_line(head, pos, at_limit)? else {
            return Ok(HeadScan::Partial);
        };
        let line = &buf[pos..lf - 1];
        if line.is_empty() {
            return Ok(HeadScan::Body(HeadLoc {
                tid_len,
                kind,
                start_line_end,
                headers_end: pos,
                lines,
                body_start: lf + 1,
            }));
        }
        if line[0] == b'-' {
            let flag = end_line_flag(line, tid).ok_or(ParseError::BadEndLine)?;
            return Ok(HeadScan::Bodyless(FrameLoc {
                tid_len,
                kind,
                start_line_end,
                headers_end: pos,
                lines,
                body_start: pos,
                body_end: pos,
                flag,
                total: lf + 1,
            }));
        }
        if lines.count >= limits.max_headers {
            return Err(ParseError::TooManyHeaders);
        }
        lines.push(lf - 1);
        pos = lf + 1;
    }
}

/// The start line's tid length and method or status, as offsets into `line`.
#[inline]
fn locate_start_line(line: &[u8]) -> Result<(usize, LocKind), ParseError> {
    if let Some(r) = start_line_fast(line) {
        return Ok(r);
    }
    let (_, (tid, kind)) = start_line(line).map_err(|_| ParseError::BadStartLine)?;
    let off = |x: &[u8]| x.as_ptr() as usize - line.as_ptr() as usize;
    let kind = match kind {
        RawKind::Method(m) => LocKind::Method(off(m), off(m) + m.len()),
        RawKind::Response(code, c) => {
            LocKind::Response(code, c.map(|c| (off(c), off(c) + c.len())))
        }
    };
    Ok((tid.len(), kind))
}

/// The well-formed start line in one pass, as [`start_line`] reads it; `None` leaves the line
/// (and its error) to [`start_line`].
#[inline]
fn start_line_fast(line: &[u8]) -> Option<(usize, LocKind)> {
    let rest = line.strip_prefix(b"MSRP ")?;
    let t = ident_run(rest);
    if !(MIN_TID..=MAX_TID).contains(&t) || !rest[0].is_ascii_alphanumeric() {
        return None;
    }
    if rest.get(t) != Some(&b' ') {
        return None;
    }
    let k_at = 5 + t + 1;
    let k = &line[k_at..];
    match k {
        [a, b, c, tail @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            match tail {
                [] => Some((t, LocKind::Response(code, None))),
                [b' ', ..] => Some((t, LocKind::Response(code, Some((k_at + 4, line.len()))))),
                _ => None,
            }
        }
        [_, ..] if k.iter().all(u8::is_ascii_uppercase) => {
            Some((t, LocKind::Method(k_at, line.len())))
        }
        _ => None,
    }
}

/// The flag of `-------<tid><flag>` (CRLF excluded), or `None` if the line is not that.
fn end_line_flag(line: &[u8], tid: &[u8]) -> Option<Continuation> {
    let (flag, head) = line.split_last()?;
    if head.len() != DASHES.len() + tid.len()
        || &head[..DASHES.len()] != DASHES
        || &head[DASHES.len()..] != tid
    {
        return None;
    }
    Continuation::from_byte(*flag)
}

enum EndSearch {
    Found {
        body_end: usize,
        flag: Continuation,
        total: usize,
    },
    /// Not yet; resume the search at this offset.
    Partial(usize),
}

/// Finds `CRLF -------<tid><flag> CRLF` after the body starting at `head.body_start`, searching
/// from `from` (earlier offsets are known not to start one).
fn find_end(
    buf: &[u8],
    from: usize,
    head: &HeadLoc,
    limits: &Limits,
) -> Result<EndSearch, ParseError> {
    let tid = &buf[5..5 + head.tid_len];
    let needle_len = END_PREFIX.len() + tid.len();
    let full = needle_len + 3;
    // A match must end by `cap` for the body to fit the limit.
    let cap = head
        .body_start
        .saturating_add(limits.max_body_bytes)
        .saturating_add(full);
    let window_end = buf.len().min(cap);
    let mut at = from;
    loop {
        let hit = if at < window_end {
            find_end_prefix(&buf[at..window_end])
        } else {
            None
        };
        match hit {
            Some(i) => {
                let q = at + i;
                if q + full > cap {
                    return Err(ParseError::BodyTooLarge);
                }
                if q + full > buf.len() {
                    return Ok(EndSearch::Partial(q));
                }
                let rest = &buf[q + END_PREFIX.len()..q + full];
                if &rest[..tid.len()] == tid {
                    if let Some(flag) = Continuation::from_byte(rest[tid.len()]) {
                        if &rest[tid.len() + 1..] == b"\r\n" {
                            return Ok(EndSearch::Found {
                                body_end: q.max(head.body_start),
                                flag,
                                total: q + full,
                            });
                        }
                    }
                }
                at = q + 1;
            }
            None => {
                if window_end == cap {
                    return Err(ParseError::BodyTooLarge);
                }
                let resume = window_end.saturating_sub(END_PREFIX.len() - 1).max(at);
                return Ok(EndSearch::Partial(resume));
            }
        }
    }
}

/// The end-line search state carried between calls by [`FrameDecoder`].
#[derive(Debug, Clone, Copy)]
struct Pending {
    head: HeadLoc,
    resume: usize,
}

fn locate(
    buf: &[u8],
    limits: &Limits,
    pending: &mut Option<Pending>,
) -> Result<Option<FrameLoc>, ParseError> {
    let (head, from) = match *pending {
        Some(p) => (p.head, p.resume),
        None => match scan_head(buf, limits)? {
            HeadScan::Partial => return Ok(None),
            HeadScan::Bodyless(loc) => return Ok(Some(loc)),
            // Start two bytes early: a sender that omits the CRLF of an empty body is accepted.
            HeadScan::Body(h) => (h, h.body_start - 2),
        },
    };
    match find_end(buf, from, &head, limits)? {
        EndSearch::Found {
            body_end,
            flag,
            total,
        } => {
            *pending = None;
            Ok(Some(FrameLoc {
                tid_len: head.tid_len,
                kind: head.kind,
                start_line_end: head.start_line_end,
                headers_end: head.headers_end,
                lines: head.lines,
                body_start: head.body_start,
                body_end,
                flag,
                total,
            }))
        }
        EndSearch::Partial(resume) => {
            *pending = Some(Pending { head, resume });
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building: typed values with nom, as slices of the frame's Bytes.
// ---------------------------------------------------------------------------------------------

type NomResult<'a, T> = IResult<&'a [u8], T>;

enum RawKind<'a> {
    Method(&'a [u8]),
    Response(u16, Option<&'a [u8]>),
}

fn nom_fail<T>(i: &[u8], kind: ErrorKind) -> NomResult<'_, T> {
    Err(nom::Err::Error(nom::error::Error::new(i, kind)))
}

/// Exactly three decimal digits.
fn three_digits(i: &[u8]) -> NomResult<'_, u16> {
    match i {
        [a, b, c, rest @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let v = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            Ok((rest, v))
        }
        _ => nom_fail(i, ErrorKind::Digit),
    }
}

/// A decimal number that fits a `u64`.
fn number(i: &[u8]) -> NomResult<'_, u64> {
    let (rest, digits) = digit1(i)?;
    let mut v = 0u64;
    for &d in digits {
        v = match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
        {
            Some(v) => v,
            None => return nom_fail(i, ErrorKind::TooLarge),
        };
    }
    Ok((rest, v))
}

/// `*` or a number.
fn star_or_number(i: &[u8]) -> NomResult<'_, Option<u64>> {
    match i {
        [b'*', rest @ ..] => Ok((rest, None)),
        _ => number.map(Some).parse(i),
    }
}

/// RFC 4975 `ident`, as a transaction id: 4 to 32 ident characters.
fn transaction_id(i: &[u8]) -> NomResult<'_, &[u8]> {
    let (rest, tid) = take_while1(is_ident_char)(i)?;
    if !(MIN_TID..=MAX_TID).contains(&tid.len()) || !tid[0].is_ascii_alphanumeric() {
        return nom_fail(i, ErrorKind::TakeWhileMN);
    }
    Ok((rest, tid))
}

/// `MSRP SP tid SP (method / code [SP comment])`, the whole line.
fn start_line(i: &[u8]) -> NomResult<'_, (&[u8], RawKind<'_>)> {
    let (i, _) = tag(&b"MSRP "[..])(i)?;
    let (i, tid) = transaction_id(i)?;
    let (i, _) = tag(&b" "[..])(i)?;
    let method = all_consuming(take_while1(|b: u8| b.is_ascii_uppercase())).map(RawKind::Method);
    let response = all_consuming((three_digits, opt(preceded(tag(&b" "[..]), rest))))
        .map(|(c, comment)| RawKind::Response(c, comment));
    let (i, kind) = nom::branch::alt((method, response)).parse(i)?;
    Ok((i, (tid, kind)))
}

/// RFC 3261 `token` character (header names).
fn is_token_char(b: u8) -> bool {
    CLASS[b as usize] & TOKEN != 0
}

/// `name ":" *WSP value`; the value runs to the end of the line, trailing blanks dropped.
fn header_line(i: &[u8]) -> NomResult<'_, (&[u8], &[u8])> {
    let (i, name) = take_while1(is_token_char)(i)?;
    let (i, _) = tag(&b":"[..])(i)?;
    let (i, _) = nom::character::complete::space0(i)?;
    let mut v = i;
    while let [head @ .., b' ' | b'\t'] = v {
        v = head;
    }
    Ok((&[], (name, v)))
}

fn byte_range(i: &[u8]) -> NomResult<'_, ByteRange> {
    let (i, (start, _, end, _, total)) = all_consuming((
        number,
        tag(&b"-"[..]),
        star_or_number,
        tag(&b"/"[..]),
        star_or_number,
    ))
    .parse(i)?;
    Ok((i, ByteRange { start, end, total }))
}

fn parse_byte_range(v: &[u8]) -> Result<ByteRange, ParseError> {
    let r = match byte_range_fast(v) {
        Some(r) => r,
        None => byte_range(v).map_err(|_| ParseError::BadByteRange)?.1,
    };
    let ok = r.start >= 1
        && r.end.is_none_or(|e| e >= r.start - 1)
        && match (r.end, r.total) {
            (Some(e), Some(t)) => e <= t,
            _ => true,
        };
    if ok {
        Ok(r)
    } else {
        Err(ParseError::BadByteRange)
    }
}

fn status(i: &[u8]) -> NomResult<'_, (u16, u16, Option<&[u8]>)> {
    all_consuming((
        three_digits,
        tag(&b" "[..]),
        three_digits,
        opt(preceded(tag(&b" "[..]), rest)),
    ))
    .map(|(ns, _, code, comment)| (ns, code, comment))
    .parse(i)
}

fn parse_u32(v: &[u8]) -> Result<u32, ParseError> {
    let r: NomResult<'_, u32> = all_consuming(nom::character::complete::u32).parse(v);
    r.map(|(_, n)| n).map_err(|_| ParseError::BadHeader)
}

fn parse_yes_no(v: &[u8]) -> Result<bool, ParseError> {
    if v.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if v.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err(ParseError::BadHeader)
    }
}

fn check_utf8(v: &[u8]) -> Result<(), ParseError> {
    if v.is_ascii() || std::str::from_utf8(v).is_ok() {
        Ok(())
    } else {
        Err(ParseError::BadUtf8)
    }
}

/// `name ":" *WSP value` as [`header_line`] reads it, in one pass; `None` leaves the line (and
/// its error) to [`header_line`].
#[inline]
fn header_line_fast(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut i = 0;
    while i < line.len() && is_token_char(line[i]) {
        i += 1;
    }
    if i == 0 || line.get(i) != Some(&b':') {
        return None;
    }
    let mut v = i + 1;
    while v < line.len() && matches!(line[v], b' ' | b'\t') {
        v += 1;
    }
    let mut e = line.len();
    while e > v && matches!(line[e - 1], b' ' | b'\t') {
        e -= 1;
    }
    Some((&line[..i], &line[v..e]))
}

/// 1 to 19 decimal digits (always a `u64`) at `s[*at..]`; `None` for more or none.
#[inline]
fn digits_fast(s: &[u8], at: &mut usize) -> Option<u64> {
    let from = *at;
    let mut v = 0u64;
    while *at < s.len() && s[*at].is_ascii_digit() {
        v = v.wrapping_mul(10).wrapping_add(u64::from(s[*at] - b'0'));
        *at += 1;
    }
    (1..=19).contains(&(*at - from)).then_some(v)
}

#[inline]
fn star_or_digits_fast(s: &[u8], at: &mut usize) -> Option<Option<u64>> {
    if s.get(*at) == Some(&b'*') {
        *at += 1;
        Some(None)
    } else {
        digits_fast(s, at).map(Some)
    }
}

/// `start-end/total` as [`byte_range`] reads it, for numbers of up to 19 digits; `None` leaves
/// the value to [`byte_range`].
#[inline]
fn byte_range_fast(v: &[u8]) -> Option<ByteRange> {
    let mut at = 0;
    let start = digits_fast(v, &mut at)?;
    if v.get(at) != Some(&b'-') {
        return None;
    }
    at += 1;
    let end = star_or_digits_fast(v, &mut at)?;
    if v.get(at) != Some(&b'/') {
        return None;
    }
    at += 1;
    let total = star_or_digits_fast(v, &mut at)?;
    (at == v.len()).then_some(ByteRange { start, end, total })
}

/// `ns SP code [SP comment]` as [`status`] reads it; `None` leaves the value to [`status`].
#[inline]
fn status_fast(v: &[u8]) -> Option<(u16, u16, Option<&[u8]>)> {
    let d3 = |a: u8, b: u8, c: u8| {
        (a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit())
            .then(|| u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
    };
    match v {
        [a, b, c, b' ', d, e, f, tail @ ..] => {
            let ns = d3(*a, *b, *c)?;
            let code = d3(*d, *e, *f)?;
            match tail {
                [] => Some((ns, code, None)),
                [b' ', comment @ ..] => Some((ns, code, Some(comment))),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Turns a located frame (at the start of `frame`) into a [`Message`] of slices of `frame`.
fn build(frame: &Bytes, loc: &FrameLoc) -> Result<Message, ParseError> {
    let buf: &[u8] = frame;
    let slice = |s: &[u8]| frame.slice_ref(s);
    // Frequent short values as statics: equal bytes, no reference count to touch per frame.
    let token = |s: &[u8]| match s {
        b"OK" => Bytes::from_static(b"OK"),
        b"application/octet-stream" => Bytes::from_static(b"application/octet-stream"),
        b"text/plain" => Bytes::from_static(b"text/plain"),
        _ => frame.slice_ref(s),
    };
    // A path value: the common one-URI form first (pure ASCII, so no UTF-8 check needed),
    // anything else checked for UTF-8 and then parsed in full.
    let path = |v: &[u8]| -> Result<Vec<Uri>, ParseError> {
        match parse_path_fast(frame, v) {
            Some(p) => Ok(p),
            None => {
                check_utf8(v)?;
                Ok(parse_path_in(frame, v)?)
            }
        }
    };

    let tid = &buf[5..5 + loc.tid_len];
    let kind = match loc.kind {
        LocKind::Method(a, b) => Kind::Request(match &buf[a..b] {
            b"SEND" => Method::Send,
            b"REPORT" => Method::Report,
            b"AUTH" => Method::Auth,
            other => Method::Other(slice(other)),
        }),
        LocKind::Response(code, comment) => {
            let comment = comment.map(|(a, b)| &buf[a..b]);
            if let Some(c) = comment {
                check_utf8(c)?;
            }
            Kind::Response {
                code,
                comment: comment.filter(|c| !c.is_empty()).map(token),
            }
        }
    };

    let mut to_path = None;
    let mut from_path = None;
    // To-Path and From-Path are not kept here; a frame without them is refused anyway.
    let mut headers = Vec::with_capacity(loc.lines.count.saturating_sub(2));
    let mut pos = loc.start_line_end + 2;
    for i in 0..loc.lines.count {
        // Lines were checked while locating: each ends with CRLF before `headers_end`.
        let cr = if i < loc.lines.recorded {
            loc.lines.cr[i] as usize
        } else {
            memchr(b'\r', &buf[pos..loc.headers_end]).map_or(loc.headers_end, |j| pos + j)
        };
        let line = &buf[pos..cr];
        pos = cr + 2;
        let (id, name, value) = match known_name(line) {
            Some((id, n)) => (id, &line[..n], trim_blanks(&line[n + 1..])),
            None => {
                let (name, value) = match header_line_fast(line) {
                    Some(nv) => nv,
                    None => header_line(line).map_err(|_| ParseError::BadHeader)?.1,
                };
                (Name::of(name), name, value)
            }
        };
        let h = match id {
            Name::ToPath => {
                if to_path.is_some() {
                    check_utf8(value)?;
                    return Err(ParseError::DuplicateHeader);
                }
                to_path = Some(path(value)?);
                continue;
            }
            Name::FromPath => {
                if from_path.is_some() {
                    check_utf8(value)?;
                    return Err(ParseError::DuplicateHeader);
                }
                from_path = Some(path(value)?);
                continue;
            }
            Name::UsePath => Header::UsePath(path(value)?),
            _ => {
                check_utf8(value)?;
                other_header(frame, id, name, value, token)?
            }
        };
        headers.push(h);
    }

    Ok(Message {
        transaction_id: slice(tid),
        kind,
        to_path: to_path.ok_or(ParseError::MissingToPath)?,
        from_path: from_path.ok_or(ParseError::MissingFromPath)?,
        headers,
        body: frame.slice(loc.body_start..loc.body_end),
        continuation: loc.flag,
    })
}

/// The header names this parser knows (compared case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    ToPath,
    FromPath,
    UsePath,
    MessageId,
    ByteRange,
    SuccessReport,
    FailureReport,
    Status,
    ContentType,
    WwwAuthenticate,
    Authorization,
    Expires,
    MinExpires,
    MaxExpires,
    Other,
}

impl Name {
    fn of(name: &[u8]) -> Name {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match name.len() {
            7 if is(b"To-Path") => Name::ToPath,
            9 if is(b"From-Path") => Name::FromPath,
            8 if is(b"Use-Path") => Name::UsePath,
            10 if is(b"Message-ID") => Name::MessageId,
            10 if is(b"Byte-Range") => Name::ByteRange,
            14 if is(b"Success-Report") => Name::SuccessReport,
            14 if is(b"Failure-Report") => Name::FailureReport,
            6 if is(b"Status") => Name::Status,
            12 if is(b"Content-Type") => Name::ContentType,
            16 if is(b"WWW-Authenticate") => Name::WwwAuthenticate,
            13 if is(b"Authorization") => Name::Authorization,
            7 if is(b"Expires") => Name::Expires,
            11 if is(b"Min-Expires") => Name::MinExpires,
            11 if is(b"Max-Expires") => Name::MaxExpires,
            _ => Name::Other,
        }
    }
}

/// A line that starts with a frequent header name spelled as in RFC 4975, then `:`: the name
/// and its length. `None` sends the line to the general reading.
#[inline]
fn known_name(line: &[u8]) -> Option<(Name, usize)> {
    // Each comparison is with a literal, so it compiles to a few word compares.
    let hit = match line.first()? {
        b'T' if line.starts_with(b"To-Path:") => Name::ToPath,
        b'F' if line.starts_with(b"From-Path:") => Name::FromPath,
        b'F' if line.starts_with(b"Failure-Report:") => Name::FailureReport,
        b'M' if line.starts_with(b"Message-ID:") => Name::MessageId,
        b'B' if line.starts_with(b"Byte-Range:") => Name::ByteRange,
        b'S' if line.starts_with(b"Success-Report:") => Name::SuccessReport,
        b'S' if line.starts_with(b"Status:") => Name::Status,
        b'C' if line.starts_with(b"Content-Type:") => Name::ContentType,
        _ => return None,
    };
    let len = match hit {
        Name::ToPath => 7,
        Name::FromPath => 9,
        Name::FailureReport | Name::SuccessReport => 14,
        Name::MessageId | Name::ByteRange => 10,
        Name::Status => 6,
        _ => 12,
    };
    Some((hit, len))
}

/// Without the blanks (SP, HTAB) at either end, as [`header_line`] leaves a value.
#[inline]
fn trim_blanks(v: &[u8]) -> &[u8] {
    let blank = |b: u8| b == b' ' || b == b'\t';
    let mut a = 0;
    let mut b = v.len();
    while a < b && blank(v[a]) {
        a += 1;
    }
    while b > a && blank(v[b - 1]) {
        b -= 1;
    }
    &v[a..b]
}

/// A header other than the path headers, its value known to be UTF-8.
#[inline]
fn other_header(
    frame: &Bytes,
    id: Name,
    name: &[u8],
    value: &[u8],
    token: impl Fn(&[u8]) -> Bytes,
) -> Result<Header, ParseError> {
    let slice = |s: &[u8]| frame.slice_ref(s);
    Ok(match id {
        Name::MessageId => {
            if value.is_empty() || !value.iter().all(|&b| is_ident_char(b)) {
                return Err(ParseError::BadHeader);
            }
            Header::MessageId(slice(value))
        }
        Name::ByteRange => Header::ByteRange(parse_byte_range(value)?),
        Name::SuccessReport => Header::SuccessReport(parse_yes_no(value)?),
        Name::FailureReport => Header::FailureReport(if value.eq_ignore_ascii_case(b"partial") {
            FailureReport::Partial
        } else if parse_yes_no(value)? {
            FailureReport::Yes
        } else {
            FailureReport::No
        }),
        Name::Status => {
            let (namespace, code, comment) = match status_fast(value) {
                Some(st) => st,
                None => status(value).map_err(|_| ParseError::BadStatus)?.1,
            };
            Header::Status(Status {
                namespace,
                code,
                comment: comment.filter(|c| !c.is_empty()).map(token),
            })
        }
        Name::ContentType => {
            if value.is_empty() {
                return Err(ParseError::BadHeader);
            }
            Header::ContentType(token(value))
        }
        Name::WwwAuthenticate => Header::WwwAuthenticate(slice(value)),
        Name::Authorization => Header::Authorization(slice(value)),
        Name::Expires => Header::Expires(parse_u32(value)?),
        Name::MinExpires => Header::MinExpires(parse_u32(value)?),
        Name::MaxExpires => Header::MaxExpires(parse_u32(value)?),
        // The path headers are read by the caller.
        Name::ToPath | Name::FromPath | Name::UsePath | Name::Other => Header::Other {
            name: slice(name),
            value: slice(value),
        },
    })
}

/// Parses one frame from the start of `buf`. The message's values are slices of `buf`.
pub fn parse(buf: &Bytes, limits: &Limits) -> Result<Parsed, ParseError> {
    match locate(buf, limits, &mut None)? {
        Some(loc) => Ok(Parsed::Complete(build(buf, &loc)?, loc.total)),
        None => Ok(Parsed::Partial),
    }
}

/// A stream decoder: feed bytes as they arrive (or read them straight in with
/// [`FrameDecoder::read_from`]), take complete frames out.
///
/// The bytes live in one block: `block[start..end]` are received and not yet taken as frames,
/// `block[end..]` is room that is already initialised, so a read goes straight into it. A frame
/// taken out is a slice of the block (no copy). Before the next read the block is used again in
/// place when no frame refers to it any more (the usual case: frames are handled, then
/// dropped); only the bytes of a frame still arriving are moved to its front, and only when the
/// room left is short. A block a frame still holds is left to it and a new one is taken.
///
/// After an error for which [`ParseError::is_fatal`] is true the stream cannot be resynchronised
/// and every later call to [`FrameDecoder::next`] returns that error. Other errors (a malformed
/// header in a well-framed frame) consume that frame only, so the caller can answer it with
/// [`ParseError::status_code`] and go on.
#[derive(Debug)]
pub struct FrameDecoder {
    block: Bytes,
    start: usize,
    end: usize,
    limits: Limits,
    pending: Option<Pending>,
    failed: Option<ParseError>,
    /// Let the buffer go whenever every byte received was taken as frames (see
    /// [`FrameDecoder::release_when_idle`]).
    release_idle: bool,
    /// Bytes [`FrameDecoder::read_from`] has read, up to [`LARGE_READS_AFTER`]: its blocks are
    /// [`MIN_READ_ROOM`] large until then and twice its `max` after, so a connection that only
    /// ever gets a few small frames (a delivery's one SEND after its TLS handshake) never
    /// allocates, zeroes and faults in the large block a bulk transfer reads into.
    read_total: usize,
}

/// Size of the first block of a decoder fed with [`FrameDecoder::feed`] (unless it lets its
/// buffer go when idle: then just what arrived).
const FEED_BLOCK: usize = 16 * 1024;
/// [`FrameDecoder::read_from`] reads into at least this much room (or `max`, or half its block,
/// if smaller), and its first blocks are this large: a shorter room left at the end of the block
/// is made by moving the pending bytes to its front.
const MIN_READ_ROOM: usize = 64 * 1024;
/// Bytes read after which [`FrameDecoder::read_from`] reads into blocks of twice its `max`.
const LARGE_READS_AFTER: usize = 256 * 1024;

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(Limits::default())
    }
}

impl FrameDecoder {
    pub fn new(limits: Limits) -> Self {
        FrameDecoder {
            block: Bytes::new(),
            start: 0,
            end: 0,
            limits,
            pending: None,
            failed: None,
            release_idle: false,
            read_total: 0,
        }
    }

    /// From now on the buffer is let go whenever every byte received was taken as frames, and
    /// allocated again (as large as what arrives) with the next bytes. For a connection that
    /// waits for small frames most of its life: a delivery gets a few responses per read, and
    /// 10,000 concurrent deliveries each keeping a 16 KiB buffer held 160 MiB for them.
    pub fn release_when_idle(mut self) -> Self {
        self.release_idle = true;
        if self.start == self.end {
            self.let_go();
        }
        self
    }

    /// Bytes the buffer holds room for (what it keeps in memory while it waits).
    pub fn capacity(&self) -> usize {
        self.block.len()
    }

    /// Appends received bytes (a copy; see [`FrameDecoder::read_from`]).
    pub fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let first = if self.release_idle { 0 } else { FEED_BLOCK };
        let mut block = self.writable(data.len(), first, false);
        block[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
        self.block = block.freeze();
    }

    /// Reads once from `r` (at most `max` bytes) straight into the buffer: no copy between the
    /// socket and the frames taken out. Returns what the read returned (`Ok(0)`: end of
    /// stream); the bytes read are [`FrameDecoder::last`]`(n)`.
    pub fn read_from(&mut self, r: &mut impl std::io::Read, max: usize) -> std::io::Result<usize> {
        let max = max.max(1);
        let target = if self.read_total < LARGE_READS_AFTER {
            MIN_READ_ROOM.min(2 * max)
        } else {
            2 * max
        };
        // Room for a read: up to half a block, so that pending bytes of a partial frame move to
        // the front of a small block rather than into a new one.
        let mut block = self.writable(max.min(MIN_READ_ROOM).min(target / 2), target, true);
        let room = (block.len() - self.end).min(max);
        let got = r.read(&mut block[self.end..self.end + room]);
        if let Ok(n) = got {
            self.end += n;
            self.read_total = self.read_total.saturating_add(n).min(LARGE_READS_AFTER);
        }
        self.block = block.freeze();
        got
    }

    /// The last `n` bytes received (at most [`FrameDecoder::buffered`]).
    pub fn last(&self, n: usize) -> &[u8] {
        &self.block[self.end - n.min(self.end - self.start)..self.end]
    }

    /// The block, writable, with at least `room` bytes after the pending ones. A block no frame
    /// refers to any more is used in place (when `grow`, only if it holds at least `first`
    /// bytes); otherwise, or when it is too small, a new one of at least `first` bytes (twice
    /// the pending bytes when they outgrow it) takes the pending bytes.
    fn writable(&mut self, room: usize, first: usize, grow: bool) -> BytesMut {
        let pending = self.end - self.start;
        let old = std::mem::take(&mut self.block);
        let old = match old.try_into_mut() {
            Ok(block) if grow && block.len() < first => block.freeze(),
            Ok(mut block) => {
                if pending == 0 {
                    (self.start, self.end) = (0, 0);
                }
                if block.len() - self.end >= room {
                    return block;
                }
                if block.len() - pending >= room && pending <= block.len() / 2 {
                    block.copy_within(self.start..self.end, 0);
                    (self.start, self.end) = (0, pending);
                    return block;
                }
                block.freeze()
            }
            Err(shared) => shared,
        };
        let size = first.max(pending + room).max(2 * pending);
        let mut block = BytesMut::zeroed(size);
        block[..pending].copy_from_slice(&old[self.start..self.end]);
        (self.start, self.end) = (0, pending);
        block
    }

    fn let_go(&mut self) {
        self.block = Bytes::new();
        (self.start, self.end) = (0, 0);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<Message>, ParseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.start == self.end {
            if self.release_idle && !self.block.is_empty() {
                self.let_go();
            }
            return Ok(None);
        }
        let pending = &self.block[self.start..self.end];
        let loc = match locate(pending, &self.limits, &mut self.pending) {
            Ok(Some(loc)) => loc,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.failed = Some(e);
                return Err(e);
            }
        };
        let frame = self.block.slice(self.start..self.start + loc.total);
        self.start += loc.total;
        build(&frame, &loc).map(Some)
    }
}

impl Extend<u8> for FrameDecoder {
    fn extend<T: IntoIterator<Item = u8>>(&mut self, iter: T) {
        self.feed(&iter.into_iter().collect::<Vec<u8>>());
    }
}

impl<'a> Extend<&'a u8> for FrameDecoder {
    fn extend<T: IntoIterator<Item = &'a u8>>(&mut self, iter: T) {
        self.feed(&iter.into_iter().copied().collect::<Vec<u8>>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::uri::Host;

    const SEND: &[u8] = b"MSRP a786hjs2 SEND\r\n\
To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
Message-ID: 87652491\r\n\
Byte-Range: 1-25/25\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hey Bob, are you there?\r\n\
-------a786hjs2$\r\n";

    const OK: &[u8] = b"MSRP a786hjs2 200 OK\r\n\
To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
-------a786hjs2$\r\n";

    const REPORT: &[u8] = b"MSRP dkei38sd REPORT\r\n\
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-106/106\r\n\
Status: 000 200 OK\r\n\
-------dkei38sd$\r\n";

    fn parse_all(s: &[u8]) -> Result<Parsed, ParseError> {
        parse(&Bytes::copy_from_slice(s), &Limits::default())
    }

    fn complete(s: &[u8]) -> Message {
        match parse_all(s) {
            Ok(Parsed::Complete(m, n)) => {
                assert_eq!(n, s.len());
                m
            }
            other => panic!("not complete: {other:?}"),
        }
    }

    fn err(s: &[u8]) -> ParseError {
        match parse_all(s) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parses_send() {
        let m = complete(SEND);
        assert_eq!(&m.transaction_id[..], b"a786hjs2");
        assert_eq!(m.method(), Some(&Method::Send));
        assert_eq!(m.to_path.len(), 1);
        assert_eq!(m.to_path[0].port, Some(12763));
        assert_eq!(
            m.from_path[0].host,
            Host::Name(Bytes::from_static(b"atlanta.example.com"))
        );
        assert_eq!(m.message_id().map(|b| &b[..]), Some(&b"87652491"[..]));
        assert_eq!(
            m.byte_range(),
            Some(ByteRange {
                start: 1,
                end: Some(25),
                total: Some(25)
            })
        );
        assert_eq!(m.content_type().map(|b| &b[..]), Some(&b"text/plain"[..]));
        assert_eq!(&m.body[..], b"Hey Bob, are you there?");
        assert_eq!(m.continuation, Continuation::End);
    }

    #[test]
    fn body_is_a_slice_of_the_input() {
        let input = Bytes::copy_from_slice(SEND);
        let Ok(Parsed::Complete(m, _)) = parse(&input, &Limits::default()) else {
            panic!("no frame");
        };
        let off = m.body.as_ptr() as usize - input.as_ptr() as usize;
        assert_eq!(&SEND[off..off + m.body.len()], &m.body[..]);
    }

    #[test]
    fn parses_response_and_report() {
        let m = complete(OK);
        assert_eq!(
            m.kind,
            Kind::Response {
                code: 200,
                comment: Some(Bytes::from_static(b"OK"))
            }
        );
        assert!(m.body.is_empty());
        let m = complete(b"MSRP abcd 481\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n-------abcd$\r\n");
        assert_eq!(m.response_code(), Some(481));
        assert_eq!(
            m.kind,
            Kind::Response {
                code: 481,
                comment: None
            }
        );
        let r = complete(REPORT);
        assert_eq!(r.method(), Some(&Method::Report));
        let st = r.status().unwrap();
        assert_eq!((st.namespace, st.code), (0, 200));
        assert_eq!(st.comment.as_deref(), Some(&b"OK"[..]));
    }

    #[test]
    fn continuation_flags_and_star_ranges() {
        for (flag, c) in [
            (b'+', Continuation::More),
            (b'$', Continuation::End),
            (b'#', Continuation::Abort),
        ] {
            let mut f = b"MSRP dkei38sd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\nMessage-ID: 4564dpWd\r\nByte-Range: 1-*/*\r\nContent-Type: text/plain\r\n\r\nabcd\r\n-------dkei38sd".to_vec();
            f.push(flag);
            f.extend_from_slice(b"\r\n");
            let m = complete(&f);
            assert_eq!(m.continuation, c);
            assert_eq!(&m.body[..], b"abcd");
            assert_eq!(
                m.byte_range(),
                Some(ByteRange {
                    start: 1,
                    end: None,
                    total: None
                })
            );
        }
    }

    #[test]
    fn empty_body_variants() {
        let with_crlf = b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\nContent-Type: text/plain\r\n\r\n\r\n-------abcd$\r\n";
        assert!(complete(with_crlf).body.is_empty());
        let without = b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\nContent-Type: text/plain\r\n\r\n-------abcd$\r\n";
        assert!(complete(without).body.is_empty());
    }

    #[test]
    fn body_holding_lookalike_end_lines() {
        let f = b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\nContent-Type: text/plain\r\n\r\nx\r\n-------abcde$\r\n-------abcd!\r\n-------abcd$x\r\n-------abcd+\r\n";
        let m = complete(f);
        assert_eq!(
            &m.body[..],
            b"x\r\n-------abcde$\r\n-------abcd!\r\n-------abcd$x"
        );
        assert_eq!(m.continuation, Continuation::More);
    }

    #[test]
    fn header_names_are_case_insensitive_and_unknown_kept() {
        let f = b"MSRP abcd SEND\r\nfrom-path: msrp://c/d;tcp\r\nTO-PATH: msrp://a/b;tcp\r\nX-Foo:  bar baz \r\nsuccess-report: YES\r\nFailure-Report: partial\r\nExpires: 300\r\nUse-Path: msrps://r/1;tcp msrps://r/2;tcp\r\n-------abcd$\r\n";
        let m = complete(f);
        assert_eq!(&m.to_path[0].session_id[..], b"b");
        assert_eq!(
            m.headers[0],
            Header::Other {
                name: Bytes::from_static(b"X-Foo"),
                value: Bytes::from_static(b"bar baz")
            }
        );
        assert!(m.success_report());
        assert_eq!(m.failure_report(), FailureReport::Partial);
        assert_eq!(m.headers[3], Header::Expires(300));
        assert!(matches!(&m.headers[4], Header::UsePath(p) if p.len() == 2));
    }

    #[test]
    fn unknown_method_kept() {
        let m = complete(b"MSRP abcd NICKNAME\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n-------abcd$\r\n");
        assert_eq!(
            m.method(),
            Some(&Method::Other(Bytes::from_static(b"NICKNAME")))
        );
    }

    #[test]
    fn every_prefix_is_partial() {
        for frame in [SEND, OK, REPORT] {
            for n in 0..frame.len() {
                assert_eq!(
                    parse_all(&frame[..n]),
                    Ok(Parsed::Partial),
                    "prefix {n} of {}",
                    String::from_utf8_lossy(frame)
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_not_consumed() {
        let mut two = SEND.to_vec();
        two.extend_from_slice(OK);
        let Ok(Parsed::Complete(_, n)) = parse_all(&two) else {
            panic!()
        };
        assert_eq!(n, SEND.len());
        assert_eq!(complete(&two[n..]).response_code(), Some(200));
    }

    fn decode_with_splits(stream: &[u8], splits: &[usize]) -> Vec<Result<Message, ParseError>> {
        let mut d = FrameDecoder::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &s in splits.iter().chain(std::iter::once(&stream.len())) {
            let s = s.clamp(last, stream.len());
            d.feed(&stream[last..s]);
            last = s;
            loop {
                match d.next() {
                    Ok(Some(m)) => out.push(Ok(m)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        if e.is_fatal() {
                            return out;
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn split_anywhere_gives_the_same_frames() {
        let stream: Vec<u8> = [SEND, OK, REPORT].concat();
        let whole = decode_with_splits(&stream, &[]);
        assert_eq!(whole.len(), 3);
        for i in 0..=stream.len() {
            for j in (i..=stream.len()).step_by(7) {
                assert_eq!(decode_with_splits(&stream, &[i, j]), whole, "split {i} {j}");
            }
        }
        let bytewise: Vec<usize> = (0..stream.len()).collect();
        assert_eq!(decode_with_splits(&stream, &bytewise), whole);
    }

    #[test]
    fn an_idle_decoder_lets_its_buffer_go() {
        let stream: Vec<u8> = [OK, REPORT, OK].concat();
        let take_all = |d: &mut FrameDecoder| {
            let mut n = 0;
            while d.next().unwrap().is_some() {
                n += 1;
            }
            n
        };
        // A plain decoder keeps its buffer between frames.
        let mut plain = FrameDecoder::default();
        plain.feed(&stream);
        assert_eq!(take_all(&mut plain), 3);
        assert!(plain.capacity() > 10 * 1024);
        let mut d = FrameDecoder::default().release_when_idle();
        assert_eq!(d.capacity(), 0);
        d.feed(&stream);
        assert!(d.capacity() >= stream.len());
        assert_eq!(take_all(&mut d), 3);
        assert_eq!(d.capacity(), 0);
        // A frame split across reads: its first part is kept, then let go once it is whole.
        d.feed(&OK[..10]);
        assert_eq!(take_all(&mut d), 0);
        assert!(d.capacity() >= 10);
        d.feed(&OK[10..]);
        assert_eq!(take_all(&mut d), 1);
        assert_eq!(d.capacity(), 0);
        // Same frames as a decoder that keeps its buffer, however the bytes are split.
        for i in 0..stream.len() {
            let mut d = FrameDecoder::default().release_when_idle();
            d.feed(&stream[..i]);
            let mut n = take_all(&mut d);
            d.feed(&stream[i..]);
            n += take_all(&mut d);
            assert_eq!(n, 3, "split at {i}");
        }
    }

    /// A reader giving out `data` in pieces of at most `piece` bytes.
    struct Pieces<'a> {
        data: &'a [u8],
        piece: usize,
    }

    impl std::io::Read for Pieces<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.data.len().min(self.piece).min(out.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn send_frame(tid: &str, body: &[u8]) -> Vec<u8> {
        let mut f = format!(
            "MSRP {tid} SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n\
             Message-ID: m\r\nByte-Range: 1-*/*\r\nContent-Type: a/b\r\n\r\n"
        )
        .into_bytes();
        f.extend_from_slice(body);
        f.extend_from_slice(format!("\r\n-------{tid}+\r\n").as_bytes());
        f
    }

    #[test]
    fn reads_go_straight_into_one_block_used_again_in_place() {
        // 20 frames of 10,000 bytes (fewer than LARGE_READS_AFTER) read 4,096 bytes at a time:
        // frames handled and dropped as they come, so every frame is a slice of the same block
        // (never copied out of a read buffer, never a new allocation).
        let body = vec![b'x'; 10_000];
        let stream: Vec<u8> = (0..20)
            .flat_map(|i| send_frame(&format!("tid{i:02}"), &body))
            .collect();
        let mut r = Pieces {
            data: &stream,
            piece: 4096,
        };
        let mut d = FrameDecoder::default();
        let mut at = Vec::new();
        while d.read_from(&mut r, 64 * 1024).unwrap() > 0 {
            while let Some(m) = d.next().unwrap() {
                assert_eq!(m.body, body);
                at.push(m.body.as_ptr() as usize);
            }
        }
        assert_eq!(at.len(), 20);
        assert_eq!(
            d.capacity(),
            MIN_READ_ROOM,
            "one block of the first size (no read filled its room)"
        );
        let spread = at.iter().max().unwrap() - at.iter().min().unwrap();
        assert!(
            spread < d.capacity(),
            "frames came from more than one block"
        );
    }

    #[test]
    fn read_blocks_grow_only_for_bulk() {
        // A connection that gets a few small frames keeps the first block; one that has read
        // more than LARGE_READS_AFTER moves to blocks of twice `max`.
        let small: Vec<u8> = (0..100)
            .flat_map(|i| send_frame(&format!("tid{i:03}"), b"hello"))
            .collect();
        let one = send_frame("tid000", b"hello").len();
        let mut r = Pieces {
            data: &small,
            piece: one,
        };
        let mut d = FrameDecoder::default();
        let mut n = 0;
        while d.read_from(&mut r, 256 * 1024).unwrap() > 0 {
            while d.next().unwrap().is_some() {
                n += 1;
            }
        }
        assert!(small.len() < LARGE_READS_AFTER);
        assert_eq!((n, d.capacity()), (100, MIN_READ_ROOM));

        let body = vec![b'y'; 100_000];
        let bulk: Vec<u8> = (0..60)
            .flat_map(|i| send_frame(&format!("tid{i:02}"), &body))
            .collect();
        let mut r = Pieces {
            data: &bulk,
            piece: usize::MAX,
        };
        let mut d = FrameDecoder::default();
        let mut sizes = vec![];
        let mut n = 0;
        while d.read_from(&mut r, 256 * 1024).unwrap() > 0 {
            sizes.push(d.capacity());
            while let Some(m) = d.next().unwrap() {
                assert!(m.body == body);
                n += 1;
            }
        }
        assert_eq!(n, 60);
        assert_eq!(d.capacity(), 512 * 1024, "grown to twice max: {sizes:?}");
        assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
        assert_eq!(sizes[0], MIN_READ_ROOM);
    }

    #[test]
    fn frames_kept_alive_keep_their_bytes() {
        // Frames kept (not dropped) while later ones are read: a kept frame's block is never
        // written again, so every kept body stays as it was received, whatever the piece size.
        for piece in [1, 7, 4096, 70_000] {
            let frames: Vec<Vec<u8>> = (0..30u8)
                .map(|i| {
                    send_frame(
                        &format!("tid{i:02}"),
                        &vec![b'a' + i % 26; 3000 + 997 * i as usize],
                    )
                })
                .collect();
            let stream = frames.concat();
            let mut r = Pieces {
                data: &stream,
                piece,
            };
            let mut d = FrameDecoder::default();
            let mut kept = Vec::new();
            while d.read_from(&mut r, 16 * 1024).unwrap() > 0 {
                while let Some(m) = d.next().unwrap() {
                    kept.push(m);
                }
            }
            assert_eq!(kept.len(), 30, "piece {piece}");
            for (i, m) in kept.iter().enumerate() {
                let want = vec![b'a' + (i % 26) as u8; 3000 + 997 * i];
                assert!(m.body == want, "frame {i}, piece {piece}");
            }
        }
    }

    #[test]
    fn one_byte_feeding_of_a_big_body_is_linear() {
        let body = vec![b'x'; 512 * 1024];
        let mut f = b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\nContent-Type: a/b\r\n\r\n".to_vec();
        f.extend_from_slice(&body);
        f.extend_from_slice(b"\r\n-------abcd$\r\n");
        let mut d = FrameDecoder::default();
        let t = std::time::Instant::now();
        let mut got = None;
        for b in &f {
            d.feed(std::slice::from_ref(b));
            if let Some(m) = d.next().unwrap() {
                got = Some(m);
            }
        }
        assert_eq!(got.unwrap().body.len(), body.len());
        // Quadratic rescanning would take minutes; linear takes well under a second.
        assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
    }

    #[test]
    fn error_header_block_too_large() {
        let mut f =
            b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\nX-Big: "
                .to_vec();
        f.extend(std::iter::repeat_n(b'a', 9000));
        f.extend_from_slice(b"\r\n-------abcd$\r\n");
        assert_eq!(err(&f), ParseError::HeaderBlockTooLarge);
        // Also while the line is still incomplete.
        assert_eq!(err(&f[..8500]), ParseError::HeaderBlockTooLarge);
    }

    #[test]
    fn error_too_many_headers() {
        let mut f =
            b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n".to_vec();
        for _ in 0..30 {
            f.extend_from_slice(b"X: y\r\n");
        }
        let mut ok = f.clone();
        ok.extend_from_slice(b"-------abcd$\r\n");
        assert_eq!(complete(&ok).headers.len(), 30);
        f.extend_from_slice(b"X: y\r\n-------abcd$\r\n");
        assert_eq!(err(&f), ParseError::TooManyHeaders);
    }

    #[test]
    fn error_body_too_large() {
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        let head = b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\nContent-Type: a/b\r\n\r\n";
        let frame = |n: usize| {
            let mut f = head.to_vec();
            f.extend(std::iter::repeat_n(b'z', n));
            f.extend_from_slice(b"\r\n-------abcd$\r\n");
            Bytes::from(f)
        };
        assert!(
            matches!(parse(&frame(10), &limits), Ok(Parsed::Complete(m, _)) if m.body.len() == 10)
        );
        assert_eq!(parse(&frame(11), &limits), Err(ParseError::BodyTooLarge));
        assert_eq!(ParseError::BodyTooLarge.status_code(), 413);
        // Detected without waiting for the end-line.
        let mut f = head.to_vec();
        f.extend(std::iter::repeat_n(b'z', 40));
        assert_eq!(
            parse(&Bytes::from(f), &limits),
            Err(ParseError::BodyTooLarge)
        );
    }

    #[test]
    fn error_missing_paths() {
        assert_eq!(
            err(b"MSRP abcd SEND\r\nFrom-Path: msrp://c/d;tcp\r\n-------abcd$\r\n"),
            ParseError::MissingToPath
        );
        assert_eq!(
            err(b"MSRP abcd 200 OK\r\nTo-Path: msrp://c/d;tcp\r\n-------abcd$\r\n"),
            ParseError::MissingFromPath
        );
        assert_eq!(
            err(b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n-------abcd$\r\n"),
            ParseError::DuplicateHeader
        );
    }

    fn with_header(h: &[u8]) -> Vec<u8> {
        let mut f =
            b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n".to_vec();
        f.extend_from_slice(h);
        f.extend_from_slice(b"\r\n-------abcd$\r\n");
        f
    }

    #[test]
    fn error_bad_byte_range() {
        for v in [
            &b"Byte-Range: 1-2"[..],
            b"Byte-Range: x-2/3",
            b"Byte-Range: 0-2/3",
            b"Byte-Range: 5-2/9",
            b"Byte-Range: 1-9/3",
            b"Byte-Range: 1-*/99999999999999999999999",
            b"Byte-Range: 1 - 2/3",
        ] {
            assert_eq!(err(&with_header(v)), ParseError::BadByteRange, "{v:?}");
        }
        assert!(complete(&with_header(b"Byte-Range: 1-0/0"))
            .byte_range()
            .is_some());
        assert!(complete(&with_header(b"Byte-Range: 1-10/*"))
            .byte_range()
            .is_some());
    }

    #[test]
    fn error_bad_utf8() {
        assert_eq!(err(&with_header(b"X-Name: caf\xe9")), ParseError::BadUtf8);
        assert_eq!(
            complete(&with_header("X-Name: café".as_bytes()))
                .headers
                .len(),
            1
        );
    }

    #[test]
    fn error_bad_end_line() {
        assert_eq!(
            err(b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n-------abce$\r\n"),
            ParseError::BadEndLine
        );
        assert_eq!(
            err(b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n-------abcd?\r\n"),
            ParseError::BadEndLine
        );
    }

    #[test]
    fn error_bare_cr_or_lf() {
        assert_eq!(
            err(b"MSRP abcd SEND\nTo-Path: msrp://a/b;tcp\r\n"),
            ParseError::BareCrOrLf
        );
        assert_eq!(
            err(b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\n"),
            ParseError::BareCrOrLf
        );
        assert_eq!(
            err(b"MSRP abcd SEND\r\nTo-Path: msrp://a/b;tcp\rX\r\n"),
            ParseError::BareCrOrLf
        );
        // Known before the line ends.
        assert_eq!(err(b"MSRP abcd SEND\r\nTo-Pa\rth"), ParseError::BareCrOrLf);
    }

    #[test]
    fn error_bad_start_line() {
        for f in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"MSRX",
            b"MSRP abc SEND\r\n",
            b"MSRP abcd send\r\n",
            b"MSRP abcd 20 OK\r\n",
            b"MSRP abcd\r\n",
            b"MSRP ab!d SEND\r\n",
        ] {
            assert_eq!(err(f), ParseError::BadStartLine, "{f:?}");
        }
        assert_eq!(
            err(b"MSRP abcd SEND x\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n-------abcd$\r\n"),
            ParseError::BadStartLine
        );
    }

    #[test]
    fn error_bad_header_uri_status() {
        assert_eq!(err(&with_header(b"NoColon")), ParseError::BadHeader);
        assert_eq!(err(&with_header(b" X: y")), ParseError::BadHeader);
        assert_eq!(
            err(&with_header(b"Success-Report: maybe")),
            ParseError::BadHeader
        );
        assert_eq!(err(&with_header(b"Expires: -1")), ParseError::BadHeader);
        assert_eq!(
            err(&with_header(b"Status: 000 2000")),
            ParseError::BadStatus
        );
        assert_eq!(err(&with_header(b"Status: 200")), ParseError::BadStatus);
        assert_eq!(
            err(b"MSRP abcd SEND\r\nTo-Path: sip:a\r\nFrom-Path: msrp://c/d;tcp\r\n-------abcd$\r\n"),
            ParseError::BadUri(UriError::BadScheme)
        );
    }

    #[test]
    fn non_fatal_errors_let_the_decoder_continue() {
        let bad = with_header(b"Byte-Range: nope");
        let stream = [&bad[..], OK].concat();
        let out = decode_with_splits(&stream, &[3]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Err(ParseError::BadByteRange));
        assert!(out[1].is_ok());
    }

    /// The fast paths give what the nom grammar gives, whenever they answer.
    fn fast_paths_agree(line: &[u8]) {
        if let Some(fast) = start_line_fast(line) {
            let (_, (tid, kind)) = start_line(line).expect("nom rejects what the fast path took");
            let off = |x: &[u8]| x.as_ptr() as usize - line.as_ptr() as usize;
            let kind = match kind {
                RawKind::Method(m) => LocKind::Method(off(m), off(m) + m.len()),
                RawKind::Response(code, c) => {
                    LocKind::Response(code, c.map(|c| (off(c), off(c) + c.len())))
                }
            };
            assert_eq!(fast, (tid.len(), kind), "{line:?}");
        }
        if let Some(fast) = header_line_fast(line) {
            assert_eq!(Ok(fast), header_line(line).map(|r| r.1), "{line:?}");
        }
        if let Some((id, n)) = known_name(line) {
            let (_, (name, value)) = header_line(line).expect("nom rejects a known name");
            assert_eq!((id, name), (Name::of(name), &line[..n]), "{line:?}");
            assert_eq!(trim_blanks(&line[n + 1..]), value, "{line:?}");
        }
        if let Some(fast) = byte_range_fast(line) {
            assert_eq!(Ok(fast), byte_range(line).map(|r| r.1), "{line:?}");
        }
        if let Some(fast) = status_fast(line) {
            assert_eq!(Ok(fast), status(line).map(|r| r.1), "{line:?}");
        }
    }

    #[test]
    fn fast_paths_take_the_usual_forms() {
        assert!(start_line_fast(b"MSRP a786hjs2 SEND").is_some());
        assert!(start_line_fast(b"MSRP a786hjs2 200 OK").is_some());
        assert!(start_line_fast(b"MSRP a786hjs2 481").is_some());
        assert!(header_line_fast(b"To-Path: msrp://a/b;tcp").is_some());
        assert_eq!(known_name(b"From-Path: x"), Some((Name::FromPath, 9)));
        assert_eq!(known_name(b"Status:000 200"), Some((Name::Status, 6)));
        assert_eq!(known_name(b"Stat: x"), None);
        assert!(byte_range_fast(b"1-*/10240").is_some());
        assert!(byte_range_fast(b"10241-20480/65536").is_some());
        assert!(byte_range_fast(b"1-2/99999999999999999999").is_none());
        assert!(status_fast(b"000 200 OK").is_some());
        for l in [
            &b"MSRP a786hjs2 SEND"[..],
            b"MSRP a786hjs2 200 OK",
            b"MSRP a786hjs2 200 ",
            b"MSRP a786hjs2 481",
            b"MSRP abc SEND",
            b"MSRP abcd 2000",
            b"MSRP -abc SEND",
            b"X-Foo:  bar baz \t",
            b"1-*/*",
            b"000 200 OK",
            b"000 200",
            b"000 2000",
        ] {
            fast_paths_agree(l);
        }
    }

    /// `find_end_prefix` answers as the finder does: `hay` from the alphabet of end-lines (so
    /// that words of dashes, CRLFs and near misses are common), an end-line prefix planted at
    /// `plant` when asked, searched from every start `skip` (the word alignment follows it).
    fn end_prefix_search_agrees(hay: &mut [u8], plant: Option<usize>, skip: usize) {
        if let Some(p) = plant {
            if hay.len() >= END_PREFIX.len() {
                let p = p % (hay.len() - END_PREFIX.len() + 1);
                hay[p..p + END_PREFIX.len()].copy_from_slice(END_PREFIX);
            }
        }
        let hay = &hay[skip.min(hay.len())..];
        assert_eq!(find_end_prefix(hay), END_FINDER.find(hay), "{hay:?}");
    }

    #[test]
    fn end_prefix_search_finds_what_the_finder_finds() {
        let random = |n: usize, seed: u64| {
            let mut x = seed;
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect::<Vec<u8>>()
        };
        // File-like data: the prefix at every offset of a 64 KiB body, across block edges.
        let body = random(65_536 + 64, 7);
        for p in (0..65_536)
            .step_by(97)
            .chain(120..140)
            .chain(65_400..65_536)
        {
            for skip in 0..5 {
                end_prefix_search_agrees(&mut body.clone(), Some(p), skip);
            }
        }
        end_prefix_search_agrees(&mut body.clone(), None, 0);
        // All dashes (every block a candidate, the finder takes over), with and without an end.
        for n in [0, 8, 9, 127, 128, 129, 2000, 70_000] {
            for plant in [None, Some(n / 2), Some(n)] {
                end_prefix_search_agrees(&mut vec![b'-'; n], plant, 0);
            }
        }
        // Dashes in words but no CRLF before them: blocks that are candidates and miss.
        let mut rules = b"-----BEGIN----- text ---------- more\r\n------ x\r-------".repeat(40);
        end_prefix_search_agrees(&mut rules, None, 0);
        let at = rules.len() - 9;
        end_prefix_search_agrees(&mut rules, Some(at), 3);
    }

    proptest::proptest! {
        #[test]
        fn fast_paths_agree_with_nom(s in "(MSRP [a-zA-Z0-9.=+%-]{0,34} ([A-Z]{0,4}|[0-9]{2,4}( [ -~]{0,4})?))|((To-Path|From-Path|Fr|Failure-Report|Message-ID|Byte-Range|Success-Report|Su|Status|Content-Type|[A-Za-z-]{0,4}):?[ \t]{0,2}[a-z \t]{0,3})|([0-9]{0,21}-([0-9*]{0,21})/[0-9*]{0,21})|([0-9]{2,4} [0-9]{2,4}( .{0,3})?)") {
            fast_paths_agree(s.as_bytes());
        }

        #[test]
        fn fast_paths_agree_on_random_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..24)) {
            fast_paths_agree(&data);
            let mut l = b"MSRP ".to_vec();
            l.extend_from_slice(&data);
            fast_paths_agree(&l);
        }

        #[test]
        fn end_prefix_search_agrees_on_random_data(
            hay in proptest::collection::vec(proptest::sample::select(b"\r\n--a".to_vec()), 0..3000),
            plant in proptest::option::of(0usize..3000),
            skip in 0usize..8,
        ) {
            end_prefix_search_agrees(&mut hay.clone(), plant, skip);
        }

        #[test]
        fn never_panics_on_random_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&Bytes::from(data.clone()), &Limits::default());
            let mut d = FrameDecoder::default();
            d.feed(&data);
            for _ in 0..4 { let _ = d.next(); }
        }

        #[test]
        fn never_panics_on_mutated_frames(pos in 0usize..200, byte: u8, cut in 0usize..300) {
            let mut f = [SEND, REPORT].concat();
            let p = pos % f.len();
            f[p] = byte;
            f.truncate(cut.max(1).min(f.len()));
            let _ = parse(&Bytes::from(f.clone()), &Limits { max_body_bytes: 16, max_header_bytes: 150, max_headers: 4 });
            let _ = parse(&Bytes::from(f), &Limits::default());
        }
    }
}
