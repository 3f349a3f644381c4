//! The passive MSRP receiver of `msrpcast receive` and of the tests: a listener on the I/O pool,
//! one handler per accepted connection driving the sans-IO [`Receiver`], and a sink that writes
//! each message to a file (positioned writes, any chunk order) or just counts it.
//!
//! Over TLS (`msrps`) too: a listener with a certificate accepts TLS connections only, and a
//! receiver behind an `msrps://` relay reaches it over TLS, verifying the relay's certificate
//! ([`ReceiveTls`]).
//!
//! A receiver can be made to misbehave on purpose (for tests and for imitating phones) through
//! [`ReceiveHooks`]: no-ops by default, called where misbehaviour is injected. The misbehaviours
//! themselves (`msrpcast receive --misbehave`) live in the tool, not in this library.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::Sender;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use sha1::{Digest, Sha1};

use crate::msrp::auth::{AuthClient, AuthError, AuthParams, AuthStep, Authorized};
use crate::msrp::parser::{FrameDecoder, Limits};
use crate::msrp::receiver::{Receiver, ReceiverConfig};
use crate::msrp::{writer, Kind, Message, Method, Uri};
use crate::runtime::io::{Command, Ctx, Flow, Handler};
use crate::runtime::log::Logger;
use crate::runtime::receiving::{self, FrameSide, ReceivingSession, Reply};
use crate::tls::{Fingerprint, Tls, TlsError, TlsSettings, TlsStream, Transport, Verify};

/// What the connection does after a reply a hook let through, or after what a hook wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfterWrite {
    /// Write what is queued now, on its own (an error shows at the next flush).
    pub flush: bool,
    /// Close the connection once everything queued is written.
    pub close_when_flushed: bool,
}

/// Whether a frame goes on to the MSRP [`Receiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    /// The receiver handles it as usual.
    Handle,
    /// A hook took it (and wrote whatever answer it wanted): the receiver never sees it.
    Taken,
}

/// How a hook closes the connection ([`ReceiveHooks::close_now`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// At once: what is queued is not written.
    Now,
    /// Once the responses queued so far are written (as far as the socket takes them).
    AfterResponses,
}

/// One connection's hooks, at the points where a receiver can be made to misbehave. Every
/// method has a default that behaves normally; the library itself never overrides them.
pub trait ReceiveHooks: Send {
    /// TCP_NODELAY on an accepted connection.
    fn nodelay(&self) -> bool {
        true
    }
    /// How many bytes may be read now (a rate limit); 0 waits for the next tick.
    fn read_allowance(&mut self, _now: Instant) -> u64 {
        u64::MAX
    }
    /// `n` bytes were read.
    fn on_read(&mut self, _n: usize) {}
    /// Every frame, before the receiver: a hook may take it, writing its own answer to `out`
    /// (`local` is our URI).
    fn on_frame(&mut self, _frame: &Message, _local: &Uri, _out: &mut BytesMut) -> FrameVerdict {
        FrameVerdict::Handle
    }
    /// A reply of the receiver about to be queued: `None` drops it.
    fn on_reply(&mut self, _reply: &Message) -> Option<AfterWrite> {
        Some(AfterWrite::default())
    }
    /// After the receiver's replies to `frame` were queued: a hook may add its own to `out`.
    fn after_frame(&mut self, _frame: &Message, _local: &Uri, _out: &mut BytesMut) -> AfterWrite {
        AfterWrite::default()
    }
    /// After the frames of a read: whether (and how) to close the connection.
    fn close_now(&mut self) -> Option<Closing> {
        None
    }
    /// True once the connection only writes: nothing more is read, and whenever the socket
    /// takes more, [`ReceiveHooks::fill`] queues it.
    fn writes_only(&self) -> bool {
        false
    }
    /// Queues what a write-only connection writes next.
    fn fill(&mut self, _local: &Uri, _out: &mut BytesMut) {}
}

/// Makes each connection's [`ReceiveHooks`].
pub type Hooks = Arc<dyn Fn() -> Box<dyn ReceiveHooks> + Send + Sync>;

/// The hooks of a receiver that behaves.
struct Behaves;

impl ReceiveHooks for Behaves {}

fn hooks_of(opts: &ReceiveOptions) -> Box<dyn ReceiveHooks> {
    match &opts.hooks {
        Some(make) => make(),
        None => Box::new(Behaves),
    }
}

/// What a receiver does with the bytes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Save each complete message as `<dir>/<message-id>` (written as `.part` first).
    Dir(PathBuf),
    /// Save each complete message under the file name its sender offered in `Content-Disposition`
    /// (made one safe path component, `name (1).ext` ... when taken; never replacing a file),
    /// else as `<dir>/<message-id>` like [`Sink::Dir`]. Written as `<message-id>.part` first.
    Named(PathBuf),
    /// Parse and count only (benchmarks).
    Discard,
}

/// A message that arrived (or failed), reported to the owner of the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub bytes: u64,
    /// Hex SHA-1 when the data arrived in order (always, for a conforming sender) and the sink
    /// hashes; `None` otherwise.
    pub sha1: Option<String>,
    pub path: Option<PathBuf>,
    /// `None` when complete; otherwise why not (aborted, refused).
    pub failure: Option<String>,
}

