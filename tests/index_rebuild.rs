//! The index is a cache of the log: deleted, cut mid-entry, non-monotonic, longer than its log,
//! stale or with a damaged header — for a sealed segment and for the active one — reopening
//! rebuilds it and answers exactly as before, read-only or writable, and a writable open puts the
//! exact index back on disk.

mod common;

use std::fs;
use std::path::Path;

use activitylog::{Message, Store};
use common::{
    copy_dir, expected_index, frames_of, idx_path, open_read_only, open_small, read_all, scratch,
    segments, INDEX_HEADER_BYTES,
};

const P: u64 = 3;

/// A closed store with project `P` over several segments, the active one holding several
/// records, the last of them long.
struct Fixture {
    dir: tempfile::TempDir,
    all: Vec<Message>,
    sealed: u64,
    active: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = scratch();
        let store = open_small(dir.path());
        let mut n = 0u64;
        let mut next = |pad: usize| {
            n += 1;
            common::hinted(n, pad)
        };
        let mut round = 0usize;
        while segments(dir.path(), P).len() < 4 {
            round += 1;
            let batch: Vec<String> = (0..1 + round % 4).map(|k| next(40 + k * 30)).collect();
            store.append(P, &batch).unwrap();
        }
        for size in [2, 1, 3] {
            let batch: Vec<String> = (0..size).map(|_| next(30)).collect();
            store.append(P, &batch).unwrap();
        }
        store.append(P, [next(120)]).unwrap();
        let all = read_all(&store, P);
        drop(store);
        let segs = segments(dir.path(), P);
        assert_eq!(segs.len(), 4, "no roll while finishing the fixture");
        assert!(frames_of(dir.path(), P, segs[3]).len() >= 6);
        Fixture {
            dir,
            all,
            sealed: segs[1],
            active: segs[3],
        }
    }
}

/// Ways to damage an index file.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Deleted,
    /// Cut in the middle of its third entry.
    CutMidEntry,
    /// Cut to its header alone.
    HeaderOnly,
    /// Cut to an empty file.
    Empty,
    /// Entries 1 and 2 swapped.
    NonMonotonic,
    /// Missing its last two entries, as if written before the last appends.
    Stale,
    /// Extra entries pointing past the end of the log.
    PastTheEnd,
    /// One extra entry pointing inside the last record.
    ExtraInsideLastRecord,
    /// The first entry does not point at the first record.
    WrongFirst,
    BadMagic,
    UnknownVersion,
    /// Every entry zeroed.
    Zeroed,
    /// The whole file replaced by garbage.
    Garbage,
    /// Zeros after its entries to 64 GiB (a sparse file): more than memory holds, were it
    /// read whole.
    Huge,
}

const ALL_DAMAGE: [Damage; 14] = [
    Damage::Deleted,
    Damage::CutMidEntry,
    Damage::HeaderOnly,
    Damage::Empty,
    Damage::NonMonotonic,
    Damage::Stale,
    Damage::PastTheEnd,
    Damage::ExtraInsideLastRecord,
    Damage::WrongFirst,
    Damage::BadMagic,
    Damage::UnknownVersion,
    Damage::Zeroed,
    Damage::Garbage,
    Damage::Huge,
];

fn entry_at(i: usize) -> usize {
    INDEX_HEADER_BYTES + 4 * i
}

fn apply(damage: Damage, idx: &Path, log_len: usize) {
    let mut bytes = fs::read(idx).unwrap();
    let n = (bytes.len() - INDEX_HEADER_BYTES) / 4;
    assert!(n >= 4, "the fixture's segments hold several records");
    let entry = |b: &[u8], i: usize| {
        u32::from_le_bytes(b[entry_at(i)..entry_at(i) + 4].try_into().unwrap())
    };
    match damage {
        Damage::Deleted => {
            fs::remove_file(idx).unwrap();
            return;
        }
        Damage::Huge => {
            let file = fs::OpenOptions::new().write(true).open(idx).unwrap();
            file.set_len(64 << 30).unwrap();
            return;
        }
        Damage::CutMidEntry => bytes.truncate(entry_at(2) + 2),
        Damage::HeaderOnly => bytes.truncate(INDEX_HEADER_BYTES),
        Damage::Empty => bytes.clear(),
        Damage::NonMonotonic => {
            let (a, b) = (entry_at(1), entry_at(2));
            let tmp: [u8; 4] = bytes[a..a + 4].try_into().unwrap();
            bytes.copy_within(b..b + 4, a);
            bytes[b..b + 4].copy_from_slice(&tmp);
        }
        Damage::Stale => bytes.truncate(entry_at(n - 2)),
        Damage::PastTheEnd => {
            for extra in [log_len as u32, log_len as u32 + 100, log_len as u32 + 5000] {
                bytes.extend_from_slice(&extra.to_le_bytes());
            }
        }
        Damage::ExtraInsideLastRecord => {
            let last = entry(&bytes, n - 1);
            assert!(
                last as usize + 2 * 24 < log_len,
                "the last record is long enough"
            );
            bytes.extend_from_slice(&(last + 24).to_le_bytes());
        }
        Damage::WrongFirst => bytes[entry_at(0)] ^= 0x01,
        Damage::BadMagic => bytes[0] ^= 0x20,
        Damage::UnknownVersion => bytes[8] = 2,
        Damage::Zeroed => bytes[INDEX_HEADER_BYTES..].fill(0),
        Damage::Garbage => bytes = common::Rng::new(n as u64).bytes(bytes.len()),
    }
    fs::write(idx, bytes).unwrap();
}

