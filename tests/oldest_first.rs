//! Oldest-first iteration is exactly newest-first reversed, over many segments, from any start.

use activitylog::{Options, Store};
use proptest::prelude::*;

fn seqs(it: impl Iterator<Item = activitylog::Result<activitylog::Message>>) -> Vec<(u64, String)> {
    it.map(|m| m.map(|m| (m.seq(), m.into_json())))
        .collect::<Result<_, _>>()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn oldest_first_is_newest_first_reversed(
        batches in proptest::collection::vec((1usize..12, 0usize..600), 0..40),
        reopen_at in 0usize..40,
        from in 0u64..200,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let open = || Options::new().segment_bytes(4096).open(dir.path()).unwrap();
        let mut store: Store = open();
        for (k, (n, pad)) in batches.iter().enumerate() {
            if k == reopen_at {
                drop(store);
                store = open();
            }
            let msgs: Vec<String> = (0..*n).map(|i| format!(r#"{{"k":{k},"i":{i},"p":"{}"}}"#, "x".repeat(*pad))).collect();
            store.append(1, &msgs).unwrap();
        }
        let mut newest = seqs(store.newest_first(1).unwrap());
        newest.reverse();
        let oldest = seqs(store.oldest_first(1).unwrap());
        prop_assert_eq!(&oldest, &newest);
        let tail: Vec<_> = newest.iter().filter(|(s, _)| *s >= from).cloned().collect();
        prop_assert_eq!(seqs(store.oldest_first(1).unwrap().from(from)), tail);
    }
}
