//! JSON at the boundary: validation that a message is one JSON object, and whitespace removal.
//!
//! The engine stores bytes. A message is checked once, on append, with serde_json (validation
//! only, no DOM), then compacted by a byte scan that drops whitespace outside strings. Keys keep
//! their order and escapes stay exactly as given, so the stored form is the caller's object minus
//! insignificant whitespace, and always one line.
//!
//! Imports, where speed matters most, use [`compact_object`] instead: one pass per line that
//! validates (the same verdicts as serde_json, UTF-8 and nesting limits included), compacts and
//! finds the top-level members it is asked for (`_ts`, a project field). It falls back to the
//! steps above only to describe a line it refuses. Its property tests hold it to them.

use std::borrow::Cow;
use std::ops::Range;

/// The value of four hex digits, if they are.
#[inline(always)]
fn hex4(hex: &[u8]) -> Option<u32> {
    hex.iter().try_fold(0u32, |v, &b| {
        let d = (b as char).to_digit(16)?;
        Some(v * 16 + d)
    })
}

/// Whether a JSON number's text is within `f64`'s range (a tiny one rounds to zero, as in
/// serde_json).
fn fits_f64(number: &[u8]) -> bool {
    std::str::from_utf8(number)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

/// Checks that `bytes` is exactly one JSON object (surrounding whitespace allowed).
///
/// Returns a plain description of the problem on failure. Nesting is measured before parsing
/// (at most [`MAX_DEPTH`] levels) and serde_json's recursion limit bounds it too, so a hostile
/// document cannot overflow the stack.
pub(crate) fn validate_object(bytes: &[u8]) -> Result<(), String> {
    // serde_json skips over strings it is not asked for without checking their UTF-8, so check
    // the whole message first: a message must read back as text.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(format!(
            "it is not valid UTF-8 (at byte {})",
            e.valid_up_to() + 1
        ));
    }
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(format!("it nests deeper than {MAX_DEPTH} levels"));
    }
    // What editors on some systems put first in a UTF-8 file; serde_json would only say
    // "expected value at column 1".
    if bytes.starts_with("\u{feff}".as_bytes()) {
        return Err(
            "it starts with a byte order mark (U+FEFF), which JSON Lines do not take: save the \
             file as UTF-8 without one"
                .to_string(),
        );
    }
    let first = bytes.iter().find(|b| !is_ws(**b));
    let parsed = parse_ignored(bytes);
    match (first, parsed) {
        (None, _) => Err("it is empty".to_string()),
        (Some(b'{'), Ok(())) => Ok(()),
        (Some(_), Ok(())) => Err("it is valid JSON but not an object".to_string()),
        (Some(_), Err(e)) => Err(format!("it is not valid JSON ({})", describe(&e))),
    }
}

/// serde_json's message with the position as a column: a message is one line, so "line 1"
/// would only confuse a reader who thinks in lines of the input.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(message) if e.line() == 1 => format!("{message} at column {}", e.column()),
        _ => text,
    }
}

/// Splits JSON Lines into `(1-based line number, line)` pairs: lines end in `\n` or `\r\n`,
/// the last needs no line end, and lines of only whitespace are skipped.
pub(crate) fn split_lines(input: &[u8]) -> Vec<(usize, &[u8])> {
    numbered_lines(input).collect()
}

/// [`split_lines`], lazily: a body of many short lines costs no memory per line to walk.
fn numbered_lines(input: &[u8]) -> impl Iterator<Item = (usize, &[u8])> + Clone {
    input
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(|&b| is_ws(b)))
}

/// The messages (non-blank lines) of JSON Lines, as [`split_lines`] finds them, lazily.
pub(crate) fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    numbered_lines(input).map(|(_, line)| line)
}

/// The 1-based line number of message `index` (from 0) of JSON Lines, as [`split_lines`]
/// numbers it.
pub(crate) fn line_number(input: &[u8], index: usize) -> usize {
    numbered_lines(input).nth(index).map_or(0, |(n, _)| n)
}

/// Refuses JSON Lines of more messages than one batch may hold, before anything is built for
/// each of them (a rejected body of millions of `{}` lines then costs nothing per line).
pub(crate) fn check_line_count(input: &[u8]) -> crate::Result<()> {
    let limit = crate::record::MAX_RECORDS_PER_SEGMENT;
    let count = lines(input).count() as u64;
    if count > limit {
        return Err(crate::Error::BatchTooLarge {
            size: count,
            limit,
            unit: "messages",
        });
    }
    Ok(())
}

