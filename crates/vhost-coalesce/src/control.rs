//! The control socket: line-based JSON to switch the coalescing mode and read the counters.
//!
//! vmguard sets the policy here because the guest cannot: QEMU handles the virtio-net control
//! virtqueue itself and does not pass a guest's `ethtool -C` on to a vhost-user backend.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use serde::Serialize;
use serde_json::{Value, json};

use crate::coalesce::Mode;

/// Longest accepted request line: a request is a few dozen bytes, so a longer line is garbage
/// (and must not make the backend buffer without bound).
pub const MAX_LINE: usize = 4096;

/// Counters of the data path. Relaxed atomics: each is an independent tally read by the control
/// thread; no ordering between them is promised.
#[derive(Debug, Default)]
pub struct Stats {
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_dropped: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_dropped: AtomicU64,
    /// RX interrupts sent to the guest.
    pub rx_notify_sent: AtomicU64,
    /// RX notifications held back by the coalescing policy.
    pub rx_notify_coalesced: AtomicU64,
    /// RX notifications the policy wanted but the guest had suppressed (EVENT_IDX / NO_INTERRUPT).
    pub rx_notify_guest_suppressed: AtomicU64,
    /// TX completions signalled.
    pub tx_notify_sent: AtomicU64,
    /// Times a frame waited for an RX buffer (the available ring ran dry).
    pub rx_ring_empty: AtomicU64,
    /// Coalescing timer expiries.
    pub timer_fired: AtomicU64,
    /// Times the tap was taken out of the epoll set while the RX ring was dry.
    pub rx_tap_paused: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            rx_frames: g(&self.rx_frames),
            rx_bytes: g(&self.rx_bytes),
            rx_dropped: g(&self.rx_dropped),
            tx_frames: g(&self.tx_frames),
            tx_bytes: g(&self.tx_bytes),
            tx_dropped: g(&self.tx_dropped),
            rx_notify_sent: g(&self.rx_notify_sent),
            rx_notify_coalesced: g(&self.rx_notify_coalesced),
            rx_notify_guest_suppressed: g(&self.rx_notify_guest_suppressed),
            tx_notify_sent: g(&self.tx_notify_sent),
            rx_ring_empty: g(&self.rx_ring_empty),
            timer_fired: g(&self.timer_fired),
            rx_tap_paused: g(&self.rx_tap_paused),
        }
    }
}

/// A point-in-time copy of [`Stats`], as the control socket reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub rx_notify_sent: u64,
    pub rx_notify_coalesced: u64,
    pub rx_notify_guest_suppressed: u64,
    pub tx_notify_sent: u64,
    pub rx_ring_empty: u64,
    pub timer_fired: u64,
    pub rx_tap_paused: u64,
}

/// One parsed control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    SetMode(Mode),
    GetStats,
}

/// Parses one request line. The error says what was wrong, for the reply.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(line.trim()).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or_else(|| "expected a JSON object".to_string())?;
    match (obj.get("mode"), obj.get("get")) {
        (Some(_), Some(_)) => Err("give either \"mode\" or \"get\", not both".into()),
        (None, None) => Err("expected a \"mode\" or a \"get\" key".into()),
        (None, Some(what)) => match what.as_str() {
            Some("stats") => {
                only_keys(obj, &["get"])?;
                Ok(Request::GetStats)
            }
            _ => Err(format!("unknown \"get\": {what} (known: \"stats\")")),
        },
        (Some(mode), None) => {
            let mode = match mode.as_str() {
                Some("off") => {
                    only_keys(obj, &["mode"])?;
                    Mode::Off
                }
                Some("fixed") => {
                    only_keys(obj, &["mode", "rx_usecs", "rx_frames"])?;
                    Mode::Fixed { rx_usecs: field_u32(obj, "rx_usecs")?, rx_frames: field_u32(obj, "rx_frames")? }
                }
                Some("adaptive") => {
                    only_keys(obj, &["mode", "rx_usecs", "rx_frames", "pps_threshold"])?;
                    Mode::Adaptive {
                        rx_usecs: field_u32(obj, "rx_usecs")?,
                        rx_frames: field_u32(obj, "rx_frames")?,
                        pps_threshold: field_u64(obj, "pps_threshold")?,
                    }
                }
                _ => {
                    return Err(format!("unknown mode {mode} (known: \"off\", \"fixed\", \"adaptive\")"));
                }
            };
            validate_mode(&mode)?;
            Ok(Request::SetMode(mode))
        }
    }
}

