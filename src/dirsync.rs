//! Shared syncs of one directory (the directory of projects): an entry made in it is durable
//! once a sync of the directory that *started after* the entry was made has finished, whoever
//! asked for that sync. So projects created together, or synced one after another by
//! [`Store::sync`](crate::Store::sync), share one sync of the directory of projects instead of
//! making one each.

use std::path::{Path, PathBuf};

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::segment;

/// The syncs of one directory, numbered in the order they start; one runs at a time.
pub(crate) struct DirSync {
    path: PathBuf,
    state: Mutex<State>,
    finished: Condvar,
}

#[derive(Default)]
struct State {
    /// The number of the last sync started.
    started: u64,
    /// The number of the last sync that finished without an error (syncs finish in the order
    /// they start, one at a time).
    done: u64,
    running: bool,
}

/// Taken after an entry was made in the directory: [`DirSync::sync_since`] makes the entry
/// durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark(u64);

impl DirSync {
    pub(crate) fn new(path: PathBuf) -> DirSync {
        DirSync {
            path,
            state: Mutex::new(State::default()),
            finished: Condvar::new(),
        }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A mark for the entries made so far: any sync that starts after this call covers them.
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.state.lock().started)
    }

    /// Returns once a sync of the directory that started after `mark` was taken has finished:
    /// one under way that started later is waited for; one that started earlier is waited for,
    /// and then another is made. If the sync this call makes fails, the error is returned (a
    /// caller waiting for it makes its own).
    pub(crate) fn sync_since(&self, mark: Mark) -> Result<()> {
        let mut s = self.state.lock();
        loop {
            if s.done > mark.0 {
                return Ok(());
            }
            if s.running {
                self.finished.wait(&mut s);
                continue;
            }
            s.running = true;
            s.started += 1;
            let number = s.started;
            drop(s);
            let result = segment::sync_dir(&self.path);
            s = self.state.lock();
            s.running = false;
            if result.is_ok() {
                s.done = number;
            }
            self.finished.notify_all();
            result?;
        }
    }

    /// Syncs the directory (or waits for a sync that started after this call): every entry
    /// made before the call is then durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.sync_since(self.mark())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A mark taken before a sync is covered by it; one taken after it needs another sync.
    #[test]
    fn a_sync_covers_the_marks_taken_before_it_started() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DirSync::new(tmp.path().to_path_buf());
        let (a, b) = (d.mark(), d.mark());
        d.sync_since(a).unwrap();
        assert_eq!(d.state.lock().started, 1);
        // `b` was taken before that sync started: nothing more to do.
        d.sync_since(b).unwrap();
        assert_eq!(d.state.lock().started, 1);
        let c = d.mark();
        d.sync_since(c).unwrap();
        assert_eq!(d.state.lock().started, 2);
        d.sync().unwrap();
        assert_eq!(d.state.lock().started, 3);
    }

    /// Threads asking at once share syncs: never more syncs than callers, and every caller
    /// returns after a sync that started after its mark.
    #[test]
    fn concurrent_callers_share_syncs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Arc::new(DirSync::new(tmp.path().to_path_buf()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let mark = d.mark();
                        d.sync_since(mark).unwrap();
                        assert!(d.state.lock().done > mark.0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = d.state.lock();
        assert!(s.started <= 400 && s.done == s.started && !s.running);
    }

    /// A failed sync is reported to the caller that made it, and counts for no one.
    #[test]
    fn a_failed_sync_covers_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DirSync::new(tmp.path().join("missing"));
        let mark = d.mark();
        assert!(d.sync_since(mark).is_err());
        assert_eq!(d.state.lock().done, 0);
        std::fs::create_dir(tmp.path().join("missing")).unwrap();
        d.sync_since(mark).unwrap();
        assert_eq!(d.state.lock().done, 2);
    }
}
