//! The vhost-user-net backend: two queues (RX 0, TX 1), a tap, and the coalescing policy
//! deciding when the guest hears about received frames.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringState, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::coalesce::{Action, Coalescer, Mode};
use crate::control::{Controlled, Stats, StatsSnapshot};
use crate::queue::{HostHdr, RxStash, RxStop, drain_tx, fill_rx};
use crate::tap::Tap;

pub type GuestMem = GuestMemoryAtomic<GuestMemoryMmap>;

pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
const NUM_QUEUES: usize = 2;
/// Event ids of our own fds in the backend's epoll set. 0..=NUM_QUEUES are the library's (the
/// queues' kicks and its exit / vring-enable event).
pub const TAP_EVENT: u16 = NUM_QUEUES as u16 + 1;
pub const TIMER_EVENT: u16 = NUM_QUEUES as u16 + 2;
pub const MODE_EVENT: u16 = NUM_QUEUES as u16 + 3;

/// A non-blocking one-shot timerfd. vmm-sys-util's TimerFd is blocking, and a stale expiry read
/// from the epoll thread must never block it.
#[derive(Debug)]
struct Timer(OwnedFd);

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: plain syscall, result checked.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned by nobody else.
        Ok(Timer(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Arms the timer `after` from now; a zero duration is raised to 1 ns, as 0 would disarm it.
    fn set(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        self.settime(&spec)
    }

    fn disarm(&self) -> io::Result<()> {
        // SAFETY: all-zero itimerspec is valid and means "disarm".
        let spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        self.settime(&spec)
    }

    fn settime(&self, spec: &libc::itimerspec) -> io::Result<()> {
        // SAFETY: spec is a valid itimerspec; no old value requested.
        let r = unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, spec, std::ptr::null_mut()) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Consumes an expiry; `false` if there was none (already disarmed or re-armed).
    fn consume(&self) -> io::Result<bool> {
        let mut ticks = 0u64;
        // SAFETY: reads 8 bytes into ticks.
        let n = unsafe { libc::read(self.0.as_raw_fd(), (&mut ticks as *mut u64).cast(), std::mem::size_of::<u64>()) };
        if n == 8 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock { Ok(false) } else { Err(e) }
    }
}

/// Backend configuration, from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub queue_size: u16,
    pub mode: Mode,
}

struct RxPath {
    stash: RxStash,
    coalescer: Coalescer,
    /// Whether our timerfd is armed, so `off` mode never pays for a disarm syscall.
    timer_live: bool,
    /// A mode set over the control socket, applied on the epoll thread.
    next_mode: Option<Mode>,
    /// Whether the tap is out of the epoll set's read interest: while the RX ring is dry, every
    /// frame the tap queues would otherwise wake the epoll thread only to find no buffer. The
    /// guest's refill kick puts it back (qemu's own virtio-net stops polling its tap the same way).
    tap_paused: bool,
}

pub struct NetBackend {
    tap: Tap,
    timer: Timer,
    mode_event: EventFd,
    rx: Mutex<RxPath>,
    tx_buf: Mutex<Vec<u8>>,
    mem: RwLock<GuestMem>,
    stats: Stats,
    event_idx: AtomicBool,
    queue_size: u16,
    epoch: Instant,
    /// The epoll fd of the library's worker thread (the current connection's), -1 if none: the
    /// tap's read interest is switched off and on in it while the RX ring is dry.
    epoll_fd: AtomicI32,
}

impl NetBackend {
    pub fn new(tap: Tap, mem: GuestMem, config: &Config) -> io::Result<NetBackend> {
        Ok(NetBackend {
            tap,
            timer: Timer::new()?,
            mode_event: EventFd::new(EFD_NONBLOCK)?,
            rx: Mutex::new(RxPath {
                stash: RxStash::default(),
                coalescer: Coalescer::new(config.mode),
                timer_live: false,
                next_mode: None,
                tap_paused: false,
            }),
            tx_buf: Mutex::new(Vec::with_capacity(crate::queue::MAX_FRAME_LEN)),
            mem: RwLock::new(mem),
            stats: Stats::default(),
            event_idx: AtomicBool::new(false),
            queue_size: config.queue_size,
            epoch: Instant::now(),
            epoll_fd: AtomicI32::new(-1),
        })
    }

    /// The epoll fd the tap was registered in (see [`NetBackend::extra_events`]) for the connection
    /// being served, or `None` when it ends. The tap's read interest starts on.
    pub fn set_epoll_fd(&self, fd: Option<RawFd>) {
        self.epoll_fd.store(fd.unwrap_or(-1), Ordering::Relaxed);
        self.lock_rx().tap_paused = false;
    }

