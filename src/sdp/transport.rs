//! What an answer says about transport security and whether the participant will take the file:
//! `TCP/TLS/MSRP` and `msrps` URIs, `a=fingerprint` (RFC 8122), the direction attribute and
//! `a=max-size` (RFC 4975 §8.6) — and the checks a delivery runs on them before it writes a byte.
//!
//! TLS is required when the `m=` protocol is `TCP/TLS/MSRP` **or** the URI we connect to is
//! `msrps` ([`Answer::requires_tls`]): an answer mixing the two never gets a byte in clear.
//!
//! `a=fingerprint` is read at session level and in the chosen `m=message` section; the
//! section's own fingerprints replace the session's (RFC 8122 §5). Fingerprints with a hash
//! function we do not compute (`md5`, `sha-224`, …) are skipped; a malformed one fails the
//! answer with [`SdpError::BadAttribute`] naming the line.

use std::fmt;

use super::answer::{Answer, Direction};
use super::{shown, SdpError};
use crate::tls::fingerprint::{Fingerprint, FingerprintError};

/// Most `a=fingerprint` lines taken from one answer (each one costs a hash per handshake).
pub const MAX_FINGERPRINTS: usize = 8;

/// The `a=fingerprint` values that apply to the first `m=message` section with `TCP/MSRP` or
/// `TCP/TLS/MSRP` (the section [`parse_answer`](super::parse_answer) uses). Line handling
/// mirrors `parse_answer`: CRLF or LF, blank lines ignored; the caller has already checked the
/// SDP's overall shape with `parse_answer`.
pub fn parse_fingerprints(sdp: &str) -> Result<Vec<Fingerprint>, SdpError> {
    let mut session = Vec::new();
    let mut media = Vec::new();
    let mut in_media = false;
    let mut in_chosen = false;
    let mut chosen_seen = false;
    for (idx, raw) in sdp.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let b = raw.as_bytes();
        if b.len() < 2 || b[1] != b'=' {
            continue;
        }
        // b[0] and b[1] are ASCII, so index 2 is a char boundary.
        let value = &raw[2..];
        match b[0] {
            b'm' => {
                in_media = true;
                in_chosen = false;
                if !chosen_seen && is_msrp_media(value) {
                    chosen_seen = true;
                    in_chosen = true;
                }
            }
            b'a' => {
                let Some((name, v)) = value.split_once(':') else {
                    continue;
                };
                if !name.trim().eq_ignore_ascii_case("fingerprint") {
                    continue;
                }
                let target = if !in_media {
                    &mut session
                } else if in_chosen {
                    &mut media
                } else {
                    continue;
                };
                let bad = || SdpError::BadAttribute {
                    line: idx + 1,
                    text: shown(raw),
                };
                match Fingerprint::parse(v) {
                    Ok(f) => {
                        if target.len() == MAX_FINGERPRINTS {
                            return Err(bad());
                        }
                        target.push(f);
                    }
                    Err(FingerprintError::UnsupportedHash(_)) => {}
                    Err(_) => return Err(bad()),
                }
            }
            _ => {}
        }
    }
    Ok(if media.is_empty() { session } else { media })
}

fn is_msrp_media(m_value: &str) -> bool {
    let mut it = m_value.split_ascii_whitespace();
    let media = it.next().unwrap_or("");
    let _port = it.next();
    let proto = it.next().unwrap_or("");
    media.eq_ignore_ascii_case("message")
        && (proto.eq_ignore_ascii_case("TCP/MSRP") || proto.eq_ignore_ascii_case("TCP/TLS/MSRP"))
}

