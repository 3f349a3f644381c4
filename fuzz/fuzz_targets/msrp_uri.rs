//! Fuzzes MSRP URI and path parsing: no panic, and whatever parses prints back to text that
//! parses to the same URI.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use msrpcast::msrp::uri::{parse_path, Uri};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(u) = Uri::parse(&input) {
        let again = Uri::parse(&u.to_bytes()).expect("printed URI parses");
        assert_eq!(again, u);
        assert!(u.matches(&again));
    }
    let _ = parse_path(&input);
});
