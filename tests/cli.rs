//! The `activitylog` command line tool, run as a separate process.

#![cfg(feature = "cli")]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use activitylog::Store;

const BIN: &str = env!("CARGO_BIN_EXE_activitylog");

/// Runs the tool with `args`, feeding it `stdin` (empty input when `None`).
fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("ACTIVITYLOG_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the activitylog binary runs");
    let input = stdin.unwrap_or_default().to_vec();
    let mut pipe = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // The tool may exit before reading everything (a usage error); that is not our failure.
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    output
}

/// Runs the tool and requires success with nothing on stderr; returns stdout.
fn ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "activitylog {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "stderr of {args:?}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the tool and requires a failure with exit code 1 and one `error:` line; returns stderr.
fn fails(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(args, stdin);
    assert_eq!(out.status.code(), Some(1), "exit code of {args:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: "), "stderr: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr:?}");
    stderr
}

fn get(dir: &Path, project: &str) -> String {
    ok(&["get", "--dir", path(dir), project], None)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn append_from_a_file_then_get_newest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let file = tmp.path().join("in.jsonl");
    std::fs::write(
        &file,
        "{\"event\": \"job:started\", \"job\": \"1/2/3\"}\n{\"event\":\"job:completed\"}\n",
    )
    .unwrap();
    assert_eq!(
        ok(&["append", "--dir", path(&store), "42", path(&file)], None),
        ""
    );
    assert_eq!(
        get(&store, "42"),
        "{\"event\":\"job:completed\"}\n{\"event\":\"job:started\",\"job\":\"1/2/3\"}\n"
    );
}

#[test]
fn append_from_stdin_with_and_without_dash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = path(tmp.path());
    ok(&["append", "--dir", dir, "7"], Some(b"{\"n\":1}\n"));
    ok(&["append", "--dir", dir, "7", "-"], Some(b"{\"n\":2}\n"));
    assert_eq!(get(tmp.path(), "7"), "{\"n\":2}\n{\"n\":1}\n");
}

#[test]
fn crlf_blank_lines_and_no_final_newline_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let input = b"\r\n{\"a\": 1}\r\n\r\n   \n{ \"b\" : [1, 2] }\r\n\n{\"c\":\"x y\"}";
    ok(&["append", "--dir", path(tmp.path()), "1"], Some(input));
    assert_eq!(
        get(tmp.path(), "1"),
        "{\"c\":\"x y\"}\n{\"b\":[1,2]}\n{\"a\":1}\n"
    );
}

#[test]
fn empty_input_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    ok(&["append", "--dir", path(tmp.path()), "1"], Some(b"\n\r\n"));
    assert_eq!(get(tmp.path(), "1"), "");
}

#[test]
fn an_invalid_line_is_named_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = path(tmp.path());
    ok(&["append", "--dir", dir, "3"], Some(b"{\"before\":true}\n"));

    // Blank lines before the bad one: the message must count input lines, not messages.
    let input = b"{\"a\":1}\n\n\r\n{\"b\":2}\n[\"not an object\"]\n{\"c\":3}\n";
    let stderr = fails(&["append", "--dir", dir, "3"], Some(input));
    assert!(stderr.contains("line 5"), "stderr: {stderr:?}");
    assert!(stderr.contains("not an object"), "stderr: {stderr:?}");

    let stderr = fails(
        &["append", "--dir", dir, "3"],
        Some(b"{\"a\":1}\n{\"a\":\n"),
    );
    assert!(stderr.contains("line 2"), "stderr: {stderr:?}");
    assert!(stderr.contains("not valid JSON"), "stderr: {stderr:?}");

    assert_eq!(get(tmp.path(), "3"), "{\"before\":true}\n");
}

#[test]
fn an_invalid_line_in_a_new_project_leaves_it_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = path(tmp.path());
    let stderr = fails(&["append", "--dir", dir, "4"], Some(b"{\"a\":1}\n\nnope"));
    assert!(stderr.contains("line 3"), "stderr: {stderr:?}");
    assert_eq!(get(tmp.path(), "4"), "");
}

/// An append that stores nothing into a folder that did not exist leaves no empty store there,
/// as a failed first import does not.
#[test]
fn a_failed_first_append_leaves_no_store_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("new");
    fails(
        &["append", "--dir", path(&store), "4"],
        Some(b"{\"a\":1}\nnope\n"),
    );
    assert!(!store.exists());
}