    /// Switches the tap's read interest off (`paused`) or back on. Without an epoll fd (unit use,
    /// or between connections) nothing is switched and the tap keeps waking the thread.
    fn pause_tap(&self, rx: &mut RxPath, paused: bool) -> io::Result<()> {
        let epfd = self.epoll_fd.load(Ordering::Relaxed);
        if rx.tap_paused == paused || epfd < 0 {
            return Ok(());
        }
        let events = if paused { libc::EPOLLET } else { libc::EPOLLIN | libc::EPOLLET };
        let mut ev = libc::epoll_event { events: events as u32, u64: u64::from(TAP_EVENT) };
        // SAFETY: a valid epoll_event; the fds are the live epoll set and our tap.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, self.tap.as_raw_fd(), &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        rx.tap_paused = paused;
        if paused {
            Stats::add(&self.stats.rx_tap_paused, 1);
        }
        Ok(())
    }

    /// The fds to add to the daemon's epoll set, with their event ids and event sets.
    pub fn extra_events(&self) -> [(RawFd, EventSet, u16); 3] {
        [
            // Edge-triggered: while the RX ring is dry the tap stays readable, and a level
            // trigger would spin the epoll thread; the guest's refill kick resumes reading.
            (self.tap.as_raw_fd(), EventSet::IN | EventSet::EDGE_TRIGGERED, TAP_EVENT),
            (self.timer.0.as_raw_fd(), EventSet::IN, TIMER_EVENT),
            (self.mode_event.as_raw_fd(), EventSet::IN, MODE_EVENT),
        ]
    }

    pub fn stats_ref(&self) -> &Stats {
        &self.stats
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn lock_rx(&self) -> MutexGuard<'_, RxPath> {
        // A panic on the epoll thread ends the device anyway; keep the counters readable.
        self.rx.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mem(&self) -> GuestMem {
        self.mem.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Carries out a policy decision on the RX ring.
    fn apply(
        &self,
        action: Action,
        rx: &mut RxPath,
        state: &mut VringState<GuestMem>,
        mem: &GuestMemoryMmap,
        new_frames: bool,
    ) -> io::Result<()> {
        match action {
            Action::Notify => {
                if rx.timer_live {
                    self.timer.disarm()?;
                    rx.timer_live = false;
                }
                // needs_notification covers every used entry added since its last call, so a
                // deferred notification still honours the guest's EVENT_IDX for the whole batch.
                let needed = state.get_queue_mut().needs_notification(mem).map_err(io::Error::other)?;
                if needed {
                    state.signal_used_queue()?;
                    Stats::add(&self.stats.rx_notify_sent, 1);
                } else {
                    Stats::add(&self.stats.rx_notify_guest_suppressed, 1);
                }
            }
            Action::ArmTimer(after) => {
                self.timer.set(after)?;
                rx.timer_live = true;
                Stats::add(&self.stats.rx_notify_coalesced, 1);
            }
            Action::Hold => {
                if new_frames {
                    Stats::add(&self.stats.rx_notify_coalesced, 1);
                }
            }
        }
        Ok(())
    }

    /// Moves frames from the tap to the guest until the tap is empty or the ring is dry.
    fn process_rx(&self, vring: &VringRwLock<GuestMem>, event: u16) -> io::Result<()> {
        let mut state = vring.get_mut();
        let mut rx = self.lock_rx();
        let mem = self.mem();
        let mem = mem.memory();

        if !state.get_queue().ready() || !state.is_enabled() {
            return Ok(());
        }
        // Any event may find buffers (a refill kick, a timer after one): read the tap again; if
        // the ring is still dry below, it is paused again.
        self.pause_tap(&mut rx, false)?;
        if let Some(mode) = rx.next_mode.take() {
            let action = rx.coalescer.set_mode(mode);
            self.apply(action, &mut rx, &mut state, &mem, false)?;
        }
        if event == TIMER_EVENT {
            Stats::add(&self.stats.timer_fired, 1);
            rx.timer_live = false;
            let action = rx.coalescer.on_timer();
            self.apply(action, &mut rx, &mut state, &mem, false)?;
        }

        loop {
            let budget = rx.coalescer.frames_until_limit().unwrap_or(u32::MAX);
            let RxPath { stash, .. } = &mut *rx;
            let out = fill_rx(state.get_queue_mut(), &*mem, &mut &self.tap, stash, HostHdr::Vnet, budget)
                .map_err(io::Error::other)?;
            Stats::add(&self.stats.rx_frames, u64::from(out.frames));
            Stats::add(&self.stats.rx_bytes, out.bytes);
            Stats::add(&self.stats.rx_dropped, u64::from(out.dropped));

            let action = rx.coalescer.on_frames(out.frames, self.now());
            self.apply(action, &mut rx, &mut state, &mem, out.frames > 0)?;

            match out.stop {
                RxStop::Budget => continue,
                RxStop::SourceEmpty => {
                    // Keep avail_event current so the guest's refill kicks reach us.
                    state.get_queue_mut().enable_notification(&*mem).map_err(io::Error::other)?;
                    return Ok(());
                }
                RxStop::RingDry => {
                    Stats::add(&self.stats.rx_ring_empty, 1);
                    let action = rx.coalescer.on_ring_dry();
                    self.apply(action, &mut rx, &mut state, &mem, false)?;
                    // Ask for a kick on refill; if buffers arrived meanwhile, go on at once.
                    let more = state.get_queue_mut().enable_notification(&*mem).map_err(io::Error::other)?;
                    if !more {
                        // The frame in the stash waits for that kick; the tap need not wake us
                        // for the ones behind it until then.
                        return self.pause_tap(&mut rx, true);
                    }
                }
            }
        }
    }

    /// Sends everything the guest queued for transmission.
    fn process_tx(&self, vring: &VringRwLock<GuestMem>) -> io::Result<()> {
        let mut state = vring.get_mut();
        let mem = self.mem();
        let mem = mem.memory();
        if !state.get_queue().ready() || !state.is_enabled() {
            return Ok(());
        }
        let mut buf = self.tx_buf.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            state.get_queue_mut().disable_notification(&*mem).map_err(io::Error::other)?;
            let out = drain_tx(state.get_queue_mut(), &*mem, &mut &self.tap, HostHdr::Vnet, &mut buf)
                .map_err(io::Error::other)?;
            Stats::add(&self.stats.tx_frames, u64::from(out.frames));
            Stats::add(&self.stats.tx_bytes, out.bytes);
            Stats::add(&self.stats.tx_dropped, u64::from(out.dropped));
            // TX completions are not coalesced: the guest frees its skbs on them, and the
            // paper's problem is the RX interrupt rate.
            if out.chains > 0 && state.get_queue_mut().needs_notification(&*mem).map_err(io::Error::other)? {
                state.signal_used_queue()?;
                Stats::add(&self.stats.tx_notify_sent, 1);
            }
            let more = state.get_queue_mut().enable_notification(&*mem).map_err(io::Error::other)?;
            if !more {
                return Ok(());
            }
        }
    }
}

impl Controlled for NetBackend {
    fn mode(&self) -> Mode {
        let rx = self.lock_rx();
        rx.next_mode.unwrap_or(rx.coalescer.mode())
    }

