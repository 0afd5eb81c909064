#!/usr/bin/env bash
# `make deps`: make sure every program the lab, the floods, the benchmarks and the tests run is there,
# installing the Debian packages that provide the missing ones. It decides by the programs (not by
# package names), checks them again after installing, and names what is still missing.
#
# - Idempotent and quick: with every program present it only checks that apt knows the guest kernel
#   package (the qemu victim's kernel is downloaded with apt) and refreshes the lists if not.
# - qemu-system-x86 and qemu-utils are installed together at one version (the installed
#   qemu-system-x86's, else qemu-utils' if apt offers qemu-system-x86 at that version too, else the
#   candidate), so apt never removes a newer qemu-utils (e.g. from bookworm-backports) to install
#   qemu-system-x86 from bookworm; a newer qemu-utils is downgraded to match instead.
# - apt's plan is simulated first: if it would remove any package, nothing is installed and the
#   packages are named (VMGUARD_DEPS_ALLOW_REMOVE=1 lets it go ahead).
# - Not root: names what is missing and how to get it. That is an error with CI=true, a warning
#   otherwise (the tests that need those programs need root too; `make test` lists them).
#
# DEPS_DRY_RUN=1: print what would be installed (and apt's simulated plan), change nothing.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# program | Debian package | what needs it
NEEDS=(
	"ip|iproute2|the lab's namespaces, veths, bridges, routes"
	"tc|iproute2|the attacker link's shaping (tbf)"
	"nft|nftables|the gateway (blackhole, --drop)"
	"qemu-system-x86_64|qemu-system-x86|the qemu victim"
	"qemu-img|qemu-utils|the qemu victim's data disk"
	"mkfs.ext4|e2fsprogs|the qemu victim's data disk"
	"depmod|kmod|the guest initramfs (module order)"
	"objcopy|binutils|the guest initramfs (stripped vmguard)"
	"debootstrap|debootstrap|the xen victim's dom0 root (Debian from apt's mirror, built once and cached)"
	"unshare|util-linux|debootstrap in a private mount namespace (the xen victim's dom0 root)"
	"setpriv|util-linux|debootstrap ended with vmguard if it dies (the xen victim's dom0 root)"
	"gzip|gzip|the xen victim's hypervisor (xen-4.17-amd64.gz unpacked)"
	"busybox|busybox-static|every victim's httpd, the guest's userland"
	"runc|runc|the container victim"
	"iperf3|iperf3|network benchmark, attacker link test"
	"sysbench|sysbench|cpu, memory and file benchmarks"
	"mariadbd|mariadb-server-core|the web benchmark's database tier in every victim"
	"mariadb-install-db|mariadb-server-core|the database tier's data directory (made once, cached)"
	"mariadb|mariadb-client-core|database tier checks in the tests"
	"wrk|wrk|web benchmark, benign traffic"
	"curl|curl|benign traffic, benchmark checks"
	"hping3|hping3|hping3 flood scenarios (record), also copied into the qemu guest for zombie floods"
	"trafgen|netsniff-ng|trafgen flood scenarios (record), scripts/flood-compare.sh"
	"nping|nmap|nping flood scenarios (record)"
	"timeout|coreutils|bounds every peer-tool flood (hping3, trafgen, nping)"
	"tar|tar|the backup workload's archive (busybox tar in the victims; GNU tar on the host)"
	"promtool|prometheus|alert rule tests"
	"prometheus|prometheus|collect_live scrape test"
	"chromium|chromium|the HTML report check (bench_live)"
	"python3|python3|scripts/lab-figures.sh"
	"virsh|libvirt-clients|the live test on a real host: libvirt guest discovery (virsh -c qemu:///system)"
	"libvirtd|libvirt-daemon-system|the live test on a real host: the libvirt daemon the discovery asks"
	"podman|podman|the live test on a real host: container discovery (run with --runtime runc)"
)

is_root() { [ "$(id -u)" -eq 0 ]; }
ci() { [ "${CI:-}" = true ]; }

# Prints "program package" for every program that is missing or unusable.
missing() {
	local entry prog pkg
	for entry in "${NEEDS[@]}"; do
		IFS='|' read -r prog pkg _ <<<"$entry"
		if ! command -v "$prog" >/dev/null 2>&1; then
			echo "$prog $pkg"
		fi
	done
	# The guest and the container run /bin/busybox with no shared libraries: it must be static
	# (Debian's busybox package is dynamic; busybox-static replaces it).
	local bb
	for bb in /bin/busybox /usr/bin/busybox; do
		[ -e "$bb" ] && break
	done
	if [ ! -e "$bb" ]; then
		command -v busybox >/dev/null 2>&1 && echo "/bin/busybox busybox-static"
	elif ldd "$bb" >/dev/null 2>&1; then
		echo "static-busybox busybox-static" # the one there is dynamically linked
	fi
	return 0
}