/// Bounds shared by the CLI and the control socket: a timer beyond one second would be a stall,
/// not coalescing.
pub fn validate_mode(mode: &Mode) -> Result<(), String> {
    const MAX_USECS: u32 = 1_000_000;
    match *mode {
        Mode::Off => Ok(()),
        Mode::Fixed { rx_usecs, .. } | Mode::Adaptive { rx_usecs, .. } if rx_usecs > MAX_USECS => {
            Err(format!("rx_usecs {rx_usecs} is above the limit of {MAX_USECS}"))
        }
        _ => Ok(()),
    }
}

// Unknown keys are refused: a misspelt "rx_usec" silently ignored would leave a default the
// operator did not ask for.
fn only_keys(obj: &serde_json::Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unexpected key \"{k}\" (allowed here: {})", allowed.join(", "))),
        None => Ok(()),
    }
}

fn field_u64(obj: &serde_json::Map<String, Value>, key: &str) -> Result<u64, String> {
    let v = obj.get(key).ok_or_else(|| format!("missing \"{key}\""))?;
    v.as_u64().ok_or_else(|| format!("\"{key}\" must be a non-negative integer, got {v}"))
}

fn field_u32(obj: &serde_json::Map<String, Value>, key: &str) -> Result<u32, String> {
    let n = field_u64(obj, key)?;
    u32::try_from(n).map_err(|_| format!("\"{key}\" {n} is too large"))
}

/// What the control socket acts on: implemented by the backend.
pub trait Controlled: Send + Sync {
    fn mode(&self) -> Mode;
    fn set_mode(&self, mode: Mode);
    fn stats(&self) -> StatsSnapshot;
    /// The current RX rate estimate, frames per second.
    fn rx_rate(&self) -> f64;
}

/// Turns one request line into one reply line (without the newline).
pub fn handle_line(target: &dyn Controlled, line: &str) -> String {
    let reply = match parse_request(line) {
        Err(e) => json!({ "ok": false, "error": e }),
        Ok(Request::SetMode(mode)) => {
            target.set_mode(mode);
            tracing::info!(?mode, "coalescing mode set over the control socket");
            json!({ "ok": true, "coalesce": mode })
        }
        Ok(Request::GetStats) => json!({
            "ok": true,
            "coalesce": target.mode(),
            "rx_rate_pps": target.rx_rate().round(),
            "stats": target.stats(),
        }),
    };
    reply.to_string()
}

/// Serves one connection until it closes.
fn serve_conn(target: &dyn Controlled, stream: UnixStream) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded read: at most MAX_LINE + 1 bytes per request.
        let n = (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let reply = if line.len() > MAX_LINE && !line.ends_with(b"\n") {
            // Skip the rest of the oversized line before reading the next request.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = (&mut reader).take(64 * 1024).read_until(b'\n', &mut rest)?;
                if m == 0 || rest.ends_with(b"\n") {
                    break;
                }
            }
            json!({ "ok": false, "error": format!("request longer than {MAX_LINE} bytes") }).to_string()
        } else {
            match std::str::from_utf8(&line) {
                Ok(s) if s.trim().is_empty() => continue,
                Ok(s) => handle_line(target, s),
                Err(_) => json!({ "ok": false, "error": "request is not UTF-8" }).to_string(),
            }
        };
        out.write_all(reply.as_bytes())?;
        out.write_all(b"\n")?;
    }
}

