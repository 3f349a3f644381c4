//! `msrpcast receive --misbehave`: a receiver that misbehaves on purpose — reads slowly, closes
//! mid-way, answers 481, never answers, sends a failure REPORT, floods the sender with empty
//! SENDs — so that the engine's isolation can be checked against real sockets, and real phones
//! imitated. It lives in the tool, not in the library Kamailio loads: the library's receiver
//! only offers [`ReceiveHooks`] (no-ops by default) at the points where this module acts.
//!
//! Tests that start receivers in-process include this file by path
//! (`#[path = "../../src/bin/msrpcast/misbehave.rs"]`), so it names the library as `msrpcast`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use msrpcast::msrp::{writer, ByteRange, Continuation, Header, Kind, Message, Method, Status, Uri};
use msrpcast::runtime::receive::{AfterWrite, Closing, FrameVerdict, Hooks, ReceiveHooks};

/// Deliberate misbehaviour, for isolation tests and for imitating real phones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehave {
    /// Read at most this many bytes per second.
    Rate(u64),
    /// Close the connection once this many body bytes arrived.
    CloseAfter(u64),
    /// Like `CloseAfter`, but once per receiver (the first connection that gets this many body
    /// bytes; its responses are written first): the transfer can then be resumed.
    CloseAfterBytes(u64),
    /// Answer every data-carrying SEND with 481.
    Reply481,
    /// Read everything, answer nothing.
    NeverAnswer,
    /// Answer 200, then send a failure REPORT (`Status: 000 415`) for the message.
    FailureReport,
    /// Close the connection as soon as a success REPORT is written (a phone that ends the file
    /// session once it has the file).
    CloseAfterReport,
    /// A success REPORT for every chunk (after its 200) instead of one per message.
    ReportPerChunk,
    /// No TCP_NODELAY, and every response and REPORT its own small write: the peer's Nagle holds
    /// the second small write until the first is acknowledged.
    Nagle,
    /// Once the first frame arrives (for the sender's path), never read again and write empty
    /// SENDs (`Byte-Range: 1-0/0`) on the connection as fast as the sender takes them, until it
    /// closes (issue 14 finding 1: a participant flooding its delivery connection).
    Flood,
    /// Several of the above at once (`report-per-chunk,nagle`).
    All(Vec<Misbehave>),
}

impl Misbehave {
    /// Every single behaviour in this one.
    fn each(&self) -> Vec<&Misbehave> {
        match self {
            Misbehave::All(v) => v.iter().flat_map(|m| m.each()).collect(),
            m => vec![m],
        }
    }

    /// The receiver hooks that act this way: each connection gets its own [`Misbehaving`].
    pub fn hooks(&self) -> Hooks {
        let b = Behaviour::of(self);
        // close-after-bytes fires once per receiver: its connections share this flag.
        let closed_once = Arc::new(AtomicBool::new(false));
        Arc::new(move || {
            Box::new(Misbehaving::new(b, Arc::clone(&closed_once))) as Box<dyn ReceiveHooks>
        })
    }
}

impl std::str::FromStr for Misbehave {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains(',') {
            let all = s
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<Misbehave>, String>>()?;
            return Ok(Misbehave::All(all));
        }
        let (k, v) = s.split_once('=').unwrap_or((s, ""));
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("{k} needs a number: {k}=N"))
        };
        match k {
            "rate" => Ok(Misbehave::Rate(num()?)),
            "close-after" => Ok(Misbehave::CloseAfter(num()?)),
            "close-after-bytes" => Ok(Misbehave::CloseAfterBytes(num()?)),
            "reply-481" => Ok(Misbehave::Reply481),
            "never-answer" => Ok(Misbehave::NeverAnswer),
            "failure-report" => Ok(Misbehave::FailureReport),
            "close-after-report" => Ok(Misbehave::CloseAfterReport),
            "report-per-chunk" => Ok(Misbehave::ReportPerChunk),
            "nagle" => Ok(Misbehave::Nagle),
            "flood" => Ok(Misbehave::Flood),
            _ => Err(format!(
                "unknown behaviour {s:?}: rate=N, close-after=N, close-after-bytes=N, reply-481, never-answer, \
                 failure-report, close-after-report, report-per-chunk, nagle, flood \
                 (several joined by commas)"
            )),
        }
    }
}

