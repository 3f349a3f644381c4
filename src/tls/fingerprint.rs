//! The certificate fingerprint of SDP's `a=fingerprint` (RFC 8122 §5, which obsoletes RFC 4572):
//!
//! ```text
//! attribute   = "fingerprint:" hash-func SP fingerprint
//! hash-func   = "sha-1" / "sha-224" / "sha-256" / "sha-384" / "sha-512" / "md5" / "md2" / token
//! fingerprint = 2UHEX *(":" 2UHEX)
//! ```
//!
//! The hash is over the DER of the end-entity certificate. We compute and accept SHA-1, SHA-256,
//! SHA-384 and SHA-512; hex digits are accepted in either case (several stacks send lower case)
//! and printed in upper case. When an SDP carries several fingerprints, [`matches_any`] uses only
//! those with the strongest hash function we support (RFC 8122 §5: the weaker ones add nothing).

use std::fmt;

/// A hash function of `a=fingerprint` that we can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashFunction {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashFunction {
    /// The RFC 8122 name (`sha-256`).
    pub fn name(self) -> &'static str {
        match self {
            HashFunction::Sha1 => "sha-1",
            HashFunction::Sha256 => "sha-256",
            HashFunction::Sha384 => "sha-384",
            HashFunction::Sha512 => "sha-512",
        }
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashFunction::Sha1 => 20,
            HashFunction::Sha256 => 32,
            HashFunction::Sha384 => 48,
            HashFunction::Sha512 => 64,
        }
    }

    fn algorithm(self) -> &'static ring::digest::Algorithm {
        match self {
            HashFunction::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashFunction::Sha256 => &ring::digest::SHA256,
            HashFunction::Sha384 => &ring::digest::SHA384,
            HashFunction::Sha512 => &ring::digest::SHA512,
        }
    }

    /// Parses a hash-func name, case-insensitively (RFC 8122 names are tokens).
    pub fn parse(name: &str) -> Result<HashFunction, FingerprintError> {
        match name.to_ascii_lowercase().as_str() {
            "sha-1" => Ok(HashFunction::Sha1),
            "sha-256" => Ok(HashFunction::Sha256),
            "sha-384" => Ok(HashFunction::Sha384),
            "sha-512" => Ok(HashFunction::Sha512),
            "" => Err(FingerprintError::Malformed("no hash function")),
            _ => Err(FingerprintError::UnsupportedHash(
                name.chars().take(32).collect(),
            )),
        }
    }
}

/// Why an `a=fingerprint` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerprintError {
    /// Not `hash-func SP 2HEX *(":" 2HEX)`.
    Malformed(&'static str),
    /// A hash function we do not compute (`md5`, `sha-224`, an unknown token).
    UnsupportedHash(String),
    /// The number of bytes does not fit the hash function.
    WrongLength { hash: HashFunction, got: usize },
}

impl fmt::Display for FingerprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FingerprintError::Malformed(why) => write!(f, "malformed fingerprint: {why}"),
            FingerprintError::UnsupportedHash(h) => {
                write!(f, "unsupported fingerprint hash function {h:?}")
            }
            FingerprintError::WrongLength { hash, got } => write!(
                f,
                "a {} fingerprint has {} bytes, not {got}",
                hash.name(),
                hash.digest_len()
            ),
        }
    }
}

impl std::error::Error for FingerprintError {}

/// A certificate fingerprint: hash function and digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub hash: HashFunction,
    pub digest: Vec<u8>,
}

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(hash: HashFunction, cert_der: &[u8]) -> Fingerprint {
        Fingerprint {
            hash,
            digest: ring::digest::digest(hash.algorithm(), cert_der)
                .as_ref()
                .to_vec(),
        }
    }

    /// Parses the value of `a=fingerprint:` (`sha-256 AB:CD:…`). Surrounding blanks are ignored;
    /// exactly one space or tab separates the two fields (more are tolerated).
    pub fn parse(value: &str) -> Result<Fingerprint, FingerprintError> {
        let value = value.trim_matches([' ', '\t']);
        let (name, hex) = value
            .split_once([' ', '\t'])
            .ok_or(FingerprintError::Malformed(
                "no space after the hash function",
            ))?;
        let hash = HashFunction::parse(name)?;
        let hex = hex.trim_start_matches([' ', '\t']);
        let mut digest = Vec::with_capacity(hash.digest_len());
        for pair in hex.split(':') {
            let b = pair.as_bytes();
            if b.len() != 2 {
                return Err(FingerprintError::Malformed("not pairs of hex digits"));
            }
            let (Some(hi), Some(lo)) = (hex_val(b[0]), hex_val(b[1])) else {
                return Err(FingerprintError::Malformed("not a hex digit"));
            };
            if digest.len() == 64 {
                // Longer than any hash we know: stop before allocating more.
                return Err(FingerprintError::WrongLength {
                    hash,
                    got: hex.split(':').count(),
                });
            }
            digest.push(hi << 4 | lo);
        }
        if digest.len() != hash.digest_len() {
            return Err(FingerprintError::WrongLength {
                hash,
                got: digest.len(),
            });
        }
        Ok(Fingerprint { hash, digest })
    }

    /// True when `cert_der` has this fingerprint.
    pub fn matches(&self, cert_der: &[u8]) -> bool {
        let got = ring::digest::digest(self.hash.algorithm(), cert_der);
        // Not secret: the fingerprint is public; a plain comparison is fine.
        got.as_ref() == self.digest.as_slice()
    }
}

