//! The archive subcommands of the `activitylog` tool, run as a separate process: import,
//! export, verify, stats, tail and retain.

#![cfg(feature = "cli")]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use activitylog::{Options, Retention, Store};
use flate2::write::GzEncoder;

const BIN: &str = env!("CARGO_BIN_EXE_activitylog");

/// Runs the tool with `args` and no input.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("ACTIVITYLOG_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the activitylog binary runs")
}

/// Runs the tool and requires success; returns stdout and stderr.
fn ok(args: &[&str]) -> (String, String) {
    let out = run(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "activitylog {args:?} failed: {stderr}"
    );
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// Runs the tool and requires exit status 1 with an `error:` line last on stderr; returns
/// stdout and stderr.
fn fails(args: &[&str]) -> (String, String) {
    let out = run(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "exit of {args:?}: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "stderr: {stderr:?}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn get(store: &Path, project: &str) -> String {
    ok(&["get", "--dir", s(store), project]).0
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// `n` JSON Lines of about 130 bytes, the i-th with `"_ts": base_ms + i` when `base_ms` is set.
fn lines(n: usize, base_ms: Option<u64>) -> String {
    (0..n)
        .map(|i| {
            let ts = base_ms.map_or(String::new(), |b| format!(",\"_ts\":{}", b + i as u64));
            format!(
                "{{\"event\":\"job:started\",\"i\":{i},\"pad\":\"{}\"{ts}}}\n",
                "x".repeat(90)
            )
        })
        .collect()
}

/// A store in `dir/store` with `n` messages in project 1 in 4096-byte segments.
fn small_store(dir: &Path, n: usize) -> PathBuf {
    let file = dir.join("1.jl");
    fs::write(&file, lines(n, Some(1_700_000_000_000))).unwrap();
    let store = dir.join("store");
    ok(&[
        "import",
        "--dir",
        s(&store),
        "--segment-bytes",
        "4096",
        s(&file),
    ]);
    store
}

/// The log files of `project`, oldest first.
fn logs(store: &Path, project: u64) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(store.join("projects").join(project.to_string()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

#[test]
fn import_plain_and_gzipped_files_named_by_project() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("5.jl");
    let gz = tmp.path().join("7.jsonl.gz");
    fs::write(&plain, "{\"a\":1,\"_ts\":1000}\n{\"a\":2,\"_ts\":2000}\n").unwrap();
    fs::write(&gz, gzip(b"{\"b\":1}\r\n\n{\"b\" : 2}")).unwrap();
    let store = tmp.path().join("store");
    let (out, err) = ok(&["import", "--dir", s(&store), s(&plain), s(&gz)]);
    assert_eq!(out, "");
    // Not a terminal: no progress bar, only the summary.
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.starts_with("imported 4 messages (") && err.contains("msg/s"),
        "{err:?}"
    );
    assert_eq!(get(&store, "5"), "{\"a\":2}\n{\"a\":1}\n");
    assert_eq!(get(&store, "7"), "{\"b\":2}\n{\"b\":1}\n");
    // `_ts` became the append time.
    let (ts, _) = ok(&["get", "--dir", s(&store), "--meta", "_ts", "5"]);
    assert_eq!(ts, "{\"a\":2,\"_ts\":2000}\n{\"a\":1,\"_ts\":1000}\n");
}

/// Zero bytes after the last gzip member (padding to a block size, which tape tools and some
/// archivers leave) are ignored as gzip(1) ignores them, with one warning per file; a file of
/// two members is read whole, padded or not, and so is padded standard input.
#[test]
fn gzip_input_padded_with_zero_bytes_is_imported_with_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let mut padded = gzip(lines(300, Some(1_700_000_000_000)).as_bytes());
    // More than one read buffer of zeros.
    padded.extend(std::iter::repeat_n(0u8, 200_000));
    let one = tmp.path().join("1.jl.gz");
    fs::write(&one, &padded).unwrap();
    let mut members = gzip(b"{\"m\":1}\n");
    members.extend(gzip(b"{\"m\":2}\n"));
    members.extend([0u8; 512]);
    let two = tmp.path().join("2.jl.gz");
    fs::write(&two, &members).unwrap();
    let store = tmp.path().join("store");
    let (_, err) = ok(&["import", "--dir", s(&store), s(&one), s(&two)]);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(
        warnings,
        [
            format!(
                "warning: {}: ignored 200000 zero bytes after the end of its gzip data",
                s(&one)
            ),
            format!(
                "warning: {}: ignored 512 zero bytes after the end of its gzip data",
                s(&two)
            ),
        ],
        "{err}"
    );
    assert!(err.contains("imported 302 messages ("), "{err}");
    assert_eq!(get(&store, "1").lines().count(), 300);
    assert_eq!(get(&store, "2"), "{\"m\":2}\n{\"m\":1}\n");

    let mut child = Command::new(BIN)
        .args(["import", "--dir", s(&store), "--project", "3", "-"])
        .env_remove("ACTIVITYLOG_LOG")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&members).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    assert!(
        err.starts_with(
            "warning: standard input: ignored 512 zero bytes after the end of its gzip data\n"
        ),
        "{err}"
    );
    assert_eq!(get(&store, "3"), "{\"m\":2}\n{\"m\":1}\n");
}

/// Other bytes after gzip data (garbage, or garbage after zeros) and a member cut short are
/// still errors that name the file, and nothing of it is stored.
#[test]
fn gzip_input_with_trailing_garbage_or_cut_short_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let good = gzip(lines(50, None).as_bytes());
    let mut garbage = good.clone();
    garbage.extend(b"garbage\n");
    let mut zeros_then_garbage = good.clone();
    zeros_then_garbage.extend([0u8; 100]);
    zeros_then_garbage.push(7);
    let cut = good[..good.len() - 10].to_vec();
    let neither = "bytes after the end of the gzip data are neither another gzip member nor zero \
                   padding";
    for (name, bytes, says) in [
        ("garbage", garbage, neither),
        ("zeros-then-garbage", zeros_then_garbage, neither),
        ("cut", cut, ""),
    ] {
        let file = tmp.path().join("4.jl.gz");
        fs::write(&file, bytes).unwrap();
        let store = tmp.path().join(name);
        let (_, err) = fails(&["import", "--dir", s(&store), s(&file)]);
        let last = err.lines().last().unwrap();
        assert!(
            last.starts_with(&format!("error: {}: ", s(&file))) && last.contains(says),
            "{name}: {err}"
        );
        assert!(!err.contains("warning"), "{name}: {err}");
        // The store this import made, with nothing in it, is not left behind.
        assert!(!store.exists(), "{name}");
    }
}

/// A pipe may hand over a gzipped input's first byte on its own: the input is still read as
/// gzip (telling by the first read alone took it for JSON and refused line 1).
#[test]
fn gzipped_standard_input_whose_first_byte_comes_alone_is_read_as_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let gz = gzip(b"{\"a\":1}\n{\"a\":2}\n");
    let mut child = Command::new(BIN)
        .args(["import", "--dir", s(&store), "--project", "3", "-"])
        .env_remove("ACTIVITYLOG_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&gz[..1]).unwrap();
    stdin.flush().unwrap();
    // The store is opened just before the input is read: once it is there, give the tool
    // time to read the lone byte.
    for _ in 0..200 {
        if store.join("CLOCK").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(&gz[1..]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(get(&store, "3"), "{\"a\":2}\n{\"a\":1}\n");
}

#[test]
fn import_with_project_sends_every_file_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("anything.txt");
    let b = tmp.path().join("5.jl.gz");
    fs::write(&a, "{\"n\":1}\n").unwrap();
    fs::write(&b, gzip(b"{\"n\":2}\n")).unwrap();
    let store = tmp.path().join("store");
    ok(&["import", "--dir", s(&store), "--project", "9", s(&a), s(&b)]);
    assert_eq!(get(&store, "9"), "{\"n\":2}\n{\"n\":1}\n");
    assert_eq!(
        ok(&["stats", "--dir", s(&store), "--json"])
            .0
            .lines()
            .count(),
        1
    );
}

#[test]
fn import_with_project_field_routes_each_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mixed.jl");
    fs::write(
        &file,
        "{\"p\":1,\"n\":1}\n{\"p\":2,\"n\":2}\n{\"p\":1,\"n\":3}\n",
    )
    .unwrap();
    let store = tmp.path().join("store");
    ok(&[
        "import",
        "--dir",
        s(&store),
        "--project-field",
        "p",
        s(&file),
    ]);
    assert_eq!(get(&store, "1"), "{\"p\":1,\"n\":3}\n{\"p\":1,\"n\":1}\n");
    assert_eq!(get(&store, "2"), "{\"p\":2,\"n\":2}\n");

    fs::write(&file, "{\"p\":1}\n{\"q\":2}\n").unwrap();
    let (_, err) = fails(&[
        "import",
        "--dir",
        s(&store),
        "--project-field",
        "p",
        s(&file),
    ]);
    assert!(err.contains("mixed.jl: line 2 is invalid"), "{err:?}");
}

/// `--project-field _ts` is refused: `_ts` is each message's time, cut from the message, so it
/// cannot also name the project (the field that does stays in the message).
#[test]
fn the_project_field_cannot_be_ts() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("events.jl");
    fs::write(&file, "{\"p\":1,\"_ts\":1000}\n").unwrap();
    let store = tmp.path().join("store");
    let (_, err) = fails(&[
        "import",
        "--dir",
        s(&store),
        "--project-field",
        "_ts",
        s(&file),
    ]);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("cannot be _ts"), "{err:?}");
    assert!(!store.exists());
}

