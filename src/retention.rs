//! Retention: deleting a project's oldest whole segments by age, size or message count.
//!
//! Only sealed segments are deleted, oldest first; the active segment — which holds the newest
//! messages — never is. A segment's age is judged by the newest message it holds. Limits are
//! maxima: segments are deleted while the project is over the limit (so a project may end a
//! little under it, never over it by more than its active segment).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::segment;
use crate::store::Store;

/// Per-project retention limits. The default keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
    max_messages: Option<u64>,
}

impl Retention {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes segments whose newest message is older than this.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Deletes the oldest segments while a project's files take more than this many bytes
    /// (counted as [`ProjectStats::bytes`](crate::ProjectStats::bytes) counts them: the active
    /// log up to its last record, without the room a running writer keeps ahead of it).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Deletes the oldest segments while a project holds more than this many messages.
    pub fn max_messages(mut self, messages: u64) -> Self {
        self.max_messages = Some(messages);
        self
    }

    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }
}

/// What retention deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// Segments deleted.
    pub segments: u64,
    /// Messages they held.
    pub messages: u64,
    /// Bytes of files deleted.
    pub bytes: u64,
}

/// What retention needs to know of one segment.
struct SegmentFacts {
    first_seq: u64,
    bytes: u64,
    messages: u64,
    newest_stamp: u64,
}

