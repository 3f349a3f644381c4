//! One delivery on the wire: the connection that carries one spooled file to one participant as
//! one MSRP message. It feeds the spool's growth and the peer's frames into the sans-IO
//! [sender state machine](crate::msrp::sender::Sender), writes what it asks for (head, body read from the
//! spool at this participant's own pace, end-line) with vectored writes, and reports the outcome.
//!
//! On plain TCP a chunk body whose range the spool's dash-run index covers, and that holds no
//! run of dashes, goes from the spool file to the socket with `sendfile`: it is never read into
//! user space (one kernel copy instead of two, no spool block held). The head before it is sent
//! with `MSG_MORE` so that it leaves in the body's first segment, not as a packet of its own.
//! TLS, files without an index (restored from disk) and bodies with dash runs are read
//! (`pread`) and written from memory.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::{Interest, Registry, Token};

use crate::msrp::parser::{FrameDecoder, Limits};
use crate::msrp::sender::{Sender, SenderEvent, SenderState};
use crate::msrp::{dash_runs, writer, Kind, Message, Method};
use crate::runtime::io::{Command, Ctx, Flow, Handler};
use crate::runtime::readahead::{Lease, ReadAhead};
use crate::runtime::spool::{SpoolFile, SpoolState, Subscription};
use crate::tls::Transport;

/// `sendfile`'s answers for a file or socket it cannot work with (the caller falls back to
/// reading).
fn sendfile_unsupported(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

/// One piece of the out queue: bytes in memory, or message bytes sent straight from the spool
/// file (`sendfile`, plain TCP only).
enum Piece {
    Mem(Bytes),
    Spool { at: u64, len: usize },
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Mem(b) => b.len(),
            Piece::Spool { len, .. } => *len,
        }
    }

    /// Drops the first `n` bytes (fewer than [`Piece::len`]).
    fn advance(&mut self, n: usize) {
        match self {
            Piece::Mem(b) => bytes::Buf::advance(b, n),
            Piece::Spool { at, len } => {
                *at += n as u64;
                *len -= n;
            }
        }
    }
}

/// Bytes queued for the socket before the handler stops asking the sender for more frames. The
/// sender's window bounds what is in flight; this bounds what is in memory.
const OUT_LIMIT: usize = 128 * 1024;
/// Fill-and-write rounds per turn at most (each up to [`OUT_LIMIT`] bytes).
const TURN_ROUNDS: usize = 16;
/// Size of the read buffer each I/O thread shares among its deliveries (they run one at a time
/// and feed what they read into their own decoder at once), so a delivery holds none.
const READ_BUF: usize = 16 * 1024;

thread_local! {
    static READ_SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_BUF]);
}

/// One `read` of at most [`READ_BUF`] bytes into this thread's scratch buffer; `f` gets what was
/// read. The bound keeps each delivery's frame decoder small: what is read is copied into it,
/// and its buffer keeps the largest size it ever needed. With 64 KiB reads a delivery whose
/// window had grown (hundreds of 200s waiting in the socket) kept a decoder of 64–128 KiB for
/// the rest of its life; 16 KiB is still about 80 responses (800 KiB of 10 KiB chunks
/// acknowledged) per call.
fn read_into(stream: &mut impl Read, f: impl FnOnce(&[u8])) -> io::Result<usize> {
    READ_SCRATCH.with(|b| {
        let mut b = b.borrow_mut();
        let n = stream.read(&mut b)?;
        f(&b[..n]);
        Ok(n)
    })
}
/// Spool bytes read at once: one positioned read serves the bodies of many chunks (slices of one
/// buffer), instead of one read per chunk. With [`OUT_LIMIT`] this bounds a delivery's buffers
/// at about 256 KiB.
const READ_BLOCK: u64 = 128 * 1024;
/// Used-up spool blocks each I/O thread keeps for reuse (shared by its deliveries; most are
/// still referred to by an out queue, so this adds at most this many blocks per thread).
const SPENT_BLOCKS: usize = 8;

