//! Every byte, every bit: single-bit damage anywhere in a store never brings back a wrong
//! message, never panics, and is either reported by `verify` or harmless.
//!
//! The fixture is a closed store of two projects over five segments (4 KiB each), a few hundred
//! messages of known contents. For each chosen bit of every file in it, a fresh copy gets that
//! one bit flipped, and then:
//!
//! - `activitylog::verify` runs (it may return an error; it must not panic);
//! - the store is opened read-only and then writable (an `Err` is acceptable, a panic is not);
//!   each open reads both projects newest first and answers two merged queries;
//! - every message any of those returns must be byte-identical — payload, seq, stamp and
//!   project — to the message the undamaged store holds at that seq: a wrong payload never
//!   comes back, and a project's newest-first read never repeats or reorders a seq;
//! - either `verify` reported a problem (or refused the store), or the flip was harmless: both
//!   opens worked and every answer equals the undamaged store's, with no errors in it.
//!
//! Two groups of files, each flipped once for its three tests (no panic; no wrong message;
//! reported or harmless): the segment logs and indexes under `projects/`, and the store's own
//! files beside them (`STORE`, `CLOCK`, `NEWEST`, …). Each group prints one summary line on
//! stderr (`cargo test --test every_bit -- --nocapture` shows it) counting the outcomes:
//! *reported* — of those, *repaired* (`verify` is clean again after the writable open),
//! either with every message intact or by cutting messages away (a damaged last record of a
//! newest segment reads as a torn tail) — and *harmless*.
//!
//! Modes, chosen by the `EVERY_BIT` environment variable:
//! - unset (CI): every bit of the store's own files (about a thousand), and of the logs and
//!   indexes a deterministic sample: every 61st bit of each file, from an offset derived from a
//!   fixed seed and the file's position, so every file is hit;
//! - `EVERY_BIT=all`: every bit of every file (the long mode: about 115,000 flips, some 9
//!   minutes in a debug build on two cores; faster with `--release`);
//! - `EVERY_BIT=N`: every Nth bit of the logs and indexes.
//!
//! `EVERY_BIT_THREADS` sets the worker threads (default 4: `verify` waits 200 ms before
//! reporting a torn tail of a newest segment, and other flips run meanwhile).
//!
//! The second half cuts the last segment's log at every byte of its last three records and
//! appends zeros or random bytes after the cut — the combinations `torn_tail_repair.rs` does not
//! make: garbage longer or shorter than what was cut, behind a cut anywhere in a record. Reopening
//! must cut back to the last whole batch before the cut (garbage that happens to repeat the cut
//! bytes counts as those bytes), keep everything before it and the other project intact,
//! continue appending, and leave a store `verify` finds clean. The long mode appends 8 random
//! tails per cut instead of 2.

mod common;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use activitylog::{verify, Message, Options, Query, Store};
use common::{copy_dir, frames, log_path, scratch, segments, Rng, SMALL_SEGMENT_BYTES};

const P1: u64 = 11;
const P2: u64 = 22;
const PROJECTS: [u64; 2] = [P1, P2];

/// The CI sample: every `CI_STRIDE`th bit of each file.
const CI_STRIDE: u64 = 61;
/// The seed the CI sample's per-file offsets come from.
const CI_SEED: u64 = 0x5eed_0b17;
/// How many failures are described in a failing test's message.
const SHOWN_FAILURES: usize = 12;

/// The long mode (`EVERY_BIT=all`) or a stride given as `EVERY_BIT=N`.
fn stride() -> u64 {
    match std::env::var("EVERY_BIT") {
        Ok(v) if v == "all" => 1,
        Ok(v) => {
            v.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                panic!("EVERY_BIT must be `all` or a positive number, not {v:?}")
            })
        }
        Err(_) => CI_STRIDE,
    }
}

