//! Crafting speed: the reference path (headers emitted, checksums from scratch) vs the template fast
//! path (only the varying fields and incremental checksums), per packet.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wire::craft::{Kind, PacketSpec, SynOptions};

fn rng(state: &mut u64) -> u64 {
    // splitmix64: cheap and good enough to feed the benchmark.
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn bench(c: &mut Criterion) {
    let spoof = "10.213.128.0/17".parse().unwrap();
    let dst = Ipv4Addr::new(10, 213, 10, 2);
    let mut group = c.benchmark_group("craft");
    group.throughput(Throughput::Elements(1));
    for (name, kind) in [
        ("syn_linux_options", Kind::Syn(SynOptions::LINUX)),
        ("syn_no_options", Kind::Syn(SynOptions::NONE)),
        ("ack", Kind::Ack),
        ("udp_64", Kind::Udp { payload_len: 64 }),
    ] {
        let spec = PacketSpec { kind, ..PacketSpec::syn(spoof, dst, 80) };
        let template = spec.template().unwrap();
        let mut buf = vec![0u8; 128];
        let mut s = 1u64;
        group.bench_function(format!("{name}/reference"), |b| {
            b.iter(|| {
                let v = spec.variation(rng(&mut s), rng(&mut s));
                black_box(spec.craft(&v, &mut buf).unwrap());
            })
        });
        template.write(&mut buf, &spec.variation(0, 0));
        group.bench_function(format!("{name}/template_patch"), |b| {
            b.iter(|| {
                template.patch_random(black_box(&mut buf), rng(&mut s), rng(&mut s));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
