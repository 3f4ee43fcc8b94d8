//! activitylog side by side with SQLite and the machine's limits, on the same generated data,
//! in one run, engines interleaved. See `compare/README.md`.
//!
//! ```text
//! cargo run --release -p activitylog-compare -- [--messages N] [--quick] [--only IDS] [--dir DIR] [--out FILE]
//! ```

mod data;
mod engines;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use activitylog::Durability;
use serde_json::json;

use data::{Data, Rng, FIRST_PROJECT};
use engines::{Fallible, Memory, Page, RawFile, Row, Sqlite};

const AL: &str = "activitylog";
const SQLITE: &str = "SQLite";
const LIMIT: &str = "limit";

/// How big a run is.
struct Scale {
    messages: usize,
    projects: usize,
    /// Fsynced batches of 100 (A2).
    batches: usize,
    /// Fsynced single appends per thread (A3).
    singles: usize,
    /// Newest-20 queries (R1).
    newest: usize,
    /// Full scans of the largest project (R2).
    scans: usize,
    /// 50-project merged queries (R3).
    merged50: usize,
    /// All-project merged queries (R4).
    merged_all: usize,
    /// Opens timed after a clean close, and after a kill.
    opens: usize,
    kills: usize,
    /// Messages appended, unsynced, by the process that is killed.
    kill_tail: usize,
}

impl Scale {
    fn full(messages: usize) -> Self {
        Scale {
            messages,
            projects: 1000,
            batches: 2000,
            singles: 2000,
            newest: 20_000,
            scans: 6,
            merged50: 2000,
            merged_all: 300,
            opens: 21,
            kills: 3,
            kill_tail: 20_000,
        }
    }

    fn quick(messages: usize) -> Self {
        Scale {
            messages,
            projects: 1000,
            batches: 40,
            singles: 40,
            newest: 500,
            scans: 2,
            merged50: 100,
            merged_all: 20,
            opens: 3,
            kills: 1,
            kill_tail: 1000,
        }
    }
}

/// One engine's figures on one workload.
struct Stat {
    engine: &'static str,
    ops: u64,
    secs: f64,
    bytes: u64,
    lat_ns: Vec<u64>,
}

impl Stat {
    fn new(engine: &'static str) -> Self {
        Stat {
            engine,
            ops: 0,
            secs: 0.0,
            bytes: 0,
            lat_ns: Vec::new(),
        }
    }

    fn percentile_us(&self, q: f64) -> f64 {
        let mut v = self.lat_ns.clone();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_unstable();
        v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
    }
}

/// How a workload's figure is read.
#[derive(Clone, Copy, PartialEq)]
enum Unit {
    /// Operations per second, higher is better.
    Rate(&'static str),
    /// Megabytes per second, higher is better.
    MBps,
    /// Milliseconds (the median of the trials), lower is better.
    Millis,
    /// Bytes on disk per message byte, lower is better.
    PerByte,
}

struct Workload {
    id: &'static str,
    title: String,
    unit: Unit,
    stats: Vec<Stat>,
    /// Target: at least this many times SQLite's figure (better direction).
    vs_sqlite: Option<f64>,
    /// Target: within this factor of the limit.
    vs_limit: Option<f64>,
    /// Target on the absolute figure (for the open and disk rows), or on another row.
    note: String,
}

impl Workload {
    fn value(&self, engine: &str) -> Option<f64> {
        let s = self.stats.iter().find(|s| s.engine == engine)?;
        Some(match self.unit {
            Unit::Rate(_) => s.ops as f64 / s.secs,
            Unit::MBps => s.bytes as f64 / s.secs / 1e6,
            Unit::Millis => s.percentile_us(0.5) / 1000.0,
            Unit::PerByte => s.secs,
        })
    }

    fn higher_is_better(&self) -> bool {
        matches!(self.unit, Unit::Rate(_) | Unit::MBps)
    }

    /// How many times better activitylog is than `engine` (above 1: activitylog is better).
    fn advantage(&self, engine: &str) -> Option<f64> {
        let (a, o) = (self.value(AL)?, self.value(engine)?);
        Some(if self.higher_is_better() {
            a / o
        } else {
            o / a
        })
    }
}

/// What a contestant of [`interleave`] runs on a range of operations.
type Run<'a> = Box<dyn FnMut(Range<usize>, &mut Stat) -> Fallible<()> + 'a>;

/// One contestant of [`interleave`]: its figures and what it runs.
type Contestant<'a, 's> = (&'s mut Stat, Run<'a>);

/// Runs `ops` operations on each contestant in `chunks` rounds, starting each round with a
/// different contestant, so that a noisy moment of the machine is shared among them.
#[allow(clippy::type_complexity)]
fn interleave(
    ops: usize,
    chunks: usize,
    contestants: &mut [(
        &mut Stat,
        Box<dyn FnMut(Range<usize>, &mut Stat) -> Fallible<()> + '_>,
    )],
) -> Fallible<()> {
    let chunks = chunks.clamp(1, ops.max(1));
    let n = contestants.len();
    for c in 0..chunks {
        let range = ops * c / chunks..ops * (c + 1) / chunks;
        for k in 0..n {
            let (stat, run) = &mut contestants[(c + k) % n];
            run(range.clone(), stat)?;
            stat.ops += range.len() as u64;
        }
    }
    Ok(())
}

/// Times `f` into `stat`'s latencies and its total time (checking the answer is not timed).
fn timed<T>(stat: &mut Stat, f: impl FnOnce() -> Fallible<T>) -> Fallible<T> {
    let start = Instant::now();
    let out = f()?;
    let elapsed = start.elapsed();
    stat.lat_ns.push(elapsed.as_nanos() as u64);
    stat.secs += elapsed.as_secs_f64();
    Ok(out)
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Fallible<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("wrong answer: {}", what()).into())
    }
}

