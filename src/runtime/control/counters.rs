//! What reached the engine through the control socket and the C ABI, and the STATUS answers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::roster::json;
use crate::runtime::engine::Engine;

use super::wire::{STATUS_ALL, STATUS_CONFERENCES, STATUS_COUNTERS, STATUS_TRANSFERS};

/// What reached the engine through the control socket and the C ABI's direct calls. Each
/// counter of a call counts calls the engine accepted.
#[derive(Debug, Default)]
pub struct Counters {
    pub datagrams: AtomicU64,
    pub malformed: AtomicU64,
    pub joins: AtomicU64,
    pub leaves: AtomicU64,
    pub answered: AtomicU64,
    pub rejected: AtomicU64,
    pub ended: AtomicU64,
    pub cancels: AtomicU64,
    pub uploads: AtomicU64,
    pub status: AtomicU64,
    /// Calls the engine refused (bad input, unknown conference or transfer, spool errors).
    pub refused: AtomicU64,
    /// Calls dropped because the engine stayed busy for 2 s or had stopped.
    pub dropped: AtomicU64,
    /// Times the control thread found the engine's queue full and waited.
    pub busy_waits: AtomicU64,
}

/// A copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub datagrams: u64,
    pub malformed: u64,
    pub joins: u64,
    pub leaves: u64,
    pub answered: u64,
    pub rejected: u64,
    pub ended: u64,
    pub cancels: u64,
    pub uploads: u64,
    pub status: u64,
    pub refused: u64,
    pub dropped: u64,
    pub busy_waits: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            datagrams: l(&self.datagrams),
            malformed: l(&self.malformed),
            joins: l(&self.joins),
            leaves: l(&self.leaves),
            answered: l(&self.answered),
            rejected: l(&self.rejected),
            ended: l(&self.ended),
            cancels: l(&self.cancels),
            uploads: l(&self.uploads),
            status: l(&self.status),
            refused: l(&self.refused),
            dropped: l(&self.dropped),
            busy_waits: l(&self.busy_waits),
        }
    }
}

impl CounterSnapshot {
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        let mut o = json::Object::begin(&mut s);
        o.u64("datagrams", self.datagrams)
            .u64("malformed", self.malformed)
            .u64("joins", self.joins)
            .u64("leaves", self.leaves)
            .u64("answered", self.answered)
            .u64("rejected", self.rejected)
            .u64("ended", self.ended)
            .u64("cancels", self.cancels)
            .u64("uploads", self.uploads)
            .u64("status", self.status)
            .u64("refused", self.refused)
            .u64("dropped", self.dropped)
            .u64("busy_waits", self.busy_waits);
        o.end();
        s
    }
}

/// The JSON of a status request, `None` for an unknown `what`.
pub fn status_json(engine: &Engine, counters: &Counters, what: u32) -> Option<String> {
    match what {
        STATUS_CONFERENCES => Some(engine.roster().snapshot().conferences_json()),
        STATUS_TRANSFERS => Some(engine.roster().snapshot().transfers_json()),
        STATUS_ALL => Some(engine.roster().to_json()),
        STATUS_COUNTERS => Some(counters.snapshot().to_json()),
        _ => None,
    }
}
