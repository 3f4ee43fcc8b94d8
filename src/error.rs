//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The most characters of a caller's value an error sentence repeats.
const QUOTED_CHARS: usize = 40;

/// `text` as an error sentence repeats it: quoted with its newlines and other control
/// characters escaped (Rust's `{:?}`), and cut after [`QUOTED_CHARS`] characters (marked
/// `...`), so a hostile value can neither break the sentence into lines nor make it long.
pub(crate) fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// `text` (JSON, say) as an error sentence repeats it without quotes: control characters
/// escaped as `{:?}` would, the rest as it is, cut after [`QUOTED_CHARS`] characters (marked
/// `...`).
pub(crate) fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == QUOTED_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// A specialised `Result` for activitylog operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
///
/// Variants carry structure, not strings: I/O errors keep the path they touched, corruption keeps
/// the file and byte offset, limits keep the size and the limit. `Display` is one plain sentence.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error while touching `path`.
    Io {
        /// What the engine was doing, e.g. `"reading"`, `"syncing"`.
        op: &'static str,
        /// The file or directory the operation touched.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another process holds the store open for writing.
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// The directory holds no store (its `STORE` file is missing), and the open was read-only.
    NotAStore {
        /// The directory.
        dir: PathBuf,
    },
    /// The store was opened read-only and a write was attempted.
    ReadOnly,
    /// An earlier fsync of this project's log failed (in an append, a sync, or a close); the
    /// log refuses writes, and [`Store::sync`](crate::Store::sync) fails, until the store is
    /// reopened, because data the kernel already dropped cannot be claimed durable.
    Poisoned {
        /// The project whose log is poisoned.
        project: u64,
    },
    /// A message is not a JSON object.
    InvalidMessage {
        /// Zero-based position of the message in the batch.
        index: usize,
        /// The 1-based line of the input it came from, for batches read from JSON Lines.
        line: Option<usize>,
        /// What is wrong with it.
        reason: String,
    },
    /// A message is larger than [`Options::max_message_bytes`](crate::Options::max_message_bytes).
    TooLarge {
        /// Zero-based position of the message in the batch.
        index: usize,
        /// The 1-based line of the input it came from, for batches read from JSON Lines.
        line: Option<usize>,
        /// The message's size in bytes (after whitespace removal).
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A batch holds more bytes or messages than one append may carry.
    BatchTooLarge {
        /// What the batch holds (bytes or messages, as `unit` says).
        size: u64,
        /// The limit.
        limit: u64,
        /// `"bytes"` or `"messages"`.
        unit: &'static str,
    },
    /// Bytes on disk that do not decode: a record, index or header that fails its checks.
    ///
    /// The bad bytes are never returned as data.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage within the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Retention removed records an oldest-first read was about to reach, after it had begun:
    /// the read goes on after them, and this error stands where they were, so that the gap is
    /// never silent.
    RemovedWhileRead {
        /// The project.
        project: u64,
        /// The first record removed.
        first: u64,
        /// The record the read goes on with.
        next: u64,
    },
    /// A file was written by an unknown format version.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A query, filter or meta field is malformed.
    InvalidQuery {
        /// What is wrong.
        reason: String,
    },
    /// A writable open was asked to make a new store in a folder that holds something a store
    /// does not (a typo in a path, say): a new store is made only in an empty or new folder,
    /// and nothing was written.
    ForeignFolder {
        /// The folder.
        dir: PathBuf,
        /// One entry of it that no store has.
        entry: String,
    },
    /// An option is out of range.
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// An import was stopped by its caller (see
    /// [`Store::import_json_lines_from_until`](crate::Store::import_json_lines_from_until))
    /// before it stored anything of its input; inside [`Error::ImportInterrupted`], after it
    /// stored what that says.
    Stopped,
    /// A read inside [`without_blocking`](crate::without_blocking) would have had to wait for
    /// the disk (or had copied its share of memory): run it where it may block.
    WouldBlock,
    /// An import failed (an I/O error, say) after part of its input was stored: for each
    /// project, its oldest messages in the input, in whole batches.
    ImportInterrupted {
        /// What was stored before the failure.
        stored: Box<crate::Imported>,
        /// The failure.
        source: Box<Error>,
    },
}

impl Error {
    /// An I/O error that keeps the path it touched.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A corruption report for `path` at `offset`.
    pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// Names the input line of a rejected message, given the line of each message.
    pub(crate) fn at_line(mut self, line_of: impl Fn(usize) -> usize) -> Self {
        if let Error::InvalidMessage { index, line, .. } | Error::TooLarge { index, line, .. } =
            &mut self
        {
            *line = Some(line_of(*index));
        }
        self
    }

    /// Whether this error reports damaged bytes on disk.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "{op} {} failed: {source}", path.display())
            }
            Error::ForeignFolder { dir, entry } => write!(
                f,
                "{} holds {}, which is not part of an activitylog store: a new store is made \
                 only in an empty or new folder",
                dir.display(),
                quoted(entry)
            ),
            Error::Locked { dir } => write!(
                f,
                "the store {} is locked by another process that has it open for writing",
                dir.display()
            ),
            Error::NotAStore { dir } => {
                write!(f, "{} is not an activitylog store", dir.display())
            }
            Error::ReadOnly => write!(f, "the store is open read-only and cannot be written"),
            Error::Poisoned { project } => write!(
                f,
                "project {project} refuses writes because an earlier fsync failed; reopen the store"
            ),
            Error::InvalidMessage {
                index,
                line,
                reason,
            } => match line {
                Some(line) => write!(f, "line {line} is invalid: {reason}"),
                None => write!(f, "message {} is invalid: {reason}", index + 1),
            },
            Error::TooLarge {
                index,
                line,
                size,
                limit,
            } => match line {
                Some(line) => write!(
                    f,
                    "line {line} is {size} bytes, over the limit of {limit} bytes"
                ),
                None => write!(
                    f,
                    "message {} is {size} bytes, over the limit of {limit} bytes",
                    index + 1
                ),
            },
            Error::BatchTooLarge { size, limit, unit } => {
                write!(
                    f,
                    "the batch holds {size} {unit}, over the limit of {limit} {unit}"
                )
            }
            Error::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{} is corrupt at byte {offset}: {reason}",
                path.display()
            ),
            Error::RemovedWhileRead {
                project,
                first,
                next,
            } => write!(
                f,
                "records {first}..{next} of project {project} were removed by retention while \
                 this oldest-first read was under way; it goes on with record {next}"
            ),
            Error::UnsupportedVersion { path, found } => write!(
                f,
                "{} has format version {found}, which this build does not read",
                path.display()
            ),
            Error::InvalidQuery { reason } => f.write_str(reason),
            Error::InvalidOptions { reason } => write!(f, "invalid options: {reason}"),
            Error::Stopped => f.write_str("the import was stopped before it finished"),
            Error::WouldBlock => f.write_str("the read would have had to wait for the disk"),
            Error::ImportInterrupted { stored, source } => write!(
                f,
                "{source}, after {} of the input's messages were stored (each project's oldest)",
                stored.messages()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::ImportInterrupted { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
