//! One segment: a log file plus its index file. Creation, naming, the sealed (memory-mapped)
//! read path, the active (positional-read, or mapped for long scans) read path, and the room
//! the writer copies appends into.
//!
//! This is the only module with `unsafe` (with its child `crc`): mapping sealed segments, and
//! the committed bytes of an active segment for a scan; copying appends into the writer's
//! [`Room`]; taking a message that is all ASCII as text without a second look
//! ([`message_text`], [`RawRecord::text`]); a prefetch hint ([`prefetch`]); and a record's
//! checksum computed with carry-less multiplication, which checks whether its message is ASCII
//! in the same pass (`crc`).
//!
//! The mapping contract: a segment is *sealed* once a later segment exists in its project.
//! The store never writes, truncates or rewrites a sealed log file, and never shrinks any file
//! that may be mapped below what is mapped; retention removes sealed segments only by unlinking,
//! which leaves existing mappings intact. An active log is only appended to while the store is
//! open, and shrunk only back to its committed length (when an append fails, and to drop the
//! room when the segment is sealed or the project closed), so its committed bytes — all a
//! reader maps — never change. The writer's room (bytes past the committed end, mapped
//! writable) is dropped before the log is cut back. A project whose active segment a snapshot
//! holds is not evicted (its reopen would recover, and recovery cuts committed bytes that read
//! back damaged). As with sealed segments, a process's maps are exposed to what other processes
//! do to the files: a writer process's recovery that cuts damaged committed bytes, or a disk
//! read error, is a `SIGBUS` in a read-only process rather than an error; and a file system that
//! refuses a page of the room (one gone read-only after an error) is a `SIGBUS` in the writer.
//! Index files are replaced by rename, never rewritten in place. Other programs must not modify
//! a store's files while it is open (the same contract as every embedded database);
//! `activitylog verify` reads them without mapping.

use std::fs::{self, File, OpenOptions};
use std::ops::Deref;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::fsio;
use crate::index::{self, LOST};
use crate::record::{
    decode_frame_ending_at, decode_frame_with, frame_len, frame_len_by_header, DecodeError, Frame,
    SegmentHeader, FRAME_HEADER_BYTES, LOG_HEADER_BYTES, MAX_BASE_STAMP, MAX_RECORDS_PER_SEGMENT,
};
use crate::scan::scan;

mod crc;

/// File name extension of log files.
pub(crate) const LOG_EXT: &str = "log";
/// File name extension of index files.
pub(crate) const INDEX_EXT: &str = "idx";

/// The log file of the segment starting at `first_seq`: 20 zero-padded digits, so that a plain
/// directory listing sorts segments in order.
pub(crate) fn log_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{LOG_EXT}"))
}

/// The index file of the segment starting at `first_seq`.
pub(crate) fn index_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{INDEX_EXT}"))
}

/// The log of a project's first segment while it was never synced: created without an fsync,
/// it is named this until the project's first sync gives it its name ([`log_path`]). So after
/// a power cut, a log under this name whose header does not read is one that never reached the
/// disk, not a damaged one: it holds nothing acknowledged as durable. A first segment only
/// (`first_seq` 1), and only while the project has no other log.
pub(crate) fn new_log_path(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.{LOG_EXT}.new", crate::project::FIRST_SEQ))
}

/// A project's logs as its directory names them ([`list_logs`]).
#[derive(Debug, Default)]
pub(crate) struct Logs {
    /// The first sequence numbers of its named logs, oldest first.
    pub(crate) seqs: Vec<u64>,
    /// Its only log is a first log not yet synced ([`new_log_path`]).
    pub(crate) new_log: bool,
    /// A [`new_log_path`] beside named logs: a second name of its first log, which a power cut
    /// left after the log was linked under its name ([`name_new_log_durably`]).
    pub(crate) second_name: bool,
}

/// A project's logs as `dir` names them. A writer may rename its new log while the directory
/// is listed: a directory found with neither name is listed once more.
pub(crate) fn list_logs(dir: &Path) -> Result<Logs> {
    for _ in 0..2 {
        let (seqs, new_name) = list_names(dir)?;
        if !seqs.is_empty() || new_name {
            return Ok(Logs {
                new_log: seqs.is_empty(),
                second_name: !seqs.is_empty() && new_name,
                seqs,
            });
        }
    }
    Ok(Logs::default())
}

/// Gives a new project's first log, at [`new_log_path`] in `dir`, its name ([`log_path`]), the
/// way no power cut can lose both names: linked under its name, the directory synced, then the
/// old name removed. For a log that may hold acknowledged records, where renames may not be
/// atomic across a power cut ([`fsio::renames_are_atomic`]).
///
/// A link already there to the same file (an earlier attempt linked it, then failed) counts as
/// made. Where the file system has no hard links, the log is renamed, then the directory synced.
pub(crate) fn name_new_log_durably(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let from = new_log_path(dir);
    let to = log_path(dir, crate::project::FIRST_SEQ);
    match fs::hard_link(&from, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let same = match (fs::metadata(&from), fs::metadata(&to)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                return Err(Error::io("linking", &from, e));
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            log::debug!("no hard links under {} ({e}): renaming", dir.display());
            fs::rename(&from, &to).map_err(|e| Error::io("renaming", &from, e))?;
            sync_dir(dir)?;
            return Ok(to);
        }
        Err(e) => return Err(Error::io("linking", &from, e)),
    }
    sync_dir(dir)?;
    remove_if_present(&from)?;
    Ok(to)
}

/// Removes `path` if it exists.
pub(crate) fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// The first sequence numbers of the segments in `dir`, oldest first (a first log not yet
/// synced, [`new_log_path`], is not listed).
pub(crate) fn list(dir: &Path) -> Result<Vec<u64>> {
    list_names(dir).map(|(seqs, _)| seqs)
}

/// [`list`], and whether `dir` holds a [`new_log_path`].
fn list_names(dir: &Path) -> Result<(Vec<u64>, bool)> {
    let new_name = new_log_path(dir);
    let new_name = new_name.file_name().and_then(|n| n.to_str());
    let entries = fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    let mut seqs = Vec::new();
    let mut new_log = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        new_log |= Some(name) == new_name;
        if let Some(stem) = name.strip_suffix(".log") {
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(seq) = stem.parse() {
                    seqs.push(seq);
                }
            }
        }
    }
    seqs.sort_unstable();
    Ok((seqs, new_log))
}

