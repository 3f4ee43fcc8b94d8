//! One project's log: its ordered segments, recovery on open, appends with roll-over, and group
//! commit.
//!
//! Writers are serialised by the project's writer mutex; readers take a [`Snapshot`] (a few
//! `Arc` clones under a read lock held for nanoseconds) and never block the writer.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::blocking;
use crate::clock::Clock;
use crate::dirsync::{DirSync, Mark};
use crate::error::{Error, Result};
use crate::fsio;
use crate::index::{self, ENTRY_BYTES, INDEX_HEADER_BYTES};
use crate::options::Durability;
use crate::record::{
    encode_frame_parts, frame_len, Batch, Frame, SegmentHeader, FRAME_HEADER_BYTES,
    LOG_HEADER_BYTES, MAX_BASE_STAMP, MAX_RECORDS_PER_SEGMENT, MAX_STAMP_DELTA_US,
};
use crate::scan::{self, scan};
use crate::segment::{self, decode_at, Active, Room, Sealed, Tail};
use crate::spares::{Spare, Spares};

/// The sequence number of a project's first message.
pub const FIRST_SEQ: u64 = 1;

/// Pending index entries are written to the index file once this many accumulate (and at every
/// sync, roll and close), so that recovery after a crash rescans at most about this many records
/// plus whatever was never synced.
/// (Eight in the library's own tests, so that the power-loss suite's small segments reach it.)
pub(crate) const INDEX_FLUSH_ENTRIES: usize = if cfg!(test) { 8 } else { 1024 };

/// A `Written` project has an fsync started (by the store's background syncer, see
/// [`Project::sync_ahead_due`]) once this much is unsynced, bounding the flush a segment roll
/// must wait for under the lock and what a power cut can take.
const SYNC_AHEAD_BYTES: u64 = 4 << 20;

/// The most offsets a project's writer keeps room for between appends (a big import batch's
/// are freed).
const OFFSETS_KEPT: usize = 1024;

/// An append writes its batch in pieces of about this many bytes.
pub(crate) const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// An append of at most `ROOM_MIN_BYTES` (a `Sync` one only in a segment already that long, or
/// a quarter of the segment size if less) makes [`Room`] ahead of the active log's end when it
/// runs out: as much as the segment already holds, between these bounds, past the append's
/// end, then on to the next multiple of `ROOM_MIN_BYTES` of the file — or, once the segment
/// holds `ROOM_MAX_BYTES`, at least `ROOM_MIN_BYTES` past the append's end, then on to the
/// next multiple of `ROOM_MAX_BYTES` (so that the page cache holds its zeros in folios that
/// big) — and never past the segment's size. So a small project's log holds under 128 KiB of
/// zeros while it is open and a big one's under 320 KiB (under 320 MiB for the default 1024
/// open projects), for one write of zeros and one `mmap` per 64 to 320 KiB appended.
const ROOM_MIN_BYTES: u64 = 64 << 10;
const ROOM_MAX_BYTES: u64 = 256 << 10;

/// What a reader sees of a project: fixed when taken.
#[derive(Clone)]
pub(crate) struct Snapshot {
    /// First sequence numbers of the sealed segments, oldest first.
    pub(crate) sealed: Arc<Vec<u64>>,
    /// The segment being appended to, if any.
    pub(crate) active: Option<Arc<Active>>,
    /// Committed bytes of the active log.
    pub(crate) active_len: u64,
    /// One past the newest committed sequence number.
    pub(crate) next_seq: u64,
    /// The newest committed stamp (0 when empty).
    pub(crate) last_stamp: u64,
}

impl Snapshot {
    fn empty() -> Self {
        Snapshot {
            sealed: Arc::new(Vec::new()),
            active: None,
            active_len: 0,
            next_seq: FIRST_SEQ,
            last_stamp: 0,
        }
    }

    fn active_count(&self) -> u64 {
        self.active
            .as_ref()
            .map_or(0, |a| self.next_seq - a.header.first_seq)
    }
}

/// What a successful append returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the batch's first message (for an empty batch, the next one).
    pub first_seq: u64,
    /// How many messages were appended.
    pub count: u64,
    /// The batch's stamp: µs since the Unix epoch, shared by all its messages (for an empty
    /// batch, the project's newest stamp, 0 if it has none).
    pub stamp: u64,
}

impl Appended {
    /// The batch's append time in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.stamp / 1000
    }

    /// Sequence numbers of the appended messages.
    pub fn seqs(&self) -> std::ops::Range<u64> {
        self.first_seq..self.first_seq + self.count
    }
}

struct Writer {
    idx_file: Option<File>,
    /// Entries of the active segment already in its index file.
    idx_written: usize,
    /// Set after an index write failed: stop writing it; the next open rebuilds it.
    idx_broken: bool,
    /// Index entries were written since the index file was last synced.
    idx_unsynced: bool,
    buf: Vec<u8>,
    /// The batch being appended: its records' offsets (kept to save an allocation per append).
    offsets: Vec<u32>,
    /// Bytes written since the last sync.
    dirty: bool,
    /// Room made ahead of the active log's committed end, if any.
    room: Option<Room>,
    /// The active log may be longer than its committed end (room was made or attempted): it is
    /// cut back when the segment is sealed or the project closed.
    grown: bool,
    /// Making room failed in the active segment (no space for it): its appends write with
    /// `pwrite` until the next segment.
    no_room: bool,
    /// What the writer last published to [`Project::state`] (which only the writer changes),
    /// kept so that an append reads it without a lock and two reference counts. `None` until
    /// the first append, and after anything else changed the state or an append failed: the
    /// next append then copies the state.
    snap: Option<Snapshot>,
    /// `Written` bytes appended since the writer last compared the unsynced bytes with
    /// [`SYNC_AHEAD_BYTES`], plus the unsynced bytes it found then: that comparison (under the
    /// sync lock) is made only when this reaches the limit, not on every append.
    unchecked: u64,
}

struct SyncState {
    /// Everything up to (segment first_seq, byte length) is synced.
    synced: (u64, u64),
    running: bool,
    /// A background sync was handed to the store's syncer ([`Project::sync_ahead_due`]) and
    /// has not begun: appends ask for no other until it has. Without this, every append
    /// between the hand-off and the syncer's start handed off one more, and the syncer then
    /// ran them one after the other, each an fsync of the few KiB appended since the last:
    /// one hot project's 190 MB took 617 fdatasyncs, 63 with this (the clock's and the
    /// close's included). Cleared when the background sync begins, and by any sync that
    /// finishes (should a syncer thread that panicked have dropped the hand-off, the next
    /// roll, `Store::sync` or `Sync` append lets the project ask again).
    ahead_asked: bool,
    /// Segments created in the project's directory, and how many of them the directory was
    /// synced after: a segment's records are durable only once its file name is.
    dir_created: u64,
    dir_synced: u64,
    /// The project's directory itself was created, and the directory of projects not synced
    /// since: the mark taken after its entry was made.
    parent_unsynced: Option<Mark>,
    /// The active log is a new project's first, made without a sync and named
    /// [`segment::new_log_path`] until its first sync — for a project whose naming is
    /// `deferred`, its first full sync — names it (`name_new_log`).
    new_log: bool,
    /// What an append's sync leaves to the project's next full sync (a roll, `Store::sync`,
    /// the background sync, a close).
    deferred: Deferred,
}

/// What an append's sync of a project made from a synced spare leaves for later.
#[derive(Clone, Copy, Default)]
struct Deferred {
    /// The log's naming: its entry is durable under [`segment::new_log_path`] (the spare's
    /// directory was synced), and recovery reads a new log whose header reads like any log, so
    /// a record is durable once the log is synced. Where renames are not atomic across a power
    /// cut, the naming then links the log under its name, syncs the directory and only then
    /// removes the old name: a rename could lose both names of a log holding acknowledged
    /// records.
    naming: bool,
    /// The directory of projects too ([`Spare::one_sync`]: renames are atomic, and the log's
    /// header names the project): recovery renames a spare whose rename into place was lost
    /// (`spares::adopted`). Elsewhere, a lost rename could lose both names of the directory.
    parent: bool,
}

impl SyncState {
    /// Bytes of the log up to `target` (segment first_seq, length) not yet synced.
    fn unsynced(&self, target: (u64, u64)) -> u64 {
        if self.synced.0 == target.0 {
            target.1.saturating_sub(self.synced.1)
        } else {
            target.1
        }
    }
}

/// One project's log.
pub(crate) struct Project {
    pub(crate) id: u64,
    dir: PathBuf,
    writable: bool,
    segment_bytes: u64,
    /// `Written` appends may copy into room ([`fsio::room_is_safe`]).
    room: bool,
    writer: Mutex<Writer>,
    state: RwLock<Snapshot>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    poisoned: AtomicBool,
    /// An append found [`SYNC_AHEAD_BYTES`] unsynced: see [`sync_ahead_due`](Self::sync_ahead_due).
    sync_ahead_wanted: AtomicBool,
    /// How many syncs of the active log [`sync_upto`](Self::sync_upto) began.
    #[cfg(test)]
    pub(crate) log_syncs: AtomicU64,
    pub(crate) last_used: AtomicU64,
    /// Where the project's directory comes from if it has none yet (see the `spares` module);
    /// without a pool, or with none ready, it is made on the spot. Weak: a project may outlive
    /// its store for a moment (the background syncer), and the pool holds the store's clock,
    /// which must go with the store's lock.
    spares: Option<Weak<Spares>>,
    /// The syncs of the directory of projects, shared by the store's projects and spares.
    parent_sync: Arc<DirSync>,
}

