//! One sampling round of one guest's file-based sources on recorded inputs: netdev (tap/veth), netns
//! SNMP + netstat, cgroup v1 CPU, and the process source over a recorded qemu-like /proc directory
//! (5 threads; `status` files read every 5th round, as by default). Plus the pure parsers on their own, and the QMP reply parser on the recorded replies.
//!
//! Run: `cargo bench -p telemetry --bench round`

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use telemetry::Source;
use telemetry::cgroup::CgroupCpu;
use telemetry::netdev::{NetDev, parse_netdev_iface};
use telemetry::procfs::{ProcessCpu, parse_pid_stat};
use telemetry::qmp::parse_query_stats;
use telemetry::snmp::{NetSnmp, for_each_counter};

const NETDEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    4520      56    0    0    0     0          0         0     4520      56    0    0    0     0       0          0
  vmgt-br0: 9123456 92345    0    0    0     0          0        12  8765432  84567    0    0    0     0       0          0
 vmtap0: 123456789 2345678    1 7777    0     0          0        12 98765432  345678    0   3    0     0       0          0
";

const THREADS: [&str; 5] = ["qemu-system-x86", "call_rcu", "IO mon_iothread", "CPU 0/KVM", "worker"];

/// A recorded guest: copies of the host's real snmp/netstat, a cgroup v1 tree, and a qemu-like /proc dir.
fn record(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let snmp = dir.join("snmp");
    let netstat = dir.join("netstat");
    std::fs::copy("/proc/self/net/snmp", &snmp).unwrap();
    std::fs::copy("/proc/self/net/netstat", &netstat).unwrap();
    let netdev = dir.join("netdev");
    std::fs::write(&netdev, NETDEV).unwrap();

    let cg = dir.join("cgroup");
    for (ctl, files) in [
        ("cpuacct", vec![("cpuacct.usage", "123456789012\n"), ("cpuacct.stat", "user 1234\nsystem 567\n")]),
        ("cpu", vec![("cpu.stat", "nr_periods 5000\nnr_throttled 120\nthrottled_time 987654321\n")]),
    ] {
        let d = cg.join(ctl).join("vmguard/vm1");
        std::fs::create_dir_all(&d).unwrap();
        for (f, text) in files {
            std::fs::write(d.join(f), text).unwrap();
        }
    }

    let proc = dir.join("proc");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the name, with num_threads (field 20) set to the number of recorded threads: a
    // count that disagrees with task/ makes the source list the threads again every round.
    let mut rest: Vec<String> =
        stat[stat.rfind(')').unwrap() + 1..].split_ascii_whitespace().map(String::from).collect();
    rest[20 - 3] = THREADS.len().to_string();
    let rest = format!(" {}\n", rest.join(" "));
    std::fs::create_dir_all(proc.join("task")).unwrap();
    std::fs::write(proc.join("stat"), format!("4242 (qemu-system-x86){rest}")).unwrap();
    for (i, name) in THREADS.iter().enumerate() {
        let t = proc.join("task").join((4242 + i).to_string());
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("stat"), format!("{} ({name}){rest}", 4242 + i)).unwrap();
        let status: String = status
            .lines()
            .map(|l| if l.starts_with("Name:") { format!("Name:\t{name}\n") } else { format!("{l}\n") })
            .collect();
        std::fs::write(t.join("status"), status).unwrap();
        std::fs::write(t.join("schedstat"), "123456789012 3456789 45678\n").unwrap();
    }
    (snmp, netstat, netdev, cg, proc)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::Builder::new().prefix("vmgt-bench-").tempdir().unwrap();
    let (snmp, netstat, netdev, cg, proc) = record(tmp.path());
    let mut sources: Vec<Box<dyn Source>> = vec![
        Box::new(NetDev::from_file("vm1", "vmtap0", &netdev)),
        Box::new(NetSnmp::from_files("vm1", &snmp, &netstat)),
        Box::new(CgroupCpu::with_root("vm1", "vmguard/vm1", &cg)),
        Box::new(ProcessCpu::from_dir("vm1", &proc)),
    ];
    let mut out = Vec::with_capacity(1024);
    for s in &mut sources {
        s.sample(0, &mut out).unwrap();
    }
    eprintln!("one round of one guest: {} samples from {} sources", out.len(), sources.len());
    assert!(out.iter().any(|s| s.counter == "thread.CPU 0/KVM.cpu_ns"), "recorded thread names");
    // The same on this thread's CPU clock: what the rounds cost in CPU, unaffected by other load on the
    // machine (criterion's wall-clock figures below are not, on a shared machine).
    let n = 20_000;
    let t0 = thread_cpu_ns();
    for _ in 0..n {
        out.clear();
        for s in &mut sources {
            s.sample(1, &mut out).unwrap();
        }
    }
    eprintln!("round/guest CPU time: {:.1} µs per round ({n} rounds)", (thread_cpu_ns() - t0) as f64 / n as f64 / 1e3);

    c.bench_function("round/guest (netdev+snmp+cgroup+process, recorded files)", |b| {
        b.iter(|| {
            out.clear();
            for s in &mut sources {
                s.sample(1, &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
    let mut by_source = |name: &str, s: &mut dyn Source| {
        let mut out = Vec::with_capacity(512);
        c.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                s.sample(1, &mut out).unwrap();
                black_box(out.len())
            })
        });
    };
    for s in &mut sources {
        let name = format!("source/{}", s.id());
        by_source(&name, s.as_mut());
    }

    let snmp_text = std::fs::read_to_string(&netstat).unwrap();
    c.bench_function("parse/netstat (walk only)", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for_each_counter(black_box(&snmp_text), |_, _, v| n = n.wrapping_add(v as u64));
            n
        })
    });
    c.bench_function("parse/netdev one iface", |b| b.iter(|| parse_netdev_iface(black_box(NETDEV), "vmtap0")));
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap();
    c.bench_function("parse/proc stat", |b| b.iter(|| parse_pid_stat(black_box(&stat)).map(|s| s.utime)));

    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/docs/fixtures");
    let vcpu = std::fs::read_to_string(format!("{fixtures}/qmp-query-stats-vcpu.json")).unwrap();
    c.bench_function("parse/qmp query-stats vcpu reply", |b| b.iter(|| parse_query_stats(black_box(&vcpu)).unwrap()));
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

criterion_group!(benches, bench);
criterion_main!(benches);
