//! The newest-first iterator over one project, and the messages it yields.

use std::fmt;
use std::iter::FusedIterator;
use std::sync::Arc;

use memmap2::Mmap;

use crate::blocking;
use crate::error::{Error, Result};
use crate::index::LOST;
use crate::project::{Snapshot, FIRST_SEQ};
use crate::record::{FRAME_HEADER_BYTES, LOG_HEADER_BYTES};
use crate::segment::{self, decode_at_with, Active, RawRecord, Sealed, PREFETCH_BELOW_BYTES};
use crate::store::Inner;

/// Active-segment entries copied per lock acquisition.
const ENTRY_CHUNK: usize = 256;
/// Entries copied the first time: enough for a page of newest messages, little to copy when a
/// merged query takes a few from each of many projects. Later copies take [`ENTRY_CHUNK`].
const FIRST_ENTRY_CHUNK: usize = 32;
/// First read-window size for the cursors of a merged query when the writer's tail copy holds
/// the bytes: they mostly take a few messages from each of many projects, and this is small
/// enough for the allocator's per-thread cache (glibc's takes up to 1032 bytes; a 2 KiB buffer
/// per cursor was a tenth of a 50-project query in allocator time).
const FEW_TAIL_WINDOW_BYTES: u64 = 1 << 10;
/// Entries copied the first time by such a cursor: about what its first window holds, and a
/// small allocation (glibc keeps any number of those at hand; of 128-byte ones only seven).
const FEW_FIRST_ENTRY_CHUNK: usize = 6;
/// First read-window size for the active segment, from the tail copy or the file: about twenty
/// messages, a page's worth, in one copy (2 KiB then 4 KiB cost 10% more instructions for a
/// page of 20); doubles on each refill up to the maximum.
const MIN_WINDOW_BYTES: u64 = 4 << 10;
const MAX_WINDOW_BYTES: u64 = 1 << 20;
/// Once windows have grown to this size the read is a scan, and the active segment's committed
/// bytes are mapped rather than copied (a copy cost a fifth of a full newest-first scan).
const SCAN_MAP_AFTER_BYTES: u64 = MAX_WINDOW_BYTES;

/// One stored message, as read back.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    project: u64,
    seq: u64,
    stamp: u64,
    json: String,
}

impl Message {
    /// The project the message belongs to.
    pub fn project(&self) -> u64 {
        self.project
    }

    /// Its sequence number within the project (the first message is 1, then gap-free).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its append stamp: µs since the Unix epoch, unique per append call within a store.
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// Its append time in milliseconds since the Unix epoch (the Activity API's `_ts`).
    pub fn timestamp_ms(&self) -> u64 {
        self.stamp / 1000
    }

    /// The message: one compact JSON object, without a newline.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The message as an owned string.
    pub fn into_json(self) -> String {
        self.json
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("project", &self.project)
            .field("seq", &self.seq)
            .field("stamp", &self.stamp)
            .field("json", &self.json)
            .finish()
    }
}

/// A message borrowed from the iterator's buffers: what [`NewestFirst::next_ref`] yields,
/// valid until the iterator moves on. Reading through it copies nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MessageRef<'a> {
    project: u64,
    seq: u64,
    stamp: u64,
    json: &'a str,
}

impl<'a> MessageRef<'a> {
    /// The project the message belongs to.
    pub fn project(&self) -> u64 {
        self.project
    }

    /// Its sequence number within the project.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its append stamp: µs since the Unix epoch.
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// Its append time in milliseconds since the Unix epoch (the Activity API's `_ts`).
    pub fn timestamp_ms(&self) -> u64 {
        self.stamp / 1000
    }

    /// The message: one compact JSON object, without a newline.
    pub fn json(&self) -> &'a str {
        self.json
    }

    /// An owned copy.
    pub fn to_message(&self) -> Message {
        Message {
            project: self.project,
            seq: self.seq,
            stamp: self.stamp,
            json: self.json.to_owned(),
        }
    }
}