#[test]
fn import_a_folder_takes_its_json_lines_files_in_name_order() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("archive");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("3.jl"), "{\"n\":2}\n").unwrap();
    fs::write(folder.join("3.jsonl.gz"), gzip(b"{\"n\":3}\n")).unwrap();
    fs::write(folder.join("03.jl"), "{\"n\":1}\n").unwrap();
    fs::write(folder.join("4.jsonl"), "{\"m\":1}\n").unwrap();
    fs::write(folder.join("README.md"), "not an archive\n").unwrap();
    fs::write(folder.join(".3.jl.abc.tmp"), "half a file").unwrap();
    fs::write(folder.join(".5.jl"), "{\"hidden\":1}\n").unwrap();
    fs::create_dir(folder.join("6.jl")).unwrap();
    let store = tmp.path().join("store");
    let (_, err) = ok(&["import", "--dir", s(&store), s(&folder)]);
    assert!(err.contains("(4 files into 2 projects)"), "{err:?}");
    assert_eq!(get(&store, "3"), "{\"n\":3}\n{\"n\":2}\n{\"n\":1}\n");
    assert_eq!(get(&store, "4"), "{\"m\":1}\n");
    assert_eq!(ok(&["projects", "--dir", s(&store)]).0.lines().count(), 4);
}

/// A folder's `*.jl` file whose name is not UTF-8 is one of its files all the same: imported
/// with `--project`, never left out without a word.
#[cfg(unix)]
#[test]
fn a_folder_file_whose_name_is_not_utf8_is_imported() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("archive");
    fs::create_dir(&folder).unwrap();
    let latin1 = folder.join(std::ffi::OsStr::from_bytes(b"caf\xe9.jl"));
    fs::write(&latin1, "{\"n\":1}\n").unwrap();
    fs::write(folder.join("d.jl"), "{\"n\":2}\n").unwrap();
    let store = tmp.path().join("store");
    let (_, err) = ok(&["import", "--dir", s(&store), "--project", "3", s(&folder)]);
    assert!(err.contains("(2 files into 1 project)"), "{err:?}");
    assert_eq!(get(&store, "3"), "{\"n\":2}\n{\"n\":1}\n");
}

