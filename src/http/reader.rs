//! The request reader of one connection, sans-IO: head, then body through the right decoder,
//! then the next head (keep-alive and pipelining). The connection driver owns the socket and the
//! read buffer and calls [`RequestReader::feed`] with the unconsumed bytes.

use super::body::{BodyDecoder, Decoded};
use super::head::{parse_head, HeadLimits, Parsed, RequestHead};
use super::HttpError;

/// What one call to [`RequestReader::feed`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEvent<'a> {
    /// A complete head. Decide (route, auth, limits), then call
    /// [`RequestReader::begin_body`] before feeding more.
    Head(RequestHead),
    /// Decoded body bytes, a slice of the input.
    Body(&'a [u8]),
    /// The body is complete; the next bytes start the next request.
    End,
    /// Feed more: keep the unconsumed input and append to it.
    NeedMore,
}

#[derive(Debug, Clone)]
enum State {
    Head,
    AwaitBody,
    Body(BodyDecoder),
}

/// Reads requests from one connection.
#[derive(Debug, Clone)]
pub struct RequestReader {
    limits: HeadLimits,
    state: State,
}

impl RequestReader {
    pub fn new(limits: HeadLimits) -> Self {
        RequestReader {
            limits,
            state: State::Head,
        }
    }

    /// Whether the reader is between requests (a clean place to close the connection).
    pub fn at_request_start(&self) -> bool {
        matches!(self.state, State::Head)
    }

    /// Feeds the unconsumed bytes; returns `(consumed, event)`. While a head is incomplete the
    /// reader consumes nothing and the caller keeps the bytes (at most
    /// `max_head_bytes` + one read, after which the head is refused with 431).
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Result<(usize, ReadEvent<'a>), HttpError> {
        match &mut self.state {
            State::Head => match parse_head(input, &self.limits)? {
                Parsed::Partial => Ok((0, ReadEvent::NeedMore)),
                Parsed::Complete(head, n) => {
                    self.state = State::AwaitBody;
                    Ok((n, ReadEvent::Head(head)))
                }
            },
            State::AwaitBody => Ok((0, ReadEvent::NeedMore)),
            State::Body(d) => {
                let (n, ev) = d.decode(input)?;
                Ok((
                    n,
                    match ev {
                        Decoded::Data(x) => ReadEvent::Body(x),
                        Decoded::NeedMore => ReadEvent::NeedMore,
                        Decoded::Done => {
                            self.state = State::Head;
                            ReadEvent::End
                        }
                    },
                ))
            }
        }
    }

    /// Starts reading the body of `head`. `max_body` gives 413 (at once for a too large
    /// Content-Length, while reading for chunked); `require_length` gives 411 when the request
    /// has neither Content-Length nor chunked coding (uploads).
    pub fn begin_body(
        &mut self,
        head: &RequestHead,
        max_body: Option<u64>,
        require_length: bool,
    ) -> Result<(), HttpError> {
        if require_length && !head.chunked && head.content_length.is_none() {
            return Err(HttpError::LengthRequired);
        }
        self.state = State::Body(BodyDecoder::for_head(head, max_body)?);
        Ok(())
    }

    /// The peer closed its side. Fine between requests, [`HttpError::BodyTruncated`] inside a
    /// body. (An incomplete head in the caller's buffer is the caller's to judge.)
    pub fn eof(&self) -> Result<(), HttpError> {
        match &self.state {
            State::Head | State::AwaitBody => Ok(()),
            State::Body(d) => d.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a reader over `input` split into `piece`-byte reads, keeping unconsumed bytes like
    /// a connection driver would. Returns (path, body) per request.
    fn drive(
        input: &[u8],
        piece: usize,
        max: Option<u64>,
    ) -> Result<Vec<(String, Vec<u8>)>, HttpError> {
        let mut r = RequestReader::new(HeadLimits::default());
        let mut buf: Vec<u8> = Vec::new();
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for chunk in input.chunks(piece) {
            buf.extend_from_slice(chunk);
            loop {
                let (n, ev) = r.feed(&buf)?;
                let mut stop = false;
                match ev {
                    ReadEvent::Head(h) => {
                        let upload = h.method == crate::http::Method::Post;
                        out.push((h.path.clone(), Vec::new()));
                        r.begin_body(&h, max, upload)?;
                    }
                    ReadEvent::Body(x) => out.last_mut().unwrap().1.extend_from_slice(x),
                    ReadEvent::End => {}
                    ReadEvent::NeedMore => stop = true,
                }
                buf.drain(..n);
                if stop {
                    break;
                }
            }
        }
        r.eof()?;
        Ok(out)
    }

    const PIPELINE: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n\
GET /c HTTP/1.1\r\n\r\n";

    #[test]
    fn pipelined_requests_split_everywhere() {
        let want = vec![
            ("/a".to_string(), b"hello".to_vec()),
            ("/b".to_string(), b"abcde".to_vec()),
            ("/c".to_string(), Vec::new()),
        ];
        for piece in 1..=PIPELINE.len() {
            assert_eq!(drive(PIPELINE, piece, None).unwrap(), want, "piece {piece}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(drive(PIPELINE, 7, Some(4)), Err(HttpError::PayloadTooLarge));
        assert_eq!(
            drive(b"POST /x HTTP/1.1\r\n\r\n", 3, None),
            Err(HttpError::LengthRequired)
        );
        assert_eq!(
            drive(b"POST /x HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc", 3, None),
            Err(HttpError::BodyTruncated)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(20000));
        assert_eq!(
            drive(big.as_bytes(), 1000, None),
            Err(HttpError::HeadTooLarge)
        );
    }
}