fn threads() -> usize {
    std::env::var("EVERY_BIT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4)
}

/// The two merged queries every open answers.
fn queries() -> [Query; 2] {
    [
        Query::new(),
        Query::new().projects(PROJECTS).count(60).pcount(40),
    ]
}

/// What a store answers: each project newest first, then each merged query.
type Answers = Vec<Vec<Message>>;

/// A closed store with project `P1` over three segments and `P2` over two, both active segments
/// holding several records, and `P1`'s ending with batches of 1, 2 and 1 small messages.
struct Fixture {
    dir: tempfile::TempDir,
    /// Every file of the store, relative to its directory, with its size.
    files: Vec<(PathBuf, u64)>,
    /// Every message, by project and seq.
    expected: HashMap<(u64, u64), Message>,
    /// The undamaged store's answers (the same read-only and writable).
    answers: Answers,
    /// First seq of `P1`'s active segment.
    active: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = scratch();
        let store = Options::new()
            .segment_bytes(SMALL_SEGMENT_BYTES)
            .open(dir.path())
            .unwrap();
        let mut n = 0u64;
        // What each project was given, oldest first.
        let mut given: HashMap<u64, Vec<String>> = HashMap::new();
        let mut append = |p: u64, size: u64, pad: usize| {
            let batch: Vec<String> = (0..size)
                .map(|k| {
                    n += 1;
                    format!(
                        r#"{{"p":{p},"n":{n},"pad":"{}"}}"#,
                        &"abcdefghij".repeat(10)[..pad + (k as usize * 7) % 11]
                    )
                })
                .collect();
            store.append(p, &batch).unwrap();
            given.entry(p).or_default().extend(batch);
        };
        // Until each project has its segments and at least six records in the active one.
        let done = |p: u64, segs: usize| {
            let s = segments(dir.path(), p);
            s.len() == segs
                && frames(&fs::read(log_path(dir.path(), p, s[segs - 1])).unwrap()).len() >= 6
        };
        let mut round = 0usize;
        loop {
            round += 1;
            let (p1_done, p2_done) = (done(P1, 3), done(P2, 2));
            let p = match (p1_done, p2_done) {
                (true, true) => break,
                (false, false) if !round.is_multiple_of(3) => P1,
                (false, true) => P1,
                _ => P2,
            };
            append(p, [1, 2, 1, 3][round % 4], 4 + (round * 13) % 30);
        }
        // Small records last: a flip in a newest segment's last record is a torn tail, which
        // `verify` looks at twice with a pause in between.
        append(P1, 1, 4);
        append(P1, 2, 2);
        append(P1, 1, 0);
        assert_eq!(segments(dir.path(), P1).len(), 3, "no roll in the tail");
        assert_eq!(segments(dir.path(), P2).len(), 2);

        let answers = answers_of(&store).expect("the undamaged store reads");
        for (i, p) in PROJECTS.into_iter().enumerate() {
            let read: Vec<&str> = answers[i].iter().rev().map(Message::json).collect();
            assert_eq!(read, given[&p], "project {p} reads back as given");
        }
        let mut expected = HashMap::new();
        for m in answers[..PROJECTS.len()].iter().flatten() {
            expected.insert((m.project(), m.seq()), m.clone());
        }
        assert!(
            expected.len() >= 150,
            "a few hundred messages, not {}",
            expected.len()
        );
        drop(store);

        let mut files = Vec::new();
        list_files(dir.path(), Path::new(""), &mut files);
        files.sort();
        let names: Vec<String> = files.iter().map(|f| f.0.display().to_string()).collect();
        for needed in ["STORE", "CLOCK", "NEWEST"] {
            assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
        }
        let fx = Fixture {
            active: *segments(dir.path(), P1).last().unwrap(),
            dir,
            files,
            expected,
            answers,
        };
        // The fixture reads the same through a read-only open after the clean close.
        let ro = Options::new().read_only(true).open(fx.dir.path()).unwrap();
        assert!(answers_of(&ro).unwrap() == fx.answers, "read-only answers");
        fx
    }

    /// A fresh copy of the undamaged store.
    fn copy(&self) -> tempfile::TempDir {
        let copy = scratch();
        copy_dir(self.dir.path(), copy.path());
        copy
    }

    fn total_messages(&self) -> usize {
        self.expected.len()
    }
}

fn list_files(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, u64)>) {
    for entry in fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let rel = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            list_files(root, &rel, out);
        } else {
            out.push((rel, entry.metadata().unwrap().len()));
        }
    }
}