#[test]
fn a_file_whose_project_cannot_be_told_is_named_and_nothing_is_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("1.jl");
    let unnamed = tmp.path().join("events.jl");
    fs::write(&good, "{\"n\":1}\n").unwrap();
    fs::write(&unnamed, "{\"n\":2}\n").unwrap();
    let store = tmp.path().join("store");
    let (_, err) = fails(&["import", "--dir", s(&store), s(&good), s(&unnamed)]);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.contains("events.jl") && err.contains("--project"),
        "{err:?}"
    );
    // Worked out before anything was imported.
    assert!(!store.exists() || get(&store, "1").is_empty());
}

#[test]
fn a_bad_line_names_file_and_line_and_imports_nothing_of_that_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let good = tmp.path().join("1.jl");
    let bad = tmp.path().join("2.jl.gz");
    fs::write(&good, "{\"ok\":1}\n").unwrap();
    fs::write(
        &bad,
        gzip(b"{\"a\":1}\n\n{\"a\":2}\n[\"not an object\"]\n{\"a\":3}\n"),
    )
    .unwrap();
    let (_, err) = fails(&["import", "--dir", s(&store), s(&good), s(&bad)]);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("error: {}: line 4 is invalid: ", bad.display())),
        "{err:?}"
    );
    assert!(last.contains("not an object"), "{err:?}");
    // The file before it was imported (and the tool says so); nothing of the bad one was.
    assert!(
        err.contains("imported 1 file (1 message) before"),
        "{err:?}"
    );
    assert_eq!(get(&store, "1"), "{\"ok\":1}\n");
    assert_eq!(get(&store, "2"), "");

    let bad_ts = tmp.path().join("3.jl");
    fs::write(&bad_ts, "{\"a\":1}\n{\"_ts\":\"yesterday\"}\n").unwrap();
    let (_, err) = fails(&["import", "--dir", s(&store), s(&bad_ts)]);
    assert!(err.contains("3.jl: line 2 is invalid: its _ts"), "{err:?}");
    assert_eq!(get(&store, "3"), "");
}

/// Exports `store` to `out` (with extra `args`), returning each file's name and bytes.
fn export(store: &Path, out: &Path, args: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut all = vec!["export", "--dir", s(store), "--out", s(out)];
    all.extend_from_slice(args);
    let (stdout, stderr) = ok(&all);
    assert_eq!(stdout, "");
    assert!(stderr.starts_with("exported "), "{stderr:?}");
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(out)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// A store with awkward messages in three projects, several segments each.
fn varied_store(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    let db = activitylog::Options::new()
        .segment_bytes(4096)
        .open(&store)
        .unwrap();
    for i in 0..150 {
        let msg = match i % 4 {
            0 => format!(r#"{{"event":"job:started","i":{i}}}"#),
            1 => format!(r#"{{"x":[1,{{"y":"\u00e9 \"q\""}}],"i":{i}}}"#),
            2 => "{}".to_string(),
            _ => format!(r#"{{"s":"a,\"b\"}}{i}","pad":"{}"}}"#, "y".repeat(i)),
        };
        db.append(1, [msg]).unwrap();
        if i % 10 == 0 {
            db.append(22, [format!(r#"{{"p":{i}}}"#), "{\"q\":null}".into()])
                .unwrap();
        }
    }
    db.append(333, [r#"{"only":true}"#]).unwrap();
    store
}

fn identity(gzip: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let store = varied_store(tmp.path());
    let flag: &[&str] = if gzip { &["--gzip"] } else { &[] };
    let first = export(&store, &tmp.path().join("a"), flag);
    let ext = if gzip { ".jl.gz" } else { ".jl" };
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [1, 22, 333].map(|p| format!("{p}{ext}")));

    let copy = tmp.path().join("copy");
    let (_, err) = ok(&[
        "import",
        "--dir",
        s(&copy),
        "--segment-bytes",
        "4096",
        s(&tmp.path().join("a")),
    ]);
    assert!(err.starts_with("imported 181 messages"), "{err:?}");
    let second = export(&copy, &tmp.path().join("b"), flag);
    assert_eq!(first, second);
    if !gzip {
        let text = String::from_utf8(first[0].1.clone()).unwrap();
        assert_eq!(text.lines().count(), 150);
        assert!(text.starts_with("{\"event\":\"job:started\",\"i\":0,\"_ts\":"));
    }
}

#[test]
fn export_import_export_is_byte_identical() {
    identity(false);
}

#[test]
fn export_import_export_is_byte_identical_gzipped() {
    identity(true);
}

#[test]
fn export_of_chosen_projects_replaces_files_and_leaves_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = varied_store(tmp.path());
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("22.jl"), "stale").unwrap();
    fs::write(out.join("notes.txt"), "mine").unwrap();
    let files = export(&store, &out, &["-p", "22", "-p", "333"]);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["22.jl", "333.jl", "notes.txt"]);
    assert_eq!(String::from_utf8_lossy(&files[0].1).lines().count(), 30);

    let (_, err) = fails(&["export", "--dir", s(&store), "--out", s(&out), "-p", "4"]);
    assert!(err.contains("project 4 is not in the store"), "{err:?}");
}

/// Exported again in the other form, a project's earlier file goes: an import of the folder
/// would otherwise store its messages twice.
/// An export that fails (a damaged record) into a folder it made leaves no empty folder behind.
#[test]
fn a_failed_export_leaves_no_folder_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 200);
    let log = logs(&store, 1)[1].clone();
    let mut bytes = fs::read(&log).unwrap();
    bytes[300] ^= 0x01;
    fs::write(&log, bytes).unwrap();
    let out = tmp.path().join("out");
    let (_, err) = fails(&["export", "--dir", s(&store), "--out", s(&out)]);
    assert!(err.contains("cannot export project 1"), "{err:?}");
    assert!(!out.exists());
}

#[test]
fn export_in_the_other_form_replaces_the_earlier_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = varied_store(tmp.path());
    let out = tmp.path().join("out");
    export(&store, &out, &[]);
    let files = export(&store, &out, &["--gzip", "-p", "22"]);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["1.jl", "22.jl.gz", "333.jl"]);
    let files = export(&store, &out, &["-p", "22"]);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["1.jl", "22.jl", "333.jl"]);
}

