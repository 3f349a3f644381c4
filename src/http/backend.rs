//! The engine behind the HTTP handler: [`EngineBackend`] implements [`Backend`] over a running
//! [`Engine`], and [`EngineUpload`] implements [`UploadSink`] over [`crate::runtime::engine::Upload`]
//! (every `write` goes straight into the spool file; nothing is buffered here).
//!
//! **Transfer JSON of the HTTP API** (`GET /api/transfers/{id}`, SSE `transfer` events) is the
//! roster's transfer object (`id` a JSON number, as in the `201` body and the RPC replies) with
//! one change the page relies on: `state` is the *HTTP view* of the transfer:
//! `uploading` (bytes still arriving), `complete`, `aborted`, `too-large`, or `cancelled`
//! (`DELETE` on a transfer that was still running). Deliveries are the roster's delivery objects
//! (`participant`, `state`, `bytes`, `total`, `percent`, `reason`, `code`).
//!
//! **Refusals**: unknown conference 404; a conference that existed but has no participants any
//! more 409 (the roster forgets a conference with its last participant, so the backend remembers
//! the ids it has seen, up to [`SEEN_CONFERENCES`]); over `max_file_bytes` 413 (declared, or while
//! streaming); `http_max_uploads` running uploads 503; spool quota 507; engine queue full 503;
//! chosen recipients (`to`) naming a key that is not a participant, or nobody, 400.
//!
//! **Metrics** are counters kept by [`EngineBackend::observe`], which diffs roster snapshots
//! (the server calls it every `http_sse_interval_ms`, and `/metrics` calls it before answering),
//! so they count every producer's transfers, not only HTTP uploads.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::service::{Backend, Refusal, UploadRequest, UploadSink};
use super::HttpError;
use crate::json;
use crate::roster::{
    DeliveryId, DeliveryState, Origin, RosterError, RosterSnapshot, TransferId, TransferSnapshot,
    TransferState,
};
use crate::runtime::engine::{Engine, EngineError, Upload};

/// How many conference ids the backend remembers to tell 409 from 404.
pub const SEEN_CONFERENCES: usize = 4096;

/// An HTTP-side verdict on a transfer that the roster's state does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Cancelled,
    TooLarge,
}

/// Monotonic counters derived from roster snapshots.
#[derive(Debug, Default)]
struct Tracker {
    transfers: HashMap<TransferId, Tracked>,
    uploads_total: u64,
    /// complete, aborted, too-large, cancelled
    uploads_ended: [u64; 4],
    /// done, failed, cancelled
    deliveries_ended: [u64; 3],
    delivery_bytes: u64,
    /// Seconds from a delivery's creation (the file offered to the participant) to `done`.
    delivery_duration: Histogram,
    /// Seconds from a delivery's creation to the participant's first acknowledged bytes.
    first_chunk_latency: Histogram,
}

#[derive(Debug, Default)]
struct Tracked {
    ended: bool,
    deliveries: HashMap<DeliveryId, TrackedDelivery>,
}

#[derive(Debug, Default)]
struct TrackedDelivery {
    bytes: u64,
    ended: bool,
    first_byte_seen: bool,
}

/// Upper bounds (seconds) of the delivery duration histogram's buckets.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];
/// Upper bounds (seconds) of the first-chunk latency histogram's buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Prometheus histogram with fixed buckets (`+Inf` implied); observations in milliseconds,
/// exposed in seconds.
#[derive(Debug, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket of the bounds given to `observe`, then `+Inf`.
    counts: Vec<u64>,
    sum_ms: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], ms: u64) {
        if self.counts.len() != bounds.len() + 1 {
            self.counts = vec![0; bounds.len() + 1];
        }
        let secs = ms as f64 / 1000.0;
        let i = bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum_ms += ms;
        self.count += 1;
    }
}

