//! Conferences, participants, files per conference and deliveries per (file, participant).
//!
//! Pure state behind one `parking_lot` mutex: the engine calls the mutating methods (join, leave,
//! transfers, delivery states) and the status API reads snapshots ([`Roster::snapshot`],
//! [`Roster::to_json`]). Nothing here does I/O; the only outside input is a millisecond clock, which
//! tests replace ([`Roster::with_clock`]).
//!
//! Rules the engine relies on:
//! - `join` and `leave` are idempotent; a repeated join updates target and display name.
//! - A conference exists while it has participants: the leave of the last one ends it, drops its
//!   transfers and deliveries, and says so in `Left::Left { ended, .. }` so the engine can remove
//!   spool files.
//! - A delivery in a terminal state (done, failed, cancelled) never changes again: late progress
//!   from an I/O thread cannot resurrect it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::json;

use parking_lot::Mutex;

/// Identifies one uploaded file (a transfer) within the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one delivery: one transfer to one participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub u64);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Capacity limits; exceeding one is an error with its reason, never silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_conferences: usize,
    pub max_participants_per_conference: usize,
    /// Participants over all conferences.
    pub max_participants: usize,
    /// Transfers one conference holds, not counting cancelled ones; at the limit the oldest
    /// finished one (see [`Roster::prune`]) makes room.
    pub max_transfers_per_conference: usize,
    /// Finished transfers kept over all conferences; [`Roster::prune`] forgets the oldest beyond.
    pub max_finished_transfers: usize,
    /// [`Roster::prune`] forgets a finished transfer this long after its last change.
    pub finished_ttl_ms: u64,
    /// Longest conference id, participant key, target URI, display name or file name, in bytes.
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conferences: 10_000,
            max_participants_per_conference: 1_000,
            max_participants: 100_000,
            max_transfers_per_conference: 1_000,
            max_finished_transfers: 1_000,
            finished_ttl_ms: 86_400_000,
            max_string_bytes: 1_024,
        }
    }
}

/// Why a roster operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterError {
    TooManyConferences {
        limit: usize,
    },
    TooManyParticipants {
        conference: String,
        limit: usize,
    },
    /// `max_participants` over all conferences.
    TooManyParticipantsOverall {
        limit: usize,
    },
    TooManyTransfers {
        conference: String,
        limit: usize,
    },
    /// An empty conference id, participant key or target URI.
    Empty {
        what: &'static str,
    },
    TooLong {
        what: &'static str,
        limit: usize,
    },
    UnknownConference(String),
    UnknownParticipant {
        conference: String,
        key: String,
    },
    UnknownTransfer(TransferId),
    UnknownDelivery(DeliveryId),
    /// A file for chosen participants with none chosen.
    NoRecipients,
}

impl fmt::Display for RosterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RosterError::TooManyConferences { limit } => {
                write!(f, "too many conferences (limit {limit})")
            }
            RosterError::TooManyParticipants { conference, limit } => {
                write!(
                    f,
                    "too many participants in conference {conference:?} (limit {limit})"
                )
            }
            RosterError::TooManyParticipantsOverall { limit } => {
                write!(
                    f,
                    "too many participants over all conferences (limit {limit})"
                )
            }
            RosterError::TooManyTransfers { conference, limit } => {
                write!(
                    f,
                    "too many files in conference {conference:?} (limit {limit})"
                )
            }
            RosterError::Empty { what } => write!(f, "empty {what}"),
            RosterError::TooLong { what, limit } => write!(f, "{what} longer than {limit} bytes"),
            RosterError::UnknownConference(c) => write!(f, "unknown conference {c:?}"),
            RosterError::UnknownParticipant { conference, key } => {
                write!(f, "no participant {key:?} in conference {conference:?}")
            }
            RosterError::UnknownTransfer(t) => write!(f, "unknown transfer {t}"),
            RosterError::UnknownDelivery(d) => write!(f, "unknown delivery {d}"),
            RosterError::NoRecipients => f.write_str("no recipient chosen (empty list)"),
        }
    }
}

impl std::error::Error for RosterError {}

/// What [`Roster::join`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// A new participant; `conference_created` when this join started the conference.
    New { conference_created: bool },
    /// The key was already a participant; target and display name were updated (`changed` when
    /// either differed).
    Already { changed: bool },
}

/// What [`Roster::leave`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// The key was not a participant (or the conference does not exist): nothing changed.
    NotJoined,
    Left {
        /// Deliveries to this participant that were not finished; they are now `Cancelled` and
        /// the engine must abort them (`#` chunk, `Bye`).
        cancelled: Vec<DeliveryId>,
        /// `Some` when this was the last participant: the conference is gone.
        ended: Option<EndedConference>,
    },
}

/// A conference that just ended, with what the engine must clean up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedConference {
    pub id: String,
    /// Its transfers, now removed from the roster (their spool files can go).
    pub transfers: Vec<TransferId>,
}

/// A complete file an earlier run of the engine left, for [`Roster::restore_transfer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredTransfer {
    pub conference: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha1: [u8; 20],
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it last changed before the restart (what pruning ages by).
    pub changed_ms: u64,
    /// The participants it was sent to, when not the whole room (see [`TransferSnapshot::to`]).
    pub to: Option<Vec<String>>,
}

/// The upload side of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    /// Bytes are still arriving.
    Receiving,
    Complete {
        sha1: [u8; 20],
    },
    Aborted {
        reason: String,
    },
    /// Stopped at the configured maximum file size.
    TooLarge {
        limit: u64,
    },
}

impl TransferState {
    /// The name used in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            TransferState::Receiving => "receiving",
            TransferState::Complete { .. } => "complete",
            TransferState::Aborted { .. } => "aborted",
            TransferState::TooLarge { .. } => "too_large",
        }
    }

    pub fn is_finished(&self) -> bool {
        !matches!(self, TransferState::Receiving)
    }
}

/// The state of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its turn (or for the participant's answer to be asked).
    Queued,
    /// The SDP offer went to the host; waiting for the answer.
    Offering,
    /// Answered; the MSRP connection is being set up.
    Connecting,
    /// Bytes acknowledged so far; `total` is `None` while the upload's size is unknown.
    Sending {
        bytes: u64,
        total: Option<u64>,
    },
    Done,
    /// `code`: the SIP or MSRP status code behind the failure, when there is one.
    Failed {
        reason: String,
        code: Option<u16>,
    },
    Cancelled,
}

impl DeliveryState {
    /// The name used in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Offering => "offering",
            DeliveryState::Connecting => "connecting",
            DeliveryState::Sending { .. } => "sending",
            DeliveryState::Done => "done",
            DeliveryState::Failed { .. } => "failed",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    /// Done, failed or cancelled: the state never changes again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            DeliveryState::Done | DeliveryState::Failed { .. } | DeliveryState::Cancelled
        )
    }
}

/// One participant as seen by a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantSnapshot {
    pub key: String,
    /// The SIP URI file INVITEs go to.
    pub target: String,
    pub display: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub joined_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceSnapshot {
    pub id: String,
    pub created_at_ms: u64,
    /// In join order.
    pub participants: Vec<ParticipantSnapshot>,
    /// In upload order.
    pub transfers: Vec<TransferId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySnapshot {
    pub id: DeliveryId,
    pub transfer: TransferId,
    pub participant: String,
    pub state: DeliveryState,
    pub created_at_ms: u64,
    /// When the state last changed.
    pub updated_at_ms: u64,
    /// When the participant first acknowledged file bytes (the first `Sending` with bytes, or
    /// `Done`): the first-chunk latency is this minus `created_at_ms`.
    pub first_byte_at_ms: Option<u64>,
    /// The most file bytes the participant confirmed (the last `Sending` seen; the file size once
    /// `Done`). Kept when the delivery fails or is cancelled: how far it got.
    pub confirmed_bytes: u64,
    /// For a failed or cancelled delivery, the state it was in when it ended
    /// ([`DeliveryState::name`]: `queued`, `offering`, `connecting` or `sending`): a failure while
    /// `offering` is the participant declining the file, one while `sending` a loss mid-file.
    pub ended_in: Option<&'static str>,
    /// 1 for the first offer; each re-offer after a dropped connection (`resume_retries`)
    /// counts one more.
    pub attempt: u32,
    /// For a re-offer with RFC 5547 `a=file-range`: the bytes the participant kept from the
    /// earlier attempt (the range starts at this plus one); `None` for the whole file.
    pub resumed_from: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSnapshot {
    pub id: TransferId,
    pub conference: String,
    pub name: String,
    pub content_type: String,
    /// Bytes received so far (the final size once finished).
    pub size: u64,
    /// The size announced by the uploader (Content-Length), when known.
    pub declared_size: Option<u64>,
    pub state: TransferState,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// How the file came in and who sent it, when the producer said so
    /// ([`Roster::set_transfer_origin`]); `None` when unknown.
    pub origin: Option<Origin>,
    /// The participant keys the file is for, when its producer chose them
    /// ([`Roster::add_transfer_to`]); `None`: the whole room, late joiners included.
    pub to: Option<Vec<String>>,
    /// In creation order.
    pub deliveries: Vec<DeliverySnapshot>,
}

/// How a transfer's file came into the engine, as far as its producer knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Uploaded over the HTTP API (the page or a portal); the uploader is not a participant.
    Http,
    /// Sent into the conference by this participant (its key).
    Participant(String),
}

impl Origin {
    /// `via` in JSON: `http` or `participant`.
    pub fn via(&self) -> &'static str {
        match self {
            Origin::Http => "http",
            Origin::Participant(_) => "participant",
        }
    }

    /// `sender` in JSON: the participant key, when a participant sent the file.
    pub fn sender(&self) -> Option<&str> {
        match self {
            Origin::Http => None,
            Origin::Participant(k) => Some(k),
        }
    }
}

