//! Victim-side effects of a flood: the kernel's TCP extension counters (`TcpExt` in
//! `/proc/<pid>/net/netstat`, which shows the network namespace of that process), e.g.
//! `SyncookiesSent` and `ListenDrops`.

use std::collections::BTreeMap;

/// Parse a `/proc/net/netstat` text into `section -> counter -> value` (sections `TcpExt`, `IpExt`,
/// `MPTcpExt`...: each is a header line of names followed by a line of values).
pub fn parse_netstat(text: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((sec, names)), Some((sec2, values))) = (names.split_once(':'), values.split_once(':')) else {
            continue;
        };
        if sec != sec2 {
            continue;
        }
        let map: BTreeMap<String, u64> = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .filter_map(|(n, v)| v.parse().ok().map(|v| (n.to_string(), v)))
            .collect();
        out.insert(sec.to_string(), map);
    }
    out
}

/// The SYN-flood counters of one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SynCounters {
    pub syncookies_sent: u64,
    pub syncookies_recv: u64,
    pub syncookies_failed: u64,
    pub listen_drops: u64,
    pub listen_overflows: u64,
    pub tcp_req_q_full_drop: u64,
    pub tcp_req_q_full_do_cookies: u64,
}

impl SynCounters {
    pub fn from_netstat(text: &str) -> SynCounters {
        let all = parse_netstat(text);
        let get = |n: &str| all.get("TcpExt").and_then(|m| m.get(n)).copied().unwrap_or(0);
        SynCounters {
            syncookies_sent: get("SyncookiesSent"),
            syncookies_recv: get("SyncookiesRecv"),
            syncookies_failed: get("SyncookiesFailed"),
            listen_drops: get("ListenDrops"),
            listen_overflows: get("ListenOverflows"),
            tcp_req_q_full_drop: get("TCPReqQFullDrop"),
            tcp_req_q_full_do_cookies: get("TCPReqQFullDoCookies"),
        }
    }

    /// Read the counters of the namespace process `pid` lives in.
    pub fn read(pid: u32) -> std::io::Result<SynCounters> {
        std::fs::read_to_string(format!("/proc/{pid}/net/netstat")).map(|t| SynCounters::from_netstat(&t))
    }

    /// Counter increase since `before` (saturating: counters never go back).
    pub fn since(&self, before: &SynCounters) -> SynCounters {
        SynCounters {
            syncookies_sent: self.syncookies_sent.saturating_sub(before.syncookies_sent),
            syncookies_recv: self.syncookies_recv.saturating_sub(before.syncookies_recv),
            syncookies_failed: self.syncookies_failed.saturating_sub(before.syncookies_failed),
            listen_drops: self.listen_drops.saturating_sub(before.listen_drops),
            listen_overflows: self.listen_overflows.saturating_sub(before.listen_overflows),
            tcp_req_q_full_drop: self.tcp_req_q_full_drop.saturating_sub(before.tcp_req_q_full_drop),
            tcp_req_q_full_do_cookies: self.tcp_req_q_full_do_cookies.saturating_sub(before.tcp_req_q_full_do_cookies),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts ListenOverflows ListenDrops TCPReqQFullDoCookies TCPReqQFullDrop\n\
TcpExt: 104233 2 1 0 5 17 104233 0\n\
IpExt: InNoRoutes InTruncatedPkts\n\
IpExt: 0 3\n";

    #[test]
    fn parses_tcpext() {
        let c = SynCounters::from_netstat(SAMPLE);
        assert_eq!(c.syncookies_sent, 104_233);
        assert_eq!(c.listen_drops, 17);
        assert_eq!(c.listen_overflows, 5);
        assert_eq!(c.tcp_req_q_full_do_cookies, 104_233);
        assert_eq!(parse_netstat(SAMPLE)["IpExt"]["InTruncatedPkts"], 3);
        let before = SynCounters { syncookies_sent: 100_000, ..c };
        assert_eq!(c.since(&before).syncookies_sent, 4233);
    }

    #[test]
    fn reads_own_namespace() {
        // Every Linux process can read its own netstat; the TcpExt section is always there.
        let c = SynCounters::read(std::process::id()).unwrap();
        let _ = c.listen_drops;
    }
}
