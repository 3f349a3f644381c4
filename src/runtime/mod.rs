//! The engine's runtime: a small fixed pool of I/O threads with non-blocking sockets (`io`), one
//! connection handler per MSRP session (`delivery` sends a spooled file, `receive` is the passive
//! receiver of the CLI and the tests), the spool files (`spool`), logging that never calls into the
//! host (`log`), the control socket (`control`), and the engine (`engine`): its sans-IO core turns
//! joins, leaves, uploads and SIP outcomes into deliveries and signalling requests, and a thin
//! driver thread carries them out.
//!
//! Threads and sockets exist only here; the protocol decisions are made by the sans-IO state
//! machines of [`crate::msrp`].

pub mod control;
pub mod delivery;
pub mod engine;
pub mod fault;
pub mod io;
pub mod log;
pub mod net;
pub mod readahead;
pub mod receive;
pub(crate) mod receiving;
pub mod spool;

pub use engine::{Engine, EngineError, OfferInAnswer, OfferInError, Signal};

/// Starts one of the engine's threads, named `name`, with `SIGPIPE` blocked in it before `f`
/// runs ([`crate::ffi::sys::block_sigpipe_in_this_thread`]): every engine thread starts here, so
/// none can end a C host that leaves `SIGPIPE` at its default when a peer closes mid-write.
pub(crate) fn spawn<T: Send + 'static>(
    name: impl Into<String>,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            crate::ffi::sys::block_sigpipe_in_this_thread();
            f()
        })
}