/// Every answer of an undamaged store; `None` if anything errs.
fn answers_of(store: &Store) -> Option<Answers> {
    let mut out = Vec::new();
    for p in PROJECTS {
        out.push(store.newest_first(p).ok()?.collect::<Result<_, _>>().ok()?);
    }
    for q in queries() {
        out.push(store.query(&q).ok()?.collect::<Result<_, _>>().ok()?);
    }
    Some(out)
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_string())
}

/// What one flip led to.
#[derive(Debug, Default)]
struct Outcome {
    /// `verify` found a problem or refused the store.
    reported: bool,
    /// After the writable open, `verify` is clean.
    repaired: bool,
    /// After the writable open, a read-only open answers as the undamaged store did.
    intact_after: bool,
    /// Every answer equals the undamaged store's, without errors.
    same: bool,
    /// A panic anywhere.
    panics: Vec<String>,
    /// A wrong or unknown message, a repeated or reordered seq, a read that does not end.
    wrong: Vec<String>,
    /// Neither reported nor harmless.
    silent: Vec<String>,
}

/// Reads everything from `store` and checks every returned message against the fixture.
/// Returns whether every answer equals the undamaged store's.
fn read_and_check(store: &Store, fx: &Fixture, what: &str, wrong: &mut Vec<String>) -> bool {
    // A damaged record yields one error and iteration goes on; far more items than messages
    // means the iteration does not end.
    let cap = fx.total_messages() + 64;
    let mut same = true;
    let mut reads: Vec<(
        String,
        activitylog::Result<Vec<activitylog::Result<Message>>>,
    )> = Vec::new();
    for p in PROJECTS {
        let items = store.newest_first(p).map(|it| it.take(cap + 1).collect());
        reads.push((format!("{what}, project {p} newest first"), items));
    }
    for (k, q) in queries().iter().enumerate() {
        let items = store.query(q).map(|it| it.take(cap + 1).collect());
        reads.push((format!("{what}, merged query {k}"), items));
    }
    for (i, (read, items)) in reads.into_iter().enumerate() {
        let items = match items {
            Ok(items) => items,
            Err(_) => {
                same = false;
                continue;
            }
        };
        if items.len() > cap {
            wrong.push(format!("{read}: the iteration does not end"));
            same = false;
            continue;
        }
        let mut ok = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Ok(m) => match fx.expected.get(&(m.project(), m.seq())) {
                    Some(want) if *want == m => ok.push(m),
                    Some(want) => {
                        wrong.push(format!("{read}: wrong message {m:?}, stored was {want:?}"))
                    }
                    None => wrong.push(format!("{read}: a message never stored: {m:?}")),
                },
                Err(_) => same = false,
            }
        }
        if i < PROJECTS.len() && ok.windows(2).any(|w| w[0].seq() <= w[1].seq()) {
            let seqs: Vec<u64> = ok.iter().map(Message::seq).collect();
            wrong.push(format!("{read}: seqs out of order or repeated: {seqs:?}"));
        }
        same &= ok == fx.answers[i];
    }
    same
}

/// `verify`'s verdict: whether it found a problem (or refused the store), and what.
fn verdict(dir: &Path) -> (bool, String) {
    let mut found = Vec::new();
    match verify(dir, None, |p| found.push(p.to_string()), |_| {}) {
        Ok(v) => (
            v.problems > 0 || !found.is_empty(),
            format!("{} problems: {found:?}", v.problems),
        ),
        Err(e) => (true, format!("refused: {e}")),
    }
}

