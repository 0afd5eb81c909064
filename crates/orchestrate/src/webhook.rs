//! Alerts posted as JSON to an `http://` webhook (Alertmanager's webhook receiver, a chat relay) from
//! a thread of their own, so a slow or stuck receiver never stalls the loop that raises them.
//!
//! [`Webhook::send`] only puts the alert on a bounded queue (`try_send`): it never blocks. When the
//! queue is full the alert is dropped and counted, and one warning is logged per burst of drops (with
//! the burst's size once the queue takes alerts again). The thread posts one alert at a time with
//! ureq (blocking, no TLS, no proxy from the environment, no redirects followed), each request bounded
//! by [`Timeouts`]; a non-2xx answer, a refused connection or a timeout counts as a failure and is
//! logged. Dropping the [`Webhook`] closes the queue and joins the thread: what is still queued gets
//! one more request timeout in all to go out, the rest is counted as dropped, so a receiver that never
//! answers holds the drop for at most about one request timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a webhook cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {url}: https:// is not supported (no TLS here): post to a local http:// relay instead")]
    Https { url: String },
    #[error("webhook {url}: not an http:// URL ({reason}); expected e.g. http://127.0.0.1:9093/hook")]
    BadUrl { url: String, reason: String },
    #[error("webhook {url}: cannot start its thread: {source}")]
    Spawn { url: String, source: std::io::Error },
}

/// Per-request bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish the TCP connection.
    pub connect: Duration,
    /// For the whole request: connecting, sending the alert, receiving the answer.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(2), request: Duration::from_secs(5) }
    }
}

/// What became of the alerts handed to [`Webhook::send`] so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Posted and answered 2xx.
    pub sent: u64,
    /// Posted without a 2xx answer (refused, timed out, other status).
    pub failed: u64,
    /// Never posted: the queue was full, or the webhook was closing.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Shared {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Alerts dropped in the current burst (queue full since the last accepted alert).
    burst: AtomicU64,
    in_burst: AtomicBool,
    /// Set when the webhook is dropped: the queued alerts must go out before this.
    close_by: Mutex<Option<Instant>>,
}

/// An `http://` webhook fed through a bounded queue; see the module documentation.
#[derive(Debug)]
pub struct Webhook {
    url: Arc<str>,
    capacity: usize,
    timeouts: Timeouts,
    queue: Option<SyncSender<String>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    /// Post to `url` (http:// only) with at most `queue` alerts waiting (at least 1) and the default
    /// [`Timeouts`] (connect 2 s, whole request 5 s).
    pub fn start(url: &str, queue: usize) -> Result<Webhook, WebhookError> {
        Webhook::with_timeouts(url, queue, Timeouts::default())
    }

    /// [`Webhook::start`] with other timeouts.
    pub fn with_timeouts(url: &str, queue: usize, timeouts: Timeouts) -> Result<Webhook, WebhookError> {
        validate(url)?;
        let url: Arc<str> = url.into();
        let capacity = queue.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let shared = Arc::new(Shared::default());
        let thread = {
            let (to, shared) = (Arc::clone(&url), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("webhook".into())
                .spawn(move || post_loop(&to, rx, timeouts, &shared))
                .map_err(|source| WebhookError::Spawn { url: url.to_string(), source })?
        };
        Ok(Webhook { url, capacity, timeouts, queue: Some(tx), shared, thread: Some(thread) })
    }

    /// Queue one alert (a JSON document) for posting; never blocks. A full queue drops it (counted in
    /// [`WebhookStats::dropped`], one warning per burst).
    pub fn send(&self, json: String) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(json) {
            Ok(()) => {
                if self.shared.in_burst.swap(false, Ordering::Relaxed) {
                    let n = self.shared.burst.swap(0, Ordering::Relaxed);
                    tracing::warn!("webhook {}: queue accepting alerts again after dropping {n}", self.url);
                }
            }
            Err(TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.burst.fetch_add(1, Ordering::Relaxed);
                if !self.shared.in_burst.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "webhook {}: {} alerts already waiting (the receiver is slow or not answering): \
                         dropping alerts until the queue drains",
                        self.url,
                        self.capacity
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                // The thread is gone (it only ends when the queue closes, or by a panic).
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            sent: self.shared.sent.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        *self.shared.close_by.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + self.timeouts.request);
        // Closing the queue ends the thread's loop once it has drained what is queued.
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let s = self.stats();
        tracing::debug!("webhook {}: closed ({} sent, {} failed, {} dropped)", self.url, s.sent, s.failed, s.dropped);
    }
}

/// http:// with a host, or why not.
fn validate(url: &str) -> Result<(), WebhookError> {
    let bad = |reason: &str| WebhookError::BadUrl { url: url.to_string(), reason: reason.to_string() };
    if url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")) {
        return Err(WebhookError::Https { url: url.to_string() });
    }
    let uri: ureq::http::Uri = url.parse().map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s) => return Err(bad(&format!("scheme {s}://"))),
        None => return Err(bad("no scheme")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(())
}

