//! Damage in the middle of a log is corruption, not a torn tail: reading over it yields exactly
//! one typed error naming the file and the damaged record's offset, every other record reads
//! intact and in order, bad bytes never come back as a message, and recovery never cuts away the
//! good records after the damage — in a sealed segment or in the active one, with its index
//! intact or lost.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use activitylog::{Error, Message, Store};
use common::{
    copy_dir, frames_of, idx_path, log_path, open_read_only, open_small, scratch, segments, Frame,
};

const P: u64 = 9;

/// A closed store with project `P` over at least four segments; the active one holds several
/// records.
struct Fixture {
    dir: tempfile::TempDir,
    all: Vec<Message>,
    segs: Vec<u64>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = scratch();
        let store = open_small(dir.path());
        let mut n = 0u64;
        let mut round = 0usize;
        loop {
            round += 1;
            let size = [1, 2, 1, 3][round % 4];
            let batch: Vec<String> = (0..size)
                .map(|k| {
                    n += 1;
                    common::hinted(n, 30 + (k * 37 + round * 11) % 120)
                })
                .collect();
            store.append(P, &batch).unwrap();
            let segs = segments(dir.path(), P);
            if segs.len() >= 4 && frames_of(dir.path(), P, segs[3]).len() >= 9 {
                break;
            }
        }
        let all = common::read_all(&store, P);
        drop(store);
        Fixture {
            all,
            segs: segments(dir.path(), P),
            dir,
        }
    }

    /// A copy of the store to damage.
    fn copy(&self) -> tempfile::TempDir {
        let copy = scratch();
        copy_dir(self.dir.path(), copy.path());
        copy
    }

    /// The seq of the record `frame` holds in segment `first_seq`.
    fn seq_of(first_seq: u64, frame: &Frame) -> u64 {
        first_seq + frame.seq_delta
    }
}

fn flip(path: &Path, at: usize, mask: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= mask;
    fs::write(path, bytes).unwrap();
}

/// Iterates project `P` up to the fixture's newest message and checks: exactly one `Err`, a
/// corruption naming `path` (and `offset`, when given) where record `bad` would be; every other
/// record intact and in order.
fn check_reads(
    store: &Store,
    fx: &Fixture,
    bad: u64,
    path: &Path,
    offset: Option<u64>,
    what: &str,
) {
    let items: Vec<activitylog::Result<Message>> = store
        .newest_first(P)
        .unwrap()
        .before(fx.all[0].seq() + 1)
        .collect();
    let mut want = fx.all.iter().filter(|m| m.seq() != bad);
    let mut errors = 0;
    for (k, item) in items.iter().enumerate() {
        match item {
            Ok(m) => {
                assert_ne!(m.seq(), bad, "{what}: the damaged record came back as data");
                let w = want
                    .next()
                    .unwrap_or_else(|| panic!("{what}: extra message {m:?}"));
                assert_eq!(m, w, "{what}: item {k}");
            }
            Err(e) => {
                errors += 1;
                assert!(e.is_corruption(), "{what}: {e}");
                match e {
                    Error::Corrupt {
                        path: p, offset: o, ..
                    } => {
                        assert_eq!(p, path, "{what}: the error names the damaged file");
                        if let Some(offset) = offset {
                            assert_eq!(
                                *o, offset,
                                "{what}: the error names the damaged record ({e})"
                            );
                        }
                    }
                    other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
                }
                // The error stands where the bad record would be.
                let newer = items[..k].iter().rev().find_map(|i| i.as_ref().ok());
                let newest_ok = newer.is_none_or(|m| m.seq() == bad + 1);
                assert!(
                    newest_ok && bad <= fx.all[0].seq(),
                    "{what}: the error is out of place"
                );
            }
        }
    }
    assert!(
        want.next().is_none(),
        "{what}: records missing after the damage"
    );
    assert_eq!(errors, 1, "{what}: exactly one error");
}

