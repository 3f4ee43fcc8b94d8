//! The generated data set: deterministic activity events over projects with a Zipf-like skew.

/// Project ids are `FIRST_PROJECT + rank`, rank 0 being the largest project.
pub const FIRST_PROJECT: u64 = 1_000_000;
/// Shortest and longest message, in bytes.
pub const MIN_LEN: usize = 80;
/// See [`MIN_LEN`].
pub const MAX_LEN: usize = 250;

/// SplitMix64: a small, fast, deterministic generator (the data must be the same on every run).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks project ranks with probability proportional to `1 / (rank + 1)` (Zipf, s = 1).
#[derive(Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(projects: usize) -> Self {
        let mut sum = 0.0;
        let cumulative = (0..projects)
            .map(|rank| {
                sum += 1.0 / (rank + 1) as f64;
                sum
            })
            .collect::<Vec<_>>();
        let total = sum;
        Zipf {
            cumulative: cumulative.into_iter().map(|c| c / total).collect(),
        }
    }

    /// A project id.
    pub fn project(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let rank = self.cumulative.partition_point(|&c| c < u);
        FIRST_PROJECT + rank.min(self.cumulative.len() - 1) as u64
    }
}

const EVENTS: [&str; 8] = [
    "job:started",
    "job:completed",
    "job:cancelled",
    "job:failed",
    "spider:deployed",
    "items:scraped",
    "pipeline:queued",
    "schedule:changed",
];
const USERS: [&str; 6] = [
    "jobrunner",
    "alice.smith",
    "deploy-bot",
    "bob",
    "periodic-jobs",
    "carla.gomez@example.com",
];
const SPIDERS: [&str; 5] = [
    "books.toscrape.com",
    "quotes",
    "amazon-products",
    "news-sitemap",
    "jobs-board-eu",
];
const REASONS: [&str; 4] = ["finished", "cancelled", "shutdown", "closespider_timeout"];
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz ";

/// One activity event for `project`, of a length drawn uniformly from `MIN_LEN..=MAX_LEN`:
/// event name, job key and user always; spider, items, close reason, duration sometimes; a
/// free-text note pads it to its length.
pub fn message(rng: &mut Rng, project: u64) -> String {
    let target = MIN_LEN + rng.below((MAX_LEN - MIN_LEN + 1) as u64) as usize;
    let mut m = format!(
        r#"{{"event":"{}","job":"{}/{}/{}","user":"{}""#,
        EVENTS[rng.below(EVENTS.len() as u64) as usize],
        project,
        1 + rng.below(40),
        1 + rng.below(5000),
        USERS[rng.below(USERS.len() as u64) as usize],
    );
    let extras: [(f64, String); 4] = [
        (
            0.5,
            format!(
                r#","spider":"{}""#,
                SPIDERS[rng.below(SPIDERS.len() as u64) as usize]
            ),
        ),
        (0.4, format!(r#","items":{}"#, rng.below(100_000))),
        (
            0.3,
            format!(
                r#","close_reason":"{}""#,
                REASONS[rng.below(REASONS.len() as u64) as usize]
            ),
        ),
        (0.3, format!(r#","duration_ms":{}"#, rng.below(10_000_000))),
    ];
    for (p, extra) in extras {
        // `,"note":""}` needs 11 bytes.
        if rng.unit() < p && m.len() + extra.len() + 11 <= target {
            m.push_str(&extra);
        }
    }
    m.push_str(r#","note":""#);
    while m.len() + 2 < target {
        m.push(LETTERS[rng.below(LETTERS.len() as u64) as usize] as char);
    }
    m.push_str("\"}");
    m
}

/// The whole data set, in append order.
pub struct Data {
    /// `(project, message)` in the order they are appended.
    pub messages: Vec<(u64, String)>,
    /// Per project rank: the indices into `messages` of its messages, oldest first (so the
    /// message with sequence number `s` is at position `s - 1`).
    pub by_project: Vec<Vec<u32>>,
    /// The write-weighted project picker.
    pub zipf: Zipf,
}

impl Data {
    pub fn generate(n: usize, projects: usize, seed: u64) -> Self {
        let zipf = Zipf::new(projects);
        let mut rng = Rng::new(seed);
        let mut by_project = vec![Vec::new(); projects];
        let messages = (0..n)
            .map(|i| {
                let p = zipf.project(&mut rng);
                by_project[(p - FIRST_PROJECT) as usize].push(i as u32);
                (p, message(&mut rng, p))
            })
            .collect();
        Data {
            messages,
            by_project,
            zipf,
        }
    }

    /// Total message bytes (without any separator).
    pub fn bytes(&self) -> u64 {
        self.messages.iter().map(|(_, m)| m.len() as u64).sum()
    }

    /// The project ids that hold messages.
    pub fn projects(&self) -> Vec<u64> {
        (0..self.by_project.len())
            .filter(|&r| !self.by_project[r].is_empty())
            .map(|r| FIRST_PROJECT + r as u64)
            .collect()
    }

    /// The message indices of `project`, oldest first.
    pub fn of(&self, project: u64) -> &[u32] {
        &self.by_project[(project - FIRST_PROJECT) as usize]
    }

    /// The largest project.
    pub fn largest(&self) -> u64 {
        let rank = (0..self.by_project.len())
            .max_by_key(|&r| self.by_project[r].len())
            .unwrap_or(0);
        FIRST_PROJECT + rank as u64
    }

    /// The expected answer of a merged query, as `(project, seq)` newest first: each project's
    /// newest `pcount`, merged by append order, at most `count`.
    pub fn merged(&self, projects: &[u64], pcount: usize, count: usize) -> Vec<(u64, u64)> {
        let mut all: Vec<(u32, u64, u64)> = Vec::new();
        for &p in projects {
            let idx = self.of(p);
            for (k, &i) in idx.iter().enumerate().rev().take(pcount) {
                all.push((i, p, k as u64 + 1));
            }
        }
        all.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
        all.truncate(count);
        all.into_iter().map(|(_, p, s)| (p, s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_json_objects_of_the_promised_lengths() {
        let data = Data::generate(20_000, 1000, 7);
        for (_, m) in &data.messages {
            assert!(
                (MIN_LEN..=MAX_LEN).contains(&m.len()),
                "{} bytes: {m}",
                m.len()
            );
            let v: serde_json::Value = serde_json::from_str(m).unwrap();
            assert!(v.is_object());
        }
    }

    #[test]
    fn projects_are_skewed() {
        let data = Data::generate(100_000, 1000, 7);
        let largest = data.of(data.largest()).len();
        let smallest = data.by_project.iter().map(Vec::len).min().unwrap();
        assert!(largest > 10_000, "{largest}");
        assert!(smallest < 100, "{smallest}");
    }

    #[test]
    fn generation_is_deterministic() {
        let a = Data::generate(1000, 1000, 7);
        let b = Data::generate(1000, 1000, 7);
        assert_eq!(a.messages, b.messages);
    }
}