/// Settings of one receiver.
#[derive(Clone)]
pub struct ReceiveOptions {
    /// Our session's URI (its session-id must be in the To-Path of incoming frames).
    pub local: Uri,
    pub sink: Sink,
    /// Hash the data (in order) with SHA-1.
    pub hash: bool,
    /// Each connection's hooks (none: it behaves).
    pub hooks: Option<Hooks>,
    pub events: Sender<Received>,
    /// Limits of the frame parser (body bytes per chunk and so on).
    pub limits: Limits,
    /// Address responses to the request's whole From-Path instead of its first URI only.
    /// Needed behind Kamailio's relay (relay mode), which drops a response whose To-Path holds
    /// only its own URI.
    pub full_path_responses: bool,
    /// Largest message accepted: a chunk whose Byte-Range reaches past it (or past the declared
    /// total) is refused with 413 (400) before any file grows.
    pub max_message_bytes: u64,
    /// Where failed TLS handshakes and other connection problems are reported.
    pub logger: Logger,
    /// Part files kept for resumed transfers, shared by the receiver's connections.
    pub kept: Arc<KeptParts>,
}

/// Part files of messages whose connection ended before they were complete, kept so that a
/// resumed transfer (RFC 5547 `a=file-range`: a new message whose `Byte-Range` starts after the
/// bytes kept, total unchanged) completes them. Keyed by the file name the sender offered and
/// the total: the MSRP frames carry no hash, so the whole file's SHA-1 is computed again at the
/// end (the kept bytes re-read) for the caller to compare with the offer's. At most
/// [`MAX_KEPT_PARTS`]; the oldest goes (its file removed) for a new one.
#[derive(Debug, Default)]
pub struct KeptParts {
    parts: parking_lot::Mutex<std::collections::VecDeque<Kept>>,
}

/// Part files kept at most by one receiver ([`KeptParts`]).
pub const MAX_KEPT_PARTS: usize = 64;

#[derive(Debug)]
struct Kept {
    name: String,
    total: u64,
    /// The bytes from the start that the part file holds, in order.
    len: u64,
    part: PathBuf,
}

impl KeptParts {
    fn keep(&self, k: Kept) {
        let mut parts = self.parts.lock();
        if parts.len() >= MAX_KEPT_PARTS {
            if let Some(old) = parts.pop_front() {
                let _ = std::fs::remove_file(old.part);
            }
        }
        parts.push_back(k);
    }

    /// The kept part of `name` with `total` bytes, taken out of the set.
    fn take(&self, name: &str, total: u64) -> Option<Kept> {
        let mut parts = self.parts.lock();
        let i = parts
            .iter()
            .rposition(|k| k.name == name && k.total == total)?;
        parts.remove(i)
    }

    /// How many part files are kept.
    pub fn len(&self) -> usize {
        self.parts.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Default of [`ReceiveOptions::max_message_bytes`] (`msrpcast receive --max-bytes`): the
/// engine's own default largest file.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 4 << 30;

/// TLS for a receiver: our certificate (a TLS listener needs one; behind a relay it is
/// presented when the relay asks for a client certificate), how the relay's certificate is
/// checked, and the handshake deadline.
#[derive(Debug, Clone)]
pub struct ReceiveTls {
    pub tls: Arc<Tls>,
    /// `a=fingerprint`-style pins for the relay's certificate (with [`Verify::Fingerprint`]).
    pub fingerprints: Vec<Fingerprint>,
    pub handshake_timeout: Duration,
}

/// Default of [`ReceiveTls::handshake_timeout`] (`msrpcast receive --tls-handshake-timeout-ms`).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ReceiveTls {
    /// From PEM files: `cert`/`key` (both or neither), `ca` (trusted instead of the system
    /// store), `verify` for the relay's certificate (`Fingerprint` needs `fingerprints`).
    pub fn load(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
        verify: Verify,
        fingerprints: Vec<Fingerprint>,
    ) -> Result<ReceiveTls, TlsError> {
        let tls = Tls::load(TlsSettings {
            cert,
            key,
            ca,
            verify,
            request_client_cert: false,
            alpn: Vec::new(),
            // One connection to a relay at most: nothing to remember.
            verify_cache: 0,
        })?;
        Ok(ReceiveTls {
            tls: Arc::new(tls),
            fingerprints,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }
}

/// The listener handler: accepts and spawns [`ReceiveConn`]s, each on the least loaded I/O
/// thread (`msrpcast receive --threads N` spreads its connections over N threads).
pub struct ReceiveListener {
    listener: TcpListener,
    opts: Arc<ReceiveOptions>,
    /// Accept TLS only (handshake within the timeout) with this server config.
    tls: Option<(Arc<rustls::ServerConfig>, Duration)>,
}

impl ReceiveListener {
    pub fn new(listener: TcpListener, opts: ReceiveOptions) -> Self {
        ReceiveListener {
            listener,
            opts: Arc::new(opts),
            tls: None,
        }
    }

    /// A listener that speaks TLS only, with `tls`'s certificate.
    pub fn with_tls(
        listener: TcpListener,
        opts: ReceiveOptions,
        tls: &ReceiveTls,
    ) -> Result<Self, TlsError> {
        let mut l = ReceiveListener::new(listener, opts);
        l.tls = Some((tls.tls.server_config()?, tls.handshake_timeout));
        Ok(l)
    }
}

impl Handler for ReceiveListener {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.listener, token, Interest::READABLE)
    }
    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.listener);
    }
    fn on_ready(&mut self, _: Instant, _: bool, _: bool, ctx: &mut Ctx) -> Flow {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let hooks = hooks_of(&self.opts);
                    let _ = stream.set_nodelay(hooks.nodelay());
                    let transport = match &self.tls {
                        None => Transport::Plain(stream),
                        Some((cfg, timeout)) => {
                            match TlsStream::accept(stream, cfg.clone(), Instant::now() + *timeout)
                            {
                                Ok(t) => Transport::Tls(Box::new(t)),
                                Err(e) => {
                                    self.opts.logger.warn(
                                        "receive",
                                        format_args!("TLS connection from {peer}: {e}"),
                                    );
                                    continue;
                                }
                            }
                        }
                    };
                    let conn = ReceiveConn::new(transport, self.opts.clone(), hooks);
                    ctx.add_anywhere(Box::new(conn));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flow::Continue,
            }
        }
    }
    fn on_wake(&mut self, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Continue
    }
    fn on_tick(&mut self, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Continue
    }
    fn on_command(&mut self, _: Command, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Close
    }
}