    fn set_mode(&self, mode: Mode) {
        self.lock_rx().next_mode = Some(mode);
        // Wake the epoll thread so pending frames are flushed under the new mode now, not at
        // the next packet.
        if let Err(e) = self.mode_event.write(1) {
            tracing::warn!(error = %e, "could not wake the data path for a mode change");
        }
    }

    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    fn rx_rate(&self) -> f64 {
        self.lock_rx().coalescer.rate()
    }
}

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = VringRwLock<GuestMem>;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.queue_size)
    }

    fn features(&self) -> u64 {
        // No offloads and no MRG_RXBUF: one frame per RX chain, headers passed through as the
        // tap gives them. VIRTIO_NET_F_MAC / STATUS / CTRL_VQ are QEMU's business.
        //
        // VHOST_USER_F_PROTOCOL_FEATURES must be offered: QEMU 7.2's vhost-user net refuses to
        // start (and falls back to userspace virtio, or crashes with MSI-X) when
        // SET_VRING_ENABLE is unavailable. But QEMU sends SET_VRING_ENABLE before SET_FEATURES,
        // which the vhost crate rejects as an inactive feature, ending the connection; the
        // binary's relay (see `relay`) holds those early messages back.
        let features = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX);
        features | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        tracing::info!(features = format_args!("{features:#x}"), "guest features acked");
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // None of our own: a single queue pair without config space needs none. The vhost crate
        // adds REPLY_ACK whatever we say; the relay answers the requests it holds back.
        VhostUserProtocolFeatures::empty()
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn update_memory(&self, mem: GuestMem) -> io::Result<()> {
        *self.mem.write().unwrap_or_else(|p| p.into_inner()) = mem;
        Ok(())
    }

    fn reset_device(&self) {
        let mut rx = self.lock_rx();
        rx.stash.clear();
        let mode = rx.next_mode.take().unwrap_or(rx.coalescer.mode());
        rx.coalescer = Coalescer::new(mode);
        if rx.timer_live {
            let _ = self.timer.disarm();
            rx.timer_live = false;
        }
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // A fresh pair per worker thread: the daemon signals it when the connection ends.
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock<GuestMem>],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            tracing::debug!(device_event, ?evset, "unexpected event set");
        }
        let rx = &vrings[usize::from(RX_QUEUE)];
        let result = match device_event {
            // RX kick: the guest posted buffers; a frame may be waiting for them.
            RX_QUEUE | TAP_EVENT => self.process_rx(rx, device_event),
            TX_QUEUE => self.process_tx(&vrings[usize::from(TX_QUEUE)]),
            TIMER_EVENT => {
                if self.timer.consume()? {
                    self.process_rx(rx, TIMER_EVENT)
                } else {
                    Ok(())
                }
            }
            MODE_EVENT => {
                let _ = self.mode_event.read();
                self.process_rx(rx, MODE_EVENT)
            }
            other => {
                tracing::warn!(event = other, "event for an unknown source");
                Ok(())
            }
        };
        // An error returned here ends the library's worker thread, and with it the device,
        // silently. A bad descriptor from the guest is the guest's problem: log it and go on.
        if let Err(e) = result {
            tracing::error!(device_event, error = %e, "virtqueue processing failed");
        }
        Ok(())
    }
}

/// Everything a running backend shares with the control socket.
pub type SharedBackend = Arc<NetBackend>;
