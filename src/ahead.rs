//! Room made ahead on a background thread, so that an appender rarely makes its own.
//!
//! A `Written` append copies into [`Room`]: zeros written past its project's log and mapped.
//! Making room costs a write of 64–320 KiB of zeros, an `mmap`, and a page fault on the first
//! copy into each of its pages — a few hundred microseconds, paid by the append that runs out,
//! about once per 64–320 KiB appended. Instead, once a project's room has 64 KiB (or half)
//! left, its writer asks this module's thread for the next room ([`NextRoom::ask`]): zeros from
//! the end of the current room to a new end, mapped from the current committed end (so that
//! the new map holds every append that could follow), its pages faulted in writable
//! (`MADV_POPULATE_WRITE`). The writer goes on copying into its current room meanwhile; when
//! that runs out, it takes the next one ([`NextRoom::take`]), waiting if the thread is still
//! making it, and makes its own if the thread has not started it. A room the writer made itself
//! (a segment's first) is handed to the thread to fault its pages in ([`NextRoom::populate`]).
//!
//! The thread writes only past the current room's end, where no append writes before the writer
//! has taken the next room; the writer takes it back (cancelling or waiting,
//! [`NextRoom::cancel`]) before it cuts the log back to its committed end or leaves the
//! segment, so that no zeros land past a cut. One thread per store, started on the first ask,
//! joined when the store is dropped, after its projects closed.
//!
//! Test builds make room on the appending thread for files a `fsio::sim` recorder watches, so
//! that the fault and power-loss suites see their writes in a fixed order.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::segment::{Active, Room};

/// The store's room-making thread (started on first use).
#[derive(Default)]
pub(crate) struct Ahead {
    thread: Mutex<Worker>,
    #[cfg(test)]
    pub(crate) hooks: Arc<tests::Hooks>,
}

#[derive(Default)]
struct Worker {
    queue: Option<(Sender<Arc<NextRoom>>, JoinHandle<()>)>,
    /// The thread could not start, or the store is closing: writers make their own room.
    stopped: bool,
}

impl Ahead {
    /// Hands `next` (whose request is set) to the thread; false if no thread can take it (the
    /// caller then cancels the request).
    fn submit(&self, next: &Arc<NextRoom>) -> bool {
        let mut w = self.thread.lock();
        if w.stopped {
            return false;
        }
        if let Some((tx, _)) = &w.queue {
            return tx.send(next.clone()).is_ok();
        }
        let (tx, rx) = channel::<Arc<NextRoom>>();
        #[cfg(test)]
        let hooks = self.hooks.clone();
        let started = std::thread::Builder::new()
            .name("activitylog-room".into())
            .spawn(move || {
                // Ends when the store stops it (dropping the sender).
                while let Ok(next) = rx.recv() {
                    next.make(
                        #[cfg(test)]
                        &hooks,
                    );
                }
            });
        match started {
            Ok(thread) => {
                let sent = tx.send(next.clone()).is_ok();
                w.queue = Some((tx, thread));
                sent
            }
            Err(e) => {
                log::warn!("cannot start the room-making thread ({e}); appenders make their own");
                w.stopped = true;
                false
            }
        }
    }

    /// Ends the thread once it has made what it was handed (writers have taken or cancelled
    /// every request by then: their projects are closed). Later asks are refused.
    pub(crate) fn stop(&self) {
        let queue = {
            let mut w = self.thread.lock();
            w.stopped = true;
            w.queue.take()
        };
        if let Some((tx, thread)) = queue {
            drop(tx);
            if thread.join().is_err() {
                log::error!("the room-making thread panicked");
            }
        }
    }
}