struct Open {
    file: Option<File>,
    /// The name the sender offered, as sent (sanitised when the file is saved).
    offered: Option<String>,
    part: Option<PathBuf>,
    hasher: Option<Sha1>,
    /// Next in-order offset for the hash; out-of-order data disables hashing.
    next: u64,
    bytes: u64,
    /// The message's total as its `Byte-Range` said, once known (for keeping the part file).
    total: Option<u64>,
}

impl Open {
    /// A message's first piece arrived: a part file of its own, never another message's
    /// (another connection may use the same Message-ID).
    fn new(opts: &ReceiveOptions, message_id: &Bytes) -> Open {
        let (file, part) = match &opts.sink {
            Sink::Dir(dir) | Sink::Named(dir) => match create_part(dir, &safe_name(message_id)) {
                Some((f, p)) => (Some(f), Some(p)),
                None => (None, None),
            },
            Sink::Discard => (None, None),
        };
        Open {
            file,
            offered: None,
            part,
            hasher: opts.hash.then(Sha1::new),
            next: 0,
            bytes: 0,
            total: None,
        }
    }
}

/// Bytes read from the socket per call.
const READ_BYTES: usize = 256 * 1024;

/// One accepted connection (or, in relay mode, our connection to the relay).
pub struct ReceiveConn {
    session: ReceivingSession,
    files: IntoFiles,
    closed: bool,
    /// The TLS handshake completed (always true for plain TCP).
    secured: bool,
}

/// Where a connection's messages go: part files saved under their final names (or only
/// counted), each message reported to the owner of the receiver; and the connection's hooks.
struct IntoFiles {
    opts: Arc<ReceiveOptions>,
    open: HashMap<Bytes, Open>,
    /// The `Content-Disposition` file name of the frame being handled, if any.
    frame_name: Option<String>,
    hooks: Box<dyn ReceiveHooks>,
    /// The `Byte-Range` total of the frame being handled, if any.
    frame_total: Option<u64>,
    /// A hook asked to close once everything queued is written.
    close_when_flushed: bool,
    /// Outcomes not yet told: each waits until the replies queued before it (the success
    /// REPORT above all) are written, so a caller that stops at the news (`--count`) never
    /// stops before the REPORT leaves.
    untold: Vec<Received>,
}

impl ReceiveConn {
    fn new(stream: Transport, opts: Arc<ReceiveOptions>, hooks: Box<dyn ReceiveHooks>) -> Self {
        let decoder = FrameDecoder::new(opts.limits);
        Self::with_decoder(stream, opts, hooks, decoder)
    }

    /// On a connection whose first bytes were already read into `decoder` (relay mode: the
    /// frames after the AUTH exchange).
    fn with_decoder(
        stream: Transport,
        opts: Arc<ReceiveOptions>,
        hooks: Box<dyn ReceiveHooks>,
        decoder: FrameDecoder,
    ) -> Self {
        let receiver = Receiver::new(
            opts.local.clone(),
            ReceiverConfig {
                max_message_bytes: opts.max_message_bytes,
                ..ReceiverConfig::default()
            },
        );
        let secured = !stream.is_tls();
        ReceiveConn {
            session: ReceivingSession::new(stream, decoder, receiver, &opts.local),
            files: IntoFiles {
                opts,
                open: HashMap::new(),
                frame_name: None,
                hooks,
                frame_total: None,
                close_when_flushed: false,
                untold: Vec::new(),
            },
            closed: false,
            secured,
        }
    }
}

impl IntoFiles {
    fn report(&mut self, r: Received) {
        self.untold.push(r);
    }

    /// Tells the outcomes waiting in `untold`.
    fn tell(&mut self) {
        for r in self.untold.drain(..) {
            let _ = self.opts.events.send(r);
        }
    }

    /// A message that will not complete: its part file removed, reported with why.
    fn on_failed(&mut self, message_id: &Bytes, bytes: u64, failure: String) {
        self.drop_open(message_id);
        self.report(Received {
            message_id: String::from_utf8_lossy(message_id).into_owned(),
            bytes,
            sha1: None,
            path: None,
            failure: Some(failure),
        });
    }

    /// Keeps the part file of a message cut off by the connection's end, for a resumed transfer
    /// ([`KeptParts`]): when it has a part file, an offered name, a total and bytes in order from
    /// the start. Returns the bytes kept (the file is cut to them).
    fn keep_open(&mut self, message_id: &Bytes) -> Option<u64> {
        let o = self.open.get(message_id)?;
        let (Some(part), Some(name), Some(total), Some(file)) =
            (o.part.clone(), o.offered.clone(), o.total, o.file.as_ref())
        else {
            return None;
        };
        let len = o.next;
        if len == 0 || len >= total || file.set_len(len).is_err() {
            return None;
        }
        self.open.remove(message_id);
        self.opts.kept.keep(Kept {
            name,
            total,
            len,
            part,
        });
        Some(len)
    }

