//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay in
//! `tests/fuzz_corpora.rs`.
//!
//! This module exists only for those two: it is not a stable API and may change with any
//! release. It lives inside the crate so that it can reach the internal decoders directly.
//!
//! Every target function takes arbitrary bytes and must never panic. A panic is a bug: either in
//! the code under test, or one of the invariants asserted here does not hold (a decoded record
//! re-encodes to the same bytes; a reader only returns records that are, checksum and all, in
//! the files it was given; a second recovery keeps no more than the first; an acknowledged
//! append reads back after a reopen).
//!
//! The store-based targets work in a fresh temporary directory per input, under `/dev/shm` when
//! it exists (fsync is free there, which keeps the fuzzers fast), else under the system's
//! temporary directory.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::index::{self, LOST};
use crate::json;
use crate::project::Project;
use crate::record::{
    decode_frame, decode_frame_ending_at, encode_frame, Batch, Frame, SegmentHeader,
    FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, LOG_HEADER_BYTES, MAX_PAYLOAD_BYTES,
    MAX_RECORDS_PER_SEGMENT, MAX_STAMP_DELTA_US,
};
use crate::scan::scan;
use crate::segment::{self, Sealed};
use crate::store;
use crate::{
    Durability, Error, Message, Options, Query, Store, DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
};

/// The HTTP query-string parser.
#[cfg(feature = "server")]
use crate::http::params as http_params;

/// The project the store-based targets write.
const PROJECT: u64 = 1_111_111;
/// At most this many messages are read per pass (see [`read_some`]).
const READ_LIMIT: usize = 64;
/// The message `open_and_recover` appends.
const APPENDED: &str = r#"{"fuzz":1}"#;

/// Set by the store-based targets: a read-only open, and `verify`, that find what may be a
/// writer's batch in flight look again at once instead of after a pause (no writer runs beside
/// a fuzz input, and a pause per input would slow the fuzzer many times over).
pub(crate) static LOOK_AGAIN_AT_ONCE: AtomicBool = AtomicBool::new(false);

/// The record codec and the forward scan over arbitrary bytes.
///
/// The input is taken as a log image (header, then frames); it is decoded as is and again with
/// every checksum repaired (`repair_log`), so that the fuzzer also explores what lies behind
/// the checksums. Asserts: a header or frame that decodes re-encodes to the very same bytes; the
/// backward decoder agrees with the forward one; the scan's entries, damage, torn tail and open
/// batch are consistent with the frames they point at.
pub fn record_decoder(data: &[u8]) {
    decode_image(data);
    let mut repaired = data.to_vec();
    repair_log(&mut repaired);
    if repaired != data {
        decode_image(&repaired);
    }
}

fn decode_image(data: &[u8]) {
    let header = SegmentHeader::decode(data);
    if let Ok(h) = header {
        assert_eq!(
            h.encode()[..],
            data[..LOG_HEADER_BYTES],
            "header re-encodes"
        );
    }
    for at in [0, LOG_HEADER_BYTES] {
        if let Ok(frame) = decode_frame(data, at) {
            assert_reencodes(data, at, &frame);
        }
    }
    if let Ok((start, frame)) = decode_frame_ending_at(data, data.len()) {
        assert_eq!(
            start + frame.encoded_len(),
            data.len(),
            "frame ends at the end"
        );
        assert_reencodes(data, start, &frame);
        assert_eq!(decode_frame(data, start), Ok(frame), "backward = forward");
    }
    // A log image is scanned after its header, as recovery does; anything else from its start,
    // as bare frames.
    match header {
        Ok(h) => check_scan(&data[LOG_HEADER_BYTES..], LOG_HEADER_BYTES as u64, 0, &h),
        Err(_) => {
            let h = SegmentHeader {
                first_seq: 0,
                base_stamp: 0,
                project: 0,
            };
            check_scan(data, 0, 0, &h);
        }
    }
}

/// Asserts that `frame`, decoded at `buf[at..]`, encodes back to exactly those bytes.
fn assert_reencodes(buf: &[u8], at: usize, frame: &Frame<'_>) {
    let mut out = Vec::with_capacity(frame.encoded_len());
    encode_frame(&mut out, frame);
    assert_eq!(
        out[..],
        buf[at..at + frame.encoded_len()],
        "frame at {at} re-encodes"
    );
}

