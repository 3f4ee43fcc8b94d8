//! Importing JSON Lines archives: messages keep their history (`_ts`), and a file with a bad
//! line imports nothing.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::error::{Error, Result};
use crate::json;
use crate::options::Durability;
#[cfg(doc)]
use crate::options::Options;
use crate::record::{Batch, MAX_STAMP_DELTA_US};
use crate::store::Store;

/// Where imported messages go.
#[derive(Debug, Clone, Copy)]
pub enum ImportTarget<'a> {
    /// Every message goes to this project.
    Project(u64),
    /// Each message goes to the project named by this top-level field (an unsigned integer),
    /// which stays in the message. It cannot be `_ts`, which carries the message's time.
    Field(&'a str),
}

/// What an import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Messages imported per project.
    pub per_project: BTreeMap<u64, u64>,
    /// Bytes of messages imported (compact JSON, `_ts` removed).
    pub bytes: u64,
    /// Messages stored (in [`Error::ImportInterrupted`], before the import stopped) whose
    /// `_ts` was older than that of the line before them in their project, or
    /// than the project's newest message in the store (by the millisecond, as `_ts` has it),
    /// and which were so stamped with that time: an import expects each project's lines oldest
    /// first (as `export` writes them) and newer than what the project holds, and an input
    /// newest first, files given out of order or an archive imported twice raise nearly all.
    pub raised: u64,
}

impl Imported {
    /// Messages imported in all.
    pub fn messages(&self) -> u64 {
        self.per_project.values().sum()
    }
}

/// The name of the meta field that carries a message's append time.
const TS_FIELD: &str = "_ts";

