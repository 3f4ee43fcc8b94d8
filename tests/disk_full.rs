//! A full disk: the built `activitylog` binary runs under a file-size limit (`ulimit -f N`, in
//! 512-byte blocks, with SIGXFSZ ignored so that a write past the limit fails with EFBIG, "File
//! too large", instead of killing the process), as if the disk filled up under it.
//!
//! Each scenario appends numbered batches to one project, one `activitylog append` (or `import`)
//! per batch, each batch larger than the one before, until the binary reports an error; then it
//! tries two tiny batches more. A batch is *acknowledged* when its invocation exits 0 (`append`
//! prints nothing on success). Then, without the limit, the test process checks:
//!
//! - every failure is one plain sentence on stderr (`error: …`), exit code 1, no panic;
//! - every acknowledged batch is in the store, whole and byte for byte;
//! - nothing of a refused `append` is stored (a refused `import` may leave a prefix of its file:
//!   it appends a file in segment-sized batches, as `Store::import_json_lines` documents);
//! - `verify` finds nothing but perhaps a torn tail, and nothing at all once a writable open has
//!   repaired it;
//! - appending continues: in the test process, and through the binary once the limit is gone;
//! - under the limit, right after a refusal, a tiny batch is accepted exactly when it fits in
//!   what is left of the newest segment (or in a fresh one, when it would roll);
//! - a refused `import` of several files does not claim that nothing of the refused file was
//!   stored when a prefix of it was.
//!
//! Each scenario prints one line on stderr (`-- --nocapture` shows them): attempts,
//! acknowledgements, the first refusal's message, what `verify` found, and how many messages of
//! refused batches were stored.
//!
//! Limits straddle the 4 KiB segment size: below it the newest segment itself fills up; at or
//! above it segments roll normally until a batch larger than a segment needs an oversized one.
//! Limit 0 leaves no room even for the store's own files.
//!
//! Modes, chosen by the `DISK_FULL` environment variable:
//! - unset (CI): a handful of limits, with both durability levels;
//! - `DISK_FULL=all`: every limit from 0 to 24 blocks, appends with both durability levels and
//!   imports.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use activitylog::{verify, Message, Options};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_activitylog");
const P: u64 = 5;
/// The store's segment size.
const SEGMENT_BYTES: u64 = 4096;
/// Sizes of the log's header and of a frame's header and trailer (`docs/format.md`).
const LOG_HEADER: u64 = 48;
const FRAME_OVERHEAD: u64 = 20;
/// A scenario that has not reached its limit after this many batches is broken.
const MAX_BATCHES: u64 = 120;
/// Tiny batches tried after the first refusal.
const TINY_AFTER: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Append,
    Import,
}

#[derive(Debug, Clone, Copy)]
struct Limit {
    blocks: u64,
    tool: Tool,
    sync: bool,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} under ulimit -f {} ({} bytes), {}",
            self.tool,
            self.blocks,
            self.blocks * 512,
            if self.sync { "sync" } else { "written" }
        )
    }
}

fn limits() -> Vec<Limit> {
    let long = match std::env::var("DISK_FULL") {
        Ok(v) if v == "all" => true,
        Ok(v) => panic!("DISK_FULL must be `all` or unset, not {v:?}"),
        Err(_) => false,
    };
    let l = |blocks, tool, sync| Limit { blocks, tool, sync };
    if long {
        let mut out = Vec::new();
        for blocks in 0..=24 {
            out.push(l(blocks, Tool::Append, false));
            out.push(l(blocks, Tool::Append, true));
            out.push(l(blocks, Tool::Import, false));
        }
        return out;
    }
    vec![
        l(0, Tool::Append, false),
        l(1, Tool::Append, false),
        l(3, Tool::Append, true),
        l(7, Tool::Append, false),
        l(8, Tool::Append, false),
        l(9, Tool::Append, true),
        l(13, Tool::Append, false),
        l(2, Tool::Import, false),
        l(8, Tool::Import, false),
        l(11, Tool::Import, true),
    ]
}

/// One invocation of the binary and what it was given.
#[derive(Debug)]
struct Attempt {
    /// The batch number (tiny batches after the refusal continue the numbering).
    b: u64,
    messages: Vec<String>,
    output: Output,
    /// The newest segment's committed length and records just before the attempt, if any.
    newest_before: Option<(u64, u64)>,
}

