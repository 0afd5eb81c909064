//! A network namespace's protocol counters from `/proc/<pid>/net/snmp` and `/proc/<pid>/net/netstat`:
//! `Tcp.InSegs`, `Tcp.OutSegs`, `TcpExt.SyncookiesSent`, `TcpExt.ListenDrops`, `TcpExt.ListenOverflows`,
//! `TcpExt.TCPReqQFullDoCookies`, ... Read from the host through any PID inside the namespace.
//!
//! The one parser of these files: [`for_each_counter`] walks them without allocating, [`NetCounters`]
//! is the same walk into a map by `Section.Name`, [`SynCounters`] picks the SYN-flood counters out of
//! `/proc/net/netstat`, and the [`NetSnmp`] source samples them every round.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::file::KeptFile;
use crate::sample::{Emit, Kind, Name, Sample, SourceId};
use crate::{ParseError, Source, TelemetryError};

/// The sections kept by default: what SYN floods and their defences move.
pub const DEFAULT_SECTIONS: [&str; 5] = ["Ip", "Tcp", "Udp", "TcpExt", "IpExt"];

/// Call `f(section, name, value)` for every counter of a snmp/netstat text: pairs of lines
/// `Sect: Name1 Name2 ...` / `Sect: v1 v2 ...`. Values that are not integers are skipped; a header whose
/// next line is of another section is skipped. Allocation-free.
pub fn for_each_counter<'a>(text: &'a str, mut f: impl FnMut(&'a str, &'a str, i64)) {
    for (_, sect, names, values) in section_pairs(text) {
        for (name, value) in names.split_ascii_whitespace().zip(values.split_ascii_whitespace()) {
            if let Ok(v) = value.parse::<i64>() {
                f(sect, name, v);
            }
        }
    }
}

/// Every counter of a `/proc/net/snmp` or `/proc/net/netstat` text by `Section.Name`
/// (`TcpExt.ListenDrops`); values that are not unsigned integers (Tcp.MaxConn = -1) are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetCounters(BTreeMap<String, u64>);

impl NetCounters {
    /// Parse one text, or both files concatenated. Never fails: a text without counters is empty.
    pub fn parse(text: &str) -> NetCounters {
        let mut map = BTreeMap::new();
        for (_, sect, names, values) in section_pairs(text) {
            for (name, value) in names.split_ascii_whitespace().zip(values.split_ascii_whitespace()) {
                if let Ok(v) = value.parse::<u64>() {
                    map.insert(format!("{sect}.{name}"), v);
                }
            }
        }
        NetCounters(map)
    }

    /// One counter: `get("TcpExt", "ListenDrops")`.
    pub fn get(&self, section: &str, name: &str) -> Option<u64> {
        self.0.get(&format!("{section}.{name}")).copied()
    }

