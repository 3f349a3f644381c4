//! `msrpcast_engine_start` fails fast: when the HTTP upload page cannot start (its port is taken)
//! the engine does not run without it, says why, and leaves nothing behind.

use std::net::TcpListener;

use msrpcast::ffi::config::*;
use msrpcast::ffi::engine::*;
use msrpcast::ffi::result::*;

fn set(c: *mut msrpcast_config, k: &str, v: &str) {
    let r = msrpcast_config_set(c, k.as_ptr().cast(), k.len(), v.as_ptr().cast(), v.len());
    assert_eq!(r, MSRPCAST_OK, "{k}={v}");
}

fn config_error(c: *mut msrpcast_config) -> String {
    let (mut m, mut n) = (std::ptr::null(), 0usize);
    assert_eq!(msrpcast_config_error(c, &mut m, &mut n), MSRPCAST_OK);
    // SAFETY: m points to n bytes owned by the config, valid until the next call on it.
    let s = unsafe { std::slice::from_raw_parts(m.cast::<u8>(), n) };
    String::from_utf8_lossy(s).into_owned()
}

#[test]
fn a_taken_http_port_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("msrpcast-start-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap();
    // A fixed MSRP port (found free just before), so the second start shows it was released.
    let msrp = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let control = dir.join("control.sock");

    let mut c = std::ptr::null_mut();
    assert_eq!(msrpcast_config_new(&mut c), MSRPCAST_OK);
    set(c, "spool_dir", dir.join("spool").to_str().unwrap());
    set(c, "msrp_listen", &msrp.to_string());
    set(c, "control_socket", control.to_str().unwrap());
    set(c, "http_enabled", "yes");
    set(c, "http_listen", &http.to_string());
    set(c, "log_level", "error");

    let mut e = std::ptr::null_mut();
    assert_eq!(msrpcast_engine_start(c, &mut e), MSRPCAST_ERR_START);
    assert!(e.is_null());
    let why = config_error(c);
    assert!(
        why.contains("http_listen") && why.contains(&http.to_string()),
        "{why}"
    );
    // Nothing was left running: the control socket is gone, the MSRP port is free again.
    assert!(!control.exists(), "control socket left behind");
    TcpListener::bind(msrp).expect("the MSRP port was released");

    // With the port free the same settings start.
    drop(taken);
    assert_eq!(
        msrpcast_engine_start(c, &mut e),
        MSRPCAST_OK,
        "{}",
        config_error(c)
    );
    assert!(!e.is_null());
    msrpcast_engine_free(e);
    msrpcast_config_free(c);
    let _ = std::fs::remove_dir_all(&dir);
}
