//! A minimal HTTP/1.1 layer: read one request (request line, headers, `Content-Length` body), route
//! it to the board, write one response; keep-alive unless the client says `Connection: close`.

use std::io::{BufRead, Write};

use crate::WebError;
use crate::db::{Board, PAGE_SIZE};

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub location: Option<String>,
}

impl Response {
    fn html(status: u16, body: String) -> Response {
        Response { status, content_type: "text/html; charset=utf-8", body, location: None }
    }

    /// The database tier could not be reached for this request.
    pub fn unavailable(why: String) -> Response {
        Response::text(503, why)
    }

    fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into(), location: None }
    }

    pub fn write_to(&self, w: &mut impl Write, keep_alive: bool) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            303 => "See Other",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if let Some(l) = &self.location {
            head.push_str(&format!("Location: {l}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        w.write_all(self.body.as_bytes())?;
        w.flush()
    }
}

/// Read one request; `Ok(None)` when the client closed the connection between requests.
pub fn read_request(r: &mut impl BufRead) -> Result<Option<Request>, WebError> {
    let io = |source| WebError::Io { what: "reading a request", source };
    let mut line = String::new();
    if r.read_line(&mut line).map_err(io)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(WebError::BadRequest(format!("malformed request line {:?}", line.trim_end())));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(WebError::BadRequest(format!("unsupported version {version:?}")));
    }
    let mut keep_alive = version == "HTTP/1.1";
    let mut length = 0usize;
    let mut head_len = line.len();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(io)? == 0 {
            return Err(WebError::BadRequest("connection closed inside the headers".into()));
        }
        head_len += h.len();
        if head_len > MAX_HEAD {
            return Err(WebError::BadRequest("headers too large".into()));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| WebError::BadRequest(format!("bad Content-Length {value:?}")))?;
            if length > MAX_BODY {
                return Err(WebError::BadRequest("body too large".into()));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).map_err(io)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request { method: method.to_string(), path: path.to_string(), query: query.to_string(), body, keep_alive }))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` value of `key`.
fn form_value(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| url_decode(v))
    })
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>{}</title></head><body><h1>{}</h1>{body}</body></html>\n",
        escape(title),
        escape(title)
    )
}

/// Route one request to the board.
pub fn handle(board: &mut Board, req: &Request) -> Response {
    match route(board, req) {
        Ok(r) => r,
        Err(WebError::BadRequest(m)) => Response::text(400, m),
        Err(e) => Response::text(500, e.to_string()),
    }
}

fn route(board: &mut Board, req: &Request) -> Result<Response, WebError> {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["health"]) => Ok(Response::text(200, "ok\n")),
        ("GET", []) => {
            let page_no: u32 = form_value(&req.query, "page").and_then(|p| p.parse().ok()).unwrap_or(0);
            let threads = board.list(page_no)?;
            let mut body = String::from("<table><tr><th>thread</th><th>author</th><th>comments</th></tr>");
            for t in &threads {
                body.push_str(&format!(
                    "<tr><td><a href=\"/thread/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                    t.id,
                    escape(&t.title),
                    escape(&t.author),
                    t.comments
                ));
            }
            body.push_str(&format!("</table><a href=\"/?page={}\">older</a>", page_no + 1));
            Ok(Response::html(200, page(&format!("threads, page {page_no} ({PAGE_SIZE} per page)"), &body)))
        }
        ("GET", ["thread", id]) => {
            let id: i64 = id.parse().map_err(|_| WebError::BadRequest(format!("bad thread id {id:?}")))?;
            let Some(t) = board.thread(id)? else { return Ok(Response::text(404, "no such thread\n")) };
            let mut body = format!("<p>by {}</p><p>{}</p><ol>", escape(&t.author), escape(&t.body));
            for c in &t.comments {
                body.push_str(&format!(
                    "<li id=\"c{}\"><b>{}</b> ({}): {}</li>",
                    c.id,
                    escape(&c.author),
                    c.rating,
                    escape(&c.body)
                ));
            }
            body.push_str(&format!(
                "</ol><form method=\"post\" action=\"/thread/{id}/comment\"><input name=\"author\"><textarea name=\"body\"></textarea><button>post</button></form>"
            ));
            Ok(Response::html(200, page(&t.title, &body)))
        }
        ("POST", ["thread", id, "comment"]) => {
            let id: i64 = id.parse().map_err(|_| WebError::BadRequest(format!("bad thread id {id:?}")))?;
            let form = String::from_utf8_lossy(&req.body);
            let author: i64 = form_value(&form, "author")
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| WebError::BadRequest("form field `author` (a user id) is missing".into()))?;
            let text = form_value(&form, "body").unwrap_or_default();
            if text.trim().is_empty() {
                return Err(WebError::BadRequest("form field `body` is empty".into()));
            }
            match board.post(id, author, &text)? {
                Some(cid) => {
                    Ok(Response { location: Some(format!("/thread/{id}#c{cid}")), ..Response::text(303, "posted\n") })
                }
                None => Ok(Response::text(404, "no such thread or user\n")),
            }
        }
        ("GET" | "POST", _) => Ok(Response::text(404, "not found\n")),
        _ => Ok(Response::text(405, "method not allowed\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::SeedSize;
    use proptest::prelude::*;

    fn req(raw: &str) -> Request {
        read_request(&mut std::io::BufReader::new(raw.as_bytes())).unwrap().unwrap()
    }

    fn board() -> (Board, lab::database::LocalServer) {
        crate::db::tests::temp_board(SeedSize { users: 5, threads: 30, comments: 100 })
    }

    #[test]
    fn requests_parse() {
        let r = req("POST /thread/3/comment?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_str()), ("POST", "/thread/3/comment", "x=1"));
        assert_eq!(r.body, b"hello");
        assert!(r.keep_alive);
        assert!(!req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!req("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(read_request(&mut std::io::BufReader::new(&b""[..])).unwrap().is_none());
        assert!(read_request(&mut std::io::BufReader::new(&b"garbage\r\n\r\n"[..])).is_err());
        assert_eq!(url_decode("a+b%21%zz%4"), "a b!%zz%4");
    }

    #[test]
    fn pages() {
        let (mut b, server) = board();
        let r = handle(&mut b, &req("GET /?page=1 HTTP/1.1\r\n\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.matches("<tr><td>").count(), 10);
        let r = handle(&mut b, &req("GET /thread/4 HTTP/1.1\r\n\r\n"));
        assert_eq!(r.status, 200, "{}", r.body);
        let r = handle(
            &mut b,
            &req("POST /thread/4/comment HTTP/1.1\r\nContent-Length: 23\r\n\r\nauthor=2&body=%3Cb%3Ehi"),
        );
        assert_eq!(r.status, 303, "{}", r.body);
        let r = handle(&mut b, &req("GET /thread/4 HTTP/1.1\r\n\r\n"));
        assert!(r.body.contains("&lt;b&gt;hi"), "comments are escaped");
        assert_eq!(handle(&mut b, &req("GET /thread/x HTTP/1.1\r\n\r\n")).status, 400);
        assert_eq!(handle(&mut b, &req("GET /thread/999 HTTP/1.1\r\n\r\n")).status, 404);
        assert_eq!(handle(&mut b, &req("DELETE / HTTP/1.1\r\n\r\n")).status, 405);
        let mut out = Vec::new();
        r.write_to(&mut out, true).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with("HTTP/1.1 200 OK\r\n"));
        drop(b);
        drop(server);
    }

    proptest! {
        #[test]
        fn reading_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_request(&mut std::io::BufReader::new(&raw[..]));
        }

        #[test]
        fn decoding_never_panics(s in ".{0,60}") {
            let _ = url_decode(&s);
            let _ = form_value(&s, "a");
        }
    }
}
