//! `activitylog verify` and `activitylog stats`: looking at a store without changing it.

use std::io::{self, BufWriter, Write};
use std::time::Instant;

use activitylog::{Problem, ProjectStats, Verified};
use anyhow::{bail, Result};
use clap::Args;

use crate::report::{self, count, Unit};
use crate::units::iso8601_ms;
use crate::{chosen_projects, open_read_only, written, StoreArgs};

/// Arguments of `activitylog verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// A project to verify (repeatable); all projects when absent.
    #[arg(short = 'p', long = "project", value_name = "ID")]
    projects: Vec<u64>,
}

/// Arguments of `activitylog stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// A project to describe (repeatable); all projects when absent.
    #[arg(short = 'p', long = "project", value_name = "ID")]
    projects: Vec<u64>,

    /// One JSON object per project (JSON Lines), times in integer milliseconds since the epoch.
    #[arg(long)]
    json: bool,
}

/// `activitylog verify`: every problem on stdout, a summary on stderr, exit 1 on any problem.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let dir = &args.store.dir;
    let mut ids = args.projects.clone();
    ids.sort_unstable();
    ids.dedup();
    // A project that is not there is one error, before anything is verified. (A store too
    // damaged to open is left to verify, which says what is wrong with it.)
    if let Ok(store) = open_read_only(dir) {
        let known = store.projects()?;
        if let Some(id) = ids.iter().find(|id| known.binary_search(id).is_err()) {
            bail!("project {id} is not in the store {}", dir.display());
        }
    }
    let bar = report::bar(progress_total(&args), Unit::Bytes, "verifying");
    let started = Instant::now();
    let mut stdout = io::stdout().lock();
    let mut printing = true;
    let mut print_error = None;
    let mut on_problem = |p: &Problem| {
        if printing {
            bar.suspend(|| match written(writeln!(stdout, "{p}")) {
                Ok(open) => printing = open,
                Err(e) => {
                    printing = false;
                    print_error = Some(e);
                }
            });
        }
    };
    let on_bytes = |n: u64| bar.inc(n);
    // One verification of all the projects given: the store's own files (`CLOCK`) are checked
    // once, so a problem of theirs is reported and counted once.
    let chosen = (!ids.is_empty()).then_some(&ids[..]);
    let result = activitylog::verify(dir, chosen, &mut on_problem, on_bytes);
    bar.finish_and_clear();
    let total: Verified = result?;
    if let Some(e) = print_error {
        return Err(e);
    }
    // (Found before when the store opened; here only if it did not.)
    let missing = (ids.len() as u64).saturating_sub(total.projects);
    if missing > 0 {
        bail!(
            "{} of the projects given {} not in the store {}",
            missing,
            if missing == 1 { "is" } else { "are" },
            dir.display()
        );
    }
    report::say(&format!(
        "verified {}; {}, {}, {}",
        report::throughput(total.records, "record", total.bytes, started),
        count(total.projects, "project"),
        count(total.segments, "segment"),
        match total.problems {
            0 => "no problems".to_string(),
            n => count(n, "problem"),
        }
    ));
    if total.problems > 0 {
        bail!("{} found", count(total.problems, "problem"));
    }
    Ok(())
}

/// The bytes verification will read, for the progress bar: worked out only when a bar is shown,
/// and only as far as the store opens (verification reports what does not).
fn progress_total(args: &VerifyArgs) -> Option<u64> {
    use std::io::IsTerminal;
    if !io::stderr().is_terminal() {
        return None;
    }
    let store = open_read_only(&args.store.dir).ok()?;
    let ids = chosen_projects(&store, &args.projects).ok()?;
    let mut total = 0;
    for id in ids {
        if let Ok(Some(s)) = store.stats(id) {
            total += s.bytes;
        }
    }
    Some(total)
}

