//! The store: a directory of projects, its lock, its clock, and the registry of open projects
//! and mapped segments.
//!
//! Layout of a store directory:
//!
//! ```text
//! DIR/STORE                    format version and the options that shape files
//! DIR/LOCK                     held (flock) by the one writing process
//! DIR/CLOCK                    the stamp reservation (see the clock module)
//! DIR/NEWEST                   each project's newest stamp, written on a clean close
//! DIR/CLEAN                    present only between a clean close and the next write
//! DIR/projects/<id>/<first_seq:020>.log   a segment's log
//! DIR/projects/<id>/<first_seq:020>.idx   its index
//! DIR/projects/.spare-<n>/     a spare project directory (see the spares module)
//! ```

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock, RwLockWriteGuard};

use crate::blocking;
use crate::clock::Clock;
use crate::dirsync::DirSync;
use crate::error::{Error, Result};
use crate::fsio;
use crate::json;
use crate::options::{
    Durability, Options, DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
};
use crate::project::{Appended, Project, Snapshot, FIRST_SEQ};
use crate::reader::NewestFirst;
use crate::record::{
    frame_len, read_u32, read_u64, Batch, FORMAT_VERSION, FRAME_OVERHEAD_BYTES, MAX_PAYLOAD_BYTES,
    MAX_RECORDS_PER_SEGMENT,
};
use crate::segment::{self, Sealed};
use crate::spares::{self, Spares};

const STORE_MAGIC: [u8; 8] = *b"ALOGSTOR";
const STORE_FILE: &str = "STORE";
const LOCK_FILE: &str = "LOCK";
pub(crate) const CLOCK_FILE: &str = "CLOCK";
pub(crate) const PROJECTS_DIR: &str = "projects";
const NEWEST_FILE: &str = "NEWEST";
const NEWEST_MAGIC: [u8; 8] = *b"ALOGNEWS";
const CLEAN_FILE: &str = "CLEAN";
const CLEAN_MAGIC: [u8; 8] = *b"ALOGCLEN";

/// The store's maps, keyed by project ids: foldhash, seeded per process (project ids come from
/// clients, so a fixed hash could be attacked with collisions; SipHash cost a tenth of a query).
type HashMap<K, V> = foldhash::HashMap<K, V>;

/// Mapped sealed segments by (project, first seq), with the tick of their last use.
type SealedCache = HashMap<(u64, u64), (Arc<Sealed>, u64)>;

/// The most bytes one append may carry (so that every offset fits the index's 32 bits).
pub const MAX_BATCH_BYTES: u64 = 1 << 30;

/// The projects a query may read, as `(newest stamp, id, slot)` keys (small, so they sort
/// fast), with the snapshots taken when a project had to be opened to learn its stamp: `slot`
/// indexes `snaps`, or is [`Candidates::NO_SNAP`]. A project that did not open gives its
/// error instead, for the query to yield before any message.
#[derive(Default)]
pub(crate) struct Candidates {
    pub(crate) keys: Vec<(u64, u64, u32)>,
    pub(crate) snaps: Vec<Option<Snapshot>>,
    pub(crate) errors: Vec<Error>,
}

impl Candidates {
    pub(crate) const NO_SNAP: u32 = u32::MAX;

    fn push_snapshot(&mut self, id: u64, snap: Snapshot) {
        self.keys
            .push((snap.last_stamp, id, self.snaps.len() as u32));
        self.snaps.push(Some(snap));
    }
}

/// An open store: cheap to clone, `Send + Sync`.
///
/// Appends to different projects run in parallel; appends to one project are serialised;
/// readers never block writers.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    options: Options,
    segment_bytes: u64,
    clock: Option<Arc<Clock>>,
    /// Spare project directories (writable stores only).
    spares: Option<Arc<Spares>>,
    /// `Written` appends may copy into room on this store's file system.
    room: bool,
    /// Read-only stores opened after a crash: projects found in a spare directory whose rename
    /// into place was lost (`spares::adopted`), read there until a writable open renames it.
    orphans: HashMap<u64, PathBuf>,
    /// The syncs of the directory of projects, shared by projects and spares.
    projects_sync: Arc<DirSync>,
    projects: RwLock<HashMap<u64, Arc<Project>>>,
    sealed: Mutex<SealedCache>,
    tick: AtomicU64,
    /// Each project's newest stamp, known for all projects once complete. Lets a query over all
    /// projects skip those that cannot contribute without opening them.
    newest: RwLock<Newest>,
    /// A read-only store's map came from `NEWEST`, and is trusted as complete only while that
    /// file is there: a writer removes it before its first write, and the map is stale from then
    /// on ([`Store::forget_stale_newest`]).
    newest_from_file: AtomicBool,
    /// Whether the last writer closed cleanly (it left `CLEAN` after syncing every log and
    /// index): true for a read-only store. Otherwise each project's first open is a recovery
    /// after a crash (see `project::recover_active`).
    clean: bool,
    /// Projects opened (and so recovered) since the store opened; reopening one after an
    /// eviction is not a recovery.
    recovered: Mutex<foldhash::HashSet<u64>>,
    /// Set when closing an evicted project failed.
    close_failed: AtomicBool,
    /// Evicted projects whose closing failed, until they are opened (and recovered) again.
    failed_closes: Mutex<foldhash::HashSet<u64>>,
    /// Projects being opened or closed outside the map's lock (an open reads files, and after a
    /// crash recovers and syncs them; a close syncs).
    transit: Mutex<Transit>,
    /// Notified each time a project leaves `transit`.
    settled: Condvar,
    /// How many times [`Store::refresh`] forgot every project: an open that began before one
    /// does not keep its project, nor does a scan of every project's newest stamp complete the
    /// map of them.
    refreshes: AtomicU64,
    /// Held by the scan that learns every project's newest stamp ([`Store::with_newest`]).
    scan: Mutex<()>,
    /// Held by [`Store::apply_retention`]: one runs at a time, or one could list a segment that
    /// another removes before it is read.
    pub(crate) retaining: Mutex<()>,
    /// `CLEAN` or `NEWEST` may still be on disk: they must go (durably) before anything is
    /// written ([`Inner::before_write`]). Until then the store is as the clean close left it, so
    /// opening one to read from it costs no fsync.
    marks_pending: AtomicBool,
    marks: Mutex<()>,
    /// The background syncer of `Written` projects (started on first need): the appending
    /// thread hands it a project once 4 MiB are unsynced, and goes on. Its thread, joined when
    /// the store is dropped.
    syncer: Mutex<Option<Syncer>>,
    /// Held for the store's lifetime: dropping it releases the lock.
    _lock: Option<File>,
}

/// The background syncer's queue and thread (see [`Inner::sync_ahead`]).
type Syncer = (
    std::sync::mpsc::Sender<Arc<Project>>,
    std::thread::JoinHandle<()>,
);

