//! `activitylog`: the command line tool for an activitylog store.
//!
//! ```text
//! activitylog serve    [--dir DIR] [--listen ADDR] [--durability written|sync] [--api-key KEY]...
//!                      [--api-keys FILE] [--max-body-bytes N] [--max-message-bytes N] [--segment-bytes N]
//!                      [--shutdown-timeout D] [--write-timeout D] [--header-read-timeout D] [--retain-max-age D]
//!                      [--retain-max-bytes S] [--retain-max-messages N]
//! activitylog append   --dir DIR [--segment-bytes N] [--durability written|sync] [--max-message-bytes N]
//!                      PROJECT [FILE]
//! activitylog get      --dir DIR [--count N] [--meta NAME]... [--filter JSON]... PROJECT
//! activitylog projects --dir DIR [-p ID]... [--count N] [--pcount N] [--meta NAME]... [--filter JSON]...
//! activitylog import   --dir DIR [--project ID | --project-field NAME] [--segment-bytes N]
//!                      [--durability written|sync] [--max-message-bytes N] PATH...
//! activitylog export   --dir DIR --out DIR [-p ID]... [--gzip]
//! activitylog verify   --dir DIR [-p ID]...
//! activitylog stats    --dir DIR [-p ID]... [--json]
//! activitylog tail     --dir DIR [-n N] [--follow] [--meta NAME]... PROJECT
//! activitylog retain   --dir DIR [--max-age DURATION] [--max-bytes SIZE] [--max-messages N]
//! ```
//!
//! - `serve` runs the Activity API (see `docs/http.md`) on the store in `--dir` (default
//!   `./activity-data`, created if missing) until SIGINT or SIGTERM, then finishes requests in
//!   flight, syncs the store and releases its lock. It logs one line per request at `info`.
//!   With any `--retain-*` limit it applies retention (as `retain` does) at start and every
//!   minute, logging what it removed.
//!
//! - `append` reads JSON Lines from `FILE` (or stdin when `FILE` is absent or `-`), checks every
//!   line, and stores them all as one atomic batch: if any line is not a JSON object, the tool
//!   names that line, stores nothing and exits non-zero. Blank lines, `\r\n` line ends and a
//!   missing final newline are accepted. `--segment-bytes` sets the segment size of a store this
//!   command creates; an existing store keeps the size recorded in it.
//! - `get` prints a project's messages newest first, one compact JSON object per line. It opens
//!   the store read-only, so it works while another process (a server) writes the store. A
//!   project never written prints nothing. `--meta` adds `_ts`, `_project` or `_key` to each
//!   message; `--filter '["field", "op", [values]]'` keeps only matching messages.
//! - `projects` prints several projects merged newest first (all projects without `-p`), with
//!   a total `--count` and a per-project `--pcount`; read-only too.
//!
//! Archives:
//! - `import` reads JSON Lines files, plain or gzipped (recognised by content; zero bytes after
//!   the gzip data, padding some tools leave, are ignored with a warning, any other bytes there
//!   are an error), and folders of
//!   them (their `*.jl`, `*.jsonl`, `*.jl.gz`, `*.jsonl.gz` files in name order, not
//!   recursively). A file named `<project id>.jl` (or `.jsonl`, optionally `.gz`) goes to that
//!   project; `--project` sends every file to one project; `--project-field` takes each
//!   message's project from a top-level field. Order within a file is kept, and a `_ts` field
//!   (integer ms) becomes the message's append time and is not stored in it. Each file is one
//!   import: a bad line is named (`error: FILE: line N is invalid: …`) and nothing of that file
//!   is imported (files before it stay imported; the tool stops there).
//! - `export` writes each project (all, or those given with `-p`) to `--out/<id>.jl` (`.jl.gz`
//!   with `--gzip`): oldest first, one message per line with its `_ts` — exactly what `import`
//!   reads, so export → import → export gives identical files. Each file is written under a
//!   hidden temporary name and renamed when complete.
//! - `verify` reads every record and index and prints each problem on stdout as
//!   `FILE bytes A..B: what`; it exits 0 when the store is clean and 1 otherwise.
//! - `stats` prints each project's messages, bytes on disk, segments and oldest and newest
//!   append time (ISO 8601 UTC) with a total line; `--json` prints one JSON object per project
//!   instead, times as integer ms (`oldest_ts`, `newest_ts`).
//! - `tail` prints a project's last `-n` messages (default 10) oldest to newest; `--follow`
//!   then prints new messages as they land (polling every 200 ms), until interrupted or stdout
//!   closes.
//! - `retain` deletes each project's oldest whole segments, never the active one, while the
//!   project is over a limit: `--max-age` (judged by a segment's newest message; `30d`, `12h`,
//!   `90m`, `45s`, `500ms`), `--max-bytes` (`10G`, `512M`, `64K` or bytes; binary units) or
//!   `--max-messages`. It needs the write lock, so it cannot run beside a server: use `serve
//!   --retain-*` there.
//!
//! `get`, `projects`, `tail`, `export`, `verify` and `stats` open the store read-only and work
//! while another process (a server) writes it. `import`, `export` and `verify` show a progress
//! bar when stderr is a terminal, and end with a one-line summary on stderr (messages, bytes,
//! seconds, rate).
//!
//! SIGINT (Ctrl-C) or SIGTERM stops `import` between two batches and `export` between two
//! messages: what `import` stored stays stored, `export` removes its unfinished temporary file
//! (and an `--out` folder it made and left empty), and either says in one sentence what it did
//! (`error: stopped by SIGINT after storing N messages: …`) and exits with 128 + the signal's
//! number (130 for SIGINT, 143 for SIGTERM). A stop comes when a read waiting on a pipe or
//! terminal returns; a second signal ends the process at once.
//!
//! Exit status: 0 on success, 1 when the operation fails (`error: …` on stderr) or `verify`
//! found a problem, 2 for a usage error, 128 + its number after a signal. A closed stdout (`activitylog get … | head`) ends
//! output quietly with status 0. Diagnostics from the engine (such as a torn tail repaired on
//! open) go to stderr at the level set by `--log` or `ACTIVITYLOG_LOG` (default `warn`).
//!
//! Each subcommand is one `Args` struct and one function taking it; adding a subcommand means
//! adding a variant to [`Command`] and a line to [`run`]. The archive subcommands live in their
//! own modules.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use activitylog::{
    Durability, Filter, Meta, Options, Query, Store, DEFAULT_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES,
    MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use log::LevelFilter;

