//! The record codec: bytes ⇄ frames, with checksums. No file handles, no I/O.
//!
//! A segment's log file is a 48-byte header followed by frames (see `docs/format.md`).
//! Little-endian throughout.
//!
//! Log header (48 bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `ALOGSEG\n` |
//! | 8 | 4 | format version, `u32` = 2 |
//! | 12 | 4 | CRC-32 of bytes 16..48 |
//! | 16 | 8 | `first_seq`: sequence number of the segment's first record |
//! | 24 | 8 | `base_stamp`: stamp (µs since the epoch) the record stamps are relative to |
//! | 32 | 8 | `project`: the id of the project the segment belongs to |
//! | 40 | 8 | reserved: zero |
//!
//! Frame (20 bytes + payload):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC-32 of bytes 4..16+len (the rest of the header and the payload) |
//! | 4 | 4 | `len_flags`: bits 0–23 payload length, bits 24–31 flags (bit 24: batch continues) |
//! | 8 | 8 | `seq_stamp`: bits 0–23 `seq − first_seq`, bits 24–63 `stamp − base_stamp` (µs) |
//! | 16 | len | payload: one compact JSON object |
//! | 16+len | 4 | `len_flags` again (the trailer), so the log can be walked backwards |

use std::fmt;

/// Magic bytes at the start of every log file.
pub const LOG_MAGIC: [u8; 8] = *b"ALOGSEG\n";
/// The on-disk format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Size of a log file's header.
pub const LOG_HEADER_BYTES: usize = 48;
/// Size of a frame's header.
pub const FRAME_HEADER_BYTES: usize = 16;
/// Size of a frame's trailer.
pub const FRAME_TRAILER_BYTES: usize = 4;
/// Bytes a frame adds to its payload.
pub const FRAME_OVERHEAD_BYTES: usize = FRAME_HEADER_BYTES + FRAME_TRAILER_BYTES;
/// The largest payload a frame can carry: 16 MiB − 1.
pub const MAX_PAYLOAD_BYTES: usize = (1 << 24) - 1;
/// The most records one segment can hold (the width of `seq − first_seq`).
pub const MAX_RECORDS_PER_SEGMENT: u64 = 1 << 24;
/// The largest `stamp − base_stamp` a frame can carry, in µs (about 12.7 days).
pub const MAX_STAMP_DELTA_US: u64 = (1 << 40) - 1;
/// The largest `base_stamp` a segment header may hold, and so the last stamp a store issues:
/// 2^64 − 2^40 µs after the epoch (in the year 586,524), so that every stamp of a segment fits in
/// a `u64`.
pub const MAX_BASE_STAMP: u64 = u64::MAX - MAX_STAMP_DELTA_US;

/// Flag bit (within the flags byte): more records of the same batch follow this one.
const FLAG_CONTINUES: u32 = 1 << 24;
const LEN_MASK: u32 = (1 << 24) - 1;
const KNOWN_FLAGS: u32 = FLAG_CONTINUES;

/// A segment's identity, from its log header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the segment's first record.
    pub first_seq: u64,
    /// The stamp record stamps are relative to (µs since the epoch).
    pub base_stamp: u64,
    /// The project the segment belongs to. Its directory says so too; the header says it for
    /// a new project's first log found in a spare directory after a crash, whose rename into
    /// place was lost (see `docs/format.md`, Recovery).
    pub project: u64,
}

/// Why a header or frame does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    Truncated,
    /// The magic bytes are wrong: not a file of ours.
    BadMagic,
    /// A format version this build does not know.
    Version(u32),
    /// The checksum does not match.
    Checksum,
    /// The length field is impossible (too large, unknown flags, empty payload).
    BadLength,
    /// The trailer disagrees with the header.
    TrailerMismatch,
    /// Bytes a header reserves are not zero.
    Reserved,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "the data ends inside a record"),
            DecodeError::BadMagic => write!(f, "the magic bytes are wrong"),
            DecodeError::Version(v) => write!(f, "unknown format version {v}"),
            DecodeError::Checksum => write!(f, "checksum mismatch"),
            DecodeError::BadLength => write!(f, "impossible record length or flags"),
            DecodeError::TrailerMismatch => write!(f, "record trailer disagrees with its header"),
            DecodeError::Reserved => write!(f, "reserved header bytes are not zero"),
        }
    }
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; LOG_HEADER_BYTES] {
        let mut out = [0u8; LOG_HEADER_BYTES];
        out[0..8].copy_from_slice(&LOG_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.base_stamp.to_le_bytes());
        out[32..40].copy_from_slice(&self.project.to_le_bytes());
        let crc = crc32fast::hash(&out[16..LOG_HEADER_BYTES]);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, DecodeError> {
        let buf = buf.get(..LOG_HEADER_BYTES).ok_or(DecodeError::Truncated)?;
        if buf[0..8] != LOG_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = read_u32(buf, 8);
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        if read_u32(buf, 12) != crc32fast::hash(&buf[16..LOG_HEADER_BYTES]) {
            return Err(DecodeError::Checksum);
        }
        if read_u64(buf, 40) != 0 {
            return Err(DecodeError::Reserved);
        }
        Ok(SegmentHeader {
            first_seq: read_u64(buf, 16),
            base_stamp: read_u64(buf, 24),
            project: read_u64(buf, 32),
        })
    }
}

