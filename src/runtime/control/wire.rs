//! The control socket's wire format: one request per datagram, STATUS replies in parts.
//!
//! Version 1.
//!
//! One request per datagram, at most [`MAX_MESSAGE_BYTES`]. Integers are little-endian; a
//! *string* is a `u32` byte length followed by that many bytes of UTF-8.
//!
//! ```text
//! datagram    = version:u8 (= 1)  op:u8  fields
//! 1 JOIN        conference:string participant:string target:string has_display:u8 [display:string]
//! 2 LEAVE       conference:string participant:string
//! 3 ANSWERED    delivery:u64 sdp:string
//! 4 REJECTED    delivery:u64 sip_code:u32
//! 5 ENDED       delivery:u64
//! 6 CANCEL      transfer:u64
//! 7 STATUS      request:u32 what:u32            (answered, see below)
//! 8 UPLOAD_FILE conference:string path:string   (spools a local file; see FileUploads)
//! 9 UPLOAD      request:u32 conference:string path:string   (as UPLOAD_FILE, answered)
//! 10 RELOAD_TLS request:u32                     (re-reads the TLS files, answered)
//! 11 UPLOAD_TO  request:u32 conference:string path:string count:u32 key:string{count}
//!                                               (as UPLOAD, for these participants only)
//! 12 OFFER_IN   request:u32 conference:string participant:string dialog:string sdp:string
//!                                               (a participant's push offer, answered)
//! 13 OFFER_IN_ENDED dialog:string               (the push offer's dialog ended: BYE)
//! ```
//!
//! The reply to OFFER_IN is one part with result 0 whose payload is text, not JSON:
//! `<SIP status> <transfer id>\n<body>` — status 200 with the answer SDP as body, or the
//! refusal's status (403, 413, 415, 486, 488, 503, …), transfer 0 and the reason as body.
//!
//! A datagram with trailing bytes, a short field, bad UTF-8, an unknown version or op is counted
//! as malformed and dropped. STATUS and UPLOAD are answered: the reply goes by `sendto` to the
//! requester's own (autobound) address, split into parts of at most [`REPLY_PART_BYTES`]:
//!
//! ```text
//! reply       = version:u8 (= 1)  op:u8 (= 0x87)  request:u32 result:u32 part:u16 parts:u16 payload
//! ```
//!
//! `result` is a C ABI result code (0 = OK); the payloads of parts `0..parts` concatenated are
//! the JSON text. `what` is 1 conferences, 2 transfers, 3 both, 4 the control counters. The
//! reply to UPLOAD is one part: `{"transfer":<id>}` with result 0, or `{"error":"<reason>"}`
//! with the result code of the refusal (e.g. `MSRPCAST_ERR_UNKNOWN_CONFERENCE`, `MSRPCAST_ERR_IO`
//! for a file the engine cannot read). The reply to RELOAD_TLS is one part with the reload's
//! result code: `{"result":"MSRPCAST_OK","msrp":<bool>,"https":<bool>[,"fingerprint":"…"]}`
//! (what was re-read, and the SHA-256 fingerprint of the MSRP certificate now in use), or
//! `{"result":"<code name>","error":"<reason>"}` with `MSRPCAST_ERR_IO` (a file failed; it
//! names the file, the previous certificate stays in use) or `MSRPCAST_ERR_REFUSED` (no TLS on).

/// Largest request datagram.
pub const MAX_MESSAGE_BYTES: usize = 65_536;
/// Largest payload of one STATUS reply datagram.
pub const REPLY_PART_BYTES: usize = 60_000;
/// Wire format version.
pub const VERSION: u8 = 1;

pub const OP_JOIN: u8 = 1;
pub const OP_LEAVE: u8 = 2;
pub const OP_ANSWERED: u8 = 3;
pub const OP_REJECTED: u8 = 4;
pub const OP_ENDED: u8 = 5;
pub const OP_CANCEL: u8 = 6;
pub const OP_STATUS: u8 = 7;
pub const OP_UPLOAD_FILE: u8 = 8;
pub const OP_UPLOAD: u8 = 9;
pub const OP_RELOAD_TLS: u8 = 10;
pub const OP_UPLOAD_TO: u8 = 11;
pub const OP_OFFER_IN: u8 = 12;
pub const OP_OFFER_IN_ENDED: u8 = 13;
pub const OP_STATUS_REPLY: u8 = 0x87;

