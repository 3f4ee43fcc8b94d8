//! Checking a store's files record by record, as `activitylog verify` does: every log frame
//! (and that its message is UTF-8, as reads check), every index entry, every segment header,
//! and that sequence numbers run on without gaps from one segment to the next.
//!
//! Verification reads the files with plain reads (no maps, no locks), so it works beside a
//! running writer. The writer may be in the middle of an append: an unfinished tail on the
//! newest segment (or damage past what its index vouches for, which a batch being copied may
//! look like) is read again after a pause before it is reported.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fsio;
use crate::index::{self, ENTRY_BYTES, INDEX_HEADER_BYTES};
use crate::project::FIRST_SEQ;
use crate::record::{
    decode_frame_with, frame_len, SegmentHeader, FRAME_HEADER_BYTES, LOG_HEADER_BYTES,
};
use crate::scan::{cut_unfinished, scan, Scan};
use crate::segment;
use crate::store;

/// One thing wrong, with the file and byte range it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// The bytes concerned.
    pub range: Range<u64>,
    /// What is wrong, as a plain sentence.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes {}..{}: {}",
            self.path.display(),
            self.range.start,
            self.range.end,
            self.what
        )
    }
}

/// What a verification covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified {
    /// Projects checked.
    pub projects: u64,
    /// Segments checked.
    pub segments: u64,
    /// Records that decoded.
    pub records: u64,
    /// Bytes read (logs and indexes).
    pub bytes: u64,
    /// Problems found.
    pub problems: u64,
}

/// How long to wait before reading an unfinished tail of the newest segment again.
const SETTLE: Duration = Duration::from_millis(200);

