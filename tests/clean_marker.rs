//! The `CLEAN` marker vouches that every log and index was synced at close. A store opened after
//! a crash earns it back only once every project has been opened (and so recovered and synced).

use std::fs;

use activitylog::Store;

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