/// `what` of a status request.
pub const STATUS_CONFERENCES: u32 = 1;
pub const STATUS_TRANSFERS: u32 = 2;
pub const STATUS_ALL: u32 = 3;
pub const STATUS_COUNTERS: u32 = 4;

/// One request, borrowing its strings from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Join {
        conference: &'a str,
        participant: &'a str,
        target: &'a str,
        display: Option<&'a str>,
    },
    Leave {
        conference: &'a str,
        participant: &'a str,
    },
    Answered {
        delivery: u64,
        sdp: &'a str,
    },
    Rejected {
        delivery: u64,
        sip_code: u32,
    },
    Ended {
        delivery: u64,
    },
    Cancel {
        transfer: u64,
    },
    Status {
        request: u32,
        what: u32,
    },
    UploadFile {
        conference: &'a str,
        path: &'a str,
    },
    /// UPLOAD_FILE with an answer (the transfer id) to the requester; with `to`, for those
    /// participants only (UPLOAD_TO on the wire).
    Upload {
        request: u32,
        conference: &'a str,
        path: &'a str,
        to: Option<Vec<&'a str>>,
    },
    /// Re-read the TLS certificates and keys; answered with the outcome.
    ReloadTls {
        request: u32,
    },
    /// A participant's push offer (a file to its conference); answered with the SIP status
    /// and the answer SDP or the reason.
    OfferIn {
        request: u32,
        conference: &'a str,
        participant: &'a str,
        dialog: &'a str,
        sdp: &'a str,
    },
    /// The dialog of a push offer ended (BYE).
    OfferInEnded {
        dialog: &'a str,
    },
}

/// Why a datagram could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The encoded request would exceed [`MAX_MESSAGE_BYTES`].
    TooLong,
    /// The datagram ends inside a field.
    Short,
    /// Bytes after the last field.
    Trailing,
    BadVersion(u8),
    UnknownOp(u8),
    InvalidUtf8,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TooLong => write!(f, "message longer than {MAX_MESSAGE_BYTES} bytes"),
            WireError::Short => f.write_str("datagram ends inside a field"),
            WireError::Trailing => f.write_str("bytes after the last field"),
            WireError::BadVersion(v) => write!(f, "unknown version {v}"),
            WireError::UnknownOp(o) => write!(f, "unknown op {o}"),
            WireError::InvalidUtf8 => f.write_str("string is not UTF-8"),
        }
    }
}

