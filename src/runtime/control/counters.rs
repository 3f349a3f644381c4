//! What reached the engine through the control socket and the C ABI, and the STATUS answers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::json;
use crate::runtime::engine::Engine;

use super::wire::{STATUS_ALL, STATUS_CONFERENCES, STATUS_COUNTERS, STATUS_TRANSFERS};

/// What reached the engine through the control socket and the direct calls. Each call counter
/// counts calls the engine accepted. The fields and their order are ABI (new ones go at the
/// end): this copy of the runtime's `Counters` is the C header's `msrpcast_stats`, written out
/// as is by `msrpcast_engine_stats` (cbindgen.toml renames it).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Datagrams received on the control socket.
    pub datagrams: u64,
    /// Datagrams that were not a valid request.
    pub malformed: u64,
    pub joins: u64,
    pub leaves: u64,
    pub answered: u64,
    pub rejected: u64,
    pub ended: u64,
    pub cancels: u64,
    pub uploads: u64,
    /// Status requests answered over the control socket.
    pub status: u64,
    /// Calls the engine refused (bad input, unknown conference or transfer, limits).
    pub refused: u64,
    /// Control requests dropped because the engine stayed busy or had stopped.
    pub dropped: u64,
    /// Times the control thread found the engine's queue full and waited.
    pub busy_waits: u64,
}

/// [`Counters`] (one atomic per field of [`CounterSnapshot`]), its `snapshot` and its JSON from
/// one list of names. The snapshot is built without `..`, so a name missing here or there is a
/// compile error: the list cannot drift from the C struct.
macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// The live counters; see [`CounterSnapshot`] for what each counts.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(pub $name: AtomicU64,)*
        }

        impl Counters {
            pub fn snapshot(&self) -> CounterSnapshot {
                CounterSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        impl CounterSnapshot {
            /// `{"datagrams":…,…}`: every field under its own name, in the struct's order, then
            /// the `extra` fields.
            pub fn to_json(&self, extra: &[(&str, u64)]) -> String {
                let mut s = String::new();
                let mut o = json::Object::begin(&mut s);
                $(o.u64(stringify!($name), self.$name);)*
                for (k, v) in extra {
                    o.u64(k, *v);
                }
                o.end();
                s
            }
        }
    };
}

counters!(
    datagrams, malformed, joins, leaves, answered, rejected, ended, cancels, uploads, status,
    refused, dropped, busy_waits,
);

/// The JSON of a status request, `None` for an unknown `what`. The counters' answer also
/// carries the deliveries' spool read-ahead, which the C struct has no room for: bytes held
/// now, the most ever held, and the budget (`spool_read_ahead_bytes`).
pub fn status_json(engine: &Engine, counters: &Counters, what: u32) -> Option<String> {
    match what {
        STATUS_CONFERENCES => Some(engine.roster().snapshot().conferences_json()),
        STATUS_TRANSFERS => Some(engine.roster().snapshot().transfers_json()),
        STATUS_ALL => Some(engine.roster().to_json()),
        STATUS_COUNTERS => {
            let (held, peak) = engine.read_ahead();
            Some(counters.snapshot().to_json(&[
                ("spool_read_ahead_bytes", held),
                ("spool_read_ahead_peak_bytes", peak),
                (
                    "spool_read_ahead_budget_bytes",
                    engine.config().spool_read_ahead_bytes,
                ),
            ]))
        }
        _ => None,
    }
}
