//! The Xen stream relay against a fake qemu: a unix socket server in the test that writes known bytes.
//! Every socket lives in a temporary directory removed on drop (also when a test fails); the relay
//! process of the binary test is killed by its PID on drop.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use lab::relay::{ChannelSpec, Framing, Limits, Relay, RelaySpec, RelayStatus, Unread};

/// A fake qemu chardev: accepts connections on `path` and hands each to the test.
struct FakeQemu {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    conns: Receiver<UnixStream>,
}

impl FakeQemu {
    fn listen(path: &Path) -> FakeQemu {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, conns) = channel();
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        if tx.send(c).is_err() {
                            return;
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeQemu { path: path.to_path_buf(), stop, thread: Some(thread), conns }
    }

    /// The relay's connection.
    fn client(&self) -> UnixStream {
        self.conns.recv_timeout(Duration::from_secs(10)).expect("the relay connects to qemu's socket")
    }
}

impl Drop for FakeQemu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("vmguard-relay-test-").tempdir().unwrap()
}

fn spec(dir: &Path, framing: Framing, limits: Limits) -> RelaySpec {
    spec_unread(dir, framing, limits, Unread::Drop)
}

fn spec_unread(dir: &Path, framing: Framing, limits: Limits, unread: Unread) -> RelaySpec {
    RelaySpec {
        channels: vec![ChannelSpec {
            name: "trace".into(),
            upstream: dir.join("trace.qemu.sock"),
            listen: dir.join("trace.sock"),
            framing,
            unread,
        }],
        limits,
        status: Some(dir.join("relay.json")),
    }
}

/// A known stream: no short period, so any slice of it is found at one offset only.
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn reader(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    s
}

/// Read exactly `n` bytes within `within`.
fn read_n(s: &mut UnixStream, n: usize, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut out = vec![0u8; n];
    let mut at = 0;
    while at < n {
        assert!(Instant::now() < deadline, "got {at} of {n} bytes within {within:?}");
        match s.read(&mut out[at..]) {
            Ok(0) => panic!("the relay closed the reader after {at} of {n} bytes"),
            Ok(k) => at += k,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
    out
}

/// Nothing more arrives for `quiet`.
fn assert_silent(s: &mut UnixStream, quiet: Duration) {
    let until = Instant::now() + quiet;
    let mut b = [0u8; 64];
    while Instant::now() < until {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(k) => panic!("unexpected {k} bytes: {:?}", &b[..k]),
            Err(_) => {}
        }
    }
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn readers(relay: &Relay) -> usize {
    relay.status().channels[0].readers
}

#[test]
fn two_readers_both_get_every_byte() {
    let d = dir();
    let qemu = FakeQemu::listen(&d.path().join("trace.qemu.sock"));
    let relay = Relay::start(&spec(d.path(), Framing::Bytes, Limits::default())).unwrap();
    let mut up = qemu.client();
    let (mut a, mut b) = (reader(&d.path().join("trace.sock")), reader(&d.path().join("trace.sock")));
    wait_for("two readers", Duration::from_secs(5), || readers(&relay) == 2);
    let data = pattern(1 << 20);
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || up.write_all(&data).map(|()| up))
    };
    let got_a = read_n(&mut a, data.len(), Duration::from_secs(30));
    let got_b = read_n(&mut b, data.len(), Duration::from_secs(30));
    let _up = writer.join().unwrap().unwrap();
    assert!(got_a == data, "reader a got other bytes");
    assert!(got_b == data, "reader b got other bytes");
    let st = relay.shutdown();
    let c = &st.channels[0];
    assert_eq!((c.upstream_bytes, c.unread_bytes, c.reader_dropped_bytes), (1 << 20, 0, 0), "{c:?}");
    assert_eq!((c.readers_total, c.upstream_connects), (2, 1));
}

