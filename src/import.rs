//! Importing JSON Lines archives: messages keep their history (`_ts`), and a file with a bad
//! line imports nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::json;
use crate::options::Durability;
use crate::record::MAX_STAMP_DELTA_US;
use crate::store::{prepare, Store};

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
    /// imports nothing. Times never go backwards within a project: a `_ts` older than the
    /// project's newest message (or than the line before) is raised to it. A project's
    /// messages are appended in batches; a crash in the middle of an import can leave a prefix
    /// of it, never a part of a batch.
    pub fn import_json_lines(
        &self,
        input: &[u8],
        target: ImportTarget<'_>,
        durability: Durability,
    ) -> Result<Imported> {
        let lines = json::split_lines(input);
        let at_line = |e: Error| e.at_line(|i| lines[i].0);
        let raw: Vec<&[u8]> = lines.iter().map(|&(_, l)| l).collect();
        let batch = prepare(&raw, self.max_message_bytes()).map_err(at_line)?;
        let now = crate::clock::now_us();
        let mut per_project: BTreeMap<u64, Vec<Stamped<'_>>> = BTreeMap::new();
        let mut imported = Imported::default();
        for (index, message) in batch.into_iter().enumerate() {
            let invalid = |reason: String| {
                at_line(Error::InvalidMessage {
                    index,
                    line: None,
                    reason,
                })
            };
            let project = match target {
                ImportTarget::Project(p) => p,
                ImportTarget::Field(name) => {
                    let (_, value) = json::find_member(&message, name).ok_or_else(|| {
                        invalid(format!("it has no {name:?} field naming its project"))
                    })?;
                    parse_u64(&message[value])
                        .ok_or_else(|| invalid(format!("its {name:?} field is not a project id")))?
                }
            };
            let (stamp, message) = match json::find_member(&message, TS_FIELD) {
                None => (now, message),
                Some((cut, value)) => {
                    let ms = parse_u64(&message[value])
                        .filter(|ms| ms.checked_mul(1000).is_some())
                        .ok_or_else(|| {
                            invalid("its _ts field is not integer milliseconds".to_string())
                        })?;
                    let mut owned = message.into_owned();
                    owned.drain(cut);
                    (ms * 1000, Cow::Owned(owned))
                }
            };
            imported.bytes += message.len() as u64;
            per_project
                .entry(project)
                .or_default()
                .push((stamp, message));
        }
        for (project, messages) in per_project {
            let n = messages.len() as u64;
            self.import_project(project, messages, durability)?;
            imported.per_project.insert(project, n);
        }
        Ok(imported)
    }

    /// Appends one project's share of an import in batches whose stamps fit one segment.
    fn import_project(
        &self,
        project: u64,
        messages: Vec<Stamped<'_>>,
        durability: Durability,
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
                && (end == start || bytes + bodies[end].len() as u64 <= limit_bytes)
            {
                bytes += bodies[end].len() as u64;
                end += 1;
            }
            self.append_stamped(
                project,
                &bodies[start..end],
                &stamps[start..end],
                durability,
            )?;
            start = end;
        }
        Ok(())
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