purpose() {
	local entry prog
	[ "$1" = static-busybox ] && { echo "a static /bin/busybox for the guest and the container (the one there is dynamically linked)"; return; }
	for entry in "${NEEDS[@]}"; do
		IFS='|' read -r prog _ why <<<"$entry"
		[ "$prog" = "$1" ] && { echo "$why"; return; }
	done
	echo "the lab"
}

# Version of an installed package, empty if not installed.
installed_version() {
	dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '$3 == "installed" { print $4 }'
}

# The one version qemu-system-x86 and qemu-utils are installed at.
qemu_version() {
	local sys utils
	sys=$(installed_version qemu-system-x86)
	if [ -n "$sys" ]; then
		echo "$sys"
		return
	fi
	utils=$(installed_version qemu-utils)
	if [ -n "$utils" ] && apt-cache madison qemu-system-x86 | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | grep -qxF "$utils"; then
		echo "$utils"
		return
	fi
	apt-cache policy qemu-system-x86 | awk '/Candidate:/ { print $2 }'
}

guest_kernel_known() { apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; }

report_missing() { # lines "program package" on stdin
	local prog pkg
	while read -r prog pkg; do
		echo "  $prog (Debian package $pkg): $(purpose "$prog")" >&2
	done
}

need=$(missing)
if [ -z "$need" ]; then
	if ! guest_kernel_known; then
		if is_root; then
			echo "refreshing apt's package lists (the qemu victim's kernel is downloaded with apt)"
			[ -n "${DEPS_DRY_RUN:-}" ] || apt-get update -qq
		else
			echo "warning: apt does not know linux-image-cloud-amd64 (the qemu guest's kernel): run \`apt-get update\` as root" >&2
		fi
	fi
	exit 0
fi

if ! is_root; then
	echo "$(ci && echo error || echo warning): programs missing, and only root can install them (\`make deps\` as root):" >&2
	report_missing <<<"$need"
	ci && exit 1
	exit 0
fi

packages=()
for pkg in $(awk '{ print $2 }' <<<"$need" | sort -u); do
	case "$pkg" in
	qemu-system-x86 | qemu-utils) ;; # as a pair, below
	*) packages+=("$pkg") ;;
	esac
done
echo "missing programs:"
report_missing <<<"$need" 2>&1

echo "refreshing apt's package lists"
[ -n "${DEPS_DRY_RUN:-}" ] || apt-get update -qq
if grep -qE ' qemu-(system-x86|utils)$' <<<"$need"; then
	v=$(qemu_version)
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		echo "error: apt offers no qemu-system-x86 (check /etc/apt/sources.list*)" >&2
		exit 1
	fi
	packages+=("qemu-system-x86=$v" "qemu-utils=$v")
fi

apt_args=(--no-install-recommends --allow-downgrades)
plan=$(apt-get install -s "${apt_args[@]}" "${packages[@]}" 2>&1) || {
	echo "error: apt cannot install ${packages[*]}:" >&2
	echo "$plan" >&2
	exit 1
}
removals=$(awk '/^Remv / { print $2, $3 }' <<<"$plan")
replaced=$(awk '/^Inst [^ ]+ \[/ { gsub(/[][]/, "", $3); gsub(/[()]/, "", $4); print "  " $2 " " $3 " -> " $4 }' <<<"$plan")
if [ -n "$replaced" ]; then
	echo "note: apt replaces the installed version of (qemu-system-x86 and qemu-utils are kept at one version):"
	echo "$replaced"
fi
if [ -n "$removals" ] && [ -z "${VMGUARD_DEPS_ALLOW_REMOVE:-}" ]; then
	echo "error: installing ${packages[*]} would REMOVE these packages, so nothing was installed:" >&2
	sed 's/^/  /' <<<"$removals" >&2
	echo "install the missing programs by hand, or rerun with VMGUARD_DEPS_ALLOW_REMOVE=1" >&2
	exit 1
fi
echo "installing Debian packages: ${packages[*]}"
if [ -n "${DEPS_DRY_RUN:-}" ]; then
	echo "(dry run: apt's plan below, nothing installed)"
	grep -E '^(Inst|Remv) ' <<<"$plan" || true
	exit 0
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_args[@]}" "${packages[@]}"

still=$(missing)
if [ -n "$still" ]; then
	echo "error: after installing, these programs are still missing:" >&2
	report_missing <<<"$still"
	exit 1
fi
echo "every program the lab and the tests need is installed"
