//! Spare project directories, made ahead by a background thread so that creating a project is
//! a rename.
//!
//! A new project needs a directory holding its first segment, and before its first message
//! is durable: its log synced (header and message), the directory's entries synced, and the
//! directory of projects synced. Made on the spot, with its first durable message, that is
//! three syncs where an append to an existing project takes one; and making the directory and
//! its two files costs a few hundred microseconds of file-system work even without a sync. A
//! spare is a directory made ahead, waiting in the projects directory as `.spare-<n>`: an index
//! holding its header, and an empty log under the name of a log not yet synced
//! ([`segment::new_log_path`]). Creating a project renames one into place and writes the log's
//! header, which names the project. Two kinds, by the store's default durability:
//!
//! - `Sync` stores: the spare's directory and the directory of projects are synced, so its
//!   entries are durable under the spare's name. The append's own sync of the log is then all
//!   its first durable message waits for: should a crash lose the rename, the next open finds
//!   the log in the spare, naming its project, and renames it into place ([`adopted`]). The
//!   rename, the log's name and the directories are made durable later, by the project's next
//!   sync that is not an append's (a roll, [`Store::sync`](crate::Store::sync), a close). This
//!   needs renames that a crash leaves whole (under the old name or the new, never neither):
//!   on a file system not known to journal them ([`fsio::renames_are_atomic`]), the first
//!   append's sync also syncs the directory of projects (two syncs), and the log is named
//!   later by a link, so that no crash loses both of its names.
//! - `Written` stores: made without a sync — what making the project on the spot would have
//!   left, made ahead on another thread. Its first sync is then that of a project made on the
//!   spot.
//!
//! A spare holds no record until it is renamed. Spares left by an earlier process are removed,
//! unless their log's header reads: those were renamed, and the rename was lost. Reads ignore
//! spares (project directories are named by decimal ids), but for those.
//!
//! The thread starts after the first project created and makes spares, in batches whose syncs
//! the file system can share, whenever no more than half of `target` wait; it stops when the
//! store closes, which removes the spares still waiting. If making one fails (a full disk), the
//! thread waits for the next project creation to try again, and projects are created on the
//! spot meanwhile. With no spares wanted (`target` 0), leftovers stay, ignored.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::dirsync::DirSync;
use crate::error::{Error, Result};
#[cfg(doc)]
use crate::fsio;
use crate::project::FIRST_SEQ;
use crate::segment;

/// The name of the thread that makes spares.
pub(crate) const THREAD_NAME: &str = "activitylog-spares";

/// Name prefix of spare directories in the directory of projects.
const PREFIX: &str = ".spare-";

/// A spare project directory, ready to be renamed into place.
#[derive(Debug)]
pub(crate) struct Spare {
    /// Its path, in the directory of projects.
    pub(crate) path: PathBuf,
    /// Its entries are synced, and where renames are atomic ([`Spare::one_sync`]) its own entry
    /// in the directory of projects too.
    pub(crate) synced: bool,
    /// Synced, on a file system whose renames are atomic across a power cut: a record written
    /// to its log is durable once the log is synced (recovery finds the spare under either
    /// name, see [`adopted`]).
    pub(crate) one_sync: bool,
}

/// The pool of spares of one writable store.
pub(crate) struct Spares {
    /// The directory of projects.
    dir: PathBuf,
    /// Its syncs, shared with the store's projects.
    dir_sync: Arc<DirSync>,
    /// How many spares the thread keeps ready.
    target: usize,
    /// Spares are made synced (for a store whose appends are `Sync` by default), or without a
    /// sync.
    synced: bool,
    /// Renames are atomic across a power cut on the store's file system (asked only for
    /// synced spares).
    atomic_renames: bool,
    state: Mutex<State>,
    /// Wakes the thread: a spare was taken, or the store is closing.
    wake: Condvar,
    /// A spare was asked for since the last [`refill`](Self::refill).
    wanted: AtomicBool,
}

#[derive(Default)]
struct State {
    ready: Vec<Spare>,
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
    /// A pool for the directory of projects that `dir_sync` syncs, which keeps `target`
    /// spares once projects are being created (none is made before the first take), `synced`
    /// or not.
    pub(crate) fn new(dir_sync: Arc<DirSync>, target: usize, synced: bool) -> Arc<Spares> {
        let dir = dir_sync.path().to_path_buf();
        // Asked only where it matters (it may read `/proc/self/mountinfo`).
        let atomic_renames = synced && crate::fsio::renames_are_atomic(&dir);
        Arc::new(Spares {
            dir,
            dir_sync,
            target,
            synced,
            atomic_renames,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            wanted: AtomicBool::new(false),
        })
    }

