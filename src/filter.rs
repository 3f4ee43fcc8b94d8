//! Message filters, as the Activity API takes them: `[field, op, [values]]`.
//!
//! A filter looks at one top-level field of a message. Several filters combine with AND.
//! Messages are parsed only when a filter needs it.
//!
//! What each operator matches is on [`Filter`].

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use crate::error::{excerpt, quoted, Error, Result};

/// A comparison operator of a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `in`
    In,
    /// `contains`
    Contains,
    /// `icontains`
    IContains,
    /// `startswith`
    StartsWith,
    /// `exists`
    Exists,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "in" => Op::In,
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "startswith" => Op::StartsWith,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::In => "in",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::StartsWith => "startswith",
            Op::Exists => "exists",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One filter: `[field, op, [values]]`, on one top-level field of a message. Several filters
/// (on a [`Query`](crate::Query), or repeated `filter` parameters over HTTP) must all match.
///
/// | op | matches when the field… |
/// |---|---|
/// | `=` | equals any of the values |
/// | `!=` | exists and equals none of the values |
/// | `>` `>=` `<` `<=` | compares so with the single value: numbers numerically, strings by bytes; other types never match |
/// | `in` | equals any of the values (as `=`) |
/// | `contains` | is a string containing the single string value, or an array with an element equal to it |
/// | `icontains` | is a string containing the single string value, ignoring case |
/// | `startswith` | is a string starting with the single string value |
/// | `exists` | is present (the values must be empty) |
///
/// Numbers are equal by value (`1` = `1.0`), inside arrays and objects too.
///
/// A message without the field matches none of them, `!=` included.
///
/// ```
/// use activitylog::{Filter, Query, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append(1, (0..10).map(|c| format!(r#"{{"c":{c}}}"#)))?;
/// let query = Query::new().filter(Filter::parse(r#"["c", ">", [5]]"#)?).count(2);
/// let found: Vec<String> = store
///     .query(&query)?
///     .map(|m| m.map(|m| m.into_json()))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(found, [r#"{"c":9}"#, r#"{"c":8}"#]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    field: String,
    op: Op,
    values: Vec<Value>,
    /// Lower-cased needle for `icontains`.
    folded: Option<String>,
}

impl Filter {
    /// Parses a filter from its JSON text, e.g. `["c", ">", [5]]`.
    ///
    /// A malformed filter is [`Error::InvalidQuery`] saying what is wrong.
    pub fn parse(json: &str) -> Result<Filter> {
        let bad = |reason: String| Error::InvalidQuery { reason };
        // Parsed as it is; shown escaped and cut short.
        let shown = &excerpt(json);
        let value: Value = serde_json::from_str(json)
            .map_err(|e| bad(format!("filter {shown} is not valid JSON ({e})")))?;
        let Value::Array(parts) = value else {
            return Err(bad(format!(
                "filter {shown} must be an array [field, op, [values]]"
            )));
        };
        let [field, op, values] = <[Value; 3]>::try_from(parts).map_err(|parts| {
            bad(format!(
                "filter {shown} has {} elements; it must be [field, op, [values]]",
                parts.len()
            ))
        })?;
        let Value::String(field) = field else {
            return Err(bad(format!(
                "filter {shown}: the field name must be a string"
            )));
        };
        let op = op.as_str().and_then(Op::parse).ok_or_else(|| {
            bad(format!(
                "filter {shown}: unknown operator {}",
                excerpt(&op.to_string())
            ))
        })?;
        let Value::Array(values) = values else {
            return Err(bad(format!("filter {shown}: the values must be an array")));
        };
        Filter::new(field, op, values)
    }