/// What the thread is asked to do.
enum Request {
    /// Make room over `start..end` of `active`'s log. `start` is the committed end when asked (an
    /// append may start there or later); zeros are written from `zeros_from`, the end of the
    /// writer's current room (zeros already up to there). Weak: a request must not keep the
    /// segment in use, or the project could not be evicted (`Project::active_in_use`).
    Make {
        active: Weak<Active>,
        start: u64,
        zeros_from: u64,
        end: u64,
    },
    /// Fault in the pages of the writer's current room from `from` on (one the writer made
    /// itself).
    Populate { room: Room, from: u64 },
}

enum State {
    Idle,
    Wanted(Request),
    Working,
    Made(Weak<Active>, Result<Room>),
}

/// A project's next room: asked for by its writer, made by the [`Ahead`] thread.
pub(crate) struct NextRoom {
    state: Mutex<State>,
    made: Condvar,
}

impl Default for NextRoom {
    fn default() -> Self {
        NextRoom {
            state: Mutex::new(State::Idle),
            made: Condvar::new(),
        }
    }
}

/// What [`NextRoom::take`] found.
pub(crate) enum Taken {
    /// Nothing made (none asked, or the thread had not started it: it is cancelled).
    Nothing,
    /// The room made, for `active`, or why it could not be.
    Made(Weak<Active>, Result<Room>),
}

impl NextRoom {
    /// Asks `ahead`'s thread for room over `start..end` of `active`'s log, writing zeros from
    /// `zeros_from` (the end of the writer's current room); whether it took the request. Only
    /// with no request outstanding ([`take`](Self::take) or [`cancel`](Self::cancel) first).
    pub(crate) fn ask(
        self: &Arc<Self>,
        ahead: &Ahead,
        active: &Arc<Active>,
        start: u64,
        zeros_from: u64,
        end: u64,
    ) -> bool {
        #[cfg(test)]
        if crate::fsio::sim::recorder_for_file(&active.file).is_some() {
            return false;
        }
        self.submit(
            ahead,
            Request::Make {
                active: Arc::downgrade(active),
                start,
                zeros_from,
                end,
            },
        )
    }

    /// Asks `ahead`'s thread to fault in `room`'s pages from `from` on (see [`Room::populate`]),
    /// while the writer copies into it; whether it took the request. Only with no request
    /// outstanding; [`idle`](Self::idle) once done.
    pub(crate) fn populate(
        self: &Arc<Self>,
        ahead: &Ahead,
        active: &Active,
        room: &Room,
        from: u64,
    ) -> bool {
        #[cfg(test)]
        if crate::fsio::sim::recorder_for_file(&active.file).is_some() {
            return false;
        }
        let _ = active;
        self.submit(
            ahead,
            Request::Populate {
                room: room.share(),
                from,
            },
        )
    }

    fn submit(self: &Arc<Self>, ahead: &Ahead, request: Request) -> bool {
        {
            let mut s = self.state.lock();
            debug_assert!(matches!(*s, State::Idle), "a request made twice");
            *s = State::Wanted(request);
        }
        if ahead.submit(self) {
            return true;
        }
        *self.state.lock() = State::Idle;
        false
    }

    /// Whether the last request is done and nothing is left to take (a populate's end).
    pub(crate) fn idle(&self) -> bool {
        matches!(*self.state.lock(), State::Idle)
    }

    /// Takes the room asked for: waits while the thread makes it, cancels it if the thread
    /// has not started it.
    pub(crate) fn take(&self) -> Taken {
        let mut s = self.state.lock();
        while matches!(*s, State::Working) {
            self.made.wait(&mut s);
        }
        match std::mem::replace(&mut *s, State::Idle) {
            State::Made(active, room) => Taken::Made(active, room),
            State::Idle | State::Wanted(_) | State::Working => Taken::Nothing,
        }
    }

    /// Cancels the room asked for, or waits until it is made and drops it: after this, the
    /// thread writes nothing more for it.
    pub(crate) fn cancel(&self) {
        drop(self.take());
    }

