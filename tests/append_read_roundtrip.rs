//! What is appended comes back newest first, exactly as stored: gap-free sequence numbers from 1,
//! stamps that order append calls (also across projects), compact JSON with key order and escapes
//! kept, paging with `before`, nothing for a project never written, and all of it after a reopen.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use activitylog::{Appended, Message, Options, Store, FIRST_SEQ};
use common::{open_small, read_all, segments, SMALL_SEGMENT_BYTES};

/// Appends `sizes.len()` batches of `{"p":P,"n":N,...}` messages (a size of 1 is passed as a
/// one-element array) to a project already holding `already` messages; returns the new
/// messages in append order. `n` numbers messages across calls.
fn append_batches(
    store: &Store,
    p: u64,
    sizes: &[usize],
    n: &mut u64,
    already: usize,
) -> Vec<String> {
    let mut all = Vec::new();
    for &size in sizes {
        let batch: Vec<String> = (0..size)
            .map(|_| {
                *n += 1;
                format!(
                    r#"{{"p":{p},"n":{n},"pad":"{}"}}"#,
                    "x".repeat((*n % 90) as usize)
                )
            })
            .collect();
        let appended = if size == 1 {
            store.append(p, [batch[0].as_str()])
        } else {
            store.append(p, &batch)
        }
        .unwrap();
        assert_eq!(appended.first_seq, (already + all.len()) as u64 + FIRST_SEQ);
        assert_eq!(appended.count, size as u64);
        assert_eq!(
            appended.seqs(),
            appended.first_seq..appended.first_seq + size as u64
        );
        all.extend(batch);
    }
    all
}

/// Checks `got` (newest first) holds exactly `appended` (in append order), seqs from 1.
fn assert_newest_first(got: &[Message], appended: &[String], p: u64) {
    assert_eq!(got.len(), appended.len());
    for (k, m) in got.iter().enumerate() {
        let seq = (appended.len() - k) as u64;
        assert_eq!(m.seq(), seq, "position {k}");
        assert_eq!(m.project(), p);
        assert_eq!(m.json(), appended[(seq - FIRST_SEQ) as usize], "seq {seq}");
    }
}

#[test]
fn batches_and_singles_come_back_newest_first_with_gap_free_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let sizes: Vec<usize> = (0..60).map(|i| [1, 3, 1, 7, 2, 1, 12][i % 7]).collect();
    let appended = append_batches(&store, 1, &sizes, &mut 0, 0);
    assert!(
        segments(dir.path(), 1).len() > 3,
        "the test should span several segments"
    );
    let got = read_all(&store, 1);
    assert_newest_first(&got, &appended, 1);
    assert_eq!(got.last().unwrap().seq(), FIRST_SEQ);
    let it = store.newest_first(1).unwrap();
    assert_eq!(it.next_seq(), appended.len() as u64 + 1);
    assert_eq!(it.newest_stamp(), got[0].stamp());
}