struct Inner {
    engine: Arc<Engine>,
    max_file_bytes: u64,
    max_uploads: usize,
    /// Shared with each upload's [`Slot`], which must not keep the engine alive.
    active_uploads: Arc<AtomicUsize>,
    http_uploads_total: AtomicU64,
    http_upload_bytes: AtomicU64,
    http_refused_total: AtomicU64,
    http_connections: AtomicUsize,
    verdicts: Mutex<HashMap<TransferId, Verdict>>,
    seen: Mutex<HashSet<String>>,
    tracker: Mutex<Tracker>,
}

/// The engine as the HTTP handler sees it. Cheap to clone (shared state).
#[derive(Clone)]
pub struct EngineBackend {
    inner: Arc<Inner>,
}

impl EngineBackend {
    /// `max_uploads`: concurrent uploads (`http_max_uploads`); the file size limit is the
    /// engine's `max_file_bytes`.
    pub fn new(engine: Arc<Engine>, max_uploads: usize) -> Self {
        let max_file_bytes = engine.config().max_file_bytes;
        EngineBackend {
            inner: Arc::new(Inner {
                engine,
                max_file_bytes,
                max_uploads: max_uploads.max(1),
                active_uploads: Arc::new(AtomicUsize::new(0)),
                http_uploads_total: AtomicU64::new(0),
                http_upload_bytes: AtomicU64::new(0),
                http_refused_total: AtomicU64::new(0),
                http_connections: AtomicUsize::new(0),
                verdicts: Mutex::new(HashMap::new()),
                seen: Mutex::new(HashSet::new()),
                tracker: Mutex::new(Tracker::default()),
            }),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    /// Uploads running now.
    pub fn active_uploads(&self) -> usize {
        self.inner.active_uploads.load(Ordering::Relaxed)
    }

    /// The server reports its open connections here (a gauge of `/metrics`).
    pub fn set_connections(&self, n: usize) {
        self.inner.http_connections.store(n, Ordering::Relaxed);
    }

    fn remember(&self, conference: &str) {
        let mut seen = self.inner.seen.lock();
        if seen.len() >= SEEN_CONFERENCES && !seen.contains(conference) {
            seen.clear();
        }
        seen.insert(conference.to_owned());
    }

    /// Updates the counters from a roster snapshot (call it regularly: counts are diffs between
    /// snapshots) and forgets verdicts of transfers the roster dropped.
    pub fn observe(&self, snap: &RosterSnapshot) {
        for c in &snap.conferences {
            if !c.participants.is_empty() {
                self.remember(&c.id);
            }
        }
        let live: HashSet<TransferId> = snap.transfers.iter().map(|t| t.id).collect();
        self.observe_changes(&snap.transfers, &live);
    }

    /// [`EngineBackend::observe`] from the transfers that changed (each as it is now) and the
    /// ids of all transfers the roster still holds: the watcher's per-interval work is then in
    /// proportion to the changes, not to the transfers kept. Conferences are remembered with
    /// [`EngineBackend::remember_conferences`].
    pub fn observe_changes(&self, changed: &[TransferSnapshot], live: &HashSet<TransferId>) {
        let verdicts = self.inner.verdicts.lock().clone();
        let mut tr = self.inner.tracker.lock();
        let tr = &mut *tr;
        for t in changed {
            let entry = tr.transfers.entry(t.id).or_insert_with(|| {
                tr.uploads_total += 1;
                Tracked::default()
            });
            if t.state.is_finished() && !entry.ended {
                entry.ended = true;
                let i = match (verdicts.get(&t.id), &t.state) {
                    (Some(Verdict::Cancelled), _) => 3,
                    (Some(Verdict::TooLarge), _) | (_, TransferState::TooLarge { .. }) => 2,
                    (_, TransferState::Complete { .. }) => 0,
                    _ => 1,
                };
                tr.uploads_ended[i] += 1;
            }
            for d in &t.deliveries {
                let slot = entry.deliveries.entry(d.id).or_default();
                let bytes = match &d.state {
                    DeliveryState::Sending { bytes, .. } => *bytes,
                    DeliveryState::Done => t.size,
                    _ => slot.bytes,
                };
                if bytes > slot.bytes {
                    tr.delivery_bytes += bytes - slot.bytes;
                    slot.bytes = bytes;
                }
                if let (Some(first), false) = (d.first_byte_at_ms, slot.first_byte_seen) {
                    slot.first_byte_seen = true;
                    tr.first_chunk_latency
                        .observe(LATENCY_BUCKETS, first.saturating_sub(d.created_at_ms));
                }
                if d.state.is_terminal() && !slot.ended {
                    slot.ended = true;
                    let i = match d.state {
                        DeliveryState::Done => 0,
                        DeliveryState::Failed { .. } => 1,
                        _ => 2,
                    };
                    tr.deliveries_ended[i] += 1;
                    if i == 0 {
                        tr.delivery_duration.observe(
                            DURATION_BUCKETS,
                            d.updated_at_ms.saturating_sub(d.created_at_ms),
                        );
                    }
                }
            }
        }
        tr.transfers.retain(|id, _| live.contains(id));
        self.inner.verdicts.lock().retain(|id, _| live.contains(id));
    }

    /// Remembers conference ids (to tell 409 from 404 later).
    pub fn remember_conferences(&self, ids: &[String]) {
        for id in ids {
            self.remember(id);
        }
    }

    /// The HTTP view of a transfer's state (see the module doc).
    pub fn transfer_state(&self, t: &TransferSnapshot) -> &'static str {
        let verdict = self.inner.verdicts.lock().get(&t.id).copied();
        match (verdict, &t.state) {
            (Some(Verdict::Cancelled), _) => "cancelled",
            (Some(Verdict::TooLarge), _) | (_, TransferState::TooLarge { .. }) => "too-large",
            (_, TransferState::Receiving) => "uploading",
            (_, TransferState::Complete { .. }) => "complete",
            (_, TransferState::Aborted { .. }) => "aborted",
        }
    }

    /// Whether a transfer still changes: bytes arriving or deliveries not final.
    pub fn is_active(t: &TransferSnapshot) -> bool {
        !t.state.is_finished() || t.deliveries.iter().any(|d| !d.state.is_terminal())
    }

    /// The transfer JSON of the HTTP API (see the module doc).
    pub fn transfer_to_json(&self, t: &TransferSnapshot) -> String {
        let state = self.transfer_state(t);
        let reason = match (&t.state, state) {
            (_, "cancelled") => Some("cancelled".to_owned()),
            (TransferState::TooLarge { limit }, _) => Some(format!("larger than {limit} bytes")),
            (_, "too-large") => Some(format!(
                "larger than max_file_bytes ({} bytes)",
                self.inner.max_file_bytes
            )),
            (TransferState::Aborted { reason }, _) => Some(reason.clone()),
            _ => None,
        };
        let sha1 = t.sha1().map(|h| {
            h.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        });
        let mut out = String::with_capacity(256 + 192 * t.deliveries.len());
        let mut o = json::Object::begin(&mut out);
        o.u64("id", t.id.0)
            .str("conference", &t.conference)
            .str("name", &t.name)
            .str("content_type", &t.content_type)
            .u64("size", t.size)
            .opt_u64("declared_size", t.declared_size)
            .str("state", state)
            .opt_str("reason", reason.as_deref())
            .opt_str("sha1", sha1.as_deref())
            .u64("created_at_ms", t.created_at_ms)
            .u64("updated_at_ms", t.updated_at_ms)
            .opt_str("via", t.origin.as_ref().map(Origin::via))
            .opt_str("sender", t.origin.as_ref().and_then(Origin::sender));
        t.write_to_field(&mut o);
        o.array("deliveries", &t.deliveries, |out, d| {
            d.write_json(out, t.size)
        });
        o.end();
        out
    }

    fn parse_transfer(id: &str) -> Option<TransferId> {
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        id.parse::<u64>().ok().map(TransferId)
    }

    fn refuse(&self, r: Refusal) -> Refusal {
        self.inner
            .http_refused_total
            .fetch_add(1, Ordering::Relaxed);
        r
    }

    /// Why an append failed, from the error and the transfer's state in the roster.
    fn classify(&self, transfer: TransferId, e: &EngineError) -> Refusal {
        if self.inner.verdicts.lock().get(&transfer) == Some(&Verdict::Cancelled) {
            return Refusal::Cancelled;
        }
        let state = self
            .inner
            .engine
            .roster()
            .transfer(transfer)
            .map(|t| t.state);
        match (state, e) {
            (Some(TransferState::TooLarge { .. }), _) => Refusal::TooLarge,
            (_, EngineError::Spool(m)) if m.contains("cancelled") => Refusal::Cancelled,
            (_, EngineError::Spool(m)) if m.contains("spool_max_bytes") => Refusal::Full(m.clone()),
            (_, EngineError::Spool(m)) if m.contains("max_file_bytes") => Refusal::TooLarge,
            (_, other) => Refusal::Internal(other.to_string()),
        }
    }
}

impl Backend for EngineBackend {
    type Upload = EngineUpload;

