#!/usr/bin/env bash
# `make test`: every test that can run here, and a loud account of every test that cannot.
#
# Test groups with prerequisites (below) run only when these are met. As non-root the live test
# binaries (*_live: namespaces, taps, cgroups, qemu, raw sockets) are left out of the run and listed,
# with their counts; nothing is reported as passed that did not run (nextest counts them as skipped).
# With CI=true nothing is left out: a missing prerequisite makes the run fail (the tests' own guards
# fail too).
#
# Environment: CARGO (cargo), TEST_PROFILE (release: the profile `make build` built), and
# NEXTEST_EXTRA (more arguments for `cargo nextest run`).
set -uo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
PROFILE=${TEST_PROFILE:-release}
CI_MODE=false
[ "${CI:-}" = true ] && CI_MODE=true

is_root() { [ "$(id -u)" -eq 0 ]; }
has() { command -v "$1" >/dev/null 2>&1; }

# name | nextest filter | prerequisite check (shell) | why it is needed
TEST_GROUPS=(
	"live|binary(/_live\$/)|is_root|needs root: it builds network namespaces, taps, cgroups, runc containers, a qemu guest, raw sockets"
	"promtool|binary(=detect_cli) & test(/promtool/)|has promtool|needs promtool (Debian package prometheus; \`make deps\` as root installs it)"
	"chromium|binary(=report_cli) & test(/chromium/)|has chromium|needs chromium (Debian package chromium; \`make deps\` as root installs it)"
)

if ! $CARGO nextest --version >/dev/null 2>&1; then
	if is_root || $CI_MODE; then
		echo "cargo-nextest is missing: running cargo test (every test, live ones included)"
		exec $CARGO test --profile "$PROFILE" --workspace --no-fail-fast
	fi
	echo "error: cargo-nextest is needed to leave out the tests that need root (cargo install cargo-nextest --locked)" >&2
	exit 2
fi

list() { # filter -> "binary test" lines
	$CARGO nextest list --cargo-profile "$PROFILE" --workspace -T oneline -E "$1" 2>/dev/null
}

excluded=()
report=()
missing_in_ci=()
for g in "${TEST_GROUPS[@]}"; do
	IFS='|' read -r name filter check why <<<"$g"
	if eval "$check"; then
		continue
	fi
	if ! tests=$(list "$filter"); then
		echo "error: cargo nextest list failed for group $name" >&2
		list "$filter" >/dev/null
		exit 2
	fi
	n=$(grep -c . <<<"$tests")
	per_binary=$(awk 'NF { c[$1]++ } END { for (b in c) printf "%s%s (%d)", (s++ ? ", " : ""), b, c[b] }' <<<"$tests")
	if $CI_MODE; then
		missing_in_ci+=("$name: $n tests [$per_binary] $why")
	else
		excluded+=("($filter)")
		report+=("$name: $n tests NOT RUN, $why"$'\n'"      in ${per_binary:-no binary}")
	fi
done

banner() {
	local line='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
	echo "$line"
	echo "!!! make test did NOT run every test. Left out:"
	for r in "${report[@]}"; do echo "!!!   $r"; done
	echo "!!! They are not passed: run \`make test\` as root to run them (CI=true runs them all)."
	echo "$line"
}

if [ ${#missing_in_ci[@]} -gt 0 ]; then
	echo "error: CI=true and a test prerequisite is missing; these tests will fail:" >&2
	for m in "${missing_in_ci[@]}"; do echo "  $m" >&2; done
fi

args=(nextest run --cargo-profile "$PROFILE" --workspace --no-fail-fast)
if [ ${#excluded[@]} -gt 0 ]; then
	filter=""
	for e in "${excluded[@]}"; do filter+="${filter:+ | }$e"; done
	filter="not ($filter)"
	banner >&2
	echo "running: cargo nextest run -E '$filter'" >&2
	args+=(-E "$filter")
fi
# shellcheck disable=SC2206
args+=(${NEXTEST_EXTRA:-})
$CARGO "${args[@]}"
rc=$?
[ ${#excluded[@]} -gt 0 ] && banner >&2
if [ ${#missing_in_ci[@]} -gt 0 ] && [ $rc -eq 0 ]; then
	rc=1
fi
exit $rc