fn expected_rows(data: &Data, keys: &[(u64, u64)]) -> Vec<Row> {
    keys.iter()
        .map(|&(p, s)| {
            let i = data.of(p)[s as usize - 1] as usize;
            (p, s, data.messages[i].1.clone())
        })
        .collect()
}

fn fresh_dir(root: &Path, name: &str) -> Fallible<PathBuf> {
    let d = root.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

struct Args {
    messages: usize,
    quick: bool,
    /// The workloads to run (`--only A3,R2`), all if `None`.
    only: Option<Vec<String>>,
    dir: PathBuf,
    out: PathBuf,
}

impl Args {
    /// Whether workload `id` is to run (`A3` covers `A3×4` too).
    fn wants(&self, id: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|w| w == id))
    }
}

/// The ids `--only` takes.
const IDS: [&str; 10] = ["A1", "D", "A2", "A3", "R1", "R2", "R3", "R4", "O1", "O2"];

fn parse_args() -> Fallible<Args> {
    let mut a = Args {
        messages: 2_000_000,
        quick: false,
        only: None,
        dir: PathBuf::from("target/compare-data"),
        out: PathBuf::from("target/compare/results.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--messages" => a.messages = it.next().ok_or("--messages needs N")?.parse()?,
            "--quick" => a.quick = true,
            "--only" => {
                let list = it.next().ok_or("--only needs workload ids, e.g. A3,R2")?;
                let ids: Vec<String> = list
                    .split(',')
                    .map(|id| id.trim().to_ascii_uppercase())
                    .collect();
                if let Some(bad) = ids.iter().find(|id| !IDS.contains(&id.as_str())) {
                    return Err(
                        format!("--only: no workload {bad:?} (ids: {})", IDS.join(",")).into(),
                    );
                }
                a.only = Some(ids);
            }
            "--dir" => a.dir = it.next().ok_or("--dir needs a folder")?.into(),
            "--out" => a.out = it.next().ok_or("--out needs a file")?.into(),
            "child" => {
                let engine = it.next().ok_or("child ENGINE DIR PROJECT N")?;
                let dir = PathBuf::from(it.next().ok_or("child needs DIR")?);
                let project = it.next().ok_or("child needs PROJECT")?.parse()?;
                let n = it.next().ok_or("child needs N")?.parse()?;
                child(&engine, &dir, project, n)?;
                unreachable!("the child waits to be killed");
            }
            "-h" | "--help" => {
                println!(
                    "usage: activitylog-compare [--messages N] [--quick] [--only A1,D,A2,A3,R1,R2,R3,R4,O1,O2] [--dir DIR] [--out FILE]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(a)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("activitylog-compare: {e}");
        std::process::exit(1);
    }
}

fn run() -> Fallible<()> {
    let args = parse_args()?;
    let scale = if args.quick {
        Scale::quick(args.messages)
    } else {
        Scale::full(args.messages)
    };
    std::fs::create_dir_all(&args.dir)?;
    let root = args.dir.canonicalize()?;
    let t0 = Instant::now();
    let data = Data::generate(scale.messages, scale.projects, 0xAC71_0106);
    let msg_bytes = data.bytes();
    eprintln!(
        "data: {} messages, {} projects, {:.1} bytes each on average, largest project {} \
         messages, smallest {}; generated in {:.1} s; files under {}",
        data.messages.len(),
        data.projects().len(),
        msg_bytes as f64 / data.messages.len() as f64,
        data.of(data.largest()).len(),
        data.by_project
            .iter()
            .map(Vec::len)
            .filter(|&n| n > 0)
            .min()
            .unwrap_or(0),
        t0.elapsed().as_secs_f64(),
        root.display()
    );
    let mut results = Vec::new();
    let wants = |id: &str| args.wants(id);

    // A1 builds the stores the reads, the disk row and the opens use.
    let loaded = ["A1", "D", "R1", "R2", "R3", "R4", "O1", "O2"]
        .iter()
        .any(|id| wants(id));
    let al_dir = fresh_dir(&root, "a1-activitylog")?;
    let sq_dir = fresh_dir(&root, "a1-sqlite")?;
    let raw_dir = fresh_dir(&root, "a1-raw")?;
    let store = engines::activitylog(&al_dir, Durability::Written)?;
    let mut sqlite = Sqlite::open(&sq_dir.join("activity.db"), false)?;
    if loaded {
        let mut raw = RawFile::create(&raw_dir.join("raw.log"))?;
        let mut raw_files = engines::RawFiles::new(&fresh_dir(&root, "a1-raw-projects")?);
        let a1 = a1(&data, &store, &mut sqlite, &mut raw, &mut raw_files)?;
        if wants("A1") {
            results.push(a1);
        }
        eprintln!("A1 done");
        store.sync()?;
        sqlite.checkpoint()?;
        raw.sync()?;
        drop(raw);
        if wants("D") {
            results.push(disk(&data, &al_dir, &sq_dir, &raw_dir)?);
        }
    }

    if wants("A2") {
        results.push(a2(&data, &root, scale.batches)?);
        eprintln!("A2 done");
    }
    if wants("A3") {
        let (a3_1, a3_4) = a3(&data, &root, scale.singles)?;
        results.push(a3_1);
        results.push(a3_4);
        eprintln!("A3 done");
    }

    if ["R1", "R2", "R3", "R4"].iter().any(|id| wants(id)) {
        let memory = Memory::build(&data);
        if wants("R1") {
            results.push(r1(&data, &store, &sqlite, &memory, scale.newest)?);
        }
        if wants("R2") {
            results.push(r2(&data, &store, &al_dir, &sqlite, &memory, scale.scans)?);
        }
        if wants("R3") {
            results.push(r3(&data, &store, &sqlite, &memory, scale.merged50)?);
        }
        if wants("R4") {
            results.push(r4(&data, &store, &sqlite, &memory, scale.merged_all)?);
        }
        eprintln!("reads done");
    }
    drop(store);
    drop(sqlite);
    if wants("O1") {
        results.push(open_clean(&data, &al_dir, &sq_dir, scale.opens)?);
    }
    if wants("O2") {
        results.push(open_killed(
            &data,
            &al_dir,
            &sq_dir,
            scale.kills,
            scale.kill_tail,
        )?);
    }

    let report = report(&results, &data, msg_bytes);
    println!("{report}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&to_json(&results, &data, &args))?,
    )?;
    eprintln!(
        "results written to {} ({:.0} s in all)",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writes

fn a1(
    data: &Data,
    store: &activitylog::Store,
    sq: &mut Sqlite,
    raw: &mut RawFile,
    raw_files: &mut engines::RawFiles,
) -> Fallible<Workload> {
    let (mut sa, mut ss, mut sr) = (Stat::new(AL), Stat::new(SQLITE), Stat::new(LIMIT));
    // Not a contestant: raw writes into one file per project, a floor for per-project logs.
    let mut sf = Stat::new("raw per project");
    let n = data.messages.len();
    interleave(
        n,
        20,
        &mut [
            (
                &mut sa,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for (p, m) in &data.messages[r] {
                        timed(st, || Ok(store.append(*p, [m])?))?;
                    }
                    Ok(())
                }),
            ),
            (
                &mut ss,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for i in r {
                        let (p, m) = &data.messages[i];
                        timed(st, || sq.append(*p, i as u64, &[m.as_str()]))?;
                    }
                    Ok(())
                }),
            ),
            (
                &mut sr,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for (_, m) in &data.messages[r] {
                        timed(st, || raw.append(&[m.as_str()], false))?;
                    }
                    Ok(())
                }),
            ),
            (
                &mut sf,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for (p, m) in &data.messages[r] {
                        timed(st, || raw_files.append(*p, m))?;
                    }
                    Ok(())
                }),
            ),
        ],
    )?;
    let rate = |st: &Stat| st.ops as f64 / st.secs;
    let note = format!(
        "raw writes of the same bytes into one file per project (not the issue's limit): {:.2} M \
         msg/s, {:.2}× the one-file limit's time; activitylog {:.2}× slower than that",
        rate(&sf) / 1e6,
        rate(&sr) / rate(&sf),
        rate(&sf) / rate(&sa)
    );
    Ok(Workload {
        id: "A1",
        title: "single appends, not fsynced".into(),
        unit: Unit::Rate("msg/s"),
        stats: vec![sa, ss, sr],
        vs_sqlite: Some(50.0),
        vs_limit: Some(2.5),
        note,
    })
}

