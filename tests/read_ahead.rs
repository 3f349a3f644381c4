//! The deliveries' spool read-ahead is bounded engine-wide (issue 11): with 10,000 concurrent
//! deliveries each holding a 128 KiB block, blocks were most of the engine's memory. Many
//! concurrent deliveries of a multi-MiB file with a small `spool_read_ahead_bytes`: the blocks
//! held never exceed it, and every file still arrives whole. The same run with the default
//! budget holds more than the small one at some point, so the small one is what bounded it.
//! (With the default window, a block never goes further than the window lets go, and a delivery
//! waiting for responses holds none: see `runtime/readahead.rs`.)
//!
//! Plain-TCP deliveries of an indexed spool file send bodies with `sendfile` and read no blocks;
//! blocks are read over TLS and for files without a dash-run index. The file here holds more
//! dash runs than the index keeps ([`DashRuns::MAX_RUNS`]), so its deliveries take the block
//! path over plain TCP.

use std::time::Duration;

use msrpcast::msrp::dash_runs::DashRuns;
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::control::{self, Counters};
use msrpcast::runtime::receive::{ReceiveServer, Sink};
use msrpcast::runtime::Engine;
use sha1::{Digest, Sha1};

mod common;
use common::{data, test_config, upload, wait_done, wait_joined};

const DELIVERIES: usize = 32;
const SMALL_BUDGET: u64 = 512 * 1024;

/// Delivers a 4 MiB file to [`DELIVERIES`] participants with `spool_read_ahead_bytes` =
/// `budget` and a window of 16 MiB; checks that every copy arrived whole; returns the most
/// read-ahead held at once.
fn deliver_with_budget(name: &str, budget: &str) -> u64 {
    deliver(name, budget, "16MiB")
}

/// [`deliver_with_budget`] with a fixed MSRP window of `window` bytes.
fn deliver(name: &str, budget: &str, window: &str) -> u64 {
    let rx = ReceiveServer::start(
        "127.0.0.1:0".parse().unwrap(),
        name,
        Sink::Discard,
        true,
        None,
        2,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("msrpcast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = test_config(
        &dir,
        &[
            ("control_socket", ""),
            ("spool_read_ahead_bytes", budget),
            // Small chunks: many per block, deliveries hold blocks between turns.
            ("direct_chunk_bytes", "10240"),
            ("io_threads", "2"),
            ("max_participants_per_conference", "100"),
            // A window that never holds the sender back: blocks are cut by the out queue's
            // limit and the socket's room, not by the window, and so are held between turns.
            ("window_bytes", window),
            ("max_window_bytes", window),
            // Hang guards only, generous for a loaded machine.
            ("transaction_timeout_ms", "120000"),
            ("report_timeout_ms", "120000"),
        ],
    );
    let e = Engine::start(cfg).unwrap();
    for i in 0..DELIVERIES {
        e.join_direct("c", &format!("p{i}"), &rx.uri.to_string())
            .unwrap();
    }
    wait_joined(&e, "c", DELIVERIES);
    let body = unindexed(data(4 << 20, 7));
    let t = upload(&e, "c", &body);
    let states = wait_done(&e, t, DELIVERIES, Duration::from_secs(300), String::new);
    assert!(
        states.iter().all(|(_, s)| *s == DeliveryState::Done),
        "{states:?}"
    );
    let want: String = Sha1::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for i in 0..DELIVERIES {
        let got = rx
            .next(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("only {i} of {DELIVERIES} files arrived"));
        assert_eq!(got.failure, None);
        assert_eq!(got.bytes, body.len() as u64);
        assert_eq!(got.sha1.as_deref(), Some(want.as_str()));
    }
    let (held, peak) = e.read_ahead();
    eprintln!("spool_read_ahead_bytes {budget}: at most {peak} bytes read ahead at once");
    assert_eq!(held, 0, "blocks still counted after every delivery ended");
    // The same figures in the counters' status (control socket, C ABI, Kamailio RPC).
    let json = control::status_json(&e, &Counters::default(), control::STATUS_COUNTERS).unwrap();
    for want in [
        "\"spool_read_ahead_bytes\":0,".to_string(),
        format!("\"spool_read_ahead_peak_bytes\":{peak},"),
        format!(
            "\"spool_read_ahead_budget_bytes\":{}}}",
            e.config().spool_read_ahead_bytes
        ),
    ] {
        assert!(json.contains(&want), "{want} not in {json}");
    }
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
    peak
}

/// `body` with a run of 8 dashes every 256 bytes: more runs than the spool's index keeps, so
/// the file has no index and its deliveries read spool blocks.
fn unindexed(mut body: Vec<u8>) -> Vec<u8> {
    for at in (0..body.len().saturating_sub(8)).step_by(256) {
        body[at..at + 8].copy_from_slice(b"--------");
    }
    assert!(body.len() / 256 > DashRuns::MAX_RUNS);
    body
}

#[test]
fn many_deliveries_hold_no_more_read_ahead_than_the_budget() {
    let small = deliver_with_budget("ra-small", "512KiB");
    assert!(small > 0, "no block was read ahead at all");
    assert!(
        small <= SMALL_BUDGET,
        "{small} bytes read ahead at once, over the budget of {SMALL_BUDGET}"
    );
    let default = deliver_with_budget("ra-default", "32MiB");
    assert!(
        default > SMALL_BUDGET,
        "with the default budget only {default} bytes were read ahead at once: the small \
         budget bounded nothing"
    );
}

#[test]
fn deliveries_waiting_for_responses_hold_no_blocks() {
    // A 256 KiB window (the default start) holds each delivery back about 16 times: were blocks
    // read past what the window lets go, every waiting delivery would hold one (~120 KiB each,
    // 32 deliveries). Blocks are held only while a delivery is being filled, or its socket is
    // full: a few at a time.
    let peak = deliver("ra-window", "32MiB", "256KiB");
    assert!(
        peak <= 8 * 128 * 1024,
        "{peak} bytes read ahead at once: deliveries waiting for responses hold blocks"
    );
}
