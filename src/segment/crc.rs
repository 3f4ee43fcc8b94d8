//! A record's checksum and the ASCII check of its message in one pass over its bytes, for reads.
//!
//! A newest-first scan spent a third of its time in the CRC-32 and, after it, a tenth in a second
//! pass over the message to learn whether it is ASCII (a message that is ASCII needs no UTF-8
//! check). Here the 16-byte blocks the CRC loads are also OR-ed together, so the ASCII answer
//! comes with the checksum. The CRC is CRC-32/ISO-HDLC (the IEEE polynomial, reflected, as
//! `crc32fast` computes it), folded with carry-less multiplication as in Gopal et al.,
//! *Fast CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction* (Intel, 2009);
//! the fold and Barrett constants are that polynomial's (derived at compile time, and checked
//! against the published ones). On CPUs with AVX-512 and `VPCLMULQDQ`, an input of 32 to 256
//! bytes (a typical record) is read as four 64-byte vectors, without a branch that depends on
//! its length: on an AMD EPYC (Zen 4) a newest-first scan of 267,000 records of 80–250 bytes
//! took 7.3–7.4 ms instead of 9.7 ms, the length-dependent loops' mispredictions gone. Its byte
//! masks then came from comparing each lane's place in the frame with where the record starts
//! instead of from shifted bit masks (86 instructions instead of 168): in another probe, best of
//! 40 scans, 7.40–7.48 ms (11.57 in one slow-mode run) → 6.29–6.37 ms. On such CPUs the ASCII
//! check alone of a message of 1 to 256 bytes (one from the writer's tail copy, say, whose
//! checksum needs no check) is four masked loads too ([`is_ascii_wide`]). CPUs without
//! `PCLMULQDQ`, and inputs under 32 bytes, take `crc32fast` and a separate ASCII check.

/// The CRC-32 of `data` (as `crc32fast::hash`), and whether every byte of `data[skip..]` is
/// below 0x80. `skip` is at most 16.
#[inline]
pub(crate) fn crc32_and_ascii(data: &[u8], skip: usize) -> (u32, bool) {
    debug_assert!(skip <= 16);
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 32 && skip <= 16 {
        match x86::support() {
            x86::Support::Wide if data.len() <= 256 => {
                // SAFETY: the CPU has every feature the function enables (asked by `support`).
                return unsafe { x86::crc32_and_ascii_short(data, skip) };
            }
            x86::Support::Wide | x86::Support::Narrow => {
                // SAFETY: as above.
                return unsafe { x86::crc32_and_ascii(data, skip) };
            }
            x86::Support::None => {}
        }
    }
    let text = data.get(skip..).unwrap_or_default();
    (crc32fast::hash(data), super::is_ascii(text))
}