/// One decoded frame, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// `seq − first_seq` of the segment.
    pub seq_delta: u32,
    /// `stamp − base_stamp` of the segment, µs.
    pub stamp_delta: u64,
    /// More records of the same batch follow.
    pub continues: bool,
    /// The message bytes.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Total bytes of this frame on disk.
    pub fn encoded_len(&self) -> usize {
        frame_len(self.payload.len())
    }
}

/// Total bytes on disk of a frame carrying `payload_len` bytes.
pub const fn frame_len(payload_len: usize) -> usize {
    payload_len + FRAME_OVERHEAD_BYTES
}

/// Total bytes on disk of the frame whose header starts `head` (at least 8 bytes), by its length
/// field alone: the frame need not be valid.
pub(crate) fn frame_len_by_header(head: &[u8]) -> u64 {
    frame_len((read_u32(head, 4) & LEN_MASK) as usize) as u64
}

/// Whether the frame whose header is `head` says its batch continues (trusted like
/// [`frame_len_by_header`]: the frame was checked before).
pub(crate) fn continues_by_header(head: &[u8]) -> bool {
    read_u32(head, 4) & FLAG_CONTINUES != 0
}

/// Appends the encoding of `frame` to `out`.
///
/// # Panics
/// If the payload is over [`MAX_PAYLOAD_BYTES`], `seq_delta` over 24 bits or `stamp_delta` over
/// [`MAX_STAMP_DELTA_US`]: callers check these limits before encoding.
pub fn encode_frame(out: &mut Vec<u8>, frame: &Frame<'_>) {
    encode_frame_parts(out, frame, &[]);
}

/// A batch of messages to store, each in one or two pieces (an import's message is its line
/// before and after the `_ts` member it drops).
pub(crate) trait Batch {
    /// How many messages.
    fn count(&self) -> usize;

    /// Message `i` is the first piece followed by the second.
    fn pieces(&self, i: usize) -> (&[u8], &[u8]);

    /// The length of message `i`.
    fn message_len(&self, i: usize) -> usize {
        let (a, b) = self.pieces(i);
        a.len() + b.len()
    }
}

impl Batch for [std::borrow::Cow<'_, [u8]>] {
    fn count(&self) -> usize {
        self.len()
    }

    fn pieces(&self, i: usize) -> (&[u8], &[u8]) {
        (&self[i], &[])
    }
}

/// Appends the encoding of `frame` whose payload is `frame.payload` followed by `more`, as
/// [`encode_frame`] does (with its panics).
pub(crate) fn encode_frame_parts(out: &mut Vec<u8>, frame: &Frame<'_>, more: &[u8]) {
    let payload_len = frame.payload.len() + more.len();
    assert!(
        payload_len <= MAX_PAYLOAD_BYTES,
        "payload over the frame limit"
    );
    assert!(
        u64::from(frame.seq_delta) < MAX_RECORDS_PER_SEGMENT,
        "seq delta over 24 bits"
    );
    assert!(
        frame.stamp_delta <= MAX_STAMP_DELTA_US,
        "stamp delta over 40 bits"
    );
    let mut len_flags = payload_len as u32;
    if frame.continues {
        len_flags |= FLAG_CONTINUES;
    }
    let seq_stamp = u64::from(frame.seq_delta) | (frame.stamp_delta << 24);
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&len_flags.to_le_bytes());
    out.extend_from_slice(&seq_stamp.to_le_bytes());
    out.extend_from_slice(frame.payload);
    out.extend_from_slice(more);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len_flags.to_le_bytes());
}