mod archive;
mod inspect;
mod report;
mod retain;
#[cfg(feature = "server")]
mod serve;
mod stop;
mod tail;
mod units;

#[derive(Debug, Parser)]
#[command(
    name = "activitylog",
    version,
    about = "An append-only log of activity events"
)]
struct Cli {
    /// Which diagnostics to print on stderr [default: info for serve (one line per request),
    /// warn otherwise].
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "LEVEL",
        env = "ACTIVITYLOG_LOG"
    )]
    log: Option<LogLevel>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Activity API over HTTP on an embedded store.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// Append JSON Lines to a project as one atomic batch.
    Append(AppendArgs),
    /// Print a project's messages newest first, one JSON object per line.
    Get(GetArgs),
    /// Print several projects' messages merged newest first.
    Projects(ProjectsArgs),
    /// Import JSON Lines archives (plain or gzipped files, or folders of them), keeping `_ts`.
    Import(archive::ImportArgs),
    /// Export projects to `<id>.jl` files, oldest first with `_ts`, as `import` reads them.
    Export(archive::ExportArgs),
    /// Check every record and index; print each problem; exit 1 if there is any.
    Verify(inspect::VerifyArgs),
    /// Print each project's messages, bytes, segments and time span.
    Stats(inspect::StatsArgs),
    /// Print a project's last messages oldest to newest; with --follow, new ones as they land.
    Tail(tail::TailArgs),
    /// Delete each project's oldest segments beyond an age, size or message limit.
    Retain(retain::RetainArgs),
}

/// Where the store is; shared by every subcommand.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,
}

/// How a writing subcommand creates the store and stores its batches.
#[derive(Debug, Args)]
pub(crate) struct WriteArgs {
    /// Segment size in bytes, for a store this command creates (ignored for an existing store).
    #[arg(
        long,
        value_name = "N",
        value_parser = segment_bytes()
    )]
    pub(crate) segment_bytes: Option<u64>,

    /// When to return: once each batch is handed to the OS, or once it is fsynced.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Written)]
    pub(crate) durability: DurabilityArg,

    /// The largest message accepted, in bytes after whitespace removal (at most 16 MiB - 1):
    /// as large as the store's writer allowed, to take back its export.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_MESSAGE_BYTES,
        value_parser = message_bytes()
    )]
    pub(crate) max_message_bytes: usize,
}

