//! Running out of file handles must not lose an acknowledged message, nor poison a log (no
//! fsync failed): a segment roll that runs out halfway (the new segment's files made, one of
//! them not opened), and a random workload of appends, rolls, new projects and project closes
//! under random limits, then a reopen: every acknowledged message reads back, in order. One
//! test function, alone in its test binary, since the file-handle limit is the process's.
//! `FILE_HANDLE_ROUNDS` sets the workload's appends (600 by default), `FILE_HANDLE_SEED` its
//! seed (7).

mod common;

use activitylog::{Durability, Options};
use common::{next_handle, set_handle_limit};

#[test]
fn running_out_of_file_handles_loses_no_acknowledged_message() {
    a_roll_out_of_file_handles_loses_no_acknowledged_message();
    a_workload_out_of_file_handles_loses_no_acknowledged_message();
}

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

/// SplitMix64, for a workload that is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Appends of every size to a few projects (new ones among them, more than the store keeps
/// open, so projects are closed and reopened), at both durabilities, half of them with only a
/// few file handles to spare. An append with handles to spare must succeed (nothing poisoned
/// a log), and every acknowledged message must read back after a reopen, in order; a refused
/// one may have been stored, but nothing else may be.
fn a_workload_out_of_file_handles_loses_no_acknowledged_message() {
    let rounds: u64 = std::env::var("FILE_HANDLE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let seed = std::env::var("FILE_HANDLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let store = Options::new()
        .segment_bytes(4096)
        .max_open_projects(3)
        .open(tmp.path())
        .unwrap();
    let mut acked: Vec<Vec<String>> = vec![Vec::new(); 8];
    let mut tried: Vec<Vec<String>> = vec![Vec::new(); 8];
    let (mut refused, mut limited) = (0, 0);
    for i in 0..rounds {
        let project = rng.below(8);
        let batch: Vec<String> = (0..1 + rng.below(3))
            .map(|k| {
                let pad = "p".repeat(rng.below(1500) as usize);
                format!(r#"{{"i":{i},"k":{k},"pad":"{pad}"}}"#)
            })
            .collect();
        let durability = if rng.below(2) == 0 {
            Durability::Written
        } else {
            Durability::Sync
        };
        let old = (rng.below(2) == 0).then(|| {
            limited += 1;
            set_handle_limit(next_handle() + rng.below(6))
        });
        let appended = store.append_with(project, &batch, durability);
        let limited_now = old.is_some();
        if let Some(old) = old {
            set_handle_limit(old);
        }
        tried[project as usize].extend(batch.iter().cloned());
        match appended {
            Ok(_) => acked[project as usize].extend(batch),
            Err(_) if limited_now => refused += 1,
            // Nothing poisons a log here: no fsync fails.
            Err(e) => panic!("append {i} failed with file handles to spare: {e}"),
        }
    }
    store.sync().expect("a sync with file handles to spare");
    drop(store);
    let store = Options::new().open(tmp.path()).unwrap();
    for project in 0..8 {
        let read: Vec<String> = store
            .oldest_first(project)
            .unwrap()
            .map(|m| m.map(|m| m.into_json()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("project {project}: {e}"));
        // In order: acknowledged messages a subsequence of what reads, which is a subsequence
        // of what was tried.
        let mut it = read.iter();
        for m in &acked[project as usize] {
            assert!(
                it.any(|r| r == m),
                "project {project}: an acknowledged message is missing or out of order"
            );
        }
        let mut it = tried[project as usize].iter();
        for m in &read {
            assert!(
                it.any(|t| t == m),
                "project {project}: a message read that was not appended there in that order"
            );
        }
    }
    assert!(
        refused > 0,
        "no append ran out of file handles ({limited} limited)"
    );
}