/// A store whose writer allowed bigger messages than the default exports them, and `import`
/// takes them back once told the same limit; out of range, the limit is one error.
#[test]
fn import_takes_the_message_limit_of_the_store_it_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("big");
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1_500_000));
    activitylog::Options::new()
        .max_message_bytes(2 << 20)
        .open(&store)
        .unwrap()
        .append(4, [big.as_str()])
        .unwrap();
    let out = tmp.path().join("out");
    export(&store, &out, &[]);
    let copy = tmp.path().join("copy");
    let (_, err) = fails(&["import", "--dir", s(&copy), s(&out)]);
    assert!(err.contains("over the limit of 1048576 bytes"), "{err}");
    let limit = (2 << 20).to_string();
    ok(&[
        "import",
        "--dir",
        s(&copy),
        "--max-message-bytes",
        &limit,
        s(&out),
    ]);
    let copied = get(&copy, "4");
    assert_eq!(copied.trim_end(), big);
    // A limit no store can have is a usage error, as every out-of-range option is.
    let refused = run(&[
        "import",
        "--dir",
        s(&copy),
        "--max-message-bytes",
        "0",
        s(&out),
    ]);
    let err = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("0 is not in 1..=16777215"), "{err}");
}

/// A newest-first input (what `get --meta _ts` prints) is imported, but not silently: the
/// lines whose `_ts` goes back, stored at the time of the line before, are counted in a warning.
#[test]
fn a_newest_first_import_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("9.jl");
    fs::write(
        &file,
        "{\"a\":3,\"_ts\":3000}\n{\"a\":2,\"_ts\":2000}\n{\"a\":1,\"_ts\":1000}\n",
    )
    .unwrap();
    let store = tmp.path().join("store");
    let (_, err) = ok(&["import", "--dir", s(&store), s(&file)]);
    assert!(
        err.contains("2 messages had a _ts older than the line before them"),
        "{err}"
    );
    let oldest_first = tmp.path().join("8.jl");
    fs::write(&oldest_first, "{\"_ts\":1000}\n{\"_ts\":2000}\n").unwrap();
    let (_, err) = ok(&["import", "--dir", s(&store), s(&oldest_first)]);
    assert!(!err.contains("older than the line before"), "{err}");
}

/// Files given out of order lose their history as a newest-first file does (their messages are
/// stored at the newest time the project holds), and are warned about as it is.
#[test]
fn an_import_older_than_the_project_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let day2 = tmp.path().join("day2.jl");
    let day1 = tmp.path().join("day1.jl");
    fs::write(&day2, "{\"a\":3,\"_ts\":3000}\n{\"a\":4,\"_ts\":4000}\n").unwrap();
    fs::write(&day1, "{\"a\":1,\"_ts\":1000}\n{\"a\":2,\"_ts\":2000}\n").unwrap();
    let store = tmp.path().join("store");
    let (_, err) = ok(&[
        "import",
        "--dir",
        s(&store),
        "--project",
        "1",
        s(&day2),
        s(&day1),
    ]);
    assert!(
        err.contains("day1.jl: 2 messages had a _ts older than"),
        "{err}"
    );
}

/// A first import into a new folder that stores nothing (a bad line) leaves no empty store
/// behind; into an existing store, a failed import leaves the store as it was.
#[test]
fn a_failed_first_import_leaves_no_store_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("3.jl");
    fs::write(&bad, "{\"a\":1}\nnot json\n").unwrap();
    let store = tmp.path().join("new");
    fails(&["import", "--dir", s(&store), s(&bad)]);
    assert!(!store.exists());
    let good = tmp.path().join("4.jl");
    fs::write(&good, "{\"a\":1}\n").unwrap();
    ok(&["import", "--dir", s(&store), s(&good)]);
    fails(&["import", "--dir", s(&store), s(&bad)]);
    assert_eq!(get(&store, "4"), "{\"a\":1}\n");
}

#[test]
fn verify_a_clean_store_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 200);
    let (out, err) = ok(&["verify", "--dir", s(&store)]);
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.starts_with("verified 200 records ("), "{err:?}");
    assert!(err.trim_end().ends_with("no problems"), "{err:?}");
    ok(&["verify", "--dir", s(&store), "-p", "1"]);
    let (_, err) = fails(&["verify", "--dir", s(&store), "-p", "2"]);
    assert!(err.contains("project 2 is not in the store"), "{err:?}");
}

#[test]
fn verify_of_a_project_not_in_the_store_is_one_error_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 20);
    let (out, err) = fails(&["verify", "--dir", s(&store), "-p", "1", "-p", "7"]);
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!("error: project 7 is not in the store {}\n", store.display())
    );
}

/// Runs verify on a damaged store: exit 1, each problem a line on stdout; returns stdout.
fn damaged(store: &Path) -> String {
    let (out, err) = fails(&["verify", "--dir", s(store)]);
    let problems = out.lines().count();
    assert!(problems >= 1, "{out:?}");
    assert!(
        err.lines().last().unwrap().ends_with(&format!(
            "{problems} problem{} found",
            if problems == 1 { "" } else { "s" }
        )),
        "{err:?}"
    );
    out
}