impl TransferSnapshot {
    /// The SHA-1 of a complete file.
    pub fn sha1(&self) -> Option<[u8; 20]> {
        match self.state {
            TransferState::Complete { sha1 } => Some(sha1),
            _ => None,
        }
    }
}

/// Everything, for the status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterSnapshot {
    /// Sorted by id.
    pub conferences: Vec<ConferenceSnapshot>,
    /// Sorted by id (upload order).
    pub transfers: Vec<TransferSnapshot>,
}

struct Participant {
    target: String,
    display: Option<String>,
    joined_at_ms: u64,
    /// Join order.
    seq: u64,
}

struct Conference {
    created_at_ms: u64,
    participants: HashMap<String, Participant>,
    transfers: Vec<TransferId>,
}

struct Transfer {
    conference: String,
    /// `DELETE`d: no longer counts against the conference's limit, not offered to late joiners,
    /// forgotten soon after it is finished.
    cancelled: bool,
    /// [`Inner::version`] at its last change (its own or one of its deliveries').
    version: u64,
    /// When it or one of its deliveries last changed (what pruning ages by).
    changed_at_ms: u64,
    name: String,
    content_type: String,
    size: u64,
    declared_size: Option<u64>,
    state: TransferState,
    created_at_ms: u64,
    updated_at_ms: u64,
    origin: Option<Origin>,
    /// Chosen recipients (`None`: the whole room).
    to: Option<Vec<String>>,
    /// In creation order; at most one per participant key.
    deliveries: Vec<DeliveryId>,
}

struct Delivery {
    transfer: TransferId,
    participant: String,
    state: DeliveryState,
    created_at_ms: u64,
    updated_at_ms: u64,
    first_byte_at_ms: Option<u64>,
    confirmed_bytes: u64,
    ended_in: Option<&'static str>,
    attempt: u32,
    resumed_from: Option<u64>,
}

#[derive(Default)]
struct Inner {
    conferences: BTreeMap<String, Conference>,
    transfers: BTreeMap<TransferId, Transfer>,
    deliveries: HashMap<DeliveryId, Delivery>,
    next_transfer: u64,
    next_delivery: u64,
    next_seq: u64,
    /// Participants over all conferences.
    participants: usize,
    /// Bumped by every change to a transfer or its deliveries.
    version: u64,
    /// Transfers removed to make room, until [`Roster::prune`] hands them to the engine.
    evicted: Vec<TransferId>,
    /// Files restored after a restart ([`Roster::restore_transfer`]) whose conference has no
    /// participant yet, by conference id: the conference's first join takes them.
    waiting: HashMap<String, Vec<TransferId>>,
}

/// How long a cancelled transfer stays visible after it finished, so a client polling it sees
/// its final state (a grace period, not a capacity: the count bounds still apply).
pub const CANCELLED_GRACE_MS: u64 = 10_000;

impl Inner {
    fn touch(&mut self, id: TransferId, now: u64) {
        self.version += 1;
        let v = self.version;
        if let Some(t) = self.transfers.get_mut(&id) {
            t.version = v;
            t.changed_at_ms = t.changed_at_ms.max(now);
        }
    }

    /// Upload ended and every delivery ended: nothing will change it any more.
    fn is_finished(&self, t: &Transfer) -> bool {
        t.state.is_finished()
            && t.deliveries
                .iter()
                .all(|d| self.deliveries.get(d).is_none_or(|d| d.state.is_terminal()))
    }

    /// Removes a transfer, its deliveries and its place in its conference.
    fn remove_transfer(&mut self, id: TransferId) {
        if let Some(t) = self.transfers.remove(&id) {
            for d in &t.deliveries {
                self.deliveries.remove(d);
            }
            if let Some(c) = self.conferences.get_mut(&t.conference) {
                c.transfers.retain(|x| *x != id);
            }
            if let Some(w) = self.waiting.get_mut(&t.conference) {
                w.retain(|x| *x != id);
                if w.is_empty() {
                    self.waiting.remove(&t.conference);
                }
            }
        }
    }

    /// Makes room for one more transfer in `conference`, whose transfers (or restored files
    /// waiting for its first join) are `listed`: at `limit` uncancelled ones the oldest finished
    /// one goes (into `evicted`); when none has finished the new one is refused.
    fn make_room(
        &mut self,
        conference: &str,
        listed: &[TransferId],
        limit: usize,
    ) -> Result<(), RosterError> {
        let counted: Vec<TransferId> = listed
            .iter()
            .copied()
            .filter(|t| self.transfers.get(t).is_some_and(|t| !t.cancelled))
            .collect();
        if counted.len() < limit {
            return Ok(());
        }
        let oldest = counted
            .iter()
            .copied()
            .filter(|t| self.transfers.get(t).is_some_and(|t| self.is_finished(t)))
            .min_by_key(|id| self.transfers.get(id).map(|t| (t.changed_at_ms, *id)));
        let Some(old) = oldest else {
            return Err(RosterError::TooManyTransfers {
                conference: conference.to_owned(),
                limit,
            });
        };
        self.remove_transfer(old);
        self.evicted.push(old);
        Ok(())
    }

    /// The transfers `conference` lists (none for an unknown one), in upload order, without
    /// the cancelled ones.
    fn listed_transfers<'a>(
        &'a self,
        conference: &str,
    ) -> impl Iterator<Item = (TransferId, &'a Transfer)> + 'a {
        let listed = self.conferences.get(conference).map(|c| c.transfers.iter());
        listed.into_iter().flatten().filter_map(|id| {
            let t = self.transfers.get(id).filter(|t| !t.cancelled)?;
            Some((*id, t))
        })
    }

    /// Gives `t` the next id and version and lists it with its conference, or, when the
    /// conference has no participant yet, with the files waiting for its first join.
    fn insert_transfer(&mut self, mut t: Transfer) -> TransferId {
        self.next_transfer += 1;
        let id = TransferId(self.next_transfer);
        self.version += 1;
        t.version = self.version;
        match self.conferences.get_mut(&t.conference) {
            Some(c) => c.transfers.push(id),
            None => self
                .waiting
                .entry(t.conference.clone())
                .or_default()
                .push(id),
        }
        self.transfers.insert(id, t);
        id
    }
}

type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// The engine's registry of conferences, participants, transfers and deliveries. Thread-safe.
pub struct Roster {
    limits: Limits,
    clock: Clock,
    inner: Mutex<Inner>,
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn check(what: &'static str, s: &str, limit: usize, may_be_empty: bool) -> Result<(), RosterError> {
    if s.is_empty() && !may_be_empty {
        return Err(RosterError::Empty { what });
    }
    if s.len() > limit {
        return Err(RosterError::TooLong { what, limit });
    }
    Ok(())
}

impl Roster {
    /// A roster reading the system clock for timestamps.
    pub fn new(limits: Limits) -> Self {
        Self::with_clock(limits, system_ms)
    }

