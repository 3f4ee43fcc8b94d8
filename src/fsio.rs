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
/// systems make it: ext3/4, XFS, btrfs (and tmpfs, which a power cut empties). Wherever the
/// answer is unknown, it is taken as no — ext2 included, whose magic number ext3/4 share (told
/// apart by the mount's type in `/proc/self/mountinfo`): without a journal, writeback may keep
/// a rename's removal of the old name and not its new one. (An ext4 made without a journal,
/// rare, passes for one with.)
pub(crate) fn renames_are_atomic(dir: &Path) -> bool {
    match fs_kind(dir) {
        Some(XFS | BTRFS | TMPFS) => true,
        Some(EXT) => mount_type(dir).is_some_and(|t| t == "ext3" || t == "ext4"),
        _ => false,
    }
}

/// The type of the file system mounted where `dir` is, from `/proc/self/mountinfo`: that of
/// the longest mount point holding it.
fn mount_type(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|line| {
            // `id parent major:minor root mount-point options [optional…] - type source …`
            let (left, right) = line.split_once(" - ")?;
            let point = unescape_mount_path(left.split(' ').nth(4)?);
            let kind = right.split(' ').next()?;
            dir.starts_with(&point).then(|| (point, kind.to_owned()))
        })
        .max_by_key(|(point, _)| point.as_os_str().len())
        .map(|(_, kind)| kind)
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
pub(crate) fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64);
        write_at(file, &ZEROS[..n as usize], at)?;
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

/// Makes the creations, renames and removals of entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    if let Some(r) = sim::recorder_for_path(dir) {
        return r.sync_dir(dir);
    }
    File::open(dir).and_then(|d| d.sync_all())
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
    fn renames_are_atomic_on_tmpfs_and_not_where_unknown() {
        if Path::new("/dev/shm").is_dir() && cfg!(target_os = "linux") {
            assert!(renames_are_atomic(Path::new("/dev/shm")));
        }
        assert!(!renames_are_atomic(Path::new("/no/such/directory")));
        assert!(!renames_are_atomic(Path::new("/proc")));
    }
}