/// Where the next message is, once [`NewestFirst::locate`] has brought it into reach.
enum At {
    /// Record `i` of the active segment, at `offset` in the log (inside `window`).
    Active { i: u64, offset: u64 },
    /// Record `i` of the sealed segment in `current`.
    Sealed { i: u64 },
}

/// The segment the iterator is in.
enum Current {
    None,
    Sealed {
        seg: Arc<Sealed>,
        /// One past the last sequence number this segment should hold.
        end_seq: u64,
    },
}

/// Iterates one project's messages newest first.
///
/// Made by [`Store::newest_first`](crate::Store::newest_first). It reads a snapshot taken when
/// it was made: messages appended later are not seen, and it never sees part of a batch. If
/// retention removes the snapshot's older segments meanwhile, the read ends where they begin,
/// without an error (turned oldest first, it reports the gap: [`Error::RemovedWhileRead`]). Cost is
/// proportional to the messages read, whatever the project's size. A damaged record yields one
/// `Err` naming the file and offset, and iteration continues with older messages. It holds the
/// store open until it is dropped, even once every [`Store`](crate::Store) handle is: its lock
/// too, so a writable open of the store meanwhile gets [`Error::Locked`].
pub struct NewestFirst {
    store: Option<Arc<Inner>>,
    project: u64,
    snap: Snapshot,
    /// The sequence number to read next; iteration ends below [`FIRST_SEQ`].
    next: u64,
    current: Current,
    entries: Vec<u32>,
    entries_from: u64,
    window: Vec<u8>,
    /// The active segment's committed bytes, mapped once a read has proven to be a scan (see
    /// [`SCAN_MAP_AFTER_BYTES`]); replaces `window` from then on, starting at offset 0.
    map: Option<Arc<Mmap>>,
    window_start: u64,
    window_size: u64,
    /// The window came from the writer's tail copy: bytes this process encoded, or checked
    /// when it opened the project, whose checksums need no checking again.
    window_own: bool,
    /// Oldest first instead (see [`NewestFirst::oldest_first`]).
    forward: bool,
    /// For an oldest-first read: where it begins. Segments that retention removed before the
    /// read reached anything move it on; one removed after is reported.
    forward_from: u64,
    /// Made for reading a few messages (see [`few`](Self::few)).
    few: bool,
}