impl Store {
    /// Imports JSON Lines (as [`append_json_lines`](Self::append_json_lines) reads them),
    /// oldest first, keeping history: a top-level `_ts` field (milliseconds since the epoch, a
    /// whole number or with up to three decimals, as
    /// [`Message::write_archive_line`](crate::Message::write_archive_line) and `export` write
    /// it) becomes the message's append time and is removed from the stored message; messages without one are stamped now, by the store's clock (so they come
    /// after every message stored before). A `_ts` more than a day ahead of the store's clock
    /// (which is the wall clock unless a stamp ahead of it was stored) is a bad line: it would
    /// move the store's clock into the future.
    ///
    /// Every line is checked before anything is stored, so a bad line (named in the error)
    /// imports nothing. A line longer than twice the store's message limit and 64 KiB is bad
    /// whatever it holds (and an import from a reader does not read it to its end). A failure while storing (an I/O error, say) after some batches were
    /// stored is [`Error::ImportInterrupted`], which says what was. Times never go backwards within a project: a `_ts` older than the
    /// project's newest message (or than the line before) is raised to it, and counted in
    /// [`Imported::raised`]. A project's
    /// messages are appended in batches; a crash in the middle of an import can leave a prefix
    /// of each project's share, never a part of a batch.
    pub fn import_json_lines(
        &self,
        input: &[u8],
        target: ImportTarget<'_>,
        durability: Durability,
    ) -> Result<Imported> {
        // Inside `without_blocking`, refused before anything: an import stores batch after
        // batch, so one refused part way would have stored some.
        crate::blocking::check()?;
        let check = self.import_check(target)?;
        let threads = if input.len() < PARALLEL_BYTES {
            1
        } else {
            checking_threads()
        };
        // Parts end at line ends.
        let mut ranges = Vec::with_capacity(threads);
        let mut start = 0;
        for k in 1..=threads {
            let mut end = input.len() / threads * k;
            if k == threads || end <= start {
                end = input.len().max(start);
            } else {
                end = memchr::memchr(b'\n', &input[end..]).map_or(input.len(), |i| end + i + 1);
            }
            if end > start || ranges.is_empty() {
                ranges.push(start..end);
                start = end;
            }
        }
        let mut arenas = vec![Vec::new(); ranges.len()];
        let jobs = ranges.iter().zip(arenas.iter_mut());
        let results: Vec<std::result::Result<Located, Bad>> = if jobs.len() == 1 {
            jobs.map(|(range, arena)| check_part(&input[range.clone()], &check, arena))
                .collect()
        } else {
            std::thread::scope(|scope| {
                let check = &check;
                let handles: Vec<_> = jobs
                    .map(|(range, arena)| {
                        scope.spawn(move || check_part(&input[range.clone()], check, arena))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        let located = first_bad_line(results, &check)?;
        let sources: Vec<(&[u8], &[u8])> = ranges
            .iter()
            .zip(&arenas)
            .map(|(range, arena)| (&input[range.clone()], &arena[..]))
            .collect();
        self.store_checked(located, &sources, target, durability, &|| false)
    }

    /// Imports JSON Lines read from `input` as [`import_json_lines`](Self::import_json_lines)
    /// does, checking what was read while reading on. A read error is [`Error::Io`] naming
    /// `name`, and imports nothing.
    pub fn import_json_lines_from(
        &self,
        input: impl Read,
        name: &Path,
        target: ImportTarget<'_>,
        durability: Durability,
    ) -> Result<Imported> {
        self.import_in_chunks(input, name, target, durability, READ_CHUNK_BYTES)
    }

    /// Imports as [`import_json_lines_from`](Self::import_json_lines_from) does, stopping early
    /// once `stop` is set (by a signal handler, say): while reading, it stops before the next
    /// piece of about 8 MiB and stores nothing ([`Error::Stopped`]); while storing, it stops
    /// before the next batch, and what it stored is whole batches, each project's oldest
    /// messages, counted in [`Error::ImportInterrupted`] (whose source is [`Error::Stopped`]).
    /// A read that waits on a pipe or terminal is not cut short: the stop comes when it returns.
    pub fn import_json_lines_from_until(
        &self,
        input: impl Read,
        name: &Path,
        target: ImportTarget<'_>,
        durability: Durability,
        stop: &AtomicBool,
    ) -> Result<Imported> {
        let stopping = || stop.load(Ordering::Relaxed);
        self.import_stoppable(input, name, target, durability, READ_CHUNK_BYTES, &stopping)
    }

    /// [`import_json_lines_from`](Self::import_json_lines_from), reading pieces of about
    /// `chunk_bytes`.
    pub(crate) fn import_in_chunks(
        &self,
        input: impl Read,
        name: &Path,
        target: ImportTarget<'_>,
        durability: Durability,
        chunk_bytes: usize,
    ) -> Result<Imported> {
        self.import_stoppable(input, name, target, durability, chunk_bytes, &|| false)
    }

    /// [`import_in_chunks`](Self::import_in_chunks), asking `stopping` before each piece it
    /// reads after the first, once all is read, and before each batch it stores, and stopping
    /// (with [`Error::Stopped`], or [`Error::ImportInterrupted`] once something is stored) at
    /// the first `true`.
    fn import_stoppable(
        &self,
        mut input: impl Read,
        name: &Path,
        target: ImportTarget<'_>,
        durability: Durability,
        chunk_bytes: usize,
        stopping: &dyn Fn() -> bool,
    ) -> Result<Imported> {
        // As `import_json_lines`: refused inside `without_blocking` before anything.
        crate::blocking::check()?;
        let check = self.import_check(target)?;
        let mut chunks = Chunks {
            input: &mut input,
            carry: Vec::new(),
            chunk_bytes,
            line_cap: line_cap(check.limit),
            ended: false,
            searched: 0,
        };
        let reading = |e| Error::io("reading", name, e);
        let first = chunks.next().map_err(reading)?;
        let mut checked = Vec::new();
        if chunks.ended {
            // All of it in one piece (a small file, say): no threads to start.
            if let Some(bytes) = first {
                let mut arena = Vec::new();
                let result = check_part(&bytes, &check, &mut arena);
                checked.push((0, bytes, arena, result));
            }
        } else {
            let (to_check, inbox) = mpsc::channel::<(usize, Vec<u8>)>();
            let inbox = parking_lot::Mutex::new(inbox);
            let (done, finished) = mpsc::channel();
            // Set once a bad line is found: what follows it need not be read.
            let bad = AtomicBool::new(false);
            let read = std::thread::scope(|scope| {
                for _ in 0..checking_threads() {
                    let (inbox, check, done, bad) = (&inbox, &check, done.clone(), &bad);
                    scope.spawn(move || loop {
                        let job = inbox.lock().recv();
                        let Ok((index, bytes)) = job else { break };
                        let mut arena = Vec::new();
                        let result = check_part(&bytes, check, &mut arena);
                        if result.is_err() {
                            bad.store(true, Ordering::Relaxed);
                        }
                        if done.send((index, bytes, arena, result)).is_err() {
                            break;
                        }
                    });
                }
                // The checkers stop once `to_check` is dropped, and nothing else stops them.
                // Every piece before a bad one was sent before it, so its line is still the
                // first bad one found.
                let mut index = 0;
                let mut next = Ok(first);
                while let Ok(Some(bytes)) = next {
                    let _ = to_check.send((index, bytes));
                    index += 1;
                    if bad.load(Ordering::Relaxed) || stopping() {
                        next = Ok(None);
                        break;
                    }
                    next = chunks.next();
                }
                drop(to_check);
                next
            });
            drop(done);
            read.map_err(reading)?;
            checked = finished.into_iter().collect();
            checked.sort_unstable_by_key(|chunk| chunk.0);
        }
        if stopping() {
            return Err(Error::Stopped);
        }
        let mut results = Vec::with_capacity(checked.len());
        let mut sources = Vec::with_capacity(checked.len());
        for (_, bytes, arena, result) in checked {
            results.push(result);
            sources.push((bytes, arena));
        }
        let located = first_bad_line(results, &check)?;
        let sources: Vec<(&[u8], &[u8])> = sources
            .iter()
            .map(|(bytes, arena)| (&bytes[..], &arena[..]))
            .collect();
        self.store_checked(located, &sources, target, durability, stopping)
    }

    /// What the lines of an import into this store are checked against: now is a stamp of the
    /// store's clock, not the wall clock, which may be behind it.
    fn import_check<'t>(&self, target: ImportTarget<'t>) -> Result<Check<'t>> {
        if let ImportTarget::Field(TS_FIELD) = target {
            // It would be cut from each message as its time, not stay in it naming its project.
            return Err(Error::InvalidOptions {
                reason: format!(
                    "the project field cannot be {TS_FIELD}, which carries each message's time"
                ),
            });
        }
        let ahead = self.max_import_ahead();
        Ok(Check {
            limit: self.max_message_bytes(),
            target,
            now: self.next_stamp()?,
            ahead_us: u64::try_from(ahead.as_micros()).unwrap_or(u64::MAX),
        })
    }

    /// Stores the checked parts of an input, `sources` holding each part's lines and arena,
    /// asking `stopping` before each batch.
    fn store_checked(
        &self,
        located: Vec<Located>,
        sources: &[(&[u8], &[u8])],
        target: ImportTarget<'_>,
        durability: Durability,
        stopping: &dyn Fn() -> bool,
    ) -> Result<Imported> {
        // Each project's messages in input order, in pieces (of one part each).
        let mut per_project: BTreeMap<u64, Vec<Piece>> = BTreeMap::new();
        for (source, part) in located.into_iter().enumerate() {
            let Located {
                stamps,
                places,
                projects,
                ..
            } = part;
            match target {
                ImportTarget::Project(id) => per_project.entry(id).or_default().push(Piece {
                    source,
                    stamps,
                    places,
                }),
                ImportTarget::Field(_) => {
                    let mut pieces: BTreeMap<u64, Piece> = BTreeMap::new();
                    for ((project, stamp), place) in projects.into_iter().zip(stamps).zip(places) {
                        let piece = pieces.entry(project).or_insert_with(|| Piece {
                            source,
                            stamps: Vec::new(),
                            places: Vec::new(),
                        });
                        piece.stamps.push(stamp);
                        piece.places.push(place);
                    }
                    for (project, piece) in pieces {
                        per_project.entry(project).or_default().push(piece);
                    }
                }
            }
        }
        let mut imported = Imported::default();
        for (project, pieces) in per_project {
            if pieces.iter().all(|piece| piece.places.is_empty()) {
                continue;
            }
            let (mut stored, mut bytes) = (0, 0);
            let result = self.import_project(
                project,
                pieces,
                sources,
                durability,
                stopping,
                (&mut stored, &mut bytes, &mut imported.raised),
            );
            imported.bytes += bytes;
            if stored > 0 {
                imported.per_project.insert(project, stored);
            }
            if let Err(source) = result {
                if imported.messages() == 0 {
                    return Err(source);
                }
                return Err(Error::ImportInterrupted {
                    stored: Box::new(imported),
                    source: Box::new(source),
                });
            }
        }
        Ok(imported)
    }

    /// Appends one project's share of an import in batches whose stamps fit one segment,
    /// counting the messages (and their bytes) stored in `stored` and `bytes` — including a
    /// batch that reached the log before its append failed (a failed fsync, say) — and in
    /// `raised` the stored messages whose stamps were raised to the line before's or the
    /// project's newest. It returns
    /// [`Error::Stopped`] before a batch when `stopping` says so.
    fn import_project(
        &self,
        project: u64,
        pieces: Vec<Piece>,
        sources: &[(&[u8], &[u8])],
        durability: Durability,
        stopping: &dyn Fn() -> bool,
        (stored, bytes_stored, raised): (&mut u64, &mut u64, &mut u64),
    ) -> Result<()> {
        let limit_bytes = self.segment_bytes();
        // The project's newest message counts as the line before the first: the append would
        // raise an older stamp to it anyway, and it is counted so that nothing loses its
        // history silently.
        let mut running = self
            .inner()
            .project(project, false)?
            .map_or(0, |p| p.snapshot().last_stamp);
        for Piece {
            source,
            mut stamps,
            places,
        } in pieces
        {
            // Counted as their batches are stored: a stopped import's warning counts only
            // messages it stored.
            let mut was_raised = Vec::with_capacity(stamps.len());
            for stamp in &mut stamps {
                // Within the millisecond, the `_ts` an export gives back is the same.
                was_raised.push(*stamp / 1000 < running / 1000);
                running = running.max(*stamp);
                *stamp = running;
            }
            let (lines, arena) = sources[source];
            let messages = |range: std::ops::Range<usize>| Messages {
                places: &places[range],
                lines,
                arena,
            };
            let all = messages(0..places.len());
            let mut start = 0;
            while start < places.len() {
                if stopping() {
                    return Err(Error::Stopped);
                }
                let mut end = start;
                let mut bytes = 0u64;
                while end < places.len()
                    && stamps[end] - stamps[start] <= MAX_STAMP_DELTA_US
                    && ((end - start) as u64) < MAX_BATCH_MESSAGES
                    && (end == start || bytes + all.message_len(end) as u64 <= limit_bytes)
                {
                    bytes += all.message_len(end) as u64;
                    end += 1;
                }
                let next_seq = || self.newest_first(project).map(|it| it.next_seq());
                let before = next_seq();
                let result = self.append_stamped(
                    project,
                    &messages(start..end),
                    &stamps[start..end],
                    durability,
                );
                // A failed append may still have published its batch (its fsync failed, say).
                let landed = match (&result, before) {
                    (Ok(_), _) => end - start,
                    (Err(_), Ok(b)) => {
                        next_seq().map_or(0, |a| (a.saturating_sub(b) as usize).min(end - start))
                    }
                    (Err(_), Err(_)) => 0,
                };
                *stored += landed as u64;
                *bytes_stored += (start..start + landed)
                    .map(|i| all.message_len(i) as u64)
                    .sum::<u64>();
                *raised += was_raised[start..start + landed]
                    .iter()
                    .filter(|&&r| r)
                    .count() as u64;
                result?;
                start = end;
            }
        }
        Ok(())
    }
}

/// The largest `_ts` taken: 9999-12-31T23:59:59.999Z. Stamps far beyond any clock would push the
/// store's clock (and every later segment header) to the end of `u64`.
const MAX_TS_MS: u64 = 253_402_300_799_999;

/// The longest line an import reads, for a store whose messages take at most `limit` bytes:
/// twice that and 64 KiB, room for the whitespace a message may lose when compacted and the
/// `_ts` it loses. A longer line is refused without being read whole (a minified array or a
/// file that is not JSON Lines at all would otherwise be held in memory to its end).
fn line_cap(limit: usize) -> usize {
    limit.saturating_mul(2).saturating_add(64 << 10)
}

/// At most this many messages per append of an import (a segment holds at most 2^24 records).
const MAX_BATCH_MESSAGES: u64 = 1 << 20;

/// Inputs of at least this many bytes are checked on several threads.
const PARALLEL_BYTES: usize = 512 << 10;

/// An import's input is read in pieces of about this many bytes, each checked while the next
/// is read.
const READ_CHUNK_BYTES: usize = 8 << 20;

/// How many threads check lines.
fn checking_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Where a checked line's message is: its compact form in the part's lines or (when it had
/// whitespace to remove) in the part's arena, less the bytes of its `_ts` member.
struct Place {
    /// Where its compact form starts.
    start: usize,
    /// The length of its compact form (at most `MAX_PAYLOAD_BYTES` plus its `_ts` member's
    /// bytes, so under 2^25).
    len: u32,
    /// Where the bytes to leave out (its `_ts` member) start, from `start`.
    cut_at: u32,
    /// How many bytes to leave out.
    cut_len: u32,
    /// Whether the compact form is in the arena.
    in_arena: bool,
}

/// The checked lines of one part of the input, in order.
struct Located {
    /// Each message's stamp (µs).
    stamps: Vec<u64>,
    /// Each message's place.
    places: Vec<Place>,
    /// Each message's project, for an import that takes it from a field.
    projects: Vec<u64>,
    /// The lines (blank ones included) in the part.
    line_count: usize,
    /// The messages (non-blank lines) in the part.
    message_count: usize,
}

/// Some of one project's messages, all from one part of the input (`sources[source]`).
#[derive(Default)]
struct Piece {
    source: usize,
    stamps: Vec<u64>,
    places: Vec<Place>,
}

/// Messages to append, found in a part's lines and arena.
struct Messages<'a> {
    places: &'a [Place],
    lines: &'a [u8],
    arena: &'a [u8],
}

impl Batch for Messages<'_> {
    fn count(&self) -> usize {
        self.places.len()
    }

    fn pieces(&self, i: usize) -> (&[u8], &[u8]) {
        let place = &self.places[i];
        let from = if place.in_arena {
            self.arena
        } else {
            self.lines
        };
        let compact = &from[place.start..place.start + place.len as usize];
        let cut_at = place.cut_at as usize;
        (
            &compact[..cut_at],
            &compact[cut_at + place.cut_len as usize..],
        )
    }

    fn message_len(&self, i: usize) -> usize {
        let place = &self.places[i];
        (place.len - place.cut_len) as usize
    }
}

/// What the lines of an import are checked against.
struct Check<'t> {
    /// The largest message, in bytes.
    limit: usize,
    target: ImportTarget<'t>,
    /// The stamp of lines without `_ts`: the store's clock when the import began.
    now: u64,
    /// How far ahead of `now` a `_ts` may be ([`Options::max_import_ahead`]), in µs.
    ahead_us: u64,
}

/// The first bad line of a part, numbered within the part (its message index from 0, its
/// line from 1).
struct Bad {
    index: usize,
    line: usize,
    what: Problem,
}

enum Problem {
    Invalid(String),
    TooLarge(usize),
    /// Longer than [`line_cap`].
    Overlong,
}

/// The checked parts in order, or the error of the first bad line (by its number in the whole
/// input).
fn first_bad_line(
    results: Vec<std::result::Result<Located, Bad>>,
    check: &Check<'_>,
) -> Result<Vec<Located>> {
    let (mut lines_before, mut messages_before) = (0, 0);
    let mut parts = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(part) => {
                lines_before += part.line_count;
                messages_before += part.message_count;
                parts.push(part);
            }
            Err(bad) => {
                let (index, line) = (messages_before + bad.index, Some(lines_before + bad.line));
                return Err(match bad.what {
                    Problem::Invalid(reason) => Error::InvalidMessage {
                        index,
                        line,
                        reason,
                    },
                    Problem::TooLarge(size) => Error::TooLarge {
                        index,
                        line,
                        size,
                        limit: check.limit,
                    },
                    Problem::Overlong => Error::InvalidMessage {
                        index,
                        line,
                        reason: format!(
                            "it is longer than {} bytes, more than any message within the limit \
                             of {} bytes takes even with whitespace, and was not read further",
                            line_cap(check.limit),
                            check.limit
                        ),
                    },
                });
            }
        }
    }
    Ok(parts)
}

