//! A torn or garbage tail of the active segment is cut back to the last whole batch on open:
//! cut at every byte of the last records, zeros or random bytes appended, or the tail of the file
//! overwritten with zeros or garbage. Each time exactly the good prefix of whole batches is there,
//! new appends work, and they survive another reopen.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use activitylog::{Message, Store};
use common::{
    copy_dir, frames, open_read_only, open_small, read_all, scratch, segments, Frame, Rng,
};

const P: u64 = 7;

/// A closed store whose project `P` has a few sealed segments and an active one ending with a
/// batch of 2, a single message and a batch of 3.
struct Fixture {
    dir: tempfile::TempDir,
    /// First seq of the active segment.
    active: u64,
    /// The active log, undamaged.
    log: Vec<u8>,
    frames: Vec<Frame>,
    /// Every message, newest first.
    all: Vec<Message>,
    /// File offset where the last three batches start.
    tail_start: usize,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = scratch();
        let store = open_small(dir.path());
        let mut n = 0u64;
        let mut append = |count: u64, pad: usize| {
            let batch: Vec<String> = (0..count)
                .map(|_| {
                    n += 1;
                    common::hinted(n, pad)
                })
                .collect();
            store.append(P, &batch).unwrap();
        };
        // Fill until a third segment has just been started by a filler batch.
        while segments(dir.path(), P).len() < 3 {
            append(2, 150);
        }
        let active = *segments(dir.path(), P).last().unwrap();
        append(2, 20);
        append(1, 45);
        append(3, 30);
        assert_eq!(
            *segments(dir.path(), P).last().unwrap(),
            active,
            "no roll in the tail"
        );
        let all = read_all(&store, P);
        drop(store);

        let log = fs::read(common::log_path(dir.path(), P, active)).unwrap();
        let frames = frames(&log);
        let batches = common::batches(&frames);
        let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
        assert_eq!(sizes[sizes.len() - 3..], [2, 1, 3]);
        let tail_start = frames[batches[batches.len() - 3].start].start;
        Fixture {
            dir,
            active,
            log,
            frames,
            all,
            tail_start,
        }
    }

    fn active_log(&self, dir: &Path) -> PathBuf {
        common::log_path(dir, P, self.active)
    }

    /// The messages that must survive when only the first `len` bytes of the active log are
    /// good: every message up to the end of the last whole batch in those bytes. Returns them
    /// (newest first) with the log's length once repaired and how many of the active log's
    /// records they hold.
    fn good_prefix(&self, len: usize) -> (Vec<Message>, usize, usize) {
        let mut kept_end = common::LOG_HEADER_BYTES;
        let mut kept_records = 0;
        for (i, f) in self.frames.iter().enumerate() {
            if f.end > len {
                break;
            }
            if !f.continues {
                kept_end = f.end;
                kept_records = i + 1;
            }
        }
        let last_seq = self.active + kept_records as u64 - 1;
        let msgs = self
            .all
            .iter()
            .filter(|m| m.seq() <= last_seq)
            .cloned()
            .collect();
        (msgs, kept_end, kept_records)
    }

    /// Whether `cut` falls exactly between two records of one batch.
    fn between_records_of_a_batch(&self, cut: usize) -> bool {
        self.frames.iter().any(|f| f.end == cut && f.continues)
    }

    /// Copies the store, damages the copy's active log with `damage`, and checks that reopening
    /// finds exactly the good prefix of the first `good_len` bytes, cuts the rest, accepts new
    /// appends, and keeps them across another reopen. As a crash would leave it: no clean-close
    /// marker, and the index without entries past the good prefix (entries are written only
    /// for synced records, which no crash tears; damage to records the index vouches for is
    /// reported, not cut).
    fn check(&self, what: &str, good_len: usize, damage: impl FnOnce(&Path)) {
        let copy = scratch();
        copy_dir(self.dir.path(), copy.path());
        let log = self.active_log(copy.path());
        damage(&log);
        let damaged_len = fs::metadata(&log).unwrap().len();
        let (want, repaired_len, kept_records) = self.good_prefix(good_len);
        let _ = fs::remove_file(copy.path().join("CLEAN"));
        let idx = common::idx_path(copy.path(), P, self.active);
        let entries = fs::read(&idx).unwrap();
        fs::write(
            &idx,
            &entries[..common::INDEX_HEADER_BYTES + 4 * kept_records],
        )
        .unwrap();

        // A read-only open sees the same prefix and leaves the file alone.
        {
            let ro = open_read_only(copy.path());
            assert_same(&read_all(&ro, P), &want, &format!("{what}: read-only"));
        }
        assert_eq!(
            fs::metadata(&log).unwrap().len(),
            damaged_len,
            "{what}: read-only wrote"
        );

        let store = Store::open(copy.path()).unwrap();
        assert_same(
            &read_all(&store, P),
            &want,
            &format!("{what}: the good prefix"),
        );
        assert_eq!(
            fs::metadata(&log).unwrap().len(),
            repaired_len as u64,
            "{what}: the torn tail is cut"
        );
        let next = want.first().map_or(1, |m| m.seq() + 1);
        assert_eq!(store.newest_first(P).unwrap().next_seq(), next, "{what}");
        let new = [r#"{"after":"repair","k":1}"#, r#"{"after":"repair","k":2}"#];
        let a = store.append(P, new).unwrap();
        assert_eq!(
            a.first_seq, next,
            "{what}: seqs continue from the good prefix"
        );
        assert!(
            a.stamp > self.all[0].stamp(),
            "{what}: stamps keep increasing"
        );
        drop(store);

        let store = Store::open(copy.path()).unwrap();
        let got = read_all(&store, P);
        assert_eq!(got.len(), want.len() + 2, "{what}: after another reopen");
        assert_eq!(got[0].json(), new[1], "{what}");
        assert_eq!(got[1].json(), new[0], "{what}");
        assert_eq!((got[0].seq(), got[1].seq()), (next + 1, next), "{what}");
        assert_same(
            &got[2..],
            &want,
            &format!("{what}: the good prefix after another reopen"),
        );
    }
}

