//! Projects closed and reopened under load: more projects than the store keeps open, so that
//! appends, reads, syncs and retention keep closing projects (eviction) and opening them again,
//! while segments of 4 KiB roll every few appends, the background syncer takes batches of over
//! 4 MiB and the spare-project maker refills. Each phase then drops the store — at times while the
//! background syncer is still at work — and opens it again.
//!
//! Checked while it runs: every read is whole, newest first (or oldest first) with sequence
//! numbers falling (rising) by one, never part of a batch, each message the one its content says;
//! a read starts at or above every message acknowledged before it began; a read that ends above
//! sequence number 1 ends where retention removed the history; a merged query is in
//! `(stamp, project, seq)` order. Checked after each drop: the store closed cleanly (`CLEAN`),
//! `verify` finds no problem, and the reopened store holds every acknowledged message, byte for
//! byte with its stamp, and nothing else, but for the oldest ones retention said it removed.
//!
//! It runs for about three seconds; `LIFECYCLE_STRESS_SECONDS=N` runs it for `N` seconds, and
//! `LIFECYCLE_STRESS_DIR=path` makes its stores under `path` (by default on tmpfs when the
//! machine has one: a disk makes syncs slow, so they overlap closes and drops more often).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use activitylog::{Durability, Error, Message, Options, Query, Retention, Store};
use common::{Rng, SMALL_SEGMENT_BYTES};

/// Projects appended to: several times what the store keeps open.
const PROJECTS: u64 = 12;
const APPENDERS: u64 = 4;
const READERS: u64 = 2;
/// The default run, in seconds.
const CI_SECONDS: u64 = 3;
/// How long one phase may take, with its checks and reopen (a second or two), before the test
/// takes it for a deadlock and aborts, rather than hang the test run.
const STUCK: Duration = Duration::from_secs(120);
/// Messages in a batch big enough (over 4 MiB) that the store hands its project to the
/// background syncer.
const HUGE_BATCH: usize = 1100;
/// Pad of each message of such a batch, in bytes.
const HUGE_PAD: usize = 3900;

/// The message number `i` of the `b` in batch `n` of appender `t` to project `p`, padded with
/// `len` bytes that follow from the rest, so that a reader can tell a whole message from any
/// other bytes.
fn message(p: u64, t: u64, n: u64, i: u64, b: u64, len: usize) -> String {
    let pad = (b'a' + ((t * 7 + n * 3 + i) % 26) as u8) as char;
    format!(
        r#"{{"p":{p},"t":{t},"n":{n},"i":{i},"b":{b},"l":{len},"pad":"{}"}}"#,
        String::from(pad).repeat(len)
    )
}

/// What a message says of itself: its place `i` in batch `n` (of `b` messages) of appender `t`.
#[derive(Clone, Copy)]
struct Said {
    t: u64,
    n: u64,
    i: u64,
    b: u64,
}

/// What `m` says of itself, checked against its project, its pad and its own fields; panics
/// with `who` if anything is off.
fn parse(m: &Message, who: &str) -> Said {
    let v: serde_json::Value = serde_json::from_str(m.json()).unwrap_or_else(|e| {
        panic!(
            "{who}: project {} seq {}: not JSON ({e})",
            m.project(),
            m.seq()
        )
    });
    let field = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{who}: no {k} in {}", m.json()))
    };
    let (p, t, n, i, b, l) = (
        field("p"),
        field("t"),
        field("n"),
        field("i"),
        field("b"),
        field("l"),
    );
    assert_eq!(p, m.project(), "{who}: seq {} holds {}", m.seq(), m.json());
    assert!(i < b, "{who}: {}", m.json());
    assert_eq!(
        m.json(),
        message(p, t, n, i, b, l as usize),
        "{who}: project {p} seq {}",
        m.seq()
    );
    Said { t, n, i, b }
}

/// A message without its pad, for failure reports.
fn head(m: &Message) -> &str {
    let json = m.json();
    json.find(",\"pad\"").map_or(json, |end| &json[..end])
}

