//! `activitylog import` and `activitylog export`: JSON Lines archives, plain or gzipped, one
//! file per project, each message carrying its `_ts`.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use activitylog::{Durability, ImportTarget, Options, Store};
use anyhow::{bail, Context, Result};
use clap::Args;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;

use crate::report::{self, count, Unit};
use crate::stop::Stop;
use crate::{
    chosen_projects, open_read_only, past_retention, units, write_to, StoreArgs, WriteArgs,
};

/// Arguments of `activitylog import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// Import every file into this project, whatever its name.
    #[arg(long, value_name = "ID", conflicts_with = "project_field")]
    project: Option<u64>,

    /// Take each message's project from this top-level field (an unsigned integer), which stays
    /// in the message (so it cannot be `_ts`).
    #[arg(long, value_name = "NAME")]
    project_field: Option<String>,

    #[command(flatten)]
    write: WriteArgs,

    /// How far ahead of the store's clock (the machine's, unless a later stamp was stored) a
    /// `_ts` may be, like 1d, 30d or 12h. Further ahead is a bad line: it would move the store's
    /// clock, and every later append's stamp, there. Raise it to restore the export of a store
    /// whose clock ran ahead.
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = units::parse_duration)]
    max_ts_ahead: Duration,

    /// JSON Lines files, plain or gzipped, or folders of them (their `*.jl`, `*.jsonl`,
    /// `*.jl.gz` and `*.jsonl.gz` files, by name). A file named `<project id>.jl` goes to that
    /// project unless --project or --project-field says otherwise. `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Arguments of `activitylog export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// The folder to write `<project id>.jl` files into; created if missing. Existing files of
    /// the exported projects are replaced, plain or gzipped: the folder never keeps both a
    /// project's `.jl` and its `.jl.gz`, which an import of the folder would both store.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// A project to export (repeatable); all projects when absent.
    #[arg(short = 'p', long = "project", value_name = "ID")]
    projects: Vec<u64>,

    /// Write gzipped files, `<project id>.jl.gz`.
    #[arg(long)]
    gzip: bool,
}

/// The bytes every gzip file starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One input of an import and where its messages go.
struct Source {
    /// `None` for standard input.
    path: Option<PathBuf>,
    target: Target,
}

enum Target {
    Project(u64),
    Field(String),
}

impl Source {
    fn name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "standard input".to_string(),
        }
    }

    /// Its size on disk (for progress), 0 for standard input.
    fn disk_bytes(&self) -> u64 {
        self.path
            .as_deref()
            .and_then(|p| fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// Its contents, decompressed if gzipped, counting the bytes read (decompressed) and any
    /// zero padding after the gzip data in `read`.
    fn open<'c>(&self, read: &'c ReadCounts) -> Result<Box<dyn Read + 'c>> {
        let count = &read.bytes;
        let raw: Box<dyn Read> = match &self.path {
            Some(path) => Box::new(
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => Box::new(io::stdin().lock()),
        };
        let mut raw = BufReader::with_capacity(64 << 10, raw);
        let reading = || format!("cannot read {}", self.name());
        let start = raw.fill_buf().with_context(reading)?;
        if start.len() == 1 {
            // A pipe may hand over its first byte alone: the second tells gzip from JSON too.
            let first = start[0];
            raw.consume(1);
            let second = raw.fill_buf().with_context(reading)?.first().copied();
            let head: Vec<u8> = std::iter::once(first).chain(second).collect();
            raw.consume(head.len() - 1);
            let gzipped = head.starts_with(&GZIP_MAGIC);
            let whole = io::Cursor::new(head).chain(raw);
            return Ok(if gzipped {
                Box::new(Counting {
                    inner: GzipMembers::new(whole, &read.zero_padding),
                    count,
                })
            } else {
                Box::new(Counting {
                    inner: whole,
                    count,
                })
            });
        }
        // Gzip by content, not by name: JSON never starts with these bytes.
        if start.starts_with(&GZIP_MAGIC) {
            let inner = GzipMembers::new(raw, &read.zero_padding);
            return Ok(Box::new(Counting { inner, count }));
        }
        match &self.path {
            // A file is read whole, and not through a counter: a reader that is not the file
            // (or its buffer) has the memory it reads into zeroed first.
            Some(_) => {
                count.set(self.disk_bytes());
                Ok(Box::new(raw))
            }
            None => Ok(Box::new(Counting { inner: raw, count })),
        }
    }
}