    /// A roster with its own clock (milliseconds since the Unix epoch), for tests.
    pub fn with_clock(limits: Limits, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Roster {
            limits,
            clock: Box::new(clock),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Adds `key` to `conference` (creating the conference), or updates its target and display
    /// name when it is already there.
    pub fn join(
        &self,
        conference: &str,
        key: &str,
        target: &str,
        display: Option<&str>,
    ) -> Result<Joined, RosterError> {
        let max = self.limits.max_string_bytes;
        check("conference id", conference, max, false)?;
        check("participant key", key, max, false)?;
        check("target URI", target, max, false)?;
        if let Some(d) = display {
            check("display name", d, max, true)?;
        }
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let conference_created = !inner.conferences.contains_key(conference);
        if conference_created && inner.conferences.len() >= self.limits.max_conferences {
            return Err(RosterError::TooManyConferences {
                limit: self.limits.max_conferences,
            });
        }
        if let Some(conf) = inner.conferences.get_mut(conference) {
            if let Some(p) = conf.participants.get_mut(key) {
                let changed = p.target != target || p.display.as_deref() != display;
                p.target = target.to_owned();
                p.display = display.map(str::to_owned);
                return Ok(Joined::Already { changed });
            }
            if conf.participants.len() >= self.limits.max_participants_per_conference {
                return Err(RosterError::TooManyParticipants {
                    conference: conference.to_owned(),
                    limit: self.limits.max_participants_per_conference,
                });
            }
        }
        if inner.participants >= self.limits.max_participants {
            return Err(RosterError::TooManyParticipantsOverall {
                limit: self.limits.max_participants,
            });
        }
        inner.participants += 1;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let conf = inner
            .conferences
            .entry(conference.to_owned())
            .or_insert_with(|| Conference {
                created_at_ms: now,
                participants: HashMap::new(),
                // Files restored after a restart belong to the conference again.
                transfers: inner.waiting.remove(conference).unwrap_or_default(),
            });
        conf.participants.insert(
            key.to_owned(),
            Participant {
                target: target.to_owned(),
                display: display.map(str::to_owned),
                joined_at_ms: now,
                seq,
            },
        );
        Ok(Joined::New { conference_created })
    }

    /// Removes `key` from `conference`. Its unfinished deliveries become `Cancelled`; the last
    /// leave ends the conference and removes its transfers.
    pub fn leave(&self, conference: &str, key: &str) -> Left {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let Some(conf) = inner.conferences.get_mut(conference) else {
            return Left::NotJoined;
        };
        if conf.participants.remove(key).is_none() {
            return Left::NotJoined;
        }
        inner.participants = inner.participants.saturating_sub(1);
        let mut cancelled = Vec::new();
        let mut touched = Vec::new();
        for t in &conf.transfers {
            let Some(transfer) = inner.transfers.get(t) else {
                continue;
            };
            for d in &transfer.deliveries {
                if let Some(delivery) = inner.deliveries.get_mut(d) {
                    if delivery.participant == key && !delivery.state.is_terminal() {
                        delivery.ended_in = Some(delivery.state.name());
                        delivery.state = DeliveryState::Cancelled;
                        delivery.updated_at_ms = now;
                        cancelled.push(*d);
                        touched.push(*t);
                    }
                }
            }
        }
        for t in touched {
            inner.touch(t, now);
        }
        let Some(conf) = inner.conferences.get_mut(conference) else {
            return Left::NotJoined;
        };
        let ended = if conf.participants.is_empty() {
            let transfers = std::mem::take(&mut conf.transfers);
            inner.conferences.remove(conference);
            for t in &transfers {
                if let Some(transfer) = inner.transfers.remove(t) {
                    for d in &transfer.deliveries {
                        inner.deliveries.remove(d);
                    }
                }
            }
            Some(EndedConference {
                id: conference.to_owned(),
                transfers,
            })
        } else {
            None
        };
        Left::Left { cancelled, ended }
    }

    /// Registers a new upload to `conference`, in state `Receiving` with size 0.
    pub fn add_transfer(
        &self,
        conference: &str,
        name: &str,
        content_type: &str,
        declared_size: Option<u64>,
    ) -> Result<TransferId, RosterError> {
        self.add_transfer_to(conference, name, content_type, declared_size, None)
    }

    /// As [`Roster::add_transfer`], for the participants `to` only when given (keys as listed
    /// by the conference; a repeated key counts once). Every key must be a participant now
    /// ([`RosterError::UnknownParticipant`] names the first that is not) and the list must not
    /// be empty ([`RosterError::NoRecipients`]).
    pub fn add_transfer_to(
        &self,
        conference: &str,
        name: &str,
        content_type: &str,
        declared_size: Option<u64>,
        to: Option<&[String]>,
    ) -> Result<TransferId, RosterError> {
        let max = self.limits.max_string_bytes;
        check("file name", name, max, true)?;
        check("content type", content_type, max, true)?;
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let conf = inner
            .conferences
            .get(conference)
            .ok_or_else(|| RosterError::UnknownConference(conference.to_owned()))?;
        let to = match to {
            None => None,
            Some([]) => return Err(RosterError::NoRecipients),
            Some(keys) => {
                let mut chosen: Vec<String> = Vec::new();
                for k in keys {
                    if !conf.participants.contains_key(k) {
                        return Err(RosterError::UnknownParticipant {
                            conference: conference.to_owned(),
                            key: k.clone(),
                        });
                    }
                    if !chosen.contains(k) {
                        chosen.push(k.clone());
                    }
                }
                Some(chosen)
            }
        };
        let listed = conf.transfers.clone();
        inner.make_room(
            conference,
            &listed,
            self.limits.max_transfers_per_conference,
        )?;
        Ok(inner.insert_transfer(Transfer {
            conference: conference.to_owned(),
            cancelled: false,
            version: 0,
            changed_at_ms: now,
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size: 0,
            declared_size,
            state: TransferState::Receiving,
            created_at_ms: now,
            updated_at_ms: now,
            origin: None,
            to,
            deliveries: Vec::new(),
        }))
    }

    /// Registers a complete file restored after a restart (see `runtime/engine/persist.rs`),
    /// with the times it had. Its conference takes it now if it has participants, else at its
    /// first join; until then it is listed with the transfers, and [`Roster::prune`] ages and
    /// counts it like any finished transfer. `max_transfers_per_conference` applies: the
    /// oldest finished file of the conference makes room, else the restore is refused.
    pub fn restore_transfer(&self, r: &RestoredTransfer) -> Result<TransferId, RosterError> {
        let max = self.limits.max_string_bytes;
        check("conference id", &r.conference, max, false)?;
        check("file name", &r.name, max, true)?;
        check("content type", &r.content_type, max, true)?;
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let listed: Vec<TransferId> = match inner.conferences.get(&r.conference) {
            Some(c) => c.transfers.clone(),
            None => inner
                .waiting
                .get(&r.conference)
                .cloned()
                .unwrap_or_default(),
        };
        inner.make_room(
            &r.conference,
            &listed,
            self.limits.max_transfers_per_conference,
        )?;
        Ok(inner.insert_transfer(Transfer {
            conference: r.conference.clone(),
            cancelled: false,
            version: 0,
            changed_at_ms: r.changed_ms,
            name: r.name.clone(),
            content_type: r.content_type.clone(),
            size: r.size,
            declared_size: Some(r.size),
            state: TransferState::Complete { sha1: r.sha1 },
            created_at_ms: r.created_ms,
            updated_at_ms: r.changed_ms,
            deliveries: Vec::new(),
            // Where it came from is not in the record: unknown after a restart.
            origin: None,
            to: r.to.clone(),
        }))
    }

    /// Records how many bytes of the upload have been spooled.
    pub fn set_transfer_size(&self, id: TransferId, size: u64) -> Result<(), RosterError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let t = inner
            .transfers
            .get_mut(&id)
            .ok_or(RosterError::UnknownTransfer(id))?;
        t.size = size;
        t.updated_at_ms = now;
        inner.touch(id, now);
        Ok(())
    }

    /// Sets the upload's state (complete, aborted, too large) and, when given, its final size.
    /// Returns the deliveries of this transfer that are not finished (to abort them when the
    /// upload was aborted).
    pub fn set_transfer_state(
        &self,
        id: TransferId,
        state: TransferState,
        size: Option<u64>,
    ) -> Result<Vec<DeliveryId>, RosterError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let t = inner
            .transfers
            .get_mut(&id)
            .ok_or(RosterError::UnknownTransfer(id))?;
        t.state = state;
        if let Some(size) = size {
            t.size = size;
        }
        t.updated_at_ms = now;
        inner.touch(id, now);
        let Some(t) = inner.transfers.get(&id) else {
            return Err(RosterError::UnknownTransfer(id));
        };
        Ok(t.deliveries
            .iter()
            .copied()
            .filter(|d| {
                inner
                    .deliveries
                    .get(d)
                    .is_some_and(|d| !d.state.is_terminal())
            })
            .collect())
    }

    /// Creates the delivery of `transfer` to `participant` in state `Queued`. If one exists and is
    /// not failed or cancelled, returns it with `false`; a failed or cancelled one is replaced by a
    /// fresh delivery (a participant that rejoined gets the file again).
    pub fn add_delivery(
        &self,
        transfer: TransferId,
        participant: &str,
    ) -> Result<(DeliveryId, bool), RosterError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let t = inner
            .transfers
            .get_mut(&transfer)
            .ok_or(RosterError::UnknownTransfer(transfer))?;
        let joined = inner
            .conferences
            .get(&t.conference)
            .is_some_and(|c| c.participants.contains_key(participant));
        if !joined {
            return Err(RosterError::UnknownParticipant {
                conference: t.conference.clone(),
                key: participant.to_owned(),
            });
        }
        let existing = t.deliveries.iter().position(|d| {
            inner
                .deliveries
                .get(d)
                .is_some_and(|d| d.participant == participant)
        });
        if let Some(pos) = existing {
            let old = t.deliveries[pos];
            let replace = inner.deliveries.get(&old).is_some_and(|d| {
                matches!(
                    d.state,
                    DeliveryState::Failed { .. } | DeliveryState::Cancelled
                )
            });
            if !replace {
                return Ok((old, false));
            }
            t.deliveries.remove(pos);
            inner.deliveries.remove(&old);
        }
        inner.next_delivery += 1;
        let id = DeliveryId(inner.next_delivery);
        t.deliveries.push(id);
        inner.deliveries.insert(
            id,
            Delivery {
                transfer,
                participant: participant.to_owned(),
                state: DeliveryState::Queued,
                created_at_ms: now,
                updated_at_ms: now,
                first_byte_at_ms: None,
                confirmed_bytes: 0,
                ended_in: None,
                attempt: 1,
                resumed_from: None,
            },
        );
        inner.touch(transfer, now);
        Ok((id, true))
    }