impl Store {
    /// Creates or opens the store in `dir` with default [`Options`]. A new store is made only
    /// in a new or empty folder ([`Options::open`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = activitylog::Store::open(dir.path())?;
    /// store.append(7, [r#"{"event":"job:started"}"#])?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Options::new().open(dir)
    }

    pub(crate) fn open_with(dir: &Path, options: Options) -> Result<Store> {
        let (lock, segment_bytes, created) = if options.read_only {
            (None, read_meta(dir)?, false)
        } else {
            if !dir.join(STORE_FILE).exists() {
                refuse_foreign_entries(dir)?;
            }
            segment::create_dir_private(dir, true).map_err(|e| Error::io("creating", dir, e))?;
            let lock_path = dir.join(LOCK_FILE);
            let lock = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                // Private to the user, as every file of the store is.
                .mode(0o600)
                .open(&lock_path)
                .map_err(|e| Error::io("opening", &lock_path, e))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Locked {
                        dir: dir.to_path_buf(),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(Error::io("locking", &lock_path, e)),
            }
            let created = !dir.join(STORE_FILE).exists();
            let segment_bytes = if !created {
                read_meta(dir)?
            } else {
                let bytes = options.segment_bytes.unwrap_or(DEFAULT_SEGMENT_BYTES);
                let projects = dir.join(PROJECTS_DIR);
                segment::create_dir_private(&projects, true)
                    .map_err(|e| Error::io("creating", &projects, e))?;
                segment::write_atomically(&dir.join(STORE_FILE), &encode_meta(bytes))?;
                bytes
            };
            (Some(lock), segment_bytes, created)
        };
        let clock = match lock {
            Some(_) => Some(Arc::new(Clock::open(&dir.join(CLOCK_FILE))?)),
            None => None,
        };
        let projects_sync = Arc::new(DirSync::new(dir.join(PROJECTS_DIR)));
        let spares = clock.as_ref().map(|_| {
            Spares::new(
                projects_sync.clone(),
                options.spare_projects,
                // A store whose appends are durable by default wants spares whose projects'
                // first records are durable with one fsync (two where renames are not atomic);
                // otherwise spares cost none to make.
                options.durability == Durability::Sync,
            )
        });
        let marks_pending =
            clock.is_some() && (dir.join(CLEAN_FILE).exists() || dir.join(NEWEST_FILE).exists());
        let clean = clock.is_none() || read_clean_marker(dir)?;
        let projects_dir = dir.join(PROJECTS_DIR);
        if !clean && projects_dir.is_dir() {
            // A project made from a spare may be in the spare still, its rename lost: renamed
            // into place before anything could make the project anew.
            adopt_spares(&projects_dir)?;
            // The killed writer may have made project directories and synced none of their
            // names: once, now, before anything in them is acknowledged (each project's own
            // directory is synced when it is recovered).
            segment::sync_dir(&projects_dir)?;
        }
        // A read-only open after a crash reads such projects where they are.
        let mut orphans = HashMap::default();
        if clock.is_none() && !dir.join(CLEAN_FILE).exists() {
            for a in spares::adopted(&projects_dir)? {
                if !a.beside {
                    orphans.insert(a.project, a.spare);
                }
            }
        }
        let newest_file = read_newest(dir)?;
        let newest_from_file = clock.is_none() && newest_file.is_some();
        let newest = match newest_file {
            Some(map) => Newest {
                map,
                complete: true,
            },
            // A store made now knows every stamp from the start, unless its folder held projects
            // already (a store whose `STORE` file was lost).
            None => Newest {
                map: HashMap::default(),
                complete: created && list_projects(dir)?.is_empty(),
            },
        };
        // Asked where the logs are: `projects/` may be a mount or a link of its own.
        let room = clock.is_some()
            && fsio::room_is_safe(if projects_dir.is_dir() {
                &projects_dir
            } else {
                dir
            });
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                options,
                segment_bytes,
                clock,
                spares,
                room,
                orphans,
                projects_sync,
                projects: RwLock::new(HashMap::default()),
                sealed: Mutex::new(HashMap::default()),
                tick: AtomicU64::new(0),
                newest: RwLock::new(newest),
                newest_from_file: AtomicBool::new(newest_from_file),
                clean,
                recovered: Mutex::new(foldhash::HashSet::default()),
                close_failed: AtomicBool::new(false),
                failed_closes: Mutex::new(foldhash::HashSet::default()),
                transit: Mutex::new(Transit::default()),
                settled: Condvar::new(),
                refreshes: AtomicU64::new(0),
                scan: Mutex::new(()),
                retaining: Mutex::new(()),
                marks_pending: AtomicBool::new(marks_pending),
                marks: Mutex::new(()),
                syncer: Mutex::new(None),
                _lock: lock,
            }),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The segment size recorded in the store when it was created.
    pub fn segment_bytes(&self) -> u64 {
        self.inner.segment_bytes
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.clock.is_none()
    }

    /// Appends a batch of messages to `project` atomically, at the store's durability.
    ///
    /// Each message must be one JSON object; it is stored without insignificant whitespace.
    /// Nothing is stored if any message is rejected. See [`append_with`](Self::append_with).
    pub fn append<I>(&self, project: u64, messages: I) -> Result<Appended>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.append_with(project, messages, self.inner.options.durability)
    }

    /// Appends a batch of messages to `project` atomically, at the given durability.
    ///
    /// All messages get consecutive sequence numbers and the same stamp. Errors:
    /// [`Error::InvalidMessage`] or [`Error::TooLarge`] naming the first bad message (nothing
    /// stored), [`Error::BatchTooLarge`], [`Error::ReadOnly`], [`Error::Poisoned`], I/O errors.
    /// A failed write stores nothing (it is taken back); after a failed fsync the batch was
    /// written but not acknowledged, and may read back (the log is then poisoned).
    pub fn append_with<I>(
        &self,
        project: u64,
        messages: I,
        durability: Durability,
    ) -> Result<Appended>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        if self.inner.clock.is_none() {
            return Err(Error::ReadOnly);
        }
        let limit = self.inner.options.max_message_bytes;
        let mut items = messages.into_iter();
        let first = items.next();
        // Not asked again after a `None`, as `collect` would not.
        let second = first.as_ref().and_then(|_| items.next());
        match (first, second) {
            // One message, the common case: nothing to allocate for the batch.
            (Some(only), None) => {
                // One message's frame is far under the batch limit (asserted below `prepare`).
                let message = prepare_one(only.as_ref(), 0, limit)?;
                self.append_prepared(project, std::slice::from_ref(&message), None, durability)
            }
            (Some(first), Some(second)) => {
                let items: Vec<I::Item> = [first, second].into_iter().chain(items).collect();
                let batch = prepare(&items, limit)?;
                self.append_prepared(project, &batch[..], None, durability)
            }
            // An empty batch: nothing is stored, and no directory is made.
            (None, _) => {
                self.append_prepared(project, &[][..] as &[Cow<'_, [u8]>], None, durability)
            }
        }
    }

    /// Appends a validated batch with one stamp per message (imports keep their history).
    pub(crate) fn append_stamped<B: Batch + ?Sized>(
        &self,
        project: u64,
        batch: &B,
        stamps: &[u64],
        durability: Durability,
    ) -> Result<Appended> {
        let clock = self.inner.clock.as_ref().ok_or(Error::ReadOnly)?;
        // The clock passes the batch's stamps — durably, if they are ahead of its reservation
        // — before the batch is stored: after a crash, no append to another project may be
        // stamped below a message already there.
        if let Some(&newest) = stamps.iter().max() {
            clock.observe(newest)?;
        }
        let appended = self.append_prepared(project, batch, Some(stamps), durability)?;
        // Stamps older than the project's newest message were raised to it.
        clock.observe(appended.stamp)?;
        Ok(appended)
    }

    /// A stamp from the store's clock: above every stamp issued before.
    pub(crate) fn next_stamp(&self) -> Result<u64> {
        self.inner.clock.as_ref().ok_or(Error::ReadOnly)?.next()
    }

    fn append_prepared<B: Batch + ?Sized>(
        &self,
        project: u64,
        batch: &B,
        stamps: Option<&[u64]>,
        durability: Durability,
    ) -> Result<Appended> {
        let clock = self.inner.clock.as_ref().ok_or(Error::ReadOnly)?;
        if batch.count() == 0 {
            // Nothing to store: no write, and no project made. An existing project answers
            // (with its next sequence number and newest stamp, or `Poisoned`).
            return match self.inner.project_to_write(project, false)? {
                Some(p) => p.append(clock, batch, stamps, durability, &|_| {}),
                None => Ok(Appended {
                    first_seq: FIRST_SEQ,
                    count: 0,
                    stamp: 0,
                }),
            };
        }
        if self.inner.marks_pending.load(Ordering::Acquire) {
            // Inside `without_blocking`, the removal of `CLEAN` and `NEWEST` is refused.
            blocking::check()?;
        }
        self.inner.before_write()?;
        let p = self
            .inner
            .project_to_write(project, true)?
            .expect("created on demand");
        // The newest-stamp map must never be below what readers can see, or a merged query
        // running meanwhile would skip this project's newest messages: it is raised before the
        // batch is published.
        // Raised whether complete or not, so that a scan learning every project's stamp needs
        // no lock while it runs ([`Store::with_newest`]).
        let publish = |stamp: u64| {
            self.inner.newest.write().raise(project, stamp);
            #[cfg(test)]
            crate::project::tests::hook(
                crate::project::tests::Point::Publishing,
                &self.inner.project_dir(project),
            );
        };
        let appended = p.append(clock, batch, stamps, durability, &publish);
        if let Some(spares) = &self.inner.spares {
            // After the append's syncs, even a failed one (it may have taken a spare).
            spares.refill();
        }
        let appended = appended?;
        if durability == Durability::Written && p.sync_ahead_due() {
            self.inner.sync_ahead(p);
        }
        Ok(appended)
    }

    /// The largest message accepted, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.inner.options.max_message_bytes
    }

    /// How far ahead of the store's clock an imported `_ts` may be
    /// ([`Options::max_import_ahead`]).
    pub(crate) fn max_import_ahead(&self) -> std::time::Duration {
        self.inner.options.max_import_ahead
    }

    /// The newest stamp of each of `ids` that holds messages, as candidates for a query.
    pub(crate) fn newest_stamps(&self, ids: &[u64]) -> Result<Candidates> {
        const FEW: usize = 64;
        self.forget_stale_newest();
        if ids.len() > FEW {
            return self.mapped_candidates(Some(ids));
        }
        // For a few projects, the open ones' snapshots are taken at once (the query reads
        // them, with no lookup of its own); the others' stamps come from the map of stamps if it
        // is complete, or else they are opened (cheaper than learning about all projects).
        let mut out = Candidates::default();
        out.keys.reserve(ids.len());
        out.snaps.reserve(ids.len());
        let mut closed = Vec::new();
        {
            // The open ones under one lock, with one tick: no reference counts to take.
            let map = self.inner.projects.read();
            let tick = self.inner.touch();
            for &id in ids {
                match map.get(&id) {
                    Some(p) => {
                        p.last_used.store(tick, Ordering::Relaxed);
                        out.push_snapshot(id, p.snapshot());
                    }
                    None => closed.push(id),
                }
            }
        }
        if closed.is_empty() {
            return Ok(out);
        }
        {
            let known = self.inner.newest.read();
            if known.complete {
                for id in closed {
                    if let Some(&stamp) = known.map.get(&id) {
                        out.keys.push((stamp, id, Candidates::NO_SNAP));
                    }
                }
                return Ok(out);
            }
        }
        for id in closed {
            match self.inner.project_to_read(id) {
                Ok(Some(p)) => out.push_snapshot(id, p.snapshot()),
                Ok(None) => {}
                Err(e) => out.errors.push(e),
            }
        }
        Ok(out)
    }

    /// In a read-only store whose map of newest stamps came from `NEWEST`: once the file is gone
    /// (a writer removes it before its first write), the map is stale, and no longer complete,
    /// so that queries open the projects they need (and learn every stamp again) instead of
    /// leaving out what was appended since, or a project made since, which `projects` and
    /// `newest_first` show (an audit). One `stat` per query until then, none after.
    fn forget_stale_newest(&self) {
        if !self.inner.newest_from_file.load(Ordering::Relaxed)
            || self.inner.dir.join(NEWEST_FILE).exists()
        {
            return;
        }
        self.inner.newest_from_file.store(false, Ordering::Relaxed);
        self.inner.newest.write().complete = false;
    }

    /// The newest stamp of every project, as candidates for a query.
    pub(crate) fn all_newest_stamps(&self) -> Result<Candidates> {
        self.mapped_candidates(None)
    }

    /// Candidates from the map of newest stamps: those of `ids` that hold messages, or every
    /// project's.
    fn mapped_candidates(&self, ids: Option<&[u64]>) -> Result<Candidates> {
        let key = |(&id, &stamp): (&u64, &u64)| (stamp, id, Candidates::NO_SNAP);
        let (keys, errors) = self.with_newest(|map| match ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| map.get_key_value(id).map(key))
                .collect(),
            None => map.iter().map(key).collect(),
        })?;
        // Only the projects asked for: one that did not open fails the queries that read it.
        let errors = errors
            .into_iter()
            .filter(|(id, _)| ids.is_none_or(|ids| ids.contains(id)))
            .map(|(_, e)| e)
            .collect();
        Ok(Candidates {
            keys,
            snaps: Vec::new(),
            errors,
        })
    }

    /// Reads project `id` from `snap` if there is one, else from a fresh snapshot.
    pub(crate) fn newest_first_of(&self, id: u64, snap: Option<Snapshot>) -> Result<NewestFirst> {
        match snap {
            Some(snap) => Ok(NewestFirst::new(self.inner.clone(), id, snap)),
            None => self.newest_first(id),
        }
    }

    /// What `f` makes of every project's newest stamp (opening the projects not known yet),
    /// with the ids and errors of those that did not open. The map is complete, and kept for
    /// the next query, only when every project opened: one that does not is then asked again
    /// (and reported again) by each query that reads it, never left out silently.
    ///
    /// The projects are scanned without a lock, appends going on: each append raises its
    /// project's stamp in the map before it publishes its batch, complete or not. A scan's stamp
    /// for a project covers the appends published before it looked; those published after raised
    /// the map themselves. So once the scan's stamps are added in, every project's is at least
    /// its newest published message's. (A read-only store has no appends, and raises the map for
    /// each project it opens, [`Inner::project`].)
    fn with_newest<R>(
        &self,
        f: impl FnOnce(&HashMap<u64, u64>) -> R,
    ) -> Result<(R, Vec<(u64, Error)>)> {
        self.forget_stale_newest();
        {
            let known = self.inner.newest.read();
            if known.complete {
                return Ok((f(&known.map), Vec::new()));
            }
        }
        // The scan opens projects, and waits for another scan.
        blocking::check()?;
        // One scan at a time: queries arriving meanwhile wait for its map rather than open
        // every project again (appends do not take this lock).
        let _scan = self.inner.scan.lock();
        {
            let known = self.inner.newest.read();
            if known.complete {
                return Ok((f(&known.map), Vec::new()));
            }
        }
        // A read-only store's refresh during the scan makes what it read stale: it then raises
        // the map, but does not complete it.
        let refreshes = self.inner.refreshes.load(Ordering::SeqCst);
        let mut learnt = HashMap::default();
        let mut errors = Vec::new();
        for id in self.project_ids()? {
            match self.inner.project(id, false) {
                Ok(Some(p)) => {
                    learnt.insert(id, p.snapshot().last_stamp);
                }
                Ok(None) => {}
                Err(e) => errors.push((id, e)),
            }
        }
        let mut known = self.inner.newest.write();
        for (id, stamp) in learnt {
            known.raise(id, stamp);
        }
        known.complete |=
            errors.is_empty() && self.inner.refreshes.load(Ordering::SeqCst) == refreshes;
        let known = RwLockWriteGuard::downgrade(known);
        Ok((f(&known.map), errors))
    }

    /// Appends JSON Lines (`\n` or `\r\n` line ends, blank lines skipped, no final newline
    /// needed) to `project` as one atomic batch.
    ///
    /// A rejected message's error names its input line ([`Error::InvalidMessage`] and
    /// [`Error::TooLarge`] carry `line`), and nothing is stored.
    pub fn append_json_lines(
        &self,
        project: u64,
        input: &[u8],
        durability: Durability,
    ) -> Result<Appended> {
        json::check_line_count(input)?;
        let appended = if self.inner.clock.is_none() {
            Err(Error::ReadOnly)
        } else if input.len() < LinesBatch::MAX_INPUT {
            prepare_lines(input, self.inner.options.max_message_bytes)
                .and_then(|batch| self.append_prepared(project, &batch, None, durability))
        } else {
            self.append_with(project, json::lines(input), durability)
        };
        appended.map_err(|e| e.at_line(|i| json::line_number(input, i)))
    }

    /// The durability of [`append`](Self::append), as opened.
    pub fn durability(&self) -> Durability {
        self.inner.options.durability
    }

    /// The newest-first iterator over `project`'s messages, as of now. A project never written
    /// yields nothing.
    pub fn newest_first(&self, project: u64) -> Result<NewestFirst> {
        Ok(match self.inner.project_to_read(project)? {
            Some(p) => NewestFirst::new(self.inner.clone(), project, p.snapshot()),
            None => NewestFirst::empty(project),
        })
    }

    /// The same snapshot iterator as [`newest_first`](Self::newest_first), turned around: the
    /// project's messages oldest first (for exports and `tail`).
    ///
    /// Retention may remove old segments while the read goes on. Before it has reached them,
    /// the read just starts after them; once it has read something, the removed records are one
    /// [`Error::RemovedWhileRead`] where they would have been, and the read goes on after them.
    pub fn oldest_first(&self, project: u64) -> Result<NewestFirst> {
        Ok(self.newest_first(project)?.oldest_first())
    }

    /// The ids of every project with a directory in the store, ascending.
    pub fn projects(&self) -> Result<Vec<u64>> {
        // It lists the store's directory.
        blocking::check()?;
        self.project_ids()
    }

    /// [`projects`](Self::projects) for writes, which `without_blocking` does not limit.
    pub(crate) fn project_ids(&self) -> Result<Vec<u64>> {
        let mut ids = list_projects(&self.inner.dir)?;
        if !self.inner.orphans.is_empty() {
            ids.extend(self.inner.orphans.keys());
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(ids)
    }

    /// Counts and times of `project`, or `None` if it was never written.
    pub fn stats(&self, project: u64) -> Result<Option<ProjectStats>> {
        // It reads the files' sizes.
        blocking::check()?;
        let Some(p) = self.inner.project(project, false)? else {
            return Ok(None);
        };
        let snap = p.snapshot();
        let dir = self.project_dir(project);
        // (No directory yet while the project's first append is under way.)
        let mut seqs = if dir.is_dir() {
            segment::list(&dir)?
        } else {
            Vec::new()
        };
        // The snapshot's segments: a listing made now may also hold newer ones (a read-only
        // store's snapshot may predate the writer's latest rolls), and the snapshot's active
        // segment reads on through its open file even once it is not listed (a new project's
        // first log, listed once named; one the writer rolled past and retention removed).
        let active = snap.active.as_ref().map(|a| a.header.first_seq);
        seqs.retain(|&first| active.is_some_and(|active| first < active));
        seqs.extend(active);
        let size = |path: PathBuf| -> Result<Option<u64>> {
            match fs::metadata(&path) {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("reading metadata of", &path, e)),
            }
        };
        let mut bytes = 0;
        let mut removed = 0;
        for (i, &first) in seqs.iter().enumerate() {
            let log = if active == Some(first) {
                // The active log counts up to its committed end, not the room ahead of it.
                Some(snap.active_len)
            } else {
                size(segment::log_path(&dir, first))?
            };
            let Some(log) = log else {
                // Retention removed it since it was listed, and every older one before it.
                removed = i + 1;
                bytes = 0;
                continue;
            };
            // (An index is a cache: a missing one takes no room.)
            bytes += log + size(segment::index_path(&dir, first))?.unwrap_or(0);
        }
        seqs.drain(..removed);
        let oldest_seq = seqs.first().copied().unwrap_or(snap.next_seq);
        let messages = snap.next_seq - oldest_seq;
        // The first message that reads; damaged ones are verify's business.
        let oldest_stamp = if messages == 0 {
            None
        } else {
            self.oldest_first(project)?
                .find_map(|m| m.ok())
                .map(|m| m.stamp())
        };
        Ok(Some(ProjectStats {
            project,
            messages,
            bytes,
            segments: seqs.len() as u64,
            oldest_stamp,
            newest_stamp: (messages > 0).then_some(snap.last_stamp),
        }))
    }

    /// Makes every append so far durable (fsync), whatever durability it was made with.
    ///
    /// Fails with [`Error::Poisoned`] if an fsync of a project's log failed since the store
    /// opened — in an append, a sync, or the close of an idle project the store closed to stay
    /// under [`Options::max_open_projects`](crate::Options::max_open_projects): what that
    /// project wrote may not be durable, and no later fsync can say so.
    pub fn sync(&self) -> Result<()> {
        // Every project is open or being closed by an eviction (which syncs it): the two are
        // read together, an eviction moving projects from one to the other under the map's lock.
        let (projects, closing) = {
            let map = self.inner.projects.read();
            let closing: Vec<u64> = self.inner.transit.lock().closing.iter().copied().collect();
            (
                map.values().cloned().collect::<Vec<Arc<Project>>>(),
                closing,
            )
        };
        // Every project is synced, whichever fails: the first error is returned after.
        let mut first_error = None;
        for p in &projects {
            if let Err(e) = p.sync() {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // The evicted ones are synced once closed (a failed close is in `failed_closes`).
        let mut now = self.inner.transit.lock();
        for id in &closing {
            while now.closing.contains(id) {
                self.inner.settled.wait(&mut now);
            }
        }
        drop(now);
        // A close whose directory sync never started (the directory did not open) put its
        // project back in the map, not synced: it is synced now.
        let kept: Vec<Arc<Project>> = {
            let map = self.inner.projects.read();
            closing
                .iter()
                .filter_map(|id| map.get(id).cloned())
                .collect()
        };
        for p in &kept {
            p.sync()?;
        }
        match self.inner.failed_closes.lock().iter().min() {
            Some(&project) => Err(Error::Poisoned { project }),
            None => Ok(()),
        }
    }

    /// For a read-only store: forgets what it knew of every project, so the next read sees what
    /// the writing process has appended since, and unmaps the sealed segments its retention
    /// removed (once no reader holds them), so that their disk space is freed. A no-op on a
    /// writable store.
    pub fn refresh(&self) {
        if self.is_read_only() {
            // Looked at outside the cache's lock, which every read of a sealed segment takes.
            let cached: Vec<((u64, u64), PathBuf)> = self
                .inner
                .sealed
                .lock()
                .iter()
                .map(|(&key, (seg, _))| (key, seg.path().to_path_buf()))
                .collect();
            let gone: Vec<(u64, u64)> = cached
                .into_iter()
                .filter(|(_, path)| !path.exists())
                .map(|(key, _)| key)
                .collect();
            if !gone.is_empty() {
                let mut cache = self.inner.sealed.lock();
                for key in gone {
                    cache.remove(&key);
                }
            }
            let mut map = self.inner.projects.write();
            // Before the stamps are forgotten: a scan that completes them after checks it.
            self.inner.refreshes.fetch_add(1, Ordering::SeqCst);
            map.clear();
            *self.inner.newest.write() = Newest::default();
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("read_only", &self.is_read_only())
            .finish()
    }
}

impl Store {
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn project_dir(&self, id: u64) -> PathBuf {
        self.inner.project_dir(id)
    }

    /// Waits (up to ten seconds) until `n` spare project directories are ready.
    #[cfg(test)]
    pub(crate) fn wait_spares(&self, n: usize) -> bool {
        self.inner.spares.as_ref().is_some_and(|s| s.wait_ready(n))
    }

    /// How many spare project directories were taken.
    #[cfg(test)]
    pub(crate) fn spares_taken(&self) -> u64 {
        self.inner.spares.as_ref().map_or(0, |s| s.taken())
    }
}

impl Inner {
    /// Has the background syncer sync `p` (starting the syncer on first use). Should the thread
    /// not start, the caller syncs.
    fn sync_ahead(&self, p: Arc<Project>) {
        let mut syncer = self.syncer.lock();
        let p = match syncer.as_ref() {
            Some((tx, _)) => match tx.send(p) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(p)) => p,
            },
            None => p,
        };
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Project>>();
        let started = std::thread::Builder::new()
            .name("activitylog-sync".into())
            .spawn(move || {
                // Ends when the store is dropped (and with it the sender).
                while let Ok(p) = rx.recv() {
                    p.sync_ahead();
                }
            });
        match started {
            Ok(thread) => {
                let _ = tx.send(p);
                *syncer = Some((tx, thread));
            }
            Err(e) => {
                log::warn!("cannot start the background syncer ({e}); syncing in place");
                drop(syncer);
                p.sync_ahead();
            }
        }
    }

    /// Must be called before anything is written to the store: removes `CLEAN` and `NEWEST`
    /// (once, with one directory sync), since neither holds once anything changes.
    pub(crate) fn before_write(&self) -> Result<()> {
        if !self.marks_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.marks.lock();
        if self.marks_pending.load(Ordering::Acquire) {
            segment::remove_if_present(&self.dir.join(CLEAN_FILE))?;
            segment::remove_if_present(&self.dir.join(NEWEST_FILE))?;
            segment::sync_dir(&self.dir)?;
            self.marks_pending.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Drops a deleted segment from the map cache (readers holding it keep their mapping).
    pub(crate) fn forget_sealed(&self, project: u64, first_seq: u64) {
        self.sealed.lock().remove(&(project, first_seq));
    }

    /// The directory project `id`'s files are in.
    pub(crate) fn project_dir(&self, id: u64) -> PathBuf {
        let dir = project_dir_in(&self.dir, id);
        match self.orphans.get(&id) {
            Some(orphan) if !dir.exists() => orphan.clone(),
            _ => dir,
        }
    }

    fn touch(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed)
    }

    /// Project `id` if it is open.
    fn open_project(&self, id: u64) -> Option<Arc<Project>> {
        let p = self.projects.read().get(&id)?.clone();
        p.last_used.store(self.touch(), Ordering::Relaxed);
        Some(p)
    }

    /// [`project`](Self::project) (never creating it) for a read of messages: inside
    /// [`without_blocking`](crate::without_blocking), only a project open already.
    pub(crate) fn project_to_read(&self, id: u64) -> Result<Option<Arc<Project>>> {
        self.project_to_write(id, false)
    }

    /// [`project`](Self::project) inside [`without_blocking`](crate::without_blocking): only a
    /// project open already, since an open reads files (or waits for another thread opening or
    /// closing the project) and a creation makes them.
    pub(crate) fn project_to_write(&self, id: u64, create: bool) -> Result<Option<Arc<Project>>> {
        if let Some(p) = self.open_project(id) {
            return Ok(Some(p));
        }
        blocking::check()?;
        self.project(id, create)
    }

    /// The open project `id`, opening it if needed. With `create` false, a project without a
    /// directory is `None` and nothing is created.
    pub(crate) fn project(&self, id: u64, create: bool) -> Result<Option<Arc<Project>>> {
        if let Some(p) = self.open_project(id) {
            return Ok(Some(p));
        }
        // Opened outside the map's lock, so that lookups of other projects go on meanwhile (an
        // open reads files, and after a crash recovers and syncs them); marked in transit under
        // it, so that a project is never opened twice, nor while an eviction closes it.
        let refreshes = loop {
            let map = self.projects.read();
            if let Some(p) = map.get(&id) {
                p.last_used.store(self.touch(), Ordering::Relaxed);
                return Ok(Some(p.clone()));
            }
            let mut transit = self.transit.lock();
            if !transit.opening.contains(&id) && !transit.closing.contains(&id) {
                transit.opening.insert(id);
                break self.refreshes.load(Ordering::SeqCst);
            }
            drop(map);
            while transit.opening.contains(&id) || transit.closing.contains(&id) {
                self.settled.wait(&mut transit);
            }
        };
        // Leaves `opening` even should the open fail or panic: no other open waits for ever.
        let opened = Settled {
            inner: self,
            id,
            closing: false,
        };
        let dir = self.project_dir(id);
        if !create && !dir.is_dir() {
            return Ok(None);
        }
        // A project whose close failed its fsync is poisoned until the store is reopened: read
        // as it is, without recovery, and refusing writes (an fsync that follows a failed one
        // may succeed with the data lost).
        let close_failed = self.failed_closes.lock().contains(&id);
        let writable = self.clock.is_some() && !close_failed;
        let crashed = !self.clean && !self.recovered.lock().contains(&id);
        let p = Project::open(id, dir, writable, self.segment_bytes, crashed, &|| {
            self.before_write()
        })?
        .with_spares(self.spares.as_ref().map(Arc::downgrade))
        .with_parent_sync(self.projects_sync.clone())
        .with_room(self.room);
        let p = Arc::new(if close_failed { p.poisoned() } else { p });
        if let Some(clock) = &self.clock {
            clock.observe(p.snapshot().last_stamp)?;
        }
        // Only a project kept open counts as recovered: one dropped on an error above is
        // recovered again (after a crash, with the syncs that go with it) when next opened.
        if writable {
            self.recovered.lock().insert(id);
        }
        if self.clock.is_none() {
            // A read-only store reads the project as it is now, perhaps newer than the stamp
            // the map holds for it (loaded from `NEWEST` when the store opened, or learnt before
            // an eviction), or than no stamp at all (a project made since): raised before any
            // lookup finds the project, so that a query never leaves out what a read of the
            // project shows. (A writer raises it before it publishes each batch.)
            let newest = p.snapshot();
            if newest.next_seq > FIRST_SEQ {
                self.newest.write().raise(id, newest.last_stamp);
            }
        }
        p.last_used.store(self.touch(), Ordering::Relaxed);
        let mut map = self.projects.write();
        // A read-only store refreshed meanwhile may have read the project as it was before:
        // the caller reads it, the next lookup opens it again.
        if self.refreshes.load(Ordering::SeqCst) != refreshes {
            return Ok(Some(p));
        }
        map.insert(id, p.clone());
        let evicted = if map.len() > self.options.max_open_projects {
            self.evict_projects(&mut map)
        } else {
            Vec::new()
        };
        drop(map);
        drop(opened);
        self.close_evicted(evicted);
        Ok(Some(p))
    }

    /// The sealed segment of `project` starting at `first_seq`, mapped once and shared.
    pub(crate) fn sealed(&self, project: u64, first_seq: u64) -> Result<Arc<Sealed>> {
        let key = (project, first_seq);
        if let Some((seg, used)) = self.sealed.lock().get_mut(&key) {
            *used = self.touch();
            return Ok(seg.clone());
        }
        let seg = Arc::new(Sealed::open(
            &self.project_dir(project),
            first_seq,
            self.clock.is_some(),
        )?);
        #[cfg(test)]
        crate::project::tests::hook(crate::project::tests::Point::SealedMapped, seg.path());
        let mut cache = self.sealed.lock();
        // Retention may have removed the segment since it was mapped, and forgotten it before
        // it was cached: a removed segment is cached by no one, or its map would keep the
        // files' blocks taken until the cache fills up. Retention forgets a segment under this
        // lock after removing its files, so a log found here is forgotten after this insert.
        if !seg.path().exists() {
            return Ok(seg);
        }
        cache.insert(key, (seg.clone(), self.touch()));
        let cap = self.options.max_mapped_segments;
        if cache.len() > cap {
            let mut by_age: Vec<((u64, u64), u64)> = cache.iter().map(|(k, v)| (*k, v.1)).collect();
            by_age.sort_unstable_by_key(|&(_, used)| used);
            // Evict a tenth beyond the cap at once so eviction's cost is amortised.
            let excess = cache.len() - cap + cap / 10;
            for (k, _) in by_age.into_iter().take(excess) {
                cache.remove(&k);
            }
        }
        Ok(seg)
    }
}

impl Inner {
    /// Takes the least recently used idle projects (nobody holds them or a snapshot of their
    /// active segment) out of `map`, under its write lock, down to below the cap, and marks
    /// them closing; [`close_evicted`](Self::close_evicted) closes them once the lock is
    /// released, so that a close's syncs hold up no other project's lookups.
    fn evict_projects(&self, map: &mut HashMap<u64, Arc<Project>>) -> Vec<(u64, Arc<Project>)> {
        let cap = self.options.max_open_projects;
        let mut idle: Vec<(u64, u64)> = map
            .iter()
            .filter(|(_, p)| Arc::strong_count(p) == 1 && !p.active_in_use())
            .map(|(&id, p)| (p.last_used.load(Ordering::Relaxed), id))
            .collect();
        idle.sort_unstable();
        let excess = (map.len() - cap + cap / 10).min(idle.len());
        let mut transit = self.transit.lock();
        idle.into_iter()
            .take(excess)
            .filter_map(|(_, id)| {
                let p = map.remove(&id)?;
                transit.closing.insert(id);
                Some((id, p))
            })
            .collect()
    }

    /// Closes the projects [`evict_projects`](Self::evict_projects) took out of the map, each
    /// leaving `closing` (and waking whoever waits to open it) once closed. A failure to close
    /// one is remembered: the store will not count as cleanly closed, [`Store::sync`] fails,
    /// and the project refuses writes until the store is reopened (what it wrote may not be
    /// durable, nor the names of its files; the next open recovers it as after a crash).
    fn close_evicted(&self, evicted: Vec<(u64, Arc<Project>)>) {
        // Each leaves `closing` once closed, and every one of them should a close panic: no
        // lookup waits for ever.
        let evicted: Vec<_> = evicted
            .into_iter()
            .map(|(id, p)| {
                let closed = Settled {
                    inner: self,
                    id,
                    closing: true,
                };
                (id, p, closed)
            })
            .collect();
        for (id, p, _closed) in evicted {
            #[cfg(test)]
            crate::project::tests::hook(
                crate::project::tests::Point::Closing,
                &self.project_dir(id),
            );
            match p.close() {
                Ok(()) => {}
                // A directory that did not open (out of file handles, say) was not synced,
                // and nothing was lost: the project stays open, and its close is tried
                // again when next it is evicted, or when the store closes.
                Err(e) if segment::sync_not_started(&e) => {
                    log::warn!("closing project {id}: {e}; keeping it open");
                    self.projects.write().insert(id, p);
                }
                Err(e) => {
                    log::error!("closing project {id}: {e}");
                    self.close_failed.store(true, Ordering::Release);
                    self.failed_closes.lock().insert(id);
                }
            }
        }
    }
}

/// The projects between the store's map and their files.
#[derive(Default)]
struct Transit {
    /// Being opened by [`Inner::project`], outside the map's lock: another lookup of the
    /// project waits for the open to end.
    opening: foldhash::HashSet<u64>,
    /// Taken out of the map by an eviction and being closed, outside the map's lock: such a
    /// project is opened again, or counted by [`Store::sync`], only once closed.
    closing: foldhash::HashSet<u64>,
}

/// Takes a project out of [`Inner::transit`] when dropped, waking those who wait for it.
struct Settled<'a> {
    inner: &'a Inner,
    id: u64,
    /// Out of `closing`, else out of `opening`.
    closing: bool,
}

