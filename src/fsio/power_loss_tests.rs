//! Simulated power loss and injected I/O faults (test builds only; see `sim`).
//!
//! `POWER_LOSS_IMAGES=N` sets how many random images are built at every crash point (CI: 2;
//! long mode: e.g. 50) and `POWER_LOSS_BATCHES=N` how long the workload runs (CI: 60).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::sim::{CrashPoint, FaultKind, Policy, Recorder};
use crate::{verify, Durability, Error, Options, Store, FIRST_SEQ};

const PROJECTS: [u64; 5] = [1, 2, 77, 5, 9];
const SEGMENT_BYTES: u64 = 4096;

/// A scratch directory, in memory when the machine has one: these tests build thousands of
/// stores, and fsync on a real disk would make them wait minutes for nothing they test.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One step of the workload.
enum Step {
    Append {
        project: u64,
        messages: Vec<String>,
        durability: Durability,
    },
    /// `Store::sync`.
    Sync,
    /// Close the store and open it again.
    Reopen,
    /// Wait until spare project directories are ready, so that the projects created next
    /// are renamed spares.
    AwaitSpares,
}

/// A deterministic mix: five projects (the first made on the spot, the others from spare
/// directories, awaited after the first batch), batches of 1 to 40
/// messages of 30 to 400 bytes, both durability levels, explicit syncs, a reopen, and segment
/// rolls (4 KiB segments).
///
/// `on_the_spot`: with no spares (see [`run`]), projects 1 to 8 instead, one more in play every
/// four batches: each is made on the spot, its first log named at its first sync, some of them
/// after the reopen.
fn workload(batches: u64, on_the_spot: bool) -> Vec<Step> {
    let mut x: u64 = 0x5EED;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut steps = Vec::new();
    for b in 0..batches {
        if b == batches / 2 {
            steps.push(Step::Reopen);
        }
        if b == 1 && !on_the_spot {
            steps.push(Step::AwaitSpares);
        }
        if next(10) == 0 {
            steps.push(Step::Sync);
        }
        let project = if on_the_spot {
            1 + next((1 + b / 4).min(8))
        } else {
            PROJECTS[next(PROJECTS.len() as u64) as usize]
        };
        let size = if next(6) == 0 {
            20 + next(21)
        } else {
            1 + next(4)
        };
        let messages = (0..size)
            .map(|i| {
                let pad = "x".repeat(next(370) as usize);
                format!(r#"{{"b":{b},"i":{i},"p":{project},"pad":"{pad}"}}"#)
            })
            .collect();
        let durability = if next(2) == 0 {
            Durability::Sync
        } else {
            Durability::Written
        };
        steps.push(Step::Append {
            project,
            messages,
            durability,
        });
    }
    steps
}

/// What the workload did, as the test saw it.
#[derive(Default)]
struct Log {
    /// Every batch started, per project, in order (acknowledged or not).
    batches: HashMap<u64, Vec<Vec<String>>>,
    /// After the k-th acknowledgement (index k - 1): how many batches of each project are
    /// durable.
    durable_after: Vec<HashMap<u64, usize>>,
    /// Projects created from spare directories.
    spares_taken: u64,
}

impl Log {
    fn durable_at(&self, acked: usize) -> HashMap<u64, usize> {
        acked
            .checked_sub(1)
            .map(|k| self.durable_after[k].clone())
            .unwrap_or_default()
    }
}

fn open(dir: &Path) -> Store {
    Options::new()
        .segment_bytes(SEGMENT_BYTES)
        .open(dir)
        .unwrap()
}

/// Runs the workload on a store in `dir`, stopping at the first error (returned with the index
/// of the step that failed). The store is left in `store`.
///
/// `options`: how the store is opened, besides its segment size (steps say each append's
/// durability; the default durability decides whether spares are synced).
fn run(
    dir: &Path,
    steps: &[Step],
    rec: &Recorder,
    log: &mut Log,
    store: &mut Option<Store>,
    options: fn() -> Options,
) -> Option<(usize, Error)> {
    let options = || options().segment_bytes(SEGMENT_BYTES);
    *store = match options().open(dir) {
        Ok(s) => Some(s),
        Err(e) => return Some((usize::MAX, e)),
    };
    let mut durable: HashMap<u64, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let s = store.as_ref().expect("open");
        match step {
            Step::Append {
                project,
                messages,
                durability,
            } => {
                let batches = log.batches.entry(*project).or_default();
                batches.push(messages.clone());
                let n = batches.len();
                if let Err(e) = s.append_with(*project, messages, *durability) {
                    return Some((i, e));
                }
                if *durability == Durability::Sync {
                    durable.insert(*project, n);
                }
            }
            Step::Sync => {
                if let Err(e) = s.sync() {
                    return Some((i, e));
                }
                for (p, b) in &log.batches {
                    durable.insert(*p, b.len());
                }
            }
            Step::AwaitSpares => {
                assert!(s.wait_spares(2), "no spare project directories");
            }
            Step::Reopen => {
                log.spares_taken += s.spares_taken();
                drop(store.take());
                *store = Some(match options().open(dir) {
                    Ok(s) => s,
                    Err(e) => return Some((i, e)),
                });
                // A clean close syncs everything.
                for (p, b) in &log.batches {
                    durable.insert(*p, b.len());
                }
            }
        }
        log.durable_after.push(durable.clone());
        rec.set_acked(log.durable_after.len());
    }
    None
}

