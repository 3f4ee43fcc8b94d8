//! The `CLEAN` marker vouches that every log and index was synced at close. A store opened after
//! a crash earns it back only once every project has been opened (and so recovered and synced).

use std::fs;

use activitylog::{Query, Store};

#[test]
fn a_store_opened_after_a_crash_is_clean_again_only_once_every_project_was_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("CLEAN");
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    store.append(2, [r#"{"b":1}"#]).unwrap();
    drop(store);
    assert!(clean.exists(), "a clean close leaves the marker");
    // A crash: no marker.
    fs::remove_file(&clean).unwrap();

    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":2}"#]).unwrap();
    drop(store);
    assert!(!clean.exists(), "project 2 was never recovered");

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.newest_first(1).unwrap().count(), 2);
    assert_eq!(store.newest_first(2).unwrap().count(), 1);
    drop(store);
    assert!(clean.exists(), "every project was recovered");
}

#[test]
fn the_marker_and_newest_stamps_go_before_the_first_write_not_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, newest) = (dir.path().join("CLEAN"), dir.path().join("NEWEST"));
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    drop(store);
    assert!(clean.exists());

    // A writable open that only reads changes nothing on disk, but may leave NEWEST once it
    // learned every project's newest stamp (a query over all projects does).
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.query(&Query::new()).unwrap().count(), 1);
    assert!(clean.exists(), "still there while the store is open");
    drop(store);
    assert!(clean.exists() && newest.exists());

    // The first append removes both before it writes.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.newest_first(1).unwrap().count(), 1);
    assert!(clean.exists() && newest.exists(), "reading removes nothing");
    store.append(1, [r#"{"a":2}"#]).unwrap();
    assert!(!clean.exists() && !newest.exists());
    drop(store);
    assert!(clean.exists(), "a clean close leaves the marker again");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.newest_first(1).unwrap().count(), 2);
}

/// An empty batch stores nothing, so it is no write: the marker and the newest stamps stay, and
/// the next open trusts the index files as after any clean close.
#[test]
fn an_empty_batch_leaves_the_marker_and_newest_stamps() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, newest) = (dir.path().join("CLEAN"), dir.path().join("NEWEST"));
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    drop(store);
    assert!(clean.exists() && newest.exists());

    let store = Store::open(dir.path()).unwrap();
    for project in [1, 2] {
        let appended = store.append(project, Vec::<&str>::new()).unwrap();
        assert_eq!(appended.count, 0);
    }
    assert!(
        clean.exists() && newest.exists(),
        "an empty batch removed them"
    );
}