/// Whether the index file at `path` vouches for a record: it holds a whole entry, and entries
/// are written only for records already synced. A new project's first log whose header does
/// not read may then hold acknowledged records (a project made from a synced spare keeps the
/// log's new name past its first acknowledgement): its header was damaged after it was
/// synced, and the log is damage to report, not a log that never reached the disk.
pub(crate) fn index_vouches(path: &Path) -> Result<bool> {
    // Its header and first entry are all it takes.
    match fsio::read_at_most(
        path,
        (index::INDEX_HEADER_BYTES + index::ENTRY_BYTES) as u64,
    ) {
        Ok(bytes) => Ok(index::entries_of(&bytes).is_ok_and(|e| e.len() >= index::ENTRY_BYTES)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// IMPORTANT: every directory fsync goes through here. A file's creation, rename or removal is
/// durable only once its directory has been synced.
///
/// Syncs the entries of `dir` ([`fsio::sync_dir`]); an error names the directory, and says
/// whether the sync started ([`sync_not_started`]).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fsio::sync_dir(dir).map_err(|e| match e {
        fsio::DirSyncError::Open(e) => Error::io(OPENING_TO_SYNC, dir, e),
        fsio::DirSyncError::Sync(e) => Error::io("syncing directory", dir, e),
    })
}

/// What [`sync_dir`] was doing when the directory did not open.
const OPENING_TO_SYNC: &str = "opening directory";

/// Whether `error` is a directory sync that never started: the directory did not open (out of
/// file handles, say). Unlike a failed fsync, which may have dropped what it was to write, it
/// lost nothing, so it does not poison a log: what was to be synced stays unsynced, and the
/// next sync does it.
pub(crate) fn sync_not_started(error: &Error) -> bool {
    matches!(error, Error::Io { op, .. } if *op == OPENING_TO_SYNC)
}

/// Writes `bytes` to `path` atomically: a synced temporary file renamed into place, then the
/// directory synced. A crash leaves either no file or the whole file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_whole(path, bytes)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Writes `bytes` to `path` as a synced temporary file renamed into place, without syncing the
/// directory: after a crash there is either no file (or the one it replaced) or the whole file.
/// The caller syncs the directory before it relies on the file's existence.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    fsio::write_at(tmp.as_file(), bytes, 0)
        .and_then(|()| fsio::sync_data(tmp.as_file()))
        // Named by the file it is to become: the temporary one is gone with the error.
        .map_err(|e| Error::io("writing a new copy of", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into", path, e.error))?;
    Ok(())
}

/// Creates a new empty segment (log and index) starting at `header.first_seq`, replacing an
/// empty one of the same name.
///
/// The log is written whole (synced, then renamed into place), so a crash leaves it complete or
/// absent; the index is a cache, written without a sync (a torn one is rebuilt on open). The
/// directory is *not* synced: the caller does that before anything in the segment is
/// acknowledged as durable (`Project::sync_dirs`), so creating a project or rolling a segment
/// costs one fsync, not five.
pub(crate) fn create(dir: &Path, header: SegmentHeader) -> Result<()> {
    write_index_header(dir, header.first_seq)?;
    let made = write_whole(&log_path(dir, header.first_seq), &header.encode());
    without_index_if_failed(made, dir, header.first_seq)
}

/// `made`, the making of a log after [`create`] or [`create_new`] made its index: if it failed,
/// the index is removed, so that none stays behind without its log. Best effort: one left there
/// is replaced when the segment is made again, and holds no entry.
fn without_index_if_failed(made: Result<()>, dir: &Path, first_seq: u64) -> Result<()> {
    if made.is_err() {
        let _ = fs::remove_file(index_path(dir, first_seq));
    }
    made
}

/// Creates a project's first segment without a sync: the index as [`create`] does, the log
/// written in place under its temporary name ([`new_log_path`]), replacing one left there. The
/// project's first sync syncs the log, then renames it and syncs the directory (see
/// `Project::sync_dirs`). A crash before that leaves a log that may be torn or missing, under a
/// name that says it was never synced.
pub(crate) fn create_new(dir: &Path, header: SegmentHeader) -> Result<()> {
    debug_assert_eq!(header.first_seq, crate::project::FIRST_SEQ);
    write_index_header(dir, header.first_seq)?;
    let path = new_log_path(dir);
    // A new file, not the old one truncated: the log it replaces may still be mapped.
    let made = remove_if_present(&path).and_then(|()| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|f| fsio::write_at(&f, &header.encode(), 0))
            .map_err(|e| Error::io("creating", &path, e))
    });
    without_index_if_failed(made, dir, header.first_seq)
}

/// Makes the files of a spare project directory `dir`, without a sync: the first segment's
/// index as [`create`] makes it, and an empty log under its temporary name ([`new_log_path`]),
/// whose header the project that takes the spare writes.
pub(crate) fn create_spare(dir: &Path) -> Result<()> {
    write_index_header(dir, crate::project::FIRST_SEQ)?;
    let path = new_log_path(dir);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        // As `create`'s temporary file has it.
        .mode(0o600)
        .open(&path)
        .map(drop)
        .map_err(|e| Error::io("creating", &path, e))
}

/// Makes the directory `path` (with its missing parents when `parents`), private to the user
/// (mode 0700, whatever the umask allows more of), as the files the store keeps in it are.
/// Directories already there are left as they are.
pub(crate) fn create_dir_private(path: &Path, parents: bool) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(parents)
        .mode(0o700)
        .create(path)
}

/// Writes a new index file holding only its header (not synced: the index is a cache).
fn write_index_header(dir: &Path, first_seq: u64) -> Result<()> {
    let idx_path = index_path(dir, first_seq);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        // Private to the user, as the logs it indexes are.
        .mode(0o600)
        .open(&idx_path)
        .and_then(|f| fsio::write_at(&f, &index::encode_header(), 0))
        .map_err(|e| Error::io("creating", &idx_path, e))
}

/// Reads a log header from an open file.
pub(crate) fn read_header(file: &File, path: &Path) -> Result<SegmentHeader> {
    let mut buf = [0u8; LOG_HEADER_BYTES];
    match file.read_exact_at(&mut buf, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(Error::corrupt(
                path,
                0,
                "the file is shorter than its header",
            ))
        }
        Err(e) => return Err(Error::io("reading", path, e)),
    }
    let header = SegmentHeader::decode(&buf).map_err(|e| header_error(path, e))?;
    // A damaged header whose checksum still holds may name numbers that no segment can have:
    // sequence numbers start at 1, and its records' sequence numbers or stamps would overflow.
    if header.first_seq == 0 {
        return Err(Error::corrupt(
            path,
            16,
            "bad file header: first sequence number 0 (sequence numbers start at 1)",
        ));
    }
    if header.first_seq > u64::MAX - MAX_RECORDS_PER_SEGMENT {
        return Err(Error::corrupt(
            path,
            16,
            format!(
                "bad file header: first sequence number {} is out of range",
                header.first_seq
            ),
        ));
    }
    if header.base_stamp > MAX_BASE_STAMP {
        return Err(Error::corrupt(
            path,
            24,
            format!(
                "bad file header: base stamp {} is out of range",
                header.base_stamp
            ),
        ));
    }
    Ok(header)
}

