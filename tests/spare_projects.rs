//! Spare project directories: made in the background once projects are being created, renamed
//! into place by the next project created, removed when the store closes; a spare left by a
//! crash is never read and is removed by the next process that creates projects.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use activitylog::{Durability, ImportTarget, Options, Store};
use common::{project_dir, read_all};

/// The spare directories in the store at `dir`, with their inode numbers.
fn spares(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = fs::read_dir(dir.join("projects"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with(".spare-")
                .then(|| (name, e.metadata().unwrap().ino()))
        })
        .collect();
    out.sort();
    out
}

/// Waits (up to ten seconds) until the store at `dir` holds `n` spare directories.
fn await_spares(dir: &Path, n: usize) -> Vec<(String, u64)> {
    let start = Instant::now();
    loop {
        let found = spares(dir);
        // A spare is listed once its directory exists, before it is complete: wait for the
        // one after it, or give the last a moment.
        if found.len() >= n {
            std::thread::sleep(Duration::from_millis(50));
            return spares(dir);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "only {} spares after 10 s",
            found.len()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Project `p`'s messages, newest first.
fn json(store: &Store, p: u64) -> Vec<String> {
    read_all(store, p)
        .iter()
        .map(|m| m.json().to_owned())
        .collect()
}

fn open(dir: &Path) -> Store {
    Options::new()
        .durability(Durability::Sync)
        .spare_projects(4)
        .open(dir)
        .unwrap()
}

#[test]
fn a_new_project_is_a_renamed_spare_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(
        spares(dir.path()).is_empty(),
        "none before a project is created"
    );
    store.append(1, [r#"{"p":1}"#]).unwrap();
    let before: Vec<u64> = await_spares(dir.path(), 4).iter().map(|s| s.1).collect();
    store
        .append(2, [r#"{"p":2,"n":1}"#, r#"{"p":2,"n":2}"#])
        .unwrap();
    let ino = fs::metadata(project_dir(dir.path(), 2)).unwrap().ino();
    assert!(
        before.contains(&ino),
        "project 2's directory is not a spare"
    );
    assert_eq!(json(&store, 2), [r#"{"p":2,"n":2}"#, r#"{"p":2,"n":1}"#]);
    assert_eq!(store.projects().unwrap(), [1, 2]);
    drop(store);
    let store = open(dir.path());
    assert_eq!(json(&store, 2), [r#"{"p":2,"n":2}"#, r#"{"p":2,"n":1}"#]);
    assert_eq!(json(&store, 1), [r#"{"p":1}"#]);
}

#[test]
fn spares_are_removed_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(1, [r#"{"p":1}"#]).unwrap();
    await_spares(dir.path(), 4);
    drop(store);
    assert!(spares(dir.path()).is_empty(), "{:?}", spares(dir.path()));
    assert!(
        dir.path().join("CLEAN").exists(),
        "the close is still clean"
    );
}

#[test]
fn a_spare_left_by_a_crash_is_never_read_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let crashed = copy.path().join("store");
    let store = open(dir.path());
    store.append(1, [r#"{"p":1}"#]).unwrap();
    await_spares(dir.path(), 4);
    // What a kill leaves (no clean close), in a copy.
    common::copy_dir(dir.path(), &crashed);
    drop(store);
    // And a spare whose log took a record before a crash undid its rename to a project: a
    // message nobody was told is stored.
    let left = crashed.join("projects/.spare-0");
    common::copy_dir(&project_dir(&crashed, 1), &left);

    let store = open(&crashed);
    assert_eq!(store.projects().unwrap(), [1]);
    let verified = activitylog::verify(&crashed, None, |_| {}, |_| {}).unwrap();
    assert_eq!((verified.projects, verified.problems), (1, 0));
    // The next project created starts the thread, which removes what an earlier process left.
    let log = left.join("00000000000000000001.log");
    let len = |path: &Path| fs::metadata(path).ok().map(|m| m.len());
    let leftover = len(&log);
    assert!(leftover > Some(32), "the leftover holds a record");
    store.append(3, [r#"{"p":3}"#]).unwrap();
    let start = Instant::now();
    // (The new spares are numbered from 0 again, and hold only a header.)
    while len(&log) == leftover {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the leftover stays"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(store.projects().unwrap(), [1, 3]);
    assert_eq!(read_all(&store, 3).len(), 1);
    assert_eq!(read_all(&store, 1).len(), 1);
}

#[test]
fn an_import_older_than_the_spares_creates_its_project_on_the_spot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(1, [r#"{"p":1}"#]).unwrap();
    let before: Vec<u64> = await_spares(dir.path(), 4).iter().map(|s| s.1).collect();
    // 2020-01-01: older than every spare's base stamp.
    let lines = b"{\"n\":1,\"_ts\":1577836800000}\n{\"n\":2,\"_ts\":1577836800001}\n";
    store
        .import_json_lines(lines, ImportTarget::Project(2), Durability::Sync)
        .unwrap();
    let ino = fs::metadata(project_dir(dir.path(), 2)).unwrap().ino();
    assert!(!before.contains(&ino), "an old import took a spare");
    let got: Vec<(u64, String)> = read_all(&store, 2)
        .iter()
        .map(|m| (m.timestamp_ms(), m.json().to_owned()))
        .collect();
    assert_eq!(
        got,
        [
            (1_577_836_800_001, r#"{"n":2}"#.to_owned()),
            (1_577_836_800_000, r#"{"n":1}"#.to_owned())
        ]
    );
}

#[test]
fn no_spares_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().spare_projects(0).open(dir.path()).unwrap();
    for p in 1..=3 {
        store.append(p, [r#"{"a":1}"#]).unwrap();
    }
    // No thread is started to make any (the spares module's unit test shows it); a short
    // wait would catch one that did.
    std::thread::sleep(Duration::from_millis(100));
    assert!(spares(dir.path()).is_empty());
    assert_eq!(store.projects().unwrap(), [1, 2, 3]);
}

/// A store whose appends are `Written` by default makes its spares without a sync: a project
/// renamed from one has a new log (`….log.new`), named at its first sync, as one made on the
/// spot has. A store whose appends are `Sync` by default makes them synced, and named.
#[test]
fn a_written_stores_spares_hold_new_logs_and_a_sync_stores_named_ones() {
    for (durability, name) in [
        (Durability::Written, "00000000000000000001.log.new"),
        (Durability::Sync, "00000000000000000001.log"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .durability(durability)
            .spare_projects(2)
            .open(dir.path())
            .unwrap();
        store.append(1, [r#"{"p":1}"#]).unwrap();
        let before: Vec<u64> = await_spares(dir.path(), 2).iter().map(|s| s.1).collect();
        for (spare, _) in spares(dir.path()) {
            let files = fs::read_dir(dir.path().join("projects").join(&spare)).unwrap();
            let mut names: Vec<String> = files
                .map(|f| f.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, ["00000000000000000001.idx", name], "{durability:?}");
        }
        store
            .append_with(2, [r#"{"p":2}"#], Durability::Written)
            .unwrap();
        let ino = fs::metadata(project_dir(dir.path(), 2)).unwrap().ino();
        assert!(before.contains(&ino), "{durability:?}: not a spare");
        assert!(
            project_dir(dir.path(), 2).join(name).exists(),
            "{durability:?}"
        );
        store.sync().unwrap();
        let named = project_dir(dir.path(), 2).join("00000000000000000001.log");
        assert!(named.exists(), "{durability:?}");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(json(&store, 2), [r#"{"p":2}"#]);
    }
}
