//! Fuzzes the SDP answer parser (`sdp::parse_answer_with`), what the participant's SIP UA sends
//! back: no panic, and what it accepts is consistent: a path of 1..=max URIs (the limit of
//! `max_path_uris`, here from the input), the connect and peer URIs its ends, a non-zero port,
//! each URI printing back to text that parses to the same URI; the same text with LF line ends
//! gives the same answer (when every CR of the input ends a line).
//!
//! Input layout: byte 0 is `max_path_uris` (1..=64), the rest the SDP text (lossy UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use msrpcast::msrp::uri::Uri;
use msrpcast::sdp::parse_answer_with;

fuzz_target!(|data: &[u8]| {
    let Some((&m, text)) = data.split_first() else {
        return;
    };
    let max = usize::from(m % 64) + 1;
    let sdp = String::from_utf8_lossy(text);
    let Ok(a) = parse_answer_with(&sdp, max) else {
        return;
    };
    assert!(!a.path.is_empty() && a.path.len() <= max, "{} URIs", a.path.len());
    assert_eq!(&a.connect_to, a.path.first().unwrap());
    assert_eq!(&a.peer, a.path.last().unwrap());
    assert_ne!(a.port, 0);
    for u in &a.path {
        let again = Uri::parse_slice(&u.to_bytes()).expect("printed URI parses");
        assert_eq!(&again, u);
    }
    // Only where every CR ends a line: replacing CRLF in "\r\r\n" leaves a new CRLF (a value's
    // stray CR turns into a line end), which is another text, not the same one with LF ends.
    let lf = sdp.replace("\r\n", "\n");
    if !lf.contains('\r') {
        assert_eq!(parse_answer_with(&lf, max).as_ref(), Ok(&a), "CRLF and LF differ");
    }
});
