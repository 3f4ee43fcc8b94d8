//! The room: `Written` appends copy into zeros written ahead past the active log's end. While a
//! store is open its active logs may end in zeros; sealed logs never do, and every log ends at
//! its last record after `Store::sync` and after a clean close. A copy taken while the store is
//! open (what a kill leaves) recovers, reads everything, and `verify` finds no problem in it.

mod common;

use std::fs;
use std::path::Path;

use activitylog::{verify, Durability, Options, Store};
use common::{copy_dir, frames, idx_path, log_path, open_small, read_all, scratch, segments};

/// The length of the log file and the end of its last record.
fn log_len_and_end(store: &Path, p: u64, first_seq: u64) -> (u64, u64) {
    let log = fs::read(log_path(store, p, first_seq)).unwrap();
    let end = frames(&log).last().map_or(48, |f| f.end);
    (log.len() as u64, end as u64)
}

fn newest_log(store: &Path, p: u64) -> (u64, u64) {
    let last = *segments(store, p).last().expect("a segment");
    log_len_and_end(store, p, last)
}

fn message(i: usize) -> String {
    format!(
        r#"{{"event":"job:completed","job":"1/2/{i}","pad":"{}"}}"#,
        "x".repeat(i % 90)
    )
}

fn append_n(store: &Store, p: u64, from: usize, n: usize) {
    for i in from..from + n {
        store.append(p, [message(i).as_str()]).unwrap();
    }
}

fn problems(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    verify(dir, None, |p| found.push(format!("{p:?}")), |_| {}).unwrap();
    found
}

#[test]
fn an_open_active_log_has_room_and_a_closed_one_ends_at_its_last_record() {
    let dir = scratch();
    let store = Store::open(dir.path()).unwrap();
    append_n(&store, 1, 0, 50);
    let (len, end) = newest_log(dir.path(), 1);
    assert!(len >= end + 32 * 1024, "room ahead: {len} bytes for {end}");
    drop(store);
    let (len, end) = newest_log(dir.path(), 1);
    assert_eq!(len, end, "cut back at close");
    assert_eq!(read_all(&Store::open(dir.path()).unwrap(), 1).len(), 50);
}

#[test]
fn store_sync_cuts_the_room_and_the_next_append_makes_more() {
    let dir = scratch();
    let store = Store::open(dir.path()).unwrap();
    append_n(&store, 1, 0, 20);
    store.sync().unwrap();
    let (len, end) = newest_log(dir.path(), 1);
    assert_eq!(len, end, "cut back at sync");
    append_n(&store, 1, 20, 20);
    let (len, end) = newest_log(dir.path(), 1);
    assert!(len > end, "room again");
    let read = read_all(&store, 1);
    assert_eq!(read.len(), 40);
    assert_eq!(read[0].json(), message(39), "newest first");
}

#[test]
fn sealed_logs_end_at_their_last_record() {
    let dir = scratch();
    let store = open_small(dir.path());
    append_n(&store, 1, 0, 200);
    let segs = segments(dir.path(), 1);
    assert!(segs.len() >= 3, "{segs:?}");
    for &first in &segs[..segs.len() - 1] {
        let (len, end) = log_len_and_end(dir.path(), 1, first);
        assert_eq!(len, end, "sealed segment {first}");
    }
    assert_eq!(read_all(&store, 1).len(), 200);
}

#[test]
fn a_small_segments_sync_append_and_big_batches_make_no_room() {
    let dir = scratch();
    let store = Store::open(dir.path()).unwrap();
    store
        .append_with(1, [message(1).as_str()], Durability::Sync)
        .unwrap();
    let (len, end) = newest_log(dir.path(), 1);
    assert_eq!(len, end, "a Sync append");
    let big: Vec<String> = (0..1000).map(message).collect();
    store.append(2, &big).unwrap();
    let (len, end) = newest_log(dir.path(), 2);
    assert_eq!(len, end, "a batch of {end} bytes");
}