    fn conferences_json(&self) -> String {
        let snap = self.inner.engine.roster().snapshot();
        for c in &snap.conferences {
            self.remember(&c.id);
        }
        snap.conferences_json()
    }

    fn conference_json(&self, id: &str) -> Option<String> {
        let c = self.inner.engine.roster().conference(id)?;
        self.remember(&c.id);
        let mut s = String::new();
        c.write_json(&mut s);
        Some(s)
    }

    fn conference_transfers_json(&self, id: &str) -> Option<String> {
        let ts = self.inner.engine.roster().history_of(id)?;
        self.remember(id);
        let mut out = String::with_capacity(64 + 512 * ts.len());
        let mut o = json::Object::begin(&mut out);
        o.str("conference", id).array("transfers", &ts, |out, t| {
            out.push_str(&self.transfer_to_json(t))
        });
        o.end();
        Some(out)
    }

    fn transfer_json(&self, id: &str) -> Option<String> {
        let t = self
            .inner
            .engine
            .roster()
            .transfer(Self::parse_transfer(id)?)?;
        Some(self.transfer_to_json(&t))
    }

    fn cancel(&self, id: &str) -> bool {
        let Some(tid) = Self::parse_transfer(id) else {
            return false;
        };
        let Some(t) = self.inner.engine.roster().transfer(tid) else {
            return false;
        };
        // Cancelling a transfer that already ended changes nothing: keep its real outcome. One
        // whose deliveries the engine has not created yet is still to be delivered.
        if Self::is_active(&t) || t.deliveries.is_empty() {
            self.inner.verdicts.lock().insert(tid, Verdict::Cancelled);
        }
        match self.inner.engine.cancel(tid) {
            Ok(()) => true,
            Err(EngineError::UnknownTransfer(_)) => false,
            Err(e) => {
                // The upload side is already stopped (the engine marks it before queueing);
                // the deliveries are aborted by the engine's next look at the transfer.
                self.inner
                    .engine
                    .logger()
                    .warn("http", format_args!("cancel of transfer {tid}: {e}"));
                true
            }
        }
    }

