//! Walking a log image forwards: the source of truth the index is rebuilt from, the check
//! `verify` runs, and the tail repair done on open. Pure: works on bytes, no I/O.
//!
//! When a frame fails to decode, the walk searches forwards for the next frame that decodes with
//! a larger sequence number (resynchronisation). Found: the bytes in between are *damage* — the
//! records on both sides stay readable and the sequence numbers in between are marked lost.
//! Not found: everything from the failure to the end is a *torn tail*. A failure followed by
//! nothing but zeros (the room a writer makes ahead of an active log, see `segment::Room`) is a
//! torn tail at once: no frame fits in zeros, since a frame's length is at least 1.
//!
//! The search checks the checksum of every place whose length field and trailer agree, and an
//! image can be made (one 4-byte word repeated) where that is every fourth byte, each time over
//! a payload as long as half the image: time quadratic in its size, days for one segment. So a
//! walk spends at most a budget on those checksums ([`checksum_budget`], about four times the
//! image; a real log, damaged or not, spends about its own size). Past it, the search looks for
//! the next frame from the other end: the frames that end the image, found backwards through
//! their trailers, each checked once. Damage that exhausts the budget is no torn tail a crash
//! left, so a valid frame inside it that does not lead on to the end may then be taken for
//! damage, or cut with it when nothing after it leads to the end either.

use std::ops::Range;

use crate::index::LOST;
use crate::record::{
    continues_by_header, decode_frame, decode_frame_ending_at, frame_len_by_header,
    plausible_frame, read_u64, Frame, FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, LOG_HEADER_BYTES,
    MAX_RECORDS_PER_SEGMENT,
};

/// What a forward walk found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// File offset of each record, entry `i` for `seq_delta = first_delta + i`; [`LOST`] for
    /// records inside damage.
    pub entries: Vec<u32>,
    /// Damaged byte ranges (file offsets) that have good records after them.
    pub damaged: Vec<Range<u64>>,
    /// File offset just past the last good frame.
    pub good_end: u64,
    /// The stamp delta of the last good record.
    pub last_stamp_delta: Option<u64>,
    /// When the last good record says its batch continues: the entry index (into `entries`) and
    /// file offset of the first record of that unfinished batch.
    pub open_batch: Option<(usize, u64)>,
}

impl Scan {
    /// Whether bytes after the last good record were cut off as a torn tail, given the image's
    /// end offset.
    pub fn torn(&self, end: u64) -> bool {
        self.good_end < end
    }
}

/// Walks the frames of `buf`, whose first byte is at file offset `base`, expecting the first
/// frame to have `seq_delta == first_delta`.
pub fn scan(buf: &[u8], base: u64, first_delta: u32) -> Scan {
    scan_within(buf, base, first_delta, checksum_budget(buf.len()))
}

/// What the resynchronisations of one walk of an image of `len` bytes may spend on checksums,
/// in payload bytes: four times the image, and 1 MiB.
fn checksum_budget(len: usize) -> u64 {
    (len as u64).saturating_mul(4).saturating_add(1 << 20)
}

/// [`scan`], its resynchronisations spending at most `budget` payload bytes on checksums.
fn scan_within(buf: &[u8], base: u64, first_delta: u32, mut budget: u64) -> Scan {
    let mut out = Scan {
        good_end: base,
        ..Scan::default()
    };
    let mut at = 0usize;
    let mut expected = u64::from(first_delta);
    let mut batch_start: Option<(usize, u64)> = None;
    while at < buf.len() {
        let (pos, frame) = match decode_frame(buf, at) {
            Ok(f) if u64::from(f.seq_delta) == expected => (at, f),
            _ if is_zero(&buf[at..]) => break,
            _ => match resync(buf, at + 1, expected, &mut budget) {
                Some((pos, frame)) => {
                    out.damaged.push(base + at as u64..base + pos as u64);
                    for _ in expected..u64::from(frame.seq_delta) {
                        out.entries.push(LOST);
                    }
                    // A batch broken by damage can never be completed; forget it.
                    batch_start = None;
                    (pos, frame)
                }
                None => break,
            },
        };
        let offset = base + pos as u64;
        if batch_start.is_none() {
            batch_start = Some((out.entries.len(), offset));
        }
        out.entries.push(offset as u32);
        if !frame.continues {
            batch_start = None;
        }
        expected = u64::from(frame.seq_delta) + 1;
        at = pos + frame.encoded_len();
        out.good_end = base + at as u64;
        out.last_stamp_delta = Some(frame.stamp_delta);
    }
    out.open_batch = batch_start;
    out
}

