//! The store's stamp clock: strictly increasing microseconds, across projects and restarts.
//!
//! Every append call takes one *stamp*: `max(wall clock in µs, previous stamp + 1)`. Stamps are
//! unique within a store, so they order appends across projects even within one millisecond.
//! To stay increasing across a restart — even when the wall clock has stepped back — the clock
//! persists a *reservation*: a value every stamp issued so far is below. Opening starts from
//! `max(now, reservation)`. The reservation is pushed forward by [`RESERVATION_US`] (and synced)
//! whenever stamps come within half of it, so the file is written about once every 30 seconds.
//!
//! `CLOCK` file: a 16-byte header (magic `ALOGCLCK`, `u32` format version, `u32` zero), then two
//! 16-byte slots, each `u64` reservation + `u32` CRC-32 of those 8 bytes + `u32` zero. The valid
//! slot with the larger reservation wins; writes alternate slots, so a torn write never loses the
//! previous reservation.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::fsio;
use crate::record::{read_u32, read_u64, FORMAT_VERSION, MAX_BASE_STAMP};
use crate::segment;

/// How far ahead of issued stamps the persisted reservation runs: 60 s.
pub(crate) const RESERVATION_US: u64 = 60_000_000;
const SLOT_BYTES: usize = 16;
const HEADER_BYTES: usize = 16;
const CLOCK_MAGIC: [u8; 8] = *b"ALOGCLCK";

/// The wall clock in µs since the Unix epoch (0 before it).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct State {
    last: u64,
    reserved: u64,
    /// Which slot the next reservation is written to.
    next_slot: u64,
}

/// The stamp source of a writable store.
pub(crate) struct Clock {
    path: PathBuf,
    file: File,
    state: Mutex<State>,
}

/// What is wrong with the clock file at `path`, for `verify`: `None` if it is sound (or absent,
/// which a writable open repairs by starting a new clock).
pub(crate) fn check_file(path: &Path) -> Result<Option<(std::ops::Range<u64>, String)>> {
    // What `Clock::open` reads: the header and both slots.
    let buf = match fsio::read_at_most(path, (HEADER_BYTES + 2 * SLOT_BYTES) as u64) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", path, e)),
    };
    const REFUSED: &str = "writable opens refuse the store until the file is deleted (stamps \
                           then restart from the wall clock)";
    if buf.len() < HEADER_BYTES || buf[0..8] != CLOCK_MAGIC {
        return Ok(Some((
            0..HEADER_BYTES.min(buf.len()) as u64,
            format!("not an activitylog CLOCK file; {REFUSED}"),
        )));
    }
    if read_u32(&buf, 8) != FORMAT_VERSION {
        return Ok(Some((
            8..12,
            format!("unknown format version {}; {REFUSED}", read_u32(&buf, 8)),
        )));
    }
    let slot_ok = |i: usize| {
        let at = HEADER_BYTES + i * SLOT_BYTES;
        buf.get(at..at + SLOT_BYTES)
            .is_some_and(|s| read_u32(s, 8) == crc32fast::hash(&s[0..8]))
    };
    if buf.len() > HEADER_BYTES && !slot_ok(0) && !slot_ok(1) {
        return Ok(Some((
            HEADER_BYTES as u64..buf.len() as u64,
            "neither stamp reservation is intact; stamps restart from the wall clock".to_owned(),
        )));
    }
    for i in 0..2 {
        let at = HEADER_BYTES + i * SLOT_BYTES;
        if slot_ok(i) && read_u64(&buf, at) > MAX_BASE_STAMP {
            return Ok(Some((
                at as u64..(at + 8) as u64,
                format!("{}; {REFUSED}", past_the_last_stamp(read_u64(&buf, at))),
            )));
        }
    }
    Ok(None)
}

/// `by` µs after `stamp`, but never past [`MAX_BASE_STAMP`]: reservations stay at or below the
/// last stamp issued, so that only a damaged or hostile file holds one past it. (A reservation
/// of [`MAX_BASE_STAMP`] itself vouches for stamps up to and including it; the next is refused.)
fn ahead(stamp: u64, by: u64) -> u64 {
    stamp.saturating_add(by).min(MAX_BASE_STAMP)
}

/// What is wrong with a stamp past [`MAX_BASE_STAMP`].
fn past_the_last_stamp(stamp: u64) -> String {
    format!(
        "stamp {stamp} µs is past {MAX_BASE_STAMP} µs after the epoch, the last a segment can \
         start at"
    )
}

