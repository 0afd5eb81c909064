//! Xen: `xl list` and the `vif<domid>.<n>` backend interfaces in dom0.

/// One domain of `xl list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlDomain {
    pub name: String,
    pub id: u32,
}

fn is_state(s: &str) -> bool {
    s.len() == 6 && s.chars().all(|c| "rbpscd-".contains(c))
}

/// Parse `xl list`: a header `Name ID Mem VCPUs State Time(s)`, then one row a domain. The columns are
/// read from the right (ID Mem VCPUs State Time), so a name may hold spaces. Rows of another shape are
/// skipped. Domain-0 (id 0, the host itself) is left out.
pub fn parse_xl_list(text: &str) -> Vec<XlDomain> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[0] == "Name" {
            continue;
        }
        let n = fields.len();
        let (id, mem, vcpus, state, time) = (fields[n - 5], fields[n - 4], fields[n - 3], fields[n - 2], fields[n - 1]);
        let (Ok(id), true, true, true, true) = (
            id.parse::<u32>(),
            mem.parse::<u64>().is_ok(),
            vcpus.parse::<u32>().is_ok(),
            is_state(state),
            time.parse::<f64>().is_ok(),
        ) else {
            continue;
        };
        if id == 0 {
            continue;
        }
        out.push(XlDomain { name: fields[..n - 5].join(" "), id });
    }
    out
}

/// The backend interface of a domain among dom0's interfaces: `vif<domid>.0` (else the lowest
/// `vif<domid>.<n>`), or the `-emu` tap of an HVM guest when it has nothing else.
pub fn pick_vif(names: &[String], domid: u32) -> Option<String> {
    let prefix = format!("vif{domid}.");
    let mut best: Option<(bool, u32, &String)> = None;
    for name in names {
        let Some(rest) = name.strip_prefix(&prefix) else { continue };
        let (num, emu) = match rest.strip_suffix("-emu") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let Ok(num) = num.parse::<u32>() else { continue };
        let key = (emu, num, name);
        if best.as_ref().is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
            best = Some(key);
        }
    }
    best.map(|(_, _, n)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     2     r-----     123.4
guest1                                       1   512     1     -b----      12.0
my guest                                    12   256     1     --p---       0.0
(null)                                       3     0     1     --ps-d       1.5
";

    #[test]
    fn xl_list_sample() {
        assert_eq!(
            parse_xl_list(SAMPLE),
            [
                XlDomain { name: "guest1".into(), id: 1 },
                XlDomain { name: "my guest".into(), id: 12 },
                XlDomain { name: "(null)".into(), id: 3 },
            ]
        );
        assert!(parse_xl_list("xl: command not found\n").is_empty());
        assert!(parse_xl_list("").is_empty());
    }

    #[test]
    fn vifs() {
        let names: Vec<String> =
            ["lo", "eth0", "vif1.1", "vif1.0-emu", "vif12.0", "vif1.0", "vif1.x"].map(String::from).into();
        assert_eq!(pick_vif(&names, 1).as_deref(), Some("vif1.0"));
        assert_eq!(pick_vif(&names, 12).as_deref(), Some("vif12.0"));
        assert_eq!(pick_vif(&names, 2), None);
        let hvm: Vec<String> = ["vif3.0-emu"].map(String::from).into();
        assert_eq!(pick_vif(&hvm, 3).as_deref(), Some("vif3.0-emu"));
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*", domid in any::<u32>()) {
            let _ = parse_xl_list(&text);
            let _ = pick_vif(&text.split_whitespace().map(String::from).collect::<Vec<_>>(), domid);
        }

        #[test]
        fn rows_roundtrip(rows in proptest::collection::vec(("[a-zA-Z0-9_.-]{1,8}( [a-zA-Z0-9_.-]{1,8})?", 1u32..32768, 0u64..1<<20, 1u32..64, "[rbpscd-]{6}", 0.0f64..1e6), 0..6)) {
            let mut text = String::from("Name                                        ID   Mem VCPUs\tState\tTime(s)\n");
            text.push_str("Domain-0                                     0  1024     2     r-----     1.0\n");
            for (name, id, mem, vcpus, state, time) in &rows {
                text.push_str(&format!("{name:<40} {id:>5} {mem:>5} {vcpus:>5}     {state} {time:>10.1}\n"));
            }
            let want: Vec<XlDomain> = rows.iter().map(|r| XlDomain { name: r.0.clone(), id: r.1 }).collect();
            prop_assert_eq!(parse_xl_list(&text), want);
        }
    }
}