impl Project {
    /// Opens the project in `dir` (which may not exist yet), repairing a torn tail of its active
    /// segment when `writable`. `crashed` says the last writer did not close cleanly (see
    /// `recover_active`).
    ///
    /// `before_write` is called before recovery writes anything (the store's
    /// `Inner::before_write`).
    pub(crate) fn open(
        id: u64,
        dir: PathBuf,
        writable: bool,
        segment_bytes: u64,
        crashed: bool,
        before_write: &dyn Fn() -> Result<()>,
    ) -> Result<Self> {
        let mut writer = Writer {
            idx_file: None,
            idx_written: 0,
            idx_broken: false,
            // Recovery says whether the index file may hold unsynced bytes.
            idx_unsynced: false,
            buf: Vec::new(),
            offsets: Vec::new(),
            dirty: false,
            room: None,
            grown: false,
            no_room: false,
            snap: None,
            unchecked: 0,
        };
        // A read-only open beside a writer may open a log that is gone since it was listed: a
        // new project's first log, which the writer named meanwhile, or the newest segment,
        // which the writer rolled past and retention removed. It then lists again, as long as
        // the listing names another log (each time, the writer has moved on).
        let mut missing = None;
        let (seqs, second_name, recovered) = loop {
            let logs = if dir.is_dir() {
                segment::list_logs(&dir)?
            } else {
                segment::Logs::default()
            };
            #[cfg(test)]
            tests::hook(tests::Point::Listed, &dir);
            let (seqs, new_log) = (logs.seqs, logs.new_log);
            let last = if new_log {
                Some(FIRST_SEQ)
            } else {
                seqs.last().copied()
            };
            let Some(last) = last else {
                break (seqs, false, None);
            };
            match recover_active(&dir, last, new_log, writable, crashed, before_write) {
                Err(Error::Io { source, .. })
                    if !writable
                        && source.kind() == std::io::ErrorKind::NotFound
                        && missing != Some((last, new_log)) =>
                {
                    missing = Some((last, new_log));
                }
                result => break (seqs, logs.second_name, result?),
            }
        };
        if writable && second_name {
            remove_second_name(&dir, before_write)?;
        }
        let sealed = seqs.split_last().map_or(&[][..], |(_, sealed)| sealed);
        let snapshot = match recovered {
            None => Snapshot::empty(),
            Some((active, len, last_stamp, idx)) => {
                // An active segment without records (a crash after the roll that made it, before
                // its records reached the disk) has its base stamp, the stamp of records that
                // are not there: the newest message is the newest sealed one, if any.
                let last_stamp = if active.entries.read().is_empty() {
                    match sealed.last() {
                        None => 0,
                        Some(&first) => newest_sealed_stamp(&dir, first).unwrap_or(last_stamp),
                    }
                } else {
                    last_stamp
                };
                // Past the last stamp a segment can start at (only a damaged or hostile log
                // with its checksums intact holds one): an append would need a stamp after it,
                // which the clock refuses, so a writable open refuses the project, naming the
                // record (or, for records of an older segment, the active segment's header).
                // Read-only opens read it.
                if writable && last_stamp > MAX_BASE_STAMP {
                    let entries = active.entries.read();
                    let at = entries.iter().rev().find(|&&e| e != index::LOST);
                    return Err(Error::corrupt(
                        &active.path,
                        at.map_or(24, |&e| u64::from(e)),
                        format!(
                            "the project's newest record is stamped {last_stamp} µs after the \
                             epoch, past {MAX_BASE_STAMP} µs, the last a segment can start at: \
                             no append can follow it, and writable opens refuse the project"
                        ),
                    ));
                }
                let last = active.header.first_seq;
                let next_seq = last + active.entries.read().len() as u64;
                if writable {
                    writer.idx_written = active.entries.read().len();
                    match idx {
                        Some((idx, rewritten)) => {
                            writer.idx_file = Some(idx);
                            // After a crash the index may hold entries the last writer never
                            // synced.
                            writer.idx_unsynced = crashed || rewritten;
                        }
                        // Recovery could not bring it up to date: no entries are written.
                        None => writer.idx_broken = true,
                    }
                }
                Snapshot {
                    sealed: Arc::new(sealed.to_vec()),
                    active: Some(Arc::new(active)),
                    active_len: len,
                    next_seq,
                    last_stamp,
                }
            }
        };
        let synced = (
            snapshot.active.as_ref().map_or(0, |a| a.header.first_seq),
            snapshot.active_len,
        );
        let dir_parent = dir.parent().map(Path::to_path_buf);
        Ok(Project {
            id,
            dir,
            writable,
            segment_bytes,
            room: false,
            writer: Mutex::new(writer),
            state: RwLock::new(snapshot),
            sync: Mutex::new(SyncState {
                synced,
                running: false,
                ahead_asked: false,
                dir_created: 0,
                dir_synced: 0,
                parent_unsynced: None,
                new_log: false,
                deferred: Deferred::default(),
            }),
            synced: Condvar::new(),
            poisoned: AtomicBool::new(false),
            sync_ahead_wanted: AtomicBool::new(false),
            #[cfg(test)]
            log_syncs: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
            spares: None,
            parent_sync: Arc::new(DirSync::new(
                dir_parent.unwrap_or_else(|| PathBuf::from(".")),
            )),
        })
    }

    /// Refuses writes from now on ([`Error::Poisoned`]), as after a failed fsync of its log.
    pub(crate) fn poisoned(self) -> Self {
        self.poisoned.store(true, Ordering::Release);
        self
    }

    /// Lets `Written` appends copy into room (when the store's file system allows it).
    pub(crate) fn with_room(mut self, room: bool) -> Self {
        self.room = room;
        self
    }

    /// Takes its directory from `spares` when its first message is appended (if it has no
    /// directory by then).
    pub(crate) fn with_spares(mut self, spares: Option<Weak<Spares>>) -> Self {
        self.spares = spares;
        self
    }

    /// Shares `parent_sync`, the store's syncs of the directory of projects.
    pub(crate) fn with_parent_sync(mut self, parent_sync: Arc<DirSync>) -> Self {
        self.parent_sync = parent_sync;
        self
    }