#[test]
fn verify_names_a_flipped_byte_in_a_sealed_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 200);
    let logs = logs(&store, 1);
    assert!(logs.len() > 3);
    let mut bytes = fs::read(&logs[1]).unwrap();
    bytes[300] ^= 0x01;
    fs::write(&logs[1], bytes).unwrap();
    let out = damaged(&store);
    assert!(
        out.starts_with(&format!("{} bytes ", logs[1].display())),
        "{out:?}"
    );
}

/// Bytes after the last record that no index entry vouches for (a write a crash cut short).
#[test]
fn verify_names_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 200);
    let newest = logs(&store, 1).pop().unwrap();
    let mut file = fs::OpenOptions::new().append(true).open(&newest).unwrap();
    std::io::Write::write_all(&mut file, &[7; 11]).unwrap();
    let out = damaged(&store);
    assert!(
        out.contains(&format!("{} bytes ", newest.display())) && out.contains("torn tail"),
        "{out:?}"
    );
}

/// The last record cut short after it was synced (its index entry written): damage, not a
/// torn tail for the next open to cut.
#[test]
fn verify_names_a_synced_record_cut_short_as_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 200);
    let newest = logs(&store, 1).pop().unwrap();
    let file = fs::OpenOptions::new().write(true).open(&newest).unwrap();
    file.set_len(file.metadata().unwrap().len() - 7).unwrap();
    let out = damaged(&store);
    assert!(
        out.contains(&format!("{} bytes ", newest.display()))
            && out.contains("record 200 does not read, though the index vouches for them"),
        "{out:?}"
    );
}

/// A problem of the whole store (its `CLOCK`) is one problem, however many projects `-p` names.
#[test]
fn verify_of_several_projects_reports_a_store_problem_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 20);
    let two = tmp.path().join("2.jl");
    fs::write(&two, lines(3, Some(1_700_000_000_000))).unwrap();
    ok(&["import", "--dir", s(&store), s(&two)]);
    fs::write(store.join("CLOCK"), "not a clock").unwrap();
    let (out, err) = fails(&["verify", "--dir", s(&store), "-p", "1", "-p", "2"]);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(out.contains("CLOCK"), "{out:?}");
    assert!(
        err.contains("2 projects") && err.ends_with("error: 1 problem found\n"),
        "{err:?}"
    );
}

#[test]
fn verify_names_a_deleted_index() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 200);
    let idx = logs(&store, 1)[0].with_extension("idx");
    fs::remove_file(&idx).unwrap();
    let out = damaged(&store);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(
        out.starts_with(&format!("{} bytes 0..0: ", idx.display())) && out.contains("missing"),
        "{out:?}"
    );
}

#[test]
fn stats_as_a_table_with_a_total() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("x.jl");
    fs::write(
        &file,
        "{\"p\":4,\"_ts\":1796389200123}\n{\"p\":4,\"_ts\":1796389260000}\n{\"p\":10,\"_ts\":1796389200000}\n",
    )
    .unwrap();
    let store = tmp.path().join("store");
    ok(&[
        "import",
        "--dir",
        s(&store),
        "--project-field",
        "p",
        s(&file),
    ]);
    let (out, _) = ok(&["stats", "--dir", s(&store)]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert_eq!(
        rows[0],
        ["project", "messages", "bytes", "segments", "oldest", "newest"]
    );
    assert_eq!(rows[1][0..2], ["4", "2"]);
    assert_eq!(
        rows[1][4..],
        ["2026-12-04T13:00:00.123Z", "2026-12-04T13:01:00.000Z"]
    );
    assert_eq!(rows[2][0..2], ["10", "1"]);
    assert_eq!(rows[3][0..2], ["total", "3"]);
    assert_eq!(rows[3][3], "2");
    assert_eq!(
        rows[3][4..],
        ["2026-12-04T13:00:00.000Z", "2026-12-04T13:01:00.000Z"]
    );
    let bytes = |r: &Vec<&str>| r[2].parse::<u64>().unwrap();
    assert_eq!(bytes(&rows[3]), bytes(&rows[1]) + bytes(&rows[2]));

    let (one, _) = ok(&["stats", "--dir", s(&store), "-p", "10"]);
    assert_eq!(one.lines().count(), 3);
    let (_, err) = fails(&["stats", "--dir", s(&store), "-p", "11"]);
    assert!(err.contains("project 11 is not in the store"), "{err:?}");
}

#[test]
fn stats_as_json_lines_in_milliseconds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 200);
    let (out, _) = ok(&["stats", "--dir", s(&store), "--json"]);
    assert_eq!(out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(v["project"], 1);
    assert_eq!(v["messages"], 200);
    assert_eq!(v["oldest_ts"], 1_700_000_000_000u64);
    assert_eq!(v["newest_ts"], 1_700_000_000_199u64);
    assert_eq!(v["segments"].as_u64(), Some(logs(&store, 1).len() as u64));
    let on_disk: u64 = fs::read_dir(store.join("projects/1"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(v["bytes"].as_u64(), Some(on_disk));
}

#[test]
fn tail_prints_the_last_n_oldest_to_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 200);
    let order = |out: &str| -> Vec<u64> {
        out.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["i"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let (out, _) = ok(&["tail", "--dir", s(&store), "1"]);
    assert_eq!(order(&out), (190..200).collect::<Vec<_>>());
    let (out, _) = ok(&["tail", "--dir", s(&store), "-n", "3", "1"]);
    assert_eq!(order(&out), [197, 198, 199]);
    let (out, _) = ok(&["tail", "--dir", s(&store), "-n", "500", "1"]);
    assert_eq!(order(&out), (0..200).collect::<Vec<_>>());
    let (out, _) = ok(&["tail", "--dir", s(&store), "-n", "1", "--meta", "_ts", "1"]);
    assert!(out.ends_with(",\"_ts\":1700000000199}\n"), "{out:?}");
    assert_eq!(ok(&["tail", "--dir", s(&store), "-n", "0", "1"]).0, "");
    assert_eq!(ok(&["tail", "--dir", s(&store), "2"]).0, "");
}

/// Retention (a server's, say) that removes records a `tail` is about to print leaves a gap the
/// read goes on past: a warning names it, and the newest messages are still printed.
#[test]
fn tail_goes_on_past_records_retention_removed_while_it_read() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 5000);
    let mut child = Command::new(BIN)
        .args(["tail", "--dir", s(&store), "-n", "5000", "1"])
        .env_remove("ACTIVITYLOG_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Once a line has come, the tail is under way; a full pipe (its 650 KB do not fit) keeps it
    // from reading past its first few hundred records until the rest is read.
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"i\":0,"), "{first:?}");
    let writer = Store::open(&store).unwrap();
    let removed = writer
        .apply_retention(&activitylog::Retention::new().max_messages(100))
        .unwrap();
    assert!(removed.messages > 4000, "{removed:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("warning: ") && stderr.contains("removed by retention"),
        "{stderr}"
    );
    let last = rest.lines().last().unwrap_or_default();
    assert!(last.contains("\"i\":4999,"), "{last:?}");
}

