#!/usr/bin/env bash
# Lab figures for the README: `lab up` time per victim kind (guest image cold and cached) and each
# victim's memory. Needs root; uses its own lab prefix and removes it at the end.
#   scripts/lab-figures.sh [path/to/vmguard]
set -euo pipefail
V=${1:-target/release/vmguard}
dir=$(mktemp -d)
trap 'VMGUARD_CONFIG=$dir/vmguard.toml "$V" lab down >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
cat > "$dir/vmguard.toml" <<TOML
[lab]
prefix = "vmgfig"
cache_dir = "$dir/cache"
TOML
export VMGUARD_CONFIG=$dir/vmguard.toml
now() { date +%s.%N; }
printf '%-10s %-7s %9s %10s %9s\n' victim image "up (s)" "victim (s)" "RSS MiB"
for kind in vanilla container qemu qemu; do
  image=cached; [ "$kind" = qemu ] && [ ! -d "$dir/cache/kernels" ] && image=cold
  t0=$(now); "$V" lab up --victims "$kind" >/dev/null 2>&1; t1=$(now)
  "$V" --json lab status > "$dir/status.json"
  python3 - "$kind" "$image" "$t0" "$t1" "$dir/status.json" <<'PY'
import json, sys
kind, image, t0, t1, path = sys.argv[1:]
v = json.load(open(path))["victims"][0]
print(f"{kind:<10} {image if kind == 'qemu' else '-':<7} {float(t1)-float(t0):9.1f} {v['start_secs']:10.1f} {v['rss_kib']/1024:9.1f}")
PY
  "$V" lab down >/dev/null
done