/// Scans `buf` (first byte at file offset `base`) and checks the result against the frames.
fn check_scan(buf: &[u8], base: u64, first_delta: u32, header: &SegmentHeader) {
    let s = scan(buf, base, first_delta);
    let end = base + buf.len() as u64;
    assert!(
        (base..=end).contains(&s.good_end),
        "good end {} outside {base}..={end}",
        s.good_end
    );
    assert_eq!(s.torn(end), s.good_end < end);
    let mut prev_end = base;
    for r in &s.damaged {
        assert!(
            prev_end <= r.start && r.start < r.end && r.end <= end,
            "damage {r:?}"
        );
        prev_end = r.end;
    }
    assert_ne!(
        s.entries.last(),
        Some(&LOST),
        "the scan ends on a good record"
    );
    let path = Path::new("fuzz.log");
    let mut last: Option<(u64, Frame<'_>)> = None;
    for (i, &e) in s.entries.iter().enumerate() {
        if e == LOST {
            continue;
        }
        let offset = u64::from(e);
        if let Some((prev, frame)) = last {
            assert!(
                offset >= prev + frame.encoded_len() as u64,
                "entries overlap"
            );
        }
        let at = (offset - base) as usize;
        let frame = decode_frame(buf, at).expect("a scanned entry decodes");
        assert_eq!(
            u64::from(frame.seq_delta),
            u64::from(first_delta) + i as u64,
            "entry {i} holds its own record"
        );
        // The reader's decoder must accept what the scan accepted.
        let rec = segment::decode_at(buf, base, offset, header, i as u64, path);
        if let Ok(rec) = rec {
            assert_eq!(rec.payload, frame.payload);
        }
        last = Some((offset, frame));
    }
    match last {
        None => {
            assert_eq!(s.good_end, base);
            assert_eq!(s.open_batch, None);
        }
        Some((offset, frame)) => {
            assert_eq!(s.good_end, offset + frame.encoded_len() as u64);
            assert_eq!(s.last_stamp_delta, Some(frame.stamp_delta));
            assert_eq!(s.open_batch.is_some(), frame.continues, "open batch");
        }
    }
    if let Some((j, offset)) = s.open_batch {
        assert_eq!(s.entries.get(j), Some(&(offset as u32)), "open batch start");
    }
    let report = s.damage_report(end);
    assert_eq!(report.len(), s.damaged.len() + usize::from(s.torn(end)));
}

/// Loading and checking an index file against its log: the pure structural check, a sealed
/// segment's open (which trusts or rebuilds the index), and an active segment's recovery.
///
/// Input: a flags byte, then the log as a part (see `Parts`), then the rest is the index
/// file. Flags: bit 0 repairs the log's checksums, bit 1 leaves the index file out, bit 2 opens
/// the active segment as after a crash.
///
/// Asserts: an index that passes `index::check` has the documented shape; a sealed segment
/// reads the same records read-only, writable (which may rewrite the index) and reopened; every
/// record read is a frame of the log, checksum included; recovery of the segment as the active
/// one, read-only or writable, keeps only records of the log, and, when it read the log from
/// its start, a second writable recovery after the repair keeps no more than the first.
pub fn index_loader(data: &[u8]) {
    let mut input = Parts::new(data);
    let flags = input.byte();
    let mut log = input.part().to_vec();
    let idx = input.rest().to_vec();
    if flags & 1 != 0 {
        repair_log(&mut log);
    }
    let idx = (flags & 2 == 0).then_some(idx);
    if let Some(entries) = idx.as_deref().and_then(|i| index::entries_of(i).ok()) {
        if index::check(entries, log.len() as u64).is_ok() {
            assert_index_shape(entries, log.len() as u64);
        }
    }
    let Some(tmp) = scratch_dir() else { return };
    let dir = tmp.path().join("segments");
    if std::fs::create_dir(&dir).is_err() {
        return;
    }
    let first_seq = SegmentHeader::decode(&log).map_or(1, |h| h.first_seq);
    let logs = Logs::new(&[&log]);
    let lay_out = || -> bool {
        let idx_path = segment::index_path(&dir, first_seq);
        let _ = std::fs::remove_file(&idx_path);
        std::fs::write(segment::log_path(&dir, first_seq), &log).is_ok()
            && idx
                .as_ref()
                .is_none_or(|idx| std::fs::write(&idx_path, idx).is_ok())
    };

    // As a sealed segment.
    if !lay_out() {
        return;
    }
    let read_only = read_sealed(&dir, first_seq, false, &logs);
    let writable = read_sealed(&dir, first_seq, true, &logs);
    let again = read_sealed(&dir, first_seq, false, &logs);
    if let (Some(a), Some(b), Some(c)) = (&read_only, &writable, &again) {
        assert_eq!(
            a, b,
            "a sealed segment reads the same read-only and writable"
        );
        assert_eq!(
            b, c,
            "a sealed segment reads the same after its index is rebuilt"
        );
    }

    // As the active segment of a project.
    if !lay_out() {
        return;
    }
    let crashed = flags & 4 != 0;
    // Where `verify` says a writable open leaves the log, asked before one does. Not where
    // recovery trusts an index unread whose entries a scan of the whole log does not find as
    // they are (damage under them, or, in hand-made files, good frames for the same records
    // elsewhere): the open reads from the index's last entry only, and finds such damage when
    // it is read (the known gap of fuzz/README.md's findings 8 and 11).
    let predicted = SegmentHeader::decode(&log).ok().and_then(|_| {
        let s = scan(&log[LOG_HEADER_BYTES..], LOG_HEADER_BYTES as u64, 0);
        let trusted_unread = idx
            .as_deref()
            .is_some_and(|idx| index_passes(idx, log.len() as u64));
        let agrees = idx
            .as_deref()
            .and_then(|idx| index::entries_of(idx).ok())
            .is_some_and(|e| {
                let entries = index::decode_entries(e);
                entries.iter().zip(&s.entries).all(|(i, s)| i == s)
            });
        let paths = (Path::new("log"), Path::new("idx"));
        (!trusted_unread || agrees).then(|| {
            let check = (first_seq, true);
            crate::verify::check_log(&log, &s, idx.as_deref(), check, paths, &mut |_| {}).kept_end
        })
    });
    recover(&dir, false, crashed, &logs);
    let writable = recover(&dir, true, crashed, &logs);
    if let (Some(w), Some(predicted)) = (&writable, predicted) {
        assert_eq!(
            w.len, predicted,
            "verify names the cut a writable open makes"
        );
    }
    let again = recover(&dir, true, crashed, &logs);
    // A second writable recovery, after the first repaired the files, never keeps more than the
    // first did: its records are a prefix of the first's. (It is not always the same: see
    // fuzz/README.md, findings.) Only when the first read the log from its start: an index that
    // passes the checks is trusted unread up to its last entry (it is a cache, checked for
    // shape), which may hide damage there that a later full scan finds.
    let trusted = idx
        .as_deref()
        .is_some_and(|idx| index_passes(idx, log.len() as u64));
    if let (false, Some(b), Some(c)) = (trusted, &writable, &again) {
        assert!(
            c.len == b.len && c.next_seq == b.next_seq && b.entries == c.entries,
            "a second recovery keeps what the first did: {b:?} then {c:?}"
        );
    }
}

/// Whether recovery could trust entries of the index file `idx` of a log of `log_len` bytes,
/// as `project::recover_active` decides (whole entries, those past the log's end dropped).
fn index_passes(idx: &[u8], log_len: u64) -> bool {
    let Ok(entries) = index::entries_of(idx) else {
        return false;
    };
    let mut entries = index::decode_entries(entries);
    index::drop_past_end(&mut entries, log_len);
    // With fewer than two entries there is nothing before the last one to trust.
    entries.len() >= 2 && index::check_offsets(&entries, log_len).is_ok()
}

/// What [`index::check`] promises of entries it accepts.
fn assert_index_shape(entries: &[u8], log_len: u64) {
    assert_eq!(entries.len() % index::ENTRY_BYTES, 0);
    let n = entries.len() / index::ENTRY_BYTES;
    let offsets: Vec<u32> = (0..n).map(|i| index::entry(entries, i)).collect();
    if let Some(&first) = offsets.first() {
        assert!(first == LOST || first as usize == LOG_HEADER_BYTES);
    }
    assert_ne!(offsets.last(), Some(&LOST));
    let good: Vec<u64> = offsets
        .iter()
        .filter(|&&e| e != LOST)
        .map(|&e| u64::from(e))
        .collect();
    for w in good.windows(2) {
        assert!(w[1] >= w[0] + (FRAME_OVERHEAD_BYTES as u64 + 2));
    }
    for &e in &good {
        assert!(e + FRAME_OVERHEAD_BYTES as u64 + 2 <= log_len);
    }
}

/// One record as read: `Some((seq, stamp, payload))`, or `None` for an error.
type ReadRecord = Option<(u64, u64, Vec<u8>)>;

/// Opens the sealed segment and reads every record it has, checking each against `logs`.
fn read_sealed(
    dir: &Path,
    first_seq: u64,
    writable: bool,
    logs: &Logs<'_>,
) -> Option<Vec<ReadRecord>> {
    let seg = Sealed::open(dir, first_seq, writable).ok()?;
    assert_eq!(seg.header().first_seq, first_seq);
    assert!(seg.records_end() <= seg.log_len());
    // The oldest and the newest records: a segment may hold millions of records lost to damage,
    // and each lost record's error looks for the ends of its run.
    let n = seg.count();
    let picked = (0..n.min(READ_LIMIT as u64))
        .chain(n.saturating_sub(READ_LIMIT as u64).max(READ_LIMIT as u64)..n);
    let mut lost_read = false;
    let records = picked
        .map(|i| {
            if seg.is_lost(i) {
                // Once: the error walks the whole run of lost records to name its bytes.
                if !std::mem::replace(&mut lost_read, true) {
                    assert!(seg.record(i).is_err(), "a record marked lost reads");
                }
                return None;
            }
            let rec = seg.record(i).ok()?;
            assert_eq!(Some(rec.seq), first_seq.checked_add(i));
            assert_record_in_logs(logs, rec.seq, rec.stamp, rec.payload);
            Some((rec.seq, rec.stamp, rec.payload.to_vec()))
        })
        .collect();
    Some(records)
}

/// What recovery decided about an active segment.
#[derive(Debug, PartialEq, Eq)]
struct Recovered {
    entries: Vec<u32>,
    len: u64,
    next_seq: u64,
    last_stamp: u64,
}

/// Opens the project in `dir`, recovering its newest segment, and checks what it decided.
fn recover(dir: &Path, writable: bool, crashed: bool, logs: &Logs<'_>) -> Option<Recovered> {
    let p = Project::open(
        0,
        dir.to_path_buf(),
        writable,
        DEFAULT_SEGMENT_BYTES,
        crashed,
        &|| Ok(()),
    )
    .ok()?;
    let snap = p.snapshot();
    let active = snap.active.as_ref()?;
    let entries = active.entries.read().clone();
    let first = active.header.first_seq;
    assert_eq!(Some(snap.next_seq), first.checked_add(entries.len() as u64));
    let log = logs.first();
    assert!(snap.active_len <= log.len() as u64);
    // Entries before the index's last one are trusted unread (the index is a cache, checked for
    // shape): they may point at damage, which readers then report. The newest is read.
    for (i, &e) in entries.iter().enumerate() {
        assert!(
            e == LOST || u64::from(e) < snap.active_len,
            "entry {i} is committed"
        );
    }
    if let Some(i) = entries.iter().rposition(|&e| e != LOST) {
        let rec = segment::decode_at(
            log,
            0,
            u64::from(entries[i]),
            &active.header,
            i as u64,
            &active.path,
        )
        .expect("the newest recovered record decodes");
        assert_eq!(rec.stamp, snap.last_stamp, "the newest stamp");
    }
    if writable {
        // The repair is on disk: the log is cut back to what was committed.
        let on_disk = std::fs::metadata(&active.path).ok()?.len();
        assert_eq!(on_disk, snap.active_len, "the torn tail is cut");
    }
    Some(Recovered {
        entries,
        len: snap.active_len,
        next_seq: snap.next_seq,
        last_stamp: snap.last_stamp,
    })
}

/// A whole store laid out from the input, opened, read, verified, appended to and reopened.
///
/// Input: a flags byte, then parts (see `Parts`): a segment log, its index, a second segment
/// log, its index, a `CLOCK` file; the rest is a `NEWEST` file. Each segment is named after the
/// first sequence number in its header (or 1 and 2 when the header does not decode); a first
/// segment named 1 that is the only one is a new project's log not yet synced
/// (`00000000000000000001.log.new`) when the second log's part is not empty — and, when the
/// second index's part is not empty too, it is in a spare directory (`projects/.spare-0`)
/// instead of the project's: a project whose rename into place a crash lost. Flags:
///
/// | bit | meaning |
/// |---|---|
/// | 0 | write the first segment's index |
/// | 1 | write the second segment (log, and index if bit 0) |
/// | 2 | write the `CLOCK` file |
/// | 3 | write the `NEWEST` file |
/// | 4 | repair the checksums of every file before writing it |
/// | 5 | open read-only first, read, and query all projects |
/// | 6 | create the store with the smallest segments (4 KiB) instead of the default |
/// | 7 | append with `Durability::Sync` |
///
/// Asserts: every message read (read-only or writable) is a frame, checksum included, of the
/// files given; an acknowledged append is the newest message after a reopen, and the older
/// messages still read as before.
pub fn open_and_recover(data: &[u8]) {
    LOOK_AGAIN_AT_ONCE.store(true, Ordering::Relaxed);
    let mut input = Parts::new(data);
    let flags = input.byte();
    let repair = flags & 16 != 0;
    let mut log_a = input.part().to_vec();
    let idx_a = input.part();
    let mut log_b = input.part().to_vec();
    let idx_b = input.part();
    let mut clock = input.part().to_vec();
    let mut newest = input.rest().to_vec();
    if repair {
        repair_log(&mut log_a);
        repair_log(&mut log_b);
        repair_clock(&mut clock);
        repair_newest(&mut newest);
    }
    let with_index = flags & 1 != 0;
    let second = flags & 2 != 0;

    let Some(tmp) = scratch_dir() else { return };
    let dir = tmp.path();
    let segment_bytes = if flags & 64 != 0 {
        MIN_SEGMENT_BYTES
    } else {
        DEFAULT_SEGMENT_BYTES
    };
    // Create the store (STORE, CLOCK, projects/), then lay the files out inside it.
    match Options::new().segment_bytes(segment_bytes).open(dir) {
        Ok(s) => drop(s),
        Err(_) => return,
    }
    let pdir = store::project_dir_in(dir, PROJECT);
    let name_a = SegmentHeader::decode(&log_a).map_or(1, |h| h.first_seq);
    let new_log = !second && name_a == 1 && !log_b.is_empty();
    let dir_a = if new_log && !idx_b.is_empty() {
        dir.join("projects/.spare-0")
    } else {
        pdir.clone()
    };
    if std::fs::create_dir_all(&dir_a).is_err() {
        return;
    }
    let mut written = true;
    let mut put = |path: &Path, bytes: &[u8]| written &= std::fs::write(path, bytes).is_ok();
    let path_a = if new_log {
        segment::new_log_path(&dir_a)
    } else {
        segment::log_path(&dir_a, name_a)
    };
    put(&path_a, &log_a);
    if with_index {
        put(&segment::index_path(&dir_a, name_a), idx_a);
    }
    if second {
        let name_b = SegmentHeader::decode(&log_b).map_or(2, |h| h.first_seq);
        put(&segment::log_path(&pdir, name_b), &log_b);
        if with_index {
            put(&segment::index_path(&pdir, name_b), idx_b);
        }
    }
    if flags & 4 != 0 {
        put(&dir.join("CLOCK"), &clock);
    }
    if flags & 8 != 0 {
        put(&dir.join("NEWEST"), &newest);
    }
    if !written {
        return;
    }
    let logs = if second {
        Logs::new(&[&log_a, &log_b])
    } else {
        Logs::new(&[&log_a])
    };

    if flags & 32 != 0 {
        if let Ok(store) = Options::new().read_only(true).open(dir) {
            if let Ok(merged) = store.query(&Query::new().count(READ_LIMIT as u64)) {
                for m in read_some(merged).into_iter().flatten() {
                    if m.project() == PROJECT {
                        assert_message_in_logs(&logs, &m);
                    }
                }
            }
            read_newest(&store, &logs);
        }
    }

    let Ok(store) = Options::new().open(dir) else {
        return;
    };
    let before = read_newest(&store, &logs);
    let _ = crate::verify(dir, None, |_| {}, |_| {});
    let durability = if flags & 128 != 0 {
        Durability::Sync
    } else {
        Durability::Written
    };
    let appended = store.append_with(PROJECT, [APPENDED], durability);
    drop(store);
    let Ok(appended) = appended else { return };

    let store = Options::new()
        .open(dir)
        .expect("a store that took an append reopens");
    let mut it = store
        .newest_first(PROJECT)
        .expect("a project that took an append opens");
    let newest = it
        .next()
        .expect("the appended message is there")
        .expect("the appended message reads");
    assert_eq!(
        (newest.seq(), newest.json()),
        (appended.first_seq, APPENDED),
        "the acknowledged append is the newest message"
    );
    assert_eq!(newest.stamp(), appended.stamp);
    let older = read_some(it);
    for m in older.iter().flatten() {
        assert_message_in_logs(&logs, m);
    }
    // What read before the append still reads the same, as far as both got.
    if before.first().is_some_and(|m| m.is_some()) {
        let n = before.len().min(older.len());
        for (b, o) in before[..n].iter().zip(&older[..n]) {
            if let (Some(b), Some(o)) = (b, o) {
                assert_eq!(b, o, "an older message reads the same after the append");
            }
        }
    }
}

/// At most [`READ_LIMIT`] results, and none after the second error (`None`): in the active
/// segment, each error over a run of lost records costs the length of the whole run, so a run of
/// millions read to its end would take minutes (see fuzz/README.md, findings).
fn read_some(it: impl Iterator<Item = crate::Result<Message>>) -> Vec<Option<Message>> {
    let mut errors = 0;
    it.take(READ_LIMIT)
        .map(|m| m.ok())
        .take_while(|m| {
            errors += usize::from(m.is_none());
            errors <= 2
        })
        .collect()
}

/// Reads the project newest first (at most [`READ_LIMIT`] results), checking every message.
fn read_newest(store: &Store, logs: &Logs<'_>) -> Vec<Option<Message>> {
    let Ok(it) = store.newest_first(PROJECT) else {
        return Vec::new();
    };
    let read = read_some(it);
    let mut prev: Option<u64> = None;
    for m in read.iter().flatten() {
        assert_eq!(m.project(), PROJECT);
        if let Some(p) = prev {
            assert!(m.seq() < p, "newest first");
        }
        prev = Some(m.seq());
        assert_message_in_logs(logs, m);
    }
    read
}

fn assert_message_in_logs(logs: &Logs<'_>, m: &Message) {
    assert_record_in_logs(logs, m.seq(), m.stamp(), m.json().as_bytes());
}

/// Asserts that one of `logs` holds the frame of this record — same sequence number, stamp and
/// payload, checksum included — so that a reader never returns bytes that were not a whole,
/// checked record.
fn assert_record_in_logs(logs: &Logs<'_>, seq: u64, stamp: u64, payload: &[u8]) {
    assert!(
        logs.hold(seq, stamp, payload),
        "record {seq} (stamp {stamp}, {} bytes) is not a frame of the files given",
        payload.len()
    );
}

/// The log images a store was given, each with its header and where each 4-byte word of it
/// occurs (a frame starts with its checksum word), so that finding a frame is a lookup.
struct Logs<'a>(Vec<LogImage<'a>>);

