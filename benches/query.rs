//! Multi-project query benchmarks: activitylog's newest-first merge against the naive answer to
//! the same query (collect every message of every project, sort, apply the caps).
//!
//! ```text
//! cargo bench --bench query                 # everything, ~1.5 minutes (+15 s to build the data)
//! cargo bench --bench query -- query_50     # one group
//! ```
//!
//! - `query_50`: 50 projects of 2,000–20,000 messages each, appended interleaved so their
//!   stamps interleave; `Query::new().projects(50 ids).pcount(10).count(100)`.
//! - `query_all`: all of 10,000 projects, Zipf-sized (a few big ones, most with 1–20 messages,
//!   about 1.5 million messages in all); `Query::new().pcount(1).count(100)`.
//! - `reopen_all`: the `query_all` query on a freshly opened store: open + first full answer,
//!   after a clean close (the `NEWEST` file exists), read-only and writable; and, for
//!   comparison, read-only without `NEWEST` (as after a crash), where every project is opened,
//!   and the naive answer on a freshly opened store.
//!
//! Each pair is checked before it is timed: the merge's answer must equal the naive one. The
//! `newest_pcount_of_each` variants are a less naive baseline: the newest `pcount` of every
//! project, sorted, then `count`. Setup prints `Merged::projects_opened` for each query.
//!
//! The two data sets are built once, in batches of 1–8 messages at `Durability::Written`, and
//! kept under `target/tmp/bench-data/` keyed by [`DATA_VERSION`], so later runs start at once.
//! Delete those directories to rebuild them.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use activitylog::{Durability, Message, Options, Query, Store};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

/// Bump when the data sets or the on-disk format change, so a stale cache is not reused.
const DATA_VERSION: &str = "v2";
/// The result size of every query here.
const COUNT: u64 = 100;
/// The 50-project query's per-project cap.
const FIFTY_PCOUNT: u64 = 10;
/// The all-projects query's per-project cap.
const ALL_PCOUNT: u64 = 1;
/// The `NEWEST` file a clean close leaves (see the store module).
const NEWEST_FILE: &str = "NEWEST";

/// A realistic activity event of 150–200 bytes, varying with `i`.
fn message(project: u64, i: u64) -> String {
    const EVENTS: [&str; 4] = [
        "job:completed",
        "job:started",
        "job:failed",
        "pipeline:queued",
    ];
    const USERS: [&str; 3] = ["jobrunner", "alice.example", "deploy-bot"];
    format!(
        concat!(
            r#"{{"event":"{}","job":"{}/{}/{}","user":"{}","project_id":{},"#,
            r#""duration_ms":{},"status":"success","ref":"refs/heads/main","sha":"{:016x}{:016x}"}}"#
        ),
        EVENTS[(i % 4) as usize],
        i / 1000 + 1,
        i % 1000 / 10 + 1,
        i % 10 + 1,
        USERS[(i % 3) as usize],
        project,
        (i * 7919) % 100_000,
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        i ^ 0xdead_beef,
    )
}

/// SplitMix64: a small deterministic generator, so a data set is the same on every build.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias is negligible here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The build's time line: each batch gets a point on it, and batches are appended in order.
const TIMELINE: u64 = 1 << 40;

/// One project of a data set: its id, size, and the part of the time line it is active in.
struct ProjectSpec {
    id: u64,
    messages: u64,
    window_start: u64,
    window_len: u64,
}

fn bench_root() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-data");
    fs::create_dir_all(&root).expect("creating the bench-data directory");
    root
}

/// A cached store: built once, rebuilt when missing, unfinished or not as specified.
struct DataSet {
    dir: PathBuf,
    projects: Vec<ProjectSpec>,
    seed: u64,
    /// Whether the store must have a `NEWEST` file (its projects' newest stamps).
    newest: bool,
}