#[test]
fn a_late_reader_gets_the_stream_from_its_join_on_and_unread_bytes_are_counted() {
    let d = dir();
    let qemu = FakeQemu::listen(&d.path().join("trace.qemu.sock"));
    let relay = Relay::start(&spec(d.path(), Framing::Bytes, Limits::default())).unwrap();
    let mut up = qemu.client();
    let data = pattern(300_000);
    // Before any reader: drained anyway, dropped and counted.
    up.write_all(&data[..1000]).unwrap();
    wait_for("unread bytes counted", Duration::from_secs(5), || relay.status().channels[0].unread_bytes == 1000);
    let mut a = reader(&d.path().join("trace.sock"));
    wait_for("reader a", Duration::from_secs(5), || readers(&relay) == 1);
    up.write_all(&data[1000..100_000]).unwrap();
    assert!(read_n(&mut a, 99_000, Duration::from_secs(10)) == data[1000..100_000]);
    let mut b = reader(&d.path().join("trace.sock"));
    wait_for("reader b", Duration::from_secs(5), || readers(&relay) == 2);
    up.write_all(&data[100_000..]).unwrap();
    assert!(read_n(&mut a, 200_000, Duration::from_secs(10)) == data[100_000..]);
    assert!(read_n(&mut b, 200_000, Duration::from_secs(10)) == data[100_000..], "the late reader starts at its join");
    assert_silent(&mut b, Duration::from_millis(300));
    // The status file says the same.
    wait_for("status file", Duration::from_secs(5), || {
        RelayStatus::read(&d.path().join("relay.json"))
            .is_some_and(|s| s.channels[0].upstream_bytes == 300_000 && s.channels[0].readers == 2)
    });
    let st = relay.shutdown();
    assert_eq!(st.channels[0].unread_bytes, 1000);
}

/// Writes `data` to qemu's end in 4 KiB pieces; returns when all is written.
fn write_in_thread(mut up: UnixStream, data: Arc<Vec<u8>>) -> std::thread::JoinHandle<UnixStream> {
    std::thread::spawn(move || {
        for piece in data.chunks(4096) {
            up.write_all(piece).unwrap();
        }
        up
    })
}

/// Read until `want` bytes came or nothing came for `quiet`.
fn read_until_quiet(s: &mut UnixStream, want: usize, quiet: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut last = Instant::now();
    while got.len() < want && last.elapsed() < quiet {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
            Err(_) => {}
        }
    }
    got
}

#[test]
fn a_held_stream_makes_the_writer_wait_until_a_reader_joins_and_drops_only_what_waited() {
    let d = dir();
    let qemu = FakeQemu::listen(&d.path().join("trace.qemu.sock"));
    let relay = Relay::start(&spec_unread(d.path(), Framing::Bytes, Limits::default(), Unread::Hold)).unwrap();
    let up = qemu.client();
    wait_for("held", Duration::from_secs(5), || relay.status().channels[0].held);
    // 8 MiB with no reader: far more than the sockets buffer, so qemu's writer must wait.
    let data = Arc::new(pattern(8 << 20));
    let writer = write_in_thread(up, Arc::clone(&data));
    std::thread::sleep(Duration::from_millis(700));
    assert!(!writer.is_finished(), "the writer finished with no reader: the relay read a held stream");
    let st = relay.status().channels[0].clone();
    assert!(st.held && st.upstream_bytes == 0 && st.unread_bytes == 0, "nothing is read while held: {st:?}");
    // A reader ends the hold: what waited in the socket is dropped (counted), the rest is the
    // stream's continuation, byte for byte, and the writer finishes.
    let mut a = reader(&d.path().join("trace.sock"));
    let got = read_until_quiet(&mut a, data.len(), Duration::from_secs(3));
    let _up = writer.join().unwrap();
    let st = relay.status().channels[0].clone();
    assert!(!st.held, "{st:?}");
    let dropped = st.unread_bytes as usize;
    assert!(dropped > 0 && dropped < 4 << 20, "the bytes that waited in the socket: {dropped}");
    assert_eq!(dropped + got.len(), data.len(), "dropped + read = written: {st:?}");
    assert!(got[..] == data[dropped..], "the reader gets the stream on from where the dropped bytes end");
    assert_eq!(st.upstream_bytes, data.len() as u64);
    // The reader leaves: held again, and the next writes wait again.
    drop(a);
    wait_for("held again", Duration::from_secs(5), || relay.status().channels[0].held);
    relay.shutdown();
}

