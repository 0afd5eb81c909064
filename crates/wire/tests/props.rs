//! Property tests: every crafted packet parses back (with this crate and with etherparse), its
//! checksums verify, its source lies inside the spoof subnet, and the template fast path produces
//! exactly the bytes of the reference path.

use std::net::Ipv4Addr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use ipnet::Ipv4Net;
use proptest::prelude::*;
use wire::craft::{Kind, Number, PacketSpec, Port, SourceAddr, SynOptions};
use wire::tcp::{Flags, TcpOption};
use wire::{ipv4, tcp, udp};

fn syn_options() -> impl Strategy<Value = SynOptions> {
    (
        proptest::option::of(536u16..=9000),
        any::<bool>(),
        proptest::option::of((any::<u32>(), Just(0u32))),
        proptest::option::of(0u8..=14),
    )
        .prop_map(|(mss, sack_permitted, timestamps, window_scale)| SynOptions {
            mss,
            sack_permitted,
            timestamps,
            window_scale,
        })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        syn_options().prop_map(Kind::Syn),
        Just(Kind::Ack),
        (0u16..=1400).prop_map(|payload_len| Kind::Udp { payload_len }),
    ]
}

fn subnet() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, p)| Ipv4Net::new(Ipv4Addr::from(a), p).unwrap().trunc())
}

