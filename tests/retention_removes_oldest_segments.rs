//! Retention deletes whole sealed segments, oldest first, never the active one, and never
//! under a reader's feet.

use std::time::Duration;

use activitylog::{Options, Retention, Store};

fn fill(store: &Store, project: u64, n: usize) {
    for i in 0..n {
        store
            .append(
                project,
                [format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(200))],
            )
            .unwrap();
    }
}

fn seqs(store: &Store, project: u64) -> Vec<u64> {
    store
        .newest_first(project)
        .unwrap()
        .map(|m| m.unwrap().seq())
        .collect()
}

fn segments(store: &Store, project: u64) -> usize {
    std::fs::read_dir(store.dir().join("projects").join(project.to_string()))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

#[test]
fn max_messages_keeps_the_newest_and_at_most_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    fill(&store, 1, 500);
    let before = segments(&store, 1);
    let r = store
        .apply_retention(&Retention::new().max_messages(100))
        .unwrap();
    assert!(r.segments > 0 && r.messages > 0 && r.bytes > 0);
    let left = seqs(&store, 1);
    assert!(left.len() <= 100, "{} left", left.len());
    assert!(left.len() > 80, "deleted too much: {} left", left.len());
    assert_eq!(left[0], 500, "the newest message stays");
    assert!(left.windows(2).all(|w| w[0] == w[1] + 1), "no holes");
    assert_eq!(segments(&store, 1), before - r.segments as usize);
    // Survives a reopen, and appends continue.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(seqs(&store, 1), left);
    assert_eq!(store.append(1, ["{}"]).unwrap().first_seq, 501);
}

#[test]
fn max_bytes_and_max_age_never_touch_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    fill(&store, 2, 300);
    store
        .apply_retention(&Retention::new().max_bytes(1))
        .unwrap();
    assert_eq!(segments(&store, 2), 1, "only the active segment is left");
    assert_eq!(seqs(&store, 2)[0], 300);
    fill(&store, 3, 300);
    // Everything is younger than an hour: nothing goes.
    let r = store
        .apply_retention(&Retention::new().max_age(Duration::from_secs(3600)))
        .unwrap();
    assert_eq!(r.segments, 0);
    std::thread::sleep(Duration::from_millis(20));
    let r = store
        .apply_retention(&Retention::new().max_age(Duration::from_millis(10)))
        .unwrap();
    assert!(r.segments > 0);
    assert_eq!(segments(&store, 3), 1);
    assert_eq!(seqs(&store, 3)[0], 300);
}

#[test]
fn a_reader_holding_an_iterator_keeps_reading_safely() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    fill(&store, 4, 400);
    // One reader is inside an old segment (mapped); another has a snapshot only.
    let mut inside = store.newest_first(4).unwrap().before(50);
    let first = inside.next().unwrap().unwrap();
    assert_eq!(first.seq(), 49);
    let untouched = store.newest_first(4).unwrap();
    let oldest = store.oldest_first(4).unwrap();
    store
        .apply_retention(&Retention::new().max_messages(50))
        .unwrap();
    // The mapped segment keeps reading after its file is gone (no SIGBUS).
    let rest: Vec<u64> = inside.by_ref().take(10).map(|m| m.unwrap().seq()).collect();
    assert_eq!(rest, (39..49).rev().collect::<Vec<_>>());
    // A snapshot whose older segments vanished ends cleanly where retention cut, with no error.
    let all: Vec<u64> = untouched.map(|m| m.unwrap().seq()).collect();
    assert_eq!(all[0], 400);
    assert!(all.windows(2).all(|w| w[0] == w[1] + 1));
    let forward: Vec<u64> = oldest.map(|m| m.unwrap().seq()).collect();
    assert_eq!(*forward.last().unwrap(), 400);
    assert!(forward.windows(2).all(|w| w[1] == w[0] + 1));
}

/// `max_bytes` counts the active log up to its last record, as `Store::stats` does: not the
/// room of zeros a running writer keeps ahead of it.
#[test]
fn max_bytes_counts_the_active_log_to_its_last_record_not_its_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .segment_bytes(64 << 10)
        .open(dir.path())
        .unwrap();
    fill(&store, 4, 400);
    assert!(segments(&store, 4) >= 2);
    let bytes = store.stats(4).unwrap().unwrap().bytes;
    let r = store
        .apply_retention(&Retention::new().max_bytes(bytes))
        .unwrap();
    assert_eq!(r.segments, 0, "{bytes} bytes held, {bytes} allowed");
    let r = store
        .apply_retention(&Retention::new().max_bytes(bytes - 1))
        .unwrap();
    assert_eq!(r.segments, 1, "one byte over");
}

