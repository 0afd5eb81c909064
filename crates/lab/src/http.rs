//! A plain HTTP/1.0 GET from inside a lab namespace: how the lab checks that a victim answers.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
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

fn get_here(addr: Ipv4Addr, port: u16, path: &str, timeout: Duration) -> Result<HttpReply, LabError> {
    let target = SocketAddr::from((addr, port));
    let fail = |what: &str, e: std::io::Error| LabError::Http(format!("{what} http://{target}{path}: {e}"));
    let mut s = TcpStream::connect_timeout(&target, timeout).map_err(|e| fail("cannot connect to", e))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| fail("socket", e))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: vmguard\r\n\r\n")
        .map_err(|e| fail("cannot send to", e))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| fail("no reply from", e))?;
    parse_reply(&buf)
        .ok_or_else(|| LabError::Http(format!("http://{target}{path} sent no valid HTTP reply ({} bytes)", buf.len())))
}

/// Status code and body size of a raw HTTP/1.x reply.
pub fn parse_reply(raw: &[u8]) -> Option<HttpReply> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some(HttpReply { status, body_bytes: raw.len() - head_end - 4 })
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
            Ok(r) => LabError::Http(format!("http://{addr}/ answered {} instead of 200", r.status)),
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
    use proptest::prelude::*;

    #[test]
    fn parses_status_and_body() {
        let r = parse_reply(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nhello").unwrap();
        assert_eq!(r, HttpReply { status: 200, body_bytes: 5 });
        assert_eq!(parse_reply(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap().status, 404);
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n\r\n").is_none());
        assert!(parse_reply(b"HTTP/1.0 200 OK\r\n").is_none());
    }

    proptest! {
        #[test]
        fn parser_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_reply(&raw);
        }
    }
}
