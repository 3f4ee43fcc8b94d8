//! Store options and durability levels.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

use crate::store::Store;

/// How far an append has travelled when `append` returns.
///
/// Set per store with [`Options::durability`] and per call with
/// [`Store::append_with`]. Whatever the level, a batch is atomic: after any crash all of it is
/// there or none of it, and readers never see part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The batch is in the operating system's page cache before `append` returns: copied into
    /// room mapped ahead of the log's end (or, where room cannot be made, written with
    /// `pwrite(2)`).
    ///
    /// - **Process crash** (panic, `SIGKILL`, OOM kill): survives — the kernel holds the bytes.
    /// - **Power cut or kernel crash**: may be lost, together with every later batch of the
    ///   project, until the next [`Store::sync`], a `Sync` append to the same project, a segment
    ///   roll (which syncs the sealed segment), or a clean close. A project is also synced by
    ///   itself once 4 MiB are unsynced — on a background thread of the store, so the append
    ///   that crossed the mark does not wait — so a power cut typically loses at most the last
    ///   few MiB of each project.
    #[default]
    Written,
    /// The batch has been written and `fdatasync(2)`ed before `append` returns.
    ///
    /// - **Process crash**: survives.
    /// - **Power cut**: survives, provided the disk honours flushes.
    ///
    /// Concurrent `Sync` appends to one project share fsyncs (group commit): one thread syncs
    /// on behalf of every batch written before its sync began.
    Sync,
}

/// Default size at which a segment is sealed and a new one started: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default of [`Options::max_import_ahead`]: one day.
pub const DEFAULT_MAX_IMPORT_AHEAD: Duration = Duration::from_secs(86_400);
/// Default largest message, after whitespace removal: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Default number of projects whose files are kept open at once.
pub const DEFAULT_MAX_OPEN_PROJECTS: usize = 1024;
/// Default number of sealed segments kept memory-mapped at once.
pub const DEFAULT_MAX_MAPPED_SEGMENTS: usize = 1024;
/// Default number of spare project directories kept ready once projects are being created.
pub const DEFAULT_SPARE_PROJECTS: usize = 8;
/// The most spare project directories a store may keep ready.
pub const MAX_SPARE_PROJECTS: usize = 1024;

/// The largest message a store may be set to take ([`Options::max_message_bytes`]):
/// 16 MiB − 1, what a record's length field holds.
pub const MAX_MESSAGE_BYTES: usize = crate::record::MAX_PAYLOAD_BYTES;

/// The smallest allowed segment size: 4 KiB.
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;
/// The largest allowed segment size: 1 GiB.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// How to open a store: a builder with a terminal [`open`](Options::open).
///
/// ```
/// use activitylog::{Durability, Options};
/// let dir = tempfile::tempdir()?;
/// let store = Options::new()
///     .durability(Durability::Sync)
///     .segment_bytes(8 << 20)
///     .open(dir.path())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) durability: Durability,
    pub(crate) segment_bytes: Option<u64>,
    pub(crate) max_message_bytes: usize,
    pub(crate) read_only: bool,
    pub(crate) max_open_projects: usize,
    pub(crate) max_mapped_segments: usize,
    pub(crate) spare_projects: usize,
    pub(crate) max_import_ahead: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::default(),
            segment_bytes: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            read_only: false,
            max_open_projects: DEFAULT_MAX_OPEN_PROJECTS,
            max_mapped_segments: DEFAULT_MAX_MAPPED_SEGMENTS,
            spare_projects: DEFAULT_SPARE_PROJECTS,
            max_import_ahead: DEFAULT_MAX_IMPORT_AHEAD,
        }
    }
}

impl Options {
    /// The defaults: [`Durability::Written`], 64 MiB segments, 1 MiB messages, read-write.
    pub fn new() -> Self {
        Self::default()
    }