impl DataSet {
    /// 50 projects of 2,000–20,000 messages, all active over the whole time line.
    fn fifty() -> &'static DataSet {
        static DATA: OnceLock<DataSet> = OnceLock::new();
        DATA.get_or_init(|| {
            let mut rng = Rng(50);
            let projects = (0..50)
                .map(|i| ProjectSpec {
                    id: 5_000_000 + 1_000 * i,
                    messages: 2_000 + rng.below(18_001),
                    window_start: 0,
                    window_len: TIMELINE,
                })
                .collect();
            DataSet::get("query-50", projects, 51, false)
        })
    }

    /// 10,000 projects with Zipf-distributed sizes (exponent 1.3, about 1.5 million messages):
    /// the biggest has about 400,000, 80% have at most 20. A project is active over a part of
    /// the time line proportional to its size (all of it from 5,000 messages up), at a random
    /// place, so small projects' last messages are spread over the whole history.
    fn all() -> &'static DataSet {
        static DATA: OnceLock<DataSet> = OnceLock::new();
        DATA.get_or_init(|| {
            const PROJECTS: u64 = 10_000;
            const TOTAL: f64 = 1_500_000.0;
            const EXPONENT: f64 = 1.3;
            const FULL_WINDOW: u64 = 5_000;
            let harmonic: f64 = (1..=PROJECTS).map(|r| (r as f64).powf(-EXPONENT)).sum();
            let scale = TOTAL / harmonic;
            let mut rng = Rng(10_000);
            // Ids 1..=10,000 in random order, so size does not follow the id.
            let mut ids: Vec<u64> = (1..=PROJECTS).collect();
            for i in (1..ids.len()).rev() {
                ids.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let projects = ids
                .iter()
                .enumerate()
                .map(|(rank, &id)| {
                    let messages = ((scale * ((rank + 1) as f64).powf(-EXPONENT)) as u64).max(1);
                    let window_len = if messages >= FULL_WINDOW {
                        TIMELINE
                    } else {
                        TIMELINE / FULL_WINDOW * messages
                    };
                    ProjectSpec {
                        id: 1_000_000 + id,
                        messages,
                        window_start: rng.below(TIMELINE - window_len + 1),
                        window_len,
                    }
                })
                .collect();
            DataSet::get("query-all", projects, 10_001, true)
        })
    }

    fn get(name: &str, mut projects: Vec<ProjectSpec>, seed: u64, newest: bool) -> DataSet {
        projects.sort_unstable_by_key(|p| p.id);
        let dir = bench_root().join(format!("{name}-{DATA_VERSION}"));
        let data = DataSet {
            dir,
            projects,
            seed,
            newest,
        };
        if !data.is_complete() {
            data.build();
            assert!(data.is_complete(), "{} is not as built", data.dir.display());
        }
        data
    }

    fn ids(&self) -> Vec<u64> {
        self.projects.iter().map(|p| p.id).collect()
    }

    fn messages(&self) -> u64 {
        self.projects.iter().map(|p| p.messages).sum()
    }

    fn marker(&self) -> PathBuf {
        self.dir.join("COMPLETE")
    }

    fn newest_file(&self) -> PathBuf {
        self.dir.join(NEWEST_FILE)
    }

    fn is_complete(&self) -> bool {
        if !self.marker().exists() {
            return false;
        }
        if self.newest && !self.newest_file().exists() {
            // A writable open removes it and a clean close writes it back: an interrupted run.
            eprintln!("{}: restoring the NEWEST file", self.dir.display());
            let Ok(store) = Store::open(&self.dir) else {
                return false;
            };
            if learn_newest(&store).is_err() {
                return false;
            }
        }
        let Ok(store) = Options::new().read_only(true).open(&self.dir) else {
            return false;
        };
        store.projects().is_ok_and(|ids| ids == self.ids())
            && self.projects.iter().all(|p| {
                store
                    .newest_first(p.id)
                    .is_ok_and(|it| it.next_seq() == p.messages + 1)
            })
    }

    /// The appends, in time-line order: `(time, project, messages)`.
    fn schedule(&self) -> Vec<(u64, u64, u64)> {
        let mut rng = Rng(self.seed);
        let mut batches = Vec::new();
        for p in &self.projects {
            let mut left = p.messages;
            while left > 0 {
                let n = (1 + rng.below(8)).min(left);
                batches.push((p.window_start + rng.below(p.window_len), p.id, n));
                left -= n;
            }
        }
        batches.sort_unstable();
        batches
    }

    fn build(&self) {
        let _ = fs::remove_dir_all(&self.dir);
        let started = Instant::now();
        let schedule = self.schedule();
        eprintln!(
            "building {} ({} projects, {} messages, {} appends) ...",
            self.dir.display(),
            self.projects.len(),
            self.messages(),
            schedule.len()
        );
        let store = Options::new()
            .max_open_projects(2048)
            .open(&self.dir)
            .expect("creating the data set");
        let mut i = 0;
        for &(_, project, n) in &schedule {
            let batch: Vec<String> = (i..i + n).map(|i| message(project, i)).collect();
            store
                .append_with(project, &batch, Durability::Written)
                .expect("appending to the data set");
            i += n;
        }
        if self.newest {
            learn_newest(&store).expect("learning the newest stamps");
        }
        store.sync().expect("syncing the data set");
        drop(store);
        assert!(
            !self.newest || self.newest_file().exists(),
            "a clean close should leave {}",
            self.newest_file().display()
        );
        fs::write(self.marker(), b"").expect("marking the data set complete");
        eprintln!("built in {:.1?}", started.elapsed());
    }

    fn open_read_only(&self) -> Store {
        Options::new()
            .read_only(true)
            .open(&self.dir)
            .expect("opening the data set")
    }
}

