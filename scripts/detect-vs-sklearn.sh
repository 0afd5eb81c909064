#!/usr/bin/env bash
# Times vmguard's detect crate (K-means, EM full, EM diag) against scikit-learn on one generated CSV of
# 1,000,000 windows x 8 features, side by side. Usage: scripts/detect-vs-sklearn.sh [--rows N] [--repeat R]
# Exit status 0 when every row meets the targets (ratio <= 0.5, ARI >= 0.99).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if ! python3 -c 'import sklearn, numpy' 2>/dev/null; then
  echo "installing scikit-learn and numpy with pip" >&2
  pip install --quiet scikit-learn numpy
fi
manifest="$top/Cargo.toml"
# Other crates of the workspace may be mid-edit: DETECT_MANIFEST can point at a workspace holding detect only.
[ -n "${DETECT_MANIFEST:-}" ] && manifest="$DETECT_MANIFEST"
cargo build --quiet --release --manifest-path "$manifest" -p detect --example fit_csv
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$manifest" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec python3 "$top/scripts/detect-vs-sklearn.py" --binary "$target_dir/release/examples/fit_csv" "$@"