    fn drop_open(&mut self, message_id: &Bytes) {
        if let Some(o) = self.open.remove(message_id) {
            if let Some(p) = o.part {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// The connection ended: each message still open is kept for a resumed transfer or
    /// dropped, and reported as cut off.
    fn cut_off(&mut self) {
        let ids: Vec<Bytes> = self.open.keys().cloned().collect();
        for id in ids {
            let bytes = self.open.get(&id).map(|o| o.bytes).unwrap_or(0);
            let kept = self.keep_open(&id);
            if kept.is_none() {
                self.drop_open(&id);
            }
            let failure = match kept {
                Some(n) => format!(
                    "connection closed before the message was complete ({n} bytes kept for a \
                     resumed transfer)"
                ),
                None => "connection closed before the message was complete".into(),
            };
            self.report(Received {
                message_id: String::from_utf8_lossy(&id).into_owned(),
                bytes,
                sha1: None,
                path: None,
                failure: Some(failure),
            });
        }
    }

    /// The kept part that a SEND of a new message continues (RFC 5547 `a=file-range`): its
    /// `Byte-Range` starts after byte 1 and it names the file and total of a kept part file.
    /// Taken out of the kept set, with the frame's Message-ID and the bytes before its range.
    fn kept_part_for<'m>(&self, msg: &'m Message) -> Option<(&'m Bytes, Kept, u64)> {
        let (br, mid) = (msg.byte_range()?, msg.message_id()?);
        if br.start <= 1 || self.open.contains_key(mid) {
            return None;
        }
        let (total, name) = (br.total?, offered_name(msg)?);
        let k = self.opts.kept.take(&name, total)?;
        Some((mid, k, br.start - 1))
    }

    /// The kept part file reopened and cut to its first `held` bytes, with the SHA-1 state of
    /// those bytes when the receiver hashes (none when they cannot be re-read). `None` when it
    /// cannot be reopened: it is removed.
    fn reopen_kept(&self, k: &Kept, held: u64) -> Option<(File, Option<Sha1>)> {
        let reopened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&k.part)
            .and_then(|f| f.set_len(held).map(|()| f));
        let warn = |e: io::Error| {
            self.opts.logger.warn(
                "receive",
                format_args!("kept part file {}: {e}", k.part.display()),
            )
        };
        let file = match reopened {
            Ok(f) => f,
            Err(e) => {
                warn(e);
                let _ = std::fs::remove_file(&k.part);
                return None;
            }
        };
        let hasher = if self.opts.hash {
            hash_prefix(&file, held).map_err(warn).ok()
        } else {
            None
        };
        Some((file, hasher))
    }
}

impl FrameSide for IntoFiles {
    /// A piece of a message: written at its offset, hashed while it arrives in order.
    fn data(&mut self, message_id: Bytes, offset: u64, bytes: &[u8]) {
        let opts = self.opts.clone();
        let offered = self.frame_name.take();
        let o = self
            .open
            .entry(message_id)
            .or_insert_with_key(|id| Open::new(&opts, id));
        if o.offered.is_none() {
            o.offered = offered;
        }
        if o.total.is_none() {
            o.total = self.frame_total;
        }
        if let Some(f) = &o.file {
            let _ = f.write_all_at(bytes, offset);
        }
        if offset == o.next {
            if let Some(h) = o.hasher.as_mut() {
                h.update(bytes);
            }
            o.next += bytes.len() as u64;
        } else {
            o.hasher = None;
        }
        o.bytes += bytes.len() as u64;
    }

    /// A whole message: its part file saved under its final name, reported with its hash.
    fn complete(&mut self, message_id: Bytes, total: u64) {
        let message_id = &message_id;
        let (sha1, path) = match self.open.remove(message_id) {
            Some(o) => {
                let sha1 = o.hasher.map(|h| hex(&h.finalize()));
                let path = match (&self.opts.sink, o.part) {
                    // Never over an earlier file of the same name.
                    (Sink::Dir(dir), Some(part)) => save_unique(&part, dir, &safe_name(message_id)),
                    (Sink::Named(dir), Some(part)) => {
                        let name = o
                            .offered
                            .as_deref()
                            .and_then(crate::msrp::disposition::safe_file_name)
                            .unwrap_or_else(|| safe_name(message_id));
                        save_unique(&part, dir, &name)
                    }
                    _ => None,
                };
                (sha1, path)
            }
            // An empty message.
            None => (self.opts.hash.then(|| hex(&Sha1::new().finalize())), None),
        };
        self.report(Received {
            message_id: String::from_utf8_lossy(message_id).into_owned(),
            bytes: total,
            sha1,
            path,
            failure: None,
        });
    }

    fn aborted(&mut self, message_id: Bytes, received: u64) {
        self.on_failed(&message_id, received, "aborted by the sender".into());
    }

    fn failed(&mut self, message_id: Bytes, code: u16, reason: &'static str) {
        self.on_failed(&message_id, 0, format!("{code} {reason}"));
    }

