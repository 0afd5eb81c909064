use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use proptest::prelude::*;

use super::*;

const GUEST: [u8; 4] = [10, 0, 11, 2];
const CLIENT: [u8; 4] = [10, 0, 2, 2];

fn counter(a: &FlowAccounting, name: &str) -> u64 {
    a.counts()[FLOW_COUNTERS.iter().position(|n| *n == name).expect("known counter")]
}

/// A TCP frame from `src:sp` to `dst:dp` with the given flags and payload.
fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, flags: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, 64).tcp(sp, dp, 1000, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(2000),
            'R' => b.rst(),
            'F' => b.fin(),
            _ => unreachable!(),
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, 64).udp(sp, dp).write(&mut out, &[0; 18]).unwrap();
    out
}

fn icmp_unreachable(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port))
        .write(&mut out, &[0; 28])
        .unwrap();
    out
}

#[test]
fn a_handshake_to_the_guest_completes_in() {
    let mut a = FlowAccounting::new();
    a.observe(Direction::In, &tcp(CLIENT, 40000, GUEST, 80, "S", &[]));
    a.observe(Direction::Out, &tcp(GUEST, 80, CLIENT, 40000, "SA", &[]));
    a.observe(Direction::In, &tcp(CLIENT, 40000, GUEST, 80, "A", &[]));
    a.observe(Direction::In, &tcp(CLIENT, 40000, GUEST, 80, "A", b"GET / HTTP/1.1\r\n\r\n"));
    a.observe(Direction::In, &tcp(CLIENT, 40000, GUEST, 80, "FA", &[]));
    a.end_round();
    assert_eq!(counter(&a, "syn_in"), 1);
    assert_eq!(counter(&a, "synack_out"), 1);
    assert_eq!(counter(&a, "handshakes_in"), 1);
    assert_eq!(counter(&a, "handshakes_out"), 0);
    assert_eq!(counter(&a, "fin_in"), 1);
    assert_eq!(counter(&a, "remote_addrs_in"), 1);
    assert_eq!(counter(&a, "flows_in"), 1);
    assert_eq!(counter(&a, "frames"), 5);
    assert_eq!(counter(&a, "frames_unparsed"), 0);
    assert_eq!(a.pending(), 0);
}

#[test]
fn a_handshake_from_the_guest_completes_out() {
    let mut a = FlowAccounting::new();
    a.observe(Direction::Out, &tcp(GUEST, 50000, CLIENT, 5201, "S", &[]));
    a.observe(Direction::In, &tcp(CLIENT, 5201, GUEST, 50000, "SA", &[]));
    // An ACK the wrong way (from the responder) does not complete it.
    a.observe(Direction::In, &tcp(CLIENT, 5201, GUEST, 50000, "A", &[]));
    assert_eq!(counter(&a, "handshakes_out"), 0);
    a.observe(Direction::Out, &tcp(GUEST, 50000, CLIENT, 5201, "A", &[]));
    assert_eq!((counter(&a, "syn_out"), counter(&a, "synack_in")), (1, 1));
    assert_eq!((counter(&a, "handshakes_out"), counter(&a, "handshakes_in")), (1, 0));
}

#[test]
fn a_spoofed_flood_never_completes_and_its_sources_are_counted() {
    let mut a = FlowAccounting::new();
    for i in 0..2000u32 {
        let src = Ipv4Addr::from(0x0a00_6400 + i).octets();
        a.observe(Direction::In, &tcp(src, 1024 + (i % 50000) as u16, GUEST, 80, "S", &[]));
        a.observe(Direction::Out, &tcp(GUEST, 80, src, 1024 + (i % 50000) as u16, "SA", &[]));
    }
    a.end_round();
    assert_eq!(counter(&a, "syn_in"), 2000);
    assert_eq!(counter(&a, "handshakes_in"), 0);
    let addrs = counter(&a, "remote_addrs_in") as f64;
    assert!((addrs - 2000.0).abs() < 0.15 * 2000.0, "{addrs}");
    // Answers go to as many remotes.
    let out = counter(&a, "remote_addrs_out") as f64;
    assert!((out - 2000.0).abs() < 0.15 * 2000.0, "{out}");
    // Unanswered handshakes fail after two to three rounds.
    assert_eq!(a.pending(), 2000);
    assert_eq!(counter(&a, "handshakes_failed_in"), 0);
    assert_eq!(counter(&a, "handshakes_new_in"), 2000, "begun at once, failed later");
    a.end_round();
    a.end_round();
    assert_eq!(a.pending(), 0);
    assert_eq!(counter(&a, "handshakes_failed_in"), 2000);
    assert_eq!(counter(&a, "handshakes_failed_out"), 0);
}

