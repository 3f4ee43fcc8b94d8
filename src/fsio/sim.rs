//! Test builds only: a recorder of the writes and syncs made under one directory, which builds
//! the disk images a power cut could leave, and injects I/O faults.
//!
//! The model is the one SQLite's crash tests and redb's crash backend use. A write reaches the
//! disk only when its file is synced; until then, a power cut may keep it, drop it, tear it (keep
//! a sector-aligned prefix) or leave garbage over the bytes it wrote. A write never damages bytes
//! outside its own range ("powersafe overwrite", SQLite's default assumption, true of the sector
//! atomicity of today's drives). Creations, renames and removals reach the disk only when their
//! directory is synced; until then each may or may not have happened — a rename within a
//! directory as a whole: the entry is under its old name or its new one, never both or neither
//! (what journaling file systems make of a rename) — unless the recorder models a file system
//! without a journal ([`Recorder::without_atomic_renames`]), where the old name's removal and
//! the new name's creation are decided apart, like any two changes. A directory is known by
//! its identity, not its path: renaming one (a spare project directory becoming a project's)
//! keeps the entries its last sync made durable.
//!
//! A [`CrashPoint`] is captured before every write, truncation and sync: what was durable, what
//! was pending, and what the directories held. [`CrashPoint::image`] turns one into a directory
//! under a [`Policy`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// Sector size used for torn writes.
const SECTOR: u64 = 512;

static RECORDERS: Mutex<Vec<Arc<Recorder>>> = Mutex::new(Vec::new());

/// The recorder whose directory holds `file`, if any.
pub(crate) fn recorder_for_file(file: &File) -> Option<Arc<Recorder>> {
    if RECORDERS.lock().is_empty() {
        return None;
    }
    let path = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    recorder_for_path(&path)
}

/// The recorder whose directory holds `path`, if any.
pub(crate) fn recorder_for_path(path: &Path) -> Option<Arc<Recorder>> {
    let recorders = RECORDERS.lock();
    if recorders.is_empty() {
        return None;
    }
    // A file whose name was removed (the old name of a linked file) is still under its
    // directory: `/proc/self/fd` shows its last path followed by " (deleted)".
    let path = path.canonicalize().ok().or_else(|| {
        let text = path.to_str()?.strip_suffix(" (deleted)")?;
        let path = Path::new(text);
        Some(path.parent()?.canonicalize().ok()?.join(path.file_name()?))
    })?;
    recorders
        .iter()
        .find(|r| path.starts_with(&r.root))
        .cloned()
}

/// Which kind of operation a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// `write_at` (the first half of the bytes is written, then the call fails).
    Write,
    /// `sync_data` of a file or `sync_dir`.
    Sync,
    /// The opening of a directory to sync it (`sync_dir`), failing as when out of file
    /// handles: the sync never starts. Counted apart from syncs.
    OpenDir,
}

/// What happens to one pending operation in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Drop,
    Garbage,
    Torn,
}

/// How an image treats what was not durable.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Policy {
    /// Everything reached the disk (what a kill leaves).
    KeepAll,
    /// Nothing unsynced reached the disk.
    DropAll,
    /// Every unsynced write left garbage; namespace changes happened.
    GarbageAll,
    /// Each unsynced write and namespace change decided by a seeded generator.
    Random(u64),
}

#[derive(Clone)]
enum Pending {
    Write { offset: u64, data: Arc<[u8]> },
    SetLen(u64),
}

#[derive(Clone, Default)]
struct FileModel {
    durable: Arc<Vec<u8>>,
    pending: Vec<Pending>,
}

impl FileModel {
    fn current(&self) -> Vec<u8> {
        let mut bytes = self.durable.to_vec();
        for p in &self.pending {
            apply(&mut bytes, p, Fate::Keep, &mut Rng(0));
        }
        bytes
    }
}

/// A file's identity: inode number and birth time (inode numbers are reused).
type Key = (u64, u128);

fn key(meta: &fs::Metadata) -> Key {
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (meta.ino(), born)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    Dir(Key),
    File(Key),
}

type Listing = BTreeMap<OsString, Entry>;

