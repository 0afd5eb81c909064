//! A relay between QEMU and the vhost-user daemon that holds back early SET_VRING_ENABLE.
//!
//! QEMU's virtio-net sends VHOST_USER_SET_VRING_ENABLE whenever it (re)attaches the queue
//! pair, which happens before VHOST_USER_SET_FEATURES; the vhost crate rejects that as an
//! inactive feature and ends the connection. The relay forwards every message unchanged (fds
//! included) except those early enables, which it keeps (the latest per ring) and delivers
//! right after SET_FEATURES, so the backend sees them in the order the spec assumes.
//!
//! The vhost crate always offers REPLY_ACK, and QEMU 8.2 and later send SET_VRING_ENABLE with
//! NEED_REPLY and wait for the answer (QEMU commit "vhost-user: call VHOST_USER_SET_VRING_ENABLE
//! synchronously"): a held enable is acknowledged by the relay itself, and delivered later
//! without NEED_REPLY so the daemon does not answer it a second time. Both directions write to
//! QEMU's socket, so replies go whole, one at a time.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

const HDR_LEN: usize = 12;
const SET_FEATURES: u32 = 2;
const SET_VRING_ENABLE: u32 = 18;
/// Header flags: the protocol version, "this is a reply", "the frontend waits for a reply".
const VERSION_1: u32 = 0x1;
const REPLY: u32 = 0x4;
const NEED_REPLY: u32 = 0x8;
/// The vhost-user protocol caps a message at 4 KiB of payload plus fds; be generous.
const MAX_PAYLOAD: usize = 0x1_0000;
const MAX_FDS: usize = 32;

/// Receives up to `buf.len()` bytes and any fds sent with them.
fn recv_with_fds(sock: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut cmsg = [0u64; 64]; // u64 for cmsghdr alignment; 512 bytes is room for MAX_FDS
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg);
    let n = loop {
        // SAFETY: msg points at live buffers of the sizes given.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(n)
}

/// Sends `data` in one message, with `fds` attached to it.
fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    if fds.is_empty() {
        return (&*sock).write_all(data);
    }
    let mut cmsg = [0u64; 64];
    let fd_bytes = std::mem::size_of_val(fds) as u32;
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: as in recv_with_fds; the control buffer is large enough for MAX_FDS fds.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(fd_bytes) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
        let dst = libc::CMSG_DATA(c) as *mut RawFd;
        for (i, fd) in fds.iter().enumerate() {
            std::ptr::write_unaligned(dst.add(i), fd.as_raw_fd());
        }
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // The fds went with the first byte; the rest, if the kernel took less, goes plain.
    (&*sock).write_all(&data[sent as usize..])
}

/// Writes one whole message to the frontend; `lock` keeps the two directions' writes apart.
fn write_front(front: &UnixStream, lock: &Mutex<()>, data: &[u8]) -> io::Result<()> {
    let _turn = lock.lock().unwrap_or_else(|p| p.into_inner());
    (&*front).write_all(data)
}

/// Relays frontend → backend messages until either side closes. `front_lock` is shared with
/// [`backend_to_frontend`]: the relay answers a held request with NEED_REPLY itself.
pub fn frontend_to_backend(front: &UnixStream, back: &UnixStream, front_lock: &Mutex<()>) -> io::Result<()> {
    let mut features_set = false;
    let mut held: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut msg = vec![0u8; HDR_LEN + MAX_PAYLOAD];
    loop {
        let mut fds = Vec::new();
        let mut got = 0;
        while got < HDR_LEN {
            let n = recv_with_fds(front, &mut msg[got..HDR_LEN], &mut fds)?;
            if n == 0 {
                return Ok(());
            }
            got += n;
        }
        if fds.len() > MAX_FDS {
            return Err(io::Error::other("too many fds in one vhost-user message"));
        }
        let req = u32::from_le_bytes(msg[0..4].try_into().expect("4 bytes"));
        let flags = u32::from_le_bytes(msg[4..8].try_into().expect("4 bytes"));
        let size = u32::from_le_bytes(msg[8..12].try_into().expect("4 bytes")) as usize;
        if size > MAX_PAYLOAD {
            return Err(io::Error::other(format!("vhost-user message of {size} bytes")));
        }
        (&*front).read_exact(&mut msg[HDR_LEN..HDR_LEN + size])?;
        let whole = &msg[..HDR_LEN + size];
        tracing::trace!(req, flags = format_args!("{flags:#x}"), size, fds = fds.len(), "vhost-user request");

        if req == SET_VRING_ENABLE && !features_set && size >= 4 {
            let index = u32::from_le_bytes(whole[HDR_LEN..HDR_LEN + 4].try_into().expect("4 bytes"));
            tracing::debug!(index, need_reply = flags & NEED_REPLY != 0, "holding SET_VRING_ENABLE until SET_FEATURES");
            let mut later = whole.to_vec();
            if flags & NEED_REPLY != 0 {
                // Success now (0), as the daemon will answer nothing for the copy it gets later.
                later[4..8].copy_from_slice(&(flags & !NEED_REPLY).to_le_bytes());
                let mut ack = Vec::with_capacity(HDR_LEN + 8);
                ack.extend(SET_VRING_ENABLE.to_le_bytes());
                ack.extend((VERSION_1 | REPLY).to_le_bytes());
                ack.extend(8u32.to_le_bytes());
                ack.extend(0u64.to_le_bytes());
                write_front(front, front_lock, &ack)?;
            }
            held.insert(index, later);
            continue;
        }
        send_with_fds(back, whole, &fds)?;
        if req == SET_FEATURES && !features_set {
            features_set = true;
            for m in std::mem::take(&mut held).into_values() {
                (&*back).write_all(&m)?;
            }
        }
    }
}