    fn reply(&mut self, frame: &Message, reply: &mut Message) -> Reply {
        let Some(after) = self.hooks.on_reply(reply) else {
            return Reply::Drop;
        };
        if self.opts.full_path_responses && reply.response_code().is_some() {
            reply.to_path = frame.from_path.clone();
        }
        if after.close_when_flushed {
            self.close_when_flushed = true;
        }
        if after.flush {
            Reply::WriteAndFlush
        } else {
            Reply::Write
        }
    }
}

impl ReceiveConn {
    fn handle_frame(&mut self, msg: Message) {
        let (files, out) = (&mut self.files, &mut self.session.out);
        if files.hooks.on_frame(&msg, &files.opts.local, out) == FrameVerdict::Taken {
            return;
        }
        let is_data_send = matches!(msg.kind, Kind::Request(Method::Send)) && !msg.body.is_empty();
        if is_data_send && !self.resume_kept(&msg) {
            return;
        }
        // A message keeps the first name offered (see `IntoFiles::data`): once it has one, the
        // name is not looked for again in every chunk.
        self.files.frame_name = match msg.message_id().and_then(|mid| self.files.open.get(mid)) {
            Some(open) if open.offered.is_some() => None,
            _ => offered_name(&msg),
        };
        self.files.frame_total = msg.byte_range().and_then(|br| br.total);
        self.session.handle_frame(&msg, &mut self.files);
        let (files, out) = (&mut self.files, &mut self.session.out);
        let after = files.hooks.after_frame(&msg, &files.opts.local, out);
        self.after_write(after);
        self.files.frame_name = None;
    }

    /// A SEND of a new message whose `Byte-Range` starts after byte 1, naming the file and total
    /// of a kept part file: the rest of a transfer interrupted earlier (RFC 5547 `a=file-range`).
    /// The part file is reopened, cut to the bytes before the range, re-read for the SHA-1, and
    /// the message opened as holding them. False when the frame was refused (400): the range
    /// does not continue the kept bytes (it would leave a hole); the part stays kept.
    fn resume_kept(&mut self, msg: &Message) -> bool {
        let Some((mid, k, held)) = self.files.kept_part_for(msg) else {
            return true;
        };
        let total = k.total;
        // Contiguous with the kept bytes and within the declared size; otherwise refused with
        // the part kept for a proper resume (and no hole is ever written).
        let fits = held
            .checked_add(msg.body.len() as u64)
            .is_some_and(|end| end <= total);
        if held > k.len || !fits {
            self.files.opts.kept.keep(k);
            let reason = &b"Byte-Range does not continue the kept part file"[..];
            self.session.respond(msg, 400, Some(reason));
            return false;
        }
        let Some((file, hasher)) = self.files.reopen_kept(&k, held) else {
            return true;
        };
        if !self.session.receiver.resume_message(mid, held, total) {
            self.files.opts.kept.keep(k);
            return true;
        }
        let name = k.name;
        self.files.open.insert(
            mid.clone(),
            Open {
                file: Some(file),
                offered: Some(name),
                part: Some(k.part),
                hasher,
                next: held,
                bytes: held,
                total: Some(total),
            },
        );
        true
    }

    /// What a hook asked for once a reply is queued: its own write(2), or a close once all is
    /// written.
    fn after_write(&mut self, after: AfterWrite) {
        if after.close_when_flushed {
            self.files.close_when_flushed = true;
        }
        if after.flush {
            // An error shows at the next flush.
            let _ = self.session.flush();
        }
    }

    /// A write-only connection (a hook's): what the hook queues, as much as the socket takes;
    /// nothing is read.
    fn write_only(&mut self) -> Flow {
        loop {
            let out = &mut self.session.out;
            self.files.hooks.fill(&self.files.opts.local, out);
            let before = out.len();
            if self.session.flush().is_err() {
                return self.close();
            }
            if self.session.out.len() == before || !self.session.out.is_empty() {
                // The peer stopped taking them (for now): wait for the socket.
                return Flow::Continue;
            }
        }
    }

    /// The TLS handshake, until it completes: `Some` flow while it is not done (or failed).
    fn handshake(&mut self, now: Instant) -> Option<Flow> {
        match self.session.stream.handshake(now) {
            Ok(true) => {
                self.secured = true;
                None
            }
            Ok(false) => Some(Flow::Continue),
            Err(e) => {
                let peer = self
                    .session
                    .stream
                    .socket()
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "a peer".into());
                self.files
                    .opts
                    .logger
                    .warn("receive", format_args!("TLS with {peer}: {e}"));
                Some(self.close())
            }
        }
    }

    /// The frames of a read, then what the hooks ask for: `Some` flow when the connection
    /// stops reading.
    fn after_read(&mut self, n: usize) -> Option<Flow> {
        self.files.hooks.on_read(n);
        loop {
            match self.session.decoder.next() {
                Ok(Some(msg)) => self.handle_frame(msg),
                Ok(None) => break,
                Err(_) => return Some(self.close()),
            }
        }
        if self.files.hooks.writes_only() {
            // Writing only from now on: nothing more is read.
            return Some(self.write_only());
        }
        match self.files.hooks.close_now() {
            Some(Closing::Now) => Some(self.close()),
            Some(Closing::AfterResponses) => {
                let _ = self.session.flush();
                Some(self.close())
            }
            None => None,
        }
    }