    /// A consistent view for a reader.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.state.read().clone()
    }

    /// Whether a reader's snapshot still holds the active segment (a long scan may have its
    /// committed bytes mapped): such a project is not closed for eviction, so no reopen's
    /// recovery can cut bytes under that map.
    pub(crate) fn active_in_use(&self) -> bool {
        // An append under way is a use; the writer's own copy of the state is not.
        let Some(w) = self.writer.try_lock() else {
            return true;
        };
        let state = self.state.read();
        state.active.as_ref().is_some_and(|a| {
            let mine = w.snap.as_ref().and_then(|s| s.active.as_ref());
            let writer = usize::from(mine.is_some_and(|m| Arc::ptr_eq(m, a)));
            Arc::strong_count(a) > 1 + writer
        })
    }

    /// Appends a validated batch as one atomic unit.
    ///
    /// `stamps`: one stamp per message, non-decreasing and spanning at most
    /// [`MAX_STAMP_DELTA_US`] (imports keep their history); `None` takes one from the clock.
    /// Stamps below the project's newest are raised to it, so a project's stamps never decrease.
    /// `publish` is called with the batch's newest stamp just before readers can see the batch
    /// (the store keeps each project's newest stamp as an upper bound for merged queries).
    pub(crate) fn append<B: Batch + ?Sized>(
        &self,
        clock: &Clock,
        messages: &B,
        stamps: Option<&[u64]>,
        durability: Durability,
        publish: &dyn Fn(u64),
    ) -> Result<Appended> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned { project: self.id });
        }
        debug_assert!(self.writable);
        // Inside `without_blocking` an append is kept to memory: refused (before anything
        // changed) where it would wait for another appender, sync, or make a file or room.
        if durability == Durability::Sync && messages.count() > 0 {
            blocking::check()?;
        }
        let mut guard = blocking::lock(&self.writer)?;
        let w = &mut *guard;
        let snap = w.snap.take().unwrap_or_else(|| self.snapshot());
        if messages.count() == 0 {
            let none = Appended {
                first_seq: snap.next_seq,
                count: 0,
                stamp: snap.last_stamp,
            };
            w.snap = Some(snap);
            return Ok(none);
        }
        let (stamp, last_stamp) = match stamps {
            None => {
                let s = clock.next()?.max(snap.last_stamp);
                (s, s)
            }
            Some(st) => {
                debug_assert_eq!(st.len(), messages.count());
                let first = st[0].max(snap.last_stamp);
                (first, st[st.len() - 1].max(first))
            }
        };
        let n = messages.count() as u64;
        let bytes: u64 = (0..messages.count())
            .map(|i| frame_len(messages.message_len(i)) as u64)
            .sum();
        let needs_new = match &snap.active {
            None => true,
            Some(a) => {
                let count = snap.active_count();
                let stale = last_stamp.saturating_sub(a.header.base_stamp) > MAX_STAMP_DELTA_US;
                let full = snap.active_len + bytes > self.segment_bytes
                    || count + n > MAX_RECORDS_PER_SEGMENT;
                // An empty segment a failed batch left (its roll succeeded, its write did not)
                // is based on that batch's stamp, which may be above the project's newest: a
                // batch stamped below it (an import's) replaces it, as its records' stamps
                // cannot go below their segment's base.
                let below = count == 0 && stamp < a.header.base_stamp;
                stale || below || (count > 0 && full)
            }
        };
        if needs_new {
            blocking::check()?;
        }
        let mut snap = if needs_new {
            self.roll(w, &snap, stamp)?
        } else {
            snap
        };
        let active = snap.active.as_ref().expect("an active segment after roll");
        // Big batches (imports') gain nothing from room: they write in big pieces anyway.
        // `Written` appends copy into it instead of making a system call. `Sync` appends
        // write into it once their segment holds `ROOM_MIN_BYTES` (or a quarter of a smaller
        // segment size): their fsync then writes into blocks the file already has, without a
        // metadata write (a journal commit, or the inode) for a new length (once the room's own
        // length is synced). Sooner, the fsync that writes the room's zeros costs more than the
        // metadata writes it spares: a project with a few appends loses.
        let room_wanted = match durability {
            Durability::Written => true,
            Durability::Sync => snap.active_len >= ROOM_MIN_BYTES.min(self.segment_bytes / 4),
        };
        let end = snap.active_len + bytes;
        if w.room.as_ref().is_none_or(|r| r.end() < end) {
            // Not a copy into the room: room to be made (zeros written and mapped), or a
            // `pwrite`. (A `Sync` append was refused already.)
            blocking::check()?;
        }
        if self.room && room_wanted && bytes <= ROOM_MIN_BYTES {
            self.make_room(w, active, snap.active_len, end);
        }
        let count = snap.active_count();
        let base = active.header.base_stamp;
        let mut offsets = std::mem::take(&mut w.offsets);
        offsets.clear();
        offsets.reserve(messages.count());
        // The batch goes out in pieces of about WRITE_CHUNK_BYTES, so a big one (an import's)
        // needs no buffer of its size; a crash can tear a batch either way, and recovery drops
        // a batch without its last frame.
        let mut written = 0u64;
        let mut result = Ok(());
        w.buf.clear();
        let last = messages.count() - 1;
        for i in 0..=last {
            offsets.push((snap.active_len + written + w.buf.len() as u64) as u32);
            let (payload, more) = messages.pieces(i);
            encode_frame_parts(
                &mut w.buf,
                &Frame {
                    seq_delta: (count + i as u64) as u32,
                    stamp_delta: stamps.map_or(stamp, |st| st[i].clamp(stamp, last_stamp)) - base,
                    continues: i < last,
                    payload,
                },
                more,
            );
            if w.buf.len() >= WRITE_CHUNK_BYTES || i == last {
                let at = snap.active_len + written;
                // A `Sync` append writes into the room with `pwrite`: a copy into the map
                // would fault on every page its fsync had cleaned (write-protected, with a TLB
                // shootdown on every core), where the fsync is the point.
                result = match &w.room {
                    Some(room)
                        if durability == Durability::Written
                            && at + w.buf.len() as u64 <= room.end() =>
                    {
                        fsio::write_in_room(&active.file, room, &w.buf, at)
                    }
                    _ => fsio::write_at(&active.file, &w.buf, at),
                };
                if result.is_err() {
                    break;
                }
                // Readers see it only once the whole batch is published; a failed batch leaves
                // bytes past the committed end, which no reader asks for.
                active.remember(snap.active_len + written, &w.buf);
                written += w.buf.len() as u64;
                w.buf.clear();
            }
        }
        if w.buf.capacity() > 2 * WRITE_CHUNK_BYTES {
            // A single huge message grew it: do not keep that much.
            w.buf = Vec::new();
        }
        if let Err(e) = result {
            // Take back whatever part of the batch reached the file, so the next batch starts at
            // the committed end. If even that fails, refuse writes until a reopen repairs it.
            w.room = None;
            w.grown = false;
            if fsio::set_len(&active.file, snap.active_len).is_err() {
                self.poisoned.store(true, Ordering::Release);
            }
            return Err(Error::io("appending to", &active.path, e));
        }
        let new_len = snap.active_len + written;
        publish(last_stamp);
        let entries = {
            let mut entries = active.entries.write();
            entries.extend_from_slice(&offsets);
            entries.len()
        };
        if offsets.capacity() <= OFFSETS_KEPT {
            w.offsets = offsets;
        }
        {
            let mut state = self.state.write();
            state.active_len = new_len;
            state.next_seq += n;
            state.last_stamp = last_stamp;
        }
        w.dirty = true;
        if entries - w.idx_written >= INDEX_FLUSH_ENTRIES {
            self.flush_index(w, active);
        }
        let first_seq = snap.next_seq;
        let target = (active.header.first_seq, new_len);
        if durability == Durability::Written {
            w.unchecked += written;
            // Inside `without_blocking` (the batch stored: no refusal now), not waited for;
            // the next append looks again. (Only then is the lock taken: a tuple of the two
            // took it on every append.)
            if w.unchecked >= SYNC_AHEAD_BYTES {
                if let Some(s) = self.sync_state() {
                    w.unchecked = s.unsynced(target);
                    if !s.running && !s.ahead_asked && w.unchecked >= SYNC_AHEAD_BYTES {
                        self.sync_ahead_wanted.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        snap.active_len = new_len;
        snap.next_seq += n;
        snap.last_stamp = last_stamp;
        w.snap = Some(snap);
        drop(guard);
        if durability == Durability::Sync {
            self.sync_upto(target, true, false)?;
            if self.sync.lock().deferred.naming {
                // The log keeps its new name past this acknowledgement: its index vouches for
                // the records at once (a write, no sync), so that a crash followed by damage
                // to the log's header does not pass for a log that never reached the disk
                // (`segment::index_vouches`). One entry vouches: once the index holds one, the
                // later appends' entries are written as any log's are, in batches.
                let mut w = self.writer.lock();
                if w.idx_written == 0 {
                    if let Some(active) = self.snapshot().active {
                        self.flush_index(&mut w, &active);
                    }
                }
            }
        }
        Ok(Appended {
            first_seq,
            count: n,
            stamp: last_stamp,
        })
    }

    /// Makes sure the writer's room takes the active log's bytes up to `end` (`committed` being
    /// the committed end), making more when it runs out. Best effort: where room cannot be made
    /// (no space for it), appends write with `pwrite`, as they would without it.
    fn make_room(&self, w: &mut Writer, active: &Active, committed: u64, end: u64) {
        if w.no_room || w.room.as_ref().is_some_and(|r| r.end() >= end) {
            return;
        }
        // The zeros already written past the committed end.
        let zeros_from = w.room.take().map_or(committed, |r| r.end().max(committed));
        let ahead = (committed - LOG_HEADER_BYTES as u64).clamp(ROOM_MIN_BYTES, ROOM_MAX_BYTES);
        // A big segment's room ends on a multiple of `ROOM_MAX_BYTES`, so the next one's
        // zeros start on one and the page cache holds them in folios of that size
        // ([`fsio::write_zeros`]).
        let want = if ahead == ROOM_MAX_BYTES {
            (end + ROOM_MIN_BYTES).next_multiple_of(ROOM_MAX_BYTES)
        } else {
            (end + ahead).next_multiple_of(ROOM_MIN_BYTES)
        };
        let want = want
            .min(self.segment_bytes.max(end))
            .min(u64::from(u32::MAX));
        if want < end || committed >= want {
            return;
        }
        w.grown = true;
        match Room::make(&active.file, &active.path, committed, zeros_from, want) {
            Ok(room) => w.room = Some(room),
            Err(e) => {
                log::debug!("{e}; appending without room ahead");
                w.no_room = true;
            }
        }
    }

    /// Drops the writer's room and cuts the active log back to its committed end if it may be
    /// longer. The cut is durable once the log is next synced. A failure poisons the log.
    fn trim_room(&self, w: &mut Writer, active: &Active, committed: u64) -> Result<()> {
        w.room = None;
        w.no_room = false;
        if std::mem::take(&mut w.grown) {
            if let Err(e) = fsio::set_len(&active.file, committed) {
                self.poisoned.store(true, Ordering::Release);
                return Err(Error::io("truncating", &active.path, e));
            }
        }
        Ok(())
    }

    /// Cuts the active log back to its committed end if the writer made room since the last
    /// cut ([`trim_room`](Self::trim_room)); returns the active segment and its committed
    /// length when it did.
    fn cut_room(&self, w: &mut Writer) -> Result<Option<(Arc<Active>, u64)>> {
        let snap = self.snapshot();
        match (w.grown, snap.active) {
            (true, Some(active)) => {
                self.trim_room(w, &active, snap.active_len)?;
                Ok(Some((active, snap.active_len)))
            }
            _ => Ok(None),
        }
    }

    /// Seals the active segment (if it holds records) and starts a new one at the next sequence
    /// number, whose base stamp is `stamp`.
    fn roll(&self, w: &mut Writer, snap: &Snapshot, stamp: u64) -> Result<Snapshot> {
        let mut sealed = snap.sealed.clone();
        if let Some(old) = &snap.active {
            if snap.active_count() > 0 {
                // A sealed segment is never repaired on open, so it must be on disk first, and
                // end with its last record.
                self.trim_room(w, old, snap.active_len)?;
                if let Err(e) = fsio::sync_data(&old.file) {
                    self.poisoned.store(true, Ordering::Release);
                    return Err(Error::io("syncing", &old.path, e));
                }
                // Its name too, before anything counts as synced (an appender waiting for a
                // sync would take it as durable): a newer segment must never outlive an older
                // one's, and a new project's first log is named now.
                self.sync_dirs(Some(old), true)?;
                self.mark_synced((old.header.first_seq, snap.active_len));
                self.flush_index(w, old);
                if let Some(idx) = &w.idx_file {
                    // A sealed segment's index is trusted on open, so it must be durable too,
                    // or gone (a removal that fails leaves one that open checks anyway).
                    let _ = self.sync_index(idx, old);
                }
                Arc::make_mut(&mut sealed).push(old.header.first_seq);
            }
        }
        let header = SegmentHeader {
            first_seq: snap.next_seq,
            base_stamp: stamp,
            project: self.id,
        };
        let mut spare = None;
        if snap.active.is_none() && !self.dir.is_dir() {
            let taken = (snap.next_seq == FIRST_SEQ)
                .then(|| self.spares.as_ref()?.upgrade()?.take())
                .flatten();
            spare = taken.and_then(|spare| match fs::rename(&spare.path, &self.dir) {
                Ok(()) => Some(spare),
                Err(e) => {
                    log::warn!(
                        "cannot rename {} to {}: {e}",
                        spare.path.display(),
                        self.dir.display()
                    );
                    let _ = fs::remove_dir_all(&spare.path);
                    None
                }
            });
            if spare.is_none() {
                segment::create_dir_private(&self.dir, true)
                    .map_err(|e| Error::io("creating", &self.dir, e))?;
            }
            // Synced with the first sync of a record (`sync_dirs`), or by any sync of the
            // directory of projects that starts after this mark; set before anything else can
            // fail, since a retry finds the directory there.
            self.sync.lock().parent_unsynced = Some(self.parent_sync.mark());
        }
        // Replacing an empty active segment, a failure from here on may leave the published
        // segment's file without its name (the replacement took it): the project is poisoned,
        // so that nothing is appended to a file no open will find. It held no record, so a
        // reopen loses nothing.
        let replacing = snap
            .active
            .as_ref()
            .is_some_and(|a| a.header.first_seq == header.first_seq);
        // A new log only as the project's only segment: none sealed, and no active one but
        // an empty new log being replaced. (A damaged header may have named a segment 0, so
        // a segment starting at 1 can follow one.)
        let may_be_new = sealed.is_empty() && (snap.active.is_none() || self.sync.lock().new_log);
        let made = self.create_segment(header, spare.as_ref(), may_be_new);
        let (new_log, path, file, idx) = match made {
            Ok(made) => made,
            Err(e) => {
                if replacing {
                    self.poisoned.store(true, Ordering::Release);
                }
                return Err(e);
            }
        };
        let active = Arc::new(Active {
            path,
            header,
            file,
            entries: RwLock::new(Vec::new()),
            tail: RwLock::new(Tail::default()),
            scan_map: Mutex::new(None),
        });
        // An empty segment replaced by this one may have had room.
        w.room = None;
        w.grown = false;
        w.no_room = false;
        w.idx_file = Some(idx);
        w.idx_written = 0;
        w.idx_broken = false;
        w.idx_unsynced = false;
        let published = {
            let mut state = self.state.write();
            state.sealed = sealed;
            state.active = Some(active);
            state.active_len = LOG_HEADER_BYTES as u64;
            state.clone()
        };
        if new_log {
            self.sync.lock().new_log = true;
        }
        Ok(published)
    }

    /// Creates the active segment `roll` starts (or, from a `spare` renamed into place, writes
    /// the header of the spare's empty log) and opens its files: whether its log is new, the
    /// log's path (its name, even while new), the log, the index. Its log is made new only if
    /// it `may_be_new` (it will be the project's only segment); a spare's log is new.
    fn create_segment(
        &self,
        header: SegmentHeader,
        spare: Option<&Spare>,
        may_be_new: bool,
    ) -> Result<(bool, PathBuf, File, File)> {
        let path = segment::log_path(&self.dir, header.first_seq);
        let (new_log, file) = if let Some(spare) = spare {
            // The log's header is written in place, in the file whose entry the spare's
            // directory sync made durable (a `Sync` store's spare): with the header naming the
            // project, the log's own sync makes its records durable (see `sync_upto`).
            let new_path = segment::new_log_path(&self.dir);
            let file = Active::open_file(&new_path, true)?;
            fsio::write_at(&file, &header.encode(), 0)
                .map_err(|e| Error::io("writing", &new_path, e))?;
            let mut s = self.sync.lock();
            s.new_log = false;
            s.deferred = Deferred {
                naming: spare.synced,
                parent: spare.one_sync,
            };
            if !spare.synced {
                s.dir_created += 1;
            }
            (true, file)
        } else {
            // A new project's first log is made without a sync, under a name that says so; it
            // is synced and named with the project's first sync. Its directory (new, or made
            // empty by recovery) holds no other log — unless an earlier attempt got as far as
            // renaming a spare into place: that log is replaced like any other. Under the sync
            // lock, so that no sync names a log while it is being replaced (`name_new_log`);
            // the log counts as new once it is published.
            let mut s = self.sync.lock();
            let new_log = if may_be_new
                && header.first_seq == FIRST_SEQ
                && !segment::log_path(&self.dir, FIRST_SEQ).exists()
            {
                s.new_log = false;
                s.deferred = Deferred::default();
                segment::create_new(&self.dir, header)?;
                true
            } else {
                drop(s);
                // An empty active segment with the same first sequence number is replaced by
                // rename.
                segment::create(&self.dir, header)?;
                self.sync.lock().dir_created += 1;
                false
            };
            let file = Active::open_file(
                &if new_log {
                    segment::new_log_path(&self.dir)
                } else {
                    path.clone()
                },
                true,
            );
            match file {
                Ok(file) => (new_log, file),
                Err(e) => return Err(self.unmake_segment(header.first_seq, new_log, e)),
            }
        };
        let idx_path = segment::index_path(&self.dir, header.first_seq);
        let idx = OpenOptions::new()
            .write(true)
            .open(&idx_path)
            .map_err(|e| Error::io("opening", &idx_path, e));
        match idx {
            Ok(idx) => Ok((new_log, path, file, idx)),
            Err(e) if spare.is_none() => Err(self.unmake_segment(header.first_seq, new_log, e)),
            Err(e) => Err(e),
        }
    }

    /// Syncs the index file `idx` of `active`'s segment; an index that cannot be synced (a
    /// cache, rebuilt from the log by the next open) is removed instead. Whether it was synced;
    /// an error if it could be neither synced nor removed.
    fn sync_index(&self, idx: &File, active: &Active) -> Result<bool> {
        let Err(e) = fsio::sync_data(idx) else {
            return Ok(true);
        };
        let path = segment::index_path(&self.dir, active.header.first_seq);
        log::warn!("cannot sync {} ({e}); removing it", path.display());
        fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        Ok(false)
    }

    /// Takes back the files of a segment starting at `first_seq` that [`segment::create`] made
    /// but that could not be opened (out of file handles, say), and returns `error`. Left on
    /// disk, that segment would outlive the failure: the appends that follow go to the older
    /// segment, still active, and a reopen would take the newer, empty one for the active
    /// segment and its first sequence number for the end of the older one's records,
    /// misreading every message acknowledged since. The removal is made durable as every entry
    /// change of the directory is: the directory counts as changed, and the next sync of the
    /// project syncs it before anything after it is acknowledged as durable. If the files cannot
    /// be removed, the project is poisoned. A project's first log (`new_log`) has no older
    /// segment, and is replaced when it is made again.
    fn unmake_segment(&self, first_seq: u64, new_log: bool, error: Error) -> Error {
        if new_log {
            return error;
        }
        let removed = segment::remove_if_present(&segment::log_path(&self.dir, first_seq))
            .and_then(|()| segment::remove_if_present(&segment::index_path(&self.dir, first_seq)));
        match removed {
            Ok(()) => self.sync.lock().dir_created += 1,
            Err(e) => {
                log::warn!("cannot take back a segment that failed to open ({e}); poisoning");
                self.poisoned.store(true, Ordering::Release);
            }
        }
        error
    }

    /// Writes pending index entries of records that are synced. Failures are logged, not
    /// returned: the index is a cache, and the next open rebuilds what is missing from the log.
    fn flush_index(&self, w: &mut Writer, active: &Active) {
        if w.idx_broken {
            return;
        }
        let Some(idx) = &w.idx_file else { return };
        // Inside `without_blocking`, left to a later append if a sync holds the lock.
        let Some(s) = self.sync_state() else { return };
        let synced = if s.synced.0 == active.header.first_seq {
            s.synced.1
        } else {
            0
        };
        drop(s);
        let entries = active.entries.read();
        // Only records already synced: then every entry on disk points at durable bytes, and
        // recovery after a power cut can trust the index (see `recover_active`).
        let upto = w.idx_written
            + entries[w.idx_written..]
                .iter()
                .take_while(|&&e| e == index::LOST || u64::from(e) < synced)
                .count();
        if upto == w.idx_written {
            return;
        }
        let mut bytes = Vec::with_capacity((upto - w.idx_written) * ENTRY_BYTES);
        index::encode_entries(&mut bytes, &entries[w.idx_written..upto]);
        let at = (INDEX_HEADER_BYTES + w.idx_written * ENTRY_BYTES) as u64;
        match fsio::write_at(idx, &bytes, at) {
            Ok(()) => {
                w.idx_written = upto;
                w.idx_unsynced = true;
            }
            Err(e) => {
                log::warn!(
                    "cannot write the index of {} ({e}); it will be rebuilt on the next open",
                    active.path.display()
                );
                w.idx_broken = true;
            }
        }
    }

    /// Makes everything appended so far durable, and cuts the active log back to its last
    /// record: after [`Store::sync`](crate::Store::sync) a store's files hold no room (its next
    /// appends make more). The cut is durable if there was anything to sync.
    pub(crate) fn sync(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned { project: self.id });
        }
        self.cut_room(&mut self.writer.lock())?;
        let snap = self.snapshot();
        let Some(active) = &snap.active else {
            return Ok(());
        };
        self.sync_upto((active.header.first_seq, snap.active_len), true, true)?;
        let mut w = self.writer.lock();
        // The segment may have rolled meanwhile: flush the one that is active now.
        if let Some(active) = self.snapshot().active {
            self.flush_index(&mut w, &active);
        }
        Ok(())
    }

    /// Whether enough is unsynced that a `Written` project should be synced now (and no sync
    /// is running or handed off: [`SyncState::ahead_asked`], which a `true` answer sets). The
    /// store then has its background syncer call [`sync_ahead`](Self::sync_ahead),
    /// so the appending thread never waits for that fsync. Appends ask for the check when they
    /// find enough unsynced (once per [`SYNC_AHEAD_BYTES`] appended); otherwise it is one load.
    pub(crate) fn sync_ahead_due(&self) -> bool {
        // A plain load first: the swap, which would cost every append an atomic write, only
        // when an append asked.
        if !self.sync_ahead_wanted.load(Ordering::Relaxed)
            || !self.sync_ahead_wanted.swap(false, Ordering::Relaxed)
        {
            return false;
        }
        let target = self.committed();
        let Some(mut s) = self.sync_state() else {
            // Asked again by the next append.
            self.sync_ahead_wanted.store(true, Ordering::Relaxed);
            return false;
        };
        let due = !s.running
            && !s.ahead_asked
            && !self.poisoned.load(Ordering::Acquire)
            && s.unsynced(target) >= SYNC_AHEAD_BYTES;
        // The caller hands the sync off now.
        s.ahead_asked |= due;
        due
    }

    /// The sync state's lock: waited for, except inside [`without_blocking`](crate::without_blocking),
    /// where it is only tried (a sync may hold it across a rename or a directory's fsync, when
    /// it names a new project's first log); `None` if another thread holds it there.
    fn sync_state(&self) -> Option<parking_lot::MutexGuard<'_, SyncState>> {
        if blocking::in_scope() {
            self.sync.try_lock()
        } else {
            Some(self.sync.lock())
        }
    }

    /// Syncs what is committed now, unless another thread is syncing. A failure poisons the
    /// log like any failed fsync (the next append reports it); the appends it covered had
    /// already reached the OS, as their durability promised.
    pub(crate) fn sync_ahead(&self) {
        if let Err(e) = self.sync_upto(self.committed(), false, true) {
            log::error!("project {}: {e}", self.id);
        }
    }

    /// Bytes committed but not yet synced.
    #[cfg(test)]
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        let target = self.committed();
        self.sync.lock().unsynced(target)
    }

    /// The committed end: (active segment's first sequence number, log length).
    fn committed(&self) -> (u64, u64) {
        let state = self.state.read();
        (
            state.active.as_ref().map_or(0, |a| a.header.first_seq),
            state.active_len,
        )
    }

    /// The group-commit loop. With `wait` false (the background sync, [`sync_ahead`](Self::sync_ahead)),
    /// returns at once if another thread is syncing.
    /// With `full` false (an append's sync), a project made from a synced spare leaves its
    /// log's naming and maybe the directory of projects for later (see [`Deferred`]);
    /// with `full`, everything is synced.
    fn sync_upto(&self, target: (u64, u64), wait: bool, full: bool) -> Result<()> {
        let mut s = self.sync.lock();
        if !wait {
            // The background sync (`sync_ahead`) has begun: from here on, under this lock,
            // it either runs or finds its work done or another sync running.
            s.ahead_asked = false;
        }
        loop {
            if self.poisoned.load(Ordering::Acquire) {
                return Err(Error::Poisoned { project: self.id });
            }
            // A new project's first log still to be named (its first sync came between its
            // creation and its publication) is synced and named now, unless that may wait.
            let owed = if full {
                s.new_log || s.deferred.naming || s.deferred.parent
            } else {
                s.new_log && !s.deferred.naming
            };
            if s.synced >= target && !owed {
                return Ok(());
            }
            if s.running && !wait {
                return Ok(());
            }
            if s.running {
                self.synced.wait(&mut s);
                continue;
            }
            s.running = true;
            drop(s);
            // Sync the active segment as it is now: that covers every batch written before this
            // point, including those of writers now waiting.
            let snap = self.snapshot();
            let active = snap
                .active
                .as_ref()
                .expect("a target implies an active segment");
            let covered = (active.header.first_seq, snap.active_len);
            #[cfg(test)]
            self.log_syncs.fetch_add(1, Ordering::Relaxed);
            let result = fsio::sync_data(&active.file)
                .map_err(|e| Error::io("syncing", &active.path, e))
                .and_then(|()| self.sync_dirs(Some(active), full));
            s = self.sync.lock();
            s.running = false;
            match result {
                Ok(()) => {
                    s.synced = s.synced.max(covered);
                    s.ahead_asked = false;
                    self.writer_clean_if(covered);
                }
                Err(e) => {
                    if !segment::sync_not_started(&e) {
                        self.poisoned.store(true, Ordering::Release);
                    }
                    self.synced.notify_all();
                    return Err(e);
                }
            }
            self.synced.notify_all();
        }
    }

    /// Names a new project's first log if it is `synced` ([`name_new_log`](Self::name_new_log)),
    /// then syncs the project's directory if a segment was created in it since its last sync,
    /// and its parent if the project's directory is new: then the files synced so far are found
    /// after a power cut. Unless `full`, leaves what [`Deferred`] says may wait. A
    /// failure poisons the log, like a failed fsync of the log, but for a directory that did
    /// not open ([`segment::sync_not_started`]): what it was to sync is synced next time.
    fn sync_dirs(&self, synced: Option<&Arc<Active>>, full: bool) -> Result<()> {
        let result = (|| {
            let deferred = if full {
                Deferred::default()
            } else {
                self.sync.lock().deferred
            };
            if let (Some(synced), false) = (synced, deferred.naming) {
                self.name_new_log(synced)?;
            }
            let (created, parent) = {
                let s = self.sync.lock();
                (
                    (s.dir_created > s.dir_synced).then_some(s.dir_created),
                    s.parent_unsynced.filter(|_| !deferred.parent),
                )
            };
            if let Some(created) = created {
                segment::sync_dir(&self.dir)?;
                let mut s = self.sync.lock();
                s.dir_synced = s.dir_synced.max(created);
            }
            if let Some(mark) = parent {
                self.parent_sync.sync_since(mark)?;
                let mut s = self.sync.lock();
                if s.parent_unsynced == Some(mark) {
                    s.parent_unsynced = None;
                }
            }
            let mut s = self.sync.lock();
            if full && !s.new_log && s.parent_unsynced.is_none() {
                s.deferred = Deferred::default();
            }
            Ok(())
        })();
        if result
            .as_ref()
            .is_err_and(|e| !segment::sync_not_started(e))
        {
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    /// Renames a new project's first log, `synced` (fsynced by the caller), from
    /// [`segment::new_log_path`] to its name: from then on, a log that does not read after a
    /// power cut is damage, where before it was a creation that never reached the disk. Only if
    /// `synced` is the published active segment and still new: under the sync lock, which
    /// `roll` holds while it replaces a new log, the file under that name is then the one
    /// synced. The directory sync that follows makes the name durable; until it has, a crash
    /// leaves either name, and the log's header synced. A log whose naming was deferred past
    /// acknowledged records, where renames are not atomic, is linked under its name instead,
    /// the directory synced, and its old name removed ([`segment::name_new_log_durably`]).
    fn name_new_log(&self, synced: &Arc<Active>) -> Result<()> {
        let mut s = self.sync.lock();
        if !s.new_log {
            return Ok(());
        }
        let current = self.state.read().active.clone();
        if !current.is_some_and(|a| Arc::ptr_eq(&a, synced)) {
            return Ok(());
        }
        let from = segment::new_log_path(&self.dir);
        let to = segment::log_path(&self.dir, FIRST_SEQ);
        if s.deferred.naming && !s.deferred.parent {
            // The log may hold acknowledged records, and a power cut may lose both names of a
            // rename here.
            segment::name_new_log_durably(&self.dir)?;
        } else {
            fs::rename(&from, &to).map_err(|e| Error::io("renaming", &from, e))?;
            s.dir_created += 1;
        }
        s.new_log = false;
        Ok(())
    }

    fn mark_synced(&self, upto: (u64, u64)) {
        let mut s = self.sync.lock();
        s.synced = s.synced.max(upto);
    }

    /// Clears the dirty flag if nothing was written after `covered` (best effort, never blocks).
    fn writer_clean_if(&self, covered: (u64, u64)) {
        if let Some(mut w) = self.writer.try_lock() {
            if self.committed() == covered {
                w.dirty = false;
            }
        }
    }

    /// Deletes the sealed segments that start at or before `upto` (the oldest ones), for
    /// retention. Never the active segment. Readers holding a segment keep reading it: files are
    /// only unlinked, and a mapping outlives its file's name. Returns the first sequence numbers
    /// of the removed segments.
    pub(crate) fn remove_sealed_upto(&self, upto: u64) -> Result<Vec<u64>> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned { project: self.id });
        }
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let mut w = self.writer.lock();
        // The writer's copy of the state is out of date from here.
        w.snap = None;
        let removed: Vec<u64> = {
            let mut state = self.state.write();
            let keep_from = state.sealed.partition_point(|&first| first <= upto);
            let removed = state.sealed[..keep_from].to_vec();
            state.sealed = Arc::new(state.sealed[keep_from..].to_vec());
            removed
        };
        // Oldest first, each removal durable before the next starts: a power cut may keep any
        // of the removals since the directory's last sync and lose the others, and the segments
        // left must follow each other (a gap would read as records missing from the end of the
        // segment before it).
        // A failure stops the removals; the segments not removed go back to the state (a
        // segment counts as removed once its log is), so that a later removal does not skip
        // them and leave a gap on disk.
        for (k, &first) in removed.iter().enumerate() {
            let result = segment::remove_if_present(&segment::log_path(&self.dir, first))
                .map_err(|e| (k, e))
                .and_then(|()| {
                    segment::remove_if_present(&segment::index_path(&self.dir, first))
                        .and_then(|()| segment::sync_dir(&self.dir))
                        .map_err(|e| (k + 1, e))
                });
            if let Err((kept_from, e)) = result {
                let mut state = self.state.write();
                let mut sealed = removed[kept_from..].to_vec();
                sealed.extend_from_slice(&state.sealed);
                state.sealed = Arc::new(sealed);
                return Err(e);
            }
        }
        Ok(removed)
    }

    /// Flushes the index and, if anything was written since the last sync, syncs the log.
    /// Called when the project is evicted from the open set or the store closes.
    pub(crate) fn close(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        {
            let mut w = self.writer.lock();
            if let Some((active, committed)) = self.cut_room(&mut w)? {
                // The log ends with its last record again, durably: a clean close leaves no
                // room for the next open to read and cut.
                fsio::sync_data(&active.file).map_err(|e| {
                    self.poisoned.store(true, Ordering::Release);
                    Error::io("syncing", &active.path, e)
                })?;
                self.sync_dirs(Some(&active), true)?;
                self.mark_synced((active.header.first_seq, committed));
                w.dirty = false;
            }
        }
        // A new project's first log is synced and named even with nothing written since the
        // last sync (its header alone, if the append that made it failed).
        let new_log = self.sync.lock().new_log;
        if (self.writer.lock().dirty || new_log) && !self.poisoned.load(Ordering::Acquire) {
            self.sync()?;
        }
        if !self.poisoned.load(Ordering::Acquire) {
            self.sync_dirs(None, true)?;
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned { project: self.id });
        }
        let mut w = self.writer.lock();
        if let Some(active) = self.snapshot().active {
            self.flush_index(&mut w, &active);
            // A cleanly closed store's index counts as synced when it is next opened. One
            // that cannot be synced goes, as at a roll: the close goes on (the log is synced),
            // and the project is not refused writes for a cache. Should the removal not last,
            // recovery checks whatever index it finds against the log. One that can be
            // neither synced nor removed fails the close.
            if let (true, false, Some(idx)) = (w.idx_unsynced, w.idx_broken, &w.idx_file) {
                w.idx_broken = !self.sync_index(idx, &active)?;
                w.idx_unsynced = false;
            }
        }
        Ok(())
    }
}

