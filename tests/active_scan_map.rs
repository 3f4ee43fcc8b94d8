//! A long scan (newest or oldest first) maps the active segment's committed bytes instead of
//! copying them window by window: it must read exactly what the snapshot holds, even while the
//! writer goes on appending, and report damage in the mapped bytes with its file and offset.

use activitylog::{Options, Store};

/// Enough messages of about 200 bytes for several MiB in one active segment.
const N: u64 = 30_000;

fn message(i: u64) -> String {
    format!(
        r#"{{"i":{i},"pad":"{}"}}"#,
        "y".repeat(150 + (i % 50) as usize)
    )
}

fn fill(store: &Store, from: u64, to: u64) {
    let batch: Vec<String> = (from..to).map(message).collect();
    for chunk in batch.chunks(100) {
        store.append(3, chunk).unwrap();
    }
}

/// A store whose project 3 holds messages `0..N` in its active segment, closed.
fn filled_and_closed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fill(&Store::open(dir.path()).unwrap(), 0, N);
    dir
}

/// Reads `it` to the end: how many messages came back (each checked against what was written),
/// and the errors.
fn read_checked(it: &mut activitylog::NewestFirst) -> (u64, Vec<String>) {
    let (mut ok, mut errors) = (0u64, Vec::new());
    while let Some(m) = it.next_ref() {
        match m {
            Ok(m) => {
                assert_eq!(m.json(), message(m.seq() - 1));
                ok += 1;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    (ok, errors)
}

#[test]
fn a_long_scan_reads_its_snapshot_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 0, N);
    assert_eq!(store.stats(3).unwrap().unwrap().segments, 1);
    let mut it = store.newest_first(3).unwrap();
    let first = it.next_ref().unwrap().unwrap().json().to_owned();
    assert_eq!(first, message(N - 1));
    // Appends after the snapshot: not seen, and they grow the file under the scan.
    fill(&store, N, N + 5_000);
    let mut want = N - 1;
    while let Some(m) = it.next_ref() {
        let m = m.unwrap();
        want -= 1;
        assert_eq!(m.seq(), want + 1);
        assert_eq!(m.json(), message(want));
    }
    assert_eq!(want, 0);
}

#[test]
fn damage_in_the_mapped_bytes_is_reported_with_its_place() {
    let dir = filled_and_closed();
    let log = dir.path().join("projects/3/00000000000000000001.log");
    let mut bytes = std::fs::read(&log).unwrap();
    // A byte of record 6 (bytes 988..): read long after the scan has switched to the map.
    let at = 1016;
    bytes[at] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    let store = Options::new().read_only(true).open(dir.path()).unwrap();
    let mut it = store.newest_first(3).unwrap();
    let (ok, errors) = read_checked(&mut it);
    assert_eq!(ok, N - 1, "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("00000000000000000001.log is corrupt at byte 988: record 6"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_long_oldest_first_read_maps_too_and_reads_every_message_in_order() {
    let dir = filled_and_closed();
    let store = Options::new().read_only(true).open(dir.path()).unwrap();
    let mut it = store.oldest_first(3).unwrap();
    let mut want = 0;
    while let Some(m) = it.next_ref() {
        let m = m.unwrap();
        assert_eq!((m.seq(), m.json()), (want + 1, message(want).as_str()));
        want += 1;
    }
    assert_eq!(want, N);
}

/// Found in review: after the switch to the map, a record whose damaged length reaches past the
/// committed bytes (its successor lost) sent the scan back to windows while it still read the
/// map, so every later record decoded at the wrong offset.
#[test]
fn a_damaged_length_past_the_mapped_bytes_costs_only_its_own_records() {
    let dir = filled_and_closed();
    let log = dir.path().join("projects/3/00000000000000000001.log");
    let idx = dir.path().join("projects/3/00000000000000000001.idx");
    let entries: Vec<u32> = std::fs::read(&idx).unwrap()[16..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(entries.len() as u64, N);
    let k = (N - 300) as usize; // record index k (seq k+1)
                                // 1. make record k+1 lost, rebuild the index with a LOST marker
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[entries[k + 1] as usize + 20] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    std::fs::remove_file(&idx).unwrap();
    drop(Store::open(dir.path()).unwrap().newest_first(3).unwrap());
    let e2: Vec<u32> = std::fs::read(&idx).unwrap()[16..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(e2[k + 1], u32::MAX, "lost marker in index");
    // 2. damage record k's length field
    let mut bytes = std::fs::read(&log).unwrap();
    let at = entries[k] as usize + 4;
    let mut lf = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    lf += 200_000;
    bytes[at..at + 4].copy_from_slice(&lf.to_le_bytes());
    std::fs::write(&log, &bytes).unwrap();
    // 3. open, snapshot, append more, scan forward
    let store = Store::open(dir.path()).unwrap();
    let mut it = store.newest_first(3).unwrap().oldest_first();
    fill(&store, N, N + 5_000);
    let (ok, errs) = read_checked(&mut it);
    assert_eq!(
        errs.len(),
        2,
        "only records k and k+1 are damaged: {errs:?}"
    );
    assert_eq!(ok, N - 2);
}

/// Scans share the latest map: a scan made before more appends, started after a later scan
/// mapped the longer log, still ends at its own snapshot, and a scan after the appends sees them.
#[test]
fn scans_sharing_a_map_each_read_their_own_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 0, N);
    let (ok, errors) = read_checked(&mut store.newest_first(3).unwrap());
    assert_eq!((ok, errors.len()), (N, 0));
    let mut older = store.newest_first(3).unwrap();
    fill(&store, N, N + 5_000);
    let (ok, errors) = read_checked(&mut store.newest_first(3).unwrap());
    assert_eq!((ok, errors.len()), (N + 5_000, 0), "the later scan");
    let mut oldest_first = store.oldest_first(3).unwrap();
    let mut n = 0;
    while let Some(m) = oldest_first.next_ref() {
        assert_eq!(m.unwrap().json(), message(n));
        n += 1;
    }
    assert_eq!(n, N + 5_000);
    assert_eq!(older.next_ref().unwrap().unwrap().json(), message(N - 1));
    let (ok, errors) = read_checked(&mut older);
    assert_eq!(
        (ok + 1, errors.len()),
        (N, 0),
        "the earlier scan, read after"
    );
}
