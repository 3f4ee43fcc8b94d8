//! A record's checksum and the ASCII check of its message in one pass over its bytes, for reads.
//!
//! A newest-first scan spent a third of its time in the CRC-32 and, after it, a tenth in a second
//! pass over the message to learn whether it is ASCII (a message that is ASCII needs no UTF-8
//! check). Here the 16-byte blocks the CRC loads are also OR-ed together, so the ASCII answer
//! comes with the checksum. The CRC is CRC-32/ISO-HDLC (the IEEE polynomial, reflected, as
//! `crc32fast` computes it), folded with carry-less multiplication as in Gopal et al.,
//! *Fast CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction* (Intel, 2009);
//! the fold and Barrett constants are that polynomial's. CPUs without `PCLMULQDQ`, and inputs
//! under 32 bytes, take `crc32fast` and a separate ASCII check.

/// The CRC-32 of `data` (as `crc32fast::hash`), and whether every byte of `data[skip..]` is
/// below 0x80. `skip` is at most 16.
pub(crate) fn crc32_and_ascii(data: &[u8], skip: usize) -> (u32, bool) {
    debug_assert!(skip <= 16);
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 32 && skip <= 16 && x86::supported() {
        // SAFETY: the CPU has every feature the function enables (checked just now).
        return unsafe { x86::crc32_and_ascii(data, skip) };
    }
    let text = data.get(skip..).unwrap_or_default();
    (crc32fast::hash(data), super::is_ascii(text))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_and_si128, _mm_blendv_epi8, _mm_clmulepi64_si128,
        _mm_cmpgt_epi8, _mm_cvtsi32_si128, _mm_extract_epi32, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x, _mm_setr_epi8, _mm_shuffle_epi8,
        _mm_srli_si128, _mm_xor_si128,
    };
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Fold constants for the polynomial 0x04C11DB7, bit-reflected: `x^(512+32) mod P` and
    /// `x^(512-32) mod P` fold 64 bytes ahead, `x^(128+32) mod P` and `x^(128-32) mod P` 16.
    const K1: i64 = 0x1_5444_2bd4;
    const K2: i64 = 0x1_c6e4_1596;
    const K3: i64 = 0x1_7519_97d0;
    const K4: i64 = 0x0_ccaa_009e;
    /// Barrett reduction: `floor(x^95 / P)` and `P`, bit-reflected.
    const MU: i64 = 0xb4e5_b025_f701_1641_u64 as i64;
    const P: i64 = 0x1_db71_0641;

    /// Whether this CPU has what [`crc32_and_ascii`] needs; asked once, then one load.
    pub(super) fn supported() -> bool {
        // 0: not asked yet; 1: no; 2: yes.
        static KNOWN: AtomicU8 = AtomicU8::new(0);
        match KNOWN.load(Ordering::Relaxed) {
            0 => {
                let yes = std::is_x86_feature_detected!("pclmulqdq")
                    && std::is_x86_feature_detected!("sse4.1")
                    && std::is_x86_feature_detected!("ssse3");
                KNOWN.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
            known => known == 2,
        }
    }

    /// The next 16 bytes of `rest`, which then starts after them.
    #[inline(always)]
    fn next(rest: &mut &[u8]) -> __m128i {
        let block = &rest[..16];
        // SAFETY: `block` is 16 readable bytes and the load needs no alignment; SSE2 is part of
        // every x86-64 CPU.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        *rest = &rest[16..];
        v
    }

    /// `a` folded 128 bits (or 512, with those constants) forward into `b`.
    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    fn fold(a: __m128i, b: __m128i, k: __m128i) -> __m128i {
        let lo = _mm_clmulepi64_si128::<0x00>(a, k);
        let hi = _mm_clmulepi64_si128::<0x11>(a, k);
        _mm_xor_si128(_mm_xor_si128(b, lo), hi)
    }

    /// [`super::crc32_and_ascii`] for `data` of at least 32 bytes and `skip` at most 16. Only
    /// for a CPU with PCLMULQDQ, SSE4.1 and SSSE3 ([`supported`]).
    #[target_feature(enable = "pclmulqdq,sse4.1,ssse3")]
    pub(super) fn crc32_and_ascii(data: &[u8], skip: usize) -> (u32, bool) {
        assert!(data.len() >= 32 && skip <= 16);
        let mut rest = data;
        let k3k4 = _mm_set_epi64x(K4, K3);
        // Bytes `0..16` in order: lanes at or past `skip` are kept for the ASCII check.
        let lanes = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let keep = _mm_cmpgt_epi8(lanes, _mm_set1_epi8(skip as i8 - 1));
        let first = next(&mut rest);
        // Every loaded block OR-ed in: a byte's high bit survives if any byte had it.
        let mut high = _mm_and_si128(first, keep);
        // The CRC starts from all ones.
        let first = _mm_xor_si128(first, _mm_cvtsi32_si128(-1));
        let mut x = if data.len() >= 128 {
            // Four streams, 64 bytes per round.
            let (mut x3, mut x2, mut x1, mut x0) =
                (first, next(&mut rest), next(&mut rest), next(&mut rest));
            high = _mm_or_si128(high, _mm_or_si128(x2, _mm_or_si128(x1, x0)));
            let k1k2 = _mm_set_epi64x(K2, K1);
            while rest.len() >= 64 {
                let (a, b, c, d) = (
                    next(&mut rest),
                    next(&mut rest),
                    next(&mut rest),
                    next(&mut rest),
                );
                high = _mm_or_si128(high, _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)));
                x3 = fold(x3, a, k1k2);
                x2 = fold(x2, b, k1k2);
                x1 = fold(x1, c, k1k2);
                x0 = fold(x0, d, k1k2);
            }
            fold(fold(fold(x3, x2, k3k4), x1, k3k4), x0, k3k4)
        } else {
            first
        };
        while rest.len() >= 16 {
            let v = next(&mut rest);
            high = _mm_or_si128(high, v);
            x = fold(x, v, k3k4);
        }
        let n = rest.len();
        if n > 0 {
            // The last `n` (1..=15) bytes: `x` and they are `16 + n` bytes of message. Its first
            // `n` bytes (the low ones of `x`) fold forward into the last 16: the high `16 - n`
            // bytes of `x`, then the `n` new bytes, which one load ending at the end of `data`
            // reads (its first `16 - n` bytes were folded already; the blend drops them, and
            // the ASCII check may see them twice).
            let tail = next(&mut &data[data.len() - 16..]);
            high = _mm_or_si128(high, tail);
            let shl = _mm_add_epi8(lanes, _mm_set1_epi8(n as i8 - 16));
            let shr = _mm_xor_si128(shl, _mm_set1_epi8(-128));
            let head = _mm_shuffle_epi8(x, shl);
            let last = _mm_blendv_epi8(_mm_shuffle_epi8(x, shr), tail, shr);
            x = fold(head, last, k3k4);
        }
        // 128 bits to 96 (times x^32), then Barrett to 32.
        let x = _mm_xor_si128(
            _mm_clmulepi64_si128::<0x10>(x, k3k4),
            _mm_srli_si128::<8>(x),
        );
        let barrett = _mm_set_epi64x(P, MU);
        let t = _mm_clmulepi64_si128::<0x00>(x, barrett);
        let t = _mm_clmulepi64_si128::<0x10>(t, barrett);
        let crc = !(_mm_extract_epi32::<2>(_mm_xor_si128(x, t)) as u32);
        (crc, _mm_movemask_epi8(high) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::crc32_and_ascii;

    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 56) as u8
            })
            .collect()
    }

    /// Against `crc32fast` and a plain ASCII check: every length to 600, every `skip`, random
    /// bytes (rarely ASCII) and ASCII bytes with one high byte at each position in turn.
    #[test]
    fn agrees_with_crc32fast_and_a_plain_ascii_check() {
        for len in 0..600 {
            for skip in 0..=16usize.min(len) {
                let random = bytes(len as u64 * 31 + skip as u64, len);
                let want = |d: &[u8]| (crc32fast::hash(d), d[skip..].iter().all(|&b| b < 0x80));
                assert_eq!(
                    crc32_and_ascii(&random, skip),
                    want(&random),
                    "{len} {skip}"
                );
                let ascii: Vec<u8> = random.iter().map(|b| b & 0x7f).collect();
                assert_eq!(crc32_and_ascii(&ascii, skip), want(&ascii), "{len} {skip}");
                if len <= 300 {
                    for at in 0..len {
                        let mut one = ascii.clone();
                        one[at] |= 0x80;
                        assert_eq!(crc32_and_ascii(&one, skip), want(&one), "{len} {skip} {at}");
                    }
                }
            }
        }
    }
}
