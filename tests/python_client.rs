//! The real `python-scrapinghub` 2.9.0 client, unchanged, against `activitylog serve` over a
//! real socket. `.ci/run` installs the client into `.venv`; without it (a developer who has not
//! run `.ci/run`) the test says so and passes, unless `CI` is set, where it fails.
#![cfg(all(feature = "server", feature = "cli"))]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn python_scrapinghub_client_works_unchanged() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the client: .venv/bin/python is missing"
        );
        eprintln!("skipping: run .ci/run once to install python-scrapinghub into .venv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_activitylog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server announces its address on stderr: "... on http://127.0.0.1:PORT/ ...".
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_check.py"))
        .arg(&url)
        .output()
        .unwrap();
    // SIGTERM: the server finishes, syncs, unlocks and exits 0.
    Command::new("kill")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    let status = server.wait().unwrap();
    assert!(
        out.status.success(),
        "client check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.success(), "server exit: {status}");
    // The lock is released: the store opens for writing again.
    activitylog::Store::open(dir.path()).unwrap();
}