/// What the disk may hold if the power is cut at one moment.
pub(crate) struct CrashPoint {
    /// The test's acknowledgement counter when the point was taken.
    pub(crate) acked: usize,
    /// The operation about to run, for failure messages.
    pub(crate) before: String,
    files: HashMap<Key, FileModel>,
    /// Each directory's entries as of its last sync, by the directory's identity.
    durable: HashMap<Key, Listing>,
    /// Each directory's entries now, by identity, with its path now.
    current: HashMap<Key, (PathBuf, Listing)>,
    root: Key,
    /// Whether renames were atomic (see [`Recorder::without_atomic_renames`]).
    atomic_renames: bool,
}

struct Inner {
    files: HashMap<Key, FileModel>,
    durable: HashMap<Key, Listing>,
    capture: bool,
    points: Vec<CrashPoint>,
    acked: usize,
    fault: Option<(FaultKind, u64)>,
    writes: u64,
    syncs: u64,
    open_dirs: u64,
    /// The file of the injected fault, the acknowledgements before it, and whether it was a
    /// write of zeros only (room ahead of a log's end, which appends can do without).
    faulted: Option<(PathBuf, usize, bool)>,
}

/// Records writes and syncs under `root` while registered.
pub(crate) struct Recorder {
    root: PathBuf,
    /// Whether a rename is atomic across a power cut (see the module's doc).
    atomic_renames: std::sync::atomic::AtomicBool,
    inner: Mutex<Inner>,
}

impl Recorder {
    /// Starts recording under `root` (which must exist); what is there now counts as durable.
    /// `capture` keeps a crash point before every operation.
    pub(crate) fn register(root: &Path, capture: bool) -> Arc<Recorder> {
        let root = root.canonicalize().expect("the recorded directory exists");
        let mut files = HashMap::new();
        let durable = listings(&root, &root, Some(&mut files))
            .into_iter()
            .map(|(k, (_, listing))| (k, listing))
            .collect();
        let recorder = Arc::new(Recorder {
            root,
            atomic_renames: std::sync::atomic::AtomicBool::new(true),
            inner: Mutex::new(Inner {
                files,
                durable,
                capture,
                points: Vec::new(),
                acked: 0,
                fault: None,
                writes: 0,
                syncs: 0,
                open_dirs: 0,
                faulted: None,
            }),
        });
        RECORDERS.lock().push(recorder.clone());
        recorder
    }