    fn turn(&mut self, now: Instant) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        if !self.secured {
            if let Some(flow) = self.handshake(now) {
                return flow;
            }
        }
        if self.files.hooks.writes_only() {
            return self.write_only();
        }
        loop {
            let want = (READ_BYTES as u64).min(self.files.hooks.read_allowance(now)) as usize;
            if want == 0 {
                break;
            }
            match self.session.read(want) {
                Ok(receiving::Read::Bytes(n)) => {
                    if let Some(flow) = self.after_read(n) {
                        return flow;
                    }
                }
                Ok(receiving::Read::Wait) => break,
                Ok(receiving::Read::Closed) | Err(_) => return self.close(),
            }
        }
        if self.session.flush().is_err() {
            return self.close();
        }
        let flushed = self.session.out.is_empty() && !self.session.stream.wants_write();
        if flushed {
            self.files.tell();
        }
        if self.files.close_when_flushed && flushed {
            return self.close();
        }
        Flow::Continue
    }

    fn close(&mut self) -> Flow {
        if !self.closed && self.secured && self.session.stream.is_tls() {
            // close_notify, best effort: the peer can tell our close from a truncation.
            let _ = self.session.stream.shutdown_write();
        }
        self.closed = true;
        self.files.cut_off();
        self.files.tell();
        Flow::Close
    }
}

impl Handler for ReceiveConn {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.session.register(registry, token)
    }
    fn deregister(&mut self, registry: &Registry) {
        self.session.deregister(registry);
    }
    fn on_ready(&mut self, now: Instant, _: bool, _: bool, _: &mut Ctx) -> Flow {
        self.turn(now)
    }
    fn on_wake(&mut self, _: Instant, _: &mut Ctx) -> Flow {
        Flow::Continue
    }
    fn on_tick(&mut self, now: Instant, _: &mut Ctx) -> Flow {
        // A TLS handshake past its deadline fails here.
        if let Err(e) = self.session.stream.check_deadline(now) {
            self.files
                .opts
                .logger
                .warn("receive", format_args!("TLS handshake: {e}"));
            return self.close();
        }
        // A rate-limited reader resumes here; everyone flushes pending replies.
        self.turn(now)
    }
    fn on_command(&mut self, _: Command, _: Instant, _: &mut Ctx) -> Flow {
        self.close()
    }
}

fn safe_name(id: &[u8]) -> String {
    let s: String = id
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "message".into()
    } else {
        s
    }
}

/// The file name a SEND offers in its `Content-Disposition`, unsanitised.
fn offered_name(msg: &Message) -> Option<String> {
    msg.headers.iter().find_map(|h| match h {
        crate::msrp::Header::Other { name, value }
            if name.eq_ignore_ascii_case(b"content-disposition") =>
        {
            crate::msrp::disposition::file_name(value)
        }
        _ => None,
    })
}

/// Most `name (N).ext` variants tried before giving up on a taken name.
const MAX_NAME_TRIES: u32 = 1000;

