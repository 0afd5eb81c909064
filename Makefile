# vmguard: `make demo` runs the main job end to end; `make test` installs what the tests need and runs them.
# Both start from a fresh Debian 12 machine with Rust: they install the Debian packages they need first.

SHELL := /bin/bash
CARGO ?= cargo
VMGUARD := target/release/vmguard

.PHONY: all deps build demo test lint clean-lab

all: build

# Idempotent: checks the programs the lab, floods, benchmarks and tests run, installs the Debian
# packages of the missing ones (qemu-system-x86 and qemu-utils at one version), checks again after.
deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --workspace --bins

demo: build
	$(VMGUARD) demo

# As root (and in CI) every test runs; as non-root the tests that need root (the *_live binaries) or a
# missing tool are left out, and listed with their counts. With CI=true nothing is left out.
test: build
	@CARGO="$(CARGO)" scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Remove anything a crashed lab left behind.
clean-lab:
	$(VMGUARD) lab down
