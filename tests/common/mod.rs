//! Helpers shared by the integration tests that drive an [`Engine`] (each test file uses a
//! subset, hence the `dead_code` allowance).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use msrpcast::roster::{DeliveryState, TransferId};
use msrpcast::runtime::Engine;

pub mod http;
/// `msrpcast receive --misbehave`'s behaviours, from the tool, for in-process receivers.
#[path = "../../src/bin/msrpcast/misbehave.rs"]
pub mod misbehave;
pub mod proc;

/// Waits until conference `conf` has `n` participants (joins are queued to the engine).
pub fn wait_joined(e: &Engine, conf: &str, n: usize) {
    let t0 = Instant::now();
    while e
        .roster()
        .conference(conf)
        .map(|c| c.participants.len())
        .unwrap_or(0)
        < n
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "joins not processed");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Uploads `body` to `conf` in 1 MiB appends and finishes it.
pub fn upload(e: &Engine, conf: &str, body: &[u8]) -> TransferId {
    let mut up = e
        .upload(
            conf,
            "file.bin",
            "application/octet-stream",
            Some(body.len() as u64),
        )
        .unwrap();
    let t = up.transfer;
    for c in body.chunks(1 << 20) {
        up.append(c).unwrap();
    }
    up.finish().unwrap();
    t
}

/// Waits until every delivery of `t` (at least `n`) is terminal; returns (participant, state).
/// On timeout the assertion message ends with `context()` (e.g. a relay's log).
pub fn wait_done(
    e: &Engine,
    t: TransferId,
    n: usize,
    limit: Duration,
    context: impl Fn() -> String,
) -> Vec<(String, DeliveryState)> {
    let t0 = Instant::now();
    loop {
        let tr = e.roster().transfer(t).expect("transfer");
        if tr.deliveries.len() >= n && tr.deliveries.iter().all(|d| d.state.is_terminal()) {
            return tr
                .deliveries
                .into_iter()
                .map(|d| (d.participant, d.state))
                .collect();
        }
        assert!(
            t0.elapsed() < limit,
            "deliveries not finished in {limit:?}: {:?}\n{}",
            tr.deliveries
                .iter()
                .map(|d| (&d.participant, &d.state))
                .collect::<Vec<_>>(),
            context()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Deterministic pseudo-random bytes (xorshift), cheap to make in release; `seed` picks the
/// sequence.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}