/// Whether every byte of `data` is below 0x80, on a CPU that runs [`crc32_and_ascii`]'s wide
/// version (AVX-512 F and BW with VPCLMULQDQ; [`x86::support`]) and for `data` of 1 to 256 bytes
/// (a message): four masked 64-byte loads, without a loop or a branch on its length. `None`
/// otherwise (an AVX-512 CPU without VPCLMULQDQ included), for the caller's own check.
#[inline]
pub(crate) fn is_ascii_wide(data: &[u8]) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    if (1..=256).contains(&data.len()) && x86::support() == x86::Support::Wide {
        // SAFETY: the CPU has every feature the function enables (asked by `support`).
        return Some(unsafe { x86::is_ascii_short(data) });
    }
    let _ = data;
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, __m512i, _mm512_clmulepi64_epi128, _mm512_cmpge_epu8_mask,
        _mm512_extracti32x4_epi32, _mm512_loadu_si512, _mm512_mask_cmplt_epu8_mask,
        _mm512_mask_sub_epi8, _mm512_mask_test_epi8_mask, _mm512_maskz_loadu_epi8,
        _mm512_movepi8_mask, _mm512_or_si512, _mm512_set1_epi8, _mm512_set_epi64,
        _mm512_setzero_si512, _mm512_xor_si512, _mm_add_epi8, _mm_and_si128, _mm_blendv_epi8,
        _mm_clmulepi64_si128, _mm_cmpgt_epi8, _mm_cvtsi32_si128, _mm_extract_epi32,
        _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
        _mm_setr_epi8, _mm_shuffle_epi8, _mm_srli_si128, _mm_xor_si128,
    };
    use std::sync::atomic::{AtomicU8, Ordering};

    /// `x^e mod P` for the CRC's polynomial `P` (0x04C11DB7), bit-reflected and shifted left by
    /// one: the form the carry-less folds take their constants in.
    const fn reflected_power(e: u32) -> i64 {
        let mut r: u64 = 1;
        let mut i = 0;
        while i < e {
            r <<= 1;
            if r & (1 << 32) != 0 {
                r ^= 0x1_04C1_1DB7;
            }
            i += 1;
        }
        ((r as u32).reverse_bits() as i64) << 1
    }

    /// The constants that fold 128 bits `bytes` forward, as `(low, high)`: `x^(8 bytes + 32)
    /// mod P` for the low half, `x^(8 bytes - 32) mod P` for the high half.
    const fn fold_constants(bytes: u32) -> (i64, i64) {
        (
            reflected_power(8 * bytes + 32),
            reflected_power(8 * bytes - 32),
        )
    }

    /// Folding 64 bytes forward (four streams of 16) and 16 (one block).
    const K1K2: (i64, i64) = fold_constants(64);
    const K3K4: (i64, i64) = fold_constants(16);
    /// Folding 32, 48, 128 and 192 bytes forward ([`crc32_and_ascii_short`]).
    const K32: (i64, i64) = fold_constants(32);
    const K48: (i64, i64) = fold_constants(48);
    const K128: (i64, i64) = fold_constants(128);
    const K192: (i64, i64) = fold_constants(192);
    /// Barrett reduction: `floor(x^95 / P)` and `P`, bit-reflected.
    const MU: i64 = 0xb4e5_b025_f701_1641_u64 as i64;
    const P: i64 = 0x1_db71_0641;

    /// What this CPU can run.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Support {
        /// Neither: `crc32fast` and a separate ASCII check.
        None,
        /// PCLMULQDQ, SSE4.1 and SSSE3: [`crc32_and_ascii`].
        Narrow,
        /// Those and AVX-512 (F, BW) with VPCLMULQDQ: also [`crc32_and_ascii_short`].
        Wide,
    }

    /// What this CPU can run; asked once, then one load.
    #[inline]
    pub(super) fn support() -> Support {
        // 0: not asked yet; then 1 + the answer.
        static KNOWN: AtomicU8 = AtomicU8::new(0);
        match KNOWN.load(Ordering::Relaxed) {
            0 => {
                let narrow = std::is_x86_feature_detected!("pclmulqdq")
                    && std::is_x86_feature_detected!("sse4.1")
                    && std::is_x86_feature_detected!("ssse3");
                let wide = narrow
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("vpclmulqdq");
                let support = match (narrow, wide) {
                    (_, true) => Support::Wide,
                    (true, false) => Support::Narrow,
                    (false, false) => Support::None,
                };
                KNOWN.store(1 + support as u8, Ordering::Relaxed);
                support
            }
            1 => Support::None,
            2 => Support::Narrow,
            _ => Support::Wide,
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
    /// for a CPU with PCLMULQDQ, SSE4.1 and SSSE3 ([`support`]).
    #[target_feature(enable = "pclmulqdq,sse4.1,ssse3")]
    pub(super) fn crc32_and_ascii(data: &[u8], skip: usize) -> (u32, bool) {
        assert!(data.len() >= 32 && skip <= 16);
        let mut rest = data;
        let k3k4 = _mm_set_epi64x(K3K4.1, K3K4.0);
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
            let k1k2 = _mm_set_epi64x(K1K2.1, K1K2.0);
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
        (reduce(x), _mm_movemask_epi8(high) == 0)
    }

    /// The CRC of a message whose last 16 bytes, with everything before them folded in, are
    /// `x`: 128 bits to 96 (times x^32), then Barrett to 32, then the final inversion.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse4.1")]
    fn reduce(x: __m128i) -> u32 {
        let k3k4 = _mm_set_epi64x(K3K4.1, K3K4.0);
        let x = _mm_xor_si128(
            _mm_clmulepi64_si128::<0x10>(x, k3k4),
            _mm_srli_si128::<8>(x),
        );
        let barrett = _mm_set_epi64x(P, MU);
        let t = _mm_clmulepi64_si128::<0x00>(x, barrett);
        let t = _mm_clmulepi64_si128::<0x10>(t, barrett);
        !(_mm_extract_epi32::<2>(_mm_xor_si128(x, t)) as u32)
    }

    /// The numbers 0 to 255 in order, aligned for one 64-byte vector per cache line: the place of
    /// each byte lane in [`crc32_and_ascii_short`]'s 256-byte frame.
    #[repr(align(64))]
    struct Places([u8; 256]);
    static FRAME_PLACES: Places = Places({
        let mut p = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            p[i] = i as u8;
            i += 1;
        }
        p
    });

    /// Vector `j` (0 to 3) of the 256-byte frame whose last bytes end at `end`, its bytes before
    /// `first` (the frame's place of the first byte to read, in every lane) zeros: each lane's
    /// place in the frame, the mask of the lanes read, and the bytes.
    ///
    /// # Safety
    ///
    /// The frame's bytes from `first` to its end must be readable: `end - 256 + first .. end`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn frame_vector(end: *const u8, j: usize, first: __m512i) -> (__m512i, u64, __m512i) {
        // Each byte lane's place in the frame, `64 j + i`: the masks compare it with places, one
        // instruction each, instead of shifting bit masks.
        // SAFETY: `FRAME_PLACES` holds 256 bytes and the load needs no alignment.
        let place = unsafe { _mm512_loadu_si512(FRAME_PLACES.0.as_ptr().add(64 * j).cast()) };
        let keep = _mm512_cmpge_epu8_mask(place, first);
        // SAFETY: the mask keeps only frame bytes at or after `first`, which the caller vouches
        // for (`end - 256 + 64 j + i` for bit `i`); a masked load reads no other byte and needs
        // no alignment (AVX-512 F and BW are enabled here).
        let bytes = unsafe { _mm512_maskz_loadu_epi8(keep, end.wrapping_sub(256 - 64 * j).cast()) };
        (place, keep, bytes)
    }

    /// `a`'s four 128-bit lanes each folded forward by the constants in `k`'s matching lane.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn fold_lanes(a: __m512i, k: __m512i) -> __m512i {
        _mm512_xor_si512(
            _mm512_clmulepi64_epi128::<0x00>(a, k),
            _mm512_clmulepi64_epi128::<0x11>(a, k),
        )
    }

    /// `(low, high)` in every 128-bit lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn every_lane((low, high): (i64, i64)) -> __m512i {
        _mm512_set_epi64(high, low, high, low, high, low, high, low)
    }

    /// [`super::crc32_and_ascii`] for `data` of 32 to 256 bytes (a typical record), without a
    /// branch that depends on its length: a loop whose trip counts vary from record to record
    /// mispredicts, and the CPU then cannot work on the next record's checksum while this
    /// one's multiplications wait for each other.
    ///
    /// The message is read as the last bytes of a 256-byte frame, four 64-byte vectors, whose
    /// bytes before it are zeros: masked loads, which touch only the bytes they keep. Leading
    /// zeros leave a CRC unchanged once its initial all-ones is applied to the message's
    /// first four bytes, as here. The first three vectors fold straight onto the fourth, its
    /// four lanes onto its last, and that 128-bit remainder is reduced as usual. Only for a
    /// CPU with AVX-512 F and BW, VPCLMULQDQ, PCLMULQDQ and SSE4.1 ([`support`]).
    #[target_feature(enable = "avx512f,avx512bw,vpclmulqdq,pclmulqdq,sse4.1")]
    pub(super) fn crc32_and_ascii_short(data: &[u8], skip: usize) -> (u32, bool) {
        assert!((32..=256).contains(&data.len()) && skip <= 16);
        // Where in the frame `data` starts, where its bytes past the CRC's initial all-ones
        // start, and where its text starts, each in every byte lane (all are below 256).
        let off = 256 - data.len();
        let lane = |at: usize| _mm512_set1_epi8(at as u8 as i8);
        let (first, past_ones, text) = (lane(off), lane(off + 4), lane(off + skip));
        let end = data.as_ptr().wrapping_add(data.len());
        let high_bits = _mm512_set1_epi8(-128);
        let all_ones = _mm512_set1_epi8(-1);
        let mut high = 0;
        let mut v = [_mm512_setzero_si512(); 4];
        for (j, v) in v.iter_mut().enumerate() {
            // SAFETY: the frame's bytes from `off` on are `data`'s.
            let (place, keep, bytes) = unsafe { frame_vector(end, j, first) };
            high |=
                _mm512_mask_test_epi8_mask(_mm512_cmpge_epu8_mask(place, text), bytes, high_bits);
            // The CRC's initial all-ones, on the message's first four bytes (which may straddle
            // two vectors): `0xff - b` is `!b`.
            let ones = _mm512_mask_cmplt_epu8_mask(keep, place, past_ones);
            *v = _mm512_mask_sub_epi8(bytes, ones, all_ones, bytes);
        }
        let x = _mm512_xor_si512(
            _mm512_xor_si512(v[3], fold_lanes(v[0], every_lane(K192))),
            _mm512_xor_si512(
                fold_lanes(v[1], every_lane(K128)),
                fold_lanes(v[2], every_lane(K1K2)),
            ),
        );
        // Lanes 0, 1 and 2 fold 48, 32 and 16 bytes forward onto lane 3.
        let (a, b, c) = (K48, K32, K3K4);
        let to_last = _mm512_set_epi64(0, 0, c.1, c.0, b.1, b.0, a.1, a.0);
        let folded = fold_lanes(x, to_last);
        let x = _mm_xor_si128(
            _mm_xor_si128(
                _mm512_extracti32x4_epi32::<0>(folded),
                _mm512_extracti32x4_epi32::<1>(folded),
            ),
            _mm_xor_si128(
                _mm512_extracti32x4_epi32::<2>(folded),
                _mm512_extracti32x4_epi32::<3>(x),
            ),
        );
        (reduce(x), high == 0)
    }

    /// [`super::is_ascii_wide`] for `data` of 1 to 256 bytes, read as the last bytes of a
    /// 256-byte frame as in [`crc32_and_ascii_short`]. Only for a CPU with AVX-512 F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn is_ascii_short(data: &[u8]) -> bool {
        assert!((1..=256).contains(&data.len()));
        let first = _mm512_set1_epi8((256 - data.len()) as u8 as i8);
        let end = data.as_ptr().wrapping_add(data.len());
        let mut any = _mm512_setzero_si512();
        for j in 0..4 {
            // SAFETY: the frame's bytes from `256 - data.len()` on are `data`'s.
            let (_, _, bytes) = unsafe { frame_vector(end, j, first) };
            any = _mm512_or_si512(any, bytes);
        }
        _mm512_movepi8_mask(any) == 0
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The derived constants are the published ones for this polynomial (Gopal et al.; the
        /// ones `crc32fast` and Linux use to fold by 16 and 64 bytes).
        #[test]
        fn fold_constants_are_the_published_ones() {
            assert_eq!(K3K4, (0x1_7519_97d0, 0x0_ccaa_009e));
            assert_eq!(K1K2, (0x1_5444_2bd4, 0x1_c6e4_1596));
        }
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
        agrees(0..600, crc32_and_ascii);
    }

    /// Each of the x86 versions this CPU can run, on the lengths it takes, whichever the
    /// dispatch would choose.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_x86_version_this_cpu_runs_agrees() {
        use super::x86::{self, Support};
        let support = x86::support();
        if support != Support::None {
            // SAFETY: the CPU has what the function enables.
            agrees(32..600, |d, s| unsafe { x86::crc32_and_ascii(d, s) });
        }
        if support == Support::Wide {
            // SAFETY: as above.
            agrees(32..257, |d, s| unsafe { x86::crc32_and_ascii_short(d, s) });
        }
    }

    /// The wide ASCII check, where this CPU runs it, against a plain one: every length to 300
    /// (those over 256 are left to the caller), ASCII bytes with one high byte at each position
    /// in turn, and random bytes.
    #[test]
    fn the_wide_ascii_check_agrees_with_a_plain_one() {
        let plain = |d: &[u8]| d.iter().all(|&b| b < 0x80);
        let wide = super::is_ascii_wide(b"x").is_some();
        for len in 0..300 {
            let random = bytes(len as u64 * 7 + 1, len);
            let ascii: Vec<u8> = random.iter().map(|b| b & 0x7f).collect();
            let mut cases = vec![random, ascii.clone()];
            for at in 0..len {
                let mut one = ascii.clone();
                one[at] |= 0x80;
                cases.push(one);
            }
            for d in &cases {
                let got = super::is_ascii_wide(d);
                assert_eq!(got.is_some(), wide && (1..=256).contains(&len), "{len}");
                if let Some(got) = got {
                    assert_eq!(got, plain(d), "{len} {d:?}");
                }
                assert_eq!(super::super::is_ascii(d), plain(d), "{len} {d:?}");
            }
        }
    }

    /// Wide-vector reads of a short message touch none of the bytes around it: a message at
    /// the very start and at the very end of a mapped page, whose neighbours are unmapped.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn short_messages_at_the_edges_of_a_page_are_read_within_them() {
        let page = 4096;
        let mut map = memmap2::MmapMut::map_anon(3 * page).unwrap();
        let base = map.as_mut_ptr();
        let guard = |at: usize| {
            // SAFETY: the page is this map's, which nothing borrows while it is protected; any
            // read of it then faults.
            unsafe {
                rustix::mm::mprotect(
                    base.add(at).cast(),
                    page,
                    rustix::mm::MprotectFlags::empty(),
                )
            }
            .unwrap();
        };
        for (i, b) in map[page..2 * page].iter_mut().enumerate() {
            *b = (i % 97) as u8;
        }
        guard(0);
        guard(2 * page);
        let middle = &map[page..2 * page];
        for len in [1, 2, 31, 32, 33, 100, 255, 256] {
            for data in [&middle[..len], &middle[page - len..]] {
                if len >= 32 {
                    let want = (crc32fast::hash(data), data[3..].iter().all(|&b| b < 0x80));
                    assert_eq!(crc32_and_ascii(data, 3), want, "{len}");
                }
                let ascii = data.iter().all(|&b| b < 0x80);
                assert_eq!(super::super::is_ascii(data), ascii, "{len}");
            }
        }
    }

    fn agrees(lens: std::ops::Range<usize>, f: impl Fn(&[u8], usize) -> (u32, bool)) {
        for len in lens {
            for skip in 0..=16usize.min(len) {
                let random = bytes(len as u64 * 31 + skip as u64, len);
                let want = |d: &[u8]| (crc32fast::hash(d), d[skip..].iter().all(|&b| b < 0x80));
                assert_eq!(f(&random, skip), want(&random), "{len} {skip}");
                let ascii: Vec<u8> = random.iter().map(|b| b & 0x7f).collect();
                assert_eq!(f(&ascii, skip), want(&ascii), "{len} {skip}");
                if len <= 300 {
                    for at in 0..len {
                        let mut one = ascii.clone();
                        one[at] |= 0x80;
                        assert_eq!(f(&one, skip), want(&one), "{len} {skip} {at}");
                    }
                }
            }
        }
    }
}