/// Compares two newest-first lists, seqs first so that a failure reads well.
fn assert_same(got: &[Message], want: &[Message], what: &str) {
    let seqs = |m: &[Message]| m.iter().map(Message::seq).collect::<Vec<_>>();
    assert_eq!(seqs(got), seqs(want), "{what}: seqs");
    assert!(got == want, "{what}: contents differ");
}

fn truncate(path: &Path, len: usize) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len as u64)
        .unwrap();
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut data = fs::read(path).unwrap();
    data.extend_from_slice(bytes);
    fs::write(path, data).unwrap();
}

fn overwrite_from(path: &Path, at: usize, fill: impl Fn(usize, u8) -> u8) {
    let mut data = fs::read(path).unwrap();
    for (i, b) in data[at..].iter_mut().enumerate() {
        *b = fill(i, *b);
    }
    fs::write(path, data).unwrap();
}

#[test]
fn cut_at_every_byte_of_the_last_batches() {
    let fx = Fixture::new();
    for cut in fx.tail_start..=fx.log.len() {
        fx.check(&format!("cut at {cut}"), cut, |log| truncate(log, cut));
    }
}

/// A write torn exactly at a record boundary inside a batch (e.g. on a page boundary) leaves the
/// index pointing at the cut (dropped) and at the batch's earlier records (trusted). Recovery
/// rescans only from the last trusted entry, so it misses that the batch began before it.
#[test]
fn a_cut_between_records_of_one_batch_drops_the_whole_batch() {
    let fx = Fixture::new();
    let cuts: Vec<usize> = (fx.tail_start..fx.log.len())
        .filter(|&cut| fx.between_records_of_a_batch(cut))
        .collect();
    assert_eq!(cuts.len(), 3, "inside the batches of 2 and 3");
    for cut in cuts {
        fx.check(&format!("cut at {cut}"), cut, |log| truncate(log, cut));
    }
}

