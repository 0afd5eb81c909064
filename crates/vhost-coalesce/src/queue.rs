//! Moving frames between the virtqueues and the host side.
//!
//! The host side is abstracted as a [`FrameSource`] (RX: frames to give the guest) and a
//! [`FrameSink`] (TX: frames the guest sent), so the ring handling is tested on guest memory
//! built in the test, without a tap device or a guest.

use std::io::{self, Read, Write};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemory;

/// Size of `virtio_net_hdr_mrg_rxbuf`: the header in front of every frame once VIRTIO_F_VERSION_1
/// is negotiated (and the size the tap is set to with TUNSETVNETHDRSZ).
pub const VNET_HDR_LEN: usize = 12;

/// Largest frame accepted from the host side: without offloads the tap delivers at most
/// MTU-sized frames, but a 64 KiB buffer also covers a tap with a jumbo MTU.
pub const MAX_FRAME_LEN: usize = 65_536 + VNET_HDR_LEN;

/// Offset of `num_buffers` in the header.
const NUM_BUFFERS_OFFSET: usize = 10;

/// Whether the host side's frames carry the 12-byte vnet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostHdr {
    /// They do (a tap opened with IFF_VNET_HDR and TUNSETVNETHDRSZ 12): pass it through.
    Vnet,
    /// They do not: synthesise an empty header on RX and strip the guest's on TX.
    None,
}

/// Where received frames come from (the tap).
pub trait FrameSource {
    /// Reads one frame into `buf`; `Ok(None)` when none is waiting (EAGAIN).
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
}

/// Where transmitted frames go (the tap).
pub trait FrameSink {
    /// Writes one whole frame.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
}

/// A frame read from the host that is waiting for an RX buffer. Kept across calls so a frame read
/// while the ring was dry is delivered first once the guest refills, not lost.
#[derive(Debug)]
pub struct RxStash {
    buf: Vec<u8>,
    len: Option<usize>,
}

impl Default for RxStash {
    fn default() -> Self {
        RxStash { buf: vec![0; MAX_FRAME_LEN], len: None }
    }
}

impl RxStash {
    /// Whether a frame is waiting.
    pub fn is_holding(&self) -> bool {
        self.len.is_some()
    }

    /// Drops the waiting frame (device reset).
    pub fn clear(&mut self) {
        self.len = None;
    }
}

/// Why [`fill_rx`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStop {
    /// The host side has no more frames.
    SourceEmpty,
    /// A frame is waiting but the guest posted no RX buffer: the ring ran dry.
    RingDry,
    /// `max_frames` frames were delivered.
    Budget,
}

/// What [`fill_rx`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxOutcome {
    /// Frames placed in used buffers.
    pub frames: u32,
    /// Bytes written to guest memory, headers included.
    pub bytes: u64,
    /// Frames dropped because they did not fit the guest's buffer.
    pub dropped: u32,
    pub stop: RxStop,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("virtqueue: {0}")]
    Queue(#[from] virtio_queue::Error),
    #[error("guest memory access: {0}")]
    Memory(io::Error),
    #[error("host side: {0}")]
    Host(io::Error),
}

/// Delivers frames from `src` into the RX queue's available buffers, one frame per descriptor
/// chain (VIRTIO_NET_F_MRG_RXBUF is not offered, so `num_buffers` is always 1). Stops when the
/// source is empty, when the ring runs dry, or after `max_frames` frames. Does not notify: that
/// is the coalescing policy's decision.
pub fn fill_rx<M, S>(
    queue: &mut Queue,
    mem: &M,
    src: &mut S,
    stash: &mut RxStash,
    hdr: HostHdr,
    max_frames: u32,
) -> Result<RxOutcome, QueueError>
where
    M: GuestMemory,
    S: FrameSource + ?Sized,
{
    let mut out = RxOutcome { frames: 0, bytes: 0, dropped: 0, stop: RxStop::Budget };
    // The header occupies the first bytes of the stash buffer when the host has none, so the
    // frame can be copied to the guest in one piece.
    let hdr_room = match hdr {
        HostHdr::Vnet => 0,
        HostHdr::None => VNET_HDR_LEN,
    };
    while out.frames < max_frames {
        let len = match stash.len {
            Some(len) => len,
            None => match src.recv(&mut stash.buf[hdr_room..]).map_err(QueueError::Host)? {
                None => {
                    out.stop = RxStop::SourceEmpty;
                    return Ok(out);
                }
                Some(n) => {
                    let len = n + hdr_room;
                    if len < VNET_HDR_LEN {
                        // A runt from the tap (cannot carry a header): nothing to deliver.
                        out.dropped += 1;
                        continue;
                    }
                    if hdr_room > 0 {
                        stash.buf[..VNET_HDR_LEN].fill(0);
                    }
                    stash.buf[NUM_BUFFERS_OFFSET..VNET_HDR_LEN].copy_from_slice(&1u16.to_le_bytes());
                    stash.len = Some(len);
                    len
                }
            },
        };

        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            out.stop = RxStop::RingDry;
            return Ok(out);
        };
        let head = chain.head_index();
        let capacity: usize = chain.clone().writable().map(|d| d.len() as usize).sum();
        if capacity < len {
            // The guest's buffers are smaller than the frame: drop the frame, and give the
            // buffer back unused so the guest can reuse it (length 0 is what a device reports
            // for a buffer it wrote nothing to).
            stash.len = None;
            out.dropped += 1;
            queue.add_used(mem, head, 0)?;
            continue;
        }
        let mut writer = chain.writer(mem).map_err(QueueError::Queue)?;
        writer.write_all(&stash.buf[..len]).map_err(QueueError::Memory)?;
        queue.add_used(mem, head, len as u32)?;
        stash.len = None;
        out.frames += 1;
        out.bytes += len as u64;
    }
    Ok(out)
}

