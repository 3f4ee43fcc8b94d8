//! # activitylog
//!
//! An embedded, append-only log engine for activity events: every project (a `u64` id) has its
//! own log of JSON-object messages; appends are atomic batches; reads come back newest first at
//! a cost proportional to what is read.
//!
//! ```
//! use activitylog::{Durability, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! store.append(1111111, [r#"{"event": "job:started", "job": "1111111/3/4"}"#])?;
//! let batch = [r#"{"event":"job:completed"}"#, r#"{"event":"job:cancelled"}"#];
//! let appended = store.append_with(1111111, batch, Durability::Sync)?;
//! assert_eq!(appended.seqs(), 2..4);
//!
//! let newest: Vec<String> = store
//!     .newest_first(1111111)?
//!     .take(2)
//!     .map(|m| m.map(|m| m.into_json()))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(newest, [r#"{"event":"job:cancelled"}"#, r#"{"event":"job:completed"}"#]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What it is not
//! Not a database: no updates, no deletes but whole-segment retention, no secondary indexes.
//! Messages are stored as given (minus insignificant whitespace); JSON is checked once, on
//! append, and never re-serialised.
//!
//! ## Durability
//! [`Durability::Written`] (the default) returns once the batch is in the operating system's
//! page cache (copied into room mapped ahead of the log's end without a system call; written
//! with `pwrite` where no room is made, as on copy-on-write file systems, or a big batch does
//! not fit it):
//! it survives a crash of the process, not a power cut (a project is synced in the
//! background once 4 MiB are unsynced, so a power cut typically costs at most its last few MiB).
//! [`Durability::Sync`] returns once
//! the batch is fsynced; concurrent `Sync` appends to a project share fsyncs (group commit).
//! [`Store::sync`] makes everything so far durable. A failed fsync poisons that project's log
//! ([`Error::Poisoned`]) until the store is reopened. After a crash, a torn tail of the newest
//! segment is cut back to the last whole batch on open; damage anywhere else is reported as
//! [`Error::Corrupt`] with file and offset, and the records around it stay readable.
//!
//! ## Concurrency
//! [`Store`] is `Clone + Send + Sync`. Appends to different projects run in parallel, appends to
//! one project are serialised, and readers work from snapshots without blocking writers. One
//! process writes a store at a time (an exclusive lock; a second gets [`Error::Locked`]); any
//! number may open it read-only ([`Options::read_only`]) and call [`Store::refresh`] to see
//! newer appends. A writable store may run two background threads: one syncs `Written` projects
//! every 4 MiB, one keeps spare project directories ready once projects are being created
//! ([`Options::spare_projects`]); both end when the store is dropped. The store closes (its
//! projects synced, its lock released) once the last [`Store`] handle *and* the last iterator
//! made from it ([`NewestFirst`], [`Merged`]) are dropped: an iterator kept after its store is
//! dropped keeps the store open, and a new writable open of it meanwhile gets
//! [`Error::Locked`].
//!
//! ## In an async server
//! Reads may wait for the disk, so a server on an async runtime runs them where blocking is
//! fine (tokio's `spawn_blocking`). But the newest pages of the projects it writes are in
//! memory, and handing such a read to another thread costs more than the read:
//! [`without_blocking`] runs a read at once if it needs nothing but memory, and refuses it with
//! [`Error::WouldBlock`] otherwise, to be run elsewhere; so with a small `Written` append to an
//! open project (a copy into memory), refused having stored nothing. [`http`]'s GETs and POSTs
//! do so.
//!
//! ## Ordering and time
//! Sequence numbers start at 1 per project and have no gaps. Each append call takes a stamp in
//! µs since the epoch, unique within the store and strictly increasing — across projects, and
//! across restarts even if the wall clock steps back. [`Message::timestamp_ms`] is the stamp in
//! milliseconds, the Activity API's `_ts`.
//!
//! ## Format
//! Each project is a directory of segments; a segment is a log file of checksummed frames with
//! a length trailer (walkable backwards) plus a fixed-width index. Sealed segments are read
//! through memory maps. The byte layout is in `docs/format.md`.
//!
//! ## Errors
//! Every fallible call returns [`Result`], whose [`Error`] is one `#[non_exhaustive]` enum with
//! structure, not strings: I/O errors keep the path they touched ([`Error::Io`]); bytes on disk
//! that do not decode are [`Error::Corrupt`] with the file and byte offset, or
//! [`Error::UnsupportedVersion`] ([`Error::is_corruption`] is true for both); a rejected message
//! names its place in the batch and its input line ([`Error::InvalidMessage`],
//! [`Error::TooLarge`]); [`Error::BatchTooLarge`], [`Error::Locked`], [`Error::ReadOnly`] and
//! [`Error::Poisoned`] say why a write was refused. `Display` is one plain sentence.
//!
//! ## Features
//! - `cli` (default): the `activitylog` command line tool.
//! - `server` (default): [`http`], the Activity API as an axum router, and `activitylog serve`.
//!
//! With `--no-default-features` only the library and its small dependencies are built.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod blocking;
mod clock;
mod dirsync;
mod error;
mod filter;
mod fsio;
/// Entry points for the fuzz targets (`fuzz/`) and the corpus-replay test
/// (`tests/fuzz_corpora.rs`); not a stable API.
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "server")]
pub mod http;
mod import;
mod index;
mod json;
mod meta;
mod options;
mod project;
mod query;
mod reader;
mod record;
mod retention;
mod scan;
mod segment;
mod spares;
mod store;
mod verify;

pub use blocking::without_blocking;
pub use error::{Error, Result};
pub use filter::{Filter, Op};
pub use import::{ImportTarget, Imported};
pub use meta::Meta;
pub use options::{
    Durability, Options, DEFAULT_MAX_IMPORT_AHEAD, DEFAULT_MAX_MAPPED_SEGMENTS,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_OPEN_PROJECTS, DEFAULT_SEGMENT_BYTES,
    DEFAULT_SPARE_PROJECTS, MAX_MESSAGE_BYTES, MAX_SEGMENT_BYTES, MAX_SPARE_PROJECTS,
    MIN_SEGMENT_BYTES,
};
pub use project::{Appended, FIRST_SEQ};
pub use query::{Merged, Query};
pub use reader::{Message, MessageRef, NewestFirst};
pub use retention::{Retained, Retention};
pub use store::{ProjectStats, Store, MAX_BATCH_BYTES};
pub use verify::{verify, Problem, Verified};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