pub(crate) fn header_error(path: &Path, e: DecodeError) -> Error {
    match e {
        DecodeError::Version(found) => Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
        },
        e => Error::corrupt(path, 0, format!("bad file header: {e}")),
    }
}

/// A message's bytes as text, or `None` if they are not UTF-8.
///
/// Messages are nearly always ASCII, which one pass of 16-byte words proves to be UTF-8 in about
/// half the time of a full UTF-8 check of a typical message (11 against 24 ns for 165 bytes;
/// the check was a quarter of reading a page of newest messages). Anything else gets the full
/// check.
#[inline]
pub(crate) fn message_text(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        // SAFETY: every byte is below 0x80 (`is_ascii`), and ASCII is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        simdutf8::basic::from_utf8(bytes).ok()
    }
}

/// How far below the record being read a newest-first scan asks the CPU to fetch: records are
/// read in descending order, each from its start upwards, a pattern the hardware prefetchers
/// do not follow. (A scan of the compare's largest project: 14.4 → 11.1 ms in a harness of the
/// reader's checks, 1 to 8 KiB all alike; 16.6–16.9 → 13.9–15.9 ms through the reader. Sealed
/// segments too, since [`PREFETCH_BYTES`] became 256: `cargo bench --bench engine --
/// scan/messages`, 1 M messages, two alternating runs each, 49.7–50.4 → 43.8–43.9 ms; with one
/// line it had made that scan slower, 53 → 73 ms.)
pub(crate) const PREFETCH_BELOW_BYTES: usize = 4 << 10;

/// Bytes from [`PREFETCH_BELOW_BYTES`] below a record that its read asks the CPU to fetch:
/// a record's length or more (most are under 256 bytes), so that the lines of every record
/// are asked for once the scan has moved on to them. One line per record left two of its
/// three lines to memory: a harness scanning 270,000 messages newest first, best of 40 scans,
/// alternating runs: 9.7–9.8 ms with one line, 8.6–9.1 ms with three, 8.3–8.8 ms with four
/// (4 or 8 KiB below, alike).
const PREFETCH_BYTES: usize = 256;

/// Asks the CPU to start fetching the cache lines of `bytes[at..at + PREFETCH_BYTES]`
/// (nothing when `at` is out of range, or off x86-64). A hint: it never faults and changes
/// nothing but timing.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], at: usize) {
    if let Some(b) = bytes.get(at) {
        prefetch_lines(b, PREFETCH_BYTES);
    }
}

/// Whether every byte is below 0x80. On a CPU with AVX-512 and VPCLMULQDQ, a message of up to
/// 256 bytes is four masked vector loads ([`crc::is_ascii_wide`]): pages of the newest 20
/// messages from the writer's tail copy, whose checksums need no check, 821–898 → 688–727 ns in
/// a probe (four alternating pairs). Otherwise words of 16 bytes, the last one overlapping, so
/// that a message costs one loop and no byte-by-byte remainder (whose branches, over messages
/// of every length, cost more than the words). Not inlined: inlined into the reader's decoding,
/// it made a full scan 10% slower instead of 8% faster.
#[inline(never)]
fn is_ascii(bytes: &[u8]) -> bool {
    if let Some(ascii) = crc::is_ascii_wide(bytes) {
        return ascii;
    }
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    let n = bytes.len();
    if n < 16 {
        return bytes.iter().fold(0, |acc, &b| acc | b) < 0x80;
    }
    let word = |b: &[u8]| u64::from_ne_bytes(b[..8].try_into().expect("eight bytes"));
    let mut acc = word(&bytes[n - 16..]) | word(&bytes[n - 8..]);
    for chunk in bytes.chunks_exact(16) {
        acc |= word(chunk) | word(&chunk[8..]);
    }
    acc & HIGH_BITS == 0
}

/// A record read from a segment: its sequence number, stamp and payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRecord<'a> {
    pub seq: u64,
    pub stamp: u64,
    pub payload: &'a [u8],
    /// Whether every byte of `payload` is below 0x80, when the checksum's pass looked (`None`
    /// when no checksum was checked). Set only in this module, which relies on `Some(true)` to
    /// take the payload as text unchecked.
    ascii: Option<bool>,
}

impl<'a> RawRecord<'a> {
    /// The payload as text, if it is UTF-8: at once when the checksum's pass saw it all ASCII,
    /// and with the full UTF-8 check alone when it saw a byte that is not.
    #[inline]
    pub(crate) fn text(&self) -> Option<&'a str> {
        match self.ascii {
            // SAFETY: `ascii` is `Some(true)` only after every byte of `payload` was seen below
            // 0x80 (`crc::crc32_and_ascii`), and ASCII is valid UTF-8.
            Some(true) => Some(unsafe { std::str::from_utf8_unchecked(self.payload) }),
            Some(false) => simdutf8::basic::from_utf8(self.payload).ok(),
            None => message_text(self.payload),
        }
    }
}

/// Decodes the record at `offset` of `log` (a buffer whose first byte is file offset `base`)
/// and checks it is record `i` of the segment.
pub(crate) fn decode_at<'a>(
    log: &'a [u8],
    base: u64,
    offset: u64,
    header: &SegmentHeader,
    i: u64,
    path: &Path,
) -> Result<RawRecord<'a>> {
    decode_at_with(log, base, offset, header, i, path, true)
}

/// [`decode_at`], without checking the frame's checksum when `checksum` is false (for bytes
/// from [`Active::tail`], which this process encoded, or read back and checked once).
#[inline]
pub(crate) fn decode_at_with<'a>(
    log: &'a [u8],
    base: u64,
    offset: u64,
    header: &SegmentHeader,
    i: u64,
    path: &Path,
    checksum: bool,
) -> Result<RawRecord<'a>> {
    // A header is only checksummed: a damaged or hostile one may hold numbers that overflow.
    let seq = header.first_seq.checked_add(i).ok_or_else(|| {
        Error::corrupt(
            path,
            offset,
            format!(
                "record {i} of the segment starting at {} is past the largest sequence number",
                header.first_seq
            ),
        )
    })?;
    // The checksum is checked here rather than by the codec, in one pass with the ASCII check
    // of the message.
    let mut ascii = None;
    let frame: Frame<'a> = offset
        .checked_sub(base)
        .ok_or(DecodeError::Truncated)
        .and_then(|at| {
            let at = at as usize;
            let frame = decode_frame_with(log, at, false)?;
            if checksum {
                let body = &log[at + 4..at + FRAME_HEADER_BYTES + frame.payload.len()];
                let (crc, all_ascii) = crc::crc32_and_ascii(body, FRAME_HEADER_BYTES - 4);
                if crc.to_le_bytes() != log[at..at + 4] {
                    return Err(DecodeError::Checksum);
                }
                ascii = Some(all_ascii);
            }
            Ok(frame)
        })
        .map_err(|e| Error::corrupt(path, offset, format!("record {seq}: {e}")))?;
    if u64::from(frame.seq_delta) != i {
        return Err(Error::corrupt(
            path,
            offset,
            format!(
                "expected record {seq} but found record {}",
                header.first_seq.saturating_add(u64::from(frame.seq_delta))
            ),
        ));
    }
    let stamp = header
        .base_stamp
        .checked_add(frame.stamp_delta)
        .ok_or_else(|| {
            Error::corrupt(
                path,
                offset,
                format!("record {seq}: its stamp is past the largest stamp"),
            )
        })?;
    Ok(RawRecord {
        seq,
        stamp,
        payload: frame.payload,
        ascii,
    })
}