#[test]
fn a_dropped_syn_retransmitted_still_completes() {
    // A flash crowd: the listen queue drops the first SYN; the client retries 1 s, then 2 s later.
    let mut a = FlowAccounting::new();
    a.observe(Direction::In, &tcp(CLIENT, 40001, GUEST, 80, "S", &[]));
    a.end_round();
    a.observe(Direction::In, &tcp(CLIENT, 40001, GUEST, 80, "S", &[]));
    a.end_round();
    a.end_round();
    a.observe(Direction::In, &tcp(CLIENT, 40001, GUEST, 80, "S", &[]));
    a.observe(Direction::Out, &tcp(GUEST, 80, CLIENT, 40001, "SA", &[]));
    a.observe(Direction::In, &tcp(CLIENT, 40001, GUEST, 80, "A", &[]));
    for _ in 0..3 {
        a.end_round();
    }
    assert_eq!((counter(&a, "syn_in"), counter(&a, "handshakes_in"), counter(&a, "handshakes_failed_in")), (3, 1, 0));
    assert_eq!(counter(&a, "handshakes_new_in"), 1, "three SYNs, one handshake");
    assert_eq!(counter(&a, "syn_repeats_in"), 0, "retransmissions a round or more apart");
    // A flood reusing one connection's ports: repeats within the round.
    for _ in 0..100 {
        a.observe(Direction::In, &tcp([10, 0, 200, 9], 4444, GUEST, 80, "S", &[]));
    }
    a.end_round();
    assert_eq!((counter(&a, "syn_repeats_in"), counter(&a, "handshakes_new_in")), (99, 2));
}

#[test]
fn resets_fail_or_refuse_a_handshake_by_who_sends_them() {
    let mut a = FlowAccounting::new();
    // The guest's SYN answered by a SYN-ACK it resets (its kernel never sent the SYN: a spoofing
    // zombie's victim answering someone else): a failed handshake of the guest's.
    a.observe(Direction::Out, &tcp(GUEST, 1234, CLIENT, 80, "S", &[]));
    a.observe(Direction::In, &tcp(CLIENT, 80, GUEST, 1234, "SA", &[]));
    a.observe(Direction::Out, &tcp(GUEST, 1234, CLIENT, 80, "R", &[]));
    // A SYN to the guest's closed port, refused with a reset: not a failed handshake.
    a.observe(Direction::In, &tcp(CLIENT, 5555, GUEST, 9, "S", &[]));
    a.observe(Direction::Out, &tcp(GUEST, 9, CLIENT, 5555, "RA", &[]));
    for _ in 0..3 {
        a.end_round();
    }
    assert_eq!(counter(&a, "handshakes_failed_out"), 1);
    assert_eq!(counter(&a, "handshakes_failed_in"), 0);
    assert_eq!((counter(&a, "rst_out"), a.pending()), (2, 0));
}

#[test]
fn the_handshake_table_is_bounded() {
    let mut a = FlowAccounting::new();
    let n = HANDSHAKE_TABLE as u32 + 100;
    for i in 0..n {
        let dst = Ipv4Addr::from(0x0a00_6400 + i).octets();
        a.observe(Direction::Out, &tcp(GUEST, 80, dst, 2000, "SA", &[]));
    }
    assert_eq!(a.pending(), HANDSHAKE_TABLE);
    assert_eq!(counter(&a, "handshakes_untracked"), 100);
    assert_eq!(counter(&a, "handshakes_failed_in"), 100, "untracked handshakes count as failed");
    // A retransmitted SYN-ACK is not tracked twice.
    a.observe(Direction::Out, &tcp(GUEST, 80, [10, 0, 100, 0], 2000, "SA", &[]));
    assert_eq!(counter(&a, "handshakes_untracked"), 100);
}

