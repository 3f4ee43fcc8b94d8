//! After a crash (no clean close), damage in the active segment with good records after it is
//! still corruption, never a torn tail: recovery cuts nothing, reading it gives one typed error,
//! the records on both sides stay readable, `verify` reports it, and appending goes on. This
//! holds where the index covers the damage and past the index's last entry (the part a power cut
//! may have left unsynced).

mod common;

use std::fs;
use std::path::Path;

use activitylog::{Durability, Options, Store};
use common::{frames_of, idx_path, log_path, open_small, project_dir, scratch, segments};

const P: u64 = 4;

fn check(truncate_index: bool) {
    let dir = scratch();
    let store = open_small(dir.path());
    for i in 0..12 {
        store
            .append(
                P,
                [format!(r#"{{"i":{i},"pad":"{}"}}"#, "y".repeat(20 + i))],
            )
            .unwrap();
    }
    drop(store);
    // A crash: the clean-close marker is not there.
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let seg = *segments(dir.path(), P).last().unwrap();
    let frames = frames_of(dir.path(), P, seg);
    assert!(
        frames.len() >= 4,
        "{} records in the active segment",
        frames.len()
    );
    let damaged = &frames[frames.len() - 3];
    if truncate_index {
        // As after a power cut: the index holds only the records before the damage.
        let idx = idx_path(dir.path(), P, seg);
        let bytes = fs::read(&idx).unwrap();
        fs::write(&idx, &bytes[..16 + 4 * damaged.seq_delta as usize]).unwrap();
    }
    let log = log_path(dir.path(), P, seg);
    let mut bytes = fs::read(&log).unwrap();
    bytes[damaged.start + 10] ^= 0x08;
    fs::write(&log, &bytes).unwrap();
    let bad = seg + damaged.seq_delta;

    let store = open_small(dir.path());
    let items: Vec<_> = store.newest_first(P).unwrap().collect();
    assert_eq!(items.len(), 12, "every record, the damaged one as an error");
    for (k, item) in items.iter().enumerate() {
        match item {
            Ok(m) => {
                assert_ne!(m.seq(), bad);
                assert!(m.json().starts_with(&format!(r#"{{"i":{},"#, m.seq() - 1)));
            }
            Err(e) => {
                assert!(e.is_corruption(), "{e}");
                assert_eq!(k as u64, 12 - bad, "the error stands where the record was");
            }
        }
    }
    assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        bytes.len() as u64,
        "nothing cut"
    );
    let a = store.append(P, [r#"{"after":"damage"}"#]).unwrap();
    assert_eq!(a.first_seq, 13);
    drop(store);

    let mut problems = Vec::new();
    activitylog::verify(dir.path(), None, |p| problems.push(p.clone()), |_| {}).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, log);
    assert_eq!(problems[0].range.start, damaged.start as u64);
}

#[test]
fn damage_the_index_covers_is_reported_after_a_crash_not_cut() {
    check(false);
}

#[test]
fn damage_past_the_index_is_reported_after_a_crash_not_cut() {
    check(true);
}

/// A long run of records lost to damage in the active segment is one error, whichever way it is
/// read, found in one pass (not one error, and one walk of the segment, per 256 records).
#[test]
fn a_long_run_of_lost_records_in_the_active_segment_is_one_error() {
    let dir = scratch();
    let store = activitylog::Store::open(dir.path()).unwrap();
    for i in 0..1000 {
        store.append(P, [format!(r#"{{"i":{i}}}"#)]).unwrap();
    }
    drop(store);
    let seg = *segments(dir.path(), P).last().unwrap();
    let frames = frames_of(dir.path(), P, seg);
    assert_eq!(frames.len(), 1000, "one segment");
    let log = log_path(dir.path(), P, seg);
    let mut bytes = fs::read(&log).unwrap();
    bytes[frames[200].start..frames[800].start].fill(0);
    fs::write(&log, &bytes).unwrap();
    fs::remove_file(idx_path(dir.path(), P, seg)).unwrap();

    let store = activitylog::Store::open(dir.path()).unwrap();
    for forward in [false, true] {
        let it = store.newest_first(P).unwrap();
        let it = if forward { it.oldest_first() } else { it };
        let items: Vec<_> = it.collect();
        let errors: Vec<String> = items
            .iter()
            .filter_map(|i| i.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert_eq!(errors.len(), 1, "forward {forward}: {errors:?}");
        assert!(errors[0].contains("records 201..=800"), "{}", errors[0]);
        assert_eq!(items.len(), 401, "400 good records and one error");
    }
}

fn open_sync(dir: &Path) -> Store {
    Options::new()
        .durability(Durability::Sync)
        .spare_projects(4)
        .open(dir)
        .unwrap()
}

/// A `Sync` store's project made from a spare keeps its log under `….log.new` past its first
/// acknowledged (fsynced) records. Damage to that log's header (a bit flip, after a kill) is
/// reported, not taken for a creation that never reached the disk and removed with its records.
#[test]
fn a_damaged_header_of_a_new_log_holding_acknowledged_records_is_reported_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let crashed = copy.path().join("store");
    let store = open_sync(dir.path());
    store.append(1, [r#"{"p":1}"#]).unwrap();
    common::await_spares(dir.path(), 4);
    store
        .append(2, [r#"{"p":2,"n":1}"#, r#"{"p":2,"n":2}"#])
        .unwrap();
    let new_log = project_dir(dir.path(), 2).join("00000000000000000001.log.new");
    assert!(
        new_log.exists(),
        "acknowledged records under the new log's name"
    );
    // A kill: what is on disk now, without a clean close.
    common::copy_dir(dir.path(), &crashed);
    drop(store);
    // One bit of the header (its base stamp) flips.
    let log = project_dir(&crashed, 2).join("00000000000000000001.log.new");
    let mut bytes = fs::read(&log).unwrap();
    bytes[30] ^= 0x01;
    fs::write(&log, &bytes).unwrap();

    let store = open_sync(&crashed);
    let items: activitylog::Result<Vec<_>> = store.newest_first(2).map(|it| it.collect::<Vec<_>>());
    let still_there = log.exists()
        || project_dir(&crashed, 2)
            .join("00000000000000000001.log")
            .exists();
    assert!(
        still_there,
        "the writable open deleted a log holding 2 acknowledged records"
    );
    let reported = match &items {
        Err(_) => true,
        Ok(v) => v.iter().any(|r| r.is_err()),
    };
    assert!(
        reported,
        "the damage is reported, not read as an empty project: {items:?}"
    );
}

/// After a clean close, one flipped bit in the payload of the newest record — acknowledged as
/// `Sync`, and vouched for by an index entry, which is written only for synced records — is
/// damage, not a torn tail: reads report it, the records before it read, `verify` reports it
/// before and after the open, and the log keeps its bytes.
#[test]
fn a_damaged_newest_record_the_index_vouches_for_is_reported_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    drop(with_synced_singles(dir.path(), 3));
    assert!(dir.path().join("CLEAN").exists());
    let log = log_path(dir.path(), 1, 1);
    let len = fs::metadata(&log).unwrap().len();
    // Inside the newest record's payload.
    flip(dir.path(), len as usize - 4 - 2);
    let mut before = Vec::new();
    activitylog::verify(dir.path(), None, |p| before.push(p.to_string()), |_| {}).unwrap();

    let store = open_sync_alone(dir.path());
    // Acknowledged record 3 is reported as damage, not cut.
    assert_reads(&store, 3, "ERR", r#"2 {"n":2}"#);
    drop(store);
    let mut after = Vec::new();
    activitylog::verify(dir.path(), None, |p| after.push(p.to_string()), |_| {}).unwrap();
    assert!(before.len() == 1 && before == after, "{before:?} {after:?}");
    assert!(before[0].contains("record 3 does not read"), "{before:?}");
    assert_eq!(fs::metadata(&log).unwrap().len(), len);
}

/// Each message of project 1 as `"seq json"`, or `"ERR …"`, newest first.
fn seqs_and_errors(store: &Store, p: u64) -> Vec<String> {
    store
        .newest_first(p)
        .unwrap()
        .map(|m| {
            m.map(|m| format!("{} {}", m.seq(), m.json()))
                .unwrap_or_else(|e| format!("ERR {e}"))
        })
        .collect()
}

fn open_sync_alone(dir: &Path) -> Store {
    Options::new()
        .durability(Durability::Sync)
        .spare_projects(0)
        .open(dir)
        .unwrap()
}

/// A `Sync` store whose project 1 holds `{"n":1}` to `{"n":N}`, one append each (each synced,
/// its index entry written).
fn with_synced_singles(dir: &Path, n: u64) -> Store {
    let store = open_sync_alone(dir);
    for k in 1..=n {
        store.append(1, [format!(r#"{{"n":{k}}}"#)]).unwrap();
    }
    store
}

/// Flips a bit of byte `at` of project 1's first log.
fn flip(dir: &Path, at: usize) {
    let log = log_path(dir, 1, 1);
    let mut bytes = fs::read(&log).unwrap();
    bytes[at] ^= 0x10;
    fs::write(&log, &bytes).unwrap();
}

/// Project 1 reads as `len` items, the newest two starting with `newest` and `next`.
fn assert_reads(store: &Store, len: usize, newest: &str, next: &str) {
    let got = seqs_and_errors(store, 1);
    assert!(
        got.len() == len && got[0].starts_with(newest) && got[1].starts_with(next),
        "{got:?}"
    );
}

/// Record 3 synced (its index entry written), then damaged; after it, a `Written` batch of two
/// that a crash tore. The open cuts the batch, never record 3: it reads as an error and the
/// next append takes sequence number 4.
#[test]
fn a_damaged_record_the_index_vouches_for_stays_when_a_torn_batch_after_it_is_cut() {
    let dir = scratch();
    let store = with_synced_singles(dir.path(), 3);
    store
        .append_with(1, [r#"{"n":4}"#, r#"{"n":5}"#], Durability::Written)
        .unwrap();
    drop(store);
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let frames = frames_of(dir.path(), 1, 1);
    assert_eq!(frames.len(), 5);
    let log = log_path(dir.path(), 1, 1);
    let mut bytes = fs::read(&log).unwrap();
    bytes.truncate(frames[4].end - 3);
    fs::write(&log, &bytes).unwrap();
    flip(dir.path(), frames[2].payload.start + 1);
    // The index vouches for records 1 to 3 only: the batch was never synced.
    let idx = idx_path(dir.path(), 1, 1);
    let entries = fs::read(&idx).unwrap();
    fs::write(&idx, &entries[..16 + 4 * 3]).unwrap();

    let store = open_sync_alone(dir.path());
    assert_reads(&store, 3, "ERR", "2 ");
    assert_eq!(store.append(1, [r#"{"n":"after"}"#]).unwrap().first_seq, 4);
    drop(store);
    assert_reads(&open_sync_alone(dir.path()), 4, "4 ", "ERR");
}

/// A store already repaired so (record 3 kept, lost) takes a `Written` batch that a crash
/// tears: the next open cuts that batch and keeps record 3 lost, its sequence number too.
#[test]
fn a_record_kept_lost_stays_lost_when_a_later_torn_batch_is_cut() {
    let dir = scratch();
    drop(with_synced_singles(dir.path(), 3));
    let frames = frames_of(dir.path(), 1, 1);
    flip(dir.path(), frames[2].payload.start + 1);
    let store = open_sync_alone(dir.path());
    assert_eq!(seqs_and_errors(&store, 1).len(), 3);
    store
        .append_with(1, [r#"{"n":4}"#, r#"{"n":5}"#], Durability::Written)
        .unwrap();
    let copy = scratch();
    common::copy_dir(dir.path(), copy.path());
    drop(store);
    // The crash tears the batch's second record (and leaves no clean close).
    let log = log_path(copy.path(), 1, 1);
    let mut bytes = fs::read(&log).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes.truncate(end - 3);
    fs::write(&log, &bytes).unwrap();
    let store = open_sync_alone(copy.path());
    assert_reads(&store, 3, "ERR", "2 ");
    assert_eq!(store.append(1, [r#"{"n":"new"}"#]).unwrap().first_seq, 4);
}

/// An index rebuilt around a record lost to damage holds a lost entry in its middle; a record
/// after it that the index vouches for, damaged later with nothing after it, is kept as lost
/// too (the entries past the scan may include lost ones, as long as the last is not): no
/// sequence number is reused, and the next open agrees.
#[test]
fn a_record_vouched_for_after_a_lost_index_entry_is_kept() {
    let dir = scratch();
    drop(with_synced_singles(dir.path(), 4));
    let frames = frames_of(dir.path(), 1, 1);
    flip(dir.path(), frames[2].payload.start + 1);
    let idx = idx_path(dir.path(), 1, 1);
    fs::remove_file(&idx).unwrap();
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let store = open_sync_alone(dir.path());
    assert_eq!(seqs_and_errors(&store, 1).len(), 4);
    drop(store);
    let entries = fs::read(&idx).unwrap();
    assert_eq!(
        entries[16 + 8..16 + 12],
        u32::MAX.to_le_bytes(),
        "a lost entry"
    );
    flip(dir.path(), frames[3].payload.start + 1);
    let _ = fs::remove_file(dir.path().join("CLEAN"));
    let store = open_sync_alone(dir.path());
    assert_reads(&store, 3, "ERR", "2 ");
    assert_eq!(store.append(1, [r#"{"n":"after"}"#]).unwrap().first_seq, 5);
    drop(store);
    // Records 3 and 4 now lie between good records: each reads as its own error.
    assert_reads(&open_sync_alone(dir.path()), 5, "5 ", "ERR");
}

/// A batch whose first record the index vouches for (a power cut kept only part of its
/// entries), its last record damaged: the open keeps the batch's readable records and cuts
/// from the damage, and `verify` names that same cut (not the whole batch).
#[test]
fn verify_names_the_cut_an_open_makes_in_a_batch_the_index_vouches_for() {
    let dir = scratch();
    let store = with_synced_singles(dir.path(), 2);
    store
        .append(1, [r#"{"n":3}"#, r#"{"n":4}"#, r#"{"n":5}"#])
        .unwrap();
    drop(store);
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let frames = frames_of(dir.path(), 1, 1);
    let log = log_path(dir.path(), 1, 1);
    flip(dir.path(), frames[4].payload.start + 1);
    let idx = idx_path(dir.path(), 1, 1);
    let entries = fs::read(&idx).unwrap();
    fs::write(&idx, &entries[..16 + 4 * 3]).unwrap();
    let mut found = Vec::new();
    activitylog::verify(dir.path(), None, |p| found.push(p.clone()), |_| {}).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].range.start, frames[4].start as u64, "{}", found[0]);
    let store = open_sync_alone(dir.path());
    assert_eq!(seqs_and_errors(&store, 1).len(), 4);
    drop(store);
    assert_eq!(fs::metadata(&log).unwrap().len(), frames[4].start as u64);
}