/// Moves `part` to `dir/name`, or `dir/name (1).ext`, ... when taken: a hard link never
/// replaces an existing file, so two messages offering one name both survive. `None` (the
/// `.part` file stays) when no name could be had.
/// Creates `NAME.part` (or `NAME.N.part` when taken) exclusively in `dir`.
fn create_part(dir: &std::path::Path, name: &str) -> Option<(File, PathBuf)> {
    for n in 0..MAX_NAME_TRIES {
        let part = if n == 0 {
            dir.join(format!("{name}.part"))
        } else {
            dir.join(format!("{name}.{n}.part"))
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
        {
            Ok(f) => return Some((f, part)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
    }
    None
}

fn save_unique(part: &std::path::Path, dir: &std::path::Path, name: &str) -> Option<PathBuf> {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    for n in 0..MAX_NAME_TRIES {
        let candidate = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        match std::fs::hard_link(part, &candidate) {
            Ok(()) => {
                let _ = std::fs::remove_file(part);
                return Some(candidate);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
    }
    None
}

/// The receiving tool's I/O threads report their own failures on standard error, warnings and
/// worse.
fn tool_logger() -> crate::runtime::log::Logger {
    crate::runtime::log::Logger::stderr(crate::runtime::log::Level::Warn)
}

/// The frame parser's limits of the receiving tool: chunks of up to 1 MiB.
fn tool_limits() -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        ..Limits::default()
    }
}

/// Our URI for session `session_id` at `addr` (`msrps` when `secure`).
fn our_uri(addr: std::net::SocketAddr, secure: bool, session_id: &str) -> io::Result<Uri> {
    let host = match addr {
        std::net::SocketAddr::V4(v) => v.ip().to_string(),
        std::net::SocketAddr::V6(v) => format!("[{}]", v.ip()),
    };
    let scheme = if secure { "msrps" } else { "msrp" };
    let text = format!("{scheme}://{host}:{}/{session_id};tcp", addr.port());
    Uri::parse_slice(text.as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{text}: {e}")))
}

/// SHA-1 state after the first `len` bytes of `file`.
fn hash_prefix(file: &File, len: u64) -> io::Result<Sha1> {
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let want = (len - at).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "part file shorter than kept",
            ));
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h)
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What [`ReceiveServer::listen`] starts.
pub struct Listen {
    pub addr: std::net::SocketAddr,
    /// The session id of our URI.
    pub session_id: String,
    pub sink: Sink,
    pub hash: bool,
    /// Each connection's hooks (none: it behaves).
    pub hooks: Option<Hooks>,
    /// I/O threads.
    pub threads: usize,
    pub max_message_bytes: u64,
    /// TLS only, with this certificate (our URI is then `msrps://`).
    pub tls: Option<ReceiveTls>,
}

/// A running receiver with its own I/O pool: the CLI's `receive` and the tests.
pub struct ReceiveServer {
    /// The listen address, or in relay mode the local end of the connection to the relay.
    pub addr: std::net::SocketAddr,
    /// Our own URI (the last URI of [`ReceiveServer::to_path`]).
    pub uri: Uri,
    /// The To-Path senders must use: our URI alone, or in relay mode the relay's `Use-Path`
    /// followed by our URI.
    pub to_path: Vec<Uri>,
    /// Relay mode: what the relay granted.
    pub relay: Option<Authorized>,
    pub events: crossbeam_channel::Receiver<Received>,
    _pool: crate::runtime::io::IoPool,
}

impl ReceiveServer {
    /// Listens on `addr` for session `session_id`.
    pub fn start(
        addr: std::net::SocketAddr,
        session_id: &str,
        sink: Sink,
        hash: bool,
        hooks: Option<Hooks>,
        threads: usize,
    ) -> io::Result<ReceiveServer> {
        Self::start_limited(
            addr,
            session_id,
            sink,
            hash,
            hooks,
            threads,
            DEFAULT_MAX_MESSAGE_BYTES,
        )
    }

    /// [`ReceiveServer::start`] accepting messages of up to `max_message_bytes`.
    pub fn start_limited(
        addr: std::net::SocketAddr,
        session_id: &str,
        sink: Sink,
        hash: bool,
        hooks: Option<Hooks>,
        threads: usize,
        max_message_bytes: u64,
    ) -> io::Result<ReceiveServer> {
        Self::listen(Listen {
            addr,
            session_id: session_id.to_owned(),
            sink,
            hash,
            hooks,
            threads,
            max_message_bytes,
            tls: None,
        })
    }

    /// Listens as `l` says; with [`Listen::tls`] it accepts TLS connections only and its URI is
    /// `msrps://`.
    pub fn listen(l: Listen) -> io::Result<ReceiveServer> {
        let listener = crate::runtime::net::listen(l.addr)?;
        let bound = listener.local_addr()?;
        let uri = our_uri(bound, l.tls.is_some(), &l.session_id)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = crate::runtime::io::IoPool::start(l.threads, tool_logger())?;
        let opts = ReceiveOptions {
            local: uri.clone(),
            sink: l.sink,
            hash: l.hash,
            hooks: l.hooks,
            events: tx,
            limits: tool_limits(),
            full_path_responses: false,
            max_message_bytes: l.max_message_bytes,
            logger: tool_logger(),
            kept: Arc::default(),
        };
        let handler = match &l.tls {
            None => ReceiveListener::new(listener, opts),
            Some(t) => ReceiveListener::with_tls(listener, opts, t).map_err(TlsError::into_io)?,
        };
        pool.add(Box::new(handler));
        Ok(ReceiveServer {
            addr: bound,
            to_path: vec![uri.clone()],
            uri,
            relay: None,
            events: rx,
            _pool: pool,
        })
    }

    /// Relay mode (RFC 4976): connects out to the MSRP relay at `relay`, authenticates with
    /// AUTH, and then receives on that same connection like the passive receiver (responses and
    /// REPORTs go back on it, addressed by the request's From-Path). Our URI names the local end
    /// of that connection, as the relay reaches clients by the host:port of their URI. Senders
    /// address the result's [`ReceiveServer::to_path`] (`<Use-Path> <our URI>`) and connect to
    /// the relay.
    ///
    /// An `msrps://` relay is reached over TLS (RFC 4976 §3 requires it between a client and its
    /// relay): the relay's certificate is checked as [`RelayLogin::tls`] says — by default it
    /// must chain to the system's trusted roots and name the relay URI's host — before AUTH
    /// sends a byte; a failure names the cause (unknown CA, wrong host, expired, …).
    pub fn start_via_relay(
        relay: &Uri,
        login: &RelayLogin,
        session_id: &str,
        sink: Sink,
        hash: bool,
        hooks: Option<Hooks>,
    ) -> io::Result<ReceiveServer> {
        let peer = crate::runtime::net::resolve(relay)?;
        let stream = std::net::TcpStream::connect_timeout(&peer, login.timeout)?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let uri = our_uri(local, relay.secure, session_id)?;
        let limits = tool_limits();
        let mut decoder = FrameDecoder::new(limits);
        let params = AuthParams {
            relay: relay.clone(),
            local: uri.clone(),
            user: login.user.clone(),
            password: login.password.clone(),
            expires: login.expires,
        };
        let (granted, transport) = if relay.secure {
            auth_over_tls(stream, relay, login, &mut decoder, params)?
        } else {
            let mut stream = stream;
            let granted = relay_auth(&mut stream, &mut decoder, params, login.timeout)?;
            stream.set_read_timeout(None)?;
            stream.set_nonblocking(true)?;
            (granted, Transport::Plain(TcpStream::from_std(stream)))
        };
        let mut to_path = granted.use_path.clone();
        to_path.push(uri.clone());
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = crate::runtime::io::IoPool::start(1, tool_logger())?;
        let opts = Arc::new(ReceiveOptions {
            local: uri.clone(),
            sink,
            hash,
            hooks,
            events: tx,
            limits,
            full_path_responses: true,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            logger: tool_logger(),
            kept: Arc::default(),
        });
        let hooks = hooks_of(&opts);
        pool.add(Box::new(ReceiveConn::with_decoder(
            transport, opts, hooks, decoder,
        )));
        Ok(ReceiveServer {
            addr: local,
            uri,
            to_path,
            relay: Some(granted),
            events: rx,
            _pool: pool,
        })
    }

    /// [`ReceiveServer::to_path`] as header text: URIs separated by one space.
    pub fn to_path_text(&self) -> String {
        String::from_utf8_lossy(&writer::render_path(&self.to_path)).into_owned()
    }

    /// Waits for the next message outcome, up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Received> {
        self.events.recv_timeout(timeout).ok()
    }
}

/// Credentials for [`ReceiveServer::start_via_relay`].
#[derive(Debug, Clone)]
pub struct RelayLogin {
    pub user: String,
    pub password: String,
    /// Lifetime to ask for (`Expires`), or the relay's default.
    pub expires: Option<u32>,
    /// For connecting and for each response of the AUTH exchange.
    pub timeout: Duration,
    /// For an `msrps://` relay: how its certificate is checked (and our certificate, if it asks
    /// for one). `None`: the system's trusted roots and the relay URI's host.
    pub tls: Option<ReceiveTls>,
}

impl RelayLogin {
    /// From `USER:PASSWORD` (the password may contain `:`).
    pub fn parse(user_pass: &str) -> Result<RelayLogin, String> {
        let (user, password) = user_pass
            .split_once(':')
            .ok_or_else(|| "expected USER:PASSWORD".to_string())?;
        if user.is_empty() {
            return Err("empty user name".into());
        }
        Ok(RelayLogin {
            user: user.into(),
            password: password.into(),
            expires: None,
            timeout: Duration::from_secs(10),
            tls: None,
        })
    }
}

/// A blocking connection to a relay, plain or TLS, for the AUTH exchange.
trait AuthStream: Read + Write {
    fn set_auth_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()>;
}

impl AuthStream for std::net::TcpStream {
    fn set_auth_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl AuthStream for crate::tls::blocking::BlockingTlsClient {
    fn set_auth_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(t)
    }
}

/// Relay mode over TLS: the TLS handshake with the relay at `relay` on `stream` (its
/// certificate checked as `login` says), then the AUTH exchange; the connection is handed over
/// non-blocking.
fn auth_over_tls(
    stream: std::net::TcpStream,
    relay: &Uri,
    login: &RelayLogin,
    decoder: &mut FrameDecoder,
    params: AuthParams,
) -> io::Result<(Authorized, Transport)> {
    let tls = match &login.tls {
        Some(t) => t.clone(),
        None => ReceiveTls::load(None, None, None, Verify::Host, Vec::new())
            .map_err(TlsError::into_io)?,
    };
    let config = tls
        .tls
        .client_config(&tls.fingerprints)
        .map_err(TlsError::into_io)?;
    let name = crate::tls::config::server_name(&relay.host).map_err(TlsError::into_io)?;
    let mut secured = crate::tls::blocking::connect(stream, config, name, tls.handshake_timeout)
        .map_err(TlsError::into_io)?;
    let granted = relay_auth(&mut secured, decoder, params, login.timeout)?;
    let rustls::StreamOwned { conn, sock } = secured;
    sock.set_read_timeout(None)?;
    sock.set_nonblocking(true)?;
    let t = TlsStream::established(conn, TcpStream::from_std(sock));
    Ok((granted, Transport::Tls(Box::new(t))))
}

/// Runs the AUTH exchange on a blocking connection. Frames read past the final response stay in
/// `decoder` for the receiver.
fn relay_auth(
    stream: &mut impl AuthStream,
    decoder: &mut FrameDecoder,
    params: AuthParams,
    timeout: Duration,
) -> io::Result<Authorized> {
    let ids = crate::msrp::ids::IdGen::new().map_err(|e| io::Error::other(e.to_string()))?;
    let mut client = AuthClient::new(params, ids);
    send_auth(stream, &client.start())?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Frames already buffered first.
        if let Some(granted) = auth_steps(stream, &mut client, decoder)? {
            return Ok(granted);
        }
        read_auth(stream, decoder, &mut buf, deadline)?;
    }
}