/// An append into a folder of other files (a mistyped `--dir`, say) is refused in one
/// sentence that names a file there, and the folder is left as it was, no store made in it.
#[test]
fn an_append_into_a_folder_of_other_files_makes_no_store() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("photo.jpg"), "x").unwrap();
    let stderr = fails(
        &["append", "--dir", path(tmp.path()), "4"],
        Some(b"{\"a\":1}\n"),
    );
    assert!(stderr.contains("photo.jpg"), "stderr: {stderr:?}");
    assert!(stderr.contains("empty or new folder"), "stderr: {stderr:?}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["photo.jpg"]);
}

#[test]
fn a_line_over_the_size_limit_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut input = b"{\"small\":1}\n\n".to_vec();
    input.extend_from_slice(format!("{{\"big\":\"{}\"}}\n", "x".repeat(1 << 20)).as_bytes());
    let stderr = fails(&["append", "--dir", path(tmp.path()), "5"], Some(&input));
    assert!(stderr.contains("line 3"), "stderr: {stderr:?}");
    assert!(stderr.contains("over the limit"), "stderr: {stderr:?}");
    assert_eq!(get(tmp.path(), "5"), "");
}

#[test]
fn get_count_prints_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let input: String = (1..=10).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    ok(
        &["append", "--dir", path(tmp.path()), "9"],
        Some(input.as_bytes()),
    );
    let out = ok(
        &["get", "--dir", path(tmp.path()), "9", "--count", "3"],
        None,
    );
    assert_eq!(out, "{\"i\":10}\n{\"i\":9}\n{\"i\":8}\n");
    let out = ok(
        &["get", "--dir", path(tmp.path()), "--count", "0", "9"],
        None,
    );
    assert_eq!(out, "");
    let out = ok(
        &["get", "--dir", path(tmp.path()), "--count", "100", "9"],
        None,
    );
    assert_eq!(out.lines().count(), 10);
}

#[test]
fn get_of_a_project_never_written_prints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    ok(&["append", "--dir", path(tmp.path()), "1"], Some(b"{}"));
    assert_eq!(get(tmp.path(), "2"), "");
}

#[test]
fn get_of_a_directory_that_is_not_a_store_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let stderr = fails(&["get", "--dir", path(tmp.path()), "1"], None);
    assert!(
        stderr.contains("not an activitylog store"),
        "stderr: {stderr:?}"
    );
    let missing = tmp.path().join("missing");
    fails(&["get", "--dir", path(&missing), "1"], None);
    assert!(!missing.exists(), "get must not create a store");
}

#[test]
fn usage_errors_exit_with_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = path(tmp.path());
    for args in [
        &["append", "--dir", dir, "not-a-number"][..],
        &["append", "1"],
        &["append", "--dir", dir, "--segment-bytes", "100", "1"],
        &["append", "--dir", dir, "--durability", "maybe", "1"],
        &["append", "--dir", dir, "--max-message-bytes", "0", "1"],
        &[
            "import",
            "--dir",
            dir,
            "--max-message-bytes",
            "16777216",
            "x.jl",
        ],
        &["serve", "--dir", dir, "--segment-bytes", "100"],
        &["serve", "--dir", dir, "--max-message-bytes", "0"],
        // The empty key fails the run (exit 1) should the zero timeout be taken: no server starts.
        &[
            "serve",
            "--dir",
            dir,
            "--api-key",
            "",
            "--write-timeout",
            "0s",
        ],
        &[
            "serve",
            "--dir",
            dir,
            "--api-key",
            "",
            "--header-read-timeout",
            "0s",
        ],
        &["get", "--dir", dir],
        &["frobnicate"],
    ] {
        assert_eq!(
            run(args, None).status.code(),
            Some(2),
            "exit code of {args:?}"
        );
    }
}