/// `activitylog stats`: a table (or JSON Lines) of each project's counts and time span.
pub fn stats(args: StatsArgs) -> Result<()> {
    let dir = &args.store.dir;
    let store = open_read_only(dir)?;
    let ids = chosen_projects(&store, &args.projects)?;
    let mut all = Vec::with_capacity(ids.len());
    for id in ids {
        match store.stats(id)? {
            Some(s) => all.push(s),
            None if args.projects.is_empty() => {}
            None => bail!("project {id} is not in the store {}", dir.display()),
        }
    }
    let text = if args.json {
        all.iter().map(json_line).collect()
    } else {
        table(&all)
    };
    let mut out = BufWriter::new(io::stdout().lock());
    if written(out.write_all(text.as_bytes()))? {
        written(out.flush())?;
    }
    Ok(())
}

/// One project's stats as a JSON object and a newline.
fn json_line(s: &ProjectStats) -> String {
    let ms = |stamp: Option<u64>| stamp.map_or("null".to_string(), |us| (us / 1000).to_string());
    format!(
        "{{\"project\":{},\"messages\":{},\"bytes\":{},\"segments\":{},\"oldest_ts\":{},\"newest_ts\":{}}}\n",
        s.project,
        s.messages,
        s.bytes,
        s.segments,
        ms(s.oldest_stamp),
        ms(s.newest_stamp)
    )
}

/// The stats as an aligned table with a header and a total line.
fn table(all: &[ProjectStats]) -> String {
    let iso = |stamp: Option<u64>| stamp.map_or("-".to_string(), |us| iso8601_ms(us / 1000));
    let row = |name: String, s: &ProjectStats| {
        [
            name,
            s.messages.to_string(),
            s.bytes.to_string(),
            s.segments.to_string(),
            iso(s.oldest_stamp),
            iso(s.newest_stamp),
        ]
    };
    let mut rows = vec![[
        "project", "messages", "bytes", "segments", "oldest", "newest",
    ]
    .map(str::to_string)];
    let mut total = ProjectStats {
        project: 0,
        messages: 0,
        bytes: 0,
        segments: 0,
        oldest_stamp: None,
        newest_stamp: None,
    };
    for s in all {
        rows.push(row(s.project.to_string(), s));
        total.messages += s.messages;
        total.bytes += s.bytes;
        total.segments += s.segments;
        total.oldest_stamp = match (total.oldest_stamp, s.oldest_stamp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        total.newest_stamp = total.newest_stamp.max(s.newest_stamp);
    }
    rows.push(row("total".to_string(), &total));
    let mut widths = [0; 6];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut text = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            // Counts right-aligned, names and times left-aligned.
            if (1..=3).contains(&i) {
                line.push_str(&format!("{cell:>w$}"));
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(project: u64, messages: u64, stamps: Option<(u64, u64)>) -> ProjectStats {
        ProjectStats {
            project,
            messages,
            bytes: messages * 100,
            segments: 1,
            oldest_stamp: stamps.map(|s| s.0),
            newest_stamp: stamps.map(|s| s.1),
        }
    }

    #[test]
    fn a_table_with_a_total() {
        let t = table(&[
            stats(7, 3, Some((1_796_389_200_123_456, 1_796_389_201_000_000))),
            stats(12345, 0, None),
        ]);
        assert_eq!(
            t,
            "project  messages  bytes  segments  oldest                    newest\n\
             7               3    300         1  2026-12-04T13:00:00.123Z  2026-12-04T13:00:01.000Z\n\
             12345           0      0         1  -                         -\n\
             total           3    300         2  2026-12-04T13:00:00.123Z  2026-12-04T13:00:01.000Z\n"
        );
    }

    #[test]
    fn json_lines_in_milliseconds() {
        assert_eq!(
            json_line(&stats(7, 3, Some((1_000_999, 2_000_000)))),
            "{\"project\":7,\"messages\":3,\"bytes\":300,\"segments\":1,\"oldest_ts\":1000,\"newest_ts\":2000}\n"
        );
        assert_eq!(
            json_line(&stats(8, 0, None)),
            "{\"project\":8,\"messages\":0,\"bytes\":0,\"segments\":1,\"oldest_ts\":null,\"newest_ts\":null}\n"
        );
    }
}
