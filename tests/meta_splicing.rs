//! Meta fields are spliced into the stored bytes after the message's own fields, in the order
//! requested, and the result is compact JSON that parses back.

use activitylog::{Meta, Store};
use serde_json::{Map, Value};

/// Every ordered selection of distinct meta fields, the empty one included.
fn selections() -> Vec<Vec<Meta>> {
    let all = [Meta::Ts, Meta::Project, Meta::Key];
    let mut out = vec![vec![]];
    for a in all {
        out.push(vec![a]);
        for b in all.into_iter().filter(|&b| b != a) {
            out.push(vec![a, b]);
            for c in all.into_iter().filter(|&c| c != a && c != b) {
                out.push(vec![a, b, c]);
            }
        }
    }
    out
}

const INPUTS: &[(&str, &str)] = &[
    ("{}", "{}"),
    (" { } ", "{}"),
    (
        r#"{ "a" : "x y" , "b" : [ 1 , { } ] }"#,
        r#"{"a":"x y","b":[1,{}]}"#,
    ),
    (
        r#"{"e":"\u00e9\ud83d\ude00","q":"\"}"}"#,
        r#"{"e":"\u00e9\ud83d\ude00","q":"\"}"}"#,
    ),
    (
        r#"{"_ts": "mine", "_project": 0, "_key": null}"#,
        r#"{"_ts":"mine","_project":0,"_key":null}"#,
    ),
];

#[test]
fn every_meta_combination_on_every_shape() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let project = 4242;
    let inputs: Vec<&str> = INPUTS.iter().map(|(i, _)| *i).collect();
    store.append(project, &inputs).unwrap();
    let mut messages: Vec<_> = store
        .newest_first(project)
        .unwrap()
        .map(|m| m.unwrap())
        .collect();
    messages.reverse();
    for (m, (_, stored)) in messages.iter().zip(INPUTS) {
        assert_eq!(m.json(), *stored);
        for meta in selections() {
            let out = m.json_with_meta(&meta);
            assert!(!out.contains('\n'));
            // Exactly the stored object, then the meta fields in order.
            let mut want = stored[..stored.len() - 1].to_string();
            for (i, field) in meta.iter().enumerate() {
                if i > 0 || stored.len() > 2 {
                    want.push(',');
                }
                match field {
                    Meta::Ts => want.push_str(&format!("\"_ts\":{}", m.timestamp_ms())),
                    Meta::Project => want.push_str(&format!("\"_project\":{project}")),
                    Meta::Key => want.push_str(&format!("\"_key\":\"{project}/{}\"", m.seq())),
                }
            }
            want.push('}');
            assert_eq!(out, want);
            // It parses, and the meta value is the last one, which parsers keep.
            let parsed: Map<String, Value> = serde_json::from_str(&out).unwrap();
            for field in &meta {
                let v = &parsed[field.name()];
                match field {
                    Meta::Ts => assert_eq!(v.as_u64(), Some(m.timestamp_ms())),
                    Meta::Project => assert_eq!(v.as_u64(), Some(project)),
                    Meta::Key => {
                        assert_eq!(v.as_str(), Some(format!("{project}/{}", m.seq()).as_str()))
                    }
                }
            }
        }
    }
}

/// A field named more than once in the list is spliced once, at its first place, through the
/// library's API as through the server's parameters.
#[test]
fn a_meta_field_named_twice_is_spliced_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(7, [r#"{"a":1}"#]).unwrap();
    store.append(7, ["{}"]).unwrap();
    for m in store.newest_first(7).unwrap() {
        let m = m.unwrap();
        for (meta, once) in [
            (vec![Meta::Ts, Meta::Ts], vec![Meta::Ts]),
            (
                vec![Meta::Project, Meta::Key, Meta::Project, Meta::Key],
                vec![Meta::Project, Meta::Key],
            ),
            (
                vec![Meta::Key, Meta::Ts, Meta::Ts, Meta::Project, Meta::Key],
                vec![Meta::Key, Meta::Ts, Meta::Project],
            ),
        ] {
            let out = m.json_with_meta(&meta);
            assert_eq!(out, m.json_with_meta(&once), "{meta:?}");
            let mut written = Vec::new();
            m.write_with_meta(&meta, &mut written);
            assert_eq!(written, out.as_bytes());
            for field in &once {
                let key = format!("\"{}\"", field.name());
                assert_eq!(out.matches(&key).count(), 1, "{meta:?}: {out}");
            }
            serde_json::from_str::<Map<String, Value>>(&out).unwrap();
        }
    }
}

#[test]
fn unknown_meta_names_are_an_error() {
    let err = "_foo".parse::<Meta>().unwrap_err();
    assert!(err.to_string().contains("unknown meta field"));
    assert_eq!("_ts".parse::<Meta>().unwrap(), Meta::Ts);
    assert_eq!("_project".parse::<Meta>().unwrap(), Meta::Project);
    assert_eq!("_key".parse::<Meta>().unwrap(), Meta::Key);
}
