#!/usr/bin/env bash
# Record every shipped `train-*` and `heldout-*` scenario on one lab (vanilla, container, qemu) into one
# store, for `vmguard detect train` and `vmguard detect eval` (in-family and leave-one-family-out).
#
# Usage (root): scripts/record-corpus.sh STORE   (PREFIX=vmgr VMGUARD=target/release/vmguard SCALE=1)
# About 30 minutes. The lab has its own prefix and is removed on exit, also on failure; a scenario that
# fails is reported and the others go on.
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:?usage: scripts/record-corpus.sh STORE}
PREFIX=${PREFIX:-vmgr}
SCALE=${SCALE:-1}
VMGUARD=${VMGUARD:-target/release/vmguard}
[ -x "$VMGUARD" ] || { echo "build first: cargo build --release -p vmguard" >&2; exit 1; }
work=$(mktemp -d /tmp/vmguard-corpus-XXXXXX)
conf="$work/lab.toml"
printf '[lab]\nprefix = "%s"\nvictims = ["vanilla", "container", "qemu"]\n' "$PREFIX" >"$conf"
trap '"$VMGUARD" --config "$conf" lab down >/dev/null 2>&1 || true' EXIT
"$VMGUARD" --config "$conf" lab up >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; exit 1; }
failed=()
for f in scenarios/train-*.toml scenarios/heldout-*.toml; do
	name=$(basename "$f" .toml)
	echo "$(date -u +%H:%M:%S) recording $name" >&2
	if ! "$VMGUARD" --config "$conf" record "$f" --store "$store" --time-scale "$SCALE" >"$work/$name.log" 2>&1; then
		echo "  $name failed: $(tail -3 "$work/$name.log")" >&2
		failed+=("$name")
	fi
done
echo "recorded into $store; logs in $work" >&2
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
