//! The engine's decisions, sans-IO: who gets which file, when to offer, when a delivery has
//! waited too long, when to say bye.
//!
//! [`Core`] owns no thread, socket, channel or clock. Inputs arrive through its `handle_*`
//! methods, each with the time `now` where time matters; its outputs are [`Action`]s taken with
//! [`Core::poll_action`] (signals for the host, aborts for the I/O pool, connections to dial,
//! spool files to remove) and the next deadline, [`Core::poll_timeout`]. The driver
//! (`driver.rs`) carries them out. State shared with other threads is data only: the roster, the
//! set of cancelled transfers, the sessions the MSRP listener waits for, and each delivery's
//! [`Progress`] counters.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::config::Config;
use crate::msrp::ids::IdGen;
use crate::msrp::sender::{Sender as MsrpSender, SenderConfig};
use crate::msrp::{writer, Host, Message, Uri};
use crate::roster::{
    DeliveryId, DeliveryState, Joined, Left, Limits as RosterLimits, RestoredTransfer, Roster,
    TransferId, TransferSnapshot, TransferState,
};
use crate::runtime::delivery::{DeliveryOutcome, Progress, PHASE_SENDING};
use crate::runtime::log::{Level, Logger};
use crate::runtime::spool::{HashJoin, SpoolFile, SpoolState};
use crate::sdp;
use crate::tls::Tls;

use super::persist::Record;
use super::Signal;

/// State the core shares with the public API and the upload writers.
pub(super) struct Shared {
    pub roster: Roster,
    /// Cancelled transfers, checked by their upload writers.
    pub cancelled: Mutex<HashSet<TransferId>>,
    /// Hashing threads of uploads that ended with `Upload::finish_then` and may still run;
    /// joined when the engine stops. Finished ones go at each push, so it holds at most about
    /// as many as uploads may run at once (`http_max_uploads`).
    pub hashing: Mutex<Vec<HashJoin>>,
}

impl Shared {
    pub fn new(cfg: &Config) -> Shared {
        Shared {
            roster: Roster::new(RosterLimits {
                max_conferences: cfg.max_conferences,
                max_participants_per_conference: cfg.max_participants_per_conference,
                max_participants: cfg.max_participants,
                max_transfers_per_conference: cfg.max_files_per_conference,
                max_finished_transfers: cfg.max_finished_transfers,
                finished_ttl_ms: cfg.finished_transfer_ttl_ms,
                ..RosterLimits::default()
            }),
            cancelled: Mutex::new(HashSet::new()),
            hashing: Mutex::new(Vec::new()),
        }
    }
}

/// Sessions whose participant is to connect to us (`a=setup:active`), by session id: the MSRP
/// listener hands a connection whose first frame names one of them to the core.
pub(super) type Awaited = Arc<Mutex<HashMap<Bytes, DeliveryId>>>;

/// What the core asks its driver to do.
#[derive(Debug)]
pub(super) enum Action {
    /// Queue this request for the host.
    Signal(Signal),
    /// Stop the delivery's connection on the I/O pool (it sends `#` and reports its outcome).
    Abort {
        delivery: DeliveryId,
        reason: String,
    },
    /// Resolve the first URI of `to_path` and connect to it; report with
    /// [`Core::handle_dialed`] or [`Core::handle_dial_failed`].
    Dial {
        delivery: DeliveryId,
        to_path: Vec<Uri>,
    },
    /// Remove this file from the spool.
    Unspool(Arc<SpoolFile>),
    /// Write (or rewrite) the on-disk record of this complete file (`spool_persist`).
    Record(Box<Record>, Arc<SpoolFile>),
    /// Remove the on-disk record of the spool file of this name.
    Forget(String),
}

/// A complete file with an on-disk record (`spool_persist`): what its record says beyond the
/// roster's transfer.
struct Tracked {
    /// The spool file's name.
    spool: String,
    /// The SIP URI it is offered from.
    sender: String,
    /// Participants it was offered to.
    recipients: BTreeSet<String>,
    /// Participants that received all of it.
    delivered: BTreeSet<String>,
    /// Restored after a restart: offered to every participant who joins and has not received
    /// it (to recipients only when `offer_to_late_joiners` is off).
    restored: bool,
    /// Changed since its record was last written.
    dirty: bool,
}

/// Everything but the socket that a delivery connection needs, returned when a connection for
/// a delivery exists (dialed or accepted).
pub(super) struct Attach {
    pub delivery: DeliveryId,
    /// An outgoing connection still being established.
    pub connecting: bool,
    pub sender: MsrpSender,
    pub file: Arc<SpoolFile>,
    pub progress: Arc<Progress>,
    pub local_path: Bytes,
    pub peer_path: Bytes,
    /// The first frame the participant sent on a connection it opened.
    pub first: Option<Message>,
    /// TLS on a connection we opened: the name its certificate is checked against (the first
    /// URI's host) and the answer's fingerprints. `None`: plain.
    pub tls: Option<TlsTarget>,
}

/// Who the TLS peer of a delivery we connect must prove to be.
pub(super) struct TlsTarget {
    pub host: Host,
    pub fingerprints: Vec<crate::tls::Fingerprint>,
}

/// The SIP side of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sip {
    /// Reached directly by MSRP URI: no SIP dialog.
    Direct,
    Offered {
        deadline: Instant,
    },
    /// The INVITE was answered with 2xx: a BYE is owed at the end.
    Answered,
    /// No dialog any more (rejected, or ended by the peer).
    Gone,
}

impl Sip {
    /// A dialog exists or is being set up: ending the delivery owes the host a `Bye`.
    fn owes_bye(self) -> bool {
        matches!(self, Sip::Offered { .. } | Sip::Answered)
    }
}

/// A delivery the core is responsible for, until its outcome.
struct Live {
    transfer: TransferId,
    participant: String,
    session_id: Bytes,
    local_uri: Uri,
    sip: Sip,
    progress: Arc<Progress>,
    /// The connection exists on the I/O pool.
    on_io: bool,
    /// Waiting for the participant to connect (it answered `a=setup:active`).
    accept_deadline: Option<Instant>,
    /// The connection must be TLS (the answer or the direct URI said so), with the answer's
    /// `a=fingerprint`s for `tls_verify = fingerprint`.
    tls: Option<Vec<crate::tls::Fingerprint>>,
    /// The host a participant that connects to us over TLS must prove to be (its path URI's).
    tls_host: Option<Host>,
    /// Waiting for name resolution and the start of an outgoing connection, and the reason
    /// it fails with when that takes too long.
    dialing: Option<(Instant, String)>,
    /// 1 for the first offer, one more for each re-offer (`resume_retries`).
    attempt: u32,
    /// Bytes of the file the participant kept from an earlier attempt: this attempt offers
    /// `a=file-range:<offset+1>-<size>` and sends only those (0: the whole file).
    offset: u64,
}

/// A delivery whose connection dropped mid-file, waiting to be offered again
/// (`resume_retries`, `resume_backoff_ms`). At most one per delivery, so the table is bounded
/// by the roster's limits on transfers and participants.
struct Retry {
    at: Instant,
    transfer: TransferId,
    participant: String,
    /// Bytes the participant holds: the re-offer's range starts after them (0: the whole file).
    offset: u64,
    /// The attempt number of the re-offer.
    attempt: u32,
}

impl Live {
    /// The earliest deadline of this delivery, with the reason it fails with then.
    fn deadline(&self) -> Option<(Instant, &str)> {
        if self.on_io {
            return None;
        }
        if let Sip::Offered { deadline } = self.sip {
            return Some((deadline, "no answer to the file INVITE"));
        }
        if let Some(d) = self.accept_deadline {
            return Some((d, "the participant never connected"));
        }
        self.dialing.as_ref().map(|(d, r)| (*d, r.as_str()))
    }
}

/// The engine's decision state.
pub(super) struct Core {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    logger: Logger,
    ids: IdGen,
    files: HashMap<TransferId, Arc<SpoolFile>>,
    live: HashMap<DeliveryId, Live>,
    direct: HashMap<(String, String), Vec<Uri>>,
    awaited: Awaited,
    msrp_addr: SocketAddr,
    advertise_host: String,
    advertise_port: u16,
    actions: VecDeque<Action>,
    /// MSRP TLS (`msrp_tls`): our certificate and the peer verification; `None` when off.
    tls: Option<Arc<Tls>>,
    /// Complete files with an on-disk record (`spool_persist`).
    tracked: HashMap<TransferId, Tracked>,
    /// Deliveries waiting for their re-offer after a dropped connection.
    retries: HashMap<DeliveryId, Retry>,
}

