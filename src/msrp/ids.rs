//! Random identifiers: transaction ids, Message-IDs and session-ids (RFC 4975 §7.1, §14.1).
//!
//! An [`IdGen`] is seeded once from the OS (`getrandom`) and then runs xoshiro256** — fast, no
//! system call and no lock on the hot path. Give each owner (connection, sender, thread) its own
//! `IdGen`; it is `Send` but deliberately not shared. Session-ids, which RFC 4975 §14.1 wants
//! unguessable, come straight from the OS instead.
//!
//! Ids use only the 62 alphanumeric characters, a subset of RFC 4975 `ident-char`, so they are
//! valid anywhere an `ident` is (transaction ids, Message-IDs) and never contain `-`.

use bytes::Bytes;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of transaction ids and Message-IDs: 16 characters, about 95 bits of entropy.
pub const ID_LEN: usize = 16;
/// Length of session-ids: 20 characters, about 119 bits (RFC 4975 asks for at least 80).
pub const SESSION_ID_LEN: usize = 20;

/// A per-owner id generator.
#[derive(Debug, Clone)]
pub struct IdGen {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes 8 alphanumeric characters from one random word (62^8 < 2^64; the bias is below 2^-15
/// per word and the entropy about 47.6 bits).
fn base62_8(mut x: u64, out: &mut [u8]) {
    for o in out.iter_mut().take(8) {
        *o = ALPHABET[(x % 62) as usize];
        x /= 62;
    }
}

impl IdGen {
    /// Seeds from the operating system's random source.
    pub fn new() -> Result<IdGen, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        let mut s = [0u64; 4];
        for (w, c) in s.iter_mut().zip(seed.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *w = u64::from_le_bytes(b);
        }
        if s == [0; 4] {
            // The one state xoshiro cannot leave; astronomically unlikely.
            s[0] = 1;
        }
        Ok(IdGen { s })
    }

    /// A deterministic generator, for tests and reproducible simulations.
    pub fn from_seed(seed: u64) -> IdGen {
        let mut x = seed;
        IdGen {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// xoshiro256** (Blackman and Vigna).
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn id16(&mut self) -> [u8; ID_LEN] {
        let mut out = [0u8; ID_LEN];
        base62_8(self.next_u64(), &mut out[..8]);
        base62_8(self.next_u64(), &mut out[8..]);
        out
    }

    /// A fresh transaction id (16 alphanumeric characters).
    pub fn transaction_id(&mut self) -> [u8; ID_LEN] {
        self.id16()
    }

    /// [`IdGen::transaction_id`] as `Bytes`.
    pub fn transaction_id_bytes(&mut self) -> Bytes {
        Bytes::copy_from_slice(&self.id16())
    }

    /// A fresh Message-ID (16 alphanumeric characters).
    pub fn message_id(&mut self) -> Bytes {
        Bytes::copy_from_slice(&self.id16())
    }

    /// A fresh session-id (20 alphanumeric characters) from the OS random source; if that fails,
    /// from this generator.
    pub fn session_id(&mut self) -> Bytes {
        let mut words = [0u8; 24];
        if getrandom::fill(&mut words).is_err() {
            for c in words.chunks_exact_mut(8) {
                c.copy_from_slice(&self.next_u64().to_le_bytes());
            }
        }
        let mut out = [0u8; 24];
        for (o, w) in out.chunks_exact_mut(8).zip(words.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            base62_8(u64::from_le_bytes(b), o);
        }
        Bytes::copy_from_slice(&out[..SESSION_ID_LEN])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_alphanumeric_and_distinct() {
        let mut g = IdGen::new().unwrap();
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let t = g.transaction_id();
            assert!(t.iter().all(u8::is_ascii_alphanumeric));
            assert!(seen.insert(t));
        }
        let m = g.message_id();
        assert_eq!(m.len(), ID_LEN);
        let s = g.session_id();
        assert_eq!(s.len(), SESSION_ID_LEN);
        assert!(s.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(g.session_id(), s);
    }

    #[test]
    fn ids_are_valid_transaction_ids_for_the_parser() {
        let mut g = IdGen::from_seed(7);
        let tid = g.transaction_id();
        let mut frame = b"MSRP ".to_vec();
        frame.extend_from_slice(&tid);
        frame.extend_from_slice(
            b" 200 OK\r\nTo-Path: msrp://a/b;tcp\r\nFrom-Path: msrp://c/d;tcp\r\n-------",
        );
        frame.extend_from_slice(&tid);
        frame.extend_from_slice(b"$\r\n");
        let parsed = crate::msrp::parser::parse(
            &Bytes::from(frame),
            &crate::msrp::parser::Limits::default(),
        );
        assert!(matches!(
            parsed,
            Ok(crate::msrp::parser::Parsed::Complete(..))
        ));
    }

    #[test]
    fn seeded_is_deterministic_and_seeds_differ() {
        let a: Vec<u64> = {
            let mut g = IdGen::from_seed(1);
            (0..4).map(|_| g.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut g = IdGen::from_seed(1);
            (0..4).map(|_| g.next_u64()).collect()
        };
        assert_eq!(a, b);
        let mut c = IdGen::from_seed(2);
        assert_ne!(a[0], c.next_u64());
        assert_ne!(
            IdGen::new().unwrap().transaction_id(),
            IdGen::new().unwrap().transaction_id()
        );
    }

    #[test]
    fn characters_are_spread_over_the_alphabet() {
        let mut g = IdGen::from_seed(42);
        let mut counts = [0u32; 256];
        for _ in 0..10_000 {
            for c in g.transaction_id() {
                counts[c as usize] += 1;
            }
        }
        // 160000 characters over 62 symbols: about 2580 each.
        for &c in ALPHABET {
            let n = counts[c as usize];
            assert!((2200..3000).contains(&n), "{} seen {n} times", c as char);
        }
    }
}
