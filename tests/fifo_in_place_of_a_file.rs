//! A FIFO in a store's place of one of its files (a log, an index, `CLEAN`, `NEWEST`, `STORE`,
//! `CLOCK`): opening the store, reading every project and verifying it all answer (with an
//! error where the file was needed), instead of waiting for some process to write to the FIFO
//! (an audit found every open of such a file waiting).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use activitylog::Options;
use common::{copy_dir, idx_path, log_path, open_small, segments};

/// Opens the store at `dir` (read-only or writable), reads every project, verifies it; what
/// each step gave, as text.
fn everything(dir: PathBuf, read_only: bool) -> String {
    let mut out = String::new();
    match Options::new().read_only(read_only).open(&dir) {
        Err(e) => out.push_str(&format!("open: {e}; ")),
        Ok(store) => {
            for p in store.projects().unwrap_or_default() {
                let read: activitylog::Result<Vec<activitylog::Message>> =
                    store.newest_first(p).and_then(|it| it.collect());
                out.push_str(&format!("project {p}: {:?}; ", read.map(|m| m.len())));
            }
            drop(store);
        }
    }
    let verified = activitylog::verify(&dir, None, |_| {}, |_| {});
    out.push_str(&format!("verify: {:?}", verified.map(|v| v.problems)));
    out
}

/// Where a file is in a store: its directory, the first sequence numbers of project 1's
/// oldest and newest segments.
type Where = fn(&Path, u64, u64) -> PathBuf;

fn mkfifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn a_fifo_in_place_of_any_file_is_answered_not_waited_on() {
    let fixture = tempfile::tempdir().unwrap();
    {
        let store = open_small(fixture.path());
        for i in 0..200 {
            store
                .append(1, [format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(60))])
                .unwrap();
        }
        store.append(2, [r#"{"p":2}"#]).unwrap();
    }
    let segs = segments(fixture.path(), 1);
    assert!(segs.len() >= 3, "{segs:?}");
    let (sealed, active) = (segs[0], *segs.last().unwrap());
    let targets: Vec<(&str, Where)> = vec![
        ("sealed log", |d, s, _| log_path(d, 1, s)),
        ("sealed index", |d, s, _| idx_path(d, 1, s)),
        ("active log", |d, _, a| log_path(d, 1, a)),
        ("active index", |d, _, a| idx_path(d, 1, a)),
        ("CLEAN", |d, _, _| d.join("CLEAN")),
        ("NEWEST", |d, _, _| d.join("NEWEST")),
        ("STORE", |d, _, _| d.join("STORE")),
        ("CLOCK", |d, _, _| d.join("CLOCK")),
    ];
    for (what, path) in targets {
        for read_only in [true, false] {
            let copy = tempfile::tempdir().unwrap();
            copy_dir(fixture.path(), copy.path());
            let fifo = path(copy.path(), sealed, active);
            mkfifo(&fifo);
            let (tx, rx) = mpsc::channel();
            let dir = copy.path().to_path_buf();
            std::thread::spawn(move || tx.send(everything(dir, read_only)));
            let outcome = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("a FIFO as the {what} (read-only {read_only}) hangs"));
            let said = format!("{what}, read-only {read_only}: {outcome}");
            match what {
                // Caches and markers: taken as damaged, the store reads on.
                "CLEAN" | "NEWEST" | "sealed index" => {
                    assert!(outcome.contains("project 1: Ok(200)"), "{said}")
                }
                "STORE" => assert!(outcome.starts_with("open: "), "{said}"),
                // A writable open starts a new clock, as for an empty file.
                "CLOCK" => assert!(outcome.contains("project 1: Ok(200)"), "{said}"),
                // The project is an error naming the file; the others read.
                _ => {
                    assert!(outcome.contains("not a regular file"), "{said}");
                    assert!(outcome.contains("project 2: Ok(1)"), "{said}");
                }
            }
        }
    }
}