    /// Models a file system without a journal from now on: a rename may leave its entry under
    /// both names or neither after a power cut, and [`super::renames_are_atomic`] says no (by
    /// default it says yes, as renames are modelled atomic, whatever file system the recorded
    /// directory is on).
    pub(crate) fn without_atomic_renames(&self) {
        self.atomic_renames
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether renames are atomic across a power cut, as modelled.
    pub(crate) fn atomic_renames(&self) -> bool {
        self.atomic_renames
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops recording.
    pub(crate) fn unregister(self: &Arc<Self>) {
        RECORDERS.lock().retain(|r| !Arc::ptr_eq(r, self));
    }

    /// Sets the acknowledgement counter stored in later crash points.
    pub(crate) fn set_acked(&self, acked: usize) {
        self.inner.lock().acked = acked;
    }

    /// Makes the `nth` (1-based) operation of `kind` from now fail, once.
    pub(crate) fn fail(&self, kind: FaultKind, nth: u64) {
        let mut inner = self.inner.lock();
        inner.fault = Some((kind, nth));
        inner.writes = 0;
        inner.syncs = 0;
        inner.open_dirs = 0;
    }

    /// The file the injected fault hit, once it has, and the acknowledgement counter then.
    pub(crate) fn faulted(&self) -> Option<(PathBuf, usize, bool)> {
        self.inner.lock().faulted.clone()
    }

    /// Takes the crash points captured so far.
    pub(crate) fn take_points(&self) -> Vec<CrashPoint> {
        std::mem::take(&mut self.inner.lock().points)
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_path_buf()
    }

    fn point(&self, inner: &mut Inner, before: String) {
        if inner.capture {
            let current = listings(&self.root, &self.root, None);
            inner.points.push(CrashPoint {
                acked: inner.acked,
                before,
                files: inner.files.clone(),
                durable: inner.durable.clone(),
                current,
                root: key(&fs::metadata(&self.root).expect("the recorded directory exists")),
                atomic_renames: self.atomic_renames(),
            });
        }
    }

    /// Counts an operation of `kind`; true if it is the one to fail. Operations on spare
    /// project directories, and the spare thread's (its sync of the directory of projects),
    /// are not counted: that thread makes spares whenever it gets to it, and the N-th
    /// operation must be the same one in every run.
    fn hit(inner: &mut Inner, kind: FaultKind, path: &Path, zeros: bool) -> bool {
        if path.to_string_lossy().contains("/.spare-")
            || std::thread::current().name() == Some(crate::spares::THREAD_NAME)
        {
            return false;
        }
        let n = match kind {
            FaultKind::Write => &mut inner.writes,
            FaultKind::Sync => &mut inner.syncs,
            FaultKind::OpenDir => &mut inner.open_dirs,
        };
        *n += 1;
        if inner.fault == Some((kind, *n)) {
            inner.fault = None;
            inner.faulted = Some((path.to_path_buf(), inner.acked, zeros));
            return true;
        }
        false
    }

    pub(crate) fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        let ino = key(&file.metadata()?);
        let path = file_path(file);
        let mut inner = self.inner.lock();
        self.point(
            &mut inner,
            format!(
                "write of {} bytes at {offset} in {}",
                buf.len(),
                self.relative(&path).display()
            ),
        );
        let zeros = crate::scan::is_zero(buf);
        let fail = Self::hit(&mut inner, FaultKind::Write, &path, zeros);
        let buf = if fail { &buf[..buf.len() / 2] } else { buf };
        let result = file.write_all_at(buf, offset);
        if result.is_ok() {
            inner
                .files
                .entry(ino)
                .or_default()
                .pending
                .push(Pending::Write {
                    offset,
                    data: buf.into(),
                });
        }
        if fail {
            return Err(io::Error::other("injected write fault"));
        }
        result
    }

    pub(crate) fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        let ino = key(&file.metadata()?);
        let path = file_path(file);
        let mut inner = self.inner.lock();
        self.point(
            &mut inner,
            format!("truncation to {len} of {}", self.relative(&path).display()),
        );
        file.set_len(len)?;
        inner
            .files
            .entry(ino)
            .or_default()
            .pending
            .push(Pending::SetLen(len));
        Ok(())
    }