/// `sha-256 AB:CD:…` — the `a=fingerprint:` value.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash.name())?;
        f.write_str(" ")?;
        for (i, b) in self.digest.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether `cert_der` matches the given fingerprints: only those with the strongest hash function
/// present count (RFC 8122 §5). `Err` carries the certificate's fingerprint with that hash
/// function, for the error message. An empty list never matches.
pub fn matches_any(fingerprints: &[Fingerprint], cert_der: &[u8]) -> Result<(), Fingerprint> {
    let strongest = fingerprints
        .iter()
        .map(|f| f.hash)
        .max()
        .unwrap_or(HashFunction::Sha256);
    let actual = Fingerprint::of(strongest, cert_der);
    if fingerprints
        .iter()
        .any(|f| f.hash == strongest && f.digest == actual.digest)
    {
        Ok(())
    } else {
        Err(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_print_every_hash() {
        for (h, n) in [
            (HashFunction::Sha1, 20),
            (HashFunction::Sha256, 32),
            (HashFunction::Sha384, 48),
            (HashFunction::Sha512, 64),
        ] {
            let text = format!(
                "{} {}",
                h.name(),
                (0..n)
                    .map(|i| format!("{:02X}", i * 3 % 256))
                    .collect::<Vec<_>>()
                    .join(":")
            );
            let f = Fingerprint::parse(&text).unwrap();
            assert_eq!(f.hash, h);
            assert_eq!(f.digest.len(), n);
            assert_eq!(f.to_string(), text);
        }
    }

    #[test]
    fn lower_case_and_blanks_are_tolerated() {
        let f = Fingerprint::parse(
            "  SHA-1\t\tab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01 ",
        )
        .unwrap();
        assert_eq!(f.hash, HashFunction::Sha1);
        assert_eq!(
            f.to_string(),
            "sha-1 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"
        );
    }

    #[test]
    fn malformed_values() {
        use FingerprintError as E;
        let sha1_hex = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01";
        assert!(matches!(Fingerprint::parse(""), Err(E::Malformed(_))));
        assert!(matches!(
            Fingerprint::parse("sha-256"),
            Err(E::Malformed(_))
        ));
        assert!(matches!(
            Fingerprint::parse(&format!("md5 {sha1_hex}")),
            Err(E::UnsupportedHash(h)) if h == "md5"
        ));
        assert!(matches!(
            Fingerprint::parse(&format!("sha-224 {sha1_hex}")),
            Err(E::UnsupportedHash(_))
        ));
        // Right syntax, wrong length for the function.
        assert_eq!(
            Fingerprint::parse(&format!("sha-256 {sha1_hex}")),
            Err(E::WrongLength {
                hash: HashFunction::Sha256,
                got: 20
            })
        );
        for bad in [
            "sha-1 AB:CD:",
            "sha-1 ABC:DE",
            "sha-1 A:BC",
            "sha-1 GG:00",
            "sha-1 AB::CD",
            "sha-1 AB-CD",
            "sha-1 :AB",
        ] {
            assert!(
                matches!(Fingerprint::parse(bad), Err(E::Malformed(_))),
                "{bad}"
            );
        }
        // A very long value stops early and reports the count.
        let long = format!("sha-512 {}", vec!["00"; 10_000].join(":"));
        assert!(matches!(
            Fingerprint::parse(&long),
            Err(E::WrongLength { got: 10_000, .. })
        ));
    }

    #[test]
    fn computes_known_digests() {
        // SHA-256 of "abc" (FIPS 180-2 example).
        let f = Fingerprint::of(HashFunction::Sha256, b"abc");
        assert_eq!(
            f.to_string(),
            "sha-256 BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert!(f.matches(b"abc"));
        assert!(!f.matches(b"abd"));
        let f1 = Fingerprint::of(HashFunction::Sha1, b"abc");
        assert_eq!(
            f1.digest[..4],
            [0xa9, 0x99, 0x3e, 0x36],
            "SHA-1(abc) = a9993e36…"
        );
    }

    #[test]
    fn strongest_hash_decides() {
        let cert = b"not really a certificate";
        let good256 = Fingerprint::of(HashFunction::Sha256, cert);
        let good1 = Fingerprint::of(HashFunction::Sha1, cert);
        let bad512 = Fingerprint::of(HashFunction::Sha512, b"other");
        assert!(matches_any(std::slice::from_ref(&good256), cert).is_ok());
        assert!(matches_any(&[good1.clone(), good256.clone()], cert).is_ok());
        // A wrong SHA-512 is not saved by a right SHA-1: the strongest decides.
        let err = matches_any(&[good1, bad512], cert).unwrap_err();
        assert_eq!(err, Fingerprint::of(HashFunction::Sha512, cert));
        assert!(matches_any(&[], cert).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(h in 0usize..4, seed in any::<u64>()) {
            let hash = [HashFunction::Sha1, HashFunction::Sha256, HashFunction::Sha384, HashFunction::Sha512][h];
            let f = Fingerprint::of(hash, &seed.to_le_bytes());
            prop_assert_eq!(Fingerprint::parse(&f.to_string()).unwrap(), f);
        }

        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = Fingerprint::parse(&s);
        }
    }
}