#[derive(Debug, Args)]
struct AppendArgs {
    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    write: WriteArgs,

    /// The project id.
    project: u64,

    /// JSON Lines to append; stdin when absent or `-`.
    file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct GetArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// Print at most this many messages (the newest).
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    #[command(flatten)]
    output: OutputArgs,

    /// The project id.
    project: u64,
}

#[derive(Debug, Args)]
struct ProjectsArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// A project to read (repeatable); all projects when absent.
    #[arg(short = 'p', long = "project", value_name = "ID")]
    projects: Vec<u64>,

    /// Print at most this many messages in all.
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    /// Print at most this many messages per project.
    #[arg(long, value_name = "N")]
    pcount: Option<u64>,

    #[command(flatten)]
    output: OutputArgs,
}

/// What to add to and filter out of printed messages.
#[derive(Debug, Args)]
struct OutputArgs {
    /// A meta field to add to each message: _ts, _project or _key (repeatable, in order; a
    /// name repeated counts once).
    #[arg(long, value_name = "NAME", value_parser = parse_meta)]
    meta: Vec<Meta>,

    /// Keep only messages matching a filter `["field", "op", [values]]` (repeatable: all must
    /// match). Ops: = != > >= < <= in contains icontains startswith exists.
    #[arg(long, value_name = "JSON", value_parser = parse_filter)]
    filter: Vec<Filter>,
}

pub(crate) fn parse_meta(s: &str) -> Result<Meta, String> {
    s.parse().map_err(|e: activitylog::Error| e.to_string())
}

fn parse_filter(s: &str) -> Result<Filter, String> {
    Filter::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Handed to the operating system: survives a crash of the process.
    Written,
    /// Fsynced: survives a power cut.
    Sync,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Written => Durability::Written,
            DurabilityArg::Sync => Durability::Sync,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Off => LevelFilter::Off,
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        #[cfg(feature = "server")]
        Command::Serve(_) => LogLevel::Info,
        _ => LogLevel::Warn,
    };
    StderrLogger::install(cli.log.unwrap_or(default_level).into());
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "error: {}", one_line(&e));
            match e.downcast_ref::<stop::Stopped>() {
                Some(stopped) => ExitCode::from(stopped.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// The error and its causes joined with ": ", leaving out a cause whose text the message
/// already holds (the engine's errors print their source themselves).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn run(command: Command) -> Result<()> {
    match command {
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(args),
        Command::Append(args) => append(args),
        Command::Get(args) => get(args),
        Command::Projects(args) => projects(args),
        Command::Import(args) => archive::import(args),
        Command::Export(args) => archive::export(args),
        Command::Verify(args) => inspect::verify(args),
        Command::Stats(args) => inspect::stats(args),
        Command::Tail(args) => tail::tail(args),
        Command::Retain(args) => retain::retain(args),
    }
}

/// `activitylog append`: one input, one atomic batch.
fn append(args: AppendArgs) -> Result<()> {
    let input = read_input(args.file.as_deref())?;
    write_to(&args.store.dir, &args.write, Options::new(), |store| {
        store.append_json_lines(args.project, &input, args.write.durability.into())?;
        Ok(())
    })
}

/// Runs `f` on the store in `dir`, opened as [`open_writable`] does with `write`. A store that
/// this call made and that holds no project when `f` fails is removed: a failed first write
/// into a folder that did not exist leaves no empty store behind.
pub(crate) fn write_to(
    dir: &Path,
    write: &WriteArgs,
    options: Options,
    f: impl FnOnce(&Store) -> Result<()>,
) -> Result<()> {
    let created = !dir.exists();
    let store = open_writable(dir, write, options)?;
    let result = f(&store);
    if result.is_err() && created && store.projects().is_ok_and(|p| p.is_empty()) {
        drop(store);
        if let Err(e) = std::fs::remove_dir_all(dir) {
            log::warn!(
                "cannot remove the empty store {} it made: {e}",
                dir.display()
            );
        }
    }
    result
}

/// The parser of `--max-message-bytes`: 1 to [`MAX_MESSAGE_BYTES`], a usage error otherwise.
pub(crate) fn message_bytes() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_MESSAGE_BYTES as u64)
}

/// The parser of `--segment-bytes`: [`MIN_SEGMENT_BYTES`] to [`MAX_SEGMENT_BYTES`], a usage
/// error otherwise.
pub(crate) fn segment_bytes() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES)
}

