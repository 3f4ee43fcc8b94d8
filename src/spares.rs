//! Spare project directories, made ahead by a background thread so that creating a project is
//! a rename.
//!
//! A new project needs a directory holding its first segment, and before its first message
//! is durable: its log synced (header and message), the directory's entries synced, and the
//! directory of projects synced. Made on the spot, with its first durable message, that is
//! three syncs where an append to an existing project takes one; and making the directory and
//! its two files costs a few hundred microseconds of file-system work even without a sync. A
//! spare is a directory made ahead, waiting in the projects directory as `.spare-<n>`; creating
//! a project renames one into place. Two kinds, by the store's default durability:
//!
//! - `Sync` stores: a first segment (log and index) whose header is synced, in a directory
//!   whose entries are synced. The append's own sync of the log and one sync of the projects
//!   directory (which makes the rename durable) are then all its first durable message waits
//!   for.
//! - `Written` stores: made without a sync, its log under the name of a log not yet synced
//!   ([`segment::new_log_path`]) — what making the project on the spot would have left, made
//!   ahead on another thread. Its first sync is then that of a project made on the spot.
//!
//! A spare never holds a message: a project's records are written only after the rename. After
//! a crash, the directory of projects may still list a spare whose rename was not durable, its
//! log holding an unacknowledged record; spares left by an earlier process are removed, never
//! used. Reads ignore them (project directories are named by decimal ids).
//!
//! The thread starts after the first project created and makes spares until `target` wait;
//! it stops when the store closes, which removes the spares still waiting. A spare over an hour
//! old (by its base stamp) is replaced rather than used: a segment whose base stamp is far
//! behind its records reaches the stamp limit early. If making one fails (a full disk), the
//! thread waits for the next project creation to try again, and projects are created on the
//! spot meanwhile. With no spares wanted (`target` 0), leftovers stay, ignored.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::project::FIRST_SEQ;
use crate::record::SegmentHeader;
use crate::segment;

/// Name prefix of spare directories in the directory of projects.
const PREFIX: &str = ".spare-";

/// A spare older than this (by its base stamp) is replaced rather than used: one hour, in µs.
const MAX_AGE_US: u64 = 3_600_000_000;

/// A spare project directory, ready to be renamed into place.
#[derive(Debug)]
pub(crate) struct Spare {
    /// Its path, in the directory of projects.
    pub(crate) path: PathBuf,
    /// The header of the segment it holds: first sequence number [`FIRST_SEQ`], and a base
    /// stamp taken from the store's clock when it was made (so no later stamp is below it).
    pub(crate) header: SegmentHeader,
    /// Made without a sync: its log is named [`segment::new_log_path`], as a project made on
    /// the spot has it, until the project's first sync.
    pub(crate) new_log: bool,
}

/// The pool of spares of one writable store.
pub(crate) struct Spares {
    /// The directory of projects.
    dir: PathBuf,
    clock: Arc<Clock>,
    /// How many spares the thread keeps ready.
    target: usize,
    /// Spares are made synced (for a store whose appends are `Sync` by default), or without a
    /// sync ([`Spare::new_log`]).
    synced: bool,
    state: Mutex<State>,
    /// Wakes the thread: a spare was taken, or the store is closing.
    wake: Condvar,
    /// A spare was asked for since the last [`refill`](Self::refill).
    wanted: AtomicBool,
}

#[derive(Default)]
struct State {
    ready: Vec<Spare>,
    /// Spares too old to use, for the thread to remove.
    old: Vec<Spare>,
    /// The number in the next spare's name.
    next_name: u64,
    thread: Option<JoinHandle<()>>,
    /// Making a spare failed; the thread waits for the next take to try again.
    paused: bool,
    closed: bool,
    /// Spares taken so far.
    taken: u64,
}

impl Spares {
    /// A pool for the directory of projects `dir` that keeps `target` spares once projects
    /// are being created (none is made before the first take), `synced` or not.
    pub(crate) fn new(dir: PathBuf, clock: Arc<Clock>, target: usize, synced: bool) -> Arc<Spares> {
        Arc::new(Spares {
            dir,
            clock,
            target,
            synced,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            wanted: AtomicBool::new(false),
        })
    }

