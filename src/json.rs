//! JSON at the boundary: validation that a message is one JSON object, and whitespace removal.
//!
//! The engine stores bytes. A message is checked once, on append, with serde_json (validation
//! only, no DOM), then compacted by a byte scan that drops whitespace outside strings. Keys keep
//! their order and escapes stay exactly as given, so the stored form is the caller's object minus
//! insignificant whitespace, and always one line.

use std::borrow::Cow;
use std::ops::Range;

use serde::de::IgnoredAny;

/// Checks that `bytes` is exactly one JSON object (surrounding whitespace allowed).
///
/// Returns a plain description of the problem on failure. serde_json's recursion limit bounds
/// nesting, so a hostile document cannot overflow the stack.
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
    input
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(|&b| is_ws(b)))
        .collect()
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

/// Parses one JSON value without building it, then requires the end of input.
fn parse_ignored(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let IgnoredAny = serde::Deserialize::deserialize(&mut de)?;
    de.end()
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

/// JSON's insignificant whitespace (RFC 8259 §2).
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn escaped_backslash_before_quote_ends_string() {
        let input = br#"{"a":"x\\" , "b":1}"#;
        assert_eq!(&*compact(input), br#"{"a":"x\\","b":1}"#);
    }
}
