//! A plain HTTP GET from inside a lab namespace: how the lab checks that a victim answers.
//!
//! The request is made with ureq (blocking, no TLS, no proxy from the environment, no redirects
//! followed) on a thread that [`netns::run_in`] has moved into the namespace: ureq connects from the
//! calling thread, so the socket belongs to that namespace (a resolver thread it may spawn inherits it,
//! and the victims' addresses are IP literals anyway).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::LabError;

/// Outcome of one GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub body_bytes: usize,
}

/// GET `path` from `addr:port`, connecting from namespace `ns`.
pub fn get(ns: &str, addr: Ipv4Addr, port: u16, path: &str, timeout: Duration) -> Result<HttpReply, LabError> {
    let path = path.to_string();
    netns::run_in(ns, move || get_here(addr, port, &path, timeout))?
}

/// GET from the calling thread's namespace; `timeout` bounds connecting and, separately, the whole
/// exchange.
fn get_here(addr: Ipv4Addr, port: u16, path: &str, timeout: Duration) -> Result<HttpReply, LabError> {
    let url = format!("http://{}{path}", SocketAddr::from((addr, port)));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent("vmguard")
        .timeout_connect(Some(timeout))
        .timeout_global(Some(timeout))
        .build()
        .into();
    let fail = |e: ureq::Error| LabError::Http { url: url.clone(), source: Box::new(e) };
    let mut reply = agent.get(&url).call().map_err(fail)?;
    let status = reply.status().as_u16();
    let body_bytes =
        std::io::copy(&mut reply.body_mut().as_reader(), &mut std::io::sink()).map_err(|e| fail(ureq::Error::Io(e)))?;
    Ok(HttpReply { status, body_bytes: body_bytes as usize })
}

/// Retry a GET until it answers 200 or `deadline` passes; the last error explains a failure.
pub fn wait_ok(
    ns: &str,
    addr: Ipv4Addr,
    deadline: Instant,
    still_alive: impl Fn() -> Result<(), LabError>,
) -> Result<(), LabError> {
    loop {
        let err = match get(ns, addr, 80, "/", Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => LabError::HttpStatus { url: format!("http://{addr}/"), status: r.status },
            Err(e) => e,
        };
        still_alive()?;
        if Instant::now() >= deadline {
            return Err(err);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot server on 127.0.0.1 answering `reply` to the first request; returns its port and
    /// the request it received.
    fn serve_once(reply: &'static [u8]) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            c.write_all(reply).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (port, t)
    }

    #[test]
    fn reads_status_and_body_size() {
        let (port, t) = serve_once(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nhello");
        let r = get_here(Ipv4Addr::LOCALHOST, port, "/index.html", Duration::from_secs(2)).unwrap();
        assert_eq!(r, HttpReply { status: 200, body_bytes: 5 });
        let req = t.join().unwrap();
        assert!(req.starts_with("GET /index.html HTTP/1.1\r\n"), "{req}");
        assert!(req.to_ascii_lowercase().contains("user-agent: vmguard"), "{req}");
    }

    #[test]
    fn other_statuses_are_replies_not_errors() {
        let (port, _t) = serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(get_here(Ipv4Addr::LOCALHOST, port, "/", Duration::from_secs(2)).unwrap().status, 404);
        let (port, _t) = serve_once(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(get_here(Ipv4Addr::LOCALHOST, port, "/", Duration::from_secs(2)).unwrap().status, 302);
    }

    #[test]
    fn garbage_silence_and_refusal_are_errors() {
        let (port, _t) = serve_once(b"SSH-2.0-OpenSSH\r\n\r\n");
        let err = get_here(Ipv4Addr::LOCALHOST, port, "/", Duration::from_secs(2)).unwrap_err();
        assert!(err.to_string().contains(&format!("GET http://127.0.0.1:{port}/")), "{err}");
        // Accepts and never answers: the timeout bounds the wait.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let t = Instant::now();
        assert!(get_here(Ipv4Addr::LOCALHOST, port, "/", Duration::from_millis(300)).is_err());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        drop(silent);
        // Nothing listening.
        assert!(get_here(Ipv4Addr::LOCALHOST, port, "/", Duration::from_secs(1)).is_err());
    }
}