impl std::error::Error for WireError {}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    let n = u32::try_from(s.len()).map_err(|_| WireError::TooLong)?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends the fields of a datagram (the mirror of [`Reader`]).
struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn str(&mut self, s: &str) -> Result<&mut Self, WireError> {
        put_str(self.out, s)?;
        Ok(self)
    }

    /// A count, then each string; stops as soon as the datagram is too long.
    fn strs<S: AsRef<str>>(&mut self, all: &[S]) -> Result<&mut Self, WireError> {
        let n = u32::try_from(all.len()).map_err(|_| WireError::TooLong)?;
        self.u32(n);
        for s in all {
            self.str(s.as_ref())?;
            if self.out.len() > MAX_MESSAGE_BYTES {
                return Err(WireError::TooLong);
            }
        }
        Ok(self)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Short);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self) -> Result<&'a str, WireError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| WireError::InvalidUtf8)
    }

    /// A flag byte, then the string when it is not 0.
    fn opt_str(&mut self) -> Result<Option<&'a str>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.str().map(Some),
        }
    }

    /// A count, then that many strings.
    fn strs(&mut self) -> Result<Vec<&'a str>, WireError> {
        let n = self.u32()?;
        // Not allocated by `n`: each string takes at least 4 bytes of the datagram.
        let mut all = Vec::new();
        for _ in 0..n {
            all.push(self.str()?);
        }
        Ok(all)
    }

    fn end(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

impl<'a> Request<'a> {
    /// Appends the datagram for this request to `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.clear();
        out.push(VERSION);
        self.put(&mut Writer { out })?;
        if out.len() > MAX_MESSAGE_BYTES {
            return Err(WireError::TooLong);
        }
        Ok(())
    }

    /// The operation code and the fields of this request.
    fn put(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match *self {
            Request::Join {
                conference,
                participant,
                target,
                display,
            } => {
                w.u8(OP_JOIN)
                    .str(conference)?
                    .str(participant)?
                    .str(target)?;
                match display {
                    Some(d) => w.u8(1).str(d)?,
                    None => w.u8(0),
                };
            }
            Request::Leave {
                conference,
                participant,
            } => {
                w.u8(OP_LEAVE).str(conference)?.str(participant)?;
            }
            Request::Answered { delivery, sdp } => {
                w.u8(OP_ANSWERED).u64(delivery).str(sdp)?;
            }
            Request::Rejected { delivery, sip_code } => {
                w.u8(OP_REJECTED).u64(delivery).u32(sip_code);
            }
            Request::Ended { delivery } => {
                w.u8(OP_ENDED).u64(delivery);
            }
            Request::Cancel { transfer } => {
                w.u8(OP_CANCEL).u64(transfer);
            }
            Request::Status { request, what } => {
                w.u8(OP_STATUS).u32(request).u32(what);
            }
            Request::UploadFile { conference, path } => {
                w.u8(OP_UPLOAD_FILE).str(conference)?.str(path)?;
            }
            Request::Upload {
                request,
                conference,
                path,
                ref to,
            } => {
                let op = if to.is_some() {
                    OP_UPLOAD_TO
                } else {
                    OP_UPLOAD
                };
                w.u8(op).u32(request).str(conference)?.str(path)?;
                if let Some(keys) = to {
                    w.strs(keys)?;
                }
            }
            Request::ReloadTls { request } => {
                w.u8(OP_RELOAD_TLS).u32(request);
            }
            Request::OfferIn {
                request,
                conference,
                participant,
                dialog,
                sdp,
            } => {
                w.u8(OP_OFFER_IN)
                    .u32(request)
                    .str(conference)?
                    .str(participant)?;
                w.str(dialog)?.str(sdp)?;
            }
            Request::OfferInEnded { dialog } => {
                w.u8(OP_OFFER_IN_ENDED).str(dialog)?;
            }
        }
        Ok(())
    }

    /// Reads one datagram.
    pub fn decode(buf: &'a [u8]) -> Result<Request<'a>, WireError> {
        let mut r = Reader { buf };
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let req = match r.u8()? {
            OP_JOIN => Request::Join {
                conference: r.str()?,
                participant: r.str()?,
                target: r.str()?,
                display: r.opt_str()?,
            },
            OP_LEAVE => Request::Leave {
                conference: r.str()?,
                participant: r.str()?,
            },
            OP_ANSWERED => Request::Answered {
                delivery: r.u64()?,
                sdp: r.str()?,
            },
            OP_REJECTED => Request::Rejected {
                delivery: r.u64()?,
                sip_code: r.u32()?,
            },
            OP_ENDED => Request::Ended { delivery: r.u64()? },
            OP_CANCEL => Request::Cancel { transfer: r.u64()? },
            OP_STATUS => Request::Status {
                request: r.u32()?,
                what: r.u32()?,
            },
            OP_UPLOAD_FILE => Request::UploadFile {
                conference: r.str()?,
                path: r.str()?,
            },
            OP_UPLOAD => Request::Upload {
                request: r.u32()?,
                conference: r.str()?,
                path: r.str()?,
                to: None,
            },
            OP_UPLOAD_TO => Request::Upload {
                request: r.u32()?,
                conference: r.str()?,
                path: r.str()?,
                to: Some(r.strs()?),
            },
            OP_RELOAD_TLS => Request::ReloadTls { request: r.u32()? },
            OP_OFFER_IN => Request::OfferIn {
                request: r.u32()?,
                conference: r.str()?,
                participant: r.str()?,
                dialog: r.str()?,
                sdp: r.str()?,
            },
            OP_OFFER_IN_ENDED => Request::OfferInEnded { dialog: r.str()? },
            op => return Err(WireError::UnknownOp(op)),
        };
        r.end()?;
        Ok(req)
    }
}

/// One part of a STATUS reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPart<'a> {
    pub request: u32,
    /// A C ABI result code; 0 = OK.
    pub result: u32,
    pub part: u16,
    pub parts: u16,
    pub payload: &'a [u8],
}

