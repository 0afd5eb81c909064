//! Live telemetry against real processes, namespaces and cgroups (root only).
//!
//! Without root (or another prerequisite) these tests fail with the reason: a test that did not run
//! never passes. As non-root, `make test` leaves this binary out and lists it. Namespaces and cgroups
//! they create are named `vmgt*` and removed by Drop guards; processes are stopped by PID.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use telemetry::netdev::NetDev;
use telemetry::perf::KvmTracepoints;
use telemetry::procfs::ProcessCpu;
use telemetry::qmp::{QmpClient, QmpStats};
use telemetry::snmp::NetSnmp;
use telemetry::{Iface, Sample, Source};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `true` when the test can run; otherwise the test fails with the reason (also outside CI).
fn prerequisite(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!ci(), "CI=true and a prerequisite is missing: {what}");
    panic!("NOT RUN: {what}: it did not run, so it fails (non-root `make test` leaves *_live out)")
}

fn root() -> bool {
    // SAFETY: plain syscall without arguments.
    prerequisite(unsafe { libc::geteuid() } == 0, "this live test needs root (run as root or with sudo)")
}

fn sample(src: &mut dyn Source) -> Vec<Sample> {
    let mut out = Vec::new();
    src.sample(telemetry::unix_now_ns(), &mut out).unwrap_or_else(|e| panic!("{:?} source: {e}", src.id()));
    out
}

fn value(samples: &[Sample], counter: &str) -> u64 {
    samples.iter().find(|s| s.counter == counter).unwrap_or_else(|| panic!("no sample {counter}: {samples:?}")).value
}

/// A scratch directory (tempfile), removed when dropped (also when the test fails).
struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

fn scratch(tag: &str) -> Scratch {
    Scratch(tempfile::Builder::new().prefix(&format!("vmgt-live-{tag}-")).tempdir().unwrap())
}

/// A process started by a test, stopped by PID when dropped.
struct Proc(u32);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = exec::stop_pid(self.0, Duration::from_secs(2));
    }
}

