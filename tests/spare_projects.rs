//! Spare project directories: made in the background once projects are being created, renamed
//! into place by the next project created, removed when the store closes; a spare left by a
//! crash is never read and is removed by the next process that creates projects — unless it
//! holds a project's log (a crash lost its rename), which the next open renames into place.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use activitylog::{Durability, ImportTarget, Options, Store};
use common::{await_spares, project_dir, read_all, spares};

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
    let left: Vec<String> = spares(&crashed).into_iter().map(|s| s.0).collect();
    assert_eq!(left.len(), 4);

    let store = open(&crashed);
    assert_eq!(store.projects().unwrap(), [1]);
    let verified = activitylog::verify(&crashed, None, |_| {}, |_| {}).unwrap();
    assert_eq!((verified.projects, verified.problems), (1, 0));
    // The next project created starts the thread, which removes what an earlier process left
    // (and makes new spares, numbered from 0 again: told apart by a file put in the old ones;
    // inode numbers are reused).
    for name in &left {
        fs::write(crashed.join("projects").join(name).join("left"), b"").unwrap();
    }
    let marked = || {
        left.iter()
            .any(|n| crashed.join("projects").join(n).join("left").exists())
    };
    store.append(3, [r#"{"p":3}"#]).unwrap();
    let start = Instant::now();
    while marked() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the leftovers stay"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(store.projects().unwrap(), [1, 3]);
    assert_eq!(read_all(&store, 3).len(), 1);
    assert_eq!(read_all(&store, 1).len(), 1);
}

/// What a power cut leaves when it loses the rename of a spare to a project made from it,
/// after the project's first `Sync` append was acknowledged: the project's log in the spare,
/// its header naming the project.
fn crashed_with_project_in_a_spare(crashed: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(1, [r#"{"p":1}"#]).unwrap();
    await_spares(dir.path(), 4);
    store
        .append(2, [r#"{"p":2,"n":1}"#, r#"{"p":2,"n":2}"#])
        .unwrap();
    // Acknowledged after one fsync where renames are atomic (the log then still has its new
    // name, the project's directory its name only in memory); after three elsewhere. A power
    // cut that loses the rename leaves the directory under the spare's name, either way.
    common::copy_dir(dir.path(), crashed);
    drop(store);
    fs::rename(project_dir(crashed, 2), crashed.join("projects/.spare-9")).unwrap();
}

#[test]
fn a_project_whose_rename_a_crash_lost_is_renamed_into_place_on_open() {
    let copy = tempfile::tempdir().unwrap();
    let crashed = copy.path().join("store");
    crashed_with_project_in_a_spare(&crashed);
    // Read-only, it is read where it is.
    let reader = Options::new().read_only(true).open(&crashed).unwrap();
    assert_eq!(reader.projects().unwrap(), [1, 2]);
    assert_eq!(json(&reader, 2), [r#"{"p":2,"n":2}"#, r#"{"p":2,"n":1}"#]);
    drop(reader);
    let verified = activitylog::verify(&crashed, None, |_| {}, |_| {}).unwrap();
    assert_eq!((verified.projects, verified.problems), (2, 0));
    // A writable open renames it into place before anything could make project 2 anew.
    let store = open(&crashed);
    assert!(!crashed.join("projects/.spare-9").exists());
    assert_eq!(store.projects().unwrap(), [1, 2]);
    assert_eq!(json(&store, 2), [r#"{"p":2,"n":2}"#, r#"{"p":2,"n":1}"#]);
    store.append(2, [r#"{"p":2,"n":3}"#]).unwrap();
    drop(store);
    let store = open(&crashed);
    assert_eq!(json(&store, 2)[0], r#"{"p":2,"n":3}"#);
    assert_eq!(
        segments_named(&crashed, 2),
        ["00000000000000000001.idx", "00000000000000000001.log"]
    );
}

/// Two spares holding the first log of one project (nothing the engine does makes that; damage
/// or a hand copying files can): the first is renamed into place and the second left where it
/// is, with an error logged. The second rename used to fail the open (an audit).
#[test]
fn two_spares_of_one_project_do_not_fail_the_open() {
    let copy = tempfile::tempdir().unwrap();
    let crashed = copy.path().join("store");
    crashed_with_project_in_a_spare(&crashed);
    common::copy_dir(
        &crashed.join("projects/.spare-9"),
        &crashed.join("projects/.spare-10"),
    );
    let store = open(&crashed);
    assert_eq!(store.projects().unwrap(), [1, 2]);
    assert_eq!(json(&store, 2), [r#"{"p":2,"n":2}"#, r#"{"p":2,"n":1}"#]);
    let left = [".spare-9", ".spare-10"]
        .iter()
        .filter(|name| crashed.join("projects").join(name).exists())
        .count();
    assert_eq!(left, 1, "one spare renamed into place, the other left");
}

/// A read-only store opened after the crash reads the project in the spare. A writable open
/// beside it then renames the spare into place and appends: the reader reads the project there
/// after a refresh (it looks for a spare's project again only where the project's directory is
/// missing), also the messages appended since, and so does a second reader opened after.
/// Nothing else can put a project's log in a spare: its header is written after the rename, so
/// only a power cut, which ends the readers too, loses that rename; a store's open is the one
/// place to look.
#[test]
fn a_read_only_store_follows_a_project_from_a_spare_into_place() {
    let copy = tempfile::tempdir().unwrap();
    let crashed = copy.path().join("store");
    crashed_with_project_in_a_spare(&crashed);
    let reader = Options::new().read_only(true).open(&crashed).unwrap();
    assert_eq!(json(&reader, 2), [r#"{"p":2,"n":2}"#, r#"{"p":2,"n":1}"#]);
    let store = open(&crashed);
    assert!(!crashed.join("projects/.spare-9").exists());
    store.append(2, [r#"{"p":2,"n":3}"#]).unwrap();
    // Until the refresh, the reader keeps the project as it read it.
    assert_eq!(json(&reader, 2).len(), 2);
    reader.refresh();
    assert_eq!(reader.projects().unwrap(), [1, 2]);
    assert_eq!(json(&reader, 2), json(&store, 2));
    assert_eq!(json(&reader, 2).len(), 3);
    let second = Options::new().read_only(true).open(&crashed).unwrap();
    assert_eq!(json(&second, 2), json(&store, 2));
}

#[test]
fn a_spare_naming_a_project_that_has_a_directory_is_left_alone() {
    let copy = tempfile::tempdir().unwrap();
    let crashed = copy.path().join("store");
    crashed_with_project_in_a_spare(&crashed);
    // Project 2 made again on the spot, as if by hand: the spare cannot be renamed.
    fs::create_dir(project_dir(&crashed, 2)).unwrap();
    let store = open(&crashed);
    assert!(read_all(&store, 2).is_empty());
    store.append(3, [r#"{"p":3}"#]).unwrap();
    await_spares(&crashed, 4);
    assert!(
        crashed.join("projects/.spare-9").is_dir(),
        "a spare holding a project's messages is never removed"
    );
    drop(store);
    let mut problems = Vec::new();
    activitylog::verify(&crashed, None, |p| problems.push(p.to_string()), |_| {}).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("which has a directory too"),
        "{problems:?}"
    );
}

/// The file names in project `p`'s directory.
fn segments_named(store: &Path, p: u64) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(project_dir(store, p))
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn an_import_older_than_the_spares_takes_one_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(1, [r#"{"p":1}"#]).unwrap();
    let before: Vec<u64> = await_spares(dir.path(), 4).iter().map(|s| s.1).collect();
    // 2020-01-01: older than every spare; a spare's segment takes its base stamp from the
    // first records it is given.
    let lines = b"{\"n\":1,\"_ts\":1577836800000}\n{\"n\":2,\"_ts\":1577836800001}\n";
    store
        .import_json_lines(lines, ImportTarget::Project(2), Durability::Sync)
        .unwrap();
    let ino = fs::metadata(project_dir(dir.path(), 2)).unwrap().ino();
    assert!(before.contains(&ino), "not a spare");
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

/// Spares of either kind hold an index and an empty new log (`….log.new`). A project made from
/// one has its log named by its first full sync (`Store::sync` here) at the latest — in a
/// `Sync` store, where renames are atomic, the appends' own syncs leave it (their records are
/// durable without).
#[test]
fn spares_hold_empty_new_logs_named_by_the_first_full_sync() {
    for durability in [Durability::Written, Durability::Sync] {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .durability(durability)
            .spare_projects(2)
            .open(dir.path())
            .unwrap();
        store.append(1, [r#"{"p":1}"#]).unwrap();
        let before: Vec<u64> = await_spares(dir.path(), 2).iter().map(|s| s.1).collect();
        for (spare, _) in spares(dir.path()) {
            let spare = dir.path().join("projects").join(&spare);
            let mut names: Vec<String> = fs::read_dir(&spare)
                .unwrap()
                .map(|f| f.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(
                names,
                ["00000000000000000001.idx", "00000000000000000001.log.new"],
                "{durability:?}"
            );
            let log = fs::metadata(spare.join("00000000000000000001.log.new")).unwrap();
            assert_eq!(log.len(), 0, "{durability:?}");
        }
        store
            .append_with(2, [r#"{"p":2}"#], Durability::Sync)
            .unwrap();
        let ino = fs::metadata(project_dir(dir.path(), 2)).unwrap().ino();
        assert!(before.contains(&ino), "{durability:?}: not a spare");
        let new = project_dir(dir.path(), 2).join("00000000000000000001.log.new");
        let named = project_dir(dir.path(), 2).join("00000000000000000001.log");
        // A `Written` store's spare was not synced: the append's sync names its log. (A `Sync`
        // store's leaves it for later where renames are atomic, as on ext4 and tmpfs; the
        // store's unit tests show the one fsync.)
        assert_ne!(new.exists(), named.exists(), "{durability:?}");
        if durability == Durability::Written {
            assert!(named.exists());
        }
        store.sync().unwrap();
        assert!(!new.exists() && named.exists(), "{durability:?}");
        // The log ends with its last record.
        let log = fs::read(&named).unwrap();
        let end = common::frames(&log).last().map(|f| f.end);
        assert_eq!(end, Some(log.len()), "{durability:?}");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(json(&store, 2), [r#"{"p":2}"#]);
    }
}