impl Clock {
    /// Opens (or creates) the clock file. Stamps are reserved ahead by the first [`next`](Self::next).
    pub(crate) fn open(path: &Path) -> Result<Clock> {
        let empty = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        if empty {
            // Created whole (synced, renamed into place, directory synced), so that a power
            // cut can never leave a clock file without its header.
            let mut header = [0u8; HEADER_BYTES];
            header[0..8].copy_from_slice(&CLOCK_MAGIC);
            header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            segment::write_atomically(path, &header)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("opening", path, e))?;
        let mut buf = [0u8; HEADER_BYTES + 2 * SLOT_BYTES];
        let n = file
            .read_at(&mut buf, 0)
            .map_err(|e| Error::io("reading", path, e))?;
        if n < HEADER_BYTES || buf[0..8] != CLOCK_MAGIC {
            return Err(Error::corrupt(path, 0, "not an activitylog CLOCK file"));
        } else if read_u32(&buf, 8) != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: read_u32(&buf, 8),
            });
        }
        let slot = |i: usize| -> Option<u64> {
            let at = HEADER_BYTES + i * SLOT_BYTES;
            let s = buf.get(at..at + SLOT_BYTES)?;
            if n < at + SLOT_BYTES {
                return None;
            }
            let v = read_u64(s, 0);
            (read_u32(s, 8) == crc32fast::hash(&s[0..8])).then_some(v)
        };
        let (a, b) = (slot(0), slot(1));
        let (persisted, next_slot) = match (a, b) {
            (Some(a), Some(b)) if a >= b => (a, 1),
            (Some(_), Some(b)) => (b, 0),
            (Some(a), None) => (a, 1),
            (None, Some(b)) => (b, 0),
            (None, None) => (0, 0),
        };
        // Only a damaged or hostile file (checksums intact) holds one: stamps would pass the
        // last a segment can take, and a segment started there would not open again.
        if persisted > MAX_BASE_STAMP {
            let at = HEADER_BYTES as u64 + (next_slot ^ 1) * SLOT_BYTES as u64;
            return Err(Error::corrupt(
                path,
                at,
                format!(
                    "{}; delete the file to restart stamps from the wall clock",
                    past_the_last_stamp(persisted)
                ),
            ));
        }
        // Nothing is written yet: stamps restart above `persisted`, which is at or above the
        // reservation on disk, so the first `next` reserves (and syncs) before it issues one.
        // Opening a store to read from it costs no fsync here.
        Ok(Clock {
            path: path.to_path_buf(),
            file,
            state: Mutex::new(State {
                last: persisted.max(now_us()),
                reserved: persisted,
                next_slot,
            }),
        })
    }

    /// The next stamp: above every stamp issued before, in this process or an earlier one.
    pub(crate) fn next(&self) -> Result<u64> {
        // Inside `without_blocking`, neither waits for a reservation another thread is syncing
        // nor makes one (refused before anything changed).
        let mut s = crate::blocking::lock(&self.state)?;
        let stamp = now_us().max(s.last.saturating_add(1));
        if stamp > MAX_BASE_STAMP {
            return Err(self.past_the_end(stamp));
        }
        if ahead(stamp, RESERVATION_US / 2) > s.reserved {
            crate::blocking::check()?;
            self.reserve(&mut s, ahead(stamp, RESERVATION_US))?;
        }
        s.last = stamp;
        Ok(stamp)
    }

    /// Makes sure a later stamp is at least `floor` (used when a project's log already holds
    /// stamps ahead of the clock, e.g. after an import with explicit times).
    pub(crate) fn observe(&self, floor: u64) -> Result<()> {
        if floor > MAX_BASE_STAMP {
            return Err(self.past_the_end(floor));
        }
        let mut s = self.state.lock();
        if floor > s.last {
            s.last = floor;
            if ahead(floor, RESERVATION_US / 2) > s.reserved {
                self.reserve(&mut s, ahead(floor, RESERVATION_US))?;
            }
        }
        Ok(())
    }

    /// The error of a stamp past [`MAX_BASE_STAMP`]: never issued, so that no segment starts
    /// where its header cannot say. Only damaged or hostile files (checksums intact) lead here;
    /// a writable open refuses a project whose log does (`Project::open`).
    fn past_the_end(&self, stamp: u64) -> Error {
        Error::corrupt(&self.path, HEADER_BYTES as u64, past_the_last_stamp(stamp))
    }

    fn reserve(&self, s: &mut State, to: u64) -> Result<()> {
        let mut slot = [0u8; SLOT_BYTES];
        slot[0..8].copy_from_slice(&to.to_le_bytes());
        slot[8..12].copy_from_slice(&crc32fast::hash(&to.to_le_bytes()).to_le_bytes());
        fsio::write_at(
            &self.file,
            &slot,
            (HEADER_BYTES as u64) + s.next_slot * SLOT_BYTES as u64,
        )
        .and_then(|()| fsio::sync_data(&self.file))
        .map_err(|e| Error::io("writing", &self.path, e))?;
        s.reserved = to;
        s.next_slot ^= 1;
        Ok(())
    }
}