#[test]
fn a_held_line_stream_restarts_at_a_line_boundary() {
    let d = dir();
    let qemu = FakeQemu::listen(&d.path().join("trace.qemu.sock"));
    let relay = Relay::start(&spec_unread(d.path(), Framing::Lines, Limits::default(), Unread::Hold)).unwrap();
    let mut up = qemu.client();
    wait_for("held", Duration::from_secs(5), || relay.status().channels[0].held);
    // Waiting in the socket: whole lines and the start of one.
    up.write_all(b"old 1\nold 2\nhalf of a").unwrap();
    let mut a = reader(&d.path().join("trace.sock"));
    wait_for("reading again", Duration::from_secs(5), || !relay.status().channels[0].held);
    // The cut line's rest is dropped too; the next whole lines come.
    up.write_all(b" line\nnew 1\nnew 2\n").unwrap();
    assert_eq!(read_n(&mut a, 12, Duration::from_secs(5)), b"new 1\nnew 2\n");
    assert_silent(&mut a, Duration::from_millis(200));
    let st = relay.shutdown();
    assert_eq!(st.channels[0].unread_bytes, 21, "{:?}", st.channels[0]);
    assert_eq!(st.channels[0].line_dropped_bytes, 6, "{:?}", st.channels[0]);
}

#[test]
fn a_stats_reader_joining_mid_line_starts_at_a_line_boundary() {
    let d = dir();
    let qemu = FakeQemu::listen(&d.path().join("trace.qemu.sock"));
    let relay = Relay::start(&spec(d.path(), Framing::Lines, Limits { max_line: 64, ..Limits::default() })).unwrap();
    let mut up = qemu.client();
    let mut a = reader(&d.path().join("trace.sock"));
    wait_for("reader a", Duration::from_secs(5), || readers(&relay) == 1);
    up.write_all(b"Inter-|   Receive\n vif1.0: 100 2").unwrap();
    assert_eq!(read_n(&mut a, 18, Duration::from_secs(5)), b"Inter-|   Receive\n");
    let mut b = reader(&d.path().join("trace.sock"));
    wait_for("reader b", Duration::from_secs(5), || readers(&relay) == 2);
    // The line under way when b joined reaches both whole; the next lines too.
    up.write_all(b"0 0\n@@VMGUARD-NETDEV-END\n").unwrap();
    let rest = b" vif1.0: 100 20 0\n@@VMGUARD-NETDEV-END\n";
    assert_eq!(read_n(&mut a, rest.len(), Duration::from_secs(5)), rest);
    assert_eq!(read_n(&mut b, rest.len(), Duration::from_secs(5)), rest);
    // A line longer than the limit is dropped whole for everyone, and counted.
    up.write_all(&[b'x'; 100]).unwrap();
    up.write_all(b"\nok\n").unwrap();
    assert_eq!(read_n(&mut b, 3, Duration::from_secs(5)), b"ok\n");
    assert_eq!(relay.shutdown().channels[0].line_dropped_bytes, 101);
}

