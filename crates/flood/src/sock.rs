//! The sending sockets: a raw IPv4 socket (IP_HDRINCL) or an AF_PACKET socket, both fed with
//! `sendmmsg` batches. Every unsafe block is here, wrapped in [`Batch`].

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use wire::Template;

use crate::FloodError;

/// Where a batch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Raw IPv4 socket: the kernel routes each packet (qdiscs and netfilter apply).
    Raw { dst: Ipv4Addr },
    /// AF_PACKET socket on one interface: we write the Ethernet header ourselves.
    Packet { ifindex: i32, src_mac: [u8; 6], dst_mac: [u8; 6], qdisc_bypass: bool },
}

impl Egress {
    fn l2_len(&self) -> usize {
        match self {
            Egress::Raw { .. } => 0,
            Egress::Packet { .. } => 14,
        }
    }
}

enum Addr {
    /// The destination every raw message names.
    In(libc::sockaddr_in),
    /// The packet socket is bound to its interface; messages name nothing.
    Bound,
}

/// A socket with `batch` packet slots, pre-filled with the template, and the `mmsghdr` array that
/// points into them. Not `Send`: built and used on one worker thread (inside the namespace).
pub struct Batch {
    fd: OwnedFd,
    l2: usize,
    stride: usize,
    bufs: Vec<u8>,
    // The kernel reads these through raw pointers into `bufs`, `iov` and `addr`: all three are heap
    // allocations that never move or resize after `new`.
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    _addr: Box<Addr>,
}

fn os_err(what: &'static str) -> impl FnOnce(io::Error) -> FloodError {
    move |source| FloodError::Socket { what, source }
}

fn setsockopt_int(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its exact size; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success we own the returned descriptor.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Batch {
    /// Open the socket and fill `batch` slots with the template's packet.
    pub fn new(egress: Egress, template: &Template, batch: usize) -> Result<Batch, FloodError> {
        let fd = match egress {
            // IPPROTO_RAW implies IP_HDRINCL: we supply the whole IPv4 header.
            Egress::Raw { .. } => socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)
                .map_err(os_err("a raw IPv4 socket (needs root or CAP_NET_RAW)"))?,
            // Protocol 0: a send-only packet socket, so it never receives (and never slows) traffic.
            Egress::Packet { .. } => {
                socket(libc::AF_PACKET, libc::SOCK_RAW, 0).map_err(os_err("an AF_PACKET socket (needs root)"))?
            }
        };
        // A large send buffer keeps sendmmsg from blocking between batches; best effort.
        let _ = setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20);
        let addr = Box::new(match egress {
            Egress::Raw { dst } => {
                // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr = libc::in_addr { s_addr: u32::from(dst).to_be() };
                Addr::In(sin)
            }
            Egress::Packet { ifindex, qdisc_bypass, .. } => {
                if qdisc_bypass {
                    setsockopt_int(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
                        .map_err(os_err("PACKET_QDISC_BYPASS on the packet socket"))?;
                }
                // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
                let mut bind_addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                bind_addr.sll_family = libc::AF_PACKET as u16;
                bind_addr.sll_ifindex = ifindex;
                // Bind to the interface with protocol 0: the kernel then takes the device from the
                // socket instead of looking it up for every message, and registers no receive hook
                // (the frames' EtherType gives each skb its protocol).
                // SAFETY: a pointer to a live sockaddr_ll and its exact size; the fd is open.
                let rc = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        (&bind_addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if rc != 0 {
                    return Err(FloodError::Socket {
                        what: "the packet socket bound to the egress interface",
                        source: io::Error::last_os_error(),
                    });
                }
                Addr::Bound
            }
        });
        let l2 = egress.l2_len();
        let len = l2 + template.len();
        let stride = len.next_multiple_of(64);
        let batch = batch.max(1);
        let mut bufs = vec![0u8; stride * batch];
        for slot in bufs.chunks_exact_mut(stride) {
            if let Egress::Packet { src_mac, dst_mac, .. } = egress {
                slot[..6].copy_from_slice(&dst_mac);
                slot[6..12].copy_from_slice(&src_mac);
                slot[12..14].copy_from_slice(&(libc::ETH_P_IP as u16).to_be_bytes());
            }
            slot[l2..len].copy_from_slice(template.bytes());
        }
        let mut iov: Vec<libc::iovec> = bufs
            .chunks_exact_mut(stride)
            .map(|slot| libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: len })
            .collect();
        // Raw sockets name the destination in every message; the bound packet socket needs none
        // (the Ethernet header we wrote says where each frame goes).
        let (name, namelen) = match &*addr {
            Addr::In(a) => ((a as *const libc::sockaddr_in).cast_mut().cast(), std::mem::size_of_val(a)),
            Addr::Bound => (std::ptr::null_mut(), 0),
        };
        let msgs = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: mmsghdr is plain old data; all-zero is a valid value before we fill it.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = name;
                m.msg_hdr.msg_namelen = namelen as libc::socklen_t;
                m.msg_hdr.msg_iov = v as *mut libc::iovec;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Ok(Batch { fd, l2, stride, bufs, iov, msgs, _addr: addr })
    }

    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }

    /// The IP packet in slot `i`, to patch before sending.
    #[inline]
    pub fn slot(&mut self, i: usize) -> &mut [u8] {
        let at = i * self.stride + self.l2;
        &mut self.bufs[at..at + self.stride - self.l2]
    }

    /// Send slots `0..n`. Returns (accepted, failed, first error). A failed packet is skipped, not
    /// retried: the token it used is spent.
    pub fn send(&mut self, n: usize) -> (u64, u64, Option<io::Error>) {
        let n = n.min(self.msgs.len());
        let (mut ok, mut failed, mut first) = (0u64, 0u64, None);
        let mut at = 0;
        debug_assert_eq!(self.iov.len(), self.msgs.len());
        while at < n {
            // SAFETY: msgs[at..n] are initialized mmsghdr whose pointers target `iov`, `bufs` and the
            // boxed address, all alive and unmoved for the duration of the call.
            let rc = unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), self.msgs.as_mut_ptr().add(at), (n - at) as libc::c_uint, 0)
            };
            if rc > 0 {
                ok += rc as u64;
                at += rc as usize;
            } else {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                failed += 1;
                at += 1;
                first.get_or_insert(err);
            }
        }
        (ok, failed, first)
    }
}

/// Ask for 1 ns timer slack on this thread, so short sleeps of the pacer wake on time; best effort.
pub fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and only affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}
