//! Engine benchmarks: appends, newest-20 reads on a small and a big project, a full
//! newest-first scan, and reopen time.
//!
//! ```text
//! cargo bench --bench engine                                # everything, ~5 minutes
//! ACTIVITYLOG_BENCH_BIG=1000000 cargo bench --bench engine  # a smaller "big" project
//! cargo bench --bench engine -- newest_20                   # one group
//! ```
//!
//! The read benchmarks share one store holding a big project (`ACTIVITYLOG_BENCH_BIG`
//! messages, default 10 million, about 2 GB), a 1-million-message project for the scan and a
//! 1,000-message one. It is built once, in batches of 1,000 at `Durability::Written`, and
//! kept under `target/tmp/bench-data/` keyed by [`DATA_VERSION`] and the size, so later runs
//! start at once. Delete that directory to rebuild it. Append benchmarks write to fresh
//! temporary stores in the same directory, so `Sync` measures the real disk, not a tmpfs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use activitylog::{Durability, Options, Store};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

/// Bump when the data set or the on-disk format changes, so a stale cache is not reused.
const DATA_VERSION: &str = "v2";
/// The big project's default size; `ACTIVITYLOG_BENCH_BIG` overrides it.
const DEFAULT_BIG_MESSAGES: u64 = 10_000_000;
const BIG_PROJECT: u64 = 1;
const SCAN_PROJECT: u64 = 2;
const SCAN_MESSAGES: u64 = 1_000_000;
const SMALL_PROJECT: u64 = 3;
const SMALL_MESSAGES: u64 = 1_000;
/// Batch size used to build the read data set.
const BUILD_BATCH: u64 = 1_000;
/// Messages read by the newest-N benchmarks, as the Activity API's default page.
const PAGE: usize = 20;

/// A realistic activity event of 150–200 bytes, varying with `i`.
fn message(i: u64) -> String {
    const EVENTS: [&str; 4] = [
        "job:completed",
        "job:started",
        "job:failed",
        "pipeline:queued",
    ];
    const USERS: [&str; 3] = ["jobrunner", "alice.example", "deploy-bot"];
    format!(
        concat!(
            r#"{{"event":"{}","job":"{}/{}/{}","user":"{}","project_id":1111111,"#,
            r#""duration_ms":{},"status":"success","ref":"refs/heads/main","sha":"{:016x}{:016x}"}}"#
        ),
        EVENTS[(i % 4) as usize],
        i / 1000 + 1,
        i % 1000 / 10 + 1,
        i % 10 + 1,
        USERS[(i % 3) as usize],
        (i * 7919) % 100_000,
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        i ^ 0xdead_beef,
    )
}

fn batch(start: u64, n: u64) -> Vec<String> {
    (start..start + n).map(message).collect()
}

fn bench_root() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-data");
    fs::create_dir_all(&root).expect("creating the bench-data directory");
    root
}

fn big_messages() -> u64 {
    match std::env::var("ACTIVITYLOG_BENCH_BIG") {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .expect("ACTIVITYLOG_BENCH_BIG is a number of messages"),
        Err(_) => DEFAULT_BIG_MESSAGES,
    }
}

/// The read data set: built once and cached, rebuilt when missing, unfinished or unreadable.
struct ReadData {
    dir: PathBuf,
    big: u64,
}

impl ReadData {
    fn get() -> ReadData {
        let big = big_messages();
        let dir = bench_root().join(format!("reads-{DATA_VERSION}-{big}"));
        let data = ReadData { dir, big };
        if !data.is_complete() {
            data.build();
        }
        data
    }

    fn marker(&self) -> PathBuf {
        self.dir.join("COMPLETE")
    }

    fn is_complete(&self) -> bool {
        if !self.marker().exists() {
            return false;
        }
        let Ok(store) = Options::new().read_only(true).open(&self.dir) else {
            return false;
        };
        [
            (BIG_PROJECT, self.big),
            (SCAN_PROJECT, SCAN_MESSAGES),
            (SMALL_PROJECT, SMALL_MESSAGES),
        ]
        .iter()
        .all(|&(p, n)| store.newest_first(p).is_ok_and(|it| it.next_seq() == n + 1))
    }

    fn build(&self) {
        let _ = fs::remove_dir_all(&self.dir);
        let started = Instant::now();
        eprintln!("building the read data set in {} ...", self.dir.display());
        let store = Store::open(&self.dir).expect("creating the read data set");
        for (project, n) in [
            (SMALL_PROJECT, SMALL_MESSAGES),
            (SCAN_PROJECT, SCAN_MESSAGES),
            (BIG_PROJECT, self.big),
        ] {
            let mut i = 0;
            while i < n {
                let k = BUILD_BATCH.min(n - i);
                store
                    .append_with(project, batch(i, k), Durability::Written)
                    .expect("appending to the read data set");
                i += k;
            }
        }
        store.sync().expect("syncing the read data set");
        drop(store);
        fs::write(self.marker(), b"").expect("marking the read data set complete");
        eprintln!(
            "built {} + {SCAN_MESSAGES} + {SMALL_MESSAGES} messages in {:.1?}",
            self.big,
            started.elapsed()
        );
    }