/// Makes the store learn every project's newest stamp (an all-projects query does), so that
/// closing it cleanly writes the `NEWEST` file.
fn learn_newest(store: &Store) -> activitylog::Result<()> {
    store
        .query(&Query::new().count(1))?
        .try_for_each(|m| m.map(drop))
}

/// activitylog's answer, and how many projects it opened.
fn merge(store: &Store, query: &Query) -> (Vec<Message>, usize) {
    let mut merged = store.query(query).unwrap();
    let out = merged.by_ref().map(Result::unwrap).collect();
    (out, merged.projects_opened())
}

/// Sorts newest first across projects and applies the caps: the query's definition.
fn sort_and_cap(mut all: Vec<Message>, pcount: u64, count: u64) -> Vec<Message> {
    all.sort_unstable_by_key(|m| Reverse((m.stamp(), m.project(), m.seq())));
    let mut taken: HashMap<u64, u64> = HashMap::new();
    all.into_iter()
        .filter(|m| {
            let n = taken.entry(m.project()).or_insert(0);
            *n += 1;
            *n <= pcount
        })
        .take(count as usize)
        .collect()
}

/// The naive answer: every message of every project, sorted, then the caps.
fn naive(store: &Store, ids: &[u64], pcount: u64, count: u64) -> Vec<Message> {
    let mut all = Vec::new();
    for &p in ids {
        for m in store.newest_first(p).unwrap() {
            all.push(m.unwrap());
        }
    }
    sort_and_cap(all, pcount, count)
}

/// A less naive answer: the newest `pcount` of every project, sorted, then `count`.
fn newest_of_each(store: &Store, ids: &[u64], pcount: u64, count: u64) -> Vec<Message> {
    let mut all = Vec::new();
    for &p in ids {
        for m in store.newest_first(p).unwrap().take(pcount as usize) {
            all.push(m.unwrap());
        }
    }
    sort_and_cap(all, pcount, count)
}

/// The all-projects query's right answer, computed naively once.
fn all_expected() -> &'static [Message] {
    static EXPECTED: OnceLock<Vec<Message>> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let data = DataSet::all();
        let store = data.open_read_only();
        let t0 = Instant::now();
        let expected = naive(&store, &store.projects().unwrap(), ALL_PCOUNT, COUNT);
        eprintln!(
            "query_all: naive answer over {} messages in {:.1?}",
            data.messages(),
            t0.elapsed()
        );
        assert_eq!(expected.len(), COUNT as usize);
        expected
    })
}

fn all_query() -> Query {
    Query::new().pcount(ALL_PCOUNT).count(COUNT)
}