impl Drop for Settled<'_> {
    fn drop(&mut self) {
        let mut transit = self.inner.transit.lock();
        if self.closing {
            transit.closing.remove(&self.id);
        } else {
            transit.opening.remove(&self.id);
        }
        drop(transit);
        self.inner.settled.notify_all();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The background syncer finishes what it was handed, and ends, before the projects
        // close and the lock is released: it holds projects of its own, and must not sync (or
        // name a new project's first log) once another store may have opened them.
        if let Some((tx, thread)) = self.syncer.get_mut().take() {
            drop(tx);
            if thread.join().is_err() {
                log::error!("the background syncer panicked");
            }
        }
        if let Some(spares) = &self.spares {
            spares.close();
        }
        let mut clean = !self.close_failed.load(Ordering::Acquire);
        for (id, p) in self.projects.get_mut().drain() {
            if let Err(e) = p.close() {
                log::error!("closing project {id}: {e}");
                clean = false;
            }
        }
        if *self.marks_pending.get_mut() {
            // Nothing was written since the clean close that left CLEAN: it holds, and so does
            // NEWEST (written now if that close could not leave it and this store learned it).
            if let (Some(_), Some(map)) = (&self.clock, self.newest.get_mut().known()) {
                let path = self.dir.join(NEWEST_FILE);
                if !path.exists() {
                    if let Err(e) = segment::write_atomically(&path, &encode_newest(map)) {
                        log::warn!("cannot save the newest stamps ({e})");
                    }
                }
            }
            return;
        }
        if let (true, Some(_), Some(map)) = (clean, &self.clock, self.newest.get_mut().known()) {
            if let Err(e) =
                segment::write_atomically(&self.dir.join(NEWEST_FILE), &encode_newest(map))
            {
                log::warn!("cannot save the newest stamps ({e}); the next open recomputes them");
            }
        }
        if let (true, false, Some(_)) = (clean, self.clean, &self.clock) {
            // Opened after a crash: projects never opened since were never recovered (their
            // tails may not be synced), so the store is clean only if every one was.
            let recovered = self.recovered.get_mut();
            clean = list_projects(&self.dir)
                .is_ok_and(|ids| ids.iter().all(|id| recovered.contains(id)));
        }
        if let (true, Some(_)) = (clean, &self.clock) {
            // Last: everything it vouches for is synced by now: every log, and every index file
            // that could be (one that could not was removed; an index is checked against its
            // log on every open).
            let mut marker = CLEAN_MAGIC.to_vec();
            marker.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            if let Err(e) = segment::write_atomically(&self.dir.join(CLEAN_FILE), &marker) {
                log::warn!("cannot mark the store closed cleanly ({e}); the next open rescans");
            }
        }
    }
}