    fn metrics(&self) -> String {
        let snap = self.inner.engine.roster().snapshot();
        self.observe(&snap);
        let mut sessions = 0u64;
        let mut running = 0u64;
        let mut participants = 0u64;
        for c in &snap.conferences {
            participants += c.participants.len() as u64;
        }
        for t in &snap.transfers {
            for d in &t.deliveries {
                match d.state {
                    DeliveryState::Connecting | DeliveryState::Sending { .. } => sessions += 1,
                    _ => {}
                }
                if !d.state.is_terminal() {
                    running += 1;
                }
            }
        }
        let tr = self.inner.tracker.lock();
        let i = &self.inner;
        let mut m = Metrics(String::with_capacity(2048));
        m.one(
            "msrpcast_uploads_total",
            "counter",
            "Transfers (uploads) started, by any producer.",
            tr.uploads_total,
        );
        m.labelled(
            "msrpcast_uploads_ended_total",
            "counter",
            "Transfers whose upload ended, by outcome.",
            "outcome",
            &[
                ("complete", tr.uploads_ended[0]),
                ("aborted", tr.uploads_ended[1]),
                ("too_large", tr.uploads_ended[2]),
                ("cancelled", tr.uploads_ended[3]),
            ],
        );
        m.labelled(
            "msrpcast_deliveries_total",
            "counter",
            "Deliveries (one file to one participant) that ended, by outcome.",
            "outcome",
            &[
                ("done", tr.deliveries_ended[0]),
                ("failed", tr.deliveries_ended[1]),
                ("cancelled", tr.deliveries_ended[2]),
            ],
        );
        m.one(
            "msrpcast_delivery_bytes_total",
            "counter",
            "File bytes acknowledged by participants (bytes sent).",
            tr.delivery_bytes,
        );
        m.histogram(
            "msrpcast_delivery_duration_seconds",
            "Seconds from a delivery's start (the file offered to the participant) to its success.",
            DURATION_BUCKETS,
            &tr.delivery_duration,
        );
        m.histogram(
            "msrpcast_first_chunk_latency_seconds",
            "Seconds from a delivery's start to the participant's first acknowledged file bytes (millisecond resolution).",
            LATENCY_BUCKETS,
            &tr.first_chunk_latency,
        );
        m.one(
            "msrpcast_deliveries_running",
            "gauge",
            "Deliveries not yet ended.",
            running,
        );
        m.one(
            "msrpcast_sessions_active",
            "gauge",
            "MSRP sessions connecting or sending now.",
            sessions,
        );
        m.one(
            "msrpcast_conferences",
            "gauge",
            "Conferences with participants.",
            snap.conferences.len() as u64,
        );
        m.one(
            "msrpcast_participants",
            "gauge",
            "Participants in all conferences.",
            participants,
        );
        let (read_ahead, read_ahead_peak) = i.engine.read_ahead();
        m.one(
            "msrpcast_spool_read_ahead_bytes",
            "gauge",
            "Spool bytes the deliveries hold read ahead now (at most spool_read_ahead_bytes).",
            read_ahead,
        );
        m.one(
            "msrpcast_spool_read_ahead_peak_bytes",
            "gauge",
            "The most spool bytes the deliveries ever held read ahead at once.",
            read_ahead_peak,
        );
        m.one(
            "msrpcast_http_uploads_total",
            "counter",
            "Uploads accepted over HTTP.",
            i.http_uploads_total.load(Ordering::Relaxed),
        );
        m.one(
            "msrpcast_http_upload_bytes_total",
            "counter",
            "File bytes received over HTTP into the spool.",
            i.http_upload_bytes.load(Ordering::Relaxed),
        );
        m.one(
            "msrpcast_http_uploads_refused_total",
            "counter",
            "Uploads refused or stopped by a limit or the engine.",
            i.http_refused_total.load(Ordering::Relaxed),
        );
        m.one(
            "msrpcast_http_uploads_active",
            "gauge",
            "Uploads running now.",
            i.active_uploads.load(Ordering::Relaxed) as u64,
        );
        m.one(
            "msrpcast_http_connections",
            "gauge",
            "Open HTTP connections.",
            i.http_connections.load(Ordering::Relaxed) as u64,
        );
        m.0
    }