    pub(crate) fn sync_file(&self, file: &File) -> io::Result<()> {
        let ino = key(&file.metadata()?);
        let path = file_path(file);
        let mut inner = self.inner.lock();
        self.point(
            &mut inner,
            format!("sync of {}", self.relative(&path).display()),
        );
        if Self::hit(&mut inner, FaultKind::Sync, &path, false) {
            return Err(io::Error::other("injected sync fault"));
        }
        file.sync_data()?;
        let model = inner.files.entry(ino).or_default();
        let current = model.current();
        // Read through a new descriptor: the file may be open for writing only.
        let real = fs::read(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        assert!(
            real == current,
            "{} holds bytes that did not go through fsio ({} bytes, {} through fsio, first \
             difference at {:?})",
            path.display(),
            real.len(),
            current.len(),
            real.iter().zip(&current).position(|(a, b)| a != b)
        );
        model.durable = Arc::new(current);
        model.pending.clear();
        Ok(())
    }

    pub(crate) fn sync_dir(&self, dir: &Path) -> Result<(), super::DirSyncError> {
        use super::DirSyncError::{Open, Sync};
        let dir = dir.canonicalize().map_err(Open)?;
        let mut inner = self.inner.lock();
        self.point(
            &mut inner,
            format!("sync of directory {}", self.relative(&dir).display()),
        );
        if Self::hit(&mut inner, FaultKind::OpenDir, &dir, false) {
            return Err(Open(io::Error::other("injected fault opening a directory")));
        }
        if Self::hit(&mut inner, FaultKind::Sync, &dir, false) {
            return Err(Sync(io::Error::other("injected sync fault")));
        }
        let handle = File::open(&dir).map_err(Open)?;
        // Listed before the sync: an entry another thread makes meanwhile is not covered.
        let listing = list(&dir);
        handle.sync_all().map_err(Sync)?;
        let handle_meta = handle.metadata().map_err(Sync)?;
        inner.durable.insert(key(&handle_meta), listing);
        Ok(())
    }
}

impl CrashPoint {
    /// What the directories held and what of it was durable, for failure messages.
    pub(crate) fn describe(&self) -> String {
        let names = |l: Option<&Listing>| {
            l.map(|l| {
                l.keys()
                    .map(|k| k.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
        };
        let mut dirs: Vec<(String, String, String)> = self
            .current
            .iter()
            .map(|(k, (path, now))| {
                (
                    path.display().to_string(),
                    names(Some(now)),
                    names(self.durable.get(k)),
                )
            })
            .collect();
        dirs.extend(
            self.durable
                .iter()
                .filter(|(k, _)| !self.current.contains_key(k))
                .map(|(_, l)| ("(gone)".to_string(), String::new(), names(Some(l)))),
        );
        dirs.sort();
        let mut out = String::new();
        for (path, now, durable) in dirs {
            out.push_str(&format!("{path}: now [{now}] durable [{durable}]\n"));
        }
        out
    }

    /// Writes the image `policy` makes of this point into `out` (an empty directory).
    pub(crate) fn image(&self, policy: Policy, out: &Path) -> io::Result<()> {
        let mut rng = Rng(match policy {
            Policy::Random(seed) => seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            _ => 0x2545_F491_4F6C_DD1D,
        });
        self.image_dir(self.root, policy, &mut rng, out)
    }

    fn image_dir(&self, dir: Key, policy: Policy, rng: &mut Rng, out: &Path) -> io::Result<()> {
        let empty = Listing::new();
        let mut durable = self.durable.get(&dir).unwrap_or(&empty).clone();
        let mut current = self.current.get(&dir).map_or(&empty, |(_, l)| l).clone();
        // A rename is atomic: the entry is under its old name or its new one, never both or
        // neither. Each rename is decided first, and both names then agree on it. Without
        // atomic renames, a file's two names are decided alone, below (under both names, it
        // is a file with two links); a directory may also be under neither name, but not both
        // (a directory has one parent: the file system's check keeps one of its names).
        for (from, to, entry) in renames(&durable, &current) {
            if !self.atomic_renames && matches!(entry, Entry::File(_)) {
                continue;
            }
            let fate = match policy {
                Policy::DropAll => 0,
                Policy::KeepAll | Policy::GarbageAll => 1,
                Policy::Random(_) => rng.below(if self.atomic_renames { 2 } else { 3 }),
            };
            if fate == 2 {
                durable.remove(&from);
                current.remove(&to);
            } else if fate == 1 {
                set(&mut durable, &from, current.get(&from).copied());
                durable.insert(to, entry);
            } else {
                set(&mut current, &to, durable.get(&to).copied());
                current.insert(from, entry);
            }
        }
        let (durable, current) = (&durable, &current);
        let names: BTreeSet<&OsString> = durable.keys().chain(current.keys()).collect();
        for name in names {
            let old = durable.get(name).copied();
            let new = current.get(name).copied();
            let entry = if old == new {
                old
            } else {
                match policy {
                    Policy::DropAll => old,
                    Policy::KeepAll | Policy::GarbageAll => new,
                    Policy::Random(_) => {
                        if rng.below(2) == 0 {
                            old
                        } else {
                            new
                        }
                    }
                }
            };
            let target = out.join(name);
            match entry {
                None => {}
                Some(Entry::Dir(k)) => {
                    fs::create_dir(&target)?;
                    self.image_dir(k, policy, rng, &target)?;
                }
                Some(Entry::File(ino)) => {
                    let bytes = self.files.get(&ino).map_or_else(Vec::new, |model| {
                        let mut bytes = model.durable.to_vec();
                        for p in &model.pending {
                            let fate = match policy {
                                Policy::KeepAll => Fate::Keep,
                                Policy::DropAll => Fate::Drop,
                                Policy::GarbageAll => Fate::Garbage,
                                Policy::Random(_) => {
                                    [Fate::Keep, Fate::Drop, Fate::Garbage, Fate::Torn]
                                        [rng.below(4) as usize]
                                }
                            };
                            apply(&mut bytes, p, fate, rng);
                        }
                        bytes
                    });
                    fs::write(&target, bytes)?;
                }
            }
        }
        Ok(())
    }
}

/// The renames within one directory between its `durable` and `current` listings: entries
/// found under one name in the first and under another in the second (and no longer under
/// the first), as (old name, new name, entry).
fn renames(durable: &Listing, current: &Listing) -> Vec<(OsString, OsString, Entry)> {
    durable
        .iter()
        .filter(|(name, entry)| current.get(*name) != Some(*entry))
        .filter_map(|(from, entry)| {
            let to = current
                .iter()
                .find(|(name, e)| *e == entry && durable.get(*name) != Some(entry))?
                .0;
            Some((from.clone(), to.clone(), *entry))
        })
        .collect()
}

/// Sets or removes `name` in `listing`.
fn set(listing: &mut Listing, name: &OsString, entry: Option<Entry>) {
    match entry {
        Some(e) => {
            listing.insert(name.clone(), e);
        }
        None => {
            listing.remove(name);
        }
    }
}

/// Applies one pending operation to `bytes` with the given fate.
fn apply(bytes: &mut Vec<u8>, op: &Pending, fate: Fate, rng: &mut Rng) {
    match (op, fate) {
        (_, Fate::Drop) => {}
        (Pending::SetLen(len), _) => bytes.resize(*len as usize, 0),
        (Pending::Write { offset, data }, fate) => {
            let start = *offset as usize;
            let len = match fate {
                Fate::Torn => {
                    // Keep whole sectors up to a random boundary inside the write.
                    let first_boundary = (*offset / SECTOR + 1) * SECTOR;
                    let end = *offset + data.len() as u64;
                    let sectors = end.saturating_sub(first_boundary) / SECTOR;
                    let cut = first_boundary + rng.below(sectors + 1) * SECTOR;
                    (cut.min(end) - *offset) as usize
                }
                _ => data.len(),
            };
            if bytes.len() < start + len {
                bytes.resize(start + len, 0);
            }
            if fate == Fate::Garbage {
                for b in &mut bytes[start..start + len] {
                    *b = rng.next() as u8;
                }
            } else {
                bytes[start..start + len].copy_from_slice(&data[..len]);
            }
        }
    }
}

fn file_path(file: &File) -> PathBuf {
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default()
}

/// One directory's entries (names to inode numbers; subdirectories marked).
fn list(dir: &Path) -> Listing {
    let mut out = Listing::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let e = if meta.is_dir() {
            Entry::Dir(key(&meta))
        } else {
            Entry::File(key(&meta))
        };
        out.insert(entry.file_name(), e);
    }
    out
}

/// The listings of `dir` and every directory below it, by the directories' identities, with
/// their paths relative to `root`; with `files`, also records every file's content as durable.
fn listings(
    root: &Path,
    dir: &Path,
    mut files: Option<&mut HashMap<Key, FileModel>>,
) -> HashMap<Key, (PathBuf, Listing)> {
    let mut out = HashMap::new();
    let Ok(meta) = fs::metadata(dir) else {
        return out;
    };
    let listing = list(dir);
    for (name, entry) in &listing {
        match entry {
            Entry::Dir(_) => out.extend(listings(root, &dir.join(name), files.as_deref_mut())),
            Entry::File(ino) => {
                if let Some(files) = files.as_deref_mut() {
                    let bytes = fs::read(dir.join(name)).unwrap_or_default();
                    files.insert(
                        *ino,
                        FileModel {
                            durable: Arc::new(bytes),
                            pending: Vec::new(),
                        },
                    );
                }
            }
        }
    }
    let rel = dir.strip_prefix(root).unwrap_or(dir).to_path_buf();
    out.insert(key(&meta), (rel, listing));
    out
}

/// xorshift64*: deterministic choices for images.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}