/// Binds the control socket (replacing a stale one) and serves it on a thread, one thread per
/// connection: a handful of operators and scripts, never many.
pub fn spawn_server(path: &Path, target: Arc<dyn Controlled>) -> io::Result<thread::JoinHandle<()>> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    thread::Builder::new().name("vhost-net-control".into()).spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    let target = target.clone();
                    let spawned = thread::Builder::new().name("vhost-net-control-conn".into()).spawn(move || {
                        if let Err(e) = serve_conn(&*target, stream) {
                            tracing::debug!(error = %e, "control connection ended");
                        }
                    });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "could not serve a control connection");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Mutex;

    #[test]
    fn parses_the_documented_requests() {
        assert_eq!(parse_request(r#"{"mode":"off"}"#), Ok(Request::SetMode(Mode::Off)));
        assert_eq!(
            parse_request(r#"{"mode":"fixed","rx_usecs":200,"rx_frames":32}"#),
            Ok(Request::SetMode(Mode::Fixed { rx_usecs: 200, rx_frames: 32 }))
        );
        assert_eq!(
            parse_request(r#" {"mode":"adaptive","rx_usecs":200,"rx_frames":32,"pps_threshold":20000} "#),
            Ok(Request::SetMode(Mode::Adaptive { rx_usecs: 200, rx_frames: 32, pps_threshold: 20000 }))
        );
        assert_eq!(parse_request(r#"{"get":"stats"}"#), Ok(Request::GetStats));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            ("", "not JSON"),
            ("{", "not JSON"),
            ("[1]", "expected a JSON object"),
            ("{}", "expected a \"mode\" or a \"get\""),
            (r#"{"mode":"turbo"}"#, "unknown mode"),
            (r#"{"mode":3}"#, "unknown mode"),
            (r#"{"mode":"fixed","rx_usecs":200}"#, "missing \"rx_frames\""),
            (r#"{"mode":"fixed","rx_usecs":-1,"rx_frames":1}"#, "non-negative integer"),
            (r#"{"mode":"fixed","rx_usecs":1.5,"rx_frames":1}"#, "non-negative integer"),
            (r#"{"mode":"fixed","rx_usecs":"9","rx_frames":1}"#, "non-negative integer"),
            (r#"{"mode":"fixed","rx_usecs":1,"rx_frames":4294967296}"#, "too large"),
            (r#"{"mode":"fixed","rx_usecs":2000000,"rx_frames":1}"#, "above the limit"),
            (r#"{"mode":"fixed","rx_usec":1,"rx_frames":1}"#, "unexpected key \"rx_usec\""),
            (r#"{"mode":"off","rx_usecs":1}"#, "unexpected key"),
            (r#"{"mode":"adaptive","rx_usecs":1,"rx_frames":1}"#, "missing \"pps_threshold\""),
            (r#"{"get":"everything"}"#, "unknown \"get\""),
            (r#"{"get":"stats","mode":"off"}"#, "not both"),
        ];
        for (input, want) in cases {
            let err = parse_request(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err:?} lacks {want:?}");
        }
    }

    struct Fake {
        mode: Mutex<Mode>,
    }
    impl Controlled for Fake {
        fn mode(&self) -> Mode {
            *self.mode.lock().unwrap()
        }
        fn set_mode(&self, mode: Mode) {
            *self.mode.lock().unwrap() = mode;
        }
        fn stats(&self) -> StatsSnapshot {
            let s = Stats::default();
            Stats::add(&s.rx_frames, 5);
            s.snapshot()
        }
        fn rx_rate(&self) -> f64 {
            12.4
        }
    }

    #[test]
    fn replies_are_one_json_line() {
        let f = Fake { mode: Mutex::new(Mode::Off) };
        let r: Value =
            serde_json::from_str(&handle_line(&f, r#"{"mode":"fixed","rx_usecs":50,"rx_frames":8}"#)).unwrap();
        assert_eq!(r["ok"], true);
        assert_eq!(f.mode(), Mode::Fixed { rx_usecs: 50, rx_frames: 8 });

        let line = handle_line(&f, r#"{"get":"stats"}"#);
        assert!(!line.contains('\n'));
        let r: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(r["coalesce"]["mode"], "fixed");
        assert_eq!(r["coalesce"]["rx_usecs"], 50);
        assert_eq!(r["stats"]["rx_frames"], 5);
        assert_eq!(r["rx_rate_pps"], 12.0);

        let r: Value = serde_json::from_str(&handle_line(&f, "nonsense")).unwrap();
        assert_eq!(r["ok"], false);
        assert!(r["error"].as_str().unwrap().contains("not JSON"));
        assert_eq!(f.mode(), Mode::Fixed { rx_usecs: 50, rx_frames: 8 }, "bad input changes nothing");
    }

    #[test]
    fn socket_round_trip_and_oversized_line() {
        let dir = std::env::temp_dir().join(format!("vhost-coalesce-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let target: Arc<dyn Controlled> = Arc::new(Fake { mode: Mutex::new(Mode::Off) });
        spawn_server(&path, target.clone()).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut reply = String::new();

        s.write_all(format!("{}\n", "x".repeat(MAX_LINE * 3)).as_bytes()).unwrap();
        r.read_line(&mut reply).unwrap();
        assert!(reply.contains("longer than"), "{reply}");

        reply.clear();
        s.write_all(b"{\"mode\":\"adaptive\",\"rx_usecs\":100,\"rx_frames\":16,\"pps_threshold\":1000}\n").unwrap();
        r.read_line(&mut reply).unwrap();
        assert!(reply.contains("\"ok\":true"), "{reply}");
        assert_eq!(target.mode().name(), "adaptive");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC*") {
            let _ = parse_request(&s);
        }

        #[test]
        fn parser_never_panics_on_near_requests(
            mode in prop::sample::select(vec!["off", "fixed", "adaptive", "x", ""]),
            a in any::<i64>(), b in any::<f64>(), c in any::<u64>(),
            key in "[a-z_]{0,12}",
        ) {
            let line = format!(
                r#"{{"mode":"{mode}","rx_usecs":{a},"rx_frames":{b},"pps_threshold":{c},"{key}":1}}"#
            );
            let _ = parse_request(&line);
            let _ = parse_request(&line[..line.len() / 2]);
        }
    }
}