fn disk(data: &Data, al: &Path, sq: &Path, raw: &Path) -> Fallible<Workload> {
    let bytes = data.bytes() as f64;
    let mut stats = Vec::new();
    let mut note = String::new();
    for (engine, dir) in [(AL, al), (SQLITE, sq), (LIMIT, raw)] {
        let (size, blocks) = engines::disk_usage(dir)?;
        let mut s = Stat::new(engine);
        s.secs = size as f64 / bytes;
        s.bytes = size;
        let _ = write!(
            note,
            "{engine}: {:.3}x in file sizes, {:.3}x in allocated blocks; ",
            size as f64 / bytes,
            blocks as f64 / bytes
        );
        stats.push(s);
    }
    Ok(Workload {
        id: "D",
        title: "bytes on disk per message byte".into(),
        unit: Unit::PerByte,
        stats,
        vs_sqlite: None,
        vs_limit: None,
        note: format!("target ≤ 1.15; {}", note.trim_end_matches("; ")),
    })
}

/// `count` batches of 100 for Zipf-chosen projects, from a fixed seed.
fn batches(data: &Data, count: usize, seed: u64) -> Vec<(u64, Vec<&str>)> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|b| {
            let p = data.zipf.project(&mut rng);
            let msgs = (0..100)
                .map(|k| {
                    data.messages[(b * 100 + k) % data.messages.len()]
                        .1
                        .as_str()
                })
                .collect();
            (p, msgs)
        })
        .collect()
}

