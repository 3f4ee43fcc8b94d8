//! Meta fields (`_ts`, `_project`, `_key`) spliced into stored JSON objects on the way out.
//!
//! Stored messages are compact JSON objects, so the closing `}` is the last byte: meta fields are
//! written in front of it, after the message's own fields, in the order requested. Nothing is
//! parsed or re-serialised. A message that already has a field of that name gets the meta field
//! appended anyway (JSON parsers keep the last). A meta field asked for twice is written once, at
//! its first place: duplicate keys the server wrote itself would only trouble parsers.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use crate::error::{quoted, Error};
use crate::reader::Message;

/// A meta field that can be added to returned messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Meta {
    /// `_ts`: the append time, integer milliseconds since the Unix epoch.
    Ts,
    /// `_project`: the integer project id.
    Project,
    /// `_key`: `"{project}/{seq}"`, the message's stable id.
    Key,
}

impl Meta {
    /// The field's name, with its underscore.
    pub fn name(self) -> &'static str {
        match self {
            Meta::Ts => "_ts",
            Meta::Project => "_project",
            Meta::Key => "_key",
        }
    }
}

impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Meta {
    type Err = Error;

    /// Parses `_ts`, `_project` or `_key`; anything else is [`Error::InvalidQuery`].
    fn from_str(s: &str) -> Result<Meta, Error> {
        match s {
            "_ts" => Ok(Meta::Ts),
            "_project" => Ok(Meta::Project),
            "_key" => Ok(Meta::Key),
            _ => Err(Error::InvalidQuery {
                reason: format!(
                    "unknown meta field {}; known ones are _ts, _project and _key",
                    quoted(s)
                ),
            }),
        }
    }
}

impl Message {
    /// Appends the message to `out` with the `meta` fields spliced in, in the order given; a
    /// field that `meta` names more than once is written once, where it first appears.
    pub fn write_with_meta(&self, meta: &[Meta], out: &mut Vec<u8>) {
        if meta.is_empty() {
            out.extend_from_slice(self.json().as_bytes());
            return;
        }
        let mut need_comma = self.write_open(out);
        // One bit per variant: the fields already written.
        let mut written = 0u8;
        for m in meta {
            let bit = 1u8 << *m as u8;
            if written & bit != 0 {
                continue;
            }
            written |= bit;
            if need_comma {
                out.push(b',');
            }
            need_comma = true;
            // Writing to a Vec cannot fail.
            let _ = match m {
                Meta::Ts => write!(out, "\"_ts\":{}", self.timestamp_ms()),
                Meta::Project => write!(out, "\"_project\":{}", self.project()),
                Meta::Key => write!(out, "\"_key\":\"{}/{}\"", self.project(), self.seq()),
            };
        }
        out.push(b'}');
    }

    /// Appends the message to `out` as a line of an archive, which
    /// [`Store::import_json_lines`](crate::Store::import_json_lines) takes back whole: `_ts`
    /// spliced in to the microsecond, milliseconds with three decimals
    /// (`"_ts":1796570547421.337`), or a whole number when the stamp falls on a millisecond (as
    /// [`Meta::Ts`] writes every stamp). Stamps order appends across projects within a
    /// millisecond, and a restore keeps that order. No newline is added.
    pub fn write_archive_line(&self, out: &mut Vec<u8>) {
        if self.write_open(out) {
            out.push(b',');
        }
        let (ms, us) = (self.stamp() / 1000, self.stamp() % 1000);
        // Writing to a Vec cannot fail.
        let _ = if us == 0 {
            write!(out, "\"_ts\":{ms}}}")
        } else {
            write!(out, "\"_ts\":{ms}.{us:03}}}")
        };
    }

    /// Appends the message to `out` but for its closing `}`, for fields to be spliced in;
    /// whether a field then needs a comma before it (the object has members).
    fn write_open(&self, out: &mut Vec<u8>) -> bool {
        let json = self.json().as_bytes();
        // A stored message is a compact object: `{` … `}` with no trailing whitespace.
        debug_assert!(json.first() == Some(&b'{') && json.last() == Some(&b'}'));
        let body = &json[..json.len() - 1];
        out.extend_from_slice(body);
        body.len() > 1
    }

    /// The message with the `meta` fields spliced in, as a string (see
    /// [`write_with_meta`](Self::write_with_meta)).
    pub fn json_with_meta(&self, meta: &[Meta]) -> String {
        let mut out = Vec::with_capacity(self.json().len() + 48);
        self.write_with_meta(meta, &mut out);
        String::from_utf8(out).expect("splicing ASCII into UTF-8 keeps it UTF-8")
    }
}