/// Writes one AUTH request.
fn send_auth(stream: &mut impl AuthStream, req: &Message) -> io::Result<()> {
    let mut out = BytesMut::new();
    writer::write_message(req, &mut out);
    stream.write_all(&out)
}

/// The relay's frames buffered in `decoder`, through the AUTH client: the grant once it came.
fn auth_steps(
    stream: &mut impl AuthStream,
    client: &mut AuthClient,
    decoder: &mut FrameDecoder,
) -> io::Result<Option<Authorized>> {
    while let Some(msg) = decoder
        .next()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("from the relay: {e:?}")))?
    {
        let step = client.handle_frame(&msg).map_err(|e| {
            let kind = match e {
                AuthError::Rejected | AuthError::Forbidden { .. } => {
                    io::ErrorKind::PermissionDenied
                }
                _ => io::ErrorKind::Other,
            };
            io::Error::new(kind, e)
        })?;
        match step {
            AuthStep::Ignored => {}
            AuthStep::Send(req) => send_auth(stream, &req)?,
            AuthStep::Done(granted) => return Ok(Some(granted)),
        }
    }
    Ok(None)
}

/// Reads what the relay sent next into `decoder`, waiting until `deadline` at most.
fn read_auth(
    stream: &mut impl AuthStream,
    decoder: &mut FrameDecoder,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    let no_answer = || io::Error::new(io::ErrorKind::TimedOut, "no answer from the relay to AUTH");
    let closed = || {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "relay closed the connection during AUTH",
        )
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(no_answer());
    }
    stream.set_auth_read_timeout(Some(left))?;
    match stream.read(buf) {
        // Over TLS, a close without close_notify is an UnexpectedEof error.
        Ok(0) => Err(closed()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(closed()),
        Ok(n) => {
            decoder.feed(&buf[..n]);
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(no_answer())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
    }
}