/// Checks one project's messages as one read yielded them, newest first (`newest_first`) or
/// oldest first: sequence numbers one apart, stamps in order, batches whole. `whole_start`:
/// the read started at the newest (oldest) message of its snapshot, or at a segment's first,
/// so its first message is a batch's last (first).
fn check_run(msgs: &[Message], newest_first: bool, whole_start: bool, who: &str) {
    let mut prev: Option<(&Message, Said)> = None;
    for m in msgs {
        let at = parse(m, who);
        let p = m.project();
        match prev {
            None => {
                let edge = if newest_first { at.b - 1 } else { 0 };
                assert!(
                    !whole_start || at.i == edge,
                    "{who}: project {p} starts in a batch at seq {} ({})",
                    m.seq(),
                    head(m)
                );
            }
            Some((pm, was)) => {
                let (step, stamps_ok) = if newest_first {
                    (pm.seq() - 1, m.stamp() <= pm.stamp())
                } else {
                    (pm.seq() + 1, m.stamp() >= pm.stamp())
                };
                assert_eq!(m.seq(), step, "{who}: project {p} skips");
                assert!(stamps_ok, "{who}: project {p} stamps out of order");
                // Within a batch, places one apart and one stamp; from one batch to the next,
                // the one left was whole (its edge last), and this one starts at its edge.
                let whole = if (was.t, was.n) == (at.t, at.n) {
                    let next = if newest_first {
                        was.i.wrapping_sub(1)
                    } else {
                        was.i + 1
                    };
                    at.i == next && m.stamp() == pm.stamp()
                } else if newest_first {
                    was.i == 0 && at.i == at.b - 1
                } else {
                    was.i == was.b - 1 && at.i == 0
                };
                assert!(
                    whole,
                    "{who}: project {p} holds part of a batch: seq {} {} then seq {} {}",
                    pm.seq(),
                    head(pm),
                    m.seq(),
                    head(m),
                );
            }
        }
        prev = Some((m, at));
    }
}

/// What one acknowledged batch holds.
struct Acked {
    /// The project appended to.
    project: u64,
    /// The sequence number of its first message.
    first_seq: u64,
    /// Its stamp.
    stamp: u64,
    /// The appender that made it.
    t: u64,
    /// Its number among that appender's batches.
    n: u64,
    /// The pad of each of its messages, in bytes.
    lens: Vec<usize>,
}

/// Shared between the threads of a phase (and the phases).
struct Shared {
    /// The phase is over: the threads return.
    stop: AtomicBool,
    /// The newest acknowledged sequence number of each project.
    acked: Vec<AtomicU64>,
}

/// Ends the phase if the thread holding it panics, so that the failure is reported at once.
struct StopOnPanic(Arc<Shared>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.stop.store(true, Ordering::Release);
        }
    }
}

