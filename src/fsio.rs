//! Every write, truncation and sync the engine makes goes through here.
//!
//! In release and ordinary builds these are the plain `std` calls. Test builds of the library
//! can attach a `sim::Recorder` to a directory: it sees every write and sync made under that
//! directory, so the power-loss suite can build the disk images a power cut could leave behind
//! (see `sim`), and the fault suite can make the N-th write or sync fail.
//!
//! Namespace changes (creating, renaming and removing files) are not routed here: they become
//! durable only when their directory is synced with [`sync_dir`], and the recorder reads the
//! directories themselves at each crash point.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::segment::Room;

#[cfg(test)]
pub(crate) mod sim;

#[cfg(test)]
mod power_loss_tests;

/// Reads the regular file at `path`, at most `max + 1` bytes of it: a result longer than `max`
/// says the file holds more than `max` (what is past it is left unread). For the engine's own
/// small files and indexes, whose size it bounds: a damaged or hostile one (a sparse file of
/// gigabytes, a link to `/dev/zero`) must cost no more memory than a sound one. Anything but a
/// regular file (a FIFO, which is then not waited on; a device; a directory) is an error of
/// kind `InvalidData`.
pub(crate) fn read_at_most(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular(path, false)?;
    let meta = file.metadata()?;
    let mut buf = Vec::with_capacity(meta.len().min(max.saturating_add(1)) as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Opens the regular file at `path` to read (and to write, when `write`). Anything else is an
/// error of kind `InvalidData`, found without waiting: a FIFO in a store's place of a file would
/// otherwise hold the open (or the first read) until some process wrote to it.
pub(crate) fn open_regular(path: &Path, write: bool) -> io::Result<File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    // Back to blocking, as any file opened without the flag.
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    Ok(file)
}

/// Writes all of `buf` at `offset`.
pub(crate) fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(test)]
    if let Some(r) = sim::recorder_for_file(file) {
        return r.write_at(file, buf, offset);
    }
    file.write_all_at(buf, offset)
}

/// Writes all of `buf` at `offset` through the writer's [`Room`], which must hold that range: a
/// copy into the mapped page cache (recorded as a write by a test's recorder, which makes it).
pub(crate) fn write_in_room(file: &File, room: &Room, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(test)]
    if let Some(r) = sim::recorder_for_file(file) {
        return r.write_at(file, buf, offset);
    }
    let _ = file;
    room.copy_in(buf, offset);
    Ok(())
}

/// Whether appends may copy into [`Room`] in files under `dir`: only on file systems known to
/// write a page in place once its zeros were written — ext2/3/4, XFS and tmpfs. On
/// copy-on-write ones (btrfs, ZFS, bcachefs) a later copy into a page that was flushed may need
/// new blocks, and a full disk would then kill the writer with `SIGBUS` instead of failing an
/// append; there, and wherever the answer is unknown, appends write with `pwrite`.
pub(crate) fn room_is_safe(dir: &Path) -> bool {
    matches!(fs_kind(dir), Some(EXT | XFS | TMPFS))
}

/// Whether a rename in a directory under `dir` is atomic across a power cut — after it, the
/// entry is under its old name or its new one, never both or neither — as journaling file
/// systems make it: ext3/4 with a journal, XFS, btrfs (and tmpfs, which a power cut empties).
/// Wherever the answer is unknown, it is taken as no. ext2, and an ext3/4 made or mounted
/// without a journal (as some virtual machines' root file systems are), share ext4's magic
/// number: the journal is told by the kernel's `/sys/fs/ext4/<device>/journal_task` (`<none>`
/// without one) or, on kernels without that file, by `/proc/fs/jbd2/<device>-…`. Without a
/// journal, writeback may keep a rename's removal of the old name and not its new one.
pub(crate) fn renames_are_atomic(dir: &Path) -> bool {
    // Under a recorder, renames are what it models, whatever the scratch file system is.
    #[cfg(test)]
    if let Some(r) = sim::recorder_for_path(dir) {
        return r.atomic_renames();
    }
    match fs_kind(dir) {
        Some(XFS | BTRFS | TMPFS) => true,
        Some(EXT) => mount_of(dir).is_some_and(|m| {
            (m.kind == "ext3" || m.kind == "ext4") && ext_journaled(&m.device).unwrap_or(false)
        }),
        _ => false,
    }
}