thread_local! {
    static SPENT: std::cell::RefCell<Vec<Bytes>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer of `len` bytes for the next spool block: a used-up block of this thread that no
/// slice refers to any more (no allocation, no zero-fill), or a new one.
fn block_buffer(len: usize) -> BytesMut {
    let reused = SPENT.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|b| b.is_unique())?;
        p.swap_remove(i).try_into_mut().ok()
    });
    match reused {
        Some(mut b) => {
            // Only bytes past the old length are zeroed (blocks are mostly of one size).
            b.resize(len, 0);
            b
        }
        None => BytesMut::zeroed(len),
    }
}
/// How long a finished connection may take to flush its queue (the `#` of an abort) before it is
/// closed anyway.
const CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// Live counters of one delivery, shared with the engine's status view.
#[derive(Debug, Default)]
pub struct Progress {
    /// Highest contiguous byte acknowledged or reported.
    pub acked: AtomicU64,
    /// Bytes written to the socket (body bytes).
    pub sent: AtomicU64,
    /// 0 connecting, 1 sending, 2 finished.
    pub phase: AtomicU8,
    /// The largest MSRP window (body bytes that may await responses) the sender reached: above
    /// `window_bytes` when responses came back in time while the window held it back.
    pub max_window: AtomicU64,
    /// The delivery failed because its connection ended (closed or reset by the participant,
    /// or a write failed) before the message was confirmed: not a refusal, not a timeout. With
    /// `acked` above 0 such a delivery may be resumed (`resume_retries`).
    pub dropped: AtomicBool,
    /// Body bytes sent straight from the spool file with `sendfile` (plain TCP), never read
    /// into user space.
    pub spool_sent: AtomicU64,
}

pub const PHASE_CONNECTING: u8 = 0;
pub const PHASE_SENDING: u8 = 1;
pub const PHASE_FINISHED: u8 = 2;

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Completed,
    Failed {
        /// The MSRP or transport status that ended it (408 timeout, 481, a REPORT's status, …);
        /// `None` for a connection failure that has no code.
        code: Option<u16>,
        reason: String,
    },
}

/// Where outcomes go: the engine's core thread.
pub type OutcomeSink = crossbeam_channel::Sender<(u64, DeliveryOutcome)>;

/// The delivery connection handler.
pub struct DeliveryConn {
    id: u64,
    stream: Transport,
    connecting: bool,
    /// The TLS handshake (and so the peer's verification) is complete, or the connection is
    /// plain: until then nothing of the message is produced, so not a byte of it can leave.
    secured: bool,
    connect_deadline: Instant,
    sender: Sender,
    file: Arc<SpoolFile>,
    /// Wakes this connection's thread at the next append once armed (armed when caught up).
    subscription: Subscription,
    seen_len: u64,
    seen_final: bool,
    upload_aborted: bool,
    decoder: FrameDecoder,
    /// What waits to be written, in order, and its byte count.
    out: VecDeque<Piece>,
    out_len: usize,
    writable: bool,
    progress: Arc<Progress>,
    sink: OutcomeSink,
    /// Our rendered From-Path and the peer's To-Path, for answering the peer's own SENDs
    /// (keep-alives).
    local_path: Bytes,
    peer_path: Bytes,
    outcome: Option<DeliveryOutcome>,
    /// The write side was shut down (failed delivery, queue flushed).
    write_shut: bool,
    /// Closing: the outcome is known; flush what is queued (a `#` end-line) then close.
    closing_deadline: Option<Instant>,
    /// Spool bytes read ahead, starting at message offset `block_start`.
    block: Bytes,
    block_start: u64,
    /// The spool's dash-run ends within the block (see [`crate::msrp::dash_runs`]), so that a
    /// chunk is checked for its end-line without scanning its body; `false` in `block_indexed`
    /// when the file has no index (then each body is scanned).
    block_ends: Vec<u64>,
    block_indexed: bool,
    /// Run ends within one chunk sent from the spool file (plain TCP), from the index.
    chunk_ends: Vec<u64>,
    /// `sendfile` failed as unsupported once: bodies are read from the spool.
    no_sendfile: bool,
    /// The block's share of the engine's read-ahead budget (`spool_read_ahead_bytes`).
    read_ahead: Lease,
    /// The transport is gone (EOF, reset or a failed write): nothing more can be exchanged.
    dead: bool,
    /// Responses we owe the peer for its own requests, still queued: for each, the position in
    /// the stream of queued bytes (`pushed`) where it ends. At `max_owed` the peer's frames are
    /// not read any more (back-pressure) until it takes what it is owed.
    owed: VecDeque<u64>,
    max_owed: usize,
    /// Bytes ever queued and ever written.
    pushed: u64,
    written: u64,
    /// Reading stopped at `max_owed`: since when, and frames or bytes may wait unread.
    paused_since: Option<Instant>,
    /// How long reading may stay stopped before the delivery fails.
    owed_timeout: Duration,
}

/// How reading the socket ended for now.
enum ReadEnd {
    /// Would block (or the outcome is known): the connection is still open.
    Open,
    /// EOF or an error, described.
    Closed(String),
}

