//! `NewestFirst::next_ref` yields exactly what `next` does, without copying: across sealed and
//! active segments, in both directions, and around a damaged record; and merged-query cursors,
//! which reuse the buffers of earlier ones, read only their own projects.

use activitylog::{Message, NewestFirst, Options, Store};

fn owned(mut it: NewestFirst) -> Vec<Result<Message, String>> {
    let mut out = Vec::new();
    while let Some(m) = it.next_ref() {
        out.push(m.map(|m| m.to_message()).map_err(|e| e.to_string()));
    }
    out
}

fn model(it: NewestFirst) -> Vec<Result<Message, String>> {
    it.map(|m| m.map_err(|e| e.to_string())).collect()
}

fn filled(dir: &std::path::Path) -> Store {
    let store = Options::new().segment_bytes(4096).open(dir).unwrap();
    for i in 0..300 {
        let batch: Vec<String> = (0..1 + i % 3)
            .map(|k| format!(r#"{{"i":{i},"k":{k},"pad":"{}"}}"#, "x".repeat(i % 40)))
            .collect();
        store.append(7, &batch).unwrap();
    }
    store
}

#[test]
fn borrowed_reads_match_owned_reads_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path());
    assert!(store.stats(7).unwrap().unwrap().segments > 3);
    let newest = owned(store.newest_first(7).unwrap());
    assert_eq!(newest.len(), 600);
    assert_eq!(newest, model(store.newest_first(7).unwrap()));
    assert_eq!(
        owned(store.oldest_first(7).unwrap()),
        model(store.oldest_first(7).unwrap())
    );
    assert_eq!(
        owned(store.newest_first(7).unwrap().before(250)),
        model(store.newest_first(7).unwrap().before(250))
    );
}

#[test]
fn borrowed_reads_report_damage_like_owned_reads() {
    let dir = tempfile::tempdir().unwrap();
    drop(filled(dir.path()));
    // Flip a byte in the middle of the oldest segment's records.
    let seg = dir.path().join("projects/7/00000000000000000001.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[600] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let newest = owned(store.newest_first(7).unwrap());
    assert!(newest.iter().any(Result::is_err));
    assert_eq!(newest, model(store.newest_first(7).unwrap()));
}

#[test]
fn the_writers_newest_bytes_come_from_its_own_copy_and_disk_damage_shows_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(9, [r#"{"a":"first"}"#]).unwrap();
    store.append(9, [r#"{"a":"second"}"#]).unwrap();
    // Synced, the new project's log has its name.
    store.sync().unwrap();
    // Damage the older record's payload on disk, under the open store: 48 bytes of header,
    // then the record's 16-byte frame header, then `{"a":"first"}`.
    let log = dir.path().join("projects/9/00000000000000000001.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[48 + 16 + 7] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    // The writer reads what it wrote, from memory.
    let read: Vec<String> = store
        .newest_first(9)
        .unwrap()
        .map(|m| m.unwrap().into_json())
        .collect();
    assert_eq!(read, [r#"{"a":"second"}"#, r#"{"a":"first"}"#]);
    drop(store);
    // A fresh open reads the disk, and reports the damage.
    let store = Options::new().read_only(true).open(dir.path()).unwrap();
    let mut it = store.newest_first(9).unwrap();
    assert_eq!(it.next().unwrap().unwrap().json(), r#"{"a":"second"}"#);
    let err = it.next().unwrap().unwrap_err();
    assert!(
        err.to_string().contains("00000000000000000001.log"),
        "{err}"
    );
}

#[test]
fn merged_queries_one_after_another_read_their_own_projects() {
    // Merged-query cursors reuse the buffers of earlier cursors on the same thread: whatever
    // those held must never show through.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for p in 1..=40u64 {
        let batch: Vec<String> = (0..1 + p % 7)
            .map(|k| {
                format!(
                    r#"{{"p":{p},"k":{k},"pad":"{}"}}"#,
                    "z".repeat((p * 13 % 90) as usize)
                )
            })
            .collect();
        store.append(p, &batch).unwrap();
    }
    for round in 0..20u64 {
        let ids: Vec<u64> = (0..10).map(|i| 1 + (round * 7 + i * 3) % 40).collect();
        let got: Vec<(u64, u64, String)> = store
            .query(&activitylog::Query::new().projects(ids.clone()).pcount(3))
            .unwrap()
            .map(|m| m.map(|m| (m.project(), m.seq(), m.into_json())).unwrap())
            .collect();
        let mut want: Vec<(u64, u64, String)> = Vec::new();
        for &p in &ids {
            let newest: Vec<Message> = store
                .newest_first(p)
                .unwrap()
                .take(3)
                .map(Result::unwrap)
                .collect();
            want.extend(
                newest
                    .into_iter()
                    .map(|m| (m.project(), m.seq(), m.into_json())),
            );
        }
        want.sort_by_key(|&(p, s, _)| (p, s));
        let mut sorted = got.clone();
        sorted.sort_by_key(|&(p, s, _)| (p, s));
        assert_eq!(sorted, want, "round {round}");
    }
}
