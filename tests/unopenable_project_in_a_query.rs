//! A project whose segment does not open (a damaged header) is reported by every query that
//! reads it, before any message, and the other projects still merge after it: one damaged
//! project neither hides the rest nor is left out silently.

use std::fs;
use std::path::Path;

use activitylog::{Query, Store};

/// Projects 1 and 2 with two messages each, then the header of project 1's log damaged.
/// A store made anew knows every project's newest stamp from its start, and its clean close
/// saves them (`NEWEST`); without `save_stamps` they are removed, as a crash would leave them,
/// and the next store learns them anew.
fn store_with_a_damaged_project(dir: &Path, save_stamps: bool) {
    let store = Store::open(dir).unwrap();
    store
        .append(1, [r#"{"p":1,"i":0}"#, r#"{"p":1,"i":1}"#])
        .unwrap();
    store
        .append(2, [r#"{"p":2,"i":0}"#, r#"{"p":2,"i":1}"#])
        .unwrap();
    drop(store);
    if !save_stamps {
        fs::remove_file(dir.join("NEWEST")).unwrap();
    }
    let log = dir.join("projects/1/00000000000000000001.log");
    let mut bytes = fs::read(&log).unwrap();
    bytes[20] ^= 0x01;
    fs::write(&log, bytes).unwrap();
}

/// The query's items: an error's text, or a message's JSON.
fn items(store: &Store, query: &Query) -> Vec<Result<String, String>> {
    store
        .query(query)
        .expect("the query starts")
        .map(|m| m.map(|m| m.into_json()).map_err(|e| e.to_string()))
        .collect()
}

fn check(save_stamps: bool, query: &Query) {
    let dir = tempfile::tempdir().unwrap();
    store_with_a_damaged_project(dir.path(), save_stamps);
    let store = Store::open(dir.path()).unwrap();
    // Asked twice: the second query reports it again.
    for _ in 0..2 {
        let got = items(&store, query);
        let errors: Vec<_> = got.iter().filter_map(|i| i.as_ref().err()).collect();
        assert_eq!(errors.len(), 1, "{got:?}");
        assert!(errors[0].contains("projects/1/"), "{}", errors[0]);
        let messages: Vec<_> = got.iter().filter_map(|i| i.as_ref().ok()).collect();
        assert_eq!(messages, [r#"{"p":2,"i":1}"#, r#"{"p":2,"i":0}"#]);
        // A project whose newest stamp is known is opened, and fails, in its place (after
        // project 2's messages, appended later); one whose stamp could not be learned, first.
        let at = got.iter().position(Result::is_err);
        assert_eq!(at, Some(if save_stamps { 2 } else { 0 }), "{got:?}");
    }
}

#[test]
fn a_few_projects_named() {
    check(false, &Query::new().projects([1, 2]));
}

#[test]
fn all_projects_with_stamps_to_learn() {
    check(false, &Query::new());
}

#[test]
fn all_projects_with_saved_stamps() {
    check(true, &Query::new());
}

#[test]
fn many_projects_named() {
    // More than a few: the stamps come from the map of all projects.
    check(false, &Query::new().projects(0..100));
}

/// A query naming many projects (whose stamps come from the map of all projects), none of them
/// the damaged one, reports nothing of it: an unopenable project fails only the queries that
/// read it.
#[test]
fn many_projects_named_without_the_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    store_with_a_damaged_project(dir.path(), false);
    let store = Store::open(dir.path()).unwrap();
    for _ in 0..2 {
        assert_eq!(
            items(&store, &Query::new().projects(2..100)),
            [
                Ok(r#"{"p":2,"i":1}"#.to_string()),
                Ok(r#"{"p":2,"i":0}"#.to_string())
            ]
        );
    }
}