/// Verifies the store in `dir`: the given projects, or all. Calls `on_problem` for each problem
/// and `on_bytes` with the size of each file as it is read (for progress).
pub fn verify(
    dir: &Path,
    projects: Option<&[u64]>,
    mut on_problem: impl FnMut(&Problem),
    mut on_bytes: impl FnMut(u64),
) -> Result<Verified> {
    store::read_meta(dir)?;
    let mut out = Verified::default();
    let clock = dir.join(store::CLOCK_FILE);
    if let Some((range, what)) = crate::clock::check_file(&clock)? {
        out.problems += 1;
        on_problem(&Problem {
            path: clock,
            range,
            what,
        });
    }
    // Projects in a spare directory whose rename a crash lost (the next writable open renames
    // them into place) are verified where they are.
    let mut orphans = std::collections::HashMap::new();
    for crate::spares::Adopted {
        project: id,
        spare,
        beside,
    } in crate::spares::adopted(&dir.join(store::PROJECTS_DIR))?
    {
        if !beside {
            orphans.insert(id, spare);
        } else if projects.is_none_or(|ids| ids.contains(&id)) {
            // Never read, never removed: only by hand can that be sorted out.
            out.problems += 1;
            on_problem(&Problem {
                path: spare,
                range: 0..0,
                what: format!(
                    "a spare directory holding a first log of project {id}, which has a \
                     directory too: it is left in place and never read"
                ),
            });
        }
    }
    let ids = match projects {
        Some(ids) => ids.to_vec(),
        None => {
            let mut ids = store::list_projects(dir)?;
            ids.extend(orphans.keys());
            ids.sort_unstable();
            ids.dedup();
            ids
        }
    };
    for id in ids {
        let mut pdir = store::project_dir_in(dir, id);
        if !pdir.is_dir() {
            match orphans.remove(&id) {
                Some(orphan) => pdir = orphan,
                None => continue,
            }
        }
        out.projects += 1;
        // A new project's first log, not yet synced, is read under its temporary name.
        let logs = segment::list_logs(&pdir)?;
        #[cfg(test)]
        crate::project::tests::hook(crate::project::tests::Point::Listed, &pdir);
        let new_log = logs.new_log;
        let seqs = if new_log { vec![FIRST_SEQ] } else { logs.seqs };
        let mut expected_first: Option<u64> = None;
        for (k, &first) in seqs.iter().enumerate() {
            let newest = k + 1 == seqs.len();
            let mut report = |p: Problem| {
                out.problems += 1;
                on_problem(&p);
            };
            let mut log_path = if new_log {
                segment::new_log_path(&pdir)
            } else {
                segment::log_path(&pdir, first)
            };
            let idx_path = segment::index_path(&pdir, first);
            // The index before the log: beside a writer, entries written after the log was read
            // would vouch for records past its end (damage, where the writer was appending).
            // Retention removes a segment's log before its index: one whose index is gone and
            // whose log then reads lost the index some other way.
            // No more than the largest index (and a byte, for the entries past it to be
            // reported): a huge one costs no more memory than that.
            let idx = match fsio::read_at_most(&idx_path, index::MAX_INDEX_FILE_BYTES) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("reading", &idx_path, e)),
            };
            let Some(mut log) = read_log(&pdir, &mut log_path)? else {
                // Removed since it was listed, by retention or (a new log) a writable open's
                // recovery: nothing of it is missing. Nor, then, are the records before the
                // next segment.
                expected_first = None;
                continue;
            };
            out.segments += 1;
            on_bytes(log.len() as u64);
            out.bytes += log.len() as u64;
            let header = match SegmentHeader::decode(&log) {
                Ok(h) => h,
                Err(e) => {
                    // Recovery removes a new log whose header is damaged, unless its index
                    // vouches for records; one of another version is refused, as any log is.
                    let new = log_path == segment::new_log_path(&pdir)
                        && !segment::index_vouches(&idx_path).unwrap_or(true);
                    let what = if new && !matches!(e, crate::record::DecodeError::Version(_)) {
                        format!(
                            "bad segment header: {e}; a new project's first log that was never \
                             synced (a power cut before the project's first sync): the next \
                             writable open removes it"
                        )
                    } else {
                        format!("bad segment header: {e}; the segment cannot be read")
                    };
                    report(Problem {
                        path: log_path.clone(),
                        range: 0..LOG_HEADER_BYTES.min(log.len()) as u64,
                        what,
                    });
                    expected_first = None;
                    continue;
                }
            };
            if header.first_seq == 0 {
                report(Problem {
                    path: log_path.clone(),
                    range: 16..24,
                    what: "the header says the segment starts at 0 (sequence numbers start at 1); \
                           the segment cannot be read"
                        .to_string(),
                });
            }
            if header.project != id {
                report(Problem {
                    path: log_path.clone(),
                    range: 32..40,
                    what: format!(
                        "the header says the segment belongs to project {}, its directory says \
                         {id}",
                        header.project
                    ),
                });
            }
            if header.first_seq != first {
                report(Problem {
                    path: log_path.clone(),
                    range: 16..24,
                    what: format!(
                        "the header says the segment starts at {}, its name says {first}",
                        header.first_seq
                    ),
                });
            }
            if let Some(expected) = expected_first {
                if first > expected {
                    report(Problem {
                        path: log_path.clone(),
                        range: 0..0,
                        what: format!(
                            "records {expected}..{} are missing before this segment",
                            first - 1
                        ),
                    });
                }
            }
            let mut s = scan(&log[LOG_HEADER_BYTES..], LOG_HEADER_BYTES as u64, 0);
            // A batch being copied into a writer's room may show its end before its start: a
            // broken frame with valid ones after it, which reads as damage. Only records past
            // those the index vouches for can be in flight.
            let in_flight = || {
                s.damaged
                    .last()
                    .is_some_and(|r| r.start > last_indexed(idx.as_deref()))
            };
            if newest
                && (s.torn(log_end(&log, &s, newest)) || s.open_batch.is_some() || in_flight())
            {
                // Perhaps a writer is mid-append: look again once it had time to finish.
                crate::project::wait_for_writer(SETTLE);
                #[cfg(test)]
                crate::project::tests::hook(crate::project::tests::Point::Settling, &log_path);
                let Some(again) = read_log(&pdir, &mut log_path)? else {
                    expected_first = None;
                    continue;
                };
                log = again;
                s = scan(&log[LOG_HEADER_BYTES..], LOG_HEADER_BYTES as u64, 0);
            }
            out.records += s.entries.iter().filter(|&&e| e != index::LOST).count() as u64;
            if let Some(idx) = &idx {
                on_bytes(idx.len() as u64);
                out.bytes += idx.len() as u64;
            }
            let vouched = check_log(
                &log,
                &s,
                idx.as_deref(),
                (first, newest),
                (&log_path, &idx_path),
                &mut report,
            )
            .vouched;
            // A damaged header may name a first record near `u64::MAX`: then no segment follows.
            expected_first = first.checked_add((s.entries.len() + vouched) as u64);
        }
    }
    Ok(out)
}