    /// A delivery that is not terminal starts a new attempt (its connection dropped and it is
    /// offered again): back to `queued`, `attempt` one more, `resumed_from` as given (the bytes
    /// the participant kept, or `None` for the whole file). Returns the new attempt number;
    /// `Ok(None)` (nothing changed) when the delivery is terminal already (cancelled, say).
    pub fn retry_delivery(
        &self,
        id: DeliveryId,
        resumed_from: Option<u64>,
    ) -> Result<Option<u32>, RosterError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let d = inner
            .deliveries
            .get_mut(&id)
            .ok_or(RosterError::UnknownDelivery(id))?;
        if d.state.is_terminal() {
            return Ok(None);
        }
        d.state = DeliveryState::Queued;
        d.attempt = d.attempt.saturating_add(1);
        d.resumed_from = resumed_from;
        d.updated_at_ms = now;
        let (transfer, attempt) = (d.transfer, d.attempt);
        inner.touch(transfer, now);
        Ok(Some(attempt))
    }

    /// Records that the current attempt of a delivery sends the whole file after all (the
    /// participant's answer did not take the range).
    pub fn set_resumed_from(&self, id: DeliveryId, resumed_from: Option<u64>) {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let Some(d) = inner.deliveries.get_mut(&id) else {
            return;
        };
        d.resumed_from = resumed_from;
        let transfer = d.transfer;
        inner.touch(transfer, now);
    }

    /// Moves a delivery to `state`. Returns `Ok(false)` (and changes nothing) when the delivery is
    /// already terminal.
    pub fn set_delivery_state(
        &self,
        id: DeliveryId,
        state: DeliveryState,
    ) -> Result<bool, RosterError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let d = inner
            .deliveries
            .get_mut(&id)
            .ok_or(RosterError::UnknownDelivery(id))?;
        if d.state.is_terminal() {
            return Ok(false);
        }
        let changed = d.state != state;
        let first_bytes = match state {
            DeliveryState::Sending { bytes, .. } => bytes > 0,
            DeliveryState::Done => true,
            _ => false,
        };
        if first_bytes && d.first_byte_at_ms.is_none() {
            d.first_byte_at_ms = Some(now);
        }
        if let DeliveryState::Sending { bytes, .. } = state {
            d.confirmed_bytes = d.confirmed_bytes.max(bytes);
        }
        if matches!(
            state,
            DeliveryState::Failed { .. } | DeliveryState::Cancelled
        ) {
            d.ended_in = Some(d.state.name());
        }
        d.state = state;
        d.updated_at_ms = now;
        let transfer = d.transfer;
        if changed {
            inner.touch(transfer, now);
        }
        Ok(true)
    }

    /// Records how a transfer's file came in (see [`Origin`]); shown as `via` and `sender`.
    pub fn set_transfer_origin(&self, id: TransferId, origin: Origin) -> Result<(), RosterError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let t = inner
            .transfers
            .get_mut(&id)
            .ok_or(RosterError::UnknownTransfer(id))?;
        t.origin = Some(origin);
        inner.touch(id, now);
        Ok(())
    }

    /// The participant key that sent transfer `id` into its conference ([`Origin::Participant`]),
    /// without copying the transfer: a participant is never offered its own file.
    pub fn transfer_sender(&self, id: TransferId) -> Option<String> {
        let inner = self.inner.lock();
        match inner.transfers.get(&id)?.origin.as_ref()? {
            Origin::Participant(k) => Some(k.clone()),
            Origin::Http => None,
        }
    }

    /// Every transfer `conference` still holds, in upload order, cancelled ones included (while
    /// the roster keeps them: [`CANCELLED_GRACE_MS`]); `None` for an unknown conference. The
    /// conference's file history (`GET /api/conferences/{id}/transfers`).
    pub fn history_of(&self, conference: &str) -> Option<Vec<TransferSnapshot>> {
        let inner = self.inner.lock();
        let conf = inner.conferences.get(conference)?;
        Some(
            conf.transfers
                .iter()
                .filter_map(|id| {
                    inner
                        .transfers
                        .get(id)
                        .map(|t| transfer_snapshot(&inner, *id, t))
                })
                .collect(),
        )
    }

    /// Participants of `conference` in join order.
    pub fn participants(&self, conference: &str) -> Vec<ParticipantSnapshot> {
        let inner = self.inner.lock();
        inner
            .conferences
            .get(conference)
            .map(conference_participants)
            .unwrap_or_default()
    }

    pub fn conference(&self, id: &str) -> Option<ConferenceSnapshot> {
        let inner = self.inner.lock();
        inner
            .conferences
            .get(id)
            .map(|c| conference_snapshot(id, c))
    }

    pub fn transfer(&self, id: TransferId) -> Option<TransferSnapshot> {
        let inner = self.inner.lock();
        inner
            .transfers
            .get(&id)
            .map(|t| transfer_snapshot(&inner, id, t))
    }

    pub fn delivery(&self, id: DeliveryId) -> Option<DeliverySnapshot> {
        let inner = self.inner.lock();
        inner.deliveries.get(&id).map(|d| delivery_snapshot(id, d))
    }

    /// Whether delivery `id` is listed and not yet in a final state (without a snapshot).
    pub fn is_live(&self, id: DeliveryId) -> bool {
        let inner = self.inner.lock();
        inner
            .deliveries
            .get(&id)
            .is_some_and(|d| !d.state.is_terminal())
    }

    /// As [`Roster::transfer`] without the deliveries (`deliveries` is empty): for the engine's
    /// per-join and per-offer decisions, which read none of them. A full snapshot copies every
    /// delivery of the transfer, so N joins made N² copies.
    pub fn transfer_head(&self, id: TransferId) -> Option<TransferSnapshot> {
        let inner = self.inner.lock();
        inner.transfers.get(&id).map(|t| transfer_head(id, t))
    }

    /// As [`Roster::transfers_of`] without the deliveries (see [`Roster::transfer_head`]).
    pub fn transfer_heads_of(&self, conference: &str) -> Vec<TransferSnapshot> {
        let inner = self.inner.lock();
        inner
            .listed_transfers(conference)
            .map(|(id, t)| transfer_head(id, t))
            .collect()
    }

    /// The transfers of `conference` in upload order (e.g. complete files for a late joiner).
    pub fn transfers_of(&self, conference: &str) -> Vec<TransferSnapshot> {
        let inner = self.inner.lock();
        inner
            .listed_transfers(conference)
            .map(|(id, t)| transfer_snapshot(&inner, id, t))
            .collect()
    }

    /// Marks a transfer cancelled (`DELETE`): it stops counting against its conference's
    /// `max_transfers_per_conference`, is no longer offered to late joiners, and
    /// [`Roster::prune`] forgets it [`CANCELLED_GRACE_MS`] after it finished.
    pub fn cancel_transfer(&self, id: TransferId) -> Result<(), RosterError> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let t = inner
            .transfers
            .get_mut(&id)
            .ok_or(RosterError::UnknownTransfer(id))?;
        t.cancelled = true;
        inner.touch(id, now);
        Ok(())
    }

    /// Forgets finished transfers (upload ended, every delivery ended): cancelled ones
    /// [`CANCELLED_GRACE_MS`] after their last change, others `finished_ttl_ms` after it, and the
    /// oldest beyond `max_finished_transfers`. Returns them, with those removed earlier to make
    /// room in a conference, so the engine removes their spool files. Call it regularly.
    pub fn prune(&self) -> Vec<TransferId> {
        let now = (self.clock)();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let mut gone = std::mem::take(&mut inner.evicted);
        let mut finished: Vec<(u64, TransferId)> = Vec::new();
        for (id, t) in &inner.transfers {
            if !inner.is_finished(t) {
                continue;
            }
            let ttl = if t.cancelled {
                CANCELLED_GRACE_MS.min(self.limits.finished_ttl_ms)
            } else {
                self.limits.finished_ttl_ms
            };
            if now.saturating_sub(t.changed_at_ms) >= ttl {
                gone.push(*id);
            } else {
                finished.push((t.changed_at_ms, *id));
            }
        }
        if finished.len() > self.limits.max_finished_transfers {
            finished.sort_unstable();
            let extra = finished.len() - self.limits.max_finished_transfers;
            gone.extend(finished[..extra].iter().map(|(_, id)| *id));
        }
        for id in &gone {
            inner.remove_transfer(*id);
        }
        gone
    }

    /// The transfers that changed since `version` (a value this returned before; 0 for all),
    /// and the version to pass next time. Only those are copied, so a watcher of many retained
    /// transfers does work in proportion to the changes.
    pub fn changed_since(&self, version: u64) -> (u64, Vec<TransferSnapshot>) {
        let inner = self.inner.lock();
        let changed = inner
            .transfers
            .iter()
            .filter(|(_, t)| t.version > version)
            .map(|(id, t)| transfer_snapshot(&inner, *id, t))
            .collect();
        (inner.version, changed)
    }

    /// The version [`Roster::changed_since`] answers with: it grows with every change to a
    /// transfer (not with removals, nor with joins and leaves alone).
    pub fn version(&self) -> u64 {
        self.inner.lock().version
    }

    /// The ids of every transfer the roster holds.
    pub fn transfer_ids(&self) -> Vec<TransferId> {
        self.inner.lock().transfers.keys().copied().collect()
    }

    /// The ids of every conference (a conference exists while it has participants).
    pub fn conference_ids(&self) -> Vec<String> {
        self.inner.lock().conferences.keys().cloned().collect()
    }

    /// Participants over all conferences.
    pub fn participant_count(&self) -> usize {
        self.inner.lock().participants
    }

    pub fn conference_count(&self) -> usize {
        self.inner.lock().conferences.len()
    }

    /// A consistent copy of everything.
    pub fn snapshot(&self) -> RosterSnapshot {
        let inner = self.inner.lock();
        RosterSnapshot {
            conferences: inner
                .conferences
                .iter()
                .map(|(id, c)| conference_snapshot(id, c))
                .collect(),
            transfers: inner
                .transfers
                .iter()
                .map(|(id, t)| transfer_snapshot(&inner, *id, t))
                .collect(),
        }
    }

    /// `{"conferences":[...],"transfers":[...]}`; see [`RosterSnapshot::to_json`].
    pub fn to_json(&self) -> String {
        self.snapshot().to_json()
    }
}