/// Opens (creating if needed) the store in `dir` for writing, with the message limit of `write`
/// and its segment size for a new store; an existing store keeps its own size, with a warning if
/// it differs.
pub(crate) fn open_writable(dir: &Path, write: &WriteArgs, options: Options) -> Result<Store> {
    let segment_bytes = write.segment_bytes;
    let mut options = options.max_message_bytes(write.max_message_bytes);
    if let Some(bytes) = segment_bytes {
        options = options.segment_bytes(bytes);
    }
    let store = options.open(dir)?;
    if let Some(bytes) = segment_bytes {
        if store.segment_bytes() != bytes {
            log::warn!(
                "the store already exists with {}-byte segments, so --segment-bytes {bytes} is ignored",
                store.segment_bytes()
            );
        }
    }
    Ok(store)
}

/// `activitylog get`: one project newest first, read-only.
fn get(args: GetArgs) -> Result<()> {
    let mut query = Query::new().projects([args.project]);
    if let Some(count) = args.count {
        query = query.count(count);
    }
    print_query(&args.store.dir, query, args.output)
}

/// `activitylog projects`: several projects merged newest first, read-only.
fn projects(args: ProjectsArgs) -> Result<()> {
    let mut query = Query::new();
    if !args.projects.is_empty() {
        query = query.projects(args.projects);
    }
    if let Some(count) = args.count {
        query = query.count(count);
    }
    if let Some(pcount) = args.pcount {
        query = query.pcount(pcount);
    }
    print_query(&args.store.dir, query, args.output)
}

/// Runs `query` on the store in `dir` (read-only) and prints the result as JSON Lines.
fn print_query(dir: &Path, mut query: Query, output: OutputArgs) -> Result<()> {
    for filter in output.filter {
        query = query.filter(filter);
    }
    let store = open_read_only(dir)?;
    let mut out = BufWriter::new(io::stdout().lock());
    let mut line = Vec::new();
    for message in store.query(&query)? {
        line.clear();
        message?.write_with_meta(&output.meta, &mut line);
        line.push(b'\n');
        if !written(out.write_all(&line))? {
            return Ok(());
        }
    }
    written(out.flush())?;
    Ok(())
}

/// The projects a command works on: those given (sorted, once each), or every project.
pub(crate) fn chosen_projects(store: &Store, given: &[u64]) -> Result<Vec<u64>> {
    if given.is_empty() {
        return Ok(store.projects()?);
    }
    let mut ids = given.to_vec();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Opens `dir` without the write lock, so reads work beside a writing process.
pub(crate) fn open_read_only(dir: &Path) -> Result<Store> {
    Ok(Options::new().read_only(true).open(dir)?)
}

/// The whole input: `path`, or stdin when `path` is `None` or `-`.
fn read_input(path: Option<&Path>) -> Result<Vec<u8>> {
    let mut input = Vec::new();
    match path {
        None => read_stdin(&mut input)?,
        Some(p) if p == Path::new("-") => read_stdin(&mut input)?,
        Some(p) => {
            File::open(p)
                .and_then(|mut f| f.read_to_end(&mut input))
                .with_context(|| format!("cannot read {}", p.display()))?;
        }
    }
    Ok(input)
}

fn read_stdin(input: &mut Vec<u8>) -> Result<()> {
    io::stdin()
        .lock()
        .read_to_end(input)
        .context("cannot read standard input")?;
    Ok(())
}

/// A message of an oldest-first read, or `None` where retention removed records the read was
/// about to reach (another process applied it, a server with `--retain-*` say): the read goes
/// on after them, so the gap is told in a warning rather than ending the command.
pub(crate) fn past_retention(
    message: activitylog::Result<activitylog::Message>,
) -> activitylog::Result<Option<activitylog::Message>> {
    match message {
        Ok(message) => Ok(Some(message)),
        Err(e @ activitylog::Error::RemovedWhileRead { .. }) => {
            log::warn!("{e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether output to stdout may go on. A closed pipe (`activitylog get … | head`) is not an
/// error: the reader has all it wants, so output stops quietly.
pub(crate) fn written(result: io::Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// Prints `log` records on stderr as `level: message`.
struct StderrLogger;

impl StderrLogger {
    fn install(level: LevelFilter) {
        static LOGGER: StderrLogger = StderrLogger;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            // Nowhere to report a failed write to stderr.
            let _ = writeln!(io::stderr().lock(), "{level}: {}", record.args());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