    /// Builds a filter, checking the number and type of values the operator needs.
    pub fn new(field: impl Into<String>, op: Op, values: Vec<Value>) -> Result<Filter> {
        let field = field.into();
        let bad = |what: &str| Error::InvalidQuery {
            reason: format!("filter on {} with {op}: {what}", quoted(&field)),
        };
        match op {
            Op::Exists if !values.is_empty() => return Err(bad("takes no values")),
            Op::Eq | Op::Ne | Op::In if values.is_empty() => {
                return Err(bad("needs at least one value"))
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Contains if values.len() != 1 => {
                return Err(bad("needs exactly one value"))
            }
            Op::IContains | Op::StartsWith if !matches!(values.as_slice(), [Value::String(_)]) => {
                return Err(bad("needs exactly one string value"))
            }
            _ => {}
        }
        let folded = match (op, values.first()) {
            (Op::IContains, Some(Value::String(s))) => Some(fold_case(s)),
            _ => None,
        };
        Ok(Filter {
            field,
            op,
            values,
            folded,
        })
    }

    /// The field the filter looks at.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The operator.
    pub fn op(&self) -> Op {
        self.op
    }

    /// Whether a parsed message matches.
    pub fn matches(&self, message: &Map<String, Value>) -> bool {
        let field = message.get(&self.field);
        let Some(v) = field else {
            return false;
        };
        let first = self.values.first();
        match self.op {
            Op::Exists => true,
            Op::Eq | Op::In => self.values.iter().any(|x| json_eq(v, x)),
            Op::Ne => !self.values.iter().any(|x| json_eq(v, x)),
            Op::Gt => compare(v, first) == Some(Ordering::Greater),
            Op::Ge => matches!(compare(v, first), Some(Ordering::Greater | Ordering::Equal)),
            Op::Lt => compare(v, first) == Some(Ordering::Less),
            Op::Le => matches!(compare(v, first), Some(Ordering::Less | Ordering::Equal)),
            Op::Contains => match (v, first) {
                (Value::String(s), Some(Value::String(needle))) => s.contains(needle.as_str()),
                (Value::Array(items), Some(x)) => items.iter().any(|i| json_eq(i, x)),
                _ => false,
            },
            Op::IContains => match (v, &self.folded) {
                (Value::String(s), Some(needle)) => fold_case(s).contains(needle.as_str()),
                _ => false,
            },
            Op::StartsWith => match (v, first) {
                (Value::String(s), Some(Value::String(p))) => s.starts_with(p.as_str()),
                _ => false,
            },
        }
    }
}

/// A set of filters combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Filters(Vec<Filter>);

impl Filters {
    pub(crate) fn new(filters: Vec<Filter>) -> Self {
        Filters(filters)
    }

