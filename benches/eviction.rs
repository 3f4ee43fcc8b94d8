//! Read latency while the store evicts projects: one thread appends to 598 projects in turn
//! with `max_open_projects(64)`, so that every few appends an eviction closes (and syncs)
//! about seven idle projects, while another thread reads the newest message of a hot project
//! every 200 µs. Prints the appends' rate and the reads' latency percentiles.
//!
//! `cargo bench --bench eviction` (8 s; `EVICTION_BENCH_SECONDS` sets another length). The
//! store is made under `target/`, on the disk the project is on, since closes fsync.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use activitylog::Options;

fn main() {
    let seconds: u64 = std::env::var("EVICTION_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).expect("creating target/");
    let dir = tempfile::tempdir_in(&target).expect("a directory under target/");
    let store = Options::new()
        .max_open_projects(64)
        .open(dir.path())
        .expect("opening the store");
    store.append(1, [r#"{"hot":1}"#]).expect("appending");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let start = Instant::now();
                let read = store.newest_first(1).expect("reading").take(1).count();
                latencies.push(start.elapsed());
                assert_eq!(read, 1);
                std::thread::sleep(Duration::from_micros(200));
            }
            latencies
        })
    };
    let message = r#"{"event":"job:started","job":"1/2/3","user":"john","pad":"0123456789"}"#;
    let start = Instant::now();
    let mut appends = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        for project in 2..600u64 {
            store.append(project, [message]).expect("appending");
            appends += 1;
        }
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut latencies = reader.join().expect("the reader");
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "appends: {appends} in {:.1} s ({:.0}/s); reads of the hot project: {}, p50 {:?}, \
         p99 {:?}, p99.9 {:?}, max {:?}",
        elapsed.as_secs_f64(),
        appends as f64 / elapsed.as_secs_f64(),
        latencies.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        latencies[latencies.len() - 1]
    );
}
