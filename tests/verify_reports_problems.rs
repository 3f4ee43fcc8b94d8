//! `verify` is silent on a clean store and names the file and bytes of every kind of damage.

use std::fs;
use std::path::{Path, PathBuf};

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
