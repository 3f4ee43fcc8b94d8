//! Random sequences of appends (single messages, batches, rejected batches) to a few projects,
//! reopens and paged newest-first reads, checked step by step against a plain model: a `Vec` of
//! messages per project. Small segments and messages up to ~1500 bytes make segments roll often;
//! limits on open projects and mapped segments below what the test uses make the store close
//! projects and unmap segments between steps.

mod common;

use std::collections::HashMap;

use activitylog::{Error, Options, Store};
use proptest::prelude::*;

const PROJECTS: u64 = 3;

#[derive(Debug, Clone)]
enum Op {
    /// One message passed alone, padded to about `pad` bytes.
    Single { project: u64, pad: usize },
    /// A batch, one pad per message.
    Batch { project: u64, pads: Vec<usize> },
    /// A batch with an invalid message at `bad`: must store nothing.
    Rejected {
        project: u64,
        len: usize,
        bad: usize,
    },
    /// Drop the store and open it again.
    Reopen,
    /// Read newest first, before `before` (a fraction of the project's length, when given),
    /// taking at most `take`.
    Read {
        project: u64,
        before: Option<f64>,
        take: usize,
    },
}

fn pad() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0usize..100, 1 => 100usize..1500]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PROJECTS, pad()).prop_map(|(project, pad)| Op::Single { project, pad }),
        4 => (0..PROJECTS, proptest::collection::vec(pad(), 1..=20))
            .prop_map(|(project, pads)| Op::Batch { project, pads }),
        1 => (0..PROJECTS, 1usize..5, 0usize..5).prop_map(|(project, len, bad)| Op::Rejected {
            project,
            len,
            bad: bad % len,
        }),
        1 => Just(Op::Reopen),
        3 => (0..PROJECTS, proptest::option::of(0.0..=1.2f64), 0usize..40)
            .prop_map(|(project, before, take)| Op::Read { project, before, take }),
    ]
}

/// A message as given (with whitespace) and as stored (compact).
fn message(project: u64, n: u64, pad: usize) -> (String, String) {
    let pad = "z".repeat(pad);
    (
        format!("{{ \"p\" : {project}, \"n\" : {n},\n \"pad\" : \"{pad}\" }}"),
        format!(r#"{{"p":{project},"n":{n},"pad":"{pad}"}}"#),
    )
}

/// Small segments, and fewer open projects and mapped segments than the test uses, so that
/// projects are closed and segments unmapped between steps.
fn open(dir: &std::path::Path) -> Store {
    Options::new()
        .segment_bytes(common::SMALL_SEGMENT_BYTES)
        .max_open_projects(2)
        .max_mapped_segments(3)
        .open(dir)
        .unwrap()
}

/// Checks a newest-first read of `project` against the model.
fn check_read(
    store: &Store,
    model: &HashMap<u64, Vec<String>>,
    project: u64,
    before: Option<u64>,
    take: usize,
) -> Result<(), TestCaseError> {
    let want_all: &[String] = model.get(&project).map_or(&[], Vec::as_slice);
    let it = store.newest_first(project).unwrap();
    prop_assert_eq!(it.next_seq(), want_all.len() as u64 + 1);
    let it = match before {
        Some(b) => it.before(b),
        None => it,
    };
    let got: Vec<(u64, String)> = it
        .take(take)
        .map(|m| m.map(|m| (m.seq(), m.into_json())))
        .collect::<Result<_, _>>()
        .unwrap();
    let top = before.map_or(want_all.len() as u64, |b| {
        b.saturating_sub(1).min(want_all.len() as u64)
    });
    let want: Vec<(u64, String)> = (1..=top)
        .rev()
        .take(take)
        .map(|seq| (seq, want_all[seq as usize - 1].clone()))
        .collect();
    prop_assert_eq!(
        got,
        want,
        "project {}, before {:?}, take {}",
        project,
        before,
        take
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_matches_a_vec_per_project(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = common::scratch();
        let mut store = open(dir.path());
        let mut model: HashMap<u64, Vec<String>> = HashMap::new();
        let mut n = 0u64;
        let mut last_stamp = 0u64;
        for op in ops {
            match op {
                Op::Single { project, pad } => {
                    n += 1;
                    let (given, stored) = message(project, n, pad);
                    let a = store.append(project, [given]).unwrap();
                    let msgs = model.entry(project).or_default();
                    prop_assert_eq!(a.first_seq, msgs.len() as u64 + 1);
                    prop_assert_eq!(a.count, 1);
                    prop_assert!(a.stamp > last_stamp);
                    last_stamp = a.stamp;
                    msgs.push(stored);
                }
                Op::Batch { project, pads } => {
                    let (given, stored): (Vec<String>, Vec<String>) = pads
                        .iter()
                        .map(|&pad| {
                            n += 1;
                            message(project, n, pad)
                        })
                        .unzip();
                    let a = store.append(project, &given).unwrap();
                    let msgs = model.entry(project).or_default();
                    prop_assert_eq!(a.first_seq, msgs.len() as u64 + 1);
                    prop_assert_eq!(a.count, pads.len() as u64);
                    prop_assert!(a.stamp > last_stamp);
                    last_stamp = a.stamp;
                    msgs.extend(stored);
                }
                Op::Rejected { project, len, bad } => {
                    let batch: Vec<String> = (0..len)
                        .map(|k| if k == bad { "[\"not an object\"]".to_string() } else { message(project, 0, k).0 })
                        .collect();
                    match store.append(project, &batch) {
                        Err(Error::InvalidMessage { index, .. }) => prop_assert_eq!(index, bad),
                        other => prop_assert!(false, "expected InvalidMessage, got {:?}", other),
                    }
                }
                Op::Reopen => {
                    drop(store);
                    store = open(dir.path());
                }
                Op::Read { project, before, take } => {
                    let len = model.get(&project).map_or(0, Vec::len) as f64;
                    let before = before.map(|f| (f * len).round() as u64);
                    check_read(&store, &model, project, before, take)?;
                }
            }
        }
        // Everything, in every project, before and after a final reopen.
        for round in 0..2 {
            for project in 0..PROJECTS {
                check_read(&store, &model, project, None, usize::MAX)?;
            }
            let mut ids: Vec<u64> = model.iter().filter(|(_, m)| !m.is_empty()).map(|(&p, _)| p).collect();
            ids.sort_unstable();
            prop_assert_eq!(store.projects().unwrap(), ids);
            if round == 0 {
                drop(store);
                store = open(dir.path());
            }
        }
    }
}