#[test]
fn resets_udp_and_unreachables_by_direction() {
    let mut a = FlowAccounting::new();
    a.observe(Direction::In, &tcp(CLIENT, 1, GUEST, 81, "A", &[]));
    a.observe(Direction::Out, &tcp(GUEST, 81, CLIENT, 1, "R", &[]));
    a.observe(Direction::In, &udp(CLIENT, 9, GUEST, 9999));
    a.observe(Direction::Out, &icmp_unreachable(GUEST, CLIENT));
    a.observe(Direction::Out, &udp(GUEST, 53, CLIENT, 53));
    assert_eq!((counter(&a, "rst_out"), counter(&a, "rst_in")), (1, 0));
    assert_eq!((counter(&a, "udp_in"), counter(&a, "udp_out")), (1, 1));
    a.end_round();
    assert_eq!((counter(&a, "udp_flows_in"), counter(&a, "udp_flows_out")), (1, 1));
    assert_eq!((counter(&a, "icmp_unreach_out"), counter(&a, "icmp_unreach_in")), (1, 0));
    // An ARP frame is seen but not parsed.
    let mut arp = vec![0xffu8; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    a.observe(Direction::In, &arp);
    assert_eq!((counter(&a, "frames"), counter(&a, "frames_unparsed")), (6, 1));
}

#[test]
fn frames_cut_to_the_snap_length_still_count() {
    let mut a = FlowAccounting::new();
    let f = tcp(CLIENT, 40000, GUEST, 80, "S", &[0; 1000]);
    a.observe(Direction::In, &f[..SNAPLEN as usize]);
    assert_eq!(counter(&a, "syn_in"), 1);
    assert_eq!(counter(&a, "frames_unparsed"), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Whatever arrives on the link: no panic, every frame counted once, the table bounded.
    #[test]
    fn arbitrary_frames_never_panic(frames in proptest::collection::vec(
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..160)), 0..40)) {
        let mut a = FlowAccounting::new();
        for (dir_in, f) in &frames {
            a.observe(if *dir_in { Direction::In } else { Direction::Out }, f);
        }
        a.end_round();
        prop_assert_eq!(counter(&a, "frames"), frames.len() as u64);
        prop_assert!(counter(&a, "frames_unparsed") <= frames.len() as u64);
        prop_assert!(a.pending() <= 3 * HANDSHAKE_TABLE);
    }

    /// Valid TCP headers with mutated bytes after them (and any cut) never panic either.
    #[test]
    fn mutated_tcp_frames_never_panic(flags in "[SARF]{0,4}", cut in 0usize..120, flip in any::<(usize, u8)>()) {
        let mut f = tcp(CLIENT, 1, GUEST, 2, &flags.chars().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<String>(), &[1; 40]);
        let i = flip.0 % f.len();
        f[i] ^= flip.1;
        f.truncate(cut.max(1));
        let mut a = FlowAccounting::new();
        a.observe(Direction::In, &f);
        prop_assert_eq!(counter(&a, "frames"), 1);
    }
}

/// The filter program, run by the kernel itself: attached to the receiving end of a unix datagram
/// socket pair, whose messages it filters exactly as a packet socket's frames (offset 0 = Ethernet).
#[test]
fn the_kernel_runs_the_filter_as_intended() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: valid out-array of two descriptors.
    assert_eq!(
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) },
        0
    );
    // SAFETY: fresh descriptors, owned once each.
    let (tx, rx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let prog = filter_program();
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: a valid sock_fprog for the call's duration.
    let r = unsafe {
        libc::setsockopt(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            std::mem::size_of_val(&fprog) as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "the kernel refused the filter: {}", std::io::Error::last_os_error());
    let timeout = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
    // SAFETY: valid timeval.
    unsafe {
        libc::setsockopt(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of_val(&timeout) as libc::socklen_t,
        )
    };
    // What arrives of a frame: its length, or None when the filter dropped it.
    let pass = |frame: &[u8]| -> Option<usize> {
        // SAFETY: valid buffers of the stated lengths.
        unsafe { libc::send(tx.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        let mut buf = [0u8; 2048];
        let n = unsafe { libc::recv(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n >= 0).then_some(n as usize)
    };
    let snap = SNAPLEN as usize;
    assert_eq!(pass(&tcp(CLIENT, 1, GUEST, 80, "S", &[])), Some(54));
    assert_eq!(pass(&tcp(CLIENT, 1, GUEST, 80, "S", &[7; 400])), Some(snap), "cut to the headers");
    assert_eq!(pass(&tcp(GUEST, 80, CLIENT, 1, "SA", &[])), Some(54));
    assert_eq!(pass(&tcp(CLIENT, 1, GUEST, 80, "A", &[])), Some(54), "a pure ACK");
    assert_eq!(pass(&tcp(CLIENT, 1, GUEST, 80, "A", &[7; 1000])), None, "bulk data stays in the kernel");
    assert_eq!(pass(&tcp(CLIENT, 1, GUEST, 80, "RA", &[])), Some(54));
    assert_eq!(pass(&tcp(CLIENT, 1, GUEST, 80, "FA", &[7; 100])), Some(snap), "FIN with data, cut");
    assert_eq!(pass(&udp(CLIENT, 1, GUEST, 9)), Some(60));
    assert_eq!(pass(&icmp_unreachable(GUEST, CLIENT)), Some(70));
    let mut arp = vec![0xffu8; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(pass(&arp), None);
    // IPv6.
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(1, 80, 1, 100)
        .syn()
        .write(&mut v6, &[])
        .unwrap();
    assert_eq!(pass(&v6), Some(74));
    let mut v6data = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(1, 80, 1, 100)
        .ack(5)
        .write(&mut v6data, &[1; 500])
        .unwrap();
    assert_eq!(pass(&v6data), None);
}