    /// Whether the message (compact JSON object text) passes every filter. Parses only if there
    /// are filters.
    pub(crate) fn pass(&self, json: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        match serde_json::from_str::<Map<String, Value>>(json) {
            Ok(map) => self.0.iter().all(|f| f.matches(&map)),
            Err(_) => false,
        }
    }
}

/// Lower-cases `s` one character at a time, so that a part of a string folds to a part of the
/// folded string (`str::to_lowercase` turns a word-final `Σ` into `ς`, a lone one into `σ`).
fn fold_case(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Equality where numbers compare by value (`1` = `1.0`), inside arrays and objects too.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

fn compare(a: &Value, b: Option<&Value>) -> Option<Ordering> {
    match (a, b?) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    match (integer(x), integer(y)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        (Some(a), None) => compare_integer_float(a, y.as_f64()?),
        (None, Some(b)) => compare_integer_float(b, x.as_f64()?).map(Ordering::reverse),
        (None, None) => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

/// A number held as an integer (`i64` or `u64`), if it is one.
fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Compares an integer with a float exactly: converting the integer to `f64` would round it
/// beyond 2^53 (9007199254740993 would equal 9007199254740992.0).
fn compare_integer_float(i: i128, f: f64) -> Option<Ordering> {
    // Every integer held is in -2^63..2^64; floats outside that range are decided by sign.
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_64 {
        return Some(Ordering::Less);
    }
    if f < -TWO_64 {
        return Some(Ordering::Greater);
    }
    // Exact: `f` is within ±2^64, so its integer part fits an i128, and `f - t` is exact.
    let t = f.trunc();
    match i.cmp(&(t as i128)) {
        Ordering::Equal => 0.0.partial_cmp(&(f - t)),
        unequal => Some(unequal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(filter: &str, msg: &str) -> bool {
        Filters::new(vec![Filter::parse(filter).unwrap()]).pass(msg)
    }

    #[test]
    fn operators() {
        assert!(pass(r#"["c", ">", [5]]"#, r#"{"c":9}"#));
        assert!(!pass(r#"["c", ">", [5]]"#, r#"{"c":5}"#));
        assert!(pass(r#"["c", ">=", [5]]"#, r#"{"c":5.0}"#));
        assert!(pass(r#"["c", "<", [5]]"#, r#"{"c":-1}"#));
        assert!(pass(r#"["c", "<=", ["b"]]"#, r#"{"c":"a"}"#));
        assert!(!pass(r#"["c", ">", [5]]"#, r#"{"c":"9"}"#));
        assert!(pass(r#"["e", "=", ["a", "b"]]"#, r#"{"e":"b"}"#));
        assert!(pass(r#"["e", "in", ["a", "b"]]"#, r#"{"e":"a"}"#));
        assert!(pass(r#"["e", "!=", ["a"]]"#, r#"{"e":"b"}"#));
        assert!(!pass(r#"["e", "!=", ["a"]]"#, r#"{"x":"b"}"#));
        assert!(pass(r#"["e", "contains", ["job"]]"#, r#"{"e":"job:done"}"#));
        assert!(pass(r#"["e", "contains", [2]]"#, r#"{"e":[1,2]}"#));
        assert!(pass(r#"["e", "icontains", ["JOB"]]"#, r#"{"e":"a Job"}"#));
        assert!(pass(
            r#"["e", "startswith", ["job:"]]"#,
            r#"{"e":"job:done"}"#
        ));
        assert!(!pass(
            r#"["e", "startswith", ["job:"]]"#,
            r#"{"e":"x job:"}"#
        ));
        assert!(pass(r#"["e", "exists", []]"#, r#"{"e":null}"#));
        assert!(!pass(r#"["e", "exists", []]"#, r#"{"f":1}"#));
        assert!(!pass(r#"["e", "=", [1]]"#, r#"{}"#));
    }

    /// The text is parsed whole, however long, with tabs and newlines between its elements;
    /// only what an error repeats of it is cut short.
    #[test]
    fn a_long_filter_with_whitespace_parses() {
        let long = "[\"event\",\t\"in\",\n[\"job:started\", \"job:completed\", \"job:failed\"]]";
        assert!(long.len() > 60);
        assert!(pass(long, r#"{"event":"job:failed"}"#));
        assert!(!pass(long, r#"{"event":"job:deleted"}"#));
    }

    /// A string always `icontains` any part of itself: case is folded letter by letter, not
    /// with `str::to_lowercase`'s word-final sigma, which made "ΟΔΟΣ" fold to "οδος" while the
    /// needle "Σ" folded to "σ".
    #[test]
    fn icontains_finds_a_capital_sigma_at_the_end_of_a_word() {
        assert!(pass(r#"["e", "icontains", ["Σ"]]"#, r#"{"e":"ΟΔΟΣ"}"#));
        assert!(pass(r#"["e", "icontains", ["δοσ"]]"#, r#"{"e":"ΟΔΟΣ"}"#));
    }

    /// An integer and a float compare by their exact values, not after the integer is rounded
    /// to a float: 2^53 + 1 is more than 2^53 (as 9007199254740992.0), and u64::MAX is less
    /// than 2^64 (as 18446744073709551616.0).
    #[test]
    fn integers_beyond_f64_precision_compare_exactly_with_floats() {
        let big = r#"{"c":9007199254740993}"#;
        assert!(pass(r#"["c", ">", [9007199254740992.0]]"#, big));
        assert!(!pass(r#"["c", "=", [9007199254740992.0]]"#, big));
        assert!(!pass(r#"["c", "<=", [9007199254740992.0]]"#, big));
        assert!(pass(
            r#"["c", "<", [9007199254740993]]"#,
            r#"{"c":9007199254740992.0}"#
        ));
        assert!(pass(
            r#"["c", "<", [18446744073709551616.0]]"#,
            r#"{"c":18446744073709551615}"#
        ));
        assert!(pass(
            r#"["c", ">", [-9223372036854777856.0]]"#,
            r#"{"c":-9223372036854775808}"#
        ));
        assert!(pass(r#"["c", "<", [-0.5]]"#, r#"{"c":-1}"#));
        assert!(pass(r#"["c", ">", [-1.5]]"#, r#"{"c":-1}"#));
        assert!(pass(r#"["c", "=", [-3]]"#, r#"{"c":-3.0}"#));
    }

    /// Numbers compare by value inside arrays and objects too, as they do at the top level and
    /// as `contains` compares an array's elements: `[1]` equals `[1.0]`.
    #[test]
    fn numbers_inside_arrays_and_objects_compare_by_value() {
        assert!(pass(r#"["c", "=", [[1.0, 2]]]"#, r#"{"c":[1,2.0]}"#));
        assert!(pass(r#"["c", "in", [{"x": 1.0}]]"#, r#"{"c":{"x":1}}"#));
        assert!(pass(r#"["c", "contains", [[1.0]]]"#, r#"{"c":[[1]]}"#));
        assert!(!pass(
            r#"["c", "!=", [[{"x": [1e0]}]]]"#,
            r#"{"c":[{"x":[1]}]}"#
        ));
        assert!(!pass(r#"["c", "=", [[1, 2]]]"#, r#"{"c":[1]}"#));
        assert!(!pass(
            r#"["c", "=", [{"x": 1, "y": 1}]]"#,
            r#"{"c":{"x":1}}"#
        ));
        assert!(!pass(r#"["c", "=", [{"x": 1}]]"#, r#"{"c":{"y":1}}"#));
    }

    #[test]
    fn malformed_filters_say_what_is_wrong() {
        let err = |s: &str| Filter::parse(s).unwrap_err().to_string();
        assert!(err("nope").contains("not valid JSON"));
        assert!(err(r#"{"a":1}"#).contains("must be an array"));
        assert!(err(r#"["a", "="]"#).contains("2 elements"));
        assert!(err(r#"[1, "=", [1]]"#).contains("field name"));
        assert!(err(r#"["a", "~", [1]]"#).contains("unknown operator"));
        assert!(err(r#"["a", "=", 1]"#).contains("values must be an array"));
        assert!(err(r#"["a", ">", [1, 2]]"#).contains("exactly one value"));
        assert!(err(r#"["a", "=", []]"#).contains("at least one"));
        assert!(err(r#"["a", "exists", [1]]"#).contains("no values"));
        assert!(err(r#"["a", "icontains", [1]]"#).contains("string"));
    }
}