/// An input read in pieces of whole lines (the last maybe unended).
struct Chunks<'r, R> {
    input: &'r mut R,
    /// The start of a line the last piece did not end.
    carry: Vec<u8>,
    /// The size of a piece, short of the line that ends it.
    chunk_bytes: usize,
    /// The longest line read ([`line_cap`]): a line found longer ends the input, its first
    /// `line_cap + 1` bytes the last piece, which its check refuses.
    line_cap: usize,
    /// Whether the end of the input was reached.
    ended: bool,
    /// Bytes searched for a line end so far: each once, however long its line.
    searched: u64,
}

impl<R: Read> Chunks<'_, R> {
    /// The next piece, `None` at the end of the input.
    fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.ended {
                return Ok(None);
            }
            // The carry holds no line end, and grows in place: copying it into a new piece and
            // searching it again on every read made a line much longer than a piece cost time
            // quadratic in its length.
            let mut chunk = std::mem::take(&mut self.carry);
            let carried = chunk.len();
            chunk.reserve(self.chunk_bytes);
            let got = self
                .input
                .by_ref()
                .take(self.chunk_bytes as u64)
                .read_to_end(&mut chunk)?;
            if got < self.chunk_bytes {
                self.ended = true;
                return Ok((!chunk.is_empty()).then_some(chunk));
            }
            self.searched += (chunk.len() - carried) as u64;
            match memchr::memrchr(b'\n', &chunk[carried..]) {
                Some(end) => {
                    let end = carried + end;
                    self.carry.extend_from_slice(&chunk[end + 1..]);
                    chunk.truncate(end + 1);
                    return Ok(Some(chunk));
                }
                // Too long to be taken: what was read of it is enough to refuse it.
                None if chunk.len() > self.line_cap => {
                    self.ended = true;
                    chunk.truncate(self.line_cap + 1);
                    return Ok(Some(chunk));
                }
                // A line longer than a piece: read on.
                None => self.carry = chunk,
            }
        }
    }
}