    fn start_upload(&self, req: UploadRequest) -> Result<EngineUpload, Refusal> {
        let i = &self.inner;
        if req.size.is_some_and(|s| s > i.max_file_bytes) {
            return Err(self.refuse(Refusal::TooLarge));
        }
        if i.active_uploads.fetch_add(1, Ordering::AcqRel) >= i.max_uploads {
            i.active_uploads.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refusal::Busy(format!(
                "too many concurrent uploads (http_max_uploads {})",
                i.max_uploads
            ))));
        }
        let slot = Slot(self.inner.active_uploads.clone());
        let up = i
            .engine
            .upload_to(
                &req.conference,
                &req.filename,
                &req.content_type,
                req.size,
                req.to.as_deref(),
            )
            .map_err(|e| {
                self.refuse(match e {
                    EngineError::Roster(RosterError::UnknownConference(_)) => {
                        if self.inner.seen.lock().contains(&req.conference) {
                            Refusal::NoParticipants
                        } else {
                            Refusal::UnknownConference
                        }
                    }
                    EngineError::NoParticipants(_) => Refusal::NoParticipants,
                    EngineError::Spool(m) if m.contains("spool_max_bytes") => Refusal::Full(m),
                    EngineError::Spool(m) if m.contains("max_file_bytes") => Refusal::TooLarge,
                    EngineError::Roster(
                        r @ (RosterError::UnknownParticipant { .. } | RosterError::NoRecipients),
                    ) => Refusal::BadRecipients(r.to_string()),
                    EngineError::Busy => Refusal::Busy("engine busy, try again".into()),
                    EngineError::Stopped => Refusal::Busy("engine stopped".into()),
                    EngineError::Roster(r) => Refusal::Busy(r.to_string()),
                    other => Refusal::Internal(other.to_string()),
                })
            })?;
        self.remember(&req.conference);
        // Only fails when the transfer is already gone (then the upload fails on its own).
        let _ = i
            .engine
            .roster()
            .set_transfer_origin(up.transfer, Origin::Http);
        i.http_uploads_total.fetch_add(1, Ordering::Relaxed);
        Ok(EngineUpload {
            id: up.transfer.0.to_string(),
            transfer: up.transfer,
            upload: Some(up),
            written: 0,
            backend: self.clone(),
            slot: Some(slot),
        })
    }
}