/// What was read of one input.
#[derive(Default)]
struct ReadCounts {
    /// Bytes read (decompressed).
    bytes: Cell<u64>,
    /// Zero bytes found after the end of gzipped data, and ignored.
    zero_padding: Cell<u64>,
}

/// The decompressed contents of gzip data of one or more members, read as gzip(1) reads them:
/// zero bytes after the last member (padding to a block size, which tape tools and some
/// archivers leave) are skipped and counted; other bytes after it that do not start another
/// member are an error, as is a member cut short.
struct GzipMembers<'c, R> {
    /// The member being read; `None` once the data has ended.
    member: Option<GzDecoder<R>>,
    /// Where skipped zero bytes are counted.
    zero_padding: &'c Cell<u64>,
}

impl<'c, R: BufRead> GzipMembers<'c, R> {
    fn new(input: R, zero_padding: &'c Cell<u64>) -> Self {
        GzipMembers {
            member: Some(GzDecoder::new(input)),
            zero_padding,
        }
    }
}

impl<R: BufRead> Read for GzipMembers<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(member) = &mut self.member else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The member ended whole (a member cut short is an error of its decoder).
            let Some(mut rest) = self.member.take().map(GzDecoder::into_inner) else {
                return Ok(0);
            };
            let next = rest.fill_buf()?;
            match next.first() {
                None => return Ok(0),
                Some(0) => loop {
                    let next = rest.fill_buf()?;
                    if next.is_empty() {
                        return Ok(0);
                    }
                    let zeros = next.iter().take_while(|&&b| b == 0).count();
                    if zeros < next.len() {
                        return Err(trailing_garbage());
                    }
                    rest.consume(zeros);
                    self.zero_padding
                        .set(self.zero_padding.get() + zeros as u64);
                },
                Some(&first) if first != GZIP_MAGIC[0] => return Err(trailing_garbage()),
                Some(_) => self.member = Some(GzDecoder::new(rest)),
            }
        }
    }
}

/// The error for bytes after gzip data that are neither another member nor zero padding.
fn trailing_garbage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "bytes after the end of the gzip data are neither another gzip member nor zero padding",
    )
}

/// A reader that counts the bytes read through it.
struct Counting<'c, R> {
    inner: R,
    count: &'c Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// `activitylog import`: one atomic import per file, files in the order given (a folder's in
/// name order).
pub fn import(args: ImportArgs) -> Result<()> {
    let stop = Stop::install()?;
    let sources = sources(&args)?;
    // A store this command made, and stored nothing in, is not left behind.
    let options = Options::new().max_import_ahead(args.max_ts_ahead);
    write_to(&args.store.dir, &args.write, options, |store| {
        import_sources(store, &sources, args.write.durability.into(), &stop)
    })
}

/// Warns that `raised` messages of `source` were stored at a later time than their `_ts`, if
/// any were.
fn warn_raised(source: &Source, raised: u64) {
    if raised > 0 {
        log::warn!(
            "{}: {} had a _ts older than the line before them in their project, or than its \
             newest message in the store, and were stored at that time; import expects each \
             project's lines oldest first, as export writes them, and newer than what the \
             project holds",
            source.name(),
            count(raised, "message"),
        )
    }
}