/// The deepest nesting of arrays and objects a message may have: the most serde_json parses
/// (its recursion limit of 128 counts one level more), so every stored message can be parsed
/// again (by filters, by users).
pub(crate) const MAX_DEPTH: usize = 127;

/// Where a forward scan of (possibly invalid) JSON bytes stands: inside a string, and just
/// after a backslash in one, or not.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Steps over `b`; true when `b` is outside every string (a quote that opens a string
    /// counts as outside, the one that closes it as inside).
    fn outside(&mut self, b: u8) -> bool {
        if !self.inside {
            self.inside = b == b'"';
            return true;
        }
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.inside = false;
        }
        false
    }
}

/// The deepest nesting of `[` and `{` outside strings (of possibly invalid JSON).
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut strings = Strings::default();
    for &b in bytes {
        if !strings.outside(b) {
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses one JSON value as filters will (numbers within `f64`, surrogates paired), then
/// requires the end of input. Only the careful path that words a refusal comes here; the single
/// pass (`scan_object`) makes the same decisions without building anything.
///
/// Nothing is kept ([`Checked`]): a refused line of hundreds of megabytes (a minified array,
/// say) costs no more memory than its own bytes, where a `serde_json::Value` of it took about
/// eight times as much.
fn parse_ignored(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Checked = serde::Deserialize::deserialize(&mut de)?;
    de.end()
}

/// Any JSON value, parsed as a `serde_json::Value` would be (strings decoded, so escapes and
/// surrogate pairs are checked; numbers parsed, so one beyond `f64` is refused) and then
/// dropped, member by member.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while let Some(Checked) = seq.next_element()? {}
        Ok(Checked)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while let Some((Checked, Checked)) = map.next_entry()? {}
        Ok(Checked)
    }
}

