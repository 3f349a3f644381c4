//! Files from participants to the room: a participant's RFC 5547 push offer is answered here
//! ([`Engine::offer_in`]), the participant connects to our MSRP listener, and its file is
//! received (`incoming.rs`) into a spool file that the engine streams on, as it grows, to every
//! other participant of the conference — exactly as an HTTP upload is.
//!
//! The sessions of such files live in [`Sessions`], shared by the host's thread (offer, BYE),
//! the MSRP listener (which hands over the participant's connection once its first frame names
//! one, and expires those that never connect) and the receiving connection (which removes its
//! session when it ends). The table is bounded by `offer_in_max_sessions`; offers per
//! participant by `offer_in_per_participant_per_min`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::config::Config;
use crate::msrp::ids::IdGen;
use crate::msrp::{Host, Uri};
use crate::roster::{Origin, RosterError, TransferId};
use crate::runtime::io::Command;
use crate::runtime::log::Level;
use crate::sdp::{self, PushOfferError};
use crate::tls::Fingerprint;

use super::core::advertise;
use super::{check_names, Engine, EngineError, Upload};

/// What the host answers the participant's INVITE with: 200 and this SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferInAnswer {
    /// The transfer the file becomes (`via` participant, `sender` its key).
    pub transfer: TransferId,
    /// The SDP answer (`a=recvonly`, `a=setup:passive`, our `a=path`).
    pub sdp: String,
}

/// Why a participant's push offer was refused; [`OfferInError::sip_code`] is the INVITE's
/// final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferInError {
    /// The sender is not a participant of that conference (403).
    NotParticipant {
        conference: String,
        participant: String,
    },
    /// The SDP is not a push offer we can take (488), or the file's type is not accepted (415).
    BadOffer(PushOfferError),
    /// Larger than `max_file_bytes`, or than what the spool quota has left (413).
    TooLarge(String),
    /// `offer_in_per_participant_per_min` reached (486).
    RateLimited { limit: usize },
    /// No room now: `offer_in_max_sessions`, the conference's file limit, the engine's queue
    /// (503).
    Unavailable(String),
    /// Empty or unusable arguments, or a dialog already used for a file (400).
    BadInput(String),
    /// The spool could not create the file (500).
    Internal(String),
}

impl OfferInError {
    /// The SIP status to answer the INVITE with.
    pub fn sip_code(&self) -> u16 {
        match self {
            OfferInError::NotParticipant { .. } => 403,
            OfferInError::BadOffer(e) => e.sip_code(),
            OfferInError::TooLarge(_) => 413,
            OfferInError::RateLimited { .. } => 486,
            OfferInError::Unavailable(_) => 503,
            OfferInError::BadInput(_) => 400,
            OfferInError::Internal(_) => 500,
        }
    }
}

impl fmt::Display for OfferInError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfferInError::NotParticipant {
                conference,
                participant,
            } => write!(
                f,
                "{participant:?} is not a participant of conference {conference:?}"
            ),
            OfferInError::BadOffer(e) => write!(f, "{e}"),
            OfferInError::TooLarge(r)
            | OfferInError::Unavailable(r)
            | OfferInError::BadInput(r)
            | OfferInError::Internal(r) => f.write_str(r),
            OfferInError::RateLimited { limit } => write!(
                f,
                "at most {limit} files per participant per minute \
                 (offer_in_per_participant_per_min)"
            ),
        }
    }
}

impl std::error::Error for OfferInError {}

/// The I/O pool key of the connection receiving `transfer` (apart from delivery ids, which
/// never reach this bit).
pub(super) fn io_key(transfer: TransferId) -> u64 {
    (1 << 63) | transfer.0
}

/// Everything the receiving connection needs, waiting for the participant to connect.
pub(super) struct Slot {
    /// The host's key of the participant's INVITE dialog (its BYE ends the session).
    pub dialog: String,
    pub transfer: TransferId,
    pub participant: String,
    pub upload: Upload,
    /// Our URI of the session (From-Path of our responses and REPORTs).
    pub local_uri: Uri,
    /// The size the offer announced: the message must be exactly this long.
    pub size: u64,
    /// The offer was TLS: the connection must be, and the participant's certificate must
    /// name the host of its `a=path` (or match its `a=fingerprint`).
    pub tls: Option<(Host, Vec<Fingerprint>)>,
}

enum State {
    /// Answered; the participant has not connected yet.
    Waiting { slot: Box<Slot>, deadline: Instant },
    /// The connection is receiving (or has received) the file.
    Running,
}