    /// Whether any counter of `section` is there.
    pub fn has_section(&self, section: &str) -> bool {
        let prefix = format!("{section}.");
        self.0.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// `(Section.Name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The SYN-flood counters of one network namespace (`TcpExt` of `/proc/net/netstat`).
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
    /// Pick the counters out of a `/proc/net/netstat` text (a counter this kernel lacks reads 0). A text
    /// without a `TcpExt` section (an error message from `cat` in a guest) is an error.
    pub fn from_netstat(text: &str) -> Result<SynCounters, ParseError> {
        let all = NetCounters::parse(text);
        if !all.has_section("TcpExt") {
            return Err(ParseError::new("/proc/net/netstat", "no `TcpExt:` header and values lines", text));
        }
        let get = |n: &str| all.get("TcpExt", n).unwrap_or(0);
        Ok(SynCounters {
            syncookies_sent: get("SyncookiesSent"),
            syncookies_recv: get("SyncookiesRecv"),
            syncookies_failed: get("SyncookiesFailed"),
            listen_drops: get("ListenDrops"),
            listen_overflows: get("ListenOverflows"),
            tcp_req_q_full_drop: get("TCPReqQFullDrop"),
            tcp_req_q_full_do_cookies: get("TCPReqQFullDoCookies"),
        })
    }

    /// The counters of the namespace process `pid` lives in (`/proc/PID/net/netstat`).
    pub fn read(pid: u32) -> Result<SynCounters, TelemetryError> {
        let path = format!("/proc/{pid}/net/netstat");
        let text = std::fs::read_to_string(&path).map_err(|e| TelemetryError::read(&path, e))?;
        SynCounters::from_netstat(&text).map_err(|e| TelemetryError::parse(path, e.reason))
    }

    /// Increase since `before` (saturating: a counter that went back counts 0).
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

/// The `(header line, section, names, values)` of each header line directly followed by a values line
/// of the same section; anything else is skipped.
fn section_pairs(text: &str) -> impl Iterator<Item = (&str, &str, &str, &str)> {
    let mut lines = text.lines().peekable();
    std::iter::from_fn(move || {
        while let Some(header) = lines.next() {
            let Some((sect, names)) = header.split_once(':') else { continue };
            let Some((vsect, values)) = lines.peek()?.split_once(':') else { continue };
            if vsect != sect {
                continue;
            }
            lines.next();
            return Some((header, sect, names, values));
        }
        None
    })
}

/// Settings and levels rather than event counts.
fn is_gauge(section: &str, name: &str) -> bool {
    matches!(
        (section, name),
        ("Tcp", "RtoAlgorithm" | "RtoMin" | "RtoMax" | "MaxConn" | "CurrEstab") | ("Ip", "Forwarding" | "DefaultTTL")
    )
}

/// The counter names of one header line (`Sect: Name1 Name2 ...`), built once and reused for as long as
/// the kernel prints the same header: a round then costs one comparison per line, not one per counter.
#[derive(Debug, Default)]
pub(crate) struct HeaderNames {
    header: String,
    names: Vec<(Name, Kind)>,
}

/// Samples `Section.Name` for the counters of the given sections (negative values, e.g. Tcp.MaxConn = -1,
/// are left out). `cache` holds the names of the header lines of this text, in order (none for the
/// sections not wanted).
pub(crate) fn emit_snmp(text: &str, sections: &[&str], cache: &mut Vec<HeaderNames>, emit: &mut Emit<'_>) -> usize {
    let mut n = 0;
    for (k, (header, sect, names, values)) in section_pairs(text).enumerate() {
        if cache.len() <= k {
            cache.push(HeaderNames::default());
        }
        let entry = &mut cache[k];
        if entry.header != header {
            entry.header.clear();
            entry.header.push_str(header);
            entry.names = if sections.contains(&sect) {
                names
                    .split_ascii_whitespace()
                    .map(|name| {
                        let kind = if is_gauge(sect, name) { Kind::Gauge } else { Kind::Counter };
                        (Name::from(format!("{sect}.{name}")), kind)
                    })
                    .collect()
            } else {
                // A section not wanted: no names, nothing emitted.
                Vec::new()
            };
        }
        for ((name, kind), value) in entry.names.iter().zip(values.split_ascii_whitespace()) {
            if let Ok(v) = value.parse::<i64>()
                && v >= 0
            {
                emit.push_name(name.clone(), v as u64, *kind);
                n += 1;
            }
        }
    }
    n
}

/// Protocol counters of the namespace a process lives in.
pub struct NetSnmp {
    guest: Arc<str>,
    files: [KeptFile; 2],
    sections: Vec<&'static str>,
    buf: String,
    /// Per file, the names of its wanted header lines.
    names: [Vec<HeaderNames>; 2],
}

impl NetSnmp {
    /// Counters of the network namespace of `pid` (the container's init, the vanilla server).
    pub fn new(guest: &str, pid: u32) -> Self {
        Self::from_files(guest, format!("/proc/{pid}/net/snmp"), format!("/proc/{pid}/net/netstat"))
    }

    /// Read other files of the same format (recorded copies, in tests and benchmarks).
    pub fn from_files(
        guest: &str,
        snmp: impl Into<std::path::PathBuf>,
        netstat: impl Into<std::path::PathBuf>,
    ) -> Self {
        NetSnmp {
            guest: guest.into(),
            files: [KeptFile::new(snmp), KeptFile::new(netstat)],
            sections: DEFAULT_SECTIONS.to_vec(),
            buf: String::with_capacity(8192),
            names: Default::default(),
        }
    }

    /// Keep these sections instead of [`DEFAULT_SECTIONS`] (e.g. add "Icmp", "MPTcpExt").
    pub fn sections(mut self, sections: &[&'static str]) -> Self {
        self.sections = sections.to_vec();
        self
    }
}

impl Source for NetSnmp {
    fn id(&self) -> SourceId {
        SourceId::Snmp
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        let mut emit = Emit::new(out, &self.guest, SourceId::Snmp, time_ns);
        for (file, names) in self.files.iter_mut().zip(&mut self.names) {
            file.read(&mut self.buf)?;
            if emit_snmp(&self.buf, &self.sections, names, &mut emit) == 0 {
                return Err(TelemetryError::parse(
                    file.path().display().to_string(),
                    "no counter of the wanted sections",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Shape of a 6.x kernel's /proc/net/snmp (values from a namespace under a SYN flood).
    pub(crate) const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 2 64 1052311 0 0 0 0 0 1052311 1049982 0 0 0 0 0 0 0 0 0 1049982
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps
Icmp: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
IcmpMsg:
IcmpMsg:
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 0 455 0 0 1 1052311 1049982 0 0 0 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 0 0 0 0 0 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
";

    pub(crate) const NETSTAT: &str = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled RcvPruned OfoPruned OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled TWKilled PAWSActive PAWSEstab DelayedACKs DelayedACKLocked DelayedACKLost ListenOverflows ListenDrops TCPHPHits TCPPureAcks TCPHPAcks TCPRenoRecovery TCPSackRecovery TCPSACKReneging TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFullUndo TCPPartialUndo TCPDSACKUndo TCPLossUndo TCPLostRetransmit TCPRenoFailures TCPSackFailures TCPLossFailures TCPFastRetrans TCPSlowStartRetrans TCPTimeouts TCPLossProbes TCPLossProbeRecovery TCPRenoRecoveryFail TCPSackRecoveryFail TCPRcvCollapsed TCPDSACKOldSent TCPDSACKOfoSent TCPDSACKRecv TCPDSACKOfoRecv TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPMemoryPressures TCPMemoryPressuresChrono TCPSACKDiscard TCPDSACKIgnoredOld TCPDSACKIgnoredNoUndo TCPSpuriousRTOs TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted TCPSackMerged TCPSackShiftFallback TCPBacklogCoalesce TCPBacklogDrop PFMemallocDrop TCPMinTTLDrop TCPDeferAcceptDrop IPReversePathFilter TCPTimeWaitOverflow TCPReqQFullDoCookies TCPReqQFullDrop TCPRetransFail TCPRcvCoalesce TCPOFOQueue TCPOFODrop TCPOFOMerge TCPChallengeACK TCPSYNChallenge TCPFastOpenActive TCPFastOpenActiveFail TCPFastOpenPassive TCPFastOpenPassiveFail TCPFastOpenListenOverflow TCPFastOpenCookieReqd TCPFastOpenBlackhole TCPSpuriousRtxHostQueues BusyPollRxPackets TCPAutoCorking TCPFromZeroWindowAdv TCPToZeroWindowAdv TCPWantZeroWindowAdv TCPSynRetrans TCPOrigDataSent TCPHystartTrainDetect TCPHystartTrainCwnd TCPHystartDelayDetect TCPHystartDelayCwnd TCPACKSkippedSynRecv TCPACKSkippedPAWS TCPACKSkippedSeq TCPACKSkippedFinWait2 TCPACKSkippedTimeWait TCPACKSkippedChallenge TCPWinProbe TCPKeepAlive TCPMTUPFail TCPMTUPSuccess TCPDelivered TCPDeliveredCE TCPAckCompressed TCPZeroWindowDrop TCPRcvQDrop TCPWqueueTooBig TCPFastOpenPassiveAltKey TcpTimeoutRehash TcpDuplicateDataRehash TCPDSACKRecvSegs TCPDSACKIgnoredDubious TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash TCPAORequired TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps
TcpExt: 1048001 455 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 12 1048013 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1048001 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps
IpExt: 0 0 0 0 0 0 42091240 41999280 0 0 0 0 0 1052311 0 0 0 0
MPTcpExt: MPCapableSYNRX MPCapableSYNTX
MPTcpExt: 0 0
";

    fn samples(text: &str, sections: &[&str]) -> Vec<Sample> {
        let guest: Arc<str> = "ct".into();
        let mut out = Vec::new();
        let mut cache = Vec::new();
        emit_snmp(text, sections, &mut cache, &mut Emit::new(&mut out, &guest, SourceId::Snmp, 0));
        // A second pass through the filled cache gives the same samples.
        let mut again = Vec::new();
        emit_snmp(text, sections, &mut cache, &mut Emit::new(&mut again, &guest, SourceId::Snmp, 0));
        assert_eq!(out, again);
        out
    }

    #[test]
    fn flood_counters_are_there() {
        let mut all = samples(SNMP, &DEFAULT_SECTIONS);
        all.extend(samples(NETSTAT, &DEFAULT_SECTIONS));
        let get = |n: &str| all.iter().find(|s| s.counter == n).map(|s| (s.value, s.kind));
        assert_eq!(get("TcpExt.SyncookiesSent"), Some((1048001, Kind::Counter)));
        assert_eq!(get("TcpExt.SyncookiesRecv"), Some((455, Kind::Counter)));
        assert_eq!(get("TcpExt.ListenDrops"), Some((1048013, Kind::Counter)));
        assert_eq!(get("TcpExt.ListenOverflows"), Some((12, Kind::Counter)));
        assert_eq!(get("TcpExt.TCPReqQFullDoCookies"), Some((1048001, Kind::Counter)));
        assert_eq!(get("Tcp.InSegs"), Some((1052311, Kind::Counter)));
        assert_eq!(get("Tcp.CurrEstab"), Some((1, Kind::Gauge)));
        assert_eq!(get("Tcp.MaxConn"), None, "-1 is left out");
        assert_eq!(get("IpExt.InOctets"), Some((42091240, Kind::Counter)));
        assert_eq!(get("Icmp.InMsgs"), None, "not a default section");
        assert_eq!(get("MPTcpExt.MPCapableSYNRX"), None);
        assert!(samples(SNMP, &["Icmp"]).iter().any(|s| s.counter == "Icmp.InMsgs"));
    }

    #[test]
    fn counters_by_name() {
        let snmp = NetCounters::parse(SNMP);
        assert_eq!(snmp.get("Tcp", "InSegs"), Some(1052311));
        assert_eq!(snmp.get("Tcp", "MaxConn"), None, "-1 is not a count");
        assert_eq!(snmp.get("Icmp", "InMsgs"), Some(0));
        assert!(snmp.has_section("Udp") && !snmp.has_section("Ud") && !snmp.has_section("TcpExt"));
        let both = NetCounters::parse(&format!("{SNMP}{NETSTAT}"));
        assert_eq!(both.get("TcpExt", "ListenOverflows"), Some(12));
        assert_eq!(both.len(), snmp.len() + NetCounters::parse(NETSTAT).len());
        assert!(NetCounters::parse("cat: /proc/net/netstat: No such file").is_empty());
    }

    #[test]
    fn syn_counters() {
        let c = SynCounters::from_netstat(NETSTAT).unwrap();
        assert_eq!((c.syncookies_sent, c.syncookies_recv), (1048001, 455));
        assert_eq!((c.listen_drops, c.listen_overflows), (1048013, 12));
        assert_eq!((c.tcp_req_q_full_do_cookies, c.tcp_req_q_full_drop), (1048001, 0));
        let before = SynCounters { syncookies_sent: 1_000_000, listen_drops: u64::MAX, ..c };
        let d = c.since(&before);
        assert_eq!((d.syncookies_sent, d.listen_drops, d.listen_overflows), (48001, 0, 0));
        let err = SynCounters::from_netstat(SNMP).unwrap_err();
        assert!(err.to_string().contains("TcpExt"), "{err}");
        // Every Linux process can read its own namespace's counters.
        SynCounters::read(std::process::id()).unwrap();
        let err = SynCounters::read(u32::MAX).unwrap_err();
        assert!(err.to_string().contains("/proc/4294967295/net/netstat"), "{err}");
    }

    proptest! {
        #[test]
        fn never_panics(text in "(\\PC{0,40}\n){0,8}") {
            let _ = samples(&text, &DEFAULT_SECTIONS);
            let _ = NetCounters::parse(&text);
            let _ = SynCounters::from_netstat(&text);
        }

        #[test]
        fn counters_round_trip(
            sections in proptest::collection::btree_map("[A-Z][A-Za-z]{0,7}", proptest::collection::btree_map("[A-Za-z]{1,10}", any::<u64>(), 1..20), 1..5),
        ) {
            let text: String = sections
                .iter()
                .map(|(sect, counters)| {
                    let names: Vec<&str> = counters.keys().map(String::as_str).collect();
                    let values: Vec<String> = counters.values().map(u64::to_string).collect();
                    format!("{sect}: {}\n{sect}: {}\n", names.join(" "), values.join(" "))
                })
                .collect();
            let got = NetCounters::parse(&text);
            let want: Vec<(String, u64)> = sections
                .iter()
                .flat_map(|(sect, c)| c.iter().map(move |(n, v)| (format!("{sect}.{n}"), *v)))
                .collect();
            let got: Vec<(String, u64)> = got.iter().map(|(k, v)| (k.to_string(), v)).collect();
            let mut want = want;
            want.sort();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn syn_counters_found_among_others(
            values in proptest::array::uniform7(any::<u64>()),
            others in proptest::collection::vec(("[a-z]{1,8}", any::<u64>()), 0..10),
            seed: u64,
        ) {
            let wanted = ["SyncookiesSent", "SyncookiesRecv", "SyncookiesFailed", "ListenDrops", "ListenOverflows",
                "TCPReqQFullDrop", "TCPReqQFullDoCookies"];
            // Lowercase names never collide with the wanted ones; shuffle all of them by the seed.
            let mut cols: Vec<(String, u64)> = wanted.iter().map(|n| n.to_string()).zip(values).collect();
            cols.extend(others);
            let n = cols.len();
            for i in 0..n {
                cols.swap(i, (seed.wrapping_mul(i as u64 + 7) % n as u64) as usize);
            }
            let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
            let vals: Vec<String> = cols.iter().map(|(_, v)| v.to_string()).collect();
            let text = format!("TcpExt: {}\nTcpExt: {}\nIpExt: InOctets\nIpExt: 5\n", names.join(" "), vals.join(" "));
            let c = SynCounters::from_netstat(&text).unwrap();
            let got = [c.syncookies_sent, c.syncookies_recv, c.syncookies_failed, c.listen_drops, c.listen_overflows,
                c.tcp_req_q_full_drop, c.tcp_req_q_full_do_cookies];
            prop_assert_eq!(got, values);
            prop_assert_eq!(c.since(&c), SynCounters::default());
        }

        #[test]
        fn pairs_round_trip(names in proptest::collection::vec("[A-Za-z]{1,10}", 1..20), seed: u64) {
            let values: Vec<u64> = (0..names.len() as u64).map(|i| seed.wrapping_mul(i + 1) >> 2).collect();
            let text = format!("Tcp: {}\nTcp: {}\n", names.join(" "),
                values.iter().map(u64::to_string).collect::<Vec<_>>().join(" "));
            let mut got = Vec::new();
            for_each_counter(&text, |_, n, v| got.push((n.to_string(), v as u64)));
            let want: Vec<(String, u64)> = names.iter().cloned().zip(values).collect();
            prop_assert_eq!(got, want);
        }
    }
}
