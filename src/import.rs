//! Importing JSON Lines archives: messages keep their history (`_ts`), and a file with a bad
//! line imports nothing.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::json;
use crate::options::Durability;
use crate::record::{Payload, MAX_STAMP_DELTA_US};
use crate::store::Store;

/// Where imported messages go.
#[derive(Debug, Clone, Copy)]
pub enum ImportTarget<'a> {
    /// Every message goes to this project.
    Project(u64),
    /// Each message goes to the project named by this top-level field (an unsigned integer),
    /// which stays in the message.
    Field(&'a str),
}

/// What an import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Messages imported per project.
    pub per_project: BTreeMap<u64, u64>,
    /// Bytes of messages imported (compact JSON, `_ts` removed).
    pub bytes: u64,
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
    /// oldest first, keeping history: a top-level `_ts` field (integer milliseconds since the
    /// epoch, as `export` writes it) becomes the message's append time and is removed from the
    /// stored message; messages without one are stamped now.
    ///
    /// Every line is checked before anything is stored, so a bad line (named in the error)
    /// imports nothing. A failure while storing (an I/O error, say) after some batches were
    /// stored is [`Error::ImportInterrupted`], which says what was. Times never go backwards within a project: a `_ts` older than the
    /// project's newest message (or than the line before) is raised to it. A project's
    /// messages are appended in batches; a crash in the middle of an import can leave a prefix
    /// of each project's share, never a part of a batch.
    pub fn import_json_lines(
        &self,
        input: &[u8],
        target: ImportTarget<'_>,
        durability: Durability,
    ) -> Result<Imported> {
        let check = Check {
            limit: self.max_message_bytes(),
            target,
            now: crate::clock::now_us(),
        };
        let mut arenas = Vec::new();
        let parts = check_lines(input, &check, &mut arenas)?;
        // Each project's messages in input order, in pieces (a part of the input each).
        let mut per_project: BTreeMap<u64, Vec<Share<'_>>> = BTreeMap::new();
        match target {
            ImportTarget::Project(id) => {
                per_project.insert(id, parts.into_iter().map(|p| p.share).collect());
            }
            ImportTarget::Field(_) => {
                for part in parts {
                    let Share { stamps, bodies } = part.share;
                    for ((project, stamp), body) in
                        part.projects.into_iter().zip(stamps).zip(bodies)
                    {
                        let share = &mut per_project
                            .entry(project)
                            .or_insert_with(|| vec![Share::default()])[0];
                        share.stamps.push(stamp);
                        share.bodies.push(body);
                    }
                }
            }
        }
        let mut imported = Imported::default();
        for (project, share) in per_project {
            if share.iter().all(|piece| piece.bodies.is_empty()) {
                continue;
            }
            let (mut stored, mut bytes) = (0, 0);
            let result = self.import_project(project, share, durability, &mut stored, &mut bytes);
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
    /// batch that reached the log before its append failed (a failed fsync, say).
    fn import_project(
        &self,
        project: u64,
        share: Vec<Share<'_>>,
        durability: Durability,
        stored: &mut u64,
        bytes_stored: &mut u64,
    ) -> Result<()> {
        let limit_bytes = self.segment_bytes();
        let mut running = 0u64;
        for Share { mut stamps, bodies } in share {
            for stamp in &mut stamps {
                running = running.max(*stamp);
                *stamp = running;
            }
            let mut start = 0;
            while start < bodies.len() {
                let mut end = start;
                let mut bytes = 0u64;
                while end < bodies.len()
                    && stamps[end] - stamps[start] <= MAX_STAMP_DELTA_US
                    && ((end - start) as u64) < MAX_BATCH_MESSAGES
                    && (end == start || bytes + Payload::len(&bodies[end]) as u64 <= limit_bytes)
                {
                    bytes += Payload::len(&bodies[end]) as u64;
                    end += 1;
                }
                let next_seq = || self.newest_first(project).map(|it| it.next_seq());
                let before = next_seq();
                let result = self.append_stamped(
                    project,
                    &bodies[start..end],
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
                *bytes_stored += bodies[start..start + landed]
                    .iter()
                    .map(|b| Payload::len(b) as u64)
                    .sum::<u64>();
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

/// At most this many messages per append of an import (a segment holds at most 2^24 records).
const MAX_BATCH_MESSAGES: u64 = 1 << 20;

/// Inputs of at least this many bytes are checked on several threads.
const PARALLEL_BYTES: usize = 512 << 10;

/// One project's share of an import, in input order: stamps (µs) and messages.
#[derive(Default)]
struct Share<'a> {
    stamps: Vec<u64>,
    bodies: Vec<Spliced<'a>>,
}

/// A message to store: a compact line with its `_ts` member cut out, as the bytes before the
/// cut and those after it.
#[derive(Debug, Clone, Copy)]
struct Spliced<'a> {
    head: &'a [u8],
    tail: &'a [u8],
}

impl Payload for Spliced<'_> {
    fn pieces(&self) -> (&[u8], &[u8]) {
        (self.head, self.tail)
    }
}

/// What the lines of an import are checked against.
struct Check<'t> {
    /// The largest message, in bytes.
    limit: usize,
    target: ImportTarget<'t>,
    /// The stamp of lines without `_ts`.
    now: u64,
}

/// A line whose compact form is in its part's arena (it had whitespace to remove).
struct InArena {
    /// Its message among the part's.
    index: usize,
    /// Where its compact form starts in the arena.
    start: usize,
    /// The length of its compact form.
    len: usize,
    /// The bytes to leave out (its `_ts` member), from `start`.
    cut: std::ops::Range<usize>,
}

/// The checked lines of one part of the input, in order.
struct Part<'a> {
    share: Share<'a>,
    /// Each message's project, for an import that takes it from a field.
    projects: Vec<u64>,
    /// The lines (blank ones included) in the part.
    line_count: usize,
    /// The messages (non-blank lines) in the part.
    message_count: usize,
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
}

/// Checks every line of `input` (JSON Lines), on several threads for big inputs; the error of
/// the first bad line wins, as if checked in order. Compact forms of lines with whitespace go to
/// `arenas` (one per part).
fn check_lines<'a>(
    input: &'a [u8],
    check: &Check<'_>,
    arenas: &'a mut Vec<Vec<u8>>,
) -> Result<Vec<Part<'a>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let threads = if input.len() < PARALLEL_BYTES {
        1
    } else {
        threads
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
    arenas.resize_with(ranges.len(), Vec::new);
    let jobs = ranges.into_iter().zip(arenas.iter_mut());
    let results: Vec<std::result::Result<Part<'a>, Bad>> = if jobs.len() == 1 {
        jobs.map(|(range, arena)| check_part(input, range, check, arena))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .map(|(range, arena)| scope.spawn(move || check_part(input, range, check, arena)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
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
                });
            }
        }
    }
    Ok(parts)
}