/// The stamp of the newest record of the sealed segment of `dir` starting at `first`, if it
/// reads (not otherwise: the caller keeps an upper bound).
fn newest_sealed_stamp(dir: &Path, first: u64) -> Option<u64> {
    let seg = Sealed::open(dir, first, false).ok()?;
    let newest = seg.count().checked_sub(1)?;
    seg.record(newest).ok().map(|record| record.stamp)
}

/// What [`recover_active`] returns: the segment, its committed length, its newest stamp and
/// (when writable, unless it could not be brought up to date) the index file opened for
/// appending, with whether recovery rewrote it.
type Recovered = (Active, u64, u64, Option<(File, bool)>);

/// Removes a first log's old name, [`segment::new_log_path`], from the directory `dir` of a
/// project that has a named log ([`segment::Logs::second_name`]): a power cut can leave it
/// after the log was linked under its name ([`segment::name_new_log_durably`]), a second name
/// of the same file (or a copy of it) that would keep the file's blocks after retention removed
/// the log. It is never the only name of anything: a new log is made only while the project
/// has no other.
fn remove_second_name(dir: &Path, before_write: &dyn Fn() -> Result<()>) -> Result<()> {
    let path = segment::new_log_path(dir);
    log::info!(
        "removing {}, a second name of the project's first log",
        path.display()
    );
    before_write()?;
    segment::remove_if_present(&path)?;
    segment::sync_dir(dir)
}