/// Checks the lines of `bytes` (a part of an input that starts a line), keeping the compact
/// forms of lines with whitespace in `arena`.
fn check_part(
    bytes: &[u8],
    check: &Check<'_>,
    arena: &mut Vec<u8>,
) -> std::result::Result<Located, Bad> {
    let names: [&[u8]; 2] = match check.target {
        ImportTarget::Project(_) => [TS_FIELD.as_bytes(), b""],
        ImportTarget::Field(name) => [TS_FIELD.as_bytes(), name.as_bytes()],
    };
    let names = match check.target {
        ImportTarget::Project(_) => &names[..1],
        ImportTarget::Field(_) => &names[..],
    };
    // About what the lines of an export take (a guess: too much costs memory, too little
    // copies).
    let guess = bytes.len() / 160;
    let mut part = Located {
        stamps: Vec::with_capacity(guess),
        places: Vec::with_capacity(guess),
        projects: Vec::new(),
        line_count: 0,
        message_count: 0,
    };
    let mut pos = 0;
    while pos < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let line_start = pos;
        let mut line = &bytes[pos..end];
        pos = end + 1;
        part.line_count += 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if json::is_blank(line) {
            continue;
        }
        let (index, number) = (part.message_count, part.line_count);
        part.message_count += 1;
        let bad = |what| Bad {
            index,
            line: number,
            what,
        };
        let invalid = |reason: String| bad(Problem::Invalid(reason));
        if line.len() > line_cap(check.limit) {
            return Err(bad(Problem::Overlong));
        }
        let arena_start = arena.len();
        let found = json::compact_object(line, names, arena).map_err(invalid)?;
        let compact = if found.copied {
            &arena[arena_start..]
        } else {
            line
        };
        let project = match check.target {
            ImportTarget::Project(p) => p,
            ImportTarget::Field(name) => {
                let member = found.members[1].as_ref().ok_or_else(|| {
                    invalid(format!("it has no {name:?} field naming its project"))
                })?;
                parse_u64(&compact[member.value.clone()])
                    .ok_or_else(|| invalid(format!("its {name:?} field is not a project id")))?
            }
        };
        let (stamp, cut) = match &found.members[0] {
            None => (check.now, found.len..found.len),
            Some(member) => {
                let value = &compact[member.value.clone()];
                let us = parse_ts(value)
                    .filter(|&us| us <= MAX_TS_MS * 1000 + 999)
                    .ok_or_else(|| {
                        invalid(
                            "its _ts field is not milliseconds (a whole number, or with up to \
                             three decimals) before the year 10000"
                                .to_string(),
                        )
                    })?;
                if us > check.now.saturating_add(check.ahead_us) {
                    return Err(invalid(format!(
                        "its _ts field {} is more than {} ahead of the store's clock ({} ms): \
                         a stamp from the future would move the store's clock there",
                        String::from_utf8_lossy(value),
                        span(check.ahead_us),
                        check.now / 1000
                    )));
                }
                (us, member.cut.clone())
            }
        };
        // The limit is the store's, on the message as stored: without its `_ts` member, so a
        // message the store took comes back in with the `_ts` its export added.
        let size = found.len - cut.len();
        if size > check.limit {
            return Err(bad(Problem::TooLarge(size)));
        }
        if let ImportTarget::Field(_) = check.target {
            part.projects.push(project);
        }
        part.stamps.push(stamp);
        part.places.push(Place {
            start: if found.copied {
                arena_start
            } else {
                line_start
            },
            len: found.len as u32,
            cut_at: cut.start as u32,
            cut_len: cut.len() as u32,
            in_arena: found.copied,
        });
    }
    Ok(part)
}

/// A span of `us` microseconds as a reader says it: "a day", "3 days", "2 hours", "90 s",
/// "250 ms".
fn span(us: u64) -> String {
    const DAY: u64 = 86_400_000_000;
    const HOUR: u64 = 3_600_000_000;
    match us {
        DAY => "a day".to_string(),
        HOUR => "an hour".to_string(),
        _ if us >= DAY && us.is_multiple_of(DAY) => format!("{} days", us / DAY),
        _ if us >= HOUR && us.is_multiple_of(HOUR) => format!("{} hours", us / HOUR),
        _ if us.is_multiple_of(1_000_000) => format!("{} s", us / 1_000_000),
        _ => format!("{} ms", us / 1000),
    }
}

/// Parses a `_ts` value, milliseconds as
/// [`Message::write_archive_line`](crate::Message::write_archive_line) writes them: a JSON
/// unsigned integer, or one with a fraction of one to three digits (microseconds), into
/// microseconds.
fn parse_ts(bytes: &[u8]) -> Option<u64> {
    let (whole, fraction) = match memchr::memchr(b'.', bytes) {
        None => (bytes, &b""[..]),
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
    };
    if bytes.len() > whole.len() && !(1..=3).contains(&fraction.len()) {
        return None;
    }
    let mut us = parse_u64(whole)?.checked_mul(1000)?;
    for (i, &b) in fraction.iter().enumerate() {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        us = us.checked_add(u64::from(digit) * [100, 10, 1][i])?;
    }
    Some(us)
}

