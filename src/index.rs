//! The per-segment index: fixed-width entries, so the k-th newest record is found by arithmetic.
//!
//! Index file (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `ALOGIDX\n` |
//! | 8 | 4 | format version, `u32` = 2 |
//! | 12 | 4 | reserved, 0 (a header with anything else here is not used) |
//! | 16 + 4·i | 4 | byte offset in the log of the record with `seq = first_seq + i`, or `0xFFFF_FFFF` when that record was lost to damage |
//!
//! Entry `i` lives at `16 + 4·i`; the newest is the last. The index is a cache of the log: it is
//! never trusted blindly. [`check`] validates it against the log's length before use, and a
//! failing index is rebuilt from the log.

use crate::record::{
    read_u32, DecodeError, FORMAT_VERSION, FRAME_OVERHEAD_BYTES, LOG_HEADER_BYTES,
};

/// Magic bytes at the start of every index file.
pub const INDEX_MAGIC: [u8; 8] = *b"ALOGIDX\n";
/// Size of an index file's header.
pub const INDEX_HEADER_BYTES: usize = 16;
/// Size of one entry.
pub const ENTRY_BYTES: usize = 4;
/// The largest index file: its header and an entry for each record a segment may hold.
pub const MAX_INDEX_FILE_BYTES: u64 =
    INDEX_HEADER_BYTES as u64 + ENTRY_BYTES as u64 * crate::record::MAX_RECORDS_PER_SEGMENT;
/// Entry value for a record lost to damage in the log.
pub const LOST: u32 = u32::MAX;

/// The smallest frame on disk: the payload `{}`.
const MIN_FRAME_BYTES: u32 = (FRAME_OVERHEAD_BYTES + 2) as u32;

