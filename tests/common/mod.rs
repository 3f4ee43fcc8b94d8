//! Helpers shared by the engine's integration tests: scratch directories, the store's layout on
//! disk, a small independent parser of log files, reading whole projects back, and the
//! process's limit of file handles.
//!
//! The parser here is written from `docs/format.md`, not borrowed from the crate, so the tests
//! check the format as documented.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the helpers"
)]

use std::fs;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use activitylog::{Message, Options, Store};

/// Size of a log file's header.
pub const LOG_HEADER_BYTES: usize = 48;
/// Size of a frame's header (CRC, length and flags, seq and stamp).
pub const FRAME_HEADER_BYTES: usize = 16;
/// Size of a frame's trailer (the length and flags again).
pub const FRAME_TRAILER_BYTES: usize = 4;
/// Size of an index file's header.
pub const INDEX_HEADER_BYTES: usize = 16;
/// The smallest segment size the store allows: used to get many segments cheaply.
pub const SMALL_SEGMENT_BYTES: u64 = 4096;

const FLAG_CONTINUES: u32 = 1 << 24;
const LEN_MASK: u32 = (1 << 24) - 1;

/// A scratch directory, on tmpfs when the machine has one.
///
/// The corruption tests reopen copies of a store hundreds of times and every open, roll and
/// close fsyncs; on tmpfs that costs nothing, so the loops stay fast.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("activitylog-test-")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::Builder::new()
        .prefix("activitylog-test-")
        .tempdir()
        .expect("a temporary directory")
}

/// Copies the directory tree `from` into `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Opens (creating if needed) a writable store with the smallest segments.
pub fn open_small(dir: &Path) -> Store {
    Options::new()
        .segment_bytes(SMALL_SEGMENT_BYTES)
        .open(dir)
        .expect("the store opens")
}

/// Opens a store read-only.
pub fn open_read_only(dir: &Path) -> Store {
    Options::new()
        .read_only(true)
        .open(dir)
        .expect("the store opens read-only")
}

/// The directory of project `p`.
pub fn project_dir(store: &Path, p: u64) -> PathBuf {
    store.join("projects").join(p.to_string())
}

/// The first sequence numbers of project `p`'s segments, oldest first (from the file names; a
/// new project's first log, not yet synced, is named `….log.new`).
pub fn segments(store: &Path, p: u64) -> Vec<u64> {
    let dir = project_dir(store, p);
    let mut out: Vec<u64> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| {
                let stem = name
                    .strip_suffix(".log")
                    .or(name.strip_suffix(".log.new"))?;
                stem.parse().ok()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// The log file of project `p`'s segment starting at `first_seq`: for a new project's first
/// segment, until its first sync, the file under its temporary name (`….log.new`).
pub fn log_path(store: &Path, p: u64, first_seq: u64) -> PathBuf {
    let named = project_dir(store, p).join(format!("{first_seq:020}.log"));
    let new = project_dir(store, p).join(format!("{first_seq:020}.log.new"));
    if !named.exists() && new.exists() {
        new
    } else {
        named
    }
}

/// The index file of project `p`'s segment starting at `first_seq`.
pub fn idx_path(store: &Path, p: u64, first_seq: u64) -> PathBuf {
    project_dir(store, p).join(format!("{first_seq:020}.idx"))
}

/// One frame of a log file, as laid out on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// File offset of the frame's first byte.
    pub start: usize,
    /// File offset just past the frame's trailer.
    pub end: usize,
    /// The payload's byte range within the file.
    pub payload: Range<usize>,
    /// More records of the same batch follow.
    pub continues: bool,
    /// `seq − first_seq`.
    pub seq_delta: u64,
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().unwrap())
}

/// The `first_seq` a log file's header records.
pub fn log_first_seq(log: &[u8]) -> u64 {
    u64_at(log, 16)
}

