//! After a crash (no clean close), damage in the active segment with good records after it is
//! still corruption, never a torn tail: recovery cuts nothing, reading it gives one typed error,
//! the records on both sides stay readable, `verify` reports it, and appending goes on. This
//! holds where the index covers the damage and past the index's last entry (the part a power cut
//! may have left unsynced).

mod common;

use std::fs;

use common::{frames_of, idx_path, log_path, open_small, scratch, segments};

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
