//! Dropping a store ends its background threads before the drop returns: the syncer of
//! `Written` projects holds projects of its own, and must not sync them (or name a new
//! project's first log) once the store's lock is released and another store may have opened
//! them. One test in this binary, so that no other store's threads are counted.

use std::fs;

use activitylog::{Durability, Options};

/// The names of this process's threads that belong to a store.
fn store_threads() -> Vec<String> {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .filter(|name| name.starts_with("activitylog"))
        .collect()
}

#[test]
fn dropping_a_store_ends_its_background_threads() {
    let message = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
    for round in 0..20 {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let store = Options::new()
            .durability(Durability::Written)
            .open(dir.path())
            .unwrap();
        // Several times 4 MiB unsynced: the background syncer is handed the project, and new projects
        // have the spare thread make spares.
        for _ in 0..12 {
            store
                .append(round + 1, vec![message.as_str(); 1100])
                .unwrap();
        }
        // A thread takes its name once it runs: on a busy machine, some time after its spawn.
        let waited = std::time::Instant::now();
        while store_threads().is_empty() {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(10),
                "round {round}: no background thread ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(store);
        let left = store_threads();
        assert!(
            left.is_empty(),
            "round {round}: {left:?} still run after the drop"
        );
    }
}
