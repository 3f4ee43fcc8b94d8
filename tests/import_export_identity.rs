//! Import keeps history: exporting (oldest first, each message with its `_ts`), importing that
//! into a new store, and exporting again gives byte-identical output, and the same answers.

use activitylog::{Durability, ImportTarget, Meta, Options, Query, Store};

fn export(store: &Store, project: u64) -> String {
    let mut out = Vec::new();
    for m in store.oldest_first(project).unwrap() {
        m.unwrap().write_archive_line(&mut out);
        out.push(b'\n');
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn export_import_export_is_the_identity() {
    let a = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(a.path()).unwrap();
    for i in 0..300 {
        let msg = match i % 4 {
            0 => format!(r#"{{"event":"job:started","i":{i}}}"#),
            1 => format!(r#"{{"_ts":"own field {i}","x":[1,{{"y":"\u00e9"}}]}}"#),
            2 => "{}".to_string(),
            _ => format!(r#"{{"s":"a,\"b\"}}{i}"}}"#),
        };
        store.append(1, [msg]).unwrap();
        if i % 50 == 0 {
            store.append(2, [format!(r#"{{"p2":{i}}}"#)]).unwrap();
        }
    }
    let first = [export(&store, 1), export(&store, 2)];
    drop(store);

    let b = tempfile::tempdir().unwrap();
    let imported = Options::new().segment_bytes(4096).open(b.path()).unwrap();
    for (project, text) in [(1, &first[0]), (2, &first[1])] {
        let got = imported
            .import_json_lines(
                text.as_bytes(),
                ImportTarget::Project(project),
                Durability::Written,
            )
            .unwrap();
        assert_eq!(got.messages(), text.lines().count() as u64);
    }
    let second = [export(&imported, 1), export(&imported, 2)];
    assert_eq!(first, second);
    // History is kept: the imported messages carry their original times.
    let orig = first[0].lines().next().unwrap();
    let ts: serde_json::Value = serde_json::from_str(orig).unwrap();
    let m = imported.oldest_first(1).unwrap().next().unwrap().unwrap();
    let ms = ts["_ts"].as_f64().unwrap();
    assert_eq!((ms * 1000.0).round() as u64, m.stamp());
    // New appends come after the imported history.
    let newest = imported
        .newest_first(1)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .stamp();
    let a = imported.append(1, [r#"{"after":1}"#]).unwrap();
    assert!(a.stamp > newest);
}

#[test]
fn a_bad_line_imports_nothing_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let input = b"{\"_ts\":1000,\"a\":1}\n\n{\"a\":\n";
    let err = store
        .import_json_lines(input, ImportTarget::Project(5), Durability::Written)
        .unwrap_err();
    assert!(err.to_string().starts_with("line 3 is invalid"), "{err}");
    let err = store
        .import_json_lines(
            b"{\"_ts\":\"soon\"}",
            ImportTarget::Project(5),
            Durability::Written,
        )
        .unwrap_err();
    assert!(err.to_string().contains("_ts"), "{err}");
    assert_eq!(store.newest_first(5).unwrap().count(), 0);
}

#[test]
fn a_field_can_name_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let input = b"{\"pid\":3,\"a\":1,\"_ts\":5000}\n{\"pid\":4,\"a\":2}\n{\"a\":3,\"pid\":3}";
    let got = store
        .import_json_lines(input, ImportTarget::Field("pid"), Durability::Written)
        .unwrap();
    assert_eq!(
        got.per_project.into_iter().collect::<Vec<_>>(),
        [(3, 2), (4, 1)]
    );
    let p3: Vec<String> = store
        .oldest_first(3)
        .unwrap()
        .map(|m| m.unwrap().into_json())
        .collect();
    assert_eq!(p3, [r#"{"pid":3,"a":1}"#, r#"{"a":3,"pid":3}"#]);
    let err = store
        .import_json_lines(
            b"{\"a\":1}",
            ImportTarget::Field("pid"),
            Durability::Written,
        )
        .unwrap_err();
    assert!(err.to_string().contains("pid"), "{err}");
}

#[test]
fn history_spanning_years_rolls_segments_and_reads_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let day_ms = 86_400_000u64;
    let lines: Vec<String> = (0..400u64)
        .map(|i| {
            format!(
                r#"{{"i":{i},"_ts":{}}}"#,
                1_500_000_000_000 + i * 3 * day_ms
            )
        })
        .collect();
    store
        .import_json_lines(
            lines.join("\n").as_bytes(),
            ImportTarget::Project(9),
            Durability::Written,
        )
        .unwrap();
    let ts: Vec<u64> = store
        .oldest_first(9)
        .unwrap()
        .map(|m| m.unwrap().timestamp_ms())
        .collect();
    assert_eq!(ts.len(), 400);
    assert!(ts.windows(2).all(|w| w[1] - w[0] == 3 * day_ms));
    let segments = std::fs::read_dir(dir.path().join("projects/9"))
        .unwrap()
        .count()
        / 2;
    assert!(segments > 50, "{segments} segments for 3.3 years");
}

/// Stamps order appends across projects within a millisecond, and a restore keeps that order:
/// an export carries `_ts` to the microsecond. (To the millisecond, messages of two projects
/// appended within one millisecond came back in the order of their project ids, and a merged
/// query answered with a different set: an audit.)
#[test]
fn a_restore_merges_projects_in_the_order_they_were_appended() {
    let a = tempfile::tempdir().unwrap();
    let store = Store::open(a.path()).unwrap();
    for i in 0..3000 {
        // Project 2 first, so that ties broken by project id would differ.
        store
            .append(2 - i % 2, [format!(r#"{{"i":{i}}}"#)])
            .unwrap();
    }
    let merged = |store: &Store| -> Vec<(u64, u64, String)> {
        store
            .query(&Query::new().projects([1, 2]).count(3000))
            .unwrap()
            .map(|m| {
                let m = m.unwrap();
                (m.project(), m.stamp(), m.json().to_string())
            })
            .collect()
    };
    let before = merged(&store);
    let same_ms = before
        .windows(2)
        .filter(|w| w[0].0 != w[1].0 && w[0].1 / 1000 == w[1].1 / 1000)
        .count();
    assert!(
        same_ms > 0,
        "no two projects' appends within one millisecond"
    );
    let files = [export(&store, 1), export(&store, 2)];
    assert!(
        files[0].contains('.'),
        "no stamp between milliseconds: {}",
        &files[0][..200]
    );

    let b = tempfile::tempdir().unwrap();
    let restored = Store::open(b.path()).unwrap();
    for (project, text) in [(1, &files[0]), (2, &files[1])] {
        restored
            .import_json_lines(
                text.as_bytes(),
                ImportTarget::Project(project),
                Durability::Written,
            )
            .unwrap();
    }
    assert_eq!(merged(&restored), before);
    // The API's `_ts` is still whole milliseconds.
    let newest = restored.newest_first(1).unwrap().next().unwrap().unwrap();
    let with_ts = newest.json_with_meta(&[Meta::Ts]);
    assert!(with_ts.ends_with(&format!(",\"_ts\":{}}}", newest.timestamp_ms())));
}