fn a2(data: &Data, root: &Path, count: usize) -> Fallible<Workload> {
    let bs = batches(data, count, 2);
    let store = engines::activitylog(&fresh_dir(root, "a2-activitylog")?, Durability::Sync)?;
    let mut sq = Sqlite::open(&fresh_dir(root, "a2-sqlite")?.join("activity.db"), true)?;
    let mut raw = RawFile::create(&fresh_dir(root, "a2-raw")?.join("raw.log"))?;
    let (mut sa, mut ss, mut sr) = (Stat::new(AL), Stat::new(SQLITE), Stat::new(LIMIT));
    let mut firsts = Firsts::default();
    interleave(
        count,
        10,
        &mut [
            (
                &mut sa,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for (p, msgs) in &bs[r] {
                        // The project's first batch starts at 1, and creates it.
                        if timed(st, || Ok(store.append(*p, msgs)?))?.first_seq == 1 {
                            firsts.count += 1;
                            firsts.ns += st.lat_ns.last().copied().unwrap_or(0);
                        }
                    }
                    Ok(())
                }),
            ),
            (
                &mut ss,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for i in r {
                        let (p, msgs) = &bs[i];
                        timed(st, || sq.append(*p, i as u64, msgs))?;
                    }
                    Ok(())
                }),
            ),
            (
                &mut sr,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for (_, msgs) in &bs[r] {
                        timed(st, || raw.append(msgs, true))?;
                    }
                    Ok(())
                }),
            ),
        ],
    )?;
    for s in [&mut sa, &mut ss, &mut sr] {
        s.ops *= 100;
    }
    let stats = vec![sa, ss, sr];
    Ok(Workload {
        id: "A2",
        title: "fsynced batches of 100".into(),
        unit: Unit::Rate("msg/s"),
        note: format!("latencies per batch; {}", firsts.note(&stats, "batches")),
        stats,
        vs_sqlite: Some(6.0),
        vs_limit: Some(1.3),
    })
}

/// A3: fsynced single appends from `threads` threads, each to Zipf-chosen projects. Also
/// returns activitylog's latencies of the appends that were their project's first (those
/// create it), apart from the others'.
fn a3_run(
    data: &Data,
    root: &Path,
    per_thread: usize,
    threads: usize,
) -> Fallible<(Vec<Stat>, Firsts)> {
    let tag = format!("a3-{threads}");
    let store = engines::activitylog(
        &fresh_dir(root, &format!("{tag}-activitylog"))?,
        Durability::Sync,
    )?;
    let sq_path = fresh_dir(root, &format!("{tag}-sqlite"))?.join("activity.db");
    // Each thread has its own connection; they share the sequence numbers.
    let sq_next = Arc::new(Mutex::new(std::collections::HashMap::<u64, u64>::new()));
    drop(Sqlite::open(&sq_path, true)?);
    let raw_dir = fresh_dir(root, &format!("{tag}-raw"))?;
    let mut stats = vec![Stat::new(AL), Stat::new(SQLITE), Stat::new(LIMIT)];
    let firsts = Mutex::new(Firsts::default());
    // Engines one after the other, in rounds, so that they share the machine's moods.
    let rounds = 4;
    for round in 0..rounds {
        for k in 0..3 {
            let e = (round + k) % 3;
            let n = per_thread / rounds;
            let barrier = Barrier::new(threads);
            let lats = Mutex::new(Vec::new());
            let start = Instant::now();
            std::thread::scope(|s| -> Fallible<()> {
                let mut handles = Vec::new();
                for t in 0..threads {
                    let (store, barrier, lats, sq_next, sq_path, raw_dir, firsts) = (
                        &store, &barrier, &lats, &sq_next, &sq_path, &raw_dir, &firsts,
                    );
                    handles.push(s.spawn(move || -> Result<(), String> {
                        let run = || -> Fallible<Vec<u64>> {
                            let mut rng = Rng::new(1000 * round as u64 + t as u64);
                            let sq = if e == 1 {
                                Some(Sqlite::open(sq_path, true)?)
                            } else {
                                None
                            };
                            let mut raw = if e == 2 {
                                Some(
                                    std::fs::OpenOptions::new()
                                        .create(true)
                                        .append(true)
                                        .open(raw_dir.join(format!("raw-{t}.log")))?,
                                )
                            } else {
                                None
                            };
                            let mut lat = Vec::with_capacity(n);
                            let mut mine = Firsts::default();
                            barrier.wait();
                            for i in 0..n {
                                let p = data.zipf.project(&mut rng);
                                let m = data.messages[(t * n + i) % data.messages.len()].1.as_str();
                                let t0 = Instant::now();
                                let mut first = false;
                                match e {
                                    0 => {
                                        // The project's first message is numbered 1.
                                        first = store.append(p, [m])?.first_seq == 1;
                                    }
                                    1 => {
                                        let seq = {
                                            let mut next = sq_next.lock().unwrap();
                                            let s = next.entry(p).or_insert(1);
                                            *s += 1;
                                            *s - 1
                                        };
                                        sq.as_ref()
                                            .unwrap()
                                            .conn
                                            .prepare_cached(
                                                "INSERT INTO activity VALUES (?1, ?2, ?3, ?4)",
                                            )?
                                            .execute(rusqlite::params![
                                                p as i64, seq as i64, i as i64, m
                                            ])?;
                                    }
                                    _ => {
                                        let f = raw.as_mut().unwrap();
                                        let mut line = Vec::with_capacity(m.len() + 1);
                                        line.extend_from_slice(m.as_bytes());
                                        line.push(b'\n');
                                        f.write_all(&line)?;
                                        f.sync_data()?;
                                    }
                                }
                                let ns = t0.elapsed().as_nanos() as u64;
                                lat.push(ns);
                                if first {
                                    mine.count += 1;
                                    mine.ns += ns;
                                }
                            }
                            firsts.lock().unwrap().add(&mine);
                            Ok(lat)
                        };
                        let lat = run().map_err(|e| e.to_string())?;
                        lats.lock().unwrap().extend(lat);
                        Ok(())
                    }));
                }
                for h in handles {
                    h.join().map_err(|_| "a writer thread panicked")??;
                }
                Ok(())
            })?;
            let st = &mut stats[e];
            st.secs += start.elapsed().as_secs_f64();
            st.ops += (n * threads) as u64;
            st.lat_ns.extend(lats.into_inner().unwrap());
        }
    }
    Ok((stats, firsts.into_inner().unwrap()))
}