/// How many records past a scan's last good one an index vouches for: entries are written
/// only for records already synced, so such a record that does not decode was damaged after it
/// was durable — never a torn tail, even at the end of the newest segment. `index` holds the
/// on-disk entries (checked: increasing, inside the log) and `scanned` the scan's, for the same
/// records from the first; they must agree where both have an entry, and the entries past the
/// scan's must point at or after `good_end` — or be lost (an index rebuilt around damage), but
/// for the last. 0 otherwise.
pub fn vouched_past(index: &[u32], scanned: &[u32], good_end: u64) -> usize {
    let Some(past) = index.get(scanned.len()..) else {
        return 0;
    };
    if agrees(index, scanned)
        && past.last().is_some_and(|&e| e != LOST)
        && past.iter().all(|&e| e == LOST || u64::from(e) >= good_end)
    {
        past.len()
    } else {
        0
    }
}

/// Whether an index's entries and a scan's, for the same records from the first, agree where
/// both have one (a record lost to damage agrees with any offset).
pub fn agrees(index: &[u32], scanned: &[u32]) -> bool {
    index
        .iter()
        .zip(scanned)
        .all(|(&i, &s)| s == LOST || i == LOST || i == s)
}

/// Where a writable open cuts the newest segment when it ends in an unfinished batch: the
/// offset that becomes the log's end. `entries` holds the entries before the batch's first
/// record (at `batch_at`); the first `keep` of them are never cut (the records the index vouches
/// for). Damage just before the batch is then at the end with no good record after it — a torn
/// tail, as a scan from scratch would find on the next open — and goes too, so that recovery
/// gives the same answer every time. And if the record then left at the end says its batch
/// continues, that batch began before the damage and never finished either (a power cut kept
/// some of its writes and not others): it goes as well, and so on. `header` reads the frame
/// header of a record the scan decoded, by its offset. On return `entries` holds what is kept.
pub fn cut_unfinished<E>(
    entries: &mut Vec<u32>,
    keep: usize,
    batch_at: u64,
    mut header: impl FnMut(u32) -> Result<[u8; FRAME_HEADER_BYTES], E>,
) -> Result<u64, E> {
    // Where the cut starts: the unfinished batch, or a record cut with it.
    let mut cut_at = batch_at;
    loop {
        while entries.len() > keep && entries.last() == Some(&LOST) {
            entries.pop();
        }
        return Ok(match entries.last() {
            None => LOG_HEADER_BYTES as u64,
            // A record the index vouches for, lost to damage, ends what is kept: its bytes stay,
            // up to where the cut starts.
            Some(&LOST) => cut_at,
            Some(&at) => {
                let head = header(at)?;
                if entries.len() > keep && continues_by_header(&head) {
                    cut_at = u64::from(at);
                    entries.pop();
                    continue;
                }
                u64::from(at) + frame_len_by_header(&head)
            }
        });
    }
}

/// Whether every byte is zero (a word at a time).
pub fn is_zero(bytes: &[u8]) -> bool {
    let (words, rest) = bytes.split_at(bytes.len() - bytes.len() % 8);
    words
        .chunks_exact(8)
        .all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0)
        && rest.iter().all(|&b| b == 0)
}

