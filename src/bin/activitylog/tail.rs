//! `activitylog tail`: a project's last messages, oldest to newest, and with `--follow` new ones
//! as they land — also while another process (a server) writes the store.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use activitylog::Meta;
use anyhow::Result;
use clap::Args;

use crate::{open_read_only, parse_meta, past_retention, written, StoreArgs};

/// How often `--follow` looks for new messages.
const POLL: Duration = Duration::from_millis(200);

/// Arguments of `activitylog tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// How many of the newest messages to print first.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    lines: u64,

    /// Keep printing new messages as they are appended, until interrupted or stdout closes.
    #[arg(short = 'f', long)]
    follow: bool,

    /// A meta field to add to each message: _ts, _project or _key (repeatable, in order; a
    /// name repeated counts once).
    #[arg(long, value_name = "NAME", value_parser = parse_meta)]
    meta: Vec<Meta>,

    /// The project id.
    project: u64,
}

/// `activitylog tail`: read-only; ends quietly when stdout closes.
pub fn tail(args: TailArgs) -> Result<()> {
    let store = open_read_only(&args.store.dir)?;
    let mut out = BufWriter::new(io::stdout().lock());
    let mut line = Vec::new();
    let first = store.oldest_first(args.project)?;
    let mut next = first.next_seq();
    let from = next.saturating_sub(args.lines);
    if !print(first.from(from), &args.meta, &mut out, &mut line)? || !args.follow {
        return Ok(());
    }
    loop {
        // A closed stdout (`tail --follow | head -1`) shows on the next write.
        std::thread::sleep(POLL);
        store.refresh();
        let newer = store.oldest_first(args.project)?;
        let snapshot_next = newer.next_seq();
        if snapshot_next <= next {
            continue;
        }
        // Records appended and removed by retention between two polls were never printed:
        // a gap to name, as a read overtaken by retention names its own.
        let (expected, project) = (next, args.project);
        let mut checked = false;
        let newer = newer.from(next).inspect(move |m| {
            if let (Ok(m), false) = (m, checked) {
                checked = true;
                if m.seq() > expected {
                    log::warn!(
                        "records {expected}..{} of project {project} were removed by retention \
                         before they could be printed",
                        m.seq()
                    );
                }
            }
        });
        if !print(newer, &args.meta, &mut out, &mut line)? {
            return Ok(());
        }
        next = snapshot_next;
    }
}

/// Prints `messages` and flushes; `false` once stdout is closed.
fn print(
    messages: impl Iterator<Item = activitylog::Result<activitylog::Message>>,
    meta: &[Meta],
    out: &mut impl Write,
    line: &mut Vec<u8>,
) -> Result<bool> {
    for message in messages {
        let Some(message) = past_retention(message)? else {
            continue;
        };
        line.clear();
        message.write_with_meta(meta, line);
        line.push(b'\n');
        if !written(out.write_all(line))? {
            return Ok(false);
        }
    }
    written(out.flush())
}