/// Spawns `tail --follow` on project 1 with stdout and stderr piped; its lines arrive on the
/// channel.
fn follow(store: &Path, n: &str) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["tail", "--dir", s(store), "-n", n, "--follow", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn tail_follow_sees_messages_another_process_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 20);
    let (mut tail, lines) = follow(&store, "1");
    let first = lines.recv_timeout(PATIENCE).unwrap();
    assert!(first.contains("\"i\":19"), "{first}");

    // Another process writes: the tool's own append.
    let out = Command::new(BIN)
        .args(["append", "--dir", s(&store), "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"{\"late\":1}\n{\"late\":2}\n")?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    assert_eq!(lines.recv_timeout(PATIENCE).unwrap(), "{\"late\":1}");
    assert_eq!(lines.recv_timeout(PATIENCE).unwrap(), "{\"late\":2}");

    // A writer holding the store open (as a server does).
    let writer = Store::open(&store).unwrap();
    writer.append(1, [r#"{"late":3}"#]).unwrap();
    assert_eq!(lines.recv_timeout(PATIENCE).unwrap(), "{\"late\":3}");
    writer
        .append(1, [r#"{"late":4}"#, r#"{"late":5}"#])
        .unwrap();
    assert_eq!(lines.recv_timeout(PATIENCE).unwrap(), "{\"late\":4}");
    assert_eq!(lines.recv_timeout(PATIENCE).unwrap(), "{\"late\":5}");

    tail.kill().unwrap();
    tail.wait().unwrap();
}

#[test]
fn tail_follow_ends_quietly_when_its_reader_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 5);
    let mut tail = Command::new(BIN)
        .args(["tail", "--dir", s(&store), "--follow", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(tail.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    drop(stdout);
    // The next message cannot be written: the tool notices the closed pipe and ends.
    Store::open(&store)
        .unwrap()
        .append(1, [r#"{"after":"close"}"#])
        .unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = tail.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tail --follow went on"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut tail.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(err, "");
}

#[test]
fn retain_by_messages_removes_the_oldest_segments_only() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 300);
    let before = logs(&store, 1);
    let (out, _) = ok(&["retain", "--dir", s(&store), "--max-messages", "100"]);
    let after = logs(&store, 1);
    let removed = before.len() - after.len();
    assert!(removed > 0, "{out}");
    assert!(
        out.starts_with(&format!("removed {removed} segments (")),
        "{out:?}"
    );
    assert_eq!(before[removed..], after[..], "only the oldest go");
    let kept: Vec<u64> = get(&store, "1")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["i"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(kept.len() <= 100 && kept.len() > 50, "{}", kept.len());
    assert_eq!(kept[0], 299, "the newest stay");
    assert!(kept.windows(2).all(|w| w[0] == w[1] + 1), "no gaps");
    ok(&["verify", "--dir", s(&store)]);

    let (out, _) = ok(&["retain", "--dir", s(&store), "--max-messages", "100"]);
    assert_eq!(out, "removed 0 segments (0 messages, 0 B)\n");
}

#[test]
fn retain_by_age_and_size_keeps_the_newest_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("1.jl");
    // 200 messages from 2023, then 50 stamped now.
    let mut text = lines(200, Some(1_700_000_000_000));
    text.push_str(&lines(50, None).replace("job:started", "recent"));
    fs::write(&file, text).unwrap();
    let store = tmp.path().join("store");
    ok(&[
        "import",
        "--dir",
        s(&store),
        "--segment-bytes",
        "4096",
        s(&file),
    ]);
    ok(&["retain", "--dir", s(&store), "--max-age", "30d"]);
    let kept = get(&store, "1");
    assert_eq!(kept.matches("recent").count(), 50);
    let old = kept.lines().count() - 50;
    assert!(old < 40, "old messages left: {old}");

    ok(&["retain", "--dir", s(&store), "--max-bytes", "8K"]);
    let (json, _) = ok(&["stats", "--dir", s(&store), "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert!(v["bytes"].as_u64().unwrap() <= 8192, "{json}");
    let kept = get(&store, "1");
    assert!(
        kept.starts_with("{\"event\":\"recent\",\"i\":49,"),
        "{kept:?}"
    );
}

#[test]
fn retain_needs_a_limit_a_readable_one_and_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 5);
    assert_eq!(run(&["retain", "--dir", s(&store)]).status.code(), Some(2));
    let bad = run(&["retain", "--dir", s(&store), "--max-age", "30"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a duration"));
    let bad = run(&["retain", "--dir", s(&store), "--max-bytes", "1.5G"]);
    assert_eq!(bad.status.code(), Some(2));
    let elsewhere = tmp.path().join("not-a-store");
    fs::create_dir(&elsewhere).unwrap();
    let (_, err) = fails(&["retain", "--dir", s(&elsewhere), "--max-age", "1d"]);
    assert!(err.contains("is not an activitylog store"), "{err:?}");
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "no store made"
    );
}

#[test]
fn read_only_subcommands_work_while_a_writer_holds_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 50);
    let writer = Store::open(&store).unwrap();
    writer.append(1, [r#"{"held":true}"#]).unwrap();
    writer.append(2, [r#"{"other":1}"#]).unwrap();

    assert!(get(&store, "1").starts_with("{\"held\":true}\n"));
    assert_eq!(ok(&["projects", "--dir", s(&store)]).0.lines().count(), 52);
    assert_eq!(
        ok(&["tail", "--dir", s(&store), "-n", "1", "1"]).0,
        "{\"held\":true}\n"
    );
    let out = tmp.path().join("out");
    let files = export(&store, &out, &[]);
    assert_eq!(files.len(), 2);
    assert_eq!(String::from_utf8_lossy(&files[0].1).lines().count(), 51);
    ok(&["verify", "--dir", s(&store)]);
    let (stats, _) = ok(&["stats", "--dir", s(&store), "--json"]);
    assert_eq!(stats.lines().count(), 2);

    // Writing needs the lock.
    let (_, err) = fails(&["retain", "--dir", s(&store), "--max-messages", "1"]);
    assert!(err.contains("locked"), "{err:?}");
    drop(writer);
}

#[test]
fn a_closed_stdout_ends_output_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 2000);
    for args in [
        vec!["tail", "--dir", s(&store), "-n", "2000", "1"],
        vec!["stats", "--dir", s(&store)],
    ] {
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

/// `serve --retain-*` applies retention at start (and every minute), logging what it removed,
/// and `tail --follow` sees what the server stores.
#[cfg(feature = "server")]
#[test]
fn serve_applies_retention_and_tail_follows_the_server() {
    use std::io::Read;
    use std::net::TcpStream;

    let tmp = tempfile::tempdir().unwrap();
    let store = small_store(tmp.path(), 300);
    let segments = logs(&store, 1).len();
    let mut server = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--dir", s(&store)])
        .args(["--retain-max-messages", "100"])
        .env_remove("ACTIVITYLOG_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, said) = mpsc::channel();
    let stderr = server.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut addr = None;
    let mut retained = None;
    while addr.is_none() || retained.is_none() {
        let line = said.recv_timeout(PATIENCE).expect("the server reports");
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            addr = Some(url["http://".len()..].trim_end_matches('/').to_string());
        }
        if line.starts_with("info: retention removed ") && line.contains("segments (") {
            retained = Some(line);
        }
    }
    assert!(logs(&store, 1).len() < segments, "{retained:?}");

    let (mut tail, lines) = follow(&store, "1");
    assert!(lines.recv_timeout(PATIENCE).unwrap().contains("\"i\":299"));
    let body = "{\"via\":\"server\"}";
    let mut conn = TcpStream::connect(addr.unwrap()).unwrap();
    write!(
        conn,
        "POST /activity/1/ HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(lines.recv_timeout(PATIENCE).unwrap(), body);
    tail.kill().unwrap();
    tail.wait().unwrap();

    Command::new("kill")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    assert!(server.wait().unwrap().success());
    // The retention task let go of the store: it opens for writing.
    drop(Store::open(&store).unwrap());
}

/// Sends `signal` (`INT` or `TERM`) to the process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGINT (or SIGTERM) while an import reads its second file, a FIFO still open: the import
/// stops before storing anything of it, the first file stays imported, and one sentence on
/// stderr says how many messages were stored and where; the exit status is 128 + the signal.
#[test]
fn a_signal_during_an_import_stops_it_and_says_exactly_what_was_stored() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("1.jl");
        fs::write(&first, lines(1000, Some(1_700_000_000_000))).unwrap();
        let fifo = tmp.path().join("2.jl");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let store = tmp.path().join("store");
        let child = Command::new(BIN)
            .args(["import", "--dir", s(&store), s(&first), s(&fifo)])
            .env_remove("ACTIVITYLOG_LOG")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Opens once the import opens the FIFO, after the first file (and its handlers).
        let mut writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        writer.write_all(lines(10, None).as_bytes()).unwrap();
        signal(child.id(), sig);
        // What comes after the signal, and the end of the input, must not be stored either.
        let _ = writer.write_all(lines(10, None).as_bytes());
        drop(writer);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(code), "SIG{sig}: {err}");
        assert_eq!(
            err,
            format!(
                "error: stopped by SIG{sig} after storing 1000 messages: 1 file whole (1000 \
                 messages); nothing of {} or any file after it\n",
                s(&fifo)
            )
        );
        assert_eq!(get(&store, "1").lines().count(), 1000);
        assert_eq!(get(&store, "2"), "");
    }
}

/// A store's own imports may take its clock ahead of the machine's, a day at a time; its export
/// was then refused by every new store, with no way in (an audit). `--max-ts-ahead` lets it in,
/// and the round trip gives the same files back.
#[test]
fn an_export_from_a_store_whose_clock_ran_ahead_imports_with_max_ts_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ahead = tmp.path().join("store-ahead");
    for hours in [20, 40] {
        let file = tmp.path().join(format!("{hours}.jl"));
        fs::write(
            &file,
            format!("{{\"h\":{hours},\"_ts\":{}}}\n", now + hours * 3_600_000),
        )
        .unwrap();
        ok(&["import", "--dir", s(&ahead), "--project", "1", s(&file)]);
    }
    let out = tmp.path().join("out");
    ok(&["export", "--dir", s(&ahead), "--out", s(&out)]);
    let fresh = tmp.path().join("fresh");
    let (_, err) = fails(&["import", "--dir", s(&fresh), s(&out)]);
    assert!(err.contains("more than a day ahead"), "{err}");
    assert!(!fresh.exists(), "a refused import left a store");
    ok(&[
        "import",
        "--dir",
        s(&fresh),
        "--max-ts-ahead",
        "3d",
        s(&out),
    ]);
    let again = tmp.path().join("again");
    ok(&["export", "--dir", s(&fresh), "--out", s(&again)]);
    assert_eq!(
        fs::read(out.join("1.jl")).unwrap(),
        fs::read(again.join("1.jl")).unwrap()
    );
}

/// SIGINT while an import stores a file whose stamps it raises (each line older than the
/// project's newest message): the stop's sentence comes after the warning about the stamps of
/// what it stored, as a whole file's import gives it.
#[test]
fn an_import_stopped_while_storing_warns_about_the_stamps_it_raised() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let newer = tmp.path().join("newer.jl");
    fs::write(&newer, "{\"live\":1}\n").unwrap();
    ok(&[
        "import",
        "--dir",
        s(&store),
        "--segment-bytes",
        "4096",
        "--project",
        "1",
        s(&newer),
    ]);
    let old = tmp.path().join("old.jl");
    fs::write(&old, lines(150_000, Some(1_700_000_000_000))).unwrap();
    let child = Command::new(BIN)
        .args(["import", "--dir", s(&store), "--durability", "sync"])
        .args(["--project", "1", s(&old)])
        .env_remove("ACTIVITYLOG_LOG")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Storing has begun once the project has a few more segments (each a sync).
    let logs = || {
        fs::read_dir(store.join("projects").join("1"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("log".as_ref()))
            .count()
    };
    while logs() < 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(130), "{err}");
    let stored = get(&store, "1").lines().count() - 1;
    assert!(stored > 0 && stored < 150_000, "{stored}: {err}");
    assert!(
        err.starts_with(&format!(
            "warning: {}: {stored} messages had a _ts older than",
            s(&old)
        )),
        "{err}"
    );
    assert!(
        err.contains("error: stopped by SIGINT after storing"),
        "{err}"
    );
}

/// SIGINT while an export writes a project: its temporary file goes, the files of projects
/// it finished stay whole, an `--out` folder it made and left empty goes too, and one sentence
/// says what was exported; exit status 130.
#[test]
fn sigint_during_an_export_leaves_no_temporary_file_and_says_what_was_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let small = tmp.path().join("1.jl");
    fs::write(&small, lines(10, Some(1_700_000_000_000))).unwrap();
    // Big enough that its gzipped export takes far longer than the step from seeing its
    // temporary file to the signal.
    let big = tmp.path().join("2.jl");
    fs::write(&big, lines(800_000, Some(1_700_000_000_000))).unwrap();
    ok(&["import", "--dir", s(&store), s(&small), s(&big)]);
    let whole = tmp.path().join("whole");
    export(&store, &whole, &["--gzip", "-p", "1"]);

    for (projects, exported) in [(&["-p", "1", "-p", "2"][..], 1), (&["-p", "2"][..], 0)] {
        let out = tmp.path().join(format!("new-{exported}/out"));
        let mut child = Command::new(BIN)
            .args(["export", "--dir", s(&store), "--out", s(&out), "--gzip"])
            .args(projects)
            .env_remove("ACTIVITYLOG_LOG")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Waits (without a time limit) for project 2's temporary file.
        loop {
            let writing = fs::read_dir(&out).ok().is_some_and(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(".2.jl.gz.") && name.ends_with(".tmp")
                })
            });
            if writing {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the export ended before its temporary file was seen"
            );
            std::thread::yield_now();
        }
        signal(child.id(), "INT");
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(130), "{err}");
        let (total, messages, removed) = match exported {
            1 => ("2 projects", "10 messages", ""),
            _ => (
                "1 project",
                "0 messages",
                " (and removing the folder it had made)",
            ),
        };
        assert_eq!(
            err,
            format!(
                "error: stopped by SIGINT after exporting {exported} of {total} ({messages}) to \
                 {}, leaving no unfinished file{removed}\n",
                s(&out)
            )
        );
        if exported == 1 {
            let names: Vec<String> = fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, ["1.jl.gz"]);
            assert_eq!(
                fs::read(out.join("1.jl.gz")).unwrap(),
                fs::read(whole.join("1.jl.gz")).unwrap()
            );
        } else {
            // Both folders it made, empty, are gone.
            assert!(!out.parent().unwrap().exists());
        }
    }
}

