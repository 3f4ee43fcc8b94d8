//! What the long-running subcommands tell a person: a progress bar while they work (only when
//! stderr is a terminal) and a one-line summary at the end.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr, or nothing at all when stderr is not a terminal. It fits an
/// 80-column terminal; the spinner shows it is alive while one large file is worked on.
pub fn bar(total: Option<u64>, unit: Unit, verb: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match (total, unit) {
        (Some(total), Unit::Bytes) => (
            ProgressBar::new(total),
            "{spinner} {prefix} [{bar:24}] {decimal_bytes}/{decimal_total_bytes} ({decimal_bytes_per_sec}) {wide_msg}",
        ),
        (Some(total), Unit::Messages) => (
            ProgressBar::new(total),
            "{spinner} {prefix} [{bar:24}] {human_pos}/{human_len} ({rate}) {wide_msg}",
        ),
        (None, Unit::Bytes) => (
            ProgressBar::no_length(),
            "{spinner} {prefix} {decimal_bytes} ({decimal_bytes_per_sec}) {wide_msg}",
        ),
        (None, Unit::Messages) => (
            ProgressBar::no_length(),
            "{spinner} {prefix} {human_pos} messages ({rate}) {wide_msg}",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .expect("the progress templates are valid")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} msg/s", state.per_sec());
            },
        )
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(verb.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Bytes,
    Messages,
}

/// Prints `line` on stderr. A closed stderr is no reason to fail a finished job.
pub fn say(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// "1000000 messages (180.2 MB) in 2.31 s: 432900 msg/s, 78.0 MB/s", for `noun` "message".
pub fn throughput(messages: u64, noun: &str, bytes: u64, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    let per = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    format!(
        "{messages} {noun}{} ({}) in {secs:.2} s: {:.0} msg/s, {}/s",
        if messages == 1 { "" } else { "s" },
        human_bytes(bytes),
        per(messages),
        human_bytes(per(bytes) as u64),
    )
}

/// Bytes in decimal units, one decimal: "512 B", "64.0 KB", "180.2 MB", "1.3 GB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `n` and a noun, "s" added unless `n` is 1: "1 project", "3 projects".
pub fn count(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 KB");
        assert_eq!(human_bytes(180_200_000), "180.2 MB");
        assert_eq!(human_bytes(999_990_000), "1.0 GB");
        assert_eq!(human_bytes(u64::MAX), "18446.7 PB");
    }
}
