//! Append latency while a query learns every project's newest stamp: a store of 2,000
//! projects is reopened without the stamps a clean close saves (as after a crash), and one
//! thread appends to a hot project every 100 µs while the first query over all projects opens
//! every project to learn its stamp. Prints the query's time and the appends' latency
//! percentiles while it ran.
//!
//! `cargo bench --bench stamp_scan` (`STAMP_SCAN_PROJECTS` sets another number of projects).
//! The store is made under `target/`, on the disk the project is on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use activitylog::{Query, Store};

fn main() {
    let projects: u64 = std::env::var("STAMP_SCAN_PROJECTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).expect("creating target/");
    let dir = tempfile::tempdir_in(&target).expect("a directory under target/");
    let message = r#"{"event":"job:started","job":"1/2/3","user":"john","pad":"0123456789"}"#;
    {
        let store = Store::open(dir.path()).expect("opening the store");
        for project in 1..=projects {
            store.append(project, [message]).expect("appending");
        }
    }
    // As after a crash: the next query over all projects opens each one to learn its stamp.
    match std::fs::remove_file(dir.path().join("NEWEST")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing NEWEST: {e}"),
    }
    let store = Store::open(dir.path()).expect("opening the store");
    store.append(1, [message]).expect("appending");
    let done = Arc::new(AtomicBool::new(false));
    let appender = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let start = Instant::now();
                store.append(1, [message]).expect("appending");
                latencies.push(start.elapsed());
                std::thread::sleep(Duration::from_micros(100));
            }
            latencies
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    let answered = store
        .query(&Query::new().pcount(1).count(100))
        .expect("querying")
        .count();
    let query = start.elapsed();
    done.store(true, Ordering::Relaxed);
    assert_eq!(answered, 100);
    let mut latencies = appender.join().expect("the appender");
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "first query over {projects} projects: {:.1} ms; appends meanwhile: {}, p50 {:?}, \
         p99 {:?}, max {:?}",
        query.as_secs_f64() * 1e3,
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}