impl Shared {
    /// Nothing acknowledged yet.
    fn new() -> Self {
        Shared {
            stop: AtomicBool::new(false),
            acked: (0..PROJECTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Counts for the report at the end.
#[derive(Default, Debug)]
struct Counts {
    /// Phases run (each ends with a drop and a reopen).
    phases: u64,
    /// Batches acknowledged.
    batches: u64,
    /// Messages acknowledged.
    messages: u64,
    /// Batches of over 4 MiB among them.
    huge: u64,
    /// Reads of one project.
    reads: u64,
    /// Merged queries.
    queries: u64,
    /// `Store::sync` calls.
    syncs: u64,
    /// `Store::apply_retention` calls.
    retention_runs: u64,
    /// Messages retention removed.
    retained: u64,
}

/// Appends batch `n` of appender `t` to `p`: `b` messages, huge or small, at `durability`.
fn append(
    store: &Store,
    shared: &Shared,
    rng: &mut Rng,
    (p, t, n): (u64, u64, u64),
    huge: bool,
    durability: Durability,
) -> Acked {
    let lens: Vec<usize> = if huge {
        vec![HUGE_PAD; HUGE_BATCH]
    } else {
        let most = if rng.below(8) == 0 { 24 } else { 6 };
        let b = 1 + rng.below(most);
        (0..b).map(|_| rng.below(400) as usize).collect()
    };
    let b = lens.len() as u64;
    let batch: Vec<String> = (0..b)
        .map(|i| message(p, t, n, i, b, lens[i as usize]))
        .collect();
    let a = store
        .append_with(p, &batch, durability)
        .unwrap_or_else(|e| panic!("appender {t}: batch {n} to project {p}: {e}"));
    assert_eq!(a.count, b);
    shared.acked[p as usize].fetch_max(a.first_seq + b - 1, Ordering::AcqRel);
    Acked {
        project: p,
        first_seq: a.first_seq,
        stamp: a.stamp,
        t,
        n,
        lens,
    }
}

/// Appender `t`: batches numbered from `n` to random projects, at random durabilities, until
/// the phase stops; returns what was acknowledged.
fn appender(store: Store, shared: Arc<Shared>, t: u64, mut n: u64, seed: u64) -> Vec<Acked> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        let p = rng.below(PROJECTS);
        let huge = rng.below(1500) == 0;
        let durability = if !huge && rng.below(4) == 0 {
            Durability::Sync
        } else {
            Durability::Written
        };
        out.push(append(
            &store,
            &shared,
            &mut rng,
            (p, t, n),
            huge,
            durability,
        ));
        n += 1;
    }
    out
}

/// A newest-first read of project `p`, sometimes paused halfway (holding its snapshot while
/// the others roll, close, reopen and retain), sometimes a page from the middle.
fn read_newest_first(store: &Store, shared: &Shared, rng: &mut Rng, p: u64, who: &str) {
    let acked = shared.acked[p as usize].load(Ordering::Acquire);
    let it = store.newest_first(p).unwrap();
    let newest = it.next_seq() - 1;
    assert!(
        newest >= acked,
        "{who}: project {p} reads up to {newest}, but {acked} was acknowledged"
    );
    if rng.below(4) == 0 && newest > 1 {
        let before = 2 + rng.below(newest);
        let page: Vec<Message> = it
            .before(before)
            .take(1 + rng.below(60) as usize)
            .map(|m| m.unwrap_or_else(|e| panic!("{who}: project {p}: {e}")))
            .collect();
        // (A page's first message may be inside a batch, and retention may have removed it.)
        if let Some(first) = page.first() {
            assert_eq!(first.seq(), before - 1, "{who}: project {p}");
        }
        check_run(&page, true, false, who);
        return;
    }
    let mut it = it;
    let mut msgs = Vec::new();
    let pause_at = if rng.below(3) == 0 {
        rng.below(40) as usize
    } else {
        usize::MAX
    };
    loop {
        if msgs.len() == pause_at {
            thread::sleep(Duration::from_millis(1 + rng.below(15)));
        }
        match it.next() {
            Some(m) => msgs.push(m.unwrap_or_else(|e| panic!("{who}: project {p}: {e}"))),
            None => break,
        }
    }
    check_run(&msgs, true, true, who);
    match (msgs.first(), msgs.last()) {
        (Some(first), Some(last)) => {
            assert_eq!(
                first.seq(),
                newest,
                "{who}: project {p} read from its newest"
            );
            // It ended above seq 1: retention removed what was before.
            gone_for_good(store, p, last.seq(), who);
        }
        // Retention removed every message of the snapshot: its newest was in the newest sealed
        // segment, the active one empty (rolled for a batch not written yet).
        _ => gone_for_good(store, p, newest + 1, who),
    }
}

/// A read of project `p` found no message below `seq` (retention removed them while it read, or
/// before): none reads now either.
fn gone_for_good(store: &Store, p: u64, seq: u64, who: &str) {
    let now = store.oldest_first(p).unwrap().next();
    if let Some(now) = now {
        let now = now.unwrap_or_else(|e| panic!("{who}: project {p}: {e}"));
        assert!(
            now.seq() >= seq,
            "{who}: project {p}: a read found nothing below {seq}, but {} reads",
            now.seq()
        );
    }
    // (None: all gone, the active segment empty — rolled for a batch not written yet.)
}

/// An oldest-first read of project `p`: rising by one, but where retention removed segments
/// it had not reached yet (one `RemovedWhileRead`, then on after the gap). It starts, and goes
/// on after a gap, at a segment's first record, which is a batch's first.
fn read_oldest_first(store: &Store, shared: &Shared, p: u64, who: &str) {
    let acked = shared.acked[p as usize].load(Ordering::Acquire);
    let mut it = store.oldest_first(p).unwrap();
    let newest = it.next_seq() - 1;
    assert!(newest >= acked, "{who}: project {p}: {newest} < {acked}");
    let mut run = Vec::new();
    let mut last = None;
    // What the read met, for a failure's report: its first message and the gaps it reported.
    let mut first_read = None;
    let mut gaps = Vec::new();
    for m in &mut it {
        match m {
            Ok(m) => {
                first_read.get_or_insert(m.seq());
                run.push(m);
            }
            Err(Error::RemovedWhileRead { first, next, .. }) => {
                gaps.push((first, next));
                check_run(&run, false, true, who);
                last = run.last().map(Message::seq).or(last);
                run.clear();
                // The read goes on at `next`, the first segment left.
                assert!(next > last.unwrap_or(0) + 1, "{who}: project {p}");
            }
            Err(e) => panic!("{who}: project {p}: {e}"),
        }
    }
    check_run(&run, false, true, who);
    let end = run.last().map(Message::seq).or(last);
    if end != Some(newest) {
        // The messages after `end` are gone: retention removed the segments they were in, up
        // to the snapshot's active one, empty (rolled for a batch not written yet). The read
        // said so with a gap to the end, or found them gone before it read anything.
        assert!(
            gaps.last().is_some_and(|&(_, next)| next > newest) || first_read.is_none(),
            "{who}: project {p} read to {end:?} of {newest}, gaps {gaps:?}"
        );
        gone_for_good(store, p, newest + 1, who);
    }
}

/// A merged query over all projects or some, capped, sometimes paused halfway.
fn query(store: &Store, rng: &mut Rng, who: &str) {
    let mut q = Query::new().count(1 + rng.below(400));
    if rng.below(2) == 0 {
        q = q.projects((0..PROJECTS).filter(|_| rng.below(2) == 0));
    }
    if rng.below(3) == 0 {
        q = q.pcount(1 + rng.below(50));
    }
    let mut merged = store.query(&q).unwrap();
    let mut msgs: Vec<Message> = Vec::new();
    let pause_at = rng.below(30) as usize;
    loop {
        if msgs.len() == pause_at {
            thread::sleep(Duration::from_millis(1 + rng.below(10)));
        }
        match merged.next() {
            Some(m) => msgs.push(m.unwrap_or_else(|e| panic!("{who} (merged): {e}"))),
            None => break,
        }
    }
    for w in msgs.windows(2) {
        let key = |m: &Message| (m.stamp(), m.project(), m.seq());
        assert!(
            key(&w[0]) > key(&w[1]),
            "{who}: merged order: {:?} then {:?}",
            key(&w[0]),
            key(&w[1])
        );
    }
    for p in 0..PROJECTS {
        let own: Vec<Message> = msgs.iter().filter(|m| m.project() == p).cloned().collect();
        check_run(&own, true, true, &format!("{who} (merged)"));
    }
}

/// Reader `r`: reads of one project and merged queries until the phase stops; returns how many
/// of each it made.
fn reader(store: Store, shared: Arc<Shared>, r: u64, seed: u64) -> (u64, u64) {
    let who = format!("reader {r}");
    let mut rng = Rng::new(seed);
    let (mut reads, mut queries) = (0, 0);
    while !shared.stop.load(Ordering::Acquire) {
        let p = rng.below(PROJECTS);
        match rng.below(6) {
            0..=2 => read_newest_first(&store, &shared, &mut rng, p, &who),
            3 => read_oldest_first(&store, &shared, p, &who),
            _ => {
                query(&store, &mut rng, &who);
                queries += 1;
                continue;
            }
        }
        reads += 1;
    }
    (reads, queries)
}

/// Every project of the store at `dir`, reopened, holds exactly the acknowledged messages in
/// `expected` from its oldest on; below that, what retention removed. Returns how many
/// messages are gone from the projects' starts, and drops what is gone from `expected`.
fn check_reopened(
    store: &Store,
    dir: &Path,
    expected: &mut BTreeMap<u64, BTreeMap<u64, (String, u64)>>,
) -> u64 {
    let mut gone = 0;
    let ids: Vec<u64> = expected.keys().copied().collect();
    assert_eq!(
        store.projects().unwrap(),
        ids,
        "the projects appended to, and no other"
    );
    for (&p, want) in expected.iter_mut() {
        let got: Vec<Message> = store
            .oldest_first(p)
            .unwrap()
            .map(|m| m.unwrap_or_else(|e| panic!("project {p} after reopen: {e}")))
            .collect();
        let oldest = got.first().map_or(1, Message::seq);
        let newest = *want.keys().next_back().expect("a project appended to");
        assert_eq!(
            got.last().map(Message::seq),
            Some(newest),
            "project {p} after reopen ends with its newest acknowledged message"
        );
        assert_eq!(
            got.len() as u64,
            newest - oldest + 1,
            "project {p} after reopen: gap-free from {oldest}"
        );
        assert_eq!(
            common::segments(dir, p).first(),
            Some(&oldest),
            "project {p}: no segment left before its oldest message"
        );
        // Everything before the oldest went to retention; what is left is what was appended.
        assert!(
            want.keys().next().is_some_and(|&k| k <= oldest),
            "project {p}: {oldest} is past the oldest acknowledged message still expected"
        );
        gone += oldest - 1;
        want.retain(|&seq, _| seq >= oldest);
        for m in &got {
            let (json, stamp) = &want[&m.seq()];
            assert_eq!(m.json(), json, "project {p} seq {} after reopen", m.seq());
            assert_eq!(
                m.stamp(),
                *stamp,
                "project {p} seq {} after reopen",
                m.seq()
            );
        }
        check_run(&got, false, true, "after reopen");
    }
    gone
}

/// After a clean close (the drop of phase `phase`), as the next open trusts it to be: every log
/// is named and ends with its last record (the room ahead of the active logs was cut), and every
/// index holds an entry for each record of its log.
fn check_closed_files(dir: &Path, phase: u64) {
    for p in 0..PROJECTS {
        let new_log = common::project_dir(dir, p).join("00000000000000000001.log.new");
        assert!(
            !new_log.exists(),
            "phase {phase}: {} is left",
            new_log.display()
        );
        for first in common::segments(dir, p) {
            let path = common::log_path(dir, p, first);
            let log = fs::read(&path).unwrap();
            let frames = common::frames(&log);
            assert_eq!(
                frames.last().map_or(common::LOG_HEADER_BYTES, |f| f.end),
                log.len(),
                "phase {phase}: {} does not end with its last record",
                path.display()
            );
            let idx = common::idx_path(dir, p, first);
            assert!(
                fs::read(&idx).unwrap() == common::expected_index(&frames),
                "phase {phase}: {} is not complete",
                idx.display()
            );
        }
    }
}

/// Aborts the process once `STUCK` has passed since the time `progress` holds (milliseconds
/// after `start`); returns once it holds `u64::MAX`.
fn watchdog(start: Instant, progress: Arc<AtomicU64>) {
    loop {
        thread::sleep(Duration::from_millis(200));
        let last = progress.load(Ordering::Acquire);
        if last == u64::MAX {
            return;
        }
        let now = start.elapsed().as_millis() as u64;
        if now.saturating_sub(last) > STUCK.as_millis() as u64 {
            eprintln!("a phase has run for {STUCK:?}: a deadlock; aborting");
            std::process::abort();
        }
    }
}

/// Opens the store at `dir` with small segments, and room for 2 to 4 of the projects open.
fn open(dir: &Path, rng: &mut Rng) -> Store {
    Options::new()
        .segment_bytes(SMALL_SEGMENT_BYTES)
        .max_open_projects(2 + rng.below(3) as usize)
        .max_mapped_segments(4)
        .spare_projects(4)
        .open(dir)
        .unwrap()
}

#[test]
fn projects_closed_and_reopened_under_load_lose_nothing_acknowledged() {
    let seconds = std::env::var("LIFECYCLE_STRESS_SECONDS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("LIFECYCLE_STRESS_SECONDS: whole seconds")
        })
        .unwrap_or(CI_SECONDS);
    let tmp = match std::env::var_os("LIFECYCLE_STRESS_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => common::scratch(),
    };
    let dir = tmp.path();
    let seed = std::env::var("LIFECYCLE_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!(
        "seed {seed} (LIFECYCLE_STRESS_SEED), {seconds} s, in {}",
        dir.display()
    );
    let mut rng = Rng::new(seed);
    let shared = Arc::new(Shared::new());
    let mut expected: BTreeMap<u64, BTreeMap<u64, (String, u64)>> = BTreeMap::new();
    let mut counts = Counts::default();
    let mut next_batch = vec![0u64; APPENDERS as usize + 1];
    let start = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let dog = {
        let progress = progress.clone();
        thread::spawn(move || watchdog(start, progress))
    };
    while counts.phases < 2 || start.elapsed() < Duration::from_secs(seconds) {
        progress.store(start.elapsed().as_millis() as u64, Ordering::Release);
        let store = open(dir, &mut rng);
        shared.stop.store(false, Ordering::Release);
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let (store, shared, seed) = (store.clone(), shared.clone(), rng.next_u64());
                // Batch numbers go on across phases: every message is unique.
                let first = next_batch[t as usize];
                thread::spawn(move || {
                    let _stop = StopOnPanic(shared.clone());
                    appender(store, shared, t, first, seed)
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (store, shared, seed) = (store.clone(), shared.clone(), rng.next_u64());
                thread::spawn(move || {
                    let _stop = StopOnPanic(shared.clone());
                    reader(store, shared, r, seed)
                })
            })
            .collect();
        let retainer = {
            let (store, shared, seed) = (store.clone(), shared.clone(), rng.next_u64());
            thread::spawn(move || {
                let _stop = StopOnPanic(shared.clone());
                let mut rng = Rng::new(seed);
                let (mut runs, mut removed) = (0, 0);
                while !shared.stop.load(Ordering::Acquire) {
                    let max = 40 + rng.below(400);
                    let r = store
                        .apply_retention(&Retention::new().max_messages(max))
                        .unwrap_or_else(|e| panic!("retention: {e}"));
                    removed += r.messages;
                    runs += 1;
                    thread::sleep(Duration::from_millis(rng.below(20)));
                }
                (runs, removed)
            })
        };
        let sync_thread = {
            let (store, shared, seed) = (store.clone(), shared.clone(), rng.next_u64());
            thread::spawn(move || {
                let _stop = StopOnPanic(shared.clone());
                let mut rng = Rng::new(seed);
                let mut syncs = 0;
                while !shared.stop.load(Ordering::Acquire) {
                    store.sync().unwrap_or_else(|e| panic!("Store::sync: {e}"));
                    syncs += 1;
                    thread::sleep(Duration::from_millis(rng.below(15)));
                }
                syncs
            })
        };
        let deadline = Instant::now() + Duration::from_millis(300 + rng.below(600));
        while Instant::now() < deadline && !shared.stop.load(Ordering::Acquire) {
            thread::sleep(Duration::from_millis(10));
        }
        shared.stop.store(true, Ordering::Release);
        // Every thread is joined before a panic is passed on, so that the store's directory
        // outlives them all (its removal would fail the others too, hiding the first failure).
        let appended: Vec<_> = appenders.into_iter().map(|h| h.join()).collect();
        let read: Vec<_> = readers.into_iter().map(|h| h.join()).collect();
        let retained = retainer.join();
        let synced = sync_thread.join();
        let mut acked: Vec<Acked> = Vec::new();
        for (t, mine) in appended.into_iter().enumerate() {
            let mine = mine.unwrap();
            next_batch[t] = mine.last().map_or(next_batch[t], |a| a.n + 1);
            acked.extend(mine);
        }
        for r in read {
            let (reads, queries) = r.unwrap();
            counts.reads += reads;
            counts.queries += queries;
        }
        let (runs, removed) = retained.unwrap();
        counts.retention_runs += runs;
        counts.retained += removed;
        counts.syncs += synced.unwrap();
        if counts.phases == 0 || rng.below(2) == 0 {
            // A batch over 4 MiB just before the drop: the background syncer is likely still
            // syncing it while the store closes its projects and releases its lock.
            let n = next_batch[APPENDERS as usize];
            next_batch[APPENDERS as usize] += 1;
            let p = rng.below(PROJECTS);
            acked.push(append(
                &store,
                &shared,
                &mut rng,
                (p, APPENDERS, n),
                true,
                Durability::Written,
            ));
        }
        drop(store);
        for a in acked {
            let b = a.lens.len() as u64;
            counts.batches += 1;
            counts.messages += b;
            counts.huge += u64::from(b == HUGE_BATCH as u64);
            let want = expected.entry(a.project).or_default();
            for (i, &len) in a.lens.iter().enumerate() {
                let json = message(a.project, a.t, a.n, i as u64, b, len);
                let seq = a.first_seq + i as u64;
                assert!(
                    want.insert(seq, (json, a.stamp)).is_none(),
                    "project {}: seq {seq} acknowledged twice",
                    a.project
                );
            }
        }
        counts.phases += 1;
        assert!(
            dir.join("CLEAN").exists(),
            "phase {}: the store did not close cleanly",
            counts.phases
        );
        check_closed_files(dir, counts.phases);
        let mut problems = Vec::new();
        activitylog::verify(dir, None, |p| problems.push(p.to_string()), |_| {}).unwrap();
        assert!(
            problems.is_empty(),
            "phase {}: {problems:#?}",
            counts.phases
        );
        let store = open(dir, &mut rng);
        let gone = check_reopened(&store, dir, &mut expected);
        assert_eq!(
            gone, counts.retained,
            "phase {}: messages gone from the projects' starts, against what retention removed",
            counts.phases
        );
        drop(store);
    }
    progress.store(u64::MAX, Ordering::Release);
    dog.join().unwrap();
    eprintln!("{counts:?} in {:.1} s", start.elapsed().as_secs_f64());
    assert!(counts.retained > 0, "retention removed segments");
    assert!(counts.huge > 0, "{counts:?}");
}
