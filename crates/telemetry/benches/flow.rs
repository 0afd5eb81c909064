//! The flow source's user-space cost per frame: a spoofed SYN flood's SYNs (random sources) and the
//! victim's SYN-ACKs through [`FlowAccounting`], with a round closed every 17 000 frames (the
//! default flood's rate, one round a second). The kernel's share (the filter, the copy to the
//! socket) is measured end to end by `scripts/flow-cost.sh`.
//!
//! Run: `cargo bench -p telemetry --bench flow`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use telemetry::flow::{Direction, FlowAccounting};

fn frames(n: u32) -> Vec<(Direction, Vec<u8>)> {
    let guest = [10, 0, 10, 2];
    let mut out = Vec::new();
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let src = [10, 0, 128 | (x >> 24) as u8 & 0x7f, (x >> 16) as u8];
        let port = (x & 0xffff) as u16 | 1024;
        let mut syn = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, guest, 64)
            .tcp(port, 80, x, 64240)
            .syn()
            .write(&mut syn, &[])
            .unwrap();
        let mut synack = Vec::new();
        PacketBuilder::ethernet2([4; 6], [2; 6])
            .ipv4(guest, src, 64)
            .tcp(80, port, !x, 64240)
            .syn()
            .ack(x.wrapping_add(1))
            .write(&mut synack, &[])
            .unwrap();
        out.push((Direction::In, syn));
        out.push((Direction::Out, synack));
    }
    out
}

fn bench(c: &mut Criterion) {
    let frames = frames(8_500);
    let mut g = c.benchmark_group("flow");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("spoofed_syn_flood_one_round", |b| {
        let mut acct = FlowAccounting::new();
        b.iter(|| {
            for (dir, f) in &frames {
                acct.observe(*dir, black_box(f));
            }
            acct.end_round();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
