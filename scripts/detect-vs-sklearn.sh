#!/usr/bin/env bash
# Times `vmguard detect fit` (K-means, EM full, EM diag) against pandas.read_csv + scikit-learn on one
# generated CSV of 1,000,000 windows x 8 features, side by side, each side a whole process as the user
# waits for it (reading the CSV included). Usage: scripts/detect-vs-sklearn.sh [--rows N] [--repeat R]
# Exit status 0 when every row meets the targets (ratio <= 0.3, ARI >= 0.99).
# VMGUARD_BIN=path times that vmguard binary instead of building this checkout's (e.g. one built from
# a clean copy while other crates of the workspace are mid-edit).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if ! python3 -c 'import sklearn, numpy, pandas' 2>/dev/null; then
  echo "installing scikit-learn, pandas and numpy with pip" >&2
  pip install --quiet scikit-learn pandas numpy
fi
bin="${VMGUARD_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --quiet --release --manifest-path "$top/Cargo.toml" -p vmguard
  target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$top/Cargo.toml" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  bin="$target_dir/release/vmguard"
fi
exec python3 "$top/scripts/detect-vs-sklearn.py" --binary "$bin" "$@"
