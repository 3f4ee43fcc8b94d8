//! API keys: HTTP Basic with the key as the user name, or `?apikey=`.

use std::collections::{HashMap, HashSet};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;

use super::params::Params;
use super::plain;

/// The API keys a server accepts, each allowed every project or a list of them.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: HashMap<String, Option<HashSet<u64>>>,
}

impl ApiKeys {
    /// No keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `key` to read and write every project. An empty key never authenticates.
    pub fn allow_all(mut self, key: impl Into<String>) -> Self {
        self.keys.insert(key.into(), None);
        self
    }

    /// Allows `key` to read and write only `projects`. An empty key never authenticates.
    pub fn allow(
        mut self,
        key: impl Into<String>,
        projects: impl IntoIterator<Item = u64>,
    ) -> Self {
        self.keys
            .insert(key.into(), Some(projects.into_iter().collect()));
        self
    }

    /// Adds every key of `other` (its entries win).
    pub fn merge(mut self, other: ApiKeys) -> Self {
        self.keys.extend(other.keys);
        self
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a keys file: one key per line, optionally followed by the project ids it may use
    /// (separated by spaces or commas); blank lines and lines starting with `#` are skipped.
    ///
    /// ```
    /// let keys = activitylog::http::ApiKeys::parse("admin\nclient 1111111, 2222222\n").unwrap();
    /// assert_eq!(keys.len(), 2);
    /// ```
    pub fn parse(text: &str) -> Result<ApiKeys, String> {
        let mut keys = ApiKeys::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty());
            let Some(key) = words.next() else {
                return Err(format!("line {} has no API key", n + 1));
            };
            let ids = words
                .map(|w| {
                    w.parse::<u64>()
                        .map_err(|_| format!("line {}: {w:?} is not a project id", n + 1))
                })
                .collect::<Result<Vec<u64>, String>>()?;
            keys = if ids.is_empty() {
                keys.allow_all(key)
            } else {
                keys.allow(key, ids)
            };
        }
        Ok(keys)
    }
}

/// Checks the request's key. `Ok(None)`: every project allowed; `Ok(Some(set))`: only those.
/// `project`: the project the request touches, if one.
pub(crate) fn check(
    keys: &Option<ApiKeys>,
    headers: &HeaderMap,
    params: &Params,
    project: Option<u64>,
) -> Result<Option<HashSet<u64>>, Response> {
    let Some(keys) = keys else {
        return Ok(None);
    };
    let allowed = known(keys, basic_user(headers).or_else(|| params.apikey.clone()))?;
    if let (Some(p), Some(allowed)) = (project, allowed) {
        if !allowed.contains(&p) {
            return Err(plain(
                StatusCode::FORBIDDEN,
                format!("this API key may not use project {p}"),
            ));
        }
    }
    Ok(allowed.clone())
}

/// Checks that the request carries a known key, before anything else about it is looked at:
/// without one, every request is 401, whatever its path, method or parameters.
pub(crate) fn authenticate(
    keys: &ApiKeys,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), Response> {
    let from_query = || {
        form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .filter(|(name, _)| name == "apikey")
            .last()
            .map(|(_, value)| value.into_owned())
    };
    known(keys, basic_user(headers).or_else(from_query)).map(|_| ())
}

/// The projects `key` may use, or 401 when it is missing or unknown.
fn known(keys: &ApiKeys, key: Option<String>) -> Result<&Option<HashSet<u64>>, Response> {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(unauthorized(
            "an API key is required: use HTTP Basic auth with the key as the user, or ?apikey=",
        ));
    };
    keys.keys
        .get(&key)
        .ok_or_else(|| unauthorized("the API key is not valid"))
}

fn unauthorized(sentence: &str) -> Response {
    let mut r = plain(StatusCode::UNAUTHORIZED, sentence);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"activitylog\""),
    );
    r
}

/// The user name of an HTTP Basic `Authorization` header.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    Some(user.to_owned())
}