/// Index entries, either mapped from a trusted index file or rebuilt in memory.
enum Entries {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Entries {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Entries::Mapped(m) => index::entries_of(m).unwrap_or(&[]),
            Entries::Owned(v) => v,
        }
    }
}

/// A sealed segment: immutable, read through memory maps.
pub(crate) struct Sealed {
    path: PathBuf,
    header: SegmentHeader,
    log: Mmap,
    entries: Entries,
    count: u64,
}

impl Sealed {
    /// Maps the sealed segment of `dir` starting at `first_seq`, checking its index and
    /// rebuilding it from the log if it is missing or wrong (on disk too, when `writable`).
    pub(crate) fn open(dir: &Path, first_seq: u64, writable: bool) -> Result<Sealed> {
        let path = log_path(dir, first_seq);
        let file = fsio::open_regular(&path, false).map_err(|e| Error::io("opening", &path, e))?;
        let header = read_header(&file, &path)?;
        if header.first_seq != first_seq {
            return Err(Error::corrupt(
                &path,
                16,
                format!("the header says the segment starts at {}", header.first_seq),
            ));
        }
        // SAFETY: the file is a sealed segment of this store: per the module's mapping
        // contract nothing writes, truncates or shrinks it while the store is open, so the
        // mapped bytes stay valid and unchanged for the map's lifetime. The map is read-only.
        let log = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mapping", &path, e))?;
        // Record offsets are 32-bit: no segment is made this large (`MAX_SEGMENT_BYTES`), and
        // an index rebuilt from a larger log would point at the wrong bytes.
        if log.len() as u64 > u64::from(u32::MAX) {
            return Err(Error::corrupt(
                &path,
                u64::from(u32::MAX),
                "the log is larger than 4 GiB",
            ));
        }
        let idx_path = index_path(dir, first_seq);
        let mapped = map_index(&idx_path);
        let problem = match &mapped {
            Ok(map) => check_index(map, &log, &header, &path).err(),
            Err(reason) => Some(reason.clone()),
        };
        let entries = match (mapped, problem) {
            (Ok(map), None) => Entries::Mapped(map),
            (_, problem) => {
                let problem = problem.unwrap_or_default();
                let s = scan(&log[LOG_HEADER_BYTES..], LOG_HEADER_BYTES as u64, 0);
                let mut bytes = Vec::with_capacity(s.entries.len() * index::ENTRY_BYTES);
                index::encode_entries(&mut bytes, &s.entries);
                log::warn!(
                    "rebuilt the index of {} from its log ({problem})",
                    path.display()
                );
                for range in &s.damage_report(log.len() as u64) {
                    log::error!(
                        "{} is damaged at bytes {}..{}",
                        path.display(),
                        range.start,
                        range.end
                    );
                }
                // Best effort: the index is a cache, and the entries are at hand. A failure
                // to write it back (a full disk, say) must not fail the read.
                if writable {
                    if let Err(e) = write_rebuilt_index(&path, &idx_path, &bytes) {
                        log::warn!(
                            "cannot write back the rebuilt index of {} ({e}); it will be \
                             rebuilt again",
                            path.display()
                        );
                    }
                }
                Entries::Owned(bytes)
            }
        };
        let count = (entries.len() / index::ENTRY_BYTES) as u64;
        Ok(Sealed {
            path,
            header,
            log,
            entries,
            count,
        })
    }

    /// The log file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The segment's header.
    pub(crate) fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// How many records the index knows (lost ones included).
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Size of the log file in bytes.
    pub(crate) fn log_len(&self) -> u64 {
        self.log.len() as u64
    }

    /// Record `i` (0-based within the segment).
    pub(crate) fn record(&self, i: u64) -> Result<RawRecord<'_>> {
        let offset = self.offset(i);
        if offset == u64::from(LOST) {
            return Err(self.lost(i));
        }
        decode_at(&self.log, 0, offset, &self.header, i, &self.path)
    }

    /// Asks the CPU to fetch the bytes [`PREFETCH_BELOW_BYTES`] below record `i`, for a
    /// newest-first read ([`prefetch`]).
    #[inline(always)]
    pub(crate) fn prefetch_below(&self, i: u64) {
        prefetch(
            &self.log,
            (self.offset(i) as usize).wrapping_sub(PREFETCH_BELOW_BYTES),
        );
    }

    /// Where record `i` starts in the log (as its index entry says).
    pub(crate) fn offset(&self, i: u64) -> u64 {
        u64::from(index::entry(&self.entries, i as usize))
    }

    /// Whether record `i` is marked lost.
    pub(crate) fn is_lost(&self, i: u64) -> bool {
        index::entry(&self.entries, i as usize) == LOST
    }

    fn lost(&self, i: u64) -> Error {
        self.lost_run(i, i)
    }

    /// The error for the run of records `a..=b` (or `b..=a`; all marked lost), as a read that
    /// skips them reports it.
    pub(crate) fn lost_run(&self, a: u64, b: u64) -> Error {
        let first = self.header.first_seq;
        lost_error(
            &self.path,
            self.lost_range(a),
            first + a.min(b),
            first + a.max(b),
        )
    }

    /// The damaged bytes that swallowed record `i` (marked lost): from the end of the last good
    /// record before it to the start of the first good record after it. Derived from the index
    /// and the log alone, so it is the same whether the index was just rebuilt or trusted.
    fn lost_range(&self, i: u64) -> std::ops::Range<u64> {
        let end = (i + 1..self.count)
            .find(|&j| !self.is_lost(j))
            .map_or(self.log_len(), |j| {
                u64::from(index::entry(&self.entries, j as usize))
            });
        let start = (0..i)
            .rev()
            .find(|&j| !self.is_lost(j))
            .map_or(LOG_HEADER_BYTES as u64, |j| self.record_end(j));
        start.min(end)..end
    }

    /// Where record `j` ends, by its length field (clamped to the file: it may be damaged too).
    fn record_end(&self, j: u64) -> u64 {
        let at = index::entry(&self.entries, j as usize) as usize;
        let len = self
            .log
            .get(at..at + FRAME_HEADER_BYTES)
            .map_or(frame_len(0) as u64, frame_len_by_header);
        (at as u64 + len).min(self.log_len())
    }

    /// Where the segment's last good record ends: where missing records would begin.
    pub(crate) fn records_end(&self) -> u64 {
        match self.count {
            0 => LOG_HEADER_BYTES as u64,
            n => self.record_end(n - 1),
        }
    }
}

