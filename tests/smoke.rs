use activitylog::{Options, Store};

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
        for i in 0..500 {
            store.append(1, [format!("{{\"i\": {i}}}")]).unwrap();
        }
        let got: Vec<_> = store.newest_first(1).unwrap().map(|m| m.unwrap()).collect();
        assert_eq!(got.len(), 500);
        assert_eq!(got[0].json(), "{\"i\":499}");
        assert_eq!(got[499].seq(), 1);
    }
    let store = Store::open(dir.path()).unwrap();
    let got: Vec<_> = store.newest_first(1).unwrap().map(|m| m.unwrap()).collect();
    assert_eq!(got.len(), 500);
    for (k, m) in got.iter().enumerate() {
        assert_eq!(m.json(), format!("{{\"i\":{}}}", 499 - k));
    }
    let page: Vec<_> = store
        .newest_first(1)
        .unwrap()
        .before(100)
        .take(3)
        .map(|m| m.unwrap().seq())
        .collect();
    assert_eq!(page, [99, 98, 97]);
}
