#[path = "../data.rs"]
#[allow(dead_code)]
mod data;
use std::time::Instant;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let p: u64 = std::env::args().nth(2).unwrap().parse().unwrap();
    let store = activitylog::Options::new()
        .read_only(true)
        .open(&dir)
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..std::env::var("N").map(|v| v.parse().unwrap()).unwrap_or(8) {
        let t = Instant::now();
        let mut it = store.newest_first(p).unwrap();
        let (mut n, mut b) = (0u64, 0u64);
        while let Some(m) = it.next_ref() {
            let m = m.unwrap();
            n += 1;
            b += m.json().len() as u64;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let _ = (n, b);
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    println!(
        "first {first:.2} min {:.2} median {:.2}",
        times[0],
        times[times.len() / 2]
    );
}