/// Writes the index rebuilt from the sealed log at `log` (its `entries`) to `idx`. Retention
/// may remove the segment meanwhile — its log, then its index — while a reader that opened the
/// log before reads on: an index written back after that is removed again, so that none
/// outlives its log.
fn write_rebuilt_index(log: &Path, idx: &Path, entries: &[u8]) -> Result<()> {
    let mut file = index::encode_header().to_vec();
    file.extend_from_slice(entries);
    write_atomically(idx, &file)?;
    if !log.exists() {
        log::debug!("{} was removed meanwhile; so is its index", log.display());
        remove_if_present(idx)?;
    }
    Ok(())
}

/// The error for records `lo..=hi` of the log at `path`, lost to the damage at `range`.
pub(crate) fn lost_error(path: &Path, range: std::ops::Range<u64>, lo: u64, hi: u64) -> Error {
    let records = if lo == hi {
        format!("record {lo} was")
    } else {
        format!("records {lo}..={hi} were")
    };
    Error::corrupt(
        path,
        range.start,
        format!(
            "{records} lost to damage at bytes {}..{}",
            range.start, range.end
        ),
    )
}

impl crate::scan::Scan {
    /// Damaged ranges, including a torn tail (which a sealed segment must not have).
    pub(crate) fn damage_report(&self, end: u64) -> Vec<std::ops::Range<u64>> {
        let mut out = self.damaged.clone();
        if self.torn(end) {
            out.push(self.good_end..end);
        }
        out
    }
}

/// Maps an index file and checks its header.
fn map_index(path: &Path) -> Result<Mmap, String> {
    let file =
        fsio::open_regular(path, false).map_err(|e| format!("cannot open the index: {e}"))?;
    // SAFETY: index files are written once by `write_atomically` (or appended while their
    // segment was active) and replaced only by rename, never rewritten or truncated in place
    // once their segment is sealed, so the mapped bytes stay valid. The map is read-only.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot map the index: {e}"))?;
    index::entries_of(&map).map_err(|e| format!("bad index header: {e}"))?;
    Ok(map)
}

/// Checks a mapped index against its sealed log: structure, then that the last entry is a
/// record that ends exactly at the end of the log.
fn check_index(map: &Mmap, log: &[u8], header: &SegmentHeader, path: &Path) -> Result<(), String> {
    let entries = index::entries_of(map).map_err(|e| e.to_string())?;
    index::check(entries, log.len() as u64)?;
    let n = entries.len() / index::ENTRY_BYTES;
    if n == 0 {
        return Err("the index is empty".to_string());
    }
    let last = u64::from(index::entry(entries, n - 1));
    // Walk back from the log's end through the last record's trailer: it must be the record the
    // last entry points at.
    let (start, _) = decode_frame_ending_at(log, log.len())
        .map_err(|e| format!("the log does not end with a whole record: {e}"))?;
    if start as u64 != last {
        return Err("the last entry is not the last record".to_string());
    }
    decode_at(log, 0, last, header, n as u64 - 1, path).map_err(|e| e.to_string())?;
    Ok(())
}

/// The active segment of a project: appended to by the writer, read with positional reads (and
/// mapped up to a snapshot's committed length by long scans).
///
/// Readers see only what a snapshot says is committed, so they never read past a batch that is
/// still being written.
pub(crate) struct Active {
    pub(crate) path: PathBuf,
    pub(crate) header: SegmentHeader,
    pub(crate) file: File,
    /// Offsets of every record in the segment, entry `i` for `first_seq + i`.
    pub(crate) entries: parking_lot::RwLock<Vec<u32>>,
    /// The newest bytes of the log, as this process appended them or as it read and checked
    /// them when it opened the project (writable stores only), so that reading the newest
    /// messages (what the Activity API asks for most) costs a copy, not a system call.
    pub(crate) tail: parking_lot::RwLock<Tail>,
    /// The latest map of committed bytes made for a scan ([`map`](Self::map)), kept for the
    /// next scan: mapping a big segment anew costs a page fault per folio of the page cache
    /// (64 KiB, or 256 KiB where the room wrote it, [`crate::fsio::write_zeros`]).
    pub(crate) scan_map: parking_lot::Mutex<Option<Arc<Mmap>>>,
}

/// Bytes kept in [`Active::tail`]: between this and twice this (a batch larger than this
/// keeps only its end). At most 32 KiB per open project.
pub(crate) const TAIL_BYTES: usize = 16 << 10;

/// A copy of `log[start..start + bytes.len()]` of an active segment, as appended (or as read
/// back and checked when the segment was opened).
#[derive(Default)]
pub(crate) struct Tail {
    start: u64,
    bytes: Vec<u8>,
}

impl Tail {
    /// A tail copy of `bytes`, read from the log at file offset `start`, if every record in
    /// them checks out: `entries` are the offsets of those records (the first at `start`,
    /// numbered from `first` in the segment), and the last one ends where `bytes` do. Readers
    /// skip the checksums of the tail copy, so it holds only checked bytes.
    pub(crate) fn checked(
        bytes: Vec<u8>,
        start: u64,
        entries: &[u32],
        first: u64,
        header: &SegmentHeader,
        path: &Path,
    ) -> Option<Tail> {
        let end = start + bytes.len() as u64;
        if entries.first().map(|&e| u64::from(e)) != Some(start) {
            return None;
        }
        for (j, &at) in entries.iter().enumerate() {
            let next = entries.get(j + 1).map_or(end, |&e| u64::from(e));
            let at = u64::from(at);
            if at == u64::from(LOST) || next <= at || next > end {
                return None;
            }
            let record = bytes
                .get(..(next - start) as usize)
                .and_then(|b| decode_at(b, start, at, header, first + j as u64, path).ok())?;
            if at + frame_len(record.payload.len()) as u64 != next {
                return None;
            }
        }
        Some(Tail { start, bytes })
    }
}