struct Session {
    transfer: TransferId,
    session_id: Bytes,
    state: State,
}

struct Inner {
    ids: IdGen,
    by_dialog: HashMap<String, Session>,
    /// Session id of our `a=path` → dialog.
    by_session: HashMap<Bytes, String>,
    /// Offers accepted per (conference, participant) within the last minute.
    recent: HashMap<(String, String), VecDeque<Instant>>,
}

/// How a BYE found its session.
pub(super) enum Ended {
    /// Not connected yet: its upload is aborted by the caller.
    Waiting(Box<Slot>),
    /// On the I/O pool: the connection is told to stop.
    Running(TransferId),
    Unknown,
}

/// The sessions of files from participants (see the module's documentation).
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Sessions {
    pub(super) fn new() -> Result<Sessions, EngineError> {
        let ids = IdGen::new()
            .map_err(|e| EngineError::Start(format!("no OS randomness for session ids: {e}")))?;
        Ok(Sessions {
            inner: Mutex::new(Inner {
                ids,
                by_dialog: HashMap::new(),
                by_session: HashMap::new(),
                recent: HashMap::new(),
            }),
        })
    }

    /// The connection whose first frame names `session_id` takes its slot, if any.
    pub(super) fn take_waiting(&self, session_id: &[u8]) -> Option<Box<Slot>> {
        let mut inner = self.inner.lock();
        let dialog = inner.by_session.get(session_id)?.clone();
        let s = inner.by_dialog.get_mut(&dialog)?;
        match std::mem::replace(&mut s.state, State::Running) {
            State::Waiting { slot, .. } => Some(slot),
            State::Running => None,
        }
    }

    /// Sessions whose participant did not connect in time, removed.
    pub(super) fn expire(&self, now: Instant) -> Vec<Slot> {
        let mut inner = self.inner.lock();
        let late: Vec<String> = inner
            .by_dialog
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Waiting { deadline, .. } if now >= deadline))
            .map(|(d, _)| d.clone())
            .collect();
        let mut out = Vec::new();
        for d in late {
            if let Some(s) = inner.by_dialog.remove(&d) {
                inner.by_session.remove(&s.session_id);
                if let State::Waiting { slot, .. } = s.state {
                    out.push(*slot);
                }
            }
        }
        out
    }

    /// The participant ended the dialog (BYE).
    pub(super) fn end(&self, dialog: &str) -> Ended {
        let mut inner = self.inner.lock();
        let Some(s) = inner.by_dialog.remove(dialog) else {
            return Ended::Unknown;
        };
        inner.by_session.remove(&s.session_id);
        match s.state {
            State::Waiting { slot, .. } => Ended::Waiting(slot),
            State::Running => Ended::Running(s.transfer),
        }
    }

    /// The receiving connection ended: its session goes.
    pub(super) fn finished(&self, dialog: &str) {
        let mut inner = self.inner.lock();
        if let Some(s) = inner.by_dialog.remove(dialog) {
            inner.by_session.remove(&s.session_id);
        }
    }

    /// A new session for `dialog` from participant `who` of `conference`: refused when the dialog
    /// already carries a file, when `offer_in_max_sessions` are held, or when the participant
    /// reached `offer_in_per_participant_per_min`.
    fn admit(
        &self,
        cfg: &Config,
        conference: &str,
        who: &str,
        dialog: &str,
        now: Instant,
    ) -> Result<(), OfferInError> {
        let mut inner = self.inner.lock();
        if inner.by_dialog.contains_key(dialog) {
            return Err(OfferInError::BadInput(format!(
                "dialog {dialog:?} already carries a file"
            )));
        }
        if inner.by_dialog.len() >= cfg.offer_in_max_sessions {
            return Err(OfferInError::Unavailable(format!(
                "{} files from participants already being received (offer_in_max_sessions)",
                inner.by_dialog.len()
            )));
        }
        inner
            .recent
            .retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) < MINUTE));
        let key = (conference.to_owned(), who.to_owned());
        let sent = inner.recent.get(&key).map_or(0, |v| {
            v.iter()
                .filter(|t| now.duration_since(**t) < MINUTE)
                .count()
        });
        if sent >= cfg.offer_in_per_participant_per_min {
            return Err(OfferInError::RateLimited {
                limit: cfg.offer_in_per_participant_per_min,
            });
        }
        Ok(())
    }

    /// Sessions held (waiting or running).
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().by_dialog.len()
    }
}