/// Flips bits `mask` at byte `at` of segment `first_seq`'s log (in a fresh copy, with its index
/// deleted when asked), then checks reads read-only, writable, and after an append and a reopen.
/// With `exact_offset`, the error must name the damaged record's own offset.
fn check_flip(
    fx: &Fixture,
    first_seq: u64,
    frame: &Frame,
    at: usize,
    delete_index: bool,
    exact_offset: bool,
) {
    let what = format!(
        "segment {first_seq}, byte {at} (record at {}), index {}",
        frame.start,
        if delete_index { "deleted" } else { "kept" }
    );
    let bad = Fixture::seq_of(first_seq, frame);
    let copy = fx.copy();
    let log: PathBuf = log_path(copy.path(), P, first_seq);
    let len = fs::metadata(&log).unwrap().len();
    flip(&log, at, 0x40);
    if delete_index {
        fs::remove_file(idx_path(copy.path(), P, first_seq)).unwrap();
    }
    let offset = exact_offset.then_some(frame.start as u64);

    check_reads(
        &open_read_only(copy.path()),
        fx,
        bad,
        &log,
        offset,
        &format!("{what}, read-only"),
    );
    let store = Store::open(copy.path()).unwrap();
    check_reads(&store, fx, bad, &log, offset, &format!("{what}, writable"));
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        len,
        "{what}: recovery cut the log"
    );
    let a = store.append(P, [r#"{"after":"damage"}"#]).unwrap();
    assert_eq!(a.first_seq, fx.all[0].seq() + 1, "{what}: seqs continue");
    drop(store);

    let store = Store::open(copy.path()).unwrap();
    let newest = store.newest_first(P).unwrap().next().unwrap().unwrap();
    assert_eq!(newest.json(), r#"{"after":"damage"}"#, "{what}");
    // The active segment has grown by the new message; no segment may have shrunk.
    assert!(
        fs::metadata(&log).unwrap().len() >= len,
        "{what}: a reopen cut the log"
    );
    check_reads(&store, fx, bad, &log, offset, &format!("{what}, reopened"));
}

/// The first, a middle and the last record of segment `first_seq`.
fn first_middle_last(fx: &Fixture, first_seq: u64) -> Vec<Frame> {
    let frames = frames_of(fx.dir.path(), P, first_seq);
    assert!(frames.len() >= 5);
    vec![
        frames[0].clone(),
        frames[frames.len() / 2].clone(),
        frames.last().unwrap().clone(),
    ]
}

fn middle_of_payload(frame: &Frame) -> usize {
    (frame.payload.start + frame.payload.end) / 2
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_one_error_and_the_rest_reads() {
    let fx = Fixture::new();
    let seg = fx.segs[1];
    for frame in first_middle_last(&fx, seg) {
        for delete_index in [false, true] {
            check_flip(
                &fx,
                seg,
                &frame,
                middle_of_payload(&frame),
                delete_index,
                false,
            );
        }
    }
}

#[test]
fn every_byte_of_a_sealed_record_is_checked() {
    let fx = Fixture::new();
    let seg = fx.segs[1];
    let frames = frames_of(fx.dir.path(), P, seg);
    let frame = &frames[frames.len() / 2];
    for at in frame.start..frame.end {
        for delete_index in [false, true] {
            check_flip(&fx, seg, frame, at, delete_index, !delete_index);
        }
    }
}

#[test]
fn damage_in_the_active_segment_with_good_records_after_it_is_not_cut_away() {
    let fx = Fixture::new();
    let seg = *fx.segs.last().unwrap();
    let frames = frames_of(fx.dir.path(), P, seg);
    // Not the last record: a bad last record is a torn tail, cut by design.
    for frame in [
        &frames[0],
        &frames[frames.len() / 2],
        &frames[frames.len() - 2],
    ] {
        for delete_index in [false, true] {
            check_flip(
                &fx,
                seg,
                frame,
                middle_of_payload(frame),
                delete_index,
                false,
            );
        }
    }
}

#[test]
fn every_byte_of_a_record_in_the_middle_of_the_active_segment_is_checked() {
    let fx = Fixture::new();
    let seg = *fx.segs.last().unwrap();
    let frames = frames_of(fx.dir.path(), P, seg);
    let frame = &frames[frames.len() / 2];
    for at in frame.start..frame.end {
        for delete_index in [false, true] {
            check_flip(&fx, seg, frame, at, delete_index, !delete_index);
        }
    }
}

/// The error names where the damage starts — the damaged record's offset — in every case: sealed
/// or active, index kept or rebuilt, right after the damage or after a reopen that trusts the
/// rebuilt index, and for a damaged last record of a sealed segment.
#[test]
fn the_error_names_the_damaged_records_offset() {
    let fx = Fixture::new();
    let sealed = frames_of(fx.dir.path(), P, fx.segs[1]);
    let active = *fx.segs.last().unwrap();
    let active_frames = frames_of(fx.dir.path(), P, active);
    let cases = [
        (fx.segs[1], &sealed[sealed.len() / 2]),
        (fx.segs[1], sealed.last().unwrap()),
        (active, &active_frames[active_frames.len() / 2]),
    ];
    for (seg, frame) in cases {
        for delete_index in [false, true] {
            check_flip(
                &fx,
                seg,
                frame,
                middle_of_payload(frame),
                delete_index,
                true,
            );
        }
    }
}

/// Two neighbouring records damaged and the index lost, so that the rebuilt index marks them
/// lost: one error for both, naming both, read either way, in a sealed segment as in the active
/// one. (Under a trusted index each record is checked, and fails, on its own.)
#[test]
fn a_run_of_lost_records_is_one_error_naming_them_all() {
    let fx = Fixture::new();
    let active = *fx.segs.last().unwrap();
    for seg in [fx.segs[1], active] {
        let frames = frames_of(fx.dir.path(), P, seg);
        let k = frames.len() / 2;
        let copy = fx.copy();
        let log = log_path(copy.path(), P, seg);
        flip(&log, middle_of_payload(&frames[k]), 0x01);
        flip(&log, middle_of_payload(&frames[k + 1]), 0x01);
        fs::remove_file(idx_path(copy.path(), P, seg)).unwrap();
        let (a, b) = (
            Fixture::seq_of(seg, &frames[k]),
            Fixture::seq_of(seg, &frames[k + 1]),
        );
        let store = open_read_only(copy.path());
        let newest: Vec<String> = store
            .newest_first(P)
            .unwrap()
            .filter_map(|m| m.err().map(|e| e.to_string()))
            .collect();
        let oldest: Vec<String> = store
            .oldest_first(P)
            .unwrap()
            .filter_map(|m| m.err().map(|e| e.to_string()))
            .collect();
        for errors in [newest, oldest] {
            assert_eq!(errors.len(), 1, "segment {seg}: {errors:?}");
            assert!(
                errors[0].contains(&format!("records {a}..={b} were lost")),
                "segment {seg}: {}",
                errors[0]
            );
        }
    }
}