impl NewestFirst {
    pub(crate) fn new(store: Arc<Inner>, project: u64, snap: Snapshot) -> Self {
        let next = snap.next_seq.saturating_sub(1);
        // `try_with`: a thread tearing down its thread-locals has no pool left.
        let (window, entries) = SPARE
            .try_with(|s| s.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        NewestFirst {
            store: Some(store),
            project,
            snap,
            next,
            current: Current::None,
            entries,
            entries_from: 0,
            window,
            map: None,
            window_start: 0,
            window_size: MIN_WINDOW_BYTES,
            window_own: false,
            forward: false,
            forward_from: 0,
            few: false,
        }
    }

    pub(crate) fn empty(project: u64) -> Self {
        NewestFirst {
            store: None,
            project,
            snap: Snapshot {
                sealed: Arc::new(Vec::new()),
                active: None,
                active_len: 0,
                next_seq: FIRST_SEQ,
                last_stamp: 0,
            },
            next: 0,
            current: Current::None,
            entries: Vec::new(),
            entries_from: 0,
            window: Vec::new(),
            map: None,
            window_start: 0,
            window_size: MIN_WINDOW_BYTES,
            window_own: false,
            forward: false,
            forward_from: 0,
            few: false,
        }
    }

    /// Turns the iterator around: the same snapshot, oldest message first (for exports and
    /// `tail`). Combine with [`from`](Self::from) to start at a sequence number.
    pub fn oldest_first(mut self) -> Self {
        self.forward = true;
        self.next = self
            .snap
            .sealed
            .first()
            .copied()
            .or_else(|| self.snap.active.as_ref().map(|a| a.header.first_seq))
            .unwrap_or(self.snap.next_seq);
        self.forward_from = self.next;
        self
    }

    /// For an oldest-first iterator: starts at the first message whose sequence number is at
    /// least `seq`.
    pub fn from(mut self, seq: u64) -> Self {
        if self.forward {
            self.next = self.next.max(seq);
            self.forward_from = self.next;
        }
        self
    }

    /// Starts with a smaller window and fewer entries: for readers that take a few messages
    /// (a merged query's cursors).
    pub(crate) fn few(mut self) -> Self {
        self.few = true;
        self
    }

    /// The sequence number after `seq` in the iteration's direction.
    fn after(&self, seq: u64) -> u64 {
        if self.forward {
            seq + 1
        } else {
            seq - 1
        }
    }

    /// Continues with the newest message whose sequence number is below `seq`, for paging: pass
    /// the last `seq` of the previous page. It only ever narrows: a bound at or above where the
    /// iteration stands changes nothing (it never goes back to newer messages). An oldest-first
    /// iterator ignores it.
    pub fn before(mut self, seq: u64) -> Self {
        if !self.forward {
            self.next = self.next.min(seq.saturating_sub(1));
        }
        self
    }

    /// The project being read.
    pub fn project(&self) -> u64 {
        self.project
    }

    /// One past the newest sequence number in the snapshot (the next one an append will take).
    pub fn next_seq(&self) -> u64 {
        self.snap.next_seq
    }

    /// The stamp of the newest message in the snapshot, 0 for an empty project.
    pub fn newest_stamp(&self) -> u64 {
        self.snap.last_stamp
    }

    /// The message of a decoded record. Always inlined: made a call, it cost a full scan 14%
    /// (a harness scanning 270,000 messages newest first, best of 40 scans, three alternating
    /// runs: 11.0–11.5 → 9.5–9.8 ms).
    #[inline(always)]
    fn message<'a>(
        &self,
        rec: RawRecord<'a>,
        path: &std::path::Path,
        offset: u64,
    ) -> Result<MessageRef<'a>> {
        let json = rec
            .text()
            .ok_or_else(|| Error::corrupt(path, offset, "a message is not UTF-8"))?;
        Ok(MessageRef {
            project: self.project,
            seq: rec.seq,
            stamp: rec.stamp,
            json,
        })
    }

    /// The next message, borrowed: like [`Iterator::next`] without copying the message out of
    /// the segment's memory map or the read buffer. For scans that look at each message once.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = activitylog::Store::open(dir.path())?;
    /// # store.append(1, [r#"{"a":1}"#, r#"{"a":22}"#])?;
    /// let mut it = store.newest_first(1)?;
    /// let mut bytes = 0;
    /// while let Some(m) = it.next_ref() {
    ///     bytes += m?.json().len();
    /// }
    /// assert_eq!(bytes, 15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::should_implement_trait)]
    pub fn next_ref(&mut self) -> Option<Result<MessageRef<'_>>> {
        if let Some(at) = self.at_hand() {
            return Some(self.decode(at));
        }
        let at = match self.locate()? {
            Ok(at) => at,
            Err(e) => {
                if matches!(e, Error::WouldBlock) {
                    // Refused inside `without_blocking`: the read ends there, so that a caller
                    // going on past errors does not ask again for ever.
                    self.next = 0;
                }
                return Some(Err(e));
            }
        };
        Some(self.decode(at))
    }

    /// Decodes the record that [`locate`](Self::locate) brought into reach.
    fn decode(&self, at: At) -> Result<MessageRef<'_>> {
        match at {
            At::Active { i, offset } => {
                let active = self
                    .snap
                    .active
                    .as_ref()
                    .expect("located in the active segment");
                let rec = decode_at_with(
                    self.bytes(),
                    self.window_start,
                    offset,
                    &active.header,
                    i,
                    &active.path,
                    !self.window_own,
                )?;
                self.message(rec, &active.path, offset)
            }
            At::Sealed { i } => {
                let Current::Sealed { seg, .. } = &self.current else {
                    unreachable!("located in a sealed segment")
                };
                let rec = seg.record(i)?;
                self.message(rec, seg.path(), seg.offset(i))
            }
        }
    }

    /// The common cases of [`locate`](Self::locate), without its general bookkeeping: the next
    /// record of the sealed segment being read, or newest first in the active segment with the
    /// record's entry, the next one and its bytes already at hand. `None` sends the caller down
    /// the general path.
    #[inline]
    fn at_hand(&mut self) -> Option<At> {
        let seq = self.next;
        if seq < FIRST_SEQ || seq >= self.snap.next_seq {
            return None;
        }
        if let Current::Sealed { seg, end_seq } = &self.current {
            // Either direction: the segment being read is mapped whole.
            let first = seg.header().first_seq;
            if first <= seq && seq < *end_seq {
                let i = seq - first;
                if i >= seg.count() || seg.is_lost(i) {
                    return None;
                }
                if !self.forward {
                    seg.prefetch_below(i);
                }
                self.next = self.after(seq);
                return Some(At::Sealed { i });
            }
        }
        let active = self.snap.active.as_deref()?;
        if self.forward || seq < active.header.first_seq {
            return None;
        }
        let i = seq - active.header.first_seq;
        let k = usize::try_from(i.checked_sub(self.entries_from)?).ok()?;
        let offset = *self.entries.get(k)?;
        let end = if seq + 1 == self.snap.next_seq {
            self.snap.active_len
        } else {
            u64::from(*self.entries.get(k + 1)?)
        };
        if offset == LOST || end == u64::from(LOST) {
            return None;
        }
        let offset = u64::from(offset);
        if offset < self.window_start || end > self.window_start + self.bytes().len() as u64 {
            return None;
        }
        if let Some(map) = &self.map {
            segment::prefetch(map, (offset as usize).wrapping_sub(PREFETCH_BELOW_BYTES));
        }
        self.next = seq - 1;
        Some(At::Active { i, offset })
    }

    /// Moves to the next message: reads what it needs into reach and advances `next`.
    fn locate(&mut self) -> Option<Result<At>> {
        let seq = self.next;
        if seq < FIRST_SEQ || seq >= self.snap.next_seq {
            return None;
        }
        if let Some(active) = self.snap.active.take() {
            // Taken out and put back rather than cloned: no reference count traffic per message.
            let at = (seq >= active.header.first_seq).then(|| self.read_active(&active, seq));
            self.snap.active = Some(active);
            if at.is_some() {
                return at;
            }
        }
        self.read_sealed(seq)
    }

    fn read_active(&mut self, active: &Arc<Active>, seq: u64) -> Result<At> {
        if self.map.is_some() {
            // A scan's map, whose pages may have to be read in.
            blocking::check()?;
        }
        let first = active.header.first_seq;
        let count = self.snap.next_seq - first;
        let i = seq - first;
        self.next = self.after(seq);
        // Make sure entries i and (if committed) i + 1 are at hand, and a chunk in the
        // direction of travel.
        let want_to = (i + 2).min(count);
        if i < self.entries_from || want_to > self.entries_from + self.entries.len() as u64 {
            let chunk = if self.entries.is_empty() {
                if self.few {
                    FEW_FIRST_ENTRY_CHUNK
                } else {
                    FIRST_ENTRY_CHUNK
                }
            } else {
                ENTRY_CHUNK
            } as u64;
            let (from, to) = if self.forward {
                (i, (i + chunk).min(count).max(want_to))
            } else {
                ((i + 1).saturating_sub(chunk), want_to)
            };
            active.copy_entries(from as usize, to as usize, &mut self.entries);
            self.entries_from = from;
        }
        let entry = |j: u64| self.entries[(j - self.entries_from) as usize];
        let offset = entry(i);
        if offset == LOST {
            // Report the whole run of lost records once and continue past it.
            let (range, lo, hi) = active.lost_run(i, count, self.snap.active_len)?;
            let (lo, hi) = if self.forward { (i, hi) } else { (lo, i) };
            self.next = if self.forward {
                first + hi + 1
            } else {
                (first + lo).saturating_sub(1)
            };
            return Err(segment::lost_error(
                &active.path,
                range,
                first + lo,
                first + hi,
            ));
        }
        let offset = u64::from(offset);
        let end = if i + 1 < count && entry(i + 1) != LOST {
            u64::from(entry(i + 1))
        } else if i + 1 == count {
            self.snap.active_len
        } else {
            // The next record is lost: learn this one's length from its header.
            let mut head = [0u8; FRAME_HEADER_BYTES];
            active.read_exact_at(&mut head, offset)?;
            offset + crate::record::frame_len_by_header(&head)
        };
        if offset < self.window_start || end > self.window_start + self.bytes().len() as u64 {
            // A mapped scan lands here only for a record whose damaged length reaches past the
            // committed bytes: it goes back to windows, whose offsets the map does not share.
            self.map = None;
            if self.window_size >= SCAN_MAP_AFTER_BYTES && end <= self.snap.active_len {
                // A scan: map the committed bytes once instead of copying them window by window.
                // If mapping fails, reading goes on with windows.
                if let Ok(map) = active.map(self.snap.active_len) {
                    self.map = Some(map);
                    self.window = Vec::new();
                    self.window_start = 0;
                    self.window_own = false;
                    return Ok(At::Active { i, offset });
                }
            }
            if self.few
                && self.window.is_empty()
                && active.tail_start() <= end.saturating_sub(self.window_size)
            {
                self.window_size = FEW_TAIL_WINDOW_BYTES;
            }
            let (start, end) = if self.forward {
                (
                    offset,
                    (offset + self.window_size)
                        .min(self.snap.active_len)
                        .max(end),
                )
            } else {
                let start = end
                    .saturating_sub(self.window_size)
                    .min(offset)
                    .max(LOG_HEADER_BYTES as u64);
                (start, end)
            };
            (self.window_start, self.window_own) =
                active.read_window(&mut self.window, start, offset, end)?;
            blocking::spend(self.window.len())?;
            self.window_size = (self.window_size * 2).min(MAX_WINDOW_BYTES);
        }
        Ok(At::Active { i, offset })
    }

    /// The active segment's bytes at hand, from file offset `window_start`.
    fn bytes(&self) -> &[u8] {
        match &self.map {
            // A shared map may reach past this snapshot's committed bytes.
            Some(map) => &map[..(self.snap.active_len as usize).min(map.len())],
            None => &self.window,
        }
    }

    /// The first sequence number of the active segment (the end of the sealed ones).
    fn active_first(&self) -> u64 {
        self.snap
            .active
            .as_ref()
            .map_or(self.snap.next_seq, |a| a.header.first_seq)
    }

    /// Positions `current` on the sealed segment holding `seq`.
    fn sealed_for(&mut self, seq: u64) -> Result<Option<(Arc<Sealed>, u64)>> {
        if let Current::Sealed { seg, end_seq } = &self.current {
            if seg.header().first_seq <= seq && seq < *end_seq {
                return Ok(Some((seg.clone(), *end_seq)));
            }
        }
        let sealed = &self.snap.sealed;
        let pos = sealed.partition_point(|&first| first <= seq);
        if pos == 0 {
            return Ok(None);
        }
        let first = sealed[pos - 1];
        let end_seq = sealed
            .get(pos)
            .copied()
            .unwrap_or_else(|| self.active_first());
        let store = self
            .store
            .as_ref()
            .expect("a non-empty iterator has a store");
        let seg = store.sealed(self.project, first)?;
        self.current = Current::Sealed {
            seg: seg.clone(),
            end_seq,
        };
        Ok(Some((seg, end_seq)))
    }

    fn read_sealed(&mut self, seq: u64) -> Option<Result<At>> {
        // Through a map, whose pages may have to be read in.
        if let Err(e) = blocking::check() {
            return Some(Err(e));
        }
        let (seg, end) = match self.sealed_for(seq) {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.next = if self.forward { self.snap.next_seq } else { 0 };
                return None;
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // Retention deleted the segment after this snapshot was taken: the history
                // before the next segment is gone on purpose, not damaged. Read newest first,
                // that ends the read. Oldest first, the read goes on with the next segment:
                // from there if it had not reached anything yet, else past a gap it reports.
                let sealed = &self.snap.sealed;
                let pos = sealed.partition_point(|&first| first <= seq);
                if self.forward {
                    let mut resume = pos;
                    // The segments after this one that retention removed too, passed in one
                    // step (one error for the whole gap; and no recursion per segment, which
                    // overflowed the stack past a few thousand removed segments).
                    if let Some(store) = &self.store {
                        let dir = store.project_dir(self.project);
                        while sealed
                            .get(resume)
                            .is_some_and(|&first| !segment::log_path(&dir, first).exists())
                        {
                            resume += 1;
                        }
                    }
                    self.next = sealed
                        .get(resume)
                        .copied()
                        .unwrap_or_else(|| self.active_first());
                    if seq > self.forward_from {
                        return Some(Err(Error::RemovedWhileRead {
                            project: self.project,
                            first: seq,
                            next: self.next,
                        }));
                    }
                    self.forward_from = self.next;
                    return self.locate();
                }
                self.next = 0;
                return None;
            }
            Err(e) => {
                // Skip the segment that cannot be opened; the others may still read.
                let sealed = &self.snap.sealed;
                let pos = sealed.partition_point(|&first| first <= seq);
                self.next = if self.forward {
                    sealed
                        .get(pos)
                        .copied()
                        .unwrap_or_else(|| self.active_first())
                } else {
                    sealed[pos - 1].saturating_sub(1)
                };
                return Some(Err(e));
            }
        };
        let first = seg.header().first_seq;
        let i = seq - first;
        if i >= seg.count() {
            self.next = if self.forward {
                end
            } else {
                (first + seg.count()).saturating_sub(1)
            };
            return Some(Err(Error::corrupt(
                seg.path(),
                seg.records_end(),
                format!(
                    "records {}..={seq} are missing from the end of the segment",
                    first + seg.count()
                ),
            )));
        }
        if seg.is_lost(i) {
            // The whole run of lost records is reported once, in the reading direction.
            let mut j = i;
            if self.forward {
                while j + 1 < seg.count() && seg.is_lost(j + 1) {
                    j += 1;
                }
                self.next = first + j + 1;
            } else {
                while j > 0 && seg.is_lost(j - 1) {
                    j -= 1;
                }
                self.next = (first + j).saturating_sub(1);
            }
            return Some(Err(seg.lost_run(i, j)));
        }
        self.next = self.after(seq);
        Some(Ok(At::Sealed { i }))
    }
}

