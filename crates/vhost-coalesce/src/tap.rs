//! The host side: an existing TAP device, opened by name.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use crate::queue::{FrameSink, FrameSource, VNET_HDR_LEN};

// From <linux/if_tun.h>; libc does not export these ioctl numbers.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap name {0:?} is empty, too long (max 15 bytes) or contains NUL")]
    BadName(String),
    #[error("cannot open /dev/net/tun: {0}")]
    Open(io::Error),
    #[error("cannot attach to tap {name:?} (does it exist in this network namespace?): {source}")]
    Attach { name: String, source: io::Error },
    #[error("cannot set the vnet header size of tap {name:?}: {source}")]
    VnetHdr { name: String, source: io::Error },
}

/// An attached TAP queue: non-blocking, frames prefixed by a 12-byte virtio-net header.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to the existing tap `name` with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and sets the
    /// header to `virtio_net_hdr_mrg_rxbuf` size, which is what a VERSION_1 guest uses, so frames
    /// pass between the tap and the rings without header rewriting. No offloads are enabled:
    /// none are offered to the guest either.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let cname = CString::new(name).map_err(|_| TapError::BadName(name.into()))?;
        let bytes = cname.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
            return Err(TapError::BadName(name.into()));
        }
        // SAFETY: a NUL-terminated path, flags only; the result is checked.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(TapError::Open(io::Error::last_os_error()));
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };

        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, _pad: [0; 22] };
        req.name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: TUNSETIFF reads (and may write) a struct ifreq, which IfReq lays out.
        if unsafe { libc::ioctl(fd, TUNSETIFF, &mut req) } < 0 {
            return Err(TapError::Attach { name: name.into(), source: io::Error::last_os_error() });
        }
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int.
        if unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) } < 0 {
            return Err(TapError::VnetHdr { name: name.into(), source: io::Error::last_os_error() });
        }
        // SAFETY: TUNSETOFFLOAD takes an unsigned long by value. Best effort: 0 is the default.
        unsafe { libc::ioctl(fd, TUNSETOFFLOAD, 0 as libc::c_ulong) };
        Ok(Tap { file, name: name.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

// Implemented on &Tap: the RX and TX paths share one tap from different locks, and a read and a
// write on the same fd need no exclusion.
impl FrameSource for &Tap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::read(self.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

impl FrameSink for &Tap {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: frame is valid for frame.len() bytes.
            let n = unsafe { libc::write(self.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
