# Tollgate: `make run` to try it, `make test` to check it.
CARGO ?= cargo
PYTHON ?= python3
WASM := target/wasm32-wasip1/release/tollgate.wasm
SIDECAR := target/release/tollgate-sidecar

.PHONY: build run test unit e2e lint fmt setup clean bench

build: $(WASM) $(SIDECAR)

$(WASM): Cargo.toml Cargo.lock $(shell find src -name '*.rs')
	$(CARGO) build --target wasm32-wasip1 --release -p tollgate

$(SIDECAR): Cargo.toml Cargo.lock $(shell find sidecar/src -name '*.rs') sidecar/Cargo.toml
	$(CARGO) build --release -p tollgate-sidecar

# Installs what the build and the tests need (idempotent).
setup:
	rustup target add wasm32-wasip1
	$(PYTHON) -m pip install --quiet -r wasm-tests/requirements.txt

run: build
	$(PYTHON) scripts/stack.py run

unit:
	$(CARGO) test --workspace

e2e: build
	cd wasm-tests && $(PYTHON) -m pytest -q

test: lint unit e2e

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p tollgate --target wasm32-wasip1 --release -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf build

# Side-by-side benchmark (needs wrk): see bench/run.py.
bench: build
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) || \
	  { echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; }
	$(CARGO) build --release -p tollgate-fast-mock
	$(CARGO) build --target wasm32-wasip1 --release -p tollgate-floor-filter
	$(CARGO) bench --bench hot_path
	$(PYTHON) bench/run.py