/// Compares two newest-first lists, seqs first so that a failure reads well.
fn assert_same(got: &[Message], want: &[Message], what: &str) {
    let seqs = |m: &[Message]| m.iter().map(Message::seq).collect::<Vec<_>>();
    assert_eq!(seqs(got), seqs(want), "{what}: seqs");
    assert!(got == want, "{what}: contents differ");
}

/// An index file's length and first 64 KiB, if it is there (a huge one is not read whole).
fn fingerprint(idx: &Path) -> Option<(u64, Vec<u8>)> {
    use std::io::Read;
    let file = fs::File::open(idx).ok()?;
    let len = file.metadata().unwrap().len();
    let mut head = Vec::new();
    file.take(64 << 10).read_to_end(&mut head).unwrap();
    Some((len, head))
}

fn check(fx: &Fixture, first_seq: u64, damage: Damage) {
    let what = format!("{damage:?} index of segment {first_seq}");
    let copy = scratch();
    copy_dir(fx.dir.path(), copy.path());
    let idx = idx_path(copy.path(), P, first_seq);
    let log_len = fs::metadata(common::log_path(copy.path(), P, first_seq))
        .unwrap()
        .len() as usize;
    apply(damage, &idx, log_len);
    let damaged = fingerprint(&idx);

    // Read-only: the same answers, rebuilt in memory; the file is left alone.
    {
        let ro = open_read_only(copy.path());
        assert_same(&read_all(&ro, P), &fx.all, &format!("{what}, read-only"));
        // Paging goes through the index: check a few pages too.
        for before in [2, first_seq, first_seq + 1, first_seq + 3] {
            let got: Vec<u64> = ro
                .newest_first(P)
                .unwrap()
                .before(before)
                .take(3)
                .map(|m| m.unwrap().seq())
                .collect();
            let want: Vec<u64> = (1..before).rev().take(3).collect();
            assert_eq!(got, want, "{what}, read-only, before({before})");
        }
    }
    assert_eq!(
        fingerprint(&idx),
        damaged,
        "{what}: a read-only open wrote the index"
    );

    // Writable: the same answers, and the exact index back on disk.
    let store = Store::open(copy.path()).unwrap();
    assert_same(&read_all(&store, P), &fx.all, &format!("{what}, writable"));
    let a = store.append(P, [r#"{"after":"rebuild"}"#]).unwrap();
    assert_eq!(a.first_seq, fx.all[0].seq() + 1, "{what}");
    drop(store);
    let frames = frames_of(copy.path(), P, first_seq);
    assert_eq!(
        fs::read(&idx).unwrap(),
        expected_index(&frames),
        "{what}: the index on disk after a writable open"
    );

    let store = Store::open(copy.path()).unwrap();
    let got = read_all(&store, P);
    assert_eq!(got[0].json(), r#"{"after":"rebuild"}"#, "{what}");
    assert_same(&got[1..], &fx.all, &format!("{what}, reopened"));
}

#[test]
fn a_damaged_sealed_index_is_rebuilt() {
    let fx = Fixture::new();
    for damage in ALL_DAMAGE {
        check(&fx, fx.sealed, damage);
    }
}

#[test]
fn a_damaged_active_index_is_rebuilt() {
    let fx = Fixture::new();
    for damage in ALL_DAMAGE {
        check(&fx, fx.active, damage);
    }
}

#[test]
fn every_index_deleted_at_once_is_rebuilt() {
    let fx = Fixture::new();
    let copy = scratch();
    copy_dir(fx.dir.path(), copy.path());
    for first_seq in segments(copy.path(), P) {
        fs::remove_file(idx_path(copy.path(), P, first_seq)).unwrap();
    }
    assert_same(
        &read_all(&open_read_only(copy.path()), P),
        &fx.all,
        "read-only",
    );
    assert_same(
        &read_all(&Store::open(copy.path()).unwrap(), P),
        &fx.all,
        "writable",
    );
    for first_seq in segments(copy.path(), P) {
        let frames = frames_of(copy.path(), P, first_seq);
        assert_eq!(
            fs::read(idx_path(copy.path(), P, first_seq)).unwrap(),
            expected_index(&frames),
            "segment {first_seq}"
        );
    }
}

/// An entry moved to a wrong offset that still passes the structural checks (increasing, inside
/// the log) cannot be told from a good one without reading the record. Reading it must then fail
/// as corruption, never return the wrong bytes as a message.
#[test]
fn a_plausible_wrong_entry_never_yields_wrong_data() {
    let fx = Fixture::new();
    for first_seq in [fx.sealed, fx.active] {
        for shift in [1u32, 4, 16] {
            let copy = scratch();
            copy_dir(fx.dir.path(), copy.path());
            let idx = idx_path(copy.path(), P, first_seq);
            let mut bytes = fs::read(&idx).unwrap();
            let at = entry_at(1);
            let e = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) + shift;
            bytes[at..at + 4].copy_from_slice(&e.to_le_bytes());
            fs::write(&idx, bytes).unwrap();

            let store = Store::open(copy.path()).unwrap();
            let mut errors = 0;
            for item in store.newest_first(P).unwrap() {
                match item {
                    Ok(m) => {
                        let want = fx.all.iter().find(|w| w.seq() == m.seq()).unwrap();
                        assert_eq!(&m, want, "segment {first_seq}, shift {shift}");
                    }
                    Err(e) => {
                        assert!(e.is_corruption(), "{e}");
                        errors += 1;
                    }
                }
            }
            assert!(
                errors <= 1,
                "segment {first_seq}, shift {shift}: {errors} errors"
            );
        }
    }
}
