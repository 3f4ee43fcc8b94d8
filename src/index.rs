//! The per-segment index: fixed-width entries, so the k-th newest record is found by arithmetic.
//!
//! Index file (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `ALOGIDX\n` |
//! | 8 | 4 | format version, `u32` = 1 |
//! | 12 | 4 | reserved, 0 |
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
    check_with(entries.len() / ENTRY_BYTES, |i| entry(entries, i), log_len)
}

/// [`check`] for entries already decoded.
pub fn check_offsets(entries: &[u32], log_len: u64) -> Result<(), String> {
    check_with(entries.len(), |i| entries[i], log_len)
}

fn check_with(n: usize, entry: impl Fn(usize) -> u32, log_len: u64) -> Result<(), String> {
    if n == 0 {
        return Ok(());
    }
    let first = entry(0);
    if first != LOST && first != LOG_HEADER_BYTES as u32 {
        return Err("the first entry does not point at the first record".to_string());
    }
    if entry(n - 1) == LOST {
        return Err("the last entry is marked lost".to_string());
    }
    let mut prev: Option<u32> = None;
    for i in 0..n {
        let e = entry(i);
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
    Ok(())
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
        assert!(check(&entries(&[]), 32).is_ok());
        assert!(check(&entries(&[32, 54, 100]), 130).is_ok());
        assert!(check(&entries(&[32, LOST, LOST, 100]), 130).is_ok());
        assert!(
            check(&entries(&[LOST, 100]), 130).is_ok(),
            "first record lost"
        );
    }

    #[test]
    fn check_rejects_damage() {
        let good = entries(&[32, 54, 100]);
        assert!(check(&good[..7], 130).is_err(), "cut mid-entry");
        assert!(
            check(&entries(&[32, 100, 54]), 130).is_err(),
            "non-monotonic"
        );
        assert!(
            check(&entries(&[32, 54, 200]), 130).is_err(),
            "past the log"
        );
        assert!(check(&entries(&[33, 54]), 130).is_err(), "wrong first");
        assert!(
            check(&entries(&[32, 40]), 130).is_err(),
            "overlapping records"
        );
        assert!(check(&entries(&[32, LOST]), 130).is_err(), "lost last");
    }
}
