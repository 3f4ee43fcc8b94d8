//! Readers iterating newest first while a writer appends batches of varying size and rolls
//! segments every few batches: every message read is whole and is the one appended with that
//! seq, seqs fall by exactly one, and a reader never sees part of a batch. Readers use the
//! writing store itself (clones) and a separate read-only store that refreshes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use activitylog::{Message, Options, Store};
use common::{Rng, SMALL_SEGMENT_BYTES};

const P: u64 = 11;
/// How long the writer runs at most.
const WRITE_FOR: Duration = Duration::from_millis(1500);
/// How many messages the writer appends at most.
const MAX_MESSAGES: u64 = 4000;

/// The message appended with `seq`, in a batch whose last seq is `batch_end`.
fn message(seq: u64, batch_end: u64, pad: usize) -> String {
    format!(
        r#"{{"seq_hint":{seq},"batch_end":{batch_end},"pad":"{}"}}"#,
        "p".repeat(pad)
    )
}

/// Checks one newest-first read: `full` when it started at the newest message of its snapshot.
fn check_read(msgs: &[Message], full: bool, who: &str) {
    for (k, m) in msgs.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(m.json())
            .unwrap_or_else(|e| panic!("{who}: seq {} is not JSON ({e}): {}", m.seq(), m.json()));
        assert_eq!(
            v["seq_hint"],
            m.seq(),
            "{who}: message {} holds {}",
            m.seq(),
            m.json()
        );
        let batch_end = v["batch_end"].as_u64().unwrap();
        assert!(batch_end >= m.seq(), "{who}: {}", m.json());
        let pad = v["pad"].as_str().unwrap();
        assert!(pad.bytes().all(|b| b == b'p'), "{who}: {}", m.json());
        if k == 0 && full {
            assert_eq!(
                batch_end,
                m.seq(),
                "{who}: saw part of the batch ending at {batch_end}"
            );
        }
        if k > 0 {
            let newer = &msgs[k - 1];
            assert_eq!(m.seq() + 1, newer.seq(), "{who}: seqs fall by one");
            assert!(
                m.stamp() <= newer.stamp(),
                "{who}: stamps never increase going back"
            );
        }
    }
}

fn reader(store: Store, refresh: bool, done: Arc<AtomicBool>, seed: u64, who: String) -> u64 {
    let mut rng = Rng::new(seed);
    let mut rounds = 0;
    while !done.load(Ordering::Acquire) {
        if refresh {
            store.refresh();
        }
        let it = store.newest_first(P).unwrap();
        let newest = it.next_seq() - 1;
        if rng.below(3) == 0 && newest > 0 {
            // A page from somewhere in the middle.
            let before = 1 + rng.below(newest + 1);
            let page: Vec<Message> = it.before(before).take(50).map(Result::unwrap).collect();
            assert_eq!(
                page.first().map(Message::seq),
                before.checked_sub(1).filter(|&s| s > 0)
            );
            check_read(&page, false, &who);
        } else {
            let all: Vec<Message> = it.map(Result::unwrap).collect();
            assert_eq!(
                all.len() as u64,
                newest,
                "{who}: every message of the snapshot"
            );
            check_read(&all, true, &who);
        }
        rounds += 1;
    }
    rounds
}