/// The offset of the last record an index file vouches for (its last entry not lost), 0 for
/// none or an index that does not read.
fn last_indexed(idx: Option<&[u8]>) -> u64 {
    let Some(entries) = idx.and_then(|b| index::entries_of(b).ok()) else {
        return 0;
    };
    (0..entries.len() / ENTRY_BYTES)
        .rev()
        .map(|i| index::entry(entries, i))
        .find(|&e| e != index::LOST)
        .map_or(0, u64::from)
}

/// What [`check_log`] found of one segment.
pub(crate) struct LogChecked {
    /// Records past the scan's last good one that the index vouches for.
    pub(crate) vouched: usize,
    /// Where the log ends once a writable open has recovered it (for the newest segment: where
    /// it cuts a torn tail, or the room's zeros).
    pub(crate) kept_end: u64,
}

/// Checks one segment's log (scanned as `s`) and index (`None` when missing), whose first record
/// is `first`, the project's newest segment when `newest`; reports what is wrong.
pub(crate) fn check_log(
    log: &[u8],
    s: &Scan,
    idx: Option<&[u8]>,
    (first, newest): (u64, bool),
    (log_path, idx_path): (&Path, &Path),
    report: &mut impl FnMut(Problem),
) -> LogChecked {
    let end = log_end(log, s, newest);
    // Records past the last good one that the index vouches for (synced) are damage,
    // which the next writable open keeps, not a torn tail it cuts.
    // And the records it vouches for, when it agrees with the log (`floor`): an
    // unfinished batch that starts among them is not cut, as recovery does not.
    let (vouched, floor) = match idx.map(index::entries_of) {
        Some(Ok(e)) if newest => {
            let mut e = index::decode_entries(e);
            // As recovery does: entries past the log's end go first.
            index::drop_past_end(&mut e, log.len() as u64);
            if index::check_offsets(&e, log.len() as u64).is_ok() {
                let agrees = crate::scan::agrees(&e, &s.entries);
                (
                    crate::scan::vouched_past(&e, &s.entries, s.good_end),
                    if agrees { e.len() } else { 0 },
                )
            } else {
                (0, 0)
            }
        }
        _ => (0, 0),
    };
    // (Damage may have zeroed them: they run to the end of the file all the same.) And
    // zeros after an unfinished batch that is not cut are the room, as after any record.
    let end = if vouched > 0 {
        log.len() as u64
    } else if s.open_batch.is_some_and(|(j, _)| j < floor)
        && log
            .get(s.good_end as usize..)
            .is_some_and(crate::scan::is_zero)
    {
        s.good_end
    } else {
        end
    };
    let cut = log_problems(
        log,
        s,
        end,
        newest,
        (first, vouched, floor),
        log_path,
        report,
    );
    text_problems(log, s, first, log_path, report);
    let tail_cut = vouched > 0 || s.torn(end) || s.open_batch.is_some();
    index_problems(idx, s, newest, tail_cut, idx_path, report);
    LogChecked {
        vouched,
        kept_end: cut.unwrap_or(end),
    }
}