/// What [`drain_tx`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOutcome {
    /// Chains consumed (frames sent or dropped).
    pub chains: u32,
    /// Frames the sink accepted.
    pub frames: u32,
    /// Bytes handed to the sink.
    pub bytes: u64,
    /// Frames dropped: malformed (shorter than the header) or refused by the sink.
    pub dropped: u32,
}

/// Sends every available TX chain to `sink` and returns it used. A sink error drops that frame
/// (as a NIC drops when its queue is full) rather than stalling the guest's TX ring.
pub fn drain_tx<M, K>(
    queue: &mut Queue,
    mem: &M,
    sink: &mut K,
    hdr: HostHdr,
    frame: &mut Vec<u8>,
) -> Result<TxOutcome, QueueError>
where
    M: GuestMemory,
    K: FrameSink + ?Sized,
{
    let mut out = TxOutcome::default();
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let mut reader = chain.reader(mem).map_err(QueueError::Queue)?;
        // Exactly the chain's length: read_to_end would zero its 64 KiB of spare capacity
        // first, for every frame.
        frame.clear();
        frame.resize(reader.available_bytes(), 0);
        reader.read_exact(frame).map_err(QueueError::Memory)?;
        out.chains += 1;
        if frame.len() < VNET_HDR_LEN {
            out.dropped += 1;
        } else {
            let wire = match hdr {
                HostHdr::Vnet => &frame[..],
                HostHdr::None => &frame[VNET_HDR_LEN..],
            };
            match sink.send(wire) {
                Ok(()) => {
                    out.frames += 1;
                    out.bytes += wire.len() as u64;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tap refused a TX frame; dropped");
                    out.dropped += 1;
                }
            }
        }
        // A TX buffer is device-readable only: the used length is the bytes written, none.
        queue.add_used(mem, head, 0)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    const QSIZE: u16 = 16;
    const BUF_BASE: u64 = 0x10_0000;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
    }

    #[derive(Default)]
    struct VecSource(VecDeque<Vec<u8>>);
    impl FrameSource for VecSource {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
            Ok(self.0.pop_front().map(|f| {
                buf[..f.len()].copy_from_slice(&f);
                f.len()
            }))
        }
    }

    #[derive(Default)]
    struct VecSink {
        frames: Vec<Vec<u8>>,
        fail: bool,
    }
    impl FrameSink for VecSink {
        fn send(&mut self, frame: &[u8]) -> io::Result<()> {
            if self.fail {
                return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
            }
            self.frames.push(frame.to_vec());
            Ok(())
        }
    }

    /// Posts `n` RX chains, each of two writable descriptors of `seg` bytes, at distinct
    /// addresses; returns the address of each chain's first descriptor.
    fn post_rx(vq: &MockSplitQueue<GuestMemoryMmap>, n: u16, seg: u32, first_desc: u16) -> Vec<u64> {
        let mut descs = Vec::new();
        let mut addrs = Vec::new();
        for c in 0..n {
            let base = BUF_BASE + u64::from(first_desc + c * 2) * 0x1_0000;
            addrs.push(base);
            let i = first_desc + c * 2;
            descs.push(RawDescriptor::from(SplitDescriptor::new(
                base,
                seg,
                (VRING_DESC_F_WRITE | virtio_bindings::virtio_ring::VRING_DESC_F_NEXT) as u16,
                i + 1,
            )));
            descs.push(RawDescriptor::from(SplitDescriptor::new(base + 0x8000, seg, VRING_DESC_F_WRITE as u16, 0)));
        }
        vq.add_desc_chains(&descs, first_desc).unwrap();
        addrs
    }

    fn frame(len: usize, tag: u8) -> Vec<u8> {
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    fn used(vq: &MockSplitQueue<GuestMemoryMmap>, i: u16) -> (u32, u32) {
        let e = vq.used().ring().ref_at(i as usize).unwrap().load();
        (e.id(), e.len())
    }

    fn used_idx(vq: &MockSplitQueue<GuestMemoryMmap>) -> u16 {
        vq.used().idx().load()
    }

    #[test]
    fn rx_passes_vnet_header_and_sets_num_buffers() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        let addrs = post_rx(&vq, 2, 1024, 0);
        let mut q: Queue = vq.create_queue().unwrap();

        // A tap frame: 12-byte header (num_buffers left 0 by the tap) + 100 bytes.
        let mut f = vec![0u8; VNET_HDR_LEN];
        f[0] = 2; // VIRTIO_NET_HDR_F_DATA_VALID: passed through untouched
        f.extend(frame(100, 7));
        let mut src = VecSource(VecDeque::from([f.clone()]));
        let mut stash = RxStash::default();
        let out = fill_rx(&mut q, &mem, &mut src, &mut stash, HostHdr::Vnet, u32::MAX).unwrap();
        assert_eq!(out.frames, 1);
        assert_eq!(out.stop, RxStop::SourceEmpty);
        assert_eq!(out.bytes, 112);
        assert_eq!(used_idx(&vq), 1);
        assert_eq!(used(&vq, 0), (0, 112));

        let mut got = vec![0u8; 112];
        mem.read_slice(&mut got, GuestAddress(addrs[0])).unwrap();
        let mut want = f;
        want[10] = 1;
        assert_eq!(got, want);
    }

    #[test]
    fn rx_frame_spans_descriptors_of_a_chain() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        let addrs = post_rx(&vq, 1, 64, 0);
        let mut q: Queue = vq.create_queue().unwrap();
        let f = frame(100, 1);
        let mut src = VecSource(VecDeque::from([f.clone()]));
        let mut stash = RxStash::default();
        let out = fill_rx(&mut q, &mem, &mut src, &mut stash, HostHdr::None, u32::MAX).unwrap();
        assert_eq!(out.frames, 1);
        assert_eq!(used(&vq, 0), (0, 112));
        // Synthesised header: zeros, num_buffers = 1; the frame starts right after it and
        // continues in the second descriptor.
        let mut first = vec![0u8; 64];
        mem.read_slice(&mut first, GuestAddress(addrs[0])).unwrap();
        assert_eq!(&first[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&first[12..], &f[..52]);
        let mut second = vec![0u8; 48];
        mem.read_slice(&mut second, GuestAddress(addrs[0] + 0x8000)).unwrap();
        assert_eq!(&second[..], &f[52..]);
    }

    #[test]
    fn rx_ring_dry_keeps_frame_for_the_refill() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        post_rx(&vq, 2, 1024, 0);
        let mut q: Queue = vq.create_queue().unwrap();
        let mut src = VecSource((0..4u8).map(|t| frame(60, t)).collect());
        let mut stash = RxStash::default();

        let out = fill_rx(&mut q, &mem, &mut src, &mut stash, HostHdr::None, u32::MAX).unwrap();
        assert_eq!(out.frames, 2);
        assert_eq!(out.stop, RxStop::RingDry);
        assert!(stash.is_holding(), "the third frame waits in the stash");
        assert_eq!(src.0.len(), 1);

        // The guest refills two buffers: the stashed frame goes first, then the last one.
        let addrs = post_rx(&vq, 2, 1024, 4);
        let out = fill_rx(&mut q, &mem, &mut src, &mut stash, HostHdr::None, u32::MAX).unwrap();
        assert_eq!(out.frames, 2);
        assert_eq!(out.stop, RxStop::SourceEmpty);
        assert!(!stash.is_holding());
        assert_eq!(used_idx(&vq), 4);
        assert_eq!(used(&vq, 2), (4, 72));
        let mut got = vec![0u8; 60];
        mem.read_slice(&mut got, GuestAddress(addrs[0] + 12)).unwrap();
        assert_eq!(got, frame(60, 2));
        mem.read_slice(&mut got, GuestAddress(addrs[1] + 12)).unwrap();
        assert_eq!(got, frame(60, 3));
    }

    #[test]
    fn rx_empty_ring_with_no_frames_is_source_empty() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        let mut q: Queue = vq.create_queue().unwrap();
        let mut src = VecSource::default();
        let mut stash = RxStash::default();
        let out = fill_rx(&mut q, &mem, &mut src, &mut stash, HostHdr::Vnet, u32::MAX).unwrap();
        assert_eq!((out.frames, out.stop), (0, RxStop::SourceEmpty));
    }

    #[test]
    fn rx_stops_at_budget() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        post_rx(&vq, 4, 1024, 0);
        let mut q: Queue = vq.create_queue().unwrap();
        let mut src = VecSource((0..4u8).map(|t| frame(60, t)).collect());
        let mut stash = RxStash::default();
        let out = fill_rx(&mut q, &mem, &mut src, &mut stash, HostHdr::None, 3).unwrap();
        assert_eq!((out.frames, out.stop), (3, RxStop::Budget));
        assert_eq!(src.0.len(), 1, "no frame read beyond the budget");
        assert!(!stash.is_holding());
    }

    #[test]
    fn rx_oversized_frame_dropped_and_buffer_reused() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        post_rx(&vq, 2, 64, 0);
        let mut q: Queue = vq.create_queue().unwrap();
        let mut src = VecSource(VecDeque::from([frame(500, 0), frame(60, 9)]));
        let mut stash = RxStash::default();
        let out = fill_rx(&mut q, &mem, &mut src, &mut stash, HostHdr::None, u32::MAX).unwrap();
        assert_eq!(out.dropped, 1);
        assert_eq!(out.frames, 1);
        assert_eq!(used(&vq, 0), (0, 0), "the too-small buffer comes back empty");
        assert_eq!(used(&vq, 1), (2, 72));
    }

    /// Posts one readable TX chain of `parts` at distinct addresses.
    fn post_tx(vq: &MockSplitQueue<GuestMemoryMmap>, mem: &GuestMemoryMmap, parts: &[&[u8]], first_desc: u16) {
        let mut descs = Vec::new();
        for (k, p) in parts.iter().enumerate() {
            let i = first_desc + k as u16;
            let addr = BUF_BASE + u64::from(i) * 0x1_0000;
            mem.write_slice(p, GuestAddress(addr)).unwrap();
            let last = k + 1 == parts.len();
            let flags = if last { 0 } else { virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16 };
            descs.push(RawDescriptor::from(SplitDescriptor::new(addr, p.len() as u32, flags, i + 1)));
        }
        vq.add_desc_chains(&descs, first_desc).unwrap();
    }

    #[test]
    fn tx_gathers_chain_and_handles_header() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        let hdr = [0u8; VNET_HDR_LEN];
        let payload = frame(200, 3);
        post_tx(&vq, &mem, &[&hdr, &payload[..80], &payload[80..]], 0);
        post_tx(&vq, &mem, &[&hdr, &payload], 3);
        let mut q: Queue = vq.create_queue().unwrap();

        let mut sink = VecSink::default();
        let mut buf = Vec::new();
        let out = drain_tx(&mut q, &mem, &mut sink, HostHdr::None, &mut buf).unwrap();
        assert_eq!(out.chains, 2);
        assert_eq!(out.frames, 2);
        assert_eq!(sink.frames, vec![payload.clone(), payload.clone()]);
        assert_eq!(used_idx(&vq), 2);
        assert_eq!(used(&vq, 0), (0, 0));
        assert_eq!(used(&vq, 1), (3, 0));

        // With a vnet-header tap the header goes through.
        post_tx(&vq, &mem, &[&hdr, &payload], 5);
        let mut sink = VecSink::default();
        drain_tx(&mut q, &mem, &mut sink, HostHdr::Vnet, &mut buf).unwrap();
        assert_eq!(sink.frames.len(), 1);
        assert_eq!(&sink.frames[0][..12], &hdr);
        assert_eq!(&sink.frames[0][12..], &payload[..]);
    }

    #[test]
    fn tx_runt_and_sink_errors_still_return_buffers() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        post_tx(&vq, &mem, &[&[1, 2, 3]], 0);
        post_tx(&vq, &mem, &[&[0u8; 60]], 1);
        let mut q: Queue = vq.create_queue().unwrap();
        let mut sink = VecSink { fail: true, ..Default::default() };
        let mut buf = Vec::new();
        let out = drain_tx(&mut q, &mem, &mut sink, HostHdr::Vnet, &mut buf).unwrap();
        assert_eq!((out.chains, out.frames, out.dropped), (2, 0, 2));
        assert_eq!(used_idx(&vq), 2, "dropped frames must not stall the TX ring");
    }
}
