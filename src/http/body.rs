//! Streaming body decoders: Content-Length and chunked (RFC 9112 §6.3, §7.1). Each takes bytes
//! as they arrive and hands back slices of its input (no copy, no whole-body buffer); the chunked
//! decoder keeps a few counters, never the bytes of a line.

use super::HttpError;

/// What one call to a decoder produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Body bytes, a slice of the input.
    Data(&'a [u8]),
    /// The input was used up without finishing; feed more.
    NeedMore,
    /// The body is complete; bytes after `consumed` belong to the next request.
    Done,
}

/// Decodes a body of known length.
#[derive(Debug, Clone)]
pub struct ContentLengthDecoder {
    remaining: u64,
}

impl ContentLengthDecoder {
    /// A decoder for `length` bytes; [`HttpError::PayloadTooLarge`] when it exceeds `max`.
    pub fn new(length: u64, max: Option<u64>) -> Result<Self, HttpError> {
        if max.is_some_and(|m| length > m) {
            return Err(HttpError::PayloadTooLarge);
        }
        Ok(ContentLengthDecoder { remaining: length })
    }

    /// Bytes of body still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// See the module contract: returns `(consumed, event)`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Decoded<'a>), HttpError> {
        if self.remaining == 0 {
            return Ok((0, Decoded::Done));
        }
        if input.is_empty() {
            return Ok((0, Decoded::NeedMore));
        }
        let n = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        self.remaining -= n as u64;
        Ok((n, Decoded::Data(&input[..n])))
    }

    /// The peer closed the connection: fine only when the body was complete.
    pub fn finish(&self) -> Result<(), HttpError> {
        if self.remaining == 0 {
            Ok(())
        } else {
            Err(HttpError::BodyTruncated)
        }
    }
}

/// Limits of the chunked decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// A chunk-size line including extensions, without CRLF.
    pub max_line: usize,
    /// The whole trailer section.
    pub max_trailers: usize,
    /// The decoded body (413 beyond), `None` for no limit.
    pub max_body: Option<u64>,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        ChunkedLimits {
            max_line: 4096,
            max_trailers: 8192,
            max_body: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Before the first hex digit of a chunk size.
    SizeStart,
    /// In the hex digits.
    Size,
    /// After the size: whitespace and chunk extensions, ignored up to CR.
    Ext,
    /// Saw the CR of the size line.
    SizeLf,
    /// In chunk data.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// Decodes `Transfer-Encoding: chunked`. Chunk extensions are ignored, trailers skipped.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: Chunked,
    limits: ChunkedLimits,
    /// The chunk size being read, then what is left of the chunk.
    size: u64,
    line_len: usize,
    trailer_len: usize,
    total: u64,
}