impl Active {
    /// The run of lost records around record `i` (marked lost) — its first and last index —
    /// and the damaged bytes that swallowed it, as for sealed segments, given the committed
    /// record count and log length. One pass over the entries, however long the run.
    pub(crate) fn lost_run(
        &self,
        i: u64,
        count: u64,
        len: u64,
    ) -> Result<(std::ops::Range<u64>, u64, u64)> {
        let (prev, next) = {
            let entries = self.entries.read();
            let i = i as usize;
            let prev = entries[..i].iter().rposition(|&e| e != LOST);
            let next = entries[i + 1..count as usize]
                .iter()
                .position(|&e| e != LOST)
                .map(|k| i + 1 + k);
            (prev.map(|p| (p, entries[p])), next.map(|n| (n, entries[n])))
        };
        let lo = prev.map_or(0, |(p, _)| p as u64 + 1);
        let hi = next.map_or(count - 1, |(n, _)| n as u64 - 1);
        let end = next.map_or(len, |(_, at)| u64::from(at));
        let start = match prev {
            None => LOG_HEADER_BYTES as u64,
            Some((_, at)) => {
                let mut head = [0u8; FRAME_HEADER_BYTES];
                self.read_exact_at(&mut head, u64::from(at))?;
                u64::from(at) + frame_len_by_header(&head)
            }
        };
        Ok((start.min(end)..end, lo, hi))
    }

    /// Opens the log of an active segment (read-write when `writable`).
    pub(crate) fn open_file(path: &Path, writable: bool) -> Result<File> {
        fsio::open_regular(path, writable).map_err(|e| Error::io("opening", path, e))
    }

    /// Hands the `len` bytes at `offset` to `copy` if the tail copy holds them all.
    fn copy_from_tail(&self, offset: u64, len: usize, copy: impl FnOnce(&[u8])) -> bool {
        let tail = self.tail.read();
        let held = offset
            .checked_sub(tail.start)
            .and_then(|from| tail.bytes.get(from as usize..from as usize + len));
        held.map(copy).is_some()
    }

    /// Reads `buf.len()` bytes at `offset`: from the tail copy when it holds them, else from
    /// the file. Returns whether they came from the tail copy (bytes this process encoded or
    /// already checked, so their checksums need no checking).
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        if self.copy_from_tail(offset, buf.len(), |src| buf.copy_from_slice(src)) {
            return Ok(true);
        }
        self.read_file(buf, offset)?;
        Ok(false)
    }

    fn read_file(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        crate::blocking::check()?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io("reading", &self.path, e))
    }

    /// Replaces `window`'s contents with the bytes from `start` to `end`, or from later than
    /// `start` but not later than `need`: from the tail copy when it holds `need..end` (from its
    /// start on, if that is after `start`), else from the file. Returns where the window starts,
    /// and whether it came from the tail copy, like [`read_exact_at`](Self::read_exact_at).
    /// Bytes from the tail copy are copied once, without zeroing the buffer first.
    pub(crate) fn read_window(
        &self,
        window: &mut Vec<u8>,
        start: u64,
        need: u64,
        end: u64,
    ) -> Result<(u64, bool)> {
        debug_assert!(start <= need && need <= end);
        window.clear();
        {
            let tail = self.tail.read();
            let from = start.max(tail.start);
            if from <= need {
                let held = tail
                    .bytes
                    .get((from - tail.start) as usize..(end - tail.start) as usize);
                if let Some(held) = held {
                    window.extend_from_slice(held);
                    return Ok((from, true));
                }
            }
        }
        window.resize((end - start) as usize, 0);
        self.read_file(window, start)?;
        Ok((start, false))
    }

    /// A map of at least the first `len` bytes of the log: `len` must not exceed the committed
    /// length of a snapshot (bytes the writer wrote before publishing them). The last map made
    /// is shared while it is long enough; it may cover more than `len` committed bytes.
    pub(crate) fn map(&self, len: u64) -> Result<Arc<Mmap>> {
        crate::blocking::check()?;
        let mut kept = self.scan_map.lock();
        if let Some(map) = kept.as_ref().filter(|m| m.len() as u64 >= len) {
            return Ok(map.clone());
        }
        let len = usize::try_from(len).map_err(|_| Error::corrupt(&self.path, len, "too big"))?;
        // SAFETY: per the module's mapping contract, an active log is only appended to while
        // the store is open, and shrunk only back to its committed length (after a failed
        // append, or to drop the writer's room), so its first `len` committed bytes stay in
        // the file and unchanged for the map's lifetime; unlinking (retention) leaves the map
        // intact. A project is not closed for eviction while a snapshot holds its active
        // segment, so no reopen's recovery runs under the map. The map is read-only.
        let map = unsafe { MmapOptions::new().len(len).map(&self.file) }
            .map(Arc::new)
            .map_err(|e| Error::io("mapping", &self.path, e))?;
        *kept = Some(map.clone());
        Ok(map)
    }

    /// Where the tail copy starts (`u64::MAX` when it is empty): reads at or after it are cheap.
    pub(crate) fn tail_start(&self) -> u64 {
        let tail = self.tail.read();
        if tail.bytes.is_empty() {
            u64::MAX
        } else {
            tail.start
        }
    }

    /// Keeps a copy of `bytes`, just written at `at`, for readers. Called by the writer after
    /// the write returned and before readers are told, so the copy holds only what the file does.
    pub(crate) fn remember(&self, at: u64, bytes: &[u8]) {
        let mut tail = self.tail.write();
        if at != tail.start + tail.bytes.len() as u64 || bytes.len() >= TAIL_BYTES {
            // Not adjacent (the first append since the segment was opened) or too big to keep
            // whole: start over with the newest bytes.
            let keep = bytes.len().min(TAIL_BYTES);
            tail.bytes.clear();
            tail.bytes.extend_from_slice(&bytes[bytes.len() - keep..]);
            tail.start = at + (bytes.len() - keep) as u64;
            return;
        }
        if tail.bytes.len() + bytes.len() > 2 * TAIL_BYTES {
            let drop = tail.bytes.len() + bytes.len() - TAIL_BYTES;
            tail.bytes.drain(..drop);
            tail.start += drop as u64;
        }
        tail.bytes.extend_from_slice(bytes);
        let spare = tail.bytes.spare_capacity_mut();
        prefetch_lines(spare.as_ptr().cast(), PREFETCH_AHEAD_BYTES.min(spare.len()));
    }

    /// Copies entries `from..to` into `out`.
    pub(crate) fn copy_entries(&self, from: usize, to: usize, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.entries.read()[from..to]);
    }
}

/// Room made ahead of an active log's committed end: zeros written past it (so the page cache
/// holds those pages, and the file system has reserved their blocks) and mapped, so that an
/// append is a copy into the page cache instead of a `pwrite` system call (the kernel's write
/// path was half of a single append's time). The copy is in the page cache as soon as it is
/// made, as written bytes are: it survives the process being killed, and an fsync of the file
/// covers it.
///
/// Readers in this process see a batch only once the writer publishes it, after its copy. A
/// reader in another process reads the file, so it may see a copy in flight, in any order of
/// its bytes: read-only opens read again what looks damaged (`project::settle`).
///
/// The writer owns its room and drops it before anything shrinks the file; the log is cut back
/// to its committed length when the segment is sealed, the store synced or the project closed,
/// and recovery cuts a tail of zeros after a crash as it cuts any unfinished tail (see
/// `docs/format.md`).
pub(crate) struct Room {
    map: MmapRaw,
    /// File offset of the map's first byte.
    start: u64,
    /// File offset one past the map's last byte.
    end: u64,
}