    /// Does what was asked, if it is still wanted (the thread's side).
    fn make(&self, #[cfg(test)] hooks: &tests::Hooks) {
        let request = {
            let mut s = self.state.lock();
            match std::mem::replace(&mut *s, State::Working) {
                State::Wanted(r) => r,
                other => {
                    // Cancelled (or taken) before the thread came to it.
                    *s = other;
                    return;
                }
            }
        };
        #[cfg(test)]
        hooks.working(&request);
        // Should the work panic, the writer waiting for it gets an error, not a wait for ever.
        let done = std::panic::catch_unwind(AssertUnwindSafe(|| match request {
            Request::Make {
                active,
                start,
                zeros_from,
                end,
            } => {
                // Gone only if its segment was left, which takes the request back first.
                let Some(segment) = active.upgrade() else {
                    return State::Idle;
                };
                let room = Room::make(&segment.file, &segment.path, start, zeros_from, end);
                if let Ok(room) = &room {
                    room.populate(zeros_from);
                }
                State::Made(active, room)
            }
            Request::Populate { room, from } => {
                room.populate(from);
                // The writer's room is unmapped only once its copy here is dropped too.
                drop(room);
                State::Idle
            }
        }))
        .unwrap_or_else(|_| {
            log::error!("the room-making thread panicked; appenders make their own room");
            State::Made(
                Weak::new(),
                Err(Error::io(
                    "making room in",
                    std::path::Path::new("a project's log"),
                    std::io::Error::other("the room-making thread panicked"),
                )),
            )
        });
        *self.state.lock() = done;
        self.made.notify_all();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::{Durability, Options, Store};

    /// What tests see of, and set for, a store's thread.
    #[derive(Default)]
    pub(crate) struct Hooks {
        /// How long the thread waits once it has started making a room, before making it.
        pub(crate) delay_ms: AtomicU64,
        /// Rooms the thread started making.
        pub(crate) made: AtomicU64,
        /// Rooms the thread started populating.
        pub(crate) populated: AtomicU64,
    }

    impl Hooks {
        pub(super) fn working(&self, request: &Request) {
            match request {
                Request::Make { .. } => {
                    self.made.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst)));
                }
                Request::Populate { .. } => {
                    self.populated.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn hooks(store: &Store) -> Arc<Hooks> {
        store
            .ahead()
            .expect("room on the test file system")
            .hooks
            .clone()
    }

    fn message(i: usize) -> String {
        format!(
            r#"{{"event":"job:done","i":{i},"pad":"{}"}}"#,
            "x".repeat(150)
        )
    }

    /// The lengths of the files in project `id`'s directory.
    fn lengths(dir: &std::path::Path, id: u64) -> Vec<(String, u64)> {
        let mut out: Vec<_> = std::fs::read_dir(crate::store::project_dir_in(dir, id))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn newest_first(store: &Store, id: u64) -> Vec<String> {
        store
            .newest_first(id)
            .unwrap()
            .map(|m| m.unwrap().into_json())
            .collect()
    }

    /// Appends to project 1 until the thread has started making a room (at most `limit`
    /// messages); the count appended.
    fn append_until_made(store: &Store, hooks: &Hooks, limit: usize) -> usize {
        for i in 0..limit {
            store.append(1, [message(i)]).unwrap();
            if hooks.made.load(Ordering::SeqCst) > 0 {
                return i + 1;
            }
        }
        panic!("no room made ahead in {limit} appends");
    }

    /// A long run of single appends copies into rooms the thread made (and populated), and
    /// reads back whole, before and after a reopen; the log holds no zeros past its messages
    /// once synced.
    #[test]
    fn appends_copy_into_rooms_made_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let n = 12_000; // about 2 MiB: rooms of 64 KiB to 256 KiB
        let want: Vec<String> = (0..n).rev().map(message).collect();
        {
            let store = Options::new()
                .durability(Durability::Written)
                .open(dir.path())
                .unwrap();
            let hooks = hooks(&store);
            for i in 0..n {
                store.append(1, [message(i)]).unwrap();
            }
            assert!(hooks.made.load(Ordering::SeqCst) >= 5, "rooms made ahead");
            assert!(
                hooks.populated.load(Ordering::SeqCst) >= 1,
                "first room populated"
            );
            assert_eq!(newest_first(&store, 1), want);
            store.sync().unwrap();
            let logs = lengths(dir.path(), 1);
            let log = logs
                .iter()
                .find(|(name, _)| name.ends_with(".log"))
                .unwrap();
            let framed: u64 = crate::record::LOG_HEADER_BYTES as u64
                + want
                    .iter()
                    .map(|m| crate::record::frame_len(m.len()) as u64)
                    .sum::<u64>();
            assert_eq!(log.1, framed, "no zeros past the messages after a sync");
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(newest_first(&store, 1), want);
    }

    /// Appends to `project` until the thread has made one more room than before, and gives it
    /// time to finish: the project's writer is left with a room made ahead, not yet taken.
    fn leave_a_room_made_ahead(store: &Store, hooks: &Hooks, project: u64) -> usize {
        let before = hooks.made.load(Ordering::SeqCst);
        for i in 0..10_000 {
            store.append(project, [message(i)]).unwrap();
            if hooks.made.load(Ordering::SeqCst) > before {
                std::thread::sleep(Duration::from_millis(50));
                return i + 1;
            }
        }
        panic!("no room made ahead for project {project}");
    }

    /// A room made ahead and not yet taken does not keep its project open: idle projects with
    /// one are evicted like any other, and the open ones stay within `max_open_projects`.
    #[test]
    fn a_room_made_ahead_does_not_keep_its_project_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .durability(Durability::Written)
            .max_open_projects(2)
            .open(dir.path())
            .unwrap();
        let hooks = hooks(&store);
        let counts: Vec<usize> = (1..=6)
            .map(|p| leave_a_room_made_ahead(&store, &hooks, p))
            .collect();
        for p in 100..140 {
            store.append(p, [message(0)]).unwrap();
        }
        assert!(
            !store.is_open(1),
            "project 1 kept open by its room made ahead"
        );
        let open = store.open_count();
        assert!(open <= 3, "{open} projects open with max_open_projects(2)");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        for (p, n) in (1..=6).zip(counts) {
            assert_eq!(
                newest_first(&store, p),
                (0..n).rev().map(message).collect::<Vec<_>>()
            );
        }
    }

    /// A cut of the log (`Store::sync`) while the thread is making a room waits for it, so no
    /// zeros land past the cut.
    #[test]
    fn a_cut_waits_for_the_room_being_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .durability(Durability::Written)
            .open(dir.path())
            .unwrap();
        let hooks = hooks(&store);
        hooks.delay_ms.store(200, Ordering::SeqCst);
        let n = append_until_made(&store, &hooks, 10_000);
        store.sync().unwrap();
        let after_sync = lengths(dir.path(), 1);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            lengths(dir.path(), 1),
            after_sync,
            "zeros written past the cut"
        );
        hooks.delay_ms.store(0, Ordering::SeqCst);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(newest_first(&store, 1).len(), n);
    }

    /// A batch too big for room, appended while the thread is making the next room past the
    /// current one, is not overwritten by that room's zeros.
    #[test]
    fn a_big_batch_is_not_overwritten_by_the_room_being_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .durability(Durability::Written)
            .open(dir.path())
            .unwrap();
        let hooks = hooks(&store);
        hooks.delay_ms.store(200, Ordering::SeqCst);
        let n = append_until_made(&store, &hooks, 10_000);
        // Over 64 KiB: written with `pwrite`, past the current room's end.
        let batch: Vec<String> = (n..n + 600).map(message).collect();
        store.append(1, &batch).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        hooks.delay_ms.store(0, Ordering::SeqCst);
        let want: Vec<String> = (0..n + 600).rev().map(message).collect();
        assert_eq!(newest_first(&store, 1), want);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(newest_first(&store, 1), want);
    }
}
