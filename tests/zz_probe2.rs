use activitylog::*;

#[test]
fn p_import_dups() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let r = s.import_json_lines(
        b"{\"a\":1,\"_ts\":1000,\"_ts\":2000}\n",
        ImportTarget::Project(1),
        Durability::Written,
    );
    println!("{r:?}");
    let r = s.import_json_lines(
        b"{\"p\":1,\"p\":2,\"_ts\":3000}\n",
        ImportTarget::Field("p"),
        Durability::Written,
    );
    println!("{r:?}");
    let r = s.import_json_lines(
        b"{\"p\":18446744073709551615}\n",
        ImportTarget::Field("p"),
        Durability::Written,
    );
    println!("{r:?}");
    let r = s.import_json_lines(b"{\"p\":1}\n", ImportTarget::Field(""), Durability::Written);
    println!("{r:?}");
    let r = s.import_json_lines(b"", ImportTarget::Project(9), Durability::Written);
    println!("{r:?} stats9={:?}", s.stats(9));
    for p in s.projects().unwrap() {
        for m in s.newest_first(p).unwrap() {
            let m = m.unwrap();
            println!("{p} {} {} {}", m.seq(), m.stamp(), m.json());
        }
    }
}

#[test]
fn p_import_old_then_append_query_order() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    s.append(1, ["{\"x\":1}"]).unwrap();
    let r = s.import_json_lines(
        b"{\"y\":1,\"_ts\":0}\n{\"y\":2,\"_ts\":0}\n",
        ImportTarget::Project(2),
        Durability::Written,
    );
    println!("{r:?}");
    s.append(2, ["{\"y\":3}"]).unwrap();
    let v: Vec<_> = s
        .query(&Query::new())
        .unwrap()
        .map(|m| m.unwrap())
        .collect();
    for m in &v {
        println!("{m:?}");
    }
}

#[test]
fn p_spares_max() {
    let d = tempfile::tempdir().unwrap();
    let s = Options::new()
        .spare_projects(MAX_SPARE_PROJECTS)
        .open(d.path())
        .unwrap();
    let t = std::time::Instant::now();
    for p in 0..20 {
        s.append(p, ["{}"]).unwrap();
    }
    println!("appends {:?}", t.elapsed());
    let t = std::time::Instant::now();
    drop(s);
    println!("drop {:?}", t.elapsed());
    let n = std::fs::read_dir(d.path().join("projects"))
        .unwrap()
        .count();
    println!("entries left {n}");
}