/// Whether the ext3/4 file system on the block device numbered `device` (`major:minor`) keeps
/// a journal; `None` if the kernel does not say.
fn ext_journaled(device: &str) -> Option<bool> {
    let name = block_device_name(device)?;
    if let Ok(task) = std::fs::read_to_string(format!("/sys/fs/ext4/{name}/journal_task")) {
        return Some(journal_task_names_a_thread(&task));
    }
    jbd2_journals(&name)
}

/// The kernel's name (`vda`, `dm-0`…) of the block device numbered `device` (`major:minor`).
fn block_device_name(device: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/dev/block/{device}")).ok()?;
    Some(link.file_name()?.to_str()?.to_owned())
}

/// Whether `/proc/fs/jbd2` lists a journal of the block device `name` (its entries are
/// `<device>-<journal inode>`); `None` if it cannot be read.
fn jbd2_journals(name: &str) -> Option<bool> {
    let prefix = format!("{name}-");
    let journals = std::fs::read_dir("/proc/fs/jbd2").ok()?;
    Some(journals.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
    }))
}

/// Whether ext4's `journal_task` attribute names the journal's thread (a process id) rather
/// than saying `<none>`.
fn journal_task_names_a_thread(task: &str) -> bool {
    let task = task.trim();
    !task.is_empty() && task.bytes().all(|b| b.is_ascii_digit())
}

/// A mount, from `/proc/self/mountinfo`.
struct Mount {
    /// The file system's type (`ext4`, `xfs`…).
    kind: String,
    /// Its device's numbers, `major:minor`.
    device: String,
}

/// The mount holding `dir`, from `/proc/self/mountinfo`: the longest mount point holding it.
fn mount_of(dir: &Path) -> Option<Mount> {
    let dir = dir.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|line| {
            // `id parent major:minor root mount-point options [optional…] - type source …`
            let (left, right) = line.split_once(" - ")?;
            let mut fields = left.split(' ');
            let device = fields.nth(2)?;
            let point = unescape_mount_path(fields.nth(1)?);
            let kind = right.split(' ').next()?;
            dir.starts_with(&point).then(|| {
                (
                    point,
                    Mount {
                        kind: kind.to_owned(),
                        device: device.to_owned(),
                    },
                )
            })
        })
        .max_by_key(|(point, _)| point.as_os_str().len())
        .map(|(_, mount)| mount)
}

/// A mount point as `/proc/self/mountinfo` writes it: space, tab, newline and backslash as
/// three octal digits after a backslash.
fn unescape_mount_path(s: &str) -> std::path::PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |v, &b| v * 8 + u32::from(b - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out).into()
}

const EXT: u64 = 0xEF53;
const XFS: u64 = 0x5846_5342;
const BTRFS: u64 = 0x9123_683E;
const TMPFS: u64 = 0x0102_1994;