/// Bytes past an append's end that [`Room::copy_in`] and [`Active::remember`] fetch for the
/// project's next append (see [`prefetch_lines`]).
const PREFETCH_AHEAD_BYTES: usize = 512;

/// Asks the CPU to fetch the cache lines of the `len` bytes at `ptr` (`PREFETCHT0`), ahead of a
/// copy into them. A project's next append copies right after its last one, into its room and
/// its tail copy: with the lines fetched, that copy does not wait for memory on each line it
/// touches, nor does the next lock wait for those stores. 512 bytes per project stay in cache
/// until then even with a thousand projects appended to in turn (A1 harness: 0.75 -> 0.65 µs
/// per append for the room alone; `PREFETCHW`, which fetches a line for writing, measured the
/// same). A hint, on x86-64 only.
#[inline]
fn prefetch_lines(ptr: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..len).step_by(64) {
        // SAFETY: a prefetch is a hint: it never faults, whatever the address, and changes no
        // memory; `wrapping_add` keeps the address arithmetic defined.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                ptr.wrapping_add(at).cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, len);
}

impl Room {
    /// Writes zeros over `zeros_from..end` of `file` (which holds zeros from `start` to
    /// `zeros_from` already) and maps `start..end` for writing. On an error the file may have
    /// grown, with zeros.
    pub(crate) fn make(
        file: &File,
        path: &Path,
        start: u64,
        zeros_from: u64,
        end: u64,
    ) -> Result<Room> {
        debug_assert!(start <= zeros_from && start < end);
        fsio::write_zeros(file, zeros_from, end)
            .map_err(|e| Error::io("making room in", path, e))?;
        let len = usize::try_from(end - start).map_err(|_| Error::corrupt(path, end, "too big"))?;
        let map = MmapOptions::new()
            .offset(start)
            .len(len)
            .map_raw(file)
            .map_err(|e| Error::io("mapping", path, e))?;
        Ok(Room { map, start, end })
    }

