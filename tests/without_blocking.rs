//! Reads inside `without_blocking`: answered from memory when the store holds them there (the
//! newest messages of open projects, in the process that writes them), refused with
//! `Error::WouldBlock` when they would touch a file, and never answered with messages missing.

mod common;

use activitylog::{without_blocking, Error, Message, Options, Query, Store};
use common::{read_all, SMALL_SEGMENT_BYTES};

fn message(i: u64) -> String {
    format!(
        r#"{{"event":"job:started","i":{i},"pad":"{}"}}"#,
        "x".repeat(150)
    )
}

fn fill(store: &Store, project: u64, n: u64) {
    let batch: Vec<String> = (0..n).map(message).collect();
    store.append(project, &batch).unwrap();
}

/// A store of the smallest segments whose project 1 holds 100 messages, appended one by one:
/// the newest few in the active segment, the others in sealed ones.
fn small_segments_of_100(dir: &std::path::Path) -> Store {
    let store = Options::new()
        .segment_bytes(SMALL_SEGMENT_BYTES)
        .open(dir)
        .unwrap();
    for i in 0..100 {
        store.append(1, [message(i)]).unwrap();
    }
    store
}

fn newest(store: &Store, project: u64, n: usize) -> activitylog::Result<Vec<Message>> {
    store.newest_first(project)?.take(n).collect()
}

fn refused<T: std::fmt::Debug>(out: activitylog::Result<T>) -> bool {
    match out {
        Err(Error::WouldBlock) => true,
        other => panic!("expected WouldBlock, got {other:?}"),
    }
}

#[test]
fn the_newest_page_of_a_project_this_process_writes_is_read_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 1, 1000);
    let got = without_blocking(|| newest(&store, 1, 20)).unwrap().unwrap();
    assert_eq!(got, newest(&store, 1, 20).unwrap());
    assert_eq!(got.len(), 20);
}

#[test]
fn a_project_not_open_is_refused_and_then_read_as_usual_where_it_may_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 1, 100);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(refused(without_blocking(|| newest(&store, 1, 20))));
    let outside = newest(&store, 1, 20).unwrap();
    assert_eq!(outside.len(), 20);
    // Opened by that read, with its tail read back: in memory from now on.
    assert_eq!(
        without_blocking(|| newest(&store, 1, 20)).unwrap().unwrap(),
        outside
    );
}

#[test]
fn a_read_reaching_a_sealed_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments_of_100(dir.path());
    // The active segment holds the newest few; all 100 reach back into sealed ones.
    assert_eq!(
        without_blocking(|| newest(&store, 1, 2))
            .unwrap()
            .unwrap()
            .len(),
        2
    );
    assert!(refused(without_blocking(|| newest(&store, 1, 100))));
}

#[test]
fn a_read_older_than_the_tail_copy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // 2,000 messages of about 190 bytes: 380 KB in one segment, far more than the tail copy.
    for _ in 0..20 {
        fill(&store, 1, 100);
    }
    assert!(refused(without_blocking(|| newest(&store, 1, 2000))));
    assert_eq!(newest(&store, 1, 2000).unwrap().len(), 2000);
}

#[test]
fn a_caller_that_skips_errors_inside_the_scope_still_learns_it_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments_of_100(dir.path());
    let out = without_blocking(|| {
        let it = store.newest_first(1).unwrap();
        // The refused read ends the iterator: this loop ends.
        it.filter_map(|m| m.ok()).count()
    });
    assert!(refused(out));
    let merged = without_blocking(|| {
        store
            .query(&Query::new().projects([1]))
            .unwrap()
            .filter_map(|m| m.ok())
            .count()
    });
    assert!(refused(merged));
}

#[test]
fn a_merged_query_is_read_from_memory_once_every_project_it_needs_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..5 {
        for p in [1, 2, 3] {
            store.append(p, [message(round * 10 + p)]).unwrap();
        }
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let query = Query::new().projects([1, 2, 3]).pcount(2).count(5);
    let run = || -> activitylog::Result<Vec<(u64, u64)>> {
        store
            .query(&query)?
            .map(|m| m.map(|m| (m.project(), m.seq())))
            .collect()
    };
    assert!(refused(without_blocking(run)));
    newest(&store, 1, 1).unwrap();
    newest(&store, 2, 1).unwrap();
    assert!(refused(without_blocking(run)), "project 3 is not open");
    newest(&store, 3, 1).unwrap();
    let got = without_blocking(run).unwrap().unwrap();
    assert_eq!(got, run().unwrap());
    assert_eq!(got.len(), 5);
}

