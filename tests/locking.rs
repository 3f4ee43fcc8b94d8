//! One writer at a time: a second writable open gets `Error::Locked`, which says so; the lock is
//! released when the last clone of the store is dropped. A read-only open works beside the writer
//! and sees its new appends after `refresh()`; it cannot append, and refuses a directory that
//! holds no store.

mod common;

use activitylog::{Error, Options, Store};
use common::{open_read_only, open_small, read_all, segments};

#[test]
fn a_second_writer_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    first.append(1, [r#"{"a":1}"#]).unwrap();

    let err = Store::open(dir.path()).unwrap_err();
    match &err {
        Error::Locked { dir: d } => assert_eq!(d, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("locked"), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(!err.is_corruption());
    // Through the builder too, whatever the options.
    let err = Options::new()
        .segment_bytes(8192)
        .open(dir.path())
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");

    // A clone keeps the lock after the original is dropped.
    let clone = first.clone();
    drop(first);
    assert!(matches!(Store::open(dir.path()), Err(Error::Locked { .. })));
    clone.append(1, [r#"{"a":2}"#]).unwrap();
    drop(clone);

    let second = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&second, 1).len(), 2);
    second.append(1, [r#"{"a":3}"#]).unwrap();
}

#[test]
fn a_read_only_open_works_beside_a_writer_and_sees_new_appends_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open_small(dir.path());
    writer
        .append(1, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#])
        .unwrap();

    let reader = open_read_only(dir.path());
    assert!(reader.is_read_only());
    assert!(!writer.is_read_only());
    assert_eq!(reader.segment_bytes(), writer.segment_bytes());
    assert_eq!(read_all(&reader, 1), read_all(&writer, 1));
    // A second reader beside the first is fine too.
    let reader2 = open_read_only(dir.path());
    assert_eq!(read_all(&reader2, 1).len(), 3);

    // New appends, enough to roll segments several times, and a new project.
    let mut n = 3u64;
    while segments(dir.path(), 1).len() < 4 {
        let batch: Vec<String> = (0..3)
            .map(|_| {
                n += 1;
                common::hinted(n, 200)
            })
            .collect();
        writer.append(1, &batch).unwrap();
    }
    writer.append(2, [r#"{"project":2}"#]).unwrap();

    // Iterators made before the refresh keep their snapshot.
    let old = reader.newest_first(1).unwrap();
    assert_eq!(old.next_seq(), 4);
    reader.refresh();
    assert_eq!(read_all(&reader, 1), read_all(&writer, 1));
    assert_eq!(read_all(&reader, 1).len() as u64, n);
    assert_eq!(read_all(&reader, 2), read_all(&writer, 2));
    assert_eq!(reader.projects().unwrap(), [1, 2]);
    assert_eq!(old.count(), 3);

    // Again, after more appends to the now-active segment.
    writer.append(1, [r#"{"last":true}"#]).unwrap();
    reader.refresh();
    let got = read_all(&reader, 1);
    assert_eq!(got[0].json(), r#"{"last":true}"#);
    assert_eq!(got, read_all(&writer, 1));

    // Writes through a read-only store are refused and change nothing.
    let err = reader.append(1, [r#"{"nope":1}"#]).unwrap_err();
    assert!(matches!(err, Error::ReadOnly), "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(matches!(
        reader.append(3, [r#"{"nope":1}"#]),
        Err(Error::ReadOnly)
    ));
    assert!(!common::project_dir(dir.path(), 3).exists());
    assert_eq!(read_all(&writer, 1), got);
    // `refresh` on a writable store is a no-op.
    writer.refresh();
    assert_eq!(read_all(&writer, 1), got);
}

#[test]
fn read_only_opens_need_an_existing_store() {
    let dir = tempfile::tempdir().unwrap();
    let err = Options::new().read_only(true).open(dir.path()).unwrap_err();
    match &err {
        Error::NotAStore { dir: d } => assert_eq!(d, dir.path()),
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert!(
        err.to_string().contains("not an activitylog store"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a read-only open created files"
    );

    let missing = dir.path().join("missing");
    let err = Options::new().read_only(true).open(&missing).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
    assert!(!missing.exists());

    // A read-only open of a store nobody has open works without a writer, too.
    drop(Store::open(dir.path()).unwrap());
    let ro = open_read_only(dir.path());
    assert!(ro.newest_first(1).unwrap().next().is_none());
    assert!(matches!(ro.append(1, [r#"{"a":1}"#]), Err(Error::ReadOnly)));
    // And it does not stop a writer from opening.
    let writer = Store::open(dir.path()).unwrap();
    writer.append(1, [r#"{"a":1}"#]).unwrap();
}

/// An iterator kept after its store is dropped keeps the store open, lock and all (as its docs
/// say): the next writable open gets `Locked` until the iterator is dropped too.
#[test]
fn an_iterator_kept_after_its_store_is_dropped_keeps_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    let reader = store.newest_first(1).unwrap();
    let merged = store.query(&activitylog::Query::new()).unwrap();
    drop(store);
    for held in [Some(reader), None] {
        assert!(matches!(Store::open(dir.path()), Err(Error::Locked { .. })));
        drop(held);
    }
    drop(merged);
    Store::open(dir.path()).unwrap();
}
