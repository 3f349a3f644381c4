//! An upload in progress: bytes go to the spool, the end goes to the roster and the core.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::roster::{TransferId, TransferState};
use crate::runtime::io::IoWaker;
use crate::runtime::spool::{SpoolError, SpoolWriter};

use super::core::Shared;
use super::driver::Cmd;
use super::EngineError;

/// An upload in progress: the HTTP handler (or any producer) appends bytes, then finishes or
/// aborts. Deliveries read the spool while it grows.
pub struct Upload {
    pub transfer: TransferId,
    pub(super) writer: Option<SpoolWriter>,
    pub(super) shared: Arc<Shared>,
    pub(super) tx: Sender<Cmd>,
    pub(super) waker: IoWaker,
}

impl Upload {
    /// Appends bytes. Fails when the file is too large, the spool is full or the transfer was
    /// cancelled; the upload is then aborted and deliveries that started get `#`.
    pub fn append(&mut self, data: &[u8]) -> Result<(), EngineError> {
        if self.shared.cancelled.lock().contains(&self.transfer) {
            self.abort_inner();
            return Err(EngineError::Spool("transfer cancelled".into()));
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(EngineError::Spool("upload already ended".into()));
        };
        if let Err(e) = w.append(data) {
            let msg = e.to_string();
            self.writer = None;
            self.end(e);
            return Err(EngineError::Spool(msg));
        }
        Ok(())
    }

    /// Records how the upload ended and tells the deliveries (spool state) and the core thread
    /// (deliveries not yet connected).
    fn publish_end(&self, state: TransferState, size: Option<u64>) {
        let _ = self
            .shared
            .roster
            .set_transfer_state(self.transfer, state, size);
        self.waker.wake();
        let _ = self.tx.send(Cmd::UploadEnded {
            transfer: self.transfer,
        });
    }

    fn end(&mut self, e: SpoolError) {
        let state = match e {
            SpoolError::TooLarge { limit } => TransferState::TooLarge { limit },
            other => TransferState::Aborted {
                reason: other.to_string(),
            },
        };
        self.publish_end(state, None);
    }

    fn abort_inner(&mut self) {
        self.abort_because("upload aborted");
    }

    fn abort_because(&mut self, reason: &str) {
        if let Some(w) = self.writer.take() {
            let size = w.written();
            w.abort();
            self.publish_end(
                TransferState::Aborted {
                    reason: reason.into(),
                },
                Some(size),
            );
        }
    }

    /// The whole file arrived.
    pub fn finish(mut self) -> Result<[u8; 20], EngineError> {
        let Some(w) = self.writer.take() else {
            return Err(EngineError::Spool("upload already ended".into()));
        };
        let size = w.written();
        let sha1 = match w.finish() {
            Ok(sha1) => sha1,
            Err(e) => {
                // Without this the transfer would stay "receiving" and its deliveries wait.
                self.publish_end(
                    TransferState::Aborted {
                        reason: e.to_string(),
                    },
                    Some(size),
                );
                return Err(EngineError::Spool(e.to_string()));
            }
        };
        self.publish_end(TransferState::Complete { sha1 }, Some(size));
        Ok(sha1)
    }

    /// The upload broke off (client went away, bad body): deliveries are aborted.
    pub fn abort(mut self) {
        self.abort_inner();
    }

    /// The upload broke off for `reason`, which becomes the transfer's state (a file from a
    /// participant: its connection dropped, it never connected, it ended the session).
    pub fn abort_with(mut self, reason: &str) {
        self.abort_because(reason);
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.writer.as_ref().map(|w| w.written()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.abort_inner();
    }
}