#[test]
fn readers_see_whole_batches_in_order_while_segments_roll() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .segment_bytes(SMALL_SEGMENT_BYTES)
        .max_mapped_segments(4)
        .open(dir.path())
        .unwrap();
    store.append(P, [message(1, 1, 0)]).unwrap();
    let ro = Options::new()
        .read_only(true)
        .max_mapped_segments(4)
        .open(dir.path())
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(1));
    let writer = {
        let (store, done, written) = (store.clone(), done.clone(), written.clone());
        thread::spawn(move || {
            let mut rng = Rng::new(7);
            let start = Instant::now();
            let mut next = 2u64;
            while start.elapsed() < WRITE_FOR && next <= MAX_MESSAGES {
                let size = 1 + rng.below(12);
                let end = next + size - 1;
                let batch: Vec<String> = (next..=end)
                    .map(|seq| message(seq, end, rng.below(300) as usize))
                    .collect();
                let a = store.append(P, &batch).unwrap();
                assert_eq!(a.first_seq, next);
                next = end + 1;
                written.store(end, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        })
    };
    let readers: Vec<_> = [(store.clone(), false), (store.clone(), false), (ro, true)]
        .into_iter()
        .enumerate()
        .map(|(i, (s, refresh))| {
            let done = done.clone();
            let who = format!("reader {i}{}", if refresh { " (read-only)" } else { "" });
            thread::spawn(move || reader(s, refresh, done, i as u64 + 100, who))
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        let rounds = r.join().unwrap();
        eprintln!("a reader ran {rounds} rounds");
        assert!(rounds > 0);
    }

    let total = written.load(Ordering::Acquire);
    assert!(
        common::segments(dir.path(), P).len() > 10,
        "segments rolled many times"
    );
    let all = common::read_all(&store, P);
    assert_eq!(all.len() as u64, total);
    check_read(&all, true, "final read");
    let ro = common::open_read_only(dir.path());
    assert_eq!(common::read_all(&ro, P), all);
}

/// Newest-first and merged readers in several threads while a writer appends to two projects,
/// segments roll, and retention deletes the oldest segments: every read is contiguous, newest
/// first, each message the one appended with its seq; a read may end early where retention cut
/// the history, never with an error or a torn record.
#[test]
fn readers_and_merged_readers_stay_whole_while_retention_deletes_segments() {
    const Q: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .segment_bytes(SMALL_SEGMENT_BYTES)
        .max_mapped_segments(4)
        .open(dir.path())
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        thread::spawn(move || {
            let mut rng = Rng::new(9);
            let start = Instant::now();
            let mut next = [1u64, 1u64];
            while start.elapsed() < WRITE_FOR && next[0] <= MAX_MESSAGES {
                let k = rng.below(2) as usize;
                let size = 1 + rng.below(8);
                let end = next[k] + size - 1;
                let batch: Vec<String> = (next[k]..=end)
                    .map(|seq| message(seq, end, rng.below(200) as usize))
                    .collect();
                store.append([P, Q][k], &batch).unwrap();
                next[k] = end + 1;
            }
            done.store(true, Ordering::Release);
        })
    };
    let retainer = {
        let (store, done) = (store.clone(), done.clone());
        thread::spawn(move || {
            let mut removed = 0;
            while !done.load(Ordering::Acquire) {
                let r = store
                    .apply_retention(&activitylog::Retention::new().max_messages(300))
                    .unwrap();
                removed += r.segments;
                thread::sleep(Duration::from_millis(5));
            }
            removed
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let (store, done) = (store.clone(), done.clone());
            thread::spawn(move || {
                let who = format!("reader {i}");
                let mut rounds = 0u64;
                while !done.load(Ordering::Acquire) {
                    for p in [P, Q] {
                        let msgs: Vec<Message> = store
                            .newest_first(p)
                            .unwrap()
                            .map(|m| m.unwrap_or_else(|e| panic!("{who}: {e}")))
                            .collect();
                        check_read(&msgs, true, &who);
                    }
                    let merged: Vec<Message> = store
                        .query(&activitylog::Query::new().projects([P, Q]).count(200))
                        .unwrap()
                        .map(|m| m.unwrap_or_else(|e| panic!("{who} (merged): {e}")))
                        .collect();
                    for w in merged.windows(2) {
                        assert!(
                            w[0].stamp() >= w[1].stamp(),
                            "{who}: merged order: {:?} then {:?}",
                            (w[0].project(), w[0].seq(), w[0].stamp()),
                            (w[1].project(), w[1].seq(), w[1].stamp())
                        );
                    }
                    for p in [P, Q] {
                        let own: Vec<Message> = merged
                            .iter()
                            .filter(|m| m.project() == p)
                            .cloned()
                            .collect();
                        check_read(&own, false, &format!("{who} (merged)"));
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    writer.join().unwrap();
    let removed = retainer.join().unwrap();
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(removed > 0, "retention deleted segments while readers ran");
    for p in [P, Q] {
        let all = common::read_all(&store, p);
        check_read(&all, true, "final read");
    }
}