impl<'a> ReplyPart<'a> {
    pub const HEADER_BYTES: usize = 14;

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION);
        out.push(OP_STATUS_REPLY);
        out.extend_from_slice(&self.request.to_le_bytes());
        out.extend_from_slice(&self.result.to_le_bytes());
        out.extend_from_slice(&self.part.to_le_bytes());
        out.extend_from_slice(&self.parts.to_le_bytes());
        out.extend_from_slice(self.payload);
    }

    pub fn decode(buf: &'a [u8]) -> Result<ReplyPart<'a>, WireError> {
        let mut r = Reader { buf };
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let op = r.u8()?;
        if op != OP_STATUS_REPLY {
            return Err(WireError::UnknownOp(op));
        }
        Ok(ReplyPart {
            request: r.u32()?,
            result: r.u32()?,
            part: r.u16()?,
            parts: r.u16()?,
            payload: r.buf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request<'static>> {
        vec![
            Request::Join {
                conference: "conf",
                participant: "alice",
                target: "sip:alice@example.com",
                display: Some("Alice Ä"),
            },
            Request::Join {
                conference: "c",
                participant: "p",
                target: "t",
                display: None,
            },
            Request::Leave {
                conference: "conf",
                participant: "alice",
            },
            Request::Answered {
                delivery: u64::MAX,
                sdp: "v=0\r\n",
            },
            Request::Rejected {
                delivery: 7,
                sip_code: 486,
            },
            Request::Ended { delivery: 9 },
            Request::Cancel { transfer: 3 },
            Request::Status {
                request: 42,
                what: STATUS_ALL,
            },
            Request::UploadFile {
                conference: "conf",
                path: "/tmp/x",
            },
            Request::Upload {
                request: 9,
                conference: "conf",
                path: "/tmp/ä",
                to: None,
            },
            Request::Upload {
                request: 10,
                conference: "conf",
                path: "/tmp/x",
                to: Some(vec!["alice", "bö b"]),
            },
            Request::ReloadTls { request: 11 },
            Request::OfferIn {
                request: 12,
                conference: "c",
                participant: "sip:a@b",
                dialog: "call-1",
                sdp: "v=0\r\n",
            },
            Request::OfferInEnded { dialog: "call-1" },
        ]
    }

    #[test]
    fn every_request_round_trips() {
        let mut buf = Vec::new();
        for r in all_requests() {
            r.encode(&mut buf).unwrap();
            assert_eq!(Request::decode(&buf).unwrap(), r);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let mut buf = Vec::new();
        for r in all_requests() {
            r.encode(&mut buf).unwrap();
            for cut in 0..buf.len() {
                assert!(Request::decode(&buf[..cut]).is_err(), "{r:?} cut {cut}");
            }
            let mut long = buf.clone();
            long.push(0);
            assert_eq!(Request::decode(&long), Err(WireError::Trailing));
        }
    }

    #[test]
    fn bad_version_op_and_utf8() {
        assert_eq!(Request::decode(&[2, 1]), Err(WireError::BadVersion(2)));
        assert_eq!(Request::decode(&[1, 99]), Err(WireError::UnknownOp(99)));
        let mut buf = vec![1, OP_LEAVE, 1, 0, 0, 0, 0xff, 1, 0, 0, 0, b'a'];
        assert_eq!(Request::decode(&buf), Err(WireError::InvalidUtf8));
        buf[6] = b'c';
        assert_eq!(
            Request::decode(&buf),
            Ok(Request::Leave {
                conference: "c",
                participant: "a"
            })
        );
        // A length that points far past the end is Short, never a panic.
        assert_eq!(
            Request::decode(&[1, OP_LEAVE, 0xff, 0xff, 0xff, 0xff]),
            Err(WireError::Short)
        );
    }

    #[test]
    fn oversize_request_is_refused_by_the_encoder() {
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        let mut buf = Vec::new();
        assert_eq!(
            Request::Answered {
                delivery: 1,
                sdp: &big
            }
            .encode(&mut buf),
            Err(WireError::TooLong)
        );
    }

    #[test]
    fn reply_part_round_trips() {
        let p = ReplyPart {
            request: 5,
            result: 0,
            part: 1,
            parts: 3,
            payload: b"{\"a\":1}",
        };
        let mut buf = Vec::new();
        p.encode(&mut buf);
        assert_eq!(buf.len(), ReplyPart::HEADER_BYTES + 7);
        assert_eq!(ReplyPart::decode(&buf).unwrap(), p);
        assert!(ReplyPart::decode(&buf[..5]).is_err());
    }
}