/// The magic number of the file system holding `dir` (Linux only).
fn fs_kind(dir: &Path) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        rustix::fs::statfs(dir).ok().map(|s| {
            #[allow(
                clippy::unnecessary_cast,
                reason = "the field's type differs by target"
            )]
            let kind = (s.f_type as u64) & 0xFFFF_FFFF;
            kind
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// Writes zeros over `from..to` of the file (room ahead of a log's end, see [`Room`]): through
/// [`write_at`], so the page cache holds the pages and the file system has reserved their
/// blocks before anything is copied into them.
///
/// The zeros go in one write where they can (up to 512 KiB): Linux's page cache (6.x, on ext4
/// and XFS) makes a write's pages into folios as large as its length and alignment allow, and
/// a map of them then takes a page fault per folio, not per 64 KiB. Written 64 KiB at a time,
/// a 49 MB log took 755 page faults to read through a new map; in the 256 KiB folios that a big
/// segment's rooms make (`project::ROOM_MAX_BYTES`), 196.
pub(crate) fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    // Allocated zeroed and never written: usually mapped anew, so the kernel reads the shared
    // zero page (should the allocator serve it from its heap, 512 KiB once).
    static ZEROS: std::sync::OnceLock<Box<[u8]>> = std::sync::OnceLock::new();
    let zeros = ZEROS.get_or_init(|| vec![0; 512 << 10].into_boxed_slice());
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64);
        write_at(file, &zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Sets the file's length (truncating or extending with zeros).
pub(crate) fn set_len(file: &File, len: u64) -> io::Result<()> {
    #[cfg(test)]
    if let Some(r) = sim::recorder_for_file(file) {
        return r.set_len(file, len);
    }
    file.set_len(len)
}

/// Makes the file's data (and the metadata needed to read it back, such as its length) durable.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    #[cfg(test)]
    if let Some(r) = sim::recorder_for_file(file) {
        return r.sync_file(file);
    }
    file.sync_data()
}

/// How a directory sync failed ([`sync_dir`]).
#[derive(Debug)]
pub(crate) enum DirSyncError {
    /// The directory did not open (out of file handles, say): no sync started, so nothing was
    /// lost and a later sync can do it.
    Open(io::Error),
    /// The fsync itself failed.
    Sync(io::Error),
}

/// Makes the creations, renames and removals of entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DirSyncError> {
    #[cfg(test)]
    if let Some(r) = sim::recorder_for_path(dir) {
        return r.sync_dir(dir);
    }
    let handle = File::open(dir).map_err(DirSyncError::Open)?;
    handle.sync_all().map_err(DirSyncError::Sync)
}

#[cfg(test)]
mod tests {
    use super::{renames_are_atomic, room_is_safe};
    use std::path::Path;

    #[test]
    fn room_is_safe_on_tmpfs_and_not_where_unknown() {
        if Path::new("/dev/shm").is_dir() && cfg!(target_os = "linux") {
            assert!(room_is_safe(Path::new("/dev/shm")));
        }
        assert!(!room_is_safe(Path::new("/no/such/directory")));
        // procfs is none of the allowed file systems.
        assert!(!room_is_safe(Path::new("/proc")));
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(
            super::unescape_mount_path(r"/mnt/my\040disk\134x\09"),
            Path::new("/mnt/my disk\\x\\09")
        );
        // Out of a byte's range: truncated (0o777 = 0x1FF), no overflow.
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            super::unescape_mount_path(r"\777").as_os_str().as_bytes(),
            [0xFF]
        );
    }

    #[test]
    fn journal_task_says_whether_there_is_a_journal() {
        assert!(super::journal_task_names_a_thread("1234\n"));
        assert!(!super::journal_task_names_a_thread("<none>\n"));
        assert!(!super::journal_task_names_a_thread(""));
    }

    /// On ext3/4, renames count as atomic exactly when the kernel runs a journal for the file
    /// system (a `/proc/fs/jbd2` entry for its device): an ext4 without one does not pass.
    #[test]
    fn renames_on_ext4_are_atomic_only_with_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mount) = super::mount_of(dir.path()) else {
            return;
        };
        if mount.kind != "ext4" && mount.kind != "ext3" {
            return;
        }
        let Some(name) = super::block_device_name(&mount.device) else {
            return;
        };
        // Told here by the journals the kernel lists, there by ext4's own attribute first.
        let journaled = super::jbd2_journals(&name).unwrap_or(false);
        assert_eq!(renames_are_atomic(dir.path()), journaled, "{name}");
    }

    #[test]
    fn renames_are_atomic_on_tmpfs_and_not_where_unknown() {
        if Path::new("/dev/shm").is_dir() && cfg!(target_os = "linux") {
            assert!(renames_are_atomic(Path::new("/dev/shm")));
        }
        assert!(!renames_are_atomic(Path::new("/no/such/directory")));
        assert!(!renames_are_atomic(Path::new("/proc")));
    }
}