impl Iterator for NewestFirst {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        self.next_ref().map(|m| m.map(|m| m.to_message()))
    }
}

impl FusedIterator for NewestFirst {}

/// Buffer pairs (window, entries) kept per thread for the next iterators: a merged query opens
/// dozens of cursors, and each one's buffers would otherwise go through the allocator's slow
/// paths (glibc keeps only seven free buffers of a size per thread; with them a 50-project
/// query took 5% longer); a page of newest messages saves an allocation and a free of its 4 KiB
/// window. At most 64 × 8 KiB per thread.
const SPARE_BUFFERS: usize = 64;
/// Buffers bigger than this (a cursor that read on) are freed rather than kept.
const SPARE_MAX_BYTES: usize = 4 << 10;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<(Vec<u8>, Vec<u32>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for NewestFirst {
    fn drop(&mut self) {
        // Pairs with nothing allocated (an empty project's iterator, a mapped scan's) would only
        // take the place of useful ones.
        if self.window.capacity() > SPARE_MAX_BYTES
            || self.entries.capacity() * 4 > SPARE_MAX_BYTES
            || self.window.capacity() + self.entries.capacity() == 0
        {
            return;
        }
        let mut window = std::mem::take(&mut self.window);
        let mut entries = std::mem::take(&mut self.entries);
        window.clear();
        entries.clear();
        // `try_with`: a thread being torn down has no pool left.
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_BUFFERS {
                s.push((window, entries));
            }
        });
    }
}