fn spec() -> impl Strategy<Value = PacketSpec> {
    (
        kind(),
        prop_oneof![subnet().prop_map(SourceAddr::Random), any::<u32>().prop_map(|a| SourceAddr::Fixed(a.into()))],
        any::<u32>(),
        prop_oneof![Just(Port::Random), any::<u16>().prop_map(Port::Fixed)],
        any::<u16>(),
        prop_oneof![Just(Number::Random), any::<u32>().prop_map(Number::Fixed)],
        prop_oneof![Just(Number::Random), any::<u32>().prop_map(Number::Fixed)],
        1u8..=255,
        any::<u16>(),
    )
        .prop_map(|(kind, src, dst, src_port, dst_port, seq, ack, ttl, window)| PacketSpec {
            kind,
            src,
            dst: dst.into(),
            src_port,
            dst_port,
            seq,
            ack,
            ttl,
            window,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn crafted_packets_parse_back_and_verify(spec in spec(), r0 in any::<u64>(), r1 in any::<u64>()) {
        let template = spec.template().unwrap();
        let v = spec.variation(r0, r1);
        let mut reference = vec![0u8; spec.packet_len()];
        let n = spec.craft(&v, &mut reference).unwrap();
        prop_assert_eq!(n, template.len());

        // The fast path writes exactly the reference bytes, whether from the template or by patching
        // a buffer that holds an earlier packet.
        let mut fast = vec![0u8; template.len()];
        template.write(&mut fast, &spec.variation(!r0, !r1));
        template.patch_random(&mut fast, r0, r1);
        prop_assert_eq!(&fast, &reference);

        // Our own parser.
        let ip = ipv4::Packet::new_checked(&fast[..]).unwrap();
        let ip_repr = ipv4::Repr::parse(&ip).unwrap();
        prop_assert_eq!(ip_repr.src, v.src);
        prop_assert_eq!(ip_repr.dst, spec.dst);
        prop_assert_eq!(ip_repr.ttl, spec.ttl);
        prop_assert_eq!(ip_repr.total_len(), fast.len());
        if let SourceAddr::Random(net) = spec.src {
            prop_assert!(net.contains(&ip_repr.src), "{} outside {}", ip_repr.src, net);
        }
        match spec.kind {
            Kind::Syn(opts) => {
                let seg = tcp::Packet::new_checked(ip.payload()).unwrap();
                let t = tcp::Repr::parse(&seg, v.src, spec.dst).unwrap();
                prop_assert_eq!(t.flags, Flags::SYN);
                prop_assert_eq!(t.seq, v.seq);
                prop_assert_eq!(t.src_port, v.src_port);
                prop_assert_eq!(t.dst_port, spec.dst_port);
                prop_assert_eq!(&t.options, &opts.to_options());
                let mss = t.options.iter().find_map(|o| if let TcpOption::Mss(m) = o { Some(*m) } else { None });
                prop_assert_eq!(mss, opts.mss);
            }
            Kind::Ack => {
                let seg = tcp::Packet::new_checked(ip.payload()).unwrap();
                let t = tcp::Repr::parse(&seg, v.src, spec.dst).unwrap();
                prop_assert_eq!(t.flags, Flags::ACK);
                prop_assert_eq!(t.ack, v.ack);
            }
            Kind::Udp { payload_len } => {
                let d = udp::Packet::new_checked(ip.payload()).unwrap();
                let u = udp::Repr::parse(&d, v.src, spec.dst).unwrap();
                prop_assert_eq!(u.payload_len, payload_len);
                prop_assert_ne!(d.checksum(), 0);
            }
        }

        // An independent parser: etherparse, with its own checksum computation.
        let sliced = SlicedPacket::from_ip(&fast).unwrap();
        let Some(NetSlice::Ipv4(ip4)) = &sliced.net else { panic!("not IPv4: {:?}", sliced.net) };
        let h = ip4.header();
        prop_assert_eq!(h.source_addr(), v.src);
        prop_assert_eq!(h.destination_addr(), spec.dst);
        prop_assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        let payload = ip4.payload().payload;
        match (&sliced.transport, spec.kind) {
            (Some(TransportSlice::Tcp(t)), Kind::Syn(_) | Kind::Ack) => {
                prop_assert_eq!(t.syn(), matches!(spec.kind, Kind::Syn(_)));
                prop_assert_eq!(t.ack(), spec.kind == Kind::Ack);
                prop_assert_eq!(t.sequence_number(), v.seq);
                let expect = t.to_header().calc_checksum_ipv4_raw(v.src.octets(), spec.dst.octets(), t.payload());
                prop_assert_eq!(expect.unwrap(), t.checksum());
                prop_assert_eq!(t.slice().len(), payload.len());
            }
            (Some(TransportSlice::Udp(u)), Kind::Udp { .. }) => {
                let expect = u.to_header().calc_checksum_ipv4_raw(v.src.octets(), spec.dst.octets(), u.payload());
                prop_assert_eq!(expect.unwrap(), u.checksum());
            }
            (other, kind) => prop_assert!(false, "etherparse saw {:?} for {:?}", other, kind),
        }
    }

    #[test]
    fn spoofed_sources_never_leave_the_subnet(net in subnet(), r in any::<u32>()) {
        let a = wire::pick_in_subnet(net, r);
        prop_assert!(net.contains(&a));
        if net.prefix_len() <= 30 {
            prop_assert_ne!(a, net.network());
            prop_assert_ne!(a, net.broadcast());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        if let Ok(ip) = ipv4::Packet::new_checked(&bytes[..]) {
            let _ = ipv4::Repr::parse(&ip);
            if let Ok(seg) = tcp::Packet::new_checked(ip.payload()) {
                let _ = tcp::Repr::parse(&seg, ip.src_addr(), ip.dst_addr());
            }
            if let Ok(d) = udp::Packet::new_checked(ip.payload()) {
                let _ = udp::Repr::parse(&d, ip.src_addr(), ip.dst_addr());
            }
        }
    }
}

#[test]
fn a_default_syn_matches_what_linux_sends() {
    let spec = PacketSpec::syn("10.213.128.0/17".parse().unwrap(), Ipv4Addr::new(10, 213, 10, 2), 80);
    let mut buf = vec![0u8; spec.packet_len()];
    spec.craft(&spec.variation(1, 2), &mut buf).unwrap();
    // MSS, SACK permitted + timestamps, NOP + window scale: Linux's SYN layout.
    assert_eq!(&buf[40..44], &[2, 4, 0x05, 0xb4]);
    assert_eq!(&buf[44..46], &[4, 2]);
    assert_eq!(&buf[46..48], &[8, 10]);
    assert_eq!(&buf[56..60], &[1, 3, 3, 7]);
    assert_eq!(buf[32] >> 4, 10, "data offset 10 words");
}
