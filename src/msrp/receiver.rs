//! Receiver side of one MSRP session: reassembly of incoming SEND chunks and the responses and
//! REPORTs RFC 4975 requires (§7.1.2, §7.2), sans-IO.
//!
//! The receiver never holds a message in memory: each chunk's body comes out as a
//! [`ReceiverEvent::Data`] (a zero-copy slice of the parsed frame) with its offset, and the caller
//! writes it where it belongs. What the receiver keeps per open message is its byte-range
//! bookkeeping. Frames to write back come out of [`Receiver::poll_reply`] as [`Message`] values,
//! to be serialized with the writer.
//!
//! Rules applied to a SEND:
//! - the last To-Path URI must carry this session's session-id, else 481;
//! - a missing Message-ID, a malformed or inconsistent Byte-Range (body longer than the range, a
//!   total that changes, bytes past the total, a `$` chunk whose end is not the total, a chunk that
//!   partly overlaps bytes already received) is a 400 and fails that message;
//! - a chunk entirely inside bytes already received is taken as a retransmission: 200, no data;
//! - a total above [`ReceiverConfig::max_message_bytes`] is a 413 and fails that message;
//! - `$` with bytes still missing is a 400 (gap) and fails the message;
//! - `#` ends the message as aborted;
//! - an empty SEND without Content-Type (a bind or keep-alive, as Blink sends every 60 s) gets a
//!   200 and nothing else.
//!
//! Responses follow the chunk's `Failure-Report`: `yes` → every response, `partial` → only
//! negative ones, `no` → none. A message whose chunks asked `Success-Report: yes` gets one success
//! REPORT covering `1-total/total` once complete. Unknown methods get 501; incoming REPORTs and
//! responses are taken note of and otherwise ignored (REPORTs are never answered).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use bytes::Bytes;

use super::chunker::RangeSet;
use super::ids::IdGen;
use super::message::{ByteRange, Continuation, FailureReport, Kind, Message, Method, Status};
use super::uri::Uri;

/// Limits of one receiver.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Largest message total accepted (413 above it).
    pub max_message_bytes: u64,
    /// Messages that may be open (partly received) at once; a new one beyond it gets 413.
    pub max_open_messages: usize,
    /// Disjoint received ranges kept per message; a message fragmenting further fails with 400.
    pub max_ranges: usize,
    /// Message-IDs of ended messages (complete, aborted or failed) remembered, newest first:
    /// a chunk naming one gets 403, so an ended message is never reopened or overwritten.
    pub max_finished_ids: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            max_message_bytes: u64::MAX,
            max_open_messages: 64,
            max_ranges: 1024,
            max_finished_ids: 1024,
        }
    }
}

/// What happened on the session, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// Bytes of a message: `bytes` belong at 0-based `offset`.
    Data {
        message_id: Bytes,
        offset: u64,
        bytes: Bytes,
    },
    /// Every byte of the message arrived.
    MessageComplete {
        message_id: Bytes,
        total: u64,
        content_type: Option<Bytes>,
    },
    /// The sender aborted the message (`#`) after `received` bytes.
    MessageAborted { message_id: Bytes, received: u64 },
    /// The message was refused; `code` is the status sent (or that would have been sent).
    MessageFailed {
        message_id: Bytes,
        code: u16,
        reason: &'static str,
    },
    /// A REPORT arrived (for messages this side sent); not answered.
    Report {
        message_id: Option<Bytes>,
        status: Option<Status>,
        byte_range: Option<ByteRange>,
    },
}

/// Bookkeeping of one partly received message.
#[derive(Debug)]
struct Incoming {
    total: Option<u64>,
    received: RangeSet,
    content_type: Option<Bytes>,
    success_report: bool,
    /// From-Path of its first chunk: where the success REPORT goes.
    reply_path: Vec<Uri>,
}