impl Inner {
    /// The session of `slot`, answered with `session_id`: waiting for the participant to
    /// connect until `deadline`.
    fn wait_for(&mut self, slot: Box<Slot>, session_id: Bytes, deadline: Instant) {
        let dialog = slot.dialog.clone();
        self.by_session.insert(session_id.clone(), dialog.clone());
        self.by_dialog.insert(
            dialog,
            Session {
                transfer: slot.transfer,
                session_id,
                state: State::Waiting { slot, deadline },
            },
        );
    }
}

/// Our URI of a session: `msrps` when the offer is TLS.
fn our_uri(tls: bool, host: &str, port: u16, session_id: &[u8]) -> Result<Uri, OfferInError> {
    let text = format!(
        "{}://{host}:{port}/{};tcp",
        if tls { "msrps" } else { "msrp" },
        String::from_utf8_lossy(session_id)
    );
    Uri::parse_slice(text.as_bytes())
        .map_err(|e| OfferInError::Internal(format!("our own URI {text:?}: {e}")))
}

/// What a TLS offer's connection must show: the host of the participant's `a=path` (or its
/// `a=fingerprint`s).
fn offer_tls(offer: &sdp::PushOffer) -> Option<(Host, Vec<Fingerprint>)> {
    offer.tls.then(|| {
        let host = offer
            .path
            .last()
            .map(|u| u.host.clone())
            .unwrap_or(Host::Name(Bytes::new()));
        (host, offer.fingerprints.clone())
    })
}

/// Reads and checks the offer, then the limits; the file's checks come before any state.
fn check_offer(engine: &Engine, sdp_offer: &str) -> Result<sdp::PushOffer, OfferInError> {
    let cfg = &engine.cfg;
    let offer = sdp::parse_push_offer(sdp_offer, cfg.max_path_uris, &cfg.accept_types)
        .map_err(OfferInError::BadOffer)?;
    if offer.tls {
        let usable = engine.tls.as_ref().is_some_and(|t| t.has_certificate());
        if !usable {
            return Err(OfferInError::BadOffer(PushOfferError::Unacceptable(
                "the offer asks for TLS (msrps) and msrp_tls is off or has no certificate".into(),
            )));
        }
    }
    if offer.size > cfg.max_file_bytes {
        return Err(OfferInError::TooLarge(format!(
            "file of {} bytes exceeds max_file_bytes {}",
            offer.size, cfg.max_file_bytes
        )));
    }
    let free = engine
        .spool
        .max_bytes()
        .saturating_sub(engine.spool.used_bytes());
    if offer.size > free {
        return Err(OfferInError::TooLarge(format!(
            "file of {} bytes exceeds what the spool quota has left ({free} of spool_max_bytes {})",
            offer.size,
            engine.spool.max_bytes()
        )));
    }
    Ok(offer)
}

impl Engine {
    /// A participant offers a file to its conference (an RFC 5547 push offer in an INVITE to the
    /// conference's URI): checks who sends and what, answers, and gets ready to receive it.
    ///
    /// `participant` is the participant's key, or the target URI it joined with (the Contact
    /// of its conference call: a phone's push INVITE is a dialog of its own). `dialog` is the
    /// host's key of the push INVITE's dialog (Kamailio: its Call-ID), used by
    /// [`Engine::offer_in_ended`] when the participant sends BYE.
    ///
    /// On success the host answers 200 with [`OfferInAnswer::sdp`]; the file is a transfer with
    /// `via` participant and `sender` the participant's key, offered at once to every *other*
    /// participant and streamed to them while it arrives. On refusal it answers
    /// [`OfferInError::sip_code`]. Never blocks on the network: the spool file is created here.
    pub fn offer_in(
        &self,
        conference: &str,
        participant: &str,
        dialog: &str,
        sdp_offer: &str,
    ) -> Result<OfferInAnswer, OfferInError> {
        let now = Instant::now();
        let who = self.offering_participant(conference, participant, dialog)?;
        let offer = check_offer(self, sdp_offer)?;
        let cfg = &self.cfg;
        self.sessions.admit(cfg, conference, &who, dialog, now)?;
        let upload = self.upload_offered(conference, &offer, &who)?;
        let transfer = upload.transfer;
        let (host, port) = advertise(cfg, self.msrp_addr);
        let mut inner = self.sessions.inner.lock();
        let session_id = inner.ids.session_id();
        let local_uri = our_uri(offer.tls, &host, port, &session_id)?;
        let answer = self.push_answer(&offer, transfer, &host, port, &local_uri);
        let slot = Box::new(Slot {
            dialog: dialog.into(),
            transfer,
            participant: who.clone(),
            upload,
            local_uri,
            size: offer.size,
            tls: offer_tls(&offer),
        });
        let deadline = now + Duration::from_millis(cfg.connect_timeout_ms + cfg.answer_timeout_ms);
        inner.wait_for(slot, session_id, deadline);
        inner
            .recent
            .entry((conference.to_owned(), who.clone()))
            .or_default()
            .push_back(now);
        drop(inner);
        self.logger.log(
            Level::Info,
            "engine",
            format_args!(
                "transfer {transfer}: {:?} ({} bytes, {}) offered to conference {conference:?} \
                 by participant {who:?}; waiting for its MSRP connection",
                offer.name, offer.size, offer.content_type
            ),
        );
        Ok(OfferInAnswer {
            transfer,
            sdp: answer,
        })
    }

