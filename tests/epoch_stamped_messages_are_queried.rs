//! A message imported with `"_ts": 0` has stamp 0, the same as the newest stamp of a project
//! with no messages: queries must still return it, whichever way they learn the projects'
//! newest stamps (a snapshot of each of a few projects, or the store's map of all of them).

use activitylog::{Durability, ImportTarget, Query, Store};

fn imported_at_the_epoch() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .import_json_lines(
            b"{\"_ts\":0,\"a\":1}\n{\"_ts\":0,\"a\":2}",
            ImportTarget::Project(5),
            Durability::Written,
        )
        .unwrap();
    (dir, store)
}

fn seqs(store: &Store, query: &Query) -> Vec<(u64, u64, u64)> {
    store
        .query(query)
        .unwrap()
        .map(|m| m.map(|m| (m.project(), m.seq(), m.stamp())))
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_few_projects_read_from_snapshots() {
    let (_dir, store) = imported_at_the_epoch();
    assert_eq!(
        seqs(&store, &Query::new().projects([5])),
        [(5, 2, 0), (5, 1, 0)]
    );
}

#[test]
fn all_projects_read_from_the_newest_stamp_map() {
    let (_dir, store) = imported_at_the_epoch();
    store.append(6, [r#"{"b":1}"#]).unwrap();
    let got = seqs(&store, &Query::new());
    let order: Vec<(u64, u64)> = got.iter().map(|&(p, s, _)| (p, s)).collect();
    assert_eq!(order, [(6, 1), (5, 2), (5, 1)]);
}
