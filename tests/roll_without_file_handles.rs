//! A segment roll that runs out of file handles halfway (the new segment's files made, one of
//! them not opened) must not leave anything a reopen misreads: every acknowledged message reads
//! back, in order. Alone in its test binary, since the file-handle limit is the process's.

use activitylog::{Durability, Options};

/// The handle number the next open would get: a limit of it lets no open through.
fn next_handle() -> u64 {
    use std::os::fd::AsRawFd;
    std::fs::File::open("/dev/null").unwrap().as_raw_fd() as u64
}

/// Sets this process's limit of file handles, returning the one it replaces.
fn set_handle_limit(soft: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let old = getrlimit(Resource::Nofile);
    let new = Rlimit {
        current: Some(soft),
        maximum: old.maximum,
    };
    setrlimit(Resource::Nofile, new).expect("setting the limit of file handles");
    old.current.unwrap_or(u64::MAX)
}

#[test]
fn a_roll_out_of_file_handles_loses_no_acknowledged_message() {
    let pad = "x".repeat(900);
    let mut failed_rolls = 0;
    for (spare, durability) in
        (0..10).flat_map(|n| [(n, Durability::Written), (n, Durability::Sync)])
    {
        let tmp = tempfile::tempdir().unwrap();
        let store = Options::new()
            .durability(durability)
            .segment_bytes(4096)
            .spare_projects(0)
            .open(tmp.path())
            .unwrap();
        let mut acked = Vec::new();
        for i in 0..3 {
            let m = format!(r#"{{"i":{i},"pad":"{pad}"}}"#);
            store.append(1, [&m]).unwrap();
            acked.push(m);
        }
        // A batch that does not fit the segment rolls it, with `spare` handles to spare.
        let big = format!(r#"{{"big":"{}"}}"#, "y".repeat(2000));
        let old = set_handle_limit(next_handle() + spare);
        let rolled = store.append(1, [&big]);
        set_handle_limit(old);
        match rolled {
            Ok(_) => acked.push(big),
            Err(_) => failed_rolls += 1,
        }
        // A small batch after it, which the old segment would still take.
        for i in 3..5 {
            let m = format!(r#"{{"i":{i}}}"#);
            if store.append(1, [&m]).is_ok() {
                acked.push(m);
            }
        }
        drop(store);
        let store = Options::new().open(tmp.path()).unwrap();
        let mut read: Vec<String> = store
            .newest_first(1)
            .unwrap()
            .map(|m| m.map(|m| m.into_json()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("spare {spare}, {durability:?}: {e}"));
        read.reverse();
        assert_eq!(read, acked, "spare {spare}, {durability:?}");
    }
    assert!(failed_rolls > 0, "no roll ran out of file handles");
}
