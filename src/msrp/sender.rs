//! The sender state machine: one MSRP message to one peer over one connection, sans-IO.
//!
//! Inputs are `handle_*` calls (bytes available in the spool, frames from the peer, timer ticks),
//! outputs are `poll_*` calls (the next frame to write, the next deadline, events). Time only
//! comes in as `now`. The body bytes are never held here: a [`Transmit`] names the range of the
//! message to read from the spool between its head and its end-line.
//!
//! Behaviour (RFC 4975 and what real clients need, see the project's client notes):
//! - optionally an empty bind SEND first (`Byte-Range: 1-0/0`, no body, its own Message-ID), and
//!   no data before its 200: Blink drops a connection whose first SEND carries data;
//! - chunks pipelined while the bytes awaiting a response stay within the window (a window of
//!   one chunk is stop-and-wait, which jmsrp needs, and never grows);
//! - the window starts at `window_bytes` and grows towards `max_window_bytes` while it is what
//!   holds the sender back and responses come back in time — within twice the shortest round
//!   trip seen plus 5 ms (no queue is building on the path) and within an eighth of
//!   `transaction_timeout`: one chunk's worth per chunk answered, so it doubles per round trip,
//!   up to the path's bandwidth × RTT plus what its buffers hold. A response slower than a quarter of the timeout halves it
//!   (not below `window_bytes`), so a slow path cannot queue more than the timeout allows. TCP's
//!   own back-pressure paces the data; the window is a bound on what awaits answers, never the
//!   throughput limit of a long path;
//! - responses matched by transaction id; a repeated 200 for a transaction already answered is
//!   ignored (Kamailio's relay can send two);
//! - a transaction unanswered after `transaction_timeout` fails the message with 408;
//! - with `success_report`, success REPORTs (per chunk or per message) are merged until they cover
//!   the whole message, which completes it; without, the last 200 completes it;
//! - failure REPORTs and non-2xx responses fail with their code; 413 stops the message; 481 also
//!   marks the failure as fatal for the session;
//! - progress is the highest byte up to which everything was acknowledged or reported.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::chunker::{ChunkPlan, Chunker, RangeSet, DEFAULT_CHUNK_BYTES};
use super::ids::{IdGen, ID_LEN};
use super::message::{ByteRange, Continuation, FailureReport, Kind, Message, Method};
use super::uri::Uri;
use super::writer;

/// Settings of one sender.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Body bytes per chunk (default [`DEFAULT_CHUNK_BYTES`]).
    pub chunk_bytes: usize,
    /// Body bytes that may await a response at once, at the start. A window of `chunk_bytes` (or
    /// less) is stop-and-wait and never grows. At least one chunk is always allowed in flight.
    pub window_bytes: u64,
    /// The most the window grows to while responses return in time (see the module
    /// documentation); at or below `window_bytes`, the window is fixed. The window holds no body
    /// bytes in memory (bodies are read from the spool as they are written), only one record per
    /// chunk awaiting its response (56 bytes): the default 16 MiB of 10 KiB chunks is at
    /// most ~92 KiB per delivery (the list shrinks again once it drains).
    pub max_window_bytes: u64,
    /// How long a SEND may wait for its response before the message fails with 408.
    pub transaction_timeout: Duration,
    /// How long to wait for the success REPORT after the last chunk's 200 (408 after it).
    pub report_timeout: Duration,
    /// Ask for success REPORTs and complete only when they cover the message.
    pub success_report: bool,
    /// The chunks' `Failure-Report`. With anything but `yes` no responses are awaited.
    pub failure_report: FailureReport,
    /// Send an empty SEND first and wait for its 200 before any data (Blink needs it).
    pub bind_with_empty_send: bool,
    /// Disjoint byte ranges the peer's success REPORTs may acknowledge before they join up;
    /// beyond, the message fails (a peer reporting many scattered ranges would otherwise make
    /// every REPORT cost more). Ranges past the bytes sent are ignored, not counted.
    pub max_report_ranges: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            window_bytes: 256 * 1024,
            max_window_bytes: DEFAULT_MAX_WINDOW_BYTES,
            transaction_timeout: Duration::from_secs(30),
            report_timeout: Duration::from_secs(30),
            success_report: true,
            failure_report: FailureReport::Yes,
            bind_with_empty_send: true,
            max_report_ranges: DEFAULT_MAX_REPORT_RANGES,
        }
    }
}

/// Default of [`SenderConfig::max_report_ranges`] (the `msrp_max_report_ranges` setting).
pub const DEFAULT_MAX_REPORT_RANGES: usize = 256;

/// One frame to write: `head`, then bytes `body` of the message read from the spool, then
/// `end_line`. Before writing, check the body with [`writer::body_contains_end_line`] and call
/// [`Sender::retid`] if it contains the end-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Start line and headers; for a frame with a body, the CRLF of the last header and the blank
    /// line too (a bodyless frame's head ends without CRLF: the end-line starts with one).
    pub head: Bytes,
    /// 0-based offsets of the message bytes to send as the body; empty for none.
    pub body: Range<u64>,
    /// CRLF, then the end-line `-------<tid><flag>` and its CRLF.
    pub end_line: Bytes,
    /// The transaction id of this frame.
    pub tid: Bytes,
    plan: ChunkPlan,
    bind: bool,
}

/// What the sender reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// Everything up to byte `acked` (a count from the start) was acknowledged or reported.
    Progress { acked: u64 },
    /// The message was delivered.
    Completed,
    /// The message failed; the sender is finished.
    Failed(SendFailure),
}

/// Why a message failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// The MSRP status: a response code, a failure REPORT's status code, 408 for a timeout, or 0
    /// for a local abort.
    pub code: u16,
    pub reason: String,
    /// The peer said the session does not exist (481): the whole session is gone.
    pub session_fatal: bool,
}

/// Where the sender is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderState {
    /// The bind SEND is not answered yet.
    Binding,
    /// Sending chunks (or waiting for data or responses).
    Sending,
    /// Every chunk was answered; waiting for the success REPORT.
    AwaitingReport,
    Completed,
    Failed,
}

/// A SEND awaiting its response. Kept small (56 bytes, no heap): a delivery holds one per chunk
/// in its window, up to `max_window_bytes / chunk_bytes` of them.
#[derive(Debug, Clone)]
struct InFlight {
    tid: Tid,
    /// The chunk's body as 0-based offsets into the message.
    body_start: u64,
    body_len: u64,
    sent: Instant,
    bind: bool,
}

impl InFlight {
    fn body(&self) -> std::ops::Range<u64> {
        self.body_start..self.body_start + self.body_len
    }
}