/// Flips bit `bit` of `file` in a fresh copy and checks everything.
fn flip_and_check(fx: &Fixture, file: &Path, bit: u64) -> Outcome {
    let what = format!("bit {bit} (byte {}) of {}", bit / 8, file.display());
    let mut out = Outcome::default();
    let run = catch_unwind(AssertUnwindSafe(|| {
        let copy = fx.copy();
        let path = copy.path().join(file);
        let mut bytes = fs::read(&path).unwrap();
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        fs::write(&path, bytes).unwrap();

        let (reported, problems) = verdict(copy.path());
        out.reported = reported;
        let ro = Options::new()
            .read_only(true)
            .open(copy.path())
            .map(|s| read_and_check(&s, fx, &format!("{what}, read-only"), &mut out.wrong));
        let rw = Options::new()
            .open(copy.path())
            .map(|s| read_and_check(&s, fx, &format!("{what}, writable"), &mut out.wrong));
        out.same = matches!(ro, Ok(true)) && matches!(rw, Ok(true));
        if !out.reported && !out.same {
            out.silent.push(format!(
                "{what}: verify found nothing ({problems}) but the answers differ from the \
                 undamaged store's (read-only open: {}, writable open: {})",
                describe(&ro),
                describe(&rw)
            ));
        }
        if out.reported {
            out.repaired = !verdict(copy.path()).0;
            out.intact_after = Options::new()
                .read_only(true)
                .open(copy.path())
                .is_ok_and(|s| {
                    read_and_check(&s, fx, &format!("{what}, after repair"), &mut out.wrong)
                });
        }
    }));
    if let Err(payload) = run {
        out.panics
            .push(format!("{what}: panicked: {}", panic_text(&*payload)));
    }
    out
}

fn describe(open: &activitylog::Result<bool>) -> String {
    match open {
        Ok(true) => "same answers".to_string(),
        Ok(false) => "different answers".to_string(),
        Err(e) => format!("refused: {e}"),
    }
}

/// Which files a run flips.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Files {
    /// Segment logs and indexes (everything under `projects/`): sampled in CI, every bit in the
    /// long mode.
    Segments,
    /// The store's own files beside `projects/` (`STORE`, `CLOCK`, `NEWEST`, whatever else the
    /// format keeps there): every bit in every mode, about a thousand.
    StoreFiles,
}

/// The violations of a run, each kind listed, and its counts.
struct Run {
    panics: Vec<String>,
    wrong: Vec<String>,
    silent: Vec<String>,
}

/// Flips the chosen bits of the chosen files, each in its own copy, on a few threads; prints
/// the summary line.
fn run_flips(which: Files) -> Run {
    let started = Instant::now();
    let fx = Fixture::new();
    let stride = match which {
        Files::Segments => stride(),
        Files::StoreFiles => 1,
    };
    let chosen: Vec<usize> = (0..fx.files.len())
        .filter(|&i| {
            let in_projects = fx.files[i].0.starts_with("projects");
            fx.files[i].1 > 0 && in_projects == (which == Files::Segments)
        })
        .collect();
    // Every `stride`th bit of each file, from an offset that varies with the file.
    let mut jobs: Vec<(usize, u64)> = Vec::new();
    let mut seed = Rng::new(CI_SEED);
    for &i in &chosen {
        let offset = seed.below(stride);
        let bits = fx.files[i].1 * 8;
        jobs.extend((offset..bits).step_by(stride as usize).map(|bit| (i, bit)));
    }
    let total_bits: u64 = chosen.iter().map(|&i| fx.files[i].1 * 8).sum();
    assert!(!jobs.is_empty());

    let next = AtomicUsize::new(0);
    let counts: [AtomicU64; 5] = Default::default();
    let [reported, repaired, intact, harmless, failed] = &counts;
    let run = Mutex::new(Run {
        panics: Vec::new(),
        wrong: Vec::new(),
        silent: Vec::new(),
    });
    std::thread::scope(|s| {
        for _ in 0..threads() {
            s.spawn(|| {
                while let Some(&(file, bit)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let out = flip_and_check(&fx, &fx.files[file].0, bit);
                    let count = |c: &AtomicU64, yes: bool| {
                        c.fetch_add(u64::from(yes), Ordering::Relaxed);
                    };
                    count(reported, out.reported);
                    count(repaired, out.reported && out.repaired);
                    count(intact, out.reported && out.repaired && out.intact_after);
                    count(harmless, !out.reported && out.same);
                    let bad =
                        !(out.panics.is_empty() && out.wrong.is_empty() && out.silent.is_empty());
                    count(failed, bad);
                    if bad {
                        let mut run = run.lock().unwrap();
                        run.panics.extend(out.panics);
                        run.wrong.extend(out.wrong);
                        run.silent.extend(out.silent);
                    }
                }
            });
        }
    });
    let [reported, repaired, intact, harmless, failed] = counts.map(|c| c.load(Ordering::Relaxed));
    let label = match which {
        Files::Segments => "logs and indexes".to_string(),
        Files::StoreFiles => chosen
            .iter()
            .map(|&i| fx.files[i].0.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    eprintln!(
        "every_bit ({label}): {} of {total_bits} bits flipped (every {stride}) in {} files: \
         {reported} reported ({repaired} repaired by a writable open: {intact} with every message \
         intact, {} by cutting messages away), {harmless} harmless, {failed} failed; {:.1} s",
        jobs.len(),
        chosen.len(),
        repaired - intact,
        started.elapsed().as_secs_f64()
    );
    let mut run = run.into_inner().unwrap();
    for list in [&mut run.panics, &mut run.wrong, &mut run.silent] {
        list.sort_by_key(|v| (v.len(), v.clone()));
    }
    run
}

fn segment_flips() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| run_flips(Files::Segments))
}

