//! A `CLOCK` file whose reservation (checksum intact) is past the last stamp a segment can
//! start at: stamps used to saturate there, and an append was acknowledged (even at `Sync`)
//! into a segment whose header then did not open again. Now a writable open refuses the store,
//! naming the file; nothing is written, and a read-only open reads on.

use activitylog::{Durability, Error, Options, Store};

#[test]
fn a_clock_past_the_last_stamp_is_refused_before_anything_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append(1, [r#"{"a":1}"#]).unwrap();
    }
    let clock = dir.path().join("CLOCK");
    let version = std::fs::read(&clock).unwrap()[8..12].to_vec();
    let reserved: u64 = u64::MAX - 1000;
    let mut bytes = b"ALOGCLCK".to_vec();
    bytes.extend_from_slice(&version);
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&reserved.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&reserved.to_le_bytes()).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    std::fs::write(&clock, &bytes).unwrap();
    let before: Vec<_> = walk(dir.path());

    match Store::open(dir.path()) {
        Err(Error::Corrupt { path, offset, .. }) => {
            assert_eq!(path, clock);
            assert_eq!(offset, 16);
        }
        other => panic!("a clock past the last stamp opens: {other:?}"),
    }
    assert_eq!(walk(dir.path()), before, "a refused open changes nothing");

    let store = Options::new().read_only(true).open(dir.path()).unwrap();
    let read: Vec<_> = store.newest_first(1).unwrap().map(|m| m.unwrap()).collect();
    assert_eq!(read.len(), 1);
    assert!(matches!(
        store.append_with(1, [r#"{"b":2}"#], Durability::Sync),
        Err(Error::ReadOnly)
    ));
}

/// Every file under `dir` with its bytes.
fn walk(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}