/// Opens the newest segment of a project as the active one: checks its index against the log,
/// rescans the log from the last trusted entry, and — when `writable` — cuts a torn tail or an
/// unfinished batch and brings the index file up to date.
///
/// Returns the segment, its committed length, its newest stamp and (when writable, unless it
/// could not be brought up to date) the index file opened for appending, with whether it was
/// rewritten.
///
/// `new_log`: the segment is a new project's first log, never synced
/// ([`segment::new_log_path`]). If its header does not read and its index vouches for no
/// record ([`segment::index_vouches`]), it never reached the disk (a power cut before the
/// project's first sync): it holds nothing acknowledged as durable, and the project is empty
/// (`None`; a writable open removes the log). A header that does not read under an index that
/// vouches for records is damage, reported like any log's. Otherwise it is recovered like
/// any active log, and — when `writable` — synced and named.
fn recover_active(
    dir: &Path,
    first_seq: u64,
    new_log: bool,
    writable: bool,
    crashed: bool,
    before_write: &dyn Fn() -> Result<()>,
) -> Result<Option<Recovered>> {
    let path = if new_log {
        segment::new_log_path(dir)
    } else {
        segment::log_path(dir, first_seq)
    };
    let file = Active::open_file(&path, writable)?;
    let header = match segment::read_header(&file, &path) {
        Ok(header) => header,
        Err(Error::Corrupt { reason, .. })
            if new_log && !segment::index_vouches(&segment::index_path(dir, first_seq))? =>
        {
            if writable {
                log::warn!(
                    "{} was never synced and its header did not reach the disk ({reason}): \
                     removing it; the project's messages in it had not been synced",
                    path.display()
                );
                before_write()?;
                drop(file);
                segment::remove_if_present(&path)?;
                segment::remove_if_present(&segment::index_path(dir, first_seq))?;
            } else {
                log::debug!(
                    "ignoring {}: never synced, and its header does not read ({reason})",
                    path.display()
                );
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if header.first_seq != first_seq {
        return Err(Error::corrupt(
            &path,
            16,
            format!("the header says the segment starts at {}", header.first_seq),
        ));
    }
    // The index before the log's length: a read-only open beside a writer must not find
    // entries for records the writer wrote, synced and indexed after the length was measured
    // (the length would end inside them, and they would read as damage the index vouches for).
    // Entries are written only once their records are synced, so every entry read here points
    // at bytes the length measured next takes in whole.
    let idx_path = segment::index_path(dir, first_seq);
    let idx_image = match fsio::read_at_most(&idx_path, index::MAX_INDEX_FILE_BYTES) {
        // Larger than any index: not read further, and rebuilt like any inconsistent index.
        Ok(bytes) if bytes.len() as u64 > index::MAX_INDEX_FILE_BYTES => Some(Vec::new()),
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("reading", &idx_path, e)),
    };
    let log_len = file
        .metadata()
        .map_err(|e| Error::io("reading metadata of", &path, e))?
        .len();
    #[cfg(test)]
    tests::hook(tests::Point::Measured, &path);
    if log_len > u64::from(u32::MAX) {
        return Err(Error::corrupt(
            &path,
            u64::from(u32::MAX),
            "the log is larger than 4 GiB",
        ));
    }
    let idx_header_ok = idx_image
        .as_deref()
        .is_some_and(|b| index::entries_of(b).is_ok());
    // The entries as the file holds them (whole entries only); checked and compared in place,
    // so that opening a big segment costs one pass over its index, not several.
    let on_disk: &[u8] = idx_image
        .as_deref()
        .and_then(|b| index::entries_of(b).ok())
        .map_or(&[], |e| &e[..e.len() - e.len() % ENTRY_BYTES]);
    let mut disk_entries = index::decode_entries(on_disk);
    // Entries past the log's end (the index reached disk, the log did not) are dropped first.
    index::drop_past_end(&mut disk_entries, log_len);
    let index_ok = idx_header_ok && index::check_offsets(&disk_entries, log_len).is_ok();
    let mut trusted = {
        if index_ok {
            disk_entries.len().saturating_sub(1)
        } else {
            if idx_image.is_some() {
                log::warn!(
                    "the index of {} is inconsistent; rebuilding it from the log",
                    path.display()
                );
            }
            0
        }
    };
    // Up to the end of the file as it was measured. A read-only open beside a writer may find
    // less: the writer cut the room ahead of its log's end meanwhile (zeros, never a committed
    // byte), so the bytes read end where the file now does.
    let read_from = |start: u64| -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let len = log_len - start;
        let mut buf = Vec::with_capacity(len as usize);
        let mut f = &file;
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.take(len).read_to_end(&mut buf))
            .and_then(|got| {
                if writable && (got as u64) < len {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                } else {
                    Ok(())
                }
            })
            .map_err(|e| Error::io("reading", &path, e))?;
        Ok(buf)
    };
    let mut start = if trusted == 0 {
        LOG_HEADER_BYTES as u64
    } else {
        u64::from(disk_entries[trusted])
    };
    let mut image = read_from(start)?;
    let mut s = scan(&image, start, trusted as u32);
    // A batch left unfinished by a crash must go whole; when it is open from the first scanned
    // record, it may have begun before the scan did, so only a scan from the start finds it.
    let open_from_start = matches!(s.open_batch, Some((0, _)));
    if trusted > 0 && (s.entries.first() != Some(&(start as u32)) || open_from_start) {
        if !open_from_start {
            log::warn!(
                "the index of {} does not match the log; rebuilding it from the log",
                path.display()
            );
        }
        trusted = 0;
        start = LOG_HEADER_BYTES as u64;
        image = read_from(start)?;
        s = scan(&image, start, 0);
    }
    if !writable && !s.damaged.is_empty() {
        (image, s) = settle(&path, start, trusted as u32, (image, s), || {
            wait_for_writer(SETTLE_DELAY);
            #[cfg(test)]
            tests::hook(tests::Point::Settling, &path);
            read_from(start)
        })?;
    }
    for range in &s.damaged {
        log::error!(
            "{} is damaged at bytes {}..{}; the records on both sides stay readable",
            path.display(),
            range.start,
            range.end
        );
    }
    // Records the index vouches for that do not decode are damage, not a torn tail: they stay,
    // lost, with their sequence numbers (the index file keeps their entries).
    let vouched = if index_ok {
        scan::vouched_past(&disk_entries[trusted..], &s.entries, s.good_end)
    } else {
        0
    };
    if vouched > 0 {
        log::error!(
            "{} is damaged at bytes {}..{log_len}: {vouched} records its index vouches for \
             (synced) do not read; reads report them",
            path.display(),
            s.good_end,
        );
    }
    // The records the index vouches for, when it agrees with the log: an unfinished batch
    // after them is cut, never they.
    let floor = if index_ok && scan::agrees(&disk_entries[trusted..], &s.entries) {
        disk_entries.len()
    } else {
        0
    };
    let mut entries = disk_entries;
    entries.truncate(trusted);
    let scanned_from = entries.len();
    entries.extend_from_slice(&s.entries);
    let mut committed = s.good_end;
    if vouched > 0 {
        entries.resize(entries.len() + vouched, index::LOST);
        committed = log_len;
    } else if let Some((j, batch_at)) = s.open_batch.filter(|&(j, _)| scanned_from + j >= floor) {
        entries.truncate(scanned_from + j);
        committed = scan::cut_unfinished(&mut entries, scanned_from.max(floor), batch_at, |at| {
            let mut head = [0u8; FRAME_HEADER_BYTES];
            file.read_exact_at(&mut head, u64::from(at))
                .map(|()| head)
                .map_err(|e| Error::io("reading", &path, e))
        })?;
    }
    if committed < log_len {
        // Zeros only: room the writer made ahead, and perhaps records whose bytes never reached
        // the disk (never acknowledged as synced); not worth a warning.
        let zeros = committed
            .checked_sub(start)
            .and_then(|from| image.get(from as usize..))
            .is_some_and(scan::is_zero);
        if writable {
            let (level, what) = if zeros {
                (log::Level::Debug, "zeros")
            } else {
                (log::Level::Warn, "a torn tail")
            };
            log::log!(
                level,
                "cut {what} of {} bytes from {} at byte {committed}",
                log_len - committed,
                path.display()
            );
            before_write()?;
            fsio::set_len(&file, committed)
                .and_then(|()| fsio::sync_data(&file))
                .map_err(|e| Error::io("truncating", &path, e))?;
        } else {
            log::debug!(
                "ignoring {} unfinished bytes at the end of {}",
                log_len - committed,
                path.display()
            );
        }
    } else if writable && crashed {
        // After a kill the log's tail may sit in the page cache only. It is synced now, before
        // the index points at it and before the log counts as synced up to its end.
        before_write()?;
        fsio::sync_data(&file).map_err(|e| Error::io("syncing", &path, e))?;
    }
    let path = if writable && new_log {
        // Recovered, it is synced (unless just done) and given its name, as the project's
        // first sync would have done.
        before_write()?;
        if !crashed && committed == log_len {
            fsio::sync_data(&file).map_err(|e| Error::io("syncing", &path, e))?;
        }
        // It may hold acknowledged records (a project from a synced spare names its log
        // after acknowledging them): named so that no power cut loses both names.
        segment::name_new_log_durably(dir)?
    } else {
        path
    };
    if writable && (crashed || new_log) {
        // So may the names of its files: the killed writer may have made a segment and synced
        // neither it nor the directory. (The store syncs the directory of projects once, when
        // it opens after a crash.)
        segment::sync_dir(dir)?;
    }
    // The newest record that is not lost: once an unfinished batch is dropped, records lost to
    // damage just before it may end the list.
    let (last_stamp, tail) = match entries.iter().rposition(|&e| e != index::LOST) {
        None => (header.base_stamp, Tail::default()),
        Some(i) => {
            // The writer reads the newest records that fit the tail copy (the newest messages,
            // what readers ask for most, then cost a copy, not a system call and a checksum);
            // once checked, they become its tail copy.
            let floor = committed.saturating_sub(segment::TAIL_BYTES as u64);
            let keep = writable && i + 1 == entries.len() && u64::from(entries[i]) >= floor;
            let mut from = i;
            while keep
                && from > 0
                && entries[from - 1] != index::LOST
                && u64::from(entries[from - 1]) >= floor
            {
                from -= 1;
            }
            let start = u64::from(entries[from]);
            let mut buf = vec![0u8; (committed - start) as usize];
            file.read_exact_at(&mut buf, start)
                .map_err(|e| Error::io("reading", &path, e))?;
            let offset = u64::from(entries[i]);
            let stamp = decode_at(&buf, start, offset, &header, i as u64, &path)?.stamp;
            let tail = keep
                .then(|| Tail::checked(buf, start, &entries[from..], from as u64, &header, &path))
                .flatten();
            (stamp, tail.unwrap_or_default())
        }
    };
    let idx = if writable {
        // The index file keeps its entries for records lost at the end (the index vouches for
        // them): the next open finds them vouched for again, where an index ending in a lost
        // entry would be rebuilt from the log.
        let lost_at_end = entries
            .iter()
            .rev()
            .take_while(|&&e| e == index::LOST)
            .count();
        let in_file: std::borrow::Cow<[u32]> = if lost_at_end == 0 {
            std::borrow::Cow::Borrowed(&entries)
        } else {
            let mut kept = entries.clone();
            let n = kept.len();
            for (i, e) in kept.iter_mut().enumerate().skip(n - lost_at_end) {
                if i < on_disk.len() / ENTRY_BYTES {
                    *e = index::entry(on_disk, i);
                }
            }
            std::borrow::Cow::Owned(kept)
        };
        // Best effort: the index is a cache. Where it cannot be brought up to date (a full
        // disk, say), the project opens without one: its writer writes no entries until the
        // next segment, and the next open scans the log from the last entry that reads.
        match rewrite_index(
            &idx_path,
            idx_header_ok,
            on_disk,
            trusted,
            &in_file,
            before_write,
        ) {
            Ok(idx) => Some(idx),
            Err(e) => {
                log::warn!("{e}; the project's index is left as it is until its next segment");
                None
            }
        }
    } else {
        None
    };
    let active = Active {
        path,
        header,
        file,
        entries: RwLock::new(entries),
        tail: RwLock::new(tail),
        scan_map: Mutex::new(None),
    };
    Ok(Some((active, committed, last_stamp, idx)))
}

