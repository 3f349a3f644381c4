//! The C ABI (`include/msrpcast.h`, generated from this module by cbindgen; docs/c-api.md).
//!
//! Conventions, as in rustls-ffi: opaque handles (`msrpcast_config`, `msrpcast_engine`,
//! `msrpcast_client`, `msrpcast_signal`) owned by `Box`, each made by a `_new`/`_start`/`_open`
//! (or `next_signal`) and released by a `_free` that accepts NULL; strings as pointer + length
//! (no NUL needed, UTF-8 checked); one `uint32_t` result code space
//! ([`result::msrpcast_result`]) with [`result::msrpcast_result_name`]; outputs written only on
//! success; every export runs inside `boundary::ffi_boundary`, so a Rust panic becomes
//! `MSRPCAST_ERR_PANIC` and never unwinds into the host.
//!
//! Who may call what: the engine handle lives in the one process that owns the engine's
//! threads; client handles are opened in any process (after fork) and reach it through the
//! engine's control socket ([`crate::runtime::control`]) without ever blocking; no Rust thread
//! ever calls into the host — signals and log records wait in queues behind one pollable
//! descriptor that the host's own thread drains.

#![warn(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]
// The exports are entry points for C, where `unsafe` means nothing: each documents what its
// pointers must be, checks them for NULL, and dereferences them only inside a `// SAFETY:` block.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

// A panic must become MSRPCAST_ERR_PANIC, not abort the host (in Kamailio an abort of the engine
// process shuts the whole server down).
#[cfg(panic = "abort")]
compile_error!("msrpcast's C ABI needs panic = \"unwind\" to catch panics at the boundary");

pub mod boundary;
pub mod client;
pub mod config;
pub mod engine;
pub mod freeswitch;
pub mod hangup;
pub mod json;
mod notify;
pub mod result;
pub mod signal;
pub mod sys;

pub use client::*;
pub use config::*;
pub use engine::*;
pub use json::*;
pub use result::*;
pub use signal::*;