    /// One past the last byte the room can take.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Copies `bytes` into the log at `offset`, which must lie in the room.
    pub(crate) fn copy_in(&self, bytes: &[u8], offset: u64) {
        assert!(
            offset >= self.start && offset + bytes.len() as u64 <= self.end,
            "a copy outside the room"
        );
        // SAFETY: the range was just checked to lie inside the map, whose pages the file
        // covers: zeros were written up to `end` before mapping, and the writer drops its room
        // before anything makes the file shorter (the mapping contract: nothing else
        // changes a store's files while it is open), so no access faults. The bytes are past the
        // committed end, which no reader reads and no reference aliases: readers see them only
        // once the writer publishes the batch, after this copy. `bytes` is ordinary memory, not
        // part of the map.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add((offset - self.start) as usize),
                bytes.len(),
            );
        }
        // The project's next append copies right after these bytes.
        let next = (offset - self.start) as usize + bytes.len();
        let ahead = PREFETCH_AHEAD_BYTES.min(self.map.len() - next);
        prefetch_lines(self.map.as_ptr().wrapping_add(next), ahead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_frame;

    /// A segment whose log cannot be made leaves no index behind: the directory is as before.
    #[test]
    fn a_segment_whose_log_fails_leaves_no_index() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let header = SegmentHeader {
            first_seq: 1,
            base_stamp: 7,
            project: 3,
        };
        for make in [create, create_new] {
            let dir = tempfile::tempdir().unwrap();
            let rec = Recorder::register(dir.path(), false);
            // The first write is the index's header, the second the log's.
            rec.fail(FaultKind::Write, 2);
            let made = make(dir.path(), header);
            rec.unregister();
            assert!(made.is_err());
            let (failed, _, _) = rec.faulted().unwrap();
            assert!(!failed.ends_with(".idx"), "{failed:?}");
            let left: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            // `create_new` leaves its log, under the name of a log never synced, for the next
            // attempt to replace.
            assert!(
                left.iter()
                    .all(|n| n.to_string_lossy().ends_with(".log.new")),
                "{left:?}"
            );
        }
    }

    /// A file written whole that fails names the file it was to become, not the temporary
    /// one, which is gone with the error.
    #[test]
    fn a_failed_whole_write_names_its_target() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("STORE");
        let rec = Recorder::register(dir.path(), false);
        rec.fail(FaultKind::Write, 1);
        let err = write_whole(&target, b"bytes").unwrap_err();
        rec.unregister();
        match &err {
            Error::Io { path, .. } => assert_eq!(path, &target, "{err}"),
            other => panic!("{other:?}"),
        }
        assert!(!target.exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temporary file left"
        );
    }

    /// A rebuilt index is written beside its log, and not left behind when the log was
    /// removed meanwhile (by retention, under a reader that had opened it).
    #[test]
    fn a_rebuilt_index_does_not_outlive_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let (log, idx) = (log_path(dir.path(), 1), index_path(dir.path(), 1));
        fs::write(&log, b"a log").unwrap();
        write_rebuilt_index(&log, &idx, &[0; 8]).unwrap();
        assert_eq!(fs::read(&idx).unwrap().len(), index::INDEX_HEADER_BYTES + 8);
        fs::remove_file(&log).unwrap();
        fs::remove_file(&idx).unwrap();
        write_rebuilt_index(&log, &idx, &[0; 8]).unwrap();
        assert!(!idx.exists());
    }

    /// A sealed segment whose index must be rebuilt still reads when the rebuilt index cannot
    /// be written back (a full disk, say): the index is a cache, and the log is whole.
    #[test]
    fn a_sealed_segment_reads_when_its_rebuilt_index_cannot_be_written() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let tmp = tempfile::tempdir().unwrap();
        let open = || {
            crate::Options::new()
                .segment_bytes(4096)
                .spare_projects(0)
                .open(tmp.path())
                .unwrap()
        };
        let store = open();
        let pad = "x".repeat(900);
        for i in 0..12 {
            store
                .append(1, [format!(r#"{{"i":{i},"p":"{pad}"}}"#)])
                .unwrap();
        }
        drop(store);
        let project = tmp.path().join("projects/1");
        let first = list(&project).unwrap()[0];
        fs::remove_file(index_path(&project, first)).unwrap();
        let store = open();
        let rec = Recorder::register(tmp.path(), false);
        rec.fail(FaultKind::Write, 1);
        let read: crate::Result<Vec<u64>> = store
            .oldest_first(1)
            .unwrap()
            .map(|m| m.map(|m| m.seq()))
            .collect();
        rec.unregister();
        assert!(rec.faulted().is_some(), "the index was not written");
        assert_eq!(read.unwrap(), (1..=12).collect::<Vec<u64>>());
    }

    /// `message_text` agrees with the standard library's UTF-8 check, for every length up to 40
    /// with a non-ASCII byte (valid or not) at every position, and for text that is not ASCII.
    #[test]
    fn message_text_agrees_with_std() {
        for len in 0..40 {
            let ascii = vec![b'a'; len];
            assert_eq!(message_text(&ascii), Some("a".repeat(len).as_str()));
            for at in 0..len {
                for high in [0x80u8, 0xC3, 0xFF] {
                    let mut b = ascii.clone();
                    b[at] = high;
                    assert_eq!(message_text(&b), std::str::from_utf8(&b).ok(), "{b:?}");
                }
                if at + 1 < len {
                    let mut b = ascii.clone();
                    b[at..at + 2].copy_from_slice("é".as_bytes());
                    assert_eq!(message_text(&b), std::str::from_utf8(&b).ok());
                    assert!(message_text(&b).is_some());
                }
            }
        }
        assert_eq!(
            message_text("{\"ü\":\"日本\"}".as_bytes()),
            Some("{\"ü\":\"日本\"}")
        );
    }

    /// Reads through the tail copy give the file's bytes, whatever the sizes of the appends.
    #[test]
    fn reads_through_the_tail_copy_match_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let active = Active {
            path,
            header: SegmentHeader {
                first_seq: 1,
                base_stamp: 0,
                project: 7,
            },
            file,
            entries: parking_lot::RwLock::new(Vec::new()),
            tail: parking_lot::RwLock::new(Tail::default()),
            scan_map: parking_lot::Mutex::new(None),
        };
        let mut model = vec![7u8; 32];
        active.file.write_all_at(&model, 0).unwrap();
        let mut x = 1u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for round in 0..400 {
            let len = match round % 7 {
                0 => 1 + next() as usize % (3 * TAIL_BYTES),
                _ => 1 + next() as usize % 600,
            };
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            active
                .file
                .write_all_at(&bytes, model.len() as u64)
                .unwrap();
            active.remember(model.len() as u64, &bytes);
            model.extend_from_slice(&bytes);
            {
                let tail = active.tail.read();
                assert!(tail.bytes.len() <= 2 * TAIL_BYTES);
                assert_eq!(tail.start + tail.bytes.len() as u64, model.len() as u64);
            }
            for _ in 0..5 {
                let want = 1 + next() as usize % 8192;
                let want = want.min(model.len());
                let at = model.len() - want - next() as usize % (model.len() - want + 1);
                let mut buf = vec![0u8; want];
                active.read_exact_at(&mut buf, at as u64).unwrap();
                assert_eq!(
                    buf,
                    model[at..at + want],
                    "round {round} at {at} len {want}"
                );
            }
        }
    }

    /// A record's text, whichever way its bytes were read: checked (the checksum's pass says
    /// whether the message is ASCII) or from the tail copy (not checked again), for ASCII
    /// messages, other UTF-8 and bytes that are not UTF-8.
    #[test]
    fn record_text_agrees_with_std_checked_or_not() {
        let header = SegmentHeader {
            first_seq: 1,
            base_stamp: 0,
            project: 7,
        };
        let payloads: [&[u8]; 5] = [
            br#"{"a":"plain ascii, long enough for the folded checksum: 0123456789"}"#,
            "{\"ü\":\"日本, and a long enough tail for the folded checksum: 0123456789\"}"
                .as_bytes(),
            b"{\"a\":\"\xff not UTF-8, and a long enough tail for the folded checksum\"}",
            br#"{"a":1}"#,
            b"{\"\xc3\"}",
        ];
        for payload in payloads {
            let mut log = Vec::new();
            encode_frame(
                &mut log,
                &Frame {
                    seq_delta: 0,
                    stamp_delta: 0,
                    continues: false,
                    payload,
                },
            );
            for checksum in [true, false] {
                let rec = decode_at_with(&log, 0, 0, &header, 0, Path::new("x"), checksum).unwrap();
                assert_eq!(rec.text(), std::str::from_utf8(payload).ok(), "{payload:?}");
                assert_eq!(rec.ascii, checksum.then(|| payload.is_ascii()));
            }
        }
    }

    /// Found by fuzzing (`record_decoder`): a header whose base stamp or first sequence number
    /// is near `u64::MAX` (checksum and all) made reading a record overflow.
    #[test]
    fn decode_at_reports_numbers_past_the_end_as_corrupt() {
        let mut log = Vec::new();
        encode_frame(
            &mut log,
            &Frame {
                seq_delta: 1,
                stamp_delta: 5,
                continues: false,
                payload: b"{}",
            },
        );
        let path = Path::new("x.log");
        let ok = SegmentHeader {
            first_seq: 1,
            base_stamp: 10,
            project: 7,
        };
        let rec = decode_at(&log, 0, 0, &ok, 1, path).unwrap();
        assert_eq!((rec.seq, rec.stamp), (2, 15));
        let late_stamp = SegmentHeader {
            first_seq: 1,
            base_stamp: u64::MAX - 1,
            project: 7,
        };
        let err = decode_at(&log, 0, 0, &late_stamp, 1, path).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        let late_seq = SegmentHeader {
            first_seq: u64::MAX,
            base_stamp: 10,
            project: 7,
        };
        let err = decode_at(&log, 0, 0, &late_seq, 1, path).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert!(decode_at(&log, 0, 0, &late_seq, 0, path).is_err());
    }

    /// Found by fuzzing (`index_loader`, `open_and_recover`): a segment whose header (checksum
    /// intact) starts near the last sequence number made opening it overflow (the next sequence
    /// number of the project, the error naming a lost record).
    #[test]
    fn headers_with_numbers_out_of_range_are_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        for (first_seq, base_stamp) in [(u64::MAX, 1), (u64::MAX - 5, 1), (1, u64::MAX - 5)] {
            let mut log = SegmentHeader {
                first_seq,
                base_stamp,
                project: 7,
            }
            .encode()
            .to_vec();
            let frame = Frame {
                seq_delta: 0,
                stamp_delta: 0,
                continues: false,
                payload: b"{}",
            };
            encode_frame(&mut log, &frame);
            fs::write(log_path(tmp.path(), first_seq), &log).unwrap();
            let p = crate::project::Project::open(
                1,
                tmp.path().to_path_buf(),
                false,
                1 << 20,
                false,
                &|| Ok(()),
            );
            let err = p.err().expect("the header is refused");
            assert!(err.is_corruption(), "{err}");
            let err = Sealed::open(tmp.path(), first_seq, false)
                .err()
                .expect("refused");
            assert!(err.is_corruption(), "{err}");
            fs::remove_file(log_path(tmp.path(), first_seq)).unwrap();
        }
    }
}
