//! Flow control on a long path (issue 11, item 2): the MSRP window — body bytes awaiting
//! responses — starts at `window_bytes` and must grow while responses come back in time, so
//! that on a path whose bandwidth × round trip is larger than the start it is not what limits
//! the delivery. The participant sits behind the user-space delay proxy of the benchmarks (a
//! round trip of 60 ms at 400 Mbit/s, 3 MB in flight to fill it); the engine logs the largest
//! window of each delivery when it completes, and the test reads that from the log. Nothing
//! here depends on how fast the machine is: the window grows by a chunk for each response that
//! returns while the window holds the sender back, and a 16 MiB transfer over this path is held
//! back by a 256 KiB window hundreds of times.

use std::time::Duration;

use msrpcast::config::Config;
use msrpcast::roster::DeliveryState;
use msrpcast::runtime::log::{Level, Logger};
use msrpcast::runtime::receive::{ReceiveServer, Sink};
use msrpcast::runtime::Engine;
use sha1::{Digest, Sha1};

mod common;
use common::{data, upload, wait_done, wait_joined};

#[path = "../benches/common/proxy.rs"]
mod proxy;
use proxy::{DelayProxy, Path};

const WINDOW: u64 = 256 * 1024;

#[test]
fn window_grows_beyond_its_start_on_a_long_path() {
    let rx = ReceiveServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "far",
        Sink::Discard,
        true,
        None,
        1,
    )
    .unwrap();
    let path = Path::symmetric(Duration::from_millis(60), 400);
    let proxy = DelayProxy::start(rx.addr, path).unwrap();
    let dir = std::env::temp_dir().join(format!("msrpcast-flow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    for (k, v) in [
        ("spool_dir", dir.to_str().unwrap()),
        ("msrp_listen", "127.0.0.1:0"),
        ("control_socket", ""),
        ("log_level", "info"),
        ("window_bytes", &WINDOW.to_string()),
        ("max_window_bytes", "16MiB"),
        // Hang guards only, generous for a loaded machine.
        ("transaction_timeout_ms", "120000"),
        ("report_timeout_ms", "120000"),
    ] {
        cfg.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    let logger = Logger::queue(Level::Info, 4096, None);
    let e = Engine::start_with_logger(cfg, logger.clone()).unwrap();
    let uri = format!("msrp://{}/far;tcp", proxy.addr());
    e.join_direct("c", "far", &uri).unwrap();
    wait_joined(&e, "c", 1);
    let data = data(16 << 20, 11);
    let t = upload(&e, "c", &data);
    let states = wait_done(&e, t, 1, Duration::from_secs(600), String::new);
    assert_eq!(states[0].1, DeliveryState::Done, "{states:?}");
    let got = rx
        .next(Duration::from_secs(60))
        .expect("the receiver got nothing");
    assert_eq!(got.sha1, Some(common_hex(&Sha1::digest(&data))));

    let mut window = None;
    let mut lines = Vec::new();
    while let Some(r) = logger.pop() {
        if let Some(rest) = r.message.split("MSRP window up to ").nth(1) {
            window = rest.split(' ').next().and_then(|n| n.parse::<u64>().ok());
        }
        lines.push(r.message);
    }
    let window = window.unwrap_or_else(|| panic!("no completion line in the log: {lines:#?}"));
    assert!(
        window > WINDOW,
        "the window stayed at its start ({window} bytes): it limits a long path"
    );
    e.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn common_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