/// Opens the store in `dir` and checks what each project holds against `log`: byte for byte,
/// in order, at least `durable` whole batches, then appends to each. Returns whether any damage
/// was reported.
///
/// Damage (a record that fails its checks, with good records after it) is what an image gets
/// when a later unsynced write landed and an earlier one did not. Recovery never cuts good
/// records away, so it stays, reported as corruption: allowed only after the durable prefix,
/// and never returned as data. Without damage, a project holds a whole number of batches.
fn check(dir: &Path, log: &Log, durable: &HashMap<u64, usize>) -> Result<bool, String> {
    let store = open(dir);
    let mut damaged_any = false;
    for (&project, batches) in &log.batches {
        let expected: Vec<&String> = batches.iter().flatten().collect();
        let need = durable.get(&project).copied().unwrap_or(0);
        let need_len: usize = batches[..need].iter().map(Vec::len).sum();
        let mut got: Vec<(u64, String)> = Vec::new();
        let mut damaged = false;
        for item in store
            .oldest_first(project)
            .map_err(|e| format!("project {project}: {e}"))?
        {
            match item {
                Ok(m) => got.push((m.seq(), m.into_json())),
                Err(e) if e.is_corruption() => {
                    if got.len() < need_len {
                        return Err(format!(
                            "project {project}: damage within the durable prefix: {e}"
                        ));
                    }
                    damaged = true;
                }
                Err(e) => return Err(format!("project {project}: {e}")),
            }
        }
        for (i, (seq, json)) in got.iter().enumerate() {
            if i > 0 && *seq <= got[i - 1].0 {
                return Err(format!(
                    "project {project}: seq {seq} after {}",
                    got[i - 1].0
                ));
            }
            if !damaged && *seq != FIRST_SEQ + i as u64 {
                return Err(format!("project {project}: seq {seq} at position {i}"));
            }
            if expected.get((*seq - FIRST_SEQ) as usize) != Some(&json) {
                return Err(format!(
                    "project {project}: seq {seq} holds {json:?}, which was never appended there"
                ));
            }
        }
        if got.len() < need_len || (need_len > 0 && got[need_len - 1].0 != need_len as u64) {
            return Err(format!(
                "project {project}: {} messages survived, the first {need_len} were acknowledged \
                 as durable",
                got.len()
            ));
        }
        if !damaged {
            // Whole batches only.
            let mut at = 0;
            for b in batches {
                if at + b.len() > got.len() {
                    break;
                }
                at += b.len();
            }
            if at != got.len() {
                return Err(format!(
                    "project {project}: {} messages is not a whole number of batches",
                    got.len()
                ));
            }
        }
        let last = got.last().map_or(0, |m| m.0);
        let a = store
            .append(project, [r#"{"after":"crash"}"#])
            .map_err(|e| format!("project {project}: appending after the crash: {e}"))?;
        if a.first_seq <= last || (!damaged && a.first_seq != last + 1) {
            return Err(format!(
                "project {project}: next seq {} after {last}",
                a.first_seq
            ));
        }
        let newest = store
            .newest_first(project)
            .and_then(|mut it| it.next().transpose())
            .map_err(|e| format!("project {project}: {e}"))?
            .map(|m| m.into_json());
        if newest.as_deref() != Some(r#"{"after":"crash"}"#) {
            return Err(format!("project {project}: newest is {newest:?}"));
        }
        damaged_any |= damaged;
    }
    drop(store);
    let mut problems = Vec::new();
    verify(dir, None, |p| problems.push(p.to_string()), |_| {})
        .map_err(|e| format!("verify: {e}"))?;
    if !damaged_any && !problems.is_empty() {
        return Err(format!("verify after repair: {problems:?}"));
    }
    if damaged_any && problems.is_empty() {
        return Err("reads reported damage that verify does not".to_string());
    }
    Ok(damaged_any)
}

fn check_image(point: &CrashPoint, policy: Policy, log: &Log) -> Result<bool, String> {
    let image = scratch();
    point.image(policy, image.path()).unwrap();
    let result = check(image.path(), log, &log.durable_at(point.acked));
    if result.is_err() {
        // Keep a fresh copy of the failing image for inspection.
        let keep = std::env::temp_dir().join("activitylog-power-loss-failure");
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::create_dir_all(&keep).unwrap();
        point.image(policy, &keep).unwrap();
        eprintln!(
            "the failing image is in {}\n{}",
            keep.display(),
            point.describe()
        );
    }
    result
}

/// Projects from synced spares (a store whose appends are durable by default).
#[test]
fn every_acknowledged_sync_survives_every_power_cut_image() {
    power_cuts(false, || Options::new().durability(Durability::Sync));
}

/// Projects from spares made without a sync (a store whose appends are `Written` by default):
/// their first logs are new, as on the spot.
#[test]
fn projects_from_unsynced_spares_survive_every_power_cut_image() {
    power_cuts(false, Options::new);
}

/// Every project made on the spot: its first log written without a sync, under a name that
/// says so until its first sync.
#[test]
fn projects_made_on_the_spot_survive_every_power_cut_image() {
    power_cuts(true, || Options::new().spare_projects(0));
}

/// The same three stores on a file system without a journal, whose renames a power cut may
/// leave under both names or neither: there a project made from a synced spare waits for the
/// directory of projects' sync too, and a log holding acknowledged records is given its name
/// by a link, never renamed.
#[test]
fn every_acknowledged_sync_survives_power_cuts_without_atomic_renames() {
    power_cuts_where(false, false, || Options::new().durability(Durability::Sync));
}

/// See [`every_acknowledged_sync_survives_power_cuts_without_atomic_renames`].
#[test]
fn projects_from_unsynced_spares_survive_power_cuts_without_atomic_renames() {
    power_cuts_where(false, false, Options::new);
}

/// See [`every_acknowledged_sync_survives_power_cuts_without_atomic_renames`].
#[test]
fn projects_made_on_the_spot_survive_power_cuts_without_atomic_renames() {
    power_cuts_where(true, false, || Options::new().spare_projects(0));
}

/// A `Sync` store killed after acknowledging records in a project made from a synced spare,
/// on a file system without atomic renames, leaves the project's first log under its
/// temporary name; the next open names it (linked, the directory synced, the old name
/// removed). A power cut anywhere in that open keeps every acknowledged record, and the open
/// after it leaves the log under one name.
#[test]
fn a_power_cut_while_an_open_names_a_first_log_loses_nothing() {
    let root = scratch();
    let live = root.path().join("live");
    let killed = root.path().join("killed");
    std::fs::create_dir(&live).unwrap();
    let sync = || {
        Options::new()
            .durability(Durability::Sync)
            .spare_projects(4)
    };
    let rec = Recorder::register(&live, false);
    rec.without_atomic_renames();
    let store = sync().open(&live).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    assert!(store.wait_spares(4));
    store.append(2, [r#"{"b":1}"#, r#"{"b":2}"#]).unwrap();
    // The kill: the files as they are now (the one spare taken leaves three, so the spare
    // thread is idle).
    copy_dir(&live, &killed);
    drop(store);
    rec.unregister();
    let first = |dir: &Path, ext: &str| {
        crate::store::project_dir_in(dir, 2).join(format!("00000000000000000001.{ext}"))
    };
    assert!(first(&killed, "log.new").exists() && !first(&killed, "log").exists());

    let rec = Recorder::register(&killed, true);
    rec.without_atomic_renames();
    let read = |store: &Store| -> Vec<String> {
        store
            .oldest_first(2)
            .unwrap()
            .map(|m| m.unwrap().into_json())
            .collect()
    };
    let store = sync().open(&killed).unwrap();
    assert_eq!(read(&store), [r#"{"b":1}"#, r#"{"b":2}"#]);
    drop(store);
    rec.unregister();
    let points = rec.take_points();
    assert!(
        points
            .iter()
            .any(|p| p.before == "sync of directory projects/2"),
        "the open named the log"
    );
    let mut images = 0;
    for (k, point) in points.iter().enumerate() {
        let policies = [Policy::KeepAll, Policy::DropAll, Policy::GarbageAll]
            .into_iter()
            .chain((0..8).map(|r| Policy::Random(k as u64 * 100 + r)));
        for policy in policies {
            let image = scratch();
            point.image(policy, image.path()).unwrap();
            images += 1;
            let store = sync().open(image.path()).unwrap();
            assert_eq!(
                read(&store),
                [r#"{"b":1}"#, r#"{"b":2}"#],
                "a power cut before {} ({policy:?})",
                point.before
            );
            drop(store);
            assert!(
                first(image.path(), "log").exists() && !first(image.path(), "log.new").exists(),
                "after a power cut before {} ({policy:?}), the log has one name",
                point.before
            );
        }
    }
    eprintln!(
        "power loss while an open names a first log: {} crash points, {images} images, 0 lost",
        points.len()
    );
}

/// Copies the directory `from` to `to` (a new directory), files and subdirectories.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// [`power_cuts_where`] on a journaling file system (atomic renames).
fn power_cuts(on_the_spot: bool, options: fn() -> Options) {
    power_cuts_where(on_the_spot, true, options);
}

/// Runs the workload (see [`workload`] for `on_the_spot`) on a store opened with `options`,
/// then checks every image a power cut could leave before each of its operations, renames
/// modelled as `atomic` or not.
fn power_cuts_where(on_the_spot: bool, atomic: bool, options: fn() -> Options) {
    let root = scratch();
    let rec = Recorder::register(root.path(), true);
    if !atomic {
        rec.without_atomic_renames();
    }
    let steps = workload(env_or("POWER_LOSS_BATCHES", 60), on_the_spot);
    let mut log = Log::default();
    let mut store = None;
    let failed = run(root.path(), &steps, &rec, &mut log, &mut store, options);
    drop(store);
    rec.unregister();
    assert!(failed.is_none(), "the workload failed: {failed:?}");
    if on_the_spot {
        assert_eq!(log.spares_taken, 0);
        assert!(log.batches.len() >= 6, "{} projects", log.batches.len());
    } else {
        assert!(
            log.spares_taken >= 2,
            "only {} projects made from spares",
            log.spares_taken
        );
    }
    let points = rec.take_points();
    let randoms = env_or("POWER_LOSS_IMAGES", 2);
    let mut images = 0;
    let mut damaged = 0;
    let only: Option<usize> = std::env::var("POWER_LOSS_POINT")
        .ok()
        .and_then(|v| v.parse().ok());
    for (k, point) in points.iter().enumerate() {
        if only.is_some_and(|o| o != k) {
            continue;
        }
        let mut policies = vec![Policy::KeepAll, Policy::DropAll, Policy::GarbageAll];
        policies.extend((0..randoms).map(|r| Policy::Random(k as u64 * 1000 + r)));
        for policy in policies {
            images += 1;
            match check_image(point, policy, &log) {
                Ok(d) => damaged += usize::from(d),
                Err(e) => panic!(
                    "power cut before operation {k} ({}), image {policy:?}: {e}",
                    point.before
                ),
            }
        }
    }
    eprintln!(
        "power loss: {} crash points, {images} images ({damaged} with unsynced writes lost before \
         later ones, reported as damage), {} acknowledgements, 0 lost",
        points.len(),
        log.durable_after.len()
    );
    assert!(points.len() > 100, "only {} crash points", points.len());
}

/// Runs the workload with the `nth` operation of `kind` failing; returns false once the
/// workload no longer reaches an `nth` operation.
fn run_with_fault(kind: FaultKind, nth: u64) -> bool {
    let root = scratch();
    let steps = workload(40, false);
    let rec: Arc<Recorder> = Recorder::register(root.path(), false);
    rec.fail(kind, nth);
    let mut log = Log::default();
    let mut store = None;
    let failed = run(
        root.path(),
        &steps,
        &rec,
        &mut log,
        &mut store,
        Options::new,
    );
    let faulted = rec.faulted();
    rec.unregister();
    let Some((path, at_step, zeros)) = faulted else {
        assert!(failed.is_none(), "{failed:?} without an injected fault");
        return false;
    };
    let what = format!("{kind:?} fault {nth} on {}", path.display());
    match &failed {
        None => {
            // Callers never see failures of the index (a cache, rebuilt on open), of closing
            // (logged; what was not synced is still in the page cache, and the clock's
            // reservation stands), or of making room ahead of a log's end (appends write
            // without it).
            let name = path.to_string_lossy();
            let closing = matches!(steps.get(at_step), Some(Step::Reopen));
            assert!(
                name.ends_with(".idx") || closing || (zeros && is_log(&path)),
                "{what}: no error reached the caller"
            );
        }
        Some((_, e)) => assert!(
            matches!(e, Error::Io { .. } | Error::Poisoned { .. }),
            "{what}: {e:?}"
        ),
    }
    let mut taken_back = false;
    if let (Some((i, _)), Some(store)) = (&failed, &store) {
        if let (Some(Step::Append { project, .. }), true) = (steps.get(*i), is_log(&path)) {
            let next = store.append(*project, [r#"{"next":1}"#]);
            match kind {
                // A failed fsync of a log poisons it: later appends to it are refused.
                FaultKind::Sync => assert!(
                    matches!(next, Err(Error::Poisoned { .. })),
                    "{what}: then {next:?}"
                ),
                // A failed write is taken back: the batch is not there and the log goes on.
                FaultKind::Write => {
                    assert!(next.is_ok(), "{what}: then {next:?}");
                    let batches = log.batches.get_mut(project).unwrap();
                    batches.pop();
                    batches.push(vec![r#"{"next":1}"#.to_owned()]);
                    taken_back = true;
                }
                FaultKind::OpenDir => unreachable!("{what}: a directory is not a log"),
            }
        }
    }
    drop(store);
    // No power was lost: everything acknowledged at any level is there, the failed batch is
    // whole or absent, and the store opens and takes appends.
    let all_acked: HashMap<u64, usize> = {
        let mut m: HashMap<u64, usize> = log.batches.iter().map(|(p, b)| (*p, b.len())).collect();
        if let (Some((i, _)), false) = (&failed, taken_back) {
            if let Some(Step::Append { project, .. }) = steps.get(*i) {
                *m.get_mut(project).unwrap() -= 1;
            }
        }
        m
    };
    if let Err(e) = check(root.path(), &log, &all_acked) {
        panic!("{what}: after reopening: {e}");
    }
    true
}

/// Whether `path` is a log: named, or a new project's first, not yet synced.
fn is_log(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".log") || name.ends_with(".log.new")
}

/// Fails the N-th operation of `kind`, one per run, for every N the workload reaches; returns
/// how many faults were injected.
fn fault_every_operation(kind: FaultKind) -> u64 {
    let mut n = 1;
    while run_with_fault(kind, n) {
        n += 1;
    }
    eprintln!(
        "{kind:?} faults: {} injected, one per run, 0 acknowledged lost",
        n - 1
    );
    n - 1
}

#[test]
fn a_failed_write_reaches_the_caller_and_loses_nothing_acknowledged() {
    let n = fault_every_operation(FaultKind::Write);
    assert!(n >= 50, "only {n} writes in the workload");
}

#[test]
fn a_failed_sync_reaches_the_caller_and_loses_nothing_acknowledged() {
    let n = fault_every_operation(FaultKind::Sync);
    assert!(n >= 20, "only {n} syncs in the workload");
}

/// An idle project's close (an eviction, under `max_open_projects`) fails its fsync: the
/// store's `sync` must not then claim everything durable. A power cut just after finds the
/// project's append lost — which `sync` must have reported.
#[test]
fn a_failed_eviction_close_fails_the_stores_sync() {
    let root = scratch();
    let rec = Recorder::register(root.path(), true);
    let store = Options::new()
        .max_open_projects(1)
        .spare_projects(0)
        .open(root.path())
        .unwrap();
    store.append(1, [r#"{"p":1}"#]).unwrap();
    rec.fail(FaultKind::Sync, 1);
    // Opening project 2 evicts project 1: its close syncs, and that fsync fails.
    store.append(2, [r#"{"p":2}"#]).unwrap();
    assert!(rec.faulted().is_some());
    let synced = store.sync();
    assert!(
        matches!(synced, Err(Error::Poisoned { project: 1 })),
        "{synced:?}"
    );
    // The state right after that sync, cut by a power cut that keeps nothing unsynced.
    rec.take_points();
    store
        .append_with(2, [r#"{"p":2,"n":2}"#], Durability::Sync)
        .unwrap();
    let point = rec.take_points().into_iter().next().expect("a crash point");
    rec.unregister();
    let image = scratch();
    point.image(Policy::DropAll, image.path()).unwrap();
    let reopened = Options::new().spare_projects(0).open(image.path()).unwrap();
    assert_eq!(
        reopened.newest_first(1).unwrap().count(),
        0,
        "the loss `sync` reported"
    );
}