    /// The key of the participant of `conference` that offers a file: `participant` is its key
    /// or the target URI it joined with. The arguments are checked first.
    fn offering_participant(
        &self,
        conference: &str,
        participant: &str,
        dialog: &str,
    ) -> Result<String, OfferInError> {
        if conference.is_empty() || participant.is_empty() || dialog.is_empty() {
            return Err(OfferInError::BadInput(
                "conference, participant and dialog must not be empty".into(),
            ));
        }
        check_names(conference, participant, Some(dialog))
            .map_err(|e| OfferInError::BadInput(e.to_string()))?;
        let roster = &self.shared.roster;
        let who = roster
            .participants(conference)
            .into_iter()
            .find(|p| p.key == participant)
            .or_else(|| {
                let uri = participant.trim_matches(['<', '>']);
                roster
                    .participants(conference)
                    .into_iter()
                    .find(|p| p.target == uri)
            });
        match who {
            Some(who) => Ok(who.key),
            None => Err(OfferInError::NotParticipant {
                conference: conference.into(),
                participant: participant.into(),
            }),
        }
    }

    /// The transfer (and spool file) of an accepted offer from participant `who`.
    fn upload_offered(
        &self,
        conference: &str,
        offer: &sdp::PushOffer,
        who: &str,
    ) -> Result<Upload, OfferInError> {
        self.start_upload(
            conference,
            &offer.name,
            &offer.content_type,
            Some(offer.size),
            None,
            Some(Origin::Participant(who.to_owned())),
        )
        .map_err(|e| match e {
            EngineError::Roster(RosterError::TooManyTransfers { .. })
            | EngineError::Busy
            | EngineError::Stopped => OfferInError::Unavailable(e.to_string()),
            EngineError::Spool(r) if r.contains("quota") || r.contains("exceeds") => {
                OfferInError::TooLarge(r)
            }
            other => OfferInError::Internal(other.to_string()),
        })
    }

    /// The SDP answer to `offer`: our `a=path` `local_uri`, reached at `host`:`port`.
    fn push_answer(
        &self,
        offer: &sdp::PushOffer,
        transfer: TransferId,
        host: &str,
        port: u16,
        local_uri: &Uri,
    ) -> String {
        let cfg = &self.cfg;
        let address = host
            .trim_matches(['[', ']'])
            .parse()
            .unwrap_or(self.msrp_addr.ip());
        sdp::build_push_answer(
            &sdp::PushAnswerParams {
                session_version: transfer.0,
                address,
                port,
                path: local_uri.clone(),
                accept_types: cfg.accept_types.clone(),
                max_size: cfg.max_file_bytes,
                fingerprint: self.tls.as_ref().and_then(|t| t.fingerprint()),
            },
            offer,
        )
    }

    /// The participant ended the dialog of its push offer (BYE): a file still arriving is
    /// aborted (the transfer fails, its partial spool file goes); a complete one stays.
    /// Returns whether `dialog` was a session of ours.
    pub fn offer_in_ended(&self, dialog: &str) -> bool {
        match self.sessions.end(dialog) {
            Ended::Waiting(slot) => {
                let t = slot.transfer;
                slot.upload
                    .abort_with("the participant ended the session before connecting");
                self.logger.info(
                    "engine",
                    format_args!(
                        "transfer {t}: the participant ended the session (BYE) before connecting"
                    ),
                );
                true
            }
            Ended::Running(t) => {
                self.io.command(
                    io_key(t),
                    Command::Abort {
                        reason: "the participant ended the session (BYE)".into(),
                        code: 0,
                    },
                );
                true
            }
            Ended::Unknown => false,
        }
    }

    /// Files from participants being received or awaited now.
    pub fn offer_in_sessions(&self) -> usize {
        self.sessions.len()
    }
}