/// Before a new store is made in `dir`: refuses a folder that holds anything a store does not
/// ([`Error::ForeignFolder`]), so that a mistyped path does not turn a folder of other files into a
/// store. What a store's first open leaves if it is cut short (its lock, `projects/`, a
/// temporary file) is a store's.
fn refuse_foreign_entries(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for entry in entries {
        let name = entry.map_err(|e| Error::io("listing", dir, e))?.file_name();
        let ours = name.to_str().is_some_and(|name| {
            [
                STORE_FILE,
                LOCK_FILE,
                CLOCK_FILE,
                PROJECTS_DIR,
                NEWEST_FILE,
                CLEAN_FILE,
            ]
            .contains(&name)
                || name.starts_with(".tmp-")
        });
        if !ours {
            return Err(Error::ForeignFolder {
                dir: dir.to_path_buf(),
                entry: name.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}

/// For a writable open: whether the last writer closed cleanly (it left a `CLEAN` marker, which
/// goes, durably, before anything is written: [`Inner::before_write`]). After a clean close,
/// every log was synced, and every index file synced or removed, so the open skips what
/// recovery after a crash costs (syncing logs' tails and directories; index files are checked
/// against their logs on every open).
///
/// Only a marker exactly as this build writes it counts: one of another format version, or
/// truncated, or longer, vouches for nothing this build knows, so the open recovers as after a
/// crash (which costs a rescan of unsynced tails, never data).
fn read_clean_marker(dir: &Path) -> Result<bool> {
    let path = dir.join(CLEAN_FILE);
    match fsio::read_at_most(&path, 12) {
        Ok(bytes) => Ok(bytes.len() == 12
            && bytes[..8] == CLEAN_MAGIC
            && bytes[8..] == FORMAT_VERSION.to_le_bytes()),
        // Not a regular file (a FIFO, say): no marker this build wrote.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) => Ok(false),
        Err(e) => Err(Error::io("reading", &path, e)),
    }
}

fn encode_newest(map: &HashMap<u64, u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + map.len() * 16);
    out.extend_from_slice(&NEWEST_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (id, stamp) in map {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&stamp.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Each project's newest stamp, as far as the store knows it: every project's once complete.
#[derive(Default)]
struct Newest {
    map: HashMap<u64, u64>,
    /// Set when the map holds every project (loaded from `NEWEST`, or learnt by a scan of every
    /// project, [`Store::with_newest`]); until then it holds the projects appended to (or, in a
    /// read-only store, opened) since the store opened.
    complete: bool,
}

impl Newest {
    /// Raises project `id`'s stamp to `stamp`, adding the project if it lacks one.
    fn raise(&mut self, id: u64, stamp: u64) {
        let newest = self.map.entry(id).or_insert(0);
        *newest = (*newest).max(stamp);
    }

    /// The map, if complete.
    fn known(&self) -> Option<&HashMap<u64, u64>> {
        self.complete.then_some(&self.map)
    }
}

/// Reads the `NEWEST` file a clean close left. A writer removes it before its first write (it
/// becomes stale with the first append), so it exists only while it is exact.
/// A missing or damaged file means "unknown": queries then learn the stamps from the projects.
fn read_newest(dir: &Path) -> Result<Option<HashMap<u64, u64>>> {
    let path = dir.join(NEWEST_FILE);
    // At most one entry for each of 2^24 projects: a longer file is not read (a store of more
    // projects learns their stamps from them, as without the file).
    const MAX_BYTES: u64 = 24 + (16 << 24);
    let bytes = match fsio::read_at_most(&path, MAX_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // Not a regular file (a FIFO, say): damaged, as below.
        Err(e) if e.kind() == ErrorKind::InvalidData => Vec::new(),
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    if bytes.len() as u64 > MAX_BYTES {
        log::info!(
            "{} lists more than 2^24 projects and is not read: queries learn their newest \
             stamps from the projects",
            path.display()
        );
        return Ok(None);
    }
    let parsed = (|| {
        if bytes.len() < 24 || bytes[0..8] != NEWEST_MAGIC || read_u32(&bytes, 8) != FORMAT_VERSION
        {
            return None;
        }
        if read_u32(&bytes, 12) != crc32fast::hash(&bytes[16..]) {
            return None;
        }
        let n = usize::try_from(read_u64(&bytes, 16)).ok()?;
        if bytes.len() != 24 + n.checked_mul(16)? {
            return None;
        }
        Some(
            bytes[24..]
                .chunks_exact(16)
                .map(|c| (read_u64(c, 0), read_u64(c, 8)))
                .collect::<HashMap<u64, u64>>(),
        )
    })();
    if parsed.is_none() {
        log::warn!("ignoring a damaged {}", path.display());
    }
    Ok(parsed)
}

/// A project's size and time span, from [`Store::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectStats {
    /// The project id.
    pub project: u64,
    /// Messages held (those lost to damage included).
    pub messages: u64,
    /// Bytes of its files on disk (logs and indexes).
    pub bytes: u64,
    /// Segments.
    pub segments: u64,
    /// Stamp (µs since the epoch) of the oldest readable message.
    pub oldest_stamp: Option<u64>,
    /// Stamp of the newest message.
    pub newest_stamp: Option<u64>,
}

/// The directory of project `id` in the store at `dir`.
pub(crate) fn project_dir_in(dir: &Path, id: u64) -> PathBuf {
    dir.join(PROJECTS_DIR).join(id.to_string())
}

/// Renames each spare directory in the directory of projects `dir` that holds a project's
/// first log ([`spares::adopted`]) to that project's directory. One whose project has a
/// directory too is left where it is, with an error logged.
fn adopt_spares(dir: &Path) -> Result<()> {
    for spares::Adopted {
        project,
        spare,
        beside,
    } in spares::adopted(dir)?
    {
        let to = dir.join(project.to_string());
        // Beside a directory the project had, or one an earlier spare of the list just took.
        if beside || to.exists() {
            log::error!(
                "{} holds the first log of project {project}, which has a directory too; left \
                 in place",
                spare.display()
            );
            continue;
        }
        fs::rename(&spare, &to).map_err(|e| Error::io("renaming", &spare, e))?;
        log::warn!(
            "project {project} was found in {} (a crash lost its rename): renamed into place",
            spare.display()
        );
    }
    Ok(())
}

/// The ids of every project with a directory in the store at `dir`, ascending.
pub(crate) fn list_projects(dir: &Path) -> Result<Vec<u64>> {
    let dir = dir.join(PROJECTS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", &dir, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", &dir, e))?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_project_dir) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Parses a project directory name: a canonical decimal `u64`.
fn parse_project_dir(name: &str) -> Option<u64> {
    let id: u64 = name.parse().ok()?;
    (id.to_string() == name).then_some(id)
}

/// Validates and compacts a batch. Nothing is stored unless all of it passes.
pub(crate) fn prepare<T: AsRef<[u8]>>(items: &[T], limit: usize) -> Result<Vec<Cow<'_, [u8]>>> {
    if items.len() as u64 > MAX_RECORDS_PER_SEGMENT {
        return Err(Error::BatchTooLarge {
            size: items.len() as u64,
            limit: MAX_RECORDS_PER_SEGMENT,
            unit: "messages",
        });
    }
    let mut batch = Vec::with_capacity(items.len());
    let mut bytes = 0u64;
    for (index, item) in items.iter().enumerate() {
        let compact = prepare_one(item.as_ref(), index, limit)?;
        bytes += frame_len(compact.len()) as u64;
        batch.push(compact);
    }
    check_batch_bytes(bytes)?;
    Ok(batch)
}

/// Refuses a batch whose frames take more than [`MAX_BATCH_BYTES`].
fn check_batch_bytes(bytes: u64) -> Result<()> {
    if bytes > MAX_BATCH_BYTES {
        return Err(Error::BatchTooLarge {
            size: bytes,
            limit: MAX_BATCH_BYTES,
            unit: "bytes",
        });
    }
    Ok(())
}

/// A batch of JSON Lines checked and compacted as [`prepare`] does, at 8 bytes per message
/// beside its input (a `Vec` of `Cow`s, and the lines before them, took 40): each message a
/// span of the input, or of `own` where compacting changed it.
pub(crate) struct LinesBatch<'a> {
    input: &'a [u8],
    own: Vec<u8>,
    /// `(start, len)`: in `own` if the start has [`LinesBatch::OWN`] set, else in `input`.
    spans: Vec<(u32, u32)>,
}

impl LinesBatch<'_> {
    const OWN: u32 = 1 << 31;
    /// Inputs this long or longer take the general path (spans are 31-bit).
    const MAX_INPUT: usize = 1 << 31;
}

impl Batch for LinesBatch<'_> {
    fn count(&self) -> usize {
        self.spans.len()
    }

    fn pieces(&self, i: usize) -> (&[u8], &[u8]) {
        let (start, len) = self.spans[i];
        let (from, start) = if start & Self::OWN != 0 {
            (&self.own[..], start & !Self::OWN)
        } else {
            (self.input, start)
        };
        (&from[start as usize..][..len as usize], &[])
    }
}

/// [`prepare`] for the lines of `input` (under [`LinesBatch::MAX_INPUT`] bytes; at most
/// [`MAX_RECORDS_PER_SEGMENT`] lines, checked by the caller).
pub(crate) fn prepare_lines(input: &[u8], limit: usize) -> Result<LinesBatch<'_>> {
    debug_assert!(input.len() < LinesBatch::MAX_INPUT);
    let mut batch = LinesBatch {
        input,
        own: Vec::new(),
        spans: Vec::new(),
    };
    let mut bytes = 0u64;
    for (index, line) in json::lines(input).enumerate() {
        let before = batch.own.len();
        let done = compact_into(line, index, limit, &mut batch.own)?;
        // Both below `OWN`, as `input`'s length is (compacting only removes bytes); a line is
        // a slice of `input`.
        let start = if done.copied {
            before as u32 | LinesBatch::OWN
        } else {
            (line.as_ptr() as usize - input.as_ptr() as usize) as u32
        };
        batch.spans.push((start, done.len as u32));
        bytes += frame_len(done.len) as u64;
    }
    check_batch_bytes(bytes)?;
    Ok(batch)
}