/// How long a read-only open waits before it reads again a log that looks damaged.
const SETTLE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// How many times a read-only open reads a log again while what looks damaged keeps changing.
const SETTLE_LOOKS: usize = 8;

/// Gives a writer in another process `delay` to finish what it was writing, before a read-only
/// open or `verify` reads a file again; at once under the fuzzer, beside which no writer runs
/// ([`LOOK_AGAIN_AT_ONCE`](crate::fuzzing::LOOK_AGAIN_AT_ONCE)).
pub(crate) fn wait_for_writer(delay: std::time::Duration) {
    if !crate::fuzzing::LOOK_AGAIN_AT_ONCE.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(delay);
    }
}

/// What a read-only open takes for an active log whose scan (`s`, of `image`) found damage.
/// Beside a live writer in another process, that may be a batch being copied into the writer's
/// room: a copy may store a batch's end before its start, so that a reader sees a broken frame
/// with valid ones after it. Only bytes the writer has not published can be in flight, and it
/// publishes a batch as soon as its copy is done: the log is read again (`read_again`, which
/// waits first) until the damage reads the same twice — then it is damage, reported as on any
/// open — or is gone. Damage that keeps changing is a writer at work: after [`SETTLE_LOOKS`]
/// reads the log is taken to end where the damage starts, as if it were a torn tail.
fn settle(
    path: &Path,
    start: u64,
    first_delta: u32,
    (mut image, mut s): (Vec<u8>, scan::Scan),
    mut read_again: impl FnMut() -> Result<Vec<u8>>,
) -> Result<(Vec<u8>, scan::Scan)> {
    for _ in 0..SETTLE_LOOKS {
        let again = read_again()?;
        let s2 = scan(&again, start, first_delta);
        // The same damage, over the same bytes (and those before it).
        let unchanged = s2.damaged == s.damaged
            && s.damaged.last().is_some_and(|r| {
                let end = (r.end - start) as usize;
                image.get(..end) == again.get(..end)
            });
        (image, s) = (again, s2);
        if unchanged || s.damaged.is_empty() {
            return Ok((image, s));
        }
    }
    let end = (s.damaged[0].start - start) as usize;
    log::debug!(
        "what looks damaged in {} keeps changing (a writer is appending): reading it up to byte {}",
        path.display(),
        s.damaged[0].start
    );
    let s = scan(&image[..end], start, first_delta);
    Ok((image, s))
}

