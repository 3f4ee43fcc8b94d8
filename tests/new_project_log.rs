//! A project made on the spot writes its first log without an fsync, under a temporary name
//! (`00000000000000000001.log.new`), and names it at its first sync. A kill leaves that log
//! whole in the page cache: the next open recovers, syncs and names it. A power cut before the
//! first sync may leave its header unwritten: it held nothing acknowledged as durable, and the
//! next writable open removes it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use activitylog::{Durability, Options, Store};
use common::{copy_dir, open_read_only, project_dir, read_all};

fn new_log_path(store: &Path, p: u64) -> PathBuf {
    project_dir(store, p).join("00000000000000000001.log.new")
}

/// The first log under its name.
fn named_log_path(store: &Path, p: u64) -> PathBuf {
    project_dir(store, p).join("00000000000000000001.log")
}

/// A writable store that makes every project on the spot.
fn open(dir: &Path) -> Store {
    Options::new().spare_projects(0).open(dir).unwrap()
}

#[test]
fn a_new_projects_first_log_is_named_at_its_first_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(7, [r#"{"a":1}"#]).unwrap();
    assert!(new_log_path(dir.path(), 7).exists());
    assert!(!named_log_path(dir.path(), 7).exists());
    store.sync().unwrap();
    assert!(!new_log_path(dir.path(), 7).exists());
    assert!(named_log_path(dir.path(), 7).exists());
    // A durable append names it too, and so does a clean close.
    store
        .append_with(8, [r#"{"a":1}"#], Durability::Sync)
        .unwrap();
    assert!(named_log_path(dir.path(), 8).exists());
    store.append(9, [r#"{"a":1}"#]).unwrap();
    drop(store);
    assert!(named_log_path(dir.path(), 9).exists());
    assert!(!new_log_path(dir.path(), 9).exists());
    let store = open(dir.path());
    for p in [7, 8, 9] {
        assert_eq!(read_all(&store, p).len(), 1, "project {p}");
    }
}

#[test]
fn a_killed_writers_new_log_is_recovered_synced_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(3, [r#"{"a":1}"#, r#"{"a":2}"#]).unwrap();
    store.append(3, [r#"{"a":3}"#]).unwrap();
    // What a kill leaves: the files as the page cache holds them (room included), no marker.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    drop(store);
    let _ = fs::remove_file(copy.path().join("CLEAN"));
    assert!(new_log_path(copy.path(), 3).exists());
    let store = open(copy.path());
    let got: Vec<String> = read_all(&store, 3)
        .iter()
        .map(|m| m.json().to_owned())
        .collect();
    assert_eq!(got, [r#"{"a":3}"#, r#"{"a":2}"#, r#"{"a":1}"#]);
    assert!(named_log_path(copy.path(), 3).exists());
    assert!(!new_log_path(copy.path(), 3).exists());
    store.append(3, [r#"{"a":4}"#]).unwrap();
    assert_eq!(read_all(&store, 3).len(), 4);
}

#[test]
fn a_new_log_whose_header_never_reached_the_disk_is_removed_and_the_project_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(1, [r#"{"a":1}"#]).unwrap();
    drop(store);
    // A power cut before project 5's first sync: its directory and files were made, its bytes
    // never written (zeros where the header and a record would be).
    fs::create_dir(project_dir(dir.path(), 5)).unwrap();
    fs::write(new_log_path(dir.path(), 5), [0u8; 4096]).unwrap();
    let _ = fs::remove_file(dir.path().join("CLEAN"));
    let mut problems = Vec::new();
    activitylog::verify(dir.path(), None, |p| problems.push(p.what.clone()), |_| {}).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("never synced"), "{problems:?}");

    let store = open(dir.path());
    assert_eq!(read_all(&store, 5).len(), 0);
    assert!(!new_log_path(dir.path(), 5).exists());
    store
        .append_with(5, [r#"{"b":1}"#], Durability::Sync)
        .unwrap();
    assert_eq!(
        store
            .newest_first(5)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .seq(),
        1
    );
    drop(store);
    let mut problems = 0;
    activitylog::verify(dir.path(), None, |_| problems += 1, |_| {}).unwrap();
    assert_eq!(problems, 0);
}

#[test]
fn a_read_only_store_beside_the_writer_reads_a_new_log_before_and_after_it_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(4, [r#"{"a":1}"#]).unwrap();
    let reader = open_read_only(dir.path());
    assert_eq!(read_all(&reader, 4).len(), 1);
    assert_eq!(reader.stats(4).unwrap().unwrap().messages, 1);
    store.append(4, [r#"{"a":2}"#]).unwrap();
    store.sync().unwrap();
    reader.refresh();
    assert_eq!(read_all(&reader, 4).len(), 2);
    // The writer's own count, before and after the name.
    store.append(6, [r#"{"a":1}"#]).unwrap();
    assert_eq!(store.stats(6).unwrap().unwrap().messages, 1);
    store.sync().unwrap();
    assert_eq!(store.stats(6).unwrap().unwrap().messages, 1);
}