fn start_qemu(accel: &str, dir: &Path) -> Option<(Proc, PathBuf)> {
    let sock = dir.join(format!("qmp-{accel}.sock"));
    let pid = exec::Cmd::new("qemu-system-x86_64")
        .args(["-accel", accel, "-cpu", "qemu64", "-machine", "pc", "-nodefaults", "-display", "none", "-m", "64"])
        // Thread names such as "CPU 0/KVM" exist only with debug-threads=on.
        .args(["-name", "vmgt-live,debug-threads=on"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .spawn_detached(&dir.join(format!("qemu-{accel}.log")))
        .ok()?;
    let guard = Proc(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !exec::pid_alive(pid) {
            return None;
        }
        if sock.exists() && QmpClient::connect(&sock).is_ok() {
            return Some((guard, sock));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn qmp_kvm_stats_move_between_reads() {
    if !root() || !prerequisite(exec::which("qemu-system-x86_64").is_some(), "qemu-system-x86_64 is not installed") {
        return;
    }
    let dir = scratch("qmp");
    let kvm = if Path::new("/dev/kvm").exists() { start_qemu("kvm", &dir) } else { None };
    let Some((qemu, sock)) = kvm else {
        // Fallback: no KVM here. The QMP client must still work; query-stats is empty under TCG.
        let log = std::fs::read_to_string(dir.join("qemu-kvm.log")).unwrap_or_default();
        eprintln!("KVM did not start ({}); checking the QMP client under TCG instead", log.trim());
        let (_qemu, sock) = start_qemu("tcg", &dir).expect("qemu starts under TCG");
        let mut c = QmpClient::connect(&sock).unwrap();
        assert_eq!(c.execute("query-status", None).unwrap()["status"], "running");
        let mut src = QmpStats::new("vm-tcg", &sock);
        assert!(sample(&mut src).is_empty(), "no KVM statistics under TCG");
        return;
    };
    // Unrelated commands and events on the same connection do not confuse the client.
    let mut c = QmpClient::connect(&sock).unwrap();
    c.execute("stop", None).unwrap();
    c.execute("cont", None).unwrap(); // emits STOP/RESUME events
    assert_eq!(c.execute("query-status", None).unwrap()["status"], "running");
    let err = c.execute("no-such-command", None).unwrap_err();
    assert!(err.to_string().contains("CommandNotFound"), "{err}");
    // qemu serves one QMP client at a time: free the socket for the source.
    drop(c);

    let mut src = QmpStats::new("vm-kvm", &sock);
    let first = sample(&mut src);
    std::thread::sleep(Duration::from_millis(1500));
    let second = sample(&mut src);
    let (a, b) = (value(&first, "vcpu.exits"), value(&second, "vcpu.exits"));
    eprintln!("vcpu.exits {a} -> {b}; {} counters per read", second.len());
    assert!(b > a, "KVM exits did not move: {a} -> {b}");
    for name in ["vcpu.io_exits", "vcpu.mmio_exits", "vcpu.halt_exits", "vcpu.hypercalls", "vcpu.irq_injections"] {
        value(&second, name);
    }
    assert!(second.iter().any(|s| s.counter.starts_with("vm.")));

    // Tracepoints of the same qemu, counting only.
    match KvmTracepoints::new("vm-kvm", qemu.0) {
        Ok(mut tp) => {
            let events: Vec<String> = tp.events().map(String::from).collect();
            let t1 = sample(&mut tp);
            std::thread::sleep(Duration::from_millis(1500));
            let t2 = sample(&mut tp);
            let moved: Vec<(&str, u64)> = t2
                .iter()
                .zip(&t1)
                .filter(|(b, a)| b.value > a.value)
                .map(|(b, a)| (b.counter.as_str(), b.value - a.value))
                .collect();
            eprintln!("tracepoints {events:?}; moved in 1.5 s: {moved:?}");
            assert!(!moved.is_empty(), "no KVM tracepoint counted anything");
        }
        Err(e) => assert!(!ci(), "tracepoints unavailable: {e}"),
    }

    // qemu's threads, by name.
    let p = sample(&mut ProcessCpu::new("vm-kvm", qemu.0));
    assert!(p.iter().any(|s| s.counter == "thread.CPU 0/KVM.cpu_ns"), "{p:?}");

    // The socket gone: an error for this source, not a panic, and a reconnect later.
    drop(qemu);
    let mut out = Vec::new();
    assert!(src.sample(0, &mut out).is_err());
}

/// A named network namespace `vmgt...`, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("vmgt-tel-{tag}-{}", std::process::id());
        let _ = exec::Cmd::new("ip").args(["netns", "del", &name]).run();
        exec::Cmd::new("ip").args(["netns", "add", &name]).run().unwrap();
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        exec::Cmd::new("ip").arg("-n").arg(&self.0).args(args).run().unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = exec::Cmd::new("ip").args(["netns", "del", &self.0]).run();
    }
}

fn udp_burst_in(ns: &str, n: usize) {
    netns::run_in(ns, move || {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..n {
            tx.send_to(b"vmguard", rx.local_addr().unwrap()).unwrap();
        }
    })
    .unwrap();
}

#[test]
fn netdev_and_snmp_read_inside_the_namespace() {
    if !root() {
        return;
    }
    let ns = Netns::new("net");
    // A veth pair that exists only inside the namespace (no dummy module on every host).
    let dummy = "vmgtv0";
    ns.ip(&["link", "add", dummy, "type", "veth", "peer", "name", "vmgtv1"]);

    // Seen from a thread inside the namespace: /proc/thread-self/net/dev lists the namespace's interfaces,
    // while /sys still shows the host's (the reason the source does not use /sys/class/net).
    let name = ns.0.clone();
    let (in_proc, in_sys) = netns::run_in(&name, move || {
        let proc = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        (proc.contains(&format!("{dummy}:")), Path::new(&format!("/sys/class/net/{dummy}")).exists())
    })
    .unwrap();
    assert!(in_proc, "the namespace's own interface is in /proc/thread-self/net/dev");
    assert!(!in_sys, "/sys in a setns'd thread shows the host, as documented");

    let mut src = NetDev::new("ns-guest", &Iface::host_side("lo", Some(ns.0.clone())));
    let before = sample(&mut src);
    udp_burst_in(&ns.0, 100);
    let after = sample(&mut src);
    let d = value(&after, "rx_packets") - value(&before, "rx_packets");
    assert!((100..200).contains(&d), "lo rx_packets moved by {d} for 100 datagrams");

    let mut missing = NetDev::new("ns-guest", &Iface::host_side("nope0", Some(ns.0.clone())));
    let err = missing.sample(0, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("nope0 not found"), "{err}");

    // SNMP counters through a process living in the namespace.
    let dir = scratch("snmp");
    let pid = exec::Cmd::new("sleep").arg("30").netns(&ns.0).spawn_detached(&dir.join("sleep.log")).unwrap();
    let sleeper = Proc(pid);
    std::thread::sleep(Duration::from_millis(200));
    let mut snmp = NetSnmp::new("ns-guest", sleeper.0);
    let before = sample(&mut snmp);
    udp_burst_in(&ns.0, 50);
    let after = sample(&mut snmp);
    let d = value(&after, "Udp.OutDatagrams") - value(&before, "Udp.OutDatagrams");
    assert_eq!(d, 50, "Udp.OutDatagrams of the namespace");
    value(&after, "TcpExt.SyncookiesSent");
    value(&after, "TcpExt.ListenDrops");
    drop(sleeper);
}

/// A v1 cgroup `vmgt...` in the cpu and cpuacct hierarchies (or v2), removed when dropped.
struct Cgroup(Vec<PathBuf>);

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn cgroup_cpu_use_grows_with_a_busy_process() {
    if !root() {
        return;
    }
    let rel = format!("vmgt-tel-{}", std::process::id());
    let root = Path::new("/sys/fs/cgroup");
    let v1 = root.join("cpuacct").is_dir();
    let dirs: Vec<PathBuf> =
        if v1 { vec![root.join("cpu").join(&rel), root.join("cpuacct").join(&rel)] } else { vec![root.join(&rel)] };
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let cg = Cgroup(dirs);
    let dir = scratch("cg");
    let pid = exec::Cmd::new("sh").args(["-c", "while :; do :; done"]).spawn_detached(&dir.join("busy.log")).unwrap();
    let busy = Proc(pid);
    for d in &cg.0 {
        std::fs::write(d.join("cgroup.procs"), busy.0.to_string()).unwrap();
    }
    let mut src = telemetry::cgroup::CgroupCpu::new("busy", &rel);
    let a = sample(&mut src);
    std::thread::sleep(Duration::from_millis(500));
    let b = sample(&mut src);
    let used = value(&b, "cpu.usage_ns") - value(&a, "cpu.usage_ns");
    eprintln!(
        "busy loop used {} ms of CPU in 500 ms ({})",
        used / 1_000_000,
        if v1 { "cgroup v1" } else { "cgroup v2" }
    );
    assert!(used > 100_000_000, "{used} ns");
    value(&b, "cpu.nr_throttled");
    drop(busy);
    // Wait for the cgroup to empty before the guard removes it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && std::fs::read_to_string(cg.0[0].join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(cg);
}

/// The flow source on a real veth: handshakes each way, a refused UDP datagram, resets to a closed port,
/// counted on the host side of the link with the guest's directions.
#[test]
fn flow_capture_counts_handshakes_by_direction_on_a_veth() {
    use telemetry::flow::{FLOW_COUNTERS, FlowCapture};
    if !root() {
        return;
    }
    // `guest` holds the guest's end of the link; `host` the host side the source watches.
    let guest = Netns::new("flg");
    let host = Netns::new("flh");
    guest.ip(&["link", "add", "vmgtf0", "type", "veth", "peer", "name", "vmgtf1", "netns", &host.0]);
    guest.ip(&["addr", "add", "10.254.7.2/24", "dev", "vmgtf0"]);
    guest.ip(&["link", "set", "vmgtf0", "up"]);
    host.ip(&["addr", "add", "10.254.7.1/24", "dev", "vmgtf1"]);
    host.ip(&["link", "set", "vmgtf1", "up"]);
    let mut src = FlowCapture::new("flow-guest", &Iface::host_side("vmgtf1", Some(host.0.clone())));
    let before = sample(&mut src);
    assert_eq!(before.len(), FLOW_COUNTERS.len());

    // Three connections the host side opens to the guest, one the guest opens to the host side.
    let listener = netns::run_in(&guest.0, || std::net::TcpListener::bind("10.254.7.2:8080").unwrap()).unwrap();
    let up = netns::run_in(&host.0, || std::net::TcpListener::bind("10.254.7.1:8081").unwrap()).unwrap();
    netns::run_in(&host.0, || {
        for _ in 0..3 {
            let mut c = std::net::TcpStream::connect("10.254.7.2:8080").unwrap();
            std::io::Write::write_all(&mut c, b"hello").unwrap();
        }
        // A closed port: answered with a reset.
        assert!(std::net::TcpStream::connect("10.254.7.2:9").is_err());
        // A closed UDP port: answered with ICMP port unreachable.
        let u = std::net::UdpSocket::bind("10.254.7.1:0").unwrap();
        u.send_to(b"x", "10.254.7.2:9").unwrap();
    })
    .unwrap();
    netns::run_in(&guest.0, || drop(std::net::TcpStream::connect("10.254.7.1:8081").unwrap())).unwrap();
    drop((listener, up));
    std::thread::sleep(Duration::from_millis(300));
    let after = sample(&mut src);
    let d = |c: &str| value(&after, c) - value(&before, c);
    assert_eq!(d("syn_in"), 4, "three connections and one to a closed port");
    assert_eq!(d("synack_out"), 3);
    assert_eq!(d("handshakes_in"), 3);
    assert_eq!(d("handshakes_failed_in"), 0, "a reset port refuses, it does not fail a handshake");
    assert_eq!((d("syn_out"), d("synack_in"), d("handshakes_out")), (1, 1, 1));
    assert!(d("rst_out") >= 1, "the closed port's reset");
    assert_eq!((d("udp_in"), d("icmp_unreach_out")), (1, 1));
    assert_eq!(d("remote_addrs_in"), 1);
    assert_eq!(d("capture_drops"), 0);
    assert!(d("capture_frames") >= 10 && d("frames_unparsed") <= d("frames"));
}