#[test]
fn an_iterator_begun_in_memory_reads_on_outside() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments_of_100(dir.path());
    let (first, mut rest) = without_blocking(|| {
        let mut it = store.newest_first(1).unwrap();
        let first = it.next().unwrap().unwrap();
        (first, it)
    })
    .unwrap();
    let mut got = vec![first];
    got.extend(rest.by_ref().map(Result::unwrap));
    assert_eq!(got, read_all(&store, 1));
    assert_eq!(got.len(), 100);
}

#[test]
fn a_read_only_store_reads_through_its_files_and_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path()).unwrap();
    fill(&writer, 1, 10);
    let reader = Options::new().read_only(true).open(dir.path()).unwrap();
    assert_eq!(newest(&reader, 1, 5).unwrap().len(), 5);
    assert!(refused(without_blocking(|| newest(&reader, 1, 5))));
}

#[test]
fn a_query_over_every_project_before_their_stamps_are_known_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for p in 1..=3 {
        fill(&store, p, 3);
    }
    drop(store);
    // Without the stamps a clean close leaves, the first such query opens every project.
    std::fs::remove_file(dir.path().join("NEWEST")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let count = || store.query(&Query::new().count(4)).map(|m| m.count());
    assert!(refused(without_blocking(count)));
    assert_eq!(count().unwrap(), 4);
    assert_eq!(without_blocking(count).unwrap().unwrap(), 4);
}

#[test]
fn a_read_longer_than_the_budget_is_refused_even_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // 100 projects of 60 messages, each in its tail copy: 1.3 MB in memory in all.
    for p in 0..100 {
        fill(&store, p, 60);
    }
    assert_eq!(
        without_blocking(|| newest(&store, 0, 60))
            .unwrap()
            .unwrap()
            .len(),
        60
    );
    let few = || store.query(&Query::new().pcount(1)).map(|m| m.count());
    assert_eq!(without_blocking(few).unwrap().unwrap(), 100);
    let all = || store.query(&Query::new()).map(|m| m.count());
    assert!(refused(without_blocking(all)));
    assert_eq!(all().unwrap(), 6000);
}

#[test]
fn calls_that_read_files_are_refused_and_appends_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 1, 3);
    assert!(refused(without_blocking(|| store.stats(1))));
    assert!(refused(without_blocking(|| store.projects())));
    let appended = without_blocking(|| store.append(2, [message(0)])).unwrap();
    assert_eq!(appended.unwrap().first_seq, 1);
}

/// An iterator begun outside the scope and reading a sealed segment's map goes on through that
/// map inside it (the documented exception: checking every message read through a map cost a
/// scan 5%), and is refused at the next segment, which it would have to open.
#[test]
fn an_iterator_begun_outside_reads_on_through_its_map_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments_of_100(dir.path());
    let mut it = store.newest_first(1).unwrap();
    let mut seqs: Vec<u64> = Vec::new();
    // Into a sealed segment, where blocking is fine.
    while seqs.len() < 50 {
        seqs.push(it.next().unwrap().unwrap().seq());
    }
    let mut inside = Vec::new();
    let out = without_blocking(|| {
        while let Some(Ok(m)) = it.next() {
            inside.push(m.seq());
        }
    });
    assert!(refused(out));
    assert!(it.next().is_none(), "the refused read ended the iterator");
    // The rest of the segment it was in, and nothing of the one before.
    assert_eq!(inside.first(), Some(&50), "{inside:?}");
    assert!(inside.windows(2).all(|w| w[1] + 1 == w[0]), "{inside:?}");
    assert!(inside.len() < 50, "{inside:?}");
}

#[test]
fn writes_that_look_their_project_up_run_inside_the_scope_as_outside() {
    let dir = tempfile::tempdir().unwrap();
    drop(small_segments_of_100(dir.path()));
    // Reopened before each write: project 1 is not open, and the write looks it up first.
    let reopen = || {
        Options::new()
            .segment_bytes(SMALL_SEGMENT_BYTES)
            .open(dir.path())
            .unwrap()
    };
    let store = reopen();
    let none: [&str; 0] = [];
    let appended = without_blocking(|| store.append(1, none));
    assert_eq!(appended.unwrap().unwrap().first_seq, 101, "an empty append");
    drop(store);
    let store = reopen();
    let imported = without_blocking(|| {
        store.import_json_lines(
            b"{\"a\":1}\n",
            activitylog::ImportTarget::Project(1),
            activitylog::Durability::Written,
        )
    });
    assert_eq!(imported.unwrap().unwrap().messages(), 1, "an import");
    drop(store);
    let store = reopen();
    let retention = activitylog::Retention::new().max_messages(10);
    let retained = without_blocking(|| store.apply_retention(&retention));
    assert!(retained.unwrap().unwrap().segments > 0, "retention");
}
