#!/usr/bin/env bash
# Seed 004's shipped data: export a recorded store's xentrace samples and labels to data/NAME.csv.xz,
# recompute Part A from the file and from the store (they must agree), and write
# data/NAME.expected.json, which `make test` (crates/vmguard/tests/seed004_data.rs) checks.
#
#   scripts/seed004-data.sh STORE                       # the 60-minute recording (--time-scale 1)
#   NAME=seed004-xen-short WINDOWS=6s,15s,30s,60s STEP=3s scripts/seed004-data.sh short.db   # 0.05
#
# Environment: NAME (seed004-xen), SCENARIO (seed004-xen), WINDOWS (the seed's 2m,5m,10m,20m), STEP
# (1m: windows sliding by one minute besides the tumbling ones), VMGUARD (target/release/vmguard,
# built when missing). Needs jq. Prints the table for the README at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

STORE=${1:?usage: scripts/seed004-data.sh STORE (the store \`vmguard record seed004-xen\` wrote)}
NAME=${NAME:-seed004-xen}
SCENARIO=${SCENARIO:-seed004-xen}
WINDOWS=${WINDOWS:-2m,5m,10m,20m}
STEP=${STEP:-1m}
VMGUARD=${VMGUARD:-target/release/vmguard}

command -v jq >/dev/null || { echo "error: jq is needed (apt-get install jq)" >&2; exit 2; }
[ -f "$STORE" ] || { echo "error: no store at $STORE" >&2; exit 2; }
if [ ! -x "$VMGUARD" ]; then
	cargo build --release -p vmguard
fi

mkdir -p data
out=data/$NAME.csv.xz
args=(--windows "$WINDOWS" --window-step "$STEP" --methods kmeans,em --scaling minmax --seed 0)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$VMGUARD" detect export --store "$STORE" --scenarios "$SCENARIO" --sources xentrace --out "$out"
"$VMGUARD" --json detect eval --samples "$out" "${args[@]}" >"$tmp/file.json"
"$VMGUARD" --json detect eval --store "$STORE" --scenarios "$SCENARIO" --sources xentrace "${args[@]}" >"$tmp/store.json"
if ! diff <(jq .part_a "$tmp/store.json") <(jq .part_a "$tmp/file.json") >"$tmp/diff"; then
	echo "error: Part A from $out differs from Part A from $STORE:" >&2
	cat "$tmp/diff" >&2
	exit 1
fi

jq --arg data "$NAME.csv.xz" --arg store "$STORE" --argjson args "$(printf '%s\n' "${args[@]}" | jq -R . | jq -s .)" \
	'{about: ("Part A of seed 004 recomputed from " + $data + " (exported from " + $store + " by scripts/seed004-data.sh); checked by crates/vmguard/tests/seed004_data.rs"),
	  data: $data, args: $args, part_a: .part_a}' "$tmp/file.json" >"data/$NAME.expected.json"

echo "wrote $out ($(stat -c %s "$out") bytes) and data/$NAME.expected.json; Part A from the file equals Part A from the store"
"$VMGUARD" detect eval --samples "$out" "${args[@]}"