fn store_file_flips() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| run_flips(Files::StoreFiles))
}

/// Fails listing the first few violations, if there are any.
fn assert_none(violations: &[String], what: &str) {
    assert!(
        violations.is_empty(),
        "{} {what}; the first:\n{}",
        violations.len(),
        violations[..violations.len().min(SHOWN_FAILURES)].join("\n")
    );
}

#[test]
fn no_flip_in_a_log_or_index_makes_anything_panic() {
    assert_none(&segment_flips().panics, "panics");
}

#[test]
fn no_flip_in_a_log_or_index_brings_back_a_wrong_message() {
    assert_none(&segment_flips().wrong, "wrong answers");
}

#[test]
fn every_flip_in_a_log_or_index_is_reported_by_verify_or_harmless() {
    assert_none(
        &segment_flips().silent,
        "flips neither reported nor harmless",
    );
}

#[test]
fn no_flip_in_the_store_files_makes_anything_panic() {
    assert_none(&store_file_flips().panics, "panics");
}

#[test]
fn no_flip_in_the_store_files_brings_back_a_wrong_message() {
    assert_none(&store_file_flips().wrong, "wrong answers");
}

#[test]
fn every_flip_in_the_store_files_is_reported_by_verify_or_harmless() {
    assert_none(
        &store_file_flips().silent,
        "flips neither reported nor harmless",
    );
}

// ---- Torn tails with garbage behind the cut ----

/// The last three records of `P1`'s active log and what a cut keeps.
struct Tail {
    /// The undamaged active log.
    log: Vec<u8>,
    frames: Vec<common::Frame>,
}

impl Tail {
    fn of(fx: &Fixture) -> Tail {
        let log = fs::read(log_path(fx.dir.path(), P1, fx.active)).unwrap();
        let frames = frames(&log);
        let sizes: Vec<usize> = common::batches(&frames).iter().map(|b| b.len()).collect();
        assert_eq!(sizes[sizes.len() - 3..], [1, 2, 1], "the tail's batches");
        Tail { log, frames }
    }

    /// The cuts: every byte offset from the start of the third-last record to the end.
    fn cuts(&self) -> std::ops::RangeInclusive<usize> {
        self.frames[self.frames.len() - 3].start..=self.log.len()
    }

    /// Records kept when the log is good up to `cut`: those of the whole batches before it.
    /// Returns their count and the log's length once repaired.
    fn kept(&self, cut: usize) -> (u64, u64) {
        let mut kept = (0, common::LOG_HEADER_BYTES as u64);
        for (i, f) in self.frames.iter().enumerate() {
            if f.end > cut {
                break;
            }
            if !f.continues {
                kept = (i as u64 + 1, f.end as u64);
            }
        }
        kept
    }
}

fn cut_and_append(path: &Path, cut: usize, garbage: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(cut as u64).unwrap();
    drop(file);
    let mut bytes = fs::read(path).unwrap();
    bytes.extend_from_slice(garbage);
    fs::write(path, bytes).unwrap();
}