/// The receiving side of one MSRP session.
#[derive(Debug)]
pub struct Receiver {
    cfg: ReceiverConfig,
    /// This endpoint's URI: From-Path of every reply; its session-id selects the session.
    local: Uri,
    ids: IdGen,
    open: HashMap<Bytes, Incoming>,
    /// Ended messages' ids, oldest first (at most `max_finished_ids`), and the same as a set.
    finished: VecDeque<Bytes>,
    finished_set: std::collections::HashSet<Bytes>,
    replies: VecDeque<Message>,
    events: VecDeque<ReceiverEvent>,
}

/// A refusal of one SEND chunk.
struct Refusal {
    code: u16,
    reason: &'static str,
}

fn refuse(code: u16, reason: &'static str) -> Refusal {
    Refusal { code, reason }
}

fn comment_for(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        413 => "Message Too Large",
        415 => "Unsupported Media Type",
        481 => "Session Does Not Exist",
        501 => "Not Implemented",
        _ => "Error",
    }
}

impl Receiver {
    /// A receiver for the session whose own URI (with its session-id) is `local`.
    pub fn new(local: Uri, cfg: ReceiverConfig) -> Receiver {
        Receiver {
            cfg,
            local,
            ids: IdGen::new().unwrap_or_else(|_| {
                // No OS randomness: std's per-process random hasher keys still differ per run.
                IdGen::from_seed(std::collections::hash_map::RandomState::new().hash_one(0u8))
            }),
            open: HashMap::new(),
            finished: VecDeque::new(),
            finished_set: std::collections::HashSet::new(),
            replies: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The next frame to write back to the peer.
    pub fn poll_reply(&mut self) -> Option<Message> {
        self.replies.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }

    /// Opens message `message_id` as already holding its first `held` bytes of `total` (a
    /// resumed transfer, RFC 5547 `a=file-range`: the caller kept them from an earlier session),
    /// so that its chunks from byte `held + 1` on complete it and its success REPORT covers the
    /// whole message. False (nothing changed) when the message is open or ended already, too
    /// many are open, `held` is not below `total`, or `total` is above the limit.
    pub fn resume_message(&mut self, message_id: &Bytes, held: u64, total: u64) -> bool {
        if self.open.contains_key(message_id)
            || self.finished_set.contains(message_id)
            || self.open.len() >= self.cfg.max_open_messages
            || held >= total
            || total > self.cfg.max_message_bytes
        {
            return false;
        }
        let mut received = RangeSet::new();
        received.insert(0..held);
        self.open.insert(
            message_id.clone(),
            Incoming {
                total: Some(total),
                received,
                content_type: None,
                success_report: false,
                reply_path: Vec::new(),
            },
        );
        true
    }

    /// Messages currently partly received.
    pub fn open_messages(&self) -> usize {
        self.open.len()
    }

    /// Takes one frame from the peer.
    pub fn handle_frame(&mut self, msg: &Message) {
        match &msg.kind {
            Kind::Response { .. } => {}
            Kind::Request(Method::Send) => self.handle_send(msg),
            Kind::Request(Method::Report) => self.events.push_back(ReceiverEvent::Report {
                message_id: msg.message_id().cloned(),
                status: msg.status().cloned(),
                byte_range: msg.byte_range(),
            }),
            Kind::Request(_) => self.respond(msg, 501),
        }
    }

    /// Queues the response to `req`, as its Failure-Report allows.
    fn respond(&mut self, req: &Message, code: u16) {
        let send = match req.failure_report() {
            FailureReport::Yes => true,
            FailureReport::Partial => code != 200,
            FailureReport::No => false,
        };
        if !send {
            return;
        }
        // RFC 4975 §7.2: a response goes to the previous hop only, from this endpoint.
        let to_path = req.from_path.first().cloned().into_iter().collect();
        self.replies.push_back(Message {
            transaction_id: req.transaction_id.clone(),
            kind: Kind::Response {
                code,
                comment: Some(Bytes::from_static(comment_for(code).as_bytes())),
            },
            to_path,
            from_path: vec![self.local.clone()],
            headers: Vec::new(),
            body: Bytes::new(),
            continuation: Continuation::End,
        });
    }

    fn handle_send(&mut self, msg: &Message) {
        let session_ok = msg
            .to_path
            .last()
            .is_some_and(|u| u.session_id == self.local.session_id);
        if !session_ok {
            self.respond(msg, 481);
            return;
        }
        let Some(message_id) = msg.message_id().cloned() else {
            self.respond(msg, 400);
            return;
        };
        if self.finished_set.contains(&message_id) {
            // An ended message is never reopened: its data stays as it was.
            self.respond(msg, 403);
            return;
        }
        let is_bind = msg.body.is_empty()
            && msg.content_type().is_none()
            && msg.continuation == Continuation::End
            && !self.open.contains_key(&message_id);
        if is_bind {
            self.respond(msg, 200);
            return;
        }
        match self.accept_chunk(msg, &message_id) {
            Ok(done) => {
                self.respond(msg, 200);
                if let Some((total, inc)) = done {
                    self.mark_finished(&message_id);
                    self.complete(message_id, total, inc);
                } else if msg.continuation == Continuation::Abort {
                    self.mark_finished(&message_id);
                }
            }
            Err(r) => {
                self.open.remove(&message_id);
                self.mark_finished(&message_id);
                self.events.push_back(ReceiverEvent::MessageFailed {
                    message_id,
                    code: r.code,
                    reason: r.reason,
                });
                self.respond(msg, r.code);
            }
        }
    }

    fn mark_finished(&mut self, id: &Bytes) {
        // A copy: the id is a slice of its frame, which would keep the frame's whole receive
        // buffer in memory for as long as the id is remembered.
        let id = Bytes::copy_from_slice(id);
        if self.cfg.max_finished_ids == 0 || !self.finished_set.insert(id.clone()) {
            return;
        }
        self.finished.push_back(id);
        while self.finished.len() > self.cfg.max_finished_ids {
            if let Some(old) = self.finished.pop_front() {
                self.finished_set.remove(&old);
            }
        }
    }

    /// Checks one chunk of `message_id`, records it and queues its data and abort events. Returns
    /// the message's total and state when this chunk completed it.
    fn accept_chunk(
        &mut self,
        msg: &Message,
        message_id: &Bytes,
    ) -> Result<Option<(u64, Incoming)>, Refusal> {
        // RFC 4975 §7.1.1: no Byte-Range means the chunk is the whole message.
        let len = msg.body.len() as u64;
        let br = msg.byte_range().unwrap_or(ByteRange {
            start: 1,
            end: None,
            total: None,
        });
        if br.start == 0 {
            return Err(refuse(400, "Byte-Range start is 0"));
        }
        let from = br.start - 1;
        let to = from
            .checked_add(len)
            .ok_or(refuse(400, "Byte-Range overflows"))?;
        if let Some(end) = br.end {
            // A numeric end bounds the body; a `$` chunk must fill it exactly.
            let expect = end
                .checked_sub(from)
                .ok_or(refuse(400, "Byte-Range end before start"))?;
            let mismatch = match msg.continuation {
                Continuation::End => len != expect,
                _ => len > expect,
            };
            if mismatch {
                return Err(refuse(400, "body length does not match Byte-Range"));
            }
        }
        if let Some(t) = br.total {
            if t > self.cfg.max_message_bytes {
                return Err(refuse(413, "message larger than allowed"));
            }
            if to > t {
                return Err(refuse(400, "chunk extends past Byte-Range total"));
            }
        }
        if to > self.cfg.max_message_bytes {
            return Err(refuse(413, "message larger than allowed"));
        }
        // A new message's id and path are kept as copies: slices of this frame would keep its
        // whole receive buffer in memory until the message ends.
        let key = if self.open.contains_key(message_id) {
            message_id.clone()
        } else if self.open.len() >= self.cfg.max_open_messages {
            return Err(refuse(413, "too many messages in progress"));
        } else {
            Bytes::copy_from_slice(message_id)
        };
        let inc = self.open.entry(key).or_insert_with(|| Incoming {
            total: None,
            received: RangeSet::new(),
            content_type: None,
            success_report: false,
            reply_path: msg.from_path.iter().map(Uri::detached).collect(),
        });
        match (inc.total, br.total) {
            (Some(a), Some(b)) if a != b => return Err(refuse(400, "Byte-Range total changed")),
            (None, Some(b)) => inc.total = Some(b),
            _ => {}
        }
        if let Some(t) = inc.total {
            // Bytes already received past a total announced later.
            if inc.received.overlaps(t..u64::MAX) {
                return Err(refuse(400, "chunk extends past Byte-Range total"));
            }
        }
        if inc.content_type.is_none() {
            inc.content_type = msg.content_type().cloned();
        }
        if inc.reply_path.is_empty() {
            // A resumed message: its first chunk on this session says where REPORTs go.
            inc.reply_path = msg.from_path.clone();
        }
        inc.success_report |= msg.success_report();

        let duplicate = len > 0 && inc.received.contains(from..to);
        if !duplicate && inc.received.overlaps(from..to) {
            return Err(refuse(400, "Byte-Range overlaps bytes already received"));
        }
        if !duplicate && len > 0 {
            inc.received.insert(from..to);
            if inc.received.len() > self.cfg.max_ranges {
                return Err(refuse(400, "too many gaps in message"));
            }
            self.events.push_back(ReceiverEvent::Data {
                message_id: message_id.clone(),
                offset: from,
                bytes: msg.body.clone(),
            });
        }
        match msg.continuation {
            Continuation::More => Ok(None),
            Continuation::Abort => {
                let received = inc.received.contiguous_prefix();
                self.open.remove(message_id);
                self.events.push_back(ReceiverEvent::MessageAborted {
                    message_id: message_id.clone(),
                    received,
                });
                Ok(None)
            }
            Continuation::End => {
                let total = inc.total.unwrap_or(to);
                if to != total {
                    return Err(refuse(400, "last chunk does not end at the total"));
                }
                inc.total = Some(total);
                if !inc.received.contains(0..total) {
                    return Err(refuse(400, "gap in message at its last chunk"));
                }
                Ok(self.open.remove(message_id).map(|inc| (total, inc)))
            }
        }
    }

    fn complete(&mut self, message_id: Bytes, total: u64, inc: Incoming) {
        if inc.success_report {
            self.replies.push_back(Message::new_success_report(
                self.ids.transaction_id_bytes(),
                inc.reply_path,
                self.local.clone(),
                message_id.clone(),
                ByteRange {
                    start: 1,
                    end: Some(total),
                    total: Some(total),
                },
            ));
        }
        self.events.push_back(ReceiverEvent::MessageComplete {
            message_id,
            total,
            content_type: inc.content_type,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::message::Header;

    fn uri(s: &str) -> Uri {
        Uri::parse_slice(s.as_bytes()).unwrap()
    }

    fn local() -> Uri {
        uri("msrp://127.0.0.1:2855/rx;tcp")
    }

    struct Chunk<'a> {
        tid: &'a str,
        mid: &'a str,
        range: (u64, Option<u64>, Option<u64>),
        body: &'a [u8],
        cont: Continuation,
        sr: bool,
        fr: FailureReport,
        ct: bool,
    }

    fn chunk<'a>(
        tid: &'a str,
        range: (u64, Option<u64>, Option<u64>),
        body: &'a [u8],
    ) -> Chunk<'a> {
        Chunk {
            tid,
            mid: "m1",
            range,
            body,
            cont: Continuation::More,
            sr: true,
            fr: FailureReport::Yes,
            ct: true,
        }
    }

    fn build(c: Chunk<'_>) -> Message {
        let mut headers = vec![
            Header::MessageId(Bytes::copy_from_slice(c.mid.as_bytes())),
            Header::ByteRange(ByteRange {
                start: c.range.0,
                end: c.range.1,
                total: c.range.2,
            }),
            Header::SuccessReport(c.sr),
            Header::FailureReport(c.fr),
        ];
        if c.ct {
            headers.push(Header::ContentType(Bytes::from_static(b"text/plain")));
        }
        Message {
            transaction_id: Bytes::copy_from_slice(c.tid.as_bytes()),
            kind: Kind::Request(Method::Send),
            to_path: vec![local()],
            from_path: vec![uri("msrp://10.0.0.1:7000/tx;tcp")],
            headers,
            body: Bytes::copy_from_slice(c.body),
            continuation: c.cont,
        }
    }

    fn codes(r: &mut Receiver) -> Vec<(Bytes, u16)> {
        std::iter::from_fn(|| r.poll_reply())
            .filter_map(|m| m.response_code().map(|c| (m.transaction_id, c)))
            .collect()
    }

    fn events(r: &mut Receiver) -> Vec<ReceiverEvent> {
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    #[test]
    fn the_receiver_keeps_no_slice_of_a_frame() {
        // Each chunk parsed from its own received buffer, as a decoder hands frames out: once
        // a chunk is handled and its frame, events and replies dropped, nothing the receiver
        // remembers (the open message's id and reply path, the finished id) may still point
        // into that buffer, or it would keep the whole buffer in memory.
        let render = |m: Message| {
            let mut out = bytes::BytesMut::new();
            crate::msrp::writer::write_message(&m, &mut out);
            out.freeze()
        };
        let first = render(build(chunk("tid1", (1, Some(5), Some(10)), b"hello")));
        let last = render(build(Chunk {
            cont: Continuation::End,
            ..chunk("tid2", (6, Some(10), Some(10)), b"world")
        }));
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        for (received, replies) in [(first, 1), (last, 2)] {
            let msg = match crate::msrp::parser::parse(&received, &Default::default()) {
                Ok(crate::msrp::parser::Parsed::Complete(m, _)) => m,
                other => panic!("{other:?}"),
            };
            r.handle_frame(&msg);
            drop(msg);
            assert!(
                !received.is_unique(),
                "events and replies refer to the frame"
            );
            drop(events(&mut r));
            assert_eq!(std::iter::from_fn(|| r.poll_reply()).count(), replies);
            assert!(received.is_unique(), "a slice of the frame is still held");
        }
    }

    #[test]
    fn resumed_message_completes_from_its_range() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        let m1 = Bytes::from_static(b"m1");
        assert!(!r.resume_message(&m1, 10, 10), "nothing left to receive");
        assert!(r.resume_message(&m1, 5, 10));
        assert!(!r.resume_message(&m1, 5, 10), "already open");
        r.handle_frame(&build(Chunk {
            cont: Continuation::End,
            ..chunk("t1", (6, None, Some(10)), b"world")
        }));
        let replies: Vec<Message> = std::iter::from_fn(|| r.poll_reply()).collect();
        assert_eq!(replies[0].response_code(), Some(200));
        let rep = replies.last().unwrap();
        assert_eq!(rep.method(), Some(&Method::Report));
        assert_eq!(rep.to_path, vec![uri("msrp://10.0.0.1:7000/tx;tcp")]);
        assert_eq!(
            rep.byte_range().map(|b| (b.start, b.end)),
            Some((1, Some(10)))
        );
        let ev = events(&mut r);
        assert!(
            matches!(&ev[0], ReceiverEvent::Data { offset: 5, .. }),
            "{ev:?}"
        );
        assert!(matches!(
            &ev[1],
            ReceiverEvent::MessageComplete { total: 10, .. }
        ));
        assert!(!r.resume_message(&m1, 5, 10), "ended messages stay ended");
    }

    #[test]
    fn reassembles_chunks_and_reports_once() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        r.handle_frame(&build(chunk("t1", (1, None, Some(10)), b"hello")));
        r.handle_frame(&build(Chunk {
            cont: Continuation::End,
            ..chunk("t2", (6, None, Some(10)), b"world")
        }));
        let replies: Vec<Message> = std::iter::from_fn(|| r.poll_reply()).collect();
        assert_eq!(replies.len(), 3);
        assert_eq!(replies[0].response_code(), Some(200));
        assert_eq!(replies[0].transaction_id, "t1");
        assert_eq!(replies[0].to_path, vec![uri("msrp://10.0.0.1:7000/tx;tcp")]);
        assert_eq!(replies[0].from_path, vec![local()]);
        assert_eq!(replies[1].transaction_id, "t2");
        let rep = &replies[2];
        assert_eq!(rep.method(), Some(&Method::Report));
        assert_eq!(rep.message_id().unwrap(), "m1");
        assert_eq!(rep.status().unwrap().code, 200);
        assert_eq!(
            rep.byte_range(),
            Some(ByteRange {
                start: 1,
                end: Some(10),
                total: Some(10)
            })
        );
        let ev = events(&mut r);
        assert_eq!(
            ev[0],
            ReceiverEvent::Data {
                message_id: Bytes::from_static(b"m1"),
                offset: 0,
                bytes: Bytes::from_static(b"hello")
            }
        );
        assert!(matches!(&ev[1], ReceiverEvent::Data { offset: 5, .. }));
        assert_eq!(
            ev[2],
            ReceiverEvent::MessageComplete {
                message_id: Bytes::from_static(b"m1"),
                total: 10,
                content_type: Some(Bytes::from_static(b"text/plain"))
            }
        );
        assert_eq!(r.open_messages(), 0);
    }

    #[test]
    fn unknown_total_taken_from_last_chunk_and_no_report_unless_asked() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        r.handle_frame(&build(Chunk {
            sr: false,
            ..chunk("t1", (1, None, None), b"abc")
        }));
        r.handle_frame(&build(Chunk {
            sr: false,
            cont: Continuation::End,
            ..chunk("t2", (4, None, Some(4)), b"d")
        }));
        assert_eq!(codes(&mut r).len(), 2);
        assert!(r.poll_reply().is_none());
        assert!(events(&mut r)
            .iter()
            .any(|e| matches!(e, ReceiverEvent::MessageComplete { total: 4, .. })));
    }