/// Latencies of activitylog's appends (or batches) that were their project's first.
#[derive(Default)]
struct Firsts {
    count: u64,
    ns: u64,
}

impl Firsts {
    fn add(&mut self, other: &Firsts) {
        self.count += other.count;
        self.ns += other.ns;
    }

    /// A2's and A3's notes: how a project's first append (of `what`: batches, appends) and
    /// the others compare with the limit's.
    fn note(&self, stats: &[Stat], what: &str) -> String {
        let mean = |st: &Stat| st.lat_ns.iter().sum::<u64>() as f64 / st.lat_ns.len().max(1) as f64;
        let (al, limit) = (&stats[0], mean(&stats[2]));
        let total: u64 = al.lat_ns.iter().sum();
        let others = al.lat_ns.len() as u64 - self.count;
        let first = self.ns as f64 / self.count.max(1) as f64;
        let rest = (total - self.ns) as f64 / others.max(1) as f64;
        format!(
            "activitylog: {} of {} {what} were their project's first (which creates it): {:.0} µs \
             on average, {:.2}× the limit's mean ({:.0} µs); the other {others}: {:.0} µs, {:.2}×",
            self.count,
            al.lat_ns.len(),
            first / 1e3,
            first / limit,
            limit / 1e3,
            rest / 1e3,
            rest / limit
        )
    }
}

fn a3(data: &Data, root: &Path, singles: usize) -> Fallible<(Workload, Workload)> {
    let (one, one_firsts) = a3_run(data, root, singles, 1)?;
    let (four, four_firsts) = a3_run(data, root, singles / 2, 4)?;
    let one_rate = one[0].ops as f64 / one[0].secs;
    let four_rate = four[0].ops as f64 / four[0].secs;
    let (one_note, four_note) = (
        one_firsts.note(&one, "appends"),
        four_firsts.note(&four, "appends"),
    );
    Ok((
        Workload {
            id: "A3",
            title: "fsynced single appends, 1 thread".into(),
            unit: Unit::Rate("msg/s"),
            stats: one,
            vs_sqlite: None,
            vs_limit: Some(1.2),
            note: one_note,
        },
        Workload {
            id: "A3×4",
            title: "fsynced single appends, 4 threads".into(),
            unit: Unit::Rate("msg/s"),
            stats: four,
            vs_sqlite: None,
            vs_limit: None,
            note: format!(
                "target: ≥ 3× the 1-thread rate; activitylog 4 threads / 1 thread = {:.2}×; {}",
                four_rate / one_rate,
                four_note
            ),
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Reads

fn r1(
    data: &Data,
    store: &activitylog::Store,
    sq: &Sqlite,
    mem: &Memory,
    ops: usize,
) -> Fallible<Workload> {
    let mut rng = Rng::new(11);
    let projects: Vec<u64> = (0..ops).map(|_| data.zipf.project(&mut rng)).collect();
    let expect = |p: u64| -> Vec<Row> {
        let n = data.of(p).len() as u64;
        let keys: Vec<(u64, u64)> = (0..20.min(n)).map(|k| (p, n - k)).collect();
        expected_rows(data, &keys)
    };
    let (mut sa, mut ss, mut sm) = (Stat::new(AL), Stat::new(SQLITE), Stat::new(LIMIT));
    interleave(
        ops,
        20,
        &mut [
            (
                &mut sa,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for &p in &projects[r] {
                        let got = timed(st, || engines::al_page(store, p, 20))?;
                        let got = got.into_rows(p);
                        check(got == expect(p), || format!("activitylog newest 20 of {p}"))?;
                    }
                    Ok(())
                }),
            ),
            (
                &mut ss,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for &p in &projects[r] {
                        let got = timed(st, || sq.page(p, 20))?;
                        check(got.into_rows(p) == expect(p), || {
                            format!("SQLite newest 20 of {p}")
                        })?;
                    }
                    Ok(())
                }),
            ),
            (
                &mut sm,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for &p in &projects[r] {
                        let got = timed(st, || {
                            let mut page = Page::with_capacity(20);
                            mem.newest(p, 20, |s, _, l| page.push(s, l));
                            Ok(page)
                        })?;
                        check(got.into_rows(p) == expect(p), || {
                            format!("memory newest 20 of {p}")
                        })?;
                    }
                    Ok(())
                }),
            ),
        ],
    )?;
    Ok(Workload {
        id: "R1",
        title: "newest 20 of a random project, copied into one page".into(),
        unit: Unit::Rate("queries/s"),
        stats: vec![sa, ss, sm],
        vs_sqlite: Some(5.0),
        vs_limit: Some(1.7),
        note: "each engine copies the 20 messages into one page (one buffer for the text, one for \
               the rows) through its zero-copy read API: activitylog's `next_ref`, SQLite's \
               `get_ref`, slices of the in-memory buffer"
            .into(),
    })
}