#[test]
fn cut_back_to_an_empty_active_segment() {
    let fx = Fixture::new();
    let header = common::LOG_HEADER_BYTES;
    fx.check("cut to the header", header, |log| truncate(log, header));
    fx.check("cut inside the first record", header + 5, |log| {
        truncate(log, header + 5)
    });
}

#[test]
fn zeros_appended_to_the_log_are_cut() {
    let fx = Fixture::new();
    let end = fx.log.len();
    for n in [1, 3, 4, 19, 20, 21, 100, 4096] {
        fx.check(&format!("{n} zeros appended"), end, |log| {
            append_bytes(log, &vec![0; n])
        });
    }
}

#[test]
fn random_bytes_appended_to_the_log_are_cut() {
    let fx = Fixture::new();
    let end = fx.log.len();
    let mut rng = Rng::new(1);
    for round in 0..40 {
        let n = 1 + rng.below(3000) as usize;
        let garbage = rng.bytes(n);
        fx.check(
            &format!("round {round}: {n} random bytes appended"),
            end,
            |log| append_bytes(log, &garbage),
        );
    }
}

/// The file's new size reached the disk but its last data did not: the tail reads as zeros.
#[test]
fn a_tail_overwritten_with_zeros_at_every_byte_is_cut() {
    let fx = Fixture::new();
    let len = fx.log.len();
    for at in fx.tail_start..len {
        // Bytes that were zero already are not damage: the good part ends at the first change.
        let changed = (at..len).find(|&i| fx.log[i] != 0).unwrap_or(len);
        fx.check(&format!("zeros from {at}"), changed, |log| {
            overwrite_from(log, at, |_, _| 0)
        });
    }
}

/// As above, but the lost tail holds whatever garbage the disk had there.
#[test]
fn a_tail_overwritten_with_garbage_at_every_byte_is_cut() {
    let fx = Fixture::new();
    // XOR with a non-zero byte: every byte from `at` on really changes.
    let garbage: Vec<u8> = Rng::new(2)
        .bytes(fx.log.len())
        .into_iter()
        .map(|b| b | 1)
        .collect();
    for at in fx.tail_start..fx.log.len() {
        fx.check(&format!("garbage from {at}"), at, |log| {
            overwrite_from(log, at, |i, old| old ^ garbage[i])
        });
    }
}

/// A crash that left the active segment with nothing but its header (its records never
/// reached the disk): the project's newest stamp is that of its newest message, in the sealed
/// segment before, not the empty segment's base stamp (the stamp of records that are not
/// there), whether the store reports it (`stats`) or an empty batch answers it.
#[test]
fn an_empty_active_segment_does_not_lend_its_base_stamp_to_the_newest_message() {
    let fx = Fixture::new();
    let copy = scratch();
    copy_dir(fx.dir.path(), copy.path());
    truncate(&fx.active_log(copy.path()), common::LOG_HEADER_BYTES);
    truncate(
        &common::idx_path(copy.path(), P, fx.active),
        common::INDEX_HEADER_BYTES,
    );
    let _ = fs::remove_file(copy.path().join("CLEAN"));
    let newest = fx
        .all
        .iter()
        .find(|m| m.seq() < fx.active)
        .expect("messages in the sealed segments")
        .stamp();
    for read_only in [true, false] {
        let store = if read_only {
            open_read_only(copy.path())
        } else {
            Store::open(copy.path()).unwrap()
        };
        assert_eq!(read_all(&store, P)[0].stamp(), newest);
        let stats = store.stats(P).unwrap().unwrap();
        assert_eq!(stats.newest_stamp, Some(newest), "read-only {read_only}");
        if !read_only {
            let none: [&str; 0] = [];
            assert_eq!(store.append(P, none).unwrap().stamp, newest);
        }
    }
}
