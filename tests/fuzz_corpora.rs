//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same functions the
//! cargo-fuzz targets call, so that `cargo test` on the stable toolchain checks every input the
//! fuzzers ever kept. A missing or empty corpus fails.
//!
//! `cargo test --test fuzz_corpora -- --ignored write_seeds` (re)writes the seed inputs made by
//! the library (`activitylog::fuzzing::seeds`) into the corpora, as `seed-*` files.

use std::fs;
use std::path::PathBuf;

use activitylog::fuzzing;

/// A fuzz target's name and the function it calls.
type Target = (&'static str, fn(&[u8]));

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

/// Runs `f` on every file of the target's corpus, naming the file if it panics.
fn replay(target: &str, f: fn(&[u8])) {
    let dir = corpus_dir(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("listing the corpus").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| f(&data));
        assert!(
            outcome.is_ok(),
            "{target} panicked on {} (reproduce: cargo +nightly fuzz run {target} {})",
            path.display(),
            path.display()
        );
    }
}

#[test]
fn record_decoder_corpus() {
    replay("record_decoder", fuzzing::record_decoder);
}

#[test]
fn index_loader_corpus() {
    replay("index_loader", fuzzing::index_loader);
}

#[test]
fn open_and_recover_corpus() {
    replay("open_and_recover", fuzzing::open_and_recover);
}

#[cfg(feature = "server")]
#[test]
fn http_query_corpus() {
    replay("http_query", fuzzing::http_query);
}

#[test]
fn post_body_corpus() {
    replay("post_body", fuzzing::post_body);
}

#[test]
fn import_lines_corpus() {
    replay("import_lines", fuzzing::import_lines);
}

/// Every target, with its function.
fn targets() -> Vec<Target> {
    let mut t: Vec<Target> = vec![
        ("record_decoder", fuzzing::record_decoder),
        ("index_loader", fuzzing::index_loader),
        ("open_and_recover", fuzzing::open_and_recover),
        ("post_body", fuzzing::post_body),
        ("import_lines", fuzzing::import_lines),
    ];
    #[cfg(feature = "server")]
    t.push(("http_query", fuzzing::http_query));
    t
}

/// The seeds the library makes today pass too (the corpora keep only what a minimisation kept).
#[test]
fn seeds_pass() {
    for (target, f) in targets() {
        let seeds = fuzzing::seeds(target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for (name, data) in seeds {
            let outcome = std::panic::catch_unwind(|| f(&data));
            assert!(outcome.is_ok(), "{target} panicked on its seed {name}");
        }
    }
}

#[test]
#[ignore = "writes into fuzz/corpus; run by hand to refresh the seeds"]
fn write_seeds() {
    for (target, _) in targets() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).expect("creating the corpus directory");
        for (name, data) in fuzzing::seeds(target) {
            fs::write(dir.join(name), data).expect("writing a seed");
        }
    }
}