    /// A spare, if one is ready. Either way, the next [`refill`](Self::refill) makes up for it.
    pub(crate) fn take(&self) -> Option<Spare> {
        if self.target == 0 {
            return None;
        }
        let mut s = self.state.lock();
        if s.closed {
            return None;
        }
        let taken = s.ready.pop();
        s.taken += u64::from(taken.is_some());
        self.wanted.store(true, Ordering::Release);
        taken
    }

    /// Starts or wakes the thread if a spare was asked for since the last call. Called once
    /// the append that took it has synced: made meanwhile, a spare would add its own changes
    /// (and syncs) to the file system's journal commits the append waits for.
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
            .name(THREAD_NAME.into())
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
        let left = std::mem::take(&mut self.state.lock().ready);
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
            if s.paused || s.ready.len() > self.target / 2 {
                self.wake.wait(&mut s);
                continue;
            }
            // Spares are made in batches: all that are missing, their syncs together, so that
            // the file system commits the batch's changes once rather than once per spare.
            let missing = self.target - s.ready.len();
            let first_name = s.next_name;
            s.next_name += missing as u64;
            drop(s);
            let made = self.make_batch(first_name..first_name + missing as u64);
            s = self.state.lock();
            match made {
                Ok(spares) => s.ready.extend(spares),
                Err(e) => {
                    log::warn!("cannot make a spare project directory: {e}");
                    s.paused = true;
                }
            }
        }
    }

    /// Makes the spares numbered `names` (skipping names taken by an earlier process's spares
    /// that could not be removed), then, for synced spares, syncs their directories and the
    /// directory of projects. If anything fails, the batch is removed.
    fn make_batch(&self, names: std::ops::Range<u64>) -> Result<Vec<Spare>> {
        let mut spares = Vec::with_capacity(names.clone().count());
        let made = (|| {
            for name in names {
                if let Some(spare) = self.make(name)? {
                    spares.push(spare);
                }
            }
            if self.synced && !spares.is_empty() {
                for spare in &spares {
                    segment::sync_dir(&spare.path)?;
                }
                // Where renames are not atomic, a project made from a spare syncs the directory
                // of projects before its first records count as durable, which makes its entry
                // durable under its new name: the spare's own never needs to be.
                if self.atomic_renames {
                    self.dir_sync.sync()?;
                }
            }
            Ok(())
        })();
        match made {
            Ok(()) => Ok(spares),
            Err(e) => {
                for spare in spares {
                    remove(&spare.path);
                }
                Err(e)
            }
        }
    }

    /// Makes spare number `name`, without a sync: `None` if that name is taken (an earlier
    /// process's spare that could not be removed).
    fn make(&self, name: u64) -> Result<Option<Spare>> {
        let path = self.dir.join(format!("{PREFIX}{name}"));
        match segment::create_dir_private(&path, false) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
        match segment::create_spare(&path) {
            Ok(()) => Ok(Some(Spare {
                path,
                synced: self.synced,
                one_sync: self.synced && self.atomic_renames,
            })),
            Err(e) => {
                remove(&path);
                Err(e)
            }
        }
    }

    /// Removes every spare directory in the directory of projects (called before this pool
    /// makes any) whose first log is missing or has no header that reads. Those holding a
    /// project's log ([`adopted`]; the store's open renamed them into place unless the
    /// project's directory was there too) stay, and so do those that cannot be read.
    fn remove_leftovers(&self) {
        for spare in spare_dirs(&self.dir).unwrap_or_default() {
            if !matches!(first_log_project(&spare), Ok(None)) {
                continue;
            }
            // A first log whose header does not read, but whose index vouches for records
            // (synced): a project's, its header damaged after its rename was lost. Which
            // project cannot be told; it is kept, not removed, and said so.
            if segment::index_vouches(&segment::index_path(&spare, FIRST_SEQ)).unwrap_or(true) {
                log::error!(
                    "{} holds a first log whose header does not read, though its index vouches \
                     for records: kept, not removed",
                    spare.display()
                );
                continue;
            }
            remove(&spare);
        }
    }
}

/// A spare directory holding a project's first log, whose header reads: a spare renamed into
/// place whose rename a crash lost ([`adopted`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Adopted {
    /// The project the log's header names.
    pub(crate) project: u64,
    /// The spare directory.
    pub(crate) spare: PathBuf,
    /// The project has a directory too: the spare cannot be renamed into place.
    pub(crate) beside: bool,
}

/// The spares in the directory of projects `dir` that hold a project's first log, by project.
/// A spare that cannot be read is an error: it may hold such a log.
pub(crate) fn adopted(dir: &Path) -> Result<Vec<Adopted>> {
    let mut found = Vec::new();
    for spare in spare_dirs(dir)? {
        if let Some(project) = first_log_project(&spare)? {
            let beside = dir.join(project.to_string()).exists();
            found.push(Adopted {
                project,
                spare,
                beside,
            });
        }
    }
    found.sort_by(|a, b| (a.project, &a.spare).cmp(&(b.project, &b.spare)));
    Ok(found)
}