/// The behaviours of a receiver, flattened.
#[derive(Debug, Clone, Copy, Default)]
struct Behaviour {
    rate: Option<u64>,
    close_after: Option<u64>,
    close_after_bytes: Option<u64>,
    reply_481: bool,
    never_answer: bool,
    failure_report: bool,
    close_after_report: bool,
    report_per_chunk: bool,
    nagle: bool,
    flood: bool,
}

impl Behaviour {
    fn of(m: &Misbehave) -> Behaviour {
        let mut b = Behaviour::default();
        for m in m.each() {
            match m {
                Misbehave::Rate(r) => b.rate = Some(*r),
                Misbehave::CloseAfter(n) => b.close_after = Some(*n),
                Misbehave::CloseAfterBytes(n) => b.close_after_bytes = Some(*n),
                Misbehave::Reply481 => b.reply_481 = true,
                Misbehave::NeverAnswer => b.never_answer = true,
                Misbehave::FailureReport => b.failure_report = true,
                Misbehave::CloseAfterReport => b.close_after_report = true,
                Misbehave::ReportPerChunk => b.report_per_chunk = true,
                Misbehave::Nagle => b.nagle = true,
                Misbehave::Flood => b.flood = true,
                Misbehave::All(_) => {}
            }
        }
        b
    }
}

/// One connection's misbehaviour and what it needs to remember.
struct Misbehaving {
    behaviour: Behaviour,
    /// Rate: bytes that may be read now, refilled at `rate` per second up to one second's worth.
    budget: u64,
    last_refill: Instant,
    /// Close-after: body bytes of the frames so far.
    body_bytes: u64,
    /// Transaction ids of the per-chunk REPORTs.
    report_seq: u64,
    /// Flood: the sender's From-Path, once its first frame arrived; from then on only writes.
    flood_to: Option<Vec<Uri>>,
    /// Flood: empty SENDs written so far (their transaction and message ids).
    flood_seq: u64,
    /// Close-after-bytes fired already: shared by the receiver's connections.
    closed_once: Arc<AtomicBool>,
}

impl Misbehaving {
    fn new(behaviour: Behaviour, closed_once: Arc<AtomicBool>) -> Misbehaving {
        Misbehaving {
            behaviour,
            // A rate-limited reader starts with a tenth of a second's worth.
            budget: behaviour.rate.map_or(u64::MAX, |r| r.max(1) / 10),
            last_refill: Instant::now(),
            body_bytes: 0,
            report_seq: 0,
            flood_to: None,
            flood_seq: 0,
            closed_once,
        }
    }

    /// What follows a reply: Nagle writes each one on its own, and close-after-report closes
    /// once a success REPORT is out.
    fn after_reply(&self, is_report: bool) -> AfterWrite {
        AfterWrite {
            flush: self.behaviour.nagle,
            close_when_flushed: is_report && self.behaviour.close_after_report,
        }
    }

    /// `Status: 000 415` for the message of `msg` (failure-report).
    fn failure_report(msg: &Message, local: &Uri, out: &mut BytesMut) {
        let mut report = Message {
            transaction_id: Bytes::from_static(b"failrep1"),
            kind: Kind::Request(Method::Report),
            to_path: msg.from_path.clone(),
            from_path: vec![local.clone()],
            headers: Vec::new(),
            body: Bytes::new(),
            continuation: Continuation::End,
        };
        if let Some(id) = msg.message_id() {
            report.headers.push(Header::MessageId(id.clone()));
        }
        if let Some(br) = msg.byte_range() {
            report.headers.push(Header::ByteRange(br));
        }
        report.headers.push(Header::Status(Status {
            namespace: 0,
            code: 415,
            comment: Some(Bytes::from_static(b"Unsupported Media Type")),
        }));
        writer::write_message(&report, out);
    }

    /// A success REPORT for the chunk `msg` alone (report-per-chunk).
    fn chunk_report(&mut self, msg: &Message, local: &Uri, out: &mut BytesMut) -> AfterWrite {
        let (Some(id), Some(br)) = (msg.message_id(), msg.byte_range()) else {
            return AfterWrite::default();
        };
        let end = br.start + msg.body.len() as u64 - 1;
        self.report_seq += 1;
        let report = Message::new_success_report(
            Bytes::from(format!("chunkrep{}", self.report_seq)),
            msg.from_path.clone(),
            local.clone(),
            id.clone(),
            ByteRange {
                start: br.start,
                end: Some(end),
                total: br.total,
            },
        );
        writer::write_message(&report, out);
        self.after_reply(msg.continuation == Continuation::End)
    }
}

