//! Query-string parameters of the Activity API.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::plain;
use crate::error::quoted;
use crate::{Filter, Meta};

/// The most `p` parameters one request may carry.
const MAX_PROJECTS: usize = 1_000;

/// The response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// JSON Lines: one object per line, each line ending with `\n`.
    JsonLines,
    /// One JSON array.
    Json,
}

/// Parsed query parameters. Unknown parameters are ignored.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pub(crate) count: Option<u64>,
    pub(crate) pcount: Option<u64>,
    pub(crate) projects: Option<Vec<u64>>,
    /// Each meta field once, in the order first asked for.
    pub(crate) meta: Vec<Meta>,
    pub(crate) filters: Vec<Filter>,
    pub(crate) format: Option<String>,
    pub(crate) apikey: Option<String>,
}

impl Params {
    /// Parses a raw query string; a bad value is a 400 response saying which.
    pub(crate) fn parse(query: Option<&str>) -> Result<Params, Response> {
        let bad = |s: String| plain(StatusCode::BAD_REQUEST, s);
        let mut params = Params::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "count" => params.count = Some(non_negative("count", &value).map_err(bad)?),
                "pcount" => params.pcount = Some(non_negative("pcount", &value).map_err(bad)?),
                "p" => {
                    let id = value.parse::<u64>().map_err(|_| {
                        bad(format!(
                            "p={} is not a project id (an unsigned integer)",
                            quoted(&value)
                        ))
                    })?;
                    let ps = params.projects.get_or_insert_with(Vec::new);
                    if ps.len() >= MAX_PROJECTS {
                        return Err(bad(format!(
                            "too many p parameters: at most {MAX_PROJECTS} projects per request"
                        )));
                    }
                    ps.push(id);
                }
                "meta" => {
                    let meta = value.parse::<Meta>().map_err(|e| bad(e.to_string()))?;
                    // A name repeated counts once, at its first place (as `p`'s duplicates do).
                    if !params.meta.contains(&meta) {
                        params.meta.push(meta);
                    }
                }
                "filter" => params
                    .filters
                    .push(Filter::parse(&value).map_err(|e| bad(e.to_string()))?),
                "format" => params.format = Some(value.into_owned()),
                "apikey" => params.apikey = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(params)
    }

    /// The response format: `format=` wins, then `Accept` when it prefers `application/json`
    /// (see [`prefers_json`]), else JSON Lines.
    pub(crate) fn format(&self, headers: &HeaderMap) -> Result<Format, Response> {
        match self.format.as_deref() {
            Some("json") => Ok(Format::Json),
            Some("jl") | Some("jsonl") => Ok(Format::JsonLines),
            Some(other) => Err(plain(
                StatusCode::BAD_REQUEST,
                format!("format {} is not supported; use json or jl", quoted(other)),
            )),
            None => {
                // Several `Accept` lines are one comma-separated list (RFC 9110, 5.3).
                let accept = headers
                    .get_all(header::ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(",");
                Ok(if prefers_json(&accept) {
                    Format::Json
                } else {
                    Format::JsonLines
                })
            }
        }
    }
}

/// Whether an `Accept` header asks for `application/json` over JSON Lines: JSON's quality
/// (media types compared without regard to case; `q=0` is "not acceptable") is above zero and
/// at least that of `application/x-jsonlines` (or `application/jsonl`). Wildcards express no
/// preference, so they give the default, JSON Lines.
fn prefers_json(accept: &str) -> bool {
    let (mut json, mut lines) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(0.0);
        if media.eq_ignore_ascii_case("application/json") {
            json = json.max(q);
        } else if media.eq_ignore_ascii_case("application/x-jsonlines")
            || media.eq_ignore_ascii_case("application/jsonl")
        {
            lines = lines.max(q);
        }
    }
    json > 0.0 && json >= lines
}

fn non_negative(name: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| format!("{name}={} is not a non-negative integer", quoted(value)))
}