fn conference_participants(c: &Conference) -> Vec<ParticipantSnapshot> {
    let mut ps: Vec<(&String, &Participant)> = c.participants.iter().collect();
    ps.sort_by_key(|(_, p)| p.seq);
    ps.into_iter()
        .map(|(k, p)| ParticipantSnapshot {
            key: k.clone(),
            target: p.target.clone(),
            display: p.display.clone(),
            joined_at_ms: p.joined_at_ms,
        })
        .collect()
}

fn conference_snapshot(id: &str, c: &Conference) -> ConferenceSnapshot {
    ConferenceSnapshot {
        id: id.to_owned(),
        created_at_ms: c.created_at_ms,
        participants: conference_participants(c),
        transfers: c.transfers.clone(),
    }
}

fn delivery_snapshot(id: DeliveryId, d: &Delivery) -> DeliverySnapshot {
    DeliverySnapshot {
        id,
        transfer: d.transfer,
        participant: d.participant.clone(),
        state: d.state.clone(),
        created_at_ms: d.created_at_ms,
        updated_at_ms: d.updated_at_ms,
        first_byte_at_ms: d.first_byte_at_ms,
        confirmed_bytes: d.confirmed_bytes,
        ended_in: d.ended_in,
        attempt: d.attempt,
        resumed_from: d.resumed_from,
    }
}

fn transfer_snapshot(inner: &Inner, id: TransferId, t: &Transfer) -> TransferSnapshot {
    TransferSnapshot {
        deliveries: t
            .deliveries
            .iter()
            .filter_map(|d| inner.deliveries.get(d).map(|x| delivery_snapshot(*d, x)))
            .collect(),
        ..transfer_head(id, t)
    }
}

