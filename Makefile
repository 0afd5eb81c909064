# vmguard: `make demo` runs the main job end to end; `make test` installs what the tests need and runs them.
# Both start from a fresh Debian 12 machine with Rust: they install the Debian packages they need first.

SHELL := /bin/bash
CARGO ?= cargo
VMGUARD := target/release/vmguard

# Debian packages the lab, the floods, the benchmarks and the tests use.
DEB_PACKAGES := iproute2 nftables qemu-system-x86 qemu-utils busybox-static runc e2fsprogs kmod binutils \
	iperf3 hping3 netsniff-ng sysbench fio wrk curl linux-perf sqlite3 python3 prometheus chromium

.PHONY: all deps build demo test lint clean-lab

all: build

# Idempotent: installs only when a package is missing (apt-get update first, as on a fresh machine).
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	elif ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then \
		echo "refreshing apt's package lists (the qemu victim's kernel is downloaded with apt)"; \
		apt-get update -qq; \
	fi

build: deps
	$(CARGO) build --release --workspace --bins

demo: build
	$(VMGUARD) demo

test: build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --release --workspace --no-fail-fast; \
	else \
		$(CARGO) test --release --workspace --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Remove anything a crashed lab left behind.
clean-lab:
	$(VMGUARD) lab down