/// Holds one of the `http_max_uploads` places until dropped. It holds the count alone: a slot
/// lives on in an upload's SHA-1 callback (the hashing thread), and through the backend's
/// state it kept the engine alive there, so that the engine's owner could not stop it (a host's
/// `msrpcast_engine_free` returned while the engine ran on, to stop later on that thread).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One upload into the spool. Dropping it without [`UploadSink::finish`] aborts it (the
/// engine's `Upload` removes the partial file and aborts started deliveries).
pub struct EngineUpload {
    id: String,
    transfer: TransferId,
    upload: Option<Upload>,
    written: u64,
    backend: EngineBackend,
    slot: Option<Slot>,
}

impl EngineUpload {
    pub fn transfer(&self) -> TransferId {
        self.transfer
    }
}

impl UploadSink for EngineUpload {
    fn transfer_id(&self) -> &str {
        &self.id
    }

    fn write(&mut self, data: &[u8]) -> Result<(), Refusal> {
        let max = self.backend.inner.max_file_bytes;
        if self.written.saturating_add(data.len() as u64) > max {
            // Nothing beyond the limit reaches the spool; the caller aborts the upload next.
            self.backend
                .inner
                .verdicts
                .lock()
                .insert(self.transfer, Verdict::TooLarge);
            return Err(self.backend.refuse(Refusal::TooLarge));
        }
        let Some(up) = self.upload.as_mut() else {
            return Err(Refusal::Internal("upload already ended".into()));
        };
        if let Err(e) = up.append(data) {
            self.upload = None;
            let r = self.backend.classify(self.transfer, &e);
            return Err(self.backend.refuse(r));
        }
        self.written += data.len() as u64;
        self.backend
            .inner
            .http_upload_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn finish(mut self) -> Result<(), Refusal> {
        let Some(up) = self.upload.take() else {
            return Err(Refusal::Internal("upload already ended".into()));
        };
        // The 201 goes out once every byte is in the spool; the SHA-1 follows on the hashing
        // thread, which keeps this upload's `http_max_uploads` place until it is done (so
        // uploads and hashes still running are bounded together).
        let slot = self.slot.take();
        up.finish_then(move |_| drop(slot))
            .map_err(|e| Refusal::Internal(e.to_string()))
    }

    fn abort(mut self, reason: &HttpError) {
        if *reason == HttpError::PayloadTooLarge {
            self.backend
                .inner
                .verdicts
                .lock()
                .insert(self.transfer, Verdict::TooLarge);
        }
        if let Some(up) = self.upload.take() {
            up.abort();
        }
    }
}

/// Prometheus text exposition, version 0.0.4.
struct Metrics(String);

impl Metrics {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "{name} {v}");
    }

    fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], h: &Histogram) {
        self.head(name, "histogram", help);
        let mut cumulative = 0;
        for (i, b) in bounds.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(self.0, "{name}_sum {}", h.sum_ms as f64 / 1000.0);
        let _ = writeln!(self.0, "{name}_count {}", h.count);
    }

    fn labelled(&mut self, name: &str, kind: &str, help: &str, label: &str, vs: &[(&str, u64)]) {
        self.head(name, kind, help);
        for (l, v) in vs {
            let _ = writeln!(self.0, "{name}{{{label}=\"{l}\"}} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn engine(tag: &str, sets: &[(&str, &str)]) -> (Arc<Engine>, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("msrpcast-backend-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = Config::default();
        cfg.set("spool_dir", dir.to_str().unwrap()).unwrap();
        cfg.set("msrp_listen", "127.0.0.1:0").unwrap();
        cfg.set("log_level", "error").unwrap();
        cfg.set("answer_timeout_ms", "600000").unwrap();
        for (k, v) in sets {
            cfg.set(k, v).unwrap();
        }
        (Arc::new(Engine::start(cfg).unwrap()), dir)
    }

    fn joined(e: &Engine, conf: &str, who: &str) {
        e.join(conf, who, &format!("sip:{who}@127.0.0.1:5"), None)
            .unwrap();
        let t0 = std::time::Instant::now();
        while e.roster().conference(conf).is_none() {
            assert!(t0.elapsed().as_secs() < 5);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    fn req(conf: &str, size: Option<u64>) -> UploadRequest {
        UploadRequest {
            conference: conf.into(),
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            size,
            to: None,
        }
    }

    #[test]
    fn refusals_and_limits() {
        let (e, dir) = engine("refuse", &[("max_file_bytes", "100")]);
        let b = EngineBackend::new(e.clone(), 1);
        assert_eq!(
            b.start_upload(req("nope", None)).err(),
            Some(Refusal::UnknownConference)
        );
        joined(&e, "c", "alice");
        assert_eq!(
            b.start_upload(req("c", Some(101))).err(),
            Some(Refusal::TooLarge)
        );
        let mut up = b.start_upload(req("c", None)).unwrap();
        assert_eq!(b.active_uploads(), 1);
        assert!(matches!(
            b.start_upload(req("c", None)).err(),
            Some(Refusal::Busy(_))
        ));
        up.write(&[1; 60]).unwrap();
        assert_eq!(up.write(&[1; 60]), Err(Refusal::TooLarge));
        let t = e.roster().transfer(up.transfer()).unwrap();
        up.abort(&HttpError::PayloadTooLarge);
        assert_eq!(b.active_uploads(), 0);
        assert_eq!(b.transfer_state(&t), "too-large");
        let json = b.transfer_json(&t.id.0.to_string()).unwrap();
        assert!(json.starts_with(&format!("{{\"id\":{},", t.id.0)), "{json}");
        assert!(json.contains("\"state\":\"too-large\""), "{json}");
        // The conference loses its last participant: 409, not 404.
        e.leave("c", "alice").unwrap();
        let t0 = std::time::Instant::now();
        while e.roster().conference("c").is_some() {
            assert!(t0.elapsed().as_secs() < 5);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(
            b.start_upload(req("c", None)).err(),
            Some(Refusal::NoParticipants)
        );
        assert!(b.transfer_json("x1").is_none() && !b.cancel("99999"));
        drop(b);
        drop(e);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// An upload whose SHA-1 is still being computed after its `201` must not keep the engine
    /// alive once the backend is gone: its owner (the C ABI's `msrpcast_engine_free`) stops it
    /// by being its last owner, and the stop waits for the hash.
    #[test]
    fn an_upload_still_hashing_does_not_hold_the_engine() {
        let (e, dir) = engine("hashing", &[]);
        let b = EngineBackend::new(e.clone(), 4);
        joined(&e, "c", "carol");
        let mut up = b.start_upload(req("c", None)).unwrap();
        let t = up.transfer();
        let block = vec![7u8; 1 << 20];
        for _ in 0..64 {
            up.write(&block).unwrap();
        }
        up.finish().unwrap();
        let hashing = matches!(
            e.roster().transfer(t).unwrap().state,
            crate::roster::TransferState::Receiving
        );
        drop(b);
        assert_eq!(
            Arc::strong_count(&e),
            1,
            "the engine still has another owner (SHA-1 still running: {hashing})"
        );
        Arc::try_unwrap(e).ok().unwrap().stop();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn upload_cancel_and_metrics() {
        let (e, dir) = engine("metrics", &[]);
        let b = EngineBackend::new(e.clone(), 4);
        joined(&e, "c", "bob");
        let mut up = b.start_upload(req("c", Some(5))).unwrap();
        let id = up.transfer_id().to_string();
        up.write(b"hello").unwrap();
        up.finish().unwrap();
        // The SHA-1 of what was written finishes behind the 201 on its own thread.
        let t0 = std::time::Instant::now();
        let json = loop {
            let json = b.transfer_json(&id).unwrap();
            if json.contains("\"state\":\"complete\"") {
                break json;
            }
            assert!(t0.elapsed().as_secs() < 5, "{json}");
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        assert!(json.contains("\"via\":\"http\",\"sender\":null"), "{json}");
        // The conference's history lists it, in the same shape.
        let h = b.conference_transfers_json("c").unwrap();
        assert!(
            h.starts_with("{\"conference\":\"c\",\"transfers\":[{\"id\":")
                && h.contains(&json[..json.find(",\"deliveries\"").unwrap()]),
            "{h}"
        );
        assert!(b.conference_transfers_json("nope").is_none());
        // The SIP participant never answers: once its delivery exists it is still running, so
        // cancel counts.
        let t0 = std::time::Instant::now();
        while e
            .roster()
            .transfer(crate::roster::TransferId(id.parse().unwrap()))
            .is_none_or(|t| t.deliveries.is_empty())
        {
            assert!(t0.elapsed().as_secs() < 5);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(b.cancel(&id));
        assert!(b.transfer_json(&id).unwrap().contains("\"cancelled\""));
        let t0 = std::time::Instant::now();
        loop {
            let m = b.metrics();
            assert!(m.contains("msrpcast_uploads_total 1\n"), "{m}");
            assert!(m.contains("msrpcast_http_upload_bytes_total 5\n"), "{m}");
            if m.contains("msrpcast_deliveries_total{outcome=\"cancelled\"} 1\n") {
                assert!(m.contains("msrpcast_uploads_ended_total{outcome=\"cancelled\"} 1"));
                assert!(m.contains("# TYPE msrpcast_sessions_active gauge"));
                assert!(m.contains("\nmsrpcast_spool_read_ahead_bytes "), "{m}");
                assert!(m.contains("# TYPE msrpcast_spool_read_ahead_peak_bytes gauge"));
                break;
            }
            assert!(t0.elapsed().as_secs() < 5, "{m}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(b);
        drop(e);
        let _ = std::fs::remove_dir_all(dir);
    }
}