/// One log image of [`Logs`].
struct LogImage<'a> {
    log: &'a [u8],
    header: Option<SegmentHeader>,
    /// Where each 4-byte word after the header starts.
    words: HashMap<u32, Vec<usize>>,
}

impl<'a> Logs<'a> {
    fn new(images: &[&'a [u8]]) -> Self {
        Logs(
            images
                .iter()
                .map(|&log| {
                    let mut words: HashMap<u32, Vec<usize>> = HashMap::new();
                    for at in LOG_HEADER_BYTES..(log.len() + 1).saturating_sub(4) {
                        words.entry(word(log, at)).or_default().push(at);
                    }
                    LogImage {
                        log,
                        header: SegmentHeader::decode(log).ok(),
                        words,
                    }
                })
                .collect(),
        )
    }

    /// The first image.
    fn first(&self) -> &'a [u8] {
        self.0.first().map_or(&[], |l| l.log)
    }

    /// Whether an image holds the frame of record `seq`, stamped `stamp`, carrying `payload`.
    fn hold(&self, seq: u64, stamp: u64, payload: &[u8]) -> bool {
        self.0.iter().any(|LogImage { log, header, words }| {
            let Some(h) = header else { return false };
            let (Some(sd), Some(td)) = (
                seq.checked_sub(h.first_seq),
                stamp.checked_sub(h.base_stamp),
            ) else {
                return false;
            };
            if sd >= MAX_RECORDS_PER_SEGMENT
                || td > MAX_STAMP_DELTA_US
                || payload.is_empty()
                || payload.len() > MAX_PAYLOAD_BYTES
            {
                return false;
            }
            [false, true].into_iter().any(|continues| {
                let mut frame = Vec::new();
                encode_frame(
                    &mut frame,
                    &Frame {
                        seq_delta: sd as u32,
                        stamp_delta: td,
                        continues,
                        payload,
                    },
                );
                words.get(&word(&frame, 0)).is_some_and(|starts| {
                    starts
                        .iter()
                        .any(|&at| log.get(at..at + frame.len()) == Some(frame.as_slice()))
                })
            })
        })
    }
}