/// 50 projects, `pcount=10, count=100`.
fn query_50(c: &mut Criterion) {
    let data = DataSet::fifty();
    let ids = data.ids();
    let query = Query::new()
        .projects(ids.iter().copied())
        .pcount(FIFTY_PCOUNT)
        .count(COUNT);
    let store = data.open_read_only();
    let naive_store = data.open_read_only();

    let (merged, opened) = merge(&store, &query);
    let expected = naive(&naive_store, &ids, FIFTY_PCOUNT, COUNT);
    assert_eq!(merged.len(), COUNT as usize);
    assert_eq!(
        merged, expected,
        "the merge disagrees with the naive answer"
    );
    assert_eq!(
        newest_of_each(&naive_store, &ids, FIFTY_PCOUNT, COUNT),
        expected
    );
    let contributing = expected
        .iter()
        .map(Message::project)
        .collect::<std::collections::HashSet<_>>()
        .len();
    eprintln!(
        "query_50: {} messages in 50 projects; projects_opened = {opened}, {contributing} contribute",
        data.messages()
    );

    let mut group = c.benchmark_group("query_50");
    group
        .throughput(Throughput::Elements(COUNT))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("activitylog", |b| b.iter(|| merge(&store, &query)));
    group.bench_function("newest_pcount_of_each", |b| {
        b.iter(|| newest_of_each(&naive_store, &ids, FIFTY_PCOUNT, COUNT))
    });
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("naive_sort_all", |b| {
        b.iter(|| naive(&naive_store, &ids, FIFTY_PCOUNT, COUNT))
    });
    group.finish();
}

/// All of 10,000 projects, `pcount=1, count=100`.
fn query_all(c: &mut Criterion) {
    let data = DataSet::all();
    let query = all_query();
    let store = data.open_read_only();
    let naive_store = data.open_read_only();

    let (merged, opened) = merge(&store, &query);
    let expected = all_expected();
    assert_eq!(
        merged, expected,
        "the merge disagrees with the naive answer"
    );
    let ids = naive_store.projects().unwrap();
    assert_eq!(
        newest_of_each(&naive_store, &ids, ALL_PCOUNT, COUNT),
        expected
    );
    eprintln!(
        "query_all: {} messages in {} projects; projects_opened = {opened}",
        data.messages(),
        data.projects.len()
    );

    let mut group = c.benchmark_group("query_all");
    group
        .throughput(Throughput::Elements(COUNT))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("activitylog", |b| b.iter(|| merge(&store, &query)));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("newest_pcount_of_each", |b| {
        b.iter(|| newest_of_each(&naive_store, &naive_store.projects().unwrap(), 1, COUNT))
    });
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("naive_sort_all", |b| {
        b.iter(|| naive(&naive_store, &naive_store.projects().unwrap(), 1, COUNT))
    });
    group.finish();
}

/// Open + the first answer to the all-projects query, after a clean close. Closing is not
/// timed.
fn reopen_all(c: &mut Criterion) {
    let data = DataSet::all();
    let query = all_query();
    let expected = all_expected();
    let newest = data.newest_file();
    let aside = data.dir.join("NEWEST.bench-aside");
    // Left by an interrupted run (the data set has restored NEWEST since).
    let _ = fs::remove_file(&aside);

    // How each variant opens the store, whether NEWEST is moved away for it, and whether it
    // answers naively.
    let variants: [(&str, bool, bool, bool); 4] = [
        ("read_only", true, false, false),
        ("writable", false, false, false),
        ("read_only_without_newest", true, true, false),
        ("naive_sort_all_read_only", true, false, true),
    ];
    let run =
        |read_only: bool, without_newest: bool, naively: bool| -> (Duration, Vec<Message>, usize) {
            assert!(newest.exists(), "{} is missing", newest.display());
            if without_newest {
                fs::rename(&newest, &aside).unwrap();
            }
            let t0 = Instant::now();
            let store = Options::new().read_only(read_only).open(&data.dir).unwrap();
            let (answer, opened) = if naively {
                let ids = store.projects().unwrap();
                (naive(&store, &ids, ALL_PCOUNT, COUNT), ids.len())
            } else {
                merge(&store, &query)
            };
            let elapsed = t0.elapsed();
            drop(store);
            if without_newest {
                fs::rename(&aside, &newest).unwrap();
            }
            (elapsed, answer, opened)
        };
    for (name, read_only, without_newest, naively) in variants {
        let (elapsed, answer, opened) = run(read_only, without_newest, naively);
        assert_eq!(answer, expected, "{name}: wrong answer after reopening");
        eprintln!("reopen_all/{name}: projects_opened = {opened}, first run {elapsed:.1?}");
    }

    let mut group = c.benchmark_group("reopen_all");
    group
        .throughput(Throughput::Elements(COUNT))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, read_only, without_newest, naively) in variants {
        if without_newest || naively {
            group
                .sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(if naively { 8 } else { 5 }));
        }
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| run(read_only, without_newest, naively).0)
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, query_50, query_all, reopen_all);
criterion_main!(benches);