    #[test]
    fn empty_send_is_a_keepalive() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        r.handle_frame(&build(Chunk {
            ct: false,
            sr: false,
            cont: Continuation::End,
            mid: "bind",
            ..chunk("k", (1, Some(0), Some(0)), b"")
        }));
        assert_eq!(codes(&mut r), vec![(Bytes::from_static(b"k"), 200)]);
        assert!(events(&mut r).is_empty());
    }

    #[test]
    fn wrong_session_gets_481() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        let mut m = build(chunk("t", (1, None, Some(3)), b"abc"));
        m.to_path = vec![uri("msrp://127.0.0.1:2855/other;tcp")];
        r.handle_frame(&m);
        assert_eq!(codes(&mut r), vec![(Bytes::from_static(b"t"), 481)]);
    }

    #[test]
    fn byte_range_errors_fail_the_message() {
        let cases: Vec<(Vec<Message>, u16)> = vec![
            // total changes
            (
                vec![
                    build(chunk("a", (1, None, Some(10)), b"abc")),
                    build(chunk("b", (4, None, Some(11)), b"def")),
                ],
                400,
            ),
            // past the total
            (vec![build(chunk("a", (1, None, Some(2)), b"abc"))], 400),
            // partial overlap
            (
                vec![
                    build(chunk("a", (1, None, Some(10)), b"abc")),
                    build(chunk("b", (3, None, Some(10)), b"cde")),
                ],
                400,
            ),
            // body longer than the numeric end
            (vec![build(chunk("a", (1, Some(2), Some(10)), b"abc"))], 400),
            // gap at the last chunk
            (
                vec![
                    build(chunk("a", (1, None, Some(10)), b"abc")),
                    build(Chunk {
                        cont: Continuation::End,
                        ..chunk("b", (8, None, Some(10)), b"hij")
                    }),
                ],
                400,
            ),
            // `$` not at the total
            (
                vec![build(Chunk {
                    cont: Continuation::End,
                    ..chunk("a", (1, None, Some(10)), b"abc")
                })],
                400,
            ),
            // start 0
            (vec![build(chunk("a", (0, None, Some(10)), b"abc"))], 400),
        ];
        for (i, (frames, code)) in cases.into_iter().enumerate() {
            let mut r = Receiver::new(local(), ReceiverConfig::default());
            for f in &frames {
                r.handle_frame(f);
            }
            let got = codes(&mut r);
            assert_eq!(got.last().unwrap().1, code, "case {i}: {got:?}");
            let ev = events(&mut r);
            assert!(
                matches!(ev.last(), Some(ReceiverEvent::MessageFailed { .. })),
                "case {i}: {ev:?}"
            );
            assert_eq!(r.open_messages(), 0, "case {i}");
        }
    }

    #[test]
    fn too_large_is_413() {
        let cfg = ReceiverConfig {
            max_message_bytes: 5,
            ..ReceiverConfig::default()
        };
        let mut r = Receiver::new(local(), cfg);
        r.handle_frame(&build(chunk("a", (1, None, Some(6)), b"abc")));
        assert_eq!(codes(&mut r), vec![(Bytes::from_static(b"a"), 413)]);
        let mut r = Receiver::new(
            local(),
            ReceiverConfig {
                max_message_bytes: 5,
                ..ReceiverConfig::default()
            },
        );
        r.handle_frame(&build(chunk("a", (1, None, None), b"abc")));
        r.handle_frame(&build(chunk("b", (4, None, None), b"def")));
        assert_eq!(codes(&mut r)[1].1, 413);
    }

    #[test]
    fn retransmission_is_accepted_without_data() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        r.handle_frame(&build(chunk("a", (1, None, Some(6)), b"abc")));
        r.handle_frame(&build(chunk("a2", (1, None, Some(6)), b"abc")));
        assert_eq!(codes(&mut r).iter().filter(|c| c.1 == 200).count(), 2);
        let data = events(&mut r)
            .into_iter()
            .filter(|e| matches!(e, ReceiverEvent::Data { .. }))
            .count();
        assert_eq!(data, 1);
    }

    #[test]
    fn abort_ends_the_message() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        r.handle_frame(&build(chunk("a", (1, None, Some(10)), b"abc")));
        r.handle_frame(&build(Chunk {
            cont: Continuation::Abort,
            ..chunk("b", (4, None, Some(10)), b"")
        }));
        assert_eq!(codes(&mut r).len(), 2);
        let ev = events(&mut r);
        assert_eq!(
            ev.last(),
            Some(&ReceiverEvent::MessageAborted {
                message_id: Bytes::from_static(b"m1"),
                received: 3
            })
        );
        assert_eq!(r.open_messages(), 0);
    }

    #[test]
    fn failure_report_governs_responses() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        r.handle_frame(&build(Chunk {
            fr: FailureReport::No,
            ..chunk("a", (1, None, Some(10)), b"abc")
        }));
        r.handle_frame(&build(Chunk {
            fr: FailureReport::Partial,
            ..chunk("b", (4, None, Some(10)), b"def")
        }));
        assert!(codes(&mut r).is_empty());
        r.handle_frame(&build(Chunk {
            fr: FailureReport::Partial,
            ..chunk("c", (4, None, Some(11)), b"def")
        }));
        assert_eq!(codes(&mut r), vec![(Bytes::from_static(b"c"), 400)]);
    }

    #[test]
    fn unknown_method_gets_501_and_reports_are_not_answered() {
        let mut r = Receiver::new(local(), ReceiverConfig::default());
        let mut m = build(chunk("x", (1, None, Some(1)), b""));
        m.kind = Kind::Request(Method::Other(Bytes::from_static(b"FOO")));
        r.handle_frame(&m);
        assert_eq!(codes(&mut r), vec![(Bytes::from_static(b"x"), 501)]);
        m.kind = Kind::Request(Method::Report);
        r.handle_frame(&m);
        assert!(r.poll_reply().is_none());
        assert!(matches!(r.poll_event(), Some(ReceiverEvent::Report { .. })));
    }

    #[test]
    fn open_message_limit() {
        let cfg = ReceiverConfig {
            max_open_messages: 1,
            ..ReceiverConfig::default()
        };
        let mut r = Receiver::new(local(), cfg);
        r.handle_frame(&build(chunk("a", (1, None, Some(10)), b"abc")));
        r.handle_frame(&build(Chunk {
            mid: "m2",
            ..chunk("b", (1, None, Some(10)), b"abc")
        }));
        assert_eq!(codes(&mut r)[1].1, 413);
        assert_eq!(r.open_messages(), 1);
    }
}