impl Attempt {
    fn acked(&self) -> bool {
        self.output.status.success()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// What a scenario left: its attempts and the store's files (relative paths and contents), so
/// that every test works on its own copy.
struct Scenario {
    limit: Limit,
    attempts: Vec<Attempt>,
    files: Vec<(PathBuf, Vec<u8>)>,
    /// What `verify` found in the store as the binary left it.
    left: Vec<String>,
}

impl Scenario {
    /// A fresh copy of the store the scenario left.
    fn materialize(&self) -> tempfile::TempDir {
        let dir = common::scratch();
        for (rel, bytes) in &self.files {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        dir
    }

    fn first_refusal(&self) -> usize {
        self.attempts
            .iter()
            .position(|a| !a.acked())
            .unwrap_or_else(|| panic!("{}: the limit was never reached", self.limit))
    }
}

/// Batch `b`: growing, so that every limit is reached. For `append`, 1 to 3 messages; for
/// `import`, 3 to 6 small lines and a big last one, so that a larger file spans two of the
/// import's segment-sized batches and a refusal can come after the first is stored.
fn batch(b: u64, tool: Tool) -> Vec<String> {
    let pads: Vec<u64> = match tool {
        Tool::Append => (0..1 + b % 3).map(|k| 3 * b * b + 5 * k).collect(),
        Tool::Import => (0..3 + b % 4)
            .map(|k| 20 * b + k)
            .chain([10 * b * b])
            .collect(),
    };
    pads.iter()
        .enumerate()
        .map(|(k, &pad)| {
            format!(
                r#"{{"b":{b},"k":{k},"pad":"{}"}}"#,
                "x".repeat(pad as usize)
            )
        })
        .collect()
}

fn tiny(b: u64) -> Vec<String> {
    vec![format!(r#"{{"b":{b},"k":0,"tiny":true}}"#)]
}

/// Runs the binary under the limit: `sh` ignores SIGXFSZ (inherited across `exec`), sets the
/// limit, and `exec`s the binary with the arguments.
fn run_limited(blocks: u64, args: &[&str]) -> Output {
    let script = format!(r#"trap '' XFSZ; ulimit -f {blocks}; exec "$0" "$@""#);
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .args(args)
        .env_remove("ACTIVITYLOG_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

/// The committed length and record count of a log image: frames walked from the header while
/// they are whole and their CRC matches (what recovery keeps, bar an unfinished batch).
fn committed(log: &[u8]) -> (u64, u64) {
    let u32_at = |at: usize| u32::from_le_bytes(log[at..at + 4].try_into().unwrap());
    let mut at = LOG_HEADER as usize;
    let mut records = 0;
    while at + FRAME_OVERHEAD as usize <= log.len() {
        let len_flags = u32_at(at + 4);
        let len = (len_flags & 0xff_ffff) as usize;
        let end = at + FRAME_OVERHEAD as usize + len;
        if len == 0
            || end > log.len()
            || u32_at(end - 4) != len_flags
            || u32_at(at) != crc32fast::hash(&log[at + 4..end - 4])
        {
            break;
        }
        at = end;
        records += 1;
    }
    (at as u64, records)
}

/// The newest segment of project `P`: its committed length and records.
fn newest_segment(store: &Path) -> Option<(u64, u64)> {
    let first = *common::segments(store, P).last()?;
    Some(committed(
        &fs::read(common::log_path(store, P, first)).ok()?,
    ))
}

fn run_scenario(limit: Limit) -> Scenario {
    let work = common::scratch();
    let store = work.path().join("store");
    let dir = store.to_str().unwrap();
    let mut attempts = Vec::new();
    let mut refused_at = None;
    for b in 1.. {
        assert!(b <= MAX_BATCHES, "{limit}: the limit was never reached");
        let messages = match refused_at {
            None => batch(b, limit.tool),
            Some(_) => tiny(b),
        };
        let input = work.path().join(format!("{P}.jl"));
        fs::write(&input, messages.join("\n") + "\n").unwrap();
        let input = input.to_str().unwrap();
        let durability = if limit.sync { "sync" } else { "written" };
        let project = P.to_string();
        let args: Vec<&str> = match limit.tool {
            Tool::Append => vec![
                "append",
                "--dir",
                dir,
                "--segment-bytes",
                "4096",
                "--durability",
                durability,
                &project,
                input,
            ],
            Tool::Import => vec![
                "import",
                "--dir",
                dir,
                "--segment-bytes",
                "4096",
                "--durability",
                durability,
                "--project",
                &project,
                input,
            ],
        };
        let newest_before = newest_segment(&store);
        let output = run_limited(limit.blocks, &args);
        let acked = output.status.success();
        attempts.push(Attempt {
            b,
            messages,
            output,
            newest_before,
        });
        if !acked && refused_at.is_none() {
            refused_at = Some(b);
        }
        if refused_at.is_some_and(|r| b >= r + TINY_AFTER) {
            break;
        }
    }
    let mut files = Vec::new();
    if store.is_dir() {
        collect_files(&store, Path::new(""), &mut files);
    }
    Scenario {
        limit,
        attempts,
        files,
        left: problems(&store),
    }
}

fn collect_files(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let rel = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            collect_files(root, &rel, out);
        } else {
            out.push((rel.clone(), fs::read(root.join(&rel)).unwrap()));
        }
    }
}

/// Every scenario, run once for all the tests (two at a time: the machine has two cores).
fn scenarios() -> &'static [Scenario] {
    static ALL: OnceLock<Vec<Scenario>> = OnceLock::new();
    ALL.get_or_init(|| {
        let limits = limits();
        let mut out: Vec<Option<Scenario>> = (0..limits.len()).map(|_| None).collect();
        std::thread::scope(|s| {
            for (half, slots) in out.chunks_mut(limits.len().div_ceil(2)).enumerate() {
                let limits = &limits;
                s.spawn(move || {
                    let base = half * limits.len().div_ceil(2);
                    for (i, slot) in slots.iter_mut().enumerate() {
                        *slot = Some(run_scenario(limits[base + i]));
                    }
                });
            }
        });
        let out: Vec<Scenario> = out.into_iter().map(Option::unwrap).collect();
        for s in &out {
            let acked = s.attempts.iter().filter(|a| a.acked()).count();
            let copy = s.materialize();
            let got = stored(copy.path(), &s.limit.to_string());
            let of_refused = got
                .iter()
                .filter(|m| {
                    s.attempts
                        .iter()
                        .any(|a| !a.acked() && a.messages.iter().any(|x| x == m.json()))
                })
                .count();
            eprintln!(
                "disk_full: {}: {} attempts, {acked} acknowledged, first refusal at batch {} \
                 ({}); verify then found {} problems; {of_refused} messages of refused batches \
                 stored",
                s.limit,
                s.attempts.len(),
                s.first_refusal() + 1,
                s.attempts[s.first_refusal()].stderr().trim_end(),
                s.left.len()
            );
        }
        out
    })
}

/// Project `P`'s messages, oldest first, from a writable open of `dir`.
fn stored(dir: &Path, what: &str) -> Vec<Message> {
    let store = Options::new()
        .open(dir)
        .unwrap_or_else(|e| panic!("{what}: the store opens: {e}"));
    store
        .oldest_first(P)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .map(|m| m.unwrap_or_else(|e| panic!("{what}: every message reads: {e}")))
        .collect()
}

fn problems(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    match verify(dir, None, |p| found.push(p.to_string()), |_| {}) {
        Ok(_) => found,
        // A store that was never created (limit 0) has nothing to verify.
        Err(activitylog::Error::NotAStore { .. }) => found,
        Err(e) => vec![format!("verify failed: {e}")],
    }
}

#[test]
fn every_refusal_is_one_plain_sentence_on_stderr_and_exit_code_1() {
    for s in scenarios() {
        let refusals: Vec<&Attempt> = s.attempts.iter().filter(|a| !a.acked()).collect();
        assert!(
            !refusals.is_empty(),
            "{}: the limit was never reached",
            s.limit
        );
        for a in &s.attempts {
            let what = format!("{}, batch {}", s.limit, a.b);
            let stderr = a.stderr();
            assert!(!stderr.contains("panicked"), "{what}: a panic: {stderr}");
            if a.acked() {
                continue;
            }
            assert_eq!(
                a.output.status.code(),
                Some(1),
                "{what}: the exit code (a signal or a panic otherwise): {stderr}"
            );
            assert!(a.output.stdout.is_empty(), "{what}: stdout");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{what}: one line on stderr: {stderr:?}");
            assert!(lines[0].starts_with("error: "), "{what}: {stderr:?}");
            assert!(
                lines[0].contains("File too large (os error 27)"),
                "{what}: the error is the full disk (EFBIG): {stderr:?}"
            );
        }
    }
}

#[test]
fn every_acknowledged_batch_is_stored_whole() {
    for s in scenarios() {
        let copy = s.materialize();
        let got = stored(copy.path(), &s.limit.to_string());
        for a in s.attempts.iter().filter(|a| a.acked()) {
            let what = format!("{}, acknowledged batch {}", s.limit, a.b);
            let first = got
                .iter()
                .position(|m| m.json() == a.messages[0])
                .unwrap_or_else(|| panic!("{what}: lost"));
            let found: Vec<&str> = got[first..]
                .iter()
                .take(a.messages.len())
                .map(Message::json)
                .collect();
            assert_eq!(found, a.messages, "{what}: not whole");
            let seqs: Vec<u64> = got[first..first + found.len()]
                .iter()
                .map(Message::seq)
                .collect();
            let want: Vec<u64> = (0..found.len() as u64).map(|i| seqs[0] + i).collect();
            assert_eq!(seqs, want, "{what}: consecutive seqs");
        }
    }
}

/// The store holds exactly the acknowledged batches in order — and, for `import`, perhaps a
/// prefix of a refused file — and nothing else.
#[test]
fn nothing_of_a_refused_append_is_stored() {
    for s in scenarios() {
        let copy = s.materialize();
        let got: Vec<String> = stored(copy.path(), &s.limit.to_string())
            .into_iter()
            .map(Message::into_json)
            .collect();
        let mut at = 0;
        for a in &s.attempts {
            let what = format!("{}, batch {}", s.limit, a.b);
            let rest = &got[at..];
            if a.acked() {
                assert!(
                    rest.starts_with(&a.messages),
                    "{what}: acknowledged, not there"
                );
                at += a.messages.len();
                continue;
            }
            let kept = rest
                .iter()
                .zip(&a.messages)
                .take_while(|(g, m)| g == m)
                .count();
            match s.limit.tool {
                Tool::Append => assert_eq!(kept, 0, "{what}: refused, yet {kept} messages stored"),
                Tool::Import => assert!(kept < a.messages.len(), "{what}: refused, yet whole"),
            }
            at += kept;
        }
        assert_eq!(
            got.len(),
            at,
            "{}: messages no batch accounts for: {:?}",
            s.limit,
            &got[at..]
        );
    }
}

#[test]
fn verify_finds_at_most_a_torn_tail_and_nothing_after_a_writable_open() {
    for s in scenarios() {
        assert!(
            s.left.iter().all(|p| p.contains("torn tail")),
            "{}: as the binary left the store: {:?}",
            s.limit,
            s.left
        );
        let copy = s.materialize();
        stored(copy.path(), &s.limit.to_string());
        assert_eq!(problems(copy.path()), Vec::<String>::new(), "{}", s.limit);
    }
}

#[test]
fn appending_continues_once_the_disk_has_room() {
    for s in scenarios() {
        let what = s.limit.to_string();
        let copy = s.materialize();
        let before = stored(copy.path(), &what).len() as u64;
        let store = Options::new()
            .segment_bytes(SEGMENT_BYTES)
            .open(copy.path())
            .unwrap();
        let a = store
            .append(
                P,
                [r#"{"after":"room","k":1}"#, r#"{"after":"room","k":2}"#],
            )
            .unwrap_or_else(|e| panic!("{what}: append in the test process: {e}"));
        assert_eq!(a.first_seq, before + 1, "{what}: seqs continue");
        drop(store);
        let input = copy.path().join("more.jl");
        fs::write(&input, "{\"after\":\"room\",\"k\":3}\n").unwrap();
        let out = Command::new(BIN)
            .args(["append", "--dir"])
            .arg(copy.path())
            .arg(P.to_string())
            .arg(&input)
            .env_remove("ACTIVITYLOG_LOG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: the binary appends without the limit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = stored(copy.path(), &what);
        let tail: Vec<(u64, &str)> = got[got.len() - 3..]
            .iter()
            .map(|m| (m.seq(), m.json()))
            .collect();
        assert_eq!(
            tail,
            [
                (before + 1, r#"{"after":"room","k":1}"#),
                (before + 2, r#"{"after":"room","k":2}"#),
                (before + 3, r#"{"after":"room","k":3}"#),
            ],
            "{what}"
        );
    }
}

/// Right after a refusal, under the same limit: a tiny batch goes where the newest segment
/// ends, or into a fresh segment when it would take the newest past the segment size; it is
/// accepted exactly when that file then stays within the limit.
#[test]
fn after_a_refusal_a_batch_that_fits_is_accepted() {
    for s in scenarios() {
        for a in &s.attempts[s.first_refusal() + 1..] {
            let what = format!("{}, tiny batch {}", s.limit, a.b);
            let frame = FRAME_OVERHEAD + a.messages[0].len() as u64;
            let fits = match a.newest_before {
                // No segment yet: the store itself could not be created (limit 0).
                None => false,
                Some((len, records)) => {
                    let end = if records > 0 && len + frame > SEGMENT_BYTES {
                        LOG_HEADER + frame
                    } else {
                        len + frame
                    };
                    end <= s.limit.blocks * 512
                }
            };
            assert_eq!(
                a.acked(),
                fits,
                "{what}: newest segment before it {:?}, frame {frame} bytes; stderr: {}",
                a.newest_before,
                a.stderr()
            );
        }
    }
}

/// `import` appends a file in segment-sized batches, so a full disk can stop it after some of a
/// file's batches are stored. When it stops in a file after others were imported, it must not
/// claim that nothing of that file was imported while part of it was: re-running the import for
/// that file would store that part twice.
#[test]
fn a_refused_import_tells_the_truth_about_what_of_its_file_was_stored() {
    let work = common::scratch();
    let store = work.path().join("store");
    let line =
        |f: u64, k: u64, pad: usize| format!(r#"{{"f":{f},"k":{k},"pad":"{}"}}"#, "x".repeat(pad));
    // The first file is small; the second's four small lines make one batch that fits, and its
    // big last line a batch of its own that does not fit under the limit (3 KiB).
    let first: Vec<String> = (0..3).map(|k| line(1, k, 10)).collect();
    let mut second: Vec<String> = (0..4).map(|k| line(2, k, 100)).collect();
    second.push(line(2, 4, 3900));
    let files = [("1.jl", &first), ("2.jl", &second)];
    for (name, lines) in files {
        fs::write(work.path().join(name), lines.join("\n") + "\n").unwrap();
    }
    let (dir, one, two) = (
        store.to_str().unwrap(),
        work.path().join("1.jl"),
        work.path().join("2.jl"),
    );
    let out = run_limited(
        6,
        &[
            "import",
            "--dir",
            dir,
            "--segment-bytes",
            "4096",
            "--project",
            "5",
            one.to_str().unwrap(),
            two.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the import is refused: {stderr}"
    );
    assert!(stderr.contains("File too large"), "{stderr}");
    let got: Vec<String> = stored(&store, "import of 1.jl and 2.jl")
        .into_iter()
        .map(Message::into_json)
        .collect();
    assert!(
        got.starts_with(&first),
        "the first file is imported: {got:?}"
    );
    let of_second = got.len() - first.len();
    assert_eq!(
        got[first.len()..],
        second[..of_second],
        "a prefix of the second file"
    );
    if stderr.contains("nothing of it") {
        assert_eq!(
            of_second, 0,
            "stderr says nothing of 2.jl was imported, but its first {of_second} lines were: {stderr}"
        );
    }
    if of_second > 0 {
        let said = format!("after {of_second} of the input's messages were stored");
        assert!(
            stderr.contains(&said),
            "stderr must say how much of 2.jl was stored ({said:?}): {stderr}"
        );
    }
}