/// Removes whitespace outside strings. `bytes` must be valid JSON.
///
/// Borrows when there is nothing to remove, which is the common case for machine-made JSON.
pub(crate) fn compact(bytes: &[u8]) -> Cow<'_, [u8]> {
    let first_ws = match first_insignificant_ws(bytes) {
        None => return Cow::Borrowed(bytes),
        Some(i) => i,
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first_ws]);
    // Whitespace is only ever found outside strings, so the scan starts outside one.
    let mut strings = Strings::default();
    for &b in &bytes[first_ws..] {
        if !strings.outside(b) || !is_ws(b) {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// The index of the first whitespace byte outside a string, if any.
fn first_insignificant_ws(bytes: &[u8]) -> Option<usize> {
    let mut strings = Strings::default();
    bytes.iter().position(|&b| strings.outside(b) && is_ws(b))
}

/// Finds the last top-level member named `name` in a compact JSON object.
///
/// Returns the byte range to cut to remove the member (with one adjoining comma) and the range
/// of its value. Keys are compared as raw bytes (a key spelled with escapes does not match).
pub(crate) fn find_member(object: &[u8], name: &str) -> Option<(Range<usize>, Range<usize>)> {
    if object.first() != Some(&b'{') {
        return None;
    }
    let mut found = None;
    let mut pos = 1;
    while pos < object.len() && object[pos] == b'"' {
        let key_end = skip_string(object, pos)?;
        if object.get(key_end) != Some(&b':') {
            return None;
        }
        let value_start = key_end + 1;
        let value_end = skip_value(object, value_start)?;
        if &object[pos + 1..key_end - 1] == name.as_bytes() {
            let cut = match object.get(value_end) {
                Some(b',') => pos..value_end + 1,
                _ if pos > 1 => pos - 1..value_end,
                _ => pos..value_end,
            };
            found = Some((cut, value_start..value_end));
        }
        match object.get(value_end) {
            Some(b',') => pos = value_end + 1,
            _ => break,
        }
    }
    found
}

/// The index just past the string that starts (with its quote) at `at`.
fn skip_string(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index just past the compact JSON value that starts at `at`.
fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = skip_string(bytes, i)?;
                if depth == 0 {
                    return Some(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return Some(i),
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A top-level member found by [`compact_object`], located in the compact form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The bytes to cut to remove the member with one adjoining comma (as [`find_member`]).
    pub(crate) cut: Range<usize>,
    /// Its value.
    pub(crate) value: Range<usize>,
}

/// What [`compact_object`] learned of a valid object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Compacted {
    /// Whether whitespace was removed, and so the compact form appended to the output buffer;
    /// otherwise the input is already compact (and nothing was appended).
    pub(crate) copied: bool,
    /// The length of the compact form.
    pub(crate) len: usize,
    /// The last top-level member named by each of the names asked for, if any.
    pub(crate) members: [Option<Member>; 2],
}

/// Validates, compacts and finds top-level members of one JSON object in a single pass: the
/// work of [`validate_object`], [`compact`] and [`find_member`] (for up to two `names`, keys
/// compared as raw bytes), with the same verdicts and results.
///
/// When the input holds whitespace to remove, its compact form is appended to `out`; member
/// ranges are positions in the compact form either way. On failure `out` is left as it was and
/// the error is [`validate_object`]'s description.
pub(crate) fn compact_object(
    bytes: &[u8],
    names: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<Compacted, String> {
    debug_assert!(names.len() <= 2);
    if let Some(done) = scan_object(bytes, names, out) {
        return Ok(done);
    }
    // The single pass refused it: let the careful path say why. Should it accept after all,
    // its results stand (the scanner would be wrong, but no valid message is refused).
    validate_object(bytes)?;
    let compacted = compact(bytes);
    let mut members = [None, None];
    for (found, name) in members.iter_mut().zip(names) {
        // Keys are compared as raw bytes, and a name with a quote never matches one.
        let name = std::str::from_utf8(name).unwrap_or("\"");
        *found = find_member(&compacted, name).map(|(cut, value)| Member { cut, value });
    }
    let copied = matches!(compacted, Cow::Owned(_));
    let len = compacted.len();
    if copied {
        out.extend_from_slice(&compacted);
    }
    Ok(Compacted {
        copied,
        len,
        members,
    })
}

/// The single pass behind [`compact_object`]; `None` for anything it does not accept.
pub(crate) fn scan_object(bytes: &[u8], names: &[&[u8]], out: &mut Vec<u8>) -> Option<Compacted> {
    let start = out.len();
    let mut scanner = Scanner {
        bytes,
        at: 0,
        flushed: 0,
        removed: 0,
        out,
    };
    match scanner.object(names) {
        Some(members) => {
            let copied = scanner.removed > 0;
            if copied {
                scanner
                    .out
                    .extend_from_slice(&bytes[scanner.flushed..bytes.len()]);
            }
            Some(Compacted {
                copied,
                len: bytes.len() - scanner.removed,
                members,
            })
        }
        None => {
            scanner.out.truncate(start);
            None
        }
    }
}

/// A forward scan of one JSON text that copies what is not whitespace to `out` (lazily: only
/// once there is whitespace to drop).
struct Scanner<'a, 'o> {
    bytes: &'a [u8],
    /// The next byte to read.
    at: usize,
    /// Bytes before this are in `out` (when anything was removed) or dropped.
    flushed: usize,
    /// Whitespace bytes dropped so far: `at - removed` is the position in the compact form.
    removed: usize,
    out: &'o mut Vec<u8>,
}

/// A top-level member being read.
struct Pending {
    /// Which of the names it has: bit k for `names[k]`.
    named: u8,
    /// The position of its key's opening quote, in the compact form.
    key: usize,
    /// The position of its value, in the compact form.
    value: usize,
    /// Whether members come before it.
    after_first: bool,
}

impl Scanner<'_, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// The position of the next byte in the compact form (whitespace skipped leaves it alone).
    fn compact_at(&self) -> usize {
        self.at - self.removed
    }

    /// Skips whitespace, copying what came before it to `out`.
    #[inline]
    fn ws(&mut self) {
        let start = self.at;
        while self.at < self.bytes.len() && is_ws(self.bytes[self.at]) {
            self.at += 1;
        }
        if self.at > start {
            self.out.extend_from_slice(&self.bytes[self.flushed..start]);
            self.flushed = self.at;
            self.removed += self.at - start;
        }
    }

    /// Reads one object (the whole input, surrounding whitespace allowed), returning the last
    /// top-level member of each name.
    fn object(&mut self, names: &[&[u8]]) -> Option<[Option<Member>; 2]> {
        /// What the scan expects next.
        enum Next {
            /// Just inside a `{` or `[`: its end, or a key or value.
            Open,
            /// A key, then its colon.
            Key,
            /// A value.
            Value,
            /// A comma or the end of the innermost container.
            AfterValue,
        }
        let mut found = [None, None];
        self.ws();
        if self.peek()? != b'{' {
            return None;
        }
        self.at += 1;
        // Bit k of `objects` tells whether the container k levels out from the innermost one
        // is an object (1) or an array (0); `depth` containers are open.
        let mut objects: u128 = 1;
        let mut depth = 1usize;
        let mut pending: Option<Pending> = None;
        let mut top_members = 0usize;
        let mut next = Next::Open;
        loop {
            match next {
                Next::Open => {
                    self.ws();
                    let end = if objects & 1 == 1 { b'}' } else { b']' };
                    if self.peek()? == end {
                        self.at += 1;
                        depth -= 1;
                        objects >>= 1;
                        if depth == 0 {
                            break;
                        }
                        next = Next::AfterValue;
                    } else if objects & 1 == 1 {
                        next = Next::Key;
                    } else {
                        next = Next::Value;
                    }
                }
                Next::Key => {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let key = self.compact_at();
                    let raw = self.at + 1;
                    self.string()?;
                    if depth == 1 {
                        let name = &self.bytes[raw..self.at - 1];
                        let mut named = 0u8;
                        for (k, n) in names.iter().enumerate() {
                            // Most keys differ in length: no call to compare bytes.
                            let same =
                                n.len() == name.len() && n.iter().zip(name).all(|(a, b)| a == b);
                            named |= u8::from(same) << k;
                        }
                        pending = Some(Pending {
                            named,
                            key,
                            value: 0,
                            after_first: top_members > 0,
                        });
                        top_members += 1;
                    }
                    self.ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.at += 1;
                    self.ws();
                    next = Next::Value;
                }
                Next::Value => {
                    if depth == 1 {
                        if let Some(p) = &mut pending {
                            p.value = self.compact_at();
                        }
                    }
                    match self.peek()? {
                        b'"' => self.string()?,
                        b'-' | b'0'..=b'9' => self.number()?,
                        b't' => self.literal(b"true")?,
                        b'f' => self.literal(b"false")?,
                        b'n' => self.literal(b"null")?,
                        open @ (b'{' | b'[') => {
                            if depth == MAX_DEPTH {
                                return None;
                            }
                            self.at += 1;
                            depth += 1;
                            objects = objects << 1 | u128::from(open == b'{');
                            next = Next::Open;
                            continue;
                        }
                        _ => return None,
                    }
                    next = Next::AfterValue;
                }
                Next::AfterValue => {
                    let end = self.compact_at();
                    self.ws();
                    let b = self.peek()?;
                    if depth == 1 {
                        if let Some(p) = pending.take().filter(|p| p.named != 0) {
                            let cut = if b == b',' {
                                p.key..end + 1
                            } else if p.after_first {
                                p.key - 1..end
                            } else {
                                p.key..end
                            };
                            for (k, slot) in found.iter_mut().enumerate() {
                                if p.named >> k & 1 == 1 {
                                    *slot = Some(Member {
                                        cut: cut.clone(),
                                        value: p.value..end,
                                    });
                                }
                            }
                        }
                    }
                    let in_object = objects & 1 == 1;
                    match b {
                        b',' => {
                            self.at += 1;
                            self.ws();
                            next = if in_object { Next::Key } else { Next::Value };
                        }
                        b'}' | b']' if (b == b'}') == in_object => {
                            self.at += 1;
                            depth -= 1;
                            objects >>= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => return None,
                    }
                }
            }
        }
        self.ws();
        (self.at == self.bytes.len()).then_some(found)
    }

    /// Steps over the string whose opening quote is the next byte: escapes must be JSON's, no
    /// control characters, UTF-8 valid.
    #[inline(always)]
    fn string(&mut self) -> Option<()> {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        /// The high bit of each byte of `w` that is zero, and maybe of bytes after one.
        fn zeros(w: u64) -> u64 {
            w.wrapping_sub(ONES) & !w
        }
        let bytes = self.bytes;
        let mut i = self.at + 1;
        loop {
            // Eight bytes at a time to the next quote, backslash, control or non-ASCII byte:
            // the lowest flagged byte is always a real one.
            while let Some(word) = bytes.get(i..i + 8) {
                let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                let special = (zeros(w ^ (ONES * u64::from(b'"')))
                    | zeros(w ^ (ONES * u64::from(b'\\')))
                    | (w.wrapping_sub(ONES * 0x20) & !w)
                    | w)
                    & HIGHS;
                if special != 0 {
                    i += special.trailing_zeros() as usize / 8;
                    break;
                }
                i += 8;
            }
            match *bytes.get(i)? {
                b'"' => {
                    self.at = i + 1;
                    return Some(());
                }
                b'\\' => match *bytes.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        // A UTF-16 surrogate must come as a pair, high then low: serde_json
                        // (and so every filter) refuses a lone one.
                        match hex4(bytes.get(i + 2..i + 6)?)? {
                            0xD800..=0xDBFF => {
                                if bytes.get(i + 6..i + 8) != Some(b"\\u")
                                    || !(0xDC00..=0xDFFF)
                                        .contains(&hex4(bytes.get(i + 8..i + 12)?)?)
                                {
                                    return None;
                                }
                                i += 12;
                            }
                            0xDC00..=0xDFFF => return None,
                            _ => i += 6,
                        }
                    }
                    _ => return None,
                },
                0..=0x1f => return None,
                0x80.. => i += utf8_char(&bytes[i..])?,
                _ => i += 1,
            }
        }
    }

    /// Steps over the number that starts at the next byte, as JSON spells numbers.
    #[inline(always)]
    fn number(&mut self) -> Option<()> {
        let bytes = self.bytes;
        let start = self.at;
        let mut i = self.at;
        let digits = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        if bytes[i] == b'-' {
            i += 1;
        }
        let int_start = i;
        match *bytes.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i + 1),
            _ => return None,
        }
        let long = i - int_start > 300;
        if bytes.get(i) == Some(&b'.') {
            let after = digits(i + 1);
            if after == i + 1 {
                return None;
            }
            i = after;
        }
        let mut exponent = false;
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            exponent = true;
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let after = digits(i);
            if after == i {
                return None;
            }
            i = after;
        }
        // A number past `f64`'s range (`1e400`) is refused, as serde_json (and so every filter)
        // refuses it. Only numbers that could be that large are parsed.
        if (exponent || long) && !fits_f64(&bytes[start..i]) {
            return None;
        }
        self.at = i;
        Some(())
    }

    /// Steps over `word` (`true`, `false` or `null`), which must come next.
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.bytes[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        Some(())
    }
}