/// Brings an active segment's index file in line with `entries`, writing only what differs.
fn rewrite_index(
    path: &Path,
    header_ok: bool,
    on_disk: &[u8],
    known_same: usize,
    entries: &[u32],
    before_write: &dyn Fn() -> Result<()>,
) -> Result<(File, bool)> {
    let mut rewritten = false;
    if !header_ok {
        before_write()?;
        rewritten = true;
        let mut bytes = index::encode_header().to_vec();
        index::encode_entries(&mut bytes, entries);
        segment::write_atomically(path, &bytes)?;
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    if header_ok {
        // The first `known_same` entries were taken from the file as they are.
        let disk_n = on_disk.len() / ENTRY_BYTES;
        let start = known_same.min(disk_n).min(entries.len());
        let same = start
            + (start..disk_n.min(entries.len()))
                .take_while(|&i| index::entry(on_disk, i) == entries[i])
                .count();
        if same != disk_n || same != entries.len() {
            before_write()?;
            rewritten = true;
            let at = (INDEX_HEADER_BYTES + same * ENTRY_BYTES) as u64;
            let mut bytes = Vec::new();
            index::encode_entries(&mut bytes, &entries[same..]);
            fsio::set_len(&file, at)
                .and_then(|()| fsio::write_at(&file, &bytes, at))
                .map_err(|e| Error::io("rewriting", path, e))?;
        }
    }
    Ok((file, rewritten))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::{encode_frame, Frame};
    use std::cell::RefCell;

    /// Where a project's open (or `verify`) calls the test hook ([`hook`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Point {
        /// [`Project::open`] (or `verify`) listed the project's logs (the path is its
        /// directory).
        Listed,
        /// [`recover_active`] measured the log's length (the path is the log's).
        Measured,
        /// A read-only [`recover_active`] is about to read again a log that looked damaged
        /// (the path is the log's).
        Settling,
        /// The store mapped a sealed segment that its map cache did not hold, and has not
        /// cached it yet (`Inner::sealed`; the path is the log's).
        SealedMapped,
        /// An eviction is about to close a project it took out of the store's map
        /// (`Inner::close_evicted`; the path is the project's directory).
        Closing,
        /// An append raised its project's newest stamp in the store's map and has not
        /// published its batch yet (`Store::append_prepared`; the path is the project's
        /// directory).
        Publishing,
    }

    /// A test's hook into this thread's project opens, called at each [`Point`] with its path:
    /// it may act as a writer in another process could at that moment.
    pub(crate) type HookFn = Box<dyn FnMut(Point, &Path)>;

    /// This thread's hook, if one is set.
    type Hook = RefCell<Option<HookFn>>;

    thread_local! {
        /// The hook, if one is set.
        static HOOK: Hook = const { RefCell::new(None) };
    }

    /// Calls this thread's hook, if one is set (not again from inside it: opens it makes, as a
    /// writer's, do not call it).
    pub(crate) fn hook(point: Point, path: &Path) {
        if let Some(mut f) = HOOK.with(|h| h.borrow_mut().take()) {
            f(point, path);
            HOOK.with(|h| {
                h.borrow_mut().get_or_insert(f);
            });
        }
    }

    /// Sets this thread's hook (`None`: none).
    pub(crate) fn set_hook(f: Option<HookFn>) {
        HOOK.with(|h| *h.borrow_mut() = f);
    }

    /// A read-only open beside a writer may measure the active log while a batch is being
    /// written, the writer then finishing, syncing and indexing it before the open reads the
    /// index. The open sees none of that batch: not part of it, and not its records as damage
    /// that the index vouches for (the index is read before the log is measured). A refresh
    /// then sees the whole batch.
    #[test]
    fn a_read_only_open_ignores_a_batch_indexed_after_it_measured_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let writer = crate::Options::new()
            .spare_projects(0)
            .open(tmp.path())
            .unwrap();
        let batch = |tag: &str| -> Vec<String> {
            let pad = "x".repeat(100);
            (0..3)
                .map(|k| format!(r#"{{"{tag}":{k},"pad":"{pad}"}}"#))
                .collect()
        };
        let read = |store: &crate::Store| -> Vec<String> {
            store
                .newest_first(1)
                .unwrap()
                .map(|m| match m {
                    Ok(m) => m.into_json()[..8].to_string(),
                    Err(e) => format!("error: {e}"),
                })
                .collect()
        };
        // Each sync cuts the log back to its last record and writes the index entries.
        writer.append(1, batch("a")).unwrap();
        writer.sync().unwrap();
        let dir = tmp.path().join("projects/1");
        let (log, idx) = (segment::log_path(&dir, 1), segment::index_path(&dir, 1));
        let (log_a, idx_a) = (fs::read(&log).unwrap(), fs::read(&idx).unwrap());
        writer.append(1, batch("b")).unwrap();
        writer.sync().unwrap();
        let (log_b, idx_b) = (fs::read(&log).unwrap(), fs::read(&idx).unwrap());
        assert!(idx_b.len() > idx_a.len());
        // Batch b half written, not yet indexed: what the writer leaves while it writes.
        let half = log_a.len() + (log_b.len() - log_a.len()) / 2;
        fs::write(&log, &log_b[..half]).unwrap();
        fs::write(&idx, &idx_a).unwrap();
        // The writer finishes once the open has measured the log.
        let (log2, idx2) = (log.clone(), idx.clone());
        set_hook(Some(Box::new(move |point, path: &Path| {
            if point == Point::Measured && path == log2 {
                fs::write(&log2, &log_b).unwrap();
                fs::write(&idx2, &idx_b).unwrap();
            }
        })));
        let reader = crate::Options::new()
            .read_only(true)
            .open(tmp.path())
            .unwrap();
        let first = read(&reader);
        set_hook(None);
        assert_eq!(first, [r#"{"a":2,""#, r#"{"a":1,""#, r#"{"a":0,""#]);
        reader.refresh();
        assert_eq!(read(&reader), read(&writer));
        assert_eq!(read(&reader).len(), 6);
    }

    /// A store with two synced batches of three records in project 1 (`a` then `b`), and its
    /// log's path and bytes, and the offset of batch `b`. The index is left vouching for batch
    /// `a` only, as while `b` was being written.
    pub(crate) fn two_batches(dir: &Path) -> (crate::Store, PathBuf, Vec<u8>, usize) {
        let writer = crate::Options::new().spare_projects(0).open(dir).unwrap();
        let batch = |tag: &str| -> Vec<String> {
            (0..3)
                .map(|k| format!(r#"{{"{tag}":{k},"pad":"{}"}}"#, "x".repeat(100)))
                .collect()
        };
        writer.append(1, batch("a")).unwrap();
        writer.sync().unwrap();
        let pdir = dir.join("projects/1");
        let (log, idx) = (segment::log_path(&pdir, 1), segment::index_path(&pdir, 1));
        let (b_at, idx_a) = (
            fs::metadata(&log).unwrap().len() as usize,
            fs::read(&idx).unwrap(),
        );
        writer.append(1, batch("b")).unwrap();
        writer.sync().unwrap();
        fs::write(&idx, idx_a).unwrap();
        let bytes = fs::read(&log).unwrap();
        (writer, log, bytes, b_at)
    }

    /// What a read-only open of `dir` reads of project 1, newest first (the first 8 bytes of
    /// each message, or the error), and how often it read its log again.
    fn read_only_read(
        dir: &Path,
        mut settling: impl FnMut(&Path) + 'static,
    ) -> (Vec<String>, usize) {
        let looks = std::rc::Rc::new(std::cell::Cell::new(0));
        let counted = looks.clone();
        set_hook(Some(Box::new(move |point, path: &Path| {
            if point == Point::Settling {
                counted.set(counted.get() + 1);
                settling(path);
            }
        })));
        let reader = crate::Options::new().read_only(true).open(dir).unwrap();
        let read = reader
            .newest_first(1)
            .unwrap()
            .map(|m| match m {
                Ok(m) => m.into_json()[..8].to_string(),
                Err(e) => format!("error: {e}"),
            })
            .collect();
        set_hook(None);
        (read, looks.get())
    }

    /// A read-only open beside a writer in another process may read a batch while the writer
    /// copies it into its room, the copy having stored the batch's end but not yet its start:
    /// the first frame is broken, the later ones valid. The open reads the log again, finds the
    /// batch whole, and reads it, with no damage.
    #[test]
    fn a_read_only_open_reads_again_a_batch_being_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let (_writer, log, whole, b_at) = two_batches(tmp.path());
        let mut copying = whole.clone();
        copying[b_at..b_at + FRAME_HEADER_BYTES].fill(0);
        fs::write(&log, &copying).unwrap();
        let (read, looks) =
            read_only_read(tmp.path(), move |path| fs::write(path, &whole).unwrap());
        assert_eq!(looks, 1);
        assert_eq!(
            read,
            [
                r#"{"b":2,""#,
                r#"{"b":1,""#,
                r#"{"b":0,""#,
                r#"{"a":2,""#,
                r#"{"a":1,""#,
                r#"{"a":0,""#
            ]
        );
    }

    /// Damage that reads the same a second time is damage: a read-only open reports it as any
    /// open does, after one look again.
    #[test]
    fn a_read_only_open_reports_damage_that_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let (_writer, log, mut bytes, b_at) = two_batches(tmp.path());
        bytes[b_at..b_at + FRAME_HEADER_BYTES].fill(0);
        fs::write(&log, &bytes).unwrap();
        let (read, looks) = read_only_read(tmp.path(), |_| {});
        assert_eq!(looks, 1);
        assert_eq!(read.len(), 6, "{read:?}");
        assert_eq!(read[..2], [r#"{"b":2,""#, r#"{"b":1,""#]);
        assert!(
            read[2].starts_with("error: ") && read[2].contains(&format!("{b_at}")),
            "{read:?}"
        );
        assert_eq!(read[3..], [r#"{"a":2,""#, r#"{"a":1,""#, r#"{"a":0,""#]);
    }

    /// Damage that changes every time it is read is a writer at work: after a few looks, a
    /// read-only open takes the log to end where the damage starts, reporting nothing.
    #[test]
    fn a_read_only_open_reads_up_to_damage_that_keeps_changing() {
        let tmp = tempfile::tempdir().unwrap();
        let (_writer, log, mut bytes, b_at) = two_batches(tmp.path());
        bytes[b_at..b_at + FRAME_HEADER_BYTES].fill(0);
        fs::write(&log, &bytes).unwrap();
        let (read, looks) = read_only_read(tmp.path(), move |path| {
            // Still no frame there, but other bytes.
            bytes[b_at] = bytes[b_at].wrapping_add(1);
            fs::write(path, &bytes).unwrap();
        });
        assert_eq!(looks, SETTLE_LOOKS);
        assert_eq!(read, [r#"{"a":2,""#, r#"{"a":1,""#, r#"{"a":0,""#]);
    }

    /// A writer of 4 KiB segments (no spares) into `dir`, and an appender of 1.5 KB messages
    /// to project 1, numbered from 1: about two to a segment, so that a few appends roll.
    pub(crate) fn small_segment_writer(dir: &Path) -> (crate::Store, impl FnMut(&crate::Store)) {
        let writer = crate::Options::new()
            .segment_bytes(4096)
            .spare_projects(0)
            .open(dir)
            .unwrap();
        let pad = "x".repeat(1500);
        let mut n = 0;
        let append = move |writer: &crate::Store| {
            n += 1;
            writer
                .append(1, [format!(r#"{{"n":{n},"pad":"{pad}"}}"#)])
                .unwrap();
        };
        (writer, append)
    }

    /// Sets this thread's hook to act as `writer` at the first listing of a project's logs:
    /// it appends (with `append`) until the writer has rolled past the newest of `listed`, the
    /// logs listed in `dir`, then applies retention, which removes every one of them.
    pub(crate) fn retain_all_listed_at_first_listing(
        writer: crate::Store,
        mut append: impl FnMut(&crate::Store) + 'static,
        dir: PathBuf,
        listed: Vec<u64>,
    ) {
        let mut done = false;
        set_hook(Some(Box::new(move |point, _: &Path| {
            if point != Point::Listed || std::mem::replace(&mut done, true) {
                return;
            }
            while segment::list(&dir).unwrap().last() == listed.last() {
                append(&writer);
            }
            writer
                .apply_retention(&crate::Retention::new().max_messages(1))
                .unwrap();
            for first in &listed {
                assert!(!segment::log_path(&dir, *first).exists());
            }
        })));
    }

    /// A read-only open beside a writer may list a project's logs, the writer then rolling
    /// past the newest and retention removing it before the open opens it: the open lists
    /// again and reads the project as it is then, not an error for a file it could not find.
    #[test]
    fn a_read_only_open_lists_again_when_retention_removed_the_log_it_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let (writer, mut append) = small_segment_writer(tmp.path());
        for _ in 0..5 {
            append(&writer);
        }
        let dir = tmp.path().join("projects/1");
        let listed = segment::list(&dir).unwrap();
        assert!(listed.len() > 1, "{listed:?}");
        retain_all_listed_at_first_listing(writer.clone(), append, dir, listed);
        let reader = crate::Options::new()
            .read_only(true)
            .open(tmp.path())
            .unwrap();
        let read = |store: &crate::Store| -> Vec<String> {
            store
                .newest_first(1)
                .map(|it| {
                    // `{"n":7` of each message, without its padding.
                    it.map(|m| {
                        m.map_or_else(
                            |e| format!("error: {e}"),
                            |m| m.json().split(',').next().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
                })
                .unwrap_or_else(|e| vec![format!("error opening: {e}")])
        };
        let got = read(&reader);
        set_hook(None);
        assert_eq!(got, read(&writer));
        assert!(!got.is_empty());
    }

    /// Opens project 1 at `dir` (1 MiB segments), as after a crash when `crashed`.
    fn open_project(dir: &Path, writable: bool, crashed: bool) -> Project {
        Project::open(1, dir.to_path_buf(), writable, 1 << 20, crashed, &|| Ok(())).unwrap()
    }

    /// A log header for a segment starting at 1, stamps from 1,000 µs.
    fn new_log() -> Vec<u8> {
        let header = SegmentHeader {
            first_seq: 1,
            base_stamp: 1_000,
            project: 7,
        };
        header.encode().to_vec()
    }

    /// Appends a frame of `{}` at stamp 1,007.
    fn frame(log: &mut Vec<u8>, seq_delta: u32, continues: bool) {
        encode_frame(
            log,
            &Frame {
                seq_delta,
                stamp_delta: 7,
                continues,
                payload: b"{}",
            },
        )
    }

    /// Found by fuzzing (`open_and_recover`): damage, then a batch that never finished. Dropping
    /// the batch left the records lost to the damage at the end of the list, and the newest
    /// stamp was read at the "lost" marker's offset: an overflow.
    #[test]
    fn lost_records_before_an_unfinished_batch_open() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = new_log();
        frame(&mut log, 0, false);
        log.extend_from_slice(&[0xaa; 30]); // record 1, damaged
        frame(&mut log, 2, true); // the first record of a batch that never finished
        fs::write(segment::log_path(tmp.path(), 1), &log).unwrap();
        // Record 2 goes with its unfinished batch; the damage before it is then a torn tail
        // too. Read-only, writable, and writable again: the same answer every time.
        for writable in [false, true, true] {
            let p = open_project(tmp.path(), writable, true);
            let snap = p.snapshot();
            assert_eq!(snap.last_stamp, 1_007);
            assert_eq!(snap.next_seq, 2, "writable {writable}");
            assert_eq!(
                *snap.active.unwrap().entries.read(),
                [LOG_HEADER_BYTES as u32]
            );
        }
        let len = fs::metadata(segment::log_path(tmp.path(), 1))
            .unwrap()
            .len();
        assert_eq!(
            len,
            LOG_HEADER_BYTES as u64 + frame_len(2) as u64,
            "cut after record 0"
        );
    }

    /// A log whose checksums hold but whose newest record is stamped past the last stamp a
    /// segment can start at: an append after it would start a segment whose header does not
    /// open again (an audit: acknowledged, then lost). A writable open refuses the project,
    /// naming the record; a read-only one reads it.
    #[test]
    fn a_log_stamped_past_the_last_stamp_is_refused_for_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let header = SegmentHeader {
            first_seq: 1,
            base_stamp: MAX_BASE_STAMP,
            project: 1,
        };
        let mut log = header.encode().to_vec();
        frame(&mut log, 0, false);
        fs::write(segment::log_path(tmp.path(), 1), &log).unwrap();
        let p = open_project(tmp.path(), false, true);
        assert_eq!(p.snapshot().last_stamp, MAX_BASE_STAMP + 7);
        let refused = Project::open(1, tmp.path().to_path_buf(), true, 1 << 20, true, &|| Ok(()));
        let Err(Error::Corrupt { path, offset, .. }) = refused else {
            panic!("a writable open takes a log stamped past the last stamp");
        };
        assert_eq!(path, segment::log_path(tmp.path(), 1));
        assert_eq!(offset, LOG_HEADER_BYTES as u64);
        // One stamp less is the last that opens for writing.
        let mut log = SegmentHeader {
            base_stamp: MAX_BASE_STAMP - 7,
            ..header
        }
        .encode()
        .to_vec();
        frame(&mut log, 0, false);
        fs::write(segment::log_path(tmp.path(), 1), &log).unwrap();
        assert_eq!(
            open_project(tmp.path(), true, true).snapshot().last_stamp,
            MAX_BASE_STAMP
        );
    }

    #[test]
    fn the_writer_keeps_its_newest_records_as_the_tail_copy_once_they_check_out() {
        // 3,000 records of 22 bytes: those in the last 16 KiB become the tail copy.
        let tmp = tempfile::tempdir().unwrap();
        let mut log = new_log();
        for i in 0..3000 {
            frame(&mut log, i, false);
        }
        let path = segment::log_path(tmp.path(), 1);
        fs::write(&path, &log).unwrap();
        let len = log.len() as u64;
        let floor = len - segment::TAIL_BYTES as u64;
        let tail_start = |p: &Project| p.snapshot().active.unwrap().tail_start();
        let p = open_project(tmp.path(), true, false);
        let start = tail_start(&p);
        assert!((floor..floor + 22).contains(&start), "{start}");
        p.close().unwrap();
        drop(p);
        assert_eq!(
            tail_start(&open_project(tmp.path(), false, false)),
            u64::MAX,
            "a read-only open reads the disk"
        );
        // Damage in a record that a clean open's recovery does not read (it trusts the index
        // and reads the last record only): no tail copy, so readers check, and report it
        // (`tests/every_bit.rs`).
        log[(len - 1000) as usize] ^= 0x40;
        fs::write(&path, &log).unwrap();
        let p = open_project(tmp.path(), true, false);
        assert_eq!(tail_start(&p), u64::MAX);
        assert_eq!(p.snapshot().next_seq, 3001, "recovery did not see it");
    }

    /// Recovery brings a lagging index of the active segment up to date; when that write
    /// fails (a full disk, say), the project still opens and reads: the index is a cache, and
    /// recovery has its entries at hand.
    #[test]
    fn a_project_opens_when_its_recovered_index_cannot_be_written() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let tmp = tempfile::tempdir().unwrap();
        let open = || {
            crate::Options::new()
                .spare_projects(0)
                .open(tmp.path())
                .unwrap()
        };
        let store = open();
        for i in 0..10 {
            store.append(1, [format!(r#"{{"i":{i}}}"#)]).unwrap();
        }
        drop(store);
        // As a crash leaves it: no clean marker, the index behind the log.
        fs::remove_file(tmp.path().join("CLEAN")).unwrap();
        let idx = segment::index_path(&tmp.path().join("projects/1"), FIRST_SEQ);
        let f = OpenOptions::new().write(true).open(&idx).unwrap();
        f.set_len((INDEX_HEADER_BYTES + 2 * ENTRY_BYTES) as u64)
            .unwrap();
        drop(f);
        let store = open();
        let rec = Recorder::register(tmp.path(), false);
        rec.fail(FaultKind::Write, 1);
        let read: Result<Vec<u64>> = store
            .oldest_first(1)
            .and_then(|it| it.map(|m| m.map(|m| m.seq())).collect());
        rec.unregister();
        let (path, _, _) = rec.faulted().expect("the index was rewritten");
        assert!(path.ends_with("00000000000000000001.idx"), "{path:?}");
        assert_eq!(read.unwrap(), (1..=10).collect::<Vec<u64>>());
        // The writer goes on without it, and the next open reads everything.
        store.append(1, [r#"{"i":10}"#]).unwrap();
        drop(store);
        let read: Result<Vec<u64>> = open()
            .oldest_first(1)
            .and_then(|it| it.map(|m| m.map(|m| m.seq())).collect());
        assert_eq!(read.unwrap(), (1..=11).collect::<Vec<u64>>());
    }

    #[test]
    fn recovery_after_a_crash_syncs_the_project_directory() {
        // The last writer may have been killed just after making the project's segment: the
        // names of its files are not known to be durable, and nothing on disk says so.
        use crate::fsio::sim::Recorder;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("1");
        fs::create_dir(&dir).unwrap();
        let mut log = new_log();
        frame(&mut log, 0, false);
        fs::write(segment::log_path(&dir, 1), &log).unwrap();
        // The first open writes the index.
        open_project(&dir, true, false).close().unwrap();
        for crashed in [false, true] {
            let rec = Recorder::register(tmp.path(), true);
            let p = open_project(&dir, true, crashed);
            rec.unregister();
            let dir_synced = rec
                .take_points()
                .iter()
                .any(|point| point.before == "sync of directory 1");
            assert_eq!(dir_synced, crashed, "crashed {crashed}");
            p.close().unwrap();
        }
    }

    #[test]
    fn an_unfinished_batch_torn_by_damage_goes_whole() {
        // A power cut kept the first and third writes of a batch but not the second, and never
        // wrote its last: record 0 is a whole batch, records 1..=3 an unfinished one.
        let tmp = tempfile::tempdir().unwrap();
        let mut log = new_log();
        frame(&mut log, 0, false);
        frame(&mut log, 1, true);
        log.extend_from_slice(&[0xaa; 22]); // record 2, lost
        frame(&mut log, 3, true);
        fs::write(segment::log_path(tmp.path(), 1), &log).unwrap();
        for writable in [false, true, true] {
            let p = open_project(tmp.path(), writable, true);
            assert_eq!(p.snapshot().next_seq, 2, "writable {writable}");
        }
        let len = fs::metadata(segment::log_path(tmp.path(), 1))
            .unwrap()
            .len();
        assert_eq!(len, LOG_HEADER_BYTES as u64 + frame_len(2) as u64);
    }

    #[test]
    fn damage_without_lost_records_before_an_unfinished_batch_goes_too() {
        // From the index_loader corpus: record 0 says its batch continues, garbage follows
        // (no sequence number lost in it), then record 1 starts a batch that never finished.
        let tmp = tempfile::tempdir().unwrap();
        let mut log = new_log();
        frame(&mut log, 0, true);
        log.extend_from_slice(&[0xaa; 30]);
        frame(&mut log, 1, true);
        fs::write(segment::log_path(tmp.path(), 1), &log).unwrap();
        for _ in 0..3 {
            let p = open_project(tmp.path(), true, false);
            assert_eq!(p.snapshot().next_seq, 1);
            assert_eq!(p.snapshot().active_len, LOG_HEADER_BYTES as u64);
        }
    }

    /// A hot `Written` project is synced in the background at most once per 4 MiB appended.
    /// (Every append made between a hand-off to the syncer and the syncer's start used to hand
    /// off one more sync, and the syncer ran them all: fsyncs of a few KiB each.)
    #[test]
    fn a_hot_written_project_is_synced_once_per_4_mib() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let message = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200));
        store.append(1, [message.as_str()]).unwrap();
        let p = store.inner().project(1, false).unwrap().unwrap();
        // 13 MiB appended: at most three background syncs.
        let appends = (13 << 20) / (message.len() + 20);
        for _ in 0..appends {
            store.append(1, [message.as_str()]).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let s = p.sync.lock();
            if !s.running && !s.ahead_asked {
                break;
            }
            drop(s);
            assert!(
                std::time::Instant::now() < deadline,
                "the syncer never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let syncs = p.log_syncs.load(Ordering::Relaxed);
        assert!((1..=3).contains(&syncs), "{syncs} syncs for 13 MiB");
        // A hand-off lost (a syncer thread that panicked drops its queue) is forgotten by the
        // next sync that finishes: the project may ask again.
        p.sync.lock().ahead_asked = true;
        store.append(1, [message.as_str()]).unwrap();
        store.sync().unwrap();
        assert!(!p.sync.lock().ahead_asked);
    }

    /// A `Written` append looks at the sync state (under its lock, which a sync holds across a
    /// rename) only once 4 MiB were appended since it last looked: not on every append.
    #[test]
    fn a_written_append_takes_no_sync_lock_before_4_mib() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        store.append(1, [r#"{"a":0}"#]).unwrap();
        let p = store.inner().project(1, false).unwrap().unwrap();
        let held = p.sync.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Fewer than `INDEX_FLUSH_ENTRIES` (8 in tests): an index write looks at the
                // sync state too.
                for i in 1..6 {
                    store.append(1, [format!(r#"{{"a":{i}}}"#)]).unwrap();
                }
                tx.send(()).unwrap();
            });
            let done = rx.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
            assert!(done.is_ok(), "the appends waited for the sync lock");
        });
    }
}

/// Appends inside `without_blocking` once their batch is stored: nothing after that may wait.
#[cfg(test)]
mod kept_to_memory_tests {
    use std::time::{Duration, Instant};

    /// An append kept to memory that is due to write index entries, or to look at its unsynced
    /// bytes, does not wait for the project's sync lock, which a sync may hold across a rename
    /// or a directory's fsync (when it names a new project's first log): here another thread
    /// holds it for 300 ms. (Found by review: each waited the whole time, on an async worker.)
    #[test]
    fn an_append_kept_to_memory_does_not_wait_for_the_sync_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::Options::new()
            .spare_projects(0)
            .open(tmp.path())
            .unwrap();
        let msg = |i: u64| format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(100));
        store.append(1, [msg(0)]).unwrap();
        crate::without_blocking(|| store.append(1, [msg(1)]))
            .unwrap()
            .unwrap();
        let p = store.inner().project(1, false).unwrap().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let holder = {
            let p = p.clone();
            std::thread::spawn(move || {
                let _s = p.sync.lock();
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
            })
        };
        rx.recv().unwrap();
        let n = 2 + 2 * super::INDEX_FLUSH_ENTRIES as u64;
        let mut slowest = Duration::ZERO;
        for i in 2..n {
            let t = Instant::now();
            crate::without_blocking(|| store.append(1, [msg(i)]))
                .unwrap()
                .unwrap();
            slowest = slowest.max(t.elapsed());
        }
        holder.join().unwrap();
        assert!(
            slowest < Duration::from_millis(100),
            "an append inside without_blocking waited {slowest:?} for the sync lock"
        );
        // The index entries left behind are written by a later append.
        for i in n..n + 2 * super::INDEX_FLUSH_ENTRIES as u64 {
            store.append(1, [msg(i)]).unwrap();
        }
        drop(store);
        let store = crate::Store::open(tmp.path()).unwrap();
        assert_eq!(store.newest_first(1).unwrap().count() as u64, n + 16);
    }

    /// An append kept to memory that would wait for another appender of its project (which
    /// may be syncing under the writer's lock) is refused at once, having stored nothing.
    #[test]
    fn an_append_waiting_for_another_appender_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::Store::open(tmp.path()).unwrap();
        store.append(1, [r#"{"i":0}"#]).unwrap();
        let p = store.inner().project(1, false).unwrap().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let _w = p.writer.lock();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        rx.recv().unwrap();
        let t = Instant::now();
        let out = crate::without_blocking(|| store.append(1, [r#"{"i":1}"#]));
        let took = t.elapsed();
        holder.join().unwrap();
        assert!(matches!(out, Err(crate::Error::WouldBlock)), "{out:?}");
        assert!(took < Duration::from_millis(100), "waited {took:?}");
        assert_eq!(store.newest_first(1).unwrap().count(), 1);
    }
}
