//! A record whose checksum holds but whose message is not UTF-8 (a hostile or badly repaired
//! file) is corruption: reading it yields one typed error naming the file and the record's
//! offset, never the bytes, and every other record reads. A message that is valid UTF-8 but not
//! ASCII reads back as it is. Both in a sealed segment and in the active one; `verify` reports
//! the same two records.

mod common;

use std::fs;

use activitylog::{verify, Error};
use common::{frames_of, log_path, open_read_only, open_small, read_items, scratch, segments};

const P: u64 = 4;

/// Rewrites two bytes of the payload of frame `k` of segment `first_seq` and fixes its CRC.
fn rewrite(dir: &std::path::Path, first_seq: u64, k: usize, with: [u8; 2]) -> usize {
    let frame = frames_of(dir, P, first_seq)[k].clone();
    let path = log_path(dir, P, first_seq);
    let mut log = fs::read(&path).unwrap();
    // Inside the padding string of the message (`hinted` pads with ASCII letters).
    let at = frame.payload.end - 4;
    assert!(log[at].is_ascii_alphanumeric() && log[at + 1].is_ascii_alphanumeric());
    log[at..at + 2].copy_from_slice(&with);
    let crc = crc32fast::hash(&log[frame.start + 4..frame.payload.end]);
    log[frame.start..frame.start + 4].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, log).unwrap();
    frame.start
}

#[test]
fn a_message_that_is_not_utf8_under_a_good_checksum_is_reported_where_it_is() {
    let dir = scratch();
    let mut all = Vec::new();
    {
        let store = open_small(dir.path());
        let mut n = 0;
        while segments(dir.path(), P).len() < 3 {
            n += 1;
            let m = common::hinted(n, 40 + (n as usize * 13) % 90);
            store.append(P, [&m]).unwrap();
            all.push(m);
        }
        for _ in 0..4 {
            n += 1;
            let m = common::hinted(n, 50);
            store.append(P, [&m]).unwrap();
            all.push(m);
        }
    }
    let segs = segments(dir.path(), P);
    let (sealed, active) = (segs[0], *segs.last().unwrap());
    // Record 2 of the first (sealed) segment: not UTF-8. Record 1 of the active one: not
    // UTF-8 either. Record 0 of the active one: "é", valid and not ASCII.
    let bad_sealed = rewrite(dir.path(), sealed, 2, [0xFF, b'a']);
    let bad_active = rewrite(dir.path(), active, 1, [0xC3, 0x28]);
    rewrite(dir.path(), active, 0, [0xC3, 0xA9]);
    let first_active = usize::try_from(active).unwrap();
    let expected_e = {
        let m = &all[first_active - 1];
        let at = m.len() - 4;
        format!("{}é{}", &m[..at], &m[at + 2..])
    };

    let mut problems = Vec::new();
    verify(dir.path(), None, |p| problems.push(p.clone()), |_| {}).unwrap();
    let found: Vec<_> = problems
        .iter()
        .map(|p| (p.path.clone(), p.range.start, p.what.contains("not UTF-8")))
        .collect();
    assert_eq!(
        found,
        [
            (log_path(dir.path(), P, sealed), bad_sealed as u64, true),
            (log_path(dir.path(), P, active), bad_active as u64, true),
        ],
        "{problems:?}"
    );

    for store in [open_read_only(dir.path()), open_small(dir.path())] {
        let items = read_items(&store, P);
        assert_eq!(items.len(), all.len(), "one item per record, newest first");
        let mut errors = Vec::new();
        for (k, item) in items.iter().enumerate() {
            let seq = all.len() - k;
            match item {
                Ok(m) => {
                    assert_eq!(m.seq(), seq as u64);
                    let want = if seq == first_active {
                        expected_e.as_str()
                    } else {
                        all[seq - 1].as_str()
                    };
                    assert_eq!(m.json(), want, "seq {seq}");
                }
                Err(Error::Corrupt {
                    path,
                    offset,
                    reason,
                }) => {
                    assert!(reason.contains("not UTF-8"), "{reason}");
                    errors.push((seq, path.clone(), *offset));
                }
                Err(e) => panic!("seq {seq}: {e}"),
            }
        }
        let sealed_seq = usize::try_from(sealed).unwrap() + 2;
        assert_eq!(
            errors,
            [
                (
                    first_active + 1,
                    log_path(dir.path(), P, active),
                    bad_active as u64
                ),
                (
                    sealed_seq,
                    log_path(dir.path(), P, sealed),
                    bad_sealed as u64
                ),
            ]
        );
    }
}
