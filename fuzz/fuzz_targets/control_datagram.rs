//! Fuzzes the control socket's datagram decoders (`runtime::control::Request::decode` and
//! `ReplyPart::decode`), what any local process with access to the socket can send: no panic;
//! a request that decodes encodes to a datagram that decodes to the same request, at most
//! `MAX_MESSAGE_BYTES` long and no longer than the input (the decoder accepts no padding); a
//! reply part that decodes re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msrpcast::runtime::control::{ReplyPart, Request, MAX_MESSAGE_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::decode(data) {
        let mut out = Vec::new();
        req.encode(&mut out).expect("a decoded request encodes");
        assert!(out.len() <= MAX_MESSAGE_BYTES);
        assert!(out.len() <= data.len(), "{} > {}", out.len(), data.len());
        assert_eq!(Request::decode(&out).as_ref(), Ok(&req));
    }
    if let Ok(part) = ReplyPart::decode(data) {
        let mut out = Vec::new();
        part.encode(&mut out);
        assert_eq!(out, data);
    }
});
