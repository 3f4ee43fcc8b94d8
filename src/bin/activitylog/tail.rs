//! `activitylog tail`: a project's last messages, oldest to newest, and with `--follow` new ones
//! as they land — also while another process (a server) writes the store.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use activitylog::Meta;
use anyhow::Result;
use clap::Args;

use crate::{open_read_only, parse_meta, written, StoreArgs};

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

    /// A meta field to add to each message: _ts, _project or _key (repeatable, in order).
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
        if !wait_while_stdout_open(POLL) {
            return Ok(());
        }
        store.refresh();
        let newer = store.oldest_first(args.project)?;
        let snapshot_next = newer.next_seq();
        if snapshot_next <= next {
            continue;
        }
        if !print(newer.from(next), &args.meta, &mut out, &mut line)? {
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
        line.clear();
        message?.write_with_meta(meta, line);
        line.push(b'\n');
        if !written(out.write_all(line))? {
            return Ok(false);
        }
    }
    written(out.flush())
}

/// Waits for `timeout`, or less if stdout gets closed meanwhile (the reader of a pipe went
/// away): then returns `false`, so `tail --follow | head -1` ends without waiting for another
/// message to fail to write.
fn wait_while_stdout_open(timeout: Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::raw::{c_int, c_short, c_ulong};

        #[repr(C)]
        struct PollFd {
            fd: c_int,
            events: c_short,
            revents: c_short,
        }
        extern "C" {
            fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
        }
        const POLLERR: c_short = 0x08;
        const POLLHUP: c_short = 0x10;

        let started = std::time::Instant::now();
        // No events asked for: poll reports only errors and hang-ups, such as a pipe whose
        // reader closed it.
        let mut stdout = PollFd {
            fd: 1,
            events: 0,
            revents: 0,
        };
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: `stdout` is one valid, exclusively borrowed `struct pollfd` (same layout)
        // for the whole call, and `nfds` is 1; poll only writes its `revents`.
        let ready = unsafe { poll(&mut stdout, 1, ms) };
        if ready > 0 && stdout.revents & (POLLERR | POLLHUP) != 0 {
            return false;
        }
        // Interrupted, or stdout is not open at all (the next write reports that): wait out
        // the rest rather than spin.
        if let Some(rest) = timeout.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::thread::sleep(timeout);
        true
    }
}