fn post_loop(url: &str, queue: Receiver<String>, timeouts: Timeouts, shared: &Shared) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent("vmguard")
        .timeout_connect(Some(timeouts.connect))
        .build()
        .into();
    for json in queue {
        let close_by = *shared.close_by.lock().unwrap_or_else(|e| e.into_inner());
        let budget = match close_by {
            None => timeouts.request,
            Some(by) => by.saturating_duration_since(Instant::now()),
        };
        if budget.is_zero() {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let result = agent
            .post(url)
            .config()
            .timeout_global(Some(budget.min(timeouts.request)))
            .build()
            .content_type("application/json")
            .send(json);
        match result {
            Ok(reply) if reply.status().is_success() => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(reply) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("webhook {url} answered {} to an alert", reply.status());
            }
            Err(e) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("webhook {url}: alert not delivered: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// Read one request (head and Content-Length body) from `c`; `None` when the client closes.
    fn read_request(c: &mut TcpStream) -> Option<(String, String)> {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    return Some((head, String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).into_owned()));
                }
            }
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// A receiver answering `status` to `n` requests; returns its URL and the requests it got.
    fn receiver(status: &'static str, n: usize) -> (String, std::thread::JoinHandle<Vec<(String, String)>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < n {
                let (mut c, _) = l.accept().unwrap();
                // A client may keep the connection for the next request.
                while got.len() < n {
                    let Some(req) = read_request(&mut c) else { break };
                    got.push(req);
                    let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                    if c.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            }
            got
        });
        (url, t)
    }

    fn wait_for(w: &Webhook, done: impl Fn(WebhookStats) -> bool) -> WebhookStats {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let s = w.stats();
            if done(s) || Instant::now() > until {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn posts_json_to_the_receiver() {
        let (url, t) = receiver("200 OK", 2);
        let w = Webhook::start(&url, 8).unwrap();
        w.send(r#"{"alert":"RAISED","guest":"vm"}"#.to_string());
        w.send(r#"{"alert":"CLEARED","guest":"vm"}"#.to_string());
        let s = wait_for(&w, |s| s.sent == 2);
        assert_eq!(s, WebhookStats { sent: 2, failed: 0, dropped: 0 });
        let got = t.join().unwrap();
        let (head, body) = &got[0];
        assert!(head.starts_with("POST /hook HTTP/1.1\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("\r\ncontent-type: application/json"), "{head}");
        assert_eq!(body, r#"{"alert":"RAISED","guest":"vm"}"#);
        assert_eq!(got[1].1, r#"{"alert":"CLEARED","guest":"vm"}"#);
    }

    #[test]
    fn queued_alerts_go_out_when_dropped() {
        let (url, t) = receiver("204 No Content", 3);
        let w = Webhook::start(&url, 8).unwrap();
        for i in 0..3 {
            w.send(format!(r#"{{"n":{i}}}"#));
        }
        drop(w);
        let bodies: Vec<String> = t.join().unwrap().into_iter().map(|(_, b)| b).collect();
        assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    }

    #[test]
    fn non_2xx_answers_and_refusals_are_failures() {
        let (url, _t) = receiver("500 Internal Server Error", 1);
        let w = Webhook::start(&url, 8).unwrap();
        w.send("{}".into());
        assert_eq!(wait_for(&w, |s| s.failed == 1), WebhookStats { sent: 0, failed: 1, dropped: 0 });
        // Nothing listening.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let w = Webhook::start(&format!("http://127.0.0.1:{port}/"), 8).unwrap();
        w.send("{}".into());
        assert_eq!(wait_for(&w, |s| s.failed == 1).failed, 1);
    }

    #[test]
    fn a_receiver_that_never_answers_stalls_nothing() {
        // Accepts every connection and holds it, never answering.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming() {
                held.push(c);
            }
        });
        let timeouts = Timeouts { connect: Duration::from_secs(2), request: Duration::from_millis(400) };
        let w = Webhook::with_timeouts(&url, 4, timeouts).unwrap();
        let t = Instant::now();
        for i in 0..20 {
            w.send(format!(r#"{{"n":{i}}}"#));
        }
        let took = t.elapsed();
        assert!(took < Duration::from_millis(100), "20 sends took {took:?}");
        // 4 wait in the queue, at most one is in flight: the rest were dropped and counted.
        let s = w.stats();
        assert!((15..=16).contains(&s.dropped), "{s:?}");
        assert_eq!(s.sent, 0);
        // Dropping does not wait for the stuck receiver beyond about one request timeout.
        let t = Instant::now();
        drop(w);
        assert!(t.elapsed() < Duration::from_millis(1500), "drop took {:?}", t.elapsed());
    }

    #[test]
    fn only_http_urls_are_accepted() {
        let err = Webhook::start("https://hooks.example.com/x", 4).unwrap_err();
        assert!(matches!(err, WebhookError::Https { .. }), "{err}");
        assert!(err.to_string().contains("https:// is not supported"), "{err}");
        for bad in ["not a url", "ftp://host/x", "localhost:9093/hook", "/hook", "http://", "http:///x", ""] {
            let err = Webhook::start(bad, 4).err().unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(matches!(err, WebhookError::BadUrl { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains("not an http:// URL"), "{err}");
        }
        for good in ["http://127.0.0.1:9/hook", "http://localhost/", "HTTP://relay:8080"] {
            assert!(Webhook::start(good, 1).is_ok(), "{good}");
        }
    }
}