/// Encodes an index file header.
pub fn encode_header() -> [u8; INDEX_HEADER_BYTES] {
    let mut out = [0u8; INDEX_HEADER_BYTES];
    out[0..8].copy_from_slice(&INDEX_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out
}

/// Checks the header of an index file image and returns the entry bytes that follow it.
pub fn entries_of(file: &[u8]) -> Result<&[u8], DecodeError> {
    let header = file
        .get(..INDEX_HEADER_BYTES)
        .ok_or(DecodeError::Truncated)?;
    if header[0..8] != INDEX_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = read_u32(header, 8);
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    if header[12..16] != [0; 4] {
        return Err(DecodeError::Reserved);
    }
    Ok(&file[INDEX_HEADER_BYTES..])
}

/// Entry `i` of an entry slice (as returned by [`entries_of`]).
pub fn entry(entries: &[u8], i: usize) -> u32 {
    read_u32(entries, i * ENTRY_BYTES)
}

/// Validates entries against a log of `log_len` bytes.
///
/// Holds when: the entry bytes are a whole number of entries; the first entry is the first frame
/// after the log header; offsets (ignoring [`LOST`]) increase by at least the smallest frame;
/// every offset is inside the log; the last entry is not [`LOST`]. Whether the last record ends
/// exactly at the log's end is for the caller to check, since only it can decode the frame.
pub fn check(entries: &[u8], log_len: u64) -> Result<(), String> {
    if !entries.len().is_multiple_of(ENTRY_BYTES) {
        return Err(format!(
            "{} bytes is not a whole number of entries",
            entries.len()
        ));
    }
    check_iter(
        entries
            .chunks_exact(ENTRY_BYTES)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        log_len,
    )
}

/// [`check`] for entries already decoded.
pub fn check_offsets(entries: &[u32], log_len: u64) -> Result<(), String> {
    // The common case, in passes the compiler vectorises: no lost records, offsets increasing,
    // the first and last in place. Anything else takes the careful pass, which names the fault.
    if let (Some(&first), Some(&last)) = (entries.first(), entries.last()) {
        let plain = first == LOG_HEADER_BYTES as u32
            && !entries.contains(&LOST)
            && u64::from(last) + u64::from(MIN_FRAME_BYTES) <= log_len
            && !entries.windows(2).fold(false, |bad, w| {
                bad | (w[1] < w[0].saturating_add(MIN_FRAME_BYTES))
            });
        if plain {
            return Ok(());
        }
    }
    check_iter(entries.iter().copied(), log_len)
}

/// One pass over the entries (an index of a big segment holds hundreds of thousands).
fn check_iter(entries: impl Iterator<Item = u32>, log_len: u64) -> Result<(), String> {
    let mut prev: Option<u32> = None;
    let mut last = None;
    for (i, e) in entries.enumerate() {
        last = Some(e);
        if i == 0 && e != LOST && e != LOG_HEADER_BYTES as u32 {
            return Err("the first entry does not point at the first record".to_string());
        }
        if e == LOST {
            continue;
        }
        if u64::from(e) + u64::from(MIN_FRAME_BYTES) > log_len {
            return Err(format!("entry {i} points past the end of the log"));
        }
        if let Some(p) = prev {
            if e < p.saturating_add(MIN_FRAME_BYTES) {
                return Err(format!("entry {i} does not increase"));
            }
        }
        prev = Some(e);
    }
    if last == Some(LOST) {
        return Err("the last entry is marked lost".to_string());
    }
    Ok(())
}

/// Decodes the whole entries of an entry slice (a trailing partial entry is ignored). A loop
/// the compiler turns into a copy; the same as an iterator's `collect`, which it did not always
/// vectorise (a 28 K-entry index took twice as long in one build as in another).
pub fn decode_entries(entries: &[u8]) -> Vec<u32> {
    let mut out = vec![0u32; entries.len() / ENTRY_BYTES];
    for (o, c) in out.iter_mut().zip(entries.chunks_exact(ENTRY_BYTES)) {
        *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    out
}

/// Drops the entries at the end that point at or past a log of `log_len` bytes: the index
/// reached the disk, the log did not (recovery, and `verify` as recovery does).
pub fn drop_past_end(entries: &mut Vec<u32>, log_len: u64) {
    while entries
        .last()
        .is_some_and(|&e| e != LOST && u64::from(e) >= log_len)
    {
        entries.pop();
    }
}

/// Appends the encoding of `offsets` to `out`.
pub fn encode_entries(out: &mut Vec<u8>, offsets: &[u32]) {
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rules of [`check`], written out plainly.
    fn model(offsets: &[u32], log_len: u64) -> bool {
        let Some(&last) = offsets.last() else {
            return true;
        };
        if offsets[0] != LOST && offsets[0] != LOG_HEADER_BYTES as u32 || last == LOST {
            return false;
        }
        let real: Vec<u64> = offsets
            .iter()
            .filter(|&&e| e != LOST)
            .map(|&e| u64::from(e))
            .collect();
        real.iter()
            .all(|&e| e + u64::from(MIN_FRAME_BYTES) <= log_len)
            && real
                .windows(2)
                .all(|w| w[1] >= w[0] + u64::from(MIN_FRAME_BYTES))
    }

    /// A header reads only as written: magic, this format's version and zero reserved bytes
    /// (an index with anything else is not used, and is rebuilt from its log).
    #[test]
    fn a_header_reads_only_with_its_reserved_bytes_zero() {
        let mut file = encode_header().to_vec();
        file.extend_from_slice(&(LOG_HEADER_BYTES as u32).to_le_bytes());
        assert_eq!(entries_of(&file), Ok(&file[INDEX_HEADER_BYTES..]));
        for at in 12..16 {
            let mut bad = file.clone();
            bad[at] = 1;
            assert_eq!(entries_of(&bad), Err(DecodeError::Reserved), "byte {at}");
        }
        let mut bad = file.clone();
        bad[8] ^= 1;
        assert_eq!(
            entries_of(&bad),
            Err(DecodeError::Version(FORMAT_VERSION ^ 1))
        );
        assert_eq!(entries_of(&file[..15]), Err(DecodeError::Truncated));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn check_agrees_with_its_rules(
            steps in proptest::collection::vec(
                (prop_oneof![0u32..60, MIN_FRAME_BYTES - 1..MIN_FRAME_BYTES + 1], any::<bool>()),
                0..12,
            ),
            first_lost in any::<bool>(),
            log_len in 0u64..700,
        ) {
            // Offsets near the edges of the rules: steps around the smallest frame, some lost.
            let mut offsets = Vec::new();
            let mut at = LOG_HEADER_BYTES as u32;
            for (k, &(step, lost)) in steps.iter().enumerate() {
                let e = if k == 0 { at } else { at + step };
                at = e;
                offsets.push(if lost || (k == 0 && first_lost) { LOST } else { e });
            }
            let want = model(&offsets, log_len);
            prop_assert_eq!(check(&entries(&offsets), log_len).is_ok(), want);
            prop_assert_eq!(check_offsets(&offsets, log_len).is_ok(), want);
        }
    }

    fn entries(offsets: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_entries(&mut out, offsets);
        out
    }

    #[test]
    fn header_round_trip() {
        let mut file = encode_header().to_vec();
        file.extend(entries(&[32, 60]));
        let e = entries_of(&file).unwrap();
        assert_eq!(entry(e, 0), 32);
        assert_eq!(entry(e, 1), 60);
        file[3] ^= 1;
        assert_eq!(entries_of(&file), Err(DecodeError::BadMagic));
    }

    #[test]
    fn check_accepts_a_good_index() {
        assert!(check(&entries(&[]), 48).is_ok());
        assert!(check(&entries(&[48, 70, 116]), 146).is_ok());
        assert!(check(&entries(&[48, LOST, LOST, 116]), 146).is_ok());
        assert!(
            check(&entries(&[LOST, 116]), 146).is_ok(),
            "first record lost"
        );
    }

    #[test]
    fn check_rejects_damage() {
        let good = entries(&[48, 70, 116]);
        assert!(check(&good[..7], 146).is_err(), "cut mid-entry");
        assert!(
            check(&entries(&[48, 116, 70]), 146).is_err(),
            "non-monotonic"
        );
        assert!(
            check(&entries(&[48, 70, 216]), 146).is_err(),
            "past the log"
        );
        assert!(check(&entries(&[49, 70]), 146).is_err(), "wrong first");
        assert!(
            check(&entries(&[48, 56]), 146).is_err(),
            "overlapping records"
        );
        assert!(check(&entries(&[48, LOST]), 146).is_err(), "lost last");
    }
}