/// The first position at or after `from` holding a frame that decodes with a sequence delta of at
/// least `expected`, the checksums of the candidates charged to `budget`; once it runs out,
/// [`resync_from_end`].
fn resync<'b>(
    buf: &'b [u8],
    from: usize,
    expected: u64,
    budget: &mut u64,
) -> Option<(usize, Frame<'b>)> {
    let last = buf.len().checked_sub(FRAME_OVERHEAD_BYTES)?;
    for pos in from..=last {
        let Some(len) = plausible_frame(buf, pos) else {
            continue;
        };
        // The sequence number before the checksum: a candidate numbered too low is no match
        // whatever its checksum says.
        if read_u64(buf, pos + 8) & (MAX_RECORDS_PER_SEGMENT - 1) < expected {
            continue;
        }
        let Some(left) = budget.checked_sub(len as u64) else {
            *budget = 0;
            return resync_from_end(buf, from, expected);
        };
        *budget = left;
        if let Ok(f) = decode_frame(buf, pos) {
            return Some((pos, f));
        }
    }
    None
}

/// The first of the frames that end `buf` (before any zeros after them), found backwards through
/// their trailers while each is numbered one below the next, if it starts at or after `from`
/// and is numbered at least `expected`. Each frame's checksum is checked once: linear time.
fn resync_from_end(buf: &[u8], from: usize, expected: u64) -> Option<(usize, Frame<'_>)> {
    // A frame ends in its trailer, the length and flags, whose first three bytes (the length)
    // are not all zero: its last non-zero byte is one of the trailer's four.
    let last = buf.iter().rposition(|&b| b != 0)?;
    let (mut start, mut frame) = (last + 1..=(last + 4).min(buf.len()))
        .find_map(|end| decode_frame_ending_at(buf, end).ok())?;
    if start < from {
        return None;
    }
    while frame.seq_delta > 0 {
        match decode_frame_ending_at(buf, start) {
            Ok((before, f)) if before >= from && f.seq_delta + 1 == frame.seq_delta => {
                (start, frame) = (before, f);
            }
            _ => break,
        }
    }
    (u64::from(frame.seq_delta) >= expected).then_some((start, frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_frame, LOG_HEADER_BYTES};

    /// A log image (without header) of records `{"i":N}`; `batches` gives batch sizes.
    fn image(batches: &[usize]) -> (Vec<u8>, Vec<u64>) {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        let mut seq = 0u32;
        for &n in batches {
            for k in 0..n {
                offsets.push((LOG_HEADER_BYTES + buf.len()) as u64);
                let payload = format!("{{\"i\":{seq}}}");
                encode_frame(
                    &mut buf,
                    &Frame {
                        seq_delta: seq,
                        stamp_delta: u64::from(seq),
                        continues: k + 1 < n,
                        payload: payload.as_bytes(),
                    },
                );
                seq += 1;
            }
        }
        (buf, offsets)
    }

    const BASE: u64 = LOG_HEADER_BYTES as u64;

    #[test]
    fn clean_log() {
        let (buf, offsets) = image(&[1, 3, 1]);
        let s = scan(&buf, BASE, 0);
        let want: Vec<u32> = offsets.iter().map(|&o| o as u32).collect();
        assert_eq!(s.entries, want);
        assert_eq!(s.good_end, BASE + buf.len() as u64);
        assert!(s.damaged.is_empty());
        assert_eq!(s.open_batch, None);
        assert_eq!(s.last_stamp_delta, Some(4));
    }

    #[test]
    fn every_cut_is_a_torn_tail_back_to_a_whole_record() {
        let (buf, offsets) = image(&[2, 2]);
        for cut in 0..buf.len() {
            let s = scan(&buf[..cut], BASE, 0);
            let whole = offsets
                .iter()
                .skip(1)
                .map(|&o| o - BASE)
                .chain([buf.len() as u64])
                .filter(|&end| end <= cut as u64)
                .count();
            assert_eq!(s.entries.len(), whole, "cut at {cut}");
            assert!(s.damaged.is_empty());
            // Batch [0,1] is open when only record 0 survives, batch [2,3] when only 2 does.
            let open = matches!(whole, 1 | 3);
            assert_eq!(s.open_batch.is_some(), open, "cut at {cut}");
        }
    }

    /// Zeros after the records (a writer's room) change nothing but where the log ends, cut
    /// anywhere, and with damage before them. (Where the bytes cut off were zeros themselves,
    /// the room gives them back.)
    #[test]
    fn zeros_after_the_records_end_the_log() {
        let (buf, _) = image(&[2, 2]);
        for cut in 0..=buf.len() {
            let mut roomy = buf[..cut].to_vec();
            roomy.resize(cut + 300, 0);
            let same = cut + buf[cut..].iter().take_while(|&&b| b == 0).count();
            let plain = scan(&buf[..same], BASE, 0);
            let s = scan(&roomy, BASE, 0);
            assert_eq!(s, plain, "cut at {cut}");
        }
        for at in 0..buf.len() {
            let mut damaged = buf.clone();
            damaged[at] ^= 0x40;
            let plain = scan(&damaged, BASE, 0);
            damaged.resize(buf.len() + 100, 0);
            assert_eq!(scan(&damaged, BASE, 0), plain, "damage at {at}");
        }
        assert!(is_zero(&[0; 17]) && is_zero(&[]) && !is_zero(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn damage_in_the_middle_keeps_both_sides() {
        let (mut buf, offsets) = image(&[1, 1, 1, 1]);
        let second = (offsets[1] - BASE) as usize;
        buf[second + 17] ^= 0xff; // inside record 1's payload
        let s = scan(&buf, BASE, 0);
        assert_eq!(s.entries.len(), 4);
        assert_eq!(s.entries[1], LOST);
        assert_eq!(s.entries[2] as u64, offsets[2]);
        assert_eq!(s.damaged, vec![offsets[1]..offsets[2]]);
        assert_eq!(s.good_end, BASE + buf.len() as u64);
    }

    /// Out of budget, the search finds the records that end the image from the other end: the
    /// same answer as the full search wherever damage has good records after it to the end
    /// (and any zeros after them).
    #[test]
    fn a_search_past_its_budget_finds_the_records_that_end_the_image() {
        let (buf, _) = image(&[1, 3, 1, 2, 1]);
        for at in 0..buf.len() {
            for room in [0, 100] {
                let mut damaged = buf.clone();
                damaged[at] ^= 0x40;
                damaged.resize(buf.len() + room, 0);
                let full = scan_within(&damaged, BASE, 0, u64::MAX);
                assert_eq!(
                    scan_within(&damaged, BASE, 0, 0),
                    full,
                    "damage at {at}, room {room}"
                );
            }
        }
    }

    /// One 4-byte word repeated, a length field whose trailer agrees every fourth byte, each
    /// time over a payload half the image long: checking each costs time quadratic in the size
    /// (a 1 MiB log took two minutes to open in a debug build). Within its budget the walk
    /// finds it all torn, and finds the records after it from the other end.
    #[test]
    fn a_crafted_image_costs_a_budget_not_quadratic_time() {
        let len = 4 << 20;
        let word = (len as u32 / 2) & !3;
        let garbage = word.to_le_bytes().repeat(len / 4);
        let s = scan(&garbage, BASE, 0);
        assert_eq!((s.entries.len(), s.good_end), (0, BASE));
        assert!(s.damaged.is_empty());

        let (records, offsets) = image(&[1, 2]);
        let mut buf = garbage.clone();
        buf.extend_from_slice(&records);
        buf.resize(buf.len() + 1000, 0);
        let s = scan(&buf, BASE, 0);
        let moved: Vec<u32> = offsets.iter().map(|&o| (o + len as u64) as u32).collect();
        assert_eq!(s.entries, moved);
        assert_eq!(s.damaged, vec![BASE..BASE + len as u64]);
        assert_eq!(s.good_end, BASE + (len + records.len()) as u64);
    }

    #[test]
    fn garbage_tail_is_torn() {
        let (mut buf, _) = image(&[3]);
        let good = buf.len();
        buf.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let s = scan(&buf, BASE, 0);
        assert_eq!(s.entries.len(), 3);
        assert_eq!(s.good_end, BASE + good as u64);
        assert!(s.torn(BASE + buf.len() as u64));
        let (mut buf, _) = image(&[3]);
        buf.extend([0u8; 4096]);
        assert_eq!(scan(&buf, BASE, 0).good_end, BASE + good as u64);
    }
}