/// Checks the lines of `input[range]`, which starts a line, keeping the compact forms of lines
/// with whitespace in `arena`.
fn check_part<'a>(
    input: &'a [u8],
    range: std::ops::Range<usize>,
    check: &Check<'_>,
    arena: &'a mut Vec<u8>,
) -> std::result::Result<Part<'a>, Bad> {
    let bytes = &input[range];
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
    let mut part = Part {
        share: Share {
            stamps: Vec::with_capacity(guess),
            bodies: Vec::with_capacity(guess),
        },
        projects: Vec::new(),
        line_count: 0,
        message_count: 0,
    };
    let mut in_arena = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
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
        let arena_start = arena.len();
        let found = json::compact_object(line, names, arena).map_err(invalid)?;
        if found.len > check.limit {
            return Err(bad(Problem::TooLarge(found.len)));
        }
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
                let ms = parse_u64(&compact[member.value.clone()])
                    .filter(|&ms| ms <= MAX_TS_MS)
                    .ok_or_else(|| {
                        invalid(
                            "its _ts field is not integer milliseconds before the year 10000"
                                .to_string(),
                        )
                    })?;
                (ms * 1000, member.cut.clone())
            }
        };
        if let ImportTarget::Field(_) = check.target {
            part.projects.push(project);
        }
        part.share.stamps.push(stamp);
        if found.copied {
            in_arena.push(InArena {
                index,
                start: arena_start,
                len: found.len,
                cut,
            });
            part.share.bodies.push(Spliced {
                head: &[],
                tail: &[],
            });
        } else {
            part.share.bodies.push(Spliced {
                head: &line[..cut.start],
                tail: &line[cut.end..],
            });
        }
    }
    // The arena is complete: its messages can be borrowed now.
    let arena: &'a [u8] = arena;
    for line in in_arena {
        let compact = &arena[line.start..line.start + line.len];
        part.share.bodies[line.index] = Spliced {
            head: &compact[..line.cut.start],
            tail: &compact[line.cut.end..],
        };
    }
    Ok(part)
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

    #[test]
    fn a_ts_beyond_the_year_9999_is_refused_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().open(dir.path()).unwrap();
        let input = b"{\"a\":1,\"_ts\":1700000000000}\n{\"_ts\":18446744073709551}\n";
        let err = store
            .import_json_lines(input, ImportTarget::Project(3), Durability::Written)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidMessage { line: Some(2), .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("year 10000"), "{err}");
        assert!(store.stats(3).unwrap().is_none_or(|s| s.messages == 0));
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
