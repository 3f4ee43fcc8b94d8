//! Every file a store creates is private to its owner (mode 0600), and every directory it
//! makes (0700), whatever the umask: the index says as much about the messages as the log it
//! indexes, and the names of the projects are in the directories' listings.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use activitylog::{Durability, Options, MIN_SEGMENT_BYTES};

/// Every file and directory under `dir` (recursively, `dir` too) with its permission bits and
/// whether it is a directory.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mode = |path: &Path| {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.permissions().mode() & 0o7777, meta.is_dir())
    };
    let (root, _) = mode(dir);
    let mut found = vec![(dir.to_path_buf(), root, true)];
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let (bits, is_dir) = mode(&path);
            if is_dir {
                folders.push(path.clone());
            }
            found.push((path, bits, is_dir));
        }
    }
    found.sort();
    found
}

/// Requires every file under `dir` to be 0600 and every directory (`dir` too) 0700, and the
/// files named in `expected` to be there.
fn all_private(dir: &Path, when: &str, expected: &[&str]) {
    let modes = modes(dir);
    for name in expected {
        assert!(
            modes
                .iter()
                .any(|(p, _, _)| p.file_name().unwrap() == *name),
            "{when}: no {name} in {modes:?}"
        );
    }
    let open: Vec<_> = modes
        .iter()
        .filter(|(_, mode, is_dir)| *mode != if *is_dir { 0o700 } else { 0o600 })
        .collect();
    assert!(
        open.is_empty(),
        "{when}: files not 0600 or directories not 0700: {open:?}"
    );
}

#[test]
fn every_file_of_the_store_is_0600_and_every_directory_0700_after_appends_a_roll_and_a_clean_close()
{
    // The usual umask, which leaves files the user makes readable by all (0644): the store's
    // must not be. This is the only test in this binary, so nothing else sees the change.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let parent = tempfile::tempdir().unwrap();
    // Made by the store, with its parent folder.
    let dir = parent.path().join("activity/store");
    let store = Options::new()
        .segment_bytes(MIN_SEGMENT_BYTES)
        .open(&dir)
        .unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    store
        .append_with(2, [r#"{"b":1}"#], Durability::Sync)
        .unwrap();
    let first_log = "00000000000000000001.log";
    let first_idx = "00000000000000000001.idx";
    all_private(
        dir.as_path(),
        "after appends",
        &["STORE", "LOCK", "CLOCK", first_log, first_idx],
    );

    let pad = "x".repeat(1000);
    let message = format!(r#"{{"pad":"{pad}"}}"#);
    let mut appended = 1u64;
    while fs::read_dir(dir.as_path().join("projects/2"))
        .unwrap()
        .count()
        < 4
    {
        store
            .append_with(2, [message.as_str()], Durability::Sync)
            .unwrap();
        appended += 1;
        assert!(
            appended < 100_000,
            "project 2 never rolled to a new segment"
        );
    }
    all_private(dir.as_path(), "after a roll", &[first_log, first_idx]);

    drop(store);
    all_private(
        dir.as_path(),
        "after a clean close",
        &["STORE", "LOCK", "CLOCK", "CLEAN", first_log, first_idx],
    );
}