#[test]
fn segment_bytes_is_recorded_when_the_store_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = path(tmp.path());
    let line = r#"{"event":"job:completed","job":"123/4/5","user":"jobrunner","duration_ms":1234}"#;
    // A batch never straddles segments, so write many batches of about 1 KiB each.
    let input: String = (0..10).map(|_| format!("{line}\n")).collect();
    ok(
        &["append", "--dir", dir, "--segment-bytes", "4096", "8"],
        Some(input.as_bytes()),
    );
    // Later appends without the option keep rolling at the recorded size.
    for _ in 1..20 {
        ok(&["append", "--dir", dir, "8"], Some(input.as_bytes()));
    }

    let logs = std::fs::read_dir(tmp.path().join("projects").join("8"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("log".as_ref()))
        .count();
    // 200 messages of ~100 bytes, framed: 20 KiB at least, so 5 segments of 4 KiB at least.
    assert!(logs >= 5, "only {logs} segments");
    assert_eq!(Store::open(tmp.path()).unwrap().segment_bytes(), 4096);
    assert_eq!(get(tmp.path(), "8").lines().count(), 200);
}

#[test]
fn segment_bytes_for_an_existing_store_is_ignored_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = path(tmp.path());
    ok(
        &["append", "--dir", dir, "--segment-bytes", "4096", "1"],
        Some(b"{}"),
    );
    let out = run(
        &["append", "--dir", dir, "--segment-bytes", "8192", "1"],
        Some(b"{}"),
    );
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("warning: "), "stderr: {stderr:?}");
    assert_eq!(Store::open(tmp.path()).unwrap().segment_bytes(), 4096);
}