fn r2(
    data: &Data,
    store: &activitylog::Store,
    al_dir: &Path,
    sq: &Sqlite,
    mem: &Memory,
    scans: usize,
) -> Fallible<Workload> {
    let p = data.largest();
    let want = (
        data.of(p).len() as u64,
        data.of(p)
            .iter()
            .map(|&i| data.messages[i as usize].1.len() as u64)
            .sum::<u64>(),
    );
    let (mut sa, mut ss, mut sm) = (Stat::new(AL), Stat::new(SQLITE), Stat::new(LIMIT));
    // Not a contestant: what activitylog's scan spends on checking alone, as a floor.
    let mut sc = Stat::new("checks");
    let checks = engines::Checks::load(al_dir, p)?;
    let mut contestants: [Contestant; 4] = [
        (&mut sa, scanner(want, || engines::al_scan(store, p))),
        (&mut ss, scanner(want, || sq.scan(p))),
        (&mut sm, scanner(want, || Ok(mem.scan(p)))),
        (&mut sc, scanner(want, || checks.scan())),
    ];
    interleave(scans, scans, &mut contestants)?;
    drop(contestants);
    let (checks_ms, limit_ms) = (sc.percentile_us(0.5) / 1e3, sm.percentile_us(0.5) / 1e3);
    Ok(Workload {
        id: "R2",
        title: format!(
            "full newest-first scan of the largest project ({} messages)",
            want.0
        ),
        unit: Unit::MBps,
        stats: vec![sa, ss, sm],
        vs_sqlite: Some(4.5),
        vs_limit: Some(1.7),
        note: format!(
            "latencies per scan; activitylog's checks alone made the plain way (each \
             record's CRC-32 with crc32fast, then its ASCII or UTF-8 check; the same log files \
             in memory; the reader makes both in one pass): {checks_ms:.1} ms, {:.2}× the \
             limit's whole scan ({limit_ms:.1} ms; medians)",
            checks_ms / limit_ms
        ),
    })
}

/// A full-scan contestant: one scan per operation, timed, its count and bytes checked.
fn scanner<'a>(want: (u64, u64), scan: impl Fn() -> Fallible<(u64, u64)> + 'a) -> Run<'a> {
    Box::new(move |r: Range<usize>, st: &mut Stat| {
        for _ in r {
            let got = timed(st, &scan)?;
            check(got == want, || {
                format!("{} scan {got:?}, want {want:?}", st.engine)
            })?;
            st.bytes += got.1;
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn merged(
    id: &'static str,
    title: String,
    queries: Vec<Vec<u64>>,
    pcount: usize,
    count: usize,
    all: bool,
    data: &Data,
    store: &activitylog::Store,
    sq: &Sqlite,
    mem: &Memory,
) -> Fallible<Workload> {
    let expect: Vec<Vec<Row>> = queries
        .iter()
        .map(|ps| expected_rows(data, &data.merged(ps, pcount, count)))
        .collect();
    let (mut sa, mut ss, mut sm) = (Stat::new(AL), Stat::new(SQLITE), Stat::new(LIMIT));
    interleave(
        queries.len(),
        10,
        &mut [
            (
                &mut sa,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for i in r {
                        let ps = if all { None } else { Some(&queries[i][..]) };
                        let got = timed(st, || {
                            engines::al_merged(store, ps, pcount as u64, count as u64)
                        })?;
                        check(engines::al_rows(got) == expect[i], || {
                            format!("activitylog {id} #{i}")
                        })?;
                    }
                    Ok(())
                }),
            ),
            (
                &mut ss,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for i in r {
                        let got = timed(st, || sq.merged(&queries[i], pcount, count))?;
                        check(got == expect[i], || format!("SQLite {id} #{i}"))?;
                    }
                    Ok(())
                }),
            ),
            (
                &mut sm,
                Box::new(|r: Range<usize>, st: &mut Stat| {
                    for i in r {
                        let got = timed(st, || Ok(mem.merged(&queries[i], pcount, count)))?;
                        let got: Vec<Row> = got
                            .into_iter()
                            .map(|(p, s, l)| (p, s, String::from_utf8_lossy(l).into_owned()))
                            .collect();
                        check(got == expect[i], || format!("memory {id} #{i}"))?;
                    }
                    Ok(())
                }),
            ),
        ],
    )?;
    let (vs_sqlite, vs_limit) = if all {
        (Some(10.0), None)
    } else {
        (Some(14.0), Some(1.7))
    };
    Ok(Workload {
        id,
        title,
        unit: Unit::Rate("queries/s"),
        stats: vec![sa, ss, sm],
        vs_sqlite,
        vs_limit,
        note: String::new(),
    })
}