    fn open_read_only(&self) -> Store {
        Options::new()
            .read_only(true)
            .open(&self.dir)
            .expect("opening the read data set")
    }
}

fn newest(store: &Store, project: u64, n: usize) -> usize {
    let mut bytes = 0;
    for m in store.newest_first(project).unwrap().take(n) {
        bytes += m.unwrap().json().len();
    }
    bytes
}

/// `threads` threads each append `size`-message batches, to one project each or all to one.
fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for durability in [Durability::Written, Durability::Sync] {
        for size in [1u64, 100] {
            for (threads, same_project) in [(1usize, true), (4, false), (4, true)] {
                let shape = match (threads, same_project) {
                    (1, _) => "1_thread".to_string(),
                    (n, false) => format!("{n}_threads_{n}_projects"),
                    (n, true) => format!("{n}_threads_1_project"),
                };
                let id = BenchmarkId::new(format!("{durability:?}/batch_{size}"), shape);
                group.throughput(Throughput::Elements(size * threads as u64));
                group.bench_function(id, |b| {
                    let tmp = tempfile::tempdir_in(bench_root()).unwrap();
                    let store = Store::open(tmp.path()).unwrap();
                    let msgs = batch(0, size);
                    // Every iteration: each thread appends one batch; wall time of the slowest.
                    b.iter_custom(|iters| {
                        let start = Barrier::new(threads + 1);
                        let t0 = std::thread::scope(|s| {
                            for t in 0..threads {
                                let (store, msgs, start) = (&store, &msgs, &start);
                                let project = if same_project { 1 } else { 1 + t as u64 };
                                s.spawn(move || {
                                    start.wait();
                                    for _ in 0..iters {
                                        store.append_with(project, msgs, durability).unwrap();
                                    }
                                });
                            }
                            start.wait();
                            Instant::now()
                        });
                        // The scope has joined every thread.
                        t0.elapsed()
                    });
                });
            }
        }
    }
    group.finish();
}

/// The newest 20 of a 1,000-message project and of the big one: the cost must not grow with
/// the project. `big_middle` pages from the middle of the big project (a sealed, mapped segment).
fn newest_20(c: &mut Criterion) {
    let data = ReadData::get();
    let store = data.open_read_only();
    let mut group = c.benchmark_group("newest_20");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(PAGE as u64));
    group.bench_function(BenchmarkId::new("small", SMALL_MESSAGES), |b| {
        b.iter(|| newest(&store, SMALL_PROJECT, PAGE))
    });
    group.bench_function(BenchmarkId::new("big", data.big), |b| {
        b.iter(|| newest(&store, BIG_PROJECT, PAGE))
    });
    {
        // The writing process after a restart: it reads its newest records into its tail copy
        // when it opens a project, so these reads need no system call or checksum.
        let writer = Options::new()
            .open(&data.dir)
            .expect("opening the read data set");
        group.bench_function(BenchmarkId::new("big_writer_reopened", data.big), |b| {
            b.iter(|| newest(&writer, BIG_PROJECT, PAGE))
        });
    }
    group.bench_function(BenchmarkId::new("big_middle", data.big), |b| {
        b.iter(|| {
            let mut n = 0;
            for m in store
                .newest_first(BIG_PROJECT)
                .unwrap()
                .before(data.big / 2)
                .take(PAGE)
            {
                n += m.unwrap().json().len();
            }
            n
        })
    });
    group.finish();
}

/// Every message of a 1-million-message project, newest first: messages/s and bytes/s.
fn scan(c: &mut Criterion) {
    let data = ReadData::get();
    let store = data.open_read_only();
    let bytes = newest(&store, SCAN_PROJECT, usize::MAX) as u64;
    let mut group = c.benchmark_group("scan");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for throughput in [
        Throughput::Elements(SCAN_MESSAGES),
        Throughput::Bytes(bytes),
    ] {
        let unit = match throughput {
            Throughput::Elements(_) => "messages",
            _ => "bytes",
        };
        group.throughput(throughput);
        group.bench_function(BenchmarkId::new(unit, SCAN_MESSAGES), |b| {
            b.iter(|| newest(&store, SCAN_PROJECT, usize::MAX))
        });
    }
    group.finish();
}

/// Opening the store after a clean close, plus the first newest-20 read (which opens the
/// project). Closing is not timed.
fn reopen(c: &mut Criterion) {
    let data = ReadData::get();
    let mut group = c.benchmark_group("reopen");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for read_only in [false, true] {
        let mode = if read_only { "read_only" } else { "writable" };
        for (size, project) in [("small", SMALL_PROJECT), ("big", BIG_PROJECT)] {
            group.bench_function(BenchmarkId::new(mode, size), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t0 = Instant::now();
                        let store = Options::new().read_only(read_only).open(&data.dir).unwrap();
                        std::hint::black_box(newest(&store, project, PAGE));
                        total += t0.elapsed();
                        drop(store);
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, appends, newest_20, scan, reopen);
criterion_main!(benches);