/// Everything needed to start one delivery connection.
pub struct DeliveryParts {
    pub id: u64,
    pub subscription: Subscription,
    /// Plain TCP, or TLS whose handshake runs on the I/O thread (by its own deadline) before
    /// anything is sent.
    pub stream: Transport,
    /// True for an outgoing connection still being established.
    pub connecting: bool,
    pub connect_timeout: Duration,
    pub sender: Sender,
    pub file: Arc<SpoolFile>,
    pub decoder: FrameDecoder,
    pub progress: Arc<Progress>,
    pub sink: OutcomeSink,
    pub local_path: Bytes,
    pub peer_path: Bytes,
    /// Responses to the peer's own requests queued at most before its frames are no longer read
    /// (`msrp_max_owed_responses`).
    pub max_owed_responses: usize,
    /// How long the peer may leave them unread before the delivery fails.
    pub owed_timeout: Duration,
    /// The engine's read-ahead budget, shared by its deliveries.
    pub read_ahead: Arc<ReadAhead>,
}

impl DeliveryConn {
    pub fn new(p: DeliveryParts, now: Instant) -> DeliveryConn {
        DeliveryConn {
            id: p.id,
            secured: match &p.stream {
                Transport::Plain(_) => true,
                Transport::Tls(t) => !t.is_handshaking(),
            },
            stream: p.stream,
            connecting: p.connecting,
            connect_deadline: now + p.connect_timeout,
            sender: p.sender,
            file: p.file,
            subscription: p.subscription,
            seen_len: 0,
            seen_final: false,
            upload_aborted: false,
            decoder: p.decoder,
            out: VecDeque::new(),
            out_len: 0,
            writable: !p.connecting,
            progress: p.progress,
            sink: p.sink,
            local_path: p.local_path,
            peer_path: p.peer_path,
            outcome: None,
            write_shut: false,
            closing_deadline: None,
            block: Bytes::new(),
            block_start: 0,
            block_ends: Vec::new(),
            block_indexed: false,
            chunk_ends: Vec::new(),
            no_sendfile: false,
            read_ahead: p.read_ahead.lease(),
            dead: false,
            owed: VecDeque::new(),
            max_owed: p.max_owed_responses.max(1),
            pushed: 0,
            written: 0,
            paused_since: None,
            owed_timeout: p.owed_timeout,
        }
    }

    /// Builds a frame decoder with the limits a sender needs (responses and REPORTs, plus the
    /// peer's keep-alive SENDs).
    pub fn decoder() -> FrameDecoder {
        FrameDecoder::new(Limits::default())
    }

    /// The first frame of a connection the participant opened to us (it answered
    /// `a=setup:active`), already read by the listener.
    pub fn accept_first(&mut self, first: Message, now: Instant) {
        self.handle_frame(first, now);
    }

    fn finish(&mut self, outcome: DeliveryOutcome, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        self.progress.phase.store(PHASE_FINISHED, Ordering::Release);
        self.progress
            .max_window
            .fetch_max(self.sender.window(), Ordering::Relaxed);
        let _ = self.sink.send((self.id, outcome.clone()));
        self.outcome = Some(outcome);
        // Long enough for a slow reader to take what is queued (a `#` end-line last).
        self.closing_deadline = Some(now + CLOSE_FLUSH);
    }

    fn fail(&mut self, code: Option<u16>, reason: impl Into<String>, now: Instant) {
        self.finish(
            DeliveryOutcome::Failed {
                code,
                reason: reason.into(),
            },
            now,
        );
    }

    /// Looks at the spool file: more bytes, the final size, or an aborted upload. Arms the
    /// spool subscription once caught up, then looks again (an append just before arming is
    /// seen here, one after it wakes us).
    fn refresh_spool(&mut self, now: Instant) {
        let mut armed = false;
        loop {
            match self.file.state() {
                SpoolState::Complete { size, .. } => {
                    if !self.seen_final {
                        self.seen_final = true;
                        self.seen_len = size;
                        self.sender.handle_data_available(size, true);
                    }
                    return;
                }
                SpoolState::Writing if self.file.final_len().is_some() => {
                    // Written whole, the SHA-1 still being computed: the message can end.
                    if !self.seen_final {
                        let size = self.file.final_len().unwrap_or_default();
                        self.seen_final = true;
                        self.seen_len = size;
                        self.sender.handle_data_available(size, true);
                    }
                    return;
                }
                SpoolState::Writing => {
                    let len = self.file.len();
                    if len > self.seen_len {
                        self.seen_len = len;
                        self.sender.handle_data_available(len, false);
                    }
                }
                SpoolState::Aborted | SpoolState::TooLarge | SpoolState::QuotaExceeded => {
                    if !self.upload_aborted {
                        self.upload_aborted = true;
                        self.sender.abort(now);
                    }
                    return;
                }
            }
            if armed {
                return;
            }
            self.subscription.arm();
            armed = true;
        }
    }