fn r3(
    data: &Data,
    store: &activitylog::Store,
    sq: &Sqlite,
    mem: &Memory,
    ops: usize,
) -> Fallible<Workload> {
    let all = data.projects();
    let mut rng = Rng::new(13);
    let queries = (0..ops)
        .map(|_| {
            let mut ps = Vec::with_capacity(50);
            while ps.len() < 50.min(all.len()) {
                let p = all[rng.below(all.len() as u64) as usize];
                if !ps.contains(&p) {
                    ps.push(p);
                }
            }
            ps.sort_unstable();
            ps
        })
        .collect();
    merged(
        "R3",
        "50 random projects, pcount=10, count=100".into(),
        queries,
        10,
        100,
        false,
        data,
        store,
        sq,
        mem,
    )
}

fn r4(
    data: &Data,
    store: &activitylog::Store,
    sq: &Sqlite,
    mem: &Memory,
    ops: usize,
) -> Fallible<Workload> {
    let all = mem.projects();
    let queries = vec![all; ops];
    merged(
        "R4",
        format!(
            "all {} projects, pcount=1, count=100",
            data.projects().len()
        ),
        queries,
        1,
        100,
        true,
        data,
        store,
        sq,
        mem,
    )
}

// ---------------------------------------------------------------------------------------------
// Opening

/// Open, then the newest 20 of the largest project: the time until the first answer.
fn open_and_answer(engine: &str, dir: &Path, project: u64) -> Fallible<(f64, u64)> {
    let start = Instant::now();
    let newest_seq = if engine == AL {
        let store = engines::activitylog(dir, Durability::Written)?;
        let got = engines::al_newest(&store, project, 20)?;
        let secs = start.elapsed().as_secs_f64();
        return Ok((secs, got.first().map_or(0, |m| m.seq())));
    } else {
        let sq = Sqlite::open(&dir.join("activity.db"), false)?;
        sq.newest(project, 20)?.first().map_or(0, |r| r.0)
    };
    Ok((start.elapsed().as_secs_f64(), newest_seq))
}

fn open_clean(data: &Data, al: &Path, sq: &Path, trials: usize) -> Fallible<Workload> {
    let p = data.largest();
    let want = data.of(p).len() as u64;
    let (mut sa, mut ss) = (Stat::new(AL), Stat::new(SQLITE));
    for t in 0..trials {
        for (k, (st, dir)) in [(&mut sa, al), (&mut ss, sq)].into_iter().enumerate() {
            let _ = k + t;
            let (secs, seq) = open_and_answer(st.engine, dir, p)?;
            check(seq == want, || {
                format!(
                    "{} after a clean close: newest seq {seq}, want {want}",
                    st.engine
                )
            })?;
            st.lat_ns.push((secs * 1e9) as u64);
            st.ops += 1;
            st.secs += secs;
        }
    }
    Ok(Workload {
        id: "O1",
        title: "open to first answer, after a clean close".into(),
        unit: Unit::Millis,
        stats: vec![sa, ss],
        vs_sqlite: None,
        vs_limit: None,
        note: "target ≤ 1 ms; median of the trials".into(),
    })
}

/// The child process: opens `dir`, appends `n` messages to `project` without syncing, says
/// "ready", and waits to be killed.
fn child(engine: &str, dir: &Path, project: u64, n: usize) -> Fallible<()> {
    let mut rng = Rng::new(99);
    let msgs: Vec<String> = (0..n).map(|_| data::message(&mut rng, project)).collect();
    if engine == AL {
        let store = engines::activitylog(dir, Durability::Written)?;
        for m in &msgs {
            store.append(project, [m])?;
        }
        println!("ready");
        std::io::stdout().flush()?;
        loop {
            std::thread::park();
        }
    } else {
        let mut sq = Sqlite::open(&dir.join("activity.db"), false)?;
        for (i, m) in msgs.iter().enumerate() {
            sq.append(project, u32::MAX as u64 + i as u64, &[m])?;
        }
        println!("ready");
        std::io::stdout().flush()?;
        loop {
            std::thread::park();
        }
    }
}