/// `tail --follow` beside a writer whose retention removes records between two of its polls
/// (200 ms apart): those records were never printed, and the gap is named in a warning, as a
/// read that retention overtakes names its own. It used to go on past them silently (an audit).
#[test]
fn tail_follow_names_a_gap_left_by_retention_between_two_polls() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Options::new()
        .segment_bytes(64 << 10)
        .open(dir.path())
        .unwrap();
    writer.append(1, [r#"{"n":1}"#]).unwrap();
    let (mut child, rx) = follow(dir.path(), "1");
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), r#"{"n":1}"#);
    // Within one poll (200 ms): 100 messages land, then retention removes them.
    let pad = "x".repeat(1000);
    let batch: Vec<String> = (2..=101)
        .map(|n| format!(r#"{{"n":{n},"p":"{pad}"}}"#))
        .collect();
    writer.append(1, &batch).unwrap();
    writer.append(1, [r#"{"n":102}"#]).unwrap();
    writer
        .apply_retention(&Retention::new().max_messages(1))
        .unwrap();
    let mut printed = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(3)) {
        let last = line == r#"{"n":102}"#;
        printed.push(line);
        if last {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(printed.last().map(String::as_str), Some(r#"{"n":102}"#));
    // The messages retention removed before a poll (all but the newest, here) are named.
    assert!(
        printed.len() == 101
            || stderr.contains(&format!(
                "records 2..{} of project 1 were removed by retention before they could be \
                 printed",
                103 - printed.len()
            )),
        "tail printed {} of the 101 new messages; stderr {stderr:?}",
        printed.len()
    );
}