/// A transfer's snapshot without its deliveries (left empty).
fn transfer_head(id: TransferId, t: &Transfer) -> TransferSnapshot {
    TransferSnapshot {
        id,
        conference: t.conference.clone(),
        name: t.name.clone(),
        content_type: t.content_type.clone(),
        size: t.size,
        declared_size: t.declared_size,
        state: t.state.clone(),
        created_at_ms: t.created_at_ms,
        updated_at_ms: t.updated_at_ms,
        origin: t.origin.clone(),
        to: t.to.clone(),
        deliveries: Vec::new(),
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

impl ParticipantSnapshot {
    /// `{"key":..,"target":..,"display":..|null,"joined_at_ms":..}`
    pub fn write_json(&self, out: &mut String) {
        let mut o = json::Object::begin(out);
        o.str("key", &self.key)
            .str("target", &self.target)
            .opt_str("display", self.display.as_deref())
            .u64("joined_at_ms", self.joined_at_ms);
        o.end();
    }
}

impl ConferenceSnapshot {
    /// `{"id":..,"created_at_ms":..,"participants":[...],"transfers":[ids]}`
    pub fn write_json(&self, out: &mut String) {
        let mut o = json::Object::begin(out);
        o.str("id", &self.id)
            .u64("created_at_ms", self.created_at_ms)
            .array("participants", &self.participants, |out, p| {
                p.write_json(out)
            })
            .array("transfers", &self.transfers, |out, t| {
                out.push_str(&t.0.to_string())
            });
        o.end();
    }
}

impl DeliverySnapshot {
    /// `{"id":..,"participant":..,"state":..,"bytes":..,"total":..,"percent":..,"reason":..,
    /// "code":..,"ended_in":..,"created_at_ms":..,"updated_at_ms":..,"first_byte_at_ms":..,
    /// "attempt":..,"resumed_from":..}`;
    /// fields that do not apply are `null`. `file_size` is the transfer's size, used for `done`.
    /// A failed or cancelled delivery that got to `sending` keeps in `bytes` how many bytes the
    /// participant had confirmed.
    pub fn write_json(&self, out: &mut String, file_size: u64) {
        let got_far = (self.confirmed_bytes > 0 || self.ended_in == Some("sending"))
            .then_some(self.confirmed_bytes);
        let (bytes, total, reason, code) = match &self.state {
            DeliveryState::Sending { bytes, total } => (Some(*bytes), *total, None, None),
            DeliveryState::Done => (Some(file_size), Some(file_size), None, None),
            DeliveryState::Failed { reason, code } => (got_far, None, Some(reason.as_str()), *code),
            DeliveryState::Cancelled => (got_far, None, None, None),
            _ => (None, None, None, None),
        };
        let percent = match (bytes, total) {
            (Some(_), Some(0)) => Some(100),
            (Some(b), Some(t)) => Some((u128::from(b.min(t)) * 100 / u128::from(t)) as u64),
            _ => None,
        };
        let mut o = json::Object::begin(out);
        o.u64("id", self.id.0)
            .str("participant", &self.participant)
            .str("state", self.state.name())
            .opt_u64("bytes", bytes)
            .opt_u64("total", total)
            .opt_u64("percent", percent)
            .opt_str("reason", reason)
            .opt_u64("code", code.map(u64::from))
            .opt_str("ended_in", self.ended_in)
            .u64("created_at_ms", self.created_at_ms)
            .u64("updated_at_ms", self.updated_at_ms)
            .opt_u64("first_byte_at_ms", self.first_byte_at_ms)
            .u64("attempt", u64::from(self.attempt))
            .opt_u64("resumed_from", self.resumed_from);
        o.end();
    }
}

impl TransferSnapshot {
    /// `{"id":..,"conference":..,"name":..,"content_type":..,"size":..,"declared_size":..,
    /// "state":..,"reason":..,"sha1":..,"deliveries":[...]}`
    pub fn write_json(&self, out: &mut String) {
        let reason = match &self.state {
            TransferState::Aborted { reason } => Some(reason.clone()),
            TransferState::TooLarge { limit } => Some(format!("larger than {limit} bytes")),
            _ => None,
        };
        let sha1 = self.sha1().map(|h| hex_lower(&h));
        let mut o = json::Object::begin(out);
        o.u64("id", self.id.0)
            .str("conference", &self.conference)
            .str("name", &self.name)
            .str("content_type", &self.content_type)
            .u64("size", self.size)
            .opt_u64("declared_size", self.declared_size)
            .str("state", self.state.name())
            .opt_str("reason", reason.as_deref())
            .opt_str("sha1", sha1.as_deref())
            .u64("created_at_ms", self.created_at_ms)
            .u64("updated_at_ms", self.updated_at_ms)
            .opt_str("via", self.origin.as_ref().map(Origin::via))
            .opt_str("sender", self.origin.as_ref().and_then(Origin::sender));
        self.write_to_field(&mut o);
        o.array("deliveries", &self.deliveries, |out, d| {
            d.write_json(out, self.size)
        });
        o.end();
    }

    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// The `"to"` field: the chosen participant keys, or `null` for the whole room.
    pub fn write_to_field(&self, o: &mut json::Object<'_>) {
        match &self.to {
            Some(keys) => o.array("to", keys, |out, k| json::push_str(out, k)),
            None => o.null("to"),
        };
    }
}

impl RosterSnapshot {
    /// `{"conferences":[...],"transfers":[...]}`
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        let mut o = json::Object::begin(&mut s);
        o.array("conferences", &self.conferences, |out, c| c.write_json(out))
            .array("transfers", &self.transfers, |out, t| t.write_json(out));
        o.end();
        s
    }

    /// `{"conferences":[...]}` only (Kamailio RPC `msrpcast.conferences`).
    pub fn conferences_json(&self) -> String {
        let mut s = String::new();
        let mut o = json::Object::begin(&mut s);
        o.array("conferences", &self.conferences, |out, c| c.write_json(out));
        o.end();
        s
    }

    /// `{"transfers":[...]}` only (Kamailio RPC `msrpcast.transfers`).
    pub fn transfers_json(&self) -> String {
        let mut s = String::new();
        let mut o = json::Object::begin(&mut s);
        o.array("transfers", &self.transfers, |out, t| t.write_json(out));
        o.end();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn roster_with(limits: Limits) -> (Roster, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(1_000));
        let n = Arc::clone(&now);
        (
            Roster::with_clock(limits, move || n.load(Ordering::SeqCst)),
            now,
        )
    }

    fn roster() -> (Roster, Arc<AtomicU64>) {
        roster_with(Limits::default())
    }

    #[test]
    fn join_is_idempotent_and_updates() {
        let (r, _) = roster();
        assert_eq!(
            r.join("c1", "alice", "sip:alice@a", None),
            Ok(Joined::New {
                conference_created: true
            })
        );
        assert_eq!(
            r.join("c1", "alice", "sip:alice@a", None),
            Ok(Joined::Already { changed: false })
        );
        assert_eq!(
            r.join("c1", "alice", "sip:alice@b", Some("Alice")),
            Ok(Joined::Already { changed: true })
        );
        assert_eq!(
            r.join("c1", "bob", "sip:bob@b", None),
            Ok(Joined::New {
                conference_created: false
            })
        );
        let ps = r.participants("c1");
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].key, "alice");
        assert_eq!(ps[0].target, "sip:alice@b");
        assert_eq!(ps[0].display.as_deref(), Some("Alice"));
        assert_eq!(ps[1].key, "bob");
    }

    #[test]
    fn participants_keep_join_order() {
        let (r, _) = roster();
        for k in ["z", "a", "m", "b"] {
            r.join("c", k, "sip:x@y", None).unwrap();
        }
        let keys: Vec<String> = r.participants("c").into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["z", "a", "m", "b"]);
    }

    #[test]
    fn leave_is_idempotent_and_last_leave_ends_conference() {
        let (r, _) = roster();
        r.join("c1", "alice", "sip:a@x", None).unwrap();
        r.join("c1", "bob", "sip:b@x", None).unwrap();
        let t = r.add_transfer("c1", "f.txt", "text/plain", None).unwrap();
        assert_eq!(
            r.leave("c1", "alice"),
            Left::Left {
                cancelled: vec![],
                ended: None
            }
        );
        assert_eq!(r.leave("c1", "alice"), Left::NotJoined);
        assert_eq!(r.leave("nope", "alice"), Left::NotJoined);
        assert_eq!(
            r.leave("c1", "bob"),
            Left::Left {
                cancelled: vec![],
                ended: Some(EndedConference {
                    id: "c1".into(),
                    transfers: vec![t]
                })
            }
        );
        assert_eq!(r.leave("c1", "bob"), Left::NotJoined);
        assert!(r.conference("c1").is_none());
        assert!(r.transfer(t).is_none());
        assert_eq!(r.conference_count(), 0);
        // The conference can start again.
        assert_eq!(
            r.join("c1", "bob", "sip:b@x", None),
            Ok(Joined::New {
                conference_created: true
            })
        );
    }

    #[test]
    fn leave_cancels_unfinished_deliveries_only() {
        let (r, _) = roster();
        r.join("c", "a", "sip:a@x", None).unwrap();
        r.join("c", "b", "sip:b@x", None).unwrap();
        let t1 = r.add_transfer("c", "1", "x/y", None).unwrap();
        let t2 = r.add_transfer("c", "2", "x/y", None).unwrap();
        let (d1, _) = r.add_delivery(t1, "a").unwrap();
        let (d2, _) = r.add_delivery(t2, "a").unwrap();
        let (d3, _) = r.add_delivery(t2, "b").unwrap();
        r.set_delivery_state(d1, DeliveryState::Done).unwrap();
        r.set_delivery_state(
            d2,
            DeliveryState::Sending {
                bytes: 5,
                total: Some(10),
            },
        )
        .unwrap();
        assert_eq!(
            r.leave("c", "a"),
            Left::Left {
                cancelled: vec![d2],
                ended: None
            }
        );
        assert_eq!(r.delivery(d1).unwrap().state, DeliveryState::Done);
        assert_eq!(r.delivery(d2).unwrap().state, DeliveryState::Cancelled);
        assert_eq!(r.delivery(d3).unwrap().state, DeliveryState::Queued);
    }

    #[test]
    fn limits_are_enforced_with_reasons() {
        let (r, _) = roster_with(Limits {
            max_conferences: 1,
            max_participants_per_conference: 2,
            max_transfers_per_conference: 1,
            max_string_bytes: 8,
            ..Limits::default()
        });
        r.join("c", "a", "sip:a", None).unwrap();
        r.join("c", "b", "sip:b", None).unwrap();
        // Re-join of an existing key is not a new participant.
        r.join("c", "b", "sip:b2", None).unwrap();
        let e = r.join("c", "x", "sip:x", None).unwrap_err();
        assert_eq!(
            e,
            RosterError::TooManyParticipants {
                conference: "c".into(),
                limit: 2
            }
        );
        assert!(e.to_string().contains("limit 2"));
        assert_eq!(
            r.join("d", "a", "sip:a", None),
            Err(RosterError::TooManyConferences { limit: 1 })
        );
        r.add_transfer("c", "f", "t", None).unwrap();
        assert_eq!(
            r.add_transfer("c", "g", "t", None),
            Err(RosterError::TooManyTransfers {
                conference: "c".into(),
                limit: 1
            })
        );
        assert_eq!(
            r.join("c", "a", "sip:toolongtarget", None),
            Err(RosterError::TooLong {
                what: "target URI",
                limit: 8
            })
        );
        assert_eq!(
            r.join("", "a", "sip:a", None),
            Err(RosterError::Empty {
                what: "conference id"
            })
        );
        assert_eq!(
            r.join("c", "", "sip:a", None),
            Err(RosterError::Empty {
                what: "participant key"
            })
        );
        // A failed join changed nothing.
        assert_eq!(r.participants("c")[0].target, "sip:a");
    }

    /// Finding 10 of issue 14: `max_participants` was never enforced.
    #[test]
    fn participants_are_bounded_per_conference_and_overall() {
        let (r, _) = roster_with(Limits {
            max_participants: 2,
            max_participants_per_conference: 1,
            ..Limits::default()
        });
        r.join("a", "p1", "sip:p1", None).unwrap();
        assert!(matches!(
            r.join("a", "p2", "sip:p2", None),
            Err(RosterError::TooManyParticipants { limit: 1, .. })
        ));
        r.join("b", "p3", "sip:p3", None).unwrap();
        let e = r.join("c", "p4", "sip:p4", None).unwrap_err();
        assert_eq!(e, RosterError::TooManyParticipantsOverall { limit: 2 });
        assert!(e.to_string().contains("limit 2"), "{e}");
        assert_eq!(
            r.conference_count(),
            2,
            "the refused join created no conference"
        );
        // A repeated join is not a new participant; a leave frees a place.
        r.join("b", "p3", "sip:p3b", None).unwrap();
        assert_eq!(r.participant_count(), 2);
        r.leave("b", "p3");
        r.join("c", "p4", "sip:p4", None).unwrap();
        assert_eq!(r.participant_count(), 2);
    }

    fn complete(r: &Roster, conf: &str) -> TransferId {
        let t = r.add_transfer(conf, "f", "t", Some(1)).unwrap();
        r.set_transfer_state(t, TransferState::Complete { sha1: [0; 20] }, Some(1))
            .unwrap();
        t
    }

    fn restored(conf: &str, changed_ms: u64) -> RestoredTransfer {
        RestoredTransfer {
            conference: conf.into(),
            name: "f".into(),
            content_type: "t".into(),
            size: 3,
            sha1: [1; 20],
            created_ms: changed_ms,
            changed_ms,
            to: None,
        }
    }

    /// A file for chosen participants: every key must be a participant, the list not empty;
    /// the choice shows as `to` (repeats dropped), `null` for the whole room, and survives a
    /// restore.
    #[test]
    fn chosen_recipients_are_checked_and_shown() {
        let (r, _) = roster();
        for k in ["a", "b", "c"] {
            r.join("c", k, "sip:x", None).unwrap();
        }
        let keys = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(
            r.add_transfer_to("c", "f", "t", None, Some(&keys(&["a", "zed"]))),
            Err(RosterError::UnknownParticipant {
                conference: "c".into(),
                key: "zed".into()
            })
        );
        assert_eq!(
            r.add_transfer_to("c", "f", "t", None, Some(&[])),
            Err(RosterError::NoRecipients)
        );
        assert!(r.transfers_of("c").is_empty(), "a refusal adds nothing");
        let t = r
            .add_transfer_to("c", "f", "t", None, Some(&keys(&["c", "a", "c"])))
            .unwrap();
        let snap = r.transfer(t).unwrap();
        assert_eq!(snap.to, Some(keys(&["c", "a"])));
        assert!(snap.to_json().contains(r#""to":["c","a"],"deliveries""#));
        let all = r.add_transfer("c", "g", "t", None).unwrap();
        assert!(r.transfer(all).unwrap().to_json().contains(r#""to":null"#));
        let mut rt = restored("c", 5);
        rt.to = Some(keys(&["b"]));
        let back = r.restore_transfer(&rt).unwrap();
        assert_eq!(r.transfer(back).unwrap().to, Some(keys(&["b"])));
    }

    /// Files restored after a restart wait for their conference's first join, count against
    /// its file limit meanwhile, and age from their time before the restart.
    #[test]
    fn restored_transfers_wait_for_their_conference() {
        let (r, now) = roster_with(Limits {
            max_transfers_per_conference: 2,
            finished_ttl_ms: 10_000,
            ..Limits::default()
        });
        now.store(20_000, Ordering::SeqCst);
        let old = r.restore_transfer(&restored("c", 9_000)).unwrap();
        let a = r.restore_transfer(&restored("c", 15_000)).unwrap();
        // A third makes room: the oldest goes (the engine hears of it from prune).
        let b = r.restore_transfer(&restored("c", 16_000)).unwrap();
        assert!(r.transfer(old).is_none());
        assert!(r.conference("c").is_none(), "no participant yet");
        let t = r.transfer(a).unwrap();
        assert_eq!(t.state, TransferState::Complete { sha1: [1; 20] });
        assert_eq!((t.size, t.created_at_ms), (3, 15_000));
        assert_eq!(r.prune(), vec![old]);
        r.join("c", "p", "sip:p", None).unwrap();
        assert_eq!(r.conference("c").unwrap().transfers, vec![a, b]);
        assert_eq!(r.transfers_of("c").len(), 2);
        // Aged from before the restart: a goes at 25_000, b at 26_000.
        now.store(25_000, Ordering::SeqCst);
        assert_eq!(r.prune(), vec![a]);
        assert_eq!(r.conference("c").unwrap().transfers, vec![b]);
        // The conference's end takes the rest.
        let Left::Left { ended, .. } = r.leave("c", "p") else {
            panic!("not left")
        };
        assert_eq!(ended.unwrap().transfers, vec![b]);
        // Restored into a live conference: it is its file at once.
        r.join("d", "p", "sip:p", None).unwrap();
        let d = r.restore_transfer(&restored("d", 25_000)).unwrap();
        assert_eq!(r.conference("d").unwrap().transfers, vec![d]);
        assert!(matches!(
            r.restore_transfer(&restored("", 1)),
            Err(RosterError::Empty { .. })
        ));
    }

    /// Finding 8 of issue 14: at 1000 files a conference refused every upload for good, and
    /// `DELETE` freed nothing.
    #[test]
    fn files_per_conference_make_room_and_cancel_frees() {
        let (r, now) = roster_with(Limits {
            max_transfers_per_conference: 3,
            ..Limits::default()
        });
        r.join("c", "a", "sip:a", None).unwrap();
        // Finished files make room for new ones, oldest first; the engine learns of the evicted
        // ones from prune (to remove their spool files).
        let old: Vec<TransferId> = (0..3)
            .map(|_| {
                now.fetch_add(1, Ordering::SeqCst);
                complete(&r, "c")
            })
            .collect();
        let t4 = r.add_transfer("c", "g", "t", None).unwrap();
        assert!(r.transfer(old[0]).is_none());
        assert_eq!(r.prune(), vec![old[0]]);
        assert_eq!(r.prune(), Vec::<TransferId>::new());
        // A file still being delivered is not evicted.
        let (d, _) = r.add_delivery(old[1], "a").unwrap();
        let t5 = r.add_transfer("c", "g", "t", None).unwrap();
        assert!(r.transfer(old[1]).is_some() && r.transfer(old[2]).is_none());
        // Now all three are busy: refused, with the reason.
        assert!(matches!(
            r.add_transfer("c", "h", "t", None),
            Err(RosterError::TooManyTransfers { limit: 3, .. })
        ));
        // DELETE (cancel) frees the slot at once, and the transfer is no longer offered.
        r.cancel_transfer(t4).unwrap();
        assert!(!r.transfers_of("c").iter().any(|t| t.id == t4));
        let t6 = r.add_transfer("c", "h", "t", None).unwrap();
        // The cancelled one stays visible for the grace period once it finished, then goes.
        r.set_transfer_state(t4, TransferState::Aborted { reason: "x".into() }, None)
            .unwrap();
        r.prune();
        assert!(r.transfer(t4).is_some());
        now.fetch_add(CANCELLED_GRACE_MS, Ordering::SeqCst);
        assert!(r.prune().contains(&t4));
        assert!(r.transfer(t4).is_none());
        r.set_delivery_state(d, DeliveryState::Done).unwrap();
        assert!(r.transfer(t5).is_some() && r.transfer(t6).is_some());
    }

    /// Finding 20 of issue 14: finished transfers were kept for ever.
    #[test]
    fn finished_transfers_are_pruned_by_age_and_count() {
        let (r, now) = roster_with(Limits {
            max_finished_transfers: 2,
            finished_ttl_ms: 1_000,
            ..Limits::default()
        });
        r.join("c", "a", "sip:a", None).unwrap();
        let ts: Vec<TransferId> = (0..4)
            .map(|_| {
                now.fetch_add(10, Ordering::SeqCst);
                complete(&r, "c")
            })
            .collect();
        let running = r.add_transfer("c", "r", "t", None).unwrap();
        // Beyond the count: the oldest finished go, the running one stays.
        let mut gone = r.prune();
        gone.sort();
        assert_eq!(gone, ts[..2].to_vec());
        assert_eq!(r.transfer_ids(), vec![ts[2], ts[3], running]);
        assert_eq!(
            r.conference("c").unwrap().transfers,
            vec![ts[2], ts[3], running]
        );
        // A delivery in progress keeps a transfer unfinished, whatever its age.
        let (d, _) = r.add_delivery(ts[3], "a").unwrap();
        now.fetch_add(1_000, Ordering::SeqCst);
        assert_eq!(r.prune(), vec![ts[2]]);
        r.set_delivery_state(d, DeliveryState::Done).unwrap();
        assert_eq!(r.prune(), Vec::<TransferId>::new());
        now.fetch_add(1_000, Ordering::SeqCst);
        assert_eq!(r.prune(), vec![ts[3]]);
        assert_eq!(r.transfer_ids(), vec![running]);
    }

    /// Finding 20 of issue 14: the event watcher serialised every retained transfer each
    /// interval; the roster now says which changed.
    #[test]
    fn changed_since_lists_only_changes() {
        let (r, _) = roster();
        r.join("c", "a", "sip:a", None).unwrap();
        let ts: Vec<TransferId> = (0..50).map(|_| complete(&r, "c")).collect();
        let (v, all) = r.changed_since(0);
        assert_eq!(all.len(), 50);
        let (v2, none) = r.changed_since(v);
        assert!(none.is_empty() && v2 == v);
        let (d, _) = r.add_delivery(ts[7], "a").unwrap();
        let (v3, one) = r.changed_since(v);
        assert_eq!(one.iter().map(|t| t.id).collect::<Vec<_>>(), vec![ts[7]]);
        r.set_delivery_state(
            d,
            DeliveryState::Sending {
                bytes: 1,
                total: Some(1),
            },
        )
        .unwrap();
        r.set_transfer_size(ts[9], 1).unwrap();
        let (_, two) = r.changed_since(v3);
        assert_eq!(
            two.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![ts[7], ts[9]]
        );
        // A leave that cancels a delivery is a change too.
        let (v4, _) = r.changed_since(0);
        r.join("c", "b", "sip:b", None).unwrap();
        r.leave("c", "a");
        let (_, left) = r.changed_since(v4);
        assert_eq!(left.iter().map(|t| t.id).collect::<Vec<_>>(), vec![ts[7]]);
    }

    #[test]
    fn transfers_need_a_conference() {
        let (r, _) = roster();
        assert_eq!(
            r.add_transfer("c", "f", "t", None),
            Err(RosterError::UnknownConference("c".into()))
        );
        assert_eq!(
            r.set_transfer_size(TransferId(9), 1),
            Err(RosterError::UnknownTransfer(TransferId(9)))
        );
        assert_eq!(
            r.set_delivery_state(DeliveryId(9), DeliveryState::Done),
            Err(RosterError::UnknownDelivery(DeliveryId(9)))
        );
    }

    #[test]
    fn transfer_lifecycle_and_sha1() {
        let (r, now) = roster();
        r.join("c", "a", "sip:a", None).unwrap();
        let t = r
            .add_transfer("c", "pic.jpg", "image/jpeg", Some(100))
            .unwrap();
        let s = r.transfer(t).unwrap();
        assert_eq!(s.state, TransferState::Receiving);
        assert_eq!((s.size, s.declared_size, s.sha1()), (0, Some(100), None));
        now.store(2_000, Ordering::SeqCst);
        r.set_transfer_size(t, 40).unwrap();
        let s = r.transfer(t).unwrap();
        assert_eq!(
            (s.size, s.updated_at_ms, s.created_at_ms),
            (40, 2_000, 1_000)
        );
        let (d, _) = r.add_delivery(t, "a").unwrap();
        let active = r
            .set_transfer_state(t, TransferState::Complete { sha1: [7; 20] }, Some(100))
            .unwrap();
        assert_eq!(active, vec![d]);
        let s = r.transfer(t).unwrap();
        assert_eq!((s.size, s.sha1()), (100, Some([7; 20])));
        assert!(s.state.is_finished());
        assert_eq!(r.transfers_of("c").len(), 1);
        assert!(r.transfers_of("nope").is_empty());
    }

    #[test]
    fn aborted_upload_lists_unfinished_deliveries() {
        let (r, _) = roster();
        r.join("c", "a", "sip:a", None).unwrap();
        r.join("c", "b", "sip:b", None).unwrap();
        let t = r.add_transfer("c", "f", "t", None).unwrap();
        let (da, _) = r.add_delivery(t, "a").unwrap();
        let (db, _) = r.add_delivery(t, "b").unwrap();
        r.set_delivery_state(
            db,
            DeliveryState::Failed {
                reason: "486".into(),
                code: Some(486),
            },
        )
        .unwrap();
        let active = r
            .set_transfer_state(
                t,
                TransferState::Aborted {
                    reason: "client went away".into(),
                },
                None,
            )
            .unwrap();
        assert_eq!(active, vec![da]);
    }

    #[test]
    fn delivery_dedup_and_replacement() {
        let (r, _) = roster();
        r.join("c", "a", "sip:a", None).unwrap();
        let t = r.add_transfer("c", "f", "t", None).unwrap();
        let (d1, created) = r.add_delivery(t, "a").unwrap();
        assert!(created);
        assert_eq!(r.add_delivery(t, "a").unwrap(), (d1, false));
        assert_eq!(
            r.add_delivery(t, "ghost"),
            Err(RosterError::UnknownParticipant {
                conference: "c".into(),
                key: "ghost".into()
            })
        );
        // Done stays.
        r.set_delivery_state(d1, DeliveryState::Done).unwrap();
        assert_eq!(r.add_delivery(t, "a").unwrap(), (d1, false));
        // Leave + rejoin: the cancelled delivery is replaced... (Done is kept, so use a new file.)
        let t2 = r.add_transfer("c", "g", "t", None).unwrap();
        r.join("c", "b", "sip:b", None).unwrap();
        let (d2, _) = r.add_delivery(t2, "a").unwrap();
        r.leave("c", "a");
        r.join("c", "a", "sip:a", None).unwrap();
        let (d3, created) = r.add_delivery(t2, "a").unwrap();
        assert!(created);
        assert_ne!(d2, d3);
        assert!(r.delivery(d2).is_none());
        let s = r.transfer(t2).unwrap();
        assert_eq!(s.deliveries.len(), 1);
        assert_eq!(s.deliveries[0].id, d3);
        assert_eq!(s.deliveries[0].state, DeliveryState::Queued);
    }

    #[test]
    fn terminal_delivery_states_are_final() {
        let (r, now) = roster();
        r.join("c", "a", "sip:a", None).unwrap();
        let t = r.add_transfer("c", "f", "t", None).unwrap();
        let (d, _) = r.add_delivery(t, "a").unwrap();
        for s in [
            DeliveryState::Offering,
            DeliveryState::Connecting,
            DeliveryState::Sending {
                bytes: 1,
                total: None,
            },
        ] {
            assert_eq!(r.set_delivery_state(d, s.clone()), Ok(true));
            assert_eq!(r.delivery(d).unwrap().state, s);
        }
        now.store(5_000, Ordering::SeqCst);
        assert_eq!(r.set_delivery_state(d, DeliveryState::Cancelled), Ok(true));
        now.store(6_000, Ordering::SeqCst);
        assert_eq!(r.set_delivery_state(d, DeliveryState::Done), Ok(false));
        let s = r.delivery(d).unwrap();
        assert_eq!(s.state, DeliveryState::Cancelled);
        assert_eq!(s.updated_at_ms, 5_000);
    }

    #[test]
    fn json_shapes() {
        let (r, _) = roster();
        r.join("conf-1", "k1", "sip:a@h", Some("Ann \"A\""))
            .unwrap();
        r.join("conf-1", "k2", "sip:b@h", None).unwrap();
        let t = r
            .add_transfer("conf-1", "a\nb.txt", "text/plain", None)
            .unwrap();
        let (d1, _) = r.add_delivery(t, "k1").unwrap();
        let (d2, _) = r.add_delivery(t, "k2").unwrap();
        r.set_transfer_size(t, 50).unwrap();
        r.set_delivery_state(
            d1,
            DeliveryState::Sending {
                bytes: 25,
                total: Some(200),
            },
        )
        .unwrap();
        r.set_delivery_state(
            d2,
            DeliveryState::Failed {
                reason: "busy".into(),
                code: Some(486),
            },
        )
        .unwrap();
        let snap = r.snapshot();
        assert_eq!(
            snap.conferences_json(),
            concat!(
                r#"{"conferences":[{"id":"conf-1","created_at_ms":1000,"participants":["#,
                r#"{"key":"k1","target":"sip:a@h","display":"Ann \"A\"","joined_at_ms":1000},"#,
                r#"{"key":"k2","target":"sip:b@h","display":null,"joined_at_ms":1000}],"#,
                r#""transfers":[1]}]}"#
            )
        );
        assert_eq!(
            snap.transfers_json(),
            concat!(
                r#"{"transfers":[{"id":1,"conference":"conf-1","name":"a\nb.txt","#,
                r#""content_type":"text/plain","size":50,"declared_size":null,"#,
                r#""state":"receiving","reason":null,"sha1":null,"created_at_ms":1000,"#,
                r#""updated_at_ms":1000,"via":null,"sender":null,"to":null,"deliveries":["#,
                r#"{"id":1,"participant":"k1","state":"sending","bytes":25,"total":200,"#,
                r#""percent":12,"reason":null,"code":null,"ended_in":null,"created_at_ms":1000,"#,
                r#""updated_at_ms":1000,"first_byte_at_ms":1000,"attempt":1,"resumed_from":null},"#,
                r#"{"id":2,"participant":"k2","state":"failed","bytes":null,"total":null,"#,
                r#""percent":null,"reason":"busy","code":486,"ended_in":"queued","#,
                r#""created_at_ms":1000,"updated_at_ms":1000,"first_byte_at_ms":null,"attempt":1,"#,
                r#""resumed_from":null}"#,
                r#"]}]}"#
            )
        );
        let all = r.to_json();
        assert!(all.starts_with(r#"{"conferences":[{"id":"conf-1""#));
        assert!(all.contains(r#"],"transfers":[{"id":1,"#));
    }

    /// A delivery that fails or is cancelled keeps how far it got and the state it ended in;
    /// the transfer says how it came in; the history lists cancelled transfers too.
    #[test]
    fn failures_keep_progress_origin_and_history() {
        let (r, _) = roster();
        r.join("c", "a", "sip:a@h", None).unwrap();
        r.join("c", "b", "sip:b@h", None).unwrap();
        r.join("c", "z", "sip:z@h", None).unwrap();
        let t = r.add_transfer("c", "f.bin", "", Some(1000)).unwrap();
        let (da, _) = r.add_delivery(t, "a").unwrap();
        let (db, _) = r.add_delivery(t, "b").unwrap();
        let (dz, _) = r.add_delivery(t, "z").unwrap();
        let sending = |bytes| DeliveryState::Sending {
            bytes,
            total: Some(1000),
        };
        r.set_delivery_state(da, DeliveryState::Offering).unwrap();
        r.set_delivery_state(da, sending(300)).unwrap();
        r.set_delivery_state(da, sending(600)).unwrap();
        r.set_delivery_state(
            da,
            DeliveryState::Failed {
                reason: "connection closed".into(),
                code: None,
            },
        )
        .unwrap();
        r.set_delivery_state(db, DeliveryState::Offering).unwrap();
        r.set_delivery_state(
            db,
            DeliveryState::Failed {
                reason: "file INVITE rejected with 486".into(),
                code: Some(486),
            },
        )
        .unwrap();
        r.set_delivery_state(dz, sending(10)).unwrap();
        r.set_transfer_origin(t, Origin::Participant("z".into()))
            .unwrap();
        let a = r.delivery(da).unwrap();
        assert_eq!((a.confirmed_bytes, a.ended_in), (600, Some("sending")));
        let mut j = String::new();
        a.write_json(&mut j, 1000);
        assert!(
            j.contains(r#""state":"failed","bytes":600,"total":null"#),
            "{j}"
        );
        assert!(j.contains(r#""ended_in":"sending""#), "{j}");
        let b = r.delivery(db).unwrap();
        assert_eq!((b.confirmed_bytes, b.ended_in), (0, Some("offering")));
        let mut j = String::new();
        b.write_json(&mut j, 1000);
        assert!(j.contains(r#""bytes":null"#) && j.contains(r#""code":486,"ended_in":"offering""#));
        // z leaves while sending: cancelled, with its progress.
        r.leave("c", "z");
        let z = r.delivery(dz).unwrap();
        assert_eq!(z.state, DeliveryState::Cancelled);
        assert_eq!((z.confirmed_bytes, z.ended_in), (10, Some("sending")));
        let json = r.transfer(t).unwrap().to_json();
        assert!(
            json.contains(r#""via":"participant","sender":"z""#),
            "{json}"
        );
        // History: cancelled transfers stay listed (transfers_of leaves them out).
        let t2 = r.add_transfer("c", "g.bin", "", None).unwrap();
        r.cancel_transfer(t2).unwrap();
        let h: Vec<TransferId> = r.history_of("c").unwrap().iter().map(|t| t.id).collect();
        assert_eq!(h, vec![t, t2]);
        assert_eq!(r.transfers_of("c").len(), 1);
        assert!(r.history_of("nope").is_none());
        assert_eq!(
            r.set_transfer_origin(TransferId(99), Origin::Http),
            Err(RosterError::UnknownTransfer(TransferId(99)))
        );
    }

    #[test]
    fn json_done_and_complete() {
        let (r, _) = roster();
        r.join("c", "a", "sip:a", None).unwrap();
        let t = r.add_transfer("c", "f", "t", Some(3)).unwrap();
        let (d, _) = r.add_delivery(t, "a").unwrap();
        let mut sha1 = [0u8; 20];
        sha1[0] = 0xab;
        sha1[19] = 0x01;
        r.set_transfer_state(t, TransferState::Complete { sha1 }, Some(3))
            .unwrap();
        r.set_delivery_state(d, DeliveryState::Done).unwrap();
        let j = r.transfer(t).unwrap().to_json();
        assert!(j.contains(r#""state":"complete""#), "{j}");
        assert!(
            j.contains(r#""sha1":"ab00000000000000000000000000000000000001""#),
            "{j}"
        );
        assert!(
            j.contains(r#""state":"done","bytes":3,"total":3,"percent":100"#),
            "{j}"
        );
    }

    #[test]
    fn percent_edge_cases() {
        let d = |state| DeliverySnapshot {
            id: DeliveryId(1),
            transfer: TransferId(1),
            participant: "p".into(),
            state,
            created_at_ms: 0,
            updated_at_ms: 0,
            first_byte_at_ms: None,
            confirmed_bytes: 0,
            ended_in: None,
            attempt: 1,
            resumed_from: None,
        };
        let json = |state| {
            let mut s = String::new();
            d(state).write_json(&mut s, 0);
            s
        };
        assert!(json(DeliveryState::Sending {
            bytes: 0,
            total: Some(0)
        })
        .contains(r#""percent":100"#));
        assert!(json(DeliveryState::Sending {
            bytes: u64::MAX,
            total: Some(u64::MAX)
        })
        .contains(r#""percent":100"#));
        assert!(json(DeliveryState::Sending {
            bytes: 7,
            total: None
        })
        .contains(r#""bytes":7,"total":null,"percent":null"#));
        assert!(json(DeliveryState::Cancelled).contains(r#""state":"cancelled""#));
    }

    #[test]
    fn roster_is_shareable_across_threads() {
        let (r, _) = roster();
        let r = Arc::new(r);
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for j in 0..100 {
                        let key = format!("{i}-{j}");
                        r.join("c", &key, "sip:x", None).unwrap();
                        if j % 2 == 0 {
                            r.leave("c", &key);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(r.participants("c").len(), 200);
    }
}
