//! Replays the inputs of `fuzz/findings/` — each once made a fuzz target fail or crawl — through
//! their targets, which now hold them (the file name starts with the target's name).

use std::time::Instant;

#[test]
fn every_finding_now_passes_its_target() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/findings");
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let start = Instant::now();
        if name.starts_with("index_loader") {
            activitylog::fuzzing::index_loader(&data);
        } else if name.starts_with("open_and_recover") {
            activitylog::fuzzing::open_and_recover(&data);
        } else {
            panic!("{name}: no target for this finding");
        }
        let secs = start.elapsed().as_secs_f64();
        assert!(secs < 30.0, "{name} took {secs:.1} s");
        replayed += 1;
    }
    assert!(replayed >= 4, "only {replayed} findings");
}