/// Imports `sources` into `store`, one atomic import per file, and says what it did. Once
/// `stop` is set it stops between two batches (or two files) and says exactly what it stored.
fn import_sources(
    store: &Store,
    sources: &[Source],
    durability: Durability,
    stop: &Stop,
) -> Result<()> {
    let total: u64 = sources.iter().map(Source::disk_bytes).sum();
    let bar = report::bar(Some(total), Unit::Bytes, "importing");
    let started = Instant::now();
    let (mut files, mut messages, mut bytes) = (0u64, 0u64, 0u64);
    let mut projects = std::collections::BTreeSet::new();
    for source in sources {
        if stop.requested() {
            bar.finish_and_clear();
            return Err(stopped_import(stop, (files, messages), source, 0));
        }
        bar.set_message(source.name());
        let read = ReadCounts::default();
        let result = source.open(&read).and_then(|input| {
            let target = match &source.target {
                Target::Project(id) => ImportTarget::Project(*id),
                Target::Field(name) => ImportTarget::Field(name),
            };
            let name = PathBuf::from(source.name());
            let imported = store
                .import_json_lines_from_until(input, &name, target, durability, stop.flag())
                .with_context(|| source.name())?;
            Ok((imported, read.bytes.get()))
        });
        let (imported, input_bytes) = match result {
            Ok(r) => r,
            Err(e) => {
                bar.finish_and_clear();
                // What a file stopped part way stored was stamped as a whole file's is.
                let stored = e.chain().find_map(|c| match c.downcast_ref() {
                    Some(activitylog::Error::ImportInterrupted { stored, .. }) => Some(stored),
                    _ => None,
                });
                if let Some(stored) = stored {
                    warn_raised(source, stored.raised);
                }
                let stopped_after = e.chain().find_map(|c| match c.downcast_ref() {
                    Some(activitylog::Error::Stopped) => Some(0),
                    Some(activitylog::Error::ImportInterrupted { stored, source })
                        if matches!(**source, activitylog::Error::Stopped) =>
                    {
                        Some(stored.messages())
                    }
                    _ => None,
                });
                if let Some(stored) = stopped_after {
                    return Err(stopped_import(stop, (files, messages), source, stored));
                }
                let partial = e.chain().any(|c| {
                    matches!(
                        c.downcast_ref(),
                        Some(activitylog::Error::ImportInterrupted { .. })
                    )
                });
                if files > 0 {
                    log::warn!(
                        "imported {} ({}) before {}; {}",
                        count(files, "file"),
                        count(messages, "message"),
                        source.name(),
                        if partial {
                            "the error says what of it was stored; nothing of any file after it"
                        } else {
                            "nothing of it or of any file after it"
                        }
                    );
                }
                return Err(e);
            }
        };
        let padding = read.zero_padding.get();
        if padding > 0 {
            // As gzip(1) takes them: decompression OK, trailing zero bytes ignored.
            bar.suspend(|| {
                log::warn!(
                    "{}: ignored {} after the end of its gzip data",
                    source.name(),
                    count(padding, "zero byte"),
                )
            });
        }
        bar.suspend(|| warn_raised(source, imported.raised));
        files += 1;
        messages += imported.messages();
        bytes += input_bytes;
        projects.extend(imported.per_project.keys().copied());
        bar.inc(source.disk_bytes());
    }
    bar.finish_and_clear();
    report::say(&format!(
        "imported {} ({} into {})",
        report::throughput(messages, "message", bytes, started),
        count(files, "file"),
        count(projects.len() as u64, "project"),
    ));
    Ok(())
}

/// The error of an import that `stop` stopped after `done` (whole files, their messages) and
/// `stored` messages of `source`: one sentence with the messages stored in all and where.
fn stopped_import(stop: &Stop, done: (u64, u64), source: &Source, stored: u64) -> anyhow::Error {
    let (files, messages) = done;
    let mut parts = Vec::new();
    if files > 0 {
        parts.push(format!(
            "{} whole ({})",
            count(files, "file"),
            count(messages, "message")
        ));
    }
    if stored > 0 {
        parts.push(match source.target {
            Target::Project(_) => {
                format!(
                    "the first {} of {}",
                    count(stored, "message"),
                    source.name()
                )
            }
            // Stored project by project: each project's oldest in the file, not a prefix.
            Target::Field(_) => format!(
                "{} of {} (each project's oldest in it)",
                count(stored, "message"),
                source.name()
            ),
        });
    }
    let rest = if stored > 0 {
        "nothing of the rest".to_string()
    } else {
        format!("nothing of {} or any file after it", source.name())
    };
    let mut what = format!("storing {}", count(messages + stored, "message"));
    if !parts.is_empty() {
        what.push_str(": ");
        what.push_str(&parts.join(" and "));
    }
    stop.stopped(format!("{what}; {rest}"))
}

/// The files to import with their projects, all worked out before anything is imported.
fn sources(args: &ImportArgs) -> Result<Vec<Source>> {
    let mut files = Vec::new();
    for path in &args.paths {
        if path == Path::new("-") {
            files.push(None);
            continue;
        }
        let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if !meta.is_dir() {
            files.push(Some(path.clone()));
            continue;
        }
        let mut found = Vec::new();
        let entries =
            fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
            // Judged by its bytes: a name that is not UTF-8 is still a `*.jl` file to import
            // (or, without --project, one whose project cannot be told), never left out.
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Hidden files include an export's unfinished temporary files.
            if name.starts_with('.') || json_lines_stem(&name).is_none() {
                continue;
            }
            let file = entry.path();
            if fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                found.push(file);
            }
        }
        if found.is_empty() {
            log::warn!(
                "{} holds no .jl, .jsonl, .jl.gz or .jsonl.gz files",
                path.display()
            );
        }
        found.sort();
        files.extend(found.into_iter().map(Some));
    }
    files
        .into_iter()
        .map(|path| {
            let target = if let Some(id) = args.project {
                Target::Project(id)
            } else if let Some(field) = &args.project_field {
                Target::Field(field.clone())
            } else {
                let id = path.as_deref().and_then(project_of_file_name);
                match (id, &path) {
                    (Some(id), _) => Target::Project(id),
                    (None, Some(p)) => bail!(
                        "cannot tell which project {} belongs to: name it <project id>.jl, or use --project or --project-field",
                        p.display()
                    ),
                    (None, None) => bail!(
                        "cannot tell which project standard input belongs to: use --project or --project-field"
                    ),
                }
            };
            Ok(Source { path, target })
        })
        .collect()
}

