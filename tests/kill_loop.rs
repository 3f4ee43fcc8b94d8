//! The kill loop: this test re-runs its own binary as a child that appends numbered messages —
//! mixed batch sizes, projects and durability levels, with segment rolls — and reports every
//! acknowledgement on stdout. The parent kills it with SIGKILL at random moments (during open
//! and recovery too), reopens the store and checks:
//!
//! - every acknowledged batch is there, whole, with its contents (a process crash keeps the page
//!   cache, so this holds for `Written` as much as for `Sync`);
//! - every batch in the store is whole: all of it or none of it;
//! - per project, sequence numbers run without gaps or duplicates and message numbers increase;
//! - appending continues after recovery.
//!
//! Half the child's batches are first tried inside `without_blocking`, as the server does with
//! a POST, and appended again outside only when refused: a refused append must have stored
//! nothing, or the retry would store the batch twice (message numbers repeated).
//!
//! Rounds: 50 by default (CI); `KILL_LOOP_ROUNDS=5000 cargo test --release --test kill_loop`
//! for the long mode.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use activitylog::{without_blocking, Durability, Error, Options, Store};

const PROJECTS: u64 = 3;
const CHILD_ENV: &str = "ACTIVITYLOG_KILL_LOOP_CHILD";

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let rounds: u64 = std::env::var("KILL_LOOP_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let mut acked: Vec<Ack> = Vec::new();
    let started = Instant::now();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, dir.path())
            .env("ACTIVITYLOG_KILL_LOOP_SEED", rng.next().to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Kill at a random moment: sometimes during open and recovery, mostly mid-append.
        let wait_ms = match rng.below(10) {
            0 => rng.below(3),
            _ => 5 + rng.below(60),
        };
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            // A line cut by the kill was never a complete acknowledgement.
            if let Some(ack) = Ack::parse(&line) {
                acked.push(ack);
            }
        }
        check(dir.path(), &acked, round);
    }
    println!(
        "kill loop: {rounds} rounds, {} batches acknowledged, {} messages acknowledged, 0 lost ({:.1} s)",
        acked.len(),
        acked.iter().map(|a| a.count).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    println!("1 passed, 0 failed");
}

/// An acknowledged batch.
#[derive(Debug, Clone, Copy)]
struct Ack {
    project: u64,
    first_seq: u64,
    count: u64,
    first_n: u64,
}

impl Ack {
    fn parse(line: &str) -> Option<Ack> {
        let mut w = line
            .strip_prefix("ACK ")?
            .split(' ')
            .map(|x| x.parse::<u64>());
        let ack = Ack {
            project: w.next()?.ok()?,
            first_seq: w.next()?.ok()?,
            count: w.next()?.ok()?,
            first_n: w.next()?.ok()?,
        };
        // The last field ends the line: a line cut short would not parse as "END".
        (line.ends_with(" END")).then_some(ack)
    }
}

/// Opens the store (recovering it), checks every invariant, appends once more, closes.
fn check(dir: &std::path::Path, acked: &[Ack], round: u64) {
    let store = Options::new().segment_bytes(4096).open(dir).unwrap();
    // seq -> (n, batch id, batch size) per project
    let mut seen: HashMap<u64, HashMap<u64, (u64, u64, u64)>> = HashMap::new();
    for p in 0..PROJECTS {
        let mut prev: Option<(u64, u64)> = None;
        let mut batches: HashMap<u64, (u64, u64)> = HashMap::new();
        let project = seen.entry(p).or_default();
        for m in store.oldest_first(p).unwrap() {
            let m = m.unwrap_or_else(|e| panic!("round {round}: project {p}: {e}"));
            let v: serde_json::Value = serde_json::from_str(m.json()).unwrap();
            let (n, b, k) = (
                v["n"].as_u64().unwrap(),
                v["b"].as_u64().unwrap(),
                v["k"].as_u64().unwrap(),
            );
            if let Some((seq, pn)) = prev {
                assert_eq!(
                    m.seq(),
                    seq + 1,
                    "round {round}: gap or duplicate in project {p}"
                );
                assert!(
                    n > pn,
                    "round {round}: message numbers must increase in project {p}"
                );
            }
            prev = Some((m.seq(), n));
            let e = batches.entry(b).or_insert((0, k));
            e.0 += 1;
            project.insert(m.seq(), (n, b, k));
        }
        for (b, (got, size)) in batches {
            assert_eq!(
                got, size,
                "round {round}: batch {b} of project {p} is not whole"
            );
        }
    }
    for a in acked {
        for i in 0..a.count {
            let seq = a.first_seq + i;
            let (n, _, _) = seen[&a.project].get(&seq).copied().unwrap_or_else(|| {
                panic!(
                    "round {round}: acknowledged message {}/{seq} is lost",
                    a.project
                )
            });
            assert_eq!(
                n,
                a.first_n + i,
                "round {round}: message {}/{seq} changed",
                a.project
            );
        }
    }
    // Appending continues after recovery.
    let p = round % PROJECTS;
    let n = next_n(&store, p);
    store
        .append(
            p,
            [format!(r#"{{"n":{n},"b":{},"k":1}}"#, u64::MAX - round)],
        )
        .unwrap();
}

/// The number the next message of project `p` gets: one more than the newest.
fn next_n(store: &Store, p: u64) -> u64 {
    store.newest_first(p).unwrap().next().map_or(0, |m| {
        let v: serde_json::Value = serde_json::from_str(m.unwrap().json()).unwrap();
        v["n"].as_u64().unwrap() + 1
    })
}

/// The child: appends until killed, acknowledging each batch on stdout.
fn child(dir: &str) {
    let seed: u64 = std::env::var("ACTIVITYLOG_KILL_LOOP_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = Rng(seed | 1);
    let store = Options::new().segment_bytes(4096).open(dir).unwrap();
    let mut next: Vec<u64> = (0..PROJECTS).map(|p| next_n(&store, p)).collect();
    let stdout = std::io::stdout();
    loop {
        let p = rng.below(PROJECTS);
        let k = 1 + rng.below(12);
        let b = rng.next() >> 1;
        let durability = if rng.below(4) == 0 {
            Durability::Sync
        } else {
            Durability::Written
        };
        let first_n = next[p as usize];
        let batch: Vec<String> = (0..k)
            .map(|i| {
                format!(
                    r#"{{"n":{},"b":{b},"k":{k},"pad":"{}"}}"#,
                    first_n + i,
                    "x".repeat(rng.below(300) as usize)
                )
            })
            .collect();
        let append = || store.append_with(p, &batch, durability);
        let a = if rng.below(2) == 0 {
            match without_blocking(append) {
                Ok(appended) => appended.unwrap(),
                Err(Error::WouldBlock) => append().unwrap(),
                Err(e) => panic!("{e}"),
            }
        } else {
            append().unwrap()
        };
        next[p as usize] += k;
        let mut out = stdout.lock();
        writeln!(out, "ACK {p} {} {k} {first_n} END", a.first_seq).unwrap();
        out.flush().unwrap();
    }
}

/// xorshift64*: deterministic per seed, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