    /// Reads and handles every byte the kernel holds for us, frame by frame, and the sender's
    /// events after each read: a success REPORT that arrived just before the peer's FIN or reset
    /// completes the delivery before the end of the connection is judged (RFC 4975 §7.1.2: the
    /// REPORT is the confirmation, the transport's fate after it does not matter).
    fn read_available(&mut self, now: Instant) -> ReadEnd {
        // Frames left in the decoder when reading stopped come first.
        if !self.decode(now) || self.read_stopped() {
            return ReadEnd::Open;
        }
        loop {
            let decoder = &mut self.decoder;
            match read_into(&mut self.stream, |b| decoder.feed(b)) {
                Ok(0) => return ReadEnd::Closed("connection closed by the participant".into()),
                Ok(_) => {
                    // Acknowledge what the peer sent at once instead of after the delayed-ACK
                    // timer: a peer that writes its small responses with Nagle on holds the next
                    // one until this ACK (up to 40 ms per round otherwise). Linux clears the
                    // flag by itself, hence once per read.
                    let _ = socket2::SockRef::from(self.stream.socket()).set_tcp_quickack(true);
                    if !self.decode(now) || self.read_stopped() {
                        return ReadEnd::Open;
                    }
                    self.drain_events(now);
                    if self.outcome.is_some() {
                        return ReadEnd::Open;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return ReadEnd::Closed(format!("connection error: {e}")),
            }
        }
    }

    fn read_frames(&mut self, now: Instant) {
        if let ReadEnd::Closed(what) = self.read_available(now) {
            self.transport_ended(what, now);
        }
    }

    /// The connection ended (EOF, reset, write error) with no outcome yet: everything received
    /// was handled, so the message was not confirmed. The reason says how far it got.
    fn transport_ended(&mut self, what: String, now: Instant) {
        self.dead = true;
        self.drain_events(now);
        if self.outcome.is_some() {
            return;
        }
        let acked = self.sender.acked();
        let total = self
            .sender
            .total()
            .map_or_else(|| "?".to_string(), |t| t.to_string());
        let reason = match self.sender.state() {
            SenderState::AwaitingReport => {
                format!("{what} before the success report (all {total} bytes acknowledged by 200)")
            }
            SenderState::Binding => format!("{what} before the bind SEND was answered"),
            _ if self.sender.total() == Some(acked) && self.sender.success_report() => {
                format!("{what} before the success report ({acked} of {total} bytes confirmed)")
            }
            _ => format!("{what} after {acked} of {total} bytes were confirmed"),
        };
        self.progress.acked.store(acked, Ordering::Release);
        self.progress.dropped.store(true, Ordering::Release);
        self.fail(None, reason, now);
    }

    /// Handles every complete frame in the decoder. False when the connection must stop.
    fn decode(&mut self, now: Instant) -> bool {
        loop {
            if self.owed.len() >= self.max_owed {
                // The peer does not take its responses: leave the rest unread (the kernel's
                // buffers then push back on it) until it does.
                self.paused_since.get_or_insert(now);
                return true;
            }
            match self.decoder.next() {
                Ok(Some(msg)) => self.handle_frame(msg, now),
                Ok(None) => return true,
                Err(e) => {
                    self.fail(
                        Some(e.status_code()),
                        format!("unparsable frame from the participant: {e}"),
                        now,
                    );
                    return false;
                }
            }
        }
    }

    fn handle_frame(&mut self, msg: Message, now: Instant) {
        if self.sender.handle_frame(&msg, now) {
            return;
        }
        // Not part of our message: the peer's own requests. SEND (keep-alive or data we do not
        // want: we are sendonly) gets 200 or 403 as RFC 4975 asks; REPORTs get nothing.
        if let Kind::Request(m) = &msg.kind {
            let code = match m {
                Method::Send if msg.body.is_empty() => 200,
                Method::Send => 403,
                Method::Report => return,
                _ => 501,
            };
            if code == 200 && msg.failure_report() == crate::msrp::FailureReport::No {
                return;
            }
            let mut b = BytesMut::with_capacity(256);
            writer::write_response(
                &msg.transaction_id,
                code,
                None,
                &self.peer_path,
                &self.local_path,
                &mut b,
            );
            self.push(Piece::Mem(b.freeze()));
            self.owed.push_back(self.pushed);
        }
    }

    /// Reading is stopped: the peer has `max_owed` responses queued and unread.
    fn read_stopped(&self) -> bool {
        self.owed.len() >= self.max_owed
    }

    /// Number of responses to the peer's own requests queued and not yet written.
    pub fn owed_responses(&self) -> usize {
        self.owed.len()
    }

    fn push(&mut self, p: Piece) {
        let n = p.len();
        if n > 0 {
            self.out_len += n;
            self.pushed += n as u64;
            self.out.push_back(p);
        }
    }

    /// Asks the sender for frames while the out queue has room; bodies are spool ranges sent
    /// with `sendfile` where the index clears them, else read from the spool.
    fn fill(&mut self, now: Instant) {
        while self.out_len < OUT_LIMIT {
            let Some(mut t) = self.sender.poll_transmit(now) else {
                return;
            };
            let indexed = !t.body.is_empty() && self.chunk_ends_known(t.body.clone());
            let body = if t.body.is_empty() {
                Piece::Mem(Bytes::new())
            } else if indexed && self.chunk_ends.is_empty() && !self.no_sendfile {
                // No run of dashes ends inside: it cannot hold an end-line, whatever the id.
                Piece::Spool {
                    at: t.body.start,
                    len: (t.body.end - t.body.start) as usize,
                }
            } else {
                match self.mem_body(t.body.clone(), &t.tid, indexed) {
                    Ok((body, holds_end_line)) => {
                        if holds_end_line {
                            self.sender.retid(&mut t);
                        }
                        Piece::Mem(body)
                    }
                    Err(e) => {
                        self.fail(None, format!("spool read failed: {e}"), now);
                        return;
                    }
                }
            };
            self.push(Piece::Mem(t.head));
            self.push(body);
            self.push(Piece::Mem(t.end_line));
        }
    }

    /// The body `r` read from the spool, and whether it holds the end-line of `tid`. On plain
    /// TCP with the index (`indexed`: its run ends are in `chunk_ends`) it is read alone, so
    /// that the delivery holds no block; otherwise it is a slice of the read-ahead block.
    fn mem_body(
        &mut self,
        r: std::ops::Range<u64>,
        tid: &[u8],
        indexed: bool,
    ) -> io::Result<(Bytes, bool)> {
        if indexed {
            let body = self.read_spool(r.start, (r.end - r.start) as usize)?;
            let holds = dash_runs::body_contains_end_line_at(&body, r.start, &self.chunk_ends, tid);
            return Ok((body, holds));
        }
        let body = self.read_body(r.clone())?;
        let holds = self.holds_end_line(&body, r.start, tid);
        Ok((body, holds))
    }

    /// Plain TCP, and the spool's index covers `r`: its run ends go into `chunk_ends`. Such a
    /// body goes with `sendfile` when none ends inside it (see [`DeliveryConn::fill`]).
    fn chunk_ends_known(&mut self, r: std::ops::Range<u64>) -> bool {
        matches!(self.stream, Transport::Plain(_))
            && self.file.dash_run_ends(r, &mut self.chunk_ends)
    }

    /// Whether `body` (message bytes from `start`, inside the current block) contains the
    /// end-line of `tid`: from the spool's index of dash runs, computed once per file as it was
    /// written, instead of a scan of every body by every delivery; by a scan when the file has
    /// no index.
    fn holds_end_line(&self, body: &[u8], start: u64, tid: &[u8]) -> bool {
        if self.block_indexed {
            dash_runs::body_contains_end_line_at(body, start, &self.block_ends, tid)
        } else {
            writer::body_contains_end_line(body, tid)
        }
    }

    /// The message bytes `r`: a slice of the read-ahead block, read anew (up to [`READ_BLOCK`]
    /// bytes, never past what the spool holds nor past what the window lets go, within the
    /// engine's read-ahead budget: see [`crate::runtime::readahead`]) when `r` is not inside it.
    fn read_body(&mut self, r: std::ops::Range<u64>) -> io::Result<Bytes> {
        let in_block =
            r.start >= self.block_start && r.end <= self.block_start + self.block.len() as u64;
        if !in_block {
            // Whole chunks of this one's size, so that the next chunks fit in the block too.
            let len = (r.end - r.start).max(1);
            let avail = self.seen_len.saturating_sub(r.start);
            let want = ((READ_BLOCK / len).max(1) * len)
                .min(avail)
                .max(r.end - r.start);
            let room = self.sender.window().saturating_sub(self.sender.in_flight());
            let want = self.read_ahead.block_len(want, r.end - r.start, room);
            self.block = self.read_spool(r.start, want as usize)?;
            self.block_start = r.start;
            self.block_indexed = self
                .file
                .dash_run_ends(r.start..r.start + want, &mut self.block_ends);
        }
        let from = (r.start - self.block_start) as usize;
        let to = (r.end - self.block_start) as usize;
        let body = self.block.slice(from..to);
        if to == self.block.len() {
            // Used up: the out queue's slices keep the buffer alive until written; then this
            // thread's next block is read into it.
            let spent = std::mem::take(&mut self.block);
            self.read_ahead.release();
            SPENT.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() == SPENT_BLOCKS {
                    p.remove(0);
                }
                p.push(spent);
            });
        }
        Ok(body)
    }