/// `name` without its `.jl` / `.jsonl` extension (and `.gz` after it), if it has one.
fn json_lines_stem(name: &str) -> Option<&str> {
    let name = name.strip_suffix(".gz").unwrap_or(name);
    name.strip_suffix(".jl")
        .or_else(|| name.strip_suffix(".jsonl"))
}

/// The project a file named `<project id>.jl` (or `.jsonl`, optionally `.gz`) belongs to.
fn project_of_file_name(path: &Path) -> Option<u64> {
    let stem = json_lines_stem(path.file_name()?.to_str()?)?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// `activitylog export`: each project to its own file, oldest first, with `_ts`; each file
/// written under a temporary name and renamed when complete.
pub fn export(args: ExportArgs) -> Result<()> {
    let stop = Stop::install()?;
    let dir = &args.store.dir;
    let store = open_read_only(dir)?;
    let ids = chosen_projects(&store, &args.projects)?;
    let mut total = 0;
    for &id in &ids {
        match store.stats(id)? {
            Some(s) => total += s.messages,
            None => bail!("project {id} is not in the store {}", dir.display()),
        }
    }
    // The folders this export makes: taken back, when empty, if it fails.
    let made: Vec<&Path> = args
        .out
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists())
        .collect();
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let bar = report::bar(Some(total), Unit::Messages, "exporting");
    let started = Instant::now();
    let (mut messages, mut bytes) = (0, 0);
    for (done, &id) in ids.iter().enumerate() {
        let name = format!("{id}.jl{}", if args.gzip { ".gz" } else { "" });
        bar.set_message(name.clone());
        let result = if stop.requested() {
            Err(activitylog::Error::Stopped.into())
        } else {
            export_project(&store, id, &args.out, &name, args.gzip, &bar, stop.flag())
        };
        match result {
            Ok((m, b)) => {
                messages += m;
                bytes += b;
            }
            Err(e) => {
                bar.finish_and_clear();
                // Only empty folders go: the files of projects exported before stay.
                for dir in &made {
                    if fs::remove_dir(dir).is_err() {
                        break;
                    }
                }
                if !matches!(e.downcast_ref(), Some(activitylog::Error::Stopped)) {
                    return Err(e);
                }
                // The unfinished file went with its temporary file's handle.
                let mut what = format!(
                    "exporting {} of {} ({}) to {}, leaving no unfinished file",
                    done,
                    count(ids.len() as u64, "project"),
                    count(messages, "message"),
                    args.out.display()
                );
                if !made.is_empty() && !args.out.exists() {
                    what.push_str(" (and removing the folder it had made)");
                }
                return Err(stop.stopped(what));
            }
        }
    }
    // Make the renames durable too; a file system that cannot sync a folder loses nothing else.
    if let Ok(folder) = File::open(&args.out) {
        let _ = folder.sync_all();
    }
    bar.finish_and_clear();
    report::say(&format!(
        "exported {} ({} to {})",
        report::throughput(messages, "message", bytes, started),
        count(ids.len() as u64, "project"),
        args.out.display(),
    ));
    Ok(())
}

/// Writes project `id` to `out/name`; returns the messages and (uncompressed) bytes written.
/// Once `stop` is set it fails with [`activitylog::Error::Stopped`], leaving no file behind.
fn export_project(
    store: &Store,
    id: u64,
    out: &Path,
    name: &str,
    gzip: bool,
    bar: &indicatif::ProgressBar,
    stop: &AtomicBool,
) -> Result<(u64, u64)> {
    let target = out.join(name);
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Readable as any other file the user writes (the umask applies), not private to them.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(out)
        .with_context(|| format!("cannot create a temporary file in {}", out.display()))?;
    let writing = || format!("cannot write {}", target.display());
    let buffered = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    let (messages, bytes) = if gzip {
        let mut gz = GzEncoder::new(buffered, flate2::Compression::default());
        let counts = write_project(store, id, &mut gz, bar, &target, stop)?;
        gz.finish()
            .and_then(|mut b| b.flush())
            .with_context(writing)?;
        counts
    } else {
        let mut buffered = buffered;
        let counts = write_project(store, id, &mut buffered, bar, &target, stop)?;
        buffered.flush().with_context(writing)?;
        counts
    };
    tmp.as_file().sync_all().with_context(writing)?;
    tmp.persist(&target)
        .map_err(|e| e.error)
        .with_context(writing)?;
    // An earlier export of the project in the other form is replaced too.
    let other = out.join(format!("{id}.jl{}", if gzip { "" } else { ".gz" }));
    match fs::remove_file(&other) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", other.display()));
        }
        _ => {}
    }
    Ok((messages, bytes))
}