/// Relays backend → frontend replies, one whole message per write (no fds: none of the offered
/// features sends any).
pub fn backend_to_frontend(back: &UnixStream, front: &UnixStream, front_lock: &Mutex<()>) -> io::Result<()> {
    let mut msg = vec![0u8; HDR_LEN + MAX_PAYLOAD];
    loop {
        match (&*back).read_exact(&mut msg[..HDR_LEN]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let size = u32::from_le_bytes(msg[8..12].try_into().expect("4 bytes")) as usize;
        if size > MAX_PAYLOAD {
            return Err(io::Error::other(format!("vhost-user reply of {size} bytes")));
        }
        (&*back).read_exact(&mut msg[HDR_LEN..HDR_LEN + size])?;
        write_front(front, front_lock, &msg[..HDR_LEN + size])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(req: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(req.to_le_bytes());
        m.extend(1u32.to_le_bytes()); // version 1 flags
        m.extend((payload.len() as u32).to_le_bytes());
        m.extend(payload);
        m
    }

    #[test]
    fn early_enable_is_held_until_set_features_and_fds_pass() {
        let (qemu, front) = UnixStream::pair().unwrap();
        let (back, daemon) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || frontend_to_backend(&front, &back, &Mutex::new(())));

        let enable0 = message(SET_VRING_ENABLE, &[0, 0, 0, 0, 1, 0, 0, 0]);
        let get_features = message(1, &[]);
        let set_features = message(SET_FEATURES, &1u64.to_le_bytes());
        let (pa, _pb) = UnixStream::pair().unwrap();
        let kick = message(12, &0u64.to_le_bytes()); // SET_VRING_KICK carries an fd
        (&qemu).write_all(&enable0).unwrap();
        (&qemu).write_all(&get_features).unwrap();
        send_with_fds(&qemu, &kick, &[OwnedFd::from(pa)]).unwrap();
        (&qemu).write_all(&set_features).unwrap();
        drop(qemu);

        let mut want = get_features.clone();
        want.extend(&kick);
        want.extend(&set_features);
        want.extend(&enable0);
        let mut got = vec![0u8; want.len()];
        let mut fds = Vec::new();
        let mut n = 0;
        while n < got.len() {
            n += recv_with_fds(&daemon, &mut got[n..], &mut fds).unwrap();
        }
        assert_eq!(got, want, "order: everything else first, the enable after SET_FEATURES");
        assert_eq!(fds.len(), 1, "the kick fd is passed on");
        t.join().unwrap().unwrap();
    }

    /// QEMU 8.2+ sends the early enable with NEED_REPLY and blocks on the answer (QEMU 10.0 hung
    /// there at start): the relay answers it, and the copy it delivers later asks for none.
    #[test]
    fn early_enable_with_need_reply_is_acked_by_the_relay() {
        let (qemu, front) = UnixStream::pair().unwrap();
        let (back, daemon) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || frontend_to_backend(&front, &back, &Mutex::new(())));

        let mut enable0 = message(SET_VRING_ENABLE, &[0, 0, 0, 0, 1, 0, 0, 0]);
        enable0[4..8].copy_from_slice(&(VERSION_1 | NEED_REPLY).to_le_bytes());
        (&qemu).write_all(&enable0).unwrap();

        // The answer comes before anything reaches the daemon: success, flagged as a reply.
        let mut ack = [0u8; HDR_LEN + 8];
        qemu.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        (&qemu).read_exact(&mut ack).unwrap();
        assert_eq!(u32::from_le_bytes(ack[0..4].try_into().unwrap()), SET_VRING_ENABLE);
        assert_eq!(u32::from_le_bytes(ack[4..8].try_into().unwrap()), VERSION_1 | REPLY);
        assert_eq!(u32::from_le_bytes(ack[8..12].try_into().unwrap()), 8);
        assert_eq!(u64::from_le_bytes(ack[12..20].try_into().unwrap()), 0);

        let set_features = message(SET_FEATURES, &1u64.to_le_bytes());
        (&qemu).write_all(&set_features).unwrap();
        drop(qemu);
        let mut want = set_features.clone();
        let mut later = enable0.clone();
        later[4..8].copy_from_slice(&VERSION_1.to_le_bytes());
        want.extend(&later);
        let mut got = vec![0u8; want.len()];
        (&daemon).read_exact(&mut got).unwrap();
        assert_eq!(got, want, "the held enable follows SET_FEATURES, without NEED_REPLY");
        t.join().unwrap().unwrap();
    }

    #[test]
    fn replies_pass_whole() {
        let (back, daemon) = UnixStream::pair().unwrap();
        let (front, qemu) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || backend_to_frontend(&back, &front, &Mutex::new(())));
        let mut reply = message(1, &0x1_4000_0000u64.to_le_bytes());
        reply[4..8].copy_from_slice(&(VERSION_1 | REPLY).to_le_bytes());
        // Sent in two pieces: the relay still writes it as one message.
        (&daemon).write_all(&reply[..5]).unwrap();
        (&daemon).write_all(&reply[5..]).unwrap();
        drop(daemon);
        let mut got = Vec::new();
        (&qemu).read_to_end(&mut got).unwrap();
        assert_eq!(got, reply);
        t.join().unwrap().unwrap();
    }
}