/// The little-endian word at `buf[at..at + 4]`.
fn word(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// The Activity API's query-string parser (`src/http/params.rs`) and the filter parser.
///
/// Input: the query string; after a first newline, an `Accept` header value; after a second, a
/// message that the parsed filters are applied to. The query string is also parsed as a single
/// filter and as a meta field name, as the command line takes them.
#[cfg(feature = "server")]
pub fn http_query(data: &[u8]) {
    use axum::http::{header, HeaderMap, HeaderValue};

    use crate::filter::Filters;
    use crate::{Filter, Meta};

    let mut lines = data.splitn(3, |&b| b == b'\n');
    let query = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let accept = lines.next();
    let message = String::from_utf8_lossy(lines.next().unwrap_or_default());

    let _ = Filter::parse(&query);
    let _ = query.parse::<Meta>();
    let Ok(params) = http_params::Params::parse(Some(&query)) else {
        return;
    };
    if let Some(projects) = &params.projects {
        assert!(projects.len() <= 1_000, "at most 1,000 projects");
    }
    let mut headers = HeaderMap::new();
    if let Some(value) = accept.and_then(|a| HeaderValue::from_bytes(a).ok()) {
        headers.insert(header::ACCEPT, value);
    }
    let _ = params.format(&headers);
    let _ = (&params.apikey, &params.meta, params.count, params.pcount);
    for f in &params.filters {
        let _ = (f.field(), f.op().to_string());
    }
    let passed = Filters::new(params.filters.clone()).pass(&message);
    if let Ok(map) = serde_json::from_str::<Map<String, Value>>(&message) {
        let all = params.filters.iter().all(|f| f.matches(&map));
        assert_eq!(passed, all, "a message passes when every filter matches");
    }
}

/// The POST body parser: JSON Lines split, each line validated and compacted, and the whole
/// body appended to a temporary store.
///
/// Asserts: a line that validates compacts to one line that validates again, compacts to itself,
/// means the same JSON, and parses as an object (as filters need); the store stores the body if
/// and only if every line validates, reads back exactly the compacted lines, and on rejection
/// names a line of the input and stores nothing.
pub fn post_body(data: &[u8]) {
    // The spans a body is stored from (`Store::append_json_lines`) hold what the general path
    // prepares, and refuse what it refuses, with the same error.
    let items: Vec<&[u8]> = json::lines(data).collect();
    match (store::prepare(&items, 64), store::prepare_lines(data, 64)) {
        (Ok(general), Ok(spans)) => {
            assert_eq!(general.len(), spans.count());
            for (i, message) in general.iter().enumerate() {
                assert_eq!(spans.pieces(i), (&message[..], &[][..]));
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("the paths disagree: {:?} / {:?}", a.err(), b.err()),
    }
    let lines = json::split_lines(data);
    let mut prev_line = 0;
    for &(n, line) in &lines {
        assert!(n > prev_line, "line numbers increase");
        prev_line = n;
        assert!(!line.contains(&b'\n'));
        assert!(
            !line.iter().all(|b| b" \t\r\n".contains(b)),
            "blank lines are skipped"
        );
        if json::validate_object(line).is_err() {
            continue;
        }
        let compact = json::compact(line);
        assert!(!compact.contains(&b'\n'), "a compacted message is one line");
        assert!(
            json::validate_object(&compact).is_ok(),
            "a compacted message validates"
        );
        assert_eq!(json::compact(&compact), compact, "compaction is idempotent");
        // Every accepted message parses as filters parse it (numbers out of `f64` range such
        // as `1e400` and lone UTF-16 surrogates such as `"\udddd"` were once accepted and
        // unreadable: fuzz/README.md), and compaction keeps its meaning.
        type Object = Map<String, Value>;
        match (
            serde_json::from_slice::<Object>(&compact),
            serde_json::from_slice::<Object>(line),
        ) {
            (Ok(object), Ok(original)) => {
                assert_eq!(object, original, "compaction keeps the meaning")
            }
            (c, o) => panic!("an accepted message does not parse: {c:?} / {o:?}"),
        }
        if let Some((cut, value)) = json::find_member(&compact, "_ts") {
            assert!(cut.end <= compact.len() && value.end <= compact.len());
            assert!(cut.start <= value.start && value.end <= cut.end);
        }
        // The single pass imports use agrees with the three steps above.
        let mut out = Vec::new();
        let one = json::scan_object(line, &[b"_ts", b"a"], &mut out)
            .expect("the single pass accepts what validates");
        let one_compact: &[u8] = if one.copied { &out } else { line };
        assert_eq!(one_compact, &*compact, "the single pass compacts the same");
        for (member, name) in one.members.iter().zip(["_ts", "a"]) {
            let found = json::find_member(&compact, name);
            let member = member.as_ref().map(|m| (m.cut.clone(), m.value.clone()));
            assert_eq!(member, found, "the single pass finds the same {name}");
        }
    }
    for &(_, line) in &lines {
        if json::validate_object(line).is_err() {
            let mut out = Vec::new();
            assert!(
                json::scan_object(line, &[b"_ts"], &mut out).is_none() && out.is_empty(),
                "the single pass refuses what does not validate"
            );
        }
    }
    let batch: Vec<&[u8]> = lines.iter().map(|&(_, l)| l).collect();
    let prepared = store::prepare(&batch, DEFAULT_MAX_MESSAGE_BYTES)
        .map(|b| b.into_iter().map(|m| m.into_owned()).collect::<Vec<_>>());

    let Some(tmp) = scratch_dir() else { return };
    let Ok(store) = Options::new().open(tmp.path()) else {
        return;
    };
    match store.append_json_lines(PROJECT, data, Durability::Written) {
        Ok(appended) => {
            let prepared = prepared.expect("a stored body validates");
            assert_eq!(appended.count, prepared.len() as u64);
            let read: Vec<Vec<u8>> = store
                .oldest_first(PROJECT)
                .expect("the project opens")
                .map(|m| m.expect("a stored message reads").into_json().into_bytes())
                .collect();
            assert_eq!(read, prepared, "the body reads back compacted, in order");
        }
        Err(e) => {
            assert!(prepared.is_err(), "a valid body is stored ({e})");
            if let Error::InvalidMessage { index, line, .. } | Error::TooLarge { index, line, .. } =
                &e
            {
                assert_eq!(*line, Some(lines[*index].0), "the error names the line");
            }
            if let Ok(mut it) = store.newest_first(PROJECT) {
                assert!(it.next().is_none(), "a rejected body stores nothing");
            }
        }
    }
}

/// The project an `import_lines` input goes to when its flags byte is even.
const IMPORT_PROJECT: u64 = 7;

/// The archive importer: JSON Lines imported whole ([`Store::import_json_lines`]) into one
/// scratch store, and read in small pieces (as [`Store::import_json_lines_from`] reads a file)
/// into another.
///
/// Input: a flags byte, then the JSON Lines. Flags: bit 0 picks the target (clear: every line
/// to project 7; set: each line to the project its top-level field `p` names), the other bits
/// the size of the pieces (1 to 128 bytes).
///
/// Asserts: both imports give the same [`crate::Imported`], or the same error; a refused input
/// stores nothing; an import stores in each project exactly the messages it counts there, and
/// those are the input's lines, in input order, each meaning what its line means without its
/// top-level `_ts` (read back with serde_json), their times never going back; a line's `_ts`,
/// where it has one, is never later than its message's time.
pub fn import_lines(data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let target = if flags & 1 == 0 {
        crate::ImportTarget::Project(IMPORT_PROJECT)
    } else {
        crate::ImportTarget::Field("p")
    };
    let piece = usize::from(flags >> 1) + 1;
    let (Some(whole_dir), Some(pieces_dir)) = (scratch_dir(), scratch_dir()) else {
        return;
    };
    let (Ok(whole), Ok(pieces)) = (
        Store::open(whole_dir.path()),
        Store::open(pieces_dir.path()),
    ) else {
        return;
    };
    let by_whole = whole.import_json_lines(input, target, Durability::Written);
    let by_pieces = pieces.import_in_chunks(
        SmallReads { input, most: piece },
        Path::new("input.jl"),
        target,
        Durability::Written,
        piece,
    );
    let imported = match (by_whole, by_pieces) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the whole input and its pieces import alike");
            a
        }
        (Err(a), Err(b)) => {
            // The two stores' clocks may be a millisecond apart, and an error may say one.
            assert_eq!(
                without_clock(&a.to_string()),
                without_clock(&b.to_string()),
                "both refuse alike"
            );
            assert!(
                !matches!(a, Error::ImportInterrupted { .. }),
                "nothing fails while storing into a scratch store: {a}"
            );
            for store in [&whole, &pieces] {
                assert_eq!(
                    store.projects().ok(),
                    Some(Vec::new()),
                    "a refused input stores nothing: {a}"
                );
            }
            return;
        }
        (a, b) => panic!("the whole input and its pieces disagree: {a:?} / {b:?}"),
    };
    // What each project should hold, from the lines as serde_json reads them: their members
    // in order, duplicates kept, the last `_ts` (the one that names the time, as the last of
    // a duplicated name is the one serde_json and filters see) taken out.
    let mut expected: HashMap<u64, Vec<(Members, Option<u64>)>> = HashMap::new();
    for line in json::lines(input) {
        let mut members: Members = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("an imported line that serde_json refuses ({e})"));
        let project = match target {
            crate::ImportTarget::Project(id) => id,
            crate::ImportTarget::Field(name) => members
                .last(name)
                .and_then(Value::as_u64)
                .expect("an imported line names its project"),
        };
        // The time in µs, from the last `_ts`'s text: milliseconds, maybe with up to three
        // decimals (an f64 would round them off far from now).
        let ts = members.take_last("_ts").map(|_| {
            let compact = json::compact(line);
            let (_, value) = json::find_member(&compact, "_ts").expect("the `_ts` just taken");
            let text = std::str::from_utf8(&compact[value]).expect("a number is ASCII");
            let (ms, fraction) = text.split_once('.').unwrap_or((text, ""));
            let ms: u64 = ms
                .parse()
                .expect("an imported `_ts` is whole milliseconds first");
            ms * 1000 + format!("{fraction:0<3}").parse::<u64>().expect("µs")
        });
        expected.entry(project).or_default().push((members, ts));
    }
    let mut counted: Vec<u64> = imported.per_project.keys().copied().collect();
    let mut projects: Vec<u64> = expected.keys().copied().collect();
    counted.sort_unstable();
    projects.sort_unstable();
    assert_eq!(
        counted, projects,
        "the projects imported are the lines' projects"
    );
    for store in [&whole, &pieces] {
        let mut stored = store.projects().expect("listing the projects");
        stored.sort_unstable();
        assert_eq!(
            stored, projects,
            "the projects stored are the projects imported"
        );
        for (project, lines) in &expected {
            assert_eq!(imported.per_project[project], lines.len() as u64);
            let messages: Vec<Message> = store
                .oldest_first(*project)
                .expect("reading an imported project")
                .collect::<crate::Result<_>>()
                .expect("an imported message reads back");
            assert_eq!(messages.len(), lines.len(), "project {project}");
            let mut last = 0;
            for (m, (want, ts)) in messages.iter().zip(lines) {
                let got: Members = serde_json::from_str(m.json()).expect("a stored message parses");
                assert_eq!(&got, want, "project {project}, record {}", m.seq());
                assert!(m.stamp() >= last, "times go back in project {project}");
                last = m.stamp();
                if let Some(ts) = ts {
                    assert!(*ts <= m.stamp(), "a `_ts` after its message's time");
                }
            }
        }
    }
}