    fn read_spool(&self, start: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = block_buffer(len);
        let mut done = 0;
        while done < len {
            let n = self.file.read_at(start + done as u64, &mut buf[done..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "spool file shorter than its length",
                ));
            }
            done += n;
        }
        Ok(buf.freeze())
    }

    fn write_out(&mut self, now: Instant) {
        // TLS: records already encrypted go first (plain TCP has none).
        if self.writable && self.stream.wants_write() {
            match self.stream.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return;
                }
                Err(e) => {
                    self.write_failed(format!("connection error while writing: {e}"), now);
                    return;
                }
            }
        }
        while self.writable && !self.out.is_empty() {
            let (r, spool) = match self.out.front() {
                Some(&Piece::Spool { at, len }) => (self.send_spool(at, len), true),
                _ => (self.write_mem(), false),
            };
            match r {
                Ok(0) if spool => {
                    // The spool file ended early: the chunk on the wire cannot be completed.
                    let e = "spool file shorter than its length";
                    return self.spool_failed(&e, now);
                }
                Ok(0) => {
                    self.write_failed("connection closed while writing".into(), now);
                    return;
                }
                Ok(n) => {
                    if spool {
                        self.progress
                            .spool_sent
                            .fetch_add(n as u64, Ordering::Relaxed);
                    }
                    self.consumed(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if spool && sendfile_unsupported(&e) => {
                    if let Err(e) = self.spool_to_memory() {
                        return self.spool_failed(&e, now);
                    }
                }
                Err(e) => {
                    self.write_failed(format!("connection error while writing: {e}"), now);
                    return;
                }
            }
        }
    }

    /// Writes the in-memory pieces at the front of the queue (up to the next spool piece) with
    /// one vectored write. Followed by a spool piece, they go with `MSG_MORE` (plain TCP): the
    /// kernel holds them for the `sendfile` that follows instead of sending a small segment.
    fn write_mem(&mut self) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); 64];
        let mut k = 0;
        let mut more = false;
        for p in self.out.iter().take(64) {
            match p {
                Piece::Mem(b) => {
                    slices[k] = IoSlice::new(b);
                    k += 1;
                }
                Piece::Spool { .. } => {
                    more = true;
                    break;
                }
            }
        }
        match &self.stream {
            Transport::Plain(s) if more => {
                let mut control = rustix::net::SendAncillaryBuffer::default();
                let flags = rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL;
                Ok(rustix::net::sendmsg(s, &slices[..k], &mut control, flags)?)
            }
            _ => self.stream.write_vectored(&slices[..k]),
        }
    }

    /// Sends `len` message bytes at `at` from the spool file to the socket (plain TCP), without
    /// reading them into user space. A short count is handled like a short write; 0 means the
    /// spool file ends before `at` (`len` is never 0: empty pieces are not queued).
    fn send_spool(&mut self, at: u64, len: usize) -> io::Result<usize> {
        let Transport::Plain(s) = &self.stream else {
            return Err(io::Error::other("spool piece on a TLS connection"));
        };
        let mut offset = at;
        Ok(rustix::fs::sendfile(
            s,
            &*self.file,
            Some(&mut offset),
            len,
        )?)
    }

    /// The spool could not give the bytes of a chunk already partly on the wire: the delivery
    /// fails and the connection is done (the chunk cannot be completed).
    fn spool_failed(&mut self, e: &dyn std::fmt::Display, now: Instant) {
        self.fail(None, format!("spool read failed: {e}"), now);
        self.out.clear();
        self.out_len = 0;
        self.dead = true;
    }

    /// `sendfile` does not work from this spool file (a file system without it): the spool
    /// piece at the front is read into memory, and no later body is sent with `sendfile`.
    fn spool_to_memory(&mut self) -> io::Result<()> {
        self.no_sendfile = true;
        if let Some(&Piece::Spool { at, len }) = self.out.front() {
            let body = self.read_spool(at, len)?;
            self.out[0] = Piece::Mem(body);
        }
        Ok(())
    }

    /// `n` bytes at the front of the queue were written.
    fn consumed(&mut self, mut n: usize) {
        self.out_len -= n;
        self.written += n as u64;
        while self.owed.front().is_some_and(|&end| end <= self.written) {
            self.owed.pop_front();
        }
        while n > 0 {
            let Some(front) = self.out.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.out.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// A write failed: the peer is gone. What it sent before going (a success REPORT, say) is
    /// still read and handled first; nothing queued can be written any more.
    fn write_failed(&mut self, what: String, now: Instant) {
        self.out.clear();
        self.out_len = 0;
        self.owed.clear();
        if self.outcome.is_none() {
            let end = match self.read_available(now) {
                ReadEnd::Closed(w) => w,
                ReadEnd::Open => what,
            };
            if self.outcome.is_none() {
                self.transport_ended(end, now);
            }
        }
        self.dead = true;
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(ev) = self.sender.poll_event() {
            match ev {
                SenderEvent::Progress { acked } => {
                    self.progress.acked.store(acked, Ordering::Release);
                }
                SenderEvent::Completed => {
                    self.progress
                        .acked
                        .store(self.sender.acked(), Ordering::Release);
                    self.finish(DeliveryOutcome::Completed, now);
                }
                SenderEvent::Failed(f) => {
                    let reason = if self.upload_aborted {
                        "upload aborted".to_string()
                    } else {
                        f.reason
                    };
                    self.fail(Some(f.code), reason, now);
                }
            }
        }
    }

    /// One turn: everything the connection can do now, in order.
    fn turn(&mut self, now: Instant, readable: bool) -> Flow {
        if let Some(flow) = self.connect_step(now) {
            return flow;
        }
        let readable = match self.secure_step(now) {
            Ok(handshake_ended) => readable || handshake_ended,
            Err(flow) => return flow,
        };
        if self.outcome.is_none() {
            self.refresh_spool(now);
        }
        // TLS: records already taken off the socket (with a handshake flight, or handed over by
        // the listener) raise no readiness event again, so a TLS connection reads every turn.
        if (readable || self.stream.is_tls()) && self.outcome.is_none() {
            self.read_frames(now);
        }
        if self.outcome.is_none() {
            self.drain_events(now);
        }
        self.send_rounds(now);
        self.resume_reading(now);
        self.publish_progress();
        if self.outcome.is_none() {
            self.drain_events(now);
        }
        self.close_step(now)
    }

    /// An outgoing connection still being established: fails it past its deadline or on a
    /// connect error, marks it connected once the peer is known. `Some` ends the turn there.
    fn connect_step(&mut self, now: Instant) -> Option<Flow> {
        if !self.connecting {
            return None;
        }
        if now >= self.connect_deadline {
            self.fail(Some(408), "connection attempt timed out", now);
            return Some(Flow::Close);
        }
        match self.stream.socket().take_error() {
            Ok(Some(e)) | Err(e) => {
                self.fail(None, format!("cannot connect: {e}"), now);
                return Some(Flow::Close);
            }
            Ok(None) => {}
        }
        match self.stream.socket().peer_addr() {
            Ok(_) => {
                self.connecting = false;
                self.writable = true;
                if self.secured {
                    self.progress.phase.store(PHASE_SENDING, Ordering::Release);
                }
                None
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Some(Flow::Continue),
            Err(e) => {
                self.fail(None, format!("cannot connect: {e}"), now);
                Some(Flow::Close)
            }
        }
    }

    /// TLS: advances the handshake until it is complete. `Ok(true)` when it just completed
    /// (what came with the peer's last flight must be read now: no readable event announces it
    /// again); `Err` ends the turn there.
    fn secure_step(&mut self, now: Instant) -> Result<bool, Flow> {
        if self.secured {
            return Ok(false);
        }
        match self.stream.handshake(now) {
            Ok(true) => {
                self.secured = true;
                self.writable = true;
                self.progress.phase.store(PHASE_SENDING, Ordering::Release);
                Ok(true)
            }
            Ok(false) => Err(Flow::Continue),
            Err(e) => {
                // The reason names the cause: wrong host, expired, unknown CA, fingerprint
                // mismatch, timed out. The sender never produced a byte.
                self.dead = true;
                self.fail(None, format!("TLS: {e}"), now);
                Err(Flow::Close)
            }
        }
    }

    /// Fills and writes until the socket is full or the sender has nothing more (the window,
    /// the upload), a bounded number of times so the thread's other connections get a turn.
    fn send_rounds(&mut self, now: Instant) {
        for _ in 0..TURN_ROUNDS {
            let before = self.out_len;
            self.fill(now);
            let filled = self.out_len > before;
            self.write_out(now);
            if !filled || !self.writable || !self.out.is_empty() || self.outcome.is_some() {
                break;
            }
        }
    }

    /// Publishes the sender's counters to the engine's status view.
    fn publish_progress(&self) {
        self.progress
            .sent
            .store(self.sender.sent(), Ordering::Relaxed);
        self.progress
            .max_window
            .fetch_max(self.sender.window(), Ordering::Relaxed);
    }

    /// Reading stopped for owed responses: once the peer took enough of them, reads what waits
    /// (no readable event announces it again); while it does not, fails the delivery past
    /// `owed_timeout`.
    fn resume_reading(&mut self, now: Instant) {
        let Some(since) = self.paused_since else {
            return;
        };
        if self.outcome.is_some() || self.dead {
            return;
        }
        if !self.read_stopped() {
            // A bounded number of rounds; what is left waits for the next turn (the tick).
            for _ in 0..TURN_ROUNDS {
                self.paused_since = None;
                self.read_frames(now);
                self.write_out(now);
                if self.paused_since.is_none() || self.read_stopped() || self.outcome.is_some() {
                    break;
                }
            }
        } else if now.duration_since(since) >= self.owed_timeout {
            self.fail(
                Some(408),
                format!(
                    "the participant does not read: {} responses to its own requests left \
                     unread for {} ms",
                    self.owed.len(),
                    now.duration_since(since).as_millis()
                ),
                now,
            );
        }
    }

    /// Once the outcome is known: flush the queue, then close. A failed delivery half-closes
    /// first and reads (discarding) until the peer closes: closing a socket with unread input
    /// makes the kernel send a reset that throws away what is still queued for the peer — the
    /// `#` of an abort among it.
    fn close_step(&mut self, now: Instant) -> Flow {
        let Some(deadline) = self.closing_deadline else {
            return Flow::Continue;
        };
        if now >= deadline || self.dead {
            return Flow::Close;
        }
        if !self.out.is_empty() {
            return Flow::Continue;
        }
        if self.outcome == Some(DeliveryOutcome::Completed) {
            // TLS: a close_notify, best effort (the message is confirmed already).
            if self.stream.is_tls() {
                let _ = self.stream.shutdown_write();
            }
            return Flow::Close;
        }
        if !self.write_shut {
            match self.stream.shutdown_write() {
                Ok(true) => self.write_shut = true,
                // TLS: the close_notify is still queued; again when writable.
                Ok(false) => return Flow::Continue,
                Err(_) => return Flow::Close,
            }
        }
        loop {
            match read_into(&mut self.stream, |_| {}) {
                Ok(0) => return Flow::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flow::Close,
            }
        }
    }
}

impl Handler for DeliveryConn {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            self.stream.socket_mut(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(self.stream.socket_mut());
    }

    fn on_ready(&mut self, now: Instant, readable: bool, writable: bool, _: &mut Ctx) -> Flow {
        if writable {
            self.writable = true;
        }
        self.turn(now, readable)
    }

    fn on_wake(&mut self, now: Instant, _: &mut Ctx) -> Flow {
        if self.connecting || !self.secured {
            return Flow::Continue;
        }
        self.turn(now, false)
    }

    fn on_tick(&mut self, now: Instant, _: &mut Ctx) -> Flow {
        if !self.connecting && self.secured && self.outcome.is_none() {
            self.sender.handle_timeout(now);
        }
        self.turn(now, false)
    }

    fn on_command(&mut self, cmd: Command, now: Instant, _: &mut Ctx) -> Flow {
        match cmd {
            Command::Abort { reason, code } => {
                if self.outcome.is_none() {
                    if !self.connecting && self.secured {
                        self.sender.abort(now);
                        // Write the `#` chunk before reporting.
                        self.fill(now);
                        self.write_out(now);
                    }
                    // Drop any event the abort produced: the engine's reason stands.
                    while self.sender.poll_event().is_some() {}
                    self.fail(Some(code), reason, now);
                }
                if self.connecting || !self.secured {
                    Flow::Close
                } else {
                    self.close_step(now)
                }
            }
        }
    }

    fn key(&self) -> Option<u64> {
        Some(self.id)
    }
}
