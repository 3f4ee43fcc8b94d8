//! Reads and appends kept to memory: [`without_blocking`], for callers on an async runtime's
//! threads.
//!
//! A read of a project's newest messages in the process that writes it usually needs nothing
//! but memory: the project is open, its active segment's index entries are in memory, and the
//! writer keeps a copy of the log's last 16–32 KiB (the tail copy). Such a read takes a few
//! microseconds, less than handing it to a thread that may block (tokio's `spawn_blocking` and
//! the switches it costs were most of the server's time per small GET). Any other read may wait
//! for the disk: opening a project, reading a log through the file, or through a map whose
//! pages may have to be read in.
//!
//! A `Written` append of a small batch to an open project is a copy into memory too: into the
//! room mapped past its log's end. Any other may wait: for another appender of the project, an
//! fsync, a new file or segment, room to be made, or a `pwrite`.
//!
//! A thread-local flag marks a thread inside [`without_blocking`]. Each place where a read would
//! touch a file, or wait for one to be opened, calls [`check`], which under the flag records the
//! miss and fails with [`Error::WouldBlock`]; so does [`spend`] once the scope's reads have
//! copied [`BUDGET_BYTES`], so that a read kept to memory is also short. An append checks
//! before anything changes, so a refused one has stored nothing. Outside the scope both are a
//! load of the flag.

use std::cell::Cell;

use crate::error::{Error, Result};

/// Bytes that the reads inside one [`without_blocking`] may copy out of memory before they
/// give up: a read that needs more is long enough to run where it may block.
pub(crate) const BUDGET_BYTES: usize = 1 << 20;

/// This thread's scope: `None` outside [`without_blocking`].
#[derive(Clone, Copy)]
struct Scope {
    /// Whether a read inside the scope was refused.
    missed: bool,
    /// Bytes the scope's reads may still copy.
    budget: usize,
}

thread_local! {
    static SCOPE: Cell<Option<Scope>> = const { Cell::new(None) };
}

/// Runs `f` with every read and append it makes of this thread's stores kept to memory: a read
/// that would have to wait for the disk (or for another thread opening a project from it) fails
/// with [`Error::WouldBlock`] instead, and so does one that has copied more than about 1 MiB;
/// so does an append that would wait (below).
///
/// For servers on an async runtime: answer a read, or make a small append, at once when the
/// store holds it in memory, and hand it to a thread that may block only when it does not.
///
/// What is kept to memory: [`Store::query`](crate::Store::query),
/// [`Store::newest_first`](crate::Store::newest_first) and
/// [`Store::oldest_first`](crate::Store::oldest_first), and the iterators they return while
/// they are used inside `f` (one exception: an iterator begun outside `f` that already reads a
/// segment through a map goes on through that map inside it, unchecked, and is refused at the
/// next segment; a check of every message read through a map cost a full scan 5%). A read is
/// in memory when its projects are open in this store and
/// its messages lie in each project's tail copy (about the last 16 KiB of its newest segment)
/// in the process that appended them. In practice: the newest pages of the projects this
/// process writes. [`Store::stats`](crate::Store::stats) and
/// [`Store::projects`](crate::Store::projects), which read files, are refused.
///
/// Appends ([`Store::append`](crate::Store::append),
/// [`append_with`](crate::Store::append_with),
/// [`append_json_lines`](crate::Store::append_json_lines)) are kept to memory too: one runs
/// inside `f` when it is a `Written` batch for a project open in this store whose room (the
/// zeros mapped past its log's end, up to 320 KiB) holds it, a copy into the page cache. It is
/// refused, having stored nothing, where it would open or create its project, wait for another
/// appender of the project, fsync (`Sync`, a reservation of stamps, the first write after a
/// clean open), start a segment, make room, or write with `pwrite`. Once it is stored, an
/// append may still write a few KiB of index into the page cache, and hand the project to the
/// background syncer (starting that thread, the first time); what would wait for a sync there
/// is left to a later append. As any write into the page cache, its copy can still wait in the
/// kernel: a page that writeback cleaned faults on the write, and one evicted under memory
/// pressure is read back in. Imports are refused outright: they store batch after batch.
/// [`Store::sync`](crate::Store::sync) and retention are not limited: inside `f` they run, and
/// block, as they would outside.
///
/// Returns `Err(Error::WouldBlock)` if any read or append inside `f` was refused, whatever `f`
/// made of that error (an iterator yields it as an item, and a caller that skipped errors would
/// otherwise have an answer with messages missing); the iterators `f` made are then not to be
/// used further. Otherwise `Ok` with what `f` returned: iterators made inside may go on outside,
/// where their reads block as usual. A refused append stored nothing, but the refusal fails the
/// whole scope: an append that `f` made before it stays stored though its result is dropped.
/// So that a refused scope can simply be run again where it may block, make one append per
/// scope, and make it last.
///
/// Scopes nest: an inner refusal fails the outer scope too.
///
/// ```
/// use activitylog::{without_blocking, Error, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append(7, [r#"{"event":"job:started"}"#])?;
///
/// // The newest messages of a project this process writes are in memory.
/// let newest = without_blocking(|| -> activitylog::Result<Vec<String>> {
///     store.newest_first(7)?.take(20).map(|m| m.map(|m| m.into_json())).collect()
/// })??;
/// assert_eq!(newest, [r#"{"event":"job:started"}"#]);
///
/// // After a reopen the project is not open yet: reading it would open it from disk.
/// drop(store);
/// let store = Store::open(dir.path())?;
/// let refused = without_blocking(|| store.newest_first(7).map(|it| it.count()));
/// assert!(matches!(refused, Err(Error::WouldBlock)));
///
/// // Read where blocking is fine, it opens; its newest messages are in memory again.
/// assert_eq!(store.newest_first(7)?.count(), 1);
/// assert_eq!(without_blocking(|| store.newest_first(7).map(|it| it.count()))??, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn without_blocking<R>(f: impl FnOnce() -> R) -> Result<R> {
    /// Puts back the enclosing scope (a miss inside this one is a miss of it too), also when
    /// `f` panics.
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let inner = SCOPE.get();
            let outer = self.0.map(|mut outer| {
                if let Some(inner) = inner {
                    // The inner scope began with the outer one's budget.
                    outer.missed |= inner.missed;
                    outer.budget = inner.budget;
                }
                outer
            });
            SCOPE.set(outer);
        }
    }
    let outer = SCOPE.get();
    let restore = Restore(outer);
    SCOPE.set(Some(Scope {
        missed: false,
        budget: outer.map_or(BUDGET_BYTES, |o| o.budget),
    }));
    let out = f();
    let missed = SCOPE.get().is_some_and(|s| s.missed);
    drop(restore);
    if missed {
        Err(Error::WouldBlock)
    } else {
        Ok(out)
    }
}