/// The length of the UTF-8 character `bytes` starts with (its first byte is not ASCII), if it
/// is a valid one.
fn utf8_char(bytes: &[u8]) -> Option<usize> {
    let len = match bytes[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let char = bytes.get(..len)?;
    std::str::from_utf8(char).ok().map(|_| len)
}

/// Whether `line` holds nothing but whitespace (a blank line of JSON Lines).
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| is_ws(b))
}

/// JSON's insignificant whitespace (RFC 8259 §2).
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_objects_only() {
        assert!(validate_object(br#"{"a":1}"#).is_ok());
        assert!(validate_object(b"  {}  \n").is_ok());
        assert!(validate_object(b"[1]")
            .unwrap_err()
            .contains("not an object"));
        assert!(validate_object(b"1").unwrap_err().contains("not an object"));
        assert!(validate_object(b"").unwrap_err().contains("empty"));
        assert!(validate_object(b"{")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(validate_object(b"{} {}")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(validate_object(b"{\"a\":1,}").is_err());
    }

    #[test]
    fn json_lines_are_numbered_and_blank_ones_skipped() {
        let input = b"{\"a\":1}\r\n\r\n  \n{\"b\":2}\n\n{\"c\":3}";
        assert_eq!(
            split_lines(input),
            [
                (1, &b"{\"a\":1}"[..]),
                (4, &b"{\"b\":2}"[..]),
                (6, &b"{\"c\":3}"[..])
            ]
        );
        assert!(split_lines(b"").is_empty());
        assert!(split_lines(b"\n\r\n").is_empty());
    }

    #[test]
    fn a_byte_order_mark_is_named() {
        let e = validate_object("\u{feff}{\"a\":1}".as_bytes()).unwrap_err();
        assert!(e.contains("byte order mark"), "{e}");
        let mut out = Vec::new();
        let e = compact_object("\u{feff}{}".as_bytes(), &[], &mut out).unwrap_err();
        assert!(e.contains("byte order mark"), "{e}");
    }

    #[test]
    fn errors_give_a_column_not_a_line() {
        let e = validate_object(b"{\"a\": tru}").unwrap_err();
        assert!(e.contains("at column"), "{e}");
        assert!(!e.contains("line"), "{e}");
    }

    #[test]
    fn members_are_found_and_cut_cleanly() {
        let cut = |obj: &str, name: &str| {
            let (range, value) = find_member(obj.as_bytes(), name)?;
            let mut out = obj.as_bytes().to_vec();
            let value = String::from_utf8(out[value].to_vec()).unwrap();
            out.drain(range);
            Some((String::from_utf8(out).unwrap(), value))
        };
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(cut(r#"{"a":1,"_ts":5}"#, "_ts"), s(r#"{"a":1}"#, "5"));
        assert_eq!(cut(r#"{"_ts":5,"a":1}"#, "_ts"), s(r#"{"a":1}"#, "5"));
        assert_eq!(cut(r#"{"_ts":5}"#, "_ts"), s("{}", "5"));
        assert_eq!(
            cut(
                r#"{"a":{"_ts":1},"b":[1,"x,}"],"_ts":7,"c":"\"_ts\""}"#,
                "_ts"
            ),
            s(r#"{"a":{"_ts":1},"b":[1,"x,}"],"c":"\"_ts\""}"#, "7")
        );
        // The last of duplicates is the one parsers keep, and the one cut.
        assert_eq!(
            cut(r#"{"_ts":"mine","_ts":9}"#, "_ts"),
            s(r#"{"_ts":"mine"}"#, "9")
        );
        assert_eq!(cut(r#"{"a":1}"#, "_ts"), None);
        assert_eq!(cut("{}", "_ts"), None);
    }

    #[test]
    fn nesting_is_limited_to_what_parsers_take() {
        let nested = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(validate_object(nested(MAX_DEPTH).as_bytes()).is_ok());
        // What is accepted parses again, as filters parse it.
        let deepest: Result<serde_json::Value, _> = serde_json::from_str(&nested(MAX_DEPTH));
        assert!(deepest.is_ok(), "{deepest:?}");
        let err = validate_object(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert!(err.contains("nests deeper"), "{err}");
        assert!(validate_object(nested(100_000).as_bytes()).is_err());
        // Brackets inside strings do not count.
        let in_string = format!("{{\"a\":\"{}\"}}", "[".repeat(1000));
        assert!(validate_object(in_string.as_bytes()).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut doc = String::from("{\"a\":");
        doc.push_str(&"[".repeat(100_000));
        assert!(validate_object(doc.as_bytes()).is_err());
    }

    #[test]
    fn compaction_keeps_strings_and_order() {
        let input = br#" { "b" : "x y\" z" ,	"a":[1, 2 ,{ "c" : "\u00e9 " }] }
"#;
        assert_eq!(
            &*compact(input),
            br#"{"b":"x y\" z","a":[1,2,{"c":"\u00e9 "}]}"#
        );
    }

    #[test]
    fn compaction_borrows_compact_input() {
        let input = br#"{"a":"b c","d":[1,2]}"#;
        assert!(matches!(compact(input), Cow::Borrowed(_)));
    }

    /// `parse_ignored` keeps nothing, yet refuses what a `serde_json::Value` refuses, with the
    /// same error.
    fn parse_ignored_agrees_with_value(bytes: &[u8]) {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde::Deserialize::deserialize(&mut de)
            .and_then(|_: serde_json::Value| de.end())
            .map_err(|e| e.to_string());
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(
            parse_ignored(bytes).map_err(|e| e.to_string()),
            value,
            "{shown:?}"
        );
    }

    #[test]
    fn parse_ignored_refuses_what_a_value_refuses() {
        for text in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"\udc00":1}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":-1e400}"#,
            r#"{"a":1e-400}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":[1,2,{"b":null}],"a":true}"#,
            r#"[{"i":0},{"i":1}]"#,
            r#"{"a":"\x"}"#,
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            "{\"a\":\"\u{1}\"}",
            "",
            "  ",
        ] {
            parse_ignored_agrees_with_value(text.as_bytes());
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        parse_ignored_agrees_with_value(deep.as_bytes());
        let not_deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        parse_ignored_agrees_with_value(not_deep.as_bytes());
        assert!(parse_ignored(not_deep.as_bytes()).is_ok());
    }

    /// The single pass against the three it replaces (serde_json validation, compaction and
    /// member search): same verdict, same compact bytes, same members.
    fn single_pass_agrees(bytes: &[u8], names: [&str; 2]) {
        let raw_names = [names[0].as_bytes(), names[1].as_bytes()];
        let mut out = b"before".to_vec();
        let scanned = scan_object(bytes, &raw_names, &mut out);
        let expected = validate_object(bytes);
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(
            scanned.is_some(),
            expected.is_ok(),
            "{shown:?}: {expected:?}"
        );
        parse_ignored_agrees_with_value(bytes);
        let Some(scanned) = scanned else {
            assert_eq!(out, b"before", "a refused input leaves the output alone");
            let mut again = Vec::new();
            assert_eq!(
                compact_object(bytes, &raw_names, &mut again),
                Err(expected.unwrap_err())
            );
            assert!(again.is_empty());
            return;
        };
        let compacted = compact(bytes);
        let mine: &[u8] = if scanned.copied {
            assert_eq!(&out[..6], b"before");
            &out[6..]
        } else {
            assert_eq!(out, b"before");
            bytes
        };
        assert_eq!(mine, &*compacted, "{shown:?}");
        assert_eq!(scanned.len, compacted.len());
        assert_eq!(scanned.copied, matches!(compacted, Cow::Owned(_)));
        for (member, name) in scanned.members.iter().zip(names) {
            let old = find_member(&compacted, name).map(|(cut, value)| Member { cut, value });
            assert_eq!(member, &old, "{shown:?} {name}");
        }
        let mut again = Vec::new();
        assert_eq!(compact_object(bytes, &raw_names, &mut again), Ok(scanned));
    }

    #[test]
    fn what_filters_cannot_read_is_refused() {
        // serde_json, and so every filter, refuses these: numbers past f64, lone surrogates.
        let long = format!(r#"{{"n":{}}}"#, "9".repeat(400));
        for bad in [
            r#"{"n":1e400}"#,
            r#"{"n":-1E+309}"#,
            long.as_str(),
            r#"{"s":"\udddd"}"#,
            r#"{"s":"\ud800"}"#,
            r#"{"s":"\ud800x"}"#,
            r#"{"s":"\ud800\u0041"}"#,
            r#"{"\udc00":1}"#,
        ] {
            let why = validate_object(bad.as_bytes()).unwrap_err();
            assert!(why.starts_with("it is not valid JSON ("), "{bad}: {why}");
            assert!(
                scan_object(bad.as_bytes(), &[], &mut Vec::new()).is_none(),
                "{bad}"
            );
        }
        let digits = format!(r#"{{"n":{}}}"#, "9".repeat(300));
        for good in [
            r#"{"n":1e308,"m":1E-400,"z":-0e5}"#,
            digits.as_str(),
            r#"{"s":"\uD83D\uDE00 \ud83d\ude00 \u00e9"}"#,
        ] {
            assert_eq!(validate_object(good.as_bytes()), Ok(()), "{good}");
            assert!(
                scan_object(good.as_bytes(), &[], &mut Vec::new()).is_some(),
                "{good}"
            );
            let parsed: serde_json::Value = serde_json::from_str(good).unwrap();
            assert!(parsed.is_object());
        }
    }

    #[test]
    fn single_pass_on_nasty_inputs() {
        let nested = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        let nested_objects = |n: usize| format!("{}{}", "{\"_ts\":".repeat(n), "1}".repeat(n));
        let mut cases: Vec<Vec<u8>> = [
            r#"{}"#,
            r#" { } "#,
            "\t{\r\n}\n",
            r#"{"_ts":1}"#,
            r#"{"a":1,"_ts":2}"#,
            r#"{"_ts":2,"a":1}"#,
            r#"{ "a" : 1 , "_ts" : 2 , "b" : [ 1 , { "_ts" : 3 } ] }"#,
            r#"{"a":{"_ts":1},"b":[1,"x,}"],"_ts":7,"c":"\"_ts\""}"#,
            r#"{"_ts":"mine","_ts":9}"#,
            r#"{"_ts":9,"_ts":"mine"}"#,
            r#"{"\u005fts":1}"#,
            r#"{"_ts":1e400,"p":-0}"#,
            r#"{"n":[-0,0,0.5,-1.5e-7,1E+2,12345678901234567890123]}"#,
            r#"{"s":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00\udddd"}"#,
            "{\"s\":\"é😀\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}\"}",
            r#"{"t":true,"f":false,"n":null,"e":[],"o":{}}"#,
            r#"{"a":"a string of more than eight bytes \\\\\" with escapes"}"#,
            // Refused:
            "",
            "   ",
            "[1]",
            "1",
            "\"s\"",
            "{",
            "}",
            "{} {}",
            "{}x",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{1:1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":[1}"#,
            r#"{"a":{]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e+}"#,
            r#"{"a":0x1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nulll}"#,
            r#"{"a":True}"#,
            r#"{"a":NaN}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12g4"}"#,
            r#"{"a":'x'}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"nl\nhere\"}",
            "{\"a\":\"unterminated}",
            "{\"a\":1}\u{b}",
            "{\"a\":1}\u{c}",
            "\u{feff}{}",
            "{\"a\":1}\u{a0}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        cases.push(nested(MAX_DEPTH).into_bytes());
        cases.push(nested(MAX_DEPTH + 1).into_bytes());
        cases.push(nested_objects(MAX_DEPTH).into_bytes());
        cases.push(nested_objects(MAX_DEPTH + 1).into_bytes());
        cases.push(format!("{{\"a\":\"{}\"}}", "[".repeat(1000)).into_bytes());
        for bad in [
            &b"\x80"[..],
            b"\xc0\xaf",
            b"\xc3",
            b"\xe0\x80\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xf5\x80\x80\x80",
            b"\xff",
            b"\xe2\x82",
        ] {
            for (before, after) in [(&b"{\"a\":\""[..], &b"\"}"[..]), (b"{\"", b"\":1}")] {
                cases.push([before, bad, after].concat());
                // Where the eight-byte steps meet it.
                cases.push([before, b"12345678901", bad, b"x", after].concat());
            }
            cases.push([b"{\"a\":1}", bad].concat());
        }
        for case in &cases {
            single_pass_agrees(case, ["_ts", "p"]);
            single_pass_agrees(case, ["_ts", "_ts"]);
            single_pass_agrees(case, ["a", "\u{e9}"]);
        }
    }

    /// Random JSON texts: valid ones with whitespace everywhere, escapes, unicode and numbers
    /// of every shape, and then broken by an edit.
    fn json_value() -> impl Strategy<Value = String> {
        let ws = prop::sample::select(vec!["", "", "", " ", "  ", "\t", "\n", "\r\n"]);
        let number = prop_oneof![
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?",
            prop::sample::select(vec!["1e400", "-0", "-0.0", "1E-400", "0e0"])
                .prop_map(String::from),
        ];
        let string = "\"([a-z _:,{}\\[\\]é😀\u{7f}\u{800}]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4}|\\\\ud800){0,12}\"";
        let leaf = prop_oneof![
            prop::sample::select(vec!["true", "false", "null"]).prop_map(String::from),
            number,
            string,
        ];
        let key = prop_oneof![
            prop::sample::select(vec![
                "\"_ts\"",
                "\"p\"",
                "\"a\"",
                "\"\\u005fts\"",
                "\"_ts \"",
                "\"\"",
                "\"_t\"",
            ])
            .prop_map(String::from),
            "\"[a-z_é]{0,4}\"",
        ];
        leaf.prop_recursive(6, 48, 6, move |inner| {
            let item =
                (ws.clone(), inner.clone(), ws.clone()).prop_map(|(a, v, b)| format!("{a}{v}{b}"));
            let member = (
                ws.clone(),
                key.clone(),
                ws.clone(),
                ws.clone(),
                inner,
                ws.clone(),
            )
                .prop_map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"));
            prop_oneof![
                (prop::collection::vec(item, 0..5), ws.clone())
                    .prop_map(|(items, w)| format!("[{w}{}]", items.join(","))),
                (prop::collection::vec(member, 0..5), ws.clone())
                    .prop_map(|(members, w)| format!("{{{w}{}}}", members.join(","))),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = Vec<u8>> {
        let ws = prop::sample::select(vec!["", " ", "\n", "\t "]);
        let member = (
            json_value(),
            prop::sample::select(vec!["\"_ts\"", "\"p\"", "\"x\""]),
        )
            .prop_map(|(v, k)| format!("{k}:{v}"));
        (ws.clone(), prop::collection::vec(member, 0..6), ws)
            .prop_map(|(a, members, b)| format!("{a}{{{}}}{b}", members.join(",")).into_bytes())
    }

    /// An edit that mostly breaks a text: a byte deleted, replaced or inserted, or the text cut.
    fn edited() -> impl Strategy<Value = Vec<u8>> {
        let nasty = prop::sample::select(vec![
            b'"', b'\\', b',', b':', b'{', b'}', b'[', b']', b'0', b'-', b'.', b'e', b' ', b'\n',
            0, 0x1f, 0x7f, 0x80, 0xc3, 0xe2, 0xed, 0xf0, 0xff, b'u', b't',
        ]);
        (json_object(), any::<prop::sample::Index>(), 0..4u8, nasty).prop_map(
            |(mut text, at, how, byte)| {
                if text.is_empty() {
                    return text;
                }
                let i = at.index(text.len());
                match how {
                    0 => {
                        text.remove(i);
                    }
                    1 => text[i] = byte,
                    2 => text.insert(i, byte),
                    _ => text.truncate(i),
                }
                text
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn single_pass_agrees_on_valid_objects(text in json_object()) {
            single_pass_agrees(&text, ["_ts", "p"]);
            single_pass_agrees(&text, ["_ts", "_ts"]);
        }

        #[test]
        fn single_pass_agrees_on_edited_objects(text in edited()) {
            single_pass_agrees(&text, ["_ts", "p"]);
        }

        #[test]
        fn single_pass_agrees_on_byte_soup(
            text in prop::collection::vec(prop::sample::select(b"{}[]\":,\\ \n0123-.eEtrufalsn_ \xc3\xa9\x80".to_vec()), 0..40)
        ) {
            let mut text = text;
            text.insert(0, b'{');
            single_pass_agrees(&text, ["_ts", "p"]);
        }
    }

    #[test]
    fn escaped_backslash_before_quote_ends_string() {
        let input = br#"{"a":"x\\" , "b":1}"#;
        assert_eq!(&*compact(input), br#"{"a":"x\\","b":1}"#);
    }
}