// A batch of one message never exceeds `MAX_BATCH_BYTES`: a single append skips that check.
const _: () = assert!((MAX_PAYLOAD_BYTES + FRAME_OVERHEAD_BYTES) as u64 <= MAX_BATCH_BYTES);

/// Checks and compacts message `index` of a batch (see [`prepare`]).
fn prepare_one(raw: &[u8], index: usize, limit: usize) -> Result<Cow<'_, [u8]>> {
    // One pass checks and compacts; a compact form is built only if there is whitespace.
    let mut copy = Vec::new();
    let done = compact_into(raw, index, limit, &mut copy)?;
    Ok(if done.copied {
        Cow::Owned(copy)
    } else {
        Cow::Borrowed(raw)
    })
}

/// Checks message `index` of a batch and measures it compacted, against `limit`; its compact
/// form is appended to `out` if it holds whitespace to remove (`copied`).
fn compact_into(
    raw: &[u8],
    index: usize,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<json::Compacted> {
    let done = json::compact_object(raw, &[], out).map_err(|reason| Error::InvalidMessage {
        index,
        line: None,
        reason,
    })?;
    if done.len > limit {
        return Err(Error::TooLarge {
            index,
            line: None,
            size: done.len,
            limit,
        });
    }
    Ok(done)
}

fn encode_meta(segment_bytes: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&STORE_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&segment_bytes.to_le_bytes()).to_le_bytes());
    out.extend_from_slice(&segment_bytes.to_le_bytes());
    out
}