/// Cuts a copy's `P1` active log at `cut`, appends `garbage`, and checks the repair. As a crash
/// would leave it: no clean-close marker, and the index without entries for the records of
/// batches the cut reaches (entries are written only for synced records, which no crash
/// tears; the open reports damage to records the index vouches for instead of cutting them).
fn check_cut(fx: &Fixture, tail: &Tail, cut: usize, garbage: &[u8], what: &str) {
    let copy = fx.copy();
    let log = log_path(copy.path(), P1, fx.active);
    cut_and_append(&log, cut, garbage);
    let _ = fs::remove_file(copy.path().join("CLEAN"));
    let idx = common::idx_path(copy.path(), P1, fx.active);
    let entries = fs::read(&idx).unwrap();
    let synced = tail.kept(cut).0 as usize;
    fs::write(&idx, &entries[..common::INDEX_HEADER_BYTES + 4 * synced]).unwrap();
    let damaged_len = fs::metadata(&log).unwrap().len();
    // Garbage bytes that happen to equal what was cut are no damage: the good part ends at
    // the first byte that differs.
    let same = tail.log[cut.min(tail.log.len())..]
        .iter()
        .zip(garbage)
        .take_while(|(a, b)| a == b)
        .count();
    let (records, repaired_len) = tail.kept(cut + same);
    let last_kept = fx.active + records - 1;
    let want_p1: Vec<Message> = fx.answers[0]
        .iter()
        .filter(|m| m.seq() <= last_kept)
        .cloned()
        .collect();
    let want_p2 = &fx.answers[1];
    let read = |s: &Store, p: u64| -> Vec<Message> {
        s.newest_first(p)
            .unwrap()
            .map(|m| m.unwrap_or_else(|e| panic!("{what}: project {p}: {e}")))
            .collect()
    };

    let ro = Options::new().read_only(true).open(copy.path()).unwrap();
    let got = read(&ro, P1);
    let seqs = |m: &[Message]| m.iter().map(Message::seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(&got),
        seqs(&want_p1),
        "{what}: read-only: the good prefix's seqs"
    );
    assert!(
        got == want_p1,
        "{what}: read-only: the good prefix's contents"
    );
    drop(ro);
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        damaged_len,
        "{what}: a read-only open wrote"
    );

    let store = Options::new().open(copy.path()).unwrap();
    let got = read(&store, P1);
    assert_eq!(seqs(&got), seqs(&want_p1), "{what}: the good prefix's seqs");
    assert!(got == want_p1, "{what}: the good prefix's contents");
    assert!(read(&store, P2) == *want_p2, "{what}: the other project");
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        repaired_len,
        "{what}: the tail is cut back to the last whole batch"
    );
    let next = last_kept + 1;
    let new = [r#"{"after":"cut","k":1}"#, r#"{"after":"cut","k":2}"#];
    let a = store.append(P1, new).unwrap();
    assert_eq!(a.first_seq, next, "{what}: seqs continue after the prefix");
    drop(store);

    let store = Options::new().open(copy.path()).unwrap();
    let got = read(&store, P1);
    assert_eq!(got.len(), want_p1.len() + 2, "{what}: after another reopen");
    assert_eq!((got[0].json(), got[0].seq()), (new[1], next + 1), "{what}");
    assert_eq!((got[1].json(), got[1].seq()), (new[0], next), "{what}");
    assert!(
        got[2..] == want_p1[..],
        "{what}: the prefix after another reopen"
    );
    drop(store);
    let (reported, problems) = verdict(copy.path());
    assert!(!reported, "{what}: verify after the repair: {problems}");
}

#[test]
fn zeros_after_a_cut_in_the_last_records_are_cut_away() {
    let fx = Fixture::new();
    let tail = Tail::of(&fx);
    for cut in tail.cuts() {
        // Shorter than a frame, about a small record, and longer than what was cut.
        for n in [1, 3, 21, 4096] {
            check_cut(
                &fx,
                &tail,
                cut,
                &vec![0; n],
                &format!("cut at {cut}, {n} zeros"),
            );
        }
    }
}

#[test]
fn random_bytes_after_a_cut_in_the_last_records_are_cut_away() {
    let fx = Fixture::new();
    let tail = Tail::of(&fx);
    let rounds = if stride() == 1 { 8 } else { 2 };
    let mut rng = Rng::new(7);
    for cut in tail.cuts() {
        for round in 0..rounds {
            let n = 1 + rng.below(3000) as usize;
            let garbage = rng.bytes(n);
            check_cut(
                &fx,
                &tail,
                cut,
                &garbage,
                &format!("cut at {cut}, round {round}: {n} random bytes"),
            );
        }
    }
}
