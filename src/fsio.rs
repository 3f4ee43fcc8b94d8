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
