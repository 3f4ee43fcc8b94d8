//! A batch with one bad message is rejected whole: a typed error names the first bad message by
//! its position, and nothing of the batch is stored — the next sequence number is unchanged, also
//! after a reopen.

mod common;

use std::path::Path;

use activitylog::{Durability, Error, Message, Options, Store};
use common::read_all;

const LIMIT_BYTES: usize = 100;

fn open(dir: &Path) -> Store {
    Options::new()
        .max_message_bytes(LIMIT_BYTES)
        .open(dir)
        .unwrap()
}

/// What a rejection must say.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// `InvalidMessage` whose reason contains this text.
    Invalid(&'static str),
    /// `TooLarge` with this size.
    TooLarge(usize),
}

/// Bad messages, as bytes, with the rejection each must get.
fn bad_messages() -> Vec<(Vec<u8>, Want)> {
    let over = format!(r#"{{"pad":"{}"}}"#, "x".repeat(LIMIT_BYTES - 9));
    assert_eq!(over.len(), LIMIT_BYTES + 1);
    vec![
        (br#"{"a":"#.to_vec(), Want::Invalid("not valid JSON")),
        (br#"{"a":1,}"#.to_vec(), Want::Invalid("not valid JSON")),
        (b"{} {}".to_vec(), Want::Invalid("not valid JSON")),
        (
            b"{\"a\":\"tab\there\"}".to_vec(),
            Want::Invalid("not valid JSON"),
        ),
        (b"[1]".to_vec(), Want::Invalid("not an object")),
        (b"1".to_vec(), Want::Invalid("not an object")),
        (br#""x""#.to_vec(), Want::Invalid("not an object")),
        (b"null".to_vec(), Want::Invalid("not an object")),
        (b" [ {} ] ".to_vec(), Want::Invalid("not an object")),
        (b"".to_vec(), Want::Invalid("empty")),
        (b" \r\n\t".to_vec(), Want::Invalid("empty")),
        (over.into_bytes(), Want::TooLarge(LIMIT_BYTES + 1)),
    ]
}

fn check_rejection(err: &Error, index: usize, want: Want) {
    match (err, want) {
        (
            Error::InvalidMessage {
                index: i,
                reason,
                line,
                ..
            },
            Want::Invalid(text),
        ) => {
            assert_eq!(*i, index, "{err}");
            assert_eq!(*line, None, "a batch given as messages has no lines");
            assert!(
                reason.contains(text),
                "reason {reason:?} should say {text:?}"
            );
        }
        (
            Error::TooLarge {
                index: i,
                size,
                limit,
                line,
                ..
            },
            Want::TooLarge(s),
        ) => {
            assert_eq!(*i, index, "{err}");
            assert_eq!(*line, None, "a batch given as messages has no lines");
            assert_eq!((*size, *limit), (s, LIMIT_BYTES));
        }
        _ => panic!("expected {want:?} at {index}, got {err:?}"),
    }
    // The message counts from 1, like the lines of a file.
    let text = err.to_string();
    assert!(text.contains(&format!("message {}", index + 1)), "{text}");
    assert!(!err.is_corruption());
}

/// The state of project 1 that a rejected batch must not change.
fn state(store: &Store) -> (u64, Vec<Message>) {
    (
        store.newest_first(1).unwrap().next_seq(),
        read_all(store, 1),
    )
}

#[test]
fn a_bad_message_anywhere_in_a_batch_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(1, [r#"{"good":1}"#, r#"{"good":2}"#]).unwrap();
    store.append(1, [r#"{"good":3}"#]).unwrap();
    let before = state(&store);
    assert_eq!(before.0, 4);

    for (bad, want) in bad_messages() {
        for position in [0, 2, 4] {
            let mut batch: Vec<Vec<u8>> = (0..5)
                .map(|k| format!(r#"{{"would_be":{k}}}"#).into_bytes())
                .collect();
            batch[position] = bad.clone();
            let err = store.append(1, &batch).unwrap_err();
            check_rejection(&err, position, want);
            assert_eq!(
                state(&store),
                before,
                "{want:?} at {position} stored something"
            );
        }
        // Alone, as a batch of one.
        let err = store.append(1, [&bad]).unwrap_err();
        check_rejection(&err, 0, want);
        // Into a project never written: it must not even be created.
        let err = store.append(2, [&bad]).unwrap_err();
        check_rejection(&err, 0, want);
        assert_eq!(state(&store), before);
    }
    assert!(!common::project_dir(dir.path(), 2).exists());
    assert_eq!(store.projects().unwrap(), [1]);

    let a = store.append(1, [r#"{"good":4}"#]).unwrap();
    assert_eq!(a.first_seq, 4, "rejections consumed no sequence numbers");
    drop(store);

    let store = open(dir.path());
    let got: Vec<String> = read_all(&store, 1)
        .into_iter()
        .map(Message::into_json)
        .collect();
    assert_eq!(
        got,
        [
            r#"{"good":4}"#,
            r#"{"good":3}"#,
            r#"{"good":2}"#,
            r#"{"good":1}"#
        ]
    );
    assert_eq!(store.newest_first(1).unwrap().next_seq(), 5);
    assert!(store.newest_first(2).unwrap().next().is_none());
}

#[test]
fn the_first_bad_message_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let over = format!(r#"{{"pad":"{}"}}"#, "x".repeat(LIMIT_BYTES));
    let batch = [r#"{"ok":0}"#, over.as_str(), "[2]", r#"{"ok":3}"#];
    check_rejection(
        &store.append(1, batch).unwrap_err(),
        1,
        Want::TooLarge(over.len()),
    );
    let batch = [r#"{"ok":0}"#, "[1]", over.as_str()];
    check_rejection(
        &store.append(1, batch).unwrap_err(),
        1,
        Want::Invalid("not an object"),
    );
    assert!(store.newest_first(1).unwrap().next().is_none());
}

#[test]
fn the_size_limit_applies_after_whitespace_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Exactly at the limit once compact, though far over it as given.
    let exact = format!(r#"{{"pad":"{}"}}"#, "x".repeat(LIMIT_BYTES - 10));
    assert_eq!(exact.len(), LIMIT_BYTES);
    let spaced = format!(
        "  {{ \"pad\" :\n\n \"{}\" }}  {}",
        "x".repeat(LIMIT_BYTES - 10),
        " ".repeat(200)
    );
    assert!(spaced.len() > 2 * LIMIT_BYTES);
    let a = store.append(1, [exact.as_str(), spaced.as_str()]).unwrap();
    assert_eq!(a.count, 2);
    let got = read_all(&store, 1);
    assert_eq!(got[0].json(), exact);
    assert_eq!(got[1].json(), exact);
}

#[test]
fn a_bad_line_of_json_lines_is_named_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let good = b"{\"a\":1}\r\n\r\n  \n{ \"b\" : 2 }\n{\"c\":3}";
    let a = store
        .append_json_lines(1, good, Durability::Written)
        .unwrap();
    assert_eq!((a.first_seq, a.count), (1, 3));
    let before = state(&store);

    let over = format!(r#"{{"pad":"{}"}}"#, "x".repeat(LIMIT_BYTES));
    let inputs: [(Vec<u8>, usize, usize); 3] = [
        (b"{\"d\":4}\n\n[5]\n{\"f\":6}\n".to_vec(), 1, 3),
        (b"\r\n{\"d\":4}\r\n{\"e\":\r\n".to_vec(), 1, 3),
        (format!("{{}}\n{{}}\n\n\n{over}").into_bytes(), 2, 5),
    ];
    for (input, index, line) in inputs {
        let err = store
            .append_json_lines(1, &input, Durability::Written)
            .unwrap_err();
        match &err {
            Error::InvalidMessage {
                index: i, line: l, ..
            }
            | Error::TooLarge {
                index: i, line: l, ..
            } => {
                assert_eq!((*i, *l), (index, Some(line)), "{err}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert!(err.to_string().contains(&format!("line {line}")), "{err}");
        assert_eq!(state(&store), before);
    }
    let got: Vec<String> = read_all(&store, 1)
        .into_iter()
        .map(Message::into_json)
        .collect();
    assert_eq!(got, [r#"{"c":3}"#, r#"{"b":2}"#, r#"{"a":1}"#]);
}

/// serde_json validates strings without checking UTF-8, so bytes that are not UTF-8 inside a
/// string would pass validation, be stored, and then read back as corruption forever.
#[test]
fn a_message_that_is_not_utf8_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(1, [r#"{"good":1}"#]).unwrap();
    let before = state(&store);
    for bad in [
        b"{\"a\":\"\xff\"}".to_vec(),
        b"{\"\xc3\":1}".to_vec(),
        b"{\"a\":\"\xed\xa0\x80\"}".to_vec(),
    ] {
        let err = store
            .append(1, [r#"{"ok":0}"#.as_bytes(), &bad])
            .unwrap_err();
        match &err {
            Error::InvalidMessage { index: 1, .. } => {}
            other => panic!("expected InvalidMessage at 1, got {other:?}"),
        }
        assert_eq!(state(&store), before);
    }
}