/// An error message without the store's clock it may give (`"store's clock (N ms)"`).
fn without_clock(message: &str) -> String {
    const CLOCK: &str = "store's clock (";
    match message.find(CLOCK) {
        Some(at) => {
            let rest = &message[at + CLOCK.len()..];
            let after = rest.find(')').map_or("", |end| &rest[end..]);
            format!("{}{CLOCK}{after}", &message[..at])
        }
        None => message.to_string(),
    }
}

/// A JSON object's members in order, a duplicated name kept as often as it comes.
#[derive(Debug, PartialEq)]
struct Members(Vec<(String, Value)>);

impl Members {
    /// The value of the last member called `name`.
    fn last(&self, name: &str) -> Option<&Value> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Removes the last member called `name`, returning its value.
    fn take_last(&mut self, name: &str) -> Option<Value> {
        let at = self.0.iter().rposition(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// An input that gives at most `most` bytes per read.
struct SmallReads<'a> {
    input: &'a [u8],
    most: usize,
}

impl std::io::Read for SmallReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.most.min(buf.len()).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

/// Reads a fuzz input as a flags byte and parts, each part a little-endian `u16` length and
/// that many bytes (fewer if the input ends first), the last part being whatever remains.
struct Parts<'a>(&'a [u8]);

impl<'a> Parts<'a> {
    fn new(data: &'a [u8]) -> Self {
        Parts(data)
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn part(&mut self) -> &'a [u8] {
        let [a, b, rest @ ..] = self.0 else {
            self.0 = &[];
            return &[];
        };
        let len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
        let (part, rest) = rest.split_at(len);
        self.0 = rest;
        part
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// Builds an input for [`Parts`]: `flags`, the length-prefixed `parts`, then `rest`.
fn join_parts(flags: u8, parts: &[&[u8]], rest: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    for p in parts {
        let len = u16::try_from(p.len()).expect("a seed part fits a u16 length");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p);
    }
    out.extend_from_slice(rest);
    out
}

/// Recomputes the checksums of a log image: the header's, and each frame's while the length
/// fields walk from one frame to the next. Trailers are left as they are.
fn repair_log(log: &mut [u8]) {
    if log.len() < LOG_HEADER_BYTES {
        return;
    }
    let crc = crc32fast::hash(&log[16..LOG_HEADER_BYTES]);
    log[12..16].copy_from_slice(&crc.to_le_bytes());
    let mut at = LOG_HEADER_BYTES;
    while at + FRAME_OVERHEAD_BYTES <= log.len() {
        let len_flags = u32::from_le_bytes([log[at + 4], log[at + 5], log[at + 6], log[at + 7]]);
        let len = (len_flags & 0xff_ffff) as usize;
        let body_end = at + FRAME_HEADER_BYTES + len;
        if len == 0 || body_end + 4 > log.len() {
            return;
        }
        let crc = crc32fast::hash(&log[at + 4..body_end]);
        log[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        at = body_end + 4;
    }
}

/// Recomputes the checksums of both slots of a `CLOCK` image.
fn repair_clock(clock: &mut [u8]) {
    for slot in [16, 32] {
        if let Some(s) = clock.get_mut(slot..slot + 16) {
            let crc = crc32fast::hash(&s[0..8]);
            s[8..12].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// Recomputes the checksum of a `NEWEST` image.
fn repair_newest(newest: &mut [u8]) {
    if newest.len() >= 24 {
        let crc = crc32fast::hash(&newest[16..]);
        newest[12..16].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A fresh temporary directory, in memory when `/dev/shm` is there. `None` if none can be made:
/// the environment failing is not a finding.
fn scratch_dir() -> Option<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("activitylog-fuzz-");
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return Some(dir);
        }
    }
    builder.tempdir().ok()
}

/// Meaningful starting inputs for `target`, made with the library itself: `(name, bytes)`.
/// `tests/fuzz_corpora.rs` writes them into `fuzz/corpus/<target>/` on request.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let named = |v: Vec<(&str, Vec<u8>)>| {
        v.into_iter()
            .map(|(n, b)| (format!("seed-{n}"), b))
            .collect()
    };
    match target {
        "record_decoder" => named(record_seeds()),
        "index_loader" => named(index_seeds()),
        "open_and_recover" => named(store_seeds()),
        "http_query" => named(
            [
                ("projects", "count=10&p=1&p=2&pcount=3&meta=_ts&filter=[\"event\",\"=\",[\"job:started\"]]\napplication/json\n{\"event\":\"job:started\",\"job\":\"1/2/3\"}"),
                ("count", "count=2&meta=_ts&meta=_key&meta=_project&format=json"),
                ("filters", "filter=%5B%22c%22%2C%22%3E%3D%22%2C%5B5%5D%5D&filter=[\"e\",\"icontains\",[\"JOB\"]]&format=jl\ntext/html, application/json;q=0.9\n{\"c\":9,\"e\":\"a Job\"}"),
                ("ops", "filter=[\"e\",\"startswith\",[\"job:\"]]&filter=[\"e\",\"exists\",[]]&filter=[\"n\",\"<\",[1.5]]&filter=[\"t\",\"contains\",[2]]&filter=[\"x\",\"!=\",[null,true]]&filter=[\"y\",\"in\",[\"a\",1]]\n\n{\"e\":\"job:done\",\"n\":1,\"t\":[1,2],\"x\":false,\"y\":\"a\"}"),
                ("apikey", "apikey=secret&p=18446744073709551615&count=0&pcount=18446744073709551615"),
                ("bad", "count=-1&p=x&meta=_nope&filter=nope&format=xml"),
            ]
            .into_iter()
            .map(|(n, s)| (n, s.as_bytes().to_vec()))
            .collect(),
        ),
        "import_lines" => {
            named(vec![
                ("export", b"\x00{\"event\":\"job:started\",\"_ts\":1700000000000}\n{\"event\":\"job:completed\",\"_ts\":1700000000500.25}\n".to_vec()),
                ("by-field", b"\x09{\"p\":1,\"e\":\"a\",\"_ts\":5}\r\n\n{\"p\":2,\"_ts\":3}\n{\"p\":1,\"_ts\":4,\"k\":{\"_ts\":1}}\n{\"p\":3}".to_vec()),
                ("no-ts", b"\x40{\"a\":1}\n  \n{ \"b\" : [1, 2] }\n".to_vec()),
                ("ahead", b"\x02{\"_ts\":99999999999999}\n".to_vec()),
                ("bad-field", b"\x01{\"p\":-1}\n".to_vec()),
                ("bad-line", b"\x00{\"a\":1}\n{\"a\":\n".to_vec()),
            ])
        }
        "post_body" => {
            let deep = format!("{{\"a\":{}1{}}}", "[".repeat(127), "]".repeat(127));
            named(vec![
                ("activity", b"{\"event\": \"job:started\", \"job\": \"1111111/3/4\", \"user\": \"john\"}\n{\"event\":\"job:completed\"}\n".to_vec()),
                ("crlf-blank", b"{\"a\":1}\r\n\r\n  \n{ \"b\" : [1, 2 ,{ \"c\" : \"x y\\\" z\" }] }\n\n{\"c\":3}".to_vec()),
                ("escapes", "{\"s\":\"tab\\t \\u00e9 \\\\\",\"_ts\":5,\"k\":{\"_ts\":1},\"e\":\"\u{e9}\"}".as_bytes().to_vec()),
                ("numbers", b"{\"n\":-0.0e+10,\"m\":18446744073709551616,\"b\":true,\"z\":null}".to_vec()),
                ("deep", deep.into_bytes()),
                ("not-object", b"{\"a\":1}\n[1]\n".to_vec()),
                ("bad-utf8", b"{\"a\":\"\xff\"}".to_vec()),
            ])
        }
        _ => Vec::new(),
    }
}

/// A store of one project written through the library: `(dir, project dir)`.
fn sample_store(
    segment_bytes: u64,
    batches: &[usize],
) -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    let tmp = tempfile::tempdir().ok()?;
    let store = Options::new()
        .segment_bytes(segment_bytes)
        .open(tmp.path())
        .ok()?;
    let mut n = 0;
    for &size in batches {
        let batch: Vec<String> = (0..size)
            .map(|_| {
                n += 1;
                format!(r#"{{"event":"job:started","job":"{PROJECT}/3/{n}","user":"john"}}"#)
            })
            .collect();
        store.append(PROJECT, &batch).ok()?;
    }
    drop(store);
    let pdir = store::project_dir_in(tmp.path(), PROJECT);
    Some((tmp, pdir))
}

/// The segment files of a sample store, oldest first: `(log, index)`.
fn sample_segments(segment_bytes: u64, batches: &[usize]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some((_tmp, pdir)) = sample_store(segment_bytes, batches) else {
        return Vec::new();
    };
    segment::list(&pdir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|first| {
            let log = std::fs::read(segment::log_path(&pdir, first)).ok()?;
            let idx = std::fs::read(segment::index_path(&pdir, first)).ok()?;
            Some((log, idx))
        })
        .collect()
}

fn record_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let Some((log, _)) = sample_segments(DEFAULT_SEGMENT_BYTES, &[1, 3, 1])
        .into_iter()
        .next()
    else {
        return Vec::new();
    };
    let mut out = vec![("log", log.clone())];
    let frame_len = (log.len() - LOG_HEADER_BYTES) / 5;
    out.push((
        "frame",
        log[LOG_HEADER_BYTES..LOG_HEADER_BYTES + frame_len].to_vec(),
    ));
    let mut damaged = log.clone();
    damaged[LOG_HEADER_BYTES + frame_len + 20] ^= 0x40;
    out.push(("damaged", damaged));
    out.push(("torn", log[..log.len() - 7].to_vec()));
    // Records 0..=1 whole, then the first of a three-record batch: an unfinished batch.
    out.push((
        "open-batch",
        log[..LOG_HEADER_BYTES + 2 * frame_len].to_vec(),
    ));
    out
}

fn index_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let segs = sample_segments(MIN_SEGMENT_BYTES, &[10, 20, 5, 30]);
    let mut out = Vec::new();
    let Some((log, idx)) = segs.first().cloned() else {
        return out;
    };
    out.push(("sealed", join_parts(0, &[&log], &idx)));
    out.push(("no-index", join_parts(2, &[&log], &idx)));
    let mut lost = idx.clone();
    if lost.len() >= 24 {
        lost[20..24].copy_from_slice(&LOST.to_le_bytes());
    }
    out.push(("lost-entry", join_parts(0, &[&log], &lost)));
    out.push(("lagging", join_parts(0, &[&log], &idx[..idx.len() - 40])));
    out.push(("torn-log", join_parts(0, &[&log[..log.len() - 30]], &idx)));
    let mut damaged = log.clone();
    damaged[LOG_HEADER_BYTES + 100] ^= 1;
    out.push(("damaged-repaired", join_parts(1, &[&damaged], &idx)));
    if let Some((log, idx)) = segs.last() {
        out.push(("active", join_parts(0, &[log], idx)));
    }
    out
}

fn store_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let Some((tmp, pdir)) = sample_store(MIN_SEGMENT_BYTES, &[10, 20, 5, 30]) else {
        return out;
    };
    let seqs = segment::list(&pdir).unwrap_or_default();
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap_or_default();
    let clock = read(tmp.path().join("CLOCK"));
    let newest = read(tmp.path().join("NEWEST"));
    let (Some(&last), Some(&prev)) = (seqs.last(), seqs.iter().rev().nth(1)) else {
        return out;
    };
    let (log_a, idx_a) = (
        read(segment::log_path(&pdir, last)),
        read(segment::index_path(&pdir, last)),
    );
    let (log_b, idx_b) = (
        read(segment::log_path(&pdir, prev)),
        read(segment::index_path(&pdir, prev)),
    );
    let seed = |flags: u8, log_a: &[u8], idx_a: &[u8]| {
        join_parts(flags, &[log_a, idx_a, &log_b, &idx_b, &clock], &newest)
    };
    out.push(("clean", seed(1 | 2 | 4 | 8 | 32, &log_a, &idx_a)));
    out.push(("active-only", seed(1 | 64, &log_a, &idx_a)));
    out.push(("no-index", seed(2 | 128, &log_a, &idx_a)));
    out.push((
        "torn-tail",
        seed(1 | 2 | 32, &log_a[..log_a.len() - 9], &idx_a),
    ));
    let mut damaged = log_a.clone();
    damaged[LOG_HEADER_BYTES + 90] ^= 0x20;
    out.push(("damaged", seed(1 | 2 | 16 | 32, &damaged, &idx_a)));
    // The first segment alone, in a spare directory (second log and index parts not empty).
    if let Some(&first) = seqs.first() {
        let (log_1, idx_1) = (
            read(segment::log_path(&pdir, first)),
            read(segment::index_path(&pdir, first)),
        );
        out.push(("in-spare", seed(1 | 32 | 128, &log_1, &idx_1)));
    }
    out
}