impl ChunkedDecoder {
    pub fn new(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            state: Chunked::SizeStart,
            limits,
            size: 0,
            line_len: 0,
            trailer_len: 0,
            total: 0,
        }
    }

    /// Whether the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == Chunked::Done
    }

    /// Decoded body bytes so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// See the module contract: returns `(consumed, event)`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Decoded<'a>), HttpError> {
        if self.state == Chunked::Done {
            return Ok((0, Decoded::Done));
        }
        let mut i = 0;
        while i < input.len() {
            if self.state == Chunked::Data {
                let n =
                    usize::try_from(self.size).map_or(input.len() - i, |s| s.min(input.len() - i));
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = Chunked::DataCr;
                }
                return Ok((i + n, Decoded::Data(&input[i..i + n])));
            }
            let b = input[i];
            i += 1;
            self.step(b)?;
            if self.state == Chunked::Done {
                return Ok((i, Decoded::Done));
            }
        }
        Ok((i, Decoded::NeedMore))
    }

    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        use Chunked::*;
        match self.state {
            SizeStart | Size => {
                if let Some(d) = hex_value(b) {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(d)))
                        .ok_or(HttpError::ChunkSizeOverflow)?;
                    self.state = Size;
                    self.count_line()?;
                } else if self.state == SizeStart {
                    return Err(HttpError::ChunkSizeInvalid);
                } else {
                    match b {
                        b';' | b' ' | b'\t' => {
                            self.state = Ext;
                            self.count_line()?;
                        }
                        b'\r' => self.state = SizeLf,
                        b'\n' => return Err(HttpError::ChunkBadLineEnd),
                        _ => return Err(HttpError::ChunkSizeInvalid),
                    }
                }
            }
            Ext => match b {
                b'\r' => self.state = SizeLf,
                b'\n' => return Err(HttpError::ChunkBadLineEnd),
                _ => self.count_line()?,
            },
            SizeLf => {
                if b != b'\n' {
                    return Err(HttpError::ChunkBadLineEnd);
                }
                self.line_len = 0;
                if self.size == 0 {
                    self.state = TrailerStart;
                } else {
                    self.total = self
                        .total
                        .checked_add(self.size)
                        .ok_or(HttpError::PayloadTooLarge)?;
                    if self.limits.max_body.is_some_and(|m| self.total > m) {
                        return Err(HttpError::PayloadTooLarge);
                    }
                    self.state = Data;
                }
            }
            DataCr => {
                if b != b'\r' {
                    return Err(HttpError::ChunkDataNoCrlf);
                }
                self.state = DataLf;
            }
            DataLf => {
                if b != b'\n' {
                    return Err(HttpError::ChunkDataNoCrlf);
                }
                self.state = SizeStart;
            }
            TrailerStart => match b {
                b'\r' => self.state = FinalLf,
                b'\n' => return Err(HttpError::ChunkBadLineEnd),
                _ => {
                    self.count_trailer()?;
                    self.state = TrailerLine;
                }
            },
            TrailerLine => match b {
                b'\r' => self.state = TrailerLf,
                b'\n' => return Err(HttpError::ChunkBadLineEnd),
                _ => self.count_trailer()?,
            },
            TrailerLf => {
                if b != b'\n' {
                    return Err(HttpError::ChunkBadLineEnd);
                }
                self.state = TrailerStart;
            }
            FinalLf => {
                if b != b'\n' {
                    return Err(HttpError::ChunkBadLineEnd);
                }
                self.state = Done;
            }
            Data | Done => {}
        }
        Ok(())
    }

    fn count_line(&mut self) -> Result<(), HttpError> {
        self.line_len += 1;
        if self.line_len > self.limits.max_line {
            return Err(HttpError::ChunkLineTooLong);
        }
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), HttpError> {
        self.trailer_len += 1;
        if self.trailer_len > self.limits.max_trailers {
            return Err(HttpError::TrailersTooLarge);
        }
        Ok(())
    }

    /// The peer closed the connection: fine only after the last chunk.
    pub fn finish(&self) -> Result<(), HttpError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(HttpError::BodyTruncated)
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The body decoder a request head calls for.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    Length(ContentLengthDecoder),
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    /// The decoder for `head`: chunked, or Content-Length (absent = 0). `max_body` gives 413.
    pub fn for_head(head: &super::RequestHead, max_body: Option<u64>) -> Result<Self, HttpError> {
        if head.chunked {
            Ok(BodyDecoder::Chunked(ChunkedDecoder::new(ChunkedLimits {
                max_body,
                ..ChunkedLimits::default()
            })))
        } else {
            Ok(BodyDecoder::Length(ContentLengthDecoder::new(
                head.content_length.unwrap_or(0),
                max_body,
            )?))
        }
    }

    /// See the module contract: returns `(consumed, event)`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Decoded<'a>), HttpError> {
        match self {
            BodyDecoder::Length(d) => d.decode(input),
            BodyDecoder::Chunked(d) => d.decode(input),
        }
    }

    /// The peer closed the connection.
    pub fn finish(&self) -> Result<(), HttpError> {
        match self {
            BodyDecoder::Length(d) => d.finish(),
            BodyDecoder::Chunked(d) => d.finish(),
        }
    }
}

