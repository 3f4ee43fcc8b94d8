//! Import keeps history: exporting (oldest first, each message with its `_ts`), importing that
//! into a new store, and exporting again gives byte-identical output.

use activitylog::{Durability, ImportTarget, Meta, Options, Store};

fn export(store: &Store, project: u64) -> String {
    let mut out = Vec::new();
    for m in store.oldest_first(project).unwrap() {
        m.unwrap().write_with_meta(&[Meta::Ts], &mut out);
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
    assert_eq!(Some(m.timestamp_ms()), ts["_ts"].as_u64());
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