impl Store {
    /// Applies `retention` to every project now. Needs a writable store.
    ///
    /// A project that fails (a sealed segment that does not open, say) does not stop the
    /// others: every project is tried, each failure is logged, and the first is returned.
    /// Calls from several threads run one after the other.
    pub fn apply_retention(&self, retention: &Retention) -> Result<Retained> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let _one_at_a_time = self.inner().retaining.lock();
        let mut total = Retained::default();
        if retention.is_unlimited() {
            return Ok(total);
        }
        let now = crate::clock::now_us();
        let mut first_error = None;
        for id in self.project_ids()? {
            match self.retain_project(id, retention, now) {
                Ok(r) => {
                    total.segments += r.segments;
                    total.messages += r.messages;
                    total.bytes += r.bytes;
                }
                Err(e) => {
                    log::error!("retention of project {id} failed: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    fn retain_project(&self, id: u64, retention: &Retention, now: u64) -> Result<Retained> {
        let Some(project) = self.inner().project(id, false)? else {
            return Ok(Retained::default());
        };
        let snap = project.snapshot();
        let dir = self.project_dir(id);
        let active_first = snap
            .active
            .as_ref()
            .map_or(snap.next_seq, |a| a.header.first_seq);
        let size = |path: std::path::PathBuf| -> Result<u64> {
            match std::fs::metadata(&path) {
                Ok(m) => Ok(m.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(Error::io("reading metadata of", &path, e)),
            }
        };
        let file_bytes = |first: u64| -> Result<u64> {
            Ok(size(segment::log_path(&dir, first))? + size(segment::index_path(&dir, first))?)
        };
        // The active log counts up to its committed end, as `Store::stats` counts it: not the
        // room ahead of it (zeros, cut at close), nor under which name a new log is.
        let mut total_bytes = match &snap.active {
            Some(_) => snap.active_len + size(segment::index_path(&dir, active_first))?,
            None => 0,
        };
        let mut facts = Vec::with_capacity(snap.sealed.len());
        for (k, &first) in snap.sealed.iter().enumerate() {
            let end = snap.sealed.get(k + 1).copied().unwrap_or(active_first);
            let bytes = file_bytes(first)?;
            total_bytes += bytes;
            let seg = self.inner().sealed(id, first)?;
            // The newest message's stamp; if that record is damaged, the next segment's base
            // stamp bounds it from above.
            let newest_stamp = match seg.count().checked_sub(1).map(|i| seg.record(i)) {
                Some(Ok(rec)) => rec.stamp,
                _ => self.base_stamp_of(id, end, &snap)?,
            };
            facts.push(SegmentFacts {
                first_seq: first,
                bytes,
                messages: end - first,
                newest_stamp,
            });
        }
        let mut total_messages =
            snap.next_seq - facts.first().map_or(active_first, |f| f.first_seq);
        // An age past u64 µs saturates (it reaches before the epoch) rather than wrapping.
        let cutoff = retention
            .max_age
            .map(|age| now.saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX)));
        let mut out = Retained::default();
        let mut upto = None;
        for f in &facts {
            let too_old = cutoff.is_some_and(|c| f.newest_stamp < c);
            let too_big = retention.max_bytes.is_some_and(|m| total_bytes > m);
            let too_many = retention.max_messages.is_some_and(|m| total_messages > m);
            if !(too_old || too_big || too_many) {
                break;
            }
            upto = Some(f.first_seq);
            total_bytes -= f.bytes;
            total_messages -= f.messages;
            out.segments += 1;
            out.messages += f.messages;
            out.bytes += f.bytes;
        }
        if let Some(upto) = upto {
            self.inner().before_write()?;
            let removed = project.remove_sealed_upto(upto)?;
            for first in removed {
                self.inner().forget_sealed(id, first);
            }
            log::info!(
                "retention removed {} segments ({} messages, {} bytes) of project {id}",
                out.segments,
                out.messages,
                out.bytes
            );
        }
        Ok(out)
    }

    /// The base stamp of the segment starting at `first` (sealed or active).
    fn base_stamp_of(&self, id: u64, first: u64, snap: &crate::project::Snapshot) -> Result<u64> {
        match &snap.active {
            Some(a) if a.header.first_seq == first => Ok(a.header.base_stamp),
            _ => Ok(self.inner().sealed(id, first)?.header().base_stamp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsio::sim::{Policy, Recorder};
    use crate::{Durability, Options};

    /// Opens (or makes) a store of 4 KiB segments, without spares, at `durability`.
    fn open_small(dir: &std::path::Path, durability: Durability) -> Store {
        Options::new()
            .segment_bytes(4096)
            .spare_projects(0)
            .durability(durability)
            .open(dir)
            .unwrap()
    }

    /// Appends 40 messages of about 900 bytes to project 1, one by one: four to a segment.
    fn append_40(store: &Store) {
        let pad = "x".repeat(900);
        for i in 0..40 {
            store
                .append(1, [format!(r#"{{"i":{i},"p":"{pad}"}}"#)])
                .unwrap();
        }
    }

    /// Project 1's sequence numbers, newest first.
    fn seqs(store: &Store) -> Vec<u64> {
        store
            .newest_first(1)
            .unwrap()
            .map(|m| m.map(|m| m.seq()))
            .collect::<Result<_>>()
            .unwrap()
    }

    /// Retention whose removal fails part way (here the directory sync after its first
    /// segment) must not forget the segments it did not remove: a later retention removing
    /// newer ones would leave a gap on disk, which a reopen reads as damage where there is none.
    #[test]
    fn a_failed_removal_leaves_no_gap_for_a_later_retention() {
        use crate::fsio::sim::FaultKind;
        let tmp = tempfile::tempdir().unwrap();
        let store = open_small(tmp.path(), Durability::Sync);
        append_40(&store);
        let rec = Recorder::register(tmp.path(), false);
        rec.fail(FaultKind::Sync, 1);
        let failed = store.apply_retention(&Retention::new().max_messages(8));
        rec.unregister();
        assert!(failed.is_err(), "{failed:?}");
        store
            .apply_retention(&Retention::new().max_messages(4))
            .unwrap();
        drop(store);
        let seqs = seqs(&open_small(tmp.path(), Durability::Sync));
        assert_eq!(seqs.first(), Some(&40));
        assert!(seqs.windows(2).all(|w| w[1] + 1 == w[0]), "{seqs:?}");
    }

    /// Two threads applying retention at once (a timer and an operator, say) both succeed:
    /// the second does not fail on a segment the first removed after the second had listed it.
    #[test]
    fn retention_applied_from_two_threads_at_once_fails_neither() {
        use crate::project::tests::{set_hook, Point};
        let tmp = tempfile::tempdir().unwrap();
        let store = open_small(tmp.path(), Durability::Written);
        append_40(&store);
        let segments = || segment::list(&tmp.path().join("projects/1")).unwrap().len() as u64;
        let before = segments();
        let limit = Retention::new().max_messages(8);
        // While this thread's retention maps the oldest segment, another thread's runs (given
        // two seconds to finish, so that one waiting for this one does not hold it up).
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let other = store.clone();
        let started = std::sync::Arc::new(parking_lot::Mutex::new(None));
        let slot = started.clone();
        set_hook(Some(Box::new(move |point, _| {
            if point == Point::SealedMapped && slot.lock().is_none() {
                let (other, done_tx) = (other.clone(), done_tx.clone());
                *slot.lock() = Some(std::thread::spawn(move || {
                    let result = other.apply_retention(&limit);
                    let _ = done_tx.send(());
                    result
                }));
                let _ = done_rx.recv_timeout(std::time::Duration::from_secs(2));
            }
        })));
        let here = store.apply_retention(&limit);
        set_hook(None);
        let other = started.lock().take().expect("the other retention ran");
        let (here, there) = (here.unwrap(), other.join().unwrap().unwrap());
        assert_eq!(here.segments + there.segments, before - segments());
        let seqs = seqs(&store);
        assert_eq!(seqs.first(), Some(&40));
        assert!(seqs.len() >= 8, "{seqs:?}");
    }

    /// A power cut while retention removes segments keeps some removals and loses others: the
    /// segments left must still follow each other, so that every message of the project reads
    /// (oldest first, a gap between two segments would read as records missing from the end of
    /// the older one, damage where there is none).
    #[test]
    fn a_power_cut_during_retention_leaves_no_gap_between_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open_small(tmp.path(), Durability::Sync);
        append_40(&store);
        store.sync().unwrap();
        let before = segment::list(&tmp.path().join("projects/1")).unwrap();
        assert!(before.len() > 6, "{before:?}");
        let rec = Recorder::register(tmp.path(), true);
        let retained = store
            .apply_retention(&Retention::new().max_messages(8))
            .unwrap();
        rec.unregister();
        assert!(retained.segments >= 4, "{retained:?}");
        drop(store);
        let points = rec.take_points();
        assert!(!points.is_empty());
        for (k, point) in points.iter().enumerate() {
            for seed in 0..16 {
                let image = tempfile::tempdir().unwrap();
                point
                    .image(Policy::Random(k as u64 * 100 + seed), image.path())
                    .unwrap();
                let store = open_small(image.path(), Durability::Sync);
                let seqs: Vec<u64> = store
                    .newest_first(1)
                    .unwrap()
                    .map(|m| m.map(|m| m.seq()))
                    .collect::<Result<_>>()
                    .unwrap_or_else(|e| panic!("before {}, seed {seed}: {e}", point.before));
                assert_eq!(seqs.first(), Some(&40), "before {}", point.before);
                assert!(
                    seqs.windows(2).all(|w| w[1] + 1 == w[0]),
                    "before {}, seed {seed}: {seqs:?}",
                    point.before
                );
            }
        }
    }
}
