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
        self.ender().publish(state, size);
    }

    fn ender(&self) -> Ender {
        Ender {
            transfer: self.transfer,
            shared: self.shared.clone(),
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
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

    /// The whole file arrived: like [`Upload::finish`], but returns as soon as every byte is in
    /// the spool, without waiting for the SHA-1 (one core hashes ≈ 1 GB/s, less than a
    /// loopback or disk upload). Deliveries end their message at once; the transfer becomes
    /// `complete` with its SHA-1 (and gets its restart record) when the hashing thread catches
    /// up, and `then` is called with the outcome from that thread — or before this returns
    /// when there is nothing left to hash. An error here (the file was removed or had failed)
    /// does not call `then`. The engine waits for the hash when it stops.
    pub fn finish_then<F>(mut self, then: F) -> Result<(), EngineError>
    where
        F: FnOnce(Result<[u8; 20], String>) + Send + 'static,
    {
        let Some(w) = self.writer.take() else {
            return Err(EngineError::Spool("upload already ended".into()));
        };
        let size = w.written();
        let end = self.ender();
        let done = move |r: Result<[u8; 20], SpoolError>| {
            let r = r.map_err(|e| e.to_string());
            let state = match &r {
                Ok(sha1) => TransferState::Complete { sha1: *sha1 },
                Err(reason) => TransferState::Aborted {
                    reason: reason.clone(),
                },
            };
            end.publish(state, Some(size));
            then(r);
        };
        match w.finish_then(done) {
            Ok(Some(join)) => {
                let mut pending = self.shared.hashing.lock();
                // Bounded by the uploads that may run at once: a finished one is dropped here.
                pending.retain(|j| !j.is_finished());
                pending.push(join);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.publish_end(
                    TransferState::Aborted {
                        reason: e.to_string(),
                    },
                    Some(size),
                );
                Err(EngineError::Spool(e.to_string()))
            }
        }
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

/// What publishing the end of an upload needs, apart from the [`Upload`] (it may happen on the
/// hashing thread after the upload is gone).
struct Ender {
    transfer: TransferId,
    shared: Arc<Shared>,
    tx: Sender<Cmd>,
    waker: IoWaker,
}

impl Ender {
    fn publish(&self, state: TransferState, size: Option<u64>) {
        let _ = self
            .shared
            .roster
            .set_transfer_state(self.transfer, state, size);
        self.waker.wake();
        let _ = self.tx.send(Cmd::UploadEnded {
            transfer: self.transfer,
        });
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.abort_inner();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use sha1::{Digest, Sha1};

    use crate::config::Config;
    use crate::runtime::Engine;

    /// An upload ended with `finish_then` whose SHA-1 is still being computed when the engine
    /// stops: the stop waits for it, the callback gets the hash, and the file gets its restart
    /// record (it is complete, not lost).
    #[test]
    fn stop_waits_for_the_hash_of_a_finished_upload() {
        let dir = std::env::temp_dir().join(format!("msrpcast-then-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = Config::default();
        for (k, v) in [
            ("spool_dir", dir.to_str().unwrap()),
            ("msrp_listen", "127.0.0.1:0"),
            ("log_level", "error"),
            ("answer_timeout_ms", "3600000"),
        ] {
            cfg.set(k, v).unwrap();
        }
        let e = Engine::start(cfg).unwrap();
        e.join("c", "p", "sip:nobody@127.0.0.1:9", None).unwrap();
        let t0 = Instant::now();
        while e
            .roster()
            .conference("c")
            .is_none_or(|c| c.participants.is_empty())
        {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut up = e
            .upload("c", "f.bin", "application/octet-stream", None)
            .unwrap();
        let block: Vec<u8> = (0..1u32 << 20).map(|i| (i ^ (i >> 7)) as u8).collect();
        let mut want = Sha1::new();
        for _ in 0..32 {
            up.append(&block).unwrap();
            want.update(&block);
        }
        let want: [u8; 20] = want.finalize().into();
        let (tx, rx) = crossbeam_channel::bounded(1);
        up.finish_then(move |r| tx.send(r).unwrap()).unwrap();
        e.stop();
        assert_eq!(
            rx.try_recv().expect("the stop waited for the hash"),
            Ok(want)
        );
        let records = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|d| d.ok())
            .filter(|d| d.file_name().to_string_lossy().ends_with(".record"))
            .count();
        assert_eq!(records, 1, "the complete file has its restart record");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
