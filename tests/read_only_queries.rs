//! Merged queries of a read-only store beside a writer: a query never leaves out a message the
//! same store has already read back through [`Store::newest_first`], though the newest stamps it
//! ranks projects by were loaded from `NEWEST` when it opened, before the writer appended.

mod common;

use activitylog::{Query, Store};
use common::open_read_only;

/// The JSON of what `query` yields, errors as their sentences.
fn answer(store: &Store, query: &Query) -> Vec<String> {
    store
        .query(query)
        .unwrap()
        .map(|m| match m {
            Ok(m) => format!("{} {}", m.project(), m.json()),
            Err(e) => format!("error: {e}"),
        })
        .collect()
}

/// The newest message of `project`, as `answer` writes it.
fn newest(store: &Store, project: u64) -> String {
    let m = store
        .newest_first(project)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    format!("{project} {}", m.json())
}

#[test]
fn a_read_only_query_includes_what_the_store_has_read_since_newest_was_loaded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append(1, [r#"{"n":1}"#]).unwrap();
        store.append(2, [r#"{"n":1}"#]).unwrap();
        // A query over all projects learns every newest stamp; a clean close then keeps them.
        assert_eq!(store.query(&Query::new()).unwrap().count(), 2);
    }
    assert!(
        dir.path().join("NEWEST").exists(),
        "a clean close leaves it"
    );
    let reader = open_read_only(dir.path());
    let writer = Store::open(dir.path()).unwrap();
    writer.append(1, [r#"{"n":2}"#]).unwrap();
    writer.append(3, [r#"{"n":1}"#]).unwrap();

    // Projects 1 and 3 are first opened now, and read as they are now.
    assert_eq!(newest(&reader, 1), r#"1 {"n":2}"#);
    assert_eq!(newest(&reader, 3), r#"3 {"n":1}"#);
    assert_eq!(
        answer(&reader, &Query::new().projects([1]).count(1)),
        [r#"1 {"n":2}"#]
    );
    assert_eq!(
        answer(&reader, &Query::new().projects([3])),
        [r#"3 {"n":1}"#]
    );
    assert_eq!(
        answer(&reader, &Query::new().pcount(1)),
        [r#"3 {"n":1}"#, r#"1 {"n":2}"#, r#"2 {"n":1}"#]
    );
    // After a refresh, as the writer has it.
    reader.refresh();
    assert_eq!(
        answer(&reader, &Query::new().pcount(1)),
        answer(&writer, &Query::new().pcount(1))
    );
}

/// `stats` of a read-only store describes the project as the store reads it, though the
/// writer has rolled many segments past it and retention removed the ones it had read.
#[test]
fn read_only_stats_describe_the_snapshot_after_the_writer_moved_on() {
    let dir = tempfile::tempdir().unwrap();
    let writer = common::open_small(dir.path());
    let pad = "x".repeat(1500);
    let mut n = 0;
    let mut append = |count: usize| {
        for _ in 0..count {
            n += 1;
            writer
                .append(1, [format!(r#"{{"n":{n},"pad":"{pad}"}}"#)])
                .unwrap();
        }
    };
    append(10);
    let reader = open_read_only(dir.path());
    let before = reader.stats(1).unwrap().unwrap();
    assert_eq!(before.messages, 10);
    append(30);
    writer
        .apply_retention(&activitylog::Retention::new().max_messages(1))
        .unwrap();
    let after = reader.stats(1).unwrap().unwrap();
    let readable = common::read_all(&reader, 1).len() as u64;
    assert!(after.messages <= before.messages, "{after:?}");
    assert_eq!(after.messages, readable, "{after:?}");
    assert!(after.segments <= before.segments, "{after:?}");
}

/// Once a writer has removed `NEWEST` (before its first write), the map loaded from it is
/// stale: the same query, nothing refreshed, answered without a project's newer messages the
/// first time and with them the second (opening the project during the first raised its
/// stamp too late), and a project made since, which `projects` lists and `newest_first`
/// reads, was in no query at all (an audit).
#[test]
fn a_read_only_query_does_not_trust_newest_once_a_writer_removed_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append(1, [r#"{"n":1}"#]).unwrap();
        store.append(2, [r#"{"n":1}"#]).unwrap();
        assert_eq!(store.query(&Query::new()).unwrap().count(), 2);
    }
    let reader = open_read_only(dir.path());
    let writer = Store::open(dir.path()).unwrap();
    writer.append(1, [r#"{"n":2}"#]).unwrap();
    writer.append(3, [r#"{"n":1}"#]).unwrap();
    let one = Query::new().projects([1]);
    let first = answer(&reader, &one);
    assert_eq!(first, [r#"1 {"n":2}"#, r#"1 {"n":1}"#]);
    assert_eq!(answer(&reader, &one), first);
    assert_eq!(reader.projects().unwrap(), [1, 2, 3]);
    assert_eq!(reader.newest_first(3).unwrap().count(), 1);
    assert_eq!(
        answer(&reader, &Query::new().projects([3])),
        [r#"3 {"n":1}"#]
    );
    let all = answer(&reader, &Query::new());
    assert!(all.contains(&r#"3 {"n":1}"#.to_string()), "{all:?}");
}