/// Fails with [`Error::WouldBlock`] inside [`without_blocking`]; called where a read is about to
/// touch a file or wait for another thread that does.
#[inline]
pub(crate) fn check() -> Result<()> {
    match SCOPE.get() {
        None => Ok(()),
        Some(scope) => Err(miss(scope)),
    }
}

/// `mutex`'s lock, or inside [`without_blocking`] [`Error::WouldBlock`] if another thread holds
/// it (one that may hold it across an fsync).
#[inline]
pub(crate) fn lock<T>(mutex: &parking_lot::Mutex<T>) -> Result<parking_lot::MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Some(guard) => Ok(guard),
        None => {
            check()?;
            Ok(mutex.lock())
        }
    }
}

/// Whether this thread is inside [`without_blocking`]: for what may not wait there and need
/// not happen now (an append's index write, once its batch is stored), tried rather than
/// waited for.
#[inline]
pub(crate) fn in_scope() -> bool {
    SCOPE.get().is_some()
}

/// Counts `bytes` copied by a read against the scope's budget; fails with
/// [`Error::WouldBlock`] once it is spent. Outside a scope, nothing.
#[inline]
pub(crate) fn spend(bytes: usize) -> Result<()> {
    match SCOPE.get() {
        None => Ok(()),
        Some(scope) if scope.budget >= bytes && !scope.missed => {
            SCOPE.set(Some(Scope {
                budget: scope.budget - bytes,
                ..scope
            }));
            Ok(())
        }
        Some(scope) => Err(miss(scope)),
    }
}

#[cold]
fn miss(scope: Scope) -> Error {
    SCOPE.set(Some(Scope {
        missed: true,
        ..scope
    }));
    Error::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_scope_nothing_is_refused() {
        assert!(check().is_ok());
        assert!(spend(usize::MAX).is_ok());
    }

    #[test]
    fn a_refusal_fails_the_scope_even_when_its_error_was_swallowed() {
        let out = without_blocking(|| {
            let _ = check();
            7
        });
        assert!(matches!(out, Err(Error::WouldBlock)));
        assert!(check().is_ok(), "the flag is cleared when the scope ends");
    }

    #[test]
    fn a_scope_without_refusals_returns_what_its_closure_made() {
        assert_eq!(
            without_blocking(|| spend(100).map(|()| 7))
                .unwrap()
                .unwrap(),
            7
        );
    }

    #[test]
    fn the_budget_is_spent_across_reads_and_then_refused() {
        let out = without_blocking(|| {
            assert!(spend(BUDGET_BYTES - 10).is_ok());
            assert!(spend(10).is_ok());
            assert!(matches!(spend(1), Err(Error::WouldBlock)));
        });
        assert!(matches!(out, Err(Error::WouldBlock)));
    }

    #[test]
    fn a_refusal_in_a_nested_scope_fails_the_outer_one_too() {
        let out = without_blocking(|| {
            let inner = without_blocking(|| check().is_err());
            assert!(matches!(inner, Err(Error::WouldBlock)));
            assert!(spend(1).is_err(), "the outer scope has missed too");
        });
        assert!(matches!(out, Err(Error::WouldBlock)));
    }

    #[test]
    fn a_nested_scope_spends_the_outer_ones_budget() {
        let out = without_blocking(|| {
            without_blocking(|| spend(BUDGET_BYTES).unwrap()).unwrap();
            spend(1).is_err()
        });
        assert!(matches!(out, Err(Error::WouldBlock)));
    }

    #[test]
    fn a_panic_inside_a_scope_ends_it() {
        let caught = std::panic::catch_unwind(|| {
            let _ = without_blocking(|| panic!("in the scope"));
        });
        assert!(caught.is_err());
        assert!(check().is_ok());
    }
}