/// The spare directories in the directory of projects `dir` (none if it does not exist).
fn spare_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    let mut spares = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        if entry.file_name().to_str().is_some_and(is_spare_name) {
            spares.push(entry.path());
        }
    }
    Ok(spares)
}

/// The project named by the header of the first log in the spare directory `spare` (under
/// either name): `None` if there is no such log, or its header does not read (too short, or
/// failing its checks).
fn first_log_project(spare: &Path) -> Result<Option<u64>> {
    for path in [
        segment::new_log_path(spare),
        segment::log_path(spare, FIRST_SEQ),
    ] {
        let file = match crate::fsio::open_regular(&path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
        match segment::read_header(&file, &path) {
            Ok(header) if header.first_seq == FIRST_SEQ => return Ok(Some(header.project)),
            Ok(_) | Err(Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
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

    #[test]
    fn a_take_pops_a_ready_spare_and_asks_for_another() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = Spares::new(Arc::new(DirSync::new(tmp.path().to_path_buf())), 4, true);
        pool.state.lock().ready = vec![Spare {
            path: tmp.path().join(".spare-0"),
            synced: true,
            one_sync: true,
        }];
        assert_eq!(pool.take().unwrap().path, tmp.path().join(".spare-0"));
        assert!(pool.take().is_none());
        assert_eq!(pool.state.lock().taken, 1);
        assert!(
            pool.wanted.load(Ordering::Acquire),
            "the thread is to make up for it"
        );
    }

    #[test]
    fn spares_are_made_in_batches_when_half_are_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = Spares::new(Arc::new(DirSync::new(tmp.path().to_path_buf())), 4, true);
        assert!(pool.take().is_none());
        pool.refill();
        assert!(pool.wait_ready(4));
        // One taken: three left, more than half; none is made.
        assert!(pool.take().is_some());
        pool.refill();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(pool.state.lock().ready.len(), 3);
        // Another: two left, half; two are made.
        assert!(pool.take().is_some());
        pool.refill();
        assert!(pool.wait_ready(4));
        for spare in &pool.state.lock().ready {
            let log = fs::metadata(segment::new_log_path(&spare.path)).unwrap();
            assert_eq!(log.len(), 0, "a spare's log is empty until it is taken");
        }
        pool.close();
    }

    #[test]
    fn leftovers_holding_a_project_log_are_found_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let projects = tmp.path();
        let pool = Spares::new(Arc::new(DirSync::new(projects.to_path_buf())), 1, true);
        for (name, project) in [(".spare-3", Some(42)), (".spare-4", None)] {
            let dir = projects.join(name);
            fs::create_dir(&dir).unwrap();
            segment::create_spare(&dir).unwrap();
            if let Some(project) = project {
                let header = crate::record::SegmentHeader {
                    first_seq: FIRST_SEQ,
                    base_stamp: 1,
                    project,
                };
                fs::write(segment::new_log_path(&dir), header.encode()).unwrap();
            }
        }
        assert_eq!(
            adopted(projects).unwrap(),
            [Adopted {
                project: 42,
                spare: projects.join(".spare-3"),
                beside: false
            }]
        );
        pool.remove_leftovers();
        assert!(projects.join(".spare-3").is_dir());
        assert!(!projects.join(".spare-4").exists());
    }

    #[test]
    fn a_failure_to_make_a_spare_pauses_the_thread_until_the_next_take() {
        let tmp = tempfile::tempdir().unwrap();
        // No directory of projects: making a spare fails.
        let pool = Spares::new(Arc::new(DirSync::new(tmp.path().join("missing"))), 2, true);
        assert!(pool.take().is_none());
        pool.refill();
        assert!(!pool.wait_ready(1), "paused, not waiting ten seconds");
        assert!(pool.state.lock().paused);
        // The next creation tries again; with the directory there, spares follow.
        fs::create_dir(tmp.path().join("missing")).unwrap();
        assert!(pool.take().is_none());
        pool.refill();
        assert!(pool.wait_ready(2));
        pool.close();
        assert_eq!(fs::read_dir(tmp.path().join("missing")).unwrap().count(), 0);
    }

    /// Turned off, the pool never starts its thread, however many projects are made.
    #[test]
    fn turned_off_no_thread_starts() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = Spares::new(Arc::new(DirSync::new(tmp.path().to_path_buf())), 0, true);
        for _ in 0..3 {
            assert!(pool.take().is_none());
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