/// Why a delivery does not start on this answer. Checked before any connection is made, so no
/// byte of the file leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `a=inactive`: the participant takes no media now.
    Inactive,
    /// `a=sendonly`: the participant only sends; it will not take our file.
    NotReceiving,
    /// The file is larger than the answer's `a=max-size`.
    TooLarge { size: u64, max: u64 },
    /// The answer asks for TLS and we have no TLS for this role.
    TlsUnavailable { why: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Inactive => f.write_str("the participant answered a=inactive"),
            Refusal::NotReceiving => {
                f.write_str("the participant answered a=sendonly: it will not receive")
            }
            Refusal::TooLarge { size, max } => write!(
                f,
                "the file ({size} bytes) is larger than the participant's a=max-size ({max})"
            ),
            Refusal::TlsUnavailable { why } => {
                write!(f, "the answer asks for TLS (msrps) but {why}")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// What we can do with TLS at the moment of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsCapability {
    /// MSRP TLS is off (`msrp_tls = off` and no certificate).
    Off,
    /// We can connect over TLS (roots or fingerprint verification) but have no certificate, so
    /// we cannot accept a TLS connection (`a=setup:active`).
    ClientOnly,
    /// Connect and accept.
    Full,
}

impl Answer {
    /// True when the connection to [`Answer::connect_to`] (or from the participant, when it
    /// connects) must be TLS: `TCP/TLS/MSRP`, or an `msrps` URI first in the path or last.
    pub fn requires_tls(&self) -> bool {
        self.tls || self.connect_to.secure || self.peer.secure
    }

    /// True when the `m=` protocol and every `a=path` URI agree on TLS or on plain TCP.
    pub fn transport_consistent(&self) -> bool {
        self.path.iter().all(|u| u.secure == self.tls)
    }

    /// The checks a delivery runs on the answer before anything is connected, in this order:
    /// direction, size (`file_size` when known), TLS.
    pub fn check_delivery(
        &self,
        file_size: Option<u64>,
        tls: TlsCapability,
    ) -> Result<(), Refusal> {
        match self.direction {
            Direction::Inactive => return Err(Refusal::Inactive),
            Direction::SendOnly => return Err(Refusal::NotReceiving),
            Direction::RecvOnly | Direction::SendRecv => {}
        }
        if let (Some(size), Some(max)) = (file_size, self.max_size) {
            if size > max {
                return Err(Refusal::TooLarge { size, max });
            }
        }
        if self.requires_tls() {
            match tls {
                TlsCapability::Off => {
                    return Err(Refusal::TlsUnavailable {
                        why: "TLS is not configured (msrp_tls)".to_owned(),
                    })
                }
                TlsCapability::ClientOnly if !self.we_connect() => {
                    return Err(Refusal::TlsUnavailable {
                        why: "the participant connects to us (a=setup:active) and we have no \
                              certificate (tls_cert, tls_key)"
                            .to_owned(),
                    })
                }
                TlsCapability::ClientOnly | TlsCapability::Full => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::parse_answer;
    use crate::tls::fingerprint::HashFunction;

    const FP256: &str = "sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:\
                         19:E5:7C:AB:3B:E2:F2:7E:1E:4A:AA:1F:2E:6C:59:F2";
    const FP1: &str = "SHA-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB";

    fn answer(extra_session: &str, extra_media: &str) -> String {
        format!(
            "v=0\r\n\
             o=- 1 1 IN IP4 192.0.2.5\r\n\
             s=-\r\n\
             c=IN IP4 192.0.2.5\r\n\
             t=0 0\r\n\
             {extra_session}\
             m=message 2856 TCP/TLS/MSRP *\r\n\
             a=accept-types:*\r\n\
             a=path:msrps://peer.example.com:2856/s3ss;tcp\r\n\
             {extra_media}"
        )
    }

    #[test]
    fn tls_answer_with_media_fingerprint() {
        let sdp = answer(
            "",
            &format!("a=recvonly\r\na=fingerprint:{FP256}\r\na=max-size:1000\r\n"),
        );
        let a = parse_answer(&sdp).unwrap();
        assert!(a.tls && a.requires_tls() && a.transport_consistent());
        assert_eq!(a.direction, Direction::RecvOnly);
        assert_eq!(a.max_size, Some(1000));
        assert_eq!(a.fingerprints, vec![Fingerprint::parse(FP256).unwrap()]);
    }

    #[test]
    fn session_fingerprints_apply_unless_the_media_has_its_own() {
        let session = format!("a=fingerprint:{FP1}\r\n");
        let fps = parse_fingerprints(&answer(&session, "")).unwrap();
        assert_eq!(fps.len(), 1);
        assert_eq!(fps[0].hash, HashFunction::Sha1);

        let media = format!("a=fingerprint:{FP256}\r\n");
        let fps = parse_fingerprints(&answer(&session, &media)).unwrap();
        assert_eq!(fps, vec![Fingerprint::parse(FP256).unwrap()]);

        // Several in the media section, and an unsupported one skipped.
        let media =
            format!("a=fingerprint:{FP256}\r\na=fingerprint:md5 00:11\r\na=Fingerprint:{FP1}\r\n");
        let fps = parse_fingerprints(&answer("", &media)).unwrap();
        assert_eq!(fps.len(), 2);
        assert_eq!(parse_answer(&answer("", &media)).unwrap().fingerprints, fps);
    }

    #[test]
    fn fingerprints_of_other_media_are_ignored() {
        let sdp = format!(
            "{}m=audio 4000 RTP/SAVP 0\r\na=fingerprint:{FP256}\r\n",
            answer("", "")
        );
        assert!(parse_fingerprints(&sdp).unwrap().is_empty());
        let sdp = answer("", "").replace(
            "m=message",
            &format!("m=audio 4000 RTP/AVP 0\r\na=fingerprint:{FP1}\r\nm=message"),
        );
        assert!(parse_answer(&sdp).unwrap().fingerprints.is_empty());
    }

    #[test]
    fn malformed_fingerprints_name_the_line() {
        for bad in [
            "a=fingerprint:sha-256",
            "a=fingerprint:sha-256 zz:11",
            "a=fingerprint:sha-256 AB:CD",
            "a=fingerprint:",
            "a=fingerprint:sha-1 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF",
        ] {
            let sdp = answer("", &format!("{bad}\r\n"));
            let e = parse_answer(&sdp).unwrap_err();
            assert!(
                matches!(e, SdpError::BadAttribute { line: 9, .. }),
                "{bad}: {e:?}"
            );
            assert!(e.to_string().contains("fingerprint"), "{e}");
        }
        let many = format!("a=fingerprint:{FP256}\r\n").repeat(MAX_FINGERPRINTS + 1);
        assert!(matches!(
            parse_fingerprints(&answer("", &many)),
            Err(SdpError::BadAttribute { line: 17, .. })
        ));
        let enough = format!("a=fingerprint:{FP256}\r\n").repeat(MAX_FINGERPRINTS);
        assert_eq!(
            parse_fingerprints(&answer("", &enough)).unwrap().len(),
            MAX_FINGERPRINTS
        );
    }

    #[test]
    fn tls_required_by_the_protocol_or_by_the_uri() {
        let plain = answer("", "")
            .replace("TCP/TLS/MSRP", "TCP/MSRP")
            .replace("msrps://", "msrp://");
        let a = parse_answer(&plain).unwrap();
        assert!(!a.requires_tls() && a.transport_consistent());

        // m= says TLS, the path says msrp: still TLS, flagged inconsistent.
        let a = parse_answer(&answer("", "").replace("msrps://", "msrp://")).unwrap();
        assert!(a.requires_tls() && !a.transport_consistent());
        // m= says TCP, the path says msrps: TLS too.
        let a = parse_answer(&answer("", "").replace("TCP/TLS/MSRP", "TCP/MSRP")).unwrap();
        assert!(a.requires_tls() && !a.transport_consistent());
        // A relay hop in msrps in front of a plain participant URI.
        let relay = plain.replace(
            "a=path:msrp://",
            "a=path:msrps://relay.example.net:2855/r;tcp msrp://",
        );
        let a = parse_answer(&relay).unwrap();
        assert!(a.requires_tls());
    }

    #[test]
    fn direction_decides() {
        for (attr, want) in [
            ("a=recvonly\r\n", Ok(())),
            ("a=sendrecv\r\n", Ok(())),
            ("", Ok(())),
            ("a=inactive\r\n", Err(Refusal::Inactive)),
            ("a=sendonly\r\n", Err(Refusal::NotReceiving)),
        ] {
            let a = parse_answer(&answer("", attr)).unwrap();
            assert_eq!(a.check_delivery(None, TlsCapability::Full), want, "{attr}");
        }
        // Session-level inactive applies when the media says nothing.
        let a = parse_answer(&answer("a=inactive\r\n", "")).unwrap();
        assert_eq!(
            a.check_delivery(None, TlsCapability::Full),
            Err(Refusal::Inactive)
        );
        assert!(Refusal::Inactive.to_string().contains("a=inactive"));
    }

    #[test]
    fn max_size_decides() {
        let a = parse_answer(&answer("", "a=max-size:1000\r\n")).unwrap();
        assert_eq!(a.check_delivery(Some(1000), TlsCapability::Full), Ok(()));
        assert_eq!(a.check_delivery(None, TlsCapability::Full), Ok(()));
        let e = a
            .check_delivery(Some(1001), TlsCapability::Full)
            .unwrap_err();
        assert_eq!(
            e,
            Refusal::TooLarge {
                size: 1001,
                max: 1000
            }
        );
        assert!(e.to_string().contains("a=max-size (1000)"), "{e}");
        for bad in [
            "a=max-size:",
            "a=max-size:ten",
            "a=max-size:-1",
            "a=max-size:1e6",
        ] {
            let r = parse_answer(&answer("", &format!("{bad}\r\n")));
            assert!(
                matches!(r, Err(SdpError::BadAttribute { line: 9, .. })),
                "{bad}: {r:?}"
            );
        }
    }

    #[test]
    fn tls_answer_without_tls_fails_before_connecting() {
        let a = parse_answer(&answer("", "")).unwrap();
        let e = a.check_delivery(Some(1), TlsCapability::Off).unwrap_err();
        assert!(matches!(e, Refusal::TlsUnavailable { .. }));
        assert!(e.to_string().contains("msrp_tls"), "{e}");
        // We connect (setup passive by default): a client-only TLS set-up is enough.
        assert_eq!(a.check_delivery(Some(1), TlsCapability::ClientOnly), Ok(()));
        // The participant connects to us: we need a certificate.
        let active = parse_answer(&answer("", "a=setup:active\r\n")).unwrap();
        let e = active
            .check_delivery(Some(1), TlsCapability::ClientOnly)
            .unwrap_err();
        assert!(e.to_string().contains("tls_cert"), "{e}");
        assert_eq!(active.check_delivery(Some(1), TlsCapability::Full), Ok(()));
        // A plain answer needs nothing.
        let plain = parse_answer(
            &answer("", "")
                .replace("TCP/TLS/MSRP", "TCP/MSRP")
                .replace("msrps://", "msrp://"),
        )
        .unwrap();
        assert_eq!(plain.check_delivery(Some(1), TlsCapability::Off), Ok(()));
    }
}