/// Parses every frame of an undamaged log file, checking each one's CRC and trailer.
///
/// Panics on anything malformed: it is for reading fixtures, before they are damaged. Zeros
/// after the last frame (the room an open store's writer makes ahead of its active log) end it.
pub fn frames(log: &[u8]) -> Vec<Frame> {
    assert_eq!(&log[..8], b"ALOGSEG\n", "log magic");
    let mut out = Vec::new();
    let mut at = LOG_HEADER_BYTES;
    while at < log.len() && log[at..].iter().any(|&b| b != 0) {
        let len_flags = u32_at(log, at + 4);
        let len = (len_flags & LEN_MASK) as usize;
        let body_end = at + FRAME_HEADER_BYTES + len;
        let end = body_end + FRAME_TRAILER_BYTES;
        assert!(end <= log.len(), "frame at {at} runs past the end");
        assert_eq!(
            u32_at(log, body_end),
            len_flags,
            "trailer of the frame at {at}"
        );
        assert_eq!(
            u32_at(log, at),
            crc32fast::hash(&log[at + 4..body_end]),
            "CRC of the frame at {at}"
        );
        out.push(Frame {
            start: at,
            end,
            payload: at + FRAME_HEADER_BYTES..body_end,
            continues: len_flags & FLAG_CONTINUES != 0,
            seq_delta: u64_at(log, at + 8) & ((1 << 24) - 1),
        });
        at = end;
    }
    out
}

/// Reads and parses the log of project `p`'s segment starting at `first_seq`.
pub fn frames_of(store: &Path, p: u64, first_seq: u64) -> Vec<Frame> {
    frames(&fs::read(log_path(store, p, first_seq)).unwrap())
}

/// Groups frames into batches: the index ranges of the frames of each batch, in order.
pub fn batches(frames: &[Frame]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, f) in frames.iter().enumerate() {
        if !f.continues {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    assert_eq!(start, frames.len(), "the log ends inside a batch");
    out
}

/// The exact index file the store should hold for a log with these frames.
pub fn expected_index(frames: &[Frame]) -> Vec<u8> {
    let mut out = b"ALOGIDX\n".to_vec();
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for f in frames {
        out.extend_from_slice(&(f.start as u32).to_le_bytes());
    }
    out
}

/// Every message of project `p`, newest first; panics on any error.
pub fn read_all(store: &Store, p: u64) -> Vec<Message> {
    store
        .newest_first(p)
        .expect("the project opens")
        .map(|m| m.expect("every message reads"))
        .collect()
}

/// Every item of project `p`'s newest-first iteration, errors included.
pub fn read_items(store: &Store, p: u64) -> Vec<activitylog::Result<Message>> {
    store.newest_first(p).expect("the project opens").collect()
}

/// A message `{"seq_hint":N,...}` padded with `pad` bytes of filler, compact as stored.
pub fn hinted(seq_hint: u64, pad: usize) -> String {
    format!(r#"{{"seq_hint":{seq_hint},"pad":"{}"}}"#, "x".repeat(pad))
}

/// A small deterministic pseudo-random generator (xorshift64*), for garbage bytes and sizes.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; zero is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// The spare directories in the store at `dir`, with their inode numbers.
pub fn spares(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = fs::read_dir(dir.join("projects"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            // One the spare thread renamed since the listing has no metadata: not listed.
            let ino = e.metadata().ok()?.ino();
            name.starts_with(".spare-").then_some((name, ino))
        })
        .collect();
    out.sort();
    out
}

/// Waits (up to ten seconds) until the store at `dir` holds `n` spare directories.
pub fn await_spares(dir: &Path, n: usize) -> Vec<(String, u64)> {
    let start = Instant::now();
    loop {
        let found = spares(dir);
        // A spare is listed once its directory exists, before it is complete: wait for the
        // one after it, or give the last a moment.
        if found.len() >= n {
            std::thread::sleep(Duration::from_millis(50));
            return spares(dir);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "only {} spares after 10 s",
            found.len()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The handle number the next open would get: a limit of it lets no open through.
pub fn next_handle() -> u64 {
    use std::os::fd::AsRawFd;
    std::fs::File::open("/dev/null").unwrap().as_raw_fd() as u64
}

/// Sets this process's limit of file handles, returning the one it replaces.
pub fn set_handle_limit(soft: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let old = getrlimit(Resource::Nofile);
    let new = Rlimit {
        current: Some(soft),
        maximum: old.maximum,
    };
    setrlimit(Resource::Nofile, new).expect("setting the limit of file handles");
    old.current.unwrap_or(u64::MAX)
}