/// A transaction id this sender made: always [`ID_LEN`] characters (see [`IdGen`]), held inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tid([u8; ID_LEN]);

impl Tid {
    fn of(tid: &[u8]) -> Tid {
        let mut b = [0u8; ID_LEN];
        let n = tid.len().min(ID_LEN);
        b[..n].copy_from_slice(&tid[..n]);
        Tid(b)
    }

    /// Whether `other` (from the peer, any length) is this id.
    fn is(&self, other: &[u8]) -> bool {
        other.len() == ID_LEN && self.0[..] == other[..]
    }
}

/// The default [`SenderConfig::max_window_bytes`]: 16 MiB, the bandwidth × RTT of 1 Gbit/s at
/// 130 ms.
pub const DEFAULT_MAX_WINDOW_BYTES: u64 = 16 << 20;

/// Response time above twice the shortest seen that still counts as "no queue building" (jitter
/// of the hosts, delayed ACKs).
const GROW_SLACK: Duration = Duration::from_millis(5);

/// In-flight entries a sender keeps room for whatever its window does (about 3.5 KiB).
const INFLIGHT_KEEP: usize = 64;

/// How many answered transaction ids are remembered to recognise repeated responses.
const RECENT_TIDS: usize = 256;
/// How many sent chunks are remembered to resolve a REPORT whose Byte-Range end is `*`.
const RECENT_CHUNKS: usize = 1024;

/// The state machine for one message to one peer. See the module documentation.
#[derive(Debug)]
pub struct Sender {
    cfg: SenderConfig,
    to_path: Bytes,
    from_path: Bytes,
    content_type: Bytes,
    /// `Content-Disposition` of every chunk with a body, when set ([`Sender::with_disposition`]).
    content_disposition: Option<Bytes>,
    message_id: Bytes,
    bind_message_id: Bytes,
    ids: IdGen,
    chunker: Chunker,
    state: SenderState,
    bind_sent: bool,
    pending_abort: bool,
    inflight: VecDeque<InFlight>,
    inflight_bytes: u64,
    /// The current window (see [`SenderConfig::max_window_bytes`]).
    window: u64,
    /// The shortest response time seen (the path's round trip without queues).
    min_rtt: Option<Duration>,
    /// The window is what holds the sender back: set when it held a chunk back, cleared when
    /// a chunk goes out with less than half the window in flight (then TCP or the upload is the
    /// limit, and a larger window would not help).
    window_limited: bool,
    recent_tids: VecDeque<Tid>,
    recent_chunks: VecDeque<(u64, u64)>,
    /// Ranges answered by 200 (0-based, half-open).
    acked: RangeSet,
    /// Ranges covered by success REPORTs.
    reported: RangeSet,
    /// Union of both: progress.
    done: RangeSet,
    report_seen: bool,
    report_deadline: Option<Instant>,
    progress: u64,
    events: VecDeque<SenderEvent>,
}

impl Sender {
    /// A sender of one message with `content_type` from `from_path` to `to_path`. `ids` gives the
    /// Message-ID; the sender keeps its own generator for transaction ids.
    pub fn new(
        cfg: SenderConfig,
        to_path: &[Uri],
        from_path: &[Uri],
        content_type: Bytes,
        ids: &mut IdGen,
        _now: Instant,
    ) -> Sender {
        let chunker = Chunker::new(cfg.chunk_bytes);
        let state = if cfg.bind_with_empty_send {
            SenderState::Binding
        } else {
            SenderState::Sending
        };
        Sender {
            to_path: writer::render_path(to_path),
            from_path: writer::render_path(from_path),
            content_type,
            content_disposition: None,
            message_id: ids.message_id(),
            bind_message_id: ids.message_id(),
            // Its own generator (one getrandom call), or one seeded from the caller's.
            ids: IdGen::new().unwrap_or_else(|_| IdGen::from_seed(ids.next_u64())),
            chunker,
            state,
            bind_sent: !cfg.bind_with_empty_send,
            pending_abort: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            window: cfg.window_bytes,
            window_limited: false,
            min_rtt: None,
            recent_tids: VecDeque::new(),
            recent_chunks: VecDeque::new(),
            acked: RangeSet::new(),
            reported: RangeSet::new(),
            done: RangeSet::new(),
            report_seen: false,
            report_deadline: None,
            progress: 0,
            events: VecDeque::new(),
            cfg,
        }
    }

    /// Sends `value` as the `Content-Disposition` of every chunk with a body (the file's name,
    /// see [`super::disposition::attachment`]). It must be one header line: CR and LF are
    /// refused (the value is then not used).
    pub fn with_disposition(mut self, value: Bytes) -> Sender {
        if !value.contains(&b'\r') && !value.contains(&b'\n') {
            self.content_disposition = Some(value);
        }
        self
    }

    /// Sends only the bytes from 0-based `offset` on: the peer kept the first `offset` bytes of
    /// the file from an earlier session (RFC 5547 §8 `a=file-range`). They count as done, so a
    /// success REPORT covering `offset + 1` to the total (or the whole message) completes it.
    /// Call before the first [`Sender::poll_transmit`].
    pub fn start_at(mut self, offset: u64) -> Sender {
        if offset > 0 && self.chunker.planned() == 0 {
            self.chunker.skip_to(offset);
            self.acked.insert(0..offset);
            self.reported.insert(0..offset);
            self.done.insert(0..offset);
            self.progress = offset;
        }
        self
    }

    /// The message's Message-ID.
    pub fn message_id(&self) -> &Bytes {
        &self.message_id
    }

    /// Where the sender is.
    pub fn state(&self) -> SenderState {
        self.state
    }

    /// Bytes from the start acknowledged or reported (the progress figure).
    pub fn acked(&self) -> u64 {
        self.progress
    }

    /// Whether the message completes only with success REPORTs covering it.
    pub fn success_report(&self) -> bool {
        self.cfg.success_report
    }

    /// Bytes handed out in chunks so far.
    pub fn sent(&self) -> u64 {
        self.chunker.planned()
    }

    /// Disjoint byte ranges the success REPORTs acknowledged so far (at most
    /// [`SenderConfig::max_report_ranges`]).
    pub fn report_ranges(&self) -> usize {
        self.reported.len()
    }

    /// The message's total, once final.
    pub fn total(&self) -> Option<u64> {
        self.chunker.total()
    }

    /// Body bytes of SENDs awaiting their response.
    pub fn in_flight(&self) -> u64 {
        self.inflight_bytes
    }

    fn terminal(&self) -> bool {
        matches!(self.state, SenderState::Completed | SenderState::Failed)
    }