    /// A spare whose segment may take records stamped `first..=last` (its base stamp is at
    /// most `first`, and `last` is within the segment's stamp range), if one is ready. Either
    /// way, the next [`refill`](Self::refill) makes up for it.
    pub(crate) fn take(&self, first: u64, last: u64) -> Option<Spare> {
        if self.target == 0 {
            return None;
        }
        let mut s = self.state.lock();
        if s.closed {
            return None;
        }
        // Old spares go (the thread removes them and makes new ones): a segment whose base
        // stamp is far behind its records reaches the stamp limit, and is sealed, early.
        let State { ready, old, .. } = &mut *s;
        old.extend(ready.extract_if(.., |sp| {
            first.saturating_sub(sp.header.base_stamp) > MAX_AGE_US
        }));
        let usable = |sp: &Spare| {
            sp.header.base_stamp <= first
                && last - sp.header.base_stamp <= crate::record::MAX_STAMP_DELTA_US
        };
        let taken = s
            .ready
            .iter()
            .rposition(usable)
            .map(|i| s.ready.swap_remove(i));
        s.taken += u64::from(taken.is_some());
        self.wanted.store(true, Ordering::Release);
        taken
    }

    /// Starts or wakes the thread if a spare was asked for since the last call. Called once
    /// the append that took it has synced: made meanwhile, a spare would add its own changes to
    /// the directory of projects to the sync of that directory the append waits for.
    pub(crate) fn refill(self: &Arc<Self>) {
        if !self.wanted.load(Ordering::Acquire) || !self.wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut s = self.state.lock();
        if s.closed {
            return;
        }
        s.paused = false;
        if s.thread.is_some() {
            self.wake.notify_one();
            return;
        }
        let pool = self.clone();
        match std::thread::Builder::new()
            .name("activitylog-spares".into())
            .spawn(move || pool.run())
        {
            Ok(handle) => s.thread = Some(handle),
            Err(e) => {
                log::warn!("cannot start the spare-directory thread ({e})");
                // Do not try again: projects are made on the spot.
                s.closed = true;
            }
        }
    }