impl Drop for Clock {
    /// A clean close brings the reservation back to just above the last stamp issued, so that
    /// reopening does not start up to a minute in the future. (After a crash the reservation
    /// stands, and stamps resume at most that far ahead.)
    fn drop(&mut self) {
        let mut s = self.state.lock();
        let to = ahead(s.last, 1);
        if to < s.reserved {
            // Both slots, one after the other: the larger value wins on open, so until the
            // second write lands the old reservation still stands (safe, merely ahead).
            let result = self
                .reserve(&mut s, to)
                .and_then(|()| self.reserve(&mut s, to));
            if let Err(e) = result {
                log::warn!("cannot save the clock on close: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`open_and_recover`): a log whose stamps are near `u64::MAX` (checksums
    /// intact) made the clock overflow when the project was opened. Stamps then saturated at
    /// `u64::MAX`, and a segment started there was acknowledged but did not open again (an
    /// audit): now no stamp past [`MAX_BASE_STAMP`] is observed or issued, and a reservation
    /// past it is refused on open.
    #[test]
    fn no_stamp_goes_past_the_last_a_segment_can_start_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CLOCK");
        let c = Clock::open(&path).unwrap();
        assert!(matches!(
            c.observe(MAX_BASE_STAMP + 1),
            Err(Error::Corrupt { .. })
        ));
        c.observe(MAX_BASE_STAMP - 2).unwrap();
        assert_eq!(c.next().unwrap(), MAX_BASE_STAMP - 1);
        assert_eq!(c.next().unwrap(), MAX_BASE_STAMP);
        assert!(matches!(c.next(), Err(Error::Corrupt { .. })));
        // What this clock reserved is no damage: it reopens, and issues nothing more.
        assert_eq!(check_file(&path).unwrap(), None);
        drop(c);
        let c = Clock::open(&path).unwrap();
        assert!(matches!(c.next(), Err(Error::Corrupt { .. })));
        drop(c);
        // A file holding a reservation past the ceiling (checksum intact) is damage.
        let c = Clock::open(&path).unwrap();
        let mut s = c.state.lock();
        c.reserve(&mut s, MAX_BASE_STAMP + 1).unwrap();
        drop(s);
        std::mem::forget(c);
        assert!(check_file(&path).unwrap().is_some_and(|(range, what)| {
            range.start >= HEADER_BYTES as u64 && what.contains("the last a segment can start at")
        }));
        let Err(Error::Corrupt { offset, .. }) = Clock::open(&path) else {
            panic!("a reservation past the last stamp opens");
        };
        assert!(offset >= HEADER_BYTES as u64);
    }

    /// A crash near the ceiling (found by a review): the reservation this clock wrote, within
    /// it, opens again, and stamps go on above the last one issued.
    #[test]
    fn a_reservation_near_the_ceiling_opens_again_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CLOCK");
        for (below, left) in [(10 * RESERVATION_US, true), (RESERVATION_US / 6, false)] {
            let _ = std::fs::remove_file(&path);
            let c = Clock::open(&path).unwrap();
            c.observe(MAX_BASE_STAMP - below).unwrap();
            let stamp = c.next().unwrap();
            std::mem::forget(c); // a crash: the reservation stands
            assert_eq!(check_file(&path).unwrap(), None);
            let c = Clock::open(&path).unwrap();
            // Stamps resume above the reservation: 60 s ahead, or the ceiling itself, past
            // which none is issued.
            match c.next() {
                Ok(next) => assert!(left && next > stamp, "{next} after {stamp}"),
                Err(e) => assert!(!left, "{e}"),
            }
        }
    }

    /// Inside `without_blocking`, a stamp that needs a reservation (an fsync) is refused and
    /// reserves nothing; one within the reservation is issued.
    #[test]
    fn a_reservation_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CLOCK");
        let c = Clock::open(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let refused = crate::without_blocking(|| c.next());
        assert!(matches!(refused, Err(Error::WouldBlock)), "{refused:?}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "reserved while refused"
        );
        let a = c.next().unwrap();
        let b = crate::without_blocking(|| c.next()).unwrap().unwrap();
        assert!(b > a);
    }

    #[test]
    fn stamps_increase_across_reopen_even_if_the_clock_is_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CLOCK");
        let c = Clock::open(&path).unwrap();
        let a = c.next().unwrap();
        let b = c.next().unwrap();
        assert!(b > a);
        // Pretend a stamp far in the future was issued (as if the wall clock then stepped back).
        c.observe(now_us() + 3_600_000_000).unwrap();
        let far = c.next().unwrap();
        drop(c);
        let c = Clock::open(&path).unwrap();
        assert!(c.next().unwrap() > far);
    }

    #[test]
    fn a_clean_close_does_not_push_time_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CLOCK");
        for _ in 0..5 {
            let c = Clock::open(&path).unwrap();
            let stamp = c.next().unwrap();
            assert!(
                stamp < now_us() + 1_000_000,
                "stamps run ahead of the wall clock"
            );
        }
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CLOCK");
        let c = Clock::open(&path).unwrap();
        let first = c.next().unwrap();
        c.observe(first + 10 * RESERVATION_US).unwrap();
        drop(c);
        // Damage the newest slot; the older reservation must still be honoured.
        let bytes = std::fs::read(&path).unwrap();
        let (a, b) = (HEADER_BYTES, HEADER_BYTES + SLOT_BYTES);
        let newest = if read_u64(&bytes, a) > read_u64(&bytes, b) {
            a
        } else {
            b
        };
        let mut damaged = bytes.clone();
        damaged[newest] ^= 0xff;
        std::fs::write(&path, damaged).unwrap();
        let c = Clock::open(&path).unwrap();
        assert!(c.next().unwrap() > first);
    }
}
