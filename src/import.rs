//! Importing JSON Lines archives: messages keep their history (`_ts`), and a file with a bad
//! line imports nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::json;
use crate::options::Durability;
use crate::record::MAX_STAMP_DELTA_US;
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

/// A message with its stamp.
type Stamped<'a> = (u64, Cow<'a, [u8]>);

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
        let lines = json::split_lines(input);
        let now = crate::clock::now_us();
        let limit = self.max_message_bytes();
        let prepared = prepare_lines(&lines, |index, line, raw| {
            prepare_line(index, line, raw, limit, target, now)
        })?;
        let mut per_project: BTreeMap<u64, Vec<Stamped<'_>>> = BTreeMap::new();
        let mut imported = Imported::default();
        for (project, stamp, message) in prepared {
            per_project
                .entry(project)
                .or_default()
                .push((stamp, message));
        }
        for (project, messages) in per_project {
            let (mut stored, mut bytes) = (0, 0);
            let result =
                self.import_project(project, messages, durability, &mut stored, &mut bytes);
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
        messages: Vec<Stamped<'_>>,
        durability: Durability,
        stored: &mut u64,
        bytes_stored: &mut u64,
    ) -> Result<()> {
        let mut running = 0u64;
        let (stamps, bodies): (Vec<u64>, Vec<Cow<'_, [u8]>>) = messages
            .into_iter()
            .map(|(stamp, body)| {
                running = running.max(stamp);
                (running, body)
            })
            .unzip();
        let limit_bytes = self.segment_bytes();
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < bodies.len()
                && stamps[end] - stamps[start] <= MAX_STAMP_DELTA_US
                && ((end - start) as u64) < MAX_BATCH_MESSAGES
                && (end == start || bytes + bodies[end].len() as u64 <= limit_bytes)
            {
                bytes += bodies[end].len() as u64;
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
                .map(|b| b.len() as u64)
                .sum::<u64>();
            result?;
            start = end;
        }
        Ok(())
    }
}

/// The largest `_ts` taken: 9999-12-31T23:59:59.999Z. Stamps far beyond any clock would push the
/// store's clock (and every later segment header) to the end of `u64`.
const MAX_TS_MS: u64 = 253_402_300_799_999;

/// At most this many messages per append of an import (a segment holds at most 2^24 records).
const MAX_BATCH_MESSAGES: u64 = 1 << 20;

/// Inputs with at least this many lines are checked on several threads.
const PARALLEL_LINES: usize = 16 * 1024;

/// What one input line becomes: its project, its stamp (µs) and its stored bytes.
type Prepared<'a> = (u64, u64, Cow<'a, [u8]>);

/// Runs `prepare` over every line (its index among the lines, its 1-based line number in the
/// input, its bytes), on several threads for big inputs; the error of the first bad line wins,
/// as if checked in order.
fn prepare_lines<'a, F>(lines: &[(usize, &'a [u8])], prepare: F) -> Result<Vec<Prepared<'a>>>
where
    F: Fn(usize, usize, &'a [u8]) -> Result<Prepared<'a>> + Sync,
{
    let run = |first: usize, part: &[(usize, &'a [u8])]| -> Result<Vec<Prepared<'a>>> {
        part.iter()
            .enumerate()
            .map(|(i, &(line, raw))| prepare(first + i, line, raw))
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || lines.len() < PARALLEL_LINES {
        return run(0, lines);
    }
    let chunk = lines.len().div_ceil(threads);
    let run = &run;
    let parts: Vec<Result<Vec<Prepared<'a>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .enumerate()
            .map(|(k, part)| scope.spawn(move || run(k * chunk, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::with_capacity(lines.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Checks one input line (the `index`-th, number `line` in the input) and works out its project and stamp (`_ts` removed).
fn prepare_line<'a>(
    index: usize,
    line: usize,
    raw: &'a [u8],
    limit: usize,
    target: ImportTarget<'_>,
    now: u64,
) -> Result<Prepared<'a>> {
    let invalid = |reason: String| Error::InvalidMessage {
        index,
        line: Some(line),
        reason,
    };
    json::validate_object(raw).map_err(invalid)?;
    let message = json::compact(raw);
    if message.len() > limit {
        return Err(Error::TooLarge {
            index,
            line: Some(line),
            size: message.len(),
            limit,
        });
    }
    let project = match target {
        ImportTarget::Project(p) => p,
        ImportTarget::Field(name) => {
            let (_, value) = json::find_member(&message, name)
                .ok_or_else(|| invalid(format!("it has no {name:?} field naming its project")))?;
            parse_u64(&message[value])
                .ok_or_else(|| invalid(format!("its {name:?} field is not a project id")))?
        }
    };
    match json::find_member(&message, TS_FIELD) {
        None => Ok((project, now, message)),
        Some((cut, value)) => {
            let ms = parse_u64(&message[value])
                .filter(|&ms| ms <= MAX_TS_MS)
                .ok_or_else(|| {
                    invalid(
                        "its _ts field is not integer milliseconds before the year 10000"
                            .to_string(),
                    )
                })?;
            let mut owned = message.into_owned();
            owned.drain(cut);
            Ok((project, ms * 1000, Cow::Owned(owned)))
        }
    }
}

/// Parses a JSON unsigned integer literal.
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty()
        || !bytes.iter().all(u8::is_ascii_digit)
        || (bytes.len() > 1 && bytes[0] == b'0')
    {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
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
