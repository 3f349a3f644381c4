//! The engine side of the control socket: how client handles in *other processes* of the host
//! (Kamailio's SIP workers, its RPC process) reach the engine without ever waiting for it.
//!
//! The engine binds an `AF_UNIX`/`SOCK_DGRAM` socket at the `control_socket` path (its folder is
//! created, a stale socket file of an earlier run is replaced, permissions `0660`). One named
//! thread, `msrpcast-control`, receives datagrams and turns each into a call on the [`Engine`].
//! Clients send with `MSG_DONTWAIT`: when the socket's queue is full they are told so at once
//! (the C ABI's `MSRPCAST_ERR_BUSY`) and retry later; nothing in a client ever blocks.
//!
//!
//! Files: `wire` (the datagram format), `server` (the socket and its thread), `uploads` (local
//! files copied into the spool), `counters` (what arrived, and the STATUS answers); [`apply`]
//! here turns a request into an engine call.

mod counters;
mod server;
mod uploads;
mod wire;

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::roster::{DeliveryId, TransferId};
use crate::runtime::engine::{Engine, EngineError};

pub use self::counters::{status_json, CounterSnapshot, Counters};
pub(crate) use self::server::reload_tls_logged;
pub use self::server::{ControlServer, RESULT_INVALID_VALUE, RESULT_OK};
pub use self::uploads::{FileUploads, UploadFileError};
pub use self::wire::*;

/// Applies one request to the engine and counts it when accepted. STATUS is not handled here.
pub fn apply(
    engine: &Engine,
    counters: &Counters,
    uploads: &FileUploads,
    req: &Request<'_>,
) -> Result<(), EngineError> {
    let (r, counter) = match *req {
        Request::Join {
            conference,
            participant,
            target,
            display,
        } => (
            {
                crate::runtime::fault::inject("control", conference.as_bytes());
                engine.join(conference, participant, target, display)
            },
            &counters.joins,
        ),
        Request::Leave {
            conference,
            participant,
        } => (engine.leave(conference, participant), &counters.leaves),
        Request::Answered { delivery, sdp } => (
            engine.answered(DeliveryId(delivery), sdp),
            &counters.answered,
        ),
        Request::Rejected { delivery, sip_code } => {
            let code = u16::try_from(sip_code)
                .map_err(|_| EngineError::BadInput(format!("SIP code {sip_code}")));
            (
                code.and_then(|c| engine.rejected(DeliveryId(delivery), c)),
                &counters.rejected,
            )
        }
        Request::Ended { delivery } => (engine.ended(DeliveryId(delivery)), &counters.ended),
        Request::Cancel { transfer } => (engine.cancel(TransferId(transfer)), &counters.cancels),
        Request::UploadFile { conference, path } => (
            match uploads.start(engine, conference, Path::new(path)) {
                Ok(_) => Ok(()),
                Err(UploadFileError::Engine(e)) => Err(e),
                Err(UploadFileError::Forbidden(r)) => {
                    engine.logger().warn(
                        "control",
                        format_args!("UPLOAD_FILE to conference {conference:?} refused: {r}"),
                    );
                    Err(EngineError::BadInput(format!("UPLOAD_FILE refused: {r}")))
                }
                Err(UploadFileError::Io(e)) => Err(EngineError::BadInput(e.to_string())),
            },
            &counters.uploads,
        ),
        Request::OfferInEnded { dialog } => {
            engine.offer_in_ended(dialog);
            return Ok(());
        }
        // Answered by the server, which applies them itself.
        Request::Status { .. }
        | Request::Upload { .. }
        | Request::ReloadTls { .. }
        | Request::OfferIn { .. } => return Ok(()),
    };
    match &r {
        Ok(()) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Err(EngineError::Busy) => {}
        Err(EngineError::Stopped) => {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
    r
}

/// A participant's push offer decided: `(SIP status, transfer id, body)` — 200 with the answer
/// SDP, or the refusal's status, transfer 0 and the reason (logged). The OFFER_IN reply and
/// `msrpcast_engine_offer_in` answer with it.
pub fn offer_in_answer(
    engine: &Engine,
    conference: &str,
    participant: &str,
    dialog: &str,
    sdp: &str,
) -> (u16, u64, String) {
    match engine.offer_in(conference, participant, dialog, sdp) {
        Ok(a) => (200, a.transfer.0, a.sdp),
        Err(e) => {
            engine.logger().info(
                "control",
                format_args!(
                    "file offered by {participant:?} to conference {conference:?} refused with \
                     {}: {e}",
                    e.sip_code()
                ),
            );
            (e.sip_code(), 0, e.to_string())
        }
    }
}

/// The OFFER_IN reply's payload: `<status> <transfer>\n<body>`.
pub fn offer_in_payload(status: u16, transfer: u64, body: &str) -> String {
    format!("{status} {transfer}\n{body}")
}

/// Reads an OFFER_IN reply's payload; `None` when it is not one.
pub fn parse_offer_in_payload(text: &str) -> Option<(u16, u64, &str)> {
    let (head, body) = text.split_once('\n')?;
    let (status, transfer) = head.split_once(' ')?;
    Some((status.parse().ok()?, transfer.parse().ok()?, body))
}