/// Reads the `STORE` file: checks magic, version and checksum; returns the segment size.
pub(crate) fn read_meta(dir: &Path) -> Result<u64> {
    let path = dir.join(STORE_FILE);
    let bytes = match fsio::read_at_most(&path, 24) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotAStore {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    if bytes.len() != 24 || bytes[0..8] != STORE_MAGIC {
        return Err(Error::corrupt(&path, 0, "not an activitylog STORE file"));
    }
    let version = read_u32(&bytes, 8);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path,
            found: version,
        });
    }
    if read_u32(&bytes, 12) != crc32fast::hash(&bytes[16..24]) {
        return Err(Error::corrupt(&path, 12, "checksum mismatch"));
    }
    // No store is made with another size (`Options::segment_bytes`); past 4 GiB, record
    // offsets would not fit the index.
    let segment_bytes = read_u64(&bytes, 16);
    if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes) {
        return Err(Error::corrupt(
            &path,
            16,
            format!(
                "segment size {segment_bytes} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES} \
                 bytes"
            ),
        ));
    }
    Ok(segment_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch ends at its iterator's first `None`, as `collect` ends it, whether the batch
    /// is empty, one message or more: an iterator that would go on after a `None` is not asked.
    #[test]
    fn a_batch_ends_at_the_first_none() {
        /// Yields its items, `None` standing for a gap, then `None` for ever.
        struct Gappy(std::iter::Copied<std::slice::Iter<'static, Option<&'static str>>>);
        impl Iterator for Gappy {
            type Item = &'static str;
            fn next(&mut self) -> Option<&'static str> {
                self.0.next().flatten()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cases: [(&'static [Option<&'static str>], u64); 3] = [
            (&[None, Some(r#"{"a":1}"#)], 0),
            (&[Some(r#"{"a":1}"#), None, Some(r#"{"a":2}"#)], 1),
            (
                &[
                    Some(r#"{"a":1}"#),
                    Some(r#"{"a":2}"#),
                    None,
                    Some(r#"{"a":3}"#),
                ],
                2,
            ),
        ];
        for (project, (items, stored)) in (1u64..).zip(cases) {
            let a = store.append(project, Gappy(items.iter().copied())).unwrap();
            assert_eq!(a.count, stored, "project {project}");
            assert_eq!(store.newest_first(project).unwrap().count() as u64, stored);
        }
    }

    /// A project whose active segment a reader's snapshot holds stays open: evicting and
    /// reopening it would run recovery under a scan that may have the segment mapped.
    #[test]
    fn projects_with_readers_of_their_active_segment_are_not_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .max_open_projects(2)
            .open(dir.path())
            .unwrap();
        store.append(1, [r#"{"a":1}"#]).unwrap();
        let reader = store.newest_first(1).unwrap();
        for p in 2..20 {
            store.append(p, [r#"{"a":1}"#]).unwrap();
        }
        assert!(store.inner.projects.read().contains_key(&1));
        drop(reader);
        for p in 20..40 {
            store.append(p, [r#"{"a":1}"#]).unwrap();
        }
        assert!(!store.inner.projects.read().contains_key(&1));
    }

    /// A sealed segment that retention removes while a reader is mapping it does not stay in
    /// the map cache (retention forgets the segments it removed, but this one was not cached
    /// yet): no later read asks for it, so the cache would keep the removed files' blocks taken
    /// until it fills up — with the default 1024 maps, for good in most stores. The read goes
    /// on with its map.
    /// Twenty messages of 1 KB into project 1 of a store of 4 KiB segments: several sealed.
    fn fill_segments(store: &Store) {
        let pad = "x".repeat(1000);
        for i in 0..20 {
            store
                .append(1, [format!(r#"{{"i":{i},"p":"{pad}"}}"#)])
                .unwrap();
        }
    }

    /// That every segment `store`'s map cache holds still has its log in `project`.
    fn assert_cached_segments_exist(store: &Store, project: &Path) {
        let cached: Vec<u64> = store.inner.sealed.lock().keys().map(|k| k.1).collect();
        for first in cached {
            assert!(
                segment::log_path(project, first).exists(),
                "segment {first} was removed but stays mapped in the cache"
            );
        }
    }

    #[test]
    fn a_segment_removed_while_a_reader_maps_it_does_not_stay_in_the_cache() {
        use crate::project::tests::{set_hook, Point};
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
        fill_segments(&store);
        let project = project_dir_in(dir.path(), 1);
        let oldest = segment::list(&project).unwrap()[0];
        let mut reader = store.oldest_first(1).unwrap();
        // Retention runs while the reader maps the oldest segment, before the map is cached.
        let retainer = store.clone();
        let mut ran = false;
        set_hook(Some(Box::new(move |point, _| {
            if point == Point::SealedMapped && !std::mem::replace(&mut ran, true) {
                let removed = retainer
                    .apply_retention(&crate::Retention::new().max_messages(2))
                    .unwrap();
                assert!(removed.segments > 0);
            }
        })));
        let first = reader.next();
        set_hook(None);
        assert_eq!(first.unwrap().unwrap().seq(), oldest);
        assert!(!segment::log_path(&project, oldest).exists(), "removed");
        assert_cached_segments_exist(&store, &project);
    }

    #[test]
    fn a_refresh_unmaps_the_segments_another_processs_retention_removed() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
        fill_segments(&writer);
        let reader = Options::new().read_only(true).open(dir.path()).unwrap();
        assert_eq!(reader.oldest_first(1).unwrap().count(), 20);
        let mapped = |store: &Store| store.inner.sealed.lock().len();
        let before = mapped(&reader);
        assert!(before > 2, "{before} sealed segments mapped");
        let removed = writer
            .apply_retention(&crate::Retention::new().max_messages(2))
            .unwrap();
        assert!(removed.segments > 0);
        reader.refresh();
        let project = project_dir_in(dir.path(), 1);
        assert!(mapped(&reader) < before);
        assert_cached_segments_exist(&reader, &project);
    }

    #[test]
    fn a_batch_published_while_a_query_learns_the_stamps_is_in_the_map() {
        use crate::project::tests::{set_hook, Point};
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.append(1, [r#"{"p":1}"#]).unwrap();
            store.append(2, [r#"{"p":2}"#]).unwrap();
        }
        fs::remove_file(dir.path().join(NEWEST_FILE)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let all = |store: &Store| -> Vec<String> {
            store
                .query(&crate::Query::new().pcount(1))
                .unwrap()
                .map(|m| m.unwrap().into_json())
                .collect()
        };
        let querier = store.clone();
        let mut done = false;
        set_hook(Some(Box::new(move |point, _: &Path| {
            if point != Point::Publishing || std::mem::replace(&mut done, true) {
                return;
            }
            // The batch's stamp is raised, its records not yet published: the query that
            // learns every project's stamp reads project 1 without them.
            let querier = querier.clone();
            let first = std::thread::spawn(move || all(&querier)).join().unwrap();
            assert_eq!(first, [r#"{"p":2}"#, r#"{"p":1}"#]);
        })));
        store.append(1, [r#"{"p":1,"late":true}"#]).unwrap();
        set_hook(None);
        // The map the query made holds the batch's stamp: no query leaves the batch out.
        assert_eq!(all(&store), [r#"{"p":1,"late":true}"#, r#"{"p":2}"#]);
    }

    #[test]
    fn an_open_holds_up_lookups_of_its_project_only() {
        use crate::project::tests::{set_hook, Point};
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.append(1, [r#"{"p":1}"#]).unwrap();
            store.append(2, [r#"{"p":2}"#]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        store.append(1, [r#"{"p":1,"again":true}"#]).unwrap();
        let (second_tx, second) = channel();
        let hooked = store.clone();
        let mut done = false;
        set_hook(Some(Box::new(move |point, path: &Path| {
            if point != Point::Listed || !path.ends_with("2") || std::mem::replace(&mut done, true)
            {
                return;
            }
            // While project 2 is being opened, project 1 is read and appended to.
            let (tx, rx) = channel();
            let other = hooked.clone();
            std::thread::spawn(move || {
                other.append(1, [r#"{"p":1,"third":true}"#]).unwrap();
                tx.send(other.newest_first(1).unwrap().count()).unwrap();
            });
            assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(3));
            // A second lookup of project 2 waits for this open, and gets what it opens.
            let (tx, waiting) = (second_tx.clone(), hooked.clone());
            std::thread::spawn(move || tx.send(waiting.inner.project(2, false)).unwrap());
            std::thread::sleep(Duration::from_millis(200));
        })));
        let first = store.inner.project(2, false).unwrap().unwrap();
        set_hook(None);
        let second = second.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            Arc::ptr_eq(&first, &second.unwrap().unwrap()),
            "project 2 was opened twice"
        );
    }

    #[test]
    fn a_few_projects_named_merge_open_and_closed_ones_alike() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .max_open_projects(2)
            .spare_projects(0)
            .open(dir.path())
            .unwrap();
        for round in 0..2 {
            for p in 1..=5u64 {
                store
                    .append(p, [format!(r#"{{"p":{p},"round":{round}}}"#)])
                    .unwrap();
            }
        }
        // A store made anew knows every stamp: the closed projects are read from theirs, the
        // open ones from snapshots taken at once.
        assert!(store.inner.newest.read().complete);
        assert!(store.inner.projects.read().len() <= 2);
        let newest: Vec<String> = store
            .query(&crate::Query::new().projects([2, 4, 5, 6]).pcount(1))
            .unwrap()
            .map(|m| m.unwrap().into_json())
            .collect();
        assert_eq!(
            newest,
            [
                r#"{"p":5,"round":1}"#,
                r#"{"p":4,"round":1}"#,
                r#"{"p":2,"round":1}"#
            ]
        );
    }

    #[test]
    fn appends_go_on_while_a_query_learns_every_projects_newest_stamp() {
        use crate::project::tests::{set_hook, Point};
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for p in 1..=3 {
                store.append(p, [format!(r#"{{"p":{p}}}"#)]).unwrap();
            }
        }
        // Without the stamps a clean close saves, the first query over every project opens
        // each one to learn its newest stamp.
        fs::remove_file(dir.path().join(NEWEST_FILE)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let appender = store.clone();
        let appended = Arc::new(AtomicBool::new(false));
        let done = appended.clone();
        set_hook(Some(Box::new(move |point, path: &Path| {
            if point != Point::Listed || !path.ends_with("3") || done.swap(true, Ordering::SeqCst) {
                return;
            }
            // Projects 1 and 2 are learnt, project 3 is being opened: an append to project 1
            // is acknowledged meanwhile (it waited for the whole scan).
            let (tx, rx) = channel();
            let appender = appender.clone();
            std::thread::spawn(move || {
                tx.send(appender.append(1, [r#"{"p":1,"late":true}"#]).is_ok())
                    .unwrap();
            });
            assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(true));
        })));
        let newest = |store: &Store| -> Vec<String> {
            let mut newest: Vec<String> = store
                .query(&crate::Query::new().pcount(1))
                .unwrap()
                .map(|m| m.unwrap().into_json())
                .collect();
            newest.sort();
            newest
        };
        let first = newest(&store);
        set_hook(None);
        assert!(
            appended.load(Ordering::SeqCst),
            "the query learnt the stamps without opening project 3"
        );
        // The append after the scan looked at project 1 is in the map: no query leaves it out.
        let expected = [r#"{"p":1,"late":true}"#, r#"{"p":2}"#, r#"{"p":3}"#];
        assert_eq!(newest(&store), expected);
        assert!(store.inner.newest.read().complete);
        // The query that made the map ran beside the append: it has the batch or not, and every
        // project's newest message either way.
        let before = [r#"{"p":1}"#, r#"{"p":2}"#, r#"{"p":3}"#];
        assert!(first == expected || first == before, "{first:?}");
        drop(store);
        // The stamps a clean close saves hold it too.
        assert_eq!(newest(&Store::open(dir.path()).unwrap()), expected);
    }

    /// An eviction closes the projects it takes out of the map after it released the map's
    /// lock (a close syncs): meanwhile a read of another project goes on, while an open of the
    /// project being closed, and a sync of the store, wait until it is closed.
    #[test]
    fn an_eviction_closes_projects_without_holding_up_other_lookups() {
        use crate::project::tests::{set_hook, Point};
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .max_open_projects(2)
            .spare_projects(0)
            .open(dir.path())
            .unwrap();
        store.append(1, [r#"{"p":1}"#]).unwrap();
        store.append(2, [r#"{"p":2}"#]).unwrap();
        let (reopened_tx, reopened) = channel();
        let waiting = Arc::new(AtomicBool::new(false));
        let sync_returned = Arc::new(AtomicBool::new(false));
        let sync_checked = sync_returned.clone();
        let hooked = store.clone();
        let mut done = false;
        set_hook(Some(Box::new(move |point, path: &Path| {
            if point != Point::Closing || std::mem::replace(&mut done, true) {
                return;
            }
            assert!(
                path.ends_with("1"),
                "{path:?}: the least recently used is project 1"
            );
            // Another project's read answers while project 1 is being closed (it waited for
            // the map's lock while the close synced).
            let (tx, rx) = channel();
            let reader = hooked.clone();
            std::thread::spawn(move || {
                let read: Vec<String> = reader
                    .newest_first(2)
                    .unwrap()
                    .map(|m| m.unwrap().into_json())
                    .collect();
                tx.send(read).unwrap();
            });
            let read = rx.recv_timeout(Duration::from_secs(30));
            assert_eq!(read.as_deref(), Ok(&[r#"{"p":2}"#.to_string()][..]));
            // An open of project 1 waits for its close to end.
            let opener = hooked.clone();
            let (tx, answered) = (reopened_tx.clone(), waiting.clone());
            std::thread::spawn(move || {
                let read: Vec<String> = opener
                    .newest_first(1)
                    .unwrap()
                    .map(|m| m.unwrap().into_json())
                    .collect();
                answered.store(true, Ordering::SeqCst);
                tx.send(read).unwrap();
            });
            // So does a sync of the store: the close syncs project 1.
            let (syncer, synced) = (hooked.clone(), sync_returned.clone());
            std::thread::spawn(move || {
                syncer.sync().unwrap();
                synced.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                !waiting.load(Ordering::SeqCst),
                "project 1 opened while being closed"
            );
            assert!(
                !sync_returned.load(Ordering::SeqCst),
                "a sync returned before the close"
            );
        })));
        // A third project: project 1, the least recently used, is evicted.
        store.append(3, [r#"{"p":3}"#]).unwrap();
        set_hook(None);
        let read = reopened.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(read, [r#"{"p":1}"#]);
        let waited = std::time::Instant::now();
        while !sync_checked.load(Ordering::SeqCst) {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the sync never returned"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A `Written` project with 4 MiB unsynced is synced by the background syncer, without
    /// an explicit sync and without the appending thread waiting for it.
    #[test]
    fn written_projects_are_synced_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let message = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
        let batch = vec![message.as_str(); 5 * 1024];
        store.append(1, &batch).unwrap();
        let p = store.inner.project(1, false).unwrap().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while p.unsynced_bytes() > 0 {
            assert!(std::time::Instant::now() < deadline, "never synced");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // A small append after it is not synced: it is under the mark.
        store.append(1, [r#"{"a":1}"#]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(p.unsynced_bytes() > 0);
    }

    /// An index is a cache: one that cannot be synced when its project is closed is removed,
    /// and the project takes appends again at once (before, the failed close refused them until
    /// the store was reopened).
    #[test]
    fn an_index_that_cannot_be_synced_at_a_close_goes_and_the_project_does_not() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let idx = |tmp: &Path| segment::index_path(&project_dir_in(tmp, 1), FIRST_SEQ);
        // The syncs of an eviction, one failed in each run, until the index's is.
        for nth in 1..20 {
            let tmp = tempfile::tempdir().unwrap();
            let store = Options::new()
                .spare_projects(0)
                .max_open_projects(1)
                .open(tmp.path())
                .unwrap();
            for i in 0..3 {
                store.append(1, [format!(r#"{{"i":{i}}}"#)]).unwrap();
            }
            let rec = Recorder::register(tmp.path(), false);
            rec.fail(FaultKind::Sync, nth);
            // Opening project 2 closes project 1.
            store.append(2, [r#"{"j":0}"#]).unwrap();
            rec.unregister();
            let (path, _, _) = rec.faulted().expect("a sync of the close failed");
            if path != idx(tmp.path()) {
                continue;
            }
            assert!(!idx(tmp.path()).exists());
            store.append(1, [r#"{"i":3}"#]).unwrap();
            drop(store);
            assert!(tmp.path().join(CLEAN_FILE).exists());
            let store = Store::open(tmp.path()).unwrap();
            let seqs: Vec<u64> = store
                .newest_first(1)
                .unwrap()
                .map(|m| m.unwrap().seq())
                .collect();
            assert_eq!(seqs, [4, 3, 2, 1]);
            assert!(idx(tmp.path()).exists(), "rebuilt by the open");
            return;
        }
        panic!("no sync of the index when project 1 was closed");
    }

    /// How many syncs of the directory of projects `rec` recorded.
    fn projects_dir_syncs(rec: &crate::fsio::sim::Recorder) -> usize {
        rec.take_points()
            .iter()
            .filter(|point| point.before == "sync of directory projects")
            .count()
    }

    /// A new store is made in a new or empty folder, or in what a first open cut short left;
    /// not in a folder of other files, where the open writes nothing.
    #[test]
    fn a_new_store_is_not_made_among_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let foreign = tmp.path().join("notes");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("todo.txt"), "x").unwrap();
        let refused = Store::open(&foreign).map(drop).unwrap_err();
        assert!(
            matches!(&refused, Error::ForeignFolder { entry, .. } if entry == "todo.txt"),
            "{refused:?}"
        );
        let left: Vec<_> = fs::read_dir(&foreign)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["todo.txt"], "the refused open wrote nothing");
        // A first open cut short after its lock and `projects/`: the store is made.
        let cut = tmp.path().join("cut");
        fs::create_dir_all(cut.join(PROJECTS_DIR)).unwrap();
        fs::write(cut.join(LOCK_FILE), "").unwrap();
        Store::open(&cut)
            .unwrap()
            .append(1, [r#"{"a":1}"#])
            .unwrap();
        // An existing store opens whatever sits beside it.
        fs::write(cut.join("README"), "x").unwrap();
        assert_eq!(
            Store::open(&cut).unwrap().newest_first(1).unwrap().count(),
            1
        );
        // As do an empty folder and a new one.
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        drop(Store::open(&empty).unwrap());
        drop(Store::open(tmp.path().join("new/deeper")).unwrap());
    }

    /// A `CLEAN` marker that is not exactly what this build writes (another format version,
    /// cut short, or longer) does not make the open trust the index files: it recovers as after
    /// a crash, which syncs the directory of projects once.
    #[test]
    fn a_clean_marker_of_another_version_or_size_is_not_trusted() {
        use crate::fsio::sim::Recorder;
        let mut good = CLEAN_MAGIC.to_vec();
        good.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let mut other_version = CLEAN_MAGIC.to_vec();
        other_version.extend_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let mut longer = good.clone();
        longer.push(0);
        let cases = [
            (good.clone(), true),
            (other_version, false),
            (CLEAN_MAGIC.to_vec(), false),
            (longer, false),
        ];
        for (marker, trusted) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let store = Store::open(tmp.path()).unwrap();
            store.append(5, [r#"{"a":1}"#]).unwrap();
            drop(store);
            assert_eq!(fs::read(tmp.path().join(CLEAN_FILE)).unwrap(), good);
            fs::write(tmp.path().join(CLEAN_FILE), &marker).unwrap();
            let rec = Recorder::register(tmp.path(), true);
            let store = Store::open(tmp.path()).unwrap();
            assert_eq!(store.newest_first(5).unwrap().count(), 1);
            rec.unregister();
            let syncs = projects_dir_syncs(&rec);
            assert_eq!(syncs, usize::from(!trusted), "marker {marker:?}");
        }
    }

    #[test]
    fn opening_after_a_crash_syncs_the_directory_of_projects_once() {
        // The killed writer may have made project directories and synced none of their names.
        use crate::fsio::sim::Recorder;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store.append(5, [r#"{"a":1}"#]).unwrap();
        store.append(6, [r#"{"a":1}"#]).unwrap();
        drop(store);
        for crashed in [false, true] {
            if crashed {
                fs::remove_file(tmp.path().join(CLEAN_FILE)).unwrap();
            }
            let rec = Recorder::register(tmp.path(), true);
            let store = Store::open(tmp.path()).unwrap();
            for p in [5, 6] {
                assert_eq!(store.newest_first(p).unwrap().count(), 1);
            }
            rec.unregister();
            let syncs = projects_dir_syncs(&rec);
            assert_eq!(syncs, usize::from(crashed), "crashed {crashed}");
            drop(store);
        }
    }

    /// A `Sync` store's project made from a spare, on a file system whose renames are atomic
    /// (as the recorder models them by default): its first append waits for one fsync, its
    /// log's; the log's name and the directories follow at the next full sync.
    #[test]
    fn a_project_from_a_synced_spare_is_acknowledged_after_one_fsync() {
        let (tmp, append, sync) = syncs_for_a_project_from_a_spare(true);
        assert_eq!(append, ["sync of projects/2/00000000000000000001.log.new"]);
        assert!(
            sync.contains(&"sync of directory projects".to_string()),
            "{sync:?}"
        );
        assert!(project_dir_in(tmp.path(), 2)
            .join("00000000000000000001.log")
            .exists());
    }

    /// The same where renames are not atomic across a power cut (a file system without a
    /// journal, as the recorder models it): the first append waits for its log's sync and the
    /// directory of projects' (the spare's rename); the log's name follows at the next full
    /// sync, linked under its name before the old one goes.
    #[test]
    fn a_project_from_a_synced_spare_without_atomic_renames_waits_for_two_syncs() {
        let (tmp, append, sync) = syncs_for_a_project_from_a_spare(false);
        assert_eq!(
            append,
            [
                "sync of projects/2/00000000000000000001.log.new",
                "sync of directory projects"
            ]
        );
        assert!(
            sync.contains(&"sync of directory projects/2".to_string()),
            "the log's name is synced: {sync:?}"
        );
        let dir = project_dir_in(tmp.path(), 2);
        assert!(dir.join("00000000000000000001.log").exists());
        assert!(!dir.join("00000000000000000001.log.new").exists());
    }

    /// A `Sync` store, renames modelled `atomic` or not, whose project 2 is made from a spare:
    /// the syncs its first append made, then those of the `Store::sync` after it.
    fn syncs_for_a_project_from_a_spare(
        atomic: bool,
    ) -> (tempfile::TempDir, Vec<String>, Vec<String>) {
        use crate::fsio::sim::Recorder;
        let tmp = tempfile::tempdir().unwrap();
        let rec = Recorder::register(tmp.path(), true);
        if !atomic {
            rec.without_atomic_renames();
        }
        let store = sync_store_with_spares(tmp.path());
        let syncs = |rec: &Recorder| -> Vec<String> {
            rec.take_points()
                .into_iter()
                .map(|point| point.before)
                .filter(|b| b.starts_with("sync"))
                .collect()
        };
        syncs(&rec);
        store.append(2, [r#"{"a":1}"#]).unwrap();
        let append = syncs(&rec);
        store.sync().unwrap();
        let sync = syncs(&rec);
        drop(store);
        rec.unregister();
        (tmp, append, sync)
    }

    /// A `Sync` store in `dir` holding project 1, with four spares ready. Four: the next one
    /// taken leaves three, more than half, so the spare thread makes none (and syncs nothing)
    /// meanwhile.
    fn sync_store_with_spares(dir: &Path) -> Store {
        let store = Options::new()
            .durability(Durability::Sync)
            .spare_projects(4)
            .open(dir)
            .unwrap();
        store.append(1, [r#"{"a":1}"#]).unwrap();
        assert!(store.wait_spares(4));
        store
    }

    /// A `Sync` project made from a spare keeps its log's new name until its next full sync:
    /// its first acknowledgement has the index vouch for the log (one entry), and the appends
    /// after it write their entries in batches, as any log's, not one write each.
    #[test]
    fn a_project_from_a_synced_spare_writes_its_index_once_then_in_batches() {
        use crate::fsio::sim::Recorder;
        let tmp = tempfile::tempdir().unwrap();
        let rec = Recorder::register(tmp.path(), true);
        let store = sync_store_with_spares(tmp.path());
        rec.take_points();
        let appends = 3 * crate::project::INDEX_FLUSH_ENTRIES;
        for i in 0..appends {
            store.append(2, [format!(r#"{{"i":{i}}}"#)]).unwrap();
        }
        let points = rec.take_points();
        let index_writes = points
            .iter()
            .filter(|point| point.before.starts_with("write") && point.before.ends_with(".idx"))
            .count();
        drop(store);
        rec.unregister();
        assert!(tmp
            .path()
            .join("projects/2/00000000000000000001.log")
            .exists());
        // The first append's entry, right after its sync; then one write per batch of entries
        // (a batch's newest entry waits for the sync that follows the write).
        let first_sync = points
            .iter()
            .position(|p| p.before.starts_with("sync"))
            .unwrap();
        let next = &points[first_sync + 1].before;
        assert!(next.ends_with(".idx"), "{next}");
        let batch = crate::project::INDEX_FLUSH_ENTRIES - 1;
        assert!(
            index_writes <= 1 + appends.div_ceil(batch),
            "{index_writes} index writes"
        );
    }

    /// A project whose close (an eviction) failed its fsync reads as it is but refuses writes,
    /// and `Store::sync` fails, until the store is reopened; the reopened store recovers it as
    /// after a crash.
    /// `Store::sync` running while an eviction closes a project waits for that close; a close
    /// whose directory sync never started (its directory did not open) leaves the project open,
    /// its names not yet durable, and the store's sync must then sync it, not return `Ok` with
    /// the project's appends lost to a power cut.
    #[test]
    fn a_store_sync_during_an_eviction_that_keeps_its_project_open_syncs_it() {
        use crate::fsio::sim::{FaultKind, Policy, Recorder};
        use crate::project::tests::{set_hook, Point};
        type Syncing = std::thread::JoinHandle<Result<()>>;
        let tmp = tempfile::tempdir().unwrap();
        let store = Options::new()
            .max_open_projects(1)
            .spare_projects(0)
            .open(tmp.path())
            .unwrap();
        let rec = Recorder::register(tmp.path(), true);
        store.append(1, [r#"{"p":1}"#]).unwrap();
        rec.fail(FaultKind::OpenDir, 1);
        // While the append to project 2 closes project 1 (an eviction), a store sync starts.
        let sync: Arc<Mutex<Option<Syncing>>> = Arc::default();
        let (syncing, started) = (store.clone(), sync.clone());
        set_hook(Some(Box::new(move |point, _| {
            let mut started = started.lock();
            if point == Point::Closing && started.is_none() {
                let s = syncing.clone();
                *started = Some(std::thread::spawn(move || s.sync()));
                // Long enough for the sync to find project 1 closing and wait for it.
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        })));
        store.append(2, [r#"{"p":2}"#]).unwrap();
        set_hook(None);
        assert!(rec.faulted().is_some(), "no directory failed to open");
        assert!(store.inner.projects.read().contains_key(&1), "kept open");
        let synced = sync.lock().take().expect("a sync ran").join().unwrap();
        synced.unwrap();
        // A power cut right after that sync, keeping nothing unsynced.
        rec.take_points();
        store
            .append_with(2, [r#"{"p":2}"#], Durability::Sync)
            .unwrap();
        let point = rec.take_points().into_iter().next().expect("a crash point");
        rec.unregister();
        let image = tempfile::tempdir().unwrap();
        point.image(Policy::DropAll, image.path()).unwrap();
        let reopened = Options::new().spare_projects(0).open(image.path()).unwrap();
        assert_eq!(
            reopened.newest_first(1).unwrap().count(),
            1,
            "project 1's append, which the store's sync said was durable"
        );
    }

    #[test]
    fn a_project_whose_close_failed_refuses_writes_until_the_store_is_reopened() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let tmp = tempfile::tempdir().unwrap();
        drop(Store::open(tmp.path()).unwrap());
        let store = Options::new()
            .max_open_projects(2)
            .open(tmp.path())
            .unwrap();
        store.append(1, [r#"{"a":1}"#]).unwrap();
        store.append(2, [r#"{"a":1}"#]).unwrap();
        // Project 3 comes from a spare, so evicting project 1 makes the first sync.
        assert!(store.wait_spares(1));
        let rec = Recorder::register(tmp.path(), false);
        rec.fail(FaultKind::Sync, 1);
        store.append(3, [r#"{"a":1}"#]).unwrap();
        rec.unregister();
        let (path, _, _) = rec.faulted().expect("closing project 1 failed");
        // Its first sync: of its log, still under the name that says it never was.
        assert!(
            path.ends_with("projects/1/00000000000000000001.log.new"),
            "{path:?}"
        );
        assert!(!store.inner.projects.read().contains_key(&1));
        assert!(matches!(store.sync(), Err(Error::Poisoned { project: 1 })));
        assert_eq!(store.newest_first(1).unwrap().count(), 1);
        let refused = store.append(1, [r#"{"a":2}"#]);
        assert!(
            matches!(refused, Err(Error::Poisoned { project: 1 })),
            "{refused:?}"
        );
        // The others go on.
        store.append(2, [r#"{"a":2}"#]).unwrap();
        assert!(matches!(store.sync(), Err(Error::Poisoned { project: 1 })));
        drop(store);
        let rec = Recorder::register(tmp.path(), true);
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.newest_first(1).unwrap().count(), 1);
        rec.unregister();
        let synced: Vec<String> = rec.take_points().into_iter().map(|p| p.before).collect();
        assert!(
            synced.iter().any(|s| s == "sync of directory projects/1"),
            "{synced:?}"
        );
        store.append(1, [r#"{"a":2}"#]).unwrap();
        store.sync().unwrap();
    }

    /// JSON Lines appended through their spans store and refuse exactly what the general path
    /// does: compacted or as given, blank lines and `\r\n` skipped, the same errors.
    #[test]
    fn json_lines_store_and_refuse_as_the_general_path_does() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Options::new()
            .max_message_bytes(40)
            .open(tmp.path())
            .unwrap();
        let good: &[u8] = b"{\"a\":1}\n{ \"b\" : [1, 2] }\r\n\n{\"c\":\"x y\"}\n  {\"d\":{}}  \n{}";
        store
            .append_json_lines(1, good, Durability::Written)
            .unwrap();
        store
            .append_with(2, json::lines(good), Durability::Written)
            .unwrap();
        let read = |p: u64| -> Vec<String> {
            store
                .newest_first(p)
                .unwrap()
                .map(|m| m.unwrap().json().to_owned())
                .collect()
        };
        assert_eq!(read(1), read(2));
        assert_eq!(read(1).len(), 5);
        assert_eq!(read(1)[3], r#"{"b":[1,2]}"#);
        for bad in [
            &b"{\"a\":1}\n[1]\n"[..],
            b"{\"a\":1}\n{\"long\":\"0123456789012345678901234567890123456789\"}",
            b"{\"a\":1}\n{\"a\":\n",
        ] {
            let spans = store.append_json_lines(3, bad, Durability::Written);
            let general = store
                .append_with(3, json::lines(bad), Durability::Written)
                .map_err(|e| e.at_line(|i| json::line_number(bad, i)));
            assert_eq!(
                spans.as_ref().map_err(ToString::to_string).err(),
                general.as_ref().map_err(ToString::to_string).err()
            );
            assert!(spans.is_err());
        }
        assert_eq!(store.newest_first(3).unwrap().count(), 0);
    }

    /// Retention writes nothing to a project whose close failed its fsync: it is refused, and
    /// the project's segments stay.
    #[test]
    fn retention_refuses_a_project_whose_close_failed() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let tmp = tempfile::tempdir().unwrap();
        drop(Options::new().segment_bytes(4096).open(tmp.path()).unwrap());
        let store = Options::new()
            .max_open_projects(2)
            .segment_bytes(4096)
            .open(tmp.path())
            .unwrap();
        let pad = "x".repeat(1000);
        for i in 0..20 {
            store
                .append(1, [format!(r#"{{"a":{i},"p":"{pad}"}}"#)])
                .unwrap();
        }
        store.append(2, [r#"{"a":1}"#]).unwrap();
        assert!(store.wait_spares(1));
        let rec = Recorder::register(tmp.path(), false);
        rec.fail(FaultKind::Sync, 1);
        store.append(3, [r#"{"a":1}"#]).unwrap();
        rec.unregister();
        assert!(rec.faulted().is_some());
        let dir = tmp.path().join("projects/1");
        let before = segment::list(&dir).unwrap();
        assert!(before.len() > 2, "{before:?}");
        let retained = store.apply_retention(&crate::Retention::new().max_messages(2));
        assert!(
            matches!(retained, Err(Error::Poisoned { project: 1 })),
            "{retained:?}"
        );
        assert_eq!(segment::list(&dir).unwrap(), before);
    }

    /// A roll that replaces an empty active segment (here a new project's first log, left
    /// empty by a failed append) and fails after the replacement took the old file's name
    /// poisons the project: appends to the published segment would go to a file no open finds.
    #[test]
    fn a_failed_replacement_of_an_empty_new_log_poisons_the_project() {
        use crate::fsio::sim::{FaultKind, Recorder};
        use std::borrow::Cow;
        let tmp = tempfile::tempdir().unwrap();
        let store = Options::new().spare_projects(0).open(tmp.path()).unwrap();
        // The clock's reservation, the new log's index header and header, then the record: the
        // record's write fails.
        let rec = Recorder::register(tmp.path(), false);
        rec.fail(FaultKind::Write, 4);
        let first = store.append_with(1, [r#"{"a":1}"#], Durability::Sync);
        rec.unregister();
        assert!(matches!(first, Err(Error::Io { .. })), "{first:?}");
        // Stamps beyond the empty segment's range: it is replaced, and the replacement's
        // header write fails, after the old file was removed.
        let far = store.inner.project(1, false).unwrap().unwrap().snapshot();
        let base = far.active.as_ref().unwrap().header.base_stamp;
        let stamp = base + crate::record::MAX_STAMP_DELTA_US + 1_000_000;
        let batch: Vec<Cow<'_, [u8]>> = vec![Cow::Borrowed(&br#"{"a":2}"#[..])];
        let rec = Recorder::register(tmp.path(), false);
        rec.fail(FaultKind::Write, 2);
        let second = store.append_stamped(1, &batch[..], &[stamp], Durability::Sync);
        rec.unregister();
        assert!(matches!(second, Err(Error::Io { .. })), "{second:?}");
        let third = store.append_with(1, [r#"{"a":3}"#], Durability::Sync);
        assert!(matches!(third, Err(Error::Poisoned { .. })), "{third:?}");
        drop(store);
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.newest_first(1).unwrap().count(), 0);
        store
            .append_with(1, [r#"{"a":4}"#], Durability::Sync)
            .unwrap();
        assert_eq!(store.newest_first(1).unwrap().count(), 1);
    }

    /// A roll whose batch then failed (its write, here) leaves an empty active segment whose
    /// base stamp is that batch's, above the project's newest message. An import's message
    /// stamped between the two is stored with its own stamp (the empty segment is replaced),
    /// not refused by a panic on a stamp below its segment's base.
    #[test]
    fn an_import_below_the_base_of_an_empty_segment_left_by_a_failed_roll_is_stored() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let old = crate::clock::now_us() - 3_600_000_000;
        let pad = "x".repeat(2000);
        let batch = |s: &str| -> Vec<Cow<'static, [u8]>> {
            vec![Cow::Owned(format!(r#"{{"p":"{s}"}}"#).into_bytes())]
        };
        // The N-th write of the append that rolls fails: the first N that fails it after the
        // new segment was made.
        for n in 1..=20 {
            let tmp = tempfile::tempdir().unwrap();
            let store = Options::new()
                .segment_bytes(4096)
                .spare_projects(0)
                .open(tmp.path())
                .unwrap();
            store
                .append_stamped(1, &batch(&pad)[..], &[old], Durability::Written)
                .unwrap();
            let rec = Recorder::register(tmp.path(), false);
            rec.fail(FaultKind::Write, n);
            let rolled = store.append(1, [format!(r#"{{"q":"{pad}"}}"#)]);
            rec.unregister();
            let snap = store.inner.project(1, false).unwrap().unwrap().snapshot();
            let active = snap.active.as_ref().unwrap();
            if rolled.is_ok() || active.header.first_seq != 2 {
                continue;
            }
            assert_eq!(snap.next_seq, 2, "the failed batch stored nothing");
            assert!(active.header.base_stamp > old + 1000);
            let imported = store
                .append_stamped(1, &batch("y")[..], &[old + 1000], Durability::Written)
                .unwrap();
            assert_eq!((imported.first_seq, imported.stamp), (2, old + 1000));
            let stamps = |store: &Store| -> Vec<u64> {
                store
                    .newest_first(1)
                    .unwrap()
                    .map(|m| m.unwrap().stamp())
                    .collect()
            };
            assert_eq!(stamps(&store), [old + 1000, old]);
            drop(store);
            assert_eq!(stamps(&Store::open(tmp.path()).unwrap()), [old + 1000, old]);
            return;
        }
        panic!("no write fault left the rolled segment empty");
    }

    /// A `STORE` file whose checksum holds but whose segment size is outside what a store can
    /// be made with is damage: with segments past 4 GiB, record offsets would not fit the
    /// index's 32 bits, and acknowledged appends would not read after a reopen.
    #[test]
    fn a_store_file_naming_a_segment_size_out_of_range_is_corrupt() {
        for bytes in [
            0,
            MIN_SEGMENT_BYTES - 1,
            MAX_SEGMENT_BYTES + 1,
            1 << 33,
            u64::MAX,
        ] {
            let tmp = tempfile::tempdir().unwrap();
            drop(Store::open(tmp.path()).unwrap());
            fs::write(tmp.path().join(STORE_FILE), encode_meta(bytes)).unwrap();
            for read_only in [false, true] {
                let opened = Options::new().read_only(read_only).open(tmp.path());
                assert!(
                    opened.as_ref().is_err_and(Error::is_corruption),
                    "{bytes} read-only {read_only}: {opened:?}"
                );
            }
        }
    }

    #[test]
    fn store_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Store>();
    }

    #[test]
    fn project_dir_names_are_canonical() {
        assert_eq!(parse_project_dir("42"), Some(42));
        assert_eq!(parse_project_dir("042"), None);
        assert_eq!(parse_project_dir("x"), None);
        assert_eq!(parse_project_dir("-1"), None);
    }
}

#[cfg(test)]
mod transit_tests {
    use super::*;
    use crate::project::tests::{set_hook, Point};
    use crate::Query;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    fn answer(store: &Store, query: &Query) -> Vec<String> {
        store
            .query(query)
            .unwrap()
            .map(|m| m.unwrap().into_json())
            .collect()
    }

    /// A read-only store whose first query (`first`) over all projects is scanning the
    /// projects' stamps when, at project 2, the writer appends to project 1 (and, with
    /// `new_project`, makes project 3) and the reader refreshes.
    fn scan_raced_by_a_refresh(dir: &Path, new_project: bool, first: &Query) -> (Store, Store) {
        let writer = Options::new().spare_projects(0).open(dir).unwrap();
        writer.append(1, [r#"{"p":1,"old":true}"#]).unwrap();
        writer.append(2, [r#"{"p":2}"#]).unwrap();
        let reader = Options::new().read_only(true).open(dir).unwrap();
        let (w, r) = (writer.clone(), reader.clone());
        let mut done = false;
        set_hook(Some(Box::new(move |point, path: &Path| {
            if point != Point::Listed || !path.ends_with("2") || std::mem::replace(&mut done, true)
            {
                return;
            }
            w.append(1, [r#"{"p":1,"new":true}"#]).unwrap();
            if new_project {
                w.append(3, [r#"{"p":3}"#]).unwrap();
            }
            r.refresh();
        })));
        answer(&reader, first);
        set_hook(None);
        (writer, reader)
    }

    /// The scan, begun before the refresh, does not complete the refreshed map with what it read
    /// before it (project 3, made before the refresh, was missing from every later query).
    #[test]
    fn a_refresh_during_the_stamp_scan_leaves_the_map_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let (_writer, reader) = scan_raced_by_a_refresh(dir.path(), true, &Query::new());
        for _ in 0..3 {
            let all = answer(&reader, &Query::new());
            assert!(all.contains(&r#"{"p":3}"#.to_string()), "{all:?}");
        }
    }

    /// A message appended before the refresh is not left out of later queries (it was, the
    /// stale stamp capping its project's cursor).
    #[test]
    fn a_refresh_during_the_stamp_scan_leaves_no_newer_message_out() {
        let dir = tempfile::tempdir().unwrap();
        let (_writer, reader) = scan_raced_by_a_refresh(dir.path(), false, &Query::new().count(1));
        for _ in 0..3 {
            assert_eq!(
                answer(&reader, &Query::new().count(1)),
                [r#"{"p":1,"new":true}"#],
                "the newest message, appended before the refresh"
            );
        }
    }

    /// A close that panics does not leave the other projects the same eviction took out of the
    /// map in `closing` for ever (lookups of them waited for ever).
    #[test]
    fn a_panicking_close_leaves_no_project_of_its_eviction_closing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .max_open_projects(10)
            .spare_projects(0)
            .open(dir.path())
            .unwrap();
        for p in 1..=10u64 {
            store.append(p, [format!(r#"{{"p":{p}}}"#)]).unwrap();
        }
        let mut done = false;
        set_hook(Some(Box::new(move |point, _path: &Path| {
            if point == Point::Closing && !std::mem::replace(&mut done, true) {
                panic!("a close panics");
            }
        })));
        let appended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.append(11, [r#"{"p":11}"#]).unwrap();
        }));
        set_hook(None);
        assert!(appended.is_err());
        assert!(store.inner.transit.lock().closing.is_empty());
        let (tx, rx) = channel();
        let other = store.clone();
        std::thread::spawn(move || {
            tx.send(other.newest_first(2).unwrap().count()).unwrap();
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(1),
            "a read of project 2 waits for ever"
        );
    }

    /// A folder without `STORE` but with projects (`refuse_foreign_entries` lets `projects/` by):
    /// the store made there learns their stamps (it took its empty map as complete, and every
    /// query over all projects answered nothing).
    #[test]
    fn a_store_made_over_existing_projects_learns_their_stamps() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.append(1, [r#"{"p":1}"#]).unwrap();
        }
        for f in [STORE_FILE, NEWEST_FILE, CLEAN_FILE] {
            fs::remove_file(dir.path().join(f)).unwrap();
        }
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.projects().unwrap(), [1]);
            assert_eq!(store.newest_first(1).unwrap().count(), 1);
            assert_eq!(answer(&store, &Query::new()), [r#"{"p":1}"#]);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(answer(&store, &Query::new()), [r#"{"p":1}"#]);
    }
}