impl Core {
    pub fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        awaited: Awaited,
        logger: Logger,
        msrp_addr: SocketAddr,
    ) -> Result<Core, String> {
        let (advertise_host, advertise_port) = advertise(&cfg, msrp_addr);
        Ok(Core {
            ids: IdGen::new().map_err(|e| format!("no OS randomness: {e}"))?,
            cfg,
            shared,
            logger,
            files: HashMap::new(),
            live: HashMap::new(),
            direct: HashMap::new(),
            awaited,
            msrp_addr,
            advertise_host,
            advertise_port,
            actions: VecDeque::new(),
            tls: None,
            tracked: HashMap::new(),
            retries: HashMap::new(),
        })
    }

    /// MSRP TLS for offers and answers (`msrp_tls`); `None` (the default) is off.
    pub fn with_tls(mut self, tls: Option<Arc<Tls>>) -> Core {
        self.tls = tls;
        self
    }

    /// What this engine can do for an answer that asks for TLS.
    fn tls_capability(&self) -> sdp::TlsCapability {
        match &self.tls {
            None => sdp::TlsCapability::Off,
            Some(t) if t.has_certificate() => sdp::TlsCapability::Full,
            Some(_) => sdp::TlsCapability::ClientOnly,
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest deadline: call [`Core::handle_tick`] then at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = self.retries.values().map(|r| r.at).min();
        self.live
            .values()
            .filter_map(|l| l.deadline().map(|(d, _)| d))
            .chain(retry)
            .min()
    }

    fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        self.logger.log(level, "engine", args);
    }

    fn signal(&mut self, s: Signal) {
        self.actions.push_back(Action::Signal(s));
    }

    /// A participant joined (`direct`: reached at this MSRP path, without SIP).
    pub fn handle_join(
        &mut self,
        conference: String,
        participant: String,
        target: String,
        display: Option<String>,
        direct: Option<Vec<Uri>>,
        now: Instant,
    ) {
        crate::runtime::fault::inject("core", conference.as_bytes());
        let joined =
            self.shared
                .roster
                .join(&conference, &participant, &target, display.as_deref());
        match joined {
            Ok(Joined::New { .. }) => {
                self.log(
                    Level::Info,
                    format_args!("{participant:?} joined conference {conference:?} ({target})"),
                );
                if let Some(u) = direct {
                    self.direct
                        .insert((conference.clone(), participant.clone()), u);
                }
                self.offer_earlier_files(&conference, &participant, now);
            }
            Ok(Joined::Already { .. }) => {
                if let Some(u) = direct {
                    self.direct.insert((conference, participant), u);
                }
            }
            Err(e) => self.log(
                Level::Warn,
                format_args!("join of {participant:?} to {conference:?} refused: {e}"),
            ),
        }
    }

    /// The conference's earlier files for a participant who just joined: all of them with
    /// `offer_to_late_joiners`; files restored after a restart also to those they were offered
    /// to before it; never a restored file to someone who received it.
    fn offer_earlier_files(&mut self, conference: &str, participant: &str, now: Instant) {
        for t in self.shared.roster.transfer_heads_of(conference) {
            let usable = matches!(
                t.state,
                TransferState::Complete { .. } | TransferState::Receiving
            );
            if usable
                && is_for(t.to.as_deref(), participant)
                && self.files.contains_key(&t.id)
                && self.offers_earlier(t.id, participant)
            {
                self.deliver(t.id, participant, now);
            }
        }
    }

    /// Whether a participant who was not there when `t` was uploaded is offered it.
    fn offers_earlier(&self, t: TransferId, participant: &str) -> bool {
        let late = self.cfg.offer_to_late_joiners;
        match self.tracked.get(&t).filter(|x| x.restored) {
            Some(x) => {
                !x.delivered.contains(participant) && (late || x.recipients.contains(participant))
            }
            None => late,
        }
    }

    /// A complete file of an earlier run, its SHA-1 checked: back in the roster (its
    /// conference takes it at its first join) and offered to the participants already there.
    pub fn handle_restore(&mut self, rec: Record, file: Arc<SpoolFile>, now: Instant) {
        let restored = RestoredTransfer {
            conference: rec.conference.clone(),
            name: rec.name.clone(),
            content_type: rec.content_type.clone(),
            size: rec.size,
            sha1: rec.sha1,
            created_ms: rec.created_ms,
            changed_ms: rec.changed_ms,
            to: rec.to.clone(),
        };
        let id = match self.shared.roster.restore_transfer(&restored) {
            Ok(id) => id,
            Err(e) => {
                self.log(
                    Level::Warn,
                    format_args!(
                        "file {:?} of conference {:?} ({}) not restored: {e}; removed",
                        rec.name, rec.conference, rec.spool
                    ),
                );
                self.actions.push_back(Action::Unspool(file));
                self.actions.push_back(Action::Forget(rec.spool));
                return;
            }
        };
        self.log(
            Level::Info,
            format_args!(
                "transfer {id}: {:?} ({} bytes) of conference {:?} restored from {} \
                 ({} received it before the restart)",
                rec.name,
                rec.size,
                rec.conference,
                rec.spool,
                rec.delivered.len()
            ),
        );
        self.files.insert(id, file);
        self.tracked.insert(
            id,
            Tracked {
                spool: rec.spool,
                sender: rec.sender,
                recipients: rec.recipients,
                delivered: rec.delivered,
                restored: true,
                dirty: false,
            },
        );
        for p in self.shared.roster.participants(&rec.conference) {
            if is_for(rec.to.as_deref(), &p.key) && self.offers_earlier(id, &p.key) {
                self.deliver(id, &p.key, now);
            }
        }
    }

    /// A complete upload: its record goes to the disk (`spool_persist`).
    fn track(&mut self, t: &TransferSnapshot) {
        let Some(file) = self.files.get(&t.id) else {
            return;
        };
        let recipients = t.deliveries.iter().map(|d| d.participant.clone());
        let delivered = t
            .deliveries
            .iter()
            .filter(|d| d.state == DeliveryState::Done)
            .map(|d| d.participant.clone());
        let tracked = Tracked {
            spool: file.name().to_owned(),
            sender: self.cfg.sender_uri.clone(),
            recipients: recipients.collect(),
            delivered: delivered.collect(),
            restored: false,
            dirty: true,
        };
        self.tracked.insert(t.id, tracked);
        self.write_record(t.id);
    }

    /// Asks for the record of `t` to be written as it stands now.
    fn write_record(&mut self, id: TransferId) {
        let Some(x) = self.tracked.get_mut(&id) else {
            return;
        };
        x.dirty = false;
        let (Some(t), Some(file)) = (self.shared.roster.transfer(id), self.files.get(&id)) else {
            return;
        };
        let SpoolState::Complete { size, sha1 } = file.state() else {
            return;
        };
        let changed_ms = t
            .deliveries
            .iter()
            .map(|d| d.updated_at_ms)
            .fold(t.updated_at_ms, u64::max);
        let rec = Record {
            spool: x.spool.clone(),
            conference: t.conference,
            name: t.name,
            content_type: t.content_type,
            size,
            sha1,
            sender: x.sender.clone(),
            created_ms: t.created_at_ms,
            changed_ms,
            recipients: x.recipients.clone(),
            delivered: x.delivered.clone(),
            to: t.to,
        };
        self.actions
            .push_back(Action::Record(Box::new(rec), file.clone()));
    }

    /// Rewrites the records whose recipients or deliveries changed.
    fn write_dirty_records(&mut self) {
        let dirty: Vec<TransferId> = self
            .tracked
            .iter()
            .filter(|(_, x)| x.dirty)
            .map(|(t, _)| *t)
            .collect();
        for t in dirty {
            self.write_record(t);
        }
    }

    /// The file of `t` goes: so does its record.
    fn forget(&mut self, t: TransferId) {
        if let Some(x) = self.tracked.remove(&t) {
            self.actions.push_back(Action::Forget(x.spool));
        }
    }

    /// A participant left: its deliveries stop; the conference's files go when it ends.
    pub fn handle_leave(&mut self, conference: &str, participant: &str) {
        let Left::Left { cancelled, ended } = self.shared.roster.leave(conference, participant)
        else {
            return;
        };
        self.log(
            Level::Info,
            format_args!("{participant:?} left conference {conference:?}"),
        );
        self.direct
            .remove(&(conference.to_string(), participant.to_string()));
        for d in cancelled {
            self.abort_delivery(d, "participant left the conference");
        }
        if let Some(ended) = ended {
            self.log(Level::Info, format_args!("conference {:?} ended", ended.id));
            for t in ended.transfers {
                if let Some(f) = self.files.remove(&t) {
                    self.actions.push_back(Action::Unspool(f));
                }
                self.forget(t);
            }
        }
    }

    /// The file INVITE was answered 2xx with `body`.
    pub fn handle_answered(&mut self, d: DeliveryId, body: &str, now: Instant) {
        let Some(l) = self.live.get_mut(&d) else {
            // Left or cancelled meanwhile: the dialog still needs its BYE.
            self.signal(Signal::Bye { delivery: d });
            return;
        };
        l.sip = Sip::Answered;
        let transfer = l.transfer;
        let answer = match sdp::parse_answer_with(body, self.cfg.max_path_uris) {
            Ok(a) => a,
            Err(e) => {
                self.fail(d, Some(488), format!("unusable SDP answer: {e}"));
                return;
            }
        };
        // Direction, a=max-size and TLS are settled here, before any socket exists: a refused
        // answer never sees a byte, in clear or otherwise.
        if let Err(refusal) =
            answer.check_delivery(self.known_size(transfer), self.tls_capability())
        {
            self.fail(d, Some(488), refusal.to_string());
            return;
        }
        if !answer.transport_consistent() {
            self.log(
                Level::Info,
                format_args!(
                    "delivery {d}: the answer mixes TLS and plain in its m= line and a=path; \
                     treated as TLS"
                ),
            );
        }
        if !self.range_taken(d, transfer, answer.file_range.as_deref(), now) {
            return;
        }
        let Some(l) = self.live.get_mut(&d) else {
            return;
        };
        if answer.requires_tls() {
            l.tls = Some(answer.fingerprints.clone());
            l.tls_host = Some(answer.peer.host.clone());
        }
        if answer.setup == sdp::Setup::Active {
            // The participant connects to us; its first frame names our session (known to the
            // listener before the status says `connecting`).
            l.accept_deadline = Some(now + Duration::from_millis(self.cfg.connect_timeout_ms));
            self.awaited.lock().insert(l.session_id.clone(), d);
        }
        let _ = self
            .shared
            .roster
            .set_delivery_state(d, DeliveryState::Connecting);
        if answer.setup == sdp::Setup::Active {
            return;
        }
        self.dial(d, answer.path, now);
    }

    /// A re-offer with `a=file-range` was answered: true when the delivery goes on in this
    /// session. RFC 5547 §8: an answerer that takes the range repeats it; one that does not know
    /// the attribute ignores it (SDP ignores unknown attributes) and so has accepted the file as
    /// its `a=file-selector` describes it — the whole file, which it then gets in this session
    /// from byte 1. An answer naming another range asked for something that was not offered: that
    /// session ends (BYE) and the participant gets a fresh offer of the whole file, without a
    /// range.
    fn range_taken(
        &mut self,
        d: DeliveryId,
        transfer: TransferId,
        answered: Option<&str>,
        now: Instant,
    ) -> bool {
        let size = self.complete_size(transfer).unwrap_or(0);
        let Some(l) = self.live.get_mut(&d) else {
            return false;
        };
        if l.offset == 0 {
            return true;
        }
        let start = l.offset + 1;
        match answered.map(sdp::parse_file_range) {
            None => {
                l.offset = 0;
                self.shared.roster.set_resumed_from(d, None);
                self.log(
                    Level::Info,
                    format_args!(
                        "delivery {d}: the answer has no a=file-range: sending the whole file \
                         from byte 1"
                    ),
                );
                true
            }
            Some(Some((s, stop))) if s == start && stop.is_none_or(|e| e == size) => true,
            Some(_) => {
                let Some(l) = self.live.remove(&d) else {
                    return false;
                };
                self.log(
                    Level::Info,
                    format_args!(
                        "delivery {d}: the answer's a=file-range:{} is not the {start}-{size} \
                         offered: ending that session, the whole file goes in a fresh offer",
                        answered.unwrap_or_default()
                    ),
                );
                self.awaited.lock().remove(&l.session_id);
                self.signal(Signal::Bye { delivery: d });
                if let Ok(Some(attempt)) = self.shared.roster.retry_delivery(d, None) {
                    self.retries.insert(
                        d,
                        Retry {
                            at: now,
                            transfer: l.transfer,
                            participant: l.participant,
                            offset: 0,
                            attempt,
                        },
                    );
                }
                false
            }
        }
    }

    /// Whether a delivery that just failed is offered again (and the back-off is scheduled):
    /// its connection dropped (not a refusal, not a timeout) after some bytes were confirmed, it
    /// is a SIP participant's (the range needs an SDP offer), the file is complete and still
    /// spooled, and `resume_retries` allows another attempt. `Err` with the words to add to the
    /// failure's reason when only the retries are used up.
    fn resume_after_drop(
        &mut self,
        d: DeliveryId,
        l: &Live,
        reason: &str,
        now: Instant,
    ) -> Result<bool, String> {
        let acked = l.progress.acked.load(Ordering::Acquire);
        let Some(size) = self.complete_size(l.transfer) else {
            return Ok(false);
        };
        let dropped = l.progress.dropped.load(Ordering::Acquire);
        let live_in_roster = self.shared.roster.is_live(d);
        if !dropped || acked == 0 || acked >= size || l.sip != Sip::Answered || !live_in_roster {
            return Ok(false);
        }
        let allowed = u32::try_from(self.cfg.resume_retries).unwrap_or(u32::MAX);
        if allowed == 0 {
            return Ok(false);
        }
        if l.attempt > allowed {
            return Err(format!(
                " (gave up after {} attempts: resume_retries is {allowed})",
                l.attempt
            ));
        }
        let Ok(Some(attempt)) = self.shared.roster.retry_delivery(d, Some(acked)) else {
            return Ok(false);
        };
        let wait = self
            .cfg
            .resume_backoff_ms
            .saturating_mul(u64::from(l.attempt));
        self.log(
            Level::Warn,
            format_args!(
                "delivery {d}: transfer {} to {:?}: {reason}; offering it again in {wait} ms \
                 from byte {} (attempt {attempt} of {})",
                l.transfer,
                l.participant,
                acked + 1,
                allowed + 1
            ),
        );
        self.retries.insert(
            d,
            Retry {
                at: now + Duration::from_millis(wait),
                transfer: l.transfer,
                participant: l.participant.clone(),
                offset: acked,
                attempt,
            },
        );
        Ok(true)
    }

    /// Re-offers whose back-off is over.
    fn fire_retries(&mut self, now: Instant) {
        let due: Vec<DeliveryId> = self
            .retries
            .iter()
            .filter(|(_, r)| now >= r.at)
            .map(|(d, _)| *d)
            .collect();
        for d in due {
            let Some(r) = self.retries.remove(&d) else {
                continue;
            };
            if !self.shared.roster.is_live(d) {
                continue;
            }
            let t = self
                .shared
                .roster
                .transfer(r.transfer)
                .filter(|_| self.files.contains_key(&r.transfer));
            let Some(t) = t else {
                let reason = "file no longer spooled when it was to be offered again".to_string();
                self.log(Level::Warn, format_args!("delivery {d} failed: {reason}"));
                let _ = self
                    .shared
                    .roster
                    .set_delivery_state(d, DeliveryState::Failed { reason, code: None });
                continue;
            };
            if r.offset > 0 {
                self.log(
                    Level::Info,
                    format_args!(
                        "delivery {d}: resuming transfer {} to {:?} from byte {} ({} bytes kept \
                         from the dropped attempt; attempt {})",
                        r.transfer,
                        r.participant,
                        r.offset + 1,
                        r.offset,
                        r.attempt
                    ),
                );
            } else {
                self.log(
                    Level::Info,
                    format_args!(
                        "delivery {d}: offering transfer {} to {:?} again, the whole file \
                         (attempt {})",
                        r.transfer, r.participant, r.attempt
                    ),
                );
            }
            self.start_attempt(d, &t, &r.participant, r.attempt, r.offset, now);
        }
    }

    /// The file INVITE failed with this SIP code.
    pub fn handle_rejected(&mut self, d: DeliveryId, code: u16) {
        if let Some(l) = self.live.get_mut(&d) {
            l.sip = Sip::Gone;
            self.fail(d, Some(code), format!("file INVITE rejected with {code}"));
        }
    }

    /// The file session's dialog ended (BYE from the participant, or ours completed).
    pub fn handle_ended(&mut self, d: DeliveryId) {
        let Some(l) = self.live.get_mut(&d) else {
            return;
        };
        if l.attempt > 1 && matches!(l.sip, Sip::Offered { .. }) {
            // The end of the previous attempt's dialog (hosts report it after our BYE), late:
            // this attempt's INVITE is not answered yet, so it cannot be this one's.
            return;
        }
        l.sip = Sip::Gone;
        if l.on_io {
            self.actions.push_back(Action::Abort {
                delivery: d,
                reason: "file session ended by the participant".into(),
            });
        } else {
            self.fail(d, None, "file session ended before it started".into());
        }
    }

    /// An upload started: every participant of its conference is offered the file.
    pub fn handle_new_transfer(
        &mut self,
        transfer: TransferId,
        file: Arc<SpoolFile>,
        now: Instant,
    ) {
        self.files.insert(transfer, file);
        if self.shared.cancelled.lock().contains(&transfer) {
            // Cancelled before the engine got to it: nobody is offered the file.
            self.unspool(transfer);
            return;
        }
        let Some(t) = self.shared.roster.transfer(transfer) else {
            return;
        };
        for p in self.shared.roster.participants(&t.conference) {
            // A file for chosen participants goes to them only.
            if is_for(t.to.as_deref(), &p.key) {
                self.deliver(transfer, &p.key, now);
            }
        }
    }

    /// An upload ended (its state is in the roster): deliveries not yet on the wire end here if
    /// it failed; those on it see the spool state and send `#`.
    pub fn handle_upload_ended(&mut self, transfer: TransferId) {
        let Some(t) = self.shared.roster.transfer(transfer) else {
            return;
        };
        self.log(
            Level::Info,
            format_args!(
                "transfer {transfer}: upload {} ({} bytes)",
                t.state.name(),
                t.size
            ),
        );
        if matches!(t.state, TransferState::Complete { .. }) && self.cfg.spool_persist {
            self.track(&t);
        }
        if !t.state.is_finished() || matches!(t.state, TransferState::Complete { .. }) {
            return;
        }
        let pending: Vec<DeliveryId> = self
            .live
            .iter()
            .filter(|(_, l)| l.transfer == transfer && !l.on_io)
            .map(|(d, _)| *d)
            .collect();
        for d in pending {
            self.fail(d, None, "upload aborted".into());
        }
        // A failed upload can never be delivered: its file goes now, not when the roster
        // forgets the transfer (hours later), so its descriptor closes and its bytes leave the
        // quota as soon as the deliveries already reading it have stopped (issue 14 #7).
        self.unspool(transfer);
    }

    /// Drops the core's reference to a transfer's spool file and removes it from the spool.
    fn unspool(&mut self, transfer: TransferId) {
        if let Some(f) = self.files.remove(&transfer) {
            self.actions.push_back(Action::Unspool(f));
        }
        self.forget(transfer);
    }

    /// A transfer is cancelled: each of its deliveries is aborted.
    pub fn handle_cancel(&mut self, transfer: TransferId) {
        let Some(t) = self.shared.roster.transfer(transfer) else {
            return;
        };
        self.log(Level::Info, format_args!("transfer {transfer}: cancelled"));
        for d in t.deliveries {
            if let Ok(true) = self
                .shared
                .roster
                .set_delivery_state(d.id, DeliveryState::Cancelled)
            {
                self.abort_delivery(d.id, "transfer cancelled");
            }
        }
        // Nobody is offered a cancelled file any more (late joiners neither).
        self.unspool(transfer);
    }

    /// A connection to the delivery's peer is being established from `local` (our end). `None`
    /// when the delivery ended meanwhile: the driver closes the socket.
    pub fn handle_dialed(
        &mut self,
        d: DeliveryId,
        to_path: &[Uri],
        local: Option<SocketAddr>,
        now: Instant,
    ) -> Option<Attach> {
        let l = self.live.get_mut(&d)?;
        l.dialing = None;
        let mut l_uri = l.local_uri.clone();
        // Our From-Path must name our end of the connection: relays (Kamailio's msrp.so) send
        // REPORTs back to the host:port of our URI. When the listen port could not be used (a
        // second connection to the same relay would repeat the first one's address 4-tuple),
        // name the port actually used — where no SDP a=path promised the listen port: direct
        // deliveries and paths through a relay.
        if matches!(l.sip, Sip::Direct) || to_path.len() > 1 {
            if let Some(a) = local.filter(|a| a.port() != l_uri.effective_port()) {
                l_uri.port = Some(a.port());
            }
        }
        self.attach(d, true, to_path, l_uri, None, now)
    }

    /// Whether delivery `d` still waits for its outgoing connection (a resolution finishing
    /// after the deadline is not worth a connection).
    pub fn dialing(&self, d: DeliveryId) -> bool {
        self.live.get(&d).is_some_and(|l| l.dialing.is_some())
    }

    /// Name resolution or the connection attempt failed.
    pub fn handle_dial_failed(&mut self, d: DeliveryId, reason: String) {
        if self.live.contains_key(&d) {
            self.fail(d, None, reason);
        }
    }

    /// The participant connected to us and its first frame named this delivery's session.
    /// `None` when the delivery ended meanwhile: the driver closes the socket.
    /// `tls`: the connection's TLS stream when it is TLS; it is checked here against the answer
    /// (its host, its `a=fingerprint`) before anything is sent on it.
    pub fn handle_accepted(
        &mut self,
        d: DeliveryId,
        first: Message,
        tls: Option<&crate::tls::TlsStream>,
        now: Instant,
    ) -> Option<Attach> {
        let l = self.live.get(&d)?;
        // The listener took the session out already; one connection per session.
        self.awaited.lock().remove(&l.session_id);
        if let Some(fingerprints) = l.tls.clone() {
            let Some(stream) = tls else {
                self.fail(
                    d,
                    None,
                    "the participant connected without TLS although its answer asked for msrps"
                        .into(),
                );
                return None;
            };
            let host = l.tls_host.clone();
            let checked = match (&self.tls, host) {
                (Some(ours), Some(host)) => ours.check_accepted(stream, &host, &fingerprints),
                _ => Err(crate::tls::TlsError::NotConfigured {
                    what: "msrp_tls is off",
                }),
            };
            if let Err(e) = checked {
                self.fail(d, None, format!("TLS: {e}"));
                return None;
            }
        }
        let l = self.live.get(&d)?;
        // The peer's From-Path is our To-Path (RFC 4975 §7.2).
        let to_path: Vec<Uri> = first.from_path.clone();
        let l_uri = l.local_uri.clone();
        self.attach(d, false, &to_path, l_uri, Some(first), now)
    }

    /// A delivery connection on the I/O pool ended.
    pub fn handle_outcome(&mut self, d: DeliveryId, o: DeliveryOutcome, now: Instant) {
        let Some(l) = self.live.remove(&d) else {
            return;
        };
        self.awaited.lock().remove(&l.session_id);
        let state = match o {
            DeliveryOutcome::Completed => {
                if let Some(x) = self.tracked.get_mut(&l.transfer) {
                    x.dirty |= x.delivered.insert(l.participant.clone());
                }
                let total = self.files.get(&l.transfer).map(|f| f.len());
                self.log(
                    Level::Info,
                    format_args!(
                        "delivery {d}: transfer {} delivered to {:?} ({} bytes, MSRP window up \
                         to {} bytes, {} body bytes sent with sendfile)",
                        l.transfer,
                        l.participant,
                        total.unwrap_or_default(),
                        l.progress.max_window.load(Ordering::Relaxed),
                        l.progress.spool_sent.load(Ordering::Relaxed)
                    ),
                );
                DeliveryState::Done
            }
            DeliveryOutcome::Failed { code, mut reason } => {
                match self.resume_after_drop(d, &l, &reason, now) {
                    Ok(true) => {
                        if l.sip == Sip::Answered {
                            self.signal(Signal::Bye { delivery: d });
                        }
                        return;
                    }
                    Ok(false) => {}
                    Err(gave_up) => reason.push_str(&gave_up),
                }
                // The roster keeps the bytes of the last progress copy (every tick): give it the
                // I/O thread's final count, so "failed after N bytes" is exact.
                self.publish_progress_of(d, &l, true);
                // Cancelled, or forgotten: its conference ended meanwhile (the last participant
                // left), which cancelled it too.
                let cancelled = self
                    .shared
                    .roster
                    .delivery(d)
                    .is_none_or(|s| s.state == DeliveryState::Cancelled);
                self.log(
                    if cancelled { Level::Info } else { Level::Warn },
                    format_args!(
                        "delivery {d}: transfer {} to {:?} {}: {reason}",
                        l.transfer,
                        l.participant,
                        if cancelled { "cancelled" } else { "failed" }
                    ),
                );
                DeliveryState::Failed {
                    reason,
                    code: code.filter(|c| *c != 0),
                }
            }
        };
        let _ = self.shared.roster.set_delivery_state(d, state);
        if l.sip == Sip::Answered {
            self.signal(Signal::Bye { delivery: d });
        }
    }

    /// Time passed: deliveries past their deadline fail; progress is copied to the roster.
    pub fn handle_tick(&mut self, now: Instant) {
        let expired: Vec<(DeliveryId, String)> = self
            .live
            .iter()
            .filter_map(|(d, l)| {
                let (t, reason) = l.deadline()?;
                (now >= t).then(|| (*d, reason.to_owned()))
            })
            .collect();
        for (d, reason) in expired {
            self.fail(d, Some(408), reason);
        }
        self.fire_retries(now);
        self.publish_progress();
        self.prune_forgotten();
        self.write_dirty_records();
    }

    /// The size of a transfer's spooled file once it is complete.
    fn complete_size(&self, t: TransferId) -> Option<u64> {
        match self.files.get(&t)?.state() {
            SpoolState::Complete { size, .. } => Some(size),
            _ => None,
        }
    }

    fn publish_progress(&self) {
        for (d, l) in &self.live {
            self.publish_progress_of(*d, l, false);
        }
        for (t, f) in &self.files {
            if matches!(f.state(), SpoolState::Writing) {
                let _ = self.shared.roster.set_transfer_size(*t, f.len());
            }
        }
    }

    /// Copies one delivery's acknowledged byte count to the roster: while it is sending, or
    /// (`last`) once its I/O thread finished it with bytes confirmed.
    fn publish_progress_of(&self, d: DeliveryId, l: &Live, last: bool) {
        let bytes = l.progress.acked.load(Ordering::Acquire);
        let sending = l.progress.phase.load(Ordering::Acquire) == PHASE_SENDING;
        if !l.on_io || !(sending || last && bytes > 0) {
            return;
        }
        let total = self.complete_size(l.transfer);
        let _ = self
            .shared
            .roster
            .set_delivery_state(d, DeliveryState::Sending { bytes, total });
    }

    /// Finished transfers the roster forgot (age, count, cancelled): their spool files go.
    fn prune_forgotten(&mut self) {
        for t in self.shared.roster.prune() {
            if let Some(f) = self.files.remove(&t) {
                self.actions.push_back(Action::Unspool(f));
            }
            self.forget(t);
            self.shared.cancelled.lock().remove(&t);
        }
    }

    /// The engine stops: every delivery fails; every spool file goes but the complete files
    /// with a record (`spool_persist`), whose records are brought up to date.
    pub fn handle_stop(&mut self) {
        let ds: Vec<DeliveryId> = self.live.keys().copied().collect();
        for d in ds {
            self.fail(d, Some(503), "engine stopped".into());
        }
        for (d, _) in self.retries.drain() {
            let _ = self.shared.roster.set_delivery_state(
                d,
                DeliveryState::Failed {
                    reason: "engine stopped while waiting to offer the file again".into(),
                    code: Some(503),
                },
            );
        }
        self.write_dirty_records();
        let kept = self.tracked.len();
        for (t, f) in self.files.drain() {
            if !self.tracked.contains_key(&t) {
                self.actions.push_back(Action::Unspool(f));
            }
        }
        self.tracked.clear();
        if kept > 0 {
            self.log(
                Level::Info,
                format_args!("complete files kept in the spool for the next start: {kept}"),
            );
        }
    }

    /// Aborts a delivery that the roster already marked cancelled (or that is being cancelled).
    fn abort_delivery(&mut self, d: DeliveryId, reason: &str) {
        if let Some(r) = self.retries.remove(&d) {
            self.log(
                Level::Info,
                format_args!(
                    "delivery {d}: transfer {} to {:?} cancelled while waiting to be offered \
                     again: {reason}",
                    r.transfer, r.participant
                ),
            );
            return;
        }
        let Some(l) = self.live.get(&d) else {
            return;
        };
        if l.on_io {
            self.actions.push_back(Action::Abort {
                delivery: d,
                reason: reason.into(),
            });
        } else if let Some(l) = self.live.remove(&d) {
            // Not yet on an I/O thread: no outcome will come from there, so its end is logged
            // here (every delivery's log ends with a line of its own).
            self.log(
                Level::Info,
                format_args!(
                    "delivery {d}: transfer {} to {:?} cancelled: {reason}",
                    l.transfer, l.participant
                ),
            );
            self.awaited.lock().remove(&l.session_id);
            if l.sip.owes_bye() {
                self.signal(Signal::Bye { delivery: d });
            }
        }
    }

    fn fail(&mut self, d: DeliveryId, code: Option<u16>, reason: String) {
        self.log(Level::Warn, format_args!("delivery {d} failed: {reason}"));
        let _ = self
            .shared
            .roster
            .set_delivery_state(d, DeliveryState::Failed { reason, code });
        let Some(l) = self.live.remove(&d) else {
            return;
        };
        self.awaited.lock().remove(&l.session_id);
        if l.on_io {
            self.actions.push_back(Action::Abort {
                delivery: d,
                reason: "failed".into(),
            });
        }
        if l.sip.owes_bye() {
            self.signal(Signal::Bye { delivery: d });
        }
    }

    /// A new session id and our URI for it (`msrps` when the session is to be TLS).
    fn local_uri(&mut self, secure: bool) -> (Bytes, Uri) {
        let session_id = self.ids.session_id();
        let text = format!(
            "{}://{}:{}/{};tcp",
            if secure { "msrps" } else { "msrp" },
            self.advertise_host,
            self.advertise_port,
            String::from_utf8_lossy(&session_id)
        );
        let uri = match Uri::parse_slice(text.as_bytes()) {
            Ok(u) => u,
            Err(_) => Uri {
                secure,
                userinfo: None,
                host: Host::Name(Bytes::from(self.advertise_host.clone())),
                port: Some(self.advertise_port),
                session_id: session_id.clone(),
                transport: Bytes::from_static(b"tcp"),
                params: Vec::new(),
            },
        };
        (session_id, uri)
    }

    /// Starts the delivery of `transfer` to `participant`: an offer through the host, or a
    /// direct connection.
    fn deliver(&mut self, transfer: TransferId, participant: &str, now: Instant) {
        // A file a participant sent to the room (offer_in) never goes back to that participant.
        if self.shared.roster.transfer_sender(transfer).as_deref() == Some(participant) {
            return;
        }
        let (d, fresh) = match self.shared.roster.add_delivery(transfer, participant) {
            Ok(x) => x,
            Err(e) => {
                self.log(Level::Warn, format_args!("no delivery: {e}"));
                return;
            }
        };
        if !fresh || self.live.contains_key(&d) || self.retries.contains_key(&d) {
            return;
        }
        if let Some(x) = self.tracked.get_mut(&transfer) {
            x.dirty |= x.recipients.insert(participant.to_owned());
        }
        let Some(t) = self.shared.roster.transfer_head(transfer) else {
            return;
        };
        self.start_attempt(d, &t, participant, 1, 0, now);
    }

    /// One attempt of delivery `d`: its offer through the host (with `a=file-range` for the
    /// bytes after `offset` when above 0), or a direct connection.
    fn start_attempt(
        &mut self,
        d: DeliveryId,
        t: &TransferSnapshot,
        participant: &str,
        attempt: u32,
        offset: u64,
        now: Instant,
    ) {
        let transfer = t.id;
        let key = (t.conference.clone(), participant.to_string());
        let direct = self.direct.get(&key).cloned();
        let secure = match &direct {
            Some(path) => path.first().is_some_and(|u| u.secure),
            None => self.cfg.msrp_tls && self.tls.is_some(),
        };
        let (session_id, local_uri) = self.local_uri(secure);
        let sip = match direct {
            Some(_) => Sip::Direct,
            None => Sip::Offered {
                deadline: now + Duration::from_millis(self.cfg.answer_timeout_ms),
            },
        };
        self.live.insert(
            d,
            Live {
                transfer,
                participant: participant.to_string(),
                session_id,
                local_uri: local_uri.clone(),
                sip,
                progress: Arc::new(Progress::default()),
                on_io: false,
                accept_deadline: None,
                tls: None,
                tls_host: None,
                dialing: None,
                attempt,
                offset,
            },
        );
        match direct {
            Some(uri) => {
                if let Some(l) = self.live.get_mut(&d) {
                    // A direct msrps URI: TLS with `host` verification (no SDP, no fingerprint).
                    l.tls = uri.first().filter(|u| u.secure).map(|_| Vec::new());
                }
                let _ = self
                    .shared
                    .roster
                    .set_delivery_state(d, DeliveryState::Connecting);
                self.dial(d, uri, now);
            }
            None => self.offer(d, t, participant, local_uri),
        }
    }

    /// Asks the host to send the file INVITE of delivery `d`.
    fn offer(&mut self, d: DeliveryId, t: &TransferSnapshot, participant: &str, path: Uri) {
        let target = self
            .shared
            .roster
            .participants(&t.conference)
            .into_iter()
            .find(|p| p.key == participant)
            .map(|p| p.target);
        let Some(target) = target else {
            self.fail(d, None, "participant has no target".into());
            return;
        };
        let body = self.offer_sdp(d, t, path);
        let _ = self
            .shared
            .roster
            .set_delivery_state(d, DeliveryState::Offering);
        self.log(
            Level::Info,
            format_args!(
                "delivery {d}: offering transfer {} to {participant:?} at {target}",
                t.id
            ),
        );
        self.signal(Signal::Offer {
            delivery: d,
            target_uri: target,
            sdp: body,
            sender_uri: self
                .tracked
                .get(&t.id)
                .map(|x| x.sender.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| self.cfg.sender_uri.clone()),
        });
    }

    fn offer_sdp(&mut self, d: DeliveryId, t: &TransferSnapshot, path: Uri) -> String {
        let sha1 = match self.files.get(&t.id).map(|f| f.state()) {
            Some(SpoolState::Complete { sha1, .. }) => Some(sha1),
            _ => None,
        };
        let size = match &t.state {
            TransferState::Complete { .. } => Some(t.size),
            _ => t.declared_size,
        };
        let offer = sdp::FileOffer {
            name: t.name.clone(),
            content_type: if t.content_type.is_empty() {
                "application/octet-stream".into()
            } else {
                t.content_type.clone()
            },
            size,
            sha1,
            file_transfer_id: String::from_utf8_lossy(&self.ids.message_id()).into_owned(),
            disposition: "attachment".into(),
            description: None,
            // The bytes the participant lacks, when it kept some from a dropped attempt.
            file_range: self
                .live
                .get(&d)
                .filter(|l| l.offset > 0)
                .zip(size)
                .map(|(l, size)| (l.offset + 1, size)),
        };
        let address = match self.advertise_host.trim_matches(['[', ']']).parse() {
            Ok(a) => a,
            Err(_) => self.msrp_addr.ip(),
        };
        let params = sdp::OfferParams {
            // Unique per offer of this engine run: each delivery is a new SDP session.
            session_version: d.0,
            origin_user: "msrpcast".into(),
            address,
            port: self.advertise_port,
            path,
            accept_types: self.cfg.accept_types.clone(),
            max_size: None,
        };
        match &self.tls {
            Some(tls) if self.cfg.msrp_tls => {
                sdp::build_offer_tls(&params, &offer, tls.fingerprint().as_ref())
            }
            _ => sdp::build_offer(&params, &offer),
        }
    }

    /// The file's size when known: complete in the spool, else as declared by the upload.
    fn known_size(&self, transfer: TransferId) -> Option<u64> {
        if let Some(SpoolState::Complete { size, .. }) =
            self.files.get(&transfer).map(|f| f.state())
        {
            return Some(size);
        }
        self.shared
            .roster
            .transfer(transfer)
            .and_then(|t| match t.state {
                TransferState::Complete { .. } => Some(t.size),
                _ => t.declared_size,
            })
    }

    /// Asks the driver to connect to `to_path`'s first URI, within `connect_timeout_ms`.
    fn dial(&mut self, d: DeliveryId, to_path: Vec<Uri>, now: Instant) {
        if to_path.is_empty() {
            self.fail(d, None, "empty MSRP path".into());
            return;
        }
        let tls_asked = to_path[0].secure || self.live.get(&d).is_some_and(|l| l.tls.is_some());
        if tls_asked && self.tls.is_none() {
            self.fail(
                d,
                None,
                format!(
                    "{} is msrps but TLS is not configured (msrp_tls)",
                    to_path[0]
                ),
            );
            return;
        }
        if let Some(l) = self.live.get_mut(&d) {
            let ms = self.cfg.connect_timeout_ms;
            let reason = format!("no connection to {} within {ms} ms", to_path[0]);
            l.dialing = Some((now + Duration::from_millis(ms), reason));
        }
        self.actions.push_back(Action::Dial {
            delivery: d,
            to_path,
        });
    }

    fn sender_for(
        &mut self,
        l_uri: &Uri,
        to_path: &[Uri],
        t: TransferId,
        now: Instant,
    ) -> MsrpSender {
        // A relay (Kamailio's refuses bodies over 10,240 bytes) sits on any path longer than the
        // participant's own URI; a direct path takes larger chunks.
        let chunk = if to_path.len() > 1 {
            self.cfg.chunk_bytes
        } else {
            self.cfg.direct_chunk_bytes
        };
        let cfg = SenderConfig {
            chunk_bytes: usize::try_from(chunk).unwrap_or(usize::MAX),
            window_bytes: self.cfg.window_bytes,
            max_window_bytes: self.cfg.max_window_bytes,
            transaction_timeout: Duration::from_millis(self.cfg.transaction_timeout_ms),
            report_timeout: Duration::from_millis(self.cfg.report_timeout_ms),
            success_report: self.cfg.success_report,
            bind_with_empty_send: self.cfg.bind_empty_send,
            max_report_ranges: self.cfg.msrp_max_report_ranges,
            ..SenderConfig::default()
        };
        let transfer = self.shared.roster.transfer_head(t);
        let ct = transfer
            .as_ref()
            .map(|t| t.content_type.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into());
        let sender = MsrpSender::new(
            cfg,
            to_path,
            std::slice::from_ref(l_uri),
            Bytes::from(ct),
            &mut self.ids,
            now,
        );
        // The offered name travels in the chunks too, for receivers that never see the SDP.
        match transfer.filter(|t| !t.name.is_empty()) {
            Some(t) => {
                sender.with_disposition(Bytes::from(crate::msrp::disposition::attachment(&t.name)))
            }
            None => sender,
        }
    }

    /// The delivery's connection exists: everything the I/O pool needs to run it.
    fn attach(
        &mut self,
        d: DeliveryId,
        connecting: bool,
        to_path: &[Uri],
        l_uri: Uri,
        first: Option<Message>,
        now: Instant,
    ) -> Option<Attach> {
        let transfer = self.live.get(&d)?.transfer;
        let Some(file) = self.files.get(&transfer).cloned() else {
            self.fail(d, None, "file no longer spooled".into());
            return None;
        };
        let offset = self.live.get(&d)?.offset;
        let sender = self
            .sender_for(&l_uri, to_path, transfer, now)
            .start_at(offset);
        let l = self.live.get_mut(&d)?;
        l.on_io = true;
        l.progress.acked.store(offset, Ordering::Release);
        let tls = match (&l.tls, to_path.first()) {
            (Some(fingerprints), Some(peer)) if connecting => Some(TlsTarget {
                host: peer.host.clone(),
                fingerprints: fingerprints.clone(),
            }),
            _ => None,
        };
        Some(Attach {
            delivery: d,
            connecting,
            sender,
            file,
            progress: l.progress.clone(),
            local_path: writer::render_path(std::slice::from_ref(&l_uri)),
            peer_path: writer::render_path(to_path),
            first,
            tls,
        })
    }
}