/// Reads a log. A new project's first log ([`segment::new_log_path`]) that is gone was named
/// by its writer meanwhile, and is read under its name (`path` then says so) — or removed by
/// a writable open's recovery, or is being replaced: `None`. Any other log that is gone was
/// listed a moment ago: retention removed it since (`None`).
fn read_log(pdir: &Path, path: &mut PathBuf) -> Result<Option<Vec<u8>>> {
    let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    // Record offsets are 32-bit: a longer log is no segment (and is not read past that).
    let read = |path: &Path| {
        let bytes = fsio::read_at_most(path, u64::from(u32::MAX))?;
        if bytes.len() as u64 > u64::from(u32::MAX) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the log is larger than 4 GiB, which no segment is",
            ));
        }
        Ok(bytes)
    };
    match read(path) {
        Err(e) if not_found(&e) && *path == segment::new_log_path(pdir) => {
            let named = segment::log_path(pdir, FIRST_SEQ);
            match read(&named) {
                Err(e) if not_found(&e) => Ok(None),
                read => {
                    *path = named;
                    read.map(Some).map_err(|e| Error::io("reading", path, e))
                }
            }
        }
        Err(e) if not_found(&e) => Ok(None),
        read => read.map(Some).map_err(|e| Error::io("reading", path, e)),
    }
}

/// Where the log ends for checking: its length, or — for the newest segment — its last whole
/// record when only zeros follow it (the room a running writer makes ahead of its active log,
/// which it cuts when it closes, as the next writable open does after a crash).
fn log_end(log: &[u8], s: &Scan, newest: bool) -> u64 {
    let zeros = log
        .get(s.good_end as usize..)
        .is_some_and(crate::scan::is_zero);
    if newest && s.open_batch.is_none() && zeros {
        s.good_end
    } else {
        log.len() as u64
    }
}

/// Damage, torn tails and unfinished batches of one log, whose first record is `first`, whose
/// index vouches for `vouched` records past the scan's last good one, and for its first
/// `floor` records (an unfinished batch that starts among them is not cut). `s` is the scan
/// of `log`. Returns where the log is cut, if it ends in a tail that is not whole.
fn log_problems(
    log: &[u8],
    s: &Scan,
    end: u64,
    newest: bool,
    (first, vouched, floor): (u64, usize, usize),
    path: &Path,
    report: &mut impl FnMut(Problem),
) -> Option<u64> {
    for range in &s.damaged {
        report(Problem {
            path: path.to_path_buf(),
            range: range.clone(),
            what: "damaged records (the records around them are intact)".to_string(),
        });
    }
    if vouched > 0 {
        let from = first.saturating_add(s.entries.len() as u64);
        let records = match vouched {
            1 => format!("record {from} does"),
            n => format!("records {from}..={} do", from.saturating_add(n as u64 - 1)),
        };
        report(Problem {
            path: path.to_path_buf(),
            range: s.good_end..end,
            what: format!(
                "{records} not read, though the index vouches for them (they were synced): \
                 damage, which reads report"
            ),
        });
        return None;
    }
    let open_batch = s.open_batch.filter(|&(j, _)| j >= floor);
    let (cut, what) = match (open_batch, s.torn(end)) {
        (Some((j, start)), _) if newest => {
            // Where the next writable open cuts: damage just before the batch, and a batch
            // before that damage which never finished, go with it.
            let mut kept = s.entries[..j].to_vec();
            let header = |at: u32| {
                let at = at as usize;
                log.get(at..at + FRAME_HEADER_BYTES)
                    .and_then(|h| h.try_into().ok())
                    .ok_or(())
            };
            match cut_unfinished(&mut kept, floor, start, header) {
                Ok(cut) if cut < start => (
                    cut,
                    "an unfinished batch, and before it damage or the start of another batch \
                     that never finished",
                ),
                _ => (start, "an unfinished batch"),
            }
        }
        (Some((_, start)), _) => (start, "an unfinished batch"),
        (None, true) => (s.good_end, "bytes that are not a whole record"),
        (None, false) => return None,
    };
    let what = if newest {
        format!("the segment ends in {what} (a torn tail: the next writable open cuts it)")
    } else {
        format!("the sealed segment ends in {what}")
    };
    report(Problem {
        path: path.to_path_buf(),
        range: cut..end,
        what,
    });
    Some(cut)
}