/// Decodes the frame starting at `buf[at..]`, checking length, trailer and checksum.
pub fn decode_frame(buf: &[u8], at: usize) -> Result<Frame<'_>, DecodeError> {
    decode_frame_with(buf, at, true)
}

/// [`decode_frame`], with the checksum left unchecked when `checksum` is false: for bytes this
/// process encoded itself and kept in memory (they never went through a disk), every other
/// check still made.
#[inline]
pub(crate) fn decode_frame_with(
    buf: &[u8],
    at: usize,
    checksum: bool,
) -> Result<Frame<'_>, DecodeError> {
    let rest = buf.get(at..).ok_or(DecodeError::Truncated)?;
    if rest.len() < FRAME_OVERHEAD_BYTES {
        return Err(DecodeError::Truncated);
    }
    let len_flags = read_u32(rest, 4);
    if len_flags & !(LEN_MASK | KNOWN_FLAGS) != 0 {
        return Err(DecodeError::BadLength);
    }
    let len = (len_flags & LEN_MASK) as usize;
    if len == 0 {
        return Err(DecodeError::BadLength);
    }
    let total = frame_len(len);
    if rest.len() < total {
        return Err(DecodeError::Truncated);
    }
    if read_u32(rest, total - FRAME_TRAILER_BYTES) != len_flags {
        return Err(DecodeError::TrailerMismatch);
    }
    let body_end = FRAME_HEADER_BYTES + len;
    if checksum && read_u32(rest, 0) != crc32fast::hash(&rest[4..body_end]) {
        return Err(DecodeError::Checksum);
    }
    let seq_stamp = read_u64(rest, 8);
    Ok(Frame {
        seq_delta: (seq_stamp & (MAX_RECORDS_PER_SEGMENT - 1)) as u32,
        stamp_delta: seq_stamp >> 24,
        continues: len_flags & FLAG_CONTINUES != 0,
        payload: &rest[FRAME_HEADER_BYTES..body_end],
    })
}

/// The payload length of a frame that may start at `at`, judged without its checksum: its
/// length field is in range with no unknown flag, and its trailer repeats it.
pub fn plausible_frame(buf: &[u8], at: usize) -> Option<usize> {
    let rest = buf.get(at..)?;
    if rest.len() < FRAME_OVERHEAD_BYTES {
        return None;
    }
    let len_flags = read_u32(rest, 4);
    let len = (len_flags & LEN_MASK) as usize;
    if len_flags & !(LEN_MASK | KNOWN_FLAGS) != 0 || len == 0 {
        return None;
    }
    let total = frame_len(len);
    (rest.len() >= total && read_u32(rest, total - FRAME_TRAILER_BYTES) == len_flags).then_some(len)
}

/// Decodes the frame that ends exactly at `buf[..end]`, found through its trailer.
///
/// Returns the frame's start offset with the frame.
pub fn decode_frame_ending_at(buf: &[u8], end: usize) -> Result<(usize, Frame<'_>), DecodeError> {
    if end > buf.len() || end < FRAME_OVERHEAD_BYTES {
        return Err(DecodeError::Truncated);
    }
    let len_flags = read_u32(buf, end - FRAME_TRAILER_BYTES);
    let len = (len_flags & LEN_MASK) as usize;
    let total = frame_len(len);
    let start = end.checked_sub(total).ok_or(DecodeError::BadLength)?;
    let frame = decode_frame(&buf[..end], start)?;
    // The frame found there must be the one the trailer describes, not a shorter one that
    // happens to decode at the same start and end before `end`.
    if frame.encoded_len() != total {
        return Err(DecodeError::TrailerMismatch);
    }
    Ok((start, frame))
}

