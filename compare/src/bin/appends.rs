//! A1's activitylog appends alone, each timed: where single `Written` appends spend their time.
//!
//! ```text
//! cargo run --release -p activitylog-compare --bin appends -- DIR [MESSAGES]
//! ```
//!
//! Appends the compare's data (2,000,000 messages over 1,000 projects by default, the same
//! seed) one message at a time to a new store in `DIR` (which must not exist), back to back,
//! and prints the total, the time of the appends that created a project, and how much of the
//! rest went to appends slower than each threshold. Use a new `DIR` each run and remove old
//! ones long before: ext4 without a journal reuses no inode freed in the last 30 s, and
//! creating a thousand projects right after removing a store skips over all of its inodes.

#[path = "../data.rs"]
#[allow(dead_code)]
mod data;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use activitylog::{Durability, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: appends DIR [MESSAGES]")?);
    let n: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 2_000_000,
    };
    if dir.exists() {
        return Err(format!("{} exists: give a new directory", dir.display()).into());
    }
    let data = data::Data::generate(n, 1000, 0xAC71_0106);
    let store = Options::new().durability(Durability::Written).open(&dir)?;
    let mut seen = HashSet::new();
    let mut others = Vec::with_capacity(n);
    let mut creations = Vec::new();
    let t0 = Instant::now();
    for (p, m) in &data.messages {
        let t = Instant::now();
        store.append(*p, [m])?;
        let d = t.elapsed().as_secs_f64();
        if seen.insert(*p) {
            creations.push(d);
        } else {
            others.push(d);
        }
    }
    let total = t0.elapsed().as_secs_f64();
    let sum: f64 = others.iter().sum();
    others.sort_by(f64::total_cmp);
    let at = |q: f64| others[((others.len() - 1) as f64 * q) as usize] * 1e6;
    let (created, creating) = (creations.len(), creations.iter().sum::<f64>());
    creations.sort_by(f64::total_cmp);
    let made = |q: f64| creations[((created.max(1) - 1) as f64 * q) as usize] * 1e6;
    println!(
        "{n} appends in {total:.3} s ({:.2} M msg/s); {created} creating a project: {creating:.3} s \
         (p10 {:.0} µs, p50 {:.0} µs, p90 {:.0} µs); \
         the other {}: {sum:.3} s, p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs",
        n as f64 / total / 1e6,
        made(0.1),
        made(0.5),
        made(0.9),
        others.len(),
        at(0.5),
        at(0.99),
        at(0.999)
    );
    for threshold_us in [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 1000.0] {
        let slow = others.partition_point(|&d| d * 1e6 <= threshold_us);
        let slow_sum: f64 = others[slow..].iter().sum();
        println!(
            "  over {threshold_us:>6} µs: {:>8} appends, {slow_sum:.3} s",
            others.len() - slow
        );
    }
    let t = Instant::now();
    drop(store);
    println!("close: {:.3} s", t.elapsed().as_secs_f64());
    Ok(())
}