    /// The durability of [`Store::append`]. Default: [`Durability::Written`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The size in bytes at which the active segment is sealed, for a store this call creates.
    ///
    /// Default: [`DEFAULT_SEGMENT_BYTES`] (64 MiB); allowed [`MIN_SEGMENT_BYTES`] ..=
    /// [`MAX_SEGMENT_BYTES`]. The size is recorded in the store when it is created; opening an
    /// existing store keeps the recorded size and ignores this setting. A size outside the
    /// allowed range is refused ([`Error::InvalidOptions`]) either way: it is a caller's mistake,
    /// whether or not the store exists yet.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = Some(bytes);
        self
    }

    /// The largest message accepted, in bytes after whitespace removal. Default: 1 MiB
    /// ([`DEFAULT_MAX_MESSAGE_BYTES`]); at most 16 MiB − 1.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// How far ahead of the store's clock (the wall clock, unless a later stamp was stored) an
    /// imported `_ts` may be. Default: one day ([`DEFAULT_MAX_IMPORT_AHEAD`]), room for the
    /// clocks of the machines an archive passed through to disagree a little. A `_ts` further
    /// ahead is a bad line: stored, it would move the store's clock there, and every later
    /// append's stamp. Raise it to restore the export of a store whose clock ran ahead (whose
    /// own imports took it further, one day at a time, say), knowing that it does move this
    /// store's clock.
    pub fn max_import_ahead(mut self, ahead: Duration) -> Self {
        self.max_import_ahead = ahead;
        self
    }

    /// Opens without the write lock, so it works while another process writes the store.
    /// Default: `false`.
    ///
    /// A read-only store sees what the writer appended after it first touched a project once
    /// [`Store::refresh`] is called (or the store is reopened).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How many projects keep their active segment open at once; the least recently used are
    /// closed beyond this. A close syncs the project, and an open reads its files (and after a
    /// crash recovers and syncs them); neither holds the store's map of open projects, so
    /// lookups of other projects go on, while lookups of that project (and, for a close,
    /// [`Store::sync`](crate::Store::sync)) wait for it. The closes an eviction makes are made by
    /// the call whose open went past the limit, before it returns. Default:
    /// [`DEFAULT_MAX_OPEN_PROJECTS`] (1024).
    pub fn max_open_projects(mut self, n: usize) -> Self {
        self.max_open_projects = n;
        self
    }

    /// How many sealed segments stay memory-mapped at once; the least recently used are
    /// unmapped beyond this (readers holding one keep it alive). Default:
    /// [`DEFAULT_MAX_MAPPED_SEGMENTS`] (1024).
    pub fn max_mapped_segments(mut self, n: usize) -> Self {
        self.max_mapped_segments = n;
        self
    }

    /// How many spare project directories a background thread keeps ready, once the store has
    /// created a project. Default: [`DEFAULT_SPARE_PROJECTS`] (8); 0 turns them off; at most
    /// [`MAX_SPARE_PROJECTS`].
    ///
    /// Creating a project renames a spare into place instead of making a directory and two
    /// files. With [`Durability::Sync`] as the store's durability, spares are made synced, so
    /// a new project's first durable append waits for one sync, its log's, instead of three
    /// (its log, its directory, the directory of projects) — on a file system known to keep a
    /// rename whole across a power cut (ext3/4 with a journal, XFS, btrfs and tmpfs); elsewhere,
    /// for two (its log, the directory of projects). Otherwise spares are made without a sync and spare
    /// the append the file-system work of making the project. A spare is a directory of about
    /// 8 KiB on disk holding no message; the spares waiting are removed when the store closes.
    pub fn spare_projects(mut self, n: usize) -> Self {
        self.spare_projects = n;
        self
    }

    /// Creates or opens the store in `dir`. A new store is made only in a new or empty folder
    /// (or in what a first open cut short left): a folder holding anything else is refused with
    /// [`Error::ForeignFolder`], and nothing is written to it.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Store> {
        self.check()?;
        Store::open_with(dir.as_ref(), self)
    }

    fn check(&self) -> Result<()> {
        if let Some(bytes) = self.segment_bytes {
            if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&bytes) {
                return Err(Error::InvalidOptions {
                    reason: format!(
                        "segment size {bytes} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES} bytes"
                    ),
                });
            }
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > MAX_MESSAGE_BYTES {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "message limit {} is outside 1..={MAX_MESSAGE_BYTES} bytes",
                    self.max_message_bytes
                ),
            });
        }
        if self.spare_projects > MAX_SPARE_PROJECTS {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "{} spare project directories is more than {MAX_SPARE_PROJECTS}",
                    self.spare_projects
                ),
            });
        }
        if self.max_open_projects == 0 || self.max_mapped_segments == 0 {
            return Err(Error::InvalidOptions {
                reason: "open-project and mapped-segment limits must be at least 1".to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment size outside the allowed range is refused before anything is made, and
    /// refused for an existing store too, whose recorded size a valid one leaves alone.
    #[test]
    fn segment_sizes_out_of_range_are_refused_and_valid_ones_ignored_on_an_existing_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        for bytes in [0, MIN_SEGMENT_BYTES - 1, MAX_SEGMENT_BYTES + 1] {
            let err = Options::new().segment_bytes(bytes).open(&dir).err();
            assert!(matches!(err, Some(Error::InvalidOptions { .. })), "{err:?}");
            assert!(
                !dir.exists(),
                "{bytes}: the refused open made the directory"
            );
        }
        drop(Options::new().segment_bytes(8 << 20).open(&dir).unwrap());
        let err = Options::new()
            .segment_bytes(MAX_SEGMENT_BYTES + 1)
            .open(&dir)
            .err();
        assert!(matches!(err, Some(Error::InvalidOptions { .. })), "{err:?}");
        let store = Options::new()
            .segment_bytes(MIN_SEGMENT_BYTES)
            .open(&dir)
            .unwrap();
        assert_eq!(store.segment_bytes(), 8 << 20);
    }
}
