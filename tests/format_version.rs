//! Format version 2 (a log's header names its project): a store written in version 1 is
//! refused with a clear error, and so is a version-1 log met inside a version-2 store.

mod common;

use std::fs;

use activitylog::{Error, Options, Store};
use common::log_path;

/// Sets the format version field (bytes 8..12, outside every checksum) of a file.
fn set_version(path: &std::path::Path, version: u32) {
    let mut bytes = fs::read(path).unwrap();
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    fs::write(path, bytes).unwrap();
}

/// Every file under `dir`, with its bytes.
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_version_1_store_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    drop(store);
    set_version(&dir.path().join("STORE"), 1);
    let before = tree(dir.path());
    for read_only in [false, true] {
        match Options::new().read_only(read_only).open(dir.path()) {
            Err(Error::UnsupportedVersion { path, found }) => {
                assert_eq!(found, 1);
                assert!(path.ends_with("STORE"), "{}", path.display());
            }
            other => panic!("read_only {read_only}: {other:?}"),
        }
    }
    assert_eq!(tree(dir.path()), before, "nothing written");
}

#[test]
fn a_version_1_log_in_a_store_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    drop(store);
    set_version(&log_path(dir.path(), 1, 1), 1);
    let store = Options::new().read_only(true).open(dir.path()).unwrap();
    let err = store
        .newest_first(1)
        .err()
        .expect("the project does not read");
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("format version 1"), "{err}");
}