/// Feeds `input` to a decoder in pieces of the given sizes (cycled) and collects the body: the
/// helper the tests and fuzz targets use. Returns the body and the bytes left after it.
pub fn decode_all_split(
    decoder: &mut BodyDecoder,
    input: &[u8],
    piece: usize,
) -> Result<(Vec<u8>, usize), HttpError> {
    let piece = piece.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < input.len() {
        let end = (start + piece).min(input.len());
        let mut buf = &input[start..end];
        loop {
            let (n, ev) = decoder.decode(buf)?;
            buf = &buf[n..];
            match ev {
                Decoded::Data(d) => out.extend_from_slice(d),
                Decoded::NeedMore => break,
                Decoded::Done => return Ok((out, end - buf.len())),
            }
        }
        start = end;
    }
    if let (_, Decoded::Done) = decoder.decode(&[])? {
        return Ok((out, input.len()));
    }
    decoder.finish()?;
    Ok((out, input.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked() -> BodyDecoder {
        BodyDecoder::Chunked(ChunkedDecoder::new(ChunkedLimits::default()))
    }

    const CHUNKED: &[u8] = b"5;ext=\"x;y\"\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\nNEXT";

    #[test]
    fn chunked_split_at_every_piece_size() {
        let want = b"helloabcdefghijklmnopqrstuvwxyz".to_vec();
        for piece in 1..=CHUNKED.len() {
            let (body, used) = decode_all_split(&mut chunked(), CHUNKED, piece).unwrap();
            assert_eq!(body, want, "piece {piece}");
            assert_eq!(&CHUNKED[used..], b"NEXT", "piece {piece}");
        }
    }

    #[test]
    fn chunked_split_at_every_two_positions() {
        let want = b"helloabcdefghijklmnopqrstuvwxyz".to_vec();
        let end = CHUNKED.len() - 4;
        for a in 0..=end {
            for b in a..=end {
                let mut d = chunked();
                let mut out = Vec::new();
                let mut done = false;
                for part in [&CHUNKED[..a], &CHUNKED[a..b], &CHUNKED[b..end]] {
                    let mut buf = part;
                    loop {
                        let (n, ev) = d.decode(buf).unwrap();
                        buf = &buf[n..];
                        match ev {
                            Decoded::Data(x) => out.extend_from_slice(x),
                            Decoded::NeedMore => break,
                            Decoded::Done => {
                                done = true;
                                assert!(buf.is_empty());
                                break;
                            }
                        }
                    }
                }
                assert!(done, "{a} {b}");
                assert_eq!(out, want);
            }
        }
    }

    fn chunked_err(input: &[u8]) -> HttpError {
        decode_all_split(&mut chunked(), input, 1).unwrap_err()
    }

    #[test]
    fn chunked_malformed_each_with_its_reason() {
        assert_eq!(chunked_err(b"x\r\n"), HttpError::ChunkSizeInvalid);
        assert_eq!(chunked_err(b";x\r\n"), HttpError::ChunkSizeInvalid);
        assert_eq!(
            chunked_err(b"5x\r\nhello\r\n0\r\n\r\n"),
            HttpError::ChunkSizeInvalid
        );
        assert_eq!(
            chunked_err(b"11111111111111111\r\n"),
            HttpError::ChunkSizeOverflow
        );
        assert_eq!(chunked_err(b"5\nhello"), HttpError::ChunkBadLineEnd);
        assert_eq!(chunked_err(b"5\rhello"), HttpError::ChunkBadLineEnd);
        assert_eq!(chunked_err(b"5\r\nhelloX\r\n"), HttpError::ChunkDataNoCrlf);
        assert_eq!(chunked_err(b"5\r\nhello\rX"), HttpError::ChunkDataNoCrlf);
        let long_ext = format!("5;{}\r\n", "e".repeat(5000));
        assert_eq!(
            chunked_err(long_ext.as_bytes()),
            HttpError::ChunkLineTooLong
        );
        let big_trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(9000));
        assert_eq!(
            chunked_err(big_trailer.as_bytes()),
            HttpError::TrailersTooLarge
        );
        assert_eq!(chunked_err(b"0\r\nX: 1\n"), HttpError::ChunkBadLineEnd);
        assert_eq!(chunked_err(b"0\r\n\rX"), HttpError::ChunkBadLineEnd);
        assert_eq!(chunked_err(b"5\r\nhel"), HttpError::BodyTruncated);
        for e in [HttpError::ChunkSizeInvalid, HttpError::ChunkDataNoCrlf] {
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn chunked_body_limit_is_413() {
        let mut d = BodyDecoder::Chunked(ChunkedDecoder::new(ChunkedLimits {
            max_body: Some(6),
            ..ChunkedLimits::default()
        }));
        let e = decode_all_split(&mut d, b"5\r\nhello\r\n2\r\nab\r\n0\r\n\r\n", 3).unwrap_err();
        assert_eq!(e, HttpError::PayloadTooLarge);
    }

    #[test]
    fn huge_chunk_is_streamed_not_buffered() {
        let mut d = ChunkedDecoder::new(ChunkedLimits::default());
        let (n, ev) = d.decode(b"FFFFFFFFFFFF\r\n").unwrap();
        assert_eq!((n, ev), (14, Decoded::NeedMore));
        let data = vec![7u8; 1 << 16];
        let (n, ev) = d.decode(&data).unwrap();
        assert_eq!(n, data.len());
        assert_eq!(ev, Decoded::Data(&data[..]));
    }

    #[test]
    fn content_length_split_everywhere() {
        let input = b"0123456789REST";
        for piece in 1..=input.len() {
            let mut d = BodyDecoder::Length(ContentLengthDecoder::new(10, None).unwrap());
            let (body, used) = decode_all_split(&mut d, input, piece).unwrap();
            assert_eq!(body, b"0123456789");
            assert_eq!(used, 10);
        }
        let mut d = BodyDecoder::Length(ContentLengthDecoder::new(10, None).unwrap());
        assert_eq!(
            decode_all_split(&mut d, b"01234", 2),
            Err(HttpError::BodyTruncated)
        );
        assert_eq!(
            ContentLengthDecoder::new(11, Some(10)).unwrap_err(),
            HttpError::PayloadTooLarge
        );
        let mut z = ContentLengthDecoder::new(0, None).unwrap();
        assert_eq!(z.decode(b"abc").unwrap(), (0, Decoded::Done));
    }
}
