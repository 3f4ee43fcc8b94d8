//! The multi-project query: a newest-first k-way merge of per-project cursors with a total
//! `count`, a per-project `pcount`, and filters applied before both caps.
//!
//! Order: by stamp, newest first; equal stamps (possible only for imported history) by project
//! id, higher first; then by sequence number, higher first. Stamps are unique per append call
//! within a store, so in normal operation a message appended later always comes first, across
//! projects, within one millisecond, and across restarts.
//!
//! A query answers as of when it started: each project is read up to the newest stamp it had
//! then, even if appends land while the query runs. Imports are the exception: an import keeps
//! its lines' times, raised to no more than the project's newest stamp, so messages it stores
//! while the query runs may share that stamp and show. A read-only store sees appends made
//! since it opened (or was last refreshed) only in projects it opens after them:
//! [`Store::refresh`] for all.
//!
//! Retention that removes a project's older segments while a query (or a newest-first read)
//! runs ends that project's part of the answer there, without an error: newest first, the
//! removed history is simply past the end. (Oldest-first reads report the gap,
//! [`Error::RemovedWhileRead`].)
//!
//! Cost: a binary heap holds one head per open cursor. Projects are opened lazily in order of
//! their newest stamp, and only while that stamp could beat the heap's top, so a query over
//! thousands of projects with a small `count` touches only the projects that can contribute.

use std::collections::BinaryHeap;
use std::iter::FusedIterator;

use crate::error::{Error, Result};
use crate::filter::{Filter, Filters};
use crate::project::Snapshot;
use crate::reader::{Message, NewestFirst};
use crate::store::{Candidates, Store};

/// What to read: which projects, how many messages, which filters.
///
/// ```
/// use activitylog::{Query, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append(1111111, [r#"{"foo":2}"#, r#"{"foo":3}"#, r#"{"foo":4}"#])?;
/// store.append(2222222, [r#"{"bar":1}"#])?;
/// let newest: Vec<String> = store
///     .query(&Query::new().projects([1111111, 2222222]).pcount(1))?
///     .map(|m| m.map(|m| m.into_json()))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(newest, [r#"{"bar":1}"#, r#"{"foo":4}"#]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Query {
    projects: Option<Vec<u64>>,
    count: Option<u64>,
    pcount: Option<u64>,
    filters: Vec<Filter>,
}

impl Query {
    /// All projects, no caps, no filters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads only these projects (duplicates count once; unknown ones contribute nothing).
    /// Default: every project in the store.
    pub fn projects(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        let mut ids: Vec<u64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        self.projects = Some(ids);
        self
    }

    /// At most `n` messages in all. Default: no limit.
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// At most `n` messages from each project. Default: no limit.
    pub fn pcount(mut self, n: u64) -> Self {
        self.pcount = Some(n);
        self
    }

    /// Keeps only messages that match `filter` (several filters: all must match). Filters apply
    /// before `count` and `pcount`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }
}

/// One project's newest-first cursor: filtered, capped at `pcount`, and bounded by the newest
/// stamp the project had when the query started.
struct Cursor {
    it: NewestFirst,
    left: Option<u64>,
    /// Projects are opened lazily, so a cursor may see messages appended after the query began;
    /// they are skipped, or they would come out after older messages already yielded.
    max_stamp: u64,
}