fn open_killed(
    data: &Data,
    al: &Path,
    sq: &Path,
    trials: usize,
    tail: usize,
) -> Fallible<Workload> {
    let p = data.largest();
    let (mut sa, mut ss) = (Stat::new(AL), Stat::new(SQLITE));
    for t in 0..trials {
        for (st, dir) in [(&mut sa, al), (&mut ss, sq)] {
            let want = data.of(p).len() as u64 + (t as u64 + 1) * tail as u64;
            let mut c = Command::new(std::env::current_exe()?)
                .args(["child", if st.engine == AL { AL } else { SQLITE }])
                .arg(dir)
                .args([p.to_string(), tail.to_string()])
                .stdout(Stdio::piped())
                .spawn()?;
            let mut line = String::new();
            BufReader::new(c.stdout.take().ok_or("no child stdout")?).read_line(&mut line)?;
            c.kill()?;
            c.wait()?;
            check(line.trim() == "ready", || {
                format!("{} child said {line:?}", st.engine)
            })?;
            let (secs, seq) = open_and_answer(st.engine, dir, p)?;
            check(seq == want, || {
                format!("{} after a kill: newest seq {seq}, want {want}", st.engine)
            })?;
            st.lat_ns.push((secs * 1e9) as u64);
            st.ops += 1;
            st.secs += secs;
        }
    }
    let tail_bytes: usize = {
        let mut rng = Rng::new(99);
        (0..tail)
            .map(|_| data::message(&mut rng, p).len() + 24)
            .sum()
    };
    Ok(Workload {
        id: "O2",
        title: "open to first answer, after a kill".into(),
        unit: Unit::Millis,
        stats: vec![sa, ss],
        vs_sqlite: None,
        vs_limit: None,
        note: format!(
            "the killed writer appended {tail} unsynced messages ({:.1} MB) first; median of the trials",
            tail_bytes as f64 / 1e6
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Output

fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Rate(u) if v >= 1e6 => format!("{:.2} M {u}", v / 1e6),
        Unit::Rate(u) if v >= 1e3 => format!("{:.1} K {u}", v / 1e3),
        Unit::Rate(u) => format!("{v:.0} {u}"),
        Unit::MBps => format!("{v:.0} MB/s"),
        Unit::Millis => format!("{v:.3} ms"),
        Unit::PerByte => format!("{v:.3}×"),
    }
}

fn report(results: &[Workload], data: &Data, msg_bytes: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} messages ({:.1} bytes on average) over {} projects\n",
        data.messages.len(),
        msg_bytes as f64 / data.messages.len() as f64,
        data.projects().len()
    );
    let _ = writeln!(
        out,
        "| workload | activitylog | SQLite | limit | vs SQLite (target) | vs limit (target) | activitylog p50 / p99 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for w in results {
        let cell = |e: &str| w.value(e).map_or("–".to_string(), |v| fmt_value(w.unit, v));
        let vs_sqlite = match (w.advantage(SQLITE), w.vs_sqlite) {
            (Some(a), Some(t)) => format!("{a:.1}× (≥ {t}×) {}", if a >= t { "✓" } else { "✗" }),
            (Some(a), None) => format!("{a:.2}×"),
            _ => "–".into(),
        };
        let vs_limit = match (w.advantage(LIMIT), w.vs_limit) {
            (Some(a), Some(t)) => {
                let within = 1.0 / a;
                format!(
                    "{within:.2}× slower (≤ {t}×) {}",
                    if within <= t { "✓" } else { "✗" }
                )
            }
            (Some(a), None) => format!("{:.2}× slower", 1.0 / a),
            _ => "–".into(),
        };
        let lat = w
            .stats
            .iter()
            .find(|s| s.engine == AL)
            .filter(|s| !s.lat_ns.is_empty() && w.unit != Unit::Millis)
            .map_or("–".into(), |s| {
                format!(
                    "{:.1} / {:.1} µs",
                    s.percentile_us(0.5),
                    s.percentile_us(0.99)
                )
            });
        let _ = writeln!(
            out,
            "| {} {} | {} | {} | {} | {} | {} | {} |",
            w.id,
            w.title,
            cell(AL),
            cell(SQLITE),
            cell(LIMIT),
            vs_sqlite,
            vs_limit,
            lat
        );
    }
    for w in results.iter().filter(|w| !w.note.is_empty()) {
        let _ = writeln!(out, "\n{}: {}", w.id, w.note);
    }
    out
}

fn to_json(results: &[Workload], data: &Data, args: &Args) -> serde_json::Value {
    let workloads: Vec<_> = results
        .iter()
        .map(|w| {
            let engines: Vec<_> = w
                .stats
                .iter()
                .map(|s| {
                    json!({
                        "engine": s.engine,
                        "value": w.value(s.engine),
                        "ops": s.ops,
                        "seconds": s.secs,
                        "p50_us": s.percentile_us(0.5),
                        "p99_us": s.percentile_us(0.99),
                    })
                })
                .collect();
            json!({
                "id": w.id,
                "title": w.title,
                "unit": match w.unit {
                    Unit::Rate(u) => u,
                    Unit::MBps => "MB/s",
                    Unit::Millis => "ms",
                    Unit::PerByte => "bytes per message byte",
                },
                "higher_is_better": w.higher_is_better(),
                "engines": engines,
                "vs_sqlite": w.advantage(SQLITE),
                "vs_sqlite_target": w.vs_sqlite,
                "slower_than_limit": w.advantage(LIMIT).map(|a| 1.0 / a),
                "vs_limit_target": w.vs_limit,
                "note": w.note,
            })
        })
        .collect();
    json!({
        "messages": data.messages.len(),
        "projects": data.projects().len(),
        "message_bytes": data.bytes(),
        "quick": args.quick,
        "only": args.only,
        "first_project": FIRST_PROJECT,
        "workloads": workloads,
    })
}
