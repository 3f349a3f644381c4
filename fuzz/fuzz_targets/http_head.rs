//! The request head parser and what runs right after it (routing, auth lookup) on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msrpcast::http::{auth, parse_head, route, HeadLimits, Parsed};

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits::default();
    if let Ok(Parsed::Complete(head, n)) = parse_head(data, &limits) {
        assert!(n <= data.len() && n <= limits.max_head_bytes);
        // A head one byte shorter is never complete.
        assert!(!matches!(
            parse_head(&data[..n - 1], &limits),
            Ok(Parsed::Complete(..))
        ));
        let _ = route(&head.method, &head.path);
        let _ = auth::credential(&head);
        let _ = head.query_param("conference");
        if let Some(cd) = head.header("content-disposition") {
            let _ = msrpcast::http::parse_content_disposition(cd);
        }
    }
});