/// Writes project `id` oldest first, one message with its `_ts` (to the microsecond) per line;
/// fails with
/// [`activitylog::Error::Stopped`] once `stop` is set.
fn write_project(
    store: &Store,
    id: u64,
    out: &mut impl Write,
    bar: &indicatif::ProgressBar,
    target: &Path,
    stop: &AtomicBool,
) -> Result<(u64, u64)> {
    const TICK: u64 = 1024;
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut line = Vec::with_capacity(4096);
    for message in store.oldest_first(id)? {
        if stop.load(Ordering::Relaxed) {
            return Err(activitylog::Error::Stopped.into());
        }
        let message = bar.suspend(|| past_retention(message));
        let Some(message) = message.with_context(|| format!("cannot export project {id}"))? else {
            continue;
        };
        line.clear();
        message.write_archive_line(&mut line);
        line.push(b'\n');
        out.write_all(&line)
            .with_context(|| format!("cannot write {}", target.display()))?;
        messages += 1;
        bytes += line.len() as u64;
        if messages % TICK == 0 {
            bar.inc(TICK);
        }
    }
    bar.inc(messages % TICK);
    Ok((messages, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output that has retention applied to the store (as a server beside the export would)
    /// when the first line is written.
    struct RetainOnFirstWrite {
        writer: Option<Store>,
        written: Vec<u8>,
    }

    impl Write for RetainOnFirstWrite {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(writer) = self.writer.take() {
                let r = activitylog::Retention::new().max_messages(100);
                assert!(writer.apply_retention(&r).unwrap().messages > 1000);
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Records that retention removed while an export read its project leave a gap the export
    /// goes on past (with a warning): the export of a store a retaining server writes succeeds.
    #[test]
    fn an_export_goes_on_past_records_retention_removed_while_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let writer = activitylog::Options::new()
            .segment_bytes(4096)
            .open(dir.path())
            .unwrap();
        let lines: String = (0..2000)
            .map(|i| {
                format!(
                    "{{\"i\":{i},\"pad\":\"{}\",\"_ts\":{}}}\n",
                    "x".repeat(90),
                    1000 + i
                )
            })
            .collect();
        writer
            .import_json_lines(
                lines.as_bytes(),
                ImportTarget::Project(1),
                Durability::Written,
            )
            .unwrap();
        let reader = open_read_only(dir.path()).unwrap();
        let mut out = RetainOnFirstWrite {
            writer: Some(writer),
            written: Vec::new(),
        };
        let bar = indicatif::ProgressBar::hidden();
        let never = AtomicBool::new(false);
        let (messages, _) =
            write_project(&reader, 1, &mut out, &bar, Path::new("1.jl"), &never).unwrap();
        let text = String::from_utf8(out.written).unwrap();
        assert_eq!(text.lines().count() as u64, messages);
        assert!(text.starts_with("{\"i\":0,"), "{text:?}");
        assert!(text.lines().last().unwrap().starts_with("{\"i\":1999,"));
        assert!(messages < 2000);
    }

    #[test]
    fn projects_from_file_names() {
        let id = |name: &str| project_of_file_name(Path::new(name));
        assert_eq!(id("42.jl"), Some(42));
        assert_eq!(id("dir/42.jsonl"), Some(42));
        assert_eq!(id("42.jl.gz"), Some(42));
        assert_eq!(id("42.jsonl.gz"), Some(42));
        assert_eq!(id("18446744073709551615.jl"), Some(u64::MAX));
        for name in [
            "42", "42.json", "x42.jl", "+42.jl", ".jl", "42.gz", "1 2.jl",
        ] {
            assert_eq!(id(name), None, "{name}");
        }
        assert_eq!(id("18446744073709551616.jl"), None);
    }
}