#[test]
fn a_second_writer_process_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path()).unwrap();
    writer.append(1, [r#"{"by":"test"}"#]).unwrap();

    let stderr = fails(
        &["append", "--dir", path(tmp.path()), "1"],
        Some(b"{\"by\":\"cli\"}"),
    );
    assert!(stderr.contains("locked"), "stderr: {stderr:?}");

    drop(writer);
    assert_eq!(get(tmp.path(), "1"), "{\"by\":\"test\"}\n");
}

#[test]
fn get_reads_beside_a_writer_process() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path()).unwrap();
    writer.append(1, [r#"{"n":1}"#, r#"{"n":2}"#]).unwrap();
    assert_eq!(get(tmp.path(), "1"), "{\"n\":2}\n{\"n\":1}\n");

    // Each run opens afresh, so it sees what the writer appended since.
    writer.append(1, [r#"{"n":3}"#]).unwrap();
    assert_eq!(get(tmp.path(), "1"), "{\"n\":3}\n{\"n\":2}\n{\"n\":1}\n");
    assert_eq!(get(tmp.path(), "2"), "");
}

#[test]
fn a_closed_stdout_ends_get_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    // Far more output than a pipe buffers, so the tool is still writing when the pipe closes.
    let input: String = (0..50_000)
        .map(|i| format!("{{\"event\":\"job:completed\",\"i\":{i}}}\n"))
        .collect();
    ok(
        &["append", "--dir", path(tmp.path()), "1"],
        Some(input.as_bytes()),
    );

    let mut child = Command::new(BIN)
        .args(["get", "--dir", path(tmp.path()), "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "{\"event\":\"job:completed\",\"i\":49999}\n");
    // The reader was dropped: the pipe is closed.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "status {:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn engine_warnings_reach_stderr_unless_silenced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = path(tmp.path());
    let garbage = |tmp: &Path| {
        let log = tmp.join("projects/1/00000000000000000001.log");
        let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        f.write_all(&[0xAB; 37]).unwrap();
    };
    ok(&["append", "--dir", dir, "1"], Some(b"{\"n\":1}"));

    // A torn tail is cut on the next writable open, and the engine logs it as a warning.
    garbage(tmp.path());
    let out = run(&["append", "--dir", dir, "1"], Some(b"{\"n\":2}"));
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("warning: "), "stderr: {stderr:?}");
    assert!(stderr.contains("torn tail"), "stderr: {stderr:?}");

    garbage(tmp.path());
    ok(
        &["--log", "off", "append", "--dir", dir, "1"],
        Some(b"{\"n\":3}"),
    );
    assert_eq!(get(tmp.path(), "1"), "{\"n\":3}\n{\"n\":2}\n{\"n\":1}\n");
}

#[test]
fn projects_merges_newest_first_with_caps_meta_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let d = path(dir.path());
    for foo in [2, 3, 4] {
        ok(
            &["append", "--dir", d, "1111111"],
            Some(format!("{{\"foo\": {foo}}}").as_bytes()),
        );
    }
    ok(&["append", "--dir", d, "2222222"], Some(b"{\"bar\": 1}"));
    let out = ok(
        &[
            "projects", "--dir", d, "--pcount", "1", "--meta", "_project", "-p", "1111111", "-p",
            "2222222",
        ],
        None,
    );
    assert_eq!(
        out,
        "{\"bar\":1,\"_project\":2222222}\n{\"foo\":4,\"_project\":1111111}\n"
    );
    // All projects, a total count.
    assert_eq!(
        ok(&["projects", "--dir", d, "--count", "2"], None),
        "{\"bar\":1}\n{\"foo\":4}\n"
    );
    // Filters apply before the count.
    let out = ok(
        &[
            "projects",
            "--dir",
            d,
            "--filter",
            r#"["foo", "<", [4]]"#,
            "--count",
            "1",
        ],
        None,
    );
    assert_eq!(out, "{\"foo\":3}\n");
    // A malformed filter or an unknown meta name is a usage error.
    assert_eq!(
        run(&["projects", "--dir", d, "--filter", "[1"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["get", "--dir", d, "--meta", "_x", "1"], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn get_adds_meta_fields_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let d = path(dir.path());
    ok(
        &["append", "--dir", d, "7"],
        Some(b"{\"c\":1}\n{\"c\":6}\n{\"c\":9}"),
    );
    let out = ok(
        &[
            "get",
            "--dir",
            d,
            "--meta",
            "_key",
            "--filter",
            r#"["c", ">", [5]]"#,
            "7",
        ],
        None,
    );
    assert_eq!(
        out,
        "{\"c\":9,\"_key\":\"7/3\"}\n{\"c\":6,\"_key\":\"7/2\"}\n"
    );
    let out = ok(
        &["get", "--dir", d, "--meta", "_ts", "--count", "1", "7"],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert!(v["_ts"].as_u64().unwrap() > 1_600_000_000_000, "{out}");
}

/// Runs `serve` with `args` where it must fail at startup: exit code 1 and one `error:` line,
/// returned. A server that starts instead is stopped after 10 s and fails the test.
fn serve_fails(args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env_remove("ACTIVITYLOG_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the activitylog binary runs");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve {args:?} started: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "serve {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr:?}");
    stderr
}

#[test]
fn serve_refuses_an_empty_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let err = serve_fails(&[
        "--dir",
        store.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        "",
    ]);
    assert!(err.contains("--api-key is empty"), "{err}");
}

/// A keys file of comments and blank lines alone left the server open to anyone, with no
/// word of it (an audit): `serve` refuses to start, naming the file, and makes no store.
#[test]
fn serve_refuses_a_keys_file_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# the keys go here\n\n").unwrap();
    let err = serve_fails(&[
        "--dir",
        store.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--api-keys",
        keys.to_str().unwrap(),
    ]);
    assert!(err.contains("holds no key"), "{err}");
    assert!(err.contains(keys.to_str().unwrap()), "{err}");
    assert!(!store.exists(), "a keys file without a key left a store");
}

#[test]
fn a_serve_that_cannot_start_creates_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let missing = dir.path().join("no-such-keys-file");
    let store_arg = store.to_str().unwrap();
    let err = serve_fails(&["--dir", store_arg, "--listen", &busy]);
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(!store.exists(), "a busy port left a store");
    let err = serve_fails(&[
        "--dir",
        store_arg,
        "--listen",
        "127.0.0.1:0",
        "--api-keys",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("cannot read the API keys file"), "{err}");
    assert!(!store.exists(), "a missing keys file left a store");
}

#[test]
fn append_refuses_too_many_lines_before_building_anything_per_line() {
    // 2^24 + 1 messages of `{}` (48 MiB): one more than a batch holds. Under a 512 MiB limit on
    // the address space, the refusal must come from counting the lines, not from memory running
    // out while a vector per line was built first (which took 24 bytes and more a line).
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("many.jl");
    std::fs::write(&input, "{}\n".repeat((1 << 24) + 1)).unwrap();
    let store = dir.path().join("store");
    let out = Command::new("bash")
        .arg("-c")
        .arg("ulimit -v 524288 && exec \"$@\"")
        .arg("bash")
        .arg(BIN)
        .args(["append", "--dir", store.to_str().unwrap(), "1"])
        .arg(&input)
        .env_remove("ACTIVITYLOG_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "error: the batch holds 16777217 messages, over the limit of 16777216 messages\n"
    );
}