/// An age beyond what `u64` microseconds hold (2^60 s is 2^66 × 15,625 µs, a multiple of 2^64)
/// keeps everything, as any age older than the epoch does: it is not cut to its low 64 bits,
/// which here would be 0 µs and delete every sealed segment.
#[test]
fn an_age_too_long_for_u64_microseconds_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    fill(&store, 5, 100);
    let before = segments(&store, 5);
    assert!(before > 1);
    let r = store
        .apply_retention(&Retention::new().max_age(Duration::from_secs(1 << 60)))
        .unwrap();
    assert_eq!(r.segments, 0);
    assert_eq!(segments(&store, 5), before);
    assert_eq!(seqs(&store, 5).len(), 100);
}

/// A project whose sealed segment does not open fails retention, but the projects after it
/// are still trimmed, and the error names the damaged file.
#[test]
fn a_damaged_project_does_not_stop_retention_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    fill(&store, 1, 200);
    fill(&store, 2, 200);
    drop(store);
    let pdir = dir.path().join("projects/1");
    let oldest = pdir.join("00000000000000000001.log");
    let mut bytes = std::fs::read(&oldest).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&oldest, bytes).unwrap();
    let store = Options::new().open(dir.path()).unwrap();
    let before = segments(&store, 2);
    let err = store
        .apply_retention(&Retention::new().max_messages(50))
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("projects/1/"), "{err}");
    assert!(segments(&store, 2) < before, "project 2 was trimmed");
    assert!(seqs(&store, 2).len() <= 50);
}

/// An oldest-first read (an export, `tail`) that retention overtakes — the segments ahead of
/// it removed while it reads an older one — reports the gap once, where it is, and goes on
/// with what is left: its messages are never silently discontinuous.
#[test]
fn an_oldest_first_read_overtaken_by_retention_reports_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    fill(&store, 5, 400);
    let mut oldest = store.oldest_first(5).unwrap();
    assert_eq!(oldest.next().unwrap().unwrap().seq(), 1);
    let r = store
        .apply_retention(&Retention::new().max_messages(100))
        .unwrap();
    assert!(r.segments >= 2, "{r:?}");
    let items: Vec<_> = oldest.collect();
    let errors: Vec<_> = items.iter().filter_map(|i| i.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let activitylog::Error::RemovedWhileRead {
        project,
        first,
        next,
    } = errors[0]
    else {
        panic!("{}", errors[0]);
    };
    assert_eq!(*project, 5);
    let seqs: Vec<u64> = items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .map(|m| m.seq())
        .collect();
    // The first segment reads on from its map; then the gap; then what retention kept.
    let at = seqs.iter().position(|&s| s == *next).unwrap();
    assert_eq!(
        seqs[at - 1] + 1,
        *first,
        "the gap starts after the last message read"
    );
    assert!(seqs
        .windows(2)
        .enumerate()
        .all(|(k, w)| k + 1 == at || w[1] == w[0] + 1));
    assert_eq!(*seqs.last().unwrap(), 400);
    assert_eq!(seqs[at..], (*next..=400).collect::<Vec<_>>()[..]);
}

/// Retention that removes segments before an oldest-first read has reached anything only moves
/// its start: no error, no gap.
#[test]
fn an_oldest_first_read_that_has_read_nothing_starts_after_what_retention_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    fill(&store, 6, 400);
    let oldest = store.oldest_first(6).unwrap();
    store
        .apply_retention(&Retention::new().max_messages(100))
        .unwrap();
    let seqs: Vec<u64> = oldest.map(|m| m.unwrap().seq()).collect();
    assert!(seqs.len() <= 100 && seqs.len() > 50, "{}", seqs.len());
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(*seqs.last().unwrap(), 400);
}

/// An oldest-first read whose snapshot lists thousands of sealed segments that retention
/// removed before it read anything starts after them. It used to step past them one call deep
/// each, and overflowed a 2 MiB thread's stack (an abort, not an error) past about a thousand
/// (an audit).
#[test]
fn an_oldest_first_read_starts_after_thousands_of_removed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    // One message per segment: each fills most of a 4 KiB segment, so the next one rolls.
    let pad = "x".repeat(3000);
    let n = 3000u64;
    for i in 0..n {
        store
            .append(1, [format!(r#"{{"i":{i},"p":"{pad}"}}"#)])
            .unwrap();
    }
    let it = store.oldest_first(1).unwrap();
    store
        .apply_retention(&Retention::new().max_messages(1))
        .unwrap();
    // On a thread with a spawned thread's default stack (2 MiB).
    let got = std::thread::spawn(move || it.map(|m| m.unwrap().seq()).collect::<Vec<u64>>())
        .join()
        .expect("the reading thread ended without a panic");
    assert_eq!(got, [n]);
}