    /// The spool now holds `len` bytes of the message; `complete` says that is its final size.
    pub fn handle_data_available(&mut self, len: u64, complete: bool) {
        self.chunker.data_available(len, complete);
    }

    /// Aborts the message: a `#` chunk at the next byte goes out with the next
    /// [`Sender::poll_transmit`] (when some data was sent and the last chunk was not), then the
    /// message fails with reason "aborted" (code 0).
    pub fn abort(&mut self, _now: Instant) {
        if self.terminal() || self.pending_abort {
            return;
        }
        if self.chunker.planned() == 0 || self.chunker.finished() {
            self.chunker.abort_chunk();
            self.fail(0, "aborted".into(), false);
        } else {
            self.pending_abort = true;
        }
    }

    /// The next frame to write, if any is allowed now.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.terminal() {
            return None;
        }
        if self.pending_abort {
            self.pending_abort = false;
            let plan = self.chunker.abort_chunk();
            self.fail(0, "aborted".into(), false);
            let t = plan.map(|p| self.build(p, false));
            if let Some(t) = &t {
                self.remember_tid(Tid::of(&t.tid));
            }
            return t;
        }
        if !self.bind_sent {
            self.bind_sent = true;
            let plan = ChunkPlan {
                start: 1,
                len: 0,
                byte_range: ByteRange {
                    start: 1,
                    end: Some(0),
                    total: Some(0),
                },
                continuation: Continuation::End,
            };
            let t = self.build(plan, true);
            self.track(&t, now);
            return Some(t);
        }
        if self.state != SenderState::Sending {
            return None;
        }
        let awaiting_responses = self.cfg.failure_report == FailureReport::Yes;
        if awaiting_responses
            && self.inflight_bytes > 0
            && self.inflight_bytes + self.chunker.next_len() > self.window
        {
            self.window_limited = true;
            return None;
        }
        let plan = self.chunker.next_chunk()?;
        let t = self.build(plan, false);
        if self.recent_chunks.len() == RECENT_CHUNKS {
            self.recent_chunks.pop_front();
        }
        self.recent_chunks.push_back((t.body.start, t.body.end));
        if awaiting_responses {
            self.track(&t, now);
            if self.inflight_bytes < self.window / 2 {
                self.window_limited = false;
            }
        } else {
            // No 200 will come: count the chunk as acknowledged once written, but remember its
            // transaction id in case an error response does.
            self.remember_tid(Tid::of(&t.tid));
            self.acknowledge(t.body.clone());
            self.check_done(now);
        }
        Some(t)
    }

    /// Picks a new transaction id for `t` (whose body turned out to contain its end-line) and
    /// rebuilds its head and end-line; the in-flight entry follows.
    pub fn retid(&mut self, t: &mut Transmit) {
        let old = t.tid.clone();
        let fresh = self.build(t.plan, t.bind);
        if let Some(e) = self.inflight.iter_mut().find(|e| e.tid.is(&old)) {
            e.tid = Tid::of(&fresh.tid);
        }
        *t = fresh;
    }

    /// The next instant at which [`Sender::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.terminal() {
            return None;
        }
        let timeout = self.cfg.transaction_timeout;
        let tx = self.inflight.front().map(|e| e.sent + timeout);
        match (tx, self.report_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fails the message if a transaction or the report wait timed out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.terminal() {
            return;
        }
        let timeout = self.cfg.transaction_timeout;
        if self
            .inflight
            .front()
            .is_some_and(|e| e.sent + timeout <= now)
        {
            self.fail(408, "transaction timed out".into(), false);
        } else if self.report_deadline.is_some_and(|d| d <= now) {
            self.fail(408, "no success report".into(), false);
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    /// A frame from the peer. Returns false when it is not for this sender (an unknown
    /// transaction id, a REPORT for another message, or a request other than REPORT).
    pub fn handle_frame(&mut self, msg: &Message, now: Instant) -> bool {
        match &msg.kind {
            Kind::Response { code, comment } => {
                self.handle_response(&msg.transaction_id, *code, comment.as_ref(), now)
            }
            Kind::Request(Method::Report) => self.handle_report(msg, now),
            Kind::Request(_) => false,
        }
    }

    fn handle_response(
        &mut self,
        tid: &Bytes,
        code: u16,
        comment: Option<&Bytes>,
        now: Instant,
    ) -> bool {
        let Some(i) = self.inflight.iter().position(|e| e.tid.is(tid)) else {
            let known = self.recent_tids.iter().rev().any(|t| t.is(tid));
            // With `Failure-Report: partial` chunks are not tracked, but their errors count.
            if known && !(200..300).contains(&code) && !self.terminal() {
                self.fail_with_response(code, comment);
            }
            return known;
        };
        let Some(entry) = self.inflight.remove(i) else {
            return false;
        };
        self.inflight_bytes -= entry.body_len;
        self.shrink_inflight();
        self.remember_tid(entry.tid);
        if self.terminal() {
            return true;
        }
        if (200..300).contains(&code) {
            if !entry.bind {
                self.adapt_window(&entry, now);
            }
            if entry.bind {
                if self.state == SenderState::Binding {
                    self.state = SenderState::Sending;
                }
            } else {
                self.acknowledge(entry.body());
            }
            self.check_done(now);
        } else {
            self.fail_with_response(code, comment);
        }
        true
    }

    /// Gives back what a burst took: the in-flight list keeps the largest capacity it ever
    /// had (up to `max_window_bytes / chunk_bytes` entries, 92 KiB at the defaults) unless it is
    /// shrunk once it holds less than a quarter of it — a window that drained (the transfer
    /// slowed down or is ending) then holds no more than twice what it uses. Halving keeps the
    /// cost amortised O(1) per entry.
    fn shrink_inflight(&mut self) {
        let cap = self.inflight.capacity();
        if cap > INFLIGHT_KEEP && self.inflight.len() < cap / 4 {
            self.inflight.shrink_to(cap / 2);
        }
    }

    /// The current window: body bytes that may await responses.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Grows the window by the chunk answered while the window holds the sender back and the
    /// answer came in time (so it doubles per round trip); halves it when the answer was late.
    fn adapt_window(&mut self, entry: &InFlight, now: Instant) {
        let floor = self.cfg.window_bytes;
        let cap = self.cfg.max_window_bytes;
        if cap <= floor || floor <= self.cfg.chunk_bytes as u64 {
            return;
        }
        let rtt = now.saturating_duration_since(entry.sent);
        let min_rtt = *self.min_rtt.get_or_insert(rtt);
        self.min_rtt = Some(min_rtt.min(rtt));
        let no_queue = rtt <= min_rtt * 2 + GROW_SLACK;
        if rtt > self.cfg.transaction_timeout / 4 {
            self.window = (self.window / 2).max(floor);
        } else if rtt <= self.cfg.transaction_timeout / 8 && no_queue && self.window_limited {
            self.window = (self.window + entry.body_len.max(1)).min(cap);
        }
    }

    fn fail_with_response(&mut self, code: u16, comment: Option<&Bytes>) {
        let reason = comment
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_else(|| format!("response {code}"));
        self.fail(code, reason, code == 481);
    }

    fn handle_report(&mut self, msg: &Message, now: Instant) -> bool {
        let Some(mid) = msg.message_id() else {
            return false;
        };
        if mid == &self.bind_message_id {
            return true;
        }
        if mid != &self.message_id {
            return false;
        }
        if self.terminal() {
            return true;
        }
        let Some(status) = msg.status() else {
            return true;
        };
        if status.code != 200 {
            let reason = status
                .comment
                .as_ref()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .unwrap_or_else(|| format!("failure report {}", status.code));
            self.fail(status.code, reason, status.code == 481);
            return true;
        }
        self.report_seen = true;
        // A REPORT can confirm only bytes that were sent: a range reaching past them (up to
        // 2^64, say) is ignored, and so can neither count nor cost.
        if let Some(r) = msg
            .byte_range()
            .and_then(|br| self.report_range(br))
            .filter(|r| r.end <= self.sent())
        {
            self.reported.insert(r.clone());
            if self.reported.len() > self.cfg.max_report_ranges {
                self.reported = RangeSet::new();
                self.fail(
                    400,
                    format!(
                        "the participant's success reports acknowledge more than {} separate \
                         byte ranges",
                        self.cfg.max_report_ranges
                    ),
                    false,
                );
                return true;
            }
            self.done.insert(r);
            self.update_progress();
        }
        self.check_done(now);
        true
    }

    /// The 0-based range a success REPORT covers. An end of `*` is resolved through the chunk
    /// that started there.
    fn report_range(&self, br: ByteRange) -> Option<Range<u64>> {
        let from = br.start.checked_sub(1)?;
        let to = match br.end {
            Some(e) => e,
            None => self
                .recent_chunks
                .iter()
                .rev()
                .find(|c| c.0 == from)
                .map(|c| c.1)?,
        };
        (to >= from).then_some(from..to)
    }

    fn acknowledge(&mut self, r: Range<u64>) {
        self.acked.insert(r.clone());
        self.done.insert(r);
        self.update_progress();
    }

    fn update_progress(&mut self) {
        let p = self.done.contiguous_prefix();
        if p <= self.progress {
            return;
        }
        self.progress = p;
        if let Some(SenderEvent::Progress { acked }) = self.events.back_mut() {
            *acked = p;
        } else {
            self.events.push_back(SenderEvent::Progress { acked: p });
        }
    }

    /// Completes the message, or starts waiting for its report, when the facts allow.
    fn check_done(&mut self, now: Instant) {
        if self.terminal() || !self.chunker.finished() || self.pending_abort {
            return;
        }
        let Some(total) = self.chunker.total() else {
            return;
        };
        if self.cfg.success_report {
            if self.report_seen && self.reported.contains(0..total) {
                self.finish();
            } else if self.acked.contains(0..total) && self.report_deadline.is_none() {
                self.state = SenderState::AwaitingReport;
                self.report_deadline = Some(now + self.cfg.report_timeout);
            }
        } else if self.acked.contains(0..total) {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.state = SenderState::Completed;
        self.report_deadline = None;
        self.events.push_back(SenderEvent::Completed);
    }

    fn fail(&mut self, code: u16, reason: String, session_fatal: bool) {
        if self.terminal() {
            return;
        }
        self.state = SenderState::Failed;
        self.report_deadline = None;
        self.events.push_back(SenderEvent::Failed(SendFailure {
            code,
            reason,
            session_fatal,
        }));
    }

    fn remember_tid(&mut self, tid: Tid) {
        if self.recent_tids.len() == RECENT_TIDS {
            self.recent_tids.pop_front();
        }
        self.recent_tids.push_back(tid);
    }

    fn track(&mut self, t: &Transmit, now: Instant) {
        self.inflight_bytes += t.plan.len;
        let body = t.plan.body();
        self.inflight.push_back(InFlight {
            tid: Tid::of(&t.tid),
            body_start: body.start,
            body_len: body.end - body.start,
            sent: now,
            bind: t.bind,
        });
    }

    /// Renders the head and end-line of one SEND with a fresh transaction id.
    fn build(&mut self, plan: ChunkPlan, bind: bool) -> Transmit {
        let tid = self.ids.transaction_id_bytes();
        // A content part (Content-Type, blank line, body) for data; none for bind and abort.
        let content = !bind && plan.continuation != Continuation::Abort;
        let mut head = BytesMut::with_capacity(256 + self.to_path.len() + self.from_path.len());
        writer::write_send_head(
            &writer::SendHead {
                tid: &tid,
                to_path: &self.to_path,
                from_path: &self.from_path,
                message_id: if bind {
                    &self.bind_message_id
                } else {
                    &self.message_id
                },
                byte_range: plan.byte_range,
                success_report: !bind && self.cfg.success_report,
                failure_report: if bind {
                    FailureReport::Yes
                } else {
                    self.cfg.failure_report
                },
                content_type: content.then_some(&self.content_type[..]),
                content_disposition: self.content_disposition.as_deref(),
            },
            &mut head,
        );
        let mut end = BytesMut::with_capacity(tid.len() + 12);
        writer::write_end_line(&tid, plan.continuation, &mut end);
        Transmit {
            head: head.freeze(),
            body: plan.body(),
            end_line: end.freeze(),
            tid,
            plan,
            bind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::message::{Header, Status};

    const CT: &[u8] = b"application/octet-stream";

    fn uri(s: &str) -> Uri {
        Uri::parse_slice(s.as_bytes()).unwrap()
    }

    fn sender(cfg: SenderConfig, now: Instant) -> Sender {
        let mut ids = IdGen::from_seed(7);
        Sender::new(
            cfg,
            &[uri("msrp://10.0.0.2:2855/rx;tcp")],
            &[uri("msrp://10.0.0.1:2855/tx;tcp")],
            Bytes::from_static(CT),
            &mut ids,
            now,
        )
    }

    fn cfg(chunk: usize, window: u64) -> SenderConfig {
        SenderConfig {
            chunk_bytes: chunk,
            window_bytes: window,
            max_window_bytes: window,
            bind_with_empty_send: false,
            ..SenderConfig::default()
        }
    }

    fn response(tid: &Bytes, code: u16) -> Message {
        Message {
            transaction_id: tid.clone(),
            kind: Kind::Response {
                code,
                comment: None,
            },
            to_path: vec![uri("msrp://10.0.0.1:2855/tx;tcp")],
            from_path: vec![uri("msrp://10.0.0.2:2855/rx;tcp")],
            headers: vec![],
            body: Bytes::new(),
            continuation: Continuation::End,
        }
    }

    fn report(mid: &Bytes, code: u16, range: (u64, Option<u64>, Option<u64>)) -> Message {
        Message {
            transaction_id: Bytes::from_static(b"rep"),
            kind: Kind::Request(Method::Report),
            to_path: vec![uri("msrp://10.0.0.1:2855/tx;tcp")],
            from_path: vec![uri("msrp://10.0.0.2:2855/rx;tcp")],
            headers: vec![
                Header::MessageId(mid.clone()),
                Header::ByteRange(ByteRange {
                    start: range.0,
                    end: range.1,
                    total: range.2,
                }),
                Header::Status(Status {
                    namespace: 0,
                    code,
                    comment: None,
                }),
            ],
            body: Bytes::new(),
            continuation: Continuation::End,
        }
    }

    fn drain(s: &mut Sender, now: Instant) -> Vec<Transmit> {
        std::iter::from_fn(|| s.poll_transmit(now)).collect()
    }

    fn events(s: &mut Sender) -> Vec<SenderEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn failure(s: &mut Sender) -> SendFailure {
        events(s)
            .into_iter()
            .find_map(|e| match e {
                SenderEvent::Failed(f) => Some(f),
                _ => None,
            })
            .expect("a failure event")
    }

    fn text(b: &Bytes) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn binds_with_an_empty_send_first() {
        let now = Instant::now();
        let mut s = sender(
            SenderConfig {
                chunk_bytes: 10,
                ..SenderConfig::default()
            },
            now,
        );
        s.handle_data_available(25, true);
        let t = drain(&mut s, now);
        assert_eq!(t.len(), 1, "nothing but the bind before its 200");
        let head = text(&t[0].head);
        assert!(head.contains("Byte-Range: 1-0/0"), "{head}");
        assert!(!head.contains("Content-Type"), "{head}");
        assert!(
            !head.contains(&text(s.message_id())),
            "bind has its own Message-ID"
        );
        assert!(t[0].body.is_empty());
        assert_eq!(
            text(&t[0].end_line),
            format!("\r\n-------{}$\r\n", text(&t[0].tid))
        );
        assert_eq!(s.state(), SenderState::Binding);
        assert!(s.handle_frame(&response(&t[0].tid, 200), now));
        assert_eq!(s.state(), SenderState::Sending);
        let t = drain(&mut s, now);
        assert_eq!(t.len(), 3);
        let head = text(&t[0].head);
        assert!(head.starts_with(&format!("MSRP {} SEND\r\n", text(&t[0].tid))));
        assert!(head.contains("Byte-Range: 1-*/25"), "{head}");
        assert!(head.contains("Success-Report: yes"), "{head}");
        assert!(head.ends_with("Content-Type: application/octet-stream\r\n\r\n"));
        assert_eq!(t[0].body, 0..10);
        assert_eq!(
            text(&t[0].end_line),
            format!("\r\n-------{}+\r\n", text(&t[0].tid))
        );
        assert!(text(&t[2].end_line).ends_with("$\r\n"));
        assert!(text(&t[2].head).contains("Byte-Range: 21-*/25"));
    }

    #[test]
    fn chunks_carry_the_offered_name_and_refuse_a_broken_one() {
        let now = Instant::now();
        let cd = "attachment; filename=\"a b.pdf\"; filename*=UTF-8''a%20b.pdf";
        let mut s = sender(cfg(10, 1000), now).with_disposition(Bytes::from(cd));
        s.handle_data_available(25, true);
        let t = drain(&mut s, now);
        assert_eq!(t.len(), 3);
        for x in &t {
            let head = text(&x.head);
            assert!(
                head.ends_with(&format!(
                    "Content-Disposition: {cd}\r\nContent-Type: application/octet-stream\r\n\r\n"
                )),
                "{head}"
            );
        }
        let mut s = sender(cfg(10, 1000), now)
            .with_disposition(Bytes::from_static(b"attachment\r\nX-Injected: 1"));
        s.handle_data_available(5, true);
        let head = text(&drain(&mut s, now)[0].head);
        assert!(
            !head.contains("Content-Disposition") && !head.contains("X-Injected"),
            "{head}"
        );
    }

    /// Issue 14 #3: success REPORTs with disjoint descending ranges, first far past the message
    /// (up to 2^40), then scattered inside it. Nothing past the bytes sent is kept; inside, the
    /// set never holds more than `max_report_ranges` ranges, and the peer exceeding it fails its
    /// own delivery with a reason.
    #[test]
    fn scattered_reports_are_bounded_and_fail_the_delivery() {
        let t0 = Instant::now();
        let mut s = sender(
            SenderConfig {
                max_report_ranges: 16,
                ..cfg(10, 1_000_000)
            },
            t0,
        );
        s.handle_data_available(1000, true);
        let mid = s.message_id().clone();
        let mut now = t0;
        for t in drain(&mut s, now) {
            assert!(s.handle_frame(&response(&t.tid, 200), now));
        }
        // Far past the message, descending, each disjoint from the others.
        for k in 0..20_000u64 {
            now += Duration::from_millis(1);
            let start = (1u64 << 40) - 2 * k;
            let r = report(&mid, 200, (start, Some(start), Some(1 << 40)));
            assert!(s.handle_frame(&r, now));
            assert_eq!(s.report_ranges(), 0, "a range past the bytes sent was kept");
        }
        assert!(!events(&mut s)
            .iter()
            .any(|e| matches!(e, SenderEvent::Failed(_))));
        // Inside the message: single bytes every other byte, descending.
        let mut failed_at = None;
        for k in (0..500u64).rev() {
            now += Duration::from_millis(1);
            let b = 2 * k + 1;
            s.handle_frame(&report(&mid, 200, (b, Some(b), Some(1000))), now);
            assert!(s.report_ranges() <= 17, "{} ranges kept", s.report_ranges());
            if s.state() == SenderState::Failed {
                failed_at = Some(500 - k);
                break;
            }
        }
        assert_eq!(failed_at, Some(17), "fails at the first range over the cap");
        let f = failure(&mut s);
        assert!(
            f.reason.contains("more than 16 separate byte ranges"),
            "{}",
            f.reason
        );
        // Later REPORTs cost nothing: the message is over.
        assert!(s.handle_frame(&report(&mid, 200, (5, Some(5), Some(1000))), now));
        assert_eq!(s.report_ranges(), 0);
    }

    /// Per-chunk reports in descending order join up into one range: the cap does not hurt an
    /// honest peer, and the message completes.
    #[test]
    fn descending_adjacent_reports_join_and_complete() {
        let now = Instant::now();
        let mut s = sender(
            SenderConfig {
                max_report_ranges: 2,
                ..cfg(10, 1_000_000)
            },
            now,
        );
        s.handle_data_available(1000, true);
        let mid = s.message_id().clone();
        for t in drain(&mut s, now) {
            assert!(s.handle_frame(&response(&t.tid, 200), now));
        }
        for k in (0..100u64).rev() {
            let r = report(&mid, 200, (k * 10 + 1, Some(k * 10 + 10), Some(1000)));
            assert!(s.handle_frame(&r, now));
            assert!(s.report_ranges() <= 1);
        }
        assert_eq!(s.state(), SenderState::Completed);
    }

    #[test]
    fn window_is_respected() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 35), now);
        s.handle_data_available(1000, true);
        let mut pending: VecDeque<Transmit> = drain(&mut s, now).into();
        assert_eq!(pending.len(), 3, "30 bytes fit in 35, 40 would not");
        let mut delivered = 0;
        while let Some(t) = pending.pop_front() {
            assert!(s.in_flight() <= 35);
            s.handle_frame(&response(&t.tid, 200), now);
            delivered += t.body.end - t.body.start;
            pending.extend(drain(&mut s, now));
            assert!(pending.len() <= 3);
        }
        assert_eq!(delivered, 1000);
        assert_eq!(s.acked(), 1000);
        assert_eq!(s.state(), SenderState::AwaitingReport);
    }

    #[test]
    fn window_of_one_chunk_is_stop_and_wait() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 10), now);
        s.handle_data_available(100, true);
        for _ in 0..10 {
            let t = drain(&mut s, now);
            assert_eq!(t.len(), 1);
            s.handle_frame(&response(&t[0].tid, 200), now);
        }
        assert!(drain(&mut s, now).is_empty());
    }

    #[test]
    fn transaction_timeout_fails_with_408() {
        let t0 = Instant::now();
        let mut s = sender(cfg(10, 100), t0);
        s.handle_data_available(50, true);
        let sent = drain(&mut s, t0);
        let deadline = s.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + Duration::from_secs(30));
        // The first chunk is answered later: the deadline moves to the next one.
        let t1 = t0 + Duration::from_secs(5);
        s.handle_frame(&response(&sent[0].tid, 200), t1);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        s.handle_timeout(t0 + Duration::from_secs(29));
        assert_ne!(s.state(), SenderState::Failed);
        s.handle_timeout(t0 + Duration::from_secs(30));
        assert_eq!(s.state(), SenderState::Failed);
        let f = failure(&mut s);
        assert_eq!(f.code, 408);
        assert!(!f.session_fatal);
        assert_eq!(s.poll_timeout(), None);
        assert!(s.poll_transmit(t0).is_none());
    }

    #[test]
    fn report_timeout_fails_with_408() {
        let t0 = Instant::now();
        let mut s = sender(cfg(10, 100), t0);
        s.handle_data_available(10, true);
        let t = drain(&mut s, t0);
        let t1 = t0 + Duration::from_secs(1);
        s.handle_frame(&response(&t[0].tid, 200), t1);
        assert_eq!(s.state(), SenderState::AwaitingReport);
        assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(30)));
        s.handle_timeout(t1 + Duration::from_secs(30));
        let f = failure(&mut s);
        assert_eq!((f.code, f.reason.as_str()), (408, "no success report"));
    }

    #[test]
    fn failure_report_fails_with_its_code() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 100), now);
        s.handle_data_available(30, true);
        drain(&mut s, now);
        let mid = s.message_id().clone();
        assert!(s.handle_frame(&report(&mid, 415, (1, Some(10), Some(30))), now));
        let f = failure(&mut s);
        assert_eq!(f.code, 415);
        assert_eq!(s.state(), SenderState::Failed);
    }

    #[test]
    fn error_responses_fail_and_413_stops_the_message() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 20), now);
        s.handle_data_available(100, true);
        let t = drain(&mut s, now);
        assert!(s.handle_frame(&response(&t[0].tid, 413), now));
        let f = failure(&mut s);
        assert_eq!(f.code, 413);
        assert!(!f.session_fatal);
        assert!(drain(&mut s, now).is_empty(), "no chunk after 413");
        // The other in-flight chunk's answer is still recognised.
        assert!(s.handle_frame(&response(&t[1].tid, 413), now));

        let mut s = sender(cfg(10, 20), now);
        s.handle_data_available(100, true);
        let t = drain(&mut s, now);
        s.handle_frame(&response(&t[0].tid, 500), now);
        assert_eq!(failure(&mut s).code, 500);
    }

    #[test]
    fn code_481_is_fatal_for_the_session() {
        let now = Instant::now();
        let mut s = sender(
            SenderConfig {
                chunk_bytes: 10,
                ..SenderConfig::default()
            },
            now,
        );
        s.handle_data_available(100, true);
        let t = drain(&mut s, now);
        s.handle_frame(&response(&t[0].tid, 481), now);
        let f = failure(&mut s);
        assert_eq!(f.code, 481);
        assert!(f.session_fatal);
    }

    #[test]
    fn abort_sends_a_hash_chunk_at_the_next_byte() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 20), now);
        s.handle_data_available(100, false);
        let t = drain(&mut s, now);
        assert_eq!(t.len(), 2);
        s.abort(now);
        let a = s.poll_transmit(now).expect("the abort chunk");
        assert!(
            text(&a.head).contains("Byte-Range: 21-*/*"),
            "{}",
            text(&a.head)
        );
        assert!(!text(&a.head).contains("Content-Type"));
        assert!(a.body.is_empty());
        assert_eq!(
            text(&a.end_line),
            format!("\r\n-------{}#\r\n", text(&a.tid))
        );
        let f = failure(&mut s);
        assert_eq!((f.code, f.reason.as_str()), (0, "aborted"));
        assert!(s.poll_transmit(now).is_none());
        assert!(s.handle_frame(&response(&a.tid, 200), now));
    }

    #[test]
    fn abort_before_any_data_sends_nothing() {
        let now = Instant::now();
        let mut s = sender(SenderConfig::default(), now);
        s.handle_data_available(100, false);
        let bind = drain(&mut s, now);
        assert_eq!(bind.len(), 1);
        s.abort(now);
        assert!(s.poll_transmit(now).is_none());
        assert_eq!(failure(&mut s).code, 0);
    }

    #[test]
    fn duplicate_200_is_tolerated() {
        let now = Instant::now();
        let mut s = sender(
            SenderConfig {
                success_report: false,
                ..cfg(10, 100)
            },
            now,
        );
        s.handle_data_available(20, true);
        let t = drain(&mut s, now);
        assert!(s.handle_frame(&response(&t[0].tid, 200), now));
        assert!(s.handle_frame(&response(&t[0].tid, 200), now));
        assert_eq!(s.in_flight(), 10);
        assert!(s.handle_frame(&response(&t[1].tid, 200), now));
        assert!(s.handle_frame(&response(&t[1].tid, 200), now));
        assert_eq!(s.state(), SenderState::Completed);
        let ev = events(&mut s);
        assert_eq!(
            ev,
            vec![SenderEvent::Progress { acked: 20 }, SenderEvent::Completed]
        );
    }

    #[test]
    fn per_chunk_reports_complete() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 100), now);
        s.handle_data_available(25, true);
        let t = drain(&mut s, now);
        let mid = s.message_id().clone();
        // Reports may come before the 200s and in any order; one uses an end of `*`.
        s.handle_frame(&report(&mid, 200, (11, Some(20), Some(25))), now);
        s.handle_frame(&report(&mid, 200, (1, Some(10), Some(25))), now);
        assert_eq!(s.acked(), 20);
        assert_eq!(s.state(), SenderState::Sending);
        s.handle_frame(&report(&mid, 200, (21, None, Some(25))), now);
        assert_eq!(s.state(), SenderState::Completed);
        assert_eq!(s.acked(), 25);
        // Late 200s are still ours.
        for x in &t {
            assert!(s.handle_frame(&response(&x.tid, 200), now));
        }
        let ev = events(&mut s);
        assert_eq!(ev.last(), Some(&SenderEvent::Completed));
        assert_eq!(
            ev.iter().filter(|e| **e == SenderEvent::Completed).count(),
            1
        );
    }

    #[test]
    fn start_at_sends_only_the_rest() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 100), now).start_at(15);
        assert_eq!(s.acked(), 15);
        s.handle_data_available(40, true);
        let t = drain(&mut s, now);
        let data: Vec<&Transmit> = t.iter().filter(|x| !x.body.is_empty()).collect();
        assert_eq!(data.first().map(|x| x.body.start), Some(15));
        assert_eq!(
            data.iter().map(|x| x.body.end - x.body.start).sum::<u64>(),
            25
        );
        let head = String::from_utf8_lossy(&data[0].head).into_owned();
        assert!(head.contains("Byte-Range: 16-*/40"), "{head}");
        for x in &t {
            s.handle_frame(&response(&x.tid, 200), now);
        }
        assert_eq!(s.state(), SenderState::AwaitingReport);
        let mid = s.message_id().clone();
        // The receiver reports the whole message (it holds the first 15 bytes).
        s.handle_frame(&report(&mid, 200, (1, Some(40), Some(40))), now);
        assert_eq!(s.state(), SenderState::Completed);
    }

    #[test]
    fn per_message_report_completes_and_partial_does_not() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 100), now);
        s.handle_data_available(25, true);
        let t = drain(&mut s, now);
        for x in &t {
            s.handle_frame(&response(&x.tid, 200), now);
        }
        assert_eq!(s.state(), SenderState::AwaitingReport);
        let mid = s.message_id().clone();
        s.handle_frame(&report(&mid, 200, (1, Some(24), Some(25))), now);
        assert_eq!(s.state(), SenderState::AwaitingReport);
        s.handle_frame(&report(&mid, 200, (1, Some(25), Some(25))), now);
        assert_eq!(s.state(), SenderState::Completed);
    }

    #[test]
    fn frames_of_others_are_not_claimed() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 100), now);
        s.handle_data_available(25, true);
        drain(&mut s, now);
        assert!(!s.handle_frame(&response(&Bytes::from_static(b"nope"), 200), now));
        assert!(!s.handle_frame(
            &report(&Bytes::from_static(b"other"), 200, (1, Some(25), Some(25))),
            now
        ));
        let mut send = report(s.message_id(), 200, (1, Some(25), Some(25)));
        send.kind = Kind::Request(Method::Send);
        assert!(!s.handle_frame(&send, now));
        assert_ne!(s.state(), SenderState::Completed);
    }

    #[test]
    fn retid_renames_the_transaction() {
        let now = Instant::now();
        let mut s = sender(
            SenderConfig {
                success_report: false,
                ..cfg(10, 100)
            },
            now,
        );
        s.handle_data_available(10, true);
        let mut t = s.poll_transmit(now).unwrap();
        let old = t.clone();
        s.retid(&mut t);
        assert_ne!(t.tid, old.tid);
        assert_eq!(t.body, old.body);
        assert!(text(&t.head).starts_with(&format!("MSRP {} SEND", text(&t.tid))));
        assert!(text(&t.end_line).contains(&text(&t.tid)));
        assert!(!s.handle_frame(&response(&old.tid, 200), now));
        assert!(s.handle_frame(&response(&t.tid, 200), now));
        assert_eq!(s.state(), SenderState::Completed);
    }

    #[test]
    fn without_failure_reports_nothing_is_awaited() {
        let now = Instant::now();
        let mut s = sender(
            SenderConfig {
                success_report: false,
                failure_report: FailureReport::No,
                ..cfg(10, 10)
            },
            now,
        );
        s.handle_data_available(100, true);
        let t = drain(&mut s, now);
        assert_eq!(t.len(), 10, "no window without responses");
        assert!(text(&t[0].head).contains("Failure-Report: no"));
        assert_eq!(s.state(), SenderState::Completed);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn partial_failure_reports_still_fail_on_errors() {
        let now = Instant::now();
        let mut s = sender(
            SenderConfig {
                failure_report: FailureReport::Partial,
                ..cfg(10, 10)
            },
            now,
        );
        s.handle_data_available(100, true);
        let t = drain(&mut s, now);
        assert_eq!(t.len(), 10);
        assert_eq!(s.state(), SenderState::AwaitingReport);
        assert!(s.handle_frame(&response(&t[3].tid, 415), now));
        assert_eq!(failure(&mut s).code, 415);
    }

    #[test]
    fn unknown_total_streams_and_ends() {
        let now = Instant::now();
        let mut s = sender(
            SenderConfig {
                success_report: false,
                ..cfg(10, 1000)
            },
            now,
        );
        s.handle_data_available(15, false);
        let mut t = drain(&mut s, now);
        assert!(text(&t[0].head).contains("Byte-Range: 1-*/*"));
        s.handle_data_available(30, true);
        t.extend(drain(&mut s, now));
        assert_eq!(t.iter().map(|x| x.body.end - x.body.start).sum::<u64>(), 30);
        assert!(text(&t.last().unwrap().head).contains("/30\r\n"));
        for x in &t {
            s.handle_frame(&response(&x.tid, 200), now);
        }
        assert_eq!(s.state(), SenderState::Completed);
    }

    /// A simulated path on a virtual clock: every SEND is answered `rtt` after it was sent,
    /// nothing else limits the sender. Returns the largest in-flight byte count seen.
    fn run_path(cfg: SenderConfig, size: u64, rtt: Duration, s_out: &mut Option<Sender>) -> u64 {
        let t0 = Instant::now();
        let mut s = sender(cfg, t0);
        s.handle_data_available(size, true);
        let mut now = t0;
        let mut pending: VecDeque<(Instant, Transmit)> = VecDeque::new();
        let mut most = 0;
        loop {
            for t in drain(&mut s, now) {
                pending.push_back((now + rtt, t));
            }
            most = most.max(s.in_flight());
            let Some((at, t)) = pending.pop_front() else {
                break;
            };
            now = now.max(at);
            s.handle_frame(&response(&t.tid, 200), now);
        }
        *s_out = Some(s);
        most
    }

    /// A delivery keeps one entry per chunk in its window (1,638 at the default 16 MiB window and
    /// 10 KiB chunks, times every delivery): the entry must stay small and own no heap.
    #[test]
    fn in_flight_entry_is_small() {
        assert!(
            std::mem::size_of::<InFlight>() <= 56,
            "InFlight is {} bytes",
            std::mem::size_of::<InFlight>()
        );
    }

    #[test]
    fn a_drained_window_gives_its_memory_back() {
        let now = Instant::now();
        let mut s = sender(cfg(10, 20_000), now);
        s.handle_data_available(20_000, true);
        let sent = drain(&mut s, now);
        assert_eq!(sent.len(), 2_000);
        assert!(s.inflight.capacity() >= 2_000);
        for t in &sent[..1_990] {
            assert!(s.handle_frame(&response(&t.tid, 200), now));
        }
        assert_eq!(s.inflight.len(), 10);
        assert!(
            s.inflight.capacity() <= 4 * INFLIGHT_KEEP,
            "capacity {} for 10 entries",
            s.inflight.capacity()
        );
        for t in &sent[1_990..] {
            assert!(s.handle_frame(&response(&t.tid, 200), now));
        }
        assert_eq!(s.state(), SenderState::AwaitingReport);
    }

    #[test]
    fn window_grows_to_fill_a_long_path() {
        let c = SenderConfig {
            max_window_bytes: 4 << 20,
            ..cfg(10_240, 256 * 1024)
        };
        let mut s = None;
        let most = run_path(c, 64 << 20, Duration::from_millis(50), &mut s);
        let s = s.unwrap();
        assert_eq!(s.acked(), 64 << 20);
        assert_eq!(s.window(), 4 << 20, "grew to the cap");
        assert!(
            most > (4 << 20) - 10_240,
            "in flight reached the cap: {most}"
        );
    }

    #[test]
    fn window_does_not_grow_when_answers_are_late() {
        let c = SenderConfig {
            max_window_bytes: 4 << 20,
            transaction_timeout: Duration::from_secs(1),
            ..cfg(10_240, 256 * 1024)
        };
        let mut s = None;
        // 300 ms is past a quarter of the 1 s timeout: the window stays at its floor.
        let most = run_path(c, 8 << 20, Duration::from_millis(300), &mut s);
        assert_eq!(s.unwrap().window(), 256 * 1024);
        assert!(most <= 256 * 1024, "{most}");
    }

    #[test]
    fn window_halves_when_answers_turn_late() {
        let now = Instant::now();
        let c = SenderConfig {
            max_window_bytes: 1 << 20,
            transaction_timeout: Duration::from_secs(8),
            ..cfg(1000, 10_000)
        };
        let mut s = sender(c, now);
        s.handle_data_available(100 << 20, true);
        // Grow: answered at once while window-limited.
        for _ in 0..30 {
            for t in drain(&mut s, now) {
                s.handle_frame(&response(&t.tid, 200), now);
            }
        }
        let grown = s.window();
        assert!(grown > 100_000, "{grown}");
        // Grown while answered at once; a 3 s answer is also far beyond twice that.
        // Then answers take 3 s (> 8 s / 4): each halves the window, down to the floor.
        let sent = drain(&mut s, now);
        let later = now + Duration::from_secs(3);
        s.handle_frame(&response(&sent[0].tid, 200), later);
        assert_eq!(s.window(), grown / 2);
        for t in &sent[1..] {
            s.handle_frame(&response(&t.tid, 200), later);
        }
        assert_eq!(s.window(), 10_000);
    }

    #[test]
    fn window_stops_growing_when_a_queue_builds() {
        // A path of 20 ms and 10 MB/s with an unbounded router queue: a response comes back
        // 20 ms plus the time the bytes ahead of it take at the bottleneck.
        let t0 = Instant::now();
        let c = SenderConfig {
            max_window_bytes: 64 << 20,
            ..cfg(10_240, 64 * 1024)
        };
        let mut s = sender(c, t0);
        s.handle_data_available(64 << 20, true);
        let rate = 10_000_000f64;
        let mut now = t0;
        let mut link_free = t0;
        let mut pending: VecDeque<(Instant, Transmit)> = VecDeque::new();
        let mut most = 0;
        loop {
            for t in drain(&mut s, now) {
                let len = (t.body.end - t.body.start) as f64;
                link_free = link_free.max(now) + Duration::from_secs_f64(len / rate);
                pending.push_back((link_free + Duration::from_millis(20), t));
            }
            most = most.max(s.window());
            let Some((at, t)) = pending.pop_front() else {
                break;
            };
            now = now.max(at);
            s.handle_frame(&response(&t.tid, 200), now);
        }
        assert_eq!(s.acked(), 64 << 20);
        // The bandwidth-delay product is 200 kB; growth stops once the queue doubles the RTT
        // (about 2 × BDP plus the slack), far below the 64 MiB cap.
        assert!(most >= 200_000, "window {most} below the path's BDP");
        assert!(
            most <= 1_000_000,
            "window {most} kept growing into the queue"
        );
    }

    #[test]
    fn stop_and_wait_never_grows() {
        let c = SenderConfig {
            max_window_bytes: 1 << 20,
            ..cfg(10, 10)
        };
        let mut s = None;
        let most = run_path(c, 10_000, Duration::from_millis(1), &mut s);
        assert_eq!(most, 10);
        assert_eq!(s.unwrap().window(), 10);
    }
}