#[test]
fn a_stalled_reader_stalls_neither_another_reader_nor_the_drain() {
    let d = dir();
    let qemu = FakeQemu::listen(&d.path().join("trace.qemu.sock"));
    let limits = Limits { queue_bytes: 1 << 20, ..Limits::default() };
    let relay = Relay::start(&spec(d.path(), Framing::Bytes, limits)).unwrap();
    let mut up = qemu.client();
    // The stalled reader connects and reads nothing until the end.
    let mut stalled = reader(&d.path().join("trace.sock"));
    let mut a = reader(&d.path().join("trace.sock"));
    wait_for("two readers", Duration::from_secs(5), || readers(&relay) == 2);
    let data = Arc::new(pattern(8 << 20));
    let received = Arc::new(AtomicU64::new(0));
    let reading = {
        let (data, received) = (Arc::clone(&data), Arc::clone(&received));
        std::thread::spawn(move || {
            let mut got = Vec::with_capacity(data.len());
            let mut buf = vec![0u8; 64 << 10];
            let deadline = Instant::now() + Duration::from_secs(60);
            while got.len() < data.len() && Instant::now() < deadline {
                if let Ok(n) = a.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    received.store(got.len() as u64, Ordering::Relaxed);
                }
            }
            got
        })
    };
    // qemu writes as fast as the fast reader takes it, never more than 512 KiB ahead of it (so the
    // fast reader's 1 MiB queue never fills): the stalled reader's does, many times over.
    let started = Instant::now();
    let mut at = 0;
    while at < data.len() {
        if at as u64 - received.load(Ordering::Relaxed) > 512 << 10 {
            assert!(started.elapsed() < Duration::from_secs(60), "the drain stalled at {at} bytes");
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let end = (at + (16 << 10)).min(data.len());
        up.write_all(&data[at..end]).unwrap();
        at = end;
    }
    let got = reading.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == *data, "the fast reader got other bytes");
    let st = relay.status();
    let c = &st.channels[0];
    assert_eq!(c.readers_overflowed, 1, "{c:?}");
    assert!(c.reader_dropped_bytes >= 6 << 20, "{c:?}");
    // The stalled reader gets what was queued for it, a prefix of the stream, then its connection ends.
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut prefix = Vec::new();
    stalled.read_to_end(&mut prefix).unwrap();
    assert!(!prefix.is_empty() && prefix.len() < 4 << 20, "{}", prefix.len());
    assert!(prefix[..] == data[..prefix.len()], "the stalled reader's bytes are the stream's first ones");
    // Its queue held at most the limit plus one chunk; the rest was dropped for it.
    assert_eq!(prefix.len() as u64 + relay.shutdown().channels[0].reader_dropped_bytes, data.len() as u64);
}