/// The host and port for our `a=path` URIs: `msrp_advertise` when set, else the listen address.
pub(super) fn advertise(cfg: &Config, bound: SocketAddr) -> (String, u16) {
    match &cfg.msrp_advertise {
        Some(a) => {
            let host = if a.host.contains(':') {
                format!("[{}]", a.host)
            } else {
                a.host.clone()
            };
            (host, a.port.unwrap_or(bound.port()))
        }
        None => match bound {
            SocketAddr::V4(v) => (v.ip().to_string(), v.port()),
            SocketAddr::V6(v) => (format!("[{}]", v.ip()), v.port()),
        },
    }
}

/// Whether a file for `to` (`None`: the whole room, late joiners included) goes to the
/// participant `key`.
fn is_for(to: Option<&[String]>, key: &str) -> bool {
    to.is_none_or(|to| to.iter().any(|k| k == key))
}

/// The core alone, with a virtual clock: no thread, socket or sleep.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::parser::FrameDecoder;
    use crate::runtime::spool::Spool;
    use std::path::PathBuf;

    const ANSWER_MS: u64 = 60_000;
    const CONNECT_MS: u64 = 10_000;

    struct Fixture {
        core: Core,
        shared: Arc<Shared>,
        awaited: Awaited,
        spool: Spool,
        dir: PathBuf,
        t0: Instant,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(name: &str, late_joiners: bool) -> Fixture {
        let dir = std::env::temp_dir().join(format!("msrpcast-core-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = Config {
            answer_timeout_ms: ANSWER_MS,
            connect_timeout_ms: CONNECT_MS,
            offer_to_late_joiners: late_joiners,
            ..Config::default()
        };
        let shared = Arc::new(Shared {
            roster: Roster::new(RosterLimits::default()),
            cancelled: Mutex::new(HashSet::new()),
            hashing: Mutex::new(Vec::new()),
        });
        let awaited: Awaited = Arc::new(Mutex::new(HashMap::new()));
        let addr: SocketAddr = "127.0.0.1:2855".parse().unwrap();
        let core = Core::new(
            Arc::new(cfg),
            shared.clone(),
            awaited.clone(),
            Logger::discard(),
            addr,
        )
        .unwrap();
        Fixture {
            core,
            shared,
            awaited,
            spool: Spool::open(&dir, 1 << 20, 1 << 20).unwrap(),
            dir,
            t0: Instant::now(),
        }
    }

    impl Fixture {
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn join(&mut self, who: &str, ms: u64) {
            let target = format!("sip:{who}@127.0.0.1");
            let now = self.at(ms);
            self.core
                .handle_join("c".into(), who.into(), target, None, None, now);
        }

        /// A complete upload of `body` to conference "c", announced to the core.
        fn upload(&mut self, body: &[u8], ms: u64) -> TransferId {
            let roster = &self.shared.roster;
            let t = roster
                .add_transfer("c", "f.bin", "text/plain", None)
                .unwrap();
            let (mut w, f) = self.spool.create(&t.to_string()).unwrap();
            w.append(body).unwrap();
            let sha1 = w.finish().unwrap();
            roster
                .set_transfer_state(t, TransferState::Complete { sha1 }, Some(body.len() as u64))
                .unwrap();
            self.core.handle_new_transfer(t, f, self.at(ms));
            t
        }

        fn actions(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.core.poll_action()).collect()
        }

        /// The one offer among the actions.
        fn offer(&mut self) -> (DeliveryId, String) {
            let actions = self.actions();
            match actions.as_slice() {
                [Action::Signal(Signal::Offer {
                    delivery,
                    target_uri,
                    ..
                })] => (*delivery, target_uri.clone()),
                other => panic!("expected one offer, got {other:?}"),
            }
        }

        fn state(&self, d: DeliveryId) -> DeliveryState {
            self.shared.roster.delivery(d).unwrap().state
        }
    }

    fn answer(setup_active: bool) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=message 7000 TCP/MSRP *\r\na=accept-types:*\r\na=recvonly\r\n{}\
             a=path:msrp://127.0.0.1:7000/peer1;tcp\r\n",
            if setup_active {
                "a=setup:active\r\n"
            } else {
                ""
            }
        )
    }

    fn is_bye(a: &Action, d: DeliveryId) -> bool {
        matches!(a, Action::Signal(Signal::Bye { delivery }) if *delivery == d)
    }

    fn is_abort(a: &Action, d: DeliveryId) -> bool {
        matches!(a, Action::Abort { delivery, .. } if *delivery == d)
    }

    /// Offer → 2xx answer → dial → connection on the I/O pool → completed → BYE.
    #[test]
    fn offer_answer_connect_outcome() {
        let mut f = fixture("flow", true);
        f.join("alice", 0);
        let t = f.upload(b"hello", 10);
        let (d, target) = f.offer();
        assert_eq!(target, "sip:alice@127.0.0.1");
        assert_eq!(f.state(d), DeliveryState::Offering);
        assert_eq!(f.core.poll_timeout(), Some(f.at(10 + ANSWER_MS)));

        f.core.handle_answered(d, &answer(false), f.at(500));
        let to_path = match f.actions().as_slice() {
            [Action::Dial { delivery, to_path }] if *delivery == d => to_path.clone(),
            other => panic!("expected a dial, got {other:?}"),
        };
        assert_eq!(to_path[0].effective_port(), 7000);
        assert_eq!(f.state(d), DeliveryState::Connecting);
        assert_eq!(f.core.poll_timeout(), Some(f.at(500 + CONNECT_MS)));

        let local = "127.0.0.1:2855".parse().ok();
        let a = f.core.handle_dialed(d, &to_path, local, f.at(510)).unwrap();
        assert!(a.connecting && a.first.is_none());
        assert_eq!(a.file.len(), 5);
        assert_eq!(&a.peer_path[..], b"msrp://127.0.0.1:7000/peer1;tcp");
        // On the I/O pool, the connection keeps its own time: no core deadline any more.
        assert_eq!(f.core.poll_timeout(), None);
        f.core.handle_tick(f.at(10 + ANSWER_MS + 1));
        assert!(f.actions().is_empty());

        f.core
            .handle_outcome(d, DeliveryOutcome::Completed, f.at(0));
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_bye(a, d)),
            "{actions:?}"
        );
        assert_eq!(f.state(d), DeliveryState::Done);
        assert_eq!(f.shared.roster.transfer(t).unwrap().deliveries.len(), 1);
    }

    /// A connection that drops after some bytes were confirmed: BYE, the delivery back to
    /// `queued` as attempt 2, and after `resume_backoff_ms` (times the attempt) the re-offer
    /// with `a=file-range` for the rest; its sender starts after the kept bytes. A leave while
    /// waiting for the next re-offer cancels it.
    #[test]
    fn dropped_connection_is_offered_again_after_the_backoff() {
        let mut f = fixture("resume", true);
        f.join("alice", 0);
        f.upload(&[7u8; 1000], 10);
        let (d, _) = f.offer();
        let connect = |f: &mut Fixture, ms: u64| -> Attach {
            let to_path = match f.actions().as_slice() {
                [Action::Dial { to_path, .. }] => to_path.clone(),
                other => panic!("expected a dial, got {other:?}"),
            };
            f.core.handle_dialed(d, &to_path, None, f.at(ms)).unwrap()
        };
        f.core.handle_answered(d, &answer(false), f.at(20));
        let a = connect(&mut f, 30);
        a.progress.acked.store(400, Ordering::Release);
        a.progress.dropped.store(true, Ordering::Release);
        let dropped = || DeliveryOutcome::Failed {
            code: None,
            reason: "connection closed by the participant".into(),
        };
        f.core.handle_outcome(d, dropped(), f.at(100));
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_bye(a, d)),
            "{actions:?}"
        );
        let s = f.shared.roster.delivery(d).unwrap();
        assert_eq!(
            (s.state, s.attempt, s.resumed_from),
            (DeliveryState::Queued, 2, Some(400))
        );
        assert_eq!(f.core.poll_timeout(), Some(f.at(2100)));
        f.core.handle_tick(f.at(2099));
        assert!(f.actions().is_empty());
        f.core.handle_tick(f.at(2100));
        let sdp = match f.actions().as_slice() {
            [Action::Signal(Signal::Offer { delivery, sdp, .. })] if *delivery == d => sdp.clone(),
            other => panic!("expected the re-offer, got {other:?}"),
        };
        assert!(sdp.contains("a=file-range:401-1000\r\n"), "{sdp}");
        assert!(sdp.contains("hash:sha-1:"), "{sdp}");
        let ranged = answer(false) + "a=file-range:401-1000\r\n";
        f.core.handle_answered(d, &ranged, f.at(2200));
        let a = connect(&mut f, 2210);
        assert_eq!(a.sender.acked(), 400);
        assert_eq!(a.progress.acked.load(Ordering::Acquire), 400);
        // Dropped again further on: the next wait is twice as long.
        a.progress.acked.store(700, Ordering::Release);
        a.progress.dropped.store(true, Ordering::Release);
        f.core.handle_outcome(d, dropped(), f.at(3000));
        f.actions();
        let s = f.shared.roster.delivery(d).unwrap();
        assert_eq!((s.attempt, s.resumed_from), (3, Some(700)));
        assert_eq!(f.core.poll_timeout(), Some(f.at(7000)));
        f.core.handle_leave("c", "alice");
        f.core.handle_tick(f.at(7000));
        let actions = f.actions();
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Signal(Signal::Offer { .. }))),
            "{actions:?}"
        );
        // Cancelled, or gone with its conference (alice was its last participant).
        assert!(f
            .shared
            .roster
            .delivery(d)
            .is_none_or(|s| s.state == DeliveryState::Cancelled));
        assert_eq!(f.core.poll_timeout(), None);
    }

    /// A refusal (an MSRP error code) or a drop before any byte was confirmed is not resumed.
    #[test]
    fn refusals_and_early_drops_are_not_resumed() {
        for (code, acked) in [(Some(481), 400), (None, 0)] {
            let mut f = fixture("noresume", true);
            f.join("alice", 0);
            f.upload(&[7u8; 1000], 10);
            let (d, _) = f.offer();
            f.core.handle_answered(d, &answer(false), f.at(20));
            let to_path = match f.actions().as_slice() {
                [Action::Dial { to_path, .. }] => to_path.clone(),
                other => panic!("expected a dial, got {other:?}"),
            };
            let a = f.core.handle_dialed(d, &to_path, None, f.at(30)).unwrap();
            a.progress.acked.store(acked, Ordering::Release);
            a.progress.dropped.store(code.is_none(), Ordering::Release);
            let o = DeliveryOutcome::Failed {
                code,
                reason: "x".into(),
            };
            f.core.handle_outcome(d, o, f.at(100));
            assert!(matches!(f.state(d), DeliveryState::Failed { .. }));
            assert_eq!(f.core.poll_timeout(), None);
        }
    }

    /// An INVITE nobody answers fails at `answer_timeout_ms`, not a moment before.
    #[test]
    fn unanswered_offer_times_out() {
        let mut f = fixture("noanswer", true);
        f.join("alice", 0);
        f.upload(b"x", 0);
        let (d, _) = f.offer();
        f.core.handle_tick(f.at(ANSWER_MS - 1));
        assert!(f.actions().is_empty());
        assert_eq!(f.state(d), DeliveryState::Offering);
        f.core.handle_tick(f.at(ANSWER_MS));
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_bye(a, d)),
            "{actions:?}"
        );
        assert!(matches!(
            f.state(d),
            DeliveryState::Failed { code: Some(408), ref reason } if reason.contains("no answer")
        ));
        // A late answer for the dead delivery still gets its dialog closed.
        f.core
            .handle_answered(d, &answer(false), f.at(ANSWER_MS + 5));
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_bye(a, d)),
            "{actions:?}"
        );
    }

    /// A participant that answered `a=setup:active` must connect within `connect_timeout_ms`;
    /// its connection is matched by session id.
    #[test]
    fn active_answer_waits_for_the_participant() {
        let mut f = fixture("active", true);
        f.join("alice", 0);
        f.join("bob", 0);
        f.upload(b"x", 0);
        let offers: Vec<DeliveryId> = f
            .actions()
            .iter()
            .map(|a| match a {
                Action::Signal(Signal::Offer { delivery, .. }) => *delivery,
                other => panic!("{other:?}"),
            })
            .collect();
        let [d1, d2] = offers[..] else {
            panic!("{offers:?}")
        };
        f.core.handle_answered(d1, &answer(true), f.at(100));
        f.core.handle_answered(d2, &answer(true), f.at(100));
        assert!(f.actions().is_empty());
        assert_eq!(f.awaited.lock().len(), 2);

        // d1's participant connects.
        let mut dec = FrameDecoder::new(Default::default());
        dec.feed(
            b"MSRP tx0001 SEND\r\nTo-Path: msrp://127.0.0.1:2855/x;tcp\r\n\
              From-Path: msrp://127.0.0.1:7001/p;tcp\r\nMessage-ID: m\r\n\
              Byte-Range: 1-0/0\r\n-------tx0001$\r\n",
        );
        let first = dec.next().unwrap().unwrap();
        let a = f.core.handle_accepted(d1, first, None, f.at(200)).unwrap();
        assert!(!a.connecting && a.first.is_some());
        assert_eq!(&a.peer_path[..], b"msrp://127.0.0.1:7001/p;tcp");

        // d2's never does.
        f.core.handle_tick(f.at(100 + CONNECT_MS - 1));
        assert!(f.actions().is_empty());
        f.core.handle_tick(f.at(100 + CONNECT_MS));
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_bye(a, d2)),
            "{actions:?}"
        );
        assert!(matches!(
            f.state(d2),
            DeliveryState::Failed { code: Some(408), ref reason } if reason.contains("never connected")
        ));
        assert!(
            f.awaited.lock().is_empty(),
            "the session is no longer awaited"
        );
    }

    /// A participant leaving while its file is on the wire: the connection is aborted, and the
    /// BYE follows the connection's outcome.
    #[test]
    fn leave_during_delivery() {
        let mut f = fixture("leave", true);
        f.join("alice", 0);
        f.join("bob", 0);
        f.upload(b"x", 0);
        let ds: Vec<DeliveryId> = f
            .actions()
            .iter()
            .filter_map(|a| match a {
                Action::Signal(Signal::Offer { delivery, .. }) => Some(*delivery),
                _ => None,
            })
            .collect();
        let alice = ds
            .iter()
            .copied()
            .find(|d| f.shared.roster.delivery(*d).unwrap().participant == "alice")
            .unwrap();
        f.core.handle_answered(alice, &answer(false), f.at(10));
        let Some(Action::Dial { to_path, .. }) = f.core.poll_action() else {
            panic!("no dial")
        };
        f.core
            .handle_dialed(alice, &to_path, None, f.at(11))
            .unwrap();

        f.core.handle_leave("c", "alice");
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_abort(a, alice)),
            "{actions:?}"
        );
        assert_eq!(f.state(alice), DeliveryState::Cancelled);
        f.core.handle_outcome(
            alice,
            DeliveryOutcome::Failed {
                code: None,
                reason: "participant left the conference".into(),
            },
            f.at(0),
        );
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_bye(a, alice)),
            "{actions:?}"
        );

        // The last one leaving ends the conference: its file leaves the spool.
        f.core.handle_leave("c", "bob");
        let actions = f.actions();
        assert!(
            actions.iter().any(|a| matches!(a, Action::Unspool(_))),
            "{actions:?}"
        );
    }

    /// Cancelling a transfer whose INVITE is still out: a BYE (CANCEL) for the dialog, no
    /// connection; a file cancelled before the core saw it is offered to nobody.
    #[test]
    fn cancel_before_and_after_the_offer() {
        let mut f = fixture("cancel", true);
        f.join("alice", 0);
        let t = f.upload(b"x", 0);
        let (d, _) = f.offer();
        f.shared.cancelled.lock().insert(t);
        f.core.handle_cancel(t);
        let actions = f.actions();
        // The BYE, and the file leaves the spool at once (issue 14 #7: nothing keeps it).
        assert!(
            matches!(actions.as_slice(), [a, Action::Unspool(_)] if is_bye(a, d)),
            "{actions:?}"
        );
        assert_eq!(f.state(d), DeliveryState::Cancelled);
        assert_eq!(f.core.poll_timeout(), None, "no deadline left");

        let t2 = f.shared.roster.add_transfer("c", "g", "", None).unwrap();
        let (_w, file) = f.spool.create(&t2.to_string()).unwrap();
        f.shared.cancelled.lock().insert(t2);
        f.core.handle_new_transfer(t2, file, f.at(5));
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [Action::Unspool(_)]),
            "{actions:?}"
        );
    }

    /// An upload that broke off: its pending deliveries fail and its file leaves the spool at
    /// once, so its descriptor closes and its bytes leave the quota (issue 14 #7).
    #[test]
    fn aborted_upload_is_unspooled_at_once() {
        let mut f = fixture("aborted", true);
        f.join("alice", 0);
        let t2 = f.shared.roster.add_transfer("c", "g", "", None).unwrap();
        let (mut w, file) = f.spool.create(&t2.to_string()).unwrap();
        w.append(b"part").unwrap();
        f.core.handle_new_transfer(t2, file.clone(), f.at(0));
        let (d, _) = f.offer();
        w.abort();
        let _ = f.shared.roster.set_transfer_state(
            t2,
            TransferState::Aborted {
                reason: "upload aborted".into(),
            },
            Some(4),
        );
        f.core.handle_upload_ended(t2);
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a, Action::Unspool(u)] if is_bye(a, d) && Arc::ptr_eq(u, &file)),
            "{actions:?}"
        );
    }

    /// A participant joining after a file was uploaded is offered it, unless the setting says no.
    #[test]
    fn late_joiner() {
        for late in [true, false] {
            let mut f = fixture(if late { "late1" } else { "late0" }, late);
            f.join("alice", 0);
            f.upload(b"early", 0);
            let _ = f.offer();
            f.join("carol", 1_000);
            let actions = f.actions();
            if late {
                assert!(
                    matches!(actions.as_slice(), [Action::Signal(Signal::Offer { target_uri, .. })]
                        if target_uri == "sip:carol@127.0.0.1"),
                    "{actions:?}"
                );
                assert_eq!(f.core.poll_timeout(), Some(f.at(ANSWER_MS)));
            } else {
                assert!(actions.is_empty(), "{actions:?}");
            }
        }
    }

    /// A rejected INVITE fails with its code and owes no BYE; a failed dial fails with its reason.
    #[test]
    fn rejected_and_dial_failure() {
        let mut f = fixture("reject", true);
        f.join("alice", 0);
        f.join("bob", 0);
        f.upload(b"x", 0);
        let ds: Vec<DeliveryId> = f
            .actions()
            .iter()
            .filter_map(|a| match a {
                Action::Signal(Signal::Offer { delivery, .. }) => Some(*delivery),
                _ => None,
            })
            .collect();
        f.core.handle_rejected(ds[0], 486);
        assert!(f.actions().is_empty());
        assert!(matches!(
            f.state(ds[0]),
            DeliveryState::Failed {
                code: Some(486),
                ..
            }
        ));

        f.core.handle_answered(ds[1], &answer(false), f.at(1));
        assert!(matches!(f.core.poll_action(), Some(Action::Dial { .. })));
        f.core
            .handle_dial_failed(ds[1], "cannot resolve x: no answer".into());
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_bye(a, ds[1])),
            "{actions:?}"
        );
        assert!(matches!(
            f.state(ds[1]),
            DeliveryState::Failed { code: None, ref reason } if reason == "cannot resolve x: no answer"
        ));
    }

    /// A dial whose result never comes (a name server that never answers) fails at
    /// `connect_timeout_ms`; a result arriving later is refused so the socket is closed.
    #[test]
    fn dial_without_result_times_out() {
        let mut f = fixture("dialto", true);
        f.join("alice", 0);
        f.upload(b"x", 0);
        let (d, _) = f.offer();
        f.core.handle_answered(d, &answer(false), f.at(0));
        let Some(Action::Dial { to_path, .. }) = f.core.poll_action() else {
            panic!("no dial")
        };
        f.core.handle_tick(f.at(CONNECT_MS));
        let actions = f.actions();
        assert!(
            matches!(actions.as_slice(), [a] if is_bye(a, d)),
            "{actions:?}"
        );
        assert!(matches!(
            f.state(d),
            DeliveryState::Failed { code: Some(408), ref reason }
                if reason == "no connection to msrp://127.0.0.1:7000/peer1;tcp within 10000 ms"
        ));
        assert!(!f.core.dialing(d));
        assert!(f
            .core
            .handle_dialed(d, &to_path, None, f.at(CONNECT_MS + 1))
            .is_none());
    }

    /// Stopping fails every delivery still running and empties the spool.
    #[test]
    fn stop_fails_everything() {
        let mut f = fixture("stop", true);
        f.join("alice", 0);
        f.upload(b"x", 0);
        let (d, _) = f.offer();
        f.core.handle_stop();
        let actions = f.actions();
        assert!(actions.iter().any(|a| is_bye(a, d)), "{actions:?}");
        assert!(
            actions.iter().any(|a| matches!(a, Action::Unspool(_))),
            "{actions:?}"
        );
        assert!(matches!(
            f.state(d),
            DeliveryState::Failed {
                code: Some(503),
                ..
            }
        ));
    }
}
