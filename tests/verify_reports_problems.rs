//! `verify` is silent on a clean store and names the file and bytes of every kind of damage.

use std::fs;
use std::path::{Path, PathBuf};

mod common;

use activitylog::{verify, Options, Problem};

fn store_with_segments(dir: &Path) -> Vec<PathBuf> {
    let store = Options::new().segment_bytes(4096).open(dir).unwrap();
    for i in 0..200 {
        store
            .append(1, [format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(100))])
            .unwrap();
    }
    store.append(2, [r#"{"a":1}"#, r#"{"a":2}"#]).unwrap();
    drop(store);
    let mut logs: Vec<PathBuf> = fs::read_dir(dir.join("projects/1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

fn problems(dir: &Path) -> (activitylog::Verified, Vec<Problem>) {
    let mut found = Vec::new();
    let v = verify(dir, None, |p| found.push(p.clone()), |_| {}).unwrap();
    (v, found)
}

#[test]
fn a_clean_store_has_no_problems() {
    let dir = tempfile::tempdir().unwrap();
    store_with_segments(dir.path());
    let (v, found) = problems(dir.path());
    assert_eq!(found, []);
    assert_eq!((v.projects, v.records, v.problems), (2, 202, 0));
    assert!(v.segments > 3);
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let logs = store_with_segments(dir.path());
    let mut bytes = fs::read(&logs[1]).unwrap();
    bytes[300] ^= 0x01;
    fs::write(&logs[1], bytes).unwrap();
    let (_, found) = problems(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, logs[1]);
    assert!(found[0].range.contains(&300), "{}", found[0]);
}

#[test]
fn a_torn_tail_and_a_missing_index_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let logs = store_with_segments(dir.path());
    let newest = logs.last().unwrap();
    // Bytes after the last record that no index entry vouches for: a write a crash cut short.
    let mut log = fs::OpenOptions::new().append(true).open(newest).unwrap();
    std::io::Write::write_all(&mut log, &[7; 11]).unwrap();
    fs::remove_file(logs[0].with_extension("idx")).unwrap();
    let (v, found) = problems(dir.path());
    assert_eq!(v.problems, 2, "{found:?}");
    assert!(found
        .iter()
        .any(|p| p.path == *newest && p.what.contains("torn tail")));
    assert!(found
        .iter()
        .any(|p| p.path == logs[0].with_extension("idx") && p.what.contains("missing")));
}

#[test]
fn a_stale_index_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let logs = store_with_segments(dir.path());
    let idx = logs[0].with_extension("idx");
    let mut bytes = fs::read(&idx).unwrap();
    bytes.extend_from_slice(&[0xff, 0, 0, 0]);
    fs::write(&idx, bytes).unwrap();
    let (_, found) = problems(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, idx);
}

/// The newest record damaged after it was synced, and an index entry past the log's end (the
/// index reached the disk, the log did not): `verify` drops that entry, as an open does, and
/// names the damaged record the rest of the index vouches for — the damage the open keeps and
/// reads report.
#[test]
fn a_vouched_newest_record_is_named_past_an_index_entry_beyond_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let logs = store_with_segments(dir.path());
    let newest = logs.last().unwrap();
    let mut bytes = fs::read(newest).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    fs::write(newest, &bytes).unwrap();
    let idx = newest.with_extension("idx");
    let mut entries = fs::read(&idx).unwrap();
    entries.extend_from_slice(&(bytes.len() as u32 + 64).to_le_bytes());
    fs::write(&idx, entries).unwrap();
    let (_, found) = problems(dir.path());
    assert!(
        found.iter().any(
            |p| p.path == *newest && p.what.contains("does not read, though the index vouches")
        ),
        "{found:?}"
    );
    let store = Options::new().open(dir.path()).unwrap();
    let first = store.newest_first(1).unwrap().next().unwrap();
    assert!(first.is_err(), "{first:?}");
}

/// A crash left the newest segment ending in an unfinished batch with damage just before it,
/// none of it vouched for by the index: the next writable open cuts the damage with the batch,
/// and a batch before the damage that says it continues as well. `verify` names the cut from
/// where the open makes it, not from the unfinished batch.
fn unfinished_batch_after_damage(batches: &[usize], damaged: usize, cut_from: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().open(dir.path()).unwrap();
    let mut i = 0;
    for &n in batches {
        let batch: Vec<String> = (i..i + n).map(|k| format!(r#"{{"k":{k}}}"#)).collect();
        store.append(3, batch).unwrap();
        i += n;
    }
    drop(store);
    // As after a crash: no clean-close marker, only the first record's index entry reached
    // the disk, the last record's bytes did not, and one record was damaged.
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let log = dir.path().join("projects/3/00000000000000000001.log");
    let idx = log.with_extension("idx");
    let entries = fs::read(&idx).unwrap();
    let at = |r: usize| u32::from_le_bytes(entries[16 + 4 * r..20 + 4 * r].try_into().unwrap());
    let mut bytes = fs::read(&log).unwrap();
    bytes.truncate(bytes.len() - 5);
    bytes[at(damaged) as usize + 20] ^= 0x10;
    fs::write(&log, &bytes).unwrap();
    fs::write(&idx, &entries[..20]).unwrap();

    let (_, found) = problems(dir.path());
    let cut: Vec<_> = found
        .iter()
        .filter(|p| p.path == log && p.what.contains("unfinished batch"))
        .collect();
    assert_eq!(cut.len(), 1, "{found:?}");
    assert_eq!(cut[0].range, u64::from(at(cut_from))..bytes.len() as u64);

    let store = Options::new().open(dir.path()).unwrap();
    let read: Vec<_> = store.newest_first(3).unwrap().map(|m| m.unwrap()).collect();
    assert_eq!(read.len(), cut_from);
    drop(store); // (which cuts the room the writer made ahead of its log)
    assert_eq!(fs::metadata(&log).unwrap().len(), u64::from(at(cut_from)));
}

#[test]
fn damage_before_an_unfinished_batch_is_named_with_it() {
    // Records 0 and 1 alone, 2 damaged, 3..=4 a batch cut short: the open keeps 0 and 1.
    unfinished_batch_after_damage(&[1, 1, 1, 2], 2, 2);
}

#[test]
fn a_batch_broken_by_damage_before_an_unfinished_one_is_named_with_it() {
    // Record 0 alone, 1..=2 a batch whose end is damaged, 3..=4 a batch cut short: record 1
    // says its batch continues, so it goes too and the open keeps record 0.
    unfinished_batch_after_damage(&[1, 2, 2], 2, 1);
}

/// Crashes of every shape (the index lagging, the log cut anywhere, a byte flipped anywhere in
/// its records): whatever cut `verify` names in the newest segment, the next writable open
/// makes exactly there, and where it names none the open cuts nothing. `VERIFY_CUT_CASES` sets
/// the number of cases (default 40; each costs `verify`'s 200 ms pause for a writer).
#[test]
fn verify_names_the_cut_the_open_makes() {
    let cases: u64 = std::env::var("VERIFY_CUT_CASES").map_or(40, |v| v.parse().unwrap());
    for case in 0..cases {
        let mut rng = common::Rng::new(case);
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        for b in 0..6 + rng.below(6) {
            let n = 1 + rng.below(4);
            let batch: Vec<String> = (0..n)
                .map(|k| common::hinted(b * 10 + k, k as usize))
                .collect();
            store.append(3, batch).unwrap();
        }
        drop(store);
        fs::remove_file(dir.path().join("CLEAN")).unwrap();
        let log = dir.path().join("projects/3/00000000000000000001.log");
        let idx = log.with_extension("idx");
        let mut bytes = fs::read(&log).unwrap();
        let frames = common::frames(&bytes);
        let kept = rng.below(frames.len() as u64 + 1) as usize;
        let vouched_end = frames[..kept].last().map_or(frames[0].start, |f| f.end);
        let len = vouched_end + rng.below((bytes.len() - vouched_end) as u64 + 1) as usize;
        bytes.truncate(len);
        if rng.below(2) == 0 && len > frames[0].start {
            let at = frames[0].start + rng.below((len - frames[0].start) as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        fs::write(&log, &bytes).unwrap();
        let entries = fs::read(&idx).unwrap();
        fs::write(&idx, &entries[..16 + 4 * kept]).unwrap();

        let (_, found) = problems(dir.path());
        let named: Vec<_> = found
            .iter()
            .filter(|p| p.path == log && p.what.contains("torn tail"))
            .collect();
        assert!(named.len() <= 1, "case {case}: {found:?}");
        let expected = named.first().map_or(len as u64, |p| p.range.start);
        // Projects are recovered when first used; the close then cuts the writer's room.
        let store = Options::new().open(dir.path()).unwrap();
        drop(store.newest_first(3).unwrap());
        drop(store);
        let after = fs::metadata(&log).unwrap().len();
        let starts: Vec<_> = frames.iter().map(|f| (f.start, f.continues)).collect();
        assert_eq!(
            after, expected,
            "case {case}: {found:?} kept {kept} len {len} {starts:?}"
        );
    }
}