/// `Sync` appends write into room once their segment holds 64 KiB: their fsync then writes
/// into blocks the file already has. What they acknowledged is on disk after a sync of the
/// log, room and all, and the log is cut back to its last record at close.
#[test]
fn sync_appends_write_into_room_once_their_segment_holds_64_kib() {
    let dir = scratch();
    let store = Store::open(dir.path()).unwrap();
    store
        .append_with(1, [message(0).as_str()], Durability::Sync)
        .unwrap();
    let mut n = 1;
    while newest_log(dir.path(), 1).1 < 64 << 10 {
        store
            .append_with(1, [message(n).as_str()], Durability::Sync)
            .unwrap();
        let (len, end) = newest_log(dir.path(), 1);
        assert_eq!(len, end, "no room under 64 KiB");
        n += 1;
    }
    store
        .append_with(1, [message(n).as_str()], Durability::Sync)
        .unwrap();
    n += 1;
    let (len, end) = newest_log(dir.path(), 1);
    assert!(len > end, "room was made: {len} > {end}");
    let log = fs::read(log_path(dir.path(), 1, 1)).unwrap();
    assert_eq!(frames(&log).len(), n);
    drop(store);
    let (len, end) = newest_log(dir.path(), 1);
    assert_eq!(len, end);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store, 1).len(), n);
}

#[test]
fn a_copy_taken_while_open_verifies_recovers_and_reads_everything() {
    let dir = scratch();
    let store = Store::open(dir.path()).unwrap();
    for p in 1..=3 {
        append_n(&store, p, 0, 30 * p as usize);
    }
    assert!(newest_log(dir.path(), 3).0 > newest_log(dir.path(), 3).1);
    assert_eq!(problems(dir.path()), Vec::<String>::new(), "the live store");
    let copy = scratch();
    copy_dir(dir.path(), copy.path());
    drop(store);
    assert_eq!(problems(copy.path()), Vec::<String>::new(), "the copy");

    let ro = Options::new().read_only(true).open(copy.path()).unwrap();
    for p in 1..=3u64 {
        assert_eq!(
            read_all(&ro, p).len(),
            30 * p as usize,
            "read-only, project {p}"
        );
    }
    drop(ro);
    let recovered = Store::open(copy.path()).unwrap();
    for p in 1..=3u64 {
        let read = read_all(&recovered, p);
        assert_eq!(read.len(), 30 * p as usize, "project {p}");
        assert_eq!(read[0].json(), message(30 * p as usize - 1));
        let (len, end) = newest_log(copy.path(), p);
        assert_eq!(len, end, "recovery cut the zeros of project {p}");
    }
    append_n(&recovered, 1, 30, 5);
    assert_eq!(read_all(&recovered, 1).len(), 35);
}

#[test]
fn stats_count_an_open_active_log_to_its_last_record_not_its_room() {
    let dir = scratch();
    let store = Store::open(dir.path()).unwrap();
    append_n(&store, 1, 0, 50);
    let (len, end) = newest_log(dir.path(), 1);
    assert!(len > end, "room was made");
    let index = fs::metadata(idx_path(dir.path(), 1, 1)).unwrap().len();
    assert_eq!(store.stats(1).unwrap().unwrap().bytes, end + index);
}

/// Once its segment holds 256 KiB, a log's room ends on a 256 KiB boundary of the file (so the
/// page cache holds its zeros in folios that big), and still under 320 KiB past its last record.
#[test]
fn a_big_segments_room_ends_on_a_256_kib_boundary() {
    let dir = scratch();
    let store = Store::open(dir.path()).unwrap();
    let (mut i, mut checked) = (0, 0);
    loop {
        append_n(&store, 1, i, 500);
        i += 500;
        let (len, end) = newest_log(dir.path(), 1);
        if end >= 3 << 20 {
            break;
        }
        if end >= 640 << 10 {
            assert_eq!(len % (256 << 10), 0, "room to {len} for {end}");
            assert!(len - end < 320 << 10, "room to {len} for {end}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} looks");
}
