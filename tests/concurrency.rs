//! `Store` is `Clone + Send + Sync`. Threads appending at once — to different projects, and to
//! one project with `Durability::Sync` (group commit) — all succeed, and every project holds
//! exactly what was appended: seqs gap-free, no duplicates, each message where its `Appended`
//! said, each thread's appends in its own order.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::thread;

use activitylog::{Appended, Durability, Options, Store};
use common::read_all;

const THREADS: u64 = 4;
const CALLS_PER_THREAD: u64 = 40;

#[test]
fn store_is_clone_send_sync() {
    fn shared<T: Clone + Send + Sync + 'static>() {}
    fn sendable<T: Send + 'static>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    shared::<Store>();
    shared::<activitylog::Message>();
    sendable::<activitylog::NewestFirst>();
    error::<activitylog::Error>();
}

/// Thread `t`'s message number `k` of call `call`.
fn message(t: u64, call: u64, k: u64) -> String {
    format!(
        r#"{{"thread":{t},"call":{call},"k":{k},"pad":"{}"}}"#,
        "c".repeat(((t * 31 + call * 7 + k) % 200) as usize)
    )
}

/// Runs `THREADS` threads; thread `t` appends to `project(t)` with `durability`, batches of
/// 1..=5. Returns each thread's `(Appended, messages)` in call order.
fn run(
    store: &Store,
    project: fn(u64) -> u64,
    durability: Durability,
) -> Vec<Vec<(Appended, Vec<String>)>> {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                (0..CALLS_PER_THREAD)
                    .map(|call| {
                        let batch: Vec<String> = (0..1 + (t + call) % 5)
                            .map(|k| message(t, call, k))
                            .collect();
                        let a = store.append_with(project(t), &batch, durability).unwrap();
                        assert_eq!(a.count, batch.len() as u64);
                        (a, batch)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Checks that each project holds exactly what the threads' calls say, and returns what was
/// read, per project.
fn check(
    store: &Store,
    project: fn(u64) -> u64,
    results: &[Vec<(Appended, Vec<String>)>],
) -> BTreeMap<u64, Vec<activitylog::Message>> {
    // Expected message per (project, seq), from the `Appended` of each call.
    let mut want: HashMap<u64, BTreeMap<u64, (String, u64)>> = HashMap::new();
    let mut stamps = Vec::new();
    for (t, calls) in results.iter().enumerate() {
        let p = project(t as u64);
        let mut prev_seq = 0;
        for (a, batch) in calls {
            assert!(a.first_seq > prev_seq, "a thread's appends keep its order");
            prev_seq = a.first_seq;
            stamps.push(a.stamp);
            for (seq, json) in a.seqs().zip(batch) {
                let dup = want
                    .entry(p)
                    .or_default()
                    .insert(seq, (json.clone(), a.stamp));
                assert!(dup.is_none(), "project {p}: seq {seq} given twice");
            }
        }
    }
    stamps.sort_unstable();
    stamps.dedup();
    assert_eq!(
        stamps.len(),
        results.iter().map(Vec::len).sum::<usize>(),
        "every append call has its own stamp"
    );

    let mut read = BTreeMap::new();
    for (p, want) in want {
        let total = want.len() as u64;
        assert_eq!(
            want.keys().copied().collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>(),
            "project {p}: gap-free"
        );
        let got = read_all(store, p);
        assert_eq!(got.len() as u64, total, "project {p}");
        for m in &got {
            let (json, stamp) = &want[&m.seq()];
            assert_eq!(m.json(), json, "project {p}, seq {}", m.seq());
            assert_eq!(m.stamp(), *stamp, "project {p}, seq {}", m.seq());
        }
        for w in got.windows(2) {
            assert_eq!(w[0].seq(), w[1].seq() + 1);
            assert!(w[0].stamp() >= w[1].stamp());
        }
        read.insert(p, got);
    }
    read
}

#[test]
fn threads_append_to_different_projects_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_small(dir.path());
    let project = |t: u64| 100 + t;
    let results = run(&store, project, Durability::Written);
    let read = check(&store, project, &results);
    assert_eq!(store.projects().unwrap(), [100, 101, 102, 103]);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    for (p, msgs) in read {
        assert_eq!(read_all(&store, p), msgs, "project {p} after reopen");
    }
}

#[test]
fn threads_append_to_one_project_with_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_small(dir.path());
    let project = |_| 7;
    let results = run(&store, project, Durability::Sync);
    let read = check(&store, project, &results);
    // Every message of every thread, once.
    let total: usize = results.iter().flatten().map(|(_, b)| b.len()).sum();
    assert_eq!(read[&7].len(), total);
    assert!(
        common::segments(dir.path(), 7).len() > 1,
        "segments rolled under concurrent appends"
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store, 7), read[&7], "after reopen");
}

#[test]
fn sync_and_written_appenders_mix_on_one_project_and_across_projects() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .segment_bytes(common::SMALL_SEGMENT_BYTES)
        .durability(Durability::Sync)
        .open(dir.path())
        .unwrap();
    let handles: Vec<_> = (0..2 * THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                let p = t % 2;
                for call in 0..CALLS_PER_THREAD {
                    let batch = [message(t, call, 0), message(t, call, 1)];
                    if call % 2 == 0 {
                        store.append(p, &batch).unwrap();
                    } else {
                        store.append_with(p, &batch, Durability::Written).unwrap();
                    }
                    if call % 10 == 0 {
                        store.sync().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for p in 0..2 {
        let got = read_all(&store, p);
        assert_eq!(
            got.len() as u64,
            THREADS * CALLS_PER_THREAD * 2,
            "project {p}"
        );
        // Each batch of two is adjacent and in order: seq 2i+1 is k=0 and 2i+2 is k=1 of one call.
        for pair in got.chunks(2) {
            let (k1, k0) = (&pair[0], &pair[1]);
            assert_eq!(k0.seq() % 2, 1);
            assert_eq!(k0.stamp(), k1.stamp());
            let v0: serde_json::Value = serde_json::from_str(k0.json()).unwrap();
            let v1: serde_json::Value = serde_json::from_str(k1.json()).unwrap();
            assert_eq!(
                (&v0["thread"], &v0["call"], &v0["k"]),
                (&v1["thread"], &v1["call"], &0.into())
            );
            assert_eq!(v1["k"], 1);
        }
    }
}