    /// Waits (up to ten seconds, or until making one fails) until `n` spares are ready;
    /// whether they are.
    #[cfg(test)]
    pub(crate) fn wait_ready(&self, n: usize) -> bool {
        for _ in 0..10_000 {
            {
                let s = self.state.lock();
                if s.ready.len() >= n {
                    return true;
                }
                if s.paused || s.closed {
                    return false;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    /// How many spares were taken.
    #[cfg(test)]
    pub(crate) fn taken(&self) -> u64 {
        self.state.lock().taken
    }

    /// Stops the thread and removes the spares still waiting (their directories hold no
    /// message).
    pub(crate) fn close(&self) {
        let thread = {
            let mut s = self.state.lock();
            s.closed = true;
            self.wake.notify_one();
            s.thread.take()
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        let left = {
            let mut s = self.state.lock();
            let mut left = std::mem::take(&mut s.ready);
            left.append(&mut s.old);
            left
        };
        for spare in left {
            remove(&spare.path);
        }
    }

    /// The thread: removes spares left by an earlier process, then keeps `target` ready.
    fn run(self: Arc<Self>) {
        self.remove_leftovers();
        let mut s = self.state.lock();
        loop {
            if s.closed {
                return;
            }
            if !s.old.is_empty() {
                let old = std::mem::take(&mut s.old);
                drop(s);
                for spare in old {
                    remove(&spare.path);
                }
                s = self.state.lock();
                continue;
            }
            if s.paused || s.ready.len() >= self.target {
                self.wake.wait(&mut s);
                continue;
            }
            let name = s.next_name;
            s.next_name += 1;
            drop(s);
            let made = self.make(name);
            s = self.state.lock();
            match made {
                Ok(Some(spare)) => s.ready.push(spare),
                Ok(None) => {}
                Err(e) => {
                    log::warn!("cannot make a spare project directory: {e}");
                    s.paused = true;
                }
            }
        }
    }

    /// Makes spare number `name`: `None` if that name is taken (an earlier process's spare
    /// that could not be removed).
    fn make(&self, name: u64) -> Result<Option<Spare>> {
        let path = self.dir.join(format!("{PREFIX}{name}"));
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
        let made = (|| {
            let header = SegmentHeader {
                first_seq: FIRST_SEQ,
                base_stamp: self.clock.next()?,
            };
            if self.synced {
                // The log's header is synced by `create_in_new_dir`; the directory's entries now.
                segment::create_in_new_dir(&path, header)?;
                segment::sync_dir(&path)?;
            } else {
                segment::create_new(&path, header)?;
            }
            Ok(Spare {
                path: path.clone(),
                header,
                new_log: !self.synced,
            })
        })();
        if made.is_err() {
            remove(&path);
        }
        made.map(Some)
    }

    /// Removes every spare directory in the directory of projects (called before this pool
    /// makes any).
    fn remove_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(is_spare_name) {
                remove(&entry.path());
            }
        }
    }
}

/// Whether a name in the directory of projects is a spare's.
pub(crate) fn is_spare_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes a spare directory; a failure is logged (a leftover is removed by the next process
/// that creates projects).
fn remove(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path) {
        log::warn!("cannot remove {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000_000;

    fn spare(base_stamp: u64) -> Spare {
        Spare {
            path: PathBuf::from(format!("/nonexistent/.spare-{base_stamp}")),
            header: SegmentHeader {
                first_seq: FIRST_SEQ,
                base_stamp,
            },
            new_log: false,
        }
    }

    fn bases(spares: &[Spare]) -> Vec<u64> {
        let mut b: Vec<u64> = spares.iter().map(|s| s.header.base_stamp).collect();
        b.sort_unstable();
        b
    }

    #[test]
    fn a_spare_is_taken_only_if_its_stamps_fit_and_old_ones_are_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(Clock::open(&tmp.path().join("CLOCK")).unwrap());
        let pool = Spares::new(tmp.path().to_path_buf(), clock, 4, true);
        pool.state.lock().ready = vec![spare(10 * HOUR), spare(12 * HOUR), spare(13 * HOUR)];
        // Records older than every spare (an import): none fits, none is too old.
        assert!(pool.take(9 * HOUR, 9 * HOUR).is_none());
        assert_eq!(
            bases(&pool.state.lock().ready),
            [10 * HOUR, 12 * HOUR, 13 * HOUR]
        );
        // A batch spanning past the segment's stamp range from every base: none fits.
        let far = 13 * HOUR + crate::record::MAX_STAMP_DELTA_US + 1;
        assert!(pool.take(13 * HOUR, far).is_none());
        // Half past twelve: the one made at ten is set aside; one that fits is taken.
        let taken = pool
            .take(12 * HOUR + HOUR / 2, 12 * HOUR + HOUR / 2)
            .unwrap();
        assert_eq!(taken.header.base_stamp, 12 * HOUR);
        let s = pool.state.lock();
        assert_eq!(bases(&s.ready), [13 * HOUR]);
        assert_eq!(bases(&s.old), [10 * HOUR]);
        assert_eq!(s.taken, 1);
        assert!(
            pool.wanted.load(Ordering::Acquire),
            "the thread is to make up for it"
        );
    }

    #[test]
    fn a_failure_to_make_a_spare_pauses_the_thread_until_the_next_take() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(Clock::open(&tmp.path().join("CLOCK")).unwrap());
        // No directory of projects: making a spare fails.
        let pool = Spares::new(tmp.path().join("missing"), clock, 2, true);
        assert!(pool.take(1, 1).is_none());
        pool.refill();
        assert!(!pool.wait_ready(1), "paused, not waiting ten seconds");
        assert!(pool.state.lock().paused);
        // The next creation tries again; with the directory there, spares follow.
        fs::create_dir(tmp.path().join("missing")).unwrap();
        assert!(pool.take(1, 1).is_none());
        pool.refill();
        assert!(pool.wait_ready(2));
        pool.close();
        assert_eq!(fs::read_dir(tmp.path().join("missing")).unwrap().count(), 0);
    }

    /// Turned off, the pool never starts its thread, however many projects are made.
    #[test]
    fn turned_off_no_thread_starts() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(Clock::open(&tmp.path().join("CLOCK")).unwrap());
        let pool = Spares::new(tmp.path().to_path_buf(), clock, 0, true);
        for _ in 0..3 {
            assert!(pool.take(1, 1).is_none());
            pool.refill();
        }
        assert!(pool.state.lock().thread.is_none());
        assert!(!pool.wanted.load(Ordering::Acquire));
    }

    #[test]
    fn spare_names() {
        assert!(is_spare_name(".spare-0"));
        assert!(is_spare_name(".spare-123"));
        for name in [
            ".spare-",
            ".spare-x",
            "spare-1",
            "12",
            ".tmp-abc",
            ".spare-1a",
        ] {
            assert!(!is_spare_name(name), "{name}");
        }
    }
}