fn is_data_send(msg: &Message) -> bool {
    matches!(msg.kind, Kind::Request(Method::Send)) && !msg.body.is_empty()
}

impl ReceiveHooks for Misbehaving {
    fn nodelay(&self) -> bool {
        !self.behaviour.nagle
    }

    fn read_allowance(&mut self, now: Instant) -> u64 {
        if let Some(r) = self.behaviour.rate {
            let dt = now.duration_since(self.last_refill);
            self.last_refill = now;
            let add = (r as f64 * dt.as_secs_f64()) as u64;
            self.budget = (self.budget.saturating_add(add)).min(r.max(1));
        }
        self.budget
    }

    fn on_read(&mut self, n: usize) {
        if self.budget != u64::MAX {
            self.budget -= n as u64;
        }
    }

    /// Flood takes every frame (keeping the first one's From-Path), never-answer takes every
    /// one, reply-481 and failure-report take data-carrying SENDs.
    fn on_frame(&mut self, msg: &Message, local: &Uri, out: &mut BytesMut) -> FrameVerdict {
        self.body_bytes += msg.body.len() as u64;
        let b = self.behaviour;
        if b.flood {
            if self.flood_to.is_none() {
                self.flood_to = Some(msg.from_path.clone());
            }
            return FrameVerdict::Taken;
        }
        if b.never_answer {
            return FrameVerdict::Taken;
        }
        if !is_data_send(msg) || !(b.reply_481 || b.failure_report) {
            return FrameVerdict::Handle;
        }
        let to = writer::render_path(&msg.from_path);
        let from = writer::render_path(std::slice::from_ref(local));
        if b.reply_481 {
            let reason = Some(&b"Session Does Not Exist"[..]);
            writer::write_response(&msg.transaction_id, 481, reason, &to, &from, out);
            return FrameVerdict::Taken;
        }
        writer::write_response(&msg.transaction_id, 200, Some(b"OK"), &to, &from, out);
        Self::failure_report(msg, local, out);
        FrameVerdict::Taken
    }

    fn on_reply(&mut self, reply: &Message) -> Option<AfterWrite> {
        let is_report = reply.method() == Some(&Method::Report);
        if is_report && self.behaviour.report_per_chunk {
            // Replaced by the per-chunk REPORTs of after_frame.
            return None;
        }
        Some(self.after_reply(is_report))
    }

    fn after_frame(&mut self, msg: &Message, local: &Uri, out: &mut BytesMut) -> AfterWrite {
        if self.behaviour.report_per_chunk && is_data_send(msg) && msg.success_report() {
            return self.chunk_report(msg, local, out);
        }
        AfterWrite::default()
    }

    /// Close-after at once; close-after-bytes once per receiver, its responses written first.
    fn close_now(&mut self) -> Option<Closing> {
        let reached = |limit: Option<u64>| limit.is_some_and(|n| self.body_bytes >= n);
        if reached(self.behaviour.close_after) {
            return Some(Closing::Now);
        }
        if reached(self.behaviour.close_after_bytes)
            && !self.closed_once.swap(true, Ordering::AcqRel)
        {
            return Some(Closing::AfterResponses);
        }
        None
    }

    fn writes_only(&self) -> bool {
        self.flood_to.is_some()
    }

    /// Flood: empty SENDs to the sender, a batch at a time.
    fn fill(&mut self, local: &Uri, out: &mut BytesMut) {
        /// Bytes of SENDs queued at once before writing them.
        const BATCH: usize = 64 * 1024;
        let Some(to) = self.flood_to.as_ref() else {
            return;
        };
        let to = writer::render_path(to);
        let from = writer::render_path(std::slice::from_ref(local));
        while out.len() < BATCH {
            self.flood_seq += 1;
            let n = self.flood_seq;
            // A transaction id has 4 characters at least (RFC 4975 §9).
            out.extend_from_slice(b"MSRP fl");
            out.extend_from_slice(format!("{n:06x}").as_bytes());
            out.extend_from_slice(b" SEND\r\nTo-Path: ");
            out.extend_from_slice(&to);
            out.extend_from_slice(b"\r\nFrom-Path: ");
            out.extend_from_slice(&from);
            out.extend_from_slice(
                format!("\r\nMessage-ID: flood{n:x}\r\nByte-Range: 1-0/0\r\n-------fl{n:06x}$\r\n")
                    .as_bytes(),
            );
        }
    }
}