#[test]
fn stamps_order_append_calls_across_projects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let before_us = now_us();
    let mut calls: Vec<(u64, Appended)> = Vec::new();
    for i in 0..150u64 {
        let p = [1, 2, 3][(i % 3) as usize];
        let batch: Vec<String> = (0..=i % 4)
            .map(|k| format!(r#"{{"i":{i},"k":{k}}}"#))
            .collect();
        let a = store.append(p, &batch).unwrap();
        if let Some((_, prev)) = calls.last() {
            assert!(
                a.stamp > prev.stamp,
                "stamps strictly increase across append calls"
            );
        }
        assert_eq!(a.timestamp_ms(), a.stamp / 1000);
        calls.push((p, a));
    }
    let last = calls.last().unwrap().1.stamp;
    assert!(
        calls[0].1.stamp >= before_us,
        "a stamp is not older than the wall clock"
    );
    assert!(last <= now_us() + 1_000_000, "stamps follow the wall clock");

    for p in 1..=3 {
        let got = read_all(&store, p);
        for m in &got {
            let (_, call) = calls
                .iter()
                .find(|(q, a)| *q == p && a.seqs().contains(&m.seq()))
                .expect("every message comes from an append call");
            assert_eq!(
                m.stamp(),
                call.stamp,
                "a message carries its append call's stamp"
            );
            assert_eq!(m.timestamp_ms(), call.stamp / 1000);
        }
        for w in got.windows(2) {
            assert!(w[0].stamp() >= w[1].stamp(), "timestamps never decrease");
        }
    }
}

#[test]
fn whitespace_is_removed_but_key_order_and_escapes_are_kept() {
    let cases: [(&str, &str); 7] = [
        (
            r#"{ "b" : "\u00e9 x", "a":1 }"#,
            r#"{"b":"\u00e9 x","a":1}"#,
        ),
        (
            "{\n\t\"z\" : [ 1 , 2 ] ,\r\n \"a\" : { } }\n",
            r#"{"z":[1,2],"a":{}}"#,
        ),
        (
            r#" {"q" : "say \"hi\"  there", "back" : "a\\" , "u":"\ud83d\ude00"} "#,
            r#"{"q":"say \"hi\"  there","back":"a\\","u":"\ud83d\ude00"}"#,
        ),
        ("{\"raw\" : \"é 😀\\t\"}", "{\"raw\":\"é 😀\\t\"}"),
        (
            r#"{"n" : -1.5e3 , "t":true,"f" :false, "z": null}"#,
            r#"{"n":-1.5e3,"t":true,"f":false,"z":null}"#,
        ),
        (r#"{"dup":1,"dup":2}"#, r#"{"dup":1,"dup":2}"#),
        ("{}", "{}"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let want: Vec<&str> = cases.iter().rev().map(|c| c.1).collect();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append(5, cases.iter().map(|c| c.0)).unwrap();
        let got: Vec<String> = read_all(&store, 5)
            .into_iter()
            .map(Message::into_json)
            .collect();
        assert_eq!(got, want);
        for json in &got {
            assert!(
                !json.contains('\n') && !json.contains('\r'),
                "one line: {json}"
            );
            serde_json::from_str::<serde_json::Value>(json).expect("still valid JSON");
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let got: Vec<String> = read_all(&store, 5)
        .into_iter()
        .map(Message::into_json)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn before_pages_through_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let sizes: Vec<usize> = (0..50).map(|i| [2, 1, 9, 4][i % 4]).collect();
    append_batches(&store, 1, &sizes, &mut 0, 0);
    let all = read_all(&store, 1);
    let total = all.len() as u64;

    for page_size in [1, 7, 50, 1000] {
        let mut paged: Vec<Message> = Vec::new();
        loop {
            let it = store.newest_first(1).unwrap();
            let it = match paged.last() {
                None => it,
                Some(m) => it.before(m.seq()),
            };
            let page: Vec<Message> = it.take(page_size).map(Result::unwrap).collect();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= page_size);
            paged.extend(page);
        }
        assert_eq!(paged, all, "pages of {page_size}");
    }

    for seq in 0..=total + 2 {
        let got: Vec<u64> = store
            .newest_first(1)
            .unwrap()
            .before(seq)
            .map(|m| m.unwrap().seq())
            .collect();
        let want: Vec<u64> = (FIRST_SEQ..seq.min(total + 1)).rev().collect();
        assert_eq!(got, want, "before({seq})");
    }
    // `before` only ever narrows: applying a larger bound after a smaller one changes nothing.
    let got: Vec<u64> = store
        .newest_first(1)
        .unwrap()
        .before(10)
        .before(100)
        .map(|m| m.unwrap().seq())
        .collect();
    assert_eq!(got, (1..10).rev().collect::<Vec<_>>());
}

#[test]
fn a_project_never_written_is_empty_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append(1, [r#"{"a":1}"#]).unwrap();
        let mut it = store.newest_first(42).unwrap();
        assert_eq!(it.next_seq(), FIRST_SEQ);
        assert_eq!(it.newest_stamp(), 0);
        assert!(it.next().is_none());
        assert!(it.next().is_none(), "the iterator stays finished");
        assert!(store.newest_first(42).unwrap().before(10).next().is_none());
        // An empty batch stores nothing and creates nothing either.
        let a = store.append(43, Vec::<&str>::new()).unwrap();
        assert_eq!((a.first_seq, a.count), (FIRST_SEQ, 0));
        assert!(store.newest_first(43).unwrap().next().is_none());
        assert!(!common::project_dir(dir.path(), 42).exists());
        assert!(!common::project_dir(dir.path(), 43).exists());
        assert_eq!(store.projects().unwrap(), [1]);
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(store.newest_first(42).unwrap().next().is_none());
    assert!(!common::project_dir(dir.path(), 42).exists());
    drop(store);
    let ro = common::open_read_only(dir.path());
    assert!(ro.newest_first(42).unwrap().next().is_none());
    assert!(!common::project_dir(dir.path(), 42).exists());
    assert_eq!(ro.projects().unwrap(), [1]);
}

/// An empty batch to a project never written leaves it never written: `stats` says so, as it
/// does for a project nothing was ever appended to.
#[test]
fn an_empty_batch_leaves_a_project_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    store.append(43, Vec::<&str>::new()).unwrap();
    assert_eq!(store.stats(42).unwrap(), None);
    assert_eq!(store.stats(43).unwrap(), None);
}

#[test]
fn extreme_project_ids_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for p in [0, u64::MAX] {
        store.append(p, [format!(r#"{{"p":"{p}"}}"#)]).unwrap();
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.projects().unwrap(), [0, u64::MAX]);
    for p in [0, u64::MAX] {
        let got = read_all(&store, p);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].json(), format!(r#"{{"p":"{p}"}}"#));
        assert_eq!(got[0].project(), p);
    }
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut appended: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut n = 0;
    let before: Vec<Vec<Message>>;
    {
        let store = open_small(dir.path());
        for round in 0..12 {
            for (p, sink) in appended.iter_mut().enumerate() {
                let sizes = [1 + (round + p) % 5, 1, 3];
                let mut got = append_batches(&store, p as u64, &sizes, &mut n, sink.len());
                sink.append(&mut got);
            }
        }
        before = (0..3).map(|p| read_all(&store, p)).collect();
        for (p, msgs) in before.iter().enumerate() {
            assert_newest_first(msgs, &appended[p], p as u64);
        }
    }
    // The segment size recorded at creation wins over the one asked for on reopen.
    let store = Options::new()
        .segment_bytes(1 << 20)
        .open(dir.path())
        .unwrap();
    assert_eq!(store.segment_bytes(), SMALL_SEGMENT_BYTES);
    assert_eq!(store.projects().unwrap(), [0, 1, 2]);
    for (p, msgs) in before.iter().enumerate() {
        assert_eq!(
            &read_all(&store, p as u64),
            msgs,
            "project {p} after reopen"
        );
    }
    let newest_before = before.iter().map(|m| m[0].stamp()).max().unwrap();
    let a = store.append(1, [r#"{"after":"reopen"}"#]).unwrap();
    assert_eq!(
        a.first_seq,
        appended[1].len() as u64 + 1,
        "seqs continue after a reopen"
    );
    assert!(
        a.stamp > newest_before,
        "stamps keep increasing after a reopen"
    );
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let got = read_all(&store, 1);
    assert_eq!(got[0].json(), r#"{"after":"reopen"}"#);
    assert_eq!(got[0].seq(), a.first_seq);
    assert_eq!(got[0].stamp(), a.stamp);
    assert_eq!(&got[1..], &before[1][..]);
    assert_eq!(read_all(&store, 0), before[0]);
    assert_eq!(read_all(&store, 2), before[2]);
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}