impl Cursor {
    fn next(&mut self, filters: &Filters) -> Option<Result<Message>> {
        if self.left == Some(0) {
            return None;
        }
        loop {
            // Borrowed first: a message skipped by a filter is never copied.
            match self.it.next_ref()? {
                Ok(m) if m.stamp() > self.max_stamp || !filters.pass(m.json()) => continue,
                Ok(m) => {
                    if let Some(left) = &mut self.left {
                        *left -= 1;
                    }
                    return Some(Ok(m.to_message()));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// A cursor's current message in the max-heap: `(stamp, project, seq, cursor)`, so the newest
/// is greatest (cursors are one per project, so keys never tie). Small and compared as integers;
/// the message waits in `Merged::heads[cursor]`.
type Head = (u64, u64, u64, usize);

/// The result of a [`Query`]: messages newest first across projects.
///
/// Made by [`Store::query`]. Memory stays bounded by the number of projects read, whatever
/// `count` is. Errors (a damaged record, an unreadable segment) are yielded in place and the
/// merge continues. A project that does not open at all has no place: its error comes before
/// any message, and the other projects merge after it. It holds the store open (a handle to
/// it) until it is dropped.
pub struct Merged {
    store: Store,
    /// Projects not opened yet, as `(newest stamp, id, slot in snaps)`, sorted so the newest
    /// is last.
    pending: Vec<(u64, u64, u32)>,
    /// Snapshots taken to learn some projects' newest stamps.
    snaps: Vec<Option<Snapshot>>,
    /// Open cursors; a cursor is dropped (its buffers freed) once it is exhausted or capped.
    cursors: Vec<Option<Cursor>>,
    heap: BinaryHeap<Head>,
    /// Each cursor's current message, the one its heap entry stands for.
    heads: Vec<Option<Message>>,
    /// A cursor to advance before anything else (its last pull returned an error).
    retry: Option<usize>,
    /// An error to yield on the next call.
    error: Option<Error>,
    /// The errors of projects that did not open when the query started, yielded first.
    failed: std::vec::IntoIter<Error>,
    left: Option<u64>,
    pcount: Option<u64>,
    filters: Filters,
    /// Projects opened so far (for tests and benchmarks of pruning).
    opened: usize,
}

impl Merged {
    pub(crate) fn new(store: Store, query: &Query, candidates: Candidates) -> Self {
        // Room for the cursors most queries open, allocated once rather than grown step by step.
        let room = candidates.keys.len().min(64);
        Merged {
            store,
            pending: candidates.keys,
            snaps: candidates.snaps,
            cursors: Vec::with_capacity(room),
            heap: BinaryHeap::with_capacity(room),
            heads: Vec::with_capacity(room),
            retry: None,
            error: None,
            failed: candidates.errors.into_iter(),
            left: query.count,
            pcount: query.pcount,
            filters: Filters::new(query.filters.clone()),
            opened: 0,
        }
    }

    /// How many projects the query has opened so far.
    pub fn projects_opened(&self) -> usize {
        self.opened
    }

    /// Pulls the cursor's next message into the heap. An error is returned (and the cursor
    /// retried on the next call).
    fn advance(&mut self, cursor: usize) -> Result<()> {
        let Some(c) = &mut self.cursors[cursor] else {
            return Ok(());
        };
        match c.next(&self.filters) {
            None => {
                self.cursors[cursor] = None;
                Ok(())
            }
            Some(Ok(msg)) => {
                self.heap
                    .push((msg.stamp(), msg.project(), msg.seq(), cursor));
                self.heads[cursor] = Some(msg);
                Ok(())
            }
            Some(Err(e)) => {
                self.retry = Some(cursor);
                Err(e)
            }
        }
    }

    fn open_next_pending(&mut self) -> Result<()> {
        let Some((newest, project, slot)) = self.pending.pop() else {
            return Ok(());
        };
        self.opened += 1;
        let snap = self.snaps.get_mut(slot as usize).and_then(Option::take);
        let it = self.store.newest_first_of(project, snap)?.few();
        self.cursors.push(Some(Cursor {
            it,
            left: self.pcount,
            max_stamp: newest,
        }));
        self.heads.push(None);
        self.advance(self.cursors.len() - 1)
    }
}

impl Iterator for Merged {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        if self.left == Some(0) {
            return None;
        }
        if let Some(e) = self.error.take().or_else(|| self.failed.next()) {
            return Some(Err(e));
        }
        if let Some(cursor) = self.retry.take() {
            if let Err(e) = self.advance(cursor) {
                return Some(Err(e));
            }
        }
        // Open every project whose newest message could come before the current top.
        while let Some(&(newest, project, _)) = self.pending.last() {
            let could_win = self
                .heap
                .peek()
                .is_none_or(|&(stamp, id, _, _)| (newest, project) >= (stamp, id));
            if !could_win {
                break;
            }
            if let Err(e) = self.open_next_pending() {
                return Some(Err(e));
            }
        }
        let (_, _, _, cursor) = self.heap.pop()?;
        let msg = self.heads[cursor]
            .take()
            .expect("every heap entry has its message");
        if let Some(left) = &mut self.left {
            *left -= 1;
        }
        if let Err(e) = self.advance(cursor) {
            // Deliver this message now and the error on the next call.
            self.error = Some(e);
        }
        Some(Ok(msg))
    }
}

impl FusedIterator for Merged {}

impl Store {
    /// Runs a multi-project query: messages newest first across the chosen projects, with caps
    /// and filters. See [`Query`].
    pub fn query(&self, query: &Query) -> Result<Merged> {
        if query.count == Some(0) || query.pcount == Some(0) {
            // Nothing to give: nothing to learn either.
            return Ok(Merged::new(self.clone(), query, Candidates::default()));
        }
        let mut candidates = match &query.projects {
            Some(ids) => self.newest_stamps(ids)?,
            // Every project: the newest-stamp map knows them all, without listing a directory.
            None => self.all_newest_stamps()?,
        };
        // A newest stamp of 0 does not mean "no messages": an import with `"_ts": 0` stamps
        // them so. Every candidate stays; an empty project's cursor yields nothing.
        candidates.keys.sort_unstable();
        Ok(Merged::new(self.clone(), query, candidates))
    }
}
