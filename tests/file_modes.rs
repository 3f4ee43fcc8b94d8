//! Every file a store creates is private to its owner (mode 0600), whatever the umask: the
//! index says as much about the messages as the log it indexes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use activitylog::{Durability, Options, MIN_SEGMENT_BYTES};

/// Every file under `dir` (recursively) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                folders.push(path);
            } else {
                found.push((path, meta.permissions().mode() & 0o7777));
            }
        }
    }
    found.sort();
    found
}

/// Requires every file under `dir` to be 0600, and the files named in `expected` to be there.
fn all_private(dir: &Path, when: &str, expected: &[&str]) {
    let modes = modes(dir);
    for name in expected {
        assert!(
            modes.iter().any(|(p, _)| p.file_name().unwrap() == *name),
            "{when}: no {name} in {modes:?}"
        );
    }
    let open: Vec<_> = modes.iter().filter(|(_, mode)| *mode != 0o600).collect();
    assert!(open.is_empty(), "{when}: files not 0600: {open:?}");
}

#[test]
fn every_file_of_the_store_is_0600_after_appends_a_roll_and_a_clean_close() {
    // The usual umask, which leaves files the user makes readable by all (0644): the store's
    // must not be. This is the only test in this binary, so nothing else sees the change.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .segment_bytes(MIN_SEGMENT_BYTES)
        .open(dir.path())
        .unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    store
        .append_with(2, [r#"{"b":1}"#], Durability::Sync)
        .unwrap();
    let first_log = "00000000000000000001.log";
    let first_idx = "00000000000000000001.idx";
    all_private(
        dir.path(),
        "after appends",
        &["STORE", "LOCK", "CLOCK", first_log, first_idx],
    );

    let pad = "x".repeat(1000);
    let message = format!(r#"{{"pad":"{pad}"}}"#);
    let mut appended = 1u64;
    while fs::read_dir(dir.path().join("projects/2")).unwrap().count() < 4 {
        store
            .append_with(2, [message.as_str()], Durability::Sync)
            .unwrap();
        appended += 1;
        assert!(
            appended < 100_000,
            "project 2 never rolled to a new segment"
        );
    }
    all_private(dir.path(), "after a roll", &[first_log, first_idx]);

    drop(store);
    all_private(
        dir.path(),
        "after a clean close",
        &["STORE", "LOCK", "CLOCK", "CLEAN", first_log, first_idx],
    );
}