/// Reads a little-endian `u32` at `at`.
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian `u64` at `at`.
pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(frame: &Frame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, frame);
        out
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = SegmentHeader {
            first_seq: 42,
            base_stamp: 1_700_000_000_000_000,
            project: 7,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        assert_eq!(
            SegmentHeader::decode(&bytes[..31]),
            Err(DecodeError::Truncated)
        );
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(DecodeError::BadMagic));
        let mut bad = bytes;
        bad[8] = 9;
        assert_eq!(SegmentHeader::decode(&bad), Err(DecodeError::Version(9)));
        let mut bad = bytes;
        bad[20] ^= 0x10;
        assert_eq!(SegmentHeader::decode(&bad), Err(DecodeError::Checksum));
        assert_eq!(
            SegmentHeader::decode(&bytes[..LOG_HEADER_BYTES - 1]),
            Err(DecodeError::Truncated)
        );
        // Reserved bytes that are not zero, under a checksum that holds (fuzz finding 10).
        let mut bad = bytes;
        bad[44] = 1;
        let crc = crc32fast::hash(&bad[16..LOG_HEADER_BYTES]);
        bad[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bad), Err(DecodeError::Reserved));
    }

    #[test]
    fn frame_layout_is_as_documented() {
        let f = Frame {
            seq_delta: 3,
            stamp_delta: 5,
            continues: true,
            payload: b"{}",
        };
        let bytes = encoded(&f);
        assert_eq!(bytes.len(), 22);
        assert_eq!(read_u32(&bytes, 4), 2 | (1 << 24));
        assert_eq!(read_u64(&bytes, 8), 3 | (5 << 24));
        assert_eq!(&bytes[16..18], b"{}");
        assert_eq!(read_u32(&bytes, 18), 2 | (1 << 24));
        assert_eq!(read_u32(&bytes, 0), crc32fast::hash(&bytes[4..18]));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let f = Frame {
            seq_delta: 7,
            stamp_delta: 1234,
            continues: false,
            payload: br#"{"event":"job:completed"}"#,
        };
        let bytes = encoded(&f);
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(
                decode_frame(&b, 0).is_err(),
                "flip of bit {i} went unnoticed"
            );
        }
    }

    /// Found by fuzzing (`record_decoder`): a trailer at the end leading back to the start of a
    /// shorter whole frame returned that frame, which does not end where the trailer is.
    #[test]
    fn the_frame_before_a_trailer_ends_at_it() {
        let mut buf = encoded(&Frame {
            seq_delta: 0,
            stamp_delta: 0,
            continues: false,
            payload: b"{}",
        });
        buf.extend_from_slice(&[0u8; 10]);
        let outer = (buf.len() + FRAME_TRAILER_BYTES - FRAME_OVERHEAD_BYTES) as u32;
        buf.extend_from_slice(&outer.to_le_bytes());
        assert!(decode_frame(&buf, 0).is_ok(), "the shorter frame is whole");
        assert_eq!(
            decode_frame_ending_at(&buf, buf.len()),
            Err(DecodeError::TrailerMismatch)
        );
    }

    #[test]
    fn zeros_are_not_a_frame() {
        assert!(decode_frame(&[0u8; 64], 0).is_err());
        assert!(decode_frame_ending_at(&[0u8; 64], 64).is_err());
    }

    #[test]
    fn short_buffers_are_truncated() {
        let bytes = encoded(&Frame {
            seq_delta: 0,
            stamp_delta: 0,
            continues: false,
            payload: b"{\"a\":1}",
        });
        for cut in 0..bytes.len() {
            assert!(decode_frame(&bytes[..cut], 0).is_err());
        }
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..20),
            stamp in 0..=MAX_STAMP_DELTA_US,
            flags in proptest::collection::vec(any::<bool>(), 20),
        ) {
            let mut buf = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                encode_frame(&mut buf, &Frame { seq_delta: i as u32, stamp_delta: stamp, continues: flags[i], payload: p });
            }
            // forwards
            let mut at = 0;
            for (i, p) in payloads.iter().enumerate() {
                let f = decode_frame(&buf, at).unwrap();
                prop_assert_eq!(f.payload, &p[..]);
                prop_assert_eq!(f.seq_delta, i as u32);
                prop_assert_eq!(f.stamp_delta, stamp);
                prop_assert_eq!(f.continues, flags[i]);
                at += f.encoded_len();
            }
            prop_assert_eq!(at, buf.len());
            // backwards
            let mut end = buf.len();
            for (i, p) in payloads.iter().enumerate().rev() {
                let (start, f) = decode_frame_ending_at(&buf, end).unwrap();
                prop_assert_eq!(f.payload, &p[..]);
                prop_assert_eq!(f.seq_delta, i as u32);
                end = start;
            }
            prop_assert_eq!(end, 0);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), at in 0usize..250) {
            let _ = decode_frame(&bytes, at);
            let _ = decode_frame_ending_at(&bytes, at);
            let _ = SegmentHeader::decode(&bytes);
        }
    }
}
