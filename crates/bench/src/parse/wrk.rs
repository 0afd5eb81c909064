//! wrk output: the `VMGUARD_WRK key=value ...` line our Lua `done` hook prints (preferred: exact
//! percentiles and every error class), else wrk's own text (`Requests/sec:`, `--latency` table,
//! `Socket errors:`).

use super::{Figures, ParseError, leading_number};

const TOOL: &str = "wrk";

/// The Lua script whose `done` hook prints the `VMGUARD_WRK` line.
pub const SCRIPT: &str = include_str!("../wrk.lua");
const HOOK: &str = "VMGUARD_WRK ";

/// `requests_per_sec` (the throughput figure), `requests`, `p50_ms`, `p90_ms`, `p99_ms`, `max_ms`,
/// `mean_ms` (when known), `errors` (sum of connect, read, write, timeout and non-2xx/3xx) and each class.
pub fn parse(text: &str) -> Result<Figures, ParseError> {
    if let Some(line) = text.lines().find_map(|l| l.trim_start().strip_prefix(HOOK)) {
        return parse_hook(line, text);
    }
    parse_text(text)
}

fn parse_hook(line: &str, text: &str) -> Result<Figures, ParseError> {
    let mut raw = Figures::new();
    for pair in line.split_whitespace() {
        if let Some((k, v)) = pair.split_once('=')
            && let Ok(v) = v.parse::<f64>()
            && v.is_finite()
        {
            raw.insert(k.to_string(), v);
        }
    }
    let get = |k: &str| raw.get(k).copied();
    let (Some(requests), Some(duration_us)) = (get("requests"), get("duration_us")) else {
        return Err(ParseError::new(TOOL, "the VMGUARD_WRK line lacks requests= or duration_us=", text));
    };
    if duration_us <= 0.0 {
        return Err(ParseError::new(TOOL, "the VMGUARD_WRK line has a zero duration", text));
    }
    let mut f = Figures::new();
    f.insert("requests".into(), requests);
    f.insert("requests_per_sec".into(), requests / (duration_us / 1e6));
    for (k, out) in
        [("p50_us", "p50_ms"), ("p90_us", "p90_ms"), ("p99_us", "p99_ms"), ("max_us", "max_ms"), ("mean_us", "mean_ms")]
    {
        if let Some(v) = get(k) {
            f.insert(out.into(), v / 1000.0);
        }
    }
    let mut errors = 0.0;
    for k in ["connect", "read", "write", "timeout", "status"] {
        let v = get(k).unwrap_or(0.0);
        errors += v;
        f.insert(format!("errors_{k}"), v);
    }
    f.insert("errors".into(), errors);
    Ok(f)
}

/// A wrk duration (`812.34us`, `1.23ms`, `2.00s`, `1.50m`) in milliseconds.
fn duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let v = leading_number(s)?;
    let unit = s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(v * scale)
}

fn parse_text(text: &str) -> Result<Figures, ParseError> {
    let rps = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Requests/sec:"))
        .and_then(leading_number)
        .ok_or_else(|| ParseError::new(TOOL, "no `Requests/sec:` line and no VMGUARD_WRK line", text))?;
    let mut f = Figures::new();
    f.insert("requests_per_sec".into(), rps);
    if let Some(n) = text.lines().find(|l| l.contains(" requests in ")).and_then(leading_number) {
        f.insert("requests".into(), n);
    }
    // `--latency` distribution: `     50%    1.23ms`.
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if let (Some(p), Some(d), None) = (w.next(), w.next(), w.next())
            && let Some(p) = p.strip_suffix('%')
            && let Some(ms) = duration_ms(d)
        {
            let key = match p {
                "50" | "50.000" => "p50_ms",
                "90" | "90.000" => "p90_ms",
                "99" | "99.000" => "p99_ms",
                _ => continue,
            };
            f.insert(key.into(), ms);
        }
    }
    let mut errors = 0.0;
    if let Some(l) = text.lines().find_map(|l| l.trim_start().strip_prefix("Socket errors:")) {
        for part in l.split(',') {
            let mut w = part.split_whitespace();
            if let (Some(k), Some(v)) = (w.next(), w.next().and_then(leading_number)) {
                errors += v;
                f.insert(format!("errors_{k}"), v);
            }
        }
    }
    if let Some(v) =
        text.lines().find_map(|l| l.trim_start().strip_prefix("Non-2xx or 3xx responses:")).and_then(leading_number)
    {
        errors += v;
        f.insert("errors_status".into(), v);
    }
    f.insert("errors".into(), errors);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEXT: &str = "Running 10s test @ http://10.213.10.2:8080/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.31ms    4.02ms  80.11ms   90.00%
    Req/Sec   650.00     40.00   700.00     70.00%
  Latency Distribution
     50%   11.50ms
     75%   13.00ms
     90%   16.20ms
     99%   31.00ms
  6500 requests in 10.00s, 12.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:    649.80
Transfer/sec:      1.20MB
";

    #[test]
    fn hook_line_wins() {
        let out = format!(
            "{TEXT}VMGUARD_WRK requests=6500 duration_us=10000000 bytes=1 connect=0 read=2 write=0 status=4 timeout=3 p50_us=11500 p90_us=16200 p99_us=31000 max_us=80110 mean_us=12310.0\n"
        );
        let f = parse(&out).unwrap();
        assert_eq!(f["requests_per_sec"], 650.0);
        assert_eq!(f["p99_ms"], 31.0);
        assert_eq!(f["errors"], 9.0);
    }

    #[test]
    fn text_fallback() {
        let f = parse(TEXT).unwrap();
        assert_eq!(f["requests_per_sec"], 649.8);
        assert_eq!(f["requests"], 6500.0);
        assert_eq!(f["p50_ms"], 11.5);
        assert_eq!(f["p99_ms"], 31.0);
        assert_eq!(f["errors"], 9.0);
        assert_eq!(duration_ms("812us"), Some(0.812));
        assert_eq!(duration_ms("2.00s"), Some(2000.0));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let e = parse("unable to connect to 10.213.10.2:8080 Connection refused").unwrap_err().to_string();
        assert!(e.contains("Requests/sec") && e.contains("Connection refused"), "{e}");
        assert!(parse("VMGUARD_WRK requests=5").is_err());
        assert!(parse("VMGUARD_WRK requests=5 duration_us=0").is_err());
    }

    #[test]
    fn script_has_the_hook() {
        assert!(SCRIPT.contains("function done(") && SCRIPT.contains(HOOK.trim()));
    }

    proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,500}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_mangled_output(cut in 0usize..700, junk in ".{0,30}") {
            let mut t: String = TEXT.chars().take(cut).collect();
            t.push_str(&junk);
            let _ = parse(&t);
            let _ = parse(&format!("VMGUARD_WRK {junk}"));
        }
    }
}