/// Records whose frame is whole but whose message is not UTF-8 (reads report them as damage).
fn text_problems(
    log: &[u8],
    s: &Scan,
    first_seq: u64,
    path: &Path,
    report: &mut impl FnMut(Problem),
) {
    for (i, &entry) in s.entries.iter().enumerate() {
        if entry == index::LOST {
            continue;
        }
        // The scan found a whole frame here.
        let Ok(frame) = decode_frame_with(log, entry as usize, false) else {
            continue;
        };
        if segment::message_text(frame.payload).is_none() {
            let start = u64::from(entry);
            report(Problem {
                path: path.to_path_buf(),
                range: start..start + frame_len(frame.payload.len()) as u64,
                what: format!(
                    "record {}: its checksum holds but its message is not UTF-8",
                    first_seq.saturating_add(i as u64)
                ),
            });
        }
    }
}

/// Whether the index file agrees with what the log holds. The newest segment's index may lag
/// its log (it is written in batches) but must not disagree with it. Entries for records the
/// log lost to damage, or for a tail already reported as torn, are not held against it.
fn index_problems(
    idx: Option<&[u8]>,
    s: &Scan,
    newest: bool,
    tail_cut: bool,
    path: &Path,
    report: &mut impl FnMut(Problem),
) {
    let Some(idx) = idx else {
        report(Problem {
            path: path.to_path_buf(),
            range: 0..0,
            what: "the index file is missing (an open rebuilds it)".to_string(),
        });
        return;
    };
    let entries = match index::entries_of(idx) {
        Ok(e) => e,
        Err(e) => {
            report(Problem {
                path: path.to_path_buf(),
                range: 0..INDEX_HEADER_BYTES.min(idx.len()) as u64,
                what: format!("bad index header: {e} (an open rebuilds it)"),
            });
            return;
        }
    };
    let whole = entries.len() / ENTRY_BYTES;
    if !entries.len().is_multiple_of(ENTRY_BYTES) {
        let at = (INDEX_HEADER_BYTES + whole * ENTRY_BYTES) as u64;
        report(Problem {
            path: path.to_path_buf(),
            range: at..idx.len() as u64,
            what: "the index ends in part of an entry (an open rebuilds it)".to_string(),
        });
    }
    let expected = &s.entries;
    let mismatch = (0..whole.min(expected.len()))
        .find(|&i| expected[i] != index::LOST && index::entry(entries, i) != expected[i]);
    let problem = match mismatch {
        Some(i) => Some((i, format!("index entry {i} disagrees with the log"))),
        None if whole > expected.len() && !tail_cut => Some((
            expected.len(),
            format!(
                "the index has {whole} entries for {} records",
                expected.len()
            ),
        )),
        None if whole < expected.len() && !newest => Some((
            whole,
            format!(
                "the index has {whole} entries for {} records",
                expected.len()
            ),
        )),
        None => None,
    };
    if let Some((i, what)) = problem {
        let at = (INDEX_HEADER_BYTES + i * ENTRY_BYTES) as u64;
        // The open of a newest segment checks its index's shape and reads from its last entry
        // only: an entry before it that points elsewhere in the log stands.
        let rebuilt = if newest && mismatch.is_some_and(|m| m + 1 < whole) {
            "an open trusts it, if its last entry holds, and reads of that record report \
             damage until it is rebuilt, as removing the index file of a closed store does"
        } else {
            "an open rebuilds it"
        };
        report(Problem {
            path: path.to_path_buf(),
            range: at..idx.len() as u64,
            what: format!("{what} ({rebuilt})"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_frame, Frame};
    use std::fs;

    /// Verifies a store of 40 segments while the writer's retention removes all but the newest
    /// few after the `after`-th file read (as a server's may, beside `activitylog verify`): a
    /// segment removed meanwhile is neither an error nor a problem.
    fn verify_while_retention_removes(after: u64) -> (Verified, Vec<String>) {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::Options::new()
            .segment_bytes(4096)
            .open(tmp.path())
            .unwrap();
        let pad = "x".repeat(90);
        for i in 0..1200 {
            store
                .append(1, [format!("{{\"i\":{i},\"pad\":\"{pad}\"}}")])
                .unwrap();
        }
        let mut reads = 0;
        let mut store = Some(store);
        let mut problems = Vec::new();
        let verified = verify(
            tmp.path(),
            None,
            |p| problems.push(p.to_string()),
            |_| {
                reads += 1;
                if reads == after {
                    let r = crate::Retention::new().max_messages(50);
                    let store = store.take().unwrap();
                    assert!(store.apply_retention(&r).unwrap().segments > 30);
                }
            },
        )
        .unwrap();
        (verified, problems)
    }

    /// Retention beside a verification: segments gone before verify reached them, and a
    /// segment whose log was read and whose index was then gone, are passed over.
    #[test]
    fn segments_removed_by_retention_while_verify_reads_are_no_problem() {
        // After the first log: the segments after it are gone when verify reaches them.
        assert_eq!(verify_while_retention_removes(1).1, Vec::<String>::new());
        // After a log, before its index: both are gone by the time the index is read.
        assert_eq!(verify_while_retention_removes(3).1, Vec::<String>::new());
    }

    /// Found by fuzzing (`open_and_recover`): a segment whose header (checksum intact) names a
    /// first record near `u64::MAX` made verify overflow computing where the next one starts.
    #[test]
    fn a_segment_at_the_end_of_the_sequence_numbers_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        drop(crate::Store::open(tmp.path()).unwrap());
        let pdir = store::project_dir_in(tmp.path(), 7);
        fs::create_dir_all(&pdir).unwrap();
        let first = u64::MAX - 1;
        let mut log = SegmentHeader {
            first_seq: first,
            base_stamp: 1,
            project: 7,
        }
        .encode()
        .to_vec();
        for seq_delta in 0..2 {
            let frame = Frame {
                seq_delta,
                stamp_delta: 0,
                continues: false,
                payload: b"{}",
            };
            encode_frame(&mut log, &frame);
        }
        fs::write(segment::log_path(&pdir, first), &log).unwrap();
        let verified = verify(tmp.path(), None, |_| {}, |_| {}).unwrap();
        assert_eq!(verified.records, 2);
    }

    /// `verify` beside a writer copying a batch into its room, the copy having stored the
    /// batch's end but not yet its start: what reads as damage in the newest segment is read
    /// again, whole, and is no problem.
    #[test]
    fn a_batch_being_copied_is_read_again() {
        use crate::project::tests::{set_hook, two_batches, Point};
        let tmp = tempfile::tempdir().unwrap();
        let (_writer, log, whole, b_at) = two_batches(tmp.path());
        let mut copying = whole.clone();
        copying[b_at..b_at + FRAME_HEADER_BYTES].fill(0);
        fs::write(&log, &copying).unwrap();
        set_hook(Some(Box::new(move |point, path: &Path| {
            if point == Point::Settling {
                fs::write(path, &whole).unwrap();
            }
        })));
        let mut problems = Vec::new();
        let verified = verify(tmp.path(), None, |p| problems.push(p.to_string()), |_| {});
        set_hook(None);
        let verified = verified.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((verified.records, verified.problems), (6, 0));
    }

    /// `verify` beside a writer that applies retention: segments removed after the listing
    /// were removed on purpose, not lost; they are skipped, and what remains is checked, with
    /// no problem and no error.
    #[test]
    fn segments_retention_removes_while_verify_runs_are_skipped() {
        use crate::project::tests::set_hook;
        let tmp = tempfile::tempdir().unwrap();
        let (writer, mut append) = crate::project::tests::small_segment_writer(tmp.path());
        for _ in 0..8 {
            append(&writer);
        }
        let pdir = store::project_dir_in(tmp.path(), 1);
        let listed = segment::list(&pdir).unwrap();
        assert!(listed.len() > 2, "{listed:?}");
        // Every segment listed goes, the newest once the writer rolled past it.
        crate::project::tests::retain_all_listed_at_first_listing(
            writer.clone(),
            append,
            pdir,
            listed,
        );
        let mut problems = Vec::new();
        let verified = verify(tmp.path(), None, |p| problems.push(p.to_string()), |_| {});
        set_hook(None);
        let verified = verified.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((verified.projects, verified.problems), (1, 0));
    }
}
