use super::*;
use proptest::prelude::*;
use telemetry::GuestKind;

/// A database path in a scratch directory that is removed when dropped.
pub(crate) struct TempDb {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) fn temp_db(tag: &str) -> TempDb {
    let dir = tempfile::Builder::new().prefix(&format!("vmgt-store-{tag}-")).tempdir().unwrap();
    TempDb { path: dir.path().join("vmguard.db"), _dir: dir }
}

fn s(t: i64, guest: &str, source: SourceId, counter: &str, value: u64, kind: Kind) -> Sample {
    Sample { time_ns: t, guest: guest.into(), source, counter: counter.into(), value, kind }
}

#[test]
fn append_and_query_back() {
    let db = temp_db("basic");
    let path = db.path.clone();
    let mut st = Store::open(&path).unwrap();
    assert_eq!(st.schema_version().unwrap(), SCHEMA_VERSION);
    let batch = vec![
        s(1_000, "vm1", SourceId::Kvm, "vcpu.exits", 10, Kind::Counter),
        s(1_000, "vm1", SourceId::Netdev, "rx_packets", 5, Kind::Counter),
        s(1_000, "ct1", SourceId::Snmp, "TcpExt.SyncookiesSent", 7, Kind::Counter),
        s(2_000, "vm1", SourceId::Kvm, "vcpu.exits", 25, Kind::Counter),
        s(2_000, "vm1", SourceId::Kvm, "vcpu.guest_mode", 1, Kind::Gauge),
        s(3_000, "vm1", SourceId::Kvm, "vcpu.exits", u64::MAX, Kind::Counter),
    ];
    assert_eq!(st.append(&batch).unwrap(), 6);
    assert_eq!(
        st.series("vm1", SourceId::Kvm, "vcpu.exits", 0, i64::MAX).unwrap(),
        [(1_000, 10), (2_000, 25), (3_000, u64::MAX)]
    );
    assert_eq!(st.series("vm1", SourceId::Kvm, "vcpu.exits", 1_500, 3_000).unwrap(), [(2_000, 25)]);
    let all = st.samples("vm1", 0, 2_001).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|x| &*x.guest == "vm1"));
    assert!(all.contains(&batch[4]));
    let counters = st.counters("ct1").unwrap();
    assert_eq!(counters, [(SourceId::Snmp, "TcpExt.SyncookiesSent".to_string(), Kind::Counter)]);

    // Reopen: ids come from the file, not from the cache.
    drop(st);
    let mut st = Store::open(&path).unwrap();
    st.append(&[s(4_000, "vm1", SourceId::Kvm, "vcpu.exits", 30, Kind::Counter)]).unwrap();
    assert_eq!(st.series("vm1", SourceId::Kvm, "vcpu.exits", 0, i64::MAX).unwrap().len(), 4);
    st.check_integrity().unwrap();
}

#[test]
fn guests_labels_and_bench_results() {
    let db = temp_db("meta");
    let mut st = Store::open(&db.path).unwrap();
    let info = GuestInfo { pid: Some(42), netns: Some("vmgt-vm".into()), ..GuestInfo::new("vm1", GuestKind::Qemu) };
    st.put_guest(&info).unwrap();
    st.append(&[s(1, "ct1", SourceId::Cgroup, "cpu.usage_ns", 1, Kind::Counter)]).unwrap();
    let guests = st.guests().unwrap();
    assert_eq!(
        guests,
        [GuestRecord { name: "ct1".into(), info: None }, GuestRecord { name: "vm1".into(), info: Some(info) }]
    );

    let labels = [
        Label { guest: "vm1".into(), start_ns: 0, end_ns: 100, label: "normal".into(), scenario: "s1".into() },
        Label { guest: "vm1".into(), start_ns: 100, end_ns: 200, label: "attack-victim".into(), scenario: "s1".into() },
        Label { guest: "ct1".into(), start_ns: 150, end_ns: 300, label: "attack-zombie".into(), scenario: "s1".into() },
    ];
    st.add_labels(&labels).unwrap();
    assert_eq!(st.labels(Some("vm1"), 50, 120).unwrap(), labels[..2]);
    assert_eq!(st.labels(None, 160, 170).unwrap(), labels[1..]);
    assert!(st.labels(Some("vm1"), 200, 300).unwrap().is_empty(), "end is exclusive");
    let bad = Label { guest: "x".into(), start_ns: 5, end_ns: 1, label: "normal".into(), scenario: "s".into() };
    assert!(st.add_labels(&[labels[0].clone(), bad]).is_err());
    assert_eq!(st.labels(None, 0, 1000).unwrap().len(), 3, "the failed batch left nothing behind");

    let figures = serde_json::json!({"events_per_s": 1234.5, "latency_ms": {"p95": 3.2}});
    assert!(
        st.add_bench_result(&BenchResult {
            run_id: "r0".into(),
            cell: "c".into(),
            time_ns: 0,
            raw_output: String::new(),
            figures: figures.clone()
        })
        .is_err(),
        "a result needs its run"
    );
    st.add_run("r1", 10, &serde_json::json!({"host": "lab"})).unwrap();
    let r = BenchResult {
        run_id: "r1".into(),
        cell: "kvm/sysbench-cpu/attack".into(),
        time_ns: 11,
        raw_output: "events per second: 1234.5\n".into(),
        figures,
    };
    st.add_bench_result(&r).unwrap();
    assert_eq!(st.bench_results("r1").unwrap(), [r]);
}

#[test]
fn newer_schema_is_refused_and_old_files_migrate() {
    let db = temp_db("version");
    let path = db.path.clone();
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    }
    let err = Store::open(&path).err().unwrap();
    assert!(err.to_string().contains("upgrade vmguard"), "{err}");

    // A version-0 file (empty) is migrated to the current version.
    let db = temp_db("empty");
    let path = db.path.clone();
    Connection::open(&path).unwrap();
    assert_eq!(Store::open(&path).unwrap().schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn wal_mode_is_on() {
    let db = temp_db("wal");
    let st = Store::open(&db.path).unwrap();
    let mode: String = st.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_batch_round_trips(rows in proptest::collection::vec((0i64..50, "[a-z]{1,3}", 0usize..3, "[a-zA-Z._ /0-9]{1,12}", any::<u64>()), 0..40)) {
        let db = temp_db("prop");
        let mut st = Store::open(&db.path).unwrap();
        let kinds = [Kind::Counter, Kind::Counter32, Kind::Gauge];
        // The kind is a property of the counter: derive it from the name so one name has one kind.
        let batch: Vec<Sample> = rows.iter().map(|(t, g, src, c, v)| {
            s(*t, g, SourceId::ALL[*src], c, *v, kinds[c.len() % 3])
        }).collect();
        st.append(&batch).unwrap();
        // Later duplicates replace earlier ones.
        let mut want: std::collections::BTreeMap<(String, SourceId, String, i64), u64> = Default::default();
        for x in &batch {
            want.insert((x.guest.to_string(), x.source, x.counter.to_string(), x.time_ns), x.value);
        }
        let mut got = std::collections::BTreeMap::new();
        for g in want.keys().map(|k| k.0.clone()).collect::<std::collections::BTreeSet<_>>() {
            for x in st.samples(&g, i64::MIN, i64::MAX).unwrap() {
                got.insert((x.guest.to_string(), x.source, x.counter.to_string(), x.time_ns), x.value);
            }
        }
        prop_assert_eq!(got, want);
    }
}
