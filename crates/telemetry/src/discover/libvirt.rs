//! libvirt: `virsh list --name`, the live domain XML (`virsh dumpxml`), the qemu PID file and cgroup.

use crate::ParseError;

/// The names `virsh list --name` prints, one a line (a blank line ends the list).
pub fn parse_virsh_list(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// What a live domain XML says about the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainXml {
    pub name: String,
    /// `<domain type='kvm'>`: kvm, qemu (TCG), ...
    pub domain_type: Option<String>,
    /// `<domain id='N'>`: only while running.
    pub id: Option<u32>,
    pub uuid: Option<String>,
    /// `<interface><target dev='vnet0'/></interface>` of every interface, in order: the host side of the
    /// guest's NICs, in the host's namespace.
    pub ifaces: Vec<String>,
}

/// Parse `virsh dumpxml NAME` (also the `<domain>` inside libvirt's `/run/libvirt/qemu/NAME.xml` status).
pub fn parse_domain_xml(xml: &str) -> Result<DomainXml, ParseError> {
    const TOOL: &str = "virsh dumpxml";
    let doc = roxmltree::Document::parse(xml).map_err(|e| ParseError::new(TOOL, e.to_string(), xml))?;
    let domain = doc
        .descendants()
        .find(|n| n.has_tag_name("domain"))
        .ok_or_else(|| ParseError::new(TOOL, "no <domain> element", xml))?;
    let child_text = |tag: &str| {
        domain.children().find(|n| n.has_tag_name(tag)).and_then(|n| n.text()).map(|t| t.trim().to_string())
    };
    let name = child_text("name").filter(|n| !n.is_empty()).ok_or_else(|| ParseError::new(TOOL, "no <name>", xml))?;
    let ifaces = domain
        .children()
        .filter(|n| n.has_tag_name("devices"))
        .flat_map(|d| d.children().filter(|n| n.has_tag_name("interface")))
        .filter_map(|i| i.children().find(|n| n.has_tag_name("target")).and_then(|t| t.attribute("dev")))
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    Ok(DomainXml {
        name,
        domain_type: domain.attribute("type").map(String::from),
        id: domain.attribute("id").and_then(|i| i.parse().ok()),
        uuid: child_text("uuid"),
        ifaces,
    })
}

/// A PID file's content (`/run/libvirt/qemu/NAME.pid`): a decimal number, maybe with a newline.
pub fn parse_pid_file(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|p| *p > 0)
}

/// The domain's cgroup from its qemu's cgroup path: libvirt puts the emulator thread in
/// `.../machine-qemu\x2dN\x2dNAME.scope/libvirt/emulator` (v2) or `.../emulator` (v1) and the vCPUs
/// beside it; the domain is the scope above. Paths without that tail are returned as they are.
pub fn libvirt_domain_cgroup(path: &str) -> &str {
    path.strip_suffix("/libvirt/emulator")
        .or_else(|| path.strip_suffix("/emulator"))
        .or_else(|| path.strip_suffix("/libvirt"))
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIVE: &str = r#"<domain type='kvm' id='3'>
  <name>web-1</name>
  <uuid>8d4f2f5e-1c7a-4b7e-9d55-6f0c0c3c1a11</uuid>
  <memory unit='KiB'>1048576</memory>
  <resource><partition>/machine</partition></resource>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='default' portid='7c1f' bridge='virbr0'/>
      <target dev='vnet0'/>
      <model type='virtio'/>
      <alias name='net0'/>
    </interface>
    <interface type='bridge'>
      <source bridge='br0'/>
      <target dev='vnet1'/>
    </interface>
    <interface type='user'><model type='e1000'/></interface>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'><label>libvirt-8d4f</label></seclabel>
</domain>
"#;

    #[test]
    fn live_domain() {
        let d = parse_domain_xml(LIVE).unwrap();
        assert_eq!(d.name, "web-1");
        assert_eq!(d.domain_type.as_deref(), Some("kvm"));
        assert_eq!(d.id, Some(3));
        assert_eq!(d.uuid.as_deref(), Some("8d4f2f5e-1c7a-4b7e-9d55-6f0c0c3c1a11"));
        assert_eq!(d.ifaces, ["vnet0", "vnet1"], "the user-mode NIC has no host interface");
    }

    #[test]
    fn status_file_and_errors() {
        let status =
            format!("<domstatus state='running' reason='booted' pid='4321'>\n<monitor path='/x'/>\n{LIVE}</domstatus>");
        assert_eq!(parse_domain_xml(&status).unwrap().name, "web-1");
        assert!(parse_domain_xml("error: failed to get domain 'x'").is_err());
        assert!(
            parse_domain_xml("<domain type='kvm'><uuid>u</uuid></domain>")
                .unwrap_err()
                .to_string()
                .contains("no <name>")
        );
        assert_eq!(parse_virsh_list(" web-1\nweb 2\n\n"), ["web-1", "web 2"]);
        assert_eq!(parse_pid_file("4321\n"), Some(4321));
        assert_eq!(parse_pid_file("0"), None);
        assert_eq!(
            libvirt_domain_cgroup("/machine.slice/machine-qemu\\x2d3\\x2dweb.scope/libvirt/emulator"),
            "/machine.slice/machine-qemu\\x2d3\\x2dweb.scope"
        );
        assert_eq!(libvirt_domain_cgroup("/machine/web.libvirt-qemu/emulator"), "/machine/web.libvirt-qemu");
        assert_eq!(libvirt_domain_cgroup("/user.slice"), "/user.slice");
    }

    fn xml_escape(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_domain_xml(&text);
            let _ = parse_virsh_list(&text);
            let _ = parse_pid_file(&text);
        }

        #[test]
        fn names_and_targets_roundtrip(
            name in "[a-zA-Z0-9_.&<>'\" -]{0,12}[a-zA-Z0-9_.&<>'\"-]",
            id in proptest::option::of(1u32..100_000),
            devs in proptest::collection::vec("[a-z0-9-]{1,15}", 0..4),
        ) {
            let name = name.trim_start().to_string();
            prop_assume!(!name.is_empty());
            let id_attr = id.map(|i| format!(" id='{i}'")).unwrap_or_default();
            let ifaces: String = devs.iter().map(|d| format!("<interface type='network'><target dev='{d}'/></interface>")).collect();
            let xml = format!("<domain type='kvm'{id_attr}><name>{}</name><devices>{ifaces}</devices></domain>", xml_escape(&name));
            let d = parse_domain_xml(&xml).unwrap();
            prop_assert_eq!(d.name, name);
            prop_assert_eq!(d.id, id);
            prop_assert_eq!(d.ifaces, devs);
        }
    }
}