#[test]
fn the_relay_waits_for_qemu_and_reconnects_when_its_socket_closes() {
    let d = dir();
    let up_path = d.path().join("trace.qemu.sock");
    // qemu is not listening yet when the relay starts.
    let relay = Relay::start(&spec(d.path(), Framing::Bytes, Limits::default())).unwrap();
    let mut a = reader(&d.path().join("trace.sock"));
    wait_for("reader a", Duration::from_secs(5), || readers(&relay) == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(relay.status().channels[0].upstream_error.as_deref().is_some_and(|e| e.starts_with("connecting")));
    let qemu = FakeQemu::listen(&up_path);
    let mut up = qemu.client();
    up.write_all(b"first qemu").unwrap();
    assert_eq!(read_n(&mut a, 10, Duration::from_secs(5)), b"first qemu");
    // qemu restarts: its socket closes, a new one is made.
    drop(up);
    drop(qemu);
    wait_for("upstream closed", Duration::from_secs(5), || !relay.status().channels[0].upstream_connected);
    let qemu = FakeQemu::listen(&up_path);
    let mut up = qemu.client();
    up.write_all(b"second").unwrap();
    // The reader stayed connected and reads on.
    assert_eq!(read_n(&mut a, 6, Duration::from_secs(5)), b"second");
    let st = relay.shutdown();
    assert_eq!(st.channels[0].upstream_connects, 2);
    assert_eq!(st.channels[0].upstream_bytes, 16);
}

#[test]
fn readers_past_the_limit_are_refused_and_a_live_socket_is_not_taken_over() {
    let d = dir();
    let _qemu = FakeQemu::listen(&d.path().join("trace.qemu.sock"));
    let spec = spec(d.path(), Framing::Bytes, Limits { max_readers: 1, ..Limits::default() });
    let relay = Relay::start(&spec).unwrap();
    let _a = reader(&d.path().join("trace.sock"));
    wait_for("reader a", Duration::from_secs(5), || readers(&relay) == 1);
    let mut b = reader(&d.path().join("trace.sock"));
    let mut buf = [0u8; 1];
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(b.read(&mut buf).unwrap(), 0, "the second reader is closed at once");
    assert_eq!(relay.status().channels[0].readers_refused, 1);
    // A second relay on the same paths is refused while the first serves.
    let err = Relay::start(&spec).err().expect("refused").to_string();
    assert!(err.contains("already served"), "{err}");
    relay.shutdown();
    assert!(!d.path().join("trace.sock").exists() && !d.path().join("relay.json").exists());
    // A stale socket (nobody accepting) is replaced.
    drop(UnixListener::bind(d.path().join("trace.sock")).unwrap());
    Relay::start(&spec).unwrap().shutdown();
}

/// The relay process, killed by its PID when a test fails before it stops it.
struct Proc(Option<std::process::Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_relay_binary_serves_both_streams_and_leaves_nothing_after_sigterm() {
    let d = dir();
    let p = |f: &str| d.path().join(f);
    let trace_qemu = FakeQemu::listen(&p("trace.qemu.sock"));
    let stats_qemu = FakeQemu::listen(&p("stats.qemu.sock"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vmguard-xen-relay"))
        .arg("--trace")
        .args([p("trace.qemu.sock"), p("trace.sock")])
        .arg("--stats")
        .args([p("stats.qemu.sock"), p("stats.sock")])
        .arg("--status")
        .arg(p("relay.json"))
        .stderr(std::fs::File::create(p("relay.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut proc = Proc(Some(child));
    wait_for("the relay's sockets", Duration::from_secs(10), || p("trace.sock").exists() && p("stats.sock").exists());
    let (mut t1, mut t2) = (reader(&p("trace.sock")), reader(&p("trace.sock")));
    let (mut s1, mut s2) = (reader(&p("stats.sock")), reader(&p("stats.sock")));
    let (mut tup, mut sup) = (trace_qemu.client(), stats_qemu.client());
    wait_for("four readers", Duration::from_secs(10), || {
        RelayStatus::read(&p("relay.json")).is_some_and(|s| {
            s.channel("trace").is_some_and(|c| c.readers == 2) && s.channel("stats").is_some_and(|c| c.readers == 2)
        })
    });
    let data = pattern(100_000);
    tup.write_all(&data).unwrap();
    sup.write_all(b"eth0: 1 2 3\n@@VMGUARD-NETDEV-END\n").unwrap();
    for t in [&mut t1, &mut t2] {
        assert!(read_n(t, data.len(), Duration::from_secs(10)) == data);
    }
    for s in [&mut s1, &mut s2] {
        assert_eq!(read_n(s, 33, Duration::from_secs(10)), b"eth0: 1 2 3\n@@VMGUARD-NETDEV-END\n");
    }
    // SIGTERM: it removes its sockets and status file and exits 0.
    // SAFETY: kill(2) on the PID of our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let mut child = proc.0.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            proc.0 = Some(child);
            panic!("the relay did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    for f in ["trace.sock", "stats.sock", "relay.json", "relay.tmp"] {
        assert!(!p(f).exists(), "{f} left behind");
    }
    let log = std::fs::read_to_string(p("relay.log")).unwrap();
    assert!(log.contains("trace: 100000 bytes from qemu"), "{log}");
    // Its readers see the end.
    let mut rest = Vec::new();
    t1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    t1.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}