/// Parses a JSON unsigned integer literal.
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    /// An import asked to stop while it stores stops before its next batch: what it stored is
    /// whole batches, the input's first messages, and the error counts exactly them.
    #[test]
    fn a_stopped_import_stores_whole_batches_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .segment_bytes(crate::MIN_SEGMENT_BYTES)
            .open(dir.path())
            .unwrap();
        let input: String = (0..1000)
            .map(|i| format!("{{\"i\":{i},\"pad\":\"{}\"}}\n", "x".repeat(80)))
            .collect();
        let stored = stopped_after_two_batches(&store, &input);
        let held: Vec<String> = store
            .newest_first(1)
            .unwrap()
            .map(|m| m.unwrap().json().to_string())
            .collect();
        let n = stored.messages() as usize;
        assert_eq!(held.len(), n);
        assert!(n > 1 && n < 500, "two batches of 4 KiB segments: {n}");
        let first: Vec<&str> = input.lines().take(n).collect();
        assert_eq!(held.iter().rev().collect::<Vec<_>>(), first);
        // Set before it stores anything, the stop stores nothing.
        let stop = AtomicBool::new(true);
        let err = store
            .import_json_lines_from_until(
                input.as_bytes(),
                Path::new("input.jl"),
                ImportTarget::Project(2),
                Durability::Written,
                &stop,
            )
            .unwrap_err();
        assert!(matches!(err, Error::Stopped), "{err:?}");
        assert!(store.stats(2).unwrap().is_none_or(|s| s.messages == 0));
    }

    /// Imports `input` into project 1, stopping it at the fourth time it asks (once all is
    /// read, then before each batch: after two batches); what it stored.
    fn stopped_after_two_batches(store: &Store, input: &str) -> Box<Imported> {
        let asked = std::cell::Cell::new(0);
        let stopping = || {
            asked.set(asked.get() + 1);
            asked.get() == 4
        };
        let err = store
            .import_stoppable(
                input.as_bytes(),
                Path::new("input.jl"),
                ImportTarget::Project(1),
                Durability::Written,
                READ_CHUNK_BYTES,
                &stopping,
            )
            .unwrap_err();
        let Error::ImportInterrupted { stored, source } = err else {
            panic!("{err:?}");
        };
        assert!(matches!(*source, Error::Stopped), "{source:?}");
        stored
    }

    /// A stopped import counts as raised only messages it stored: its warning said that all the
    /// messages checked had been stored with raised stamps (an audit).
    #[test]
    fn a_stopped_import_counts_only_the_raised_stamps_it_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .segment_bytes(crate::MIN_SEGMENT_BYTES)
            .open(dir.path())
            .unwrap();
        store.append(1, [r#"{"live":1}"#]).unwrap();
        let input: String = (0..1000)
            .map(|i| format!("{{\"i\":{i},\"_ts\":1700000000000}}\n"))
            .collect();
        let stored = stopped_after_two_batches(&store, &input);
        let n = stored.messages();
        assert!(n > 1 && n < 1000, "{n}");
        assert_eq!(stored.raised, n);
    }

    /// Big inputs are checked on several threads; the error must still name the first bad line
    /// (by its line number in the input, blank lines included), and nothing may be stored.
    #[test]
    fn the_first_bad_line_of_a_big_input_is_named_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let mut input = String::new();
        for i in 0..40_000 {
            if i % 1000 == 0 {
                input.push('\n');
            }
            match i {
                30_000 => input.push_str("[1]\n"),
                35_000 => input.push_str("{\"bad\":\n"),
                _ => input.push_str(&format!(
                    "{{\"i\":{i},\"_ts\":{}}}\n",
                    1_700_000_000_000u64 + i
                )),
            }
        }
        let line = input.lines().position(|l| l == "[1]").unwrap() + 1;
        let err = store
            .import_json_lines(
                input.as_bytes(),
                ImportTarget::Project(1),
                Durability::Written,
            )
            .unwrap_err();
        match err {
            Error::InvalidMessage {
                index,
                line: Some(l),
                ..
            } => {
                assert_eq!(l, line);
                assert_eq!(index, 30_000);
            }
            other => panic!("{other:?}"),
        }
        assert!(store.stats(1).unwrap().is_none_or(|s| s.messages == 0));
        // And a clean big input goes in whole, in order, with its history.
        let good = input
            .replace("[1]\n", "{\"i\":30000}\n")
            .replace("{\"bad\":\n", "{}\n");
        let imported = store
            .import_json_lines(
                good.as_bytes(),
                ImportTarget::Project(1),
                Durability::Written,
            )
            .unwrap();
        assert_eq!(imported.messages(), 40_000);
        let oldest = store.oldest_first(1).unwrap().next().unwrap().unwrap();
        assert_eq!(oldest.json(), r#"{"i":0}"#);
        assert_eq!(oldest.timestamp_ms(), 1_700_000_000_000);
    }

    /// The size limit is on the message as stored: a message of exactly the limit that the
    /// store accepted comes back in from its export, whose line is longer by its `_ts` field.
    #[test]
    fn a_message_of_exactly_the_limit_imports_from_its_export_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let limit = store.max_message_bytes();
        let message = format!("{{\"a\":\"{}\"}}", "x".repeat(limit - 8));
        assert_eq!(message.len(), limit);
        store.append(1, [message.as_bytes()]).unwrap();
        let mut line = Vec::new();
        let stored = store.oldest_first(1).unwrap().next().unwrap().unwrap();
        stored.write_with_meta(&[crate::Meta::Ts], &mut line);
        line.push(b'\n');
        assert!(line.len() > limit + 1);
        let imported = store
            .import_json_lines(&line, ImportTarget::Project(2), Durability::Written)
            .unwrap();
        assert_eq!(imported.messages(), 1);
        let back = store.oldest_first(2).unwrap().next().unwrap().unwrap();
        assert_eq!(back.json(), message);
        assert_eq!(back.timestamp_ms(), stored.timestamp_ms());
    }

    /// Imports `input`, whose second line must be refused: the error (naming line 2), with
    /// nothing of the input stored.
    fn second_line_refused(store: &Store, input: &[u8]) -> Error {
        let err = store
            .import_json_lines(input, ImportTarget::Project(3), Durability::Written)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidMessage { line: Some(2), .. }),
            "{err:?}"
        );
        assert!(store.stats(3).unwrap().is_none_or(|s| s.messages == 0));
        err
    }

    /// A stamp far ahead would move the store's clock: every later append, in any project,
    /// would be stamped in that future, and age retention would never remove its segments.
    #[test]
    fn a_ts_more_than_a_day_ahead_is_refused_naming_its_line_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        // 2100-01-01.
        let input = b"{\"a\":1,\"_ts\":1700000000000}\n{\"a\":2,\"_ts\":4102444800000}\n";
        let err = second_line_refused(&store, input);
        assert!(err.to_string().contains("ahead"), "{err}");
        let before = crate::clock::now_us() / 1000;
        store.append(4, [b"{}"]).unwrap();
        let stamped = store.oldest_first(4).unwrap().next().unwrap().unwrap();
        assert!(stamped.timestamp_ms() < before + 86_400_000);
    }

    /// An archive of a store whose clock ran ahead comes in once the store allows it
    /// (`Options::max_import_ahead`): the export of a store its own imports took two days ahead,
    /// a day at a time, was refused by every new store (an audit).
    #[test]
    fn a_ts_further_ahead_is_taken_when_the_store_allows_it() {
        let dir = tempfile::tempdir().unwrap();
        let now_ms = crate::clock::now_us() / 1000;
        let input = format!("{{\"a\":1,\"_ts\":{}}}\n", now_ms + 2 * 86_400_000);
        let store = Options::new().open(dir.path()).unwrap();
        let err = store
            .import_json_lines(
                input.as_bytes(),
                ImportTarget::Project(1),
                Durability::Written,
            )
            .unwrap_err();
        assert!(err.to_string().contains("more than a day ahead"), "{err}");
        drop(store);
        let store = Options::new()
            .max_import_ahead(std::time::Duration::from_secs(3 * 86_400))
            .open(dir.path())
            .unwrap();
        let err = store
            .import_json_lines(
                format!("{{\"a\":1,\"_ts\":{}}}\n", now_ms + 4 * 86_400_000).as_bytes(),
                ImportTarget::Project(1),
                Durability::Written,
            )
            .unwrap_err();
        assert!(err.to_string().contains("more than 3 days ahead"), "{err}");
        store
            .import_json_lines(
                input.as_bytes(),
                ImportTarget::Project(1),
                Durability::Written,
            )
            .unwrap();
        let m = store.newest_first(1).unwrap().next().unwrap().unwrap();
        assert_eq!(m.timestamp_ms(), now_ms + 2 * 86_400_000);
        // The store's clock went there: a later append comes after it.
        store.append(2, [b"{}"]).unwrap();
        let later = store.newest_first(2).unwrap().next().unwrap().unwrap();
        assert!(later.timestamp_ms() >= m.timestamp_ms());
    }

    #[test]
    fn spans_read_as_a_reader_says_them() {
        assert_eq!(span(86_400_000_000), "a day");
        assert_eq!(span(3 * 86_400_000_000), "3 days");
        assert_eq!(span(3_600_000_000), "an hour");
        assert_eq!(span(7_200_000_000), "2 hours");
        assert_eq!(span(90_000_000), "90 s");
        assert_eq!(span(250_000), "250 ms");
    }

    /// Clocks disagree a little: a stamp an hour ahead is taken.
    #[test]
    fn a_ts_an_hour_ahead_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let hour_ahead = crate::clock::now_us() / 1000 + 3_600_000;
        let input = format!("{{\"a\":1,\"_ts\":{hour_ahead}}}\n");
        store
            .import_json_lines(
                input.as_bytes(),
                ImportTarget::Project(3),
                Durability::Written,
            )
            .unwrap();
        let m = store.oldest_first(3).unwrap().next().unwrap().unwrap();
        assert_eq!(m.timestamp_ms(), hour_ahead);
    }

    /// Lines whose `_ts` goes back are raised to the line before's, and counted: a newest-first
    /// input (`get --meta _ts` output, say) says so instead of collapsing its history silently.
    #[test]
    fn stamps_raised_to_the_line_before_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let input = b"{\"a\":1,\"_ts\":3000}\n{\"a\":2,\"_ts\":2000}\n{\"a\":3,\"_ts\":1000}\n";
        let imported = store
            .import_json_lines(input, ImportTarget::Project(1), Durability::Written)
            .unwrap();
        assert_eq!((imported.messages(), imported.raised), (3, 2));
        let stamps: Vec<u64> = store
            .oldest_first(1)
            .unwrap()
            .map(|m| m.unwrap().timestamp_ms())
            .collect();
        assert_eq!(stamps, [3000, 3000, 3000]);
        let oldest_first = b"{\"_ts\":4000}\n{\"_ts\":5000}\n";
        let imported = store
            .import_json_lines(oldest_first, ImportTarget::Project(2), Durability::Written)
            .unwrap();
        assert_eq!(imported.raised, 0);
    }

    /// `_ts` carries each message's time and is cut from it: it cannot name its project too (the
    /// field naming it stays in the message), so such an import is refused and stores nothing.
    #[test]
    fn the_project_field_cannot_be_ts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let err = store
            .import_json_lines(
                b"{\"a\":1,\"_ts\":1000}\n",
                ImportTarget::Field(TS_FIELD),
                Durability::Written,
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOptions { .. }), "{err:?}");
        assert_eq!(store.projects().unwrap(), Vec::<u64>::new());
    }

    /// A `_ts` older than the project's newest message is raised to it and counted too, as one
    /// older than the line before is: files imported out of order (or an archive older than
    /// what the project holds) must not lose their history silently.
    #[test]
    fn stamps_raised_to_the_projects_newest_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let import = |input: &[u8]| {
            store
                .import_json_lines(input, ImportTarget::Project(1), Durability::Written)
                .unwrap()
        };
        let later = import(b"{\"a\":3,\"_ts\":3000}\n{\"a\":4,\"_ts\":4000}\n");
        assert_eq!(later.raised, 0);
        let earlier = import(b"{\"a\":1,\"_ts\":1000}\n{\"a\":2,\"_ts\":2000}\n");
        assert_eq!((earlier.messages(), earlier.raised), (2, 2));
        let stamps: Vec<u64> = store
            .oldest_first(1)
            .unwrap()
            .map(|m| m.unwrap().timestamp_ms())
            .collect();
        assert_eq!(stamps, [3000, 4000, 4000, 4000]);
        // A stamp in the same millisecond as the newest is stored as it would be exported.
        assert_eq!(import(b"{\"a\":5,\"_ts\":4000}\n").raised, 0);
    }

    /// A line without `_ts` is stamped by the store's clock, which a stamp ahead of the wall
    /// clock moved on: it comes after every message stored before it, in every project.
    #[test]
    fn a_line_without_ts_comes_after_everything_stored_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let hour_ahead = crate::clock::now_us() / 1000 + 3_600_000;
        let import = |project: u64, line: String| {
            store
                .import_json_lines(
                    line.as_bytes(),
                    ImportTarget::Project(project),
                    Durability::Written,
                )
                .unwrap();
        };
        import(1, format!("{{\"a\":1,\"_ts\":{hour_ahead}}}"));
        store.append(2, [r#"{"b":1}"#]).unwrap();
        import(3, r#"{"c":1}"#.to_string());
        let order: Vec<u64> = store
            .query(&crate::Query::new())
            .unwrap()
            .map(|m| m.unwrap().project())
            .collect();
        assert_eq!(order, [3, 2, 1]);
    }

    #[test]
    fn a_ts_beyond_the_year_9999_is_refused_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        for ts in [
            "18446744073709551",
            "253402300800000",
            "253402300799999.9999",
            // Its fraction took it past `u64::MAX`, which wrapped to 1970 (found by a review).
            "18446744073709551.999",
        ] {
            let input = format!("{{\"a\":1,\"_ts\":1700000000000}}\n{{\"_ts\":{ts}}}\n");
            let err = second_line_refused(&store, input.as_bytes());
            assert!(err.to_string().contains("year 10000"), "{ts}: {err}");
        }
    }

    /// Hands out its bytes a few at a time, then maybe fails.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        fail_at_end: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.bytes.is_empty() && self.fail_at_end {
                return Err(io::Error::other("the disk went away"));
            }
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// What a store holds of `project`: messages with their stamps.
    fn held(store: &Store, project: u64) -> Vec<(String, u64)> {
        store.oldest_first(project).map_or(Vec::new(), |it| {
            it.map(|m| {
                let m = m.unwrap();
                (m.json().to_string(), m.timestamp_ms())
            })
            .collect()
        })
    }

    /// Reading in pieces (lines split across them, lines longer than a piece, CRLF, blank
    /// lines, no final line end) stores and refuses exactly what importing the whole does.
    #[test]
    fn importing_from_a_reader_in_pieces_is_importing_the_whole() {
        let mut input = String::new();
        for i in 0..300 {
            match i % 7 {
                0 => input.push_str("\n  \r\n"),
                1 => input.push_str(&format!(
                    "{{ \"i\" : {i} , \"p\": {} , \"_ts\" : {} }}\r\n",
                    i % 3,
                    1_700_000_000_000u64 + i
                )),
                2 => input.push_str(&format!(
                    "{{\"long\":\"{}\",\"p\":{},\"_ts\":{},\"i\":{i}}}\n",
                    "y".repeat(i as usize),
                    i % 3,
                    1_700_000_000_000u64 + i
                )),
                _ => input.push_str(&format!(
                    "{{\"_ts\":{},\"i\":{i},\"p\":{}}}\n",
                    1_700_000_000_000u64 + i,
                    i % 3
                )),
            }
        }
        input.push_str("{\"last\":true,\"p\":1,\"_ts\":1700000001000}");
        let bad_at = input.len() / 2 + input[input.len() / 2..].find('\n').unwrap() + 1;
        let mut bad = input.clone();
        bad.insert_str(bad_at, "{\"p\":1,\"oops\":}\n");
        let targets = [ImportTarget::Project(9), ImportTarget::Field("p")];
        let whole = tempfile::tempdir().unwrap();
        let whole = Options::new().open(whole.path()).unwrap();
        let mut expected = Vec::new();
        for target in targets {
            let stored = whole
                .import_json_lines(input.as_bytes(), target, Durability::Written)
                .unwrap();
            let refused = whole
                .import_json_lines(bad.as_bytes(), target, Durability::Written)
                .unwrap_err()
                .to_string();
            expected.push((stored, refused));
        }
        let name = Path::new("input.jl");
        for (chunk, step) in [(7, 3), (64, 1000), (1000, 17), (1 << 20, 1 << 20)] {
            let dir = tempfile::tempdir().unwrap();
            let store = Options::new().open(dir.path()).unwrap();
            for (target, (stored, refused)) in targets.iter().zip(&expected) {
                let trickle = |bytes| Trickle {
                    bytes,
                    step,
                    fail_at_end: false,
                };
                let got = store
                    .import_in_chunks(
                        trickle(input.as_bytes()),
                        name,
                        *target,
                        Durability::Written,
                        chunk,
                    )
                    .unwrap();
                assert_eq!(&got, stored, "pieces of {chunk}");
                let err = store
                    .import_in_chunks(
                        trickle(bad.as_bytes()),
                        name,
                        *target,
                        Durability::Written,
                        chunk,
                    )
                    .unwrap_err();
                assert_eq!(&err.to_string(), refused, "pieces of {chunk}");
            }
            for project in 0..10 {
                let (a, b) = (held(&store, project), held(&whole, project));
                assert_eq!(a, b, "project {project}, pieces of {chunk}");
            }
        }
        // A read error imports nothing and names the input.
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let failing = Trickle {
            bytes: input.as_bytes(),
            step: 100,
            fail_at_end: true,
        };
        let err = store
            .import_in_chunks(
                failing,
                name,
                ImportTarget::Project(9),
                Durability::Written,
                64,
            )
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("input.jl"), "{err}");
        assert!(held(&store, 9).is_empty());
        // And an empty input imports nothing, without error.
        let got = store
            .import_json_lines_from(
                &b""[..],
                name,
                ImportTarget::Project(9),
                Durability::Written,
            )
            .unwrap();
        assert_eq!(got, Imported::default());
    }

    /// Once a bad line is found, the rest of the input is not read (here it would fail).
    #[test]
    fn reading_stops_at_a_bad_line() {
        struct SlowThenBroken {
            bytes: Vec<u8>,
            at: usize,
            slept: bool,
        }
        impl Read for SlowThenBroken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.at >= 400 {
                    return Err(io::Error::other("should not have been read"));
                }
                if self.at >= 128 && !self.slept {
                    // Time for the checkers to find the bad line.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    self.slept = true;
                }
                let n = buf.len().min(self.bytes.len() - self.at).min(16);
                buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
                self.at += n;
                Ok(n)
            }
        }
        let mut bytes = format!("{:<99}\n", "{\"bad\":}").into_bytes();
        while bytes.len() < 1000 {
            bytes.extend_from_slice(b"{\"a\":1}\n");
        }
        let input = SlowThenBroken {
            bytes,
            at: 0,
            slept: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let name = Path::new("input.jl");
        let err = store
            .import_in_chunks(
                input,
                name,
                ImportTarget::Project(1),
                Durability::Written,
                128,
            )
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidMessage { line: Some(1), .. }),
            "{err:?}"
        );
    }

    /// A line much longer than a piece is searched for its end once, byte by byte: each read
    /// used to copy and search again all of the line read so far (16 MiB in 4 KiB pieces took
    /// most of a minute). And it is refused as too large, naming its line.
    #[test]
    fn a_line_much_longer_than_a_piece_is_searched_once() {
        let line = format!("{{\"a\":\"{}\"}}\n{{}}", "x".repeat(16 << 20));
        let mut input = line.as_bytes();
        let mut chunks = Chunks {
            input: &mut input,
            carry: Vec::new(),
            chunk_bytes: 4096,
            line_cap: line_cap(crate::MAX_MESSAGE_BYTES),
            ended: false,
            searched: 0,
        };
        // The input ends within the read that finds the line's end: one piece, all of it.
        let first = chunks.next().unwrap().unwrap();
        assert_eq!(first, line.as_bytes());
        assert!(chunks.searched <= first.len() as u64, "{}", chunks.searched);
        assert_eq!(chunks.next().unwrap(), None);

        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .max_message_bytes(crate::MAX_MESSAGE_BYTES)
            .open(dir.path())
            .unwrap();
        let err = store
            .import_in_chunks(
                line.as_bytes(),
                Path::new("input.jl"),
                ImportTarget::Project(1),
                Durability::Written,
                4096,
            )
            .unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { line: Some(1), .. }),
            "{err:?}"
        );
    }

    /// A line longer than [`line_cap`] is refused, naming its line, without being read to its end
    /// (an endless one here), and nothing of the input is stored; from a slice too.
    #[test]
    fn a_line_too_long_for_any_message_is_not_read_whole() {
        struct Endless {
            start: &'static [u8],
            read: usize,
        }
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1 << 16);
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = *self.start.get(self.read + i).unwrap_or(&b'x');
                }
                self.read += n;
                Ok(n)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .max_message_bytes(1000)
            .open(dir.path())
            .unwrap();
        let cap = line_cap(1000);
        let mut input = Endless {
            start: b"{\"a\":1}\n{\"b\":\"",
            read: 0,
        };
        let err = store
            .import_in_chunks(
                &mut input,
                Path::new("endless"),
                ImportTarget::Project(1),
                Durability::Written,
                4096,
            )
            .unwrap_err();
        let Error::InvalidMessage {
            line: Some(2),
            reason,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(
            reason.contains(&format!("longer than {cap} bytes")),
            "{err}"
        );
        assert!(input.read <= cap + 2 * 4096 + (1 << 16), "{}", input.read);
        assert!(store.projects().unwrap().is_empty());

        // The same line whole, from a slice: the same refusal.
        let line = |len: usize| {
            let mut line = b"{\"a\":1}\n{\"b\":\"".to_vec();
            line.resize(8 + len - 2, b'x');
            line.extend_from_slice(b"\"}\n");
            line
        };
        let err = store
            .import_json_lines(
                &line(cap + 1),
                ImportTarget::Project(1),
                Durability::Written,
            )
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidMessage { line: Some(2), reason, .. }
                if reason.contains(&format!("longer than {cap} bytes"))),
            "{err:?}"
        );
        // One byte shorter is read whole, and is only too large.
        let err = store
            .import_json_lines(&line(cap), ImportTarget::Project(1), Durability::Written)
            .unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { line: Some(2), size, .. } if size == cap),
            "{err:?}"
        );
        assert!(store.projects().unwrap().is_empty());
    }

    #[test]
    fn ts_values_parse_to_the_microsecond() {
        assert_eq!(parse_ts(b"1796570547421"), Some(1_796_570_547_421_000));
        assert_eq!(parse_ts(b"1796570547421.337"), Some(1_796_570_547_421_337));
        assert_eq!(parse_ts(b"1796570547421.3"), Some(1_796_570_547_421_300));
        assert_eq!(parse_ts(b"1796570547421.03"), Some(1_796_570_547_421_030));
        assert_eq!(parse_ts(b"0.001"), Some(1));
        assert_eq!(parse_ts(b"18446744073709551.615"), Some(u64::MAX));
        for bad in [
            &b"1796570547421."[..],
            b"1796570547421.1234",
            b".5",
            b"1e3",
            b"1.5e3",
            b"-1",
            b"01.5",
            b"1.-5",
            b"1..5",
            b"18446744073709552",
            // Its whole part times 1000 fits a u64, the fraction then does not.
            b"18446744073709551.999",
            b"18446744073709551.616",
        ] {
            assert_eq!(parse_ts(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unsigned_integers_parse_as_json_spells_them() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"01",
            b"-1",
            b"+1",
            b"1.0",
            b"1e3",
            b"18446744073709551616",
            b"99999999999999999999",
            b"\"1\"",
            b"1 ",
        ] {
            assert_eq!(parse_u64(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    /// A big batch goes to the log in pieces: it reads back whole, and a failed piece takes
    /// back those written before it.
    #[test]
    fn a_batch_written_in_pieces_is_whole_or_absent() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        store
            .import_json_lines(
                b"{\"a\":0}\n",
                ImportTarget::Project(5),
                Durability::Written,
            )
            .unwrap();
        let mut input = String::new();
        for i in 0..30_000 {
            input.push_str(&format!(
                "{{\"i\":{i},\"pad\":\"{}\",\"_ts\":{}}}\n",
                "x".repeat(80),
                1_700_000_000_000u64 + i
            ));
        }
        assert!(input.len() > 3 * crate::project::WRITE_CHUNK_BYTES);
        let rec = Recorder::register(dir.path(), false);
        rec.fail(FaultKind::Write, 2);
        let err = store
            .import_json_lines(
                input.as_bytes(),
                ImportTarget::Project(5),
                Durability::Written,
            )
            .unwrap_err();
        rec.unregister();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(store.oldest_first(5).unwrap().count(), 1);
        let imported = store
            .import_json_lines(
                input.as_bytes(),
                ImportTarget::Project(5),
                Durability::Written,
            )
            .unwrap();
        assert_eq!(imported.messages(), 30_000);
        let read: Vec<String> = store
            .oldest_first(5)
            .unwrap()
            .map(|m| m.unwrap().json().to_string())
            .collect();
        assert_eq!(read.len(), 30_001);
        assert_eq!(
            read[30_000],
            format!("{{\"i\":29999,\"pad\":\"{}\"}}", "x".repeat(80))
        );
        drop(store);
        let store = Options::new().open(dir.path()).unwrap();
        assert_eq!(store.oldest_first(5).unwrap().count(), 30_001);
    }

    /// A batch that reached the log before its append failed (here its fsync) counts as stored:
    /// the error says what a retry must leave out.
    #[test]
    fn a_batch_written_before_its_fsync_failed_counts_as_stored() {
        use crate::fsio::sim::{FaultKind, Recorder};
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        store
            .import_json_lines(b"{\"a\":0}\n", ImportTarget::Project(5), Durability::Sync)
            .unwrap();
        let rec = Recorder::register(dir.path(), false);
        rec.fail(FaultKind::Sync, 1);
        let input = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        let err = store
            .import_json_lines(input, ImportTarget::Project(5), Durability::Sync)
            .unwrap_err();
        rec.unregister();
        match &err {
            Error::ImportInterrupted { stored, source } => {
                assert_eq!(stored.messages(), 3, "{err}");
                assert_eq!(stored.bytes, 3 * 7);
                assert!(matches!(**source, Error::Io { .. }), "{source:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.newest_first(5).unwrap().count(), 4);
    }
}
